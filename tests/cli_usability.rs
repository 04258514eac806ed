//! The command line says what was meant (issue 9, point 6), end to end
//! with the real binary: times outside the history get one line saying
//! which state they give; `diff` prints merged block ranges and answers
//! with its exit status; `info --json` and `verify --json`; `mount`
//! refuses a non-empty mountpoint and dates `seq/0` sensibly; a store open
//! to other users is warned about once; every argument is described in
//! `--help`, and the docs quote `#SEQ` so examples paste into a shell.

use diskhist_test_common::{
    diskhist, diskhist_ok, diskhist_output, mount_fails, p, stderr_of, stdout_of, Mounted,
};
use serde_json::Value;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

struct Fixture {
    dir: tempfile::TempDir,
    store: PathBuf,
    /// The disk after each record: disks[n] is the state after record n.
    disks: Vec<Vec<u8>>,
}

const T1: &str = "2026-11-23T06:30:15Z";
const T2: &str = "2026-11-23T06:30:16.5Z";
const T3: &str = "2026-11-23T06:30:20Z";

/// A 1 MiB store with three imported states at T1, T2, T3.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let img = dir.path().join("disk.img");
    diskhist_ok(&["init", p(&store), "--size", "1M", "--block-size", "4096"]);
    let mut disks = vec![vec![0u8; 1 << 20]];
    let mut disk = disks[0].clone();
    for (i, b) in disk[8192..20480].iter_mut().enumerate() {
        *b = (i * 7 % 251) as u8;
    }
    disks.push(disk.clone());
    disk[100_000..100_005].copy_from_slice(b"hello");
    disks.push(disk.clone());
    disk[8192..12288].fill(0);
    disks.push(disk);
    for (state, at) in disks[1..].iter().zip([T1, T2, T3]) {
        std::fs::write(&img, state).unwrap();
        diskhist_ok(&["import", p(&store), p(&img), "--at", at]);
    }
    std::fs::remove_file(&img).unwrap();
    Fixture { dir, store, disks }
}

#[test]
fn a_time_outside_the_history_says_which_state_it_gives() {
    let f = fixture();
    let st = p(&f.store);
    let before = "diskhist: 2020-01-01T00:00:00Z is before the first record: the empty disk\n";
    let after = "diskhist: 2030-01-01T00:00:00Z is after the last record: the state at #6 \
                 (2026-11-23T06:30:20Z)\n";
    let export = |at: &str| {
        let o = diskhist_output(&["export", st, "--at", at]);
        assert!(o.status.success());
        (o.stdout, String::from_utf8(o.stderr).unwrap())
    };
    let sha_line = |err: &str| err.lines().last().unwrap().to_string();
    let (img, err) = export("2020-01-01T00:00:00Z");
    assert_eq!(img, f.disks[0]);
    assert_eq!(err, format!("{before}{}\n", sha_line(&err)));
    let (img, err) = export("2030-01-01T00:00:00Z");
    assert_eq!(img, f.disks[3]);
    assert_eq!(err, format!("{after}{}\n", sha_line(&err)));
    // Inside the history, and the other forms: nothing extra.
    for at in ["2026-11-23T06:30:17Z", T1, T3, "#0", "#6", "latest"] {
        let (_, err) = export(at);
        assert_eq!(err.lines().count(), 1, "--at {at}: {err}");
    }

    let o = diskhist_output(&["diff", st, "2020-01-01T00:00:00Z", "2030-01-01T00:00:00Z"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(o.stderr).unwrap(),
        format!("{before}{after}")
    );

    let o = diskhist_ok(&["log", st, "--from", "2020-01-01T00:00:00Z"]);
    let (out, err) = (stdout_of(&o), stderr_of(&o));
    // Three imports: an extent and a mark each.
    assert_eq!(out.lines().count(), 6);
    assert_eq!(
        err,
        "diskhist: --from 2020-01-01T00:00:00Z is before the first record: from #1 \
         (2026-11-23T06:30:15Z)\n"
    );
    let o = diskhist_ok(&["log", st, "--to", "2030-01-01T00:00:00Z"]);
    let (out, err) = (stdout_of(&o), stderr_of(&o));
    // Three imports: an extent and a mark each.
    assert_eq!(out.lines().count(), 6);
    assert_eq!(
        err,
        "diskhist: --to 2030-01-01T00:00:00Z is after the last record: up to #6 \
         (2026-11-23T06:30:20Z)\n"
    );
    let o = diskhist_ok(&["log", st, "--from", "2030-01-01T00:00:00Z"]);
    let (out, err) = (stdout_of(&o), stderr_of(&o));
    assert_eq!(out, "");
    assert_eq!(
        err,
        "diskhist: --from 2030-01-01T00:00:00Z is after the last record (#6, \
         2026-11-23T06:30:20Z): no records\n"
    );
    let o = diskhist_ok(&["log", st, "--to", "2020-01-01T00:00:00Z"]);
    let (out, err) = (stdout_of(&o), stderr_of(&o));
    assert_eq!(out, "");
    assert_eq!(
        err,
        "diskhist: --to 2020-01-01T00:00:00Z is before the first record: no records\n"
    );
    let err = stderr_of(&diskhist_ok(&["log", st, "--from", T2, "--to", T3]));
    assert_eq!(err, "");
    let err = stderr_of(&diskhist_ok(&[
        "dump",
        st,
        "--from",
        "2020-01-01T00:00:00Z",
        "-o",
        "/dev/null",
    ]));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("before the first record: from #1"), "{err}");
}

