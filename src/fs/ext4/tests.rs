//! Filesystems made at test time by `mkfs.ext*` and written by `debugfs`
//! (e2fsprogs: no root, no loop device), read back and checked against
//! what was written; hostile variants; seeded mutations; and, as root, a
//! walk compared with the kernel's read-only mount.

use super::*;
use crate::fs::source::{FileDisk, MemDisk};
use crate::units::TimeNs;
use diskhist_test_common::Rng;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

/// An image file in a temporary directory, with room beside it for the
/// host files debugfs copies in.
struct Image {
    dir: tempfile::TempDir,
    path: PathBuf,
}

/// Run `cmd` to success; its stdout and stderr.
fn run(cmd: &mut Command) -> (String, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{cmd:?}: {stdout}{stderr}");
    (stdout, stderr)
}

impl Image {
    /// `mkfs` (`mkfs.ext4`, `mkfs.ext2`...) with `args` on `size_mib` MiB.
    fn new(mkfs: &str, args: &[&str], size_mib: u64) -> Image {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fs.img");
        run(Command::new(mkfs)
            .args(["-q", "-F"])
            .args(args)
            .arg(&path)
            .arg(format!("{size_mib}M")));
        Image { dir, path }
    }

    /// A host file `name` beside the image holding `content`.
    fn host(&self, name: &str, content: &[u8]) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        p
    }

    /// Run debugfs commands (one a line) on the image, writable.
    fn debugfs(&self, commands: &[u8]) {
        let script = self.dir.path().join("cmds");
        std::fs::write(&script, commands).unwrap();
        let (_, stderr) = run(Command::new("debugfs")
            .current_dir(self.dir.path())
            .arg("-w")
            .arg("-f")
            .arg(&script)
            .arg(&self.path));
        // debugfs exits 0 whatever fails: anything on stderr past its
        // banner is a failure.
        let complaints: Vec<&str> = stderr.lines().skip(1).collect();
        assert!(complaints.is_empty(), "debugfs: {complaints:?}");
    }

    /// debugfs's answer to one read-only request.
    fn ask(&self, request: &str) -> String {
        run(Command::new("debugfs")
            .arg("-R")
            .arg(request)
            .arg(&self.path))
        .0
    }

    fn open(&self) -> Ext4Fs {
        open_at(&self.path).unwrap()
    }

    fn bytes(&self) -> Vec<u8> {
        std::fs::read(&self.path).unwrap()
    }
}

fn open_at(path: &Path) -> Result<Ext4Fs, FsError> {
    open(Source::new(Arc::new(FileDisk::open(path).unwrap())))
}

fn open_bytes(bytes: Vec<u8>) -> Result<Ext4Fs, FsError> {
    open(Source::new(Arc::new(MemDisk(bytes))))
}

/// The node at `path` (components split on `/`), by lookups from the
/// root.
fn node_at(fs: &mut Ext4Fs, path: &[u8]) -> NodeId {
    let mut node = fs.root();
    for name in path.split(|&b| b == b'/').filter(|n| !n.is_empty()) {
        node = fs
            .lookup(node, name)
            .unwrap()
            .unwrap_or_else(|| panic!("{} not found", String::from_utf8_lossy(path)))
            .node;
    }
    node
}

