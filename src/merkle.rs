//! The RFC 6962 / RFC 9162 Merkle tree hash (SHA-256), with nothing of the
//! store in it: leaf and interior hashes, the root of a tree kept
//! incrementally ([`Frontier`]), and inclusion and consistency proofs,
//! made from any source of subtree hashes ([`Subtrees`]) and checked with
//! the verification algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2.
//!
//! - leaf hash `SHA-256(0x00 ‖ leaf data)`, interior `SHA-256(0x01 ‖ left ‖ right)`;
//! - the hash of a tree of `n` leaves splits at the largest power of two
//!   below `n` (RFC 6962 §2.1); the empty tree's hash is `SHA-256("")`.
//!
//! Leaves are numbered from 0. A *perfect subtree* `(start, height)` holds
//! leaves `start .. start + 2^height`, `start` a multiple of `2^height`;
//! every hash a proof needs is a fold of such subtrees, so a store only has
//! to answer for those.

use crate::units::Hash32;
use sha2::{Digest, Sha256};

/// `SHA-256(0x00 ‖ data)`.
pub fn leaf_hash(data: &[u8]) -> Hash32 {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    Hash32(h.finalize().into())
}

/// `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash32, right: &Hash32) -> Hash32 {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left.0);
    h.update(right.0);
    Hash32(h.finalize().into())
}

/// The hash of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash32 {
    Hash32(Sha256::digest([]).into())
}

/// Anything that can tell the hash of a perfect subtree: leaves
/// `start .. start + 2^height` (`start` a multiple of `2^height`).
pub trait Subtrees {
    type Error;
    fn subtree(&self, start: u64, height: u32) -> Result<Hash32, Self::Error>;
}

/// The largest power of two strictly below `n` (`n >= 2`).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// The hash of leaves `start .. start + len`, where `start` is a multiple
/// of the power of two at or above `len` (every range RFC 6962's recursion
/// visits is): the perfect subtrees of `len`'s binary digits, folded from
/// the right.
pub fn range_hash<S: Subtrees>(src: &S, start: u64, len: u64) -> Result<Hash32, S::Error> {
    if len == 0 {
        return Ok(empty_root());
    }
    let mut parts = Vec::new();
    let mut at = start;
    for height in (0..64).rev() {
        if len & (1u64 << height) != 0 {
            parts.push(src.subtree(at, height)?);
            at += 1 << height;
        }
    }
    let mut acc = parts.pop().expect("len > 0");
    while let Some(left) = parts.pop() {
        acc = node_hash(&left, &acc);
    }
    Ok(acc)
}

/// The root of a tree of `size` leaves.
pub fn root<S: Subtrees>(src: &S, size: u64) -> Result<Hash32, S::Error> {
    range_hash(src, 0, size)
}

/// RFC 9162 §2.1.3.1: the inclusion proof of leaf `index` in the tree of
/// `size` leaves, bottom up. `None` when `index >= size`.
pub fn inclusion_proof<S: Subtrees>(
    src: &S,
    index: u64,
    size: u64,
) -> Result<Option<Vec<Hash32>>, S::Error> {
    if index >= size {
        return Ok(None);
    }
    let mut out = Vec::new();
    // (start, len): the subtree being descended; m: the leaf within it.
    let (mut start, mut len, mut m) = (0u64, size, index);
    let mut siblings = Vec::new();
    while len > 1 {
        let k = split(len);
        if m < k {
            siblings.push((start + k, len - k));
            len = k;
        } else {
            siblings.push((start, k));
            start += k;
            len -= k;
            m -= k;
        }
    }
    for (s, l) in siblings.into_iter().rev() {
        out.push(range_hash(src, s, l)?);
    }
    Ok(Some(out))
}

