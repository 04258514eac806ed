//! `make bench`: `history` on a long history. A 1 GiB ext4 (made by
//! mkfs.ext4, changed by debugfs) whose history holds over 100,000
//! records: 100,000 single-block rewrites of another file's data (a
//! database rewritten in place, each record its own time, as a live
//! recording stamps them) around 10 changes of /var/log/app.log (each
//! change one group of records sharing a time, as an import records it).
//!
//! Prints, in one run: states examined and time for `history`, and the
//! same for the naive scan that reads the path's view after every record.
//! Target: `history` examines at most a few hundred states and finishes
//! in under 5 s. Run with `cargo bench --bench history`; set
//! DISKHIST_BENCH_NOISE for another number of noise records and
//! DISKHIST_BENCH_NAIVE=0 to skip the naive scan.

use diskhist::history::{self, View};
use diskhist::store::{Op, OpFlags, Store, Writer};
use diskhist::{Seq, TimeNs};
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

const BS: usize = 4096;
const SIZE: u64 = 1 << 30;

fn sh(cmd: &mut Command) {
    let out = cmd.output().expect("running a tool (e2fsprogs installed?)");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn block_hashes(img: &Path) -> Vec<u64> {
    let mut f = std::fs::File::open(img).unwrap();
    let mut buf = vec![0u8; BS * 256];
    let mut out = Vec::with_capacity((SIZE as usize) / BS);
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        for b in buf[..n].chunks(BS) {
            out.push(xxh(b));
        }
    }
    out
}

fn xxh(b: &[u8]) -> u64 {
    // FNV-1a over 8-byte words: enough to tell a changed block.
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for w in b.chunks(8) {
        let mut x = [0u8; 8];
        x[..w.len()].copy_from_slice(w);
        h = (h ^ u64::from_le_bytes(x)).wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// Record the blocks of `img` whose hash differs from `old`, runs of
/// adjacent blocks as one write each, all at `time`.
fn record_changes(w: &mut Writer, img: &Path, old: &mut Vec<u64>, time: TimeNs) -> usize {
    let new = block_hashes(img);
    let file = std::fs::File::open(img).unwrap();
    let mut records = 0;
    let mut b = 0usize;
    while b < new.len() {
        if new[b] == old.get(b).copied().unwrap_or(!new[b]) {
            b += 1;
            continue;
        }
        let start = b;
        while b < new.len() && new[b] != old.get(b).copied().unwrap_or(!new[b]) && b - start < 256 {
            b += 1;
        }
        let mut data = vec![0u8; (b - start) * BS];
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut data, (start * BS) as u64).unwrap();
        w.append(
            time,
            Op::Write {
                offset_bytes: (start * BS) as u64,
                data: &data,
            },
            OpFlags::default(),
        )
        .unwrap();
        records += 1;
    }
    *old = new;
    records
}

fn main() {
    let noise: u64 = std::env::var("DISKHIST_BENCH_NOISE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let naive = std::env::var("DISKHIST_BENCH_NAIVE").map_or(true, |v| v != "0");
    let base = std::env::var_os("DISKHIST_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::tempdir_in(&base).unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("var/log")).unwrap();
    std::fs::create_dir_all(src.join("data")).unwrap();
    std::fs::write(src.join("var/log/app.log"), "version 0\n").unwrap();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let db: Vec<u8> = (0..64 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(src.join("data/db.bin"), &db).unwrap();
    let img = tmp.path().join("fs.img");
    sh(Command::new("mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-b",
            "4096",
            "-U",
            "6c1f9c44-36a1-4a3e-9b58-6d1f2a0c1b11",
        ])
        .args(["-E", "hash_seed=0a5c6e1e-41b4-4c39-9f0c-0c2bd56e5b0d", "-d"])
        .arg(&src)
        .arg(&img)
        .arg("1G"));
    // The database's data blocks: where the noise goes.
    let out = Command::new("debugfs")
        .args(["-R", "blocks /data/db.bin"])
        .arg(&img)
        .output()
        .unwrap();
    let db_blocks: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(db_blocks.len(), 16384, "db.bin's blocks");

    let store_dir = tmp.path().join("store");
    Writer::init(&store_dir, SIZE, BS as u32).unwrap();
    let mut w = Writer::open(&store_dir).unwrap();
    let mut hashes = Vec::new();
    let t0 = 1_800_000_000_000_000_000i64;
    let build = Instant::now();
    record_changes(&mut w, &img, &mut hashes, TimeNs(t0));
    let mut t = t0;
    let mut block = vec![0u8; BS];
    for change in 1..=10u32 {
        for _ in 0..noise / 10 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = db_blocks[(x % db_blocks.len() as u64) as usize];
            block[..8].copy_from_slice(&x.to_le_bytes());
            t += 1_000;
            w.append(
                TimeNs(t),
                Op::Write {
                    offset_bytes: b * BS as u64,
                    data: &block,
                },
                OpFlags::default(),
            )
            .unwrap();
        }
        let content = tmp.path().join("v");
        std::fs::write(
            &content,
            (0..=change)
                .map(|i| format!("version {i}\n"))
                .collect::<String>(),
        )
        .unwrap();
        let cmds = tmp.path().join("cmds");
        std::fs::write(
            &cmds,
            format!(
                "cd /var/log\nrm app.log\nwrite {} app.log\n",
                content.display()
            ),
        )
        .unwrap();
        sh(Command::new("debugfs")
            .arg("-w")
            .arg("-f")
            .arg(&cmds)
            .arg(&img));
        t += 1_000;
        record_changes(&mut w, &img, &mut hashes, TimeNs(t));
    }
    w.close().unwrap();
    let store = Arc::new(Store::open(&store_dir).unwrap());
    let head = store.head().seq;
    println!(
        "history of a 1 GiB ext4: {} records ({noise} rewrites of another file's blocks, \
         10 changes of /var/log/app.log), built in {:.1} s",
        head.0,
        build.elapsed().as_secs_f64()
    );

    let path = b"/var/log/app.log";
    let started = Instant::now();
    let mut changes = Vec::new();
    let stats = history::history(&store, None, path, Seq(0), head, |c| {
        changes.push((c.seq, c.kind.name()));
        Ok(())
    })
    .unwrap();
    let smart_s = started.elapsed().as_secs_f64();
    println!(
        "  history: {} changes found, {} states examined, {} index probes, {:.3} s \
         (target: at most a few hundred states, under 5 s)",
        changes.len(),
        stats.states_examined,
        stats.index_probes,
        smart_s
    );
    assert_eq!(changes.len(), 11, "created and ten changes: {changes:?}");

    if naive {
        let started = Instant::now();
        // Every record's state is read; changes are counted, as history
        // counts them, only at states a time names (inside a group of
        // records sharing a time the file is half-written).
        let times = store.seq_times(Seq(1), head).unwrap();
        let mut prev: Option<View> = None;
        let mut found = 0usize;
        for s in 0..=head.0 {
            let (v, _) = history::view::view_path(&store, Seq(s), None, path);
            let group_end = s == 0 || s == head.0 || times[s as usize] != times[s as usize - 1];
            if group_end {
                if prev.as_ref() != Some(&v) && matches!(v, View::Present(_)) {
                    found += 1;
                }
                prev = Some(v);
            }
        }
        assert_eq!(
            found,
            changes.len(),
            "the naive scan finds what history finds"
        );
        let naive_s = started.elapsed().as_secs_f64();
        println!(
            "  naive scan: the view after every record: {} states examined, {} changes, {:.1} s \
             ({:.0}x the time of history)",
            head.0 + 1,
            found,
            naive_s,
            naive_s / smart_s
        );
    }
}
