//! `verify`: recompute every checksum, the hash chain and every content hash
//! from the log, then check the index against what the log says.

use crate::store::error::{IoContext, Result, StoreError};
use crate::store::format::{self, Encoding, RecordKind};
use crate::store::index::run::{BlockVersion, Run, StoredContent};
use crate::store::index::{self, read_record_at, record_block_locs, INDEX_DIR, SEQ_ENTRY_LEN};
use crate::units::{Hash32, Seq, TimeNs};
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub records: u64,
    pub log_bytes: u64,
    pub chain: Hash32,
    pub last_time: Option<TimeNs>,
    /// The first damage found, if any.
    pub problem: Option<Problem>,
    /// Damage found in the derived index (rebuildable), if any.
    pub index_problems: Vec<String>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problem.is_none() && self.index_problems.is_empty()
    }
}

/// The first bad record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub seq: Seq,
    pub offset_bytes: u64,
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "record {} at log byte {}: {}",
            self.seq, self.offset_bytes, self.what
        )
    }
}

/// Verify the store at `dir`. I/O errors are errors; damage is reported.
pub fn verify(dir: &Path) -> Result<VerifyReport> {
    let header = index::read_header(dir)?;
    let log_path = dir.join(index::LOG_FILE);
    let log = File::open(&log_path).at(&log_path)?;
    let log_len = log.metadata().at(&log_path)?.len();
    let bs = header.block_size as usize;
    let mut report = VerifyReport {
        records: 0,
        log_bytes: log_len,
        chain: Hash32::default(),
        last_time: None,
        problem: None,
        index_problems: Vec::new(),
    };
    let mut offset = 0u64;
    let mut buf = Vec::new();
    let mut block = vec![0u8; bs];
    let mut scratch = Vec::new();
    // (time, offset) per record, to check index/seqs against.
    let mut seqs: Vec<(TimeNs, u64)> = Vec::new();
    // Stored content: log offset -> (encoding, stored_len), to check references.
    let mut stored: HashMap<u64, (Encoding, u32)> = HashMap::new();
    while offset < log_len {
        let seq = Seq(report.records + 1);
        let fail = |what: String| Problem {
            seq,
            offset_bytes: offset,
            what,
        };
        let h = match read_record_at(&log, offset, log_len, &mut buf).at(&log_path)? {
            Ok(h) => h,
            Err(f) => {
                report.problem = Some(fail(format!(
                    "{f} ({} bytes from here to the end of the log)",
                    log_len - offset
                )));
                break;
            }
        };
        if h.seq != seq {
            report.problem = Some(fail(format!(
                "carries sequence number {} (records deleted, reordered or inserted)",
                h.seq.0
            )));
            break;
        }
        if report.last_time.is_some_and(|t| h.time_ns < t) {
            report.problem = Some(fail("time goes backwards".into()));
            break;
        }
        if format::chain_next(&report.chain, &h) != h.chain {
            report.problem = Some(fail(
                "chain hash does not follow from the previous record".into(),
            ));
            break;
        }
        let body = format::record_body(&buf);
        let locs = match record_block_locs(offset, &h, body, header.block_size, header.size_bytes) {
            Ok(l) => l,
            Err(e) => {
                report.problem = Some(fail(e));
                break;
            }
        };
        // Rebuild what was written and check it against the content hash.
        let mut hasher = blake3::Hasher::new();
        let mut bad = None;
        let end = h.offset_bytes + h.length_bytes;
        let bsu = bs as u64;
        for (b, loc) in &locs {
            if loc.encoding != Encoding::Zero {
                let inside = loc.offset_bytes >= offset
                    && loc.offset_bytes < offset + u64::from(h.record_len);
                if !inside && stored.get(&loc.offset_bytes) != Some(&(loc.encoding, loc.stored_len))
                {
                    bad = Some(format!(
                        "block {b} refers to log byte {}, where no such content was stored",
                        loc.offset_bytes
                    ));
                    break;
                }
                scratch.resize(loc.stored_len as usize, 0);
                log.read_exact_at(&mut scratch, loc.offset_bytes)
                    .at(&log_path)?;
                if let Err(e) = format::decode_block(loc.encoding, &scratch, &mut block) {
                    bad = Some(format!("block {b}: {e}"));
                    break;
                }
                if inside {
                    stored.insert(loc.offset_bytes, (loc.encoding, loc.stored_len));
                }
            } else {
                block.fill(0);
            }
            let (lo, hi) = ((b * bsu).max(h.offset_bytes), ((b + 1) * bsu).min(end));
            match h.kind {
                RecordKind::Write => {
                    hasher.update(&block[(lo - b * bsu) as usize..(hi - b * bsu) as usize]);
                }
                _ => {
                    if block[(lo - b * bsu) as usize..(hi - b * bsu) as usize]
                        .iter()
                        .any(|&x| x != 0)
                    {
                        bad = Some(format!(
                            "block {b} is not zero in the range the {} cleared",
                            h.kind.name()
                        ));
                        break;
                    }
                }
            }
        }
        let expect = match h.kind {
            RecordKind::Write => Some(Hash32(*hasher.finalize().as_bytes())),
            RecordKind::Mark => Some(Hash32(*blake3::hash(body).as_bytes())),
            _ => Some(Hash32::default()),
        };
        if bad.is_none() && expect != Some(h.content_hash) {
            bad = Some("content does not match the record's content hash".into());
        }
        if let Some(what) = bad {
            report.problem = Some(fail(what));
            break;
        }
        report.chain = h.chain;
        report.last_time = Some(h.time_ns);
        report.records += 1;
        seqs.push((h.time_ns, offset));
        offset += u64::from(h.record_len);
    }
    if report.problem.is_none() {
        report.index_problems = check_index(dir, &seqs, &header)?;
    }
    Ok(report)
}

