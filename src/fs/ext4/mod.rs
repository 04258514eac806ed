//! ext2, ext3 and ext4, read through the `ext4-view` crate (vendored with
//! a small patch, see `third_party/README`), as a [`FileSystem`].
//!
//! # What is read
//!
//! - ext2, ext3 and ext4 as `mkfs.ext*` makes them: block maps and extent
//!   trees, `dir_index` (hash tree) directories, `metadata_csum`
//!   (superblock, group descriptors, inodes, directory blocks and
//!   extent-tree nodes met on the way are verified by ext4-view), 64bit,
//!   flex_bg, huge_file, bigalloc.
//! - The journal: a filesystem flagged as needing recovery (a state
//!   between two syncs) has its committed transactions replayed in
//!   memory, as the kernel replays them on mounting; nothing is written.
//!   If the journal cannot be read the filesystem is shown as last
//!   written home, as `mount -o noload` shows it. [`Ext4Fs::journal`]
//!   says which.
//! - Nodes are inodes: [`NodeId`] is the inode number, the root is 2.
//! - File contents: extents and block maps are walked by this module
//!   (`map.rs`) for the block asked about and the data read straight from
//!   the [`Source`], so a read anywhere in a file costs the same; holes
//!   and unwritten (preallocated) extents read as zeros.
//! - stat: type, permissions, uid, gid, size, link count, inode number,
//!   device numbers of device nodes, and the times with nanoseconds where
//!   the inode has room for them (256-byte inodes). Every time the inode
//!   keeps is in [`Stat::times`], by the extended attribute name the
//!   mount shows it under: `user.ext4.atime`, `user.ext4.mtime`,
//!   `user.ext4.ctime`, and `user.ext4.crtime` (creation, large inodes
//!   only). `i_dtime` is not shown: it is zero on every linked inode and
//!   doubles as the orphan list's link.
//! - Symlink targets as stored (fast symlinks from the inode, others from
//!   their block), never followed.
//! - Extended attributes: the `user.`, `trusted.` and `security.`
//!   namespaces, from the inode and from its attribute block (`xattr.rs`),
//!   the last two as `user.ext4.trusted.*` and `user.ext4.security.*`.
//! - Directories are listed in on-disk order, which for a hashed
//!   directory is not the kernel's `readdir` order (the kernel returns
//!   entries by hash); names are bytes, as stored.
//!
//! # What is not
//!
//! ext4-view refuses filesystems with `inline_data`, `large_dir`,
//! `meta_bg`, `ea_inode`, `mmp`, `casefold`, `dirdata`, an external
//! journal or ext2 revision 0 ([`FsError::Unsupported`]). Encrypted
//! directories, files and symlinks (fscrypt) answer
//! [`FsError::Unsupported`]. POSIX ACLs are not shown as attributes.
//!
//! # Damaged and hostile filesystems
//!
//! The superblock's geometry is checked before ext4-view sees it (a
//! filesystem larger than its volume is refused, as the kernel refuses
//! it), so that no field drives an allocation. A directory is listed only
//! if it has at most [`MAX_DIR_ENTRIES`] entries and
//! [`MAX_DIR_BYTES`] bytes; an entry that leads back to the directory
//! itself or to one above it, or a second entry for a directory already
//! met elsewhere (the kernel never makes directory hard links), makes the
//! listing [`FsError::Damaged`], so no walk through the tree loops.
//! Symlink targets longer than `PATH_MAX` are refused before any
//! allocation. Everything ext4-view reports as corrupt is
//! [`FsError::Damaged`]; failures to read the disk are [`FsError::Io`].

mod inode;
mod map;
mod xattr;

use super::{DirEntry, FileKind, FileSystem, FsError, NodeId, Piece, Source, Stat};
use crate::le::u32_at;
use ext4_view::{Ext4, Ext4Error, FileType};
use inode::{RawInode, Time, ENCRYPT_FL, INLINE_DATA_FL};
use map::{Layout, Mapped, Run};
use std::collections::HashMap;
use std::io;

/// The root directory's inode.
const ROOT: u32 = 2;

