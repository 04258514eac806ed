//! Shared by the mount tests: fixture stores built with the real CLI, a
//! mounted tree and loop mounts that clean up after themselves (even when a
//! test fails), and small helpers.
#![allow(dead_code)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const MIB: usize = 1 << 20;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_diskhist")
}

/// Run a command; panic with its output unless it succeeds.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn output(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

pub fn diskhist(args: &[&str]) -> String {
    run(Command::new(bin()).args(args))
}

pub fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// A new store of `size` (e.g. "64M") at `dir/S`.
pub fn init_store(dir: &Path, size: &str) -> PathBuf {
    let store = dir.join("S");
    diskhist(&["init", p(&store), "--size", size]);
    store
}

pub fn import(store: &Path, image: &Path, at: &str) {
    diskhist(&["import", p(store), p(image), "--at", at]);
}

/// The disk at `at`, exported with `diskhist export`.
pub fn export(store: &Path, at: &str, dir: &Path) -> Vec<u8> {
    let out = dir.join(format!(
        "export-{}.img",
        at.replace(['/', ':', '#', '@'], "_")
    ));
    diskhist(&["export", p(store), "--at", at, "-o", p(&out)]);
    let data = std::fs::read(&out).unwrap();
    std::fs::remove_file(&out).unwrap();
    data
}

/// An ext4 image of `size_mib` MiB holding `files` (path, content).
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

fn mountinfo_has(dir: &Path) -> Option<String> {
    let dir = dir.to_str().unwrap().replace(' ', "\\040");
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .find(|l| l.split(' ').nth(4) == Some(dir.as_str()))
        .map(str::to_string)
}

pub fn is_mounted(dir: &Path) -> bool {
    mountinfo_has(dir).is_some()
}

/// The mountinfo line for `dir`, if mounted.
pub fn mount_line(dir: &Path) -> Option<String> {
    mountinfo_has(dir)
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `diskhist mount STORE DIR` running in the background; unmounted and
/// stopped on drop.
pub struct Mounted {
    pub dir: PathBuf,
    child: Option<Child>,
    stderr: PathBuf,
}

impl Mounted {
    pub fn start(store: &Path, dir: &Path, extra: &[&str]) -> Mounted {
        std::fs::create_dir_all(dir).unwrap();
        let dir = dir.canonicalize().unwrap();
        let stderr = dir.with_extension("stderr");
        let child = Command::new(bin())
            .arg("mount")
            .arg(store)
            .arg(&dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut m = Mounted {
            dir,
            child: Some(child),
            stderr,
        };
        let start = Instant::now();
        while !is_mounted(&m.dir) {
            if let Some(st) = m.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("diskhist mount exited with {st}: {}", m.stderr_text());
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "mount did not appear"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        m
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory involved.
        unsafe { libc::kill(self.pid() as i32, sig) };
    }

    /// Stop with `sig`; return the exit status once unmounted.
    pub fn stop_with(mut self, sig: i32) -> std::process::ExitStatus {
        self.signal(sig);
        let mut child = self.child.take().unwrap();
        let start = Instant::now();
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                assert!(!is_mounted(&self.dir), "exited but still mounted");
                return st;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "did not stop on signal {sig}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let start = Instant::now();
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return Some(st);
            }
            if start.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: as in `signal`.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let start = Instant::now();
            while child.try_wait().ok().flatten().is_none() && start.elapsed().as_secs() < 5 {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if is_mounted(&self.dir) {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// `mount -o loop,ro,noload IMAGE DIR`, unmounted on drop.
pub struct LoopMount {
    pub dir: PathBuf,
}

impl LoopMount {
    pub fn new(image: &Path, dir: &Path, opts: &str) -> LoopMount {
        std::fs::create_dir_all(dir).unwrap();
        run(Command::new("mount").args(["-o", opts]).arg(image).arg(dir));
        LoopMount {
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        if is_mounted(&self.dir) {
            let ok = Command::new("umount")
                .arg(&self.dir)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
            }
        }
    }
}

/// `diskhist serve STORE --socket SOCK`, returned once the socket exists.
pub fn start_serve(store: &Path, sock: &Path) -> Child {
    let serve = Command::new(bin())
        .arg("serve")
        .arg(store)
        .arg("--socket")
        .arg(sock)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the NBD socket", Duration::from_secs(10), || sock.exists());
    serve
}

/// SIGTERM to a `start_serve` child; its exit status.
pub fn stop_serve(mut serve: Child) -> std::process::ExitStatus {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(serve.id() as i32, libc::SIGTERM) };
    serve.wait().unwrap()
}

/// Deterministic bytes.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

pub fn ino(path: &Path) -> u64 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .ino()
}

pub fn wait_for(what: &str, timeout: Duration, f: impl FnMut() -> bool) {
    wait_until(what, timeout, f)
}

/// Every file and directory under a store, relative path first, with its
/// type, mode, size, mtime and the BLAKE3 hash of its content (files):
/// equal fingerprints mean not one byte of the store changed.
pub fn store_fingerprint(store: &Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![store.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = e.unwrap().path();
            let m = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(store).unwrap().display().to_string();
            let content = if m.is_file() {
                let bytes =
                    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                blake3::hash(&bytes).to_hex().to_string()
            } else {
                if m.is_dir() {
                    stack.push(path.clone());
                }
                "-".to_string()
            };
            out.push(format!(
                "{rel} {:?} mode {:o} {} bytes mtime {:?} blake3 {content}",
                m.file_type(),
                m.permissions().mode(),
                m.len(),
                m.modified().unwrap()
            ));
        }
    }
    out.sort();
    out
}

/// The chain head `diskhist info` prints, as hex.
pub fn info_chain_head(store: &Path) -> String {
    let out = diskhist(&["info", p(store)]);
    out.lines()
        .find_map(|l| l.strip_prefix("chain head:"))
        .unwrap_or_else(|| panic!("no chain head in `diskhist info`:\n{out}"))
        .trim()
        .to_string()
}
