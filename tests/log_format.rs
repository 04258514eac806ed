//! Record formats 1 and 2 (issue 14): one history recorded into a store of
//! each format has the same chain, Merkle root and disk states; a format 1
//! store made by older releases is still read, verified and appended to in
//! its own format; format 2's chain, computed forward from the last whole
//! one, is the chain record by record; and an edit whose CRC was recomputed
//! is named by verify and stops a reader.

use diskhist::store::verify::verify;
use diskhist::store::{Op, OpFlags, Store, Writer, WriterOptions};
use diskhist::testing::format::{self, read_record_at, record_body, LogFormat, CHAIN_EVERY};
use diskhist::testing::xorshift64;
use diskhist::{Hash32, Seq, TimeNs};
use std::os::unix::fs::FileExt;
use std::path::Path;

const DISK: u64 = 1 << 22;
const BS: u32 = 4096;
const RECORDS: u64 = 700;

/// `RECORDS` operations of every kind, partial and sector-unaligned writes
/// and repeats (references) among them, with index flushes along the way.
fn record_history(dir: &Path, format: LogFormat) {
    Writer::init_format(dir, DISK, BS, format).unwrap();
    let mut w = Writer::open_with(
        dir,
        WriterOptions {
            flush_threshold: 64,
        },
    )
    .unwrap();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..RECORDS {
        let r = xorshift64(&mut rng);
        let offset_bytes = r % (DISK - 20_000);
        let t = TimeNs(1_795_000_000_000_000_000 + i as i64 * 1_000);
        // Incompressible bytes, unique to the record.
        let data: Vec<u8> = (0..(r >> 40) % 40_000 + 1)
            .map(|_| (xorshift64(&mut rng) >> 24) as u8)
            .collect();
        let op = match i % 7 {
            0 => Op::Zero {
                offset_bytes: offset_bytes / 512 * 512,
                length_bytes: 8192,
            },
            1 => Op::Mark { name: "moment" },
            2 => Op::Flush,
            3 => Op::Trim {
                offset_bytes,
                length_bytes: 5000,
            },
            // The same 8 KiB again: stored as references.
            4 => Op::Write {
                offset_bytes: (i % 5) * 8192,
                data: &[0x5a; 8192],
            },
            _ => Op::Write {
                offset_bytes,
                data: &data,
            },
        };
        w.append(t, op, OpFlags::default()).unwrap();
    }
    w.close().unwrap();
}

/// Every record of the log, whole and checked, with its offset.
fn records(dir: &Path) -> Vec<(u64, format::RecordHeader)> {
    let log = std::fs::File::open(dir.join("log")).unwrap();
    let len = log.metadata().unwrap().len();
    let (mut at, mut buf, mut out) = (0, Vec::new(), Vec::new());
    while at < len {
        let h = read_record_at(&log, at, len, &mut buf).unwrap().unwrap();
        out.push((at, h));
        at += u64::from(h.record_len);
    }
    out
}

fn formats_of(dir: &Path) -> Vec<LogFormat> {
    records(dir).into_iter().map(|(_, h)| h.format).collect()
}

#[test]
fn both_formats_record_the_same_history() {
    let tmp = tempfile::tempdir().unwrap();
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    record_history(&one, LogFormat::V1);
    record_history(&two, LogFormat::V2);
    assert!(formats_of(&one).iter().all(|f| *f == LogFormat::V1));
    assert!(formats_of(&two).iter().all(|f| *f == LogFormat::V2));
    let log_len = |d: &Path| std::fs::metadata(d.join("log")).unwrap().len();
    assert!(
        log_len(&two) + RECORDS * 80 < log_len(&one),
        "format 2 saves at least 80 bytes a record: {} vs {}",
        log_len(&two),
        log_len(&one)
    );

    let (a, b) = (Store::open(&one).unwrap(), Store::open(&two).unwrap());
    assert_eq!(a.head(), b.head(), "same chain, time and seq at the head");
    let (mut x, mut y) = (vec![0u8; DISK as usize], vec![0u8; DISK as usize]);
    for s in [1, 77, 256, 257, 511, 512, RECORDS] {
        assert_eq!(a.tree_root(Seq(s)).unwrap(), b.tree_root(Seq(s)).unwrap());
        a.read_at(Seq(s), 0, &mut x).unwrap();
        b.read_at(Seq(s), 0, &mut y).unwrap();
        assert!(x == y, "state {s} differs between the formats");
    }
    // Every record's chain and content hash, in an order that defeats the
    // remembered last chain, then in order.
    let mut order: Vec<u64> = (1..=RECORDS).rev().collect();
    order.extend(1..=RECORDS);
    for s in order {
        let (ra, rb) = (a.record(Seq(s)).unwrap(), b.record(Seq(s)).unwrap());
        assert_eq!(ra, rb, "record {s}");
    }
    for dir in [&one, &two] {
        let r = verify(dir).unwrap();
        assert!(r.problem.is_none() && r.index_problems.is_empty(), "{r:?}");
        assert_eq!(r.chain, a.head().chain);
    }
}

