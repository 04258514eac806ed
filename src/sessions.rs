//! The record of serve sessions, `STORE/sessions`: when each `diskhist
//! serve` started and ended, which diskhist recorded, and how far the host
//! clock could be trusted when it started. The times in the store are only
//! as good as that clock; this file is the evidence of how good it was.
//!
//! The NBD server writes it ([`SessionLog`]); `info` and `verify` read it
//! ([`read_sessions`]). It lives beside the store's files, not in the
//! store: the store records writes and knows nothing of who served them.
//!
//! # Format
//!
//! Append-only text, file mode 0600, one event per line:
//!
//! ```text
//! diskhist-session v1 start id=1795415415000000000-4242 time=2026-11-23T06:30:15.000000000Z
//!     time_ns=1795415415000000000 version=0.1.0 pid=4242 listen=unix:/srv/s/nbd.sock sync=flush
//!     clock_synced=yes clock_state=0 clock_status=0x2001 clock_est_error_us=120
//!     clock_max_error_us=4000 head_seq=17 head_chain=<64 hex> prev=1a2b3c4d crc32c=5e6f7a8b
//! diskhist-session v1 end id=... time=... time_ns=... head_seq=912 head_chain=<64 hex>
//!     reason=signal prev=5e6f7a8b crc32c=...
//! ```
//!
//! (shown wrapped; each event is one line). Values are percent-encoded
//! (`%`, space, `=`, control characters). `crc32c` covers the line up to
//! the space before `crc32c=`; `prev` is the previous line's `crc32c`
//! (`00000000` for the first), so a line removed, reordered or edited
//! without recomputing every later checksum shows. `head_seq` and
//! `head_chain` tie each event to the store's hash chain: the chain value
//! must equal the store's own chain after record `head_seq` (`diskhist
//! verify` can check it), so a session cannot be moved to other records.
//! A start without an end is a server that was killed or lost power.
//!
//! Each line is written with one `write(2)` and made durable before serve
//! continues. A line torn by a power cut is reported, never skipped.
//!
//! A full filesystem: a line that cannot be written whole is cut off again,
//! so the file stays valid, and the error is returned (serve refuses to
//! start without its start line). After each line, room for the next one
//! is reserved (`fallocate`, keeping the size), so the end of a session is
//! recorded even if the disk filled up while it ran.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::time::format_rfc3339_ns;
use crate::units::{Hash32, Seq, TimeNs};

pub const SESSIONS_FILE: &str = "sessions";
const MAGIC: &str = "diskhist-session v1";

/// The host clock's discipline as the kernel reports it (`adjtimex(2)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockState {
    /// Synchronised to a time source (NTP, PTP...): the kernel's state is
    /// not TIME_ERROR and STA_UNSYNC is clear.
    pub synchronised: bool,
    /// `adjtimex` return value: 0 TIME_OK ... 5 TIME_ERROR.
    pub state: i32,
    /// `timex.status` bits (STA_*).
    pub status: i32,
    /// Estimated error, microseconds.
    pub est_error_us: i64,
    /// Maximum error, microseconds.
    pub max_error_us: i64,
}

/// Read the clock state without changing anything.
pub fn clock_state() -> io::Result<ClockState> {
    // SAFETY: `timex` is plain old data for which all-zero is valid; with
    // `modes == 0` adjtimex only reads the kernel's state into it.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: `tx` is a valid, exclusively borrowed timex for the call.
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ClockState {
        synchronised: state != libc::TIME_ERROR && tx.status & libc::STA_UNSYNC == 0,
        state,
        status: tx.status,
        est_error_us: tx.esterror as i64,
        max_error_us: tx.maxerror as i64,
    })
}

