//! The Merkle tree over the records (RFC 6962/9162, see [`crate::merkle`]):
//! leaf `s - 1` is record `s`, its leaf data the record's canonical content
//! ([`format::RecordHeader::canonical`]): sequence number, time, kind,
//! flags, byte range and content hash, never the content itself.
//!
//! # Stored hashes (`index/tree/L<k>`, derived data like all of `index/`)
//!
//! The hashes of the C2SP tlog-tiles tiles of level `k >= 1`: `L<k>` holds,
//! in order, the hash of every complete perfect subtree of height `8k`
//! (`2^8k` leaves), one 36-byte entry each:
//!
//! ```text
//!  0                  32        36
//!  +------------------+---------+
//!  | subtree hash     | crc32c  |   crc32c(k u8 ‖ j u64 ‖ hash) for entry j
//!  +------------------+---------+
//! ```
//!
//! Tile `t` of level `k` in tlog-tiles terms is entries `256t .. 256t+256`
//! of `L<k>`; level 0 (the leaf hashes) is not stored: it is recomputed
//! from the record headers in the log, at most 255 of them per proof.
//! That keeps the stored hashes near 0.14 bytes per record.
//!
//! `L<k>` may hold entries past what the manifest promises (a writer that
//! stopped between writing them and installing its manifest); only entries
//! `j < indexed_through >> 8k` are used, and the writer cuts the rest at
//! open. The writer keeps the tree incrementally ([`Frontier`]): each
//! record costs O(log n) hashes in memory, and the completed subtrees are
//! written at the next index write-out, before its manifest. Deleting
//! `index/` rebuilds them with the rest.
//!
//! Any perfect subtree of height `h` is one entry (h a multiple of 8), at
//! most 128 consecutive entries of `L<h/8>`, or at most 255 leaves, so a
//! proof costs O(log n) small reads.

use super::Index;
use crate::merkle::{self, Frontier, Subtrees};
use crate::store::error::{IoContext, Result, StoreError};
use crate::store::files;
use crate::store::format;
use crate::store::layout;
use crate::units::{Hash32, Seq};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Tree heights per stored level: tlog-tiles' tile height.
pub const TILE_HEIGHT: u32 = 8;
/// Bytes per stored hash.
pub const TREE_ENTRY_LEN: u64 = 36;
/// Levels 1..LEVELS (heights 8..56) can be stored.
const LEVELS: usize = 8;

/// The file holding level `k`'s hashes.
pub fn level_file_name(k: u32) -> String {
    format!("L{k}")
}

fn entry_crc(k: u32, j: u64, h: &Hash32) -> u32 {
    let mut b = [0u8; 41];
    b[0] = k as u8;
    b[1..9].copy_from_slice(&j.to_le_bytes());
    b[9..].copy_from_slice(&h.0);
    crc32c::crc32c(&b)
}

/// Encode stored entry `j` of level `k`.
pub fn encode_entry(k: u32, j: u64, h: &Hash32) -> [u8; TREE_ENTRY_LEN as usize] {
    let mut e = [0u8; TREE_ENTRY_LEN as usize];
    e[..32].copy_from_slice(&h.0);
    e[32..].copy_from_slice(&entry_crc(k, j, h).to_le_bytes());
    e
}

/// Decode stored entry `j` of level `k`; `None` if its checksum fails.
pub fn decode_entry(k: u32, j: u64, e: &[u8]) -> Option<Hash32> {
    let h = Hash32(e[..32].try_into().unwrap());
    (u32::from_le_bytes(e[32..36].try_into().unwrap()) == entry_crc(k, j, &h)).then_some(h)
}

/// The tree's files and, for the writer, what it holds in memory.
#[derive(Default)]
pub(super) struct Tree {
    /// Level files, opened on first use (reset when the manifest is
    /// reloaded: `index/` may have been rebuilt).
    files: [OnceLock<File>; LEVELS],
    /// The writer's frontier at its head (`None` for readers, and for the
    /// writer while it opens).
    frontier: Option<Frontier>,
    /// The writer's completed subtrees not yet written: `pending[k]` holds
    /// entries `pending_start[k]..` of level `k`.
    pending: [Vec<Hash32>; LEVELS],
    pending_start: [u64; LEVELS],
}

