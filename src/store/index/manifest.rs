//! `index/MANIFEST`: which runs make up the index and how far it reaches
//! (record, log offset, and the head there), replaced atomically at each
//! index flush or merge. Its magic's last byte is the index format; a
//! manifest of another format is not read (see the module docs of
//! [`super`]).
//!
//! ```text
//!  0           8            16                 24         32          40
//!  +-----------+------------+------------------+----------+-----------+
//!  |"DHMANIF7" | generation | indexed_through  | log_end  | head_time |
//!  +-----------+------------+------------------+----------+-----------+
//!  40                  72              80       84             84+16n   +4
//!  +-------------------+---------------+--------+--------------+--------+
//!  | head_chain (32)   | bytes_written | n runs | (first,last)*| crc32c |
//!  +-------------------+---------------+--------+--------------+--------+
//! ```

use crate::store::error::{Result, StoreError};
use crate::store::layout;
use crate::units::{Hash32, Seq, TimeNs};
use std::path::Path;

/// Manifest magic; the last byte is the index format version (7: `seqs`
/// holds every 16th record's offset; 6: `seqs` entries hold the log offset
/// only; 5: runs of delta-packed entries and
/// 64-bit dedup keys; 4 added the Merkle tree's stored hashes,
/// `index/tree/`).
const MANIFEST_MAGIC: &[u8; 8] = b"DHMANIF7";
/// The index format this diskhist writes (an ASCII digit).
pub const INDEX_FORMAT: u8 = MANIFEST_MAGIC[7];
const MANIFEST_MAGIC_STEM: &[u8; 7] = b"DHMANIF";

/// Which runs exist and how far the index reaches.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest {
    pub generation: u64,
    pub indexed_through: Seq,
    /// Log offset just past record `indexed_through`.
    pub log_end: u64,
    pub head_time: TimeNs,
    pub head_chain: Hash32,
    /// Bytes written, zeroed or trimmed by records up to `indexed_through`.
    pub bytes_written: u64,
    /// Seq ranges of the runs, oldest first; each has a `.run` and a `.dedup`.
    pub runs: Vec<(Seq, Seq)>,
}

impl Manifest {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(MANIFEST_MAGIC);
        for v in [
            self.generation,
            self.indexed_through.0,
            self.log_end,
            self.head_time.0 as u64,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&self.head_chain.0);
        b.extend_from_slice(&self.bytes_written.to_le_bytes());
        b.extend_from_slice(&(self.runs.len() as u32).to_le_bytes());
        for (a, z) in &self.runs {
            b.extend_from_slice(&a.0.to_le_bytes());
            b.extend_from_slice(&z.0.to_le_bytes());
        }
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// `None` if the bytes are not a whole manifest of this index version
    /// (see [`manifest_version`] to tell another version from damage).
    pub fn decode(b: &[u8]) -> Option<Manifest> {
        const FIXED: usize = 8 + 32 + 32 + 8 + 4;
        if b.len() < FIXED + 4 || &b[..8] != MANIFEST_MAGIC {
            return None;
        }
        let (body, crc) = b.split_at(b.len() - 4);
        if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().ok()?) {
            return None;
        }
        let u = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().unwrap());
        let n = u32::from_le_bytes(body[80..84].try_into().unwrap()) as usize;
        if body.len() != FIXED + n * 16 {
            return None;
        }
        let runs = (0..n)
            .map(|i| (Seq(u(FIXED + i * 16)), Seq(u(FIXED + i * 16 + 8))))
            .collect();
        Some(Manifest {
            generation: u(8),
            indexed_through: Seq(u(16)),
            log_end: u(24),
            head_time: TimeNs(u(32) as i64),
            head_chain: Hash32(body[40..72].try_into().unwrap()),
            bytes_written: u(72),
            runs,
        })
    }
}

/// The index format version a manifest claims, if it looks like one.
pub fn manifest_version(b: &[u8]) -> Option<u8> {
    (b.len() >= 8 && &b[..7] == MANIFEST_MAGIC_STEM).then(|| b[7])
}

pub fn run_file_names(first: Seq, last: Seq) -> (String, String) {
    let stem = format!("{:016x}-{:016x}", first.0, last.0);
    (format!("{stem}.run"), format!("{stem}.dedup"))
}

/// The manifest; an empty one when there is none or it is of another
/// index version (the index is then rebuilt from the log). A damaged
/// manifest is an error.
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(layout::INDEX_DIR).join(layout::MANIFEST_FILE);
    match std::fs::read(&path) {
        Ok(b) => match Manifest::decode(&b) {
            Some(m) => Ok(m),
            None => match manifest_version(&b) {
                Some(v) if v != MANIFEST_MAGIC[7] && v.is_ascii_digit() => {
                    log::info!(
                        "{}: index of another format ({}); reading the log instead, the \
                         next writer rebuilds the index",
                        path.display(),
                        v as char
                    );
                    Ok(Manifest::default())
                }
                _ => Err(StoreError::corrupted(
                    &path,
                    "index manifest checksum mismatch or bad layout (the index was damaged \
                     or edited; delete index/ to have it rebuilt from the log)",
                )),
            },
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest::default()),
        Err(e) => Err(StoreError::io(&path, e)),
    }
}
