//! `diskhist bisect STORE [--from T] [--to T] [--part N] [--image]
//! [--mount DIR] -- COMMAND [ARGS...]`: the first record at which
//! COMMAND's verdict changes, with `git bisect run` semantics: exit 0
//! good, 125 skip, 1..=127 otherwise bad, anything else (a signal, >127)
//! stops the bisection. `{}` in COMMAND and ARGS becomes the state's
//! `files/` (or `disk.img`, `p<N>.img` with `--image`) under a mount:
//! the one `--mount` names, or a private read-only mount of the store
//! made for the run (in a fresh 0700 directory, in its own process group,
//! unmounted when the run ends, fails or is interrupted).
//!
//! Only states a time names are tried (the last record of each group of
//! records sharing a recorded time), so an import or a burst the recorder
//! stamped at once is one step, never a half-written state.

use super::history::state_range;
use super::{open_store, stop_flag, UsageError};
use anyhow::{bail, Context, Result};
use clap::Args;
use diskhist::history::group_end;
use diskhist::{format_rfc3339_ns, Seq, Store, TimeNs, TimeSpec};
use std::collections::BTreeMap;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct BisectArgs {
    /// The store directory.
    pub store: PathBuf,
    /// The first state to consider (default: the first record's).
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// The last state to consider (default: the latest).
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// The partition whose files/ (or p<N>.img) `{}` names.
    #[arg(long, value_name = "N")]
    pub part: Option<u32>,
    /// `{}` is the state's disk.img (p<N>.img with --part), not files/.
    #[arg(long)]
    pub image: bool,
    /// Use this running `diskhist mount` of the store instead of a private one.
    #[arg(long, value_name = "DIR")]
    pub mount: Option<PathBuf>,
    /// The command and its arguments; `{}` in them is the state's path.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Good,
    Bad,
    Skip,
}

impl Verdict {
    fn name(self) -> &'static str {
        match self {
            Verdict::Good => "good",
            Verdict::Bad => "bad",
            Verdict::Skip => "skip",
        }
    }
}

/// A private mount, unmounted when dropped.
struct PrivateMount {
    dir: PathBuf,
    child: Child,
}

fn is_mounted(dir: &Path) -> bool {
    let want = dir.to_string_lossy().replace(' ', "\\040");
    std::fs::read_to_string("/proc/self/mounts").is_ok_and(|m| {
        m.lines()
            .any(|l| l.split(' ').nth(1) == Some(want.as_str()))
    })
}

