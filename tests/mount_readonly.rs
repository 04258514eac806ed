//! Nothing done through the mount changes anything. Every write-like call
//! (open for writing, write, truncate, create, mknod, mkdir, unlink, rmdir,
//! rename, link, symlink, chmod, chown, utimes, setxattr, removexattr,
//! fallocate, writable mmap) on every kind of node (the root, `at/`, a
//! state directory, `disk.img`, `info`, the `latest` symlink, an alias
//! symlink, `seq/` and a state under it) fails: with EROFS as mounted (the
//! kernel's `ro`), and again with EROFS after root remounts the tree
//! read-write (then the daemon itself answers). Afterwards the store's chain
//! head (CLI and library) and a content hash of every file in the store are
//! unchanged, and the images still read what was recorded.

use diskhist_test_common::{
    chain_head, import, incompressible_xorshift64, init_store, mount_line, run, store_fingerprint,
    Mounted, MIB,
};
use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;

const T1: &str = "2026-11-23T06:30:15Z";
const T1_DIR: &str = "at/2026-11-23T06-30-15Z";
const T2: &str = "2026-11-23T07:00:00Z";
/// A second spelling of T1: a symlink to T1_DIR.
const T1_ALIAS: &str = "at/@1795415415";

fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// The errno of a libc call that returns -1 on failure, 0 if it succeeded.
fn errno_of(rc: i64) -> i32 {
    if rc >= 0 {
        0
    } else {
        std::io::Error::last_os_error().raw_os_error().unwrap()
    }
}

fn name(e: i32) -> String {
    if e == 0 {
        "success".into()
    } else {
        std::io::Error::from_raw_os_error(e).to_string()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// As `diskhist mount` leaves it: mounted `ro`.
    AsMounted,
    /// After `mount -o remount,rw`: only the daemon stands in the way.
    RemountedRw,
}

/// Every attempt and its errno; the caller checks them.
struct Attempts {
    root: std::path::PathBuf,
    phase: Phase,
    got: Vec<(String, i32, &'static [i32])>,
}

const EROFS: &[i32] = &[libc::EROFS];

impl Attempts {
    fn path(&self, rel: &str) -> CString {
        c(&self.root.join(rel))
    }

    fn note(&mut self, what: String, errno: i32, want: &'static [i32]) {
        self.got.push((what, errno, want));
    }

    /// A call on a path: `f` gets the NUL-terminated path, returns the rc.
    fn on(&mut self, what: &str, rel: &str, f: impl FnOnce(&CString) -> i64) {
        let p = self.path(rel);
        let e = errno_of(f(&p));
        self.note(format!("{what} {rel}"), e, EROFS);
    }

    /// A call on two paths.
    fn on2(&mut self, what: &str, a: &str, b: &str, f: impl FnOnce(&CString, &CString) -> i64) {
        let (pa, pb) = (self.path(a), self.path(b));
        let e = errno_of(f(&pa, &pb));
        self.note(format!("{what} {a} -> {b}"), e, EROFS);
    }

    fn open(&mut self, rel: &str, flags: i32, flag_names: &str) {
        let p = self.path(rel);
        // SAFETY: a valid NUL-terminated path; a returned fd is closed at once.
        let fd = unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC, 0o644) };
        let e = errno_of(fd.into());
        if fd >= 0 {
            // SAFETY: the fd was just returned to us.
            unsafe { libc::close(fd) };
        }
        self.note(format!("open({flag_names}) {rel}"), e, EROFS);
    }
}

// SAFETY (every libc call in the closures below): the paths are valid
// NUL-terminated strings that outlive the call; buffers are static.

/// access(W_OK) is EROFS as mounted. Remounted read-write, the daemon
/// answers it (EROFS); a kernel that answered alone might say yes there,
/// and the write itself is refused all the same.
fn access_w(a: &mut Attempts, rel: &str) {
    let p = a.path(rel);
    // SAFETY: a valid NUL-terminated path.
    let e = errno_of(unsafe { libc::access(p.as_ptr(), libc::W_OK) }.into());
    let want: &'static [i32] = match a.phase {
        Phase::AsMounted => EROFS,
        Phase::RemountedRw => &[0, libc::EROFS],
    };
    a.note(format!("access(W_OK) {rel}"), e, want);
}

