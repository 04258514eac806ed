//! Sealing from the command line: keygen, seal, cosign, prove, audit,
//! verify --checkpoint; sealing while recording (serve and ingest with
//! --seal-key --seal-every --seal-cmd), a failing --seal-cmd that never
//! stops recording; clear errors for bad input.

use diskhist::seal::seals::read_seals;
use diskhist_test_common::nbd::Client;
use diskhist_test_common::{
    diskhist, diskhist_fails, diskhist_output, init_store, p, stderr_of, stdout_of, wait_until,
    Served,
};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn keygen(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let out = diskhist(&["keygen", name, "--dir", p(dir)]);
    let (key, vkey) = (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.pub")),
    );
    let v = std::fs::read_to_string(&vkey).unwrap();
    assert_eq!(out, v, "keygen prints the verifier key");
    assert!(v.starts_with(&format!("{name}+")));
    let k = std::fs::read_to_string(&key).unwrap();
    assert!(k.starts_with(&format!("PRIVATE+KEY+{name}+")));
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the signer key is private");
    (key, vkey)
}

/// `init_store` in a new directory `dir/name`.
fn new_store(dir: &Path, name: &str, size: &str) -> PathBuf {
    std::fs::create_dir(dir.join(name)).unwrap();
    init_store(&dir.join(name), size)
}

/// A store of `2n` records: `n` images imported one after the other, each
/// changing one more extent (a write record and the import's mark).
fn store_with_writes(dir: &Path, name: &str, n: u8) -> PathBuf {
    let store = new_store(dir, name, "1M");
    let mut data = vec![0u8; 1 << 20];
    for i in 0..n {
        let img = dir.join(format!("{name}-img{i}"));
        data[(i as usize) * 8192..(i as usize) * 8192 + 5000].fill(i + 1);
        std::fs::write(&img, &data).unwrap();
        diskhist(&[
            "import",
            p(&store),
            p(&img),
            "--at",
            &format!("@{}", 1000 + i as u64),
        ]);
    }
    store
}

