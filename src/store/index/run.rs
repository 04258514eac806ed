//! Sorted runs: immutable files of entries sorted by key, in pages of
//! [`PAGE_ENTRIES`]; a page table (each page's first key, checksum and
//! length) is kept in memory so a lookup costs one binary search in memory
//! and one `pread` of a page, checked before it is used.
//!
//! On disk an entry is delta-encoded against the one before it (varints:
//! the block and seq steps, the log offset as a step from where the
//! previous entry's content ended, the stored length only when it changes;
//! see [`RunEntry::pack`]), except every [`RESTART_ENTRIES`]th of a page,
//! a restart point, packed whole. A page ends with the byte offsets of its
//! restart points after the first (u16 each). A lookup binary-searches the
//! restart points' entries and unpacks at most [`RESTART_ENTRIES`]; pages
//! are kept in memory packed, as read and checked. The blocks of one large
//! write cost about 5 bytes an entry, a random 4 KiB write about 10, where
//! format 2 spent 32 (and 48 per dedup entry, now about 14).
//!
//! ```text
//!  0                     data_len          table_off             bloom_off     len-FOOTER   len
//!  +---------------------+------------------+--------------------+-------------+-----------+
//!  | pages of packed     | page table: per  | bloom filter       | footer      |           |
//!  | entries, sorted,    | page: first key, | (dedup runs only;  | (48 bytes)  |           |
//!  | 128 per page        | crc32c, length   | u64 words)         |             |           |
//!  +---------------------+------------------+--------------------+-------------+-----------+
//! ```
//!
//! Footer (48 bytes): magic `DHRUN003`, kind u32, entry_len u32, n u64,
//! first_seq u64, last_seq u64, bloom_words u32, then the *meta checksum*:
//! crc32c of the page table, the bloom filter and the footer's first 44
//! bytes. Little-endian.
//!
//! Every byte of a run is covered by a checksum that a reader checks before
//! it trusts it: the meta checksum when the run is opened, a page's
//! checksum whenever that page is read. A damaged run is an error naming
//! the run and page, never a wrong answer. (`verify` goes further and
//! compares every entry with what the log says; see `store::verify`.)
//! Runs of formats 1 and 2 (`DHRUN001`, `DHRUN002`: fixed-size entries on
//! disk) are not read: the manifest's version changed with them, so an
//! index of an old format is rebuilt from the log.

use crate::le::{get_varint, put_varint};
use crate::store::error::{IoContext, Result, StoreError};
use crate::store::format::{Encoding, Loc};
use crate::units::Seq;
use parking_lot::Mutex;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Entries per page: one page-table entry, one `pread` and one checksum per
/// page.
pub const PAGE_ENTRIES: usize = 128;
const FOOTER_LEN: usize = 48;
/// Bytes of the footer covered by its meta checksum.
const FOOTER_CHECKED: usize = FOOTER_LEN - 4;
/// Every this many entries of a page, one is packed whole (a restart
/// point), so a lookup unpacks at most this many.
pub const RESTART_ENTRIES: usize = 16;
/// Per page in the table, after the first key: crc32c u32, length u32.
const PAGE_META_LEN: usize = 8;
/// Most bytes a page of packed entries may take (each entry packs into
/// fewer than 64 bytes); a page table claiming more is damaged.
const MAX_PAGE_BYTES: u64 = (PAGE_ENTRIES * 64) as u64;
const RUN_MAGIC: &[u8; 8] = b"DHRUN003";
const BLOOM_BITS_PER_ENTRY: usize = 12;
const BLOOM_PROBES: u64 = 7;

/// An entry with an ordered key: [`RunEntry::LEN`] bytes in memory,
/// delta-packed on disk.
pub trait RunEntry: Sized + Copy {
    const LEN: usize;
    const KIND: u32;
    type Key: Ord + Copy;
    fn key(&self) -> Self::Key;
    fn encode(&self, out: &mut [u8]);
    fn decode(b: &[u8]) -> Option<Self>;
    /// Append the on-disk form, relative to `prev`, the entry before it in
    /// its page (`None` for a page's first).
    fn pack(&self, prev: Option<&Self>, out: &mut Vec<u8>);
    /// Read one on-disk form from the front of `b`, advancing it; `None` if
    /// the bytes do not make an entry after `prev`.
    fn unpack(prev: Option<&Self>, b: &mut &[u8]) -> Option<Self>;
    /// The key, decoded from an encoded entry's prefix.
    fn decode_key(b: &[u8]) -> Self::Key;
    /// 64-bit hashes for the bloom filter; `None` if the run keeps none.
    fn bloom_hashes(_key: &Self::Key) -> Option<(u64, u64)> {
        None
    }
}

/// A signed step as a varint (zigzag: small steps either way are short).
fn put_step(out: &mut Vec<u8>, from: u64, to: u64) {
    let d = to.wrapping_sub(from) as i64;
    put_varint(out, ((d << 1) ^ (d >> 63)) as u64);
}

#[inline]
fn get_step(b: &mut &[u8], from: u64) -> Option<u64> {
    let z = get_varint(b)?;
    let d = ((z >> 1) as i64) ^ -((z & 1) as i64);
    Some(from.wrapping_add(d as u64))
}

/// Bit of the packed location's tag byte: the stored length is the
/// previous entry's (and is not written).
const SAME_LEN: u8 = 0x80;

/// A location on disk: its offset as a step from the end of the previous
/// entry's content (the next block of the same record is a step of one
/// byte, its tag), a tag byte (encoding, [`SAME_LEN`]) and the stored
/// length unless it is the previous one's.
fn pack_loc(loc: &Loc, prev: Option<&Loc>, out: &mut Vec<u8>) {
    let from = prev.map_or(0, |p| p.offset_bytes.wrapping_add(u64::from(p.stored_len)));
    put_step(out, from, loc.offset_bytes);
    let same = prev.is_some_and(|p| p.stored_len == loc.stored_len);
    out.push(loc.encoding as u8 | if same { SAME_LEN } else { 0 });
    if !same {
        put_varint(out, u64::from(loc.stored_len));
    }
}

