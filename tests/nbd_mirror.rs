//! `diskhist serve` as the second half of a mirrored write stream: a QEMU
//! `quorum` node whose children are the real disk (a raw file) and the
//! diskhist NBD export. A filesystem is made and written through the
//! quorum; at checkpoints the raw file is copied and the time noted; the
//! store's state at each checkpoint time must equal the copy.

use diskhist_test_common::{
    diskhist, export_at, incompressible, init_store, is_mounted, run, Served, Spawned,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Everything set up for the test, torn down in reverse order however the
/// test ends: filesystem mount, loop device, qemu-storage-daemon (and its
/// FUSE export), diskhist serve.
struct Rig {
    dir: PathBuf,
    serve: Option<Served>,
    qsd: Option<Spawned>,
    fuse_file: PathBuf,
    loopdev: Option<String>,
    mnt: Option<PathBuf>,
}

impl Rig {
    fn qsd_stop(&mut self) {
        if let Some(mut q) = self.qsd.take() {
            q.terminate_or_kill(Duration::from_secs(10));
        }
        // A daemon that died hard leaves its FUSE mount behind.
        if is_mounted(&self.fuse_file) {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&self.fuse_file)
                .status();
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(m) = self.mnt.take() {
            let _ = Command::new("fsfreeze")
                .arg("-u")
                .arg(&m)
                .stderr(Stdio::null())
                .status();
            let _ = Command::new("umount").arg(&m).status();
        }
        if let Some(l) = self.loopdev.take() {
            let _ = Command::new("losetup").args(["-d", &l]).status();
        }
        self.qsd_stop();
        drop(self.serve.take());
        let _ = &self.dir;
    }
}

/// A checkpoint: the filesystem frozen (so nothing is in flight), the raw
/// disk copied, the time noted after the copy.
fn checkpoint(rig: &Rig, n: usize) -> (PathBuf, String) {
    let mnt = rig.mnt.as_ref().unwrap();
    run(Command::new("fsfreeze").arg("-f").arg(mnt));
    let copy = rig.dir.join(format!("checkpoint-{n}.raw"));
    run(Command::new("cp")
        .arg("--sparse=always")
        .arg(rig.dir.join("disk.raw"))
        .arg(&copy));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    run(Command::new("fsfreeze").arg("-u").arg(mnt));
    (
        copy,
        format!("@{}.{:09}", now.as_secs(), now.subsec_nanos()),
    )
}

fn start_quorum(dir: &Path, socket: &Path, fuse_file: &Path) -> Spawned {
    std::fs::File::create(fuse_file).unwrap();
    let disk = dir.join("disk.raw");
    // The command line the module documentation gives.
    Spawned::start(
        Command::new("qemu-storage-daemon")
            .arg("--blockdev")
            .arg(format!(
                "driver=file,node-name=disk-file,filename={}",
                disk.display()
            ))
            .args(["--blockdev", "driver=raw,node-name=disk,file=disk-file"])
            .arg("--blockdev")
            .arg(format!(
                "driver=nbd,node-name=hist,server.type=unix,server.path={}",
                socket.display()
            ))
            .arg("--blockdev")
            .arg(
                "driver=quorum,node-name=mirror,children.0=disk,children.1=hist,\
             vote-threshold=1,read-pattern=fifo",
            )
            .arg("--export")
            .arg(format!(
                "type=fuse,id=exp,node-name=mirror,mountpoint={},writable=on",
                fuse_file.display()
            )),
    )
}

fn wait_fuse(fuse_file: &Path, qsd: &mut Spawned) {
    let t0 = Instant::now();
    loop {
        if is_mounted(fuse_file) {
            return;
        }
        if let Some(st) = qsd.exited() {
            panic!("qemu-storage-daemon exited ({st}): {}", qsd.stderr());
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "FUSE export did not appear"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn quorum_mirror_states_equal_the_disk_at_each_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = init_store(d, "64M");
    std::fs::File::create(d.join("disk.raw"))
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let fuse_file = d.join("disk.img");
    let mut rig = Rig {
        dir: d.to_path_buf(),
        serve: Some(Served::start(&store, &d.join("nbd.sock"), &[])),
        qsd: None,
        fuse_file: fuse_file.clone(),
        loopdev: None,
        mnt: None,
    };
    rig.qsd = Some(start_quorum(d, &d.join("nbd.sock"), &fuse_file));
    wait_fuse(&fuse_file, rig.qsd.as_mut().unwrap());
    let loopdev = run(Command::new("losetup")
        .args(["-f", "--show"])
        .arg(&fuse_file))
    .trim()
    .to_string();
    rig.loopdev = Some(loopdev.clone());
    run(Command::new("mkfs.ext4").args(["-q", "-F", &loopdev]));
    let mnt = d.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    run(Command::new("mount").arg(&loopdev).arg(&mnt));
    rig.mnt = Some(mnt.clone());

    let mut checkpoints = vec![checkpoint(&rig, 0)];
    for round in 1..=3u64 {
        std::fs::write(
            mnt.join(format!("file{round}.bin")),
            incompressible(300_000 * round as usize, round),
        )
        .unwrap();
        std::fs::write(
            mnt.join("log.txt"),
            format!("round {round}\n").repeat(round as usize * 100),
        )
        .unwrap();
        if round == 3 {
            std::fs::remove_file(mnt.join("file1.bin")).unwrap();
        }
        run(Command::new("sync").arg("-f").arg(mnt.join("log.txt")));
        checkpoints.push(checkpoint(&rig, checkpoints.len()));
        std::thread::sleep(Duration::from_millis(20));
    }
    run(Command::new("umount").arg(&mnt));
    rig.mnt = None;
    run(Command::new("losetup").args(["-d", &loopdev]));
    rig.loopdev = None;
    rig.qsd_stop();
    let final_copy = checkpoint_after_stop(&rig);
    let (st, err) = rig.serve.take().unwrap().stop();
    assert!(st.success(), "{err}");

    for (i, (copy, at)) in checkpoints.iter().enumerate() {
        let img = export_at(&store, at, d);
        let want = std::fs::read(copy).unwrap();
        assert!(
            img == want,
            "checkpoint {i} ({at}): store state differs from the disk copy"
        );
    }
    assert!(export_at(&store, "latest", d) == std::fs::read(final_copy).unwrap());
    // Every checkpoint differs from the one before: the history really moved.
    let states: Vec<Vec<u8>> = checkpoints
        .iter()
        .map(|(c, _)| std::fs::read(c).unwrap())
        .collect();
    assert!(states.windows(2).all(|w| w[0] != w[1]));
    diskhist(&["verify", store.to_str().unwrap()]);
}

fn checkpoint_after_stop(rig: &Rig) -> PathBuf {
    let copy = rig.dir.join("final.raw");
    run(Command::new("cp")
        .arg("--sparse=always")
        .arg(rig.dir.join("disk.raw"))
        .arg(&copy));
    copy
}
