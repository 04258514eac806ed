//! The FUSE adapter: translates each of the kernel's requests into a call
//! on the [`Tree`] and its answer into the reply. What the tree holds and
//! why it may be cached is in tree.rs; what is left here is the kernel's
//! side: inode numbers, errnos, file handles and directory snapshots.
//!
//! Every request that would change something answers EROFS, on top of the
//! kernel's own `ro` mount flag.
//!
//! Lookups of nodes inside states are counted by the tree (the kernel
//! holds a reference per answered lookup); `forget` gives them back, so
//! the tree's table of such nodes shrinks as the kernel drops its inodes.
//! (fuser's `batch_forget` falls back to `forget`, one node at a time.)

use super::node::Node;
use super::tree::{Attr, Fail, Listing, Tree};
use crate::fs::FileKind;
use crate::units::TimeNs;
use fuser::{
    AccessFlags, BsdFileFlags, CopyFileRangeFlags, Errno, FileAttr, FileHandle, FileType,
    Filesystem, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig, LockOwner, OpenAccMode,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow,
    WriteFlags,
};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The tree, as the kernel's FUSE requests see it.
pub struct FuseAdapter {
    tree: Tree,
    /// Directory listings, snapshotted at opendir.
    dirs: Mutex<HashMap<u64, Arc<Listing>>>,
    next_fh: AtomicU64,
}

impl Fail {
    /// The errno the kernel gets; a store failure is logged, with `what`
    /// the request, since EIO alone says nothing.
    fn errno(self, what: &str) -> Errno {
        match self {
            Fail::NotFound => Errno::ENOENT,
            Fail::NotADirectory => Errno::ENOTDIR,
            Fail::IsADirectory => Errno::EISDIR,
            Fail::Invalid => Errno::EINVAL,
            Fail::Store(e) => {
                log::error!("{what}: {e}");
                Errno::EIO
            }
            Fail::Damaged => Errno::EIO,
            Fail::Unsupported => Errno::EOPNOTSUPP,
        }
    }
}

fn to_system_time(t: TimeNs) -> SystemTime {
    let magnitude = Duration::from_nanos(t.0.unsigned_abs());
    if t.0 >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH.checked_sub(magnitude).unwrap_or(UNIX_EPOCH)
    }
}

fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::Dir => FileType::Directory,
        FileKind::File => FileType::RegularFile,
        FileKind::Symlink => FileType::Symlink,
        FileKind::CharDevice => FileType::CharDevice,
        FileKind::BlockDevice => FileType::BlockDevice,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::Socket => FileType::Socket,
    }
}

/// A device number (glibc's `makedev` form) as FUSE carries it: the
/// kernel's 32-bit encoding (12 bits of major, 20 of minor).
fn fuse_rdev(rdev: u64) -> u32 {
    let major = libc::major(rdev as libc::dev_t);
    let minor = libc::minor(rdev as libc::dev_t);
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.node.ino()),
        size: a.size_bytes,
        blocks: a.size_bytes.div_ceil(512),
        atime: to_system_time(a.times.atime),
        mtime: to_system_time(a.times.mtime),
        ctime: to_system_time(a.times.ctime),
        crtime: to_system_time(a.times.crtime),
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: fuse_rdev(a.rdev),
        blksize: a.block_size,
        flags: 0,
    }
}

/// Answer an extended-attribute request with `data`: its size when asked
/// for the size (`size` 0), ERANGE when it does not fit.
fn reply_xattr(reply: ReplyXattr, size: u32, data: &[u8]) {
    match u32::try_from(data.len()) {
        Ok(len) if size == 0 => reply.size(len),
        Ok(len) if len <= size => reply.data(data),
        _ => reply.error(Errno::ERANGE),
    }
}

fn node_of(ino: INodeNo) -> Result<Node, Fail> {
    Node::from_ino(ino.0).ok_or(Fail::NotFound)
}

impl FuseAdapter {
    pub fn new(tree: Tree) -> FuseAdapter {
        FuseAdapter {
            tree,
            dirs: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
        }
    }

    /// The listing opendir took for `fh`; listed afresh if there is none
    /// (not opened through opendir: should not happen).
    fn listing(&self, ino: INodeNo, fh: FileHandle) -> Result<Arc<Listing>, Fail> {
        if let Some(l) = self.dirs.lock().get(&fh.0).cloned() {
            return Ok(l);
        }
        Ok(Arc::new(self.tree.list(node_of(ino)?)?))
    }
}

/// The bytes of a READDIRPLUS reply a batch of entries is sized for: the
/// kernel asks for a page at a time.
const PLUS_PAGE_BYTES: usize = 4096;

