//! `diskhist init STORE --size SIZE [--block-size N]`: a new, empty store.

use super::UsageError;
use anyhow::{Context, Result};
use clap::Args;
use diskhist::parse_size;
use diskhist::store::Writer;
use std::path::PathBuf;

#[derive(Args)]
pub struct InitArgs {
    /// The store directory (new or empty).
    pub store: PathBuf,
    /// Disk size: bytes, or with a K, M, G, T or P suffix (powers of 1024:
    /// 64M, 10G), a multiple of the block size.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub size: u64,
    /// Block size in bytes (K suffix too): a power of two from 512 to 65536.
    #[arg(long, value_name = "N", default_value = "4096", value_parser = parse_size)]
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
