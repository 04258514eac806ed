//! `diskhist serve` as the second half of a mirrored write stream: a QEMU
//! `quorum` node whose children are the real disk (a raw file) and the
//! diskhist NBD export. A filesystem is made and written through the
//! quorum; at checkpoints the raw file is copied and the time noted; the
//! store's state at each checkpoint time must equal the copy.

use diskhist_test_common::{
    diskhist, export_at, incompressible, init_store, run, while_frozen, KernelMount, LiveDisk,
    LoopDev,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A checkpoint: the filesystem frozen (so nothing is in flight), the raw
/// disk copied, the time noted after the copy.
fn checkpoint(mnt: &Path, raw: &Path, n: usize) -> (PathBuf, String) {
    let copy = raw.with_file_name(format!("checkpoint-{n}.raw"));
    while_frozen(mnt, || {
        run(Command::new("cp")
            .arg("--sparse=always")
            .arg(raw)
            .arg(&copy));
        copy.clone()
    })
}

#[test]
fn quorum_mirror_states_equal_the_disk_at_each_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = init_store(d, "64M");
    // qemu-storage-daemon: the quorum node of the module documentation,
    // exported as a file.
    let live = LiveDisk::mirrored(d, &store, 64 << 20);
    let raw = live.raw.clone().unwrap();
    let lo = LoopDev::attach(&live.file, None, false);
    run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&lo.dev));
    let fs = KernelMount::new(&[], &lo.dev, &d.join("mnt"));
    let mnt = fs.dir.clone();

    let mut checkpoints = vec![checkpoint(&mnt, &raw, 0)];
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
        checkpoints.push(checkpoint(&mnt, &raw, checkpoints.len()));
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(fs);
    drop(lo);
    live.stop();
    let final_copy = d.join("final.raw");
    run(Command::new("cp")
        .arg("--sparse=always")
        .arg(&raw)
        .arg(&final_copy));

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
