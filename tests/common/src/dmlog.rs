//! Writing a dm-log-writes log (version 1) the way the kernel target does:
//! a super block whose entry count may lag behind, then entry headers, each
//! followed by its data; and the reference replay of its entries.
//!
//! ```text
//! super block (one sector): magic u64 | version u64 = 1 | nr_entries u64 | sector_size u32
//! entry header (one sector): sector u64 | nr_sectors u64 | flags u64 | data_len u64 | mark name
//! ```
//!
//! Little-endian, every field; the rest of each sector zero.

const MAGIC: u64 = 0x006a_7366_7773_6872;
pub const FLUSH: u64 = 1;
pub const FUA: u64 = 2;
pub const DISCARD: u64 = 4;
pub const MARK: u64 = 8;

/// One entry, as the reference replay needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// `data` (whole sectors) written at `sector`.
    Write {
        sector: u64,
        data: Vec<u8>,
        flags: u64,
    },
    Discard {
        sector: u64,
        nr_sectors: u64,
    },
    Flush,
    Mark(String),
}

/// The super block of a log of `sector_size`-byte sectors counting
/// `nr_entries` entries.
pub fn super_block(sector_size: usize, nr_entries: u64) -> Vec<u8> {
    let mut b = vec![0u8; sector_size];
    b[0..8].copy_from_slice(&MAGIC.to_le_bytes());
    b[8..16].copy_from_slice(&1u64.to_le_bytes());
    b[16..24].copy_from_slice(&nr_entries.to_le_bytes());
    b[24..28].copy_from_slice(&(sector_size as u32).to_le_bytes());
    b
}

/// The bytes of one entry: its header sector, then its data sectors.
pub fn encode(sector_size: usize, e: &Entry) -> Vec<u8> {
    let mut h = vec![0u8; sector_size];
    let (sector, nr, flags, data_len, tail): (u64, u64, u64, u64, &[u8]) = match e {
        Entry::Write {
            sector,
            data,
            flags,
        } => (*sector, (data.len() / sector_size) as u64, *flags, 0, &[]),
        Entry::Discard { sector, nr_sectors } => (*sector, *nr_sectors, DISCARD, 0, &[]),
        Entry::Flush => (0, 0, FLUSH, 0, &[]),
        Entry::Mark(name) => (0, 0, MARK, name.len() as u64, name.as_bytes()),
    };
    h[0..8].copy_from_slice(&sector.to_le_bytes());
    h[8..16].copy_from_slice(&nr.to_le_bytes());
    h[16..24].copy_from_slice(&flags.to_le_bytes());
    h[24..32].copy_from_slice(&data_len.to_le_bytes());
    h[32..32 + tail.len()].copy_from_slice(tail);
    if let Entry::Write { data, .. } = e {
        h.extend_from_slice(data);
    }
    h
}

/// A whole log: the super block counting every entry, then the entries.
pub fn log_of(sector_size: usize, entries: &[Entry]) -> Vec<u8> {
    let mut v = super_block(sector_size, entries.len() as u64);
    for e in entries {
        v.extend_from_slice(&encode(sector_size, e));
    }
    v
}

/// Apply an entry to a disk image (the reference replay).
pub fn apply(sector_size: usize, disk: &mut [u8], e: &Entry) {
    match e {
        Entry::Write { sector, data, .. } => {
            let at = *sector as usize * sector_size;
            disk[at..at + data.len()].copy_from_slice(data);
        }
        Entry::Discard { sector, nr_sectors } => {
            let at = *sector as usize * sector_size;
            disk[at..at + *nr_sectors as usize * sector_size].fill(0);
        }
        Entry::Flush | Entry::Mark(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_is_its_super_block_then_each_entry_whole() {
        let entries = [
            Entry::Write {
                sector: 2,
                data: vec![7; 1024],
                flags: FUA,
            },
            Entry::Flush,
            Entry::Mark("m1".into()),
        ];
        let log = log_of(512, &entries);
        assert_eq!(log.len(), 512 + (512 + 1024) + 512 + 512);
        assert_eq!(&log[16..24], &3u64.to_le_bytes());
        assert_eq!(&log[512 + 8..512 + 16], &2u64.to_le_bytes(), "two sectors");
        assert_eq!(&log[log.len() - 512 + 32..log.len() - 512 + 34], b"m1");
        let mut disk = vec![0u8; 4096];
        for e in &entries {
            apply(512, &mut disk, e);
        }
        assert!(disk[1024..2048].iter().all(|&b| b == 7));
    }
}
