//! Tests of the NTFS reader against images made by mkntfs and written
//! through ntfs-3g (root and FUSE needed), damaged on purpose, and at
//! random; and the helpers the FAT reader's tests share.

use super::*;
use crate::fs::source::{FileDisk, MemDisk};
use diskhist_test_common::{ok, KernelMount, Rng};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Fails the test, naming the Debian package, when `tool` is missing
/// (`make deps-test` installs them).
pub(crate) fn need_tool(tool: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{tool} is missing: install the Debian package {package} (make deps-test)"
    );
}

/// Opens, lists, stats, looks up, reads and reads links in a bounded
/// breadth-first walk, ignoring every error: what a browsing user
/// does to a damaged filesystem.
pub(crate) fn walk_briefly(fs: &mut dyn FileSystem) {
    let mut queue = std::collections::VecDeque::from([(fs.root(), 0)]);
    let mut visited = 0;
    let mut buf = vec![0u8; 64 * 1024];
    while let Some((dir, depth)) = queue.pop_front() {
        let Ok(entries) = fs.list(dir) else { continue };
        for e in entries {
            visited += 1;
            if visited > 2000 {
                return;
            }
            let _ = fs.lookup(dir, &e.name);
            let Ok(st) = fs.stat(e.node) else { continue };
            let _ = fs.xattrs(e.node);
            match st.kind {
                FileKind::Dir if depth < 8 => queue.push_back((e.node, depth + 1)),
                FileKind::File => {
                    let _ = fs.read(e.node, 0, &mut buf);
                    let _ = fs.read(e.node, st.size / 2, &mut buf);
                }
                FileKind::Symlink => {
                    let _ = fs.read_link(e.node);
                }
                _ => {}
            }
        }
    }
}

/// Runs `f` on a few hundred damaged copies of `image` (bytes flipped
/// in its non-zero sectors, or the image cut short), each on its own
/// thread: a panic escaping `f`, or an iteration running over 20 s,
/// fails the test, naming the seed and iteration to replay.
pub(crate) fn survive_mutations(image: &[u8], seed: u64, f: fn(Source)) {
    const SECTOR: usize = 512;
    const FLIPS: u64 = 300;
    const CUTS: u64 = 60;
    const HANG: Duration = Duration::from_secs(20);
    const BUDGET: Duration = Duration::from_secs(90);
    let nonzero: Vec<usize> = image
        .chunks(SECTOR)
        .enumerate()
        .filter(|(_, s)| s.iter().any(|&b| b != 0))
        .map(|(i, _)| i)
        .collect();
    let mut rng = Rng::new(seed);
    let started = Instant::now();
    for i in 0..FLIPS + CUTS {
        if started.elapsed() > BUDGET {
            break;
        }
        let mut bytes = image.to_vec();
        if i < FLIPS {
            for _ in 0..rng.range(1, 16) {
                let sector = nonzero[rng.below(nonzero.len() as u64) as usize];
                let at = sector * SECTOR + rng.below(SECTOR as u64) as usize;
                if let Some(b) = bytes.get_mut(at) {
                    *b = rng.next_u64() as u8;
                }
            }
        } else {
            bytes.truncate(rng.below(image.len() as u64) as usize);
        }
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let src = Source::new(Arc::new(MemDisk(bytes)));
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(move || f(src)));
            let _ = tx.send(outcome.is_ok());
        });
        match rx.recv_timeout(HANG) {
            Ok(true) => {}
            Ok(false) => panic!("a panic escaped the reader: seed {seed:#x}, iteration {i}"),
            Err(_) => panic!("over {HANG:?} on one image: seed {seed:#x}, iteration {i}"),
        }
    }
}

fn write_file(path: &Path, content: &[u8]) {
    std::fs::write(path, content).unwrap();
}

