//! Names in the mounted tree and the times they stand for.
//!
//! - A state's *canonical name* is the colon-free spelling of its record's
//!   time, to the nanosecond where needed ([`format_canonical`]):
//!   `2026-11-23T06-30-15.123456789Z`. Looking it up gives exactly that
//!   state, because "the disk at T" is the state after the last record with
//!   time <= T, and a state only gets a canonical name when it *is* the last
//!   record with its time.
//! - Days (`/by-day/2026-11-23`) are UTC calendar days.
//! - `/seq/<n>` takes plain decimal without leading zeros, so each record
//!   has exactly one spelling there.
//!
//! Times are bucketed with floor division, so instants before 1970 land in
//! the bucket that contains them, not the one after.

use crate::time::format_canonical;
use crate::units::{Seq, TimeNs};
use chrono::NaiveDate;

const NS_PER_SEC: i64 = 1_000_000_000;
const SECS_PER_HOUR: i64 = 3_600;
const SECS_PER_DAY: i64 = 86_400;

/// The name under `/at` of the state whose record time is `t`.
pub fn state_name(t: TimeNs) -> String {
    format_canonical(t)
}

/// How coarsely a listing groups states: each listed entry is the state at
/// the end of one bucket in which writes happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Second,
    Hour,
    Day,
}

impl Bucket {
    fn len_ns(self) -> i64 {
        match self {
            Bucket::Second => NS_PER_SEC,
            Bucket::Hour => SECS_PER_HOUR * NS_PER_SEC,
            Bucket::Day => SECS_PER_DAY * NS_PER_SEC,
        }
    }

    /// First instant of the bucket holding `t` (clamped to the start of
    /// representable time).
    pub fn start(self, t: TimeNs) -> TimeNs {
        let len = self.len_ns();
        TimeNs(t.0.div_euclid(len).checked_mul(len).unwrap_or(i64::MIN))
    }

    /// Last instant (ns) of the bucket holding `t`, saturating at the end of
    /// representable time.
    pub fn end(self, t: TimeNs) -> TimeNs {
        TimeNs(self.start(t).0.saturating_add(self.len_ns() - 1))
    }

    /// Last instant before the bucket holding `t`, or `None` at the start of
    /// representable time.
    pub fn before(self, t: TimeNs) -> Option<TimeNs> {
        self.start(t).0.checked_sub(1).map(TimeNs)
    }
}

/// A UTC calendar day, counted from 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(pub i64);

impl Day {
    pub fn of(t: TimeNs) -> Day {
        Day(t.0.div_euclid(SECS_PER_DAY * NS_PER_SEC))
    }

    /// First instant of the day, or `None` if outside the time range.
    pub fn start(self) -> Option<TimeNs> {
        self.0.checked_mul(SECS_PER_DAY * NS_PER_SEC).map(TimeNs)
    }

    /// Last instant (ns) of the day.
    pub fn end(self) -> Option<TimeNs> {
        self.start()
            .and_then(|s| s.0.checked_add(SECS_PER_DAY * NS_PER_SEC - 1))
            .map(TimeNs)
    }

    /// `YYYY-MM-DD`.
    pub fn name(self) -> String {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("1970-01-01 exists");
        match epoch.checked_add_signed(chrono::TimeDelta::days(self.0)) {
            Some(d) => d.format("%Y-%m-%d").to_string(),
            None => format!("day{}", self.0),
        }
    }

    /// The day a `YYYY-MM-DD` name stands for; only that exact spelling.
    pub fn parse(name: &str) -> Option<Day> {
        let b = name.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let date = NaiveDate::parse_from_str(name, "%Y-%m-%d").ok()?;
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)?;
        let day = Day((date - epoch).num_days());
        // Rejects spellings chrono tolerates but we never print.
        (day.name() == name && day.start().is_some()).then_some(day)
    }
}

/// The record number a `/seq/<n>` name stands for: decimal, no sign, no
/// leading zeros (so `/seq/7` and `/seq/007` are not two directories).
pub fn parse_seq_name(name: &str) -> Option<Seq> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if name.len() > 1 && name.starts_with('0') {
        return None;
    }
    name.parse().ok().map(Seq)
}

pub fn seq_name(seq: Seq) -> String {
    seq.0.to_string()
}

/// A name in a state's directory that stands for partition `N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionName {
    /// `p<N>.img`: the partition's bytes.
    Image(u32),
    /// `p<N>`: the directory that holds its `files/`.
    Dir(u32),
}

