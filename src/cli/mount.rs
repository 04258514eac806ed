//! `diskhist mount STORE MOUNTPOINT`: the history as a read-only tree.

use anyhow::Context;
use diskhist::mount::{mount_until_unmounted, ListingLimits, MountOptions};
use diskhist::parse_size;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct MountArgs {
    /// The store directory.
    pub store: PathBuf,
    /// An existing, empty directory to mount on.
    pub mountpoint: PathBuf,
    /// Mount on a directory that is not empty (what it holds is hidden while mounted).
    #[arg(long)]
    pub nonempty: bool,
    /// Let other users read the tree (needs `user_allow_other` in /etc/fuse.conf when not root).
    #[arg(long)]
    pub allow_other: bool,
    /// Memory for decoded blocks: bytes, or with a K, M, G, T or P suffix (64M, 1G).
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = parse_size)]
    pub cache_size: u64,
    /// Threads answering the kernel, and as many reading the filesystems under files/.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: u16,
    /// Newest seconds with writes that `at/` lists one by one (older: one per hour).
    #[arg(long, value_name = "N", default_value_t = ListingLimits::default().recent_seconds)]
    pub list_seconds: usize,
}

pub fn run(args: MountArgs) -> anyhow::Result<()> {
    let opts = MountOptions {
        allow_other: args.allow_other,
        cache_bytes: args.cache_size,
        threads: usize::from(args.threads),
        nonempty: args.nonempty,
        limits: ListingLimits {
            recent_seconds: args.list_seconds,
            max_entries: ListingLimits::default()
                .max_entries
                .max(args.list_seconds.saturating_add(1)),
        },
    };
    mount_until_unmounted(&args.store, &args.mountpoint, &opts)
        .with_context(|| format!("diskhist mount {}", args.store.display()))
}
