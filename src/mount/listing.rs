//! Which states the directory listings show, found with bounded work.
//!
//! A history may hold a month of continuous writes: millions of seconds with
//! writes and far more records, so no listing walks the records. Each listed
//! entry is found with one "last record at or before T" query (O(log n) in
//! the store) by stepping back one bucket at a time: the entry after `e` is
//! the last record before the bucket that holds `e`. Every entry is thereby
//! the state *at the end of* its bucket, and its name (the time of that
//! record, see names.rs) resolves back to exactly that state.
//!
//! - `/at` lists the newest `recent_seconds` seconds with writes, one entry
//!   each; older history one entry per hour with writes (the state at the
//!   end of that hour); at most `max_entries` in all.
//! - `/by-day` lists each UTC day with writes; `/by-day/<day>` every second
//!   of that day with writes (at most 86,400).
//!
//! Listings are computed once per `opendir` and served from that snapshot,
//! so `readdir` offsets stay consistent while a writer appends.

use super::names::{Bucket, Day};
use crate::store::{Store, StoreError};
use crate::time::TimeSpec;
use crate::units::{Seq, TimeNs};

/// What listing needs from a history. [`Store`] is the real one; the trait
/// lets unit tests check the bounds on a month-long synthetic history.
pub trait History {
    fn head_seq(&self) -> Seq;
    /// The last record with time <= `t`, `Seq(0)` if none.
    fn last_at(&self, t: TimeNs) -> Result<Seq, StoreError>;
    /// The time of record `seq` (>= 1).
    fn time_of(&self, seq: Seq) -> Result<TimeNs, StoreError>;
    /// Records `from..=to` are about to be searched: read them ahead.
    fn prefetch(&self, _from: Seq, _to: Seq) {}
}

impl History for Store {
    fn head_seq(&self) -> Seq {
        self.head().seq
    }
    fn last_at(&self, t: TimeNs) -> Result<Seq, StoreError> {
        self.resolve(TimeSpec::At(t))
    }
    /// From the index (16 bytes a record), never the record itself: a
    /// listing asks this once per entry, and records may hold megabytes.
    fn time_of(&self, seq: Seq) -> Result<TimeNs, StoreError> {
        Store::time_of(self, seq)
    }
    fn prefetch(&self, from: Seq, to: Seq) {
        self.prefetch_records(from, to)
    }
}

/// One listed state: its record and that record's time (its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub seq: Seq,
    pub time: TimeNs,
}

/// Bounds on the `/at` listing.
#[derive(Debug, Clone, Copy)]
pub struct ListingLimits {
    /// Newest seconds with writes listed one by one.
    pub recent_seconds: usize,
    /// Most entries `/at` lists in all.
    pub max_entries: usize,
}

impl Default for ListingLimits {
    fn default() -> ListingLimits {
        ListingLimits {
            recent_seconds: 3_600,
            max_entries: 20_000,
        }
    }
}

/// Most days `/by-day` lists (the newest); about 270 years.
pub const MAX_DAYS: usize = 100_000;

/// Walk back from `from` (which must be the last record of its bucket),
/// stepping by `bucket(i)` after the i-th entry, stopping before `floor`.
/// Returns oldest first.
fn walk_back<H: History + ?Sized>(
    h: &H,
    from: Seq,
    floor: Option<TimeNs>,
    max: usize,
    bucket: impl Fn(usize) -> Bucket,
) -> Result<Vec<Entry>, StoreError> {
    let mut out = Vec::new();
    let mut seq = from;
    while seq.0 > 0 && out.len() < max {
        let time = h.time_of(seq)?;
        if floor.is_some_and(|f| time < f) {
            break;
        }
        out.push(Entry { seq, time });
        match bucket(out.len() - 1).before(time) {
            Some(t) => seq = h.last_at(t)?,
            None => break,
        }
    }
    out.reverse();
    Ok(out)
}

/// The states `/at` lists, oldest first.
pub fn at_entries<H: History + ?Sized>(
    h: &H,
    limits: ListingLimits,
) -> Result<Vec<Entry>, StoreError> {
    walk_back(h, h.head_seq(), None, limits.max_entries, |i| {
        if i < limits.recent_seconds {
            Bucket::Second
        } else {
            Bucket::Hour
        }
    })
}

/// The UTC days with writes, oldest first.
pub fn days<H: History + ?Sized>(h: &H) -> Result<Vec<Day>, StoreError> {
    let entries = walk_back(h, h.head_seq(), None, MAX_DAYS, |_| Bucket::Day)?;
    Ok(entries.into_iter().map(|e| Day::of(e.time)).collect())
}