/// Calls that change a file's content or metadata, on a regular file.
fn file_calls(a: &mut Attempts, f: &str) {
    for (flags, n) in [
        (libc::O_WRONLY, "O_WRONLY"),
        (libc::O_RDWR, "O_RDWR"),
        (libc::O_RDONLY | libc::O_TRUNC, "O_RDONLY|O_TRUNC"),
        (libc::O_WRONLY | libc::O_TRUNC, "O_WRONLY|O_TRUNC"),
        (libc::O_WRONLY | libc::O_APPEND, "O_WRONLY|O_APPEND"),
        (libc::O_RDWR | libc::O_CREAT, "O_RDWR|O_CREAT"),
    ] {
        a.open(f, flags, n);
    }
    a.on("truncate(0)", f, |p| {
        unsafe { libc::truncate(p.as_ptr(), 0) }.into()
    });
    a.on("truncate(grow)", f, |p| {
        unsafe { libc::truncate(p.as_ptr(), 1 << 40) }.into()
    });
    access_w(a, f);
    attr_calls(a, f, false);
    a.on("unlink", f, |p| unsafe { libc::unlink(p.as_ptr()) }.into());
    let parent = Path::new(f).parent().unwrap().to_str().unwrap();
    let sibling = format!("{parent}/renamed");
    a.on2("rename", f, &sibling, |x, y| {
        unsafe { libc::rename(x.as_ptr(), y.as_ptr()) }.into()
    });
    let other = if f.ends_with("disk.img") {
        f.replace("disk.img", "info")
    } else {
        f.replace("info", "disk.img")
    };
    a.on2("rename onto", f, &other, |x, y| {
        unsafe { libc::rename(x.as_ptr(), y.as_ptr()) }.into()
    });
    a.on2("link", f, &format!("{parent}/hardlink"), |x, y| {
        unsafe { libc::link(x.as_ptr(), y.as_ptr()) }.into()
    });
    a.on2("link to root", f, "hardlink", |x, y| {
        unsafe { libc::link(x.as_ptr(), y.as_ptr()) }.into()
    });
    fd_calls(a, f);
}

/// Calls through a descriptor opened read-only (all the mount hands out):
/// writing through it fails too. Where the kernel refuses a read-only
/// descriptor before asking any filesystem, its errno is the answer.
fn fd_calls(a: &mut Attempts, f: &str) {
    let file = std::fs::File::open(a.root.join(f)).unwrap();
    let fd = file.as_raw_fd();
    // SAFETY: a valid fd, static buffers, and a mapping that is unmapped if made.
    unsafe {
        let e = errno_of(libc::pwrite(fd, b"evil".as_ptr().cast(), 4, 0) as i64);
        a.note(format!("pwrite {f}"), e, &[libc::EBADF]);
        let e = errno_of(libc::write(fd, b"evil".as_ptr().cast(), 4) as i64);
        a.note(format!("write {f}"), e, &[libc::EBADF]);
        let e = errno_of(libc::ftruncate(fd, 0).into());
        a.note(format!("ftruncate {f}"), e, &[libc::EINVAL, libc::EBADF]);
        let e = errno_of(libc::fallocate(fd, 0, 0, 4096).into());
        a.note(format!("fallocate {f}"), e, &[libc::EBADF]);
        let e = errno_of(libc::fallocate(fd, libc::FALLOC_FL_PUNCH_HOLE | 1, 0, 4096).into());
        a.note(format!("fallocate(punch hole) {f}"), e, &[libc::EBADF]);
        let map = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        );
        let e = if map == libc::MAP_FAILED {
            std::io::Error::last_os_error().raw_os_error().unwrap()
        } else {
            libc::munmap(map, 4096);
            0
        };
        a.note(
            format!("mmap(PROT_WRITE, MAP_SHARED) {f}"),
            e,
            &[libc::EACCES],
        );
        let e = errno_of(libc::fchmod(fd, 0o666).into());
        a.note(format!("fchmod {f}"), e, EROFS);
        let e = errno_of(libc::fchown(fd, 1, 1).into());
        a.note(format!("fchown {f}"), e, EROFS);
        let e = errno_of(libc::futimens(fd, std::ptr::null()).into());
        a.note(format!("futimens {f}"), e, EROFS);
        let e =
            errno_of(libc::fsetxattr(fd, c"user.x".as_ptr(), b"1".as_ptr().cast(), 1, 0).into());
        a.note(format!("fsetxattr {f}"), e, EROFS);
        let e = errno_of(libc::fremovexattr(fd, c"user.x".as_ptr()).into());
        a.note(format!("fremovexattr {f}"), e, EROFS);
    }
}

