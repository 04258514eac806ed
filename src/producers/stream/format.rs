//! The stream's bytes. Little-endian everywhere.
//!
//! # Version 2 (what `dump` writes)
//!
//! ```text
//! header (32 bytes)
//!  0           8         12           16           24           28       32
//!  +-----------+---------+------------+------------+------------+--------+
//!  | "DHSTREAM"| version | block_size | size_bytes | reserved 0 | crc32c |
//!  +-----------+---------+------------+------------+------------+--------+
//!
//! then records, all framed alike:
//!  0      4    5     6   8     16        24             32             40            44          76
//!  +------+----+-----+---+-----+---------+--------------+--------------+-------------+-----------+
//!  |"DHSR"|kind|flags| 0 | seq | time_ns | offset_bytes | length_bytes | payload_len | chain (32)|
//!  +------+----+-----+---+-----+---------+--------------+--------------+-------------+-----------+
//!  76                  76+payload_len         +4
//!  +-------------------+----------------------+
//!  | payload           | crc32c(0..here)      |
//!  +-------------------+----------------------+
//! ```
//!
//! - The first record is the **start** (kind 255): `seq` is the record of
//!   the source store the stream continues after (0 for a dump from the
//!   beginning), `chain` the source's chain hash after it (32 zero bytes
//!   for 0); every other field is zero. It is what lets a store check a
//!   partial dump (`dump --from`) before recording any of it.
//! - Then one record per store record (kinds 1 write, 2 zero, 3 trim,
//!   4 flush, 5 mark, as in the store), `seq` counting on from the start's,
//!   times never decreasing, and `chain` the source's chain hash after the
//!   record: `store::format::chain_next` of the previous record's chain (the
//!   start's, for the first) and the record's seq, time, kind, flags, range
//!   and BLAKE3 content hash. The payload is the bytes written (write,
//!   `length_bytes` of them), the UTF-8 name (mark, `length_bytes` long), or
//!   nothing.
//! - Last, the **end** (kind 0): `seq` is the number of records, `chain`
//!   the last record's (the start's if there are none), nothing else.
//!
//! # Version 1 (what diskhist wrote before; still read)
//!
//! The same header (version 1) and records without the `chain` field (a
//! 44-byte record header, the payload at 44), no start record, and an end
//! record whose payload is the source's chain hash after the last record
//! (32 bytes). A version 1 record cannot be checked on its own: only the
//! whole stream, against its end record (see [`super::ingest`](mod@super::ingest)).
//!
//! # Damage
//!
//! Every record carries its own crc32c, and every field the format fixes
//! to zero must be zero, so no byte of an accepted stream goes unread. A
//! record whose checksum, fields, sequence or time are wrong, or (version
//! 2) whose content does not give the chain it carries, is an error naming
//! the record; a stream that stops before its end record is truncated. In
//! both cases the records before it were whole and checked.

use crate::store::{OpFlags, OwnedOp};
use crate::units::{Hash32, Seq, TimeNs};
use std::io;

pub(crate) const MAGIC: &[u8; 8] = b"DHSTREAM";
pub(crate) const HEADER_LEN: usize = 32;
pub(crate) const H_VERSION: usize = MAGIC.len();
pub(crate) const H_BLOCK_SIZE: usize = H_VERSION + 4;
pub(crate) const H_SIZE: usize = H_BLOCK_SIZE + 4;
pub(crate) const H_RESERVED: usize = H_SIZE + 8;
pub(crate) const H_CRC: usize = H_RESERVED + 4;

pub(crate) const REC_MAGIC: &[u8; 4] = b"DHSR";
pub(crate) const R_KIND: usize = REC_MAGIC.len();
pub(crate) const R_FLAGS: usize = R_KIND + 1;
/// Two bytes fixed to zero.
pub(crate) const R_ZERO: usize = R_FLAGS + 1;
pub(crate) const R_SEQ: usize = R_ZERO + 2;
pub(crate) const R_TIME: usize = R_SEQ + 8;
pub(crate) const R_OFFSET: usize = R_TIME + 8;
pub(crate) const R_LENGTH: usize = R_OFFSET + 8;
pub(crate) const R_PAYLOAD_LEN: usize = R_LENGTH + 8;
/// Version 2 only.
pub(crate) const R_CHAIN: usize = R_PAYLOAD_LEN + 4;
pub(crate) const V1_REC_HEADER_LEN: usize = R_CHAIN;
pub(crate) const V2_REC_HEADER_LEN: usize = R_CHAIN + 32;
pub(crate) const REC_TRAILER_LEN: usize = 4;

pub(crate) const KIND_END: u8 = 0;
/// Outside the store's kinds (1..=5).
pub(crate) const KIND_START: u8 = 255;

/// Which version of the format a stream is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamVersion {
    /// Written by earlier releases: no start record, no per-record chain.
    V1 = 1,
    /// What `dump` writes.
    V2 = 2,
}

impl StreamVersion {
    pub fn number(self) -> u32 {
        self as u32
    }

    pub fn from_u32(v: u32) -> Option<StreamVersion> {
        match v {
            1 => Some(StreamVersion::V1),
            2 => Some(StreamVersion::V2),
            _ => None,
        }
    }

    pub(crate) fn record_header_len(self) -> usize {
        match self {
            StreamVersion::V1 => V1_REC_HEADER_LEN,
            StreamVersion::V2 => V2_REC_HEADER_LEN,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    #[error("reading the stream: {0}")]
    Io(#[from] io::Error),
    #[error("not a diskhist stream (bad magic at byte 0)")]
    BadMagic,
    #[error(
        "stream format version {0}; this diskhist reads versions 1 and 2 (a later \
         release wrote it, or the header is damaged)"
    )]
    Version(u32),
    #[error("stream header is corrupt (checksum mismatch)")]
    BadHeader,
    #[error("stream header: reserved bytes 24..28 are not zero; not a stream this diskhist wrote")]
    HeaderReserved,
    #[error("stream start record (byte {HEADER_LEN}): {what}")]
    BadStart { what: String },
    #[error("stream record {index} at byte {offset}: {what}")]
    BadRecord {
        index: u64,
        offset: u64,
        what: String,
    },
    #[error(
        "stream record {index} (record {seq} of its history) at byte {offset}: its content \
         does not give the chain hash it carries: the stream was altered or damaged"
    )]
    Chain { index: u64, offset: u64, seq: Seq },
    #[error("stream is truncated after {records} whole records (byte {offset}): no end record")]
    Truncated { records: u64, offset: u64 },
}

/// The geometry a stream was dumped from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamHeader {
    pub block_size: u32,
    pub size_bytes: u64,
}

/// Where a version 2 stream begins: after record `seq` of its history,
/// whose chain hash there is `chain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamStart {
    pub seq: Seq,
    pub chain: Hash32,
}

/// One record of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    pub seq: Seq,
    pub time_ns: TimeNs,
    pub flags: OpFlags,
    pub op: OwnedOp,
    /// The source's chain hash after this record; `None` in a version 1
    /// stream, which does not carry it.
    pub chain: Option<Hash32>,
}

impl StreamRecord {
    /// The source's chain hash after this record, recomputed from its
    /// predecessor's: what the store's writer stores when it records the
    /// operation at this seq, time and flags.
    pub fn chain_from(&self, prev: &Hash32) -> Hash32 {
        self.op
            .as_op()
            .chain_after(prev, self.seq, self.time_ns, self.flags)
    }
}

/// What the end record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamEnd {
    pub records: u64,
    pub chain: Hash32,
}
