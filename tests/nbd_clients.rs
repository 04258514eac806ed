//! `diskhist serve` with the real NBD clients people use: qemu-img, qemu-io,
//! nbdcopy, nbdinfo; several at once; over TCP; stopped by signal or killed.

use diskhist::sessions::read_sessions;
use diskhist::Seq;
use diskhist_test_common::{
    diskhist, diskhist_cmd, diskhist_output, export_at, free_port, incompressible, init_store,
    log_records, p, run, Served, Spawned, MIB,
};
use std::process::Command;

#[test]
fn qemu_img_convert_then_latest_equals_source() {
    let dir = tempfile::tempdir().unwrap();
    let store = init_store(dir.path(), "64M");
    let src = dir.path().join("src.img");
    let mut data = incompressible(64 * MIB, 1);
    data[10 * MIB..20 * MIB].fill(0); // a hole: written as zeroes or skipped
    std::fs::write(&src, &data).unwrap();
    let s = Served::start(&store, &dir.path().join("nbd.sock"), &[]);
    run(Command::new("qemu-img")
        .args(["convert", "-n", "-f", "raw", "-O", "raw"])
        .arg(&src)
        .arg(s.uri()));
    // Read back through the server (latest state while it runs).
    run(Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", "raw"])
        .arg(&src)
        .arg(s.uri()));
    let (st, err) = s.stop();
    assert!(st.success(), "{err}");
    assert!(!dir.path().join("nbd.sock").exists(), "socket left behind");
    assert!(
        export_at(&store, "latest", dir.path()) == data,
        "latest state differs from the source"
    );
    let recs = log_records(&store);
    assert!(recs.iter().any(|r| r.kind == "write"));
    assert_eq!(
        recs.last().unwrap().kind,
        "flush",
        "qemu-img ends with a flush: {recs:?}"
    );
    assert!(recs
        .windows(2)
        .all(|w| w[0].time_ns <= w[1].time_ns && w[0].seq + 1 == w[1].seq));
    diskhist(&["verify", store.to_str().unwrap()]);
}

#[test]
fn qemu_io_write_read_discard_zero_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let store = init_store(dir.path(), "16M");
    let s = Served::start(&store, &dir.path().join("nbd.sock"), &[]);
    let io = |cmds: &[&str]| {
        let mut c = Command::new("qemu-io");
        c.args(["-f", "raw"]);
        for cmd in cmds {
            c.args(["-c", cmd]);
        }
        run(c.arg(s.uri()))
    };
    // qemu-io opens with cache=writethrough: its writes carry FUA.
    io(&[
        "write -P 0xab 100 3000",
        "read -P 0xab 100 3000",
        "read -P 0 0 100",
    ]);
    io(&[
        "write -P 0x11 1M 64k",
        "discard 1M 4k",
        "read -P 0 1M 4k",
        "read -P 0x11 1028k 60k",
    ]);
    io(&["write -z 2M 8k", "read -P 0 2M 8k"]);
    io(&["write -P 0x22 3M 4k", "flush"]);
    let out = io(&["read -v 100 4"]);
    assert!(out.contains("ab ab ab ab"), "{out}");
    let (st, err) = s.stop();
    assert!(st.success(), "{err}");

    let recs = log_records(&store);
    let ops: Vec<(&str, u64, u64, bool)> = recs
        .iter()
        .filter(|r| r.kind != "flush")
        .map(|r| {
            (
                r.kind.as_str(),
                r.offset,
                r.length,
                r.flags.iter().any(|f| f == "fua"),
            )
        })
        .collect();
    assert_eq!(
        ops,
        vec![
            ("write", 100, 3000, true),
            ("write", MIB as u64, 64 << 10, true),
            ("trim", MIB as u64, 4096, false),
            ("zero", 2 * MIB as u64, 8192, true),
            ("write", 3 * MIB as u64, 4096, true),
        ]
    );
    assert!(recs.iter().any(|r| r.kind == "flush"));
    let img = export_at(&store, "latest", dir.path());
    assert!(img[100..3100].iter().all(|&b| b == 0xab));
    assert!(img[MIB..MIB + 4096].iter().all(|&b| b == 0));
    assert!(img[MIB + 4096..MIB + 65536].iter().all(|&b| b == 0x11));
    assert!(img[3 * MIB..3 * MIB + 4096].iter().all(|&b| b == 0x22));
    // The state before the trim still has the data the trim removed.
    let trim_seq = recs.iter().find(|r| r.kind == "trim").unwrap().seq;
    let before = export_at(&store, &format!("#{}", trim_seq - 1), dir.path());
    assert!(before[MIB..MIB + 4096].iter().all(|&b| b == 0x11));
}

