//! Reading an image: the disk as of one state, rebuilt block by block from
//! the store on demand, with a bounded LRU cache of decoded blocks.
//!
//! Nothing is materialised: a read costs the store's O(log n) lookup per
//! block, and memory is bounded by the cache size plus one FUSE request's
//! buffers per worker thread, whatever the size of the disk.
//!
//! Blocks are keyed by the content they hold in the store
//! ([`Store::block_content`]), not by (state, block): content is stored once, so
//! eight states of a disk that share most blocks share their cache entries.
//! All-zero blocks are never cached or read at all.
//!
//! Streaming reads (requests of [`STREAM_BYTES`] or more: the kernel's
//! readahead of a sequential reader) go straight to the store and leave the
//! cache alone: they would only push out what random readers reuse, and
//! the kernel's page cache already keeps what they read. A cached reader
//! looks each block up once and reads the content it names
//! ([`Store::read_content`]).
//!
//! A miss reads into memory that is there already, never into memory
//! touched for the first time: a new buffer costs a page fault (about 5 µs
//! of a 90 µs cold read, measured). In a full cache a miss reads into the
//! buffer of the block it pushes out; while the cache grows it takes a
//! spare, made by [`BlockCache::stock_spares`], which the mount calls after
//! it has replied. The cache never holds more buffers than blocks.

use crate::store::{ContentId, Store, StoreError};
use crate::units::{BlockNo, Geometry, Seq};
use lru::LruCache;
use parking_lot::Mutex;
use std::num::NonZeroUsize;

/// Requests at least this long bypass the cache.
pub const STREAM_BYTES: u32 = 128 << 10;

/// Spare buffers [`BlockCache::stock_spares`] keeps ready: enough for a
/// few misses in a row, or one per thread answering the kernel.
const SPARES: usize = 8;

/// Decoded blocks by content location, least recently used out first, and
/// buffers ready for the next misses.
struct Blocks {
    lru: LruCache<ContentId, Box<[u8]>>,
    spares: Vec<Box<[u8]>>,
}

type Lru = Mutex<Blocks>;

pub struct BlockCache {
    geometry: Geometry,
    /// `None` when the cache size is below one block: caching off.
    blocks: Option<Lru>,
}

impl BlockCache {
    /// A cache holding at most `cache_bytes` of decoded blocks.
    pub fn new(geometry: Geometry, cache_bytes: u64) -> BlockCache {
        let capacity = cache_bytes / u64::from(geometry.block_size);
        let blocks = usize::try_from(capacity)
            .ok()
            .and_then(NonZeroUsize::new)
            .map(|cap| {
                Mutex::new(Blocks {
                    lru: LruCache::new(cap),
                    spares: Vec::new(),
                })
            });
        BlockCache { geometry, blocks }
    }

    /// Make new spare buffers, up to [`SPARES`] and never more than the
    /// cache may still grow by: off the path of a read, so that a miss
    /// reads into memory that is there already.
    pub fn stock_spares(&self) {
        let Some(blocks) = &self.blocks else { return };
        let want = {
            let b = blocks.lock();
            let room = b.lru.cap().get() - b.lru.len();
            SPARES.min(room).saturating_sub(b.spares.len())
        };
        if want == 0 {
            return;
        }
        // Zeroed, so every page is touched here and not by the next miss.
        let bs = self.geometry.block_size as usize;
        let made: Vec<Box<[u8]>> = (0..want)
            .map(|_| vec![0u8; bs].into_boxed_slice())
            .collect();
        blocks.lock().spares.extend(made);
    }

    /// Bytes `offset_bytes..offset_bytes + len` of the disk as of `state`,
    /// cut short at the end of the disk.
    pub fn read(
        &self,
        store: &Store,
        state: Seq,
        offset_bytes: u64,
        len: u32,
    ) -> Result<Vec<u8>, StoreError> {
        let size = self.geometry.size_bytes;
        let end = size.min(offset_bytes.saturating_add(u64::from(len)));
        let mut out = vec![0u8; end.saturating_sub(offset_bytes) as usize];
        self.read_into(store, state, offset_bytes, &mut out)?;
        Ok(out)
    }

