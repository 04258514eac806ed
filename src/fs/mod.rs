//! Files inside a state: partition tables and filesystems read in user
//! space from any state's blocks, by memory-safe readers, without a kernel
//! driver, a loop device or root. Used by the mount's `files/` trees and by
//! the command line's `ls` and `cat` alike; knows nothing of FUSE.
//!
//! - `source.rs`: a state's bytes (or one partition's) as a bounded,
//!   random-access [`Source`], and a `Read + Seek` cursor over it for the
//!   crates that want one.
//! - `part.rs`: MBR (primary, extended, logical) and GPT tables, numbered
//!   as Linux numbers them; hostile tables (loops, bad CRCs, huge entry
//!   arrays) cost a warning, never a hang.
//! - `probe.rs`: what a volume holds (ext2/3/4, NTFS, FAT, exFAT, btrfs,
//!   LVM, LUKS, swap...), its label and UUID, by magic numbers.
//! - `ext4/`, `ntfs.rs`, `fat.rs`: one [`FileSystem`] each, over the
//!   `ext4-view`, `ntfs` and `fatfs` crates (the first and the last
//!   vendored with small patches: third_party/README). Each module's doc
//!   says what it shows, its timestamps' extended-attribute names, its
//!   directory order and what it does not read.
//! - `volume.rs`: a disk's volumes and opening each; `pool.rs`: the worker
//!   threads that own opened filesystems in the mount.
//!
//! A damaged or hostile filesystem costs an error on the damaged part
//! ([`FsError::Damaged`], EIO in the mount), never a panic, a hang or
//! unbounded memory: the readers' own checks are backed by caps on
//! directory sizes and depths, cycle checks, size guards before
//! allocations, and `catch_unwind` around crates known to panic on hostile
//! input.

pub mod ext4;
pub mod fat;
pub mod ntfs;
pub mod part;
#[cfg(feature = "fuse")]
pub mod pool;
pub mod probe;
pub mod source;
pub mod volume;

pub use source::{ReadAt, Source};

use crate::units::TimeNs;

/// A node inside one filesystem, as that filesystem's reader identifies
/// it (ext4 inode number, NTFS MFT record number, FAT: the reader's own).
pub type NodeId = u64;

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    Dir,
    File,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
}

/// A node's metadata as its filesystem keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub kind: FileKind,
    /// Permission bits (`0o7777`); filesystems without them give what a
    /// read-only mount of the kernel's or ntfs-3g's driver shows.
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub nlink: u32,
    /// The filesystem's own number for the node: the inode number, the
    /// MFT record number on NTFS.
    pub ino: u64,
    /// Device number of a device node (`makedev` form), 0 otherwise.
    pub rdev: u64,
    pub atime: Option<TimeNs>,
    pub mtime: Option<TimeNs>,
    pub ctime: Option<TimeNs>,
    /// Creation time, where kept (ext4 crtime, NTFS $SI created, FAT).
    pub crtime: Option<TimeNs>,
    /// Every timestamp the filesystem keeps, by the name of the extended
    /// attribute that shows it (`user.ext4.crtime`,
    /// `user.ntfs.si.created`, `user.ntfs.fn.modified`...).
    pub times: Vec<(&'static str, TimeNs)>,
}

/// A part of a file's bytes, as [`FileSystem::plan_read`] finds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece {
    /// `len` bytes of zeros (a hole, an unwritten extent).
    Zeros(usize),
    /// `len` bytes at `offset` on the volume.
    At { offset: u64, len: usize },
}

/// Read the pieces of `plan` from `volume`, in order.
pub fn read_planned(volume: &Source, plan: &[Piece]) -> std::io::Result<Vec<u8>> {
    let total = plan
        .iter()
        .map(|p| match *p {
            Piece::Zeros(len) | Piece::At { len, .. } => len,
        })
        .sum();
    let mut out = vec![0u8; total];
    read_planned_into(volume, plan, &mut out)?;
    Ok(out)
}

/// Read the pieces of `plan` from `volume` into the start of `out` (which
/// must hold them all); how many bytes that is.
pub fn read_planned_into(
    volume: &Source,
    plan: &[Piece],
    out: &mut [u8],
) -> std::io::Result<usize> {
    let mut done = 0;
    for p in plan {
        match *p {
            Piece::Zeros(len) => {
                out[done..done + len].fill(0);
                done += len;
            }
            Piece::At { offset, len } => {
                volume.read_at(offset, &mut out[done..done + len])?;
                done += len;
            }
        }
    }
    Ok(done)
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The name's bytes, as stored (not necessarily UTF-8).
    pub name: Vec<u8>,
    pub node: NodeId,
    pub kind: FileKind,
}

