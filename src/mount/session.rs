//! Mounting: checks that turn the usual failures into clear messages,
//! the FUSE session, and a clean unmount on SIGINT or SIGTERM.

use super::fs::{DiskhistFs, TreeConfig};
use super::listing::Limits;
use crate::store::{Store, StoreError};
use fuser::{Config, MountOption, Session, SessionACL};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The FUSE device the kernel module provides.
pub const FUSE_DEVICE: &str = "/dev/fuse";
/// The filesystem type's subtype: `/proc/mounts` shows `fuse.diskhist`.
pub const SUBTYPE: &str = "diskhist";

/// How to mount (the CLI's flags).
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// Let users other than the one mounting read the tree.
    pub allow_other: bool,
    /// Bytes of decoded blocks kept in memory.
    pub cache_bytes: u64,
    /// Threads answering the kernel.
    pub threads: usize,
    pub limits: Limits,
    /// Mount even on a directory that holds files (the mount hides them).
    pub nonempty: bool,
}

impl Default for MountOptions {
    fn default() -> MountOptions {
        MountOptions {
            allow_other: false,
            cache_bytes: 64 << 20,
            threads: 4,
            limits: Limits::default(),
            nonempty: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MountError {
    #[error("mountpoint {0}: no such directory; create it first (mkdir {0})")]
    MissingMountpoint(PathBuf),
    #[error("mountpoint {0}: not a directory; give an empty directory to mount on")]
    NotADirectory(PathBuf),
    #[error(
        "mountpoint {0}: not empty; the mount would hide what it holds: choose an empty \
         directory, or pass --nonempty"
    )]
    NotEmpty(PathBuf),
    #[error(
        "mountpoint {path}: busy: {what} is already mounted there; unmount it first \
         (umount {path}) or choose another directory"
    )]
    Busy { path: PathBuf, what: String },
    #[error("mountpoint {path}: {source}")]
    Mountpoint {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    NoFuse(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("mounting {store} on {path}: {source}")]
    Mount {
        store: PathBuf,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("serving {path}: {source}")]
    Serve {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Check that the FUSE device at `path` can be opened, and say what to do
/// if not.
pub fn check_fuse_device(path: &Path) -> Result<(), MountError> {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) => Err(MountError::NoFuse(match e.kind() {
            io::ErrorKind::NotFound => format!(
                "{}: no such device, so FUSE is not available here; load the module \
                 (modprobe fuse), or in a container pass the device in (--device /dev/fuse)",
                path.display()
            ),
            io::ErrorKind::PermissionDenied => format!(
                "{}: permission denied; mount as root, or make the device usable by this user",
                path.display()
            ),
            _ => format!("{}: cannot open the FUSE device: {e}", path.display()),
        })),
    }
}

/// Undo the octal escapes /proc/self/mountinfo uses (`\040` for a space).
fn unescape_mountinfo(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = b[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// The filesystem type and source mounted at `dir` (canonical), if any.
fn mounted_at(mountinfo: &str, dir: &Path) -> Option<String> {
    let dir = dir.as_os_str().as_bytes();
    mountinfo.lines().rev().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let mount_point = fields.get(4)?;
        if unescape_mountinfo(mount_point) != dir {
            return None;
        }
        let sep = fields.iter().position(|f| *f == "-")?;
        let fstype = fields.get(sep + 1)?;
        let source = fields.get(sep + 2).copied().unwrap_or("?");
        Some(format!("{fstype} ({source})"))
    })
}

/// Check that `dir` holds nothing a mount would hide.
pub fn check_empty(dir: &Path) -> Result<(), MountError> {
    let mut entries = std::fs::read_dir(dir).map_err(|e| MountError::Mountpoint {
        path: dir.into(),
        source: e,
    })?;
    match entries.next() {
        None => Ok(()),
        Some(_) => Err(MountError::NotEmpty(dir.into())),
    }
}

/// Check the mountpoint; return its canonical path.
pub fn check_mountpoint(path: &Path) -> Result<PathBuf, MountError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(MountError::MissingMountpoint(path.into()))
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            return Err(MountError::Busy {
                path: path.into(),
                what: "a FUSE filesystem whose server has stopped".into(),
            })
        }
        Err(e) => {
            return Err(MountError::Mountpoint {
                path: path.into(),
                source: e,
            })
        }
    };
    if !meta.is_dir() {
        return Err(MountError::NotADirectory(path.into()));
    }
    let canonical = path.canonicalize().map_err(|e| MountError::Mountpoint {
        path: path.into(),
        source: e,
    })?;
    if let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") {
        if let Some(what) = mounted_at(&info, &canonical) {
            return Err(MountError::Busy {
                path: path.into(),
                what,
            });
        }
    }
    Ok(canonical)
}

/// Open the FUSE device and mount it read-only on `dir` with mount(2).
fn mount_directly(dir: &Path, fsname: &str, allow_other: bool) -> io::Result<OwnedFd> {
    let device = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(FUSE_DEVICE)?;
    let root_mode = libc::S_IFDIR | 0o555;
    // SAFETY: geteuid/getegid cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let mut data = format!(
        "fd={},rootmode={root_mode:o},user_id={uid},group_id={gid},default_permissions",
        device.as_raw_fd()
    );
    if allow_other {
        data.push_str(",allow_other");
    }
    let source = CString::new(fsname)?;
    let target = CString::new(dir.as_os_str().as_bytes())?;
    let fstype = CString::new(format!("fuse.{SUBTYPE}"))?;
    let data = CString::new(data)?;
    let flags = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOATIME;
    // SAFETY: all four strings are valid, NUL-terminated and outlive the call.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(device.into())
}

