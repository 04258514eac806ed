//! `diskhist info STORE [--json]`: what a store holds.

use super::json::{self, Object};
use anyhow::Result;
use clap::Args;
use diskhist::format_rfc3339;
use diskhist::producers::image;
use diskhist::sessions::Session;
use diskhist::store::Store;
use diskhist::{Seq, TimeNs};
use std::io::Write;
use std::path::PathBuf;

#[derive(Args)]
pub struct InfoArgs {
    /// The store directory.
    pub store: PathBuf,
    /// One JSON object, for scripts (the same facts as the text).
    #[arg(long)]
    pub json: bool,
}

/// How many of the newest records `info` looks through for imports (one
/// header read each); `diskhist log` lists every import mark.
const IMPORTS_WITHIN: u64 = 100_000;

/// An image import, as its mark records it.
struct Import {
    seq: Seq,
    time: TimeNs,
    sha256: String,
    size_bytes: u64,
    path: String,
}

/// The imports among the newest records, oldest first, and whether older
/// records were not looked at.
fn recent_imports(s: &Store) -> Result<(Vec<Import>, bool)> {
    let mut imports: Vec<Import> = s
        .recent_marks(IMPORTS_WITHIN)?
        .into_iter()
        .filter_map(|r| {
            let name = r.mark.as_deref()?;
            let (sha, size, path) = image::parse_mark(name)?;
            Some(Import {
                seq: r.seq,
                time: r.time_ns,
                sha256: sha.to_string(),
                size_bytes: size,
                path: path.to_string(),
            })
        })
        .collect();
    imports.reverse();
    Ok((imports, s.head().seq.0 > IMPORTS_WITHIN))
}

pub fn info(a: InfoArgs) -> Result<()> {
    let s = Store::open(&a.store)?;
    let first_time = match s.head().seq.0 {
        0 => None,
        _ => Some(s.time_of(Seq(1))?),
    };
    let sessions = diskhist::sessions::read_sessions(&a.store).map_err(|e| e.to_string());
    let imports = recent_imports(&s)?;
    if a.json {
        print_json(&a, &s, first_time, &sessions, &imports)
    } else {
        print_text(&a, &s, first_time, &sessions, &imports)
    }
}

