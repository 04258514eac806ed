//! What an auditor is handed: signed checkpoints (`Note::parse`,
//! `SignedCheckpoint::parse`) and proof bundles (`Bundle::parse`), then
//! `audit` against a fixed key. Never panics; a bundle accepted prints
//! back (`to_text`) to exactly the bytes read; a checkpoint accepted has
//! its text as `Checkpoint::text` prints it; nothing unsigned by the key
//! passes the audit.

use diskhist::seal::bundle::{audit, Bundle};
use diskhist::seal::checkpoint::{Checkpoint, SignedCheckpoint};
use diskhist::seal::note::{Note, Signer};

/// Run every check of this target on one input; panics on a failure. The
/// input is a checkpoint, then (after a NUL byte, if any) a bundle.
pub fn check(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let (c, b) = s.split_once('\0').unwrap_or((s, ""));
    if let Ok(n) = Note::parse(c) {
        assert!(n.text.ends_with('\n'));
    }
    let key = Signer::generate("fuzz", [7; 32]).unwrap();
    let cp = SignedCheckpoint::parse(c);
    if let Ok(cp) = &cp {
        assert_eq!(cp.checkpoint.text(), cp.note.text, "{c:?}");
        assert_eq!(
            Checkpoint::parse_text(&cp.note.text).as_ref().ok(),
            Some(&cp.checkpoint)
        );
    }
    let bundle = Bundle::parse(b);
    if let Ok(bundle) = &bundle {
        assert_eq!(bundle.to_text(), b, "a bundle prints back to what was read");
    }
    if let (Ok(cp), Ok(bundle)) = (cp, bundle) {
        let signed_by_key = cp.verify(&[key.verifier()]).is_ok();
        if audit(&[key.verifier()], &cp, &bundle, None).is_ok() {
            assert!(
                signed_by_key,
                "audit passed a checkpoint the key did not sign"
            );
        }
    }
    // A checkpoint signed here always opens and verifies.
    if let Ok(text) = Checkpoint::parse_text(c).map(|x| x.text()) {
        let note = Note::sign(&text, &key).unwrap();
        let back = SignedCheckpoint::parse(&note).unwrap();
        back.verify(&[key.verifier()]).unwrap();
    }
}
