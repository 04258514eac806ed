//! FAT12, FAT16 and FAT32, read through the `fatfs` crate (vendored in
//! `third_party/fatfs` with a small patch: see `third_party/README`),
//! shown as the Linux `vfat` driver shows them mounted read-only with its
//! default options.
//!
//! What is shown:
//! - Directories and regular files, under their long (VFAT) names, or
//!   their 8.3 names when they have none, decoded through code page 437
//!   (vfat's default `codepage=437`) and lower-cased where the entry's
//!   NT case flags say so (vfat's default `shortname=mixed`). A long name
//!   holding an unpaired UTF-16 surrogate is shown with U+FFFD in its place.
//! - Listing order: the order of the entries in the directory, as the
//!   kernel lists them; `.` and `..` are left out.
//! - Node ids: the root is 1 (vfat's root inode number); any other node is
//!   its directory entry's position on the volume in 32-byte slots (its
//!   byte offset / 32), which is also its inode number. An id stays valid
//!   for any [`FatFs`] opened on the same state, and names the same entry
//!   as long as the entry does not move.
//! - Metadata as vfat's defaults give it (`fmask` and `dmask` default to
//!   the mounting user's umask, 022 for root): mode 0755, 0555 for a file
//!   with the read-only attribute (never for a directory: vfat's `rodir`
//!   is off); uid and gid 0; the size stored in the entry (a directory's:
//!   its clusters, as vfat counts them); `nlink` 1.
//! - Times, read as UTC (vfat with `tz=UTC`; without it the kernel shifts
//!   them by the system's time zone), converted with the kernel's own
//!   arithmetic so that even invalid dates agree: mtime (2 s resolution),
//!   atime (a date: midnight), crtime (10 ms resolution); ctime is mtime,
//!   as in the kernel (FAT keeps no change time). The root has none
//!   stored, and shows the epoch as vfat does. All three are in
//!   [`Stat::times`] as `user.fat.modified`, `user.fat.accessed` and
//!   `user.fat.created`.
//! - The volume label ([`FatFs::label`]): the root directory's label entry,
//!   else the boot sector's, as blkid reads it.
//!
//! File contents are read by this module, not by the crate: it follows the
//! first FAT's cluster chain once per file into a list of extents (bounded
//! by the file's size, at most [`MAX_CHAIN_EXTENTS`]) and reads each
//! extent straight from the volume; the crate would walk the chain from
//! the start on every seek.
//!
//! Not supported: exFAT (another filesystem); deleted entries (not shown,
//! as in the kernel); writing.
//!
//! Hostile images: the crate reads through a byte budget, so a looping
//! directory cluster chain ends in [`FsError::Damaged`] instead of an
//! endless read; a listing stops at [`MAX_DIR_ENTRIES`] (FAT's own limit)
//! entries; a subdirectory that points back at the root or at a directory
//! above it (a cycle) is left out of its listing with a warning; cluster
//! numbers outside the volume and bad-cluster marks are damage; every call
//! into the crate runs under `catch_unwind`.

use super::source::Cursor;
use super::{DirEntry, FileKind, FileSystem, FsError, NodeId, Source, Stat};
use crate::units::TimeNs;
use fatfs::{FatType, FsOptions, OemCpConverter};
use std::cell::Cell;
use std::collections::HashMap;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::Arc;

/// The root's node id and inode number (vfat's `MSDOS_ROOT_INO`).
const ROOT_NODE: NodeId = 1;
/// A directory entry's size; node ids count these.
const DIR_ENTRY_BYTES: u64 = 32;
/// FAT allows 65,536 entries in a directory.
pub const MAX_DIR_ENTRIES: usize = 65_536;
/// Most extents one file's cluster chain may have, and all the chains
/// kept (8 MiB of memory).
pub const MAX_CHAIN_EXTENTS: usize = 1 << 20;
/// Most directory listings kept for lookups (each at most
/// [`MAX_DIR_ENTRIES`] entries).
const LISTINGS_KEPT: usize = 2;
/// Most files whose cluster chains are kept.
const CHAIN_CACHE_FILES: usize = 8;
/// Bytes the crate may read for one operation: a directory is at most
/// 2 MiB of entries plus its chain in the FAT; more means a loop.
const STEP_BUDGET_BYTES: u64 = 8 << 20;
/// The FAT is read in blocks of this many bytes.
const FAT_BLOCK_BYTES: u64 = 4096;

