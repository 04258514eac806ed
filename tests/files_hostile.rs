//! Damaged, hostile and half-written disks in the mounted tree: a damaged
//! filesystem costs EIO on its damaged part (or its `files/`, with `info`
//! saying why), never the daemon, the other partitions or the other
//! states; damaged partition tables cost a warning in `info`, in bounded
//! time. Every walk here runs under a time limit, so a hang fails the test
//! instead of blocking it.

use diskhist_test_common::{
    assert_same_tree, ext4_image, has, import, init_store, line_of, noload_walk, now_instant,
    ntfs3g_walk, run, sfdisk, try_walk, tsk_walk, volume_line, walk, within, KernelMount, LiveDisk,
    Mounted, WalkOptions, MIB,
};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const SECTOR: u64 = 512;
/// Longest any one walk or read of a state may take.
const LIMIT: Duration = Duration::from_secs(20);

const PLAIN: WalkOptions = WalkOptions::PLAIN;
const NTFS: WalkOptions = WalkOptions::NTFS;

fn info(state: &Path) -> String {
    let p = state.join("info");
    within(LIMIT, "reading info", move || {
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    })
}

/// [`walk`] under the time limit.
fn walk_within(root: PathBuf, opts: WalkOptions) -> Vec<String> {
    let what = format!("walking {}", root.display());
    within(LIMIT, &what, move || walk(&root, opts))
}

/// The names in directory `dir`, sorted, under the time limit.
fn names(dir: &Path) -> Vec<String> {
    let dir = dir.to_path_buf();
    within(LIMIT, "listing", move || {
        let mut v: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    })
}

/// The OS error of an operation that must fail.
fn errno_of<T: std::fmt::Debug>(what: &str, r: std::io::Result<T>) -> i32 {
    match r {
        Ok(v) => panic!("{what}: succeeded ({v:?}), but should fail"),
        Err(e) => e
            .raw_os_error()
            .unwrap_or_else(|| panic!("{what}: {e} (no OS error)")),
    }
}

/// The daemon is still running and answers.
fn answers(m: &mut Mounted) {
    assert!(m.alive(), "the daemon died:\n{}", m.stderr());
    assert!(!names(&m.path("at")).is_empty());
}

fn write_at(file: &Path, offset: u64, data: &[u8]) {
    let f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
    f.write_all_at(data, offset).unwrap();
}

fn read_at(file: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    std::fs::File::open(file)
        .unwrap()
        .read_exact_at(&mut buf, offset)
        .unwrap();
    buf
}

fn new_disk(path: &Path, bytes: u64) {
    std::fs::File::create(path).unwrap().set_len(bytes).unwrap();
}

/// An NTFS image of `mib` MiB made by mkntfs and written through ntfs-3g:
/// `hello.txt`, `docs/report.txt` (with a named stream `notes`).
fn ntfs_image(path: &Path, mib: u64, scratch: &Path) {
    new_disk(path, mib * MIB as u64);
    run(Command::new("mkntfs")
        .args(["-F", "-Q", "-q", "-L", "HOSTILE"])
        .arg(path));
    let m = KernelMount::new(
        &["-t", "ntfs-3g", "-o", "streams_interface=windows"],
        path,
        &scratch.join("ntfs-rw"),
    );
    std::fs::write(m.dir.join("hello.txt"), b"hello\n").unwrap();
    std::fs::create_dir(m.dir.join("docs")).unwrap();
    std::fs::write(m.dir.join("docs/report.txt"), b"report\n").unwrap();
    std::fs::write(m.dir.join("docs/report.txt:notes"), b"stream\n").unwrap();
}

