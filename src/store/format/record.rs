//! Log records: their byte map, encoding and decoding, and the block
//! entries of their bodies.
//!
//! # Record (`log`, appended one after another from offset 0)
//!
//! ```text
//!  0      4      8           16          24   25    26      32
//!  +------+------+-----------+-----------+----+-----+-------+
//!  |magic |rec_len| seq      | time_ns   |kind|flags|  0    |
//!  +------+------+-----------+-----------+----+-----+-------+
//!  32          40          48                    80                   112
//!  +-----------+-----------+---------------------+--------------------+
//!  |offset_bytes|length_bytes| content_hash (32) | chain (32)         |
//!  +-----------+-----------+---------------------+--------------------+
//!  112                                   rec_len-4          rec_len
//!  +---------------------------------------+------------------+
//!  | body                                  | crc32c(0..len-4) |
//!  +---------------------------------------+------------------+
//! ```
//!
//! - `content_hash` is BLAKE3 of the bytes written (Write), of the mark's
//!   name (Mark), or 32 zero bytes (Zero, Trim, Flush).
//! - `chain` is BLAKE3(previous chain ‖ canonical content), where the
//!   canonical content is `seq, time_ns, kind, flags, offset_bytes,
//!   length_bytes` encoded as in the header above (8+8+1+1+8+8 = 34 bytes,
//!   no padding) followed by the 32-byte `content_hash`: 66 bytes.
//!   The first record's previous chain is 32 zero bytes. Because the body's
//!   encoding (compression, references) is not part of the canonical content,
//!   re-encoding a payload never changes the chain.
//! - The body of a Write holds one *block entry* per block the write touches,
//!   in block order: the block's whole new content after merging a partial
//!   write with the previous version. A Zero or Trim holds entries only for
//!   the blocks it covers partially (at most two); the blocks it covers
//!   wholly read as zeros and cost no payload. A Mark's body is its UTF-8
//!   name. A Flush has no body.
//! - Block entry: a tag byte, then
//!   - `0` zero block: nothing;
//!   - `1` raw: `block_size` bytes;
//!   - `2` lz4: `u32` stored length, then that many bytes of LZ4 block data;
//!   - `3` reference to content stored earlier: `u8` encoding (1 raw,
//!     2 lz4), `u32` stored length, `u64` log offset of the stored bytes.
//!
//! # Torn and corrupt records
//!
//! A record is whole when its magic is right, `rec_len` fits in the file,
//! its crc32c matches, its `seq` follows the previous one and its `chain`
//! equals the recomputed chain. Opening a store stops at the first record
//! that is not whole: a reader ignores what follows, the writer cuts the log
//! there (and says so). `verify` goes further and recomputes every
//! `content_hash` from the blocks, following references.

use crate::le::{u32_at, u64_at};
use crate::store::op::OpFlags;
use crate::units::{Hash32, Seq, TimeNs};
use std::fs::File;
use std::os::unix::fs::FileExt;

pub const RECORD_MAGIC: &[u8; 4] = b"DHRC";
const R_LEN: usize = 4;
const R_SEQ: usize = R_LEN + 4;
const R_TIME: usize = R_SEQ + 8;
const R_KIND: usize = R_TIME + 8;
const R_FLAGS: usize = R_KIND + 1;
const R_OFFSET: usize = R_FLAGS + 1 + 6;
const R_LENGTH: usize = R_OFFSET + 8;
const R_CONTENT: usize = R_LENGTH + 8;
const R_CHAIN: usize = R_CONTENT + 32;
pub const RECORD_HEADER_LEN: usize = R_CHAIN + 32;
pub const RECORD_TRAILER_LEN: usize = 4;
/// Largest record accepted when reading: bounds what a corrupt length can
/// make a reader allocate. Producers split larger operations.
pub const MAX_RECORD_LEN: u32 = 256 << 20;
/// Largest single operation payload a producer may hand the store.
pub const MAX_OP_BYTES: u64 = 128 << 20;

pub const TAG_ZERO: u8 = 0;
pub const TAG_RAW: u8 = 1;
pub const TAG_LZ4: u8 = 2;
pub const TAG_REF: u8 = 3;

/// How a block's content is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Zero = 0,
    Raw = 1,
    Lz4 = 2,
}