/// Sets a file's Windows attributes through ntfs-3g's xattr.
fn set_ntfs_attributes(path: &Path, attributes: u32) {
    let name = c"system.ntfs_attrib_be";
    let path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let value = attributes.to_be_bytes();
    // SAFETY: both strings are NUL-terminated and live across the
    // call; `value` is 4 readable bytes.
    let rc = unsafe {
        libc::setxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(rc, 0, "setxattr: {}", io::Error::last_os_error());
}

/// 2020-02-03T04:05:06.789Z, to 100 ns, NTFS's resolution.
const HELLO_MTIME_NS: i64 = 1_580_702_706_789_000_000;
const ZONE: &[u8] = b"[ZoneTransfer]\nZoneId=3\n";
const BIG_BYTES: usize = 5 << 20;
const BIG_STREAM_BYTES: usize = 100 * 1024;

/// An NTFS image made by mkntfs and written through ntfs-3g (root and
/// FUSE needed): files, directories, a hard link, symlinks, a FIFO,
/// names differing in case only, a non-ASCII name, named streams (one
/// too big for an xattr), a compressed file, 300 files in a directory.
fn build(dir: &Path, size_mib: u64, seed: u64) -> std::path::PathBuf {
    need_tool("mkntfs", "ntfs-3g");
    need_tool("mount.ntfs-3g", "ntfs-3g");
    let image = dir.join("ntfs.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(size_mib << 20)
        .unwrap();
    ok(Command::new("mkntfs")
        .args(["-F", "-Q", "-q", "-L", "DHNTFS"])
        .arg(&image));
    let m = KernelMount::new(
        &["-t", "ntfs-3g", "-o", "streams_interface=windows"],
        &image,
        &dir.join("mnt-rw"),
    );
    let root = m.dir.clone();
    let mut rng = Rng::new(seed);
    write_file(&root.join("hello.txt"), b"hello\n");
    // touch(1) sets it by path: ntfs-3g sets a file's mtime again when
    // a handle opened for writing is closed.
    ok(Command::new("touch")
        .args(["-d", "2020-02-03 04:05:06.789 UTC"])
        .arg(root.join("hello.txt")));
    std::fs::create_dir_all(root.join("dir/sub")).unwrap();
    write_file(&root.join("dir/sub/deep.txt"), b"deep\n");
    write_file(&root.join("big.bin"), &rng.bytes(BIG_BYTES));
    write_file(
        &root.join("big.bin:big.stream"),
        &rng.bytes(BIG_STREAM_BYTES),
    );
    write_file(&root.join("hard1"), b"linked\n");
    std::fs::hard_link(root.join("hard1"), root.join("dir/hard2")).unwrap();
    std::os::unix::fs::symlink("hello.txt", root.join("short_link")).unwrap();
    let long_target = format!("{}/target/that/is/rather/long", "x".repeat(150));
    std::os::unix::fs::symlink(&long_target, root.join("long_link")).unwrap();
    write_file(&root.join("\u{e9}t\u{e9}_unicode"), b"accents\n");
    write_file(&root.join("Case"), b"upper\n");
    write_file(&root.join("case"), b"lower\n");
    write_file(&root.join("hello2.txt"), b"downloaded\n");
    write_file(&root.join("hello2.txt:Zone.Identifier"), ZONE);
    ok(Command::new("mkfifo").arg(root.join("fifo")));
    std::fs::create_dir(root.join("compressed")).unwrap();
    set_ntfs_attributes(&root.join("compressed"), 0x800);
    write_file(
        &root.join("compressed/c.txt"),
        &b"squeeze me ".repeat(10_000),
    );
    std::fs::create_dir(root.join("many")).unwrap();
    for i in 0..300 {
        write_file(
            &root.join(format!("many/file number {i}")),
            format!("{i}\n").as_bytes(),
        );
    }
    drop(m);
    image
}

/// What a node looks like, compared between the reader and ntfs-3g.
#[derive(Debug, PartialEq)]
struct Seen {
    path: String,
    kind: FileKind,
    size: u64,
    perm: u16,
    ino: u64,
    nlink: u32,
    mtime_ns: i64,
    target: Vec<u8>,
    content_hash: u64,
}

fn hash(data: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    data.hash(&mut h);
    h.finish()
}

fn walk_reader(fs: &mut NtfsFs, dir: NodeId, path: &str, out: &mut Vec<Seen>) {
    for e in fs.list(dir).unwrap() {
        let p = format!("{path}/{}", String::from_utf8(e.name.clone()).unwrap());
        let st = fs.stat(e.node).unwrap();
        assert_eq!(st.kind, e.kind, "{p}");
        let mut content = Vec::new();
        if st.kind == FileKind::File && !p.starts_with("/compressed/") {
            content = vec![0u8; st.size as usize];
            assert_eq!(fs.read(e.node, 0, &mut content).unwrap(), content.len());
        }
        let target = if st.kind == FileKind::Symlink {
            fs.read_link(e.node).unwrap()
        } else {
            Vec::new()
        };
        out.push(Seen {
            path: p.clone(),
            kind: st.kind,
            size: if st.kind == FileKind::Dir { 0 } else { st.size },
            perm: st.perm,
            ino: st.ino,
            nlink: st.nlink,
            mtime_ns: st.mtime.unwrap().0,
            target,
            content_hash: hash(&content),
        });
        if st.kind == FileKind::Dir {
            walk_reader(fs, e.node, &p, out);
        }
    }
}

fn walk_mount(dir: &Path, path: &str, out: &mut Vec<Seen>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        let p = format!("{path}/{name}");
        let md = std::fs::symlink_metadata(e.path()).unwrap();
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            FileKind::Dir
        } else if ft.is_symlink() {
            FileKind::Symlink
        } else if ft.is_fifo() {
            FileKind::Fifo
        } else if ft.is_socket() {
            FileKind::Socket
        } else if ft.is_char_device() {
            FileKind::CharDevice
        } else if ft.is_block_device() {
            FileKind::BlockDevice
        } else {
            FileKind::File
        };
        let content = if kind == FileKind::File && !p.starts_with("/compressed/") {
            std::fs::read(e.path()).unwrap()
        } else {
            Vec::new()
        };
        let target = if kind == FileKind::Symlink {
            std::fs::read_link(e.path())
                .unwrap()
                .into_os_string()
                .into_encoded_bytes()
        } else {
            Vec::new()
        };
        out.push(Seen {
            path: p.clone(),
            kind,
            size: if kind == FileKind::Dir { 0 } else { md.size() },
            perm: (md.mode() & 0o7777) as u16,
            ino: md.ino(),
            nlink: md.nlink() as u32,
            mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
            target,
            content_hash: hash(&content),
        });
        if kind == FileKind::Dir {
            walk_mount(&e.path(), &p, out);
        }
    }
}

