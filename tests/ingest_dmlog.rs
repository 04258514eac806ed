//! `diskhist ingest --format dmlog`: the history of a real ext4 filesystem,
//! recorded as a dm-log-writes log by QEMU's blklogwrites driver, ingested
//! and read back state by state with The Sleuth Kit; and bad logs.
//!
//! Needs root, /dev/fuse, loop devices, qemu-storage-daemon, e2fsprogs and
//! sleuthkit (fls, icat), as CI has them.

use diskhist_test_common::dmlog::{self, Entry};
use diskhist_test_common::{
    diskhist, diskhist_cmd, diskhist_fails, diskhist_output, diskhist_with_input, log_records,
    output, p, run, sha256_hex, stderr_of, stdout_of, Spawned,
};
use std::path::{Path, PathBuf};
use std::process::Command;

const FIXTURE_LOG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/ext4-history.dmlog");
const FIXTURE_SHA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/ext4-history.final.sha256"
);
const MAKE_HISTORY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/make-ext4-history.sh");
const DISK_SIZE: usize = 16 << 20;

struct Ctx {
    dir: tempfile::TempDir,
    store: PathBuf,
}

fn new_store(size: &str) -> Ctx {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    diskhist(&["init", p(&store), "--size", size, "--block-size", "4096"]);
    Ctx { dir, store }
}

impl Ctx {
    /// Export the state `at` to a file; check the printed SHA-256 against
    /// the file's; return the image's bytes.
    fn export(&self, at: &str) -> (PathBuf, Vec<u8>) {
        let img = self.dir.path().join("state.img");
        // One file for every state: each export replaces the last.
        let stdout = diskhist(&[
            "export",
            p(&self.store),
            "--at",
            at,
            "-o",
            p(&img),
            "--force",
        ]);
        let bytes = std::fs::read(&img).unwrap();
        let hex = sha256_hex(&bytes);
        assert!(
            stdout.contains(&hex),
            "export printed {stdout:?}, the image hashes to {hex}"
        );
        (img, bytes)
    }

    /// `log --json`, one object per line: (seq, kind).
    fn records(&self) -> Vec<(u64, String)> {
        log_records(&self.store)
            .into_iter()
            .map(|r| (r.seq, r.kind))
            .collect()
    }
}

/// The log replayed independently of diskhist, as `replay-log` does it.
struct Replay {
    /// Byte offset of each entry's header.
    entry_offsets: Vec<usize>,
    sector_size: usize,
    disk_size: usize,
    final_sha: String,
}

fn replay(log: &[u8], disk_size: usize) -> Replay {
    let ss = u32::from_le_bytes(log[24..28].try_into().unwrap()) as usize;
    let mut r = Replay {
        entry_offsets: vec![],
        sector_size: ss,
        disk_size,
        final_sha: String::new(),
    };
    let mut disk = vec![0u8; disk_size];
    let mut pos = ss;
    while pos + ss <= log.len() {
        let flags = u64::from_le_bytes(log[pos + 16..pos + 24].try_into().unwrap());
        let nr = u64::from_le_bytes(log[pos + 8..pos + 16].try_into().unwrap());
        if flags == 0 && nr == 0 {
            break;
        }
        r.entry_offsets.push(pos);
        pos = r.apply(log, pos, &mut disk);
    }
    assert_eq!(pos, log.len(), "the log ends on an entry boundary");
    r.final_sha = sha256_hex(&disk);
    r
}

impl Replay {
    /// Apply the entry at `pos` to `disk`; return the next entry's offset.
    fn apply(&self, log: &[u8], pos: usize, disk: &mut [u8]) -> usize {
        let ss = self.sector_size;
        let u64_at = |at: usize| u64::from_le_bytes(log[at..at + 8].try_into().unwrap()) as usize;
        let (sector, nr, flags) = (u64_at(pos), u64_at(pos + 8), u64_at(pos + 16));
        let data = pos + ss;
        if flags & 4 != 0 {
            disk[sector * ss..(sector + nr) * ss].fill(0);
            data
        } else if flags & 8 == 0 && nr > 0 {
            disk[sector * ss..(sector + nr) * ss].copy_from_slice(&log[data..data + nr * ss]);
            data + nr * ss
        } else {
            data
        }
    }

    /// The disk after the first `n` entries.
    fn disk_after(&self, log: &[u8], n: usize) -> Vec<u8> {
        let mut disk = vec![0u8; self.disk_size];
        for &pos in &self.entry_offsets[..n] {
            self.apply(log, pos, &mut disk);
        }
        disk
    }
}

