//! `diskhist timeline STORE [--part N] [--from T] [--to T] [--format
//! bodyfile|jsonl|csv] [-o FILE]`: every file version in the history with
//! the times the filesystem claims and the recorded times of the writes
//! that made it; `--check [--tolerance 120s] [--json]`: the contradictions
//! between the two (library: `history::check`).
//!
//! The bodyfile is The Sleuth Kit 3.x body format (`MD5|name|inode|
//! mode_as_string|UID|GID|size|atime|mtime|ctime|crtime`, whole seconds),
//! so `mactime -b FILE` reads it. Each version is one line with its
//! claimed times (NTFS: the $STANDARD_INFORMATION ones, and the
//! $FILE_NAME ones on a line named `PATH ($FILE_NAME)`, as `fls -m` does);
//! its recorded times are lines of their own, named
//! `PATH (diskhist: content written, record N)` and `PATH (diskhist:
//! version recorded, record N)`, with the recorded time in all four time
//! columns (mactime shows a zero time as a real entry dated 1970), so
//! that mactime interleaves claimed and recorded times.

use super::history::{hex, mode_string, state_range, time_text};
use super::json::{self, Object};
use super::output::{Content, Output};
use super::{open_store, Status, UsageError};
use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use diskhist::fs::{FileKind, Stat};
use diskhist::history::check::{human_ns, Checker, Finding};
use diskhist::history::tree::{self, Event};
use diskhist::history::ChangeKind;
use diskhist::sessions::{read_sessions, Session};
use diskhist::{format_rfc3339_ns, Seq, TimeNs};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The Sleuth Kit 3.x body file, for `mactime -b`.
    Bodyfile,
    /// One JSON object per version.
    Jsonl,
    /// Comma-separated, with a header line.
    Csv,
}

#[derive(Args)]
pub struct TimelineArgs {
    /// The store directory.
    pub store: PathBuf,
    /// The partition (as `ls --part`); leave out for a disk without a
    /// partition table.
    #[arg(long, value_name = "N")]
    pub part: Option<u32>,
    /// Start from the state at this time (default: the empty disk).
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// Stop at the state at this time (default: the latest).
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// What to write.
    #[arg(long, value_enum, default_value = "bodyfile")]
    pub format: Format,
    /// Report contradictions between claimed and recorded times instead
    /// (exit 1 when there are any that are not informational).
    #[arg(long)]
    pub check: bool,
    /// With --check: how far claimed and recorded times may differ before
    /// it counts (`120s`, `5m`, `500ms`, `2h`; a bare number is seconds).
    #[arg(long, value_name = "DURATION", default_value = "120s")]
    pub tolerance: String,
    /// With --check: one JSON object per finding.
    #[arg(long)]
    pub json: bool,
    /// Write here instead of standard output (never over an existing
    /// file without --force, never inside a store).
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// With -o: replace FILE if it exists.
    #[arg(long)]
    pub force: bool,
    /// Say on standard error how many states were examined and how long.
    #[arg(long)]
    pub stats: bool,
}

/// `120s`, `5m`, `500ms`, `2h`, `1d`, or seconds.
pub fn parse_duration_ns(s: &str) -> Result<i64, UsageError> {
    let bad = || {
        UsageError(format!(
            "bad duration {s:?}: give a number with a unit (500ms, 120s, 5m, 2h, 1d)"
        ))
    };
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let mul = match unit {
        "" | "s" => 1e9,
        "ms" => 1e6,
        "us" => 1e3,
        "ns" => 1.0,
        "m" | "min" => 60e9,
        "h" => 3600e9,
        "d" => 86400e9,
        _ => return Err(bad()),
    };
    let v = n * mul;
    if !v.is_finite() || !(0.0..9e18).contains(&v) {
        return Err(bad());
    }
    Ok(v as i64)
}

fn secs(t: Option<TimeNs>) -> i64 {
    t.map_or(0, |t| t.0.div_euclid(1_000_000_000))
}

fn body_mode(st: &Stat) -> String {
    let t = match st.kind {
        FileKind::Dir => 'd',
        FileKind::File => 'r',
        FileKind::Symlink => 'l',
        FileKind::CharDevice => 'c',
        FileKind::BlockDevice => 'b',
        FileKind::Fifo => 'p',
        FileKind::Socket => 's',
    };
    let m = mode_string(st);
    format!("{t}/{t}{}", &m[1..])
}

