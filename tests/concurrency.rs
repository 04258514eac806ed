//! Readers of many states while a writer records never see a torn block or
//! a state that mixes times.
//!
//! A writer records a planned sequence of operations: whole multi-block
//! writes whose bytes identify (write, disk offset), unaligned partial-block
//! writes, rewrites of earlier content (deduplicated), zeroes, trims and
//! flushes. Meanwhile seven reader threads (four through the mount, three
//! through the library, two of them sharing one store) repeatedly pick states
//! that exist (by record number, by time in several spellings, by listed
//! name, and `latest` while it moves) and read random ranges, through the
//! FUSE mount (`pread` on `disk.img` of `at/<name>/` and `seq/<n>/`) and
//! through the library [`Store`] (`refresh` + `read_at`), noting which state
//! each read was of. After the writer stops, every read is compared with
//! the reference state, computed by replaying the plan up to that record;
//! a mismatch names the read, the first wrong byte and, block by block,
//! which write each byte really came from. Entries listed under `at/` are
//! read whole when first seen and again at the end, through a fresh mount
//! (an entry moves only when a later record has its very time: see
//! `listed_entries_unchanged`).
//!
//! Two writers: the library [`Writer`] in-process (with a tiny index flush
//! threshold, so readers live through index flushes and run compactions,
//! and with some records sharing a time, as when the clock is held), and
//! `diskhist serve` driven by an NBD client in this file, stopped and
//! restarted halfway (readers live through a writer closing and opening).
//! Listing readers list `at/` and `by-day/<day>/`.
//!
//! `DISKHIST_CONCURRENCY_SEED=<n>` replays one run's plan and the readers'
//! choices (their timing against the writer varies);
//! `DISKHIST_CONCURRENCY_SCALE=<k>` records k times as many operations
//! (and reads for k times as long), for a soak run.

use diskhist::store::{OpFlags, OwnedOp, RecordKind, WriterOptions};
use diskhist::{Seq, Store, TimeNs, TimeSpec, Writer};
use diskhist_test_common::nbd::Client;
use diskhist_test_common::{
    diskhist, env_number, log_records, p, seed_from_env, verify_ok, Mounted, Rng, Served,
};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BS: u64 = 4096;
const DISK_BYTES: u64 = 2 << 20;
/// Bytes of read data each reader keeps for diagnosis; past it, only the
/// digests of 512-byte pieces, which still tell which state a wrong piece
/// came from.
const KEEP_BYTES_PER_READER: usize = 8 << 20;
/// Readers pause between rounds this many times longer in unoptimised
/// builds, where replaying the reference costs more.
const PACE: u64 = if cfg!(debug_assertions) { 4 } else { 1 };
/// Whole images the listing reader reads when it first sees an entry.
const WHOLE_READS: usize = 12;

// ---------------------------------------------------------------------------
// The plan and its reference.

/// Operation `i` of the plan becomes record `i + 1`.
#[derive(Debug, Clone, Copy)]
struct Planned {
    /// Write, zero, trim or flush (the plan has no marks).
    kind: RecordKind,
    offset: u64,
    len: u64,
    /// Which data a write carries (`byte_of`); equal for a rewrite.
    content: u64,
}

fn seed() -> u64 {
    seed_from_env("DISKHIST_CONCURRENCY_SEED") | 1
}