fn open_image(path: &Path) -> NtfsFs {
    open(Source::new(Arc::new(FileDisk::open(path).unwrap()))).unwrap()
}

#[test]
fn shows_what_ntfs_3g_shows() {
    let tmp = tempfile::tempdir().unwrap();
    let image = build(tmp.path(), 64, 1);
    let mut fs = open_image(&image);
    let mut ours = Vec::new();
    walk_reader(&mut fs, ROOT_RECORD, "", &mut ours);
    let mut theirs = Vec::new();
    {
        let m = KernelMount::new(
            &["-t", "ntfs-3g", "-o", "ro"],
            &image,
            &tmp.path().join("mnt-ro"),
        );
        walk_mount(&m.dir, "", &mut theirs);
    }
    // ntfs-3g lists a directory's index root, then its index blocks in
    // disk order; the reader lists in collation order: compare sorted.
    ours.sort_by(|a, b| a.path.cmp(&b.path));
    theirs.sort_by(|a, b| a.path.cmp(&b.path));
    assert_eq!(ours.len(), theirs.len());
    for (a, b) in ours.iter().zip(&theirs) {
        assert_eq!(a, b);
    }
    let kind_of = |p: &str| ours.iter().find(|s| s.path == p).unwrap().kind;
    assert_eq!(kind_of("/fifo"), FileKind::Fifo);
    assert_eq!(kind_of("/short_link"), FileKind::Symlink);
    assert_eq!(fs.label().as_deref(), Some("DHNTFS"));
}