/// Every second of `day` with writes, as the state at the end of that second.
pub fn day_entries<H: History + ?Sized>(h: &H, day: Day) -> Result<Vec<Entry>, StoreError> {
    let (Some(start), Some(end)) = (day.start(), day.end()) else {
        return Ok(Vec::new());
    };
    let last = h.last_at(end)?;
    // The walk visits the day's records from the last back, a few per
    // second with writes: on a busy day, most of the day's part of the
    // index and of the log, which is read faster in one sweep (a cold
    // listing of a day of 333,000 records: 1.2 s, 0.45 s read ahead).
    if let Some(before) = Bucket::Day.before(start) {
        h.prefetch(Seq(h.last_at(before)?.0 + 1), last);
    }
    walk_back(h, last, Some(start), usize::MAX, |_| Bucket::Second)
}

/// Whether `day` has any writes.
pub fn day_has_writes<H: History + ?Sized>(h: &H, day: Day) -> Result<bool, StoreError> {
    let (Some(start), Some(end)) = (day.start(), day.end()) else {
        return Ok(false);
    };
    let last = h.last_at(end)?;
    Ok(last.0 > 0 && h.time_of(last)? >= start)
}

/// Whether `seq` is the last record with its time, i.e. whether its
/// canonical name (its time) resolves to it. A later record can share a
/// time when the recorder's clock was held.
///
/// Times never decrease within a store, so this asks only whether the
/// next record is later: two index reads, not a search.
pub fn owns_its_time<H: History + ?Sized>(h: &H, seq: Seq) -> Result<bool, StoreError> {
    next_is_after(h, seq, |time| time)
}

/// Whether `seq` is the state at the end of its second (what listings show).
pub fn ends_its_second<H: History + ?Sized>(h: &H, seq: Seq) -> Result<bool, StoreError> {
    next_is_after(h, seq, |time| Bucket::Second.end(time))
}

