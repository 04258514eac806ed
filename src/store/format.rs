//! On-disk layout of the store header and of log records. Little-endian
//! everywhere.
//!
//! # Header (`diskhist.store`, written once by `init`)
//!
//! ```text
//!  0        8       12       16               24               32
//!  +--------+--------+--------+----------------+----------------+
//!  | magic "DISKHIST"| version| block_size     | size_bytes     |
//!  +--------+--------+--------+----------------+----------------+
//!  32               40                       56          60     64
//!  +----------------+------------------------+-----------+------+
//!  | created_ns     | store_id (16 bytes)    | reserved  |crc32c|
//!  +----------------+------------------------+-----------+------+
//! ```
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

use crate::store::op::OpFlags;
use crate::units::{Hash32, Seq, TimeNs};

pub const HEADER_MAGIC: &[u8; 8] = b"DISKHIST";
pub const FORMAT_VERSION: u32 = 1;
pub const HEADER_LEN: usize = 64;
const H_VERSION: usize = 8;
const H_BLOCK_SIZE: usize = H_VERSION + 4;
const H_SIZE: usize = H_BLOCK_SIZE + 4;
const H_CREATED: usize = H_SIZE + 8;
const H_STORE_ID: usize = H_CREATED + 8;
const H_CRC: usize = HEADER_LEN - 4;

pub const MIN_BLOCK_SIZE: u32 = 512;
pub const MAX_BLOCK_SIZE: u32 = 65536;

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
    let len = crate::le::u32_at(prefix, R_LEN);
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
            Seq(crate::le::u64_at(prefix, R_SEQ)),
            TimeNs(crate::le::u64_at(prefix, R_TIME) as i64),
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
    if crc32c::crc32c(&rec[..body_end]) != crate::le::u32_at(rec, body_end) {
        return Err(RecordFault::BadCrc);
    }
    let kind = RecordKind::from_u8(rec[R_KIND]).ok_or(RecordFault::BadKind(rec[R_KIND]))?;
    Ok(RecordHeader {
        record_len: len,
        seq: Seq(crate::le::u64_at(rec, R_SEQ)),
        time_ns: TimeNs(crate::le::u64_at(rec, R_TIME) as i64),
        kind,
        flags: OpFlags(rec[R_FLAGS]),
        offset_bytes: crate::le::u64_at(rec, R_OFFSET),
        length_bytes: crate::le::u64_at(rec, R_LENGTH),
        content_hash: hash_at(rec, R_CONTENT),
        chain: hash_at(rec, R_CHAIN),
    })
}

/// The body of a whole record (between header and checksum).
pub fn record_body(rec: &[u8]) -> &[u8] {
    &rec[RECORD_HEADER_LEN..rec.len() - RECORD_TRAILER_LEN]
}