#[test]
fn times_streams_and_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let image = build(tmp.path(), 64, 2);
    let mut fs = open_image(&image);
    let root = fs.root();
    let node =
        |fs: &mut NtfsFs, dir, name: &str| fs.lookup(dir, name.as_bytes()).unwrap().unwrap().node;

    // Every timestamp, to 100 ns.
    let hello = node(&mut fs, root, "hello.txt");
    let st = fs.stat(hello).unwrap();
    assert_eq!(st.mtime, Some(TimeNs(HELLO_MTIME_NS)));
    assert_eq!(st.atime, Some(TimeNs(HELLO_MTIME_NS)));
    let names: Vec<&str> = st.times.iter().map(|t| t.0).collect();
    assert_eq!(
        names,
        [
            "user.ntfs.si.created",
            "user.ntfs.si.modified",
            "user.ntfs.si.changed",
            "user.ntfs.si.accessed",
            "user.ntfs.fn.created",
            "user.ntfs.fn.modified",
            "user.ntfs.fn.changed",
            "user.ntfs.fn.accessed",
        ]
    );
    assert_eq!(st.times[1].1, TimeNs(HELLO_MTIME_NS));
    assert_eq!(st.crtime, Some(st.times[0].1));
    assert_eq!(st.ctime, Some(st.times[2].1));

    // Named streams: small ones as xattrs, every one by `FILE:STREAM`.
    let hello2 = node(&mut fs, root, "hello2.txt");
    assert_eq!(
        fs.xattrs(hello2).unwrap(),
        [("user.Zone.Identifier".to_string(), ZONE.to_vec())]
    );
    let big = node(&mut fs, root, "big.bin");
    assert!(
        fs.xattrs(big).unwrap().is_empty(),
        "a 100 KiB stream is no xattr"
    );
    let names: Vec<Vec<u8>> = fs.list(root).unwrap().into_iter().map(|e| e.name).collect();
    assert!(!names.iter().any(|n| n.contains(&b':')));
    let stream = fs.lookup(root, b"big.bin:big.stream").unwrap().unwrap();
    assert_eq!(stream.kind, FileKind::File);
    assert_eq!(fs.stat(stream.node).unwrap().size, BIG_STREAM_BYTES as u64);
    let mut rng = Rng::new(2);
    let big_content = rng.bytes(BIG_BYTES);
    let stream_content = rng.bytes(BIG_STREAM_BYTES);
    let mut got = vec![0u8; BIG_STREAM_BYTES];
    assert_eq!(fs.read(stream.node, 0, &mut got).unwrap(), BIG_STREAM_BYTES);
    assert!(got == stream_content);
    assert!(fs.lookup(root, b"big.bin:nothing").unwrap().is_none());
    assert!(fs
        .lookup(root, b"hello2.txt:zone.identifier")
        .unwrap()
        .is_none());

    // Random reads of the large file.
    for _ in 0..300 {
        let offset = rng.below(BIG_BYTES as u64 + 1000);
        let mut buf = vec![0u8; rng.range(1, 300_000) as usize];
        let n = fs.read(big, offset, &mut buf).unwrap();
        let start = (offset as usize).min(BIG_BYTES);
        let end = (start + buf.len()).min(BIG_BYTES);
        assert_eq!(n, end - start);
        assert!(buf[..n] == big_content[start..end], "at {offset}");
    }

    // Exact names: the two differing in case are two files; a DOS name
    // is not one.
    let upper = node(&mut fs, root, "Case");
    let lower = node(&mut fs, root, "case");
    assert_ne!(upper, lower);
    let mut buf = [0u8; 6];
    fs.read(lower, 0, &mut buf).unwrap();
    assert_eq!(&buf, b"lower\n");
    assert!(fs.lookup(root, b"CASE").unwrap().is_none());
    assert!(fs.lookup(root, b"$MFT").unwrap().is_none());

    // Hard links are one node.
    let dir = node(&mut fs, root, "dir");
    assert_eq!(node(&mut fs, root, "hard1"), node(&mut fs, dir, "hard2"));
    let hard1 = node(&mut fs, root, "hard1");
    assert_eq!(fs.stat(hard1).unwrap().nlink, 2);

    // Compressed data is refused, not shown raw.
    let cdir = node(&mut fs, root, "compressed");
    let c = node(&mut fs, cdir, "c.txt");
    assert!(matches!(
        fs.read(c, 0, &mut buf),
        Err(FsError::Unsupported(_))
    ));
    assert!(matches!(
        fs.read(dir, 0, &mut buf),
        Err(FsError::IsADirectory)
    ));
    assert!(matches!(fs.read_link(hello), Err(FsError::NotASymlink)));
}