/// Directory entry layout (all little-endian):
///
/// ```text
///  0..11  name (8.3, space-padded)   20..22  first cluster, high 16 bits (FAT32)
///  11     attributes                 22..24  modified time
///  12     NT case flags              24..26  modified date
///  13     created, 10 ms units       26..28  first cluster, low 16 bits
///  14..16 created time               28..32  size in bytes
///  16..18 created date
///  18..20 accessed date
/// ```
mod entry {
    pub const ATTRIBUTES: usize = 11;
    pub const CASE_FLAGS: usize = 12;
    pub const LOWER_BASE: u8 = 0x08;
    pub const LOWER_EXT: u8 = 0x10;
    pub const CREATED_CS: usize = 13;
    pub const CREATED_TIME: usize = 14;
    pub const CREATED_DATE: usize = 16;
    pub const ACCESSED_DATE: usize = 18;
    pub const CLUSTER_HIGH: usize = 20;
    pub const MODIFIED_TIME: usize = 22;
    pub const MODIFIED_DATE: usize = 24;
    pub const CLUSTER_LOW: usize = 26;
    pub const SIZE: usize = 28;
    pub const ATTR_READ_ONLY: u8 = 0x01;
    pub const ATTR_DIRECTORY: u8 = 0x10;
}

/// Boot sector (BIOS parameter block) fields this module needs to find
/// the FAT and the data area itself.
mod bpb {
    pub const BYTES_PER_SECTOR: usize = 11;
    pub const SECTORS_PER_CLUSTER: usize = 13;
    pub const RESERVED_SECTORS: usize = 14;
    pub const FATS: usize = 16;
    pub const ROOT_ENTRIES: usize = 17;
    pub const TOTAL_SECTORS_16: usize = 19;
    pub const SECTORS_PER_FAT_16: usize = 22;
    pub const TOTAL_SECTORS_32: usize = 32;
    pub const SECTORS_PER_FAT_32: usize = 36;
    pub const ROOT_CLUSTER: usize = 44;
    pub const LEN: usize = 48;
}

/// A FAT volume.
pub struct FatFs {
    fs: fatfs::FileSystem<Disk>,
    step: Rc<Step>,
    src: Source,
    /// Raw directory entries are read through this (one cached block).
    entries: Cursor,
    layout: Layout,
    fat: FatTable,
    /// Recently read files' cluster chains, newest last.
    chains: Vec<(u32, Arc<Chain>)>,
    /// Each directory listed so far: its parent and its first cluster, to
    /// catch subdirectories that lead back up (cycles).
    dirs: HashMap<NodeId, (NodeId, u32)>,
    warned_cycle: bool,
    /// The last few directories looked into, by name.
    listings: Vec<(NodeId, HashMap<Vec<u8>, DirEntry>)>,
}

/// Where things are on the volume, in bytes.
#[derive(Debug, Clone, Copy)]
struct Layout {
    fat_type: FatType,
    fat_offset: u64,
    data_offset: u64,
    cluster_bytes: u64,
    /// The highest valid cluster number (clusters count from 2).
    max_cluster: u32,
    /// FAT32's root directory cluster (0 on FAT12/16).
    root_cluster: u32,
    /// FAT12/16's fixed root directory region.
    root_dir_bytes: u64,
}

/// Open the FAT volume in `src`.
pub fn open(src: Source) -> Result<FatFs, FsError> {
    let step = Rc::new(Step::default());
    step.begin();
    let disk = Disk {
        cursor: src.cursor(),
        step: step.clone(),
    };
    // Writes fail (the cursor refuses them) and access dates are not
    // updated, so the crate only ever reads.
    let options = FsOptions::new()
        .update_accessed_date(false)
        .oem_cp_converter(&CP437);
    let fs = guarded("opening the volume", || {
        fatfs::FileSystem::new(disk, options).map_err(|e| step.error(e))
    })?;
    let layout = Layout::read(&src, fs.fat_type())?;
    Ok(FatFs {
        fs,
        step,
        fat: FatTable {
            src: src.clone(),
            layout,
            block: None,
        },
        entries: src.cursor(),
        src,
        layout,
        chains: Vec::new(),
        dirs: HashMap::new(),
        warned_cycle: false,
        listings: Vec::new(),
    })
}