/// The whole of file `node`, read in `chunk`-byte pieces.
fn read_all(fs: &mut Ext4Fs, node: NodeId, chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; chunk];
    loop {
        let n = fs.read(node, out.len() as u64, &mut buf).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

fn names(entries: &[DirEntry]) -> Vec<&[u8]> {
    entries.iter().map(|e| e.name.as_slice()).collect()
}

/// A small ext4 with one of each kind of node, and its host files.
fn populated() -> Image {
    let img = Image::new("mkfs.ext4", &["-b", "4096", "-I", "256"], 32);
    img.host("hello", b"hello\n");
    img.host("long", &[b'x'; 5000]);
    let mut cmds = b"write hello hello.txt
mkdir dir
mkdir dir/sub
write long dir/sub/deep.txt
symlink short_link hello.txt
mknod chardev c 1 3
mknod blockdev b 259 65000
mknod fifo p
ln hello.txt dir/hard2
sif hello.txt links_count 2
sif hello.txt uid 1234
sif hello.txt gid 5678
sif hello.txt mode 0104755
"
    .to_vec();
    cmds.extend_from_slice(format!("symlink long_link {}\n", "t/".repeat(60)).as_bytes());
    cmds.extend_from_slice(b"write hello bad\xff\xfename\n");
    img.debugfs(&cmds);
    img
}

#[test]
fn tree_names_kinds_sizes_and_contents() {
    let img = populated();
    let mut fs = img.open();
    assert_eq!(fs.journal(), &Journal::Clean);
    assert!(!fs.replayed_journal());
    let root = fs.list(fs.root()).unwrap();
    // On-disk order: creation order, in one directory block.
    assert_eq!(
        names(&root),
        [
            &b"lost+found"[..],
            b"hello.txt",
            b"dir",
            b"short_link",
            b"chardev",
            b"blockdev",
            b"fifo",
            b"long_link",
            b"bad\xff\xfename",
        ]
    );
    let kinds: Vec<FileKind> = root.iter().map(|e| e.kind).collect();
    use FileKind::*;
    assert_eq!(
        kinds,
        [
            Dir,
            File,
            Dir,
            Symlink,
            CharDevice,
            BlockDevice,
            Fifo,
            Symlink,
            File
        ]
    );
    for e in &root {
        assert_eq!(fs.lookup(fs.root(), &e.name).unwrap().as_ref(), Some(e));
        assert_eq!(fs.stat(e.node).unwrap().kind, e.kind);
    }
    assert_eq!(fs.lookup(fs.root(), b"missing").unwrap(), None);
    assert_eq!(fs.lookup(fs.root(), b"..").unwrap(), None);

    let hello = node_at(&mut fs, b"hello.txt");
    let st = fs.stat(hello).unwrap();
    assert_eq!(
        (st.size, st.perm, st.uid, st.gid, st.nlink),
        (6, 0o4755, 1234, 5678, 2)
    );
    assert_eq!(st.ino, hello);
    assert_eq!(read_all(&mut fs, hello, 4), b"hello\n");
    assert_eq!(node_at(&mut fs, b"dir/hard2"), hello);
    let deep = node_at(&mut fs, b"dir/sub/deep.txt");
    assert_eq!(read_all(&mut fs, deep, 4096), vec![b'x'; 5000]);
    let odd = node_at(&mut fs, b"bad\xff\xfename");
    assert_eq!(read_all(&mut fs, odd, 100), b"hello\n");

    let chardev = node_at(&mut fs, b"chardev");
    let chardev = fs.stat(chardev).unwrap();
    assert_eq!(
        (libc::major(chardev.rdev), libc::minor(chardev.rdev)),
        (1, 3)
    );
    let blockdev = node_at(&mut fs, b"blockdev");
    let blockdev = fs.stat(blockdev).unwrap();
    assert_eq!(
        (libc::major(blockdev.rdev), libc::minor(blockdev.rdev)),
        (259, 65000)
    );
    let mut buf = [0u8; 8];
    let fifo = node_at(&mut fs, b"fifo");
    assert_eq!(fs.read(fifo, 0, &mut buf).unwrap(), 0);
    assert!(matches!(
        fs.read(fs.root(), 0, &mut buf),
        Err(FsError::IsADirectory)
    ));
    assert!(matches!(fs.list(hello), Err(FsError::NotADirectory)));
    assert!(matches!(fs.stat(0), Err(FsError::NotFound)));
    assert!(matches!(fs.stat(1 << 40), Err(FsError::NotFound)));
}

#[test]
fn symlink_targets_fast_and_slow() {
    let img = populated();
    let mut fs = img.open();
    let short = node_at(&mut fs, b"short_link");
    assert_eq!(fs.read_link(short).unwrap(), b"hello.txt");
    assert_eq!(fs.stat(short).unwrap().size, 9);
    let long = node_at(&mut fs, b"long_link");
    assert_eq!(fs.read_link(long).unwrap(), "t/".repeat(60).as_bytes());
    let hello = node_at(&mut fs, b"hello.txt");
    assert!(matches!(fs.read_link(hello), Err(FsError::NotASymlink)));
    // A symlink claiming a terabyte is refused before any allocation.
    img.debugfs(b"sif long_link size 0x10000000000\n");
    let mut fs = img.open();
    let long = node_at(&mut fs, b"long_link");
    assert!(matches!(fs.read_link(long), Err(FsError::Damaged(_))));
}

#[test]
fn times_keep_nanoseconds_creation_and_dates_past_2038() {
    let img = populated();
    let ns = |ns: u32| format!("{:#x}", ns << 2);
    let cmds = format!(
        "sif hello.txt mtime 20200203040506\nsif hello.txt mtime_extra {}\n\
         sif hello.txt atime @-315619200\nsif hello.txt atime_extra {}\n\
         sif hello.txt ctime @4115620800\nsif hello.txt ctime_extra {:#x}\n\
         sif hello.txt crtime 20010909014640\nsif hello.txt crtime_extra {}\n",
        ns(789_000_000),
        ns(123_456_789),
        1 | 5 << 2,
        ns(1),
    );
    img.debugfs(cmds.as_bytes());
    let mut fs = img.open();
    let hello = node_at(&mut fs, b"hello.txt");
    let st = fs.stat(hello).unwrap();
    let t = |s: i64, ns: i64| Some(TimeNs(s * 1_000_000_000 + ns));
    assert_eq!(st.mtime, t(1_580_702_706, 789_000_000));
    assert_eq!(st.atime, t(-315_619_200, 123_456_789));
    assert_eq!(st.ctime, t(4_115_620_800, 5));
    assert_eq!(st.crtime, t(1_000_000_000, 1));
    let names: Vec<&str> = st.times.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "user.ext4.atime",
            "user.ext4.mtime",
            "user.ext4.ctime",
            "user.ext4.crtime"
        ]
    );
    assert_eq!(st.times[3].1, st.crtime.unwrap());

    // 128-byte inodes (ext2/3 style) keep seconds only, and no crtime.
    let small = Image::new("mkfs.ext2", &["-I", "128"], 8);
    small.host("f", b"x");
    small.debugfs(b"write f f\nsif f mtime 20200203040506\n");
    let mut fs = small.open();
    let f = node_at(&mut fs, b"f");
    let st = fs.stat(f).unwrap();
    assert_eq!(st.mtime, t(1_580_702_706, 0));
    assert_eq!(st.crtime, None);
    assert_eq!(st.times.len(), 3);
}

