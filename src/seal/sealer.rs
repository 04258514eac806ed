//! Sealing while recording (`serve` and `ingest` with `--seal-key`): a
//! [`SealHook`] for the writer that signs a checkpoint every N records or
//! every so long, appends it to `STORE/seals` and hands it to a publisher
//! thread that pipes it to `--seal-cmd` (`sh -c CMD`, the checkpoint on
//! standard input).
//!
//! Recording never waits for publishing and never stops because of it: a
//! command that fails (exit status, signal, cannot start) is logged and
//! retried, the same checkpoint first, with a growing pause (1 s doubling
//! to 60 s); checkpoints sealed meanwhile queue behind it in order. At the
//! end, [`Sealer::finish`] gives the queue a bounded time to drain and
//! names what was left unpublished (it is all in `STORE/seals`).

use super::checkpoint::Checkpoint;
use super::note::{Note, Signer};
use super::seals::{Seal, SealsFile};
use crate::store::SealHook;
use crate::units::{Hash32, Seq};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often to seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealEvery {
    /// Once this many records were recorded since the last checkpoint.
    Records(u64),
    /// Once this long has passed since the last checkpoint (and records
    /// came since).
    Interval(Duration),
}

impl SealEvery {
    /// `10000records` / `10000r`, or a duration: `30s`, `5m`, `1h`, `500ms`.
    pub fn parse(s: &str) -> Result<SealEvery, String> {
        let s = s.trim();
        let num_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (n, unit) = s.split_at(num_end);
        let n: u64 = n
            .parse()
            .map_err(|_| format!("{s:?}: want a number and a unit (10000records, 30s, 5m, 1h)"))?;
        if n == 0 {
            return Err(format!("{s:?}: must be more than zero"));
        }
        let d = |secs: u64| Ok(SealEvery::Interval(Duration::from_secs(secs)));
        match unit {
            "records" | "record" | "r" => Ok(SealEvery::Records(n)),
            "ms" => Ok(SealEvery::Interval(Duration::from_millis(n))),
            "s" => d(n),
            "m" | "min" => d(n * 60),
            "h" => d(n * 3600),
            _ => Err(format!(
                "{s:?}: unknown unit {unit:?} (want records, ms, s, m or h)"
            )),
        }
    }
}

/// What a recorder is told to seal with (`--seal-key`, `--seal-every`,
/// `--seal-cmd`).
#[derive(Clone)]
pub struct SealConfig {
    /// The signer key, in the note format.
    pub signer_key: String,
    pub every: SealEvery,
    pub cmd: Option<String>,
}

impl std::fmt::Debug for SealConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealConfig")
            .field("signer_key", &"(secret)")
            .field("every", &self.every)
            .field("cmd", &self.cmd)
            .finish()
    }
}

impl SealConfig {
    /// Have `w` seal what it records, as configured.
    pub fn attach(
        &self,
        store_dir: &Path,
        w: &mut crate::store::Writer,
    ) -> Result<(), super::SealError> {
        let signer = Signer::parse(&self.signer_key)?;
        let origin = super::checkpoint::origin_for(&w.store_id());
        let sealer = Sealer::new(
            store_dir,
            origin,
            signer,
            self.every,
            self.cmd.clone(),
            w.head().seq,
        )
        .map_err(|e| super::SealError::Usage(e.to_string()))?;
        log::info!(
            "sealing every {} with key {}{}",
            match self.every {
                SealEvery::Records(n) => format!("{n} records"),
                SealEvery::Interval(d) => format!("{d:?}"),
            },
            sealer.signer_name(),
            match &self.cmd {
                Some(c) => format!(", publishing each checkpoint with `{c}`"),
                None => String::new(),
            }
        );
        w.set_seal_hook(Box::new(sealer));
        Ok(())
    }
}

/// What publishing got done, for the end-of-run summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublishStats {
    pub published: u64,
    pub failures: u64,
    pub unpublished: u64,
}

/// The writer's seal hook.
pub struct Sealer {
    signer: Signer,
    origin: String,
    every: SealEvery,
    seals: Option<SealsFile>,
    last_size: u64,
    last_time: Instant,
    sealed: u64,
    tx: Option<mpsc::Sender<String>>,
    publisher: Option<std::thread::JoinHandle<()>>,
    stats: Arc<Mutex<PublishStats>>,
    deadline: Arc<Mutex<Option<Instant>>>,
}

impl Sealer {
    /// A sealer for the store at `store_dir` whose checkpoints have origin
    /// `origin`; `head` is the writer's head. Records after the last
    /// checkpoint in `seals` (all of them, if there is none) count as
    /// unsealed: they are sealed when due, and at the latest when
    /// recording stops. An unreadable `seals` file is an error (start-up
    /// is the time to say so).
    pub fn new(
        store_dir: &Path,
        origin: String,
        signer: Signer,
        every: SealEvery,
        cmd: Option<String>,
        head: Seq,
    ) -> Result<Sealer, super::seals::SealsError> {
        let seals = SealsFile::open(store_dir)?;
        let stats = Arc::new(Mutex::new(PublishStats::default()));
        let deadline = Arc::new(Mutex::new(None));
        let (tx, publisher) = match cmd {
            Some(cmd) => {
                let (tx, rx) = mpsc::channel::<String>();
                let (st, dl) = (stats.clone(), deadline.clone());
                let h = std::thread::Builder::new()
                    .name("seal-publisher".into())
                    .spawn(move || publish_loop(&cmd, rx, &st, &dl))
                    .expect("spawn the seal publisher");
                (Some(tx), Some(h))
            }
            None => (None, None),
        };
        Ok(Sealer {
            signer,
            origin,
            every,
            last_size: seals.last_size().unwrap_or(0).min(head.0),
            seals: Some(seals),
            last_time: Instant::now(),
            sealed: 0,
            tx,
            publisher,
            stats,
            deadline,
        })
    }

