//! Undoing an unfinished batch (see [`crate::store::batch`]).

use super::CutBatch;
use crate::store::batch::{self, BatchState, OpenBatch};
use crate::store::error::{IoContext, Result, StoreError};
use crate::store::files;
use crate::store::format;
use crate::store::index;
use crate::store::index::remove_orphan_runs;
use crate::store::layout;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Undo an unfinished batch (the caller holds the writer lock): put back
/// the index manifest from when it began, cut the log where it began, and
/// mark the batch ended. Each step can be repeated, so a crash part-way
/// leaves the batch open for the next writer to finish the job.
pub(super) fn rollback_batch(dir: &Path, open: &OpenBatch, counter: u64) -> Result<CutBatch> {
    let log_path = dir.join(layout::LOG_FILE);
    let log = files::open_rw_private(&log_path)?;
    let log_len = log.metadata().at(&log_path)?.len();
    if log_len < open.log_offset {
        return Err(StoreError::corrupted(
            &log_path,
            format!(
                "the log is {log_len} bytes, but an unfinished batch began at byte {} \
                 (record {}): records before the batch are missing",
                open.log_offset, open.first_seq
            ),
        ));
    }
    if log_len > open.log_offset {
        // Only ever cut at the batch's own first record.
        let mut head = [0u8; format::RECORD_IDENTITY_LEN];
        let at_first = log.read_exact_at(&mut head, open.log_offset).is_ok()
            && format::record_identity(&head).map(|(seq, _, _)| seq) == Some(open.first_seq);
        if !at_first {
            return Err(StoreError::corrupted(
                &log_path,
                format!(
                    "an unfinished batch began at byte {} with record {}, but no such record \
                     is there; refusing to cut the log",
                    open.log_offset, open.first_seq
                ),
            ));
        }
    }
    let idir = dir.join(layout::INDEX_DIR);
    if idir.is_dir() {
        let current = index::read_manifest(dir).map(|m| m.generation).unwrap_or(0);
        let mut m = open.manifest.clone();
        m.generation = current.max(m.generation) + 1;
        if let files::Replaced::NotDurable(e) =
            files::replace_atomically(&idir.join(layout::MANIFEST_FILE), &m.encode())?
        {
            return Err(e);
        }
        remove_orphan_runs(&idir, &m.runs)?;
    }
    if log_len > open.log_offset {
        log.set_len(open.log_offset).at(&log_path)?;
        log.sync_all().at(&log_path)?;
    }
    batch::write(
        dir,
        &BatchState {
            counter,
            open: None,
        },
    )?;
    let cut = CutBatch {
        first_seq: open.first_seq,
        bytes: log_len - open.log_offset,
    };
    log::warn!(
        "{}: cut an unfinished batch (an interrupted import): records from {} on, {} bytes \
         from byte {}; the store is as it was before the batch began",
        log_path.display(),
        cut.first_seq,
        cut.bytes,
        open.log_offset
    );
    Ok(cut)
}