#[test]
fn nbdcopy_both_ways_and_nbdinfo() {
    let dir = tempfile::tempdir().unwrap();
    let store = init_store(dir.path(), "32M");
    let s = Served::start(&store, &dir.path().join("nbd.sock"), &[]);
    let info = run(Command::new("nbdinfo").arg(s.uri()));
    assert!(info.contains("export-size: 33554432"), "{info}");
    assert!(info.contains("block_size_preferred: 4096"), "{info}");
    assert!(info.contains("block_size_minimum: 1"), "{info}");
    assert!(info.contains("block_size_maximum: 33554432"), "{info}");
    assert!(
        info.contains("can_fua: true") && info.contains("can_multi_conn: true"),
        "{info}"
    );
    let list = run(Command::new("nbdinfo").arg("--list").arg(s.uri()));
    assert_eq!(list.matches("export=").count(), 1, "{list}");
    assert!(list.contains("export=\"diskhist\""), "{list}");

    let src = dir.path().join("src.img");
    let data = incompressible(32 * MIB, 2);
    std::fs::write(&src, &data).unwrap();
    run(Command::new("nbdcopy").arg(&src).arg(s.uri()));
    let back = dir.path().join("back.img");
    run(Command::new("nbdcopy").arg(s.uri()).arg(&back));
    assert!(
        std::fs::read(&back).unwrap() == data,
        "nbdcopy read back differs"
    );
    let (st, err) = s.stop();
    assert!(st.success(), "{err}");
    assert!(export_at(&store, "latest", dir.path()) == data);
}

