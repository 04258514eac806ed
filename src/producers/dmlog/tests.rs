//! Unit tests of the dm-log-writes reader and ingest, on logs built in code.

use super::reader::DmlogReader;
use super::resume::suffix_prefix_overlap;
use super::*;
use crate::store::format::MAX_OP_BYTES;
use crate::store::Writer;
use crate::store::{Op, OpFlags, OwnedOp};
use crate::units::{Seq, TimeNs};
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Writes logs in the format the kernel and QEMU write.
struct LogBuilder {
    ss: usize,
    body: Vec<u8>,
    count: u64,
    super_count: Option<u64>,
}

impl LogBuilder {
    fn new(ss: usize) -> Self {
        LogBuilder {
            ss,
            body: Vec::new(),
            count: 0,
            super_count: None,
        }
    }
    fn header(&mut self, sector: u64, nr: u64, flags: u64, extra: &[u8]) -> &mut Self {
        let mut block = vec![0u8; self.ss];
        block[0..8].copy_from_slice(&sector.to_le_bytes());
        block[8..16].copy_from_slice(&nr.to_le_bytes());
        block[16..24].copy_from_slice(&flags.to_le_bytes());
        let data_len = if flags & LOG_MARK_FLAG != 0 {
            extra.len() as u64
        } else {
            0
        };
        block[24..32].copy_from_slice(&data_len.to_le_bytes());
        block[32..32 + extra.len()].copy_from_slice(extra);
        self.body.extend_from_slice(&block);
        self.count += 1;
        self
    }
    fn write(&mut self, sector: u64, data: &[u8], flags: u64) -> &mut Self {
        assert_eq!(data.len() % self.ss, 0);
        self.header(sector, (data.len() / self.ss) as u64, flags, &[]);
        self.body.extend_from_slice(data);
        self
    }
    fn discard(&mut self, sector: u64, nr: u64) -> &mut Self {
        self.header(sector, nr, LOG_DISCARD_FLAG, &[])
    }
    fn flush(&mut self) -> &mut Self {
        self.header(0, 0, LOG_FLUSH_FLAG, &[])
    }
    fn mark(&mut self, name: &str) -> &mut Self {
        self.header(0, 0, LOG_MARK_FLAG, name.as_bytes())
    }
    /// The super claims `n` entries (as a lazily updated super does).
    fn super_count(&mut self, n: u64) -> &mut Self {
        self.super_count = Some(n);
        self
    }
    fn build(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.ss];
        out[0..8].copy_from_slice(&LOG_MAGIC.to_le_bytes());
        out[8..16].copy_from_slice(&LOG_VERSION.to_le_bytes());
        out[16..24].copy_from_slice(&self.super_count.unwrap_or(self.count).to_le_bytes());
        out[24..28].copy_from_slice(&(self.ss as u32).to_le_bytes());
        out.extend_from_slice(&self.body);
        out
    }
}

