//! What a state's directory holds beyond `disk.img` and `info`: its
//! partitions (`p<N>.img`, `p<N>/`) and the files of the filesystems in
//! them (`p<N>/files/`, or `files/` for a disk that is one filesystem).
//! Every one of these is a [`Node::Dyn`], numbered by the table in
//! inodes.rs.
//!
//! - A state's table and volumes are read once, through the mount's block
//!   cache, and kept for the [`STATES_CACHED`] states used last.
//! - Filesystems are read by `crate::fs`'s readers, which are not `Send`:
//!   every call runs on the worker that owns its volume (`fs::pool`),
//!   keyed by (state, volume), which keeps the volume open for the next
//!   call. A reader that panics costs that request an EIO.
//! - A damaged table or filesystem answers EIO on what is damaged, and the
//!   log says why once per state, volume and kind of request (listing,
//!   reading...), not on every request; everything else keeps working. A
//!   volume whose filesystem cannot be read has no `files/`, and `info`
//!   says why.
//! - Listings: opendir lists a directory once; its entries are numbered
//!   as the kernel reads them, and when the kernel wants their attributes
//!   too (READDIRPLUS) a page of entries is stat'ed in one call on the
//!   worker ([`Contents::plus`]). The names of the directories listed last
//!   are kept (up to [`LISTED_NAMES`] names in all), so that a lookup that
//!   follows a listing costs one `stat`, whatever the reader's own lookup
//!   costs. A name the listing lacks is still looked up by the reader:
//!   NTFS named streams (`FILE:STREAM`) are found but never listed.
//! - `stat` shows the filesystem's own mode, owner, size, link count and
//!   times. `st_ino` is the mount's number, not the filesystem's: FUSE
//!   uses the node id as `st_ino`, and node ids must differ between
//!   states (the same inode of two states is two files); the filesystem's
//!   number is the extended attribute [`INO_XATTR`], beside every
//!   timestamp the filesystem keeps (each under the name its reader gives
//!   it, `user.ext4.crtime`, `user.ntfs.si.created`...) and the
//!   filesystem's own extended attributes, `user.` names only
//!   ([`is_shown_xattr`]).

use super::cache::BlockCache;
use super::inodes::{DynKey, DynNode, Inodes, Place, Via, UNREFERENCED_ENTRIES};
use super::names::PartitionName;
use super::node::{Node, FILES_NAME};
use super::tree::{
    state_time, Attr, Child, Fail, Found, FsDir, Item, Listing, Times, DIR_PERM, FILE_PERM,
};
use super::volumes::{Opener, StateVolumes};
use crate::fs::pool::Pool;
use crate::fs::volume::VolumeId;
use crate::fs::{FileKind, FileSystem, FsError, NodeId, Stat};
use crate::store::Store;
use crate::time::format_rfc3339_ns;
use crate::units::{Seq, TimeNs};
use lru::LruCache;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

/// States whose table and volumes are kept (a few hundred bytes each).
pub const STATES_CACHED: usize = 256;
/// (state, volume, kind of request) remembered as logged, so that damage
/// is logged once each.
const LOGGED_ENTRIES: usize = 4096;
/// Names of listed directories kept for the lookups that follow.
pub const LISTED_NAMES: usize = 200_000;
/// The extended attribute that gives a file's number in its filesystem.
pub const INO_XATTR: &str = "user.diskhist.ino";

/// A state never changes: whatever is below it may be cached for good.
const TTL_FOREVER: Duration = super::tree::TTL_FOREVER;

type VolumeKey = (Seq, VolumeId);
type Result<T> = std::result::Result<T, Fail>;

/// Who owns the tree's own nodes, and its I/O size.
#[derive(Debug, Clone, Copy)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
    pub block_size: u32,
}

/// The partitions and files of every state.
pub struct Contents {
    store: Arc<Store>,
    cache: Arc<BlockCache>,
    opener: Opener,
    pool: Pool<VolumeKey>,
    owner: Owner,
    states: Mutex<LruCache<Seq, Arc<StateVolumes>>>,
    inodes: Mutex<Inodes>,
    logged: Mutex<LruCache<Logged, ()>>,
    names: Mutex<RecentNames>,
}