#[test]
fn concurrent_clients_go_into_one_history() {
    let dir = tempfile::tempdir().unwrap();
    let store = init_store(dir.path(), "16M");
    let s = Served::start(&store, &dir.path().join("nbd.sock"), &[]);
    let uri = s.uri();
    let handles: Vec<_> = (0..4u8)
        .map(|i| {
            let uri = uri.clone();
            std::thread::spawn(move || {
                let mut c = Command::new("qemu-io");
                c.args(["-f", "raw", "-t", "none"]);
                for k in 0..16u32 {
                    let off = u32::from(i) * 4 * MIB as u32 + k * 65536;
                    c.args(["-c", &format!("write -P {} {off} 64k", 0x10 + i)]);
                }
                run(c.arg(&uri));
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let (st, err) = s.stop();
    assert!(st.success(), "{err}");
    let recs = log_records(&store);
    assert_eq!(recs.iter().filter(|r| r.kind == "write").count(), 64);
    assert!(
        recs.windows(2).all(|w| w[0].time_ns <= w[1].time_ns),
        "times decrease"
    );
    assert!(recs
        .iter()
        .all(|r| !r.flags.iter().any(|f| f == "clock-held")));
    let img = export_at(&store, "latest", dir.path());
    for i in 0..4usize {
        let at = i * 4 * MIB;
        assert!(
            img[at..at + MIB].iter().all(|&b| b == 0x10 + i as u8),
            "client {i}'s data"
        );
    }
}

#[test]
fn tcp_listen_defaults_to_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let store = init_store(dir.path(), "4M");
    let port = free_port();
    let serve = Spawned::start(&mut diskhist_cmd([
        "serve",
        p(&store),
        "--listen",
        &format!(":{port}"),
    ]));
    let uri = format!("nbd://127.0.0.1:{port}/");
    let t0 = std::time::Instant::now();
    let info = loop {
        let out = Command::new("nbdinfo").arg(&uri).output().unwrap();
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(t0.elapsed().as_secs() < 20, "{}", serve.stderr());
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(info.contains("export-size: 4194304"), "{info}");
    // Bound to 127.0.0.1 only.
    let ss = run(Command::new("ss").args(["-ltnH", &format!("sport = :{port}")]));
    assert!(ss.contains(&format!("127.0.0.1:{port}")), "{ss}");
    drop(serve);
}

#[test]
fn a_second_writer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = init_store(dir.path(), "4M");
    let s = Served::start(&store, &dir.path().join("a.sock"), &[]);
    let out = diskhist_output(&[
        "serve",
        p(&store),
        "--socket",
        p(&dir.path().join("b.sock")),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another writer"), "{err}");
    assert!(
        err.contains(&format!("pid {}", s.pid())),
        "names the process: {err}"
    );
    assert!(!dir.path().join("b.sock").exists());
    // The default socket is inside the store; a second server there is refused too.
    let (st, _) = s.stop();
    assert!(st.success());
}

#[test]
fn sigterm_closes_cleanly_and_sessions_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = init_store(dir.path(), "4M");
    let (a_data, b_data) = (dir.path().join("a.bin"), dir.path().join("b.bin"));
    std::fs::write(&a_data, incompressible(65536, 7)).unwrap();
    std::fs::write(&b_data, incompressible(4096, 9)).unwrap();
    // Default socket: STORE/nbd.sock, mode 0600.
    let mut child = Served::start_on_default_socket(&store, &[]);
    let sock = store.join("nbd.sock");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o600
    );
    run(Command::new("qemu-io")
        .args([
            "-f",
            "raw",
            "-c",
            &format!("write -s {} 0 64k", a_data.display()),
        ])
        .arg(format!("nbd+unix:///?socket={}", sock.display())));
    run(Command::new("kill").args(["-INT", &child.pid().to_string()]));
    assert!(child.wait().success());
    assert!(!sock.exists());

    // Then a session that is killed: it has no end.
    let mut s = Served::start(&store, &dir.path().join("n.sock"), &["--sync", "always"]);
    run(Command::new("qemu-io")
        .args([
            "-f",
            "raw",
            "-t",
            "writeback",
            "-c",
            &format!("write -s {} 64k 4k", b_data.display()),
        ])
        .arg(s.uri()));
    s.kill9();
    let sessions = read_sessions(&store).unwrap();
    assert_eq!(sessions.len(), 2);
    let (a, b) = (&sessions[0], &sessions[1]);
    assert_eq!(a.start_seq, Seq(0));
    let end = a.end.as_ref().expect("first session ended cleanly");
    assert_eq!(end.reason, "stopped");
    assert!(end.seq.0 >= 1 && end.time >= a.start);
    assert_eq!(a.version, env!("CARGO_PKG_VERSION"));
    assert!(a.clock.is_some());
    assert_eq!(b.start_seq, end.seq);
    assert_eq!(b.sync, "always");
    assert!(b.end.is_none(), "a killed server records no end");
    // --sync always: the write without FUA or flush survived the kill.
    let img = export_at(&store, "latest", dir.path());
    assert!(img[..65536] == incompressible(65536, 7)[..]);
    assert!(img[65536..69632] == incompressible(4096, 9)[..]);
    diskhist(&["verify", store.to_str().unwrap()]);
}

#[test]
fn flushed_and_fua_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let store = init_store(dir.path(), "8M");
    let (a_data, b_data) = (dir.path().join("a.bin"), dir.path().join("b.bin"));
    std::fs::write(&a_data, incompressible(MIB, 1)).unwrap();
    std::fs::write(&b_data, incompressible(4096, 2)).unwrap();
    let mut s = Served::start(&store, &dir.path().join("nbd.sock"), &[]);
    // writeback: plain writes, then an explicit flush; then one FUA write
    // (writethrough) with nothing after it.
    let w1 = format!("write -s {} 0 1M", a_data.display());
    run(Command::new("qemu-io")
        .args(["-f", "raw", "-t", "writeback", "-c", &w1, "-c", "flush"])
        .arg(s.uri()));
    let w2 = format!("write -s {} 1M 4k", b_data.display());
    run(Command::new("qemu-io")
        .args(["-f", "raw", "-t", "writethrough", "-c", &w2])
        .arg(s.uri()));
    s.kill9();
    let img = export_at(&store, "latest", dir.path());
    assert!(
        img[..MIB] == incompressible(MIB, 1)[..],
        "flushed write lost"
    );
    assert!(
        img[MIB..MIB + 4096] == incompressible(4096, 2)[..],
        "FUA write lost"
    );
    diskhist(&["verify", store.to_str().unwrap()]);
    // A new server picks up where the killed one left off.
    let s = Served::start(&store, &dir.path().join("nbd.sock"), &[]);
    let out = run(Command::new("qemu-io")
        .args(["-f", "raw", "-c", "read -v 1M 16"])
        .arg(s.uri()));
    let first: String = incompressible(4, 2)
        .iter()
        .map(|b| format!("{b:02x} "))
        .collect();
    assert!(out.contains(first.trim_end()), "{out}");
    assert!(s.stop().0.success());
}

/// Regression: a write of several identical blocks is stored once with
/// references inside the same record; opening the store after kill -9 (and
/// `verify`) took those for references "forward in the log", cut the record
/// off and so lost an acknowledged, flushed write.
#[test]
fn identical_blocks_in_one_flushed_write_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let store = init_store(dir.path(), "4M");
    let mut s = Served::start(&store, &dir.path().join("nbd.sock"), &[]);
    run(Command::new("qemu-io")
        .args(["-f", "raw", "-c", "write -P 7 0 8k", "-c", "flush"])
        .arg(s.uri()));
    s.kill9();
    diskhist(&["verify", store.to_str().unwrap()]);
    let img = export_at(&store, "latest", dir.path());
    assert!(
        img[..8192].iter().all(|&b| b == 7),
        "acknowledged write lost after kill -9"
    );
}
