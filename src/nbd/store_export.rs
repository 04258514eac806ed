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
//! Durability: FLUSH appends a Flush record, a write with FUA (or any write
//! under [`SyncMode::Always`]) its own; the reply waits until the log is
//! durable (fdatasync) past every record other than a Flush appended
//! before it, so past everything the reply vouches for.
//!
//! Group commit: the syncs are made by one thread, the committer, without
//! holding the writer, so records go on being appended (and replies that
//! need no sync go on being sent) while a sync runs. Each sync covers
//! every request that was waiting when it started, from every connection;
//! requests that arrive during it wait for the next one. A FLUSH with
//! nothing new to make durable (only Flush records since the last sync)
//! is answered at once: its record is in the log and becomes durable with
//! the next sync. The session's end says how many syncs served how many
//! requests.
//!
//! A failed sync poisons the writer: every request waiting for it, and
//! every later one, gets EIO (ENOSPC if the sync failed for want of
//! space), the connections are closed and the server stops
//! (`ExportError::Fatal`); a new `serve` resumes from what the log holds.
//!
//! A full filesystem: an operation whose record cannot be written is not
//! recorded and is answered ENOSPC (`ExportError::NoSpace`); the server goes
//! on, reads still work, and writes are recorded again as soon as space is
//! freed, on the same connections. A FLUSH whose own record cannot be
//! written still waits for the log to be durable (so what was acknowledged
//! before it is durable) but answers ENOSPC, because the history lacks the
//! Flush record.

use std::fs::File;
use std::io::ErrorKind;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

use super::export::{Done, Export, ExportError, Request};
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

/// What group commit did over a session, for its last log line and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// fdatasyncs of the log made by the committer.
    pub syncs: u64,
    /// Requests whose reply waited for durability (FLUSH, FUA writes,
    /// every write under `--sync always`).
    pub durable_requests: u64,
    /// Of those, answered without a sync of their own: nothing new to make
    /// durable, or already covered by a sync made for another.
    pub without_sync: u64,
}

pub struct StoreExport {
    shared: Arc<Shared>,
    committer: Option<JoinHandle<()>>,
    geometry: Geometry,
    sync: SyncMode,
}

/// What the connections and the committer share.
struct Shared {
    writer: Mutex<Recorder>,
    commit: Mutex<Commit>,
    /// The committer waits here for requests to make durable.
    wake: Condvar,
}

struct Recorder {
    writer: Writer,
    /// Where the log ends after its last record other than a Flush: what a
    /// FLUSH must have made durable before its reply.
    data_end_bytes: u64,
}

#[derive(Default)]
struct Commit {
    /// Requests waiting for the log to be durable past their `end_bytes`.
    waiting: Vec<Waiter>,
    /// Where the committer's last sync left the log durable.
    synced_end_bytes: u64,
    /// A sync failed: every request from now on gets this.
    failed: Option<ExportError>,
    stop: bool,
    stats: CommitStats,
}

struct Waiter {
    end_bytes: u64,
    /// The reply once durable (ENOSPC for a FLUSH whose record was not
    /// written).
    outcome: Result<(), ExportError>,
    done: Done,
}

impl StoreExport {
    pub fn new(writer: Writer, sync: SyncMode) -> Result<StoreExport, StoreError> {
        let log = writer.log_for_sync()?;
        let synced = writer.synced_end_bytes();
        let geometry = writer.geometry();
        let shared = Arc::new(Shared {
            writer: Mutex::new(Recorder {
                data_end_bytes: writer.log_end_bytes(),
                writer,
            }),
            commit: Mutex::new(Commit {
                synced_end_bytes: synced,
                ..Commit::default()
            }),
            wake: Condvar::new(),
        });
        let committer = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("group-commit".into())
                .spawn(move || commit_loop(&shared, &log))
                .map_err(|e| StoreError::io(std::path::Path::new("group-commit thread"), e))?
        };
        Ok(StoreExport {
            geometry,
            shared,
            committer: Some(committer),
            sync,
        })
    }

    pub fn head(&self) -> Head {
        self.shared.writer.lock().writer.head()
    }

    /// What group commit has done so far.
    pub fn commit_stats(&self) -> CommitStats {
        self.shared.commit.lock().stats
    }

    /// Stop the committer (every request has had its reply by then: the
    /// connections have ended) and close the writer (flushing the index).
    pub fn close(mut self) -> Result<(), StoreError> {
        self.stop_committer();
        let shared = Arc::clone(&self.shared);
        drop(self);
        match Arc::try_unwrap(shared) {
            Ok(s) => s.writer.into_inner().writer.close(),
            Err(_) => unreachable!("the committer has ended: nothing else holds the writer"),
        }
    }

    fn stop_committer(&mut self) {
        if let Some(t) = self.committer.take() {
            self.shared.commit.lock().stop = true;
            self.shared.wake.notify_one();
            if t.join().is_err() {
                log::error!("the group-commit thread panicked");
            }
        }
    }

    /// Append `op`'s record; call `done` when its reply may go out.
    fn record(&self, op: Op<'_>, fua: bool, done: Done) {
        let flags = if fua {
            OpFlags::FUA
        } else {
            OpFlags::default()
        };
        let durable = fua || op == Op::Flush || self.sync == SyncMode::Always;
        let (end_bytes, outcome) = {
            let mut rec = self.shared.writer.lock();
            let appended = rec.writer.append_now(op, flags);
            if appended.is_ok() && op != Op::Flush {
                rec.data_end_bytes = rec.writer.log_end_bytes();
            }
            let outcome = match appended {
                Ok(_) => Ok(()),
                Err(e) => match to_export_error(e) {
                    // Nothing more is durable, ever.
                    e @ ExportError::Fatal { .. } => Err(e),
                    // A FLUSH still vouches for what came before it.
                    e if op == Op::Flush => Err(e),
                    e => {
                        drop(rec);
                        return done(Err(e));
                    }
                },
            };
            let fatal = matches!(outcome, Err(ExportError::Fatal { .. }));
            if !durable || fatal {
                drop(rec);
                return done(outcome);
            }
            if rec.writer.synced_end_bytes() >= rec.data_end_bytes {
                drop(rec);
                let mut c = self.shared.commit.lock();
                c.stats.durable_requests += 1;
                c.stats.without_sync += 1;
                drop(c);
                return done(outcome);
            }
            (rec.data_end_bytes, outcome)
        };
        let mut c = self.shared.commit.lock();
        c.stats.durable_requests += 1;
        if let Some(e) = &c.failed {
            let e = e.clone();
            drop(c);
            return done(Err(e));
        }
        if end_bytes <= c.synced_end_bytes {
            c.stats.without_sync += 1;
            drop(c);
            return done(outcome);
        }
        c.waiting.push(Waiter {
            end_bytes,
            outcome,
            done,
        });
        self.shared.wake.notify_one();
    }

    /// `record`, waiting for the reply.
    fn record_and_wait(&self, op: Op<'_>, fua: bool) -> Result<(), ExportError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.record(
            op,
            fua,
            Box::new(move |outcome| {
                let _ = tx.send(outcome);
            }),
        );
        rx.recv()
            .unwrap_or_else(|_| Err(ExportError::fatal("the group-commit thread has gone")))
    }
}

