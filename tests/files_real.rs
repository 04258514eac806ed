//! `files/` in the mounted tree against real filesystems written by their
//! real drivers, at several recorded moments each: a walk of `files/`
//! (every name, type, size, content hash, symlink target and mtime; NTFS
//! named streams too) must equal the same walk of a read-only kernel or
//! FUSE mount of the same state's `disk.img` or `p<N>.img`, and the files
//! a test made, rewrote, renamed and deleted must appear and disappear at
//! the right moments.
//!
//! - ext4: made by mkfs.ext4 and written by the kernel, recorded live
//!   through `diskhist serve` (a QEMU quorum mirror, as tests/nbd_mirror.rs
//!   records it), checked at frozen checkpoints against `mount -o
//!   ro,noload` and, for a state between two syncs whose journal holds
//!   committed transactions, against the kernel's replaying mount of a
//!   copy (the one place `files/` must differ from `ro,noload`).
//! - NTFS: made by mkntfs, written through ntfs-3g (a named data stream
//!   included), checked against `ntfs-3g -o ro`.
//! - FAT: this kernel has no vfat driver (no module, no modprobe), so FAT
//!   volumes are written with mtools, which writes the on-disk format the
//!   kernel writes, and read for reference by The Sleuth Kit.
//! - A GPT disk made by sfdisk holding ext4 and FAT, and an MBR disk with
//!   FAT in a primary and ext4 and NTFS in logical partitions.

