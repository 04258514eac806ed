//! The nodes of the mounted tree and their inode numbers.
//!
//! ```text
//! /                       Root
//! /at/                    At          listing: see listing.rs
//! /at/<canonical>/        AtState(s)  a real directory
//! /at/<other spelling>    AtLink(s)   symlink to <canonical> (or ../seq/<s>)
//! /seq/                   SeqRoot     lookup-only
//! /seq/<n>/               SeqState(s)
//! /by-day/                ByDay       one entry per UTC day with writes
//! /by-day/<day>/          Day(d)      one entry per second with writes
//! /by-day/<day>/<name>/   DayState(s) the state's directory again
//! /latest                 Latest      symlink to at/<canonical of head>
//! <state dir>/disk.img    Image(s)
//! <state dir>/info        Info(s)
//! <state dir>/p<N>.img, p<N>/, files/ and everything below
//!                         Dyn(id)      numbered by the tree's table
//! ```
//!
//! Inode numbers are a pure function of the node: no table, nothing to
//! forget, and the same number after a remount. Everything below a state
//! is keyed by the state's record number `s`, so every spelling that
//! resolves to the same state reaches the same `disk.img` inode and shares
//! the kernel's page cache. Directories are the exception on purpose: Linux
//! allows a directory inode only one name, so a second spelling of a state
//! under `/at` is a symlink to the canonical directory rather than another
//! name for it (`readlink` then also tells the user which state they got),
//! and a state listed under `/by-day/<day>/` is a directory of its own
//! (`DayState`) whose `disk.img` and `info` are the same inodes as under
//! `/at`: `ls -l` of a day with 86,400 states then needs no `readlink`
//! per entry.
//!
//! Nodes inside a state beyond `disk.img` and `info` (partitions, and the
//! files of the filesystems in them) cannot be named by a pure function:
//! a state, a volume and a filesystem's own 64-bit node number do not fit
//! in 64 bits. They are [`Node::Dyn`]: numbers handed out by the tree's
//! table of what the kernel currently knows (inodes.rs), and taken back
//! when the kernel forgets them.
//!
//! Layout of a number: the top 8 bits are the kind, the low 56 bits the
//! payload (a record number, a day offset by [`DAY_BIAS`], or a dynamic
//! id). Kind 0 holds the fixed nodes.

use super::names::Day;
use crate::fs::FileKind;
use crate::units::Seq;

const KIND_SHIFT: u32 = 56;
const PAYLOAD_MASK: u64 = (1 << KIND_SHIFT) - 1;
/// Days are signed; biasing keeps the payload positive. 2^40 days is far
/// beyond the ±106,751 days an i64 of nanoseconds covers.
const DAY_BIAS: i64 = 1 << 40;

const INO_ROOT: u64 = 1;
const INO_AT: u64 = 2;
const INO_SEQ_ROOT: u64 = 3;
const INO_LATEST: u64 = 4;
const INO_BY_DAY: u64 = 5;

const K_AT_STATE: u64 = 1;
const K_SEQ_STATE: u64 = 2;
const K_IMAGE: u64 = 3;
const K_INFO: u64 = 4;
const K_AT_LINK: u64 = 5;
const K_DAY: u64 = 6;
const K_DAY_STATE: u64 = 7;
const K_DYN: u64 = 8;

/// Largest record number the scheme can name.
pub const MAX_SEQ: u64 = PAYLOAD_MASK;
/// Largest dynamic id: 2^56 - 1, more than a mount hands out in its life.
pub const MAX_DYN: u64 = PAYLOAD_MASK;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Node {
    Root,
    At,
    SeqRoot,
    Latest,
    ByDay,
    AtState(Seq),
    SeqState(Seq),
    Image(Seq),
    Info(Seq),
    AtLink(Seq),
    Day(Day),
    DayState(Seq),
    /// A node inside a state found through its table (partitions, files);
    /// the id is never 0 and never reused within a mount.
    Dyn(u64),
}

impl Node {
    pub fn ino(self) -> u64 {
        let tagged = |kind: u64, payload: u64| (kind << KIND_SHIFT) | (payload & PAYLOAD_MASK);
        match self {
            Node::Root => INO_ROOT,
            Node::At => INO_AT,
            Node::SeqRoot => INO_SEQ_ROOT,
            Node::Latest => INO_LATEST,
            Node::ByDay => INO_BY_DAY,
            Node::AtState(s) => tagged(K_AT_STATE, s.0),
            Node::SeqState(s) => tagged(K_SEQ_STATE, s.0),
            Node::Image(s) => tagged(K_IMAGE, s.0),
            Node::Info(s) => tagged(K_INFO, s.0),
            Node::AtLink(s) => tagged(K_AT_LINK, s.0),
            Node::Day(d) => tagged(K_DAY, (d.0 + DAY_BIAS) as u64),
            Node::DayState(s) => tagged(K_DAY_STATE, s.0),
            Node::Dyn(id) => tagged(K_DYN, id),
        }
    }

