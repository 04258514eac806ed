//! Proof bundles: what `diskhist prove` hands an auditor and `diskhist
//! audit` checks with no store and no disk content.
//!
//! # Format (text, UTF-8, each line ending in `\n`, in this order)
//!
//! ```text
//! diskhist-proof-bundle v1
//! origin diskhist/0123…ef          the checkpoint's origin, size and root:
//! size 912                         the bundle answers that checkpoint only
//! root <base64 32 bytes>
//! sample 8 <seed, hex>             optional: the records are the seed's sample
//! old <base64 of a signed note>    optional: an older checkpoint, and the
//! consistency <base64> …           RFC 9162 consistency proof from it
//! record 17 <base64 66 bytes>      a record's leaf data (its canonical
//! inclusion <base64> …             header), its inclusion proof bottom up,
//! content <base64>                 optionally the bytes it wrote / its name
//! …                                (record, inclusion[, content]) repeated
//! end
//! ```
//!
//! Base64 is the standard alphabet, padded and canonical (no stray bits).
//!
//! Leaf data: `seq` u64, `time_ns` i64, `kind` u8 (1 write, 2 zero, 3 trim,
//! 4 flush, 5 mark), `flags` u8, `offset_bytes` u64, `length_bytes` u64,
//! `content_hash` (BLAKE3 of the content; zeros when there is none),
//! little-endian, 66 bytes; leaf hash SHA-256(0x00 ‖ leaf data); record `s`
//! is leaf `s - 1`.
//!
//! The sample of `K` records from seed `S` in a tree of `N` records: for
//! `i = 0, 1, …`, `x = SHA-256("diskhist-sample\0" ‖ S ‖ i as u64
//! big-endian)`, record `(first 8 bytes of x, big-endian) mod N + 1`,
//! skipping records already chosen, until `K` (at most `N`) are chosen,
//! in that order; they are the bundle's last `K` records (records asked
//! for by number come first). The auditor recomputes it: the holder of the
//! store cannot choose which records are audited.

use super::checkpoint::SignedCheckpoint;
use super::note::Verifier;
use super::SealError;
use crate::merkle;
use crate::store::{RecordKind, RecordLeaf, Store, LEAF_DATA_LEN};
use crate::units::{Hash32, Seq};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use sha2::{Digest, Sha256};

const MAGIC: &str = "diskhist-proof-bundle v1";

/// The records of the sample of `k` from `seed` in a tree of `n` records.
pub fn sample(seed: &[u8], k: u64, n: u64) -> Vec<Seq> {
    let k = k.min(n);
    let mut chosen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(k as usize);
    let mut i = 0u64;
    while (out.len() as u64) < k {
        let mut h = Sha256::new();
        h.update(b"diskhist-sample\0");
        h.update(seed);
        h.update(i.to_be_bytes());
        let x = h.finalize();
        let s = u64::from_be_bytes(x[..8].try_into().unwrap()) % n + 1;
        if chosen.insert(s) {
            out.push(Seq(s));
        }
        i += 1;
    }
    out
}

/// One record in a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleRecord {
    pub seq: Seq,
    pub leaf: Vec<u8>,
    pub inclusion: Vec<Hash32>,
    pub content: Option<Vec<u8>>,
}

/// A proof bundle (see the module docs for its text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    pub origin: String,
    pub size: u64,
    pub root: Hash32,
    pub sample: Option<(u64, Vec<u8>)>,
    pub old: Option<(String, Vec<Hash32>)>,
    pub records: Vec<BundleRecord>,
}