#[test]
fn xattrs_from_the_inode_then_its_block() {
    let img = populated();
    img.host("big", &[b'a'; 500]);
    img.debugfs(
        b"ea_set hello.txt user.comment \"hi there\"\n\
          ea_set -f big hello.txt user.big\n\
          ea_set hello.txt security.label s0\n\
          ea_set hello.txt trusted.t yes\n",
    );
    let mut fs = img.open();
    let hello = node_at(&mut fs, b"hello.txt");
    let mut got = fs.xattrs(hello).unwrap();
    // The big value did not fit in the inode: it comes last, from the
    // block; the in-inode ones come in the order debugfs stored them.
    assert_eq!(got.pop(), Some(("user.big".to_string(), vec![b'a'; 500])));
    got.sort();
    assert_eq!(
        got,
        [
            ("user.comment".to_string(), b"hi there".to_vec()),
            ("user.ext4.security.label".to_string(), b"s0".to_vec()),
            ("user.ext4.trusted.t".to_string(), b"yes".to_vec()),
        ]
    );
    assert_eq!(fs.xattrs(fs.root()).unwrap(), []);
}

#[test]
fn fragmented_file_reads_the_same_at_any_offset() {
    let img = Image::new("mkfs.ext4", &["-b", "4096"], 64);
    img.host("blk", &[7u8; 4096]);
    let want = Rng::new(11).bytes(6 << 20);
    img.host("big", &want);
    // Every other block free: the big file fills them one at a time,
    // ~1500 extents, a tree two levels deep.
    let mut cmds = String::new();
    for i in 0..3000 {
        writeln!(cmds, "write blk f{i}").unwrap();
    }
    for i in (0..3000).step_by(2) {
        writeln!(cmds, "rm f{i}").unwrap();
    }
    cmds.push_str("write big big\n");
    img.debugfs(cmds.as_bytes());
    let tree = img.ask("ex big");
    assert!(tree.contains(" 2/ 2 "), "not two levels deep:\n{tree}");

    let mut fs = img.open();
    let big = node_at(&mut fs, b"big");
    assert_eq!(fs.stat(big).unwrap().size, want.len() as u64);
    assert_eq!(read_all(&mut fs, big, 128 << 10), want);
    assert_eq!(read_all(&mut fs, big, 4095), want);
    let mut rng = Rng::new(12);
    for _ in 0..500 {
        let offset = rng.below(want.len() as u64 + 10_000);
        let mut buf = vec![0u8; rng.range(1, 300_000) as usize];
        let n = fs.read(big, offset, &mut buf).unwrap();
        let end = (offset as usize + buf.len()).min(want.len());
        let expect = want.get(offset as usize..end).unwrap_or(&[]);
        assert_eq!(&buf[..n], expect, "at {offset}");
    }
}

#[test]
fn holes_and_preallocated_extents_read_as_zeros() {
    let img = Image::new("mkfs.ext4", &["-b", "4096"], 32);
    let sparse = img.host("sparse", b"");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&sparse)
        .unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"start", 0).unwrap();
    f.write_all_at(b"middle", 1 << 30).unwrap();
    f.write_all_at(b"end", (2 << 40) - 3).unwrap();
    drop(f);
    img.debugfs(b"write sparse sparse\nfallocate sparse 10 20\n");
    assert!(
        img.ask("ex sparse").contains("Uninit"),
        "no unwritten extent"
    );
    let mut fs = img.open();
    let node = node_at(&mut fs, b"sparse");
    assert_eq!(fs.stat(node).unwrap().size, 2 << 40);
    let mut buf = vec![1u8; 100_000];
    assert_eq!(fs.read(node, 0, &mut buf).unwrap(), buf.len());
    assert_eq!(&buf[..5], b"start");
    assert!(buf[5..].iter().all(|&b| b == 0));
    let mut buf = vec![1u8; 10];
    fs.read(node, (1 << 30) - 2, &mut buf).unwrap();
    assert_eq!(buf, *b"\0\0middle\0\0");
    let mut buf = vec![1u8; 10];
    assert_eq!(fs.read(node, (2 << 40) - 5, &mut buf).unwrap(), 5);
    assert_eq!(&buf[..5], b"\0\0end");
    // Across the unwritten extent at blocks 10..=20, and far into a hole.
    let mut buf = vec![1u8; 1 << 20];
    fs.read(node, 0, &mut buf).unwrap();
    assert!(buf[5..].iter().all(|&b| b == 0));
    fs.read(node, 1 << 40, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
}

