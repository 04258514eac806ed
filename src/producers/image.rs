//! Whole-image import: record the blocks of an image that differ from the
//! store's latest state, one Write record per changed extent.

use crate::producers::op::{Op, OpFlags};
use crate::store::{StoreError, Writer};
use crate::units::{Seq, TimeNs};
use std::io::Read;

/// The largest extent recorded as one record.
pub const MAX_EXTENT_BYTES: u64 = 8 << 20;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ImportSummary {
    pub extents: u64,
    pub bytes_changed: u64,
    pub first_seq: Option<Seq>,
    pub last_seq: Option<Seq>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    #[error("reading the image at byte {offset}: {source}")]
    Read { offset: u64, source: std::io::Error },
    #[error("the image is {image} bytes but the store's disk is {disk} bytes")]
    SizeMismatch { image: u64, disk: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Import `image` (exactly the disk's size) at time `time`.
pub fn import<R: Read>(
    mut image: R,
    image_len: u64,
    writer: &mut Writer,
    time: TimeNs,
) -> Result<ImportSummary, ImportError> {
    let g = writer.geometry();
    if image_len != g.size_bytes {
        return Err(ImportError::SizeMismatch {
            image: image_len,
            disk: g.size_bytes,
        });
    }
    let bs = g.block_size as usize;
    let chunk = MAX_EXTENT_BYTES as usize;
    let mut new = vec![0u8; chunk];
    let mut old = vec![0u8; chunk];
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
    while offset < image_len {
        let n = ((image_len - offset) as usize).min(chunk);
        image
            .read_exact(&mut new[..n])
            .map_err(|source| ImportError::Read { offset, source })?;
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
    }
    emit(&mut ext, ext_start, writer, &mut summary)?;
    writer.sync()?;
    Ok(summary)
}