impl PrivateMount {
    fn start(store: &Path) -> Result<PrivateMount> {
        let base = std::env::temp_dir().join(format!(
            "diskhist-bisect-{}-{}",
            std::process::id(),
            diskhist::now().0
        ));
        std::fs::create_dir(&base).with_context(|| format!("creating {}", base.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700))?;
        let exe = std::env::current_exe().context("finding diskhist's own binary")?;
        let child = Command::new(exe)
            .arg("mount")
            .arg(store)
            .arg(&base)
            .stdin(std::process::Stdio::null())
            // Its "mounted"/"unmounted" lines are noise here; warnings stay.
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            // Its own process group: a Ctrl-C reaches bisect, which
            // unmounts in order, not the daemon behind the commands' backs.
            .process_group(0)
            .spawn()
            .context("starting diskhist mount")?;
        let mut m = PrivateMount { dir: base, child };
        let started = Instant::now();
        while !is_mounted(&m.dir) {
            if let Some(st) = m.child.try_wait()? {
                bail!("the private mount failed ({st}); see its message above");
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("the private mount did not appear within 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(m)
    }
}

impl Drop for PrivateMount {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid, which we have not reaped.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let started = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if started.elapsed() > Duration::from_secs(20) => {
                    let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        if std::fs::remove_dir(&self.dir).is_err() {
            eprintln!(
                "diskhist: bisect: could not remove {} (still mounted? umount it)",
                self.dir.display()
            );
        }
    }
}

/// The state just before `seq`'s time group (`None`: `seq`'s group is
/// the first).
fn group_before(store: &Store, seq: Seq) -> Result<Option<Seq>> {
    let t = store.time_of(seq)?;
    if t.0 == i64::MIN {
        return Ok(None);
    }
    let s = store.resolve(TimeSpec::At(TimeNs(t.0 - 1)))?;
    Ok((s.0 > 0).then_some(s))
}

fn fmt_state(store: &Store, seq: Seq) -> String {
    match store.time_of(seq) {
        Ok(t) if seq.0 > 0 => format!("#{} ({})", seq.0, format_rfc3339_ns(t)),
        _ => format!("#{}", seq.0),
    }
}

struct Runner<'a> {
    root: PathBuf,
    rel: String,
    command: &'a [String],
    stop: Arc<AtomicBool>,
    verdicts: BTreeMap<Seq, Verdict>,
}

impl Runner<'_> {
    fn path_of(&self, seq: Seq) -> PathBuf {
        self.root
            .join("seq")
            .join(seq.0.to_string())
            .join(&self.rel)
    }

    fn verdict(&mut self, store: &Store, seq: Seq) -> Result<Verdict> {
        if let Some(v) = self.verdicts.get(&seq) {
            return Ok(*v);
        }
        let path = self.path_of(seq);
        let subst = |a: &String| a.replace("{}", &path.to_string_lossy());
        let status = Command::new(subst(&self.command[0]))
            .args(self.command[1..].iter().map(subst))
            .status()
            .with_context(|| format!("running {}", self.command[0]))?;
        if self.stop.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        let v = match status.code() {
            Some(0) => Verdict::Good,
            Some(125) => Verdict::Skip,
            Some(c) if (1..=127).contains(&c) => Verdict::Bad,
            Some(c) => bail!(
                "{} exited with {c} at {}: above 127, which stops a bisection (as git bisect run)",
                self.command[0],
                fmt_state(store, seq)
            ),
            None => bail!(
                "{} was killed by signal {} at {}; stopping",
                self.command[0],
                status.signal().unwrap_or(0),
                fmt_state(store, seq)
            ),
        };
        println!(
            "bisect: {}: {} (exit {})",
            fmt_state(store, seq),
            v.name(),
            status.code().unwrap_or(-1)
        );
        self.verdicts.insert(seq, v);
        Ok(v)
    }
}

pub fn run(a: BisectArgs) -> Result<()> {
    let store = open_store(&a.store)?;
    if store.head().seq.0 == 0 {
        bail!("the store has no records: nothing to bisect");
    }
    let (from, to) = state_range(&store, a.from.as_deref(), a.to.as_deref())?;
    let to = group_end(&store, to, to)?;
    let lo = group_end(&store, Seq(from.0.max(1)), to)?;
    if lo >= to {
        return Err(UsageError(format!(
            "--from and --to name the same state ({}): nothing to bisect",
            fmt_state(&store, to)
        ))
        .into());
    }
    if !a.command.iter().any(|c| c.contains("{}")) {
        eprintln!(
            "diskhist: bisect: note: no {{}} in the command: it is not told which state to look at"
        );
    }
    let rel = match (a.image, a.part) {
        (false, None) => "files".to_string(),
        (false, Some(n)) => format!("p{n}/files"),
        (true, None) => "disk.img".to_string(),
        (true, Some(n)) => format!("p{n}.img"),
    };
    let stop = stop_flag()?;
    let private;
    let root = match &a.mount {
        Some(m) => {
            if !m.join("seq").is_dir() {
                return Err(UsageError(format!(
                    "--mount {}: not a diskhist mount (no seq/ in it)",
                    m.display()
                ))
                .into());
            }
            m.clone()
        }
        None => {
            private = PrivateMount::start(&a.store)?;
            private.dir.clone()
        }
    };
    let mut r = Runner {
        root,
        rel,
        command: &a.command,
        stop,
        verdicts: BTreeMap::new(),
    };
    if !r.path_of(to).exists() {
        bail!(
            "{} does not exist in the mount (wrong --part? see `diskhist info`)",
            r.path_of(to).display()
        );
    }
    let v_lo = r.verdict(&store, lo)?;
    let v_hi = r.verdict(&store, to)?;
    if v_lo == Verdict::Skip || v_hi == Verdict::Skip {
        bail!("the command skipped (exit 125) an end of the range; give --from/--to it can judge");
    }
    if v_lo == v_hi {
        bail!(
            "the verdict is {} at both {} and {}: nothing changes between them",
            v_lo.name(),
            fmt_state(&store, lo),
            fmt_state(&store, to)
        );
    }
    let (mut lo, mut hi) = (lo, to);
    // Invariant: verdict(lo) = v_lo, verdict(hi) = v_hi; states between
    // that answered skip are set aside.
    loop {
        // The states strictly between lo and hi, by their ends, near the
        // middle first.
        let mid = Seq(lo.0 + (hi.0 - lo.0) / 2);
        let mut cands = Vec::new();
        let m = group_end(&store, Seq(mid.0.max(lo.0 + 1)), hi)?;
        if m < hi {
            cands.push(m);
        } else if let Some(b) = group_before(&store, hi)?.filter(|b| *b > lo) {
            cands.push(b);
        }
        let Some(&first) = cands.first() else { break };
        // Skips: walk outward from the candidate until a verdict.
        let mut found = None;
        let (mut up, mut down) = (
            Some(first),
            group_before(&store, first)?.filter(|b| *b > lo),
        );
        while found.is_none() && (up.is_some() || down.is_some()) {
            if let Some(u) = up {
                match r.verdict(&store, u)? {
                    Verdict::Skip => {
                        let n = group_end(&store, Seq(u.0 + 1), hi)?;
                        up = (n < hi).then_some(n);
                    }
                    v => found = Some((u, v)),
                }
            }
            if found.is_none() {
                if let Some(d) = down {
                    match r.verdict(&store, d)? {
                        Verdict::Skip => down = group_before(&store, d)?.filter(|b| *b > lo),
                        v => found = Some((d, v)),
                    }
                }
            }
        }
        match found {
            None => break, // every state between skipped
            Some((s, v)) if v == v_lo => lo = s,
            Some((s, _)) => hi = s,
        }
    }
    let skipped: Vec<Seq> = r
        .verdicts
        .iter()
        .filter(|(s, v)| **v == Verdict::Skip && **s > lo && **s < hi)
        .map(|(s, _)| *s)
        .collect();
    let first_of_group = Seq(group_before(&store, hi)?.map_or(1, |b| b.0 + 1));
    if !skipped.is_empty() {
        println!(
            "the verdict changes from {} to {} somewhere after {}, at or before {}; \
             these states between were skipped: {}",
            v_lo.name(),
            v_hi.name(),
            fmt_state(&store, lo),
            fmt_state(&store, hi),
            skipped
                .iter()
                .map(|s| format!("#{}", s.0))
                .collect::<Vec<_>>()
                .join(" ")
        );
        return Ok(());
    }
    println!(
        "first {} state: {}{}",
        v_hi.name(),
        fmt_state(&store, hi),
        if first_of_group < hi {
            format!(
                " (records #{}..#{} share its time; the change is complete at #{})",
                first_of_group.0, hi.0, hi.0
            )
        } else {
            String::new()
        }
    );
    println!("  before it: {} ({})", fmt_state(&store, lo), v_lo.name());
    let head = store.head().seq;
    if hi < head {
        println!("  next record: {}", fmt_state(&store, Seq(hi.0 + 1)));
    } else {
        println!("  next record: none (it is the latest state)");
    }
    Ok(())
}
