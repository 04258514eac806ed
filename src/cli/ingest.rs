//! `diskhist ingest STORE [--format dmlog|stream] [--follow] FILE|-`: record
//! a dm-log-writes log or a diskhist stream.

use super::progress::Progress;
use super::{stop_flag, UsageError};
use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use diskhist::producers::{dmlog, stream};
use diskhist::store::{Store, Writer};
use std::io::BufReader;
use std::os::fd::AsFd;
use std::path::PathBuf;

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    /// Linux dm-log-writes / QEMU blklogwrites log.
    Dmlog,
    /// diskhist's own stream, as `diskhist dump` writes it.
    Stream,
}

#[derive(Args)]
pub struct IngestArgs {
    /// The store directory.
    pub store: PathBuf,
    /// Input format.
    #[arg(long, value_enum, default_value = "dmlog")]
    pub format: Format,
    /// Keep reading as the log grows (dmlog), until SIGINT/SIGTERM. Run
    /// again on the same log file and store (after a crash or a stop),
    /// ingest resumes after the entries already recorded.
    #[arg(long)]
    pub follow: bool,
    /// The log or stream to read; `-` for standard input.
    pub file: PathBuf,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub sealing: super::seal::SealingArgs,
}

/// A progress bar over the input: its size for a file read once, bytes
/// and rate only for standard input or a log that keeps growing.
fn input_progress(a: &IngestArgs, stdin: bool) -> Progress {
    let len = (!stdin && !a.follow)
        .then(|| std::fs::metadata(&a.file).ok())
        .flatten()
        .filter(|m| m.is_file())
        .map(|m| m.len());
    match len {
        Some(n) => Progress::bytes(n, a.quiet),
        None => Progress::bytes_unknown(a.quiet),
    }
}

pub fn ingest(a: IngestArgs) -> Result<()> {
    if matches!(a.format, Format::Stream) && a.follow {
        return Err(UsageError("--follow applies to dmlog logs only".into()).into());
    }
    let seal = a.sealing.config()?;
    let mut w = Writer::open(&a.store)?;
    if let Some(sc) = &seal {
        sc.attach(&a.store, &mut w)?;
    }
    let stdin = a.file.as_os_str() == "-";
    match a.format {
        Format::Dmlog => ingest_dmlog(&a, w, stdin),
        Format::Stream => ingest_stream(&a, w, stdin),
    }
}

fn open_input(a: &IngestArgs) -> Result<std::fs::File> {
    std::fs::File::open(&a.file).with_context(|| format!("cannot open {}", a.file.display()))
}

/// A dm-log-writes log, resuming after the entries an earlier run recorded.
fn ingest_dmlog(a: &IngestArgs, mut w: Writer, stdin: bool) -> Result<()> {
    // Entries an earlier run (killed, or stopped) already recorded
    // are not recorded twice: entry i stays record i.
    let resume = if stdin {
        None
    } else {
        dmlog::already_recorded(&a.file, &Store::open(&a.store)?)
            .with_context(|| format!("reading {}", a.file.display()))?
    };
    if let Some(r) = resume {
        eprintln!(
            "resuming: entries 1..{} of {} are already records {}..{} of the store; \
             recording from entry {}",
            r.entries,
            a.file.display(),
            r.first_seq.0,
            w.head().seq.0,
            r.entries + 1
        );
    }
    if !stdin {
        // Whatever this run records, a run after it knows where it began.
        let before = w.head().seq.0 - resume.map_or(0, |r| r.entries);
        dmlog::note_ingest_start(&a.store, &a.file, diskhist::Seq(before))
            .with_context(|| format!("noting the ingest of {}", a.file.display()))?;
    }
    let progress = input_progress(a, stdin);
    let opts = dmlog::DmlogOptions {
        follow: a.follow,
        stop: stop_flag()?,
        skip_entries: resume.map_or(0, |r| r.entries),
        progress: Some(progress.callback()),
        ..Default::default()
    };
    let res = if stdin {
        dmlog::ingest(std::io::stdin().lock(), &mut w, &opts)
    } else {
        dmlog::ingest_file(open_input(a)?, &mut w, &opts)
    };
    if res.is_ok() {
        progress.finish();
    }
    drop(progress);
    let head = w.head();
    w.close()?;
    let s = res.with_context(|| format!("ingesting {}", a.file.display()))?;
    eprintln!(
        "recorded {} entries ({} bytes written, {} marks); store head {}",
        s.entries, s.bytes_written, s.marks, head.seq
    );
    Ok(())
}

/// A diskhist stream: records the store holds already are skipped.
fn ingest_stream(a: &IngestArgs, mut w: Writer, stdin: bool) -> Result<()> {
    // A File even for standard input: a version 1 stream is read
    // twice, which works when standard input is a file, not a pipe.
    let input = if stdin {
        std::fs::File::from(
            std::io::stdin()
                .as_fd()
                .try_clone_to_owned()
                .context("reading standard input")?,
        )
    } else {
        open_input(a)?
    };
    let store = Store::open(&a.store)?;
    let opts = stream::IngestOptions { stop: stop_flag()? };
    let progress = input_progress(a, stdin);
    let res = stream::ingest(
        BufReader::with_capacity(1 << 20, progress.reader(input)),
        &mut w,
        &store,
        &opts,
        |r| {
            progress.suspend(|| {
                eprintln!(
                    "resuming: records {}..{} of the stream are already in the store; \
                 recording from record {}",
                    r.first.0,
                    r.last.0,
                    r.last.0 + 1
                )
            })
        },
    );
    if res.is_ok() {
        progress.finish();
    }
    drop(progress);
    let head = w.head();
    w.close()?;
    let s = res.with_context(|| format!("ingesting {}", a.file.display()))?;
    let held = s.skipped_records();
    let what = match (s.first_recorded, s.last_recorded) {
        (Some(a), Some(b)) if held > 0 => format!(
            "recorded {} records ({a}..{b}); {held} already in the store were skipped",
            s.recorded
        ),
        (Some(a), Some(b)) => format!("recorded {} records ({a}..{b})", s.recorded),
        _ if s.stopped => {
            format!("nothing recorded ({held} records of the stream were already there)")
        }
        _ if held > 0 => {
            format!("nothing recorded: the store already holds all {held} records of the stream")
        }
        _ => "nothing recorded: the stream holds no records".to_string(),
    };
    let stopped = if s.stopped {
        "stopped by a signal; "
    } else {
        ""
    };
    eprintln!("{stopped}{what}; store head {}", head.seq);
    Ok(())
}