/// A FAT16 image of `mib` MiB made by mkfs.vfat and written by mtools
/// (no vfat in this kernel): `README.TXT`, `Data/values.csv`.
fn fat_image(path: &Path, mib: u64, scratch: &Path) {
    let _ = std::fs::remove_file(path);
    run(Command::new("mkfs.vfat")
        .args(["-C", "-F", "16", "-n", "HOSTILE"])
        .arg(path)
        .arg((mib * 1024).to_string()));
    let mtools = |tool: &str| {
        let mut c = Command::new(tool);
        c.env("MTOOLS_SKIP_CHECK", "1").arg("-i").arg(path);
        c
    };
    let f = scratch.join("fat-put");
    std::fs::write(&f, b"readme\n").unwrap();
    run(mtools("mcopy").arg(&f).arg("::/README.TXT"));
    run(mtools("mmd").arg("::/Data"));
    std::fs::write(&f, b"1,2,3\n").unwrap();
    run(mtools("mcopy").arg(&f).arg("::/Data/values.csv"));
}

/// The first block of `path` in ext4 image `image`, in bytes from its
/// start (debugfs, 4 KiB blocks).
fn ext4_first_block_bytes(image: &Path, path: &str) -> u64 {
    let out = run(Command::new("debugfs")
        .args(["-R", &format!("blocks {path}")])
        .arg(image));
    let block: u64 = out
        .split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("no block for {path}: {out:?}"))
        .parse()
        .unwrap();
    block * 4096
}

/// The byte offset of MFT record `n` in NTFS image `image`, from its
/// boot sector.
fn mft_record_bytes(image: &Path, n: u64) -> u64 {
    let boot = read_at(image, 0, 512);
    let sector = u64::from(u16::from_le_bytes([boot[11], boot[12]]));
    let cluster = sector * u64::from(boot[13]);
    let mft_cluster = u64::from_le_bytes(boot[48..56].try_into().unwrap());
    let per_record = boot[64] as i8;
    let record = if per_record < 0 {
        1u64 << (-per_record)
    } else {
        per_record as u64 * cluster
    };
    mft_cluster * cluster + n * record
}

