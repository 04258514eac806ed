//! The store's error type: every case says what went wrong and where.

use crate::units::Seq;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// (The I/O error is in the message, not a `source`, so that it is
    /// not printed twice by error chains.)
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "{0}: not a diskhist store (no diskhist.store header); create one with `diskhist init`"
    )]
    NotAStore(PathBuf),
    #[error(
        "{path}: store format version {found}, but this diskhist reads versions {oldest} to \
         {newest}; use the diskhist release that wrote it{}",
        if *checksum_ok { "" } else {
            " (or the header was damaged: its checksum does not match)"
        }
    )]
    Version {
        path: PathBuf,
        found: u32,
        oldest: u32,
        newest: u32,
        /// False when the header's checksum fails too: damage is as likely.
        checksum_ok: bool,
    },
    #[error("{path}: corrupted: {what}; run `diskhist verify` for the full picture")]
    Corrupted { path: PathBuf, what: String },
    #[error(
        "{path}: another writer is recording into this store ({holder}); \
         one writer at a time — stop it first, readers (mount, export, log) may run alongside"
    )]
    Locked { path: PathBuf, holder: String },
    #[error(
        "{what} of {length_bytes} bytes at offset {offset_bytes} ends past the end of the \
         disk ({size_bytes} bytes)"
    )]
    OutOfRange {
        what: &'static str,
        offset_bytes: u64,
        length_bytes: u64,
        size_bytes: u64,
    },
    #[error("operation of {length_bytes} bytes is larger than one record may hold ({max} bytes); split it")]
    TooLarge { length_bytes: u64, max: u64 },
    #[error("there is no state {seq}: the history ends at record {head}")]
    NoSuchState { seq: Seq, head: Seq },
    #[error(
        "the writer stopped after a failed fsync: nothing more is acknowledged; what was \
         synced before is safe, restart to resume recording"
    )]
    Poisoned,
    #[error(transparent)]
    Init(#[from] InitError),
}

/// Why `init` cannot create a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    #[error("block size {0} is not a power of two from {min} to {max}", min = crate::store::format::MIN_BLOCK_SIZE, max = crate::store::format::MAX_BLOCK_SIZE)]
    BlockSize(u32),
    #[error("disk size {size_bytes} is not a positive multiple of the block size {block_size}")]
    DiskSize { size_bytes: u64, block_size: u32 },
    #[error("{}: directory is not empty; a store needs a new or empty directory", .0.display())]
    NotEmpty(PathBuf),
    #[error("{}: the parent directory {} does not exist; create it first", .path.display(), .parent.display())]
    NoParent { path: PathBuf, parent: PathBuf },
}

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: path.into(),
            error: source,
        }
    }
    pub(crate) fn corrupted(path: impl Into<PathBuf>, what: impl Into<String>) -> StoreError {
        StoreError::Corrupted {
            path: path.into(),
            what: what.into(),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Attach a path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| StoreError::io(path, e))
    }
}
