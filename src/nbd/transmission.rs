//! The transmission phase: read a request, check it, apply it to the
//! [`Export`], send the simple reply; until `NBD_CMD_DISC` or the client
//! goes away.
//!
//! Requests of one connection are handled one after another, in the order
//! they arrive, so a connection's writes reach the export in its order.
//! A WRITE is applied only once its whole payload has arrived: a client
//! that disconnects mid-request leaves nothing half-recorded.

use std::io::{self, Read, Write};

use super::export::{Export, ExportError};
use super::negotiate::read_or_eof;
use super::proto::{self, Command, NbdErrno, Rejection, RequestHeader, RequestLimits, WireError};

/// How a connection ended without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The client sent `NBD_CMD_DISC`.
    Disconnect,
    /// The client closed the connection between requests.
    Closed,
}

#[derive(Debug, thiserror::Error)]
pub enum TransmissionError {
    #[error("connection failed: {0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Wire(#[from] WireError),
    /// The export failed for good (fsync failure); the client got EIO.
    #[error("{0}")]
    Fatal(String),
}

/// What one connection did, for the log line when it closes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub requests: u64,
    pub writes: u64,
    pub bytes_written: u64,
    pub reads: u64,
    pub bytes_read: u64,
    pub flushes: u64,
    pub errors: u64,
    /// Requests refused with ENOSPC (included in `errors`).
    pub no_space: u64,
}

/// Handle requests from `r`, replying on `w`, until the client leaves.
pub fn handle_requests<R: Read, W: Write, E: Export + ?Sized>(
    r: &mut R,
    w: &mut W,
    export: &E,
    limits: &RequestLimits,
    counters: &mut Counters,
) -> Result<End, TransmissionError> {
    let mut t = Transmission {
        r,
        w,
        export,
        counters,
        buf: Vec::new(),
        refused_for_space: 0,
    };
    loop {
        let mut head = [0u8; proto::REQUEST_LEN];
        if !read_or_eof(t.r, &mut head)? {
            return Ok(End::Closed);
        }
        let h = proto::decode_request_header(&head)?;
        t.counters.requests += 1;
        match proto::classify(&h, limits) {
            Ok(Command::Disc) => return Ok(End::Disconnect),
            Ok(Command::Read {
                offset_bytes,
                length_bytes,
            }) => t.read(&h, offset_bytes, length_bytes)?,
            Ok(cmd) => {
                let outcome = t.write_like(cmd)?;
                t.reply(&h, outcome)?;
            }
            Err(rejection) => t.refuse(&h, &rejection)?,
        }
    }
}

/// What a write-like request came to: done, or the export's error and the
/// errno to send if that error is [`ExportError::OutOfRange`].
type Outcome = Result<(), (ExportError, NbdErrno)>;

/// One connection's transmission phase.
struct Transmission<'a, R, W, E: ?Sized> {
    r: &'a mut R,
    w: &'a mut W,
    export: &'a E,
    counters: &'a mut Counters,
    /// Reused for every request: READ replies are built as header + data
    /// in one buffer (one write), WRITE payloads land here.
    buf: Vec<u8>,
    /// ENOSPC refusals since the last write-like request that succeeded.
    refused_for_space: u64,
}

