//! The view's glue on hostile disks: the partition table and volume probe,
//! then every volume opened with its filesystem reader (ext2/3/4, NTFS,
//! FAT) and walked as the mount and `diskhist ls`/`cat` walk it: list,
//! look up, stat, read, read links, extended attributes. Never panics (the
//! readers' own `catch_unwind` included: a panic that escapes is a
//! failure); finishes in bounded work (libFuzzer's timeout catches a
//! hang); and what it answers hangs together:
//!
//! - every name a listing gives, looked up in the same directory, is
//!   found under that name (or the lookup fails as damage), never "no
//!   such file";
//! - a read never returns more than asked, nothing at or past the end of
//!   the file, and the same bytes when asked twice;
//! - a listing holds no more than the readers' caps allow.
//!
//! The input is a sparse disk: its length (u64, little-endian, clamped to
//! 40 MiB), then chunks of (offset u64, length u32, bytes), so that a seed
//! can be a whole FAT32 volume (32 MiB, nearly all zero) in a few KiB.
//! Seeds: fuzz/make-files-seeds.sh.

use diskhist::fs::source::MemDisk;
use diskhist::fs::volume::{open_filesystem, Volumes};
use diskhist::fs::{FileKind, FileSystem, NodeId, Source};
use std::sync::Arc;

const MAX_DISK: u64 = 40 << 20;
/// Nodes visited per volume, directory depth, entries looked at per listing.
const MAX_NODES: usize = 400;
const MAX_DEPTH: usize = 12;
const MAX_ENTRIES: usize = 64;
const READ_LEN: usize = 8192;

/// The disk an input describes.
pub fn disk(data: &[u8]) -> Vec<u8> {
    let Some((len, mut rest)) = data.split_first_chunk::<8>() else {
        return vec![0; 64 << 10];
    };
    let len = u64::from_le_bytes(*len).clamp(64 << 10, MAX_DISK) as usize;
    let mut disk = vec![0u8; len];
    while let Some((head, body)) = rest.split_first_chunk::<12>() {
        let offset = u64::from_le_bytes(head[..8].try_into().unwrap());
        let n = u32::from_le_bytes(head[8..].try_into().unwrap()) as usize;
        let n = n.min(body.len());
        if let Ok(offset) = usize::try_from(offset) {
            if offset < len {
                let end = offset.saturating_add(n).min(len);
                disk[offset..end].copy_from_slice(&body[..end - offset]);
            }
        }
        rest = &body[n..];
    }
    disk
}

/// Run every check of this target on one input; panics on a failure.
pub fn check(data: &[u8]) {
    let src = Source::new(Arc::new(MemDisk(disk(data))));
    let vols = Volumes::read(&src).expect("an in-memory disk reads");
    for volume in &vols.volumes {
        if let Ok(mut fs) = open_filesystem(volume) {
            let _ = fs.label();
            let _ = fs.notes();
            let mut budget = MAX_NODES;
            let root = fs.root();
            walk(fs.as_mut(), root, 0, &mut budget);
        }
    }
    let described = vols.describe(|v| open_filesystem(v).map(|_| "available".into()));
    assert!(described.starts_with("partition_table: "), "{described}");
}

fn walk(fs: &mut dyn FileSystem, dir: NodeId, depth: usize, budget: &mut usize) {
    let Ok(entries) = fs.list(dir) else { return };
    for entry in entries.iter().take(MAX_ENTRIES) {
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        match fs.lookup(dir, &entry.name) {
            Ok(Some(found)) => assert_eq!(found.name, entry.name, "lookup gave another name"),
            Ok(None) => panic!("{:?} is listed but not found", entry.name),
            Err(_) => {}
        }
        let _ = fs.xattrs(entry.node);
        let Ok(stat) = fs.stat(entry.node) else {
            continue;
        };
        match stat.kind {
            FileKind::File => reads(fs, entry.node, stat.size),
            FileKind::Symlink => {
                let _ = fs.read_link(entry.node);
            }
            FileKind::Dir if entry.kind == FileKind::Dir && depth < MAX_DEPTH => {
                walk(fs, entry.node, depth + 1, budget)
            }
            _ => {}
        }
    }
}

fn reads(fs: &mut dyn FileSystem, node: NodeId, size: u64) {
    let mut first = vec![0u8; READ_LEN];
    // Errors are allowed (damage; blocks past the disk's end are Io).
    let Ok(n) = fs.read(node, 0, &mut first) else {
        return;
    };
    assert!(n <= READ_LEN);
    assert!(n as u64 <= size, "read {n} bytes of a {size}-byte file");
    if (n as u64) < size.min(READ_LEN as u64) {
        panic!("read {n} bytes at 0 of a {size}-byte file: short before the end");
    }
    let mut again = vec![0u8; READ_LEN];
    if let Ok(m) = fs.read(node, 0, &mut again) {
        assert_eq!(m, n, "two reads of the same range differ in length");
        assert!(
            first[..n] == again[..m],
            "two reads of the same range differ"
        );
    }
    let mut past = [0u8; 16];
    if let Ok(m) = fs.read(node, size, &mut past) {
        assert_eq!(m, 0, "read {m} bytes at the end of a {size}-byte file");
    }
    if size > 1 {
        // The last bytes, where a file's length and its blocks must agree.
        let mut tail = [0u8; 2];
        if let Ok(m) = fs.read(node, size - 1, &mut tail) {
            assert_eq!(m, 1, "one byte left at {} of {size}", size - 1);
        }
    }
}
