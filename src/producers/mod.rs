//! Producers: the sources of the mirrored write stream, each turning its
//! input into [`Op`](crate::store::Op)s for the store, one record each.
//!
//! - [`dmlog`]: Linux dm-log-writes logs (the kernel target, QEMU's
//!   `blklogwrites`): read, ingest (and follow), resume after a restart.
//! - [`stream`]: diskhist's own stream format: `dump` writes it, `ingest`
//!   reads it, checked record by record.
//! - [`image`]: whole images, recorded as the extents that differ from the
//!   store's latest state.
//!
//! The NBD server ([`crate::nbd`]) is a producer too, but a server with its
//! own protocol layers, so it has a top-level module of its own.

pub mod dmlog;
pub mod image;
pub mod stream;

/// A progress callback: called with the input bytes done so far.
#[derive(Clone)]
pub struct ProgressFn(pub std::sync::Arc<dyn Fn(u64) + Send + Sync>);

impl std::fmt::Debug for ProgressFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressFn")
    }
}
