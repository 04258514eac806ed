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
//! durable (fdatasync) through that record, so through everything appended
//! before it.
//!
//! Group commit: the syncs are made by one thread, the committer, without
//! holding the writer, so records go on being appended (and replies that
//! need no sync go on being sent) while a sync runs. Each sync covers
//! every request that was waiting when it started, from every connection;
//! requests that arrive during it wait for the next one. The session's end
//! says how many syncs served how many requests.
//!
//! Even a FLUSH with nothing new to make durable waits for its own record
//! to be: a failed sync cuts the log back to the last durable record, and
//! a record left undurable behind an acknowledged FLUSH would be cut (or,
//! if the cut itself fails half-way on a failing disk, left damaged) although
//! the client was told its flush succeeded. Under load it shares a sync
//! with the others anyway.
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
    /// Of those, answered by a sync made for another (or one made
    /// already).
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
    writer: Mutex<Writer>,
    commit: Mutex<Commit>,
    /// The committer waits here for requests to make durable.
    wake: Condvar,
    /// Called by the committer before each fdatasync: tests hold it there
    /// or make the sync fail.
    #[cfg(test)]
    before_sync: Mutex<Option<BeforeSync>>,
}

#[cfg(test)]
type BeforeSync = Box<dyn FnMut() -> Option<std::io::Error> + Send>;

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
            writer: Mutex::new(writer),
            commit: Mutex::new(Commit {
                synced_end_bytes: synced,
                ..Commit::default()
            }),
            wake: Condvar::new(),
            #[cfg(test)]
            before_sync: Mutex::new(None),
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
        self.shared.writer.lock().head()
    }

    /// Seal the history if a checkpoint is due (see `Writer::seal_if_due`).
    pub fn seal_if_due(&self) -> Result<(), StoreError> {
        self.shared.writer.lock().seal_if_due(false)
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
            Ok(s) => s.writer.into_inner().close(),
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
            let appended = rec.append_now(op, flags);
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
            let end_bytes = rec.log_end_bytes();
            if rec.synced_end_bytes() >= end_bytes {
                // Synced already (a FLUSH whose record was refused, after
                // an index flush's sync).
                drop(rec);
                let mut c = self.shared.commit.lock();
                c.stats.durable_requests += 1;
                c.stats.without_sync += 1;
                drop(c);
                return done(outcome);
            }
            (end_bytes, outcome)
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
        let point = shared.writer.lock().sync_point();
        let result = point.and_then(|p| match sync_log(shared, log) {
            Ok(()) => shared
                .writer
                .lock()
                .synced_through(p)
                .map(|()| p.end_bytes()),
            Err(e) => Err(shared.writer.lock().sync_failed(e)),
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

fn sync_log(_shared: &Shared, log: &File) -> std::io::Result<()> {
    #[cfg(test)]
    if let Some(hook) = _shared.before_sync.lock().as_mut() {
        if let Some(e) = hook() {
            return Err(e);
        }
    }
    log.sync_data()
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    const SIZE: u64 = 1 << 20;

    fn export(dir: &std::path::Path, sync: SyncMode) -> StoreExport {
        let store = dir.join("s");
        Writer::init(&store, SIZE, 4096).unwrap();
        StoreExport::new(Writer::open(&store).unwrap(), sync).unwrap()
    }

    /// The committer's next sync waits until the returned sender says go
    /// (with the error to fail with, if any); syncs after it go ahead.
    fn hold_next_sync(e: &StoreExport) -> (mpsc::Receiver<()>, mpsc::Sender<Option<i32>>) {
        let (held_tx, held_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<Option<i32>>();
        let mut first = true;
        *e.shared.before_sync.lock() = Some(Box::new(move || {
            if !std::mem::take(&mut first) {
                return None;
            }
            held_tx.send(()).unwrap();
            go_rx.recv().unwrap().map(std::io::Error::from_raw_os_error)
        }));
        (held_rx, go_tx)
    }

    /// Submit `req`; its outcome arrives on the returned receiver.
    fn submit(e: &StoreExport, req: Request<'_>) -> mpsc::Receiver<Result<(), ExportError>> {
        let (tx, rx) = mpsc::channel();
        e.submit(
            req,
            Box::new(move |o| {
                tx.send(o).unwrap();
            }),
        );
        rx
    }

    fn write(offset_bytes: u64, data: &[u8], fua: bool) -> Request<'_> {
        Request::Write {
            offset_bytes,
            data,
            fua,
        }
    }

    fn pending(rx: &mpsc::Receiver<Result<(), ExportError>>) -> bool {
        matches!(rx.try_recv(), Err(mpsc::TryRecvError::Empty))
    }

    fn outcome(rx: &mpsc::Receiver<Result<(), ExportError>>) -> Result<(), ExportError> {
        rx.recv_timeout(Duration::from_secs(10))
            .expect("no reply within 10 s")
    }

    #[test]
    fn one_sync_covers_every_flush_and_fua_write_waiting_when_it_starts() {
        let dir = tempfile::tempdir().unwrap();
        let e = export(dir.path(), SyncMode::Flush);
        let (held, go) = hold_next_sync(&e);
        let a = [1u8; 4096];
        // A plain write is answered at once; the flush after it waits for
        // the sync, which is held.
        assert_eq!(outcome(&submit(&e, write(0, &a, false))), Ok(()));
        let first = submit(&e, Request::Flush);
        held.recv().unwrap();
        assert!(pending(&first));
        // Meanwhile, as from other connections: writes, FUA writes and
        // flushes; the plain ones are answered, the others wait.
        let mut waiting = Vec::new();
        for i in 1..20u64 {
            assert_eq!(outcome(&submit(&e, write(i * 4096, &a, false))), Ok(()));
            waiting.push(submit(&e, write(i * 4096, &a, true)));
            waiting.push(submit(&e, Request::Flush));
        }
        assert!(waiting.iter().all(pending));
        go.send(None).unwrap();
        assert_eq!(outcome(&first), Ok(()));
        for w in &waiting {
            assert_eq!(outcome(w), Ok(()));
        }
        // Two syncs: the held one, then one for all that waited behind it.
        let stats = e.commit_stats();
        assert_eq!(stats.syncs, 2, "{stats:?}");
        assert_eq!(
            stats.durable_requests,
            1 + waiting.len() as u64,
            "{stats:?}"
        );
        // A flush with nothing new still makes its own record durable.
        let head = e.head().seq;
        assert_eq!(outcome(&submit(&e, Request::Flush)), Ok(()));
        assert_eq!(e.commit_stats().syncs, 3);
        assert_eq!(e.head().seq.0, head.0 + 1);
        e.close().unwrap();
    }

    #[test]
    fn a_failed_sync_fails_every_request_it_covered_and_every_later_one() {
        let dir = tempfile::tempdir().unwrap();
        let e = export(dir.path(), SyncMode::Flush);
        let a = [7u8; 4096];
        let b = [8u8; 4096];
        assert_eq!(outcome(&submit(&e, write(0, &a, true))), Ok(()));
        let durable = e.head();
        let (held, go) = hold_next_sync(&e);
        let first = submit(&e, write(4096, &b, true));
        held.recv().unwrap();
        let mut waiting = vec![first];
        for i in 2..10u64 {
            waiting.push(submit(&e, write(i * 4096, &b, false)));
            waiting.push(submit(&e, Request::Flush));
        }
        go.send(Some(libc::ENOSPC)).unwrap();
        let mut failed = 0;
        for w in &waiting {
            match outcome(w) {
                Ok(()) => {} // a plain write, answered before the sync failed
                Err(ExportError::Fatal { out_of_space, .. }) => {
                    assert!(out_of_space);
                    failed += 1;
                }
                Err(other) => panic!("{other:?}"),
            }
        }
        // The FUA write and all eight flushes.
        assert_eq!(failed, 9);
        // Everything after fails too, reads still work.
        assert!(matches!(
            outcome(&submit(&e, write(0, &b, false))),
            Err(ExportError::Fatal { .. })
        ));
        assert!(matches!(
            outcome(&submit(&e, Request::Flush)),
            Err(ExportError::Fatal { .. })
        ));
        let mut got = [0u8; 4096];
        e.read(0, &mut got).unwrap();
        assert_eq!(got, a);
        // The log was cut back to what the last good sync made durable.
        assert_eq!(e.head(), durable);
        assert!(e.close().is_err());
        let s = crate::store::Store::open(&dir.path().join("s")).unwrap();
        assert_eq!(s.head().seq, durable.seq);
    }

    #[test]
    fn sync_always_answers_each_write_once_durable() {
        let dir = tempfile::tempdir().unwrap();
        let e = export(dir.path(), SyncMode::Always);
        let (held, go) = hold_next_sync(&e);
        let a = [3u8; 4096];
        let first = submit(&e, write(0, &a, false));
        held.recv().unwrap();
        let second = submit(&e, write(4096, &a, false));
        assert!(pending(&first) && pending(&second));
        go.send(None).unwrap();
        assert_eq!(outcome(&first), Ok(()));
        assert_eq!(outcome(&second), Ok(()));
        e.close().unwrap();
    }
}
