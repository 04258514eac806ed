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

use crate::store::batch::{self, BatchState, OpenBatch};
use crate::store::error::{InitError, IoContext, Result, StoreError};
use crate::store::files;
use crate::store::format::{self, Encoding, Loc, RecordKind, StoreHeader};
use crate::store::index::run::{self, BlockVersion, Run, StoredContent};
use crate::store::index::{self, Head, Index, TailStop, SEQ_ENTRY_LEN};
use crate::store::layout;
use crate::store::op::{Op, OpFlags};
use crate::units::{Geometry, Seq, TimeNs};
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
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
    dedup_runs: Vec<Run<StoredContent>>,
    dedup_mem: HashMap<[u8; 32], Loc>,
    /// Records whose `seqs` entry is written.
    seqs_written: u64,
    recovered: Option<TailStop>,
    buf: Vec<u8>,
    zbuf: Vec<u8>,
    /// A stored block decoded to compare with new content, and its bytes.
    cmp_block: Vec<u8>,
    cmp_scratch: Vec<u8>,
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
}

/// Records of an unfinished batch that a writer cut off the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CutBatch {
    /// The batch's first record; the records from here on were cut.
    pub first_seq: Seq,
    /// Bytes cut from the end of the log.
    pub bytes: u64,
}

fn is_zero(b: &[u8]) -> bool {
    let chunks = b.chunks_exact(16);
    let rest = chunks.remainder();
    rest.iter().all(|&x| x == 0)
        && chunks
            .into_iter()
            .all(|c| u128::from_ne_bytes(c.try_into().unwrap()) == 0)
}

impl Writer {
    /// Create an empty store in `dir` (which must not exist or be empty).
    pub fn init(dir: &Path, size_bytes: u64, block_size: u32) -> Result<()> {
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
        let mut recovered = None;
        if let Some(stop) = idx.stop.clone() {
            if !stop.at_end {
                return Err(StoreError::corrupted(
                    &idx.log_path,
                    format!(
                        "record {} at byte {}: {}, and {} more bytes follow; refusing to cut \
                         the log (that would discard them)",
                        stop.seq, stop.offset_bytes, stop.reason, stop.bytes_left
                    ),
                ));
            }
            log::warn!(
                "{}: cut a torn tail of {} bytes at byte {} (record {} would have been next: {})",
                idx.log_path.display(),
                stop.bytes_left,
                stop.offset_bytes,
                stop.seq,
                stop.reason
            );
            idx.log.set_len(stop.offset_bytes).at(&idx.log_path)?;
            idx.log.sync_all().at(&idx.log_path)?;
            idx.stop = None;
            recovered = Some(stop);
        }
        let it = idx.manifest.indexed_through.0;
        seqs_file(&idx)?
            .set_len(it * SEQ_ENTRY_LEN)
            .at(&idx.seqs_path)?;
        let idir = dir.join(layout::INDEX_DIR);
        let dedup_runs = idx
            .manifest
            .runs
            .iter()
            .map(|(a, z)| Run::open(&idir.join(index::run_file_names(*a, *z).1)))
            .collect::<Result<Vec<_>>>()?;
        remove_orphan_runs(&idir, &idx.manifest.runs)?;
        // What the log holds now may be pages a killed writer left in the
        // cache: make it durable, so that `synced` is true from the start.
        idx.log.sync_data().at(&idx.log_path)?;
        let synced = (idx.head, idx.log_end);
        let mut w = Writer {
            synced,
            idx,
            _lock: lock,
            dedup_runs,
            dedup_mem: HashMap::new(),
            seqs_written: it,
            recovered,
            buf: Vec::new(),
            zbuf: Vec::new(),
            cmp_block: Vec::new(),
            cmp_scratch: Vec::new(),
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
        };
        w.rebuild_dedup_mem()?;
        if w.idx.mem.len() >= w.opts.flush_threshold || w.recovered.is_some() {
            // On a full disk the store still opens: records are refused
            // one by one with ENOSPC, reads work.
            w.try_flush_index()?;
        }
        Ok(w)
    }

    /// Content stored by records after the manifest's point, hashed again.
    fn rebuild_dedup_mem(&mut self) -> Result<()> {
        let bs = self.idx.header.block_size as usize;
        let mut block = vec![0u8; bs];
        let base = self.idx.manifest.log_end;
        let locs: Vec<Loc> = self
            .idx
            .mem
            .values()
            .filter(|l| l.encoding != Encoding::Zero && l.offset_bytes >= base)
            .copied()
            .collect();
        for loc in locs {
            self.idx.read_loc(loc, &mut block, &mut self.scratch)?;
            self.dedup_mem.insert(run::dedup_key(&block), loc);
        }
        Ok(())
    }