fn read_all(log: &[u8]) -> Result<Vec<DmlogEntry>, DmlogError> {
    let mut r = DmlogReader::new(log)?;
    let mut out = Vec::new();
    while let Some(e) = r.next_entry()? {
        out.push(e);
    }
    Ok(out)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn every_flag_maps_to_one_op() {
    let a = pattern(1024, 1);
    let b = pattern(512, 2);
    let c = pattern(512, 3);
    let log = LogBuilder::new(512)
        .write(8, &a, 0)
        .write(2, &b, LOG_FUA_FLAG)
        .write(4, &c, LOG_FLUSH_FLAG | LOG_METADATA_FLAG)
        .flush()
        .discard(16, 3)
        .mark("after-discard")
        .header(0, 0, LOG_FUA_FLAG, &[])
        .build();
    let e = read_all(&log).unwrap();
    let ops: Vec<_> = e.iter().map(|e| (e.op.clone(), e.op_flags)).collect();
    assert_eq!(
        ops,
        vec![
            (
                OwnedOp::Write {
                    offset_bytes: 8 * 512,
                    data: a
                },
                OpFlags::default()
            ),
            (
                OwnedOp::Write {
                    offset_bytes: 1024,
                    data: b
                },
                OpFlags::FUA
            ),
            (
                OwnedOp::Write {
                    offset_bytes: 2048,
                    data: c
                },
                OpFlags::PREFLUSH | OpFlags::META
            ),
            (OwnedOp::Flush, OpFlags::default()),
            (
                OwnedOp::Trim {
                    offset_bytes: 16 * 512,
                    length_bytes: 3 * 512
                },
                OpFlags(0)
            ),
            (
                OwnedOp::Mark {
                    name: "after-discard".into()
                },
                OpFlags::default()
            ),
            (OwnedOp::Flush, OpFlags::FUA),
        ]
    );
    let idx: Vec<_> = e.iter().map(|e| e.index).collect();
    assert_eq!(idx, (1..=7).collect::<Vec<_>>());
    // Header offsets: super, then 1+2, 1+1, 1+1 blocks of the writes, then 1 each.
    let offs: Vec<_> = e.iter().map(|e| e.log_offset_bytes / 512).collect();
    assert_eq!(offs, vec![1, 4, 6, 8, 9, 10, 11]);
    assert!(e.iter().all(|e| !e.past_super_count));
}

#[test]
fn sector_fields_are_in_log_sector_units() {
    let data = pattern(4096, 9);
    let log = LogBuilder::new(4096)
        .write(3, &data, 0)
        .discard(5, 2)
        .build();
    let e = read_all(&log).unwrap();
    assert_eq!(
        e[0].op,
        OwnedOp::Write {
            offset_bytes: 3 * 4096,
            data
        }
    );
    assert_eq!(
        e[1].op,
        OwnedOp::Trim {
            offset_bytes: 5 * 4096,
            length_bytes: 8192
        }
    );
}

#[test]
fn entries_past_the_super_count_are_read_until_a_non_entry() {
    let mut b = LogBuilder::new(512);
    b.write(0, &pattern(512, 1), 0)
        .flush()
        .write(1, &pattern(512, 2), 0)
        .mark("x");
    b.super_count(2);
    let clean = b.build();
    let e = read_all(&clean).unwrap();
    assert_eq!(e.len(), 4);
    assert_eq!(
        e.iter().map(|e| e.past_super_count).collect::<Vec<_>>(),
        [false, false, true, true]
    );
    let mut r = DmlogReader::new(&clean[..]).unwrap();
    while r.next_entry().unwrap().is_some() {}
    assert_eq!((r.super_entries(), r.entries_past_super_count()), (2, 2));

    // A zero-filled tail (a preallocated log) ends it.
    let mut zeros = clean.clone();
    zeros.extend_from_slice(&[0; 4096]);
    assert_eq!(read_all(&zeros).unwrap().len(), 4);
    // So does stale garbage, or half a block of it.
    let mut junk = clean.clone();
    junk.extend_from_slice(&[0xa5; 512]);
    assert_eq!(read_all(&junk).unwrap().len(), 4);
    // A header block whose padding is not zero is no entry either.
    let mut bad_pad = clean.clone();
    let mut b2 = LogBuilder::new(512);
    b2.flush();
    let mut block = b2.build()[512..].to_vec();
    block[100] = 1;
    bad_pad.extend_from_slice(&block);
    assert_eq!(read_all(&bad_pad).unwrap().len(), 4);
}

#[test]
fn within_the_count_a_non_entry_is_an_error() {
    let mut b = LogBuilder::new(512);
    b.write(0, &pattern(512, 1), 0).header(0, 0, 0, &[]).flush();
    let log = b.build();
    let err = read_all(&log).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            DmlogError::Malformed {
                entry: 2,
                offset_bytes: 1536,
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.starts_with("entry 2 at byte 1536: malformed entry: empty header"),
        "{msg}"
    );
    let log = LogBuilder::new(512).header(0, 0, 1 << 7, &[]).build();
    assert!(read_all(&log)
        .unwrap_err()
        .to_string()
        .contains("unknown flags 0x80"));
}

#[test]
fn a_log_shorter_than_its_count_is_an_error() {
    let mut b = LogBuilder::new(512);
    b.flush().super_count(3);
    let err = read_all(&b.build()).unwrap_err();
    assert!(matches!(
        err,
        DmlogError::MissingEntries {
            entry: 2,
            offset_bytes: 1024,
            expected: 3
        }
    ));
    assert!(err.to_string().contains("counts 3 entries"), "{err}");
}

#[test]
fn truncated_header_and_data_name_entry_and_offset() {
    let log = LogBuilder::new(512)
        .flush()
        .write(0, &pattern(2048, 1), 0)
        .build();
    // Cut inside the second entry's header block.
    let err = read_all(&log[..1024 + 100]).unwrap_err();
    assert!(
        matches!(
            err,
            DmlogError::Truncated {
                entry: 2,
                offset_bytes: 1024,
                part: "header",
                have: 100,
                need: 512
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("entry 2 at byte 1024: the log ends inside"),
        "{err}"
    );
    // Cut inside its data.
    let err = read_all(&log[..log.len() - 1]).unwrap_err();
    assert!(
        matches!(
            err,
            DmlogError::Truncated {
                entry: 2,
                part: "data",
                have: 2047,
                need: 2048,
                ..
            }
        ),
        "{err}"
    );
    // Past the count the same cut is still an error: a torn entry is not an end.
    let mut b = LogBuilder::new(512);
    b.flush().write(0, &pattern(2048, 1), 0).super_count(1);
    let log = b.build();
    assert!(matches!(
        read_all(&log[..log.len() - 512]),
        Err(DmlogError::Truncated { entry: 2, .. })
    ));
    // The entries before the cut come out first.
    let mut r = DmlogReader::new(&log[..log.len() - 512]).unwrap();
    assert_eq!(r.next_entry().unwrap().unwrap().op, OwnedOp::Flush);
    assert!(r.next_entry().is_err());
}

#[test]
fn bad_super_blocks() {
    let good = LogBuilder::new(512).flush().build();
    let mut magic = good.clone();
    magic[0] ^= 1;
    let err = read_all(&magic).unwrap_err();
    assert!(matches!(err, DmlogError::BadMagic { found } if found == LOG_MAGIC ^ 1));
    assert!(err.to_string().contains("magic 0x6a736677736873"), "{err}");

    let mut version = good.clone();
    version[8] = 2;
    let err = read_all(&version).unwrap_err();
    assert!(matches!(err, DmlogError::BadVersion { found: 2 }));
    assert!(err.to_string().contains("version 2"));

    for ss in [0u32, 16, 513, 3 << 10, 1 << 24, u32::MAX] {
        let mut bad = good.clone();
        bad[24..28].copy_from_slice(&ss.to_le_bytes());
        let err = read_all(&bad).unwrap_err();
        assert!(
            matches!(err, DmlogError::BadSectorSize { found } if found == ss),
            "{ss}: {err}"
        );
    }

    assert!(matches!(
        read_all(&good[..20]),
        Err(DmlogError::ShortSuper { have: 20, need: 28 })
    ));
    assert!(matches!(
        read_all(&good[..100]),
        Err(DmlogError::ShortSuper {
            have: 100,
            need: 512
        })
    ));
    assert!(matches!(
        read_all(&[]),
        Err(DmlogError::ShortSuper { have: 0, .. })
    ));
}

#[test]
fn absurd_lengths_are_bounded() {
    // Overflowing byte counts.
    let log = LogBuilder::new(512).header(u64::MAX / 2, 1, 0, &[]).build();
    assert!(matches!(
        read_all(&log),
        Err(DmlogError::Malformed { entry: 1, .. })
    ));
    let log = LogBuilder::new(512).header(0, u64::MAX, 0, &[]).build();
    assert!(matches!(
        read_all(&log),
        Err(DmlogError::Malformed { entry: 1, .. })
    ));
    // Larger than one entry may carry: refused before any allocation.
    let log = LogBuilder::new(4096).header(0, 1 << 40, 0, &[]).build();
    let err = read_all(&log).unwrap_err();
    assert!(err.to_string().contains("more than the"), "{err}");
    // The largest allowed write, but the data is missing: a truncation
    // error, with only what the log holds read into memory.
    let nr = MAX_OP_BYTES / 4096;
    let log = LogBuilder::new(4096).header(0, nr, 0, &[]).build();
    let err = read_all(&log).unwrap_err();
    assert!(
        matches!(
            err,
            DmlogError::Truncated {
                part: "data",
                have: 0,
                ..
            }
        ),
        "{err}"
    );
    // A huge discard needs no data and is fine.
    let log = LogBuilder::new(4096).discard(0, 1 << 30).build();
    assert_eq!(
        read_all(&log).unwrap()[0].op,
        OwnedOp::Trim {
            offset_bytes: 0,
            length_bytes: 1 << 42
        }
    );
    // A mark name longer than its block.
    let mut log = LogBuilder::new(512).mark("m").build();
    log[512 + 24..512 + 32].copy_from_slice(&1000u64.to_le_bytes());
    assert!(read_all(&log)
        .unwrap_err()
        .to_string()
        .contains("does not fit"));
}

#[test]
fn marks_and_time_marks() {
    let log = LogBuilder::new(512)
        .mark("t=1795415415000000000")
        .mark("dm-log-writes-end")
        .build();
    let e = read_all(&log).unwrap();
    assert_eq!(
        e[0].op,
        OwnedOp::Mark {
            name: "t=1795415415000000000".into()
        }
    );
    assert_eq!(
        time_mark("t=1795415415000000000"),
        Some(TimeNs(1_795_415_415_000_000_000))
    );
    assert_eq!(time_mark("t=-5"), Some(TimeNs(-5)));
    assert_eq!(time_mark("t=soon"), None);
    assert_eq!(time_mark("dm-log-writes-end"), None);
    // The longest name the kernel writes: sectorsize - 32 - 1 bytes.
    let long = "n".repeat(512 - 33);
    assert_eq!(
        read_all(&LogBuilder::new(512).mark(&long).build()).unwrap()[0].op,
        OwnedOp::Mark { name: long }
    );
}

/// A file another thread appends to.
#[derive(Clone, Default)]
struct Growing {
    bytes: Arc<Mutex<Vec<u8>>>,
    pos: Arc<Mutex<usize>>,
}

impl Read for Growing {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let bytes = self.bytes.lock().unwrap();
        let mut pos = self.pos.lock().unwrap();
        let n = buf.len().min(bytes.len().saturating_sub(*pos));
        buf[..n].copy_from_slice(&bytes[*pos..*pos + n]);
        *pos += n;
        Ok(n)
    }
}

#[test]
fn follow_waits_for_half_written_entries() {
    let mut b = LogBuilder::new(512);
    b.flush().write(3, &pattern(1024, 4), 0).super_count(0);
    let log = b.build();
    let src = Growing::default();
    let mut r = DmlogReader::unstarted(src.clone());
    assert!(matches!(r.poll(true).unwrap(), Polled::Wait));
    for cut in [10, 512, 1024, 1536, 1700, 2048, log.len()] {
        *src.bytes.lock().unwrap() = log[..cut].to_vec();
        loop {
            match r.poll(true).unwrap() {
                Polled::Wait => break,
                Polled::End => panic!("a followed log never ends"),
                Polled::Entry(e) => assert!(cut >= [1024, 2560][e.index as usize - 1]),
            }
        }
    }
    assert_eq!(r.next_index, 3);
    assert_eq!(r.position_bytes(), log.len() as u64);
}

#[test]
fn follow_rereads_a_hole_that_fills_in() {
    let mut b = LogBuilder::new(512);
    b.flush()
        .write(1, &pattern(512, 7), 0)
        .flush()
        .super_count(0);
    let log = b.build();
    // The second entry is still a hole while the third has landed.
    let mut holed = log.clone();
    holed[1024..2048].fill(0);
    let src = Growing::default();
    *src.bytes.lock().unwrap() = holed;
    let mut r = DmlogReader::unstarted(src.clone());
    let pos = src.pos.clone();
    r.rewind = Some(Box::new(move |at| {
        *pos.lock().unwrap() = at as usize;
        Ok(())
    }));
    assert!(matches!(
        r.poll(true).unwrap(),
        Polled::Entry(DmlogEntry { index: 1, .. })
    ));
    assert!(matches!(r.poll(true).unwrap(), Polled::Wait));
    assert!(matches!(r.poll(true).unwrap(), Polled::Wait));
    *src.bytes.lock().unwrap() = log;
    let Polled::Entry(e) = r.poll(true).unwrap() else {
        panic!("hole not re-read")
    };
    assert_eq!(
        e.op,
        OwnedOp::Write {
            offset_bytes: 512,
            data: pattern(512, 7)
        }
    );
    assert!(matches!(
        r.poll(true).unwrap(),
        Polled::Entry(DmlogEntry { index: 3, .. })
    ));
    assert!(matches!(r.poll(true).unwrap(), Polled::Wait));
    // Without following, the same hole past the count ends the log.
    let mut holed = b.build();
    holed[1024..2048].fill(0);
    assert_eq!(read_all(&holed).unwrap().len(), 1);
}

#[test]
fn follow_waits_for_the_super() {
    let log = LogBuilder::new(512).flush().build();
    let src = Growing::default();
    *src.bytes.lock().unwrap() = vec![0; 512];
    let mut r = DmlogReader::unstarted(src.clone());
    let pos = src.pos.clone();
    r.rewind = Some(Box::new(move |at| {
        *pos.lock().unwrap() = at as usize;
        Ok(())
    }));
    assert!(matches!(r.poll(true).unwrap(), Polled::Wait));
    *src.bytes.lock().unwrap() = log;
    assert!(matches!(
        r.poll(true).unwrap(),
        Polled::Entry(DmlogEntry { index: 1, .. })
    ));
}

/// Parsing arbitrary bytes never panics and never loops.
#[test]
fn arbitrary_bytes_do_not_panic() {
    use proptest::prelude::*;
    let base = LogBuilder::new(512)
        .write(1, &pattern(512, 1), LOG_FUA_FLAG)
        .mark("m")
        .discard(2, 2)
        .build();
    proptest!(|(flips in proptest::collection::vec((0usize..2048, any::<u8>()), 0..8), cut in 0usize..2048)| {
        let mut log = base.clone();
        for (at, v) in flips {
            if at < log.len() { log[at] = v; }
        }
        log.truncate(cut.min(log.len()));
        let _ = read_all(&log);
    });
}

mod ingesting {
    use super::*;
    use crate::store::{RecordKind, Store};

    fn store(size: u64, block_size: u32) -> (tempfile::TempDir, Writer) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        Writer::init(&path, size, block_size).unwrap();
        let w = Writer::open(&path).unwrap();
        (dir, w)
    }

    /// History from elsewhere before the log: one block written, a flush.
    fn baseline(w: &mut Writer) {
        let data = pattern(4096, 9);
        let write = Op::Write {
            offset_bytes: 0,
            data: &data,
        };
        w.append(TimeNs(1), write, OpFlags::default()).unwrap();
        w.append(TimeNs(1), Op::Flush, OpFlags::default()).unwrap();
    }

    fn reopen(dir: &tempfile::TempDir) -> Store {
        Store::open(&dir.path().join("store")).unwrap()
    }

    fn disk_at(s: &Store, seq: u64) -> Vec<u8> {
        let mut buf = vec![0u8; s.geometry().size_bytes as usize];
        s.read_at(Seq(seq), 0, &mut buf).unwrap();
        buf
    }

    #[test]
    fn one_record_per_entry_with_partial_blocks_merged() {
        let (dir, mut w) = store(64 << 10, 4096);
        let a = pattern(512, 1);
        let b = pattern(1536, 2);
        let log = LogBuilder::new(512)
            .write(1, &a, 0)
            .write(7, &b, LOG_FUA_FLAG | LOG_METADATA_FLAG)
            .flush()
            .discard(8, 1)
            .mark("checkpoint")
            .build();
        let sum = ingest(&log[..], &mut w, &DmlogOptions::default()).unwrap();
        assert_eq!(
            sum,
            DmlogSummary {
                entries: 5,
                first_seq: Some(Seq(1)),
                last_seq: Some(Seq(5)),
                bytes_written: 2048,
                marks: 1
            }
        );
        w.close().unwrap();
        let s = reopen(&dir);
        let kinds: Vec<_> = (1..=5).map(|i| s.record(Seq(i)).unwrap()).collect();
        assert_eq!(
            kinds.iter().map(|r| r.kind).collect::<Vec<_>>(),
            [
                RecordKind::Write,
                RecordKind::Write,
                RecordKind::Flush,
                RecordKind::Trim,
                RecordKind::Mark
            ]
        );
        assert_eq!((kinds[1].offset_bytes, kinds[1].length_bytes), (3584, 1536));
        assert!(kinds[1].flags.contains(OpFlags::FUA | OpFlags::META));
        assert_eq!((kinds[3].offset_bytes, kinds[3].length_bytes), (4096, 512));
        assert_eq!(kinds[4].mark.as_deref(), Some("checkpoint"));
        // The state after each record is the replayed log up to that entry.
        let mut model = vec![0u8; 64 << 10];
        model[512..1024].copy_from_slice(&a);
        assert_eq!(disk_at(&s, 1), model);
        model[3584..5120].copy_from_slice(&b);
        assert_eq!(disk_at(&s, 2), model);
        assert_eq!(disk_at(&s, 3), model);
        model[4096..4608].fill(0);
        assert_eq!(disk_at(&s, 4), model);
        assert_eq!(disk_at(&s, 5), model);
    }

    #[test]
    fn time_marks_set_the_time_of_what_follows() {
        let (dir, mut w) = store(1 << 20, 4096);
        // 2001-09-09: far from the ingest time, so a mark's time is told apart.
        let t1 = 1_000_000_000_000_000_000i64;
        let log = LogBuilder::new(4096)
            .mark(&format!("t={t1}"))
            .write(0, &pattern(4096, 1), 0)
            .mark("not a time")
            .flush()
            .mark(&format!("t={}", t1 + 5))
            .write(1, &pattern(4096, 2), 0)
            .build();
        ingest(&log[..], &mut w, &DmlogOptions::default()).unwrap();
        w.close().unwrap();
        let s = reopen(&dir);
        let times = s.seq_times(Seq(1), Seq(6)).unwrap();
        assert_eq!(times, [t1, t1, t1, t1, t1 + 5, t1 + 5].map(TimeNs));

        // Without marks, entries get the time they are read.
        let (dir, mut w) = store(1 << 20, 4096);
        let log = LogBuilder::new(4096)
            .write(0, &pattern(4096, 1), 0)
            .flush()
            .build();
        let before = crate::time::now();
        ingest(&log[..], &mut w, &DmlogOptions::default()).unwrap();
        let after = crate::time::now();
        w.close().unwrap();
        for t in reopen(&dir).seq_times(Seq(1), Seq(2)).unwrap() {
            assert!(before <= t && t <= after);
        }
    }

    #[test]
    fn a_write_past_the_disk_names_the_entry_and_keeps_what_came_before() {
        let (dir, mut w) = store(8192, 4096);
        let log = LogBuilder::new(512)
            .write(0, &pattern(512, 1), 0)
            .flush()
            .write(16, &pattern(512, 2), 0)
            .write(1, &pattern(512, 3), 0)
            .build();
        let err = ingest(&log[..], &mut w, &DmlogOptions::default()).unwrap_err();
        assert!(
            matches!(
                err,
                DmlogError::Store {
                    entry: 3,
                    offset_bytes: 2048,
                    ..
                }
            ),
            "{err}"
        );
        let msg = err.to_string();
        assert!(msg.starts_with("entry 3 at byte 2048: "), "{msg}");
        assert!(msg.contains("past the end of the disk"), "{msg}");
        drop(w);
        let s = reopen(&dir);
        assert_eq!(s.head().seq, Seq(2));
        assert_eq!(&disk_at(&s, 2)[..512], &pattern(512, 1)[..]);
    }

    #[test]
    fn a_truncated_log_keeps_the_entries_before_the_cut() {
        let (dir, mut w) = store(1 << 20, 4096);
        let log = LogBuilder::new(4096)
            .write(0, &pattern(4096, 1), 0)
            .write(1, &pattern(8192, 2), 0)
            .build();
        let err = ingest(&log[..log.len() - 100], &mut w, &DmlogOptions::default()).unwrap_err();
        assert!(
            matches!(
                err,
                DmlogError::Truncated {
                    entry: 2,
                    offset_bytes: 12288,
                    ..
                }
            ),
            "{err}"
        );
        drop(w);
        assert_eq!(reopen(&dir).head().seq, Seq(1));
    }

    #[test]
    fn follow_tails_a_growing_file_and_stops_when_asked() {
        let (dir, mut w) = store(1 << 20, 4096);
        let log_path = dir.path().join("log");
        let mut b = LogBuilder::new(512);
        b.write(0, &pattern(4096, 1), 0)
            .flush()
            .write(8, &pattern(4096, 2), 0)
            .super_count(0);
        let log = b.build();
        std::fs::write(&log_path, &log[..700]).unwrap();
        let opts = DmlogOptions {
            follow: true,
            poll_interval: Duration::from_millis(10),
            stop: Arc::new(AtomicBool::new(false)),
            ..Default::default()
        };
        let stop = opts.stop.clone();
        let writer_thread = {
            let log_path = log_path.clone();
            std::thread::spawn(move || {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&log_path)
                    .unwrap();
                for piece in log[700..].chunks(1000) {
                    std::thread::sleep(Duration::from_millis(30));
                    f.write_all(piece).unwrap();
                }
                std::thread::sleep(Duration::from_millis(100));
                stop.store(true, Ordering::Relaxed);
            })
        };
        let file = std::fs::File::open(&log_path).unwrap();
        let sum = ingest_file(file, &mut w, &opts).unwrap();
        writer_thread.join().unwrap();
        assert_eq!(sum.entries, 3);
        w.close().unwrap();
        let s = reopen(&dir);
        assert_eq!(&disk_at(&s, 3)[4096..8192], &pattern(4096, 2)[..]);
    }

    #[test]
    fn a_rerun_resumes_after_the_entries_already_recorded() {
        let (dir, mut w) = store(64 << 10, 4096);
        // History from elsewhere first (a baseline), ending with a flush.
        baseline(&mut w);
        let mut b = LogBuilder::new(512);
        b.flush()
            .mark("t=4000000000000000000")
            .write(1, &pattern(512, 1), 0)
            .write(8, &pattern(1024, 2), LOG_FUA_FLAG)
            .write(1, &pattern(512, 1), 0)
            .super_count(0);
        let log = b.build();
        let log_path = dir.path().join("dm.log");
        // The first ingest is stopped after three entries (as by a kill).
        std::fs::write(&log_path, &log[..512 * 5]).unwrap();
        ingest_file(
            std::fs::File::open(&log_path).unwrap(),
            &mut w,
            &DmlogOptions::default(),
        )
        .unwrap();
        w.close().unwrap();
        std::fs::write(&log_path, &log).unwrap();
        let path = dir.path().join("store");
        let mut w = Writer::open(&path).unwrap();
        let r = already_recorded(&log_path, &Store::open(&path).unwrap()).unwrap();
        assert_eq!(
            r,
            Some(Resume {
                entries: 3,
                first_seq: Seq(3)
            })
        );
        let opts = DmlogOptions {
            skip_entries: 3,
            ..Default::default()
        };
        let sum = ingest_file(std::fs::File::open(&log_path).unwrap(), &mut w, &opts).unwrap();
        assert_eq!((sum.entries, sum.first_seq), (2, Some(Seq(6))));
        w.close().unwrap();
        let s = reopen(&dir);
        assert_eq!(s.head().seq, Seq(7));
        // The skipped t= mark still sets the time of what follows.
        assert_eq!(
            s.record(Seq(6)).unwrap().time_ns,
            TimeNs(4_000_000_000_000_000_000)
        );
        assert!(!s
            .record(Seq(7))
            .unwrap()
            .flags
            .contains(OpFlags::CLOCK_HELD));
        // All of it recorded: nothing more to do.
        let r = already_recorded(&log_path, &s).unwrap();
        assert_eq!(
            r,
            Some(Resume {
                entries: 5,
                first_seq: Seq(3)
            })
        );
    }

    #[test]
    fn a_new_log_that_only_starts_like_the_last_one_ended_is_not_skipped() {
        let (dir, mut w) = store(64 << 10, 4096);
        baseline(&mut w);
        w.close().unwrap();
        let log = LogBuilder::new(512)
            .flush()
            .write(1, &pattern(512, 1), 0)
            .build();
        let log_path = dir.path().join("dm.log");
        std::fs::write(&log_path, &log).unwrap();
        let s = reopen(&dir);
        assert_eq!(already_recorded(&log_path, &s).unwrap(), None);
    }

    /// A run killed after recording only a flush and a trim: content alone
    /// cannot tell that from a new log, the note of where the run began can.
    #[test]
    fn a_run_that_recorded_only_flushes_and_trims_resumes_by_its_note() {
        let (dir, mut w) = store(64 << 10, 4096);
        baseline(&mut w);
        let log = LogBuilder::new(512)
            .flush()
            .discard(8, 8)
            .write(1, &pattern(512, 1), 0)
            .super_count(0)
            .build();
        let log_path = dir.path().join("dm.log");
        let path = dir.path().join("store");
        std::fs::write(&log_path, &log[..512 * 3]).unwrap();
        note_ingest_start(&path, &log_path, w.head().seq).unwrap();
        let sum = ingest_file(
            std::fs::File::open(&log_path).unwrap(),
            &mut w,
            &DmlogOptions::default(),
        )
        .unwrap();
        assert_eq!((sum.entries, sum.first_seq), (2, Some(Seq(3))));
        w.close().unwrap();
        // The log grows in place (same file); the next run resumes.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log_path)
            .and_then(|mut f| io::Write::write_all(&mut f, &log[512 * 3..]))
            .unwrap();
        let resume = Some(Resume {
            entries: 2,
            first_seq: Seq(3),
        });
        assert_eq!(already_recorded(&log_path, &reopen(&dir)).unwrap(), resume);

        // Without the note, or with a damaged one, the flush and trim alone
        // are too weak: nothing is skipped.
        let note = path.join(INGEST_NOTE_FILE);
        let good = std::fs::read(&note).unwrap();
        let mut bad = good.clone();
        let at = bad.len() - 12;
        bad[at] ^= 1;
        std::fs::write(&note, &bad).unwrap();
        assert_eq!(already_recorded(&log_path, &reopen(&dir)).unwrap(), None);
        std::fs::remove_file(&note).unwrap();
        assert_eq!(already_recorded(&log_path, &reopen(&dir)).unwrap(), None);

        // A note of another file (a copy: same content, another inode)
        // does not resume this one.
        std::fs::write(&note, &good).unwrap();
        let copy = dir.path().join("copy.log");
        std::fs::copy(&log_path, &copy).unwrap();
        assert_eq!(already_recorded(&copy, &reopen(&dir)).unwrap(), None);
        assert_eq!(already_recorded(&log_path, &reopen(&dir)).unwrap(), resume);

        // A note whose records are not the log's first entries (the file
        // was rewritten in place) does not resume either.
        let other = LogBuilder::new(512)
            .flush()
            .discard(16, 8)
            .write(1, &pattern(512, 1), 0)
            .build();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&log_path)
            .and_then(|f| std::os::unix::fs::FileExt::write_all_at(&f, &other, 0))
            .unwrap();
        assert_eq!(already_recorded(&log_path, &reopen(&dir)).unwrap(), None);
    }

    #[test]
    fn overlap_is_the_longest_suffix_that_is_a_prefix() {
        let o = |t: &str, p: &str| suffix_prefix_overlap(t.as_bytes(), p.as_bytes());
        assert_eq!(o("xxabab", "ababc"), 4);
        assert_eq!(o("aaaa", "aaab"), 3);
        assert_eq!(o("abc", "abc"), 3);
        assert_eq!(o("abcab", "abc"), 2);
        assert_eq!(o("abc", "x"), 0);
        assert_eq!(o("", "abc"), 0);
        assert_eq!(o("abc", ""), 0);
    }
}