#[test]
fn hostile_images_answer_errors_in_bounded_time() {
    let tmp = tempfile::tempdir().unwrap();
    let image = std::fs::read(build(tmp.path(), 16, 3)).unwrap();
    let started = Instant::now();
    // Boot sector: sectors per cluster (13), total sectors (u64 at
    // 0x28), $MFT's cluster (u64 at 0x30), MFT record size (i8 at 0x40).
    type Patch = (&'static str, fn(&mut Vec<u8>));
    let patches: [Patch; 6] = [
        ("sectors per cluster 0", |b| b[13] = 0),
        ("a petabyte of sectors", |b| {
            b[0x28..0x30].copy_from_slice(&u64::MAX.to_le_bytes())
        }),
        ("$MFT past the end", |b| {
            b[0x30..0x38].copy_from_slice(&(1u64 << 60).to_le_bytes())
        }),
        ("records of 2^127 bytes", |b| b[0x40] = 0x81),
        ("records of 2^32 bytes", |b| b[0x40] = 0xe0),
        ("no root record", |b| {
            // The MFT's record 5 loses its signature.
            let mft = u64::from_le_bytes(b[0x30..0x38].try_into().unwrap()) as usize
                * usize::from(u16::from_le_bytes([b[11], b[12]]))
                * usize::from(b[13]);
            b[mft + 5 * 1024..mft + 5 * 1024 + 4].copy_from_slice(b"XXXX");
        }),
    ];
    for (what, patch) in patches {
        let mut bytes = image.clone();
        patch(&mut bytes);
        match open(Source::new(Arc::new(MemDisk(bytes)))) {
            Err(FsError::Damaged(_)) => {}
            Err(e) => panic!("{what}: {e}"),
            Ok(_) => panic!("{what}: opened"),
        }
    }
    // A volume cut short: the early records are there, the data not.
    let src = Source::new(Arc::new(MemDisk(image[..image.len() / 2].to_vec())));
    if let Ok(mut fs) = open(src) {
        walk_briefly(&mut fs);
    }
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// INDX record layout: "INDX", update sequence offset (u16 at 4) and
/// count (u16 at 6), the record's VCN (u64 at 0x10), then an index header
/// at 0x18: entries' offset from it (u32), their length (u32), allocated
/// length (u32), flags (u8, 1: has subnodes). Each entry: file reference
/// (8), length (u16 at 8), key length (u16 at 10), flags (u16 at 12; 1:
/// has a subnode, 2: last), its subnode's VCN in its last 8 bytes.
const INDX_VCN: usize = 0x10;
const INDX_HEADER: usize = 0x18;
const INDX_HAS_SUBNODES: u8 = 1;
const ENTRY_HAS_SUBNODE: u16 = 1;
const ENTRY_LAST: u16 = 2;
const FIXUP_SECTOR: usize = 512;

fn u16_at(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// Undoes (`apply` false) or redoes a multi-sector record's fixups: the
/// last two bytes of each sector swapped with its update sequence array.
fn fixups(record: &mut [u8], apply: bool) {
    let (usa, count) = (u16_at(record, 4), u16_at(record, 6));
    for i in 1..count {
        let end = i * FIXUP_SECTOR - 2;
        if apply {
            record.copy_within(end..end + 2, usa + 2 * i);
            record.copy_within(usa..usa + 2, end);
        } else {
            record.copy_within(usa + 2 * i..usa + 2 * i + 2, end);
        }
    }
}

#[test]
fn a_cycle_in_a_directory_index_is_damage() {
    let tmp = tempfile::tempdir().unwrap();
    let mut image = std::fs::read(build(tmp.path(), 16, 5)).unwrap();
    let record_bytes = 4096;
    // An inner node of many/'s B-tree: its first entry's subnode becomes
    // the node itself.
    let mut looped = false;
    for start in (0..image.len()).step_by(record_bytes) {
        let record = &mut image[start..start + record_bytes];
        if &record[..4] != b"INDX" || record[INDX_HEADER + 12] & INDX_HAS_SUBNODES == 0 {
            continue;
        }
        fixups(record, false);
        let vcn: [u8; 8] = record[INDX_VCN..INDX_VCN + 8].try_into().unwrap();
        let first = INDX_HEADER + u16_at(record, INDX_HEADER);
        let (len, flags) = (u16_at(record, first + 8), u16_at(record, first + 12) as u16);
        assert!(flags & ENTRY_HAS_SUBNODE != 0 && flags & ENTRY_LAST == 0);
        record[first + len - 8..first + len].copy_from_slice(&vcn);
        fixups(record, true);
        looped = true;
        break;
    }
    assert!(looped, "no inner index node: many/ should need one");
    let mut fs = open(Source::new(Arc::new(MemDisk(image)))).unwrap();
    let many = fs.lookup(ROOT_RECORD, b"many").unwrap().unwrap().node;
    let started = Instant::now();
    assert!(matches!(fs.list(many), Err(FsError::Damaged(_))));
    // A lookup that goes down that entry meets the loop too; others work.
    let mut damaged = 0;
    for i in 0..300 {
        match fs.lookup(many, format!("file number {i}").as_bytes()) {
            Ok(Some(_)) => {}
            Err(FsError::Damaged(_)) => damaged += 1,
            other => panic!("file number {i}: {other:?}"),
        }
    }
    assert!(damaged > 0);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert!(fs.lookup(ROOT_RECORD, b"hello.txt").unwrap().is_some());
}

#[test]
fn survives_damaged_and_truncated_images() {
    let tmp = tempfile::tempdir().unwrap();
    let image = std::fs::read(build(tmp.path(), 8, 4)).unwrap_or_default();
    survive_mutations(&image, 0x47f5, |src| {
        if let Ok(mut fs) = open(src) {
            fs.label();
            walk_briefly(&mut fs);
        }
    });
}

#[test]
fn keeps_unpaired_surrogates() {
    let units = [0x61, 0xd800, 0x62];
    assert_eq!(utf16_to_wtf8(units.into_iter()), b"a\xed\xa0\x80b");
    assert_eq!(utf16_to_wtf8("\u{e9}".encode_utf16()), "\u{e9}".as_bytes());
}

#[test]
fn turns_windows_links_into_targets() {
    // A relative symlink `..\dir\file` and a junction to `\??\C:\Users`.
    let name: Vec<u8> = r"..\dir\file"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let mut body = Vec::new();
    for v in [0u16, name.len() as u16, 0, name.len() as u16] {
        body.extend_from_slice(&v.to_le_bytes());
    }
    body.extend_from_slice(&SYMLINK_FLAG_RELATIVE.to_le_bytes());
    body.extend_from_slice(&name);
    assert_eq!(
        windows_link_target(TAG_SYMLINK, &body).unwrap(),
        b"../dir/file"
    );
    let name: Vec<u8> = r"\??\C:\Users"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let mut body = Vec::new();
    for v in [0u16, name.len() as u16, 0, 0] {
        body.extend_from_slice(&v.to_le_bytes());
    }
    body.extend_from_slice(&name);
    assert_eq!(
        windows_link_target(TAG_MOUNT_POINT, &body).unwrap(),
        b"C:/Users"
    );
    assert_eq!(windows_link_target(TAG_MOUNT_POINT, &body[..6]), None);
}
