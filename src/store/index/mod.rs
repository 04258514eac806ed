//! The index: everything needed to answer "block B as of state S" and
//! "which record was current at time T" without replaying the log.
//!
//! - `index/seqs`: the log offset of every 16th record (8 bytes each); the
//!   records between are reached by walking their heads from there.
//!   Binary search over the times in the records' heads maps a time to a
//!   seq.
//! - `index/*.run`: sorted `(block, seq) -> location` runs covering disjoint
//!   ranges of records (see [`run`]). Lookup: newest run first, the greatest
//!   key <= `(B, S)`; runs are merged so there are O(log n) of them.
//! - `index/MANIFEST`: which runs exist, and up to which record (and log
//!   offset) they, `seqs` and the tree's hashes are complete. Replaced
//!   atomically.
//! - `index/tree/L<k>`: the stored hashes of the Merkle tree over the
//!   records (see [`tree`]), kept by the writer as it appends.
//! - Records after the manifest's point (at most one flush threshold's
//!   worth) are scanned from the log at open into an in-memory table.
//!
//! Nothing here is authoritative: the log is. `verify` checks the index
//! against the log, and deleting `index/` makes the next writer rebuild it.
//!
//! # Damage
//!
//! A reader trusts the index, so every part of it is checked before it is
//! used: the manifest and each run's metadata by checksum at open, each run
//! page by checksum when it is read, and each `seqs` entry against the
//! header of the record it points to (magic, seq and time) when it is
//! looked up. A damaged manifest, run or `seqs` found at open makes a
//! reader fall back to scanning the log (slower, never wrong; it says so
//! once), and makes a writer refuse to start, so that the damaged files
//! stay for `verify` and an investigator to see: delete `index/` to have
//! it rebuilt. Damage found later (a bad page, a `seqs` entry that
//! disagrees with the log) is an error naming the file.
//!
//! The manifest's magic carries the index format version. An index of
//! another version is not read: readers scan the log, and the next writer
//! rebuilds the index in the current format.

mod flush;
mod manifest;
pub mod run;
mod scan;
mod seqs;
mod tree;

pub use flush::remove_orphan_runs;
pub use manifest::{manifest_version, read_manifest, run_file_names, Manifest, INDEX_FORMAT};
pub use scan::{is_torn_tail, TailRecord, TailStop};
pub use seqs::{seq_entries, SEQ_ENTRY_LEN, SEQ_STRIDE};
pub use tree::{decode_entry, encode_entry, level_file_name, TILE_HEIGHT, TREE_ENTRY_LEN};

use crate::store::error::{IoContext, Result, StoreError};
use crate::store::format::{self, Loc, StoreHeader};
use crate::store::layout;
use crate::units::{Hash32, Seq, TimeNs};
use run::{BlockVersion, Run, StoredContent};
use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A run of raw blocks this long is a streaming reader's: the log after it
/// is read ahead (see `Index::read_raw_run`).
const STREAMING_RUN_BYTES: usize = 128 << 10;

/// The newest state of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Head {
    pub seq: Seq,
    /// Time of the last record; `None` for an empty store.
    pub time_ns: Option<TimeNs>,
    /// Chain hash after the last record (32 zero bytes when empty).
    pub chain: Hash32,
}

/// What a reader shows while a batch is open: the state before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    /// The newest state a reader shows.
    pub head: Head,
    /// Where the batch begins in the log.
    pub log_offset: u64,
    /// Bytes written by the records before the batch.
    pub bytes_written: u64,
}