/// Allocated files and directories, `fls -r -p -u` names.
fn fls(img: &Path) -> Vec<String> {
    let out = output(Command::new("fls").args(["-r", "-p", "-u"]).arg(img));
    if !out.status.success() {
        // Before mkfs wrote a superblock there is no filesystem to list.
        return Vec::new();
    }
    stdout_of(&out)
        .lines()
        .filter_map(|l| l.split_once('\t').map(|(_, n)| n.to_string()))
        .collect()
}

/// The inode number fls gives `name`.
fn inode_of(img: &Path, name: &str) -> String {
    let out = output(Command::new("fls").args(["-r", "-p", "-u"]).arg(img));
    let listing = stdout_of(&out);
    let line = listing
        .lines()
        .find(|l| l.ends_with(&format!("\t{name}")))
        .expect(name);
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches(':')
        .to_string()
}

fn icat(img: &Path, inode: &str) -> Vec<u8> {
    let out = output(Command::new("icat").arg(img).arg(inode));
    if out.status.success() {
        out.stdout
    } else {
        Vec::new()
    }
}

/// The seqs at which `name` is listed form one interval: (first, first after).
fn listed_interval(timeline: &[Vec<String>], name: &str) -> (usize, usize) {
    let seqs: Vec<usize> = (0..timeline.len())
        .filter(|&i| timeline[i].iter().any(|n| n == name))
        .collect();
    assert!(!seqs.is_empty(), "{name} never listed");
    let (first, last) = (seqs[0], *seqs.last().unwrap());
    assert_eq!(
        seqs.len(),
        last - first + 1,
        "{name} comes and goes: listed at {seqs:?}"
    );
    (first, last + 1)
}