use diskhist_test_common::{
    assert_same_tree, frozen_instant, has, import, incompressible, init_store, kernel_walk,
    line_of, noload_walk, now_instant, ntfs3g_walk, run, sfdisk, sha256_hex, tsk_walk, volume_line,
    walk, within, KernelMount, LiveDisk, LoopDev, Mounted, WalkOptions, MIB,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const SECTOR: u64 = 512;
/// Longest one walk may take: a hang fails the test instead of blocking.
const LIMIT: Duration = Duration::from_secs(60);

const PLAIN: WalkOptions = WalkOptions::PLAIN;
const NTFS: WalkOptions = WalkOptions::NTFS;

/// [`walk`] of a tree in the mount, under the time limit.
fn walk_within(root: PathBuf, opts: WalkOptions) -> Vec<String> {
    let what = format!("walking {}", root.display());
    within(LIMIT, &what, move || walk(&root, opts))
}

fn info(state: &Path) -> String {
    std::fs::read_to_string(state.join("info"))
        .unwrap_or_else(|e| panic!("{}/info: {e}", state.display()))
}

/// The `info` line of the whole-disk volume of `state`, which must be a
/// `kind` (`ext4`, `ntfs`, `fat32`) with its files available; `name`
/// names the state in a failure.
fn disk_volume(state: &Path, kind: &str, name: &str) -> String {
    let vol = volume_line(&info(state), "disk");
    assert!(
        vol.starts_with(&format!("volume: disk: {kind}")) && vol.contains("files: available"),
        "{name}: {vol}"
    );
    vol
}

/// The kernel's replaying mount of a copy of `image` (the copy is
/// written: the journal is played into it), walked.
fn replayed_walk(image: &Path, scratch: &Path) -> Vec<String> {
    let copy = scratch.join("replayed-copy.img");
    std::fs::copy(image, &copy).unwrap();
    let w = kernel_walk(LIMIT, &["-o", "loop"], &copy, scratch, PLAIN);
    std::fs::remove_file(&copy).unwrap();
    w
}

/// What reads a volume's image for reference.
enum Reference {
    /// ext4: the kernel's `ro,noload` mount.
    Noload,
    /// NTFS: `ntfs-3g -o ro`, named streams compared too.
    Ntfs3g,
    /// FAT: The Sleuth Kit.
    SleuthKit,
}

/// `files/` of volume `vol` (`disk`, `p1`...) of `state`, walked, and its
/// image as `reference` reads it: the same tree (`what` names it in a
/// failure). Returns the walk of `files/`.
fn walk_as_reference(
    what: &str,
    state: &Path,
    vol: &str,
    reference: Reference,
    scratch: &Path,
) -> Vec<String> {
    let (files, image) = if vol == "disk" {
        (state.join("files"), state.join("disk.img"))
    } else {
        (
            state.join(vol).join("files"),
            state.join(format!("{vol}.img")),
        )
    };
    let (ours, theirs) = match reference {
        Reference::Noload => (
            walk_within(files, PLAIN),
            noload_walk(LIMIT, &image, scratch),
        ),
        Reference::Ntfs3g => (
            walk_within(files, NTFS),
            ntfs3g_walk(LIMIT, &image, scratch),
        ),
        Reference::SleuthKit => (walk_within(files, PLAIN), tsk_walk(&image, 0)),
    };
    assert_same_tree(what, &ours, &theirs);
    ours
}

/// A file of `len` zero bytes at `path`, to be a disk or a volume.
fn zeroed_file(path: &Path, len: u64) {
    std::fs::File::create(path).unwrap().set_len(len).unwrap();
}

fn sha_of(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

/// diskhist's `user.diskhist.ino` of `path`: the filesystem's own number.
fn fs_ino(path: &Path) -> String {
    diskhist_test_common::user_xattrs(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .find(|(n, _)| n == "user.diskhist.ino")
        .map(|(_, v)| String::from_utf8(v).unwrap())
        .unwrap_or_else(|| panic!("{}: no user.diskhist.ino", path.display()))
}

/// What else a kernel-written ext4 holds: a hashed directory of 1,000
/// names (listed through many FUSE pages), a sparse file, preallocated
/// (unwritten) extents, a hard link, a slow symlink, a FIFO, a name that
/// is not UTF-8, and an mtime with nanoseconds set in the past.
fn ext4_variety(root: &Path) {
    use std::os::unix::ffi::OsStrExt;
    std::fs::create_dir(root.join("many")).unwrap();
    for i in 0..1000 {
        std::fs::write(
            root.join(format!("many/entry number {i:05}")),
            format!("{i}\n"),
        )
        .unwrap();
    }
    let sparse = std::fs::File::create(root.join("sparse.bin")).unwrap();
    use std::os::unix::fs::FileExt;
    sparse.write_all_at(b"start", 0).unwrap();
    sparse
        .write_all_at(b"after a hole", 9 * MIB as u64 + 17)
        .unwrap();
    drop(sparse);
    run(Command::new("fallocate")
        .args(["-l", "3M"])
        .arg(root.join("preallocated.bin")));
    std::fs::hard_link(root.join("big.bin"), root.join("dir/big-hardlink.bin")).unwrap();
    let long_target = format!("{}/a/target/longer/than/sixty/bytes", "x".repeat(80));
    std::os::unix::fs::symlink(long_target, root.join("slow-link")).unwrap();
    run(Command::new("mkfifo").arg(root.join("fifo")));
    let latin1 = std::ffi::OsStr::from_bytes(b"caf\xe9.txt");
    std::fs::write(root.join(latin1), b"latin-1 name\n").unwrap();
    run(Command::new("touch")
        .args(["-d", "2001-02-03 04:05:06.123456789 UTC"])
        .arg(root.join("dir/sub/deep.txt")));
}

#[test]
fn ext4_written_live_by_the_kernel_at_each_checkpoint_and_between_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = init_store(d, "64M");
    let live = LiveDisk::mirrored(d, &store, 64 * MIB as u64);
    let lo = LoopDev::attach(&live.file, None, false);
    run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&lo.dev));
    let fs = KernelMount::new(&[], &lo.dev, &d.join("rw"));
    let root = fs.dir.clone();

    let first = b"first version\n".to_vec();
    let second = b"second version, rewritten in place and longer\n".repeat(50);
    let big = incompressible(MIB + 12345, 7);
    let between = b"written after the last freeze, synced, never checkpointed\n".to_vec();

    let c0 = frozen_instant(&root);
    std::fs::create_dir_all(root.join("dir/sub")).unwrap();
    std::fs::write(root.join("dir/sub/deep.txt"), b"deep\n").unwrap();
    std::fs::write(root.join("notes.txt"), &first).unwrap();
    std::fs::write(root.join("big.bin"), &big).unwrap();
    std::os::unix::fs::symlink("notes.txt", root.join("link")).unwrap();
    ext4_variety(&root);
    let c1 = frozen_instant(&root);
    // Rewritten in place: same inode, new content.
    std::fs::write(root.join("notes.txt"), &second).unwrap();
    let c2 = frozen_instant(&root);
    std::fs::rename(root.join("notes.txt"), root.join("dir/renamed.txt")).unwrap();
    let c3 = frozen_instant(&root);
    std::fs::remove_file(root.join("dir/renamed.txt")).unwrap();
    std::fs::remove_dir_all(root.join("many")).unwrap();
    let c4 = frozen_instant(&root);
    // Between two syncs: fsync commits the transaction that creates
    // between.txt to the journal, but leaves its metadata blocks dirty in
    // memory, to be written home by writeback in 30 s (a sync of the
    // whole filesystem, a freeze or an unmount would write them at once);
    // the moment is taken before that.
    std::fs::write(root.join("between.txt"), &between).unwrap();
    std::fs::File::open(root.join("between.txt"))
        .unwrap()
        .sync_all()
        .unwrap();
    std::fs::File::open(&root).unwrap().sync_all().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mid = now_instant();
    std::thread::sleep(Duration::from_millis(50));
    drop(fs);
    drop(lo);
    live.stop();

    let m = Mounted::start(&store, &d.join("mnt"), &[]);
    let mut walks = Vec::new();
    for (name, at) in [
        ("c0", &c0),
        ("c1", &c1),
        ("c2", &c2),
        ("c3", &c3),
        ("c4", &c4),
    ] {
        let state = m.path(&format!("at/{at}"));
        let vol = disk_volume(&state, "ext4", name);
        assert!(
            !vol.contains("journal replayed"),
            "{name}: a frozen filesystem's journal is clean, yet: {vol}"
        );
        let what = format!("ext4 at {name} ({at})");
        let ours = walk_as_reference(&what, &state, "disk", Reference::Noload, d);
        walks.push((name, state, ours));
    }
    let [(_, _, w0), (_, s1, w1), (_, s2, w2), (_, s3, w3), (_, _, w4)] = &walks[..] else {
        unreachable!()
    };
    // Each change at its moment, and only from then on.
    assert!(!has(w0, "notes.txt") && !has(w0, "dir"), "c0: {w0:?}");
    assert!(line_of(w1, "notes.txt", "c1").contains(&sha_of(&first)));
    assert!(line_of(w1, "big.bin", "c1").contains(&sha_of(&big)));
    assert!(line_of(w1, "link", "c1").contains(" symlink ") && has(w1, "dir/sub/deep.txt"));
    assert!(line_of(w1, "dir/sub/deep.txt", "c1").contains(" mtime=981173106123456789"));
    assert!(line_of(w1, "caf\\xe9.txt", "c1").contains(&sha_of(b"latin-1 name\n")));
    assert!(line_of(w1, "fifo", "c1").contains(" fifo "));
    assert_eq!(w1.iter().filter(|l| l.starts_with("many/")).count(), 1000);
    assert!(has(w3, "many/entry number 00999") && !has(w4, "many"));
    assert!(line_of(w2, "notes.txt", "c2").contains(&sha_of(&second)));
    assert_eq!(
        fs_ino(&s1.join("files/notes.txt")),
        fs_ino(&s2.join("files/notes.txt")),
        "rewritten in place: one inode"
    );
    assert!(!has(w3, "notes.txt"), "renamed away at c3");
    assert!(line_of(w3, "dir/renamed.txt", "c3").contains(&sha_of(&second)));
    assert_eq!(
        fs_ino(&s3.join("files/dir/renamed.txt")),
        fs_ino(&s2.join("files/notes.txt")),
        "a rename keeps the inode"
    );
    // The symlink stays, dangling, as stored.
    assert!(line_of(w3, "link", "c3").contains("-> notes.txt"));
    assert!(
        !has(w4, "dir/renamed.txt") && !has(w4, "notes.txt"),
        "deleted at c4"
    );
    assert!(!w3.iter().chain(w4).any(|l| l.starts_with("between.txt")));

    // Between two syncs. files/ replays the committed journal, as the
    // kernel does on a normal mount; `ro,noload` does not replay, so it
    // lacks between.txt: the one difference the two views must have.
    let state = m.path(&format!("at/{mid}"));
    let vol = volume_line(&info(&state), "disk");
    assert!(
        vol.contains("journal replayed in memory"),
        "mid: the journal holds a committed transaction: {vol}"
    );
    let ours = walk_within(state.join("files"), PLAIN);
    assert!(line_of(&ours, "between.txt", "mid").contains(&sha_of(&between)));
    let replayed = replayed_walk(&state.join("disk.img"), d);
    assert_same_tree(
        &format!("ext4 between syncs ({mid}) against the kernel's replaying mount"),
        &ours,
        &replayed,
    );
    let noload = noload_walk(LIMIT, &state.join("disk.img"), d);
    assert!(
        !has(&noload, "between.txt"),
        "ro,noload should not replay the journal, yet shows between.txt: was the \
         metadata written home before the moment was taken?"
    );
    assert_ne!(noload, ours);

    // States between the checkpoints, whatever the kernel was doing then
    // (records picked evenly after the filesystem was first frozen): each
    // as the kernel's replaying mount shows it when its journal needs
    // replay, as `ro,noload` shows it when not.
    let seq_of = |at: &str| -> u64 {
        let info = info(&m.path(&format!("at/{at}")));
        info.lines()
            .find_map(|l| l.strip_prefix("seq: "))
            .unwrap_or_else(|| panic!("no seq in info:\n{info}"))
            .parse()
            .unwrap()
    };
    let (from, to) = (seq_of(&c0), seq_of(&mid));
    const PICKS: u64 = 16;
    let picks: Vec<u64> = (1..=PICKS)
        .map(|i| from + (to - from) * i / (PICKS + 1))
        .collect();
    let mut replayed_states = 0;
    for seq in picks {
        let state = m.path(&format!("seq/{seq}"));
        let vol = volume_line(&info(&state), "disk");
        let ours = walk_within(state.join("files"), PLAIN);
        let (how, theirs) = if vol.contains("journal replayed") {
            replayed_states += 1;
            ("replaying", replayed_walk(&state.join("disk.img"), d))
        } else {
            ("ro,noload", noload_walk(LIMIT, &state.join("disk.img"), d))
        };
        assert_same_tree(&format!("ext4 at #{seq} ({how} mount)"), &ours, &theirs);
    }
    eprintln!("{replayed_states} of {PICKS} states between checkpoints had a journal to replay");
}