/// BLAKE3(previous chain ‖ canonical content).
pub fn chain_next(prev: &Hash32, h: &RecordHeader) -> Hash32 {
    let mut canon = [0u8; 42];
    canon[0..8].copy_from_slice(&h.seq.0.to_le_bytes());
    canon[8..16].copy_from_slice(&h.time_ns.0.to_le_bytes());
    canon[16] = h.kind as u8;
    canon[17] = h.flags.0;
    canon[18..26].copy_from_slice(&h.offset_bytes.to_le_bytes());
    canon[26..34].copy_from_slice(&h.length_bytes.to_le_bytes());
    // The content hash follows; hashed separately to avoid a 74-byte copy.
    let mut hasher = blake3::Hasher::new();
    hasher.update(&prev.0);
    hasher.update(&canon[..34]);
    hasher.update(&h.content_hash.0);
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

/// Decode the block entries of a body, `count` of them.
pub fn parse_block_entries(
    body: &[u8],
    count: usize,
    block_size: u32,
) -> Result<Vec<BlockEntry>, String> {
    let mut out = Vec::with_capacity(count);
    let mut at = 0usize;
    let need = |at: usize, n: usize| -> Result<(), String> {
        if at + n > body.len() {
            Err(format!(
                "block entry at body offset {at} runs past the record"
            ))
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
                let n = crate::le::u32_at(body, at);
                at += 4;
                if n == 0 || n > block_size {
                    return Err(format!("lz4 block entry with stored length {n}"));
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
                    .ok_or_else(|| format!("reference with encoding {}", body[at]))?;
                let stored_len = crate::le::u32_at(body, at + 1);
                let offset_bytes = crate::le::u64_at(body, at + 5);
                if stored_len == 0 || stored_len > block_size {
                    return Err(format!("reference with stored length {stored_len}"));
                }
                out.push(BlockEntry::Ref(Loc {
                    offset_bytes,
                    stored_len,
                    encoding: enc,
                }));
                at += 13;
            }
            t => return Err(format!("unknown block entry tag {t}")),
        }
    }
    if at != body.len() {
        return Err(format!(
            "{} bytes left over after the block entries",
            body.len() - at
        ));
    }
    Ok(out)
}

/// Decode stored bytes into a block buffer.
pub fn decode_block(encoding: Encoding, stored: &[u8], out: &mut [u8]) -> Result<(), String> {
    match encoding {
        Encoding::Zero => {
            out.fill(0);
            Ok(())
        }
        Encoding::Raw => {
            if stored.len() != out.len() {
                return Err(format!(
                    "raw block of {} bytes, expected {}",
                    stored.len(),
                    out.len()
                ));
            }
            out.copy_from_slice(stored);
            Ok(())
        }
        Encoding::Lz4 => match lz4_flex::block::decompress_into(stored, out) {
            Ok(n) if n == out.len() => Ok(()),
            Ok(n) => Err(format!(
                "lz4 block decodes to {n} bytes, expected {}",
                out.len()
            )),
            Err(e) => Err(format!("lz4 block does not decode: {e}")),
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

/// The store's fixed description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreHeader {
    pub block_size: u32,
    pub size_bytes: u64,
    pub created_ns: TimeNs,
    pub store_id: [u8; 16],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderFault {
    NotAStore,
    /// `checksum_ok` false: the version field may itself be damage.
    Version {
        found: u32,
        checksum_ok: bool,
    },
    Corrupt(&'static str),
}

pub fn encode_header(h: &StoreHeader) -> [u8; HEADER_LEN] {
    let mut b = [0u8; HEADER_LEN];
    b[..8].copy_from_slice(HEADER_MAGIC);
    b[H_VERSION..H_VERSION + 4].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    b[H_BLOCK_SIZE..H_BLOCK_SIZE + 4].copy_from_slice(&h.block_size.to_le_bytes());
    b[H_SIZE..H_SIZE + 8].copy_from_slice(&h.size_bytes.to_le_bytes());
    b[H_CREATED..H_CREATED + 8].copy_from_slice(&h.created_ns.0.to_le_bytes());
    b[H_STORE_ID..H_STORE_ID + 16].copy_from_slice(&h.store_id);
    let crc = crc32c::crc32c(&b[..H_CRC]);
    b[H_CRC..].copy_from_slice(&crc.to_le_bytes());
    b
}

pub fn decode_header(b: &[u8]) -> Result<StoreHeader, HeaderFault> {
    // A damaged magic or version byte is damage, not another kind of file;
    // a version this release does not know may be either (a later format
    // need not keep this checksum), so the fault says which it looks like.
    let crc_ok =
        b.len() == HEADER_LEN && crc32c::crc32c(&b[..H_CRC]) == crate::le::u32_at(b, H_CRC);
    if b.len() < HEADER_LEN || &b[..8] != HEADER_MAGIC {
        // A magic off by a byte or two in a file of the header's length is
        // a damaged header rather than some other file.
        let magic_off = b.iter().zip(HEADER_MAGIC).filter(|(x, y)| x != y).count();
        return Err(if b.len() == HEADER_LEN && !crc_ok && magic_off <= 2 {
            HeaderFault::Corrupt("bad magic and checksum (the header was damaged or edited)")
        } else {
            HeaderFault::NotAStore
        });
    }
    let version = crate::le::u32_at(b, H_VERSION);
    if version != FORMAT_VERSION {
        return Err(HeaderFault::Version {
            found: version,
            checksum_ok: crc_ok,
        });
    }
    if b.len() != HEADER_LEN {
        return Err(HeaderFault::Corrupt("header file has the wrong length"));
    }
    if !crc_ok {
        return Err(HeaderFault::Corrupt(
            "header checksum mismatch (the header was damaged or edited)",
        ));
    }
    let h = StoreHeader {
        block_size: crate::le::u32_at(b, H_BLOCK_SIZE),
        size_bytes: crate::le::u64_at(b, H_SIZE),
        created_ns: TimeNs(crate::le::u64_at(b, H_CREATED) as i64),
        store_id: b[H_STORE_ID..H_STORE_ID + 16].try_into().unwrap(),
    };
    if !valid_block_size(h.block_size) || h.size_bytes % u64::from(h.block_size) != 0 {
        return Err(HeaderFault::Corrupt("impossible geometry in header"));
    }
    Ok(h)
}

pub fn valid_block_size(bs: u32) -> bool {
    bs.is_power_of_two() && (MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&bs)
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

    #[test]
    fn header_round_trip_and_version() {
        let h = StoreHeader {
            block_size: 4096,
            size_bytes: 1 << 30,
            created_ns: TimeNs(1),
            store_id: [1; 16],
        };
        let mut b = encode_header(&h);
        assert_eq!(decode_header(&b), Ok(h));
        for i in 0..HEADER_LEN {
            let mut bad = b;
            bad[i] ^= 0x01;
            let fault = decode_header(&bad).unwrap_err();
            assert!(
                matches!(
                    fault,
                    HeaderFault::Corrupt(_)
                        | HeaderFault::Version {
                            checksum_ok: false,
                            ..
                        }
                ),
                "flip at {i} not reported as damage: {fault:?}"
            );
        }
        // A later format with a valid checksum is another version.
        b[H_VERSION] = 2;
        let crc = crc32c::crc32c(&b[..H_CRC]);
        b[H_CRC..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            decode_header(&b),
            Err(HeaderFault::Version {
                found: 2,
                checksum_ok: true
            })
        );
    }
}
