//! A stream into a store (`diskhist ingest --format stream`). A history is
//! never recorded twice, and never half-recorded and then found wrong.
//!
//! # What is checked before anything is written
//!
//! A stream continues its history after some record S (version 2: its start
//! record; version 1: the record before its first). The store must hold
//! that point with the same chain hash:
//!
//! - S beyond the store's last record is a **gap**: refused. An empty
//!   store's history is at record 0 with the zero chain, so a partial dump
//!   (`dump --from`) into an empty store is refused with a message saying to
//!   ingest the earlier records first. (A store's first record always
//!   chains from zero; there is no way to begin a store in the middle of
//!   another history and still verify it.)
//! - A different chain at S is a **conflict**: refused.
//! - The stream's records the store already holds (seq up to its head) are
//!   compared by chain hash: equal ones are skipped and counted; the first
//!   that differs is a conflict, refused, named. Since a stream's records
//!   come in seq order, all of them are checked before the first new record
//!   is written.
//!
//! # What is checked before each record is written
//!
//! A version 2 record carries the source's chain hash after it, and the
//! reader recomputes it (seq, time, kind, flags, range, BLAKE3 of the
//! content, from the previous record's chain) before returning the record;
//! ingest also refuses a time earlier than the store's last (the writer
//! would hold it and the chain would differ) and checks after each append
//! that the store's new chain head is the one the stream carries. So a
//! stream altered or cut in transit leaves a **verified prefix**: the
//! records before the damaged one, each exactly as in the source, and the
//! error names the record. Running the same ingest again with the whole
//! stream resumes after that prefix.
//!
//! # Version 1 streams
//!
//! Streams written before version 2 carry only the chain at their end. They
//! are checked whole before anything is written: a first pass reads every
//! record and recomputes the chain from the store's chain before the first
//! record; only if it reaches the end record's chain does a second pass
//! record them, checking each record against the chain the first pass
//! computed for it (so a file changed in between is caught at the changed
//! record). That needs the input twice, so a version 1 stream from a pipe
//! is refused (save it to a file, or dump the source again), and a
//! truncated one records nothing. The first pass keeps 32 bytes per record
//! in memory.

use super::format::{StreamError, StreamRecord, StreamStart, StreamVersion};
use super::reader::StreamReader;
use crate::store::OwnedOp;
use crate::store::{Head, Store, StoreError, Writer};
use crate::time::format_rfc3339_ns;
use crate::units::{Hash32, Seq, TimeNs};
use std::fmt;
use std::io::{Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// How to ingest.
#[derive(Debug, Clone, Default)]
pub struct IngestOptions {
    /// Set to stop cleanly after the record being recorded (what was
    /// recorded is synced; running again resumes after it).
    pub stop: Arc<AtomicBool>,
}

/// Records `first..=last` of a stream that the store already held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    pub first: Seq,
    pub last: Seq,
}

impl Resume {
    pub fn records(&self) -> u64 {
        self.last.0 - self.first.0 + 1
    }
}

/// What an ingest did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestSummary {
    /// The stream's records that the store already held (not recorded again).
    pub skipped: Option<Resume>,
    pub recorded: u64,
    pub first_recorded: Option<Seq>,
    pub last_recorded: Option<Seq>,
    /// Bytes of Write data recorded.
    pub bytes_written: u64,
    /// Stopped by [`IngestOptions::stop`] before the end of the stream.
    pub stopped: bool,
}

impl IngestSummary {
    pub fn skipped_records(&self) -> u64 {
        self.skipped.map_or(0, |r| r.records())
    }
}

/// What was kept when an ingest failed part-way, for error messages.
struct Kept<'a>(&'a IngestSummary);