fn print_text(
    a: &InfoArgs,
    s: &Store,
    first_time: Option<TimeNs>,
    sessions: &Result<Vec<Session>, String>,
    (imports, partial): &(Vec<Import>, bool),
) -> Result<()> {
    let h = s.header();
    let head = s.head();
    let sp = s.space()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "store:          {}", a.store.display())?;
    writeln!(out, "disk size:      {} bytes", h.size_bytes)?;
    writeln!(out, "block size:     {} bytes", h.block_size)?;
    writeln!(
        out,
        "format:         {}{}",
        h.format.version(),
        if h.format.version() < diskhist::store::FORMAT_VERSION {
            " (an older format: read, verified and appended to as it is)"
        } else {
            ""
        }
    )?;
    writeln!(out, "created:        {}", format_rfc3339(h.created_ns))?;
    writeln!(out, "records:        {}", head.seq.0)?;
    if let Some(t) = first_time {
        writeln!(out, "first time:     {}", format_rfc3339(t))?;
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
    writeln!(
        out,
        "merkle tree:    size {}, root {}",
        head.seq.0,
        s.tree_root(head.seq)?
    )?;
    writeln!(
        out,
        "origin:         {} (checkpoints: diskhist seal)",
        diskhist::seal::origin(s)
    )?;
    match diskhist::seal::seals::read_seals(&a.store) {
        Ok(list) if !list.is_empty() => {
            let (last, _) = &list[list.len() - 1];
            writeln!(
                out,
                "seals:          {} checkpoints, the last at {} records ({})",
                list.len(),
                last.size,
                format_rfc3339(TimeNs(last.time_ns))
            )?;
        }
        Ok(_) => {}
        Err(e) => writeln!(out, "warning:        seals: {e}")?,
    }
    match sessions {
        Ok(sessions) => {
            for (i, ses) in sessions.iter().enumerate() {
                writeln!(out, "serve session {}: {}", i + 1, session_text(ses))?;
            }
        }
        Err(e) => writeln!(out, "warning:        serve sessions: {e}")?,
    }
    for im in imports {
        writeln!(
            out,
            "import:         {} at {}: {} ({} bytes, sha256 {})",
            im.seq,
            format_rfc3339(im.time),
            im.path,
            im.size_bytes,
            im.sha256
        )?;
    }
    if *partial {
        writeln!(
            out,
            "imports:        only the newest {IMPORTS_WITHIN} records looked at; \
             `diskhist log` lists every import mark"
        )?;
    }
    if let Some(b) = s.pending_batch() {
        writeln!(
            out,
            "import pending: records from {} on ({} so far) belong to an import {}",
            b.first_seq,
            b.records,
            if b.writer_live {
                "under way; no state includes them until it completes"
            } else {
                "that did not finish; the next writer cuts them"
            }
        )?;
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

/// One serve session, as `info` prints it after "serve session N: ".
fn session_text(ses: &Session) -> String {
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
    format!(
        "started {} by diskhist {} at record {}, {clock}; {end}",
        format_rfc3339(ses.start),
        ses.version,
        ses.start_seq.0
    )
}

/// A time as two fields: `KEY` (RFC 3339) and `KEY_ns`.
fn time(o: Object, key: &str, t: Option<TimeNs>) -> Object {
    o.opt_str(key, t.map(format_rfc3339).as_deref())
        .opt_num(&format!("{key}_ns"), t.map(|t| t.0))
}

fn print_json(
    a: &InfoArgs,
    s: &Store,
    first_time: Option<TimeNs>,
    sessions: &Result<Vec<Session>, String>,
    (imports, partial): &(Vec<Import>, bool),
) -> Result<()> {
    let h = s.header();
    let head = s.head();
    let sp = s.space()?;
    let session = |ses: &Session| {
        let clock = match &ses.clock {
            Some(c) => Object::new()
                .num("synchronised", c.synchronised)
                .num("est_error_us", c.est_error_us)
                .num("max_error_us", c.max_error_us)
                .build(),
            None => "null".into(),
        };
        let end = match &ses.end {
            Some(e) => time(Object::new(), "time", Some(e.time))
                .num("seq", e.seq.0)
                .str("chain", &e.chain.to_hex())
                .str("reason", &e.reason)
                .build(),
            None => "null".into(),
        };
        time(Object::new().str("id", &ses.id), "start", Some(ses.start))
            .str("version", &ses.version)
            .num("start_seq", ses.start_seq.0)
            .str("start_chain", &ses.start_chain.to_hex())
            .str("listen", &ses.listen)
            .str("sync", &ses.sync)
            .raw("clock", clock)
            .raw("end", end)
            .build()
    };
    let tail = match s.tail_stop() {
        Some(stop) => Object::new()
            .num("log_offset", stop.offset_bytes)
            .num("seq", stop.seq.0)
            .str("reason", &stop.reason)
            .build(),
        None => "null".into(),
    };
    let o = Object::new()
        .str("store", &a.store.display().to_string())
        .num("size_bytes", h.size_bytes)
        .num("block_size", h.block_size)
        .num("format_version", h.format.version());
    let o = time(o, "created", Some(h.created_ns)).num("records", head.seq.0);
    let o = time(o, "first_time", first_time);
    let o = time(o, "last_time", head.time_ns)
        .num("bytes_written", sp.bytes_written)
        .num("log_bytes", sp.log_bytes)
        .num("index_bytes", sp.index_bytes)
        .str("chain_head", &head.chain.to_hex())
        .num("tree_size", head.seq.0)
        .str("tree_root", &s.tree_root(head.seq)?.to_hex())
        .str("origin", &diskhist::seal::origin(s))
        .raw(
            "sessions",
            match sessions {
                Ok(list) => json::array(list.iter().map(session)),
                Err(_) => "null".into(),
            },
        )
        .opt_str(
            "sessions_problem",
            sessions.as_ref().err().map(String::as_str),
        )
        .raw("log_tail_problem", tail)
        .raw(
            "imports",
            json::array(imports.iter().map(|im| {
                time(Object::new().num("seq", im.seq.0), "time", Some(im.time))
                    .str("path", &im.path)
                    .num("size_bytes", im.size_bytes)
                    .str("sha256", &im.sha256)
                    .build()
            })),
        )
        .num("imports_partial", *partial)
        .raw(
            "import_pending",
            match s.pending_batch() {
                Some(b) => Object::new()
                    .num("first_seq", b.first_seq.0)
                    .num("records", b.records)
                    .num("writer_live", b.writer_live)
                    .build(),
                None => "null".into(),
            },
        );
    println!("{}", o.build());
    Ok(())
}