#[test]
fn ext2_and_ext3_block_maps_through_triple_indirect() {
    for mkfs in ["mkfs.ext2", "mkfs.ext3"] {
        let img = Image::new(mkfs, &["-b", "1024"], 32);
        // 3 MiB: direct, single and double indirect blocks of 1 KiB.
        let want = Rng::new(21).bytes(3 << 20);
        img.host("f", &want);
        // Data past 64 MiB + 268 KiB needs the triple indirect block.
        let sparse = img.host("sparse", b"");
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&sparse)
            .unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(&want[..10_000], 80 << 20).unwrap();
        drop(f);
        img.debugfs(b"write f f\nwrite sparse sparse\n");
        let mut fs = img.open();
        assert_eq!(fs.journal(), &Journal::Clean);
        let node = node_at(&mut fs, b"f");
        assert_eq!(read_all(&mut fs, node, 100_000), want, "{mkfs}");
        let mut rng = Rng::new(22);
        for _ in 0..200 {
            let offset = rng.below(want.len() as u64);
            let mut buf = vec![0u8; rng.range(1, 70_000) as usize];
            let n = fs.read(node, offset, &mut buf).unwrap();
            let end = (offset as usize + buf.len()).min(want.len());
            assert_eq!(&buf[..n], &want[offset as usize..end], "{mkfs} at {offset}");
        }
        let node = node_at(&mut fs, b"sparse");
        let got = read_all(&mut fs, node, 1 << 20);
        assert_eq!(got.len(), (80 << 20) + 10_000);
        assert!(got[..80 << 20].iter().all(|&b| b == 0));
        assert_eq!(&got[80 << 20..], &want[..10_000], "{mkfs}");
    }
}

/// The block that filesystem block `block` starts at in `img`'s bytes.
fn block_bytes(bytes: &mut [u8], block_size: usize, block: u64) -> &mut [u8] {
    let at = block as usize * block_size;
    &mut bytes[at..at + block_size]
}

fn first_block(img: &Image, file: &str) -> u64 {
    img.ask(&format!("bmap {file} 0")).trim().parse().unwrap()
}

#[test]
fn committed_journal_transactions_are_replayed() {
    let img = populated();
    let block = first_block(&img, "hello.txt");
    let mut new = b"from the journal\n".to_vec();
    new.resize(4096, 0);
    img.host("new", &new);
    img.debugfs(format!("jo -c\njw -b {block} new\njc\n").as_bytes());
    let mut fs = img.open();
    assert_eq!(fs.journal(), &Journal::Replayed { blocks: 1 });
    assert!(fs.replayed_journal());
    let hello = node_at(&mut fs, b"hello.txt");
    assert_eq!(read_all(&mut fs, hello, 3), b"from t");

    // A journal that cannot be read: shown as written home, and said so.
    let mut bytes = img.bytes();
    let journal_block = first_block(&img, "<8>");
    block_bytes(&mut bytes, 4096, journal_block)[..4].copy_from_slice(b"JUNK");
    let mut fs = open_bytes(bytes).unwrap();
    assert!(
        matches!(fs.journal(), Journal::NotReplayed { .. }),
        "{:?}",
        fs.journal()
    );
    let hello = node_at(&mut fs, b"hello.txt");
    assert_eq!(read_all(&mut fs, hello, 3), b"hello\n");

    // ext4-view replays only journals with 64-bit, checksummed (v3)
    // tags, as the kernel writes them for ext4 with metadata_csum; an
    // ext3 journal is shown unreplayed, and says why.
    let img = Image::new("mkfs.ext3", &["-b", "4096"], 16);
    img.host("hello", b"hello\n");
    img.debugfs(b"write hello hello.txt\n");
    let block = first_block(&img, "hello.txt");
    img.host("new", &new);
    img.debugfs(format!("jo\njw -b {block} new\njc\n").as_bytes());
    let mut fs = img.open();
    assert!(
        matches!(fs.journal(), Journal::NotReplayed { why } if why.contains("journal features")),
        "{:?}",
        fs.journal()
    );
    let hello = node_at(&mut fs, b"hello.txt");
    assert_eq!(read_all(&mut fs, hello, 3), b"hello\n");
}

