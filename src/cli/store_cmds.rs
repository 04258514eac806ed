//! Commands that put history into a store, and those that check it:
//! `init`, `ingest`, `import`, `verify`, `info`.

use super::{time_arg, UsageError};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use diskhist::producers::{dmlog, image, stream};
use diskhist::store::{verify as verify_mod, Store, Writer};
use diskhist::time::{format_rfc3339, now, TimeSpec};
use diskhist::units::parse_size;
use std::io::{BufReader, Write};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

#[derive(Args)]
pub struct InitArgs {
    /// The store directory (new or empty).
    pub store: PathBuf,
    /// Disk size: bytes, or with a K/M/G/T suffix (64M, 10G).
    #[arg(long, value_parser = parse_size)]
    pub size: u64,
    /// Block size in bytes: a power of two from 512 to 65536.
    #[arg(long, default_value = "4096", value_parser = parse_size)]
    pub block_size: u64,
}

pub fn init(a: InitArgs) -> Result<()> {
    let bs = u32::try_from(a.block_size)
        .map_err(|_| UsageError(format!("--block-size {} is too large", a.block_size)))?;
    Writer::init(&a.store, a.size, bs)
        .with_context(|| format!("cannot create a store in {}", a.store.display()))?;
    println!(
        "created {} ({} bytes, block size {bs})",
        a.store.display(),
        a.size
    );
    Ok(())
}

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

fn stop_flag() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing a signal handler")?;
    }
    Ok(stop)
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

#[derive(Args)]
pub struct ImportArgs {
    pub store: PathBuf,
    /// A raw image exactly the size of the store's disk.
    pub image: PathBuf,
    /// The time to record the changes at (default: now).
    #[arg(long)]
    pub at: Option<String>,
}

pub fn import(a: ImportArgs) -> Result<()> {
    let time = match a.at.as_deref().map(time_arg).transpose()? {
        None => now(),
        Some(TimeSpec::At(t)) => t,
        Some(_) => {
            return Err(UsageError(
                "--at takes a time (RFC 3339 or @UNIX), not #SEQ or latest".into(),
            )
            .into())
        }
    };
    let f = std::fs::File::open(&a.image)
        .with_context(|| format!("cannot open {}", a.image.display()))?;
    let len = f.metadata()?.len();
    let mut w = Writer::open(&a.store)?;
    if let Some(last) = w.head().time_ns {
        if time < last {
            bail!(
                "--at {} is before the store's last record ({}); history is append-only",
                format_rfc3339(time),
                format_rfc3339(last)
            );
        }
    }
    let res = image::import(BufReader::with_capacity(1 << 20, f), len, &mut w, time);
    w.close()?;
    let s = res.with_context(|| format!("importing {}", a.image.display()))?;
    match (s.first_seq, s.last_seq) {
        (Some(f), Some(l)) => eprintln!(
            "recorded {} changed extents ({} bytes) as records {}..{}",
            s.extents, s.bytes_changed, f.0, l.0
        ),
        _ => eprintln!("no block differs from the latest state: nothing recorded"),
    }
    Ok(())
}

#[derive(Args)]
pub struct VerifyArgs {
    pub store: PathBuf,
}

pub fn verify(a: VerifyArgs) -> Result<()> {
    // Each serve session's start and end pin the chain after a record: a
    // check of the log from outside it (a cut tail shows even without the
    // index). A damaged sessions file is reported after the log's verdict.
    let sessions = diskhist::nbd::session::read_sessions(&a.store);
    let anchors: Vec<verify_mod::Anchor> = match &sessions {
        Ok(list) => list
            .iter()
            .flat_map(|s| {
                let start = verify_mod::Anchor {
                    seq: s.start_seq,
                    chain: s.start_chain,
                    what: format!("sessions: the start of serve session {}", s.id),
                };
                let end = s.end.as_ref().map(|e| verify_mod::Anchor {
                    seq: e.seq,
                    chain: e.chain,
                    what: format!("sessions: the end of serve session {}", s.id),
                });
                std::iter::once(start).chain(end)
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    let r = verify_mod::verify_anchored(&a.store, &anchors)?;
    if let Some(p) = &r.problem {
        bail!(
            "{}: damaged at {p}; the {} records before it are intact (chain {})",
            a.store.display(),
            r.records,
            r.chain
        );
    }
    if !r.index_problems.is_empty() {
        bail!(
            "{}: the index does not match the log: {}",
            a.store.display(),
            r.index_problems.join("; ")
        );
    }
    if let Err(e) = sessions {
        bail!("{}: {e}", a.store.display());
    }
    if !r.anchor_problems.is_empty() {
        bail!(
            "{}: the sessions file does not match the log: {}",
            a.store.display(),
            r.anchor_problems.join("; ")
        );
    }
    println!(
        "ok: {} records, {} log bytes, chain head {}",
        r.records, r.log_bytes, r.chain
    );
    Ok(())
}

#[derive(Args)]
pub struct InfoArgs {
    pub store: PathBuf,
}

pub fn info(a: InfoArgs) -> Result<()> {
    let s = Store::open(&a.store)?;
    let h = s.header();
    let head = s.head();
    let sp = s.space()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "store:          {}", a.store.display())?;
    writeln!(out, "disk size:      {} bytes", h.size_bytes)?;
    writeln!(out, "block size:     {} bytes", h.block_size)?;
    writeln!(out, "created:        {}", format_rfc3339(h.created_ns))?;
    writeln!(out, "records:        {}", head.seq.0)?;
    if head.seq.0 > 0 {
        writeln!(
            out,
            "first time:     {}",
            format_rfc3339(s.time_of(diskhist::Seq(1))?)
        )?;
    }
    if let Some(t) = head.time_ns {
        writeln!(out, "last time:      {}", format_rfc3339(t))?;
    }
    writeln!(out, "bytes written:  {}", sp.bytes_written)?;
    writeln!(
        out,
        "bytes stored:   {} (log) + {} (index)",
        sp.log_bytes, sp.index_bytes
    )?;
    if sp.bytes_written > 0 {
        writeln!(
            out,
            "stored/written: {:.3}",
            (sp.log_bytes + sp.index_bytes) as f64 / sp.bytes_written as f64
        )?;
    }
    writeln!(out, "chain head:     {}", head.chain)?;
    match diskhist::nbd::session::read_sessions(&a.store) {
        Ok(sessions) => {
            for (i, ses) in sessions.iter().enumerate() {
                let clock = match &ses.clock {
                    Some(c) => format!(
                        "clock {} (est. error {} µs, max {} µs)",
                        if c.synchronised {
                            "synchronised"
                        } else {
                            "NOT synchronised"
                        },
                        c.est_error_us,
                        c.max_error_us
                    ),
                    None => "clock state unknown".to_string(),
                };
                let end = match &ses.end {
                    Some(e) => format!(
                        "ended {} at record {} ({})",
                        format_rfc3339(e.time),
                        e.seq.0,
                        e.reason
                    ),
                    None => "no clean end (killed or power lost)".to_string(),
                };
                writeln!(
                    out,
                    "serve session {}: started {} by diskhist {} at record {}, {}; {}",
                    i + 1,
                    format_rfc3339(ses.start),
                    ses.version,
                    ses.start_seq.0,
                    clock,
                    end
                )?;
            }
        }
        Err(e) => writeln!(out, "warning:        serve sessions: {e}")?,
    }
    if let Some(stop) = s.tail_stop() {
        writeln!(
            out,
            "warning:        log not whole from byte {} ({}): {}",
            stop.offset_bytes, stop.seq, stop.reason
        )?;
    }
    Ok(())
}
