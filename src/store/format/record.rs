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
//! # Record format 2 (stores of format version 2, written since 2026-12)
//!
//! Format 1 spent 116 bytes on each record's framing, 64 of them on two
//! hashes that can be recomputed. A format 2 record keeps only what cannot:
//!
//! ```text
//!  0     1          2     3        7          15
//!  +-----+----------+-----+--------+----------+------------------------------+
//!  |0xD2 |kind|units|flags|rec_len | time_ns  | seq, offset, length (varints)|
//!  +-----+----------+-----+--------+----------+------------------------------+
//!  +------------------------------+--------------------+-------------+------------------+
//!  | chain: low 4 bytes, or all   | content hash (32): | body (as in | crc32c(0..len-4) |
//!  | 32 when seq % 256 == 0       | writes >= 16 KiB   | format 1)   |                  |
//!  +------------------------------+--------------------+-------------+------------------+
//! ```
//!
//! - Byte 1 holds the kind in its low 4 bits and [`SECTOR_UNITS`] (0x10):
//!   when set, offset and length count 512-byte sectors, else bytes. Other
//!   bits are zero. Varints are LEB128, in their shortest form.
//! - The content hash is stored only by writes of 16 KiB or more
//!   ([`CONTENT_HASH_MIN_BYTES`]), where it costs at most 0.2% and
//!   rebuilding it would read that much; elsewhere it is rebuilt when
//!   needed: BLAKE3 of the bytes written, from the blocks (references
//!   followed), or of the mark's name. So the proofs and chains that
//!   rebuild it for up to 255 records read at most 4 MiB.
//!   Canonical content, chain and Merkle leaf are defined exactly as in
//!   format 1, so a history copied between formats keeps its chain.
//! - The chain is stored whole every [`CHAIN_EVERY`] records and as its
//!   first 4 bytes (a check) in the others: record *n*'s chain is computed
//!   from the last whole one before it, and every record still says whether
//!   it follows from the one before (a 2^-32 chance of missing an edit that
//!   recomputed the CRC but not the chain; the whole chain every 256
//!   records, the index's manifest, `sessions` and seals catch those).
//! - A random 4 KiB write costs 30 bytes of framing, where format 1 cost 116.
//!
//! # Torn and corrupt records
//!
//! A record is whole when its magic is right, `rec_len` fits in the file,
//! its crc32c matches, its `seq` follows the previous one and its `chain`
//! equals the recomputed chain. Opening a store stops at the first record
//! that is not whole: a reader ignores what follows, the writer cuts the log
//! there (and says so). `verify` goes further and recomputes every
//! `content_hash` from the blocks, following references.

use crate::le::{get_varint, put_varint, u32_at, u64_at, varint_len};
use crate::store::op::OpFlags;
use crate::units::{Hash32, Seq, TimeNs};
use std::fs::File;
use std::os::unix::fs::FileExt;

pub const RECORD_MAGIC: &[u8; 4] = b"DHRC";
/// First byte of a format 2 record.
pub const RECORD_MAGIC_V2: u8 = 0xD2;
const R_LEN: usize = 4;
const R_SEQ: usize = R_LEN + 4;
const R_TIME: usize = R_SEQ + 8;
const R_KIND: usize = R_TIME + 8;
const R_FLAGS: usize = R_KIND + 1;
const R_OFFSET: usize = R_FLAGS + 1 + 6;
const R_LENGTH: usize = R_OFFSET + 8;
const R_CONTENT: usize = R_LENGTH + 8;
const R_CHAIN: usize = R_CONTENT + 32;
/// Bytes of a format 1 record's header.
pub const RECORD_HEADER_LEN: usize = R_CHAIN + 32;
pub const RECORD_TRAILER_LEN: usize = 4;
// Format 2: fixed fields, then varints.
const V2_KIND: usize = 1;
const V2_FLAGS: usize = 2;
const V2_LEN: usize = 3;
const V2_TIME: usize = 7;
const V2_VARINTS: usize = 15;
/// Format 2, byte 1: offset and length count 512-byte sectors.
pub const SECTOR_UNITS: u8 = 0x10;
const SECTOR: u64 = 512;
/// A format 2 record whose seq is a multiple of this carries its whole
/// chain; the others its first 4 bytes.
pub const CHAIN_EVERY: u64 = 256;
/// Bytes of the chain check a format 2 record carries when not whole.
const CHAIN_CHECK_LEN: usize = 4;
/// A format 2 write of this many bytes or more stores its content hash.
pub const CONTENT_HASH_MIN_BYTES: u64 = 16 << 10;
/// Largest record accepted when reading: bounds what a corrupt length can
/// make a reader allocate. Producers split larger operations.
pub const MAX_RECORD_LEN: u32 = 256 << 20;
/// Largest single operation payload a producer may hand the store.
pub const MAX_OP_BYTES: u64 = 128 << 20;

