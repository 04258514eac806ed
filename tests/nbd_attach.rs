//! The README's third way to attach: `diskhist serve` as the target of a
//! QEMU `blockdev-mirror` job with `copy-mode=write-blocking`, driven over
//! QMP exactly as the README shows. qemu-storage-daemon stands in for the
//! VM: it owns the source disk and exports it over NBD, and qemu-io writes
//! to that export the way a guest writes to its disk.

use diskhist_test_common::{
    diskhist, export_at, incompressible, init_store, log_records, run, Served, Spawned, MIB,
};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const DISK: usize = 32 * MIB;

/// A QMP connection: commands in, replies and events out.
struct Qmp {
    out: UnixStream,
    input: BufReader<UnixStream>,
    events: Vec<String>,
}

impl Qmp {
    fn connect(path: &Path, qsd: &mut Spawned) -> Qmp {
        let t0 = Instant::now();
        let s = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) => {
                    if let Some(st) = qsd.exited() {
                        panic!(
                            "qemu-storage-daemon exited ({st}) before QMP was up:\n{}",
                            qsd.stderr()
                        );
                    }
                    assert!(t0.elapsed() < Duration::from_secs(20), "QMP socket: {e}");
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        };
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut q = Qmp {
            out: s.try_clone().unwrap(),
            input: BufReader::new(s),
            events: Vec::new(),
        };
        let greeting = q.line();
        assert!(greeting.contains("\"QMP\""), "QMP greeting: {greeting}");
        q.execute(r#"{"execute": "qmp_capabilities"}"#);
        q
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        let n = self.input.read_line(&mut l).expect("read from QMP");
        assert!(n > 0, "QMP closed the connection");
        l
    }

    /// Send one command; return its `return` line, panicking on `error`.
    fn execute(&mut self, cmd: &str) -> String {
        writeln!(self.out, "{cmd}").unwrap();
        loop {
            let l = self.line();
            if l.contains("\"event\"") {
                self.events.push(l);
            } else if l.contains("\"error\"") {
                panic!("QMP {cmd} failed: {l}");
            } else if l.contains("\"return\"") {
                return l;
            }
        }
    }

    /// Wait for an event whose line contains `name`.
    fn wait_event(&mut self, name: &str) -> String {
        if let Some(i) = self.events.iter().position(|e| e.contains(name)) {
            return self.events.remove(i);
        }
        loop {
            let l = self.line();
            if l.contains(name) {
                return l;
            }
            assert!(
                !l.contains("BLOCK_JOB_ERROR") && !l.contains("BLOCK_JOB_COMPLETED"),
                "mirror job failed while waiting for {name}: {l}"
            );
            self.events.push(l);
        }
    }
}

fn qemu_io(uri: &str, cmd: &str) {
    run(Command::new("qemu-io")
        .args(["-f", "raw", "-c", cmd])
        .arg(uri));
}

