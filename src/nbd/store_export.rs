//! The store as an NBD export: every WRITE, WRITE_ZEROES, TRIM and FLUSH
//! becomes one record, stamped with the time it is applied.
//!
//! All connections share one [`Writer`] behind one mutex; the order in which
//! the writer appends is the order of the history. The time is taken under
//! that mutex, just before the append, so times follow the append order; no
//! two records share a time (a clock that has not moved on or stepped back
//! is held one nanosecond after the last record, `CLOCK_HELD`), so a state
//! named by its time never changes once it exists.
//!
//! Durability: FLUSH appends a Flush record and then syncs the log; a write
//! with FUA (or any write under [`SyncMode::Always`]) is synced before its
//! reply. A failed sync poisons the writer: the failing request gets EIO
//! (ENOSPC if the sync failed for want of space), the connections are closed
//! and the server stops (`ExportError::Fatal`); a new `serve` resumes from
//! what the log holds.
//!
//! A full filesystem: an operation whose record cannot be written is not
//! recorded and is answered ENOSPC (`ExportError::NoSpace`); the server goes
//! on, reads still work, and writes are recorded again as soon as space is
//! freed, on the same connections. A FLUSH whose own record cannot be
//! written still syncs the log (so what was acknowledged before it is
//! durable) but answers ENOSPC, because the history lacks the Flush record.

use std::io::ErrorKind;

use parking_lot::Mutex;

use super::export::{Export, ExportError};
use crate::store::{Head, Op, OpFlags, StoreError, Writer};
use crate::units::Geometry;

/// When an acknowledged write is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// On FLUSH and on writes with FUA (what the NBD protocol promises).
    Flush,
    /// Before every write's reply.
    Always,
}

impl SyncMode {
    pub fn name(self) -> &'static str {
        match self {
            SyncMode::Flush => "flush",
            SyncMode::Always => "always",
        }
    }
}

pub struct StoreExport {
    writer: Mutex<Writer>,
    geometry: Geometry,
    sync: SyncMode,
}

impl StoreExport {
    pub fn new(writer: Writer, sync: SyncMode) -> StoreExport {
        StoreExport {
            geometry: writer.geometry(),
            writer: Mutex::new(writer),
            sync,
        }
    }

    pub fn head(&self) -> Head {
        self.writer.lock().head()
    }

    /// Seal the history if a checkpoint is due (see `Writer::seal_if_due`).
    pub fn seal_if_due(&self) -> Result<(), StoreError> {
        self.writer.lock().seal_if_due(false)
    }

    /// Close the writer (flushing the index).
    pub fn close(self) -> Result<(), StoreError> {
        self.writer.into_inner().close()
    }

    fn record(&self, op: Op<'_>, fua: bool) -> Result<(), ExportError> {
        let flags = if fua {
            OpFlags::FUA
        } else {
            OpFlags::default()
        };
        let mut w = self.writer.lock();
        match w.append_now(op, flags) {
            Ok(_) if fua || self.sync == SyncMode::Always || op == Op::Flush => sync(&mut w),
            Ok(_) => Ok(()),
            Err(e) => {
                if op == Op::Flush {
                    sync(&mut w)?;
                }
                Err(to_export_error(e))
            }
        }
    }
}

/// Sync the log; whatever the error, the writer is poisoned now: fatal.
fn sync(w: &mut Writer) -> Result<(), ExportError> {
    w.sync().map_err(|e| ExportError::Fatal {
        out_of_space: is_out_of_space(&e),
        why: format!("fsync failed: {e}"),
    })
}

fn is_out_of_space(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Io { error, .. }
            if matches!(error.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded)
    )
}

fn to_export_error(e: StoreError) -> ExportError {
    match e {
        StoreError::OutOfRange { .. } => ExportError::OutOfRange,
        // A failed fsync poisons the writer; so may a log that could not be
        // cut back after a failed write.
        StoreError::Poisoned => ExportError::fatal(e.to_string()),
        _ if is_out_of_space(&e) => ExportError::NoSpace(e.to_string()),
        StoreError::Io { .. } => ExportError::Io(e.to_string()),
        other => ExportError::Io(other.to_string()),
    }
}

impl Export for StoreExport {
    fn size_bytes(&self) -> u64 {
        self.geometry.size_bytes
    }

    fn preferred_block_size(&self) -> u32 {
        self.geometry.block_size
    }

    fn read(&self, offset_bytes: u64, buf: &mut [u8]) -> Result<(), ExportError> {
        self.writer
            .lock()
            .read_at(offset_bytes, buf)
            .map_err(to_export_error)
    }

    fn write(&self, offset_bytes: u64, data: &[u8], fua: bool) -> Result<(), ExportError> {
        self.record(Op::Write { offset_bytes, data }, fua)
    }

    fn write_zeroes(
        &self,
        offset_bytes: u64,
        length_bytes: u64,
        fua: bool,
    ) -> Result<(), ExportError> {
        self.record(
            Op::Zero {
                offset_bytes,
                length_bytes,
            },
            fua,
        )
    }

    fn trim(&self, offset_bytes: u64, length_bytes: u64, fua: bool) -> Result<(), ExportError> {
        self.record(
            Op::Trim {
                offset_bytes,
                length_bytes,
            },
            fua,
        )
    }

    fn flush(&self) -> Result<(), ExportError> {
        self.record(Op::Flush, false)
    }
}