/// Most entries a directory may have for [`FileSystem::list`] to list
/// it. Four times the million-entry directory the mount must list; the
/// listing of a directory this size takes about 300 MB (70-odd bytes an
/// entry) and a second or two. A hashed ext4 directory with 4 KiB blocks
/// tops out around ten million short names, so the cap costs only the
/// rarest real directories, and bounds what a directory whose extents
/// repeat one block over and over can make the reader do.
pub const MAX_DIR_ENTRIES: usize = 4_000_000;

/// Largest directory (bytes) listed. A two-level hash tree with 4 KiB
/// blocks is full near 1 GiB; a damaged inode's size is not a reason to
/// read more.
pub const MAX_DIR_BYTES: u64 = 2 << 30;

/// Longest symlink target read (`PATH_MAX`).
const MAX_LINK_BYTES: u64 = 4096;

/// Deepest directory listed, in directories below the root: a path that
/// deep is at least 8 KiB long, twice `PATH_MAX`.
const MAX_DEPTH: usize = 4096;

/// Names kept from the directories listed last, so that the lookups
/// that follow a listing (`ls -l` looks up every name it lists) cost a
/// hash probe instead of a walk down the directory's hash tree (~15 µs):
/// at most this many names (some 10 MB), from at most
/// [`INDEXED_DIRS`] directories.
const MAX_INDEXED_NAMES: usize = 100_000;
const INDEXED_DIRS: usize = 8;

/// What became of the journal when the filesystem was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Journal {
    /// Nothing to replay: no journal, or the filesystem did not need
    /// recovery.
    Clean,
    /// The filesystem needed recovery; its committed transactions are
    /// applied in memory, replacing `blocks` blocks.
    Replayed { blocks: usize },
    /// The filesystem needed recovery but its journal could not be
    /// replayed: shown as last written home (`mount -o noload`).
    NotReplayed { why: String },
}

/// An opened ext2/3/4 filesystem.
pub struct Ext4Fs {
    fs: Ext4,
    src: Source,
    layout: Layout,
    inodes_count: u32,
    large_dir: bool,
    huge_file: bool,
    /// Directory hashes treat name bytes as unsigned (a filesystem made
    /// where `char` is unsigned); ext4-view only computes signed ones.
    unsigned_hash: bool,
    journal: Journal,
    /// Each directory handed out, by the directory it was found in: the
    /// path from the root that cycles are checked against.
    parents: HashMap<u32, u32>,
    /// Scratch space for extent tree nodes.
    node: Vec<u8>,
    /// The names of the directories listed last, most recent last.
    names: Vec<NameIndex>,
}

/// One listed directory's entries by name, each already checked.
struct NameIndex {
    dir: u32,
    entries: HashMap<Vec<u8>, (u32, FileKind)>,
}

/// The superblock fields checked here, before ext4-view parses its own
/// copy: the geometry that sizes its allocations, and the features this
/// module reads by itself.
///
/// ```text
/// 0x000 s_inodes_count u32      0x004 s_blocks_count_lo u32
/// 0x014 s_first_data_block u32  0x018 s_log_block_size u32 (1 KiB << n)
/// 0x020 s_blocks_per_group u32  0x024 s_clusters_per_group u32
/// 0x028 s_inodes_per_group u32
/// 0x038 s_magic 0xEF53 u16      0x04c s_rev_level u32
/// 0x058 s_inode_size u16        0x05c s_feature_compat u32
/// 0x060 s_feature_incompat u32  0x064 s_feature_ro_compat u32
/// 0x150 s_blocks_count_hi u32   0x160 s_flags u32
/// ```
struct Superblock {
    block_size: u32,
    blocks_count: u64,
    inodes_count: u32,
    needs_recovery: bool,
    large_dir: bool,
    huge_file: bool,
    unsigned_hash: bool,
}

/// Where the superblock is, and its size.
const SUPERBLOCK_AT: u64 = 1024;
const SUPERBLOCK_LEN: usize = 1024;
const EXT_MAGIC: u16 = 0xef53;
const MAX_LOG_BLOCK_SIZE: u32 = 6;
const COMPAT_HAS_JOURNAL: u32 = 0x4;
const INCOMPAT_RECOVER: u32 = 0x4;
const INCOMPAT_64BIT: u32 = 0x80;
const INCOMPAT_LARGEDIR: u32 = 0x4000;
const RO_COMPAT_HUGE_FILE: u32 = 0x8;
const RO_COMPAT_BIGALLOC: u32 = 0x200;
/// Most block groups a filesystem may have: 128 TiB in groups of 128 MiB
/// (4 KiB blocks), more than any disk diskhist records, and a bound on
/// what a damaged group size makes ext4-view allocate and read.
const MAX_GROUPS: u64 = 1 << 20;
const FLAGS_UNSIGNED_HASH: u32 = 0x2;

