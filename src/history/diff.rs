//! How two versions of one path differ: the change `history` reports and
//! the timeline records.

use super::view::Version;
use crate::fs::Stat;

/// What happened to a path between two states examined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    /// There at the first state examined.
    Present,
    /// Appeared, never seen before.
    Created,
    /// Appeared again after it was gone.
    Recreated,
    /// Another node now has the name (an editor saving through a rename,
    /// `mv` over it): the old inode number.
    Replaced { old_ino: u64 },
    /// The same node, changed.
    Modified,
    /// A node that was at another path (the one given) arrived here: a
    /// rename (timelines only; `history` follows one path).
    RenamedFrom(Vec<u8>),
    /// The name is gone and so is the node.
    Deleted,
    /// The name is gone but the node still has `links` links: renamed
    /// away (or this was one of several hard links).
    RenamedAway { ino: u64, links: u32 },
    /// The filesystem or the disk can no longer be read there.
    Unreadable(String),
}

impl ChangeKind {
    /// The name `--json` and the timeline use.
    pub fn name(&self) -> &'static str {
        match self {
            ChangeKind::Present => "present",
            ChangeKind::Created => "created",
            ChangeKind::Recreated => "re-created",
            ChangeKind::Replaced { .. } => "replaced",
            ChangeKind::Modified => "modified",
            ChangeKind::RenamedFrom(_) => "renamed-from",
            ChangeKind::Deleted => "deleted",
            ChangeKind::RenamedAway { .. } => "renamed-away",
            ChangeKind::Unreadable(_) => "unreadable",
        }
    }
}

/// The metadata fields that differ between `a` and `b`, by name (`mode`,
/// `uid`, `gid`, `nlink`, `ino`, `kind`, then every timestamp by its
/// xattr name without `user.`: `ext4.mtime`, `ntfs.fn.created`...).
/// Size is content, not listed here.
pub fn metadata_changes(a: &Stat, b: &Stat) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = |name: &str, differs: bool| {
        if differs {
            out.push(name.to_string());
        }
    };
    field("kind", a.kind != b.kind);
    field("mode", a.perm != b.perm);
    field("uid", a.uid != b.uid);
    field("gid", a.gid != b.gid);
    field("nlink", a.nlink != b.nlink);
    field("rdev", a.rdev != b.rdev);
    for (name, t) in &b.times {
        let before = a.times.iter().find(|(n, _)| n == name).map(|(_, t)| t);
        if before != Some(t) {
            out.push(name.trim_start_matches("user.").to_string());
        }
    }
    for (name, _) in &a.times {
        if !b.times.iter().any(|(n, _)| n == name) {
            out.push(name.trim_start_matches("user.").to_string());
        }
    }
    out
}

/// How `cur` differs from `prev` (both present): `None` when it does not.
pub fn compare(prev: &Version, cur: &Version) -> Option<(ChangeKind, bool, Vec<String>)> {
    let content = prev.sha256 != cur.sha256 || prev.stat.size != cur.stat.size;
    let fields = metadata_changes(&prev.stat, &cur.stat);
    // Another inode, or the same number reused by a file created later
    // (a creation time set back is a forged time, not a new file).
    let reborn = matches!((prev.stat.crtime, cur.stat.crtime), (Some(a), Some(b)) if b > a);
    if prev.stat.ino != cur.stat.ino || reborn {
        return Some((
            ChangeKind::Replaced {
                old_ino: prev.stat.ino,
            },
            content,
            fields,
        ));
    }
    if !content && fields.is_empty() {
        return None;
    }
    Some((ChangeKind::Modified, content, fields))
}