#[test]
fn fixture_history_replays_state_by_state() {
    let log = std::fs::read(FIXTURE_LOG).unwrap();
    let expected_final = std::fs::read_to_string(FIXTURE_SHA).unwrap();
    let expected_final = expected_final
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let replayed = replay(&log, DISK_SIZE);
    let entries = replayed.entry_offsets.len();
    assert_eq!(
        replayed.final_sha, expected_final,
        "the fixture replays to QEMU's disk"
    );

    let ctx = new_store("16M");
    let out = diskhist_output(&["ingest", p(&ctx.store), "--format", "dmlog", FIXTURE_LOG]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    // One record per log entry, the ones with no data as flushes.
    let records = ctx.records();
    assert_eq!(records.len(), entries);
    assert!(records
        .iter()
        .enumerate()
        .all(|(i, (seq, _))| *seq == i as u64 + 1));
    assert_eq!(records.last().unwrap().1, "flush");
    let (_, latest) = ctx.export("latest");
    assert_eq!(sha256_hex(&latest), expected_final);

    // Every state #i is the disk `replay-log --limit i` leaves. Read through
    // the library here: exporting 59 states with the debug binary takes
    // minutes; the transitions found below are exported with the binary.
    let store = diskhist::Store::open(&ctx.store).unwrap();
    let img = ctx.dir.path().join("scan.img");
    let mut disk = vec![0u8; DISK_SIZE];
    let mut timeline = Vec::new();
    let mut alpha = Vec::new();
    for i in 0..=entries {
        store
            .read_at(diskhist::Seq(i as u64), 0, &mut disk)
            .unwrap();
        assert!(
            disk == replayed.disk_after(&log, i),
            "state #{i} differs from the replayed log"
        );
        std::fs::write(&img, &disk).unwrap();
        timeline.push(fls(&img));
        alpha.push(if timeline[i].iter().any(|n| n == "alpha.txt") {
            icat(&img, &inode_of(&img, "alpha.txt"))
        } else {
            Vec::new()
        });
    }

    // Files appear with the record that wrote their directory entry, and
    // not a record earlier; checked on images the CLI exports.
    let kind = |seq: usize| records[seq - 1].1.as_str();
    let listed_at = |seq: usize, name: &str| {
        let (img, _) = ctx.export(&format!("#{seq}"));
        fls(&img).iter().any(|n| n == name)
    };
    for name in ["alpha.txt", "gamma.txt", "notes/beta.txt"] {
        let (first, _) = listed_interval(&timeline, name);
        assert!(
            first > 0 && kind(first) == "write",
            "{name} first listed at #{first}"
        );
        assert!(
            listed_at(first, name) && !listed_at(first - 1, name),
            "{name} at #{first}"
        );
    }
    assert!(listed_interval(&timeline, "notes").0 > 0);
    assert_eq!(listed_interval(&timeline, "alpha.txt").1, entries + 1);
    assert_eq!(listed_interval(&timeline, "gamma.txt").1, entries + 1);
    // The deleted file is gone from the record that rewrote its directory on.
    let (beta_from, beta_gone) = listed_interval(&timeline, "notes/beta.txt");
    assert!(
        beta_gone <= entries,
        "notes/beta.txt still listed at the end"
    );
    assert!(beta_from < beta_gone && kind(beta_gone) == "write");
    assert!(listed_at(beta_gone - 1, "notes/beta.txt") && !listed_at(beta_gone, "notes/beta.txt"));
    // alpha.txt's content: v1, then from one record on v2, to the end.
    let v1 = alpha
        .iter()
        .position(|c| c == b"alpha v1\n")
        .expect("alpha v1 seen");
    let v2 = alpha
        .iter()
        .position(|c| c == b"alpha v2\n")
        .expect("alpha v2 seen");
    assert!(v1 < v2 && alpha[v2 - 1] != b"alpha v2\n");
    assert!(alpha[v2..].iter().all(|c| c == b"alpha v2\n"));
    let (img, _) = ctx.export(&format!("#{v2}"));
    assert_eq!(icat(&img, &inode_of(&img, "alpha.txt")), b"alpha v2\n");
    let final_names: Vec<_> = timeline[entries]
        .iter()
        .filter(|n| !n.starts_with('$'))
        .collect();
    assert_eq!(
        final_names,
        ["lost+found", "alpha.txt", "notes", "gamma.txt"]
    );
}

#[test]
fn live_ext4_history_through_qemu_blklogwrites() {
    let work = tempfile::tempdir().unwrap();
    run(Command::new(MAKE_HISTORY)
        .arg("--keep-disk")
        .arg(work.path()));
    let log = work.path().join("ext4-history.dmlog");
    let disk = std::fs::read(work.path().join("ext4-history.raw")).unwrap();
    let recorded = std::fs::read_to_string(work.path().join("ext4-history.final.sha256")).unwrap();
    assert!(recorded.starts_with(&sha256_hex(&disk)));

    let ctx = new_store("16M");
    diskhist(&["ingest", p(&ctx.store), "--format", "dmlog", p(&log)]);
    let (img, latest) = ctx.export("latest");
    assert!(
        latest == disk,
        "the ingested history ends on a different disk than QEMU wrote"
    );
    let names = fls(&img);
    for name in ["alpha.txt", "gamma.txt", "notes"] {
        assert!(names.iter().any(|n| n == name), "{name} missing: {names:?}");
    }
    assert!(!names.iter().any(|n| n == "notes/beta.txt"));
    assert_eq!(icat(&img, &inode_of(&img, "gamma.txt")), b"gamma v1\n");
    diskhist(&["verify", p(&ctx.store)]);
}

#[test]
fn a_truncated_log_fails_naming_the_entry_and_keeps_what_came_before() {
    let log = std::fs::read(FIXTURE_LOG).unwrap();
    let replayed = replay(&log, DISK_SIZE);
    // Cut inside entry 30 (counted from 1): past its header, inside its data.
    let entry = 30;
    let header_at = replayed.entry_offsets[entry - 1];
    let cut = header_at + replayed.sector_size + 100;
    assert!(
        cut < replayed.entry_offsets[entry],
        "entry {entry} carries data"
    );
    let ctx = new_store("16M");
    let cut_log = ctx.dir.path().join("cut.dmlog");
    std::fs::write(&cut_log, &log[..cut]).unwrap();

    let err = diskhist_fails(
        &["ingest", p(&ctx.store), "--format", "dmlog", p(&cut_log)],
        1,
        "",
    );
    assert!(
        err.contains(&format!("entry {entry} at byte {header_at}")),
        "{err}"
    );
    assert!(err.contains("ends inside"), "{err}");
    assert_eq!(ctx.records().len(), entry - 1);
    diskhist(&["verify", p(&ctx.store)]);
    let (_, bytes) = ctx.export("latest");
    assert!(bytes == replayed.disk_after(&log, entry - 1));
}

#[test]
fn a_log_with_the_wrong_magic_is_refused() {
    let mut log = std::fs::read(FIXTURE_LOG).unwrap();
    log[0] ^= 0xff;
    let ctx = new_store("16M");
    let bad = ctx.dir.path().join("bad.dmlog");
    std::fs::write(&bad, &log).unwrap();
    let err = diskhist_fails(
        &["ingest", p(&ctx.store), "--format", "dmlog", p(&bad)],
        1,
        "",
    );
    assert!(err.contains("magic 0x6a73667773688d"), "{err}");
    assert!(err.contains("not a dm-log-writes log"), "{err}");
    assert!(ctx.records().is_empty());
}

#[test]
fn a_write_past_the_end_of_the_disk_is_refused_after_recording_what_came_before() {
    let ctx = new_store("1M");
    let first = vec![0x5au8; 4096];
    let write = |sector, data| Entry::Write {
        sector,
        data,
        flags: 0,
    };
    let log = dmlog::log_of(
        4096,
        &[
            write(0, first.clone()),
            Entry::Flush,
            write(256, vec![1u8; 4096]),
            write(1, vec![2u8; 4096]),
        ],
    );
    // Fed on standard input this time.
    let out = diskhist_with_input(&["ingest", "--format", "dmlog", p(&ctx.store), "-"], &log);
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("entry 3 at byte 16384"), "{err}");
    assert!(err.contains("past the end of the disk"), "{err}");
    assert_eq!(
        ctx.records(),
        [(1, "write".to_string()), (2, "flush".to_string())]
    );
    diskhist(&["verify", p(&ctx.store)]);
    let (_, bytes) = ctx.export("latest");
    assert_eq!(&bytes[..4096], &first[..]);
    assert!(bytes[4096..].iter().all(|&b| b == 0));
}