/// Make an NTFS labelled `label` on `target` (an image or a device).
fn mkntfs(target: &Path, label: &str) {
    run(Command::new("mkntfs")
        .args(["-F", "-Q", "-q", "-L", label])
        .arg(target));
}

/// Mount the NTFS at `source` read-write through ntfs-3g on `mnt`, named
/// streams as `FILE:STREAM` names; `write` its root, then unmount.
fn ntfs_rw(source: &Path, mnt: &Path, write: impl FnOnce(&Path)) {
    let m = KernelMount::new(
        &["-t", "ntfs-3g", "-o", "streams_interface=windows"],
        source,
        mnt,
    );
    write(&m.dir);
}

const ZONE: &[u8] = b"[ZoneTransfer]\r\nZoneId=3\r\nHostUrl=https://example.invalid/x\r\n";

#[test]
fn ntfs_written_through_ntfs_3g_at_three_moments() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = init_store(d, "32M");
    let image = d.join("ntfs.img");
    zeroed_file(&image, 32 * MIB as u64);
    mkntfs(&image, "EVIDENCE");
    let rw = d.join("rw");
    let report1 = b"quarterly report, draft\n".to_vec();
    let report2 = b"quarterly report, final; numbers changed\n".repeat(300);
    let deep = incompressible(200_000, 3);
    let times = [
        "2026-11-23T06:30:15Z",
        "2026-11-23T06:31:00Z",
        "2026-11-23T06:32:00Z",
    ];
    ntfs_rw(&image, &rw, |r| {
        std::fs::write(r.join("report.txt"), &report1).unwrap();
        std::fs::create_dir_all(r.join("docs/sub")).unwrap();
        std::fs::write(r.join("docs/a.txt"), b"a\n").unwrap();
        std::fs::write(r.join("docs/sub/deep.bin"), &deep).unwrap();
        std::os::unix::fs::symlink("report.txt", r.join("link")).unwrap();
        std::fs::write(r.join("download.exe"), b"MZ not really\n").unwrap();
        std::fs::write(r.join("download.exe:Zone.Identifier"), ZONE).unwrap();
        // Beyond the index root: 400 names in index blocks.
        std::fs::create_dir(r.join("many")).unwrap();
        for i in 0..400 {
            std::fs::write(r.join(format!("many/Entry {i:04}.txt")), format!("{i}\n")).unwrap();
        }
        std::fs::hard_link(r.join("report.txt"), r.join("docs/report-link.txt")).unwrap();
        std::fs::write(
            r.join("r\u{e9}sum\u{e9} \u{65e5}\u{672c}.txt"),
            b"unicode\n",
        )
        .unwrap();
        let sparse = std::fs::File::create(r.join("sparse.bin")).unwrap();
        sparse.set_len(5 * MIB as u64).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&sparse, b"tail", 5 * MIB as u64 - 4).unwrap();
    });
    import(&store, &image, times[0]);
    ntfs_rw(&image, &rw, |r| {
        std::fs::write(r.join("report.txt"), &report2).unwrap();
        std::fs::rename(r.join("docs/a.txt"), r.join("docs/b.txt")).unwrap();
        std::fs::write(r.join("docs/new.txt"), b"new\n").unwrap();
    });
    import(&store, &image, times[1]);
    ntfs_rw(&image, &rw, |r| {
        std::fs::remove_file(r.join("download.exe")).unwrap();
        std::fs::remove_file(r.join("docs/b.txt")).unwrap();
    });
    import(&store, &image, times[2]);

    let m = Mounted::start(&store, &d.join("mnt"), &[]);
    let mut walks = Vec::new();
    for at in times {
        let state = m.path(&format!("at/{at}"));
        disk_volume(&state, "ntfs", at);
        let what = format!("NTFS at {at}");
        let ours = walk_as_reference(&what, &state, "disk", Reference::Ntfs3g, d);
        walks.push((state, ours));
    }
    let [(s1, w1), (s2, w2), (s3, w3)] = &walks[..] else {
        unreachable!()
    };
    let zone_xattr = format!("xattr:user.Zone.Identifier={}", sha_of(ZONE));
    assert!(line_of(w1, "download.exe", "t1").contains(&zone_xattr));
    // The stream is also a name that can be looked up (not listed).
    assert_eq!(
        std::fs::read(s1.join("files/download.exe:Zone.Identifier")).unwrap(),
        ZONE
    );
    assert!(line_of(w1, "report.txt", "t1").contains(&sha_of(&report1)));
    assert!(line_of(w1, "docs/sub/deep.bin", "t1").contains(&sha_of(&deep)));
    assert!(line_of(w1, "link", "t1").contains("-> report.txt"));
    assert!(has(w1, "docs/a.txt") && !has(w1, "docs/b.txt") && !has(w1, "docs/new.txt"));
    assert_eq!(w1.iter().filter(|l| l.starts_with("many/")).count(), 400);
    assert!(has(
        w1,
        "r\\xc3\\xa9sum\\xc3\\xa9 \\xe6\\x97\\xa5\\xe6\\x9c\\xac.txt"
    ));
    assert!(line_of(w2, "report.txt", "t2").contains(&sha_of(&report2)));
    assert!(!has(w2, "docs/a.txt") && has(w2, "docs/b.txt") && has(w2, "docs/new.txt"));
    assert_eq!(
        fs_ino(&s1.join("files/docs/a.txt")),
        fs_ino(&s2.join("files/docs/b.txt")),
        "a rename keeps the MFT record"
    );
    assert!(!has(w3, "download.exe") && !has(w3, "docs/b.txt") && has(w3, "docs/new.txt"));
    let gone = std::fs::metadata(s3.join("files/download.exe:Zone.Identifier"));
    assert_eq!(
        gone.map_err(|e| e.raw_os_error()).err(),
        Some(Some(libc::ENOENT)),
        "a deleted file's stream goes with it"
    );
}

