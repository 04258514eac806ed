//! Crash safety: `diskhist serve` and `diskhist ingest --follow` are killed
//! with SIGKILL at random moments while writes pour in; after every kill the
//! store opens, the next writer cuts and reports a torn tail, `verify`
//! passes, every write acknowledged as durable is there, and the state is
//! exactly the state after some prefix of the writes sent.
//!
//! With many requests in flight on several connections (group commit in
//! serve: FLUSH and FUA replies wait for a shared fdatasync while the
//! connection reads on), every write acknowledged durable is there after
//! a kill, and each connection's writes are a prefix of what it sent.
//!
//! Seeded: the seed is printed (and shown when a test fails); replay with
//! `DISKHIST_CRASH_SEED=<seed>`. `DISKHIST_KILLS` (default 50) sets the
//! number of kills across the file, 70% serve and 30% ingest
//! (`make soak` runs 500).

use diskhist::store::{OpFlags, RecordKind, Store, TailStop};
use diskhist::Seq;
use diskhist_test_common::dmlog::{self as dl, Entry};
use diskhist_test_common::nbd::{Batch, Client, Receiver, Sender};
use diskhist_test_common::{
    diskhist, diskhist_cmd, diskhist_output, env_number, p, seed_from_env, stderr_of, verify_ok,
    wait_until, Rng, Served, Spawned,
};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- helpers

/// The sector size of the test's dm-log-writes logs.
const SECTOR: usize = 512;

/// The generator of `seed`, seeded as these tests always have been, so that
/// a seed printed by an earlier run still replays that run.
fn seeded_rng(seed: u64) -> Rng {
    Rng::from_state(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x2545_F491_4F6C_DD1D)
}

/// Total SIGKILLs for the suite (`DISKHIST_KILLS`, default 50), split
/// between `serve` and `ingest --follow` as (serve, ingest), 70/30.
fn kill_budget() -> (usize, usize) {
    let total = env_number("DISKHIST_KILLS").unwrap_or(50) as usize;
    let serve = (total * 7).div_ceil(10);
    (serve, total - serve)
}

/// Bytes of write number `index`: every 512-byte piece starts with the
/// index and the piece's number, so any block read back names the write
/// that put it there; the rest does not compress and never repeats.
fn content(seed: u64, index: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut rng = seeded_rng(seed ^ index.wrapping_mul(0xD6E8_FEB8_6659_FD93));
    rng.fill(&mut out);
    for (piece, c) in out.chunks_mut(512).enumerate() {
        let tag = [index.to_le_bytes(), (piece as u64).to_le_bytes()].concat();
        let n = c.len().min(16);
        c[..n].copy_from_slice(&tag[..n]);
    }
    out
}

/// Which write's piece a 512-byte-aligned piece of the disk holds (0: none).
fn tag_of(piece: &[u8]) -> u64 {
    u64::from_le_bytes(piece[..8].try_into().unwrap())
}

/// Where a reader's scan of the log stops short of its end, if it does.
fn tail_stop(store: &Path) -> Option<TailStop> {
    let s = Store::open(store).expect("a reader opens the store after a kill");
    s.tail_stop()
}

/// The message the next writer must print when it cuts `t`.
fn cut_message(t: &TailStop) -> String {
    format!(
        "cut a torn tail of {} bytes at byte {}",
        t.bytes_left, t.offset_bytes
    )
}

/// The writer that opened the store said it cut `expect`, and nothing
/// else was cut.
fn check_cut_reported(stderr: &str, expect: Option<&TailStop>, who: &str) {
    match expect {
        Some(t) => {
            assert!(
                t.at_end,
                "after a SIGKILL the log is damaged before its end: {t:?}"
            );
            assert!(
                stderr.contains(&cut_message(t)),
                "{who} did not report cutting the torn tail {t:?}:\n{stderr}"
            );
        }
        None => assert!(
            !stderr.contains("torn tail"),
            "{who} reported a cut where the log was whole:\n{stderr}"
        ),
    }
}

/// The whole disk as of `seq`.
fn disk_at(store: &Store, seq: Seq, size: u64) -> Vec<u8> {
    let mut buf = vec![0u8; size as usize];
    store.read_at(seq, 0, &mut buf).unwrap();
    buf
}

/// Index (from 1) of the first 512-byte piece where `a` and `b` differ,
/// with the write tags both hold there: a readable failure message.
fn first_difference(a: &[u8], b: &[u8]) -> String {
    match a.chunks(512).zip(b.chunks(512)).position(|(x, y)| x != y) {
        None => "no difference".into(),
        Some(p) => format!(
            "byte {} differs: store has write #{}, reference has write #{}",
            p * 512,
            tag_of(&a[p * 512..]),
            tag_of(&b[p * 512..])
        ),
    }
}

// ------------------------------------------------------------------ serve

