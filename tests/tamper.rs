//! Tamper evidence: every single-byte change to any file of a store, a
//! deleted, reordered or truncated record, is caught by `verify` (which
//! names the first affected record), or is shown harmless: a byte in slack
//! space that no reader uses, with every state read back unchanged.
//!
//! The store is built once: a few hundred records through the library
//! writer (data, zero, trim, mark, flush, partial writes, dedup references,
//! raw and lz4 payloads, several index runs and compactions), then a real
//! `diskhist serve` session written to with qemu-io (the `sessions` file),
//! then a few more records. It is copied once; each change is made, checked
//! and undone in place.
//!
//! `DISKHIST_TAMPER_SEED` overrides the seed (printed); `DISKHIST_TAMPER_FLIPS`
//! the number of random changes (default 1200).

use diskhist::sessions::read_sessions;
use diskhist::store::verify::{verify_anchored, Anchor, VerifyReport};
use diskhist::store::{Op, OpFlags, Store, StoreError, Writer, WriterOptions};
use diskhist::testing::format::read_record_at;
use diskhist::testing::format::{self, Encoding, RecordKind};
use diskhist::testing::index;
use diskhist::{Seq, TimeNs};
use diskhist_test_common::{
    diskhist_output, env_number, incompressible, p, run, text_like, Rng, Served,
};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const DISK_BYTES: u64 = 256 << 10;
const BS: u32 = 4096;
const BLOCKS: u64 = DISK_BYTES / BS as u64;

/// Build the store in `dir/store`; returns its path.
fn build_store(dir: &Path) -> PathBuf {
    let store = dir.join("store");
    Writer::init(&store, DISK_BYTES, BS).unwrap();
    let t0 = diskhist::now().0 - 3_600_000_000_000;
    let mut r = Rng::new(7);
    // Small index flushes: several runs, compactions and dedup runs.
    #[allow(clippy::field_reassign_with_default)] // other fields keep their defaults
    let opts = {
        let mut o = WriterOptions::default();
        o.flush_threshold = 48;
        o
    };
    let mut w = Writer::open_with(&store, opts).unwrap();
    let mut remembered: Vec<Vec<u8>> = Vec::new();
    let mut t = t0;
    let append = |w: &mut Writer, op: Op<'_>, t: &mut i64| {
        *t += 1_000_000 + (r_time(*t) % 3) as i64 * 500_000_000;
        w.append(TimeNs(*t), op, OpFlags::default()).unwrap();
    };
    for i in 0..300u64 {
        let kind = r.below(20);
        let block = r.below(BLOCKS);
        let off = block * BS as u64;
        match kind {
            0..=4 => {
                // Whole blocks of compressible text (lz4), 1-3 blocks.
                let n = (1 + r.below(3)).min(BLOCKS - block);
                let d = text_like((n * BS as u64) as usize, i);
                remembered.push(d[..BS as usize].to_vec());
                append(
                    &mut w,
                    Op::Write {
                        offset_bytes: off,
                        data: &d,
                    },
                    &mut t,
                );
            }
            5..=7 => {
                // Random bytes (stored raw).
                let d = incompressible(BS as usize, 1000 + i);
                remembered.push(d.clone());
                append(
                    &mut w,
                    Op::Write {
                        offset_bytes: off,
                        data: &d,
                    },
                    &mut t,
                );
            }
            8..=10 if !remembered.is_empty() => {
                // Content stored before: a dedup reference.
                let d = remembered[r.below(remembered.len() as u64) as usize].clone();
                append(
                    &mut w,
                    Op::Write {
                        offset_bytes: off,
                        data: &d,
                    },
                    &mut t,
                );
            }
            11 | 12 => {
                // A partial write, merged with the block's previous content.
                let at = off + r.below(BS as u64 - 100);
                let d = text_like(1 + r.below(100) as usize, 5000 + i);
                append(
                    &mut w,
                    Op::Write {
                        offset_bytes: at,
                        data: &d,
                    },
                    &mut t,
                );
            }
            13 => {
                let len = BS as u64 * (1 + r.below(2));
                let len = len.min(DISK_BYTES - off);
                append(
                    &mut w,
                    Op::Zero {
                        offset_bytes: off,
                        length_bytes: len,
                    },
                    &mut t,
                );
            }
            14 => {
                // A partial zero: stores the merged block.
                let at = off + 512;
                append(
                    &mut w,
                    Op::Zero {
                        offset_bytes: at,
                        length_bytes: 1024,
                    },
                    &mut t,
                );
            }
            15 => {
                let len = (BS as u64 * 2).min(DISK_BYTES - off);
                append(
                    &mut w,
                    Op::Trim {
                        offset_bytes: off,
                        length_bytes: len,
                    },
                    &mut t,
                );
            }
            16 => {
                let name = format!("checkpoint {i}");
                append(&mut w, Op::Mark { name: &name }, &mut t);
            }
            17 => {
                // An all-zero write: no payload.
                let d = vec![0u8; BS as usize];
                append(
                    &mut w,
                    Op::Write {
                        offset_bytes: off,
                        data: &d,
                    },
                    &mut t,
                );
            }
            _ => append(&mut w, Op::Flush, &mut t),
        }
    }
    w.sync().unwrap();
    w.close().unwrap();

    // A real serve session writes the sessions file (and a few records).
    let sock = dir.join("nbd.sock");
    let served = Served::start(&store, &sock, &[]);
    run(Command::new("qemu-io")
        .args(["-f", "raw"])
        .args(["-c", "write -P 0x5a 8192 8192"])
        .args(["-c", "write -P 0x00 0 4096"])
        .args(["-c", "write -z 16384 4096"])
        .args(["-c", "flush"])
        .arg(served.uri()));
    let (st, err) = served.stop();
    assert!(st.success(), "serve: {err}");

    // And a few records after the session, so its anchors are mid-history.
    let mut w = Writer::open_with(&store, opts).unwrap();
    let mut t = diskhist::now().0;
    for i in 0..6u64 {
        let d = text_like(BS as usize, 9000 + i);
        t += 1_000_000;
        w.append(
            TimeNs(t),
            Op::Write {
                offset_bytes: (i * 7 % BLOCKS) * BS as u64,
                data: &d,
            },
            OpFlags::default(),
        )
        .unwrap();
    }
    w.close().unwrap();
    store
}