/// Wait (up to 30 s) until the store holds `n` records.
fn wait_for_records(ctx: &Ctx, n: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let have = ctx.records().len();
        if have == n {
            return;
        }
        assert!(have < n, "{have} records, expected {n}");
        assert!(
            std::time::Instant::now() < deadline,
            "{have} records after 30 s, expected {n}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn follow_tails_a_growing_log_with_holes_until_sigterm() {
    use std::io::{Seek, SeekFrom, Write};
    let log = std::fs::read(FIXTURE_LOG).unwrap();
    let replayed = replay(&log, DISK_SIZE);
    let at = |entry: usize| replayed.entry_offsets[entry - 1];
    // An entry from 10 on that carries data, to be cut inside its data.
    let k = (10..30).find(|&k| at(k + 1) - at(k) > 1024).unwrap();
    let mid = at(k) + 512 + 100;
    let ctx = new_store("16M");
    let path = ctx.dir.path().join("growing.dmlog");
    let mut file = std::fs::File::create(&path).unwrap();
    // Written as QEMU writes it: no super block until the first flush.
    file.seek(SeekFrom::Start(512)).unwrap();
    file.write_all(&log[512..mid]).unwrap();
    let mut child = Spawned::start(&mut diskhist_cmd([
        "ingest",
        "--format",
        "dmlog",
        "--follow",
        p(&ctx.store),
        p(&path),
    ]));
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        ctx.records().is_empty(),
        "read entries before the super block existed"
    );
    // The super block lands (its count is stale, as it is in a live log);
    // entry k is half there.
    file.seek(SeekFrom::Start(0)).unwrap();
    file.write_all(&log[..512]).unwrap();
    wait_for_records(&ctx, k - 1);
    file.seek(SeekFrom::Start((mid) as u64)).unwrap();
    file.write_all(&log[mid..at(20)]).unwrap();
    wait_for_records(&ctx, 19);
    // Entries 30.. land before entries 20..29: a hole that must be waited out.
    file.seek(SeekFrom::Start(at(30) as u64)).unwrap();
    file.write_all(&log[at(30)..]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert_eq!(ctx.records().len(), 19, "read past a hole");
    file.seek(SeekFrom::Start(at(20) as u64)).unwrap();
    file.write_all(&log[at(20)..at(30)]).unwrap();
    wait_for_records(&ctx, replayed.entry_offsets.len());

    let pid = child.pid().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = child.wait();
    let stderr = child.stderr();
    assert!(
        status.success(),
        "ingest --follow ended with {status}: {stderr}"
    );
    let (_, latest) = ctx.export("latest");
    assert_eq!(sha256_hex(&latest), replayed.final_sha);
    diskhist(&["verify", p(&ctx.store)]);
}