#[test]
fn a_damaged_filesystem_costs_only_its_own_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = init_store(d, "64M");
    // p1 ext4 (24 MiB), p2 FAT16 (16 MiB), p3 NTFS (16 MiB).
    let ext4 = d.join("p1.img");
    ext4_image(
        &ext4,
        24,
        &[("ok.txt", "fine\n"), ("dir/inside.txt", "inside\n")],
    );
    let fat = d.join("p2.img");
    fat_image(&fat, 16, d);
    let ntfs = d.join("p3.img");
    ntfs_image(&ntfs, 16, d);
    let disk = d.join("disk.img");
    new_disk(&disk, 64 * MIB as u64);
    sfdisk(
        &disk,
        "label: gpt\n\
         start=2048, size=49152, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n\
         start=51200, size=32768, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7\n\
         start=83968, size=32768, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7\n",
    );
    let (p1, p2, p3) = (2048 * SECTOR, 51200 * SECTOR, 83968 * SECTOR);
    for (image, at) in [(&ext4, p1), (&fat, p2), (&ntfs, p3)] {
        write_at(&disk, at, &std::fs::read(image).unwrap());
    }
    let times = [
        "2026-11-23T06:30:15Z",
        "2026-11-23T06:31:00Z",
        "2026-11-23T06:32:00Z",
    ];
    import(&store, &disk, times[0]);
    // T2: p1's superblock damaged (its inode count, so its checksum no
    // longer matches; its magic number is intact: still ext4 to a probe).
    let superblock = read_at(&disk, p1 + 1024, 1024);
    write_at(&disk, p1 + 1024, &[0xff; 4]);
    import(&store, &disk, times[1]);
    // T3: p1 whole again but for one directory block; NTFS's root
    // directory record (MFT record 5) overwritten.
    write_at(&disk, p1 + 1024, &superblock);
    let dir_block = ext4_first_block_bytes(&ext4, "/dir");
    write_at(&disk, p1 + dir_block, &[0x5a; 4096]);
    write_at(&disk, p3 + mft_record_bytes(&ntfs, 5), &[0x5a; 1024]);
    import(&store, &disk, times[2]);

    let mut m = Mounted::start(&store, &d.join("mnt"), &[]);
    // The healthy partitions, as their reference tools read them, at each
    // moment they are healthy.
    let fat_ok = |s: &Path| {
        assert_same_tree(
            &format!("FAT p2 in {}", s.display()),
            &walk_within(s.join("p2/files"), PLAIN),
            &tsk_walk(&s.join("p2.img"), 0),
        )
    };
    let ntfs_ok = |s: &Path| {
        assert_same_tree(
            &format!("NTFS p3 in {}", s.display()),
            &walk_within(s.join("p3/files"), NTFS),
            &ntfs3g_walk(LIMIT, &s.join("p3.img"), d),
        )
    };
    let ext4_ok = |s: &Path| {
        assert_same_tree(
            &format!("ext4 p1 in {}", s.display()),
            &walk_within(s.join("p1/files"), PLAIN),
            &noload_walk(LIMIT, &s.join("p1.img"), d),
        )
    };
    let [s1, s2, s3] = times.map(|t| m.path(&format!("at/{t}")));
    ext4_ok(&s1);
    fat_ok(&s1);
    ntfs_ok(&s1);

    // T2: p1 has no files/, info says why; p1.img is still its bytes.
    let info2 = info(&s2);
    let p1_line = volume_line(&info2, "p1");
    assert!(
        p1_line.starts_with("volume: p1: ext4") && p1_line.contains("files: not available (ext4: "),
        "{p1_line}"
    );
    assert!(
        names(&s2.join("p1")).is_empty(),
        "p1/ of T2 holds no files/"
    );
    let e = errno_of("p1/files at T2", std::fs::metadata(s2.join("p1/files")));
    assert_eq!(e, libc::ENOENT);
    assert_eq!(
        std::fs::metadata(s2.join("p1.img")).unwrap().len(),
        24 * MIB as u64
    );
    fat_ok(&s2);
    ntfs_ok(&s2);

    // T3: p1's files/ is back; its damaged directory alone answers EIO.
    let inside = s3.join("p1/files/dir");
    let e = errno_of("listing a damaged directory", {
        let p = inside.clone();
        within(LIMIT, "listing dir", move || {
            std::fs::read_dir(&p).and_then(|mut r| r.next().transpose())
        })
    });
    assert_eq!(e, libc::EIO, "a damaged directory block");
    assert_eq!(
        std::fs::read(s3.join("p1/files/ok.txt")).unwrap(),
        b"fine\n"
    );
    // NTFS without its root directory: no files/ (info says why) or EIO
    // on its root, never anything else.
    let p3_line = volume_line(&info(&s3), "p3");
    assert!(p3_line.starts_with("volume: p3: ntfs"), "{p3_line}");
    if p3_line.contains("files: not available (") {
        eprintln!("NTFS without its root record: {p3_line}");
        assert!(names(&s3.join("p3")).is_empty());
    } else {
        let p = s3.join("p3/files");
        let r = within(LIMIT, "walking p3", move || try_walk(&p, NTFS));
        let (at, e) = r.expect_err("a walk of an NTFS without its root record");
        eprintln!("NTFS without its root record: {}: {e}", at.display());
        assert_eq!(e.raw_os_error(), Some(libc::EIO), "{}: {e}", at.display());
    }
    fat_ok(&s3);

    // The damage is logged once per state, volume and kind of request,
    // however often it is met.
    for _ in 0..3 {
        let _ = std::fs::read_dir(&inside).map(|r| r.count());
        let _ = std::fs::metadata(s2.join("p1/files"));
    }
    let log = m.stderr();
    let dir_lines = log
        .lines()
        .filter(|l| l.contains(", p1: ") && l.contains("answers EIO"))
        .count();
    assert!(dir_lines >= 1, "the damage is logged:\n{log}");
    let mut seen = std::collections::HashSet::new();
    for l in log.lines().filter(|l| l.contains("answers EIO")) {
        assert!(seen.insert(l.to_string()), "logged twice: {l}\n{log}");
    }
    // And the undamaged state is as it was.
    ext4_ok(&s1);
    ntfs_ok(&s1);
    answers(&mut m);
}

