//! Command-line parsing and dispatch. Each subcommand lives in its own file
//! with its flags; this file maps errors to exit codes and treats a closed
//! pipe (`diskhist log | head`) as a normal end.

use clap::{Parser, Subcommand};

mod history;
mod mount;
mod serve;
mod store_cmds;

#[derive(Parser)]
#[command(
    name = "diskhist",
    version,
    about = "Record every write to a virtual disk; present the disk at any past moment",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create an empty store for a disk of SIZE bytes.
    Init(store_cmds::InitArgs),
    /// Serve the store as an NBD export, recording every write.
    Serve(serve::ServeArgs),
    /// Record writes from a dm-log-writes log or a diskhist stream.
    Ingest(store_cmds::IngestArgs),
    /// Record the blocks of IMAGE that differ from the latest state.
    Import(store_cmds::ImportArgs),
    /// Mount the history read-only: MOUNTPOINT/at/<time>/disk.img.
    Mount(mount::MountArgs),
    /// Write the disk as of TIME as a sparse raw image.
    Export(history::ExportArgs),
    /// One line per record: seq, time, offset, length, kind.
    Log(history::LogArgs),
    /// Byte ranges whose content differs between two states.
    Diff(history::DiffArgs),
    /// Write records as a diskhist stream (for `ingest --format stream`).
    Dump(history::DumpArgs),
    /// Recompute every checksum and the hash chain.
    Verify(store_cmds::VerifyArgs),
    /// Size, block size, record count, times, space, chain head.
    Info(store_cmds::InfoArgs),
}

/// Parse, run, and turn the outcome into an exit status.
pub fn main() -> i32 {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp(None)
        .format_target(false)
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let result = match cli.command {
        Command::Init(a) => store_cmds::init(a),
        Command::Serve(a) => serve::run(a),
        Command::Ingest(a) => store_cmds::ingest(a),
        Command::Import(a) => store_cmds::import(a),
        Command::Mount(a) => mount::run(a),
        Command::Export(a) => history::export(a),
        Command::Log(a) => history::log(a),
        Command::Diff(a) => history::diff(a),
        Command::Dump(a) => history::dump(a),
        Command::Verify(a) => store_cmds::verify(a),
        Command::Info(a) => store_cmds::info(a),
    };
    match result {
        Ok(()) => 0,
        Err(e) if is_broken_pipe(&e) => 0,
        Err(e) => {
            if let Some(u) = e.downcast_ref::<UsageError>() {
                eprintln!("diskhist: {u}");
                return 2;
            }
            eprintln!("diskhist: {e:#}");
            1
        }
    }
}

/// A mistake in how the command was called (exit status 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Parse a time argument, as a usage error naming the accepted forms.
pub fn time_arg(s: &str) -> Result<diskhist::TimeSpec, UsageError> {
    diskhist::parse_time(s).map_err(|e| UsageError(e.to_string()))
}