const SERVE_DISK: u64 = 2 << 20;
/// A fresh store every so many kills keeps `verify` (which reads the whole
/// history) from making long soak runs quadratic.
const SERVE_ROUNDS_PER_STORE: usize = 40;
/// Pace of the writer, so that a round's volume stays bounded.
const SERVE_BYTES_PER_SEC: u64 = 24 << 20;
const FLUSH_BIT: u64 = 1 << 63;
const FUA_BIT: u64 = 1 << 62;
const INDEX_MASK: u64 = !(FLUSH_BIT | FUA_BIT);

#[derive(Clone, Copy, Debug)]
struct SentWrite {
    offset_bytes: u64,
    len: usize,
}

fn pick_write(rng: &mut Rng) -> SentWrite {
    let sectors = SERVE_DISK / 512;
    if rng.one_in(60) {
        // Most of the disk in one request: a record of megabytes, whose
        // pwrite a SIGKILL can cut short (a torn tail).
        let len = rng.range(SERVE_DISK / 2, SERVE_DISK) & !4095;
        return SentWrite {
            offset_bytes: rng.below((SERVE_DISK - len) / 512 + 1) * 512,
            len: len as usize,
        };
    }
    if rng.one_in(7) {
        // Block-aligned and larger: more bytes in one record, more chance
        // that a kill lands inside its pwrite.
        let blocks = SERVE_DISK / 4096;
        let n = rng.range(1, 64).min(blocks);
        let b = rng.below(blocks - n + 1);
        SentWrite {
            offset_bytes: b * 4096,
            len: (n * 4096) as usize,
        }
    } else {
        // Any sector: most are partial blocks, merged with the previous
        // version of the block by the store.
        let n = rng.range(1, 64).min(sectors);
        let s = rng.below(sectors - n + 1);
        SentWrite {
            offset_bytes: s * 512,
            len: (n * 512) as usize,
        }
    }
}

/// What the client saw in one round.
#[derive(Default)]
struct Acks {
    /// Highest write index with a successful reply.
    acked: u64,
    /// Highest write index known durable: a FUA write's reply, or the last
    /// write sent before a FLUSH whose reply came back.
    durable: u64,
    flushes_acked: u64,
    errors: Vec<String>,
}

/// Control of the sending thread by the test.
struct SendCtl {
    stop: AtomicBool,
    /// Send a FLUSH after the next write and say so on the channel.
    flush_now: AtomicBool,
}

fn send_writes(
    mut tx: Sender,
    seed: u64,
    mut rng: Rng,
    first: u64,
    ctl: Arc<SendCtl>,
    flushed: mpsc::Sender<()>,
) -> Vec<SentWrite> {
    let mut sent = Vec::new();
    let t0 = Instant::now();
    let mut bytes = 0u64;
    while !ctl.stop.load(Ordering::Relaxed) {
        let i = first + sent.len() as u64;
        let w = pick_write(&mut rng);
        let fua = rng.one_in(10);
        let data = content(seed, i, w.len);
        let handle = i | if fua { FUA_BIT } else { 0 };
        if tx.write(handle, w.offset_bytes, &data, fua).is_err() {
            break;
        }
        sent.push(w);
        if ctl.flush_now.swap(false, Ordering::Relaxed) {
            if tx.flush(FLUSH_BIT | i).is_err() {
                break;
            }
            let _ = flushed.send(());
        } else if rng.one_in(16) && tx.flush(FLUSH_BIT | i).is_err() {
            break;
        }
        bytes += w.len as u64;
        let due = Duration::from_micros(bytes * 1_000_000 / SERVE_BYTES_PER_SEC);
        if let Some(ahead) = due.checked_sub(t0.elapsed()) {
            std::thread::sleep(ahead);
        }
    }
    sent
}

fn read_replies(mut rx: Receiver) -> Acks {
    let mut a = Acks::default();
    while let Ok((error, handle)) = rx.reply() {
        let i = handle & INDEX_MASK;
        if error != 0 {
            a.errors
                .push(format!("request {handle:#x}: NBD error {error}"));
            continue;
        }
        if handle & FLUSH_BIT != 0 {
            a.durable = a.durable.max(i);
            a.flushes_acked += 1;
        } else {
            a.acked = a.acked.max(i);
            if handle & FUA_BIT != 0 {
                a.durable = a.durable.max(i);
            }
        }
    }
    a
}

/// One store's life across kills: what the test knows it holds.
struct ServeStore {
    store: PathBuf,
    socket: PathBuf,
    /// Writes applied so far (the store holds exactly writes 1..=applied).
    applied: u64,
    /// The disk after them.
    disk: Vec<u8>,
    /// Records checked so far.
    head: Seq,
}

#[derive(Default, Debug)]
struct ServeStats {
    kills: usize,
    kills_at_start: usize,
    kills_mid_flush: usize,
    torn_tails_cut: usize,
    writes_applied: u64,
    writes_acked_checked: u64,
    writes_durable_checked: u64,
    flushes_acked: u64,
    stores: usize,
}

