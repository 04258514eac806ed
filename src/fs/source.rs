//! A volume's bytes: the whole disk of one state, or one partition of it,
//! as a bounded random-access [`Source`]. Sources are cheap to clone and
//! share the reader behind them.

use crate::store::Store;
use crate::units::Seq;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::Arc;

/// Random access to a disk's bytes: `read_at` fills `buf` from
/// `offset_bytes` or fails.
pub trait ReadAt: Send + Sync {
    fn read_at(&self, offset_bytes: u64, buf: &mut [u8]) -> io::Result<()>;
    /// The disk's size in bytes.
    fn len_bytes(&self) -> u64;
}

/// The disk of one state of a store.
pub struct StateDisk {
    store: Arc<Store>,
    state: Seq,
    size_bytes: u64,
}

impl StateDisk {
    pub fn new(store: Arc<Store>, state: Seq) -> StateDisk {
        let size_bytes = store.geometry().size_bytes;
        StateDisk {
            store,
            state,
            size_bytes,
        }
    }
}

impl ReadAt for StateDisk {
    fn read_at(&self, offset_bytes: u64, buf: &mut [u8]) -> io::Result<()> {
        self.store
            .read_at(self.state, offset_bytes, buf)
            .map_err(io::Error::other)
    }
    fn len_bytes(&self) -> u64 {
        self.size_bytes
    }
}

/// A window of a disk: the whole of it, or one partition.
#[derive(Clone)]
pub struct Source {
    disk: Arc<dyn ReadAt>,
    base: u64,
    len: u64,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Source[{}+{}]", self.base, self.len)
    }
}

impl Source {
    /// The whole of `disk`.
    pub fn new(disk: Arc<dyn ReadAt>) -> Source {
        let len = disk.len_bytes();
        Source { disk, base: 0, len }
    }

    pub fn len_bytes(&self) -> u64 {
        self.len
    }

    /// The part `offset_bytes..offset_bytes + len_bytes`; `None` if it
    /// does not fit (a partition running past the end of the disk).
    pub fn slice(&self, offset_bytes: u64, len_bytes: u64) -> Option<Source> {
        let end = offset_bytes.checked_add(len_bytes)?;
        (end <= self.len).then(|| Source {
            disk: self.disk.clone(),
            base: self.base + offset_bytes,
            len: len_bytes,
        })
    }

    /// Fill `buf` from `offset_bytes`; reading past the end is an error.
    pub fn read_at(&self, offset_bytes: u64, buf: &mut [u8]) -> io::Result<()> {
        match offset_bytes.checked_add(buf.len() as u64) {
            Some(end) if end <= self.len => self.disk.read_at(self.base + offset_bytes, buf),
            _ => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{} bytes at {offset_bytes} run past the end of the {}-byte volume",
                    buf.len(),
                    self.len
                ),
            )),
        }
    }

    /// A `Read + Seek` cursor from offset 0 (its writes fail).
    pub fn cursor(&self) -> Cursor {
        Cursor {
            src: self.clone(),
            pos: 0,
            block: None,
        }
    }
}

/// `Read + Seek` over a [`Source`], for the crates that want one (ntfs,
/// fatfs); `Write` fails with `ReadOnlyFilesystem`, so a crate that tries
/// to write (fatfs updating a dirty flag) changes nothing. Small reads are
/// served from one cached 4 KiB block: the crates issue many tiny reads.
#[derive(Clone)]
pub struct Cursor {
    src: Source,
    pos: u64,
    block: Option<(u64, Box<[u8]>)>,
}

const CURSOR_BLOCK: u64 = 4096;

impl std::fmt::Debug for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cursor[{:?}@{}]", self.src, self.pos)
    }
}

impl Read for Cursor {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.src.len {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(self.src.len - self.pos) as usize;
        if n as u64 >= CURSOR_BLOCK {
            self.src.read_at(self.pos, &mut buf[..n])?;
            self.pos += n as u64;
            return Ok(n);
        }
        let start = self.pos / CURSOR_BLOCK * CURSOR_BLOCK;
        if self.block.as_ref().is_none_or(|b| b.0 != start) {
            let len = CURSOR_BLOCK.min(self.src.len - start) as usize;
            let mut b = vec![0u8; len].into_boxed_slice();
            self.src.read_at(start, &mut b)?;
            self.block = Some((start, b));
        }
        let b = &self.block.as_ref().expect("filled above").1;
        let at = (self.pos - start) as usize;
        let n = n.min(b.len() - at);
        buf[..n].copy_from_slice(&b[at..at + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Cursor {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let new = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.src.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos =
            new.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek out of range"))?;
        Ok(self.pos)
    }
}

impl Write for Cursor {
    fn write(&mut self, _buf: &[u8]) -> io::Result<usize> {
        Err(io::Error::from(io::ErrorKind::ReadOnlyFilesystem))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A [`ReadAt`] over bytes in memory (tests, fuzz targets).
pub struct MemDisk(pub Vec<u8>);

impl ReadAt for MemDisk {
    fn read_at(&self, offset_bytes: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = usize::try_from(offset_bytes).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| self.0.get(start..end))
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn len_bytes(&self) -> u64 {
        self.0.len() as u64
    }
}

/// A [`ReadAt`] over an image file (tools and tests).
pub struct FileDisk {
    file: std::fs::File,
    len: u64,
}

impl FileDisk {
    pub fn open(path: &std::path::Path) -> io::Result<FileDisk> {
        let file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        Ok(FileDisk { file, len })
    }
}

impl ReadAt for FileDisk {
    fn read_at(&self, offset_bytes: u64, buf: &mut [u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.file, buf, offset_bytes)
    }
    fn len_bytes(&self) -> u64 {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_and_cursor_stay_inside_their_window() {
        let disk: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let src = Source::new(Arc::new(MemDisk(disk.clone())));
        let part = src.slice(1000, 9000).unwrap();
        assert!(src.slice(19_000, 2000).is_none());
        let mut b = [0u8; 10];
        part.read_at(8990, &mut b).unwrap();
        assert_eq!(b[..], disk[9990..10_000]);
        assert!(part.read_at(8991, &mut b).is_err());
        let mut c = part.cursor();
        c.seek(SeekFrom::Start(4090)).unwrap();
        let mut small = [0u8; 12];
        c.read_exact(&mut small).unwrap();
        assert_eq!(small[..], disk[5090..5102]);
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).unwrap();
        assert_eq!(rest[..], disk[5102..10_000]);
        assert!(c.write(b"x").is_err());
    }
}
