//! A store on a filesystem that runs out of space: every write that does not
//! fit gets ENOSPC (not a disconnect, a hang or a panic), the server keeps
//! running, the store verifies and holds exactly what was acknowledged, and
//! recording resumes once space is freed. The store lives on a small ext4
//! filesystem (a loop-mounted image) made for each test.

use diskhist_test_common::nbd::Client;
use diskhist_test_common::{
    diskhist, diskhist_cmd, diskhist_output, export_at, incompressible, init_store, p, run,
    verify_ok, KernelMount, Served, KIB, MIB,
};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const ENOSPC: u32 = 28;
/// The recorded disk: larger than the filesystem holding the store.
const DISK: usize = 64 * MIB;

/// A small ext4 filesystem, loop-mounted; unmounted (and its loop device
/// released) when dropped, also when a test fails.
struct SmallFs {
    /// Unmounted first, before the directory holding the image goes.
    _mount: KernelMount,
    dir: tempfile::TempDir,
    mnt: PathBuf,
}

impl SmallFs {
    fn new(size_mib: u64) -> SmallFs {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("fs.img");
        let mnt = dir.path().join("mnt");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(size_mib << 20)
            .unwrap();
        // 4 KiB blocks, no blocks reserved for root (the tests run as root
        // and would use them anyway), inode tables written now so that the
        // kernel's lazy init does not write behind the test's back.
        run(Command::new("mkfs.ext4")
            .args([
                "-q",
                "-F",
                "-b",
                "4096",
                "-m",
                "0",
                "-E",
                "lazy_itable_init=0,lazy_journal_init=0",
            ])
            .arg(&img));
        // `-o loop` sets autoclear: unmounting releases the loop device.
        let mount = KernelMount::new(&["-o", "loop"], &img, &mnt);
        SmallFs {
            _mount: mount,
            dir,
            mnt,
        }
    }

    /// Fill the rest of the filesystem with `name`, written and synced until
    /// the write fails with ENOSPC. Returns its size.
    fn fill(&self, name: &str) -> u64 {
        let path = self.mnt.join(name);
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = incompressible(64 * KIB, 0xf111);
        let mut n = 0u64;
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(k) => n += k as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
        // Whatever delayed allocation reserved is now really allocated.
        let _ = f.sync_all();
        n
    }

    /// A file of `len` incompressible bytes, synced.
    fn put(&self, name: &str, len: usize) {
        let path = self.mnt.join(name);
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(&incompressible(len, len as u64)).unwrap();
        f.sync_all().unwrap();
    }

    /// Delete a file placed earlier, and let the filesystem know (the
    /// freed blocks are reusable once the journal has committed).
    fn free(&self, name: &str) {
        std::fs::remove_file(self.mnt.join(name)).unwrap();
        run(Command::new("sync").arg("-f").arg(&self.mnt));
    }

    fn free_bytes(&self) -> u64 {
        let out = run(Command::new("df")
            .args(["-B1", "--output=avail"])
            .arg(&self.mnt));
        out.lines().nth(1).unwrap().trim().parse().unwrap()
    }

    /// Somewhere outside the small filesystem.
    fn outside(&self) -> &Path {
        self.dir.path()
    }
}

/// What the disk must hold: every acknowledged write, nothing refused.
struct Model {
    disk: Vec<u8>,
    acked: usize,
    refused: usize,
}

impl Model {
    fn new() -> Model {
        Model {
            disk: vec![0; DISK],
            acked: 0,
            refused: 0,
        }
    }

    /// Write through `c`; the model changes only if the server acknowledged.
    fn write(&mut self, c: &mut Client, offset: usize, data: &[u8]) -> u32 {
        let err = c.write(offset as u64, data, false);
        self.note(err, || (offset, data.to_vec()))
    }

    fn zero(&mut self, c: &mut Client, offset: usize, len: usize) -> u32 {
        let err = c.write_zeroes(offset as u64, len as u64, false);
        self.note(err, || (offset, vec![0; len]))
    }

    fn note(&mut self, err: u32, change: impl FnOnce() -> (usize, Vec<u8>)) -> u32 {
        match err {
            0 => {
                let (offset, data) = change();
                self.disk[offset..offset + data.len()].copy_from_slice(&data);
                self.acked += 1;
            }
            ENOSPC => self.refused += 1,
            other => panic!("expected success or ENOSPC (28), got error {other}"),
        }
        err
    }

