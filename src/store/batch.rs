//! Batches: records that become part of the history all together or not at
//! all (an image import: its extents and the mark naming the image).
//!
//! While a batch is open its records are in the log, but no reader counts
//! them: a reader's newest state is the one before the batch. If the batch
//! does not complete (the importer is interrupted, fails, or is killed),
//! the next writer cuts its records off the log, as it cuts a torn tail,
//! and puts the index back to where it was; the store ends exactly as it
//! was before the batch began.
//!
//! # `STORE/batch`
//!
//! Replaced atomically (temporary file, fsync, rename, fsync of the
//! directory) when a batch begins and when it ends, so a reader sees one
//! whole version or another. Little-endian.
//!
//! ```text
//!  0          8          16     17          25           33      37        37+n   41+n
//!  +----------+----------+------+-----------+------------+-------+---------+------+
//!  |"DHBATCH1"| counter  | open | first_seq | log_offset | n     | manifest|crc32c|
//!  +----------+----------+------+-----------+------------+-------+---------+------+
//! ```
//!
//! - `counter` counts the batches ever begun in this store: a reader that
//!   reads the file before and after taking in new records, and finds the
//!   same bytes, knows no batch began or ended in between.
//! - `open` is 1 from just before the batch's first record is written to
//!   just after its last one is durable, 0 otherwise.
//! - `first_seq` and `log_offset`: the batch's first record and where it
//!   begins in the log (where the log is cut if the batch does not end).
//! - `manifest`: the index manifest as it was when the batch began. The
//!   writer writes the whole index out before a batch begins and merges no
//!   run of the batch with an older one while it is open, so restoring this
//!   manifest (and removing the runs it does not name) undoes the batch's
//!   index entries.
//!
//! A missing file is a store in which no batch ever began.

use crate::store::error::{Result, StoreError};
use crate::store::files;
use crate::store::index::Manifest;
use crate::store::layout;
use crate::units::Seq;
use std::path::Path;

const MAGIC: &[u8; 8] = b"DHBATCH1";
const B_COUNTER: usize = MAGIC.len();
const B_OPEN: usize = B_COUNTER + 8;
const B_FIRST_SEQ: usize = B_OPEN + 1;
const B_LOG_OFFSET: usize = B_FIRST_SEQ + 8;
const B_MANIFEST_LEN: usize = B_LOG_OFFSET + 8;
const B_MANIFEST: usize = B_MANIFEST_LEN + 4;
const CRC_LEN: usize = 4;

/// The batch file's content.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchState {
    pub counter: u64,
    /// The open batch, if one is open.
    pub open: Option<OpenBatch>,
}

/// A batch that has begun and not ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenBatch {
    pub first_seq: Seq,
    pub log_offset: u64,
    /// The index manifest when the batch began: its head is the state
    /// before the batch.
    pub manifest: Manifest,
}

impl BatchState {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&self.counter.to_le_bytes());
        let (open, first, offset, manifest) = match &self.open {
            Some(o) => (1u8, o.first_seq.0, o.log_offset, o.manifest.encode()),
            None => (0u8, 0, 0, Vec::new()),
        };
        b.push(open);
        b.extend_from_slice(&first.to_le_bytes());
        b.extend_from_slice(&offset.to_le_bytes());
        b.extend_from_slice(&(manifest.len() as u32).to_le_bytes());
        b.extend_from_slice(&manifest);
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// `None` unless `b` is a whole, undamaged batch file.
    pub fn decode(b: &[u8]) -> Option<BatchState> {
        if b.len() < B_MANIFEST + CRC_LEN || &b[..MAGIC.len()] != MAGIC {
            return None;
        }
        let (body, crc) = b.split_at(b.len() - CRC_LEN);
        if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().ok()?) {
            return None;
        }
        let u64_at = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().unwrap());
        let n = u32::from_le_bytes(body[B_MANIFEST_LEN..B_MANIFEST].try_into().unwrap()) as usize;
        if body.len() != B_MANIFEST + n {
            return None;
        }
        let open = match body[B_OPEN] {
            0 if n == 0 => None,
            1 => Some(OpenBatch {
                first_seq: Seq(u64_at(B_FIRST_SEQ)),
                log_offset: u64_at(B_LOG_OFFSET),
                manifest: Manifest::decode(&body[B_MANIFEST..])?,
            }),
            _ => return None,
        };
        Some(BatchState {
            counter: u64_at(B_COUNTER),
            open,
        })
    }
}

/// The batch file's bytes (empty when there is none), for a reader to
/// compare before and after a scan.
pub fn read_raw(dir: &Path) -> Result<Vec<u8>> {
    let path = dir.join(layout::BATCH_FILE);
    match std::fs::read(&path) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(StoreError::io(&path, e)),
    }
}

/// Decode what [`read_raw`] returned.
pub fn parse(dir: &Path, raw: &[u8]) -> Result<BatchState> {
    if raw.is_empty() {
        return Ok(BatchState::default());
    }
    BatchState::decode(raw).ok_or_else(|| {
        StoreError::corrupted(
            dir.join(layout::BATCH_FILE),
            "batch file checksum mismatch or bad layout (damaged or edited)",
        )
    })
}

pub fn read(dir: &Path) -> Result<BatchState> {
    parse(dir, &read_raw(dir)?)
}

/// Replace the batch file; durable when this returns.
pub fn write(dir: &Path, state: &BatchState) -> Result<()> {
    match files::replace_atomically(&dir.join(layout::BATCH_FILE), &state.encode())? {
        files::Replaced::Durable => Ok(()),
        files::Replaced::NotDurable(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::{Hash32, TimeNs};

    #[test]
    fn round_trip_and_damage() {
        let closed = BatchState {
            counter: 7,
            open: None,
        };
        assert_eq!(BatchState::decode(&closed.encode()), Some(closed.clone()));
        let open = BatchState {
            counter: 8,
            open: Some(OpenBatch {
                first_seq: Seq(41),
                log_offset: 123_456,
                manifest: Manifest {
                    generation: 3,
                    indexed_through: Seq(40),
                    log_end: 123_456,
                    head_time: TimeNs(99),
                    head_chain: Hash32([5; 32]),
                    bytes_written: 4096,
                    runs: vec![(Seq(1), Seq(40))],
                },
            }),
        };
        let b = open.encode();
        assert_eq!(BatchState::decode(&b), Some(open));
        for i in 0..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 0x10;
            assert_eq!(
                BatchState::decode(&bad),
                None,
                "flip at byte {i} undetected"
            );
        }
        assert_eq!(BatchState::decode(&b[..b.len() - 1]), None);
    }
}
