//! The dm-log-writes reader (`diskhist ingest --format dmlog`) on arbitrary
//! bytes: never panics, never allocates much more than the input holds, and
//! reads the same entries however the bytes arrive — all at once, in small
//! reads, or as a file growing under `--follow`.

use diskhist::producers::dmlog::{DmlogEntry, DmlogError, DmlogReader, Polled};
use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

/// Hands out at most `max` bytes per read, and only the first `visible`
/// bytes of `data` (the part of a growing file written so far).
struct Trickle<'a> {
    data: &'a [u8],
    pos: usize,
    max: usize,
    visible: Rc<Cell<usize>>,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let end = self.visible.get().min(self.data.len());
        let n = buf.len().min(self.max).min(end.saturating_sub(self.pos));
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Everything a non-following read yields: the entries, then how it ended.
fn read_all<R: Read>(input: R) -> (Vec<DmlogEntry>, Result<(), DmlogError>) {
    let mut r = match DmlogReader::new(input) {
        Ok(r) => r,
        Err(e) => return (Vec::new(), Err(e)),
    };
    let mut entries = Vec::new();
    loop {
        match r.next_entry() {
            Ok(Some(e)) => {
                check_entry(&e, r.sector_size());
                entries.push(e);
            }
            Ok(None) => return (entries, Ok(())),
            Err(e) => return (entries, Err(e)),
        }
    }
}

fn check_entry(e: &DmlogEntry, sector_size: u32) {
    use diskhist::store::OwnedOp;
    let ss = u64::from(sector_size);
    if let OwnedOp::Write { offset_bytes, data } = &e.op {
        assert_eq!(*offset_bytes, e.sector * ss);
        assert_eq!(data.len() as u64, e.nr_sectors * ss);
    }
}

fn same_error(a: &DmlogError, b: &DmlogError) -> bool {
    a.to_string() == b.to_string()
}

/// Run every check of this target on one input; panics on a failure.
pub fn check(data: &[u8]) {
    let (whole, whole_end) = read_all(data);
    for (i, e) in whole.iter().enumerate() {
        assert_eq!(e.index, i as u64 + 1);
    }

    // Small reads: the reader must not depend on how `read` splits the input.
    let max = 1 + data.len() % 61 + data.len() / 512;
    let visible = Rc::new(Cell::new(usize::MAX));
    let (small, small_end) = read_all(Trickle {
        data,
        pos: 0,
        max,
        visible: visible.clone(),
    });
    assert_eq!(
        whole, small,
        "entries differ with reads of at most {max} bytes"
    );
    match (&whole_end, &small_end) {
        (Ok(()), Ok(())) => {}
        (Err(a), Err(b)) => assert!(same_error(a, b), "{a} vs {b}"),
        (a, b) => panic!("end differs with small reads: {a:?} vs {b:?}"),
    }

    // Following a file that grows in steps: every entry a plain read found
    // is found, in order, and nothing else before it.
    if whole_end.is_err() && whole.is_empty() {
        // Not a log (bad super): following it fails the same way once whole.
        return;
    }
    // About 40 steps, of an odd size, so partly written headers and data
    // are met without re-polling every byte.
    let step = 1 + data.len() / 40 + (data.first().copied().unwrap_or(0) as usize % 97);
    visible.set(0);
    let mut reader = None;
    let mut followed = Vec::new();
    let mut waits_at_full = 0;
    loop {
        if reader.is_none() {
            // `new` needs the whole super block: start over until it is there.
            match DmlogReader::new(Trickle {
                data,
                pos: 0,
                max: usize::MAX,
                visible: visible.clone(),
            }) {
                Ok(r) => reader = Some(r),
                Err(_) if visible.get() < data.len() => {
                    visible.set(visible.get() + step);
                    continue;
                }
                Err(e) => panic!("super failed when whole but not in a plain read: {e}"),
            }
        }
        let r = reader.as_mut().expect("set above");
        match r.poll(true) {
            Ok(Polled::Entry(e)) => followed.push(e),
            Ok(Polled::Wait) => {
                if visible.get() >= data.len() {
                    waits_at_full += 1;
                    if waits_at_full > 1 {
                        break;
                    }
                }
                visible.set(visible.get().saturating_add(step));
            }
            Ok(Polled::End) | Err(_) => break,
        }
    }
    assert_eq!(
        whole, followed,
        "entries differ when following in steps of {step}"
    );
}
