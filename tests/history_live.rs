//! `timeline --check` and `history` on a history recorded live through
//! `diskhist serve`: qemu-storage-daemon's NBD client exports the store
//! over FUSE, the kernel's ext4 writes it through a loop device, every
//! write stamped by the recorder as it arrives (journal commits, states
//! between syncs and all). Ordinary work gives no finding; the planted
//! tamper and backdating are found, with the session's clock.

use diskhist_test_common::forged::{self, sync_fs};
use diskhist_test_common::{
    diskhist, diskhist_output, init_store, is_mounted, run, stderr_of, stdout_of, Served, Spawned,
};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, UNIX_EPOCH};

struct Rig {
    serve: Option<Served>,
    qsd: Option<Spawned>,
    fuse_file: PathBuf,
    loopdev: Option<String>,
    mnt: Option<PathBuf>,
}

impl Rig {
    fn stop(&mut self) {
        if let Some(m) = self.mnt.take() {
            let _ = Command::new("umount").arg(&m).status();
        }
        if let Some(l) = self.loopdev.take() {
            let _ = Command::new("losetup").args(["-d", &l]).status();
        }
        if let Some(mut q) = self.qsd.take() {
            q.terminate_or_kill(Duration::from_secs(10));
        }
        if is_mounted(&self.fuse_file) {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&self.fuse_file)
                .status();
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop();
        drop(self.serve.take());
    }
}

/// A field of a JSON line as text; "null" when it is missing.
fn json_str(line: &str, key: &str) -> String {
    forged::json_str(line, key).unwrap_or_else(|| "null".to_string())
}

#[test]
fn live_recording_finds_the_planted_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = init_store(d, "64M");
    let sock = d.join("nbd.sock");
    let fuse_file = d.join("disk.img");
    std::fs::File::create(&fuse_file).unwrap();
    let mut rig = Rig {
        serve: Some(Served::start(&store, &sock, &[])),
        qsd: None,
        fuse_file: fuse_file.clone(),
        loopdev: None,
        mnt: None,
    };
    rig.qsd = Some(Spawned::start(
        Command::new("qemu-storage-daemon")
            .arg("--blockdev")
            .arg(format!(
                "driver=nbd,node-name=hist,server.type=unix,server.path={}",
                sock.display()
            ))
            .arg("--export")
            .arg(format!(
                "type=fuse,id=exp,node-name=hist,mountpoint={},writable=on",
                fuse_file.display()
            )),
    ));
    let t0 = Instant::now();
    while !is_mounted(&fuse_file) {
        if let Some(st) = rig.qsd.as_mut().unwrap().exited() {
            panic!("qemu-storage-daemon exited ({st})");
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "no FUSE export");
        std::thread::sleep(Duration::from_millis(50));
    }
    let loopdev = run(Command::new("losetup")
        .args(["-f", "--show"])
        .arg(&fuse_file))
    .trim()
    .to_string();
    rig.loopdev = Some(loopdev.clone());
    run(Command::new("mkfs.ext4").args(["-q", "-F", "-b", "4096", &loopdev]));
    let mnt = d.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    run(Command::new("mount").arg(&loopdev).arg(&mnt));
    rig.mnt = Some(mnt.clone());

    std::fs::create_dir_all(mnt.join("var/log")).unwrap();
    std::fs::create_dir_all(mnt.join("etc")).unwrap();
    std::fs::create_dir_all(mnt.join("home")).unwrap();
    std::fs::write(mnt.join("etc/app.conf"), "mode=strict\n").unwrap();
    let log = mnt.join("var/log/app.log");
    let mut n = 0;
    for step in 0..5 {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        for _ in 0..40 {
            n += 1;
            std::io::Write::write_all(&mut f, format!("line {n}: step {step}\n").as_bytes())
                .unwrap();
        }
        drop(f);
        // Ordinary work: files made, saved through renames, edited in
        // place, deleted.
        for i in 0..8 {
            let p = mnt.join(format!("home/doc{i}.txt"));
            match (step + i) % 4 {
                0 => std::fs::write(&p, format!("doc {i} at step {step}\n")).unwrap(),
                1 => {
                    let tmp = mnt.join(format!("home/.doc{i}.swp"));
                    std::fs::write(&tmp, format!("doc {i} saved at step {step}\n")).unwrap();
                    std::fs::rename(&tmp, &p).unwrap();
                }
                2 if p.exists() => {
                    let h = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
                    std::os::unix::fs::FileExt::write_all_at(&h, b"DOC", 0).unwrap();
                }
                _ => {
                    let _ = std::fs::remove_file(&p);
                }
            }
        }
        sync_fs(&mnt);
        std::thread::sleep(Duration::from_millis(700));
    }
    // The tamper: lines 121..=140 cut in place, the mtime put back.
    let old = std::fs::metadata(&log)
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap();
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
    sync_fs(&mnt);
    std::thread::sleep(Duration::from_millis(700));
    run(Command::new("touch")
        .args(["-d", "2019-03-01 00:00:00 UTC"])
        .arg(mnt.join("etc/app.conf")));
    sync_fs(&mnt);
    std::thread::sleep(Duration::from_millis(700));
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    std::io::Write::write_all(&mut f, b"line 201: after\n").unwrap();
    drop(f);
    sync_fs(&mnt);
    rig.stop();
    let (st, err) = rig.serve.take().unwrap().stop();
    assert!(st.success(), "{err}");

    let s = store.to_str().unwrap();
    let out = diskhist_output(&["timeline", s, "--check", "--json", "--stats"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let text = stdout_of(&out);
    let f: Vec<(String, String, String)> = text
        .lines()
        .map(|l| {
            (
                json_str(l, "path"),
                json_str(l, "finding"),
                json_str(l, "clock"),
            )
        })
        .collect();
    for x in &f {
        let planted = (x.0 == "/var/log/app.log" && x.1 == "content-changed-time-kept")
            || x.0 == "/etc/app.conf";
        assert!(planted, "unplanted finding {x:?}\nall:\n{text}");
        assert!(x.2.starts_with("session "), "{x:?}");
    }
    assert_eq!(
        f.iter()
            .filter(|x| x.1 == "content-changed-time-kept")
            .count(),
        1,
        "{text}"
    );
    assert!(
        f.iter()
            .any(|x| x.0 == "/etc/app.conf" && x.1 == "claimed-before-written"),
        "{text}"
    );

    // history: the log's changes end with the tamper (content changed,
    // mtime kept) and the last append.
    let h = diskhist(&["history", s, "/var/log/app.log", "--json"]);
    let l: Vec<&str> = h.lines().collect();
    assert!(l.len() >= 7, "{h}");
    assert_eq!(json_str(l[0], "change"), "created", "{h}");
    let tamper = l
        .iter()
        .find(|c| {
            json_str(c, "content_changed") == "true"
                && !json_str(c, "changed").contains("ext4.mtime")
        })
        .unwrap_or_else(|| panic!("no tamper in {h}"));
    assert!(json_str(tamper, "size") != json_str(l[l.len() - 1], "size"));
}
