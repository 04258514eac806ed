//! Time as diskhist speaks it: parsing every accepted spelling, and printing.
//!
//! Accepted (CLI and mount alike):
//! - RFC 3339 with `Z` or an offset and up to 9 fractional digits,
//!   `2026-11-23T06:30:15.25+09:00`;
//! - the same with dashes for colons, as the mount lists it
//!   (`2026-11-23T06-30-15Z`, `2026-11-23T06-30-15.25+09-00`);
//! - `@UNIX[.FRAC]`, seconds since the epoch, up to 9 fractional digits;
//! - `#SEQ`, the state after record SEQ;
//! - `latest`.
//!
//! Printed as RFC 3339 UTC.

use crate::units::{Seq, TimeNs};
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};

/// A point in the history, as a user names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSpec {
    /// The state after every write whose time is <= this.
    At(TimeNs),
    /// The state after record `Seq`.
    AfterSeq(Seq),
    /// The newest state.
    Latest,
}

/// The forms a time may take, for error messages.
pub const ACCEPTED_FORMS: &str = "accepted forms: RFC 3339 with Z or an offset and up to 9 \
fractional digits (2026-11-23T06:30:15.25+09:00), the same with '-' for ':' \
(2026-11-23T06-30-15Z), @UNIX[.FRAC] (@1795415415.5), #SEQ (#42), latest";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown time {input:?}: {reason}; {ACCEPTED_FORMS}")]
pub struct TimeError {
    pub input: String,
    pub reason: &'static str,
}

fn err(input: &str, reason: &'static str) -> TimeError {
    TimeError {
        input: input.to_string(),
        reason,
    }
}

/// Parse any accepted spelling of a time.
pub fn parse_time(input: &str) -> Result<TimeSpec, TimeError> {
    let s = input.trim();
    if s.eq_ignore_ascii_case("latest") {
        return Ok(TimeSpec::Latest);
    }
    if let Some(rest) = s.strip_prefix('#') {
        if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err(input, "#SEQ needs a decimal record number"));
        }
        let n: u64 = rest
            .parse()
            .map_err(|_| err(input, "record number too large"))?;
        return Ok(TimeSpec::AfterSeq(Seq(n)));
    }
    if let Some(rest) = s.strip_prefix('@') {
        return parse_unix(rest)
            .map(TimeSpec::At)
            .map_err(|r| err(input, r));
    }
    parse_rfc3339(s)
        .map(TimeSpec::At)
        .map_err(|r| err(input, r))
}

fn parse_unix(s: &str) -> Result<TimeNs, &'static str> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, f),
        None => (body, ""),
    };
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return Err("@UNIX needs decimal seconds");
    }
    let frac_ns = parse_fraction(frac, body.contains('.'))?;
    let secs: i64 = int.parse().map_err(|_| "seconds out of range")?;
    // Negated in i128: the earliest instant's magnitude is one more than i64::MAX.
    let ns = i128::from(secs) * 1_000_000_000 + i128::from(frac_ns);
    i64::try_from(if neg { -ns } else { ns })
        .map(TimeNs)
        .map_err(|_| OUT_OF_RANGE)
}

const OUT_OF_RANGE: &str = "time out of range (years 1677..2262)";

/// `secs` seconds and `frac_ns` (0..1e9) more nanoseconds, in nanoseconds.
/// Computed in i128: in the last second before the earliest instant an i64
/// holds, `secs * 1e9` alone is out of range though the sum is not.
fn secs_and_ns(secs: i64, frac_ns: i64) -> Result<i64, &'static str> {
    let ns = i128::from(secs) * 1_000_000_000 + i128::from(frac_ns);
    i64::try_from(ns).map_err(|_| OUT_OF_RANGE)
}

/// Up to nine fractional digits, as nanoseconds.
fn parse_fraction(frac: &str, had_dot: bool) -> Result<i64, &'static str> {
    if !had_dot {
        return Ok(0);
    }
    if frac.is_empty() || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err("the fraction of a second takes 1 to 9 digits");
    }
    let mut v: i64 = frac.parse().map_err(|_| "bad fraction")?;
    for _ in frac.len()..9 {
        v *= 10;
    }
    Ok(v)
}

