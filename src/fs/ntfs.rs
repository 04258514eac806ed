//! NTFS, read through the `ntfs` crate, shown as `ntfs-3g -o ro` shows it
//! with its default options.
//!
//! What is shown:
//! - Directories, regular files (sparse ones read as zeros), hard links
//!   (one node, `nlink` = the record's hard link count), symlinks and
//!   special files. Node ids and inode numbers are MFT record numbers
//!   (the root is 5); a node id stays valid for any [`NtfsFs`] opened on
//!   the same state.
//! - Names as stored in UTF-16, turned into UTF-8; an unpaired surrogate
//!   (legal in NTFS, not in Unicode) is kept as its three WTF-8 bytes, so
//!   every name is shown, distinct and unchanged. Like ntfs-3g, the DOS
//!   (8.3) aliases and the system files (records below 16, `$MFT`,
//!   `$Extend`...) are hidden; lookups are exact (byte for byte), so two
//!   POSIX names differing in case are two entries.
//! - Listing order: the directory index's B-tree in order, that is NTFS's
//!   collation (names compared upper-cased through the volume's `$UpCase`
//!   table), as the `ntfs` crate walks it. ntfs-3g lists the same entries
//!   in another order: the index root's first, then each index block's in
//!   the order of the blocks on disk.
//! - Symlinks: ntfs-3g's own (Interix `IntxLNK`, in a system file's data),
//!   Windows symlinks (reparse tag 0xA000000C), junctions (0xA0000003)
//!   and WSL symlinks (0xA000001D). A relative target shows with `/` for
//!   `\`, as ntfs-3g shows it. An absolute one (`\??\C:\Users\x`) shows as
//!   `C:/Users/x`: ntfs-3g prefixes its mount point (and `.NTFS-3G/` when
//!   it cannot find the target on the volume), a path that would lead out
//!   of the state here. Other reparse points show, as in ntfs-3g, as
//!   symlinks to `unsupported reparse tag 0x........`.
//! - Special files as ntfs-3g makes them: Interix `IntxCHR`/`IntxBLK`
//!   (with their device numbers), an empty system file is a FIFO and a
//!   one-byte one a socket; WSL's FIFO, socket and device reparse tags.
//! - Metadata: mode as ntfs-3g's defaults give it (no `umask`, `fmask`,
//!   `dmask` or `permissions` option: 0777 on everything), uid and gid 0
//!   (the mounting user's, root in the daemon), size (a symlink's is its
//!   target's length, a directory's its index allocation's, as ntfs-3g),
//!   `nlink` (1 on directories, as ntfs-3g sets it for find(1)).
//! - Times (100 ns resolution, as stored): mtime, atime and ctime are
//!   `$STANDARD_INFORMATION`'s modified, accessed and MFT-changed, crtime
//!   its created; all eight timestamps are in [`Stat::times`] as
//!   `user.ntfs.si.{created,modified,changed,accessed}` and
//!   `user.ntfs.fn.{created,modified,changed,accessed}` (from the first
//!   non-DOS `$FILE_NAME`). Times before 1970 are exact here; ntfs-3g
//!   rounds them toward zero.
//! - Named data streams (`Zone.Identifier`...), as ntfs-3g's default
//!   `streams_interface=xattr` shows them: as the extended attribute
//!   `user.<stream>`, for streams up to [`MAX_XATTR_STREAM`] bytes (and
//!   [`MAX_XATTR_TOTAL`] bytes for all of a file's). Every stream,
//!   whatever its size, can also be looked up (not listed) as the name
//!   `FILE:STREAM` in FILE's directory and read as a regular file (its
//!   node id is not its file's: bit 63 set, the stream's ordinal above
//!   the record number).
//!
//! Not supported: compressed and encrypted files answer
//! [`FsError::Unsupported`] (EIO) when read, as the crate would silently
//! return their raw clusters (ntfs-3g decompresses); `$LogFile` is not
//! replayed (ntfs-3g does not replay it either); ownership and modes kept
//! in security descriptors or WSL's `$EA` entries are not read (ntfs-3g
//! ignores them too without its `permissions` option); stream names with
//! an unpaired surrogate show U+FFFD in their xattr name.
//!
//! Hostile images: the crate panics on some damaged records, so every call
//! into it runs under `catch_unwind`; every call also reads through a
//! [`Budget`], so a cycle in an index B-tree (which the crate's iterator
//! would follow forever, allocating as it goes) ends in
//! [`FsError::Damaged`]; a directory listing stops at the first entry seen
//! twice, and at [`MAX_DIR_ENTRIES`].