#[test]
fn cycles_and_second_directory_links_are_damage() {
    let img = populated();
    img.debugfs(b"ln dir dir/sub/back\nmkdir other\nln dir/sub other/again\n");
    let mut fs = img.open();
    let root = fs.root();
    assert!(fs.list(root).is_ok());
    let dir = node_at(&mut fs, b"dir");
    let sub = node_at(&mut fs, b"dir/sub");
    assert!(fs.list(dir).is_ok());
    let err = fs.list(sub).unwrap_err();
    assert!(
        matches!(&err, FsError::Damaged(m) if m.contains("cycle")),
        "{err}"
    );
    assert!(matches!(fs.lookup(sub, b"back"), Err(FsError::Damaged(_))));
    assert!(fs.lookup(sub, b"deep.txt").unwrap().is_some());
    let other = node_at(&mut fs, b"other");
    let err = fs.list(other).unwrap_err();
    assert!(
        matches!(&err, FsError::Damaged(m) if m.contains("second link")),
        "{err}"
    );
    // Nodes not reached as directories are not listed.
    let hello = node_at(&mut fs, b"hello.txt");
    assert!(matches!(fs.list(hello), Err(FsError::NotADirectory)));
    let mut fresh = img.open();
    assert!(matches!(fresh.list(sub), Err(FsError::Damaged(_))));
}

#[test]
fn damaged_inodes_cost_only_themselves() {
    let img = populated();
    img.debugfs(b"sif hello.txt size_hi 0x40000\nsif dir size 0xffffffff\nsif dir size_hi 1\n");
    let mut fs = img.open();
    let root = fs.list(fs.root()).unwrap();
    assert_eq!(root.len(), 9);
    let hello = root[1].node;
    // A petabyte file: ext4 cannot hold it, the inode is damaged.
    assert!(matches!(fs.stat(hello), Err(FsError::Damaged(_))));
    let dir = root[2].node;
    assert!(matches!(fs.list(dir), Err(FsError::Damaged(_))));
    assert!(fs.stat(root[3].node).is_ok());
}

/// ext4's superblock checksum: CRC32C (no final inversion) of the
/// superblock up to the checksum field.
fn reseal_superblock(bytes: &mut [u8]) {
    let sb = &mut bytes[1024..2048];
    let sum = !crc32c::crc32c(&sb[..0x3fc]);
    sb[0x3fc..].copy_from_slice(&sum.to_le_bytes());
}

#[test]
fn hostile_superblocks_are_refused() {
    let img = Image::new("mkfs.ext4", &["-b", "4096"], 8);
    let good = img.bytes();
    let mut resealed = good.clone();
    reseal_superblock(&mut resealed);
    assert_eq!(resealed, good, "superblock checksum computed differently");
    type Mutation = fn(&mut [u8]);
    let mutations: [(&str, Mutation); 8] = [
        ("blocks count huge", |sb| {
            sb[0x4..0x8].fill(0xff);
            sb[0x150..0x154].fill(0xff);
        }),
        ("blocks per group 0", |sb| sb[0x20..0x24].fill(0)),
        ("inodes per group huge", |sb| sb[0x28..0x2c].fill(0xff)),
        ("inode size 0", |sb| sb[0x58..0x5a].fill(0)),
        ("inode size 96", |sb| sb[0x58] = 96),
        ("log block size 40", |sb| sb[0x18] = 40),
        ("zeroed", |sb| sb.fill(0)),
        ("first data block past the end", |sb| {
            sb[0x14..0x18].fill(0x7f)
        }),
    ];
    for (what, mutate) in mutations {
        for reseal in [false, true] {
            let mut bytes = good.clone();
            mutate(&mut bytes[1024..2048]);
            if reseal {
                reseal_superblock(&mut bytes);
            }
            assert!(open_bytes(bytes).is_err(), "{what} (resealed: {reseal})");
        }
    }
    // A filesystem longer than its volume (a truncated image).
    assert!(matches!(
        open_bytes(good[..4 << 20].to_vec()),
        Err(FsError::Damaged(_))
    ));
    assert!(open_bytes(good[..1500].to_vec()).is_err());

    // Tiny block groups on a large volume: millions of descriptors.
    let mut bytes = good.clone();
    let sb = &mut bytes[1024..2048];
    sb[0x4..0x8].copy_from_slice(&(1u32 << 30).to_le_bytes());
    sb[0x20..0x24].copy_from_slice(&256u32.to_le_bytes());
    sb[0x24..0x28].copy_from_slice(&256u32.to_le_bytes());
    reseal_superblock(&mut bytes);
    let err = open(Source::new(Arc::new(Zeroed(bytes, 4 << 40))))
        .err()
        .unwrap();
    assert!(
        matches!(&err, FsError::Damaged(m) if m.contains("groups")),
        "{err}"
    );
}

/// `.0`, then zeros to `.1` bytes.
struct Zeroed(Vec<u8>, u64);

impl crate::fs::ReadAt for Zeroed {
    fn read_at(&self, offset_bytes: u64, buf: &mut [u8]) -> std::io::Result<()> {
        buf.fill(0);
        let start = offset_bytes.min(self.0.len() as u64) as usize;
        let end = (start + buf.len()).min(self.0.len());
        buf[..end - start].copy_from_slice(&self.0[start..end]);
        Ok(())
    }
    fn len_bytes(&self) -> u64 {
        self.1
    }
}