fn digits(s: &[u8], range: std::ops::Range<usize>) -> Result<u32, &'static str> {
    let part = s.get(range).ok_or("too short for a date and time")?;
    if !part.iter().all(u8::is_ascii_digit) {
        return Err("expected digits in the date or time");
    }
    Ok(part.iter().fold(0, |acc, d| acc * 10 + u32::from(d - b'0')))
}

fn parse_rfc3339(s: &str) -> Result<TimeNs, &'static str> {
    let b = s.as_bytes();
    // YYYY-MM-DDTHH:MM:SS, with '-' accepted for ':' (the listed spelling).
    if b.len() < 20 {
        return Err("too short for a date and time");
    }
    let year = digits(b, 0..4)?;
    let month = digits(b, 5..7)?;
    let day = digits(b, 8..10)?;
    let hour = digits(b, 11..13)?;
    let minute = digits(b, 14..16)?;
    let second = digits(b, 17..19)?;
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return Err("expected YYYY-MM-DDTHH:MM:SS");
    }
    let colon_style = b[13];
    if !matches!(colon_style, b':' | b'-') || b[16] != colon_style {
        return Err("expected HH:MM:SS (or HH-MM-SS)");
    }
    let mut rest = &s[19..];
    let mut frac_ns = 0;
    if let Some(r) = rest.strip_prefix('.') {
        let end = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
        frac_ns = parse_fraction(&r[..end], true)?;
        rest = &r[end..];
    }
    let offset_secs: i64 = if rest == "Z" || rest == "z" {
        0
    } else {
        let rb = rest.as_bytes();
        if rb.len() != 6 || !matches!(rb[0], b'+' | b'-') || !matches!(rb[3], b':' | b'-') {
            return Err("expected Z or an offset like +09:00 after the time");
        }
        let oh = digits(rb, 1..3)?;
        let om = digits(rb, 4..6)?;
        if oh > 23 || om > 59 {
            return Err("offset out of range");
        }
        let v = i64::from(oh * 3600 + om * 60);
        if rb[0] == b'-' {
            -v
        } else {
            v
        }
    };
    let date = NaiveDate::from_ymd_opt(year as i32, month, day).ok_or("no such date")?;
    let dt = date
        .and_hms_opt(hour, minute, second)
        .ok_or("no such time of day")?;
    let secs = dt.and_utc().timestamp() - offset_secs;
    secs_and_ns(secs, frac_ns).map(TimeNs)
}

fn to_datetime(t: TimeNs) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_nanos(t.0)
}

