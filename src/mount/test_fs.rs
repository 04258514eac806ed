//! A small filesystem in memory for the mount's unit tests: the tree's
//! logic is tested without a real reader, and with the damage a real one
//! reports (a damaged node, a reader that panics).

use crate::fs::{DirEntry, FileKind, FileSystem, FsError, NodeId, Stat};
use crate::units::TimeNs;
use std::collections::HashMap;

/// What a node holds.
enum Body {
    Dir(Vec<DirEntry>),
    File(Vec<u8>),
    Link(Vec<u8>),
    /// A device, a fifo or a socket: no content.
    Special,
    /// Its stat works; reading it reports damage.
    Damaged,
    /// Its stat works; reading it panics, as a crate might on a hostile
    /// image.
    Panics,
}

struct MemNode {
    stat: Stat,
    body: Body,
    xattrs: Vec<(String, Vec<u8>)>,
}

pub struct MemFs {
    nodes: HashMap<NodeId, MemNode>,
    /// Names that can be looked up but are not listed (as NTFS's
    /// `FILE:STREAM`), by directory and name.
    unlisted: HashMap<(NodeId, Vec<u8>), NodeId>,
}

/// The root's node number (ext4's).
pub const ROOT: NodeId = 2;
/// The times every node of a [`MemFs`] keeps, as its stat shows them.
pub const MTIME: TimeNs = TimeNs(1_700_000_000_123_456_789);
pub const ATIME: TimeNs = TimeNs(1_700_000_100_000_000_001);
pub const CTIME: TimeNs = TimeNs(1_700_000_200_000_000_002);
pub const CRTIME: TimeNs = TimeNs(1_600_000_000_000_000_003);
/// The extended-attribute names of the times beyond stat's.
pub const CRTIME_XATTR: &str = "user.test.crtime";
pub const CHANGED_XATTR: &str = "user.test.changed";

fn stat(kind: FileKind, ino: u64, size: u64) -> Stat {
    Stat {
        kind,
        perm: if kind == FileKind::Dir { 0o755 } else { 0o640 },
        uid: 1000,
        gid: 100,
        size,
        nlink: if kind == FileKind::Dir { 2 } else { 1 },
        ino,
        rdev: 0,
        atime: Some(ATIME),
        mtime: Some(MTIME),
        ctime: Some(CTIME),
        crtime: Some(CRTIME),
        times: vec![(CRTIME_XATTR, CRTIME), (CHANGED_XATTR, CTIME)],
    }
}

impl MemFs {
    /// An empty root directory.
    pub fn new() -> MemFs {
        let mut nodes = HashMap::new();
        nodes.insert(
            ROOT,
            MemNode {
                stat: stat(FileKind::Dir, ROOT, 4096),
                body: Body::Dir(Vec::new()),
                xattrs: Vec::new(),
            },
        );
        MemFs {
            nodes,
            unlisted: HashMap::new(),
        }
    }

    fn add(&mut self, parent: NodeId, name: &[u8], ino: NodeId, stat: Stat, body: Body) {
        self.link(parent, name, ino, stat.kind);
        self.nodes.insert(
            ino,
            MemNode {
                stat,
                body,
                xattrs: Vec::new(),
            },
        );
    }