fn r_time(t: i64) -> u64 {
    (t as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60
}

/// What every reader must see: per state, the disk's hash and time.
struct Reference {
    head: Seq,
    images: Vec<blake3::Hash>,
    times: Vec<TimeNs>,
}

fn read_states(store: &Path) -> Result<Reference, String> {
    let s = Store::open(store).map_err(|e| e.to_string())?;
    let head = s.head().seq;
    let mut images = Vec::new();
    let mut times = Vec::new();
    let mut buf = vec![0u8; DISK_BYTES as usize];
    for st in 0..=head.0 {
        s.read_at(Seq(st), 0, &mut buf)
            .map_err(|e| format!("state {st}: {e}"))?;
        images.push(blake3::hash(&buf));
        if st > 0 {
            let t = s.time_of(Seq(st)).map_err(|e| e.to_string())?;
            let back = s
                .resolve(diskhist::TimeSpec::At(t))
                .map_err(|e| e.to_string())?;
            // The last record with this time is what the time names.
            if back < Seq(st) {
                return Err(format!("time of state {st} resolves to {back}"));
            }
            times.push(t);
        }
    }
    Ok(Reference {
        head,
        images,
        times,
    })
}

/// What a reader does with a possibly damaged store: refuse (an error) or
/// give exactly the reference. `Err` describes a silently wrong answer.
fn reader_sees(store: &Path, want: &Reference) -> Result<&'static str, String> {
    let s = match Store::open(store) {
        Ok(s) => s,
        Err(_) => return Ok("refused at open"),
    };
    if s.head().seq != want.head {
        return Err(format!(
            "reader sees head {} instead of {}",
            s.head().seq,
            want.head
        ));
    }
    let mut buf = vec![0u8; DISK_BYTES as usize];
    let mut refused = false;
    for st in 0..=want.head.0 {
        match s.read_at(Seq(st), 0, &mut buf) {
            Ok(()) if blake3::hash(&buf) != want.images[st as usize] => {
                return Err(format!("state {st} reads different bytes"));
            }
            Ok(()) => {}
            Err(_) => refused = true,
        }
        if st > 0 {
            match s.time_of(Seq(st)) {
                Ok(t) if t != want.times[st as usize - 1] => {
                    return Err(format!("state {st} has time {} instead", t.0));
                }
                Ok(_) => {}
                Err(_) => refused = true,
            }
        }
    }
    Ok(if refused {
        "refused some reads"
    } else {
        "read correctly"
    })
}

