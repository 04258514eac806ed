//! The NBD request parser (`diskhist serve`, transmission phase) on arbitrary
//! bytes from a client.
//!
//! 1. `proto::parse_request` never panics and only accepts requests inside
//!    the export and the payload limit, with the whole WRITE payload present.
//! 2. `transmission::handle_requests` over the same bytes, against an export held in
//!    memory, does exactly what a model built on `parse_request` predicts:
//!    the same replies byte for byte, the same disk contents, the same end,
//!    the same counters. The export fails as a full disk would, by rule, so
//!    the error paths are modelled too: a write, zeroing or trim starting in
//!    the last 4 KiB is refused with `NoSpace` (ENOSPC, serve goes on), and a
//!    flush while the disk's first byte is 0xff fails fatally for want of
//!    space (ENOSPC, serve stops).

use diskhist::testing::nbd::export::{Export, ExportError};
use diskhist::testing::nbd::proto::{self, Command, RequestLimits, WireError, REQUEST_LEN};
use diskhist::testing::nbd::transmission::{handle_requests, Counters, End, TransmissionError};
use std::sync::Mutex;

const SIZE: usize = 64 << 10;
const LIMITS: RequestLimits = RequestLimits {
    size_bytes: SIZE as u64,
    max_payload_bytes: 16 << 10,
};

struct Mem(Mutex<Vec<u8>>);

/// Write-like requests starting here or later find the disk full.
const FULL_FROM: u64 = SIZE as u64 - 4096;

fn no_space() -> ExportError {
    ExportError::NoSpace("the fuzz export is full past FULL_FROM".into())
}

/// A flush fails fatally (for want of space) while the disk starts with this.
const POISON: u8 = 0xff;

impl Mem {
    fn range(&self, off: u64, len: u64) -> Result<std::ops::Range<usize>, ExportError> {
        // `classify` keeps requests in range: anything else is a bug there.
        let end = off
            .checked_add(len)
            .expect("offset + length overflow reached the export");
        assert!(
            end <= SIZE as u64,
            "request past the end reached the export"
        );
        Ok(off as usize..end as usize)
    }
}

impl Export for Mem {
    fn size_bytes(&self) -> u64 {
        SIZE as u64
    }
    fn preferred_block_size(&self) -> u32 {
        4096
    }
    fn read(&self, off: u64, buf: &mut [u8]) -> Result<(), ExportError> {
        let r = self.range(off, buf.len() as u64)?;
        buf.copy_from_slice(&self.0.lock().unwrap()[r]);
        Ok(())
    }
    fn write(&self, off: u64, data: &[u8], _fua: bool) -> Result<(), ExportError> {
        let r = self.range(off, data.len() as u64)?;
        assert!(!data.is_empty(), "empty write reached the export");
        if off >= FULL_FROM {
            return Err(no_space());
        }
        self.0.lock().unwrap()[r].copy_from_slice(data);
        Ok(())
    }
    fn write_zeroes(&self, off: u64, len: u64, _fua: bool) -> Result<(), ExportError> {
        let r = self.range(off, len)?;
        assert!(len > 0, "empty zeroing or trim reached the export");
        if off >= FULL_FROM {
            return Err(no_space());
        }
        self.0.lock().unwrap()[r].fill(0);
        Ok(())
    }
    fn trim(&self, off: u64, len: u64, fua: bool) -> Result<(), ExportError> {
        self.write_zeroes(off, len, fua)
    }
    fn flush(&self) -> Result<(), ExportError> {
        if self.0.lock().unwrap()[0] == POISON {
            return Err(ExportError::Fatal {
                why: "the fuzz export's flush failed".into(),
                out_of_space: true,
            });
        }
        Ok(())
    }
}

/// How the model expects `handle_requests` to end.
#[derive(Debug, PartialEq)]
enum Outcome {
    Closed,
    Disconnect,
    /// An I/O error: the client left in the middle of a request.
    Eof,
    /// A request without the request magic.
    BadMagic,
    /// The export failed for good.
    Fatal,
}

/// What the model expects in `Counters`.
#[derive(Debug, Default, PartialEq)]
struct Counts {
    requests: u64,
    errors: u64,
    no_space: u64,
}

fn check_parse(bytes: &[u8], limits: &RequestLimits) {
    match proto::parse_request(bytes, limits) {
        Ok((cmd, used)) => {
            assert!(used <= bytes.len());
            let in_range = |off: u64, len: u32| {
                off.checked_add(u64::from(len))
                    .is_some_and(|e| e <= limits.size_bytes)
            };
            match cmd {
                Command::Read {
                    offset_bytes,
                    length_bytes,
                } => {
                    assert!(in_range(offset_bytes, length_bytes));
                    assert!(length_bytes <= limits.max_payload_bytes);
                    assert_eq!(used, REQUEST_LEN);
                }
                Command::Write {
                    offset_bytes,
                    length_bytes,
                    ..
                } => {
                    assert!(in_range(offset_bytes, length_bytes));
                    assert!(length_bytes <= limits.max_payload_bytes);
                    assert_eq!(used, REQUEST_LEN + length_bytes as usize);
                }
                Command::Trim {
                    offset_bytes,
                    length_bytes,
                    ..
                }
                | Command::WriteZeroes {
                    offset_bytes,
                    length_bytes,
                    ..
                } => {
                    assert!(in_range(offset_bytes, length_bytes));
                    assert_eq!(used, REQUEST_LEN);
                }
                Command::Flush | Command::Disc => assert_eq!(used, REQUEST_LEN),
            }
            // The header round-trips through the encoder.
            let head: &[u8; REQUEST_LEN] = bytes[..REQUEST_LEN].try_into().unwrap();
            let h = proto::decode_request_header(head).unwrap();
            assert_eq!(&proto::encode_request_header(&h), head);
        }
        Err(Ok(rej)) => {
            let head: &[u8; REQUEST_LEN] = bytes[..REQUEST_LEN].try_into().unwrap();
            let h = proto::decode_request_header(head).unwrap();
            let payload = if h.kind == proto::CMD_WRITE {
                h.length_bytes
            } else {
                0
            };
            assert_eq!(
                rej.skip_bytes, payload,
                "a refused request must skip its payload"
            );
            assert!(!rej.reason.is_empty());
        }
        Err(Err(WireError::Short { need, have })) => {
            assert_eq!(have, bytes.len());
            assert!(need > have);
        }
        Err(Err(WireError::RequestMagic(m))) => assert_ne!(m, proto::REQUEST_MAGIC),
        Err(Err(e)) => panic!("unexpected wire error {e}"),
    }
}

