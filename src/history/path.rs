//! `history`: every change of one path, found by jumping from one write
//! to a block the path's view depends on to the next.
//!
//! A view (volume table, superblock, the directories on the path, the
//! inode, its extent tree, its data, the journal when replayed) is made
//! only from the blocks it reads, and reading is deterministic: if none
//! of those blocks is written between two states, the view is the same
//! in both. So from a state, the next state worth examining is the first
//! record after it writing any of them (one index probe per block), taken
//! to the end of its group of records sharing one recorded time (the
//! states `at/<time>` names: an image import, a burst the recorder
//! stamped at once), so that a change made by several records is seen
//! once, complete. The cost follows the path's own changes and the size
//! of what it reads, not the length of the history.

use super::diff::{compare, ChangeKind};
use super::view::{open_state, resolve, version_of, Version};
use crate::store::{Store, StoreError};
use crate::time::TimeSpec;
use crate::units::{BlockNo, Seq, TimeNs};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// One change of the path.
#[derive(Debug, Clone)]
pub struct Change {
    /// The state at which it is seen: the last record of the group that
    /// completed it.
    pub seq: Seq,
    pub time_ns: TimeNs,
    pub kind: ChangeKind,
    /// The content (data, target or listing) differs from the version
    /// before.
    pub content_changed: bool,
    /// Metadata fields that differ (see [`super::diff::metadata_changes`]).
    pub fields: Vec<String>,
    /// The version now; `None` once gone.
    pub version: Option<Version>,
    /// The version before; `None` if there was none.
    pub previous: Option<Version>,
}

/// What a history walk cost.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// States whose view was read (the first one included).
    pub states_examined: u64,
    /// Index probes for the next write of a block.
    pub index_probes: u64,
    /// Most blocks one view depended on.
    pub max_dependencies: usize,
    /// The path was present in some state examined.
    pub path_seen: bool,
    /// A filesystem could be opened in some state examined; else why not,
    /// at the last state.
    pub filesystem_seen: bool,
    pub last_absence: Option<String>,
}

/// The last state of the group of records that share record `seq`'s
/// time (at most `to`): the state a time names.
pub fn group_end(store: &Store, seq: Seq, to: Seq) -> Result<Seq, StoreError> {
    if seq.0 == 0 {
        return Ok(seq);
    }
    let t = store.time_of(seq)?;
    Ok(store.resolve(TimeSpec::At(t))?.min(to).max(seq))
}

/// Finds, for a set of blocks, the first record after a state writing any
/// of them; remembers each block's answer while it stays ahead.
#[derive(Default)]
pub struct NextWrite {
    known: HashMap<u64, Option<Seq>>,
    pub probes: u64,
}

impl NextWrite {
    pub fn after<'a>(
        &mut self,
        store: &Store,
        blocks: impl IntoIterator<Item = &'a u64>,
        state: Seq,
    ) -> Result<Option<Seq>, StoreError> {
        let mut best: Option<Seq> = None;
        for &b in blocks {
            let next = match self.known.get(&b) {
                Some(None) => None,
                Some(Some(q)) if *q > state => Some(*q),
                _ => {
                    self.probes += 1;
                    let q = store.next_write(BlockNo(b), state)?;
                    self.known.insert(b, q);
                    q
                }
            };
            if let Some(q) = next {
                best = Some(best.map_or(q, |b| b.min(q)));
            }
        }
        Ok(best)
    }
}

struct Seen {
    view: Option<Version>,
    absence: Option<String>,
    unreadable: Option<String>,
    links_of_previous: u32,
    deps: BTreeSet<u64>,
}

/// The view of `path` at `state`; `prev` is the node the path showed
/// before (inode number and creation time), to tell a rename from a
/// deletion when the name is gone.
fn look(
    store: &Arc<Store>,
    state: Seq,
    part: Option<u32>,
    path: &[u8],
    prev: Option<(u64, Option<TimeNs>)>,
) -> Seen {
    let opened = open_state(store, state, part);
    let rec = opened.recorder;
    let mut deps = BTreeSet::new();
    let mut seen = Seen {
        view: None,
        absence: None,
        unreadable: None,
        links_of_previous: 0,
        deps: BTreeSet::new(),
    };
    match opened.fs {
        Err(why) => seen.absence = Some(why),
        Ok(mut fs) => match resolve(fs.as_mut(), path) {
            Ok(Some(node)) => match version_of(fs.as_mut(), &rec, node, &mut deps) {
                Ok(v) => seen.view = Some(v),
                Err(e) => seen.unreadable = Some(e.to_string()),
            },
            Ok(None) => {
                seen.absence = Some("no such file or directory".into());
                // Still linked, and not its number reused by a file
                // created since.
                if let Some((ino, crtime)) = prev {
                    seen.links_of_previous = fs
                        .stat(ino)
                        .ok()
                        .filter(|s| s.crtime <= crtime)
                        .map_or(0, |s| s.nlink);
                }
            }
            Err(e) => seen.unreadable = Some(e.to_string()),
        },
    }
    deps.extend(rec.take());
    seen.deps = deps;
    seen
}