fn hashes(line: &mut String, hs: &[Hash32]) {
    for h in hs {
        line.push(' ');
        line.push_str(&B64.encode(h.0));
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Bundle {
    pub fn to_text(&self) -> String {
        let mut t = format!(
            "{MAGIC}\norigin {}\nsize {}\nroot {}\n",
            self.origin,
            self.size,
            B64.encode(self.root.0)
        );
        if let Some((k, seed)) = &self.sample {
            t.push_str(&format!("sample {k} {}\n", hex(seed)));
        }
        if let Some((old, proof)) = &self.old {
            t.push_str(&format!("old {}\n", B64.encode(old.as_bytes())));
            let mut l = "consistency".to_string();
            hashes(&mut l, proof);
            t.push_str(&l);
            t.push('\n');
        }
        for r in &self.records {
            t.push_str(&format!("record {} {}\n", r.seq.0, B64.encode(&r.leaf)));
            let mut l = "inclusion".to_string();
            hashes(&mut l, &r.inclusion);
            t.push_str(&l);
            t.push('\n');
            if let Some(c) = &r.content {
                t.push_str(&format!("content {}\n", B64.encode(c)));
            }
        }
        t.push_str("end\n");
        t
    }

    pub fn parse(text: &str) -> Result<Bundle, SealError> {
        let mut lines = text.split_inclusive('\n').enumerate().peekable();
        let bad =
            |n: usize, why: &str| SealError::MalformedBundle(format!("line {}: {why}", n + 1));
        let mut next = |want: &str| -> Result<(usize, Vec<String>), SealError> {
            let (n, l) = lines.next().ok_or_else(|| {
                SealError::MalformedBundle(format!("ends before its {want:?} line (cut short?)"))
            })?;
            let l = l
                .strip_suffix('\n')
                .ok_or_else(|| bad(n, "the last line does not end in a newline (cut short?)"))?;
            Ok((n, l.split(' ').map(str::to_string).collect()))
        };
        let (n, l) = next("magic")?;
        if l.join(" ") != MAGIC {
            return Err(bad(
                n,
                &format!("not a proof bundle (want {MAGIC:?} first)"),
            ));
        }
        let field = |(n, l): (usize, Vec<String>), key: &str| -> Result<String, SealError> {
            if l.len() != 2 || l[0] != key {
                return Err(bad(n, &format!("want `{key} VALUE`")));
            }
            Ok(l[1].clone())
        };
        let b64hash = |n: usize, s: &str| -> Result<Hash32, SealError> {
            B64.decode(s)
                .ok()
                .and_then(|v| v.try_into().ok())
                .map(Hash32)
                .ok_or_else(|| bad(n, &format!("{s:?} is not a base64 hash")))
        };
        let origin = field(next("origin")?, "origin")?;
        let (sn, sl) = next("size")?;
        let size = field((sn, sl), "size")?
            .parse()
            .map_err(|_| bad(sn, "the size is not a number"))?;
        let (rn, rl) = next("root")?;
        let root = b64hash(rn, &field((rn, rl), "root")?)?;
        let mut b = Bundle {
            origin,
            size,
            root,
            sample: None,
            old: None,
            records: Vec::new(),
        };
        let mut pending_old: Option<String> = None;
        loop {
            let (n, l) = next("end")?;
            match l[0].as_str() {
                "end" if l.len() == 1 => break,
                "sample" if l.len() == 3 && b.records.is_empty() && b.sample.is_none() => {
                    let k = l[1]
                        .parse()
                        .map_err(|_| bad(n, "the sample size is not a number"))?;
                    let seed = unhex(&l[2]).ok_or_else(|| bad(n, "the seed is not hex"))?;
                    b.sample = Some((k, seed));
                }
                "old" if l.len() == 2 && b.records.is_empty() && b.old.is_none() => {
                    let raw = B64
                        .decode(&l[1])
                        .ok()
                        .and_then(|v| String::from_utf8(v).ok())
                        .ok_or_else(|| bad(n, "the old checkpoint is not base64 text"))?;
                    pending_old = Some(raw);
                }
                "consistency" if pending_old.is_some() => {
                    let proof = l[1..]
                        .iter()
                        .map(|s| b64hash(n, s))
                        .collect::<Result<_, _>>()?;
                    b.old = Some((pending_old.take().unwrap(), proof));
                }
                "record" if l.len() == 3 && pending_old.is_none() => {
                    let seq = l[1]
                        .parse()
                        .map_err(|_| bad(n, "the record number is not a number"))?;
                    let leaf = B64
                        .decode(&l[2])
                        .map_err(|_| bad(n, "the leaf data is not base64"))?;
                    let (m, il) = next("inclusion")?;
                    if il[0] != "inclusion" {
                        return Err(bad(m, "want the record's `inclusion` line"));
                    }
                    let inclusion = il[1..]
                        .iter()
                        .map(|s| b64hash(m, s))
                        .collect::<Result<_, _>>()?;
                    b.records.push(BundleRecord {
                        seq: Seq(seq),
                        leaf,
                        inclusion,
                        content: None,
                    });
                }
                "content" if l.len() == 2 => {
                    let r = b
                        .records
                        .last_mut()
                        .filter(|r| r.content.is_none())
                        .ok_or_else(|| bad(n, "content without a record before it"))?;
                    r.content = Some(
                        B64.decode(&l[1])
                            .map_err(|_| bad(n, "the content is not base64"))?,
                    );
                }
                other => return Err(bad(n, &format!("unexpected {other:?} line"))),
            }
        }
        if let Some((n, _)) = lines.next() {
            return Err(bad(n, "text after the `end` line"));
        }
        if pending_old.is_some() {
            return Err(SealError::MalformedBundle(
                "an `old` checkpoint without its `consistency` line".into(),
            ));
        }
        Ok(b)
    }
}

/// What to prove.
#[derive(Debug, Clone, Default)]
pub struct ProveRequest {
    /// Records chosen by number (and by time, resolved by the caller).
    pub records: Vec<Seq>,
    /// `K` records sampled from a seed.
    pub sample: Option<(u64, Vec<u8>)>,
    /// An older checkpoint the new one must extend.
    pub old: Option<SignedCheckpoint>,
    /// Disclose each record's content.
    pub with_content: bool,
}

/// Check that the store's tree at the checkpoint's size has its root, so
/// that proofs made from it check against the checkpoint.
pub fn check_store_holds(store: &Store, c: &SignedCheckpoint) -> Result<(), SealError> {
    let origin = super::origin(store);
    let cp = &c.checkpoint;
    if cp.origin != origin {
        return Err(SealError::OtherStore {
            checkpoint: cp.origin.clone(),
            store: origin,
        });
    }
    let head = store.head().seq;
    if cp.size > head.0 {
        return Err(SealError::NotThisHistory(format!(
            "the checkpoint covers {} records, the store holds {head}: records were cut from \
             the end of the log",
            cp.size
        )));
    }
    let root = store.tree_root(Seq(cp.size))?;
    if root != cp.root {
        return Err(SealError::NotThisHistory(format!(
            "the store's Merkle tree of its first {} records has root {}, the checkpoint says {}: \
             the history was rewritten after it was sealed (run `diskhist verify --checkpoint`)",
            cp.size,
            hex(&root.0),
            hex(&cp.root.0)
        )));
    }
    Ok(())
}

/// Build the bundle answering `req` against checkpoint `c`.
pub fn prove(store: &Store, c: &SignedCheckpoint, req: &ProveRequest) -> Result<Bundle, SealError> {
    check_store_holds(store, c)?;
    let cp = &c.checkpoint;
    let size = Seq(cp.size);
    let mut seqs = req.records.clone();
    if let Some((k, seed)) = &req.sample {
        if cp.size == 0 {
            return Err(SealError::Usage(
                "the checkpoint's tree is empty: nothing to sample".into(),
            ));
        }
        seqs.extend(sample(seed, *k, cp.size));
    }
    let mut old = None;
    if let Some(o) = &req.old {
        let oc = &o.checkpoint;
        if oc.origin != cp.origin {
            return Err(SealError::OtherStore {
                checkpoint: oc.origin.clone(),
                store: cp.origin.clone(),
            });
        }
        if oc.size == 0 || oc.size > cp.size {
            return Err(SealError::Usage(format!(
                "the older checkpoint covers {} records, the newer {}: a consistency proof \
                 needs 0 < old <= new",
                oc.size, cp.size
            )));
        }
        check_store_holds(store, o)?;
        old = Some((o.raw.clone(), store.consistency_proof(Seq(oc.size), size)?));
    }
    let mut records = Vec::new();
    for s in seqs {
        if s.0 == 0 || s > size {
            return Err(SealError::Usage(format!(
                "record {s} is not in the checkpoint's tree (records 1..={size})"
            )));
        }
        let leaf = store.leaf_data(s)?.to_vec();
        let content = if req.with_content {
            let info = RecordLeaf::decode(&leaf).expect("the store's own leaf data");
            match info.kind {
                RecordKind::Write => store.record_data(s)?,
                RecordKind::Mark => store.record(s)?.mark.map(String::into_bytes),
                _ => None,
            }
        } else {
            None
        };
        records.push(BundleRecord {
            seq: s,
            inclusion: store.inclusion_proof(s, size)?,
            leaf,
            content,
        });
    }
    Ok(Bundle {
        origin: cp.origin.clone(),
        size: cp.size,
        root: cp.root,
        sample: req.sample.clone(),
        old,
        records,
    })
}

/// What an audit checked (it fails with the first thing that does not check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditReport {
    pub origin: String,
    pub size: u64,
    pub signers: Vec<String>,
    pub records: Vec<RecordLeaf>,
    pub contents_checked: usize,
    pub sample: Option<u64>,
    pub extends: Option<u64>,
}

/// Check `bundle` against checkpoint `c`, signed by every key in `keys`:
/// signatures, the bundle being for that checkpoint, every inclusion
/// proof, every disclosed content, the sample, the consistency proof.
pub fn audit(
    keys: &[Verifier],
    c: &SignedCheckpoint,
    bundle: &Bundle,
    expect_sample: Option<(u64, &[u8])>,
) -> Result<AuditReport, SealError> {
    if let Some((k, seed)) = expect_sample {
        let got = bundle.sample.as_ref().map(|(bk, bs)| (*bk, bs.as_slice()));
        if got != Some((k, seed)) {
            return Err(SealError::AuditFailed(match got {
                None => "the bundle is not a sample: it answers no seed".to_string(),
                Some((bk, bs)) => format!(
                    "the bundle is a sample of {bk} from seed {:?}, not of {k} from yours",
                    String::from_utf8_lossy(bs)
                ),
            }));
        }
    }
    if keys.is_empty() {
        return Err(SealError::Usage("give at least one verifier key".into()));
    }
    c.verify(keys)?;
    let cp = &c.checkpoint;
    if bundle.origin != cp.origin {
        return Err(SealError::OtherStore {
            checkpoint: cp.origin.clone(),
            store: bundle.origin.clone(),
        });
    }
    if (bundle.size, bundle.root) != (cp.size, cp.root) {
        return Err(SealError::AuditFailed(format!(
            "the bundle answers the checkpoint of {} records with root {}, not this one ({} \
             records, root {})",
            bundle.size,
            B64.encode(bundle.root.0),
            cp.size,
            B64.encode(cp.root.0)
        )));
    }
    let mut leaves = Vec::new();
    let mut contents_checked = 0;
    for r in &bundle.records {
        let fail = |why: String| SealError::AuditFailed(format!("record {}: {why}", r.seq));
        if r.leaf.len() != LEAF_DATA_LEN {
            return Err(fail(format!(
                "leaf data of {} bytes, not {LEAF_DATA_LEN}",
                r.leaf.len()
            )));
        }
        let info = RecordLeaf::decode(&r.leaf).ok_or_else(|| fail("unknown record kind".into()))?;
        if info.seq != r.seq {
            return Err(fail(format!(
                "its leaf data is that of record {}",
                info.seq
            )));
        }
        if r.seq.0 == 0 || r.seq.0 > cp.size {
            return Err(fail(format!("not in a tree of {} records", cp.size)));
        }
        merkle::verify_inclusion(
            &merkle::leaf_hash(&r.leaf),
            r.seq.0 - 1,
            cp.size,
            &r.inclusion,
            &cp.root,
        )
        .map_err(|e| fail(format!("inclusion proof: {e}")))?;
        if let Some(c) = &r.content {
            let has_content = matches!(info.kind, RecordKind::Write | RecordKind::Mark);
            if !has_content {
                return Err(fail(format!(
                    "a {} record has no content",
                    info.kind.name()
                )));
            }
            if c.len() as u64 != info.length_bytes
                || Hash32(*blake3::hash(c).as_bytes()) != info.content_hash
            {
                return Err(fail(
                    "the disclosed content does not match the record's content hash".into(),
                ));
            }
            contents_checked += 1;
        }
        leaves.push(info);
    }
    if let Some((k, seed)) = &bundle.sample {
        if cp.size == 0 {
            return Err(SealError::AuditFailed("a sample of an empty tree".into()));
        }
        // The sample comes last, after any records asked for by number.
        let want = sample(seed, *k, cp.size);
        let all: Vec<Seq> = bundle.records.iter().map(|r| r.seq).collect();
        let got = &all[all.len().saturating_sub(want.len())..];
        if got != want {
            return Err(SealError::AuditFailed(format!(
                "the bundle's records are not the sample the seed determines: want {}, got {}",
                list(&want),
                list(got)
            )));
        }
    }
    let mut extends = None;
    if let Some((raw, proof)) = &bundle.old {
        let o = SignedCheckpoint::parse(raw)?;
        o.verify(&keys[..1])?;
        let oc = &o.checkpoint;
        if oc.origin != cp.origin {
            return Err(SealError::OtherStore {
                checkpoint: cp.origin.clone(),
                store: oc.origin.clone(),
            });
        }
        merkle::verify_consistency(oc.size, cp.size, proof, &oc.root, &cp.root).map_err(|e| {
            SealError::AuditFailed(format!(
                "the checkpoint of {} records does not extend the older one of {} records \
                 (a forked or rewritten history): {e}",
                cp.size, oc.size
            ))
        })?;
        extends = Some(oc.size);
    }
    Ok(AuditReport {
        origin: cp.origin.clone(),
        size: cp.size,
        signers: keys
            .iter()
            .map(|k| format!("{}+{:08x}", k.name(), k.key_hash()))
            .collect(),
        records: leaves,
        contents_checked,
        sample: bundle.sample.as_ref().map(|s| s.0.min(cp.size)),
        extends,
    })
}

fn list(v: &[Seq]) -> String {
    let s: Vec<String> = v.iter().take(10).map(|s| s.to_string()).collect();
    if v.len() > 10 {
        format!("{}, … ({} in all)", s.join(", "), v.len())
    } else {
        s.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_distinct_repeatable_and_seed_dependent() {
        let a = sample(b"court-2026-17", 50, 1000);
        assert_eq!(a.len(), 50);
        assert_eq!(a, sample(b"court-2026-17", 50, 1000));
        assert_ne!(a, sample(b"court-2026-18", 50, 1000));
        let set: std::collections::HashSet<_> = a.iter().collect();
        assert_eq!(set.len(), 50);
        assert!(a.iter().all(|s| (1..=1000).contains(&s.0)));
        let all = sample(b"x", 20, 7);
        assert_eq!(all.len(), 7);
    }

    #[test]
    fn bundle_text_round_trips_and_cut_bundles_are_refused() {
        let b = Bundle {
            origin: "diskhist/00".into(),
            size: 9,
            root: Hash32([3; 32]),
            sample: Some((2, b"seed".to_vec())),
            old: Some(("o\n1\nx\n\n\u{2014} k AAAA\n".into(), vec![Hash32([4; 32])])),
            records: vec![
                BundleRecord {
                    seq: Seq(3),
                    leaf: vec![1; 66],
                    inclusion: vec![Hash32([5; 32]), Hash32([6; 32])],
                    content: Some(b"abc".to_vec()),
                },
                BundleRecord {
                    seq: Seq(1),
                    leaf: vec![2; 66],
                    inclusion: vec![],
                    content: None,
                },
            ],
        };
        let t = b.to_text();
        assert_eq!(Bundle::parse(&t).unwrap(), b);
        let cut = &t[..t.len() - 4];
        assert!(Bundle::parse(cut).is_err());
        assert!(Bundle::parse(&t.replace("record 3", "record x")).is_err());
        assert!(Bundle::parse(&format!("{t}more\n")).is_err());
    }
}
