//! `make bench`: metadata bytes per block version (issue 14).
//!
//! Two workloads, each into a new store (block size 4096, a 1 GiB disk),
//! recorded through the library writer and closed (log synced, index
//! flushed and merged) before anything is measured:
//!
//! 1. 100,000 random 4 KiB writes (`DISKHIST_BENCH_SPACE_WRITES`), each at
//!    a random block. Target: <= 64 B per version (the 2013 reference
//!    design: 26 B).
//! 2. 1 MiB sequential writes, 1024 records of 256 blocks
//!    (`DISKHIST_BENCH_SPACE_RECORDS`): 1 GiB, the disk written once.
//!    Target: <= 8 B per version.
//!
//! Metadata per version is (log bytes - payload bytes + index bytes) /
//! block versions, with the payload the block content stored in the log
//! (raw or lz4 bytes, without the entries' tags and lengths). Every block
//! written is unique and incompressible (xorshift seeded per version), so
//! neither dedup nor lz4 can shrink the payload; the bench walks the log and
//! says so, counting block entries by encoding.
//!
//! Sizes are file sizes (`st_size`); what the filesystem allocated
//! (`st_blocks * 512`) is printed beside them. The index is broken down by
//! kind: sorted runs (`*.run`), dedup runs (`*.dedup`), `seqs`, the Merkle
//! tree's hashes (`tree/`), and anything else (`MANIFEST`). There is no
//! peer to compare with: each figure is printed with its target and the
//! ratio figure/target (at most 1 meets it).
//!
//! Prints figures; run with `cargo bench --bench space`.
//! Set DISKHIST_BENCH_DIR to place the stores (default: a temp dir).

use diskhist::store::layout;
use diskhist::store::{Op, OpFlags, Store, Writer};
use diskhist::testing::format::{
    parse_block_entries, read_record_at, record_body, BlockEntry, Encoding, RecordKind,
    RECORD_TRAILER_LEN,
};
use diskhist::TimeNs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Instant;

const BLOCK_BYTES: usize = 4096;
const DISK_BYTES: u64 = 1 << 30;
const DISK_BLOCKS: u64 = DISK_BYTES / BLOCK_BYTES as u64;

/// xorshift64: the bench's only source of randomness.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        // Spread nearby seeds apart (splitmix64's finaliser); never zero.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        XorShift((z ^ (z >> 31)) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Fill `block` with incompressible bytes unique to `version`.
fn fill_unique(block: &mut [u8], version: u64) {
    let mut rng = XorShift::new(version);
    for word in block.chunks_exact_mut(8) {
        word.copy_from_slice(&rng.next().to_le_bytes());
    }
}

/// Bytes of one file or of everything under a directory: (st_size,
/// st_blocks * 512).
#[derive(Debug, Default, Clone, Copy)]
struct Bytes {
    size: u64,
    alloc: u64,
}

impl Bytes {
    fn of(meta: &std::fs::Metadata) -> Bytes {
        Bytes {
            size: meta.len(),
            alloc: meta.blocks() * 512,
        }
    }
    fn add(&mut self, other: Bytes) {
        self.size += other.size;
        self.alloc += other.alloc;
    }
}

/// The index's files by kind.
#[derive(Debug, Default)]
struct IndexBytes {
    runs: Bytes,
    run_files: usize,
    dedup: Bytes,
    dedup_files: usize,
    seqs: Bytes,
    tree: Bytes,
    other: Bytes,
    other_names: Vec<String>,
}

impl IndexBytes {
    fn total(&self) -> Bytes {
        let mut t = Bytes::default();
        for b in [self.runs, self.dedup, self.seqs, self.tree, self.other] {
            t.add(b);
        }
        t
    }
}

fn index_bytes(store: &Path) -> IndexBytes {
    let mut out = IndexBytes::default();
    let root = store.join(layout::INDEX_DIR);
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            if meta.is_dir() {
                dirs.push(e.path());
                continue;
            }
            let b = Bytes::of(&meta);
            let rel = e.path().strip_prefix(&root).unwrap().to_path_buf();
            let name = rel.to_string_lossy().into_owned();
            if rel.starts_with(layout::TREE_DIR) {
                out.tree.add(b);
            } else if name == layout::SEQS_FILE {
                out.seqs.add(b);
            } else if name.ends_with(".run") {
                out.runs.add(b);
                out.run_files += 1;
            } else if name.ends_with(".dedup") {
                out.dedup.add(b);
                out.dedup_files += 1;
            } else {
                out.other.add(b);
                out.other_names.push(name);
            }
        }
    }
    out.other_names.sort();
    out
}

/// What the log holds, record by record.
#[derive(Debug, Default)]
struct LogBytes {
    file: Bytes,
    records: u64,
    /// Record headers and trailers (crc32c).
    framing: u64,
    /// Block entries: tags, lz4 lengths, whole references.
    entry_overhead: u64,
    /// Block content stored raw or as lz4 data.
    payload: u64,
    versions: u64,
    raw: u64,
    lz4: u64,
    refs: u64,
    zero: u64,
}

