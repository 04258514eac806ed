//! The store's command line, end to end with the real binary: init, import,
//! export, log, diff, dump/ingest, verify, info, and how each treats bad input.

use diskhist_test_common::{
    bin, chain_head, diskhist, diskhist_fails, diskhist_output, p, sha256_hex,
};
use std::path::{Path, PathBuf};
use std::process::Command;

struct Fixture {
    _dir: tempfile::TempDir,
    store: PathBuf,
    img: PathBuf,
    root: PathBuf,
}

/// A 1 MiB store with three imported states.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let store = root.join("store");
    let img = root.join("disk.img");
    diskhist(&["init", p(&store), "--size", "1M", "--block-size", "4096"]);
    let mut disk = vec![0u8; 1 << 20];
    for (i, b) in disk[8192..20480].iter_mut().enumerate() {
        *b = (i * 7 % 251) as u8;
    }
    std::fs::write(&img, &disk).unwrap();
    diskhist(&["import", p(&store), p(&img), "--at", "2026-11-23T06:30:15Z"]);
    disk[100_000..100_005].copy_from_slice(b"hello");
    std::fs::write(&img, &disk).unwrap();
    diskhist(&[
        "import",
        p(&store),
        p(&img),
        "--at",
        "2026-11-23T06:30:16.5Z",
    ]);
    disk[8192..12288].fill(0);
    std::fs::write(&img, &disk).unwrap();
    diskhist(&["import", p(&store), p(&img), "--at", "@1795415420"]);
    Fixture {
        _dir: dir,
        store,
        img,
        root,
    }
}

#[test]
fn log_lists_one_line_per_record_and_json() {
    let f = fixture();
    let log = diskhist(&["log", p(&f.store)]);
    let lines: Vec<&str> = log.lines().collect();
    // Each import: its changed extent, then the mark naming the image.
    assert_eq!(lines.len(), 6, "{log}");
    assert!(
        lines[0].contains("2026-11-23T06:30:15.000000000Z")
            && lines[0].contains("8192")
            && lines[0].contains("12288"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains(" mark \"import sha256=")
            && lines[1].contains(&format!(" size=1048576 path={}\"", p(&f.img))),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains("98304") && lines[2].contains("4096") && lines[2].ends_with("write"),
        "{}",
        lines[2]
    );
    let json = diskhist(&[
        "log",
        p(&f.store),
        "--json",
        "--from",
        "2026-11-23T06-30-16Z",
    ]);
    let jl: Vec<&str> = json.lines().collect();
    assert_eq!(jl.len(), 4);
    assert!(jl[0].starts_with("{\"seq\":3,\"time\":\"2026-11-23T06:30:16.500000000Z\",\"time_ns\":1795415416500000000,\"offset\":98304,\"length\":4096,\"kind\":\"write\""), "{}", jl[0]);
}

#[test]
fn log_into_a_closed_pipe_exits_quietly() {
    let exe = p(bin());
    let f = fixture();
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{exe} log {} | head -1 >/dev/null; echo ${{PIPESTATUS:-}}",
            p(&f.store)
        ))
        .output()
        .unwrap();
    assert!(o.status.success());
    // Plenty of records so the pipe closes while diskhist still writes.
    let big = f.root.join("big");
    diskhist(&["init", p(&big), "--size", "64K", "--block-size", "512"]);
    let mut img = vec![0u8; 65536];
    for round in 0..40u8 {
        for b in img.iter_mut() {
            *b = round.wrapping_add(1);
        }
        img[..(round as usize + 1) * 512].fill(0);
        std::fs::write(&f.img, &img).unwrap();
        diskhist(&["import", p(&big), p(&f.img)]);
    }
    let o = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "{exe} log {} | head -1 >/dev/null; exit ${{PIPESTATUS[0]}}",
            p(&big)
        ))
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn export_prints_the_sha256_and_matches_each_state() {
    let f = fixture();
    let out = f.root.join("x.img");
    let line = diskhist(&["export", p(&f.store), "--at", "#6", "-o", p(&out)]);
    let data = std::fs::read(&out).unwrap();
    assert_eq!(data, std::fs::read(&f.img).unwrap());
    let hex = sha256_hex(&data);
    assert_eq!(line.trim(), format!("{hex}  {}", p(&out)));
    // Between the first two imports the disk still had no "hello".
    diskhist(&[
        "export",
        p(&f.store),
        "--at",
        "2026-11-23T15:30:16.4+09:00",
        "-o",
        p(&out),
        "--force",
    ]);
    let mid = std::fs::read(&out).unwrap();
    assert_eq!(&mid[100_000..100_005], &[0u8; 5]);
    assert_ne!(mid[8193], 0);
    // Before the first record: the empty disk.
    diskhist(&[
        "export",
        p(&f.store),
        "--at",
        "@0",
        "-o",
        p(&out),
        "--force",
    ]);
    assert!(std::fs::read(&out).unwrap().iter().all(|&b| b == 0));
}

