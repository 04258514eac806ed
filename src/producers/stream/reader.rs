//! Decoding a stream (see [`super::format`] for the bytes). The reader
//! returns only records it has checked: checksum, the fields the format
//! fixes, consecutive sequence numbers, times that never decrease, ranges
//! inside the disk the header describes, and in version 2 the chain hash,
//! recomputed from the record and the one before it (the start record's,
//! for the first). What it returns can therefore be recorded as it comes:
//! a damaged record is an error before it is returned.

use super::format::*;
use crate::store::format::{RecordKind, MAX_OP_BYTES};
use crate::store::{OpFlags, OwnedOp};
use crate::units::{Hash32, Seq, TimeNs};
use std::io::{self, Read};

pub struct StreamReader<R: Read> {
    input: R,
    header: StreamHeader,
    version: StreamVersion,
    start: Option<StreamStart>,
    /// Byte offset of the next record.
    offset: u64,
    /// Operation records returned so far.
    records: u64,
    last_seq: Option<Seq>,
    last_time: Option<TimeNs>,
    /// Version 2: the chain after the last record returned (the start's).
    chain: Hash32,
    end: Option<StreamEnd>,
}

/// Why the bytes at the read position are not a whole record.
enum Fault {
    Io(io::Error),
    Truncated,
    Bad(String),
}

impl From<io::Error> for Fault {
    fn from(e: io::Error) -> Fault {
        Fault::Io(e)
    }
}

/// One framed record, its fields checked against its kind.
struct Frame {
    kind: u8,
    flags: u8,
    seq: u64,
    time: i64,
    off: u64,
    len: u64,
    chain: Option<Hash32>,
    payload: Vec<u8>,
    /// Bytes the record takes in the stream.
    frame_len: u64,
}