fn check_index(
    dir: &Path,
    seqs: &[(TimeNs, u64)],
    header: &format::StoreHeader,
) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let m = match index::read_manifest(dir) {
        Ok(m) => m,
        Err(e) => return Ok(vec![e.to_string()]),
    };
    let n = seqs.len() as u64;
    if m.indexed_through.0 > n {
        problems.push(format!(
            "the index covers records up to {} but the log holds only {n}: records were cut from the log",
            m.indexed_through
        ));
        return Ok(problems);
    }
    if m.indexed_through.0 > 0 {
        let (t, off) = seqs[m.indexed_through.0 as usize - 1];
        if m.head_time != t || m.log_end <= off {
            problems.push("the index manifest disagrees with the log about its last record".into());
        }
    }
    let seqs_path = dir.join(INDEX_DIR).join(index::SEQS_FILE);
    let sf = File::open(&seqs_path).at(&seqs_path)?;
    let slen = sf.metadata().at(&seqs_path)?.len();
    if slen < m.indexed_through.0 * SEQ_ENTRY_LEN {
        problems.push(format!(
            "index/seqs holds {} entries, the manifest promises {}",
            slen / SEQ_ENTRY_LEN,
            m.indexed_through.0
        ));
    } else {
        let mut e = vec![0u8; (m.indexed_through.0 * SEQ_ENTRY_LEN) as usize];
        sf.read_exact_at(&mut e, 0).at(&seqs_path)?;
        for (i, c) in e.chunks_exact(16).enumerate() {
            let t = TimeNs(i64::from_le_bytes(c[..8].try_into().unwrap()));
            let o = u64::from_le_bytes(c[8..].try_into().unwrap());
            if (t, o) != seqs[i] {
                problems.push(format!(
                    "index/seqs entry for record #{} disagrees with the log",
                    i + 1
                ));
                break;
            }
        }
    }
    let idir = dir.join(INDEX_DIR);
    let log_path = dir.join(index::LOG_FILE);
    let log = File::open(&log_path).at(&log_path)?;
    let log_len = log.metadata().at(&log_path)?.len();
    let mut covered = 0u64;
    for (first, last) in &m.runs {
        let (rn, dn) = index::run_file_names(*first, *last);
        if first.0 != covered + 1 && first.0 <= covered {
            problems.push(format!("index runs overlap at {}", rn));
        }
        covered = last.0;
        let run = match Run::<BlockVersion>::open(&idir.join(&rn)) {
            Ok(r) => r,
            Err(e) => {
                problems.push(e.to_string());
                continue;
            }
        };
        if !run.check_crc()? {
            problems.push(format!("index/{rn}: checksum mismatch"));
            continue;
        }
        // Recompute the run from the log and compare entry by entry.
        let mut expect: Vec<(u64, u64, format::Loc)> = Vec::new();
        let mut buf = Vec::new();
        for s in first.0..=last.0.min(n) {
            let off = seqs[s as usize - 1].1;
            let h = match read_record_at(&log, off, log_len, &mut buf).at(&log_path)? {
                Ok(h) => h,
                Err(f) => return Err(StoreError::corrupted(&log_path, f.to_string())),
            };
            let locs = record_block_locs(
                off,
                &h,
                format::record_body(&buf),
                header.block_size,
                header.size_bytes,
            )
            .map_err(|e| StoreError::corrupted(&log_path, e))?;
            expect.extend(locs.into_iter().map(|(b, l)| (b, s, l)));
        }
        expect.sort_unstable_by_key(|e| (e.0, e.1));
        let got: Vec<BlockVersion> = run.iter()?.collect::<Result<_>>()?;
        let same = got.len() == expect.len()
            && got
                .iter()
                .zip(&expect)
                .all(|(g, e)| (g.block, g.seq, g.loc) == *e);
        if !same {
            problems.push(format!("index/{rn}: entries disagree with the log"));
        }
        match Run::<StoredContent>::open(&idir.join(&dn)) {
            Ok(d) => {
                if !d.check_crc()? {
                    problems.push(format!("index/{dn}: checksum mismatch"));
                }
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    Ok(problems)
}
