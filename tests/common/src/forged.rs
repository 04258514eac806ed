//! The ext4 history the `history`, `bisect` and `timeline` tests read: a
//! kernel-written ext4, imported after each step at the real time, with a
//! log appended, tampered with (lines cut, mtime put back) and appended
//! again, a config file backdated, and ordinary work beside it.

use crate::mount::{ext4_image, KernelMount};
use crate::p;
use crate::process::{diskhist, run};
use crate::stores::{init_store, log_records};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

/// `diskhist import STORE IMAGE` at the current time; the new head.
/// A field of one line of `--json` output as text: a string as is, any
/// other value as JSON; `None` if the line has no such field.
pub fn json_str(line: &str, key: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v.get(key).map(|x| match x {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

pub fn import_now(store: &Path, img: &Path) -> u64 {
    diskhist(&["import", p(store), p(img)]);
    log_records(store).last().map_or(0, |r| r.seq)
}

/// `sync -f DIR`: the filesystem's data and metadata on its disk.
pub fn sync_fs(dir: &Path) {
    run(Command::new("sync").arg("-f").arg(dir));
}

/// Lines `line N: ...` for each N.
pub fn lines_of(n: std::ops::RangeInclusive<u32>) -> String {
    n.map(|i| format!("line {i}: something happened at step {i}\n"))
        .collect()
}

/// The ext4 history.
pub struct Ext4Case {
    /// Holds the store and the image; removed when dropped.
    pub dir: tempfile::TempDir,
    pub store: PathBuf,
    /// State after each append of the log (40 lines each).
    pub appends: Vec<u64>,
    /// The state holding the tampered log (twenty lines cut from its
    /// middle, mtime restored).
    pub tamper: u64,
    /// The state holding /etc/app.conf backdated with touch -d.
    pub backdate: u64,
    /// The state after the last append after the tamper.
    pub after: u64,
}

pub fn ext4_case() -> Ext4Case {
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
        dir,
        store,
        appends,
        tamper,
        backdate,
        after,
    }
}
