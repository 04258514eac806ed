//! Reading a dm-log-writes log: the format, and [`DmlogReader`], which
//! decodes it one entry at a time (and, following a log still being
//! written, waits for what has not landed yet).
//!
//! # Format (version 1, little-endian throughout)
//!
//! The log is a sequence of blocks of `sectorsize` bytes, the size named in
//! the super block:
//!
//! ```text
//!  block 0          super: magic u64 | version u64 | nr_entries u64 | sectorsize u32 | zero padding
//!  block 1          entry header: sector u64 | nr_sectors u64 | flags u64 | data_len u64 | padding
//!                   (a MARK puts its name, data_len bytes, right after the 32-byte header)
//!  blocks 2..       nr_sectors blocks of the data written (none for a DISCARD, a MARK or a flush)
//!  next block       the next entry header, and so on
//! ```
//!
//! Flags: FLUSH 1 (a cache flush preceded the write, or a bare flush),
//! FUA 2, DISCARD 4, MARK 8, METADATA 16 (kernel only).
//!
//! # Units of `sector` and `nr_sectors`
//!
//! Both are in units of the log's own `sectorsize`, not 512-byte sectors:
//! the kernel sets `lc->sectorsize` to the logical block size of the logged
//! device and converts the bio's 512-byte sectors with
//! `bio_to_dev_sectors()` (`>> (sectorshift - 9)`) before storing them in
//! the entry; QEMU stores `offset >> sectorbits` and `bytes >> sectorbits`,
//! where `sectorbits` is log2 of its `log-sector-size` option (default 512).
//! The userspace `replay-log` multiplies both by the super's sectorsize.
//! So a write lands at byte `sector * sectorsize` and is
//! `nr_sectors * sectorsize` bytes long, and that is what this reader does.
//! QEMU logs a write-zeroes request as an ordinary write whose data blocks
//! are zero; it becomes a Write of zeros here (which costs the store no
//! payload).
//!
//! # Entries past `nr_entries`
//!
//! Both writers rewrite the super block lazily: the kernel after a FUA or a
//! MARK entry, QEMU after a FLUSH entry (and every `log-super-update-interval`
//! entries), so a log that was not shut down cleanly holds valid entries
//! beyond the count. `replay-log` stops at `nr_entries` and calls an entry
//! malformed when its header is all zero or the byte after the header is
//! not zero (`log_entry_valid()` in xfstests' src/log-writes/log-writes.c).
//! diskhist reads on past the count, applying the same test and a stricter
//! one (known flags only, zero padding, a length it can hold, data wholly
//! present). The first block past the count that fails it ends the log:
//! end of file, an all-zero block (a preallocated or sparse log) or stale
//! bytes from an earlier use of the log device. Within the count the same
//! failure is an error, as it is for `replay-log`. A log device reused
//! without zeroing can hold stale entries that pass every test; zero the log
//! (or truncate the file) before recording into it.

use super::error::DmlogError;
use crate::store::format::MAX_OP_BYTES;
use crate::store::{OpFlags, OwnedOp};
use std::io::{self, Read};

/// `WRITE_LOG_MAGIC`.
pub const LOG_MAGIC: u64 = 0x006a_7366_7773_6872;
/// `WRITE_LOG_VERSION`.
pub const LOG_VERSION: u64 = 1;

const S_MAGIC: usize = 0;
const S_VERSION: usize = S_MAGIC + 8;
const S_NR_ENTRIES: usize = S_VERSION + 8;
const S_SECTORSIZE: usize = S_NR_ENTRIES + 8;
/// Bytes of the super block that carry fields; the rest of its block is padding.
const SUPER_LEN: usize = S_SECTORSIZE + 4;