#[test]
fn keygen_seal_cosign_prove_audit_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, vkey) = keygen(tmp.path(), "lab-1");
    let (wkey, wvkey) = keygen(tmp.path(), "officer");
    diskhist_fails(
        &["keygen", "lab-1", "--dir", p(tmp.path())],
        1,
        "exists; keys are not replaced without --force",
    );
    diskhist_fails(
        &["keygen", "two words", "--dir", p(tmp.path())],
        2,
        "invalid key name",
    );
    let store = store_with_writes(tmp.path(), "s", 3);
    let c = tmp.path().join("c1");
    diskhist(&["seal", p(&store), "--key", p(&key), "-o", p(&c)]);
    let text = std::fs::read_to_string(&c).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("diskhist/"), "{text}");
    assert_eq!(lines[1], "6", "3 imports: 3 writes and 3 marks");
    assert!(lines[4].starts_with("\u{2014} lab-1 "), "{text}");
    // The tree size and root info shows are the checkpoint's.
    let info = diskhist(&["info", p(&store)]);
    let root_hex = info
        .lines()
        .find_map(|l| l.strip_prefix("merkle tree:    size 6, root "))
        .unwrap_or_else(|| panic!("{info}"));
    assert_eq!(root_hex.len(), 64);
    // A witness cosigns after checking the recorder's signature.
    let cc = tmp.path().join("c1.cosigned");
    diskhist(&[
        "cosign",
        "--key",
        p(&wkey),
        "--check-key",
        p(&vkey),
        p(&c),
        "-o",
        p(&cc),
    ]);
    let cosigned = std::fs::read_to_string(&cc).unwrap();
    assert!(cosigned.starts_with(&text));
    assert!(cosigned
        .lines()
        .last()
        .unwrap()
        .starts_with("\u{2014} officer "));
    diskhist_fails(
        &["cosign", "--key", p(&key), "--check-key", p(&wvkey), p(&c)],
        1,
        "carries no signature by key officer+",
    );
    // Proofs by number, by time, by sample, with content, and consistency.
    let mut more = std::fs::read(tmp.path().join("s-img2")).unwrap();
    more[500_000] = 1;
    std::fs::write(tmp.path().join("more"), &more).unwrap();
    diskhist(&[
        "import",
        p(&store),
        p(&tmp.path().join("more")),
        "--at",
        "@2000",
    ]);
    let c2 = tmp.path().join("c2");
    diskhist(&["seal", p(&store), "--key", p(&key), "-o", p(&c2)]);
    let b = tmp.path().join("b");
    diskhist(&[
        "prove",
        p(&store),
        "--checkpoint",
        p(&c2),
        "--record",
        "1",
        "--at",
        "@1001",
        "--sample",
        "2",
        "--seed",
        "auditor's seed",
        "--consistency",
        p(&c),
        "--with-content",
        "-o",
        p(&b),
    ]);
    let out = diskhist(&[
        "audit",
        "--key",
        p(&vkey),
        "--checkpoint",
        p(&c2),
        "--sample",
        "2",
        "--seed",
        "auditor's seed",
        p(&b),
    ]);
    assert!(
        out.contains("consistent: it extends the older checkpoint of 6 records"),
        "{out}"
    );
    assert!(
        out.contains("record 1: 1970-01-01T00:16:40.000000000Z write "),
        "{out}"
    );
    assert!(
        out.contains("record 4: 1970-01-01T00:16:41.000000000Z mark "),
        "{out}"
    );
    assert!(
        out.contains("ok: 4 inclusion proof(s), 4 disclosed content(s) match"),
        "{out}"
    );
    // A disclosed content changed: caught against the content hash.
    let bundle = std::fs::read_to_string(&b).unwrap();
    let content = bundle.lines().find(|l| l.starts_with("content ")).unwrap();
    let mut bytes = base64_decode(&content[8..]);
    bytes[100] ^= 1;
    let bad = tmp.path().join("b-bad");
    std::fs::write(
        &bad,
        bundle.replace(content, &format!("content {}", base64_encode(&bytes))),
    )
    .unwrap();
    let o = diskhist_output(&["audit", "--key", p(&vkey), "--checkpoint", p(&c2), p(&bad)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr_of(&o).contains("does not match the record's content hash"),
        "{}",
        stderr_of(&o)
    );
    // Both signatures required: the cosigned checkpoint passes with both
    // keys, the recorder's alone fails with the witness's key.
    let b1 = tmp.path().join("b1");
    diskhist(&[
        "prove",
        p(&store),
        "--checkpoint",
        p(&cc),
        "--record",
        "2",
        "-o",
        p(&b1),
    ]);
    diskhist(&[
        "audit",
        "--key",
        p(&vkey),
        "--key",
        p(&wvkey),
        "--checkpoint",
        p(&cc),
        p(&b1),
    ]);
    let o = diskhist_output(&[
        "audit",
        "--key",
        p(&vkey),
        "--key",
        p(&wvkey),
        "--checkpoint",
        p(&c),
        p(&b1),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout_of(&o));
    // verify --checkpoint, both checkpoints, with the key as text.
    let v = std::fs::read_to_string(&vkey).unwrap();
    let out = diskhist(&[
        "verify",
        p(&store),
        "-q",
        "--checkpoint",
        p(&c),
        "--checkpoint",
        p(&c2),
        "--key",
        v.trim(),
    ]);
    assert!(
        out.contains("ok: the history holds what 2 checkpoint(s) sealed"),
        "{out}"
    );
    // The mounted tree's info is checked elsewhere; the state's root here
    // equals the first checkpoint's.
    let s = diskhist::Store::open(&store).unwrap();
    let cp = diskhist::seal::checkpoint::SignedCheckpoint::parse(&text).unwrap();
    assert_eq!(s.tree_root(diskhist::Seq(6)).unwrap(), cp.checkpoint.root);
    assert_eq!(root_hex, cp.checkpoint.root.to_hex());
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn bad_input_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, vkey) = keygen(tmp.path(), "lab");
    let (_, other_vkey) = keygen(tmp.path(), "other");
    let a = store_with_writes(tmp.path(), "a", 2);
    let b = store_with_writes(tmp.path(), "b", 2);
    let ca = tmp.path().join("ca");
    diskhist(&["seal", p(&a), "--key", p(&key), "-o", p(&ca)]);
    // Keys the wrong way round, or damaged.
    diskhist_fails(
        &["seal", p(&a), "--key", p(&vkey)],
        1,
        "a verifier key cannot sign",
    );
    diskhist_fails(
        &["audit", "--key", p(&key), "--checkpoint", p(&ca), p(&ca)],
        1,
        "this is a signer (private) key; give the verifier key",
    );
    let damaged = tmp.path().join("damaged.pub");
    let v = std::fs::read_to_string(&vkey).unwrap();
    std::fs::write(&damaged, v.replacen("lab+", "lad+", 1)).unwrap();
    diskhist_fails(
        &[
            "verify",
            p(&a),
            "--checkpoint",
            p(&ca),
            "--key",
            p(&damaged),
        ],
        1,
        "the key hash does not match the name and key",
    );
    // Malformed checkpoints.
    let t = std::fs::read_to_string(&ca).unwrap();
    for (name, text, want) in [
        (
            "no-sig",
            t.split("\n\n").next().unwrap().to_string() + "\n",
            "no blank line before the signatures",
        ),
        ("crlf", t.replace('\n', "\r\n"), "control characters"),
        (
            "size",
            t.replacen("\n4\n", "\n04\n", 1),
            "tree size \"04\" is not a decimal number",
        ),
        ("cut", t[..t.len() - 10].to_string(), "malformed checkpoint"),
    ] {
        let f = tmp.path().join(name);
        std::fs::write(&f, text).unwrap();
        diskhist_fails(
            &["verify", p(&a), "--checkpoint", p(&f), "--key", p(&vkey)],
            1,
            want,
        );
        diskhist_fails(
            &["prove", p(&a), "--checkpoint", p(&f), "--record", "1"],
            1,
            want,
        );
    }
    // Wrong key.
    diskhist_fails(
        &[
            "verify",
            p(&a),
            "--checkpoint",
            p(&ca),
            "--key",
            p(&other_vkey),
        ],
        1,
        "carries no signature by key other+",
    );
    // A checkpoint of another store; a bundle from another store.
    diskhist_fails(
        &["verify", p(&b), "--checkpoint", p(&ca), "--key", p(&vkey)],
        1,
        "it seals another store's history",
    );
    diskhist_fails(
        &["prove", p(&b), "--checkpoint", p(&ca), "--record", "1"],
        1,
        "it seals another store's history",
    );
    let cb = tmp.path().join("cb");
    diskhist(&["seal", p(&b), "--key", p(&key), "-o", p(&cb)]);
    let bb = tmp.path().join("bb");
    diskhist(&[
        "prove",
        p(&b),
        "--checkpoint",
        p(&cb),
        "--record",
        "1",
        "-o",
        p(&bb),
    ]);
    let o = diskhist_output(&["audit", "--key", p(&vkey), "--checkpoint", p(&ca), p(&bb)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr_of(&o).contains("it seals another store's history"),
        "{}",
        stderr_of(&o)
    );
    // Nothing to prove; a record outside the checkpoint; a bundle that is not one.
    diskhist_fails(
        &["prove", p(&a), "--checkpoint", p(&ca)],
        2,
        "say what to prove",
    );
    diskhist_fails(
        &["prove", p(&a), "--checkpoint", p(&ca), "--record", "9"],
        1,
        "record #9 is not in the checkpoint's tree",
    );
    diskhist_fails(
        &["audit", "--key", p(&vkey), "--checkpoint", p(&ca), p(&ca)],
        1,
        "not a proof bundle",
    );
    // Outputs never replace a file without --force, nor land in a store.
    diskhist_fails(
        &["seal", p(&a), "--key", p(&key), "-o", p(&ca)],
        1,
        "--force",
    );
    diskhist_fails(
        &["seal", p(&a), "--key", p(&key), "-o", p(&a.join("c"))],
        1,
        "store",
    );
}

#[test]
fn serve_seals_as_it_records_and_a_failing_seal_cmd_never_stops_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, vkey) = keygen(tmp.path(), "recorder");
    let store = new_store(tmp.path(), "s", "4M");
    let published = tmp.path().join("published");
    let flag = tmp.path().join("publishing-works");
    let attempts = tmp.path().join("attempts");
    // The command fails until `flag` exists: the first checkpoints queue
    // and are retried. Each failed attempt leaves a line in `attempts`.
    let cmd = format!(
        "if test -e {f}; then cat >> {o}; else echo >> {a}; false; fi",
        a = p(&attempts),
        f = p(&flag),
        o = p(&published)
    );
    let served = Served::start(
        &store,
        &tmp.path().join("sock"),
        &[
            "--seal-key",
            p(&key),
            "--seal-every",
            "5records",
            "--seal-cmd",
            &cmd,
        ],
    );
    let mut c = Client::connect(&tmp.path().join("sock"));
    for i in 0..23u64 {
        assert_eq!(
            c.write(i * 4096, &[i as u8 + 1; 4096], false),
            0,
            "write {i}"
        );
    }
    assert_eq!(c.flush(), 0);
    // Sealed at 5, 10, 15, 20 (before records 6, 11, 16, 21), none published.
    wait_until(
        Duration::from_secs(20),
        || format!("seals: {:?}", read_seals(&store).map(|v| v.len())),
        || read_seals(&store).is_ok_and(|v| v.len() >= 4),
    );
    // At least one attempt has failed before publishing is allowed (on a
    // loaded machine the first attempt can come after the fourth seal).
    wait_until(
        Duration::from_secs(20),
        || "no publishing attempt".to_string(),
        || attempts.exists(),
    );
    assert!(!published.exists());
    std::fs::write(&flag, "").unwrap();
    for i in 23..27u64 {
        assert_eq!(c.write(i * 4096, &[9; 4096], false), 0);
    }
    c.disconnect();
    // The retry publishes the queue in order.
    wait_until(
        Duration::from_secs(30),
        || format!("published: {:?}", std::fs::read_to_string(&published).ok()),
        || {
            std::fs::read_to_string(&published)
                .is_ok_and(|t| t.matches("\u{2014} recorder ").count() >= 5)
        },
    );
    let (st, err) = served.stop();
    assert!(st.success(), "{err}");
    assert!(
        err.contains("retrying in"),
        "the failures are logged: {err}"
    );
    // At the end the last records are sealed too.
    let seals = read_seals(&store).unwrap();
    let sizes: Vec<u64> = seals.iter().map(|(s, _)| s.size).collect();
    assert_eq!(&sizes[..5], &[5, 10, 15, 20, 25], "{sizes:?}");
    let head = diskhist::Store::open(&store).unwrap().head().seq.0;
    assert_eq!(*sizes.last().unwrap(), head, "{sizes:?}");
    // Every published checkpoint verifies against the store.
    let text = std::fs::read_to_string(&published).unwrap();
    let notes: Vec<String> = text
        .split_inclusive('\n')
        .collect::<String>()
        .split("diskhist/")
        .skip(1)
        .map(|n| format!("diskhist/{n}"))
        .collect();
    assert!(notes.len() >= 5);
    for (i, n) in notes.iter().enumerate() {
        let f = tmp.path().join(format!("pub{i}"));
        std::fs::write(&f, n).unwrap();
        diskhist(&[
            "verify",
            p(&store),
            "-q",
            "--checkpoint",
            p(&f),
            "--key",
            p(&vkey),
        ]);
    }
    let info = diskhist(&["info", p(&store)]);
    assert!(
        info.contains(&format!("the last at {head} records")),
        "{info}"
    );
}

