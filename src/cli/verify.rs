//! `diskhist verify STORE [--quiet]`: every checksum, the chain, every
//! content hash, the index and the sessions anchors.

use super::progress::Progress;
use anyhow::{bail, Result};
use clap::Args;
use diskhist::store::verify as verify_mod;
use std::path::PathBuf;

#[derive(Args)]
pub struct VerifyArgs {
    /// The store directory.
    pub store: PathBuf,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn verify(a: VerifyArgs) -> Result<()> {
    // Each serve session's start and end pin the chain after a record: a
    // check of the log from outside it (a cut tail shows even without the
    // index). A damaged sessions file is reported after the log's verdict.
    let sessions = diskhist::nbd::session::read_sessions(&a.store);
    let anchors: Vec<verify_mod::Anchor> = match &sessions {
        Ok(list) => list
            .iter()
            .flat_map(|s| {
                let start = verify_mod::Anchor {
                    seq: s.start_seq,
                    chain: s.start_chain,
                    what: format!("sessions: the start of serve session {}", s.id),
                };
                let end = s.end.as_ref().map(|e| verify_mod::Anchor {
                    seq: e.seq,
                    chain: e.chain,
                    what: format!("sessions: the end of serve session {}", s.id),
                });
                std::iter::once(start).chain(end)
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    let log_bytes =
        std::fs::metadata(a.store.join(diskhist::store::index::LOG_FILE)).map_or(0, |m| m.len());
    let progress = Progress::bytes(log_bytes, a.quiet);
    let r = verify_mod::verify_with_progress(&a.store, &anchors, &mut |done, total| {
        progress.set_total(total);
        progress.set(done);
    })?;
    progress.finish();
    if let Some(p) = &r.problem {
        bail!(
            "{}: damaged at {p}; the {} records before it are intact (chain {})",
            a.store.display(),
            r.records,
            r.chain
        );
    }
    if !r.index_problems.is_empty() {
        bail!(
            "{}: the index does not match the log: {}",
            a.store.display(),
            r.index_problems.join("; ")
        );
    }
    if let Err(e) = sessions {
        bail!("{}: {e}", a.store.display());
    }
    if !r.anchor_problems.is_empty() {
        bail!(
            "{}: the sessions file does not match the log: {}",
            a.store.display(),
            r.anchor_problems.join("; ")
        );
    }
    println!(
        "ok: {} records, {} log bytes, chain head {}",
        r.records, r.log_bytes, r.chain
    );
    Ok(())
}
