//! Outputs never destroy evidence (issue 9, point 1), end to end with the
//! real binary: `export -o` and `dump -o` refuse an existing file without
//! `--force` and any path inside a store with it; binary data is not sent
//! to a terminal; an output that fails or is interrupted leaves nothing
//! that looks complete; devices are written in place.

use diskhist_test_common::{
    bin, chain_head, diskhist_cmd, diskhist_fails, diskhist_ok, on_a_terminal, p, Spawned, MIB,
};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Fixture {
    dir: tempfile::TempDir,
    store: PathBuf,
    /// The disk at the store's latest state.
    disk: Vec<u8>,
}

impl Fixture {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A 1 MiB store with two imported states; mostly zeros, so a sparse
/// export has holes.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let img = dir.path().join("disk.img");
    diskhist_ok(&["init", p(&store), "--size", "1M", "--block-size", "4096"]);
    let mut disk = vec![0u8; MIB];
    for (i, b) in disk[8192..20480].iter_mut().enumerate() {
        *b = (i * 7 % 251) as u8;
    }
    std::fs::write(&img, &disk).unwrap();
    diskhist_ok(&["import", p(&store), p(&img), "--at", "2026-11-23T06:30:15Z"]);
    disk[900_000..900_005].copy_from_slice(b"hello");
    std::fs::write(&img, &disk).unwrap();
    diskhist_ok(&["import", p(&store), p(&img), "--at", "2026-11-23T06:30:16Z"]);
    std::fs::remove_file(&img).unwrap();
    Fixture { dir, store, disk }
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Regression: `export STORE --at latest -o STORE/log` truncated the
/// store's own log, then failed reading it ("failed to fill whole
/// buffer"): the evidence was gone. Any path inside a store is refused,
/// with or without --force, and the store stays byte for byte.
#[test]
fn export_into_the_stores_own_log_is_refused_and_the_log_survives() {
    let f = fixture();
    let before = snapshot(&f.store);
    let log = f.store.join("log");
    for force in [false, true] {
        let mut args = vec!["export", p(&f.store), "--at", "latest", "-o", p(&log)];
        if force {
            args.push("--force");
        }
        diskhist_fails(&args, 1, "inside the diskhist store");
    }
    for inside in ["index/MANIFEST", "index/new.img", "new.img"] {
        let target = f.store.join(inside);
        diskhist_fails(
            &[
                "export",
                p(&f.store),
                "--at",
                "#1",
                "-o",
                p(&target),
                "--force",
            ],
            1,
            "inside the diskhist store",
        );
        diskhist_fails(
            &["dump", p(&f.store), "-o", p(&target), "--force"],
            1,
            "inside the diskhist store",
        );
    }
    // Through a symbolic link from outside, and into another store.
    let link = f.path("innocent.img");
    std::os::unix::fs::symlink(&log, &link).unwrap();
    diskhist_fails(
        &[
            "export",
            p(&f.store),
            "--at",
            "latest",
            "-o",
            p(&link),
            "--force",
        ],
        1,
        "inside the diskhist store",
    );
    let other = f.path("other");
    diskhist_ok(&["init", p(&other), "--size", "1M"]);
    std::fs::create_dir(other.join("sub")).unwrap();
    for target in [other.join("sub/x.img"), other.join("x.img")] {
        diskhist_fails(
            &["export", p(&f.store), "--at", "latest", "-o", p(&target)],
            1,
            "inside the diskhist store",
        );
    }
    assert!(!other.join("x.img").exists() && !other.join("sub/x.img").exists());
    // A shell redirection into the store: nothing more is written there.
    let exe = p(bin());
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{exe} export {} --at latest >> {}",
            p(&f.store),
            p(&log)
        ))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("inside the diskhist store"));
    assert_eq!(snapshot(&f.store), before, "the store changed");
    diskhist_ok(&["verify", p(&f.store)]);
}

#[test]
fn an_existing_file_is_refused_without_force_and_replaced_with_it() {
    let f = fixture();
    let out = f.path("out.img");
    std::fs::write(&out, b"an earlier export, or a case note").unwrap();
    let err = diskhist_fails(
        &["export", p(&f.store), "--at", "latest", "-o", p(&out)],
        1,
        "exists",
    );
    assert!(err.contains("--force"), "{err}");
    assert_eq!(
        std::fs::read(&out).unwrap(),
        b"an earlier export, or a case note"
    );
    let stream = f.path("h.stream");
    std::fs::write(&stream, b"keep").unwrap();
    diskhist_fails(&["dump", p(&f.store), "-o", p(&stream)], 1, "exists");
    assert_eq!(std::fs::read(&stream).unwrap(), b"keep");
    assert_eq!(names_in(f.dir.path()), ["h.stream", "out.img", "store"]);

    let o = diskhist_ok(&[
        "export",
        p(&f.store),
        "--at",
        "latest",
        "-o",
        p(&out),
        "--force",
    ]);
    assert_eq!(std::fs::read(&out).unwrap(), f.disk);
    let line = String::from_utf8(o.stdout).unwrap();
    assert!(line.ends_with(&format!("  {}\n", p(&out))), "{line}");
    diskhist_ok(&["dump", p(&f.store), "-o", p(&stream), "--force"]);
    assert!(std::fs::read(&stream).unwrap().starts_with(b"DHSTREAM"));
    // No temporary file is left beside them.
    assert_eq!(names_in(f.dir.path()), ["h.stream", "out.img", "store"]);
}

