//! What can go wrong reading a dm-log-writes log or recording its entries.
//! An error about an entry names it (counted from 1) and the byte of the
//! log where it starts.

use super::reader::{LOG_MAGIC, LOG_VERSION, MAX_SECTOR_SIZE, MIN_SECTOR_SIZE};
use crate::store::StoreError;
use std::io;

#[derive(thiserror::Error, Debug)]
#[non_exhaustive]
pub enum DmlogError {
    #[error("reading the log at byte {offset_bytes}: {error}")]
    Io { offset_bytes: u64, error: io::Error },
    #[error(
        "not a dm-log-writes log: it is {have} bytes long, shorter than the \
         {need}-byte super block"
    )]
    ShortSuper { have: u64, need: u64 },
    #[error(
        "not a dm-log-writes log: magic 0x{found:x} at byte 0, expected \
         0x{LOG_MAGIC:x} (the log device of a dm log-writes target, or the \
         log file of a QEMU blklogwrites node)"
    )]
    BadMagic { found: u64 },
    #[error("dm-log-writes log version {found} at byte 8; diskhist reads version {LOG_VERSION}")]
    BadVersion { found: u64 },
    #[error(
        "dm-log-writes super block: sector size {found} at byte 24 is not a power of \
         two from {MIN_SECTOR_SIZE} to {MAX_SECTOR_SIZE}"
    )]
    BadSectorSize { found: u32 },
    #[error(
        "entry {entry} at byte {offset_bytes}: the log ends inside the entry's {part} \
         ({have} of {need} bytes present); the entries before it were recorded — if the \
         log is still being written, use --follow"
    )]
    Truncated {
        entry: u64,
        offset_bytes: u64,
        part: &'static str,
        have: u64,
        need: u64,
    },
    #[error(
        "entry {entry} at byte {offset_bytes}: the log ends here, but its super block \
         counts {expected} entries; the entries before it were recorded"
    )]
    MissingEntries {
        entry: u64,
        offset_bytes: u64,
        expected: u64,
    },
    #[error("entry {entry} at byte {offset_bytes}: malformed entry: {reason}")]
    Malformed {
        entry: u64,
        offset_bytes: u64,
        reason: String,
    },
    #[error("entry {entry} at byte {offset_bytes}: {error}")]
    Store {
        entry: u64,
        offset_bytes: u64,
        error: StoreError,
    },
    #[error("syncing the store after entry {entry}: {error}")]
    Sync { entry: u64, error: StoreError },
}
