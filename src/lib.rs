//! diskhist: every write made to a virtual disk, with its time, kept in an
//! append-only, tamper-evident block-history store; any past moment presented
//! as an ordinary read-only raw image.
//!
//! The layers, each knowing only those above it in this list:
//!
//! - [`store`]: the block-history store: records, the index, the one
//!   writer, readers of any state, verification. Knows nothing of FUSE, NBD
//!   or log formats.
//! - [`producers`]: where writes come from: dm-log-writes logs, diskhist's
//!   own stream format, whole images.
//! - [`nbd`] (feature `nbd`): the NBD server that records what QEMU writes;
//!   [`sessions`]: the `STORE/sessions` evidence file each server run
//!   appends to (`info` and `verify` read it too).
//! - [`merkle`]: the RFC 6962/9162 Merkle tree hash and its proofs (the
//!   store keeps the tree over its records under `index/tree/`);
//!   [`seal`]: signed checkpoints (C2SP signed notes), proof bundles,
//!   audits without the store, sealing while recording.
//! - [`mount`] (feature `fuse`): the read-only FUSE tree
//!   `/at/<time>/disk.img`.
//! - Times ([`parse_time`], [`TimeSpec`]) and the unit-carrying newtypes
//!   ([`Seq`], [`TimeNs`], [`BlockNo`]) at the crate root.
//!
//! Where the coming capabilities go (each module arrives with its issue):
//!
//! - `fs`: partitions and filesystems read inside any state, from the
//!   store's blocks (a state as a read-at source); used by the mount's
//!   `files/` trees and by the command line's `ls`/`cat` alike.
//! - `history`: file history, bisect and timelines, built on the store and
//!   `fs`.
//!
//! The command line (`src/cli`, the binary, feature `cli`) parses flags,
//! calls these, and maps errors to exit codes.

pub mod fs;
pub mod history;
mod le;
pub mod merkle;
#[cfg(feature = "fuse")]
pub mod mount;
#[cfg(feature = "nbd")]
pub mod nbd;
pub mod producers;
pub mod seal;
pub mod sessions;
pub mod store;
mod time;
mod units;

pub use store::{Store, Writer};
pub use time::{
    format_canonical, format_rfc3339, format_rfc3339_ns, now, parse_time, TimeError, TimeSpec,
    ACCEPTED_FORMS,
};
pub use units::{parse_size, BlockNo, Geometry, Hash32, Seq, SizeError, TimeNs};

/// The door for the integration tests and the fuzz targets: internals they
/// check directly (the record, header and index layouts, the NBD wire
/// protocol and its pieces). Not a supported interface: it changes with the
/// formats. Nothing else in the library is reachable from outside except
/// through the modules above.
#[doc(hidden)]
pub mod testing {
    /// One step of xorshift64: the tests' and benches' cheap, repeatable
    /// numbers (and bytes lz4 cannot shrink). Advances `state`, which must
    /// not be 0, and returns it.
    pub fn xorshift64(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// The store's on-disk layout: header, records, block entries.
    pub mod format {
        pub use crate::store::format::*;
    }
    /// The index: manifest, runs, `seqs`.
    pub mod index {
        pub use crate::store::index::*;
    }
    /// The NBD server's pieces, each checkable alone.
    #[cfg(feature = "nbd")]
    pub mod nbd {
        pub use crate::nbd::testing::*;
    }
}
