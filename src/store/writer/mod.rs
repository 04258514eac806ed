//! The one writer of a store: turns [`Op`]s into records, keeps the index
//! current, and owns durability.
//!
//! Durability: a record is in the page cache when `append` returns and on
//! the disk after `sync` (fdatasync of the log). The index is derived and is
//! made durable only at index flushes, after the log it describes. A failed
//! fsync of the log poisons the writer: it refuses everything afterwards,
//! because the kernel may have dropped the dirty pages it could not write.
//! It also cuts the log back to where the last good fsync left it, so that
//! the file holds only what is durable and a new writer resumes from there
//! (records after that point were never promised durable: NBD clients got
//! an error for the FLUSH or FUA write that failed).
//!
//! # A full filesystem
//!
//! The log is the evidence; everything else can wait for space.
//!
//! - `append` writes a record with one positioned write. If that fails
//!   (ENOSPC part-way through, say) the log is cut back to where the record
//!   began, so no partial record is ever left, and the error is returned:
//!   nothing was recorded, the writer goes on. Only if even the cut fails is
//!   the log's end unknown, and the writer poisoned.
//! - ENOSPC from `write` is not an fsync failure and does not poison. On
//!   filesystems that reserve space at `write` time (ext4 with delayed
//!   allocation, XFS, tmpfs) that is where a full disk shows. Where the
//!   space is only found at writeback, `sync` itself fails with ENOSPC; the
//!   kernel may then have dropped the pages, so that poisons like any other
//!   fsync failure (thin-provisioned storage that runs out does this).
//! - An index flush that fails (run files, `index/seqs`, `MANIFEST`) leaves
//!   the previous manifest and the in-memory index as they were, removes
//!   the files it had started, and is tried again later (a few appends on,
//!   so a full disk does not make every append rewrite a run). The records
//!   are in the log either way; `close` succeeds once the log is synced,
//!   with a warning that the next writer will catch the index up.

mod encode;
mod lock;
mod rollback;

pub use lock::writer_is_live;

use encode::Lz4Backoff;
use lock::take_lock;
use rollback::rollback_batch;

use crate::store::batch::{self, BatchState, OpenBatch};
use crate::store::error::{InitError, IoContext, Result, StoreError};
use crate::store::files;
use crate::store::format::{self, Link, Loc, LogFormat, RecordKind, StoreHeader};
use crate::store::index::run::KeyMap;
use crate::store::index::{self, Head, Index, TailStop};
use crate::store::layout;
use crate::store::op::{Op, OpFlags};
use crate::units::{Geometry, Seq, TimeNs};
use std::fs::File;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Block versions held in memory before they are written out as a run.
/// Bounds the writer's and every reader's memory, and what an open after a
/// crash has to scan.
pub const FLUSH_THRESHOLD: usize = 1 << 16;

/// Tunables of a writer; the defaults are what the tools use.
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    /// Block versions held in memory before an index flush.
    pub flush_threshold: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            flush_threshold: FLUSH_THRESHOLD,
        }
    }
}

/// What `append` recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub seq: Seq,
    /// The time stored (held at the previous record's if the clock stepped back).
    pub time_ns: TimeNs,
}

pub struct Writer {
    idx: Index,
    _lock: File,
    recovered: Option<TailStop>,
    buf: Vec<u8>,
    zbuf: Vec<u8>,
    /// A stored block decoded to compare with new content, and its bytes.
    cmp_block: Vec<u8>,
    cmp_scratch: Vec<u8>,
    /// An earlier record read to align a write with it (dedup).
    scratch_record: Vec<u8>,
    /// Blocks still to store raw without trying lz4, and the skip that the
    /// next incompressible block sets (see `Lz4Backoff`).
    lz4: Lz4Backoff,
    block: Vec<u8>,
    scratch: Vec<u8>,
    poisoned: bool,
    closed: bool,
    opts: WriterOptions,
    /// In-memory block versions at which the next index flush is tried:
    /// the threshold, pushed further out after a flush fails.
    next_flush_at: usize,
    /// Head and log end as of the last successful fsync of the log.
    synced: (Head, u64),
    /// The batch begun and not yet committed (see [`batch`]).
    batch: Option<OpenBatch>,
    /// Batches ever begun in this store (the batch file's counter).
    batch_counter: u64,
    /// The unfinished batch cut when this writer opened, if any.
    cut_batch: Option<CutBatch>,
    /// Who seals checkpoints of the history as it is recorded, if anyone.
    seal_hook: Option<Box<dyn SealHook>>,
}