use super::source::Cursor;
use super::{DirEntry, FileKind, FileSystem, FsError, NodeId, Source, Stat};
use crate::units::TimeNs;
use ntfs::indexes::NtfsFileNameIndex;
use ntfs::structured_values::{
    NtfsFileAttributeFlags, NtfsFileName, NtfsFileNamespace, NtfsStandardInformation,
};
use ntfs::{
    Ntfs, NtfsAttributeFlags, NtfsAttributeType, NtfsError, NtfsFile, NtfsFileFlags, NtfsReadSeek,
    NtfsTime,
};
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::io::{self, Read, Seek, SeekFrom};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The root directory's MFT record.
const ROOT_RECORD: u64 = 5;
/// Records below this are NTFS's own files, hidden as ntfs-3g hides them.
const FIRST_USER_RECORD: u64 = 16;
/// Most entries one directory listing returns; more is taken for damage.
pub const MAX_DIR_ENTRIES: usize = 1 << 20;
/// Largest named stream shown as an extended attribute.
pub const MAX_XATTR_STREAM: u64 = 64 * 1024;
/// Most bytes of named streams shown as one file's extended attributes.
pub const MAX_XATTR_TOTAL: u64 = 1 << 20;

/// Bytes one step may read: opening the volume (boot sector, `$MFT`'s
/// record, the 128 KiB `$UpCase` table), one index entry (a path down the
/// B-tree), one file's metadata. Legitimate steps read far less; a loop
/// in the structures reads on until this runs out.
const STEP_BUDGET_BYTES: u64 = 16 << 20;

/// Node ids: a record number (48 bits in NTFS), or with this bit set a
/// named stream of it, numbered from 1 in the file's attribute order in
/// the 15 bits above the record number.
const STREAM_BIT: u64 = 1 << 63;
const RECORD_BITS: u32 = 48;
const RECORD_MASK: u64 = (1 << RECORD_BITS) - 1;
const MAX_STREAM_ORDINAL: u64 = 0x7fff;

/// Reparse tags this reader turns into symlinks or special files.
const TAG_MOUNT_POINT: u32 = 0xA000_0003;
const TAG_SYMLINK: u32 = 0xA000_000C;
const TAG_LX_SYMLINK: u32 = 0xA000_001D;
const TAG_AF_UNIX: u32 = 0x8000_0023;
const TAG_LX_FIFO: u32 = 0x8000_0024;
const TAG_LX_CHR: u32 = 0x8000_0025;
const TAG_LX_BLK: u32 = 0x8000_0026;
/// A reparse point's header: tag (4), data length (2), reserved (2).
const REPARSE_HEADER: usize = 8;
/// Symlink reparse data: substitute name offset and length, print name
/// offset and length (2 each), flags (4), then the path buffer; a
/// junction has no flags.
const SYMLINK_PATH_BUFFER: usize = 12;
const JUNCTION_PATH_BUFFER: usize = 8;
const SYMLINK_FLAG_RELATIVE: u32 = 1;
/// Reparse data is at most 16 KiB.
const MAX_REPARSE_BYTES: u64 = 16 * 1024;

/// Interix special files (ntfs-3g's own format, in a system file's
/// unnamed `$DATA`): an 8-byte magic, then two little-endian u64 device
/// numbers or a UTF-16 symlink target.
const INTX_SYMLINK: &[u8; 8] = b"IntxLNK\x01";
const INTX_CHAR: &[u8; 8] = b"IntxCHR\0";
const INTX_BLOCK: &[u8; 8] = b"IntxBLK\0";
const INTX_DEVICE_END: usize = 24;
/// ntfs-3g reads an Interix file up to its magic plus PATH_MAX UTF-16 units.
const INTX_MAX_BYTES: u64 = 8 + 2 * 4096;

/// 100 ns intervals between 1601-01-01 and 1970-01-01.
const NT_EPOCH_OFFSET: i128 = 116_444_736_000_000_000;

/// An NTFS volume. Cheap to keep: the parsed boot sector and `$UpCase`
/// (128 KiB), and a cursor over the source; every call reads the records
/// it needs afresh.
pub struct NtfsFs {
    ntfs: Ntfs,
    cursor: Cursor,
}

/// Open the NTFS volume in `src`.
pub fn open(src: Source) -> Result<NtfsFs, FsError> {
    guarded("opening the volume", || {
        let mut cursor = src.cursor();
        let mut io = Budget::new(&mut cursor);
        let mut ntfs = Ntfs::new(&mut io).map_err(ntfs_err)?;
        // Name comparisons (lookups, named streams) panic without it.
        ntfs.read_upcase_table(&mut io).map_err(ntfs_err)?;
        let root = ntfs.file(&mut io, ROOT_RECORD).map_err(ntfs_err)?;
        if !root.is_directory() {
            return Err(FsError::Damaged(
                "record 5, the root, is not a directory".into(),
            ));
        }
        drop(root);
        Ok(NtfsFs { ntfs, cursor })
    })
}