impl Layout {
    /// The layout from the boot sector, computed as the crate computes it
    /// (it has validated the fields already).
    fn read(src: &Source, fat_type: FatType) -> Result<Layout, FsError> {
        let mut b = [0u8; bpb::LEN];
        src.read_at(0, &mut b).map_err(io_err)?;
        let u16_at = |at: usize| u64::from(u16::from_le_bytes([b[at], b[at + 1]]));
        let u32_at = |at: usize| u64::from(u32::from_le_bytes(b[at..at + 4].try_into().unwrap()));
        let sector_bytes = u16_at(bpb::BYTES_PER_SECTOR);
        let sectors_per_cluster = u64::from(b[bpb::SECTORS_PER_CLUSTER]);
        let total_sectors = match u16_at(bpb::TOTAL_SECTORS_16) {
            0 => u32_at(bpb::TOTAL_SECTORS_32),
            n => n,
        };
        let fat_sectors = match u16_at(bpb::SECTORS_PER_FAT_16) {
            0 => u32_at(bpb::SECTORS_PER_FAT_32),
            n => n,
        };
        let root_dir_sectors =
            (u16_at(bpb::ROOT_ENTRIES) * DIR_ENTRY_BYTES).div_ceil(sector_bytes.max(1));
        let reserved = u16_at(bpb::RESERVED_SECTORS);
        let first_data_sector = reserved + u64::from(b[bpb::FATS]) * fat_sectors + root_dir_sectors;
        let damaged = || FsError::Damaged("the boot sector's geometry does not add up".into());
        let root_cluster = u32_at(bpb::ROOT_CLUSTER) as u32;
        let clusters = total_sectors
            .checked_sub(first_data_sector)
            .ok_or_else(damaged)?
            .checked_div(sectors_per_cluster)
            .ok_or_else(damaged)?;
        let max_cluster = u32::try_from(clusters + 1).map_err(|_| damaged())?;
        if fat_type == FatType::Fat32 && !(2..=max_cluster).contains(&root_cluster) {
            return Err(FsError::Damaged(format!(
                "the root directory is said to start at cluster {root_cluster}, outside the volume"
            )));
        }
        Ok(Layout {
            fat_type,
            fat_offset: reserved * sector_bytes,
            data_offset: first_data_sector * sector_bytes,
            cluster_bytes: sectors_per_cluster * sector_bytes,
            max_cluster,
            root_cluster: if fat_type == FatType::Fat32 {
                root_cluster
            } else {
                0
            },
            root_dir_bytes: u16_at(bpb::ROOT_ENTRIES) * DIR_ENTRY_BYTES,
        })
    }

    fn cluster_offset(&self, cluster: u32) -> u64 {
        self.data_offset + u64::from(cluster - 2) * self.cluster_bytes
    }
}

impl FatFs {
    /// The volume label: the root directory's label entry, else the boot
    /// sector's; `None` when unset (`NO NAME`).
    pub fn label(&self) -> Option<String> {
        self.step.begin();
        let (fs, step) = (&self.fs, &self.step);
        let from_root = guarded("reading the label", || {
            fs.read_volume_label_from_root_dir()
                .map_err(|e| step.error(e))
        })
        .ok()
        .flatten();
        let label = from_root.unwrap_or_else(|| self.fs.volume_label());
        let label = label.trim_end_matches([' ', '\0']);
        (!label.is_empty() && label != "NO NAME").then(|| label.to_string())
    }

    /// The raw 32-byte directory entry of a node other than the root.
    fn raw_entry(&mut self, node: NodeId) -> Result<[u8; 32], FsError> {
        read_entry(&mut self.entries, &self.layout, node)
    }

    /// The first cluster of directory `dir` (0 for the root), after
    /// checking that it is one.
    fn dir_cluster(&mut self, dir: NodeId) -> Result<u32, FsError> {
        if dir == ROOT_NODE {
            return Ok(0);
        }
        let e = self.raw_entry(dir)?;
        if e[entry::ATTRIBUTES] & entry::ATTR_DIRECTORY == 0 {
            return Err(FsError::NotADirectory);
        }
        match first_cluster(&e, self.layout.fat_type) {
            // A subdirectory at cluster 0 would be the root again.
            0 => Err(FsError::Damaged(format!(
                "directory entry {dir} has no clusters"
            ))),
            c => Ok(c),
        }
    }

