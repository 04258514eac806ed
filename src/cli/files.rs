//! What `ls`, `cat` and `export --part` share: the volume a command means
//! at a state (`--part N`, or the whole disk when it has no partition
//! table), its filesystem, and a path resolved inside it.

use super::UsageError;
use anyhow::{anyhow, bail, Result};
use diskhist::fs::source::StateDisk;
use diskhist::fs::volume::{self, Volume, VolumeId, Volumes};
use diskhist::fs::{FileSystem, NodeId, Source};
use diskhist::{Seq, Store};
use std::sync::Arc;

/// The volumes of `store`'s disk at `state`.
pub fn volumes_at(store: &Arc<Store>, state: Seq) -> Result<Volumes> {
    let disk = Source::new(Arc::new(StateDisk::new(store.clone(), state)));
    Ok(Volumes::read(&disk)?)
}

/// The volume `--part` names at this state (the whole disk without it).
pub fn pick_volume(vols: &Volumes, part: Option<u32>) -> Result<Volume> {
    let listing = || {
        vols.volumes
            .iter()
            .map(|v| match v.id {
                VolumeId::Partition(n) => format!("p{n}: {}", v.probe.kind.name()),
                VolumeId::WholeDisk => format!("the whole disk: {}", v.probe.kind.name()),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let id = match part {
        Some(n) => VolumeId::Partition(n),
        None if vols.table.partitions.is_empty() => VolumeId::WholeDisk,
        None => {
            return Err(UsageError(format!(
                "the disk has a partition table ({}); say which partition with --part N ({})",
                vols.table.kind.name(),
                listing()
            ))
            .into())
        }
    };
    match vols.get(id) {
        Some(v) => Ok(v.clone()),
        None if vols.table.partitions.is_empty() => Err(UsageError(format!(
            "the disk has no partition table at this state: leave out --part ({})",
            listing()
        ))
        .into()),
        None => Err(UsageError(format!(
            "no partition {} here ({})",
            part.unwrap_or(0),
            listing()
        ))
        .into()),
    }
}

/// The filesystem on `v`, or why its files cannot be read.
pub fn open_fs(v: &Volume) -> Result<Box<dyn FileSystem>> {
    volume::open_filesystem(v).map_err(|why| {
        let which = match v.id {
            VolumeId::WholeDisk => "the disk".to_string(),
            VolumeId::Partition(n) => format!("partition {n}"),
        };
        anyhow!(
            "{which} holds {}: its files cannot be read ({why})",
            v.probe.kind.name()
        )
    })
}

/// The node at `path` (`/`-separated, from the filesystem's root; empty or
/// `/` is the root), and its components.
pub fn resolve(fs: &mut dyn FileSystem, path: &[u8]) -> Result<NodeId> {
    let mut node = fs.root();
    let mut walked = Vec::new();
    for part in path
        .split(|&b| b == b'/')
        .filter(|p| !p.is_empty() && *p != b".")
    {
        if part == b".." {
            bail!("'..' is not supported in paths; give the path from the filesystem's root");
        }
        match fs.lookup(node, part)? {
            Some(e) => node = e.node,
            None => {
                walked.push(part);
                bail!(
                    "no such file or directory: /{}",
                    String::from_utf8_lossy(&walked.join(&b'/'))
                );
            }
        }
        walked.push(part);
    }
    Ok(node)
}
