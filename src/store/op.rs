//! The operations every producer (NBD, dm-log-writes, stream, image import)
//! hands to the store. One `Op` becomes exactly one record; the mapping
//! between an operation and a record's kind, range and content hash is
//! here and nowhere else.

use crate::store::format::{self, RecordHeader, RecordKind};
use crate::units::{Hash32, Seq, TimeNs};

/// Flags carried from the producer into the record, for the analyst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct OpFlags(pub u8);

impl OpFlags {
    /// Force unit access: the producer asked for this write to be durable.
    pub const FUA: OpFlags = OpFlags(1);
    /// A cache flush preceded this operation (dm-log-writes FLUSH on a write).
    pub const PREFLUSH: OpFlags = OpFlags(2);
    /// The producer marked the write as filesystem metadata.
    pub const META: OpFlags = OpFlags(4);
    /// The recorder's clock went backwards; the time was held at the last time.
    pub const CLOCK_HELD: OpFlags = OpFlags(8);

    pub fn contains(self, other: OpFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for OpFlags {
    type Output = OpFlags;
    fn bitor(self, rhs: OpFlags) -> OpFlags {
        OpFlags(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for OpFlags {
    fn bitor_assign(&mut self, rhs: OpFlags) {
        self.0 |= rhs.0;
    }
}

/// One operation on the disk, borrowed from the producer's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op<'a> {
    /// `data` written at `offset_bytes` (any alignment; partial blocks merge).
    Write { offset_bytes: u64, data: &'a [u8] },
    /// The range reads as zeros afterwards (NBD WRITE_ZEROES).
    Zero {
        offset_bytes: u64,
        length_bytes: u64,
    },
    /// The range was discarded; diskhist reads it back as zeros.
    Trim {
        offset_bytes: u64,
        length_bytes: u64,
    },
    /// A cache flush: no change of state, but a point the producer made durable.
    Flush,
    /// A named point in the history (dm-log-writes MARK, `t=<ns>` marks...).
    Mark { name: &'a str },
}

impl Op<'_> {
    /// The kind of record this operation becomes.
    pub fn kind(&self) -> RecordKind {
        match self {
            Op::Write { .. } => RecordKind::Write,
            Op::Zero { .. } => RecordKind::Zero,
            Op::Trim { .. } => RecordKind::Trim,
            Op::Flush => RecordKind::Flush,
            Op::Mark { .. } => RecordKind::Mark,
        }
    }

    /// The record's `(offset_bytes, length_bytes)`: the disk range written,
    /// zeroed or trimmed; `(0, name length)` for a mark, `(0, 0)` for a
    /// flush.
    pub fn range(&self) -> (u64, u64) {
        match *self {
            Op::Write { offset_bytes, data } => (offset_bytes, data.len() as u64),
            Op::Zero {
                offset_bytes,
                length_bytes,
            }
            | Op::Trim {
                offset_bytes,
                length_bytes,
            } => (offset_bytes, length_bytes),
            Op::Flush => (0, 0),
            Op::Mark { name } => (0, name.len() as u64),
        }
    }

    /// The bytes the record's content hash covers: the data written, the
    /// mark's name, or nothing.
    pub fn payload(&self) -> &[u8] {
        match self {
            Op::Write { data, .. } => data,
            Op::Mark { name } => name.as_bytes(),
            _ => &[],
        }
    }

    /// BLAKE3 of the bytes written (Write) or of the name (Mark); 32 zero
    /// bytes for the others.
    pub fn content_hash(&self) -> Hash32 {
        match self.kind() {
            RecordKind::Write | RecordKind::Mark => {
                Hash32(*blake3::hash(self.payload()).as_bytes())
            }
            _ => Hash32::default(),
        }
    }

    /// The chain hash after recording this operation as record `seq` at
    /// `time_ns` with `flags`, following `prev`: what the writer stores,
    /// so a copy of a history can be checked record by record.
    pub fn chain_after(&self, prev: &Hash32, seq: Seq, time_ns: TimeNs, flags: OpFlags) -> Hash32 {
        format::chain_next(prev, &self.header(seq, time_ns, flags))
    }

    /// The record header this operation gets (length and link unset, format
    /// 1 until the writer sets its store's).
    pub(crate) fn header(&self, seq: Seq, time_ns: TimeNs, flags: OpFlags) -> RecordHeader {
        let (offset_bytes, length_bytes) = self.range();
        RecordHeader {
            record_len: 0,
            seq,
            time_ns,
            kind: self.kind(),
            flags,
            offset_bytes,
            length_bytes,
            content_hash: Some(self.content_hash()),
            link: format::Link::Chain(Hash32::default()),
            format: format::LogFormat::V1,
        }
    }
}

/// An owned operation, for producers that parse into their own buffers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedOp {
    Write {
        offset_bytes: u64,
        data: Vec<u8>,
    },
    Zero {
        offset_bytes: u64,
        length_bytes: u64,
    },
    Trim {
        offset_bytes: u64,
        length_bytes: u64,
    },
    Flush,
    Mark {
        name: String,
    },
}

impl OwnedOp {
    pub fn as_op(&self) -> Op<'_> {
        match self {
            OwnedOp::Write { offset_bytes, data } => Op::Write {
                offset_bytes: *offset_bytes,
                data,
            },
            OwnedOp::Zero {
                offset_bytes,
                length_bytes,
            } => Op::Zero {
                offset_bytes: *offset_bytes,
                length_bytes: *length_bytes,
            },
            OwnedOp::Trim {
                offset_bytes,
                length_bytes,
            } => Op::Trim {
                offset_bytes: *offset_bytes,
                length_bytes: *length_bytes,
            },
            OwnedOp::Flush => Op::Flush,
            OwnedOp::Mark { name } => Op::Mark { name },
        }
    }
}

impl OwnedOp {
    /// The operation a record of `kind` with this range and payload (the
    /// bytes written, or the mark's name) describes; `None` when the
    /// payload does not fit the kind (a mark name that is not UTF-8, a
    /// payload on a zero, trim or flush, a write whose length is not its
    /// payload's).
    pub fn from_parts(
        kind: RecordKind,
        offset_bytes: u64,
        length_bytes: u64,
        payload: Vec<u8>,
    ) -> Option<OwnedOp> {
        let empty = payload.is_empty();
        match kind {
            RecordKind::Write if length_bytes == payload.len() as u64 => Some(OwnedOp::Write {
                offset_bytes,
                data: payload,
            }),
            RecordKind::Zero if empty => Some(OwnedOp::Zero {
                offset_bytes,
                length_bytes,
            }),
            RecordKind::Trim if empty => Some(OwnedOp::Trim {
                offset_bytes,
                length_bytes,
            }),
            RecordKind::Flush if empty && offset_bytes == 0 && length_bytes == 0 => {
                Some(OwnedOp::Flush)
            }
            RecordKind::Mark if offset_bytes == 0 && length_bytes == payload.len() as u64 => {
                String::from_utf8(payload)
                    .ok()
                    .map(|name| OwnedOp::Mark { name })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip_for_every_kind() {
        let ops = [
            OwnedOp::Write {
                offset_bytes: 4096,
                data: vec![7; 100],
            },
            OwnedOp::Zero {
                offset_bytes: 1,
                length_bytes: 2,
            },
            OwnedOp::Trim {
                offset_bytes: 3,
                length_bytes: 4,
            },
            OwnedOp::Flush,
            OwnedOp::Mark { name: "t=1".into() },
        ];
        for op in ops {
            let o = op.as_op();
            let (off, len) = o.range();
            let back = OwnedOp::from_parts(o.kind(), off, len, o.payload().to_vec());
            assert_eq!(back.as_ref(), Some(&op));
        }
        assert_eq!(
            OwnedOp::from_parts(RecordKind::Mark, 0, 1, vec![0xff]),
            None,
            "a mark name must be UTF-8"
        );
        assert_eq!(OwnedOp::from_parts(RecordKind::Flush, 0, 0, vec![1]), None);
    }
}
