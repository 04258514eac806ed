//! `diskhist export STORE --at TIME [-o FILE] [--force] [--quiet]`: the disk
//! at a moment as a raw image, sparse when written to a file.

use super::output::{Content, Output};
use super::progress::Progress;
use super::{open_store, state};
use anyhow::Result;
use clap::Args;
use sha2::{Digest, Sha256};
use std::path::PathBuf;

#[derive(Args)]
pub struct ExportArgs {
    /// The store directory.
    pub store: PathBuf,
    /// The moment to export (RFC 3339, @UNIX, '#SEQ', latest).
    #[arg(long, value_name = "TIME")]
    pub at: String,
    /// Output image (sparse), written under a temporary name and renamed
    /// when complete; standard output (not a terminal) if absent.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Replace FILE if it exists (never a file inside a store).
    #[arg(long)]
    pub force: bool,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn export(a: ExportArgs) -> Result<()> {
    let s = open_store(&a.store)?;
    let seq = state(&s, &a.at)?;
    let g = s.geometry();
    let mut out = Output::create(a.output.as_deref(), a.force, Content::Binary)?;
    let progress = Progress::bytes(g.size_bytes, a.quiet);
    let chunk = 1usize << 20;
    let mut buf = vec![0u8; chunk];
    let mut sha = Sha256::new();
    let mut offset = 0u64;
    while offset < g.size_bytes {
        let n = ((g.size_bytes - offset) as usize).min(chunk);
        s.read_at(seq, offset, &mut buf[..n])?;
        sha.update(&buf[..n]);
        out.write_sparse(&buf[..n], g.block_size as usize)?;
        offset += n as u64;
        progress.set(offset);
    }
    let name = out.name().to_string();
    out.finish()?;
    progress.finish();
    let hex: String = sha.finalize().iter().map(|b| format!("{b:02x}")).collect();
    match &a.output {
        Some(_) => println!("{hex}  {name}"),
        None => eprintln!("{hex}  -"),
    }
    Ok(())
}
