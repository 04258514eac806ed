//! Command-line parsing and dispatch. Each subcommand lives in its own file
//! with its flags; this file maps errors to exit codes, treats a closed
//! pipe (`diskhist log | head`) as a normal end, warns once about a store
//! open to other users, and holds what several commands share: time
//! arguments (with a note when one falls outside the history), safe
//! outputs (output.rs) and progress bars (progress.rs).

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use diskhist::format_rfc3339;
use diskhist::{Seq, Store, TimeNs, TimeSpec};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

mod bisect;
mod cat;
mod diff;
mod dump;
mod export;
mod files;
mod history;
mod import;
mod info;
mod ingest;
mod init;
mod json;
mod log;
mod ls;
mod mount;
pub mod output;
pub mod progress;
mod seal;
mod serve;
mod timeline;
mod verify;

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
    Init(init::InitArgs),
    /// Serve the store as an NBD export, recording every write.
    Serve(serve::ServeArgs),
    /// Record writes from a dm-log-writes log or a diskhist stream.
    Ingest(ingest::IngestArgs),
    /// Record the blocks of IMAGE that differ from the latest state.
    Import(import::ImportArgs),
    /// Mount the history read-only: MOUNTPOINT/at/<time>/disk.img.
    Mount(mount::MountArgs),
    /// Write the disk as of TIME as a sparse raw image.
    Export(export::ExportArgs),
    /// One line per record: seq, time, offset, length, kind.
    Log(log::LogArgs),
    /// Where two states differ: block ranges (exit 1 if they differ, 0 if not).
    Diff(diff::DiffArgs),
    /// Write records as a diskhist stream (for `ingest --format stream`).
    Dump(dump::DumpArgs),
    /// Recompute every checksum and the hash chain.
    Verify(verify::VerifyArgs),
    /// Size, block size, record count, times, space, chain head.
    Info(info::InfoArgs),
    /// Every change of one file or directory across the history.
    History(history::HistoryArgs),
    /// The first record at which COMMAND's verdict changes (git bisect run semantics).
    Bisect(bisect::BisectArgs),
    /// Every file version with claimed and recorded times; --check for contradictions.
    Timeline(timeline::TimelineArgs),
    /// List a directory of a filesystem inside the disk at TIME.
    Ls(ls::LsArgs),
    /// Print a file of a filesystem inside the disk at TIME.
    Cat(cat::CatArgs),
    /// Make a signer key and its verifier key (C2SP signed-note format).
    Keygen(seal::KeygenArgs),
    /// Print a signed checkpoint of the store's history (its Merkle root).
    Seal(seal::SealArgs),
    /// Add a witness's signature to a checkpoint.
    Cosign(seal::CosignArgs),
    /// Write inclusion (and consistency) proofs against a checkpoint.
    Prove(seal::ProveArgs),
    /// Check a proof bundle against a checkpoint, without the store.
    Audit(seal::AuditArgs),
}

/// Parse, run, and turn the outcome into an exit status.
pub fn main() -> i32 {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp(None)
        .format_target(false)
        .init();
    let parsed = Cli::command()
        .mut_subcommands(describe_store)
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    if let Some(store) = cli.command.store() {
        warn_if_exposed(store);
    }
    // diff answers with its status, as cmp(1) does: 1 means "they differ",
    // so any trouble is 2 (and so for timeline --check).
    let failure = match cli.command {
        Command::Diff(_) => 2,
        // timeline --check answers "contradictions found" with 1.
        Command::Timeline(ref a) if a.check => 2,
        _ => 1,
    };
    let done = |r: anyhow::Result<()>| r.map(|()| Status::Success);
    let result = match cli.command {
        Command::Init(a) => done(init::init(a)),
        Command::Serve(a) => done(serve::run(a)),
        Command::Ingest(a) => done(ingest::ingest(a)),
        Command::Import(a) => done(import::import(a)),
        Command::Mount(a) => done(mount::run(a)),
        Command::Export(a) => done(export::export(a)),
        Command::Log(a) => done(log::log(a)),
        Command::Diff(a) => diff::diff(a),
        Command::Dump(a) => done(dump::dump(a)),
        Command::Verify(a) => verify::verify(a),
        Command::Info(a) => done(info::info(a)),
        Command::History(a) => done(history::run(a)),
        Command::Timeline(a) => timeline::run(a),
        Command::Bisect(a) => done(bisect::run(a)),
        Command::Ls(a) => done(ls::ls(a)),
        Command::Cat(a) => done(cat::cat(a)),
        Command::Keygen(a) => done(seal::keygen(a)),
        Command::Seal(a) => done(seal::seal(a)),
        Command::Cosign(a) => done(seal::cosign(a)),
        Command::Prove(a) => done(seal::prove(a)),
        Command::Audit(a) => seal::audit(a),
    };
    match result {
        Ok(Status::Success) => 0,
        Ok(Status::No) => 1,
        Err(e) if is_broken_pipe(&e) => 0,
        Err(e) => {
            if let Some(u) = e.downcast_ref::<UsageError>() {
                eprintln!("diskhist: {u}");
                return 2;
            }
            eprintln!("diskhist: {e:#}");
            failure
        }
    }
}

