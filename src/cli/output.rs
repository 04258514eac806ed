//! Where a command's output goes, chosen so that no output destroys
//! evidence or looks complete when it is not. Every command that writes a
//! file (`export`, `dump`, and later `keygen`, `prove`, `timeline`) opens
//! it through [`Output::create`]:
//!
//! - `-o FILE` inside a diskhist store (any ancestor of the resolved path
//!   holds `diskhist.store`) is refused, `--force` or not: the store is
//!   evidence.
//! - `-o FILE` naming an existing file is refused unless `--force`.
//! - A regular file is written to a temporary name beside it
//!   (`.FILE.diskhist-partial-PID`, mode 0600), synced, and renamed to FILE
//!   only once complete (without `--force`, a rename that would replace a
//!   file created meanwhile fails); the directory is synced after. On any
//!   error, or on SIGINT/SIGTERM (checked before every write), the
//!   temporary file is removed: FILE is either whole or untouched.
//! - A character device or FIFO (`/dev/null`, `/dev/full`, a named pipe)
//!   is written directly and sequentially; it holds nothing to overwrite.
//!   A block device holds data: it needs `--force`, then is written
//!   directly.
//! - No `-o`: standard output, refused for binary data when it is a
//!   terminal (as gzip does), or when it is a file inside a store.
//!
//! Write errors name the output; a full disk says "no space left on
//! device".

use super::stop_flag;
use anyhow::{bail, Context, Result};
use diskhist::store::layout::HEADER_FILE;
use std::ffi::OsString;
use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, BufWriter, IsTerminal, Seek, SeekFrom, Stdout, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What a command writes: binary data is never sent to a terminal. (Text
/// outputs, which may go to one, get their variant with the first command
/// that writes one to a file.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    Binary,
    /// Text (keys, checkpoints, proof bundles, a timeline): may go to a
    /// terminal.
    Text,
}

const BUF_BYTES: usize = 1 << 20;

/// An output being written; [`Output::finish`] makes it whole. Dropped
/// unfinished (an error, a signal), it removes its temporary file.
pub struct Output {
    sink: Sink,
    /// The output as the user named it, for messages ("-" for stdout).
    name: String,
    stop: Arc<AtomicBool>,
    /// Bytes of output so far, skipped zero blocks included.
    len_bytes: u64,
    /// Zero bytes skipped by [`Output::write_sparse`] and not yet seeked over.
    hole_bytes: u64,
}

enum Sink {
    Stdout(BufWriter<Stdout>),
    /// A device or FIFO, written in place.
    Direct {
        w: BufWriter<File>,
        sync: bool,
    },
    /// A regular file, written under a temporary name.
    Temp {
        w: BufWriter<File>,
        tmp: PathBuf,
        target: PathBuf,
        dir: PathBuf,
        replace: bool,
        done: bool,
    },
}

impl Output {
    /// Open `path` (standard output if `None`) for writing `content`,
    /// applying the rules in the module header.
    pub fn create(path: Option<&Path>, force: bool, content: Content) -> Result<Output> {
        let (sink, name) = match path {
            None => (stdout_sink(content)?, "-".to_string()),
            Some(p) => (file_sink(p, force)?, p.display().to_string()),
        };
        Ok(Output {
            sink,
            name,
            stop: stop_flag()?,
            len_bytes: 0,
            hole_bytes: 0,
        })
    }

    /// The output as the user named it ("-" for standard output).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Write `buf` in `block_bytes` pieces, leaving all-zero pieces as holes
    /// when the output is a regular file (so an image stays sparse); other
    /// outputs get every byte.
    pub fn write_sparse(&mut self, buf: &[u8], block_bytes: usize) -> io::Result<()> {
        if !matches!(self.sink, Sink::Temp { .. }) {
            return self.write_all(buf);
        }
        for piece in buf.chunks(block_bytes.max(1)) {
            if piece.iter().all(|&b| b == 0) {
                self.check_stop()?;
                self.hole_bytes += piece.len() as u64;
                self.len_bytes += piece.len() as u64;
            } else {
                self.write_all(piece)?;
            }
        }
        Ok(())
    }