impl fmt::Display for Kept<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0.first_recorded, self.0.last_recorded) {
            (Some(a), Some(b)) => write!(
                f,
                "records {a}..{b} before it were recorded, each checked against its chain \
                 hash; ingest the whole stream again to go on from there"
            ),
            _ => f.write_str("nothing was recorded"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    #[error("{0}; nothing was recorded")]
    Open(StreamError),
    #[error(
        "the stream is from a disk of {stream_bytes} bytes, larger than this store's \
         {store_bytes}; nothing was recorded"
    )]
    Geometry { stream_bytes: u64, store_bytes: u64 },
    #[error(
        "the stream continues its history after record {after}, but {}; nothing was recorded",
        if head.0 == 0 {
            "this store is empty (a store's history begins at record #1): ingest the earlier \
             records first, e.g. a dump of the source from its beginning".to_string()
        } else {
            format!(
                "this store's history ends at record {head}: ingest records #{}..{after} first \
                 (e.g. `diskhist dump SOURCE --from '#{}'`)",
                head.0 + 1,
                head.0 + 1
            )
        }
    )]
    Gap { after: Seq, head: Seq },
    #[error(
        "{}: chain hash {stream_chain} in the stream, {store_chain} in the store: the stream \
         holds a different history than this store; nothing was recorded",
        if *at_start {
            format!("the stream continues its history after record {seq}, and the store's \
                     history differs there")
        } else {
            format!("stream record {seq} conflicts with the store's record {seq}")
        }
    )]
    Conflict {
        seq: Seq,
        /// The conflict is at the point the stream starts from, not at one
        /// of its records.
        at_start: bool,
        stream_chain: Hash32,
        store_chain: Hash32,
    },
    #[error(
        "stream record {seq} has time {}, earlier than the store's last record ({}): \
         recorded here it would be held at that time and get another chain hash; {}",
        format_rfc3339_ns(*time_ns), format_rfc3339_ns(*head_time_ns), Kept(done)
    )]
    Earlier {
        seq: Seq,
        time_ns: TimeNs,
        head_time_ns: TimeNs,
        done: Box<IngestSummary>,
    },
    #[error(
        "this is a version 1 stream (written by an older diskhist): it carries no chain hash \
         per record, so it can only be checked as a whole before recording, which needs it \
         in a file; save it to a file and ingest that, or dump the source again with this \
         diskhist; nothing was recorded"
    )]
    LegacyPipe,
    #[error(
        "{0}; a version 1 stream is recorded only once it has been read whole and its chain \
         checked: nothing was recorded"
    )]
    LegacyIncomplete(StreamError),
    #[error(
        "the version 1 stream's records, chained on from this store's chain hash after record \
         {after}, end at chain hash {computed}, not at the {carried} its end record carries: \
         {}; nothing was recorded",
        if after.0 == 0 {
            "the stream was altered or damaged"
        } else {
            "the stream was altered or damaged, or it continues a different history than \
             this store's"
        }
    )]
    LegacyChain {
        after: Seq,
        computed: Hash32,
        carried: Hash32,
    },
    #[error(
        "the stream changed while it was being ingested: record {seq} is not what was \
         checked before recording began; {}",
        Kept(done)
    )]
    Changed { seq: Seq, done: Box<IngestSummary> },
    #[error("{error}; {}", Kept(done))]
    Stream {
        error: StreamError,
        done: Box<IngestSummary>,
    },
    #[error("recording stream record {seq}: {error}; {}", Kept(done))]
    Store {
        seq: Seq,
        error: StoreError,
        done: Box<IngestSummary>,
    },
    #[error(
        "stream record {seq} was recorded with another chain hash than the stream carries \
         (a bug in diskhist: please report it); {}",
        Kept(done)
    )]
    Diverged { seq: Seq, done: Box<IngestSummary> },
    #[error("reading the store's own records: {0}; nothing was recorded")]
    StoreRead(StoreError),
    #[error("syncing the store: {error}; {}", Kept(done))]
    Sync {
        error: StoreError,
        done: Box<IngestSummary>,
    },
}