impl NtfsFs {
    /// The volume's label (`$Volume`'s `$VOLUME_NAME`), if it has one.
    pub fn label(&self) -> Option<String> {
        let mut cursor = self.cursor.clone();
        guarded("reading the label", || {
            let mut io = Budget::new(&mut cursor);
            let ntfs = &self.ntfs;
            let name = match ntfs.volume_name(&mut io) {
                Some(name) => name.map_err(ntfs_err)?,
                None => return Ok(None),
            };
            let label =
                String::from_utf8_lossy(&utf16_to_wtf8(name.name().u16_iter())).into_owned();
            Ok((!label.is_empty()).then_some(label))
        })
        .ok()
        .flatten()
    }
}

/// What a record is, as ntfs-3g would show it.
struct Inspected {
    kind: FileKind,
    size: u64,
    nlink: u32,
    rdev: u64,
    target: Vec<u8>,
    si: Option<NtfsStandardInformation>,
    file_name: Option<NtfsFileName>,
    /// Named `$DATA` attributes: (ordinal, name, length).
    streams: Vec<(u64, Vec<u16>, u64)>,
}

impl FileSystem for NtfsFs {
    fn label(&self) -> Option<String> {
        NtfsFs::label(self)
    }

    fn root(&self) -> NodeId {
        ROOT_RECORD
    }

    fn stat(&mut self, node: NodeId) -> Result<Stat, FsError> {
        let NtfsFs { ntfs, cursor } = self;
        guarded("stat", || {
            let mut io = Budget::new(cursor);
            let (record, stream) = split_node(node)?;
            let file = open_record(ntfs, &mut io, record)?;
            let info = inspect(&file, &mut io)?;
            let mut stat = stat_of(record, &info);
            if let Some(ordinal) = stream {
                let (_, _, len) = info
                    .streams
                    .iter()
                    .find(|s| s.0 == ordinal)
                    .ok_or(FsError::NotFound)?;
                stat.kind = FileKind::File;
                stat.size = *len;
                stat.rdev = 0;
            }
            Ok(stat)
        })
    }

    fn list(&mut self, dir: NodeId) -> Result<Vec<DirEntry>, FsError> {
        let NtfsFs { ntfs, cursor } = self;
        guarded("listing a directory", || {
            let (record, stream) = split_node(dir)?;
            if stream.is_some() {
                return Err(FsError::NotADirectory);
            }
            let mut entries = Vec::new();
            for_each_entry(ntfs, cursor, record, |name, rec, key, io| {
                let kind = entry_kind(ntfs, io, rec, key)?;
                entries.push(DirEntry {
                    name,
                    node: rec,
                    kind,
                });
                Ok(true)
            })?;
            Ok(entries)
        })
    }

    fn lookup(&mut self, dir: NodeId, name: &[u8]) -> Result<Option<DirEntry>, FsError> {
        let NtfsFs { ntfs, cursor } = self;
        guarded("looking a name up", || {
            let (record, stream) = split_node(dir)?;
            if stream.is_some() {
                return Err(FsError::NotADirectory);
            }
            if let Some(found) = lookup_name(ntfs, cursor, record, name)? {
                return Ok(Some(found));
            }
            // The B-tree search follows the index's collation, which a
            // damaged `$UpCase` table or a misordered index breaks: a name
            // the listing shows would then not be found (ntfs-3g has the
            // same blind spot). Every name listed is found, so a miss walks
            // the listing (bounded like any listing) before answering.
            let mut scanned = None;
            for_each_entry(ntfs, cursor, record, |entry, rec, key, io| {
                if entry != name {
                    return Ok(true);
                }
                let kind = entry_kind(ntfs, io, rec, key)?;
                scanned = Some(DirEntry {
                    name: entry,
                    node: rec,
                    kind,
                });
                Ok(false)
            })?;
            if scanned.is_some() {
                return Ok(scanned);
            }
            // `FILE:STREAM`: a named stream, however large.
            let Some(colon) = name.iter().position(|&b| b == b':') else {
                return Ok(None);
            };
            let (base, stream_name) = (&name[..colon], &name[colon + 1..]);
            let Some(base) = lookup_name(ntfs, cursor, record, base)? else {
                return Ok(None);
            };
            if base.kind != FileKind::File || stream_name.is_empty() {
                return Ok(None);
            }
            let mut io = Budget::new(cursor);
            let file = open_record(ntfs, &mut io, base.node)?;
            let streams = named_streams(&file, &mut io)?;
            let ordinal = streams
                .iter()
                .find(|s| utf16_to_wtf8(s.1.iter().copied()) == stream_name)
                .map(|s| s.0);
            Ok(ordinal.map(|ordinal| DirEntry {
                name: name.to_vec(),
                node: STREAM_BIT | (ordinal << RECORD_BITS) | base.node,
                kind: FileKind::File,
            }))
        })
    }