const E_SECTOR: usize = 0;
const E_NR_SECTORS: usize = E_SECTOR + 8;
const E_FLAGS: usize = E_NR_SECTORS + 8;
const E_DATA_LEN: usize = E_FLAGS + 8;
/// Bytes of an entry header; a mark's name follows, then zero padding.
const ENTRY_HEADER_LEN: usize = E_DATA_LEN + 8;

pub const LOG_FLUSH_FLAG: u64 = 1 << 0;
pub const LOG_FUA_FLAG: u64 = 1 << 1;
pub const LOG_DISCARD_FLAG: u64 = 1 << 2;
pub const LOG_MARK_FLAG: u64 = 1 << 3;
pub const LOG_METADATA_FLAG: u64 = 1 << 4;
const KNOWN_FLAGS: u64 =
    LOG_FLUSH_FLAG | LOG_FUA_FLAG | LOG_DISCARD_FLAG | LOG_MARK_FLAG | LOG_METADATA_FLAG;

/// Smallest sector size that holds an entry header.
pub const MIN_SECTOR_SIZE: u32 = ENTRY_HEADER_LEN as u32;
/// QEMU accepts sector sizes below 2^24; the kernel uses the logical block size.
pub const MAX_SECTOR_SIZE: u32 = 1 << 23;

/// Largest read issued at once while an entry's data comes in: a corrupt
/// `nr_sectors` must not make us allocate more than the log actually holds.
const READ_CHUNK: usize = 1 << 20;

/// One entry of the log, decoded into the operation it records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmlogEntry {
    /// Position in the log, counted from 1.
    pub index: u64,
    /// Byte offset of the entry's header block in the log.
    pub log_offset_bytes: u64,
    /// Raw header fields (`sector`, `nr_sectors` in units of the log's sector size).
    pub sector: u64,
    pub nr_sectors: u64,
    pub flags: u64,
    /// Whether the entry lies beyond the super block's `nr_entries`.
    pub past_super_count: bool,
    pub op: OwnedOp,
    pub op_flags: OpFlags,
}

/// What one look at the input found.
#[derive(Debug)]
pub enum Polled {
    Entry(DmlogEntry),
    /// Only with `follow`: the next entry is not (wholly) there yet.
    Wait,
    /// The log ends here.
    End,
}

/// What the bytes at the read position hold.
enum Step {
    Entry(DmlogEntry),
    /// End of input exactly at an entry boundary.
    Eof,
    /// End of input inside the super block or an entry.
    Incomplete {
        part: &'static str,
        have: u64,
        need: u64,
    },
    /// A whole header block that is no entry.
    NotAnEntry {
        reason: String,
        all_zero: bool,
    },
}

/// Seeks the input back to an absolute offset, to re-read a hole.
pub(super) type Rewind = Box<dyn FnMut(u64) -> io::Result<()> + Send>;

/// A dm-log-writes log parser over any byte source. Reads exactly the bytes
/// of one entry at a time, never ahead, and keeps a partly read entry across
/// calls, so a growing file can be followed.
pub struct DmlogReader<R> {
    input: R,
    /// 0 until the super block is read.
    sector_size: u32,
    super_entries: u64,
    /// Index (from 1) of the next entry.
    pub(super) next_index: u64,
    /// Byte offset of the next entry (or of the super, before it is read).
    pos: u64,
    /// Bytes read so far of what starts at `pos`.
    pending: Vec<u8>,
    /// Seeks the input back to an absolute offset, to re-read a hole.
    pub(super) rewind: Option<Rewind>,
    past_count: u64,
}

impl<R: Read> DmlogReader<R> {
    /// Read and check the super block.
    pub fn new(input: R) -> Result<Self, DmlogError> {
        let mut r = Self::unstarted(input);
        r.read_super(false)?;
        Ok(r)
    }

    /// A reader that has read nothing yet, not even the super block: the
    /// first [`poll`](Self::poll) reads it (and, following, waits for it).
    pub(super) fn unstarted(input: R) -> Self {
        DmlogReader {
            input,
            sector_size: 0,
            super_entries: 0,
            next_index: 1,
            pos: 0,
            pending: Vec::new(),
            rewind: None,
            past_count: 0,
        }
    }