/// An mtools command on the FAT volume `target` (`IMAGE` or
/// `IMAGE@@OFFSET`).
fn mtools(tool: &str, target: &str) -> Command {
    let mut cmd = Command::new(tool);
    cmd.env("MTOOLS_SKIP_CHECK", "1")
        .env("TZ", "UTC")
        .args(["-i", target]);
    cmd
}

/// Write `content` as `to` (`::/path`) on FAT volume `target`, through a
/// file in `scratch`, overwriting.
fn fat_put(target: &str, scratch: &Path, to: &str, content: &[u8]) {
    let f = scratch.join("fat-put");
    std::fs::write(&f, content).unwrap();
    run(mtools("mcopy", target).arg("-o").arg(&f).arg(to));
}

#[test]
fn fat32_written_by_mtools_at_four_moments() {
    // No vfat in this kernel (and no modprobe): mtools writes, The Sleuth
    // Kit reads the reference (mtools' own listing has no seconds).
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = init_store(d, "64M");
    let image = d.join("fat32.img");
    run(Command::new("mkfs.vfat")
        .args(["-C", "-F", "32", "-s", "1", "-n", "DHFAT32"])
        .arg(&image)
        .arg("65536"));
    let img = image.to_str().unwrap();
    let times = [
        "2026-11-23T06:30:15Z",
        "2026-11-23T06:31:00Z",
        "2026-11-23T06:32:00Z",
        "2026-11-23T06:33:00Z",
    ];
    let v1 = b"version one\n".to_vec();
    let v2 = incompressible(700_000, 11);
    run(mtools("mmd", img).args(["::/Reports", "::/Reports/2026"]));
    fat_put(img, d, "::/Reports/2026/Quarterly Report.txt", &v1);
    fat_put(img, d, "::/README.TXT", b"upper-case 8.3 name\n");
    fat_put(img, d, "::/lower.txt", b"lower-case name\n");
    for name in [
        "r\u{e9}sum\u{e9} \u{65e5}\u{672c}.txt",
        "MiXeD.TxT",
        "a+b=c;d.txt",
        ".hidden",
    ] {
        fat_put(img, d, &format!("::/{name}"), name.as_bytes());
    }
    // 300 long names (each several directory entries), and a file
    // fragmented around a gap a deleted file left.
    let stage = d.join("many");
    std::fs::create_dir(&stage).unwrap();
    for i in 0..300 {
        std::fs::write(
            stage.join(format!("a rather long file name {i:03}.text")),
            format!("{i}\n"),
        )
        .unwrap();
    }
    run(mtools("mcopy", img).arg("-s").arg(&stage).arg("::/"));
    fat_put(img, d, "::/gap.bin", &incompressible(20_000, 12));
    fat_put(img, d, "::/after.bin", b"after\n");
    run(mtools("mdel", img).arg("::/gap.bin"));
    let fragmented = incompressible(90_000, 13);
    fat_put(img, d, "::/fragmented.bin", &fragmented);
    import(&store, &image, times[0]);
    fat_put(img, d, "::/Reports/2026/Quarterly Report.txt", &v2);
    import(&store, &image, times[1]);
    run(mtools("mren", img).args([
        "::/Reports/2026/Quarterly Report.txt",
        "::/Reports/2026/Final report, renamed.txt",
    ]));
    import(&store, &image, times[2]);
    run(mtools("mdel", img).arg("::/Reports/2026/Final report, renamed.txt"));
    import(&store, &image, times[3]);

    let m = Mounted::start(&store, &d.join("mnt"), &[]);
    let q = "Reports/2026/Quarterly Report.txt";
    let f = "Reports/2026/Final report, renamed.txt";
    let mut walks = Vec::new();
    for at in times {
        let state = m.path(&format!("at/{at}"));
        disk_volume(&state, "fat32", at);
        let what = format!("FAT32 at {at}");
        let ours = walk_as_reference(&what, &state, "disk", Reference::SleuthKit, d);
        walks.push(ours);
    }
    assert!(line_of(&walks[0], q, "t1").contains(&sha_of(&v1)));
    assert!(has(&walks[0], "README.TXT") && has(&walks[0], "lower.txt"));
    assert!(has(&walks[0], "MiXeD.TxT") && has(&walks[0], ".hidden"));
    assert!(has(
        &walks[0],
        "r\\xc3\\xa9sum\\xc3\\xa9 \\xe6\\x97\\xa5\\xe6\\x9c\\xac.txt"
    ));
    assert_eq!(
        walks[0].iter().filter(|l| l.starts_with("many/")).count(),
        300
    );
    assert!(line_of(&walks[0], "fragmented.bin", "t1").contains(&sha_of(&fragmented)));
    assert!(line_of(&walks[1], q, "t2").contains(&sha_of(&v2)));
    assert!(!has(&walks[2], q) && line_of(&walks[2], f, "t3").contains(&sha_of(&v2)));
    assert!(!has(&walks[3], q) && !has(&walks[3], f) && has(&walks[3], "Reports/2026"));
}

