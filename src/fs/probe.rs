//! What a volume holds, from magic numbers and superblock fields: which
//! filesystem (or LVM, LUKS, swap...), its label and UUID. Reads a few
//! sectors; never trusts a field further than to print it.

use super::source::Source;
use super::FsKind;

/// What [`probe`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub kind: FsKind,
    pub label: Option<String>,
    pub uuid: Option<String>,
    /// ext3/ext4: the journal holds committed transactions not yet
    /// written home (a state between two syncs); a reader that replays
    /// them shows what the kernel would after mounting.
    pub needs_recovery: bool,
}

fn read(src: &Source, offset: u64, len: usize) -> Option<Vec<u8>> {
    let mut b = vec![0u8; len];
    src.read_at(offset, &mut b).ok().map(|()| b)
}

fn text(b: &[u8]) -> Option<String> {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    let s = String::from_utf8_lossy(&b[..end]).trim_end().to_string();
    (!s.is_empty()).then_some(s)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn uuid(b: &[u8]) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        hex(&b[0..4]),
        hex(&b[4..6]),
        hex(&b[6..8]),
        hex(&b[8..10]),
        hex(&b[10..16])
    )
}

/// Identify what `src` holds.
pub fn probe(src: &Source) -> Probe {
    let unknown = Probe {
        kind: FsKind::Unknown,
        label: None,
        uuid: None,
        needs_recovery: false,
    };
    probe_ext(src)
        .or_else(|| probe_boot_sector(src))
        .or_else(|| probe_others(src))
        .unwrap_or(unknown)
}

/// ext2/3/4: the superblock at byte 1024, magic 0xEF53.
fn probe_ext(src: &Source) -> Option<Probe> {
    let sb = read(src, 1024, 1024)?;
    if sb[0x38..0x3a] != [0x53, 0xef] {
        return None;
    }
    let le32 = |at: usize| crate::le::u32_at(&sb, at);
    let (compat, incompat, ro_compat) = (le32(0x5c), le32(0x60), le32(0x64));
    const HAS_JOURNAL: u32 = 0x4;
    const RECOVER: u32 = 0x4;
    // Features an ext2/ext3 driver lacks: extents, 64bit, flex_bg,
    // huge_file, dir_nlink, extra_isize, metadata_csum.
    let ext4_only =
        incompat & (0x40 | 0x80 | 0x200) != 0 || ro_compat & (0x8 | 0x20 | 0x40 | 0x400) != 0;
    let kind = if ext4_only {
        FsKind::Ext4
    } else if compat & HAS_JOURNAL != 0 {
        FsKind::Ext3
    } else {
        FsKind::Ext2
    };
    Some(Probe {
        kind,
        label: text(&sb[0x78..0x88]),
        uuid: Some(uuid(&sb[0x68..0x78])),
        needs_recovery: incompat & RECOVER != 0,
    })
}

/// NTFS, exFAT and FAT: a boot sector at byte 0.
fn probe_boot_sector(src: &Source) -> Option<Probe> {
    let bs = read(src, 0, 512)?;
    let oem = &bs[3..11];
    if oem == b"NTFS    " {
        return Some(Probe {
            kind: FsKind::Ntfs,
            label: None,
            uuid: Some(hex(&bs[0x48..0x50]
                .iter()
                .rev()
                .copied()
                .collect::<Vec<_>>())),
            needs_recovery: false,
        });
    }
    if oem == b"EXFAT   " {
        return Some(Probe {
            kind: FsKind::ExFat,
            label: None,
            uuid: Some(hex(&bs[0x64..0x68]
                .iter()
                .rev()
                .copied()
                .collect::<Vec<_>>())),
            needs_recovery: false,
        });
    }
    if bs[510..512] != [0x55, 0xaa] {
        return None;
    }
    // FAT: a plausible BIOS parameter block, then the count of clusters
    // decides 12/16/32 (the type strings are only hints).
    let le16 = |at: usize| u16::from_le_bytes([bs[at], bs[at + 1]]) as u64;
    let le32 = |at: usize| u64::from(crate::le::u32_at(&bs, at));
    let bytes_per_sector = le16(11);
    let per_cluster = bs[13] as u64;
    let reserved = le16(14);
    let fats = bs[16] as u64;
    let root_entries = le16(17);
    let total = if le16(19) != 0 { le16(19) } else { le32(32) };
    let fat_sectors = if le16(22) != 0 { le16(22) } else { le32(36) };
    let plausible = matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096)
        && per_cluster.is_power_of_two()
        && reserved > 0
        && (1..=4).contains(&fats)
        && fat_sectors > 0
        && total > 0;
    if !plausible {
        return None;
    }
    let root_sectors = (root_entries * 32).div_ceil(bytes_per_sector);
    let data = total.checked_sub(reserved + fats * fat_sectors + root_sectors)?;
    let clusters = data / per_cluster;
    let (kind, label_at, id_at) = if clusters < 4085 {
        (FsKind::Fat12, 43, 39)
    } else if clusters < 65525 {
        (FsKind::Fat16, 43, 39)
    } else {
        (FsKind::Fat32, 71, 67)
    };
    let label = text(&bs[label_at..label_at + 11]).filter(|l| l != "NO NAME");
    let id = crate::le::u32_at(&bs, id_at);
    Some(Probe {
        kind,
        label,
        uuid: Some(format!("{:04X}-{:04X}", id >> 16, id & 0xffff)),
        needs_recovery: false,
    })
}

/// Volumes diskhist does not read, named so `info` can say what is there.
fn probe_others(src: &Source) -> Option<Probe> {
    let found = |kind, label, uuid| {
        Some(Probe {
            kind,
            label,
            uuid,
            needs_recovery: false,
        })
    };
    let head = read(src, 0, 4096)?;
    if head.starts_with(b"LUKS\xba\xbe") {
        return found(FsKind::Luks, None, text(&head[168..208]));
    }
    if head.starts_with(b"XFSB") {
        return found(
            FsKind::Xfs,
            text(&head[108..120]),
            Some(uuid(&head[32..48])),
        );
    }
    if &head[512..520] == b"LABELONE" && &head[536..544] == b"LVM2 001" {
        return found(FsKind::Lvm2, None, None);
    }
    if &head[4086..4096] == b"SWAPSPACE2" || &head[4086..4096] == b"SWAP-SPACE" {
        return found(
            FsKind::Swap,
            text(&head[1052..1068]),
            Some(uuid(&head[1036..1052])),
        );
    }
    if let Some(sb) = read(src, 0x10000, 4096) {
        if &sb[0x40..0x48] == b"_BHRfS_M" {
            return found(
                FsKind::Btrfs,
                text(&sb[0x12b..0x22b]),
                Some(uuid(&sb[0x20..0x30])),
            );
        }
    }
    if let Some(pvd) = read(src, 0x8000, 2048) {
        if &pvd[1..6] == b"CD001" {
            return found(FsKind::Iso9660, text(&pvd[40..72]), None);
        }
    }
    None
}