    /// The log's sector size, the unit of its `sector` and `nr_sectors` fields.
    pub fn sector_size(&self) -> u32 {
        self.sector_size
    }

    /// `nr_entries` as the super block states it (possibly stale).
    pub fn super_entries(&self) -> u64 {
        self.super_entries
    }

    /// How many entries were read beyond the super block's count.
    pub fn entries_past_super_count(&self) -> u64 {
        self.past_count
    }

    /// Byte offset of the next entry: the bytes of the log read so far.
    pub fn position_bytes(&self) -> u64 {
        self.pos
    }

    /// Entries read so far, which is also the index of the last one.
    pub fn entries_read(&self) -> u64 {
        self.next_index - 1
    }

    /// The next entry, `None` at the end of the log. A log that ends inside
    /// an entry, or before the super block's count, is an error.
    pub fn next_entry(&mut self) -> Result<Option<DmlogEntry>, DmlogError> {
        match self.poll(false)? {
            Polled::Entry(e) => Ok(Some(e)),
            Polled::End => Ok(None),
            Polled::Wait => unreachable!("only a followed log waits"),
        }
    }

    /// One look at the input. With `follow`, what is missing is waited for
    /// ([`Polled::Wait`]) rather than an error.
    pub fn poll(&mut self, follow: bool) -> Result<Polled, DmlogError> {
        if self.sector_size == 0 && !self.read_super(follow)? {
            return Ok(Polled::Wait);
        }
        let entry_no = self.next_index;
        let within_count = entry_no <= self.super_entries;
        match self.step()? {
            Step::Entry(mut e) => {
                e.past_super_count = !within_count;
                if !within_count {
                    self.past_count += 1;
                }
                Ok(Polled::Entry(e))
            }
            Step::Eof if follow => Ok(Polled::Wait),
            Step::Eof if within_count => Err(DmlogError::MissingEntries {
                entry: entry_no,
                offset_bytes: self.pos,
                expected: self.super_entries,
            }),
            Step::Eof => Ok(Polled::End),
            Step::Incomplete { .. } if follow => Ok(Polled::Wait),
            Step::Incomplete { part, have, need } => Err(DmlogError::Truncated {
                entry: entry_no,
                offset_bytes: self.pos,
                part,
                have,
                need,
            }),
            Step::NotAnEntry { reason, all_zero } => {
                // A hole in a followed file may still fill in: read it again later.
                if follow && self.rewind.is_some() && (all_zero || !within_count) {
                    self.rewind_pending()?;
                    return Ok(Polled::Wait);
                }
                if within_count {
                    return Err(DmlogError::Malformed {
                        entry: entry_no,
                        offset_bytes: self.pos,
                        reason,
                    });
                }
                if !all_zero {
                    log::info!(
                        "dm-log-writes log ends at byte {}: the block after entry {} is no \
                         entry ({reason})",
                        self.pos,
                        entry_no - 1
                    );
                }
                Ok(Polled::End)
            }
        }
    }