    /// Flush, sync and (for a file) rename the output into place.
    pub fn finish(mut self) -> Result<()> {
        self.flush()?;
        let name = self.name.clone();
        match &mut self.sink {
            Sink::Stdout(_) => {}
            Sink::Direct { w, sync } => {
                if *sync {
                    w.get_ref().sync_all().map_err(|e| write_error(&name, e))?;
                }
            }
            Sink::Temp {
                w,
                tmp,
                target,
                dir,
                replace,
                done,
            } => {
                let f = w.get_ref();
                f.set_len(self.len_bytes)
                    .and_then(|()| f.sync_all())
                    .map_err(|e| write_error(&name, e))?;
                if self.stop.load(Ordering::Relaxed) {
                    return Err(interrupted(&name, true).into());
                }
                rename(tmp, target, *replace).map_err(|e| {
                    if e.kind() == io::ErrorKind::AlreadyExists {
                        anyhow::anyhow!(
                            "{name}: a file of that name appeared while writing; \
                             not replaced (use --force to replace it)"
                        )
                    } else {
                        anyhow::Error::new(e).context(format!("cannot rename the output to {name}"))
                    }
                })?;
                *done = true;
                if let Err(e) = File::open(&*dir).and_then(|d| d.sync_all()) {
                    eprintln!(
                        "diskhist: warning: {}: cannot sync the directory ({e}); \
                         {name} is complete but may not survive a crash",
                        dir.display()
                    );
                }
            }
        }
        Ok(())
    }

    fn check_stop(&self) -> io::Result<()> {
        if self.stop.load(Ordering::Relaxed) {
            let temp = matches!(self.sink, Sink::Temp { .. });
            return Err(interrupted(&self.name, temp));
        }
        Ok(())
    }

    fn writer(&mut self) -> &mut dyn Write {
        match &mut self.sink {
            Sink::Stdout(w) => w,
            Sink::Direct { w, .. } | Sink::Temp { w, .. } => w,
        }
    }

    /// Seek over zero bytes skipped by `write_sparse` before writing more.
    fn fill_hole(&mut self) -> io::Result<()> {
        if self.hole_bytes == 0 {
            return Ok(());
        }
        if let Sink::Temp { w, .. } = &mut self.sink {
            let hole = i64::try_from(self.hole_bytes).map_err(io::Error::other)?;
            w.seek(SeekFrom::Current(hole))?;
        }
        self.hole_bytes = 0;
        Ok(())
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.check_stop()?;
        let n = self
            .fill_hole()
            .and_then(|()| self.writer().write(buf))
            .map_err(|e| write_error(&self.name, e))?;
        self.len_bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.check_stop()?;
        self.writer()
            .flush()
            .map_err(|e| write_error(&self.name, e))
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if let Sink::Temp { tmp, done, .. } = &self.sink {
            if !*done {
                match std::fs::remove_file(tmp) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => eprintln!(
                        "diskhist: warning: cannot remove the unfinished output {}: {e}",
                        tmp.display()
                    ),
                }
            }
        }
    }
}

/// The error for a failed write to `name`, keeping the kind (a closed pipe
/// stays a closed pipe) and naming the common causes plainly.
fn write_error(name: &str, e: io::Error) -> io::Error {
    let what = match e.raw_os_error() {
        Some(libc::ENOSPC) => "no space left on device".to_string(),
        Some(libc::EDQUOT) => "disk quota exceeded".to_string(),
        _ => e.to_string(),
    };
    io::Error::new(e.kind(), format!("cannot write {name}: {what}"))
}

fn interrupted(name: &str, temp: bool) -> io::Error {
    io::Error::other(if temp {
        format!("writing {name}: interrupted by a signal; the unfinished output is removed")
    } else {
        format!("writing {name}: interrupted by a signal")
    })
}

