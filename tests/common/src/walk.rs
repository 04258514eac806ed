//! Walks of a file tree into sorted lines, one per node (path, type,
//! size, content hash or symlink target, mtime in nanoseconds, and on
//! request the `user.` extended attributes), so that what the mount's
//! `files/` shows can be compared whole with what a kernel or FUSE driver
//! shows of the same state; and the comparison, which names every line
//! that differs.
//!
//! The reference for FAT is The Sleuth Kit ([`tsk_walk`]): this machine's
//! kernel has no vfat driver, and mtools prints times to the minute only.

use crate::mount::KernelMount;
use crate::process::run;
use crate::sha256_hex;
use std::collections::BTreeSet;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// What a walk records beyond name, type, size, content and mtime.
#[derive(Debug, Clone, Copy, Default)]
pub struct WalkOptions {
    /// Directory sizes (the kernel's and diskhist's agree on ext4 and
    /// NTFS; a FAT reference may count otherwise).
    pub dir_sizes: bool,
    /// `user.` extended attributes (NTFS named streams) of files and
    /// directories, except those whose name starts with one of
    /// `hide_xattrs`.
    pub xattrs: bool,
    pub hide_xattrs: &'static [&'static str],
}

impl WalkOptions {
    /// Walks of ext4 and FAT: directory sizes compared too.
    pub const PLAIN: WalkOptions = WalkOptions {
        dir_sizes: true,
        xattrs: false,
        hide_xattrs: &[],
    };

    /// Walks of NTFS: named streams (`user.<stream>` in both ntfs-3g and
    /// diskhist) compared too; diskhist's own attributes (the inode
    /// number, the eight NTFS timestamps) left out, ntfs-3g has no such
    /// names.
    pub const NTFS: WalkOptions = WalkOptions {
        dir_sizes: true,
        xattrs: true,
        hide_xattrs: &["user.diskhist.", "user.ntfs."],
    };
}

/// A path's bytes, shown losslessly (non-UTF-8 bytes escaped).
fn show(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// One node as a line; `digest` is `sha256:<hex>` for a file, `-> target`
/// for a symlink, `-` otherwise.
pub fn node_line(rel: &str, kind: &str, size: Option<u64>, digest: &str, mtime_ns: i64) -> String {
    let size = size.map_or("-".to_string(), |s| s.to_string());
    format!("{rel} {kind} size={size} {digest} mtime={mtime_ns}")
}

fn kind_of(ft: std::fs::FileType) -> &'static str {
    if ft.is_dir() {
        "dir"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_file() {
        "file"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_char_device() {
        "chardev"
    } else {
        "blockdev"
    }
}

/// Every node under `root` (not `root` itself) as a line, sorted; the
/// first error met, with the path it was met at.
pub fn try_walk(root: &Path, opts: WalkOptions) -> Result<Vec<String>, (PathBuf, io::Error)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| (dir.clone(), e))?;
        for e in entries {
            let e = e.map_err(|e| (dir.clone(), e))?;
            let path = e.path();
            let fail = |e| (path.clone(), e);
            let md = std::fs::symlink_metadata(&path).map_err(fail)?;
            let rel = show(path.strip_prefix(root).unwrap().as_os_str().as_bytes());
            let kind = kind_of(md.file_type());
            let digest = match kind {
                "file" => format!(
                    "sha256:{}",
                    sha256_hex(&std::fs::read(&path).map_err(fail)?)
                ),
                "symlink" => format!(
                    "-> {}",
                    show(
                        std::fs::read_link(&path)
                            .map_err(fail)?
                            .as_os_str()
                            .as_bytes()
                    )
                ),
                _ => "-".to_string(),
            };
            let size = (kind != "dir" || opts.dir_sizes).then_some(md.size());
            let mut line = node_line(
                &rel,
                kind,
                size,
                &digest,
                md.mtime() * 1_000_000_000 + md.mtime_nsec(),
            );
            // The kernel refuses to read `user.` attributes of anything but
            // files and directories (ENODATA), whatever the filesystem.
            if opts.xattrs && (kind == "file" || kind == "dir") {
                for (name, value) in user_xattrs(&path).map_err(fail)? {
                    if !opts.hide_xattrs.iter().any(|h| name.starts_with(h)) {
                        line.push_str(&format!(" xattr:{name}=sha256:{}", sha256_hex(&value)));
                    }
                }
            }
            out.push(line);
            if kind == "dir" {
                stack.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// [`try_walk`] that must succeed.
pub fn walk(root: &Path, opts: WalkOptions) -> Vec<String> {
    try_walk(root, opts).unwrap_or_else(|(p, e)| panic!("walking {}: {e}", p.display()))
}

/// `path`'s extended attributes in the `user.` namespace (not following a
/// symlink), sorted by name.
pub fn user_xattrs(path: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut names = vec![0u8; 64 * 1024];
    // SAFETY: `c` is NUL-terminated; `names` is writable for its length.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    names.truncate(n as usize);
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if !name.starts_with(b"user.") {
            continue;
        }
        let cname = CString::new(name).unwrap();
        let mut value = vec![0u8; 1 << 20];
        // SAFETY: both strings are NUL-terminated; `value` is writable for
        // its length.
        let len = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                cname.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        if len < 0 {
            return Err(io::Error::last_os_error());
        }
        value.truncate(len as usize);
        out.push((String::from_utf8_lossy(name).into_owned(), value));
    }
    out.sort();
    Ok(out)
}

/// Two walks must be equal; else a panic naming `what` and every line
/// found on one side only.
pub fn assert_same_tree(what: &str, got: &[String], want: &[String]) {
    if got == want {
        return;
    }
    let g: BTreeSet<&String> = got.iter().collect();
    let w: BTreeSet<&String> = want.iter().collect();
    let mut msg = format!("{what}: the trees differ\n");
    for l in g.difference(&w) {
        msg.push_str(&format!("  only in files/:   {l}\n"));
    }
    for l in w.difference(&g) {
        msg.push_str(&format!("  only in the reference: {l}\n"));
    }
    panic!("{msg}");
}

/// The line for `rel` in a walk; a panic naming `what` if there is none.
pub fn line_of<'a>(walk: &'a [String], rel: &str, what: &str) -> &'a str {
    walk.iter()
        .find(|l| l.strip_prefix(rel).is_some_and(|r| r.starts_with(' ')))
        .unwrap_or_else(|| panic!("{what}: no {rel} in:\n{}", walk.join("\n")))
}