    /// Fill `out` with the disk as of `state` from `offset_bytes`; the
    /// caller keeps `out` inside the disk.
    pub fn read_into(
        &self,
        store: &Store,
        state: Seq,
        offset_bytes: u64,
        out: &mut [u8],
    ) -> Result<(), StoreError> {
        if out.is_empty() {
            return Ok(());
        }
        let end = offset_bytes + out.len() as u64;
        debug_assert!(end <= self.geometry.size_bytes);
        let blocks = match &self.blocks {
            Some(b) if (out.len() as u64) < u64::from(STREAM_BYTES) => b,
            _ => return store.read_at(state, offset_bytes, out),
        };
        out.fill(0);
        let bs = u64::from(self.geometry.block_size);
        let first = self.geometry.block_of(offset_bytes).0;
        let last = self.geometry.block_of(end - 1).0;
        // Contiguous blocks missing from the cache, read in one store call.
        let mut missing: Vec<(u64, ContentId)> = Vec::new();
        for b in first..=last {
            let loc = store.block_content(state, BlockNo(b))?;
            if loc.is_zero() {
                continue; // `out` is zeroed
            }
            // The guard must be gone before `fill` locks again.
            let hit = match blocks.lock().lru.get(&loc) {
                Some(data) => {
                    copy_part(out, offset_bytes, b * bs, data);
                    true
                }
                None => false,
            };
            if hit {
                continue;
            }
            if missing.last().is_some_and(|(m, _)| m + 1 != b) {
                self.fill(store, &missing, out, offset_bytes, blocks)?;
                missing.clear();
            }
            missing.push((b, loc));
        }
        if !missing.is_empty() {
            self.fill(store, &missing, out, offset_bytes, blocks)?;
        }
        Ok(())
    }

    /// Read the contiguous `run` of blocks (looked up already) from the
    /// store, cache them, and copy the part inside the request into `out`.
    fn fill(
        &self,
        store: &Store,
        run: &[(u64, ContentId)],
        out: &mut [u8],
        out_offset_bytes: u64,
        blocks: &Lru,
    ) -> Result<(), StoreError> {
        let bs = u64::from(self.geometry.block_size);
        // Spares first, then what a full cache would push out anyway.
        let mut bufs = Vec::with_capacity(run.len());
        {
            let mut b = blocks.lock();
            while bufs.len() < run.len() {
                let full = b.lru.len() >= b.lru.cap().get();
                match b.spares.pop() {
                    Some(buf) => bufs.push(buf),
                    None if full => match b.lru.pop_lru() {
                        Some((_, buf)) => bufs.push(buf),
                        None => break,
                    },
                    None => break,
                }
            }
        }
        let mut decoded = Vec::with_capacity(run.len());
        let mut result = Ok(());
        for (b, id) in run {
            let mut data = bufs
                .pop()
                .unwrap_or_else(|| vec![0u8; bs as usize].into_boxed_slice());
            if let Err(e) = store.read_content(*id, &mut data) {
                bufs.push(data);
                result = Err(e);
                break;
            }
            copy_part(out, out_offset_bytes, b * bs, &data);
            decoded.push((*id, data));
        }
        let mut b = blocks.lock();
        b.spares.append(&mut bufs);
        for (id, data) in decoded {
            // What this pushes out (or an equal block another reader put
            // meanwhile) is the next miss's buffer.
            if let Some((_, old)) = b.lru.push(id, data) {
                b.spares.push(old);
            }
        }
        // Never more buffers than the cache holds blocks.
        let room = b.lru.cap().get() - b.lru.len();
        b.spares.truncate(room.min(SPARES));
        result
    }
}