#[test]
fn a_format_1_store_stays_format_1() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("old");
    record_history(&dir, LogFormat::V1);
    let head = Store::open(&dir).unwrap().head();
    // A writer of this release appends in the store's own format, and the
    // chain goes on.
    let mut w = Writer::open(&dir).unwrap();
    w.append(
        TimeNs(1_796_000_000_000_000_000),
        Op::Write {
            offset_bytes: 4096,
            data: &[7; 4096],
        },
        OpFlags::default(),
    )
    .unwrap();
    w.close().unwrap();
    assert!(formats_of(&dir).iter().all(|f| *f == LogFormat::V1));
    let s = Store::open(&dir).unwrap();
    assert_eq!(s.head().seq, Seq(head.seq.0 + 1));
    let r = verify(&dir).unwrap();
    assert!(r.problem.is_none() && r.index_problems.is_empty(), "{r:?}");
}

/// Where to edit a record: in the first raw block it stores, the first
/// byte it wrote, or (`Carried`) the first byte of the block it did not
/// write (a partly written block holds the block's previous version there).
#[derive(Clone, Copy, PartialEq)]
enum Edit {
    Written,
    Carried,
}

/// Change one byte of record `seq`'s body and recompute its CRC, as someone
/// who knows the format but not the chain would. `None` if the record has
/// no such byte.
fn edit_with_crc(dir: &Path, seq: u64, edit: Edit) -> Option<format::RecordHeader> {
    let log = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join("log"))
        .unwrap();
    let at = records(dir)[seq as usize - 1].0;
    let len = log.metadata().unwrap().len();
    let mut rec = Vec::new();
    let h = read_record_at(&log, at, len, &mut rec).unwrap().unwrap();
    assert_eq!(h.seq, Seq(seq));
    let body = record_body(&rec);
    let body_at = rec.len() - 4 - body.len();
    let bs = u64::from(BS);
    let blocks = (h.offset_bytes + h.length_bytes - 1) / bs - h.offset_bytes / bs + 1;
    let entries = format::parse_block_entries(body, blocks as usize, BS).unwrap();
    let first = h.offset_bytes / bs;
    let (k, body_offset) = entries.iter().enumerate().find_map(|(k, e)| match e {
        format::BlockEntry::Stored {
            encoding: format::Encoding::Raw,
            body_offset,
            ..
        } => Some((k, *body_offset)),
        _ => None,
    })?;
    let b = first + k as u64;
    let written_from = h.offset_bytes.max(b * bs) - b * bs;
    let at_in_block = match edit {
        Edit::Written => written_from,
        Edit::Carried if written_from > 0 => 0,
        Edit::Carried => return None,
    };
    rec[body_at + body_offset + at_in_block as usize] ^= 0x10;
    let n = rec.len() - 4;
    let crc = crc32c::crc32c(&rec[..n]);
    rec[n..].copy_from_slice(&crc.to_le_bytes());
    assert!(
        format::decode_record(&rec).is_ok(),
        "the CRC was recomputed"
    );
    log.write_all_at(&rec, at).unwrap();
    Some(h)
}