/// The ext4 in `range` (bytes) of `disk`, made first if `mkfs`, mounted
/// read-write by the kernel on `mnt` through a loop device; `write` its
/// root, then unmount before the loop device goes.
fn ext4_rw_in(disk: &Path, range: (u64, u64), mkfs: bool, mnt: &Path, write: impl FnOnce(&Path)) {
    let lo = LoopDev::attach(disk, Some(range), false);
    if mkfs {
        run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&lo.dev));
    }
    let m = KernelMount::new(&[], &lo.dev, mnt);
    write(&m.dir);
}

/// [`ntfs_rw`] on the NTFS in `range` (bytes) of `disk`, through a loop
/// device.
fn ntfs_rw_in(disk: &Path, range: (u64, u64), mnt: &Path, write: impl FnOnce(&Path)) {
    let lo = LoopDev::attach(disk, Some(range), false);
    ntfs_rw(&lo.dev, mnt, write);
}

/// Make a FAT16 labelled `label` in sectors `start..start + sectors` of
/// `disk`; the volume as mtools names it (`DISK@@OFFSET`).
fn mkfs_fat16_in(disk: &Path, start: u64, sectors: u64, label: &str) -> String {
    run(Command::new("mkfs.vfat")
        .args(["-F", "16", "-n", label, "--offset", &start.to_string()])
        .arg(disk)
        .arg((sectors / 2).to_string()));
    format!("{}@@{}", disk.display(), start * SECTOR)
}

