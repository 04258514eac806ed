//! Listening and connections: bind the socket, accept clients (a thread
//! each), and stop in order when asked or when the store fails.
//!
//! Stopping: the accept loop ends, every connection's read side is shut so
//! its thread finishes the request in hand (its reply still goes out) and
//! ends, then the writer is closed (flushing the index), the session's end
//! is recorded and the socket file removed.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::export::Export;
use super::negotiate::{negotiate, ExportInfo, HandshakeLimits, Negotiated};
use super::proto::{self, BlockSizes, RequestLimits};
use super::store_export::{StoreExport, SyncMode};
use super::transmission::{handle_requests_until, Counters, TransmissionError};
use crate::sessions::{clock_state, ClockState, SessionEnd, SessionError, SessionLog};
use crate::store::{StoreError, Writer, WriterOptions};
use crate::time;

/// The export's name (the empty name selects it as well).
pub const EXPORT_NAME: &str = "diskhist";
/// Largest READ or WRITE accepted, advertised as the maximum block size:
/// the 32 MiB every client is told to stay within.
pub const MAX_PAYLOAD_BYTES: u32 = 32 << 20;
/// A client has this long to finish the handshake, by default.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// The default socket, inside the store directory (which is 0700).
pub const DEFAULT_SOCKET: &str = "nbd.sock";

const TRANSMISSION_FLAGS: u16 = proto::FLAG_HAS_FLAGS
    | proto::FLAG_SEND_FLUSH
    | proto::FLAG_SEND_FUA
    | proto::FLAG_SEND_TRIM
    | proto::FLAG_SEND_WRITE_ZEROES
    // One writer behind one lock, and FLUSH syncs everything it appended:
    // a flush on one connection covers writes made on any other.
    | proto::FLAG_CAN_MULTI_CONN;

/// Where to listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Unix(p) => write!(f, "unix:{}", p.display()),
            Listen::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