/// Give every subcommand's STORE argument the one description, where its
/// file gives none: `--help` describes every argument.
fn describe_store(sub: clap::Command) -> clap::Command {
    // (mut_args changes the arguments in place; mut_arg would move STORE
    // after the other positionals.)
    sub.mut_args(|a| {
        if a.get_id() == "store" && a.get_help().is_none() {
            a.help("The store directory")
        } else {
            a
        }
    })
}

/// How a command that ran to its end went, when that is more than "ok".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Exit 0.
    Success,
    /// The command's answer is "no", and its output already says so (diff:
    /// the states differ; verify --json: damage found): exit 1 with no
    /// error message.
    No,
}

impl Command {
    /// The store a command works on (not `init`'s, which it creates private).
    fn store(&self) -> Option<&Path> {
        match self {
            Command::Init(_) => None,
            Command::Serve(a) => Some(&a.store),
            Command::Ingest(a) => Some(&a.store),
            Command::Import(a) => Some(&a.store),
            Command::Mount(a) => Some(&a.store),
            Command::Export(a) => Some(&a.store),
            Command::Log(a) => Some(&a.store),
            Command::Diff(a) => Some(&a.store),
            Command::Dump(a) => Some(&a.store),
            Command::Verify(a) => Some(&a.store),
            Command::Info(a) => Some(&a.store),
            Command::History(a) => Some(&a.store),
            Command::Timeline(a) => Some(&a.store),
            Command::Bisect(a) => Some(&a.store),
            Command::Ls(a) => Some(&a.store),
            Command::Cat(a) => Some(&a.store),
            Command::Seal(a) => Some(&a.store),
            Command::Prove(a) => Some(&a.store),
            Command::Keygen(_) | Command::Cosign(_) | Command::Audit(_) => None,
        }
    }
}

/// One line on standard error when the store directory, or a file or
/// directory in it or in `index/`, is open to group or others: a store is
/// evidence, and diskhist creates it private (0700, 0600).
fn warn_if_exposed(store: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if std::fs::symlink_metadata(store.join(diskhist::store::layout::HEADER_FILE)).is_err() {
        return; // not a store: the command says so
    }
    let mode = |p: &Path| {
        std::fs::symlink_metadata(p)
            .ok()
            .filter(|m| !m.file_type().is_symlink())
            .map(|m| m.permissions().mode() & 0o7777)
    };
    let mut paths = vec![store.to_path_buf()];
    for dir in [
        store.to_path_buf(),
        store.join(diskhist::store::layout::INDEX_DIR),
    ] {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let mut names: Vec<_> = entries.flatten().map(|e| e.path()).collect();
            names.sort();
            paths.extend(names);
        }
    }
    let exposed: Vec<(std::path::PathBuf, u32)> = paths
        .into_iter()
        .filter_map(|p| mode(&p).filter(|m| m & 0o077 != 0).map(|m| (p, m)))
        .collect();
    if let Some((first, m)) = exposed.first() {
        let more = match exposed.len() - 1 {
            0 => String::new(),
            1 => " (and 1 more path in the store)".to_string(),
            n => format!(" (and {n} more paths in the store)"),
        };
        eprintln!(
            "diskhist: warning: {} is open to group or others (mode {m:04o}){more}; \
             a store is evidence: chmod -R go-rwx {}",
            first.display(),
            shell_quote(&store.display().to_string())
        );
    }
}

