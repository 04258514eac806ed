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
use super::{run_file_names, seq_entries, Index, Manifest, SEQ_ENTRY_LEN, SEQ_STRIDE};
use crate::store::error::{IoContext, Result, StoreError};
use crate::store::files;
use crate::store::layout;
use crate::units::Seq;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::Ordering;

/// Runs of one size class merged at a time. Each block version is
/// rewritten about log_T(n / flush size) times (the binary merge this
/// replaced: log_2), and a lookup probes at most (T − 1) runs per class.
/// 8: a 10M-record history is rewritten 2.8 times where 4 rewrote it 3.8
/// times (flushes of 65,536 versions).
pub const TIER_RATIO: u64 = 8;

/// Which runs to merge next: `Some(i)` merges runs `i..` (the newest) into
/// one, `None` merges nothing. `runs` holds (entries, first record) oldest
/// first; `base` is the size of a freshly written run.
///
/// A run's class is ⌊log_T(n / base)⌋ (0 below T·base). The newest
/// [`TIER_RATIO`] runs merge when they share a class, which yields a run
/// of the next class or the same one: classes never increase from older to
/// newer, as in a base-T counter, so each entry moves up a class at each
/// rewrite. A newest run of a higher class than the one before it (left so
/// by `keep_apart`, or by a write-out far larger than `base`) absorbs that
/// one, so small runs are not stranded between large ones. Runs on both
/// sides of `keep_apart` never merge.
pub fn merge_plan(runs: &[(u64, Seq)], keep_apart: Option<Seq>, base: u64) -> Option<usize> {
    let t = TIER_RATIO as usize;
    let class = |n: u64| {
        let (mut c, mut size) = (0u32, base.max(1).saturating_mul(TIER_RATIO));
        while n >= size {
            c += 1;
            size = size.saturating_mul(TIER_RATIO);
        }
        c
    };
    let k = runs.len();
    let allowed =
        |from: usize| keep_apart.is_none_or(|b| !(runs[from].1 < b && runs[k - 1].1 >= b));
    if k >= t {
        let c = class(runs[k - 1].0);
        if runs[k - t..].iter().all(|r| class(r.0) == c) && allowed(k - t) {
            return Some(k - t);
        }
    }
    if k >= 2 && class(runs[k - 2].0) < class(runs[k - 1].0) && allowed(k - 2) {
        return Some(k - 2);
    }
    None
}

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
                .filter(|(h, _)| !self.unkept_dedup.contains(*h))
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
        self.unkept_dedup.clear();
        Ok(())
    }

    /// Merge runs so that each block version is rewritten a bounded
    /// number of times and there are O(log n) runs (see [`merge_plan`]:
    /// size-tiered, [`TIER_RATIO`] runs of one size class at a time).
    /// `base` is the size of a run written out from memory (the writer's
    /// flush threshold). A run starting at or after `keep_apart` (an open
    /// batch's first record) never merges with an older one, so that
    /// undoing the batch drops its runs whole. Each merge is all or
    /// nothing, like a write-out.
    pub fn compact(&mut self, keep_apart: Option<Seq>, base: u64) -> Result<()> {
        loop {
            let sizes: Vec<(u64, Seq)> = self.runs.iter().map(|r| (r.n, r.first_seq)).collect();
            let Some(from) = merge_plan(&sizes, keep_apart, base) else {
                break;
            };
            let k = self.runs.len();
            let (first, last) = (self.runs[from].first_seq, self.runs[k - 1].last_seq);
            let (rs, ds) = (&self.runs[from..], &self.dedup_runs[from..]);
            let n = rs.iter().map(|r| r.n).sum();
            let dn = ds.iter().map(|r| r.n).sum();
            let rits = rs.iter().map(|r| r.iter()).collect::<Result<Vec<_>>>()?;
            let dits = ds.iter().map(|r| r.iter()).collect::<Result<Vec<_>>>()?;
            let merged = self.write_pair(
                first,
                last,
                (n, run::merge_all(rits)),
                (dn, run::merge_all(dits)),
            )?;
            let mut m = self.manifest.clone();
            m.runs.truncate(from);
            m.runs.push((first, last));
            self.install(m, from, Some(merged))?;
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
        match &result {
            Ok((r, d)) => self.count_written(r.file_len() + d.file_len()),
            Err(_) => remove_run_files(&rp, &dp),
        }
        result
    }

    /// Bytes this index has written to its files since it was opened: runs
    /// written out and merged, `seqs` entries, the tree's hashes and
    /// manifests (what a benchmark of write amplification counts).
    pub fn bytes_written_to_index(&self) -> u64 {
        self.index_written.load(Ordering::Relaxed)
    }

    pub(super) fn count_written(&self, n: u64) {
        self.index_written.fetch_add(n, Ordering::Relaxed);
    }

    /// Make `m` the manifest: the runs in use become the first `keep` of
    /// today's, then `new`. The replaced runs' files are removed once the
    /// new manifest is durable (kept, for the next writer to remove, if the
    /// directory could not be synced). On an error nothing changed and
    /// `new`'s files are removed.
    fn install(&mut self, mut m: Manifest, keep: usize, new: Option<RunPair>) -> Result<()> {
        m.generation = self.manifest.generation + 1;
        let path = self.dir.join(layout::INDEX_DIR).join(layout::MANIFEST_FILE);
        let bytes = m.encode();
        self.count_written(bytes.len() as u64);
        let durable = match files::replace_atomically(&path, &bytes) {
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
        let mut bytes = Vec::new();
        for (i, t) in self.tail.iter().enumerate() {
            let seq = it + i as u64 + 1;
            if seq > self.seqs_written && (seq - 1) % SEQ_STRIDE == 0 {
                bytes.extend_from_slice(&t.offset_bytes.to_le_bytes());
            }
        }
        let seqs = self
            .seqs
            .as_ref()
            .ok_or_else(|| StoreError::corrupted(&self.seqs_path, "missing"))?;
        seqs.write_all_at(&bytes, seq_entries(self.seqs_written) * SEQ_ENTRY_LEN)
            .at(&self.seqs_path)?;
        seqs.sync_data().at(&self.seqs_path)?;
        self.count_written(bytes.len() as u64);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Write out `flushes` runs of `base` entries, merging as `compact`
    /// does; returns (entries rewritten by merges, the runs left).
    fn simulate(flushes: u64, base: u64, keep_apart: Option<Seq>) -> (u64, Vec<(u64, Seq)>) {
        let mut runs: Vec<(u64, Seq)> = Vec::new();
        let mut rewritten = 0;
        for i in 0..flushes {
            runs.push((base, Seq(i * base + 1)));
            while let Some(from) = merge_plan(&runs, keep_apart, base) {
                assert!(runs.len() - from >= 2, "a merge takes two runs or more");
                let n: u64 = runs[from..].iter().map(|r| r.0).sum();
                let first = runs[from].1;
                if let Some(b) = keep_apart {
                    assert!(
                        first >= b || runs.last().unwrap().1 < b,
                        "merged across {b:?}"
                    );
                }
                rewritten += n;
                runs.truncate(from);
                runs.push((n, first));
            }
        }
        (rewritten, runs)
    }

    #[test]
    fn each_entry_is_rewritten_about_log_t_times() {
        // 10M block versions in flushes of 65,536: 152 runs written out.
        let (rewritten, runs) = simulate(153, 65_536, None);
        let total = 153 * 65_536;
        let per_entry = rewritten as f64 / total as f64;
        // log_8(153) = 2.4 (log_4: 3.6; the binary merge rewrote each
        // entry ~7 times).
        assert!(per_entry <= 2.0, "{per_entry} rewrites per entry");
        assert!(runs.len() <= 3 * 7, "{} runs", runs.len());
        // Classes never grow from older to newer runs.
        assert!(runs.windows(2).all(|w| w[0].0 >= w[1].0), "{runs:?}");
        assert_eq!(runs.iter().map(|r| r.0).sum::<u64>(), total);
    }

    #[test]
    fn run_count_stays_logarithmic() {
        for flushes in [1, 3, 4, 5, 15, 16, 17, 63, 64, 65, 255, 256, 1000] {
            let (_, runs) = simulate(flushes, 100, None);
            let classes = (flushes as f64).log(TIER_RATIO as f64).floor() as usize + 1;
            assert!(
                runs.len() <= (TIER_RATIO as usize - 1) * classes,
                "{flushes} flushes: {} runs",
                runs.len()
            );
        }
    }

    #[test]
    fn never_merges_across_an_open_batch() {
        let (_, runs) = simulate(40, 100, Some(Seq(1_001)));
        assert!(runs.iter().any(|r| r.1 == Seq(1_001)), "{runs:?}");
    }

    #[test]
    fn a_large_newest_run_absorbs_a_smaller_older_one() {
        // A batch's runs merged into one larger than the run before it.
        let runs = [(400, Seq(1)), (100, Seq(401)), (1_600, Seq(501))];
        assert_eq!(merge_plan(&runs, None, 100), Some(1));
        assert_eq!(merge_plan(&runs, Some(Seq(501)), 100), None);
        let small = [(100, Seq(1)), (100, Seq(101))];
        assert_eq!(merge_plan(&small, None, 100), None);
    }
}
