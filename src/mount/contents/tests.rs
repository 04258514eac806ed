//! The partitions and files of states, through the tree, over the
//! in-memory filesystem of test_fs.rs.

use super::super::listing::ListingLimits;
use super::super::test_data::incompressible;
use super::super::test_fs::{self, MemFs, ROOT};
use super::super::tree::DirEntry;
use super::super::tree::{Tree, TreeConfig};
use super::*;
use crate::fs::volume::Volume;
use crate::store::{Op, OpFlags, Writer};

const MIB: usize = 1 << 20;
const T1: TimeNs = TimeNs(1_795_415_415_000_000_000);
const T2: TimeNs = TimeNs(1_795_415_416_000_000_000);

/// A store of `disk_bytes` with one record per write.
fn store(
    dir: &std::path::Path,
    disk_bytes: usize,
    writes: &[(TimeNs, usize, &[u8])],
) -> Arc<Store> {
    Writer::init(dir, disk_bytes as u64, 4096).unwrap();
    let mut w = Writer::open(dir).unwrap();
    for &(t, offset, data) in writes {
        let op = Op::Write {
            offset_bytes: offset as u64,
            data,
        };
        w.append(t, op, OpFlags::default()).unwrap();
    }
    w.close().unwrap();
    Arc::new(Store::open(dir).unwrap())
}

/// An MBR with primaries `(start sector, sectors, type)`.
fn mbr(parts: &[(u32, u32, u8)]) -> Vec<u8> {
    let mut s = vec![0u8; 512];
    for (i, &(start, len, kind)) in parts.iter().enumerate() {
        let at = 446 + 16 * i;
        s[at + 4] = kind;
        s[at + 8..at + 12].copy_from_slice(&start.to_le_bytes());
        s[at + 12..at + 16].copy_from_slice(&len.to_le_bytes());
    }
    s[510] = 0x55;
    s[511] = 0xaa;
    s
}

/// The filesystem every readable volume holds in these tests.
///
/// ```text
/// /hello.txt        12   with a named stream as an xattr
/// /hello.txt:notes  14   looked up, not listed (a named stream)
/// /caf\xe9.txt      13   a Latin-1 name, not UTF-8
/// /sub/             20
/// /sub/again        12   a hard link to /hello.txt
/// /sub/link         21   -> /etc/passwd
/// /sub/null         22   char device 1:3
/// /sub/fifo         23
/// /bad              30   damaged
/// /boom             31   panics when read
/// /ghost            99   an entry whose node is not there
/// ```
fn sample_fs() -> MemFs {
    let mut fs = MemFs::new();
    fs.file(ROOT, b"hello.txt", 12, b"hello, world\n");
    fs.xattr(
        12,
        "user.Zone.Identifier",
        b"[ZoneTransfer]\r\nZoneId=3\r\n",
    );
    fs.xattr(12, "security.capability", b"\x01\x00\x00\x02");
    fs.unlisted(ROOT, b"hello.txt:notes", 14, b"a stream\n");
    fs.file(ROOT, b"caf\xe9.txt", 13, b"latin-1\n");
    fs.dir(ROOT, b"sub", 20);
    fs.link(20, b"again", 12, FileKind::File);
    fs.symlink(20, b"link", 21, b"/etc/passwd");
    fs.special(20, b"null", 22, FileKind::CharDevice, libc::makedev(1, 3));
    fs.special(20, b"fifo", 23, FileKind::Fifo, 0);
    fs.broken(ROOT, b"bad", 30, false);
    fs.broken(ROOT, b"boom", 31, true);
    fs.link(ROOT, b"ghost", 99, FileKind::File);
    fs
}

/// A tree whose readable volumes are `readable`, each holding
/// [`sample_fs`].
fn tree(store: Arc<Store>, readable: &'static [VolumeId]) -> Tree {
    let opener: Opener = Arc::new(move |v: &Volume| {
        if readable.contains(&v.id) {
            Ok(Box::new(sample_fs()) as Box<dyn FileSystem>)
        } else {
            Err("test: not supported".to_string())
        }
    });
    let config = TreeConfig {
        cache_bytes: MIB as u64,
        limits: ListingLimits::default(),
        uid: 7,
        gid: 8,
        fs_threads: 2,
    };
    Tree::with_opener(store, config, opener)
}

