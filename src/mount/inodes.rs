//! The table behind [`Node::Dyn`]: the nodes inside states (partitions,
//! and the files of the filesystems in them) that the kernel currently
//! knows, each with the number the mount gave it.
//!
//! A key names a node by what it is, not by the path that reached it:
//! `(state, place)`, where the place is a partition's image, a partition's
//! directory, or a node of one volume's filesystem. The same key always
//! gets the same number while the kernel holds it, so hard links share an
//! inode, and `at/<t>/.../f` and `seq/<n>/.../f` share an inode and the
//! kernel's page cache.
//!
//! Directories are the exception, as for the state directories themselves
//! (node.rs): Linux gives a directory inode one name, and a second parent
//! makes the kernel move the directory's dentry from one tree to the other
//! (and sometimes fail the lookup with ESTALE), under a shell's feet. So a
//! directory's key also says which state directory, `at/` or `seq/`, the
//! path went through ([`Via`]). Inside one filesystem a directory is still
//! keyed by its node: a directory that contains its own ancestor (a
//! hostile image) is one inode, and the kernel answers ELOOP instead of
//! descending forever.
//!
//! Memory stays bounded by what the kernel holds: every lookup the kernel
//! is answered counts one reference, its `forget` gives them back, and an
//! entry whose count reaches zero is dropped (its number is never handed
//! out again: a late request for it finds nothing). Directory listings
//! show numbers too, but the kernel takes no reference for those; entries
//! created by a listing alone are kept, uncounted, in a bounded queue, so
//! that a following lookup usually gives the number the listing showed.

use super::node::{Node, MAX_DYN};
use crate::fs::volume::VolumeId;
use crate::fs::{FileKind, NodeId};
use crate::units::Seq;
use std::collections::{HashMap, VecDeque};

/// Entries created by a listing and not yet looked up, kept at most.
pub const UNREFERENCED_ENTRIES: usize = 65_536;

/// Which of a state's two directories, `at/<time>/` or `seq/<n>/`, a path
/// went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Via {
    At,
    Seq,
}

impl Via {
    /// The state directory a path through `via` starts from.
    pub fn state_dir(self, state: Seq) -> Node {
        match self {
            Via::At => Node::AtState(state),
            Via::Seq => Node::SeqState(state),
        }
    }
}

/// What a dynamic node is, inside its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Place {
    /// `p<N>.img`.
    PartitionImage(u32),
    /// `p<N>/`.
    PartitionDir { number: u32, via: Via },
    /// A node of the filesystem on `volume` (its `files/` is the root);
    /// `via` is set for directories only.
    Fs {
        volume: VolumeId,
        node: NodeId,
        via: Option<Via>,
    },
}

/// A dynamic node's identity: the same key, the same number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DynKey {
    pub state: Seq,
    pub place: Place,
}

/// A dynamic node as the table keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DynNode {
    pub key: DynKey,
    pub kind: FileKind,
    /// The directory it was first found in (what `..` lists).
    pub parent: Node,
}

struct Slot {
    node: DynNode,
    /// References the kernel holds (lookups answered, not yet forgotten).
    lookups: u64,
}

/// The table.
pub struct Inodes {
    ids: HashMap<DynKey, u64>,
    slots: HashMap<u64, Slot>,
    /// The next id to hand out; ids start at 1 and are never reused.
    next: u64,
    /// Ids created by listings, oldest first (some since looked up: those
    /// stay when they leave the queue).
    unreferenced: VecDeque<u64>,
    unreferenced_cap: usize,
}

impl Inodes {
    pub fn new(unreferenced_cap: usize) -> Inodes {
        Inodes {
            ids: HashMap::new(),
            slots: HashMap::new(),
            next: 1,
            unreferenced: VecDeque::new(),
            unreferenced_cap,
        }
    }

    /// The number of `node`, counting one reference the kernel now holds
    /// (a lookup about to be answered).
    pub fn looked_up(&mut self, node: DynNode) -> u64 {
        let id = self.id_of(node);
        self.slots.get_mut(&id).expect("id_of made it").lookups += 1;
        id
    }

    /// The number of `node` for a directory listing: no reference counted.
    pub fn listed(&mut self, node: DynNode) -> u64 {
        if let Some(&id) = self.ids.get(&node.key) {
            return id;
        }
        let id = self.id_of(node);
        self.unreferenced.push_back(id);
        while self.unreferenced.len() > self.unreferenced_cap {
            let old = self.unreferenced.pop_front().expect("not empty");
            if self.slots.get(&old).is_some_and(|s| s.lookups == 0) {
                self.remove(old);
            }
        }
        id
    }

    /// The node numbered `id`, if the kernel may still know it.
    pub fn get(&self, id: u64) -> Option<DynNode> {
        self.slots.get(&id).map(|s| s.node)
    }

    /// The kernel gives back `n` references to `id`; the entry goes with
    /// the last.
    pub fn forget(&mut self, id: u64, n: u64) {
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        slot.lookups = slot.lookups.saturating_sub(n);
        if slot.lookups == 0 {
            self.remove(id);
        }
    }

    /// Entries held (referenced or waiting in the listing queue).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    fn id_of(&mut self, node: DynNode) -> u64 {
        if let Some(&id) = self.ids.get(&node.key) {
            return id;
        }
        let id = self.next;
        // 2^56 ids: a billion a second for two years. Never reached, but
        // wrapping would reuse numbers, so stop rather than wrap.
        assert!(id <= MAX_DYN, "the mount ran out of inode numbers");
        self.next += 1;
        self.ids.insert(node.key, id);
        self.slots.insert(id, Slot { node, lookups: 0 });
        id
    }

    fn remove(&mut self, id: u64) {
        if let Some(slot) = self.slots.remove(&id) {
            self.ids.remove(&slot.node.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(state: u64, node: NodeId) -> DynNode {
        DynNode {
            key: DynKey {
                state: Seq(state),
                place: Place::Fs {
                    volume: VolumeId::Partition(1),
                    node,
                    via: None,
                },
            },
            kind: FileKind::File,
            parent: Node::Root,
        }
    }

    #[test]
    fn one_key_one_number_until_the_kernel_forgets_it() {
        let mut t = Inodes::new(8);
        let a = t.looked_up(file(1, 12));
        assert_eq!(t.looked_up(file(1, 12)), a, "a hard link, or a second path");
        assert_ne!(t.looked_up(file(2, 12)), a, "another state");
        assert_ne!(t.looked_up(file(1, 13)), a, "another node");
        assert_eq!(t.get(a), Some(file(1, 12)));
        t.forget(a, 1);
        assert_eq!(t.get(a), Some(file(1, 12)), "one reference left");
        t.forget(a, 1);
        assert_eq!(t.get(a), None);
        let again = t.looked_up(file(1, 12));
        assert!(again > a, "numbers are never reused");
        assert_eq!(t.len(), 3);
        t.forget(12345, 1); // unknown: ignored
    }

    #[test]
    fn listings_alone_keep_a_bounded_number_of_entries() {
        let mut t = Inodes::new(4);
        let kept = t.listed(file(1, 0));
        assert_eq!(
            t.looked_up(file(1, 0)),
            kept,
            "the number the listing showed"
        );
        for n in 1..1000 {
            t.listed(file(1, n));
        }
        assert_eq!(t.len(), 5, "four unreferenced and the one looked up");
        assert_eq!(t.get(kept), Some(file(1, 0)));
        let last = t.listed(file(1, 999));
        assert_eq!(t.get(last), Some(file(1, 999)));
        t.forget(kept, 1);
        assert_eq!(t.len(), 4);
    }
}