    /// Whether a subdirectory of `dir` starting at `cluster` leads back to
    /// the root, to `dir` or to a directory above it.
    fn leads_up(&self, dir: NodeId, dir_cluster: u32, cluster: u32) -> bool {
        if cluster == 0 || cluster == self.layout.root_cluster || cluster == dir_cluster {
            return true;
        }
        let mut at = dir;
        for _ in 0..MAX_DIR_ENTRIES {
            match self.dirs.get(&at) {
                Some(&(parent, c)) => {
                    if c == cluster {
                        return true;
                    }
                    at = parent;
                }
                None => return false,
            }
        }
        true
    }

    /// The cluster chain of the file starting at `first`, long enough for
    /// `size_bytes`; cached.
    fn chain(&mut self, first: u32, size_bytes: u64) -> Result<Arc<Chain>, FsError> {
        if let Some(i) = self.chains.iter().position(|(c, _)| *c == first) {
            let hit = self.chains.remove(i);
            self.chains.push(hit.clone());
            return Ok(hit.1);
        }
        let chain = Arc::new(self.fat.follow(first, size_bytes)?);
        let kept =
            |chains: &[(u32, Arc<Chain>)]| chains.iter().map(|c| c.1.extents.len()).sum::<usize>();
        while !self.chains.is_empty()
            && (self.chains.len() == CHAIN_CACHE_FILES
                || kept(&self.chains) + chain.extents.len() > MAX_CHAIN_EXTENTS)
        {
            self.chains.remove(0);
        }
        self.chains.push((first, chain.clone()));
        Ok(chain)
    }

    fn run<R>(
        &mut self,
        what: &str,
        f: impl FnOnce(&mut Self) -> Result<R, FsError>,
    ) -> Result<R, FsError> {
        self.step.begin();
        guarded(what, || f(self))
    }
}

impl FileSystem for FatFs {
    fn label(&self) -> Option<String> {
        FatFs::label(self)
    }

    fn root(&self) -> NodeId {
        ROOT_NODE
    }

    fn stat(&mut self, node: NodeId) -> Result<Stat, FsError> {
        self.run("stat", |me| {
            if node == ROOT_NODE {
                let size = if me.layout.root_cluster == 0 {
                    me.layout.root_dir_bytes
                } else {
                    me.fat.dir_bytes(me.layout.root_cluster)
                };
                return Ok(root_stat(size));
            }
            let e = me.raw_entry(node)?;
            let is_dir = e[entry::ATTRIBUTES] & entry::ATTR_DIRECTORY != 0;
            let size = if is_dir {
                match first_cluster(&e, me.layout.fat_type) {
                    0 => 0,
                    c => me.fat.dir_bytes(c),
                }
            } else {
                u64::from(le_u32(&e, entry::SIZE))
            };
            Ok(entry_stat(node, &e, size))
        })
    }

    fn list(&mut self, dir: NodeId) -> Result<Vec<DirEntry>, FsError> {
        self.run("listing a directory", |me| {
            let dir_cluster = me.dir_cluster(dir)?;
            let mut out = Vec::new();
            let mut subdirs = Vec::new();
            {
                let (fs, step, entries, layout) = (&me.fs, &me.step, &mut me.entries, &me.layout);
                let d = if dir_cluster == 0 {
                    fs.root_dir()
                } else {
                    fs.dir_at_cluster(dir_cluster)
                };
                for e in d.iter() {
                    let e = e.map_err(|e| step.error(e))?;
                    let mut name = e.file_name();
                    if name == "." || name == ".." {
                        continue;
                    }
                    let node = e.entry_pos / DIR_ENTRY_BYTES;
                    let short = e.short_file_name_as_bytes();
                    if !short.is_ascii() {
                        let raw = read_entry(entries, layout, node)?;
                        if name == ascii_cased(short, &raw) {
                            // The crate lower-cases 8.3 names in ASCII only.
                            name = cp437_cased(short, &raw);
                        }
                    }
                    if out.len() == MAX_DIR_ENTRIES {
                        return Err(FsError::Damaged(format!(
                            "directory {dir}: more than {MAX_DIR_ENTRIES} entries"
                        )));
                    }
                    let kind = if e.is_dir() {
                        subdirs.push((out.len(), e.first_cluster().unwrap_or(0)));
                        FileKind::Dir
                    } else {
                        FileKind::File
                    };
                    out.push(DirEntry {
                        name: name.into_bytes(),
                        node,
                        kind,
                    });
                }
            }
            let mut cycles = Vec::new();
            for (i, cluster) in subdirs {
                if me.leads_up(dir, dir_cluster, cluster) {
                    cycles.push(i);
                } else {
                    me.dirs.insert(out[i].node, (dir, cluster));
                }
            }
            if !cycles.is_empty() && !me.warned_cycle {
                me.warned_cycle = true;
                log::warn!(
                    "FAT: directory {dir} holds a subdirectory that leads back up (a cycle): left out"
                );
            }
            for i in cycles.into_iter().rev() {
                out.remove(i);
            }
            Ok(out)
        })
    }