    pub fn signer_name(&self) -> &str {
        self.signer.name()
    }

    /// Checkpoints sealed so far.
    pub fn sealed(&self) -> u64 {
        self.sealed
    }

    /// Stop publishing: wait up to `grace` for the queue to drain.
    pub fn finish(&mut self, grace: Duration) -> PublishStats {
        *self.deadline.lock().unwrap() = Some(Instant::now() + grace);
        self.tx = None;
        if let Some(h) = self.publisher.take() {
            let _ = h.join();
        }
        *self.stats.lock().unwrap()
    }
}

impl SealHook for Sealer {
    fn due(&mut self, head: Seq) -> bool {
        if head.0 <= self.last_size {
            return false;
        }
        match self.every {
            SealEvery::Records(n) => head.0 - self.last_size >= n,
            SealEvery::Interval(d) => self.last_time.elapsed() >= d,
        }
    }

    fn seal(&mut self, size: Seq, root: Hash32) {
        if size.0 <= self.last_size {
            // Sealed already, or nothing recorded since the writer opened.
            return;
        }
        self.last_size = size.0;
        self.last_time = Instant::now();
        let c = Checkpoint {
            origin: self.origin.clone(),
            size: size.0,
            root,
            extensions: Vec::new(),
        };
        let note = match Note::sign(&c.text(), &self.signer) {
            Ok(n) => n,
            Err(e) => {
                log::error!("could not sign the checkpoint of {size} records: {e}");
                return;
            }
        };
        self.sealed += 1;
        if let Some(f) = &mut self.seals {
            let seal = Seal {
                time_ns: crate::time::now().0,
                size: size.0,
                note: note.clone(),
            };
            if let Err(e) = f.append(&seal) {
                log::error!(
                    "{e}: the checkpoint of {size} records could not be kept in the store's \
                     seals file{}; recording goes on",
                    if self.tx.is_some() {
                        " (it is still published)"
                    } else {
                        ""
                    }
                );
            }
        }
        log::info!("sealed the history at {} records", size.0);
        if let Some(tx) = &self.tx {
            let _ = tx.send(note);
        }
    }
}

impl Drop for Sealer {
    fn drop(&mut self) {
        if self.publisher.is_some() {
            self.finish(Duration::from_secs(10));
        }
    }
}

/// Run `sh -c cmd` with `note` on standard input; `Err` says why it failed.
fn run_publish(cmd: &str, note: &str) -> Result<(), String> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start `sh -c {cmd}`: {e}"))?;
    let mut stdin = child.stdin.take().expect("piped");
    // A command that does not read its input is its own business: only its
    // exit status counts.
    let _ = stdin.write_all(note.as_bytes());
    drop(stdin);
    let st = child
        .wait()
        .map_err(|e| format!("waiting for `{cmd}`: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("`{cmd}` failed ({st})"))
    }
}

fn publish_loop(
    cmd: &str,
    rx: mpsc::Receiver<String>,
    stats: &Mutex<PublishStats>,
    deadline: &Mutex<Option<Instant>>,
) {
    let past_deadline = || {
        deadline
            .lock()
            .unwrap()
            .is_some_and(|d| Instant::now() >= d)
    };
    let mut queue = std::collections::VecDeque::new();
    let mut pause = Duration::from_secs(1);
    let mut open = true;
    loop {
        if queue.is_empty() {
            if !open {
                return;
            }
            match rx.recv() {
                Ok(n) => queue.push_back(n),
                Err(_) => return,
            }
        }
        while let Ok(n) = rx.try_recv() {
            queue.push_back(n);
        }
        let note = queue.front().expect("not empty");
        match run_publish(cmd, note) {
            Ok(()) => {
                queue.pop_front();
                stats.lock().unwrap().published += 1;
                pause = Duration::from_secs(1);
            }
            Err(why) => {
                stats.lock().unwrap().failures += 1;
                if past_deadline() {
                    stats.lock().unwrap().unpublished = queue.len() as u64;
                    log::error!(
                        "{why}; giving up at exit: {} checkpoint(s) not published (they are in \
                         the store's seals file; publish them from there)",
                        queue.len()
                    );
                    return;
                }
                log::warn!(
                    "publishing a checkpoint: {why}; retrying in {} s ({} waiting); recording \
                     goes on",
                    pause.as_secs(),
                    queue.len()
                );
                // Wait, but wake for the end of the run.
                let until = Instant::now() + pause;
                while Instant::now() < until {
                    match rx.recv_timeout(Duration::from_millis(100)) {
                        Ok(n) => queue.push_back(n),
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        Err(mpsc::RecvTimeoutError::Disconnected) => {
                            open = false;
                            if past_deadline() {
                                break;
                            }
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
                pause = (pause * 2).min(Duration::from_secs(60));
            }
        }
        if !open && queue.is_empty() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_every_parses_records_and_durations() {
        assert_eq!(
            SealEvery::parse("10000records"),
            Ok(SealEvery::Records(10000))
        );
        assert_eq!(SealEvery::parse("5r"), Ok(SealEvery::Records(5)));
        assert_eq!(
            SealEvery::parse("30s"),
            Ok(SealEvery::Interval(Duration::from_secs(30)))
        );
        assert_eq!(
            SealEvery::parse("2m"),
            Ok(SealEvery::Interval(Duration::from_secs(120)))
        );
        assert!(SealEvery::parse("0s").is_err());
        assert!(SealEvery::parse("5 parsecs").is_err());
        assert!(SealEvery::parse("s").is_err());
    }
}