impl Encoding {
    pub fn from_u8(v: u8) -> Option<Encoding> {
        match v {
            0 => Some(Encoding::Zero),
            1 => Some(Encoding::Raw),
            2 => Some(Encoding::Lz4),
            _ => None,
        }
    }
}

/// Where a block's content lives: `stored_len` bytes at `offset_bytes` of
/// the log, in `encoding`. A zero block has no location.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Loc {
    pub offset_bytes: u64,
    pub stored_len: u32,
    pub encoding: Encoding,
}

impl Loc {
    pub const ZERO: Loc = Loc {
        offset_bytes: 0,
        stored_len: 0,
        encoding: Encoding::Zero,
    };
}

/// What a record did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    Write = 1,
    Zero = 2,
    Trim = 3,
    Flush = 4,
    Mark = 5,
}

impl RecordKind {
    pub fn from_u8(v: u8) -> Option<RecordKind> {
        match v {
            1 => Some(RecordKind::Write),
            2 => Some(RecordKind::Zero),
            3 => Some(RecordKind::Trim),
            4 => Some(RecordKind::Flush),
            5 => Some(RecordKind::Mark),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            RecordKind::Write => "write",
            RecordKind::Zero => "zero",
            RecordKind::Trim => "trim",
            RecordKind::Flush => "flush",
            RecordKind::Mark => "mark",
        }
    }
}

/// The fixed-size head of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub record_len: u32,
    pub seq: Seq,
    pub time_ns: TimeNs,
    pub kind: RecordKind,
    pub flags: OpFlags,
    pub offset_bytes: u64,
    pub length_bytes: u64,
    pub content_hash: Hash32,
    pub chain: Hash32,
}

/// Why bytes at some log offset are not a whole record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordFault {
    /// The file ends inside the record.
    Truncated,
    BadMagic,
    BadLength(u32),
    BadKind(u8),
    BadCrc,
}

impl std::fmt::Display for RecordFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordFault::Truncated => write!(f, "the log ends inside the record (torn write)"),
            RecordFault::BadMagic => write!(f, "bad record magic"),
            RecordFault::BadLength(n) => write!(f, "impossible record length {n}"),
            RecordFault::BadKind(k) => write!(f, "unknown record kind {k}"),
            RecordFault::BadCrc => write!(f, "checksum mismatch"),
        }
    }
}

fn hash_at(b: &[u8], at: usize) -> Hash32 {
    Hash32(b[at..at + 32].try_into().unwrap())
}

/// Validate the first 8 bytes of a record and return its total length.
pub fn peek_record_len(prefix: &[u8; 8]) -> Result<u32, RecordFault> {
    if &prefix[..4] != RECORD_MAGIC {
        return Err(RecordFault::BadMagic);
    }
    let len = u32_at(prefix, R_LEN);
    let min = (RECORD_HEADER_LEN + RECORD_TRAILER_LEN) as u32;
    if !(min..=MAX_RECORD_LEN).contains(&len) {
        return Err(RecordFault::BadLength(len));
    }
    Ok(len)
}

/// Bytes at the start of a record that [`record_identity`] reads.
pub const RECORD_IDENTITY_LEN: usize = R_KIND;

/// The sequence number and time in the first bytes of a record, without
/// checking its checksum (the caller only matches them against an index
/// entry); `None` if the magic is wrong.
pub fn record_identity(prefix: &[u8; RECORD_IDENTITY_LEN]) -> Option<(Seq, TimeNs)> {
    (&prefix[..4] == RECORD_MAGIC).then(|| {
        (
            Seq(u64_at(prefix, R_SEQ)),
            TimeNs(u64_at(prefix, R_TIME) as i64),
        )
    })
}

/// Check the checksum of a whole record and decode its header.
pub fn decode_record(rec: &[u8]) -> Result<RecordHeader, RecordFault> {
    if rec.len() < 8 {
        return Err(RecordFault::Truncated);
    }
    let len = peek_record_len(rec[..8].try_into().unwrap())?;
    if rec.len() != len as usize {
        return Err(RecordFault::Truncated);
    }
    let body_end = rec.len() - RECORD_TRAILER_LEN;
    if crc32c::crc32c(&rec[..body_end]) != u32_at(rec, body_end) {
        return Err(RecordFault::BadCrc);
    }
    let kind = RecordKind::from_u8(rec[R_KIND]).ok_or(RecordFault::BadKind(rec[R_KIND]))?;
    Ok(RecordHeader {
        record_len: len,
        seq: Seq(u64_at(rec, R_SEQ)),
        time_ns: TimeNs(u64_at(rec, R_TIME) as i64),
        kind,
        flags: OpFlags(rec[R_FLAGS]),
        offset_bytes: u64_at(rec, R_OFFSET),
        length_bytes: u64_at(rec, R_LENGTH),
        content_hash: hash_at(rec, R_CONTENT),
        chain: hash_at(rec, R_CHAIN),
    })
}

