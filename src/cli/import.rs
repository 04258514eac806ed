//! `diskhist import STORE IMAGE|- [--at TIME]`: record the blocks of a whole
//! image that differ from the latest state, and a mark naming the image,
//! all or nothing.

use super::progress::Progress;
use super::{stop_flag, time_arg, UsageError};
use anyhow::{bail, Context, Result};
use clap::Args;
use diskhist::producers::image::{self, ImportError, ImportSource};
use diskhist::store::Writer;
use diskhist::{format_rfc3339, now, TimeSpec};
use std::io::{BufReader, Read};
use std::path::PathBuf;

/// How far ahead of the clock `--at` may be without `--allow-future`.
const FUTURE_SLACK_NS: i64 = 60_000_000_000;

#[derive(Args)]
pub struct ImportArgs {
    /// The store directory.
    pub store: PathBuf,
    /// A raw image exactly the size of the store's disk; `-` reads it from
    /// standard input.
    pub image: PathBuf,
    /// The time to record the changes at (RFC 3339 or @UNIX; default: now).
    #[arg(long)]
    pub at: Option<String>,
    /// Accept an --at time more than a minute in the future. Every later
    /// import and recording is then held at that time.
    #[arg(long)]
    pub allow_future: bool,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn import(a: ImportArgs) -> Result<()> {
    let clock = now();
    let time = match a.at.as_deref().map(time_arg).transpose()? {
        None => clock,
        Some(TimeSpec::At(t)) => t,
        Some(_) => {
            return Err(UsageError(
                "--at takes a time (RFC 3339 or @UNIX), not #SEQ or latest".into(),
            )
            .into())
        }
    };
    if time.0 > clock.0.saturating_add(FUTURE_SLACK_NS) && !a.allow_future {
        return Err(UsageError(format!(
            "--at {} is in the future (the clock says {}); every later record would be held \
             at that time. Give --allow-future if that is really meant",
            format_rfc3339(time),
            format_rfc3339(clock)
        ))
        .into());
    }
    let stdin = a.image.as_os_str() == "-";
    let (input, label): (Box<dyn Read>, String) = if stdin {
        (Box::new(std::io::stdin().lock()), "-".to_string())
    } else {
        let f = std::fs::File::open(&a.image)
            .with_context(|| format!("cannot open {}", a.image.display()))?;
        let label = std::fs::canonicalize(&a.image)
            .unwrap_or_else(|_| a.image.clone())
            .to_string_lossy()
            .into_owned();
        (Box::new(f), label)
    };
    let mut w = Writer::open(&a.store)?;
    let disk = w.geometry().size_bytes;
    if !stdin {
        let len = std::fs::metadata(&a.image)
            .with_context(|| format!("cannot read {}", a.image.display()))?
            .len();
        if len != disk {
            bail!(
                "importing {}: {}",
                a.image.display(),
                ImportError::SizeMismatch { image: len, disk }
            );
        }
    }
    if let Some(last) = w.head().time_ns {
        if time < last {
            bail!(
                "--at {} is before the store's last record ({}); history is append-only",
                format_rfc3339(time),
                format_rfc3339(last)
            );
        }
    }
    let stop = stop_flag()?;
    let progress = Progress::bytes(disk, a.quiet);
    let report = |done: u64| progress.set(done);
    let source = ImportSource {
        path: &label,
        stop: Some(&stop),
        progress: Some(&report),
    };
    let res = image::import(
        BufReader::with_capacity(1 << 20, input),
        &mut w,
        time,
        &source,
    );
    if res.is_ok() {
        progress.finish();
    }
    drop(progress);
    w.close()?;
    let s = match res {
        Ok(s) => s,
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!(
                "importing {}: nothing was recorded, the store is as it was",
                a.image.display()
            )))
        }
    };
    match (s.first_seq, s.last_seq) {
        (Some(f), Some(l)) => eprintln!(
            "recorded {} changed extents ({} bytes) as records {}..{}, and mark {} (sha256 {})",
            s.extents, s.bytes_changed, f.0, l.0, s.mark_seq.0, s.sha256
        ),
        _ => eprintln!(
            "no block differs from the latest state; recorded mark {} (sha256 {})",
            s.mark_seq.0, s.sha256
        ),
    }
    Ok(())
}
