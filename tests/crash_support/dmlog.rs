//! Writing a dm-log-writes log (version 1, sector size 512) the way the
//! kernel target does: a super block whose entry count lags behind, then
//! entry headers each followed by their data.

pub const SECTOR: usize = 512;
const MAGIC: u64 = 0x006a_7366_7773_6872;
pub const FLUSH: u64 = 1;
pub const FUA: u64 = 2;
pub const DISCARD: u64 = 4;
pub const MARK: u64 = 8;

/// One entry, as the reference replay needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
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

/// The super block, counting `nr_entries` entries.
pub fn super_block(nr_entries: u64) -> Vec<u8> {
    let mut b = vec![0u8; SECTOR];
    b[0..8].copy_from_slice(&MAGIC.to_le_bytes());
    b[8..16].copy_from_slice(&1u64.to_le_bytes());
    b[16..24].copy_from_slice(&nr_entries.to_le_bytes());
    b[24..28].copy_from_slice(&(SECTOR as u32).to_le_bytes());
    b
}

/// The bytes of one entry: header block, then data blocks.
pub fn encode(e: &Entry) -> Vec<u8> {
    let mut h = vec![0u8; SECTOR];
    let (sector, nr, flags, data_len, tail): (u64, u64, u64, u64, &[u8]) = match e {
        Entry::Write {
            sector,
            data,
            flags,
        } => (*sector, (data.len() / SECTOR) as u64, *flags, 0, &[]),
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

/// Apply an entry to a disk image (the reference replay).
pub fn apply(disk: &mut [u8], e: &Entry) {
    match e {
        Entry::Write { sector, data, .. } => {
            let at = *sector as usize * SECTOR;
            disk[at..at + data.len()].copy_from_slice(data);
        }
        Entry::Discard { sector, nr_sectors } => {
            let at = *sector as usize * SECTOR;
            disk[at..at + *nr_sectors as usize * SECTOR].fill(0);
        }
        Entry::Flush | Entry::Mark(_) => {}
    }
}
