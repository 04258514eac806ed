//! `diskhist serve` (owned by the NBD work; placeholder).

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// The store directory.
    pub store: PathBuf,
}

pub fn run(_args: ServeArgs) -> anyhow::Result<()> {
    anyhow::bail!("serve is not built yet")
}