/// `s` as one shell word.
fn shell_quote(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+:@%,=".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
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
pub fn time_arg(s: &str) -> Result<TimeSpec, UsageError> {
    diskhist::parse_time(s).map_err(|e| UsageError(e.to_string()))
}

/// Open a store for reading, naming it in the error.
pub fn open_store(store: &Path) -> anyhow::Result<Store> {
    Store::open(store).with_context(|| format!("cannot open store {}", store.display()))
}

/// Where a time given on the command line falls against the history.
enum Outside {
    /// Before the first record (or the store has none).
    Before,
    /// After the last record, `head`, at `time`.
    After { head: Seq, time: TimeNs },
}

/// Whether time `t` lies outside the recorded history.
fn outside(s: &Store, t: TimeNs) -> anyhow::Result<Option<Outside>> {
    let head = s.head();
    let Some(last) = head.time_ns else {
        return Ok(Some(Outside::Before));
    };
    if t > last {
        return Ok(Some(Outside::After {
            head: head.seq,
            time: last,
        }));
    }
    Ok((t < s.time_of(Seq(1))?).then_some(Outside::Before))
}

/// The state a time argument names. A time before the first record or
/// after the last is accepted, with one line on standard error saying
/// which state it gives.
pub fn state(s: &Store, time: &str) -> anyhow::Result<Seq> {
    let spec = time_arg(time)?;
    let seq = s.resolve(spec)?;
    if let TimeSpec::At(t) = spec {
        match outside(s, t)? {
            Some(Outside::Before) => {
                eprintln!("diskhist: {time} is before the first record: the empty disk")
            }
            Some(Outside::After { head, time: last }) => eprintln!(
                "diskhist: {time} is after the last record: the state at {head} ({})",
                format_rfc3339(last)
            ),
            None => {}
        }
    }
    Ok(seq)
}

/// Records from..=to as the --from/--to arguments name them (none when
/// from > to). A time outside the history gets one line on standard error
/// saying where the range starts or ends.
pub fn record_range(s: &Store, from: Option<&str>, to: Option<&str>) -> anyhow::Result<(u64, u64)> {
    let head = s.head().seq.0;
    let first = match from {
        None => 1,
        Some(arg) => match time_arg(arg)? {
            TimeSpec::AfterSeq(Seq(0)) => 1,
            TimeSpec::AfterSeq(n) => n.0,
            TimeSpec::Latest => head,
            TimeSpec::At(t) => {
                match outside(s, t)? {
                    Some(Outside::Before) if head > 0 => eprintln!(
                        "diskhist: --from {arg} is before the first record: from #1 ({})",
                        format_rfc3339(s.time_of(Seq(1))?)
                    ),
                    Some(Outside::Before) => {
                        eprintln!("diskhist: --from {arg}: the store has no records")
                    }
                    Some(Outside::After { head, time }) => eprintln!(
                        "diskhist: --from {arg} is after the last record ({head}, {}): no records",
                        format_rfc3339(time)
                    ),
                    None => {}
                }
                s.resolve(TimeSpec::At(TimeNs(t.0.saturating_sub(1))))?.0 + 1
            }
        },
    };
    let last = match to {
        None => head,
        Some(arg) => {
            let spec = time_arg(arg)?;
            if let TimeSpec::At(t) = spec {
                match outside(s, t)? {
                    Some(Outside::Before) => {
                        eprintln!("diskhist: --to {arg} is before the first record: no records")
                    }
                    Some(Outside::After { head, time }) => eprintln!(
                        "diskhist: --to {arg} is after the last record: up to {head} ({})",
                        format_rfc3339(time)
                    ),
                    None => {}
                }
            }
            s.resolve(spec)?.0
        }
    };
    Ok((first.max(1), last.min(head)))
}

/// A flag raised by SIGINT or SIGTERM, for commands that stop cleanly.
pub fn stop_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing a signal handler")?;
    }
    Ok(stop)
}