/// `diff` output and status: (stdout, exit code).
fn diff(store: &Path, args: &[&str]) -> (String, Option<i32>) {
    let mut all = vec!["diff", p(store)];
    all.extend_from_slice(args);
    let o = diskhist_output(&all);
    (String::from_utf8(o.stdout).unwrap(), o.status.code())
}

/// Ranges (offset, length) where `a` and `b` differ, at byte precision.
fn byte_ranges(a: &[u8], b: &[u8]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for i in (0..a.len()).filter(|&i| a[i] != b[i]) {
        match out.last_mut() {
            Some((o, l)) if *o + *l == i => *l += 1,
            _ => out.push((i, 1)),
        }
    }
    out
}

#[test]
fn diff_prints_block_ranges_and_answers_with_its_status() {
    let f = fixture();
    // Default: the differing blocks, merged into ranges, in bytes.
    // The states after the imports: #2, #4 and #6 (extent, then mark).
    assert_eq!(
        diff(&f.store, &["#2", "#4"]),
        ("98304 4096\n".into(), Some(1))
    );
    assert_eq!(
        diff(&f.store, &["#0", "latest"]),
        ("12288 8192\n98304 4096\n".into(), Some(1))
    );
    // The order of the two states does not matter.
    assert_eq!(
        diff(&f.store, &["latest", "#0"]),
        ("12288 8192\n98304 4096\n".into(), Some(1))
    );
    // --bytes: byte precision, as before.
    assert_eq!(
        diff(&f.store, &["#2", "#4", "--bytes"]),
        ("100000 5\n".into(), Some(1))
    );
    let want: String = byte_ranges(&f.disks[2], &f.disks[3])
        .iter()
        .map(|(o, l)| format!("{o} {l}\n"))
        .collect();
    assert_eq!(diff(&f.store, &["#4", "#6", "--bytes"]), (want, Some(1)));
    // --summary: counts and totals at both precisions.
    let bytes = byte_ranges(&f.disks[0], &f.disks[3]);
    let total: usize = bytes.iter().map(|(_, l)| l).sum();
    assert_eq!(
        diff(&f.store, &["#0", "#6", "--summary"]),
        (
            format!(
                "blocks: 3 in 2 ranges (12288 bytes)\nbytes:  {total} in {} ranges\n",
                bytes.len()
            ),
            Some(1)
        )
    );
    // Equal states: nothing, status 0.
    assert_eq!(diff(&f.store, &["#6", "latest"]), (String::new(), Some(0)));
    // The mark changes no block.
    assert_eq!(diff(&f.store, &["#5", "#6"]), (String::new(), Some(0)));
    assert_eq!(
        diff(&f.store, &["#6", "latest", "--summary"]),
        (
            "blocks: 0 in 0 ranges (0 bytes)\nbytes:  0 in 0 ranges\n".into(),
            Some(0)
        )
    );
    // Trouble is 2, never to be taken for "they differ".
    for bad in [
        vec!["yesterday", "#1"],
        vec!["#1", "#99"],
        vec!["#1", "#2", "--bytes", "--summary"],
    ] {
        let (out, code) = diff(&f.store, &bad);
        assert_eq!((out.as_str(), code), ("", Some(2)), "{bad:?}");
    }
    let (_, code) = diff(&f.dir.path().join("nothing"), &["#0", "#1"]);
    assert_eq!(code, Some(2));
}

