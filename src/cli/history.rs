//! `diskhist history STORE PATH [--part N] [--from T] [--to T] [--json]
//! [--stats]`: every change of one path across the history, found by
//! jumping from one write to a block the path's view depends on to the
//! next (the library's `history` module says why that misses nothing).

use super::json::{self, Object};
use super::{open_store, state, UsageError};
use anyhow::{bail, Result};
use clap::Args;
use diskhist::fs::{FileKind, Stat};
use diskhist::history::{self, Change, ChangeKind};
use diskhist::{format_rfc3339_ns, Seq, TimeNs};
use std::io::{BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

#[derive(Args)]
pub struct HistoryArgs {
    /// The store directory.
    pub store: PathBuf,
    /// The path, from the filesystem's root.
    pub path: PathBuf,
    /// The partition (as `ls --part`); leave out for a disk without a
    /// partition table.
    #[arg(long, value_name = "N")]
    pub part: Option<u32>,
    /// Start from the state at this time (default: the empty disk).
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// Stop at the state at this time (default: the latest).
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// One JSON object per change.
    #[arg(long)]
    pub json: bool,
    /// Say on standard error how many states were examined, how many index
    /// probes it took and how long.
    #[arg(long)]
    pub stats: bool,
}

/// The range `--from`/`--to` name, as states.
pub fn state_range(
    store: &diskhist::Store,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<(Seq, Seq)> {
    let from = match from {
        Some(t) => state(store, t)?,
        None => Seq(0),
    };
    let to = match to {
        Some(t) => state(store, t)?,
        None => store.head().seq,
    };
    if from > to {
        return Err(UsageError(format!(
            "--from names state {from}, after --to's {to}: nothing between them"
        ))
        .into());
    }
    Ok((from, to))
}

pub fn mode_string(st: &Stat) -> String {
    let t = match st.kind {
        FileKind::Dir => 'd',
        FileKind::File => '-',
        FileKind::Symlink => 'l',
        FileKind::CharDevice => 'c',
        FileKind::BlockDevice => 'b',
        FileKind::Fifo => 'p',
        FileKind::Socket => 's',
    };
    let mut s = String::from(t);
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        s.push(if st.perm & (0o400 >> i) != 0 { c } else { '-' });
    }
    s
}

fn time_or_dash(t: Option<TimeNs>) -> String {
    t.map(format_rfc3339_ns).unwrap_or_else(|| "-".into())
}

/// The filesystem's own times, `name=time` each.
pub fn fs_times(st: &Stat) -> String {
    st.times
        .iter()
        .map(|(n, t)| {
            format!(
                "{}={}",
                n.trim_start_matches("user."),
                format_rfc3339_ns(*t)
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn field_value(st: &Stat, field: &str) -> String {
    match field {
        "kind" => format!("{:?}", st.kind).to_lowercase(),
        "mode" => format!("{:04o}", st.perm),
        "uid" => st.uid.to_string(),
        "gid" => st.gid.to_string(),
        "nlink" => st.nlink.to_string(),
        "rdev" => st.rdev.to_string(),
        name => time_or_dash(
            st.times
                .iter()
                .find(|(n, _)| n.trim_start_matches("user.") == name)
                .map(|(_, t)| *t),
        ),
    }
}

fn describe(c: &Change) -> String {
    let mut parts = Vec::new();
    let v = c.version.as_ref();
    match &c.kind {
        ChangeKind::Present => parts.push("present".to_string()),
        ChangeKind::Created => parts.push("created".into()),
        ChangeKind::Recreated => parts.push("re-created".into()),
        ChangeKind::Replaced { old_ino } => parts.push(format!(
            "replaced by another file (inode {old_ino} -> {})",
            v.map_or(0, |v| v.stat.ino)
        )),
        ChangeKind::Modified => {}
        ChangeKind::RenamedFrom(from) => {
            parts.push(format!("renamed from {}", String::from_utf8_lossy(from)))
        }
        ChangeKind::Deleted => parts.push("deleted".into()),
        ChangeKind::RenamedAway { ino, links } => parts.push(format!(
            "renamed away (inode {ino} still has {links} link{})",
            if *links == 1 { "" } else { "s" }
        )),
        ChangeKind::Unreadable(why) => parts.push(format!("unreadable: {why}")),
    }
    if let Some(v) = v {
        if c.content_changed {
            let what = match v.stat.kind {
                FileKind::Dir => "entries",
                FileKind::Symlink => "target",
                _ => "content",
            };
            parts.push(format!(
                "{what}{} sha256={} size={}",
                if matches!(c.kind, ChangeKind::Modified | ChangeKind::Replaced { .. }) {
                    " changed:"
                } else {
                    ":"
                },
                hex(&v.sha256),
                v.stat.size
            ));
        }
        if !c.fields.is_empty() {
            let prev = c.previous.as_ref().map(|p| &p.stat);
            let f: Vec<String> = c
                .fields
                .iter()
                .map(|f| match prev {
                    Some(p) => format!("{f} {} -> {}", field_value(p, f), field_value(&v.stat, f)),
                    None => format!("{f} {}", field_value(&v.stat, f)),
                })
                .collect();
            parts.push(format!("metadata changed: {}", f.join(", ")));
        }
    }
    parts.join("; ")
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn time_text(seq: Seq, t: TimeNs) -> String {
    if seq.0 == 0 {
        "(empty disk)".into()
    } else {
        format_rfc3339_ns(t)
    }
}

fn json_of(path: &str, c: &Change) -> String {
    let mut o = Object::new()
        .num("seq", c.seq.0)
        .str("time", &time_text(c.seq, c.time_ns))
        .str("path", path)
        .str("change", c.kind.name())
        .raw("content_changed", c.content_changed.to_string())
        .raw(
            "changed",
            json::array(c.fields.iter().map(|f| json::string(f))),
        );
    if let ChangeKind::Unreadable(why) = &c.kind {
        o = o.str("why", why);
    }
    if let Some(p) = &c.previous {
        o = o.num("previous_ino", p.stat.ino);
    }
    if let Some(v) = &c.version {
        let st = &v.stat;
        o = o
            .num("ino", st.ino)
            .str("type", &format!("{:?}", st.kind).to_lowercase())
            .num("size", st.size)
            .str("sha256", &hex(&v.sha256))
            .str("mode", &format!("{:04o}", st.perm))
            .num("uid", st.uid)
            .num("gid", st.gid)
            .num("nlink", st.nlink)
            .raw("times", json::times_object(&st.times));
    }
    o.build()
}

pub fn run(a: HistoryArgs) -> Result<()> {
    let store = Arc::new(open_store(&a.store)?);
    let (from, to) = state_range(&store, a.from.as_deref(), a.to.as_deref())?;
    let path_bytes = a.path.as_os_str().as_bytes().to_vec();
    if path_bytes.split(|&b| b == b'/').any(|c| c == b"..") {
        return Err(UsageError(
            "'..' is not supported in paths; give the path from the filesystem's root".into(),
        )
        .into());
    }
    let shown = a.path.display().to_string();
    let started = Instant::now();
    let mut out = BufWriter::new(std::io::stdout().lock());
    let stats = history::history(&store, a.part, &path_bytes, from, to, |c| {
        if a.json {
            writeln!(out, "{}", json_of(&shown, c))
        } else {
            let times = c.version.as_ref().map(|v| fs_times(&v.stat));
            writeln!(
                out,
                "#{}  {}  {}{}",
                c.seq.0,
                time_text(c.seq, c.time_ns),
                describe(c),
                times.map(|t| format!("  [{t}]")).unwrap_or_default()
            )
        }
    })?;
    out.flush()?;
    if a.stats {
        eprintln!(
            "diskhist: history: {} states examined of {} records ({}..={}), {} index probes, \
             at most {} blocks depended on, {:.3} s",
            stats.states_examined,
            to.0 - from.0,
            from.0,
            to.0,
            stats.index_probes,
            stats.max_dependencies,
            started.elapsed().as_secs_f64()
        );
    }
    if !stats.filesystem_seen {
        let why = stats.last_absence.unwrap_or_else(|| "no filesystem".into());
        if a.part.is_some() || why.contains("--part") {
            return Err(UsageError(format!("{why} (at every state examined)")).into());
        }
        bail!("{why} (at every state examined)");
    }
    if !stats.path_seen {
        bail!(
            "no such file or directory: {} at any state from {} to {}",
            shown,
            from,
            to
        );
    }
    Ok(())
}
