//! diskhist's own stream format: a history with its times, so it can be
//! moved or replicated between stores without losing anything. `dump`
//! writes it, `ingest --format stream` reads it. Little-endian.
//!
//! ```text
//! stream header (32 bytes)
//!  0          8        12          16            24          28     32
//!  +----------+--------+-----------+-------------+-----------+------+
//!  | "DHSTREAM"| version| block_size| size_bytes  | reserved 0| crc32c|
//!  +----------+--------+-----------+-------------+-----------+------+
//! then records, each:
//!  0      4    5     6     8      16        24            32            40           44
//!  +------+----+-----+-----+------+---------+-------------+-------------+------------+
//!  |"DHSR"|kind|flags|  0  | seq  | time_ns | offset_bytes| length_bytes| payload_len|
//!  +------+----+-----+-----+------+---------+-------------+-------------+------------+
//!  44                      44+payload_len     +4
//!  +-----------------------+------------------+
//!  | payload               | crc32c(0..here)  |
//!  +-----------------------+------------------+
//! and finally an end record: kind 0, seq = number of records, payload =
//! the source store's chain hash after the last record dumped (32 bytes).
//! ```
//!
//! Kinds are the store's (1 write, 2 zero, 3 trim, 4 flush, 5 mark). The
//! payload is the bytes written (write), the UTF-8 name (mark), or nothing.
//! A stream that stops before its end record is truncated: every whole
//! record before the cut is kept, and the reader says where it stopped.

use crate::producers::op::{OpFlags, OwnedOp};
use crate::store::format::{RecordKind, MAX_OP_BYTES};
use crate::units::{Hash32, Seq, TimeNs};
use std::io::{self, Read, Write};

const MAGIC: &[u8; 8] = b"DHSTREAM";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 32;
const REC_MAGIC: &[u8; 4] = b"DHSR";
const REC_HEADER_LEN: usize = 44;
const KIND_END: u8 = 0;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    #[error("reading the stream: {0}")]
    Io(#[from] io::Error),
    #[error("not a diskhist stream (bad magic at byte 0)")]
    BadMagic,
    #[error("stream format version {0}; this diskhist reads version {VERSION}")]
    Version(u32),
    #[error("stream header is corrupt (checksum mismatch)")]
    BadHeader,
    #[error("stream header: reserved bytes 24..28 are not zero; not a stream this diskhist wrote")]
    HeaderReserved,
    #[error("stream record {index} at byte {offset}: {what}")]
    BadRecord {
        index: u64,
        offset: u64,
        what: String,
    },
    #[error("stream is truncated after {records} whole records (byte {offset}): no end record")]
    Truncated { records: u64, offset: u64 },
}

/// The geometry a stream was dumped from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamHeader {
    pub block_size: u32,
    pub size_bytes: u64,
}

/// One record of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    pub seq: Seq,
    pub time_ns: TimeNs,
    pub flags: OpFlags,
    pub op: OwnedOp,
}

/// What the end record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamEnd {
    pub records: u64,
    pub chain: Hash32,
}

pub struct StreamWriter<W: Write> {
    out: W,
    records: u64,
}

impl<W: Write> StreamWriter<W> {
    pub fn new(mut out: W, h: StreamHeader) -> io::Result<Self> {
        let mut b = [0u8; HEADER_LEN];
        b[..8].copy_from_slice(MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&h.block_size.to_le_bytes());
        b[16..24].copy_from_slice(&h.size_bytes.to_le_bytes());
        let crc = crc32c::crc32c(&b[..28]);
        b[28..].copy_from_slice(&crc.to_le_bytes());
        out.write_all(&b)?;
        Ok(StreamWriter { out, records: 0 })
    }