/// Regression: a change of every other byte over 4 MiB printed two million
/// lines; by default it is one range of blocks.
#[test]
fn a_large_scattered_change_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let img = dir.path().join("disk.img");
    diskhist_ok(&["init", p(&store), "--size", "8M"]);
    let mut disk = vec![0u8; 8 << 20];
    for b in disk[(1 << 20)..(5 << 20)].iter_mut().step_by(2) {
        *b = 0x5a;
    }
    std::fs::write(&img, &disk).unwrap();
    diskhist_ok(&["import", p(&store), p(&img), "--at", T1]);
    let (out, code) = diff(&store, &["#0", "#1"]);
    assert_eq!((out.as_str(), code), ("1048576 4194304\n", Some(1)));
    let (out, _) = diff(&store, &["#0", "#1", "--summary"]);
    assert_eq!(
        out,
        "blocks: 1024 in 1 ranges (4194304 bytes)\nbytes:  2097152 in 2097152 ranges\n"
    );
}

fn json(text: &str) -> Value {
    assert_eq!(text.lines().count(), 1, "one line of JSON: {text}");
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn info_json_says_what_the_text_says() {
    let f = fixture();
    let text = diskhist(&["info", p(&f.store)]);
    let o = diskhist_ok(&["info", p(&f.store), "--json"]);
    let (out, err) = (stdout_of(&o), stderr_of(&o));
    assert_eq!(err, "");
    let v = json(&out);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("{name} in {text}"))
            .trim()
            .to_string()
    };
    assert_eq!(v["store"], p(&f.store));
    assert_eq!(v["size_bytes"], 1 << 20);
    assert_eq!(v["block_size"], 4096);
    assert_eq!(v["format_version"], 2);
    assert_eq!(v["records"], 6);
    assert_eq!(v["first_time"], "2026-11-23T06:30:15Z");
    assert_eq!(v["first_time_ns"], 1_795_415_415_000_000_000i64);
    assert_eq!(v["last_time"], "2026-11-23T06:30:20Z");
    assert_eq!(v["created"], field("created:").as_str());
    assert_eq!(v["chain_head"], field("chain head:").as_str());
    assert_eq!(v["bytes_written"].to_string(), field("bytes written:"));
    assert_eq!(v["sessions"], serde_json::json!([]));
    assert_eq!(v["log_tail_problem"], Value::Null);
    assert!(v["log_bytes"].as_u64().unwrap() > 0);
}