impl Drop for StoreExport {
    fn drop(&mut self) {
        self.stop_committer();
    }
}

/// The committer: while requests wait, sync the log as far as it ends when
/// the sync starts, then answer every request that covers.
fn commit_loop(shared: &Shared, log: &File) {
    loop {
        {
            let mut c = shared.commit.lock();
            while c.waiting.is_empty() && !c.stop {
                shared.wake.wait(&mut c);
            }
            if c.waiting.is_empty() {
                return;
            }
        }
        let point = shared.writer.lock().writer.sync_point();
        let result = point.and_then(|p| match log.sync_data() {
            Ok(()) => shared
                .writer
                .lock()
                .writer
                .synced_through(p)
                .map(|()| p.end_bytes()),
            Err(e) => Err(shared.writer.lock().writer.sync_failed(e)),
        });
        let answered: Vec<(Done, Result<(), ExportError>)> = {
            let mut c = shared.commit.lock();
            c.stats.syncs += 1;
            match result {
                Ok(end_bytes) => {
                    c.synced_end_bytes = c.synced_end_bytes.max(end_bytes);
                    let (now, later) = std::mem::take(&mut c.waiting)
                        .into_iter()
                        .partition(|w| w.end_bytes <= end_bytes);
                    c.waiting = later;
                    let n = now.len() as u64;
                    c.stats.without_sync += n.saturating_sub(1);
                    now.into_iter().map(|w| (w.done, w.outcome)).collect()
                }
                Err(e) => {
                    let e = ExportError::Fatal {
                        out_of_space: is_out_of_space(&e),
                        why: format!("fsync failed: {e}"),
                    };
                    c.failed = Some(e.clone());
                    std::mem::take(&mut c.waiting)
                        .into_iter()
                        .map(|w| (w.done, Err(e.clone())))
                        .collect()
                }
            }
        };
        for (done, outcome) in answered {
            done(outcome);
        }
    }
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
        self.shared
            .writer
            .lock()
            .writer
            .read_at(offset_bytes, buf)
            .map_err(to_export_error)
    }

    fn write(&self, offset_bytes: u64, data: &[u8], fua: bool) -> Result<(), ExportError> {
        self.record_and_wait(Op::Write { offset_bytes, data }, fua)
    }

    fn write_zeroes(
        &self,
        offset_bytes: u64,
        length_bytes: u64,
        fua: bool,
    ) -> Result<(), ExportError> {
        self.record_and_wait(
            Op::Zero {
                offset_bytes,
                length_bytes,
            },
            fua,
        )
    }

    fn trim(&self, offset_bytes: u64, length_bytes: u64, fua: bool) -> Result<(), ExportError> {
        self.record_and_wait(
            Op::Trim {
                offset_bytes,
                length_bytes,
            },
            fua,
        )
    }

    fn flush(&self) -> Result<(), ExportError> {
        self.record_and_wait(Op::Flush, false)
    }

    fn submit(&self, req: Request<'_>, done: Done) {
        match req {
            Request::Write {
                offset_bytes,
                data,
                fua,
            } => self.record(Op::Write { offset_bytes, data }, fua, done),
            Request::Zeroes {
                offset_bytes,
                length_bytes,
                fua,
            } => self.record(
                Op::Zero {
                    offset_bytes,
                    length_bytes,
                },
                fua,
                done,
            ),
            Request::Trim {
                offset_bytes,
                length_bytes,
                fua,
            } => self.record(
                Op::Trim {
                    offset_bytes,
                    length_bytes,
                },
                fua,
                done,
            ),
            Request::Flush => self.record(Op::Flush, false, done),
        }
    }
}
