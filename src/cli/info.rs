//! `diskhist info STORE`: what a store holds.

use anyhow::Result;
use clap::Args;
use diskhist::store::Store;
use diskhist::time::format_rfc3339;
use std::io::Write;
use std::path::PathBuf;

#[derive(Args)]
pub struct InfoArgs {
    pub store: PathBuf,
}

pub fn info(a: InfoArgs) -> Result<()> {
    let s = Store::open(&a.store)?;
    let h = s.header();
    let head = s.head();
    let sp = s.space()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "store:          {}", a.store.display())?;
    writeln!(out, "disk size:      {} bytes", h.size_bytes)?;
    writeln!(out, "block size:     {} bytes", h.block_size)?;
    writeln!(out, "created:        {}", format_rfc3339(h.created_ns))?;
    writeln!(out, "records:        {}", head.seq.0)?;
    if head.seq.0 > 0 {
        writeln!(
            out,
            "first time:     {}",
            format_rfc3339(s.time_of(diskhist::Seq(1))?)
        )?;
    }
    if let Some(t) = head.time_ns {
        writeln!(out, "last time:      {}", format_rfc3339(t))?;
    }
    writeln!(out, "bytes written:  {}", sp.bytes_written)?;
    writeln!(
        out,
        "bytes stored:   {} (log) + {} (index)",
        sp.log_bytes, sp.index_bytes
    )?;
    if sp.bytes_written > 0 {
        writeln!(
            out,
            "stored/written: {:.3}",
            (sp.log_bytes + sp.index_bytes) as f64 / sp.bytes_written as f64
        )?;
    }
    writeln!(out, "chain head:     {}", head.chain)?;
    match diskhist::nbd::session::read_sessions(&a.store) {
        Ok(sessions) => {
            for (i, ses) in sessions.iter().enumerate() {
                let clock = match &ses.clock {
                    Some(c) => format!(
                        "clock {} (est. error {} µs, max {} µs)",
                        if c.synchronised {
                            "synchronised"
                        } else {
                            "NOT synchronised"
                        },
                        c.est_error_us,
                        c.max_error_us
                    ),
                    None => "clock state unknown".to_string(),
                };
                let end = match &ses.end {
                    Some(e) => format!(
                        "ended {} at record {} ({})",
                        format_rfc3339(e.time),
                        e.seq.0,
                        e.reason
                    ),
                    None => "no clean end (killed or power lost)".to_string(),
                };
                writeln!(
                    out,
                    "serve session {}: started {} by diskhist {} at record {}, {}; {}",
                    i + 1,
                    format_rfc3339(ses.start),
                    ses.version,
                    ses.start_seq.0,
                    clock,
                    end
                )?;
            }
        }
        Err(e) => writeln!(out, "warning:        serve sessions: {e}")?,
    }
    if let Some(stop) = s.tail_stop() {
        writeln!(
            out,
            "warning:        log not whole from byte {} ({}): {}",
            stop.offset_bytes, stop.seq, stop.reason
        )?;
    }
    Ok(())
}