fn log_bytes(store: &Path, block_size: u32) -> LogBytes {
    let path = store.join(layout::LOG_FILE);
    let log = std::fs::File::open(&path).unwrap();
    let meta = log.metadata().unwrap();
    let mut out = LogBytes {
        file: Bytes::of(&meta),
        ..LogBytes::default()
    };
    let len = meta.len();
    let mut buf = Vec::new();
    let mut at = 0u64;
    while at < len {
        let h = read_record_at(&log, at, len, &mut buf)
            .unwrap()
            .unwrap_or_else(|f| panic!("{}: record at byte {at}: {f:?}", path.display()));
        let rec_len = buf.len() as u64;
        out.records += 1;
        out.framing += (h.head_len() + RECORD_TRAILER_LEN) as u64;
        let body = record_body(&buf);
        if h.kind == RecordKind::Write {
            let bs = u64::from(block_size);
            let count = match h.length_bytes {
                0 => 0,
                n => ((h.offset_bytes + n - 1) / bs - h.offset_bytes / bs + 1) as usize,
            };
            let entries = parse_block_entries(body, count, block_size).unwrap();
            for e in entries {
                out.versions += 1;
                match e {
                    BlockEntry::Zero => out.zero += 1,
                    BlockEntry::Stored {
                        encoding,
                        stored_len,
                        ..
                    } => {
                        out.payload += u64::from(stored_len);
                        match encoding {
                            Encoding::Lz4 => out.lz4 += 1,
                            _ => out.raw += 1,
                        }
                    }
                    BlockEntry::Ref(_) => out.refs += 1,
                }
            }
        }
        out.entry_overhead += body.len() as u64;
        at += rec_len;
    }
    out.entry_overhead -= out.payload;
    assert_eq!(
        out.framing + out.entry_overhead + out.payload,
        len,
        "the log's bytes do not add up"
    );
    out
}

/// Record `records` writes of `blocks_per` blocks each, at the block
/// `start(i)` gives; every block version's content is unique.
fn record(
    dir: &Path,
    records: u64,
    blocks_per: u64,
    mut start: impl FnMut(u64) -> u64,
) -> (u64, f64) {
    Writer::init(dir, DISK_BYTES, BLOCK_BYTES as u32).unwrap();
    let mut w = Writer::open(dir).unwrap();
    let mut data = vec![0u8; blocks_per as usize * BLOCK_BYTES];
    let t = Instant::now();
    let mut version = 0u64;
    for i in 0..records {
        for block in data.chunks_exact_mut(BLOCK_BYTES) {
            fill_unique(block, version);
            version += 1;
        }
        let block = start(i);
        w.append(
            TimeNs(1_800_000_000_000_000_000 + i as i64 * 1_000_000),
            Op::Write {
                offset_bytes: block * BLOCK_BYTES as u64,
                data: &data,
            },
            OpFlags::default(),
        )
        .unwrap();
    }
    // The index is flushed (and its runs merged) on close: measure after.
    w.close().unwrap();
    (version, t.elapsed().as_secs_f64())
}

fn per(bytes: u64, versions: u64) -> f64 {
    bytes as f64 / versions as f64
}