/// The index of one store, as a reader or the writer sees it. Its state
/// is private: readers ask it questions (lookups, times, records), the
/// writer hands it each record it appends ([`Index::apply_append`]) and
/// has it write itself out ([`Index::write_out`]).
pub struct Index {
    dir: PathBuf,
    header: StoreHeader,
    log_path: PathBuf,
    log: File,
    seqs_path: PathBuf,
    /// Absent for a reader of a store whose index was deleted.
    seqs: Option<File>,
    /// `seqs` entries on disk (the writer's).
    seqs_written: u64,
    manifest: Manifest,
    /// The manifest's runs, oldest first, and (for the writer) their
    /// dedup runs, in the same order.
    runs: Vec<Run<BlockVersion>>,
    dedup_runs: Vec<Run<StoredContent>>,
    /// `(block, seq) -> location` for records after the manifest's point.
    mem: BTreeMap<(u64, u64), Loc>,
    /// Dedup key -> location of content stored after the manifest's point
    /// (the writer's).
    pending_dedup: run::KeyMap<Loc>,
    /// The keys of `pending_dedup` that the next run leaves out: blocks of
    /// long writes whose key is no anchor ([`run::is_anchor`]).
    unkept_dedup: run::KeySet,
    tail: Vec<TailRecord>,
    /// The Merkle leaf hash of each record in `tail`.
    tail_leaves: Vec<Hash32>,
    head: Head,
    log_end: u64,
    stop: Option<TailStop>,
    /// Bytes written, zeroed or trimmed, up to the head.
    bytes_written: u64,
    /// Why the index on disk is not used (a reader fell back to the log).
    damaged: Option<String>,
    /// Generation of the manifest whose runs or `seqs` were found damaged.
    rejected_generation: Option<u64>,
    /// For a reader: the open batch, whose records it does not show.
    cap: Option<Cap>,
    writable: bool,
    scan_buf: Vec<u8>,
    /// The Merkle tree's stored hashes and the writer's frontier.
    tree: tree::Tree,
    /// `seqs` entries read and checked already, direct-mapped by sequence
    /// number, each with the manifest generation it was read under (a new
    /// manifest, or a writer cutting `seqs`, makes them stale).
    seq_cache: seqs::SeqCache,
    /// The last chain [`Index::chain_at`] computed: a walk through the
    /// records in order pays one step each.
    chain_memo: parking_lot::Mutex<Option<(Seq, Hash32)>>,
    /// Bytes written to index files since open (see
    /// [`Index::bytes_written_to_index`]).
    index_written: std::sync::atomic::AtomicU64,
}

pub fn read_header(dir: &Path) -> Result<StoreHeader> {
    let path = dir.join(layout::HEADER_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !dir.is_dir() {
                return Err(StoreError::io(dir, e));
            }
            return Err(StoreError::NotAStore(dir.to_path_buf()));
        }
        Err(e) => return Err(StoreError::io(&path, e)),
    };
    format::decode_header(&bytes).map_err(|f| match f {
        format::HeaderFault::NotAStore => StoreError::NotAStore(dir.to_path_buf()),
        format::HeaderFault::Version { found, checksum_ok } => StoreError::Version {
            path: path.clone(),
            found,
            oldest: format::OLDEST_FORMAT_VERSION,
            newest: format::FORMAT_VERSION,
            checksum_ok,
        },
        format::HeaderFault::Corrupt(what) => StoreError::corrupted(&path, what),
    })
}

impl Index {
    /// Open the index of the store at `dir` and scan the log past it.
    pub fn open(dir: &Path, writable: bool) -> Result<Index> {
        let header = read_header(dir)?;
        let log_path = dir.join(layout::LOG_FILE);
        let seqs_path = dir.join(layout::INDEX_DIR).join(layout::SEQS_FILE);
        let open = |p: &Path| -> Result<File> {
            if writable {
                crate::store::files::open_rw_private(p)
            } else {
                File::open(p).at(p)
            }
        };
        if writable {
            crate::store::files::create_dir_private(&dir.join(layout::INDEX_DIR))?;
        }
        let log = open(&log_path)?;
        let seqs = match open(&seqs_path) {
            Ok(f) => Some(f),
            Err(StoreError::Io { error, .. })
                if !writable && error.kind() == std::io::ErrorKind::NotFound =>
            {
                None
            }
            Err(e) => return Err(e),
        };
        let mut idx = Index {
            dir: dir.to_path_buf(),
            header,
            log_path,
            log,
            seqs_path,
            seqs,
            seqs_written: 0,
            manifest: Manifest::default(),
            runs: Vec::new(),
            dedup_runs: Vec::new(),
            mem: BTreeMap::new(),
            pending_dedup: run::KeyMap::default(),
            unkept_dedup: run::KeySet::default(),
            tail: Vec::new(),
            tail_leaves: Vec::new(),
            head: Head::default(),
            log_end: 0,
            stop: None,
            bytes_written: 0,
            damaged: None,
            rejected_generation: None,
            cap: None,
            writable,
            scan_buf: Vec::new(),
            tree: tree::Tree::default(),
            seq_cache: seqs::SeqCache::new(),
            chain_memo: parking_lot::Mutex::new(None),
            index_written: std::sync::atomic::AtomicU64::new(0),
        };
        idx.load_manifest()?;
        idx.scan()?;
        if writable {
            idx.prepare_for_writing()?;
        }
        Ok(idx)
    }