/// A GPT disk with ext4 in p1.
fn gpt_disk(d: &Path) -> (PathBuf, u64) {
    let ext4 = d.join("p1.img");
    ext4_image(&ext4, 8, &[("etc/hostname", "evidence\n")]);
    let disk = d.join("disk.img");
    new_disk(&disk, 16 * MIB as u64);
    sfdisk(
        &disk,
        "label: gpt\nstart=2048, size=16384, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n",
    );
    let p1 = 2048 * SECTOR;
    write_at(&disk, p1, &std::fs::read(&ext4).unwrap());
    (disk, p1)
}

#[test]
fn a_gpt_whose_header_checksum_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = init_store(d, "16M");
    let (disk, _) = gpt_disk(d);
    let times = ["2026-11-23T06:30:15Z", "2026-11-23T06:31:00Z"];
    // The header's CRC32 is at byte 16 of LBA 1 (primary) and of the last
    // LBA (backup).
    let primary_crc = SECTOR + 16;
    let backup_crc = 16 * MIB as u64 - SECTOR + 16;
    let crc = read_at(&disk, primary_crc, 4);
    write_at(&disk, primary_crc, &[crc[0] ^ 0xff, crc[1], crc[2], crc[3]]);
    import(&store, &disk, times[0]);
    let crc = read_at(&disk, backup_crc, 4);
    write_at(&disk, backup_crc, &[crc[0] ^ 0xff, crc[1], crc[2], crc[3]]);
    import(&store, &disk, times[1]);

    let mut m = Mounted::start(&store, &d.join("mnt"), &[]);
    // The primary is bad: the backup gives the table.
    let s1 = m.path(&format!("at/{}", times[0]));
    let info1 = info(&s1);
    for line in [
        "partition_table: gpt (the backup header: the primary is damaged)\n",
        "partition_table_warning: GPT header at LBA 1: checksum mismatch\n",
    ] {
        assert!(info1.contains(line), "{line:?} missing in:\n{info1}");
    }
    let files = walk_within(s1.join("p1/files"), PLAIN);
    assert!(line_of(&files, "etc/hostname", "T1").contains(" file size=9 "));
    // Both bad: no partitions, said so, the disk still there; the
    // protective MBR's range is no filesystem.
    let s2 = m.path(&format!("at/{}", times[1]));
    let info2 = info(&s2);
    assert!(
        info2.contains("partition_table_warning: a protective MBR, but no valid GPT header\n"),
        "{info2}"
    );
    assert!(!info2.contains("\npartition: "), "{info2}");
    assert_eq!(names(&s2), ["disk.img", "info"]);
    let img = s2.join("disk.img");
    let len = within(LIMIT, "reading disk.img", move || {
        std::fs::read(&img).unwrap().len()
    });
    assert_eq!(len, 16 * MIB);
    answers(&mut m);
}