/// chmod, chown, utimes and xattrs; `nofollow` acts on a symlink itself.
fn attr_calls(a: &mut Attempts, t: &str, nofollow: bool) {
    if nofollow {
        a.on("lchown", t, |p| {
            unsafe { libc::lchown(p.as_ptr(), 1, 1) }.into()
        });
        a.on("utimensat(NOFOLLOW)", t, |p| {
            unsafe {
                libc::utimensat(
                    libc::AT_FDCWD,
                    p.as_ptr(),
                    std::ptr::null(),
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            }
            .into()
        });
        // user.* is not allowed on symlinks at all; trusted.* reaches the fs.
        a.on("lsetxattr(trusted.x)", t, |p| {
            unsafe {
                libc::lsetxattr(
                    p.as_ptr(),
                    c"trusted.x".as_ptr(),
                    b"1".as_ptr().cast(),
                    1,
                    0,
                )
            }
            .into()
        });
        a.on("lremovexattr(trusted.x)", t, |p| {
            unsafe { libc::lremovexattr(p.as_ptr(), c"trusted.x".as_ptr()) }.into()
        });
        return;
    }
    a.on("chmod", t, |p| {
        unsafe { libc::chmod(p.as_ptr(), 0o777) }.into()
    });
    a.on("chown", t, |p| {
        unsafe { libc::chown(p.as_ptr(), 1, 1) }.into()
    });
    a.on("utimes(now)", t, |p| {
        unsafe { libc::utimes(p.as_ptr(), std::ptr::null()) }.into()
    });
    a.on("utimensat(0)", t, |p| {
        let ts = [libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        }; 2];
        unsafe { libc::utimensat(libc::AT_FDCWD, p.as_ptr(), ts.as_ptr(), 0) }.into()
    });
    for attr in [c"user.x", c"trusted.x", c"security.x"] {
        let n = attr.to_str().unwrap();
        a.on(&format!("setxattr({n})"), t, |p| {
            unsafe { libc::setxattr(p.as_ptr(), attr.as_ptr(), b"1".as_ptr().cast(), 1, 0) }.into()
        });
        a.on(&format!("removexattr({n})"), t, |p| {
            unsafe { libc::removexattr(p.as_ptr(), attr.as_ptr()) }.into()
        });
    }
}

/// Calls that add names to, or take them from, a directory.
fn dir_calls(a: &mut Attempts, d: &str, removable: bool) {
    let new = |n: &str| {
        if d.is_empty() {
            n.to_string()
        } else {
            format!("{d}/{n}")
        }
    };
    a.open(
        &new("created"),
        libc::O_WRONLY | libc::O_CREAT,
        "O_WRONLY|O_CREAT",
    );
    a.open(
        &new("created"),
        libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
        "O_RDWR|O_CREAT|O_EXCL",
    );
    // An unnamed file in the directory. Remounted read-write, a kernel
    // whose FUSE has no tmpfile request refuses it before the daemon.
    let p = a.path(d);
    // SAFETY: a valid NUL-terminated path; a returned fd is closed at once.
    let fd = unsafe {
        libc::open(
            p.as_ptr(),
            libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC,
            0o600,
        )
    };
    let e = errno_of(fd.into());
    if fd >= 0 {
        // SAFETY: the fd was just returned to us.
        unsafe { libc::close(fd) };
    }
    let want: &'static [i32] = match a.phase {
        Phase::AsMounted => EROFS,
        Phase::RemountedRw => &[libc::EROFS, libc::EOPNOTSUPP],
    };
    a.note(format!("open(O_TMPFILE|O_RDWR) {d}"), e, want);
    a.on("mkdir", &new("newdir"), |p| {
        unsafe { libc::mkdir(p.as_ptr(), 0o755) }.into()
    });
    a.on("mknod(fifo)", &new("fifo"), |p| {
        unsafe { libc::mknod(p.as_ptr(), libc::S_IFIFO | 0o600, 0) }.into()
    });
    a.on("mknod(regular)", &new("node"), |p| {
        unsafe { libc::mknod(p.as_ptr(), libc::S_IFREG | 0o600, 0) }.into()
    });
    a.on("symlink", &new("symlink"), |p| {
        unsafe { libc::symlink(c"disk.img".as_ptr(), p.as_ptr()) }.into()
    });
    a.on2(
        "link into",
        &format!("{T1_DIR}/disk.img"),
        &new("hardlink"),
        |x, y| unsafe { libc::link(x.as_ptr(), y.as_ptr()) }.into(),
    );
    access_w(a, d);
    if !d.is_empty() {
        attr_calls(a, d, false);
    }
    if removable {
        a.on("rmdir", d, |p| unsafe { libc::rmdir(p.as_ptr()) }.into());
        let parent = Path::new(d).parent().unwrap().to_str().unwrap();
        let to = if parent.is_empty() {
            "renamed-dir".to_string()
        } else {
            format!("{parent}/renamed-dir")
        };
        a.on2("rename", d, &to, |x, y| {
            unsafe { libc::rename(x.as_ptr(), y.as_ptr()) }.into()
        });
    }
}