impl ServeStore {
    fn new(root: &Path, n: usize) -> ServeStore {
        let dir = root.join(format!("serve-{n}"));
        std::fs::create_dir(&dir).unwrap();
        let store = dir.join("store");
        diskhist(&["init", p(&store), "--size", &SERVE_DISK.to_string()]);
        ServeStore {
            socket: dir.join("nbd.sock"),
            store,
            applied: 0,
            disk: vec![0; SERVE_DISK as usize],
            head: Seq(0),
        }
    }

    /// Start serve after a kill (sometimes killing it again while it opens
    /// the store and recovers); check it reported any torn tail it cut.
    fn restart(&mut self, rng: &mut Rng, stats: &mut ServeStats, kills_left: &mut usize) -> Served {
        loop {
            let tail = tail_stop(&self.store);
            let mut p = Served::spawn(&self.store, &self.socket, &[]);
            if *kills_left > 1 && rng.one_in(12) {
                std::thread::sleep(Duration::from_micros(rng.below(15_000)));
                p.kill9();
                *kills_left -= 1;
                stats.kills += 1;
                stats.kills_at_start += 1;
                continue;
            }
            p.wait_listening("after a kill");
            if tail.is_some() {
                stats.torn_tails_cut += 1;
            }
            check_cut_reported(&p.stderr(), tail.as_ref(), "serve");
            return p;
        }
    }

    /// After a kill and a restart: verify, then find how many of `sent`
    /// the store applied and check the state is exactly that prefix.
    fn check(&mut self, sent: &[SentWrite], acks: &Acks, stats: &mut ServeStats, when: &str) {
        verify_ok(&self.store, when);
        let s = Store::open(&self.store).unwrap();
        let head = s.head().seq;
        let mut applied = 0usize;
        for seq in self.head.0 + 1..=head.0 {
            let r = s.record(Seq(seq)).unwrap();
            match r.kind {
                RecordKind::Flush => {}
                RecordKind::Write => {
                    let w = sent.get(applied).unwrap_or_else(|| {
                        panic!("{when}: record {seq} is a write the client never sent")
                    });
                    assert_eq!(
                        (r.offset_bytes, r.length_bytes),
                        (w.offset_bytes, w.len as u64),
                        "{when}: record {seq} is not write #{} as sent",
                        self.applied + applied as u64 + 1
                    );
                    applied += 1;
                }
                other => panic!("{when}: record {seq} is a {other:?}; the client sent none"),
            }
        }
        let first = self.applied + 1;
        let k = self.applied + applied as u64;
        assert!(
            acks.errors.is_empty(),
            "{when}: errors from the server: {:?}",
            acks.errors
        );
        assert!(
            k >= acks.durable,
            "{when}: write #{} was acknowledged durable, the store holds only 1..={k}",
            acks.durable
        );
        // A killed process leaves what it wrote in the page cache: even
        // writes acknowledged without FUA must be there.
        assert!(
            k >= acks.acked,
            "{when}: write #{} was acknowledged, the store holds only 1..={k}",
            acks.acked
        );
        let mut reference = self.disk.clone();
        for (j, w) in sent[..applied].iter().enumerate() {
            let o = w.offset_bytes as usize;
            reference[o..o + w.len].copy_from_slice(&content(SEED.get(), first + j as u64, w.len));
        }
        let got = disk_at(&s, head, SERVE_DISK);
        assert!(
            got == reference,
            "{when}: the disk is not the state after writes 1..={k}: {}",
            first_difference(&got, &reference)
        );
        if acks.durable >= first {
            stats.writes_durable_checked += acks.durable - first + 1;
        }
        if acks.acked >= first {
            stats.writes_acked_checked += acks.acked - first + 1;
        }
        stats.writes_applied += applied as u64;
        stats.flushes_acked += acks.flushes_acked;
        self.applied = k;
        self.disk = reference;
        self.head = head;
    }
}

/// The run's seed, shared with helpers that build content.
struct SeedCell(std::sync::OnceLock<u64>);
impl SeedCell {
    fn get(&self) -> u64 {
        *self.0.get().expect("seed set")
    }
}
static SEED: SeedCell = SeedCell(std::sync::OnceLock::new());

fn run_seed() -> u64 {
    *SEED.0.get_or_init(|| seed_from_env("DISKHIST_CRASH_SEED"))
}