/// Unmount `dir`; `lazy` detaches it even while files are open.
fn unmount(dir: &Path, lazy: bool) -> io::Result<()> {
    let c = CString::new(dir.as_os_str().as_bytes())?;
    let flags = if lazy { libc::MNT_DETACH } else { 0 };
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    if unsafe { libc::umount2(c.as_ptr(), flags) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Mount `store` on `mountpoint` and serve it in the foreground until the
/// filesystem is unmounted (`umount`, or SIGINT/SIGTERM, which unmount it;
/// a second signal detaches it lazily if it is still in use).
pub fn serve(store_dir: &Path, mountpoint: &Path, opts: &MountOptions) -> Result<(), MountError> {
    let mountpoint = check_mountpoint(mountpoint)?;
    if !opts.nonempty {
        check_empty(&mountpoint)?;
    }
    check_fuse_device(Path::new(FUSE_DEVICE))?;
    let store = Arc::new(Store::open(store_dir)?);

    // SAFETY: geteuid/getegid cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let tree = TreeConfig {
        cache_bytes: opts.cache_bytes,
        limits: opts.limits,
        uid,
        gid,
    };
    let fs = DiskhistFs::new(store, tree);

    let fsname = match store_dir.canonicalize() {
        Ok(p)
            if !p
                .as_os_str()
                .as_bytes()
                .iter()
                .any(|b| matches!(b, b',' | b' ' | b'\\')) =>
        {
            format!("diskhist:{}", p.display())
        }
        _ => "diskhist".to_string(),
    };
    let mut config = Config::default();
    if opts.allow_other {
        config.acl = SessionACL::All;
    }
    config.n_threads = Some(opts.threads.max(1));
    config.clone_fd = true;
    let mount_err = |source| MountError::Mount {
        store: store_dir.into(),
        path: mountpoint.clone(),
        source,
    };

    // As root, mount(2) directly, so the kernel records the type as
    // `fuse.diskhist` and nobody but us unmounts. Otherwise let fuser go
    // through the setuid fusermount helper.
    let session = match mount_directly(&mountpoint, &fsname, opts.allow_other) {
        Ok(fd) => Session::from_fd(fs, fd, config.acl, config).map_err(|e| {
            let _ = unmount(&mountpoint, true);
            mount_err(e)
        })?,
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            config.mount_options = vec![
                MountOption::FSName(fsname),
                MountOption::Subtype(SUBTYPE.into()),
                MountOption::RO,
                MountOption::DefaultPermissions,
                MountOption::NoDev,
                MountOption::NoSuid,
                MountOption::NoAtime,
            ];
            Session::new(fs, &mountpoint, &config).map_err(mount_err)?
        }
        Err(e) => return Err(mount_err(e)),
    };

    let mut signals = Signals::new([SIGINT, SIGTERM]).map_err(|source| MountError::Serve {
        path: mountpoint.clone(),
        source,
    })?;
    let handle = signals.handle();
    let dir = mountpoint.clone();
    let waiter = std::thread::Builder::new()
        .name("diskhist-signals".into())
        .spawn(move || {
            let mut asked = 0;
            for _ in signals.forever() {
                asked += 1;
                let lazy = asked > 1;
                match unmount(&dir, lazy) {
                    Ok(()) => log::info!("unmounted {}", dir.display()),
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return, // already gone
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => log::warn!(
                        "{} is in use (open files, a loop device, a shell's working \
                         directory); close them, or signal again to detach it lazily",
                        dir.display()
                    ),
                    Err(e) => log::warn!("unmounting {}: {e}", dir.display()),
                }
            }
        })
        .map_err(|source| MountError::Serve {
            path: mountpoint.clone(),
            source,
        })?;

    log::info!(
        "mounted {} on {} (read-only); stop with Ctrl-C or `umount {}`",
        store_dir.display(),
        mountpoint.display(),
        mountpoint.display()
    );
    let result = session.run();
    handle.close();
    let _ = waiter.join();
    result.map_err(|source| MountError::Serve {
        path: mountpoint,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_fuse_device_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let e = check_fuse_device(&dir.path().join("fuse"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no such device"), "{e}");
        assert!(e.contains("modprobe fuse"), "{e}");
    }

    #[test]
    fn missing_and_non_directory_mountpoints_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let e = check_mountpoint(&missing).unwrap_err();
        assert!(matches!(e, MountError::MissingMountpoint(_)));
        assert!(e.to_string().contains("mkdir"), "{e}");
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(matches!(
            check_mountpoint(&file).unwrap_err(),
            MountError::NotADirectory(_)
        ));
        assert_eq!(
            check_mountpoint(dir.path()).unwrap(),
            dir.path().canonicalize().unwrap()
        );
    }

    #[test]
    fn mountinfo_finds_what_is_mounted_on_a_directory() {
        let info = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:35 / /mnt/with\\040space rw,nosuid - fuse.diskhist diskhist:/s ro
41 22 0:36 / /mnt/x rw - tmpfs tmpfs rw
";
        assert_eq!(
            mounted_at(info, Path::new("/mnt/with space")).as_deref(),
            Some("fuse.diskhist (diskhist:/s)")
        );
        assert_eq!(
            mounted_at(info, Path::new("/mnt/x")).as_deref(),
            Some("tmpfs (tmpfs)")
        );
        assert_eq!(mounted_at(info, Path::new("/mnt")), None);
    }
}
