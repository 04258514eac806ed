//! The inode fields diskhist parses itself, from the inode's on-disk bytes
//! as ext4-view hands them over (located through the group descriptors,
//! replaced by the journal's copy if it has one, checksum-verified). Like
//! everything ext4 keeps outside its journal, little-endian.
//!
//! ```text
//! 0x00 i_mode        u16   0x02 i_uid_lo     u16   0x04 i_size_lo    u32
//! 0x08 i_atime       u32   0x0c i_ctime      u32   0x10 i_mtime      u32
//! 0x14 i_dtime       u32   0x18 i_gid_lo     u16   0x1a i_links      u16
//! 0x1c i_blocks_lo   u32   0x20 i_flags      u32   0x24 osd1         u32
//! 0x28 i_block  60 bytes: extent tree root, or 12 direct + 3 indirect
//!      block numbers, or a fast symlink's target, or a device number
//! 0x64 i_generation  u32   0x68 i_file_acl_lo u32  0x6c i_size_high  u32
//! 0x74 i_blocks_hi   u16   0x76 i_file_acl_hi u16  0x78 uid/gid hi, csum
//! ---- 128 bytes: every inode has the above; large inodes go on: ----
//! 0x80 i_extra_isize u16   (the fields below exist up to 128 + this)
//! 0x84 i_ctime_extra u32   0x88 i_mtime_extra u32  0x8c i_atime_extra u32
//! 0x90 i_crtime      u32   0x94 i_crtime_extra u32
//! 128 + i_extra_isize: in-inode extended attributes, to the inode's end
//! ```
//!
//! A time is the base field as a signed 32-bit count of seconds, plus,
//! where the `_extra` field exists, its low 2 bits as bits 32-33 of the
//! seconds and its high 30 bits as nanoseconds (the kernel's decoding,
//! 1901 to 2446).

use crate::le::u32_at;
use crate::units::TimeNs;

/// Size of the inode every ext2/3/4 revision has.
pub(super) const GOOD_OLD_INODE_SIZE: usize = 128;
const I_MODE: usize = 0x00;
const I_SIZE_LO: usize = 0x04;
const I_ATIME: usize = 0x08;
const I_CTIME: usize = 0x0c;
const I_MTIME: usize = 0x10;
const I_BLOCKS_LO: usize = 0x1c;
const I_FLAGS: usize = 0x20;
pub(super) const I_BLOCK: usize = 0x28;
/// Length of `i_block`.
pub(super) const I_BLOCK_LEN: usize = 60;
const I_FILE_ACL_LO: usize = 0x68;
const I_SIZE_HIGH: usize = 0x6c;
const I_BLOCKS_HI: usize = 0x74;
const I_FILE_ACL_HI: usize = 0x76;
const I_EXTRA_ISIZE: usize = GOOD_OLD_INODE_SIZE;
const I_CTIME_EXTRA: usize = 0x84;
const I_MTIME_EXTRA: usize = 0x88;
const I_ATIME_EXTRA: usize = 0x8c;
const I_CRTIME: usize = 0x90;
const I_CRTIME_EXTRA: usize = 0x94;

/// `i_flags`: the file is mapped by an extent tree, not a block map.
pub(super) const EXTENTS_FL: u32 = 0x8_0000;
/// `i_flags`: contents and names are encrypted (fscrypt).
pub(super) const ENCRYPT_FL: u32 = 0x800;
/// `i_flags`: the data lives in the inode (inline_data).
pub(super) const INLINE_DATA_FL: u32 = 0x1000_0000;
/// `i_flags`: `i_blocks` counts filesystem blocks, not 512-byte sectors.
const HUGE_FILE_FL: u32 = 0x4_0000;
const S_IFREG: u16 = 0o100_000;
const S_IFMT: u16 = 0o170_000;

/// One inode's bytes (at least [`GOOD_OLD_INODE_SIZE`], as ext4-view
/// checks) and its number.
pub(super) struct RawInode {
    pub ino: u32,
    bytes: Vec<u8>,
}

/// Which of an inode's times.
#[derive(Debug, Clone, Copy)]
pub(super) enum Time {
    Access,
    Modify,
    Change,
    Create,
}

impl RawInode {
    pub fn new(ino: u32, bytes: Vec<u8>) -> RawInode {
        debug_assert!(bytes.len() >= GOOD_OLD_INODE_SIZE);
        RawInode { ino, bytes }
    }

    fn u16_at(&self, at: usize) -> u16 {
        u16::from_le_bytes([self.bytes[at], self.bytes[at + 1]])
    }

    fn u32_at(&self, at: usize) -> u32 {
        u32_at(&self.bytes, at)
    }

    pub fn flags(&self) -> u32 {
        self.u32_at(I_FLAGS)
    }

    /// The size as the kernel reads it: `i_size_high` counts only for
    /// regular files, and for directories when the filesystem has
    /// `large_dir` (it was `i_dir_acl` in ext2).
    pub fn size(&self, large_dir: bool) -> u64 {
        let lo = u64::from(self.u32_at(I_SIZE_LO));
        let regular = self.u16_at(I_MODE) & S_IFMT == S_IFREG;
        if regular || large_dir {
            lo | u64::from(self.u32_at(I_SIZE_HIGH)) << 32
        } else {
            lo
        }
    }

    /// The 60 bytes of `i_block`.
    pub fn i_block(&self) -> &[u8] {
        &self.bytes[I_BLOCK..I_BLOCK + I_BLOCK_LEN]
    }

