//! The block-history store: one directory holding every write made to a disk,
//! with its time, and an index that answers "block B as of state S" in
//! O(log n). The store knows nothing of FUSE, NBD or log formats: producers
//! hand it [`Op`]s, consumers ask it for states.
//!
//! Layout of a store directory (files 0600, directories 0700):
//!
//! ```text
//! STORE/
//!   diskhist.store   header: magic, format version, geometry (format.rs)
//!   lock             flock(2)ed by the one writer
//!   log              append-only records, checksummed and hash-chained
//!   index/seqs       the log offset of every 16th record (8 bytes each)
//!   index/MANIFEST   which sorted runs cover which records
//!   index/*.run      sorted (block, seq) -> payload location runs
//!   index/*.dedup    sorted content hash -> payload location runs
//!   index/tree/L<k>  the Merkle tree's stored subtree hashes (index/tree.rs)
//! ```
//!
//! Everything under `index/` is derived from `log` and can be rebuilt from
//! it: delete `index/` and the next writer (any `ingest`, `import` or
//! `serve`) rebuilds it from the log; readers meanwhile scan the log.

pub use error::{InitError, StoreError};

use crate::units::{BlockNo, Geometry, Hash32, Seq, TimeNs};
pub use format::{RecordKind, FORMAT_VERSION};
pub use index::{Head, TailStop};
pub use op::{Op, OpFlags, OwnedOp};
pub use writer::{
    writer_is_live, Appended, CutBatch, SealHook, SyncPoint, Writer, WriterOptions, FLUSH_THRESHOLD,
};

pub(crate) mod batch;
mod error;
mod files;
pub(crate) use files::replace_atomically;
pub(crate) mod format;
pub(crate) mod index;
pub mod layout;
mod op;
pub mod verify;
mod writer;

use crate::time::TimeSpec;
use error::Result;
use index::Index;
use parking_lot::RwLock;
use std::path::Path;

/// One record, as `log` and `dump` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordInfo {
    pub seq: Seq,
    pub time_ns: TimeNs,
    pub kind: RecordKind,
    pub flags: OpFlags,
    pub offset_bytes: u64,
    pub length_bytes: u64,
    /// The name of a Mark.
    pub mark: Option<String>,
    pub content_hash: Hash32,
    pub chain: Hash32,
}

/// Which stored content a block has in some state (see
/// [`Store::block_content`]): equal ids, equal content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentId(format::Loc);

impl ContentId {
    /// The all-zero block: never stored, never read.
    pub fn is_zero(&self) -> bool {
        self.0.encoding == format::Encoding::Zero
    }
}

/// A batch begun and not committed (see [`Store::pending_batch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingBatch {
    pub first_seq: Seq,
    /// Its records in the log so far.
    pub records: u64,
    /// A writer holds the store: the batch may still complete.
    pub writer_live: bool,
}

/// Space accounting for `info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpaceStats {
    /// Bytes written, zeroed or trimmed by all records.
    pub bytes_written: u64,
    /// Size of the log (payloads, references and record headers).
    pub log_bytes: u64,
    /// Size of everything under `index/`.
    pub index_bytes: u64,
    /// Of which the Merkle tree's stored hashes (`index/tree/`).
    pub tree_bytes: u64,
}

/// A reader of a store: any number may be open, also while the writer runs.
/// Reads see the state as of the last [`Store::refresh`]; the records of a
/// batch still being written (an import under way) are not part of any
/// state a reader shows until the batch is committed.
pub struct Store {
    idx: RwLock<Index>,
}

/// The longest range of a file [`Store::prefetch_records`] reads ahead.
pub const PREFETCH_MAX_BYTES: u64 = 64 << 20;

