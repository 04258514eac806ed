//! Attacks a signed checkpoint that left the machine must catch.
//!
//! The attacker is root on the recording host: they rewrite the history
//! with diskhist's own writer, so every checksum and chain hash is right
//! and the store keeps its id (the header is copied back); plain `verify`
//! passes. Once a checkpoint has left the machine, `verify --checkpoint`,
//! `prove` and an auditor's `audit` must not: a record deleted, inserted,
//! reordered or edited; the log truncated at a record boundary with
//! `index/`, `sessions` and `seals` removed; a forked history; a checkpoint
//! signed by another key; a sample answered with other records.

use diskhist::seal::bundle::{self, Bundle, ProveRequest};
use diskhist::seal::checkpoint::SignedCheckpoint;
use diskhist::seal::note::Signer;
use diskhist::store::{OpFlags, OwnedOp, Store, Writer, WriterOptions};
use diskhist::testing::format::read_record_at;
use diskhist::{Seq, TimeNs};
use diskhist_test_common::{diskhist_fails, diskhist_output, p, stderr_of, stdout_of};
use std::path::{Path, PathBuf};
use std::process::Output;

const RECORDS: u64 = 700;

/// A history as (time, operation, flags) per record.
type History = Vec<(TimeNs, OwnedOp, OpFlags)>;
const DISK: u64 = 1 << 20;

fn op(i: u64) -> OwnedOp {
    match i % 5 {
        0 => OwnedOp::Flush,
        1 => OwnedOp::Zero {
            offset_bytes: (i % 200) * 4096,
            length_bytes: 4096,
        },
        2 => OwnedOp::Mark {
            name: format!("m{i}"),
        },
        _ => OwnedOp::Write {
            offset_bytes: (i % 250) * 4096 + (i % 7),
            data: (0..700u32).map(|b| (b as u64 * 31 + i) as u8).collect(),
        },
    }
}

/// The genuine store: `RECORDS` records, a small index flush threshold so
/// the tree's stored hashes are written in pieces.
fn genuine(dir: &Path) -> PathBuf {
    let store = dir.join("genuine");
    Writer::init(&store, DISK, 4096).unwrap();
    let mut w = Writer::open_with(
        &store,
        WriterOptions {
            flush_threshold: 200,
        },
    )
    .unwrap();
    for i in 0..RECORDS {
        w.append(
            TimeNs(1_700_000_000_000_000_000 + i as i64 * 1_000_000),
            op(i).as_op(),
            OpFlags::default(),
        )
        .unwrap();
    }
    w.close().unwrap();
    store
}

/// The records of `store` as (time, op, flags).
fn history(store: &Path) -> History {
    let s = Store::open(store).unwrap();
    (1..=s.head().seq.0)
        .map(|q| {
            let (info, op) = s.record_op(Seq(q)).unwrap();
            (info.time_ns, op, info.flags)
        })
        .collect()
}

/// A forgery: `records` written by diskhist's writer into a new store that
/// takes the genuine store's header (its id, hence its checkpoints'
/// origin). Every checksum and chain hash is right.
fn forge(
    genuine: &Path,
    dir: &Path,
    name: &str,
    records: &[(TimeNs, OwnedOp, OpFlags)],
) -> PathBuf {
    let store = dir.join(name);
    Writer::init(&store, DISK, 4096).unwrap();
    std::fs::copy(genuine.join("diskhist.store"), store.join("diskhist.store")).unwrap();
    let mut w = Writer::open(&store).unwrap();
    for (t, op, flags) in records {
        w.append(*t, op.as_op(), *flags).unwrap();
    }
    w.close().unwrap();
    store
}

struct Keys {
    dir: PathBuf,
    signer: Signer,
}

