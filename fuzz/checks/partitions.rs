//! `diskhist::fs` partition tables and volume probing on hostile disks:
//! the input is the start of a disk (padded to at least 64 KiB). Never
//! panics; finishes in bounded work; numbers partitions as Linux does
//! (MBR primaries 1–4 by slot, logicals from 5 in chain order; GPT entry
//! index + 1), each partition inside the disk or reported unreadable.

use diskhist::fs::part::{TableKind, MAX_EBRS};
use diskhist::fs::source::MemDisk;
use diskhist::fs::volume::{VolumeId, Volumes};
use diskhist::fs::Source;
use std::sync::Arc;

/// Run every check of this target on one input; panics on a failure.
pub fn check(data: &[u8]) {
    let mut disk = data.to_vec();
    if disk.len() < 64 << 10 {
        disk.resize(64 << 10, 0);
    }
    let len = disk.len() as u64;
    let src = Source::new(Arc::new(MemDisk(disk)));
    let vols = Volumes::read(&src).expect("an in-memory disk reads");
    let t = &vols.table;
    assert!(
        t.warnings.len() <= MAX_EBRS + 8,
        "{} warnings",
        t.warnings.len()
    );
    match t.kind {
        TableKind::None => {
            assert!(t.partitions.is_empty());
            assert_eq!(vols.volumes.len(), 1);
            assert_eq!(vols.volumes[0].id, VolumeId::WholeDisk);
        }
        TableKind::Mbr => {
            let mut last_logical = 4;
            for p in &t.partitions {
                if p.number <= 4 {
                    assert!(p.number >= 1);
                } else {
                    assert_eq!(p.number, last_logical + 1, "logicals count on from 5");
                    last_logical = p.number;
                }
            }
            assert!(last_logical <= 4 + MAX_EBRS as u32 * 4);
        }
        TableKind::Gpt { .. } => {
            let numbers: Vec<u32> = t.partitions.iter().map(|p| p.number).collect();
            assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
            for p in &t.partitions {
                assert!(p.start_bytes.saturating_add(p.len_bytes) <= len, "{p:?}");
            }
        }
    }
    for v in &vols.volumes {
        assert!(v.source.len_bytes() <= len);
        let _ = v.probe.kind.name();
    }
    let described = vols.describe(|_| Err("not opened in the fuzz target".into()));
    assert!(described.starts_with("partition_table: "), "{described}");
}