/// RFC 9162 §2.1.4.1: the consistency proof from the tree of `old` leaves
/// to the tree of `new` leaves. `None` unless `0 < old <= new`.
pub fn consistency_proof<S: Subtrees>(
    src: &S,
    old: u64,
    new: u64,
) -> Result<Option<Vec<Hash32>>, S::Error> {
    if old == 0 || old > new {
        return Ok(None);
    }
    // SUBPROOF(m, D[start..start+len], b), unrolled; hashes collected in
    // the order the recursion appends them (innermost first).
    let mut tail = Vec::new();
    let (mut start, mut len, mut m, mut whole) = (0u64, new, old, true);
    let mut head = None;
    loop {
        if m == len {
            if !whole {
                head = Some((start, len));
            }
            break;
        }
        let k = split(len);
        if m <= k {
            tail.push((start + k, len - k));
            len = k;
        } else {
            tail.push((start, k));
            start += k;
            len -= k;
            m -= k;
            whole = false;
        }
    }
    let mut out = Vec::new();
    if let Some((s, l)) = head {
        out.push(range_hash(src, s, l)?);
    }
    for (s, l) in tail.into_iter().rev() {
        out.push(range_hash(src, s, l)?);
    }
    Ok(Some(out))
}

/// Why a proof does not check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    #[error("leaf index {index} is not in a tree of {size} leaves")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("a consistency proof needs 0 < old size ({old}) <= new size ({new})")]
    BadSizes { old: u64, new: u64 },
    #[error("the proof has {found} hashes where {expected} were due")]
    WrongLength { found: usize, expected: usize },
    #[error("the proof does not lead to the root hash")]
    RootMismatch,
    #[error("the proof does not lead to the old root hash")]
    OldRootMismatch,
    #[error("the sizes are equal but the roots differ")]
    EqualSizeDifferentRoots,
    #[error("a consistency proof between equal sizes must be empty")]
    NonEmptyForEqualSizes,
}