#[test]
fn ingest_seals_by_records_with_a_command_that_always_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let (key, vkey) = keygen(tmp.path(), "recorder");
    let src = store_with_writes(tmp.path(), "src", 4);
    let stream = tmp.path().join("st");
    let o = diskhist_output(&["dump", p(&src), "-o", p(&stream)]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    let dst = new_store(tmp.path(), "dst", "1M");
    let o = diskhist_output(&[
        "ingest",
        p(&dst),
        "--format",
        "stream",
        p(&stream),
        "-q",
        "--seal-key",
        p(&key),
        "--seal-every",
        "3records",
        "--seal-cmd",
        "exit 3",
    ]);
    assert!(o.status.success(), "recording goes on: {}", stderr_of(&o));
    let err = stderr_of(&o);
    assert!(err.contains("exit status: 3"), "{err}");
    assert!(err.contains("not published"), "{err}");
    let sizes: Vec<u64> = read_seals(&dst)
        .unwrap()
        .iter()
        .map(|(s, _)| s.size)
        .collect();
    assert_eq!(sizes, [3, 6, 8], "every 3 records, and the last");
    let (s, d) = (
        diskhist::Store::open(&src).unwrap(),
        diskhist::Store::open(&dst).unwrap(),
    );
    assert_eq!(d.head().seq.0, 8);
    // The same history in another store has the same root.
    assert_eq!(
        s.tree_root(d.head().seq).unwrap(),
        d.tree_root(d.head().seq).unwrap()
    );
    let v = diskhist(&["verify", p(&dst), "-q", "--key", p(&vkey)]);
    assert!(v.starts_with("ok: 8 records"), "{v}");
    // A history recorded before sealing was turned on is sealed when a
    // sealing recorder stops, even if it recorded nothing new.
    assert!(read_seals(&src).unwrap().is_empty());
    let o = diskhist_output(&[
        "ingest",
        p(&src),
        "--format",
        "stream",
        p(&stream),
        "-q",
        "--seal-key",
        p(&key),
    ]);
    assert!(
        stderr_of(&o).contains("already holds all 8 records"),
        "{}",
        stderr_of(&o)
    );
    let sizes: Vec<u64> = read_seals(&src)
        .unwrap()
        .iter()
        .map(|(s, _)| s.size)
        .collect();
    assert_eq!(sizes, [8]);
}
