//! Outputs never destroy evidence (issue 9, point 1), end to end with the
//! real binary: `export -o` and `dump -o` refuse an existing file without
//! `--force` and any path inside a store with it; binary data is not sent
//! to a terminal; an output that fails or is interrupted leaves nothing
//! that looks complete; devices are written in place.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_diskhist");
const MIB: usize = 1 << 20;

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run diskhist")
}

fn ok(args: &[&str]) -> Output {
    let o = run(args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Run `args`, expect exit status `code` and `needle` in standard error.
fn fails(args: &[&str], code: i32, needle: &str) -> String {
    let o = run(args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
    assert!(
        err.contains(needle),
        "{args:?}: expected {needle:?} in: {err}"
    );
    err
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Run `command` under script(1), which gives it a terminal; return what
/// the terminal showed and the command's exit status.
fn on_a_terminal(command: &str) -> (String, Option<i32>) {
    let o = Command::new("script")
        .args(["-qec", command, "/dev/null"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("script(1) from util-linux");
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        o.status.code(),
    )
}

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
    ok(&["init", s(&store), "--size", "1M", "--block-size", "4096"]);
    let mut disk = vec![0u8; MIB];
    for (i, b) in disk[8192..20480].iter_mut().enumerate() {
        *b = (i * 7 % 251) as u8;
    }
    std::fs::write(&img, &disk).unwrap();
    ok(&["import", s(&store), s(&img), "--at", "2026-11-23T06:30:15Z"]);
    disk[900_000..900_005].copy_from_slice(b"hello");
    std::fs::write(&img, &disk).unwrap();
    ok(&["import", s(&store), s(&img), "--at", "2026-11-23T06:30:16Z"]);
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
        let mut args = vec!["export", s(&f.store), "--at", "latest", "-o", s(&log)];
        if force {
            args.push("--force");
        }
        fails(&args, 1, "inside the diskhist store");
    }
    for inside in ["index/MANIFEST", "index/new.img", "new.img"] {
        let p = f.store.join(inside);
        fails(
            &["export", s(&f.store), "--at", "#1", "-o", s(&p), "--force"],
            1,
            "inside the diskhist store",
        );
        fails(
            &["dump", s(&f.store), "-o", s(&p), "--force"],
            1,
            "inside the diskhist store",
        );
    }
    // Through a symbolic link from outside, and into another store.
    let link = f.path("innocent.img");
    std::os::unix::fs::symlink(&log, &link).unwrap();
    fails(
        &[
            "export",
            s(&f.store),
            "--at",
            "latest",
            "-o",
            s(&link),
            "--force",
        ],
        1,
        "inside the diskhist store",
    );
    let other = f.path("other");
    ok(&["init", s(&other), "--size", "1M"]);
    std::fs::create_dir(other.join("sub")).unwrap();
    for p in [other.join("sub/x.img"), other.join("x.img")] {
        fails(
            &["export", s(&f.store), "--at", "latest", "-o", s(&p)],
            1,
            "inside the diskhist store",
        );
    }
    assert!(!other.join("x.img").exists() && !other.join("sub/x.img").exists());
    // A shell redirection into the store: nothing more is written there.
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{BIN} export {} --at latest >> {}",
            s(&f.store),
            s(&log)
        ))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("inside the diskhist store"));
    assert_eq!(snapshot(&f.store), before, "the store changed");
    ok(&["verify", s(&f.store)]);
}

