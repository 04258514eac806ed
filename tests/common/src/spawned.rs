//! A process that runs beside the test: a server, a mount daemon, a
//! follower, a QEMU daemon. It is SIGKILLed and reaped when dropped, so a
//! failed assertion leaves nothing running; its standard error goes to a
//! file that can be read at any time, also while it runs.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tempfile::NamedTempFile;

/// A started child process (see the module documentation).
pub struct Spawned {
    /// `None` once reaped.
    child: Option<Child>,
    /// How it ended, once reaped.
    status: Option<ExitStatus>,
    stderr: NamedTempFile,
    what: String,
}

impl Spawned {
    /// Start `cmd` with standard input and output closed and standard error
    /// to a file.
    pub fn start(cmd: &mut Command) -> Spawned {
        let stderr = NamedTempFile::new().expect("a file for standard error");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr.reopen().expect("reopen the standard error file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Spawned {
            child: Some(child),
            status: None,
            stderr,
            what: format!("{cmd:?}"),
        }
    }

    /// Its process id; it must not have been reaped yet.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .unwrap_or_else(|| panic!("{} has already exited", self.what))
            .id()
    }

    /// All it wrote to standard error so far.
    pub fn stderr(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = self.stderr.reopen() {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    /// `Some(status)` once it has exited (it is then reaped).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if let Some(c) = self.child.as_mut() {
            if let Some(st) = c.try_wait().expect("waitpid") {
                self.child = None;
                self.status = Some(st);
            }
        }
        self.status
    }

    /// Still running?
    pub fn alive(&mut self) -> bool {
        self.exited().is_none()
    }

    /// Send signal `sig`, unless it has been reaped (its pid may then be
    /// another process's).
    pub fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on the pid of our own child, not yet reaped:
            // the pid cannot have been reused while it is ours.
            unsafe { libc::kill(c.id() as i32, sig) };
        }
    }

    /// Wait, however long it takes, for it to exit.
    pub fn wait(&mut self) -> ExitStatus {
        if let Some(mut c) = self.child.take() {
            self.status = Some(c.wait().expect("waitpid"));
        }
        self.status.expect("reaped")
    }

    /// Wait up to `limit` for it to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.exited() {
                return Some(st);
            }
            if t0.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM; it must exit within `limit` (else a panic shows its
    /// standard error).
    pub fn terminate(&mut self, limit: Duration) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit(limit).unwrap_or_else(|| {
            panic!(
                "{} did not exit within {limit:?} of SIGTERM:\n{}",
                self.what,
                self.stderr()
            )
        })
    }

    /// SIGTERM, and SIGKILL if it has not exited within `limit`: for
    /// cleaning up, where a clean stop is welcome but not required.
    pub fn terminate_or_kill(&mut self, limit: Duration) {
        self.signal(libc::SIGTERM);
        if self.wait_exit(limit).is_none() {
            self.kill9();
        }
    }

    /// SIGKILL now (no chance to flush or close anything), then reap.
    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        self.wait();
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.kill9();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_is_readable_while_it_runs_and_drop_kills() {
        let mut s = Spawned::start(Command::new("sh").args(["-c", "echo started >&2; sleep 60"]));
        crate::wait_until(
            Duration::from_secs(10),
            || "no line on standard error".into(),
            || s.stderr() == "started\n",
        );
        assert!(s.alive());
        let pid = s.pid();
        drop(s);
        // SAFETY: signal 0 only asks whether the pid exists.
        assert_ne!(unsafe { libc::kill(pid as i32, 0) }, 0, "still running");
    }

    #[test]
    fn terminate_gives_the_exit_status_and_it_stays_known() {
        let mut s = Spawned::start(Command::new("sleep").arg("60"));
        let st = s.terminate(Duration::from_secs(10));
        assert_eq!(st.code(), None, "killed by a signal");
        assert_eq!(s.exited(), Some(st));
        assert!(!s.alive());
    }
}