pub const TAG_ZERO: u8 = 0;
pub const TAG_RAW: u8 = 1;
pub const TAG_LZ4: u8 = 2;
pub const TAG_REF: u8 = 3;

/// Which record layout a log holds; the store header's version says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogFormat {
    /// 112-byte headers holding the content hash and the whole chain.
    V1,
    /// Compact headers (see the module docs).
    V2,
}

impl LogFormat {
    /// The record format of a store of header version `version`.
    pub fn of_version(version: u32) -> Option<LogFormat> {
        match version {
            1 => Some(LogFormat::V1),
            2 => Some(LogFormat::V2),
            _ => None,
        }
    }

    /// The store header's version for this format.
    pub fn version(self) -> u32 {
        match self {
            LogFormat::V1 => 1,
            LogFormat::V2 => 2,
        }
    }

    /// The smallest whole record of this format.
    pub fn min_record_len(self) -> u32 {
        match self {
            LogFormat::V1 => (RECORD_HEADER_LEN + RECORD_TRAILER_LEN) as u32,
            LogFormat::V2 => (V2_VARINTS + 3 + CHAIN_CHECK_LEN + RECORD_TRAILER_LEN) as u32,
        }
    }

    /// The format whose magic begins `prefix`, if any.
    fn of_prefix(prefix: &[u8]) -> Option<LogFormat> {
        match prefix.first() {
            Some(&RECORD_MAGIC_V2) => Some(LogFormat::V2),
            Some(_) if prefix.len() >= 4 && &prefix[..4] == RECORD_MAGIC => Some(LogFormat::V1),
            _ => None,
        }
    }
}

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

/// How a record is linked into the chain, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// The whole chain hash after this record.
    Chain(Hash32),
    /// Its first 4 bytes, little-endian (format 2, between whole chains).
    Check(u32),
}

impl Link {
    /// What a record of `format` numbered `seq` stores of `chain`.
    pub fn of(format: LogFormat, seq: Seq, chain: Hash32) -> Link {
        if format == LogFormat::V1 || seq.0 % CHAIN_EVERY == 0 {
            Link::Chain(chain)
        } else {
            Link::Check(chain_check(&chain))
        }
    }

    /// Does `chain`, recomputed, match what is stored?
    pub fn admits(&self, chain: &Hash32) -> bool {
        match self {
            Link::Chain(c) => c == chain,
            Link::Check(c) => *c == chain_check(chain),
        }
    }

    /// The whole chain, when stored.
    pub fn chain(&self) -> Option<Hash32> {
        match self {
            Link::Chain(c) => Some(*c),
            Link::Check(_) => None,
        }
    }
}

fn chain_check(chain: &Hash32) -> u32 {
    u32_at(&chain.0, 0)
}

/// The head of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub record_len: u32,
    pub seq: Seq,
    pub time_ns: TimeNs,
    pub kind: RecordKind,
    pub flags: OpFlags,
    pub offset_bytes: u64,
    pub length_bytes: u64,
    /// `None` for a format 2 write read from the log, until rebuilt from
    /// its blocks (see `Index::read_record`): that format does not store it.
    pub content_hash: Option<Hash32>,
    pub link: Link,
    pub format: LogFormat,
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
    /// A format 2 header that does not decode (its checksum matched).
    BadHeader(&'static str),
}

