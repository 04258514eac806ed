//! What investigators do with the mounted tree: loop-mount a filesystem at
//! two times and diff them, run The Sleuth Kit on the images, keep eight
//! times mounted at once, read old states while a writer records.

use diskhist_test_common::{
    export_at, ext4_image, import, incompressible_xorshift64, init_store, output,
    output_with_input, run, sha256_hex, KernelMount, Mounted, Served, MIB,
};
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const T1: &str = "2026-11-23T06:30:15Z";
const T2_UTC: &str = "2026-11-23T07:45:00Z";

#[test]
fn ext4_mounted_at_two_times_diffs_to_the_change() {
    let dir = tempfile::tempdir().unwrap();
    let store = init_store(dir.path(), "64M");
    let img = dir.path().join("fs.img");
    ext4_image(
        &img,
        64,
        &[("etc/passwd", "root:x:0:0\n"), ("log/auth.log", "ok\n")],
    );
    import(&store, &img, T1);
    ext4_image(
        &img,
        64,
        &[
            ("etc/passwd", "root:x:0:0\n"),
            ("log/auth.log", "ok\nevil login\n"),
        ],
    );
    import(&store, &img, T2_UTC);

    let m = Mounted::start(&store, &dir.path().join("mnt"), &[]);
    let a = KernelMount::new(
        &["-o", "loop,ro,noload"],
        &m.path(&format!("at/{T1}/disk.img")),
        &dir.path().join("a"),
    );
    // An offset spelling of T2.
    let b = KernelMount::new(
        &["-o", "loop,ro,noload"],
        &m.path("at/2026-11-23T08:45:00+01:00/disk.img"),
        &dir.path().join("b"),
    );
    let out = output(Command::new("diff").arg("-r").arg(&a.dir).arg(&b.dir));
    assert_eq!(out.status.code(), Some(1), "diff finds a difference");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("auth.log") && text.contains("> evil login"),
        "{text}"
    );
    assert!(!text.contains("passwd"), "{text}");
}

#[test]
fn sleuthkit_reads_the_images_directly() {
    let dir = tempfile::tempdir().unwrap();
    let store = init_store(dir.path(), "64M");
    // A DOS partition table with one ext4 partition at 1 MiB.
    let part = dir.path().join("part.img");
    ext4_image(&part, 60, &[("secret.txt", "the answer is 42\n")]);
    let disk = dir.path().join("disk.img");
    std::fs::write(&disk, vec![0u8; 64 * MIB]).unwrap();
    let sfdisk = output_with_input(
        Command::new("sfdisk").arg("-q").arg(&disk),
        b"label: dos\nstart=2048, size=122880, type=83\n",
    );
    assert!(sfdisk.status.success(), "sfdisk");
    run(Command::new("dd")
        .arg(format!("if={}", part.display()))
        .arg(format!("of={}", disk.display()))
        .args(["bs=1M", "seek=1", "conv=notrunc", "status=none"]));
    import(&store, &disk, T1);

    let m = Mounted::start(&store, &dir.path().join("mnt"), &[]);
    let image = m.path(&format!("at/{T1}/disk.img"));
    let mmls = run(Command::new("mmls").arg(&image));
    assert!(
        mmls.contains("0000002048") && mmls.contains("Linux"),
        "{mmls}"
    );
    let fsstat = run(Command::new("fsstat").args(["-o", "2048"]).arg(&image));
    assert!(fsstat.contains("Ext4"), "{fsstat}");
    let fls = run(Command::new("fls").args(["-o", "2048", "-r"]).arg(&image));
    let line = fls
        .lines()
        .find(|l| l.ends_with("secret.txt"))
        .unwrap_or_else(|| panic!("{fls}"));
    let inode = line
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches(':');
    let icat = run(Command::new("icat")
        .args(["-o", "2048"])
        .arg(&image)
        .arg(inode));
    assert_eq!(icat, "the answer is 42\n");
}

