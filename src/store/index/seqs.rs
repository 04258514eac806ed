//! `index/seqs`: the log offset (u64) of every [`SEQ_STRIDE`]th record:
//! entry `j` is record `16j + 1`'s. The records between are found by
//! walking forward from there, each record's head giving its length (at
//! most 15 small reads, all in the same stretch of log; a walk in order
//! pays one a record, as reading the records' times does anyway). Records
//! after the manifest's point are in memory (`tail`). Binary search over
//! the times maps a time to the state it names: over the entries first,
//! then within one stride. The file carries no checksum: the head of every
//! record reached is read, and must be a record with the sequence number
//! due; its time comes from there. (Index format 6 kept an entry for every
//! record, 8 bytes each; format 5 also its time, 16.)

use super::{Index, TailRecord};
use crate::store::error::{IoContext, Result, StoreError};
use crate::store::format::{self, read_record_at, RecordHeader, RecordKind};
use crate::units::{Hash32, Seq, TimeNs};
use std::os::unix::fs::FileExt;

/// Bytes per entry.
pub const SEQ_ENTRY_LEN: u64 = 8;
/// One record in this many has an entry.
pub const SEQ_STRIDE: u64 = 16;
/// Bytes of a record's head read for a `seqs` entry: its sequence number,
/// time and length.
const SEQ_CHECK_LEN: usize = format::RECORD_IDENTITY_LEN;

/// Entries `seqs` holds for records `1..=records`.
pub fn seq_entries(records: u64) -> u64 {
    records.div_ceil(SEQ_STRIDE)
}

/// The record that starts the stride holding `seq` (>= 1).
fn stride_start(seq: u64) -> u64 {
    seq - (seq - 1) % SEQ_STRIDE
}
/// Checked entries kept (1.5 MiB): the binary searches of a listing or of
/// time lookups go through the same upper levels again and again.
const SEQ_CACHE_ENTRIES: usize = 1 << 16;

/// Checked `seqs` entries, direct-mapped: (seq, manifest generation, entry).
pub(super) struct SeqCache(parking_lot::Mutex<Box<[(u64, u64, TailRecord)]>>);

impl SeqCache {
    pub(super) fn new() -> SeqCache {
        let empty = (
            0,
            0,
            TailRecord {
                time_ns: TimeNs(0),
                offset_bytes: 0,
                record_len: 0,
            },
        );
        SeqCache(parking_lot::Mutex::new(
            vec![empty; SEQ_CACHE_ENTRIES].into_boxed_slice(),
        ))
    }

    fn get(&self, seq: Seq, generation: u64) -> Option<TailRecord> {
        let slot = self.0.lock()[seq.0 as usize % SEQ_CACHE_ENTRIES];
        (slot.0 == seq.0 && slot.1 == generation).then_some(slot.2)
    }

    fn put(&self, seq: Seq, generation: u64, e: TailRecord) {
        self.0.lock()[seq.0 as usize % SEQ_CACHE_ENTRIES] = (seq.0, generation, e);
    }
}