/// Why a filesystem operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("not a directory")]
    NotADirectory,
    #[error("is a directory")]
    IsADirectory,
    #[error("not a symbolic link")]
    NotASymlink,
    /// The filesystem's structures are damaged or hostile here.
    #[error("damaged: {0}")]
    Damaged(String),
    /// Something the reader does not support (an NTFS compressed file...).
    #[error("not supported: {0}")]
    Unsupported(String),
    /// Reading the state's blocks failed.
    #[error("reading the disk: {0}")]
    Io(#[from] std::io::Error),
}

/// What kind of filesystem (or other content) a volume holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FsKind {
    Ext2,
    Ext3,
    Ext4,
    Ntfs,
    Fat12,
    Fat16,
    Fat32,
    ExFat,
    Btrfs,
    Xfs,
    Lvm2,
    Luks,
    Swap,
    Iso9660,
    Unknown,
}

impl FsKind {
    pub fn name(self) -> &'static str {
        match self {
            FsKind::Ext2 => "ext2",
            FsKind::Ext3 => "ext3",
            FsKind::Ext4 => "ext4",
            FsKind::Ntfs => "ntfs",
            FsKind::Fat12 => "fat12",
            FsKind::Fat16 => "fat16",
            FsKind::Fat32 => "fat32",
            FsKind::ExFat => "exfat",
            FsKind::Btrfs => "btrfs",
            FsKind::Xfs => "xfs",
            FsKind::Lvm2 => "lvm2",
            FsKind::Luks => "luks",
            FsKind::Swap => "swap",
            FsKind::Iso9660 => "iso9660",
            FsKind::Unknown => "unknown",
        }
    }
}

/// A filesystem read from a [`Source`]. Not `Send`: the crates behind
/// ext4 and FAT keep `Rc`/`RefCell` state, so each opened filesystem lives
/// on one thread (the mount pins each volume to one worker).
///
/// Nodes are identified by [`NodeId`]s the filesystem hands out in
/// [`FileSystem::list`] and [`FileSystem::lookup`]; [`FileSystem::root`]
/// is the first.
pub trait FileSystem {
    fn root(&self) -> NodeId;

    /// The volume's label, where the filesystem keeps one.
    fn label(&self) -> Option<String> {
        None
    }

    /// What `info` should say about how the view was made (e.g. that an
    /// ext4 journal was replayed in memory).
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }

    fn stat(&mut self, node: NodeId) -> Result<Stat, FsError>;

    /// The entries of directory `dir`, in the filesystem's own order,
    /// without `.` and `..`.
    fn list(&mut self, dir: NodeId) -> Result<Vec<DirEntry>, FsError>;

    /// The entry named `name` (exact bytes) in `dir`.
    fn lookup(&mut self, dir: NodeId, name: &[u8]) -> Result<Option<DirEntry>, FsError> {
        Ok(self.list(dir)?.into_iter().find(|e| e.name == name))
    }

    /// The target a symlink stores, as stored.
    fn read_link(&mut self, node: NodeId) -> Result<Vec<u8>, FsError>;

    /// Up to `buf.len()` bytes of file `node` from `offset`; fewer only at
    /// the end of the file.
    fn read(&mut self, node: NodeId, offset: u64, buf: &mut [u8]) -> Result<usize, FsError>;

    /// Where the bytes [`FileSystem::read`] would return for the same
    /// arguments lie on the volume, in order ([`read_planned`] reads
    /// them); `None` when this reader cannot say, and reads only with
    /// `read`. A plan lets the mount read a file's data on any thread,
    /// beside the worker that owns the filesystem, and several reads of
    /// one file at once.
    fn plan_read(
        &mut self,
        node: NodeId,
        offset: u64,
        len: usize,
    ) -> Result<Option<Vec<Piece>>, FsError> {
        let _ = (node, offset, len);
        Ok(None)
    }

    /// Extended attributes to show for `node`, beyond the timestamps in
    /// its [`Stat`]: ext4's own xattrs, NTFS named data streams
    /// (`user.<stream>`, as ntfs-3g shows them).
    fn xattrs(&mut self, node: NodeId) -> Result<Vec<(String, Vec<u8>)>, FsError> {
        let _ = node;
        Ok(Vec::new())
    }
}
