//! `diskhist ingest STORE [--format dmlog|stream] [--follow] FILE|-`: record
//! a dm-log-writes log or a diskhist stream.

use super::{stop_flag, UsageError};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use diskhist::producers::{dmlog, stream};
use diskhist::store::{Store, Writer};
use std::io::BufReader;
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
}

pub fn ingest(a: IngestArgs) -> Result<()> {
    let mut w = Writer::open(&a.store)?;
    let stdin = a.file.as_os_str() == "-";
    let open_file = || {
        std::fs::File::open(&a.file).with_context(|| format!("cannot open {}", a.file.display()))
    };
    match a.format {
        Format::Dmlog => {
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
            let opts = dmlog::DmlogOptions {
                follow: a.follow,
                stop: stop_flag()?,
                skip_entries: resume.map_or(0, |r| r.entries),
                ..Default::default()
            };
            let res = if stdin {
                dmlog::ingest(std::io::stdin().lock(), &mut w, &opts)
            } else {
                dmlog::ingest_file(open_file()?, &mut w, &opts)
            };
            let head = w.head();
            w.close()?;
            let s = res.with_context(|| format!("ingesting {}", a.file.display()))?;
            eprintln!(
                "recorded {} entries ({} bytes written, {} marks); store head {}",
                s.entries, s.bytes_written, s.marks, head.seq
            );
        }
        Format::Stream => {
            if a.follow {
                return Err(UsageError("--follow applies to dmlog logs only".into()).into());
            }
            let input: Box<dyn std::io::Read> = if stdin {
                Box::new(std::io::stdin().lock())
            } else {
                Box::new(open_file()?)
            };
            let was_empty = w.head().seq.0 == 0;
            let res = ingest_stream(BufReader::with_capacity(1 << 20, input), &mut w);
            let head = w.head();
            w.close()?;
            let (n, end) = res.with_context(|| format!("ingesting {}", a.file.display()))?;
            eprintln!("recorded {n} records; store head {}", head.seq);
            if let Some(end) = end {
                if was_empty && end.chain != head.chain {
                    bail!("the stream's chain head {} differs from the store's {}: the history was altered in transit", end.chain, head.chain);
                }
            }
        }
    }
    Ok(())
}

fn ingest_stream<R: std::io::Read>(
    input: R,
    w: &mut Writer,
) -> Result<(u64, Option<stream::StreamEnd>)> {
    let mut r = stream::StreamReader::new(input)?;
    let g = w.geometry();
    if r.header.size_bytes > g.size_bytes {
        bail!(
            "the stream is from a disk of {} bytes, larger than this store's {}",
            r.header.size_bytes,
            g.size_bytes
        );
    }
    let mut n = 0;
    loop {
        match r.next_record() {
            Ok(Some(rec)) => {
                w.append(rec.time_ns, rec.op.as_op(), rec.flags)
                    .with_context(|| {
                        format!("stream record {} (source seq {})", n + 1, rec.seq.0)
                    })?;
                n += 1;
            }
            Ok(None) => break,
            Err(e) => {
                w.sync()?;
                return Err(anyhow::Error::new(e)
                    .context(format!("{n} records before the fault were recorded")));
            }
        }
    }
    w.sync()?;
    Ok((n, r.end()))
}