impl Index {
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
        let generation = self.manifest.generation;
        if let Some(entry) = self.seq_cache.get(seq, generation) {
            return Ok(entry);
        }
        // Walk from the nearest record of the stride already known, else
        // from the stride's entry.
        let start = stride_start(seq.0);
        let known = (start..seq.0)
            .rev()
            .find_map(|s| self.seq_cache.get(Seq(s), generation).map(|e| (s, e)));
        let (mut s, mut offset) = match known {
            Some((s, e)) => (s + 1, e.offset_bytes + u64::from(e.record_len)),
            None => (start, self.stride_offset(start)?),
        };
        loop {
            let entry = self.entry_from_log(Seq(s), offset)?;
            self.seq_cache.put(Seq(s), generation, entry);
            if s == seq.0 {
                return Ok(entry);
            }
            offset += u64::from(entry.record_len);
            s += 1;
        }
    }

    /// The log offset `seqs` holds for record `start`, the first of its
    /// stride.
    fn stride_offset(&self, start: u64) -> Result<u64> {
        let mut e = [0u8; SEQ_ENTRY_LEN as usize];
        let seqs = self
            .seqs
            .as_ref()
            .ok_or_else(|| StoreError::corrupted(&self.seqs_path, "missing"))?;
        seqs.read_exact_at(&mut e, (start - 1) / SEQ_STRIDE * SEQ_ENTRY_LEN)
            .at(&self.seqs_path)?;
        Ok(u64::from_le_bytes(e))
    }

    /// `seqs` is not checksummed: an entry, or a step of a walk from one,
    /// must reach the head of a record (magic) with this sequence number,
    /// whose time and length it takes.
    fn entry_from_log(&self, seq: Seq, offset_bytes: u64) -> Result<TailRecord> {
        let mut head = [0u8; SEQ_CHECK_LEN];
        let found = (offset_bytes < self.log_end)
            .then(|| self.log.read_exact_at(&mut head, offset_bytes).ok())
            .flatten()
            .and_then(|()| {
                let (s, time_ns, _) = format::record_identity(&head)?;
                let len = format::peek_record_len(head[..8].try_into().unwrap()).ok()?;
                (s == seq).then_some((time_ns, len))
            });
        match found {
            Some((time_ns, record_len)) => Ok(TailRecord {
                time_ns,
                offset_bytes,
                record_len,
            }),
            None => Err(StoreError::corrupted(
                &self.seqs_path,
                format!(
                    "the entry for record {seq} (log byte {offset_bytes}) does not point at \
                     that record; the index was damaged or edited: run `diskhist verify`, and \
                     delete index/ to have it rebuilt from the log"
                ),
            )),
        }
    }

    pub fn time_of(&self, seq: Seq) -> Result<TimeNs> {
        Ok(self.seq_entry(seq)?.time_ns)
    }

    pub fn offset_of(&self, seq: Seq) -> Result<u64> {
        Ok(self.seq_entry(seq)?.offset_bytes)
    }

    /// The last record whose time is <= `t` (Seq(0) if none).
    pub fn seq_at(&self, t: TimeNs) -> Result<Seq> {
        self.last_seq_where(|s| Ok(self.time_of(s)? <= t))
    }

    /// The record that holds log byte `offset` (Seq(0) for an empty log).
    pub fn record_holding(&self, offset: u64) -> Result<Seq> {
        self.last_seq_where(|s| Ok(self.offset_of(s)? <= offset))
    }

    /// The last record for which `holds` is true (Seq(0) if none), by
    /// binary search: it must hold for the records up to some point and
    /// for none after. The search runs over the records that start a
    /// stride (one read each), then forward within one stride.
    fn last_seq_where(&self, mut holds: impl FnMut(Seq) -> Result<bool>) -> Result<Seq> {
        let head = self.head.seq.0;
        if head == 0 || !holds(Seq(1))? {
            return Ok(Seq(0));
        }
        let (mut lo, mut hi) = (0u64, (head - 1) / SEQ_STRIDE);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if holds(Seq(mid * SEQ_STRIDE + 1))? {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        let mut s = lo * SEQ_STRIDE + 1;
        let end = (s + SEQ_STRIDE - 1).min(head);
        while s < end && holds(Seq(s + 1))? {
            s += 1;
        }
        Ok(Seq(s))
    }

    /// The kind of record `seq`, from its first bytes only (no checksum:
    /// for choosing which records to read whole).
    pub fn kind_of(&self, seq: Seq) -> Result<Option<RecordKind>> {
        let offset = self.offset_of(seq)?;
        let mut head = [0u8; format::RECORD_IDENTITY_LEN];
        self.log
            .read_exact_at(&mut head, offset)
            .at(&self.log_path)?;
        Ok(format::record_identity(&head).and_then(|(_, _, kind)| kind))
    }

    /// Read and check the whole record `seq`, its content hash rebuilt if
    /// its format does not store it.
    pub fn read_record(&self, seq: Seq, buf: &mut Vec<u8>) -> Result<RecordHeader> {
        let offset = self.offset_of(seq)?;
        let len = self.log.metadata().at(&self.log_path)?.len();
        let mut h = match read_record_at(&self.log, offset, len, buf).at(&self.log_path)? {
            Ok(h) if h.seq == seq => h,
            Ok(h) => {
                return Err(StoreError::corrupted(
                    &self.log_path,
                    format!(
                        "record at byte {offset} is {} where {seq} was expected",
                        h.seq
                    ),
                ))
            }
            Err(f) => {
                return Err(StoreError::corrupted(
                    &self.log_path,
                    format!("record {seq} at byte {offset}: {f}"),
                ))
            }
        };
        if h.content_hash.is_none() {
            let locs = format::record_block_locs(
                offset,
                &h,
                format::record_body(buf),
                self.header.block_size,
                self.header.size_bytes,
            )
            .map_err(|e| StoreError::corrupted(&self.log_path, format!("record {seq}: {e}")))?;
            self.rebuild_content(offset, &mut h, buf, &locs)?;
        }
        Ok(h)
    }

    /// The chain after record `seq` (32 zero bytes for Seq(0)), whose
    /// header `h` the caller read. Format 1 stores it in every record;
    /// format 2 whole every [`format::CHAIN_EVERY`] records, so it is
    /// computed forward from the last whole one (or the head, or the last
    /// chain computed), each record's check admitting the step.
    pub fn chain_at(&self, h: &RecordHeader) -> Result<Hash32> {
        let seq = h.seq;
        if let Some(c) = h.link.chain() {
            return Ok(c);
        }
        if seq == self.head.seq {
            return Ok(self.head.chain);
        }
        let whole = Seq(seq.0 - seq.0 % format::CHAIN_EVERY);
        let mut from = match *self.chain_memo.lock() {
            Some((s, c)) if s >= whole && s <= seq => (s, c),
            _ if whole.0 == 0 => (Seq(0), Hash32::default()),
            _ => {
                let w = self.record_header(whole)?;
                (whole, self.stored_chain(&w)?)
            }
        };
        while from.0 < seq {
            let next = Seq(from.0 .0 + 1);
            let r = if next == seq {
                *h
            } else {
                self.record_header(next)?
            };
            let chain = r.chain_after(&from.1).ok_or_else(|| {
                StoreError::corrupted(
                    &self.log_path,
                    format!(
                        "record {next}: its chain does not follow from the previous record; \
                         run `diskhist verify`"
                    ),
                )
            })?;
            from = (next, chain);
        }
        *self.chain_memo.lock() = Some(from);
        Ok(from.1)
    }

    fn stored_chain(&self, h: &RecordHeader) -> Result<Hash32> {
        h.link.chain().ok_or_else(|| {
            StoreError::corrupted(
                &self.log_path,
                format!("record {} should carry its whole chain", h.seq),
            )
        })
    }
}