/// The body of a whole record (between header and checksum).
pub fn record_body(rec: &[u8]) -> &[u8] {
    &rec[RECORD_HEADER_LEN..rec.len() - RECORD_TRAILER_LEN]
}

/// Bytes of a record's canonical content ([`RecordHeader::canonical`]).
pub const CANONICAL_LEN: usize = 66;

impl RecordHeader {
    /// The canonical content: `seq, time_ns, kind, flags, offset_bytes,
    /// length_bytes` encoded as in the header (8+8+1+1+8+8 = 34 bytes, no
    /// padding), then the 32-byte `content_hash`. What the chain hashes,
    /// and the leaf data of the record's Merkle tree leaf.
    pub fn canonical(&self) -> [u8; CANONICAL_LEN] {
        let mut canon = [0u8; CANONICAL_LEN];
        canon[0..8].copy_from_slice(&self.seq.0.to_le_bytes());
        canon[8..16].copy_from_slice(&self.time_ns.0.to_le_bytes());
        canon[16] = self.kind as u8;
        canon[17] = self.flags.0;
        canon[18..26].copy_from_slice(&self.offset_bytes.to_le_bytes());
        canon[26..34].copy_from_slice(&self.length_bytes.to_le_bytes());
        canon[34..].copy_from_slice(&self.content_hash.0);
        canon
    }

    /// The record's Merkle tree leaf hash: SHA-256(0x00 ‖ canonical content).
    pub fn leaf_hash(&self) -> Hash32 {
        crate::merkle::leaf_hash(&self.canonical())
    }
}

/// The header fields of the canonical content `c`, if it is one (a known
/// kind); length and chain unset.
pub fn decode_canonical(c: &[u8; CANONICAL_LEN]) -> Option<RecordHeader> {
    Some(RecordHeader {
        record_len: 0,
        seq: Seq(u64_at(c, 0)),
        time_ns: TimeNs(u64_at(c, 8) as i64),
        kind: RecordKind::from_u8(c[16])?,
        flags: OpFlags(c[17]),
        offset_bytes: u64_at(c, 18),
        length_bytes: u64_at(c, 26),
        content_hash: hash_at(c, 34),
        chain: Hash32::default(),
    })
}

/// Decode the header at the start of a record without its checksum (which
/// needs the whole record): for reading the canonical content of a record
/// already checked once. `None` if the magic or kind is wrong.
pub fn decode_header_unchecked(b: &[u8; RECORD_HEADER_LEN]) -> Option<RecordHeader> {
    if &b[..4] != RECORD_MAGIC {
        return None;
    }
    Some(RecordHeader {
        record_len: u32_at(b, R_LEN),
        seq: Seq(u64_at(b, R_SEQ)),
        time_ns: TimeNs(u64_at(b, R_TIME) as i64),
        kind: RecordKind::from_u8(b[R_KIND])?,
        flags: OpFlags(b[R_FLAGS]),
        offset_bytes: u64_at(b, R_OFFSET),
        length_bytes: u64_at(b, R_LENGTH),
        content_hash: hash_at(b, R_CONTENT),
        chain: hash_at(b, R_CHAIN),
    })
}

/// BLAKE3(previous chain ‖ canonical content).
pub fn chain_next(prev: &Hash32, h: &RecordHeader) -> Hash32 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&prev.0);
    hasher.update(&h.canonical());
    Hash32(*hasher.finalize().as_bytes())
}

/// Start a record: reserve the header; the body is appended by the caller
/// and [`finish_record`] fills in length, header fields and checksum.
pub fn begin_record(buf: &mut Vec<u8>) {
    buf.clear();
    buf.resize(RECORD_HEADER_LEN, 0);
}