impl Superblock {
    fn read(src: &Source) -> Result<Superblock, FsError> {
        let mut sb = [0u8; SUPERBLOCK_LEN];
        src.read_at(SUPERBLOCK_AT, &mut sb)?;
        let u32_field = |at| u32_at(&sb, at);
        let u16_field = |at: usize| u16::from_le_bytes([sb[at], sb[at + 1]]);
        let bad = |what: String| Err(FsError::Damaged(format!("ext superblock: {what}")));
        if u16_field(0x38) != EXT_MAGIC {
            return bad("no magic number".into());
        }
        let log_block_size = u32_field(0x18);
        if log_block_size > MAX_LOG_BLOCK_SIZE {
            return bad(format!("block size 1 KiB << {log_block_size}"));
        }
        let block_size = 1024u32 << log_block_size;
        if u32_field(0x4c) == 0 {
            return Err(FsError::Unsupported(
                "ext2 revision 0 (no inode size field)".into(),
            ));
        }
        let inode_size = u32::from(u16_field(0x58));
        if !inode_size.is_power_of_two() || !(128..=block_size).contains(&inode_size) {
            return bad(format!("inode size {inode_size}"));
        }
        // The kernel's limits: a group's blocks (clusters, with bigalloc)
        // and inodes each fit one bitmap block.
        let per_group_max = 8 * block_size;
        let ro_compat = u32_field(0x64);
        let blocks_per_group = u32_field(0x20);
        let bitmap_counted = if ro_compat & RO_COMPAT_BIGALLOC != 0 {
            ("clusters", 0x24)
        } else {
            ("blocks", 0x20)
        };
        for (name, at) in [bitmap_counted, ("inodes", 0x28)] {
            let n = u32_field(at);
            if n == 0 || n > per_group_max {
                return bad(format!("{n} {name} per group"));
            }
        }
        if blocks_per_group == 0 {
            return bad("0 blocks per group".into());
        }
        let incompat = u32_field(0x60);
        let mut blocks_count = u64::from(u32_field(0x04));
        if incompat & INCOMPAT_64BIT != 0 {
            blocks_count |= u64::from(u32_field(0x150)) << 32;
        }
        let volume_blocks = src.len_bytes() / u64::from(block_size);
        if blocks_count <= u64::from(u32_field(0x14)) || blocks_count > volume_blocks {
            return bad(format!(
                "{blocks_count} blocks of {block_size} bytes, on a volume of {volume_blocks}"
            ));
        }
        // ext4-view keeps every group's descriptor, read one at a time.
        let groups = blocks_count.div_ceil(u64::from(blocks_per_group));
        if groups > MAX_GROUPS {
            return bad(format!(
                "{groups} block groups of {blocks_per_group} blocks, more than {MAX_GROUPS}"
            ));
        }
        Ok(Superblock {
            block_size,
            blocks_count,
            inodes_count: u32_field(0x00),
            needs_recovery: u32_field(0x5c) & COMPAT_HAS_JOURNAL != 0
                && incompat & INCOMPAT_RECOVER != 0,
            large_dir: incompat & INCOMPAT_LARGEDIR != 0,
            huge_file: ro_compat & RO_COMPAT_HUGE_FILE != 0,
            unsigned_hash: u32_field(0x160) & FLAGS_UNSIGNED_HASH != 0,
        })
    }
}

/// The [`Source`] as ext4-view reads it.
struct Reader(Source);

impl ext4_view::Ext4Read for Reader {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        Ok(self.0.read_at(start_byte, dst)?)
    }
}

impl From<Ext4Error> for FsError {
    fn from(err: Ext4Error) -> FsError {
        match err {
            Ext4Error::NotFound => FsError::NotFound,
            Ext4Error::NotADirectory => FsError::NotADirectory,
            Ext4Error::IsADirectory => FsError::IsADirectory,
            Ext4Error::NotASymlink => FsError::NotASymlink,
            Ext4Error::Encrypted => FsError::Unsupported("encrypted directory".into()),
            Ext4Error::Incompatible(i) => FsError::Unsupported(i.to_string()),
            Ext4Error::Io(e) => match e.downcast::<io::Error>() {
                Ok(e) => FsError::Io(*e),
                Err(e) => FsError::Io(io::Error::other(e.to_string())),
            },
            other => FsError::Damaged(other.to_string()),
        }
    }
}

