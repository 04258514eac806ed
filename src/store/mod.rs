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
//!   index/seqs       one 16-byte entry per record: time, log offset
//!   index/MANIFEST   which sorted runs cover which records
//!   index/*.run      sorted (block, seq) -> payload location runs
//!   index/*.dedup    sorted content hash -> payload location runs
//! ```
//!
//! Everything under `index/` is derived from `log` and can be rebuilt from
//! it: delete `index/` and the next writer (any `ingest`, `import` or
//! `serve`) rebuilds it from the log; readers meanwhile scan the log.

pub use crate::producers::op::{Op, OpFlags, OwnedOp};
pub use crate::units::{BlockNo, Geometry, Hash32, Seq, TimeNs};
pub use error::StoreError;
pub use format::RecordKind;
pub use index::{Head, TailStop};
pub use writer::{Appended, Writer, WriterOptions, FLUSH_THRESHOLD};

pub mod error;
mod files;
pub mod format;
pub mod index;
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

/// Space accounting for `info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpaceStats {
    /// Bytes written, zeroed or trimmed by all records.
    pub bytes_written: u64,
    /// Size of the log (payloads, references and record headers).
    pub log_bytes: u64,
    /// Size of everything under `index/`.
    pub index_bytes: u64,
}

/// A reader of a store: any number may be open, also while the writer runs.
/// Reads see the state as of the last [`Store::refresh`].
pub struct Store {
    idx: RwLock<Index>,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store> {
        let idx = Index::open(dir, false)?;
        if let Some(stop) = idx.stop.as_ref().filter(|s| !s.at_end) {
            log::warn!(
                "{}: record {} at byte {}: {}; reading only the {} records before it",
                idx.log_path.display(),
                stop.seq,
                stop.offset_bytes,
                stop.reason,
                idx.head.seq.0
            );
        }
        Ok(Store {
            idx: RwLock::new(idx),
        })
    }

    pub fn geometry(&self) -> Geometry {
        let i = self.idx.read();
        Geometry {
            size_bytes: i.header.size_bytes,
            block_size: i.header.block_size,
        }
    }

    pub fn header(&self) -> format::StoreHeader {
        self.idx.read().header
    }

    pub fn head(&self) -> Head {
        self.idx.read().head
    }

    /// Where the scan of the log stopped short of its end, if it did.
    pub fn tail_stop(&self) -> Option<TailStop> {
        self.idx.read().stop.clone()
    }

    /// Take in records a live writer appended since the last look.
    pub fn refresh(&self) -> Result<bool> {
        let mut i = self.idx.write();
        let before = i.head;
        if i.manifest_changed()? {
            i.load_manifest()?;
        }
        i.scan()?;
        Ok(i.head != before)
    }

    /// The state a time names.
    pub fn resolve(&self, spec: TimeSpec) -> Result<Seq> {
        let i = self.idx.read();
        match spec {
            TimeSpec::Latest => Ok(i.head.seq),
            TimeSpec::AfterSeq(s) if s > i.head.seq => Err(StoreError::NoSuchState {
                seq: s,
                head: i.head.seq,
            }),
            TimeSpec::AfterSeq(s) => Ok(s),
            TimeSpec::At(t) => i.seq_at(t),
        }
    }

    pub fn time_of(&self, seq: Seq) -> Result<TimeNs> {
        self.idx.read().time_of(seq)
    }

    /// Times of records `from..=to`.
    pub fn seq_times(&self, from: Seq, to: Seq) -> Result<Vec<TimeNs>> {
        let i = self.idx.read();
        (from.0.max(1)..=to.0).map(|s| i.time_of(Seq(s))).collect()
    }

    pub fn record(&self, seq: Seq) -> Result<RecordInfo> {
        let i = self.idx.read();
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
            content_hash: h.content_hash,
            chain: h.chain,
        })
    }

    /// The bytes a Write record wrote, rebuilt from its blocks.
    pub fn record_data(&self, seq: Seq) -> Result<Option<Vec<u8>>> {
        let i = self.idx.read();
        let mut buf = Vec::new();
        let h = i.read_record(seq, &mut buf)?;
        if h.kind != RecordKind::Write {
            return Ok(None);
        }
        let offset = i.offset_of(seq)?;
        let locs = index::record_block_locs(
            offset,
            &h,
            format::record_body(&buf),
            i.header.block_size,
            i.header.size_bytes,
        )
        .map_err(|e| StoreError::corrupted(&i.log_path, format!("record {seq}: {e}")))?;
        let bs = i.header.block_size as u64;
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
        if state > i.head.seq {
            return Err(StoreError::NoSuchState {
                seq: state,
                head: i.head.seq,
            });
        }
        i.read_at(state, offset_bytes, buf)
    }

    /// Which content block `block` had as of `state`; equal locations mean
    /// equal content (content is stored once).
    pub fn block_loc(&self, state: Seq, block: BlockNo) -> Result<format::Loc> {
        self.idx.read().lookup(block.0, state)
    }

    pub fn space(&self) -> Result<SpaceStats> {
        let i = self.idx.read();
        let log_bytes = i.log_end;
        let mut index_bytes = 0;
        let idir = i.dir.join(index::INDEX_DIR);
        for e in std::fs::read_dir(&idir)
            .map_err(|e| StoreError::io(&idir, e))?
            .flatten()
        {
            index_bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
        }
        Ok(SpaceStats {
            bytes_written: i.bytes_written,
            log_bytes,
            index_bytes,
        })
    }
}