/// The anchors the sessions file gives, as `diskhist verify` uses them.
fn session_anchors(store: &Path) -> Result<Vec<Anchor>, String> {
    let sessions = read_sessions(store).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for s in sessions {
        out.push(Anchor {
            seq: s.start_seq,
            chain: s.start_chain,
            what: format!("sessions: the start of serve session {}", s.id),
        });
        if let Some(e) = s.end {
            out.push(Anchor {
                seq: e.seq,
                chain: e.chain,
                what: format!("sessions: the end of serve session {}", s.id),
            });
        }
    }
    Ok(out)
}

/// What `diskhist verify` decides, in process: `Ok(report)` when the
/// store verified (report.ok()), else `Err(message)`.
fn verify_in_process(store: &Path) -> Result<VerifyReport, String> {
    let anchors = session_anchors(store)?;
    match verify_anchored(store, &anchors) {
        Ok(r) if r.ok() => Ok(r),
        Ok(r) => Err(match &r.problem {
            Some(p) => format!("log: {p}"),
            None => [r.index_problems.clone(), r.anchor_problems.clone()]
                .concat()
                .join("; "),
        }),
        Err(e) => Err(e.to_string()),
    }
}

/// Every record's (seq, offset, length), walking the log.
fn records(store: &Path) -> Vec<(u64, u64, u64)> {
    let path = store.join(diskhist::store::layout::LOG_FILE);
    let log = File::open(&path).unwrap();
    let len = log.metadata().unwrap().len();
    let mut out = Vec::new();
    let (mut off, mut buf) = (0u64, Vec::new());
    while off < len {
        let h = read_record_at(&log, off, len, &mut buf).unwrap().unwrap();
        out.push((h.seq.0, off, u64::from(h.record_len)));
        off += u64::from(h.record_len);
    }
    out
}

/// Every file under the store, relative path -> length.
fn store_files(store: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut stack = vec![store.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(store).unwrap().display().to_string();
                out.insert(rel, e.metadata().unwrap().len());
            }
        }
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    run(Command::new("cp").arg("-a").arg(from).arg(to));
}

/// Bytes of the store that no reader, writer or verify uses, and why.
/// A change there must leave verify green and every state unchanged.
fn slack_region(file: &str, _offset: u64) -> Option<&'static str> {
    match file {
        "lock" => Some(
            "the writer lock's holder note (pid and start time), rewritten by every writer \
             at open and read only to name the holder in a 'store is locked' error",
        ),
        _ => None,
    }
}

fn flip(path: &Path, offset: u64, xor: u8) -> u8 {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, offset).unwrap();
    f.write_all_at(&[b[0] ^ xor], offset).unwrap();
    b[0]
}

fn restore(path: &Path, offset: u64, byte: u8) {
    let f = OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(&[byte], offset).unwrap();
}