#[test]
fn an_mbr_whose_chain_of_logical_partitions_loops() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = init_store(d, "32M");
    let ext4 = d.join("p5.img");
    ext4_image(&ext4, 8, &[("home/user/notes.txt", "looped\n")]);
    let disk = d.join("disk.img");
    new_disk(&disk, 32 * MIB as u64);
    sfdisk(
        &disk,
        "label: dos\n\
         start=2048, size=4096, type=83\n\
         start=8192, size=49152, type=5\n\
         start=10240, size=16384, type=83\n\
         start=28672, size=16384, type=83\n",
    );
    write_at(&disk, 10240 * SECTOR, &std::fs::read(&ext4).unwrap());
    // The second EBR (in front of p6) links to a third EBR that is the
    // first one again (its start relative to the extended partition: 0).
    let ebr1 = 8192 * SECTOR;
    let ebr2_link = ebr1 + 446 + 16;
    let link = read_at(&disk, ebr2_link, 16);
    let ebr2 = ebr1 + u64::from(u32::from_le_bytes(link[8..12].try_into().unwrap())) * SECTOR;
    let mut to_first = read_at(&disk, ebr2 + 446, 16);
    to_first[4] = 0x05;
    to_first[8..12].copy_from_slice(&0u32.to_le_bytes());
    to_first[12..16].copy_from_slice(&16384u32.to_le_bytes());
    write_at(&disk, ebr2 + 446 + 16, &to_first);
    let t = "2026-11-23T06:30:15Z";
    import(&store, &disk, t);

    let mut m = Mounted::start(&store, &d.join("mnt"), &[]);
    let s = m.path(&format!("at/{t}"));
    let info = info(&s);
    assert!(
        info.contains("partition_table_warning: the chain of EBRs loops at sector 8192\n"),
        "{info}"
    );
    // Each logical once, however often the chain comes round.
    assert_eq!(
        names(&s),
        ["disk.img", "info", "p1", "p1.img", "p2", "p2.img", "p5", "p5.img", "p6", "p6.img"]
    );
    let ours = walk_within(s.join("p5/files"), PLAIN);
    assert!(has(&ours, "home/user/notes.txt"));
    let kernel = noload_walk(LIMIT, &s.join("p5.img"), d);
    assert_same_tree("p5 behind a looping chain", &ours, &kernel);
    answers(&mut m);
}

/// How a state's `files/` answered.
#[derive(Debug, Default)]
struct Outcomes {
    walked: usize,
    eio: usize,
    absent: usize,
}