fn names(entries: &[DirEntry]) -> Vec<Vec<u8>> {
    entries.iter().map(|e| e.name.clone()).collect()
}

fn lookup(t: &Tree, parent: Node, name: &[u8]) -> Node {
    match t.lookup(parent, name) {
        Ok(f) => f.attr.node,
        Err(e) => panic!("{:?}: {e:?}", String::from_utf8_lossy(name)),
    }
}

fn path(t: &Tree, from: Node, path: &str) -> Node {
    path.split('/')
        .fold(from, |n, name| lookup(t, n, name.as_bytes()))
}

/// A 4 MiB disk with an MBR: p1 (1 MiB at 1 MiB, readable), p2 (1 MiB
/// at 2 MiB, not); state 2 rewrites part of p2.
fn partitioned(dir: &std::path::Path) -> (Arc<Store>, Vec<u8>, Vec<u8>) {
    let table = mbr(&[(2048, 2048, 0x83), (4096, 2048, 0x0c)]);
    let p1 = incompressible(MIB, 1);
    let p2 = incompressible(MIB, 2);
    let patch = vec![0xa5u8; 8192];
    let mut p2_later = p2.clone();
    p2_later[4096..4096 + 8192].copy_from_slice(&patch);
    let store = store(
        dir,
        4 * MIB,
        &[
            (T1, 0, &table),
            (T1, MIB, &p1),
            (T1, 2 * MIB, &p2),
            (T2, 2 * MIB + 4096, &patch),
        ],
    );
    (store, p1, p2_later)
}

#[test]
fn a_partitioned_state_shows_each_partition_image_and_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (store, p1, p2) = partitioned(dir.path());
    let t = tree(store, &[VolumeId::Partition(1)]);
    let state = Node::AtState(Seq(4));
    let listed = t.list_all(state).unwrap();
    let want: Vec<&[u8]> = vec![
        b".",
        b"..",
        b"disk.img",
        b"info",
        b"p1.img",
        b"p1",
        b"p2.img",
        b"p2",
    ];
    assert_eq!(names(&listed), want);

    // Each image is its partition's bytes, cut at its end.
    let p1_img = lookup(&t, state, b"p1.img");
    assert_eq!(t.getattr(p1_img).unwrap().0.size_bytes, MIB as u64);
    assert_eq!(t.read(p1_img, 0, MIB as u32).unwrap(), p1);
    assert_eq!(t.read(p1_img, 5000, 100).unwrap(), p1[5000..5100]);
    assert_eq!(
        t.read(p1_img, MIB as u64 - 10, 100).unwrap(),
        p1[MIB - 10..]
    );
    assert!(t.read(p1_img, MIB as u64, 100).unwrap().is_empty());
    let p2_img = lookup(&t, state, b"p2.img");
    assert_eq!(t.read(p2_img, 0, MIB as u32).unwrap(), p2);
    assert_eq!(
        listed[4].node, p1_img,
        "the listing's number is the lookup's"
    );
    // Files, unlike directories, are one inode through at/ and seq/.
    let seq_state = Node::SeqState(Seq(4));
    assert_eq!(lookup(&t, seq_state, b"p1.img"), p1_img);
    assert_ne!(lookup(&t, seq_state, b"p1"), lookup(&t, state, b"p1"));
    // An earlier state is another file.
    let earlier = lookup(&t, Node::AtState(Seq(3)), b"p2.img");
    assert_ne!(earlier, p2_img);
    assert_eq!(t.read(earlier, 4096, 16).unwrap(), p2_read_at_3(&t));
    assert_ne!(t.read(earlier, 4096, 16).unwrap(), [0xa5; 16]);

    // p1's filesystem is readable, p2's is not: the directory is there.
    let p1_dir = lookup(&t, state, b"p1");
    assert_eq!(
        names(&t.list_all(p1_dir).unwrap()),
        [b"." as &[u8], b"..", b"files"]
    );
    let p2_dir = lookup(&t, state, b"p2");
    assert_eq!(names(&t.list_all(p2_dir).unwrap()), [b"." as &[u8], b".."]);
    assert!(matches!(t.lookup(p2_dir, b"files"), Err(Fail::NotFound)));
    for missing in ["p3.img", "p3", "p01", "files", "p1.img2"] {
        assert!(
            matches!(t.lookup(state, missing.as_bytes()), Err(Fail::NotFound)),
            "{missing}"
        );
    }
    assert!(matches!(t.lookup(p1_img, b"x"), Err(Fail::NotADirectory)));

    // `info` describes the table and the volumes.
    let info = t.read(Node::Info(Seq(4)), 0, 64 << 10).unwrap();
    let info = String::from_utf8(info).unwrap();
    for line in [
        "partition_table: mbr\n",
        "partition: p1 start_bytes=1048576 length_bytes=1048576 type=0x83\n",
        "partition: p2 start_bytes=2097152 length_bytes=1048576 type=0x0c\n",
        "volume: p1: unknown; files: available\n",
        "volume: p2: unknown; files: not available (test: not supported)\n",
    ] {
        assert!(info.contains(line), "{line:?} missing in:\n{info}");
    }
}

