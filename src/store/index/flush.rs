//! Writing the index out: the in-memory block versions and dedup keys as a
//! pair of runs (a `.run` and a `.dedup` covering the same records),
//! `index/seqs` entries, and the manifest that makes them part of the index,
//! all or nothing; and merges of runs that keep their number logarithmic.
//! The index owns both kinds of run: every run file is created, installed
//! and removed here.
//!
//! The caller (the writer) decides when, and makes the log durable first:
//! the index is derived data and never promises more than the log holds.

use super::run::{self, BlockVersion, Run, StoredContent};
use super::{run_file_names, Index, Manifest, SEQ_ENTRY_LEN};
use crate::store::error::{IoContext, Result, StoreError};
use crate::store::files;
use crate::store::layout;
use crate::units::Seq;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// A run of block versions and the dedup run of the same records.
type RunPair = (Run<BlockVersion>, Run<StoredContent>);

impl Index {
    /// Block versions held in memory, waiting for the next write-out.
    pub fn pending_versions(&self) -> usize {
        self.mem.len()
    }

    /// Write what is held in memory out as a pair of runs and the `seqs`
    /// entries, and install a manifest reaching the head (also when nothing
    /// is held, if `force`: after a torn tail was cut, say).
    ///
    /// All or nothing: on an error the manifest, the runs in use and the
    /// in-memory index are as they were, and the files this attempt created
    /// are removed again.
    pub fn write_out(&mut self, force: bool) -> Result<()> {
        let head = self.head;
        if head.seq == self.manifest.indexed_through && !force {
            return Ok(());
        }
        self.write_seqs()?;
        self.write_tree()?;
        let mut m = self.manifest.clone();
        let mut new = None;
        if !self.mem.is_empty() || !self.pending_dedup.is_empty() {
            let (first, last) = (Seq(m.indexed_through.0 + 1), head.seq);
            let mut dedup: Vec<StoredContent> = self
                .pending_dedup
                .iter()
                .map(|(h, l)| StoredContent { hash: *h, loc: *l })
                .collect();
            dedup.sort_unstable_by_key(|e| e.hash);
            let blocks = self
                .mem
                .iter()
                .map(|(&(block, seq), &loc)| Ok(BlockVersion { block, seq, loc }));
            new = Some(self.write_pair(
                first,
                last,
                (self.mem.len() as u64, blocks),
                (dedup.len() as u64, dedup.into_iter().map(Ok)),
            )?);
            m.runs.push((first, last));
        }
        m.indexed_through = head.seq;
        m.log_end = self.log_end;
        m.head_time = head.time_ns.unwrap_or_default();
        m.head_chain = head.chain;
        m.bytes_written = self.bytes_written;
        let keep = self.runs.len();
        self.install(m, keep, new)?;
        self.tree_written();
        self.mem.clear();
        self.tail.clear();
        self.tail_leaves.clear();
        self.pending_dedup.clear();
        Ok(())
    }

    /// Merge the two newest runs while the newer is at least half the size
    /// of the older: run sizes stay geometric, so there are O(log n) runs.
    /// A run starting at or after `keep_apart` (an open batch's first
    /// record) never merges with an older one, so that undoing the batch
    /// drops its runs whole. Each merge is all or nothing, like a write-out.
    pub fn compact(&mut self, keep_apart: Option<Seq>) -> Result<()> {
        while self.runs.len() >= 2 {
            let k = self.runs.len();
            let (older, newer) = (&self.runs[k - 2], &self.runs[k - 1]);
            if newer.n * 2 < older.n {
                break;
            }
            if keep_apart.is_some_and(|b| older.first_seq < b && newer.first_seq >= b) {
                break;
            }
            let (first, last) = (older.first_seq, newer.last_seq);
            let (dold, dnew) = (&self.dedup_runs[k - 2], &self.dedup_runs[k - 1]);
            let merged = self.write_pair(
                first,
                last,
                (older.n + newer.n, run::merge(older.iter()?, newer.iter()?)),
                (dold.n + dnew.n, run::merge(dold.iter()?, dnew.iter()?)),
            )?;
            let mut m = self.manifest.clone();
            m.runs.truncate(k - 2);
            m.runs.push((first, last));
            self.install(m, k - 2, Some(merged))?;
        }
        Ok(())
    }

