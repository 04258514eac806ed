//! `timeline --check`: contradictions between the times a filesystem
//! claims and the times the recorder saw the blocks written. Each rule
//! looks at one version of one path and the version before it (of the
//! same node: a name taken over by another node starts afresh).
//!
//! | rule | fires when |
//! |---|---|
//! | `content-changed-time-kept` | content differs, mtime did not advance (and does not within the tolerance after) |
//! | `time-went-backwards` | mtime, ctime or crtime ($SI times on NTFS) earlier than before |
//! | `claimed-before-written` | mtime earlier than the recorded write of the content, by more than the tolerance |
//! | `claimed-after-written` | mtime, ctime or crtime later than the recorded write of the version, by more than the tolerance |
//! | `si-before-fn` | NTFS: $SI created or modified earlier than the $FILE_NAME one, by more than the tolerance |
//! | `whole-seconds` | all user-settable times whole seconds where the filesystem keeps sub-seconds (informational) |
//!
//! Only what changed in a version is checked, so one forged time is one
//! finding, not one per later version. The content-kept rule waits for
//! the next version of the node: a live recording can show an in-place
//! write's data a moment before the inode carrying its new mtime, and
//! that inode arriving within the tolerance (same content, newer mtime)
//! clears it; further writes do not.

use super::diff::ChangeKind;
use super::tree::Event;
use crate::fs::Stat;
use crate::time::format_rfc3339_ns;
use crate::units::{Seq, TimeNs};
use std::collections::HashMap;

/// One contradiction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub path: Vec<u8>,
    pub rule: &'static str,
    /// The record the finding is about, and its recorded time.
    pub seq: Seq,
    pub time_ns: TimeNs,
    /// The claimed time that contradicts it.
    pub claimed: TimeNs,
    /// Claimed minus recorded (negative: claimed earlier).
    pub apart_ns: i64,
    pub detail: String,
    /// Worth a look, not a contradiction by itself.
    pub informational: bool,
}

pub const RULES: [&str; 6] = [
    "content-changed-time-kept",
    "time-went-backwards",
    "claimed-before-written",
    "claimed-after-written",
    "si-before-fn",
    "whole-seconds",
];