    fn lookup(&mut self, dir: NodeId, name: &[u8]) -> Result<Option<DirEntry>, FsError> {
        // A FAT directory has no index: keep the last few listings by name,
        // so that a lookup per entry (`ls -l`) does not list per entry.
        let i = match self.listings.iter().position(|(d, _)| *d == dir) {
            Some(i) => i,
            None => {
                let by_name = self
                    .list(dir)?
                    .into_iter()
                    .map(|e| (e.name.clone(), e))
                    .collect();
                if self.listings.len() == LISTINGS_KEPT {
                    self.listings.remove(0);
                }
                self.listings.push((dir, by_name));
                self.listings.len() - 1
            }
        };
        Ok(self.listings[i].1.get(name).cloned())
    }

    fn read_link(&mut self, _node: NodeId) -> Result<Vec<u8>, FsError> {
        Err(FsError::NotASymlink)
    }

    fn read(&mut self, node: NodeId, offset: u64, buf: &mut [u8]) -> Result<usize, FsError> {
        self.run("reading a file", |me| {
            if node == ROOT_NODE {
                return Err(FsError::IsADirectory);
            }
            let e = me.raw_entry(node)?;
            if e[entry::ATTRIBUTES] & entry::ATTR_DIRECTORY != 0 {
                return Err(FsError::IsADirectory);
            }
            let size = u64::from(le_u32(&e, entry::SIZE));
            if offset >= size || buf.is_empty() {
                return Ok(0);
            }
            let want = (size - offset).min(buf.len() as u64) as usize;
            let first = first_cluster(&e, me.layout.fat_type);
            let chain = me.chain(first, size)?;
            chain.read(&me.src, &me.layout, offset, &mut buf[..want])?;
            Ok(want)
        })
    }
}

/// A file's clusters, as runs of consecutive clusters.
#[derive(Debug, Default)]
struct Chain {
    /// (first cluster, number of clusters)
    extents: Vec<(u32, u32)>,
    /// Clusters in all extents.
    clusters: u64,
}

impl Chain {
    /// Fills `buf` from byte `offset` of the file; the chain must cover it.
    fn read(
        &self,
        src: &Source,
        layout: &Layout,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<(), FsError> {
        let cs = layout.cluster_bytes;
        let mut at = offset;
        let mut done = 0usize;
        // The extent holding `offset`: extents are few, a scan is enough
        // unless the file is badly fragmented, so bisect on cumulative
        // cluster counts computed on the fly only when needed.
        let mut extent = 0usize;
        let mut extent_start = 0u64; // in clusters, from the file's start
        while done < buf.len() {
            let cluster_index = at / cs;
            while let Some(&(_, n)) = self.extents.get(extent) {
                if cluster_index < extent_start + u64::from(n) {
                    break;
                }
                extent_start += u64::from(n);
                extent += 1;
            }
            let Some(&(first, n)) = self.extents.get(extent) else {
                return Err(FsError::Damaged(format!(
                    "the file's cluster chain ends before byte {at}"
                )));
            };
            let in_extent = at - extent_start * cs;
            let left_in_extent = u64::from(n) * cs - in_extent;
            let len = left_in_extent.min((buf.len() - done) as u64) as usize;
            src.read_at(
                layout.cluster_offset(first) + in_extent,
                &mut buf[done..done + len],
            )
            .map_err(io_err)?;
            done += len;
            at += len as u64;
        }
        Ok(())
    }
}

/// The first FAT, read a block at a time.
struct FatTable {
    src: Source,
    layout: Layout,
    block: Option<(u64, Box<[u8]>)>,
}

impl FatTable {
    /// The FAT entry of `cluster`: the next cluster, or `None` at the end
    /// of the chain.
    fn next(&mut self, cluster: u32) -> Result<Option<u32>, FsError> {
        let c = u64::from(cluster);
        let (value, end, bad) = match self.layout.fat_type {
            FatType::Fat12 => {
                let at = c + c / 2;
                let v = u32::from(self.byte(at)?) | u32::from(self.byte(at + 1)?) << 8;
                let v = if cluster & 1 == 1 { v >> 4 } else { v & 0xfff };
                (v, 0xff8, 0xff7)
            }
            FatType::Fat16 => {
                let v = u32::from(self.byte(c * 2)?) | u32::from(self.byte(c * 2 + 1)?) << 8;
                (v, 0xfff8, 0xfff7)
            }
            FatType::Fat32 => {
                let mut v = 0u32;
                for i in 0..4 {
                    v |= u32::from(self.byte(c * 4 + i)?) << (8 * i);
                }
                (v & 0x0fff_ffff, 0x0fff_fff8, 0x0fff_fff7)
            }
        };
        if value >= end {
            return Ok(None);
        }
        if value == bad || value < 2 || value > self.layout.max_cluster {
            return Err(FsError::Damaged(format!(
                "cluster {cluster} is followed by {value:#x} in the FAT"
            )));
        }
        Ok(Some(value))
    }

