//! C2SP signed notes with Ed25519 keys, written by hand after
//! `golang.org/x/mod/sumdb/note` (the reference the C2SP text follows):
//!
//! - verifier key: `NAME+HASH+base64(0x01 ‖ public key)`;
//! - signer key: `PRIVATE+KEY+NAME+HASH+base64(0x01 ‖ 32-byte seed)`;
//! - `HASH`: the first 4 bytes, big-endian, of
//!   SHA-256(NAME ‖ "\n" ‖ 0x01 ‖ public key), as 8 lowercase hex digits;
//! - a name is non-empty UTF-8 with no white space and no `+`;
//! - a note is its text (UTF-8, no control characters but `\n`, ending in
//!   `\n`), a blank line, then one line per signature:
//!   `— NAME base64(key hash (4 bytes, big-endian) ‖ signature)` (U+2014
//!   EM DASH, a space). The signed message is the text, final `\n`
//!   included. A second signer (a witness) adds a line; the text and the
//!   other lines stay as they are.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

const ALG_ED25519: u8 = 1;
const SIG_PREFIX: &str = "\u{2014} ";

/// Why a key or a note is not one, or does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    #[error("malformed verifier key (want NAME+HASH+KEY, as `diskhist keygen` writes it): {0}")]
    VerifierKey(String),
    #[error("malformed signer key (want PRIVATE+KEY+NAME+HASH+KEY, as `diskhist keygen` writes it): {0}")]
    SignerKey(String),
    #[error("invalid key name {0:?}: a name is non-empty, without white space or '+'")]
    Name(String),
    #[error("malformed signed note: {0}")]
    Malformed(String),
    #[error(
        "the note carries no signature by key {name}+{hash:08x}{}",
        if others.is_empty() { String::new() } else { format!(" (it is signed by {})", others.join(", ")) }
    )]
    NotSignedBy {
        name: String,
        hash: u32,
        others: Vec<String>,
    },
    #[error(
        "the signature by key {name}+{hash:08x} does not verify: the note was altered or forged"
    )]
    BadSignature { name: String, hash: u32 },
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// First 4 bytes, big-endian, of SHA-256(name ‖ "\n" ‖ alg ‖ key).
fn key_hash(name: &str, alg_key: &[u8]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update(alg_key);
    let d = h.finalize();
    u32::from_be_bytes(d[..4].try_into().unwrap())
}

/// The checked fields of a key's text `NAME+HASH+KEY` (a verifier's, or a
/// signer's after `PRIVATE+KEY+`): the key hash, and the 32 Ed25519 key
/// bytes after the algorithm byte. `bad` makes the error for this kind of
/// key.
fn key_fields(
    name: &str,
    hash16: &str,
    key64: &str,
    bad: impl Fn(&str) -> NoteError,
) -> Result<(u32, [u8; 32]), NoteError> {
    if !valid_name(name) {
        return Err(NoteError::Name(name.to_string()));
    }
    let hash = parse_hash(hash16).ok_or_else(|| bad("the key hash is not 8 hex digits"))?;
    let key = B64
        .decode(key64)
        .map_err(|_| bad("the key is not base64"))?;
    if key.len() != 33 || key[0] != ALG_ED25519 {
        return Err(bad("not an Ed25519 key (algorithm 1, 32 bytes)"));
    }
    Ok((hash, key[1..].try_into().unwrap()))
}

/// A key that checks signatures: `NAME+HASH+KEY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    hash: u32,
    key: VerifyingKey,
}

impl Verifier {
    pub fn parse(text: &str) -> Result<Verifier, NoteError> {
        let bad = |why: &str| NoteError::VerifierKey(why.to_string());
        let text = text.trim();
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(hash16), Some(key64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("it has fewer than three '+'-separated parts"));
        };
        if name == "PRIVATE" {
            return Err(bad(
                "this is a signer (private) key; give the verifier key (the .pub file)",
            ));
        }
        let (hash, key) = key_fields(name, hash16, key64, bad)?;
        let mut alg_key = vec![ALG_ED25519];
        alg_key.extend_from_slice(&key);
        if key_hash(name, &alg_key) != hash {
            return Err(bad("the key hash does not match the name and key"));
        }
        let key =
            VerifyingKey::from_bytes(&key).map_err(|_| bad("not a valid Ed25519 public key"))?;
        Ok(Verifier {
            name: name.to_string(),
            hash,
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_hash(&self) -> u32 {
        self.hash
    }
}

impl std::fmt::Display for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut k = vec![ALG_ED25519];
        k.extend_from_slice(self.key.as_bytes());
        write!(f, "{}+{:08x}+{}", self.name, self.hash, B64.encode(k))
    }
}