    /// The node an inode number names, if any.
    pub fn from_ino(ino: u64) -> Option<Node> {
        let payload = ino & PAYLOAD_MASK;
        let seq = Seq(payload);
        Some(match ino >> KIND_SHIFT {
            0 => match ino {
                INO_ROOT => Node::Root,
                INO_AT => Node::At,
                INO_SEQ_ROOT => Node::SeqRoot,
                INO_LATEST => Node::Latest,
                INO_BY_DAY => Node::ByDay,
                _ => return None,
            },
            K_AT_STATE => Node::AtState(seq),
            K_SEQ_STATE => Node::SeqState(seq),
            K_IMAGE => Node::Image(seq),
            K_INFO => Node::Info(seq),
            K_AT_LINK => Node::AtLink(seq),
            K_DAY => Node::Day(Day(payload as i64 - DAY_BIAS)),
            K_DAY_STATE => Node::DayState(seq),
            K_DYN if payload != 0 => Node::Dyn(payload),
            _ => return None,
        })
    }

    /// What kind of file a fixed node is; `None` for a dynamic one (the
    /// tree's table knows).
    pub fn kind(self) -> Option<FileKind> {
        Some(match self {
            Node::Root
            | Node::At
            | Node::SeqRoot
            | Node::ByDay
            | Node::AtState(_)
            | Node::SeqState(_)
            | Node::DayState(_)
            | Node::Day(_) => FileKind::Dir,
            Node::Image(_) | Node::Info(_) => FileKind::File,
            Node::Latest | Node::AtLink(_) => FileKind::Symlink,
            Node::Dyn(_) => return None,
        })
    }

    /// The node `..` leads to, for directory listings; `None` for a
    /// dynamic one (the tree's table knows).
    pub fn parent(self) -> Option<Node> {
        Some(match self {
            Node::Root | Node::At | Node::SeqRoot | Node::Latest | Node::ByDay => Node::Root,
            Node::AtState(_) | Node::AtLink(_) => Node::At,
            Node::SeqState(_) => Node::SeqRoot,
            Node::Day(_) => Node::ByDay,
            // Files are reachable from several directories; report /at's.
            Node::Image(s) | Node::Info(s) => Node::AtState(s),
            // Its day is the state's time's; the kernel walks `..` by its
            // own dentries, so only `ls -ai` sees this approximation.
            Node::DayState(_) => Node::ByDay,
            Node::Dyn(_) => return None,
        })
    }

    /// The record number a node belongs to, if it belongs to one state.
    pub fn state(self) -> Option<Seq> {
        match self {
            Node::AtState(s)
            | Node::SeqState(s)
            | Node::Image(s)
            | Node::Info(s)
            | Node::AtLink(s)
            | Node::DayState(s) => Some(s),
            _ => None, // Dyn: the tree's table knows
        }
    }
}

/// The files inside every state directory.
pub const IMAGE_NAME: &str = "disk.img";
pub const INFO_NAME: &str = "info";
/// The directory of a filesystem's files: in a state's directory for a
/// disk without a table, in `p<N>/` for a partition.
pub const FILES_NAME: &str = "files";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inode_numbers_round_trip_and_never_collide() {
        let mut nodes = vec![
            Node::Root,
            Node::At,
            Node::SeqRoot,
            Node::Latest,
            Node::ByDay,
        ];
        for s in [0, 1, 2, 42, 1 << 40, MAX_SEQ] {
            let s = Seq(s);
            nodes.extend([
                Node::AtState(s),
                Node::SeqState(s),
                Node::Image(s),
                Node::Info(s),
                Node::AtLink(s),
                Node::DayState(s),
            ]);
        }
        for d in [-106_751, -1, 0, 1, 20_780, 106_751] {
            nodes.push(Node::Day(Day(d)));
        }
        for id in [1, 2, 1 << 40, MAX_DYN] {
            nodes.push(Node::Dyn(id));
        }
        let mut seen = std::collections::HashSet::new();
        for n in &nodes {
            let ino = n.ino();
            assert_ne!(ino, 0, "{n:?}");
            assert!(seen.insert(ino), "{n:?} collides");
            assert_eq!(Node::from_ino(ino), Some(*n));
        }
        assert_eq!(Node::Root.ino(), 1, "FUSE's root inode");
        assert_eq!(Node::from_ino(0), None);
        assert_eq!(Node::from_ino(99), None);
        assert_eq!(Node::from_ino(200 << KIND_SHIFT), None);
        assert_eq!(Node::from_ino(K_DYN << KIND_SHIFT), None, "dynamic id 0");
    }

    #[test]
    fn every_spelling_of_a_state_shares_its_image_inode() {
        // Directories differ per parent; the image does not.
        let s = Seq(7);
        assert_ne!(Node::AtState(s).ino(), Node::SeqState(s).ino());
        assert_eq!(Node::Image(s).ino(), Node::Image(Seq(7)).ino());
        assert_eq!(Node::Image(s).kind(), Some(FileKind::File));
        assert_eq!(Node::AtLink(s).kind(), Some(FileKind::Symlink));
        assert_eq!(Node::Dyn(3).kind(), None);
    }
}
