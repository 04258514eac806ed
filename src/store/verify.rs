//! `verify`: recompute every checksum, the hash chain and every content hash
//! from the log, then rebuild the index's view from the log and compare it
//! with every file under `index/`.
//!
//! What is checked, file by file:
//!
//! - `diskhist.store`: its checksum, magic, version and geometry (reading
//!   it fails otherwise: [`verify`] returns the error).
//! - `log`: each record's framing and crc32c, its seq (deleted, inserted
//!   or reordered records), time order, chain hash, block entries, and the
//!   content hash recomputed from the stored blocks, references followed.
//!   The first bad record is the [`Problem`]; nothing after it is trusted.
//! - `index/MANIFEST`: its checksum; that its runs cover records
//!   `1..=indexed_through` without gap or overlap; that its head (seq,
//!   time, chain, log offset, bytes written) is what the log says.
//! - `index/seqs`: every entry the manifest promises equals its record's
//!   log offset.
//! - `index/*.run`: the footer, page table and bloom checksums, every
//!   page's checksum, the footer's record range against the manifest, and
//!   every entry against the block versions recomputed from the log.
//! - `index/*.dedup`: the same checksums, and that every entry names a
//!   place where its records stored content of exactly that hash.
//! - `index/tree/L<k>`: every stored Merkle subtree hash the manifest
//!   promises, against the one recomputed from the log's records.
//! - Anchors given by the caller (e.g. the `sessions` file's head_seq and
//!   head_chain): the chain after that record must be that chain.
//! - Tree anchors (checkpoints, see [`TreeAnchor`]): the Merkle tree of the
//!   first `size` records, recomputed from the log alone, must have that
//!   root: a history rewritten with every checksum and chain hash
//!   recomputed still fails here once a checkpoint has left the machine.
//!
//! Index problems name the first record they concern where there is one.

use crate::store::batch;
use crate::store::error::{IoContext, Result, StoreError};
use crate::store::format::{self, Encoding, Loc, RecordKind};
use crate::store::format::{read_record_at, record_block_locs};
use crate::store::index::run::{BlockVersion, Run, RunEntry, StoredContent};
use crate::store::index::{self, Manifest, SEQ_ENTRY_LEN};
use crate::store::layout;
use crate::store::writer;
use crate::units::{Hash32, Seq, TimeNs};
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub records: u64,
    pub log_bytes: u64,
    pub chain: Hash32,
    pub last_time: Option<TimeNs>,
    /// The first damage found in the log, if any.
    pub problem: Option<Problem>,
    /// Damage found in the derived index (rebuildable), if any.
    pub index_problems: Vec<String>,
    /// Anchors whose chain does not match the log's.
    pub anchor_problems: Vec<String>,
    /// Tree anchors (checkpoints) whose root the log's tree does not have.
    pub checkpoint_problems: Vec<String>,
    /// The Merkle tree root over the records verified (see
    /// [`crate::merkle`]).
    pub tree_root: Hash32,
    /// What is not damage but worth saying: a writer recording while
    /// verify ran, an unfinished import the next writer will cut.
    pub notes: Vec<String>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problem.is_none()
            && self.index_problems.is_empty()
            && self.anchor_problems.is_empty()
            && self.checkpoint_problems.is_empty()
    }
}

/// The first bad record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub seq: Seq,
    pub offset_bytes: u64,
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "record {} at log byte {}: {}",
            self.seq, self.offset_bytes, self.what
        )
    }
}

/// A claim, kept outside the log, that the chain after record `seq` was
/// `chain` (`seq` 0: the empty history). `what` names the claim's source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub seq: Seq,
    pub chain: Hash32,
    pub what: String,
}

/// A claim, kept outside the store (a signed checkpoint), that the Merkle
/// tree of the first `size` records has root `root`. `what` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeAnchor {
    pub size: Seq,
    pub root: Hash32,
    pub what: String,
}

/// Verify the store at `dir`. I/O errors and an unreadable header are
/// errors; damage is reported.
pub fn verify(dir: &Path) -> Result<VerifyReport> {
    verify_anchored(dir, &[])
}

/// What the log says about one record, kept to check the index with.
#[derive(Debug, Clone, Copy)]
struct Seen {
    offset_bytes: u64,
}

/// Content stored in the log (not a reference): where, and what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StoredAt {
    encoding: Encoding,
    stored_len: u32,
    hash: [u8; 32],
    seq: Seq,
}

/// The chain and totals as of some record, to check the manifest with.
#[derive(Debug, Clone, Copy, Default)]
struct HeadAt {
    chain: Hash32,
    time_ns: TimeNs,
    log_end: u64,
    bytes_written: u64,
}

/// [`verify`], also checking `anchors` against the chain.
pub fn verify_anchored(dir: &Path, anchors: &[Anchor]) -> Result<VerifyReport> {
    verify_with_progress(dir, anchors, &mut |_, _| {})
}

