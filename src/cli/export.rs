//! `diskhist export STORE --at TIME [-o FILE]`: the disk at a moment as a
//! sparse raw image.

use super::{open_store, state};
use anyhow::{Context, Result};
use clap::Args;
use sha2::{Digest, Sha256};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

#[derive(Args)]
pub struct ExportArgs {
    pub store: PathBuf,
    /// The moment to export (RFC 3339, @UNIX, #SEQ, latest).
    #[arg(long)]
    pub at: String,
    /// Output image (sparse); standard output if absent.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

pub fn export(a: ExportArgs) -> Result<()> {
    let s = open_store(&a.store)?;
    let seq = state(&s, &a.at)?;
    let g = s.geometry();
    let chunk = 1usize << 20;
    let mut buf = vec![0u8; chunk];
    let mut sha = Sha256::new();
    let bs = g.block_size as usize;
    let file = match &a.output {
        Some(p) => {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(p)
                .with_context(|| format!("cannot create {}", p.display()))?;
            f.set_len(g.size_bytes)?;
            Some(f)
        }
        None => None,
    };
    let mut stdout = BufWriter::new(std::io::stdout().lock());
    let mut offset = 0u64;
    while offset < g.size_bytes {
        let n = ((g.size_bytes - offset) as usize).min(chunk);
        s.read_at(seq, offset, &mut buf[..n])?;
        sha.update(&buf[..n]);
        match &file {
            Some(f) => {
                // Write only non-zero blocks: the image stays sparse.
                for (i, block) in buf[..n].chunks(bs).enumerate() {
                    if block.iter().any(|&b| b != 0) {
                        f.write_all_at(block, offset + (i * bs) as u64)?;
                    }
                }
            }
            None => stdout.write_all(&buf[..n])?,
        }
        offset += n as u64;
    }
    stdout.flush()?;
    let hex: String = sha.finalize().iter().map(|b| format!("{b:02x}")).collect();
    match &a.output {
        Some(p) => {
            file.unwrap().sync_all()?;
            println!("{hex}  {}", p.display());
        }
        None => eprintln!("{hex}  -"),
    }
    Ok(())
}
