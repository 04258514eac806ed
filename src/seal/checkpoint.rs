//! C2SP tlog-checkpoint: the note text that commits to a tree.
//!
//! ```text
//! diskhist/0123456789abcdef0123456789abcdef      origin: names the store
//! 912                                            tree size, decimal
//! 1FRqo7fd8ClNzOzWfjpn3BRXKkpxYHNzBIwUvm7ZPDo=   root hash, base64
//! ```
//!
//! Each line ends in `\n`; extension lines may follow (diskhist writes
//! none and keeps those it reads). Signed as a note ([`super::note`]).

use super::note::{Note, NoteError, Verifier};
use super::SealError;
use crate::units::Hash32;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

/// The origin line of a store's checkpoints: `diskhist/` and the store's
/// id (16 bytes, made at `init`) in hex.
pub fn origin_for(store_id: &[u8; 16]) -> String {
    let mut s = String::from("diskhist/");
    for b in store_id {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// A checkpoint's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash32,
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The note text.
    pub fn text(&self) -> String {
        let mut t = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root.0)
        );
        for e in &self.extensions {
            t.push_str(e);
            t.push('\n');
        }
        t
    }

    /// Parse a note text as a checkpoint.
    pub fn parse_text(text: &str) -> Result<Checkpoint, SealError> {
        let bad = |why: String| SealError::MalformedCheckpoint(why);
        // What a note may hold (regression, found by fuzzing: an extension
        // line with a control character parsed, and could not be signed).
        if text.chars().any(|c| (c as u32) < 0x20 && c != '\n') {
            return Err(bad("it holds control characters".into()));
        }
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| bad("the text does not end in a newline".into()))?;
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or("");
        if origin.is_empty() {
            return Err(bad("the origin line is empty".into()));
        }
        let size_s = lines
            .next()
            .ok_or_else(|| bad("no tree size line".into()))?;
        let size_ok = !size_s.is_empty()
            && size_s.bytes().all(|b| b.is_ascii_digit())
            && (size_s == "0" || !size_s.starts_with('0'));
        let size: u64 = size_ok
            .then(|| size_s.parse().ok())
            .flatten()
            .ok_or_else(|| bad(format!("tree size {size_s:?} is not a decimal number")))?;
        let root_s = lines
            .next()
            .ok_or_else(|| bad("no root hash line".into()))?;
        let root: [u8; 32] = B64
            .decode(root_s)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| bad(format!("root hash {root_s:?} is not 32 bytes of base64")))?;
        let extensions: Vec<String> = lines.map(str::to_string).collect();
        if extensions.iter().any(|e| e.is_empty()) {
            return Err(bad("an empty extension line".into()));
        }
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root: Hash32(root),
            extensions,
        })
    }
}

/// A checkpoint as a signed note: the whole text as read, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub raw: String,
    pub note: Note,
    pub checkpoint: Checkpoint,
}

impl SignedCheckpoint {
    pub fn parse(raw: &str) -> Result<SignedCheckpoint, SealError> {
        let note = Note::parse(raw).map_err(|e| SealError::MalformedCheckpoint(e.to_string()))?;
        let checkpoint = Checkpoint::parse_text(&note.text)?;
        Ok(SignedCheckpoint {
            raw: raw.to_string(),
            note,
            checkpoint,
        })
    }

    /// Check every key in `keys` signed it.
    pub fn verify(&self, keys: &[Verifier]) -> Result<(), NoteError> {
        for k in keys {
            self.note.verify(k)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_text_round_trips_and_bad_ones_are_named() {
        let c = Checkpoint {
            origin: origin_for(&[0xab; 16]),
            size: 912,
            root: Hash32([7; 32]),
            extensions: vec![],
        };
        let t = c.text();
        assert_eq!(
            t,
            "diskhist/abababababababababababababababab\n912\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n"
        );
        assert_eq!(Checkpoint::parse_text(&t).unwrap(), c);
        for bad in [
            "o\n012\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n",
            "o\n-1\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n",
            "o\n12\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcH\n",
            "o\n12\n",
            "\n12\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n",
            "o\n12\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=",
            "o\n12\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n\x0eext\n",
        ] {
            assert!(
                matches!(
                    Checkpoint::parse_text(bad),
                    Err(SealError::MalformedCheckpoint(_))
                ),
                "{bad:?}"
            );
        }
    }
}