/// A write of fresh data (operation `i` with `i % 7 >= 5`) covering a
/// whole block, between whole chains, of 16 KiB or more if `large`, else
/// shorter.
fn fresh_write(dir: &Path, large: bool) -> u64 {
    let s = Store::open(dir).unwrap();
    (1..=RECORDS)
        .find(|&seq| {
            let r = s.record(Seq(seq)).unwrap();
            // A whole block of fresh data: stored raw.
            let whole_block =
                r.offset_bytes.div_ceil(4096) * 4096 + 4096 <= r.offset_bytes + r.length_bytes;
            (seq - 1) % 7 >= 5
                && whole_block
                && seq % CHAIN_EVERY != 0
                && (r.length_bytes >= format::CONTENT_HASH_MIN_BYTES) == large
        })
        .expect("the history holds such a write")
}

/// An edit of a write's content with its CRC recomputed: a write of 16 KiB
/// or more stores its content hash, which no longer matches; a smaller one
/// relies on its chain check. Verify names the record either way.
#[test]
fn an_edit_with_a_recomputed_crc_is_named() {
    for large in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s");
        record_history(&dir, LogFormat::V2);
        let seq = fresh_write(&dir, large);
        let h = edit_with_crc(&dir, seq, Edit::Written).expect("a raw block");
        assert_eq!(h.content_hash.is_some(), large);
        let r = verify(&dir).unwrap();
        let p = r.problem.expect("verify must find the edit");
        assert_eq!(p.seq, Seq(seq), "{p:?}");
        let want = if large { "content hash" } else { "chain" };
        assert!(p.what.contains(want), "{large}: {p:?}");
        // A reader scanning the log (no index) rebuilds the content hash of
        // a small write, and stops before the edit. A stored one it takes
        // as stored, as format 1 does: verify is what rebuilds those.
        std::fs::remove_dir_all(dir.join("index")).unwrap();
        let s = Store::open(&dir).unwrap();
        if large {
            assert_eq!(s.head().seq, Seq(RECORDS));
        } else {
            assert_eq!(s.head().seq, Seq(seq - 1));
            assert!(
                Writer::open(&dir).is_err(),
                "a writer refuses to cut it away"
            );
        }
    }
}

/// The bytes of a partly written block that a write did not write are the
/// block's previous version, which no hash covers: edited with the CRC
/// recomputed, they would change the disk at that state and after. Verify
/// compares them with the previous version, in either format, and confirms
/// a difference from the log alone before it blames the log.
#[test]
fn an_edit_of_bytes_a_write_did_not_write_is_named() {
    for format in [LogFormat::V2, LogFormat::V1] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s");
        record_history(&dir, format);
        let pristine = std::fs::read(dir.join("log")).unwrap();
        let seq = (1..=RECORDS)
            .filter(|s| (s - 1) % 7 >= 5)
            .find(|&s| {
                let edited = edit_with_crc(&dir, s, Edit::Carried).is_some();
                if !edited {
                    std::fs::write(dir.join("log"), &pristine).unwrap();
                }
                edited
            })
            .expect("a write starting inside a block stored raw");
        let r = verify(&dir).unwrap();
        let p = r.problem.expect("verify must find the edit");
        assert_eq!(p.seq, Seq(seq), "{format:?}: {p:?}");
        assert!(p.what.contains("did not write"), "{format:?}: {p:?}");
        // The mismatch was confirmed from the log alone (the walk back to
        // the block's last writer), which agreed with the index.
        assert!(
            r.index_problems.is_empty(),
            "{format:?}: {:?}",
            r.index_problems
        );
    }
}

/// The whole chain every 256 records is what a record between them is
/// computed from: damage to one is named, not silently skipped.
#[test]
fn whole_chains_sit_every_256_records() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    record_history(&dir, LogFormat::V2);
    let mut chain = Hash32::default();
    let s = Store::open(&dir).unwrap();
    for (i, (_, h)) in records(&dir).into_iter().enumerate() {
        let seq = i as u64 + 1;
        assert_eq!(h.link.chain().is_some(), seq % CHAIN_EVERY == 0, "{seq}");
        chain = s.record(Seq(seq)).unwrap().chain;
        if let Some(whole) = h.link.chain() {
            assert_eq!(whole, chain);
        }
    }
    assert_eq!(chain, s.head().chain);
}