/// A bodyfile's name field: `|` would split it.
fn body_name(p: &[u8]) -> String {
    String::from_utf8_lossy(p)
        .replace('|', "%7C")
        .replace('\n', "%0A")
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn write_event(out: &mut Output, f: Format, e: &Event) -> std::io::Result<()> {
    let path = String::from_utf8_lossy(&e.path).into_owned();
    let Some(v) = &e.version else {
        // Ends are versions of nothing: only jsonl and csv say them.
        return match f {
            Format::Bodyfile => Ok(()),
            Format::Jsonl => writeln!(
                out,
                "{}",
                Object::new()
                    .str("path", &path)
                    .str("change", e.kind.name())
                    .num("seq", e.seq.0)
                    .str("recorded", &time_text(e.seq, e.time_ns))
                    .opt_str(
                        "why",
                        match &e.kind {
                            ChangeKind::Unreadable(why) => Some(why.as_str()),
                            _ => None,
                        },
                    )
                    .opt_str(
                        "renamed_to",
                        e.renamed_to
                            .as_ref()
                            .map(|r| String::from_utf8_lossy(r).into_owned())
                            .as_deref()
                    )
                    .build()
            ),
            Format::Csv => writeln!(
                out,
                "{},{},{},{},,,,,,,,,,,,,",
                csv_field(&path),
                e.kind.name(),
                e.seq.0,
                time_text(e.seq, e.time_ns)
            ),
        };
    };
    let st = &v.stat;
    match f {
        Format::Bodyfile => {
            let name = body_name(&e.path);
            writeln!(
                out,
                "0|{name}|{}|{}|{}|{}|{}|{}|{}|{}|{}",
                st.ino,
                body_mode(st),
                st.uid,
                st.gid,
                st.size,
                secs(st.atime),
                secs(st.mtime),
                secs(st.ctime),
                secs(st.crtime)
            )?;
            // NTFS keeps a second set of times in $FILE_NAME: a line of its
            // own, named as The Sleuth Kit's fls -m names it.
            let named = |n: &str| st.times.iter().find(|(k, _)| *k == n).map(|(_, t)| *t);
            if let Some(fn_mod) = named("user.ntfs.fn.modified") {
                writeln!(
                    out,
                    "0|{name} ($FILE_NAME)|{}|{}|{}|{}|{}|{}|{}|{}|{}",
                    st.ino,
                    body_mode(st),
                    st.uid,
                    st.gid,
                    st.size,
                    secs(named("user.ntfs.fn.accessed")),
                    secs(Some(fn_mod)),
                    secs(named("user.ntfs.fn.changed")),
                    secs(named("user.ntfs.fn.created"))
                )?;
            }
            if e.seq.0 > 0 {
                writeln!(
                    out,
                    "0|{name} (diskhist: version recorded, record {})|{}|{}|{}|{}|{}|{t}|{t}|{t}|{t}",
                    e.seq.0,
                    st.ino,
                    body_mode(st),
                    st.uid,
                    st.gid,
                    st.size,
                    t = secs(Some(e.time_ns))
                )?;
            }
            if let (true, Some((cs, ct))) = (e.content_changed, e.content_write) {
                writeln!(
                    out,
                    "0|{name} (diskhist: content written, record {})|{}|{}|{}|{}|{}|{t}|{t}|{t}|{t}",
                    cs.0,
                    st.ino,
                    body_mode(st),
                    st.uid,
                    st.gid,
                    st.size,
                    t = secs(Some(ct))
                )?;
            }
            Ok(())
        }
        Format::Jsonl => {
            let mut o = Object::new()
                .str("path", &path)
                .str("change", e.kind.name())
                .num("seq", e.seq.0)
                .str("recorded", &time_text(e.seq, e.time_ns))
                .raw("content_changed", e.content_changed.to_string())
                .raw(
                    "changed",
                    json::array(e.fields.iter().map(|f| json::string(f))),
                )
                .num("ino", st.ino)
                .str("type", &format!("{:?}", st.kind).to_lowercase())
                .str("mode", &format!("{:04o}", st.perm))
                .num("uid", st.uid)
                .num("gid", st.gid)
                .num("size", st.size)
                .str("sha256", &hex(&v.sha256))
                .raw("claimed", json::times_object(&st.times));
            if let Some((cs, ct)) = e.content_write {
                o = o
                    .num("content_write_seq", cs.0)
                    .str("content_written", &format_rfc3339_ns(ct));
            }
            writeln!(out, "{}", o.build())
        }
        Format::Csv => {
            let t = |x: Option<TimeNs>| x.map(format_rfc3339_ns).unwrap_or_default();
            let (cs, ct) = match e.content_write {
                Some((s, t)) => (s.0.to_string(), format_rfc3339_ns(t)),
                None => (String::new(), String::new()),
            };
            writeln!(
                out,
                "{},{},{},{},{},{:?},{:04o},{},{},{},{},{},{},{},{},{},{}",
                csv_field(&path),
                e.kind.name(),
                e.seq.0,
                time_text(e.seq, e.time_ns),
                st.ino,
                st.kind,
                st.perm,
                st.uid,
                st.gid,
                st.size,
                hex(&v.sha256),
                t(st.mtime),
                t(st.atime),
                t(st.ctime),
                t(st.crtime),
                cs,
                ct
            )
        }
    }
}

/// The recorder's clock as the session that recorded `seq` saw it.
fn clock_of(sessions: &[Session], seq: Seq) -> String {
    let s = sessions
        .iter()
        .rev()
        .find(|s| s.start_seq < seq && s.end.as_ref().is_none_or(|e| seq <= e.seq));
    match s {
        None => "no serve session: times as given to import/ingest".into(),
        Some(s) => match &s.clock {
            None => format!("session {}: clock state unknown", s.id),
            Some(c) if c.synchronised => format!(
                "session {}: clock synchronised (estimated error {} us, max {} us)",
                s.id, c.est_error_us, c.max_error_us
            ),
            Some(c) => format!(
                "session {}: clock NOT synchronised (state {}, max error {} us)",
                s.id, c.state, c.max_error_us
            ),
        },
    }
}

fn write_finding(
    out: &mut Output,
    json_out: bool,
    f: &Finding,
    clock: &str,
) -> std::io::Result<()> {
    let path = String::from_utf8_lossy(&f.path);
    if json_out {
        writeln!(
            out,
            "{}",
            Object::new()
                .str("path", &path)
                .str("finding", f.rule)
                .num("seq", f.seq.0)
                .str("time", &format_rfc3339_ns(f.time_ns))
                .str("claimed", &format_rfc3339_ns(f.claimed))
                .num("apart_ns", f.apart_ns)
                .str(
                    "apart",
                    &format!(
                        "{}{}",
                        if f.apart_ns < 0 { "-" } else { "" },
                        human_ns(f.apart_ns)
                    )
                )
                .raw("informational", f.informational.to_string())
                .str("detail", &f.detail)
                .str("clock", clock)
                .build()
        )
    } else {
        writeln!(
            out,
            "{}{}: {}  record {} at {}  claimed {} ({} {})  {}  [clock: {clock}]",
            f.rule,
            if f.informational { " (info)" } else { "" },
            path,
            f.seq.0,
            format_rfc3339_ns(f.time_ns),
            format_rfc3339_ns(f.claimed),
            human_ns(f.apart_ns),
            if f.apart_ns < 0 { "before" } else { "after" },
            f.detail
        )
    }
}

pub fn run(a: TimelineArgs) -> Result<Status> {
    if !a.check && (a.json || a.tolerance != "120s") {
        return Err(UsageError("--json and --tolerance go with --check".into()).into());
    }
    let tolerance = parse_duration_ns(&a.tolerance)?;
    let store = Arc::new(open_store(&a.store)?);
    let (from, to) = state_range(&store, a.from.as_deref(), a.to.as_deref())?;
    let mut out = Output::create(a.output.as_deref(), a.force, Content::Text)?;
    let started = Instant::now();
    let stats;
    let mut failing = false;
    if a.check {
        let mut checker = Checker::new(tolerance);
        stats = tree::timeline(&store, a.part, from, to, |e| {
            checker.event(e);
            Ok(())
        })?;
        let sessions = read_sessions(&a.store).unwrap_or_else(|e| {
            eprintln!("diskhist: warning: the sessions file: {e}");
            Vec::new()
        });
        for f in checker.finish() {
            failing |= !f.informational;
            write_finding(&mut out, a.json, &f, &clock_of(&sessions, f.seq))?;
        }
    } else {
        if a.format == Format::Csv {
            writeln!(
                out,
                "path,change,seq,recorded,ino,type,mode,uid,gid,size,sha256,mtime,atime,ctime,crtime,content_write_seq,content_written"
            )?;
        }
        stats = tree::timeline(&store, a.part, from, to, |e| {
            write_event(&mut out, a.format, e)
        })?;
    }
    out.finish().context("writing the timeline")?;
    if a.stats {
        eprintln!(
            "diskhist: timeline: {} states examined of {} records, {} index probes, {:.3} s",
            stats.states_examined,
            to.0 - from.0,
            stats.index_probes,
            started.elapsed().as_secs_f64()
        );
    }
    if !stats.filesystem_seen {
        let why = stats.last_absence.unwrap_or_else(|| "no filesystem".into());
        return Err(UsageError(format!("{why} (at every state examined)")).into());
    }
    Ok(if failing { Status::No } else { Status::Success })
}