/// [`verify_anchored`], calling `progress(log bytes checked, log bytes)`
/// after each record (for a progress bar).
///
/// Beside a live writer, verify checks the records and the index as they
/// were when it started: the manifest and its runs are opened first (the
/// log only grows past what they describe), a record still being written
/// at the end of the log is not damage, and an unfinished import is not
/// part of the history. If a writer cut the log while verify ran (an
/// import undone), verify starts again.
pub fn verify_with_progress(
    dir: &Path,
    anchors: &[Anchor],
    progress: &mut dyn FnMut(u64, u64),
) -> Result<VerifyReport> {
    verify_sealed(dir, anchors, &[], progress)
}

/// [`verify_with_progress`], also checking the tree anchors `sealed`
/// (checkpoints) against the Merkle tree recomputed from the log.
pub fn verify_sealed(
    dir: &Path,
    anchors: &[Anchor],
    sealed: &[TreeAnchor],
    progress: &mut dyn FnMut(u64, u64),
) -> Result<VerifyReport> {
    let mut attempt = 0;
    loop {
        let batch_before = batch::read_raw(dir)?;
        let result = verify_once(dir, anchors, sealed, progress);
        let bad = result.as_ref().map_or(true, |r| !r.ok());
        let log_path = dir.join(layout::LOG_FILE);
        let cut = match (&result, std::fs::metadata(&log_path)) {
            (Ok(r), Ok(m)) => m.len() < r.log_bytes,
            _ => true,
        };
        let changed = cut || batch::read_raw(dir)? != batch_before;
        if bad && changed && attempt < 3 && writer::writer_is_live(dir) {
            attempt += 1;
            log::info!("the store changed under verify (an import undone?); verifying again");
            continue;
        }
        return result;
    }
}

/// The index as it was when verify began: the manifest and the runs it
/// names, opened together (a compaction that removes a run between the
/// two makes this read the manifest again).
struct IndexSnapshot {
    manifest: Option<Manifest>,
    runs: HashMap<String, Result<Run<BlockVersion>>>,
    dedups: HashMap<String, Result<Run<StoredContent>>>,
}

fn snapshot_index(dir: &Path, report: &mut VerifyReport) -> Result<IndexSnapshot> {
    let path = dir.join(layout::INDEX_DIR).join(layout::MANIFEST_FILE);
    if let Ok(raw) = std::fs::read(&path) {
        if let Some(v) = index::manifest_version(&raw).filter(|&v| v != index::INDEX_FORMAT) {
            report.index_problems.push(format!(
                "index/MANIFEST: index format {}, not this diskhist's {}; readers ignore it and \
                 read the log, the next writer rebuilds it. If no older diskhist wrote it, it \
                 was edited",
                v as char,
                index::INDEX_FORMAT as char
            ));
        }
    }
    let idir = dir.join(layout::INDEX_DIR);
    let mut attempts = 0;
    loop {
        let manifest = match index::read_manifest(dir) {
            Ok(m) => m,
            Err(StoreError::Corrupted { path, what }) => {
                report
                    .index_problems
                    .push(format!("{}: {what}", rel(dir, &path)));
                return Ok(IndexSnapshot {
                    manifest: None,
                    runs: HashMap::new(),
                    dedups: HashMap::new(),
                });
            }
            Err(e) => return Err(e),
        };
        let mut snap = IndexSnapshot {
            manifest: None,
            runs: HashMap::new(),
            dedups: HashMap::new(),
        };
        let mut missing = false;
        for &(a, z) in &manifest.runs {
            let (rn, dn) = index::run_file_names(a, z);
            let r = Run::<BlockVersion>::open(&idir.join(&rn));
            let d = Run::<StoredContent>::open(&idir.join(&dn));
            missing |= is_missing(r.as_ref().err()) || is_missing(d.as_ref().err());
            snap.runs.insert(rn, r);
            snap.dedups.insert(dn, d);
        }
        if missing && attempts < 20 && index::read_manifest(dir).ok().as_ref() != Some(&manifest) {
            attempts += 1;
            std::thread::sleep(std::time::Duration::from_millis(5));
            continue;
        }
        snap.manifest = Some(manifest);
        return Ok(snap);
    }
}

fn is_missing(e: Option<&StoreError>) -> bool {
    matches!(e, Some(StoreError::Io { error, .. }) if error.kind() == std::io::ErrorKind::NotFound)
}