#[test]
fn states_in_the_middle_of_mkfs() {
    // One disk written live through diskhist serve by mkfs.ext4, then
    // mkntfs over it, then mkfs.vfat over that: every state in between is
    // a half-made filesystem, or two half-overwritten ones.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = init_store(d, "32M");
    let live = LiveDisk::direct(d, &store);
    let file = live.file.clone();
    let made = |cmd: &mut Command| {
        run(cmd);
        run(Command::new("sync").arg(&file));
        std::thread::sleep(Duration::from_millis(20));
        now_instant()
    };
    let after_ext4 = made(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&file));
    let after_ntfs = made(
        Command::new("mkntfs")
            .args(["-F", "-Q", "-q", "-L", "HALF"])
            .arg(&file),
    );
    let after_fat = made(
        Command::new("mkfs.vfat")
            .args(["-F", "16", "-n", "HALF"])
            .arg(&file),
    );
    live.stop();

    let mut m = Mounted::start(&store, &d.join("mnt"), &[]);
    let last: u64 = info(&m.path("latest"))
        .lines()
        .find_map(|l| l.strip_prefix("seq: "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(last > 20, "mkfs made only {last} records");
    let mut outcomes = Outcomes::default();
    const MOST: u64 = 400;
    let picks: Vec<u64> = if last <= MOST {
        (1..=last).collect()
    } else {
        (1..=MOST).map(|i| i * last / MOST).collect()
    };
    for seq in picks {
        let s = m.path(&format!("seq/{seq}"));
        let info = info(&s);
        assert!(info.contains("\nvolume: disk: "), "#{seq}: {info}");
        if !names(&s).contains(&"files".to_string()) {
            assert!(info.contains("files: not available ("), "#{seq}: {info}");
            outcomes.absent += 1;
            continue;
        }
        let files = s.join("files");
        let what = format!("walking files/ of #{seq}");
        match within(LIMIT, &what, move || try_walk(&files, PLAIN)) {
            Ok(_) => outcomes.walked += 1,
            Err((at, e)) => {
                assert_eq!(
                    e.raw_os_error(),
                    Some(libc::EIO),
                    "#{seq}: {}: {e}",
                    at.display()
                );
                outcomes.eio += 1;
            }
        }
    }
    eprintln!("states in the middle of mkfs: {outcomes:?}");
    answers(&mut m);

    // Each finished filesystem as its reference reads it.
    let s = m.path(&format!("at/{after_ext4}"));
    assert!(volume_line(&info(&s), "disk").starts_with("volume: disk: ext4"));
    assert_same_tree(
        "after mkfs.ext4",
        &walk_within(s.join("files"), PLAIN),
        &noload_walk(LIMIT, &s.join("disk.img"), d),
    );
    let s = m.path(&format!("at/{after_ntfs}"));
    assert!(volume_line(&info(&s), "disk").starts_with("volume: disk: ntfs"));
    assert_same_tree(
        "after mkntfs",
        &walk_within(s.join("files"), NTFS),
        &ntfs3g_walk(LIMIT, &s.join("disk.img"), d),
    );
    let s = m.path(&format!("at/{after_fat}"));
    assert!(volume_line(&info(&s), "disk").starts_with("volume: disk: fat16"));
    assert_same_tree(
        "after mkfs.vfat",
        &walk_within(s.join("files"), PLAIN),
        &tsk_walk(&s.join("disk.img"), 0),
    );
}

#[test]
fn a_directory_cycle_and_a_petabyte_file_inside_a_healthy_ext4() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = init_store(d, "16M");
    let image = d.join("ext4.img");
    ext4_image(
        &image,
        16,
        &[
            ("a/b/file.txt", "in the cycle\n"),
            ("big.bin", "the start of a petabyte\n"),
            ("plain.txt", "plain\n"),
        ],
    );
    // /a/b/back links to /a: a cycle the kernel never makes; big.bin
    // claims 1 PiB.
    run(Command::new("debugfs")
        .args(["-w", "-R", "link /a /a/b/back"])
        .arg(&image));
    run(Command::new("debugfs")
        .args(["-w", "-R", "sif /big.bin size 1125899906842624"])
        .arg(&image));
    let t = "2026-11-23T06:30:15Z";
    import(&store, &image, t);

    let mut m = Mounted::start(&store, &d.join("mnt"), &[]);
    let files = m.path(&format!("at/{t}/files"));
    let r = {
        let a = files.join("a");
        within(LIMIT, "walking a tree with a cycle", move || {
            try_walk(&a, PLAIN)
        })
    };
    let (at, e) = r.expect_err("a walk through a directory cycle");
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{}: {e}", at.display());
    assert!(at.ends_with("a/b"), "the damage is a/b: {}", at.display());
    assert_eq!(names(&files.join("a")), ["b"]);

    // A petabyte is more blocks than an ext4 file can have: damage, EIO
    // (the kernel refuses it too: "Structure needs cleaning"), logged;
    // never a petabyte-sized read or allocation.
    let big = files.join("big.bin");
    let e = errno_of("stat of a file claiming 1 PiB", {
        within(LIMIT, "stat big.bin", move || std::fs::metadata(&big))
    });
    assert_eq!(e, libc::EIO);
    let kernel_refuses = {
        let k = tempfile::tempdir_in(d).unwrap();
        let km = KernelMount::new(&["-o", "loop,ro,noload"], &image, k.path());
        std::fs::metadata(km.dir.join("big.bin")).is_err()
    };
    assert!(kernel_refuses, "the kernel shows the petabyte file");
    let log = m.stderr();
    assert!(
        log.lines()
            .any(|l| l.contains("damaged") && l.contains("answers EIO")),
        "the damage is logged:\n{log}"
    );
    assert_eq!(std::fs::read(files.join("plain.txt")).unwrap(), b"plain\n");
    answers(&mut m);
}
