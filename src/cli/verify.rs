//! `diskhist verify STORE [--json] [--quiet]`: every checksum, the chain,
//! every content hash, the index and the sessions anchors.

use super::json::{self, Object};
use super::progress::Progress;
use super::Status;
use anyhow::{bail, Context, Result};
use clap::Args;
use diskhist::format_rfc3339_ns;
use diskhist::store::verify as verify_mod;
use std::path::PathBuf;

#[derive(Args)]
pub struct VerifyArgs {
    /// The store directory.
    pub store: PathBuf,
    /// One JSON object on standard output, findings included (exit 1 on
    /// damage all the same).
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
    /// A signed checkpoint that left the machine (repeatable): the store's
    /// Merkle tree, recomputed from the log, must have its root at its
    /// size. Needs --key.
    #[arg(long = "checkpoint", value_name = "C", requires = "keys")]
    pub checkpoints: Vec<PathBuf>,
    /// The verifier key(s) the checkpoints must be signed by (a file or
    /// the key itself; repeatable).
    #[arg(long = "key", value_name = "VERIFIER")]
    pub keys: Vec<String>,
}

/// The checkpoints given, signatures checked, as tree anchors; then the
/// checkpoints kept in STORE/seals (their copies that left the machine are
/// what counts, but these catch a history rewritten without them).
fn tree_anchors(a: &VerifyArgs) -> Result<(Vec<verify_mod::TreeAnchor>, Option<String>)> {
    let mut out = Vec::new();
    if !a.checkpoints.is_empty() {
        let keys = a
            .keys
            .iter()
            .map(|k| super::seal::read_verifier(k))
            .collect::<Result<Vec<_>>>()?;
        let store = super::open_store(&a.store)?;
        let origin = diskhist::seal::origin(&store);
        for p in &a.checkpoints {
            let c = super::seal::read_checkpoint(p)?;
            c.verify(&keys)
                .with_context(|| format!("{}: the checkpoint's signature", p.display()))?;
            if c.checkpoint.origin != origin {
                bail!(
                    "{}: the checkpoint is of store {}, not {} ({origin}): it seals another \
                     store's history",
                    p.display(),
                    c.checkpoint.origin,
                    a.store.display()
                );
            }
            out.push(verify_mod::TreeAnchor {
                size: diskhist::Seq(c.checkpoint.size),
                root: c.checkpoint.root,
                what: format!("checkpoint {}", p.display()),
            });
        }
    }
    let mut problem = None;
    match diskhist::seal::seals::read_seals(&a.store) {
        Ok(list) => {
            for (i, (s, _)) in list.iter().enumerate() {
                if let Ok(c) = diskhist::seal::checkpoint::SignedCheckpoint::parse(&s.note) {
                    out.push(verify_mod::TreeAnchor {
                        size: diskhist::Seq(c.checkpoint.size),
                        root: c.checkpoint.root,
                        what: format!("seals: checkpoint {}", i + 1),
                    });
                }
            }
        }
        Err(e) => problem = Some(e.to_string()),
    }
    Ok((out, problem))
}

pub fn verify(a: VerifyArgs) -> Result<Status> {
    // Each serve session's start and end pin the chain after a record: a
    // check of the log from outside it (a cut tail shows even without the
    // index). A damaged sessions file is reported after the log's verdict.
    let sessions = diskhist::sessions::read_sessions(&a.store);
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
        std::fs::metadata(a.store.join(diskhist::store::layout::LOG_FILE)).map_or(0, |m| m.len());
    let progress = Progress::bytes(log_bytes, a.quiet);
    let (sealed, seals_problem) = tree_anchors(&a)?;
    let r = verify_mod::verify_sealed(&a.store, &anchors, &sealed, &mut |done, total| {
        progress.set_total(total);
        progress.set(done);
    })?;
    progress.finish();
    let sessions_problem = sessions.as_ref().err().map(|e| e.to_string());
    if a.json {
        let problem = match &r.problem {
            Some(p) => Object::new()
                .num("seq", p.seq.0)
                .num("log_offset", p.offset_bytes)
                .str("what", &p.what)
                .build(),
            None => "null".into(),
        };
        let strings = |v: &[String]| json::array(v.iter().map(|s| json::string(s)));
        let ok = r.ok() && sessions_problem.is_none() && seals_problem.is_none();
        println!(
            "{}",
            Object::new()
                .str("store", &a.store.display().to_string())
                .num("ok", ok)
                .num("records", r.records)
                .num("log_bytes", r.log_bytes)
                .str("chain_head", &r.chain.to_hex())
                .opt_str("last_time", r.last_time.map(format_rfc3339_ns).as_deref())
                .opt_num("last_time_ns", r.last_time.map(|t| t.0))
                .raw("problem", problem)
                .raw("index_problems", strings(&r.index_problems))
                .opt_str("sessions_problem", sessions_problem.as_deref())
                .raw("anchor_problems", strings(&r.anchor_problems))
                .raw("checkpoint_problems", strings(&r.checkpoint_problems))
                .opt_str("seals_problem", seals_problem.as_deref())
                .num("tree_root_checkpoints", sealed.len())
                .str("tree_root", &r.tree_root.to_hex())
                .raw("notes", strings(&r.notes))
                .build()
        );
        return Ok(if ok { Status::Success } else { Status::No });
    }
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
    if let Some(e) = sessions_problem {
        bail!("{}: {e}", a.store.display());
    }
    if !r.checkpoint_problems.is_empty() {
        bail!(
            "{}: the store does not hold the history that was sealed: {}",
            a.store.display(),
            r.checkpoint_problems.join("; ")
        );
    }
    if let Some(e) = seals_problem {
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
        "ok: {} records, {} log bytes, chain head {}, merkle root {}",
        r.records, r.log_bytes, r.chain, r.tree_root
    );
    if !a.checkpoints.is_empty() {
        println!(
            "ok: the history holds what {} checkpoint(s) sealed",
            a.checkpoints.len()
        );
    }
    for n in &r.notes {
        println!("note: {n}");
    }
    Ok(Status::Success)
}
