//! diskhist's checkpoints, signatures, inclusion and consistency proofs
//! checked by an independent implementation: Go's
//! golang.org/x/mod/sumdb/note and sumdb/tlog (`tests/go/sealcheck.go`,
//! built offline here against Debian's golang-go and
//! golang-golang-x-mod-dev). A checkpoint or bundle changed in any one
//! byte fails diskhist's own audit, and that checker too, except where the
//! change is a non-canonical base64 spelling of the same bytes (unused
//! trailing bits of a signature), which Go's decoder accepts.

use diskhist::seal::bundle::{self, Bundle, ProveRequest};
use diskhist::seal::checkpoint::SignedCheckpoint;
use diskhist::seal::note::{Note, Signer};
use diskhist::store::{Op, OpFlags, Store, Writer};
use diskhist::{Seq, TimeNs};
use std::path::{Path, PathBuf};
use std::process::Command;

const GO_SOURCES: &str = "/usr/share/gocode";

/// Build sealcheck into `dir`, offline: GOPATH mode over the Debian
/// sources, nothing fetched.
fn build_sealcheck(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go/sealcheck.go");
    let note = Path::new(GO_SOURCES).join("src/golang.org/x/mod/sumdb/note/note.go");
    assert!(
        note.exists(),
        "{} is missing: install the Debian packages golang-go and \
         golang-golang-x-mod-dev (make deps-test does)",
        note.display()
    );
    let out = dir.join("sealcheck");
    let o = Command::new("go")
        .args(["build", "-o"])
        .arg(&out)
        .arg(&src)
        .env("GO111MODULE", "off")
        .env("GOPATH", GO_SOURCES)
        .env("GOCACHE", dir.join("gocache"))
        .env("GOFLAGS", "")
        .env("GOPROXY", "off")
        .env("CGO_ENABLED", "0")
        .output()
        .unwrap_or_else(|e| panic!("cannot run go ({e}): install the Debian package golang-go"));
    assert!(
        o.status.success(),
        "go build sealcheck: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

struct Go {
    bin: PathBuf,
    dir: PathBuf,
}

impl Go {
    /// Run sealcheck on these texts; its output, or Err with its complaint.
    fn check(&self, vkey: &str, checkpoint: &str, bundle: Option<&str>) -> Result<String, String> {
        let (k, c, b) = (
            self.dir.join("v.pub"),
            self.dir.join("c"),
            self.dir.join("b"),
        );
        std::fs::write(&k, vkey).unwrap();
        std::fs::write(&c, checkpoint).unwrap();
        let mut cmd = Command::new(&self.bin);
        cmd.arg(&k).arg(&c);
        if let Some(bundle) = bundle {
            std::fs::write(&b, bundle).unwrap();
            cmd.arg(&b);
        }
        let o = cmd.output().unwrap();
        if o.status.success() {
            Ok(String::from_utf8_lossy(&o.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&o.stderr).into_owned())
        }
    }
}

fn append(w: &mut Writer, i: u64) {
    let data = [(i % 251) as u8; 300];
    let op = match i % 4 {
        0 => Op::Flush,
        1 => Op::Trim {
            offset_bytes: (i % 100) * 4096,
            length_bytes: 8192,
        },
        _ => Op::Write {
            offset_bytes: (i % 100) * 4096 + 17,
            data: &data,
        },
    };
    w.append(TimeNs(1_000_000 + i as i64), op, OpFlags::default())
        .unwrap();
}

#[test]
fn go_sumdb_verifies_diskhist_checkpoints_and_proofs() {
    let tmp = tempfile::tempdir().unwrap();
    let go = Go {
        bin: build_sealcheck(tmp.path()),
        dir: tmp.path().to_path_buf(),
    };
    let store = tmp.path().join("s");
    Writer::init(&store, 1 << 20, 4096).unwrap();
    let signer = Signer::generate("recorder.example", [5; 32]).unwrap();
    let witness = Signer::generate("witness", [6; 32]).unwrap();
    let (vkey, wkey) = (
        signer.verifier().to_string(),
        witness.verifier().to_string(),
    );
    // Checkpoints at sizes around the stored levels' edges.
    let sizes = [1u64, 2, 3, 7, 255, 256, 257, 511, 1000, 1500];
    let mut checkpoints: Vec<(u64, String)> = Vec::new();
    let mut n = 0;
    for &size in &sizes {
        let mut w = Writer::open(&store).unwrap();
        while n < size {
            n += 1;
            append(&mut w, n);
        }
        w.close().unwrap();
        let s = Store::open(&store).unwrap();
        let c = diskhist::seal::seal(&s, &signer).unwrap();
        let cosigned = Note::cosign(&c, &witness).unwrap();
        let out = go.check(&vkey, &cosigned, None).expect("store key");
        assert!(out.contains(&format!(" size {size} ")), "{out}");
        go.check(&wkey, &cosigned, None).expect("witness key");
        checkpoints.push((size, cosigned));
    }
    let s = Store::open(&store).unwrap();
    let mut checked = 0;
    for (i, (size, c)) in checkpoints.iter().enumerate() {
        let c = SignedCheckpoint::parse(c).unwrap();
        let records: Vec<Seq> = [1, size / 2 + 1, *size, 256.min(*size), 257.min(*size)]
            .iter()
            .map(|&q| Seq(q))
            .collect();
        for (old_size, old) in &checkpoints[..=i] {
            let req = ProveRequest {
                records: records.clone(),
                sample: Some((3, format!("seed {old_size}").into_bytes())),
                old: Some(SignedCheckpoint::parse(old).unwrap()),
                with_content: false,
            };
            let b = bundle::prove(&s, &c, &req).unwrap();
            let text = b.to_text();
            let out = go
                .check(&vkey, &c.raw, Some(&text))
                .unwrap_or_else(|e| panic!("{old_size} -> {size}: {e}"));
            assert!(
                out.contains(&format!("consistent with {old_size}\n")),
                "{out}"
            );
            assert!(
                out.contains(&format!(
                    "ok {} records",
                    records.len() + 3.min(*size as usize)
                )),
                "{out}"
            );
            bundle::audit(&[signer.verifier(), witness.verifier()], &c, &b, None).unwrap();
            checked += 1;
        }
    }
    assert_eq!(checked, sizes.len() * (sizes.len() + 1) / 2);
}

#[test]
fn one_changed_byte_fails_go_and_diskhist_alike() {
    let tmp = tempfile::tempdir().unwrap();
    let go = Go {
        bin: build_sealcheck(tmp.path()),
        dir: tmp.path().to_path_buf(),
    };
    let store = tmp.path().join("s");
    Writer::init(&store, 1 << 20, 4096).unwrap();
    let signer = Signer::generate("recorder", [7; 32]).unwrap();
    let vkey = signer.verifier().to_string();
    let mut w = Writer::open(&store).unwrap();
    for i in 1..=300 {
        append(&mut w, i);
    }
    w.close().unwrap();
    let old = diskhist::seal::seal(&Store::open(&store).unwrap(), &signer).unwrap();
    let mut w = Writer::open(&store).unwrap();
    for i in 301..=333 {
        append(&mut w, i);
    }
    w.close().unwrap();
    let s = Store::open(&store).unwrap();
    let raw = diskhist::seal::seal(&s, &signer).unwrap();
    let c = SignedCheckpoint::parse(&raw).unwrap();
    let b = bundle::prove(
        &s,
        &c,
        &ProveRequest {
            records: vec![Seq(290)],
            old: Some(SignedCheckpoint::parse(&old).unwrap()),
            ..Default::default()
        },
    )
    .unwrap()
    .to_text();
    go.check(&vkey, &raw, Some(&b)).unwrap();
    let v = [signer.verifier()];
    let diskhist_ok = |c: &[u8], b: &[u8]| -> bool {
        let (Ok(c), Ok(b)) = (std::str::from_utf8(c), std::str::from_utf8(b)) else {
            return false;
        };
        let (Ok(c), Ok(b)) = (SignedCheckpoint::parse(c), Bundle::parse(b)) else {
            return false;
        };
        bundle::audit(&v, &c, &b, None).is_ok()
    };
    assert!(diskhist_ok(raw.as_bytes(), b.as_bytes()));
    let go_ok = |c: &[u8], b: &[u8]| -> bool {
        let (cp, bp) = (tmp.path().join("fc"), tmp.path().join("fb"));
        std::fs::write(&cp, c).unwrap();
        std::fs::write(&bp, b).unwrap();
        std::fs::write(tmp.path().join("fv"), &vkey).unwrap();
        Command::new(&go.bin)
            .arg(tmp.path().join("fv"))
            .arg(&cp)
            .arg(&bp)
            .output()
            .unwrap()
            .status
            .success()
    };
    let (cb, bb) = (raw.as_bytes().to_vec(), b.as_bytes().to_vec());
    let mut noncanonical = 0;
    // Each byte of the checkpoint (doc 0) and of the bundle (doc 1) in turn.
    for (doc, what) in [(0, "checkpoint"), (1, "bundle")] {
        let orig = if doc == 0 { &cb } else { &bb };
        for i in 0..orig.len() {
            let mut x = orig.clone();
            x[i] ^= 1;
            let (c, b) = if doc == 0 { (&x, &bb) } else { (&cb, &x) };
            assert!(
                !diskhist_ok(c, b),
                "{what} byte {i} changed: diskhist accepts"
            );
            if go_ok(c, b) {
                // Go's base64 ignores the unused low bits of a token's last
                // character, so a non-canonical spelling of the same
                // signature passes there. Only that is allowed: the same
                // bytes decoded.
                assert!(
                    same_bytes_noncanonical(orig, &x, i),
                    "{what} byte {i} changed: Go accepts different bytes"
                );
                noncanonical += 1;
            }
        }
    }
    println!(
        "{} checkpoint and {} bundle byte changes: all refused by diskhist; \
         Go accepted {noncanonical} non-canonical base64 spellings of the same bytes",
        cb.len(),
        bb.len()
    );
}

/// Whether `changed` differs from `orig` only at `at`, inside a base64
/// token (delimited by whitespace) that decodes, ignoring unused trailing
/// bits as Go does, to the same bytes as the original token, and that a
/// strict decoder refuses.
fn same_bytes_noncanonical(orig: &[u8], changed: &[u8], at: usize) -> bool {
    use base64::engine::{general_purpose, GeneralPurpose, GeneralPurposeConfig};
    use base64::Engine;
    let lenient = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
    );
    let token = |b: &[u8]| -> Vec<u8> {
        let start = b[..at]
            .iter()
            .rposition(|c| c.is_ascii_whitespace())
            .map_or(0, |p| p + 1);
        let end = b[at..]
            .iter()
            .position(|c| c.is_ascii_whitespace())
            .map_or(b.len(), |p| at + p);
        b[start..end].to_vec()
    };
    let (a, z) = (token(orig), token(changed));
    match (lenient.decode(&a), lenient.decode(&z)) {
        (Ok(x), Ok(y)) => x == y && general_purpose::STANDARD.decode(&z).is_err(),
        _ => false,
    }
}
