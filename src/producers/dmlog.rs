//! Linux dm-log-writes logs: the format the kernel's `log-writes` device
//! mapper target (drivers/md/dm-log-writes.c) and QEMU's `blklogwrites`
//! block driver (block/blklogwrites.c) write, read into store records.
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
//!
//! # Records
//!
//! Each entry becomes exactly one record, so log entry i of a log ingested
//! into an empty store is record `#i`, and `--at '#i'` is the state
//! `replay-log --limit i` leaves. Entries are numbered from 1 in messages
//! (`replay-log -v` numbers them from 0): a write with data becomes a Write
//! (FUA, PREFLUSH, META carried over), a discard a Trim, a data-less flush
//! a Flush, a mark a Mark. The log carries no times: each entry gets the
//! time it is read, unless a MARK named `t=<ns>` (nanoseconds since the
//! epoch) came before it, which sets the time of itself and of the entries
//! after it until the next such mark.
//!
//! # Running again on the same log
//!
//! An ingest that was killed (or stopped and started again with `--follow`)
//! must neither lose nor repeat entries. Before reading, the command asks
//! [`already_recorded`] how many of the log's first entries the store's last
//! records already are (same kind, flags, range and content hash), and skips
//! those: entry i stays record i of a store that began with this log. The
//! skipped entries are still read, so their `t=` marks set the clock as
//! before. A store may begin with other history (a baseline); only the
//! records at its end are compared. A log that merely starts with the bare
//! flushes or trims the store's history ends with is not taken for a resumed
//! one: at least one write or mark must match.
//!
//! # Following a log being written
//!
//! With `follow`, the end of the input is not the end of the log: a short
//! read (end of a growing file, a half-written entry) is waited for and read
//! again every `poll_interval`. Both writers may land entries out of order
//! (QEMU runs requests concurrently; the kernel submits bios
//! asynchronously), so a followed file can show an all-zero hole where an
//! entry is still in flight; [`ingest_file`] re-reads such a block until it
//! fills in, which needs a seekable file (a pipe cannot be re-read, so there
//! a hole ends the log). A hole is only recognised where a header block
//! should be: an entry whose header has landed while its data is still being
//! copied in, with a later entry already past it, reads as partly zero. The
//! format has no checksum to catch that; ingesting a finished log (or
//! re-ingesting it into a fresh store) gives the exact history.

use crate::store::format::MAX_OP_BYTES;
use crate::store::op::{Op, OpFlags, OwnedOp};
use crate::store::{RecordInfo, Store, StoreError, Writer};
use crate::units::{Seq, TimeNs};
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

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

/// Name prefix of the marks that carry a time, `t=<ns since the epoch>`.
pub const TIME_MARK_PREFIX: &str = "t=";

#[derive(thiserror::Error, Debug)]
#[non_exhaustive]
pub enum DmlogError {
    #[error("reading the log at byte {offset_bytes}: {error}")]
    Io { offset_bytes: u64, error: io::Error },
    #[error(
        "not a dm-log-writes log: it is {have} bytes long, shorter than the \
         {need}-byte super block"
    )]
    ShortSuper { have: u64, need: u64 },
    #[error(
        "not a dm-log-writes log: magic 0x{found:x} at byte 0, expected \
         0x{LOG_MAGIC:x} (the log device of a dm log-writes target, or the \
         log file of a QEMU blklogwrites node)"
    )]
    BadMagic { found: u64 },
    #[error("dm-log-writes log version {found} at byte 8; diskhist reads version {LOG_VERSION}")]
    BadVersion { found: u64 },
    #[error(
        "dm-log-writes super block: sector size {found} at byte 24 is not a power of \
         two from {MIN_SECTOR_SIZE} to {MAX_SECTOR_SIZE}"
    )]
    BadSectorSize { found: u32 },
    #[error(
        "entry {entry} at byte {offset_bytes}: the log ends inside the entry's {part} \
         ({have} of {need} bytes present); the entries before it were recorded — if the \
         log is still being written, use --follow"
    )]
    Truncated {
        entry: u64,
        offset_bytes: u64,
        part: &'static str,
        have: u64,
        need: u64,
    },
    #[error(
        "entry {entry} at byte {offset_bytes}: the log ends here, but its super block \
         counts {expected} entries; the entries before it were recorded"
    )]
    MissingEntries {
        entry: u64,
        offset_bytes: u64,
        expected: u64,
    },
    #[error("entry {entry} at byte {offset_bytes}: malformed entry: {reason}")]
    Malformed {
        entry: u64,
        offset_bytes: u64,
        reason: String,
    },
    #[error("entry {entry} at byte {offset_bytes}: {error}")]
    Store {
        entry: u64,
        offset_bytes: u64,
        error: StoreError,
    },
    #[error("syncing the store after entry {entry}: {error}")]
    Sync { entry: u64, error: StoreError },
}

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

