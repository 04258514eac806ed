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
//! - The names of the directories listed last are kept (up to
//!   [`LISTED_NAMES`] names in all), so that the lookup of each name that
//!   follows a listing (`ls -l`, a file manager) costs one `stat`,
//!   whatever the reader's own lookup costs.
//! - `stat` shows the filesystem's own mode, owner, size, link count and
//!   times. `st_ino` is the mount's number, not the filesystem's: FUSE
//!   uses the node id as `st_ino`, and node ids must differ between
//!   states (the same inode of two states is two files); the filesystem's
//!   number is the extended attribute [`INO_XATTR`], beside every
//!   timestamp the filesystem keeps (each under the name its reader gives
//!   it, `user.ext4.crtime`, `user.ntfs.si.created`...) and the
//!   filesystem's own extended attributes.

use super::cache::BlockCache;
use super::inodes::{DynKey, DynNode, Inodes, Place, Via, UNREFERENCED_ENTRIES};
use super::names::PartitionName;
use super::node::{Node, FILES_NAME};
use super::tree::{state_time, Attr, DirEntry, Fail, Found, Times, DIR_PERM, FILE_PERM};
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
    listings: Mutex<Listings>,
}

/// What was logged: state, volume (`None`: the table), kind of request.
type Logged = (Seq, Option<VolumeId>, &'static str);

/// A directory of one volume of one state.
type DirKey = (Seq, VolumeId, NodeId);

/// The names of the directories listed last, each to its node.
struct Listings {
    dirs: LruCache<DirKey, Arc<HashMap<Vec<u8>, NodeId>>>,
    /// Names held in all, and at most.
    names: usize,
    cap: usize,
}

impl Listings {
    fn new(cap: usize) -> Listings {
        Listings {
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
            listings: Mutex::new(Listings::new(LISTED_NAMES)),
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
            let volume = VolumeId::WholeDisk;
            let (root, st) = self.root(s, &vols, volume)?.ok_or(Fail::NotFound)?;
            let place = Place::Fs {
                volume,
                node: root,
                via: Some(via),
            };
            let node = DynNode {
                key: DynKey { state: s, place },
                kind: FileKind::Dir,
                parent: via.state_dir(s),
            };
            return Ok(self.found(node, self.fs_attr(Node::Root, &st)));
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

    /// What state `s`'s directory lists beyond `disk.img` and `info`:
    /// `files` (a disk that is one readable filesystem), then `p<N>.img`
    /// and `p<N>` for each partition. A table that cannot be read lists
    /// nothing more (and is logged): the image stays reachable.
    pub fn list_state(&self, s: Seq, via: Via) -> Vec<DirEntry> {
        let Ok(vols) = self.state(s) else {
            return Vec::new();
        };
        let parent = via.state_dir(s);
        let mut made = Vec::new();
        if let Ok(Some((root, _))) = self.root(s, &vols, VolumeId::WholeDisk) {
            let place = Place::Fs {
                volume: VolumeId::WholeDisk,
                node: root,
                via: Some(via),
            };
            made.push((place, FileKind::Dir, FILES_NAME.to_string()));
        }
        for p in &vols.partitions {
            let n = p.number;
            let image = PartitionName::Image(n).name();
            made.push((Place::PartitionImage(n), FileKind::File, image));
            let dir = Place::PartitionDir { number: n, via };
            made.push((dir, FileKind::Dir, PartitionName::Dir(n).name()));
        }
        let mut inodes = self.inodes.lock();
        made.into_iter()
            .map(|(place, kind, name)| {
                let key = DynKey { state: s, place };
                let id = inodes.listed(DynNode { key, kind, parent });
                DirEntry {
                    node: Node::Dyn(id),
                    kind,
                    name: name.into_bytes(),
                }
            })
            .collect()
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
                let (root, st) = self.root(s, &vols, volume)?.ok_or(Fail::NotFound)?;
                let place = Place::Fs {
                    volume,
                    node: root,
                    via: Some(via),
                };
                let node = DynNode {
                    key: DynKey { state: s, place },
                    kind: FileKind::Dir,
                    parent: Node::Dyn(parent),
                };
                Ok(self.found(node, self.fs_attr(Node::Root, &st)))
            }
            Place::Fs { volume, node, via } => {
                if p.kind != FileKind::Dir {
                    return Err(Fail::NotADirectory);
                }
                if !is_listable(name) {
                    return Err(Fail::NotFound);
                }
                let listed = self.listings.lock().dirs.get(&(s, volume, node)).cloned();
                let known = match listed {
                    Some(names) => Some(*names.get(name).ok_or(Fail::NotFound)?),
                    None => None,
                };
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
        let n = self.node(id)?;
        let s = n.key.state;
        let mut attr = match n.key.place {
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
        };
        attr.node = Node::Dyn(id);
        Ok(attr)
    }

    /// The entries of dynamic directory `id`, `.` and `..` first.
    pub fn list(&self, id: u64) -> Result<Vec<DirEntry>> {
        let n = self.node(id)?;
        let s = n.key.state;
        let dot = |node: Node, name: &[u8]| DirEntry {
            node,
            kind: FileKind::Dir,
            name: name.to_vec(),
        };
        let mut out = vec![dot(Node::Dyn(id), b"."), dot(n.parent, b"..")];
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
                    let key = DynKey { state: s, place };
                    let node = DynNode {
                        key,
                        kind: FileKind::Dir,
                        parent: Node::Dyn(id),
                    };
                    let files = self.inodes.lock().listed(node);
                    out.push(dot(Node::Dyn(files), FILES_NAME.as_bytes()));
                }
            }
            Place::Fs { volume, node, via } => {
                if n.kind != FileKind::Dir {
                    return Err(Fail::NotADirectory);
                }
                let entries =
                    self.call(s, volume, "listing a directory", move |fs| fs.list(node))?;
                let mut inodes = self.inodes.lock();
                let mut skipped = 0usize;
                let mut names = HashMap::with_capacity(entries.len());
                for e in entries {
                    if !is_listable(&e.name) {
                        skipped += 1;
                        continue;
                    }
                    // The first of two equal names, as a reader's lookup finds.
                    names.entry(e.name.clone()).or_insert(e.node);
                    let via = if e.kind == FileKind::Dir { via } else { None };
                    let place = Place::Fs {
                        volume,
                        node: e.node,
                        via,
                    };
                    let child = inodes.listed(DynNode {
                        key: DynKey { state: s, place },
                        kind: e.kind,
                        parent: Node::Dyn(id),
                    });
                    out.push(DirEntry {
                        node: Node::Dyn(child),
                        kind: e.kind,
                        name: e.name,
                    });
                }
                drop(inodes);
                self.listings.lock().put((s, volume, node), names);
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
            }
        }
        Ok(out)
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
                self.call(s, volume, "reading a file", move |fs| {
                    let mut buf = vec![0u8; len as usize];
                    let got = fs.read(node, offset_bytes, &mut buf)?;
                    buf.truncate(got);
                    Ok(buf)
                })
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
        vols.volumes
            .describe(|v| match self.with_fs(s, &vols, v.id, |_| Ok(())) {
                Ok(Ok(())) => Ok(String::new()),
                Ok(Err(why)) => Err(why),
                Err(e) => Err(e.to_string()),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::super::listing::ListingLimits;
    use super::super::test_data::incompressible;
    use super::super::test_fs::{self, MemFs, ROOT};
    use super::super::tree::{Tree, TreeConfig};
    use super::*;
    use crate::fs::volume::Volume;
    use crate::store::{Op, OpFlags, Writer};

    const MIB: usize = 1 << 20;
    const T1: TimeNs = TimeNs(1_795_415_415_000_000_000);
    const T2: TimeNs = TimeNs(1_795_415_416_000_000_000);

    /// A store of `disk_bytes` with one record per write.
    fn store(
        dir: &std::path::Path,
        disk_bytes: usize,
        writes: &[(TimeNs, usize, &[u8])],
    ) -> Arc<Store> {
        Writer::init(dir, disk_bytes as u64, 4096).unwrap();
        let mut w = Writer::open(dir).unwrap();
        for &(t, offset, data) in writes {
            let op = Op::Write {
                offset_bytes: offset as u64,
                data,
            };
            w.append(t, op, OpFlags::default()).unwrap();
        }
        w.close().unwrap();
        Arc::new(Store::open(dir).unwrap())
    }

    /// An MBR with primaries `(start sector, sectors, type)`.
    fn mbr(parts: &[(u32, u32, u8)]) -> Vec<u8> {
        let mut s = vec![0u8; 512];
        for (i, &(start, len, kind)) in parts.iter().enumerate() {
            let at = 446 + 16 * i;
            s[at + 4] = kind;
            s[at + 8..at + 12].copy_from_slice(&start.to_le_bytes());
            s[at + 12..at + 16].copy_from_slice(&len.to_le_bytes());
        }
        s[510] = 0x55;
        s[511] = 0xaa;
        s
    }

    /// The filesystem every readable volume holds in these tests.
    ///
    /// ```text
    /// /hello.txt        12   with a named stream as an xattr
    /// /caf\xe9.txt      13   a Latin-1 name, not UTF-8
    /// /sub/             20
    /// /sub/again        12   a hard link to /hello.txt
    /// /sub/link         21   -> /etc/passwd
    /// /sub/null         22   char device 1:3
    /// /sub/fifo         23
    /// /bad              30   damaged
    /// /boom             31   panics when read
    /// ```
    fn sample_fs() -> MemFs {
        let mut fs = MemFs::new();
        fs.file(ROOT, b"hello.txt", 12, b"hello, world\n");
        fs.xattr(
            12,
            "user.Zone.Identifier",
            b"[ZoneTransfer]\r\nZoneId=3\r\n",
        );
        fs.xattr(12, "security.capability", b"\x01\x00\x00\x02");
        fs.file(ROOT, b"caf\xe9.txt", 13, b"latin-1\n");
        fs.dir(ROOT, b"sub", 20);
        fs.link(20, b"again", 12, FileKind::File);
        fs.symlink(20, b"link", 21, b"/etc/passwd");
        fs.special(20, b"null", 22, FileKind::CharDevice, libc::makedev(1, 3));
        fs.special(20, b"fifo", 23, FileKind::Fifo, 0);
        fs.broken(ROOT, b"bad", 30, false);
        fs.broken(ROOT, b"boom", 31, true);
        fs
    }

    /// A tree whose readable volumes are `readable`, each holding
    /// [`sample_fs`].
    fn tree(store: Arc<Store>, readable: &'static [VolumeId]) -> Tree {
        let opener: Opener = Arc::new(move |v: &Volume| {
            if readable.contains(&v.id) {
                Ok(Box::new(sample_fs()) as Box<dyn FileSystem>)
            } else {
                Err("test: not supported".to_string())
            }
        });
        let config = TreeConfig {
            cache_bytes: MIB as u64,
            limits: ListingLimits::default(),
            uid: 7,
            gid: 8,
            fs_threads: 2,
        };
        Tree::with_opener(store, config, opener)
    }

    fn names(entries: &[DirEntry]) -> Vec<Vec<u8>> {
        entries.iter().map(|e| e.name.clone()).collect()
    }

    fn lookup(t: &Tree, parent: Node, name: &[u8]) -> Node {
        match t.lookup(parent, name) {
            Ok(f) => f.attr.node,
            Err(e) => panic!("{:?}: {e:?}", String::from_utf8_lossy(name)),
        }
    }

    fn path(t: &Tree, from: Node, path: &str) -> Node {
        path.split('/')
            .fold(from, |n, name| lookup(t, n, name.as_bytes()))
    }

    /// A 4 MiB disk with an MBR: p1 (1 MiB at 1 MiB, readable), p2 (1 MiB
    /// at 2 MiB, not); state 2 rewrites part of p2.
    fn partitioned(dir: &std::path::Path) -> (Arc<Store>, Vec<u8>, Vec<u8>) {
        let table = mbr(&[(2048, 2048, 0x83), (4096, 2048, 0x0c)]);
        let p1 = incompressible(MIB, 1);
        let p2 = incompressible(MIB, 2);
        let patch = vec![0xa5u8; 8192];
        let mut p2_later = p2.clone();
        p2_later[4096..4096 + 8192].copy_from_slice(&patch);
        let store = store(
            dir,
            4 * MIB,
            &[
                (T1, 0, &table),
                (T1, MIB, &p1),
                (T1, 2 * MIB, &p2),
                (T2, 2 * MIB + 4096, &patch),
            ],
        );
        (store, p1, p2_later)
    }

    #[test]
    fn a_partitioned_state_shows_each_partition_image_and_directory() {
        let dir = tempfile::tempdir().unwrap();
        let (store, p1, p2) = partitioned(dir.path());
        let t = tree(store, &[VolumeId::Partition(1)]);
        let state = Node::AtState(Seq(4));
        let listed = t.list(state).unwrap();
        let want: Vec<&[u8]> = vec![
            b".",
            b"..",
            b"disk.img",
            b"info",
            b"p1.img",
            b"p1",
            b"p2.img",
            b"p2",
        ];
        assert_eq!(names(&listed), want);

        // Each image is its partition's bytes, cut at its end.
        let p1_img = lookup(&t, state, b"p1.img");
        assert_eq!(t.getattr(p1_img).unwrap().0.size_bytes, MIB as u64);
        assert_eq!(t.read(p1_img, 0, MIB as u32).unwrap(), p1);
        assert_eq!(t.read(p1_img, 5000, 100).unwrap(), p1[5000..5100]);
        assert_eq!(
            t.read(p1_img, MIB as u64 - 10, 100).unwrap(),
            p1[MIB - 10..]
        );
        assert!(t.read(p1_img, MIB as u64, 100).unwrap().is_empty());
        let p2_img = lookup(&t, state, b"p2.img");
        assert_eq!(t.read(p2_img, 0, MIB as u32).unwrap(), p2);
        assert_eq!(
            listed[4].node, p1_img,
            "the listing's number is the lookup's"
        );
        // Files, unlike directories, are one inode through at/ and seq/.
        let seq_state = Node::SeqState(Seq(4));
        assert_eq!(lookup(&t, seq_state, b"p1.img"), p1_img);
        assert_ne!(lookup(&t, seq_state, b"p1"), lookup(&t, state, b"p1"));
        // An earlier state is another file.
        let earlier = lookup(&t, Node::AtState(Seq(3)), b"p2.img");
        assert_ne!(earlier, p2_img);
        assert_eq!(t.read(earlier, 4096, 16).unwrap(), p2_read_at_3(&t));
        assert_ne!(t.read(earlier, 4096, 16).unwrap(), [0xa5; 16]);

        // p1's filesystem is readable, p2's is not: the directory is there.
        let p1_dir = lookup(&t, state, b"p1");
        assert_eq!(
            names(&t.list(p1_dir).unwrap()),
            [b"." as &[u8], b"..", b"files"]
        );
        let p2_dir = lookup(&t, state, b"p2");
        assert_eq!(names(&t.list(p2_dir).unwrap()), [b"." as &[u8], b".."]);
        assert!(matches!(t.lookup(p2_dir, b"files"), Err(Fail::NotFound)));
        for missing in ["p3.img", "p3", "p01", "files", "p1.img2"] {
            assert!(
                matches!(t.lookup(state, missing.as_bytes()), Err(Fail::NotFound)),
                "{missing}"
            );
        }
        assert!(matches!(t.lookup(p1_img, b"x"), Err(Fail::NotADirectory)));

        // `info` describes the table and the volumes.
        let info = t.read(Node::Info(Seq(4)), 0, 64 << 10).unwrap();
        let info = String::from_utf8(info).unwrap();
        for line in [
            "partition_table: mbr\n",
            "partition: p1 start_bytes=1048576 length_bytes=1048576 type=0x83\n",
            "partition: p2 start_bytes=2097152 length_bytes=1048576 type=0x0c\n",
            "volume: p1: unknown; files: available\n",
            "volume: p2: unknown; files: not available (test: not supported)\n",
        ] {
            assert!(info.contains(line), "{line:?} missing in:\n{info}");
        }
    }

    fn p2_read_at_3(t: &Tree) -> Vec<u8> {
        t.read(Node::Image(Seq(3)), 2 * MIB as u64 + 4096, 16)
            .unwrap()
    }

    #[test]
    fn files_show_the_filesystems_names_attributes_contents_and_xattrs() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _, _) = partitioned(dir.path());
        let t = tree(store, &[VolumeId::Partition(1)]);
        let files = path(&t, Node::AtState(Seq(4)), "p1/files");
        let root = t.getattr(files).unwrap().0;
        assert_eq!(
            (root.kind, root.perm, root.uid, root.gid),
            (FileKind::Dir, 0o755, 1000, 100)
        );

        // Names are bytes, listed as stored, in the filesystem's order.
        let listed = t.list(files).unwrap();
        let want: Vec<&[u8]> = vec![
            b".",
            b"..",
            b"hello.txt",
            b"caf\xe9.txt",
            b"sub",
            b"bad",
            b"boom",
        ];
        assert_eq!(names(&listed), want);
        let latin = lookup(&t, files, b"caf\xe9.txt");
        assert_eq!(listed[3].node, latin);
        assert_eq!(t.read(latin, 0, 100).unwrap(), b"latin-1\n");
        assert!(matches!(
            t.lookup(files, b"caf\xc3\xa9.txt"),
            Err(Fail::NotFound)
        ));

        // Attributes are the filesystem's, with every time to the ns.
        let hello = lookup(&t, files, b"hello.txt");
        let (a, ttl) = t.getattr(hello).unwrap();
        assert_eq!(
            (a.kind, a.size_bytes, a.perm, a.uid, a.gid, a.nlink),
            (FileKind::File, 13, 0o640, 1000, 100, 2)
        );
        assert_eq!(a.times.mtime, test_fs::MTIME);
        assert_eq!(a.times.atime, test_fs::ATIME);
        assert_eq!(a.times.ctime, test_fs::CTIME);
        assert_eq!(a.times.crtime, test_fs::CRTIME);
        assert_eq!(ttl, TTL_FOREVER, "a state never changes");
        assert_eq!(t.read(hello, 0, 4096).unwrap(), b"hello, world\n");
        assert_eq!(t.read(hello, 7, 3).unwrap(), b"wor");
        assert!(t.open(hello).is_ok());
        assert!(matches!(t.open(files), Err(Fail::IsADirectory)));

        // Extended attributes: the fs's number, its times, its own.
        let x = t.xattrs(hello).unwrap();
        let get = |name: &str| x.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        assert_eq!(get(INO_XATTR).unwrap(), b"12");
        assert_eq!(
            get(test_fs::CRTIME_XATTR).unwrap(),
            b"2020-09-13T12:26:40.000000003Z"
        );
        assert_eq!(
            get(test_fs::CHANGED_XATTR).unwrap(),
            format_rfc3339_ns(test_fs::CTIME).as_bytes()
        );
        assert_eq!(
            get("user.Zone.Identifier").unwrap(),
            b"[ZoneTransfer]\r\nZoneId=3\r\n"
        );
        assert!(get("security.capability").is_none(), "only user.* names");
        assert_eq!(x.len(), 4, "{x:?}");
        assert_eq!(
            t.xattr(hello, INO_XATTR.as_bytes()).unwrap().unwrap(),
            b"12"
        );
        assert_eq!(t.xattr(hello, b"security.capability").unwrap(), None);
        assert_eq!(t.xattr(hello, b"user.none").unwrap(), None);
        assert!(t.xattrs(Node::Image(Seq(4))).unwrap().is_empty());

        // Hard links share an inode; so do files through at/ and seq/.
        let sub = lookup(&t, files, b"sub");
        assert_eq!(lookup(&t, sub, b"again"), hello);
        let seq_files = path(&t, Node::SeqState(Seq(4)), "p1/files");
        assert_ne!(seq_files, files, "directories are one per tree");
        assert_eq!(path(&t, seq_files, "sub/again"), hello);
        assert_ne!(path(&t, Node::AtState(Seq(3)), "p1/files/hello.txt"), hello);
        let dots = t.list(sub).unwrap();
        assert_eq!((dots[0].node, dots[1].node), (sub, files));

        // Symlinks give their stored target; special files their type.
        let link = lookup(&t, sub, b"link");
        assert_eq!(t.getattr(link).unwrap().0.kind, FileKind::Symlink);
        assert_eq!(t.link_target(link).unwrap(), b"/etc/passwd");
        assert!(matches!(t.link_target(hello), Err(Fail::Invalid)));
        let null = t.getattr(lookup(&t, sub, b"null")).unwrap().0;
        assert_eq!(
            (null.kind, null.rdev),
            (FileKind::CharDevice, libc::makedev(1, 3))
        );
        let fifo = lookup(&t, sub, b"fifo");
        assert_eq!(t.getattr(fifo).unwrap().0.kind, FileKind::Fifo);
        assert!(matches!(t.open(fifo), Err(Fail::Invalid)));

        // Damage, and a reader's panic, cost EIO on that file alone.
        let bad = lookup(&t, files, b"bad");
        assert!(matches!(t.read(bad, 0, 10), Err(Fail::Damaged)));
        let boom = lookup(&t, files, b"boom");
        assert!(matches!(t.read(boom, 0, 10), Err(Fail::Damaged)));
        assert!(matches!(t.read(boom, 0, 10), Err(Fail::Damaged)));
        assert_eq!(t.read(hello, 0, 5).unwrap(), b"hello");
        assert_eq!(names(&t.list(sub).unwrap()).len(), 6);
    }

    #[test]
    fn listings_kept_for_lookups_hold_a_bounded_number_of_names() {
        let dir = |n: NodeId| (Seq(1), VolumeId::WholeDisk, n);
        let names = |n: usize| (0..n).map(|i| (vec![i as u8; 3], i as NodeId)).collect();
        let mut l = Listings::new(10);
        l.put(dir(1), names(4));
        l.put(dir(2), names(4));
        l.put(dir(1), names(4)); // again: counted once
        assert_eq!(l.names, 8);
        l.put(dir(3), names(4)); // over: the least recently used goes
        assert_eq!(l.names, 8);
        assert!(l.dirs.get(&dir(2)).is_none());
        l.put(dir(4), names(11)); // larger than all: never kept
        assert!(l.dirs.get(&dir(4)).is_none());
        assert_eq!(l.names, 8);
    }

    #[test]
    fn forgotten_nodes_leave_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _, _) = partitioned(dir.path());
        let t = tree(store, &[VolumeId::Partition(1)]);
        let files = path(&t, Node::AtState(Seq(4)), "p1/files");
        let before = t.dynamic_nodes();
        let hello = lookup(&t, files, b"hello.txt");
        assert_eq!(lookup(&t, files, b"hello.txt"), hello);
        assert_eq!(t.dynamic_nodes(), before + 1);
        t.forget(hello, 1);
        assert!(t.getattr(hello).is_ok(), "one reference left");
        t.forget(hello, 1);
        assert!(matches!(t.getattr(hello), Err(Fail::NotFound)));
        assert_eq!(t.dynamic_nodes(), before);
        let again = lookup(&t, files, b"hello.txt");
        assert_ne!(again, hello, "a forgotten number is not handed out again");
        t.forget(Node::Root, 1); // fixed nodes are not counted
        t.forget(Node::Dyn(1 << 50), 1); // nor unknown ones
    }

    #[test]
    fn a_disk_without_a_table_shows_its_files_in_the_state_directory() {
        let dir = tempfile::tempdir().unwrap();
        let data = incompressible(64 << 10, 3);
        let store = store(dir.path(), MIB, &[(T1, 4096, &data)]);
        let t = tree(store, &[VolumeId::WholeDisk]);
        let state = Node::AtState(Seq(1));
        let want: Vec<&[u8]> = vec![b".", b"..", b"disk.img", b"info", b"files"];
        assert_eq!(names(&t.list(state).unwrap()), want);
        let hello = path(&t, state, "files/sub/again");
        assert_eq!(t.read(hello, 0, 100).unwrap(), b"hello, world\n");
        let info = String::from_utf8(t.read(Node::Info(Seq(1)), 0, 4096).unwrap()).unwrap();
        assert!(info.contains("partition_table: none\n"), "{info}");
        assert!(
            info.contains("volume: disk: unknown; files: available\n"),
            "{info}"
        );
        assert!(matches!(t.lookup(state, b"p1.img"), Err(Fail::NotFound)));
    }
}
