//! `diskhist import`: a whole image becomes part of the history whole or
//! not at all, and names where it came from. Interrupted (SIGINT, SIGTERM)
//! or killed (SIGKILL) part-way, the store ends as it was before; readers
//! and the mount never show a half-imported disk; the import's mark gives
//! the image's path, size and SHA-256, also for an image read from
//! standard input; a time far in the future needs `--allow-future`.

use diskhist_test_common::{
    chain_head, diskhist, diskhist_cmd, diskhist_output, diskhist_with_input,
    incompressible_xorshift64, p, sha256_hex, Mounted, Spawned, MIB,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Store size for the interrupted imports: large enough that an import
/// takes long enough to interrupt part-way.
const BIG: usize = 384 * MIB;

/// What an analyst can see of a store: every record and the chain head.
fn history(store: &Path) -> (String, String) {
    (diskhist(&["log", p(store)]), chain_head(store))
}

/// A store of `size` bytes holding one import of a small image at T0, and
/// a second, fully different image (every 8 MiB of it one extent).
fn setup(dir: &Path, size: usize) -> (PathBuf, PathBuf) {
    let store = dir.join("S");
    diskhist(&["init", p(&store), "--size", &size.to_string()]);
    let first = dir.join("first.img");
    let mut a = vec![0u8; size];
    a[..MIB].copy_from_slice(&incompressible_xorshift64(MIB, 1));
    std::fs::write(&first, &a).unwrap();
    diskhist(&[
        "import",
        p(&store),
        p(&first),
        "--at",
        "2026-11-23T06:30:15Z",
    ]);
    let second = dir.join("second.img");
    std::fs::write(&second, incompressible_xorshift64(size, 2)).unwrap();
    (store, second)
}

fn spawn_import(store: &Path, image: &Path) -> Spawned {
    Spawned::start(&mut diskhist_cmd(["import", p(store), p(image)]))
}

/// Wait until the log has grown by `bytes` (the import is part-way).
fn wait_for_growth(store: &Path, from: u64, bytes: u64, child: &mut Spawned) {
    let start = Instant::now();
    loop {
        let len = std::fs::metadata(store.join("log")).unwrap().len();
        if len >= from + bytes {
            return;
        }
        assert!(
            child.alive(),
            "the import ended before it could be interrupted"
        );
        assert!(start.elapsed() < Duration::from_secs(60), "no progress");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn an_interrupted_import_leaves_the_store_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let (store, second) = setup(dir.path(), BIG);
    let log_before = std::fs::read(store.join("log")).unwrap();
    let seen_before = history(&store);
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let mut child = spawn_import(&store, &second);
        wait_for_growth(&store, log_before.len() as u64, 32 * MIB as u64, &mut child);
        child.signal(sig);
        let status = child.wait();
        let err = child.stderr();
        assert_eq!(status.code(), Some(1), "signal {sig}: {err}");
        assert!(
            err.contains("interrupted") && err.contains("nothing was recorded"),
            "signal {sig}: {err}"
        );
        assert!(
            std::fs::read(store.join("log")).unwrap() == log_before,
            "signal {sig}: the log is not what it was before the import"
        );
        assert_eq!(history(&store), seen_before, "signal {sig}");
        let v = diskhist(&["verify", p(&store)]);
        assert!(v.starts_with("ok: 2 records"), "signal {sig}: {v}");
    }
    // And the import, let run, records the image whole.
    diskhist(&["import", p(&store), p(&second)]);
    let latest = dir.path().join("latest.img");
    diskhist(&["export", p(&store), "--at", "latest", "-o", p(&latest)]);
    assert!(std::fs::read(&latest).unwrap() == std::fs::read(&second).unwrap());
}

#[test]
fn a_killed_import_is_cut_by_the_next_writer_and_never_seen() {
    let dir = tempfile::tempdir().unwrap();
    let (store, second) = setup(dir.path(), BIG);
    let log_before = std::fs::read(store.join("log")).unwrap();
    let seen_before = history(&store);
    let mut child = spawn_import(&store, &second);
    wait_for_growth(&store, log_before.len() as u64, 32 * MIB as u64, &mut child);
    child.kill9();
    assert!(std::fs::metadata(store.join("log")).unwrap().len() > log_before.len() as u64);
    // Readers see the state before the import, and say nothing of damage.
    let info = diskhist_output(&["info", p(&store)]);
    assert!(info.status.success());
    let itext = String::from_utf8_lossy(&info.stdout);
    assert!(!itext.contains("warning"), "{itext}");
    assert!(
        itext.contains("import pending: records from #3 on")
            && itext.contains("that did not finish; the next writer cuts them"),
        "{itext}"
    );
    assert_eq!(history(&store), seen_before);
    let v = diskhist_output(&["verify", p(&store)]);
    let vtext =
        String::from_utf8_lossy(&v.stdout).into_owned() + &String::from_utf8_lossy(&v.stderr);
    assert!(v.status.success(), "{vtext}");
    assert!(vtext.contains("did not finish"), "{vtext}");
    // The next writer cuts it, and says so.
    let again = diskhist_output(&["import", p(&store), p(&dir.path().join("first.img"))]);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{err}");
    assert!(err.contains("cut an unfinished batch"), "{err}");
    let log_after = std::fs::read(store.join("log")).unwrap();
    assert!(log_after[..log_before.len()] == log_before[..]);
    let log = diskhist(&["log", p(&store)]);
    assert_eq!(log.lines().count(), 3, "{log}");
    assert!(log.lines().nth(2).unwrap().contains(" mark \"import "));
    assert!(diskhist(&["verify", p(&store)]).starts_with("ok: 3 records"));
}

#[test]
fn the_mount_never_shows_a_half_imported_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (store, second) = setup(dir.path(), BIG);
    let m = Mounted::start(&store, &dir.path().join("mnt"), &[]);
    let seq_of = |rel: &str| -> Option<u64> {
        let info = std::fs::read_to_string(m.path(rel)).ok()?;
        info.lines()
            .find_map(|l| l.strip_prefix("seq: "))
            .and_then(|v| v.trim().parse().ok())
    };
    assert_eq!(seq_of("latest/info"), Some(2));
    // The second image differs everywhere: one extent per 8 MiB, then the
    // mark. Before the import the tree shows state 2, after it this one.
    let mark = 2 + (BIG / (8 * MIB)) as u64 + 1;
    let whole = |s: Option<u64>| s.is_none() || s == Some(2) || s == Some(mark);
    let mut child = spawn_import(&store, &second);
    let mut looks = 0;
    while child.alive() {
        // Every state the tree offers is one before or after the import.
        let latest = seq_of("latest/info");
        assert!(
            whole(latest),
            "latest shows state {latest:?} during the import"
        );
        for e in std::fs::read_dir(m.path("at")).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            let s = seq_of(&format!("at/{name}/info"));
            assert!(whole(s), "at/{name} shows state {s:?} during the import");
        }
        looks += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(child.wait().success());
    assert!(looks >= 3, "the import ended before the tree was looked at");
    // The committed import is one state: its mark, listed under its time.
    let log = diskhist(&["log", p(&store)]);
    assert_eq!(log.lines().count() as u64, mark, "{log}");
    let start = Instant::now();
    while seq_of("latest/info") != Some(mark) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "latest never moved"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let listed: Vec<Option<u64>> = std::fs::read_dir(m.path("at"))
        .unwrap()
        .map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            seq_of(&format!("at/{name}/info"))
        })
        .collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.contains(&Some(2)) && listed.contains(&Some(mark)));
}

