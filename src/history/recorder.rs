//! A state's disk that notes every block read through it: what a view of
//! a path (or of a whole tree) depends on. The readers cache parsed
//! structures only inside one opened filesystem, and every view opens its
//! own, so each block a view needs passes through here at least once.

use crate::fs::ReadAt;
use parking_lot::Mutex;
use std::collections::BTreeSet;
use std::io;
use std::sync::Arc;

/// Wraps a disk; [`Recorder::take`] hands over the blocks read since the
/// last take.
pub struct Recorder {
    inner: Arc<dyn ReadAt>,
    block_size: u64,
    blocks: Mutex<BTreeSet<u64>>,
}

impl Recorder {
    pub fn new(inner: Arc<dyn ReadAt>, block_size: u32) -> Recorder {
        Recorder {
            inner,
            block_size: u64::from(block_size),
            blocks: Mutex::new(BTreeSet::new()),
        }
    }

    /// The blocks read since the last take (or since it was made).
    pub fn take(&self) -> BTreeSet<u64> {
        std::mem::take(&mut *self.blocks.lock())
    }
}

impl ReadAt for Recorder {
    fn read_at(&self, offset_bytes: u64, buf: &mut [u8]) -> io::Result<()> {
        if !buf.is_empty() {
            let first = offset_bytes / self.block_size;
            let last = (offset_bytes + buf.len() as u64 - 1) / self.block_size;
            self.blocks.lock().extend(first..=last);
        }
        self.inner.read_at(offset_bytes, buf)
    }
    fn len_bytes(&self) -> u64 {
        self.inner.len_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::source::MemDisk;

    #[test]
    fn notes_every_block_a_read_touches() {
        let r = Recorder::new(Arc::new(MemDisk(vec![0u8; 64 * 1024])), 4096);
        let mut b = vec![0u8; 5000];
        r.read_at(4000, &mut b).unwrap();
        r.read_at(40960, &mut b[..1]).unwrap();
        assert_eq!(r.take().into_iter().collect::<Vec<_>>(), vec![0, 1, 2, 10]);
        assert!(r.take().is_empty());
    }
}
