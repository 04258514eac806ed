//! Partition tables: MBR (four primaries, the first extended partition's
//! chain of EBRs holding the logical partitions) and GPT (header and entry
//! array, each CRC-checked, the backup used when the primary is bad),
//! numbered as Linux numbers them: MBR primaries 1–4 by slot, logicals from
//! 5 in chain order; GPT entries by index from 1.
//!
//! Written by hand rather than with `mbrman`/`gpt`: those fail the whole
//! table on one looping EBR, panic on a legal GPT entry size of 256, or
//! allocate what a hostile header claims. Here a damaged table costs a
//! warning and the partitions found so far, in bounded time and memory:
//! at most [`MAX_EBRS`] EBRs (each visited once), a GPT entry array of at
//! most [`MAX_GPT_ARRAY_BYTES`].

use super::source::Source;
use std::collections::HashSet;
use std::io;

/// Bytes per sector of a partition table (the tables' own unit).
pub const SECTOR_BYTES: u64 = 512;
/// Most EBRs followed in one extended partition (Linux stops at 100).
pub const MAX_EBRS: usize = 128;
/// Largest GPT partition-entry array read.
pub const MAX_GPT_ARRAY_BYTES: u64 = 1 << 20;

/// One partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Linux's number: `p<number>` in the mount.
    pub number: u32,
    pub start_bytes: u64,
    pub len_bytes: u64,
    /// MBR type byte (`0x83`) or GPT type GUID, as text.
    pub type_id: String,
    /// GPT partition name; empty on MBR.
    pub name: String,
    /// An MBR extended partition: a container of logical partitions, not
    /// a volume.
    pub container: bool,
}

/// What kind of table a disk holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// No table: the disk may be one filesystem.
    None,
    Mbr,
    /// GPT; `used_backup` when the primary header or its array was bad.
    Gpt {
        used_backup: bool,
    },
}

/// A disk's partition table as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionTable {
    pub kind: TableKind,
    pub partitions: Vec<Partition>,
    /// What was wrong with the table (the partitions found are kept).
    pub warnings: Vec<String>,
}

impl TableKind {
    pub fn name(self) -> &'static str {
        match self {
            TableKind::None => "none",
            TableKind::Mbr => "mbr",
            TableKind::Gpt { .. } => "gpt",
        }
    }
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    crate::le::u32_at(b, at)
}

fn le64(b: &[u8], at: usize) -> u64 {
    crate::le::u64_at(b, at)
}

fn guid_text(b: &[u8]) -> String {
    format!(
        "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{}",
        le32(b, 0),
        le16(b, 4),
        le16(b, 6),
        b[8],
        b[9],
        b[10..16]
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<String>()
    )
}

/// One of the four slots of an MBR or EBR.
struct Slot {
    boot: u8,
    type_byte: u8,
    start_sector: u32,
    sectors: u32,
}

fn slots(sector: &[u8]) -> [Slot; 4] {
    std::array::from_fn(|i| {
        let at = 446 + 16 * i;
        Slot {
            boot: sector[at],
            type_byte: sector[at + 4],
            start_sector: le32(sector, at + 8),
            sectors: le32(sector, at + 12),
        }
    })
}

fn is_extended(type_byte: u8) -> bool {
    matches!(type_byte, 0x05 | 0x0f | 0x85)
}

/// Read the partition table of `disk`.
pub fn read_table(disk: &Source) -> io::Result<PartitionTable> {
    let mut table = PartitionTable {
        kind: TableKind::None,
        partitions: Vec::new(),
        warnings: Vec::new(),
    };
    if disk.len_bytes() < SECTOR_BYTES {
        return Ok(table);
    }
    let mut s0 = [0u8; SECTOR_BYTES as usize];
    disk.read_at(0, &mut s0)?;
    if s0[510..512] != [0x55, 0xaa] {
        return Ok(table);
    }
    let slots0 = slots(&s0);
    // A boot flag other than 0 or 0x80 is no MBR: e.g. the boot sector of
    // a FAT or NTFS filesystem that fills the whole disk.
    if slots0.iter().any(|s| s.boot != 0 && s.boot != 0x80) {
        return Ok(table);
    }
    if slots0.iter().any(|s| s.type_byte == 0xee) {
        read_gpt(disk, &mut table)?;
        return Ok(table);
    }
    read_mbr(disk, &slots0, &mut table);
    Ok(table)
}

