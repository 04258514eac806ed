//! Tests of the FAT reader against images made by mkfs.vfat and written
//! by mtools (no root needed), damaged on purpose, and at random.

use super::*;
use crate::fs::ntfs::tests::{need_tool, survive_mutations, walk_briefly};
use crate::fs::source::{FileDisk, MemDisk};
use diskhist_test_common::{ok, Rng};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

/// FAT32's boot sector field naming the FSInfo sector, and where in
/// that sector the next free cluster hint is.
const FS_INFO_SECTOR: usize = 48;
const FS_INFO_NEXT_FREE: usize = 492;

/// 2020-02-03T04:05:06Z: even seconds, which FAT can keep.
const HELLO_MTIME_S: u64 = 1_580_702_706;

fn mtools(tool: &str, image: &Path) -> Command {
    need_tool(tool, "mtools");
    let mut cmd = Command::new(tool);
    cmd.env("MTOOLS_SKIP_CHECK", "1")
        .env("TZ", "UTC")
        .arg("-i")
        .arg(image);
    cmd
}

/// What a built image holds: every file's path and content, every
/// directory, and the names of `many/` in the order they were made.
struct Built {
    image: PathBuf,
    files: Vec<(String, Vec<u8>)>,
    dirs: Vec<String>,
    many: Vec<String>,
}

/// A FAT image of `bits` made by mkfs.vfat and written by mtools: long
/// names, 8.3 names in both cases, a non-ASCII name, a read-only file,
/// a 3 MiB file, a fragmented one, 300 files in one directory.
fn build(dir: &Path, bits: u8) -> Built {
    need_tool("mkfs.vfat", "dosfstools");
    let image = dir.join(format!("fat{bits}.img"));
    let (kib, extra): (&str, &[&str]) = match bits {
        12 => ("8192", &[]),
        16 => ("32768", &[]),
        _ => ("65536", &["-s", "1"]),
    };
    ok(Command::new("mkfs.vfat")
        .args(["-C", "-F", &bits.to_string(), "-n", "DHFAT"])
        .args(extra)
        .arg(&image)
        .arg(kib));
    let stage = dir.join(format!("stage{bits}"));
    std::fs::create_dir_all(&stage).unwrap();
    let mut rng = Rng::new(u64::from(bits));
    let mut built = Built {
        image: image.clone(),
        files: Vec::new(),
        dirs: Vec::new(),
        many: Vec::new(),
    };
    let put = |built: &mut Built, path: &str, content: Vec<u8>| {
        let local = stage.join(path.replace('/', "_"));
        std::fs::write(&local, &content).unwrap();
        let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(HELLO_MTIME_S);
        std::fs::File::options()
            .write(true)
            .open(&local)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        ok(mtools("mcopy", &image)
            .arg("-m")
            .arg(&local)
            .arg(format!("::/{path}")));
        built.files.push((path.to_string(), content));
    };
    let mkdir = |built: &mut Built, path: &str| {
        ok(mtools("mmd", &image).arg(format!("::/{path}")));
        built.dirs.push(path.to_string());
    };
    put(&mut built, "hello.txt", b"hello\n".to_vec());
    put(
        &mut built,
        "A rather long file name with spaces.text",
        b"long\n".to_vec(),
    );
    put(&mut built, "UPPER.TXT", b"upper\n".to_vec());
    put(&mut built, "lower.txt", b"lower\n".to_vec());
    put(&mut built, "\u{e9}t\u{e9}.txt", b"accents\n".to_vec());
    put(&mut built, "readonly.txt", b"read only\n".to_vec());
    ok(mtools("mattrib", &image).args(["+r", "::/readonly.txt"]));
    put(&mut built, "big.bin", rng.bytes(3 << 20));
    mkdir(&mut built, "Some Directory");
    mkdir(&mut built, "Some Directory/sub");
    put(
        &mut built,
        "Some Directory/sub/deep.txt",
        b"deep\n".to_vec(),
    );
    // A hole between two files, then a file larger than the hole: its
    // chain runs through the hole and on past the second file.
    mkdir(&mut built, "frag");
    put(&mut built, "frag/gap1", rng.bytes(20_000));
    put(&mut built, "frag/gap2", rng.bytes(20_000));
    put(&mut built, "frag/gap3", rng.bytes(20_000));
    ok(mtools("mdel", &image).arg("::/frag/gap2"));
    built.files.retain(|f| f.0 != "frag/gap2");
    if bits == 32 {
        // Forget FSInfo's next-free hint, so that mtools looks for free
        // clusters from the start, finding the hole.
        let mut bytes = std::fs::read(&image).unwrap();
        let sector_bytes = usize::from(le_u16(&bytes, bpb::BYTES_PER_SECTOR));
        let fs_info = usize::from(le_u16(&bytes, FS_INFO_SECTOR));
        put_u32(
            &mut bytes,
            fs_info * sector_bytes + FS_INFO_NEXT_FREE,
            u32::MAX,
        );
        std::fs::write(&image, bytes).unwrap();
    }
    put(&mut built, "frag/fragmented.bin", rng.bytes(300_000));
    mkdir(&mut built, "many");
    for i in 0..300 {
        let name = format!("file number {i}.txt");
        put(
            &mut built,
            &format!("many/{name}"),
            format!("{i}\n").into_bytes(),
        );
        built.many.push(name);
    }
    built
}

