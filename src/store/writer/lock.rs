//! The one-writer lock: `flock(2)` on `STORE/lock`, which also notes who
//! holds it; and how a reader tells whether a writer is live.

use crate::store::error::{Result, StoreError};
use crate::store::files;
use crate::store::layout;
use std::fs::File;
use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// Whether a writer holds the store's lock now. A reader asks this to tell
/// a record being written from a torn one: it takes a shared lock for an
/// instant, which a writer starting at that moment waits out.
pub fn writer_is_live(dir: &Path) -> bool {
    let Ok(f) = File::open(dir.join(layout::LOCK_FILE)) else {
        return false;
    };
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
    if rc != 0 {
        return std::io::Error::last_os_error().raw_os_error() == Some(libc::EWOULDBLOCK);
    }
    // SAFETY: as above; releases the shared lock just taken.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_UN) };
    false
}

/// Take the writer lock (flock, non-blocking) and note who holds it.
pub(super) fn take_lock(dir: &Path) -> Result<File> {
    let path = dir.join(layout::LOCK_FILE);
    let mut f = files::open_rw_private(&path)?;
    // A reader asking whether a writer is live holds a shared lock for an
    // instant (see `writer_is_live`): try a few times before concluding
    // that another writer holds it.
    let mut attempts = 0;
    let rc = loop {
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        let busy =
            rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EWOULDBLOCK);
        if !busy || attempts == 20 {
            break rc;
        }
        attempts += 1;
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let holder = if holder.trim().is_empty() {
                "holder unknown".to_string()
            } else {
                holder.trim().to_string()
            };
            return Err(StoreError::Locked {
                path: dir.to_path_buf(),
                holder,
            });
        }
        return Err(StoreError::io(&path, err));
    }
    // Who holds the lock is a courtesy for the next writer's message; a full
    // disk must not keep the store from opening (reads and clear ENOSPC
    // errors still work), so failing to note it only costs that courtesy.
    let noted = f.set_len(0).and_then(|()| {
        write!(
            f,
            "pid {} since {}",
            std::process::id(),
            crate::time::format_rfc3339(crate::time::now())
        )
    });
    if let Err(e) = noted {
        log::warn!("{}: could not note the lock's holder: {e}", path.display());
    }
    Ok(f)
}