/// Open `bytes` and touch everything reachable, within bounds; errors
/// are fine, panics and hangs are not. How many nodes it reached.
fn exercise(bytes: Vec<u8>) -> usize {
    let Ok(mut fs) = open_bytes(bytes) else {
        return 0;
    };
    let mut todo = vec![fs.root()];
    let mut seen = 0;
    while let Some(dir) = todo.pop() {
        let _ = fs.stat(dir);
        let Ok(entries) = fs.list(dir) else { continue };
        for e in entries {
            seen += 1;
            if seen > 5_000 {
                return seen;
            }
            let _ = fs.lookup(dir, &e.name);
            let _ = fs.stat(e.node);
            let _ = fs.xattrs(e.node);
            match e.kind {
                FileKind::Dir => todo.push(e.node),
                FileKind::Symlink => {
                    let _ = fs.read_link(e.node);
                }
                _ => {
                    let mut buf = vec![0u8; 64 << 10];
                    let _ = fs.read(e.node, 0, &mut buf);
                    let _ = fs.read(e.node, 1 << 20, &mut buf);
                }
            }
        }
    }
    seen
}

/// What the mutated images' files hold: flipping it tells nothing.
const FILLER: u8 = 5;

/// The offsets of `bytes`' 512-byte sectors that hold metadata: not all
/// zero, not file data.
fn metadata_sectors(bytes: &[u8]) -> Vec<usize> {
    bytes
        .chunks(512)
        .enumerate()
        .filter(|(_, s)| s.iter().any(|&b| b != 0) && !s.iter().all(|&b| b == FILLER))
        .map(|(i, _)| i * 512)
        .collect()
}

/// A few hundred small filesystems with a few bytes changed in their
/// metadata, or cut short, each opened and walked under `catch_unwind`,
/// all within a time budget. `DISKHIST_EXT4_MUTATIONS` and
/// `DISKHIST_EXT4_SEED` run more, or others.
#[test]
fn seeded_mutations_never_panic_or_hang() {
    let cases = diskhist_test_common::env_number("DISKHIST_EXT4_MUTATIONS").unwrap_or(300);
    let seed = diskhist_test_common::env_number("DISKHIST_EXT4_SEED").unwrap_or(0xe47);
    // Far more than a case takes (milliseconds): only a hang exceeds it.
    let budget = Duration::from_secs(20);
    let mut images = Vec::new();
    for (mkfs, args) in [
        ("mkfs.ext4", &["-b", "1024", "-I", "256"][..]),
        ("mkfs.ext4", &["-b", "1024", "-O", "^metadata_csum"][..]),
        ("mkfs.ext2", &["-b", "1024"][..]),
    ] {
        let img = Image::new(mkfs, args, 8);
        img.host("blk", &[FILLER; 3000]);
        // Islands of data between holes: an extent tree below the
        // inode, or indirect blocks.
        let islands = img.host("islands", b"");
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&islands)
            .unwrap();
        for i in 0..12 {
            std::os::unix::fs::FileExt::write_all_at(&f, &[FILLER; 1024], i * 300_000).unwrap();
        }
        drop(f);
        // (debugfs's symlink and mknod take the name as it is, slashes
        // and all.)
        let mut cmds = String::from("mkdir d\nmkdir d/e\ncd d\nmknod c c 4 5\n");
        writeln!(cmds, "symlink l /{}\ncd /", "long/".repeat(20)).unwrap();
        // Enough entries for a hashed directory.
        for i in 0..150 {
            writeln!(cmds, "write blk d/file_number_{i}").unwrap();
        }
        cmds.push_str("ea_set d/file_number_1 user.a b\nwrite islands d/e/islands\n");
        img.debugfs(cmds.as_bytes());
        if args.contains(&"256") {
            // A committed transaction, for the journal's replay.
            let block = first_block(&img, "d/file_number_2");
            img.debugfs(format!("jo -c\njw -b {block} blk\njc\n").as_bytes());
        }
        images.push(img.bytes());
    }
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut rng = Rng::new(seed);
        let used: Vec<Vec<usize>> = images.iter().map(|b| metadata_sectors(b)).collect();
        for case in 0..cases {
            let which = case as usize % images.len();
            let mut bytes = images[which].clone();
            if rng.one_in(10) {
                bytes.truncate(rng.below(bytes.len() as u64) as usize);
            } else {
                for _ in 0..rng.range(1, 8) {
                    let sector = used[which][rng.below(used[which].len() as u64) as usize];
                    let at = sector + rng.below(512) as usize;
                    if rng.one_in(3) {
                        // A whole field set to an edge value.
                        let at = at & !3;
                        let edges = [0, 1, 0x7fff_ffff, 0x8000_0000, u32::MAX, 0xffff];
                        let v = edges[rng.below(edges.len() as u64) as usize];
                        bytes[at..at + 4].copy_from_slice(&u32::to_le_bytes(v));
                    } else {
                        bytes[at] = rng.next_u64() as u8;
                    }
                }
            }
            let outcome = std::panic::catch_unwind(|| exercise(bytes));
            if done_tx.send((case, outcome)).is_err() {
                return;
            }
        }
    });
    let (mut panics, mut opened, mut reached) = (Vec::new(), 0, 0);
    for expected in 0..cases {
        let (case, outcome) = done_rx.recv_timeout(budget).unwrap_or_else(|_| {
            panic!("case {expected} took more than {budget:?}: a hang (seed {seed:#x})")
        });
        match outcome {
            Ok(0) => {}
            Ok(n) => {
                opened += 1;
                reached += n;
            }
            Err(_) => panics.push(case),
        }
    }
    assert!(
        panics.is_empty(),
        "seed {seed:#x}: cases that panicked: {panics:?}"
    );
    // The mutations must leave most images readable, or they test little.
    assert!(opened * 2 > cases, "only {opened} of {cases} opened");
    eprintln!("{cases} mutations: {opened} opened, {reached} nodes reached");
}

