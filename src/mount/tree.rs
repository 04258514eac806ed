//! The mounted tree's logic, free of FUSE: which node a name or an inode
//! is, its attributes, directory listings, symlink targets, the `info`
//! text and the bytes of a file. The FUSE adapter (fuse.rs) only
//! translates the kernel's requests into these calls and their answers
//! into replies.
//!
//! Caching, and why it is safe: a state's content never changes, and every
//! inode below a state is keyed by its record number (node.rs), so files
//! are opened with keep-cache and get long attribute and entry TTLs.
//! What can change is which state a *name* means: `/latest`, `/at/latest`,
//! and a time name at or after the newest record (a record appended later
//! may still fall at or before it). Those get short TTLs, and the store is
//! re-read (rate-limited) whenever the kernel asks about them.
//!
//! Partitions and the files inside a state are the business of
//! contents.rs; the tree hands it every request about them.

use super::cache::BlockCache;
use super::contents::{is_shown_xattr, Contents, Owner};
use super::inodes::{DynNode, Via};
use super::listing::{self, Entry, History, ListingLimits};
use super::names::{parse_seq_name, seq_name, state_name, Day};
use super::node::{Node, IMAGE_NAME, INFO_NAME, MAX_SEQ};
use super::volumes::{default_opener, Opener};
use crate::fs::volume::VolumeId;
use crate::fs::{FileKind, NodeId};
use crate::store::{Store, StoreError};
use crate::time::{format_rfc3339_ns, parse_time, TimeSpec};
use crate::units::{Seq, TimeNs};
use lru::LruCache;
use parking_lot::Mutex;
use std::num::NonZeroUsize;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// For what never changes: a state's directory, files and attributes.
pub(super) const TTL_FOREVER: Duration = Duration::from_secs(365 * 86_400);
/// For what moves while a writer records: the listings, `/latest`.
const TTL_LIVE: Duration = Duration::from_secs(1);
/// How often at most lookups and listings re-read the store's head.
const REFRESH_INTERVAL: Duration = Duration::from_millis(200);

/// How many states' `info` texts are kept (a few hundred bytes each).
const INFO_CACHE_ENTRIES: usize = 4096;

/// How many settled days' listings are kept (at most 86,400 entries of 16
/// bytes each).
const DAY_CACHE_ENTRIES: usize = 8;

/// The tree's permissions: read-only for everyone the mount admits.
pub(super) const DIR_PERM: u16 = 0o555;
pub(super) const FILE_PERM: u16 = 0o444;

/// Settings that shape the tree (the CLI fills them).
#[derive(Debug, Clone, Copy)]
pub struct TreeConfig {
    pub cache_bytes: u64,
    pub limits: ListingLimits,
    pub uid: u32,
    pub gid: u32,
    /// Worker threads that read filesystems (each owns the volumes it
    /// opened).
    pub fs_threads: usize,
}

/// The tree over one store.
pub struct Tree {
    store: Arc<Store>,
    cache: Arc<BlockCache>,
    config: TreeConfig,
    /// Partitions and files inside the states.
    contents: Contents,
    last_refresh: Mutex<Instant>,
    /// `info` texts by state. A state never changes, and building its text
    /// reads its whole record (for the chain hash), which getattr, open
    /// and every read of `info` would otherwise repeat.
    infos: Mutex<LruCache<u64, Arc<str>>>,
    /// Listings of settled days (days before the newest record's: no
    /// record can fall in them any more), so that listing one again costs
    /// nothing, and so that the `readlink` and `stat` that `ls -l` sends
    /// for each of its links are answered without asking the store.
    days: Mutex<LruCache<Day, Arc<[Entry]>>>,
}

/// A directory's entries as opendir took them.
pub struct Listing {
    pub(super) items: Vec<Item>,
    /// The filesystem directory listed, whose children are [`Child::Fs`].
    pub(super) inside: Option<FsDir>,
}

impl Listing {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// The end of the run of entries from `start` that fills about
    /// `bytes` of a READDIRPLUS reply (at least one entry).
    pub fn page_end(&self, start: usize, bytes: usize) -> usize {
        // fuse_direntplus: a 128-byte entry, a 24-byte dirent, the name
        // padded to 8 bytes.
        const HEADER: usize = 152;
        let mut used = 0;
        let mut end = start;
        while end < self.items.len() {
            used += HEADER + self.items[end].name.len().next_multiple_of(8);
            if used > bytes && end > start {
                break;
            }
            end += 1;
        }
        end
    }
}