/// What was logged: state, volume (`None`: the table), kind of request.
type Logged = (Seq, Option<VolumeId>, &'static str);

/// A directory of one volume of one state.
type DirKey = (Seq, VolumeId, NodeId);

/// The names of the directories listed last, each to its node.
struct RecentNames {
    dirs: LruCache<DirKey, Arc<HashMap<Vec<u8>, NodeId>>>,
    /// Names held in all, and at most.
    names: usize,
    cap: usize,
}

impl RecentNames {
    fn new(cap: usize) -> RecentNames {
        RecentNames {
            dirs: LruCache::unbounded(),
            names: 0,
            cap,
        }
    }

    fn put(&mut self, dir: DirKey, names: HashMap<Vec<u8>, NodeId>) {
        if names.len() > self.cap {
            return;
        }
        self.names += names.len();
        if let Some(old) = self.dirs.put(dir, Arc::new(names)) {
            self.names -= old.len();
        }
        while self.names > self.cap {
            let (_, old) = self.dirs.pop_lru().expect("names are held");
            self.names -= old.len();
        }
    }
}

fn volume_name(v: Option<VolumeId>) -> String {
    match v {
        None => "partition table".into(),
        Some(VolumeId::WholeDisk) => "disk".into(),
        Some(VolumeId::Partition(n)) => format!("p{n}"),
    }
}

/// Whether an extended attribute's name may be shown: only the `user.`
/// namespace. The kernel and the tools give the others meaning
/// (`security.*`: LSM labels and file capabilities; `system.*`: ACLs;
/// `trusted.*`), which must not come from an image under examination;
/// readers show such attributes of the image under `user.` names. It also
/// spares a filesystem call for the `security.selinux` and
/// `system.posix_acl_access` that `ls -l` asks of every file.
pub fn is_shown_xattr(name: &[u8]) -> bool {
    name.starts_with(b"user.")
}

/// A name the kernel can be given: not empty, not `.` or `..`, no `/` and
/// no NUL (one such name would make the kernel fail the whole listing).
fn is_listable(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}

impl Contents {
    pub fn new(
        store: Arc<Store>,
        cache: Arc<BlockCache>,
        opener: Opener,
        threads: usize,
        owner: Owner,
    ) -> Contents {
        let cap = |n: usize| NonZeroUsize::new(n).expect("non-zero");
        Contents {
            store,
            cache,
            opener,
            pool: Pool::new(threads),
            owner,
            states: Mutex::new(LruCache::new(cap(STATES_CACHED))),
            inodes: Mutex::new(Inodes::new(UNREFERENCED_ENTRIES)),
            logged: Mutex::new(LruCache::new(cap(LOGGED_ENTRIES))),
            names: Mutex::new(RecentNames::new(LISTED_NAMES)),
        }
    }

    /// Log that `what` went wrong in `volume` of state `s`, and why,
    /// unless that was logged already.
    fn log_once(
        &self,
        s: Seq,
        volume: Option<VolumeId>,
        what: &'static str,
        why: impl std::fmt::Display,
    ) {
        if self.logged.lock().put((s, volume, what), ()).is_none() {
            log::warn!(
                "state {s}, {}: {what}: {why}; what is damaged there answers EIO (logged once \
                 per state, volume and kind of request)",
                volume_name(volume)
            );
        }
    }

    /// A filesystem's error as the kernel gets it, logged if it is damage.
    fn fail(&self, s: Seq, volume: VolumeId, what: &'static str, e: FsError) -> Fail {
        match e {
            FsError::NotFound => Fail::NotFound,
            FsError::NotADirectory => Fail::NotADirectory,
            FsError::IsADirectory => Fail::IsADirectory,
            FsError::NotASymlink => Fail::Invalid,
            FsError::Unsupported(why) => {
                self.log_once(s, Some(volume), what, format!("not supported: {why}"));
                Fail::Unsupported
            }
            e => {
                self.log_once(s, Some(volume), what, e);
                Fail::Damaged
            }
        }
    }

    /// State `s`'s table and volumes, or why they cannot be read.
    fn state_or_why(&self, s: Seq) -> std::result::Result<Arc<StateVolumes>, String> {
        if let Some(v) = self.states.lock().get(&s) {
            return Ok(v.clone());
        }
        let v =
            Arc::new(StateVolumes::read(&self.store, &self.cache, s).map_err(|e| e.to_string())?);
        self.states.lock().put(s, v.clone());
        Ok(v)
    }

    fn state(&self, s: Seq) -> Result<Arc<StateVolumes>> {
        self.state_or_why(s).map_err(|why| {
            self.log_once(s, None, "reading it", why);
            Fail::Damaged
        })
    }

    /// Run `f` on the filesystem of `volume` in state `s`, on the worker
    /// that owns it. `Ok(Err(why))`: the volume has no readable filesystem.
    fn with_fs<R: Send + 'static>(
        &self,
        s: Seq,
        vols: &Arc<StateVolumes>,
        volume: VolumeId,
        f: impl FnOnce(&mut dyn FileSystem) -> std::result::Result<R, FsError> + Send + 'static,
    ) -> std::result::Result<std::result::Result<R, String>, FsError> {
        let key = (s, volume);
        let opener = self.opener.clone();
        let vols = vols.clone();
        self.pool.run(key, move |shelf| {
            let open = || match vols.volumes.get(volume) {
                Some(v) => opener(v),
                None => Err("no such volume".to_string()),
            };
            match shelf.get(&key, open) {
                Ok(fs) => f(fs).map(Ok),
                // What Shelf::get says when the volume cannot be opened.
                Err(FsError::Unsupported(why)) => Ok(Err(why)),
                Err(e) => Err(e),
            }
        })
    }

    /// `f` on an open filesystem that must be readable (it was when the
    /// kernel learned of the node).
    fn call<R: Send + 'static>(
        &self,
        s: Seq,
        volume: VolumeId,
        what: &'static str,
        f: impl FnOnce(&mut dyn FileSystem) -> std::result::Result<R, FsError> + Send + 'static,
    ) -> Result<R> {
        let vols = self.state(s)?;
        match self.with_fs(s, &vols, volume, f) {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(why)) => {
                self.log_once(s, Some(volume), "opening the filesystem", why);
                Err(Fail::Damaged)
            }
            Err(e) => Err(self.fail(s, volume, what, e)),
        }
    }

    /// The root of `volume`'s filesystem and its stat; `None` when the
    /// volume has no filesystem diskhist can read.
    fn root(
        &self,
        s: Seq,
        vols: &Arc<StateVolumes>,
        volume: VolumeId,
    ) -> Result<Option<(NodeId, Stat)>> {
        if vols.volumes.get(volume).is_none() {
            return Ok(None);
        }
        let r = self.with_fs(s, vols, volume, |fs| {
            let root = fs.root();
            Ok((root, fs.stat(root)?))
        });
        match r {
            Ok(Ok((root, st))) if st.kind == FileKind::Dir => Ok(Some((root, st))),
            Ok(Ok(_)) => {
                let why = "it is not a directory";
                self.log_once(s, Some(volume), "reading the root directory", why);
                Err(Fail::Damaged)
            }
            Ok(Err(why)) => {
                log::debug!("state {s}, {}: no files/: {why}", volume_name(Some(volume)));
                Ok(None)
            }
            Err(e) => Err(self.fail(s, volume, "reading the root directory", e)),
        }
    }

    fn node(&self, id: u64) -> Result<DynNode> {
        self.inodes.lock().get(id).ok_or(Fail::NotFound)
    }

    /// A lookup's answer: the kernel now holds one more reference.
    fn found(&self, node: DynNode, mut attr: Attr) -> Found {
        attr.node = Node::Dyn(self.inodes.lock().looked_up(node));
        Found {
            attr,
            attr_ttl: TTL_FOREVER,
            entry_ttl: TTL_FOREVER,
        }
    }

    /// The attributes of a node the mount makes up (a partition's image or
    /// directory): the state's time, the tree's owner.
    fn own_attr(&self, s: Seq, kind: FileKind, size_bytes: u64) -> Result<Attr> {
        let (perm, nlink) = match kind {
            FileKind::Dir => (DIR_PERM, 2),
            _ => (FILE_PERM, 1),
        };
        Ok(Attr {
            node: Node::Root, // set by the caller
            kind,
            size_bytes,
            times: Times::all(state_time(&self.store, s)?),
            nlink,
            perm,
            uid: self.owner.uid,
            gid: self.owner.gid,
            rdev: 0,
            block_size: self.owner.block_size,
        })
    }

    /// The attributes a filesystem keeps. A time it does not keep shows
    /// as its mtime, or the epoch when it keeps none.
    fn fs_attr(&self, node: Node, st: &Stat) -> Attr {
        let or_mtime = |t: Option<TimeNs>| t.or(st.mtime).unwrap_or(TimeNs(0));
        Attr {
            node,
            kind: st.kind,
            size_bytes: st.size,
            times: Times {
                atime: or_mtime(st.atime),
                mtime: or_mtime(st.mtime),
                ctime: or_mtime(st.ctime),
                crtime: or_mtime(st.crtime),
            },
            nlink: st.nlink,
            perm: st.perm & 0o7777,
            uid: st.uid,
            gid: st.gid,
            rdev: st.rdev,
            block_size: self.owner.block_size,
        }
    }

    /// `name` in state `s`'s directory (reached through `via`), for the
    /// names beyond `disk.img` and `info`.
    pub fn lookup_in_state(&self, s: Seq, via: Via, name: &str) -> Result<Found> {
        let vols = self.state(s)?;
        if name == FILES_NAME {
            return self.files_dir(s, &vols, VolumeId::WholeDisk, via, via.state_dir(s));
        }
        let (place, kind, size) = match PartitionName::parse(name).ok_or(Fail::NotFound)? {
            PartitionName::Image(n) => {
                let p = vols.partition(n).ok_or(Fail::NotFound)?;
                (Place::PartitionImage(n), FileKind::File, p.len_bytes)
            }
            PartitionName::Dir(n) => {
                vols.partition(n).ok_or(Fail::NotFound)?;
                (Place::PartitionDir { number: n, via }, FileKind::Dir, 0)
            }
        };
        let node = DynNode {
            key: DynKey { state: s, place },
            kind,
            parent: via.state_dir(s),
        };
        Ok(self.found(node, self.own_attr(s, kind, size)?))
    }

    /// `files/` of `volume` in state `s`, found in `parent` (the state's
    /// directory, or a partition's `p<N>/`): its filesystem's root.
    fn files_dir(
        &self,
        s: Seq,
        vols: &Arc<StateVolumes>,
        volume: VolumeId,
        via: Via,
        parent: Node,
    ) -> Result<Found> {
        let (root, st) = self.root(s, vols, volume)?.ok_or(Fail::NotFound)?;
        let place = Place::Fs {
            volume,
            node: root,
            via: Some(via),
        };
        let node = DynNode {
            key: DynKey { state: s, place },
            kind: FileKind::Dir,
            parent,
        };
        Ok(self.found(node, self.fs_attr(Node::Root, &st)))
    }

    /// What state `s`'s directory lists beyond `disk.img` and `info`:
    /// `files` (a disk that is one readable filesystem), then `p<N>.img`
    /// and `p<N>` for each partition. A table that cannot be read lists
    /// nothing more (and is logged): the image stays reachable.
    pub fn list_state(&self, s: Seq, via: Via) -> Vec<Item> {
        let Ok(vols) = self.state(s) else {
            return Vec::new();
        };
        let parent = via.state_dir(s);
        let mut out = Vec::new();
        let mut push = |place: Place, kind: FileKind, name: String| {
            let key = DynKey { state: s, place };
            out.push(Item {
                name: name.into_bytes(),
                kind,
                child: Child::Dyn(DynNode { key, kind, parent }),
            });
        };
        if let Ok(Some((root, _))) = self.root(s, &vols, VolumeId::WholeDisk) {
            let place = Place::Fs {
                volume: VolumeId::WholeDisk,
                node: root,
                via: Some(via),
            };
            push(place, FileKind::Dir, FILES_NAME.to_string());
        }
        for p in &vols.partitions {
            let n = p.number;
            let image = PartitionName::Image(n).name();
            push(Place::PartitionImage(n), FileKind::File, image);
            let dir = Place::PartitionDir { number: n, via };
            push(dir, FileKind::Dir, PartitionName::Dir(n).name());
        }
        out
    }

    /// The child `name` of dynamic directory `parent`.
    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<Found> {
        let p = self.node(parent)?;
        let s = p.key.state;
        match p.key.place {
            Place::PartitionImage(_) => Err(Fail::NotADirectory),
            Place::PartitionDir { number, via } => {
                if name != FILES_NAME.as_bytes() {
                    return Err(Fail::NotFound);
                }
                let vols = self.state(s)?;
                let volume = VolumeId::Partition(number);
                self.files_dir(s, &vols, volume, via, Node::Dyn(parent))
            }
            Place::Fs { volume, node, via } => {
                if p.kind != FileKind::Dir {
                    return Err(Fail::NotADirectory);
                }
                if !is_listable(name) {
                    return Err(Fail::NotFound);
                }
                // A name missing from the listing is still asked of the
                // reader: some names can be looked up but are not listed
                // (NTFS named streams, `FILE:STREAM`).
                let known = self
                    .names
                    .lock()
                    .dirs
                    .get(&(s, volume, node))
                    .and_then(|names| names.get(name).copied());
                let name = name.to_vec();
                let (child, st) = self
                    .call(s, volume, "looking a name up", move |fs| {
                        let child = match known {
                            Some(child) => child,
                            None => match fs.lookup(node, &name)? {
                                Some(e) => e.node,
                                None => return Ok(None),
                            },
                        };
                        Ok(Some((child, fs.stat(child)?)))
                    })?
                    .ok_or(Fail::NotFound)?;
                let via = if st.kind == FileKind::Dir { via } else { None };
                let place = Place::Fs {
                    volume,
                    node: child,
                    via,
                };
                let node = DynNode {
                    key: DynKey { state: s, place },
                    kind: st.kind,
                    parent: Node::Dyn(parent),
                };
                Ok(self.found(node, self.fs_attr(Node::Root, &st)))
            }
        }
    }

    /// The attributes of dynamic node `id`.
    pub fn attr(&self, id: u64) -> Result<Attr> {
        let attr = self.attr_of(&self.node(id)?)?;
        Ok(Attr {
            node: Node::Dyn(id),
            ..attr
        })
    }

    /// The attributes of `n` (its number left to the caller).
    fn attr_of(&self, n: &DynNode) -> Result<Attr> {
        let s = n.key.state;
        Ok(match n.key.place {
            Place::PartitionImage(number) => {
                let vols = self.state(s)?;
                let p = vols.partition(number).ok_or(Fail::NotFound)?;
                self.own_attr(s, FileKind::File, p.len_bytes)?
            }
            Place::PartitionDir { .. } => self.own_attr(s, FileKind::Dir, 0)?,
            Place::Fs { volume, node, .. } => {
                let st = self.call(s, volume, "reading a file's attributes", move |fs| {
                    fs.stat(node)
                })?;
                self.fs_attr(Node::Root, &st)
            }
        })
    }

    /// The entries of dynamic directory `id`, `.` and `..` first. Its
    /// children get their numbers when the kernel reads them
    /// ([`Contents::number`], [`Contents::plus`]).
    pub fn list(&self, id: u64) -> Result<Listing> {
        let n = self.node(id)?;
        let s = n.key.state;
        let dot = |node: Node, name: &[u8]| Item {
            name: name.to_vec(),
            kind: FileKind::Dir,
            child: Child::Dot(node),
        };
        let mut items = vec![dot(Node::Dyn(id), b"."), dot(n.parent, b"..")];
        let mut inside = None;
        match n.key.place {
            Place::PartitionImage(_) => return Err(Fail::NotADirectory),
            Place::PartitionDir { number, via } => {
                let vols = self.state(s)?;
                let volume = VolumeId::Partition(number);
                if let Ok(Some((root, _))) = self.root(s, &vols, volume) {
                    let place = Place::Fs {
                        volume,
                        node: root,
                        via: Some(via),
                    };
                    let files = DynNode {
                        key: DynKey { state: s, place },
                        kind: FileKind::Dir,
                        parent: Node::Dyn(id),
                    };
                    items.push(Item {
                        name: FILES_NAME.as_bytes().to_vec(),
                        kind: FileKind::Dir,
                        child: Child::Dyn(files),
                    });
                }
            }
            Place::Fs { volume, node, via } => {
                if n.kind != FileKind::Dir {
                    return Err(Fail::NotADirectory);
                }
                let entries =
                    self.call(s, volume, "listing a directory", move |fs| fs.list(node))?;
                let mut skipped = 0usize;
                let mut names = HashMap::with_capacity(entries.len());
                items.reserve(entries.len());
                for e in entries {
                    if !is_listable(&e.name) {
                        skipped += 1;
                        continue;
                    }
                    // The first of two equal names, as a reader's lookup finds.
                    names.entry(e.name.clone()).or_insert(e.node);
                    items.push(Item {
                        name: e.name,
                        kind: e.kind,
                        child: Child::Fs(e.node),
                    });
                }
                self.names.lock().put((s, volume, node), names);
                if skipped > 0 {
                    self.log_once(
                        s,
                        Some(volume),
                        "listing a directory",
                        format!(
                            "a directory lists {skipped} impossible names (empty, `.`, `..`, \
                             or holding `/` or NUL); they are left out"
                        ),
                    );
                }
                inside = Some(FsDir {
                    state: s,
                    volume,
                    via,
                    dir: Node::Dyn(id),
                });
            }
        }
        Ok(Listing { items, inside })
    }

    /// The dynamic node a listed item is, as a `kind` (its stat's, where
    /// known); `None` for the tree's own nodes.
    fn child_node(listing: &Listing, item: &Item, kind: FileKind) -> Option<DynNode> {
        match item.child {
            Child::Dyn(node) => Some(node),
            Child::Fs(node) => {
                let d = listing
                    .inside
                    .as_ref()
                    .expect("a filesystem directory's listing");
                let via = if kind == FileKind::Dir { d.via } else { None };
                let place = Place::Fs {
                    volume: d.volume,
                    node,
                    via,
                };
                Some(DynNode {
                    key: DynKey {
                        state: d.state,
                        place,
                    },
                    kind,
                    parent: d.dir,
                })
            }
            Child::Dot(_) | Child::Fixed(_) => None,
        }
    }

    /// The number a plain directory listing shows for a dynamic item (the
    /// kernel takes no reference for it).
    pub fn number(&self, listing: &Listing, item: &Item) -> Option<Node> {
        let node = Self::child_node(listing, item, item.kind)?;
        Some(Node::Dyn(self.inodes.lock().listed(node)))
    }

    /// The numbers and attributes of the dynamic ones among `items`, for a
    /// listing that carries them (READDIRPLUS): a filesystem directory's
    /// children are stat'ed in one call on its worker. Every dynamic item
    /// counts one reference the kernel now holds, attributes or not (the
    /// kernel links each entry it is given). `None` for the tree's own
    /// nodes.
    pub fn plus(&self, listing: &Listing, items: &[Item]) -> Vec<Option<(Node, Result<Attr>)>> {
        let fs_nodes: Vec<NodeId> = items
            .iter()
            .filter_map(|i| match i.child {
                Child::Fs(node) => Some(node),
                _ => None,
            })
            .collect();
        let mut stats = match (&listing.inside, fs_nodes.is_empty()) {
            (Some(d), false) => {
                let got = self.call(
                    d.state,
                    d.volume,
                    "reading a file's attributes",
                    move |fs| Ok(fs_nodes.into_iter().map(|n| fs.stat(n)).collect::<Vec<_>>()),
                );
                match got {
                    Ok(stats) => stats
                        .into_iter()
                        .map(|st| {
                            st.map_err(|e| {
                                self.fail(d.state, d.volume, "reading a file's attributes", e)
                            })
                        })
                        .collect(),
                    Err(_) => (0..items.len()).map(|_| Err(Fail::Damaged)).collect(),
                }
            }
            _ => Vec::new(),
        }
        .into_iter();
        items
            .iter()
            .map(|item| {
                let attr = match item.child {
                    Child::Fs(_) => stats
                        .next()
                        .unwrap_or(Err(Fail::Damaged))
                        .map(|st| self.fs_attr(Node::Root, &st)),
                    Child::Dyn(node) => self.attr_of(&node),
                    Child::Dot(_) | Child::Fixed(_) => return None,
                };
                let kind = attr.as_ref().map_or(item.kind, |a| a.kind);
                let node = Self::child_node(listing, item, kind).expect("a dynamic item");
                let id = Node::Dyn(self.inodes.lock().looked_up(node));
                Some((id, attr.map(|a| Attr { node: id, ..a })))
            })
            .collect()
    }

    /// Check that dynamic node `id` is a file that can be opened.
    pub fn open(&self, id: u64) -> Result<()> {
        match self.node(id)?.kind {
            FileKind::File => Ok(()),
            FileKind::Dir => Err(Fail::IsADirectory),
            _ => Err(Fail::Invalid),
        }
    }

    /// Bytes `offset_bytes..offset_bytes + len` of dynamic file `id`, cut
    /// short at its end.
    pub fn read(&self, id: u64, offset_bytes: u64, len: u32) -> Result<Vec<u8>> {
        let n = self.node(id)?;
        let s = n.key.state;
        match n.key.place {
            Place::PartitionImage(number) => {
                let vols = self.state(s)?;
                let p = vols.partition(number).ok_or(Fail::NotFound)?;
                let n = p.len_bytes.saturating_sub(offset_bytes).min(u64::from(len));
                let mut out = vec![0u8; n as usize];
                self.cache
                    .read_into(&self.store, s, p.start_bytes + offset_bytes, &mut out)?;
                Ok(out)
            }
            Place::Fs { volume, node, .. } if n.kind == FileKind::File => {
                // The worker that owns the filesystem only says where the
                // bytes are; they are read here, so that reads of one
                // file (the kernel's readahead) run side by side.
                let plan = self.call(s, volume, "reading a file", move |fs| {
                    fs.plan_read(node, offset_bytes, len as usize)
                })?;
                let Some(plan) = plan else {
                    return self.call(s, volume, "reading a file", move |fs| {
                        let mut buf = vec![0u8; len as usize];
                        let got = fs.read(node, offset_bytes, &mut buf)?;
                        buf.truncate(got);
                        Ok(buf)
                    });
                };
                let vols = self.state(s)?;
                let source = &vols.volumes.get(volume).ok_or(Fail::NotFound)?.source;
                crate::fs::read_planned(source, &plan)
                    .map_err(|e| self.fail(s, volume, "reading a file", FsError::Io(e)))
            }
            _ if n.kind == FileKind::Dir => Err(Fail::IsADirectory),
            _ => Err(Fail::Invalid),
        }
    }

    /// The target symlink `id` stores, as stored.
    pub fn link_target(&self, id: u64) -> Result<Vec<u8>> {
        let n = self.node(id)?;
        match n.key.place {
            Place::Fs { volume, node, .. } if n.kind == FileKind::Symlink => {
                self.call(n.key.state, volume, "reading a symlink", move |fs| {
                    fs.read_link(node)
                })
            }
            _ => Err(Fail::Invalid),
        }
    }

    /// The extended attributes of dynamic node `id`: [`INO_XATTR`], every
    /// timestamp its filesystem keeps (RFC 3339, to the nanosecond), then
    /// the filesystem's own. Only names in the `user.` namespace
    /// ([`is_shown_xattr`]); a name given twice keeps its first value.
    pub fn xattrs(&self, id: u64) -> Result<Vec<(String, Vec<u8>)>> {
        let n = self.node(id)?;
        let Place::Fs { volume, node, .. } = n.key.place else {
            return Ok(Vec::new());
        };
        let (st, own) = self.call(
            n.key.state,
            volume,
            "reading extended attributes",
            move |fs| Ok((fs.stat(node)?, fs.xattrs(node)?)),
        )?;
        let mut out = vec![(INO_XATTR.to_string(), st.ino.to_string().into_bytes())];
        for (name, t) in &st.times {
            out.push((name.to_string(), format_rfc3339_ns(*t).into_bytes()));
        }
        out.extend(own);
        let mut seen = std::collections::HashSet::new();
        out.retain(|(name, _)| is_shown_xattr(name.as_bytes()) && seen.insert(name.clone()));
        Ok(out)
    }

    /// The kernel gives back `n` references to dynamic node `id`.
    pub fn forget(&self, id: u64, n: u64) {
        self.inodes.lock().forget(id, n);
    }

    /// Dynamic nodes the kernel may still hold.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.inodes.lock().len()
    }

    /// State `s`'s table and volumes, as `info` lines.
    pub fn describe(&self, s: Seq) -> String {
        let vols = match self.state_or_why(s) {
            Ok(v) => v,
            Err(why) => return format!("partition_table: unreadable ({why})\n"),
        };
        vols.volumes.describe(|v| {
            match self.with_fs(s, &vols, v.id, |fs| Ok((fs.label(), fs.notes()))) {
                Ok(Ok((label, notes))) => {
                    let mut how: Vec<String> =
                        label.map(|l| format!("label {l:?}")).into_iter().collect();
                    how.extend(notes);
                    Ok(if how.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", how.join("; "))
                    })
                }
                Ok(Err(why)) => Err(why),
                Err(e) => Err(e.to_string()),
            }
        })
    }
}

#[cfg(test)]
mod tests;