/// Open the ext2/3/4 filesystem `src` holds: read its superblock, group
/// descriptors and journal (nothing else is read until asked for).
///
/// # Errors
///
/// [`FsError::Damaged`] for a superblock that is not ext's or whose
/// geometry does not hold, [`FsError::Unsupported`] for features
/// ext4-view does not read, [`FsError::Io`] if the volume cannot be read.
pub fn open(src: Source) -> Result<Ext4Fs, FsError> {
    let sb = Superblock::read(&src)?;
    let reader = || Box::new(Reader(src.clone()));
    let (fs, journal) = match Ext4::load(reader()) {
        Ok(fs) if sb.needs_recovery => {
            let blocks = fs.journal_mapped_blocks();
            (fs, Journal::Replayed { blocks })
        }
        Ok(fs) => (fs, Journal::Clean),
        Err(err) if sb.needs_recovery => match Ext4::load_without_journal(reader()) {
            Ok(fs) => (
                fs,
                Journal::NotReplayed {
                    why: FsError::from(err).to_string(),
                },
            ),
            Err(_) => return Err(err.into()),
        },
        Err(err) => return Err(err.into()),
    };
    Ok(Ext4Fs {
        fs,
        src,
        layout: Layout {
            block_size: sb.block_size,
            blocks_count: sb.blocks_count,
        },
        inodes_count: sb.inodes_count,
        large_dir: sb.large_dir,
        huge_file: sb.huge_file,
        unsigned_hash: sb.unsigned_hash,
        journal,
        parents: HashMap::new(),
        node: Vec::new(),
        names: Vec::new(),
    })
}

fn kind_of(t: FileType) -> FileKind {
    match t {
        FileType::Directory => FileKind::Dir,
        FileType::Regular => FileKind::File,
        FileType::Symlink => FileKind::Symlink,
        FileType::CharacterDevice => FileKind::CharDevice,
        FileType::BlockDevice => FileKind::BlockDevice,
        FileType::Fifo => FileKind::Fifo,
        FileType::Socket => FileKind::Socket,
    }
}

/// One inode, parsed by ext4-view and by [`RawInode`].
struct Node {
    meta: ext4_view::Metadata,
    raw: RawInode,
}

impl Node {
    fn kind(&self) -> FileKind {
        kind_of(self.meta.file_type())
    }
}

impl Ext4Fs {
    /// What became of the journal.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Whether the journal's committed transactions were replayed (the
    /// filesystem needed recovery and its journal could be read).
    pub fn replayed_journal(&self) -> bool {
        matches!(self.journal, Journal::Replayed { .. })
    }

    fn ino(&self, node: NodeId) -> Result<u32, FsError> {
        u32::try_from(node)
            .ok()
            .filter(|&ino| ino != 0 && ino <= self.inodes_count)
            .ok_or(FsError::NotFound)
    }

    fn node(&self, node: NodeId) -> Result<Node, FsError> {
        let ino = self.ino(node)?;
        let (meta, bytes) = self.fs.inode_with_bytes(ino)?;
        Ok(Node {
            meta,
            raw: RawInode::new(ino, bytes),
        })
    }

    /// `dir` and the directories above it, up to the root, sorted (for
    /// [`Ext4Fs::admit`]'s binary search).
    fn ancestors(&self, dir: u32) -> Result<Vec<u32>, FsError> {
        let mut chain = vec![dir];
        let mut at = dir;
        while at != ROOT {
            at = *self.parents.get(&at).ok_or_else(|| {
                FsError::Damaged(format!(
                    "directory {dir} was not reached from the root as a directory"
                ))
            })?;
            chain.push(at);
            if chain.len() > MAX_DEPTH {
                return Err(FsError::Damaged(format!(
                    "directory {dir} is more than {MAX_DEPTH} levels deep"
                )));
            }
        }
        chain.sort_unstable();
        Ok(chain)
    }

