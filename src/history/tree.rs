//! `timeline`: every version of every file in a volume over a stretch of
//! history. The whole tree is walked at the first state, then again only
//! at states where a record wrote a block the last walk read (directory
//! blocks, inodes, data, superblock, journal: the same argument as for
//! one path, over the whole tree); a file whose metadata and data blocks
//! did not change keeps its content hash without being read again.

use super::diff::{compare, ChangeKind};
use super::path::{group_end, HistoryError, NextWrite, Stats};
use super::recorder::Recorder;
use super::view::{open_state, Version};
use crate::fs::{FileKind, FileSystem, FsError, NodeId};
use crate::store::Store;
use crate::units::{BlockNo, Seq, TimeNs};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// Most nodes a walk visits (a damaged tree cannot make it run forever).
pub const MAX_NODES: usize = 10_000_000;

/// One version of one path (or its end).
#[derive(Debug, Clone)]
pub struct Event {
    pub path: Vec<u8>,
    /// The state at which it is seen, and its recorded time.
    pub seq: Seq,
    pub time_ns: TimeNs,
    pub kind: ChangeKind,
    pub content_changed: bool,
    pub fields: Vec<String>,
    /// The version now (`None`: deleted or renamed away).
    pub version: Option<Version>,
    pub previous: Option<Version>,
    /// The last record that wrote this version's content blocks, and its
    /// time (`None`: no blocks of its own, e.g. an empty file).
    pub content_write: Option<(Seq, TimeNs)>,
    /// Where a node that was renamed away now is.
    pub renamed_to: Option<Vec<u8>>,
}

struct Walked {
    versions: BTreeMap<Vec<u8>, Version>,
    deps: BTreeSet<u64>,
    /// Nodes (and directories' listings) the filesystem answered with
    /// damage: what was below them is not known to be gone.
    unreadable: Vec<(Vec<u8>, String)>,
}

/// Walk the whole tree of `fs`; content hashes are taken from `reuse`
/// where it says they still hold.
fn walk(
    fs: &mut dyn FileSystem,
    rec: &Recorder,
    reuse: &mut dyn FnMut(&[u8], &crate::fs::Stat) -> Option<Version>,
) -> Result<Walked, FsError> {
    let mut versions = BTreeMap::new();
    let mut deps = BTreeSet::new();
    let mut stack: Vec<(Vec<u8>, NodeId)> = vec![(b"/".to_vec(), fs.root())];
    let mut dirs_seen = HashSet::new();
    let mut unreadable = Vec::new();
    while let Some((path, node)) = stack.pop() {
        if versions.len() >= MAX_NODES {
            return Err(FsError::Damaged(format!("more than {MAX_NODES} nodes")));
        }
        let stat = match fs.stat(node) {
            Ok(s) => s,
            Err(FsError::Io(e)) => return Err(FsError::Io(e)),
            // One damaged node: the rest of the tree stands.
            Err(e) => {
                unreadable.push((path, e.to_string()));
                continue;
            }
        };
        deps.extend(rec.take());
        if let Some(v) = reuse(&path, &stat) {
            deps.extend(v.content_blocks.iter().copied());
            versions.insert(path, v);
            continue;
        }
        let mut h = Sha256::new();
        match stat.kind {
            FileKind::Dir => {
                if !dirs_seen.insert(node) {
                    continue;
                }
                let entries = match fs.list(node) {
                    Ok(e) => e,
                    Err(FsError::Io(e)) => return Err(FsError::Io(e)),
                    Err(e) => {
                        unreadable.push((path, e.to_string()));
                        continue;
                    }
                };
                for e in &entries {
                    h.update(&e.name);
                    h.update([0]);
                    h.update(e.node.to_le_bytes());
                    h.update([e.kind as u8]);
                }
                for e in entries.into_iter().rev() {
                    let mut p = path.clone();
                    if p.len() > 1 {
                        p.push(b'/');
                    }
                    p.extend_from_slice(&e.name);
                    stack.push((p, e.node));
                }
            }
            FileKind::File => {
                let mut buf = vec![0u8; 1 << 20];
                let mut at = 0u64;
                loop {
                    match fs.read(node, at, &mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            h.update(&buf[..n]);
                            at += n as u64;
                        }
                        Err(_) => break,
                    }
                }
            }
            FileKind::Symlink => {
                if let Ok(t) = fs.read_link(node) {
                    h.update(t);
                }
            }
            _ => {}
        }
        let content: BTreeSet<u64> = rec.take();
        deps.extend(content.iter().copied());
        versions.insert(
            path,
            Version {
                stat,
                sha256: h.finalize().into(),
                content_blocks: content.into_iter().collect(),
            },
        );
    }
    deps.extend(rec.take());
    Ok(Walked {
        versions,
        deps,
        unreadable,
    })
}