#[test]
fn an_existing_file_is_refused_without_force_and_replaced_with_it() {
    let f = fixture();
    let out = f.path("out.img");
    std::fs::write(&out, b"an earlier export, or a case note").unwrap();
    let err = fails(
        &["export", s(&f.store), "--at", "latest", "-o", s(&out)],
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
    fails(&["dump", s(&f.store), "-o", s(&stream)], 1, "exists");
    assert_eq!(std::fs::read(&stream).unwrap(), b"keep");
    assert_eq!(names_in(f.dir.path()), ["h.stream", "out.img", "store"]);

    let o = ok(&[
        "export",
        s(&f.store),
        "--at",
        "latest",
        "-o",
        s(&out),
        "--force",
    ]);
    assert_eq!(std::fs::read(&out).unwrap(), f.disk);
    let line = String::from_utf8(o.stdout).unwrap();
    assert!(line.ends_with(&format!("  {}\n", s(&out))), "{line}");
    ok(&["dump", s(&f.store), "-o", s(&stream), "--force"]);
    assert!(std::fs::read(&stream).unwrap().starts_with(b"DHSTREAM"));
    // No temporary file is left beside them.
    assert_eq!(names_in(f.dir.path()), ["h.stream", "out.img", "store"]);
}

#[test]
fn a_new_export_is_whole_private_and_sparse() {
    let f = fixture();
    let out = f.path("new.img");
    ok(&["export", s(&f.store), "--at", "latest", "-o", s(&out)]);
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
    ok(&["dump", s(&f.store), "-o", s(&stream)]);
    let copy = f.path("copy");
    ok(&["init", s(&copy), "--size", "1M"]);
    ok(&["ingest", s(&copy), "--format", "stream", s(&stream)]);
    let chain = |p: &Path| {
        let info = String::from_utf8(ok(&["info", s(p)]).stdout).unwrap();
        info.lines()
            .find(|l| l.starts_with("chain head"))
            .unwrap()
            .to_string()
    };
    assert_eq!(chain(&f.store), chain(&copy));
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
        vec!["export", s(&f.store), "--at", "latest", "-o", "/dev/full"],
        vec!["dump", s(&f.store), "-o", "/dev/full"],
    ] {
        let err = fails(&cmd, 1, "no space left on device");
        assert!(err.contains("/dev/full"), "{err}");
    }
    let o = ok(&["export", s(&f.store), "--at", "latest", "-o", "/dev/null"]);
    assert!(String::from_utf8(o.stdout)
        .unwrap()
        .ends_with("  /dev/null\n"));
    ok(&["dump", s(&f.store), "-o", "/dev/null"]);
}

/// SIGTERM in the middle of a long export: the target never appears, the
/// temporary file is removed, and the command says it was interrupted.
#[test]
fn sigterm_during_a_large_export_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    // An empty 64 GiB disk: exporting it takes far longer than the test
    // waits, yet costs no space (the export is sparse).
    ok(&["init", s(&store), "--size", "64G"]);
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let target = out_dir.join("big.img");
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let child = Command::new(BIN)
            .args(["export", s(&store), "--at", "latest", "-o", s(&target)])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while std::fs::read_dir(&out_dir).unwrap().next().is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "export never started writing"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(200));
        // SAFETY: kill(2) on our own child's pid; no memory involved.
        unsafe { libc::kill(child.id() as i32, sig) };
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "signal {sig}: {err}");
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
    for cmd in [
        format!("{BIN} export {} --at latest", s(&f.store)),
        format!("{BIN} dump {}", s(&f.store)),
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
    let o = ok(&["export", s(&f.store), "--at", "latest"]);
    assert_eq!(o.stdout, f.disk);
    let o = ok(&["dump", s(&f.store)]);
    assert!(o.stdout.starts_with(b"DHSTREAM"));
    // To a file through a redirection, too.
    let out = f.path("redirected.img");
    let st = Command::new(BIN)
        .args(["export", s(&f.store), "--at", "latest"])
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
    fails(
        &["export", s(&f.store), "--at", "latest", "-o", s(&missing)],
        1,
        "no/such/dir",
    );
    let d = f.path("adir");
    std::fs::create_dir(&d).unwrap();
    fails(
        &[
            "export",
            s(&f.store),
            "--at",
            "latest",
            "-o",
            s(&d),
            "--force",
        ],
        1,
        "is a directory",
    );
    assert!(names_in(&d).is_empty());
}