/// Every change of `path` (bytes, `/`-separated from the filesystem's
/// root) on volume `part` between states `from` and `to`, in order, each
/// handed to `on_change`. The view at `from` is reported as
/// [`ChangeKind::Present`] if the path is there.
pub fn history(
    store: &Arc<Store>,
    part: Option<u32>,
    path: &[u8],
    from: Seq,
    to: Seq,
    mut on_change: impl FnMut(&Change) -> std::io::Result<()>,
) -> Result<Stats, HistoryError> {
    let mut stats = Stats::default();
    let mut next = NextWrite::default();
    let mut state = from;
    let mut seen = look(store, state, part, path, None);
    stats.states_examined = 1;
    let mut ever = false;
    let mut prev: Option<Version> = None;
    let mut prev_unreadable: Option<String> = None;
    let mut first = true;
    loop {
        stats.max_dependencies = stats.max_dependencies.max(seen.deps.len());
        if seen.absence.as_deref() != Some("no such file or directory") && seen.absence.is_some() {
            stats.last_absence = seen.absence.clone();
        } else {
            stats.filesystem_seen = true;
        }
        let time_ns = if state.0 == 0 {
            TimeNs(i64::MIN)
        } else {
            store.time_of(state)?
        };
        let change = |kind, content_changed, fields, version: Option<Version>, previous| Change {
            seq: state,
            time_ns,
            kind,
            content_changed,
            fields,
            version,
            previous,
        };
        let mut report: Option<Change> = None;
        match (&prev, &seen.view) {
            (None, Some(v)) => {
                let kind = if first {
                    ChangeKind::Present
                } else if ever {
                    ChangeKind::Recreated
                } else {
                    ChangeKind::Created
                };
                report = Some(change(kind, true, Vec::new(), Some(v.clone()), None));
            }
            (Some(p), None) => {
                let kind = if let Some(why) = &seen.unreadable {
                    ChangeKind::Unreadable(why.clone())
                } else if seen.links_of_previous > 0 {
                    ChangeKind::RenamedAway {
                        ino: p.stat.ino,
                        links: seen.links_of_previous,
                    }
                } else {
                    ChangeKind::Deleted
                };
                report = Some(change(kind, false, Vec::new(), None, Some(p.clone())));
            }
            (Some(p), Some(v)) => {
                if let Some((kind, content, fields)) = compare(p, v) {
                    report = Some(change(
                        kind,
                        content,
                        fields,
                        Some(v.clone()),
                        Some(p.clone()),
                    ));
                }
            }
            (None, None) => {
                if let Some(why) = &seen.unreadable {
                    if prev_unreadable.as_ref() != Some(why) {
                        report = Some(change(
                            ChangeKind::Unreadable(why.clone()),
                            false,
                            Vec::new(),
                            None,
                            None,
                        ));
                    }
                }
            }
        }
        if let Some(c) = &report {
            on_change(c).map_err(HistoryError::Output)?;
        }
        if seen.view.is_some() {
            ever = true;
            stats.path_seen = true;
        }
        prev_unreadable = seen.unreadable.clone();
        prev = seen.view.take();
        first = false;
        let Some(n) = next.after(store, &seen.deps, state)? else {
            break;
        };
        if n > to {
            break;
        }
        state = group_end(store, n, to)?;
        seen = look(
            store,
            state,
            part,
            path,
            prev.as_ref().map(|v| (v.stat.ino, v.stat.crtime)),
        );
        stats.states_examined += 1;
    }
    stats.index_probes = next.probes;
    Ok(stats)
}

/// Why a history walk stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing the output: {0}")]
    Output(std::io::Error),
}
