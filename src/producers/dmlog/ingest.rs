//! Recording a dm-log-writes log: each entry becomes exactly one record,
//! and `follow` keeps reading a log that is still being written.
//!
//! # Records
//!
//! Log entry i of a log ingested into an empty store is record `#i`, and
//! `--at '#i'` is the state `replay-log --limit i` leaves. Entries are
//! numbered from 1 in messages (`replay-log -v` numbers them from 0): a
//! write with data becomes a Write (FUA, PREFLUSH, META carried over), a
//! discard a Trim, a data-less flush a Flush, a mark a Mark. The log carries
//! no times: each entry gets the time it is read, unless a MARK named
//! `t=<ns>` (nanoseconds since the epoch) came before it, which sets the
//! time of itself and of the entries after it until the next such mark.
//!
//! An entry the log marks FLUSH or FUA is made durable before the next is
//! read; so is everything recorded when a followed log has nothing new.
//!
//! # Following a log being written
//!
//! With `follow`, the end of the input is not the end of the log: a short
//! read (end of a growing file, a half-written entry) is waited for and read
//! again every `poll_interval`. Both writers may land entries out of order
//! (QEMU runs requests concurrently; the kernel submits bios
//! asynchronously), so a followed file can show an all-zero hole where an
//! entry is still in flight; [`ingest_file`] re-reads such a block until it
//! fills in, which needs a seekable file (a pipe cannot be re-read, so there
//! a hole ends the log). A hole is only recognised where a header block
//! should be: an entry whose header has landed while its data is still being
//! copied in, with a later entry already past it, reads as partly zero. The
//! format has no checksum to catch that; ingesting a finished log (or
//! re-ingesting it into a fresh store) gives the exact history.

use super::error::DmlogError;
use super::reader::{DmlogEntry, DmlogReader, Polled, LOG_FLUSH_FLAG, LOG_FUA_FLAG};
use crate::store::Writer;
use crate::store::{Op, OwnedOp};
use crate::units::{Seq, TimeNs};
use std::io::{Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Name prefix of the marks that carry a time, `t=<ns since the epoch>`.
pub const TIME_MARK_PREFIX: &str = "t=";

/// The time a `t=<ns>` mark carries, if the name is one.
pub fn time_mark(name: &str) -> Option<TimeNs> {
    name.strip_prefix(TIME_MARK_PREFIX)?
        .parse::<i64>()
        .ok()
        .map(TimeNs)
}

/// How to ingest.
#[derive(Debug, Clone)]
pub struct DmlogOptions {
    /// Wait at the end of the input for more entries instead of stopping.
    pub follow: bool,
    /// How often a followed log is read again.
    pub poll_interval: Duration,
    /// Set to stop cleanly (after the entry being recorded).
    pub stop: Arc<AtomicBool>,
    /// Entries at the start of the log that are already recorded (see
    /// [`already_recorded`](super::already_recorded)): read, so that their
    /// `t=` marks still set the clock, but not recorded again.
    pub skip_entries: u64,
    /// Told the log bytes read so far after each entry.
    pub progress: Option<crate::producers::ProgressFn>,
}

impl Default for DmlogOptions {
    fn default() -> Self {
        DmlogOptions {
            follow: false,
            poll_interval: Duration::from_millis(200),
            stop: Arc::new(AtomicBool::new(false)),
            skip_entries: 0,
            progress: None,
        }
    }
}

/// What an ingest recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DmlogSummary {
    pub entries: u64,
    pub first_seq: Option<Seq>,
    pub last_seq: Option<Seq>,
    /// Bytes of Write data recorded.
    pub bytes_written: u64,
    pub marks: u64,
}

/// Record every entry of a dm-log-writes log read from `input`, one record
/// each. On an error, the entries before the failing one are recorded (and
/// synced). Following a pipe or a growing file works; to follow a log that
/// may have holes (a block device, out-of-order writers) use [`ingest_file`].
pub fn ingest<R: Read>(
    input: R,
    writer: &mut Writer,
    opts: &DmlogOptions,
) -> Result<DmlogSummary, DmlogError> {
    run(DmlogReader::unstarted(input), writer, opts)
}

/// [`ingest`] from a file or block device, which a followed log can re-read
/// where the writer left a hole that fills in later.
pub fn ingest_file(
    file: std::fs::File,
    writer: &mut Writer,
    opts: &DmlogOptions,
) -> Result<DmlogSummary, DmlogError> {
    // A dup'ed descriptor shares the file offset, so seeking it moves `file`.
    let mut seeker = file.try_clone().map_err(|error| DmlogError::Io {
        offset_bytes: 0,
        error,
    })?;
    let mut reader = DmlogReader::unstarted(file);
    reader.rewind = Some(Box::new(move |at| {
        seeker.seek(SeekFrom::Start(at)).map(|_| ())
    }));
    run(reader, writer, opts)
}