fn verify_once(
    dir: &Path,
    anchors: &[Anchor],
    sealed: &[TreeAnchor],
    progress: &mut dyn FnMut(u64, u64),
) -> Result<VerifyReport> {
    let mut report = VerifyReport {
        records: 0,
        log_bytes: 0,
        chain: Hash32::default(),
        last_time: None,
        problem: None,
        index_problems: Vec::new(),
        anchor_problems: Vec::new(),
        checkpoint_problems: Vec::new(),
        tree_root: crate::merkle::empty_root(),
        notes: Vec::new(),
    };
    // The batch state and the index first: the log only grows past them.
    let open_batch = match batch::read(dir) {
        Ok(b) => b.open,
        Err(StoreError::Corrupted { path, what }) => {
            report
                .index_problems
                .push(format!("{}: {what}", rel(dir, &path)));
            None
        }
        Err(e) => return Err(e),
    };
    let mut snapshot = snapshot_index(dir, &mut report)?;
    let manifest = snapshot.manifest.take();
    let mut c = LogCheck::open(dir, report, open_batch, manifest.as_ref())?;
    let mut anchors_left: Vec<&Anchor> = anchors.iter().collect();
    check_anchors(&mut anchors_left, Seq(0), &Hash32::default(), &mut c.report);
    let mut sealed_left: Vec<&TreeAnchor> = sealed.iter().collect();
    check_tree_anchors(&mut sealed_left, Seq(0), &c.tree, &mut c.report);
    while c.offset < c.log_len {
        let Some(mut h) = c.read_next()? else { break };
        if let Some(what) = c.check_record(&mut h)? {
            c.report.problem = Some(Problem {
                seq: Seq(c.report.records + 1),
                offset_bytes: c.offset,
                what,
            });
            break;
        }
        c.accept(&h);
        progress(c.offset, c.log_len);
        check_anchors(&mut anchors_left, h.seq, &c.chain, &mut c.report);
        if !sealed_left.is_empty() {
            check_tree_anchors(&mut sealed_left, h.seq, &c.tree, &mut c.report);
        }
    }
    for a in sealed_left {
        c.report.checkpoint_problems.push(format!(
            "{} covers {} records, but the log holds only {} whole records: records were \
             cut from the end of the log (or the checkpoint is of another store)",
            a.what, a.size.0, c.report.records
        ));
    }
    for a in anchors_left {
        c.report.anchor_problems.push(format!(
            "{} names record {}, but the log holds only {} whole records (records cut from \
             the end of the log?)",
            a.what, a.seq, c.report.records
        ));
    }
    c.report.tree_root = c.tree.root();
    if let Some(m) = c.index_mismatch.take() {
        c.report.index_problems.push(m);
    }
    c.leave_out_open_batch();
    if c.report.problem.is_none() {
        if let Some(m) = manifest {
            let mut ic = IndexCheck {
                dir,
                header: &c.header,
                log: &c.log,
                log_len: c.log_len,
                seen: &c.seen,
                stored: &c.stored,
                snapshot: &mut snapshot,
                problems: Vec::new(),
            };
            ic.check(&m, &c.head_at_manifest)?;
            ic.check_tree(&m, &c.tree_nodes)?;
            c.report.index_problems.extend(ic.problems);
        }
    }
    Ok(c.report)
}

/// The content stored at `loc` (not a zero block), decoded into `out`: an
/// I/O error, or why the stored bytes do not decode.
fn read_stored(
    log: &File,
    log_path: &Path,
    loc: Loc,
    scratch: &mut Vec<u8>,
    out: &mut [u8],
) -> Result<std::result::Result<(), format::BlockFault>> {
    scratch.resize(loc.stored_len as usize, 0);
    log.read_exact_at(scratch, loc.offset_bytes).at(log_path)?;
    Ok(format::decode_block(loc.encoding, scratch, out))
}

/// verify's reader of the store (see [`LogCheck::check_carried`]).
enum Prior {
    Unopened,
    Open(Box<crate::store::Store>),
    /// It could not be opened, or stopped answering: a note says so.
    Unavailable,
}

/// The walk through the log: every record checked in order, what the index
/// check needs gathered on the way.
struct LogCheck {
    dir: std::path::PathBuf,
    header: format::StoreHeader,
    log_path: std::path::PathBuf,
    log: File,
    log_len: u64,
    /// A writer holds the store: a record being written is no damage.
    live: bool,
    open_batch: Option<batch::OpenBatch>,
    /// Where the next record starts.
    offset: u64,
    report: VerifyReport,
    seen: Vec<Seen>,
    stored: HashMap<u64, StoredAt>,
    bytes_written: u64,
    manifest_through: u64,
    head_at_manifest: HeadAt,
    /// The chain after the record last checked.
    chain: Hash32,
    /// A reader of the store, for the previous versions of partly written
    /// blocks, opened at the first of them.
    prior: Prior,
    /// The first time the reader's index gave a block other content than
    /// the log: an index problem, not the log's.
    index_mismatch: Option<String>,
    /// The Merkle tree over the records accepted so far.
    tree: crate::merkle::Frontier,
    /// Its stored-level subtrees up to the manifest's point, per level.
    tree_nodes: Vec<Vec<Hash32>>,
    buf: Vec<u8>,
    block: Vec<u8>,
    scratch: Vec<u8>,
}

impl LogCheck {
    fn open(
        dir: &Path,
        mut report: VerifyReport,
        open_batch: Option<batch::OpenBatch>,
        manifest: Option<&Manifest>,
    ) -> Result<LogCheck> {
        let header = index::read_header(dir)?;
        let log_path = dir.join(layout::LOG_FILE);
        let log = File::open(&log_path).at(&log_path)?;
        let log_len = log.metadata().at(&log_path)?.len();
        report.log_bytes = log_len;
        Ok(LogCheck {
            dir: dir.to_path_buf(),
            prior: Prior::Unopened,
            index_mismatch: None,
            live: writer::writer_is_live(dir),
            block: vec![0u8; header.block_size as usize],
            header,
            log_path,
            log,
            log_len,
            open_batch,
            offset: 0,
            report,
            seen: Vec::new(),
            stored: HashMap::new(),
            bytes_written: 0,
            manifest_through: manifest.map_or(0, |m| m.indexed_through.0),
            head_at_manifest: HeadAt::default(),
            chain: Hash32::default(),
            tree: crate::merkle::Frontier::default(),
            tree_nodes: vec![Vec::new(); 8],
            buf: Vec::new(),
            scratch: Vec::new(),
        })
    }

