//! A state's partitions and volumes as the mount reads them: the disk
//! through the mount's block cache (so that a filesystem reader's many
//! small metadata reads hit memory), which partitions get a `p<N>.img`,
//! and how a volume's filesystem is opened.

use super::cache::BlockCache;
use crate::fs::part::Partition;
use crate::fs::source::{ReadAt, Source};
use crate::fs::volume::{open_filesystem, Volume, Volumes};
use crate::fs::FileSystem;
use crate::store::Store;
use crate::units::Seq;
use std::io;
use std::sync::Arc;

/// Opens the filesystem on a volume, or says why its files cannot be
/// shown. The mount uses [`open_filesystem`]; tests plug in their own.
pub type Opener = Arc<dyn Fn(&Volume) -> Result<Box<dyn FileSystem>, String> + Send + Sync>;

/// The readers diskhist has ([`open_filesystem`]).
pub fn default_opener() -> Opener {
    Arc::new(open_filesystem)
}

/// The disk of one state, read through the mount's block cache.
pub struct CachedDisk {
    pub store: Arc<Store>,
    pub cache: Arc<BlockCache>,
    pub state: Seq,
}

impl ReadAt for CachedDisk {
    fn read_at(&self, offset_bytes: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = offset_bytes.checked_add(buf.len() as u64);
        if end.is_none_or(|end| end > self.len_bytes()) {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{} bytes at {offset_bytes} run past the end of the disk",
                    buf.len()
                ),
            ));
        }
        self.cache
            .read_into(&self.store, self.state, offset_bytes, buf)
            .map_err(io::Error::other)
    }

    fn len_bytes(&self) -> u64 {
        self.store.geometry().size_bytes
    }
}

/// One state's table and volumes, and the partitions it shows.
pub struct StateVolumes {
    pub volumes: Volumes,
    /// Every partition of the table that starts inside the disk, in table
    /// order, cut at the end of the disk as Linux cuts it; extended
    /// containers included (their bytes hold the logical partitions' EBRs
    /// and whatever lies between them).
    pub partitions: Vec<Partition>,
}

impl StateVolumes {
    /// Read the table of `state` and probe its volumes.
    pub fn read(store: &Arc<Store>, cache: &Arc<BlockCache>, state: Seq) -> io::Result<Self> {
        let disk = Arc::new(CachedDisk {
            store: store.clone(),
            cache: cache.clone(),
            state,
        });
        let disk_bytes = disk.len_bytes();
        let volumes = Volumes::read(&Source::new(disk))?;
        let partitions = volumes
            .table
            .partitions
            .iter()
            .filter(|p| p.start_bytes < disk_bytes)
            .map(|p| Partition {
                len_bytes: p.len_bytes.min(disk_bytes - p.start_bytes),
                ..p.clone()
            })
            .collect();
        Ok(StateVolumes {
            volumes,
            partitions,
        })
    }

    /// Partition `number` as shown, if the state has it.
    pub fn partition(&self, number: u32) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.number == number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Op, OpFlags, Writer};
    use crate::units::TimeNs;

    /// An MBR whose second partition runs past the end of a 1 MiB disk
    /// and whose third starts beyond it: Linux cuts the one and drops the
    /// other.
    #[test]
    fn partitions_are_cut_at_the_end_of_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        Writer::init(dir.path(), 1 << 20, 4096).unwrap();
        let mut w = Writer::open(dir.path()).unwrap();
        let mut mbr = vec![0u8; 512];
        for (slot, (start, len)) in [(64u32, 64u32), (1024, 4096), (4096, 8)]
            .into_iter()
            .enumerate()
        {
            let at = 446 + 16 * slot;
            mbr[at + 4] = 0x83;
            mbr[at + 8..at + 12].copy_from_slice(&start.to_le_bytes());
            mbr[at + 12..at + 16].copy_from_slice(&len.to_le_bytes());
        }
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        let op = Op::Write {
            offset_bytes: 0,
            data: &mbr,
        };
        w.append(TimeNs(1), op, OpFlags::default()).unwrap();
        w.close().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let cache = Arc::new(BlockCache::new(store.geometry(), 1 << 20));
        let v = StateVolumes::read(&store, &cache, Seq(1)).unwrap();
        let shown: Vec<_> = v
            .partitions
            .iter()
            .map(|p| (p.number, p.start_bytes, p.len_bytes))
            .collect();
        assert_eq!(
            shown,
            [
                (1, 64 * 512, 64 * 512),
                (2, 1024 * 512, (1 << 20) - 1024 * 512)
            ]
        );
        assert!(v.partition(3).is_none());
    }
}