impl Listen {
    /// The URI QEMU and libnbd tools take for this listener.
    pub fn uri(&self) -> String {
        match self {
            Listen::Unix(p) => format!("nbd+unix:///?socket={}", p.display()),
            Listen::Tcp(a) => format!("nbd://{a}/"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub store_dir: PathBuf,
    pub listen: Listen,
    pub sync: SyncMode,
    /// A client that has not finished the handshake by then is dropped.
    pub handshake_timeout: Duration,
    pub writer: WriterOptions,
    /// Seal the history as it is recorded (`--seal-key`...).
    pub seal: Option<crate::seal::sealer::SealConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sessions(#[from] SessionError),
    #[error("cannot listen on {listen}: {source}{hint}")]
    Listen {
        listen: Listen,
        source: io::Error,
        hint: &'static str,
    },
    #[error(
        "{0}: another server is accepting connections there; stop it or choose another --socket"
    )]
    SocketInUse(PathBuf),
    #[error("{0} exists and is not a socket; remove it or choose another --socket")]
    NotASocket(PathBuf),
    #[error("stopped recording: {0}")]
    Fatal(String),
    #[error("cannot seal: {0}")]
    Seal(#[from] crate::seal::SealError),
}

/// Serve the store over NBD, recording what clients write, until `stop` is
/// set (by a signal handler) or the store fails. Returns after the writer
/// is closed and the socket removed.
pub fn run_until_stopped(config: &ServeConfig, stop: &AtomicBool) -> Result<(), ServeError> {
    let mut writer = Writer::open_with(&config.store_dir, config.writer)?;
    if let Some(sc) = &config.seal {
        sc.attach(&config.store_dir, &mut writer)?;
    }
    let mut sessions = SessionLog::open(&config.store_dir)?;
    let listener = Listener::bind(&config.listen)?;
    let export = StoreExport::new(writer, config.sync)?;
    let geometry = (export.size_bytes(), export.preferred_block_size());
    let head = export.head();
    let clock = checked_clock();
    let listen = config.listen.to_string();
    let id = sessions.start(
        time::now(),
        &listen,
        config.sync.name(),
        clock,
        head.seq,
        head.chain,
    )?;
    let info = export_info(&config.store_dir, geometry.0, geometry.1);
    log::info!(
        "recording {} ({} bytes, block size {}, sync {}); serving {} — stop with Ctrl-C or SIGTERM",
        config.store_dir.display(),
        geometry.0,
        geometry.1,
        config.sync.name(),
        config.listen.uri(),
    );
    // A checkpoint due by time is sealed even while no client writes.
    let done = AtomicBool::new(false);
    let fatal = std::thread::scope(|sc| {
        if config.seal.is_some() {
            let (export, done) = (&export, &done);
            sc.spawn(move || {
                while !done.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(200));
                    if let Err(e) = export.seal_if_due() {
                        log::error!("sealing: {e}");
                    }
                }
            });
        }
        let fatal = accept_loop(&listener, &export, &info, config.handshake_timeout, stop);
        done.store(true, Ordering::Relaxed);
        fatal
    });
    let head = export.head();
    let stats = export.commit_stats();
    if stats.durable_requests > 0 {
        log::info!(
            "group commit: {} fdatasyncs for {} requests that waited to be durable \
             (FLUSH, FUA{}); {} of them were answered by a sync made for another",
            stats.syncs,
            stats.durable_requests,
            if config.sync == SyncMode::Always {
                ", every write under --sync always"
            } else {
                ""
            },
            stats.without_sync
        );
    }
    let closed = export.close();
    let reason = match (&fatal, &closed) {
        (Some(why), _) => format!("failed: {why}"),
        (None, Err(e)) => format!("closing the store failed: {e}"),
        (None, Ok(())) => "stopped".to_string(),
    };
    let end = SessionEnd {
        time: time::now(),
        seq: head.seq,
        chain: head.chain,
        reason,
    };
    let ended = sessions.end(&id, &end);
    drop(listener);
    log::info!(
        "stopped; the history ends at record {} ({})",
        head.seq.0,
        head.chain
    );
    if let Some(why) = fatal {
        return Err(ServeError::Fatal(why));
    }
    closed?;
    ended?;
    Ok(())
}

/// The clock's synchronisation state, for the session's start line; a
/// clock that is not synchronised (or cannot be asked) is worth a warning,
/// since every recorded time comes from it.
fn checked_clock() -> Option<ClockState> {
    match clock_state() {
        Ok(c) => {
            if !c.synchronised {
                log::warn!(
                    "the system clock is not synchronised (estimated error {} µs, maximum {} µs); \
                     recorded times are only as good as this clock",
                    c.est_error_us,
                    c.max_error_us
                );
            }
            Some(c)
        }
        Err(e) => {
            log::warn!("cannot read the clock's synchronisation state (adjtimex): {e}");
            None
        }
    }
}

/// What the handshake tells clients about the store's one export.
fn export_info(store_dir: &Path, size_bytes: u64, preferred_block_size: u32) -> ExportInfo {
    ExportInfo {
        name: EXPORT_NAME.to_string(),
        description: format!(
            "diskhist store {} (every write is recorded)",
            store_dir.display()
        ),
        size_bytes,
        transmission_flags: TRANSMISSION_FLAGS,
        block_sizes: BlockSizes {
            minimum: 1,
            preferred: preferred_block_size,
            maximum: MAX_PAYLOAD_BYTES,
        },
    }
}

/// Accept connections until `stop` is set or a connection hits a fatal
/// export error; returns that error. Every connection thread has ended when
/// this returns.
pub fn accept_loop<E: Export>(
    listener: &Listener,
    export: &E,
    info: &ExportInfo,
    handshake_timeout: Duration,
    stop: &AtomicBool,
) -> Option<String> {
    let limits = RequestLimits {
        size_bytes: info.size_bytes,
        max_payload_bytes: info.block_sizes.maximum,
    };
    let fatal: Mutex<Option<String>> = Mutex::new(None);
    let live: Mutex<HashMap<u64, Conn>> = Mutex::new(HashMap::new());
    std::thread::scope(|s| {
        let mut next_id = 0u64;
        while !stop.load(Ordering::SeqCst) && fatal.lock().is_none() {
            match wait_readable(listener, Duration::from_millis(200)) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    log::error!("waiting for connections failed: {e}");
                    break;
                }
            }
            let conn = match listener.accept() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => {
                    // Out of descriptors and the like: wait, do not spin.
                    log::warn!("accepting a connection failed: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            next_id += 1;
            let id = next_id;
            match conn.try_clone() {
                Ok(c) => {
                    live.lock().insert(id, c);
                }
                Err(e) => {
                    log::warn!("connection {id}: {e}; closing it");
                    continue;
                }
            }
            let (fatal, live, limits) = (&fatal, &live, &limits);
            s.spawn(move || {
                if let Some(why) =
                    handle_connection(id, conn, export, info, limits, handshake_timeout)
                {
                    fatal.lock().get_or_insert(why);
                    // Wake the others: nothing more can be acknowledged.
                    for c in live.lock().values() {
                        let _ = c.shutdown(Shutdown::Read);
                    }
                }
                live.lock().remove(&id);
            });
        }
        // Let each connection finish the request in hand, then end. A client
        // that does not read its replies cannot hold the stop up for long.
        for c in live.lock().values() {
            let _ = c.set_write_timeout(Some(Duration::from_secs(5)));
            let _ = c.shutdown(Shutdown::Read);
        }
    });
    fatal.into_inner()
}

/// One connection, from handshake to close. Returns a fatal export error.
fn handle_connection<E: Export>(
    id: u64,
    conn: Conn,
    export: &E,
    info: &ExportInfo,
    limits: &RequestLimits,
    handshake_timeout: Duration,
) -> Option<String> {
    let peer = conn.peer();
    let mut hr = DeadlineReader {
        conn: &conn,
        deadline: Instant::now() + handshake_timeout,
    };
    let mut w = &conn;
    match negotiate(&mut hr, &mut w, info, &HandshakeLimits::default()) {
        Ok(Negotiated::Transmission) => {}
        Ok(Negotiated::Aborted) => {
            log::debug!("connection {id} ({peer}) left during the handshake");
            return None;
        }
        Err(e) => {
            log::warn!("connection {id} ({peer}): {e}; closed");
            return None;
        }
    }
    if let Err(e) = conn.set_read_timeout(None) {
        log::warn!("connection {id} ({peer}): {e}; closed");
        return None;
    }
    log::info!("connection {id} ({peer}) started");
    let mut r = &conn;
    let mut c = Counters::default();
    // A fatal error, or a client that takes no more replies, ends the
    // reading too, even while it waits for the client's next request.
    let stop_reading = || {
        let _ = conn.shutdown(Shutdown::Read);
    };
    let res = handle_requests_until(&mut r, &mut w, export, limits, &mut c, &stop_reading);
    let summary = format!(
        "{} requests, {} writes ({} bytes), {} reads ({} bytes), {} flushes, {} errors \
         ({} for want of space)",
        c.requests,
        c.writes,
        c.bytes_written,
        c.reads,
        c.bytes_read,
        c.flushes,
        c.errors,
        c.no_space
    );
    match res {
        Ok(end) => {
            log::info!("connection {id} ({peer}) ended ({end:?}): {summary}");
            None
        }
        Err(TransmissionError::Fatal(why)) => {
            log::error!("connection {id} ({peer}): {why}; stopping the server ({summary})");
            Some(why)
        }
        Err(e) => {
            log::warn!("connection {id} ({peer}) ended: {e} ({summary})");
            None
        }
    }
}

/// Wait until the listener has a connection to accept, or the timeout.
fn wait_readable(listener: &Listener, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: listener.raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call; the descriptor
    // belongs to `listener`, which outlives the call.
    let rc = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) };
    match rc {
        -1 => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            }
        }
        0 => Ok(false),
        _ => Ok(true),
    }
}