/// Is there a line for `rel`?
pub fn has(walk: &[String], rel: &str) -> bool {
    walk.iter()
        .any(|l| l.strip_prefix(rel).is_some_and(|r| r.starts_with(' ')))
}

/// A FAT volume as The Sleuth Kit reads it (`fls -r -p -u -m`,
/// `tsk_recover -a`),
/// in [`walk`]'s lines (directory sizes and no xattrs): the volume starts
/// `offset_sectors` 512-byte sectors into `image`. Times are read as UTC.
pub fn tsk_walk(image: &Path, offset_sectors: u64) -> Vec<String> {
    let off = offset_sectors.to_string();
    let body = run(Command::new("fls")
        .args(["-r", "-p", "-u", "-z", "UTC", "-m", "/", "-o", &off])
        .arg(image)
        .env("TZ", "UTC"));
    // Every allocated file's content, in one run rather than one icat
    // per file.
    let recovered = tempfile::tempdir().unwrap();
    run(Command::new("tsk_recover")
        .args(["-a", "-o", &off])
        .arg(image)
        .arg(recovered.path()));
    let mut out = Vec::new();
    for l in body.lines() {
        // MD5|name|inode|mode|UID|GID|size|atime|mtime|ctime|crtime
        let f: Vec<&str> = l.split('|').collect();
        assert_eq!(f.len(), 11, "a body line of 11 fields: {l}");
        let (name, inode, mode, size, mtime) = (f[1], f[2], f[3], f[6], f[8]);
        let rel = name.trim_start_matches('/');
        let virtual_entry = rel.starts_with('$') && !rel.contains('/');
        if virtual_entry || name.ends_with("(Volume Label Entry)") {
            continue;
        }
        let kind = match mode.as_bytes()[0] {
            b'd' => "dir",
            b'r' => "file",
            other => panic!("unexpected type {} in {l}", other as char),
        };
        let digest = if kind == "file" {
            let data = match std::fs::read(recovered.path().join(rel)) {
                Ok(data) => data,
                // tsk_recover makes no empty files.
                Err(e) if e.kind() == io::ErrorKind::NotFound && size == "0" => Vec::new(),
                Err(e) => panic!("{rel} (inode {inode}) as tsk_recover wrote it: {e}"),
            };
            format!("sha256:{}", sha256_hex(&data))
        } else {
            "-".to_string()
        };
        let mtime_ns = mtime.parse::<i64>().unwrap() * 1_000_000_000;
        out.push(node_line(
            &show(rel.as_bytes()),
            kind,
            Some(size.parse().unwrap()),
            &digest,
            mtime_ns,
        ));
    }
    out.sort();
    out
}

/// Run `f` on another thread; its result, or a panic naming `what` if it
/// takes more than `limit` (a hang fails the test instead of blocking it;
/// the thread is left behind, stuck until its mount goes).
pub fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(v)) => v,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("{what}: no answer within {limit:?} (a hang)"),
    }
}

/// `mount ARGS IMAGE` on a fresh directory under `scratch`, walked, then
/// unmounted, all within `limit` (the image may come from the mount under
/// test, which may hang).
pub fn kernel_walk(
    limit: Duration,
    args: &[&str],
    image: &Path,
    scratch: &Path,
    opts: WalkOptions,
) -> Vec<String> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let (image, scratch) = (image.to_path_buf(), scratch.to_path_buf());
    let what = format!("mount {args:?} {} and walk it", image.display());
    within(limit, &what, move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let dir = tempfile::tempdir_in(&scratch).unwrap();
        let m = KernelMount::new(&args, &image, dir.path());
        walk(&m.dir, opts)
    })
}

/// The kernel's read-only mount of the ext4 in `image` without journal
/// replay (`ro,noload`), walked within `limit`.
pub fn noload_walk(limit: Duration, image: &Path, scratch: &Path) -> Vec<String> {
    kernel_walk(
        limit,
        &["-o", "loop,ro,noload"],
        image,
        scratch,
        WalkOptions::PLAIN,
    )
}

/// ntfs-3g's read-only mount of the NTFS in `image`, walked within
/// `limit`, named streams included.
pub fn ntfs3g_walk(limit: Duration, image: &Path, scratch: &Path) -> Vec<String> {
    kernel_walk(
        limit,
        &["-t", "ntfs-3g", "-o", "ro"],
        image,
        scratch,
        WalkOptions::NTFS,
    )
}