impl std::fmt::Display for RecordFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordFault::Truncated => write!(f, "the log ends inside the record (torn write)"),
            RecordFault::BadMagic => write!(f, "bad record magic"),
            RecordFault::BadLength(n) => write!(f, "impossible record length {n}"),
            RecordFault::BadKind(k) => write!(f, "unknown record kind {k}"),
            RecordFault::BadCrc => write!(f, "checksum mismatch"),
            RecordFault::BadHeader(why) => write!(f, "record header does not decode: {why}"),
        }
    }
}

fn hash_at(b: &[u8], at: usize) -> Hash32 {
    Hash32(b[at..at + 32].try_into().unwrap())
}

/// Validate the first 8 bytes of a record (either format) and return its
/// total length.
pub fn peek_record_len(prefix: &[u8; 8]) -> Result<u32, RecordFault> {
    let (len, format) = match LogFormat::of_prefix(prefix) {
        Some(LogFormat::V1) => (u32_at(prefix, R_LEN), LogFormat::V1),
        Some(LogFormat::V2) => (u32_at(prefix, V2_LEN), LogFormat::V2),
        None => return Err(RecordFault::BadMagic),
    };
    if !(format.min_record_len()..=MAX_RECORD_LEN).contains(&len) {
        return Err(RecordFault::BadLength(len));
    }
    Ok(len)
}

/// Bytes at the start of a record that [`record_identity`] reads (through
/// a format 1 record's kind byte): every record of either format is longer.
pub const RECORD_IDENTITY_LEN: usize = R_KIND + 1;

/// The sequence number, time and kind in the first bytes of a record,
/// without checking its checksum (the caller only matches them against an
/// index entry); `None` if the magic is wrong or they do not decode.
pub fn record_identity(
    prefix: &[u8; RECORD_IDENTITY_LEN],
) -> Option<(Seq, TimeNs, Option<RecordKind>)> {
    match LogFormat::of_prefix(prefix)? {
        LogFormat::V1 => Some((
            Seq(u64_at(prefix, R_SEQ)),
            TimeNs(u64_at(prefix, R_TIME) as i64),
            RecordKind::from_u8(prefix[R_KIND]),
        )),
        LogFormat::V2 => {
            let mut rest = &prefix[V2_VARINTS..];
            let seq = get_varint(&mut rest)?;
            Some((
                Seq(seq),
                TimeNs(u64_at(prefix, V2_TIME) as i64),
                RecordKind::from_u8(prefix[V2_KIND] & 0x0f),
            ))
        }
    }
}

/// Check the checksum of a whole record (either format) and decode its
/// header. A format 2 write's content hash is left `None`: see
/// [`RecordHeader::content_hash`].
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
    if rec[0] == RECORD_MAGIC_V2 {
        return decode_v2(rec, len);
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
        content_hash: Some(hash_at(rec, R_CONTENT)),
        link: Link::Chain(hash_at(rec, R_CHAIN)),
        format: LogFormat::V1,
    })
}

/// A format 2 header, its checksum already matched.
fn decode_v2(rec: &[u8], len: u32) -> Result<RecordHeader, RecordFault> {
    let body_end = rec.len() - RECORD_TRAILER_LEN;
    let (mut h, head_len) = decode_v2_head(&rec[..body_end], len)?;
    if h.kind == RecordKind::Mark {
        h.content_hash = Some(Hash32(*blake3::hash(&rec[head_len..body_end]).as_bytes()));
    }
    Ok(h)
}

