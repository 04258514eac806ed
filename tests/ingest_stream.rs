//! `diskhist ingest --format stream` into stores that already hold some of
//! the history, none of it, or another history (issue 9, point 2: a history
//! is never recorded twice, and never half-written then found wrong), end
//! to end with the real binary and `diskhist dump`.

use diskhist::producers::stream::{StreamReader, StreamWriter};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_diskhist");
/// Records in the source store.
const N: usize = 5;

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run diskhist")
}

/// Run with `input` on standard input, through a pipe.
fn run_piped(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run diskhist");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    // A refused stream is not read to its end: the pipe may close early.
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(o.status.success(), "{args:?} failed: {}", stderr(&o));
    String::from_utf8(o.stdout).unwrap()
}

/// Exit 1, with `needle` in the message; the message is returned.
fn refused(o: &Output, needle: &str) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    err
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn dump(store: &Path, extra: &[&str]) -> Vec<u8> {
    let o = Command::new(BIN)
        .arg("dump")
        .arg(store)
        .args(extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "dump: {}", stderr(&o));
    o.stdout
}

fn ingest(store: &Path, stream: &Path) -> Output {
    run(&["ingest", s(store), "--format", "stream", s(stream)])
}

fn records(store: &Path) -> usize {
    ok(&["log", s(store)]).lines().count()
}

fn chain_head(store: &Path) -> String {
    ok(&["info", s(store)])
        .lines()
        .find(|l| l.starts_with("chain head"))
        .expect("info shows the chain head")
        .to_string()
}

fn verify_ok(store: &Path) {
    let o = run(&["verify", s(store)]);
    assert!(o.status.success(), "verify: {}", stderr(&o));
}

/// Every file of a store and its bytes, but `lock`, which each writer
/// rewrites with its own description when it takes the lock.
fn files(store: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, root, out);
            } else if p.file_name().unwrap() != "lock" {
                out.insert(
                    p.strip_prefix(root).unwrap().into(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(store, store, &mut out);
    out
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    /// A 1 MiB store holding `N` records, one extent each.
    source: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let source = root.join("source");
        history(&source, 0);
        Fixture {
            _dir: dir,
            root,
            source,
        }
    }

    /// An empty store of the source's size.
    fn empty(&self, name: &str) -> PathBuf {
        let p = self.root.join(name);
        ok(&["init", s(&p), "--size", "1M"]);
        p
    }

    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.root.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

/// A store at `store` with `N` Write records, one extent each, written
/// with the library's writer at times 06:30:10Z, 06:30:11Z...; `salt` makes
/// the content (and so the history) differ.
fn history(store: &Path, salt: u8) {
    use diskhist::store::{Op, OpFlags, Writer};
    ok(&["init", s(store), "--size", "1M"]);
    let mut w = Writer::open(store).unwrap();
    for i in 0..N {
        let data: Vec<u8> = (0..6000)
            .map(|j| (j * 7 + i * 13) as u8 ^ salt | 1)
            .collect();
        let time = diskhist::time::parse_time(&format!("2026-11-23T06:30:{:02}Z", 10 + i));
        let Ok(diskhist::TimeSpec::At(t)) = time else {
            panic!("{time:?}")
        };
        let op = Op::Write {
            offset_bytes: 65536 * (i as u64 + 1),
            data: &data,
        };
        w.append(t, op, OpFlags::default()).unwrap();
    }
    w.close().unwrap();
    assert_eq!(records(store), N);
}

/// Byte ranges of the records of a stream (version 1 or 2), after the
/// header (and start record): `(start, payload_start, crc_at)` each, the
/// end record last.
fn record_spans(stream: &[u8]) -> Vec<(usize, usize, usize)> {
    let version = u32::from_le_bytes(stream[8..12].try_into().unwrap());
    let header_len = if version == 1 { 44 } else { 76 };
    let mut at = 32;
    let mut spans = Vec::new();
    while at < stream.len() {
        let plen = u32::from_le_bytes(stream[at + 40..at + 44].try_into().unwrap()) as usize;
        let crc_at = at + header_len + plen;
        // Version 2's start record (kind 255) is not a record of the history.
        if stream[at + 4] != 255 {
            spans.push((at, at + header_len, crc_at));
        }
        at = crc_at + 4;
    }
    spans
}

#[test]
fn the_same_dump_piped_in_again_records_nothing() {
    let f = Fixture::new();
    let before = files(&f.source);
    let head = chain_head(&f.source);
    let o = run_piped(
        &["ingest", s(&f.source), "--format", "stream", "-"],
        &dump(&f.source, &[]),
    );
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "nothing recorded: the store already holds all {N} records of the stream"
        )),
        "{err}"
    );
    assert_eq!(records(&f.source), N);
    assert_eq!(chain_head(&f.source), head);
    assert!(files(&f.source) == before, "the store changed");
    verify_ok(&f.source);
}

