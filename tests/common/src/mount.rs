//! Mounts that clean up after themselves, also when a test fails:
//! `diskhist mount` ([`Mounted`]), whatever mount(8) mounts
//! ([`KernelMount`]: a loop-mounted image, a tmpfs), the ext4 images and
//! partitioned disks tests record and mount, and the `info` lines of a
//! mounted state.

use crate::process::{diskhist_cmd, output_with_input, run};
use crate::spawned::Spawned;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

/// The line of /proc/self/mountinfo whose mount point is `dir`, if any.
pub fn mount_line(dir: &Path) -> Option<String> {
    let dir = dir.to_str().expect("a UTF-8 path").replace(' ', "\\040");
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("/proc/self/mountinfo");
    info.lines()
        .find(|l| l.split(' ').nth(4) == Some(dir.as_str()))
        .map(str::to_string)
}

pub fn is_mounted(dir: &Path) -> bool {
    mount_line(dir).is_some()
}

/// `diskhist mount STORE DIR` running in the background, a [`Spawned`]
/// (which it dereferences to: `pid`, `stderr`, `signal`, `wait_exit`...);
/// unmounted and stopped on drop.
pub struct Mounted {
    /// The mountpoint, canonical.
    pub dir: PathBuf,
    daemon: Spawned,
}

impl Mounted {
    /// Mount `store` on `dir` (created if need be) with `extra` flags;
    /// returns once the mount is there.
    pub fn start(store: &Path, dir: &Path, extra: &[&str]) -> Mounted {
        std::fs::create_dir_all(dir).unwrap();
        let dir = dir.canonicalize().unwrap();
        let mut daemon = Spawned::start(
            diskhist_cmd([OsStr::new("mount"), store.as_os_str(), dir.as_os_str()]).args(extra),
        );
        let start = Instant::now();
        while !is_mounted(&dir) {
            if let Some(st) = daemon.exited() {
                panic!("diskhist mount exited with {st}: {}", daemon.stderr());
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "mount did not appear"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Mounted { dir, daemon }
    }

    /// A path inside the mounted tree.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// Stop with signal `sig`; the exit status, once it has exited, which
    /// it must have done within 20 s and unmounted.
    pub fn stop_with(mut self, sig: i32) -> ExitStatus {
        self.daemon.signal(sig);
        let st = self
            .daemon
            .wait_exit(Duration::from_secs(20))
            .unwrap_or_else(|| panic!("did not stop on signal {sig}"));
        assert!(!is_mounted(&self.dir), "exited but still mounted");
        st
    }
}

impl std::ops::Deref for Mounted {
    type Target = Spawned;
    fn deref(&self) -> &Spawned {
        &self.daemon
    }
}

impl std::ops::DerefMut for Mounted {
    fn deref_mut(&mut self) -> &mut Spawned {
        &mut self.daemon
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        // SIGTERM unmounts; a daemon that does not go in 5 s is killed, and
        // the mount it leaves detached.
        self.daemon.terminate_or_kill(Duration::from_secs(5));
        if is_mounted(&self.dir) {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// The line of a state's `info` about volume `name` (`disk`, `p1`...).
pub fn volume_line(info: &str, name: &str) -> String {
    info.lines()
        .find(|l| l.starts_with(&format!("volume: {name}: ")))
        .unwrap_or_else(|| panic!("no volume {name} in info:\n{info}"))
        .to_string()
}

/// `diskhist mount STORE DIR` that must fail: its exit code (-1 if a
/// signal ended it) and standard error. A panic if it mounts after all (it
/// is unmounted again first) or exits 0.
pub fn mount_fails(store: &Path, dir: &Path) -> (i32, String) {
    let mut daemon = Spawned::start(&mut diskhist_cmd([
        OsStr::new("mount"),
        store.as_os_str(),
        dir.as_os_str(),
    ]));
    let Some(st) = daemon.wait_exit(Duration::from_secs(10)) else {
        // SIGTERM unmounts.
        daemon.terminate_or_kill(Duration::from_secs(10));
        panic!("mount on {} did not fail", dir.display());
    };
    assert!(
        !st.success(),
        "mount of {} on {} succeeded",
        store.display(),
        dir.display()
    );
    (st.code().unwrap_or(-1), daemon.stderr())
}

/// A filesystem mounted with `mount ARGS SOURCE DIR`; unmounted on drop
/// (lazily if still busy).
pub struct KernelMount {
    pub dir: PathBuf,
}

impl KernelMount {
    /// `mount ARGS SOURCE DIR`, `DIR` created if need be: e.g.
    /// `&["-o", "loop,ro,noload"]` and an image, or
    /// `&["-t", "tmpfs", "-o", "size=32m"]` and `tmpfs`.
    pub fn new(args: &[&str], source: &Path, dir: &Path) -> KernelMount {
        std::fs::create_dir_all(dir).unwrap();
        run(Command::new("mount").args(args).arg(source).arg(dir));
        KernelMount {
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for KernelMount {
    fn drop(&mut self) {
        if is_mounted(&self.dir) {
            let ok = Command::new("umount")
                .arg(&self.dir)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                // Something still holds it (a child not yet reaped): detach
                // lazily; a loop device goes when its last user does.
                let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
            }
        }
    }
}

/// An ext4 image of `size_mib` MiB at `path` holding `files` (path,
/// content).
pub fn ext4_image(path: &Path, size_mib: usize, files: &[(&str, &str)]) {
    let src = path.with_extension("d");
    let _ = std::fs::remove_dir_all(&src);
    for (name, content) in files {
        let f = src.join(name);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, content).unwrap();
    }
    std::fs::create_dir_all(&src).unwrap();
    let _ = std::fs::remove_file(path);
    // Fixed UUID and hash seed: images of one history differ only where files do.
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-U", "6c1f9c44-36a1-4a3e-9b58-6d1f2a0c1b11"])
        .args(["-E", "hash_seed=0a5c6e1e-41b4-4c39-9f0c-0c2bd56e5b0d"])
        .args(["-T", "default", "-b", "4096", "-d"])
        .arg(&src)
        .arg(path)
        .arg(format!("{size_mib}M")));
    std::fs::remove_dir_all(&src).unwrap();
}

/// Partition `disk` (a file) with sfdisk's `script`.
pub fn sfdisk(disk: &Path, script: &str) {
    let out = output_with_input(
        Command::new("sfdisk").arg("-q").arg(disk),
        script.as_bytes(),
    );
    assert!(
        out.status.success(),
        "sfdisk: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