fn time_named(st: &Stat, name: &str) -> Option<TimeNs> {
    st.times.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

fn is_ntfs(st: &Stat) -> bool {
    time_named(st, "user.ntfs.si.created").is_some()
}

fn t(x: TimeNs) -> String {
    format_rfc3339_ns(x)
}

/// "3d 4h 5m 6.25s" style distance.
pub fn human_ns(d: i64) -> String {
    let a = d.unsigned_abs();
    let secs = a / 1_000_000_000;
    let frac = a % 1_000_000_000;
    let (dd, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if dd > 0 {
        out += &format!("{dd}d ");
    }
    if dd > 0 || h > 0 {
        out += &format!("{h}h ");
    }
    if dd > 0 || h > 0 || m > 0 {
        out += &format!("{m}m ");
    }
    if frac == 0 {
        out += &format!("{s}s");
    } else {
        out += &format!("{s}.{:03}s", frac / 1_000_000);
    }
    out
}

struct Pending {
    finding: Finding,
    old_mtime: Option<TimeNs>,
    ino: u64,
}

/// Applies the rules to a stream of timeline events, in order.
pub struct Checker {
    tolerance_ns: i64,
    pending: HashMap<Vec<u8>, Pending>,
    found: Vec<Finding>,
}

impl Checker {
    pub fn new(tolerance_ns: i64) -> Checker {
        Checker {
            tolerance_ns,
            pending: HashMap::new(),
            found: Vec::new(),
        }
    }

    /// Look at one event.
    pub fn event(&mut self, e: &Event) {
        let tol = self.tolerance_ns;
        if let Some(p) = self.pending.remove(&e.path) {
            // Only the inode arriving late (the same content, a newer
            // mtime, soon after) clears it; more writes do not.
            let cleared = e.version.as_ref().is_some_and(|v| {
                v.stat.ino == p.ino
                    && !e.content_changed
                    && e.time_ns.0.saturating_sub(p.finding.time_ns.0) <= tol
                    && v.stat.mtime > p.old_mtime
            });
            if !cleared {
                self.found.push(p.finding);
            }
        }
        let Some(v) = &e.version else { return };
        let st = &v.stat;
        let same_node = matches!(e.kind, ChangeKind::Modified | ChangeKind::RenamedFrom(_));
        let prev = e.previous.as_ref().filter(|_| same_node).map(|p| &p.stat);
        let new_node = !same_node;
        let mtime_changed = prev.is_none_or(|p| p.mtime != st.mtime);
        let mut push = |f: Finding| self.found.push(f);
        let mk = |rule, seq, time_ns: TimeNs, claimed: TimeNs, detail: String, info| Finding {
            path: e.path.clone(),
            rule,
            seq,
            time_ns,
            claimed,
            apart_ns: claimed.0.saturating_sub(time_ns.0),
            detail,
            informational: info,
        };
        let ntfs = is_ntfs(st);
        let (m_name, c_name, cr_name) = if ntfs {
            ("$SI modified", "$SI MFT-changed", "$SI created")
        } else {
            ("mtime", "ctime", "crtime")
        };

        // content-changed-time-kept
        if let (Some(p), true) = (prev, e.content_changed) {
            if st.kind == crate::fs::FileKind::File && st.mtime.is_some() && st.mtime <= p.mtime {
                let f = mk(
                    "content-changed-time-kept",
                    e.content_write.map_or(e.seq, |c| c.0),
                    e.content_write.map_or(e.time_ns, |c| c.1),
                    st.mtime.unwrap_or_default(),
                    format!(
                        "content changed (size {} -> {}) but {m_name} stayed {}{}; ctime {}",
                        p.size,
                        st.size,
                        t(st.mtime.unwrap_or_default()),
                        if st.mtime < p.mtime {
                            format!(" (was {})", t(p.mtime.unwrap_or_default()))
                        } else {
                            String::new()
                        },
                        st.ctime.map(t).unwrap_or_else(|| "-".into())
                    ),
                    false,
                );
                self.pending.insert(
                    e.path.clone(),
                    Pending {
                        finding: f,
                        old_mtime: p.mtime,
                        ino: st.ino,
                    },
                );
            }
        }

        // time-went-backwards
        if let Some(p) = prev {
            for (name, a, b) in [
                (m_name, p.mtime, st.mtime),
                (c_name, p.ctime, st.ctime),
                (cr_name, p.crtime, st.crtime),
            ] {
                if let (Some(a), Some(b)) = (a, b) {
                    if b < a {
                        push(mk(
                            "time-went-backwards",
                            e.seq,
                            e.time_ns,
                            b,
                            format!(
                                "{name} went back from {} to {} ({} earlier)",
                                t(a),
                                t(b),
                                human_ns(a.0 - b.0)
                            ),
                            false,
                        ));
                    }
                }
            }
        }

        // claimed-before-written
        if st.kind == crate::fs::FileKind::File && (e.content_changed || mtime_changed) {
            if let (Some(m), Some((cs, ct))) = (st.mtime, e.content_write) {
                if m.0 < ct.0.saturating_sub(tol) {
                    let (seq, time) = if e.content_changed {
                        (cs, ct)
                    } else {
                        (e.seq, e.time_ns)
                    };
                    let ctime = st.ctime.unwrap_or_default();
                    let witness = if ntfs {
                        let fnm = time_named(st, "user.ntfs.fn.modified");
                        format!("$FN modified {}", fnm.map(t).unwrap_or_else(|| "-".into()))
                    } else {
                        format!("ctime {}", t(ctime))
                    };
                    let looks = if ntfs {
                        let fnm = time_named(st, "user.ntfs.fn.modified").unwrap_or_default();
                        if fnm.0 >= ct.0.saturating_sub(tol) {
                            "$FN keeps the real time: $SI backdated (timestomping, or a copy keeping times)"
                        } else {
                            "$FN is as early: set below the filesystem API, or the guest clock was behind"
                        }
                    } else if st.ctime.is_some() && ctime.0 < time.0.saturating_sub(tol) {
                        "ctime is as early, which userspace cannot set: a raw edit (debugfs) or the guest clock set back"
                    } else if new_node {
                        "a new file with an old mtime: what cp -p, tar x and rsync -t do, or backdating at creation"
                    } else {
                        "an existing file's mtime set back (touch -d, timestomping); ctime shows when"
                    };
                    push(mk(
                        "claimed-before-written",
                        seq,
                        time,
                        m,
                        format!(
                            "{m_name} {} is {} before the content was written (record {cs}, {}); {witness}; {looks}",
                            t(m),
                            human_ns(ct.0 - m.0),
                            t(ct)
                        ),
                        false,
                    ));
                }
            }
        }

        // claimed-after-written
        for (name, now, before) in [
            (m_name, st.mtime, prev.and_then(|p| p.mtime)),
            (c_name, st.ctime, prev.and_then(|p| p.ctime)),
            (cr_name, st.crtime, prev.and_then(|p| p.crtime)),
        ] {
            if let Some(c) = now {
                if Some(c) != before && c.0 > e.time_ns.0.saturating_add(tol) && e.seq.0 > 0 {
                    push(mk(
                        "claimed-after-written",
                        e.seq,
                        e.time_ns,
                        c,
                        format!(
                            "{name} {} is {} after the record that holds it was written (a guest clock set forward, or a future-dated file)",
                            t(c),
                            human_ns(c.0 - e.time_ns.0)
                        ),
                        false,
                    ));
                }
            }
        }

        // si-before-fn
        if ntfs {
            for (si, fname, what) in [
                ("user.ntfs.si.created", "user.ntfs.fn.created", "created"),
                ("user.ntfs.si.modified", "user.ntfs.fn.modified", "modified"),
            ] {
                if let (Some(a), Some(b)) = (time_named(st, si), time_named(st, fname)) {
                    let was = e
                        .previous
                        .as_ref()
                        .filter(|_| same_node)
                        .map(|p| (time_named(&p.stat, si), time_named(&p.stat, fname)));
                    let changed = was != Some((Some(a), Some(b)));
                    if changed && a.0 < b.0.saturating_sub(tol) {
                        push(mk(
                            "si-before-fn",
                            e.seq,
                            e.time_ns,
                            a,
                            format!(
                                "$SI {what} {} is {} before $FN {what} {} (the $FILE_NAME times are set by the filesystem only)",
                                t(a),
                                human_ns(b.0 - a.0),
                                t(b)
                            ),
                            false,
                        ));
                    }
                }
            }
        }

        // whole-seconds
        if mtime_changed && st.kind == crate::fs::FileKind::File {
            let whole = |x: Option<TimeNs>| x.is_some_and(|x| x.0.rem_euclid(1_000_000_000) == 0);
            let (set, witnesses): (Vec<&str>, Vec<&str>) = if ntfs {
                (
                    vec![
                        "user.ntfs.si.created",
                        "user.ntfs.si.modified",
                        "user.ntfs.si.changed",
                        "user.ntfs.si.accessed",
                    ],
                    vec!["user.ntfs.fn.created", "user.ntfs.fn.modified"],
                )
            } else {
                (
                    vec!["user.ext4.mtime", "user.ext4.atime"],
                    vec!["user.ext4.ctime"],
                )
            };
            let all_whole = set.iter().all(|n| whole(time_named(st, n)));
            let fs_keeps_ns = witnesses
                .iter()
                .any(|n| time_named(st, n).is_some_and(|x| x.0.rem_euclid(1_000_000_000) != 0));
            if all_whole && fs_keeps_ns {
                push(mk(
                    "whole-seconds",
                    e.seq,
                    e.time_ns,
                    st.mtime.unwrap_or_default(),
                    format!(
                        "{} all have zero sub-seconds where the filesystem keeps them ({} has them): typical of touch -d and timestomping tools",
                        set.iter().map(|n| n.trim_start_matches("user.")).collect::<Vec<_>>().join(", "),
                        witnesses.iter().map(|n| n.trim_start_matches("user.")).collect::<Vec<_>>().join(", ")
                    ),
                    true,
                ));
            }
        }
    }

    /// The findings, in order of record.
    pub fn finish(mut self) -> Vec<Finding> {
        let pending: Vec<Finding> = self.pending.drain().map(|(_, p)| p.finding).collect();
        self.found.extend(pending);
        self.found
            .sort_by(|a, b| (a.seq, &a.path, a.rule).cmp(&(b.seq, &b.path, b.rule)));
        self.found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::FileKind;
    use crate::history::view::Version;

    const S: i64 = 1_000_000_000;

    fn stat(ino: u64, mtime: i64, ctime: i64) -> Stat {
        Stat {
            kind: FileKind::File,
            perm: 0o644,
            uid: 0,
            gid: 0,
            size: 10,
            nlink: 1,
            ino,
            rdev: 0,
            atime: Some(TimeNs(mtime)),
            mtime: Some(TimeNs(mtime)),
            ctime: Some(TimeNs(ctime)),
            crtime: Some(TimeNs(1000 * S + 7)),
            times: vec![
                ("user.ext4.atime", TimeNs(mtime)),
                ("user.ext4.mtime", TimeNs(mtime)),
                ("user.ext4.ctime", TimeNs(ctime)),
            ],
        }
    }

    fn version(st: Stat, content: u8) -> Version {
        Version {
            stat: st,
            sha256: [content; 32],
            content_blocks: vec![5],
        }
    }

    fn event(seq: u64, t: i64, kind: ChangeKind, prev: Option<&Version>, cur: &Version) -> Event {
        Event {
            path: b"/log".to_vec(),
            seq: Seq(seq),
            time_ns: TimeNs(t),
            kind,
            content_changed: prev.is_none_or(|p| p.sha256 != cur.sha256),
            fields: Vec::new(),
            version: Some(cur.clone()),
            previous: prev.cloned(),
            content_write: Some((Seq(seq), TimeNs(t))),
            renamed_to: None,
        }
    }

    fn rules(f: &[Finding]) -> Vec<&'static str> {
        f.iter().map(|f| f.rule).collect()
    }

    #[test]
    fn an_edit_with_its_mtime_put_back_is_found_and_ordinary_edits_are_not() {
        let a = version(stat(12, 1000 * S + 5, 1000 * S + 5), 1);
        let b = version(stat(12, 1010 * S + 5, 1010 * S + 5), 2);
        let c = version(stat(12, 1010 * S + 5, 1020 * S + 5), 3); // mtime put back
        let mut ch = Checker::new(120 * S);
        ch.event(&event(1, 1001 * S, ChangeKind::Created, None, &a));
        ch.event(&event(2, 1011 * S, ChangeKind::Modified, Some(&a), &b));
        ch.event(&event(3, 1021 * S, ChangeKind::Modified, Some(&b), &c));
        let f = ch.finish();
        assert_eq!(rules(&f), ["content-changed-time-kept"]);
        assert_eq!(f[0].seq, Seq(3));
        assert_eq!(f[0].claimed, TimeNs(1010 * S + 5));
    }

    #[test]
    fn new_data_seen_before_its_inode_is_cleared_when_the_mtime_follows() {
        let a = version(stat(12, 1000 * S + 5, 1000 * S + 5), 1);
        let b = version(stat(12, 1000 * S + 5, 1000 * S + 5), 2); // data first
        let c = version(stat(12, 1003 * S + 5, 1003 * S + 5), 2); // then the inode
        let mut ch = Checker::new(120 * S);
        ch.event(&event(1, 1001 * S, ChangeKind::Created, None, &a));
        ch.event(&event(2, 1003 * S, ChangeKind::Modified, Some(&a), &b));
        let mut e = event(3, 1004 * S, ChangeKind::Modified, Some(&b), &c);
        e.content_changed = false;
        e.content_write = Some((Seq(2), TimeNs(1003 * S)));
        ch.event(&e);
        assert_eq!(rules(&ch.finish()), Vec::<&str>::new());
        // More writes instead of the inode: the finding stands.
        let d = version(stat(12, 1000 * S + 5, 1000 * S + 5), 3);
        let mut ch = Checker::new(120 * S);
        ch.event(&event(1, 1001 * S, ChangeKind::Created, None, &a));
        ch.event(&event(2, 1003 * S, ChangeKind::Modified, Some(&a), &b));
        ch.event(&event(3, 1004 * S, ChangeKind::Modified, Some(&b), &d));
        assert_eq!(
            rules(&ch.finish()),
            ["content-changed-time-kept", "content-changed-time-kept"]
        );
    }

    #[test]
    fn backdating_future_dating_and_whole_seconds() {
        let a = version(stat(12, 1000 * S + 5, 1000 * S + 5), 1);
        // touch -d: whole-second mtime and atime, ctime now.
        let b = version(stat(12, 500 * S, 2000 * S + 9), 1);
        let mut ch = Checker::new(120 * S);
        ch.event(&event(1, 1001 * S, ChangeKind::Created, None, &a));
        let mut e = event(2, 2001 * S, ChangeKind::Modified, Some(&a), &b);
        e.content_changed = false;
        e.content_write = Some((Seq(1), TimeNs(1001 * S)));
        ch.event(&e);
        let f = ch.finish();
        assert_eq!(
            rules(&f),
            [
                "claimed-before-written",
                "time-went-backwards",
                "whole-seconds"
            ]
        );
        assert!(f[0].detail.contains("touch -d"), "{}", f[0].detail);
        assert!(f[2].informational && !f[0].informational);
        // A file claiming a time an hour after it was recorded.
        let c = version(stat(13, 4600 * S + 1, 4600 * S + 1), 1);
        let mut ch = Checker::new(120 * S);
        ch.event(&event(5, 1000 * S, ChangeKind::Created, None, &c));
        let f = ch.finish();
        assert!(
            rules(&f).iter().all(|r| *r == "claimed-after-written") && f.len() == 2,
            "{f:?}"
        );
        assert_eq!(f[0].apart_ns, 3600 * S + 1);
    }

    #[test]
    fn distances_read_as_durations() {
        assert_eq!(human_ns(0), "0s");
        assert_eq!(human_ns(1_500_000_000), "1.500s");
        assert_eq!(human_ns(-(86_400 + 3_661) * S), "1d 1h 1m 1s");
    }
}