/// Read bytes `offset..offset + len` of `path` into the page cache, in
/// one sequential sweep, unless there are more than [`PREFETCH_MAX_BYTES`].
/// Not posix_fadvise(WILLNEED): its read-ahead runs from the start of the
/// range while the searches that follow begin at its end and wait behind
/// it (a cold listing of a busy day: 1.3 s with the advice, 0.7 s after a
/// sweep). Failures are ignored: nothing depends on it.
fn read_ahead(path: &Path, offset: u64, len: u64) {
    use std::os::unix::fs::FileExt;
    const CHUNK_BYTES: usize = 1 << 20;
    if len > PREFETCH_MAX_BYTES {
        return;
    }
    let Ok(file) = std::fs::File::open(path) else {
        return;
    };
    let mut buf = vec![0u8; CHUNK_BYTES.min(len as usize)];
    let mut at = offset;
    while at < offset + len {
        match file.read_at(&mut buf, at) {
            Ok(0) | Err(_) => return,
            Ok(n) => at += n as u64,
        }
    }
}

/// Take in what a live writer appended, and settle which of it a reader
/// may show: the batch file is read before and after the log is scanned,
/// and the scan repeated until no batch began or ended in between, so the
/// cap matches the records taken in.
fn settle(i: &mut Index) -> Result<()> {
    let mut before = batch::read_raw(i.dir())?;
    for _ in 0..100 {
        i.scan()?;
        let after = batch::read_raw(i.dir())?;
        if after == before {
            let cap = match batch::parse(i.dir(), &after) {
                Ok(b) => b.open.map(|o| index::Cap {
                    head: Head {
                        seq: o.manifest.indexed_through,
                        time_ns: (o.manifest.indexed_through.0 > 0).then_some(o.manifest.head_time),
                        chain: o.manifest.head_chain,
                    },
                    log_offset: o.log_offset,
                    bytes_written: o.manifest.bytes_written,
                }),
                Err(e) => {
                    log::warn!("{e}; showing every record in the log");
                    None
                }
            };
            i.set_cap(cap);
            return Ok(());
        }
        before = after;
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // Batches beginning and ending faster than a scan: show only what was
    // there before the first scan began... which is not known either; the
    // safe answer is an error the caller can retry.
    Err(StoreError::io(
        i.dir().join(layout::BATCH_FILE),
        std::io::Error::other("batches keep beginning and ending while reading; try again"),
    ))
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store> {
        let mut idx = Index::open(dir, false)?;
        settle(&mut idx)?;
        if let Some(stop) = idx.stop().filter(|s| !s.at_end) {
            log::warn!(
                "{}: record {} at byte {}: {}; reading only the {} records before it",
                idx.log_path().display(),
                stop.seq,
                stop.offset_bytes,
                stop.reason,
                idx.head().seq.0
            );
        }
        Ok(Store {
            idx: RwLock::new(idx),
        })
    }

    /// The store's directory.
    pub fn dir(&self) -> std::path::PathBuf {
        self.idx.read().dir().to_path_buf()
    }

    pub fn geometry(&self) -> Geometry {
        let i = self.idx.read();
        Geometry {
            size_bytes: i.header().size_bytes,
            block_size: i.header().block_size,
        }
    }

    pub fn header(&self) -> format::StoreHeader {
        *self.idx.read().header()
    }

    /// The newest state (the state before a batch still being written).
    pub fn head(&self) -> Head {
        self.idx.read().visible_head()
    }

    /// Where the scan of the log stopped short of its end, if it did. A
    /// record still being written by a live writer is not a stop, nor is
    /// one inside an unfinished batch (the next writer cuts the batch).
    pub fn tail_stop(&self) -> Option<TailStop> {
        let i = self.idx.read();
        let in_batch = |s: &TailStop| i.cap().is_some_and(|c| s.offset_bytes >= c.log_offset);
        i.stop()
            .cloned()
            .filter(|s| !(s.at_end && (in_batch(s) || writer::writer_is_live(i.dir()))))
    }

    /// The batch begun and not committed, if there is one: an import under
    /// way (a writer is live) or one that did not finish (the next writer
    /// cuts it). No state a reader shows includes its records.
    pub fn pending_batch(&self) -> Option<PendingBatch> {
        let i = self.idx.read();
        let c = i.cap()?;
        Some(PendingBatch {
            first_seq: Seq(c.head.seq.0 + 1),
            records: i.head().seq.0.saturating_sub(c.head.seq.0),
            writer_live: writer::writer_is_live(i.dir()),
        })
    }

    /// The Mark records among the last `within` records, newest first
    /// (bounded work on a long history; `log` lists them all).
    pub fn recent_marks(&self, within: u64) -> Result<Vec<RecordInfo>> {
        let head = self.head().seq.0;
        let mut out = Vec::new();
        for seq in (head.saturating_sub(within) + 1..=head).rev() {
            let kind = self.idx.read().kind_of(Seq(seq))?;
            if kind == Some(RecordKind::Mark) {
                out.push(self.record(Seq(seq))?);
            }
        }
        Ok(out)
    }

    /// Take in records a live writer appended since the last look.
    pub fn refresh(&self) -> Result<bool> {
        let mut i = self.idx.write();
        let before = i.visible_head();
        if i.manifest_changed()? {
            i.load_manifest()?;
        }
        settle(&mut i)?;
        Ok(i.visible_head() != before)
    }

    /// The state a time names.
    pub fn resolve(&self, spec: TimeSpec) -> Result<Seq> {
        let i = self.idx.read();
        let head = i.visible_head().seq;
        match spec {
            TimeSpec::Latest => Ok(head),
            TimeSpec::AfterSeq(s) if s > head => Err(StoreError::NoSuchState { seq: s, head }),
            TimeSpec::AfterSeq(s) => Ok(s),
            TimeSpec::At(t) => Ok(i.seq_at(t)?.min(head)),
        }
    }

    /// The time of record `seq` (1..=head).
    pub fn time_of(&self, seq: Seq) -> Result<TimeNs> {
        let i = self.idx.read();
        check_state(&i, seq)?;
        i.time_of(seq)
    }

    /// Times of records `from..=to`.
    pub fn seq_times(&self, from: Seq, to: Seq) -> Result<Vec<TimeNs>> {
        let i = self.idx.read();
        check_state(&i, to)?;
        (from.0.max(1)..=to.0).map(|s| i.time_of(Seq(s))).collect()
    }

    /// Bring into the page cache what looking up records
    /// `from..=to` by time reads (their `seqs` entries and the heads of the
    /// records in the log), for a reader about to visit many of them, as
    /// a listing of a busy day does: read in one sweep, not page by page
    /// as the searches come to them. Nothing for a range longer than
    /// [`PREFETCH_MAX_BYTES`] (records with large payloads, whose heads
    /// are few and far apart).
    pub fn prefetch_records(&self, from: Seq, to: Seq) {
        // The reading is done without holding the index, which a refresh
        // would otherwise wait for (and every reader behind it).
        let (dir, from, to, log_range) = {
            let i = self.idx.read();
            let (from, to) = (from.max(Seq(1)), to.min(i.visible_head().seq));
            if from > to {
                return;
            }
            let log_range = match (i.offset_of(from), i.offset_of(to)) {
                (Ok(start), Ok(end)) => Some((start, end)),
                _ => None,
            };
            (i.dir().to_path_buf(), from, to, log_range)
        };
        let entries = (from.0 - 1) / index::SEQ_STRIDE..index::seq_entries(to.0);
        read_ahead(
            &dir.join(layout::INDEX_DIR).join(layout::SEQS_FILE),
            entries.start * index::SEQ_ENTRY_LEN,
            (entries.end - entries.start) * index::SEQ_ENTRY_LEN,
        );
        if let Some((start, end)) = log_range {
            let log_bytes = end.saturating_sub(start) + format::RECORD_IDENTITY_LEN as u64;
            read_ahead(&dir.join(layout::LOG_FILE), start, log_bytes);
        }
    }

    pub fn record(&self, seq: Seq) -> Result<RecordInfo> {
        let i = self.idx.read();
        check_state(&i, seq)?;
        let mut buf = Vec::new();
        let h = i.read_record(seq, &mut buf)?;
        let mark = (h.kind == RecordKind::Mark)
            .then(|| String::from_utf8_lossy(format::record_body(&buf)).into_owned());
        Ok(RecordInfo {
            seq: h.seq,
            time_ns: h.time_ns,
            kind: h.kind,
            flags: h.flags,
            offset_bytes: h.offset_bytes,
            length_bytes: h.length_bytes,
            mark,
            content_hash: h.content_hash.unwrap_or_default(),
            chain: i.chain_at(&h)?,
        })
    }

    /// Record `seq` and the operation that made it (a write's data rebuilt
    /// from its blocks): what a copy of the history needs.
    pub fn record_op(&self, seq: Seq) -> Result<(RecordInfo, OwnedOp)> {
        let r = self.record(seq)?;
        let payload = match r.kind {
            RecordKind::Write => self.record_data(seq)?.unwrap_or_default(),
            RecordKind::Mark => r.mark.clone().unwrap_or_default().into_bytes(),
            _ => Vec::new(),
        };
        let op = OwnedOp::from_parts(r.kind, r.offset_bytes, r.length_bytes, payload).ok_or_else(
            || {
                let path = self.idx.read().log_path().to_path_buf();
                StoreError::corrupted(
                    path,
                    format!("record {seq}: its content does not fit its kind"),
                )
            },
        )?;
        Ok((r, op))
    }

    /// The bytes a Write record wrote, rebuilt from its blocks.
    pub fn record_data(&self, seq: Seq) -> Result<Option<Vec<u8>>> {
        let i = self.idx.read();
        check_state(&i, seq)?;
        let mut buf = Vec::new();
        let h = i.read_record(seq, &mut buf)?;
        if h.kind != RecordKind::Write {
            return Ok(None);
        }
        let offset = i.offset_of(seq)?;
        let locs = format::record_block_locs(
            offset,
            &h,
            format::record_body(&buf),
            i.header().block_size,
            i.header().size_bytes,
        )
        .map_err(|e| StoreError::corrupted(i.log_path(), format!("record {seq}: {e}")))?;
        let bs = i.header().block_size as u64;
        let mut block = vec![0u8; bs as usize];
        let mut scratch = Vec::new();
        let mut out = Vec::with_capacity(h.length_bytes as usize);
        let end = h.offset_bytes + h.length_bytes;
        for (b, loc) in locs {
            i.read_loc(loc, &mut block, &mut scratch)?;
            let (lo, hi) = ((b * bs).max(h.offset_bytes), ((b + 1) * bs).min(end));
            out.extend_from_slice(&block[(lo - b * bs) as usize..(hi - b * bs) as usize]);
        }
        Ok(Some(out))
    }

    /// The disk as of `state`: `buf.len()` bytes from `offset_bytes`.
    pub fn read_at(&self, state: Seq, offset_bytes: u64, buf: &mut [u8]) -> Result<()> {
        let i = self.idx.read();
        check_state(&i, state)?;
        i.read_at(state, offset_bytes, buf)
    }

    /// Which stored content block `block` had as of `state` (one index
    /// lookup). Content is stored once, so equal ids mean equal content.
    pub fn block_content(&self, state: Seq, block: BlockNo) -> Result<ContentId> {
        let i = self.idx.read();
        check_state(&i, state)?;
        Ok(ContentId(i.lookup(block.0, state)?))
    }

    /// The first record after state `after` (and up to the newest state)
    /// that writes, zeroes or trims block `block`: O(log n), whatever the
    /// number of versions. What lets a reader jump from one change of a
    /// set of blocks to the next without looking at the records between.
    pub fn next_write(&self, block: BlockNo, after: Seq) -> Result<Option<Seq>> {
        self.idx.read().next_write(block.0, after)
    }

    /// The last record up to state `state` that wrote block `block`; `None`
    /// if none did (the block is all zeros).
    pub fn last_write(&self, block: BlockNo, state: Seq) -> Result<Option<Seq>> {
        let i = self.idx.read();
        check_state(&i, state)?;
        i.last_write(block.0, state)
    }

    /// Decode the block `id` names into `out` (one block's bytes; zeros for
    /// an all-zero block, without reading anything).
    pub fn read_content(&self, id: ContentId, out: &mut [u8]) -> Result<()> {
        let mut scratch = Vec::new();
        self.idx.read().read_loc(id.0, out, &mut scratch)
    }

    pub fn space(&self) -> Result<SpaceStats> {
        let i = self.idx.read();
        let log_bytes = i.log_end();
        let mut index_bytes = 0;
        let idir = i.dir().join(layout::INDEX_DIR);
        // No index/ (deleted, to be rebuilt) is an index of 0 bytes.
        match std::fs::read_dir(&idir) {
            Ok(entries) => {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_file()) {
                        index_bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(&idir, e)),
        }
        let mut tree_bytes = 0;
        if let Ok(entries) = std::fs::read_dir(idir.join(layout::TREE_DIR)) {
            for e in entries.flatten() {
                tree_bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
        index_bytes += tree_bytes;
        Ok(SpaceStats {
            // Not counting an unfinished batch's records.
            bytes_written: i
                .cap()
                .filter(|c| c.head.seq < i.head().seq)
                .map_or(i.bytes_written(), |c| c.bytes_written),
            log_bytes,
            index_bytes,
            tree_bytes,
        })
    }
}

/// The Merkle tree over the records (see [`crate::merkle`]; its stored
/// hashes are part of the index). The tree of state `s` is the tree of
/// records `1..=s`: its size is `s`.
impl Store {
    /// The root hash of the tree of state `size`.
    pub fn tree_root(&self, size: Seq) -> Result<Hash32> {
        let i = self.idx.read();
        check_state(&i, size)?;
        i.tree_root(size.0)
    }

    /// The inclusion proof of record `seq` in the tree of state `size`.
    pub fn inclusion_proof(&self, seq: Seq, size: Seq) -> Result<Vec<Hash32>> {
        let i = self.idx.read();
        check_state(&i, size)?;
        i.inclusion_proof(seq, size.0)
    }

    /// The consistency proof from the tree of state `old` to that of `new`.
    pub fn consistency_proof(&self, old: Seq, new: Seq) -> Result<Vec<Hash32>> {
        let i = self.idx.read();
        check_state(&i, new)?;
        i.consistency_proof(old.0, new.0)
    }

    /// The leaf data of record `seq`: its canonical content (see
    /// [`RecordLeaf`]).
    pub fn leaf_data(&self, seq: Seq) -> Result<[u8; LEAF_DATA_LEN]> {
        let i = self.idx.read();
        check_state(&i, seq)?;
        if seq.0 == 0 {
            return Err(StoreError::NoSuchState {
                seq,
                head: i.visible_head().seq,
            });
        }
        Ok(i.record_header(seq)?.canonical())
    }
}

/// Bytes of a record's Merkle leaf data.
pub const LEAF_DATA_LEN: usize = format::CANONICAL_LEN;

/// A record's Merkle leaf data decoded: its canonical content, which is
/// `seq` u64, `time_ns` i64, `kind` u8, `flags` u8, `offset_bytes` u64,
/// `length_bytes` u64, `content_hash` (32 bytes), little-endian, 66 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLeaf {
    pub seq: Seq,
    pub time_ns: TimeNs,
    pub kind: RecordKind,
    pub flags: OpFlags,
    pub offset_bytes: u64,
    pub length_bytes: u64,
    pub content_hash: Hash32,
}

impl RecordLeaf {
    /// `None` if `data` is not 66 bytes of a known kind.
    pub fn decode(data: &[u8]) -> Option<RecordLeaf> {
        let h = format::decode_canonical(data.try_into().ok()?)?;
        Some(RecordLeaf {
            seq: h.seq,
            time_ns: h.time_ns,
            kind: h.kind,
            flags: h.flags,
            offset_bytes: h.offset_bytes,
            length_bytes: h.length_bytes,
            content_hash: h.content_hash?,
        })
    }
}

/// A state a reader may show: `0..=` the visible head.
fn check_state(i: &Index, seq: Seq) -> Result<()> {
    let head = i.visible_head().seq;
    if seq > head {
        return Err(StoreError::NoSuchState { seq, head });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{format, Op, OpFlags, Store, TimeSpec, Writer, WriterOptions};
    use crate::units::{BlockNo, Seq, TimeNs};

    /// Raw blocks stored one after another (each after its tag byte) are
    /// read together, across the 512 blocks one preadv takes, and beside
    /// zero, compressed and referenced blocks in the same read.
    #[test]
    fn runs_of_raw_blocks_read_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let bs = 4096usize;
        Writer::init(dir.path(), (2048 * bs) as u64, bs as u32).unwrap();
        let mut w = Writer::open(dir.path()).unwrap();
        let mut disk = vec![0u8; 2048 * bs];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for b in disk.chunks_mut(8) {
            b.copy_from_slice(&crate::testing::xorshift64(&mut x).to_le_bytes());
        }
        // Block 700 zero, 701 compressible, 702 a copy of block 3 (a
        // reference), the rest incompressible.
        disk[700 * bs..701 * bs].fill(0);
        disk[701 * bs..702 * bs].fill(7);
        disk.copy_within(3 * bs..4 * bs, 702 * bs);
        w.append(
            TimeNs(1),
            Op::Write {
                offset_bytes: 0,
                data: &disk[..1500 * bs],
            },
            OpFlags::default(),
        )
        .unwrap();
        w.append(
            TimeNs(2),
            Op::Write {
                offset_bytes: (1500 * bs) as u64,
                data: &disk[1500 * bs..],
            },
            OpFlags::default(),
        )
        .unwrap();
        w.close().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let head = store.head().seq;
        for (from, len) in [
            (0, 2048 * bs),
            (bs / 2, 1200 * bs),
            (510 * bs, 5 * bs),
            (698 * bs, 6 * bs + 17),
            (1490 * bs + 3, 20 * bs),
        ] {
            let mut buf = vec![0u8; len];
            store.read_at(head, from as u64, &mut buf).unwrap();
            assert!(
                buf == disk[from..from + len],
                "read of {len} bytes at {from}"
            );
        }
    }

    /// `seqs` holds every 16th record's offset: every record's time and
    /// offset, and every time's state, come out right whichever order they
    /// are asked in (strides walked from their entry or from a record
    /// already known), with records of different sizes and equal times;
    /// and a damaged entry is reported, never followed.
    #[test]
    fn sparse_seqs_answer_for_every_record() {
        use crate::store::layout;
        let dir = tempfile::tempdir().unwrap();
        Writer::init(dir.path(), 1 << 22, 4096).unwrap();
        let mut w = Writer::open_with(dir.path(), WriterOptions { flush_threshold: 8 }).unwrap();
        let n = 203u64;
        let time = |i: u64| TimeNs(1_000 + (i / 3) as i64 * 10);
        for i in 0..n {
            let data = vec![i as u8 | 1; (i as usize % 5 + 1) * 1000];
            let op = if i % 4 == 0 {
                Op::Flush
            } else {
                Op::Write {
                    offset_bytes: i * 4096,
                    data: &data,
                }
            };
            w.append(time(i), op, OpFlags::default()).unwrap();
        }
        w.close().unwrap();
        let log_offsets: Vec<u64> = {
            let log = std::fs::read(dir.path().join(layout::LOG_FILE)).unwrap();
            let mut at = 0usize;
            let mut out = Vec::new();
            while at < log.len() {
                out.push(at as u64);
                at +=
                    format::peek_record_len(log[at..at + 8].try_into().unwrap()).unwrap() as usize;
            }
            out
        };
        let seqs_len =
            std::fs::metadata(dir.path().join(layout::INDEX_DIR).join(layout::SEQS_FILE))
                .unwrap()
                .len();
        assert_eq!(seqs_len, n.div_ceil(16) * 8, "one entry per 16 records");
        let mut orders: Vec<Vec<u64>> = vec![(1..=n).collect(), (1..=n).rev().collect()];
        let mut x = 7u64;
        orders.push(
            (0..400)
                .map(|_| crate::testing::xorshift64(&mut x) % n + 1)
                .collect(),
        );
        for order in orders {
            let store = Store::open(dir.path()).unwrap();
            for s in order {
                let i = store.idx.read();
                assert_eq!(
                    i.offset_of(Seq(s)).unwrap(),
                    log_offsets[s as usize - 1],
                    "{s}"
                );
                assert_eq!(i.time_of(Seq(s)).unwrap(), time(s - 1), "{s}");
            }
        }
        let store = Store::open(dir.path()).unwrap();
        for i in 0..n {
            // The last record at or before each time: the third of each
            // group of three sharing it.
            let want = (i / 3 * 3 + 3).min(n);
            assert_eq!(
                store.resolve(TimeSpec::At(time(i))).unwrap(),
                Seq(want),
                "{i}"
            );
        }
        assert_eq!(store.resolve(TimeSpec::At(TimeNs(999))).unwrap(), Seq(0));
        // Entry 3 (record 49) pointed at record 50: named, not followed.
        let seqs = dir.path().join(layout::INDEX_DIR).join(layout::SEQS_FILE);
        let mut bytes = std::fs::read(&seqs).unwrap();
        bytes[24..32].copy_from_slice(&log_offsets[49].to_le_bytes());
        std::fs::write(&seqs, &bytes).unwrap();
        let store = Store::open(dir.path()).unwrap();
        let err = store.time_of(Seq(55)).unwrap_err().to_string();
        assert!(err.contains("does not point at that record"), "{err}");
    }

    /// Reading ahead is only a hint: any range, however odd, changes
    /// nothing a reader sees.
    #[test]
    fn prefetch_records_takes_any_range() {
        let dir = tempfile::tempdir().unwrap();
        Writer::init(dir.path(), 1 << 20, 4096).unwrap();
        let mut w = Writer::open(dir.path()).unwrap();
        for i in 0..3 {
            w.append(TimeNs(1_000 + i), Op::Flush, OpFlags::default())
                .unwrap();
        }
        w.close().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for (from, to) in [
            (0, 0),
            (0, 3),
            (1, 100),
            (3, 1),
            (2, 2),
            (u64::MAX, u64::MAX),
        ] {
            store.prefetch_records(Seq(from), Seq(to));
        }
        assert_eq!(store.time_of(Seq(3)).unwrap(), TimeNs(1_002));
    }

    /// next_write and last_write agree with a brute-force walk over the
    /// records, whether the versions sit in flushed runs (several, as a
    /// small flush threshold makes them) or in the in-memory tail.
    #[test]
    fn next_and_last_write_match_the_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        Writer::init(&path, 64 * 4096, 4096).unwrap();
        let mut w = Writer::open_with(
            &path,
            WriterOptions {
                flush_threshold: 50,
            },
        )
        .unwrap();
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut written: Vec<Vec<u64>> = Vec::new(); // blocks of record i+1
        for i in 0..400u64 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let b = rng % 64;
            let n = 1 + (rng >> 20) % 3;
            let n = n.min(64 - b);
            let data = vec![(i % 251) as u8 + 1; (n * 4096) as usize];
            let op = if i % 17 == 0 {
                Op::Trim {
                    offset_bytes: b * 4096,
                    length_bytes: n * 4096,
                }
            } else {
                Op::Write {
                    offset_bytes: b * 4096,
                    data: &data,
                }
            };
            w.append(TimeNs(1_000 + i as i64), op, OpFlags::default())
                .unwrap();
            written.push((b..b + n).collect());
        }
        w.close().unwrap();
        let s = Store::open(&path).unwrap();
        for block in 0..64u64 {
            let seqs: Vec<u64> = (1..=400u64)
                .filter(|&q| written[q as usize - 1].contains(&block))
                .collect();
            for after in 0..=400u64 {
                let next = seqs.iter().copied().find(|&q| q > after).map(Seq);
                assert_eq!(s.next_write(BlockNo(block), Seq(after)).unwrap(), next);
                let last = seqs.iter().copied().rev().find(|&q| q <= after).map(Seq);
                assert_eq!(s.last_write(BlockNo(block), Seq(after)).unwrap(), last);
            }
        }
    }
}