/// `diff` that finds differences: exit status 1, its standard output.
fn differs(args: &[&str]) -> String {
    let o = diskhist_output(args);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn diff_prints_the_changed_byte_ranges() {
    let f = fixture();
    assert_eq!(
        differs(&["diff", p(&f.store), "#2", "#4", "--bytes"]),
        "100000 5\n"
    );
    // The zeroed block: the bytes of pattern that were not already zero.
    let d = differs(&["diff", p(&f.store), "#4", "latest", "--bytes"]);
    let ranges: Vec<(u64, u64)> = d
        .lines()
        .map(|l| {
            let mut it = l.split(' ').map(|x| x.parse::<u64>().unwrap());
            (it.next().unwrap(), it.next().unwrap())
        })
        .collect();
    assert!(!ranges.is_empty());
    assert!(
        ranges.iter().all(|(o, l)| *o >= 8192 && o + l <= 12288),
        "{d}"
    );
    // The import's mark changes no block.
    assert_eq!(diskhist(&["diff", p(&f.store), "#5", "latest"]), "");
}

#[test]
fn importing_the_same_image_twice_records_only_its_mark() {
    let f = fixture();
    let o = diskhist_output(&["import", p(&f.store), p(&f.img)]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no block differs"));
    let log = diskhist(&["log", p(&f.store)]);
    assert_eq!(log.lines().count(), 7);
    let hex = sha256_hex(&std::fs::read(&f.img).unwrap());
    let last = log.lines().last().unwrap();
    assert!(
        last.contains(&format!(
            "mark \"import sha256={hex} size=1048576 path={}\"",
            p(&f.img)
        )),
        "{last}"
    );
}

#[test]
fn dump_and_ingest_round_trip_is_lossless() {
    let f = fixture();
    let stream = f.root.join("h.stream");
    let o = diskhist_output(&["dump", p(&f.store)]);
    assert!(o.status.success());
    std::fs::write(&stream, &o.stdout).unwrap();
    let copy = f.root.join("copy");
    diskhist(&["init", p(&copy), "--size", "1M"]);
    diskhist(&["ingest", p(&copy), "--format", "stream", p(&stream)]);
    assert_eq!(chain_head(&f.store), chain_head(&copy));
    for at in ["#0", "#1", "#2", "#4", "#6", "2026-11-23T06:30:16Z"] {
        let a = diskhist_output(&["export", p(&f.store), "--at", at]).stdout;
        let b = diskhist_output(&["export", p(&copy), "--at", at]).stdout;
        assert!(
            a == b && a.len() == 1 << 20,
            "state {at} differs after the round trip"
        );
    }
    assert_eq!(
        diskhist(&["log", p(&f.store)]),
        diskhist(&["log", p(&copy)])
    );
    // A truncated stream: the whole records before the cut are kept.
    let bytes = std::fs::read(&stream).unwrap();
    std::fs::write(&stream, &bytes[..bytes.len() - 40]).unwrap();
    let cut = f.root.join("cut");
    diskhist(&["init", p(&cut), "--size", "1M"]);
    diskhist_fails(
        &["ingest", p(&cut), "--format", "stream", p(&stream)],
        1,
        "truncated after 6 whole records",
    );
    assert_eq!(diskhist(&["log", p(&cut)]).lines().count(), 6);
    diskhist(&["verify", p(&cut)]);
}

#[test]
fn bad_input_is_named_and_loses_nothing() {
    let f = fixture();
    diskhist_fails(
        &["export", p(&f.store), "--at", "yesterday"],
        2,
        "accepted forms",
    );
    diskhist_fails(
        &["export", p(&f.store), "--at", "#99", "-o", "/dev/null"],
        1,
        "the history ends at record #6",
    );
    diskhist_fails(&["init", p(&f.store), "--size", "1M"], 1, "not empty");
    // A mistyped parent is reported, not created (regression: init made
    // the whole path).
    let typo = f.root.join("no-such-case-dir").join("store");
    diskhist_fails(
        &["init", p(&typo), "--size", "1M"],
        1,
        "no-such-case-dir does not exist; create it first",
    );
    assert!(!f.root.join("no-such-case-dir").exists());
    diskhist_fails(
        &[
            "init",
            p(&f.root.join("n")),
            "--size",
            "1M",
            "--block-size",
            "3000",
        ],
        1,
        "power of two",
    );
    diskhist_fails(
        &["init", p(&f.root.join("n2")), "--size", "12Q"],
        2,
        "unknown suffix",
    );
    diskhist_fails(
        &[
            "import",
            p(&f.store),
            p(&f.img),
            "--at",
            "2026-11-23T06:30:00Z",
        ],
        1,
        "append-only",
    );
    let small = f.root.join("small.img");
    std::fs::write(&small, vec![1u8; 4096]).unwrap();
    diskhist_fails(
        &["import", p(&f.store), p(&small)],
        1,
        "the image is 4096 bytes but the store's disk is 1048576 bytes",
    );
    diskhist_fails(&["info", p(&f.root)], 1, "not a diskhist store");
    assert_eq!(diskhist(&["log", p(&f.store)]).lines().count(), 6);
    diskhist(&["verify", p(&f.store)]);
}

#[test]
fn a_store_of_another_format_version_is_refused() {
    let f = fixture();
    let h = f.store.join("diskhist.store");
    let mut b = std::fs::read(&h).unwrap();
    b[8] = 9;
    std::fs::write(&h, &b).unwrap();
    diskhist_fails(&["info", p(&f.store)], 1, "store format version 9");
    diskhist_fails(
        &["import", p(&f.store), p(&f.img)],
        1,
        "store format version 9",
    );
}

#[test]
fn verify_names_the_first_damaged_record() {
    let f = fixture();
    let verify = diskhist(&["verify", p(&f.store)]);
    assert!(verify.starts_with("ok: 6 records"), "{verify}");
    let log = f.store.join("log");
    let orig = std::fs::read(&log).unwrap();
    // Record 2 starts where record 1 ends: find it from the record length.
    let len1 =
        diskhist::testing::format::peek_record_len(orig[..8].try_into().unwrap()).unwrap() as usize;
    let mut bad = orig.clone();
    bad[len1 + 20] ^= 0x01;
    std::fs::write(&log, &bad).unwrap();
    diskhist_fails(&["verify", p(&f.store)], 1, "record #2 at log byte");
    std::fs::write(&log, &orig).unwrap();
    diskhist(&["verify", p(&f.store)]);
    // The index is derived: without it, readers scan the log and the next
    // writer rebuilds it.
    std::fs::remove_dir_all(f.store.join("index")).unwrap();
    assert_eq!(diskhist(&["log", p(&f.store)]).lines().count(), 6);
    // info too (regression: it failed reading the missing index/).
    let info = diskhist(&["info", p(&f.store)]);
    assert!(
        info.contains("records:        6") && info.contains("+ 0 (index)"),
        "{info}"
    );
    diskhist(&["import", p(&f.store), p(&f.img)]);
    assert!(diskhist(&["verify", p(&f.store)]).starts_with("ok: 7 records"));
    // Damage in the middle of what a writer must scan is never cut away.
    std::fs::remove_dir_all(f.store.join("index")).unwrap();
    std::fs::write(&log, &bad).unwrap();
    diskhist_fails(&["import", p(&f.store), p(&f.img)], 1, "refusing to cut");
    assert_eq!(std::fs::read(&log).unwrap(), bad);
    // Readers still read what precedes the damage.
    assert_eq!(diskhist(&["log", p(&f.store)]).lines().count(), 1);
}

#[test]
fn a_torn_tail_is_reported_then_cut_by_the_next_writer() {
    let f = fixture();
    let log = f.store.join("log");
    let orig = std::fs::read(&log).unwrap();
    // A crash in the middle of appending record 7: its first 60 bytes.
    let mut torn = orig.clone();
    torn.extend_from_slice(&orig[..60]);
    std::fs::write(&log, &torn).unwrap();
    diskhist_fails(&["verify", p(&f.store)], 1, "record #7");
    // Readers see the six whole records.
    assert_eq!(diskhist(&["log", p(&f.store)]).lines().count(), 6);
    let o = diskhist_output(&["import", p(&f.store), p(&f.img)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cut a torn tail"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(std::fs::read(&log).unwrap()[..orig.len()], orig[..]);
    let v = diskhist(&["verify", p(&f.store)]);
    assert!(v.starts_with("ok: 7 records"), "{v}");
}

#[test]
fn info_reports_space_and_chain() {
    let f = fixture();
    let info = diskhist(&["info", p(&f.store)]);
    for needle in [
        "disk size:      1048576 bytes",
        "block size:     4096 bytes",
        "format:         2\n",
        "records:        6",
        "first time:     2026-11-23T06:30:15Z",
        "last time:      2026-11-23T06:30:20Z",
        "bytes written:  20480",
        "chain head:",
    ] {
        assert!(info.contains(needle), "{needle:?} not in:\n{info}");
    }
}

#[test]
fn store_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let f = fixture();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&f.store), 0o700);
    assert_eq!(mode(&f.store.join("index")), 0o700);
    for e in std::fs::read_dir(&f.store)
        .unwrap()
        .chain(std::fs::read_dir(f.store.join("index")).unwrap())
    {
        let p = e.unwrap().path();
        if p.is_file() {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
    }
}