    fn read_link(&mut self, node: NodeId) -> Result<Vec<u8>, FsError> {
        let NtfsFs { ntfs, cursor } = self;
        guarded("reading a symlink", || {
            let mut io = Budget::new(cursor);
            let (record, stream) = split_node(node)?;
            if stream.is_some() {
                return Err(FsError::NotASymlink);
            }
            let file = open_record(ntfs, &mut io, record)?;
            let info = inspect(&file, &mut io)?;
            match info.kind {
                FileKind::Symlink => Ok(info.target),
                _ => Err(FsError::NotASymlink),
            }
        })
    }

    fn read(&mut self, node: NodeId, offset: u64, buf: &mut [u8]) -> Result<usize, FsError> {
        let NtfsFs { ntfs, cursor } = self;
        guarded("reading a file", || {
            let mut io = Budget::new(cursor);
            io.allow(buf.len() as u64);
            let (record, stream) = split_node(node)?;
            let file = open_record(ntfs, &mut io, record)?;
            if stream.is_none() && file.is_directory() {
                return Err(FsError::IsADirectory);
            }
            let item = match stream {
                None => match file.data(&mut io, "") {
                    Some(item) => item.map_err(ntfs_err)?,
                    None => return Ok(0),
                },
                Some(ordinal) => nth_named_stream(&file, &mut io, ordinal)?,
            };
            let attribute = item.to_attribute().map_err(ntfs_err)?;
            refuse_transformed(attribute.flags())?;
            let mut value = attribute.value(&mut io).map_err(ntfs_err)?;
            let len = value.len();
            if offset >= len || buf.is_empty() {
                return Ok(0);
            }
            let want = (len - offset).min(buf.len() as u64) as usize;
            value
                .seek(&mut io, SeekFrom::Start(offset))
                .map_err(ntfs_err)?;
            value
                .read_exact(&mut io, &mut buf[..want])
                .map_err(ntfs_err)?;
            Ok(want)
        })
    }

    fn xattrs(&mut self, node: NodeId) -> Result<Vec<(String, Vec<u8>)>, FsError> {
        let NtfsFs { ntfs, cursor } = self;
        guarded("reading named streams", || {
            let mut io = Budget::new(cursor);
            let (record, stream) = split_node(node)?;
            if stream.is_some() {
                return Ok(Vec::new());
            }
            let file = open_record(ntfs, &mut io, record)?;
            let mut out = Vec::new();
            let mut total = 0;
            for (ordinal, name, len) in named_streams(&file, &mut io)? {
                if len > MAX_XATTR_STREAM || total + len > MAX_XATTR_TOTAL {
                    continue;
                }
                total += len;
                io.allow(len);
                let item = nth_named_stream(&file, &mut io, ordinal)?;
                let attribute = item.to_attribute().map_err(ntfs_err)?;
                refuse_transformed(attribute.flags())?;
                let mut value = attribute.value(&mut io).map_err(ntfs_err)?;
                let mut bytes = vec![0u8; len as usize];
                value.read_exact(&mut io, &mut bytes).map_err(ntfs_err)?;
                out.push((format!("user.{}", String::from_utf16_lossy(&name)), bytes));
            }
            Ok(out)
        })
    }
}

/// Splits a node id into its record number and, for a named stream, the
/// stream's ordinal.
fn split_node(node: NodeId) -> Result<(u64, Option<u64>), FsError> {
    let record = node & RECORD_MASK;
    if node & STREAM_BIT == 0 {
        if node != record {
            return Err(FsError::NotFound);
        }
        return Ok((record, None));
    }
    let ordinal = (node & !STREAM_BIT) >> RECORD_BITS;
    if ordinal == 0 {
        return Err(FsError::NotFound);
    }
    Ok((record, Some(ordinal)))
}

fn open_record<'n>(ntfs: &'n Ntfs, io: &mut Budget, record: u64) -> Result<NtfsFile<'n>, FsError> {
    let file = ntfs.file(io, record).map_err(ntfs_err)?;
    if !file.flags().contains(NtfsFileFlags::IN_USE) {
        return Err(FsError::Damaged(format!(
            "MFT record {record} is not in use"
        )));
    }
    Ok(file)
}