#[inline]
fn unpack_loc(prev: Option<&Loc>, b: &mut &[u8]) -> Option<Loc> {
    let from = prev.map_or(0, |p| p.offset_bytes.wrapping_add(u64::from(p.stored_len)));
    let offset_bytes = get_step(b, from)?;
    let (&tag, rest) = b.split_first()?;
    *b = rest;
    let encoding = Encoding::from_u8(tag & !SAME_LEN)?;
    let stored_len = if tag & SAME_LEN != 0 {
        prev?.stored_len
    } else {
        u32::try_from(get_varint(b)?).ok()?
    };
    Some(Loc {
        offset_bytes,
        stored_len,
        encoding,
    })
}

fn encode_loc(loc: &Loc, out: &mut [u8]) {
    out[0..8].copy_from_slice(&loc.offset_bytes.to_le_bytes());
    out[8..12].copy_from_slice(&loc.stored_len.to_le_bytes());
    out[12] = loc.encoding as u8;
    out[13..16].fill(0);
}

fn decode_loc(b: &[u8]) -> Option<Loc> {
    if b[13..16] != [0, 0, 0] {
        return None;
    }
    Some(Loc {
        offset_bytes: crate::le::u64_at(b, 0),
        stored_len: crate::le::u32_at(b, 8),
        encoding: Encoding::from_u8(b[12])?,
    })
}

/// Block index entry: block `block` got content `loc` in record `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockVersion {
    pub block: u64,
    pub seq: u64,
    pub loc: Loc,
}

impl RunEntry for BlockVersion {
    const LEN: usize = 32;
    const KIND: u32 = 1;
    type Key = (u64, u64);
    fn key(&self) -> (u64, u64) {
        (self.block, self.seq)
    }
    fn encode(&self, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.block.to_le_bytes());
        out[8..16].copy_from_slice(&self.seq.to_le_bytes());
        encode_loc(&self.loc, &mut out[16..32]);
    }
    fn decode(b: &[u8]) -> Option<Self> {
        Some(BlockVersion {
            block: crate::le::u64_at(b, 0),
            seq: crate::le::u64_at(b, 8),
            loc: decode_loc(&b[16..32])?,
        })
    }
    fn decode_key(b: &[u8]) -> (u64, u64) {
        (crate::le::u64_at(b, 0), crate::le::u64_at(b, 8))
    }
    /// The block's step, then the seq (a step from the previous seq of the
    /// same block, which is smaller; a signed step after a new block),
    /// then the location.
    fn pack(&self, prev: Option<&Self>, out: &mut Vec<u8>) {
        match prev {
            None => {
                put_varint(out, self.block);
                put_varint(out, self.seq);
            }
            Some(p) => {
                put_varint(out, self.block.wrapping_sub(p.block));
                if self.block == p.block {
                    put_varint(out, self.seq.wrapping_sub(p.seq));
                } else {
                    put_step(out, p.seq, self.seq);
                }
            }
        }
        pack_loc(&self.loc, prev.map(|p| &p.loc), out);
    }
    fn unpack(prev: Option<&Self>, b: &mut &[u8]) -> Option<Self> {
        let (block, seq) = match prev {
            None => (get_varint(b)?, get_varint(b)?),
            Some(p) => {
                let block = p.block.checked_add(get_varint(b)?)?;
                let seq = if block == p.block {
                    p.seq.checked_add(get_varint(b)?)?
                } else {
                    get_step(b, p.seq)?
                };
                (block, seq)
            }
        };
        Some(BlockVersion {
            block,
            seq,
            loc: unpack_loc(prev.map(|p| &p.loc), b)?,
        })
    }
}

/// The key content is deduplicated by: XXH3-64 of the block in bytes 0..8
/// (the bloom filter's bits come from them), zeros after. Not a
/// cryptographic hash, and it need not be: a key only names a candidate,
/// and the writer compares the stored bytes before it references them, so
/// a collision (chance or crafted) costs a copy of the block, never a wrong
/// reference (a new block meets a stored key by chance about once in
/// 2 × 10^10 when a billion are stored). Ten times cheaper than BLAKE3 per block, which was a third of
/// the NBD write path. (Index format 5; formats 3 and 4 kept XXH3-128,
/// format 2 BLAKE3.)
pub fn dedup_key(block: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[..8].copy_from_slice(&xxhash_rust::xxh3::xxh3_64(block).to_le_bytes());
    k
}

/// A map keyed by dedup keys. The keys are XXH3 values, which a guest
/// can steer; foldhash, seeded at random per map, spreads them over the
/// table as std's SipHash does, at a fraction of the cost (SipHash was 6%
/// of the NBD write path's CPU).
pub type KeyMap<V> = std::collections::HashMap<[u8; 32], V, foldhash::fast::RandomState>;
/// A set of dedup keys (see [`KeyMap`]).
pub type KeySet = std::collections::HashSet<[u8; 32], foldhash::fast::RandomState>;

/// A long write's blocks go into dedup runs only where their key is an
/// anchor, one key in [`ANCHOR_EVERY`] chosen by content; the writer finds
/// the blocks beside an anchor through the record that stored it (sparse
/// indexing). Shorter writes keep every key.
pub const SPARSE_MIN_BLOCKS: usize = 16;
/// One key in this many is an anchor.
pub const ANCHOR_EVERY: u64 = 16;

/// Is `key` an anchor? Its top four bits are zero: the bloom filter's bit
/// positions come from the low bits, which stay spread.
pub fn is_anchor(key: &[u8; 32]) -> bool {
    const _: () = assert!(ANCHOR_EVERY == 16);
    crate::le::u64_at(key, 0) >> 60 == 0
}

/// Dedup entry: content whose [`dedup_key`] is `hash` is stored at `loc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredContent {
    pub hash: [u8; 32],
    pub loc: Loc,
}

