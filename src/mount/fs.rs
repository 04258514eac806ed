//! The FUSE filesystem: answers the kernel's requests from the store.
//!
//! Caching, and why it is safe: a state's content never changes, and every
//! inode below a state is keyed by its record number (tree.rs), so files
//! are opened with `FOPEN_KEEP_CACHE` and get long attribute and entry TTLs.
//! What can change is which state a *name* means: `/latest`, `/at/latest`,
//! and a time name at or after the newest record (a record appended later
//! may still fall at or before it). Those get short TTLs, and the store is
//! re-read (rate-limited) whenever the kernel asks about them.
//!
//! Every request that would change something answers EROFS, on top of the
//! kernel's own `ro` mount flag.

use super::cache::BlockCache;
use super::listing::{self, Entry, History, Limits};
use super::names::{parse_seq_name, seq_name, state_name, Day};
use super::tree::{Kind, Node, IMAGE_NAME, INFO_NAME, MAX_SEQ};
use crate::store::{Store, StoreError};
use crate::time::{format_rfc3339_ns, parse_time, TimeSpec};
use crate::units::{Seq, TimeNs};
use fuser::{
    AccessFlags, BsdFileFlags, CopyFileRangeFlags, Errno, FileAttr, FileHandle, FileType,
    Filesystem, FopenFlags, Generation, INodeNo, KernelConfig, LockOwner, OpenAccMode, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use lru::LruCache;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// For what never changes: a state's directory, files and attributes.
const TTL_FOREVER: Duration = Duration::from_secs(365 * 86_400);
/// For what moves while a writer records: the listings, `/latest`.
const TTL_LIVE: Duration = Duration::from_secs(1);
/// How often at most lookups and listings re-read the store's head.
const REFRESH_INTERVAL: Duration = Duration::from_millis(200);

/// How many states' `info` texts are kept (a few hundred bytes each).
const INFO_CACHE_ENTRIES: usize = 4096;

/// The tree's permissions: read-only for everyone the mount admits.
const DIR_PERM: u16 = 0o555;
const FILE_PERM: u16 = 0o444;

/// Settings that shape the tree (the CLI fills them).
#[derive(Debug, Clone, Copy)]
pub struct TreeConfig {
    pub cache_bytes: u64,
    pub limits: Limits,
    pub uid: u32,
    pub gid: u32,
}

pub struct DiskhistFs {
    store: Arc<Store>,
    cache: BlockCache,
    config: TreeConfig,
    last_refresh: Mutex<Instant>,
    /// Directory listings, snapshotted at opendir.
    dirs: Mutex<HashMap<u64, Arc<Vec<DirEntry>>>>,
    /// `info` texts by state. A state never changes, and building its text
    /// reads its whole record (for the chain hash), which getattr, open
    /// and every read of `info` would otherwise repeat.
    infos: Mutex<LruCache<u64, Arc<str>>>,
    next_fh: AtomicU64,
}

struct DirEntry {
    node: Node,
    name: String,
}

/// Why a request failed, as the kernel will see it.
#[derive(Debug)]
enum Fail {
    NotFound,
    Errno(Errno),
    Store(StoreError),
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Fail {
        match e {
            StoreError::NoSuchState { .. } => Fail::NotFound,
            e => Fail::Store(e),
        }
    }
}

impl Fail {
    fn errno(self, what: &str) -> Errno {
        match self {
            Fail::NotFound => Errno::ENOENT,
            Fail::Errno(e) => e,
            Fail::Store(e) => {
                log::error!("{what}: {e}");
                Errno::EIO
            }
        }
    }
}

type Result<T> = std::result::Result<T, Fail>;

fn to_system_time(t: TimeNs) -> SystemTime {
    let magnitude = Duration::from_nanos(t.0.unsigned_abs());
    if t.0 >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH.checked_sub(magnitude).unwrap_or(UNIX_EPOCH)
    }
}

fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::Dir => FileType::Directory,
        Kind::File => FileType::RegularFile,
        Kind::Symlink => FileType::Symlink,
    }
}