    /// The block holding the inode's extended attributes, 0 if none.
    pub fn file_acl(&self) -> u64 {
        u64::from(self.u32_at(I_FILE_ACL_LO)) | u64::from(self.u16_at(I_FILE_ACL_HI)) << 32
    }

    /// `i_blocks` in 512-byte sectors (`huge_file`: the filesystem has
    /// the feature, so the high half and the inode's flag count).
    pub fn sectors(&self, huge_file: bool, block_size: u32) -> u64 {
        let lo = u64::from(self.u32_at(I_BLOCKS_LO));
        if !huge_file {
            return lo;
        }
        let all = lo | u64::from(self.u16_at(I_BLOCKS_HI)) << 32;
        if self.flags() & HUGE_FILE_FL != 0 {
            all.saturating_mul(u64::from(block_size / 512))
        } else {
            all
        }
    }

    /// Where the fields past the first 128 bytes end: `128 +
    /// i_extra_isize`, or 128 when the inode is small or the field is
    /// out of range (the kernel refuses such an inode; its classic
    /// fields are still worth showing).
    fn extra_end(&self) -> usize {
        if self.bytes.len() <= GOOD_OLD_INODE_SIZE + 2 {
            return GOOD_OLD_INODE_SIZE;
        }
        let extra = usize::from(self.u16_at(I_EXTRA_ISIZE));
        let end = GOOD_OLD_INODE_SIZE + extra;
        if extra % 4 != 0 || end > self.bytes.len() {
            GOOD_OLD_INODE_SIZE
        } else {
            end
        }
    }

    /// The 32-bit field at `at` if this inode has it.
    fn extra_u32(&self, at: usize) -> Option<u32> {
        (at + 4 <= self.extra_end()).then(|| self.u32_at(at))
    }

    /// One of the inode's times; `None` for a creation time the inode
    /// has no room for, and for times past what [`TimeNs`] holds
    /// (before 1677 or after 2262).
    pub fn time(&self, which: Time) -> Option<TimeNs> {
        let (base, extra) = match which {
            Time::Access => (Some(self.u32_at(I_ATIME)), self.extra_u32(I_ATIME_EXTRA)),
            Time::Modify => (Some(self.u32_at(I_MTIME)), self.extra_u32(I_MTIME_EXTRA)),
            Time::Change => (Some(self.u32_at(I_CTIME)), self.extra_u32(I_CTIME_EXTRA)),
            Time::Create => (self.extra_u32(I_CRTIME), self.extra_u32(I_CRTIME_EXTRA)),
        };
        decode_time(base?, extra)
    }

    /// A device node's number, `makedev` form: the old 8:8 encoding in
    /// `i_block[0]`, or the new 12:20 one in `i_block[1]` when the first
    /// word is zero, as the kernel reads them.
    pub fn rdev(&self) -> u64 {
        let (old, new) = (self.u32_at(I_BLOCK), self.u32_at(I_BLOCK + 4));
        let (major, minor) = if old != 0 {
            ((old >> 8) & 0xff, old & 0xff)
        } else {
            ((new & 0xfff00) >> 8, (new & 0xff) | ((new >> 12) & 0xfff00))
        };
        let (major, minor) = (u64::from(major), u64::from(minor));
        (major & 0xfff) << 8 | (major & !0xfff) << 32 | (minor & 0xff) | (minor & !0xff) << 12
    }

    /// The in-inode extended attribute area: from `128 + i_extra_isize`
    /// to the inode's end (empty for small inodes).
    pub fn xattr_area(&self) -> &[u8] {
        let end = self.extra_end();
        if end == GOOD_OLD_INODE_SIZE {
            return &[];
        }
        &self.bytes[end..]
    }
}

/// A time from its base field and its `_extra` field, if any.
fn decode_time(base: u32, extra: Option<u32>) -> Option<TimeNs> {
    let mut seconds = i64::from(base as i32);
    let mut nanos = 0;
    if let Some(extra) = extra {
        seconds += i64::from(extra & 3) << 32;
        nanos = i64::from(extra >> 2);
    }
    seconds
        .checked_mul(1_000_000_000)?
        .checked_add(nanos)
        .map(TimeNs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_decode_as_the_kernel_does() {
        assert_eq!(decode_time(0, None), Some(TimeNs(0)));
        // Before 1970: the base field is signed.
        assert_eq!(decode_time(u32::MAX, Some(0)), Some(TimeNs(-1_000_000_000)));
        // After 2038: the epoch bits extend the seconds.
        assert_eq!(
            decode_time(0x8000_0000, Some(1 | 5 << 2)),
            Some(TimeNs(0x8000_0000 * 1_000_000_000 + 5))
        );
        // 2446 does not fit in i64 nanoseconds.
        assert_eq!(decode_time(0x7fff_ffff, Some(3)), None);
    }

    #[test]
    fn device_numbers_decode_both_encodings() {
        let mut b = vec![0u8; 256];
        b[I_BLOCK..I_BLOCK + 4].copy_from_slice(&0x0103u32.to_le_bytes());
        assert_eq!(RawInode::new(1, b.clone()).rdev(), 0x0103);
        // major 259, minor 0x12345: new encoding in i_block[1].
        b[I_BLOCK..I_BLOCK + 4].copy_from_slice(&0u32.to_le_bytes());
        let new = (0x45u32) | 259 << 8 | (0x123 << 20);
        b[I_BLOCK + 4..I_BLOCK + 8].copy_from_slice(&new.to_le_bytes());
        let dev = RawInode::new(1, b).rdev();
        let (major, minor) = (libc::major(dev), libc::minor(dev));
        assert_eq!((major, minor), (259, 0x12345));
    }
}