/// Told when the history may be sealed (see `crate::seal::sealer`): the
/// writer asks before each record whether a checkpoint is due and, if so,
/// makes the log durable and hands over the head's size and Merkle root,
/// so that a checkpoint never covers a record a crash could still take
/// back. Never during an import's batch (it may be undone).
pub trait SealHook: Send {
    /// Whether a checkpoint of the head (`head` records) is due.
    fn due(&mut self, head: Seq) -> bool;
    /// The durable history of `size` records has Merkle root `root`: seal
    /// it. Failures are the hook's to report; recording goes on.
    fn seal(&mut self, size: Seq, root: crate::units::Hash32);
}

/// The end of the log as a sync started at some moment makes it durable:
/// see [`Writer::sync_point`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncPoint {
    head: Head,
    end_bytes: u64,
}

impl SyncPoint {
    /// Where the log ended, in bytes.
    pub fn end_bytes(&self) -> u64 {
        self.end_bytes
    }
}

/// Records of an unfinished batch that a writer cut off the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CutBatch {
    /// The batch's first record; the records from here on were cut.
    pub first_seq: Seq,
    /// Bytes cut from the end of the log.
    pub bytes: u64,
}

impl Writer {
    /// Create an empty store in `dir` (which must not exist or be empty).
    pub fn init(dir: &Path, size_bytes: u64, block_size: u32) -> Result<()> {
        Writer::init_format(dir, size_bytes, block_size, LogFormat::V2)
    }