#[test]
fn serve_keeps_every_acknowledged_write_across_sigkills() {
    let seed = run_seed();
    eprintln!("crash seed {seed} (replay with DISKHIST_CRASH_SEED={seed})");
    let (kills, _) = kill_budget();
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = seeded_rng(seed ^ 0x5e4e);
    let mut stats = ServeStats::default();
    let mut st = ServeStore::new(tmp.path(), 0);
    stats.stores = 1;
    let mut kills_left = kills;
    let mut server = st.restart(&mut rng, &mut stats, &mut kills_left);
    let mut round = 0;
    while kills_left > 0 {
        round += 1;
        if round % SERVE_ROUNDS_PER_STORE == 0 {
            let status = server.terminate(Duration::from_secs(30));
            assert!(status.success(), "serve on SIGTERM: {}", server.stderr());
            verify_ok(&st.store, "after a clean stop");
            st = ServeStore::new(tmp.path(), round);
            stats.stores += 1;
            server = st.restart(&mut rng, &mut stats, &mut kills_left);
        }
        let client = Client::connect(&st.socket);
        assert_eq!(client.size(), SERVE_DISK);
        let (tx, rx) = client.split();
        let ctl = Arc::new(SendCtl {
            stop: AtomicBool::new(false),
            flush_now: AtomicBool::new(false),
        });
        let (flushed_tx, flushed_rx) = mpsc::channel();
        let sender = {
            let (ctl, srng, first) = (Arc::clone(&ctl), seeded_rng(rng.next_u64()), st.applied + 1);
            std::thread::spawn(move || send_writes(tx, seed, srng, first, ctl, flushed_tx))
        };
        let receiver = std::thread::spawn(move || read_replies(rx));
        std::thread::sleep(Duration::from_millis(rng.range(5, 300)));
        let mid_flush = rng.one_in(4);
        if mid_flush {
            // Kill right after a FLUSH went out: most likely inside fdatasync.
            ctl.flush_now.store(true, Ordering::Relaxed);
            let _ = flushed_rx.recv_timeout(Duration::from_secs(5));
            stats.kills_mid_flush += 1;
        }
        server.kill9();
        kills_left -= 1;
        stats.kills += 1;
        ctl.stop.store(true, Ordering::Relaxed);
        let sent = sender.join().expect("sender thread");
        let acks = receiver.join().expect("receiver thread");
        server = st.restart(&mut rng, &mut stats, &mut kills_left);
        let when = format!(
            "after kill {} (round {round}, {}; seed {seed})",
            stats.kills,
            if mid_flush {
                "mid-flush"
            } else {
                "random moment"
            }
        );
        st.check(&sent, &acks, &mut stats, &when);
    }
    let status = server.terminate(Duration::from_secs(30));
    assert!(status.success(), "serve on SIGTERM: {}", server.stderr());
    verify_ok(&st.store, "at the end");
    eprintln!("serve crash test: {stats:?} in {:.1?}", t0.elapsed());
    assert_eq!(stats.kills, kills);
    assert!(
        stats.writes_durable_checked > 0,
        "no write was ever acknowledged durable: the test checked nothing"
    );
}

// ------------------------------------------- serve, many requests in flight

const BURST_DISK: u64 = 3 << 20;
const BURST_CONNS: u64 = 3;
/// Requests a connection keeps in flight, at most.
const BURST_IN_FLIGHT: u64 = 256;

/// What one connection sent and saw acknowledged.
#[derive(Default)]
struct ConnRun {
    /// Writes sent, in order: (offset, length); write i is `sent[i - 1]`.
    sent: Vec<(u64, usize)>,
    /// Highest write acknowledged, and highest known durable.
    acked: u64,
    durable: u64,
    flushes_acked: u64,
    errors: Vec<String>,
}

/// The content of connection `c`'s write `i`.
fn burst_content(seed: u64, c: u64, i: u64, len: usize) -> Vec<u8> {
    content(seed, (c << 40) | i, len)
}

