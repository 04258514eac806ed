//! `diskhist export STORE --at TIME [-o FILE] [--force] [--quiet]`: the disk
//! at a moment as a raw image, sparse when written to a file.

use super::output::{Content, Output};
use super::progress::Progress;
use super::{files, open_store, state};
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
    /// Only this partition's bytes (numbered as Linux numbers them), as
    /// its table at TIME gives them.
    #[arg(long, value_name = "N")]
    pub part: Option<u32>,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn export(a: ExportArgs) -> Result<()> {
    let s = std::sync::Arc::new(open_store(&a.store)?);
    let seq = state(&s, &a.at)?;
    let g = s.geometry();
    // The whole disk, or one partition's extent of it at this state.
    let (start, len) = match a.part {
        None => (0, g.size_bytes),
        Some(n) => {
            let vols = files::volumes_at(&s, seq)?;
            let p = vols
                .table
                .partitions
                .iter()
                .find(|p| p.number == n)
                .ok_or_else(|| {
                    super::UsageError(format!(
                        "no partition {n} in the disk's {} partition table at this state",
                        vols.table.kind.name()
                    ))
                })?;
            if p.start_bytes
                .checked_add(p.len_bytes)
                .is_none_or(|e| e > g.size_bytes)
            {
                anyhow::bail!("partition {n} runs past the end of the disk");
            }
            (p.start_bytes, p.len_bytes)
        }
    };
    let mut out = Output::create(a.output.as_deref(), a.force, Content::Binary)?;
    let progress = Progress::bytes(len, a.quiet);
    let chunk = 1usize << 20;
    let mut buf = vec![0u8; chunk];
    let mut sha = Sha256::new();
    let mut done = 0u64;
    while done < len {
        let n = ((len - done) as usize).min(chunk);
        s.read_at(seq, start + done, &mut buf[..n])?;
        sha.update(&buf[..n]);
        out.write_sparse(&buf[..n], g.block_size as usize)?;
        done += n as u64;
        progress.set(done);
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
