//! The times files claim against the times their blocks were recorded:
//! `timeline` (read by the real `mactime`) and `timeline --check`, on ext4
//! written by the kernel and NTFS written by ntfs-3g, recorded by importing
//! the live image after each step. Timestamps are forged for real:
//! `touch -d`, an edited log's mtime restored, debugfs setting ctime and
//! crtime, ntfs-3g's system.ntfs_crtime; 200 files of ordinary work give no
//! finding. (Recorded live through `serve`: tests/history_live.rs.)

use diskhist_test_common::forged::{ext4_case, import_now, json_str, sync_fs};
use diskhist_test_common::{
    diskhist, diskhist_output, ext4_image, fails, init_store, p, run, stderr_of, stdout_of,
    KernelMount,
};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[test]
fn ext4_check_finds_the_tamper_and_the_backdating_and_nothing_else() {
    let c = ext4_case();
    let s = p(&c.store);
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
    let body = c.dir.path().join("t.body");
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