/// What `handle_requests` should send, leave on the disk, count and end with, computed
/// request by request with `parse_request`.
fn model(data: &[u8]) -> (Vec<u8>, Vec<u8>, Outcome, Counts) {
    let mut disk = vec![0u8; SIZE];
    let mut out = Vec::new();
    let mut n = Counts::default();
    let mut pos = 0;
    let end = loop {
        let rest = &data[pos..];
        if rest.is_empty() {
            break Outcome::Closed;
        }
        if rest.len() >= REQUEST_LEN && rest[..4] == proto::REQUEST_MAGIC.to_be_bytes() {
            n.requests += 1;
        }
        let handle = |rest: &[u8]| u64::from_be_bytes(rest[8..16].try_into().unwrap());
        let (cmd, used) = match proto::parse_request(rest, &LIMITS) {
            Ok(parsed) => parsed,
            Err(Ok(rej)) => {
                let used = REQUEST_LEN + rej.skip_bytes as usize;
                if rest.len() < used {
                    break Outcome::Eof;
                }
                n.errors += 1;
                out.extend_from_slice(&proto::encode_simple_reply(rej.errno as u32, handle(rest)));
                pos += used;
                continue;
            }
            Err(Err(WireError::Short { .. })) => break Outcome::Eof,
            Err(Err(_)) => break Outcome::BadMagic,
        };
        pos += used;
        let ok = proto::encode_simple_reply(0, handle(rest));
        let enospc = proto::encode_simple_reply(proto::NbdErrno::NoSpc as u32, handle(rest));
        // A write-like request: applied unless empty (never reaches the
        // export) or starting where the disk is full.
        let mut write_like = |off: u64, len: u32, data: Option<&[u8]>| {
            let (o, l) = (off as usize, len as usize);
            if l == 0 {
                out.extend_from_slice(&ok);
            } else if off >= FULL_FROM {
                n.errors += 1;
                n.no_space += 1;
                out.extend_from_slice(&enospc);
            } else {
                match data {
                    Some(d) => disk[o..o + l].copy_from_slice(d),
                    None => disk[o..o + l].fill(0),
                }
                out.extend_from_slice(&ok);
            }
        };
        match cmd {
            Command::Read {
                offset_bytes,
                length_bytes,
            } => {
                let o = offset_bytes as usize;
                out.extend_from_slice(&ok);
                out.extend_from_slice(&disk[o..o + length_bytes as usize]);
            }
            Command::Write {
                offset_bytes,
                length_bytes,
                ..
            } => write_like(offset_bytes, length_bytes, Some(&rest[REQUEST_LEN..used])),
            Command::Trim {
                offset_bytes,
                length_bytes,
                ..
            }
            | Command::WriteZeroes {
                offset_bytes,
                length_bytes,
                ..
            } => write_like(offset_bytes, length_bytes, None),
            Command::Flush => {
                if disk[0] == POISON {
                    n.errors += 1;
                    out.extend_from_slice(&enospc);
                    break Outcome::Fatal;
                }
                out.extend_from_slice(&ok);
            }
            Command::Disc => break Outcome::Disconnect,
        }
    };
    (out, disk, end, n)
}

/// Run every check of this target on one input; panics on a failure.
pub fn check(data: &[u8]) {
    for limits in [
        LIMITS,
        RequestLimits {
            size_bytes: u64::MAX,
            max_payload_bytes: u32::MAX,
        },
        RequestLimits {
            size_bytes: 0,
            max_payload_bytes: 0,
        },
        RequestLimits {
            size_bytes: 4095,
            max_payload_bytes: 1,
        },
    ] {
        check_parse(data, &limits);
    }

    let (want_out, want_disk, want_end, want_counts) = model(data);
    let export = Mem(Mutex::new(vec![0u8; SIZE]));
    let mut out = Vec::new();
    let mut counters = Counters::default();
    let got = handle_requests(&mut &data[..], &mut out, &export, &LIMITS, &mut counters);
    let got_end = match &got {
        Ok(End::Closed) => Outcome::Closed,
        Ok(End::Disconnect) => Outcome::Disconnect,
        Err(TransmissionError::Wire(WireError::RequestMagic(_))) => Outcome::BadMagic,
        Err(TransmissionError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Outcome::Eof
        }
        Err(TransmissionError::Fatal(_)) => Outcome::Fatal,
        Err(e) => panic!("serve failed in a way the model does not know: {e}"),
    };
    assert_eq!(got_end, want_end, "serve ended differently from the model");
    assert!(out == want_out, "serve replied differently from the model");
    assert!(
        *export.0.lock().unwrap() == want_disk,
        "serve left other disk contents than the model"
    );
    let got_counts = Counts {
        requests: counters.requests,
        errors: counters.errors,
        no_space: counters.no_space,
    };
    assert_eq!(
        got_counts, want_counts,
        "serve counted differently from the model"
    );
}