/// Calls `f(name, record, key, io)` for each entry of directory `record`
/// that ntfs-3g would show, in index order, until `f` returns false.
fn for_each_entry<F>(ntfs: &Ntfs, cursor: &mut Cursor, record: u64, mut f: F) -> Result<(), FsError>
where
    F: FnMut(Vec<u8>, u64, &NtfsFileName, &mut Budget) -> Result<bool, FsError>,
{
    let mut io = Budget::new(cursor);
    let dir = open_record(ntfs, &mut io, record)?;
    if !dir.is_directory() {
        return Err(FsError::NotADirectory);
    }
    let index = dir.directory_index(&mut io).map_err(ntfs_err)?;
    let mut iter = index.entries();
    let mut seen = HashSet::new();
    loop {
        io.reset();
        let Some(entry) = iter.next(&mut io) else {
            return Ok(());
        };
        let entry = entry.map_err(ntfs_err)?;
        let Some(key) = entry.key() else { continue };
        let key = key.map_err(ntfs_err)?;
        let rec = entry.file_reference().file_record_number();
        if key.namespace() == NtfsFileNamespace::Dos || !user_visible(rec) {
            continue;
        }
        let name = utf16_to_wtf8(key.name().u16_iter());
        // A cycle in the index B-tree brings the same entries round again.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (rec, &name).hash(&mut h);
        if !seen.insert(h.finish()) {
            return Err(FsError::Damaged(format!(
                "directory {record}: its index returns an entry twice (a loop in the B-tree)"
            )));
        }
        if seen.len() > MAX_DIR_ENTRIES {
            return Err(FsError::Damaged(format!(
                "directory {record}: more than {MAX_DIR_ENTRIES} entries"
            )));
        }
        if !f(name, rec, &key, &mut io)? {
            return Ok(());
        }
    }
}

/// ntfs-3g hides NTFS's own files, and the root's entry for itself.
fn user_visible(record: u64) -> bool {
    record >= FIRST_USER_RECORD
}

/// The entry named exactly `name` in directory `record`: a B-tree search
/// (case-insensitive, as NTFS collates) when it finds the very name, a
/// scan when only a differently cased or DOS name matched.
fn lookup_name(
    ntfs: &Ntfs,
    cursor: &mut Cursor,
    record: u64,
    name: &[u8],
) -> Result<Option<DirEntry>, FsError> {
    if let Ok(text) = std::str::from_utf8(name) {
        let mut io = Budget::new(cursor);
        let dir = open_record(ntfs, &mut io, record)?;
        if !dir.is_directory() {
            return Err(FsError::NotADirectory);
        }
        let index = dir.directory_index(&mut io).map_err(ntfs_err)?;
        let mut finder = index.finder();
        match NtfsFileNameIndex::find(&mut finder, ntfs, &mut io, text) {
            None => return Ok(None),
            Some(entry) => {
                let entry = entry.map_err(ntfs_err)?;
                let rec = entry.file_reference().file_record_number();
                if let Some(key) = entry.key() {
                    let key = key.map_err(ntfs_err)?;
                    if key.namespace() != NtfsFileNamespace::Dos
                        && user_visible(rec)
                        && utf16_to_wtf8(key.name().u16_iter()) == name
                    {
                        let kind = entry_kind(ntfs, &mut io, rec, &key)?;
                        return Ok(Some(DirEntry {
                            name: name.to_vec(),
                            node: rec,
                            kind,
                        }));
                    }
                }
            }
        }
    }
    let mut found = None;
    for_each_entry(ntfs, cursor, record, |entry_name, rec, key, io| {
        if entry_name != name {
            return Ok(true);
        }
        let kind = entry_kind(ntfs, io, rec, key)?;
        found = Some(DirEntry {
            name: entry_name,
            node: rec,
            kind,
        });
        Ok(false)
    })?;
    Ok(found)
}

/// An entry's kind: from the index's copy of its `$FILE_NAME` when that
/// settles it (no reparse point, not a system file), else from its record.
fn entry_kind(
    ntfs: &Ntfs,
    io: &mut Budget,
    record: u64,
    key: &NtfsFileName,
) -> Result<FileKind, FsError> {
    let flags = key.file_attributes();
    if !flags.intersects(NtfsFileAttributeFlags::REPARSE_POINT | NtfsFileAttributeFlags::SYSTEM) {
        return Ok(if key.is_directory() {
            FileKind::Dir
        } else {
            FileKind::File
        });
    }
    let file = open_record(ntfs, io, record)?;
    Ok(inspect(&file, io)?.kind)
}

fn stat_of(record: u64, info: &Inspected) -> Stat {
    let si = info.si.as_ref();
    let fname = info.file_name.as_ref();
    let mut times = Vec::with_capacity(8);
    if let Some(si) = si {
        times.push(("user.ntfs.si.created", nt_time(si.creation_time())));
        times.push(("user.ntfs.si.modified", nt_time(si.modification_time())));
        times.push((
            "user.ntfs.si.changed",
            nt_time(si.mft_record_modification_time()),
        ));
        times.push(("user.ntfs.si.accessed", nt_time(si.access_time())));
    }
    if let Some(f) = fname {
        times.push(("user.ntfs.fn.created", nt_time(f.creation_time())));
        times.push(("user.ntfs.fn.modified", nt_time(f.modification_time())));
        times.push((
            "user.ntfs.fn.changed",
            nt_time(f.mft_record_modification_time()),
        ));
        times.push(("user.ntfs.fn.accessed", nt_time(f.access_time())));
    }
    Stat {
        kind: info.kind,
        perm: 0o777,
        uid: 0,
        gid: 0,
        size: info.size,
        nlink: info.nlink,
        ino: record,
        rdev: info.rdev,
        atime: si.map(|s| nt_time(s.access_time())),
        mtime: si.map(|s| nt_time(s.modification_time())),
        ctime: si.map(|s| nt_time(s.mft_record_modification_time())),
        crtime: si.map(|s| nt_time(s.creation_time())),
        times,
    }
}