/// The fields of a format 2 header from `b`, the record without its
/// checksum or a prefix of it, and the header's length. The content hash
/// is set when the header holds it or it is zero, `None` for a mark (its
/// body is needed) and a write that does not store it.
fn decode_v2_head(b: &[u8], len: u32) -> Result<(RecordHeader, usize), RecordFault> {
    if b.len() < V2_VARINTS {
        return Err(RecordFault::BadHeader("the header is cut short"));
    }
    let byte = b[V2_KIND];
    let kind = RecordKind::from_u8(byte & 0x0f).ok_or(RecordFault::BadKind(byte & 0x0f))?;
    if byte & !(0x0f | SECTOR_UNITS) != 0 {
        return Err(RecordFault::BadHeader("unknown bits in the kind byte"));
    }
    let mut rest = &b[V2_VARINTS..];
    let field = |rest: &mut &[u8]| -> Result<u64, RecordFault> {
        let before = rest.len();
        let v = get_varint(rest).ok_or(RecordFault::BadHeader("a varint runs past the header"))?;
        if before - rest.len() != varint_len(v) {
            return Err(RecordFault::BadHeader(
                "a varint is not in its shortest form",
            ));
        }
        Ok(v)
    };
    let seq = field(&mut rest)?;
    let (mut offset_bytes, mut length_bytes) = (field(&mut rest)?, field(&mut rest)?);
    if byte & SECTOR_UNITS != 0 {
        offset_bytes = offset_bytes
            .checked_mul(SECTOR)
            .ok_or(RecordFault::BadHeader("offset overflows"))?;
        length_bytes = length_bytes
            .checked_mul(SECTOR)
            .ok_or(RecordFault::BadHeader("length overflows"))?;
    } else if offset_bytes % SECTOR == 0 && length_bytes % SECTOR == 0 {
        // One history, one encoding: the writer uses sectors when it can.
        return Err(RecordFault::BadHeader(
            "byte units for a sector-aligned range",
        ));
    }
    let mut h = RecordHeader {
        record_len: len,
        seq: Seq(seq),
        time_ns: TimeNs(u64_at(b, V2_TIME) as i64),
        kind,
        flags: OpFlags(b[V2_FLAGS]),
        offset_bytes,
        length_bytes,
        content_hash: None,
        link: Link::Check(0),
        format: LogFormat::V2,
    };
    let head_len = h.head_len();
    if b.len() < head_len {
        return Err(RecordFault::BadHeader("the header runs past the record"));
    }
    let at = head_len - h.stored_hashes_len();
    h.link = if seq % CHAIN_EVERY == 0 {
        Link::Chain(hash_at(b, at))
    } else {
        Link::Check(u32_at(b, at))
    };
    h.content_hash = match kind {
        RecordKind::Write if h.stores_content_hash() => Some(hash_at(b, head_len - 32)),
        RecordKind::Write | RecordKind::Mark => None,
        _ => Some(Hash32::default()),
    };
    Ok((h, head_len))
}

/// Bytes of a record's head that [`decode_head_unchecked`] reads: every
/// header of either format fits (a format 2 header is at most 108).
pub const HEAD_READ_LEN: usize = RECORD_HEADER_LEN;

/// Decode the header at the start of `b` (up to [`HEAD_READ_LEN`] bytes
/// of the log from a record's start, fewer at its end) without its
/// checksum, which needs the whole record: for reading the canonical
/// content of a record already checked once. `None` if it does not decode;
/// the content hash is `None` where the header does not hold it (format 2
/// marks and small writes: read the whole record).
pub fn decode_head_unchecked(b: &[u8]) -> Option<RecordHeader> {
    match LogFormat::of_prefix(b)? {
        LogFormat::V1 => decode_header_unchecked(b.get(..RECORD_HEADER_LEN)?.try_into().ok()?),
        LogFormat::V2 => {
            let len = peek_record_len(b.get(..8)?.try_into().ok()?).ok()?;
            let end = b.len().min(len as usize - RECORD_TRAILER_LEN);
            decode_v2_head(&b[..end], len).ok().map(|(h, _)| h)
        }
    }
}

/// The body of a whole record of either format (between header and
/// checksum). The record must have decoded.
pub fn record_body(rec: &[u8]) -> &[u8] {
    let end = rec.len() - RECORD_TRAILER_LEN;
    if rec.first() != Some(&RECORD_MAGIC_V2) {
        return &rec[RECORD_HEADER_LEN..end];
    }
    match decode_v2_head(&rec[..end], rec.len() as u32) {
        Ok((_, head_len)) => &rec[head_len..end],
        Err(_) => &[],
    }
}

/// Bytes of a record's canonical content ([`RecordHeader::canonical`]).
pub const CANONICAL_LEN: usize = 66;