fn open_image(path: &Path) -> FatFs {
    open(Source::new(Arc::new(FileDisk::open(path).unwrap()))).unwrap()
}

/// Every node under `dir`: (path, entry).
fn walk(fs: &mut FatFs, dir: NodeId, path: &str, out: &mut Vec<(String, DirEntry)>) {
    for e in fs.list(dir).unwrap() {
        let p = format!("{path}{}", String::from_utf8(e.name.clone()).unwrap());
        let sub = e.kind == FileKind::Dir;
        out.push((p.clone(), e.clone()));
        if sub {
            walk(fs, e.node, &format!("{p}/"), out);
        }
    }
}

fn read_all(fs: &mut FatFs, node: NodeId, size: u64) -> Vec<u8> {
    let mut data = vec![0u8; size as usize + 10];
    let n = fs.read(node, 0, &mut data).unwrap();
    data.truncate(n);
    data
}

#[test]
fn reads_what_mtools_wrote_on_fat12_16_32() {
    let tmp = tempfile::tempdir().unwrap();
    for bits in [12, 16, 32] {
        let built = build(tmp.path(), bits);
        let mut fs = open_image(&built.image);
        assert_eq!(fs.label().as_deref(), Some("DHFAT"));
        let mut nodes = Vec::new();
        walk(&mut fs, ROOT_NODE, "", &mut nodes);
        let mut seen: Vec<&str> = nodes.iter().map(|n| n.0.as_str()).collect();
        let mut expected: Vec<&str> = built
            .files
            .iter()
            .map(|f| f.0.as_str())
            .chain(built.dirs.iter().map(String::as_str))
            .collect();
        seen.sort_unstable();
        expected.sort_unstable();
        assert_eq!(seen, expected, "FAT{bits}: the names");
        for (path, content) in &built.files {
            let e = &nodes.iter().find(|n| &n.0 == path).unwrap().1;
            let st = fs.stat(e.node).unwrap();
            assert_eq!(
                (e.kind, st.kind, st.size),
                (FileKind::File, FileKind::File, content.len() as u64),
                "FAT{bits} {path}"
            );
            assert!(
                read_all(&mut fs, e.node, st.size) == *content,
                "FAT{bits} {path}: content"
            );
            assert_eq!(
                st.mtime,
                Some(TimeNs(HELLO_MTIME_S as i64 * 1_000_000_000)),
                "FAT{bits} {path}: mtime"
            );
            assert_eq!(st.ctime, st.mtime);
            assert_eq!(
                st.perm,
                if path == "readonly.txt" { 0o555 } else { 0o755 },
                "{path}"
            );
            assert_eq!((st.ino, st.nlink, st.uid, st.gid), (e.node, 1, 0, 0));
            let names: Vec<&str> = st.times.iter().map(|t| t.0).collect();
            assert_eq!(
                names,
                ["user.fat.created", "user.fat.modified", "user.fat.accessed"]
            );
        }
        for d in &built.dirs {
            let e = &nodes.iter().find(|n| &n.0 == d).unwrap().1;
            let st = fs.stat(e.node).unwrap();
            assert_eq!((st.kind, st.perm), (FileKind::Dir, 0o755));
            assert!(
                st.size > 0 && st.size % fs.layout.cluster_bytes == 0,
                "{d}: {}",
                st.size
            );
        }
        let root = fs.stat(ROOT_NODE).unwrap();
        assert_eq!(
            (root.kind, root.ino, root.mtime),
            (FileKind::Dir, ROOT_NODE, Some(TimeNs(0)))
        );

        // Directory order is the order the entries were made in.
        let many = fs.lookup(ROOT_NODE, b"many").unwrap().unwrap();
        let order: Vec<String> = fs
            .list(many.node)
            .unwrap()
            .into_iter()
            .map(|e| String::from_utf8(e.name).unwrap())
            .collect();
        assert_eq!(order, built.many, "FAT{bits}: listing order");

        // Lookups are exact; `.` and `..` are not entries.
        assert!(fs.lookup(ROOT_NODE, b"HELLO.TXT").unwrap().is_none());
        assert!(fs
            .lookup(ROOT_NODE, "\u{e9}t\u{e9}.txt".as_bytes())
            .unwrap()
            .is_some());
        let sub = nodes
            .iter()
            .find(|n| n.0 == "Some Directory")
            .unwrap()
            .1
            .node;
        assert!(fs.lookup(sub, b"..").unwrap().is_none());
        assert!(matches!(
            fs.list(many.node + 1),
            Err(FsError::NotADirectory) | Ok(_)
        ));

        // Random reads of the large and the fragmented file.
        let mut rng = Rng::new(7 + u64::from(bits));
        for path in ["big.bin", "frag/fragmented.bin"] {
            let content = &built.files.iter().find(|f| f.0 == path).unwrap().1;
            let node = nodes.iter().find(|n| n.0 == path).unwrap().1.node;
            let chain_len = {
                let e = fs.raw_entry(node).unwrap();
                let first = first_cluster(&e, fs.layout.fat_type);
                fs.chain(first, content.len() as u64).unwrap().extents.len()
            };
            if path.starts_with("frag") {
                assert!(
                    chain_len >= 2,
                    "FAT{bits}: the file meant to be fragmented is not"
                );
            }
            for _ in 0..200 {
                let offset = rng.below(content.len() as u64 + 100);
                let mut buf = vec![0u8; rng.range(1, 300_000) as usize];
                let n = fs.read(node, offset, &mut buf).unwrap();
                let start = (offset as usize).min(content.len());
                let end = (start + buf.len()).min(content.len());
                assert_eq!(n, end - start);
                assert!(
                    buf[..n] == content[start..end],
                    "FAT{bits} {path} at {offset}"
                );
            }
        }

        // Node ids name the same entries in another opening.
        let mut again = open_image(&built.image);
        for (path, e) in nodes.iter().step_by(17) {
            assert_eq!(
                again.stat(e.node).unwrap(),
                fs.stat(e.node).unwrap(),
                "{path}"
            );
        }
    }
}

