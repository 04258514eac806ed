//! `make bench`: listings of the mounted tree on a long history.
//!
//! A store of 10,000,000 records spread evenly over 30 days (a 4 KiB write
//! to one of 65,536 blocks every 0.26 s, of one of 256 contents, so that
//! the log holds headers, not 40 GB of payload: every second of every day
//! has writes), mounted with `diskhist mount`; then `ls -l by-day/<day>/` of a
//! day in the middle (86,400 states), cold (page cache dropped, daemon
//! restarted; needs root) and warm (the same again, kernel caches dropped
//! but the daemon's kept), and `ls at/`. Targets (issue 14): `ls -l` of a
//! busy day under 1 s warm and 3 s cold.
//!
//! Run with `cargo bench --bench listing`; DISKHIST_BENCH_DIR places the
//! store (default: the temp dir), and a store built there before is used
//! again (`listing-10M`); DISKHIST_LISTING_RECORDS changes its size;
//! DISKHIST is the binary to mount with (default target/release/diskhist).

use diskhist::store::{Op, OpFlags, Store, Writer};
use diskhist::testing::format::LogFormat;
use diskhist::TimeNs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DAYS: i64 = 30;
const T0: i64 = 1_795_392_000; // 2026-11-23T00:00:00Z

fn build(dir: &Path, records: u64) {
    // Only a store of the current record format: one history has the same
    // head in every format.
    let current = |s: &Store| s.head().seq.0 == records && s.header().format == LogFormat::V2;
    if Store::open(dir).is_ok_and(|s| current(&s)) {
        // A writer brings an index of an older format up to date.
        Writer::open(dir).unwrap().close().unwrap();
        println!("using the store built before in {}", dir.display());
        return;
    }
    let _ = std::fs::remove_dir_all(dir);
    Writer::init(dir, 256 << 20, 4096).unwrap();
    let mut w = Writer::open(dir).unwrap();
    let span_ns = DAYS * 86_400 * 1_000_000_000;
    let step = span_ns / records as i64;
    let mut block = vec![0u8; 4096];
    let t = Instant::now();
    for i in 0..records {
        block[..8].copy_from_slice(&(i % 256).to_le_bytes());
        w.append(
            TimeNs(T0 * 1_000_000_000 + i as i64 * step),
            Op::Write {
                offset_bytes: (i * 40_503 % 65_536) * 4096,
                data: &block,
            },
            OpFlags::default(),
        )
        .unwrap();
    }
    w.close().unwrap();
    println!(
        "built {records} records over {DAYS} days in {:.0} s",
        t.elapsed().as_secs_f64()
    );
}

struct Mount {
    child: std::process::Child,
    at: PathBuf,
}

impl Mount {
    fn start(bin: &Path, store: &Path, at: &Path) -> Mount {
        let child = Command::new(bin)
            .arg("mount")
            .arg(store)
            .arg(at)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("diskhist mount starts");
        let t = Instant::now();
        while !is_mounted(at) {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "mount did not appear"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Mount {
            child,
            at: at.to_path_buf(),
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.at).status();
        let _ = self.child.wait();
    }
}

fn is_mounted(at: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let at = at.to_string_lossy();
    mounts.lines().any(|l| l.split(' ').nth(1) == Some(&*at))
}

fn drop_caches() -> bool {
    let _ = Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

/// Seconds `sh -c script` took; the script must succeed.
fn timed(script: &str) -> f64 {
    let t = Instant::now();
    let ok = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "{script} failed");
    t.elapsed().as_secs_f64()
}

fn main() {
    let base = std::env::var_os("DISKHIST_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let records: u64 = std::env::var("DISKHIST_LISTING_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let bin = std::env::var_os("DISKHIST")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/diskhist"));
    assert!(bin.exists(), "{} not built: make build", bin.display());
    let store = base.join(format!("listing-{}M", records / 1_000_000));
    build(&store, records);
    let mnt = tempfile::tempdir_in(&base).unwrap();
    let day = "2026-12-08"; // the middle of the 30 days
    let ls_day = format!("ls -l '{}/by-day/{day}' | wc -l", mnt.path().display());
    let root = drop_caches();
    let (cold, warm) = {
        let _m = Mount::start(&bin, &store, mnt.path());
        let cold = timed(&ls_day);
        // Warm: the daemon's caches as the first listing left them, the
        // kernel's dropped (a state's entries are cached by the kernel
        // for good, so without this the second run asks the daemon nothing).
        drop_caches();
        let warm = timed(&ls_day);
        (cold, warm)
    };
    let entries = {
        let _m = Mount::start(&bin, &store, mnt.path());
        let out = Command::new("sh").arg("-c").arg(&ls_day).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let at = {
        let _m = Mount::start(&bin, &store, mnt.path());
        drop_caches();
        timed(&format!("ls '{}/at' | wc -l", mnt.path().display()))
    };
    println!("store: {records} records over {DAYS} days; by-day/{day} lists {entries} lines");
    println!(
        "ls -l by-day/{day}: cold {cold:.2} s (target < 3 s){}, warm {warm:.2} s (target < 1 s)",
        if root {
            ""
        } else {
            " [not root: caches not dropped]"
        }
    );
    println!("ls at/ (3,600 seconds and the hours before), cold: {at:.2} s");
}
