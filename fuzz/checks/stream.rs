//! The stream reader (`diskhist ingest --format stream`) on arbitrary bytes:
//! never panics, and what it accepts is exactly what the writer would have
//! written — re-encoding the records it returned gives back the bytes it
//! consumed, so no byte of an accepted stream goes unread.
//!
//! Every input is read twice: as it is (checksums must catch the mutations)
//! and with its checksums recomputed, so the fuzzer gets past them to the
//! checks behind.

use diskhist::producers::stream::{StreamReader, StreamWriter};
use std::io::{self, Read};

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

/// `data` with the header's and every record's crc32c made right, walking
/// records by their stated payload length.
fn fix_checksums(data: &[u8]) -> Vec<u8> {
    let mut d = data.to_vec();
    if d.len() < 32 {
        return d;
    }
    let crc = crc32c::crc32c(&d[..28]);
    d[28..32].copy_from_slice(&crc.to_le_bytes());
    let mut at = 32;
    while at + 44 <= d.len() {
        let plen = u32::from_le_bytes(d[at + 40..at + 44].try_into().unwrap()) as usize;
        let Some(end) = (at + 44).checked_add(plen).filter(|&e| e + 4 <= d.len()) else {
            break;
        };
        let crc = crc32c::crc32c(&d[at..end]);
        d[end..end + 4].copy_from_slice(&crc.to_le_bytes());
        at = end + 4;
    }
    d
}

/// Run every check of this target on one input; panics on a failure.
pub fn check(data: &[u8]) {
    check_as_is(data);
    let fixed = fix_checksums(data);
    if fixed != data {
        check_as_is(&fixed);
    }
}

fn check_as_is(data: &[u8]) {
    let mut input = Counted { data, pos: 0 };
    let Ok(mut reader) = StreamReader::new(&mut input) else {
        return;
    };
    let header = reader.header;
    let mut records = Vec::new();
    let end = loop {
        match reader.next_record() {
            Ok(Some(r)) => records.push(r),
            Ok(None) => break reader.end(),
            Err(_) => break None,
        }
    };
    let consumed = input.pos;
    let mut w = StreamWriter::new(Vec::new(), header).expect("Vec write");
    for r in &records {
        w.record(r).expect("Vec write");
    }
    let Some(end) = end else {
        // A stream that failed: the records before the failure were whole
        // and read as written.
        let prefix = w.finish(Default::default()).expect("Vec write");
        let whole = prefix.len() - (44 + 32 + 4);
        assert_same(&prefix[..whole], &data[..whole]);
        return;
    };
    assert_eq!(end.records, records.len() as u64);
    let again = w.finish(end.chain).expect("Vec write");
    assert_eq!(
        again.len(),
        consumed,
        "accepted stream re-encodes to another length"
    );
    assert_same(&again, &data[..consumed]);
}

/// Re-encoded bytes equal the input, or say where they first differ.
fn assert_same(encoded: &[u8], input: &[u8]) {
    if let Some(i) = (0..encoded.len().min(input.len())).find(|&i| encoded[i] != input[i]) {
        panic!(
            "accepted stream re-encodes differently from byte {i}: {:02x?} read, {:02x?} written",
            &input[i..input.len().min(i + 16)],
            &encoded[i..encoded.len().min(i + 16)]
        );
    }
    assert_eq!(encoded.len(), input.len());
}