    /// The writer's part of opening: `seqs` cut to what the manifest
    /// promises, run files no manifest names removed, and the dedup keys of
    /// content stored after the manifest's point computed again.
    fn prepare_for_writing(&mut self) -> Result<()> {
        let it = self.manifest.indexed_through.0;
        if let Some(seqs) = &self.seqs {
            seqs.set_len(seqs::seq_entries(it) * SEQ_ENTRY_LEN)
                .at(&self.seqs_path)?;
        }
        self.seqs_written = it;
        flush::remove_orphan_runs(&self.dir.join(layout::INDEX_DIR), &self.manifest.runs)?;
        let bs = self.header.block_size as usize;
        let (mut block, mut scratch) = (vec![0u8; bs], Vec::new());
        let base = self.manifest.log_end;
        let locs: Vec<Loc> = self
            .mem
            .values()
            .filter(|l| l.encoding != format::Encoding::Zero && l.offset_bytes >= base)
            .copied()
            .collect();
        for loc in locs {
            self.read_loc(loc, &mut block, &mut scratch)?;
            self.pending_dedup.insert(run::dedup_key(&block), loc);
        }
        self.prepare_tree()
    }

    /// (Re)load the manifest and its runs, and forget the in-memory tail.
    /// Retries when a concurrent compaction removed a run between reading
    /// the manifest and opening it. A damaged index makes a writer fail and
    /// a reader fall back to the log (see the module docs).
    pub fn load_manifest(&mut self) -> Result<()> {
        let m = match self.load_checked() {
            Ok(m) => m,
            Err(StoreError::Corrupted { path, what }) if !self.writable => {
                let why = format!("{}: {what}", path.display());
                if self.damaged.as_deref() != Some(why.as_str()) {
                    log::warn!(
                        "the index is damaged ({why}); reading the log instead (slower). \
                         Run `diskhist verify`; delete index/ to have it rebuilt"
                    );
                }
                self.damaged = Some(why);
                self.runs.clear();
                Manifest::default()
            }
            Err(StoreError::Corrupted { path, what }) => {
                return Err(StoreError::corrupted(
                    path,
                    format!(
                        "{what}; the writer does not record over a damaged index. Run \
                         `diskhist verify`, then delete {} to have it rebuilt from the log",
                        self.dir.join(layout::INDEX_DIR).display()
                    ),
                ))
            }
            Err(e) => return Err(e),
        };
        self.head = Head {
            seq: m.indexed_through,
            time_ns: (m.indexed_through.0 > 0).then_some(m.head_time),
            chain: m.head_chain,
        };
        self.log_end = m.log_end;
        self.bytes_written = m.bytes_written;
        self.manifest = m;
        self.mem.clear();
        self.tail.clear();
        self.tail_leaves.clear();
        self.stop = None;
        self.tree.reset_files();
        Ok(())
    }