impl Keys {
    fn new(dir: &Path, name: &str, seed: u8) -> Keys {
        let signer = Signer::generate(name, [seed; 32]).unwrap();
        let kdir = dir.join(format!("keys-{name}-{seed}"));
        std::fs::create_dir_all(&kdir).unwrap();
        std::fs::write(kdir.join("k.key"), signer.to_private_text()).unwrap();
        std::fs::write(kdir.join("k.pub"), signer.verifier().to_string()).unwrap();
        Keys { dir: kdir, signer }
    }
    fn key(&self) -> PathBuf {
        self.dir.join("k.key")
    }
    fn vkey(&self) -> PathBuf {
        self.dir.join("k.pub")
    }
}

/// The genuine store and the recorder's keys, in a directory that lives as
/// long as this does: where every attack starts.
struct Recorder {
    tmp: tempfile::TempDir,
    store: PathBuf,
    keys: Keys,
}

impl Recorder {
    fn new() -> Recorder {
        let tmp = tempfile::tempdir().unwrap();
        let store = genuine(tmp.path());
        let keys = Keys::new(tmp.path(), "recorder", 1);
        Recorder { tmp, store, keys }
    }
    fn dir(&self) -> &Path {
        self.tmp.path()
    }
    /// The genuine store sealed with the recorder's key into
    /// `NAME.checkpoint`: that path and the checkpoint.
    fn seal(&self, name: &str) -> (PathBuf, SignedCheckpoint) {
        let path = self.dir().join(format!("{name}.checkpoint"));
        let c = seal(&self.store, &self.keys, &path);
        (path, c)
    }
}

/// Flips `mask` into byte `byte` of record `record`'s data; the record
/// must be a write.
fn edit_write(h: &mut History, record: usize, byte: usize, mask: u8) {
    if let OwnedOp::Write { data, .. } = &mut h[record - 1].1 {
        data[byte] ^= mask;
    } else {
        panic!("record {record} is not a write");
    }
}

/// `diskhist seal STORE --key KEY` into `out`.
fn seal(store: &Path, keys: &Keys, out: &Path) -> SignedCheckpoint {
    let o = diskhist_output(&["seal", p(store), "--key", p(&keys.key()), "-o", p(out)]);
    assert!(o.status.success(), "seal: {}", stderr_of(&o));
    SignedCheckpoint::parse(&std::fs::read_to_string(out).unwrap()).unwrap()
}

/// `diskhist verify STORE --checkpoint C --key V`: exit code and stderr.
fn verify_with(store: &Path, c: &Path, keys: &Keys) -> (i32, String) {
    let o = diskhist_output(&[
        "verify",
        p(store),
        "-q",
        "--checkpoint",
        p(c),
        "--key",
        p(&keys.vkey()),
    ]);
    (o.status.code().unwrap_or(-1), stderr_of(&o))
}

fn plain_verify_ok(store: &Path) {
    let o = diskhist_output(&["verify", p(store), "-q"]);
    assert!(
        o.status.success(),
        "the forgery must pass plain verify (checksums and chain recomputed): {}",
        stderr_of(&o)
    );
}

/// `diskhist prove STORE --checkpoint C WHAT.. -o OUT`, which must succeed.
fn prove_to(store: &Path, c: &Path, what: &[&str], out: &Path) {
    let mut args = vec!["prove", p(store), "--checkpoint", p(c)];
    args.extend_from_slice(what);
    args.extend(["-o", p(out)]);
    let o = diskhist_output(&args);
    assert!(o.status.success(), "{}", stderr_of(&o));
}

/// `diskhist audit --key V --checkpoint C BUNDLE`, whatever its outcome.
fn audit_with(bundle: &Path, c: &Path, keys: &Keys) -> Output {
    diskhist_output(&[
        "audit",
        "--key",
        p(&keys.vkey()),
        "--checkpoint",
        p(c),
        p(bundle),
    ])
}