fn parse_hash(s: &str) -> Option<u32> {
    (s.len() == 8 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u32::from_str_radix(s, 16).ok())
        .flatten()
}

/// A key that signs: `PRIVATE+KEY+NAME+HASH+KEY`.
pub struct Signer {
    name: String,
    hash: u32,
    key: SigningKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({}+{:08x})", self.name, self.hash)
    }
}

impl Signer {
    /// A new key named `name` from 32 random bytes.
    pub fn generate(name: &str, seed: [u8; 32]) -> Result<Signer, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::Name(name.to_string()));
        }
        let key = SigningKey::from_bytes(&seed);
        let mut pk = vec![ALG_ED25519];
        pk.extend_from_slice(key.verifying_key().as_bytes());
        Ok(Signer {
            name: name.to_string(),
            hash: key_hash(name, &pk),
            key,
        })
    }

    pub fn parse(text: &str) -> Result<Signer, NoteError> {
        let bad = |why: &str| NoteError::SignerKey(why.to_string());
        let text = text.trim();
        let rest = text.strip_prefix("PRIVATE+KEY+").ok_or_else(|| {
            bad("it does not start with PRIVATE+KEY+ (a verifier key cannot sign)")
        })?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(hash16), Some(key64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("it has too few '+'-separated parts"));
        };
        let (hash, seed) = key_fields(name, hash16, key64, bad)?;
        let s = Signer::generate(name, seed)?;
        if s.hash != hash {
            return Err(bad("the key hash does not match the name and key"));
        }
        Ok(s)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The signer key in the note format.
    pub fn to_private_text(&self) -> String {
        let mut k = vec![ALG_ED25519];
        k.extend_from_slice(self.key.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.hash,
            B64.encode(k)
        )
    }

    pub fn verifier(&self) -> Verifier {
        Verifier {
            name: self.name.clone(),
            hash: self.hash,
            key: self.key.verifying_key(),
        }
    }

    /// The signature line for `text`.
    fn sign_line(&self, text: &str) -> String {
        let sig = self.key.sign(text.as_bytes());
        let mut b = self.hash.to_be_bytes().to_vec();
        b.extend_from_slice(&sig.to_bytes());
        format!("{SIG_PREFIX}{} {}\n", self.name, B64.encode(b))
    }
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub name: String,
    pub hash: u32,
    /// The Ed25519 signature (64 bytes, or whatever another algorithm's is).
    pub sig: Vec<u8>,
}

/// A signed note: its text and signature lines (not yet verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub text: String,
    pub sigs: Vec<Signature>,
}

impl Note {
    /// Sign `text` (which must end in `\n`).
    pub fn sign(text: &str, signer: &Signer) -> Result<String, NoteError> {
        check_text(text)?;
        Ok(format!("{text}\n{}", signer.sign_line(text)))
    }

    /// Parse a signed note; its signatures are checked by [`Note::verify`].
    pub fn parse(msg: &str) -> Result<Note, NoteError> {
        let bad = |why: &str| NoteError::Malformed(why.to_string());
        if msg.chars().any(|c| (c as u32) < 0x20 && c != '\n') {
            return Err(bad("it holds control characters (a note is text with \\n line ends; was it converted to CRLF?)"));
        }
        let split = msg
            .rfind("\n\n")
            .ok_or_else(|| bad("no blank line before the signatures"))?;
        let (text, sigs) = (&msg[..split + 1], &msg[split + 2..]);
        if sigs.is_empty() || !sigs.ends_with('\n') {
            return Err(bad("no signature lines, or the last one does not end in a newline (the file was cut short?)"));
        }
        let mut out = Vec::new();
        for line in sigs.lines() {
            let rest = line.strip_prefix(SIG_PREFIX).ok_or_else(|| {
                bad(&format!(
                    "signature line {line:?} does not start with an em dash (U+2014) and a space"
                ))
            })?;
            let (name, b64) = rest.split_once(' ').unwrap_or((rest, ""));
            let raw = B64
                .decode(b64)
                .map_err(|_| bad(&format!("signature of {name:?} is not base64")))?;
            if !valid_name(name) || raw.len() < 5 {
                return Err(bad(&format!("signature line {line:?} is malformed")));
            }
            out.push(Signature {
                name: name.to_string(),
                hash: u32::from_be_bytes(raw[..4].try_into().unwrap()),
                sig: raw[4..].to_vec(),
            });
        }
        Ok(Note {
            text: text.to_string(),
            sigs: out,
        })
    }