/// Fill in the header of a record begun with [`begin_record`] and append
/// its checksum. `h.record_len` is computed here.
pub fn finish_record(buf: &mut Vec<u8>, h: &mut RecordHeader) {
    h.record_len = (buf.len() + RECORD_TRAILER_LEN) as u32;
    buf[..4].copy_from_slice(RECORD_MAGIC);
    buf[R_LEN..R_LEN + 4].copy_from_slice(&h.record_len.to_le_bytes());
    buf[R_SEQ..R_SEQ + 8].copy_from_slice(&h.seq.0.to_le_bytes());
    buf[R_TIME..R_TIME + 8].copy_from_slice(&h.time_ns.0.to_le_bytes());
    buf[R_KIND] = h.kind as u8;
    buf[R_FLAGS] = h.flags.0;
    buf[R_OFFSET..R_OFFSET + 8].copy_from_slice(&h.offset_bytes.to_le_bytes());
    buf[R_LENGTH..R_LENGTH + 8].copy_from_slice(&h.length_bytes.to_le_bytes());
    buf[R_CONTENT..R_CONTENT + 32].copy_from_slice(&h.content_hash.0);
    buf[R_CHAIN..R_CHAIN + 32].copy_from_slice(&h.chain.0);
    let crc = crc32c::crc32c(buf);
    buf.extend_from_slice(&crc.to_le_bytes());
}

/// One block entry of a body, decoded. `Stored` points into this record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockEntry {
    Zero,
    /// Stored in this record at `body_offset` (from the body's start).
    Stored {
        encoding: Encoding,
        stored_len: u32,
        body_offset: usize,
    },
    /// Stored earlier at this log location.
    Ref(Loc),
}

/// Append a block entry to a body being built. Returns the offset, within
/// `buf`, of the stored bytes for `Raw`/`Lz4` entries.
pub fn push_stored(buf: &mut Vec<u8>, encoding: Encoding, bytes: &[u8]) -> usize {
    match encoding {
        Encoding::Zero => {
            buf.push(TAG_ZERO);
            buf.len()
        }
        Encoding::Raw => {
            buf.push(TAG_RAW);
            let at = buf.len();
            buf.extend_from_slice(bytes);
            at
        }
        Encoding::Lz4 => {
            buf.push(TAG_LZ4);
            buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            let at = buf.len();
            buf.extend_from_slice(bytes);
            at
        }
    }
}

pub fn push_ref(buf: &mut Vec<u8>, loc: Loc) {
    buf.push(TAG_REF);
    buf.push(loc.encoding as u8);
    buf.extend_from_slice(&loc.stored_len.to_le_bytes());
    buf.extend_from_slice(&loc.offset_bytes.to_le_bytes());
}

/// Why a whole record's body (framing and checksum fine) does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyFault {
    #[error("block entry at body offset {body_offset} runs past the record")]
    EntryPastEnd { body_offset: usize },
    #[error("lz4 block entry with stored length {0}")]
    Lz4Length(u32),
    #[error("reference with encoding {0}")]
    RefEncoding(u8),
    #[error("reference with stored length {0}")]
    RefLength(u32),
    #[error("unknown block entry tag {0}")]
    UnknownTag(u8),
    #[error("{0} bytes left over after the block entries")]
    LeftOver(usize),
    #[error("range overflows")]
    RangeOverflow,
    #[error("range {offset_bytes}+{length_bytes} ends past the disk's {size_bytes} bytes")]
    PastDisk {
        offset_bytes: u64,
        length_bytes: u64,
        size_bytes: u64,
    },
    #[error("body on an empty range")]
    BodyOnEmptyRange,
    #[error("block {block} refers forward in the log (to byte {offset_bytes})")]
    ForwardRef { block: u64, offset_bytes: u64 },
    #[error("flush record with a body")]
    FlushWithBody,
    #[error("mark name is not UTF-8")]
    MarkNotUtf8,
}

/// Why stored bytes do not decode into a block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlockFault {
    #[error("raw block of {got} bytes, expected {want}")]
    RawLength { got: usize, want: usize },
    #[error("lz4 block decodes to {got} bytes, expected {want}")]
    Lz4Length { got: usize, want: usize },
    #[error("lz4 block does not decode: {0}")]
    Lz4(String),
}