#[test]
fn a_dump_into_a_copy_holding_its_first_records_resumes_after_them() {
    let f = Fixture::new();
    let copy = f.empty("copy");
    let first_two = f.file("first-two.stream", &dump(&f.source, &["--to", "#2"]));
    assert!(ingest(&copy, &first_two).status.success());
    assert_eq!(records(&copy), 2);

    let whole = f.file("whole.stream", &dump(&f.source, &[]));
    let o = ingest(&copy, &whole);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(
            "resuming: records 1..2 of the stream are already in the store; \
             recording from record 3"
        ),
        "{err}"
    );
    assert!(
        err.contains("recorded 3 records (#3..#5); 2 already in the store were skipped"),
        "{err}"
    );
    assert_eq!(records(&copy), N);
    assert_eq!(chain_head(&copy), chain_head(&f.source));
    assert_eq!(ok(&["log", s(&copy)]), ok(&["log", s(&f.source)]));
    verify_ok(&copy);
}

#[test]
fn a_stream_of_another_history_is_refused_and_changes_nothing() {
    let f = Fixture::new();
    let other = f.root.join("other");
    history(&other, 0x5a);
    let before = files(&other);
    let whole = f.file("whole.stream", &dump(&f.source, &[]));
    let err = refused(
        &ingest(&other, &whole),
        "stream record #1 conflicts with the store's record #1",
    );
    assert!(err.contains("nothing was recorded"), "{err}");
    assert!(
        files(&other) == before,
        "a refused stream changed the store"
    );
    // The same through a pipe, and a partial dump that starts at a point
    // where the two histories differ.
    refused(
        &run_piped(
            &["ingest", s(&other), "--format", "stream", "-"],
            &dump(&f.source, &[]),
        ),
        "conflicts with the store's record #1",
    );
    let tail = f.file("tail.stream", &dump(&f.source, &["--from", "#4"]));
    refused(
        &ingest(&other, &tail),
        "continues its history after record #3, and the store's history differs there",
    );
    assert!(
        files(&other) == before,
        "a refused stream changed the store"
    );
    verify_ok(&other);
}

#[test]
fn a_partial_dump_into_an_empty_store_is_refused_before_anything_is_written() {
    let f = Fixture::new();
    let empty = f.empty("empty");
    let before = files(&empty);
    let tail = f.file("tail.stream", &dump(&f.source, &["--from", "#3"]));
    refused(&ingest(&empty, &tail), "ingest the earlier records first");
    assert_eq!(records(&empty), 0);
    assert!(
        files(&empty) == before,
        "a refused stream changed the store"
    );

    // A store holding less than the records before the tail: still a gap.
    let head = f.file("head.stream", &dump(&f.source, &["--to", "#1"]));
    assert!(ingest(&empty, &head).status.success());
    let before = files(&empty);
    refused(&ingest(&empty, &tail), "ingest records #2..#2 first");
    assert!(
        files(&empty) == before,
        "a refused stream changed the store"
    );

    // Once the store holds the records before it, the tail continues it.
    let second = f.file(
        "second.stream",
        &dump(&f.source, &["--from", "#2", "--to", "#2"]),
    );
    assert!(ingest(&empty, &second).status.success());
    let o = ingest(&empty, &tail);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(chain_head(&empty), chain_head(&f.source));
    verify_ok(&empty);
}

