//! Encoding a stream (see [`super::format`] for the bytes). The writer only
//! encodes: what it is given is what it writes, so tests can build damaged
//! or forged streams with it; [`super::dump()`] is what checks a store's
//! records against their chain before they go out.

use super::format::*;
use crate::units::Hash32;
use std::io::{self, Write};

/// Fields of one framed record: kind, flags, seq, time, offset, length.
type Fields = (u8, u8, u64, i64, u64, u64);

pub struct StreamWriter<W: Write> {
    out: W,
    version: StreamVersion,
    records: u64,
}

impl<W: Write> StreamWriter<W> {
    /// Start a version 2 stream: the header, then the start record.
    pub fn new(out: W, h: StreamHeader, start: StreamStart) -> io::Result<Self> {
        let mut w = Self::header(out, h, StreamVersion::V2)?;
        w.put(
            (KIND_START, 0, start.seq.0, 0, 0, 0),
            Some(&start.chain),
            &[],
        )?;
        Ok(w)
    }

    /// Start a version 1 stream, as releases before version 2 wrote them:
    /// for tests of the reader's and ingest's handling of old dumps.
    pub fn new_v1(out: W, h: StreamHeader) -> io::Result<Self> {
        Self::header(out, h, StreamVersion::V1)
    }

    fn header(mut out: W, h: StreamHeader, version: StreamVersion) -> io::Result<Self> {
        let mut b = [0u8; HEADER_LEN];
        b[..H_VERSION].copy_from_slice(MAGIC);
        b[H_VERSION..H_BLOCK_SIZE].copy_from_slice(&version.number().to_le_bytes());
        b[H_BLOCK_SIZE..H_SIZE].copy_from_slice(&h.block_size.to_le_bytes());
        b[H_SIZE..H_RESERVED].copy_from_slice(&h.size_bytes.to_le_bytes());
        let crc = crc32c::crc32c(&b[..H_CRC]);
        b[H_CRC..].copy_from_slice(&crc.to_le_bytes());
        out.write_all(&b)?;
        Ok(StreamWriter {
            out,
            version,
            records: 0,
        })
    }

    pub fn version(&self) -> StreamVersion {
        self.version
    }

    /// Frame one record. `chain` is written in version 2 only.
    fn put(&mut self, f: Fields, chain: Option<&Hash32>, payload: &[u8]) -> io::Result<()> {
        let (kind, flags, seq, time, off, len) = f;
        let payload_len = u32::try_from(payload.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "payload too large"))?;
        let mut h = [0u8; V2_REC_HEADER_LEN];
        h[..R_KIND].copy_from_slice(REC_MAGIC);
        h[R_KIND] = kind;
        h[R_FLAGS] = flags;
        h[R_SEQ..R_TIME].copy_from_slice(&seq.to_le_bytes());
        h[R_TIME..R_OFFSET].copy_from_slice(&time.to_le_bytes());
        h[R_OFFSET..R_LENGTH].copy_from_slice(&off.to_le_bytes());
        h[R_LENGTH..R_PAYLOAD_LEN].copy_from_slice(&len.to_le_bytes());
        h[R_PAYLOAD_LEN..R_CHAIN].copy_from_slice(&payload_len.to_le_bytes());
        let h = match self.version {
            StreamVersion::V1 => &h[..V1_REC_HEADER_LEN],
            StreamVersion::V2 => {
                let chain = chain.ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "a version 2 stream record needs its chain hash",
                    )
                })?;
                h[R_CHAIN..].copy_from_slice(&chain.0);
                &h[..]
            }
        };
        let crc = crc32c::crc32c_append(crc32c::crc32c(h), payload);
        self.out.write_all(h)?;
        self.out.write_all(payload)?;
        self.out.write_all(&crc.to_le_bytes())
    }

    /// Write one record. In version 2 its `chain` must be set (it is
    /// written as given, not checked).
    pub fn record(&mut self, r: &StreamRecord) -> io::Result<()> {
        let op = r.op.as_op();
        let (off, len) = op.range();
        self.put(
            (op.kind() as u8, r.flags.0, r.seq.0, r.time_ns.0, off, len),
            r.chain.as_ref(),
            op.payload(),
        )?;
        self.records += 1;
        Ok(())
    }

    /// Write the end record, carrying `chain` (the chain after the last
    /// record), and flush.
    pub fn finish(mut self, chain: Hash32) -> io::Result<W> {
        let n = self.records;
        match self.version {
            StreamVersion::V1 => self.put((KIND_END, 0, n, 0, 0, 0), None, &chain.0)?,
            StreamVersion::V2 => self.put((KIND_END, 0, n, 0, 0, 0), Some(&chain), &[])?,
        }
        self.out.flush()?;
        Ok(self.out)
    }

    /// The output as it is, without an end record: a truncated stream.
    pub fn into_inner(self) -> W {
        self.out
    }
}