    /// Read the manifest, open its runs and check that they and `seqs`
    /// are what it promises; sets `runs` and clears `damaged`.
    fn load_checked(&mut self) -> Result<Manifest> {
        let mut attempts = 0;
        loop {
            self.rejected_generation = None;
            let m = read_manifest(&self.dir)?;
            self.rejected_generation = Some(m.generation);
            match self.open_runs(&m) {
                Ok((runs, dedup_runs)) => {
                    let seqs_len = match &self.seqs {
                        Some(f) => f.metadata().at(&self.seqs_path)?.len(),
                        None => 0,
                    };
                    let promised = seqs::seq_entries(m.indexed_through.0);
                    if seqs_len < promised * SEQ_ENTRY_LEN {
                        return Err(StoreError::corrupted(
                            &self.seqs_path,
                            format!(
                                "holds {} entries, the manifest promises {promised}",
                                seqs_len / SEQ_ENTRY_LEN,
                            ),
                        ));
                    }
                    self.runs = runs;
                    self.dedup_runs = dedup_runs;
                    self.damaged = None;
                    self.rejected_generation = None;
                    return Ok(m);
                }
                Err(StoreError::Io { error, .. })
                    if error.kind() == std::io::ErrorKind::NotFound && attempts < 20 =>
                {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Open the manifest's runs, checking each one's footer against it.
    /// Open the manifest's runs (and, for the writer, their dedup runs),
    /// checking each footer against it.
    #[allow(clippy::type_complexity)]
    fn open_runs(&self, m: &Manifest) -> Result<(Vec<Run<BlockVersion>>, Vec<Run<StoredContent>>)> {
        let idir = self.dir.join(layout::INDEX_DIR);
        let mut runs = Vec::with_capacity(m.runs.len());
        let mut dedup = Vec::new();
        for &(a, z) in &m.runs {
            let (rn, dn) = run_file_names(a, z);
            let path = idir.join(rn);
            let run = Run::open(&path)?;
            if (run.first_seq, run.last_seq) != (a, z) {
                return Err(StoreError::corrupted(
                    &path,
                    format!(
                        "run covers records {}..={}, the manifest says {a}..={z}",
                        run.first_seq, run.last_seq
                    ),
                ));
            }
            runs.push(run);
            if self.writable {
                dedup.push(Run::open(&idir.join(dn))?);
            }
        }
        Ok((runs, dedup))
    }

    /// Whether the manifest on disk differs from the one in use (a writer
    /// flushed or compacted since). A damaged manifest a reader already
    /// fell back from is not a change.
    pub fn manifest_changed(&self) -> Result<bool> {
        match read_manifest(&self.dir) {
            Ok(m) if self.damaged.is_some() => Ok(Some(m.generation) != self.rejected_generation),
            Ok(m) => Ok(m.generation != self.manifest.generation),
            Err(StoreError::Corrupted { .. }) if self.damaged.is_some() => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn header(&self) -> &StoreHeader {
        &self.header
    }

    /// The newest record taken in (a reader may show less: see
    /// [`Index::visible_head`]).
    pub fn head(&self) -> Head {
        self.head
    }

    /// Where the next record goes in the log.
    pub fn log_end(&self) -> u64 {
        self.log_end
    }

    pub fn log(&self) -> &File {
        &self.log
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Where the last scan stopped short of the log's end, if it did.
    pub fn stop(&self) -> Option<&TailStop> {
        self.stop.as_ref()
    }

    /// Bytes written, zeroed or trimmed, up to the head.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    pub fn cap(&self) -> Option<Cap> {
        self.cap
    }

    /// Set (a reader) or clear what a reader shows of an open batch.
    pub fn set_cap(&mut self, cap: Option<Cap>) {
        self.cap = cap;
    }

    /// Cut the torn tail the scan stopped at (the writer's, at open) and
    /// return it; an error if what stopped the scan is damage in the
    /// middle of the log, which is never cut.
    pub fn cut_torn_tail(&mut self) -> Result<Option<TailStop>> {
        let Some(stop) = self.stop.clone() else {
            return Ok(None);
        };
        if !stop.at_end {
            return Err(StoreError::corrupted(
                &self.log_path,
                format!(
                    "record {} at byte {}: {}, and {} more bytes follow; refusing to cut \
                     the log (that would discard them)",
                    stop.seq, stop.offset_bytes, stop.reason, stop.bytes_left
                ),
            ));
        }
        self.log.set_len(stop.offset_bytes).at(&self.log_path)?;
        self.log.sync_all().at(&self.log_path)?;
        self.stop = None;
        Ok(Some(stop))
    }

    /// Take in a record the writer has just appended at `offset`: its
    /// header (chain set) and the block locations and dedup keys it set.
    pub fn apply_append(
        &mut self,
        offset: u64,
        h: &format::RecordHeader,
        chain: Hash32,
        locs: &[(u64, Loc)],
        dedup: run::KeyMap<Loc>,
    ) {
        // A long write keeps only its anchors in the runs; the writer finds
        // the rest beside them. Recent keys all stay until the next flush.
        let sparse = locs.len() >= run::SPARSE_MIN_BLOCKS;
        for (key, loc) in dedup {
            if sparse && !run::is_anchor(&key) {
                self.unkept_dedup.insert(key);
            } else {
                self.unkept_dedup.remove(&key);
            }
            self.pending_dedup.insert(key, loc);
        }
        self.apply(offset, h, chain, locs);
    }

    /// The blocks record `seq` stored, in its order: where the neighbours of
    /// a long write's anchor are. `None` when there is no record `seq` or it
    /// takes more than `max_bytes` of the log (it is not read).
    pub fn record_locs(
        &self,
        seq: Seq,
        max_bytes: u64,
        buf: &mut Vec<u8>,
    ) -> Result<Option<Vec<(u64, Loc)>>> {
        if seq.0 == 0 || seq > self.head.seq {
            return Ok(None);
        }
        let rec_off = self.offset_of(seq)?;
        let end = if seq < self.head.seq {
            self.offset_of(Seq(seq.0 + 1))?
        } else {
            self.log_end
        };
        if end.saturating_sub(rec_off) > max_bytes {
            return Ok(None);
        }
        let h = self.read_record(seq, buf)?;
        format::record_block_locs(
            rec_off,
            &h,
            format::record_body(buf),
            self.header.block_size,
            self.header.size_bytes,
        )
        .map(Some)
        .map_err(|e| StoreError::corrupted(&self.log_path, format!("record {}: {e}", h.seq)))
    }

    /// Take in one whole record at `offset`, checked already, with its
    /// content hash known; `chain` is the chain after it.
    fn apply(&mut self, offset: u64, h: &format::RecordHeader, chain: Hash32, locs: &[(u64, Loc)]) {
        for &(b, loc) in locs {
            self.mem.insert((b, h.seq.0), loc);
        }
        let leaf = h.leaf_hash();
        self.tail.push(TailRecord {
            time_ns: h.time_ns,
            offset_bytes: offset,
            record_len: h.record_len,
        });
        self.tail_leaves.push(leaf);
        self.tree.push(leaf);
        self.head = Head {
            seq: h.seq,
            time_ns: Some(h.time_ns),
            chain,
        };
        self.log_end = offset + u64::from(h.record_len);
        if h.kind != format::RecordKind::Mark {
            self.bytes_written += h.length_bytes;
        }
    }

    /// After a failed fsync cut the log back to `log_end` (where `head`
    /// ends): forget what followed.
    pub fn rewind_to(&mut self, head: Head, log_end: u64) {
        *self.chain_memo.get_mut() = None;
        let keep = head.seq.0.saturating_sub(self.manifest.indexed_through.0) as usize;
        self.tail.truncate(keep);
        self.tail_leaves.truncate(keep);
        self.mem.retain(|&(_, seq), _| seq <= head.seq.0);
        self.pending_dedup.retain(|_, l| l.offset_bytes < log_end);
        let pending = &self.pending_dedup;
        self.unkept_dedup.retain(|k| pending.contains_key(k));
        self.head = head;
        self.log_end = log_end;
        if let Err(e) = self.rewind_tree() {
            log::error!("could not rebuild the Merkle tree's frontier after rewinding: {e}");
        }
    }

    /// The dedup keys held in memory, for tests that forge a collision.
    #[cfg(test)]
    pub(crate) fn pending_dedup_mut(&mut self) -> &mut run::KeyMap<Loc> {
        &mut self.pending_dedup
    }

    /// Where content with dedup key `key` was stored, if it was: a
    /// candidate, for the writer to compare byte by byte.
    pub fn find_dedup(&self, key: &[u8; 32]) -> Result<Option<Loc>> {
        if let Some(l) = self.pending_dedup.get(key) {
            return Ok(Some(*l));
        }
        for r in self.dedup_runs.iter().rev() {
            if let Some(e) = r.find_eq(key)? {
                return Ok(Some(e.loc));
            }
        }
        Ok(None)
    }

    /// The newest state a reader may show: the head, or the state before
    /// an open batch.
    pub fn visible_head(&self) -> Head {
        match self.cap {
            Some(c) if c.head.seq < self.head.seq => c.head,
            _ => self.head,
        }
    }

    /// Where block `block` stood as of state `state`.
    pub fn lookup(&self, block: u64, state: Seq) -> Result<Loc> {
        if state > self.manifest.indexed_through {
            if let Some((_, loc)) = self.mem.range((block, 0)..=(block, state.0)).next_back() {
                return Ok(*loc);
            }
        }
        for run in self.runs.iter().rev() {
            if run.first_seq > state {
                continue;
            }
            if let Some(v) = run.find_le(&(block, state.0))? {
                if v.block == block {
                    return Ok(v.loc);
                }
            }
        }
        Ok(Loc::ZERO)
    }

    /// The first record after state `after` that writes (zeroes, trims)
    /// block `block`: one probe of each run and of the in-memory tail,
    /// O(log n). Records of an open batch a reader does not show are not
    /// answered.
    pub fn next_write(&self, block: u64, after: Seq) -> Result<Option<Seq>> {
        let head = self.visible_head().seq;
        let mut best: Option<u64> = self
            .mem
            .range((block, after.0.saturating_add(1))..=(block, u64::MAX))
            .next()
            .map(|(&(_, s), _)| s);
        for run in &self.runs {
            if run.last_seq <= after || best.is_some_and(|b| run.first_seq.0 >= b) {
                continue;
            }
            if let Some(v) = run.find_gt(&(block, after.0))? {
                if v.block == block && best.is_none_or(|b| v.seq < b) {
                    best = Some(v.seq);
                }
            }
        }
        Ok(best.filter(|&s| s <= head.0).map(Seq))
    }

    /// The last record up to state `state` that wrote block `block`
    /// (`None`: never written, all zeros).
    pub fn last_write(&self, block: u64, state: Seq) -> Result<Option<Seq>> {
        if state > self.manifest.indexed_through {
            if let Some((&(_, s), _)) = self.mem.range((block, 0)..=(block, state.0)).next_back() {
                return Ok(Some(Seq(s)));
            }
        }
        for run in self.runs.iter().rev() {
            if run.first_seq > state {
                continue;
            }
            if let Some(v) = run.find_le(&(block, state.0))? {
                if v.block == block {
                    return Ok(Some(Seq(v.seq)));
                }
            }
        }
        Ok(None)
    }

    /// Decode the content at `loc` into `out` (one block).
    pub fn read_loc(&self, loc: Loc, out: &mut [u8], scratch: &mut Vec<u8>) -> Result<()> {
        if loc.encoding == format::Encoding::Zero {
            out.fill(0);
            return Ok(());
        }
        // A raw block is its own decoding: read it straight into `out`.
        if loc.encoding == format::Encoding::Raw && loc.stored_len as usize == out.len() {
            return self
                .log
                .read_exact_at(out, loc.offset_bytes)
                .at(&self.log_path);
        }
        scratch.resize(loc.stored_len as usize, 0);
        self.log
            .read_exact_at(scratch, loc.offset_bytes)
            .at(&self.log_path)?;
        format::decode_block(loc.encoding, scratch, out).map_err(|e| {
            StoreError::corrupted(
                &self.log_path,
                format!("block at log offset {}: {e}", loc.offset_bytes),
            )
        })
    }

    /// Rebuild the content hash of the format 2 write `h`, whole in `rec`
    /// at log byte `offset`, whose blocks are `locs`: blocks stored in it
    /// are taken from `rec`, references read from the log. A no-op when the
    /// hash is known.
    pub(crate) fn rebuild_content(
        &self,
        offset: u64,
        h: &mut format::RecordHeader,
        rec: &[u8],
        locs: &[(u64, Loc)],
    ) -> Result<()> {
        if h.content_hash.is_some() {
            return Ok(());
        }
        let mut scratch = Vec::new();
        let end = offset + rec.len() as u64;
        let hash = format::rebuild_content_hash(h, locs, self.header.block_size, |loc, out| {
            if (offset..end).contains(&loc.offset_bytes) {
                let at = (loc.offset_bytes - offset) as usize;
                let stored = rec.get(at..at + loc.stored_len as usize).ok_or_else(|| {
                    format!(
                        "block at log offset {} runs past its record",
                        loc.offset_bytes
                    )
                })?;
                format::decode_block(loc.encoding, stored, out)
                    .map_err(|e| format!("block at log offset {}: {e}", loc.offset_bytes))
            } else {
                self.read_loc(loc, out, &mut scratch)
                    .map_err(|e| e.to_string())
            }
        })
        .map_err(|why| StoreError::corrupted(&self.log_path, format!("record {}: {why}", h.seq)))?;
        h.content_hash = Some(hash);
        Ok(())
    }

    /// The disk as of `state`, `buf.len()` bytes from `offset_bytes`.
    pub fn read_at(&self, state: Seq, offset_bytes: u64, buf: &mut [u8]) -> Result<()> {
        let size = self.header.size_bytes;
        if offset_bytes
            .checked_add(buf.len() as u64)
            .is_none_or(|e| e > size)
        {
            return Err(StoreError::OutOfRange {
                what: "read",
                offset_bytes,
                length_bytes: buf.len() as u64,
                size_bytes: size,
            });
        }
        let bs = self.header.block_size as usize;
        let mut block_buf = Vec::new();
        let mut scratch = Vec::new();
        // Whole blocks stored raw one after another in the log (an extent
        // written at once, an imported image: each after its entry's tag
        // byte) are read with one preadv.
        let mut raw_run: Option<RawRun> = None;
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset_bytes + done as u64;
            let block = pos / bs as u64;
            let within = (pos % bs as u64) as usize;
            let n = (bs - within).min(buf.len() - done);
            let loc = self.lookup(block, state)?;
            if n == bs && loc.encoding == format::Encoding::Raw && loc.stored_len as usize == bs {
                if !raw_run
                    .as_mut()
                    .is_some_and(|r| r.try_extend(loc.offset_bytes, bs))
                {
                    self.read_raw_run(buf, raw_run.take(), bs)?;
                    raw_run = Some(RawRun {
                        buf_at: done,
                        log_at: loc.offset_bytes,
                        blocks: 1,
                    });
                }
            } else {
                self.read_raw_run(buf, raw_run.take(), bs)?;
                if n == bs {
                    self.read_loc(loc, &mut buf[done..done + n], &mut scratch)?;
                } else {
                    block_buf.resize(bs, 0);
                    self.read_loc(loc, &mut block_buf, &mut scratch)?;
                    buf[done..done + n].copy_from_slice(&block_buf[within..within + n]);
                }
            }
            done += n;
        }
        self.read_raw_run(buf, raw_run, bs)
    }

    /// Read a run of raw blocks (see [`Index::read_at`]) into `buf` with
    /// `preadv`: the blocks land in place, the tag bytes between them in a
    /// scratch byte (and must say raw). A long run is a streaming reader's
    /// (an image read through, a file copied): the log bytes after it are
    /// probably next, so the kernel is asked to start reading them now,
    /// while this run is handed back.
    fn read_raw_run(&self, buf: &mut [u8], run: Option<RawRun>, bs: usize) -> Result<()> {
        let Some(run) = run else {
            return Ok(());
        };
        let span = run.blocks * (bs + 1) - 1;
        if run.blocks * bs >= STREAMING_RUN_BYTES {
            let ahead = (run.log_at + span as u64) as libc::off_t;
            // Only advice: nothing depends on it being taken.
            // SAFETY: posix_fadvise only reads its arguments.
            unsafe {
                libc::posix_fadvise(
                    self.log.as_raw_fd(),
                    ahead,
                    (2 * span) as libc::off_t,
                    libc::POSIX_FADV_WILLNEED,
                );
            }
        }
        let out = &mut buf[run.buf_at..run.buf_at + run.blocks * bs];
        // At most IOV_MAX (1024) iovecs a call: 512 blocks and their tags.
        const BLOCKS_PER_CALL: usize = 512;
        let mut tags = [0u8; BLOCKS_PER_CALL];
        for (k, chunk) in out.chunks_mut(BLOCKS_PER_CALL * bs).enumerate() {
            let log_at = run.log_at + (k * BLOCKS_PER_CALL * (bs + 1)) as u64;
            self.read_tagged_blocks(chunk, &mut tags, log_at, bs)?;
        }
        Ok(())
    }

    /// Read `out.len() / bs` raw blocks stored one after another from
    /// `log_at`, each but the first after a one-byte tag, in one `preadv`
    /// (more if it returns short).
    fn read_tagged_blocks(
        &self,
        out: &mut [u8],
        tags: &mut [u8],
        log_at: u64,
        bs: usize,
    ) -> Result<()> {
        let blocks = out.len() / bs;
        let mut iov: Vec<libc::iovec> = Vec::with_capacity(2 * blocks);
        for (i, block) in out.chunks_mut(bs).enumerate() {
            if i > 0 {
                iov.push(libc::iovec {
                    iov_base: tags[i..].as_mut_ptr().cast(),
                    iov_len: 1,
                });
            }
            iov.push(libc::iovec {
                iov_base: block.as_mut_ptr().cast(),
                iov_len: bs,
            });
        }
        let total = blocks * bs + (blocks - 1);
        // SAFETY: every iovec points into `out` or `tags`, which outlive
        // the call and are not otherwise touched during it; the fd is open.
        let n = unsafe {
            libc::preadv(
                self.log.as_raw_fd(),
                iov.as_ptr(),
                iov.len() as libc::c_int,
                log_at as libc::off_t,
            )
        };
        if n < 0 || (n as usize) < total {
            // Interrupted, short or failed: read each block on its own,
            // which retries and reports a failure with its file.
            for (i, block) in out.chunks_mut(bs).enumerate() {
                self.log
                    .read_exact_at(block, log_at + (i * (bs + 1)) as u64)
                    .at(&self.log_path)?;
            }
            return Ok(());
        }
        if let Some(i) = (1..blocks).find(|&i| tags[i] != format::TAG_RAW) {
            return Err(StoreError::corrupted(
                &self.log_path,
                format!(
                    "the entry tag before the raw block at log offset {} is {}, not raw",
                    log_at + (i * (bs + 1)) as u64,
                    tags[i]
                ),
            ));
        }
        Ok(())
    }
}

/// Raw blocks read together by [`Index::read_at`]: where in the caller's
/// buffer, where in the log, how many. Each stored block follows its
/// entry's tag byte, so blocks stored one after another are one byte apart.
struct RawRun {
    buf_at: usize,
    log_at: u64,
    blocks: usize,
}

impl RawRun {
    /// Add the raw block stored at `offset` if it is the next one in the
    /// log (one tag byte after the run's end); whether it was.
    fn try_extend(&mut self, offset: u64, bs: usize) -> bool {
        let next = self.log_at + (self.blocks * (bs + 1)) as u64;
        if offset != next {
            return false;
        }
        self.blocks += 1;
        true
    }
}