    /// Read the super block. `Ok(false)`: not all there yet (follow only).
    fn read_super(&mut self, follow: bool) -> Result<bool, DmlogError> {
        if !self.fill(SUPER_LEN)? {
            if follow {
                return Ok(false);
            }
            return Err(DmlogError::ShortSuper {
                have: self.pending.len() as u64,
                need: SUPER_LEN as u64,
            });
        }
        let magic = crate::le::u64_at(&self.pending, S_MAGIC);
        if magic != LOG_MAGIC {
            // QEMU may not have written the super yet.
            if follow && magic == 0 && self.rewind.is_some() {
                self.rewind_pending()?;
                return Ok(false);
            }
            return Err(DmlogError::BadMagic { found: magic });
        }
        let version = crate::le::u64_at(&self.pending, S_VERSION);
        if version != LOG_VERSION {
            return Err(DmlogError::BadVersion { found: version });
        }
        let sector_size = crate::le::u32_at(&self.pending, S_SECTORSIZE);
        if !sector_size.is_power_of_two()
            || !(MIN_SECTOR_SIZE..=MAX_SECTOR_SIZE).contains(&sector_size)
        {
            return Err(DmlogError::BadSectorSize { found: sector_size });
        }
        let ss = sector_size as usize;
        if !self.fill(ss)? {
            if follow {
                return Ok(false);
            }
            return Err(DmlogError::ShortSuper {
                have: self.pending.len() as u64,
                need: ss as u64,
            });
        }
        self.super_entries = crate::le::u64_at(&self.pending, S_NR_ENTRIES);
        self.sector_size = sector_size;
        self.pos = ss as u64;
        self.pending.clear();
        Ok(true)
    }

    fn step(&mut self) -> Result<Step, DmlogError> {
        let ss = self.sector_size as usize;
        if !self.fill(ss)? {
            if self.pending.is_empty() {
                return Ok(Step::Eof);
            }
            return Ok(Step::Incomplete {
                part: "header",
                have: self.pending.len() as u64,
                need: ss as u64,
            });
        }
        let decoded = match decode_header(&self.pending[..ss]) {
            Ok(d) => d,
            Err(reason) => {
                let all_zero = self.pending.iter().all(|&b| b == 0);
                return Ok(Step::NotAnEntry { reason, all_zero });
            }
        };
        let need = ss as u64 + decoded.data_bytes;
        if !self.fill(need as usize)? {
            return Ok(Step::Incomplete {
                part: "data",
                have: self.pending.len() as u64 - ss as u64,
                need: decoded.data_bytes,
            });
        }
        let op = match decoded.kind {
            Kind::Write => OwnedOp::Write {
                offset_bytes: decoded.offset_bytes,
                data: self.pending.split_off(ss),
            },
            Kind::Trim => OwnedOp::Trim {
                offset_bytes: decoded.offset_bytes,
                length_bytes: decoded.length_bytes,
            },
            Kind::Flush => OwnedOp::Flush,
            Kind::Mark(name) => OwnedOp::Mark { name },
        };
        let entry = DmlogEntry {
            index: self.next_index,
            log_offset_bytes: self.pos,
            sector: decoded.sector,
            nr_sectors: decoded.nr_sectors,
            flags: decoded.flags,
            past_super_count: false,
            op,
            op_flags: decoded.op_flags,
        };
        self.pending.clear();
        self.pos += need;
        self.next_index += 1;
        Ok(Step::Entry(entry))
    }

