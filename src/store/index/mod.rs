//! The index: everything needed to answer "block B as of state S" and
//! "which record was current at time T" without replaying the log.
//!
//! - `index/seqs`: one 16-byte entry per record (time_ns i64, log offset
//!   u64); record `s` is entry `s-1`. Binary search maps a time to a seq.
//! - `index/*.run`: sorted `(block, seq) -> location` runs covering disjoint
//!   ranges of records (see [`run`]). Lookup: newest run first, the greatest
//!   key <= `(B, S)`; runs are merged so there are O(log n) of them.
//! - `index/MANIFEST`: which runs exist, and up to which record (and log
//!   offset) they and `seqs` are complete. Replaced atomically.
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

pub mod run;

use crate::store::error::{IoContext, Result, StoreError};
use crate::store::format::{
    self, read_record_at, record_block_locs, Loc, RecordHeader, RecordKind, StoreHeader,
};
use crate::store::layout;
use crate::units::{Hash32, Seq, TimeNs};
use run::{BlockVersion, Run};
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub const SEQ_ENTRY_LEN: u64 = 16;
/// Bytes of a record's head read to check a `seqs` entry.
const SEQ_CHECK_LEN: usize = format::RECORD_IDENTITY_LEN;
/// Manifest magic; the last byte is the index format version.
const MANIFEST_MAGIC: &[u8; 8] = b"DHMANIF3";
/// The index format this diskhist writes (an ASCII digit).
pub const INDEX_FORMAT: u8 = MANIFEST_MAGIC[7];
const MANIFEST_MAGIC_STEM: &[u8; 7] = b"DHMANIF";

/// The newest state of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Head {
    pub seq: Seq,
    /// Time of the last record; `None` for an empty store.
    pub time_ns: Option<TimeNs>,
    /// Chain hash after the last record (32 zero bytes when empty).
    pub chain: Hash32,
}

/// Which runs exist and how far the index reaches.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest {
    pub generation: u64,
    pub indexed_through: Seq,
    /// Log offset just past record `indexed_through`.
    pub log_end: u64,
    pub head_time: TimeNs,
    pub head_chain: Hash32,
    /// Bytes written, zeroed or trimmed by records up to `indexed_through`.
    pub bytes_written: u64,
    /// Seq ranges of the runs, oldest first; each has a `.run` and a `.dedup`.
    pub runs: Vec<(Seq, Seq)>,
}

impl Manifest {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(MANIFEST_MAGIC);
        for v in [
            self.generation,
            self.indexed_through.0,
            self.log_end,
            self.head_time.0 as u64,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&self.head_chain.0);
        b.extend_from_slice(&self.bytes_written.to_le_bytes());
        b.extend_from_slice(&(self.runs.len() as u32).to_le_bytes());
        for (a, z) in &self.runs {
            b.extend_from_slice(&a.0.to_le_bytes());
            b.extend_from_slice(&z.0.to_le_bytes());
        }
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// `None` if the bytes are not a whole manifest of this index version
    /// (see [`manifest_version`] to tell another version from damage).
    pub fn decode(b: &[u8]) -> Option<Manifest> {
        const FIXED: usize = 8 + 32 + 32 + 8 + 4;
        if b.len() < FIXED + 4 || &b[..8] != MANIFEST_MAGIC {
            return None;
        }
        let (body, crc) = b.split_at(b.len() - 4);
        if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().ok()?) {
            return None;
        }
        let u = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().unwrap());
        let n = u32::from_le_bytes(body[80..84].try_into().unwrap()) as usize;
        if body.len() != FIXED + n * 16 {
            return None;
        }
        let runs = (0..n)
            .map(|i| (Seq(u(FIXED + i * 16)), Seq(u(FIXED + i * 16 + 8))))
            .collect();
        Some(Manifest {
            generation: u(8),
            indexed_through: Seq(u(16)),
            log_end: u(24),
            head_time: TimeNs(u(32) as i64),
            head_chain: Hash32(body[40..72].try_into().unwrap()),
            bytes_written: u(72),
            runs,
        })
    }
}

/// The index format version a manifest claims, if it looks like one.
pub fn manifest_version(b: &[u8]) -> Option<u8> {
    (b.len() >= 8 && &b[..7] == MANIFEST_MAGIC_STEM).then(|| b[7])
}

pub fn run_file_names(first: Seq, last: Seq) -> (String, String) {
    let stem = format!("{:016x}-{:016x}", first.0, last.0);
    (format!("{stem}.run"), format!("{stem}.dedup"))
}

