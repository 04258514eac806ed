//! `diskhist cat STORE --at TIME [--part N] PATH`: a file's content as it
//! was at a moment, read from the store without a mount.

use super::files::{open_fs, pick_volume, resolve, volumes_at};
use super::ls::copy_file;
use super::{open_store, state};
use anyhow::{bail, Result};
use clap::Args;
use diskhist::fs::FileKind;
use std::io::{BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args)]
pub struct CatArgs {
    /// The store directory.
    pub store: PathBuf,
    /// The moment (RFC 3339, @UNIX, '#SEQ', latest).
    #[arg(long, value_name = "TIME")]
    pub at: String,
    /// The partition (as `ls --part`); leave out for a disk without a
    /// partition table.
    #[arg(long, value_name = "N")]
    pub part: Option<u32>,
    /// The file, from the filesystem's root.
    pub path: PathBuf,
}

pub fn cat(a: CatArgs) -> Result<()> {
    let store = Arc::new(open_store(&a.store)?);
    let seq = state(&store, &a.at)?;
    let vols = volumes_at(&store, seq)?;
    let vol = pick_volume(&vols, a.part)?;
    let mut fs = open_fs(&vol)?;
    let node = resolve(fs.as_mut(), a.path.as_os_str().as_bytes())?;
    let kind = fs.stat(node)?.kind;
    if kind != FileKind::File {
        bail!("{}: not a regular file", a.path.display());
    }
    let mut out = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    copy_file(fs.as_mut(), node, &mut out)?;
    out.flush()?;
    Ok(())
}