    pub fn geometry(&self) -> Geometry {
        Geometry {
            size_bytes: self.idx.header.size_bytes,
            block_size: self.idx.header.block_size,
        }
    }

    pub fn head(&self) -> Head {
        self.idx.head
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
    /// become part of the history together, or not at all (see
    /// [`batch`]). Readers see none of them until the commit; if the
    /// process stops first, the next writer cuts them.
    ///
    /// Writes the whole index out first, so that the batch's index entries
    /// can be dropped again.
    pub fn begin_batch(&mut self) -> Result<()> {
        self.check_usable()?;
        assert!(self.batch.is_none(), "begin_batch inside a batch");
        self.flush_index()?;
        let open = OpenBatch {
            first_seq: Seq(self.idx.head.seq.0 + 1),
            log_offset: self.idx.log_end,
            manifest: self.idx.manifest.clone(),
        };
        batch::write(
            &self.idx.dir,
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
            &self.idx.dir,
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
        let dir = self.idx.dir.clone();
        let cut = rollback_batch(&dir, &open, self.batch_counter)?;
        // The lock belongs to the open file description: a duplicate
        // keeps it held while this writer is replaced by a fresh one.
        let lock = self._lock.try_clone().at(&dir.join(layout::LOCK_FILE))?;
        let fresh = Writer::open_locked(&dir, lock, self.opts)?;
        drop(std::mem::replace(self, fresh));
        Ok(cut)
    }
    /// The latest state, `buf.len()` bytes from `offset_bytes`.
    pub fn read_at(&self, offset_bytes: u64, buf: &mut [u8]) -> Result<()> {
        self.idx.read_at(self.idx.head.seq, offset_bytes, buf)
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
        match self.idx.head.time_ns {
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
        if self.idx.mem.len() >= self.next_flush_at {
            // Before the record, so that an error (a poisoning fsync
            // failure) still means nothing was recorded.
            self.try_flush_index()?;
        }
        let size = self.idx.header.size_bytes;
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
        if let Some(last) = self.idx.head.time_ns {
            if time < last {
                log::warn!(
                    "clock stepped back by {} ns; holding the time at the last record's",
                    last.0 - time.0
                );
                time_ns = last;
                flags |= OpFlags::CLOCK_HELD;
            }
        }
        let seq = Seq(self.idx.head.seq.0 + 1);
        let rec_off = self.idx.log_end;
        let mut buf = std::mem::take(&mut self.buf);
        format::begin_record(&mut buf);
        let mut new_locs: Vec<(u64, Loc)> = Vec::new();
        let mut pending: HashMap<[u8; 32], Loc> = HashMap::new();
        let built = self.build_body(&mut buf, rec_off, op, &mut new_locs, &mut pending);
        if let Err(e) = built {
            self.buf = buf;
            return Err(e);
        }
        let mut h = op.header(seq, time_ns, flags);
        h.chain = format::chain_next(&self.idx.head.chain, &h);
        format::finish_record(&mut buf, &mut h);
        if let Err(e) = self.idx.log.write_all_at(&buf, rec_off) {
            // Cut back whatever part of the record reached the file (a write
            // that ran out of space part-way); if even that fails the log's
            // end is unknown and the writer must stop.
            if let Err(cut) = self.idx.log.set_len(rec_off) {
                log::error!(
                    "{}: could not cut a partly written record back to byte {rec_off}: {cut}; \
                     refusing further writes",
                    self.idx.log_path.display()
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
            return Err(StoreError::io(&self.idx.log_path, e));
        }
        for (b, loc) in new_locs {
            self.idx.mem.insert((b, seq.0), loc);
        }
        self.dedup_mem.extend(pending);
        self.idx.tail.push(index::TailRecord {
            time_ns,
            offset_bytes: rec_off,
        });
        self.idx.head = Head {
            seq,
            time_ns: Some(time_ns),
            chain: h.chain,
        };
        self.idx.log_end = rec_off + buf.len() as u64;
        if kind != RecordKind::Mark {
            self.idx.bytes_written += length_bytes;
        }
        self.buf = buf;
        Ok(Appended { seq, time_ns })
    }

    fn build_body(
        &mut self,
        buf: &mut Vec<u8>,
        rec_off: u64,
        op: Op<'_>,
        new_locs: &mut Vec<(u64, Loc)>,
        pending: &mut HashMap<[u8; 32], Loc>,
    ) -> Result<()> {
        let bs = u64::from(self.idx.header.block_size);
        let head = self.idx.head.seq;
        let mut block = std::mem::take(&mut self.block);
        block.resize(bs as usize, 0);
        let result = (|| -> Result<()> {
            match op {
                Op::Write { offset_bytes, data } if !data.is_empty() => {
                    let end = offset_bytes + data.len() as u64;
                    for b in offset_bytes / bs..=(end - 1) / bs {
                        let (lo, hi) = ((b * bs).max(offset_bytes), ((b + 1) * bs).min(end));
                        let src = &data[(lo - offset_bytes) as usize..(hi - offset_bytes) as usize];
                        let content: &[u8] = if hi - lo == bs {
                            src
                        } else {
                            let loc = self.idx.lookup(b, head)?;
                            self.idx.read_loc(loc, &mut block, &mut self.scratch)?;
                            block[(lo - b * bs) as usize..(hi - b * bs) as usize]
                                .copy_from_slice(src);
                            &block
                        };
                        let loc = self.encode_block(buf, rec_off, content, pending)?;
                        new_locs.push((b, loc));
                    }
                }
                Op::Zero {
                    offset_bytes,
                    length_bytes,
                }
                | Op::Trim {
                    offset_bytes,
                    length_bytes,
                } if length_bytes > 0 => {
                    let end = offset_bytes + length_bytes;
                    let partial = format::partial_blocks(
                        offset_bytes,
                        length_bytes,
                        self.idx.header.block_size,
                    );
                    for b in offset_bytes / bs..=(end - 1) / bs {
                        if !partial.contains(&b) {
                            new_locs.push((b, Loc::ZERO));
                            continue;
                        }
                        let (lo, hi) = ((b * bs).max(offset_bytes), ((b + 1) * bs).min(end));
                        let loc = self.idx.lookup(b, head)?;
                        self.idx.read_loc(loc, &mut block, &mut self.scratch)?;
                        block[(lo - b * bs) as usize..(hi - b * bs) as usize].fill(0);
                        let loc = self.encode_block(buf, rec_off, &block, pending)?;
                        new_locs.push((b, loc));
                    }
                }
                Op::Mark { name } => buf.extend_from_slice(name.as_bytes()),
                _ => {}
            }
            Ok(())
        })();
        self.block = block;
        result
    }

    /// Append one block entry for `content`: nothing for zeros, a reference
    /// for content already stored, else the bytes (lz4 where it saves >= 1/8).
    fn encode_block(
        &mut self,
        buf: &mut Vec<u8>,
        rec_off: u64,
        content: &[u8],
        pending: &mut HashMap<[u8; 32], Loc>,
    ) -> Result<Loc> {
        if is_zero(content) {
            format::push_stored(buf, Encoding::Zero, &[]);
            return Ok(Loc::ZERO);
        }
        let hash = run::dedup_key(content);
        if let Some(loc) = self.find_content(&hash, pending)? {
            // The key only finds a candidate: the bytes decide.
            if self.stored_equals(loc, buf, rec_off, content)? {
                format::push_ref(buf, loc);
                return Ok(loc);
            }
        }
        let bs = content.len();
        let mut compressed = None;
        if self.lz4.should_try() {
            self.zbuf
                .resize(lz4_flex::block::get_maximum_output_size(bs), 0);
            compressed = match lz4_flex::block::compress_into(content, &mut self.zbuf) {
                Ok(n) if n <= bs - bs / 8 => Some(n),
                _ => None,
            };
            self.lz4.tried(compressed.is_some());
        }
        let (encoding, stored): (Encoding, &[u8]) = match compressed {
            Some(n) => (Encoding::Lz4, &self.zbuf[..n]),
            None => (Encoding::Raw, content),
        };
        let at = format::push_stored(buf, encoding, stored);
        let loc = Loc {
            offset_bytes: rec_off + at as u64,
            stored_len: stored.len() as u32,
            encoding,
        };
        pending.insert(hash, loc);
        Ok(loc)
    }

    /// Is the content stored at `loc` (in the log, or earlier in the record
    /// being built in `buf`, which starts at log offset `rec_off`) exactly
    /// `content`?
    fn stored_equals(
        &mut self,
        loc: Loc,
        buf: &[u8],
        rec_off: u64,
        content: &[u8],
    ) -> Result<bool> {
        let mut block = std::mem::take(&mut self.cmp_block);
        block.resize(content.len(), 0);
        let read = if loc.offset_bytes >= rec_off {
            let at = (loc.offset_bytes - rec_off) as usize;
            let stored = &buf[at..at + loc.stored_len as usize];
            format::decode_block(loc.encoding, stored, &mut block).map_err(|e| {
                StoreError::corrupted(&self.idx.log_path, format!("block being recorded: {e}"))
            })
        } else {
            self.idx.read_loc(loc, &mut block, &mut self.cmp_scratch)
        };
        let equal = read.map(|()| block == content);
        self.cmp_block = block;
        equal
    }

    fn find_content(
        &self,
        hash: &[u8; 32],
        pending: &HashMap<[u8; 32], Loc>,
    ) -> Result<Option<Loc>> {
        if let Some(l) = pending.get(hash).or_else(|| self.dedup_mem.get(hash)) {
            return Ok(Some(*l));
        }
        for r in self.dedup_runs.iter().rev() {
            if let Some(e) = r.find_eq(hash)? {
                return Ok(Some(e.loc));
            }
        }
        Ok(None)
    }

    /// Make every record appended so far durable (fdatasync of the log).
    pub fn sync(&mut self) -> Result<()> {
        self.check_usable()?;
        if let Err(e) = self.idx.log.sync_data() {
            self.poisoned = true;
            self.discard_unsynced(&e);
            return Err(StoreError::io(&self.idx.log_path, e));
        }
        self.synced = (self.idx.head, self.idx.log_end);
        Ok(())
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
        if self.idx.log_end == end {
            return;
        }
        let cut = self
            .idx
            .log
            .set_len(end)
            .and_then(|()| self.idx.log.sync_all());
        match cut {
            Ok(()) => {
                log::error!(
                    "{}: fsync failed ({why}); cut the log back to record {} (byte {end}), the \
                     last one made durable: records {}..={} were never synced and are discarded",
                    self.idx.log_path.display(),
                    head.seq,
                    head.seq.0 + 1,
                    self.idx.head.seq
                );
                self.idx.head = head;
                self.idx.log_end = end;
            }
            Err(e) => log::error!(
                "{}: fsync failed ({why}), and cutting the log back to the last durable record {} \
                 (byte {end}) failed too ({e}): a new writer will find records after it that may \
                 not have reached the disk",
                self.idx.log_path.display(),
                head.seq
            ),
        }
    }

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
    fn try_flush_index(&mut self) -> Result<()> {
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
    fn write_new_runs(
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

    fn write_seqs(&mut self) -> Result<()> {
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
    fn compact(&mut self) -> Result<()> {
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
        self.closed = true;
        if self.poisoned {
            return Err(StoreError::Poisoned);
        }
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

/// Remove the files of a run that no manifest names (a failed flush or
/// merge), and the temporary file `write_run` may have left.
fn remove_run_files(run: &Path, dedup: &Path) {
    files::remove_if_present(&run.with_extension("tmp"));
    files::remove_if_present(run);
    files::remove_if_present(dedup);
}

/// The writer always has `index/seqs` (it creates it when missing).
fn seqs_file(idx: &Index) -> Result<&File> {
    idx.seqs
        .as_ref()
        .ok_or_else(|| StoreError::corrupted(&idx.seqs_path, "missing"))
}

fn remove_orphan_runs(idir: &Path, runs: &[(Seq, Seq)]) -> Result<()> {
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

/// Undo an unfinished batch (the caller holds the writer lock): put back
/// the index manifest from when it began, cut the log where it began, and
/// mark the batch ended. Each step can be repeated, so a crash part-way
/// leaves the batch open for the next writer to finish the job.
fn rollback_batch(dir: &Path, open: &OpenBatch, counter: u64) -> Result<CutBatch> {
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
            && format::record_identity(&head).map(|(seq, _)| seq) == Some(open.first_seq);
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

/// Whether a writer holds the store's lock now. A reader asks this to tell
/// a record being written from a torn one: it takes a shared lock for an
/// instant, which a writer starting at that moment waits out.
pub fn writer_is_live(dir: &Path) -> bool {
    let Ok(f) = File::open(dir.join(layout::LOCK_FILE)) else {
        return false;
    };
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
    if rc != 0 {
        return std::io::Error::last_os_error().raw_os_error() == Some(libc::EWOULDBLOCK);
    }
    // SAFETY: as above; releases the shared lock just taken.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_UN) };
    false
}

/// Take the writer lock (flock, non-blocking) and note who holds it.
fn take_lock(dir: &Path) -> Result<File> {
    let path = dir.join(layout::LOCK_FILE);
    let mut f = files::open_rw_private(&path)?;
    // A reader asking whether a writer is live holds a shared lock for an
    // instant (see `writer_is_live`): try a few times before concluding
    // that another writer holds it.
    let mut attempts = 0;
    let rc = loop {
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        let busy =
            rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EWOULDBLOCK);
        if !busy || attempts == 20 {
            break rc;
        }
        attempts += 1;
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let holder = if holder.trim().is_empty() {
                "holder unknown".to_string()
            } else {
                holder.trim().to_string()
            };
            return Err(StoreError::Locked {
                path: dir.to_path_buf(),
                holder,
            });
        }
        return Err(StoreError::io(&path, err));
    }
    // Who holds the lock is a courtesy for the next writer's message; a full
    // disk must not keep the store from opening (reads and clear ENOSPC
    // errors still work), so failing to note it only costs that courtesy.
    let noted = f.set_len(0).and_then(|()| {
        write!(
            f,
            "pid {} since {}",
            std::process::id(),
            crate::time::format_rfc3339(crate::time::now())
        )
    });
    if let Err(e) = noted {
        log::warn!("{}: could not note the lock's holder: {e}", path.display());
    }
    Ok(f)
}

/// Early abort for incompressible data (encrypted volumes, media, already
/// compressed files): after a block that lz4 cannot shrink by 1/8, the next
/// `skip` blocks are stored raw without trying, `skip` doubling up to 32
/// while attempts keep failing and dropping to 0 at the first success. On
/// random data this saves nearly every lz4 attempt (a tenth of the NBD
/// write path's time); on mixed data it costs at most the saving on the
/// few compressible blocks that follow a run of incompressible ones. The
/// stored bytes are the same either way: raw is always a valid encoding.
#[derive(Debug, Default)]
struct Lz4Backoff {
    remaining: u32,
    next_skip: u32,
    tried: u64,
    skipped: u64,
}

impl Lz4Backoff {
    const MAX_SKIP: u32 = 32;

    fn should_try(&mut self) -> bool {
        if self.remaining > 0 {
            self.remaining -= 1;
            self.skipped += 1;
            return false;
        }
        self.tried += 1;
        true
    }

    fn tried(&mut self, saved: bool) {
        if saved {
            self.next_skip = 0;
        } else {
            self.next_skip = (self.next_skip * 2).clamp(1, Self::MAX_SKIP);
            self.remaining = self.next_skip;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Lz4Backoff, Writer};
    use crate::store::op::{Op, OpFlags};
    use crate::units::TimeNs;

    /// A dedup key names a candidate only: content whose key collides with
    /// other stored content (forged here, as no XXH3-128 collision is at
    /// hand) is stored, not referenced to the wrong bytes.
    #[test]
    fn a_colliding_dedup_key_never_references_other_content() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("s");
        Writer::init(&store, 1 << 20, 4096).unwrap();
        let mut w = Writer::open(&store).unwrap();
        let a = vec![0xa5u8; 4096];
        let b: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
        let write = |w: &mut Writer, offset_bytes: u64, data: &[u8]| {
            w.append_now(Op::Write { offset_bytes, data }, OpFlags::default())
                .unwrap()
        };
        write(&mut w, 0, &a);
        let a_loc = *w.dedup_mem.get(&super::run::dedup_key(&a)).unwrap();
        w.dedup_mem.insert(super::run::dedup_key(&b), a_loc);
        write(&mut w, 4096, &b);
        // Identical content is still referenced, not stored again.
        let before = w.idx.log_end;
        write(&mut w, 8192, &a);
        assert!(
            w.idx.log_end - before < 1024,
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

    #[test]
    fn append_now_never_repeats_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("s");
        Writer::init(&store, 1 << 20, 4096).unwrap();
        let mut w = Writer::open(&store).unwrap();
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

    fn pattern(b: &mut Lz4Backoff, compressible: impl Fn(usize) -> bool, n: usize) -> Vec<bool> {
        (0..n)
            .map(|i| {
                let t = b.should_try();
                if t {
                    b.tried(compressible(i));
                }
                t
            })
            .collect()
    }

    #[test]
    fn lz4_backoff_skips_incompressible_runs_and_recovers() {
        let mut b = Lz4Backoff::default();
        // All incompressible: tries at 0, 2, 5, 10, 19, 36, then every 33rd.
        let tried = pattern(&mut b, |_| false, 1000);
        let at: Vec<usize> = (0..1000).filter(|&i| tried[i]).take(7).collect();
        assert_eq!(at, [0, 2, 5, 10, 19, 36, 69]);
        assert_eq!(b.tried + b.skipped, 1000);
        assert!(b.tried <= 36, "tried {} of 1000", b.tried);
        // Compressible again: within one skip it tries, then tries every block.
        let tried = pattern(&mut b, |_| true, 100);
        let first = tried.iter().position(|&t| t).unwrap();
        assert!(first <= 32, "first attempt after {first} blocks");
        assert!(tried[first..].iter().all(|&t| t));
    }
}
