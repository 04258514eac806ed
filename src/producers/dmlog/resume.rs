//! Running again on the same log: which of its entries the store already
//! holds.
//!
//! An ingest that was killed (or stopped and started again with `--follow`)
//! must neither lose nor repeat entries. Before reading, the command asks
//! [`already_recorded`] how many of the log's first entries the store's last
//! records already are (same kind, flags, range and content hash), and skips
//! those: entry i stays record i of a store that began with this log. The
//! skipped entries are still read, so their `t=` marks set the clock as
//! before. A store may begin with other history (a baseline); only the
//! records at its end are compared. A log that merely starts with the bare
//! flushes or trims the store's history ends with is not taken for a resumed
//! one: at least one write or mark must match.

use super::error::DmlogError;
use super::reader::{DmlogEntry, DmlogReader, Polled};
use crate::store::{OpFlags, OwnedOp};
use crate::store::{RecordInfo, RecordKind, Store, StoreError};
use crate::units::{Hash32, Seq};
use std::io;

/// What [`already_recorded`] found: the store's last `entries` records
/// are this log's first `entries` entries, from record `first_seq` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    pub entries: u64,
    pub first_seq: Seq,
}

/// What identifies an operation, whichever producer delivered it: kind,
/// the producer's flags, range and content hash, as a record stores them.
type OpSignature = [u8; 32];

const SIGNATURE_FLAGS: u8 = OpFlags::FUA.0 | OpFlags::PREFLUSH.0 | OpFlags::META.0;

fn signature(
    kind: RecordKind,
    flags: OpFlags,
    offset_bytes: u64,
    length_bytes: u64,
    content_hash: &Hash32,
) -> OpSignature {
    let mut h = blake3::Hasher::new();
    h.update(&[kind as u8, flags.0 & SIGNATURE_FLAGS]);
    h.update(&offset_bytes.to_le_bytes());
    h.update(&length_bytes.to_le_bytes());
    h.update(&content_hash.0);
    *h.finalize().as_bytes()
}

fn entry_signature(e: &DmlogEntry) -> OpSignature {
    let op = e.op.as_op();
    let (offset_bytes, length_bytes) = op.range();
    signature(
        op.kind(),
        e.op_flags,
        offset_bytes,
        length_bytes,
        &op.content_hash(),
    )
}

fn record_signature(r: &RecordInfo) -> OpSignature {
    signature(
        r.kind,
        r.flags,
        r.offset_bytes,
        r.length_bytes,
        &r.content_hash,
    )
}

/// How many of the first entries of the log at `path` the store already
/// ends with: a restarted `--follow`, or an ingest run again after a crash,
/// resumes after them instead of recording them twice.
///
/// The store's history may begin with other records (a baseline import,
/// an earlier log): what counts is the longest run of entries 1..m that
/// equals the store's last m records — kind, flags, range and content hash.
/// A run of bare flushes and trims alone is too weak to tell a resumed log
/// from a new one that happens to start the way the last one ended, so at
/// least one write or mark must match; otherwise nothing is skipped.
/// Entries are read up to the first one not wholly there yet.
pub fn already_recorded(
    path: &std::path::Path,
    store: &Store,
) -> Result<Option<Resume>, DmlogError> {
    let head = store.head().seq.0;
    if head == 0 {
        return Ok(None);
    }
    let file = std::fs::File::open(path).map_err(|error| DmlogError::Io {
        offset_bytes: 0,
        error,
    })?;
    let mut reader = DmlogReader::unstarted(io::BufReader::with_capacity(1 << 20, file));
    let mut entries: Vec<(OpSignature, bool)> = Vec::new();
    // A bad log is reported by the ingest itself, from the same entry.
    while entries.len() < head as usize {
        match reader.poll(true) {
            Ok(Polled::Entry(e)) => {
                let telling = matches!(e.op, OwnedOp::Write { .. } | OwnedOp::Mark { .. });
                entries.push((entry_signature(&e), telling));
            }
            Ok(Polled::Wait | Polled::End) | Err(_) => break,
        }
    }
    if entries.is_empty() {
        return Ok(None);
    }
    let first = head - entries.len() as u64 + 1;
    let records = (first..=head)
        .map(|s| store.record(Seq(s)).map(|r| record_signature(&r)))
        .collect::<Result<Vec<_>, StoreError>>()
        .map_err(|error| DmlogError::Store {
            entry: 0,
            offset_bytes: 0,
            error,
        })?;
    let sigs: Vec<OpSignature> = entries.iter().map(|e| e.0).collect();
    let m = suffix_prefix_overlap(&records, &sigs);
    if m == 0 || !entries[..m].iter().any(|e| e.1) {
        return Ok(None);
    }
    Ok(Some(Resume {
        entries: m as u64,
        first_seq: Seq(head - m as u64 + 1),
    }))
}

/// The largest m such that `text` ends with `pattern[..m]` (Knuth–Morris–
/// Pratt: linear in both lengths, whatever repeats they hold).
pub(super) fn suffix_prefix_overlap<T: PartialEq>(text: &[T], pattern: &[T]) -> usize {
    let n = pattern.len();
    if n == 0 {
        return 0;
    }
    let mut fail = vec![0usize; n];
    let mut k = 0;
    for i in 1..n {
        while k > 0 && pattern[i] != pattern[k] {
            k = fail[k - 1];
        }
        if pattern[i] == pattern[k] {
            k += 1;
        }
        fail[i] = k;
    }
    let mut q = 0;
    for t in text {
        if q == n {
            q = fail[n - 1];
        }
        while q > 0 && *t != pattern[q] {
            q = fail[q - 1];
        }
        if *t == pattern[q] {
            q += 1;
        }
    }
    q
}