fn p2_read_at_3(t: &Tree) -> Vec<u8> {
    t.read(Node::Image(Seq(3)), 2 * MIB as u64 + 4096, 16)
        .unwrap()
}

#[test]
fn files_show_the_filesystems_names_attributes_contents_and_xattrs() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = partitioned(dir.path());
    let t = tree(store, &[VolumeId::Partition(1)]);
    let files = path(&t, Node::AtState(Seq(4)), "p1/files");
    let root = t.getattr(files).unwrap().0;
    assert_eq!(
        (root.kind, root.perm, root.uid, root.gid),
        (FileKind::Dir, 0o755, 1000, 100)
    );

    // Names are bytes, listed as stored, in the filesystem's order.
    let listed = t.list_all(files).unwrap();
    let want: Vec<&[u8]> = vec![
        b".",
        b"..",
        b"hello.txt",
        b"caf\xe9.txt",
        b"sub",
        b"bad",
        b"boom",
        b"ghost",
    ];
    assert_eq!(names(&listed), want);
    assert!(matches!(t.lookup(files, b"ghost"), Err(Fail::NotFound)));
    // Regression: a name the listing lacks was answered ENOENT once the
    // directory had been listed (ls -l, then cat FILE:STREAM failed).
    let stream = lookup(&t, files, b"hello.txt:notes");
    assert_eq!(t.read(stream, 0, 100).unwrap(), b"a stream\n");
    assert!(matches!(t.lookup(files, b"nothing"), Err(Fail::NotFound)));
    let latin = lookup(&t, files, b"caf\xe9.txt");
    assert_eq!(listed[3].node, latin);
    assert_eq!(t.read(latin, 0, 100).unwrap(), b"latin-1\n");
    assert!(matches!(
        t.lookup(files, b"caf\xc3\xa9.txt"),
        Err(Fail::NotFound)
    ));

    // Attributes are the filesystem's, with every time to the ns.
    let hello = lookup(&t, files, b"hello.txt");
    let (a, ttl) = t.getattr(hello).unwrap();
    assert_eq!(
        (a.kind, a.size_bytes, a.perm, a.uid, a.gid, a.nlink),
        (FileKind::File, 13, 0o640, 1000, 100, 2)
    );
    assert_eq!(a.times.mtime, test_fs::MTIME);
    assert_eq!(a.times.atime, test_fs::ATIME);
    assert_eq!(a.times.ctime, test_fs::CTIME);
    assert_eq!(a.times.crtime, test_fs::CRTIME);
    assert_eq!(ttl, TTL_FOREVER, "a state never changes");
    assert_eq!(t.read(hello, 0, 4096).unwrap(), b"hello, world\n");
    assert_eq!(t.read(hello, 7, 3).unwrap(), b"wor");
    assert!(t.open(hello).is_ok());
    assert!(matches!(t.open(files), Err(Fail::IsADirectory)));

    // Extended attributes: the fs's number, its times, its own.
    let x = t.xattrs(hello).unwrap();
    let get = |name: &str| x.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert_eq!(get(INO_XATTR).unwrap(), b"12");
    assert_eq!(
        get(test_fs::CRTIME_XATTR).unwrap(),
        b"2020-09-13T12:26:40.000000003Z"
    );
    assert_eq!(
        get(test_fs::CHANGED_XATTR).unwrap(),
        format_rfc3339_ns(test_fs::CTIME).as_bytes()
    );
    assert_eq!(
        get("user.Zone.Identifier").unwrap(),
        b"[ZoneTransfer]\r\nZoneId=3\r\n"
    );
    assert!(get("security.capability").is_none(), "only user.* names");
    assert_eq!(x.len(), 4, "{x:?}");
    assert_eq!(
        t.xattr(hello, INO_XATTR.as_bytes()).unwrap().unwrap(),
        b"12"
    );
    assert!(
        matches!(
            t.xattr(hello, b"security.capability"),
            Err(Fail::Unsupported)
        ),
        "other namespaces are not supported, so that ls -l stops asking"
    );
    assert_eq!(t.xattr(hello, b"user.none").unwrap(), None);
    assert!(t.xattrs(Node::Image(Seq(4))).unwrap().is_empty());

    // Hard links share an inode; so do files through at/ and seq/.
    let sub = lookup(&t, files, b"sub");
    assert_eq!(lookup(&t, sub, b"again"), hello);
    let seq_files = path(&t, Node::SeqState(Seq(4)), "p1/files");
    assert_ne!(seq_files, files, "directories are one per tree");
    assert_eq!(path(&t, seq_files, "sub/again"), hello);
    assert_ne!(path(&t, Node::AtState(Seq(3)), "p1/files/hello.txt"), hello);
    let dots = t.list_all(sub).unwrap();
    assert_eq!((dots[0].node, dots[1].node), (sub, files));

    // Symlinks give their stored target; special files their type.
    let link = lookup(&t, sub, b"link");
    assert_eq!(t.getattr(link).unwrap().0.kind, FileKind::Symlink);
    assert_eq!(t.link_target(link).unwrap(), b"/etc/passwd");
    assert!(matches!(t.link_target(hello), Err(Fail::Invalid)));
    let null = t.getattr(lookup(&t, sub, b"null")).unwrap().0;
    assert_eq!(
        (null.kind, null.rdev),
        (FileKind::CharDevice, libc::makedev(1, 3))
    );
    let fifo = lookup(&t, sub, b"fifo");
    assert_eq!(t.getattr(fifo).unwrap().0.kind, FileKind::Fifo);
    assert!(matches!(t.open(fifo), Err(Fail::Invalid)));

    // Damage, and a reader's panic, cost EIO on that file alone.
    let bad = lookup(&t, files, b"bad");
    assert!(matches!(t.read(bad, 0, 10), Err(Fail::Damaged)));
    let boom = lookup(&t, files, b"boom");
    assert!(matches!(t.read(boom, 0, 10), Err(Fail::Damaged)));
    assert!(matches!(t.read(boom, 0, 10), Err(Fail::Damaged)));
    assert_eq!(t.read(hello, 0, 5).unwrap(), b"hello");
    assert_eq!(names(&t.list_all(sub).unwrap()).len(), 6);
}

