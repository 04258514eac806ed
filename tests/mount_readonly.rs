//! Nothing done through the mount changes anything: every write-like call
//! fails with EROFS, and the store is byte-for-byte the same after reading.

mod mount_support;

use mount_support::*;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// The errno of a libc call's -1, or 0 if it succeeded.
fn errno(rc: i32) -> i32 {
    if rc == 0 {
        0
    } else {
        std::io::Error::last_os_error().raw_os_error().unwrap()
    }
}

fn io_errno(r: std::io::Result<impl Sized>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    }
}

/// Size and mtime of every file in the store, and its chain head.
fn fingerprint(store: &Path) -> Vec<(String, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![store.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            }
            out.push((
                e.path().display().to_string(),
                m.len(),
                m.modified().unwrap(),
            ));
        }
    }
    out.sort();
    out
}

#[test]
fn every_write_like_call_fails_with_erofs_and_the_store_is_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let store = init_store(dir.path(), "4M");
    let img = dir.path().join("raw.img");
    std::fs::write(&img, pseudo_random(4 * MIB, 3)).unwrap();
    import(&store, &img, "2026-11-23T06:30:15Z");
    let head_before = diskhist::Store::open(&store).unwrap().head();
    let files_before = fingerprint(&store);

    let m = Mounted::start(&store, &dir.path().join("mnt"), &[]);
    let state = m.path("at/2026-11-23T06-30-15Z");
    let image = state.join("disk.img");
    let info = state.join("info");
    let new = state.join("new");
    let erofs = libc::EROFS;

    let opens: [(&str, i32); 5] = [
        ("O_WRONLY", libc::O_WRONLY),
        ("O_RDWR", libc::O_RDWR),
        ("O_RDONLY|O_TRUNC", libc::O_RDONLY | libc::O_TRUNC),
        ("O_WRONLY|O_APPEND", libc::O_WRONLY | libc::O_APPEND),
        ("O_RDWR|O_CREAT", libc::O_RDWR | libc::O_CREAT),
    ];
    for target in [&image, &info] {
        for (name, flags) in opens {
            let acc = flags & libc::O_ACCMODE;
            let r = std::fs::OpenOptions::new()
                .read(acc != libc::O_WRONLY)
                .write(acc != libc::O_RDONLY)
                .custom_flags(flags & !libc::O_ACCMODE)
                .open(target);
            assert_eq!(io_errno(r), erofs, "open {name} {}", target.display());
        }
    }
    // SAFETY (all libc calls below): valid NUL-terminated paths, no buffers.
    let calls: Vec<(&str, i32)> = vec![
        ("create", io_errno(std::fs::File::create(&new))),
        ("mkdir", io_errno(std::fs::create_dir(&new))),
        (
            "mkdir in at/",
            io_errno(std::fs::create_dir(m.path("at/mine"))),
        ),
        (
            "mknod",
            errno(unsafe { libc::mknod(c(&new).as_ptr(), libc::S_IFIFO | 0o600, 0) }),
        ),
        ("unlink", io_errno(std::fs::remove_file(&image))),
        ("rmdir", io_errno(std::fs::remove_dir(&state))),
        ("rename", io_errno(std::fs::rename(&image, &new))),
        (
            "rename dir",
            io_errno(std::fs::rename(&state, m.path("at/renamed"))),
        ),
        ("link", io_errno(std::fs::hard_link(&image, &new))),
        (
            "symlink",
            io_errno(std::os::unix::fs::symlink("disk.img", &new)),
        ),
        (
            "truncate",
            errno(unsafe { libc::truncate(c(&image).as_ptr(), 0) }),
        ),
        (
            "chmod",
            errno(unsafe { libc::chmod(c(&image).as_ptr(), 0o666) }),
        ),
        (
            "chown",
            errno(unsafe { libc::chown(c(&image).as_ptr(), 1, 1) }),
        ),
        (
            "utimes",
            errno(unsafe { libc::utimes(c(&image).as_ptr(), std::ptr::null()) }),
        ),
        (
            "setxattr",
            errno(unsafe {
                libc::setxattr(
                    c(&image).as_ptr(),
                    c"user.x".as_ptr(),
                    b"1".as_ptr().cast(),
                    1,
                    0,
                )
            }),
        ),
        (
            "removexattr",
            errno(unsafe { libc::removexattr(c(&image).as_ptr(), c"user.x".as_ptr()) }),
        ),
    ];
    for (name, got) in calls {
        assert_eq!(
            got,
            erofs,
            "{name}: {}",
            std::io::Error::from_raw_os_error(got)
        );
    }
    // Through an fd opened for reading, writing still fails.
    let f = std::fs::File::open(&image).unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: a valid fd and a 4-byte buffer that outlives the call.
    let rc = unsafe { libc::pwrite(f.as_raw_fd(), b"evil".as_ptr().cast(), 4, 0) };
    assert_eq!(rc, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::EBADF)
    );
    // SAFETY: a valid fd.
    let rc = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, 4096) };
    assert_eq!(rc, -1, "fallocate on a read-only fd");

    // Read everything, several ways, then check nothing moved.
    for p in [
        "latest/disk.img",
        "seq/0/disk.img",
        "at/@1/disk.img",
        "latest/info",
    ] {
        std::fs::read(m.path(p)).unwrap();
    }
    drop(f);
    drop(m);
    assert_eq!(diskhist::Store::open(&store).unwrap().head(), head_before);
    assert_eq!(fingerprint(&store), files_before);
}
