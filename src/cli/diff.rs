//! `diskhist diff STORE TIME1 TIME2`: where two states differ.

use super::{open_store, state};
use anyhow::Result;
use clap::Args;
use diskhist::store::{RecordKind, Store};
use diskhist::units::{BlockNo, Seq};
use std::collections::BTreeSet;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

#[derive(Args)]
pub struct DiffArgs {
    pub store: PathBuf,
    pub time1: String,
    pub time2: String,
}

/// Byte ranges (offset, length) whose content differs between two states.
pub fn diff_ranges(s: &Store, a: Seq, b: Seq) -> Result<Vec<(u64, u64)>> {
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
    let mut out: Vec<(u64, u64)> = Vec::new();
    let (mut x, mut y) = (vec![0u8; bs as usize], vec![0u8; bs as usize]);
    for b in touched {
        if s.block_loc(lo, BlockNo(b))? == s.block_loc(hi, BlockNo(b))? {
            continue;
        }
        s.read_at(lo, b * bs, &mut x)?;
        s.read_at(hi, b * bs, &mut y)?;
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
            let (off, len) = (b * bs + start as u64, (i - start) as u64);
            match out.last_mut() {
                Some((o, l)) if *o + *l == off => *l += len,
                _ => out.push((off, len)),
            }
        }
    }
    Ok(out)
}

pub fn diff(a: DiffArgs) -> Result<()> {
    let s = open_store(&a.store)?;
    let (s1, s2) = (state(&s, &a.time1)?, state(&s, &a.time2)?);
    let mut out = BufWriter::new(std::io::stdout().lock());
    for (off, len) in diff_ranges(&s, s1, s2)? {
        writeln!(out, "{off} {len}")?;
    }
    out.flush()?;
    Ok(())
}