/// Read until `buf` is full or the input ends; how many bytes were read.
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
    /// Read and check the header, and in version 2 the start record.
    pub fn new(mut input: R) -> Result<Self, StreamError> {
        let mut b = [0u8; HEADER_LEN];
        let got = read_full(&mut input, &mut b)?;
        if got < H_VERSION || &b[..H_VERSION] != MAGIC {
            return Err(StreamError::BadMagic);
        }
        if got < H_BLOCK_SIZE {
            return Err(StreamError::BadHeader);
        }
        let number = crate::le::u32_at(&b, H_VERSION);
        let version = StreamVersion::from_u32(number).ok_or(StreamError::Version(number))?;
        if got < HEADER_LEN || crc32c::crc32c(&b[..H_CRC]) != crate::le::u32_at(&b, H_CRC) {
            return Err(StreamError::BadHeader);
        }
        if b[H_RESERVED..H_CRC] != [0; 4] {
            return Err(StreamError::HeaderReserved);
        }
        let header = StreamHeader {
            block_size: crate::le::u32_at(&b, H_BLOCK_SIZE),
            size_bytes: crate::le::u64_at(&b, H_SIZE),
        };
        let mut r = StreamReader {
            input,
            header,
            version,
            start: None,
            offset: HEADER_LEN as u64,
            records: 0,
            last_seq: None,
            last_time: None,
            chain: Hash32::default(),
            end: None,
        };
        if version == StreamVersion::V2 {
            let f = r.read_frame().map_err(|fault| match fault {
                Fault::Io(e) => StreamError::Io(e),
                Fault::Truncated => StreamError::Truncated {
                    records: 0,
                    offset: HEADER_LEN as u64,
                },
                Fault::Bad(what) => StreamError::BadStart { what },
            })?;
            if f.kind != KIND_START {
                return Err(StreamError::BadStart {
                    what: format!(
                        "kind {} where the start record (kind {KIND_START}) must be",
                        f.kind
                    ),
                });
            }
            let start = StreamStart {
                seq: Seq(f.seq),
                chain: f.chain.expect("version 2"),
            };
            r.offset += f.frame_len;
            r.chain = start.chain;
            r.start = Some(start);
        }
        Ok(r)
    }

    pub fn header(&self) -> StreamHeader {
        self.header
    }

    pub fn version(&self) -> StreamVersion {
        self.version
    }

    /// Where a version 2 stream begins; `None` for version 1.
    pub fn start(&self) -> Option<StreamStart> {
        self.start
    }

    /// The end record, once `next_record` has returned `Ok(None)`.
    pub fn end(&self) -> Option<StreamEnd> {
        self.end
    }

    /// Byte offset of the next record.
    pub fn position_bytes(&self) -> u64 {
        self.offset
    }

    /// The input, positioned after the last record read.
    pub fn into_inner(self) -> R {
        self.input
    }

    /// Read one record's bytes and check them against its kind.
    fn read_frame(&mut self) -> Result<Frame, Fault> {
        let hlen = self.version.record_header_len();
        let mut h = [0u8; V2_REC_HEADER_LEN];
        let h = &mut h[..hlen];
        if read_full(&mut self.input, h)? < hlen {
            return Err(Fault::Truncated);
        }
        if &h[..R_KIND] != REC_MAGIC {
            return Err(Fault::Bad("bad record magic".into()));
        }
        let (kind, flags) = (h[R_KIND], h[R_FLAGS]);
        let (seq, time) = (
            crate::le::u64_at(h, R_SEQ),
            crate::le::u64_at(h, R_TIME) as i64,
        );
        let (off, len) = (
            crate::le::u64_at(h, R_OFFSET),
            crate::le::u64_at(h, R_LENGTH),
        );
        let plen = u64::from(crate::le::u32_at(h, R_PAYLOAD_LEN));
        // Fields the format fixes to zero must be zero, so that an accepted
        // stream is exactly what `dump` writes for its records: no byte of it
        // goes unread.
        if h[R_ZERO..R_SEQ] != [0, 0] {
            return Err(Fault::Bad(
                "bytes 6..8 of the record header are not zero".into(),
            ));
        }
        let v2 = self.version == StreamVersion::V2;
        let op_kind = RecordKind::from_u8(kind);
        let zero_fields = match (kind, op_kind) {
            (KIND_END | KIND_START, _) => flags != 0 || time != 0 || off != 0 || len != 0,
            (_, Some(RecordKind::Flush)) => off != 0 || len != 0,
            (_, Some(RecordKind::Mark)) => off != 0,
            _ => false,
        };
        let expect_plen = match (kind, op_kind) {
            (KIND_END, _) if v2 => 0,
            (KIND_END, _) => 32,
            (KIND_START, _) if v2 => 0,
            (_, Some(RecordKind::Write | RecordKind::Mark)) => len,
            (_, Some(_)) => 0,
            (k, None) => return Err(Fault::Bad(format!("unknown kind {k}"))),
        };
        if zero_fields {
            return Err(Fault::Bad(format!(
                "a record of kind {kind} with fields set that its kind leaves zero \
                 (flags {flags}, time {time}, offset {off}, length {len})"
            )));
        }
        if plen != expect_plen || plen > MAX_OP_BYTES {
            return Err(Fault::Bad(format!(
                "payload of {plen} bytes does not fit its kind and length"
            )));
        }
        // Read what is there rather than allocate what the header claims.
        let mut payload = Vec::new();
        (&mut self.input).take(plen).read_to_end(&mut payload)?;
        let mut crc_b = [0u8; REC_TRAILER_LEN];
        if (payload.len() as u64) < plen || read_full(&mut self.input, &mut crc_b)? < crc_b.len() {
            return Err(Fault::Truncated);
        }
        if crc32c::crc32c_append(crc32c::crc32c(h), &payload) != u32::from_le_bytes(crc_b) {
            return Err(Fault::Bad("checksum mismatch".into()));
        }
        Ok(Frame {
            kind,
            flags,
            seq,
            time,
            off,
            len,
            chain: v2.then(|| Hash32(h[R_CHAIN..].try_into().expect("32 bytes"))),
            payload,
            frame_len: (hlen + REC_TRAILER_LEN) as u64 + plen,
        })
    }

    /// The next record; `Ok(None)` after the end record.
    pub fn next_record(&mut self) -> Result<Option<StreamRecord>, StreamError> {
        if self.end.is_some() {
            return Ok(None);
        }
        let at = At {
            index: self.records + 1,
            offset: self.offset,
        };
        let f = self.read_frame().map_err(|fault| match fault {
            Fault::Io(e) => StreamError::Io(e),
            Fault::Truncated => StreamError::Truncated {
                records: self.records,
                offset: at.offset,
            },
            Fault::Bad(what) => at.bad(what),
        })?;
        self.offset += f.frame_len;
        match f.kind {
            KIND_START => Err(at.bad("a second start record".into())),
            KIND_END => {
                self.end = Some(self.check_end(f, at)?);
                Ok(None)
            }
            _ => {
                let rec = self.check_op(f, at)?;
                self.records += 1;
                self.last_seq = Some(rec.seq);
                self.last_time = Some(rec.time_ns);
                Ok(Some(rec))
            }
        }
    }

    /// The end record: it must count the records the stream held and carry
    /// (version 2) the last one's chain.
    fn check_end(&self, f: Frame, at: At) -> Result<StreamEnd, StreamError> {
        if f.seq != self.records {
            return Err(at.bad(format!(
                "end record counts {} records, the stream held {}",
                f.seq, self.records
            )));
        }
        let chain = match f.chain {
            Some(c) if c != self.chain => {
                return Err(at.bad("the end record's chain hash is not the last record's".into()))
            }
            Some(c) => c,
            None => Hash32(f.payload.try_into().expect("32 bytes")),
        };
        Ok(StreamEnd {
            records: f.seq,
            chain,
        })
    }

    /// An operation record: it must follow the last one (seq and time), lie
    /// inside the disk and, in version 2, give the chain hash it carries,
    /// which then becomes the chain the next record follows.
    fn check_op(&mut self, f: Frame, at: At) -> Result<StreamRecord, StreamError> {
        self.check_follows(&f, at)?;
        let size = self.header.size_bytes;
        let kind = RecordKind::from_u8(f.kind)
            .ok_or_else(|| at.bad(format!("record #{}: unknown kind {}", f.seq, f.kind)))?;
        let ranged = matches!(
            kind,
            RecordKind::Write | RecordKind::Zero | RecordKind::Trim
        );
        if ranged && f.off.checked_add(f.len).is_none_or(|e| e > size) {
            return Err(at.bad(format!(
                "record #{}: {} bytes at offset {} end past the end of the {size}-byte disk \
                 the stream header describes",
                f.seq, f.len, f.off
            )));
        }
        // The frame's fields were checked against its kind: only a mark
        // name that is not UTF-8 is left to refuse.
        let op = OwnedOp::from_parts(kind, f.off, f.len, f.payload)
            .ok_or_else(|| at.bad("mark name is not UTF-8".into()))?;
        let rec = StreamRecord {
            seq: Seq(f.seq),
            time_ns: TimeNs(f.time),
            flags: OpFlags(f.flags),
            op,
            chain: f.chain,
        };
        if let Some(carried) = rec.chain {
            if rec.chain_from(&self.chain) != carried {
                return Err(StreamError::Chain {
                    index: at.index,
                    offset: at.offset,
                    seq: rec.seq,
                });
            }
            self.chain = carried;
        }
        Ok(rec)
    }

    /// Sequence numbers are consecutive (from the start record's, or from
    /// 1 on in version 1) and times never decrease.
    fn check_follows(&self, f: &Frame, at: At) -> Result<(), StreamError> {
        let follows = match (self.last_seq, self.start) {
            (Some(last), _) | (None, Some(StreamStart { seq: last, .. })) => {
                last.0.checked_add(1) == Some(f.seq)
            }
            (None, None) => f.seq >= 1,
        };
        if !follows {
            let expected = self
                .last_seq
                .or(self.start.map(|s| s.seq))
                .map_or("a record from #1 on".to_string(), |l| {
                    format!("record #{}", l.0.wrapping_add(1))
                });
            return Err(at.bad(format!("record #{} where {expected} must follow", f.seq)));
        }
        if let Some(last) = self.last_time.filter(|t| f.time < t.0) {
            return Err(at.bad(format!(
                "record #{}: time {} ns is earlier than the previous record's, {} ns",
                f.seq, f.time, last.0
            )));
        }
        Ok(())
    }
}