impl RecordHeader {
    /// The canonical content: `seq, time_ns, kind, flags, offset_bytes,
    /// length_bytes` encoded as in the format 1 header (8+8+1+1+8+8 = 34
    /// bytes, no padding), then the 32-byte content hash. What the chain
    /// hashes, and the leaf data of the record's Merkle tree leaf.
    ///
    /// Panics if the content hash is unknown (a format 2 write not yet
    /// rebuilt): that is a bug in the caller, never a property of the data.
    pub fn canonical(&self) -> [u8; CANONICAL_LEN] {
        let content = self
            .content_hash
            .expect("the content hash of a format 2 write is rebuilt before it is used");
        let mut canon = [0u8; CANONICAL_LEN];
        canon[0..8].copy_from_slice(&self.seq.0.to_le_bytes());
        canon[8..16].copy_from_slice(&self.time_ns.0.to_le_bytes());
        canon[16] = self.kind as u8;
        canon[17] = self.flags.0;
        canon[18..26].copy_from_slice(&self.offset_bytes.to_le_bytes());
        canon[26..34].copy_from_slice(&self.length_bytes.to_le_bytes());
        canon[34..].copy_from_slice(&content.0);
        canon
    }

    /// The record's Merkle tree leaf hash: SHA-256(0x00 ‖ canonical content).
    pub fn leaf_hash(&self) -> Hash32 {
        crate::merkle::leaf_hash(&self.canonical())
    }

    /// Bytes of this record's header in its format.
    pub fn head_len(&self) -> usize {
        match self.format {
            LogFormat::V1 => RECORD_HEADER_LEN,
            LogFormat::V2 => {
                let (off, len) = self.v2_range();
                V2_VARINTS
                    + varint_len(self.seq.0)
                    + varint_len(off)
                    + varint_len(len)
                    + self.stored_hashes_len()
            }
        }
    }

    /// Format 2: bytes of the chain (or its check) and the content hash
    /// when stored.
    fn stored_hashes_len(&self) -> usize {
        let link = if self.seq.0 % CHAIN_EVERY == 0 {
            32
        } else {
            CHAIN_CHECK_LEN
        };
        link + if self.stores_content_hash() { 32 } else { 0 }
    }

    /// Does this record's header hold its content hash? Always in format
    /// 1; in format 2 for writes of [`CONTENT_HASH_MIN_BYTES`] or more,
    /// where rebuilding it would read that much and storing it costs at
    /// most 0.2%.
    pub fn stores_content_hash(&self) -> bool {
        match self.format {
            LogFormat::V1 => true,
            LogFormat::V2 => {
                self.kind == RecordKind::Write && self.length_bytes >= CONTENT_HASH_MIN_BYTES
            }
        }
    }

    /// Format 2's stored range: in sectors when both ends are aligned.
    fn v2_range(&self) -> (u64, u64) {
        if self.sector_units() {
            (self.offset_bytes / SECTOR, self.length_bytes / SECTOR)
        } else {
            (self.offset_bytes, self.length_bytes)
        }
    }

    fn sector_units(&self) -> bool {
        self.offset_bytes % SECTOR == 0 && self.length_bytes % SECTOR == 0
    }

    /// The chain after this record, given the chain before it, if what the
    /// record stores of its chain admits it.
    pub fn chain_after(&self, prev: &Hash32) -> Option<Hash32> {
        let chain = chain_next(prev, self);
        self.link.admits(&chain).then_some(chain)
    }
}

/// The header fields of the canonical content `c`, if it is one (a known
/// kind); length unset, link a zero chain, format 1.
pub fn decode_canonical(c: &[u8; CANONICAL_LEN]) -> Option<RecordHeader> {
    Some(RecordHeader {
        record_len: 0,
        seq: Seq(u64_at(c, 0)),
        time_ns: TimeNs(u64_at(c, 8) as i64),
        kind: RecordKind::from_u8(c[16])?,
        flags: OpFlags(c[17]),
        offset_bytes: u64_at(c, 18),
        length_bytes: u64_at(c, 26),
        content_hash: Some(hash_at(c, 34)),
        link: Link::Chain(Hash32::default()),
        format: LogFormat::V1,
    })
}