    /// Read until `pending` holds `need` bytes; `false` at end of input.
    /// Never reads past `need`, so the input stays at an entry boundary.
    fn fill(&mut self, need: usize) -> Result<bool, DmlogError> {
        while self.pending.len() < need {
            let have = self.pending.len();
            let chunk = (need - have).min(READ_CHUNK);
            self.pending.resize(have + chunk, 0);
            let got = loop {
                match self.input.read(&mut self.pending[have..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(error) => {
                        self.pending.truncate(have);
                        return Err(DmlogError::Io {
                            offset_bytes: self.pos + have as u64,
                            error,
                        });
                    }
                }
            };
            self.pending.truncate(have + got);
            if got == 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn rewind_pending(&mut self) -> Result<(), DmlogError> {
        let pos = self.pos;
        if let Some(rewind) = self.rewind.as_mut() {
            rewind(pos).map_err(|error| DmlogError::Io {
                offset_bytes: pos,
                error,
            })?;
            self.pending.clear();
        }
        Ok(())
    }
}

enum Kind {
    Write,
    Trim,
    Flush,
    Mark(String),
}

struct Decoded {
    sector: u64,
    nr_sectors: u64,
    flags: u64,
    kind: Kind,
    op_flags: OpFlags,
    offset_bytes: u64,
    length_bytes: u64,
    /// Bytes of data blocks following the header block.
    data_bytes: u64,
}

/// Check one header block and decode it; `Err` says why it is no entry.
fn decode_header(block: &[u8]) -> Result<Decoded, String> {
    let ss = block.len() as u64;
    let sector = crate::le::u64_at(block, E_SECTOR);
    let nr_sectors = crate::le::u64_at(block, E_NR_SECTORS);
    let flags = crate::le::u64_at(block, E_FLAGS);
    let data_len = crate::le::u64_at(block, E_DATA_LEN);
    if flags == 0 && nr_sectors == 0 {
        return Err("empty header (no flags, no sectors)".into());
    }
    if flags & !KNOWN_FLAGS != 0 {
        return Err(format!("unknown flags 0x{:x}", flags & !KNOWN_FLAGS));
    }
    let mut op_flags = OpFlags::default();
    if flags & LOG_FUA_FLAG != 0 {
        op_flags |= OpFlags::FUA;
    }
    if flags & LOG_FLUSH_FLAG != 0 {
        op_flags |= OpFlags::PREFLUSH;
    }
    if flags & LOG_METADATA_FLAG != 0 {
        op_flags |= OpFlags::META;
    }
    let mark_len = if flags & LOG_MARK_FLAG != 0 {
        data_len
    } else {
        0
    };
    if mark_len > ss - ENTRY_HEADER_LEN as u64 {
        return Err(format!(
            "mark of {data_len} bytes does not fit its {ss}-byte block"
        ));
    }
    let padding_from = ENTRY_HEADER_LEN + mark_len as usize;
    if block[padding_from..].iter().any(|&b| b != 0) {
        return Err("the header block is not zero-padded".into());
    }
    let bytes = |n: u64| -> Result<u64, String> {
        n.checked_mul(ss)
            .ok_or_else(|| format!("{n} sectors of {ss} bytes overflow"))
    };
    let offset_bytes = bytes(sector)?;
    let length_bytes = bytes(nr_sectors)?;
    if offset_bytes.checked_add(length_bytes).is_none() {
        return Err(format!("sector {sector} + {nr_sectors} sectors overflow"));
    }
    let mut data_bytes = 0;
    let kind = if flags & LOG_MARK_FLAG != 0 {
        if nr_sectors != 0 || flags & LOG_DISCARD_FLAG != 0 {
            return Err("a mark that also writes or discards".into());
        }
        let raw = &block[ENTRY_HEADER_LEN..padding_from];
        let name = raw.strip_suffix(&[0]).unwrap_or(raw);
        Kind::Mark(String::from_utf8_lossy(name).into_owned())
    } else if data_len != 0 {
        return Err(format!(
            "data_len {data_len} on an entry that is not a mark"
        ));
    } else if flags & LOG_DISCARD_FLAG != 0 {
        if nr_sectors == 0 {
            return Err("a discard of no sectors".into());
        }
        Kind::Trim
    } else if nr_sectors == 0 {
        if flags & (LOG_FLUSH_FLAG | LOG_FUA_FLAG) == 0 {
            return Err("no data, and neither a flush nor a mark".into());
        }
        op_flags = OpFlags(op_flags.0 & !OpFlags::PREFLUSH.0);
        Kind::Flush
    } else {
        if length_bytes > MAX_OP_BYTES {
            return Err(format!(
                "a write of {nr_sectors} sectors ({length_bytes} bytes), more than the \
                 {MAX_OP_BYTES} bytes one entry may carry"
            ));
        }
        data_bytes = length_bytes;
        Kind::Write
    };
    Ok(Decoded {
        sector,
        nr_sectors,
        flags,
        kind,
        op_flags,
        offset_bytes,
        length_bytes,
        data_bytes,
    })
}