/// One line per node under `dir`, as `walk` prints it: path, kind, size,
/// mode, uid, gid, links, inode, mtime, symlink target, CRC32 of the
/// content.
fn line(path: &[u8], st: &Stat, target: &[u8], crc: Option<u32>) -> String {
    let esc = |b: &[u8]| b.escape_ascii().to_string();
    let mtime = st.mtime.map_or(0, |t| t.0);
    format!(
        "{}\t{:?}\t{}\t{:o}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
        esc(path),
        st.kind,
        if st.kind == FileKind::File {
            st.size
        } else {
            0
        },
        st.perm,
        st.uid,
        st.gid,
        st.nlink,
        st.ino,
        mtime,
        esc(target),
        crc.map_or("-".into(), |c| format!("{c:08x}")),
    )
}

fn walk(fs: &mut Ext4Fs, dir: NodeId, path: &[u8], out: &mut Vec<String>) {
    for e in fs.list(dir).unwrap() {
        let mut p = path.to_vec();
        p.push(b'/');
        p.extend_from_slice(&e.name);
        let st = fs.stat(e.node).unwrap();
        let target = if e.kind == FileKind::Symlink {
            fs.read_link(e.node).unwrap()
        } else {
            Vec::new()
        };
        let crc =
            (e.kind == FileKind::File).then(|| crc32fast::hash(&read_all(fs, e.node, 1 << 20)));
        out.push(line(&p, &st, &target, crc));
        if e.kind == FileKind::Dir {
            walk(fs, e.node, &p, out);
        }
    }
}

/// The same lines, from a kernel mount.
fn kernel_walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let md = std::fs::symlink_metadata(&p).unwrap();
        let t = md.file_type();
        use std::os::unix::fs::FileTypeExt;
        let kind = if t.is_dir() {
            FileKind::Dir
        } else if t.is_file() {
            FileKind::File
        } else if t.is_symlink() {
            FileKind::Symlink
        } else if t.is_char_device() {
            FileKind::CharDevice
        } else if t.is_block_device() {
            FileKind::BlockDevice
        } else if t.is_fifo() {
            FileKind::Fifo
        } else {
            FileKind::Socket
        };
        let st = Stat {
            kind,
            perm: (md.mode() & 0o7777) as u16,
            uid: md.uid(),
            gid: md.gid(),
            size: md.size(),
            nlink: md.nlink() as u32,
            ino: md.ino(),
            rdev: 0,
            atime: None,
            mtime: Some(TimeNs(md.mtime() * 1_000_000_000 + md.mtime_nsec())),
            ctime: None,
            crtime: None,
            times: Vec::new(),
        };
        let target = if kind == FileKind::Symlink {
            std::fs::read_link(&p)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec()
        } else {
            Vec::new()
        };
        let crc = (kind == FileKind::File).then(|| crc32fast::hash(&std::fs::read(&p).unwrap()));
        let rel = p.strip_prefix(root).unwrap().as_os_str().as_bytes();
        let mut path = b"/".to_vec();
        path.extend_from_slice(rel);
        out.push(line(&path, &st, &target, crc));
        if kind == FileKind::Dir {
            kernel_walk(root, &p, out);
        }
    }
}

/// As root: the kernel's read-only mount (`ro,noload`) of an image shows
/// the same names, kinds, sizes, modes, owners, links, inodes, mtimes,
/// targets and contents. Its directory order is by hash (hashed
/// directories), this reader's on-disk: compared as sets.
#[test]
fn the_kernel_sees_the_same_tree() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to loop-mount");
        return;
    }
    let img = populated();
    let want = Rng::new(31).bytes(3 << 20);
    img.host("big", &want);
    let mut cmds = String::from("write big dir/big\nmkdir many\n");
    for i in 0..300 {
        writeln!(cmds, "write hello many/f{i}").unwrap();
    }
    img.debugfs(cmds.as_bytes());
    let mut ours = Vec::new();
    let mut fs = img.open();
    let root = fs.root();
    walk(&mut fs, root, b"", &mut ours);

    let mnt = img.dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let status = Command::new("mount")
        .args(["-o", "loop,ro,noload"])
        .arg(&img.path)
        .arg(&mnt)
        .status()
        .unwrap();
    if !status.success() {
        eprintln!("skipped: mount -o loop failed here");
        return;
    }
    // Unmounted however the walk ends.
    let mounted = diskhist_test_common::KernelMount { dir: mnt.clone() };
    let mut theirs = Vec::new();
    kernel_walk(&mnt, &mnt, &mut theirs);
    drop(mounted);
    ours.sort();
    theirs.sort();
    // The root's 10, dir's 3, sub's 1, many's 300.
    assert_eq!(ours.len(), 10 + 3 + 1 + 300);
    assert_eq!(ours, theirs);
}

