//! Progress on long work (issue 9, point 5): `export`, `dump` and `verify`
//! draw a progress bar on standard error when it is a terminal (script(1)
//! gives them one), print nothing extra when it is not, and nothing with
//! `--quiet`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_diskhist");

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

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Run `command` under script(1) with its standard output sent to
/// /dev/null, so that the terminal shows only its standard error.
fn stderr_on_a_terminal(command: &str) -> String {
    let o = Command::new("script")
        .args(["-qec", &format!("{command} >/dev/null"), "/dev/null"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("script(1) from util-linux");
    let tty = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{command}: {tty}");
    tty
}

/// A 4 MiB store with one imported state.
fn fixture() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let img = dir.path().join("disk.img");
    ok(&["init", s(&store), "--size", "4M"]);
    let disk: Vec<u8> = (0..4u32 << 20).map(|i| (i % 253) as u8).collect();
    std::fs::write(&img, &disk).unwrap();
    ok(&["import", s(&store), s(&img), "--at", "2026-11-23T06:30:15Z"]);
    (dir, store)
}

#[test]
fn a_terminal_gets_a_progress_bar_with_total_rate_and_time_left() {
    let (dir, store) = fixture();
    let out = dir.path().join("x.img");
    let tty = stderr_on_a_terminal(&format!(
        "{BIN} export {} --at latest -o {}",
        s(&store),
        s(&out)
    ));
    assert!(tty.contains("4.00 MiB/4.00 MiB"), "{tty:?}");
    assert!(tty.contains("MiB/s") && tty.contains("left"), "{tty:?}");
    let tty = stderr_on_a_terminal(&format!(
        "{BIN} dump {} -o {}",
        s(&store),
        s(&dir.path().join("h.stream"))
    ));
    // One import: its extent and its mark.
    assert!(tty.contains("2/2 records"), "{tty:?}");
    let tty = stderr_on_a_terminal(&format!("{BIN} verify {}", s(&store)));
    let log_bytes = std::fs::metadata(store.join("log")).unwrap().len();
    assert!(log_bytes > 1024, "{log_bytes}");
    assert!(
        tty.contains(" KiB/") && tty.contains("left"),
        "verify of {log_bytes} log bytes: {tty:?}"
    );
}

#[test]
fn quiet_silences_the_bar_on_a_terminal() {
    let (dir, store) = fixture();
    for cmd in [
        format!(
            "{BIN} export {} --at latest -o {} --quiet",
            s(&store),
            s(&dir.path().join("x.img"))
        ),
        format!(
            "{BIN} dump {} -o {} -q",
            s(&store),
            s(&dir.path().join("h.stream"))
        ),
        format!("{BIN} verify {} --quiet", s(&store)),
    ] {
        let tty = stderr_on_a_terminal(&cmd);
        assert_eq!(tty, "", "{cmd}");
    }
}

#[test]
fn no_terminal_no_progress_output() {
    let (dir, store) = fixture();
    let o = ok(&[
        "export",
        s(&store),
        "--at",
        "latest",
        "-o",
        s(&dir.path().join("x.img")),
    ]);
    assert_eq!(String::from_utf8_lossy(&o.stderr), "");
    let o = ok(&["dump", s(&store), "-o", s(&dir.path().join("h.stream"))]);
    assert_eq!(String::from_utf8_lossy(&o.stderr), "");
    let o = ok(&["verify", s(&store)]);
    assert_eq!(String::from_utf8_lossy(&o.stderr), "");
    // To a pipe, export prints only the image's SHA-256 on standard error.
    let o = ok(&["export", s(&store), "--at", "latest"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.ends_with("  -\n"), "{err}");
}

#[test]
fn import_and_ingest_show_progress_on_a_terminal_only() {
    let (dir, store) = fixture();
    let bar = |tty: &str| tty.contains("[=") && tty.contains("/s");
    // import: over the disk's size.
    let img = dir.path().join("other.img");
    std::fs::write(&img, vec![0x42u8; 4 << 20]).unwrap();
    let tty = stderr_on_a_terminal(&format!("{BIN} import {} {}", s(&store), s(&img)));
    assert!(bar(&tty) && tty.contains("4.00 MiB/4.00 MiB"), "{tty:?}");
    let tty = stderr_on_a_terminal(&format!("{BIN} import {} {} -q", s(&store), s(&img)));
    assert!(!bar(&tty) && tty.contains("recorded mark"), "{tty:?}");
    let o = ok(&["import", s(&store), s(&img)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    // ingest of a stream file: over the file's size.
    let stream = dir.path().join("h.stream");
    ok(&["dump", s(&store), "-o", s(&stream)]);
    let copy = dir.path().join("copy");
    ok(&["init", s(&copy), "--size", "4M"]);
    let tty = stderr_on_a_terminal(&format!(
        "{BIN} ingest {} --format stream {}",
        s(&copy),
        s(&stream)
    ));
    let len = std::fs::metadata(&stream).unwrap().len();
    assert!(bar(&tty) && tty.contains("left"), "{tty:?}");
    assert!(
        tty.contains(&format!(
            "{:.2} MiB/{:.2} MiB",
            len as f64 / 1048576.0,
            len as f64 / 1048576.0
        )),
        "{len} bytes: {tty:?}"
    );
    // ingest of a dm-log-writes log: over the log's size.
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/ext4-history.dmlog");
    let dm = dir.path().join("dm");
    ok(&["init", s(&dm), "--size", "16M"]);
    let tty = stderr_on_a_terminal(&format!("{BIN} ingest {} {}", s(&dm), s(&fixture)));
    assert!(bar(&tty) && tty.contains("left"), "{tty:?}");
    let dm2 = dir.path().join("dm2");
    ok(&["init", s(&dm2), "--size", "16M"]);
    let o = ok(&["ingest", s(&dm2), s(&fixture)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!bar(&err), "{err}");
}