    /// Check that `v` signed this note's text.
    pub fn verify(&self, v: &Verifier) -> Result<(), NoteError> {
        let sig = self
            .sigs
            .iter()
            .find(|s| s.name == v.name && s.hash == v.hash)
            .ok_or_else(|| NoteError::NotSignedBy {
                name: v.name.clone(),
                hash: v.hash,
                others: self
                    .sigs
                    .iter()
                    .map(|s| format!("{}+{:08x}", s.name, s.hash))
                    .collect(),
            })?;
        let bad = || NoteError::BadSignature {
            name: v.name.clone(),
            hash: v.hash,
        };
        let sig = ed25519_dalek::Signature::from_slice(&sig.sig).map_err(|_| bad())?;
        v.key
            .verify_strict(self.text.as_bytes(), &sig)
            .map_err(|_| bad())
    }

    /// The note with `signer`'s signature added (a witness's cosignature):
    /// the text and the signatures already there are kept as they are.
    pub fn cosign(msg: &str, signer: &Signer) -> Result<String, NoteError> {
        let n = Note::parse(msg)?;
        if n.sigs
            .iter()
            .any(|s| s.name == signer.name && s.hash == signer.hash)
        {
            return Err(NoteError::Malformed(format!(
                "it is already signed by {}+{:08x}",
                signer.name, signer.hash
            )));
        }
        Ok(format!("{msg}{}", signer.sign_line(&n.text)))
    }
}

fn check_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') || text.chars().any(|c| (c as u32) < 0x20 && c != '\n') {
        return Err(NoteError::Malformed(
            "the text must end in a newline and hold no control characters".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example key of the Go package's documentation
    /// (golang.org/x/mod/sumdb/note): the same name and public key give the
    /// same verifier key, hash included.
    #[test]
    fn the_go_documentation_key_parses_and_its_note_verifies() {
        let vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
        let v = Verifier::parse(vkey).unwrap();
        assert_eq!(v.to_string(), vkey);
        let msg = "If you think cryptography is the answer to your problem,\n\
                   then you don't know what your problem is.\n\
                   \n\
                   \u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
        let n = Note::parse(msg).unwrap();
        n.verify(&v).unwrap();
        // The documented signer key signs the text to the same bytes
        // (Ed25519 is deterministic).
        let skey = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
        let s = Signer::parse(skey).unwrap();
        assert_eq!(s.verifier(), v);
        assert_eq!(s.to_private_text(), skey);
        assert_eq!(Note::sign(&n.text, &s).unwrap(), msg);
        let mut altered = msg.replace("answer", "Answer");
        assert!(matches!(
            Note::parse(&altered).unwrap().verify(&v),
            Err(NoteError::BadSignature { .. })
        ));
        altered = msg.replace("PeterNeumann x08go", "PeterNeumann x18go");
        assert!(Note::parse(&altered).unwrap().verify(&v).is_err());
    }

    #[test]
    fn keys_round_trip_and_cosignatures_keep_the_first() {
        let s = Signer::generate("case-7+x", [1; 32]);
        assert!(matches!(s, Err(NoteError::Name(_))));
        let s = Signer::generate("case-7", [1; 32]).unwrap();
        let s2 = Signer::parse(&s.to_private_text()).unwrap();
        assert_eq!(s2.verifier(), s.verifier());
        let v = Verifier::parse(&s.verifier().to_string()).unwrap();
        assert!(Verifier::parse(&s.to_private_text()).is_err());
        assert!(Signer::parse(&v.to_string()).is_err());
        let w = Signer::generate("witness", [2; 32]).unwrap();
        let note = Note::sign("origin\n5\nroot\n", &s).unwrap();
        let both = Note::cosign(&note, &w).unwrap();
        assert!(both.starts_with(&note));
        let n = Note::parse(&both).unwrap();
        n.verify(&v).unwrap();
        n.verify(&w.verifier()).unwrap();
        assert!(Note::cosign(&both, &w).is_err());
        let other = Signer::generate("case-7", [3; 32]).unwrap().verifier();
        assert!(matches!(
            Note::parse(&note).unwrap().verify(&other),
            Err(NoteError::NotSignedBy { .. })
        ));
        // A wrong hash in the verifier key is refused.
        let t = v.to_string();
        let bad = t.replacen(&t[7..15], "00000000", 1);
        assert!(Verifier::parse(&bad).is_err());
        assert!(Note::parse("origin\n5\nroot\n").is_err());
        assert!(Note::parse("origin\r\n5\nroot\n\n\u{2014} a AAAAAAA=\n").is_err());
    }
}
