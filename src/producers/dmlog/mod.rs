//! Linux dm-log-writes logs: the format the kernel's `log-writes` device
//! mapper target (drivers/md/dm-log-writes.c) and QEMU's `blklogwrites`
//! block driver (block/blklogwrites.c) write, read into store records.
//!
//! - `reader`: the log's format (its byte map, the units of its fields,
//!   entries past the super block's count) and [`DmlogReader`], which
//!   decodes it one entry at a time and can wait for a log still being
//!   written ([`DmlogReader::poll`]).
//! - `ingest`: [`ingest()`] and [`ingest_file`] record every entry as one
//!   record, with the time it is read or the time a `t=<ns>` mark gives,
//!   and with `follow` keep reading a growing log (re-reading the holes
//!   out-of-order writers leave, where the log is a file).
//! - `resume`: [`already_recorded`] tells how many of a log's first entries
//!   the store already ends with, so that running again on the same log
//!   neither loses nor repeats entries.
//! - `error`: [`DmlogError`], naming the entry and the byte of the log.

mod error;
mod ingest;
mod reader;
mod resume;

pub use error::DmlogError;
pub use ingest::{ingest, ingest_file, time_mark, DmlogOptions, DmlogSummary, TIME_MARK_PREFIX};
pub use reader::{
    DmlogEntry, DmlogReader, Polled, LOG_DISCARD_FLAG, LOG_FLUSH_FLAG, LOG_FUA_FLAG, LOG_MAGIC,
    LOG_MARK_FLAG, LOG_METADATA_FLAG, LOG_VERSION, MAX_SECTOR_SIZE, MIN_SECTOR_SIZE,
};
pub use resume::{already_recorded, note_ingest_start, Resume, INGEST_NOTE_FILE};

#[cfg(test)]
mod tests;