/// The last write to any of `blocks` up to `state`.
fn content_write(
    store: &Store,
    blocks: &[u64],
    state: Seq,
) -> Result<Option<(Seq, TimeNs)>, HistoryError> {
    let mut last: Option<Seq> = None;
    for &b in blocks {
        if let Some(q) = store.last_write(BlockNo(b), state)? {
            last = Some(last.map_or(q, |l| l.max(q)));
        }
    }
    Ok(match last {
        Some(q) => Some((q, store.time_of(q)?)),
        None => None,
    })
}

/// Every version of every path on volume `part` between states `from`
/// and `to`, in order of state (and path within one state), each handed
/// to `on_event`. Paths present at `from` come as
/// [`ChangeKind::Present`]. The root directory is `/`.
pub fn timeline(
    store: &Arc<Store>,
    part: Option<u32>,
    from: Seq,
    to: Seq,
    mut on_event: impl FnMut(&Event) -> std::io::Result<()>,
) -> Result<Stats, HistoryError> {
    let mut stats = Stats::default();
    let mut next = NextWrite::default();
    let mut state = from;
    let mut prev_state: Option<Seq> = None;
    let mut prev: BTreeMap<Vec<u8>, Version> = BTreeMap::new();
    let mut writes: HashMap<Vec<u8>, Option<(Seq, TimeNs)>> = HashMap::new();
    let mut ever: HashSet<Vec<u8>> = HashSet::new();
    let mut first = true;
    let mut unreadable_now: HashSet<Vec<u8>> = HashSet::new();
    let mut unreadable_next: HashSet<Vec<u8>> = HashSet::new();
    let mut reuse_next = NextWrite::default();
    loop {
        stats.states_examined += 1;
        let opened = open_state(store, state, part);
        let rec = opened.recorder.clone();
        let walked = match opened.fs {
            Err(why) => {
                stats.last_absence = Some(why);
                Walked {
                    versions: BTreeMap::new(),
                    deps: rec.take(),
                    unreadable: Vec::new(),
                }
            }
            Ok(mut fs) => {
                stats.filesystem_seen = true;
                let mut reuse = |path: &[u8], st: &crate::fs::Stat| -> Option<Version> {
                    let p = prev.get(path)?;
                    let unchanged = p.stat == *st && st.kind != FileKind::Dir;
                    if !unchanged {
                        return None;
                    }
                    let since = prev_state?;
                    match reuse_next.after(store, &p.content_blocks, since) {
                        Ok(Some(q)) if q <= state => None,
                        Ok(_) => Some(p.clone()),
                        Err(_) => None,
                    }
                };
                match walk(fs.as_mut(), &rec, &mut reuse) {
                    Ok(w) => w,
                    Err(e) => {
                        stats.last_absence = Some(format!("the filesystem: {e}"));
                        Walked {
                            versions: BTreeMap::new(),
                            deps: rec.take(),
                            unreadable: Vec::new(),
                        }
                    }
                }
            }
        };
        let mut walked = walked;
        // What lies at or below a node that cannot be read now keeps its
        // last version (said once, as unreadable), rather than looking
        // deleted.
        let mut unreadable_events = Vec::new();
        for (path, why) in std::mem::take(&mut walked.unreadable) {
            let mut below = path.clone();
            if below.len() > 1 {
                below.push(b'/');
            }
            for (p, v) in prev.range(path.clone()..) {
                if *p != path && !p.starts_with(&below) {
                    if p.as_slice() > below.as_slice() {
                        break;
                    }
                    continue;
                }
                walked
                    .versions
                    .entry(p.clone())
                    .or_insert_with(|| v.clone());
            }
            if !unreadable_now.contains(&path) {
                unreadable_events.push((path.clone(), why));
            }
            unreadable_next.insert(path);
        }
        unreadable_now = std::mem::take(&mut unreadable_next);
        stats.max_dependencies = stats.max_dependencies.max(walked.deps.len());
        let time_ns = if state.0 == 0 {
            TimeNs(i64::MIN)
        } else {
            store.time_of(state)?
        };
        // Nodes whose old path is gone, by inode: where a new path's node
        // came from.
        let gone_by_ino: HashMap<u64, &Vec<u8>> = prev
            .iter()
            .filter(|(p, _)| !walked.versions.contains_key(*p))
            .map(|(p, v)| (v.stat.ino, p))
            .collect();
        let mut events = Vec::new();
        // Old path -> new path of the nodes renamed.
        let mut moves: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        for (path, v) in &walked.versions {
            let moved_from = gone_by_ino
                .get(&v.stat.ino)
                .filter(|_| !prev.contains_key(path))
                .filter(|op| {
                    // The same node, not its number reused by a new file.
                    let o = &prev[op.as_slice()].stat;
                    o.kind == v.stat.kind && v.stat.crtime <= o.crtime
                });
            let (kind, content, fields, previous) = match prev.get(path) {
                None if moved_from.is_some() => {
                    let op = moved_from.expect("checked");
                    moves.insert((*op).clone(), path.clone());
                    let p = &prev[op.as_slice()];
                    let (c, f) = match compare(p, v) {
                        Some((_, c, f)) => (c, f),
                        None => (false, Vec::new()),
                    };
                    if let Some(w) = writes.get(op.as_slice()).copied() {
                        writes.insert(path.clone(), w);
                    }
                    (
                        ChangeKind::RenamedFrom((*op).clone()),
                        c,
                        f,
                        Some(p.clone()),
                    )
                }
                None if first => (ChangeKind::Present, true, Vec::new(), None),
                None if ever.contains(path) => (ChangeKind::Recreated, true, Vec::new(), None),
                None => (ChangeKind::Created, true, Vec::new(), None),
                Some(p) => match compare(p, v) {
                    None => continue,
                    Some((k, c, f)) => (k, c, f, Some(p.clone())),
                },
            };
            let cw = if content || !writes.contains_key(path) {
                content_write(store, &v.content_blocks, state)?
            } else {
                writes[path]
            };
            writes.insert(path.clone(), cw);
            events.push(Event {
                path: path.clone(),
                seq: state,
                time_ns,
                kind,
                content_changed: content,
                fields,
                version: Some(v.clone()),
                previous,
                content_write: cw,
                renamed_to: None,
            });
        }
        for (path, p) in &prev {
            if walked.versions.contains_key(path) {
                continue;
            }
            let moved = moves.get(path).cloned();
            let kind = match moved.as_ref().and_then(|np| walked.versions.get(np)) {
                Some(nv) => ChangeKind::RenamedAway {
                    ino: p.stat.ino,
                    links: nv.stat.nlink,
                },
                None => ChangeKind::Deleted,
            };
            events.push(Event {
                path: path.clone(),
                seq: state,
                time_ns,
                kind,
                content_changed: false,
                fields: Vec::new(),
                version: None,
                previous: Some(p.clone()),
                content_write: None,
                renamed_to: moved,
            });
            writes.remove(path);
        }
        for (path, why) in unreadable_events {
            events.push(Event {
                path: path.clone(),
                seq: state,
                time_ns,
                kind: ChangeKind::Unreadable(why),
                content_changed: false,
                fields: Vec::new(),
                version: None,
                previous: prev.get(&path).cloned(),
                content_write: None,
                renamed_to: None,
            });
        }
        events.sort_by(|a, b| a.path.cmp(&b.path));
        for e in &events {
            on_event(e).map_err(HistoryError::Output)?;
        }
        ever.extend(walked.versions.keys().cloned());
        stats.path_seen |= !walked.versions.is_empty();
        prev = walked.versions;
        prev_state = Some(state);
        first = false;
        let Some(n) = next.after(store, &walked.deps, state)? else {
            break;
        };
        if n > to {
            break;
        }
        state = group_end(store, n, to)?;
    }
    stats.index_probes = next.probes;
    Ok(stats)
}