    fn byte(&mut self, offset_in_fat: u64) -> Result<u8, FsError> {
        let at = self.layout.fat_offset + offset_in_fat;
        let start = at / FAT_BLOCK_BYTES * FAT_BLOCK_BYTES;
        if self.block.as_ref().is_none_or(|b| b.0 != start) {
            let len = FAT_BLOCK_BYTES.min(self.src.len_bytes().saturating_sub(start)) as usize;
            let mut b = vec![0u8; len].into_boxed_slice();
            self.src.read_at(start, &mut b).map_err(io_err)?;
            self.block = Some((start, b));
        }
        let b = &self.block.as_ref().expect("filled above").1;
        b.get((at - start) as usize)
            .copied()
            .ok_or_else(|| FsError::Damaged("the FAT runs past the end of the volume".into()))
    }

    /// The chain from `first`, as far as `size_bytes` needs (a longer or
    /// looping chain is cut there; a shorter one is damage when read).
    fn follow(&mut self, first: u32, size_bytes: u64) -> Result<Chain, FsError> {
        let need = size_bytes.div_ceil(self.layout.cluster_bytes);
        let mut chain = Chain::default();
        let mut cluster = first;
        if need == 0 {
            return Ok(chain);
        }
        if cluster < 2 || cluster > self.layout.max_cluster {
            return Err(FsError::Damaged(format!(
                "a {size_bytes}-byte file starts at cluster {cluster}"
            )));
        }
        loop {
            match chain.extents.last_mut() {
                Some((start, n)) if u64::from(*start) + u64::from(*n) == u64::from(cluster) => {
                    *n += 1
                }
                _ => {
                    if chain.extents.len() == MAX_CHAIN_EXTENTS {
                        return Err(FsError::Damaged(format!(
                            "the cluster chain from {first} has more than {MAX_CHAIN_EXTENTS} fragments"
                        )));
                    }
                    chain.extents.push((cluster, 1));
                }
            }
            chain.clusters += 1;
            if chain.clusters == need {
                return Ok(chain);
            }
            match self.next(cluster)? {
                Some(next) => cluster = next,
                None => return Ok(chain),
            }
        }
    }

