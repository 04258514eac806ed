//! `diskhist dump STORE [--from T] [--to T] [-o FILE]`: records as a
//! diskhist stream.

use super::output::{Content, Output};
use super::progress::Progress;
use super::{open_store, record_range};
use anyhow::Result;
use clap::Args;
use diskhist::producers::stream;
use diskhist::Seq;
use std::path::PathBuf;

#[derive(Args)]
pub struct DumpArgs {
    /// The store directory.
    pub store: PathBuf,
    /// First record dumped: the first at or after this time ('#SEQ': that record).
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// Last record dumped: the last at or before this time ('#SEQ': that record).
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// Write the stream to FILE, under a temporary name renamed when
    /// complete; standard output (not a terminal) if absent.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Replace FILE if it exists (never a file inside a store).
    #[arg(long)]
    pub force: bool,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn dump(a: DumpArgs) -> Result<()> {
    let s = open_store(&a.store)?;
    let (first, last) = record_range(&s, a.from.as_deref(), a.to.as_deref())?;
    let out = Output::create(a.output.as_deref(), a.force, Content::Binary)?;
    // Counted in records: the stream's size is not known before it is written.
    let total = if first <= last { last - first + 1 } else { 0 };
    let progress = Progress::records(total, a.quiet);
    let out = stream::dump_with_progress(&s, Seq(first), Seq(last), out, &mut |n| progress.set(n))?;
    out.finish()?;
    progress.finish();
    Ok(())
}