/// One pass over a record's attributes: its kind, size, times, streams,
/// and link target, as ntfs-3g would show them.
fn inspect(file: &NtfsFile, io: &mut Budget) -> Result<Inspected, FsError> {
    let is_dir = file.is_directory();
    let mut info = Inspected {
        kind: if is_dir {
            FileKind::Dir
        } else {
            FileKind::File
        },
        size: 0,
        nlink: if is_dir {
            1
        } else {
            u32::from(file.hard_link_count())
        },
        rdev: 0,
        target: Vec::new(),
        si: None,
        file_name: None,
        streams: Vec::new(),
    };
    let mut reparse = None;
    let mut dos_name = None;
    let mut ordinal = 0;
    let mut attributes = file.attributes();
    while let Some(item) = attributes.next(io) {
        let item = item.map_err(ntfs_err)?;
        let attribute = item.to_attribute().map_err(ntfs_err)?;
        let Ok(ty) = attribute.ty() else { continue };
        match ty {
            NtfsAttributeType::StandardInformation if info.si.is_none() => {
                info.si = Some(attribute.structured_value(io).map_err(ntfs_err)?);
            }
            NtfsAttributeType::FileName if info.file_name.is_none() => {
                let name: NtfsFileName = attribute.structured_value(io).map_err(ntfs_err)?;
                if name.namespace() == NtfsFileNamespace::Dos {
                    dos_name.get_or_insert(name);
                } else {
                    info.file_name = Some(name);
                }
            }
            NtfsAttributeType::Data => {
                let name = attribute.name().map_err(ntfs_err)?;
                if name.is_empty() {
                    if !is_dir {
                        info.size = attribute.value_length();
                    }
                } else {
                    ordinal += 1;
                    if ordinal <= MAX_STREAM_ORDINAL {
                        info.streams.push((
                            ordinal,
                            name.u16_iter().collect(),
                            attribute.value_length(),
                        ));
                    }
                }
            }
            NtfsAttributeType::IndexAllocation
                if is_dir && attribute.name().map_err(ntfs_err)? == "$I30" =>
            {
                info.size = attribute.value_length();
            }
            NtfsAttributeType::ReparsePoint => {
                let mut value = attribute.value(io).map_err(ntfs_err)?;
                let mut data = vec![0u8; value.len().min(MAX_REPARSE_BYTES) as usize];
                value.read_exact(io, &mut data).map_err(ntfs_err)?;
                reparse = Some(data);
            }
            _ => {}
        }
    }
    if info.file_name.is_none() {
        info.file_name = dos_name;
    }
    let flags = info
        .si
        .as_ref()
        .map_or(NtfsFileAttributeFlags::empty(), |si| si.file_attributes());
    if let Some(data) = reparse {
        if flags.contains(NtfsFileAttributeFlags::REPARSE_POINT) || !data.is_empty() {
            apply_reparse(&mut info, &data);
        }
    } else if !is_dir && flags.contains(NtfsFileAttributeFlags::SYSTEM) {
        apply_interix(&mut info, file, io, flags)?;
    }
    if info.kind == FileKind::Symlink {
        info.size = info.target.len() as u64;
    } else if matches!(
        info.kind,
        FileKind::Fifo | FileKind::Socket | FileKind::CharDevice | FileKind::BlockDevice
    ) {
        info.size = 0;
    }
    Ok(info)
}

/// Reparse points: symlinks, junctions, WSL's links and special files;
/// anything else is shown as ntfs-3g shows it, a symlink to a message.
fn apply_reparse(info: &mut Inspected, data: &[u8]) {
    let Some(tag) = le_u32(data, 0) else {
        return;
    };
    let body = &data[REPARSE_HEADER.min(data.len())..];
    let target = match tag {
        TAG_SYMLINK | TAG_MOUNT_POINT => windows_link_target(tag, body),
        // u32 version, then the target in UTF-8.
        TAG_LX_SYMLINK => body.get(4..).map(<[u8]>::to_vec),
        TAG_LX_FIFO => {
            info.kind = FileKind::Fifo;
            return;
        }
        TAG_AF_UNIX => {
            info.kind = FileKind::Socket;
            return;
        }
        TAG_LX_CHR => {
            info.kind = FileKind::CharDevice;
            return;
        }
        TAG_LX_BLK => {
            info.kind = FileKind::BlockDevice;
            return;
        }
        _ => None,
    };
    info.kind = FileKind::Symlink;
    info.target =
        target.unwrap_or_else(|| format!("unsupported reparse tag 0x{tag:08x}").into_bytes());
}