impl Tree {
    pub(super) fn reset_files(&mut self) {
        self.files = Default::default();
    }

    /// Take in the leaf of the record just applied (the writer's).
    pub(super) fn push(&mut self, leaf: Hash32) {
        let Some(f) = &mut self.frontier else {
            return;
        };
        let pending = &mut self.pending;
        f.push(leaf, |_, height, h| {
            if height % TILE_HEIGHT == 0 {
                pending[(height / TILE_HEIGHT) as usize].push(*h);
            }
        });
    }
}

fn tree_dir(dir: &Path) -> PathBuf {
    dir.join(layout::INDEX_DIR).join(layout::TREE_DIR)
}

/// The index as a source of subtree hashes.
struct View<'a>(&'a Index);

impl Subtrees for View<'_> {
    type Error = StoreError;
    fn subtree(&self, start: u64, height: u32) -> Result<Hash32> {
        self.0.subtree(start, height)
    }
}

impl Index {
    /// Entries of level `k` the manifest promises.
    fn promised(&self, k: u32) -> u64 {
        self.manifest.indexed_through.0 >> (TILE_HEIGHT * k)
    }

    fn level_file(&self, k: u32) -> Result<&File> {
        let path = tree_dir(&self.dir).join(level_file_name(k));
        let cell = &self.tree.files[k as usize];
        if let Some(f) = cell.get() {
            return Ok(f);
        }
        let f = File::open(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                StoreError::corrupted(
                    &path,
                    "missing, but the index manifest promises its hashes; delete index/ to \
                     have it rebuilt from the log",
                )
            } else {
                StoreError::io(&path, e)
            }
        })?;
        Ok(cell.get_or_init(|| f))
    }

    /// Entries `j0 .. j0 + count` of level `k`, from the file (the manifest
    /// promises them) or the writer's memory; `None` if some are neither.
    fn stored_nodes(&self, k: u32, j0: u64, count: u64) -> Result<Option<Vec<Hash32>>> {
        let promised = self.promised(k);
        if j0 + count <= promised {
            let path = tree_dir(&self.dir).join(level_file_name(k));
            let mut buf = vec![0u8; (count * TREE_ENTRY_LEN) as usize];
            self.level_file(k)?
                .read_exact_at(&mut buf, j0 * TREE_ENTRY_LEN)
                .map_err(|e| {
                    if e.kind() == std::io::ErrorKind::UnexpectedEof {
                        StoreError::corrupted(
                            &path,
                            format!(
                                "shorter than the {promised} hashes the manifest promises; \
                                 delete index/ to have it rebuilt from the log"
                            ),
                        )
                    } else {
                        StoreError::io(&path, e)
                    }
                })?;
            let mut out = Vec::with_capacity(count as usize);
            for (i, e) in buf.chunks_exact(TREE_ENTRY_LEN as usize).enumerate() {
                let j = j0 + i as u64;
                out.push(decode_entry(k, j, e).ok_or_else(|| {
                    StoreError::corrupted(
                        &path,
                        format!(
                            "hash {j} fails its checksum; delete index/ to have it rebuilt \
                             from the log"
                        ),
                    )
                })?);
            }
            return Ok(Some(out));
        }
        let (ps, pend) = (
            self.tree.pending_start[k as usize],
            &self.tree.pending[k as usize],
        );
        if self.tree.frontier.is_some() && j0 >= ps && j0 + count <= ps + pend.len() as u64 {
            let a = (j0 - ps) as usize;
            return Ok(Some(pend[a..a + count as usize].to_vec()));
        }
        Ok(None)
    }

    /// The leaf hash of record `seq`.
    fn leaf(&self, seq: Seq) -> Result<Hash32> {
        let it = self.manifest.indexed_through.0;
        if seq.0 > it {
            let i = (seq.0 - it - 1) as usize;
            return match self.tail_leaves.get(i) {
                Some(l) => Ok(*l),
                None => Err(StoreError::NoSuchState {
                    seq,
                    head: self.head.seq,
                }),
            };
        }
        Ok(self.record_header(seq)?.leaf_hash())
    }

    /// The header of record `seq` with its content hash, read from the
    /// log's head of the record without its checksum (the record was
    /// checked when it was taken in; `verify` checks it again); a format 2
    /// record that does not store its content hash is read whole and the
    /// hash rebuilt.
    pub fn record_header(&self, seq: Seq) -> Result<format::RecordHeader> {
        let offset = self.offset_of(seq)?;
        let mut b = [0u8; format::HEAD_READ_LEN];
        let n = (self.log_end.saturating_sub(offset) as usize).min(b.len());
        self.log
            .read_exact_at(&mut b[..n], offset)
            .at(&self.log_path)?;
        match format::decode_head_unchecked(&b[..n]) {
            Some(h) if h.seq == seq && h.content_hash.is_some() => Ok(h),
            Some(h) if h.seq == seq => self.read_record(seq, &mut Vec::new()),
            _ => Err(StoreError::corrupted(
                &self.log_path,
                format!("record {seq} at byte {offset}: not a record header"),
            )),
        }
    }

    /// The hash of leaves `start .. start + 2^height`.
    fn subtree(&self, start: u64, height: u32) -> Result<Hash32> {
        if height >= TILE_HEIGHT {
            let k = height / TILE_HEIGHT;
            let count = 1u64 << (height - k * TILE_HEIGHT);
            let j0 = start >> (k * TILE_HEIGHT);
            if let Some(mut v) = self.stored_nodes(k, j0, count)? {
                while v.len() > 1 {
                    v = v
                        .chunks_exact(2)
                        .map(|p| merkle::node_hash(&p[0], &p[1]))
                        .collect();
                }
                return Ok(v[0]);
            }
        }
        if height == 0 {
            return self.leaf(Seq(start + 1));
        }
        let half = 1u64 << (height - 1);
        Ok(merkle::node_hash(
            &self.subtree(start, height - 1)?,
            &self.subtree(start + half, height - 1)?,
        ))
    }

    fn check_tree_size(&self, size: u64) -> Result<()> {
        if size > self.head.seq.0 {
            return Err(StoreError::NoSuchState {
                seq: Seq(size),
                head: self.head.seq,
            });
        }
        Ok(())
    }

    /// The root hash of the tree of the first `size` records.
    pub fn tree_root(&self, size: u64) -> Result<Hash32> {
        self.check_tree_size(size)?;
        if let Some(f) = &self.tree.frontier {
            if f.size() == size {
                return Ok(f.root());
            }
        }
        merkle::root(&View(self), size)
    }

    /// The inclusion proof of record `seq` in the tree of `size` records.
    pub fn inclusion_proof(&self, seq: Seq, size: u64) -> Result<Vec<Hash32>> {
        self.check_tree_size(size)?;
        if seq.0 == 0 || seq.0 > size {
            return Err(StoreError::NoSuchState {
                seq,
                head: Seq(size),
            });
        }
        Ok(merkle::inclusion_proof(&View(self), seq.0 - 1, size)?.expect("index < size"))
    }

    /// The consistency proof from the tree of `old` records to that of `new`.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash32>> {
        self.check_tree_size(new)?;
        merkle::consistency_proof(&View(self), old, new)?.ok_or(StoreError::NoSuchState {
            seq: Seq(old),
            head: Seq(new),
        })
    }

    /// The writer's part of opening: level files cut to what the manifest
    /// promises, the frontier at the manifest's point from the stored
    /// hashes, then the records after it.
    pub(super) fn prepare_tree(&mut self) -> Result<()> {
        let tdir = tree_dir(&self.dir);
        files::create_dir_private(&tdir)?;
        self.tree.reset_files();
        for k in 1..LEVELS as u32 {
            let path = tdir.join(level_file_name(k));
            let keep = self.promised(k) * TREE_ENTRY_LEN;
            match std::fs::OpenOptions::new().write(true).open(&path) {
                Ok(f) => {
                    if f.metadata().at(&path)?.len() > keep {
                        f.set_len(keep).at(&path)?;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io(&path, e)),
            }
            self.tree.pending_start[k as usize] = self.promised(k);
            self.tree.pending[k as usize].clear();
        }
        let it = self.manifest.indexed_through.0;
        let f = Frontier::at(&View(self), it)?;
        self.tree.frontier = Some(f);
        let leaves = self.tail_leaves.clone();
        for l in leaves {
            self.tree.push(l);
        }
        Ok(())
    }

    /// After a failed fsync rewound the head: drop the subtrees past it and
    /// rebuild the frontier.
    pub(super) fn rewind_tree(&mut self) -> Result<()> {
        if self.tree.frontier.is_none() {
            return Ok(());
        }
        let head = self.head.seq.0;
        for k in 1..LEVELS {
            let keep =
                (head >> (TILE_HEIGHT * k as u32)).saturating_sub(self.tree.pending_start[k]);
            self.tree.pending[k].truncate(keep as usize);
        }
        self.tree.frontier = None;
        let f = Frontier::at(&View(self), head)?;
        self.tree.frontier = Some(f);
        Ok(())
    }

    /// Write the completed subtrees held in memory to their level files and
    /// sync them; done before the manifest that promises them is installed.
    pub(super) fn write_tree(&mut self) -> Result<()> {
        let tdir = tree_dir(&self.dir);
        for k in 1..LEVELS {
            let pend = &self.tree.pending[k];
            if pend.is_empty() {
                continue;
            }
            let start = self.tree.pending_start[k];
            let mut bytes = Vec::with_capacity(pend.len() * TREE_ENTRY_LEN as usize);
            for (i, h) in pend.iter().enumerate() {
                bytes.extend_from_slice(&encode_entry(k as u32, start + i as u64, h));
            }
            let path = tdir.join(level_file_name(k as u32));
            let f = files::open_rw_private(&path)?;
            f.write_all_at(&bytes, start * TREE_ENTRY_LEN).at(&path)?;
            f.sync_data().at(&path)?;
            self.count_written(bytes.len() as u64);
        }
        Ok(())
    }

    /// After a manifest promising them was installed: the written subtrees
    /// leave memory.
    pub(super) fn tree_written(&mut self) {
        for k in 1..LEVELS {
            self.tree.pending_start[k] += self.tree.pending[k].len() as u64;
            self.tree.pending[k].clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::merkle::{self, tests::Leaves};
    use crate::store::{layout, Op, OpFlags, Store, Writer, WriterOptions};
    use crate::units::{Seq, TimeNs};

    fn record(w: &mut Writer, i: u64) {
        let op = match i % 3 {
            0 => Op::Flush,
            1 => Op::Zero {
                offset_bytes: (i % 64) * 4096,
                length_bytes: 4096,
            },
            _ => Op::Write {
                offset_bytes: (i % 64) * 4096,
                data: &[i as u8; 512],
            },
        };
        w.append(TimeNs(1_000 + i as i64), op, OpFlags::default())
            .unwrap();
    }

    fn leaves(s: &Store) -> Leaves {
        let n = s.head().seq.0;
        Leaves(
            (1..=n)
                .map(|q| merkle::leaf_hash(&s.leaf_data(Seq(q)).unwrap()))
                .collect(),
        )
    }

    /// The sizes worth checking in a tree of `n`: edges of the stored levels.
    fn sizes(n: u64) -> Vec<u64> {
        let mut v: Vec<u64> = vec![1, 2, 3, 255, 256, 257, 511, 512, 513, 65535, 65536, 65537];
        v.extend([n - 1, n, n / 2, n / 3 + 7]);
        v.retain(|&x| x >= 1 && x <= n);
        v
    }

    /// Roots and proofs from the stored hashes (the writer's and a
    /// reader's, across index write-outs, a reopen and a rebuild of a
    /// deleted index/) equal the reference computed from the leaves.
    #[test]
    fn stored_hashes_give_the_reference_roots_and_proofs() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("s");
        Writer::init(&store, 1 << 20, 4096).unwrap();
        // A small flush threshold: many write-outs, hashes stored in pieces.
        let opts = WriterOptions {
            flush_threshold: 1000,
        };
        let n1 = 66_000u64;
        let mut w = Writer::open_with(&store, opts).unwrap();
        let mut roots = Vec::new();
        for i in 0..n1 {
            record(&mut w, i);
            if [1, 256, 257, 5000, 65536].contains(&(i + 1)) {
                roots.push((i + 1, w.tree_root().unwrap()));
            }
        }
        let head_root = w.tree_root().unwrap();
        // A reader beside the writer, with records past the manifest.
        let s = Store::open(&store).unwrap();
        let reference = leaves(&s);
        assert_eq!(s.tree_root(Seq(n1)).unwrap(), head_root);
        for (size, r) in &roots {
            assert_eq!(merkle::root(&reference, *size).unwrap(), *r);
            assert_eq!(s.tree_root(Seq(*size)).unwrap(), *r);
        }
        w.close().unwrap();
        assert!(store.join("index/tree/L1").exists() && store.join("index/tree/L2").exists());
        assert_eq!(
            std::fs::metadata(store.join("index/tree/L1"))
                .unwrap()
                .len(),
            (n1 >> 8) * super::TREE_ENTRY_LEN
        );
        let check = |s: &Store, reference: &Leaves| {
            let n = s.head().seq.0;
            for size in sizes(n) {
                let r = merkle::root(reference, size).unwrap();
                assert_eq!(s.tree_root(Seq(size)).unwrap(), r, "root of {size}");
                for idx in [0, size / 2, size - 1, 255.min(size - 1), 256.min(size - 1)] {
                    let p = s.inclusion_proof(Seq(idx + 1), Seq(size)).unwrap();
                    assert_eq!(
                        p,
                        merkle::inclusion_proof(reference, idx, size)
                            .unwrap()
                            .unwrap()
                    );
                    merkle::verify_inclusion(&reference.0[idx as usize], idx, size, &p, &r)
                        .unwrap();
                }
                for old in [1, size / 2 + 1, 256.min(size)] {
                    let p = s.consistency_proof(Seq(old), Seq(size)).unwrap();
                    let or = merkle::root(reference, old).unwrap();
                    merkle::verify_consistency(old, size, &p, &or, &r).unwrap();
                }
            }
        };
        let s = Store::open(&store).unwrap();
        check(&s, &reference);
        // Reopened, the writer goes on from the stored frontier.
        let mut w = Writer::open_with(&store, opts).unwrap();
        for i in n1..n1 + 300 {
            record(&mut w, i);
        }
        let root2 = w.tree_root().unwrap();
        w.close().unwrap();
        let s = Store::open(&store).unwrap();
        let reference = leaves(&s);
        assert_eq!(merkle::root(&reference, n1 + 300).unwrap(), root2);
        check(&s, &reference);
        // index/ deleted: rebuilt, tree included, with the same hashes.
        let l2 = std::fs::read(store.join("index/tree/L1")).unwrap();
        std::fs::remove_dir_all(store.join(layout::INDEX_DIR)).unwrap();
        let s = Store::open(&store).unwrap();
        assert_eq!(
            s.tree_root(Seq(n1 + 300)).unwrap(),
            root2,
            "reader, no index"
        );
        Writer::open(&store).unwrap().close().unwrap();
        assert_eq!(std::fs::read(store.join("index/tree/L1")).unwrap(), l2);
        let s = Store::open(&store).unwrap();
        check(&s, &reference);
    }

    /// A damaged stored hash is an error naming the file, never a wrong root.
    #[test]
    fn a_damaged_stored_hash_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("s");
        Writer::init(&store, 1 << 20, 4096).unwrap();
        let mut w = Writer::open(&store).unwrap();
        for i in 0..600 {
            record(&mut w, i);
        }
        w.close().unwrap();
        let p = store.join("index/tree/L1");
        let mut b = std::fs::read(&p).unwrap();
        b[40] ^= 1;
        std::fs::write(&p, &b).unwrap();
        let s = Store::open(&store).unwrap();
        let e = s.tree_root(Seq(600)).unwrap_err().to_string();
        assert!(e.contains("L1") && e.contains("checksum"), "{e}");
        assert!(s.tree_root(Seq(255)).is_ok());
    }
}