/// Decode the header at the start of a format 1 record without its
/// checksum (which needs the whole record): for reading the canonical
/// content of a record already checked once. `None` if the magic or kind
/// is wrong (a format 2 record stores no content hash to read).
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
        content_hash: Some(hash_at(b, R_CONTENT)),
        link: Link::Chain(hash_at(b, R_CHAIN)),
        format: LogFormat::V1,
    })
}

/// BLAKE3(previous chain ‖ canonical content).
pub fn chain_next(prev: &Hash32, h: &RecordHeader) -> Hash32 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&prev.0);
    hasher.update(&h.canonical());
    Hash32(*hasher.finalize().as_bytes())
}

/// Start record `h` (its format, seq and range set): reserve its header;
/// the body is appended by the caller and [`finish_record`] fills in
/// length, header fields and checksum.
pub fn begin_record(buf: &mut Vec<u8>, h: &RecordHeader) {
    buf.clear();
    buf.resize(h.head_len(), 0);
}

/// Fill in the header of a record begun with [`begin_record`] for the same
/// `h` and append its checksum. `h.record_len` is computed here; `h.link`
/// must be set.
pub fn finish_record(buf: &mut Vec<u8>, h: &mut RecordHeader) {
    h.record_len = (buf.len() + RECORD_TRAILER_LEN) as u32;
    match h.format {
        LogFormat::V1 => {
            let (Link::Chain(chain), Some(content)) = (h.link, h.content_hash) else {
                panic!("a format 1 record stores its whole chain and content hash");
            };
            buf[..4].copy_from_slice(RECORD_MAGIC);
            buf[R_LEN..R_LEN + 4].copy_from_slice(&h.record_len.to_le_bytes());
            buf[R_SEQ..R_SEQ + 8].copy_from_slice(&h.seq.0.to_le_bytes());
            buf[R_TIME..R_TIME + 8].copy_from_slice(&h.time_ns.0.to_le_bytes());
            buf[R_KIND] = h.kind as u8;
            buf[R_FLAGS] = h.flags.0;
            buf[R_OFFSET..R_OFFSET + 8].copy_from_slice(&h.offset_bytes.to_le_bytes());
            buf[R_LENGTH..R_LENGTH + 8].copy_from_slice(&h.length_bytes.to_le_bytes());
            buf[R_CONTENT..R_CONTENT + 32].copy_from_slice(&content.0);
            buf[R_CHAIN..R_CHAIN + 32].copy_from_slice(&chain.0);
        }
        LogFormat::V2 => {
            let mut head = Vec::with_capacity(h.head_len());
            head.push(RECORD_MAGIC_V2);
            head.push(h.kind as u8 | if h.sector_units() { SECTOR_UNITS } else { 0 });
            head.push(h.flags.0);
            head.extend_from_slice(&h.record_len.to_le_bytes());
            head.extend_from_slice(&h.time_ns.0.to_le_bytes());
            let (off, len) = h.v2_range();
            for v in [h.seq.0, off, len] {
                put_varint(&mut head, v);
            }
            match h.link {
                Link::Chain(c) => head.extend_from_slice(&c.0),
                Link::Check(c) => head.extend_from_slice(&c.to_le_bytes()),
            }
            if h.stores_content_hash() {
                let content = h
                    .content_hash
                    .expect("a large write's content hash is known");
                head.extend_from_slice(&content.0);
            }
            assert_eq!(head.len(), h.head_len(), "format 2 header length");
            assert_eq!(
                matches!(h.link, Link::Chain(_)),
                h.seq.0 % CHAIN_EVERY == 0,
                "format 2 stores the whole chain exactly every {CHAIN_EVERY} records"
            );
            buf[..head.len()].copy_from_slice(&head);
        }
    }
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

/// The content hash of Write `h`, rebuilt from its blocks `locs` (from
/// [`record_block_locs`]): BLAKE3 of the bytes it wrote. `fill(loc, out)`
/// decodes one stored block into `out`.
pub fn rebuild_content_hash<E>(
    h: &RecordHeader,
    locs: &[(u64, Loc)],
    block_size: u32,
    mut fill: impl FnMut(Loc, &mut [u8]) -> Result<(), E>,
) -> Result<Hash32, E> {
    let bs = u64::from(block_size);
    let end = h.offset_bytes + h.length_bytes;
    let mut block = vec![0u8; block_size as usize];
    let mut hasher = blake3::Hasher::new();
    for &(b, loc) in locs {
        if loc.encoding == Encoding::Zero {
            block.fill(0);
        } else {
            fill(loc, &mut block)?;
        }
        let (lo, hi) = ((b * bs).max(h.offset_bytes), ((b + 1) * bs).min(end));
        hasher.update(&block[(lo - b * bs) as usize..(hi - b * bs) as usize]);
    }
    Ok(Hash32(*hasher.finalize().as_bytes()))
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
    let stored_base = rec_offset + h.head_len() as u64;
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

    fn mark(format: LogFormat, seq: u64) -> (Vec<u8>, RecordHeader) {
        let name = b"evidence";
        let chain = Hash32([9; 32]);
        let mut h = RecordHeader {
            record_len: 0,
            seq: Seq(seq),
            time_ns: TimeNs(-5),
            kind: RecordKind::Mark,
            flags: OpFlags::FUA,
            offset_bytes: 0,
            length_bytes: name.len() as u64,
            content_hash: Some(Hash32(*blake3::hash(name).as_bytes())),
            link: Link::of(format, Seq(seq), chain),
            format,
        };
        let mut buf = Vec::new();
        begin_record(&mut buf, &h);
        buf.extend_from_slice(name);
        finish_record(&mut buf, &mut h);
        (buf, h)
    }

    #[test]
    fn record_round_trip_and_corruption() {
        for (format, seq) in [(LogFormat::V1, 7), (LogFormat::V2, 7), (LogFormat::V2, 512)] {
            let (buf, h) = mark(format, seq);
            assert_eq!(decode_record(&buf), Ok(h), "{format:?} {seq}");
            assert_eq!(record_body(&buf), b"evidence");
            assert_eq!(buf.len(), h.head_len() + 8 + RECORD_TRAILER_LEN);
            for i in 0..buf.len() {
                let mut bad = buf.clone();
                bad[i] ^= 0x40;
                assert!(
                    decode_record(&bad).is_err(),
                    "{format:?}: flip at {i} undetected"
                );
            }
            assert_eq!(
                decode_record(&buf[..buf.len() - 1]),
                Err(RecordFault::Truncated)
            );
            let prefix: &[u8; RECORD_IDENTITY_LEN] = buf[..RECORD_IDENTITY_LEN].try_into().unwrap();
            let identity = record_identity(prefix).unwrap();
            assert_eq!(identity, (Seq(seq), TimeNs(-5), Some(RecordKind::Mark)));
        }
        // A header read alone gives the content hash where it holds it.
        let (buf, h) = mark(LogFormat::V1, 7);
        assert_eq!(
            decode_head_unchecked(&buf[..buf.len().min(HEAD_READ_LEN)]),
            Some(h)
        );
        let (buf, h) = mark(LogFormat::V2, 7);
        // Cut anywhere, a head read is refused, never a panic.
        for n in 0..buf.len() {
            let _ = decode_head_unchecked(&buf[..n]);
        }
        let head = decode_head_unchecked(&buf).unwrap();
        assert_eq!(
            (head.seq, head.content_hash),
            (h.seq, None),
            "a mark's hash needs its body"
        );
        // Format 2 keeps what cannot be recomputed: a mark of 8 bytes at
        // record 7 takes 15 fixed bytes, 3 varints, a 4-byte chain check,
        // the name and the CRC; at record 512 the whole chain.
        assert_eq!(mark(LogFormat::V2, 7).0.len(), 15 + 3 + 4 + 8 + 4);
        assert_eq!(mark(LogFormat::V2, 512).0.len(), 15 + 4 + 32 + 8 + 4);
        assert_eq!(mark(LogFormat::V1, 7).0.len(), 112 + 8 + 4);
    }

    /// A random 4 KiB write costs 30 bytes of framing in format 2; a write
    /// off sector boundaries keeps its byte range; what the header says
    /// comes back.
    #[test]
    fn format_2_writes_and_their_ranges() {
        for (offset_bytes, length_bytes, framing) in [
            (200_000 * 4096, 4096, 15 + 3 + 3 + 1 + 4 + 4),
            (1, 3, 15 + 3 + 1 + 1 + 4 + 4),
            (u64::MAX / 2, 512, 15 + 3 + 9 + 2 + 4 + 4),
        ] {
            let mut h = RecordHeader {
                record_len: 0,
                seq: Seq(100_000),
                time_ns: TimeNs(1_795_000_000_000_000_000),
                kind: RecordKind::Zero,
                flags: OpFlags::default(),
                offset_bytes,
                length_bytes,
                content_hash: Some(Hash32::default()),
                link: Link::Check(0xdead_beef),
                format: LogFormat::V2,
            };
            let mut buf = Vec::new();
            begin_record(&mut buf, &h);
            finish_record(&mut buf, &mut h);
            assert_eq!(buf.len(), framing, "{offset_bytes}+{length_bytes}");
            assert_eq!(decode_record(&buf), Ok(h));
            assert!(record_body(&buf).is_empty());
        }
    }

    /// A write of 16 KiB or more stores its content hash, found by a read of
    /// its head alone; a smaller one does not.
    #[test]
    fn format_2_large_writes_store_their_content_hash() {
        for (len, stored) in [(16 << 10, true), ((16 << 10) - 512, false)] {
            let data = vec![3u8; len as usize];
            let mut h = RecordHeader {
                record_len: 0,
                seq: Seq(9),
                time_ns: TimeNs(1),
                kind: RecordKind::Write,
                flags: OpFlags::default(),
                offset_bytes: 0,
                length_bytes: len,
                content_hash: Some(Hash32(*blake3::hash(&data).as_bytes())),
                link: Link::Check(5),
                format: LogFormat::V2,
            };
            let mut buf = Vec::new();
            begin_record(&mut buf, &h);
            for block in data.chunks(4096) {
                let mut b = [0u8; 4096];
                b[..block.len()].copy_from_slice(block);
                push_stored(&mut buf, Encoding::Raw, &b);
            }
            finish_record(&mut buf, &mut h);
            let got = decode_record(&buf).unwrap();
            let head = decode_head_unchecked(&buf[..HEAD_READ_LEN]).unwrap();
            assert_eq!(got.content_hash.is_some(), stored, "{len}");
            assert_eq!(head.content_hash, got.content_hash, "{len}");
            if stored {
                assert_eq!(got, h);
            }
            assert_eq!(record_body(&buf).len(), len.div_ceil(4096) as usize * 4097);
        }
    }

    /// A format 2 write's content hash is not stored: decoding leaves it to
    /// be rebuilt, and a chain check admits only the chain it was made from.
    #[test]
    fn format_2_leaves_the_content_hash_to_be_rebuilt() {
        let mut h = RecordHeader {
            record_len: 0,
            seq: Seq(3),
            time_ns: TimeNs(1),
            kind: RecordKind::Write,
            flags: OpFlags::default(),
            offset_bytes: 0,
            length_bytes: 512,
            content_hash: Some(Hash32(*blake3::hash(&[7u8; 512]).as_bytes())),
            link: Link::Check(0),
            format: LogFormat::V2,
        };
        let chain = chain_next(&Hash32([1; 32]), &h);
        h.link = Link::of(LogFormat::V2, h.seq, chain);
        let mut buf = Vec::new();
        begin_record(&mut buf, &h);
        push_stored(&mut buf, Encoding::Raw, &[7u8; 4096]);
        finish_record(&mut buf, &mut h);
        let mut got = decode_record(&buf).unwrap();
        assert_eq!(got.content_hash, None);
        let locs = record_block_locs(0, &got, record_body(&buf), 4096, 1 << 20).unwrap();
        got.content_hash = Some(
            rebuild_content_hash(&got, &locs, 4096, |loc, out| {
                let at = loc.offset_bytes as usize;
                decode_block(loc.encoding, &buf[at..at + loc.stored_len as usize], out)
            })
            .unwrap(),
        );
        assert_eq!(got, h);
        assert_eq!(got.chain_after(&Hash32([1; 32])), Some(chain));
        assert_eq!(got.chain_after(&Hash32([2; 32])), None);
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
