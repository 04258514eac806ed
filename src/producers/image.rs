//! Whole-image import: record the blocks of an image that differ from the
//! store's latest state, one Write record per changed extent, then one Mark
//! record naming the image (its path, size and SHA-256), all in one batch:
//! the import becomes part of the history whole, or not at all.

use crate::store::{CutBatch, StoreError, Writer};
use crate::store::{Op, OpFlags};
use crate::units::{Seq, TimeNs};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};

/// The largest extent recorded as one record.
pub const MAX_EXTENT_BYTES: u64 = 8 << 20;

/// What the import mark's name starts with.
pub const MARK_PREFIX: &str = "import ";

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    pub extents: u64,
    pub bytes_changed: u64,
    pub first_seq: Option<Seq>,
    pub last_seq: Option<Seq>,
    /// The mark naming the image: the state after the whole import.
    pub mark_seq: Seq,
    /// SHA-256 of the image, lowercase hex.
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    #[error("reading the image at byte {offset}: {source}")]
    Read { offset: u64, source: std::io::Error },
    #[error("the image is {image} bytes but the store's disk is {disk} bytes")]
    SizeMismatch { image: u64, disk: u64 },
    #[error("the image ends at byte {image}, short of the store's disk of {disk} bytes")]
    Short { image: u64, disk: u64 },
    #[error("the image is longer than the store's disk of {disk} bytes")]
    Long { disk: u64 },
    #[error("interrupted")]
    Interrupted,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where an image came from, for the import mark.
#[derive(Clone, Copy)]
pub struct ImportSource<'a> {
    /// The path as given (`-` for standard input).
    pub path: &'a str,
    /// Stop (and undo the import) when this becomes true (Ctrl-C).
    pub stop: Option<&'a AtomicBool>,
    /// Called with the image bytes read so far, after each chunk.
    pub progress: Option<&'a dyn Fn(u64)>,
}

/// The mark an import records: `import sha256=HEX size=BYTES path=PATH`
/// (the path last, so it may hold spaces).
pub fn mark_name(sha256_hex: &str, size_bytes: u64, path: &str) -> String {
    format!("{MARK_PREFIX}sha256={sha256_hex} size={size_bytes} path={path}")
}

/// An import mark's fields, if `name` is one.
pub fn parse_mark(name: &str) -> Option<(&str, u64, &str)> {
    let rest = name.strip_prefix(MARK_PREFIX)?;
    let rest = rest.strip_prefix("sha256=")?;
    let (sha, rest) = rest.split_once(" size=")?;
    let (size, path) = rest.split_once(" path=")?;
    Some((sha, size.parse().ok()?, path))
}

/// Import `image` (exactly the disk's size: a shorter or longer stream is
/// refused) at time `time`, all or nothing: on any error, or when
/// `source.stop` is raised, the records already written are cut again and
/// the store is as it was before.
pub fn import<R: Read>(
    image: R,
    writer: &mut Writer,
    time: TimeNs,
    source: &ImportSource<'_>,
) -> Result<ImportSummary, ImportError> {
    writer.begin_batch()?;
    let result = import_batch(image, writer, time, source);
    match result {
        Ok(summary) => match writer.commit_batch() {
            Ok(()) => Ok(summary),
            Err(e) => Err(undo(writer, e.into())),
        },
        Err(e) => Err(undo(writer, e)),
    }
}

/// Undo the open batch after `e`; a failure to undo is worse news than `e`
/// and replaces it (the next writer will try again).
fn undo(writer: &mut Writer, e: ImportError) -> ImportError {
    match writer.abort_batch() {
        Ok(CutBatch { .. }) => e,
        Err(undo) => {
            log::error!("{e}; and undoing the partial import failed: {undo}");
            ImportError::Store(undo)
        }
    }
}

fn import_batch<R: Read>(
    mut image: R,
    writer: &mut Writer,
    time: TimeNs,
    source: &ImportSource<'_>,
) -> Result<ImportSummary, ImportError> {
    let g = writer.geometry();
    let bs = g.block_size as usize;
    let chunk = MAX_EXTENT_BYTES as usize;
    let mut new = vec![0u8; chunk];
    let mut old = vec![0u8; chunk];
    let mut sha = Sha256::new();
    let mut summary = ImportSummary::default();
    let mut offset = 0u64;
    // The pending extent: bytes from `ext_start` collected in `ext`.
    let mut ext: Vec<u8> = Vec::with_capacity(chunk);
    let mut ext_start = 0u64;
    let emit = |ext: &mut Vec<u8>,
                start: u64,
                w: &mut Writer,
                s: &mut ImportSummary|
     -> Result<(), ImportError> {
        if ext.is_empty() {
            return Ok(());
        }
        let a = w.append(
            time,
            Op::Write {
                offset_bytes: start,
                data: ext,
            },
            OpFlags::default(),
        )?;
        s.extents += 1;
        s.bytes_changed += ext.len() as u64;
        s.first_seq.get_or_insert(a.seq);
        s.last_seq = Some(a.seq);
        ext.clear();
        Ok(())
    };
    while offset < g.size_bytes {
        if source.stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
            return Err(ImportError::Interrupted);
        }
        let n = ((g.size_bytes - offset) as usize).min(chunk);
        read_full(&mut image, &mut new[..n], offset, g.size_bytes)?;
        sha.update(&new[..n]);
        writer.read_at(offset, &mut old[..n])?;
        for i in (0..n).step_by(bs) {
            let at = offset + i as u64;
            if new[i..i + bs] != old[i..i + bs] {
                if !ext.is_empty() && (ext_start + ext.len() as u64 != at || ext.len() + bs > chunk)
                {
                    emit(&mut ext, ext_start, writer, &mut summary)?;
                }
                if ext.is_empty() {
                    ext_start = at;
                }
                ext.extend_from_slice(&new[i..i + bs]);
            } else {
                emit(&mut ext, ext_start, writer, &mut summary)?;
            }
        }
        offset += n as u64;
        if let Some(p) = source.progress {
            p(offset);
        }
    }
    emit(&mut ext, ext_start, writer, &mut summary)?;
    let mut extra = [0u8; 1];
    match image.read(&mut extra) {
        Ok(0) => {}
        Ok(_) => return Err(ImportError::Long { disk: g.size_bytes }),
        Err(source) => return Err(ImportError::Read { offset, source }),
    }
    summary.sha256 = sha.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let name = mark_name(&summary.sha256, g.size_bytes, source.path);
    summary.mark_seq = writer
        .append(time, Op::Mark { name: &name }, OpFlags::default())?
        .seq;
    Ok(summary)
}

/// Fill `buf` from `image`, which must not end before the disk does.
fn read_full<R: Read>(
    image: &mut R,
    buf: &mut [u8],
    offset: u64,
    disk: u64,
) -> Result<(), ImportError> {
    let mut got = 0;
    while got < buf.len() {
        match image.read(&mut buf[got..]) {
            Ok(0) => {
                return Err(ImportError::Short {
                    image: offset + got as u64,
                    disk,
                })
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(ImportError::Read {
                    offset: offset + got as u64,
                    source,
                })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mark_round_trip() {
        let n = mark_name("ab12", 4096, "/cases/a b.raw");
        assert_eq!(parse_mark(&n), Some(("ab12", 4096, "/cases/a b.raw")));
        assert_eq!(parse_mark("t=123"), None);
    }
}