fn read_mbr(disk: &Source, slots0: &[Slot; 4], table: &mut PartitionTable) {
    let disk_sectors = disk.len_bytes() / SECTOR_BYTES;
    for (i, s) in slots0.iter().enumerate() {
        if s.type_byte == 0 || s.sectors == 0 {
            continue;
        }
        let (start, len) = (u64::from(s.start_sector), u64::from(s.sectors));
        if start == 0 || start + len > disk_sectors {
            table
                .warnings
                .push(format!("partition {} runs outside the disk", i + 1));
        }
        table.partitions.push(Partition {
            number: i as u32 + 1,
            start_bytes: start * SECTOR_BYTES,
            len_bytes: len * SECTOR_BYTES,
            type_id: format!("{:#04x}", s.type_byte),
            name: String::new(),
            container: is_extended(s.type_byte),
        });
    }
    if table.partitions.is_empty() {
        return;
    }
    table.kind = TableKind::Mbr;
    // The first extended partition only, as Linux.
    if let Some(ext) = slots0
        .iter()
        .find(|s| is_extended(s.type_byte) && s.sectors != 0)
    {
        read_logicals(disk, u64::from(ext.start_sector), table);
    }
}

/// Follow the EBR chain of the extended partition at `ext_start`.
fn read_logicals(disk: &Source, ext_start: u64, table: &mut PartitionTable) {
    let mut next = ext_start;
    let mut seen = HashSet::new();
    let mut number = 5;
    loop {
        if !seen.insert(next) {
            table
                .warnings
                .push(format!("the chain of EBRs loops at sector {next}"));
            return;
        }
        if seen.len() > MAX_EBRS {
            table
                .warnings
                .push(format!("more than {MAX_EBRS} EBRs; the rest are ignored"));
            return;
        }
        let mut s = [0u8; SECTOR_BYTES as usize];
        let read = next
            .checked_mul(SECTOR_BYTES)
            .is_some_and(|at| disk.read_at(at, &mut s).is_ok());
        if !read || s[510..512] != [0x55, 0xaa] {
            table
                .warnings
                .push(format!("no valid EBR at sector {next}"));
            return;
        }
        let mut link = None;
        for slot in slots(&s).iter() {
            if slot.sectors == 0 || slot.type_byte == 0 {
                continue;
            }
            if is_extended(slot.type_byte) {
                link.get_or_insert(ext_start + u64::from(slot.start_sector));
            } else {
                table.partitions.push(Partition {
                    number,
                    start_bytes: (next + u64::from(slot.start_sector)) * SECTOR_BYTES,
                    len_bytes: u64::from(slot.sectors) * SECTOR_BYTES,
                    type_id: format!("{:#04x}", slot.type_byte),
                    name: String::new(),
                    container: false,
                });
                number += 1;
            }
        }
        match link {
            Some(l) => next = l,
            None => return,
        }
    }
}

/// A checked GPT header at `lba` and its entry array.
fn gpt_header(disk: &Source, lba: u64, warnings: &mut Vec<String>) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut h = [0u8; SECTOR_BYTES as usize];
    disk.read_at(lba.checked_mul(SECTOR_BYTES)?, &mut h).ok()?;
    if &h[0..8] != b"EFI PART" {
        warnings.push(format!("no GPT header at LBA {lba}"));
        return None;
    }
    let header_len = le32(&h, 12) as usize;
    if !(92..=512).contains(&header_len) {
        warnings.push(format!(
            "GPT header at LBA {lba}: impossible size {header_len}"
        ));
        return None;
    }
    let mut crc_input = h[..header_len].to_vec();
    crc_input[16..20].fill(0);
    if crc32fast::hash(&crc_input) != le32(&h, 16) {
        warnings.push(format!("GPT header at LBA {lba}: checksum mismatch"));
        return None;
    }
    if le64(&h, 24) != lba {
        warnings.push(format!(
            "GPT header at LBA {lba} says it is at LBA {}",
            le64(&h, 24)
        ));
        return None;
    }
    let (array_lba, count, entry_len) = (
        le64(&h, 72),
        u64::from(le32(&h, 80)),
        u64::from(le32(&h, 84)),
    );
    if entry_len < 128
        || entry_len % 8 != 0
        || count
            .checked_mul(entry_len)
            .is_none_or(|b| b > MAX_GPT_ARRAY_BYTES)
    {
        warnings.push(format!(
            "GPT header at LBA {lba}: entry array of {count} x {entry_len} bytes refused"
        ));
        return None;
    }
    let mut array = vec![0u8; (count * entry_len) as usize];
    disk.read_at(array_lba.checked_mul(SECTOR_BYTES)?, &mut array)
        .ok()?;
    if crc32fast::hash(&array) != le32(&h, 88) {
        warnings.push(format!(
            "GPT entry array of the header at LBA {lba}: checksum mismatch"
        ));
        return None;
    }
    Some((h.to_vec(), array))
}