/// A Windows symlink's or junction's target, as ntfs-3g shows it after
/// its mount point: the substitute name without its `\??\` prefix, with
/// `/` for `\`.
fn windows_link_target(tag: u32, body: &[u8]) -> Option<Vec<u8>> {
    let offset = usize::from(le_u16(body, 0)?);
    let len = usize::from(le_u16(body, 2)?);
    let buffer = if tag == TAG_SYMLINK {
        SYMLINK_PATH_BUFFER
    } else {
        JUNCTION_PATH_BUFFER
    };
    let relative = tag == TAG_SYMLINK && le_u32(body, 8)? & SYMLINK_FLAG_RELATIVE != 0;
    let start = buffer.checked_add(offset)?;
    let raw = body.get(start..start.checked_add(len)?)?;
    let mut units: Vec<u16> = raw
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    if !relative {
        for prefix in [r"\??\", r"\\?\"] {
            let p: Vec<u16> = prefix.encode_utf16().collect();
            if units.starts_with(&p) {
                units.drain(..p.len());
                break;
            }
        }
    }
    let mut target = utf16_to_wtf8(units.into_iter());
    for b in &mut target {
        if *b == b'\\' {
            *b = b'/';
        }
    }
    Some(target)
}

/// ntfs-3g's Interix special files, recognised as ntfs-3g does: a system
/// file that is not hidden and holds 0 bytes is a FIFO, 1 byte a socket;
/// one holding an Interix magic a symlink or a device.
fn apply_interix(
    info: &mut Inspected,
    file: &NtfsFile,
    io: &mut Budget,
    flags: NtfsFileAttributeFlags,
) -> Result<(), FsError> {
    if !flags.contains(NtfsFileAttributeFlags::HIDDEN) {
        match info.size {
            0 => info.kind = FileKind::Fifo,
            1 => info.kind = FileKind::Socket,
            _ => {}
        }
    }
    if info.size <= INTX_SYMLINK.len() as u64 || info.size > INTX_MAX_BYTES {
        return Ok(());
    }
    let Some(item) = file.data(io, "") else {
        return Ok(());
    };
    let item = item.map_err(ntfs_err)?;
    let attribute = item.to_attribute().map_err(ntfs_err)?;
    if attribute
        .flags()
        .intersects(NtfsAttributeFlags::COMPRESSED | NtfsAttributeFlags::ENCRYPTED)
    {
        return Ok(());
    }
    let mut value = attribute.value(io).map_err(ntfs_err)?;
    let mut data = vec![0u8; info.size as usize];
    value.read_exact(io, &mut data).map_err(ntfs_err)?;
    let (magic, rest) = data.split_at(INTX_SYMLINK.len());
    if magic == INTX_SYMLINK {
        info.kind = FileKind::Symlink;
        info.target = utf16_to_wtf8(
            rest.chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]])),
        );
    } else if (magic == INTX_CHAR || magic == INTX_BLOCK) && data.len() == INTX_DEVICE_END {
        let major = le_u64(&data, 8).unwrap_or(0);
        let minor = le_u64(&data, 16).unwrap_or(0);
        info.kind = if magic == INTX_CHAR {
            FileKind::CharDevice
        } else {
            FileKind::BlockDevice
        };
        info.rdev = makedev(major, minor);
    }
    Ok(())
}

/// glibc's `makedev`.
fn makedev(major: u64, minor: u64) -> u64 {
    ((major & 0xffff_f000) << 32)
        | ((major & 0xfff) << 8)
        | ((minor & 0xffff_ff00) << 12)
        | (minor & 0xff)
}

/// The named `$DATA` attributes of `file`: (ordinal, name, length).
fn named_streams(file: &NtfsFile, io: &mut Budget) -> Result<Vec<(u64, Vec<u16>, u64)>, FsError> {
    let mut out = Vec::new();
    let mut ordinal = 0;
    let mut attributes = file.attributes();
    while let Some(item) = attributes.next(io) {
        let attribute = item.map_err(ntfs_err)?;
        let attribute = attribute.to_attribute().map_err(ntfs_err)?;
        if attribute.ty().ok() != Some(NtfsAttributeType::Data) {
            continue;
        }
        let name = attribute.name().map_err(ntfs_err)?;
        if name.is_empty() {
            continue;
        }
        ordinal += 1;
        if ordinal > MAX_STREAM_ORDINAL {
            break;
        }
        out.push((ordinal, name.u16_iter().collect(), attribute.value_length()));
    }
    Ok(out)
}