#[test]
fn eight_times_loop_mounted_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = init_store(dir.path(), "16M");
    let img = dir.path().join("fs.img");
    let mut times = Vec::new();
    for i in 0..8 {
        let body = format!("version {i}\n");
        ext4_image(
            &img,
            16,
            &[("v.txt", body.as_str()), ("fixed.txt", "constant\n")],
        );
        let t = format!("2026-11-23T06:3{i}:00Z");
        import(&store, &img, &t);
        times.push(t);
    }
    let m = Mounted::start(&store, &dir.path().join("mnt"), &[]);
    let mounts: Vec<KernelMount> = times
        .iter()
        .enumerate()
        .map(|(i, t)| {
            KernelMount::new(
                &["-o", "loop,ro,noload"],
                &m.path(&format!("at/{t}/disk.img")),
                &dir.path().join(format!("m{i}")),
            )
        })
        .collect();
    for (i, lm) in mounts.iter().enumerate() {
        assert_eq!(
            std::fs::read_to_string(lm.dir.join("v.txt")).unwrap(),
            format!("version {i}\n")
        );
        assert_eq!(
            std::fs::read_to_string(lm.dir.join("fixed.txt")).unwrap(),
            "constant\n"
        );
    }
    let loops = run(Command::new("losetup").arg("-a"));
    let ours = loops
        .lines()
        .filter(|l| l.contains(m.dir.to_str().unwrap()))
        .count();
    assert_eq!(ours, 8, "{loops}");
}

#[test]
fn four_readers_at_different_times_while_a_writer_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = init_store(dir.path(), "16M");
    let img = dir.path().join("raw.img");
    let mut data = incompressible_xorshift64(16 * MIB, 1);
    std::fs::write(&img, &data).unwrap();
    import(&store, &img, T1);
    data[..MIB].fill(0x5a);
    std::fs::write(&img, &data).unwrap();
    import(&store, &img, T2_UTC);

    let m = Mounted::start(&store, &dir.path().join("mnt"), &[]);
    let sock = dir.path().join("nbd.sock");
    let serve = Served::start(&store, &sock, &[]);

    let done = Arc::new(AtomicBool::new(false));
    let mnt = m.dir.clone();
    // Each reader reads whole images of one kind of time, and notes which
    // state (canonical name) it got and what it read.
    let readers: Vec<_> = (0..4)
        .map(|k| {
            let done = done.clone();
            let mnt = mnt.clone();
            std::thread::spawn(move || {
                let mut seen: BTreeMap<String, String> = BTreeMap::new();
                let mut rounds = 0;
                while !done.load(Ordering::Relaxed) || rounds < 2 {
                    let name = match k {
                        0 => std::fs::read_link(mnt.join(format!("at/{T1}"))).unwrap(),
                        1 => std::fs::read_link(mnt.join(format!("at/{T2_UTC}"))).unwrap(),
                        2 => std::fs::read_link(mnt.join("latest"))
                            .unwrap()
                            .strip_prefix("at")
                            .unwrap()
                            .to_path_buf(),
                        _ => {
                            // The oldest state the writer has added so far.
                            let mut names: Vec<String> = std::fs::read_dir(mnt.join("at"))
                                .unwrap()
                                .map(|e| e.unwrap().file_name().into_string().unwrap())
                                .collect();
                            names.sort();
                            names.get(2).or(names.last()).unwrap().into()
                        }
                    };
                    let name = name.to_str().unwrap().to_string();
                    let bytes = std::fs::read(mnt.join("at").join(&name).join("disk.img")).unwrap();
                    let h = sha256_hex(&bytes);
                    if let Some(prev) = seen.insert(name.clone(), h.clone()) {
                        assert_eq!(prev, h, "reader {k}: {name} changed between reads");
                    }
                    rounds += 1;
                }
                seen
            })
        })
        .collect();

    let uri = format!("nbd+unix:///?socket={}", sock.display());
    for i in 0..24u32 {
        let off = (i as usize % 16) * MIB + (i as usize * 4096) % MIB;
        run(Command::new("qemu-io")
            .args(["-f", "raw", "-c"])
            .arg(format!("write -P {} {off} 64k", 0x10 + i))
            .arg(&uri));
        std::thread::sleep(Duration::from_millis(120));
    }
    done.store(true, Ordering::Relaxed);
    let seen: Vec<BTreeMap<String, String>> = readers
        .into_iter()
        .map(|r| r.join().expect("reader panicked"))
        .collect();
    assert!(serve.stop().0.success());

    let mut checked = 0;
    let mut states = std::collections::BTreeSet::new();
    for (k, reads) in seen.iter().enumerate() {
        for (name, h) in reads {
            let want = sha256_hex(&export_at(&store, name, dir.path()));
            assert_eq!(
                h, &want,
                "reader {k} read {name} differently from its export"
            );
            states.insert(name.clone());
            checked += 1;
        }
    }
    assert!(states.len() >= 4, "readers saw only {states:?}");
    assert!(checked >= 4);
}