#[test]
fn verify_json_carries_the_findings_and_the_status() {
    let f = fixture();
    let o = diskhist_ok(&["verify", p(&f.store), "--json"]);
    let (out, err) = (stdout_of(&o), stderr_of(&o));
    assert_eq!(err, "");
    let v = json(&out);
    assert_eq!(v["ok"], true);
    assert_eq!(v["records"], 6);
    assert_eq!(v["problem"], Value::Null);
    assert_eq!(v["index_problems"], serde_json::json!([]));
    let text = diskhist(&["info", p(&f.store)]);
    assert!(text.contains(v["chain_head"].as_str().unwrap()));

    // A flipped byte in record 2: exit 1, the finding in the object and
    // nothing on standard error.
    let log = f.store.join("log");
    let mut bytes = std::fs::read(&log).unwrap();
    let len1 = diskhist::testing::format::peek_record_len(bytes[..8].try_into().unwrap()).unwrap()
        as usize;
    bytes[len1 + 20] ^= 1;
    std::fs::write(&log, &bytes).unwrap();
    let o = diskhist_output(&["verify", p(&f.store), "--json"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&o.stderr), "");
    let v = json(&String::from_utf8(o.stdout).unwrap());
    assert_eq!(v["ok"], false);
    assert_eq!(v["records"], 1);
    assert_eq!(v["problem"]["seq"], 2);
    assert_eq!(v["problem"]["log_offset"], len1);
    assert!(v["problem"]["what"].as_str().unwrap().len() > 3);
}

#[test]
fn mount_refuses_a_non_empty_mountpoint_unless_told() {
    let f = fixture();
    let mnt = f.dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    std::fs::write(mnt.join("case-notes.txt"), b"mine").unwrap();
    let (code, err) = mount_fails(&f.store, &mnt);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("not empty") && err.contains("--nonempty"),
        "{err}"
    );
    assert_eq!(std::fs::read(mnt.join("case-notes.txt")).unwrap(), b"mine");
    {
        let m = Mounted::start(&f.store, &mnt, &["--nonempty"]);
        assert_eq!(
            std::fs::read(m.path("latest/disk.img")).unwrap(),
            f.disks[3]
        );
        assert!(!m.path("case-notes.txt").exists());
    }
    assert_eq!(std::fs::read(mnt.join("case-notes.txt")).unwrap(), b"mine");
}

fn mtime_ns(p: &Path) -> i128 {
    let m = std::fs::metadata(p).unwrap();
    i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec())
}

/// seq/0 carries the store's creation time, unless the first record is
/// older (an import --at of an old image): then the first record's time,
/// so the empty disk never looks newer than what followed it. (It had the
/// time of the mount.)
#[test]
fn seq_0_is_dated_by_creation_or_the_first_record_whichever_is_older() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    std::fs::write(&img, vec![7u8; 1 << 20]).unwrap();
    let old = dir.path().join("old");
    diskhist_ok(&["init", p(&old), "--size", "1M"]);
    diskhist_ok(&["import", p(&old), p(&img), "--at", "@1000000000"]);
    let new = dir.path().join("new");
    diskhist_ok(&["init", p(&new), "--size", "1M"]);
    std::thread::sleep(Duration::from_millis(50));
    diskhist_ok(&["import", p(&new), p(&img)]);
    let created = |store: &Path| {
        let out = diskhist(&["info", p(store), "--json"]);
        i128::from(json(&out)["created_ns"].as_i64().unwrap())
    };
    let m = Mounted::start(&old, &dir.path().join("m-old"), &[]);
    assert_eq!(mtime_ns(&m.path("seq/0")), 1_000_000_000 * 1_000_000_000);
    assert_eq!(mtime_ns(&m.path("seq/1")), 1_000_000_000 * 1_000_000_000);
    drop(m);
    let m = Mounted::start(&new, &dir.path().join("m-new"), &[]);
    let seq0 = mtime_ns(&m.path("seq/0"));
    assert_eq!(seq0, created(&new));
    assert!(seq0 < mtime_ns(&m.path("seq/1")));
}

/// Standard error lines that warn about permissions.
fn warnings(err: &str) -> Vec<&str> {
    err.lines().filter(|l| l.contains("warning")).collect()
}