    /// Check entry `name` of `dir`, pointing to `child` of `kind`, before
    /// handing it out, and remember where a directory was found.
    fn admit(
        &mut self,
        dir: u32,
        ancestors: &[u32],
        name: &[u8],
        child: u32,
        kind: FileKind,
    ) -> Result<(), FsError> {
        let name = || String::from_utf8_lossy(name);
        if ancestors.binary_search(&child).is_ok() {
            return Err(FsError::Damaged(format!(
                "directory {dir}: entry {:?} leads back to directory {child}, a cycle",
                name()
            )));
        }
        if kind == FileKind::Dir {
            let parent = *self.parents.entry(child).or_insert(dir);
            if parent != dir {
                return Err(FsError::Damaged(format!(
                    "directory {dir}: entry {:?} is a second link to directory {child}, \
                     already in directory {parent}",
                    name()
                )));
            }
        }
        Ok(())
    }

    /// Check that `dir` is a directory this reader reads, and return
    /// the directories from it up to the root.
    fn open_dir(&self, dir: u32) -> Result<Vec<u32>, FsError> {
        let node = self.node(dir.into())?;
        if node.kind() != FileKind::Dir {
            return Err(FsError::NotADirectory);
        }
        // ext4-view's own idea of the size decides how far it reads.
        if node.meta.len() > MAX_DIR_BYTES {
            return Err(FsError::Damaged(format!(
                "directory {dir} claims {} bytes, more than {MAX_DIR_BYTES}",
                node.meta.len()
            )));
        }
        if node.raw.flags() & ENCRYPT_FL != 0 {
            return Err(FsError::Unsupported("encrypted directory".into()));
        }
        self.ancestors(dir)
    }

    /// The entries of `dir`, checked.
    fn list_dir(&mut self, dir: u32) -> Result<Vec<DirEntry>, FsError> {
        let ancestors = self.open_dir(dir)?;
        let mut out = Vec::new();
        for entry in self.fs.read_dir_inode(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.as_ref();
            if name == b"." || name == b".." {
                continue;
            }
            if out.len() == MAX_DIR_ENTRIES {
                return Err(FsError::Damaged(format!(
                    "directory {dir} has more than {MAX_DIR_ENTRIES} entries"
                )));
            }
            let kind = kind_of(entry.file_type()?);
            self.admit(dir, &ancestors, name, entry.inode(), kind)?;
            out.push(DirEntry {
                name: name.to_vec(),
                node: entry.inode().into(),
                kind,
            });
        }
        self.remember_names(dir, &out);
        Ok(out)
    }

    /// Keep `entries` of `dir` for the lookups that follow.
    fn remember_names(&mut self, dir: u32, entries: &[DirEntry]) {
        self.names.retain(|n| n.dir != dir);
        if entries.len() > MAX_INDEXED_NAMES {
            return;
        }
        let mut kept: usize = self.names.iter().map(|n| n.entries.len()).sum();
        while !self.names.is_empty()
            && (kept + entries.len() > MAX_INDEXED_NAMES || self.names.len() == INDEXED_DIRS)
        {
            kept -= self.names.remove(0).entries.len();
        }
        let entries = entries
            .iter()
            .map(|e| (e.name.clone(), (e.node as u32, e.kind)))
            .collect();
        self.names.push(NameIndex { dir, entries });
    }

    /// Whether ext4-view's hash of `name` is the one the directory was
    /// built with: its hashes are the signed-`char` ones, which differ
    /// from the unsigned ones only for bytes >= 0x80.
    fn hash_agrees(&self, name: &[u8]) -> bool {
        !self.unsigned_hash || name.is_ascii()
    }