type Rewind = Box<dyn FnMut(u64) -> io::Result<()> + Send>;

/// A dm-log-writes log parser over any byte source. Reads exactly the bytes
/// of one entry at a time, never ahead, and keeps a partly read entry across
/// calls, so a growing file can be followed.
pub struct DmlogReader<R> {
    input: R,
    /// 0 until the super block is read.
    sector_size: u32,
    super_entries: u64,
    /// Index (from 1) of the next entry.
    next_index: u64,
    /// Byte offset of the next entry (or of the super, before it is read).
    pos: u64,
    /// Bytes read so far of what starts at `pos`.
    pending: Vec<u8>,
    /// Seeks the input back to an absolute offset, to re-read a hole.
    rewind: Option<Rewind>,
    past_count: u64,
}

impl<R: Read> DmlogReader<R> {
    /// Bytes of the log read so far (the offset of the next entry).
    pub fn offset_bytes(&self) -> u64 {
        self.pos
    }

    /// Read and check the super block.
    pub fn new(input: R) -> Result<Self, DmlogError> {
        let mut r = Self::unstarted(input);
        r.read_super(false)?;
        Ok(r)
    }

    fn unstarted(input: R) -> Self {
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

    /// Byte offset of the next entry.
    pub fn position_bytes(&self) -> u64 {
        self.pos
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

/// The time a `t=<ns>` mark carries, if the name is one.
pub fn time_mark(name: &str) -> Option<TimeNs> {
    name.strip_prefix(TIME_MARK_PREFIX)?
        .parse::<i64>()
        .ok()
        .map(TimeNs)
}

/// How to ingest.
#[derive(Debug, Clone)]
pub struct DmlogOptions {
    /// Wait at the end of the input for more entries instead of stopping.
    pub follow: bool,
    /// How often a followed log is read again.
    pub poll_interval: Duration,
    /// Set to stop cleanly (after the entry being recorded).
    pub stop: Arc<AtomicBool>,
    /// Entries at the start of the log that are already recorded (see
    /// [`already_recorded`]): read, so that their `t=` marks still set the
    /// clock, but not recorded again.
    pub skip_entries: u64,
    /// Told the log bytes read so far after each entry.
    pub progress: Option<crate::producers::ProgressFn>,
}

impl Default for DmlogOptions {
    fn default() -> Self {
        DmlogOptions {
            follow: false,
            poll_interval: Duration::from_millis(200),
            stop: Arc::new(AtomicBool::new(false)),
            skip_entries: 0,
            progress: None,
        }
    }
}

/// What an ingest recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DmlogSummary {
    pub entries: u64,
    pub first_seq: Option<Seq>,
    pub last_seq: Option<Seq>,
    /// Bytes of Write data recorded.
    pub bytes_written: u64,
    pub marks: u64,
}

/// Record every entry of a dm-log-writes log read from `input`, one record
/// each. On an error, the entries before the failing one are recorded (and
/// synced). Following a pipe or a growing file works; to follow a log that
/// may have holes (a block device, out-of-order writers) use [`ingest_file`].
pub fn ingest<R: Read>(
    input: R,
    writer: &mut Writer,
    opts: &DmlogOptions,
) -> Result<DmlogSummary, DmlogError> {
    run(DmlogReader::unstarted(input), writer, opts)
}

/// [`ingest`] from a file or block device, which a followed log can re-read
/// where the writer left a hole that fills in later.
pub fn ingest_file(
    file: std::fs::File,
    writer: &mut Writer,
    opts: &DmlogOptions,
) -> Result<DmlogSummary, DmlogError> {
    // A dup'ed descriptor shares the file offset, so seeking it moves `file`.
    let mut seeker = file.try_clone().map_err(|error| DmlogError::Io {
        offset_bytes: 0,
        error,
    })?;
    let mut reader = DmlogReader::unstarted(file);
    reader.rewind = Some(Box::new(move |at| {
        seeker.seek(SeekFrom::Start(at)).map(|_| ())
    }));
    run(reader, writer, opts)
}

fn run<R: Read>(
    mut reader: DmlogReader<R>,
    writer: &mut Writer,
    opts: &DmlogOptions,
) -> Result<DmlogSummary, DmlogError> {
    let mut summary = DmlogSummary::default();
    // Set by `t=<ns>` marks; otherwise each entry gets the time it is read.
    let mut mark_clock: Option<TimeNs> = None;
    let mut unsynced = false;
    let outcome = loop {
        if opts.stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        let entry = match reader.poll(opts.follow) {
            Ok(Polled::Entry(e)) => e,
            Ok(Polled::End) => break Ok(()),
            Ok(Polled::Wait) => {
                if unsynced {
                    writer.sync().map_err(|error| DmlogError::Sync {
                        entry: reader.next_index - 1,
                        error,
                    })?;
                    unsynced = false;
                }
                sleep_unless_stopped(opts);
                continue;
            }
            Err(e) => break Err(e),
        };
        // A `t=` mark sets the time of what follows; without one, entries
        // are stamped as they are read, each strictly after the last.
        let time = match &entry.op {
            OwnedOp::Mark { name } => match time_mark(name) {
                Some(t) => {
                    mark_clock = Some(t);
                    Some(t)
                }
                None => mark_clock,
            },
            _ => mark_clock,
        };
        if let Some(p) = &opts.progress {
            (p.0)(reader.offset_bytes());
        }
        if entry.index <= opts.skip_entries {
            continue;
        }
        let op = entry.op.as_op();
        let appended = match time {
            Some(t) => writer.append(t, op, entry.op_flags),
            None => writer.append_now(op, entry.op_flags),
        };
        let appended = match appended {
            Ok(a) => a,
            Err(error) => {
                break Err(DmlogError::Store {
                    entry: entry.index,
                    offset_bytes: entry.log_offset_bytes,
                    error,
                })
            }
        };
        unsynced = true;
        summary.entries += 1;
        summary.first_seq.get_or_insert(appended.seq);
        summary.last_seq = Some(appended.seq);
        match entry.op.as_op() {
            Op::Write { data, .. } => summary.bytes_written += data.len() as u64,
            Op::Mark { .. } => summary.marks += 1,
            _ => {}
        }
        if entry.flags & (LOG_FLUSH_FLAG | LOG_FUA_FLAG) != 0 {
            writer.sync().map_err(|error| DmlogError::Sync {
                entry: entry.index,
                error,
            })?;
            unsynced = false;
        }
    };
    // Whatever was recorded before an error stays recorded: make it durable.
    if unsynced {
        let last = reader.next_index - 1;
        if let Err(error) = writer.sync() {
            return Err(outcome
                .err()
                .unwrap_or(DmlogError::Sync { entry: last, error }));
        }
    }
    if reader.past_count > 0 {
        log::info!(
            "read {} entries past the {} the log's super block counts (it is updated lazily)",
            reader.past_count,
            reader.super_entries
        );
    }
    outcome.map(|()| summary)
}

fn sleep_unless_stopped(opts: &DmlogOptions) {
    let slice = Duration::from_millis(50);
    let mut left = opts.poll_interval;
    while !left.is_zero() && !opts.stop.load(Ordering::Relaxed) {
        let d = left.min(slice);
        std::thread::sleep(d);
        left -= d;
    }
}

/// What [`already_recorded`] found: the store's last `entries` records
/// are this log's first `entries` entries, from record `first_seq` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    pub entries: u64,
    pub first_seq: Seq,
}

/// What identifies an operation, whichever producer delivered it: kind,
/// the producer's flags, range and content hash, as a record stores them.
type OpSignature = [u8; 32];

const SIGNATURE_FLAGS: u8 = OpFlags::FUA.0 | OpFlags::PREFLUSH.0 | OpFlags::META.0;

fn signature(
    kind: u8,
    flags: OpFlags,
    offset_bytes: u64,
    length_bytes: u64,
    hash: &[u8; 32],
) -> OpSignature {
    let mut h = blake3::Hasher::new();
    h.update(&[kind, flags.0 & SIGNATURE_FLAGS]);
    h.update(&offset_bytes.to_le_bytes());
    h.update(&length_bytes.to_le_bytes());
    h.update(hash);
    *h.finalize().as_bytes()
}

fn entry_signature(e: &DmlogEntry) -> OpSignature {
    use crate::store::RecordKind as K;
    let zero = [0u8; 32];
    match e.op.as_op() {
        Op::Write { offset_bytes, data } => signature(
            K::Write as u8,
            e.op_flags,
            offset_bytes,
            data.len() as u64,
            blake3::hash(data).as_bytes(),
        ),
        Op::Zero {
            offset_bytes,
            length_bytes,
        } => signature(K::Zero as u8, e.op_flags, offset_bytes, length_bytes, &zero),
        Op::Trim {
            offset_bytes,
            length_bytes,
        } => signature(K::Trim as u8, e.op_flags, offset_bytes, length_bytes, &zero),
        Op::Flush => signature(K::Flush as u8, e.op_flags, 0, 0, &zero),
        Op::Mark { name } => signature(
            K::Mark as u8,
            e.op_flags,
            0,
            name.len() as u64,
            blake3::hash(name.as_bytes()).as_bytes(),
        ),
    }
}

fn record_signature(r: &RecordInfo) -> OpSignature {
    signature(
        r.kind as u8,
        r.flags,
        r.offset_bytes,
        r.length_bytes,
        &r.content_hash.0,
    )
}

/// How many of the first entries of the log at `path` the store already
/// ends with: a restarted `--follow`, or an ingest run again after a crash,
/// resumes after them instead of recording them twice.
///
/// The store's history may begin with other records (a baseline import,
/// an earlier log): what counts is the longest run of entries 1..m that
/// equals the store's last m records — kind, flags, range and content hash.
/// A run of bare flushes and trims alone is too weak to tell a resumed log
/// from a new one that happens to start the way the last one ended, so at
/// least one write or mark must match; otherwise nothing is skipped.
/// Entries are read up to the first one not wholly there yet.
pub fn already_recorded(
    path: &std::path::Path,
    store: &Store,
) -> Result<Option<Resume>, DmlogError> {
    let head = store.head().seq.0;
    if head == 0 {
        return Ok(None);
    }
    let file = std::fs::File::open(path).map_err(|error| DmlogError::Io {
        offset_bytes: 0,
        error,
    })?;
    let mut reader = DmlogReader::unstarted(io::BufReader::with_capacity(1 << 20, file));
    let mut entries: Vec<(OpSignature, bool)> = Vec::new();
    // A bad log is reported by the ingest itself, from the same entry.
    while entries.len() < head as usize {
        match reader.poll(true) {
            Ok(Polled::Entry(e)) => {
                let telling = matches!(e.op, OwnedOp::Write { .. } | OwnedOp::Mark { .. });
                entries.push((entry_signature(&e), telling));
            }
            Ok(Polled::Wait | Polled::End) | Err(_) => break,
        }
    }
    if entries.is_empty() {
        return Ok(None);
    }
    let first = head - entries.len() as u64 + 1;
    let records = (first..=head)
        .map(|s| store.record(Seq(s)).map(|r| record_signature(&r)))
        .collect::<Result<Vec<_>, StoreError>>()
        .map_err(|error| DmlogError::Store {
            entry: 0,
            offset_bytes: 0,
            error,
        })?;
    let sigs: Vec<OpSignature> = entries.iter().map(|e| e.0).collect();
    let m = suffix_prefix_overlap(&records, &sigs);
    if m == 0 || !entries[..m].iter().any(|e| e.1) {
        return Ok(None);
    }
    Ok(Some(Resume {
        entries: m as u64,
        first_seq: Seq(head - m as u64 + 1),
    }))
}

/// The largest m such that `text` ends with `pattern[..m]` (Knuth–Morris–
/// Pratt: linear in both lengths, whatever repeats they hold).
fn suffix_prefix_overlap<T: PartialEq>(text: &[T], pattern: &[T]) -> usize {
    let n = pattern.len();
    if n == 0 {
        return 0;
    }
    let mut fail = vec![0usize; n];
    let mut k = 0;
    for i in 1..n {
        while k > 0 && pattern[i] != pattern[k] {
            k = fail[k - 1];
        }
        if pattern[i] == pattern[k] {
            k += 1;
        }
        fail[i] = k;
    }
    let mut q = 0;
    for t in text {
        if q == n {
            q = fail[n - 1];
        }
        while q > 0 && *t != pattern[q] {
            q = fail[q - 1];
        }
        if *t == pattern[q] {
            q += 1;
        }
    }
    q
}

#[cfg(test)]
mod tests;
