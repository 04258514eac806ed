//! Starting and stopping `diskhist mount`: clean unmount on SIGINT and
//! SIGTERM (also while busy), and clear errors when it cannot start.

use diskhist_test_common::{
    import, incompressible_xorshift64, init_store, is_mounted, mount_fails, wait_until, Mounted,
    Served, MIB,
};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn store_with_one_state(dir: &Path) -> std::path::PathBuf {
    let store = init_store(dir, "1M");
    let img = dir.join("raw.img");
    std::fs::write(&img, incompressible_xorshift64(MIB, 5)).unwrap();
    import(&store, &img, "2026-11-23T06:30:15Z");
    store
}

#[test]
fn sigint_and_sigterm_unmount_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_one_state(dir.path());
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let m = Mounted::start(&store, &dir.path().join("mnt"), &[]);
        assert_eq!(std::fs::read(m.path("latest/disk.img")).unwrap().len(), MIB);
        let st = m.stop_with(sig);
        assert!(st.success(), "signal {sig}: {st}");
    }
}

#[test]
fn a_busy_mount_is_detached_on_the_second_signal() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_one_state(dir.path());
    let mut m = Mounted::start(&store, &dir.path().join("mnt"), &[]);
    let open = std::fs::File::open(m.path("latest/disk.img")).unwrap();
    m.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(500));
    assert!(is_mounted(&m.dir), "unmounted while a file was open");
    assert!(m.stderr().contains("is in use"), "{}", m.stderr());
    m.signal(libc::SIGTERM);
    wait_until(
        Duration::from_secs(10),
        || "the lazy detach".into(),
        || !is_mounted(&m.dir),
    );
    // Detached from the tree, the open file keeps working until closed...
    let mut buf = [0u8; 16];
    std::os::unix::fs::FileExt::read_exact_at(&open, &mut buf, 4096).unwrap();
    assert_eq!(buf[..], incompressible_xorshift64(MIB, 5)[4096..4096 + 16]);
    // ...and then the server exits.
    drop(open);
    let st = m
        .wait_exit(Duration::from_secs(10))
        .expect("exits once the last file closes");
    assert!(st.success(), "{st}: {}", m.stderr());
}

#[test]
fn clear_errors_when_it_cannot_mount() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_one_state(dir.path());

    let (code, err) = mount_fails(&store, &dir.path().join("missing"));
    assert_eq!(code, 1);
    assert!(
        err.contains("no such directory") && err.contains("mkdir"),
        "{err}"
    );

    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let (_, err) = mount_fails(&store, &file);
    assert!(err.contains("not a directory"), "{err}");

    let m = Mounted::start(&store, &dir.path().join("mnt"), &[]);
    let (_, err) = mount_fails(&store, &m.dir);
    assert!(
        err.contains("busy") && err.contains("fuse.diskhist"),
        "{err}"
    );
    drop(m);

    let not_a_store = dir.path().join("empty");
    std::fs::create_dir(&not_a_store).unwrap();
    let mnt = dir.path().join("mnt2");
    std::fs::create_dir(&mnt).unwrap();
    let (_, err) = mount_fails(&not_a_store, &mnt);
    assert!(err.contains("not a diskhist store"), "{err}");

    // A damaged header is reported, naming the file.
    let damaged = dir.path().join("damaged");
    let _ = Command::new("cp")
        .arg("-a")
        .arg(&store)
        .arg(&damaged)
        .status()
        .unwrap();
    let header = damaged.join("diskhist.store");
    let mut bytes = std::fs::read(&header).unwrap();
    bytes[20] ^= 0xff;
    std::fs::write(&header, &bytes).unwrap();
    let (code, err) = mount_fails(&damaged, &mnt);
    assert_eq!(code, 1);
    assert!(err.contains("diskhist.store"), "{err}");
    assert!(!is_mounted(&mnt));
}

#[test]
fn mounts_while_a_writer_holds_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_one_state(dir.path());
    let sock = dir.path().join("nbd.sock");
    let serve = Served::start(&store, &sock, &[]);
    let m = Mounted::start(&store, &dir.path().join("mnt"), &[]);
    assert_eq!(
        std::fs::read(m.path("latest/disk.img")).unwrap(),
        incompressible_xorshift64(MIB, 5)
    );
    drop(m);
    serve.stop();
}
