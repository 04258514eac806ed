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
use std::collections::VecDeque;

/// Entries created by a listing and not yet looked up, kept at most.
pub const UNREFERENCED_ENTRIES: usize = 65_536;

/// Which of a state's directories, `at/<time>/`, `seq/<n>/` or
/// `by-day/<day>/<time>/`, a path went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Via {
    At,
    Seq,
    Day,
}

impl Via {
    /// The state directory a path through `via` starts from.
    pub fn state_dir(self, state: Seq) -> Node {
        match self {
            Via::At => Node::AtState(state),
            Via::Seq => Node::SeqState(state),
            Via::Day => Node::DayState(state),
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

/// One entry of the table: 56 bytes, so that the million nodes the kernel
/// holds after `ls -l` of 10,000 files in each of 100 states cost 56 MB.
#[derive(Clone, Copy)]
struct Slot {
    key: DynKey,
    /// The parent's inode number ([`Node::ino`]).
    parent: u64,
    /// References the kernel holds (lookups answered, not yet forgotten).
    lookups: u64,
    /// Bumped each time the slot is freed, so that a number is never
    /// handed out twice: a node's number is its slot and generation.
    generation: u32,
    kind: FileKind,
    used: bool,
}

/// Slots per chunk: the table grows a chunk at a time (224 KiB), never by
/// copying what it holds.
const CHUNK: usize = 4096;
/// A number is `generation << GEN_SHIFT | slot`; generations start at 1,
/// so no number is 0, and stop at [`MAX_GEN`] (the slot is then retired),
/// so that numbers fit [`MAX_DYN`] and are never reused.
const GEN_SHIFT: u32 = 32;
const MAX_GEN: u32 = ((MAX_DYN >> GEN_SHIFT) as u32).saturating_sub(1);

/// The table: slots in chunks, a hash index from key to slot (4 bytes an
/// entry), and the free slots.
pub struct Inodes {
    chunks: Vec<Box<[Slot]>>,
    index: hashbrown::HashTable<u32>,
    hasher: std::hash::RandomState,
    free: Vec<u32>,
    used: usize,
    /// Ids created by listings, oldest first (some since looked up: those
    /// stay when they leave the queue).
    unreferenced: VecDeque<u64>,
    unreferenced_cap: usize,
}

impl Inodes {
    pub fn new(unreferenced_cap: usize) -> Inodes {
        Inodes {
            chunks: Vec::new(),
            index: hashbrown::HashTable::new(),
            hasher: std::hash::RandomState::new(),
            free: Vec::new(),
            used: 0,
            unreferenced: VecDeque::new(),
            unreferenced_cap,
        }
    }

    /// The number of `node`, counting one reference the kernel now holds
    /// (a lookup about to be answered).
    pub fn looked_up(&mut self, node: DynNode) -> u64 {
        let id = self.id_of(node);
        self.slot_mut(id).expect("id_of made it").lookups += 1;
        id
    }

    /// The number of `node` for a directory listing: no reference counted.
    pub fn listed(&mut self, node: DynNode) -> u64 {
        if let Some(id) = self.find(&node.key) {
            return id;
        }
        let id = self.id_of(node);
        self.unreferenced.push_back(id);
        while self.unreferenced.len() > self.unreferenced_cap {
            let old = self.unreferenced.pop_front().expect("not empty");
            if self.slot_mut(old).is_some_and(|s| s.lookups == 0) {
                self.remove(old);
            }
        }
        id
    }

    /// The node numbered `id`, if the kernel may still know it.
    pub fn get(&self, id: u64) -> Option<DynNode> {
        let (at, generation) = split(id)?;
        let slot = self.chunks.get(at / CHUNK)?.get(at % CHUNK)?;
        (slot.used && slot.generation == generation).then(|| DynNode {
            key: slot.key,
            kind: slot.kind,
            parent: Node::from_ino(slot.parent).unwrap_or(Node::Root),
        })
    }

    /// The kernel gives back `n` references to `id`; the entry goes with
    /// the last.
    pub fn forget(&mut self, id: u64, n: u64) {
        let Some(slot) = self.slot_mut(id) else {
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
        self.used
    }

    fn hash(&self, key: &DynKey) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(key)
    }

    fn slot(&self, at: u32) -> &Slot {
        &self.chunks[at as usize / CHUNK][at as usize % CHUNK]
    }

    fn slot_mut(&mut self, id: u64) -> Option<&mut Slot> {
        let (at, generation) = split(id)?;
        let slot = self.chunks.get_mut(at / CHUNK)?.get_mut(at % CHUNK)?;
        (slot.used && slot.generation == generation).then_some(slot)
    }

    fn find(&self, key: &DynKey) -> Option<u64> {
        let at = *self
            .index
            .find(self.hash(key), |&at| self.slot(at).key == *key)?;
        Some(id_of_slot(at, self.slot(at).generation))
    }

    fn id_of(&mut self, node: DynNode) -> u64 {
        if let Some(id) = self.find(&node.key) {
            return id;
        }
        let at = match self.free.pop() {
            Some(at) => at,
            None => {
                let at = self.chunks.len() * CHUNK;
                // 2^32 slots in use at once: never reached (the kernel
                // holds far fewer inodes), but say so rather than wrap.
                let at = u32::try_from(at).expect("the mount ran out of inode numbers");
                self.chunks.push(vec![EMPTY; CHUNK].into_boxed_slice());
                // The new chunk's other slots are free, lowest first.
                self.free.extend((at + 1..at + CHUNK as u32).rev());
                at
            }
        };
        let slot = &mut self.chunks[at as usize / CHUNK][at as usize % CHUNK];
        *slot = Slot {
            key: node.key,
            parent: node.parent.ino(),
            lookups: 0,
            generation: slot.generation,
            kind: node.kind,
            used: true,
        };
        let id = id_of_slot(at, slot.generation);
        self.used += 1;
        let hash = self.hash(&node.key);
        let Inodes {
            index,
            chunks,
            hasher,
            ..
        } = self;
        index.insert_unique(hash, at, |&at| {
            use std::hash::BuildHasher;
            hasher.hash_one(chunks[at as usize / CHUNK][at as usize % CHUNK].key)
        });
        id
    }

    fn remove(&mut self, id: u64) {
        let Some((at, _)) = split(id) else { return };
        let Some(slot) = self.slot_mut(id) else {
            return;
        };
        let key = slot.key;
        slot.used = false;
        slot.generation += 1;
        let retired = slot.generation > MAX_GEN;
        self.used -= 1;
        let at = at as u32;
        if let Ok(entry) = self.index.find_entry(self.hash(&key), |&x| x == at) {
            entry.remove();
        }
        if !retired {
            self.free.push(at);
        }
    }
}

const EMPTY: Slot = Slot {
    key: DynKey {
        state: Seq(0),
        place: Place::PartitionImage(0),
    },
    parent: 0,
    lookups: 0,
    generation: 1,
    kind: FileKind::File,
    used: false,
};

fn id_of_slot(at: u32, generation: u32) -> u64 {
    (u64::from(generation) << GEN_SHIFT) | u64::from(at)
}

/// (slot, generation) of a number.
fn split(id: u64) -> Option<(usize, u32)> {
    let generation = u32::try_from(id >> GEN_SHIFT).ok()?;
    Some(((id & u64::from(u32::MAX)) as usize, generation))
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

    /// Freed slots are used again under new numbers; the old numbers
    /// find nothing. Memory per entry stays what the doc says.
    #[test]
    fn freed_slots_come_back_under_new_numbers() {
        assert_eq!(std::mem::size_of::<Slot>(), 56);
        let mut t = Inodes::new(0);
        let ids: Vec<u64> = (0..10_000).map(|n| t.looked_up(file(1, n))).collect();
        assert_eq!(t.len(), 10_000);
        for &id in &ids {
            t.forget(id, 1);
        }
        assert_eq!(t.len(), 0);
        let again: Vec<u64> = (0..10_000).map(|n| t.looked_up(file(2, n))).collect();
        assert_eq!(t.chunks.len(), 10_000usize.div_ceil(CHUNK), "slots reused");
        let old: std::collections::HashSet<u64> = ids.iter().copied().collect();
        assert!(again.iter().all(|id| !old.contains(id)), "a number reused");
        for (n, &id) in ids.iter().enumerate() {
            assert_eq!(t.get(id), None, "old number {id} still answers");
            assert_eq!(t.get(again[n]), Some(file(2, n as u64)));
        }
        // Every node still found by its key, through the hash index.
        for (n, &id) in again.iter().enumerate() {
            assert_eq!(t.looked_up(file(2, n as u64)), id);
        }
        assert_eq!(t.get(0), None);
        assert_eq!(t.get(u64::MAX), None);
    }
}