/// A listening socket, Unix or TCP.
pub enum Listener {
    Unix {
        listener: UnixListener,
        path: PathBuf,
        ino: u64,
    },
    Tcp(TcpListener),
}

impl Listener {
    pub fn bind(listen: &Listen) -> Result<Listener, ServeError> {
        match listen {
            Listen::Unix(path) => bind_unix(listen, path),
            Listen::Tcp(addr) => {
                let listener = TcpListener::bind(addr).map_err(|source| ServeError::Listen {
                    listen: listen.clone(),
                    source,
                    hint: "",
                })?;
                if !addr.ip().is_loopback() {
                    log::warn!(
                        "listening on {addr}: NBD has neither authentication nor encryption; anyone \
                         who can reach this address can read and write the recorded disk"
                    );
                }
                Ok(Listener::Tcp(listener))
            }
        }
    }

    fn raw_fd(&self) -> std::os::fd::RawFd {
        match self {
            Listener::Unix { listener, .. } => listener.as_fd().as_raw_fd(),
            Listener::Tcp(l) => l.as_fd().as_raw_fd(),
        }
    }

    fn accept(&self) -> io::Result<Conn> {
        match self {
            Listener::Unix { listener, .. } => {
                let (s, _) = listener.accept()?;
                s.set_nonblocking(false)?;
                Ok(Conn::Unix(s))
            }
            Listener::Tcp(l) => {
                let (s, _) = l.accept()?;
                s.set_nonblocking(false)?;
                s.set_nodelay(true)?;
                Ok(Conn::Tcp(s))
            }
        }
    }
}