    /// A directory's size as vfat counts it: its clusters' bytes, as far
    /// as its chain can be followed (and no further than FAT's largest
    /// directory): a damaged chain shows in the listing, not in stat.
    fn dir_bytes(&mut self, first: u32) -> u64 {
        let mut clusters = 0u64;
        let most = (MAX_DIR_ENTRIES as u64 * DIR_ENTRY_BYTES).div_ceil(self.layout.cluster_bytes);
        let mut cluster = first;
        while (2..=self.layout.max_cluster).contains(&cluster) && clusters < most {
            clusters += 1;
            match self.next(cluster) {
                Ok(Some(next)) => cluster = next,
                _ => break,
            }
        }
        clusters * self.layout.cluster_bytes
    }
}

/// The raw 32-byte directory entry of node `node` (not the root).
fn read_entry(entries: &mut Cursor, layout: &Layout, node: NodeId) -> Result<[u8; 32], FsError> {
    let offset = node
        .checked_mul(DIR_ENTRY_BYTES)
        .filter(|&o| o >= layout.fat_offset)
        .ok_or(FsError::NotFound)?;
    let mut e = [0u8; 32];
    entries
        .seek(SeekFrom::Start(offset))
        .and_then(|_| entries.read_exact(&mut e))
        .map_err(io_err)?;
    Ok(e)
}

fn first_cluster(e: &[u8; 32], fat_type: FatType) -> u32 {
    let high = if fat_type == FatType::Fat32 {
        u32::from(le_u16(e, entry::CLUSTER_HIGH))
    } else {
        0
    };
    high << 16 | u32::from(le_u16(e, entry::CLUSTER_LOW))
}

fn root_stat(size: u64) -> Stat {
    let epoch = Some(TimeNs(0));
    Stat {
        kind: FileKind::Dir,
        perm: 0o755,
        uid: 0,
        gid: 0,
        size,
        nlink: 1,
        ino: ROOT_NODE,
        rdev: 0,
        atime: epoch,
        mtime: epoch,
        ctime: epoch,
        crtime: None,
        times: Vec::new(),
    }
}

fn entry_stat(node: NodeId, e: &[u8; 32], size: u64) -> Stat {
    let attributes = e[entry::ATTRIBUTES];
    let is_dir = attributes & entry::ATTR_DIRECTORY != 0;
    let perm = if !is_dir && attributes & entry::ATTR_READ_ONLY != 0 {
        0o555
    } else {
        0o755
    };
    let modified = fat_time(
        le_u16(e, entry::MODIFIED_TIME),
        le_u16(e, entry::MODIFIED_DATE),
        0,
    );
    let accessed = fat_time(0, le_u16(e, entry::ACCESSED_DATE), 0);
    let created = fat_time(
        le_u16(e, entry::CREATED_TIME),
        le_u16(e, entry::CREATED_DATE),
        e[entry::CREATED_CS],
    );
    Stat {
        kind: if is_dir {
            FileKind::Dir
        } else {
            FileKind::File
        },
        perm,
        uid: 0,
        gid: 0,
        size,
        nlink: 1,
        ino: node,
        rdev: 0,
        atime: Some(accessed),
        mtime: Some(modified),
        ctime: Some(modified),
        crtime: Some(created),
        times: vec![
            ("user.fat.created", created),
            ("user.fat.modified", modified),
            ("user.fat.accessed", accessed),
        ],
    }
}

/// A FAT date and time (and hundredths of a second) as UTC, with the
/// kernel's arithmetic (`fat_time_fat2unix`): a month or day of 0 counts
/// as 1, fields out of range are added as they are.
fn fat_time(time: u16, date: u16, centiseconds: u8) -> TimeNs {
    // Days before each month (index 1 = January); 13..15 count as 0.
    const DAYS_BEFORE_MONTH: [i64; 16] = [
        0, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 0, 0, 0,
    ];
    // Days from 1970-01-01 to 1980-01-01.
    const DAYS_1970_TO_1980: i64 = 365 * 10 + 2;
    // Years since 1980 of 2100, which is not a leap year.
    const YEAR_2100: i64 = 120;
    let year = i64::from(date >> 9);
    let month = i64::from((date >> 5) & 0xf).max(1);
    let day = i64::from(date & 0x1f).max(1) - 1;
    let mut leap_days = (year + 3) / 4;
    if year > YEAR_2100 {
        leap_days -= 1;
    }
    if year & 3 == 0 && year != YEAR_2100 && month > 2 {
        leap_days += 1;
    }
    let days = year * 365 + leap_days + DAYS_BEFORE_MONTH[month as usize] + day + DAYS_1970_TO_1980;
    let seconds = i64::from(time & 0x1f) * 2
        + i64::from((time >> 5) & 0x3f) * 60
        + i64::from(time >> 11) * 3600
        + days * 86_400
        + i64::from(centiseconds / 100);
    TimeNs(seconds * 1_000_000_000 + i64::from(centiseconds % 100) * 10_000_000)
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Runs one call into the crate, turning a panic into [`FsError::Damaged`].
fn guarded<R>(what: &str, f: impl FnOnce() -> Result<R, FsError>) -> Result<R, FsError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(FsError::Damaged(format!(
            "{what}: the FAT reader gave up on a damaged structure ({why})"
        )))
    })
}

