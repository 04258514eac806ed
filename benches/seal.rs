//! `make bench`: the Merkle tree and sealing.
//!
//! 1. Recording throughput (4 KiB writes of incompressible data through
//!    the library writer) without sealing, sealing every 10,000 records,
//!    and sealing every second; alternating runs, medians. Target: within
//!    5% of without. Twice: with a flush (a Flush record and a sync of the
//!    log) every 1,000 writes, as `serve` does on a guest's FLUSH; and with
//!    no flush at all until the end (the page cache takes everything: the
//!    worst case for the syncs sealing adds, which make each checkpoint
//!    cover only durable records).
//! 2. A store of `DISKHIST_BENCH_SEAL_RECORDS` records (default
//!    10,000,000 small records): `seal` (open the store and sign its head's
//!    checkpoint; target < 100 ms), one inclusion proof (target < 10 ms)
//!    and one consistency proof, and the stored hashes as a share of the
//!    log (target < 2%).
//!
//! 3. Proofs and chains where records carry data: a store of 100,000
//!    random 4 KiB writes and one of 512 writes of 1 MiB, each in record
//!    format 2 and format 1. Format 2 does not store content hashes, so an
//!    inclusion proof rebuilds them for the up to 255 records below the
//!    stored tiles, and a record's chain is computed from the last whole one
//!    (up to 255 records before it): both read those records whole. Each
//!    figure is from a newly opened store (nothing remembered), page cache
//!    warm; format 1 is the peer.
//!
//! Prints figures; run with `cargo bench --bench seal`.
//! Set DISKHIST_BENCH_DIR to place the stores (default: a temp dir).

use diskhist::seal::note::Signer;
use diskhist::seal::sealer::{SealConfig, SealEvery};
use diskhist::store::{Op, OpFlags, Store, Writer};
use diskhist::testing::xorshift64;
use diskhist::{Seq, TimeNs};
use std::path::Path;
use std::time::{Duration, Instant};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Incompressible bytes (xorshift).
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n).map(|_| xorshift64(&mut x) as u8).collect()
}

/// Record `n` 4 KiB writes into a new store under `dir`; seconds taken,
/// the writer's close (its final sync and index flush) included.
fn record(
    dir: &Path,
    n: u64,
    flush_every: Option<u64>,
    seal: Option<SealEvery>,
    key: &Signer,
    run: usize,
) -> f64 {
    let store = dir.join(format!("rec-{run}"));
    Writer::init(&store, 1 << 30, 4096).unwrap();
    let data = noise(1 << 20, 42 + run as u64);
    let t = Instant::now();
    let mut w = Writer::open(&store).unwrap();
    if let Some(every) = seal {
        SealConfig {
            signer_key: key.to_private_text(),
            every,
            cmd: None,
        }
        .attach(&store, &mut w)
        .unwrap();
    }
    for i in 0..n {
        let at = ((i * 4096) % (1 << 20)) as usize;
        let chunk = &data[at..at + 4096];
        w.append_now(
            Op::Write {
                offset_bytes: (i % 250_000) * 4096,
                data: chunk,
            },
            OpFlags::default(),
        )
        .unwrap();
        if flush_every.is_some_and(|f| (i + 1) % f == 0) {
            w.append_now(Op::Flush, OpFlags::default()).unwrap();
            w.sync().unwrap();
        }
    }
    w.close().unwrap();
    let s = t.elapsed().as_secs_f64();
    std::fs::remove_dir_all(&store).unwrap();
    s
}

