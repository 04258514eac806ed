//! Readers beside a live writer raise no false alarm: `verify`, `info`,
//! `log` and `export` run in a loop while imports record (each a batch
//! whose records no reader counts until it ends) and while `serve` records
//! NBD writes with frequent index flushes and merges; every run succeeds
//! and warns of nothing. A real byte flipped in the log meanwhile is still
//! reported by `verify`.

use diskhist_test_common::{diskhist, diskhist_output, incompressible_xorshift64, p, Served, MIB};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Run one reader command; it must succeed without a warning, an error or
/// a word of damage. Returns its standard output.
fn reader(args: &[&str]) -> String {
    let o = diskhist_output(args);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        o.status.success(),
        "{args:?} failed beside a live writer: {err}{out}"
    );
    for bad in ["warning", "WARN", "damaged", "torn", "missing", "ERROR"] {
        assert!(
            !err.contains(bad) && !out.contains(bad),
            "{args:?} said {bad:?} beside a live writer: {err}{out}"
        );
    }
    out
}

/// One round of every reader; returns how many records verify counted.
fn read_everything(store: &Path) -> u64 {
    let v = reader(&["verify", p(store)]);
    let records: u64 = v
        .strip_prefix("ok: ")
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("verify said: {v}"));
    let info = reader(&["info", p(store)]);
    assert!(info.contains("records:"), "{info}");
    reader(&["log", p(store), "--to", "#1"]);
    reader(&["export", p(store), "--at", "latest", "-o", "/dev/null"]);
    records
}

/// Flip one byte of record 1's checksum (which no reader of states checks
/// once the record is indexed: only verify does) and check that verify
/// names record 1; then put it back.
fn flipped_byte_is_reported(store: &Path) {
    use std::os::unix::fs::FileExt;
    let log = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(store.join("log"))
        .unwrap();
    let mut prefix = [0u8; 8];
    log.read_exact_at(&mut prefix, 0).unwrap();
    let at = u64::from(diskhist::testing::format::peek_record_len(&prefix).unwrap()) - 1;
    let mut b = [0u8; 1];
    log.read_exact_at(&mut b, at).unwrap();
    log.write_all_at(&[b[0] ^ 0x20], at).unwrap();
    let o = diskhist_output(&["verify", p(store)]);
    log.write_all_at(&b, at).unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a real flip went unreported: {err}"
    );
    assert!(err.contains("record #1 at log byte 0"), "{err}");
}

#[test]
fn readers_beside_imports_never_raise_a_false_alarm() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("S");
    let size = 192 * MIB;
    diskhist(&["init", p(&store), "--size", &size.to_string()]);
    let images: Vec<_> = (0..4u64)
        .map(|i| {
            let path = dir.path().join(format!("{i}.img"));
            std::fs::write(&path, incompressible_xorshift64(size, 10 + i)).unwrap();
            path
        })
        .collect();
    diskhist(&[
        "import",
        p(&store),
        p(&images[0]),
        "--at",
        "2026-11-23T06:30:15Z",
    ]);
    let done = Arc::new(AtomicBool::new(false));
    let importer = {
        let (store, images, done) = (store.clone(), images.clone(), done.clone());
        std::thread::spawn(move || {
            for round in 0..3 {
                for img in &images[1..] {
                    let o = diskhist_output(&["import", p(&store), p(img)]);
                    assert!(
                        o.status.success(),
                        "import {round}: {}",
                        String::from_utf8_lossy(&o.stderr)
                    );
                }
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let mut rounds = 0;
    let mut last = 0;
    let mut flipped = false;
    while !done.load(Ordering::SeqCst) {
        let records = read_everything(&store);
        assert!(records >= last, "the history shrank: {last} -> {records}");
        last = records;
        rounds += 1;
        if rounds == 3 {
            flipped_byte_is_reported(&store);
            flipped = true;
        }
    }
    importer.join().unwrap();
    assert!(
        flipped && rounds >= 4,
        "only {rounds} rounds beside the imports"
    );
    // 10 imports of 24 extents (one per 8 MiB of a fully new image) and a
    // mark each: nothing lost, nothing doubled.
    assert_eq!(read_everything(&store), 10 * 25);
}

#[test]
fn readers_beside_serve_never_raise_a_false_alarm() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("S");
    diskhist(&["init", p(&store), "--size", "64M"]);
    let src = dir.path().join("src.img");
    std::fs::write(&src, incompressible_xorshift64(64 * MIB, 7)).unwrap();
    let sock = dir.path().join("nbd.sock");
    // Small index flushes: runs written and merged all the time.
    let serve = Served::start(&store, &sock, &["--index-flush-blocks", "256"]);
    let uri = format!("nbd+unix:///?socket={}", sock.display());
    // One small write first, so that record 1 exists to be flipped.
    let o = Command::new("qemu-io")
        .args(["-f", "raw", "-c", "write -P 0x5a 0 4k", &uri])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (src, uri, done) = (src.clone(), uri.clone(), done.clone());
        std::thread::spawn(move || {
            for round in 0..6 {
                let o = Command::new("nbdcopy")
                    .args(["--request-size=65536", p(&src), &uri])
                    .output()
                    .unwrap();
                assert!(
                    o.status.success(),
                    "nbdcopy {round}: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let mut rounds = 0;
    let mut last = 0;
    while !done.load(Ordering::SeqCst) {
        let records = read_everything(&store);
        assert!(records >= last, "the history shrank: {last} -> {records}");
        last = records;
        rounds += 1;
        if rounds == 2 {
            flipped_byte_is_reported(&store);
        }
    }
    writer.join().unwrap();
    assert!(rounds >= 3, "only {rounds} rounds beside serve");
    read_everything(&store);
    assert!(serve.stop().0.success());
    read_everything(&store);
}