/// Our own reads: past the end of the volume is a structure pointing
/// out of it (damage); anything else is the disk's own failure.
fn io_err(e: io::Error) -> FsError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        FsError::Damaged(e.to_string())
    } else {
        FsError::Io(e)
    }
}

/// One operation's allowance and outcome, shared by [`FatFs`] and the
/// [`Disk`] the crate reads through.
#[derive(Default)]
struct Step {
    /// Bytes the crate may still read.
    left_bytes: Cell<u64>,
    /// Reading the volume itself failed (not a structure the crate
    /// rejected, nor a read past the end).
    disk_failed: Cell<bool>,
}

impl Step {
    fn begin(&self) {
        self.left_bytes.set(STEP_BUDGET_BYTES);
        self.disk_failed.set(false);
    }

    /// An error from the crate: [`FsError::Io`] if reading the volume
    /// failed, else the crate's complaint about a structure (or a spent
    /// budget), [`FsError::Damaged`].
    fn error(&self, e: io::Error) -> FsError {
        if self.disk_failed.get() {
            FsError::Io(e)
        } else {
            FsError::Damaged(e.to_string())
        }
    }
}

/// The error a spent budget answers.
#[derive(Debug)]
struct Spent;

impl std::fmt::Display for Spent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "read more than {STEP_BUDGET_BYTES} bytes in one step: a loop in a cluster chain"
        )
    }
}

impl std::error::Error for Spent {}

/// What the crate reads through: the volume's cursor, allowed a bounded
/// number of bytes per operation ([`Step`]), refusing writes.
struct Disk {
    cursor: Cursor,
    step: Rc<Step>,
}

impl Read for Disk {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let left = self.step.left_bytes.get();
        if left == 0 {
            return Err(io::Error::other(Spent));
        }
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let got = self.cursor.read(&mut buf[..n]).inspect_err(|e| {
            if e.kind() != io::ErrorKind::UnexpectedEof {
                self.step.disk_failed.set(true);
            }
        })?;
        self.step.left_bytes.set(left - got as u64);
        Ok(got)
    }
}

impl Seek for Disk {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.cursor.seek(pos)
    }
}

impl Write for Disk {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.cursor.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// An 8.3 name (`NAME.EXT` in code page 437) as the crate shows it when
/// there is no long name: lower-cased per the entry's NT case flags, in
/// ASCII only.
fn ascii_cased(short: &[u8], raw: &[u8; 32]) -> String {
    cased(short, raw, |c| c.to_ascii_lowercase())
}

/// The same name as vfat shows it: lower-cased through code page 437's
/// own case pairs (É to é...).
fn cp437_cased(short: &[u8], raw: &[u8; 32]) -> String {
    cased(short, raw, |c| {
        let mut lower = c.to_lowercase();
        match (lower.next(), lower.next()) {
            (Some(l), None) if CP437.encode(l).is_some() => l,
            _ => c,
        }
    })
}

fn cased(short: &[u8], raw: &[u8; 32], lower: impl Fn(char) -> char) -> String {
    let flags = raw[entry::CASE_FLAGS];
    let dot = short.iter().position(|&b| b == b'.').unwrap_or(short.len());
    short
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            let c = CP437.decode(b);
            let flag = if i < dot {
                entry::LOWER_BASE
            } else {
                entry::LOWER_EXT
            };
            if flags & flag != 0 {
                lower(c)
            } else {
                c
            }
        })
        .collect()
}

/// Code page 437, vfat's default for 8.3 names.
#[derive(Debug)]
struct Cp437;

static CP437: Cp437 = Cp437;

/// Characters 0x80..=0xFF of code page 437.
const CP437_HIGH: &str = "ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u{a0}";

impl OemCpConverter for Cp437 {
    fn decode(&self, oem_char: u8) -> char {
        if oem_char < 0x80 {
            return char::from(oem_char);
        }
        CP437_HIGH
            .chars()
            .nth(usize::from(oem_char - 0x80))
            .unwrap_or(char::REPLACEMENT_CHARACTER)
    }

    fn encode(&self, uni_char: char) -> Option<u8> {
        if uni_char.is_ascii() {
            return Some(uni_char as u8);
        }
        CP437_HIGH
            .chars()
            .position(|c| c == uni_char)
            .map(|i| 0x80 + i as u8)
    }
}

#[cfg(test)]
mod tests;
