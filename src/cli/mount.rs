//! `diskhist mount` (owned by the FUSE work; placeholder).

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct MountArgs {
    /// The store directory.
    pub store: PathBuf,
}

pub fn run(_args: MountArgs) -> anyhow::Result<()> {
    anyhow::bail!("mount is not built yet")
}
