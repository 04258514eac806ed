//! `diskhist dump STORE [--from T] [--to T] [-o FILE]`: records as a
//! diskhist stream.

use super::output::{Content, Output};
use super::progress::Progress;
use super::{open_store, record_range};
use anyhow::Result;
use clap::Args;
use diskhist::producers::stream::{StreamHeader, StreamRecord, StreamWriter};
use diskhist::store::{OwnedOp, RecordKind};
use diskhist::units::Seq;
use std::path::PathBuf;

#[derive(Args)]
pub struct DumpArgs {
    /// The store directory.
    pub store: PathBuf,
    /// First record dumped: the first at or after this time ('#SEQ': that record).
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// Last record dumped: the last at or before this time ('#SEQ': that record).
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// Write the stream to FILE, under a temporary name renamed when
    /// complete; standard output (not a terminal) if absent.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Replace FILE if it exists (never a file inside a store).
    #[arg(long)]
    pub force: bool,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn dump(a: DumpArgs) -> Result<()> {
    let s = open_store(&a.store)?;
    let (first, last) = record_range(&s, a.from.as_deref(), a.to.as_deref())?;
    let g = s.geometry();
    let out = Output::create(a.output.as_deref(), a.force, Content::Binary)?;
    // Counted in records: the stream's size is not known before it is written.
    let total = if first <= last { last - first + 1 } else { 0 };
    let progress = Progress::records(total, a.quiet);
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
        progress.inc(1);
    }
    w.finish(chain)?.finish()?;
    progress.finish();
    Ok(())
}
