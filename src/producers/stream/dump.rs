//! Records of a store as a stream (`diskhist dump`). Each record's content
//! is checked against its chain hash on the way out, so a dump of a damaged
//! store stops at the damaged record rather than send it on.

use super::format::{StreamHeader, StreamRecord, StreamStart};
use super::writer::StreamWriter;
use crate::store::{Store, StoreError};
use crate::units::{Hash32, Seq};
use std::io::{self, Write};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DumpError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing the stream: {0}")]
    Write(#[from] io::Error),
    #[error(
        "record {seq} of the store does not give the chain hash it is stored with (damaged \
         since it was recorded?); run `diskhist verify`; the stream was left without its end \
         record, so it reads as truncated"
    )]
    Damaged { seq: Seq },
}

/// Write records `first..=last` of `store` to `out` as a version 2 stream
/// (`first` below 1 counts from 1, `last` past the head stops at it; an
/// empty range gives a stream of no records), flush it and hand `out`
/// back.
pub fn dump<W: Write>(store: &Store, first: Seq, last: Seq, out: W) -> Result<W, DumpError> {
    dump_with_progress(store, first, last, out, &mut |_| {})
}

/// [`dump`], calling `progress(records written)` after each record.
pub fn dump_with_progress<W: Write>(
    store: &Store,
    first: Seq,
    last: Seq,
    out: W,
    progress: &mut dyn FnMut(u64),
) -> Result<W, DumpError> {
    let g = store.geometry();
    let last = last.min(store.head().seq);
    let first = first.max(Seq(1));
    // The record the stream continues after.
    let after = Seq(first.0.saturating_sub(1).min(last.0));
    let chain_at = |seq: Seq| -> Result<Hash32, StoreError> {
        if seq.0 == 0 {
            Ok(Hash32::default())
        } else {
            store.record(seq).map(|r| r.chain)
        }
    };
    let mut chain = chain_at(after)?;
    let mut w = StreamWriter::new(
        out,
        StreamHeader {
            block_size: g.block_size,
            size_bytes: g.size_bytes,
        },
        StreamStart { seq: after, chain },
    )?;
    for seq in after.0 + 1..=last.0 {
        let (r, op) = store.record_op(Seq(seq))?;
        let rec = StreamRecord {
            seq: r.seq,
            time_ns: r.time_ns,
            flags: r.flags,
            op,
            chain: Some(r.chain),
        };
        if rec.chain_from(&chain) != r.chain {
            return Err(DumpError::Damaged { seq: r.seq });
        }
        w.record(&rec)?;
        chain = r.chain;
        progress(seq - after.0);
    }
    Ok(w.finish(chain)?)
}