/// An ext4 (without metadata_csum: this writes its directory blocks)
/// whose `/big` holds `n` entries, `f0000000`, `f0000001`..., all links
/// to `/target`, in a linear (unhashed) directory.
fn big_directory(n: usize) -> Image {
    const BLOCK: usize = 4096;
    const ENTRY: usize = 16;
    let blocks = (n * ENTRY + 24).div_ceil(BLOCK);
    let size_mib = ((blocks * BLOCK) >> 20) as u64 + 32;
    let img = Image::new(
        "mkfs.ext4",
        &["-b", "4096", "-O", "^metadata_csum"],
        size_mib,
    );
    img.host("target", b"t");
    img.host("filler", &vec![0xffu8; blocks * BLOCK]);
    img.debugfs(b"write target target\nwrite filler filler\nsif filler mode 040755\nln filler big\nunlink filler\n");
    let inode_of = |name: &str| -> u32 {
        let stat = img.ask(&format!("stat {name}"));
        stat.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let (big, target) = (inode_of("big"), inode_of("target"));
    let physical: Vec<usize> = img
        .ask("blocks big")
        .split_whitespace()
        .map(|b| b.parse().unwrap())
        .collect();
    assert_eq!(physical.len(), blocks);
    let mut bytes = img.bytes();
    let mut next = 0;
    for (i, &p) in physical.iter().enumerate() {
        let block = &mut bytes[p * BLOCK..(p + 1) * BLOCK];
        let mut at = 0;
        let mut put = |at: &mut usize, ino: u32, kind: u8, name: &[u8]| {
            let len = (8 + name.len()).next_multiple_of(4);
            block[*at..*at + 4].copy_from_slice(&ino.to_le_bytes());
            block[*at + 4..*at + 6].copy_from_slice(&(len as u16).to_le_bytes());
            block[*at + 6] = name.len() as u8;
            block[*at + 7] = kind;
            block[*at + 8..*at + 8 + name.len()].copy_from_slice(name);
            *at += len;
        };
        if i == 0 {
            put(&mut at, big, 2, b".");
            put(&mut at, 2, 2, b"..");
        }
        let mut last = at;
        while at + ENTRY <= BLOCK && next < n {
            last = at;
            put(&mut at, target, 1, format!("f{next:07}").as_bytes());
            next += 1;
        }
        // The last entry of a block runs to its end (an empty block is
        // one unused entry).
        let rec_len = if at == 0 { BLOCK } else { BLOCK - last };
        block[last + 4..last + 6].copy_from_slice(&(rec_len as u16).to_le_bytes());
    }
    assert_eq!(next, n);
    std::fs::write(&img.path, bytes).unwrap();
    img
}

/// The RSS of this process, in bytes.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// The million-entry directory: listed whole, in seconds, and
/// its lookups answered from the listing.
#[test]
fn a_million_entry_directory_is_listed() {
    let n = 1_000_000;
    let img = big_directory(n);
    let mut fs = img.open();
    let big = node_at(&mut fs, b"big");
    let (started, rss) = (std::time::Instant::now(), rss_bytes());
    let entries = fs.list(big).unwrap();
    let took = started.elapsed();
    let grew = rss_bytes().saturating_sub(rss);
    eprintln!("{n} entries listed in {took:?}, RSS +{} MiB", grew >> 20);
    assert_eq!(entries.len(), n);
    assert_eq!(entries[0].name, b"f0000000");
    assert_eq!(entries[n - 1].name, b"f0999999");
    assert!(took < Duration::from_secs(20), "{took:?}");
    let target = node_at(&mut fs, b"target");
    assert_eq!(fs.lookup(big, b"f0123456").unwrap().unwrap().node, target);
    assert_eq!(fs.lookup(big, b"f1000000").unwrap(), None);
}

#[test]
fn directories_past_the_cap_are_refused() {
    let img = big_directory(MAX_DIR_ENTRIES + 1);
    let mut fs = img.open();
    let big = node_at(&mut fs, b"big");
    let started = std::time::Instant::now();
    let err = fs.list(big).unwrap_err();
    assert!(
        matches!(&err, FsError::Damaged(m) if m.contains("more than")),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    // The rest of the filesystem is unaffected.
    assert_eq!(fs.list(fs.root()).unwrap().len(), 3);
}