    /// Up to `buf.len()` bytes of `node`'s data from `offset`, the file
    /// being `size` bytes long.
    fn read_data(
        &mut self,
        node: &RawInode,
        size: u64,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, FsError> {
        let plan = self.plan_data(node, size, offset, buf.len())?;
        self.read_plan(&plan, buf)
    }

    /// Read the pieces of `plan` into the start of `buf`; how many bytes.
    fn read_plan(&self, plan: &[Piece], buf: &mut [u8]) -> Result<usize, FsError> {
        Ok(super::read_planned_into(&self.src, plan, buf)?)
    }

    /// Where the bytes `read_data` returns lie on the volume: extents and
    /// block maps walked, runs of blocks that follow each other on disk
    /// joined, each block where the replayed journal has it.
    fn plan_data(
        &mut self,
        node: &RawInode,
        size: u64,
        offset: u64,
        len: usize,
    ) -> Result<Vec<Piece>, FsError> {
        let mut plan = Vec::new();
        if offset >= size {
            return Ok(plan);
        }
        let want = (size - offset).min(len as u64) as usize;
        let block_size = u64::from(self.layout.block_size);
        let mut done = 0;
        while done < want {
            let at = offset + done as u64;
            let logical = at / block_size;
            let mut mapped = self.map(node, logical)?;
            // A block map gives one block at a time: join the ones that
            // follow each other on disk into one read.
            let still = (want - done) as u64 + at % block_size;
            while let Run::Data { first_block } = mapped.run {
                if mapped.blocks * block_size >= still {
                    break;
                }
                let next = self.map(node, logical + mapped.blocks)?;
                match next.run {
                    Run::Data { first_block: b } if b == first_block + mapped.blocks => {
                        mapped.blocks += next.blocks;
                    }
                    _ => break,
                }
            }
            let in_run = mapped.blocks * block_size - at % block_size;
            let n = in_run.min((want - done) as u64) as usize;
            match mapped.run {
                Run::Zeros => plan.push(Piece::Zeros(n)),
                Run::Data { first_block } => {
                    self.plan_blocks(first_block, at % block_size, n, &mut plan);
                }
            }
            done += n;
        }
        Ok(plan)
    }

    fn map(&mut self, node: &RawInode, logical: u64) -> Result<Mapped, FsError> {
        map::map_block(&self.fs, &self.layout, node, logical, &mut self.node)
    }

    /// The pieces of `len` bytes from byte `within` of filesystem block
    /// `first_block` on, each block where the journal has it.
    fn plan_blocks(&self, first_block: u64, within: u64, len: usize, plan: &mut Vec<Piece>) {
        let block_size = u64::from(self.layout.block_size);
        if self.fs.journal_mapped_blocks() == 0 {
            plan.push(Piece::At {
                offset: first_block * block_size + within,
                len,
            });
            return;
        }
        // Runs of blocks the journal leaves where they are, or moves
        // together.
        let mut done = 0;
        let mut block = first_block;
        let mut within = within;
        while done < len {
            let home = self.fs.journal_map_block(block);
            let mut blocks = 1;
            let needed = (len - done) as u64 + within;
            while blocks * block_size < needed
                && self.fs.journal_map_block(block + blocks) == home + blocks
            {
                blocks += 1;
            }
            let n = (blocks * block_size - within).min((len - done) as u64) as usize;
            plan.push(Piece::At {
                offset: home * block_size + within,
                len: n,
            });
            done += n;
            block += blocks;
            within = 0;
        }
    }
}

impl FileSystem for Ext4Fs {
    fn root(&self) -> NodeId {
        ROOT.into()
    }

    fn notes(&self) -> Vec<String> {
        match &self.journal {
            Journal::Clean => Vec::new(),
            Journal::Replayed { blocks } => vec![format!(
                "journal replayed in memory: {blocks} blocks of committed transactions applied, \
                 as the kernel would on mounting"
            )],
            Journal::NotReplayed { why } => vec![format!(
                "journal NOT replayed ({why}): shown as last written home, as mount -o noload"
            )],
        }
    }

    fn stat(&mut self, node: NodeId) -> Result<Stat, FsError> {
        let n = self.node(node)?;
        let kind = n.kind();
        let times: Vec<(&'static str, _)> = [
            ("user.ext4.atime", Time::Access),
            ("user.ext4.mtime", Time::Modify),
            ("user.ext4.ctime", Time::Change),
            ("user.ext4.crtime", Time::Create),
        ]
        .into_iter()
        .filter_map(|(name, which)| Some((name, n.raw.time(which)?)))
        .collect();
        Ok(Stat {
            kind,
            perm: n.meta.mode(),
            uid: n.meta.uid(),
            gid: n.meta.gid(),
            size: n.raw.size(self.large_dir),
            nlink: n.meta.links_count().into(),
            ino: n.raw.ino.into(),
            rdev: match kind {
                FileKind::CharDevice | FileKind::BlockDevice => n.raw.rdev(),
                _ => 0,
            },
            atime: n.raw.time(Time::Access),
            mtime: n.raw.time(Time::Modify),
            ctime: n.raw.time(Time::Change),
            crtime: n.raw.time(Time::Create),
            times,
        })
    }

