//! Checks before mounting that turn the usual failures (no FUSE device, a
//! missing, non-empty or busy mountpoint) into messages that say what to do.

use super::run::MountError;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Check that the FUSE device at `path` can be opened, and say what to do
/// if not.
pub fn check_fuse_device(path: &Path) -> Result<(), MountError> {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) => Err(MountError::NoFuse(match e.kind() {
            io::ErrorKind::NotFound => format!(
                "{}: no such device, so FUSE is not available here; load the module \
                 (modprobe fuse), or in a container pass the device in (--device /dev/fuse)",
                path.display()
            ),
            io::ErrorKind::PermissionDenied => format!(
                "{}: permission denied; mount as root, or make the device usable by this user",
                path.display()
            ),
            _ => format!("{}: cannot open the FUSE device: {e}", path.display()),
        })),
    }
}

/// Undo the octal escapes /proc/self/mountinfo uses (`\040` for a space).
fn unescape_mountinfo(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = b[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// The filesystem type and source mounted at `dir` (canonical), if any.
fn mounted_at(mountinfo: &str, dir: &Path) -> Option<String> {
    let dir = dir.as_os_str().as_bytes();
    mountinfo.lines().rev().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let mount_point = fields.get(4)?;
        if unescape_mountinfo(mount_point) != dir {
            return None;
        }
        let sep = fields.iter().position(|f| *f == "-")?;
        let fstype = fields.get(sep + 1)?;
        let source = fields.get(sep + 2).copied().unwrap_or("?");
        Some(format!("{fstype} ({source})"))
    })
}

/// Check that `dir` holds nothing a mount would hide.
pub fn check_empty(dir: &Path) -> Result<(), MountError> {
    let mut entries = std::fs::read_dir(dir).map_err(|e| MountError::Mountpoint {
        path: dir.into(),
        source: e,
    })?;
    match entries.next() {
        None => Ok(()),
        Some(_) => Err(MountError::NotEmpty(dir.into())),
    }
}

/// Check the mountpoint; return its canonical path.
pub fn check_mountpoint(path: &Path) -> Result<PathBuf, MountError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(MountError::MissingMountpoint(path.into()))
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            return Err(MountError::Busy {
                path: path.into(),
                what: "a FUSE filesystem whose server has stopped".into(),
            })
        }
        Err(e) => {
            return Err(MountError::Mountpoint {
                path: path.into(),
                source: e,
            })
        }
    };
    if !meta.is_dir() {
        return Err(MountError::NotADirectory(path.into()));
    }
    let canonical = path.canonicalize().map_err(|e| MountError::Mountpoint {
        path: path.into(),
        source: e,
    })?;
    if let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") {
        if let Some(what) = mounted_at(&info, &canonical) {
            return Err(MountError::Busy {
                path: path.into(),
                what,
            });
        }
    }
    Ok(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_fuse_device_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let e = check_fuse_device(&dir.path().join("fuse"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no such device"), "{e}");
        assert!(e.contains("modprobe fuse"), "{e}");
    }

    #[test]
    fn missing_and_non_directory_mountpoints_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let e = check_mountpoint(&missing).unwrap_err();
        assert!(matches!(e, MountError::MissingMountpoint(_)));
        assert!(e.to_string().contains("mkdir"), "{e}");
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(matches!(
            check_mountpoint(&file).unwrap_err(),
            MountError::NotADirectory(_)
        ));
        assert_eq!(
            check_mountpoint(dir.path()).unwrap(),
            dir.path().canonicalize().unwrap()
        );
    }

    #[test]
    fn mountinfo_finds_what_is_mounted_on_a_directory() {
        let info = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:35 / /mnt/with\\040space rw,nosuid - fuse.diskhist diskhist:/s ro
41 22 0:36 / /mnt/x rw - tmpfs tmpfs rw
";
        assert_eq!(
            mounted_at(info, Path::new("/mnt/with space")).as_deref(),
            Some("fuse.diskhist (diskhist:/s)")
        );
        assert_eq!(
            mounted_at(info, Path::new("/mnt/x")).as_deref(),
            Some("tmpfs (tmpfs)")
        );
        assert_eq!(mounted_at(info, Path::new("/mnt")), None);
    }
}