fn file_bytes(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

#[test]
fn blockdev_mirror_write_blocking_records_the_copy_then_every_write() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = init_store(dir, "32M");
    let socket = dir.join("nbd.sock");
    // The README: QEMU does not forward the guest's flushes to a mirror
    // target, so the recorder makes every write durable by itself.
    let served = Served::start(&store, &socket, &["--sync", "always"]);

    // The VM's existing disk, with content before recording starts.
    let disk: PathBuf = dir.join("disk.raw");
    let mut original = vec![0u8; DISK];
    original[..4 * MIB].copy_from_slice(&incompressible(4 * MIB, 1));
    original[20 * MIB..21 * MIB].copy_from_slice(&incompressible(MIB, 2));
    std::fs::write(&disk, &original).unwrap();

    let qmp_sock = dir.join("qmp.sock");
    let src_sock = dir.join("src.sock");
    let mut qsd = Spawned::start(
        Command::new("qemu-storage-daemon")
            .arg("--blockdev")
            .arg(format!(
                "driver=file,node-name=disk-file,filename={}",
                disk.display()
            ))
            .args(["--blockdev", "driver=raw,node-name=disk,file=disk-file"])
            .arg("--nbd-server")
            .arg(format!("addr.type=unix,addr.path={}", src_sock.display()))
            .args(["--export", "type=nbd,id=src,node-name=disk,writable=on"])
            .arg("--chardev")
            .arg(format!(
                "socket,id=qmp,path={},server=on,wait=off",
                qmp_sock.display()
            ))
            .args(["--monitor", "chardev=qmp"]),
    );
    let mut qmp = Qmp::connect(&qmp_sock, &mut qsd);

    // Exactly the README's two commands (with this test's socket path).
    qmp.execute(&format!(
        r#"{{"execute": "blockdev-add", "arguments": {{"driver": "nbd", "node-name": "hist", "server": {{"type": "unix", "path": "{}"}}}}}}"#,
        socket.display()
    ));
    qmp.execute(
        r#"{"execute": "blockdev-mirror", "arguments": {"job-id": "rec", "device": "disk", "target": "hist", "sync": "full", "copy-mode": "write-blocking"}}"#,
    );
    qmp.wait_event("BLOCK_JOB_READY");

    // The initial copy is in the store: the latest state is the disk.
    let copied = export_at(&store, "latest", dir);
    assert!(
        copied == original,
        "after the initial copy the store differs from the disk"
    );
    let after_copy = log_records(&store).len();
    assert!(after_copy > 0, "the initial copy recorded nothing");

    // "Guest" writes through the source's export. With write-blocking each
    // one completes only once the recorder has it too, and --sync always
    // made it durable before the reply.
    // qemu-storage-daemon names the export after its node.
    let src_uri = format!("nbd+unix:///disk?socket={}", src_sock.display());
    let writes: [(&str, usize); 4] = [
        ("write -P 0x11 0 64k", 0),
        ("write -P 0x22 8M 1M", 8 * MIB),
        ("write -z 20M 512k", 20 * MIB),
        ("write -P 0x33 31M 4k", 31 * MIB),
    ];
    let mut states = vec![original.clone()];
    for (cmd, _) in writes {
        qemu_io(&src_uri, cmd);
        // No job-complete, no flush: the recorder must already equal the disk.
        let now = export_at(&store, "latest", dir);
        let source = file_bytes(&disk);
        assert!(
            now == source,
            "after `{cmd}` the store differs from the disk"
        );
        states.push(source);
    }

    // Every guest write is a record of its own, after the copy, each state
    // reachable by sequence number.
    let records = log_records(&store);
    assert!(
        records.len() >= after_copy + writes.len(),
        "{} records after the copy and {} guest writes, but only {} records",
        after_copy,
        writes.len(),
        records.len()
    );
    let got = export_at(&store, &format!("#{after_copy}"), dir);
    assert!(
        got == states[0],
        "state #{after_copy} is not the copied disk"
    );
    for (i, (cmd, off)) in writes.iter().enumerate() {
        let rec = records
            .iter()
            .find(|r| r.seq > after_copy as u64 && r.offset == *off as u64)
            .unwrap_or_else(|| panic!("no record of `{cmd}` at byte {off}"));
        let got = export_at(&store, &format!("#{}", rec.seq), dir);
        assert!(
            got == states[i + 1],
            "state after `{cmd}` (#{}) differs",
            rec.seq
        );
    }

    qmp.execute(r#"{"execute": "block-job-cancel", "arguments": {"device": "rec"}}"#);
    qmp.wait_event("BLOCK_JOB_");
    qmp.execute(r#"{"execute": "quit"}"#);
    let t0 = Instant::now();
    while qsd.alive() {
        assert!(t0.elapsed() < Duration::from_secs(20), "qsd did not quit");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (st, err) = served.stop();
    assert!(st.success(), "serve: {st}\n{err}");
    diskhist(&["verify", store.to_str().unwrap()]);
}

/// The README's first way, a VM's disk, with qemu-io standing in for the
/// guest and the README's cache=none: writes and reads go straight through
/// and every write is one record.
#[test]
fn as_a_vm_disk_with_cache_none() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = init_store(dir, "16M");
    let socket = dir.join("nbd.sock");
    let served = Served::start(&store, &socket, &[]);
    let uri = served.uri();
    let before = log_records(&store).len();
    run(Command::new("qemu-io")
        .args(["-f", "raw", "--cache", "none"])
        .args(["-c", "write -P 0x5a 1M 128k", "-c", "flush"])
        .args(["-c", "read -P 0x5a 1M 128k"])
        .arg(&uri));
    let (st, err) = served.stop();
    assert!(st.success(), "serve: {st}\n{err}");
    let records = log_records(&store);
    let data: Vec<_> = records[before..]
        .iter()
        .filter(|r| r.kind == "write")
        .collect();
    assert_eq!(data.len(), 1, "one guest write, one record: {records:?}");
    assert_eq!((data[0].offset, data[0].length), (MIB as u64, 128 << 10));
    let img = export_at(&store, "latest", dir);
    assert!(img[MIB..MIB + (128 << 10)].iter().all(|&b| b == 0x5a));
    assert!(img[..MIB].iter().all(|&b| b == 0));
}