impl DiskhistFs {
    pub fn new(store: Arc<Store>, config: TreeConfig) -> DiskhistFs {
        let cache = BlockCache::new(store.geometry(), config.cache_bytes);
        DiskhistFs {
            store,
            cache,
            config,
            last_refresh: Mutex::new(Instant::now()),
            dirs: Mutex::new(HashMap::new()),
            infos: Mutex::new(LruCache::new(
                NonZeroUsize::new(INFO_CACHE_ENTRIES).expect("non-zero"),
            )),
            next_fh: AtomicU64::new(1),
        }
    }

    /// Pick up records a live writer appended, at most every REFRESH_INTERVAL.
    fn refresh(&self) {
        let mut last = self.last_refresh.lock();
        if last.elapsed() < REFRESH_INTERVAL {
            return;
        }
        *last = Instant::now();
        drop(last);
        if let Err(e) = self.store.refresh() {
            log::warn!("re-reading the store for new records: {e}; showing what was read before");
        }
    }

    fn head(&self) -> Seq {
        self.store.head().seq
    }

    fn check_state(&self, s: Seq) -> Result<()> {
        if s > self.head() {
            return Err(Fail::NotFound);
        }
        Ok(())
    }

    /// The time a state is shown with (its directories' and files' times).
    fn state_time(&self, s: Seq) -> Result<TimeNs> {
        if s.0 > 0 {
            return Ok(self.store.time_of(s)?);
        }
        // The empty disk: since the store was created, unless the history
        // was recorded with earlier times (`import --at`, a stream from
        // elsewhere); then since the first record, so that seq/0 never
        // looks newer than the states that follow it.
        let created = self.store.header().created_ns;
        if self.head().0 == 0 {
            return Ok(created);
        }
        Ok(created.min(self.store.time_of(Seq(1))?))
    }

    /// The path, relative to `/at`, that names state `s`: its time if that
    /// time resolves to it, else `../seq/<s>`.
    fn name_in_at(&self, s: Seq) -> Result<String> {
        if listing::owns_its_time(&*self.store, s)? {
            Ok(state_name(self.store.time_of(s)?))
        } else {
            Ok(format!("../seq/{}", seq_name(s)))
        }
    }

    fn link_target(&self, node: Node) -> Result<String> {
        match node {
            Node::Latest => {
                self.refresh();
                let target = self.name_in_at(self.head())?;
                Ok(match target.strip_prefix("../") {
                    Some(seq_path) => seq_path.to_string(),
                    None => format!("at/{target}"),
                })
            }
            Node::AtLink(s) => {
                self.check_state(s)?;
                self.name_in_at(s)
            }
            Node::DayLink(s) => {
                self.check_state(s)?;
                Ok(format!("../../at/{}", self.name_in_at(s)?))
            }
            _ => Err(Fail::Errno(Errno::EINVAL)),
        }
    }

    /// The text of `<state>/info`, built once per state.
    fn info_text(&self, s: Seq) -> Result<Arc<str>> {
        if let Some(text) = self.infos.lock().get(&s.0) {
            return Ok(text.clone());
        }
        let text: Arc<str> = self.build_info_text(s)?.into();
        self.infos.lock().put(s.0, text.clone());
        Ok(text)
    }

    fn build_info_text(&self, s: Seq) -> Result<String> {
        let g = self.store.geometry();
        let (time, chain) = if s.0 == 0 {
            (
                "none (the empty disk before the first record)".to_string(),
                "0".repeat(64),
            )
        } else {
            let r = self.store.record(s)?;
            (format_rfc3339_ns(r.time_ns), r.chain.to_hex())
        };
        Ok(format!(
            "time: {time}\nseq: {}\nchain: {chain}\nsize_bytes: {}\nblock_size: {}\n",
            s.0, g.size_bytes, g.block_size
        ))
    }