/// Read and record until the log ends, `stop` is set or something fails;
/// then make what was recorded durable.
fn run<R: Read>(
    mut reader: DmlogReader<R>,
    writer: &mut Writer,
    opts: &DmlogOptions,
) -> Result<DmlogSummary, DmlogError> {
    let mut recorder = Recorder {
        writer,
        opts,
        summary: DmlogSummary::default(),
        mark_clock: None,
        unsynced: false,
    };
    let outcome = match recorder.record_until_end(&mut reader) {
        // A sync that failed ends the ingest at once: there is nothing
        // more it could make durable.
        Err(e @ DmlogError::Sync { .. }) => return Err(e),
        outcome => outcome,
    };
    // Whatever was recorded before an error stays recorded: make it durable.
    if recorder.unsynced {
        if let Err(error) = recorder.writer.sync() {
            return Err(outcome.err().unwrap_or(DmlogError::Sync {
                entry: reader.entries_read(),
                error,
            }));
        }
    }
    if reader.entries_past_super_count() > 0 {
        log::info!(
            "read {} entries past the {} the log's super block counts (it is updated lazily)",
            reader.entries_past_super_count(),
            reader.super_entries()
        );
    }
    outcome.map(|()| recorder.summary)
}

/// The state of one ingest between entries.
struct Recorder<'a> {
    writer: &'a mut Writer,
    opts: &'a DmlogOptions,
    summary: DmlogSummary,
    /// Set by `t=<ns>` marks; otherwise each entry gets the time it is read.
    mark_clock: Option<TimeNs>,
    /// Something was recorded since the last sync.
    unsynced: bool,
}

impl Recorder<'_> {
    /// Poll the log and record its entries until it ends or `stop` is set.
    /// A [`DmlogError::Sync`] means the store could not be made durable.
    fn record_until_end<R: Read>(&mut self, reader: &mut DmlogReader<R>) -> Result<(), DmlogError> {
        while !self.opts.stop.load(Ordering::Relaxed) {
            match reader.poll(self.opts.follow)? {
                Polled::Entry(entry) => self.record(&entry, reader.position_bytes())?,
                Polled::Wait => {
                    // Nothing new for now: what came so far is made durable.
                    if self.unsynced {
                        self.sync_after(reader.entries_read())?;
                    }
                    sleep_unless_stopped(self.opts);
                }
                Polled::End => break,
            }
        }
        Ok(())
    }

    /// Record one entry (unless it is one to skip), read up to `read_bytes`
    /// of the log.
    fn record(&mut self, entry: &DmlogEntry, read_bytes: u64) -> Result<(), DmlogError> {
        let time = self.time_of(&entry.op);
        if let Some(p) = &self.opts.progress {
            (p.0)(read_bytes);
        }
        if entry.index <= self.opts.skip_entries {
            return Ok(());
        }
        let op = entry.op.as_op();
        let appended = match time {
            Some(t) => self.writer.append(t, op, entry.op_flags),
            None => self.writer.append_now(op, entry.op_flags),
        }
        .map_err(|error| DmlogError::Store {
            entry: entry.index,
            offset_bytes: entry.log_offset_bytes,
            error,
        })?;
        self.unsynced = true;
        let summary = &mut self.summary;
        summary.entries += 1;
        summary.first_seq.get_or_insert(appended.seq);
        summary.last_seq = Some(appended.seq);
        match op {
            Op::Write { data, .. } => summary.bytes_written += data.len() as u64,
            Op::Mark { .. } => summary.marks += 1,
            _ => {}
        }
        if entry.flags & (LOG_FLUSH_FLAG | LOG_FUA_FLAG) != 0 {
            self.sync_after(entry.index)?;
        }
        Ok(())
    }

    /// The time an entry is recorded with: a `t=` mark sets the time of
    /// itself and what follows; without one, entries are stamped as they
    /// are read (`None`), each strictly after the last.
    fn time_of(&mut self, op: &OwnedOp) -> Option<TimeNs> {
        if let OwnedOp::Mark { name } = op {
            if let Some(t) = time_mark(name) {
                self.mark_clock = Some(t);
            }
        }
        self.mark_clock
    }

    /// Make everything recorded up to entry `entry` durable.
    fn sync_after(&mut self, entry: u64) -> Result<(), DmlogError> {
        self.writer
            .sync()
            .map_err(|error| DmlogError::Sync { entry, error })?;
        self.unsynced = false;
        Ok(())
    }
}

fn sleep_unless_stopped(opts: &DmlogOptions) {
    let slice = Duration::from_millis(50);
    let mut left = opts.poll_interval;
    while !left.is_zero() && !opts.stop.load(Ordering::Relaxed) {
        let d = left.min(slice);
        std::thread::sleep(d);
        left -= d;
    }
}