/// A bundle for `c` (its origin, size and root) with no sample, no older
/// checkpoint and no records, for an attack to fill in.
fn bundle_for(c: &SignedCheckpoint) -> Bundle {
    Bundle {
        origin: c.checkpoint.origin.clone(),
        size: c.checkpoint.size,
        root: c.checkpoint.root,
        sample: None,
        old: None,
        records: vec![],
    }
}

#[test]
fn rewritten_histories_fail_against_a_checkpoint_that_left() {
    let r = Recorder::new();
    let (c_path, c) = r.seal("c");
    assert_eq!(c.checkpoint.size, RECORDS);
    let (code, err) = verify_with(&r.store, &c_path, &r.keys);
    assert_eq!(code, 0, "the genuine store: {err}");

    let h = history(&r.store);
    let k = 300usize;
    let mut deleted = h.clone();
    deleted.remove(k);
    let mut inserted = h.clone();
    inserted.insert(
        k,
        (
            h[k - 1].0,
            OwnedOp::Write {
                offset_bytes: 0,
                data: b"planted".to_vec(),
            },
            OpFlags::default(),
        ),
    );
    let mut reordered = h.clone();
    reordered.swap(k, k + 1);
    // Same times, so that only the order differs.
    reordered[k].0 = h[k].0;
    reordered[k + 1].0 = h[k + 1].0;
    let mut edited = h.clone();
    edit_write(&mut edited, k + 4, 10, 1);
    // A forgery the length of the original and one longer (the deleted
    // record's place taken by a new one at the end).
    let mut deleted_padded = deleted.clone();
    deleted_padded.push((h[h.len() - 1].0, OwnedOp::Flush, OpFlags::default()));
    let cases: [(&str, &History); 5] = [
        ("deleted", &deleted_padded),
        ("inserted", &inserted),
        ("reordered", &reordered),
        ("edited", &edited),
        ("deleted-short", &deleted),
    ];
    for (name, records) in cases {
        let f = forge(&r.store, r.dir(), name, records);
        plain_verify_ok(&f);
        let (code, err) = verify_with(&f, &c_path, &r.keys);
        assert_eq!(code, 1, "{name}: verify --checkpoint must fail: {err}");
        let want = if name == "deleted-short" {
            "the log holds only 699 whole records"
        } else {
            "the history was rewritten after it was sealed"
        };
        assert!(err.contains(want), "{name}: {err}");
        // prove refuses: the store cannot answer the checkpoint.
        diskhist_fails(
            &["prove", p(&f), "--checkpoint", p(&c_path), "--record", "1"],
            1,
            "does not hold the history the checkpoint sealed",
        );
        // And proofs made from the forgery do not check against it: the
        // forger's own checkpoint of the same size is a different root.
        let fs = Store::open(&f).unwrap();
        let size = c.checkpoint.size.min(fs.head().seq.0);
        let proof = fs.inclusion_proof(Seq(k as u64 + 1), Seq(size)).unwrap();
        let leaf = fs.leaf_data(Seq(k as u64 + 1)).unwrap();
        let b = Bundle {
            records: vec![bundle::BundleRecord {
                seq: Seq(k as u64 + 1),
                leaf: leaf.to_vec(),
                inclusion: proof,
                content: None,
            }],
            ..bundle_for(&c)
        };
        let e = bundle::audit(&[r.keys.signer.verifier()], &c, &b, None)
            .expect_err(name)
            .to_string();
        assert!(e.contains("inclusion proof"), "{name}: {e}");
    }
}