    fn attr(&self, node: Node) -> Result<FileAttr> {
        let kind = node.kind();
        let (mtime, size, nlink) = match node {
            Node::Root | Node::At | Node::SeqRoot | Node::ByDay => {
                (self.state_time(self.head())?, 0, 2)
            }
            Node::Day(d) => {
                let end = d.end().ok_or(Fail::NotFound)?;
                (self.state_time(self.store.last_at(end)?)?, 0, 2)
            }
            Node::AtState(s) | Node::SeqState(s) => {
                self.check_state(s)?;
                (self.state_time(s)?, 0, 2)
            }
            Node::Image(s) => {
                self.check_state(s)?;
                (self.state_time(s)?, self.store.geometry().size_bytes, 1)
            }
            Node::Info(s) => {
                self.check_state(s)?;
                (self.state_time(s)?, self.info_text(s)?.len() as u64, 1)
            }
            Node::Latest | Node::AtLink(_) | Node::DayLink(_) => {
                let target = self.link_target(node)?;
                let s = match node.state() {
                    Some(s) => s,
                    None => self.head(),
                };
                (self.state_time(s)?, target.len() as u64, 1)
            }
        };
        let time = to_system_time(mtime);
        Ok(FileAttr {
            ino: INodeNo(node.ino()),
            size,
            blocks: size.div_ceil(512),
            atime: time,
            mtime: time,
            ctime: time,
            crtime: time,
            kind: file_type(kind),
            perm: match kind {
                Kind::Dir => DIR_PERM,
                Kind::File => FILE_PERM,
                Kind::Symlink => 0o777,
            },
            nlink,
            uid: self.config.uid,
            gid: self.config.gid,
            rdev: 0,
            blksize: self.store.geometry().block_size,
            flags: 0,
        })
    }

    /// How long the kernel may keep a node's attributes.
    fn attr_ttl(&self, node: Node) -> Duration {
        match node {
            Node::Image(_) | Node::Info(_) | Node::AtState(_) | Node::SeqState(_) => TTL_FOREVER,
            // A link's target settles once a later record exists.
            Node::AtLink(s) | Node::DayLink(s) if s < self.head() => TTL_FOREVER,
            _ => TTL_LIVE,
        }
    }

    /// The child `name` of `parent`, and how long the name may be cached.
    fn child(&self, parent: Node, name: &str) -> Result<(Node, Duration)> {
        match parent {
            Node::Root => {
                let node = match name {
                    "at" => Node::At,
                    "seq" => Node::SeqRoot,
                    "by-day" => Node::ByDay,
                    "latest" => Node::Latest,
                    _ => return Err(Fail::NotFound),
                };
                Ok((node, TTL_FOREVER))
            }
            Node::At => self.child_of_at(name),
            Node::SeqRoot => {
                self.refresh();
                let s = parse_seq_name(name).ok_or(Fail::NotFound)?;
                if s.0 > MAX_SEQ {
                    return Err(Fail::NotFound);
                }
                self.check_state(s)?;
                Ok((Node::SeqState(s), TTL_FOREVER))
            }
            Node::ByDay => {
                self.refresh();
                let day = Day::parse(name).ok_or(Fail::NotFound)?;
                if !listing::day_has_writes(&*self.store, day)? {
                    return Err(Fail::NotFound);
                }
                Ok((Node::Day(day), TTL_LIVE))
            }
            Node::Day(day) => {
                self.refresh();
                let Ok(TimeSpec::At(t)) = parse_time(name) else {
                    return Err(Fail::NotFound);
                };
                let s = self.store.last_at(t)?;
                let listed = s.0 > 0
                    && state_name(self.store.time_of(s)?) == name
                    && Day::of(t) == day
                    && listing::ends_its_second(&*self.store, s)?;
                if !listed {
                    return Err(Fail::NotFound);
                }
                let ttl = if s < self.head() {
                    TTL_FOREVER
                } else {
                    TTL_LIVE
                };
                Ok((Node::DayLink(s), ttl))
            }
            Node::AtState(s) | Node::SeqState(s) => match name {
                IMAGE_NAME => Ok((Node::Image(s), TTL_FOREVER)),
                INFO_NAME => Ok((Node::Info(s), TTL_FOREVER)),
                _ => Err(Fail::NotFound),
            },
            Node::Latest | Node::Image(_) | Node::Info(_) | Node::AtLink(_) | Node::DayLink(_) => {
                Err(Fail::Errno(Errno::ENOTDIR))
            }
        }
    }