/// The `ordinal`-th (from 1) named `$DATA` attribute of `file`.
fn nth_named_stream<'n, 'f>(
    file: &'f NtfsFile<'n>,
    io: &mut Budget,
    ordinal: u64,
) -> Result<ntfs::NtfsAttributeItem<'n, 'f>, FsError> {
    let mut seen = 0;
    let mut attributes = file.attributes();
    while let Some(item) = attributes.next(io) {
        let item = item.map_err(ntfs_err)?;
        let attribute = item.to_attribute().map_err(ntfs_err)?;
        if attribute.ty().ok() != Some(NtfsAttributeType::Data)
            || attribute.name().map_err(ntfs_err)?.is_empty()
        {
            continue;
        }
        seen += 1;
        if seen == ordinal {
            return Ok(item);
        }
    }
    Err(FsError::NotFound)
}

/// The crate hands out compressed and encrypted data as stored, which
/// would be wrong bytes presented as a file's content.
fn refuse_transformed(flags: NtfsAttributeFlags) -> Result<(), FsError> {
    if flags.contains(NtfsAttributeFlags::ENCRYPTED) {
        return Err(FsError::Unsupported("encrypted".into()));
    }
    if flags.intersects(NtfsAttributeFlags::COMPRESSED) {
        return Err(FsError::Unsupported("compressed".into()));
    }
    Ok(())
}

/// NT time (100 ns since 1601) as nanoseconds since 1970, saturating
/// beyond the year 2262.
fn nt_time(t: NtfsTime) -> TimeNs {
    let ns = (i128::from(t.nt_timestamp()) - NT_EPOCH_OFFSET) * 100;
    TimeNs(ns.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
}

/// UTF-16 to UTF-8, keeping an unpaired surrogate as its three WTF-8
/// bytes rather than replacing it: names stay distinct and unchanged.
pub(crate) fn utf16_to_wtf8(units: impl Iterator<Item = u16>) -> Vec<u8> {
    let mut out = Vec::new();
    for unit in char::decode_utf16(units) {
        match unit {
            Ok(c) => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
            Err(e) => {
                let u = e.unpaired_surrogate();
                out.extend_from_slice(&[
                    0xe0 | (u >> 12) as u8,
                    0x80 | ((u >> 6) & 0x3f) as u8,
                    0x80 | (u & 0x3f) as u8,
                ]);
            }
        }
    }
    out
}

fn le_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
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
            "{what}: the NTFS reader gave up on a damaged structure ({why})"
        )))
    })
}

fn ntfs_err(e: NtfsError) -> FsError {
    match e {
        NtfsError::Io(e) => io_err(e),
        other => FsError::Damaged(other.to_string()),
    }
}

/// A read past the end of the volume, or a spent [`Budget`], is a
/// structure pointing where it should not: damage, not an I/O failure.
fn io_err(e: io::Error) -> FsError {
    if e.kind() == io::ErrorKind::UnexpectedEof || e.get_ref().is_some_and(|r| r.is::<Spent>()) {
        FsError::Damaged(e.to_string())
    } else {
        FsError::Io(e)
    }
}

/// The error a spent [`Budget`] answers.
#[derive(Debug)]
struct Spent;

impl std::fmt::Display for Spent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "read more than {STEP_BUDGET_BYTES} bytes in one step: a loop in the structures"
        )
    }
}

impl std::error::Error for Spent {}

/// The cursor every crate call reads through, allowing each step (see
/// [`STEP_BUDGET_BYTES`]) a bounded number of bytes, so that no loop in
/// the on-disk structures can keep a call going.
struct Budget<'c> {
    cursor: &'c mut Cursor,
    left_bytes: u64,
}

impl<'c> Budget<'c> {
    fn new(cursor: &'c mut Cursor) -> Budget<'c> {
        Budget {
            cursor,
            left_bytes: STEP_BUDGET_BYTES,
        }
    }

    /// A new step begins.
    fn reset(&mut self) {
        self.left_bytes = STEP_BUDGET_BYTES;
    }

    /// This step also reads `bytes` of file data.
    fn allow(&mut self, bytes: u64) {
        self.left_bytes = self.left_bytes.saturating_add(bytes);
    }
}

impl Read for Budget<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.left_bytes == 0 {
            return Err(io::Error::other(Spent));
        }
        let n = buf
            .len()
            .min(usize::try_from(self.left_bytes).unwrap_or(usize::MAX));
        let got = self.cursor.read(&mut buf[..n])?;
        self.left_bytes -= got as u64;
        Ok(got)
    }
}

impl Seek for Budget<'_> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.cursor.seek(pos)
    }
}

#[cfg(test)]
pub(crate) mod tests;
