//! `STORE/seals`: every checkpoint sealed while recording (`serve` and
//! `ingest` with `--seal-key`), kept beside the store like `sessions`.
//!
//! Append-only text, mode 0600, one line per checkpoint:
//!
//! ```text
//! diskhist-seal v1 time_ns=1795415415000000000 size=912 note=<base64 of the signed note> prev=1a2b3c4d crc32c=5e6f7a8b
//! ```
//!
//! `crc32c` covers the line up to the space before `crc32c=`; `prev` is the
//! previous line's `crc32c` (`00000000` for the first), so a line removed,
//! reordered or edited without recomputing every later checksum shows, as
//! in `sessions`. The checksums only catch damage: what protects the
//! history is the copy of each checkpoint that left the machine
//! (`--seal-cmd`). Each line is written with one `write(2)` and synced.

use super::checkpoint::SignedCheckpoint;
use crate::store::layout;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

const MAGIC: &str = "diskhist-seal v1";

/// One line of `seals`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seal {
    pub time_ns: i64,
    pub size: u64,
    /// The signed checkpoint.
    pub note: String,
}

/// Why `seals` cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealsError {
    #[error("{path}: {error}")]
    Io { path: String, error: io::Error },
    #[error("{path}: line {line}: {what}")]
    Corrupt {
        path: String,
        line: usize,
        what: String,
    },
}

/// The open `seals` file, for appending.
pub struct SealsFile {
    file: File,
    path: String,
    prev: u32,
    /// The size of the last checkpoint in the file, if any.
    last_size: Option<u64>,
}

fn line_crc(body: &str) -> u32 {
    crc32c::crc32c(body.as_bytes())
}

impl SealsFile {
    /// Open (creating, 0600) `STORE/seals`; the last line's checksum is
    /// read so the chain goes on. A last line torn by a crash (no newline:
    /// a checkpoint being written) is cut, with a warning, so that
    /// recording can start again; any other damage is an error: nothing is
    /// appended after damage.
    pub fn open(store_dir: &Path) -> Result<SealsFile, SealsError> {
        let path = store_dir.join(layout::SEALS_FILE);
        cut_torn_line(&path)?;
        let seals = read_seals(store_dir)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(|error| SealsError::Io {
                path: path.display().to_string(),
                error,
            })?;
        let prev = seals.last().map_or(0, |(_, crc)| *crc);
        Ok(SealsFile {
            file,
            path: path.display().to_string(),
            prev,
            last_size: seals.last().map(|(s, _)| s.size),
        })
    }

    /// The size of the last checkpoint in the file when it was opened, if any.
    pub fn last_size(&self) -> Option<u64> {
        self.last_size
    }

    /// Append `seal` and sync.
    pub fn append(&mut self, seal: &Seal) -> Result<(), SealsError> {
        let body = format!(
            "{MAGIC} time_ns={} size={} note={} prev={:08x}",
            seal.time_ns,
            seal.size,
            B64.encode(seal.note.as_bytes()),
            self.prev
        );
        let crc = line_crc(&body);
        let line = format!("{body} crc32c={crc:08x}\n");
        let io = |error| SealsError::Io {
            path: self.path.clone(),
            error,
        };
        self.file.write_all(line.as_bytes()).map_err(io)?;
        self.file.sync_data().map_err(|error| SealsError::Io {
            path: self.path.clone(),
            error,
        })?;
        self.prev = crc;
        Ok(())
    }
}

/// Cut a last line that does not end in a newline.
fn cut_torn_line(path: &Path) -> Result<(), SealsError> {
    let io = |error| SealsError::Io {
        path: path.display().to_string(),
        error,
    };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(e)),
    };
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(());
    }
    let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    log::warn!(
        "{}: cutting a torn last line ({} bytes, a checkpoint being written when the \
         recorder stopped)",
        path.display(),
        bytes.len() - keep
    );
    let f = OpenOptions::new().write(true).open(path).map_err(io)?;
    f.set_len(keep as u64).map_err(io)?;
    f.sync_all().map_err(io)
}

