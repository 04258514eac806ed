//! `diskhist import STORE IMAGE [--at TIME]`: record the blocks of a whole
//! image that differ from the latest state.

use super::{time_arg, UsageError};
use anyhow::{bail, Context, Result};
use clap::Args;
use diskhist::producers::image;
use diskhist::store::Writer;
use diskhist::time::{format_rfc3339, now, TimeSpec};
use std::io::BufReader;
use std::path::PathBuf;

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