/// One entry of a [`Listing`], not numbered yet.
pub(super) struct Item {
    pub name: Vec<u8>,
    pub kind: FileKind,
    pub child: Child,
}

/// What a listed entry is.
#[derive(Debug, Clone, Copy)]
pub(super) enum Child {
    /// `.` or `..`: the kernel takes no reference to them.
    Dot(Node),
    /// A node of the fixed tree.
    Fixed(Node),
    /// A node inside a state (a partition's image or directory, a `files/`).
    Dyn(DynNode),
    /// A node of the filesystem directory listed.
    Fs(NodeId),
}

/// A filesystem directory being listed: what its children's keys share.
pub(super) struct FsDir {
    pub state: Seq,
    pub volume: VolumeId,
    /// Which tree the directory is in (its child directories are too).
    pub via: Option<Via>,
    /// The directory itself (`..` of its children).
    pub dir: Node,
}

/// An entry with its attributes, for READDIRPLUS.
pub struct PlusEntry {
    pub entry: DirEntry,
    pub attr: Attr,
    /// How long the kernel may keep both the name and the attributes.
    pub ttl: Duration,
    /// Whether the tree counted a reference the kernel holds once given
    /// this entry (to be forgotten if the entry is not sent after all).
    pub counted: bool,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub node: Node,
    pub kind: FileKind,
    /// The name's bytes (inside a filesystem, not necessarily UTF-8).
    pub name: Vec<u8>,
}

/// A node's timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Times {
    pub atime: TimeNs,
    pub mtime: TimeNs,
    pub ctime: TimeNs,
    /// Creation time (FUSE on Linux does not pass it on; the extended
    /// attributes show it).
    pub crtime: TimeNs,
}

impl Times {
    /// Every timestamp `t`: the tree's own nodes carry their state's time.
    pub fn all(t: TimeNs) -> Times {
        Times {
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
        }
    }
}

/// A node's attributes, as `stat` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    pub node: Node,
    pub kind: FileKind,
    pub size_bytes: u64,
    pub times: Times,
    pub nlink: u32,
    /// Permission bits (`0o7777`).
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    /// A device node's number (`makedev` form), 0 otherwise.
    pub rdev: u64,
    /// The store's block size, the preferred I/O size.
    pub block_size: u32,
}

/// What a lookup found, and how long the kernel may keep it.
#[derive(Debug, Clone, Copy)]
pub struct Found {
    pub attr: Attr,
    pub attr_ttl: Duration,
    pub entry_ttl: Duration,
}

/// Why a request failed; the adapter turns it into an errno.
#[derive(Debug)]
pub enum Fail {
    /// ENOENT.
    NotFound,
    /// ENOTDIR: a name looked up or listed in a file or a symlink.
    NotADirectory,
    /// EISDIR: a directory opened or read as a file.
    IsADirectory,
    /// EINVAL: a request that does not apply to the node.
    Invalid,
    /// EIO, with the store's error logged.
    Store(StoreError),
    /// EIO: a damaged partition table or filesystem, logged already (once
    /// per state, volume and kind of request).
    Damaged,
    /// EOPNOTSUPP: something a filesystem reader cannot show, logged
    /// already; or an extended attribute outside the namespace shown.
    Unsupported,
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Fail {
        match e {
            StoreError::NoSuchState { .. } => Fail::NotFound,
            e => Fail::Store(e),
        }
    }
}

type Result<T> = std::result::Result<T, Fail>;

/// The time a state is shown with (its directories' and files' times).
pub(super) fn state_time(store: &Store, s: Seq) -> std::result::Result<TimeNs, StoreError> {
    if s.0 > 0 {
        return store.time_of(s);
    }
    // The empty disk: since the store was created, unless the history
    // was recorded with earlier times (`import --at`, a stream from
    // elsewhere); then since the first record, so that seq/0 never
    // looks newer than the states that follow it.
    let created = store.header().created_ns;
    if store.head().seq.0 == 0 {
        return Ok(created);
    }
    Ok(created.min(store.time_of(Seq(1))?))
}

