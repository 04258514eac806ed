//! Commands that read history out of a store: `export`, `log`, `diff`, `dump`.

use super::time_arg;
use anyhow::{Context, Result};
use clap::Args;
use diskhist::producers::stream::{StreamHeader, StreamRecord, StreamWriter};
use diskhist::store::{OwnedOp, RecordInfo, RecordKind, Store};
use diskhist::time::{format_rfc3339_ns, TimeSpec};
use diskhist::units::{BlockNo, Seq, TimeNs};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

fn open(store: &std::path::Path) -> Result<Store> {
    Store::open(store).with_context(|| format!("cannot open store {}", store.display()))
}

/// The state a time argument names.
fn state(s: &Store, time: &str) -> Result<Seq> {
    Ok(s.resolve(time_arg(time)?)?)
}

#[derive(Args)]
pub struct ExportArgs {
    pub store: PathBuf,
    /// The moment to export (RFC 3339, @UNIX, #SEQ, latest).
    #[arg(long)]
    pub at: String,
    /// Output image (sparse); standard output if absent.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

pub fn export(a: ExportArgs) -> Result<()> {
    let s = open(&a.store)?;
    let seq = state(&s, &a.at)?;
    let g = s.geometry();
    let chunk = 1usize << 20;
    let mut buf = vec![0u8; chunk];
    let mut sha = Sha256::new();
    let bs = g.block_size as usize;
    let file = match &a.output {
        Some(p) => {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(p)
                .with_context(|| format!("cannot create {}", p.display()))?;
            f.set_len(g.size_bytes)?;
            Some(f)
        }
        None => None,
    };
    let mut stdout = BufWriter::new(std::io::stdout().lock());
    let mut offset = 0u64;
    while offset < g.size_bytes {
        let n = ((g.size_bytes - offset) as usize).min(chunk);
        s.read_at(seq, offset, &mut buf[..n])?;
        sha.update(&buf[..n]);
        match &file {
            Some(f) => {
                // Write only non-zero blocks: the image stays sparse.
                for (i, block) in buf[..n].chunks(bs).enumerate() {
                    if block.iter().any(|&b| b != 0) {
                        f.write_all_at(block, offset + (i * bs) as u64)?;
                    }
                }
            }
            None => stdout.write_all(&buf[..n])?,
        }
        offset += n as u64;
    }
    stdout.flush()?;
    let hex: String = sha.finalize().iter().map(|b| format!("{b:02x}")).collect();
    match &a.output {
        Some(p) => {
            file.unwrap().sync_all()?;
            println!("{hex}  {}", p.display());
        }
        None => eprintln!("{hex}  -"),
    }
    Ok(())
}

#[derive(Args)]
pub struct LogArgs {
    pub store: PathBuf,
    /// First record shown: the first at or after this time (#SEQ: that record).
    #[arg(long)]
    pub from: Option<String>,
    /// Last record shown: the last at or before this time (#SEQ: that record).
    #[arg(long)]
    pub to: Option<String>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

/// Records from..=to as the --from/--to arguments name them.
fn record_range(s: &Store, from: Option<&str>, to: Option<&str>) -> Result<(u64, u64)> {
    let head = s.head().seq.0;
    let first = match from.map(time_arg).transpose()? {
        None | Some(TimeSpec::AfterSeq(Seq(0))) => 1,
        Some(TimeSpec::AfterSeq(n)) => n.0,
        Some(TimeSpec::Latest) => head,
        Some(TimeSpec::At(t)) => s.resolve(TimeSpec::At(TimeNs(t.0.saturating_sub(1))))?.0 + 1,
    };
    let last = match to.map(time_arg).transpose()? {
        None => head,
        Some(spec) => s.resolve(spec)?.0,
    };
    Ok((first.max(1), last.min(head)))
}

fn flag_names(r: &RecordInfo) -> Vec<&'static str> {
    use diskhist::store::OpFlags;
    [
        (OpFlags::FUA, "fua"),
        (OpFlags::PREFLUSH, "preflush"),
        (OpFlags::META, "meta"),
        (OpFlags::CLOCK_HELD, "clock-held"),
    ]
    .into_iter()
    .filter(|(f, _)| r.flags.contains(*f))
    .map(|(_, n)| n)
    .collect()
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

pub fn log(a: LogArgs) -> Result<()> {
    let s = open(&a.store)?;
    let (first, last) = record_range(&s, a.from.as_deref(), a.to.as_deref())?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    for seq in first..=last {
        let r = s.record(Seq(seq))?;
        let flags = flag_names(&r);
        if a.json {
            let mark = r
                .mark
                .as_deref()
                .map(json_str)
                .unwrap_or_else(|| "null".into());
            let flags: Vec<String> = flags.iter().map(|f| json_str(f)).collect();
            writeln!(
                out,
                "{{\"seq\":{},\"time\":\"{}\",\"time_ns\":{},\"offset\":{},\"length\":{},\"kind\":\"{}\",\"flags\":[{}],\"mark\":{},\"chain\":\"{}\"}}",
                r.seq.0, format_rfc3339_ns(r.time_ns), r.time_ns.0, r.offset_bytes, r.length_bytes, r.kind.name(), flags.join(","), mark, r.chain
            )?;
        } else {
            let extra = match (&r.mark, flags.is_empty()) {
                (Some(m), _) => format!(" {m:?}"),
                (None, false) => format!(" [{}]", flags.join(",")),
                _ => String::new(),
            };
            writeln!(
                out,
                "{:>8} {} {:>14} {:>10} {}{}",
                r.seq.0,
                format_rfc3339_ns(r.time_ns),
                r.offset_bytes,
                r.length_bytes,
                r.kind.name(),
                extra
            )?;
        }
    }
    out.flush()?;
    Ok(())
}

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
    let s = open(&a.store)?;
    let (s1, s2) = (state(&s, &a.time1)?, state(&s, &a.time2)?);
    let mut out = BufWriter::new(std::io::stdout().lock());
    for (off, len) in diff_ranges(&s, s1, s2)? {
        writeln!(out, "{off} {len}")?;
    }
    out.flush()?;
    Ok(())
}

#[derive(Args)]
pub struct DumpArgs {
    pub store: PathBuf,
    #[arg(long)]
    pub from: Option<String>,
    #[arg(long)]
    pub to: Option<String>,
}

pub fn dump(a: DumpArgs) -> Result<()> {
    let s = open(&a.store)?;
    let (first, last) = record_range(&s, a.from.as_deref(), a.to.as_deref())?;
    let g = s.geometry();
    let out = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    let mut w = StreamWriter::new(
        out,
        StreamHeader {
            block_size: g.block_size,
            size_bytes: g.size_bytes,
        },
    )?;
    let mut chain = diskhist::Hash32::default();
    for seq in first..=last {
        let r = s.record(Seq(seq))?;
        let op = match r.kind {
            RecordKind::Write => OwnedOp::Write {
                offset_bytes: r.offset_bytes,
                data: s.record_data(r.seq)?.unwrap_or_default(),
            },
            RecordKind::Zero => OwnedOp::Zero {
                offset_bytes: r.offset_bytes,
                length_bytes: r.length_bytes,
            },
            RecordKind::Trim => OwnedOp::Trim {
                offset_bytes: r.offset_bytes,
                length_bytes: r.length_bytes,
            },
            RecordKind::Flush => OwnedOp::Flush,
            RecordKind::Mark => OwnedOp::Mark {
                name: r.mark.clone().unwrap_or_default(),
            },
        };
        chain = r.chain;
        w.record(&StreamRecord {
            seq: r.seq,
            time_ns: r.time_ns,
            flags: r.flags,
            op,
        })?;
    }
    w.finish(chain)?;
    Ok(())
}