/// Copy the overlap of `data` (which starts at disk offset `data_offset`)
/// and `out` (which starts at `out_offset`).
fn copy_part(out: &mut [u8], out_offset: u64, data_offset: u64, data: &[u8]) {
    let lo = out_offset.max(data_offset);
    let hi = (out_offset + out.len() as u64).min(data_offset + data.len() as u64);
    if lo >= hi {
        return;
    }
    let dst = &mut out[(lo - out_offset) as usize..(hi - out_offset) as usize];
    dst.copy_from_slice(&data[(lo - data_offset) as usize..(hi - data_offset) as usize]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Op, OpFlags, Writer};
    use crate::units::TimeNs;

    /// Reads through the cache equal reads straight from the store, for
    /// every mix of cached, uncached and zero blocks, across states; a
    /// regression test for the cache deadlocking on a miss after a hit.
    #[test]
    fn reads_match_the_store_across_hits_misses_and_states() {
        let dir = tempfile::tempdir().unwrap();
        let bs = 4096u32;
        Writer::init(dir.path(), 64 * u64::from(bs), bs).unwrap();
        let mut w = Writer::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..20 * bs as usize).map(|i| (i * 7 % 251) as u8).collect();
        w.append(
            TimeNs(1),
            Op::Write {
                offset_bytes: 4096,
                data: &data,
            },
            OpFlags::default(),
        )
        .unwrap();
        let more = vec![0xabu8; 3 * bs as usize];
        w.append(
            TimeNs(2),
            Op::Write {
                offset_bytes: 40_000,
                data: &more,
            },
            OpFlags::default(),
        )
        .unwrap();
        w.close().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let g = store.geometry();
        for cache_bytes in [0, 3 * u64::from(bs), 1 << 20] {
            let cache = BlockCache::new(g, cache_bytes);
            for (state, off, len) in [
                (Seq(1), 4096, 4096),
                (Seq(1), 0, 64 * 1024),
                (Seq(2), 100, 50_000),
                (Seq(1), 30_000, 20_000),
                (Seq(2), 0, 128 * 1024),
                (Seq(0), 5000, 10),
                (Seq(2), g.size_bytes - 10, 100),
                (Seq(2), g.size_bytes, 100),
            ] {
                let got = cache.read(&store, state, off, len).unwrap();
                let n = (g.size_bytes.saturating_sub(off)).min(u64::from(len)) as usize;
                let mut want = vec![0u8; n];
                store.read_at(state, off, &mut want).unwrap();
                assert_eq!(
                    got, want,
                    "cache {cache_bytes}, state {state:?} {off}+{len}"
                );
                // Misses read into spares, and what they evict is reused.
                cache.stock_spares();
                if let Some(b) = &cache.blocks {
                    let b = b.lock();
                    let buffers = b.lru.len() + b.spares.len();
                    assert!(
                        buffers <= b.lru.cap().get(),
                        "cache {cache_bytes}: {buffers} buffers for {} blocks",
                        b.lru.cap()
                    );
                }
            }
        }
    }

    /// A full cache makes no buffers: a miss reads into what the block it
    /// evicts held.
    #[test]
    fn a_full_cache_reuses_what_it_evicts() {
        let dir = tempfile::tempdir().unwrap();
        let bs = 4096u32;
        Writer::init(dir.path(), 64 * u64::from(bs), bs).unwrap();
        let mut w = Writer::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..64 * bs as usize)
            .map(|i| (i / 4096 + 1) as u8)
            .collect();
        w.append(
            TimeNs(1),
            Op::Write {
                offset_bytes: 0,
                data: &data,
            },
            OpFlags::default(),
        )
        .unwrap();
        w.close().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let cache = BlockCache::new(store.geometry(), 4 * u64::from(bs));
        let buffers = || {
            let b = cache.blocks.as_ref().unwrap().lock();
            (b.lru.len(), b.spares.len())
        };
        cache.stock_spares();
        assert_eq!(buffers(), (0, 4), "stocked up to the capacity, not SPARES");
        for b in 0..64u64 {
            let got = cache.read(&store, Seq(1), b * 4096, 4096).unwrap();
            assert!(got.iter().all(|&x| x == (b + 1) as u8), "block {b}");
            cache.stock_spares();
            let (cached, spare) = buffers();
            assert_eq!(
                cached + spare,
                4,
                "after block {b}: {cached} cached, {spare} spare"
            );
        }
    }

    #[test]
    fn copy_part_takes_only_the_overlap() {
        let mut out = vec![0u8; 8];
        copy_part(&mut out, 100, 96, &[1, 2, 3, 4, 5, 6]);
        assert_eq!(out, [5, 6, 0, 0, 0, 0, 0, 0]);
        copy_part(&mut out, 100, 106, &[7, 8, 9, 10]);
        assert_eq!(out, [5, 6, 0, 0, 0, 0, 7, 8]);
        copy_part(&mut out, 100, 200, &[1]);
        copy_part(&mut out, 100, 0, &[1]);
        assert_eq!(out, [5, 6, 0, 0, 0, 0, 7, 8]);
    }
}