/// Decode the block entries of a body, `count` of them.
pub fn parse_block_entries(
    body: &[u8],
    count: usize,
    block_size: u32,
) -> Result<Vec<BlockEntry>, BodyFault> {
    let mut out = Vec::with_capacity(count);
    let mut at = 0usize;
    let need = |at: usize, n: usize| -> Result<(), BodyFault> {
        if at + n > body.len() {
            Err(BodyFault::EntryPastEnd { body_offset: at })
        } else {
            Ok(())
        }
    };
    for _ in 0..count {
        need(at, 1)?;
        let tag = body[at];
        at += 1;
        match tag {
            TAG_ZERO => out.push(BlockEntry::Zero),
            TAG_RAW => {
                need(at, block_size as usize)?;
                out.push(BlockEntry::Stored {
                    encoding: Encoding::Raw,
                    stored_len: block_size,
                    body_offset: at,
                });
                at += block_size as usize;
            }
            TAG_LZ4 => {
                need(at, 4)?;
                let n = u32_at(body, at);
                at += 4;
                if n == 0 || n > block_size {
                    return Err(BodyFault::Lz4Length(n));
                }
                need(at, n as usize)?;
                out.push(BlockEntry::Stored {
                    encoding: Encoding::Lz4,
                    stored_len: n,
                    body_offset: at,
                });
                at += n as usize;
            }
            TAG_REF => {
                need(at, 13)?;
                let enc = Encoding::from_u8(body[at])
                    .filter(|e| *e != Encoding::Zero)
                    .ok_or(BodyFault::RefEncoding(body[at]))?;
                let stored_len = u32_at(body, at + 1);
                let offset_bytes = u64_at(body, at + 5);
                if stored_len == 0 || stored_len > block_size {
                    return Err(BodyFault::RefLength(stored_len));
                }
                out.push(BlockEntry::Ref(Loc {
                    offset_bytes,
                    stored_len,
                    encoding: enc,
                }));
                at += 13;
            }
            t => return Err(BodyFault::UnknownTag(t)),
        }
    }
    if at != body.len() {
        return Err(BodyFault::LeftOver(body.len() - at));
    }
    Ok(out)
}

/// Decode stored bytes into a block buffer.
pub fn decode_block(encoding: Encoding, stored: &[u8], out: &mut [u8]) -> Result<(), BlockFault> {
    match encoding {
        Encoding::Zero => {
            out.fill(0);
            Ok(())
        }
        Encoding::Raw => {
            if stored.len() != out.len() {
                return Err(BlockFault::RawLength {
                    got: stored.len(),
                    want: out.len(),
                });
            }
            out.copy_from_slice(stored);
            Ok(())
        }
        Encoding::Lz4 => match lz4_flex::block::decompress_into(stored, out) {
            Ok(n) if n == out.len() => Ok(()),
            Ok(n) => Err(BlockFault::Lz4Length {
                got: n,
                want: out.len(),
            }),
            Err(e) => Err(BlockFault::Lz4(e.to_string())),
        },
    }
}

/// Which blocks of a Zero/Trim range are only partly covered, in order.
pub fn partial_blocks(offset_bytes: u64, length_bytes: u64, block_size: u32) -> Vec<u64> {
    let bs = u64::from(block_size);
    if length_bytes == 0 {
        return Vec::new();
    }
    let end = offset_bytes + length_bytes;
    let first = offset_bytes / bs;
    let last = (end - 1) / bs;
    let mut out = Vec::new();
    let covers = |b: u64| offset_bytes <= b * bs && end >= (b + 1) * bs;
    if !covers(first) {
        out.push(first);
    }
    if last != first && !covers(last) {
        out.push(last);
    }
    out
}

/// Read one whole record at `offset`, checking only its framing and crc.
pub fn read_record_at(
    log: &File,
    offset: u64,
    log_len: u64,
    buf: &mut Vec<u8>,
) -> std::io::Result<Result<RecordHeader, RecordFault>> {
    if offset + 8 > log_len {
        return Ok(Err(RecordFault::Truncated));
    }
    let mut prefix = [0u8; 8];
    log.read_exact_at(&mut prefix, offset)?;
    let len = match peek_record_len(&prefix) {
        Ok(l) => l,
        Err(f) => return Ok(Err(f)),
    };
    if offset + u64::from(len) > log_len {
        return Ok(Err(RecordFault::Truncated));
    }
    buf.resize(len as usize, 0);
    log.read_exact_at(buf, offset)?;
    Ok(decode_record(buf))
}