#[test]
fn a_truncated_log_without_index_sessions_or_seals_is_caught() {
    let r = Recorder::new();
    let (c_path, _) = r.seal("c");
    // Cut the log after record 650, at a record boundary, and remove what
    // could tell: the index, sessions, seals.
    let log = r.store.join("log");
    let f = std::fs::File::open(&log).unwrap();
    let len = f.metadata().unwrap().len();
    let (mut off, mut buf) = (0u64, Vec::new());
    for _ in 0..650 {
        let h = read_record_at(&f, off, len, &mut buf).unwrap().unwrap();
        off += u64::from(h.record_len);
    }
    drop(f);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(off)
        .unwrap();
    std::fs::remove_dir_all(r.store.join("index")).unwrap();
    for f in ["sessions", "seals"] {
        let _ = std::fs::remove_file(r.store.join(f));
    }
    // A writer opens it cleanly (nothing torn), rebuilding the index.
    Writer::open(&r.store).unwrap().close().unwrap();
    plain_verify_ok(&r.store);
    let (code, err) = verify_with(&r.store, &c_path, &r.keys);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("covers 700 records, but the log holds only 650 whole records"),
        "{err}"
    );
    diskhist_fails(
        &[
            "prove",
            p(&r.store),
            "--checkpoint",
            p(&c_path),
            "--record",
            "5",
        ],
        1,
        "records were cut from the end of the log",
    );
}

