//! `keygen`, `seal`, `cosign`, `prove`, `audit`: signed checkpoints of a
//! store's Merkle tree, proofs against them, and their audit without the
//! store (see `diskhist::seal` for the formats).

use super::output::{Content, Output};
use super::{open_store, Status, UsageError};
use anyhow::{bail, Context, Result};
use clap::Args;
use diskhist::seal::bundle::{self, Bundle, ProveRequest};
use diskhist::seal::checkpoint::SignedCheckpoint;
use diskhist::seal::note::{Note, Signer, Verifier};
use diskhist::{format_rfc3339_ns, Seq};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct KeygenArgs {
    /// The key's name (the signer named in each signature line): no
    /// spaces, no '+' (e.g. lab-recorder-1, case-2026-117).
    pub name: String,
    /// Directory to write NAME.key (the signer key, 0600, keep it
    /// secret) and NAME.pub (the verifier key, for auditors) into.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Replace existing key files.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args)]
pub struct SealArgs {
    /// The store directory.
    pub store: PathBuf,
    /// The signer key file (NAME.key from `diskhist keygen`).
    #[arg(long)]
    pub key: PathBuf,
    /// Write the checkpoint here instead of standard output.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Replace an existing output file.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args)]
pub struct CosignArgs {
    /// The witness's signer key file.
    #[arg(long)]
    pub key: PathBuf,
    /// Before signing, check the checkpoint is signed by this verifier key
    /// (repeatable): a witness signs only what it has checked.
    #[arg(long = "check-key")]
    pub check_keys: Vec<PathBuf>,
    /// The signed checkpoint.
    pub checkpoint: PathBuf,
    /// Write the cosigned checkpoint here instead of standard output.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Replace an existing output file.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args)]
pub struct ProveArgs {
    /// The store directory.
    pub store: PathBuf,
    /// The signed checkpoint the proofs are against.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Prove record N (repeatable).
    #[arg(long = "record", value_name = "N")]
    pub records: Vec<u64>,
    /// Prove the record current at TIME (repeatable; any accepted time).
    #[arg(long = "at", value_name = "TIME")]
    pub at: Vec<String>,
    /// Prove K records chosen by the auditor's --seed.
    #[arg(long, value_name = "K", requires = "seed")]
    pub sample: Option<u64>,
    /// The auditor's seed (any text) for --sample.
    #[arg(long, value_name = "S", requires = "sample")]
    pub seed: Option<String>,
    /// Add a consistency proof that the checkpoint extends the older
    /// checkpoint OLD.
    #[arg(long, value_name = "OLD")]
    pub consistency: Option<PathBuf>,
    /// Disclose the content of each record proved (the bytes written, a
    /// mark's name), checked by the auditor against its content hash.
    #[arg(long)]
    pub with_content: bool,
    /// Write the bundle here instead of standard output.
    #[arg(short, long, value_name = "BUNDLE")]
    pub output: Option<PathBuf>,
    /// Replace an existing output file.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args)]
pub struct AuditArgs {
    /// A verifier key file (NAME.pub), or the key itself (repeatable: every
    /// key given must have signed). The first is the store's signer.
    #[arg(long = "key", required = true)]
    pub keys: Vec<String>,
    /// The signed checkpoint.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The proof bundle from `diskhist prove`.
    pub bundle: PathBuf,
    /// The sample you asked for: the bundle must be the sample of K
    /// records your --seed chooses (without these, a bundle's own seed is
    /// taken as it is).
    #[arg(long, value_name = "K", requires = "seed")]
    pub sample: Option<u64>,
    /// The seed you gave the holder of the store.
    #[arg(long, value_name = "S", requires = "sample")]
    pub seed: Option<String>,
}

/// `--seal-key`, `--seal-every`, `--seal-cmd`: sealing while recording
/// (`serve`, `ingest`).
#[derive(Args, Debug, Clone)]
pub struct SealingArgs {
    /// Seal the history as it is recorded with this signer key: each
    /// checkpoint is appended to STORE/seals (and published with
    /// --seal-cmd).
    #[arg(long, value_name = "KEY")]
    pub seal_key: Option<PathBuf>,
    /// How often: every N records (`10000records`) or every so long
    /// (`30s`, `5m`, `1h`); the last records are sealed when recording
    /// stops.
    #[arg(
        long,
        value_name = "DURATION|Nrecords",
        requires = "seal_key",
        default_value = "1m"
    )]
    pub seal_every: String,
    /// Publish each checkpoint by running `sh -c CMD` with it on standard
    /// input (copy it to another host, a ticket, a mail). A failing
    /// command is logged and retried; recording never waits for it.
    #[arg(long, value_name = "CMD", requires = "seal_key")]
    pub seal_cmd: Option<String>,
}

impl SealingArgs {
    pub fn config(&self) -> Result<Option<diskhist::seal::sealer::SealConfig>> {
        let Some(key) = &self.seal_key else {
            return Ok(None);
        };
        let every = diskhist::seal::sealer::SealEvery::parse(&self.seal_every)
            .map_err(|e| UsageError(format!("--seal-every {e}")))?;
        let text = read_text(key, "signer key")?;
        Signer::parse(&text).with_context(|| format!("{}", key.display()))?;
        Ok(Some(diskhist::seal::sealer::SealConfig {
            signer_key: text,
            every,
            cmd: self.seal_cmd.clone(),
        }))
    }
}

fn read_text(p: &Path, what: &str) -> Result<String> {
    let mut s = String::new();
    std::fs::File::open(p)
        .and_then(|mut f| f.read_to_string(&mut s))
        .with_context(|| format!("cannot read {what} {}", p.display()))?;
    Ok(s)
}

fn read_signer(p: &Path) -> Result<Signer> {
    let t = read_text(p, "signer key")?;
    Signer::parse(&t).with_context(|| format!("{}", p.display()))
}

/// A verifier key: a file holding one, or the key text itself.
pub fn read_verifier(s: &str) -> Result<Verifier> {
    let p = Path::new(s);
    if p.exists() {
        let t = read_text(p, "verifier key")?;
        return Verifier::parse(&t).with_context(|| format!("{}", p.display()));
    }
    Verifier::parse(s)
        .with_context(|| format!("{s:?} is neither a verifier key file nor a verifier key"))
}

pub fn read_checkpoint(p: &Path) -> Result<SignedCheckpoint> {
    let t = read_text(p, "checkpoint")?;
    SignedCheckpoint::parse(&t).with_context(|| format!("{}", p.display()))
}

fn write_text(path: Option<&Path>, force: bool, text: &str) -> Result<()> {
    let mut out = Output::create(path, force, Content::Text)?;
    out.write_all(text.as_bytes())?;
    out.finish()
}

pub fn keygen(a: KeygenArgs) -> Result<()> {
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .context("reading /dev/urandom for the key")?;
    let s = Signer::generate(&a.name, seed).map_err(|e| UsageError(e.to_string()))?;
    let key = a.dir.join(format!("{}.key", a.name));
    let vkey = a.dir.join(format!("{}.pub", a.name));
    for p in [&key, &vkey] {
        if p.exists() && !a.force {
            bail!(
                "{} exists; keys are not replaced without --force (a lost signer key \
                 cannot sign again; a replaced one no longer matches checkpoints that left)",
                p.display()
            );
        }
    }
    write_text(Some(&key), a.force, &format!("{}\n", s.to_private_text()))?;
    write_text(Some(&vkey), a.force, &format!("{}\n", s.verifier()))?;
    eprintln!(
        "signer key (keep it secret, 0600): {}\nverifier key (give it to auditors): {}",
        key.display(),
        vkey.display()
    );
    println!("{}", s.verifier());
    Ok(())
}

pub fn seal(a: SealArgs) -> Result<()> {
    let signer = read_signer(&a.key)?;
    let s = open_store(&a.store)?;
    let note = diskhist::seal::seal(&s, &signer)?;
    write_text(a.output.as_deref(), a.force, &note)?;
    if a.output.is_some() {
        eprintln!("sealed {} records of {}", s.head().seq.0, a.store.display());
    }
    Ok(())
}

pub fn cosign(a: CosignArgs) -> Result<()> {
    let signer = read_signer(&a.key)?;
    let raw = read_text(&a.checkpoint, "checkpoint")?;
    let c = SignedCheckpoint::parse(&raw).with_context(|| format!("{}", a.checkpoint.display()))?;
    for k in &a.check_keys {
        let v = read_verifier(&k.display().to_string())?;
        c.verify(std::slice::from_ref(&v))
            .with_context(|| format!("{}: not cosigned", a.checkpoint.display()))?;
    }
    let out = Note::cosign(&raw, &signer)?;
    write_text(a.output.as_deref(), a.force, &out)
}

pub fn prove(a: ProveArgs) -> Result<()> {
    if a.records.is_empty() && a.at.is_empty() && a.sample.is_none() && a.consistency.is_none() {
        return Err(UsageError(
            "say what to prove: --record N, --at TIME, --sample K --seed S, or --consistency OLD"
                .into(),
        )
        .into());
    }
    let s = open_store(&a.store)?;
    let c = read_checkpoint(&a.checkpoint)?;
    let mut records: Vec<Seq> = a.records.iter().map(|&n| Seq(n)).collect();
    for t in &a.at {
        let seq = super::state(&s, t)?;
        if seq.0 == 0 {
            bail!("no record was current at {t}: the history starts later");
        }
        records.push(seq);
    }
    let req = ProveRequest {
        records,
        sample: a
            .sample
            .map(|k| (k, a.seed.clone().unwrap_or_default().into_bytes())),
        old: a.consistency.as_deref().map(read_checkpoint).transpose()?,
        with_content: a.with_content,
    };
    let b = bundle::prove(&s, &c, &req)?;
    write_text(a.output.as_deref(), a.force, &b.to_text())?;
    if a.output.is_some() {
        eprintln!(
            "{} record(s) proved against the checkpoint of {} records{}",
            b.records.len(),
            b.size,
            if b.old.is_some() {
                ", with a consistency proof"
            } else {
                ""
            }
        );
    }
    Ok(())
}

pub fn audit(a: AuditArgs) -> Result<Status> {
    let keys = a
        .keys
        .iter()
        .map(|k| read_verifier(k))
        .collect::<Result<Vec<_>>>()?;
    let c = read_checkpoint(&a.checkpoint)?;
    let text = read_text(&a.bundle, "proof bundle")?;
    let b = Bundle::parse(&text).with_context(|| format!("{}", a.bundle.display()))?;
    let expect = a
        .sample
        .map(|k| (k, a.seed.as_deref().unwrap_or("").as_bytes()));
    let r = match bundle::audit(&keys, &c, &b, expect) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("diskhist: {e}");
            return Ok(Status::No);
        }
    };
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "checkpoint: {} records of {}, signed by {}",
        r.size,
        r.origin,
        r.signers.join(", ")
    )?;
    if let Some(old) = r.extends {
        writeln!(
            out,
            "consistent: it extends the older checkpoint of {old} records"
        )?;
    }
    if let Some(k) = r.sample {
        writeln!(
            out,
            "sample: the last {k} records are the ones the seed chooses"
        )?;
    }
    for l in &r.records {
        writeln!(
            out,
            "record {}: {} {} {}+{} flags {} content {} (included)",
            l.seq.0,
            format_rfc3339_ns(l.time_ns),
            l.kind.name(),
            l.offset_bytes,
            l.length_bytes,
            l.flags.0,
            l.content_hash
        )?;
    }
    writeln!(
        out,
        "ok: {} inclusion proof(s){}{}",
        r.records.len(),
        if r.contents_checked > 0 {
            format!(", {} disclosed content(s) match", r.contents_checked)
        } else {
            String::new()
        },
        if r.extends.is_some() {
            ", 1 consistency proof"
        } else {
            ""
        }
    )?;
    Ok(Status::Success)
}