fn read_gpt(disk: &Source, table: &mut PartitionTable) -> io::Result<()> {
    let last_lba = disk.len_bytes() / SECTOR_BYTES - 1;
    let mut used_backup = false;
    let mut found = gpt_header(disk, 1, &mut table.warnings);
    if found.is_none() {
        used_backup = true;
        found = gpt_header(disk, last_lba, &mut table.warnings);
    }
    table.kind = TableKind::Gpt { used_backup };
    let Some((h, array)) = found else {
        table
            .warnings
            .push("a protective MBR, but no valid GPT header".into());
        return Ok(());
    };
    let entry_len = le32(&h, 84) as usize;
    for (i, e) in array.chunks_exact(entry_len).enumerate() {
        if e[0..16].iter().all(|&b| b == 0) {
            continue;
        }
        let (first, last) = (le64(e, 32), le64(e, 40));
        if last < first || last > last_lba {
            table
                .warnings
                .push(format!("GPT entry {} lies outside the disk", i + 1));
            continue;
        }
        let name: Vec<u16> = e[56..128]
            .chunks_exact(2)
            .map(|x| u16::from_le_bytes([x[0], x[1]]))
            .take_while(|&u| u != 0)
            .collect();
        table.partitions.push(Partition {
            number: i as u32 + 1,
            start_bytes: first * SECTOR_BYTES,
            len_bytes: (last - first + 1) * SECTOR_BYTES,
            type_id: guid_text(&e[0..16]),
            name: String::from_utf16_lossy(&name),
            container: false,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::source::MemDisk;
    use std::sync::Arc;

    const MIB: usize = 1 << 20;

    fn put_slot(sector: &mut [u8], i: usize, type_byte: u8, start: u32, sectors: u32) {
        let at = 446 + 16 * i;
        sector[at + 4] = type_byte;
        sector[at + 8..at + 12].copy_from_slice(&start.to_le_bytes());
        sector[at + 12..at + 16].copy_from_slice(&sectors.to_le_bytes());
        sector[510] = 0x55;
        sector[511] = 0xaa;
    }

    fn table_of(disk: Vec<u8>) -> PartitionTable {
        read_table(&Source::new(Arc::new(MemDisk(disk)))).unwrap()
    }

    /// p1 primary, p2 extended holding two logicals (p5, p6), as sfdisk
    /// lays them out: each EBR's second slot links to the next EBR,
    /// relative to the extended partition's start.
    fn mbr_with_logicals() -> Vec<u8> {
        let mut d = vec![0u8; 16 * MIB];
        put_slot(&mut d[..512], 0, 0x83, 2048, 4096);
        put_slot(&mut d[..512], 1, 0x05, 8192, 16384);
        let ebr1 = 8192 * 512;
        put_slot(&mut d[ebr1..ebr1 + 512], 0, 0x83, 2048, 2048);
        put_slot(&mut d[ebr1..ebr1 + 512], 1, 0x05, 6144, 8192);
        let ebr2 = (8192 + 6144) * 512;
        put_slot(&mut d[ebr2..ebr2 + 512], 0, 0x0c, 2048, 4096);
        d
    }

    #[test]
    fn mbr_logicals_are_numbered_from_5() {
        let t = table_of(mbr_with_logicals());
        assert_eq!(t.kind, TableKind::Mbr);
        assert!(t.warnings.is_empty(), "{:?}", t.warnings);
        let got: Vec<(u32, u64, u64, bool)> = t
            .partitions
            .iter()
            .map(|p| {
                (
                    p.number,
                    p.start_bytes / 512,
                    p.len_bytes / 512,
                    p.container,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (1, 2048, 4096, false),
                (2, 8192, 16384, true),
                (5, 8192 + 2048, 2048, false),
                (6, 8192 + 6144 + 2048, 4096, false)
            ]
        );
    }

    #[test]
    fn a_looping_ebr_chain_costs_a_warning_not_the_table() {
        let mut d = mbr_with_logicals();
        // The second EBR links back to the first.
        let ebr2 = (8192 + 6144) * 512;
        put_slot(&mut d[ebr2..ebr2 + 512], 1, 0x05, 0, 8192);
        let t = table_of(d);
        assert_eq!(t.partitions.len(), 4, "{:?}", t.partitions);
        assert!(
            t.warnings.iter().any(|w| w.contains("loops")),
            "{:?}",
            t.warnings
        );
    }

    #[test]
    fn a_whole_disk_filesystem_boot_sector_is_no_table() {
        let mut d = vec![0u8; MIB];
        d[510] = 0x55;
        d[511] = 0xaa;
        d[446] = 0x3c; // boot code where a boot flag would be
        assert_eq!(table_of(d).kind, TableKind::None);
    }

    /// A GPT disk: protective MBR, primary header at LBA 1 and backup at
    /// the last LBA, each with its own entry array, CRCs right.
    fn gpt_disk(entry_len: u32, entries: u32) -> Vec<u8> {
        let sectors = 8192u64;
        let mut d = vec![0u8; (sectors * 512) as usize];
        put_slot(&mut d[..512], 0, 0xee, 1, (sectors - 1) as u32);
        let array_bytes = (entry_len * entries) as usize;
        let mut array = vec![0u8; array_bytes];
        let name: Vec<u8> = "data"
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect();
        for (i, (first, last)) in [(2048u64, 4095u64), (4096, 6143)].iter().enumerate() {
            let e = &mut array[i * entry_len as usize..(i + 1) * entry_len as usize];
            e[0..16].copy_from_slice(&[0xaf; 16]);
            e[16..32].copy_from_slice(&[i as u8 + 1; 16]);
            e[32..40].copy_from_slice(&first.to_le_bytes());
            e[40..48].copy_from_slice(&last.to_le_bytes());
            e[56..56 + name.len()].copy_from_slice(&name);
        }
        let array_crc = crc32fast::hash(&array);
        let array_sectors = (array_bytes as u64).div_ceil(512);
        for (my, alt, array_lba) in [
            (1, sectors - 1, 2),
            (sectors - 1, 1, sectors - 1 - array_sectors),
        ] {
            let mut h = [0u8; 92];
            h[0..8].copy_from_slice(b"EFI PART");
            h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
            h[12..16].copy_from_slice(&92u32.to_le_bytes());
            h[24..32].copy_from_slice(&my.to_le_bytes());
            h[32..40].copy_from_slice(&alt.to_le_bytes());
            h[72..80].copy_from_slice(&array_lba.to_le_bytes());
            h[80..84].copy_from_slice(&entries.to_le_bytes());
            h[84..88].copy_from_slice(&entry_len.to_le_bytes());
            h[88..92].copy_from_slice(&array_crc.to_le_bytes());
            let crc = crc32fast::hash(&h);
            h[16..20].copy_from_slice(&crc.to_le_bytes());
            let at = (my * 512) as usize;
            d[at..at + 92].copy_from_slice(&h);
            let at = (array_lba * 512) as usize;
            d[at..at + array_bytes].copy_from_slice(&array);
        }
        d
    }

    #[test]
    fn gpt_entries_in_order_with_names() {
        for entry_len in [128, 256] {
            let t = table_of(gpt_disk(entry_len, 128));
            assert_eq!(t.kind, TableKind::Gpt { used_backup: false });
            assert!(t.warnings.is_empty(), "{:?}", t.warnings);
            let got: Vec<(u32, u64, u64, &str)> = t
                .partitions
                .iter()
                .map(|p| {
                    (
                        p.number,
                        p.start_bytes / 512,
                        p.len_bytes / 512,
                        p.name.as_str(),
                    )
                })
                .collect();
            assert_eq!(got, [(1, 2048, 2048, "data"), (2, 4096, 2048, "data")]);
            assert_eq!(
                t.partitions[0].type_id,
                "afafafaf-afaf-afaf-afaf-afafafafafaf"
            );
        }
    }

    #[test]
    fn a_bad_primary_gpt_falls_back_to_the_backup_and_two_bad_give_nothing() {
        let mut d = gpt_disk(128, 128);
        d[512 + 40] ^= 1; // the primary header, under its CRC
        let t = table_of(d.clone());
        assert_eq!(t.kind, TableKind::Gpt { used_backup: true });
        assert_eq!(t.partitions.len(), 2);
        assert!(
            t.warnings[0].contains("checksum mismatch"),
            "{:?}",
            t.warnings
        );
        let last = d.len() - 512;
        d[last + 40] ^= 1;
        let t = table_of(d);
        assert!(t.partitions.is_empty());
        assert!(
            t.warnings.iter().any(|w| w.contains("no valid GPT")),
            "{:?}",
            t.warnings
        );
    }

    #[test]
    fn a_gpt_claiming_a_huge_entry_array_is_refused_without_allocating_it() {
        let mut d = gpt_disk(128, 128);
        // 2^28 entries, with a recomputed header CRC: legal framing, absurd size.
        let h = 512;
        d[h + 80..h + 84].copy_from_slice(&(1u32 << 28).to_le_bytes());
        d[h + 16..h + 20].fill(0);
        let crc = crc32fast::hash(&d[h..h + 92]);
        d[h + 16..h + 20].copy_from_slice(&crc.to_le_bytes());
        let t = table_of(d);
        assert!(t.warnings[0].contains("refused"), "{:?}", t.warnings);
        // The backup is intact.
        assert_eq!(t.kind, TableKind::Gpt { used_backup: true });
        assert_eq!(t.partitions.len(), 2);
    }
}
