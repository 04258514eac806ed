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
