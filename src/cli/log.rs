//! `diskhist log STORE [--from T] [--to T] [--json]`: one line per record.

use super::json;
use super::{open_store, record_range};
use anyhow::Result;
use clap::Args;
use diskhist::format_rfc3339_ns;
use diskhist::store::RecordInfo;
use diskhist::Seq;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

#[derive(Args)]
pub struct LogArgs {
    /// The store directory.
    pub store: PathBuf,
    /// First record shown: the first at or after this time ('#SEQ': that record).
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// Last record shown: the last at or before this time ('#SEQ': that record).
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
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

pub fn log(a: LogArgs) -> Result<()> {
    let s = open_store(&a.store)?;
    let (first, last) = record_range(&s, a.from.as_deref(), a.to.as_deref())?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    for seq in first..=last {
        let r = s.record(Seq(seq))?;
        let flags = flag_names(&r);
        if a.json {
            let mark = r
                .mark
                .as_deref()
                .map(json::string)
                .unwrap_or_else(|| "null".into());
            let flags: Vec<String> = flags.iter().map(|f| json::string(f)).collect();
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
