//! Encoding a record's body: each block's whole new content (a partial
//! write merged with the previous version), stored as a reference to
//! identical content stored earlier, as LZ4 where that saves at least an
//! eighth, or raw; zero blocks cost nothing.

use super::Writer;
use crate::store::error::{Result, StoreError};
use crate::store::format::{self, Encoding, Loc};
use crate::store::index::run;
use crate::store::op::Op;
use crate::units::Seq;
use run::KeyMap;

pub(super) fn is_zero(b: &[u8]) -> bool {
    let chunks = b.chunks_exact(16);
    let rest = chunks.remainder();
    rest.iter().all(|&x| x == 0)
        && chunks
            .into_iter()
            .all(|c| u128::from_ne_bytes(c.try_into().unwrap()) == 0)
}

impl Writer {
    pub(super) fn build_body(
        &mut self,
        buf: &mut Vec<u8>,
        rec_off: u64,
        op: Op<'_>,
        new_locs: &mut Vec<(u64, Loc)>,
        pending: &mut KeyMap<Loc>,
    ) -> Result<()> {
        let bs = u64::from(self.idx.header().block_size);
        let head = self.idx.head().seq;
        let mut block = std::mem::take(&mut self.block);
        block.resize(bs as usize, 0);
        let result = (|| -> Result<()> {
            match op {
                Op::Write { offset_bytes, data } if !data.is_empty() => {
                    let end = offset_bytes + data.len() as u64;
                    let hints = self.dedup_hints(offset_bytes, data, pending)?;
                    for b in offset_bytes / bs..=(end - 1) / bs {
                        let hint = hints
                            .get((b - offset_bytes / bs) as usize)
                            .copied()
                            .unwrap_or_default();
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
                        let loc = self.encode_block(buf, rec_off, content, pending, hint)?;
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
                        self.idx.header().block_size,
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
                        let loc =
                            self.encode_block(buf, rec_off, &block, pending, DedupHint::default())?;
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

    /// What a write of whole blocks already knows about each of them
    /// before it is encoded: its dedup key and what the index holds for it,
    /// and content stored beside an anchor it shares with an earlier record.
    ///
    /// Dedup runs keep only the anchors of long writes ([`run::is_anchor`]),
    /// so a write that repeats an earlier one finds its anchors by key and
    /// the blocks between them by position: block `i + k` of this write is
    /// compared with block `j + k` of the record whose block `j` it shares
    /// (before and after `i`), and past that record's ends with the records
    /// before and after it in the log (a long copy was written as several
    /// records). At most [`MAX_ALIGNMENTS`] alignments per write, each
    /// reading records of at most [`MAX_ALIGN_RECORD_BYTES`], bound what is
    /// read. Empty for writes of fewer than two blocks.
    fn dedup_hints(
        &mut self,
        offset_bytes: u64,
        data: &[u8],
        pending: &KeyMap<Loc>,
    ) -> Result<Vec<DedupHint>> {
        let bs = u64::from(self.idx.header().block_size);
        let end = offset_bytes + data.len() as u64;
        let first = offset_bytes / bs;
        let n = ((end - 1) / bs - first + 1) as usize;
        if n < 2 {
            return Ok(Vec::new());
        }
        let mut hints = vec![DedupHint::default(); n];
        let mut alignments = 0;
        let mut rec = std::mem::take(&mut self.scratch_record);
        let result = (|| -> Result<()> {
            for i in 0..n {
                let b = first + i as u64;
                let (lo, hi) = ((b * bs).max(offset_bytes), ((b + 1) * bs).min(end));
                let content = &data[(lo - offset_bytes) as usize..(hi - offset_bytes) as usize];
                if hi - lo != bs || is_zero(content) {
                    continue;
                }
                let key = run::dedup_key(content);
                let found = self.find_content(&key, pending)?;
                hints[i].looked_up = Some((key, found));
                let Some(loc) = found.filter(|l| l.encoding != Encoding::Zero) else {
                    continue;
                };
                if hints[i].beside == Some(loc) || alignments == MAX_ALIGNMENTS {
                    continue;
                }
                alignments += 1;
                let max = MAX_ALIGN_RECORD_BYTES;
                let seq = self.idx.record_holding(loc.offset_bytes)?;
                let Some(mut old) = self.idx.record_locs(seq, max, &mut rec)? else {
                    continue;
                };
                let Some(mut j) = old.iter().position(|(_, l)| *l == loc) else {
                    continue;
                };
                if n - i > old.len() - j {
                    if let Some(after) = self.idx.record_locs(Seq(seq.0 + 1), max, &mut rec)? {
                        old.extend(after);
                    }
                }
                if i > j {
                    if let Some(mut before) = self.idx.record_locs(Seq(seq.0 - 1), max, &mut rec)? {
                        j += before.len();
                        before.append(&mut old);
                        old = before;
                    }
                }
                for (k, h) in hints.iter_mut().enumerate() {
                    let Some(&(_, l)) = (j + k).checked_sub(i).and_then(|at| old.get(at)) else {
                        continue;
                    };
                    if l.encoding != Encoding::Zero && (k >= i || h.beside.is_none()) {
                        h.beside = Some(l);
                    }
                }
            }
            Ok(())
        })();
        // Keep a buffer for the next alignment, not the memory of a large one.
        rec.clear();
        rec.shrink_to(MAX_ALIGN_RECORD_BYTES as usize / 4);
        self.scratch_record = rec;
        result.map(|()| hints)
    }

    /// Append one block entry for `content`: nothing for zeros, a reference
    /// for content already stored, else the bytes (lz4 where it saves >= 1/8).
    pub(super) fn encode_block(
        &mut self,
        buf: &mut Vec<u8>,
        rec_off: u64,
        content: &[u8],
        pending: &mut KeyMap<Loc>,
        hint: DedupHint,
    ) -> Result<Loc> {
        if is_zero(content) {
            format::push_stored(buf, Encoding::Zero, &[]);
            return Ok(Loc::ZERO);
        }
        // A key or a position only finds a candidate: the bytes decide.
        if let Some(loc) = hint.beside {
            if self.stored_equals(loc, buf, rec_off, content)? {
                format::push_ref(buf, loc);
                return Ok(loc);
            }
        }
        let (hash, found) = match hint.looked_up {
            // Content met earlier in this record is found only now.
            Some((key, found)) => (
                key,
                pending
                    .get(&key)
                    .copied()
                    .or(found.filter(|&l| Some(l) != hint.beside)),
            ),
            None => {
                let key = run::dedup_key(content);
                (key, self.find_content(&key, pending)?)
            }
        };
        if let Some(loc) = found {
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
    pub(super) fn stored_equals(
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
                StoreError::corrupted(self.idx.log_path(), format!("block being recorded: {e}"))
            })
        } else {
            self.idx.read_loc(loc, &mut block, &mut self.cmp_scratch)
        };
        let equal = read.map(|()| block == content);
        self.cmp_block = block;
        equal
    }

    pub(super) fn find_content(
        &self,
        hash: &[u8; 32],
        pending: &KeyMap<Loc>,
    ) -> Result<Option<Loc>> {
        match pending.get(hash) {
            Some(l) => Ok(Some(*l)),
            None => self.idx.find_dedup(hash),
        }
    }
}

/// At most this many alignments with earlier records per write.
const MAX_ALIGNMENTS: usize = 4;
/// A record larger than this is not read to align a write with it (an
/// import's extents are 8 MiB; the largest operation 128 MiB).
const MAX_ALIGN_RECORD_BYTES: u64 = 16 << 20;

/// What [`Writer::dedup_hints`] learnt about one block of a write.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct DedupHint {
    /// Its dedup key, and what the index held for it before the write.
    looked_up: Option<([u8; 32], Option<Loc>)>,
    /// Content stored beside an anchor this write shares, where this block
    /// would be if the write repeats that record.
    beside: Option<Loc>,
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
pub(super) struct Lz4Backoff {
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
    use super::Lz4Backoff;

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
