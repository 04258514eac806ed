//! Where a file's logical block lives: an extent tree (ext4) or a block
//! map (ext2/3), walked from the inode's `i_block` for the one block asked
//! about, so that a read anywhere in a file costs a few cached metadata
//! blocks however far in it is (ext4-view's own `File` walks every block
//! from the start). Interior nodes and indirect blocks are read through
//! ext4-view, hence through the journal and its block cache.
//!
//! Extent tree nodes (the root is `i_block`; the others a whole block,
//! perhaps followed by a checksum this reader does not check):
//!
//! ```text
//! header  0x0 eh_magic 0xF30A u16  0x2 eh_entries u16  0x4 eh_max u16
//!         0x6 eh_depth u16 (0 = leaf)                  0x8 eh_generation
//! index   0x0 ei_block u32 (first logical block under it)
//!         0x4 ei_leaf_lo u32  0x8 ei_leaf_hi u16  0xa unused
//! extent  0x0 ee_block u32  0x4 ee_len u16 (> 32768: unwritten, reads
//!         as zeros, length ee_len - 32768)  0x6 ee_start_hi u16
//!         0x8 ee_start_lo u32
//! ```
//!
//! Block maps: `i_block` holds 12 direct block numbers, then one single,
//! one double and one triple indirect block number; an indirect block is
//! an array of `block_size / 4` block numbers. Zero is a hole, at any
//! level.

use super::inode::{RawInode, EXTENTS_FL, I_BLOCK_LEN};
use crate::fs::FsError;
use crate::le::u32_at;
use ext4_view::Ext4;

const EXTENT_MAGIC: u16 = 0xf30a;
/// Header and entries are this size alike.
const ENTRY_LEN: usize = 12;
/// The kernel's limit on an extent tree's depth.
const MAX_EXTENT_DEPTH: u16 = 5;
/// Longest initialised extent; longer lengths mark unwritten extents.
const MAX_INIT_LEN: u16 = 32768;
/// Direct block numbers at the start of a block map.
const DIRECT_BLOCKS: u64 = 12;
/// A logical block number is 32 bits.
const LOGICAL_END: u64 = 1 << 32;

/// What the blocks from the one asked about hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Run {
    /// Stored from this filesystem block on.
    Data { first_block: u64 },
    /// A hole or an unwritten extent: zeros.
    Zeros,
}

/// A run of a file's logical blocks that the map says one thing about:
/// `blocks` of them (at least one) from the one asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Mapped {
    pub run: Run,
    pub blocks: u64,
}

/// The filesystem facts mapping needs.
pub(super) struct Layout {
    pub block_size: u32,
    pub blocks_count: u64,
}

/// Where logical block `logical` of `inode` lives. `node` is scratch
/// space, reused between calls.
pub(super) fn map_block(
    fs: &Ext4,
    layout: &Layout,
    inode: &RawInode,
    logical: u64,
    node: &mut Vec<u8>,
) -> Result<Mapped, FsError> {
    if logical >= LOGICAL_END {
        return Ok(Mapped {
            run: Run::Zeros,
            blocks: 1,
        });
    }
    let mapped = if inode.flags() & EXTENTS_FL != 0 {
        map_extent(fs, layout, inode, logical, node)?
    } else {
        map_indirect(fs, layout, inode, logical)?
    };
    if let Run::Data { first_block } = mapped.run {
        let end = first_block.checked_add(mapped.blocks);
        if first_block == 0 || end.is_none_or(|end| end > layout.blocks_count) {
            return Err(FsError::Damaged(format!(
                "inode {}: logical block {logical} maps to blocks {first_block}+{}, outside \
                 the filesystem's {} blocks",
                inode.ino, mapped.blocks, layout.blocks_count
            )));
        }
    }
    Ok(mapped)
}

/// An extent tree node's header, checked against the room it has.
struct Header {
    entries: usize,
    depth: u16,
}

