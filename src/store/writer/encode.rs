//! Encoding a record's body: each block's whole new content (a partial
//! write merged with the previous version), stored as a reference to
//! identical content stored earlier, as LZ4 where that saves at least an
//! eighth, or raw; zero blocks cost nothing.

use super::Writer;
use crate::store::error::{Result, StoreError};
use crate::store::format::{self, Encoding, Loc};
use crate::store::index::run;
use crate::store::op::Op;
use std::collections::HashMap;

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
        pending: &mut HashMap<[u8; 32], Loc>,
    ) -> Result<()> {
        let bs = u64::from(self.idx.header().block_size);
        let head = self.idx.head().seq;
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
    pub(super) fn encode_block(
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
        pending: &HashMap<[u8; 32], Loc>,
    ) -> Result<Option<Loc>> {
        match pending.get(hash) {
            Some(l) => Ok(Some(*l)),
            None => self.idx.find_dedup(hash),
        }
    }
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