    /// Read the next whole record into `buf`. `None` at a fault: a record
    /// still being written by a live writer or the torn end of an
    /// unfinished import (both notes), or damage (the problem).
    fn read_next(&mut self) -> Result<Option<format::RecordHeader>> {
        let (seq, offset, log_len) = (Seq(self.report.records + 1), self.offset, self.log_len);
        let fault =
            match read_record_at(&self.log, offset, log_len, &mut self.buf).at(&self.log_path)? {
                Ok(h) => return Ok(Some(h)),
                Err(f) => f,
            };
        let torn = index::is_torn_tail(&self.log, self.header.format, offset, log_len);
        if torn && self.live {
            self.report.notes.push(format!(
                "a writer is recording: record {seq} at log byte {offset} was being \
                 written; the {} records before it were verified",
                self.report.records
            ));
        } else if torn
            && self
                .open_batch
                .as_ref()
                .is_some_and(|b| offset >= b.log_offset)
        {
            self.report.notes.push(format!(
                "record {seq} at log byte {offset}, the end of an unfinished import, is \
                 torn ({fault}); the next writer cuts the import"
            ));
        } else {
            self.report.problem = Some(Problem {
                seq,
                offset_bytes: offset,
                what: format!(
                    "{fault} ({} bytes from here to the end of the log)",
                    log_len - offset
                ),
            });
        }
        Ok(None)
    }

    /// What is wrong with the whole record in `buf`, if anything: its
    /// place in the sequence and the chain, its body, and its content
    /// against its content hash.
    fn check_record(&mut self, h: &mut format::RecordHeader) -> Result<Option<String>> {
        let seq = Seq(self.report.records + 1);
        if h.format != self.header.format {
            return Ok(Some(format!(
                "is a record of format {} in a log of format {}",
                h.format.version(),
                self.header.format.version()
            )));
        }
        if h.seq != seq {
            return Ok(Some(format!(
                "carries sequence number {} (records deleted, reordered or inserted)",
                h.seq.0
            )));
        }
        if self.report.last_time.is_some_and(|t| h.time_ns < t) {
            return Ok(Some("time goes backwards".into()));
        }
        let body = format::record_body(&self.buf);
        let g = (self.header.block_size, self.header.size_bytes);
        let locs = match record_block_locs(self.offset, h, body, g.0, g.1) {
            Ok(locs) => locs,
            Err(e) => return Ok(Some(e.to_string())),
        };
        if let Some(what) = self.check_content(h, &locs)? {
            return Ok(Some(what));
        }
        // Format 2 stores the chain whole every 256 records and a 4-byte
        // check between: an edit whose CRC was recomputed shows here.
        match h.chain_after(&self.report.chain) {
            Some(chain) => self.chain = chain,
            None => {
                return Ok(Some(
                    "chain hash does not follow from the previous record".into(),
                ))
            }
        }
        Ok(None)
    }

    /// Rebuild what record `h` wrote from its blocks (references followed)
    /// and check it against its content hash; a zero or trim must read as
    /// zeros where it cleared. Content it stores is remembered for the
    /// references of later records and for the dedup runs' check.
    fn check_content(
        &mut self,
        h: &mut format::RecordHeader,
        locs: &[(u64, Loc)],
    ) -> Result<Option<String>> {
        let (offset, seq) = (self.offset, h.seq);
        let bs = u64::from(self.header.block_size);
        let end = h.offset_bytes + h.length_bytes;
        let mut hasher = blake3::Hasher::new();
        let mut stored_here: Vec<(u64, StoredAt)> = Vec::new();
        for &(b, loc) in locs {
            if loc.encoding == Encoding::Zero {
                self.block.fill(0);
            } else {
                let inside = loc.offset_bytes >= offset
                    && loc.offset_bytes < offset + u64::from(h.record_len);
                let known = self
                    .stored
                    .get(&loc.offset_bytes)
                    .or_else(|| {
                        stored_here
                            .iter()
                            .find(|(o, _)| *o == loc.offset_bytes)
                            .map(|(_, s)| s)
                    })
                    .map(|s| (s.encoding, s.stored_len));
                if !inside && known != Some((loc.encoding, loc.stored_len)) {
                    return Ok(Some(format!(
                        "block {b} refers to log byte {}, where no such content was stored",
                        loc.offset_bytes
                    )));
                }
                let read = read_stored(
                    &self.log,
                    &self.log_path,
                    loc,
                    &mut self.scratch,
                    &mut self.block,
                )?;
                if let Err(e) = read {
                    return Ok(Some(format!("block {b}: {e}")));
                }
                if inside && known.is_none() {
                    let stored = StoredAt {
                        encoding: loc.encoding,
                        stored_len: loc.stored_len,
                        hash: crate::store::index::run::dedup_key(&self.block),
                        seq,
                    };
                    stored_here.push((loc.offset_bytes, stored));
                }
            }
            let (lo, hi) = ((b * bs).max(h.offset_bytes), ((b + 1) * bs).min(end));
            if (lo, hi) != (b * bs, (b + 1) * bs) {
                if let Some(what) = self.check_carried(b, seq, lo - b * bs, hi - b * bs)? {
                    return Ok(Some(what));
                }
            }
            let written = &self.block[(lo - b * bs) as usize..(hi - b * bs) as usize];
            if h.kind == RecordKind::Write {
                hasher.update(written);
            } else if written.iter().any(|&x| x != 0) {
                return Ok(Some(format!(
                    "block {b} is not zero in the range the {} cleared",
                    h.kind.name()
                )));
            }
        }
        let expect = match h.kind {
            RecordKind::Write => Hash32(*hasher.finalize().as_bytes()),
            RecordKind::Mark => Hash32(*blake3::hash(format::record_body(&self.buf)).as_bytes()),
            _ => Hash32::default(),
        };
        match h.content_hash {
            // Format 1 stores it: the blocks must give it back.
            Some(stored) if stored != expect => {
                return Ok(Some(
                    "content does not match the record's content hash".into(),
                ));
            }
            Some(_) => {}
            None => h.content_hash = Some(expect),
        }
        self.stored.extend(stored_here);
        Ok(None)
    }