/// Record the stream read from `input` into `writer`'s store, skipping the
/// records the store already holds (see the module docs for every check).
/// `store` is a reader of the same store, for the chain hashes of records
/// before the writer's head. `on_resume` is called once, before the first
/// record is written, when some of the stream's records were already there.
///
/// `input` must be positioned at the start of the stream. Seeking is only
/// needed for a version 1 stream; a pipe (whose seeks fail) serves for
/// version 2.
pub fn ingest<R: Read + Seek>(
    mut input: R,
    writer: &mut Writer,
    store: &Store,
    opts: &IngestOptions,
    on_resume: impl FnMut(Resume),
) -> Result<IngestSummary, IngestError> {
    let begin = input.stream_position().ok();
    let reader = StreamReader::new(input).map_err(IngestError::Open)?;
    let store_bytes = writer.geometry().size_bytes;
    let stream_bytes = reader.header().size_bytes;
    if stream_bytes > store_bytes {
        return Err(IngestError::Geometry {
            stream_bytes,
            store_bytes,
        });
    }
    let head = writer.head();
    if store.head() != head {
        store.refresh().map_err(IngestError::StoreRead)?;
    }
    let held = Held { store, head };
    let ing = Ingest {
        writer,
        held,
        opts,
        summary: IngestSummary::default(),
    };
    match reader.version() {
        StreamVersion::V2 => {
            let start = reader.start().expect("a version 2 stream has a start");
            ing.run(Records::Checked(reader), start, on_resume)
        }
        StreamVersion::V1 => {
            let Some(begin) = begin else {
                return Err(IngestError::LegacyPipe);
            };
            let Some(plan) = check_legacy(reader, &held)? else {
                return Ok(IngestSummary::default());
            };
            let mut input = plan.reader.into_inner();
            input
                .seek(SeekFrom::Start(begin))
                .map_err(|e| IngestError::Open(e.into()))?;
            let reader = StreamReader::new(input).map_err(IngestError::Open)?;
            let records = Records::Legacy {
                reader,
                chains: plan.chains.into_iter(),
                prev: plan.start.chain,
                next_seq: Seq(plan.start.seq.0 + 1),
            };
            ing.run(records, plan.start, on_resume)
        }
    }
}

/// The store's history, as far as it went when the ingest began.
#[derive(Clone, Copy)]
struct Held<'a> {
    store: &'a Store,
    head: Head,
}

impl Held<'_> {
    /// The chain hash after record `seq` (`seq` at most the head).
    fn chain_at(&self, seq: Seq) -> Result<Hash32, StoreError> {
        if seq.0 == 0 {
            Ok(Hash32::default())
        } else if seq == self.head.seq {
            Ok(self.head.chain)
        } else {
            self.store.record(seq).map(|r| r.chain)
        }
    }

    /// Where the stream starts must be a point of this store's history.
    fn check_start(&self, start: StreamStart) -> Result<(), IngestError> {
        if start.seq > self.head.seq {
            return Err(IngestError::Gap {
                after: start.seq,
                head: self.head.seq,
            });
        }
        let here = self.chain_at(start.seq).map_err(IngestError::StoreRead)?;
        if here != start.chain {
            return Err(IngestError::Conflict {
                seq: start.seq,
                at_start: true,
                stream_chain: start.chain,
                store_chain: here,
            });
        }
        Ok(())
    }
}

/// A version 1 stream, checked whole: where it starts and the chain after
/// each of its records.
struct LegacyPlan<R: Read> {
    reader: StreamReader<R>,
    start: StreamStart,
    chains: Vec<Hash32>,
}

/// The first pass over a version 1 stream; `None` if it holds no records.
fn check_legacy<R: Read>(
    mut reader: StreamReader<R>,
    held: &Held<'_>,
) -> Result<Option<LegacyPlan<R>>, IngestError> {
    let mut next = || reader.next_record().map_err(IngestError::LegacyIncomplete);
    let Some(mut rec) = next()? else {
        return Ok(None);
    };
    // The reader refuses seq 0, so the first record has one before it.
    let after = Seq(rec.seq.0 - 1);
    if after > held.head.seq {
        return Err(IngestError::Gap {
            after,
            head: held.head.seq,
        });
    }
    let start = StreamStart {
        seq: after,
        chain: held.chain_at(after).map_err(IngestError::StoreRead)?,
    };
    let mut chain = start.chain;
    let mut chains = Vec::new();
    loop {
        chain = rec.chain_from(&chain);
        chains.push(chain);
        match next()? {
            Some(r) => rec = r,
            None => break,
        }
    }
    let carried = reader.end().expect("read to its end").chain;
    if carried != chain {
        return Err(IngestError::LegacyChain {
            after,
            computed: chain,
            carried,
        });
    }
    Ok(Some(LegacyPlan {
        reader,
        start,
        chains,
    }))
}

/// Records with their chain hashes, checked.
enum Records<R: Read> {
    /// Version 2: the reader checks each record's chain.
    Checked(StreamReader<R>),
    /// Version 1, second pass: each record's chain must be the one the
    /// first pass computed.
    Legacy {
        reader: StreamReader<R>,
        chains: std::vec::IntoIter<Hash32>,
        prev: Hash32,
        next_seq: Seq,
    },
}