impl<R: Read, W: Write, E: Export + ?Sized> Transmission<'_, R, W, E> {
    /// Answer a request `classify` refused, reading past its payload so the
    /// connection stays in step.
    fn refuse(
        &mut self,
        h: &RequestHeader,
        rejection: &Rejection,
    ) -> Result<(), TransmissionError> {
        log::debug!("request {h:?} refused: {}", rejection.reason);
        skip(self.r, rejection.skip_bytes)?;
        self.counters.errors += 1;
        self.w.write_all(&proto::encode_simple_reply(
            rejection.errno as u32,
            h.handle,
        ))?;
        Ok(())
    }

    /// READ: the reply header and the data go out in one write.
    fn read(
        &mut self,
        h: &RequestHeader,
        offset_bytes: u64,
        length_bytes: u32,
    ) -> Result<(), TransmissionError> {
        let len = length_bytes as usize;
        let buf = sized(&mut self.buf, proto::SIMPLE_REPLY_LEN + len);
        match self
            .export
            .read(offset_bytes, &mut buf[proto::SIMPLE_REPLY_LEN..])
        {
            Ok(()) => {
                self.counters.reads += 1;
                self.counters.bytes_read += len as u64;
                buf[..proto::SIMPLE_REPLY_LEN]
                    .copy_from_slice(&proto::encode_simple_reply(0, h.handle));
                self.w.write_all(buf)?;
                Ok(())
            }
            Err(e) => self.fail(h, e, NbdErrno::Inval),
        }
    }

    /// Apply a WRITE (once its whole payload has arrived), WRITE_ZEROES,
    /// TRIM or FLUSH to the export.
    fn write_like(&mut self, cmd: Command) -> Result<Outcome, TransmissionError> {
        Ok(match cmd {
            Command::Write {
                offset_bytes,
                length_bytes,
                fua,
            } => {
                let data = sized(&mut self.buf, length_bytes as usize);
                self.r.read_exact(data)?;
                self.counters.writes += 1;
                self.counters.bytes_written += u64::from(length_bytes);
                if data.is_empty() {
                    Ok(())
                } else {
                    self.export
                        .write(offset_bytes, data, fua)
                        .map_err(|e| (e, NbdErrno::NoSpc))
                }
            }
            Command::WriteZeroes {
                offset_bytes,
                length_bytes,
                fua,
                no_hole: _,
            } => {
                // NO_HOLE needs nothing: a zeroed range costs the store no
                // payload either way, and later writes cannot run out of space
                // in a way a hole would cause.
                nonempty(length_bytes, || {
                    self.export
                        .write_zeroes(offset_bytes, u64::from(length_bytes), fua)
                })
                .map_err(|e| (e, NbdErrno::NoSpc))
            }
            Command::Trim {
                offset_bytes,
                length_bytes,
                fua,
            } => nonempty(length_bytes, || {
                self.export.trim(offset_bytes, u64::from(length_bytes), fua)
            })
            .map_err(|e| (e, NbdErrno::Inval)),
            Command::Flush => {
                self.counters.flushes += 1;
                self.export.flush().map_err(|e| (e, NbdErrno::Inval))
            }
            Command::Read { .. } | Command::Disc => {
                unreachable!("handle_requests answers READ and DISC itself")
            }
        })
    }

    /// Reply to a write-like request.
    fn reply(&mut self, h: &RequestHeader, outcome: Outcome) -> Result<(), TransmissionError> {
        match outcome {
            Ok(()) => {
                if self.refused_for_space > 0 {
                    log::info!(
                        "recording again after {} requests refused for want of space",
                        self.refused_for_space
                    );
                    self.refused_for_space = 0;
                }
                self.w.write_all(&proto::encode_simple_reply(0, h.handle))?;
                Ok(())
            }
            Err((e, out_of_range)) => self.fail(h, e, out_of_range),
        }
    }

    /// Reply with the errno for the export's error `e` (`out_of_range` if
    /// it is [`ExportError::OutOfRange`]). A fatal error ends the
    /// connection once the client has its reply.
    fn fail(
        &mut self,
        h: &RequestHeader,
        e: ExportError,
        out_of_range: NbdErrno,
    ) -> Result<(), TransmissionError> {
        self.counters.errors += 1;
        let errno = match e {
            ExportError::OutOfRange => out_of_range,
            ExportError::NoSpace(_)
            | ExportError::Fatal {
                out_of_space: true, ..
            } => NbdErrno::NoSpc,
            ExportError::Io(_) | ExportError::Fatal { .. } => NbdErrno::Io,
        };
        self.w
            .write_all(&proto::encode_simple_reply(errno as u32, h.handle))?;
        match e {
            ExportError::Fatal { why, .. } => {
                let _ = self.w.flush();
                return Err(TransmissionError::Fatal(why));
            }
            ExportError::NoSpace(why) => {
                // A client may retry in a loop while the disk is full: say
                // it once per spell, count the rest.
                self.counters.no_space += 1;
                self.refused_for_space += 1;
                if self.refused_for_space == 1 {
                    log::warn!(
                        "request {h:?} refused with ENOSPC: {why}; further refusals \
                         are counted until a write succeeds again"
                    );
                }
            }
            other => log::warn!("request {h:?} failed: {other}"),
        }
        Ok(())
    }
}

