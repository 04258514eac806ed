//! `diskhist dump STORE [--from T] [--to T]`: records as a diskhist stream.

use super::{open_store, record_range};
use anyhow::Result;
use clap::Args;
use diskhist::producers::stream;
use diskhist::units::Seq;
use std::io::BufWriter;
use std::path::PathBuf;

#[derive(Args)]
pub struct DumpArgs {
    pub store: PathBuf,
    #[arg(long)]
    pub from: Option<String>,
    #[arg(long)]
    pub to: Option<String>,
}

pub fn dump(a: DumpArgs) -> Result<()> {
    let s = open_store(&a.store)?;
    let (first, last) = record_range(&s, a.from.as_deref(), a.to.as_deref())?;
    let out = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    stream::dump(&s, Seq(first), Seq(last), out)?;
    Ok(())
}