/// How many times the default number of operations to record.
fn scale() -> usize {
    env_number("DISKHIST_CONCURRENCY_SCALE").unwrap_or(1).max(1) as usize
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The bytes write-content `c` puts at disk offsets `x / 8 * 8..+8`: a
/// function of both, so a byte out of place or out of time shows.
fn word_of(c: u64, x: u64) -> [u8; 8] {
    mix(c.wrapping_mul(0x1_0000_0001) ^ (x / 8)).to_le_bytes()
}

fn byte_of(c: u64, x: u64) -> u8 {
    word_of(c, x)[(x % 8) as usize]
}

/// `dst` = content `c` at disk offsets `lo..lo + dst.len()`.
fn fill_content(c: u64, lo: u64, dst: &mut [u8]) {
    let mut x = lo;
    let mut i = 0;
    while i < dst.len() {
        let w = word_of(c, x);
        let within = (x % 8) as usize;
        let n = (8 - within).min(dst.len() - i);
        dst[i..i + n].copy_from_slice(&w[within..within + n]);
        i += n;
        x += n as u64;
    }
}

fn data_of(op: &Planned) -> Vec<u8> {
    let mut v = vec![0u8; op.len as usize];
    fill_content(op.content, op.offset, &mut v);
    v
}

fn random_range(rng: &mut Rng, max_len: u64) -> (u64, u64) {
    let offset = rng.below(DISK_BYTES - 1);
    let len = 1 + rng.below(max_len.min(DISK_BYTES - offset));
    (offset, len)
}

fn plan(n: usize, rng: &mut Rng) -> Vec<Planned> {
    let blocks = DISK_BYTES / BS;
    let mut ops: Vec<Planned> = Vec::with_capacity(n);
    for i in 0..n {
        let content = i as u64 + 1;
        let r = rng.below(100);
        let op = if r < 55 {
            let count = 2 + rng.below(15);
            let first = rng.below(blocks - count + 1);
            Planned {
                kind: RecordKind::Write,
                offset: first * BS,
                len: count * BS,
                content,
            }
        } else if r < 78 {
            let (offset, len) = random_range(rng, 3 * BS);
            Planned {
                kind: RecordKind::Write,
                offset,
                len,
                content,
            }
        } else if r < 86 && i > 0 {
            // The same data again where it was: stored once, referenced.
            let earlier = ops[rng.below(i as u64) as usize];
            if earlier.kind == RecordKind::Write {
                earlier
            } else {
                Planned {
                    kind: RecordKind::Flush,
                    offset: 0,
                    len: 0,
                    content: 0,
                }
            }
        } else if r < 96 {
            let (offset, len) = if rng.chance(50) {
                let count = 1 + rng.below(8);
                (rng.below(blocks - count + 1) * BS, count * BS)
            } else {
                random_range(rng, 3 * BS)
            };
            Planned {
                kind: if r < 91 {
                    RecordKind::Zero
                } else {
                    RecordKind::Trim
                },
                offset,
                len,
                content: 0,
            }
        } else {
            Planned {
                kind: RecordKind::Flush,
                offset: 0,
                len: 0,
                content: 0,
            }
        };
        ops.push(op);
    }
    ops
}

fn overlap(op: &Planned, offset: u64, len: u64) -> Option<(u64, u64)> {
    let lo = op.offset.max(offset);
    let hi = (op.offset + op.len).min(offset + len);
    (lo < hi).then_some((lo, hi))
}

/// The disk after record `seq`, bytes `offset..offset + len`: the plan
/// replayed in order.
fn reference(ops: &[Planned], seq: u64, offset: u64, len: u64) -> Vec<u8> {
    let mut out = vec![0u8; len as usize];
    for op in &ops[..seq as usize] {
        apply(op, offset, &mut out);
    }
    out
}

/// `op` applied to `out`, which holds the disk from `offset`.
fn apply(op: &Planned, offset: u64, out: &mut [u8]) {
    let Some((lo, hi)) = overlap(op, offset, out.len() as u64) else {
        return;
    };
    let dst = &mut out[(lo - offset) as usize..(hi - offset) as usize];
    match op.kind {
        RecordKind::Write => fill_content(op.content, lo, dst),
        RecordKind::Zero | RecordKind::Trim => dst.fill(0),
        RecordKind::Flush | RecordKind::Mark => {}
    }
}

/// Which record left byte `x` as it is in state `seq` (0: never written).
fn expected_source(ops: &[Planned], seq: u64, x: u64) -> u64 {
    (0..seq as usize)
        .rev()
        .find(|&i| ops[i].kind != RecordKind::Flush && overlap(&ops[i], x, 1).is_some())
        .map_or(0, |i| i as u64 + 1)
}

/// Which record's data byte `x` holds, judged by its value: the record
/// the previous byte came from if it fits (one byte in 256 matches any
/// record by chance), else the newest record at or before `seq` whose data
/// matches, else the oldest later one. Returns the record and its label.
fn actual_source(
    ops: &[Planned],
    seq: u64,
    x: u64,
    value: u8,
    prev: Option<usize>,
) -> (Option<usize>, String) {
    let matches = |i: usize| {
        let op = &ops[i];
        overlap(op, x, 1).is_some()
            && match op.kind {
                RecordKind::Write => byte_of(op.content, x) == value,
                RecordKind::Zero | RecordKind::Trim => value == 0,
                RecordKind::Flush | RecordKind::Mark => false,
            }
    };
    // A zero byte nothing earlier explains is simply the never-written disk.
    let found = prev
        .filter(|&i| matches(i))
        .or_else(|| (0..seq as usize).rev().find(|&i| matches(i)))
        .or_else(|| {
            (value != 0)
                .then(|| (seq as usize..ops.len()).find(|&i| matches(i)))
                .flatten()
        });
    let label = match found {
        Some(i) if i < seq as usize => format!("record {}", i + 1),
        Some(i) => format!("record {} (LATER than the state read)", i + 1),
        None if value == 0 => "zeros".into(),
        None => "no record's data (garbage)".into(),
    };
    (found, label)
}

/// `label(x)` for each x in `lo..hi`, as runs: "a..b from L".
fn runs(lo: u64, hi: u64, mut label: impl FnMut(u64) -> String) -> String {
    let mut out = Vec::new();
    let mut start = lo;
    let mut cur = label(lo);
    for x in lo + 1..=hi {
        let l = if x < hi { label(x) } else { String::new() };
        if x == hi || l != cur {
            out.push(format!("{start}..{x} from {cur}"));
            start = x;
            cur = l;
        }
    }
    out.join(", ")
}

/// Disk-aligned pieces a read is checked in.
const PIECE: u64 = 512;

/// A 64-bit digest of `bytes` (not cryptographic: tells pieces apart).
fn digest(bytes: &[u8]) -> u64 {
    let mut h = bytes.len() as u64;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        h = mix(h ^ u64::from_le_bytes(w.try_into().unwrap()));
    }
    for &b in words.remainder() {
        h = mix(h ^ u64::from(b));
    }
    h
}