/// One serve session as read back from the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    pub start: TimeNs,
    pub version: String,
    pub pid: u32,
    pub listen: String,
    pub sync: String,
    /// `None` if the clock state could not be read at start.
    pub clock: Option<ClockState>,
    /// The store's head when the session started.
    pub start_seq: Seq,
    pub start_chain: Hash32,
    /// `None`: the server never ended cleanly (killed, crashed, power cut).
    pub end: Option<SessionEnd>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEnd {
    pub time: TimeNs,
    pub seq: Seq,
    pub chain: Hash32,
    /// Why it ended: `signal`, or the failure that stopped it.
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// (The I/O error is in the message, not a `source`, so that it is
    /// not printed twice by error chains.)
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    #[error("{path} line {line}: {reason}; the sessions file was damaged or edited")]
    Corrupt {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// The open sessions file of a running server.
pub struct SessionLog {
    path: PathBuf,
    file: File,
    prev_crc: u32,
    /// Bytes in the file: where the next line goes.
    len: u64,
}

/// Room reserved after the last line for the next: an end line is ~300
/// bytes, a start line ~500.
const RESERVE_BYTES: u64 = 4096;

impl SessionLog {
    /// Open (or create, 0600) `STORE/sessions` for appending. The caller
    /// holds the store's writer lock, so no one else appends.
    pub fn open(store_dir: &Path) -> Result<SessionLog, SessionError> {
        let path = store_dir.join(SESSIONS_FILE);
        let io_err = |error| SessionError::Io {
            path: path.clone(),
            error,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err)?;
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(io_err)?;
        // Chain onto the last line that checks out; a damaged file stays
        // damaged (and `read_sessions` says so) but recording goes on.
        let prev_crc = text
            .lines()
            .rev()
            .find_map(|l| split_crc(l).ok().map(|(_, crc)| crc))
            .unwrap_or(0);
        let mut len = text.len() as u64;
        if !text.is_empty() && !text.ends_with('\n') {
            // A line torn by a crash: end it so the next line stands alone.
            file.write_all(b"\n").map_err(io_err)?;
            len += 1;
        }
        Ok(SessionLog {
            path,
            file,
            prev_crc,
            len,
        })
    }

    /// Record that a session starts; returns its id.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        &mut self,
        time: TimeNs,
        listen: &str,
        sync: &str,
        clock: Option<ClockState>,
        head_seq: Seq,
        head_chain: Hash32,
    ) -> Result<String, SessionError> {
        let pid = std::process::id();
        let id = format!("{}-{pid}", time.0);
        let mut fields = vec![
            ("id", id.clone()),
            ("time", format_rfc3339_ns(time)),
            ("time_ns", time.0.to_string()),
            ("version", env!("CARGO_PKG_VERSION").to_string()),
            ("pid", pid.to_string()),
            ("listen", listen.to_string()),
            ("sync", sync.to_string()),
        ];
        match clock {
            Some(c) => fields.extend([
                (
                    "clock_synced",
                    if c.synchronised { "yes" } else { "no" }.to_string(),
                ),
                ("clock_state", c.state.to_string()),
                ("clock_status", format!("{:#x}", c.status)),
                ("clock_est_error_us", c.est_error_us.to_string()),
                ("clock_max_error_us", c.max_error_us.to_string()),
            ]),
            None => fields.push(("clock_synced", "unknown".to_string())),
        }
        fields.push(("head_seq", head_seq.0.to_string()));
        fields.push(("head_chain", head_chain.to_hex()));
        self.append("start", &fields)?;
        Ok(id)
    }

    /// Record that session `id` ends.
    pub fn end(&mut self, id: &str, end: &SessionEnd) -> Result<(), SessionError> {
        let fields = [
            ("id", id.to_string()),
            ("time", format_rfc3339_ns(end.time)),
            ("time_ns", end.time.0.to_string()),
            ("head_seq", end.seq.0.to_string()),
            ("head_chain", end.chain.to_hex()),
            ("reason", end.reason.clone()),
        ];
        self.append("end", &fields)
    }

    fn append(&mut self, event: &str, fields: &[(&str, String)]) -> Result<(), SessionError> {
        let mut line = format!("{MAGIC} {event}");
        for (k, v) in fields {
            line.push_str(&format!(" {k}={}", escape(v)));
        }
        line.push_str(&format!(" prev={:08x}", self.prev_crc));
        let crc = crc32c::crc32c(line.as_bytes());
        line.push_str(&format!(" crc32c={crc:08x}\n"));
        let io_err = |error| SessionError::Io {
            path: self.path.clone(),
            error,
        };
        if let Err(e) = self.file.write_all(line.as_bytes()) {
            // Out of space part-way: take the piece back, so that the file
            // holds whole lines only and the next line chains on cleanly.
            if let Err(cut) = self.file.set_len(self.len) {
                log::warn!(
                    "{}: could not cut a partly written line back to byte {}: {cut}",
                    self.path.display(),
                    self.len
                );
            }
            return Err(io_err(e));
        }
        self.len += line.len() as u64;
        self.file.sync_data().map_err(io_err)?;
        self.prev_crc = crc;
        self.reserve_next_line();
        Ok(())
    }

    /// Allocate the blocks the next line will go to, without changing the
    /// file's size: writing into them later needs no free space. Where the
    /// filesystem cannot (or the disk is already full) this only warns.
    fn reserve_next_line(&self) {
        // SAFETY: fallocate on a descriptor we own; no memory is involved.
        let rc = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_KEEP_SIZE,
                self.len as libc::off_t,
                RESERVE_BYTES as libc::off_t,
            )
        };
        if rc != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EOPNOTSUPP) {
                log::warn!(
                    "{}: could not reserve room for the next session line: {e}",
                    self.path.display()
                );
            }
        }
    }
}

fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '%' | ' ' | '=' => out.push_str(&format!("%{:02X}", c as u32)),
            c if c.is_control() => {
                let mut b = [0u8; 4];
                for byte in c.encode_utf8(&mut b).bytes() {
                    out.push_str(&format!("%{byte:02X}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

fn unescape(v: &str) -> Result<String, String> {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = v.get(i + 1..i + 3).ok_or("truncated %-escape")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| "bad %-escape")?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "escaped value is not UTF-8".to_string())
}

/// A crc exactly as written: 8 lowercase hex digits. `from_str_radix`
/// alone would also take `A`-`F` and a leading `+`, so a changed byte in a
/// crc field could go unnoticed.
fn parse_crc_hex(s: &str) -> Option<u32> {
    if s.len() != 8 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

/// Split a line into its checked body and its crc; `Err` if the crc is
/// missing or does not match.
fn split_crc(line: &str) -> Result<(&str, u32), String> {
    let (body, crc_hex) = line.rsplit_once(" crc32c=").ok_or("no crc32c field")?;
    let crc = parse_crc_hex(crc_hex).ok_or("crc32c is not 8 lowercase hex digits")?;
    if crc32c::crc32c(body.as_bytes()) != crc {
        return Err("checksum mismatch".to_string());
    }
    Ok((body, crc))
}

struct Line {
    event: String,
    fields: Vec<(String, String)>,
}

impl Line {
    fn get(&self, key: &str) -> Result<&str, String> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| format!("{} event lacks {key}", self.event))
    }
    fn num<T: std::str::FromStr>(&self, key: &str) -> Result<T, String> {
        self.get(key)?
            .parse()
            .map_err(|_| format!("{key} is not a number"))
    }
    fn hash(&self, key: &str) -> Result<Hash32, String> {
        parse_hash(self.get(key)?).ok_or_else(|| format!("{key} is not 64 hex digits"))
    }
}

fn parse_hash(s: &str) -> Option<Hash32> {
    if s.len() != 64 {
        return None;
    }
    let mut h = [0u8; 32];
    for (i, b) in h.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(Hash32(h))
}

fn parse_line(line: &str, expect_prev: u32) -> Result<(Line, u32), String> {
    let (body, crc) = split_crc(line)?;
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or("not a diskhist-session v1 line")?;
    let mut words = rest.split(' ').filter(|w| !w.is_empty());
    let event = words.next().ok_or("no event")?.to_string();
    let mut fields = Vec::new();
    for w in words {
        let (k, v) = w
            .split_once('=')
            .ok_or_else(|| format!("field {w:?} has no '='"))?;
        fields.push((k.to_string(), unescape(v)?));
    }
    let line = Line { event, fields };
    let prev = parse_crc_hex(line.get("prev")?).ok_or("prev is not 8 lowercase hex digits")?;
    if prev != expect_prev {
        return Err(format!(
            "prev={prev:08x} but the line before has crc32c={expect_prev:08x} (a line was removed, \
             inserted or reordered)"
        ));
    }
    Ok((line, crc))
}

fn parse_clock(l: &Line) -> Result<Option<ClockState>, String> {
    let synchronised = match l.get("clock_synced")? {
        "yes" => true,
        "no" => false,
        _ => return Ok(None),
    };
    Ok(Some(ClockState {
        synchronised,
        state: l.num("clock_state")?,
        status: i32::from_str_radix(l.get("clock_status")?.trim_start_matches("0x"), 16)
            .map_err(|_| "clock_status is not hex")?,
        est_error_us: l.num("clock_est_error_us")?,
        max_error_us: l.num("clock_max_error_us")?,
    }))
}

/// Every session recorded in `STORE/sessions`, oldest first (none if the
/// store was never served). Any line that fails its checksum or its link
/// to the line before is an error naming the line.
pub fn read_sessions(store_dir: &Path) -> Result<Vec<Session>, SessionError> {
    let path = store_dir.join(SESSIONS_FILE);
    let text = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(SessionError::Io { path, error }),
    };
    let corrupt = |line: usize, reason: String| SessionError::Corrupt {
        path: path.clone(),
        line,
        reason,
    };
    let text = String::from_utf8(text).map_err(|e| {
        let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        corrupt(line, "not UTF-8 text".to_string())
    })?;
    let mut sessions: Vec<Session> = Vec::new();
    let mut prev = 0u32;
    for (i, raw) in text.split_terminator('\n').enumerate() {
        let n = i + 1;
        let (l, crc) = parse_line(raw, prev).map_err(|r| corrupt(n, r))?;
        prev = crc;
        let mut build = || -> Result<(), String> {
            let id = l.get("id")?.to_string();
            match l.event.as_str() {
                "start" => {
                    sessions.push(Session {
                        start: TimeNs(l.num("time_ns")?),
                        version: l.get("version")?.to_string(),
                        pid: l.num("pid")?,
                        listen: l.get("listen")?.to_string(),
                        sync: l.get("sync")?.to_string(),
                        clock: parse_clock(&l)?,
                        start_seq: Seq(l.num("head_seq")?),
                        start_chain: l.hash("head_chain")?,
                        end: None,
                        id,
                    });
                    Ok(())
                }
                "end" => {
                    let s = sessions
                        .iter_mut()
                        .rev()
                        .find(|s| s.id == id)
                        .ok_or_else(|| format!("end of session {id}, which never started"))?;
                    if s.end.is_some() {
                        return Err(format!("session {id} ends twice"));
                    }
                    s.end = Some(SessionEnd {
                        time: TimeNs(l.num("time_ns")?),
                        seq: Seq(l.num("head_seq")?),
                        chain: l.hash("head_chain")?,
                        reason: l.get("reason")?.to_string(),
                    });
                    Ok(())
                }
                other => Err(format!("unknown event {other:?}")),
            }
        };
        build().map_err(|r| corrupt(n, r))?;
    }
    if !text.is_empty() && !text.ends_with('\n') {
        return Err(corrupt(
            text.lines().count(),
            "line torn (no newline at the end)".into(),
        ));
    }
    Ok(sessions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock() -> Option<ClockState> {
        Some(ClockState {
            synchronised: true,
            state: 0,
            status: 0x2001,
            est_error_us: 12,
            max_error_us: 3400,
        })
    }

    #[test]
    fn sessions_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = SessionLog::open(dir.path()).unwrap();
        let id = log
            .start(
                TimeNs(5_000_000_123),
                "unix:/tmp/a b=c%.sock",
                "flush",
                clock(),
                Seq(0),
                Hash32([0; 32]),
            )
            .unwrap();
        log.end(
            &id,
            &SessionEnd {
                time: TimeNs(6),
                seq: Seq(9),
                chain: Hash32([7; 32]),
                reason: "signal".into(),
            },
        )
        .unwrap();
        drop(log);
        let mut log = SessionLog::open(dir.path()).unwrap();
        log.start(
            TimeNs(7),
            "tcp:127.0.0.1:10809",
            "always",
            None,
            Seq(9),
            Hash32([7; 32]),
        )
        .unwrap();
        let s = read_sessions(dir.path()).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].id, id);
        assert_eq!(s[0].listen, "unix:/tmp/a b=c%.sock");
        assert_eq!(s[0].clock, clock());
        assert_eq!(s[0].end.as_ref().unwrap().seq, Seq(9));
        assert_eq!(s[0].end.as_ref().unwrap().chain, Hash32([7; 32]));
        assert_eq!(s[1].clock, None);
        assert_eq!(s[1].end, None);
        assert_eq!(s[1].start_seq, Seq(9));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(SESSIONS_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn tampering_is_reported_with_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = SessionLog::open(dir.path()).unwrap();
        for i in 0..3 {
            let id = log
                .start(TimeNs(i), "x", "flush", clock(), Seq(0), Hash32::default())
                .unwrap();
            log.end(
                &id,
                &SessionEnd {
                    time: TimeNs(i),
                    seq: Seq(0),
                    chain: Hash32::default(),
                    reason: "signal".into(),
                },
            )
            .unwrap();
        }
        let path = dir.path().join(SESSIONS_FILE);
        let good = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = good.lines().collect();
        // An edited value.
        std::fs::write(&path, good.replacen("pid=", "pid=1", 1)).unwrap();
        let e = read_sessions(dir.path()).unwrap_err().to_string();
        assert!(e.contains("line 1: checksum mismatch"), "{e}");
        // A removed line (its checksum is fine, the chain is not).
        let mut cut = lines.clone();
        cut.remove(2);
        std::fs::write(&path, cut.join("\n") + "\n").unwrap();
        let e = read_sessions(dir.path()).unwrap_err().to_string();
        assert!(e.contains("line 3: prev="), "{e}");
        // A torn last line.
        std::fs::write(&path, &good[..good.len() - 10]).unwrap();
        let e = read_sessions(dir.path()).unwrap_err().to_string();
        assert!(e.contains("line 6"), "{e}");
        std::fs::write(&path, &good).unwrap();
        assert_eq!(read_sessions(dir.path()).unwrap().len(), 3);
    }

    #[test]
    fn a_crc_field_is_exactly_eight_lowercase_hex_digits() {
        assert_eq!(parse_crc_hex("0a1b2c3d"), Some(0x0a1b_2c3d));
        for bad in [
            "0A1B2C3D",
            "+a1b2c3d",
            "a1b2c3d",
            "0a1b2c3d0",
            "0a1b2c3g",
            "",
        ] {
            assert_eq!(parse_crc_hex(bad), None, "{bad:?}");
        }
        let body = "start id=1";
        let good = format!("{body} crc32c={:08x}", crc32c::crc32c(body.as_bytes()));
        assert!(split_crc(&good).is_ok());
        let crc = &good[good.len() - 8..];
        let plus = format!("{body} crc32c=+{}", &crc[1..]);
        assert!(split_crc(&plus).is_err(), "{plus}");
    }

    #[test]
    fn missing_file_is_no_sessions_and_clock_reads() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_sessions(dir.path()).unwrap().is_empty());
        let c = clock_state().unwrap();
        assert!(c.max_error_us >= 0);
    }
}
