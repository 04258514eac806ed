//! The stream reader (`diskhist ingest --format stream`) on arbitrary bytes,
//! version 1 and version 2 streams alike: never panics; what it accepts is
//! exactly what the writer would have written — re-encoding the records it
//! returned gives back the bytes it consumed, so no byte of an accepted
//! stream goes unread; and every record it returns is checked — seqs
//! consecutive, times not decreasing, and in version 2 each record's chain
//! hash the one `StreamRecord::chain_from` computes from the one before it
//! (the start record's for the first).
//!
//! Every input is read three times: as it is (checksums and chains must
//! catch the mutations), with its checksums recomputed (the chains must
//! catch what a checksum no longer does: a record altered and its crc32c
//! made right), and with its (version 2) chain hashes recomputed as well,
//! so the fuzzer gets past both to the checks behind.

use diskhist::producers::stream::{
    StreamReader, StreamRecord, StreamStart, StreamVersion, StreamWriter,
};
use diskhist::store::{OpFlags, OwnedOp};
use diskhist::{Hash32, Seq, TimeNs};
use std::io::{self, Read};

const HEADER_LEN: usize = 32;
const V1_RECORD_HEADER: usize = 44;
const V2_RECORD_HEADER: usize = 76;
const CHAIN_AT: usize = 44;
const KIND_START: u8 = 255;
const KIND_END: u8 = 0;

/// Counts the bytes the reader took.
struct Counted<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Odd-sized reads, so `read_full` has to loop.
        let n = buf.len().min(self.data.len() - self.pos).min(7919);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn u64_at(d: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(d[at..at + 8].try_into().unwrap())
}

/// The record framed at `rec` (header and payload) as the reader would
/// return it, for recomputing its chain; `None` for the start and end
/// records and unknown kinds.
fn as_record(rec: &[u8], header_len: usize) -> Option<StreamRecord> {
    let (off, len) = (u64_at(rec, 24), u64_at(rec, 32));
    let payload = &rec[header_len..];
    let op = match rec[4] {
        1 => OwnedOp::Write {
            offset_bytes: off,
            data: payload.to_vec(),
        },
        2 => OwnedOp::Zero {
            offset_bytes: off,
            length_bytes: len,
        },
        3 => OwnedOp::Trim {
            offset_bytes: off,
            length_bytes: len,
        },
        4 => OwnedOp::Flush,
        5 => OwnedOp::Mark {
            name: String::from_utf8_lossy(payload).into_owned(),
        },
        _ => return None,
    };
    Some(StreamRecord {
        seq: Seq(u64_at(rec, 8)),
        time_ns: TimeNs(u64_at(rec, 16) as i64),
        flags: OpFlags(rec[5]),
        op,
        chain: None,
    })
}

/// `data` with the header's and every record's crc32c made right, walking
/// records by their stated payload length; with `chains`, in version 2 also
/// each record's chain hash (following on from the start record's) and the
/// end record's.
fn fix_checksums(data: &[u8], chains: bool) -> Vec<u8> {
    let mut d = data.to_vec();
    if d.len() < HEADER_LEN {
        return d;
    }
    let crc = crc32c::crc32c(&d[..28]);
    d[28..32].copy_from_slice(&crc.to_le_bytes());
    let v2 = d[8..12] == 2u32.to_le_bytes();
    let fix_chains = chains && v2;
    let hlen = if v2 {
        V2_RECORD_HEADER
    } else {
        V1_RECORD_HEADER
    };
    let mut chain = Hash32::default();
    let mut at = HEADER_LEN;
    while at + hlen <= d.len() {
        let plen = u32::from_le_bytes(d[at + 40..at + 44].try_into().unwrap()) as usize;
        let Some(end) = (at + hlen).checked_add(plen).filter(|&e| e + 4 <= d.len()) else {
            break;
        };
        if fix_chains {
            let field = at + CHAIN_AT..at + CHAIN_AT + 32;
            match d[at + 4] {
                KIND_START => chain = Hash32(d[field].try_into().unwrap()),
                KIND_END => d[field].copy_from_slice(&chain.0),
                _ => {
                    if let Some(r) = as_record(&d[at..end], hlen) {
                        chain = r.chain_from(&chain);
                        d[field].copy_from_slice(&chain.0);
                    }
                }
            }
        }
        let crc = crc32c::crc32c(&d[at..end]);
        d[end..end + 4].copy_from_slice(&crc.to_le_bytes());
        at = end + 4;
    }
    d
}