#[test]
fn forks_are_caught() {
    let r = Recorder::new();
    let (old_path, old) = r.seal("old");
    // The attacker holds the key: they rewrite record 100 and seal the
    // forgery, same size, and a longer one.
    let mut h = history(&r.store);
    edit_write(&mut h, 99, 0, 0xff);
    let same = forge(&r.store, r.dir(), "fork-same", &h);
    let same_c = seal(&same, &r.keys, &r.dir().join("same.checkpoint"));
    assert_eq!(same_c.checkpoint.size, old.checkpoint.size);
    assert_ne!(same_c.checkpoint.root, old.checkpoint.root);
    for i in 0..50 {
        h.push((h[h.len() - 1].0, op(i), OpFlags::default()));
    }
    let longer = forge(&r.store, r.dir(), "fork-longer", &h);
    let new_path = r.dir().join("new.checkpoint");
    let new = seal(&longer, &r.keys, &new_path);

    // The holder of the forgery cannot prove the newer extends the older.
    diskhist_fails(
        &[
            "prove",
            p(&longer),
            "--checkpoint",
            p(&new_path),
            "--consistency",
            p(&old_path),
        ],
        1,
        "does not hold the history the checkpoint sealed",
    );
    // A consistency proof made from the forgery, between the same sizes,
    // fails the audit.
    let fs = Store::open(&longer).unwrap();
    let proof = fs
        .consistency_proof(Seq(old.checkpoint.size), Seq(new.checkpoint.size))
        .unwrap();
    let b = Bundle {
        old: Some((old.raw.clone(), proof)),
        ..bundle_for(&new)
    };
    let bpath = r.dir().join("forged.bundle");
    std::fs::write(&bpath, b.to_text()).unwrap();
    let o = audit_with(&bpath, &new_path, &r.keys);
    assert_eq!(o.status.code(), Some(1), "{}", stdout_of(&o));
    assert!(
        stderr_of(&o).contains("does not extend the older one"),
        "{}",
        stderr_of(&o)
    );
    // Two checkpoints of the same size with different roots: no proof
    // reconciles them.
    let b = Bundle {
        old: Some((old.raw.clone(), vec![])),
        ..bundle_for(&same_c)
    };
    let e = bundle::audit(&[r.keys.signer.verifier()], &same_c, &b, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("sizes are equal but the roots differ"), "{e}");
    // The genuine store proves its own growth: seal, record more, seal.
    let mut w = Writer::open(&r.store).unwrap();
    for i in 0..30 {
        w.append_now(op(i).as_op(), OpFlags::default()).unwrap();
    }
    w.close().unwrap();
    let (grown_path, _) = r.seal("grown");
    let gb = r.dir().join("grown.bundle");
    prove_to(&r.store, &grown_path, &["--consistency", p(&old_path)], &gb);
    let o = audit_with(&gb, &grown_path, &r.keys);
    assert!(o.status.success(), "{}", stderr_of(&o));
    assert!(stdout_of(&o).contains("extends the older checkpoint of 700 records"));
    // ...and the forged newer checkpoint against the genuine old fails
    // whichever proof is offered, the genuine one included.
    let o = audit_with(&gb, &new_path, &r.keys);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn a_checkpoint_signed_by_another_key_is_refused() {
    let r = Recorder::new();
    // Same name, other key; and another name.
    let impostor = Keys::new(r.dir(), "recorder", 2);
    let other = Keys::new(r.dir(), "someone", 3);
    for (who, k) in [("impostor", &impostor), ("other", &other)] {
        let c_path = r.dir().join(format!("{who}.checkpoint"));
        seal(&r.store, k, &c_path);
        let (code, err) = verify_with(&r.store, &c_path, &r.keys);
        assert_eq!(code, 1, "{who}: {err}");
        assert!(
            err.contains("carries no signature by key recorder+"),
            "{who}: {err}"
        );
        let b = r.dir().join(format!("{who}.bundle"));
        prove_to(&r.store, &c_path, &["--record", "3"], &b);
        let o = audit_with(&b, &c_path, &r.keys);
        assert_eq!(o.status.code(), Some(1), "{who}");
        assert!(
            stderr_of(&o).contains("no signature by key recorder+"),
            "{}",
            stderr_of(&o)
        );
    }
    // A signature line naming the right key over another text: forged.
    let (_, c) = r.seal("c");
    let other_text = c.note.text.replace(&format!("\n{RECORDS}\n"), "\n699\n");
    let sig_line = c.raw.rsplit_once("\n\n").unwrap().1;
    let forged = r.dir().join("forged.checkpoint");
    std::fs::write(&forged, format!("{other_text}\n{sig_line}")).unwrap();
    let (code, err) = verify_with(&r.store, &forged, &r.keys);
    assert_eq!(code, 1);
    assert!(err.contains("does not verify"), "{err}");
}

#[test]
fn a_sample_answered_with_other_records_fails() {
    let r = Recorder::new();
    let (c_path, c) = r.seal("c");
    let s = Store::open(&r.store).unwrap();
    let sample = |seed: &[u8]| {
        bundle::prove(
            &s,
            &c,
            &ProveRequest {
                sample: Some((8, seed.to_vec())),
                ..Default::default()
            },
        )
        .unwrap()
    };
    let auditor_seed = b"case 17, 2026-12-01".to_vec();
    let good = sample(&auditor_seed);
    let v = [r.keys.signer.verifier()];
    bundle::audit(&v, &c, &good, Some((8, &auditor_seed))).unwrap();
    // Records other than the seed's (valid proofs, wrong records).
    let mut swapped = good.clone();
    let other = bundle::prove(
        &s,
        &c,
        &ProveRequest {
            records: vec![Seq(1), Seq(2)],
            ..Default::default()
        },
    )
    .unwrap();
    swapped.records[3] = other.records[0].clone();
    let e = bundle::audit(&v, &c, &swapped, Some((8, &auditor_seed)))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not the sample the seed determines"), "{e}");
    // A sample of the holder's own choosing: another seed.
    let chosen = sample(b"holder's seed");
    bundle::audit(&v, &c, &chosen, None).unwrap();
    let e = bundle::audit(&v, &c, &chosen, Some((8, &auditor_seed)))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not of 8 from yours"), "{e}");
    // Fewer records than asked.
    let mut short = good.clone();
    short.sample = Some((7, auditor_seed.clone()));
    short.records.pop();
    assert!(bundle::audit(&v, &c, &short, Some((8, &auditor_seed))).is_err());
    // Through the command line.
    let b = r.dir().join("b");
    std::fs::write(&b, chosen.to_text()).unwrap();
    diskhist_fails(
        &[
            "audit",
            "--key",
            p(&r.keys.vkey()),
            "--checkpoint",
            p(&c_path),
            "--sample",
            "8",
            "--seed",
            "case 17, 2026-12-01",
            p(&b),
        ],
        1,
        "not of 8 from yours",
    );
}