    /// The bytes of block `b` (decoded in `block`) that record `seq` did
    /// not write, outside `lo..hi`, are the block's previous version: no
    /// hash covers them (the content hash covers what was written), so
    /// they are compared with it, read through the index as of the record
    /// before (the index is itself compared with the log below).
    fn check_carried(&mut self, b: u64, seq: Seq, lo: u64, hi: u64) -> Result<Option<String>> {
        if let Prior::Unopened = self.prior {
            self.prior = match crate::store::Store::open(&self.dir) {
                Ok(s) => Prior::Open(Box::new(s)),
                Err(e) => {
                    self.report.notes.push(format!(
                        "the bytes of partly written blocks that records did not write were \
                         not compared with the blocks' previous versions: {e}"
                    ));
                    Prior::Unavailable
                }
            };
        }
        let Prior::Open(prior) = &self.prior else {
            return Ok(None);
        };
        let mut before = vec![0u8; self.block.len()];
        let read = |before: &mut [u8]| {
            let i = prior.idx.read();
            (i.head().seq.0 >= seq.0 - 1)
                .then(|| i.read_at(Seq(seq.0 - 1), b * before.len() as u64, before))
        };
        let got = match read(&mut before) {
            Some(r) => r,
            // Recorded after the reader opened (a live writer): look again.
            None => {
                prior.refresh()?;
                read(&mut before).unwrap_or(Err(StoreError::NoSuchState {
                    seq: Seq(seq.0 - 1),
                    head: prior.idx.read().head().seq,
                }))
            }
        };
        if let Err(e) = got {
            self.prior = Prior::Unavailable;
            self.report.notes.push(format!(
                "the bytes of partly written blocks that records did not write were compared \
                 with the blocks' previous versions up to record {seq} only: {e}"
            ));
            return Ok(None);
        }
        let (lo, hi) = (lo as usize, hi as usize);
        let differ = |block: &[u8], before: &[u8]| {
            block[..lo] != before[..lo] || block[hi..] != before[hi..]
        };
        if !differ(&self.block, &before) {
            return Ok(None);
        }
        // The index could be what is wrong: confirm from the log alone.
        let from_log = self.previous_from_log(b, seq)?;
        if from_log != before {
            self.index_mismatch.get_or_insert(format!(
                "the index gives block {b} as of record {} other content than the log",
                seq.0 - 1
            ));
        }
        if !differ(&self.block, &from_log) {
            return Ok(None);
        }
        Ok(Some(format!(
            "block {b}: the bytes this record did not write differ from the block's \
             previous version (they were edited)"
        )))
    }

    /// Block `b` as of the record before `seq`, from the log alone: the
    /// last record before it that touched the block, found walking back
    /// over the records' heads (slow, and only done to confirm a mismatch).
    fn previous_from_log(&mut self, b: u64, seq: Seq) -> Result<Vec<u8>> {
        let bs = u64::from(self.header.block_size);
        let mut out = vec![0u8; bs as usize];
        let mut head = [0u8; format::HEAD_READ_LEN];
        for i in (0..seq.0.saturating_sub(1) as usize).rev() {
            let off = self.seen[i].offset_bytes;
            let n = (self.log_len - off).min(head.len() as u64) as usize;
            self.log
                .read_exact_at(&mut head[..n], off)
                .at(&self.log_path)?;
            let h = format::decode_head_unchecked(&head[..n]).ok_or_else(|| {
                StoreError::corrupted(&self.log_path, format!("record at byte {off}: no header"))
            })?;
            let touches = matches!(
                h.kind,
                RecordKind::Write | RecordKind::Zero | RecordKind::Trim
            ) && h.length_bytes > 0
                && h.offset_bytes / bs <= b
                && (h.offset_bytes + h.length_bytes - 1) / bs >= b;
            if !touches {
                continue;
            }
            let mut buf = Vec::new();
            let h =
                match read_record_at(&self.log, off, self.log_len, &mut buf).at(&self.log_path)? {
                    Ok(h) => h,
                    Err(f) => return Err(StoreError::corrupted(&self.log_path, f.to_string())),
                };
            let g = (self.header.block_size, self.header.size_bytes);
            let locs = record_block_locs(off, &h, format::record_body(&buf), g.0, g.1)
                .map_err(|e| StoreError::corrupted(&self.log_path, e.to_string()))?;
            if let Some(&(_, loc)) = locs.iter().find(|(x, _)| *x == b) {
                if loc.encoding != Encoding::Zero {
                    read_stored(&self.log, &self.log_path, loc, &mut self.scratch, &mut out)?
                        .map_err(|e| StoreError::corrupted(&self.log_path, e.to_string()))?;
                }
            }
            return Ok(out);
        }
        Ok(out)
    }