impl Tree {
    /// The tree over `store`, reading filesystems with diskhist's readers.
    pub fn new(store: Arc<Store>, config: TreeConfig) -> Tree {
        Tree::with_opener(store, config, default_opener())
    }

    /// The tree over `store`, opening filesystems with `opener`.
    pub fn with_opener(store: Arc<Store>, config: TreeConfig, opener: Opener) -> Tree {
        let cache = Arc::new(BlockCache::new(store.geometry(), config.cache_bytes));
        let owner = Owner {
            uid: config.uid,
            gid: config.gid,
            block_size: store.geometry().block_size,
        };
        let contents = Contents::new(
            store.clone(),
            cache.clone(),
            opener,
            config.fs_threads,
            owner,
        );
        Tree {
            store,
            cache,
            config,
            contents,
            last_refresh: Mutex::new(Instant::now()),
            infos: Mutex::new(LruCache::new(
                NonZeroUsize::new(INFO_CACHE_ENTRIES).expect("non-zero"),
            )),
            days: Mutex::new(LruCache::new(
                NonZeroUsize::new(DAY_CACHE_ENTRIES).expect("non-zero"),
            )),
        }
    }

    /// The child `name` of `parent`, its attributes, and how long the
    /// kernel may keep each. A dynamic node found counts one reference the
    /// kernel holds until it [`forget`](Tree::forget)s it.
    pub fn lookup(&self, parent: Node, name: &[u8]) -> Result<Found> {
        if let Node::Dyn(id) = parent {
            return self.contents.lookup(id, name);
        }
        // Outside the filesystems, every name is UTF-8.
        let name = std::str::from_utf8(name).map_err(|_| Fail::NotFound)?;
        if let Some((s, via)) = state_dir(parent) {
            if name != IMAGE_NAME && name != INFO_NAME {
                self.check_state(s)?;
                return self.contents.lookup_in_state(s, via, name);
            }
        }
        let (node, entry_ttl) = self.child(parent, name)?;
        Ok(Found {
            attr: self.attr(node)?,
            attr_ttl: self.attr_ttl(node),
            entry_ttl,
        })
    }

    /// A node's attributes and how long the kernel may keep them.
    pub fn getattr(&self, node: Node) -> Result<(Attr, Duration)> {
        Ok((self.attr(node)?, self.attr_ttl(node)))
    }

    /// The kernel gives back `n` references to `node` (only dynamic nodes
    /// are counted).
    pub fn forget(&self, node: Node, n: u64) {
        if let Node::Dyn(id) = node {
            self.contents.forget(id, n);
        }
    }

    /// Dynamic nodes the tree keeps for the kernel (bounded by what the
    /// kernel holds, plus a bounded number only listed).
    #[cfg(test)]
    pub fn dynamic_nodes(&self) -> usize {
        self.contents.held()
    }

    /// Check that `node` is a file that can be opened (its content then
    /// never changes).
    pub fn open(&self, node: Node) -> Result<()> {
        match node {
            Node::Image(s) | Node::Info(s) => self.check_state(s),
            Node::Dyn(id) => self.contents.open(id),
            n if n.kind() == Some(FileKind::Dir) => Err(Fail::IsADirectory),
            _ => Err(Fail::Invalid),
        }
    }

    /// The extended attributes of `node`, names and values. Only files
    /// inside filesystems have any (contents.rs says which).
    pub fn xattrs(&self, node: Node) -> Result<Vec<(String, Vec<u8>)>> {
        match node {
            Node::Dyn(id) => self.contents.xattrs(id),
            _ => Ok(Vec::new()),
        }
    }

    /// The value of `node`'s extended attribute `name`, if it has one.
    ///
    /// A name outside the namespace shown is refused as unsupported
    /// (EOPNOTSUPP, as the kernel's own filesystems answer for a namespace
    /// they have no handler for), at once and without asking a
    /// filesystem. Not "no such attribute" (ENODATA): `ls -l` asks
    /// `security.selinux` of every name it lists, and the ACLs of every
    /// file, and stops asking a filesystem that does not support them,
    /// which spares a round trip to the daemon per entry.
    pub fn xattr(&self, node: Node, name: &[u8]) -> Result<Option<Vec<u8>>> {
        if !is_shown_xattr(name) {
            return Err(Fail::Unsupported);
        }
        let all = self.xattrs(node)?;
        Ok(all
            .into_iter()
            .find(|(k, _)| k.as_bytes() == name)
            .map(|(_, v)| v))
    }

