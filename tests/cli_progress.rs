//! Progress on long work (issue 9, point 5): `export`, `dump` and `verify`
//! draw a progress bar on standard error when it is a terminal (script(1)
//! gives them one), print nothing extra when it is not, and nothing with
//! `--quiet`.

use diskhist_test_common::{bin, diskhist_ok, on_a_terminal, p};
use std::path::{Path, PathBuf};

/// Run `command` under script(1) with its standard output sent to
/// /dev/null, so that the terminal shows only its standard error.
fn stderr_on_a_terminal(command: &str) -> String {
    let (tty, code) = on_a_terminal(&format!("{command} >/dev/null"));
    assert!(code == Some(0), "{command}: {tty}");
    tty
}

/// A 4 MiB store with one imported state.
fn fixture() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let img = dir.path().join("disk.img");
    diskhist_ok(&["init", p(&store), "--size", "4M"]);
    let disk: Vec<u8> = (0..4u32 << 20).map(|i| (i % 253) as u8).collect();
    std::fs::write(&img, &disk).unwrap();
    diskhist_ok(&["import", p(&store), p(&img), "--at", "2026-11-23T06:30:15Z"]);
    (dir, store)
}

#[test]
fn a_terminal_gets_a_progress_bar_with_total_rate_and_time_left() {
    let exe = p(bin());
    let (dir, store) = fixture();
    let out = dir.path().join("x.img");
    let tty = stderr_on_a_terminal(&format!(
        "{exe} export {} --at latest -o {}",
        p(&store),
        p(&out)
    ));
    assert!(tty.contains("4.00 MiB/4.00 MiB"), "{tty:?}");
    assert!(tty.contains("MiB/s") && tty.contains("left"), "{tty:?}");
    let tty = stderr_on_a_terminal(&format!(
        "{exe} dump {} -o {}",
        p(&store),
        p(&dir.path().join("h.stream"))
    ));
    // One import: its extent and its mark.
    assert!(tty.contains("2/2 records"), "{tty:?}");
    let tty = stderr_on_a_terminal(&format!("{exe} verify {}", p(&store)));
    let log_bytes = std::fs::metadata(store.join("log")).unwrap().len();
    assert!(log_bytes > 1024, "{log_bytes}");
    assert!(
        tty.contains(" KiB/") && tty.contains("left"),
        "verify of {log_bytes} log bytes: {tty:?}"
    );
}

#[test]
fn quiet_silences_the_bar_on_a_terminal() {
    let exe = p(bin());
    let (dir, store) = fixture();
    for cmd in [
        format!(
            "{exe} export {} --at latest -o {} --quiet",
            p(&store),
            p(&dir.path().join("x.img"))
        ),
        format!(
            "{exe} dump {} -o {} -q",
            p(&store),
            p(&dir.path().join("h.stream"))
        ),
        format!("{exe} verify {} --quiet", p(&store)),
    ] {
        let tty = stderr_on_a_terminal(&cmd);
        assert_eq!(tty, "", "{cmd}");
    }
}

#[test]
fn no_terminal_no_progress_output() {
    let (dir, store) = fixture();
    let o = diskhist_ok(&[
        "export",
        p(&store),
        "--at",
        "latest",
        "-o",
        p(&dir.path().join("x.img")),
    ]);
    assert_eq!(String::from_utf8_lossy(&o.stderr), "");
    let o = diskhist_ok(&["dump", p(&store), "-o", p(&dir.path().join("h.stream"))]);
    assert_eq!(String::from_utf8_lossy(&o.stderr), "");
    let o = diskhist_ok(&["verify", p(&store)]);
    assert_eq!(String::from_utf8_lossy(&o.stderr), "");
    // To a pipe, export prints only the image's SHA-256 on standard error.
    let o = diskhist_ok(&["export", p(&store), "--at", "latest"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.ends_with("  -\n"), "{err}");
}

#[test]
fn import_and_ingest_show_progress_on_a_terminal_only() {
    let exe = p(bin());
    let (dir, store) = fixture();
    let bar = |tty: &str| tty.contains("[=") && tty.contains("/s");
    // import: over the disk's size.
    let img = dir.path().join("other.img");
    std::fs::write(&img, vec![0x42u8; 4 << 20]).unwrap();
    let tty = stderr_on_a_terminal(&format!("{exe} import {} {}", p(&store), p(&img)));
    assert!(bar(&tty) && tty.contains("4.00 MiB/4.00 MiB"), "{tty:?}");
    let tty = stderr_on_a_terminal(&format!("{exe} import {} {} -q", p(&store), p(&img)));
    assert!(!bar(&tty) && tty.contains("recorded mark"), "{tty:?}");
    let o = diskhist_ok(&["import", p(&store), p(&img)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    // ingest of a stream file: over the file's size.
    let stream = dir.path().join("h.stream");
    diskhist_ok(&["dump", p(&store), "-o", p(&stream)]);
    let copy = dir.path().join("copy");
    diskhist_ok(&["init", p(&copy), "--size", "4M"]);
    let tty = stderr_on_a_terminal(&format!(
        "{exe} ingest {} --format stream {}",
        p(&copy),
        p(&stream)
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
    diskhist_ok(&["init", p(&dm), "--size", "16M"]);
    let tty = stderr_on_a_terminal(&format!("{exe} ingest {} {}", p(&dm), p(&fixture)));
    assert!(bar(&tty) && tty.contains("left"), "{tty:?}");
    let dm2 = dir.path().join("dm2");
    diskhist_ok(&["init", p(&dm2), "--size", "16M"]);
    let o = diskhist_ok(&["ingest", p(&dm2), p(&fixture)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!bar(&err), "{err}");
}
