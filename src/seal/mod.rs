//! Sealing: signed checkpoints of the Merkle tree over the records
//! ([`crate::merkle`], stored under `index/tree/`), proofs, audits.
//!
//! - [`note`]: C2SP signed notes, Ed25519 keys (`diskhist keygen`).
//! - [`checkpoint`]: C2SP tlog-checkpoint texts, signed as notes.
//! - [`bundle`]: proof bundles (`prove`) and their audit without the store.
//! - [`seals`]: `STORE/seals`, the checkpoints sealed while recording.
//! - [`sealer`]: sealing every N records or every so long while recording,
//!   and publishing each checkpoint through a command.
//!
//! Built on the store alone; the command line calls it.

pub mod bundle;
pub mod checkpoint;
pub mod note;
pub mod sealer;
pub mod seals;

use crate::store::{Store, StoreError};
use checkpoint::{Checkpoint, SignedCheckpoint};
use note::{Note, NoteError, Signer};

/// What went wrong sealing, proving or auditing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(String),
    #[error("malformed proof bundle: {0}")]
    MalformedBundle(String),
    #[error(transparent)]
    Note(#[from] NoteError),
    #[error(
        "the checkpoint is of store {checkpoint}, not {store}: it seals another store's history"
    )]
    OtherStore { checkpoint: String, store: String },
    #[error("the store does not hold the history the checkpoint sealed: {0}")]
    NotThisHistory(String),
    #[error("audit failed: {0}")]
    AuditFailed(String),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The origin line of this store's checkpoints.
pub fn origin(store: &Store) -> String {
    checkpoint::origin_for(&store.header().store_id)
}

/// The checkpoint of the store's head as a reader sees it.
pub fn head_checkpoint(store: &Store) -> Result<Checkpoint, SealError> {
    let size = store.head().seq;
    Ok(Checkpoint {
        origin: origin(store),
        size: size.0,
        root: store.tree_root(size)?,
        extensions: Vec::new(),
    })
}

/// The signed checkpoint of the store's head.
pub fn seal(store: &Store, signer: &Signer) -> Result<String, SealError> {
    let c = head_checkpoint(store)?;
    Ok(Note::sign(&c.text(), signer)?)
}

/// Parse a signed checkpoint and check it was signed by every key in `keys`.
pub fn open_checkpoint(raw: &str, keys: &[note::Verifier]) -> Result<SignedCheckpoint, SealError> {
    let c = SignedCheckpoint::parse(raw)?;
    c.verify(keys)?;
    Ok(c)
}