enum NextFault {
    Stream(StreamError),
    Changed(Seq),
}

impl<R: Read> Records<R> {
    fn next(&mut self) -> Result<Option<StreamRecord>, NextFault> {
        match self {
            Records::Checked(r) => r.next_record().map_err(NextFault::Stream),
            Records::Legacy {
                reader,
                chains,
                prev,
                next_seq,
            } => {
                let next = reader.next_record().map_err(NextFault::Stream)?;
                let Some(mut rec) = next else {
                    return match chains.next() {
                        None if reader.end().map(|e| e.chain) == Some(*prev) => Ok(None),
                        _ => Err(NextFault::Changed(*next_seq)),
                    };
                };
                let chain = rec.chain_from(prev);
                if rec.seq != *next_seq || chains.next() != Some(chain) {
                    return Err(NextFault::Changed(*next_seq));
                }
                *prev = chain;
                *next_seq = Seq(rec.seq.0.saturating_add(1));
                rec.chain = Some(chain);
                Ok(Some(rec))
            }
        }
    }
}

struct Ingest<'a, 'w> {
    writer: &'w mut Writer,
    held: Held<'a>,
    opts: &'a IngestOptions,
    summary: IngestSummary,
}

impl Ingest<'_, '_> {
    fn done(&self) -> Box<IngestSummary> {
        Box::new(self.summary.clone())
    }

    fn run<R: Read>(
        mut self,
        mut records: Records<R>,
        start: StreamStart,
        mut on_resume: impl FnMut(Resume),
    ) -> Result<IngestSummary, IngestError> {
        self.held.check_start(start)?;
        let outcome = loop {
            if self.opts.stop.load(Ordering::Relaxed) {
                self.summary.stopped = true;
                break Ok(());
            }
            let rec = match records.next() {
                Ok(Some(rec)) => rec,
                Ok(None) => break Ok(()),
                Err(NextFault::Stream(error)) => {
                    break Err(IngestError::Stream {
                        error,
                        done: self.done(),
                    })
                }
                Err(NextFault::Changed(seq)) => {
                    break Err(IngestError::Changed {
                        seq,
                        done: self.done(),
                    })
                }
            };
            let carried = rec.chain.expect("records come with their chain");
            if rec.seq <= self.held.head.seq {
                // Seqs ascend: every record the store holds comes before
                // the first one to record, so nothing is written yet.
                let here = match self.held.chain_at(rec.seq) {
                    Ok(h) => h,
                    Err(e) => break Err(IngestError::StoreRead(e)),
                };
                if here != carried {
                    break Err(IngestError::Conflict {
                        seq: rec.seq,
                        at_start: false,
                        stream_chain: carried,
                        store_chain: here,
                    });
                }
                let first = self.summary.skipped.map_or(rec.seq, |r| r.first);
                self.summary.skipped = Some(Resume {
                    first,
                    last: rec.seq,
                });
                continue;
            }
            if let Err(e) = self.record(&rec, carried, &mut on_resume) {
                break Err(e);
            }
        };
        if self.summary.recorded > 0 {
            if let Err(error) = self.writer.sync() {
                return Err(outcome.err().unwrap_or(IngestError::Sync {
                    error,
                    done: self.done(),
                }));
            }
        }
        outcome.map(|()| self.summary)
    }