fn stdout_sink(content: Content) -> Result<Sink> {
    let stdout = io::stdout();
    if content == Content::Binary && stdout.is_terminal() {
        bail!("refusing to write binary data to a terminal; use -o FILE or a pipe");
    }
    // A redirection into a store (`> STORE/log`, `>> STORE/log`): the shell
    // opened it, but nothing more is written there.
    if let Ok(p) = std::fs::read_link("/proc/self/fd/1") {
        if std::fs::metadata(&p).is_ok_and(|m| m.is_file()) {
            if let Some(store) = store_holding(&p) {
                bail!(
                    "standard output is {}, inside the diskhist store {}: refusing to write \
                     there; use -o FILE outside any store",
                    p.display(),
                    store.display()
                );
            }
        }
    }
    Ok(Sink::Stdout(BufWriter::with_capacity(BUF_BYTES, stdout)))
}

/// The innermost directory among `path` and its ancestors that is a store.
fn store_holding(path: &Path) -> Option<&Path> {
    path.ancestors()
        .find(|a| std::fs::symlink_metadata(a.join(HEADER_FILE)).is_ok())
}

/// Where output to `path` lands: the resolved path (symlinks followed, for
/// an existing entry), and what is there now.
fn resolve(path: &Path) -> Result<(PathBuf, Option<Metadata>)> {
    let Some(file_name) = path.file_name() else {
        bail!("{}: not a file name", path.display());
    };
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = parent.canonicalize().with_context(|| {
        format!(
            "cannot write {}: directory {}",
            path.display(),
            parent.display()
        )
    })?;
    let location = dir.join(file_name);
    match std::fs::symlink_metadata(&location) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((location, None)),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot write {}", path.display()))),
        Ok(_) => {
            let real = location.canonicalize().with_context(|| {
                format!(
                    "cannot write {}: it is a symbolic link to nothing",
                    path.display()
                )
            })?;
            let meta = std::fs::metadata(&real)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok((real, Some(meta)))
        }
    }
}

fn file_sink(path: &Path, force: bool) -> Result<Sink> {
    let (real, existing) = resolve(path)?;
    if let Some(store) = store_holding(&real) {
        bail!(
            "{}: inside the diskhist store {}; refusing to write there, with or without \
             --force: write outside the store",
            path.display(),
            store.display()
        );
    }
    let exists_hint = || {
        anyhow::anyhow!(
            "{}: exists; refusing to overwrite it (use --force to replace it)",
            path.display()
        )
    };
    if let Some(meta) = &existing {
        let t = meta.file_type();
        if t.is_dir() {
            bail!("{}: is a directory; name a file to write", path.display());
        }
        if t.is_char_device() || t.is_fifo() || t.is_block_device() {
            if t.is_block_device() && !force {
                return Err(exists_hint());
            }
            let f = OpenOptions::new()
                .write(true)
                .open(&real)
                .with_context(|| format!("cannot open {}", path.display()))?;
            return Ok(Sink::Direct {
                w: BufWriter::with_capacity(BUF_BYTES, f),
                sync: t.is_block_device(),
            });
        }
        if !t.is_file() {
            bail!(
                "{}: neither a file nor a device; refusing to write there",
                path.display()
            );
        }
        if !force {
            return Err(exists_hint());
        }
    }
    let dir = real.parent().unwrap_or(Path::new("/")).to_path_buf();
    let (tmp, f) = create_temp(&dir, real.file_name().unwrap_or_default())
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    Ok(Sink::Temp {
        w: BufWriter::with_capacity(BUF_BYTES, f),
        tmp,
        target: real,
        dir,
        replace: force,
        done: false,
    })
}