/// The first `len` bytes of the reused buffer, growing it if need be. Its
/// old contents stay: every use overwrites all the bytes it is handed.
fn sized(buf: &mut Vec<u8>, len: usize) -> &mut [u8] {
    if buf.len() < len {
        buf.resize(len, 0);
    }
    &mut buf[..len]
}

/// A zero-length TRIM or WRITE_ZEROES changes nothing and is not recorded.
fn nonempty(
    length_bytes: u32,
    op: impl FnOnce() -> Result<(), ExportError>,
) -> Result<(), ExportError> {
    if length_bytes == 0 {
        Ok(())
    } else {
        op()
    }
}

/// Read past a refused WRITE's payload without holding it in memory.
fn skip<R: Read>(r: &mut R, bytes: u32) -> io::Result<()> {
    let want = u64::from(bytes);
    let got = io::copy(&mut r.by_ref().take(want), &mut io::sink())?;
    if got < want {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("peer closed the connection {got} bytes into a {want}-byte payload"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nbd::export::mem::{Event, MemExport};
    use crate::nbd::proto::*;

    const SIZE: u64 = 1 << 20;
    const LIMITS: RequestLimits = RequestLimits {
        size_bytes: SIZE,
        max_payload_bytes: 32 << 20,
    };

    fn request(
        kind: u16,
        flags: u16,
        handle: u64,
        offset_bytes: u64,
        length_bytes: u32,
    ) -> Vec<u8> {
        encode_request_header(&RequestHeader {
            flags,
            kind,
            handle,
            offset_bytes,
            length_bytes,
        })
        .to_vec()
    }

    fn run(export: &MemExport, input: Vec<u8>) -> (Result<End, TransmissionError>, Vec<u8>) {
        let mut r = io::Cursor::new(input);
        let mut w = Vec::new();
        let mut c = Counters::default();
        let res = handle_requests(&mut r, &mut w, export, &LIMITS, &mut c);
        (res, w)
    }

    fn reply(b: &[u8]) -> (u32, u64) {
        assert_eq!(&b[..4], &SIMPLE_REPLY_MAGIC.to_be_bytes());
        (
            u32::from_be_bytes(b[4..8].try_into().unwrap()),
            u64::from_be_bytes(b[8..16].try_into().unwrap()),
        )
    }

    #[test]
    fn write_read_zero_trim_flush_disc() {
        let e = MemExport::new(SIZE as usize);
        let mut c = request(CMD_WRITE, CMD_FLAG_FUA, 1, 1000, 5);
        c.extend_from_slice(b"hello");
        c.extend(request(CMD_READ, 0, 2, 998, 9));
        c.extend(request(CMD_WRITE_ZEROES, CMD_FLAG_NO_HOLE, 3, 1001, 2));
        c.extend(request(CMD_TRIM, 0, 4, 1004, 1));
        c.extend(request(CMD_FLUSH, 0, 5, 0, 0));
        c.extend(request(CMD_READ, 0, 6, 1000, 5));
        c.extend(request(CMD_DISC, 0, 7, 0, 0));
        c.extend(request(CMD_WRITE, 0, 8, 0, 0)); // after DISC: never read
        let (res, out) = run(&e, c);
        assert_eq!(res.unwrap(), End::Disconnect);
        let mut at = 0;
        let mut next = |data: usize| {
            let r = reply(&out[at..]);
            let d = out[at + 16..at + 16 + data].to_vec();
            at += 16 + data;
            (r, d)
        };
        assert_eq!(next(0), ((0, 1), vec![]));
        assert_eq!(next(9), ((0, 2), b"\0\0hello\0\0".to_vec()));
        assert_eq!(next(0).0, (0, 3));
        assert_eq!(next(0).0, (0, 4));
        assert_eq!(next(0).0, (0, 5));
        assert_eq!(next(5), ((0, 6), b"h\0\0l\0".to_vec()));
        assert_eq!(at, out.len());
        assert_eq!(
            *e.events.lock().unwrap(),
            vec![
                Event::Write {
                    offset_bytes: 1000,
                    length_bytes: 5,
                    fua: true
                },
                Event::Zero {
                    offset_bytes: 1001,
                    length_bytes: 2,
                    fua: false
                },
                Event::Trim {
                    offset_bytes: 1004,
                    length_bytes: 1,
                    fua: false
                },
                Event::Flush,
            ]
        );
    }

    #[test]
    fn refused_requests_keep_the_connection_in_step() {
        let e = MemExport::new(SIZE as usize);
        // A write past the end: its payload must be skipped, not parsed.
        let mut c = request(CMD_WRITE, 0, 1, SIZE - 2, 4);
        c.extend_from_slice(&request(CMD_READ, 0, 99, 0, 0)[..4]); // payload that looks like a magic
        c.extend(request(CMD_READ, 0, 2, SIZE, 1));
        c.extend(request(CMD_READ, 0, 3, 0, (32 << 20) + 1));
        c.extend(request(CMD_BLOCK_STATUS, 0, 4, 0, 512));
        c.extend(request(77, 0, 5, 0, 0));
        c.extend(request(CMD_WRITE_ZEROES, CMD_FLAG_FAST_ZERO, 6, 0, 512));
        c.extend(request(CMD_TRIM, 0, 7, u64::MAX, 2));
        c.extend(request(CMD_WRITE, 0, 8, 0, 3));
        c.extend_from_slice(b"abc");
        let (res, out) = run(&e, c);
        assert_eq!(res.unwrap(), End::Closed);
        let got: Vec<_> = out.chunks(16).map(reply).collect();
        assert_eq!(
            got,
            vec![
                (28, 1),
                (22, 2),
                (22, 3),
                (22, 4),
                (22, 5),
                (22, 6),
                (22, 7),
                (0, 8)
            ]
        );
        assert_eq!(&e.data.lock().unwrap()[..3], b"abc");
        assert_eq!(e.events.lock().unwrap().len(), 1);
    }

    #[test]
    fn disconnect_mid_request_records_nothing() {
        let e = MemExport::new(SIZE as usize);
        let mut c = request(CMD_WRITE, 0, 1, 0, 4096);
        c.extend_from_slice(&[7; 100]);
        let (res, out) = run(&e, c);
        assert!(matches!(res, Err(TransmissionError::Io(_))));
        assert!(out.is_empty());
        assert!(e.events.lock().unwrap().is_empty());
        let (res, _) = run(&e, request(CMD_READ, 0, 1, 0, 16)[..20].to_vec());
        assert!(matches!(res, Err(TransmissionError::Io(_))));
        let mut bad = request(CMD_READ, 0, 1, 0, 16);
        bad[3] ^= 1;
        let (res, _) = run(&e, bad);
        assert!(matches!(
            res,
            Err(TransmissionError::Wire(WireError::RequestMagic(_)))
        ));
    }

    #[test]
    fn a_failed_flush_replies_eio_and_ends_the_connection() {
        let e = MemExport::new(SIZE as usize);
        *e.fail_flush.lock().unwrap() = true;
        let mut c = request(CMD_FLUSH, 0, 1, 0, 0);
        c.extend(request(CMD_WRITE, 0, 2, 0, 1));
        c.push(1);
        let (res, out) = run(&e, c);
        assert!(matches!(res, Err(TransmissionError::Fatal(_))));
        assert_eq!(out.chunks(16).map(reply).collect::<Vec<_>>(), vec![(5, 1)]);
    }
}