fn header(ino: u32, node: &[u8]) -> Result<Header, FsError> {
    let damaged = |what: &str| FsError::Damaged(format!("inode {ino}: extent tree {what}"));
    if node.len() < ENTRY_LEN || u16_at(node, 0) != EXTENT_MAGIC {
        return Err(damaged("node without its magic number"));
    }
    let (entries, max, depth) = (u16_at(node, 2), u16_at(node, 4), u16_at(node, 6));
    if entries > max || (usize::from(max) + 1) * ENTRY_LEN > node.len() {
        return Err(damaged("node claiming more entries than it holds"));
    }
    if depth > MAX_EXTENT_DEPTH {
        return Err(damaged("deeper than 5 levels"));
    }
    Ok(Header {
        entries: usize::from(entries),
        depth,
    })
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// Entry `i` (from 0) of a node.
fn entry(node: &[u8], i: usize) -> &[u8] {
    &node[(i + 1) * ENTRY_LEN..(i + 2) * ENTRY_LEN]
}

fn map_extent(
    fs: &Ext4,
    layout: &Layout,
    inode: &RawInode,
    logical: u64,
    node: &mut Vec<u8>,
) -> Result<Mapped, FsError> {
    let ino = inode.ino;
    // Logical blocks from `logical` to `bound` are all under the node
    // being looked at: a hole ends there at the latest.
    let mut bound = LOGICAL_END;
    let mut in_root = true;
    let mut expect_depth = None;
    let zeros_to = |end: u64| Mapped {
        run: Run::Zeros,
        blocks: end.saturating_sub(logical).max(1),
    };
    loop {
        let here: &[u8] = if in_root { inode.i_block() } else { node };
        let h = header(ino, here)?;
        if expect_depth.is_some_and(|d| d != h.depth) {
            return Err(FsError::Damaged(format!(
                "inode {ino}: extent tree node at the wrong depth"
            )));
        }
        let first = |i: usize| u64::from(u32_at(entry(here, i), 0));
        // Entries are sorted by first logical block: the last one
        // starting at or before `logical` is the one that may hold it.
        // (Unsorted entries, on a damaged tree, give a wrong answer,
        // never a fault.)
        let n = {
            let (mut lo, mut hi) = (0, h.entries);
            while lo < hi {
                let mid = (lo + hi) / 2;
                if first(mid) <= logical {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            lo
        };
        if n < h.entries {
            bound = bound.min(first(n));
        }
        if n == 0 {
            return Ok(zeros_to(bound));
        }
        let e = entry(here, n - 1);
        if h.depth == 0 {
            let start = first(n - 1);
            let raw_len = u16_at(e, 4);
            let (len, unwritten) = if raw_len > MAX_INIT_LEN {
                (raw_len - MAX_INIT_LEN, true)
            } else {
                (raw_len, false)
            };
            let end = (start + u64::from(len)).min(bound);
            if logical >= end {
                return Ok(zeros_to(bound));
            }
            let blocks = end - logical;
            if unwritten {
                return Ok(Mapped {
                    run: Run::Zeros,
                    blocks,
                });
            }
            let physical = u64::from(u32_at(e, 8)) | u64::from(u16_at(e, 6)) << 32;
            return Ok(Mapped {
                run: Run::Data {
                    first_block: physical + (logical - start),
                },
                blocks,
            });
        }
        let child = u64::from(u32_at(e, 4)) | u64::from(u16_at(e, 8)) << 32;
        if child == 0 || child >= layout.blocks_count {
            return Err(FsError::Damaged(format!(
                "inode {ino}: extent tree points to block {child}, outside the filesystem"
            )));
        }
        expect_depth = Some(h.depth - 1);
        node.resize(layout.block_size as usize, 0);
        fs.read_block(child, 0, node)?;
        in_root = false;
    }
}

fn map_indirect(
    fs: &Ext4,
    layout: &Layout,
    inode: &RawInode,
    logical: u64,
) -> Result<Mapped, FsError> {
    let slot = |i: usize| u64::from(u32_at(inode.i_block(), i * 4));
    let data_or_hole = |block: u64| Mapped {
        run: if block == 0 {
            Run::Zeros
        } else {
            Run::Data { first_block: block }
        },
        blocks: 1,
    };
    if logical < DIRECT_BLOCKS {
        return Ok(data_or_hole(slot(logical as usize)));
    }
    let per_block = u64::from(layout.block_size / 4);
    // Which of the three trees, how many blocks it spans, and where in
    // it `logical` is.
    let mut within = logical - DIRECT_BLOCKS;
    let mut span = per_block;
    let mut root = DIRECT_BLOCKS as usize;
    while within >= span {
        within -= span;
        span *= per_block;
        root += 1;
        if root == I_BLOCK_LEN / 4 {
            // Past what a triple indirect block reaches.
            return Ok(Mapped {
                run: Run::Zeros,
                blocks: 1,
            });
        }
    }
    let mut pointer = slot(root);
    while span > 1 {
        if pointer == 0 {
            // A missing indirect block: the whole subtree is a hole.
            return Ok(Mapped {
                run: Run::Zeros,
                blocks: span - within,
            });
        }
        if pointer >= layout.blocks_count {
            return Err(FsError::Damaged(format!(
                "inode {}: block map points to block {pointer}, outside the filesystem",
                inode.ino
            )));
        }
        span /= per_block;
        let index = within / span;
        within %= span;
        let mut number = [0u8; 4];
        fs.read_block(pointer, (index * 4) as u32, &mut number)?;
        pointer = u64::from(u32::from_le_bytes(number));
    }
    Ok(data_or_hole(pointer))
}
