//! Where everything is in a store directory (files 0600, directories 0700):
//!
//! ```text
//! STORE/
//!   diskhist.store   header: magic, format version, geometry (format/)
//!   lock             flock(2)ed by the one writer (writer/lock.rs)
//!   log              append-only records, checksummed and hash-chained
//!   batch            the import under way, if any (batch.rs)
//!   index/seqs       the log offset of every 16th record (8 bytes each)
//!   index/MANIFEST   which sorted runs cover which records
//!   index/*.run      sorted (block, seq) -> content location runs
//!   index/*.dedup    sorted dedup key -> content location runs
//!   index/tree/L<k>  the Merkle tree's stored subtree hashes (index/tree.rs)
//!   seals            checkpoints sealed while recording (crate::seal)
//! ```
//!
//! Everything under `index/` is derived from `log` and can be rebuilt from
//! it: delete `index/` and the next writer (any `ingest`, `import` or
//! `serve`) rebuilds it from the log; readers meanwhile scan the log.
//! Producers may keep files of their own beside these: `serve`'s
//! `sessions` (evidence), and `dmlog-ingest`, where `ingest` notes which
//! log file it reads so that a rerun resumes (crate::producers::dmlog).

/// The header, written once by `init`.
pub const HEADER_FILE: &str = "diskhist.store";
/// The records: the evidence.
pub const LOG_FILE: &str = "log";
/// Held (flock) by the one writer; notes who holds it.
pub const LOCK_FILE: &str = "lock";
/// The batch begun and not yet ended, if any.
pub const BATCH_FILE: &str = "batch";
/// The derived index.
pub const INDEX_DIR: &str = "index";
/// One entry per record: time, log offset.
pub const SEQS_FILE: &str = "seqs";
/// Which runs make up the index, and how far it reaches.
pub const MANIFEST_FILE: &str = "MANIFEST";
/// The Merkle tree's stored hashes, under the index.
pub const TREE_DIR: &str = "tree";
/// Checkpoints sealed while recording.
pub const SEALS_FILE: &str = "seals";
