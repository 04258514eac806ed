//! `make bench`: the store's index.
//!
//! 1. One block written 1,000,000 times; then reads as of the oldest, a
//!    middle and the newest state. Target: medians within 2x of each other,
//!    each under 50 µs (O(log n), never O(later versions)).
//! 2. A store holding 10,000,000 block versions: time to open it ready to
//!    read (target < 1 s) and the reader's peak memory.
//!
//! 3. Ingest of 1M and of 10M single-block records: cost per record
//!    (target: within 1.3x), index bytes written against the index's size
//!    (target: <= 3x), and random reads at the newest state.
//!
//! Prints figures; run with `cargo bench --bench store_index`.
//! Set DISKHIST_BENCH_DIR to place the stores (default: a temp dir).

use diskhist::store::{Op, OpFlags, Store, Writer};
use diskhist::testing::xorshift64;
use diskhist::{Seq, TimeNs};
use std::time::Instant;

fn rss_kib() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let get = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (get("VmRSS:"), get("VmHWM:"))
}

fn median_us(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn read_latency(store: &Store, state: Seq, block_size: usize, n: usize) -> f64 {
    let mut buf = vec![0u8; block_size];
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        store.read_at(state, 0, &mut buf).unwrap();
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    median_us(samples)
}

fn main() {
    let base = std::env::var_os("DISKHIST_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::tempdir_in(&base).unwrap();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    println!(
        "machine: {cpu}, {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );

    // 1. One block, 1,000,000 versions.
    let n: u64 = std::env::var("DISKHIST_BENCH_VERSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tmp.path().join("one-block");
    Writer::init(&dir, 1 << 20, 4096).unwrap();
    let mut w = Writer::open(&dir).unwrap();
    let mut block = vec![0u8; 4096];
    let t = Instant::now();
    for i in 0..n {
        // Version i holds i + 1: none is the zero block, which would be
        // read without touching the log and make its state look fast.
        block[..8].copy_from_slice(&(i + 1).to_le_bytes());
        w.append(
            TimeNs(i as i64 * 1000),
            Op::Write {
                offset_bytes: 0,
                data: &block,
            },
            OpFlags::default(),
        )
        .unwrap();
    }
    w.close().unwrap();
    let write_s = t.elapsed().as_secs_f64();
    println!(
        "one block written {n} times: {:.1} s ({:.0} writes/s)",
        write_s,
        n as f64 / write_s
    );
    let store = Store::open(&dir).unwrap();
    let states = [
        ("oldest", Seq(1)),
        ("middle", Seq(n / 2)),
        ("newest", Seq(n)),
    ];
    let mut medians = Vec::new();
    for (name, s) in states {
        let mut buf = vec![0u8; 4096];
        store.read_at(s, 0, &mut buf).unwrap();
        assert_eq!(
            u64::from_le_bytes(buf[..8].try_into().unwrap()),
            s.0,
            "wrong version read"
        );
        let m = read_latency(&store, s, 4096, 20_000);
        println!(
            "  read block 0 as of the {name} state ({}): median {m:.2} µs",
            s
        );
        medians.push(m);
    }
    let (lo, hi) = medians
        .iter()
        .fold((f64::MAX, 0f64), |(a, b), &m| (a.min(m), b.max(m)));
    println!(
        "  spread newest/oldest/middle: max/min = {:.2}x (target <= 2x); slowest median {hi:.2} µs (target < 50 µs): {}",
        hi / lo,
        if hi / lo <= 2.0 && hi < 50.0 { "MET" } else { "NOT MET" }
    );

    // 2. 10,000,000 block versions: 10,000 records of 1,000 blocks each,
    // content drawn from a small pool (so the log stays small: references).
    let versions: u64 = std::env::var("DISKHIST_BENCH_BIG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let per = 1000u64;
    let dir = tmp.path().join("ten-million");
    let disk_blocks = 262_144u64; // 1 GiB disk
    Writer::init(&dir, disk_blocks * 4096, 4096).unwrap();
    let mut w = Writer::open(&dir).unwrap();
    let pool: Vec<Vec<u8>> = (0..64u64)
        .map(|i| {
            let mut b = vec![0u8; 4096];
            b[..8].copy_from_slice(&(i + 1).to_le_bytes());
            b[4000] = 0xEE;
            b
        })
        .collect();
    let mut data = vec![0u8; (per * 4096) as usize];
    let t = Instant::now();
    for r in 0..versions / per {
        for (k, chunk) in data.chunks_mut(4096).enumerate() {
            chunk.copy_from_slice(&pool[(r as usize * 7 + k) % pool.len()]);
        }
        let start = (r * 7919 % (disk_blocks - per)) * 4096;
        w.append(
            TimeNs(r as i64),
            Op::Write {
                offset_bytes: start,
                data: &data,
            },
            OpFlags::default(),
        )
        .unwrap();
    }
    w.close().unwrap();
    println!(
        "{versions} block versions recorded in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    // Drop the page cache so the open is measured cold too (root only).
    let cold = std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok();
    let (rss0, _) = rss_kib();
    let t = Instant::now();
    let store = Store::open(&dir).unwrap();
    let mut buf = vec![0u8; 4096];
    store
        .read_at(store.head().seq, 4096 * 12345, &mut buf)
        .unwrap();
    let open_s = t.elapsed().as_secs_f64();
    let (rss1, _) = rss_kib();
    println!(
        "open of a {versions}-version store, ready to read ({} cache): {:.3} s (target < 1 s): {}; reader memory after open: +{} KiB",
        if cold { "cold" } else { "warm" },
        open_s,
        if open_s < 1.0 { "MET" } else { "NOT MET" },
        rss1.saturating_sub(rss0)
    );
    let m = read_latency(&store, Seq(store.head().seq.0 / 2), 4096, 20_000);
    println!("  block read in the middle of its history: median {m:.2} µs");
    // Read the whole 1 GiB disk as of the newest state: memory must stay flat.
    let mut big = vec![0u8; 1 << 20];
    let t = Instant::now();
    for off in (0..disk_blocks * 4096).step_by(1 << 20) {
        store.read_at(store.head().seq, off, &mut big).unwrap();
    }
    let (rss2, hwm) = rss_kib();
    println!(
        "  whole 1 GiB disk read in {:.2} s; reader RSS {} KiB (peak {} KiB)",
        t.elapsed().as_secs_f64(),
        rss2,
        hwm
    );

    drop(store);

    // 3. Ingest cost as the history grows: 1M and then 10M single-block
    //    records, each timed from an empty store. Targets (issue 14): the
    //    10M ingest within 1.3x of 10 times the 1M one (per record), and
    //    the index bytes written at most 3x the index's final size.
    let small: u64 = std::env::var("DISKHIST_BENCH_INGEST")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let mut per_record = Vec::new();
    for records in [small, small * 10] {
        let dir = tmp.path().join(format!("ingest-{records}"));
        let (secs, written, runs) = ingest(&dir, records, &pool);
        let index_size = dir_size(&dir.join("index"));
        let log_size = dir_size(&dir) - index_size;
        println!(
            "ingest of {records} single-block records: {secs:.1} s ({:.2} µs/record); \
             log {:.0} MB, index {:.0} MB in {runs} runs; index bytes written {:.0} MB = \
             {:.2}x its size (target <= 3x): {}",
            secs * 1e6 / records as f64,
            log_size as f64 / 1e6,
            index_size as f64 / 1e6,
            written as f64 / 1e6,
            written as f64 / index_size as f64,
            if written <= 3 * index_size {
                "MET"
            } else {
                "NOT MET"
            }
        );
        let store = Store::open(&dir).unwrap();
        let mut buf = vec![0u8; 4096];
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut samples = Vec::with_capacity(20_000);
        for _ in 0..20_000 {
            let block = xorshift64(&mut x) % INGEST_BLOCKS;
            let t = Instant::now();
            store
                .read_at(store.head().seq, block * 4096, &mut buf)
                .unwrap();
            samples.push(t.elapsed().as_secs_f64() * 1e6);
        }
        println!(
            "  random 4K read at the newest state: median {:.2} µs",
            median_us(samples)
        );
        per_record.push(secs / records as f64);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
    let growth = per_record[1] / per_record[0];
    println!(
        "ingest cost per record, {}M vs {}M records: {growth:.2}x (target <= 1.3x): {}",
        small * 10 / 1_000_000,
        small / 1_000_000,
        if growth <= 1.3 { "MET" } else { "NOT MET" }
    );
}

/// Blocks of the disk the ingest part writes to (4 GiB).
const INGEST_BLOCKS: u64 = 1 << 20;

/// Record `records` writes of one 4 KiB block each, at pseudo-random
/// blocks, with contents from `pool` (so the log holds references and
/// headers, and the index's work shows). Returns the seconds taken, the
/// index bytes written and the index runs left.
fn ingest(dir: &std::path::Path, records: u64, pool: &[Vec<u8>]) -> (f64, u64, usize) {
    Writer::init(dir, INGEST_BLOCKS * 4096, 4096).unwrap();
    let mut w = Writer::open(dir).unwrap();
    let t = Instant::now();
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    for i in 0..records {
        xorshift64(&mut x);
        w.append(
            TimeNs(i as i64 * 1000),
            Op::Write {
                offset_bytes: (x % INGEST_BLOCKS) * 4096,
                data: &pool[(x >> 32) as usize % pool.len()],
            },
            OpFlags::default(),
        )
        .unwrap();
    }
    w.flush_index().unwrap();
    let written = w.index_bytes_written();
    w.close().unwrap();
    let secs = t.elapsed().as_secs_f64();
    let runs = std::fs::read_dir(dir.join("index"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".run"))
        })
        .count();
    (secs, written, runs)
}

/// Bytes of the files under `dir`, recursively.
fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                dir_size(&e.path())
            } else {
                m.len()
            }
        })
        .sum()
}