fn main() {
    let base = std::env::var_os("DISKHIST_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::tempdir_in(&base).unwrap();
    let key = Signer::generate("bench", [1; 32]).unwrap();

    // 1. Throughput.
    let n: u64 = std::env::var("DISKHIST_BENCH_SEAL_WRITES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let modes: [(&str, Option<SealEvery>); 3] = [
        ("no sealing", None),
        ("seal every 10000 records", Some(SealEvery::Records(10_000))),
        (
            "seal every 1 s",
            Some(SealEvery::Interval(Duration::from_secs(1))),
        ),
    ];
    // On the bench directory's filesystem (fsyncs cost what its disk
    // makes them cost, and other users of the disk add noise), and on
    // tmpfs if there is one (fsync is free: what is left is the CPU cost).
    let shm = Path::new("/dev/shm");
    let mut places = vec![("the bench directory", tmp.path().to_path_buf())];
    let shm_dir = shm
        .is_dir()
        .then(|| tempfile::tempdir_in(shm).ok())
        .flatten();
    if let Some(d) = &shm_dir {
        places.push(("tmpfs (/dev/shm)", d.path().to_path_buf()));
    }
    let rounds = 7;
    let mut run = 0;
    for (place, dir) in &places {
        for (label, flush_every) in [
            ("a flush every 1000 writes", Some(1000)),
            ("no flush until the end", None),
        ] {
            let mut times: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
            for _round in 0..rounds {
                for (m, (_, every)) in modes.iter().enumerate() {
                    times[m].push(record(dir, n, flush_every, *every, &key, run));
                    run += 1;
                }
            }
            println!(
                "recording {n} writes of 4 KiB (incompressible) on {place}, {label}, \
                 {rounds} alternating runs:"
            );
            let best = |v: &[f64]| v.iter().cloned().fold(f64::MAX, f64::min);
            let (base_med, base_best) = (median(times[0].clone()), best(&times[0]));
            for (m, (name, _)) in modes.iter().enumerate() {
                let (med, b) = (median(times[m].clone()), best(&times[m]));
                println!(
                    "  {name:<26} median {:>7.1} MiB/s ({:+.1}% time), best {:>7.1} MiB/s ({:+.1}% time)",
                    n as f64 * 4096.0 / med / (1 << 20) as f64,
                    (med / base_med - 1.0) * 100.0,
                    n as f64 * 4096.0 / b / (1 << 20) as f64,
                    (b / base_best - 1.0) * 100.0
                );
            }
        }
    }

    // 3. Proofs and chains over records that carry data.
    for (what, n, len) in [("4 KiB", 100_000u64, 4096usize), ("1 MiB", 512, 1 << 20)] {
        proofs_by_format(tmp.path(), what, n, len);
    }

    // 2. A big store.
    let records: u64 = std::env::var("DISKHIST_BENCH_SEAL_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    if records == 0 {
        return;
    }
    let store = tmp.path().join("big");
    Writer::init(&store, 1 << 30, 4096).unwrap();
    let t = Instant::now();
    let mut w = Writer::open(&store).unwrap();
    for i in 0..records {
        // Small records (a whole-block zero: header only) make the log
        // small and the tree's share of it as large as it gets.
        w.append(
            TimeNs(1_000_000_000 + i as i64),
            Op::Zero {
                offset_bytes: (i % 4096) * 4096,
                length_bytes: 4096,
            },
            OpFlags::default(),
        )
        .unwrap();
    }
    w.close().unwrap();
    println!(
        "built a store of {records} records in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let mut seal_ms = Vec::new();
    let mut open_ms = Vec::new();
    let mut root_ms = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        let s = Store::open(&store).unwrap();
        let opened = t.elapsed();
        let t2 = Instant::now();
        let note = diskhist::seal::seal(&s, &key).unwrap();
        root_ms.push(t2.elapsed().as_secs_f64() * 1e3);
        seal_ms.push(t.elapsed().as_secs_f64() * 1e3);
        open_ms.push(opened.as_secs_f64() * 1e3);
        assert!(note.contains(&format!("\n{records}\n")));
    }
    println!(
        "seal (open the store, tree root, sign): median {:.2} ms (open {:.2} ms, root and signature {:.3} ms)",
        median(seal_ms),
        median(open_ms),
        median(root_ms)
    );
    let s = Store::open(&store).unwrap();
    let mut incl = Vec::new();
    let mut cons = Vec::new();
    let mut x = 0x9e3779b97f4a7c15u64;
    for _ in 0..200 {
        let seq = Seq(xorshift64(&mut x) % records + 1);
        let t = Instant::now();
        let p = s.inclusion_proof(seq, Seq(records)).unwrap();
        incl.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(!p.is_empty());
        let old = Seq(x % records / 2 + 1);
        let t = Instant::now();
        s.consistency_proof(old, Seq(records)).unwrap();
        cons.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let max = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
    println!(
        "inclusion proof (random record of {records}): median {:.3} ms, max {:.3} ms",
        median(incl.clone()),
        max(&incl)
    );
    println!(
        "consistency proof (random older size): median {:.3} ms, max {:.3} ms",
        median(cons.clone()),
        max(&cons)
    );
    let sp = s.space().unwrap();
    println!(
        "stored tree hashes: {} bytes for a log of {} bytes: {:.3}% ({:.3} bytes per record)",
        sp.tree_bytes,
        sp.log_bytes,
        sp.tree_bytes as f64 * 100.0 / sp.log_bytes as f64,
        sp.tree_bytes as f64 / records as f64
    );
    // The command line, process start included.
    let bin = std::env::var_os("DISKHIST")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/diskhist"));
    if bin.exists() {
        let kf = tmp.path().join("bench.key");
        std::fs::write(&kf, key.to_private_text()).unwrap();
        let mut v = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let o = std::process::Command::new(&bin)
                .arg("seal")
                .arg(&store)
                .arg("--key")
                .arg(&kf)
                .output()
                .unwrap();
            v.push(t.elapsed().as_secs_f64() * 1e3);
            assert!(o.status.success());
        }
        println!(
            "`diskhist seal` on it (process included): median {:.1} ms",
            median(v)
        );
    }
}

/// Part 3: inclusion proofs and record chains in stores of `n` writes of
/// `len` bytes, format 2 against format 1.
fn proofs_by_format(dir: &Path, what: &str, n: u64, len: usize) {
    use diskhist::testing::format::LogFormat;
    let disk = 1u64 << 30;
    let mut medians = Vec::new();
    for format in [LogFormat::V2, LogFormat::V1] {
        let store = dir.join(format!("proofs-{what}-{format:?}"));
        Writer::init_format(&store, disk, 4096, format).unwrap();
        let mut w = Writer::open(&store).unwrap();
        let slots = disk / len as u64;
        for i in 0..n {
            let data = noise(len, i + 1);
            let op = Op::Write {
                offset_bytes: (i * 7919 % slots) * len as u64,
                data: &data,
            };
            w.append(TimeNs(1_000_000_000 + i as i64), op, OpFlags::default())
                .unwrap();
        }
        w.close().unwrap();
        let (mut incl, mut chain) = (Vec::new(), Vec::new());
        let mut x = 0x9e3779b97f4a7c15u64;
        for _ in 0..30 {
            let seq = Seq(xorshift64(&mut x) % n + 1);
            let s = Store::open(&store).unwrap();
            let t = Instant::now();
            s.inclusion_proof(seq, Seq(n)).unwrap();
            incl.push(t.elapsed().as_secs_f64() * 1e3);
            let s = Store::open(&store).unwrap();
            let t = Instant::now();
            s.record(seq).unwrap();
            chain.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let max = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
        println!(
            "{n} writes of {what}, record format {format:?}: inclusion proof median {:.2} ms (max {:.2}); a record with its chain median {:.2} ms (max {:.2})",
            median(incl.clone()),
            max(&incl),
            median(chain.clone()),
            max(&chain)
        );
        medians.push((median(incl), median(chain)));
        std::fs::remove_dir_all(&store).unwrap();
    }
    println!(
        "  format 2 / format 1 time: inclusion proof {:.1}x, record with chain {:.1}x",
        medians[0].0 / medians[1].0,
        medians[0].1 / medians[1].1
    );
}