fn report(name: &str, dir: &Path, written: u64, secs: f64, target: f64) {
    let log = log_bytes(dir, BLOCK_BYTES as u32);
    let idx = index_bytes(dir);
    let v = log.versions;
    assert_eq!(v, written, "block versions in the log");
    // The store's own accounting (what `info` shows) should agree.
    let space = Store::open(dir).unwrap().space().unwrap();
    if (space.log_bytes, space.index_bytes) != (log.file.size, idx.total().size) {
        println!(
            "  NOTE: Store::space says log {} bytes, index {} bytes; the files say {} and {}",
            space.log_bytes,
            space.index_bytes,
            log.file.size,
            idx.total().size
        );
    }

    let log_meta = log.file.size - log.payload;
    let log_meta_alloc = log.file.alloc.saturating_sub(log.payload);
    let total = log_meta + idx.total().size;
    let total_alloc = log_meta_alloc + idx.total().alloc;
    let fig = per(total, v);

    println!("{name}");
    println!(
        "  recorded: {} records, {v} block versions, {:.1} MiB written in {secs:.1} s",
        log.records,
        (v * BLOCK_BYTES as u64) as f64 / (1 << 20) as f64
    );
    println!(
        "  payload: {} bytes stored for {} bytes written ({:.4} of them); entries: {} raw, {} lz4, {} references (dedup), {} zero -> {}",
        log.payload,
        v * BLOCK_BYTES as u64,
        log.payload as f64 / (v * BLOCK_BYTES as u64) as f64,
        log.raw,
        log.lz4,
        log.refs,
        log.zero,
        if log.payload == v * BLOCK_BYTES as u64 && log.refs == 0 {
            "neither compression nor dedup shrank it"
        } else {
            "SHRUNK: the data was not incompressible and unique"
        }
    );
    println!(
        "  log: {} bytes (allocated {}); metadata in it {} bytes = {:.2} B/version",
        log.file.size,
        log.file.alloc,
        log_meta,
        per(log_meta, v)
    );
    println!(
        "    record headers+trailers: {} records, {:.1} B each = {:.2} B/version; block entry tags/lengths/references: {:.2} B/version",
        log.records,
        log.framing as f64 / log.records as f64,
        per(log.framing, v),
        per(log.entry_overhead, v)
    );
    println!(
        "    per record (log - payload): {:.1} B",
        log_meta as f64 / log.records as f64
    );
    println!(
        "  index: {} bytes (allocated {}) = {:.2} B/version (allocated {:.2})",
        idx.total().size,
        idx.total().alloc,
        per(idx.total().size, v),
        per(idx.total().alloc, v)
    );
    let other = if idx.other_names.is_empty() {
        String::new()
    } else {
        format!(" ({})", idx.other_names.join(", "))
    };
    for (kind, b) in [
        (format!("runs ({} .run)", idx.run_files), idx.runs),
        (format!("dedup ({} .dedup)", idx.dedup_files), idx.dedup),
        ("seqs".to_string(), idx.seqs),
        ("tree".to_string(), idx.tree),
        (format!("other{other}"), idx.other),
    ] {
        println!(
            "    {kind:<20} {:>12} bytes (allocated {:>12}) = {:>7.2} B/version (allocated {:.2})",
            b.size,
            b.alloc,
            per(b.size, v),
            per(b.alloc, v)
        );
    }
    println!(
        "  metadata per block version: {fig:.2} B (allocated: {:.2} B); target <= {target:.0} B; ratio figure/target {:.2}: {}",
        per(total_alloc, v),
        fig / target,
        if fig <= target { "MET" } else { "NOT MET" }
    );
}

fn main() {
    let base = std::env::var_os("DISKHIST_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::tempdir_in(&base).unwrap();
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };

    // 1. Random 4 KiB writes.
    let writes = env("DISKHIST_BENCH_SPACE_WRITES", 100_000);
    let dir = tmp.path().join("random-4k");
    let mut rng = XorShift::new(u64::MAX);
    let (v, secs) = record(&dir, writes, 1, |_| rng.next() % DISK_BLOCKS);
    report(
        &format!("{writes} random 4 KiB writes, unique incompressible data, 1 GiB disk:"),
        &dir,
        v,
        secs,
        64.0,
    );
    println!("  (no peer; the 2013 reference design's figure: 26 B per version)");
    std::fs::remove_dir_all(&dir).unwrap();

    // 2. 1 MiB sequential writes.
    let records = env("DISKHIST_BENCH_SPACE_RECORDS", 1024);
    let per_record = 256u64;
    let dir = tmp.path().join("sequential-1m");
    let (v, secs) = record(&dir, records, per_record, |i| {
        (i * per_record) % (DISK_BLOCKS - per_record + 1)
    });
    report(
        &format!("{records} sequential 1 MiB writes, unique incompressible data, 1 GiB disk:"),
        &dir,
        v,
        secs,
        8.0,
    );

    // 3. The same content written again, misaligned with the records that
    // hold it: with anchors only in the dedup runs for long writes, how
    // much is still found.
    let shift = 37u64;
    let mut w = Writer::open(&dir).unwrap();
    let before = std::fs::metadata(dir.join(layout::LOG_FILE)).unwrap().len();
    let mut data = vec![0u8; per_record as usize * BLOCK_BYTES];
    let t = Instant::now();
    for i in 0..records {
        for (k, block) in data.chunks_exact_mut(BLOCK_BYTES).enumerate() {
            fill_unique(block, (i * per_record + shift + k as u64) % v);
        }
        w.append(
            TimeNs(1_900_000_000_000_000_000 + i as i64 * 1_000_000),
            Op::Write {
                offset_bytes: ((i * per_record) % (DISK_BLOCKS - per_record + 1))
                    * BLOCK_BYTES as u64,
                data: &data,
            },
            OpFlags::default(),
        )
        .unwrap();
    }
    w.close().unwrap();
    let secs = t.elapsed().as_secs_f64();
    let grew = std::fs::metadata(dir.join(layout::LOG_FILE)).unwrap().len() - before;
    let log = log_bytes(&dir, BLOCK_BYTES as u32);
    let found = log.refs as f64 / (records * per_record) as f64;
    println!("the same {records} MiB written again, {shift} blocks off the records that hold it:");
    println!(
        "  {:.2}% of its blocks found (references), {:.2}% stored again; the log grew {grew} bytes \
         for {} written ({:.4}), in {secs:.1} s",
        found * 100.0,
        (1.0 - found) * 100.0,
        records * per_record * BLOCK_BYTES as u64,
        grew as f64 / (records * per_record * BLOCK_BYTES as u64) as f64
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
