//! Writing the index out: the in-memory block versions and dedup keys as a
//! pair of runs, `index/seqs` entries, the manifest that makes them part
//! of the index (all or nothing), and merges of runs that keep their
//! number logarithmic.

use super::Writer;
use crate::store::error::{IoContext, Result, StoreError};
use crate::store::files;
use crate::store::index::run::{self, BlockVersion, Run, StoredContent};
use crate::store::index::{self, Index, SEQ_ENTRY_LEN};
use crate::store::layout;
use crate::units::Seq;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

impl Writer {
    /// Write the in-memory index out as a run and advance the manifest.
    ///
    /// All or nothing: on an error the manifest, the runs in use and the
    /// in-memory index are as they were, and the files this attempt created
    /// are removed again. Only a failed fsync of the log poisons the writer.
    pub fn flush_index(&mut self) -> Result<()> {
        self.check_usable()?;
        let head = self.idx.head;
        if head.seq == self.idx.manifest.indexed_through && self.recovered.is_none() {
            return Ok(());
        }
        self.sync()?;
        self.write_seqs()?;
        let mut m = self.idx.manifest.clone();
        let idir = self.idx.dir.join(layout::INDEX_DIR);
        let mut runs = None;
        if !self.idx.mem.is_empty() || !self.dedup_mem.is_empty() {
            let (first, last) = (Seq(m.indexed_through.0 + 1), head.seq);
            runs = Some(self.write_new_runs(&idir, first, last)?);
            m.runs.push((first, last));
        }
        m.generation += 1;
        m.indexed_through = head.seq;
        m.log_end = self.idx.log_end;
        m.head_time = head.time_ns.unwrap_or_default();
        m.head_chain = head.chain;
        m.bytes_written = self.idx.bytes_written;
        let manifest_path = idir.join(layout::MANIFEST_FILE);
        match files::replace_atomically(&manifest_path, &m.encode()) {
            Ok(files::Replaced::Durable) => {}
            Ok(files::Replaced::NotDurable(e)) => log::warn!(
                "{e}: the new index manifest is in place but not yet durable; \
                 after a crash the next writer catches the index up from the log"
            ),
            Err(e) => {
                if let Some((r, d)) = runs {
                    files::remove_if_present(r.path());
                    files::remove_if_present(d.path());
                }
                return Err(e);
            }
        }
        if let Some((r, d)) = runs {
            self.idx.runs.push(r);
            self.dedup_runs.push(d);
        }
        self.idx.manifest = m;
        self.idx.mem.clear();
        self.idx.tail.clear();
        self.dedup_mem.clear();
        self.recovered = None;
        self.next_flush_at = self.opts.flush_threshold;
        // The flush stands; a merge that cannot be written now (no space)
        // is tried again at the next flush.
        if let Err(e) = self.compact() {
            log::warn!("{e}: could not merge index runs; will try again at the next index flush");
        }
        Ok(())
    }

    /// Flush the index if it can be done; a failure that does not poison the
    /// writer (a full disk) only postpones the flush. The records are in the
    /// log whatever happens here.
    pub(super) fn try_flush_index(&mut self) -> Result<()> {
        match self.flush_index() {
            Ok(()) => Ok(()),
            Err(e) if self.poisoned => Err(e),
            Err(e) => {
                let held = self.idx.mem.len();
                self.next_flush_at = held + (self.opts.flush_threshold / 4).max(1);
                log::warn!(
                    "{e}: could not write the index ({held} block versions held in memory); \
                     every record is in the log, the index is brought up to date at a later \
                     flush or by the next writer"
                );
                Ok(())
            }
        }
    }

    /// Write the in-memory index as a `.run` and a `.dedup` covering records
    /// `first..=last`, and open them. On an error neither file is left.
    pub(super) fn write_new_runs(
        &self,
        idir: &Path,
        first: Seq,
        last: Seq,
    ) -> Result<(Run<BlockVersion>, Run<StoredContent>)> {
        let (rn, dn) = index::run_file_names(first, last);
        let (rp, dp) = (idir.join(&rn), idir.join(&dn));
        let result = (|| {
            let mem = &self.idx.mem;
            run::write_run(
                &rp,
                mem.len() as u64,
                first,
                last,
                mem.iter()
                    .map(|(&(block, seq), &loc)| Ok(BlockVersion { block, seq, loc })),
            )?;
            let mut dedup: Vec<StoredContent> = self
                .dedup_mem
                .iter()
                .map(|(h, l)| StoredContent { hash: *h, loc: *l })
                .collect();
            dedup.sort_unstable_by_key(|e| e.hash);
            run::write_run(
                &dp,
                dedup.len() as u64,
                first,
                last,
                dedup.into_iter().map(Ok),
            )?;
            Ok((Run::open(&rp)?, Run::open(&dp)?))
        })();
        if result.is_err() {
            remove_run_files(&rp, &dp);
        }
        result
    }