    /// Bytes `offset_bytes..offset_bytes + len` of a file, cut short at
    /// its end.
    pub fn read(&self, node: Node, offset_bytes: u64, len: u32) -> Result<Vec<u8>> {
        match node {
            Node::Image(s) => Ok(self.cache.read(&self.store, s, offset_bytes, len)?),
            Node::Dyn(id) => self.contents.read(id, offset_bytes, len),
            Node::Info(s) => {
                let text = self.info_text(s)?;
                let text = text.as_bytes();
                let start = usize::try_from(offset_bytes)
                    .unwrap_or(usize::MAX)
                    .min(text.len());
                let end = start.saturating_add(len as usize).min(text.len());
                Ok(text[start..end].to_vec())
            }
            _ => Err(Fail::IsADirectory),
        }
    }

    /// Ready the block cache's buffers for the next misses; call after
    /// replying, not before.
    pub fn stock_spares(&self) {
        self.cache.stock_spares();
    }

    /// The store's block size, which statfs reports.
    pub fn block_size(&self) -> u32 {
        self.store.geometry().block_size
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
        Ok(state_time(&self.store, s)?)
    }

    /// Every second of `day` with writes (listing.rs), kept once the day
    /// is settled.
    fn day_entries(&self, day: Day) -> Result<Arc<[Entry]>> {
        if let Some(entries) = self.days.lock().get(&day) {
            return Ok(entries.clone());
        }
        let entries: Arc<[Entry]> = listing::day_entries(&*self.store, day)?.into();
        let head = self.head();
        // Times never decrease: once a record is later than the day, the
        // day's records are all written, and so are the records after
        // each of its entries, which decide their names.
        let settled = head.0 > 0
            && day
                .end()
                .is_some_and(|end| self.store.time_of(head).is_ok_and(|t| t > end));
        if settled {
            self.days.lock().put(day, entries.clone());
        }
        Ok(entries)
    }

