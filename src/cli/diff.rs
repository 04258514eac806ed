//! `diskhist diff STORE TIME1 TIME2 [--bytes | --summary]`: where two states
//! differ. Exit status as cmp(1): 0 equal, 1 different, 2 trouble.

use super::{open_store, state, Status};
use anyhow::Result;
use clap::Args;
use diskhist::store::{RecordKind, Store};
use diskhist::{BlockNo, Seq};
use std::collections::BTreeSet;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

#[derive(Args)]
pub struct DiffArgs {
    /// The store directory.
    pub store: PathBuf,
    /// The first state (RFC 3339, @UNIX, '#SEQ', latest).
    pub time1: String,
    /// The second state, in the same forms.
    pub time2: String,
    /// Byte precision: the exact byte ranges that differ, not whole blocks.
    #[arg(long, conflicts_with = "summary")]
    pub bytes: bool,
    /// Only counts and totals: differing blocks and bytes, and their ranges.
    #[arg(long)]
    pub summary: bool,
}

/// Ranges (offset_bytes, length_bytes) in ascending order, adjacent ones
/// merged; kept in a list only when they are to be printed.
struct Ranges {
    keep: bool,
    list: Vec<(u64, u64)>,
    count: u64,
    total_bytes: u64,
    end: Option<u64>,
}

impl Ranges {
    fn new(keep: bool) -> Ranges {
        Ranges {
            keep,
            list: Vec::new(),
            count: 0,
            total_bytes: 0,
            end: None,
        }
    }

    fn add(&mut self, offset_bytes: u64, length_bytes: u64) {
        self.total_bytes += length_bytes;
        if self.end == Some(offset_bytes) {
            if let Some(last) = self.list.last_mut().filter(|_| self.keep) {
                last.1 += length_bytes;
            }
        } else {
            self.count += 1;
            if self.keep {
                self.list.push((offset_bytes, length_bytes));
            }
        }
        self.end = Some(offset_bytes + length_bytes);
    }
}

/// Where two states differ: (blocks, bytes), each as merged ranges.
fn compare(
    s: &Store,
    a: Seq,
    b: Seq,
    keep_blocks: bool,
    keep_bytes: bool,
) -> Result<(Ranges, Ranges)> {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let g = s.geometry();
    let bs = u64::from(g.block_size);
    // Only blocks that some record between the states touched can differ.
    let mut touched = BTreeSet::new();
    for seq in lo.0 + 1..=hi.0 {
        let r = s.record(Seq(seq))?;
        if matches!(
            r.kind,
            RecordKind::Write | RecordKind::Zero | RecordKind::Trim
        ) && r.length_bytes > 0
        {
            touched.extend(r.offset_bytes / bs..=(r.offset_bytes + r.length_bytes - 1) / bs);
        }
    }
    let mut blocks = Ranges::new(keep_blocks);
    let mut bytes = Ranges::new(keep_bytes);
    let (mut x, mut y) = (vec![0u8; bs as usize], vec![0u8; bs as usize]);
    for b in touched {
        if s.block_content(lo, BlockNo(b))? == s.block_content(hi, BlockNo(b))? {
            continue;
        }
        s.read_at(lo, b * bs, &mut x)?;
        s.read_at(hi, b * bs, &mut y)?;
        if x == y {
            continue;
        }
        blocks.add(b * bs, bs);
        let mut i = 0;
        while i < x.len() {
            if x[i] == y[i] {
                i += 1;
                continue;
            }
            let start = i;
            while i < x.len() && x[i] != y[i] {
                i += 1;
            }
            bytes.add(b * bs + start as u64, (i - start) as u64);
        }
    }
    Ok((blocks, bytes))
}

pub fn diff(a: DiffArgs) -> Result<Status> {
    let s = open_store(&a.store)?;
    let (s1, s2) = (state(&s, &a.time1)?, state(&s, &a.time2)?);
    let listing = !a.summary;
    let (blocks, bytes) = compare(&s, s1, s2, listing && !a.bytes, listing && a.bytes)?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    if a.summary {
        let bs = u64::from(s.geometry().block_size);
        writeln!(
            out,
            "blocks: {} in {} ranges ({} bytes)",
            blocks.total_bytes / bs,
            blocks.count,
            blocks.total_bytes
        )?;
        writeln!(
            out,
            "bytes:  {} in {} ranges",
            bytes.total_bytes, bytes.count
        )?;
    } else {
        let list = if a.bytes { &bytes.list } else { &blocks.list };
        for (off, len) in list {
            writeln!(out, "{off} {len}")?;
        }
    }
    out.flush()?;
    Ok(if blocks.count == 0 {
        Status::Success
    } else {
        Status::No
    })
}