#[test]
fn an_import_names_its_image_also_from_standard_input() {
    let dir = tempfile::tempdir().unwrap();
    let (store, second) = setup(dir.path(), 8 * MIB);
    let data = std::fs::read(&second).unwrap();
    let pipe = |input: &[u8]| diskhist_with_input(&["import", p(&store), "-"], input);
    // Short and long streams are refused, nothing recorded.
    let before = history(&store);
    for bad in [&data[..data.len() - 512], &[&data[..], b"x"].concat()[..]] {
        let out = pipe(bad);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("nothing was recorded"), "{err}");
        assert_eq!(history(&store), before);
    }
    let out = pipe(&data);
    assert!(out.status.success());
    let log = diskhist(&["log", p(&store)]);
    let last = log.lines().last().unwrap();
    let want = format!(
        "mark \"import sha256={} size={} path=-\"",
        sha256_hex(&data),
        data.len()
    );
    assert!(last.ends_with(&want), "{last}");
    // The same image again changes no block: only its mark is recorded.
    let n = log.lines().count();
    diskhist(&["import", p(&store), p(&second)]);
    let log = diskhist(&["log", p(&store)]);
    assert_eq!(log.lines().count(), n + 1);
    let canonical = second.canonicalize().unwrap();
    assert!(log.lines().last().unwrap().ends_with(&format!(
        "mark \"import sha256={} size={} path={}\"",
        sha256_hex(&data),
        data.len(),
        canonical.display()
    )));
    // info lists what was imported when.
    let info = diskhist(&["info", p(&store)]);
    let imports: Vec<&str> = info.lines().filter(|l| l.starts_with("import:")).collect();
    assert_eq!(imports.len(), 3, "{info}");
    assert!(imports[0].contains("at 2026-11-23T06:30:15Z") && imports[0].contains("first.img"));
    assert!(imports[1].ends_with(&format!(
        ": - ({} bytes, sha256 {})",
        data.len(),
        sha256_hex(&data)
    )));
    assert!(imports[2].contains(&format!("{} (", canonical.display())));
}

#[test]
fn a_time_far_in_the_future_needs_allow_future() {
    let dir = tempfile::tempdir().unwrap();
    let (store, second) = setup(dir.path(), 4 * MIB);
    let before = history(&store);
    let out = diskhist_output(&[
        "import",
        p(&store),
        p(&second),
        "--at",
        "2200-01-01T00:00:00Z",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("in the future") && err.contains("--allow-future"),
        "{err}"
    );
    assert_eq!(history(&store), before);
    // Within a minute of the clock is fine (a slightly fast source clock).
    let soon = format!(
        "@{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 30
    );
    diskhist(&["import", p(&store), p(&second), "--at", &soon]);
    diskhist(&[
        "import",
        p(&store),
        p(&second),
        "--at",
        "2200-01-01T00:00:00Z",
        "--allow-future",
    ]);
}