    /// Another name for node `ino` in `parent`.
    pub fn link(&mut self, parent: NodeId, name: &[u8], ino: NodeId, kind: FileKind) {
        let Some(Body::Dir(entries)) = self.nodes.get_mut(&parent).map(|n| &mut n.body) else {
            panic!("{parent} is not a directory");
        };
        entries.push(DirEntry {
            name: name.to_vec(),
            node: ino,
            kind,
        });
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.stat.nlink += 1;
        }
    }

    pub fn dir(&mut self, parent: NodeId, name: &[u8], ino: NodeId) {
        self.add(
            parent,
            name,
            ino,
            stat(FileKind::Dir, ino, 4096),
            Body::Dir(Vec::new()),
        );
    }

    pub fn file(&mut self, parent: NodeId, name: &[u8], ino: NodeId, content: &[u8]) {
        let st = stat(FileKind::File, ino, content.len() as u64);
        self.add(parent, name, ino, st, Body::File(content.to_vec()));
    }

    pub fn symlink(&mut self, parent: NodeId, name: &[u8], ino: NodeId, target: &[u8]) {
        let st = stat(FileKind::Symlink, ino, target.len() as u64);
        self.add(parent, name, ino, st, Body::Link(target.to_vec()));
    }

    pub fn special(&mut self, parent: NodeId, name: &[u8], ino: NodeId, kind: FileKind, rdev: u64) {
        let mut st = stat(kind, ino, 0);
        st.rdev = rdev;
        self.add(parent, name, ino, st, Body::Special);
    }

    /// A file `name` in `parent` that lookups find but listings do not
    /// show, as NTFS's named streams.
    pub fn unlisted(&mut self, parent: NodeId, name: &[u8], ino: NodeId, content: &[u8]) {
        let st = stat(FileKind::File, ino, content.len() as u64);
        self.nodes.insert(
            ino,
            MemNode {
                stat: st,
                body: Body::File(content.to_vec()),
                xattrs: Vec::new(),
            },
        );
        self.unlisted.insert((parent, name.to_vec()), ino);
    }

    /// A file whose content cannot be read: damaged, or panicking.
    pub fn broken(&mut self, parent: NodeId, name: &[u8], ino: NodeId, panics: bool) {
        let st = stat(FileKind::File, ino, 100);
        let body = if panics { Body::Panics } else { Body::Damaged };
        self.add(parent, name, ino, st, body);
    }

    pub fn xattr(&mut self, ino: NodeId, name: &str, value: &[u8]) {
        let n = self.nodes.get_mut(&ino).expect("a node");
        n.xattrs.push((name.to_string(), value.to_vec()));
    }

    fn get(&self, node: NodeId) -> Result<&MemNode, FsError> {
        self.nodes.get(&node).ok_or(FsError::NotFound)
    }
}

impl FileSystem for MemFs {
    fn root(&self) -> NodeId {
        ROOT
    }

    fn stat(&mut self, node: NodeId) -> Result<Stat, FsError> {
        Ok(self.get(node)?.stat.clone())
    }

    fn list(&mut self, dir: NodeId) -> Result<Vec<DirEntry>, FsError> {
        match &self.get(dir)?.body {
            Body::Dir(entries) => Ok(entries.clone()),
            _ => Err(FsError::NotADirectory),
        }
    }

    fn lookup(&mut self, dir: NodeId, name: &[u8]) -> Result<Option<DirEntry>, FsError> {
        if let Some(&node) = self.unlisted.get(&(dir, name.to_vec())) {
            return Ok(Some(DirEntry {
                name: name.to_vec(),
                node,
                kind: FileKind::File,
            }));
        }
        Ok(self.list(dir)?.into_iter().find(|e| e.name == name))
    }

    fn read_link(&mut self, node: NodeId) -> Result<Vec<u8>, FsError> {
        match &self.get(node)?.body {
            Body::Link(target) => Ok(target.clone()),
            _ => Err(FsError::NotASymlink),
        }
    }

    fn read(&mut self, node: NodeId, offset: u64, buf: &mut [u8]) -> Result<usize, FsError> {
        match &self.get(node)?.body {
            Body::File(content) => {
                let start = usize::try_from(offset)
                    .unwrap_or(usize::MAX)
                    .min(content.len());
                let n = buf.len().min(content.len() - start);
                buf[..n].copy_from_slice(&content[start..start + n]);
                Ok(n)
            }
            Body::Dir(_) => Err(FsError::IsADirectory),
            Body::Damaged => Err(FsError::Damaged(format!("extent tree of inode {node}"))),
            Body::Panics => panic!("a reader panicking on a hostile image"),
            Body::Link(_) | Body::Special => Err(FsError::NotFound),
        }
    }

    fn xattrs(&mut self, node: NodeId) -> Result<Vec<(String, Vec<u8>)>, FsError> {
        Ok(self.get(node)?.xattrs.clone())
    }
}
