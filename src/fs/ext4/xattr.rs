//! Extended attributes: those kept in the inode (after `i_extra_isize`)
//! and those in the block `i_file_acl` names, in that order, as the
//! kernel lists them. Only the `user.`, `trusted.` and `security.`
//! namespaces are shown, values as stored; `trusted.` and `security.`
//! names are shown as `user.ext4.trusted.*` and `user.ext4.security.*`
//! (an SELinux label or a file capability of the image is evidence to
//! read, not a label or capability for the examining kernel to apply, and
//! the mount shows only `user.` names). POSIX ACLs are stored in a
//! form of ext4's own (not the one `getfacl` reads) and the other
//! `system.` attributes are ext4's bookkeeping.
//!
//! ```text
//! in the inode: 0x0 magic 0xEA020000 u32, then entries; value offsets
//!               count from the first entry
//! in a block:   0x0 magic 0xEA020000 u32  0x4 h_refcount  0x8 h_blocks
//!               (1)  0xc h_hash  0x10 h_checksum  0x14 reserved; entries
//!               from 0x20; value offsets count from the block's start
//! entry:        0x0 e_name_len u8  0x1 e_name_index u8 (the prefix)
//!               0x2 e_value_offs u16  0x4 e_value_inum u32 (value in an
//!               inode of its own: not shown)  0x8 e_value_size u32
//!               0xc e_hash u32  0x10 name, padded to 4 bytes
//! the list ends at 4 zero bytes or at the end of its space
//! ```
//!
//! Checksums of attribute blocks are not checked: an attribute is shown
//! as stored if its entry and value lie inside their space.

use super::inode::RawInode;
use crate::fs::FsError;
use crate::le::u32_at;
use ext4_view::Ext4;

const MAGIC: u32 = 0xea02_0000;
const ENTRY_HEADER_LEN: usize = 16;
const BLOCK_HEADER_LEN: usize = 32;
const H_BLOCKS: usize = 0x8;

/// The name prefix of attribute index `index`, for the namespaces shown.
fn prefix(index: u8) -> Option<&'static str> {
    match index {
        1 => Some("user."),
        4 => Some("user.ext4.trusted."),
        6 => Some("user.ext4.security."),
        _ => None,
    }
}

/// The attributes shown for `inode`: in-inode first, then its block's.
pub(super) fn read(
    fs: &Ext4,
    block_size: u32,
    inode: &RawInode,
) -> Result<Vec<(String, Vec<u8>)>, FsError> {
    let mut out = Vec::new();
    let area = inode.xattr_area();
    if area.len() >= 4 && u32_at(area, 0) == MAGIC {
        entries(inode.ino, area, 4, 4, &mut out)?;
    }
    let block = inode.file_acl();
    if block != 0 {
        let mut b = vec![0u8; block_size as usize];
        fs.read_block(block, 0, &mut b)?;
        if u32_at(&b, 0) != MAGIC || u32_at(&b, H_BLOCKS) != 1 {
            return Err(FsError::Damaged(format!(
                "inode {}: extended attribute block {block} has no valid header",
                inode.ino
            )));
        }
        entries(inode.ino, &b, BLOCK_HEADER_LEN, 0, &mut out)?;
    }
    Ok(out)
}

/// The entries of `space` from `first` on, their values at offsets from
/// `values_from`.
fn entries(
    ino: u32,
    space: &[u8],
    first: usize,
    values_from: usize,
    out: &mut Vec<(String, Vec<u8>)>,
) -> Result<(), FsError> {
    let damaged = |what: &str| FsError::Damaged(format!("inode {ino}: extended attribute {what}"));
    let mut at = first;
    while at + 4 <= space.len() && u32_at(space, at) != 0 {
        let header = space
            .get(at..at + ENTRY_HEADER_LEN)
            .ok_or_else(|| damaged("entry cut short"))?;
        let name_len = usize::from(header[0]);
        let index = header[1];
        let value_offs = usize::from(u16::from_le_bytes([header[2], header[3]]));
        let value_inum = u32_at(header, 4);
        let value_size = u32_at(header, 8) as usize;
        let name_at = at + ENTRY_HEADER_LEN;
        let name = space
            .get(name_at..name_at + name_len)
            .ok_or_else(|| damaged("name past its space"))?;
        if value_inum == 0 {
            if let Some(prefix) = prefix(index) {
                let start = values_from + value_offs;
                let value = start
                    .checked_add(value_size)
                    .and_then(|end| space.get(start..end))
                    .ok_or_else(|| damaged("value past its space"))?;
                out.push((
                    format!("{prefix}{}", String::from_utf8_lossy(name)),
                    value.to_vec(),
                ));
            }
        }
        at = (name_at + name_len).next_multiple_of(4);
    }
    Ok(())
}