/// RFC 3339 UTC, with as many fractional digits (0, 3, 6 or 9) as needed.
pub fn format_rfc3339(t: TimeNs) -> String {
    to_datetime(t).to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// RFC 3339 UTC with all nine fractional digits, for machine-readable output.
pub fn format_rfc3339_ns(t: TimeNs) -> String {
    to_datetime(t).to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// The colon-free spelling used for names in the mounted tree
/// (`2026-11-23T06-30-15Z`, `2026-11-23T06-30-15.250Z`): safe over SMB,
/// tar and scp, and accepted back by [`parse_time`].
pub fn format_canonical(t: TimeNs) -> String {
    format_rfc3339(t).replace(':', "-")
}

/// The wall clock now, in ns.
pub fn now() -> TimeNs {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    TimeNs(d.as_nanos() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_795_415_415; // 2026-11-23T06:30:15Z

    #[test]
    fn rfc3339_spellings_agree() {
        let z = parse_time("2026-11-23T06:30:15Z").unwrap();
        assert_eq!(z, TimeSpec::At(TimeNs(T0 * 1_000_000_000)));
        assert_eq!(parse_time("2026-11-23T15:30:15+09:00").unwrap(), z);
        assert_eq!(parse_time("2026-11-23T06-30-15Z").unwrap(), z);
        assert_eq!(parse_time("2026-11-23t06:30:15z").unwrap(), z);
        assert_eq!(parse_time("@1795415415").unwrap(), z);
        assert_eq!(
            parse_time("2026-11-23T06:30:15.25+09:00").unwrap(),
            TimeSpec::At(TimeNs((T0 - 9 * 3600) * 1_000_000_000 + 250_000_000))
        );
        assert_eq!(
            parse_time("2026-11-23T06:30:15.123456789Z").unwrap(),
            TimeSpec::At(TimeNs(T0 * 1_000_000_000 + 123_456_789))
        );
        assert_eq!(
            parse_time("@1.5").unwrap(),
            TimeSpec::At(TimeNs(1_500_000_000))
        );
        assert_eq!(
            parse_time("@-1.5").unwrap(),
            TimeSpec::At(TimeNs(-1_500_000_000))
        );
    }

    #[test]
    fn seq_and_latest() {
        assert_eq!(parse_time("#42").unwrap(), TimeSpec::AfterSeq(Seq(42)));
        assert_eq!(parse_time("#0").unwrap(), TimeSpec::AfterSeq(Seq(0)));
        assert_eq!(parse_time("latest").unwrap(), TimeSpec::Latest);
    }

    #[test]
    fn rejects_with_the_accepted_forms() {
        for bad in [
            "yesterday",
            "2026-11-23",
            "2026-11-23T06:30:15",
            "2026-11-23T06:30:15.1234567891Z",
            "2026-13-23T06:30:15Z",
            "2026-02-30T06:30:15Z",
            "2026-11-23T06:30-15Z",
            "#",
            "#-1",
            "@",
            "@1.",
            "@abc",
            "2026-11-23T06:30:15+9:00",
            "",
        ] {
            let e = parse_time(bad).unwrap_err();
            assert!(e.to_string().contains("accepted forms"), "{bad}: {e}");
        }
    }

    /// Found by the `time` fuzz target: the earliest representable second
    /// (1677-09-21T00:12:43Z..44Z) printed as RFC 3339 was refused as out of
    /// range, because `secs * 1e9` overflowed before the fraction was added;
    /// and `@-9223372036.854775808`, the earliest instant, was refused too.
    #[test]
    fn earliest_instants_round_trip() {
        let min = TimeSpec::At(TimeNs(i64::MIN));
        assert_eq!(parse_time("@-9223372036.854775808").unwrap(), min);
        assert_eq!(parse_time("1677-09-21T00:12:43.145224192Z").unwrap(), min);
        let t = parse_time("@-9223372036.8").unwrap();
        assert_eq!(t, TimeSpec::At(TimeNs(-9_223_372_036_800_000_000)));
        let TimeSpec::At(ns) = t else { unreachable!() };
        assert_eq!(format_canonical(ns), "1677-09-21T00-12-43.200Z");
        assert_eq!(parse_time(&format_canonical(ns)).unwrap(), t);
        assert_eq!(parse_time(&format_rfc3339_ns(ns)).unwrap(), t);
        for ns in [i64::MIN, i64::MIN + 1, i64::MAX, -1] {
            let t = TimeNs(ns);
            assert_eq!(parse_time(&format_canonical(t)).unwrap(), TimeSpec::At(t));
            assert_eq!(parse_time(&format_rfc3339_ns(t)).unwrap(), TimeSpec::At(t));
        }
        // One nanosecond either side is out of range, with the reason.
        for bad in [
            "@-9223372036.854775809",
            "@9223372036.854775808",
            "1677-09-21T00:12:43.145224191Z",
            "2262-04-11T23:47:16.854775808Z",
        ] {
            let e = parse_time(bad).unwrap_err();
            assert_eq!(e.reason, OUT_OF_RANGE, "{bad}");
        }
    }

    #[test]
    fn printing_round_trips() {
        for ns in [
            0,
            T0 * 1_000_000_000,
            T0 * 1_000_000_000 + 250_000_000,
            123_456_789,
        ] {
            let t = TimeNs(ns);
            assert_eq!(parse_time(&format_rfc3339(t)).unwrap(), TimeSpec::At(t));
            assert_eq!(parse_time(&format_canonical(t)).unwrap(), TimeSpec::At(t));
            assert_eq!(parse_time(&format_rfc3339_ns(t)).unwrap(), TimeSpec::At(t));
            assert!(!format_canonical(t).contains(':'));
        }
        assert_eq!(
            format_rfc3339(TimeNs(T0 * 1_000_000_000)),
            "2026-11-23T06:30:15Z"
        );
        assert_eq!(
            format_canonical(TimeNs(T0 * 1_000_000_000)),
            "2026-11-23T06-30-15Z"
        );
    }
}