/// `disk.img` in `d`: a 64 MiB disk partitioned with sfdisk's `script`.
fn partitioned_disk(d: &Path, script: &str) -> PathBuf {
    let disk = d.join("disk.img");
    zeroed_file(&disk, 64 * MIB as u64);
    sfdisk(&disk, script);
    disk
}

/// State `at` of `m`, whose `info` must describe a `table` partition
/// table (`gpt`, `mbr`) holding `volumes` (name, filesystem).
fn partitioned_state(m: &Mounted, at: &str, table: &str, volumes: &[(&str, &str)]) -> PathBuf {
    let state = m.path(&format!("at/{at}"));
    let info = info(&state);
    assert!(
        info.contains(&format!("partition_table: {table}\n")),
        "{info}"
    );
    for (name, fs) in volumes {
        assert!(volume_line(&info, name).contains(fs), "{info}");
    }
    state
}

#[test]
fn a_gpt_disk_holding_ext4_and_fat_at_two_moments() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = init_store(d, "64M");
    let disk = partitioned_disk(
        d,
        "label: gpt\n\
         start=2048, size=57344, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=\"linux\"\n\
         start=59392, size=65536, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, name=\"shared\"\n",
    );
    let p1 = (2048 * SECTOR, 57344 * SECTOR);
    let fat = mkfs_fat16_in(&disk, 59392, 65536, "SHARED");
    let times = ["2026-11-23T06:30:15Z", "2026-11-23T06:31:00Z"];
    let log1 = b"boot ok\n".to_vec();
    let log2 = b"boot ok\nintruder logged in\n".to_vec();
    ext4_rw_in(&disk, p1, true, &d.join("rw"), |r| {
        std::fs::create_dir_all(r.join("var/log")).unwrap();
        std::fs::write(r.join("var/log/auth.log"), &log1).unwrap();
        std::os::unix::fs::symlink("/var/log/auth.log", r.join("auth")).unwrap();
    });
    run(mtools("mmd", &fat).arg("::/Exchange"));
    fat_put(&fat, d, "::/Exchange/plan.txt", b"the plan\n");
    import(&store, &disk, times[0]);
    ext4_rw_in(&disk, p1, false, &d.join("rw"), |r| {
        std::fs::write(r.join("var/log/auth.log"), &log2).unwrap();
        std::fs::write(r.join("dropped.sh"), b"#!/bin/sh\n").unwrap();
    });
    run(mtools("mdel", &fat).arg("::/Exchange/plan.txt"));
    fat_put(&fat, d, "::/Exchange/other.txt", b"something else\n");
    import(&store, &disk, times[1]);

    let m = Mounted::start(&store, &d.join("mnt"), &[]);
    let mut walks = Vec::new();
    for at in times {
        let state = partitioned_state(&m, at, "gpt", &[("p1", "ext4"), ("p2", "fat16")]);
        let what = format!("GPT p1 (ext4) at {at}");
        let ext4 = walk_as_reference(&what, &state, "p1", Reference::Noload, d);
        let what = format!("GPT p2 (FAT16) at {at}");
        let fat = walk_as_reference(&what, &state, "p2", Reference::SleuthKit, d);
        walks.push((ext4, fat));
    }
    let [(e1, f1), (e2, f2)] = &walks[..] else {
        unreachable!()
    };
    assert!(line_of(e1, "var/log/auth.log", "t1").contains(&sha_of(&log1)));
    assert!(line_of(e1, "auth", "t1").contains("-> /var/log/auth.log"));
    assert!(!has(e1, "dropped.sh") && has(e2, "dropped.sh"));
    assert!(line_of(e2, "var/log/auth.log", "t2").contains(&sha_of(&log2)));
    assert!(has(f1, "Exchange/plan.txt") && !has(f1, "Exchange/other.txt"));
    assert!(!has(f2, "Exchange/plan.txt") && has(f2, "Exchange/other.txt"));
}