/// Where a record starts: its index in the stream (from 1) and its byte
/// offset, which every error about it names.
#[derive(Clone, Copy)]
struct At {
    index: u64,
    offset: u64,
}

impl At {
    fn bad(self, what: String) -> StreamError {
        StreamError::BadRecord {
            index: self.index,
            offset: self.offset,
            what,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::producers::stream::writer::StreamWriter;

    const HEADER: StreamHeader = StreamHeader {
        block_size: 4096,
        size_bytes: 1 << 20,
    };

    fn ops() -> Vec<OwnedOp> {
        vec![
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
        ]
    }

    /// `ops` as records after `start`, with their chains.
    fn records(start: StreamStart, ops: Vec<OwnedOp>) -> Vec<StreamRecord> {
        let mut chain = start.chain;
        ops.into_iter()
            .enumerate()
            .map(|(i, op)| {
                let mut r = StreamRecord {
                    seq: Seq(start.seq.0 + i as u64 + 1),
                    time_ns: TimeNs(i as i64),
                    flags: OpFlags::FUA,
                    op,
                    chain: None,
                };
                chain = r.chain_from(&chain);
                r.chain = Some(chain);
                r
            })
            .collect()
    }

    fn v2(start: StreamStart) -> Vec<u8> {
        let recs = records(start, ops());
        let mut w = StreamWriter::new(Vec::new(), HEADER, start).unwrap();
        for r in &recs {
            w.record(r).unwrap();
        }
        w.finish(recs.last().unwrap().chain.unwrap()).unwrap()
    }

    fn v1() -> Vec<u8> {
        let mut w = StreamWriter::new_v1(Vec::new(), HEADER).unwrap();
        for r in &records(StreamStart::default(), ops()) {
            w.record(r).unwrap();
        }
        w.finish(Hash32([5; 32])).unwrap()
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<StreamRecord>, StreamError> {
        let mut r = StreamReader::new(bytes)?;
        let mut out = Vec::new();
        while let Some(rec) = r.next_record()? {
            out.push(rec);
        }
        Ok(out)
    }

    #[test]
    fn round_trip() {
        let start = StreamStart {
            seq: Seq(41),
            chain: Hash32([3; 32]),
        };
        let bytes = v2(start);
        let mut r = StreamReader::new(&bytes[..]).unwrap();
        assert_eq!(r.version(), StreamVersion::V2);
        assert_eq!(r.start(), Some(start));
        let mut got = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            got.push(rec);
        }
        assert_eq!(got, records(start, ops()));
        assert_eq!(
            r.end(),
            Some(StreamEnd {
                records: 4,
                chain: got[3].chain.unwrap()
            })
        );

        let bytes = v1();
        let mut r = StreamReader::new(&bytes[..]).unwrap();
        assert_eq!((r.version(), r.start()), (StreamVersion::V1, None));
        let mut n = 0;
        while let Some(rec) = r.next_record().unwrap() {
            n += 1;
            assert_eq!((rec.seq, rec.chain), (Seq(n), None));
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
        let header = StreamHeader {
            block_size: 512,
            size_bytes: 1 << 16,
        };
        let mut w = StreamWriter::new_v1(Vec::new(), header).unwrap();
        for (seq, op) in [(1, OwnedOp::Flush), (2, OwnedOp::Mark { name: "m".into() })] {
            w.record(&StreamRecord {
                seq: Seq(seq),
                time_ns: TimeNs(0x6b03_dd77),
                flags: OpFlags::FUA,
                op,
                chain: None,
            })
            .unwrap();
        }
        let good = w.finish(Hash32([1; 32])).unwrap();
        assert_eq!(read_all(&good).unwrap().len(), 2);
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

        // Version 2: the start record's fields other than seq and chain.
        let v2 = StreamWriter::new(Vec::new(), header, StreamStart::default())
            .unwrap()
            .finish(Hash32::default())
            .unwrap();
        assert!(read_all(&v2).unwrap().is_empty());
        let start = HEADER_LEN;
        let crc_at = start + V2_REC_HEADER_LEN;
        for field in [R_FLAGS, R_TIME, R_OFFSET, R_LENGTH] {
            let e = read_all(&patch(&v2, start + field, &[1], start, crc_at)).unwrap_err();
            assert!(matches!(e, StreamError::BadStart { .. }), "{e}");
            assert!(e.to_string().contains("kind 255"), "{e}");
        }
    }

    #[test]
    fn every_truncation_and_flip_is_an_error() {
        for bytes in [v1(), v2(StreamStart::default())] {
            for cut in 0..bytes.len() {
                assert!(
                    read_all(&bytes[..cut]).is_err(),
                    "cut at {cut} went unnoticed"
                );
            }
            for i in 0..bytes.len() {
                let mut b = bytes.clone();
                b[i] ^= 1;
                assert!(read_all(&b).is_err(), "flip at {i} went unnoticed");
            }
        }
    }

    /// What a checksum cannot catch (a record changed and its crc32c made
    /// right, as someone altering a stream would), the chain does: every
    /// such change of a version 2 record is an error at that record, and
    /// the records before it read as written.
    #[test]
    fn a_record_altered_with_its_checksum_fixed_is_refused_at_that_record() {
        let bytes = v2(StreamStart::default());
        let good = read_all(&bytes).unwrap();
        let mut at = HEADER_LEN + V2_REC_HEADER_LEN + REC_TRAILER_LEN;
        for (i, rec) in good.iter().enumerate() {
            let plen = crate::le::u32_at(&bytes, at + R_PAYLOAD_LEN) as usize;
            let crc_at = at + V2_REC_HEADER_LEN + plen;
            // seq, time, flags, range, chain and payload bytes.
            let mut spots = vec![at + R_FLAGS, at + R_SEQ, at + R_TIME + 7, at + R_CHAIN + 9];
            if plen > 0 {
                spots.extend([at + V2_REC_HEADER_LEN, crc_at - 1]);
            }
            for spot in spots {
                let mut b = bytes.clone();
                b[spot] ^= 0x20;
                let crc = crc32c::crc32c(&b[at..crc_at]);
                b[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
                let mut r = StreamReader::new(&b[..]).unwrap();
                for before in &good[..i] {
                    assert_eq!(r.next_record().unwrap().as_ref(), Some(before));
                }
                let e = r.next_record().unwrap_err();
                assert!(
                    matches!(
                        e,
                        StreamError::Chain { index, .. } | StreamError::BadRecord { index, .. }
                            if index == i as u64 + 1
                    ),
                    "record {} byte {}: {e}",
                    rec.seq,
                    spot - at
                );
            }
            at = crc_at + REC_TRAILER_LEN;
        }
    }

    #[test]
    fn sequence_times_and_ranges_are_checked() {
        let start = StreamStart::default();
        let write = |seq: u64, time: i64, offset_bytes: u64| StreamRecord {
            seq: Seq(seq),
            time_ns: TimeNs(time),
            flags: OpFlags::default(),
            op: OwnedOp::Write {
                offset_bytes,
                data: vec![1; 512],
            },
            chain: None,
        };
        let stream = |recs: Vec<StreamRecord>| {
            let mut w = StreamWriter::new(Vec::new(), HEADER, start).unwrap();
            let mut chain = start.chain;
            for mut r in recs {
                chain = r.chain_from(&chain);
                r.chain = Some(chain);
                w.record(&r).unwrap();
            }
            w.finish(chain).unwrap()
        };
        let e = |recs| read_all(&stream(recs)).unwrap_err().to_string();
        assert!(e(vec![write(2, 0, 0)]).contains("record #2 where record #1 must follow"));
        assert!(e(vec![write(1, 5, 0), write(3, 5, 0)]).contains("record #3 where record #2"));
        assert!(e(vec![write(1, 5, 0), write(2, 4, 0)]).contains("earlier than the previous"));
        assert!(e(vec![write(1, 5, HEADER.size_bytes - 511)]).contains("past the end"));
        assert_eq!(
            read_all(&stream(vec![write(1, 5, 0), write(2, 5, 1)]))
                .unwrap()
                .len(),
            2
        );
    }
}