    /// The store's latest state, read by `diskhist export`, is the model.
    fn check_store(&self, store: &Path, fs: &SmallFs, when: &str) {
        let img = export_at(store, "latest", fs.outside());
        assert!(
            img == self.disk,
            "{when}: the exported disk differs from what was acknowledged \
             (first difference at byte {:?})",
            img.iter().zip(&self.disk).position(|(a, b)| a != b)
        );
    }
}

/// The server answers ENOSPC for what does not fit, keeps serving (reads,
/// more ENOSPC, index flushes that fail), the store verifies with the server
/// running and holds exactly what was acknowledged; freeing space resumes
/// recording on the same connection; after a stop and a new serve the index
/// has caught up and the history goes on.
#[test]
fn nbd_writes_to_a_full_store_get_enospc_and_resume_when_space_is_freed() {
    let fs = SmallFs::new(24);
    let store = init_store(&fs.mnt, "64M");
    // Space to give back later: a big filler, and a crumb of one block.
    fs.put("filler", 4 * MIB);
    fs.put("crumb", 4 * KIB);
    let socket = fs.outside().join("nbd.sock");
    // Small index flushes, so that some are attempted on the full disk.
    let mut s = Served::start(&store, &socket, &["--index-flush-blocks", "16"]);
    let mut c = Client::connect(&socket);
    let mut m = Model::new();

    // 1. Big incompressible writes until one is refused.
    let chunk = 256 * KIB;
    let mut off = 0;
    let t0 = std::time::Instant::now();
    loop {
        assert!(off + chunk <= DISK, "the disk never filled up");
        let data = incompressible(chunk, off as u64 + 1);
        if m.write(&mut c, off, &data) == ENOSPC {
            break;
        }
        off += chunk;
    }
    let first_refusal = off;
    eprintln!(
        "filled after {} MiB of 256 KiB writes in {:?}",
        first_refusal / MIB,
        t0.elapsed()
    );
    // The refused write is refused again: nothing changed, nothing poisoned.
    assert_eq!(m.write(&mut c, off, &incompressible(chunk, 7)), ENOSPC);
    // 2. Fill the last blocks with 4 KiB writes, until they are refused too.
    let mut small_off = off;
    let mut small = 0;
    while m.write(
        &mut c,
        small_off,
        &incompressible(4 * KIB, small_off as u64),
    ) == 0
    {
        small_off += 4 * KIB;
        small += 1;
        assert!(small < 1000, "4 KiB writes never ran out of space");
    }
    // 3. One block freed: records without payload (zeroes) fit in it, while
    //    index flushes (every 16 block versions) need more than one block
    //    and fail. They must not poison anything.
    fs.free("crumb");
    let mut zeroed = 0;
    // A zero record takes 26 bytes: a freed block holds about 150.
    for i in 0..2000 {
        if m.zero(&mut c, (i % 64) * 4 * KIB, 4 * KIB) == ENOSPC {
            break;
        }
        zeroed += 1;
    }
    assert!(
        zeroed >= 17,
        "only {zeroed} zero records fitted in the freed block"
    );
    assert_eq!(m.zero(&mut c, 0, 4 * KIB), ENOSPC, "zeroes still fit");
    let flush = c.flush();
    assert!(
        flush == 0 || flush == ENOSPC,
        "flush on a full disk: {flush}"
    );
    eprintln!(
        "full: {} writes acknowledged, {} refused; {small} 4 KiB writes, {zeroed} zeroes \
         after freeing 4 KiB; flush -> {flush}; {} bytes free",
        m.acked,
        m.refused,
        fs.free_bytes()
    );
    assert!(s.alive(), "serve died on a full disk:\n{}", s.stderr());
    let err = s.stderr();
    assert!(
        err.contains("refused with ENOSPC") && err.contains("No space left on device"),
        "serve does not say why writes are refused:\n{err}"
    );
    assert!(
        err.contains("could not write the index"),
        "no index flush was attempted on the full disk (the test did not test that):\n{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    // Reads still work and return what was acknowledged.
    for o in [0, first_refusal - chunk, off] {
        assert_eq!(c.read(o as u64, chunk), m.disk[o..o + chunk], "read at {o}");
    }
    // The store is consistent and holds exactly what was acknowledged, seen
    // by readers while the server still runs.
    verify_ok(&store, "full, serve running");
    m.check_store(&store, &fs, "full, serve running");

    // 4. Space freed: the same connection records again.
    fs.free("filler");
    for i in 0..8 {
        let o = off + i * chunk;
        assert_eq!(
            m.write(&mut c, o, &incompressible(chunk, 1000 + i as u64)),
            0,
            "write {i} after freeing space"
        );
    }
    assert_eq!(c.flush(), 0);
    assert_eq!(c.read(off as u64, chunk), m.disk[off..off + chunk]);
    assert!(s.stderr().contains("recording again"), "{}", s.stderr());
    verify_ok(&store, "space freed, serve running");
    m.check_store(&store, &fs, "space freed, serve running");
    drop(c);

    // 5. A clean stop writes the index out; a new serve goes on.
    let (st, err) = s.stop();
    assert!(st.success(), "serve stopped with {st}:\n{err}");
    verify_ok(&store, "after stop");
    // The index flushes refused on the full disk were made up for.
    let head = diskhist::store::Store::open(&store).unwrap().head().seq;
    let manifest = diskhist::testing::index::read_manifest(&store).unwrap();
    assert_eq!(manifest.indexed_through, head, "the index did not catch up");
    m.check_store(&store, &fs, "after stop");
    let s = Served::start(&store, &socket, &[]);
    let mut c = Client::connect(&socket);
    let o = off + 8 * chunk;
    assert_eq!(m.write(&mut c, o, &incompressible(chunk, 4242)), 0);
    assert_eq!(c.flush(), 0);
    drop(c);
    let (st, err) = s.stop();
    assert!(st.success(), "{err}");
    verify_ok(&store, "after the second serve");
    m.check_store(&store, &fs, "after the second serve");
    eprintln!(
        "done: {} writes acknowledged, {} refused with ENOSPC",
        m.acked, m.refused
    );
}

fn qemu_io(uri: &str, cmds: &[&str]) -> String {
    let mut c = Command::new("qemu-io");
    c.args(["-f", "raw", "-t", "none"]);
    for cmd in cmds {
        c.args(["-c", cmd]);
    }
    let out = c.arg(uri).output().expect("run qemu-io");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// What QEMU sees: "No space left on device" for a write to a full store,
/// its other requests served, and its writes recorded again once space is
/// freed. A serve stopped while the disk is full still records the end of
/// its session; one started on a full disk serves, refuses writes, and
/// records again once space is freed.
#[test]
fn qemu_sees_enospc_and_sessions_survive_a_full_disk() {
    let fs = SmallFs::new(16);
    let store = init_store(&fs.mnt, "64M");
    let socket = fs.outside().join("nbd.sock");
    let s = Served::start(&store, &socket, &[]);
    let uri = s.uri();
    let out = qemu_io(&uri, &["write -P 0x11 0 1M", "flush"]);
    assert!(out.contains("wrote 1048576/1048576"), "{out}");
    // Incompressible data, which costs the store its size (a pattern would
    // be stored as one block and references).
    let src = fs.outside().join("random");
    std::fs::write(&src, incompressible(2 * MIB, 22)).unwrap();
    let write_random = format!("write -s {} 1M 2M", src.display());
    let filled = fs.fill("rest");
    eprintln!("filled the filesystem with {} KiB", filled >> 10);

    // A write that cannot be stored: QEMU reports ENOSPC, the disk is as
    // it was, the server goes on.
    let out = qemu_io(&uri, &[&write_random]);
    assert!(
        out.contains("No space left on device"),
        "qemu-io did not report ENOSPC:\n{out}"
    );
    let out = qemu_io(&uri, &["read -P 0x11 0 1M", "read -P 0 1M 2M"]);
    assert!(
        out.contains("read 1048576/1048576") && out.contains("read 2097152/2097152"),
        "{out}"
    );
    assert!(!out.contains("Pattern verification failed"), "{out}");
    verify_ok(&store, "full, qemu-io refused");

    // Space freed: recorded again.
    fs.free("rest");
    let out = qemu_io(&uri, &[&write_random, "flush"]);
    assert!(
        out.contains("wrote 2097152/2097152") && !out.contains("failed"),
        "{out}"
    );

    // Stopped while the disk is full: the session's end is still recorded
    // (room for it was reserved), and the stop is clean.
    fs.fill("rest");
    let (st, err) = s.stop();
    assert!(
        st.success(),
        "serve stopped with {st} on a full disk:\n{err}"
    );
    let info = diskhist(&["info", store.to_str().unwrap()]);
    assert!(!info.contains("no clean end"), "{info}");
    verify_ok(&store, "stopped on a full disk");

    // Started on a full disk (its start line goes into the room reserved):
    // it serves, refuses writes with ENOSPC, and records once space is
    // freed, without a restart.
    let s = Served::start(&store, &socket, &[]);
    // New content (content stored before would only cost references).
    let src2 = fs.outside().join("random2");
    std::fs::write(&src2, incompressible(MIB, 33)).unwrap();
    let write_more = format!("write -s {} 3M 1M", src2.display());
    let out = qemu_io(&s.uri(), &[&write_more, "read -P 0 3M 1M"]);
    assert!(out.contains("No space left on device"), "{out}");
    assert!(out.contains("read 1048576/1048576"), "{out}");
    fs.free("rest");
    let out = qemu_io(&s.uri(), &["read -P 0x11 0 1M", &write_more, "flush"]);
    assert!(!out.contains("failed"), "{out}");
    let (st, err) = s.stop();
    assert!(st.success(), "{err}");
    let info = diskhist(&["info", store.to_str().unwrap()]);
    eprintln!("{info}");
    verify_ok(&store, "at the end");
    let img = export_at(&store, "latest", fs.outside());
    assert!(img[..MIB].iter().all(|&b| b == 0x11));
    assert!(img[MIB..3 * MIB] == incompressible(2 * MIB, 22)[..]);
    assert!(img[3 * MIB..4 * MIB] == incompressible(MIB, 33)[..]);
    assert!(img[4 * MIB..].iter().all(|&b| b == 0));
}

/// `import` and `ingest` into a store on a full disk: exit 1 with an error
/// naming ENOSPC and the store, nothing stored before lost; once space is
/// freed the same command succeeds.
#[test]
fn import_and_ingest_into_a_full_store_fail_clearly_and_lose_nothing() {
    let fs = SmallFs::new(16);
    let store = init_store(&fs.mnt, "8M");
    let s = store.to_str().unwrap();
    let out = fs.outside();
    let img1 = out.join("one.img");
    let mut one = incompressible(2 * MIB, 1);
    one.resize(8 * MIB, 0);
    std::fs::write(&img1, &one).unwrap();
    diskhist(&["import", s, img1.to_str().unwrap()]);
    // The second image and a stream of it, from a store elsewhere that
    // continues this store's history (a stream of another history would
    // be refused before anything is written, whatever the free space).
    let img2 = out.join("two.img");
    let mut two = one.clone();
    two[4 * MIB..6 * MIB].copy_from_slice(&incompressible(2 * MIB, 2));
    std::fs::write(&img2, &two).unwrap();
    std::fs::create_dir(out.join("other")).unwrap();
    let other = init_store(&out.join("other"), "8M");
    let dump = |from: &Path, to: &Path| {
        let dumped = diskhist_cmd(["dump", p(from)])
            .stdout(std::fs::File::create(to).unwrap())
            .status()
            .unwrap();
        assert!(dumped.success());
    };
    let stream = out.join("two.stream");
    dump(&store, &stream);
    let o = other.to_str().unwrap();
    diskhist(&["ingest", o, "--format", "stream", stream.to_str().unwrap()]);
    diskhist(&["import", o, img2.to_str().unwrap()]);
    dump(&other, &stream);

    fs.fill("rest");
    let refused = |args: &[&str]| {
        let o = diskhist_output(args);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        eprintln!("{} on a full disk: {err}", args[0]);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("No space left on device") && err.contains(s),
            "{args:?}: the error names neither ENOSPC nor the store:\n{err}"
        );
        verify_ok(&store, args[0]);
        assert!(
            export_at(&store, "latest", out) == one,
            "{args:?} on a full disk changed the stored state"
        );
    };
    refused(&["import", s, img2.to_str().unwrap()]);
    refused(&["ingest", s, "--format", "stream", stream.to_str().unwrap()]);

    fs.free("rest");
    diskhist(&["import", s, img2.to_str().unwrap()]);
    verify_ok(&store, "after space was freed");
    assert!(export_at(&store, "latest", out) == two);
    // The first import's state is still there, as it was.
    assert!(export_at(&store, "#1", out)[..2 * MIB] == one[..2 * MIB]);
}

/// Thin provisioning run dry: the filesystem holding the store has room,
/// but the storage under it does not, so writes are accepted and the fsync
/// fails with ENOSPC. (Here: ext4 on a loop device whose image, on a full
/// tmpfs, has holes where the free blocks are.) The client gets the error,
/// the server stops acknowledging (poisoned) and exits; once space is
/// freed the store holds exactly what was made durable, verifies, and a
/// new serve records again.
#[test]
fn an_fsync_that_fails_for_want_of_space_stops_the_server_and_keeps_the_durable_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let outer = KernelMount::new(
        &["-t", "tmpfs", "-o", "size=32m"],
        Path::new("tmpfs"),
        &dir.path().join("outer"),
    );
    let img = outer.dir.join("inner.img");
    run(Command::new("fallocate").args(["-l", "16M"]).arg(&img));
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096", "-E", "nodiscard"])
        .arg(&img));
    let inner_at = dir.path().join("inner");
    let mount_inner = || KernelMount::new(&["-o", "loop,errors=continue"], &img, &inner_at);
    let inner = mount_inner();
    let store = init_store(&inner.dir, "64M");
    let socket = dir.path().join("nbd.sock");
    let r1 = dir.path().join("r1");
    let r2 = dir.path().join("r2");
    std::fs::write(&r1, incompressible(2 * MIB, 1)).unwrap();
    std::fs::write(&r2, incompressible(2 * MIB, 2)).unwrap();
    let qemu = |uri: &str, cmds: &[String]| {
        let mut c = Command::new("qemu-io");
        c.args(["-f", "raw", "-t", "none"]);
        for cmd in cmds {
            c.args(["-c", cmd]);
        }
        let out = c.arg(uri).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let write_r1 = format!("write -s {} 0 2M", r1.display());
    let write_r2 = format!("write -s {} 2M 2M", r2.display());
    let flush = "flush".to_string();

    let mut s = Served::start(&store, &socket, &[]);
    let (ok, out) = qemu(&s.uri(), &[write_r1.clone(), flush.clone()]);
    assert!(ok, "{out}");
    // Take the backing away from every free block of the inner filesystem,
    // then fill the tmpfs: the next data written back has nowhere to go.
    run(Command::new("sync").arg("-f").arg(&inner.dir));
    let dump = run(Command::new("dumpe2fs").arg(&img));
    for line in dump.lines().filter(|l| l.starts_with("  Free blocks: ")) {
        for range in line["  Free blocks: ".len()..]
            .split(", ")
            .filter(|r| !r.is_empty())
        {
            let (a, b) = range.split_once('-').unwrap_or((range, range));
            let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
            run(Command::new("fallocate")
                .args(["-p", "-o", &(a * 4096).to_string()])
                .args(["-l", &((b - a + 1) * 4096).to_string()])
                .arg(&img));
        }
    }
    let filler = outer.dir.join("filler");
    {
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0xffu8; 64 * KIB];
        while f.write_all(&chunk).is_ok() {}
    }

    // Accepted into the page cache, refused at the flush.
    let (ok, out) = qemu(&s.uri(), &[write_r2.clone(), flush.clone()]);
    assert!(!ok, "the flush should have failed:\n{out}");
    let t0 = std::time::Instant::now();
    while s.alive() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "serve still running after a failed fsync:\n{}",
            s.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let err = s.stderr();
    eprintln!("serve after the failed fsync:\n{err}");
    assert!(
        err.contains("fsync failed") && err.contains("No space left on device"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    drop(s);

    // Space back; the inner filesystem checked and mounted afresh, so that
    // only what reached the disk is seen.
    std::fs::remove_file(&filler).unwrap();
    drop(inner);
    let fsck = Command::new("e2fsck")
        .arg("-fy")
        .arg(&img)
        .output()
        .unwrap();
    assert!(
        matches!(fsck.status.code(), Some(0 | 1)),
        "e2fsck: {}",
        String::from_utf8_lossy(&fsck.stdout)
    );
    let inner = mount_inner();
    verify_ok(&store, "after the failed fsync, remounted");
    let mut want = vec![0u8; DISK];
    want[..2 * MIB].copy_from_slice(&incompressible(2 * MIB, 1));
    let got = export_at(&store, "latest", dir.path());
    assert!(
        got == want,
        "the store does not hold exactly the durable writes (first difference at {:?})",
        got.iter().zip(&want).position(|(a, b)| a != b)
    );

    // A new serve resumes.
    let s = Served::start(&store, &socket, &[]);
    let (ok, out) = qemu(&s.uri(), &[write_r2, flush]);
    assert!(ok, "{out}");
    let (st, err) = s.stop();
    assert!(st.success(), "{err}");
    drop(inner);
    let _inner = mount_inner();
    verify_ok(&store, "after the new serve, remounted");
    want[2 * MIB..4 * MIB].copy_from_slice(&incompressible(2 * MIB, 2));
    assert!(export_at(&store, "latest", dir.path()) == want);
}