/// One connection, unpaced: batches of writes (some FUA) and flushes, up to
/// `BURST_IN_FLIGHT` requests unanswered, until `stop` or the server dies.
fn burst_connection(socket: &Path, seed: u64, c: u64, mut rng: Rng, stop: &AtomicBool) -> ConnRun {
    let (mut tx, mut rx) = Client::connect(socket).split();
    let region = BURST_DISK / BURST_CONNS;
    let answered = Arc::new(AtomicU64::new(0));
    let receiver = {
        let answered = Arc::clone(&answered);
        std::thread::spawn(move || {
            let mut run = ConnRun::default();
            while let Ok((error, handle)) = rx.reply() {
                answered.fetch_add(1, Ordering::Relaxed);
                let i = handle & INDEX_MASK;
                if error != 0 {
                    run.errors
                        .push(format!("request {handle:#x}: NBD error {error}"));
                } else if handle & FLUSH_BIT != 0 {
                    run.durable = run.durable.max(i);
                    run.flushes_acked += 1;
                } else {
                    run.acked = run.acked.max(i);
                    if handle & FUA_BIT != 0 {
                        run.durable = run.durable.max(i);
                    }
                }
            }
            run
        })
    };
    let mut sent = Vec::new();
    let mut requests = 0u64;
    let mut batch = Batch::default();
    'send: while !stop.load(Ordering::Relaxed) {
        while requests - answered.load(Ordering::Relaxed) > BURST_IN_FLIGHT - 32 {
            if stop.load(Ordering::Relaxed) {
                break 'send;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        batch.clear();
        for _ in 0..16 {
            let i = sent.len() as u64 + 1;
            let blocks = rng.range(1, 8);
            let b = rng.below(region / 4096 - blocks + 1);
            let (off, len) = (c * region + b * 4096, (blocks * 4096) as usize);
            let fua = rng.one_in(8);
            let handle = i | if fua { FUA_BIT } else { 0 };
            batch.write(handle, off, &burst_content(seed, c, i, len), fua);
            sent.push((off, len));
            requests += 1;
            if rng.one_in(6) {
                batch.flush(FLUSH_BIT | i);
                requests += 1;
            }
        }
        if tx.send(&batch).is_err() {
            break;
        }
    }
    drop(tx);
    let mut run = receiver.join().expect("receiver thread");
    run.sent = sent;
    run
}

#[test]
fn serve_keeps_every_acknowledged_flush_with_many_requests_in_flight() {
    let seed = run_seed();
    eprintln!("crash seed {seed} (replay with DISKHIST_CRASH_SEED={seed})");
    let kills = (kill_budget().0 / 5).max(4);
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = seeded_rng(seed ^ 0xb0b5);
    let (mut durable_checked, mut flushes_acked) = (0u64, 0u64);
    for kill in 1..=kills {
        let dir = tmp.path().join(format!("burst-{kill}"));
        std::fs::create_dir(&dir).unwrap();
        let store = dir.join("store");
        let socket = dir.join("nbd.sock");
        diskhist(&["init", p(&store), "--size", &BURST_DISK.to_string()]);
        let mut server = Served::start(&store, &socket, &[]);
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Vec<_> = (0..BURST_CONNS)
            .map(|c| {
                let (socket, stop, crng) = (
                    socket.clone(),
                    Arc::clone(&stop),
                    seeded_rng(rng.next_u64()),
                );
                std::thread::spawn(move || burst_connection(&socket, seed, c, crng, &stop))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.range(20, 400)));
        server.kill9();
        stop.store(true, Ordering::Relaxed);
        let runs: Vec<ConnRun> = conns
            .into_iter()
            .map(|t| t.join().expect("connection"))
            .collect();
        let when = format!("burst kill {kill} (seed {seed})");
        // The next writer cuts any torn tail; then check the store.
        let server = Served::start(&store, &socket, &[]);
        let (st, err) = server.stop();
        assert!(st.success(), "{when}: serve after the kill: {err}");
        verify_ok(&store, &when);
        let s = Store::open(&store).unwrap();
        let head = s.head().seq;
        let region = BURST_DISK / BURST_CONNS;
        let mut applied = vec![0usize; BURST_CONNS as usize];
        for seq in 1..=head.0 {
            let r = s.record(Seq(seq)).unwrap();
            match r.kind {
                RecordKind::Flush => {}
                RecordKind::Write => {
                    let c = (r.offset_bytes / region) as usize;
                    let w = runs[c].sent.get(applied[c]).unwrap_or_else(|| {
                        panic!("{when}: record {seq} is a write connection {c} never sent")
                    });
                    assert_eq!(
                        (r.offset_bytes, r.length_bytes),
                        (w.0, w.1 as u64),
                        "{when}: record {seq} is not connection {c}'s write #{} as sent",
                        applied[c] + 1
                    );
                    applied[c] += 1;
                }
                other => panic!("{when}: record {seq} is a {other:?}; no client sent one"),
            }
        }
        let mut reference = vec![0u8; BURST_DISK as usize];
        for (c, run) in runs.iter().enumerate() {
            assert!(
                run.errors.is_empty(),
                "{when}: connection {c}: {:?}",
                run.errors
            );
            let k = applied[c] as u64;
            assert!(
                k >= run.durable,
                "{when}: connection {c}'s write #{} was acknowledged durable, the store holds \
                 only its writes 1..={k}",
                run.durable
            );
            assert!(
                k >= run.acked,
                "{when}: connection {c}'s write #{} was acknowledged, the store holds only \
                 1..={k}",
                run.acked
            );
            for (j, &(off, len)) in run.sent[..applied[c]].iter().enumerate() {
                let o = off as usize;
                reference[o..o + len].copy_from_slice(&burst_content(
                    seed,
                    c as u64,
                    j as u64 + 1,
                    len,
                ));
            }
            durable_checked += run.durable;
            flushes_acked += run.flushes_acked;
        }
        let got = disk_at(&s, head, BURST_DISK);
        assert!(
            got == reference,
            "{when}: the disk is not the state after each connection's writes: {}",
            first_difference(&got, &reference)
        );
    }
    eprintln!(
        "burst crash test: {kills} kills, {durable_checked} writes acknowledged durable and \
         checked, {flushes_acked} flushes acknowledged, in {:.1?}",
        t0.elapsed()
    );
    assert!(
        durable_checked > 0 && flushes_acked > 0,
        "nothing was ever acknowledged durable: the test checked nothing"
    );
}

// ----------------------------------------------------------------- ingest

const INGEST_DISK: u64 = 256 << 10;
const INGEST_SECTORS: u64 = INGEST_DISK / SECTOR as u64;

/// Entry `index` (from 1) of the test's log.
fn make_entry(rng: &mut Rng, seed: u64, index: u64, mark_base_ns: i64) -> Entry {
    match rng.below(100) {
        0..=59 => {
            let nr = rng.range(1, 16);
            let sector = rng.below(INGEST_SECTORS - nr + 1);
            let flags = match rng.below(20) {
                0 | 1 => dl::FUA,
                2 => dl::FLUSH,
                _ => 0,
            };
            Entry::Write {
                sector,
                data: content(seed, index, nr as usize * SECTOR),
                flags,
            }
        }
        60..=74 => {
            let nr = rng.range(1, 16);
            Entry::Discard {
                sector: rng.below(INGEST_SECTORS - nr + 1),
                nr_sectors: nr,
            }
        }
        75..=84 => Entry::Flush,
        85..=94 => Entry::Mark(format!("m{index}")),
        _ => Entry::Mark(format!("t={}", mark_base_ns + index as i64 * 1000)),
    }
}

/// Append entries to the log until told to stop; entries are sometimes
/// written in two pieces with a pause between (a half-written entry), and
/// the super block's count is brought up to date now and then, lazily, as
/// the kernel does.
fn append_entries(
    log: PathBuf,
    seed: u64,
    mut rng: Rng,
    first: u64,
    mark_base_ns: i64,
    stop: Arc<AtomicBool>,
) -> Vec<Entry> {
    use std::os::unix::fs::FileExt;
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    let sup = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
    let mut out = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let index = first + out.len() as u64;
        let e = make_entry(&mut rng, seed, index, mark_base_ns);
        let bytes = dl::encode(SECTOR, &e);
        if rng.one_in(5) {
            let cut = rng.range(1, bytes.len() as u64 - 1) as usize;
            f.write_all(&bytes[..cut]).unwrap();
            std::thread::sleep(Duration::from_millis(rng.range(1, 30)));
            f.write_all(&bytes[cut..]).unwrap();
        } else {
            f.write_all(&bytes).unwrap();
        }
        out.push(e);
        if rng.one_in(40) {
            sup.write_all_at(&dl::super_block(SECTOR, index), 0)
                .unwrap();
        }
        std::thread::sleep(Duration::from_micros(rng.below(3000)));
    }
    out
}