/// Digests of `data` (the disk from `offset`) cut at multiples of PIECE.
fn pieces(offset: u64, data: &[u8]) -> Vec<u64> {
    let mut out = Vec::with_capacity(data.len() / PIECE as usize + 2);
    let (mut pos, mut i) = (offset, 0);
    while i < data.len() {
        let n = ((pos / PIECE + 1) * PIECE - pos).min((data.len() - i) as u64) as usize;
        out.push(digest(&data[i..i + n]));
        i += n;
        pos += n as u64;
    }
    out
}

// ---------------------------------------------------------------------------
// What readers did.

#[derive(Debug, Clone)]
struct ReadRecord {
    reader: String,
    /// How the state was asked for (a path, or a library call).
    asked: String,
    /// For a time spelling: the record whose time it was.
    time_of: Option<u64>,
    /// The state the read was of, as the tree (info) or the store said.
    seq: u64,
    offset: u64,
    len: u64,
    /// Digests of the read's 512-byte pieces (`pieces`).
    pieces: Vec<u64>,
    data: Option<Vec<u8>>,
}

#[derive(Default)]
struct Log {
    reads: Vec<ReadRecord>,
    kept: usize,
    /// `latest` as this reader saw it, in order.
    latest_seen: Vec<u64>,
}

impl Log {
    fn add(
        &mut self,
        reader: &str,
        asked: String,
        time_of: Option<u64>,
        seq: u64,
        offset: u64,
        data: Vec<u8>,
    ) {
        let pieces = pieces(offset, &data);
        let len = data.len() as u64;
        let data = if self.kept + data.len() <= KEEP_BYTES_PER_READER {
            self.kept += data.len();
            Some(data)
        } else {
            None
        };
        self.reads.push(ReadRecord {
            reader: reader.into(),
            asked,
            time_of,
            seq,
            offset,
            len,
            pieces,
            data,
        });
    }
}

/// Record numbers and times of the history, as the checker knows them.
struct History {
    ops: Vec<Planned>,
    /// `times[s - 1]` is the time of record `s`.
    times: Vec<i64>,
    /// For each block, the operations that touch it, in order: a read's
    /// reference replays only those, not the whole plan.
    by_block: Vec<Vec<u32>>,
}

impl History {
    fn new(ops: Vec<Planned>, times: Vec<i64>) -> History {
        let mut by_block = vec![Vec::new(); (DISK_BYTES / BS) as usize];
        for (i, op) in ops.iter().enumerate() {
            if op.kind != RecordKind::Flush && op.len > 0 {
                for b in op.offset / BS..=(op.offset + op.len - 1) / BS {
                    by_block[b as usize].push(i as u32);
                }
            }
        }
        History {
            ops,
            times,
            by_block,
        }
    }

    /// `reference` through the block index, newest operation first, each
    /// byte written once: the same bytes in time linear in the range,
    /// not in the plan or in how often the range was rewritten.
    fn reference(&self, seq: u64, offset: u64, len: u64) -> Vec<u8> {
        let mut touching: Vec<u32> = (offset / BS..=(offset + len - 1) / BS)
            .flat_map(|b| {
                self.by_block[b as usize]
                    .iter()
                    .copied()
                    .take_while(|&i| u64::from(i) < seq)
            })
            .collect();
        touching.sort_unstable();
        touching.dedup();
        let mut out = vec![0u8; len as usize];
        let mut uncovered = vec![(offset, offset + len)];
        for &i in touching.iter().rev() {
            if uncovered.is_empty() {
                break;
            }
            let op = &self.ops[i as usize];
            let (a, b) = (op.offset, op.offset + op.len);
            let mut left = Vec::with_capacity(uncovered.len() + 1);
            for (lo, hi) in uncovered {
                let (x, y) = (lo.max(a), hi.min(b));
                if x >= y {
                    left.push((lo, hi));
                    continue;
                }
                if op.kind == RecordKind::Write {
                    let dst = &mut out[(x - offset) as usize..(y - offset) as usize];
                    fill_content(op.content, x, dst);
                } // zeroes and trims: `out` starts zeroed
                if lo < x {
                    left.push((lo, x));
                }
                if y < hi {
                    left.push((y, hi));
                }
            }
            uncovered = left;
        }
        out
    }

    fn time(&self, seq: u64) -> i64 {
        self.times[seq as usize - 1]
    }