/// Every seal in `STORE/seals` (none if there is no such file), with each
/// line's checksum.
pub fn read_seals(store_dir: &Path) -> Result<Vec<(Seal, u32)>, SealsError> {
    let path = store_dir.join(layout::SEALS_FILE);
    let p = path.display().to_string();
    let text = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(SealsError::Io { path: p, error }),
    };
    let corrupt = |line: usize, what: &str| SealsError::Corrupt {
        path: p.clone(),
        line,
        what: what.to_string(),
    };
    let text = String::from_utf8(text).map_err(|_| corrupt(0, "not UTF-8 text"))?;
    let mut out = Vec::new();
    let mut prev = 0u32;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let n = i + 1;
        let line = line
            .strip_suffix('\n')
            .ok_or_else(|| corrupt(n, "torn: the line does not end (a write cut short)"))?;
        let (body, crc) = line
            .rsplit_once(" crc32c=")
            .ok_or_else(|| corrupt(n, "no crc32c field"))?;
        let crc = (crc.len() == 8)
            .then(|| u32::from_str_radix(crc, 16).ok())
            .flatten()
            .ok_or_else(|| corrupt(n, "the crc32c field is not 8 hex digits"))?;
        if line_crc(body) != crc {
            return Err(corrupt(
                n,
                "checksum mismatch: the line was damaged or edited",
            ));
        }
        let rest = body
            .strip_prefix(MAGIC)
            .ok_or_else(|| corrupt(n, "not a seal line"))?;
        let mut fields = std::collections::HashMap::new();
        for f in rest.split_whitespace() {
            if let Some((k, v)) = f.split_once('=') {
                fields.insert(k, v);
            }
        }
        let get = |k: &str| {
            fields
                .get(k)
                .copied()
                .ok_or_else(|| corrupt(n, &format!("no {k} field")))
        };
        if u32::from_str_radix(get("prev")?, 16).ok() != Some(prev) {
            return Err(corrupt(
                n,
                "its prev field is not the previous line's checksum: a line was removed or reordered",
            ));
        }
        let note = B64
            .decode(get("note")?)
            .ok()
            .and_then(|v| String::from_utf8(v).ok())
            .ok_or_else(|| corrupt(n, "the note is not base64 text"))?;
        let seal = Seal {
            time_ns: get("time_ns")?
                .parse()
                .map_err(|_| corrupt(n, "bad time_ns"))?,
            size: get("size")?.parse().map_err(|_| corrupt(n, "bad size"))?,
            note,
        };
        if SignedCheckpoint::parse(&seal.note)
            .map(|c| c.checkpoint.size)
            .ok()
            != Some(seal.size)
        {
            return Err(corrupt(n, "the note is not a checkpoint of that size"));
        }
        out.push((seal, crc));
        prev = crc;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::checkpoint::Checkpoint;
    use crate::seal::note::{Note, Signer};
    use crate::units::Hash32;

    #[test]
    fn seals_round_trip_and_edits_show() {
        let dir = tempfile::tempdir().unwrap();
        let s = Signer::generate("k", [9; 32]).unwrap();
        let mut f = SealsFile::open(dir.path()).unwrap();
        for size in [3u64, 7] {
            let c = Checkpoint {
                origin: "diskhist/00".into(),
                size,
                root: Hash32([size as u8; 32]),
                extensions: vec![],
            };
            f.append(&Seal {
                time_ns: 5,
                size,
                note: Note::sign(&c.text(), &s).unwrap(),
            })
            .unwrap();
        }
        drop(f);
        let got = read_seals(dir.path()).unwrap();
        assert_eq!(got.iter().map(|(s, _)| s.size).collect::<Vec<_>>(), [3, 7]);
        // Reopened, the chain goes on.
        let mut f = SealsFile::open(dir.path()).unwrap();
        f.append(&got[0].0).unwrap();
        assert_eq!(read_seals(dir.path()).unwrap().len(), 3);
        let p = dir.path().join("seals");
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        std::fs::write(&p, format!("{}\n{}\n", lines[1], lines[2])).unwrap();
        let e = read_seals(dir.path()).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("removed"), "{e}");
        std::fs::write(&p, text.replace("size=7", "size=8")).unwrap();
        assert!(read_seals(dir.path()).is_err());
        // A torn last line is reported by readers, and cut when a recorder
        // opens the file again.
        std::fs::write(&p, &text[..text.len() - 30]).unwrap();
        let e = read_seals(dir.path()).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("torn"), "{e}");
        SealsFile::open(dir.path()).unwrap();
        assert_eq!(read_seals(dir.path()).unwrap().len(), 2);
    }
}