    /// Write one record the store does not hold yet.
    fn record(
        &mut self,
        rec: &StreamRecord,
        carried: Hash32,
        on_resume: &mut impl FnMut(Resume),
    ) -> Result<(), IngestError> {
        if self.summary.recorded == 0 {
            if let Some(r) = self.summary.skipped {
                on_resume(r);
            }
        }
        if let Some(head_time_ns) = self.writer.head().time_ns.filter(|t| rec.time_ns < *t) {
            return Err(IngestError::Earlier {
                seq: rec.seq,
                time_ns: rec.time_ns,
                head_time_ns,
                done: self.done(),
            });
        }
        if let Err(error) = self.writer.append(rec.time_ns, rec.op.as_op(), rec.flags) {
            return Err(IngestError::Store {
                seq: rec.seq,
                error,
                done: self.done(),
            });
        }
        self.summary.recorded += 1;
        self.summary.first_recorded.get_or_insert(rec.seq);
        self.summary.last_recorded = Some(rec.seq);
        if let OwnedOp::Write { data, .. } = &rec.op {
            self.summary.bytes_written += data.len() as u64;
        }
        let head = self.writer.head();
        if head.seq != rec.seq || head.chain != carried {
            return Err(IngestError::Diverged {
                seq: rec.seq,
                done: self.done(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::producers::stream::format::StreamHeader;
    use crate::producers::stream::writer::StreamWriter;
    use crate::store::OpFlags;
    use std::io::{self, Cursor};

    const HEADER: StreamHeader = StreamHeader {
        block_size: 4096,
        size_bytes: 1 << 20,
    };

    struct Fixture {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
    }

    fn store() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        Writer::init(&path, HEADER.size_bytes, HEADER.block_size).unwrap();
        Fixture { _dir: dir, path }
    }

    fn write(seq: u64, time: i64, fill: u8) -> StreamRecord {
        StreamRecord {
            seq: Seq(seq),
            time_ns: TimeNs(time),
            flags: OpFlags::default(),
            op: OwnedOp::Write {
                offset_bytes: seq * 4096,
                data: vec![fill; 4096],
            },
            chain: None,
        }
    }

    /// A version 2 (or 1) stream of `recs` after `start`, chains computed.
    fn stream(start: StreamStart, recs: &[StreamRecord], v1: bool) -> Vec<u8> {
        let mut w = if v1 {
            StreamWriter::new_v1(Vec::new(), HEADER).unwrap()
        } else {
            StreamWriter::new(Vec::new(), HEADER, start).unwrap()
        };
        let mut chain = start.chain;
        for r in recs {
            chain = r.chain_from(&chain);
            w.record(&StreamRecord {
                chain: Some(chain),
                ..r.clone()
            })
            .unwrap();
        }
        w.finish(chain).unwrap()
    }

    fn run<R: Read + Seek>(f: &Fixture, input: R) -> Result<IngestSummary, IngestError> {
        let mut w = Writer::open(&f.path).unwrap();
        let store = Store::open(&f.path).unwrap();
        let res = ingest(input, &mut w, &store, &IngestOptions::default(), |_| {});
        w.close().unwrap();
        res
    }

    fn head(f: &Fixture) -> Head {
        Store::open(&f.path).unwrap().head()
    }

    /// `chain_from` must be what the writer computes, for every kind, for
    /// partial blocks (merged with the previous content, which the chain
    /// does not see) and for flags.
    #[test]
    fn chain_from_is_the_chain_the_writer_records() {
        let f = store();
        let mut w = Writer::open(&f.path).unwrap();
        let ops = [
            OwnedOp::Write {
                offset_bytes: 100,
                data: vec![9; 5000],
            },
            OwnedOp::Write {
                offset_bytes: 0,
                data: Vec::new(),
            },
            OwnedOp::Zero {
                offset_bytes: 10,
                length_bytes: 9000,
            },
            OwnedOp::Trim {
                offset_bytes: 4096,
                length_bytes: 8192,
            },
            OwnedOp::Flush,
            OwnedOp::Mark {
                name: "t=1795415415".into(),
            },
        ];
        for (i, op) in ops.into_iter().enumerate() {
            let before = w.head().chain;
            let rec = StreamRecord {
                seq: Seq(i as u64 + 1),
                time_ns: TimeNs(1000 + i as i64),
                flags: OpFlags::FUA | OpFlags::META,
                op,
                chain: None,
            };
            w.append(rec.time_ns, rec.op.as_op(), rec.flags).unwrap();
            assert_eq!(w.head().chain, rec.chain_from(&before), "{:?}", rec.op);
        }
        w.close().unwrap();
    }

    /// A forged stream whose chains are right but whose first new record is
    /// earlier than the store's last: the writer would hold its time and
    /// record another chain, so it is refused, before anything is written.
    #[test]
    fn a_time_before_the_store_head_is_refused_before_writing() {
        let f = store();
        let mut w = Writer::open(&f.path).unwrap();
        w.append(TimeNs(100), write(1, 100, 1).op.as_op(), OpFlags::default())
            .unwrap();
        let h = w.head();
        w.close().unwrap();
        let start = StreamStart {
            seq: h.seq,
            chain: h.chain,
        };
        let bytes = stream(start, &[write(2, 50, 2), write(3, 60, 3)], false);
        let e = run(&f, Cursor::new(bytes)).unwrap_err();
        assert!(matches!(e, IngestError::Earlier { seq: Seq(2), .. }), "{e}");
        assert!(e.to_string().contains("nothing was recorded"), "{e}");
        assert_eq!(head(&f), h);
    }

    /// A reader that cannot seek, as a pipe.
    struct Pipe(Cursor<Vec<u8>>);

    impl Read for Pipe {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.0.read(buf)
        }
    }

    impl Seek for Pipe {
        fn seek(&mut self, _: SeekFrom) -> io::Result<u64> {
            Err(io::Error::from_raw_os_error(libc::ESPIPE))
        }
    }

    #[test]
    fn version_1_needs_a_file_version_2_does_not() {
        let recs = [write(1, 10, 1), write(2, 20, 2)];
        let f = store();
        let v1 = stream(StreamStart::default(), &recs, true);
        let e = run(&f, Pipe(Cursor::new(v1.clone()))).unwrap_err();
        assert!(matches!(e, IngestError::LegacyPipe), "{e}");
        assert_eq!(head(&f).seq, Seq(0));
        let v2 = stream(StreamStart::default(), &recs, false);
        assert_eq!(run(&f, Pipe(Cursor::new(v2))).unwrap().recorded, 2);
        let h = head(&f);
        // The same history as version 1, from a file: all already there.
        let s = run(&f, Cursor::new(v1)).unwrap();
        assert_eq!((s.recorded, s.skipped_records()), (0, 2));
        assert_eq!(head(&f), h);
    }

    /// Serves `first` until it is seeked, then `second`: a stream file
    /// rewritten between ingest's two passes over a version 1 stream.
    struct Swapped {
        first: Cursor<Vec<u8>>,
        second: Option<Cursor<Vec<u8>>>,
        seeked: bool,
    }

    impl Read for Swapped {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match (&mut self.second, self.seeked) {
                (Some(s), true) => s.read(buf),
                _ => self.first.read(buf),
            }
        }
    }

    impl Seek for Swapped {
        fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
            // Asking for the position is not going back.
            self.seeked |= to != SeekFrom::Current(0);
            match &mut self.second {
                Some(s) => s.seek(to),
                None => self.first.seek(to),
            }
        }
    }

    #[test]
    fn version_1_is_checked_whole_then_each_record_against_that_check() {
        let recs = [write(1, 10, 1), write(2, 20, 2), write(3, 30, 3)];
        let good = stream(StreamStart::default(), &recs, true);
        let mut forged_recs = recs.clone();
        forged_recs[1] = write(2, 20, 0xee);
        let forged = stream(StreamStart::default(), &forged_recs, true);

        // Altered in transit (its end chain no longer follows): nothing.
        let mut altered = forged.clone();
        let end = altered.len() - 36;
        altered[end..end + 32].copy_from_slice(&good[end..end + 32]);
        let crc_from = altered.len() - (44 + 32 + 4);
        let crc = crc32c::crc32c(&altered[crc_from..altered.len() - 4]);
        let n = altered.len();
        altered[n - 4..].copy_from_slice(&crc.to_le_bytes());
        let f = store();
        let e = run(&f, Cursor::new(altered)).unwrap_err();
        assert!(matches!(e, IngestError::LegacyChain { .. }), "{e}");
        assert_eq!(head(&f).seq, Seq(0));

        // Changed between the passes: the record before the change stays.
        let swapped = Swapped {
            first: Cursor::new(good.clone()),
            second: Some(Cursor::new(forged)),
            seeked: false,
        };
        let e = run(&f, swapped).unwrap_err();
        assert!(matches!(e, IngestError::Changed { seq: Seq(2), .. }), "{e}");
        assert!(e.to_string().contains("records #1..#1 before it"), "{e}");
        assert_eq!(head(&f).seq, Seq(1));

        // The good stream again resumes after record 1.
        let mut resumed = None;
        let mut w = Writer::open(&f.path).unwrap();
        let store = Store::open(&f.path).unwrap();
        let s = ingest(
            Cursor::new(good),
            &mut w,
            &store,
            &IngestOptions::default(),
            |r| resumed = Some(r),
        )
        .unwrap();
        w.close().unwrap();
        assert_eq!(
            resumed,
            Some(Resume {
                first: Seq(1),
                last: Seq(1)
            })
        );
        assert_eq!((s.skipped_records(), s.recorded), (1, 2));
    }
}
