//! What one state shows of a path (or of a whole tree), and the blocks
//! that showing read: the volume picked as `ls --part` picks it, the
//! filesystem opened afresh over a [`Recorder`], the path resolved, the
//! node stat'ed and its content hashed.

use super::recorder::Recorder;
use crate::fs::source::StateDisk;
use crate::fs::volume::{self, VolumeId, Volumes};
use crate::fs::{FileKind, FileSystem, FsError, NodeId, Source, Stat};
use crate::store::Store;
use crate::units::Seq;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::sync::Arc;

/// One version of a node as a state shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub stat: Stat,
    /// SHA-256 of a file's content, a symlink's target, or a directory's
    /// listing (names, node numbers and kinds in the filesystem's order).
    pub sha256: [u8; 32],
    /// The blocks read to hash the content (data, and extent-tree blocks
    /// the reader had not met yet): the writes that made this content are
    /// the last writes to these.
    pub content_blocks: Vec<u64>,
}

/// A state's filesystem, opened over a recorder; or why there is none.
pub struct Opened {
    pub fs: Result<Box<dyn FileSystem>, String>,
    pub recorder: Arc<Recorder>,
}

/// Open the filesystem of the volume `part` names (the whole disk when
/// `None`) at `state`, noting every block read.
pub fn open_state(store: &Arc<Store>, state: Seq, part: Option<u32>) -> Opened {
    let recorder = Arc::new(Recorder::new(
        Arc::new(StateDisk::new(store.clone(), state)),
        store.geometry().block_size,
    ));
    let disk = Source::new(recorder.clone());
    let fs = (|| {
        let vols = Volumes::read(&disk).map_err(|e| format!("reading the disk: {e}"))?;
        let id = match part {
            Some(n) => VolumeId::Partition(n),
            None if vols.table.partitions.is_empty() => VolumeId::WholeDisk,
            None => {
                return Err(format!(
                    "the disk has a partition table ({}): say which partition with --part N",
                    vols.table.kind.name()
                ))
            }
        };
        let Some(v) = vols.get(id) else {
            return Err(match part {
                Some(n) if vols.table.partitions.is_empty() => {
                    format!("no partition {n}: the disk has no partition table")
                }
                Some(n) => format!("no partition {n}"),
                None => "no volume".into(),
            });
        };
        volume::open_filesystem(v).map_err(|why| format!("no readable filesystem: {why}"))
    })();
    Opened { fs, recorder }
}

/// The node at `path` (`/`-separated from the root); `Ok(None)` when a
/// component is missing.
pub fn resolve(fs: &mut dyn FileSystem, path: &[u8]) -> Result<Option<NodeId>, FsError> {
    let mut node = fs.root();
    for part in path
        .split(|&b| b == b'/')
        .filter(|p| !p.is_empty() && *p != b".")
    {
        match fs.lookup(node, part)? {
            Some(e) => node = e.node,
            None => return Ok(None),
        }
    }
    Ok(Some(node))
}

/// Stat `node` and hash its content; the blocks read for the content are
/// taken from `rec` (those read before stay in it).
pub fn version_of(
    fs: &mut dyn FileSystem,
    rec: &Recorder,
    node: NodeId,
    deps: &mut BTreeSet<u64>,
) -> Result<Version, FsError> {
    let stat = fs.stat(node)?;
    deps.extend(rec.take());
    let mut h = Sha256::new();
    match stat.kind {
        FileKind::File => {
            let mut buf = vec![0u8; 1 << 20];
            let mut at = 0u64;
            loop {
                let n = fs.read(node, at, &mut buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                at += n as u64;
            }
        }
        FileKind::Symlink => h.update(fs.read_link(node)?),
        FileKind::Dir => {
            for e in fs.list(node)? {
                h.update(&e.name);
                h.update([0]);
                h.update(e.node.to_le_bytes());
                h.update([e.kind as u8]);
            }
        }
        _ => {}
    }
    let content: BTreeSet<u64> = rec.take();
    deps.extend(content.iter().copied());
    Ok(Version {
        stat,
        sha256: h.finalize().into(),
        content_blocks: content.into_iter().collect(),
    })
}

/// What a state shows at a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    Present(Version),
    /// Not there: no such name, or no filesystem to look in (why).
    Absent(Absent),
    /// The filesystem answered damage or an error.
    Unreadable(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Absent {
    NoSuchPath,
    NoFilesystem(String),
}

/// The view of `path` at `state`, and every block it was made from.
pub fn view_path(
    store: &Arc<Store>,
    state: Seq,
    part: Option<u32>,
    path: &[u8],
) -> (View, BTreeSet<u64>) {
    let Opened { fs, recorder } = open_state(store, state, part);
    let mut deps = BTreeSet::new();
    let view = match fs {
        Err(why) => View::Absent(Absent::NoFilesystem(why)),
        Ok(mut fs) => match resolve(fs.as_mut(), path) {
            Ok(None) => View::Absent(Absent::NoSuchPath),
            Ok(Some(node)) => match version_of(fs.as_mut(), &recorder, node, &mut deps) {
                Ok(v) => View::Present(v),
                Err(e) => View::Unreadable(e.to_string()),
            },
            Err(e) => View::Unreadable(e.to_string()),
        },
    };
    deps.extend(recorder.take());
    (view, deps)
}