    /// The time of state `s` if a kept day listing lists it: it is then
    /// the state at the end of its second, its name is its time, and
    /// neither will change.
    fn listed_time(&self, s: Seq) -> Option<TimeNs> {
        let days = self.days.lock();
        days.iter().find_map(|(_, entries)| {
            let i = entries.binary_search_by_key(&s, |e| e.seq).ok()?;
            Some(entries[i].time)
        })
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

    /// What a symlink points to.
    pub fn link_target(&self, node: Node) -> Result<Vec<u8>> {
        if let Node::Dyn(id) = node {
            return self.contents.link_target(id);
        }
        self.fixed_link_target(node).map(String::into_bytes)
    }

    fn fixed_link_target(&self, node: Node) -> Result<String> {
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
            _ => Err(Fail::Invalid),
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
        let root = self.store.tree_root(s)?.to_hex();
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
            "time: {time}\nseq: {}\nchain: {chain}\ntree_size: {}\ntree_root: {root}\n\
             size_bytes: {}\nblock_size: {}\n{}",
            s.0,
            s.0,
            g.size_bytes,
            g.block_size,
            self.contents.describe(s)
        ))
    }

    fn attr(&self, node: Node) -> Result<Attr> {
        let (mtime, size, nlink) = match node {
            Node::Dyn(id) => return self.contents.attr(id),
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
            // A kept day's listing knows its states' times.
            Node::DayState(s) => match self.listed_time(s) {
                Some(time) => (time, 0, 2),
                None => {
                    self.check_state(s)?;
                    (self.state_time(s)?, 0, 2)
                }
            },
            Node::Image(s) => {
                self.check_state(s)?;
                (self.state_time(s)?, self.store.geometry().size_bytes, 1)
            }
            Node::Info(s) => {
                self.check_state(s)?;
                (self.state_time(s)?, self.info_text(s)?.len() as u64, 1)
            }
            Node::Latest | Node::AtLink(_) => {
                let target = self.fixed_link_target(node)?;
                let s = match node.state() {
                    Some(s) => s,
                    None => self.head(),
                };
                (self.state_time(s)?, target.len() as u64, 1)
            }
        };
        let kind = node.kind().expect("a fixed node");
        Ok(Attr {
            node,
            kind,
            size_bytes: size,
            times: Times::all(mtime),
            nlink,
            perm: match kind {
                FileKind::Dir => DIR_PERM,
                FileKind::Symlink => 0o777,
                _ => FILE_PERM,
            },
            uid: self.config.uid,
            gid: self.config.gid,
            rdev: 0,
            block_size: self.block_size(),
        })
    }

    /// How long the kernel may keep a node's attributes.
    fn attr_ttl(&self, node: Node) -> Duration {
        match node {
            Node::Image(_)
            | Node::Info(_)
            | Node::AtState(_)
            | Node::SeqState(_)
            | Node::DayState(_)
            | Node::Dyn(_) => TTL_FOREVER,
            // A link's target settles once a later record exists.
            Node::AtLink(s) if s < self.head() => TTL_FOREVER,
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
                let kept = self.days.lock().peek(&day).cloned();
                if let Some(entries) = kept {
                    let i = entries.partition_point(|e| e.time < t);
                    return match entries.get(i) {
                        Some(e) if e.time == t && state_name(t) == name => {
                            Ok((Node::DayState(e.seq), TTL_FOREVER))
                        }
                        _ => Err(Fail::NotFound),
                    };
                }
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
                Ok((Node::DayState(s), ttl))
            }
            Node::AtState(s) | Node::SeqState(s) | Node::DayState(s) => match name {
                IMAGE_NAME => Ok((Node::Image(s), TTL_FOREVER)),
                INFO_NAME => Ok((Node::Info(s), TTL_FOREVER)),
                _ => Err(Fail::NotFound),
            },
            Node::Latest | Node::Image(_) | Node::Info(_) | Node::AtLink(_) | Node::Dyn(_) => {
                Err(Fail::NotADirectory)
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

    /// The entries of a directory, taken once per opendir so that
    /// readdir offsets stay consistent. Entries get their numbers as the
    /// kernel reads them ([`Tree::entry`], [`Tree::entries_plus`]).
    pub fn list(&self, dir: Node) -> Result<Listing> {
        let Some(parent) = dir.parent() else {
            let Node::Dyn(id) = dir else {
                unreachable!("every fixed node has a parent")
            };
            return self.contents.list(id);
        };
        let item = |node: Node, name: String| Item {
            name: name.into_bytes(),
            kind: node.kind().expect("a fixed node"),
            child: Child::Fixed(node),
        };
        let dot = |node: Node, name: &str| Item {
            child: Child::Dot(node),
            ..item(node, name.into())
        };
        let mut out = vec![dot(dir, "."), dot(parent, "..")];
        let states = |entries: Vec<Entry>, in_day: bool| {
            entries.into_iter().map(move |e| {
                let node = if in_day {
                    Node::DayState(e.seq)
                } else {
                    Node::AtState(e.seq)
                };
                item(node, state_name(e.time))
            })
        };
        match dir {
            Node::Root => {
                out.push(item(Node::At, "at".into()));
                out.push(item(Node::ByDay, "by-day".into()));
                out.push(item(Node::SeqRoot, "seq".into()));
                out.push(item(Node::Latest, "latest".into()));
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
                    out.push(item(Node::Day(day), day.name()));
                }
            }
            Node::Day(day) => {
                self.refresh();
                out.extend(states(self.day_entries(day)?.to_vec(), true));
            }
            Node::AtState(s) | Node::SeqState(s) | Node::DayState(s) => {
                self.check_state(s)?;
                out.push(item(Node::Image(s), IMAGE_NAME.into()));
                out.push(item(Node::Info(s), INFO_NAME.into()));
                let via = state_dir(dir).expect("a state directory").1;
                out.extend(self.contents.list_state(s, via));
            }
            Node::Latest | Node::Image(_) | Node::Info(_) | Node::AtLink(_) | Node::Dyn(_) => {
                return Err(Fail::NotADirectory)
            }
        }
        Ok(Listing {
            items: out,
            inside: None,
        })
    }

    /// Entry `i` of `listing` for a plain directory listing (READDIR: the
    /// kernel takes no reference).
    pub fn entry(&self, listing: &Listing, i: usize) -> DirEntry {
        let item = &listing.items[i];
        let node = match item.child {
            Child::Dot(n) | Child::Fixed(n) => n,
            _ => self.contents.number(listing, item).expect("a dynamic item"),
        };
        DirEntry {
            node,
            kind: item.kind,
            name: item.name.clone(),
        }
    }

    /// Entries `range` of `listing` with their attributes (READDIRPLUS:
    /// the kernel takes a reference to each dynamic node but `.` and
    /// `..`). An entry whose attributes cannot be read is given with a
    /// zero TTL, so that the kernel asks again, and learns why, when it
    /// is used.
    pub fn entries_plus(&self, listing: &Listing, range: Range<usize>) -> Vec<PlusEntry> {
        let items = &listing.items[range];
        let dynamic = self.contents.plus(listing, items);
        let placeholder = |node: Node, kind: FileKind| Attr {
            node,
            kind,
            size_bytes: 0,
            times: Times::all(TimeNs(0)),
            nlink: 1,
            perm: 0,
            uid: self.config.uid,
            gid: self.config.gid,
            rdev: 0,
            block_size: self.block_size(),
        };
        items
            .iter()
            .zip(dynamic)
            .map(|(item, dynamic)| {
                let (node, attr, ttl, counted) = match (item.child, dynamic) {
                    (_, Some((node, Ok(attr)))) => (node, attr, TTL_FOREVER, true),
                    (_, Some((node, Err(_)))) => {
                        (node, placeholder(node, item.kind), Duration::ZERO, true)
                    }
                    (Child::Fixed(node), None) => match self.attr(node) {
                        Ok(attr) => {
                            let ttl = self.attr_ttl(node).min(self.listed_entry_ttl(node));
                            (node, attr, ttl, false)
                        }
                        Err(_) => (node, placeholder(node, item.kind), Duration::ZERO, false),
                    },
                    // The kernel reads nothing of `.` and `..` but their type.
                    (Child::Dot(node), None) => {
                        (node, placeholder(node, item.kind), Duration::ZERO, false)
                    }
                    (Child::Dyn(_) | Child::Fs(_), None) => {
                        unreachable!("the contents number every dynamic item")
                    }
                };
                PlusEntry {
                    entry: DirEntry {
                        node,
                        kind: attr.kind,
                        name: item.name.clone(),
                    },
                    attr,
                    ttl,
                    counted,
                }
            })
            .collect()
    }

    /// How long the kernel may keep a name a listing of a fixed directory
    /// gave (as [`Tree::lookup`] would for that name).
    fn listed_entry_ttl(&self, node: Node) -> Duration {
        match node {
            Node::Day(_) => TTL_LIVE,
            Node::AtState(s) | Node::DayState(s) if s >= self.head() => TTL_LIVE,
            _ => TTL_FOREVER,
        }
    }

    /// Every entry of `dir`, numbered as a plain listing numbers them.
    #[cfg(test)]
    pub fn list_all(&self, dir: Node) -> Result<Vec<DirEntry>> {
        let listing = self.list(dir)?;
        Ok((0..listing.len())
            .map(|i| self.entry(&listing, i))
            .collect())
    }
}

/// The state a state directory shows, and which of its trees it is in.
fn state_dir(node: Node) -> Option<(Seq, Via)> {
    match node {
        Node::AtState(s) => Some((s, Via::At)),
        Node::SeqState(s) => Some((s, Via::Seq)),
        Node::DayState(s) => Some((s, Via::Day)),
        _ => None,
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
        let tree = Tree::new(
            store.clone(),
            TreeConfig {
                cache_bytes: 1 << 20,
                limits: ListingLimits::default(),
                uid: 0,
                gid: 0,
                fs_threads: 1,
            },
        );
        let first = tree.info_text(Seq(1)).unwrap();
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
        assert_eq!(tree.info_text(Seq(1)).unwrap(), first);
        assert_eq!(
            tree.attr(Node::Info(Seq(1))).unwrap().size_bytes,
            first.len() as u64
        );
    }
}
