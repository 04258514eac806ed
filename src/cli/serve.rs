//! `diskhist serve STORE [--socket PATH | --listen ADDR:PORT] [--sync MODE]`:
//! serve the store over NBD, recording every write, until SIGINT or SIGTERM.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;
use diskhist::nbd::server::{self, Listen, ServeConfig, DEFAULT_SOCKET};
use diskhist::nbd::SyncMode;
use diskhist::store::{WriterOptions, FLUSH_THRESHOLD};

use super::UsageError;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// The store directory.
    pub store: PathBuf,
    /// Listen on this Unix socket, created mode 0600 [default: STORE/nbd.sock].
    #[arg(long, value_name = "PATH", conflicts_with = "listen")]
    pub socket: Option<PathBuf>,
    /// Listen on TCP instead: ADDR:PORT, or PORT / :PORT for 127.0.0.1:PORT.
    /// NBD has no authentication: prefer the Unix socket or loopback.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,
    /// When acknowledged writes become durable: `flush` (on FLUSH and FUA,
    /// as NBD promises) or `always` (before every write's reply).
    #[arg(long, value_enum, default_value = "flush", value_name = "MODE")]
    pub sync: SyncArg,
    /// Drop a client that has not finished the NBD handshake within this
    /// many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = server::HANDSHAKE_TIMEOUT.as_secs())]
    pub handshake_timeout: u64,
    /// Block versions held in memory before the index is written out.
    /// Hidden: a knob for tests that need index flushes on a small disk.
    #[arg(long, hide = true, value_name = "N", default_value_t = FLUSH_THRESHOLD)]
    pub index_flush_blocks: usize,
    #[command(flatten)]
    pub sealing: super::seal::SealingArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum SyncArg {
    Flush,
    Always,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let listen = match (&args.listen, &args.socket) {
        (Some(l), _) => Listen::Tcp(parse_listen(l)?),
        (None, Some(p)) => Listen::Unix(p.clone()),
        (None, None) => {
            let store = std::path::absolute(&args.store).with_context(|| {
                format!("{}: cannot make the path absolute", args.store.display())
            })?;
            Listen::Unix(store.join(DEFAULT_SOCKET))
        }
    };
    let sync = match args.sync {
        SyncArg::Flush => SyncMode::Flush,
        SyncArg::Always => SyncMode::Always,
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .with_context(|| format!("cannot install a handler for signal {sig}"))?;
    }
    if args.handshake_timeout == 0 {
        return Err(UsageError("--handshake-timeout must be at least 1 second".into()).into());
    }
    if args.index_flush_blocks == 0 {
        return Err(UsageError("--index-flush-blocks must be at least 1".into()).into());
    }
    let seal = args.sealing.config()?;
    let config = ServeConfig {
        store_dir: args.store,
        listen,
        sync,
        handshake_timeout: std::time::Duration::from_secs(args.handshake_timeout),
        writer: WriterOptions {
            flush_threshold: args.index_flush_blocks,
        },
        seal,
    };
    server::run_until_stopped(&config, &stop)
        .with_context(|| format!("serve {}", config.store_dir.display()))
}

/// `PORT`, `:PORT`, `ADDR:PORT`, `[V6ADDR]:PORT`, `HOST:PORT`; the address
/// defaults to 127.0.0.1 so that nothing is exposed by accident.
fn parse_listen(s: &str) -> Result<SocketAddr, UsageError> {
    let bad = |why: &str| {
        UsageError(format!(
            "--listen {s:?}: {why}; give PORT, :PORT (both mean 127.0.0.1:PORT) or ADDR:PORT"
        ))
    };
    let port_only = s.strip_prefix(':').unwrap_or(s);
    if !port_only.is_empty() && port_only.bytes().all(|b| b.is_ascii_digit()) {
        let port: u16 = port_only.parse().map_err(|_| bad("port out of range"))?;
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let mut addrs = s.to_socket_addrs().map_err(|e| bad(&e.to_string()))?;
    addrs
        .next()
        .ok_or_else(|| bad("the name resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_forms() {
        let lo = |p| SocketAddr::from(([127, 0, 0, 1], p));
        assert_eq!(parse_listen("10809").unwrap(), lo(10809));
        assert_eq!(parse_listen(":10809").unwrap(), lo(10809));
        assert_eq!(
            parse_listen("0.0.0.0:7").unwrap(),
            SocketAddr::from(([0, 0, 0, 0], 7))
        );
        assert_eq!(parse_listen("[::1]:7").unwrap().to_string(), "[::1]:7");
        assert_eq!(parse_listen("localhost:7").unwrap().port(), 7);
        assert!(parse_listen("99999").is_err());
        assert!(parse_listen(":").is_err());
        assert!(parse_listen("1.2.3.4").is_err());
    }
}
