//! Shared by tests/crash.rs: a seeded PRNG, the kill budget, recognisable
//! write content, children that are always reaped, a raw NBD client and a
//! dm-log-writes log writer.
#![allow(dead_code)]

pub mod dmlog;
pub mod nbd;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_diskhist")
}

/// xorshift64*: tiny, deterministic, good enough to pick offsets and delays.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // Never zero (xorshift's fixed point), and spread small seeds out.
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x2545_F491_4F6C_DD1D | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    /// True with probability 1/n.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
    pub fn fill(&mut self, out: &mut [u8]) {
        for c in out.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}

/// The run's seed: `DISKHIST_CRASH_SEED` (decimal or 0x-hex) or the clock.
pub fn seed() -> u64 {
    match std::env::var("DISKHIST_CRASH_SEED") {
        Ok(s) => {
            let s = s.trim();
            let parsed = match s.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16),
                None => s.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("DISKHIST_CRASH_SEED={s:?} is not a number"))
        }
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    }
}

/// Total SIGKILLs for the suite (`DISKHIST_KILLS`, default 50), split
/// between `serve` and `ingest --follow` as (serve, ingest), 70/30.
pub fn kill_budget() -> (usize, usize) {
    let total: usize = match std::env::var("DISKHIST_KILLS") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("DISKHIST_KILLS={s:?} is not a number")),
        Err(_) => 50,
    };
    let serve = (total * 7).div_ceil(10);
    (serve, total - serve)
}

/// Bytes of write number `index`: every 512-byte piece starts with the
/// index and the piece's number, so any block read back names the write
/// that put it there; the rest does not compress and never repeats.
pub fn content(seed: u64, index: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let mut rng = Rng::new(seed ^ index.wrapping_mul(0xD6E8_FEB8_6659_FD93));
    rng.fill(&mut out);
    for (piece, c) in out.chunks_mut(512).enumerate() {
        let tag = [index.to_le_bytes(), (piece as u64).to_le_bytes()].concat();
        let n = c.len().min(16);
        c[..n].copy_from_slice(&tag[..n]);
    }
    out
}

/// Which write's piece a 512-byte-aligned piece of the disk holds (0: none).
pub fn tag_of(piece: &[u8]) -> u64 {
    u64::from_le_bytes(piece[..8].try_into().unwrap())
}

/// A child process that is SIGKILLed and reaped when dropped; its stderr
/// goes to a file that can be read at any time.
pub struct Proc {
    child: Option<Child>,
    pub stderr_path: PathBuf,
}

impl Proc {
    pub fn spawn(cmd: &mut Command, stderr_path: &Path) -> Proc {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(stderr_path).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Proc {
            child: Some(child),
            stderr_path: stderr_path.to_path_buf(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// `Some(status)` once it has exited (and is reaped).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let st = self.child.as_mut()?.try_wait().unwrap();
        if st.is_some() {
            self.child = None;
        }
        st
    }

    /// SIGKILL now (no chance to flush or close anything), then reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on the pid of our own unreaped child: the pid
            // cannot have been reused while the child is a zombie.
            unsafe { libc::kill(c.id() as i32, libc::SIGKILL) };
            c.wait().unwrap();
        }
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self, limit: Duration) -> ExitStatus {
        let c = self.child.as_mut().expect("running");
        // SAFETY: as in kill9: our own child, not yet reaped.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.exited() {
                return st;
            }
            assert!(
                t0.elapsed() < limit,
                "no exit within {limit:?} of SIGTERM:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Run `diskhist ARGS`; (exit code, stdout, stderr).
pub fn diskhist(args: &[&dyn AsRef<std::ffi::OsStr>]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(bin());
    for a in args {
        cmd.arg(a);
    }
    let out = cmd.output().expect("run diskhist");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `diskhist verify STORE` must exit 0.
pub fn verify_ok(store: &Path, when: &str) -> String {
    let (code, out, err) = diskhist(&[&"verify", &store]);
    assert_eq!(
        code,
        Some(0),
        "verify failed {when}:\nstdout: {out}\nstderr: {err}"
    );
    out
}

/// Poll `cond` every 10 ms until it holds; panic with `what` after `limit`.
pub fn wait_until(limit: Duration, what: &dyn Fn() -> String, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(
            t0.elapsed() < limit,
            "timed out after {limit:?}: {}",
            what()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