/// Where and why the scan of the log stopped before its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailStop {
    /// Offset of the first record that is not whole.
    pub offset_bytes: u64,
    /// The sequence number it should have had.
    pub seq: Seq,
    pub reason: String,
    /// Bytes from `offset_bytes` to the end of the log.
    pub bytes_left: u64,
    /// True when what stops the scan is the last thing in the log (a torn
    /// write), false when more data follows (damage in the middle).
    pub at_end: bool,
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

/// A record after the manifest's point, held in memory.
#[derive(Debug, Clone, Copy)]
pub struct TailRecord {
    pub time_ns: TimeNs,
    pub offset_bytes: u64,
}

/// The index of one store, as a reader or the writer sees it.
pub struct Index {
    pub dir: PathBuf,
    pub header: StoreHeader,
    pub log_path: PathBuf,
    pub log: File,
    pub seqs_path: PathBuf,
    /// Absent for a reader of a store whose index was deleted.
    pub seqs: Option<File>,
    pub manifest: Manifest,
    pub runs: Vec<Run<BlockVersion>>,
    /// `(block, seq) -> location` for records after the manifest's point.
    pub mem: BTreeMap<(u64, u64), Loc>,
    pub tail: Vec<TailRecord>,
    pub head: Head,
    pub log_end: u64,
    pub stop: Option<TailStop>,
    /// Bytes written, zeroed or trimmed, up to the head.
    pub bytes_written: u64,
    /// Why the index on disk is not used (a reader fell back to the log).
    pub damaged: Option<String>,
    /// Generation of the manifest whose runs or `seqs` were found damaged.
    rejected_generation: Option<u64>,
    /// For a reader: the open batch, whose records it does not show.
    pub cap: Option<Cap>,
    writable: bool,
    scan_buf: Vec<u8>,
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
            expected: format::FORMAT_VERSION,
            checksum_ok,
        },
        format::HeaderFault::Corrupt(what) => StoreError::corrupted(&path, what),
    })
}

/// The manifest; an empty one when there is none or it is of another
/// index version (the index is then rebuilt from the log). A damaged
/// manifest is an error.
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(layout::INDEX_DIR).join(layout::MANIFEST_FILE);
    match std::fs::read(&path) {
        Ok(b) => match Manifest::decode(&b) {
            Some(m) => Ok(m),
            None => match manifest_version(&b) {
                Some(v) if v != MANIFEST_MAGIC[7] && v.is_ascii_digit() => {
                    log::info!(
                        "{}: index of another format ({}); reading the log instead, the \
                         next writer rebuilds the index",
                        path.display(),
                        v as char
                    );
                    Ok(Manifest::default())
                }
                _ => Err(StoreError::corrupted(
                    &path,
                    "index manifest checksum mismatch or bad layout (the index was damaged \
                     or edited; delete index/ to have it rebuilt from the log)",
                )),
            },
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest::default()),
        Err(e) => Err(StoreError::io(&path, e)),
    }
}

/// A bad record at `offset` is a torn tail when no whole record header can
/// follow it: its claimed extent reaches the end of the log, or the bytes
/// left are fewer than one record could be.
pub fn is_torn_tail(log: &File, offset: u64, log_len: u64) -> bool {
    let left = log_len - offset;
    if left < (format::RECORD_HEADER_LEN + format::RECORD_TRAILER_LEN) as u64 {
        return true;
    }
    let mut prefix = [0u8; 8];
    if log.read_exact_at(&mut prefix, offset).is_err() {
        return true;
    }
    match format::peek_record_len(&prefix) {
        Ok(len) => offset + u64::from(len) >= log_len,
        // A file that grew but whose data never reached the disk (a
        // power cut on some filesystems) ends in zeros: torn too.
        Err(_) => zeros_to_end(log, offset, log_len),
    }
}

