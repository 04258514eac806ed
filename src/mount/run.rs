//! Mounting and running: mount the tree read-only (as `fuse.diskhist`),
//! answer the kernel until the filesystem is unmounted, and unmount it
//! cleanly on SIGINT or SIGTERM.
//!
//! The mount has no `default_permissions`: the files under `files/` show
//! the owners and modes their filesystem stores, and those uids belong to
//! the recorded machine, not to this one. Checking them here would shut
//! the analyst who mounted the tree out of files the image holds (and hand
//! them to whichever local user happens to have the same number), while
//! `disk.img` shows every byte to whoever may enter the mount anyway.
//! Who may enter is FUSE's own rule: the user who mounted it, or everyone
//! with `--allow-other`.

use super::fuse::FuseAdapter;
use super::listing::ListingLimits;
use super::preflight::{check_empty, check_fuse_device, check_mountpoint};
use super::tree::{Tree, TreeConfig};
use crate::store::{Store, StoreError};
use fuser::{Config, MountOption, Session, SessionACL};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

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
    /// Threads answering the kernel, and as many reading filesystems.
    pub threads: usize,
    pub limits: ListingLimits,
    /// Mount even on a directory that holds files (the mount hides them).
    pub nonempty: bool,
}

impl Default for MountOptions {
    fn default() -> MountOptions {
        MountOptions {
            allow_other: false,
            cache_bytes: 64 << 20,
            threads: 4,
            limits: ListingLimits::default(),
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

/// Mount the store at `store_dir` on `mountpoint` and answer the kernel in
/// the foreground until the filesystem is unmounted (`umount`, or
/// SIGINT/SIGTERM, which unmount it; a second signal detaches it lazily if
/// it is still in use).
pub fn mount_until_unmounted(
    store_dir: &Path,
    mountpoint: &Path,
    opts: &MountOptions,
) -> Result<(), MountError> {
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
        fs_threads: opts.threads.max(1),
    };
    let fs = FuseAdapter::new(Tree::new(store, tree));
    let fuse_session = mount(fs, store_dir, &mountpoint, opts)?;
    let signals = UnmountOnSignal::start(&mountpoint)?;

    log::info!(
        "mounted {} on {} (read-only); stop with Ctrl-C or `umount {}`",
        store_dir.display(),
        mountpoint.display(),
        mountpoint.display()
    );
    let result = fuse_session.run();
    signals.stop();
    result.map_err(|source| MountError::Serve {
        path: mountpoint,
        source,
    })
}

/// The source `/proc/mounts` shows: `diskhist:<store>`, or plain
/// `diskhist` when the store's path holds a character the mount options
/// could not carry.
fn fs_name(store_dir: &Path) -> String {
    match store_dir.canonicalize() {
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
    }
}

/// Mount `fs` read-only on `mountpoint` (canonical) and set up the FUSE
/// session that will answer the kernel.
fn mount(
    fs: FuseAdapter,
    store_dir: &Path,
    mountpoint: &Path,
    opts: &MountOptions,
) -> Result<Session<FuseAdapter>, MountError> {
    let fsname = fs_name(store_dir);
    let mut config = Config::default();
    if opts.allow_other {
        config.acl = SessionACL::All;
    }
    config.n_threads = Some(opts.threads.max(1));
    config.clone_fd = true;
    let mount_err = |source| MountError::Mount {
        store: store_dir.into(),
        path: mountpoint.into(),
        source,
    };

    // As root, mount(2) directly, so the kernel records the type as
    // `fuse.diskhist` and nobody but us unmounts. Otherwise let fuser go
    // through the setuid fusermount helper.
    match mount_directly(mountpoint, &fsname, opts.allow_other) {
        Ok(fd) => Session::from_fd(fs, fd, config.acl, config).map_err(|e| {
            let _ = unmount(mountpoint, true);
            mount_err(e)
        }),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            config.mount_options = vec![
                MountOption::FSName(fsname),
                MountOption::Subtype(SUBTYPE.into()),
                MountOption::RO,
                MountOption::NoDev,
                MountOption::NoSuid,
                MountOption::NoAtime,
            ];
            Session::new(fs, mountpoint, &config).map_err(mount_err)
        }
        Err(e) => Err(mount_err(e)),
    }
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
        "fd={},rootmode={root_mode:o},user_id={uid},group_id={gid}",
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

/// A thread that unmounts the tree on SIGINT or SIGTERM.
struct UnmountOnSignal {
    handle: Handle,
    thread: JoinHandle<()>,
}

impl UnmountOnSignal {
    fn start(mountpoint: &Path) -> Result<UnmountOnSignal, MountError> {
        let serve_err = |source| MountError::Serve {
            path: mountpoint.into(),
            source,
        };
        let signals = Signals::new([SIGINT, SIGTERM]).map_err(serve_err)?;
        let handle = signals.handle();
        let dir = mountpoint.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("diskhist-signals".into())
            .spawn(move || unmount_on_each_signal(signals, &dir))
            .map_err(serve_err)?;
        Ok(UnmountOnSignal { handle, thread })
    }

    /// Stop listening for signals (the tree is unmounted by now).
    fn stop(self) {
        self.handle.close();
        let _ = self.thread.join();
    }
}

/// Unmount `dir` on each signal; from the second on, lazily, so that a
/// tree still in use is detached.
fn unmount_on_each_signal(mut signals: Signals, dir: &Path) {
    let mut asked = 0;
    for _ in signals.forever() {
        asked += 1;
        let lazy = asked > 1;
        match unmount(dir, lazy) {
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
}