impl PartitionName {
    /// `p3.img` or `p3`: decimal, no leading zeros, as Linux names them.
    pub fn parse(name: &str) -> Option<PartitionName> {
        let rest = name.strip_prefix('p')?;
        let (digits, image) = match rest.strip_suffix(".img") {
            Some(d) => (d, true),
            None => (rest, false),
        };
        let n = parse_seq_name(digits)?.0;
        let n = u32::try_from(n).ok()?;
        Some(if image {
            PartitionName::Image(n)
        } else {
            PartitionName::Dir(n)
        })
    }

    pub fn name(self) -> String {
        match self {
            PartitionName::Image(n) => format!("p{n}.img"),
            PartitionName::Dir(n) => format!("p{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_have_one_spelling() {
        for (name, want) in [
            ("p1.img", Some(PartitionName::Image(1))),
            ("p12", Some(PartitionName::Dir(12))),
            ("p0", Some(PartitionName::Dir(0))),
            ("p01", None),
            ("p1.IMG", None),
            ("p", None),
            ("p.img", None),
            ("p-1", None),
            ("p+1", None),
            ("p4294967296", None),
            ("q1", None),
        ] {
            assert_eq!(PartitionName::parse(name), want, "{name}");
            if let Some(p) = want {
                assert_eq!(p.name(), name);
            }
        }
    }
    use crate::time::{parse_time, TimeSpec};

    const T0: i64 = 1_795_415_415; // 2026-11-23T06:30:15Z

    #[test]
    fn state_names_parse_back_to_the_same_instant() {
        for ns in [
            T0 * NS_PER_SEC,
            T0 * NS_PER_SEC + 123_456_789,
            T0 * NS_PER_SEC + 250_000_000,
            T0 * NS_PER_SEC + 999_999_999,
            0,
            -1,
            -NS_PER_SEC * 86_400 * 365 + 7,
        ] {
            let name = state_name(TimeNs(ns));
            assert!(!name.contains(':'), "{name}");
            assert!(!name.contains('/'), "{name}");
            assert_eq!(
                parse_time(&name).unwrap(),
                TimeSpec::At(TimeNs(ns)),
                "{name}"
            );
        }
        assert_eq!(
            state_name(TimeNs(T0 * NS_PER_SEC + 123_456_789)),
            "2026-11-23T06-30-15.123456789Z"
        );
        assert_eq!(state_name(TimeNs(T0 * NS_PER_SEC)), "2026-11-23T06-30-15Z");
    }

    #[test]
    fn buckets_floor_including_before_1970() {
        let t = TimeNs(T0 * NS_PER_SEC + 5);
        assert_eq!(Bucket::Second.start(t), TimeNs(T0 * NS_PER_SEC));
        assert_eq!(
            Bucket::Second.end(t),
            TimeNs(T0 * NS_PER_SEC + NS_PER_SEC - 1)
        );
        assert_eq!(Bucket::Second.before(t), Some(TimeNs(T0 * NS_PER_SEC - 1)));
        assert_eq!(
            Bucket::Hour.start(t),
            TimeNs((T0 - 30 * 60 - 15) * NS_PER_SEC)
        );
        assert_eq!(Bucket::Second.start(TimeNs(-1)), TimeNs(-NS_PER_SEC));
        assert_eq!(Bucket::Second.end(TimeNs(-1)), TimeNs(-1));
        assert_eq!(
            Bucket::Day.start(TimeNs(-1)),
            TimeNs(-SECS_PER_DAY * NS_PER_SEC)
        );
        assert_eq!(Bucket::Second.before(TimeNs(i64::MIN)), None);
        assert_eq!(Bucket::Second.end(TimeNs(i64::MAX)), TimeNs(i64::MAX));
    }

    #[test]
    fn day_names_round_trip_strictly() {
        let d = Day::of(TimeNs(T0 * NS_PER_SEC));
        assert_eq!(d.name(), "2026-11-23");
        assert_eq!(Day::parse("2026-11-23"), Some(d));
        assert_eq!(Day::of(d.start().unwrap()), d);
        assert_eq!(Day::of(d.end().unwrap()), d);
        assert_eq!(Day::of(TimeNs(d.end().unwrap().0 + 1)), Day(d.0 + 1));
        assert_eq!(Day::of(TimeNs(-1)).name(), "1969-12-31");
        for bad in [
            "2026-11-31",
            "2026-1-23",
            "2026-11-23T",
            "26-11-23",
            "",
            "2026/11/23",
        ] {
            assert_eq!(Day::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn seq_names_have_one_spelling() {
        assert_eq!(parse_seq_name("0"), Some(Seq(0)));
        assert_eq!(parse_seq_name("42"), Some(Seq(42)));
        assert_eq!(seq_name(Seq(42)), "42");
        for bad in ["", "042", "+4", "-1", "4a", "#4", "99999999999999999999999"] {
            assert_eq!(parse_seq_name(bad), None, "{bad}");
        }
    }
}