impl RunEntry for StoredContent {
    const LEN: usize = 48;
    const KIND: u32 = 2;
    type Key = [u8; 32];
    fn key(&self) -> [u8; 32] {
        self.hash
    }
    fn encode(&self, out: &mut [u8]) {
        out[0..32].copy_from_slice(&self.hash);
        encode_loc(&self.loc, &mut out[32..48]);
    }
    fn decode(b: &[u8]) -> Option<Self> {
        Some(StoredContent {
            hash: b[0..32].try_into().unwrap(),
            loc: decode_loc(&b[32..48])?,
        })
    }
    fn decode_key(b: &[u8]) -> [u8; 32] {
        b[0..32].try_into().unwrap()
    }
    fn bloom_hashes(key: &[u8; 32]) -> Option<(u64, u64)> {
        // The key is 64 bits of XXH3; the second probe step is a mix of it.
        let h1 = crate::le::u64_at(key, 0);
        let h2 = (h1 ^ (h1 >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        Some((h1, (h2 ^ (h2 >> 32)) | 1))
    }
    /// The key's 8 bytes as a big-endian number (keys sort as those bytes
    /// do), as a step from the previous key; then the location.
    fn pack(&self, prev: Option<&Self>, out: &mut Vec<u8>) {
        let k = dedup_key_value(&self.hash);
        put_varint(
            out,
            k.wrapping_sub(prev.map_or(0, |p| dedup_key_value(&p.hash))),
        );
        pack_loc(&self.loc, prev.map(|p| &p.loc), out);
    }
    fn unpack(prev: Option<&Self>, b: &mut &[u8]) -> Option<Self> {
        let k = prev
            .map_or(0, |p| dedup_key_value(&p.hash))
            .checked_add(get_varint(b)?)?;
        let mut hash = [0u8; 32];
        hash[..8].copy_from_slice(&k.to_be_bytes());
        Some(StoredContent {
            hash,
            loc: unpack_loc(prev.map(|p| &p.loc), b)?,
        })
    }
}

/// A dedup key's value: its first 8 bytes, big-endian (the rest are zero,
/// see [`dedup_key`]).
fn dedup_key_value(k: &[u8; 32]) -> u64 {
    u64::from_be_bytes(k[..8].try_into().unwrap())
}

/// An open run.
pub struct Run<E: RunEntry> {
    path: PathBuf,
    file: File,
    file_len: u64,
    pub n: u64,
    pub first_seq: Seq,
    pub last_seq: Seq,
    fences: Vec<E::Key>,
    page_crcs: Arc<[u32]>,
    /// Where each page starts in the file, and (last) where pages end.
    page_starts: Arc<[u64]>,
    bloom: Vec<u64>,
    /// Pages read and checked already, direct-mapped by page number: a
    /// lookup that hits one costs no `pread` and no checksum.
    pages: Box<[PageSlot]>,
}

/// One slot of a run's page cache: the page number and its checked bytes.
type PageSlot = Mutex<Option<(usize, Arc<[u8]>)>>;

/// Bytes of packed pages a run keeps checked in memory, at most: the
/// whole index of a store of a few million block versions (a 2 GiB image
/// imported: 2.5 MB in one run since runs merge eight at a time; it was
/// two runs and 2 MiB each when they merged four at a time), so a reader
/// that has seen a page once reads only the block from disk after that.
pub const CACHED_BYTES_PER_RUN: u64 = 4 << 20;
/// Pages a run keeps in memory whatever their size.
pub const CACHED_PAGES_MIN: usize = 128;

impl<E: RunEntry> Run<E> {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The run file's size in bytes.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// Open a run: read its footer, page table and bloom filter, and check
    /// them against the meta checksum.
    pub fn open(path: &Path) -> Result<Run<E>> {
        let file = File::open(path).at(path)?;
        let len = file.metadata().at(path)?.len();
        let bad = |what: String| StoreError::corrupted(path, what);
        if len < FOOTER_LEN as u64 {
            return Err(bad(format!(
                "index run of {len} bytes is shorter than its footer"
            )));
        }
        let mut f = [0u8; FOOTER_LEN];
        file.read_exact_at(&mut f, len - FOOTER_LEN as u64)
            .at(path)?;
        if &f[0..8] != RUN_MAGIC
            || crate::le::u32_at(&f, 8) != E::KIND
            || crate::le::u32_at(&f, 12) as usize != E::LEN
        {
            return Err(bad(
                "index run footer has the wrong magic, kind or entry length".into(),
            ));
        }
        let n = crate::le::u64_at(&f, 16);
        let bloom_words = u64::from(crate::le::u32_at(&f, 40));
        let table_len = Self::pages_of(n)
            .checked_mul(Self::table_entry_len() as u64)
            .ok_or_else(|| bad(format!("impossible entry count {n} in the run footer")))?;
        let data_len = table_len
            .checked_add(bloom_words * 8 + FOOTER_LEN as u64)
            .and_then(|meta| len.checked_sub(meta))
            .ok_or_else(|| {
                bad(format!(
                    "index run is {len} bytes, too short for the {n} entries and \
                     {bloom_words} bloom words its footer claims"
                ))
            })?;
        let mut meta = vec![0u8; (table_len + bloom_words * 8) as usize];
        file.read_exact_at(&mut meta, data_len).at(path)?;
        let crc = crc32c::crc32c_append(crc32c::crc32c(&meta), &f[..FOOTER_CHECKED]);
        if crc != crate::le::u32_at(&f, FOOTER_CHECKED) {
            return Err(bad(
                "index run metadata (footer, page table or bloom filter) checksum mismatch".into(),
            ));
        }
        let (table, bloom_bytes) = meta.split_at(table_len as usize);
        let key_len = Self::key_len();
        let (mut fences, mut page_crcs) = (Vec::new(), Vec::new());
        let mut page_starts = vec![0u64];
        for t in table.chunks_exact(Self::table_entry_len()) {
            fences.push(E::decode_key(&t[..key_len]));
            page_crcs.push(crate::le::u32_at(t, key_len));
            let page_len = u64::from(crate::le::u32_at(t, key_len + 4));
            if page_len > MAX_PAGE_BYTES {
                return Err(bad(format!(
                    "index run page table gives page {} {page_len} bytes",
                    fences.len() - 1
                )));
            }
            page_starts.push(page_starts[page_starts.len() - 1] + page_len);
        }
        if page_starts.last() != Some(&data_len) {
            return Err(bad(format!(
                "index run pages add up to {} bytes where the file holds {data_len}",
                page_starts.last().unwrap_or(&0)
            )));
        }
        let bloom = bloom_bytes
            .chunks_exact(8)
            .map(|c| crate::le::u64_at(c, 0))
            .collect();
        // Lookups read single pages at random: no readahead around them.
        // Only advice: nothing depends on it being taken.
        // SAFETY: posix_fadvise only reads its arguments; the fd is open.
        unsafe {
            libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_RANDOM);
        }
        // Slots for CACHED_BYTES_PER_RUN of pages of this run's mean size:
        // packed pages are 0.6 to 1.5 KiB.
        let pages = Self::pages_of(n) as usize;
        let mean_page = data_len / (pages as u64).max(1);
        let cached =
            pages.min(((CACHED_BYTES_PER_RUN / mean_page.max(1)) as usize).max(CACHED_PAGES_MIN));
        Ok(Run {
            path: path.to_path_buf(),
            file,
            file_len: len,
            n,
            first_seq: Seq(crate::le::u64_at(&f, 24)),
            last_seq: Seq(crate::le::u64_at(&f, 32)),
            fences,
            page_crcs: page_crcs.into(),
            page_starts: page_starts.into(),
            bloom,
            pages: (0..cached).map(|_| Mutex::new(None)).collect(),
        })
    }

    fn key_len() -> usize {
        // Keys are the entries' prefixes: 16 bytes (block, seq) or 32 (hash).
        if E::KIND == BlockVersion::KIND {
            16
        } else {
            32
        }
    }

    fn table_entry_len() -> usize {
        Self::key_len() + PAGE_META_LEN
    }

    fn pages_of(n: u64) -> u64 {
        n.div_ceil(PAGE_ENTRIES as u64)
    }

    /// Entries on page `page`.
    fn page_count(&self, page: usize) -> usize {
        let start = page as u64 * PAGE_ENTRIES as u64;
        (self.n - start).min(PAGE_ENTRIES as u64) as usize
    }

    /// Read page `page` as stored and check it.
    fn read_packed(&self, page: usize) -> Result<Vec<u8>> {
        let (from, to) = (self.page_starts[page], self.page_starts[page + 1]);
        let mut packed = vec![0u8; (to - from) as usize];
        self.file.read_exact_at(&mut packed, from).at(&self.path)?;
        check_page(&self.path, page, &packed, self.page_crcs[page])?;
        Ok(packed)
    }

    /// Read page `page`, check it, and unpack it into `buf` as fixed-size
    /// entries; returns its entry count.
    fn read_page(&self, page: usize, buf: &mut Vec<u8>) -> Result<usize> {
        let count = self.page_count(page);
        let packed = self.read_packed(page)?;
        buf.clear();
        unpack_page::<E>(&self.path, page, &packed, count, buf)?;
        Ok(count)
    }

    /// Page `page` as stored, checked, from memory or read and kept.
    fn cached_page(&self, page: usize) -> Result<Arc<[u8]>> {
        let Some(slot) = self.pages.get(page % self.pages.len().max(1)) else {
            return Ok(self.read_packed(page)?.into());
        };
        if let Some((p, data)) = &*slot.lock() {
            if *p == page {
                return Ok(data.clone());
            }
        }
        let data: Arc<[u8]> = self.read_packed(page)?.into();
        *slot.lock() = Some((page, data.clone()));
        Ok(data)
    }

    /// The entry with the greatest key <= `key`.
    pub fn find_le(&self, key: &E::Key) -> Result<Option<E>> {
        let p = self.fences.partition_point(|f| f <= key);
        if p == 0 {
            return Ok(None);
        }
        let packed = self.cached_page(p - 1)?;
        let bad = |what: &str| {
            StoreError::corrupted(&self.path, format!("index run page {} {what}", p - 1))
        };
        let page = PageView::new(&packed, self.page_count(p - 1))
            .ok_or_else(|| bad("has a bad table of restart points"))?;
        match page.find_le::<E>(key) {
            Some(Some(e)) => Ok(Some(e)),
            // The page's first key is its fence, which is <= key; both are
            // checksummed, so only a writer bug gets here.
            Some(None) => Err(bad("does not start with its fence key")),
            None => Err(bad("does not unpack")),
        }
    }

    /// The entry with the least key > `key`: one page read, two when the
    /// answer opens the next page.
    pub fn find_gt(&self, key: &E::Key) -> Result<Option<E>> {
        let p = self.fences.partition_point(|f| f <= key);
        let mut buf = Vec::new();
        if p > 0 {
            let count = self.read_page(p - 1, &mut buf)?;
            let q = partition(&buf, count, |b| E::decode_key(b) <= *key);
            if q < count {
                return self.decode_at(&buf, q).map(Some);
            }
        }
        if p >= self.fences.len() {
            return Ok(None);
        }
        self.read_page(p, &mut buf)?;
        self.decode_at(&buf, 0).map(Some)
    }

    fn decode_at(&self, page: &[u8], i: usize) -> Result<E> {
        E::decode(&page[i * E::LEN..(i + 1) * E::LEN])
            .ok_or_else(|| StoreError::corrupted(&self.path, "index run entry does not decode"))
    }

    /// The entry whose key equals `key`, consulting the bloom filter first.
    pub fn find_eq(&self, key: &E::Key) -> Result<Option<E>> {
        if let Some((h1, h2)) = E::bloom_hashes(key) {
            if !self.bloom.is_empty() && !bloom_may_contain(&self.bloom, h1, h2) {
                return Ok(None);
            }
        }
        Ok(self.find_le(key)?.filter(|e| e.key() == *key))
    }

    /// Every entry, in key order, streamed from the file, each page checked.
    pub fn iter(&self) -> Result<RunIter<E>> {
        Ok(RunIter {
            file: self.file.try_clone().at(&self.path)?,
            page: 0,
            left: self.n,
            page_crcs: self.page_crcs.clone(),
            page_starts: self.page_starts.clone(),
            packed: Vec::new(),
            path: self.path.clone(),
            buf: Vec::new(),
            at: 0,
            _e: std::marker::PhantomData,
        })
    }

    /// Every entry, decoded without checking page checksums (`None` where
    /// one does not decode): for `verify`, to name the first entry that
    /// differs from the log even in a damaged page.
    pub fn raw_entries(&self) -> Result<Vec<Option<E>>> {
        let end = self.page_starts[self.page_starts.len() - 1];
        let mut bytes = vec![0u8; end as usize];
        self.file.read_exact_at(&mut bytes, 0).at(&self.path)?;
        let mut out = Vec::with_capacity(self.n as usize);
        for page in 0..self.page_crcs.len() {
            let (from, to) = (self.page_starts[page], self.page_starts[page + 1]);
            let count = self.page_count(page);
            match PageView::new(&bytes[from as usize..to as usize], count) {
                Some(v) => {
                    v.each::<E>(|e| out.push(e));
                }
                None => out.extend(std::iter::repeat_n(None, count)),
            }
        }
        Ok(out)
    }

    /// Check every page against its checksum: `Ok(None)` when all match,
    /// else the first bad page and the entries it holds.
    pub fn check_pages(&self) -> Result<Option<(usize, std::ops::Range<u64>)>> {
        let mut buf = Vec::new();
        for page in 0..self.page_crcs.len() {
            match self.read_page(page, &mut buf) {
                Ok(_) => {}
                Err(StoreError::Corrupted { .. }) => {
                    let start = (page * PAGE_ENTRIES) as u64;
                    let end = (start + PAGE_ENTRIES as u64).min(self.n);
                    return Ok(Some((page, start..end)));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }
}

/// A stored page: its packed entries, in groups of [`RESTART_ENTRIES`]
/// each starting at a restart point, and the restart points' offsets.
struct PageView<'a> {
    entries: &'a [u8],
    /// Offsets of restart points 1.. (u16 each; restart 0 is at 0).
    restarts: &'a [u8],
    count: usize,
}

impl<'a> PageView<'a> {
    /// `None` if the page cannot hold `count` entries' restart points, or
    /// they are out of order.
    fn new(packed: &'a [u8], count: usize) -> Option<PageView<'a>> {
        let groups = count.div_ceil(RESTART_ENTRIES).max(1);
        let at = packed.len().checked_sub(2 * (groups - 1))?;
        let (entries, restarts) = packed.split_at(at);
        let v = PageView {
            entries,
            restarts,
            count,
        };
        let ordered = (1..groups).all(|g| v.group_start(g - 1) < v.group_start(g))
            && v.group_start(groups - 1) <= entries.len();
        ordered.then_some(v)
    }

    fn groups(&self) -> usize {
        self.restarts.len() / 2 + 1
    }

    fn group_start(&self, g: usize) -> usize {
        if g == 0 {
            0
        } else {
            usize::from(u16::from_le_bytes([
                self.restarts[2 * (g - 1)],
                self.restarts[2 * (g - 1) + 1],
            ]))
        }
    }

    /// Group `g`'s bytes and entry count.
    fn group(&self, g: usize) -> (&'a [u8], usize) {
        let end = if g + 1 < self.groups() {
            self.group_start(g + 1)
        } else {
            self.entries.len()
        };
        let n = (self.count - g * RESTART_ENTRIES).min(RESTART_ENTRIES);
        (&self.entries[self.group_start(g)..end], n)
    }

    /// Every entry, calling `f` with each (`None` once one does not
    /// unpack: the rest of its group cannot be placed). `false` if any did
    /// not, or a group has bytes left over.
    fn each<E: RunEntry>(&self, mut f: impl FnMut(Option<E>)) -> bool {
        let mut whole = true;
        for g in 0..self.groups() {
            let (mut b, n) = self.group(g);
            let mut prev: Option<E> = None;
            for i in 0..n {
                let e = if i > 0 && prev.is_none() {
                    None
                } else {
                    E::unpack(prev.as_ref(), &mut b)
                };
                whole &= e.is_some();
                f(e);
                prev = e;
            }
            whole &= b.is_empty();
        }
        whole
    }

    /// The entry with the greatest key <= `key` (`Some(None)`: every key
    /// is greater); `None` if the bytes on the way do not unpack.
    fn find_le<E: RunEntry>(&self, key: &E::Key) -> Option<Option<E>> {
        // The last group whose restart entry's key is <= key.
        let (mut lo, mut hi) = (0usize, self.groups());
        while lo < hi {
            let mid = (lo + hi) / 2;
            let mut b = self.group(mid).0;
            if E::unpack(None, &mut b)?.key() <= *key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo == 0 {
            return Some(None);
        }
        let (mut b, n) = self.group(lo - 1);
        let mut found: Option<E> = None;
        for _ in 0..n {
            let e = E::unpack(found.as_ref(), &mut b)?;
            if e.key() > *key {
                break;
            }
            found = Some(e);
        }
        Some(found)
    }
}

/// Unpack a page's `count` packed entries (checked already) into `out` as
/// fixed-size entries; every byte of the page must be used.
fn unpack_page<E: RunEntry>(
    path: &Path,
    page: usize,
    packed: &[u8],
    count: usize,
    out: &mut Vec<u8>,
) -> Result<()> {
    let bad = || {
        StoreError::corrupted(
            path,
            format!("index run page {page} does not unpack into {count} entries"),
        )
    };
    let view = PageView::new(packed, count).ok_or_else(bad)?;
    let at = out.len();
    out.resize(at + count * E::LEN, 0);
    let mut i = 0;
    let whole = view.each::<E>(|e| {
        if let Some(e) = e {
            e.encode(&mut out[at + i * E::LEN..at + (i + 1) * E::LEN]);
        }
        i += 1;
    });
    if !whole {
        return Err(bad());
    }
    Ok(())
}

fn check_page(path: &Path, page: usize, bytes: &[u8], crc: u32) -> Result<()> {
    if crc32c::crc32c(bytes) != crc {
        return Err(StoreError::corrupted(
            path,
            format!(
                "index run page {page} (entries {}..) checksum mismatch; delete the store's \
                 index/ directory to have it rebuilt from the log",
                page * PAGE_ENTRIES
            ),
        ));
    }
    Ok(())
}

fn partition(buf: &[u8], count: usize, pred: impl Fn(&[u8]) -> bool) -> usize {
    let len = buf.len() / count.max(1);
    let (mut lo, mut hi) = (0usize, count);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if pred(&buf[mid * len..(mid + 1) * len]) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

fn bloom_positions(words: usize, h1: u64, h2: u64) -> impl Iterator<Item = (usize, u64)> {
    let bits = words as u64 * 64;
    (0..BLOOM_PROBES).map(move |i| {
        let bit = h1.wrapping_add(i.wrapping_mul(h2)) % bits;
        ((bit / 64) as usize, 1u64 << (bit % 64))
    })
}

fn bloom_may_contain(bloom: &[u64], h1: u64, h2: u64) -> bool {
    bloom_positions(bloom.len(), h1, h2).all(|(w, m)| bloom[w] & m != 0)
}

/// Streams a run's entries in order, a few pages per `pread` (at its own
/// position: clones of a file share an offset, so `read` would not do),
/// each page checked against its checksum.
pub struct RunIter<E: RunEntry> {
    file: File,
    /// Next page to read.
    page: usize,
    left: u64,
    page_crcs: Arc<[u32]>,
    page_starts: Arc<[u64]>,
    path: PathBuf,
    /// Pages as read, packed.
    packed: Vec<u8>,
    /// Their entries, unpacked.
    buf: Vec<u8>,
    at: usize,
    _e: std::marker::PhantomData<E>,
}

/// Pages read at once by [`RunIter`].
const ITER_PAGES: usize = 16;

impl<E: RunEntry> RunIter<E> {
    fn fill(&mut self) -> Result<()> {
        let k = self.left.min((ITER_PAGES * PAGE_ENTRIES) as u64);
        let pages = (k as usize).div_ceil(PAGE_ENTRIES);
        let (from, to) = (
            self.page_starts[self.page],
            self.page_starts[self.page + pages],
        );
        self.packed.resize((to - from) as usize, 0);
        self.file
            .read_exact_at(&mut self.packed, from)
            .at(&self.path)?;
        self.buf.clear();
        let mut left = k as usize;
        for p in self.page..self.page + pages {
            let at =
                (self.page_starts[p] - from) as usize..(self.page_starts[p + 1] - from) as usize;
            let page = &self.packed[at];
            check_page(&self.path, p, page, self.page_crcs[p])?;
            let count = left.min(PAGE_ENTRIES);
            unpack_page::<E>(&self.path, p, page, count, &mut self.buf)?;
            left -= count;
        }
        self.page += pages;
        self.left -= k;
        self.at = 0;
        Ok(())
    }
}

impl<E: RunEntry> Iterator for RunIter<E> {
    type Item = Result<E>;
    fn next(&mut self) -> Option<Result<E>> {
        if self.at >= self.buf.len() {
            if self.left == 0 {
                return None;
            }
            if let Err(e) = self.fill() {
                self.left = 0;
                self.buf.clear();
                return Some(Err(e));
            }
        }
        let e = &self.buf[self.at..self.at + E::LEN];
        self.at += E::LEN;
        Some(E::decode(e).ok_or_else(|| StoreError::corrupted(&self.path, "bad index entry")))
    }
}

/// Write a run from entries already sorted by key; the file appears
/// atomically (temporary name, fsync, rename). `n` is an upper bound on the
/// number of entries (it sizes the bloom filter); the footer holds the count.
pub fn write_run<E: RunEntry>(
    path: &Path,
    n: u64,
    first_seq: Seq,
    last_seq: Seq,
    entries: impl Iterator<Item = Result<E>>,
) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let file = crate::store::files::create_private(&tmp)?;
    let mut w = BufWriter::with_capacity(1 << 16, file);
    let key_len = Run::<E>::key_len();
    let keeps_bloom = E::KIND == StoredContent::KIND;
    let bloom_words = if keeps_bloom {
        ((n as usize * BLOOM_BITS_PER_ENTRY).div_ceil(64)).max(1)
    } else {
        0
    };
    let mut bloom = vec![0u64; bloom_words];
    let mut table =
        Vec::with_capacity(Run::<E>::pages_of(n) as usize * Run::<E>::table_entry_len());
    let (mut buf, mut back_buf) = (vec![0u8; E::LEN], vec![0u8; E::LEN]);
    let mut page = Vec::with_capacity(PAGE_ENTRIES * 16);
    let mut count = 0u64;
    let mut prev: Option<E> = None;
    let mut restarts: Vec<u8> = Vec::new();
    let mut end_page = |page: &mut Vec<u8>, restarts: &mut Vec<u8>, table: &mut Vec<u8>| {
        page.append(restarts);
        if page.len() as u64 > MAX_PAGE_BYTES {
            return Err(StoreError::corrupted(
                path,
                format!(
                    "an index run page packs into {} bytes (writer bug)",
                    page.len()
                ),
            ));
        }
        table.extend_from_slice(&crc32c::crc32c(page).to_le_bytes());
        table.extend_from_slice(&(page.len() as u32).to_le_bytes());
        w.write_all(page).at(&tmp)?;
        page.clear();
        Ok(())
    };
    for e in entries {
        let e = e?;
        if prev.is_some_and(|p| p.key() >= e.key()) {
            return Err(StoreError::corrupted(
                path,
                "index entries out of order while writing a run",
            ));
        }
        if count % PAGE_ENTRIES as u64 == 0 {
            if count > 0 {
                end_page(&mut page, &mut restarts, &mut table)?;
            }
            e.encode(&mut buf);
            table.extend_from_slice(&buf[..key_len]);
            prev = None;
        } else if count % RESTART_ENTRIES as u64 == 0 {
            restarts.extend_from_slice(&(page.len() as u16).to_le_bytes());
            prev = None;
        }
        if let Some((h1, h2)) = E::bloom_hashes(&e.key()) {
            for (wi, m) in bloom_positions(bloom_words, h1, h2) {
                bloom[wi] |= m;
            }
        }
        // Every entry is read back as it will be: one that would not
        // survive packing (a value past what the format holds) is refused
        // here, never stored wrong.
        let at = page.len();
        e.pack(prev.as_ref(), &mut page);
        let mut b = &page[at..];
        let back = E::unpack(prev.as_ref(), &mut b);
        e.encode(&mut buf);
        let same = back.is_some_and(|x| {
            x.encode(&mut back_buf);
            back_buf == buf
        });
        if !same || !b.is_empty() {
            return Err(StoreError::corrupted(
                path,
                "an index entry does not survive packing (writer bug)",
            ));
        }
        prev = Some(e);
        count += 1;
    }
    if count > 0 {
        end_page(&mut page, &mut restarts, &mut table)?;
    }
    if count > n {
        return Err(StoreError::corrupted(
            path,
            format!("run promised at most {n} entries, got {count}"),
        ));
    }
    let mut meta = crc32c::crc32c(&table);
    w.write_all(&table).at(&tmp)?;
    for word in &bloom {
        meta = crc32c::crc32c_append(meta, &word.to_le_bytes());
        w.write_all(&word.to_le_bytes()).at(&tmp)?;
    }
    let mut f = [0u8; FOOTER_LEN];
    f[0..8].copy_from_slice(RUN_MAGIC);
    f[8..12].copy_from_slice(&E::KIND.to_le_bytes());
    f[12..16].copy_from_slice(&(E::LEN as u32).to_le_bytes());
    f[16..24].copy_from_slice(&count.to_le_bytes());
    f[24..32].copy_from_slice(&first_seq.0.to_le_bytes());
    f[32..40].copy_from_slice(&last_seq.0.to_le_bytes());
    f[40..44].copy_from_slice(&(bloom_words as u32).to_le_bytes());
    meta = crc32c::crc32c_append(meta, &f[..FOOTER_CHECKED]);
    f[FOOTER_CHECKED..].copy_from_slice(&meta.to_le_bytes());
    w.write_all(&f).at(&tmp)?;
    let file = w
        .into_inner()
        .map_err(|e| StoreError::io(&tmp, e.into_error()))?;
    file.sync_all().at(&tmp)?;
    std::fs::rename(&tmp, path).at(path)?;
    Ok(())
}

/// Merge the streams of runs covering consecutive records (oldest first)
/// into one sorted stream: [`merge`] folded over them.
pub fn merge_all<'a, E: RunEntry + 'a>(
    runs: Vec<RunIter<E>>,
) -> Box<dyn Iterator<Item = Result<E>> + 'a> {
    let mut it = runs.into_iter();
    let first: Box<dyn Iterator<Item = Result<E>> + 'a> = match it.next() {
        Some(r) => Box::new(r),
        None => Box::new(std::iter::empty()),
    };
    it.fold(first, |acc, r| Box::new(merge(acc, r)))
}

/// Merge two sorted streams into one. Keys never repeat across runs
/// covering disjoint records; if one does, the older wins.
pub fn merge<E: RunEntry>(
    older: impl Iterator<Item = Result<E>>,
    newer: impl Iterator<Item = Result<E>>,
) -> impl Iterator<Item = Result<E>> {
    let mut a = older.peekable();
    let mut b = newer.peekable();
    std::iter::from_fn(move || {
        let (take_a, drop_b) = match (a.peek(), b.peek()) {
            (None, None) => return None,
            (Some(_), None) => (true, false),
            (None, Some(_)) => (false, false),
            (Some(Err(_)), _) => (true, false),
            (_, Some(Err(_))) => (false, false),
            (Some(Ok(x)), Some(Ok(y))) => (x.key() <= y.key(), x.key() == y.key()),
        };
        if drop_b {
            b.next();
        }
        if take_a {
            a.next()
        } else {
            b.next()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(o: u64) -> Loc {
        Loc {
            offset_bytes: o,
            stored_len: 4096,
            encoding: Encoding::Raw,
        }
    }

    #[test]
    fn find_le_and_eq_across_pages() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.run");
        let entries: Vec<BlockVersion> = (0..1000u64)
            .flat_map(|b| {
                (1..=3).map(move |s| BlockVersion {
                    block: b * 2,
                    seq: s * 10,
                    loc: loc(b * 100 + s),
                })
            })
            .collect();
        write_run(
            &p,
            entries.len() as u64,
            Seq(10),
            Seq(30),
            entries.iter().copied().map(Ok),
        )
        .unwrap();
        let run = Run::<BlockVersion>::open(&p).unwrap();
        assert_eq!(run.check_pages().unwrap(), None);
        assert_eq!(run.find_le(&(0, 5)).unwrap(), None);
        assert_eq!(run.find_le(&(0, 10)).unwrap().unwrap().loc, loc(1));
        assert_eq!(run.find_le(&(500, 25)).unwrap().unwrap().loc, loc(25002));
        // Block 501 is absent: the answer is the last version of block 500.
        assert_eq!(run.find_le(&(501, u64::MAX)).unwrap().unwrap().block, 500);
        assert_eq!(run.find_le(&(1998, 999)).unwrap().unwrap().loc, loc(99903));
        // The next version after a key, within a page and across pages.
        assert_eq!(run.find_gt(&(0, 0)).unwrap().unwrap().key(), (0, 10));
        assert_eq!(run.find_gt(&(0, 10)).unwrap().unwrap().key(), (0, 20));
        assert_eq!(run.find_gt(&(0, 30)).unwrap().unwrap().key(), (2, 10));
        for (i, e) in entries.iter().enumerate().take(entries.len() - 1) {
            assert_eq!(run.find_gt(&e.key()).unwrap(), Some(entries[i + 1]));
        }
        assert_eq!(run.find_gt(&(1998, 30)).unwrap(), None);
        assert_eq!(run.find_gt(&(5000, 0)).unwrap(), None);
        let all: Vec<_> = run.iter().unwrap().map(|e| e.unwrap()).collect();
        assert_eq!(all, entries);
    }

    /// Every byte of a run is under a checksum a reader checks: a flip is
    /// an error at open or at the page that holds it, never a wrong entry.
    #[test]
    fn every_byte_of_a_run_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.dedup");
        let mk = |i: u64| StoredContent {
            hash: dedup_key(&i.to_le_bytes()),
            loc: loc(i * 4096),
        };
        let mut entries: Vec<_> = (0..150).map(mk).collect();
        entries.sort_by_key(|e| e.hash);
        write_run(&p, 150, Seq(3), Seq(9), entries.iter().copied().map(Ok)).unwrap();
        let good = std::fs::read(&p).unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        for i in 0..good.len() {
            f.write_all_at(&[good[i] ^ 0x10], i as u64).unwrap();
            let opened = Run::<StoredContent>::open(&p);
            f.write_all_at(&good[i..=i], i as u64).unwrap();
            let Ok(run) = opened else {
                continue;
            };
            f.write_all_at(&[good[i] ^ 0x10], i as u64).unwrap();
            assert!(run.check_pages().unwrap().is_some(), "flip at {i} unseen");
            for e in entries.iter().step_by(16) {
                if let Ok(found) = run.find_eq(&e.hash) {
                    assert_eq!(found, Some(*e), "flip at {i} gives a wrong answer");
                }
            }
            assert!(run.iter().unwrap().any(|e| e.is_err()), "flip at {i}");
            f.write_all_at(&good[i..=i], i as u64).unwrap();
        }
    }

    #[test]
    fn dedup_bloom_and_merge() {
        let dir = tempfile::tempdir().unwrap();
        let mk = |i: u64| StoredContent {
            hash: dedup_key(&i.to_le_bytes()),
            loc: loc(i),
        };
        let mut a: Vec<_> = (0..300).map(mk).collect();
        let mut b: Vec<_> = (300..700).map(mk).collect();
        a.sort_by_key(|e| e.hash);
        b.sort_by_key(|e| e.hash);
        let (pa, pb, pm) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("m"),
        );
        write_run(&pa, 300, Seq(1), Seq(1), a.iter().copied().map(Ok)).unwrap();
        write_run(&pb, 400, Seq(2), Seq(2), b.iter().copied().map(Ok)).unwrap();
        let (ra, rb) = (
            Run::<StoredContent>::open(&pa).unwrap(),
            Run::<StoredContent>::open(&pb).unwrap(),
        );
        write_run(
            &pm,
            700,
            Seq(1),
            Seq(2),
            merge(ra.iter().unwrap(), rb.iter().unwrap()),
        )
        .unwrap();
        let m = Run::<StoredContent>::open(&pm).unwrap();
        for i in 0..700 {
            assert_eq!(m.find_eq(&mk(i).hash).unwrap().unwrap().loc, loc(i));
        }
        let misses = (700..10_700)
            .filter(|i| ra.find_eq(&mk(*i).hash).unwrap().is_some())
            .count();
        assert_eq!(misses, 0);
    }

    /// A key that packing cannot hold (dedup keys are 8 bytes) is refused
    /// when the run is written, never stored cut short.
    #[test]
    fn an_entry_packing_cannot_hold_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let e = StoredContent {
            hash: *blake3::hash(b"x").as_bytes(),
            loc: loc(0),
        };
        let err = write_run(
            &dir.path().join("a"),
            1,
            Seq(1),
            Seq(1),
            [Ok(e)].into_iter(),
        );
        assert!(matches!(err, Err(StoreError::Corrupted { .. })), "{err:?}");
        assert!(!dir.path().join("a").exists());
    }

    /// What packing costs: the blocks of one large write about 5 bytes an
    /// entry; single-block writes to random blocks about 10.
    #[test]
    fn packed_entries_are_small() {
        let dir = tempfile::tempdir().unwrap();
        let seq_run: Vec<BlockVersion> = (0..25_600u64)
            .map(|i| BlockVersion {
                block: i,
                seq: i / 256 + 1,
                loc: loc((i / 256) * (256 * 4097 + 200) + 200 + (i % 256) * 4097),
            })
            .collect();
        let p = dir.path().join("seq.run");
        write_run(
            &p,
            25_600,
            Seq(1),
            Seq(100),
            seq_run.iter().copied().map(Ok),
        )
        .unwrap();
        let per = std::fs::metadata(&p).unwrap().len() as f64 / 25_600.0;
        assert!(per <= 5.0, "{per} bytes per sequential entry");
        let run = Run::<BlockVersion>::open(&p).unwrap();
        assert_eq!(
            run.iter().unwrap().map(|e| e.unwrap()).collect::<Vec<_>>(),
            seq_run
        );

        let mut x = 88_172_645_463_325_252u64;
        let mut random: Vec<BlockVersion> = (1..=100_000u64)
            .map(|seq| {
                let x = crate::testing::xorshift64(&mut x);
                BlockVersion {
                    block: x % 262_144,
                    seq,
                    loc: loc(seq * 4213),
                }
            })
            .collect();
        random.sort_by_key(|e| e.key());
        random.dedup_by_key(|e| e.key());
        let p = dir.path().join("random.run");
        let n = random.len() as u64;
        write_run(&p, n, Seq(1), Seq(100_000), random.iter().copied().map(Ok)).unwrap();
        let per = std::fs::metadata(&p).unwrap().len() as f64 / n as f64;
        assert!(per <= 12.0, "{per} bytes per random entry");
        let run = Run::<BlockVersion>::open(&p).unwrap();
        for e in random.iter().step_by(97) {
            assert_eq!(run.find_le(&e.key()).unwrap(), Some(*e));
        }
    }

    /// Lookups through the restart points agree with a sorted map, for
    /// keys present, between and beyond, on pages full and partial.
    #[test]
    fn find_le_agrees_with_a_sorted_map() {
        let dir = tempfile::tempdir().unwrap();
        let mut x = 0x1234_5678_9abc_def1u64;
        let mut next = || crate::testing::xorshift64(&mut x);
        for n in [1u64, 15, 16, 17, 127, 128, 129, 1000, 5_003] {
            let mut map = std::collections::BTreeMap::new();
            while (map.len() as u64) < n {
                let (block, seq) = (next() % 700, next() % 10_000 + 1);
                map.insert((block, seq), loc(next() % (1 << 40)));
            }
            let entries: Vec<BlockVersion> = map
                .iter()
                .map(|(&(block, seq), &loc)| BlockVersion { block, seq, loc })
                .collect();
            let p = dir.path().join(format!("{n}.run"));
            write_run(&p, n, Seq(1), Seq(10_000), entries.iter().copied().map(Ok)).unwrap();
            let run = Run::<BlockVersion>::open(&p).unwrap();
            for _ in 0..3_000 {
                let key = (next() % 720, next() % 10_010);
                let want = map
                    .range(..=key)
                    .next_back()
                    .map(|(&(block, seq), &loc)| BlockVersion { block, seq, loc });
                assert_eq!(run.find_le(&key).unwrap(), want, "{n} entries, key {key:?}");
            }
            let raw: Vec<_> = run
                .raw_entries()
                .unwrap()
                .into_iter()
                .map(Option::unwrap)
                .collect();
            assert_eq!(raw, entries);
        }
    }
}
