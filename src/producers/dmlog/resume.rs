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
//!
//! That rule alone cannot resume a run killed after recording only flushes
//! and trims. So before it records anything, `ingest` notes in
//! `STORE/dmlog-ingest` which log file it reads (device, inode and birth
//! time) and the store's head before the log's first entry
//! ([`note_ingest_start`]). A run on the same file whose records since that
//! head are the log's first entries resumes after all of them, whatever
//! their kind. The note is evidence of nothing: a missing, damaged or
//! stale one only falls back to matching by content.

use super::error::DmlogError;
use super::reader::{DmlogEntry, DmlogReader, Polled};
use crate::store::{OpFlags, OwnedOp};
use crate::store::{RecordInfo, RecordKind, Store, StoreError};
use crate::units::{Hash32, Seq};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Which log file the last `ingest` of a file read, in the store directory.
pub const INGEST_NOTE_FILE: &str = "dmlog-ingest";
const NOTE_MAGIC: &str = "diskhist-dmlog-ingest v1";

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
///
/// When the store's note ([`note_ingest_start`]) names this very file, the
/// records after the head it noted must be the log's first entries, all of
/// them, and then any kind counts.
pub fn already_recorded(path: &Path, store: &Store) -> Result<Option<Resume>, DmlogError> {
    let head = store.head().seq.0;
    if head == 0 {
        return Ok(None);
    }
    let file = std::fs::File::open(path).map_err(|error| DmlogError::Io {
        offset_bytes: 0,
        error,
    })?;
    let noted = file
        .metadata()
        .ok()
        .and_then(|m| read_note(&store.dir(), &LogIdentity::of(&m)))
        .filter(|&before| before < head);
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
    // The noted run: records before+1..=head are entries 1..head-before.
    if let Some(before) = noted {
        let m = (head - before) as usize;
        if m <= sigs.len() && records[records.len() - m..] == sigs[..m] {
            return Ok(Some(Resume {
                entries: m as u64,
                first_seq: Seq(before + 1),
            }));
        }
    }
    let m = suffix_prefix_overlap(&records, &sigs);
    if m == 0 || !entries[..m].iter().any(|e| e.1) {
        return Ok(None);
    }
    Ok(Some(Resume {
        entries: m as u64,
        first_seq: Seq(head - m as u64 + 1),
    }))
}

/// What tells one log file from another on this machine: device, inode
/// and, where the file system keeps it, birth time (an inode number can be
/// reused by a new file; its birth time then differs).
#[derive(Debug, Clone, PartialEq, Eq)]
struct LogIdentity {
    dev: u64,
    ino: u64,
    born_ns: Option<i128>,
}

impl LogIdentity {
    fn of(m: &std::fs::Metadata) -> LogIdentity {
        let born_ns = m
            .created()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos() as i128);
        LogIdentity {
            dev: m.dev(),
            ino: m.ino(),
            born_ns,
        }
    }

    fn line(&self, before: u64) -> String {
        let born = self.born_ns.map_or("-".to_string(), |b| b.to_string());
        let body = format!(
            "{NOTE_MAGIC} dev={} ino={} born_ns={born} before={before}",
            self.dev, self.ino
        );
        let crc = crc32c::crc32c(body.as_bytes());
        format!("{body} crc32c={crc:08x}\n")
    }
}

/// Note, before recording the log at `log`'s first new entry, that its
/// entry 1 is (or would be) record `before + 1` of the store in `store_dir`,
/// so that a run killed after any entries at all resumes after them.
/// Written atomically and made durable (temporary file, rename, directory
/// sync).
pub fn note_ingest_start(store_dir: &Path, log: &Path, before: Seq) -> Result<(), DmlogError> {
    let io_err = |error| DmlogError::Io {
        offset_bytes: 0,
        error,
    };
    let id = LogIdentity::of(&std::fs::metadata(log).map_err(io_err)?);
    let note = store_dir.join(INGEST_NOTE_FILE);
    match crate::store::replace_atomically(&note, id.line(before.0).as_bytes()) {
        Ok(_) => Ok(()),
        Err(error) => Err(DmlogError::Store {
            entry: 0,
            offset_bytes: 0,
            error,
        }),
    }
}

/// The head noted before entry 1 of the log `id` names, if the note is
/// whole and names that log.
fn read_note(store_dir: &Path, id: &LogIdentity) -> Option<u64> {
    let text = std::fs::read_to_string(store_dir.join(INGEST_NOTE_FILE)).ok()?;
    let line = text.strip_suffix('\n')?;
    let (body, crc) = line.rsplit_once(" crc32c=")?;
    if u32::from_str_radix(crc, 16).ok()? != crc32c::crc32c(body.as_bytes()) {
        log::warn!("{INGEST_NOTE_FILE}: damaged (checksum); resuming by content alone");
        return None;
    }
    let before: u64 = body.rsplit_once(" before=")?.1.parse().ok()?;
    (id.line(before) == text).then_some(before)
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
