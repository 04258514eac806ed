//! Shared by the NBD integration tests: a `diskhist serve` child that is
//! always stopped, command helpers, deterministic data.
#![allow(dead_code)]

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_diskhist")
}

/// Run a command; panic with its output unless it succeeds. Returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn diskhist(args: &[&str]) -> String {
    run(Command::new(bin()).args(args))
}

/// A fresh store of `size` (e.g. "64M") in `dir/store`.
pub fn init_store(dir: &Path, size: &str) -> PathBuf {
    let store = dir.join("store");
    diskhist(&["init", store.to_str().unwrap(), "--size", size]);
    store
}

/// Deterministic bytes that do not compress (xorshift64*).
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    v.truncate(len);
    v
}

/// The disk at `at` (any accepted time spelling), via `diskhist export`.
pub fn export_at(store: &Path, at: &str, dir: &Path) -> Vec<u8> {
    let out = dir.join(format!("export-{}.img", at.replace(['/', ':'], "_")));
    diskhist(&[
        "export",
        store.to_str().unwrap(),
        "--at",
        at,
        "-o",
        out.to_str().unwrap(),
    ]);
    let data = std::fs::read(&out).unwrap();
    std::fs::remove_file(&out).unwrap();
    data
}

/// One record of `diskhist log --json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub seq: u64,
    pub time_ns: i64,
    pub kind: String,
    pub offset: u64,
    pub length: u64,
    pub flags: Vec<String>,
}

fn json_field<'a>(line: &'a str, key: &str) -> &'a str {
    let at = line
        .find(&format!("\"{key}\":"))
        .unwrap_or_else(|| panic!("no {key} in {line}"));
    let rest = &line[at + key.len() + 3..];
    let end = if rest.starts_with('[') {
        rest.find(']').unwrap() + 1
    } else {
        rest.find([',', '}']).unwrap()
    };
    &rest[..end]
}

pub fn log_records(store: &Path) -> Vec<LogRecord> {
    diskhist(&["log", store.to_str().unwrap(), "--json"])
        .lines()
        .map(|l| LogRecord {
            seq: json_field(l, "seq").parse().unwrap(),
            time_ns: json_field(l, "time_ns").parse().unwrap(),
            kind: json_field(l, "kind").trim_matches('"').to_string(),
            offset: json_field(l, "offset").parse().unwrap(),
            length: json_field(l, "length").parse().unwrap(),
            flags: json_field(l, "flags")
                .trim_matches(['[', ']'])
                .split(',')
                .filter(|f| !f.is_empty())
                .map(|f| f.trim_matches('"').to_string())
                .collect(),
        })
        .collect()
}

/// A running `diskhist serve`; stopped (SIGKILL if need be) when dropped.
pub struct Served {
    child: Option<Child>,
    pub store: PathBuf,
    pub socket: PathBuf,
    stderr: PathBuf,
}

impl Served {
    /// Serve `store` on `socket` with extra flags; returns once the socket
    /// accepts connections.
    pub fn start(store: &Path, socket: &Path, extra: &[&str]) -> Served {
        let stderr = socket.with_extension("stderr");
        let child = Command::new(bin())
            .arg("serve")
            .arg(store)
            .arg("--socket")
            .arg(socket)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn diskhist serve");
        let mut s = Served {
            child: Some(child),
            store: store.into(),
            socket: socket.into(),
            stderr,
        };
        s.wait_ready();
        s
    }

    fn wait_ready(&mut self) {
        let t0 = Instant::now();
        while UnixStream::connect(&self.socket).is_err() {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "diskhist serve exited ({st}) before listening:\n{}",
                    self.stderr()
                );
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "serve not ready:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn uri(&self) -> String {
        format!("nbd+unix:///?socket={}", self.socket.display())
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn stderr(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.stderr) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Still running?
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let t0 = Instant::now();
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                self.child = None;
                return Some(st);
            }
            if t0.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, and wait for a clean exit; returns the status and stderr.
    pub fn stop(mut self) -> (ExitStatus, String) {
        self.signal("TERM");
        let st = self
            .wait(Duration::from_secs(30))
            .expect("serve did not stop within 30 s of SIGTERM");
        (st, self.stderr())
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill9(mut self) {
        self.signal("KILL");
        self.wait(Duration::from_secs(10))
            .expect("serve survived SIGKILL");
    }

    pub fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            run(Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(c.id().to_string()));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A free TCP port on loopback (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