#[test]
fn listings_kept_for_lookups_hold_a_bounded_number_of_names() {
    let dir = |n: NodeId| (Seq(1), VolumeId::WholeDisk, n);
    let names = |n: usize| (0..n).map(|i| (vec![i as u8; 3], i as NodeId)).collect();
    let mut l = RecentNames::new(10);
    l.put(dir(1), names(4));
    l.put(dir(2), names(4));
    l.put(dir(1), names(4)); // again: counted once
    assert_eq!(l.names, 8);
    l.put(dir(3), names(4)); // over: the least recently used goes
    assert_eq!(l.names, 8);
    assert!(l.dirs.get(&dir(2)).is_none());
    l.put(dir(4), names(11)); // larger than all: never kept
    assert!(l.dirs.get(&dir(4)).is_none());
    assert_eq!(l.names, 8);
}

#[test]
fn forgotten_nodes_leave_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = partitioned(dir.path());
    let t = tree(store, &[VolumeId::Partition(1)]);
    let files = path(&t, Node::AtState(Seq(4)), "p1/files");
    let before = t.dynamic_nodes();
    let hello = lookup(&t, files, b"hello.txt");
    assert_eq!(lookup(&t, files, b"hello.txt"), hello);
    assert_eq!(t.dynamic_nodes(), before + 1);
    t.forget(hello, 1);
    assert!(t.getattr(hello).is_ok(), "one reference left");
    t.forget(hello, 1);
    assert!(matches!(t.getattr(hello), Err(Fail::NotFound)));
    assert_eq!(t.dynamic_nodes(), before);
    let again = lookup(&t, files, b"hello.txt");
    assert_ne!(again, hello, "a forgotten number is not handed out again");
    t.forget(Node::Root, 1); // fixed nodes are not counted
    t.forget(Node::Dyn(1 << 50), 1); // nor unknown ones
}