#[test]
fn an_mbr_disk_with_fat_in_a_primary_and_ext4_and_ntfs_in_logicals() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = init_store(d, "64M");
    let disk = partitioned_disk(
        d,
        "label: dos\n\
         start=2048, size=30720, type=6\n\
         start=34816, size=96256, type=5\n\
         start=36864, size=40960, type=83\n\
         start=79872, size=49152, type=7\n",
    );
    let fat = mkfs_fat16_in(&disk, 2048, 30720, "BOOTFAT");
    let p5 = (36864 * SECTOR, 40960 * SECTOR);
    let p6 = (79872 * SECTOR, 49152 * SECTOR);
    mkntfs(&LoopDev::attach(&disk, Some(p6), false).dev, "WINDATA");
    let times = ["2026-11-23T06:30:15Z", "2026-11-23T06:31:00Z"];
    let stream = b"this is a named stream\n".to_vec();
    fat_put(&fat, d, "::/BOOT.CFG", b"timeout=5\n");
    ext4_rw_in(&disk, p5, true, &d.join("rw"), |r| {
        std::fs::write(r.join("home.txt"), b"home\n").unwrap();
    });
    ntfs_rw_in(&disk, p6, &d.join("rw"), |r| {
        std::fs::create_dir(r.join("Users")).unwrap();
        std::fs::write(r.join("Users/diary.txt"), b"dear diary\n").unwrap();
        std::fs::write(r.join("Users/diary.txt:notes"), &stream).unwrap();
    });
    import(&store, &disk, times[0]);
    fat_put(&fat, d, "::/BOOT.CFG", b"timeout=0\n");
    ext4_rw_in(&disk, p5, false, &d.join("rw"), |r| {
        std::fs::rename(r.join("home.txt"), r.join("moved.txt")).unwrap();
    });
    ntfs_rw_in(&disk, p6, &d.join("rw"), |r| {
        std::fs::write(r.join("Users/diary.txt"), b"dear diary, again\n").unwrap();
    });
    import(&store, &disk, times[1]);

    let m = Mounted::start(&store, &d.join("mnt"), &[]);
    let mut walks = Vec::new();
    for at in times {
        let volumes = [("p1", "fat16"), ("p5", "ext4"), ("p6", "ntfs")];
        let state = partitioned_state(&m, at, "mbr", &volumes);
        let what = format!("MBR p1 (FAT16) at {at}");
        let fat = walk_as_reference(&what, &state, "p1", Reference::SleuthKit, d);
        let what = format!("MBR p5 (logical, ext4) at {at}");
        let ext4 = walk_as_reference(&what, &state, "p5", Reference::Noload, d);
        let what = format!("MBR p6 (logical, NTFS) at {at}");
        let ntfs = walk_as_reference(&what, &state, "p6", Reference::Ntfs3g, d);
        walks.push((fat, ext4, ntfs));
    }
    let [(f1, e1, n1), (f2, e2, n2)] = &walks[..] else {
        unreachable!()
    };
    assert_ne!(line_of(f1, "BOOT.CFG", "t1"), line_of(f2, "BOOT.CFG", "t2"));
    assert!(has(e1, "home.txt") && !has(e1, "moved.txt"));
    assert!(!has(e2, "home.txt") && has(e2, "moved.txt"));
    let notes = format!("xattr:user.notes={}", sha_of(&stream));
    assert!(line_of(n1, "Users/diary.txt", "t1").contains(&notes));
    assert!(line_of(n2, "Users/diary.txt", "t2").contains(&notes));
    assert!(line_of(n2, "Users/diary.txt", "t2").contains(&sha_of(b"dear diary, again\n")));
}