    pub(super) fn write_seqs(&mut self) -> Result<()> {
        let it = self.idx.manifest.indexed_through.0;
        let mut bytes = Vec::with_capacity(self.idx.tail.len() * SEQ_ENTRY_LEN as usize);
        for (i, t) in self.idx.tail.iter().enumerate() {
            if it + i as u64 + 1 > self.seqs_written {
                bytes.extend_from_slice(&t.time_ns.0.to_le_bytes());
                bytes.extend_from_slice(&t.offset_bytes.to_le_bytes());
            }
        }
        // On an error `seqs_written` stays, so the next flush writes (and
        // syncs) these entries again: a failed fsync here costs nothing,
        // since no manifest promises them until one succeeds.
        seqs_file(&self.idx)?
            .write_all_at(&bytes, self.seqs_written * SEQ_ENTRY_LEN)
            .at(&self.idx.seqs_path)?;
        seqs_file(&self.idx)?.sync_data().at(&self.idx.seqs_path)?;
        self.seqs_written = self.idx.head.seq.0;
        Ok(())
    }

    /// Merge the two newest runs while the newer is at least half the size
    /// of the older: run sizes stay geometric, so there are O(log n) runs.
    /// Each merge is all or nothing, like a flush.
    pub(super) fn compact(&mut self) -> Result<()> {
        let idir = self.idx.dir.join(layout::INDEX_DIR);
        while self.idx.runs.len() >= 2 {
            let k = self.idx.runs.len();
            let (older, newer) = (&self.idx.runs[k - 2], &self.idx.runs[k - 1]);
            if newer.n * 2 < older.n {
                break;
            }
            // A run of the open batch never merges with one from before
            // it: undoing the batch drops its runs whole.
            if let Some(b) = &self.batch {
                if older.first_seq < b.first_seq && newer.first_seq >= b.first_seq {
                    break;
                }
            }
            let (first, last) = (older.first_seq, newer.last_seq);
            let (rn, dn) = index::run_file_names(first, last);
            let (rp, dp) = (idir.join(&rn), idir.join(&dn));
            let (dold, dnew) = (&self.dedup_runs[k - 2], &self.dedup_runs[k - 1]);
            let merged = (|| {
                run::write_run(
                    &rp,
                    older.n + newer.n,
                    first,
                    last,
                    run::merge(older.iter()?, newer.iter()?),
                )?;
                run::write_run(
                    &dp,
                    dold.n + dnew.n,
                    first,
                    last,
                    run::merge(dold.iter()?, dnew.iter()?),
                )?;
                Ok((Run::open(&rp)?, Run::open(&dp)?))
            })();
            let (r, d) = match merged {
                Ok(rd) => rd,
                Err(e) => {
                    remove_run_files(&rp, &dp);
                    return Err(e);
                }
            };
            let mut m = self.idx.manifest.clone();
            m.runs.truncate(k - 2);
            m.runs.push((first, last));
            m.generation += 1;
            let durable =
                match files::replace_atomically(&idir.join(layout::MANIFEST_FILE), &m.encode()) {
                    Ok(files::Replaced::Durable) => true,
                    Ok(files::Replaced::NotDurable(e)) => {
                        log::warn!(
                            "{e}: the merged index manifest is in place but not yet durable; \
                         keeping the runs it replaces until the next writer opens the store"
                        );
                        false
                    }
                    Err(e) => {
                        drop((r, d));
                        remove_run_files(&rp, &dp);
                        return Err(e);
                    }
                };
            self.idx.manifest = m;
            let old: Vec<_> = self
                .idx
                .runs
                .drain(k - 2..)
                .map(|r| r.path().to_path_buf())
                .chain(
                    self.dedup_runs
                        .drain(k - 2..)
                        .map(|r| r.path().to_path_buf()),
                )
                .collect();
            self.idx.runs.push(r);
            self.dedup_runs.push(d);
            if durable {
                for p in old {
                    files::remove_if_present(&p);
                }
            }
        }
        Ok(())
    }
}

/// Remove the files of a run that no manifest names (a failed flush or
/// merge), and the temporary file `write_run` may have left.
pub(super) fn remove_run_files(run: &Path, dedup: &Path) {
    files::remove_if_present(&run.with_extension("tmp"));
    files::remove_if_present(run);
    files::remove_if_present(dedup);
}

/// The writer always has `index/seqs` (it creates it when missing).
pub(super) fn seqs_file(idx: &Index) -> Result<&File> {
    idx.seqs
        .as_ref()
        .ok_or_else(|| StoreError::corrupted(&idx.seqs_path, "missing"))
}

pub(super) fn remove_orphan_runs(idir: &Path, runs: &[(Seq, Seq)]) -> Result<()> {
    let keep: std::collections::HashSet<String> = runs
        .iter()
        .flat_map(|(a, z)| {
            let (r, d) = index::run_file_names(*a, *z);
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
