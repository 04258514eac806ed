//! When did it change: `history`, `timeline` (read by the real `mactime`)
//! and `timeline --check`, on ext4 written by the kernel and NTFS written
//! by ntfs-3g, recorded by importing the live image after each step (the
//! recorded times are the real times of the imports). Timestamps are
//! forged for real: `touch -d`, an edited log's mtime restored, debugfs
//! setting ctime and crtime.

use diskhist_test_common::{
    diskhist, diskhist_output, ext4_image, fails, init_store, log_records, p, run, stderr_of,
    stdout_of, KernelMount,
};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn import_now(store: &Path, img: &Path) -> u64 {
    diskhist(&["import", p(store), p(img)]);
    log_records(store).last().map_or(0, |r| r.seq)
}

fn sync_fs(dir: &Path) {
    run(Command::new("sync").arg("-f").arg(dir));
}

fn json_str(line: &str, key: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v.get(key).map(|x| match x {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

fn lines_of(n: std::ops::RangeInclusive<u32>) -> String {
    n.map(|i| format!("line {i}: something happened at step {i}\n"))
        .collect()
}

/// The ext4 history every test here reads.
struct Ext4Case {
    _dir: tempfile::TempDir,
    store: PathBuf,
    /// State after each append of the log (40 lines each).
    appends: Vec<u64>,
    /// The state holding the tampered log (twenty lines cut from its
    /// middle, mtime restored).
    tamper: u64,
    /// The state holding /etc/app.conf backdated with touch -d.
    backdate: u64,
    /// The state after the last append after the tamper.
    after: u64,
}

fn ext4_case() -> Ext4Case {
    let dir = tempfile::tempdir().unwrap();
    let store = init_store(dir.path(), "64M");
    let img = dir.path().join("fs.img");
    ext4_image(&img, 64, &[]);
    let m = KernelMount::new(&["-o", "loop"], &img, &dir.path().join("m"));
    let root = m.dir.clone();
    std::fs::create_dir_all(root.join("var/log")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("home/u")).unwrap();
    std::fs::write(root.join("etc/app.conf"), "mode=strict\n").unwrap();
    let log = root.join("var/log/app.log");
    let mut appends = Vec::new();
    for step in 0..5u32 {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        std::io::Write::write_all(&mut f, lines_of(step * 40 + 1..=step * 40 + 40).as_bytes())
            .unwrap();
        drop(f);
        // Ordinary work beside it: a note saved the way editors save
        // (a new file renamed over the old), a scratch file come and gone.
        let note = root.join("home/u/notes.txt");
        std::fs::write(
            root.join("home/u/.notes.txt.swp"),
            format!("draft {step}\n"),
        )
        .unwrap();
        std::fs::rename(root.join("home/u/.notes.txt.swp"), &note).unwrap();
        std::fs::write(root.join(format!("home/u/scratch{step}")), "tmp\n").unwrap();
        if step > 0 {
            std::fs::remove_file(root.join(format!("home/u/scratch{}", step - 1))).unwrap();
        }
        match step {
            1 => std::fs::write(root.join("home/u/todo.txt"), "buy milk\n").unwrap(),
            3 => {
                std::fs::rename(root.join("home/u/todo.txt"), root.join("home/u/done.txt")).unwrap()
            }
            _ => {}
        }
        sync_fs(&root);
        appends.push(import_now(&store, &img));
        std::thread::sleep(Duration::from_millis(300));
    }
    // The tamper: lines 121..=140 cut, in place (same inode), and the old
    // mtime put back.
    let old_mtime = std::fs::metadata(&log).unwrap().modified().unwrap();
    let old = old_mtime.duration_since(UNIX_EPOCH).unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let kept: String = text
        .lines()
        .enumerate()
        .filter(|(i, _)| !(120..140).contains(i))
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    std::fs::write(&log, kept).unwrap();
    run(Command::new("touch")
        .arg("-m")
        .arg("-d")
        .arg(format!("@{}.{:09}", old.as_secs(), old.subsec_nanos()))
        .arg(&log));
    sync_fs(&root);
    let tamper = import_now(&store, &img);
    std::thread::sleep(Duration::from_millis(300));
    // The backdating.
    run(Command::new("touch")
        .args(["-d", "2019-03-01 00:00:00 UTC"])
        .arg(root.join("etc/app.conf")));
    sync_fs(&root);
    let backdate = import_now(&store, &img);
    std::thread::sleep(Duration::from_millis(300));
    // The log goes on.
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    std::io::Write::write_all(&mut f, lines_of(201..=210).as_bytes()).unwrap();
    drop(f);
    sync_fs(&root);
    let after = import_now(&store, &img);
    drop(m);
    Ext4Case {
        _dir: dir,
        store,
        appends,
        tamper,
        backdate,
        after,
    }
}

#[test]
fn ext4_history_check_timeline_and_errors() {
    let c = ext4_case();
    let s = p(&c.store);

    // history: created, four appends, the tamper, one more append.
    let out = diskhist_output(&["history", s, "/var/log/app.log", "--json", "--stats"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let text = stdout_of(&out);
    let changes: Vec<&str> = text.lines().collect();
    let seqs: Vec<u64> = changes
        .iter()
        .map(|l| json_str(l, "seq").unwrap().parse().unwrap())
        .collect();
    let mut expect = c.appends.clone();
    expect.push(c.tamper);
    expect.push(c.after);
    assert_eq!(seqs, expect, "{text}");
    assert_eq!(json_str(changes[0], "change").unwrap(), "created");
    for l in &changes[1..] {
        assert_eq!(json_str(l, "change").unwrap(), "modified", "{l}");
        assert_eq!(json_str(l, "content_changed").unwrap(), "true", "{l}");
    }
    // The tamper's version: the content and size of the cut log, the mtime
    // the same as before.
    let t = changes[5];
    let cut_len: usize = lines_of(1..=200)
        .lines()
        .enumerate()
        .filter(|(i, _)| !(120..140).contains(i))
        .map(|(_, l)| l.len() + 1)
        .sum();
    assert_eq!(json_str(t, "size").unwrap(), cut_len.to_string(), "{t}");
    assert!(
        !json_str(t, "changed").unwrap().contains("ext4.mtime"),
        "{t}"
    );
    assert!(
        json_str(t, "changed").unwrap().contains("ext4.ctime"),
        "{t}"
    );
    // The jumps: a handful of states examined, not one per record.
    let stats = stderr_of(&out);
    let examined: u64 = stats
        .split(" states examined")
        .next()
        .and_then(|x| x.rsplit(' ').next())
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("{stats}"));
    let records = log_records(&c.store).len() as u64;
    assert!(
        examined <= 12 && examined < records / 3,
        "{examined} of {records}: {stats}"
    );

    // Text form: one line per change, each with record, time and the fs's times.
    let text = diskhist(&["history", s, "var/log/app.log"]);
    assert_eq!(text.lines().count(), 7, "{text}");
    assert!(
        text.lines()
            .next()
            .unwrap()
            .starts_with(&format!("#{}  ", c.appends[0])),
        "{text}"
    );
    assert!(text.contains("ext4.crtime="), "{text}");

    // --from/--to: only the changes between, the first as "present".
    let from = format!("#{}", c.appends[2]);
    let to = format!("#{}", c.tamper);
    let text = diskhist(&[
        "history",
        s,
        "/var/log/app.log",
        "--from",
        &from,
        "--to",
        &to,
    ]);
    let got: Vec<&str> = text
        .lines()
        .map(|l| l.split("  ").next().unwrap())
        .collect();
    assert_eq!(
        got,
        [c.appends[2], c.appends[3], c.appends[4], c.tamper].map(|x| format!("#{x}")),
        "{text}"
    );
    assert!(text.lines().next().unwrap().contains("present"), "{text}");

    // The editor-saved note: replaced (a new inode) at each save.
    let text = diskhist(&["history", s, "/home/u/notes.txt"]);
    assert_eq!(
        text.lines()
            .filter(|l| l.contains("replaced by another file"))
            .count(),
        4,
        "{text}"
    );
    // The scratch file: created, then deleted.
    // (scratch0's inode number is taken by todo.txt when scratch0 goes:
    // still a deletion, not a rename.)
    let text = diskhist(&["history", s, "/home/u/scratch0"]);
    let l: Vec<&str> = text.lines().collect();
    assert!(l.len() == 2 && l[1].contains("deleted"), "{text}");
    let text = diskhist(&["history", s, "/home/u/scratch1"]);
    let l: Vec<&str> = text.lines().collect();
    assert!(
        l.len() == 2 && l[0].contains("created") && l[1].contains("deleted"),
        "{text}"
    );

    // A rename: the old name's history ends "renamed away", the timeline
    // follows the node to its new name.
    let text = diskhist(&["history", s, "/home/u/todo.txt"]);
    let l: Vec<&str> = text.lines().collect();
    assert!(l.len() == 2 && l[0].contains("created"), "{text}");
    assert!(l[1].starts_with(&format!("#{}  ", c.appends[3])), "{text}");
    assert!(
        l[1].contains("renamed away (inode ") && l[1].contains("still has 1 link)"),
        "{text}"
    );
    let jl = diskhist(&["timeline", s, "--format", "jsonl"]);
    let moved: Vec<&str> = jl
        .lines()
        .filter(|l| json_str(l, "seq").as_deref() == Some(&c.appends[3].to_string()))
        .filter(|l| json_str(l, "path").unwrap().starts_with("/home/u/"))
        .collect();
    assert!(
        moved
            .iter()
            .any(|l| json_str(l, "path").unwrap() == "/home/u/done.txt"
                && json_str(l, "change").unwrap() == "renamed-from"),
        "{moved:?}"
    );
    assert!(
        moved
            .iter()
            .any(|l| json_str(l, "path").unwrap() == "/home/u/todo.txt"
                && json_str(l, "change").unwrap() == "renamed-away"
                && json_str(l, "renamed_to").unwrap() == "/home/u/done.txt"),
        "{moved:?}"
    );

    // timeline --check: the tamper and the backdating, nothing else.
    let out = diskhist_output(&["timeline", s, "--check", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let findings: Vec<(String, String, u64)> = stdout_of(&out)
        .lines()
        .map(|l| {
            for k in ["path", "finding", "seq", "time", "claimed", "detail"] {
                assert!(json_str(l, k).is_some(), "{k} missing: {l}");
            }
            (
                json_str(l, "path").unwrap(),
                json_str(l, "finding").unwrap(),
                json_str(l, "seq").unwrap().parse().unwrap(),
            )
        })
        .collect();
    let kept: Vec<_> = findings
        .iter()
        .filter(|f| f.1 == "content-changed-time-kept")
        .collect();
    assert_eq!(kept.len(), 1, "{findings:?}");
    assert_eq!(kept[0].0, "/var/log/app.log");
    // At a record of the tamper's import (the one that wrote the content).
    assert!(
        kept[0].2 > c.appends[4] && kept[0].2 <= c.tamper,
        "{findings:?}"
    );
    let back: Vec<_> = findings
        .iter()
        .filter(|f| f.1 == "claimed-before-written")
        .collect();
    assert_eq!(back.len(), 1, "{findings:?}");
    assert_eq!(
        (back[0].0.as_str(), back[0].2),
        ("/etc/app.conf", c.backdate)
    );
    for f in &findings {
        let planted = (f.0 == "/var/log/app.log" && f.1 == "content-changed-time-kept")
            || (f.0 == "/etc/app.conf" && f.2 == c.backdate);
        assert!(
            planted,
            "a finding nobody planted: {f:?}\nall: {findings:?}"
        );
    }
    assert!(findings
        .iter()
        .any(|f| f.0 == "/etc/app.conf" && f.1 == "time-went-backwards"));

    // The text form names the rule, the path, the record and the clock.
    let out = diskhist_output(&["timeline", s, "--check"]);
    let text = stdout_of(&out);
    assert!(
        text.contains("content-changed-time-kept: /var/log/app.log  record "),
        "{text}"
    );
    assert!(text.contains("[clock: no serve session"), "{text}");
    // A tolerance wider than the backdating hides the before-written
    // finding but not the content one.
    let text = stdout_of(&diskhist_output(&[
        "timeline",
        s,
        "--check",
        "--tolerance",
        "3000d",
    ]));
    assert!(!text.contains("claimed-before-written"), "{text}");
    assert!(text.contains("content-changed-time-kept"), "{text}");

    // Bad input: unknown path, bad time, bad --part, bad tolerance.
    fails(
        Command::new(diskhist_test_common::bin()).args(["history", s, "/no/such"]),
        1,
        "no such file or directory: /no/such",
    );
    fails(
        Command::new(diskhist_test_common::bin()).args([
            "history",
            s,
            "/etc",
            "--from",
            "yesterday",
        ]),
        2,
        "yesterday",
    );
    fails(
        Command::new(diskhist_test_common::bin()).args(["history", s, "/etc", "--part", "3"]),
        2,
        "no partition 3",
    );
    fails(
        Command::new(diskhist_test_common::bin()).args([
            "timeline",
            s,
            "--check",
            "--tolerance",
            "2 weeks",
        ]),
        2,
        "bad duration",
    );
    fails(
        Command::new(diskhist_test_common::bin())
            .args(["history", s, "/etc", "--from", "latest", "--to", "#1"]),
        2,
        "nothing between them",
    );
}

/// Parse `mactime -b FILE -d -y` output into (date, macb, name).
fn mactime(body: &Path) -> Vec<(String, String, String)> {
    let out = run(Command::new("mactime")
        .args(["-b"])
        .arg(body)
        .args(["-d", "-y", "-z", "UTC"]));
    let mut last_date = String::new();
    out.lines()
        .skip(1)
        .map(|l| {
            let cols: Vec<&str> = l.splitn(8, ',').collect();
            if !cols[0].is_empty() {
                last_date = cols[0].to_string();
            }
            (
                last_date.clone(),
                cols[2].to_string(),
                cols[7].trim_matches('"').to_string(),
            )
        })
        .collect()
}

#[test]
fn ext4_timeline_reads_in_mactime_with_recorded_times_interleaved() {
    let c = ext4_case();
    let s = p(&c.store);
    let body = c._dir.path().join("t.body");
    diskhist(&["timeline", s, "-o", p(&body)]);
    // Never over an existing file without --force.
    fails(
        Command::new(diskhist_test_common::bin()).args(["timeline", s, "-o", p(&body)]),
        1,
        "exists",
    );
    let rows = mactime(&body);
    // The backdated claim sorts first, in 2019; the recorded write of the
    // backdated version sits with the other recorded times of today.
    assert!(rows[0].0.starts_with("2019-03-01T00:00:00"), "{rows:?}");
    assert_eq!(rows[0].2, "/etc/app.conf", "{rows:?}");
    let rec = format!(
        "/etc/app.conf (diskhist: version recorded, record {})",
        c.backdate
    );
    let r = rows
        .iter()
        .find(|r| r.2 == rec)
        .unwrap_or_else(|| panic!("{rec} in {rows:?}"));
    assert_eq!(r.1, "macb");
    let year = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 31_557_600
        + 1970;
    assert!(r.0.starts_with(&year.to_string()), "{r:?}");
    // Every version of the log is there with its content write.
    for seq in c.appends.iter().skip(1) {
        assert!(
            rows.iter()
                .any(|r| r.2
                    == format!("/var/log/app.log (diskhist: version recorded, record {seq})")),
            "{seq}"
        );
    }
    assert!(rows.iter().any(|r| r
        .2
        .starts_with("/var/log/app.log (diskhist: content written, record ")));
    // Sorted by time, claimed and recorded lines mixed.
    let dates: Vec<&String> = rows.iter().map(|r| &r.0).collect();
    let mut sorted = dates.clone();
    sorted.sort();
    assert_eq!(dates, sorted);

    // jsonl: one object per version, with claimed times and the content write.
    let text = diskhist(&["timeline", s, "--format", "jsonl"]);
    let logv: Vec<&str> = text
        .lines()
        .filter(|l| json_str(l, "path").as_deref() == Some("/var/log/app.log"))
        .collect();
    assert_eq!(logv.len(), 7, "{text}");
    for l in &logv {
        assert!(json_str(l, "content_write_seq").is_some(), "{l}");
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(v["claimed"]["ext4.mtime"].is_string(), "{l}");
    }
    let deleted = text
        .lines()
        .filter(|l| json_str(l, "change").as_deref() == Some("deleted"))
        .count();
    assert!(deleted >= 4, "scratch files deleted: {text}");
    // csv: a header and the same versions.
    let text = diskhist(&["timeline", s, "--format", "csv"]);
    assert!(text.starts_with("path,change,seq,recorded,ino,"), "{text}");
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("/var/log/app.log,"))
            .count(),
        7
    );
}

/// ctime and crtime, which userspace cannot set, forged with debugfs on
/// the unmounted image: `time-went-backwards` sees them go back.
#[test]
fn ext4_ctime_and_crtime_forged_with_debugfs() {
    let dir = tempfile::tempdir().unwrap();
    let store = init_store(dir.path(), "64M");
    let img = dir.path().join("fs.img");
    ext4_image(&img, 64, &[("doc.txt", "v1\n")]);
    import_now(&store, &img);
    run(Command::new("debugfs")
        .args(["-w", "-R", "set_inode_field /doc.txt ctime 20190301000000"])
        .arg(&img));
    run(Command::new("debugfs")
        .args(["-w", "-R", "set_inode_field /doc.txt crtime 20190301000000"])
        .arg(&img));
    let forged = import_now(&store, &img);
    let text = stdout_of(&diskhist_output(&[
        "timeline",
        p(&store),
        "--check",
        "--json",
    ]));
    let f: Vec<(String, String, u64, String)> = text
        .lines()
        .map(|l| {
            (
                json_str(l, "path").unwrap(),
                json_str(l, "finding").unwrap(),
                json_str(l, "seq").unwrap().parse().unwrap(),
                json_str(l, "detail").unwrap(),
            )
        })
        .collect();
    let back: Vec<_> = f.iter().filter(|x| x.1 == "time-went-backwards").collect();
    assert_eq!(back.len(), 2, "{f:?}");
    assert!(
        back.iter().all(|x| x.0 == "/doc.txt" && x.2 == forged),
        "{f:?}"
    );
    assert!(
        back.iter().any(|x| x.3.starts_with("ctime went back")),
        "{f:?}"
    );
    assert!(
        back.iter().any(|x| x.3.starts_with("crtime went back")),
        "{f:?}"
    );
    let h = diskhist(&["history", p(&store), "/doc.txt"]);
    assert!(
        h.lines().nth(1).unwrap().contains("ext4.ctime") && h.contains("-> 2019-03-01T00:00:00"),
        "{h}"
    );
}

/// NTFS written by ntfs-3g: a file's times set back with touch -d (its
/// $STANDARD_INFORMATION goes back, its $FILE_NAME does not), another's
/// creation time through the system.ntfs_crtime attribute.
#[test]
fn ntfs_times_set_back_through_ntfs3g() {
    let dir = tempfile::tempdir().unwrap();
    let store = init_store(dir.path(), "32M");
    let img = dir.path().join("ntfs.img");
    std::fs::write(&img, vec![0u8; 32 << 20]).unwrap();
    run(Command::new("mkntfs").args(["-q", "-F", "-f"]).arg(&img));
    let m = dir.path().join("m");
    std::fs::create_dir_all(&m).unwrap();
    let mount = || run(Command::new("ntfs-3g").arg(&img).arg(&m));
    let umount = || run(Command::new("fusermount3").arg("-u").arg(&m));
    mount();
    std::fs::write(m.join("report.docx"), "quarterly numbers\n").unwrap();
    std::fs::write(m.join("other.txt"), "fine\n").unwrap();
    std::fs::write(m.join("plain.txt"), "untouched\n").unwrap();
    umount();
    import_now(&store, &img);
    std::thread::sleep(Duration::from_millis(1100));
    mount();
    run(Command::new("touch")
        .args(["-d", "2019-03-01 12:00:00 UTC"])
        .arg(m.join("report.docx")));
    // The creation time set back through ntfs-3g's system.ntfs_crtime
    // (an NTFS time: 100 ns units since 1601, little-endian).
    let nt = (1_514_764_800u64 + 11_644_473_600) * 10_000_000; // 2018-01-01
    let hex: String = nt
        .to_le_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    run(Command::new("setfattr")
        .args(["-n", "system.ntfs_crtime", "-v", &format!("0x{hex}")])
        .arg(m.join("other.txt")));
    umount();
    let forged = import_now(&store, &img);
    let text = stdout_of(&diskhist_output(&[
        "timeline",
        p(&store),
        "--check",
        "--json",
    ]));
    let f: Vec<(String, String, u64)> = text
        .lines()
        .map(|l| {
            (
                json_str(l, "path").unwrap(),
                json_str(l, "finding").unwrap(),
                json_str(l, "seq").unwrap().parse().unwrap(),
            )
        })
        .collect();
    assert!(
        f.iter().any(|x| x.0 == "/report.docx"
            && x.2 == forged
            && (x.1 == "time-went-backwards" || x.1 == "si-before-fn")),
        "{f:?}"
    );
    assert!(
        f.iter()
            .any(|x| x.0 == "/other.txt" && x.2 == forged && x.1 == "time-went-backwards"),
        "{f:?}"
    );
    assert!(
        f.iter()
            .all(|x| x.0 == "/report.docx" || x.0 == "/other.txt"),
        "{f:?}"
    );
    // The bodyfile: $SI times on the file's line, $FN on their own.
    let body = diskhist(&["timeline", p(&store)]);
    let si = body
        .lines()
        .rfind(|l| l.starts_with("0|/report.docx|"))
        .unwrap_or_else(|| panic!("{body}"));
    let fname = body
        .lines()
        .rfind(|l| l.starts_with("0|/report.docx ($FILE_NAME)|"))
        .unwrap_or_else(|| panic!("{body}"));
    let col = |l: &str, i: usize| l.split('|').nth(i).unwrap().parse::<i64>().unwrap();
    assert_eq!(col(si, 8), 1_551_441_600, "{si}"); // 2019-03-01T12:00:00Z
    assert!(col(fname, 8) > 1_700_000_000, "{fname}");
    let h = diskhist(&["history", p(&store), "/report.docx"]);
    assert!(
        h.contains("ntfs.si.modified") && h.contains("-> 2019-03-01T12:00:00"),
        "{h}"
    );
}

#[test]
fn bisect_finds_the_tamper_and_cleans_up() {
    let c = ext4_case();
    let s = p(&c.store);
    let pred = ["--", "grep", "-q", "^line 130:", "{}/var/log/app.log"];
    let mut args = vec!["bisect", s, "--from", "#1"];
    let from = format!("#{}", c.appends[3]);
    args[3] = &from;
    args.extend(pred);
    let out = diskhist_output(&args);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let text = stdout_of(&out);
    assert!(
        text.contains(&format!("first bad state: #{} (", c.tamper)),
        "{text}"
    );
    assert!(
        text.contains(&format!("before it: #{} (", c.appends[4])),
        "{text}"
    );
    assert!(
        text.contains(&format!("next record: #{} (", c.tamper + 1)),
        "{text}"
    );
    // O(log n) runs: the two ends and a few between.
    let steps = text.lines().filter(|l| l.starts_with("bisect: #")).count();
    assert!(steps <= 5, "{text}");
    // A command that never changes its verdict: said so, exit 1; the
    // private mount it ran under is gone afterwards.
    let rec = c._dir.path().join("paths");
    let cmd = format!("echo {{}} >> {}", rec.display());
    let out = diskhist_output(&["bisect", s, "--", "sh", "-c", &cmd]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("good at both"),
        "{}",
        stderr_of(&out)
    );
    let used = std::fs::read_to_string(&rec).unwrap();
    let mnt = used
        .lines()
        .next()
        .unwrap()
        .trim_end_matches("/files")
        .rsplit_once("/seq/")
        .unwrap()
        .0
        .to_string();
    assert!(mnt.contains("diskhist-bisect-"), "{used}");
    assert!(!Path::new(&mnt).exists(), "{mnt} left behind");
    assert!(!std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .contains(&mnt));

    // --image: {} is the state's disk.img; a running mount given with --mount.
    let m = diskhist_test_common::Mounted::start(&c.store, &c._dir.path().join("mnt"), &[]);
    let out = diskhist_output(&[
        "bisect",
        s,
        "--mount",
        p(&m.dir),
        "--image",
        "--from",
        &from,
        "--",
        "sh",
        "-c",
        "debugfs -R 'cat /var/log/app.log' {} 2>/dev/null | grep -q '^line 130:'",
    ]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stdout_of(&out).contains(&format!("first bad state: #{} (", c.tamper)),
        "{}",
        stdout_of(&out)
    );
    drop(m);

    // Ctrl-C during a step: the private mount is unmounted and removed.
    let mut child =
        diskhist_test_common::diskhist_cmd(["bisect", s, "--", "sh", "-c", "sleep 30; test -d {}"])
            .process_group(0)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
    let pid = child.id();
    let started = std::time::Instant::now();
    let find = || {
        std::fs::read_to_string("/proc/self/mounts")
            .unwrap()
            .lines()
            .find(|l| l.contains(&format!("diskhist-bisect-{pid}-")))
            .map(|l| l.split(' ').nth(1).unwrap().to_string())
    };
    let mnt = loop {
        if let Some(m) = find() {
            break m;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no private mount"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(300));
    // As a terminal's Ctrl-C does: the whole foreground group (bisect and
    // its command; the mount daemon has a group of its own).
    run(Command::new("kill").args(["-INT", "--", &format!("-{pid}")]));
    let st = child.wait().unwrap();
    assert!(!st.success());
    assert!(find().is_none(), "still mounted: {mnt}");
    assert!(!Path::new(&mnt).exists(), "{mnt} left behind");
}

/// Ordinary work gives no findings: 200 files created, appended to,
/// edited in place, saved the way editors save (a new file renamed over
/// the old) and deleted by the kernel's ext4, recorded after each round
/// for about a minute (DISKHIST_WORKLOAD_ROUNDS rounds, default 12, two
/// seconds apart); one backdating planted half way is the only finding.
#[test]
fn ordinary_work_gives_no_findings() {
    let rounds = diskhist_test_common::env_number("DISKHIST_WORKLOAD_ROUNDS").unwrap_or(12) as u32;
    let dir = tempfile::tempdir().unwrap();
    let store = init_store(dir.path(), "64M");
    let img = dir.path().join("fs.img");
    ext4_image(&img, 64, &[]);
    let m = KernelMount::new(&["-o", "loop"], &img, &dir.path().join("m"));
    let root = m.dir.join("work");
    std::fs::create_dir_all(&root).unwrap();
    let mut rng = diskhist_test_common::Rng::new(12);
    let mut live: Vec<u32> = Vec::new();
    let mut created = 0u32;
    let mut planted = None;
    // Files alive at some import (one made and deleted between two
    // imports never reached a recorded state).
    let mut recorded = std::collections::HashSet::new();
    for round in 0..rounds {
        // New files, until 200 have been made.
        while created < 200 * (round + 1) / rounds {
            let name = root.join(format!("f{created:03}.txt"));
            std::fs::write(&name, format!("file {created} born in round {round}\n")).unwrap();
            live.push(created);
            created += 1;
        }
        for _ in 0..live.len() / 3 {
            let f = live[rng.below(live.len() as u64) as usize];
            let name = root.join(format!("f{f:03}.txt"));
            match rng.below(4) {
                0 => {
                    // Append.
                    let mut h = std::fs::OpenOptions::new()
                        .append(true)
                        .open(&name)
                        .unwrap();
                    std::io::Write::write_all(
                        &mut h,
                        format!("more in round {round}\n").as_bytes(),
                    )
                    .unwrap();
                }
                1 => {
                    // In place: overwrite the first bytes.
                    let h = std::fs::OpenOptions::new().write(true).open(&name).unwrap();
                    std::os::unix::fs::FileExt::write_all_at(&h, b"FILE", 0).unwrap();
                }
                2 => {
                    // An editor's save: a new file renamed over the old.
                    let tmp = root.join(format!(".f{f:03}.txt.swp"));
                    let old = std::fs::read(&name).unwrap();
                    let mut new = old.clone();
                    new.extend_from_slice(format!("edited in round {round}\n").as_bytes());
                    std::fs::write(&tmp, new).unwrap();
                    std::fs::rename(&tmp, &name).unwrap();
                }
                _ => {
                    std::fs::remove_file(&name).unwrap();
                    live.retain(|x| *x != f);
                }
            }
        }
        if round == rounds / 2 {
            let f = live[0];
            run(Command::new("touch")
                .args(["-d", "2020-01-01 00:00:00 UTC"])
                .arg(root.join(format!("f{f:03}.txt"))));
            planted = Some(format!("/work/f{f:03}.txt"));
        }
        sync_fs(&m.dir);
        import_now(&store, &img);
        recorded.extend(live.iter().map(|f| format!("/work/f{f:03}.txt")));
        std::thread::sleep(Duration::from_secs(2));
    }
    drop(m);
    let planted = planted.unwrap();
    let out = diskhist_output(&["timeline", p(&store), "--check", "--json", "--stats"]);
    let text = stdout_of(&out);
    let mut n = 0;
    for l in text.lines() {
        n += 1;
        assert_eq!(
            json_str(l, "path").as_deref(),
            Some(planted.as_str()),
            "unplanted finding: {l}\nall:\n{text}"
        );
    }
    assert!(
        n >= 1,
        "the planted backdating was not found: {text}\n{}",
        stderr_of(&out)
    );
    // The timeline holds the 200 files' versions.
    let jl = diskhist(&["timeline", p(&store), "--format", "jsonl"]);
    let names: std::collections::HashSet<String> = jl
        .lines()
        .filter_map(|l| json_str(l, "path"))
        .filter(|p| p.starts_with("/work/f"))
        .collect();
    assert!(recorded.len() > 150, "{}", recorded.len());
    assert_eq!(names, recorded);
    assert!(
        jl.contains("\"change\":\"replaced\""),
        "editor saves seen as replacements"
    );
}

/// A partitioned disk: `--part` picks the volume; leaving it out, or
/// naming a partition that is not there, is a usage error that says so.
#[test]
fn history_and_timeline_of_a_partition() {
    let dir = tempfile::tempdir().unwrap();
    let store = init_store(dir.path(), "64M");
    let disk = dir.path().join("disk.img");
    let part = dir.path().join("part.img");
    let disk_with = |files: &[(&str, &str)]| {
        ext4_image(&part, 60, files);
        std::fs::write(&disk, vec![0u8; 64 << 20]).unwrap();
        let out = diskhist_test_common::output_with_input(
            Command::new("sfdisk").arg("-q").arg(&disk),
            b"label: dos\nstart=2048, size=122880, type=83\n",
        );
        assert!(out.status.success(), "sfdisk");
        run(Command::new("dd")
            .arg(format!("if={}", part.display()))
            .arg(format!("of={}", disk.display()))
            .args(["bs=1M", "seek=1", "conv=notrunc", "status=none"]));
        import_now(&store, &disk)
    };
    let first = disk_with(&[("notes.txt", "one\n")]);
    let second = disk_with(&[("notes.txt", "one\ntwo\n")]);
    let s = p(&store);
    let text = diskhist(&["history", s, "/notes.txt", "--part", "1"]);
    let l: Vec<&str> = text.lines().collect();
    assert_eq!(l.len(), 2, "{text}");
    assert!(
        l[0].starts_with(&format!("#{first}  ")) && l[0].contains("created"),
        "{text}"
    );
    assert!(
        l[1].starts_with(&format!("#{second}  ")) && l[1].contains("size=8"),
        "{text}"
    );
    fails(
        Command::new(diskhist_test_common::bin()).args(["history", s, "/notes.txt"]),
        2,
        "--part",
    );
    fails(
        Command::new(diskhist_test_common::bin()).args(["history", s, "/notes.txt", "--part", "2"]),
        2,
        "no partition 2",
    );
    let jl = diskhist(&["timeline", s, "--part", "1", "--format", "jsonl"]);
    assert_eq!(
        jl.lines()
            .filter(|l| json_str(l, "path").as_deref() == Some("/notes.txt"))
            .count(),
        2,
        "{jl}"
    );
}

/// The jumps miss nothing: for every path of the ext4 case, the changes
/// `history` reports are exactly the states (of those a time names) where
/// a naive scan reading the view after every record sees it differ.
#[test]
fn history_matches_the_naive_scan_of_every_state() {
    use diskhist::history::{self, View};
    use diskhist::{Seq, Store};
    let c = ext4_case();
    let store = std::sync::Arc::new(Store::open(&c.store).unwrap());
    let head = store.head().seq;
    let times = store.seq_times(Seq(1), head).unwrap();
    for path in [
        "/var/log/app.log",
        "/etc/app.conf",
        "/home/u/notes.txt",
        "/home/u/scratch2",
        "/home/u",
        "/",
    ] {
        let mut smart = Vec::new();
        let stats = history::history(&store, None, path.as_bytes(), Seq(0), head, |ch| {
            smart.push(ch.seq.0);
            Ok(())
        })
        .unwrap();
        let mut naive = Vec::new();
        let mut prev: Option<View> = None;
        for s in 0..=head.0 {
            let group_end = s == 0 || s == head.0 || times[s as usize] != times[s as usize - 1];
            if !group_end {
                continue;
            }
            let (v, _) = history::view::view_path(&store, Seq(s), None, path.as_bytes());
            // What a view shows: the metadata and the content's hash
            // (not which blocks the reader happened to read for it).
            let shown = |v: &View| match v {
                View::Present(x) => Some((x.stat.clone(), x.sha256)),
                _ => None,
            };
            let differs = match &prev {
                None => shown(&v).is_some(),
                Some(a) => shown(a) != shown(&v),
            };
            if differs {
                naive.push(s);
            }
            prev = Some(v);
        }
        assert_eq!(smart, naive, "{path}");
        assert!(!smart.is_empty(), "{path}");
        // Never more states than the naive scan reads (9 in all here);
        // for the log, about one per change.
        let states = (0..=head.0)
            .filter(|&s| s == 0 || s == head.0 || times[s as usize] != times[s as usize - 1])
            .count() as u64;
        assert!(stats.states_examined <= states, "{path}: {stats:?}");
        if path == "/var/log/app.log" {
            assert!(stats.states_examined <= smart.len() as u64 + 4, "{stats:?}");
        }
    }
}

/// A directory whose block is damaged (zeroed by debugfs: its checksum
/// fails) is unreadable in the timeline and the history, not a deletion
/// of everything in it.
#[test]
fn a_damaged_directory_is_unreadable_not_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = init_store(dir.path(), "64M");
    let img = dir.path().join("fs.img");
    ext4_image(&img, 64, &[("docs/a.txt", "a\n"), ("docs/b.txt", "b\n")]);
    import_now(&store, &img);
    run(Command::new("debugfs")
        .args(["-w", "-R", "zap_block -f /docs 0"])
        .arg(&img));
    let damaged = import_now(&store, &img);
    let jl = diskhist(&["timeline", p(&store), "--format", "jsonl"]);
    let later: Vec<&str> = jl
        .lines()
        .filter(|l| json_str(l, "seq").as_deref() == Some(&damaged.to_string()))
        .collect();
    assert_eq!(later.len(), 1, "{jl}");
    assert_eq!(json_str(later[0], "path").unwrap(), "/docs");
    assert_eq!(json_str(later[0], "change").unwrap(), "unreadable");
    assert!(
        json_str(later[0], "why").unwrap().contains("checksum"),
        "{jl}"
    );
    let h = diskhist(&["history", p(&store), "/docs/a.txt"]);
    let l: Vec<&str> = h.lines().collect();
    assert_eq!(l.len(), 2, "{h}");
    assert!(l[1].starts_with(&format!("#{damaged}  ")), "{h}");
    assert!(l[1].contains("unreadable: damaged"), "{h}");
}
