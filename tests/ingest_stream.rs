//! `diskhist ingest --format stream` into stores that already hold some of
//! the history, none of it, or another history (issue 9, point 2: a history
//! is never recorded twice, and never half-written then found wrong), end
//! to end with the real binary and `diskhist dump`.

use diskhist::producers::stream::{StreamReader, StreamWriter};
use diskhist_test_common::{
    chain_head, diskhist, diskhist_ok, diskhist_output, diskhist_with_input, failed_with, p,
    stderr_of, verify_ok,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

/// Records in the source store.
const N: usize = 5;

fn dump(store: &Path, extra: &[&str]) -> Vec<u8> {
    let mut args = vec!["dump", p(store)];
    args.extend_from_slice(extra);
    diskhist_ok(&args).stdout
}

fn ingest(store: &Path, stream: &Path) -> Output {
    diskhist_output(&["ingest", p(store), "--format", "stream", p(stream)])
}

fn records(store: &Path) -> usize {
    diskhist(&["log", p(store)]).lines().count()
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
        let path = self.root.join(name);
        diskhist(&["init", p(&path), "--size", "1M"]);
        path
    }

    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.root.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

/// A store at `store` with `N` Write records, one extent each, written
/// with the library's writer at times 06:30:10Z, 06:30:11Z...; `salt` makes
/// the content (and so the history) differ.
fn history(store: &Path, salt: u8) {
    use diskhist::store::{Op, OpFlags, Writer};
    diskhist(&["init", p(store), "--size", "1M"]);
    let mut w = Writer::open(store).unwrap();
    for i in 0..N {
        let data: Vec<u8> = (0..6000)
            .map(|j| (j * 7 + i * 13) as u8 ^ salt | 1)
            .collect();
        let time = diskhist::parse_time(&format!("2026-11-23T06:30:{:02}Z", 10 + i));
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
    let o = diskhist_with_input(
        &["ingest", p(&f.source), "--format", "stream", "-"],
        &dump(&f.source, &[]),
    );
    let err = stderr_of(&o);
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
    verify_ok(&f.source, "after the same dump again");
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
    let err = stderr_of(&o);
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
    assert_eq!(
        diskhist(&["log", p(&copy)]),
        diskhist(&["log", p(&f.source)])
    );
    verify_ok(&copy, "after resuming");
}

#[test]
fn a_stream_of_another_history_is_refused_and_changes_nothing() {
    let f = Fixture::new();
    let other = f.root.join("other");
    history(&other, 0x5a);
    let before = files(&other);
    let whole = f.file("whole.stream", &dump(&f.source, &[]));
    let err = failed_with(
        &ingest(&other, &whole),
        1,
        "stream record #1 conflicts with the store's record #1",
    );
    assert!(err.contains("nothing was recorded"), "{err}");
    assert!(
        files(&other) == before,
        "a refused stream changed the store"
    );
    // The same through a pipe, and a partial dump that starts at a point
    // where the two histories differ.
    failed_with(
        &diskhist_with_input(
            &["ingest", p(&other), "--format", "stream", "-"],
            &dump(&f.source, &[]),
        ),
        1,
        "conflicts with the store's record #1",
    );
    let tail = f.file("tail.stream", &dump(&f.source, &["--from", "#4"]));
    failed_with(
        &ingest(&other, &tail),
        1,
        "continues its history after record #3, and the store's history differs there",
    );
    assert!(
        files(&other) == before,
        "a refused stream changed the store"
    );
    verify_ok(&other, "after the refusals");
}

#[test]
fn a_partial_dump_into_an_empty_store_is_refused_before_anything_is_written() {
    let f = Fixture::new();
    let empty = f.empty("empty");
    let before = files(&empty);
    let tail = f.file("tail.stream", &dump(&f.source, &["--from", "#3"]));
    failed_with(
        &ingest(&empty, &tail),
        1,
        "ingest the earlier records first",
    );
    assert_eq!(records(&empty), 0);
    assert!(
        files(&empty) == before,
        "a refused stream changed the store"
    );

    // A store holding less than the records before the tail: still a gap.
    let head = f.file("head.stream", &dump(&f.source, &["--to", "#1"]));
    assert!(ingest(&empty, &head).status.success());
    let before = files(&empty);
    failed_with(&ingest(&empty, &tail), 1, "ingest records #2..#2 first");
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
    assert!(o.status.success(), "{}", stderr_of(&o));
    assert_eq!(chain_head(&empty), chain_head(&f.source));
    verify_ok(&empty, "after the tail");
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
    failed_with(&ingest(&copy, &bad), 1, "record #3 of its history");
    assert_eq!(records(&copy), 2, "the records before it are kept, no more");
    verify_ok(&copy, "after the altered record");
    let at2 = |store: &Path| diskhist(&["log", p(store), "--to", "#2"]);
    assert_eq!(at2(&copy), at2(&f.source));

    // The stream as dumped resumes after the verified prefix.
    let good = f.file("good.stream", &good);
    let o = ingest(&copy, &good);
    assert!(o.status.success(), "{}", stderr_of(&o));
    assert!(
        stderr_of(&o).contains("resuming: records 1..2"),
        "{}",
        stderr_of(&o)
    );
    assert_eq!(chain_head(&copy), chain_head(&f.source));
    verify_ok(&copy, "after the stream as dumped");
}

#[test]
fn a_truncated_stream_keeps_its_verified_prefix_and_a_rerun_resumes() {
    let f = Fixture::new();
    let good = dump(&f.source, &[]);
    let (_, payload, _) = record_spans(&good)[3];
    let cut = f.file("cut.stream", &good[..payload + 10]);
    let copy = f.empty("copy");
    failed_with(&ingest(&copy, &cut), 1, "truncated after 3 whole records");
    assert_eq!(records(&copy), 3);
    verify_ok(&copy, "after the truncated stream");

    let good = f.file("good.stream", &good);
    let o = ingest(&copy, &good);
    let err = stderr_of(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("resuming: records 1..3"), "{err}");
    assert!(err.contains("recorded 2 records (#4..#5)"), "{err}");
    assert_eq!(records(&copy), N);
    assert_eq!(chain_head(&copy), chain_head(&f.source));
    verify_ok(&copy, "after the rerun");
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
    failed_with(
        &diskhist_with_input(&["ingest", p(&copy), "--format", "stream", "-"], &v1),
        1,
        "version 1 stream",
    );
    let (_, payload, _) = record_spans(&v1)[3];
    let cut = f.file("cut.stream", &v1[..payload + 10]);
    failed_with(&ingest(&copy, &cut), 1, "nothing was recorded");
    assert!(files(&copy) == before, "a refused stream changed the store");

    let v1 = f.file("v1.stream", &v1);
    let o = ingest(&copy, &v1);
    assert!(o.status.success(), "{}", stderr_of(&o));
    assert_eq!(chain_head(&copy), chain_head(&f.source));
    verify_ok(&copy, "after the version 1 dump");
    let o = ingest(&copy, &v1);
    assert!(
        stderr_of(&o).contains("already holds all 5 records"),
        "{}",
        stderr_of(&o)
    );
    assert_eq!(records(&copy), N);
}