#[test]
fn a_record_altered_in_transit_is_not_recorded_nor_anything_after_it() {
    let f = Fixture::new();
    let good = dump(&f.source, &[]);
    // Record 3's payload altered and its checksum recomputed, as someone
    // changing the evidence on its way would.
    let (start, payload, crc_at) = record_spans(&good)[2];
    let mut bad = good.clone();
    bad[payload + 100] ^= 0xff;
    let crc = crc32c::crc32c(&bad[start..crc_at]);
    bad[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());

    let copy = f.empty("copy");
    let bad = f.file("bad.stream", &bad);
    refused(&ingest(&copy, &bad), "record #3 of its history");
    assert_eq!(records(&copy), 2, "the records before it are kept, no more");
    verify_ok(&copy);
    let at2 = |store: &Path| ok(&["log", s(store), "--to", "#2"]);
    assert_eq!(at2(&copy), at2(&f.source));

    // The stream as dumped resumes after the verified prefix.
    let good = f.file("good.stream", &good);
    let o = ingest(&copy, &good);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("resuming: records 1..2"),
        "{}",
        stderr(&o)
    );
    assert_eq!(chain_head(&copy), chain_head(&f.source));
    verify_ok(&copy);
}

#[test]
fn a_truncated_stream_keeps_its_verified_prefix_and_a_rerun_resumes() {
    let f = Fixture::new();
    let good = dump(&f.source, &[]);
    let (_, payload, _) = record_spans(&good)[3];
    let cut = f.file("cut.stream", &good[..payload + 10]);
    let copy = f.empty("copy");
    refused(&ingest(&copy, &cut), "truncated after 3 whole records");
    assert_eq!(records(&copy), 3);
    verify_ok(&copy);

    let good = f.file("good.stream", &good);
    let o = ingest(&copy, &good);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("resuming: records 1..3"), "{err}");
    assert!(err.contains("recorded 2 records (#4..#5)"), "{err}");
    assert_eq!(records(&copy), N);
    assert_eq!(chain_head(&copy), chain_head(&f.source));
    verify_ok(&copy);
}

/// A dump made before stream version 2, from the same history: read from a
/// file it is checked whole and recorded (or skipped where already there);
/// from a pipe, or cut short, it is refused before anything is written.
#[test]
fn a_version_1_dump_is_still_ingested_from_a_file_and_never_half_written() {
    let f = Fixture::new();
    let v2 = dump(&f.source, &[]);
    let mut r = StreamReader::new(&v2[..]).unwrap();
    let mut w = StreamWriter::new_v1(Vec::new(), r.header()).unwrap();
    while let Some(rec) = r.next_record().unwrap() {
        w.record(&rec).unwrap();
    }
    let v1 = w.finish(r.end().unwrap().chain).unwrap();

    let copy = f.empty("copy");
    let before = files(&copy);
    refused(
        &run_piped(&["ingest", s(&copy), "--format", "stream", "-"], &v1),
        "version 1 stream",
    );
    let (_, payload, _) = record_spans(&v1)[3];
    let cut = f.file("cut.stream", &v1[..payload + 10]);
    refused(&ingest(&copy, &cut), "nothing was recorded");
    assert!(files(&copy) == before, "a refused stream changed the store");

    let v1 = f.file("v1.stream", &v1);
    let o = ingest(&copy, &v1);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(chain_head(&copy), chain_head(&f.source));
    verify_ok(&copy);
    let o = ingest(&copy, &v1);
    assert!(
        stderr(&o).contains("already holds all 5 records"),
        "{}",
        stderr(&o)
    );
    assert_eq!(records(&copy), N);
}