    fn list(&mut self, dir: NodeId) -> Result<Vec<DirEntry>, FsError> {
        let dir = self.ino(dir)?;
        self.list_dir(dir)
    }

    fn lookup(&mut self, dir: NodeId, name: &[u8]) -> Result<Option<DirEntry>, FsError> {
        let dir = self.ino(dir)?;
        if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') {
            return Ok(None);
        }
        if let Some(index) = self.names.iter().find(|n| n.dir == dir) {
            return Ok(index.entries.get(name).map(|&(node, kind)| DirEntry {
                name: name.to_vec(),
                node: node.into(),
                kind,
            }));
        }
        if !self.hash_agrees(name) {
            return Ok(self.list_dir(dir)?.into_iter().find(|e| e.name == name));
        }
        let ancestors = self.open_dir(dir)?;
        let found = match self.fs.lookup_inode(dir, name) {
            Ok(found) => found,
            // A hash this crate does not compute, or a damaged hash tree:
            // the linear listing may still have the entry.
            Err(Ext4Error::Incompatible(_) | Ext4Error::Corrupt(_)) => {
                return Ok(self.list_dir(dir)?.into_iter().find(|e| e.name == name));
            }
            Err(err) => return Err(err.into()),
        };
        let Some(meta) = found else {
            return Ok(None);
        };
        let kind = kind_of(meta.file_type());
        self.admit(dir, &ancestors, name, meta.ino(), kind)?;
        Ok(Some(DirEntry {
            name: name.to_vec(),
            node: meta.ino().into(),
            kind,
        }))
    }

    fn read_link(&mut self, node: NodeId) -> Result<Vec<u8>, FsError> {
        let n = self.node(node)?;
        if n.kind() != FileKind::Symlink {
            return Err(FsError::NotASymlink);
        }
        if n.raw.flags() & ENCRYPT_FL != 0 {
            return Err(FsError::Unsupported("encrypted symlink".into()));
        }
        let size = n.raw.size(self.large_dir);
        if size == 0 || size > MAX_LINK_BYTES {
            return Err(FsError::Damaged(format!(
                "symlink {}: target of {size} bytes",
                n.raw.ino
            )));
        }
        // The kernel's test for a target kept in i_block: no blocks
        // beyond an attribute block's.
        let sectors = n.raw.sectors(self.huge_file, self.layout.block_size);
        let acl_sectors = if n.raw.file_acl() != 0 {
            u64::from(self.layout.block_size / 512)
        } else {
            0
        };
        if sectors == acl_sectors && n.raw.flags() & INLINE_DATA_FL == 0 {
            let stored = &n.raw.i_block()[..(size as usize).min(inode::I_BLOCK_LEN - 1)];
            return Ok(stored.to_vec());
        }
        let mut target = vec![0u8; size as usize];
        let got = self.read_data(&n.raw, size, 0, &mut target)?;
        target.truncate(got);
        Ok(target)
    }

    fn read(&mut self, node: NodeId, offset: u64, buf: &mut [u8]) -> Result<usize, FsError> {
        let plan = self.plan_read(node, offset, buf.len())?.unwrap_or_default();
        self.read_plan(&plan, buf)
    }

    fn plan_read(
        &mut self,
        node: NodeId,
        offset: u64,
        len: usize,
    ) -> Result<Option<Vec<Piece>>, FsError> {
        let n = self.node(node)?;
        match n.kind() {
            FileKind::File => {}
            FileKind::Dir => return Err(FsError::IsADirectory),
            _ => return Ok(Some(Vec::new())),
        }
        let flags = n.raw.flags();
        if flags & ENCRYPT_FL != 0 {
            return Err(FsError::Unsupported("encrypted file".into()));
        }
        if flags & INLINE_DATA_FL != 0 {
            return Err(FsError::Unsupported("inline data".into()));
        }
        let size = n.raw.size(self.large_dir);
        self.plan_data(&n.raw, size, offset, len).map(Some)
    }

    fn xattrs(&mut self, node: NodeId) -> Result<Vec<(String, Vec<u8>)>, FsError> {
        let n = self.node(node)?;
        xattr::read(&self.fs, self.layout.block_size, &n.raw)
    }
}

#[cfg(test)]
mod tests;