    /// Count record `h` (checked) as part of the history verified.
    fn accept(&mut self, h: &format::RecordHeader) {
        self.report.chain = self.chain;
        self.report.last_time = Some(h.time_ns);
        self.report.records += 1;
        if h.kind != RecordKind::Mark {
            self.bytes_written += h.length_bytes;
        }
        self.seen.push(Seen {
            offset_bytes: self.offset,
        });
        self.offset += u64::from(h.record_len);
        let (nodes, through) = (&mut self.tree_nodes, self.manifest_through);
        self.tree.push(h.leaf_hash(), |start, height, x| {
            let k = (height / index::TILE_HEIGHT) as usize;
            if height % index::TILE_HEIGHT == 0 && start + (1u64 << height) <= through {
                nodes[k].push(*x);
            }
        });
        if h.seq.0 == self.manifest_through {
            self.head_at_manifest = HeadAt {
                chain: self.chain,
                time_ns: h.time_ns,
                log_end: self.offset,
                bytes_written: self.bytes_written,
            };
        }
    }

    /// Records of an open batch were verified but are not history yet: the
    /// report speaks of the history a reader sees, which ends before the
    /// batch, and notes the rest.
    fn leave_out_open_batch(&mut self) {
        let Some(b) = &self.open_batch else { return };
        let r = &mut self.report;
        if r.records < b.first_seq.0 {
            return;
        }
        let last = r.records;
        r.records = b.first_seq.0 - 1;
        r.chain = b.manifest.head_chain;
        r.last_time = (r.records > 0).then_some(b.manifest.head_time);
        r.notes.push(format!(
            "records {}..=#{last} belong to an import {}: no state includes them{}",
            b.first_seq,
            if self.live {
                "under way"
            } else {
                "that did not finish"
            },
            if self.live {
                " until it completes"
            } else {
                "; the next writer cuts them"
            }
        ));
    }
}

fn check_anchors(left: &mut Vec<&Anchor>, seq: Seq, chain: &Hash32, report: &mut VerifyReport) {
    left.retain(|a| {
        if a.seq != seq {
            return true;
        }
        if a.chain != *chain {
            report.anchor_problems.push(format!(
                "{} says the chain after record {seq} is {}, the log's is {chain}",
                a.what, a.chain
            ));
        }
        false
    });
}

fn check_tree_anchors(
    left: &mut Vec<&TreeAnchor>,
    seq: Seq,
    tree: &crate::merkle::Frontier,
    report: &mut VerifyReport,
) {
    left.retain(|a| {
        if a.size != seq {
            return true;
        }
        let root = tree.root();
        if a.root != root {
            report.checkpoint_problems.push(format!(
                "{} says the Merkle tree of the first {} records has root {}, the log's \
                 has {root}: the history was rewritten after it was sealed",
                a.what, seq.0, a.root
            ));
        }
        false
    });
}

/// A path relative to the store, for messages.
fn rel(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir).unwrap_or(path).display().to_string()
}

struct IndexCheck<'a> {
    dir: &'a Path,
    header: &'a format::StoreHeader,
    log: &'a File,
    log_len: u64,
    seen: &'a [Seen],
    stored: &'a HashMap<u64, StoredAt>,
    snapshot: &'a mut IndexSnapshot,
    problems: Vec<String>,
}

/// The runs of one kind in an [`IndexSnapshot`].
trait SnapshotRuns: RunEntry + Sized {
    fn take(s: &mut IndexSnapshot, name: &str) -> Option<Result<Run<Self>>>;
}

impl SnapshotRuns for BlockVersion {
    fn take(s: &mut IndexSnapshot, name: &str) -> Option<Result<Run<Self>>> {
        s.runs.remove(name)
    }
}

impl SnapshotRuns for StoredContent {
    fn take(s: &mut IndexSnapshot, name: &str) -> Option<Result<Run<Self>>> {
        s.dedups.remove(name)
    }
}

