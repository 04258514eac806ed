//! Disks whose writes reach `diskhist serve` as they are made, through
//! qemu-storage-daemon, which exports the disk as a file (its FUSE
//! export) that mkfs, loop devices and the kernel's drivers write to:
//! either a mirror (a `quorum` node whose children are a raw file, the
//! real disk, and the diskhist export, as in tests/nbd_mirror.rs) or the
//! diskhist export alone. Also loop devices and the instants at which a
//! mounted filesystem is frozen, both cleaned up however a test ends.

use crate::mount::is_mounted;
use crate::process::run;
use crate::serve::Served;
use crate::spawned::Spawned;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `diskhist serve` and qemu-storage-daemon exporting what it writes as
/// [`LiveDisk::file`]; both stopped on drop (the daemon first).
pub struct LiveDisk {
    /// The disk as a file: write to it, attach a loop device to it.
    pub file: PathBuf,
    /// The mirrored real disk, if any.
    pub raw: Option<PathBuf>,
    qsd: Option<Spawned>,
    serve: Option<Served>,
}

impl LiveDisk {
    /// A mirror of a new raw disk `dir/disk.raw` (of `store`'s size,
    /// `size_bytes`) to the store, through a quorum node.
    pub fn mirrored(dir: &Path, store: &Path, size_bytes: u64) -> LiveDisk {
        let raw = dir.join("disk.raw");
        std::fs::File::create(&raw)
            .unwrap()
            .set_len(size_bytes)
            .unwrap();
        let blockdevs = [
            format!("driver=file,node-name=disk-file,filename={}", raw.display()),
            "driver=raw,node-name=disk,file=disk-file".to_string(),
            "driver=quorum,node-name=mirror,children.0=disk,children.1=hist,\
             vote-threshold=1,read-pattern=fifo"
                .to_string(),
        ];
        LiveDisk::start(dir, store, &blockdevs, "mirror", Some(raw))
    }

    /// The store's export alone: every write to the file is a record.
    pub fn direct(dir: &Path, store: &Path) -> LiveDisk {
        LiveDisk::start(dir, store, &[], "hist", None)
    }

    fn start(
        dir: &Path,
        store: &Path,
        more_blockdevs: &[String],
        exported: &str,
        raw: Option<PathBuf>,
    ) -> LiveDisk {
        let socket = dir.join("nbd.sock");
        let file = dir.join("live-disk.img");
        std::fs::File::create(&file).unwrap();
        let serve = Served::start(store, &socket, &[]);
        let mut cmd = Command::new("qemu-storage-daemon");
        cmd.arg("--blockdev").arg(format!(
            "driver=nbd,node-name=hist,server.type=unix,server.path={}",
            socket.display()
        ));
        for b in more_blockdevs {
            cmd.arg("--blockdev").arg(b);
        }
        cmd.arg("--export").arg(format!(
            "type=fuse,id=exp,node-name={exported},mountpoint={},writable=on",
            file.display()
        ));
        let mut disk = LiveDisk {
            file,
            raw,
            qsd: Some(Spawned::start(&mut cmd)),
            serve: Some(serve),
        };
        let t0 = Instant::now();
        while !is_mounted(&disk.file) {
            let qsd = disk.qsd.as_mut().unwrap();
            if let Some(st) = qsd.exited() {
                panic!("qemu-storage-daemon exited ({st}): {}", qsd.stderr());
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "qemu-storage-daemon's FUSE export did not appear"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        disk
    }

    fn stop_qsd(&mut self) {
        if let Some(mut q) = self.qsd.take() {
            q.terminate_or_kill(Duration::from_secs(10));
        }
        // A daemon that died hard leaves its FUSE mount behind.
        if is_mounted(&self.file) {
            let _ = Command::new("umount").arg("-l").arg(&self.file).status();
        }
    }

    /// Stop writing: the daemon, then the server, which must exit cleanly
    /// (every write it acknowledged is in the store).
    pub fn stop(mut self) {
        self.stop_qsd();
        let (st, err) = self.serve.take().unwrap().stop();
        assert!(st.success(), "diskhist serve: {st}: {err}");
    }
}

impl Drop for LiveDisk {
    fn drop(&mut self) {
        self.stop_qsd();
        drop(self.serve.take());
    }
}

/// A loop device over a file, detached on drop.
pub struct LoopDev {
    pub dev: PathBuf,
}

impl LoopDev {
    /// `losetup -f --show [-r] [-o OFFSET --sizelimit LEN] FILE`: a loop
    /// device over `file`, or over `range` (offset and length in bytes)
    /// of it (partition nodes of `losetup -P` need udev or the kernel's
    /// partition scan, which a container may lack).
    pub fn attach(file: &Path, range: Option<(u64, u64)>, read_only: bool) -> LoopDev {
        let mut cmd = Command::new("losetup");
        cmd.args(["-f", "--show"]);
        if read_only {
            cmd.arg("-r");
        }
        if let Some((offset, len)) = range {
            cmd.args(["-o", &offset.to_string(), "--sizelimit", &len.to_string()]);
        }
        let dev = run(cmd.arg(file)).trim().to_string();
        LoopDev { dev: dev.into() }
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

/// Run `f` while the filesystem mounted on `mnt` is frozen (`fsfreeze`:
/// every write it made has reached its disk, its journal is checkpointed
/// and marked clean, and nothing more is written), then thaw it, also if
/// `f` panics; what `f` returned and the moment, as `@SECS.NANOS`, taken
/// while frozen after `f`.
pub fn while_frozen<T>(mnt: &Path, f: impl FnOnce() -> T) -> (T, String) {
    struct Thaw<'a>(&'a Path);
    impl Drop for Thaw<'_> {
        fn drop(&mut self) {
            let thawed = Command::new("fsfreeze")
                .arg("-u")
                .arg(self.0)
                .stderr(Stdio::null())
                .status();
            if !thawed.is_ok_and(|s| s.success()) && !std::thread::panicking() {
                panic!("fsfreeze -u {}", self.0.display());
            }
        }
    }
    run(Command::new("fsfreeze").arg("-f").arg(mnt));
    let _thaw = Thaw(mnt);
    let out = f();
    (out, now_instant())
}

/// The moment `@SECS.NANOS` (as diskhist reads it) at which the filesystem
/// mounted on `mnt` is frozen (see [`while_frozen`]); thawed again before
/// returning.
pub fn frozen_instant(mnt: &Path) -> String {
    while_frozen(mnt, || ()).1
}

/// Now, as `@SECS.NANOS`.
pub fn now_instant() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    format!("@{}.{:09}", now.as_secs(), now.subsec_nanos())
}
