//! `diskhist ls STORE --at TIME [--part N] [PATH] [-l] [--json]`: a
//! directory (or one file) of a filesystem as it was at a moment, read
//! from the store without a mount.

use super::files::{open_fs, pick_volume, resolve, volumes_at};
use super::json::{self, Object};
use super::{open_store, state};
use anyhow::Result;
use clap::Args;
use diskhist::fs::{FileKind, FileSystem, NodeId, Stat};
use diskhist::{format_rfc3339_ns, TimeNs};
use std::io::{BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args)]
pub struct LsArgs {
    /// The store directory.
    pub store: PathBuf,
    /// The moment (RFC 3339, @UNIX, '#SEQ', latest).
    #[arg(long, value_name = "TIME")]
    pub at: String,
    /// The partition, numbered as Linux numbers them (p1..p4 primary,
    /// p5.. logical, GPT entries from 1); leave out for a disk without a
    /// partition table.
    #[arg(long, value_name = "N")]
    pub part: Option<u32>,
    /// The path inside the filesystem, from its root (default: the root).
    pub path: Option<PathBuf>,
    /// Long listing: kind and mode, links, owner, group, size, mtime, name.
    #[arg(short, long)]
    pub long: bool,
    /// One JSON object per entry, with every timestamp the filesystem keeps.
    #[arg(long)]
    pub json: bool,
}

pub fn ls(a: LsArgs) -> Result<()> {
    let store = Arc::new(open_store(&a.store)?);
    let seq = state(&store, &a.at)?;
    let vols = volumes_at(&store, seq)?;
    let vol = pick_volume(&vols, a.part)?;
    let mut fs = open_fs(&vol)?;
    let path = a
        .path
        .as_deref()
        .map(|p| p.as_os_str().as_bytes())
        .unwrap_or(b"/");
    let node = resolve(fs.as_mut(), path)?;
    let st = fs.stat(node)?;
    let entries: Vec<(Vec<u8>, NodeId)> = if st.kind == FileKind::Dir {
        fs.list(node)?
            .into_iter()
            .map(|e| (e.name, e.node))
            .collect()
    } else {
        vec![(
            path.rsplit(|&b| b == b'/').next().unwrap_or(path).to_vec(),
            node,
        )]
    };
    let mut out = BufWriter::new(std::io::stdout().lock());
    for (name, node) in entries {
        if !a.long && !a.json {
            out.write_all(&name)?;
            out.write_all(b"\n")?;
            continue;
        }
        let st = fs.stat(node)?;
        let target = (st.kind == FileKind::Symlink)
            .then(|| fs.read_link(node))
            .transpose()?;
        if a.json {
            writeln!(out, "{}", json_entry(&name, &st, target.as_deref()))?;
        } else {
            write_long(&mut out, &name, &st, target.as_deref())?;
        }
    }
    out.flush()?;
    Ok(())
}

fn kind_char(k: FileKind) -> char {
    match k {
        FileKind::Dir => 'd',
        FileKind::File => '-',
        FileKind::Symlink => 'l',
        FileKind::CharDevice => 'c',
        FileKind::BlockDevice => 'b',
        FileKind::Fifo => 'p',
        FileKind::Socket => 's',
    }
}

fn kind_name(k: FileKind) -> &'static str {
    match k {
        FileKind::Dir => "dir",
        FileKind::File => "file",
        FileKind::Symlink => "symlink",
        FileKind::CharDevice => "char-device",
        FileKind::BlockDevice => "block-device",
        FileKind::Fifo => "fifo",
        FileKind::Socket => "socket",
    }
}

fn mode_text(st: &Stat) -> String {
    let mut s = String::with_capacity(10);
    s.push(kind_char(st.kind));
    for shift in [6, 3, 0] {
        let bits = (st.perm >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

fn write_long(out: &mut impl Write, name: &[u8], st: &Stat, target: Option<&[u8]>) -> Result<()> {
    let mtime = st
        .mtime
        .map(format_rfc3339_ns)
        .unwrap_or_else(|| "-".into());
    write!(
        out,
        "{} {:>3} {:>5} {:>5} {:>12} {} ",
        mode_text(st),
        st.nlink,
        st.uid,
        st.gid,
        st.size,
        mtime
    )?;
    out.write_all(name)?;
    if let Some(t) = target {
        out.write_all(b" -> ")?;
        out.write_all(t)?;
    }
    out.write_all(b"\n")?;
    Ok(())
}

fn json_entry(name: &[u8], st: &Stat, target: Option<&[u8]>) -> String {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let time = |o: Object, key: &str, t: Option<TimeNs>| {
        o.opt_str(key, t.map(format_rfc3339_ns).as_deref())
            .opt_num(&format!("{key}_ns"), t.map(|t| t.0))
    };
    let mut o = Object::new().str("name", &text(name));
    // Names that are not UTF-8 also come as their bytes, losslessly.
    if std::str::from_utf8(name).is_err() {
        o = o.str("name_hex", &hex(name));
    }
    o = o
        .str("kind", kind_name(st.kind))
        .str("mode", &format!("{:o}", st.perm))
        .num("uid", st.uid)
        .num("gid", st.gid)
        .num("size", st.size)
        .num("nlink", st.nlink)
        .num("ino", st.ino);
    o = time(o, "atime", st.atime);
    o = time(o, "mtime", st.mtime);
    o = time(o, "ctime", st.ctime);
    o = time(o, "crtime", st.crtime);
    let times = json::array(st.times.iter().map(|(k, t)| {
        Object::new()
            .str("name", k)
            .str("time", &format_rfc3339_ns(*t))
            .num("time_ns", t.0)
            .build()
    }));
    o = o.raw("times", times);
    if let Some(t) = target {
        o = o.str("target", &text(t));
    }
    o.build()
}

/// For `cat`: the whole content of the file at `node`, streamed.
pub fn copy_file(fs: &mut dyn FileSystem, node: NodeId, out: &mut impl Write) -> Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    loop {
        let n = fs.read(node, offset, &mut buf)?;
        if n == 0 {
            return Ok(offset);
        }
        out.write_all(&buf[..n])?;
        offset += n as u64;
    }
}
