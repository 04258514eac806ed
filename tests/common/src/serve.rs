//! `diskhist serve` on a Unix socket, started for a test and always
//! stopped: a [`Served`] is its server process (a [`Spawned`], which it
//! dereferences to: `pid`, `stderr`, `alive`, `signal`, `kill9`...) and
//! where it listens.

use crate::process::diskhist_cmd;
use crate::spawned::Spawned;
use std::ffi::OsStr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

/// A running `diskhist serve`.
pub struct Served {
    pub store: PathBuf,
    pub socket: PathBuf,
    server: Spawned,
}

impl Served {
    /// `diskhist serve STORE --socket SOCKET EXTRA...`, returned once the
    /// socket accepts connections.
    pub fn start(store: &Path, socket: &Path, extra: &[&str]) -> Served {
        let mut s = Served::spawn(store, socket, extra);
        s.wait_listening("start");
        s
    }

    /// [`Served::start`] with `RUST_LOG=info` (the tests' default is
    /// `warn`): what serve says about its sessions, connections and syncs.
    pub fn start_verbose(store: &Path, socket: &Path, extra: &[&str]) -> Served {
        let mut s = Served::launch_with(store, Some(socket), extra, &[("RUST_LOG", "info")]);
        s.wait_listening("start");
        s
    }

    /// `diskhist serve STORE EXTRA...` on its default socket,
    /// `STORE/nbd.sock`, returned once that accepts connections.
    pub fn start_on_default_socket(store: &Path, extra: &[&str]) -> Served {
        let mut s = Served::launch(store, None, extra);
        s.wait_listening("start");
        s
    }

    /// `diskhist serve STORE --socket SOCKET EXTRA...`, not waited for:
    /// see [`Served::wait_listening`].
    pub fn spawn(store: &Path, socket: &Path, extra: &[&str]) -> Served {
        Served::launch(store, Some(socket), extra)
    }

    fn launch(store: &Path, socket: Option<&Path>, extra: &[&str]) -> Served {
        Served::launch_with(store, socket, extra, &[])
    }

    fn launch_with(
        store: &Path,
        socket: Option<&Path>,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Served {
        let mut cmd = diskhist_cmd([OsStr::new("serve"), store.as_os_str()]);
        cmd.envs(env.iter().copied());
        if let Some(socket) = socket {
            cmd.arg("--socket").arg(socket);
        }
        cmd.args(extra);
        Served {
            store: store.to_path_buf(),
            socket: socket.map_or_else(|| store.join("nbd.sock"), Path::to_path_buf),
            server: Spawned::start(&mut cmd),
        }
    }

    /// Wait until the socket accepts connections; a panic, naming `what`
    /// and showing the server's standard error, if it exits first or takes
    /// more than 20 s.
    pub fn wait_listening(&mut self, what: &str) {
        let t0 = Instant::now();
        while UnixStream::connect(&self.socket).is_err() {
            if let Some(st) = self.server.exited() {
                panic!(
                    "{what}: diskhist serve exited ({st}) before listening:\n{}",
                    self.server.stderr()
                );
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "{what}: diskhist serve not listening after 20 s:\n{}",
                self.server.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The NBD URI of the export, for qemu-io, nbdcopy, nbdinfo.
    pub fn uri(&self) -> String {
        format!("nbd+unix:///?socket={}", self.socket.display())
    }

    /// SIGTERM, and wait (up to 30 s) for it to exit; its exit status and
    /// all it wrote to standard error.
    pub fn stop(mut self) -> (ExitStatus, String) {
        let st = self.server.terminate(Duration::from_secs(30));
        (st, self.server.stderr())
    }
}

impl std::ops::Deref for Served {
    type Target = Spawned;
    fn deref(&self) -> &Spawned {
        &self.server
    }
}

impl std::ops::DerefMut for Served {
    fn deref_mut(&mut self) -> &mut Spawned {
        &mut self.server
    }
}

/// A free TCP port on loopback (bound and released: good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}