#[test]
fn a_disk_without_a_table_shows_its_files_in_the_state_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = incompressible(64 << 10, 3);
    let store = store(dir.path(), MIB, &[(T1, 4096, &data)]);
    let t = tree(store, &[VolumeId::WholeDisk]);
    let state = Node::AtState(Seq(1));
    let want: Vec<&[u8]> = vec![b".", b"..", b"disk.img", b"info", b"files"];
    assert_eq!(names(&t.list_all(state).unwrap()), want);
    let hello = path(&t, state, "files/sub/again");
    assert_eq!(t.read(hello, 0, 100).unwrap(), b"hello, world\n");
    let info = String::from_utf8(t.read(Node::Info(Seq(1)), 0, 4096).unwrap()).unwrap();
    assert!(info.contains("partition_table: none\n"), "{info}");
    assert!(
        info.contains("volume: disk: unknown; files: available\n"),
        "{info}"
    );
    assert!(matches!(t.lookup(state, b"p1.img"), Err(Fail::NotFound)));
}

#[test]
fn listings_with_attributes_count_what_the_kernel_links() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = partitioned(dir.path());
    let t = tree(store, &[VolumeId::Partition(1)]);
    let files = path(&t, Node::AtState(Seq(4)), "p1/files");
    let before = t.dynamic_nodes();
    let listing = t.list(files).unwrap();
    assert_eq!(t.dynamic_nodes(), before, "opendir numbers nothing");
    assert_eq!(listing.page_end(0, 4096), listing.len(), "one page");
    assert_eq!(listing.page_end(2, 1), 3, "at least one entry");

    let plus = t.entries_plus(&listing, 0..listing.len());
    let by_name = |n: &[u8]| plus.iter().find(|p| p.entry.name == n).unwrap();
    // `.` and `..`: the kernel takes no reference to them.
    assert_eq!((plus[0].entry.node, plus[0].counted), (files, false));
    assert!(!plus[1].counted);
    let hello = by_name(b"hello.txt");
    assert_eq!(
        (
            hello.attr.size_bytes,
            hello.attr.perm,
            hello.ttl,
            hello.counted
        ),
        (13, 0o640, TTL_FOREVER, true)
    );
    assert_eq!(hello.attr.node, hello.entry.node);
    assert_eq!(hello.attr.times.mtime, test_fs::MTIME);
    assert_eq!(by_name(b"sub").entry.kind, FileKind::Dir);
    assert_eq!(lookup(&t, files, b"hello.txt"), hello.entry.node);
    // An entry without attributes is given for the kernel to ask again.
    let ghost = by_name(b"ghost");
    assert_eq!((ghost.ttl, ghost.counted), (Duration::ZERO, true));

    // Every counted entry is one reference: forgetting them (and the
    // lookup's) empties the table again.
    let counted: Vec<Node> = plus
        .iter()
        .filter(|p| p.counted)
        .map(|p| p.entry.node)
        .collect();
    assert_eq!(counted.len(), listing.len() - 2);
    t.forget(hello.entry.node, 1);
    for n in counted {
        assert!(t.getattr(n).is_ok() || n == ghost.entry.node);
        t.forget(n, 1);
    }
    assert_eq!(t.dynamic_nodes(), before);

    // The state directory: fixed and dynamic entries alike.
    let state = t.list(Node::AtState(Seq(4))).unwrap();
    let plus = t.entries_plus(&state, 0..state.len());
    let names: Vec<_> = plus.iter().map(|p| p.entry.name.clone()).collect();
    assert_eq!(names[2..4], [b"disk.img".to_vec(), b"info".to_vec()]);
    assert!(!plus[2].counted && plus[2].ttl == TTL_FOREVER);
    let p1_img = plus.iter().find(|p| p.entry.name == b"p1.img").unwrap();
    assert_eq!((p1_img.attr.size_bytes, p1_img.counted), (MIB as u64, true));
}