/// The block locations a whole record sets, in block order.
pub fn record_block_locs(
    rec_offset: u64,
    h: &RecordHeader,
    body: &[u8],
    geometry_bs: u32,
    size_bytes: u64,
) -> Result<Vec<(u64, Loc)>, BodyFault> {
    let bs = u64::from(geometry_bs);
    let end = h
        .offset_bytes
        .checked_add(h.length_bytes)
        .ok_or(BodyFault::RangeOverflow)?;
    let stored_base = rec_offset + RECORD_HEADER_LEN as u64;
    let to_loc = |e: BlockEntry| match e {
        BlockEntry::Zero => Loc::ZERO,
        BlockEntry::Stored {
            encoding,
            stored_len,
            body_offset,
        } => Loc {
            offset_bytes: stored_base + body_offset as u64,
            stored_len,
            encoding,
        },
        BlockEntry::Ref(loc) => loc,
    };
    match h.kind {
        RecordKind::Write | RecordKind::Zero | RecordKind::Trim => {
            if end > size_bytes {
                return Err(BodyFault::PastDisk {
                    offset_bytes: h.offset_bytes,
                    length_bytes: h.length_bytes,
                    size_bytes,
                });
            }
            if h.length_bytes == 0 {
                return if body.is_empty() {
                    Ok(Vec::new())
                } else {
                    Err(BodyFault::BodyOnEmptyRange)
                };
            }
            let first = h.offset_bytes / bs;
            let last = (end - 1) / bs;
            if h.kind == RecordKind::Write {
                let entries = parse_block_entries(body, (last - first + 1) as usize, geometry_bs)?;
                // A reference points to content stored before it: in an
                // earlier record, or earlier in this one.
                let mut stored_here = Vec::new();
                let mut out = Vec::with_capacity(entries.len());
                for (b, e) in (first..=last).zip(entries) {
                    let loc = to_loc(e);
                    match e {
                        BlockEntry::Stored { .. } => stored_here.push(loc),
                        BlockEntry::Ref(l)
                            if l.offset_bytes >= rec_offset && !stored_here.contains(&l) =>
                        {
                            return Err(BodyFault::ForwardRef {
                                block: b,
                                offset_bytes: l.offset_bytes,
                            });
                        }
                        _ => {}
                    }
                    out.push((b, loc));
                }
                Ok(out)
            } else {
                let partial = partial_blocks(h.offset_bytes, h.length_bytes, geometry_bs);
                let entries = parse_block_entries(body, partial.len(), geometry_bs)?;
                let mut out = Vec::with_capacity((last - first + 1) as usize);
                let mut pi = 0;
                for b in first..=last {
                    if partial.get(pi) == Some(&b) {
                        out.push((b, to_loc(entries[pi])));
                        pi += 1;
                    } else {
                        out.push((b, Loc::ZERO));
                    }
                }
                Ok(out)
            }
        }
        RecordKind::Flush => {
            if body.is_empty() {
                Ok(Vec::new())
            } else {
                Err(BodyFault::FlushWithBody)
            }
        }
        RecordKind::Mark => {
            std::str::from_utf8(body).map_err(|_| BodyFault::MarkNotUtf8)?;
            Ok(Vec::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip_and_corruption() {
        let mut buf = Vec::new();
        begin_record(&mut buf);
        buf.extend_from_slice(b"evidence");
        let mut h = RecordHeader {
            record_len: 0,
            seq: Seq(7),
            time_ns: TimeNs(-5),
            kind: RecordKind::Mark,
            flags: OpFlags::FUA,
            offset_bytes: 0,
            length_bytes: 8,
            content_hash: Hash32([3; 32]),
            chain: Hash32([9; 32]),
        };
        finish_record(&mut buf, &mut h);
        assert_eq!(decode_record(&buf), Ok(h));
        assert_eq!(record_body(&buf), b"evidence");
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            assert!(decode_record(&bad).is_err(), "flip at {i} undetected");
        }
        assert_eq!(
            decode_record(&buf[..buf.len() - 1]),
            Err(RecordFault::Truncated)
        );
    }

    #[test]
    fn partial_block_edges() {
        assert_eq!(partial_blocks(0, 4096, 4096), Vec::<u64>::new());
        assert_eq!(partial_blocks(100, 10, 4096), vec![0]);
        assert_eq!(partial_blocks(100, 8192, 4096), vec![0, 2]);
        assert_eq!(partial_blocks(4096, 4097, 4096), vec![2]);
        assert_eq!(partial_blocks(1, 4095, 4096), vec![0]);
    }
}