impl Drop for Listener {
    /// Remove the socket file, if it is still the one we bound.
    fn drop(&mut self) {
        if let Listener::Unix { path, ino, .. } = &*self {
            if std::fs::symlink_metadata(path).is_ok_and(|m| m.ino() == *ino) {
                if let Err(e) = std::fs::remove_file(path) {
                    log::warn!("{}: could not remove the socket: {e}", path.display());
                }
            }
        }
    }
}

fn bind_unix(listen: &Listen, path: &Path) -> Result<Listener, ServeError> {
    let listen_err = |source, hint| ServeError::Listen {
        listen: listen.clone(),
        source,
        hint,
    };
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if !m.file_type().is_socket() {
            return Err(ServeError::NotASocket(path.to_path_buf()));
        }
        match UnixStream::connect(path) {
            Ok(_) => return Err(ServeError::SocketInUse(path.to_path_buf())),
            // Left behind by a server that was killed: nobody listens.
            Err(_) => std::fs::remove_file(path).map_err(|e| listen_err(e, ""))?,
        }
    }
    // Create the socket 0600 from the start: a chmod after bind would leave
    // a moment in which anyone could connect and write.
    // SAFETY: umask only swaps the process's file mode mask; serve binds
    // before it starts any thread that creates files.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    let listener = bound.map_err(|e| {
        let hint = if path.as_os_str().len() >= 108 {
            " (a Unix socket path must be shorter than 108 bytes; choose a shorter --socket)"
        } else {
            ""
        };
        listen_err(e, hint)
    })?;
    let meta = std::fs::metadata(path).map_err(|e| listen_err(e, ""))?;
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| listen_err(e, ""))?;
    }
    Ok(Listener::Unix {
        listener,
        path: path.to_path_buf(),
        ino: meta.ino(),
    })
}

/// An accepted connection.
enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Conn {
    fn try_clone(&self) -> io::Result<Conn> {
        Ok(match self {
            Conn::Unix(s) => Conn::Unix(s.try_clone()?),
            Conn::Tcp(s) => Conn::Tcp(s.try_clone()?),
        })
    }
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Conn::Unix(s) => s.set_read_timeout(t),
            Conn::Tcp(s) => s.set_read_timeout(t),
        }
    }
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Conn::Unix(s) => s.set_write_timeout(t),
            Conn::Tcp(s) => s.set_write_timeout(t),
        }
    }
    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Conn::Unix(s) => s.shutdown(how),
            Conn::Tcp(s) => s.shutdown(how),
        }
    }
    fn peer(&self) -> String {
        match self {
            Conn::Unix(_) => "unix".to_string(),
            Conn::Tcp(s) => s
                .peer_addr()
                .map_or_else(|_| "tcp".to_string(), |a| a.to_string()),
        }
    }
}

impl Read for &Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match *self {
            Conn::Unix(s) => (&*s).read(buf),
            Conn::Tcp(s) => (&*s).read(buf),
        }
    }
}

impl Write for &Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match *self {
            Conn::Unix(s) => (&*s).write(buf),
            Conn::Tcp(s) => (&*s).write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads that fail once the handshake's time is up, however the client
/// trickles its bytes.
struct DeadlineReader<'a> {
    conn: &'a Conn,
    deadline: Instant,
}

impl Read for DeadlineReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "handshake not finished in time",
            ));
        }
        self.conn.set_read_timeout(Some(left))?;
        let mut c = self.conn;
        c.read(buf)
    }
}