/// True when every byte from `offset` to `log_len` is zero.
fn zeros_to_end(log: &File, mut offset: u64, log_len: u64) -> bool {
    let mut buf = vec![0u8; (log_len - offset).min(1 << 20) as usize];
    while offset < log_len {
        let n = buf.len().min((log_len - offset) as usize);
        if log.read_exact_at(&mut buf[..n], offset).is_err() || buf[..n].iter().any(|&b| b != 0) {
            return false;
        }
        offset += n as u64;
    }
    true
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
            manifest: Manifest::default(),
            runs: Vec::new(),
            mem: BTreeMap::new(),
            tail: Vec::new(),
            head: Head::default(),
            log_end: 0,
            stop: None,
            bytes_written: 0,
            damaged: None,
            rejected_generation: None,
            cap: None,
            writable,
            scan_buf: Vec::new(),
        };
        idx.load_manifest()?;
        idx.scan()?;
        Ok(idx)
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
        self.stop = None;
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
                Ok(runs) => {
                    let seqs_len = match &self.seqs {
                        Some(f) => f.metadata().at(&self.seqs_path)?.len(),
                        None => 0,
                    };
                    if seqs_len < m.indexed_through.0 * SEQ_ENTRY_LEN {
                        return Err(StoreError::corrupted(
                            &self.seqs_path,
                            format!(
                                "holds {} entries, the manifest promises {}",
                                seqs_len / SEQ_ENTRY_LEN,
                                m.indexed_through.0
                            ),
                        ));
                    }
                    self.runs = runs;
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
    fn open_runs(&self, m: &Manifest) -> Result<Vec<Run<BlockVersion>>> {
        let idir = self.dir.join(layout::INDEX_DIR);
        m.runs
            .iter()
            .map(|&(a, z)| {
                let path = idir.join(run_file_names(a, z).0);
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
                Ok(run)
            })
            .collect()
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

    /// Take in every whole record after `log_end`. Stops (recording why in
    /// `stop`) at the first record that is not whole.
    pub fn scan(&mut self) -> Result<Vec<RecordHeader>> {
        let log_len = self.log.metadata().at(&self.log_path)?.len();
        let mut seen = Vec::new();
        self.stop = None;
        let mut buf = std::mem::take(&mut self.scan_buf);
        while self.log_end < log_len {
            let offset = self.log_end;
            let expect = Seq(self.head.seq.0 + 1);
            let res = read_record_at(&self.log, offset, log_len, &mut buf).at(&self.log_path)?;
            let fault = match res {
                Err(f) => Some(f.to_string()),
                Ok(h) => match self.check_and_apply(offset, &h, &buf) {
                    Ok(()) => {
                        seen.push(h);
                        None
                    }
                    Err(why) => Some(why),
                },
            };
            if let Some(reason) = fault {
                let at_end = is_torn_tail(&self.log, offset, log_len);
                self.stop = Some(TailStop {
                    offset_bytes: offset,
                    seq: expect,
                    reason,
                    bytes_left: log_len - offset,
                    at_end,
                });
                break;
            }
        }
        self.scan_buf = buf;
        Ok(seen)
    }

    fn check_and_apply(
        &mut self,
        offset: u64,
        h: &RecordHeader,
        rec: &[u8],
    ) -> std::result::Result<(), String> {
        let expect = self.head.seq.0 + 1;
        if h.seq.0 != expect {
            return Err(format!(
                "sequence number {} where {expect} was due",
                h.seq.0
            ));
        }
        if let Some(t) = self.head.time_ns {
            if h.time_ns < t {
                return Err(format!(
                    "time {} is before the previous record's {}",
                    h.time_ns.0, t.0
                ));
            }
        }
        if format::chain_next(&self.head.chain, h) != h.chain {
            return Err("chain hash does not follow from the previous record".into());
        }
        let locs = record_block_locs(
            offset,
            h,
            format::record_body(rec),
            self.header.block_size,
            self.header.size_bytes,
        )
        .map_err(|e| e.to_string())?;
        for (b, loc) in locs {
            self.mem.insert((b, h.seq.0), loc);
        }
        self.tail.push(TailRecord {
            time_ns: h.time_ns,
            offset_bytes: offset,
        });
        self.head = Head {
            seq: h.seq,
            time_ns: Some(h.time_ns),
            chain: h.chain,
        };
        self.log_end = offset + u64::from(h.record_len);
        self.bytes_written += h.length_bytes * u64::from(h.kind != RecordKind::Mark);
        Ok(())
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

    /// Decode the content at `loc` into `out` (one block).
    pub fn read_loc(&self, loc: Loc, out: &mut [u8], scratch: &mut Vec<u8>) -> Result<()> {
        if loc.encoding == format::Encoding::Zero {
            out.fill(0);
            return Ok(());
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
        let mut block_buf = vec![0u8; bs];
        let mut scratch = Vec::with_capacity(bs);
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset_bytes + done as u64;
            let block = pos / bs as u64;
            let within = (pos % bs as u64) as usize;
            let n = (bs - within).min(buf.len() - done);
            let loc = self.lookup(block, state)?;
            if n == bs {
                self.read_loc(loc, &mut buf[done..done + n], &mut scratch)?;
            } else {
                self.read_loc(loc, &mut block_buf, &mut scratch)?;
                buf[done..done + n].copy_from_slice(&block_buf[within..within + n]);
            }
            done += n;
        }
        Ok(())
    }

    fn seq_entry(&self, seq: Seq) -> Result<TailRecord> {
        if seq.0 == 0 || seq > self.head.seq {
            return Err(StoreError::NoSuchState {
                seq,
                head: self.head.seq,
            });
        }
        let it = self.manifest.indexed_through.0;
        if seq.0 > it {
            return Ok(self.tail[(seq.0 - it - 1) as usize]);
        }
        let mut e = [0u8; SEQ_ENTRY_LEN as usize];
        let seqs = self
            .seqs
            .as_ref()
            .ok_or_else(|| StoreError::corrupted(&self.seqs_path, "missing"))?;
        seqs.read_exact_at(&mut e, (seq.0 - 1) * SEQ_ENTRY_LEN)
            .at(&self.seqs_path)?;
        let entry = TailRecord {
            time_ns: TimeNs(i64::from_le_bytes(e[..8].try_into().unwrap())),
            offset_bytes: u64::from_le_bytes(e[8..].try_into().unwrap()),
        };
        self.check_seq_entry(seq, &entry)?;
        Ok(entry)
    }

    /// `seqs` is not checksummed: each entry is checked against the head of
    /// the record it points to, which must be a record (magic) with this
    /// sequence number and time. One damaged byte cannot forge both.
    fn check_seq_entry(&self, seq: Seq, e: &TailRecord) -> Result<()> {
        let mut head = [0u8; SEQ_CHECK_LEN];
        let ok = e.offset_bytes < self.log_end
            && self.log.read_exact_at(&mut head, e.offset_bytes).is_ok()
            && format::record_identity(&head) == Some((seq, e.time_ns));
        if ok {
            return Ok(());
        }
        Err(StoreError::corrupted(
            &self.seqs_path,
            format!(
                "the entry for record {seq} (time {} ns, log byte {}) disagrees with the log; \
                 the index was damaged or edited: run `diskhist verify`, and delete index/ to \
                 have it rebuilt from the log",
                e.time_ns.0, e.offset_bytes
            ),
        ))
    }

    pub fn time_of(&self, seq: Seq) -> Result<TimeNs> {
        Ok(self.seq_entry(seq)?.time_ns)
    }

    pub fn offset_of(&self, seq: Seq) -> Result<u64> {
        Ok(self.seq_entry(seq)?.offset_bytes)
    }

    /// The last record whose time is <= `t` (Seq(0) if none).
    pub fn seq_at(&self, t: TimeNs) -> Result<Seq> {
        let (mut lo, mut hi) = (0u64, self.head.seq.0);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if self.time_of(Seq(mid))? <= t {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        Ok(Seq(lo))
    }

    /// The kind of record `seq`, from its first bytes only (no checksum:
    /// for choosing which records to read whole).
    pub fn kind_of(&self, seq: Seq) -> Result<Option<RecordKind>> {
        let offset = self.offset_of(seq)?;
        let mut head = [0u8; format::RECORD_IDENTITY_LEN + 1];
        self.log
            .read_exact_at(&mut head, offset)
            .at(&self.log_path)?;
        Ok(RecordKind::from_u8(head[format::RECORD_IDENTITY_LEN]))
    }

    /// Read and check the whole record `seq`.
    pub fn read_record(&self, seq: Seq, buf: &mut Vec<u8>) -> Result<RecordHeader> {
        let offset = self.offset_of(seq)?;
        let len = self.log.metadata().at(&self.log_path)?.len();
        match read_record_at(&self.log, offset, len, buf).at(&self.log_path)? {
            Ok(h) if h.seq == seq => Ok(h),
            Ok(h) => Err(StoreError::corrupted(
                &self.log_path,
                format!(
                    "record at byte {offset} is {} where {seq} was expected",
                    h.seq
                ),
            )),
            Err(f) => Err(StoreError::corrupted(
                &self.log_path,
                format!("record {seq} at byte {offset}: {f}"),
            )),
        }
    }
}