/// Run every check of this target on one input; panics on a failure.
pub fn check(data: &[u8]) {
    check_as_is(data);
    let crcs = fix_checksums(data, false);
    if crcs != data {
        check_as_is(&crcs);
    }
    let both = fix_checksums(data, true);
    if both != crcs {
        check_as_is(&both);
    }
}

fn check_as_is(data: &[u8]) {
    let mut input = Counted { data, pos: 0 };
    let Ok(mut reader) = StreamReader::new(&mut input) else {
        return;
    };
    let header = reader.header();
    let start = reader.start();
    assert_eq!(start.is_some(), reader.version() == StreamVersion::V2);
    let mut records = Vec::new();
    let end = loop {
        match reader.next_record() {
            Ok(Some(r)) => records.push(r),
            Ok(None) => break reader.end(),
            Err(_) => break None,
        }
    };
    let consumed = input.pos;
    checked(start, &records);
    let mut w = match start {
        Some(start) => StreamWriter::new(Vec::new(), header, start),
        None => StreamWriter::new_v1(Vec::new(), header),
    }
    .expect("Vec write");
    for r in &records {
        w.record(r).expect("Vec write");
    }
    let Some(end) = end else {
        // A stream that failed: the records before the failure were whole
        // and read as written.
        assert_same(&w.into_inner(), data, false);
        return;
    };
    assert_eq!(end.records, records.len() as u64);
    if let Some(start) = start {
        let last = records.last().map_or(start.chain, |r| r.chain.unwrap());
        assert_eq!(
            end.chain, last,
            "end record's chain is not the last record's"
        );
    }
    let again = w.finish(end.chain).expect("Vec write");
    assert_eq!(
        again.len(),
        consumed,
        "accepted stream re-encodes to another length"
    );
    assert_same(&again, &data[..consumed], true);
}

/// What the reader returned was checked: consecutive seqs, times that do
/// not decrease, and in version 2 chains that follow from the start's.
fn checked(start: Option<StreamStart>, records: &[StreamRecord]) {
    let mut chain = start.map(|s| s.chain);
    let mut last: Option<&StreamRecord> = None;
    for (i, r) in records.iter().enumerate() {
        match (last, start) {
            (Some(l), _) => {
                assert_eq!(
                    r.seq.0,
                    l.seq.0.wrapping_add(1),
                    "record {i}: seq does not follow"
                );
                assert!(r.time_ns >= l.time_ns, "record {i}: time went back");
            }
            (None, Some(s)) => assert_eq!(
                r.seq.0,
                s.seq.0.wrapping_add(1),
                "first seq is not start + 1"
            ),
            (None, None) => assert!(r.seq.0 >= 1, "record #0 accepted"),
        }
        match chain.as_mut() {
            Some(c) => {
                *c = r.chain_from(c);
                assert_eq!(r.chain, Some(*c), "record {i}: chain accepted unchecked");
            }
            None => assert_eq!(r.chain, None, "a version 1 record with a chain"),
        }
        last = Some(r);
    }
}

/// Re-encoded bytes equal the input (`whole`), or a prefix of it, or say
/// where they first differ.
fn assert_same(encoded: &[u8], input: &[u8], whole: bool) {
    if let Some(i) = (0..encoded.len().min(input.len())).find(|&i| encoded[i] != input[i]) {
        panic!(
            "accepted stream re-encodes differently from byte {i}: {:02x?} read, {:02x?} written",
            &input[i..input.len().min(i + 16)],
            &encoded[i..encoded.len().min(i + 16)]
        );
    }
    if whole {
        assert_eq!(encoded.len(), input.len());
    } else {
        assert!(
            encoded.len() <= input.len(),
            "re-encoded more than was read"
        );
    }
}
