//! diskhist: every write made to a virtual disk, with its time, kept in an
//! append-only, tamper-evident block-history store; any past moment presented
//! as an ordinary read-only raw image.
//!
//! - [`store`]: the block-history store (knows nothing of FUSE or NBD).
//! - [`producers`]: where writes come from: dm-log-writes logs, diskhist's
//!   own stream format, whole images.
//! - [`nbd`]: the NBD server that records what QEMU writes.
//! - [`sessions`]: the `STORE/sessions` evidence file: each serve run, and
//!   how far the host clock could be trusted.
//! - [`mount`]: the read-only FUSE tree `/at/<time>/disk.img`.
//! - [`time`]: every accepted spelling of a moment.

mod le;
#[cfg(feature = "fuse")]
pub mod mount;
#[cfg(feature = "nbd")]
pub mod nbd;
pub mod producers;
pub mod sessions;
pub mod store;
pub mod time;
pub mod units;

pub use store::{Store, Writer};
pub use time::{parse_time, TimeSpec};
pub use units::{BlockNo, Geometry, Hash32, Seq, TimeNs};