    /// Any accepted spelling of a time under `/at`. The canonical name of a
    /// state is its directory; every other spelling is a symlink to it.
    fn child_of_at(&self, name: &str) -> Result<(Node, Duration)> {
        self.refresh();
        let spec = parse_time(name).map_err(|e| {
            log::debug!("lookup in /at: {e}");
            Fail::NotFound
        })?;
        let s = self.store.resolve(spec)?;
        if s.0 > MAX_SEQ {
            return Err(Fail::NotFound);
        }
        let settled = s < self.head();
        match spec {
            TimeSpec::Latest => Ok((Node::AtLink(s), TTL_LIVE)),
            // A record number names the same state forever.
            TimeSpec::AfterSeq(_) => Ok((Node::AtLink(s), TTL_FOREVER)),
            TimeSpec::At(_) => {
                let ttl = if settled { TTL_FOREVER } else { TTL_LIVE };
                let canonical = s.0 > 0
                    && listing::owns_its_time(&*self.store, s)?
                    && state_name(self.store.time_of(s)?) == name;
                if canonical {
                    Ok((Node::AtState(s), ttl))
                } else {
                    Ok((Node::AtLink(s), ttl))
                }
            }
        }
    }

    /// The entries of a directory, computed once per opendir.
    fn list(&self, dir: Node) -> Result<Vec<DirEntry>> {
        let entry = |node: Node, name: String| DirEntry { node, name };
        let mut out = vec![entry(dir, ".".into()), entry(dir.parent(), "..".into())];
        let states = |entries: Vec<Entry>, link: bool| {
            entries.into_iter().map(move |e| {
                let node = if link {
                    Node::DayLink(e.seq)
                } else {
                    Node::AtState(e.seq)
                };
                entry(node, state_name(e.time))
            })
        };
        match dir {
            Node::Root => {
                out.push(entry(Node::At, "at".into()));
                out.push(entry(Node::ByDay, "by-day".into()));
                out.push(entry(Node::SeqRoot, "seq".into()));
                out.push(entry(Node::Latest, "latest".into()));
            }
            Node::At => {
                self.refresh();
                out.extend(states(
                    listing::at_entries(&*self.store, self.config.limits)?,
                    false,
                ));
            }
            Node::SeqRoot => {} // lookup-only: listing every record would not be bounded
            Node::ByDay => {
                self.refresh();
                for day in listing::days(&*self.store)? {
                    out.push(entry(Node::Day(day), day.name()));
                }
            }
            Node::Day(day) => {
                self.refresh();
                out.extend(states(listing::day_entries(&*self.store, day)?, true));
            }
            Node::AtState(s) | Node::SeqState(s) => {
                self.check_state(s)?;
                out.push(entry(Node::Image(s), IMAGE_NAME.into()));
                out.push(entry(Node::Info(s), INFO_NAME.into()));
            }
            Node::Latest | Node::Image(_) | Node::Info(_) | Node::AtLink(_) | Node::DayLink(_) => {
                return Err(Fail::Errno(Errno::ENOTDIR))
            }
        }
        Ok(out)
    }
}

fn node_of(ino: INodeNo) -> Result<Node> {
    Node::from_ino(ino.0).ok_or(Fail::NotFound)
}

fn name_str(name: &OsStr) -> Result<&str> {
    name.to_str().ok_or(Fail::NotFound)
}