/// Whether `seq` is a record and the record after it, if any, is later
/// than `limit(time of seq)`.
fn next_is_after<H: History + ?Sized>(
    h: &H,
    seq: Seq,
    limit: impl Fn(TimeNs) -> TimeNs,
) -> Result<bool, StoreError> {
    let head = h.head_seq();
    if seq.0 == 0 || seq > head {
        return Ok(false);
    }
    if seq == head {
        return Ok(true);
    }
    Ok(h.time_of(Seq(seq.0 + 1))? > limit(h.time_of(seq)?))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::cell::Cell;

    /// Record i (1-based) at `times[i-1]`; counts queries.
    pub(crate) struct Fake {
        pub times: Vec<TimeNs>,
        pub queries: Cell<u64>,
    }

    impl History for Fake {
        fn head_seq(&self) -> Seq {
            Seq(self.times.len() as u64)
        }
        fn last_at(&self, t: TimeNs) -> Result<Seq, StoreError> {
            self.queries.set(self.queries.get() + 1);
            Ok(Seq(self.times.partition_point(|x| *x <= t) as u64))
        }
        fn time_of(&self, seq: Seq) -> Result<TimeNs, StoreError> {
            self.queries.set(self.queries.get() + 1);
            Ok(self.times[seq.0 as usize - 1])
        }
    }

    const S: i64 = 1_000_000_000;
    const T0: i64 = 1_795_392_000 * S; // 2026-11-23T00:00:00Z

    fn fake(times: Vec<i64>) -> Fake {
        Fake {
            times: times.into_iter().map(TimeNs).collect(),
            queries: Cell::new(0),
        }
    }

    #[test]
    fn one_entry_per_second_named_by_its_last_record() {
        // Three writes in second 0, one in second 2, two sharing a time in 5.
        let h = fake(vec![
            T0,
            T0 + 10,
            T0 + 900_000_000,
            T0 + 2 * S + 5,
            T0 + 5 * S,
            T0 + 5 * S,
        ]);
        let e = at_entries(&h, ListingLimits::default()).unwrap();
        assert_eq!(
            e,
            vec![
                Entry {
                    seq: Seq(3),
                    time: TimeNs(T0 + 900_000_000)
                },
                Entry {
                    seq: Seq(4),
                    time: TimeNs(T0 + 2 * S + 5)
                },
                Entry {
                    seq: Seq(6),
                    time: TimeNs(T0 + 5 * S)
                },
            ]
        );
        // Each listed name resolves to the state listed.
        for x in &e {
            assert_eq!(h.last_at(x.time).unwrap(), x.seq);
            assert!(ends_its_second(&h, x.seq).unwrap());
            assert!(owns_its_time(&h, x.seq).unwrap());
        }
        assert!(
            !owns_its_time(&h, Seq(5)).unwrap(),
            "record 6 shares its time"
        );
        assert!(owns_its_time(&h, Seq(1)).unwrap());
        assert!(!ends_its_second(&h, Seq(1)).unwrap());
        assert!(!owns_its_time(&h, Seq(0)).unwrap());
        assert!(!owns_its_time(&h, Seq(7)).unwrap());
    }

    #[test]
    fn empty_history_lists_nothing() {
        let h = fake(vec![]);
        assert!(at_entries(&h, ListingLimits::default()).unwrap().is_empty());
        assert!(days(&h).unwrap().is_empty());
        assert!(day_entries(&h, Day::of(TimeNs(T0))).unwrap().is_empty());
        assert!(!day_has_writes(&h, Day::of(TimeNs(T0))).unwrap());
    }

    #[test]
    fn a_month_of_writes_lists_bounded_with_bounded_work() {
        // A write every second for 30 days: 2.6M seconds with writes.
        let n = 30 * 86_400;
        let h = fake((0..n).map(|i| T0 + i * S + 1).collect());
        let limits = ListingLimits::default();
        let e = at_entries(&h, limits).unwrap();
        // 3,600 seconds, then one per hour for the rest of the month.
        assert_eq!(e.len(), 3_600 + 30 * 24 - 1);
        assert!(
            h.queries.get() <= 2 * e.len() as u64 + 3,
            "{} queries",
            h.queries.get()
        );
        assert!(e
            .windows(2)
            .all(|w| w[0].seq < w[1].seq && w[0].time < w[1].time));
        assert_eq!(e.last().unwrap().seq, h.head_seq());
        for x in &e {
            assert_eq!(h.last_at(x.time).unwrap(), x.seq);
        }
        // Hour entries are the state at the end of their hour.
        assert_eq!(e[0].time, TimeNs(T0 + 3_599 * S + 1));

        let d = days(&h).unwrap();
        assert_eq!(d.len(), 30);
        assert_eq!(d[0], Day::of(TimeNs(T0)));

        h.queries.set(0);
        let one_day = day_entries(&h, d[3]).unwrap();
        assert_eq!(one_day.len(), 86_400);
        assert!(h.queries.get() <= 2 * 86_400 + 3);
        assert!(one_day.iter().all(|x| Day::of(x.time) == d[3]));
        assert!(day_has_writes(&h, d[29]).unwrap());
        assert!(!day_has_writes(&h, Day(d[29].0 + 1)).unwrap());
    }

    /// The last record of each second with writes, by brute force.
    fn every_seconds_last(h: &Fake) -> Vec<Entry> {
        let mut out: Vec<Entry> = Vec::new();
        for (i, &time) in h.times.iter().enumerate() {
            let e = Entry {
                seq: Seq(i as u64 + 1),
                time,
            };
            match out.last_mut() {
                Some(last) if Bucket::Second.start(last.time) == Bucket::Second.start(time) => {
                    *last = e
                }
                _ => out.push(e),
            }
        }
        out
    }

    /// A busy day inside a month lists the last record of every second
    /// with writes, at two queries per entry.
    #[test]
    fn a_busy_day_lists_the_last_record_of_every_second() {
        // A month of history; on day 3, 4 records in every second, at
        // irregular offsets, and none in a few seconds.
        let mut times = Vec::new();
        for i in 0..3 * 86_400 - 1 {
            times.push(T0 + i * S + 3);
        }
        for sec in 0..86_400i64 {
            if sec % 1_000 == 17 {
                continue;
            }
            for k in 0..4 {
                times.push(T0 + (3 * 86_400 + sec) * S + k * 1_000 + (sec * 7_919 % 997));
            }
        }
        for i in 4 * 86_400..30 * 86_400 {
            times.push(T0 + i * S + 5);
        }
        let h = fake(times);
        let day = Day::of(TimeNs(T0 + 3 * 86_400 * S));
        let e = day_entries(&h, day).unwrap();
        let expected: Vec<Entry> = every_seconds_last(&h)
            .into_iter()
            .filter(|x| Day::of(x.time) == day)
            .collect();
        assert_eq!(e.len(), 86_400 - 87);
        assert_eq!(e, expected);
        assert!(
            h.queries.get() <= 2 * e.len() as u64 + 3,
            "{} queries for {} entries",
            h.queries.get(),
            e.len()
        );
    }

    /// Seconds of many records each list the same.
    #[test]
    fn seconds_with_many_records_list_the_same() {
        let times: Vec<i64> = (0..20_000).map(|i| T0 + (i / 1_000) * S + i).collect();
        let h = fake(times);
        let e = day_entries(&h, Day::of(TimeNs(T0))).unwrap();
        assert_eq!(e, every_seconds_last(&h));
        assert_eq!(e.len(), 20);
        assert!(h.queries.get() <= 2 * 20 + 2);
    }

    #[test]
    fn max_entries_caps_the_listing_keeping_the_newest() {
        let h = fake((0..100).map(|i| T0 + i * S).collect());
        let e = at_entries(
            &h,
            ListingLimits {
                recent_seconds: 10,
                max_entries: 15,
            },
        )
        .unwrap();
        assert_eq!(
            e.len(),
            11,
            "10 seconds, then one hour bucket covers the rest"
        );
        let e = at_entries(
            &h,
            ListingLimits {
                recent_seconds: 100,
                max_entries: 15,
            },
        )
        .unwrap();
        assert_eq!(e.len(), 15);
        assert_eq!(e.last().unwrap().seq, Seq(100));
    }

    /// The same walk over the real store: names resolve back, and the
    /// cost stays at a few queries per entry.
    #[test]
    fn the_real_store_lists_the_same_way() {
        use crate::store::{Op, OpFlags, Writer};
        let dir = tempfile::tempdir().unwrap();
        Writer::init(dir.path(), 1 << 20, 4096).unwrap();
        let mut w = Writer::open(dir.path()).unwrap();
        // 5,000 seconds with writes, two records in each.
        for i in 0..5_000 {
            for frac in [100, 700] {
                w.append(TimeNs(T0 + i * S + frac), Op::Flush, OpFlags::default())
                    .unwrap();
            }
        }
        w.close().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let start = std::time::Instant::now();
        let e = at_entries(
            &store,
            ListingLimits {
                recent_seconds: 3_600,
                max_entries: 20_000,
            },
        )
        .unwrap();
        let took = start.elapsed();
        assert_eq!(e.len(), 3_600 + 1, "3,600 seconds and the hour before them");
        assert!(
            e.iter().all(|x| x.seq.0 % 2 == 0),
            "each second's last record"
        );
        for x in e.iter().step_by(97) {
            assert_eq!(store.resolve(TimeSpec::At(x.time)).unwrap(), x.seq);
        }
        assert!(took.as_secs_f64() < 2.0, "listing took {took:?}");
        assert_eq!(
            day_entries(&store, Day::of(TimeNs(T0))).unwrap().len(),
            5_000
        );
    }

    /// Regression: listing and name checks read each record whole (up to
    /// 128 MiB of payload) just for its time, so `ls at` over an hour of
    /// large writes read gigabytes. Now they read only the index: proven
    /// here by damaging a record's data, which only a reader of the record
    /// itself would notice.
    #[test]
    fn listing_reads_times_from_the_index_not_the_records() {
        use crate::store::{Op, OpFlags, Writer};
        let dir = tempfile::tempdir().unwrap();
        Writer::init(dir.path(), 1 << 20, 4096).unwrap();
        let mut w = Writer::open(dir.path()).unwrap();
        let data = crate::mount::test_data::incompressible(64 << 10, 0x2545_f491_4f6c_dd1d);
        for i in 0..3 {
            let op = Op::Write {
                offset_bytes: i * (64 << 10),
                data: &data,
            };
            w.append(TimeNs(T0 + i as i64 * S), op, OpFlags::default())
                .unwrap();
        }
        w.close().unwrap();
        let log = dir.path().join("log");
        let mut bytes = std::fs::read(&log).unwrap();
        let at = bytes
            .windows(32)
            .position(|win| win == &data[1000..1032])
            .expect("the data is stored raw");
        bytes[at] ^= 0xff;
        std::fs::write(&log, &bytes).unwrap();

        let store = Store::open(dir.path()).unwrap();
        assert!(store.record(Seq(1)).is_err(), "the damage must be visible");
        let e = at_entries(&store, ListingLimits::default()).unwrap();
        assert_eq!(e.iter().map(|x| x.seq.0).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert!(owns_its_time(&store, Seq(1)).unwrap());
        assert!(ends_its_second(&store, Seq(1)).unwrap());
        assert_eq!(days(&store).unwrap().len(), 1);
    }

    #[test]
    fn times_before_1970_bucket_correctly() {
        let h = fake(vec![-S - 5, -S + 5, -3]);
        let e = at_entries(&h, ListingLimits::default()).unwrap();
        assert_eq!(e.iter().map(|x| x.seq.0).collect::<Vec<_>>(), vec![1, 3]);
    }
}