    /// Every read equals the reference; time spellings resolved right.
    fn check(&self, logs: &[Log]) -> usize {
        // One thread per reader's log: the replay is the costly part.
        let per_log: Vec<(usize, Vec<String>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = logs
                .iter()
                .map(|log| scope.spawn(move || self.check_log(log)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let compared = per_log.iter().map(|(n, _)| n).sum();
        let mut failures: Vec<String> = per_log.into_iter().flat_map(|(_, f)| f).collect();
        if !failures.is_empty() {
            let n = failures.len();
            failures.truncate(10);
            panic!(
                "{n} of {compared} reads were wrong; the first ones:\n{}",
                failures.join("\n\n")
            );
        }
        compared
    }

    fn check_log(&self, log: &Log) -> (usize, Vec<String>) {
        let mut failures = Vec::new();
        for w in log.latest_seen.windows(2) {
            if w[1] < w[0] {
                failures.push(format!("latest went back from {} to {}", w[0], w[1]));
            }
        }
        for r in &log.reads {
            if let Err(e) = self.check_read(r) {
                failures.push(e);
            }
        }
        (log.reads.len(), failures)
    }

    /// For a read whose bytes were not kept: which 512-byte pieces are
    /// wrong, and which state's content the first of them holds.
    fn explain_pieces(&self, what: &str, r: &ReadRecord, want: &[u64]) -> String {
        let wrong: Vec<usize> = (0..want.len())
            .filter(|&i| want[i] != r.pieces[i])
            .collect();
        let first = wrong[0];
        let lo = if first == 0 {
            r.offset
        } else {
            (r.offset / PIECE + first as u64) * PIECE
        };
        let hi = ((lo / PIECE + 1) * PIECE).min(r.offset + r.len);
        // Every state the piece had: after each operation touching its block.
        let block = lo / BS;
        let holds = std::iter::once(0)
            .chain(
                self.by_block[block as usize]
                    .iter()
                    .map(|&i| u64::from(i) + 1),
            )
            .filter(|&s| pieces(lo, &self.reference(s, lo, hi - lo))[0] == r.pieces[first])
            .map(|s| match s.cmp(&r.seq) {
                std::cmp::Ordering::Greater => format!("state {s} (LATER than the state read)"),
                _ => format!("state {s}"),
            })
            .collect::<Vec<_>>();
        format!(
            "{what}: {} of {} 512-byte pieces differ from the reference; the first, disk bytes \
             {lo}..{hi} (block {block}), holds {} (bytes not kept to show more)",
            wrong.len(),
            want.len(),
            if holds.is_empty() {
                "no state's content: torn inside the piece, or garbage".to_string()
            } else {
                format!("the content of {}", holds.join(" or "))
            }
        )
    }

    fn check_read(&self, r: &ReadRecord) -> Result<(), String> {
        let what = format!(
            "{} read {}+{} of state {} (asked as {})",
            r.reader, r.offset, r.len, r.seq, r.asked
        );
        if r.seq as usize > self.ops.len() {
            return Err(format!("{what}: no such record was ever written"));
        }
        if let Some(k) = r.time_of {
            // The time of record k names the last record with that very
            // time, which may be a later one. The mount may answer with the
            // one that was last for up to its short TTL for live names
            // (a lookup just before that later record arrived): still a
            // state whose time is exactly the time asked, never another.
            if r.seq == 0 || self.time(r.seq) != self.time(k) {
                return Err(format!(
                    "{what}: the time of record {k} ({} ns) resolved to state {}, whose time \
                     is {} ns",
                    self.time(k),
                    r.seq,
                    if r.seq == 0 { 0 } else { self.time(r.seq) }
                ));
            }
        }
        let want = self.reference(r.seq, r.offset, r.len);
        let want_pieces = pieces(r.offset, &want);
        if want_pieces == r.pieces {
            return Ok(());
        }
        let Some(got) = &r.data else {
            return Err(self.explain_pieces(&what, r, &want_pieces));
        };
        let first = got.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(0) as u64;
        let x = r.offset + first;
        let block = x / BS;
        let lo = (block * BS).max(r.offset);
        let hi = ((block + 1) * BS).min(r.offset + r.len);
        let at = |x: u64| got[(x - r.offset) as usize];
        Err(format!(
            "{what}: first wrong byte at disk offset {x} (block {block}): got {:#04x}, want \
             {:#04x}.\n  block {block} as read:  {}\n  block {block} should be: {}",
            at(x),
            want[first as usize],
            {
                let mut prev = None;
                runs(lo, hi, |x| {
                    let (found, label) = actual_source(&self.ops, r.seq, x, at(x), prev);
                    prev = found;
                    label
                })
            },
            runs(lo, hi, |x| match expected_source(&self.ops, r.seq, x) {
                0 => "zeros (never written)".into(),
                s => format!("record {s}"),
            }),
        ))
    }
}

// ---------------------------------------------------------------------------
// Reading through the mount.

/// `name` opened relative to the directory `dir`.
fn open_in(dir: &File, name: &std::ffi::CStr) -> std::io::Result<File> {
    // SAFETY: a valid directory fd and a NUL-terminated name; the returned
    // fd is owned by the File.
    // O_CLOEXEC: a child the other test spawns meanwhile (a mount daemon)
    // must not inherit it and keep this mount busy.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a new descriptor nobody else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// The state directory at `path` (symlinks followed): which state it is (its
/// `info`), and its `disk.img`, both opened through one directory handle so
/// they belong to the same state even if the name moves meanwhile.
fn open_state(path: &Path) -> (u64, String, File) {
    let dir = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut info = String::new();
    open_in(&dir, c"info")
        .and_then(|mut f| f.read_to_string(&mut info))
        .unwrap_or_else(|e| panic!("{}/info: {e}", path.display()));
    let field = |k: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or_else(|| panic!("{}/info has no {k}: {info}", path.display()))
            .trim()
            .to_string()
    };
    let seq = field("seq:").parse().unwrap();
    let time = field("time:");
    let img =
        open_in(&dir, c"disk.img").unwrap_or_else(|e| panic!("{}/disk.img: {e}", path.display()));
    (seq, time, img)
}

fn pread(f: &File, offset: u64, len: u64, what: &str) -> Vec<u8> {
    let mut buf = vec![0u8; len as usize];
    f.read_exact_at(&mut buf, offset)
        .unwrap_or_else(|e| panic!("pread {offset}+{len} of {what}: {e}"));
    buf
}

/// A range to read: unaligned about half the time, up to three blocks;
/// now and then up to 512 KiB (requests of 128 KiB and more take the
/// mount's streaming path, which bypasses its block cache).
fn read_range(rng: &mut Rng) -> (u64, u64) {
    if rng.chance(3) {
        random_range(rng, 512 << 10)
    } else if rng.chance(50) {
        let count = 1 + rng.below(3);
        (rng.below(DISK_BYTES / BS - count + 1) * BS, count * BS)
    } else {
        random_range(rng, 3 * BS)
    }
}

/// Spellings of one time that must all resolve under `at/`.
fn spellings(rfc3339_ns: &str, rng: &mut Rng) -> String {
    let TimeSpec::At(t) = diskhist::parse_time(rfc3339_ns).unwrap() else {
        panic!("info gave {rfc3339_ns}");
    };
    match rng.below(4) {
        0 => rfc3339_ns.to_string(),
        1 => format!(
            "@{}.{:09}",
            t.0.div_euclid(1_000_000_000),
            t.0.rem_euclid(1_000_000_000)
        ),
        2 => diskhist::format_canonical(t),
        _ => {
            let east = chrono::FixedOffset::east_opt(9 * 3600).unwrap();
            chrono::DateTime::from_timestamp_nanos(t.0)
                .with_timezone(&east)
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, false)
        }
    }
}

/// The kinds of mount reader.
#[derive(Clone, Copy, Debug)]
enum MountReader {
    /// `seq/<n>/disk.img` for random n up to the newest.
    Seq,
    /// `at/<spelling of the time of record n>/disk.img`.
    Time,
    /// Entries `ls at` lists, each also read whole when first seen.
    Listed,
    /// `latest/disk.img` while it moves.
    Latest,
}

/// Names listed under `at/`, with the state and whole-image hash first read.
type Listed = BTreeMap<String, (u64, [u8; 32])>;

fn mount_reader(
    kind: MountReader,
    mnt: PathBuf,
    done: Arc<AtomicBool>,
    seed: u64,
) -> (Log, Listed) {
    let mut rng = Rng::new(seed);
    let mut log = Log::default();
    let mut listed = Listed::new();
    let who = format!("mount reader {kind:?}");
    let mut rounds = 0;
    while !done.load(Ordering::Relaxed) || rounds < 5 {
        rounds += 1;
        let (newest, _, img) = open_state(&mnt.join("latest"));
        log.latest_seen.push(newest);
        let (asked, time_of, (seq, _, img)) = match kind {
            MountReader::Latest => ("latest".to_string(), None, (newest, String::new(), img)),
            MountReader::Seq => {
                let n = if rng.chance(20) {
                    newest
                } else {
                    rng.below(newest + 1)
                };
                let path = format!("seq/{n}");
                let st = open_state(&mnt.join(&path));
                assert_eq!(st.0, n, "{path}/info names another state");
                (path, None, st)
            }
            MountReader::Time => {
                if newest == 0 {
                    continue;
                }
                let k = if rng.chance(20) {
                    newest
                } else {
                    1 + rng.below(newest)
                };
                let (_, time, _) = open_state(&mnt.join(format!("seq/{k}")));
                let path = format!("at/{}", spellings(&time, &mut rng));
                (path.clone(), Some(k), open_state(&mnt.join(&path)))
            }
            MountReader::Listed => {
                // `at/` or, a third of the time, the newest day under
                // `by-day/` (the same states, under the same names, as `at/`).
                let listing = if rng.chance(33) {
                    let mut days: Vec<String> = std::fs::read_dir(mnt.join("by-day"))
                        .unwrap()
                        .map(|e| e.unwrap().file_name().into_string().unwrap())
                        .collect();
                    days.sort();
                    match days.last() {
                        Some(d) => mnt.join("by-day").join(d),
                        None => mnt.join("at"),
                    }
                } else {
                    mnt.join("at")
                };
                let mut names: Vec<String> = std::fs::read_dir(&listing)
                    .unwrap()
                    .map(|e| e.unwrap().file_name().into_string().unwrap())
                    .collect();
                names.sort();
                let Some(name) = (if rng.chance(30) {
                    names.last().cloned()
                } else {
                    names.get(rng.below(names.len() as u64) as usize).cloned()
                }) else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let rel = listing.strip_prefix(&mnt).unwrap().to_str().unwrap();
                let path = format!("{rel}/{name}");
                let st = open_state(&mnt.join(&path));
                if !listed.contains_key(&name) && listed.len() < WHOLE_READS {
                    let whole = pread(&st.2, 0, DISK_BYTES, &path);
                    listed.insert(name.clone(), (st.0, *blake3::hash(&whole).as_bytes()));
                    log.add(&who, path.clone(), None, st.0, 0, whole);
                }
                (path, None, st)
            }
        };
        for _ in 0..4 {
            let (offset, len) = read_range(&mut rng);
            let data = pread(&img, offset, len, &asked);
            log.add(&who, asked.clone(), time_of, seq, offset, data);
        }
        std::thread::sleep(Duration::from_micros(PACE * (500 + rng.below(2000))));
    }
    (log, listed)
}

// ---------------------------------------------------------------------------
// Reading through the library.

fn store_reader(store: Arc<Store>, done: Arc<AtomicBool>, seed: u64, who: String) -> Log {
    let mut rng = Rng::new(seed);
    let mut log = Log::default();
    let mut rounds = 0;
    while !done.load(Ordering::Relaxed) || rounds < 5 {
        rounds += 1;
        store.refresh().expect("refresh while the writer runs");
        let newest = store.head().seq.0;
        let (asked, time_of, spec) = match rng.below(3) {
            0 => ("latest".to_string(), None, TimeSpec::Latest),
            1 => {
                let n = rng.below(newest + 1);
                (format!("#{n}"), None, TimeSpec::AfterSeq(Seq(n)))
            }
            _ if newest == 0 => continue,
            _ => {
                let k = 1 + rng.below(newest);
                let t = store.time_of(Seq(k)).expect("time of an existing record");
                (format!("time {} ns", t.0), Some(k), TimeSpec::At(t))
            }
        };
        let seq = store.resolve(spec).expect("resolve an existing state").0;
        if asked == "latest" {
            log.latest_seen.push(seq);
        }
        for _ in 0..4 {
            let (offset, len) = read_range(&mut rng);
            let mut buf = vec![0u8; len as usize];
            store
                .read_at(Seq(seq), offset, &mut buf)
                .unwrap_or_else(|e| panic!("{who}: read_at({seq}, {offset}+{len}): {e}"));
            log.add(&who, asked.clone(), time_of, seq, offset, buf);
        }
        std::thread::sleep(Duration::from_micros(PACE * (1000 + rng.below(2000))));
    }
    log
}

// ---------------------------------------------------------------------------
// One run: readers around a writer, then the comparison.

type Readers = Vec<std::thread::JoinHandle<(Log, Listed)>>;

/// Four mount readers and two library readers (one with its own store, one
/// sharing a store with the other thread's refreshes).
fn start_readers(store_dir: &Path, mnt: &Path, done: &Arc<AtomicBool>, rng: &mut Rng) -> Readers {
    let mut handles: Readers = Vec::new();
    for kind in [
        MountReader::Seq,
        MountReader::Time,
        MountReader::Listed,
        MountReader::Latest,
    ] {
        let (mnt, done, seed) = (mnt.to_path_buf(), done.clone(), rng.next_u64() | 1);
        handles.push(std::thread::spawn(move || {
            mount_reader(kind, mnt, done, seed)
        }));
    }
    let shared = Arc::new(Store::open(store_dir).unwrap());
    for (i, store) in [
        Arc::new(Store::open(store_dir).unwrap()),
        shared.clone(),
        shared,
    ]
    .into_iter()
    .enumerate()
    {
        let (done, seed) = (done.clone(), rng.next_u64() | 1);
        let who = format!("store reader {i}");
        handles.push(std::thread::spawn(move || {
            (store_reader(store, done, seed, who), Listed::new())
        }));
    }
    handles
}

/// Unmount; the daemon must have had nothing to warn about (a failed
/// re-read of the store, a read error).
fn mount_quiet(m: Mounted) {
    let log = m.stderr();
    drop(m);
    let bad: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    assert!(bad.is_empty(), "the mount complained:\n{}", bad.join("\n"));
}

fn join(handles: Readers) -> (Vec<Log>, Listed) {
    let mut logs = Vec::new();
    let mut listed = Listed::new();
    for h in handles {
        let (log, l) = h.join().expect("a reader failed (see its panic above)");
        logs.push(log);
        listed.extend(l);
    }
    (logs, listed)
}

/// Every entry first seen under `at/` while recording reads the same now,
/// through a fresh mount (no page cache of the first), and is the reference.
///
/// Except where the store itself moves a name: when a later record has the
/// very same time as a listed one (a held clock, or one import's extents),
/// that time now names the later record, by DESIGN's definition of "the disk
/// at time T". Such entries must resolve to the last record of their time;
/// they are counted, and the count returned.
fn listed_entries_unchanged(history: &History, store: &Path, mnt: &Path, listed: &Listed) -> usize {
    assert!(
        listed.len() >= 2,
        "the listing reader saw only {} entries under at/",
        listed.len()
    );
    let m = Mounted::start(store, mnt, &[]);
    let mut moved = 0;
    for (name, (seq, hash)) in listed {
        let (now_seq, _, img) = open_state(&m.path(&format!("at/{name}")));
        let whole = pread(&img, 0, DISK_BYTES, name);
        assert!(
            whole == reference(&history.ops, now_seq, 0, DISK_BYTES),
            "at/{name} (now state {now_seq}) is not the reference state"
        );
        let t = history.time(*seq);
        let last_of_its_time = (*seq as usize..=history.times.len())
            .take_while(|&s| history.time(s as u64) == t)
            .last()
            .unwrap() as u64;
        if last_of_its_time != *seq {
            assert_eq!(
                now_seq, last_of_its_time,
                "at/{name}: state {seq} when listed; later records share its time, so it \
                 must now be the last of them"
            );
            moved += 1;
            continue;
        }
        assert_eq!(
            now_seq, *seq,
            "at/{name} was state {seq} when listed, now it is {now_seq}"
        );
        assert!(
            blake3::hash(&whole).as_bytes() == hash,
            "at/{name} (state {seq}) reads differently now than when it was first listed"
        );
    }
    // Once the writer has stopped, a time names exactly the last record
    // with that time.
    let n = history.times.len();
    for k in (1..=n).step_by(n / 40 + 1).chain([n]) {
        let t = diskhist::TimeNs(history.time(k as u64));
        let last = (k..=n)
            .take_while(|&s| history.time(s as u64) == t.0)
            .last();
        let name = diskhist::format_rfc3339_ns(t);
        let (seq, _, _) = open_state(&m.path(&format!("at/{name}")));
        assert_eq!(
            Some(seq as usize),
            last,
            "at/{name} after recording stopped"
        );
    }
    moved
}

fn summary(what: &str, logs: &[Log], compared: usize, listed: (usize, usize), took: Duration) {
    let mut by: BTreeMap<&str, usize> = BTreeMap::new();
    for l in logs {
        for r in &l.reads {
            *by.entry(&r.reader).or_default() += 1;
        }
    }
    let states: std::collections::BTreeSet<u64> = logs
        .iter()
        .flat_map(|l| l.reads.iter().map(|r| r.seq))
        .collect();
    eprintln!(
        "{what}: {compared} reads compared with the reference ({} distinct states; {} listed \
         entries re-read, {} of them moved to a later record of the same time) in {:.1} s; \
         by reader: {by:?}",
        states.len(),
        listed.0,
        listed.1,
        took.as_secs_f64()
    );
}

#[test]
fn library_writer_readers_see_whole_states() {
    let started = Instant::now();
    let seed = seed();
    eprintln!("DISKHIST_CONCURRENCY_SEED={seed}");
    let mut rng = Rng::new(seed);
    let ops = plan(1200 * scale(), &mut rng);
    // Times: 4 ms apart on average, some equal (a held clock), spanning
    // a few seconds so `at/` lists several entries.
    let base = 1_795_415_415_000_000_000i64;
    let mut times = Vec::with_capacity(ops.len());
    let mut t = base;
    for _ in &ops {
        if !rng.chance(10) {
            t += 1 + rng.below(8_000_000) as i64;
        }
        times.push(t);
    }

    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("S");
    Writer::init(&store, DISK_BYTES, BS as u32).unwrap();
    let mut w = Writer::open_with(
        &store,
        WriterOptions {
            flush_threshold: 97,
        },
    )
    .unwrap();
    let append = |w: &mut Writer, i: usize, op: &Planned, t: i64| {
        let payload = if op.kind == RecordKind::Write {
            data_of(op)
        } else {
            Vec::new()
        };
        let o = OwnedOp::from_parts(op.kind, op.offset, op.len, payload)
            .unwrap_or_else(|| panic!("{op:?} is no operation"));
        let a = w.append(TimeNs(t), o.as_op(), OpFlags::default()).unwrap();
        assert_eq!((a.seq.0, a.time_ns.0), (i as u64 + 1, t));
        if op.kind == RecordKind::Flush {
            w.sync().unwrap();
        }
    };
    // A first record, so every reader has a state to read from the start.
    append(&mut w, 0, &ops[0], times[0]);
    let m = Mounted::start(&store, &dir.path().join("mnt"), &[]);
    let done = Arc::new(AtomicBool::new(false));
    let readers = start_readers(&store, &m.dir, &done, &mut rng);

    let writer = {
        let (ops, times) = (ops.clone(), times.clone());
        std::thread::spawn(move || {
            let mut rng = Rng::new(seed ^ 0xabcdef);
            for (i, (op, &t)) in ops.iter().zip(&times).enumerate().skip(1) {
                append(&mut w, i, op, t);
                std::thread::sleep(Duration::from_micros(1000 + rng.below(6000)));
            }
            w.close().unwrap();
        })
    };
    writer.join().expect("writer");
    let recording = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let (logs, listed) = join(readers);
    let joined = started.elapsed();
    mount_quiet(m);

    let compared = check_after_the_fact(
        "library writer",
        History::new(ops, times),
        (&logs, &listed),
        (&store, &dir.path().join("mnt2")),
        (recording, joined, started),
    );
    assert!(compared > 5_000 / PACE as usize, "only {compared} reads");
}

/// After the writer stopped: compare every read with the replayed history,
/// re-read the listed entries through a fresh mount at `mnt`, verify the
/// store, and print the figures. Returns the number of reads compared.
fn check_after_the_fact(
    what: &str,
    history: History,
    (logs, listed): (&[Log], &Listed),
    (store, mnt): (&Path, &Path),
    (recording, joined, started): (Duration, Duration, Instant),
) -> usize {
    let t = Instant::now();
    let compared = history.check(logs);
    let checked = t.elapsed();
    let moved = listed_entries_unchanged(&history, store, mnt, listed);
    verify_ok(store, "after recording");
    eprintln!(
        "recording {recording:.1?}, readers joined at {joined:.1?}, comparison {checked:.1?}, \
         re-reads and verify {:.1?}",
        t.elapsed() - checked
    );
    summary(
        &format!("{what} ({recording:.1?} recording)"),
        logs,
        compared,
        (listed.len(), moved),
        started.elapsed(),
    );
    compared
}

// ---------------------------------------------------------------------------
// `diskhist serve` driven over NBD.

/// Send `op` as its NBD request; the server must accept it.
fn send(c: &mut Client, op: &Planned, fua: bool) {
    let error = match op.kind {
        RecordKind::Write => c.write(op.offset, &data_of(op), fua),
        RecordKind::Zero => c.write_zeroes(op.offset, op.len, fua),
        RecordKind::Trim => c.trim(op.offset, op.len),
        RecordKind::Flush => c.flush(),
        RecordKind::Mark => unreachable!("the plan has no marks"),
    };
    assert_eq!(
        error,
        0,
        "NBD request {} {}+{} failed",
        op.kind.name(),
        op.offset,
        op.len
    );
}

#[test]
fn nbd_served_writes_readers_see_whole_states() {
    let started = Instant::now();
    let seed = seed();
    eprintln!("DISKHIST_CONCURRENCY_SEED={seed}");
    let mut rng = Rng::new(seed);
    let ops = plan(700 * scale(), &mut rng);

    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("S");
    diskhist(&["init", p(&store), "--size", &DISK_BYTES.to_string()]);
    let served = Served::start(&store, &dir.path().join("nbd.sock"), &[]);
    let mut nbd = Client::connect(&served.socket);
    // A first write, so readers have a state to read from the start.
    send(&mut nbd, &ops[0], false);
    let m = Mounted::start(&store, &dir.path().join("mnt"), &[]);
    let done = Arc::new(AtomicBool::new(false));
    let readers = start_readers(&store, &m.dir, &done, &mut rng);

    let mut served = served;
    for (i, op) in ops.iter().enumerate().skip(1) {
        if i == ops.len() / 2 {
            // Readers live through the writer closing (index flushed) and
            // a new one opening the store.
            nbd.disconnect();
            let (status, stderr) = served.stop();
            assert!(status.success(), "serve: {status}\n{stderr}");
            served = Served::start(&store, &dir.path().join("nbd.sock"), &[]);
            nbd = Client::connect(&served.socket);
        }
        send(&mut nbd, op, rng.chance(10));
        std::thread::sleep(Duration::from_micros(3000 + rng.below(12_000)));
    }
    nbd.disconnect();
    let recording = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let (logs, listed) = join(readers);
    let joined = started.elapsed();
    mount_quiet(m);
    let (status, stderr) = served.stop();
    assert!(status.success(), "serve: {status}\n{stderr}");

    // The records are the plan, one for one, in order.
    let records = log_records(&store);
    assert_eq!(records.len(), ops.len(), "records: one per NBD request");
    for (r, op) in records.iter().zip(&ops) {
        assert_eq!(r.kind, op.kind.name(), "record {}", r.seq);
        if op.kind != RecordKind::Flush {
            assert_eq!(
                (r.offset, r.length),
                (op.offset, op.len),
                "record {}",
                r.seq
            );
        }
    }
    let times = records.iter().map(|r| r.time_ns).collect();
    let compared = check_after_the_fact(
        "diskhist serve over NBD",
        History::new(ops, times),
        (&logs, &listed),
        (&store, &dir.path().join("mnt2")),
        (recording, joined, started),
    );
    assert!(compared > 3_000 / PACE as usize, "only {compared} reads");
}

/// The checker's own shortcut: replaying only the operations that touch a
/// range gives what replaying the whole plan gives.
#[test]
fn the_block_index_replays_like_the_whole_plan() {
    let mut rng = Rng::new(seed());
    let ops = plan(800, &mut rng);
    let times = (0..ops.len() as i64).collect();
    let h = History::new(ops, times);
    for _ in 0..2_000 {
        let seq = rng.below(h.ops.len() as u64 + 1);
        let (offset, len) = read_range(&mut rng);
        assert!(
            h.reference(seq, offset, len) == reference(&h.ops, seq, offset, len),
            "state {seq}, {offset}+{len}"
        );
    }
}