impl Filesystem for DiskhistFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Let the kernel read ahead generously: images are read sequentially
        // by mount, fsck, TSK and diff.
        let _ = config.set_max_readahead(1 << 20);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let found = node_of(parent).and_then(|p| {
            let (node, entry_ttl) = self.child(p, name_str(name)?)?;
            Ok((self.attr(node)?, self.attr_ttl(node), entry_ttl))
        });
        match found {
            Ok((attr, attr_ttl, entry_ttl)) => {
                reply.entry_with_ttls(&attr_ttl, &entry_ttl, &attr, Generation(0))
            }
            Err(f) => reply.error(f.errno("lookup")),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match node_of(ino).and_then(|n| Ok((self.attr(n)?, self.attr_ttl(n)))) {
            Ok((attr, ttl)) => reply.attr(&ttl, &attr),
            Err(f) => reply.error(f.errno("getattr")),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match node_of(ino).and_then(|n| self.link_target(n)) {
            Ok(target) => reply.data(target.as_bytes()),
            Err(f) => reply.error(f.errno("readlink")),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.acc_mode() != OpenAccMode::O_RDONLY || flags.0 & libc::O_TRUNC != 0 {
            return reply.error(Errno::EROFS);
        }
        match node_of(ino) {
            Ok(n @ (Node::Image(s) | Node::Info(s))) => match self.check_state(s) {
                Ok(()) => reply.opened(FileHandle(n.ino()), FopenFlags::FOPEN_KEEP_CACHE),
                Err(f) => reply.error(f.errno("open")),
            },
            Ok(n) if n.kind() == Kind::Dir => reply.error(Errno::EISDIR),
            Ok(_) => reply.error(Errno::EINVAL),
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
        let data = node_of(ino).and_then(|n| match n {
            Node::Image(s) => Ok(self.cache.read(&self.store, s, offset, size)?),
            Node::Info(s) => {
                let text = self.info_text(s)?;
                let text = text.as_bytes();
                let start = usize::try_from(offset)
                    .unwrap_or(usize::MAX)
                    .min(text.len());
                let end = start.saturating_add(size as usize).min(text.len());
                Ok(text[start..end].to_vec())
            }
            _ => Err(Fail::Errno(Errno::EISDIR)),
        });
        match data {
            Ok(d) => reply.data(&d),
            Err(f) => reply.error(f.errno(&format!("read of {offset}+{size} in inode {ino:?}"))),
        }
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
        match node_of(ino).and_then(|n| self.list(n)) {
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
        let entries = match self.dirs.lock().get(&fh.0).cloned() {
            Some(e) => e,
            // Not opened through opendir (should not happen): list afresh.
            None => match node_of(ino).and_then(|n| self.list(n)) {
                Ok(e) => Arc::new(e),
                Err(f) => return reply.error(f.errno("readdir")),
            },
        };
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, e) in entries.iter().enumerate().skip(skip) {
            let kind = file_type(e.node.kind());
            if reply.add(INodeNo(e.node.ino()), i as u64 + 1, kind, &e.name) {
                break;
            }
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
        let bs = self.store.geometry().block_size;
        reply.statfs(0, 0, 0, 0, 0, bs, 255, bs);
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        reply.error(Errno::from_i32(libc::ENODATA));
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, size: u32, reply: ReplyXattr) {
        if size == 0 {
            reply.size(0);
        } else {
            reply.data(&[]);
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        if mask.contains(AccessFlags::W_OK) {
            reply.error(Errno::EROFS);
        } else {
            reply.ok();
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Op, OpFlags, Writer};

    /// Regression: getattr, open and every read of `info` each re-read the
    /// state's whole record (up to 128 MiB) for its chain hash. Now the
    /// text is built once: after the record's data is damaged behind the
    /// mount's back, `info` still answers from what it built.
    #[test]
    fn info_is_built_once_per_state() {
        let dir = tempfile::tempdir().unwrap();
        Writer::init(dir.path(), 1 << 20, 4096).unwrap();
        let mut w = Writer::open(dir.path()).unwrap();
        let data = crate::mount::test_data::incompressible(64 << 10, 0x9e37_79b9_7f4a_7c15);
        let op = Op::Write {
            offset_bytes: 0,
            data: &data,
        };
        w.append(TimeNs(1_795_415_415_000_000_000), op, OpFlags::default())
            .unwrap();
        w.close().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let fs = DiskhistFs::new(
            store.clone(),
            TreeConfig {
                cache_bytes: 1 << 20,
                limits: Limits::default(),
                uid: 0,
                gid: 0,
            },
        );
        let first = fs.info_text(Seq(1)).unwrap();
        assert!(first.contains("seq: 1\n"), "{first}");
        assert!(first.contains(&store.head().chain.to_hex()), "{first}");

        let log = dir.path().join("log");
        let mut bytes = std::fs::read(&log).unwrap();
        let at = bytes
            .windows(32)
            .position(|win| win == &data[5000..5032])
            .expect("the data is stored raw");
        bytes[at] ^= 0xff;
        std::fs::write(&log, &bytes).unwrap();
        assert!(store.record(Seq(1)).is_err(), "the damage must be visible");
        assert_eq!(fs.info_text(Seq(1)).unwrap(), first);
        assert_eq!(
            fs.attr(Node::Info(Seq(1))).unwrap().size,
            first.len() as u64
        );
    }
}