#[test]
fn converts_dates_as_the_kernel_does() {
    // 2020-02-03 04:05:06: date (40 << 9 | 2 << 5 | 3), time (4 << 11 | 5 << 5 | 3).
    assert_eq!(
        fat_time(4 << 11 | 5 << 5 | 3, 40 << 9 | 2 << 5 | 3, 0),
        TimeNs(1_580_702_706_000_000_000)
    );
    // Hundredths past a second: 1.99 s more.
    assert_eq!(
        fat_time(4 << 11 | 5 << 5 | 3, 40 << 9 | 2 << 5 | 3, 199),
        TimeNs(1_580_702_707_990_000_000)
    );
    // Month and day 0 count as 1: 1980-01-01.
    assert_eq!(fat_time(0, 0, 0), TimeNs(315_532_800_000_000_000));
    // 2100 is not a leap year: 2100-03-01 follows 2100-02-28.
    let feb28 = fat_time(0, 120 << 9 | 2 << 5 | 28, 0).0;
    let mar1 = fat_time(0, 120 << 9 | 3 << 5 | 1, 0).0;
    assert_eq!(mar1 - feb28, 86_400_000_000_000);
}

/// The image's bytes, with `patch` applied.
fn patched(image: &[u8], patch: impl FnOnce(&mut Vec<u8>)) -> Source {
    let mut bytes = image.to_vec();
    patch(&mut bytes);
    Source::new(Arc::new(MemDisk(bytes)))
}

fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn hostile_images_answer_errors_in_bounded_time() {
    let tmp = tempfile::tempdir().unwrap();
    let built = build(tmp.path(), 32);
    let image = std::fs::read(&built.image).unwrap();
    let started = Instant::now();

    // A damaged boot sector: opening fails, saying so.
    type Patch = (&'static str, fn(&mut Vec<u8>));
    let boot: [Patch; 8] = [
        ("bytes per sector 0", |b| {
            put_u16(b, bpb::BYTES_PER_SECTOR, 0)
        }),
        ("sectors per cluster 0", |b| b[bpb::SECTORS_PER_CLUSTER] = 0),
        ("no FAT", |b| b[bpb::FATS] = 0),
        ("FAT of 0 sectors", |b| {
            put_u32(b, bpb::SECTORS_PER_FAT_32, 0)
        }),
        ("reserved sectors 0", |b| {
            put_u16(b, bpb::RESERVED_SECTORS, 0)
        }),
        ("a petabyte of sectors", |b| {
            put_u32(b, bpb::TOTAL_SECTORS_32, u32::MAX)
        }),
        ("root at cluster 1", |b| put_u32(b, bpb::ROOT_CLUSTER, 1)),
        ("root past the end", |b| {
            put_u32(b, bpb::ROOT_CLUSTER, 0x0fff_fff0)
        }),
    ];
    for (what, patch) in boot {
        match open(patched(&image, patch)) {
            Err(FsError::Damaged(_)) => {}
            Err(e) => panic!("{what}: {e}"),
            Ok(mut fs) => {
                // Some damage only shows in the root directory.
                assert!(fs.stat(ROOT_NODE).is_ok(), "{what}");
                assert!(
                    matches!(fs.list(ROOT_NODE), Err(FsError::Damaged(_))),
                    "{what}"
                );
            }
        }
    }

    let mut fs = open(patched(&image, |_| {})).unwrap();
    let raw = |fs: &mut FatFs, name: &[u8]| {
        let node = fs.lookup(ROOT_NODE, name).unwrap().unwrap().node;
        (node, fs.raw_entry(node).unwrap())
    };
    let (many, many_raw) = raw(&mut fs, b"many");
    let many_cluster = first_cluster(&many_raw, FatType::Fat32);
    let (some, some_raw) = raw(&mut fs, b"Some Directory");
    let some_cluster = first_cluster(&some_raw, FatType::Fat32);
    let (big, big_raw) = raw(&mut fs, b"big.bin");
    let big_cluster = first_cluster(&big_raw, FatType::Fat32);
    let sub = fs.lookup(some, b"sub").unwrap().unwrap().node;
    let (hello, _) = raw(&mut fs, b"hello.txt");
    let layout = fs.layout;
    assert!(
        fs.fat.next(many_cluster).unwrap().is_some(),
        "many/ should take several clusters"
    );
    let fat_entry = |cluster: u32| (layout.fat_offset + 4 * u64::from(cluster)) as usize;
    let entry_at = |node: NodeId| (node * DIR_ENTRY_BYTES) as usize;

    // A directory whose first cluster is followed by itself.
    let mut fs = open(patched(&image, |b| {
        put_u32(b, fat_entry(many_cluster), many_cluster)
    }))
    .unwrap();
    let t = Instant::now();
    assert!(matches!(fs.list(many), Err(FsError::Damaged(_))));
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(fs.stat(many).unwrap().size <= MAX_DIR_ENTRIES as u64 * DIR_ENTRY_BYTES);

    // Directory cycles: `sub` made to point at its parent, `many` at
    // the root (cluster 0): both left out, the rest listed.
    let mut fs = open(patched(&image, |b| {
        let e = entry_at(sub);
        put_u16(b, e + entry::CLUSTER_HIGH, (some_cluster >> 16) as u16);
        put_u16(b, e + entry::CLUSTER_LOW, some_cluster as u16);
        let e = entry_at(many);
        put_u16(b, e + entry::CLUSTER_HIGH, 0);
        put_u16(b, e + entry::CLUSTER_LOW, 0);
    }))
    .unwrap();
    let root: Vec<Vec<u8>> = fs
        .list(ROOT_NODE)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert!(!root.contains(&b"many".to_vec()) && root.contains(&b"hello.txt".to_vec()));
    assert!(fs.list(some).unwrap().is_empty());

    // A file claiming 4 GiB over its one cluster, and a chain leading
    // out of the volume.
    let mut fs = open(patched(&image, |b| {
        put_u32(b, entry_at(hello) + entry::SIZE, u32::MAX);
        put_u32(b, fat_entry(big_cluster), 0x0fff_fff0);
    }))
    .unwrap();
    assert_eq!(fs.stat(hello).unwrap().size, u64::from(u32::MAX));
    let mut buf = [0u8; 6];
    assert_eq!(fs.read(hello, 0, &mut buf).unwrap(), 6);
    assert_eq!(&buf, b"hello\n");
    assert!(matches!(
        fs.read(hello, 1 << 31, &mut buf),
        Err(FsError::Damaged(_))
    ));
    assert!(matches!(
        fs.read(big, 0, &mut buf),
        Err(FsError::Damaged(_))
    ));

    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn survives_damaged_and_truncated_images() {
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("small.img");
    need_tool("mkfs.vfat", "dosfstools");
    ok(Command::new("mkfs.vfat")
        .args(["-C", "-F", "12", "-n", "FUZZ"])
        .arg(&image)
        .arg("1024"));
    let stage = tmp.path().join("a.txt");
    std::fs::write(&stage, b"some content\n".repeat(400)).unwrap();
    for path in ["::/a.txt", "::/A long name.txt"] {
        ok(mtools("mcopy", &image).arg(&stage).arg(path));
    }
    ok(mtools("mmd", &image).arg("::/dir"));
    ok(mtools("mmd", &image).arg("::/dir/deeper"));
    ok(mtools("mcopy", &image)
        .arg(&stage)
        .arg("::/dir/deeper/b.txt"));
    let bytes = std::fs::read(&image).unwrap();
    survive_mutations(&bytes, 0xfa7, |src| {
        if let Ok(mut fs) = open(src) {
            fs.label();
            walk_briefly(&mut fs);
        }
    });
}