#[derive(Default, Debug)]
struct IngestStats {
    kills: usize,
    torn_tails_cut: usize,
    resumes: usize,
    entries: usize,
    states_checked: usize,
}

#[test]
fn ingest_follow_resumes_without_loss_or_duplicates_across_sigkills() {
    let seed = run_seed();
    eprintln!("crash seed {seed} (replay with DISKHIST_CRASH_SEED={seed})");
    let (_, kills) = kill_budget();
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    diskhist(&["init", p(&store), "--size", &INGEST_DISK.to_string()]);
    let log = tmp.path().join("live.dmlog");
    std::fs::write(&log, dl::super_block(SECTOR, 0)).unwrap();
    let mark_base_ns = diskhist::now().0 + 3_600_000_000_000;
    let mut rng = seeded_rng(seed ^ 0x1d6e);
    let mut entries: Vec<Entry> = Vec::new();
    let mut stats = IngestStats::default();
    let head_of = |s: &Path| Store::open(s).unwrap().head().seq.0 as usize;
    for round in 0..=kills {
        let tail = tail_stop(&store);
        let recorded = head_of(&store);
        let mut p = Spawned::start(&mut diskhist_cmd([
            "ingest",
            "--format",
            "dmlog",
            "--follow",
            p(&store),
            p(&log),
        ]));
        let when = format!("after kill {round} (seed {seed})");
        if let Some(t) = &tail {
            stats.torn_tails_cut += 1;
            let msg = cut_message(t);
            wait_until(
                Duration::from_secs(10),
                || {
                    format!(
                        "{when}: ingest did not report cutting {t:?}:\n{}",
                        p.stderr()
                    )
                },
                || p.stderr().contains(&msg),
            );
        }
        // It says where it resumes: after the entries the killed run
        // recorded, even when they were only flushes and trims.
        if recorded > 0 {
            let msg = format!("resuming: entries 1..{recorded} of");
            wait_until(
                Duration::from_secs(10),
                || format!("{when}: no {msg:?} in\n{}", p.stderr()),
                || p.stderr().contains(&msg),
            );
            stats.resumes += 1;
        }
        let n = entries.len();
        wait_until(
            Duration::from_secs(30),
            || {
                format!(
                    "{when}: ingest did not catch up to {n} entries:\n{}",
                    p.stderr()
                )
            },
            || {
                let h = head_of(&store);
                assert!(
                    h <= n,
                    "{when}: the store holds {h} records, the log only {n} entries: \
                     a restarted ingest recorded entries twice\n{}",
                    p.stderr()
                );
                h == n
            },
        );
        check_cut_reported(&p.stderr(), tail.as_ref(), "ingest");
        // The follower is idle at the end of the log: nothing is appending.
        verify_ok(&store, &when);
        if round == kills {
            let status = p.terminate(Duration::from_secs(30));
            assert!(status.success(), "ingest on SIGTERM: {}", p.stderr());
            break;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let appender = {
            let (log, arng, first) = (log.clone(), seeded_rng(rng.next_u64()), n as u64 + 1);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || append_entries(log, seed, arng, first, mark_base_ns, stop))
        };
        std::thread::sleep(Duration::from_millis(rng.range(20, 600)));
        p.kill9();
        stats.kills += 1;
        stop.store(true, Ordering::Relaxed);
        entries.extend(appender.join().expect("appender thread"));
    }
    verify_ok(&store, "at the end");

    // Record i is entry i, at the time its last t= mark set, and the disk
    // after record i is the reference replay after entry i.
    let s = Store::open(&store).unwrap();
    assert_eq!(s.head().seq.0 as usize, entries.len());
    let mut disk = vec![0u8; INGEST_DISK as usize];
    let mut mark_time: Option<i64> = None;
    for (j, e) in entries.iter().enumerate() {
        let seq = Seq(j as u64 + 1);
        let r = s.record(seq).unwrap();
        let (kind, off, len) = match e {
            Entry::Write { sector, data, .. } => {
                (RecordKind::Write, sector * 512, data.len() as u64)
            }
            Entry::Discard { sector, nr_sectors } => {
                (RecordKind::Trim, sector * 512, nr_sectors * 512)
            }
            Entry::Flush => (RecordKind::Flush, 0, 0),
            Entry::Mark(name) => {
                if let Some(t) = name.strip_prefix("t=") {
                    mark_time = Some(t.parse().unwrap());
                }
                (RecordKind::Mark, 0, name.len() as u64)
            }
        };
        assert_eq!(
            (r.kind, r.offset_bytes, r.length_bytes),
            (kind, off, len),
            "record {seq} is not entry {} (seed {seed})",
            j + 1
        );
        if let Some(t) = mark_time {
            assert_eq!(
                r.time_ns.0, t,
                "record {seq}: time not from the t= mark before it"
            );
        }
        assert!(
            !r.flags.contains(OpFlags::CLOCK_HELD),
            "record {seq}: clock held (a resumed ingest lost the mark clock?)"
        );
        dl::apply(SECTOR, &mut disk, e);
        let got = disk_at(&s, seq, INGEST_DISK);
        assert!(
            got == disk,
            "state after record {seq} is not the replay after entry {}: {} (seed {seed})",
            j + 1,
            first_difference(&got, &disk)
        );
        stats.states_checked += 1;
    }
    stats.entries = entries.len();
    eprintln!("ingest crash test: {stats:?} in {:.1?}", t0.elapsed());
    assert_eq!(stats.kills, kills);
}

