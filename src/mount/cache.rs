//! Reading an image: the disk as of one state, rebuilt block by block from
//! the store on demand, with a bounded LRU cache of decoded blocks.
//!
//! Nothing is materialised: a read costs the store's O(log n) lookup per
//! block it misses, and memory is bounded by the cache size plus one FUSE
//! request's buffers per worker thread, whatever the size of the disk.
//!
//! Blocks are keyed by (state, block). Two states that share a block's
//! content cache it twice; a key by content location would share it, but
//! the store does not hand out locations (yet).

use crate::store::{Store, StoreError};
use crate::units::{BlockNo, Geometry, Seq};
use lru::LruCache;
use parking_lot::Mutex;
use std::num::NonZeroUsize;

/// Decoded blocks by (state, block), least recently used first out.
type Lru = Mutex<LruCache<(Seq, BlockNo), Box<[u8]>>>;

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
            .map(|cap| Mutex::new(LruCache::new(cap)));
        BlockCache { geometry, blocks }
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
        if offset_bytes >= size {
            return Ok(Vec::new());
        }
        let end = size.min(offset_bytes.saturating_add(u64::from(len)));
        let mut out = vec![0u8; (end - offset_bytes) as usize];
        let Some(blocks) = &self.blocks else {
            store.read_at(state, offset_bytes, &mut out)?;
            return Ok(out);
        };
        let bs = u64::from(self.geometry.block_size);
        let first = self.geometry.block_of(offset_bytes);
        let last = self.geometry.block_of(end - 1);
        // Runs of missing blocks are read from the store in one call each.
        let mut miss_start: Option<BlockNo> = None;
        for b in first.0..=last.0 + 1 {
            let hit = b <= last.0 && {
                let mut lru = blocks.lock();
                match lru.get(&(state, BlockNo(b))) {
                    Some(data) => {
                        copy_part(&mut out, offset_bytes, b * bs, data);
                        true
                    }
                    None => false,
                }
            };
            if b <= last.0 && !hit {
                miss_start.get_or_insert(BlockNo(b));
                continue;
            }
            if let Some(start) = miss_start.take() {
                self.fill_run(
                    store,
                    state,
                    start,
                    BlockNo(b),
                    &mut out,
                    offset_bytes,
                    blocks,
                )?;
            }
        }
        Ok(out)
    }

    /// Read blocks `start..end` from the store, cache them, copy the part
    /// inside the request into `out`.
    #[allow(clippy::too_many_arguments)]
    fn fill_run(
        &self,
        store: &Store,
        state: Seq,
        start: BlockNo,
        end: BlockNo,
        out: &mut [u8],
        out_offset_bytes: u64,
        blocks: &Lru,
    ) -> Result<(), StoreError> {
        let bs = u64::from(self.geometry.block_size);
        let run_offset = start.0 * bs;
        let run_end = (end.0 * bs).min(self.geometry.size_bytes);
        let mut run = vec![0u8; (run_end - run_offset) as usize];
        store.read_at(state, run_offset, &mut run)?;
        let mut lru = blocks.lock();
        for (i, chunk) in run.chunks(bs as usize).enumerate() {
            let b = start.0 + i as u64;
            copy_part(out, out_offset_bytes, b * bs, chunk);
            lru.put((state, BlockNo(b)), chunk.into());
        }
        Ok(())
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