    /// Write and open a pair of runs covering records `first..=last`; on an
    /// error neither file is left.
    fn write_pair(
        &self,
        first: Seq,
        last: Seq,
        blocks: (u64, impl Iterator<Item = Result<BlockVersion>>),
        dedup: (u64, impl Iterator<Item = Result<StoredContent>>),
    ) -> Result<RunPair> {
        let idir = self.dir.join(layout::INDEX_DIR);
        let (rn, dn) = run_file_names(first, last);
        let (rp, dp) = (idir.join(&rn), idir.join(&dn));
        let result = (|| {
            run::write_run(&rp, blocks.0, first, last, blocks.1)?;
            run::write_run(&dp, dedup.0, first, last, dedup.1)?;
            Ok((Run::open(&rp)?, Run::open(&dp)?))
        })();
        if result.is_err() {
            remove_run_files(&rp, &dp);
        }
        result
    }

    /// Make `m` the manifest: the runs in use become the first `keep` of
    /// today's, then `new`. The replaced runs' files are removed once the
    /// new manifest is durable (kept, for the next writer to remove, if the
    /// directory could not be synced). On an error nothing changed and
    /// `new`'s files are removed.
    fn install(&mut self, mut m: Manifest, keep: usize, new: Option<RunPair>) -> Result<()> {
        m.generation = self.manifest.generation + 1;
        let path = self.dir.join(layout::INDEX_DIR).join(layout::MANIFEST_FILE);
        let durable = match files::replace_atomically(&path, &m.encode()) {
            Ok(files::Replaced::Durable) => true,
            Ok(files::Replaced::NotDurable(e)) => {
                log::warn!(
                    "{e}: the new index manifest is in place but not yet durable; keeping \
                     the runs it replaces, and after a crash the next writer catches the \
                     index up from the log"
                );
                false
            }
            Err(e) => {
                if let Some((r, d)) = new {
                    remove_run_files(r.path(), d.path());
                }
                return Err(e);
            }
        };
        self.manifest = m;
        let replaced: Vec<_> = self
            .runs
            .drain(keep..)
            .map(|r| r.path().to_path_buf())
            .chain(
                self.dedup_runs
                    .drain(keep..)
                    .map(|r| r.path().to_path_buf()),
            )
            .collect();
        if let Some((r, d)) = new {
            self.runs.push(r);
            self.dedup_runs.push(d);
        }
        if durable {
            for p in replaced {
                files::remove_if_present(&p);
            }
        }
        Ok(())
    }

    /// Append the `seqs` entries of the records held in memory that are not
    /// in the file yet, and sync it. On an error the entries are written
    /// (and synced) again at the next write-out: no manifest promises them
    /// until one succeeds.
    fn write_seqs(&mut self) -> Result<()> {
        let it = self.manifest.indexed_through.0;
        let mut bytes = Vec::with_capacity(self.tail.len() * SEQ_ENTRY_LEN as usize);
        for (i, t) in self.tail.iter().enumerate() {
            if it + i as u64 + 1 > self.seqs_written {
                bytes.extend_from_slice(&t.time_ns.0.to_le_bytes());
                bytes.extend_from_slice(&t.offset_bytes.to_le_bytes());
            }
        }
        let seqs = self
            .seqs
            .as_ref()
            .ok_or_else(|| StoreError::corrupted(&self.seqs_path, "missing"))?;
        seqs.write_all_at(&bytes, self.seqs_written * SEQ_ENTRY_LEN)
            .at(&self.seqs_path)?;
        seqs.sync_data().at(&self.seqs_path)?;
        self.seqs_written = self.head.seq.0;
        Ok(())
    }
}

/// Remove the files of a run that no manifest names (a failed write-out or
/// merge), and the temporary file `write_run` may have left.
fn remove_run_files(run: &Path, dedup: &Path) {
    files::remove_if_present(&run.with_extension("tmp"));
    files::remove_if_present(run);
    files::remove_if_present(dedup);
}

/// Remove the run files under `idir` that `runs` (a manifest's) does not
/// name: left by a failed write-out or merge, or by an undone batch.
pub fn remove_orphan_runs(idir: &Path, runs: &[(Seq, Seq)]) -> Result<()> {
    let keep: std::collections::HashSet<String> = runs
        .iter()
        .flat_map(|(a, z)| {
            let (r, d) = run_file_names(*a, *z);
            [r, d]
        })
        .collect();
    for e in std::fs::read_dir(idir).at(idir)? {
        let e = e.at(idir)?;
        let name = e.file_name().to_string_lossy().into_owned();
        let is_run = name.ends_with(".run") || name.ends_with(".dedup") || name.ends_with(".tmp");
        if is_run && !keep.contains(&name) {
            std::fs::remove_file(e.path()).at(&e.path())?;
        }
    }
    Ok(())
}
