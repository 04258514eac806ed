//! File-system helpers: private permissions (files 0600, directories 0700)
//! and atomic replacement.

use crate::store::error::{IoContext, Result, StoreError};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Create (truncating) a file readable and writable by its owner only.
pub fn create_private(path: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .at(path)
}

/// Open a file for appending-by-offset, creating it 0600 if missing.
pub fn open_rw_private(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .at(path)
}

pub fn create_dir_private(path: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(path)
        .at(path)
}

pub fn sync_dir(path: &Path) -> Result<()> {
    File::open(path).and_then(|d| d.sync_all()).at(path)
}

/// How far [`replace_atomically`] got.
#[derive(Debug)]
#[must_use]
pub enum Replaced {
    /// The new content is in place and durable.
    Durable,
    /// The new content is in place (every reader sees it), but the
    /// directory could not be synced: after a crash the old content may
    /// come back.
    NotDurable(StoreError),
}

/// Replace `path` atomically with `bytes`: temporary file, fsync, rename,
/// fsync of the directory.
///
/// `Err` means `path` is unchanged (a full disk, say) and the temporary
/// file is gone again, so a failed attempt leaves nothing behind.
pub fn replace_atomically(path: &Path, bytes: &[u8]) -> Result<Replaced> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let written = create_private(&tmp).and_then(|mut f| {
        f.write_all(bytes).at(&tmp)?;
        f.sync_all().at(&tmp)
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path).at(path)) {
        remove_if_present(&tmp);
        return Err(e);
    }
    match path.parent().map(sync_dir) {
        Some(Err(e)) => Ok(Replaced::NotDurable(e)),
        _ => Ok(Replaced::Durable),
    }
}

/// Remove a file left by a failed attempt; a file already gone is fine, and
/// anything else is only worth a warning (the next writer's open removes
/// files no manifest names).
pub fn remove_if_present(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => log::warn!("{}: could not remove: {e}", path.display()),
    }
}

/// The filesystem is full (or the user's quota is): nothing to do but free
/// space, and nothing about the store is wrong.
pub fn is_out_of_space(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
        || matches!(
            e.kind(),
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
        )
}
