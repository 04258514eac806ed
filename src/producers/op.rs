//! The operations every producer (NBD, dm-log-writes, stream, image import)
//! hands to the store. One `Op` becomes exactly one record.

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