    /// [`Writer::init`] with the log's record format chosen: format 1 only
    /// for tests of stores that older releases made.
    pub fn init_format(
        dir: &Path,
        size_bytes: u64,
        block_size: u32,
        format: LogFormat,
    ) -> Result<()> {
        if !format::valid_block_size(block_size) {
            return Err(InitError::BlockSize(block_size).into());
        }
        if size_bytes == 0 || size_bytes % u64::from(block_size) != 0 {
            return Err(InitError::DiskSize {
                size_bytes,
                block_size,
            }
            .into());
        }
        match std::fs::read_dir(dir) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(InitError::NotEmpty(dir.to_path_buf()).into());
                }
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).at(dir)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A mistyped parent is a mistake to report, not a tree to
                // create: the store goes exactly where it was asked to.
                let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
                if let Some(p) = parent.filter(|p| !p.is_dir()) {
                    return Err(InitError::NoParent {
                        path: dir.to_path_buf(),
                        parent: p.to_path_buf(),
                    }
                    .into());
                }
                std::fs::DirBuilder::new().mode(0o700).create(dir).at(dir)?
            }
            Err(e) => return Err(StoreError::io(dir, e)),
        }
        let created = crate::time::now();
        let mut id = blake3::Hasher::new();
        id.update(&created.0.to_le_bytes());
        id.update(&std::process::id().to_le_bytes());
        id.update(dir.as_os_str().as_encoded_bytes());
        let header = StoreHeader {
            format,
            block_size,
            size_bytes,
            created_ns: created,
            store_id: id.finalize().as_bytes()[..16].try_into().unwrap(),
        };
        files::create_dir_private(&dir.join(layout::INDEX_DIR))?;
        files::create_private(&dir.join(layout::LOG_FILE))?
            .sync_all()
            .at(dir)?;
        files::create_private(&dir.join(layout::INDEX_DIR).join(layout::SEQS_FILE))?;
        if let files::Replaced::NotDurable(e) = files::replace_atomically(
            &dir.join(layout::HEADER_FILE),
            &format::encode_header(&header),
        )? {
            return Err(e);
        }
        files::sync_dir(dir)
    }

    /// Open the store for writing: take the lock, cut a torn tail, catch
    /// the index up with the log.
    pub fn open(dir: &Path) -> Result<Writer> {
        Writer::open_with(dir, WriterOptions::default())
    }

    pub fn open_with(dir: &Path, opts: WriterOptions) -> Result<Writer> {
        index::read_header(dir)?;
        let lock = take_lock(dir)?;
        Writer::open_locked(dir, lock, opts)
    }

    /// Open for writing, holding `lock`.
    fn open_locked(dir: &Path, lock: File, opts: WriterOptions) -> Result<Writer> {
        // An unfinished batch goes before anything else looks at the log.
        let bstate = batch::read(dir).map_err(|e| match e {
            StoreError::Corrupted { path, what } => StoreError::corrupted(
                path,
                format!(
                    "{what}; the writer cannot tell whether an import was cut short. Run \
                     `diskhist verify`; if no import was running, remove the file"
                ),
            ),
            e => e,
        })?;
        let cut_batch = match &bstate.open {
            Some(open) => Some(rollback_batch(dir, open, bstate.counter)?),
            None => None,
        };
        let mut idx = Index::open(dir, true)?;
        let recovered = idx.cut_torn_tail()?;
        if let Some(stop) = &recovered {
            log::warn!(
                "{}: cut a torn tail of {} bytes at byte {} (record {} would have been next: {})",
                idx.log_path().display(),
                stop.bytes_left,
                stop.offset_bytes,
                stop.seq,
                stop.reason
            );
        }
        // What the log holds now may be pages a killed writer left in the
        // cache: make it durable, so that `synced` is true from the start.
        idx.log().sync_data().at(idx.log_path())?;
        let synced = (idx.head(), idx.log_end());
        let mut w = Writer {
            synced,
            idx,
            _lock: lock,
            recovered,
            buf: Vec::new(),
            zbuf: Vec::new(),
            cmp_block: Vec::new(),
            cmp_scratch: Vec::new(),
            scratch_record: Vec::new(),
            lz4: Lz4Backoff::default(),
            block: Vec::new(),
            scratch: Vec::new(),
            poisoned: false,
            closed: false,
            next_flush_at: opts.flush_threshold,
            opts,
            batch: None,
            batch_counter: bstate.counter,
            cut_batch,
            seal_hook: None,
        };
        if w.idx.pending_versions() >= w.opts.flush_threshold || w.recovered.is_some() {
            // On a full disk the store still opens: records are refused
            // one by one with ENOSPC, reads work.
            w.try_flush_index()?;
        }
        Ok(w)
    }

    pub fn geometry(&self) -> Geometry {
        Geometry {
            size_bytes: self.idx.header().size_bytes,
            block_size: self.idx.header().block_size,
        }
    }

    pub fn head(&self) -> Head {
        self.idx.head()
    }

    /// The store's id (made at `init`; names it in checkpoints).
    pub fn store_id(&self) -> [u8; 16] {
        self.idx.header().store_id
    }

    /// Have `hook` seal the history as it is recorded.
    pub fn set_seal_hook(&mut self, hook: Box<dyn SealHook>) {
        self.seal_hook = Some(hook);
    }

    /// If the seal hook says a checkpoint is due (or `force`, and records
    /// came since), make the log durable and seal the head. An error is a
    /// failed fsync (the writer is poisoned: nothing more is recorded).
    pub fn seal_if_due(&mut self, force: bool) -> Result<()> {
        if self.batch.is_some() || self.poisoned {
            return Ok(());
        }
        let Some(mut hook) = self.seal_hook.take() else {
            return Ok(());
        };
        let head = self.idx.head().seq;
        let result = (|| {
            if force || hook.due(head) {
                self.sync()?;
                let root = self.tree_root()?;
                hook.seal(head, root);
            }
            Ok(())
        })();
        self.seal_hook = Some(hook);
        result
    }

    /// The Merkle tree's root at the head (kept incrementally: no reads).
    pub fn tree_root(&self) -> Result<crate::units::Hash32> {
        self.idx.tree_root(self.idx.head().seq.0)
    }

    /// The torn tail cut when this writer opened, if any.
    pub fn recovered(&self) -> Option<&TailStop> {
        self.recovered.as_ref()
    }

    /// The unfinished batch cut when this writer opened, if any.
    pub fn cut_batch(&self) -> Option<CutBatch> {
        self.cut_batch
    }

    /// Begin a batch: the records appended until [`Writer::commit_batch`]
    /// become part of the history together, or not at all (see the
    /// `batch` module). Readers see none of them until the commit; if the
    /// process stops first, the next writer cuts them.
    ///
    /// Writes the whole index out first, so that the batch's index entries
    /// can be dropped again.
    pub fn begin_batch(&mut self) -> Result<()> {
        self.check_usable()?;
        assert!(self.batch.is_none(), "begin_batch inside a batch");
        self.flush_index()?;
        let open = OpenBatch {
            first_seq: Seq(self.idx.head().seq.0 + 1),
            log_offset: self.idx.log_end(),
            manifest: self.idx.manifest().clone(),
        };
        batch::write(
            self.idx.dir(),
            &BatchState {
                counter: self.batch_counter + 1,
                open: Some(open.clone()),
            },
        )?;
        self.batch_counter += 1;
        self.batch = Some(open);
        Ok(())
    }

    /// Make the open batch's records durable and part of the history.
    /// On an error the batch stays open: [`Writer::abort_batch`] undoes it.
    pub fn commit_batch(&mut self) -> Result<()> {
        assert!(self.batch.is_some(), "commit_batch outside a batch");
        self.sync()?;
        batch::write(
            self.idx.dir(),
            &BatchState {
                counter: self.batch_counter,
                open: None,
            },
        )?;
        self.batch = None;
        Ok(())
    }

    /// Undo the open batch: cut its records off the log and put the index
    /// back to where it was when the batch began. The store is then
    /// exactly as it was before [`Writer::begin_batch`], and the writer
    /// goes on from there (it holds the lock throughout).
    pub fn abort_batch(&mut self) -> Result<CutBatch> {
        let open = self.batch.take().expect("abort_batch outside a batch");
        // Nothing of the batch may reach the index, now or on drop.
        self.closed = true;
        let dir = self.idx.dir().to_path_buf();
        let cut = rollback_batch(&dir, &open, self.batch_counter)?;
        // The lock belongs to the open file description: a duplicate
        // keeps it held while this writer is replaced by a fresh one.
        let lock = self._lock.try_clone().at(&dir.join(layout::LOCK_FILE))?;
        let mut fresh = Writer::open_locked(&dir, lock, self.opts)?;
        // Sealing goes on in the fresh writer (the batch was never sealed).
        fresh.seal_hook = self.seal_hook.take();
        drop(std::mem::replace(self, fresh));
        Ok(cut)
    }
    /// The latest state, `buf.len()` bytes from `offset_bytes`.
    pub fn read_at(&self, offset_bytes: u64, buf: &mut [u8]) -> Result<()> {
        self.idx.read_at(self.idx.head().seq, offset_bytes, buf)
    }

    fn check_usable(&self) -> Result<()> {
        if self.poisoned {
            return Err(StoreError::Poisoned);
        }
        Ok(())
    }

    /// Record one operation stamped with the current time, strictly later
    /// than the last record's: if the wall clock has not moved on (or has
    /// stepped back), one nanosecond after it, with `CLOCK_HELD`. What live
    /// recorders use: no two of their records share a time, so the state a
    /// time names (and the entry the mount lists for it) never changes once
    /// it exists.
    pub fn append_now(&mut self, op: Op<'_>, flags: OpFlags) -> Result<Appended> {
        let now = crate::time::now();
        match self.idx.head().time_ns {
            Some(last) if now <= last => {
                if now < last {
                    log::warn!(
                        "clock stepped back by {} ns; holding the time just after the last record's",
                        last.0 - now.0
                    );
                }
                let held = TimeNs(last.0.saturating_add(1));
                self.append(held, op, flags | OpFlags::CLOCK_HELD)
            }
            _ => self.append(now, op, flags),
        }
    }

    /// Record one operation at `time`; an earlier time than the last
    /// record's is held at it (`CLOCK_HELD`). Nothing is recorded if this
    /// returns an error.
    pub fn append(&mut self, time: TimeNs, op: Op<'_>, mut flags: OpFlags) -> Result<Appended> {
        self.check_usable()?;
        if self.seal_hook.is_some() {
            // Before the record, like an index flush: a failed fsync still
            // means nothing was recorded.
            self.seal_if_due(false)?;
        }
        if self.idx.pending_versions() >= self.next_flush_at {
            // Before the record, so that an error (a poisoning fsync
            // failure) still means nothing was recorded.
            self.try_flush_index()?;
        }
        let size = self.idx.header().size_bytes;
        let kind = op.kind();
        let (offset_bytes, length_bytes) = op.range();
        if matches!(
            kind,
            RecordKind::Write | RecordKind::Zero | RecordKind::Trim
        ) && offset_bytes
            .checked_add(length_bytes)
            .is_none_or(|e| e > size)
        {
            return Err(StoreError::OutOfRange {
                what: kind.name(),
                offset_bytes,
                length_bytes,
                size_bytes: size,
            });
        }
        if matches!(kind, RecordKind::Write | RecordKind::Mark)
            && length_bytes > format::MAX_OP_BYTES
        {
            return Err(StoreError::TooLarge {
                length_bytes,
                max: format::MAX_OP_BYTES,
            });
        }
        let mut time_ns = time;
        if let Some(last) = self.idx.head().time_ns {
            if time < last {
                log::warn!(
                    "clock stepped back by {} ns; holding the time at the last record's",
                    last.0 - time.0
                );
                time_ns = last;
                flags |= OpFlags::CLOCK_HELD;
            }
        }
        let seq = Seq(self.idx.head().seq.0 + 1);
        let rec_off = self.idx.log_end();
        let mut buf = std::mem::take(&mut self.buf);
        let mut h = op.header(seq, time_ns, flags);
        h.format = self.idx.header().format;
        format::begin_record(&mut buf, &h);
        let mut new_locs: Vec<(u64, Loc)> = Vec::new();
        let mut pending = KeyMap::default();
        let built = self.build_body(&mut buf, rec_off, op, &mut new_locs, &mut pending);
        if let Err(e) = built {
            self.buf = buf;
            return Err(e);
        }
        let chain = format::chain_next(&self.idx.head().chain, &h);
        h.link = Link::of(h.format, seq, chain);
        format::finish_record(&mut buf, &mut h);
        if let Err(e) = self.idx.log().write_all_at(&buf, rec_off) {
            // Cut back whatever part of the record reached the file (a write
            // that ran out of space part-way); if even that fails the log's
            // end is unknown and the writer must stop.
            if let Err(cut) = self.idx.log().set_len(rec_off) {
                log::error!(
                    "{}: could not cut a partly written record back to byte {rec_off}: {cut}; \
                     refusing further writes",
                    self.idx.log_path().display()
                );
                self.poisoned = true;
            }
            self.buf = buf;
            let e = if files::is_out_of_space(&e) {
                std::io::Error::new(
                    e.kind(),
                    format!(
                        "{e}: the filesystem holding the store is full; nothing of this \
                         operation was recorded, free space there and it can be retried"
                    ),
                )
            } else {
                e
            };
            return Err(StoreError::io(self.idx.log_path(), e));
        }
        self.idx
            .apply_append(rec_off, &h, chain, &new_locs, pending);
        self.buf = buf;
        Ok(Appended { seq, time_ns })
    }

    /// Make every record appended so far durable (fdatasync of the log).
    pub fn sync(&mut self) -> Result<()> {
        self.check_usable()?;
        if let Err(e) = self.idx.log().sync_data() {
            return Err(self.poison_after_failed_sync(e));
        }
        self.synced = (self.idx.head(), self.idx.log_end());
        Ok(())
    }

    /// Where the log ends now: what a sync started now makes durable.
    ///
    /// Group commit (`serve`) syncs without holding the writer, so that
    /// records go on being appended meanwhile: take the point here, sync a
    /// handle of one's own ([`Writer::log_for_sync`]), then report the
    /// outcome with [`Writer::synced_through`] or [`Writer::sync_failed`].
    pub fn sync_point(&self) -> Result<SyncPoint> {
        self.check_usable()?;
        Ok(SyncPoint {
            head: self.idx.head(),
            end_bytes: self.idx.log_end(),
        })
    }

    /// The log opened anew, for fdatasync only. A file description of its
    /// own: the kernel reports a writeback error to every description
    /// open when it happened, so the error reaches this handle's sync
    /// whatever other sync (an index flush) ran first.
    pub fn log_for_sync(&self) -> Result<File> {
        std::fs::OpenOptions::new()
            .write(true)
            .open(self.idx.log_path())
            .at(self.idx.log_path())
    }

    /// A sync of the log started at `point` succeeded. Refused if the
    /// writer was poisoned meanwhile (a sync that failed elsewhere may have
    /// cut the log back): then nothing of `point` may be promised durable.
    pub fn synced_through(&mut self, point: SyncPoint) -> Result<()> {
        self.check_usable()?;
        if point.end_bytes > self.synced.1 {
            self.synced = (point.head, point.end_bytes);
        }
        Ok(())
    }

    /// A sync of the log made on a handle from [`Writer::log_for_sync`]
    /// failed with `e`: poison the writer, cut the log back to the last
    /// durable record, and return the error to report.
    pub fn sync_failed(&mut self, e: std::io::Error) -> StoreError {
        // The kernel reports a writeback error once to each open file
        // description: take it on the writer's own as well, or the sync
        // that makes the cut durable would report it and leave the cut
        // undone on disk.
        let _ = self.idx.log().sync_data();
        self.poison_after_failed_sync(e)
    }

    fn poison_after_failed_sync(&mut self, e: std::io::Error) -> StoreError {
        self.poisoned = true;
        self.discard_unsynced(&e);
        StoreError::io(self.idx.log_path(), e)
    }

    /// Where the log ends, in bytes.
    pub fn log_end_bytes(&self) -> u64 {
        self.idx.log_end()
    }

    /// Where the log ended at its last successful sync, in bytes: what is
    /// durable.
    pub fn synced_end_bytes(&self) -> u64 {
        self.synced.1
    }

    /// After a failed fsync: cut the log back to where the last good fsync
    /// left it. What follows was never made durable, and the kernel may
    /// have dropped those pages while keeping the file's size: left in
    /// place they would read back as a damaged record (or, once a later
    /// writer appended and synced after them, as damage in the middle of
    /// the log). Cut, the log on disk is exactly the durable prefix and a
    /// new writer carries on from it.
    fn discard_unsynced(&mut self, why: &std::io::Error) {
        let (head, end) = self.synced;
        if self.idx.log_end() == end {
            return;
        }
        let cut = self
            .idx
            .log()
            .set_len(end)
            .and_then(|()| self.idx.log().sync_all());
        match cut {
            Ok(()) => {
                log::error!(
                    "{}: fsync failed ({why}); cut the log back to record {} (byte {end}), the \
                     last one made durable: records {}..={} were never synced and are discarded",
                    self.idx.log_path().display(),
                    head.seq,
                    head.seq.0 + 1,
                    self.idx.head().seq
                );
                self.idx.rewind_to(head, end);
            }
            Err(e) => log::error!(
                "{}: fsync failed ({why}), and cutting the log back to the last durable record {} \
                 (byte {end}) failed too ({e}): a new writer will find records after it that may \
                 not have reached the disk",
                self.idx.log_path().display(),
                head.seq
            ),
        }
    }

    /// Bytes this writer has written to the index's files (runs written
    /// out and merged, `seqs`, the tree's hashes, manifests): with the
    /// index's size on disk, its write amplification.
    pub fn index_bytes_written(&self) -> u64 {
        self.idx.bytes_written_to_index()
    }

    /// Write the index out (after making the log durable: the index never
    /// promises more than the log holds), then merge runs.
    ///
    /// All or nothing: on an error the manifest, the runs in use and the
    /// in-memory index are as they were. Only a failed fsync of the log
    /// poisons the writer.
    pub fn flush_index(&mut self) -> Result<()> {
        self.check_usable()?;
        let force = self.recovered.is_some();
        if self.idx.head().seq == self.idx.manifest().indexed_through && !force {
            return Ok(());
        }
        self.sync()?;
        self.idx.write_out(force)?;
        self.recovered = None;
        self.next_flush_at = self.opts.flush_threshold;
        // The flush stands; a merge that cannot be written now (no space)
        // is tried again at the next flush.
        let keep_apart = self.batch.as_ref().map(|b| b.first_seq);
        if let Err(e) = self
            .idx
            .compact(keep_apart, self.opts.flush_threshold as u64)
        {
            log::warn!("{e}: could not merge index runs; will try again at the next index flush");
        }
        Ok(())
    }

    /// Flush the index if it can be done; a failure that does not poison the
    /// writer (a full disk) only postpones the flush, a few appends on, so
    /// that a full disk does not make every append rewrite a run. The
    /// records are in the log whatever happens here.
    fn try_flush_index(&mut self) -> Result<()> {
        match self.flush_index() {
            Ok(()) => Ok(()),
            Err(e) if self.poisoned => Err(e),
            Err(e) => {
                let held = self.idx.pending_versions();
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

    /// Make the log durable, flush the index and release the lock.
    ///
    /// Succeeds once every record is synced to the log: an index that cannot
    /// be written (a full disk) is only warned about, since the next writer
    /// rebuilds it from the log.
    pub fn close(mut self) -> Result<()> {
        if self.batch.is_some() {
            log::warn!("closing the store with a batch open: its records are cut");
            self.abort_batch()?;
        }
        if self.poisoned {
            self.closed = true;
            return Err(StoreError::Poisoned);
        }
        // The last records recorded are sealed too.
        self.seal_if_due(true)?;
        self.closed = true;
        self.sync()?;
        self.try_flush_index()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if !self.closed && !self.poisoned {
            if let Err(e) = self.flush_index() {
                log::warn!("could not flush the index on close: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Writer;
    use crate::store::op::{Op, OpFlags};
    use crate::units::TimeNs;

    /// A new store of `size_bytes` with 4 KiB blocks, open for writing.
    fn new_store(size_bytes: u64) -> (tempfile::TempDir, std::path::PathBuf, Writer) {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("s");
        Writer::init(&store, size_bytes, 4096).unwrap();
        let w = Writer::open(&store).unwrap();
        (dir, store, w)
    }

    fn write(w: &mut Writer, offset_bytes: u64, data: &[u8]) {
        w.append_now(Op::Write { offset_bytes, data }, OpFlags::default())
            .unwrap();
    }

    /// A dedup key names a candidate only: content whose key collides with
    /// other stored content (forged here, as no XXH3-128 collision is at
    /// hand) is stored, not referenced to the wrong bytes.
    #[test]
    fn a_colliding_dedup_key_never_references_other_content() {
        let (_dir, store, mut w) = new_store(1 << 20);
        let a = vec![0xa5u8; 4096];
        let b: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
        write(&mut w, 0, &a);
        let dedup = w.idx.pending_dedup_mut();
        let a_loc = *dedup.get(&crate::store::index::run::dedup_key(&a)).unwrap();
        dedup.insert(crate::store::index::run::dedup_key(&b), a_loc);
        write(&mut w, 4096, &b);
        // Identical content is still referenced, not stored again.
        let before = w.idx.log_end();
        write(&mut w, 8192, &a);
        assert!(
            w.idx.log_end() - before < 1024,
            "a's second copy was stored again"
        );
        let mut got = vec![0u8; 3 * 4096];
        w.read_at(0, &mut got).unwrap();
        assert!(got[..4096] == a[..] && got[4096..8192] == b[..] && got[8192..] == a[..]);
        w.close().unwrap();
        let s = crate::store::Store::open(&store).unwrap();
        let mut got = vec![0u8; 4096];
        s.read_at(s.head().seq, 4096, &mut got).unwrap();
        assert!(got == b, "b read back as other content");
        assert!(crate::store::verify::verify(&store)
            .unwrap()
            .problem
            .is_none());
    }

    /// Unique, incompressible blocks: block `i` of stream `seed`.
    fn unique_blocks(seed: u64, n: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n * 4096 / 8)
            .flat_map(|_| crate::testing::xorshift64(&mut x).to_le_bytes())
            .collect()
    }

    /// Dedup runs keep every key of a short write and only the anchors of
    /// a long one; a later write that repeats any stretch of the long one
    /// holding an anchor still stores none of it again, whatever its
    /// alignment, because the blocks beside an anchor are found through
    /// the record that stored it.
    #[test]
    fn a_long_write_keeps_its_anchors_and_is_found_whole_through_them() {
        use crate::store::index::run::{dedup_key, is_anchor, SPARSE_MIN_BLOCKS};
        let (_dir, store, mut w) = new_store(4 << 20);
        let long = unique_blocks(1, 256);
        let short = unique_blocks(2, SPARSE_MIN_BLOCKS - 1);
        write(&mut w, 0, &long);
        write(&mut w, 2 << 20, &short);
        w.flush_index().unwrap();
        let kept = |w: &Writer, data: &[u8]| -> Vec<bool> {
            data.chunks(4096)
                .map(|b| w.idx.find_dedup(&dedup_key(b)).unwrap().is_some())
                .collect()
        };
        let long_kept = kept(&w, &long);
        let anchors: Vec<bool> = long
            .chunks(4096)
            .map(|b| is_anchor(&dedup_key(b)))
            .collect();
        assert_eq!(
            long_kept, anchors,
            "the runs keep exactly the long write's anchors"
        );
        let n_anchors = anchors.iter().filter(|&&a| a).count();
        assert!((4..=40).contains(&n_anchors), "{n_anchors} anchors of 256");
        assert!(
            kept(&w, &short).iter().all(|&k| k),
            "a short write keeps every key"
        );

        // Stretches of the long write, at other offsets and alignments.
        let first_anchor = anchors.iter().position(|&a| a).unwrap();
        let start = first_anchor.saturating_sub(5);
        for (from, to, at) in [(0, 256, 1 << 20), (start, start + 20, (1 << 20) + 3 * 4096)] {
            let before = w.idx.log_end();
            write(&mut w, at, &long[from * 4096..to * 4096]);
            let grew = w.idx.log_end() - before;
            // A record's framing, and a 14-byte reference per block.
            assert!(
                grew <= 128 + 14 * (to - from) as u64,
                "blocks {from}..{to} of the long write stored again: the log grew {grew} bytes"
            );
            let mut got = vec![0u8; (to - from) * 4096];
            w.read_at(at, &mut got).unwrap();
            assert!(
                got == long[from * 4096..to * 4096],
                "blocks {from}..{to} read back wrong"
            );
        }
        // A long copy recorded as two writes: a stretch across the boundary
        // whose second part holds no anchor is found through the record
        // after the one holding the anchor.
        let two = unique_blocks(3, 256);
        write(&mut w, 0, &two[..128 * 4096]);
        write(&mut w, 128 * 4096, &two[128 * 4096..]);
        w.flush_index().unwrap();
        let is_a = |k: usize| is_anchor(&dedup_key(&two[k * 4096..(k + 1) * 4096]));
        let (from, to) = (
            (0..128).rev().find(|&k| is_a(k)).unwrap(),
            (128..256).find(|&k| is_a(k)).unwrap(),
        );
        let before = w.idx.log_end();
        write(&mut w, 2 << 20, &two[from * 4096..to * 4096]);
        let grew = w.idx.log_end() - before;
        assert!(
            grew <= 128 + 14 * (to - from) as u64,
            "blocks {from}..{to} across two records stored again: the log grew {grew} bytes"
        );
        // A stretch without an anchor is beyond what the runs know: stored.
        let gap = anchors
            .windows(3)
            .position(|win| win.iter().all(|&a| !a))
            .unwrap();
        let before = w.idx.log_end();
        write(&mut w, 3 << 20, &long[gap * 4096..(gap + 3) * 4096]);
        assert!(w.idx.log_end() - before > 3 * 4096);
        w.close().unwrap();
        assert!(crate::store::verify::verify(&store)
            .unwrap()
            .problem
            .is_none());
    }

    /// A record larger than 16 MiB is not read to align a write with it:
    /// its anchors are still found, the blocks between them are stored.
    #[test]
    fn a_record_over_16_mib_is_not_read_for_alignment() {
        use crate::store::index::run::{dedup_key, is_anchor};
        let (_dir, _store, mut w) = new_store(32 << 20);
        let big = unique_blocks(4, 17 << 8);
        write(&mut w, 0, &big);
        w.flush_index().unwrap();
        let stretch = &big[..64 * 4096];
        let anchors = stretch
            .chunks(4096)
            .filter(|b| is_anchor(&dedup_key(b)))
            .count();
        assert!(anchors > 0, "no anchor in the first 64 blocks");
        let before = w.idx.log_end();
        write(&mut w, 20 << 20, stretch);
        let stored = (w.idx.log_end() - before) / 4096;
        assert_eq!(stored, 64 - anchors as u64, "blocks stored again");
    }

    #[test]
    fn append_now_never_repeats_a_time() {
        let (_dir, store, mut w) = new_store(1 << 20);
        let mut last = None;
        for i in 0..2000u64 {
            let a = w
                .append_now(
                    Op::Zero {
                        offset_bytes: (i % 256) * 4096,
                        length_bytes: 4096,
                    },
                    OpFlags::default(),
                )
                .unwrap();
            assert!(
                last < Some(a.time_ns),
                "record {i}: {:?} after {last:?}",
                a.time_ns
            );
            last = Some(a.time_ns);
        }
        // A batch producer's time far ahead, then the live clock: held
        // one nanosecond after it, and flagged.
        let ahead = TimeNs(i64::MAX / 2);
        w.append(ahead, Op::Flush, OpFlags::default()).unwrap();
        let a = w.append_now(Op::Flush, OpFlags::default()).unwrap();
        assert_eq!(a.time_ns, TimeNs(ahead.0 + 1));
        w.close().unwrap();
        let s = crate::store::Store::open(&store).unwrap();
        let r = s.record(a.seq).unwrap();
        assert!(r.flags.contains(OpFlags::CLOCK_HELD));
        assert!(!s
            .record(crate::units::Seq(1))
            .unwrap()
            .flags
            .contains(OpFlags::CLOCK_HELD));
    }
}