/// A new file `.NAME.diskhist-partial-PID[-N]` in `dir`, mode 0600.
fn create_temp(dir: &Path, name: &std::ffi::OsStr) -> io::Result<(PathBuf, File)> {
    // Keep the name within NAME_MAX (255 bytes) whatever FILE's length.
    let short = &name.as_bytes()[..name.len().min(200)];
    let pid = std::process::id();
    for n in 0..1000 {
        let mut tmp = OsString::from(".");
        tmp.push(std::ffi::OsStr::from_bytes(short));
        tmp.push(format!(".diskhist-partial-{pid}"));
        if n > 0 {
            tmp.push(format!("-{n}"));
        }
        let path = dir.join(tmp);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "too many temporary files of that name",
    ))
}

/// Rename `from` to `to`; unless `replace`, fail with `AlreadyExists`
/// rather than replace a file that is there (atomically, where the
/// filesystem supports it).
fn rename(from: &Path, to: &Path, replace: bool) -> io::Result<()> {
    if replace {
        return std::fs::rename(from, to);
    }
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other);
    let (f, t) = (c(from)?, c(to)?);
    // SAFETY: both paths are valid NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        // A filesystem without RENAME_NOREPLACE: check, then rename.
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => {
            if std::fs::symlink_metadata(to).is_ok() {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists));
            }
            std::fs::rename(from, to)
        }
        _ => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_inside_a_store_is_found_at_any_depth() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("s");
        std::fs::create_dir_all(store.join("index")).unwrap();
        std::fs::write(store.join(HEADER_FILE), b"x").unwrap();
        assert_eq!(store_holding(&store.join("log")), Some(store.as_path()));
        assert_eq!(
            store_holding(&store.join("index/new/x")),
            Some(store.as_path())
        );
        assert_eq!(store_holding(&store), Some(store.as_path()));
        assert_eq!(store_holding(&dir.path().join("x")), None);
    }

    #[test]
    fn a_symlink_is_judged_by_where_it_leads() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("s");
        std::fs::create_dir(&store).unwrap();
        std::fs::write(store.join(HEADER_FILE), b"x").unwrap();
        std::fs::write(store.join("log"), b"evidence").unwrap();
        let link = dir.path().join("out.img");
        std::os::unix::fs::symlink(store.join("log"), &link).unwrap();
        let e = file_sink(&link, true).err().unwrap().to_string();
        assert!(e.contains("inside the diskhist store"), "{e}");
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        let e = file_sink(&dangling, true).err().unwrap().to_string();
        assert!(e.contains("symbolic link to nothing"), "{e}");
        assert_eq!(std::fs::read(store.join("log")).unwrap(), b"evidence");
    }

    #[test]
    fn an_unfinished_output_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out");
        let mut o = Output {
            sink: file_sink(&target, false).unwrap(),
            name: "out".into(),
            stop: Arc::new(AtomicBool::new(false)),
            len_bytes: 0,
            hole_bytes: 0,
        };
        o.write_all(b"half").unwrap();
        o.flush().unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        drop(o);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn sparse_output_keeps_holes_and_its_length() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("img");
        let mut o = Output {
            sink: file_sink(&target, false).unwrap(),
            name: "img".into(),
            stop: Arc::new(AtomicBool::new(false)),
            len_bytes: 0,
            hole_bytes: 0,
        };
        let mut data = vec![0u8; 4 * 4096];
        data[4096] = 7;
        o.write_sparse(&data, 4096).unwrap();
        o.write_sparse(&[0u8; 4096], 4096).unwrap();
        o.finish().unwrap();
        let mut want = data.clone();
        want.extend_from_slice(&[0u8; 4096]);
        assert_eq!(std::fs::read(&target).unwrap(), want);
    }

    #[test]
    fn no_replace_rename_refuses_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"new").unwrap();
        std::fs::write(&b, b"old").unwrap();
        let e = rename(&a, &b, false).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&b).unwrap(), b"old");
        rename(&a, &b, true).unwrap();
        assert_eq!(std::fs::read(&b).unwrap(), b"new");
    }
}