/// `diskhist verify` on the command line: exit status and stderr.
fn cli_verify(store: &Path) -> (Option<i32>, String) {
    let out = diskhist_output(&["verify", p(store)]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[derive(Default)]
struct Tally {
    caught: BTreeMap<String, u64>,
    /// file -> (offsets changed, why no reader uses them)
    harmless: BTreeMap<String, (Vec<u64>, &'static str)>,
    readers: BTreeMap<&'static str, u64>,
    undetected: Vec<String>,
}

#[test]
fn every_single_byte_change_is_caught_or_harmless() {
    let t_start = Instant::now();
    let seed = env_number("DISKHIST_TAMPER_SEED").unwrap_or(0x5eed_2026);
    let flips = env_number("DISKHIST_TAMPER_FLIPS").unwrap_or(1200);
    println!("tamper: seed {seed} (set DISKHIST_TAMPER_SEED to repeat), {flips} changes");

    let tmp = tempfile::tempdir().unwrap();
    let pristine = build_store(tmp.path());
    let reference = read_states(&pristine).expect("the pristine store reads");
    verify_in_process(&pristine).expect("the pristine store verifies");
    let recs = records(&pristine);
    assert!(recs.len() > 250, "{} records", recs.len());
    assert_encodings_present(&pristine);
    let work = tmp.path().join("work");
    copy_dir(&pristine, &work);
    let files = store_files(&work);
    println!("tamper: built in {:.1?}; store files:", t_start.elapsed());
    for (f, len) in &files {
        println!("  {f:<48} {len:>8} bytes");
    }
    for f in [
        "diskhist.store",
        "log",
        "lock",
        "sessions",
        "index/MANIFEST",
        "index/seqs",
    ] {
        assert!(files.contains_key(f), "no {f} in the store");
    }
    assert!(files.keys().filter(|f| f.ends_with(".run")).count() >= 2);
    assert!(files.keys().any(|f| f.ends_with(".dedup")));

    let names: Vec<&String> = files.keys().collect();
    let total: u64 = files.values().sum();
    let mut rng = Rng::new(seed);
    let mut tally = Tally::default();
    let mut cli_checked = 0;
    let cli_every = (flips / 24).max(1);
    for i in 0..flips {
        // Every file first, then half by file, half by size.
        let name = if (i as usize) < names.len() {
            names[i as usize]
        } else if rng.below(2) == 0 {
            names[rng.below(names.len() as u64) as usize]
        } else {
            let mut at = rng.below(total);
            let mut pick = names[0];
            for n in &names {
                if at < files[*n] {
                    pick = n;
                    break;
                }
                at -= files[*n];
            }
            pick
        };
        let len = files[name];
        let offset = rng.below(len);
        let xor = 1 + rng.below(255) as u8;
        let path = work.join(name);
        let orig = flip(&path, offset, xor);
        let what = format!("{name} byte {offset} ^ {xor:#04x}");

        match verify_in_process(&work) {
            Err(msg) => {
                // Caught: check it names the right place.
                if name == "log" {
                    let (seq, start, _) = *recs
                        .iter()
                        .find(|(_, o, l)| offset >= *o && offset < o + l)
                        .unwrap();
                    let want = format!("record #{seq} at log byte {start}:");
                    assert!(
                        msg.contains(&want),
                        "{what}: verify says {msg:?}, not {want:?}"
                    );
                }
                if name.starts_with("index/") {
                    // A reader trusts the index: it must refuse or be right,
                    // never be wrong. (A reader trusts the log's payloads
                    // too; damage there is for verify to find.)
                    match reader_sees(&work, &reference) {
                        Ok(how) => *tally.readers.entry(how).or_default() += 1,
                        Err(wrong) => tally
                            .undetected
                            .push(format!("{what}: caught by verify, but a reader: {wrong}")),
                    }
                }
                let region = if name.starts_with("index/") && name.ends_with(".run") {
                    "index/*.run".to_string()
                } else if name.ends_with(".dedup") {
                    "index/*.dedup".to_string()
                } else {
                    name.clone()
                };
                *tally.caught.entry(region).or_default() += 1;
                if i % cli_every == 0 && cli_checked < 24 {
                    cli_checked += 1;
                    let (code, err) = cli_verify(&work);
                    assert_eq!(code, Some(1), "{what}: diskhist verify: {err}");
                    let names_it = if name == "log" {
                        let (seq, start, _) = *recs
                            .iter()
                            .find(|(_, o, l)| offset >= *o && offset < o + l)
                            .unwrap();
                        err.contains(&format!("record #{seq} at log byte {start}"))
                    } else {
                        err.contains(name.as_str())
                            || (name.starts_with("index/") && err.contains("index"))
                    };
                    assert!(
                        names_it,
                        "{what}: diskhist verify does not say where: {err}"
                    );
                }
            }
            Ok(_) => {
                let harmless = reader_sees(&work, &reference);
                match (slack_region(name, offset), harmless) {
                    (Some(why), Ok("read correctly")) => {
                        tally
                            .harmless
                            .entry(name.clone())
                            .or_insert((Vec::new(), why))
                            .0
                            .push(offset);
                    }
                    (_, h) => tally.undetected.push(format!(
                        "{what}: verify passes; readers: {h:?}; not a known slack region"
                    )),
                }
            }
        }
        restore(&path, offset, orig);
    }
    verify_in_process(&work).expect("every change undone");

    println!(
        "tamper: {flips} single-byte changes in {:.1?}",
        t_start.elapsed()
    );
    let caught: u64 = tally.caught.values().sum();
    println!("  caught by verify: {caught}");
    for (region, n) in &tally.caught {
        println!("    {region:<24} {n}");
    }
    let harmless: u64 = tally.harmless.values().map(|v| v.0.len() as u64).sum();
    println!(
        "  harmless (slack: verify passes, every state and time read back unchanged): {harmless}"
    );
    for (file, (offsets, why)) in &tally.harmless {
        println!(
            "    {file:<24} {} changes at offsets {}..={} of {} bytes (the whole file): {why}",
            offsets.len(),
            offsets.iter().min().unwrap(),
            offsets.iter().max().unwrap(),
            files[file]
        );
    }
    println!("  readers of a store with a damaged index:");
    for (how, n) in &tally.readers {
        println!("    {how:<24} {n}");
    }
    println!(
        "  diskhist verify on the command line: {cli_checked} checked, all exit 1 naming the place"
    );
    assert!(
        tally.undetected.is_empty(),
        "{} changes neither caught nor harmless:\n{}",
        tally.undetected.len(),
        tally.undetected.join("\n")
    );
    assert_eq!(caught + harmless, flips);
    assert!(cli_checked >= 20, "only {cli_checked} command-line checks");
    for f in files.keys() {
        let hit = tally.caught.keys().any(|r| r == f)
            || tally.harmless.contains_key(f)
            || (f.ends_with(".run") && tally.caught.contains_key("index/*.run"))
            || (f.ends_with(".dedup") && tally.caught.contains_key("index/*.dedup"));
        assert!(hit, "{f} was never changed");
    }
}

/// Every payload encoding and record kind is in the store under test.
fn assert_encodings_present(store: &Path) {
    let path = store.join(diskhist::store::layout::LOG_FILE);
    let log = File::open(&path).unwrap();
    let len = log.metadata().unwrap().len();
    let h = index::read_header(store).unwrap();
    let mut kinds = std::collections::BTreeSet::new();
    let mut tags = std::collections::BTreeSet::new();
    let (mut off, mut buf) = (0u64, Vec::new());
    while off < len {
        let r = read_record_at(&log, off, len, &mut buf).unwrap().unwrap();
        kinds.insert(r.kind as u8);
        if r.kind == RecordKind::Write && r.length_bytes > 0 {
            let first = r.offset_bytes / u64::from(h.block_size);
            let last = (r.offset_bytes + r.length_bytes - 1) / u64::from(h.block_size);
            let entries = format::parse_block_entries(
                format::record_body(&buf),
                (last - first + 1) as usize,
                h.block_size,
            )
            .unwrap();
            for e in entries {
                tags.insert(match e {
                    format::BlockEntry::Zero => "zero",
                    format::BlockEntry::Stored {
                        encoding: Encoding::Raw,
                        ..
                    } => "raw",
                    format::BlockEntry::Stored { .. } => "lz4",
                    format::BlockEntry::Ref(_) => "ref",
                });
            }
        }
        off += u64::from(r.record_len);
    }
    assert_eq!(kinds.len(), 5, "record kinds present: {kinds:?}");
    assert_eq!(tags.len(), 4, "block encodings present: {tags:?}");
}

/// Write `store`'s log as `recs` in the given order (records by index).
fn rewrite_log(pristine: &Path, dst: &Path, order: &[usize]) {
    let recs = records(pristine);
    let log = std::fs::read(pristine.join(diskhist::store::layout::LOG_FILE)).unwrap();
    let mut out = Vec::new();
    for &i in order {
        let (_, o, l) = recs[i];
        out.extend_from_slice(&log[o as usize..(o + l) as usize]);
    }
    std::fs::write(dst.join(diskhist::store::layout::LOG_FILE), out).unwrap();
}

#[test]
fn deleted_reordered_and_truncated_records_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = build_store(tmp.path());
    let recs = records(&pristine);
    let n = recs.len();
    let reference = read_states(&pristine).unwrap();
    let case = |label: &str, prepare: &dyn Fn(&Path), want: &str| {
        let work = tmp.path().join(label.replace(' ', "-"));
        copy_dir(&pristine, &work);
        prepare(&work);
        let msg = verify_in_process(&work).expect_err(label);
        assert!(
            msg.contains(want),
            "{label}: verify says {msg:?}, want {want:?}"
        );
        let (code, err) = cli_verify(&work);
        assert_eq!(code, Some(1), "{label}: {err}");
        assert!(err.contains(want), "{label}: diskhist verify says {err:?}");
        // Readers refuse or stay right for what they read.
        let sees = reader_sees(&work, &reference);
        println!("{label}: {msg}\n  reader: {sees:?}");
        std::fs::remove_dir_all(&work).unwrap();
    };
    let k = 100;
    let (_, off_k, _) = recs[k];
    let (_, off_k1, len_k1) = recs[k + 1];
    let order: Vec<usize> = (0..n).filter(|&i| i != k).collect();
    case(
        "delete record 101",
        &|w| rewrite_log(&pristine, w, &order),
        &format!(
            "record #{} at log byte {off_k}: carries sequence number {}",
            k + 1,
            k + 2
        ),
    );
    let mut swapped: Vec<usize> = (0..n).collect();
    swapped.swap(k, k + 1);
    case(
        "swap records 101 and 102",
        &|w| rewrite_log(&pristine, w, &swapped),
        &format!(
            "record #{} at log byte {off_k}: carries sequence number {}",
            k + 1,
            k + 2
        ),
    );
    case(
        "truncate inside record 102",
        &|w| {
            let f = OpenOptions::new().write(true).open(w.join("log")).unwrap();
            f.set_len(off_k1 + len_k1 / 2).unwrap();
        },
        &format!(
            "record #{} at log byte {off_k1}: the log ends inside the record",
            k + 2
        ),
    );
    let (_, off_last, _) = recs[n - 1];
    case(
        "cut the last record at its boundary",
        &|w| {
            let f = OpenOptions::new().write(true).open(w.join("log")).unwrap();
            f.set_len(off_last).unwrap();
        },
        &format!(
            "records were cut from the end of the log after record #{}",
            n - 1
        ),
    );
    // Without the index, the sessions file still pins the history it saw.
    let sessions = read_sessions(&pristine).unwrap();
    let end_seq = sessions[0].end.as_ref().unwrap().seq.0 as usize;
    let (_, cut, _) = recs[end_seq - 1];
    case(
        "cut the log inside the served history, index deleted",
        &|w| {
            std::fs::remove_dir_all(w.join("index")).unwrap();
            let f = OpenOptions::new().write(true).open(w.join("log")).unwrap();
            f.set_len(cut).unwrap();
        },
        &format!(
            "names record #{end_seq}, but the log holds only {}",
            end_seq - 1
        ),
    );
}

/// A reader of a store whose index is of the old format (or damaged at
/// open) reads from the log; a writer refuses a damaged index and rebuilds
/// one of another format.
#[test]
fn damaged_or_old_index_is_never_misread() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = build_store(tmp.path());
    let reference = read_states(&pristine).unwrap();

    // Damaged manifest: readers fall back to the log, the writer refuses.
    let work = tmp.path().join("damaged");
    copy_dir(&pristine, &work);
    flip(&work.join("index/MANIFEST"), 20, 0x01);
    assert_eq!(reader_sees(&work, &reference), Ok("read correctly"));
    match Writer::open(&work) {
        Err(StoreError::Corrupted { what, .. }) => {
            assert!(what.contains("delete"), "{what}")
        }
        Err(e) => panic!("writer: {e}"),
        Ok(_) => panic!("a writer opened over a damaged index"),
    }

    // An index of the previous format: the manifest magic's version byte.
    let work = tmp.path().join("old");
    copy_dir(&pristine, &work);
    let m = work.join("index/MANIFEST");
    let mut b = std::fs::read(&m).unwrap();
    b[7] = b'1';
    std::fs::write(&m, b).unwrap();
    assert_eq!(reader_sees(&work, &reference), Ok("read correctly"));
    // ... but verify reports it: a format digit flipped to an older one
    // is not "another index" to be silently ignored (regression: verify
    // said ok).
    let found = verify_in_process(&work).expect_err("an old-format index verified ok");
    assert!(
        found.contains(&format!(
            "index/MANIFEST: index format 1, not this diskhist's {}",
            index::INDEX_FORMAT as char
        )),
        "{found}"
    );
    let (code, err) = cli_verify(&work);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("index/MANIFEST: index format 1"), "{err}");
    Writer::open(&work).unwrap().close().unwrap();
    verify_in_process(&work).expect("the rebuilt index verifies");
    assert_eq!(reader_sees(&work, &reference), Ok("read correctly"));
}