/// RFC 9162 §2.1.3.2: check that `leaf` (a leaf hash) is leaf `index` of
/// the tree of `size` leaves whose root is `root`.
pub fn verify_inclusion(
    leaf: &Hash32,
    index: u64,
    size: u64,
    proof: &[Hash32],
    root: &Hash32,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s_n == 0 {
            return Err(ProofError::WrongLength {
                found: proof.len(),
                expected: inclusion_len(index, size),
            });
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(ProofError::WrongLength {
            found: proof.len(),
            expected: inclusion_len(index, size),
        });
    }
    if r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// How many hashes an inclusion proof of leaf `index` in `size` has.
fn inclusion_len(index: u64, size: u64) -> usize {
    let (mut len, mut m, mut n) = (size, index, 0);
    while len > 1 {
        let k = split(len);
        if m < k {
            len = k;
        } else {
            len -= k;
            m -= k;
        }
        n += 1;
    }
    n
}

/// RFC 9162 §2.1.4.2: check that the tree of `new` leaves with root
/// `new_root` extends the tree of `old` leaves with root `old_root`.
pub fn verify_consistency(
    old: u64,
    new: u64,
    proof: &[Hash32],
    old_root: &Hash32,
    new_root: &Hash32,
) -> Result<(), ProofError> {
    if old == 0 || old > new {
        return Err(ProofError::BadSizes { old, new });
    }
    if old == new {
        if !proof.is_empty() {
            return Err(ProofError::NonEmptyForEqualSizes);
        }
        if old_root != new_root {
            return Err(ProofError::EqualSizeDifferentRoots);
        }
        return Ok(());
    }
    let mut proof: Vec<Hash32> = proof.to_vec();
    if proof.is_empty() {
        return Err(ProofError::WrongLength {
            found: 0,
            expected: 1,
        });
    }
    // If old is a power of two, the old root is the first node.
    if old.is_power_of_two() {
        proof.insert(0, *old_root);
    }
    let (mut f_n, mut s_n) = (old - 1, new - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let mut fr = proof[0];
    let mut sr = proof[0];
    for c in &proof[1..] {
        if s_n == 0 {
            return Err(ProofError::WrongLength {
                found: proof.len(),
                expected: proof.len() - 1,
            });
        }
        if f_n & 1 == 1 || f_n == s_n {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(ProofError::WrongLength {
            found: proof.len(),
            expected: proof.len() + 1,
        });
    }
    if fr != *old_root {
        return Err(ProofError::OldRootMismatch);
    }
    if sr != *new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// A tree kept incrementally: the roots of the perfect subtrees that the
/// binary digits of its size make, largest first. Appending a leaf costs
/// O(log n) hashes (amortised O(1)); every subtree completed on the way is
/// handed to the caller, who may store it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    nodes: Vec<Hash32>,
}

impl Frontier {
    /// The frontier of a tree of `size` leaves, from its subtrees.
    pub fn at<S: Subtrees>(src: &S, size: u64) -> Result<Frontier, S::Error> {
        let mut nodes = Vec::new();
        let mut at = 0u64;
        for height in (0..64).rev() {
            if size & (1u64 << height) != 0 {
                nodes.push(src.subtree(at, height)?);
                at += 1 << height;
            }
        }
        Ok(Frontier { size, nodes })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Add the leaf whose hash is `leaf`; `completed(start, height, hash)`
    /// is called for every perfect subtree of height >= 1 this completes.
    pub fn push(&mut self, leaf: Hash32, mut completed: impl FnMut(u64, u32, &Hash32)) {
        let mut h = leaf;
        let mut height = 0u32;
        let mut s = self.size;
        while s & 1 == 1 {
            let left = self.nodes.pop().expect("a set bit has its subtree");
            h = node_hash(&left, &h);
            height += 1;
            s >>= 1;
            let start = (self.size + 1) - (1u64 << height);
            completed(start, height, &h);
        }
        self.nodes.push(h);
        self.size += 1;
    }

    /// The root hash of the tree so far.
    pub fn root(&self) -> Hash32 {
        let mut it = self.nodes.iter().rev();
        let Some(last) = it.next() else {
            return empty_root();
        };
        it.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Leaves held in memory: the reference every other source must match
    /// (also the stored tree's, in `store::index::tree`).
    pub(crate) struct Leaves(pub(crate) Vec<Hash32>);

    impl Subtrees for Leaves {
        type Error = std::convert::Infallible;
        fn subtree(&self, start: u64, height: u32) -> Result<Hash32, Self::Error> {
            Ok(reference_root(
                &self.0[start as usize..(start + (1 << height)) as usize],
            ))
        }
    }

    /// RFC 6962 §2.1 MTH, written as the RFC writes it.
    fn reference_root(leaves: &[Hash32]) -> Hash32 {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
            }
        }
    }

    fn hex(s: &str) -> Hash32 {
        let mut b = [0u8; 32];
        for (i, byte) in b.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        Hash32(b)
    }

    /// The leaf inputs of the Certificate Transparency reference tests
    /// (RFC 6962 implementations share them).
    fn ct_leaves() -> Vec<Hash32> {
        let inputs: [&[u8]; 8] = [
            b"",
            b"\x00",
            b"\x10",
            b"\x20\x21",
            b"\x30\x31",
            b"\x40\x41\x42\x43",
            b"\x50\x51\x52\x53\x54\x55\x56\x57",
            b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
        ];
        inputs.iter().map(|d| leaf_hash(d)).collect()
    }

    #[test]
    fn roots_match_the_certificate_transparency_vectors() {
        let want = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        let leaves = Leaves(ct_leaves());
        let mut f = Frontier::default();
        for (i, w) in want.iter().enumerate() {
            f.push(leaves.0[i], |_, _, _| {});
            assert_eq!(
                root(&leaves, i as u64 + 1).unwrap(),
                hex(w),
                "size {}",
                i + 1
            );
            assert_eq!(f.root(), hex(w), "incremental, size {}", i + 1);
        }
        assert_eq!(
            empty_root(),
            hex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
    }

    #[test]
    fn inclusion_proofs_match_the_certificate_transparency_vectors() {
        let leaves = Leaves(ct_leaves());
        // (index, size, proof) from the CT reference tests.
        let cases: [(u64, u64, &[&str]); 4] = [
            (0, 1, &[]),
            (
                0,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                3,
                &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
            ),
        ];
        for (index, size, want) in cases {
            let got = inclusion_proof(&leaves, index, size).unwrap().unwrap();
            let want: Vec<Hash32> = want.iter().map(|s| hex(s)).collect();
            assert_eq!(got, want, "leaf {index} of {size}");
            let r = root(&leaves, size).unwrap();
            verify_inclusion(&leaves.0[index as usize], index, size, &got, &r).unwrap();
        }
    }

    #[test]
    fn consistency_proofs_match_the_certificate_transparency_vectors() {
        let leaves = Leaves(ct_leaves());
        let cases: [(u64, u64, &[&str]); 3] = [
            (1, 1, &[]),
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
        ];
        for (old, new, want) in cases {
            let got = consistency_proof(&leaves, old, new).unwrap().unwrap();
            let want: Vec<Hash32> = want.iter().map(|s| hex(s)).collect();
            assert_eq!(got, want, "{old} -> {new}");
        }
    }

    #[test]
    fn every_proof_up_to_70_leaves_checks_and_every_altered_one_fails() {
        let leaves = Leaves((0..70u32).map(|i| leaf_hash(&i.to_le_bytes())).collect());
        let mut f = Frontier::default();
        let mut completed = Vec::new();
        for n in 1..=70u64 {
            f.push(leaves.0[n as usize - 1], |s, h, x| {
                completed.push((s, h, *x))
            });
            let r = reference_root(&leaves.0[..n as usize]);
            assert_eq!(f.root(), r);
            assert_eq!(Frontier::at(&leaves, n).unwrap(), f);
            for i in 0..n {
                let p = inclusion_proof(&leaves, i, n).unwrap().unwrap();
                let leaf = leaves.0[i as usize];
                verify_inclusion(&leaf, i, n, &p, &r).unwrap();
                assert!(
                    verify_inclusion(&leaves.0[((i + 1) % 70) as usize], i, n, &p, &r).is_err()
                );
                if n > 1 {
                    assert!(verify_inclusion(&leaf, (i + 1) % n, n, &p, &r).is_err());
                }
                for j in 0..p.len() {
                    let mut bad = p.clone();
                    bad[j].0[7] ^= 1;
                    assert!(verify_inclusion(&leaf, i, n, &bad, &r).is_err());
                }
                let mut short = p.clone();
                if short.pop().is_some() {
                    assert!(verify_inclusion(&leaf, i, n, &short, &r).is_err());
                }
                let mut long = p.clone();
                long.push(r);
                assert!(verify_inclusion(&leaf, i, n, &long, &r).is_err());
            }
            for m in 1..=n {
                let p = consistency_proof(&leaves, m, n).unwrap().unwrap();
                let old = reference_root(&leaves.0[..m as usize]);
                verify_consistency(m, n, &p, &old, &r).unwrap();
                for j in 0..p.len() {
                    let mut bad = p.clone();
                    bad[j].0[0] ^= 0x80;
                    assert!(verify_consistency(m, n, &bad, &old, &r).is_err());
                }
                if m < n {
                    let mut forked = leaves.0[..m as usize].to_vec();
                    forked[0].0[0] ^= 1;
                    let other = reference_root(&forked);
                    assert!(verify_consistency(m, n, &p, &other, &r).is_err());
                }
            }
        }
        // Every completed subtree handed out is the reference hash of its leaves.
        for (s, h, x) in completed {
            assert_eq!(
                x,
                reference_root(&leaves.0[s as usize..(s + (1 << h)) as usize])
            );
        }
    }
}
