//! When did it change: `history` and `bisect` on ext4 written by the
//! kernel, recorded by importing the live image after each step (the
//! recorded times are the real times of the imports; the shared history is
//! `diskhist_test_common::forged`): every append, the tamper, editor saves,
//! renames and deletions at the right records, exactly what a naive scan
//! of every state finds; bisect to the tamper; partitions, damage and bad
//! input.

use diskhist_test_common::forged::{ext4_case, import_now, json_str, lines_of};
use diskhist_test_common::{
    diskhist, diskhist_output, ext4_image, fails, init_store, log_records, p, run, stderr_of,
    stdout_of,
};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[test]
fn ext4_history_of_appends_tamper_renames_and_errors() {
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
    let rec = c.dir.path().join("paths");
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
    let m = diskhist_test_common::Mounted::start(&c.store, &c.dir.path().join("mnt"), &[]);
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