// -------------------------------------------------------------- torn tail

/// How the end of the log was damaged.
#[derive(Clone, Copy, Debug)]
enum Tail {
    /// The first part of a record (a copy of the last one): a write that
    /// stopped part-way.
    TruncatedRecord,
    /// Fewer bytes than a record header.
    ShortGarbage,
    /// Zeros: the file was extended but the data never reached the disk,
    /// which a power cut can leave on some filesystems.
    Zeros,
}

/// Offsets of the records of a log (walking their lengths).
fn record_offsets(log: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= log.len() {
        out.push(at);
        let prefix = log[at..at + 8].try_into().unwrap();
        at += diskhist::testing::format::peek_record_len(prefix).unwrap() as usize;
    }
    out
}

/// A history of writes at sectors, each tagged with its index.
fn some_entries(seed: u64, from: u64, n: u64) -> Vec<Entry> {
    let mut rng = seeded_rng(seed ^ from);
    (from..from + n)
        .map(|i| {
            let nr = rng.range(1, 24);
            Entry::Write {
                sector: rng.below(INGEST_SECTORS - nr + 1),
                data: content(seed, i, nr as usize * SECTOR),
                flags: if i % 5 == 0 { dl::FLUSH } else { 0 },
            }
        })
        .collect()
}

/// Damage the tail of a store's log in each way, open it with each writer,
/// and check: the cut is reported (offset and bytes), verify passes, and
/// every record before the cut is intact and still the same history.
fn torn_tail_case(tail: Tail, by_serve: bool) {
    let seed = 7;
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    diskhist(&["init", p(&store), "--size", &INGEST_DISK.to_string()]);
    let first = some_entries(seed, 1, 20);
    let log1 = tmp.path().join("one.dmlog");
    std::fs::write(&log1, dl::log_of(SECTOR, &first)).unwrap();
    diskhist(&["ingest", p(&store), p(&log1)]);
    let (head, disk) = {
        let s = Store::open(&store).unwrap();
        let head = s.head();
        (head, disk_at(&s, head.seq, INGEST_DISK))
    };
    assert_eq!(head.seq.0, 20);

    let log_path = store.join("log");
    let whole = std::fs::read(&log_path).unwrap();
    let last = *record_offsets(&whole).last().unwrap();
    let damage: Vec<u8> = match tail {
        Tail::TruncatedRecord => whole[last..last + (whole.len() - last) * 2 / 3].to_vec(),
        Tail::ShortGarbage => {
            // Fewer bytes than the smallest record (26 in format 2): no
            // whole record can be in them.
            let mut g = vec![0u8; 20];
            seeded_rng(3).fill(&mut g);
            g
        }
        Tail::Zeros => vec![0u8; 4096],
    };
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log_path)
        .unwrap()
        .write_all(&damage)
        .unwrap();
    let what = format!(
        "{tail:?} tail, opened by {}",
        if by_serve { "serve" } else { "ingest" }
    );

    // Readers see the damage and read around it; verify names it.
    let t = tail_stop(&store).unwrap_or_else(|| panic!("{what}: a reader saw no torn tail"));
    assert_eq!(
        (t.offset_bytes, t.bytes_left, t.seq),
        (whole.len() as u64, damage.len() as u64, Seq(21)),
        "{what}"
    );
    let o = diskhist_output(&["verify", p(&store)]);
    let (code, err) = (o.status.code(), stderr_of(&o));
    assert_eq!(code, Some(1), "{what}: verify passed a damaged log");
    assert!(
        err.contains(&format!("record #21 at log byte {}", whole.len())),
        "{what}: {err}"
    );

    // The next writer cuts it and says so.
    let mut expect_head = 20;
    let mut expect_disk = disk.clone();
    if by_serve {
        let socket = tmp.path().join("nbd.sock");
        let mut p = Served::spawn(&store, &socket, &[]);
        p.wait_listening(&what);
        assert!(p.terminate(Duration::from_secs(30)).success());
        let stderr = p.stderr();
        assert!(stderr.contains(&cut_message(&t)), "{what}:\n{stderr}");
    } else {
        let more = some_entries(seed, 21, 5);
        let log2 = tmp.path().join("two.dmlog");
        std::fs::write(&log2, dl::log_of(SECTOR, &more)).unwrap();
        let o = diskhist_output(&["ingest", p(&store), p(&log2)]);
        let (code, err) = (o.status.code(), stderr_of(&o));
        assert_eq!(code, Some(0), "{what}: {err}");
        assert!(err.contains(&cut_message(&t)), "{what}:\n{err}");
        for e in &more {
            dl::apply(SECTOR, &mut expect_disk, e);
        }
        expect_head += 5;
    }
    verify_ok(&store, &what);
    let s = Store::open(&store).unwrap();
    assert!(s.tail_stop().is_none(), "{what}: still damaged");
    assert_eq!(s.head().seq.0, expect_head, "{what}");
    assert_eq!(
        s.record(Seq(20)).unwrap().chain,
        head.chain,
        "{what}: history changed"
    );
    assert!(
        disk_at(&s, Seq(20), INGEST_DISK) == disk,
        "{what}: state before the cut changed"
    );
    assert!(
        disk_at(&s, s.head().seq, INGEST_DISK) == expect_disk,
        "{what}: latest state"
    );
    assert_eq!(
        std::fs::read(&log_path).unwrap()[..whole.len()],
        whole[..],
        "{what}: bytes before the cut changed"
    );
}

#[test]
fn a_torn_record_at_the_end_is_cut_and_reported_by_the_next_writer() {
    for by_serve in [true, false] {
        torn_tail_case(Tail::TruncatedRecord, by_serve);
        torn_tail_case(Tail::ShortGarbage, by_serve);
    }
}

/// A file that grew but whose data never reached the disk (a power cut on
/// some filesystems) ends in zeros longer than a record header: no record
/// hides there, so it is cut and reported like any torn write, not refused
/// as damage in the middle of the log.
#[test]
fn a_zero_filled_tail_is_cut_and_reported_by_the_next_writer() {
    for by_serve in [true, false] {
        torn_tail_case(Tail::Zeros, by_serve);
    }
}
