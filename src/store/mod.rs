//! The block-history store: one directory holding every write made to a disk,
//! with its time, and an index that answers "block B as of state S" in
//! O(log n). The store knows nothing of FUSE, NBD or log formats: producers
//! hand it [`Op`]s, consumers ask it for states.
//!
//! Layout of a store directory (files 0600, directories 0700):
//!
//! ```text
//! STORE/
//!   diskhist.store   header: magic, format version, geometry (format.rs)
//!   lock             flock(2)ed by the one writer
//!   log              append-only records, checksummed and hash-chained
//!   index/seqs       one 16-byte entry per record: time, log offset
//!   index/MANIFEST   which sorted runs cover which records
//!   index/*.run      sorted (block, seq) -> payload location runs
//!   index/*.dedup    sorted content hash -> payload location runs
//! ```
//!
//! Everything under `index/` is derived from `log` and can be rebuilt from
//! it (`diskhist verify --reindex`).

pub use crate::producers::op::{Op, OpFlags, OwnedOp};
pub use crate::units::{BlockNo, Geometry, Hash32, Seq, TimeNs};