#[test]
fn a_store_open_to_others_is_warned_about_once() {
    let f = fixture();
    let st = p(&f.store);
    let err = stderr_of(&diskhist_ok(&["log", st]));
    assert_eq!(err, "");
    let chmod = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    chmod(&f.store, 0o755);
    chmod(&f.store.join("log"), 0o644);
    chmod(&f.store.join("index"), 0o750);
    let img = f.dir.path().join("same.img");
    std::fs::write(&img, &f.disks[3]).unwrap();
    for args in [
        vec!["log", st],
        vec!["info", st],
        vec!["verify", st],
        vec!["export", st, "--at", "#1", "-o", "/dev/null"],
        vec!["diff", st, "#1", "#1"],
        vec!["import", st, p(&img)],
    ] {
        let o = diskhist_output(&args);
        assert!(o.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        let w = warnings(&err);
        assert_eq!(w.len(), 1, "{args:?}: {err}");
        assert!(
            w[0].contains(&format!("{st} is open to group or others (mode 0755)"))
                && w[0].contains("2 more paths")
                && w[0].ends_with(&format!("chmod -R go-rwx {st}")),
            "{args:?}: {}",
            w[0]
        );
    }
    let o = Command::new("chmod")
        .args(["-R", "go-rwx", st])
        .status()
        .unwrap();
    assert!(o.success());
    let err = stderr_of(&diskhist_ok(&["info", st]));
    assert_eq!(err, "");
}

/// The arguments and options of `diskhist SUB --help` (or `-h`) that have
/// no description.
fn undescribed(help: &str) -> Vec<String> {
    let lines: Vec<&str> = help.lines().collect();
    let mut missing = Vec::new();
    let mut in_list = false;
    for (i, line) in lines.iter().enumerate() {
        if *line == "Arguments:" || *line == "Options:" {
            in_list = true;
            continue;
        }
        if !line.starts_with(' ') {
            in_list = false;
        }
        let item = line
            .strip_prefix("  ")
            .filter(|rest| rest.starts_with('-') || rest.starts_with('<') || rest.starts_with('['));
        let Some(item) = item.filter(|_| in_list) else {
            continue;
        };
        let same_line = item
            .split_once("  ")
            .is_some_and(|(_, d)| !d.trim().is_empty());
        let next_line = lines
            .get(i + 1)
            .is_some_and(|n| n.starts_with("          ") && !n.trim().is_empty());
        if !same_line && !next_line {
            missing.push(item.trim().to_string());
        }
    }
    missing
}

#[test]
fn every_argument_and_option_has_a_description() {
    let top = diskhist(&["--help"]);
    let commands: Vec<String> = top
        .lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .filter(|c| c != "help")
        .collect();
    assert!(commands.len() >= 11, "{commands:?}");
    for c in &commands {
        for flag in ["-h", "--help"] {
            let help = diskhist(&[c, flag]);
            // keygen, cosign and audit work without a store (an auditor has none).
            if !["keygen", "cosign", "audit"].contains(&c.as_str()) {
                assert!(help.contains("<STORE>"), "{c} {flag}:\n{help}");
            }
            assert_eq!(
                undescribed(&help),
                Vec::<String>::new(),
                "diskhist {c} {flag}:\n{help}"
            );
        }
    }
}

fn doc(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(name)).unwrap()
}

/// A `#SEQ` in a shell command starts a comment unless quoted.
#[test]
fn the_docs_quote_every_seq_in_a_command_and_name_every_size_suffix() {
    for (name, quotes) in [
        ("README.md", &["'", "\""][..]),
        ("man/diskhist.1", &["\\(aq", "'", "\""][..]),
    ] {
        let text = doc(name);
        for line in text.lines().filter(|l| l.contains("diskhist ")) {
            for (i, _) in line.match_indices('#') {
                if !line[i + 1..].starts_with(|c: char| c.is_ascii_digit()) {
                    continue;
                }
                assert!(
                    quotes.iter().any(|q| line[..i].ends_with(q)),
                    "{name}: unquoted #SEQ in: {line}"
                );
            }
        }
    }
    let readme = doc("README.md");
    assert!(
        readme.contains("`K`, `M`, `G`, `T` or `P`"),
        "README: size suffixes"
    );
    let man = doc("man/diskhist.1");
    assert!(man.contains(".BR T ,\n.B P\n"), "man: size suffixes");
    let help = diskhist(&["init", "--help"]);
    assert!(help.contains("K, M, G, T or P suffix"), "{help}");
}