impl Filesystem for FuseAdapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Let the kernel read ahead generously: images are read sequentially
        // by mount, fsck, TSK and diff.
        let _ = config.set_max_readahead(1 << 20);
        // Listings that carry attributes (when the kernel sees them used):
        // `ls -l` of a directory in a filesystem then costs one call to
        // its reader per page of entries, not one lookup per name.
        let plus = InitFlags::FUSE_DO_READDIRPLUS | InitFlags::FUSE_READDIRPLUS_AUTO;
        if let Err(missing) = config.add_capabilities(plus) {
            log::debug!("the kernel does not offer {missing:?}: plain listings");
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match node_of(parent).and_then(|p| self.tree.lookup(p, name.as_bytes())) {
            Ok(found) => reply.entry_with_ttls(
                &found.attr_ttl,
                &found.entry_ttl,
                &file_attr(&found.attr),
                Generation(0),
            ),
            Err(f) => reply.error(f.errno("lookup")),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        if let Some(n) = Node::from_ino(ino.0) {
            self.tree.forget(n, nlookup);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match node_of(ino).and_then(|n| self.tree.getattr(n)) {
            Ok((attr, ttl)) => reply.attr(&ttl, &file_attr(&attr)),
            Err(f) => reply.error(f.errno("getattr")),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match node_of(ino).and_then(|n| self.tree.link_target(n)) {
            Ok(target) => reply.data(&target),
            Err(f) => reply.error(f.errno("readlink")),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.acc_mode() != OpenAccMode::O_RDONLY || flags.0 & libc::O_TRUNC != 0 {
            return reply.error(Errno::EROFS);
        }
        // A state never changes: the kernel may keep what it read for good.
        match node_of(ino).and_then(|n| self.tree.open(n).map(|()| n)) {
            Ok(n) => reply.opened(FileHandle(n.ino()), FopenFlags::FOPEN_KEEP_CACHE),
            Err(f) => reply.error(f.errno("open")),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match node_of(ino).and_then(|n| self.tree.read(n, offset, size)) {
            Ok(d) => reply.data(&d),
            Err(f) => reply.error(f.errno(&format!("read of {offset}+{size} in inode {ino:?}"))),
        }
        // The reader has its bytes: now is the time to make buffers.
        self.tree.stock_spares();
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _ds: bool, reply: ReplyEmpty) {
        reply.ok(); // nothing is ever dirty
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match node_of(ino).and_then(|n| self.tree.list(n)) {
            Ok(entries) => {
                let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
                self.dirs.lock().insert(fh, Arc::new(entries));
                reply.opened(FileHandle(fh), FopenFlags::empty());
            }
            Err(f) => reply.error(f.errno("opendir")),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let listing = match self.listing(ino, fh) {
            Ok(l) => l,
            Err(f) => return reply.error(f.errno("readdir")),
        };
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        for i in skip..listing.len() {
            let e = self.tree.entry(&listing, i);
            let name = OsStr::from_bytes(&e.name);
            if reply.add(INodeNo(e.node.ino()), i as u64 + 1, file_type(e.kind), name) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let listing = match self.listing(ino, fh) {
            Ok(l) => l,
            Err(f) => return reply.error(f.errno("readdirplus")),
        };
        let mut i = usize::try_from(offset).unwrap_or(usize::MAX);
        'full: while i < listing.len() {
            // As many as a page holds, so that few are looked up in vain.
            let end = listing.page_end(i, PLUS_PAGE_BYTES);
            let batch = self.tree.entries_plus(&listing, i..end);
            for (k, p) in batch.iter().enumerate() {
                let name = OsStr::from_bytes(&p.entry.name);
                let ino = INodeNo(p.entry.node.ino());
                let off = (i + k) as u64 + 1;
                if reply.add(ino, off, name, &p.ttl, &file_attr(&p.attr), Generation(0)) {
                    // Not sent: the kernel takes no reference to these.
                    for q in batch[k..].iter().filter(|q| q.counted) {
                        self.tree.forget(q.entry.node, 1);
                    }
                    break 'full;
                }
            }
            i = end;
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.dirs.lock().remove(&fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let bs = self.tree.block_size();
        reply.statfs(0, 0, 0, 0, 0, bs, 255, bs);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match node_of(ino).and_then(|n| self.tree.xattr(n, name.as_bytes())) {
            Ok(Some(value)) => reply_xattr(reply, size, &value),
            Ok(None) => reply.error(Errno::NO_XATTR),
            Err(f) => reply.error(f.errno("getxattr")),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match node_of(ino).and_then(|n| self.tree.xattrs(n)) {
            Ok(all) => {
                let mut names = Vec::new();
                for (k, _) in &all {
                    names.extend_from_slice(k.as_bytes());
                    names.push(0);
                }
                reply_xattr(reply, size, &names);
            }
            Err(f) => reply.error(f.errno("listxattr")),
        }
    }

    /// Whoever FUSE lets in may read everything (run.rs says why there is
    /// no `default_permissions`); nobody may write; only files with an x
    /// bit are executable, as exec(2) itself will check.
    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        if mask.contains(AccessFlags::W_OK) {
            return reply.error(Errno::EROFS);
        }
        if mask.contains(AccessFlags::X_OK) {
            match node_of(ino).and_then(|n| self.tree.getattr(n)) {
                Ok((a, _)) if a.kind != FileKind::Dir && a.perm & 0o111 == 0 => {
                    return reply.error(Errno::EACCES)
                }
                Ok(_) => {}
                Err(f) => return reply.error(f.errno("access")),
            }
        }
        reply.ok();
    }

    // Everything below would change the tree: refused.

    fn setattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mkdir(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn unlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn rmdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _link_name: &OsStr,
        _target: &Path,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn rename(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _newparent: INodeNo,
        _newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        reply.error(Errno::EROFS);
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        reply.error(Errno::EROFS);
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        _fh_in: FileHandle,
        _offset_in: u64,
        _ino_out: INodeNo,
        _fh_out: FileHandle,
        _offset_out: u64,
        _len: u64,
        _flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        reply.error(Errno::EROFS);
    }
}
