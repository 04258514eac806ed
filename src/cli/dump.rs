//! `diskhist dump STORE [--from T] [--to T]`: records as a diskhist stream.

use super::{open_store, record_range};
use anyhow::Result;
use clap::Args;
use diskhist::producers::stream::{StreamHeader, StreamRecord, StreamWriter};
use diskhist::store::{OwnedOp, RecordKind};
use diskhist::units::Seq;
use std::io::BufWriter;
use std::path::PathBuf;

#[derive(Args)]
pub struct DumpArgs {
    pub store: PathBuf,
    #[arg(long)]
    pub from: Option<String>,
    #[arg(long)]
    pub to: Option<String>,
}

pub fn dump(a: DumpArgs) -> Result<()> {
    let s = open_store(&a.store)?;
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