/// Calls on a symlink itself (not what it points to).
fn symlink_calls(a: &mut Attempts, l: &str) {
    a.on("unlink", l, |p| unsafe { libc::unlink(p.as_ptr()) }.into());
    a.on2("rename", l, &format!("{l}-renamed"), |x, y| {
        unsafe { libc::rename(x.as_ptr(), y.as_ptr()) }.into()
    });
    a.on2("link (the symlink itself)", l, "hardlink", |x, y| {
        unsafe { libc::linkat(libc::AT_FDCWD, x.as_ptr(), libc::AT_FDCWD, y.as_ptr(), 0) }.into()
    });
    attr_calls(a, l, true);
    // Through the link: acts on the state directory it names.
    attr_calls(a, l, false);
}

fn try_everything(root: &Path, phase: Phase) -> Vec<String> {
    let mut a = Attempts {
        root: root.to_path_buf(),
        phase,
        got: Vec::new(),
    };
    dir_calls(&mut a, "", false);
    dir_calls(&mut a, "at", true);
    dir_calls(&mut a, T1_DIR, true);
    dir_calls(&mut a, "seq", true);
    dir_calls(&mut a, "seq/1", true);
    dir_calls(&mut a, "latest", false);
    for f in [
        format!("{T1_DIR}/disk.img"),
        format!("{T1_DIR}/info"),
        "latest/disk.img".into(),
        "latest/info".into(),
        "seq/1/disk.img".into(),
        "seq/0/info".into(),
        format!("{T1_ALIAS}/disk.img"),
    ] {
        file_calls(&mut a, &f);
    }
    symlink_calls(&mut a, "latest");
    symlink_calls(&mut a, T1_ALIAS);
    symlink_calls(&mut a, "at/latest");
    assert!(a.got.len() > 250, "only {} attempts", a.got.len());
    eprintln!("{phase:?}: {} write-like attempts", a.got.len());
    a.got
        .into_iter()
        .filter(|(_, e, want)| !want.contains(e))
        .map(|(what, e, want)| {
            let want: Vec<String> = want.iter().map(|&w| name(w)).collect();
            format!(
                "{phase:?}: {what}: {} (want {})",
                name(e),
                want.join(" or ")
            )
        })
        .collect()
}

/// The tree still serves exactly what was recorded.
fn images_intact(m: &Mounted, t1: &[u8], t2: &[u8]) {
    for (rel, want) in [
        (format!("{T1_DIR}/disk.img"), t1),
        ("latest/disk.img".into(), t2),
        ("seq/1/disk.img".into(), t1),
        ("seq/4/disk.img".into(), t2),
        (format!("{T1_ALIAS}/disk.img"), t1),
    ] {
        let got = std::fs::read(m.path(&rel)).unwrap();
        assert!(got == want, "{rel} no longer reads what was recorded");
    }
}

#[test]
fn every_write_like_call_fails_with_erofs_and_the_store_is_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let store = init_store(dir.path(), "4M");
    let img = dir.path().join("raw.img");
    let t1 = incompressible_xorshift64(4 * MIB, 3);
    std::fs::write(&img, &t1).unwrap();
    import(&store, &img, T1);
    let mut t2 = t1.clone();
    t2[MIB..MIB + 8192].fill(0x77);
    std::fs::write(&img, &t2).unwrap();
    import(&store, &img, T2);

    let head_before = diskhist::Store::open(&store).unwrap().head();
    let cli_head_before = chain_head(&store);
    assert_eq!(cli_head_before, head_before.chain.to_hex());
    let files_before = store_fingerprint(&store);

    let m = Mounted::start(&store, &dir.path().join("mnt"), &[]);
    assert_eq!(
        std::fs::read_link(m.path(T1_ALIAS)).unwrap(),
        Path::new("2026-11-23T06-30-15Z"),
        "the alias must be a symlink for the symlink calls to mean anything"
    );
    images_intact(&m, &t1, &t2);
    let mut wrong = try_everything(&m.dir, Phase::AsMounted);

    // Root can lift the kernel's `ro`; the daemon must still refuse.
    run(Command::new("mount")
        .args(["-i", "-o", "remount,rw"])
        .arg(&m.dir));
    let line = mount_line(&m.dir).unwrap();
    assert!(line.contains(" rw,"), "remount did not take: {line}");
    wrong.extend(try_everything(&m.dir, Phase::RemountedRw));
    assert!(
        wrong.is_empty(),
        "{} write-like calls were not refused as they must be:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    images_intact(&m, &t1, &t2);
    assert!(!m.stderr().contains("panick"), "{}", m.stderr());
    drop(m);

    let head_after = diskhist::Store::open(&store).unwrap().head();
    assert_eq!(head_after, head_before, "the store's head moved");
    assert_eq!(chain_head(&store), cli_head_before);
    let files_after = store_fingerprint(&store);
    assert_eq!(files_after, files_before, "a file in the store changed");
}