#[test]
fn a_new_export_is_whole_private_and_sparse() {
    let f = fixture();
    let out = f.path("new.img");
    diskhist_ok(&["export", p(&f.store), "--at", "latest", "-o", p(&out)]);
    let meta = std::fs::metadata(&out).unwrap();
    assert_eq!(meta.len(), MIB as u64);
    assert_eq!(std::fs::read(&out).unwrap(), f.disk);
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert!(
        meta.blocks() * 512 < (MIB / 2) as u64,
        "{} bytes allocated for a disk of mostly zeros",
        meta.blocks() * 512
    );
    // A dumped stream written to a file carries the whole history.
    let stream = f.path("h.stream");
    diskhist_ok(&["dump", p(&f.store), "-o", p(&stream)]);
    let copy = f.path("copy");
    diskhist_ok(&["init", p(&copy), "--size", "1M"]);
    diskhist_ok(&["ingest", p(&copy), "--format", "stream", p(&stream)]);
    assert_eq!(chain_head(&f.store), chain_head(&copy));
    assert_eq!(
        names_in(f.dir.path()),
        ["copy", "h.stream", "new.img", "store"]
    );
}

/// Regression: export called set_len on /dev/full and said "Invalid
/// argument". Devices are written in place, sequentially.
#[test]
fn dev_full_says_no_space_and_dev_null_works() {
    let f = fixture();
    for cmd in [
        vec!["export", p(&f.store), "--at", "latest", "-o", "/dev/full"],
        vec!["dump", p(&f.store), "-o", "/dev/full"],
    ] {
        let err = diskhist_fails(&cmd, 1, "no space left on device");
        assert!(err.contains("/dev/full"), "{err}");
    }
    let o = diskhist_ok(&["export", p(&f.store), "--at", "latest", "-o", "/dev/null"]);
    assert!(String::from_utf8(o.stdout)
        .unwrap()
        .ends_with("  /dev/null\n"));
    diskhist_ok(&["dump", p(&f.store), "-o", "/dev/null"]);
}

/// SIGTERM in the middle of a long export: the target never appears, the
/// temporary file is removed, and the command says it was interrupted.
#[test]
fn sigterm_during_a_large_export_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    // An empty 64 GiB disk: exporting it takes far longer than the test
    // waits, yet costs no space (the export is sparse).
    diskhist_ok(&["init", p(&store), "--size", "64G"]);
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let target = out_dir.join("big.img");
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let mut child = Spawned::start(&mut diskhist_cmd([
            "export",
            p(&store),
            "--at",
            "latest",
            "-o",
            p(&target),
        ]));
        let start = Instant::now();
        while std::fs::read_dir(&out_dir).unwrap().next().is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "export never started writing"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(200));
        child.signal(sig);
        let status = child.wait();
        let err = child.stderr();
        assert_eq!(status.code(), Some(1), "signal {sig}: {err}");
        assert!(err.contains("interrupted"), "signal {sig}: {err}");
        assert!(
            names_in(&out_dir).is_empty(),
            "signal {sig} left {:?}",
            names_in(&out_dir)
        );
    }
}

#[test]
fn binary_output_to_a_terminal_is_refused_and_to_a_pipe_written() {
    let f = fixture();
    let exe = p(bin());
    for cmd in [
        format!("{exe} export {} --at latest", p(&f.store)),
        format!("{exe} dump {}", p(&f.store)),
    ] {
        let (tty, code) = on_a_terminal(&cmd);
        assert_eq!(code, Some(1), "{cmd}: {tty}");
        assert!(
            tty.contains("refusing to write binary data to a terminal; use -o FILE or a pipe"),
            "{cmd}: {tty}"
        );
        assert!(
            tty.len() < 1000,
            "{cmd} wrote {} bytes to the terminal",
            tty.len()
        );
    }
    let o = diskhist_ok(&["export", p(&f.store), "--at", "latest"]);
    assert_eq!(o.stdout, f.disk);
    let o = diskhist_ok(&["dump", p(&f.store)]);
    assert!(o.stdout.starts_with(b"DHSTREAM"));
    // To a file through a redirection, too.
    let out = f.path("redirected.img");
    let st = diskhist_cmd(["export", p(&f.store), "--at", "latest"])
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(std::fs::read(&out).unwrap(), f.disk);
}

#[test]
fn an_output_in_a_missing_directory_or_on_a_directory_is_refused() {
    let f = fixture();
    let missing = f.path("no/such/dir/x.img");
    diskhist_fails(
        &["export", p(&f.store), "--at", "latest", "-o", p(&missing)],
        1,
        "no/such/dir",
    );
    let d = f.path("adir");
    std::fs::create_dir(&d).unwrap();
    diskhist_fails(
        &[
            "export",
            p(&f.store),
            "--at",
            "latest",
            "-o",
            p(&d),
            "--force",
        ],
        1,
        "is a directory",
    );
    assert!(names_in(&d).is_empty());
}