    /// Write one record: `fields` are kind, flags, seq, time, offset, length.
    fn put(&mut self, fields: (u8, u8, u64, i64, u64, u64), payload: &[u8]) -> io::Result<()> {
        let (kind, flags, seq, time, off, len) = fields;
        let mut h = [0u8; REC_HEADER_LEN];
        h[..4].copy_from_slice(REC_MAGIC);
        h[4] = kind;
        h[5] = flags;
        h[8..16].copy_from_slice(&seq.to_le_bytes());
        h[16..24].copy_from_slice(&time.to_le_bytes());
        h[24..32].copy_from_slice(&off.to_le_bytes());
        h[32..40].copy_from_slice(&len.to_le_bytes());
        h[40..44].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&h), payload);
        self.out.write_all(&h)?;
        self.out.write_all(payload)?;
        self.out.write_all(&crc.to_le_bytes())
    }

    pub fn record(&mut self, r: &StreamRecord) -> io::Result<()> {
        self.records += 1;
        let (kind, off, len, payload): (RecordKind, u64, u64, &[u8]) = match &r.op {
            OwnedOp::Write { offset_bytes, data } => {
                (RecordKind::Write, *offset_bytes, data.len() as u64, data)
            }
            OwnedOp::Zero {
                offset_bytes,
                length_bytes,
            } => (RecordKind::Zero, *offset_bytes, *length_bytes, &[]),
            OwnedOp::Trim {
                offset_bytes,
                length_bytes,
            } => (RecordKind::Trim, *offset_bytes, *length_bytes, &[]),
            OwnedOp::Flush => (RecordKind::Flush, 0, 0, &[]),
            OwnedOp::Mark { name } => (RecordKind::Mark, 0, name.len() as u64, name.as_bytes()),
        };
        self.put(
            (kind as u8, r.flags.0, r.seq.0, r.time_ns.0, off, len),
            payload,
        )
    }

    /// Write the end record and flush.
    pub fn finish(mut self, chain: Hash32) -> io::Result<W> {
        let n = self.records;
        self.put((KIND_END, 0, n, 0, 0, 0), &chain.0)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

pub struct StreamReader<R: Read> {
    input: R,
    pub header: StreamHeader,
    offset: u64,
    records: u64,
    end: Option<StreamEnd>,
}

/// Read exactly `buf.len()` bytes, or report a clean end (`Ok(false)`) if
/// the input ends before the first byte.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

impl<R: Read> StreamReader<R> {
    pub fn new(mut input: R) -> Result<Self, StreamError> {
        let mut b = [0u8; HEADER_LEN];
        let got = read_full(&mut input, &mut b)?;
        if got < 8 || &b[..8] != MAGIC {
            return Err(StreamError::BadMagic);
        }
        let version = u32::from_le_bytes(b[8..12].try_into().unwrap());
        if version != VERSION {
            return Err(StreamError::Version(version));
        }
        if got < HEADER_LEN
            || crc32c::crc32c(&b[..28]) != u32::from_le_bytes(b[28..].try_into().unwrap())
        {
            return Err(StreamError::BadHeader);
        }
        if b[24..28] != [0; 4] {
            return Err(StreamError::HeaderReserved);
        }
        let header = StreamHeader {
            block_size: u32::from_le_bytes(b[12..16].try_into().unwrap()),
            size_bytes: u64::from_le_bytes(b[16..24].try_into().unwrap()),
        };
        Ok(StreamReader {
            input,
            header,
            offset: HEADER_LEN as u64,
            records: 0,
            end: None,
        })
    }

    /// The end record, once `next_record` has returned `Ok(None)`.
    pub fn end(&self) -> Option<StreamEnd> {
        self.end
    }

    /// The next record; `Ok(None)` after the end record.
    pub fn next_record(&mut self) -> Result<Option<StreamRecord>, StreamError> {
        if self.end.is_some() {
            return Ok(None);
        }
        let index = self.records + 1;
        let at = self.offset;
        let bad = |what: String| StreamError::BadRecord {
            index,
            offset: at,
            what,
        };
        let mut h = [0u8; REC_HEADER_LEN];
        let got = read_full(&mut self.input, &mut h)?;
        if got < REC_HEADER_LEN {
            return Err(StreamError::Truncated {
                records: self.records,
                offset: at,
            });
        }
        if &h[..4] != REC_MAGIC {
            return Err(bad("bad record magic".into()));
        }
        let u = |i: usize| u64::from_le_bytes(h[i..i + 8].try_into().unwrap());
        let (kind, flags, seq, time, off, len) = (h[4], h[5], u(8), u(16) as i64, u(24), u(32));
        let plen = u32::from_le_bytes(h[40..44].try_into().unwrap()) as u64;
        // Fields the format fixes to zero must be zero, so that an accepted
        // stream is exactly what `dump` writes for its records: no byte of it
        // goes unread.
        if h[6..8] != [0, 0] {
            return Err(bad("bytes 6..8 of the record header are not zero".into()));
        }
        let zero_fields = match kind {
            KIND_END => flags != 0 || time != 0 || off != 0 || len != 0,
            4 => off != 0 || len != 0,
            5 => off != 0,
            _ => false,
        };
        if zero_fields {
            return Err(bad(format!(
                "a record of kind {kind} with fields set that its kind leaves zero \
                 (flags {flags}, time {time}, offset {off}, length {len})"
            )));
        }
        let expect_plen = match kind {
            KIND_END => 32,
            1 => len,
            5 => len,
            2..=4 => 0,
            k => return Err(bad(format!("unknown kind {k}"))),
        };
        if plen != expect_plen || plen > MAX_OP_BYTES {
            return Err(bad(format!(
                "payload of {plen} bytes does not fit its kind and length"
            )));
        }
        let mut payload = vec![0u8; plen as usize];
        let mut crc_b = [0u8; 4];
        if read_full(&mut self.input, &mut payload)? < payload.len()
            || read_full(&mut self.input, &mut crc_b)? < 4
        {
            return Err(StreamError::Truncated {
                records: self.records,
                offset: at,
            });
        }
        if crc32c::crc32c_append(crc32c::crc32c(&h), &payload) != u32::from_le_bytes(crc_b) {
            return Err(bad("checksum mismatch".into()));
        }
        self.offset += REC_HEADER_LEN as u64 + plen + 4;
        if kind == KIND_END {
            if seq != self.records {
                return Err(bad(format!(
                    "end record counts {seq} records, the stream held {}",
                    self.records
                )));
            }
            self.end = Some(StreamEnd {
                records: seq,
                chain: Hash32(payload.try_into().unwrap()),
            });
            return Ok(None);
        }
        let op = match kind {
            1 => OwnedOp::Write {
                offset_bytes: off,
                data: payload,
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
            _ => OwnedOp::Mark {
                name: String::from_utf8(payload)
                    .map_err(|_| bad("mark name is not UTF-8".into()))?,
            },
        };
        self.records += 1;
        Ok(Some(StreamRecord {
            seq: Seq(seq),
            time_ns: TimeNs(time),
            flags: OpFlags(flags),
            op,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = StreamWriter::new(
            Vec::new(),
            StreamHeader {
                block_size: 4096,
                size_bytes: 1 << 20,
            },
        )
        .unwrap();
        let recs = [
            OwnedOp::Write {
                offset_bytes: 10,
                data: vec![7; 5000],
            },
            OwnedOp::Trim {
                offset_bytes: 0,
                length_bytes: 4096,
            },
            OwnedOp::Mark { name: "t=5".into() },
            OwnedOp::Flush,
        ];
        for (i, op) in recs.into_iter().enumerate() {
            w.record(&StreamRecord {
                seq: Seq(i as u64 + 1),
                time_ns: TimeNs(i as i64),
                flags: OpFlags::FUA,
                op,
            })
            .unwrap();
        }
        w.finish(Hash32([5; 32])).unwrap()
    }

    #[test]
    fn round_trip() {
        let bytes = sample();
        let mut r = StreamReader::new(&bytes[..]).unwrap();
        let mut n = 0;
        while let Some(rec) = r.next_record().unwrap() {
            n += 1;
            assert_eq!(rec.seq, Seq(n));
        }
        assert_eq!(n, 4);
        assert_eq!(
            r.end(),
            Some(StreamEnd {
                records: 4,
                chain: Hash32([5; 32])
            })
        );
    }

    fn read_all(bytes: &[u8]) -> Result<u64, StreamError> {
        let mut r = StreamReader::new(bytes)?;
        let mut n = 0;
        while r.next_record()?.is_some() {
            n += 1;
        }
        Ok(n)
    }

    /// Set `bytes[at..at + new.len()]` and recompute the checksum of the
    /// record (or header) that spans `start..crc_at`.
    fn patch(bytes: &[u8], at: usize, new: &[u8], start: usize, crc_at: usize) -> Vec<u8> {
        let mut b = bytes.to_vec();
        b[at..at + new.len()].copy_from_slice(new);
        let crc = crc32c::crc32c(&b[start..crc_at]);
        b[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Found by the `stream` fuzz target: a FLUSH record whose length field
    /// was 37 (checksum right) was accepted and the 37 silently dropped, so
    /// an accepted stream held bytes no reader looked at. Every field the
    /// format fixes to zero must now be zero.
    #[test]
    fn fields_the_format_leaves_zero_must_be_zero() {
        let mut w = StreamWriter::new(
            Vec::new(),
            StreamHeader {
                block_size: 512,
                size_bytes: 1 << 16,
            },
        )
        .unwrap();
        for (seq, op) in [(1, OwnedOp::Flush), (2, OwnedOp::Mark { name: "m".into() })] {
            w.record(&StreamRecord {
                seq: Seq(seq),
                time_ns: TimeNs(0x6b03_dd77),
                flags: OpFlags::FUA,
                op,
            })
            .unwrap();
        }
        let good = w.finish(Hash32([1; 32])).unwrap();
        assert_eq!(read_all(&good).unwrap(), 2);
        // Header 0..32, flush 32..80, mark 80..129, end 129..209.
        let (flush, mark, end) = (32, 80, 129);
        let cases = [
            // The fuzzer's input, reduced: the flush's length_bytes = 37.
            (patch(&good, flush + 32, &[37], flush, flush + 44), "kind 4"),
            (patch(&good, flush + 24, &[1], flush, flush + 44), "kind 4"),
            (
                patch(&good, flush + 6, &[1], flush, flush + 44),
                "bytes 6..8",
            ),
            (patch(&good, mark + 24, &[1], mark, mark + 45), "kind 5"),
            (patch(&good, end + 5, &[1], end, end + 76), "kind 0"),
            (patch(&good, end + 16, &[1], end, end + 76), "kind 0"),
            (patch(&good, end + 32, &[1], end, end + 76), "kind 0"),
        ];
        for (bytes, what) in cases {
            let e = read_all(&bytes).unwrap_err();
            assert!(matches!(e, StreamError::BadRecord { .. }), "{what}: {e}");
            assert!(e.to_string().contains(what), "{what}: {e}");
        }
        let e = read_all(&patch(&good, 24, &[1], 0, 28)).unwrap_err();
        assert!(matches!(e, StreamError::HeaderReserved), "{e}");
    }

    #[test]
    fn every_truncation_and_flip_is_an_error() {
        let bytes = sample();
        for cut in 0..bytes.len() {
            let res = StreamReader::new(&bytes[..cut]).and_then(|mut r| loop {
                if r.next_record()?.is_none() {
                    break Ok(());
                }
            });
            assert!(res.is_err(), "cut at {cut} went unnoticed");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 1;
            let res = StreamReader::new(&b[..]).and_then(|mut r| loop {
                if r.next_record()?.is_none() {
                    break Ok(());
                }
            });
            assert!(res.is_err(), "flip at {i} went unnoticed");
        }
    }
}