impl IndexCheck<'_> {
    fn record(&self, seq: u64) -> String {
        match self.seen.get((seq as usize).wrapping_sub(1)) {
            Some(s) => format!("record #{seq} at log byte {}", s.offset_bytes),
            None => format!("record #{seq} (not in the log)"),
        }
    }

    fn check(&mut self, m: &Manifest, head: &HeadAt) -> Result<()> {
        let n = self.seen.len() as u64;
        let it = m.indexed_through.0;
        if it > n {
            self.problems.push(format!(
                "index/MANIFEST: the index covers records up to #{it} but the log holds only \
                 {n}: records were cut from the end of the log after record #{n}"
            ));
            return Ok(());
        }
        if it > 0 {
            let want = (head.chain, head.time_ns, head.log_end, head.bytes_written);
            let got = (m.head_chain, m.head_time, m.log_end, m.bytes_written);
            if want != got {
                self.problems.push(format!(
                    "index/MANIFEST: its head (chain, time, log end, bytes written) disagrees \
                     with {}",
                    self.record(it)
                ));
            }
        }
        self.check_seqs(it)?;
        // Runs cover disjoint, ascending record ranges within 1..=it; the
        // records between them (an index flush with no block versions)
        // must have none.
        let mut covered = 0u64;
        for &(first, last) in &m.runs {
            let (rn, dn) = index::run_file_names(first, last);
            if first.0 <= covered || last < first || last.0 > it {
                self.problems.push(format!(
                    "index/MANIFEST: run {rn} covers records {first}..={last} after records \
                     up to {covered} (overlap), or past the manifest's {it}"
                ));
                return Ok(());
            }
            self.check_uncovered(covered + 1, first.0 - 1)?;
            covered = last.0;
            self.check_run(&rn, first, last)?;
            self.check_dedup(&dn, first, last)?;
        }
        self.check_uncovered(covered + 1, it)
    }

    /// Records `from..=to` are in no run: they must set no block.
    fn check_uncovered(&mut self, from: u64, to: u64) -> Result<()> {
        for s in from..=to {
            if !self.block_versions(s)?.is_empty() {
                self.problems.push(format!(
                    "index/MANIFEST: no run holds the block versions of {}",
                    self.record(s)
                ));
                break;
            }
        }
        Ok(())
    }

    /// The block versions record `seq` sets, from the log.
    fn block_versions(&self, seq: u64) -> Result<Vec<BlockVersion>> {
        let log_path = self.dir.join(layout::LOG_FILE);
        let off = self.seen[seq as usize - 1].offset_bytes;
        let mut buf = Vec::new();
        let h = match read_record_at(self.log, off, self.log_len, &mut buf).at(&log_path)? {
            Ok(h) => h,
            Err(f) => return Err(StoreError::corrupted(&log_path, f.to_string())),
        };
        let locs = record_block_locs(
            off,
            &h,
            format::record_body(&buf),
            self.header.block_size,
            self.header.size_bytes,
        )
        .map_err(|e| StoreError::corrupted(&log_path, e.to_string()))?;
        Ok(locs
            .into_iter()
            .map(|(block, loc)| BlockVersion { block, seq, loc })
            .collect())
    }

    /// The stored Merkle subtree hashes the manifest promises, against
    /// `nodes`, recomputed from the log (per level, up to the manifest).
    fn check_tree(&mut self, m: &Manifest, nodes: &[Vec<Hash32>]) -> Result<()> {
        let it = m.indexed_through.0;
        for (k, want) in nodes.iter().enumerate().skip(1) {
            let promised = it >> (index::TILE_HEIGHT * k as u32);
            if promised == 0 {
                continue;
            }
            let name = format!(
                "{}/{}/{}",
                layout::INDEX_DIR,
                layout::TREE_DIR,
                index::level_file_name(k as u32)
            );
            let path = self.dir.join(&name);
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    self.problems.push(format!(
                        "{name}: missing, but the manifest promises {promised} hashes"
                    ));
                    continue;
                }
                Err(e) => return Err(StoreError::io(&path, e)),
            };
            if (bytes.len() as u64) < promised * index::TREE_ENTRY_LEN {
                self.problems.push(format!(
                    "{name}: holds {} hashes, the manifest promises {promised}",
                    bytes.len() as u64 / index::TREE_ENTRY_LEN
                ));
                continue;
            }
            let span = 1u64 << (index::TILE_HEIGHT * k as u32);
            for j in 0..promised {
                let e = &bytes[(j * index::TREE_ENTRY_LEN) as usize..][..36];
                let ok = match index::decode_entry(k as u32, j, e) {
                    None => Some("fails its checksum"),
                    Some(h) if want.get(j as usize) != Some(&h) => {
                        Some("does not match the records in the log")
                    }
                    Some(_) => None,
                };
                if let Some(why) = ok {
                    self.problems.push(format!(
                        "{name}: the hash of records #{}..=#{} {why}",
                        j * span + 1,
                        (j + 1) * span
                    ));
                    break;
                }
            }
        }
        Ok(())
    }

    fn check_seqs(&mut self, it: u64) -> Result<()> {
        let path = self.dir.join(layout::INDEX_DIR).join(layout::SEQS_FILE);
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && it == 0 => return Ok(()),
            Err(e) => return Err(StoreError::io(&path, e)),
        };
        let len = f.metadata().at(&path)?.len();
        let promised = index::seq_entries(it);
        if len < promised * SEQ_ENTRY_LEN {
            self.problems.push(format!(
                "index/seqs holds {} entries, the manifest promises {promised}",
                len / SEQ_ENTRY_LEN
            ));
            return Ok(());
        }
        let mut e = vec![0u8; (promised * SEQ_ENTRY_LEN) as usize];
        f.read_exact_at(&mut e, 0).at(&path)?;
        for (j, c) in e.chunks_exact(SEQ_ENTRY_LEN as usize).enumerate() {
            let o = u64::from_le_bytes(c.try_into().unwrap());
            let seq = j as u64 * index::SEQ_STRIDE + 1;
            let s = self.seen[seq as usize - 1];
            if o != s.offset_bytes {
                self.problems.push(format!(
                    "index/seqs: the entry for {} says log byte {o}; the log holds it at byte {}",
                    self.record(seq),
                    s.offset_bytes
                ));
                break;
            }
        }
        Ok(())
    }

    /// Open a run; a damaged one is a problem (returned as `None`).
    fn open_run<E: SnapshotRuns>(
        &mut self,
        name: &str,
        first: Seq,
        last: Seq,
    ) -> Result<Option<Run<E>>> {
        let path = self.dir.join(layout::INDEX_DIR).join(name);
        let opened = E::take(self.snapshot, name).unwrap_or_else(|| Run::<E>::open(&path));
        let run = match opened {
            Ok(r) => r,
            Err(StoreError::Corrupted { what, .. }) => {
                self.problems.push(format!("index/{name}: {what}"));
                return Ok(None);
            }
            Err(StoreError::Io { error, .. }) if error.kind() == std::io::ErrorKind::NotFound => {
                self.problems.push(format!(
                    "index/{name}: missing, though the manifest lists it"
                ));
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        if (run.first_seq, run.last_seq) != (first, last) {
            self.problems.push(format!(
                "index/{name}: its footer says records {}..={}, its name and the manifest \
                 {first}..={last}",
                run.first_seq, run.last_seq
            ));
        }
        if let Some((page, entries)) = run.check_pages()? {
            self.problems.push(format!(
                "index/{name}: page {page} (entries {}..{}) checksum mismatch",
                entries.start, entries.end
            ));
        }
        Ok(Some(run))
    }

    /// Recompute the block versions of records `first..=last` from the log
    /// and compare them with the run, entry by entry.
    fn check_run(&mut self, name: &str, first: Seq, last: Seq) -> Result<()> {
        let Some(run) = self.open_run::<BlockVersion>(name, first, last)? else {
            return Ok(());
        };
        let mut expect: Vec<BlockVersion> = Vec::new();
        for s in first.0..=last.0 {
            expect.extend(self.block_versions(s)?);
        }
        expect.sort_unstable_by_key(|e| (e.block, e.seq));
        let got = run.raw_entries()?;
        let first_diff = (0..got.len().max(expect.len()))
            .find(|&i| got.get(i).copied().flatten() != expect.get(i).copied());
        if let Some(i) = first_diff {
            let say = |e: Option<BlockVersion>| match e {
                Some(e) => format!(
                    "block {} in {} at {}",
                    e.block,
                    self.record(e.seq),
                    loc_text(&e.loc)
                ),
                None => "nothing".to_string(),
            };
            self.problems.push(format!(
                "index/{name}: entry {i} says {}; the log says {}",
                match got.get(i) {
                    Some(Some(e)) => say(Some(*e)),
                    Some(None) => "something that does not decode".to_string(),
                    None => "nothing (the run is short)".to_string(),
                },
                say(expect.get(i).copied())
            ));
        }
        Ok(())
    }

    /// Every dedup entry must name content its records stored, with that
    /// hash. (An entry missing costs only space: the content would be
    /// stored again.)
    fn check_dedup(&mut self, name: &str, first: Seq, last: Seq) -> Result<()> {
        let Some(run) = self.open_run::<StoredContent>(name, first, last)? else {
            return Ok(());
        };
        let mut prev: Option<[u8; 32]> = None;
        for (i, e) in run.raw_entries()?.into_iter().enumerate() {
            let fault = match e {
                None => Some("does not decode".to_string()),
                Some(e) => {
                    let at = self.stored.get(&e.loc.offset_bytes);
                    if prev.is_some_and(|p| p >= e.hash) {
                        Some("is out of order".to_string())
                    } else if at.is_none_or(|s| {
                        (s.encoding, s.stored_len, s.hash)
                            != (e.loc.encoding, e.loc.stored_len, e.hash)
                    }) {
                        Some(format!(
                            "says content {} is at {}, which the log does not store there",
                            Hash32(e.hash),
                            loc_text(&e.loc)
                        ))
                    } else if at.is_some_and(|s| s.seq < first || s.seq > last) {
                        Some(format!(
                            "names content stored by {}, outside the run's records",
                            self.record(at.map_or(0, |s| s.seq.0))
                        ))
                    } else {
                        prev = Some(e.hash);
                        None
                    }
                }
            };
            if let Some(f) = fault {
                self.problems.push(format!("index/{name}: entry {i} {f}"));
                break;
            }
        }
        Ok(())
    }
}

fn loc_text(l: &Loc) -> String {
    match l.encoding {
        Encoding::Zero => "zeros".to_string(),
        e => format!(
            "log byte {} ({} bytes, {})",
            l.offset_bytes,
            l.stored_len,
            if e == Encoding::Raw { "raw" } else { "lz4" }
        ),
    }
}
