//! The transmission phase: read a request, check it, apply it to the
//! [`Export`], send the simple reply; until `NBD_CMD_DISC` or the client
//! goes away.
//!
//! Pipelined: the connection's thread reads requests and applies them to
//! the export one after another, in the order they arrive, so a
//! connection's writes reach the export in its order. A reply that must
//! wait for the data to be durable (FLUSH, FUA) does not hold up the
//! requests behind it: the export answers it later, from another thread
//! ([`Export::submit`]), and replies go out in the order they are ready,
//! which NBD allows (the handle says which request a reply answers).
//!
//! Replies queue up and leave together, in one send: the reading thread
//! sends them before it would wait for the client (its input buffer is
//! empty, or holds only part of a WRITE's payload), a second thread sends
//! those completed later, so a thread is woken per batch of late replies,
//! not per reply. A client must read its replies while it sends (every
//! NBD client does): one that only sends fills the socket both ways, and
//! the connection stops, as it would with any server.
//!
//! Reads see every write applied before them, so every write whose reply
//! the client has had. A WRITE is applied only once its whole payload has
//! arrived: a client that disconnects mid-request leaves nothing
//! half-recorded. When the connection ends (DISC, end of file, an error)
//! the replies of every request already read still go out first.

use std::io::{self, Read, Write};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use super::export::{Done, Export, ExportError, Request};
use super::negotiate::read_or_eof;
use super::proto::{self, Command, NbdErrno, Rejection, RequestHeader, RequestLimits, WireError};

/// Requests read whose reply has not been sent yet, at most: past this the
/// connection stops reading until replies have gone out.
const MAX_IN_FLIGHT: usize = 1024;
/// Bytes of replies waiting to be sent (read data), at most, likewise. A
/// single larger read is still served, alone.
const MAX_QUEUED_BYTES: usize = 64 << 20;
/// READ buffers kept for reuse, and the largest kept.
const SPARE_BUFFERS: usize = 8;
const SPARE_MAX_BYTES: usize = 1 << 20;
/// A connection reads its requests through a buffer of this size.
const READ_BUFFER_BYTES: usize = 256 << 10;
/// Replies are gathered into one send up to this size.
const SEND_CHUNK_BYTES: usize = 256 << 10;

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
pub fn handle_requests<R: Read, W: Write + Send, E: Export + ?Sized>(
    r: &mut R,
    w: &mut W,
    export: &E,
    limits: &RequestLimits,
    counters: &mut Counters,
) -> Result<End, TransmissionError> {
    handle_requests_until(r, w, export, limits, counters, &|| {})
}

/// [`handle_requests`], with a way to end the connection from the reply
/// side: `stop_reading` is called (from the sending thread) when no
/// further request may be read, a fatal export error or a client that no
/// longer takes its replies, while the reader may be waiting for the
/// client's next request. It must make `r` return end of file (shut the
/// socket's read side).
pub fn handle_requests_until<R: Read, W: Write + Send, E: Export + ?Sized>(
    r: &mut R,
    w: &mut W,
    export: &E,
    limits: &RequestLimits,
    counters: &mut Counters,
    stop_reading: &(dyn Fn() + Sync),
) -> Result<End, TransmissionError> {
    let pipe = Arc::new(Pipeline {
        reader: std::thread::current().id(),
        state: Mutex::new(PipeState {
            reading: true,
            ..PipeState::default()
        }),
        ready: Condvar::new(),
        room: Condvar::new(),
    });
    let out = Mutex::new(Outbox {
        w,
        buf: Vec::with_capacity(SEND_CHUNK_BYTES),
    });
    let read = std::thread::scope(|s| {
        s.spawn(|| send_replies(&pipe, &out, stop_reading));
        let mut t = Transmission {
            r: io::BufReader::with_capacity(READ_BUFFER_BYTES, r),
            export,
            counters,
            pipe: &pipe,
            out: &out,
            stop_reading,
            buf: Vec::new(),
        };
        let read = t.run(limits);
        let mut st = pipe.state.lock();
        st.reading = false;
        pipe.ready.notify_one();
        read
        // The scope waits for every reply to go out.
    });
    let st = pipe.state.lock();
    counters.errors += st.errors;
    counters.no_space += st.no_space;
    if let Some(why) = &st.fatal {
        return Err(TransmissionError::Fatal(why.clone()));
    }
    let end = read?;
    match &st.send_error {
        Some(e) => Err(io::Error::new(e.kind(), e.to_string()).into()),
        None => Ok(end),
    }
}

/// A reply ready to be sent.
enum Reply {
    Simple([u8; proto::SIMPLE_REPLY_LEN]),
    /// A READ's reply: header and data in one buffer.
    Data(Vec<u8>),
}

impl Reply {
    fn bytes(&self) -> &[u8] {
        match self {
            Reply::Simple(b) => b,
            Reply::Data(v) => v,
        }
    }
}

/// What the reading side, the export's completions and the sending side
/// share.
struct Pipeline {
    /// The reading thread: replies it queues itself need not wake the
    /// sending thread, it sends them before it next waits for the client.
    reader: std::thread::ThreadId,
    state: Mutex<PipeState>,
    /// The sender waits here for replies.
    ready: Condvar,
    /// The reader waits here for room.
    room: Condvar,
}

#[derive(Default)]
struct PipeState {
    replies: Vec<Reply>,
    queued_bytes: usize,
    /// Requests read whose reply has not been sent (or dropped) yet.
    in_flight: usize,
    /// Cleared when the reader has stopped for good.
    reading: bool,
    /// The export failed for good: read no further request.
    fatal: Option<String>,
    /// The client no longer takes replies: the rest are dropped.
    send_error: Option<io::Error>,
    /// `stop_reading` has been called.
    told_reader: bool,
    errors: u64,
    no_space: u64,
    /// ENOSPC refusals since the last write-like request that succeeded.
    refused_for_space: u64,
    /// READ buffers sent, for reuse.
    spare: Vec<Vec<u8>>,
}

impl Pipeline {
    /// Queue a reply (its request already counted in flight).
    fn push(&self, st: &mut PipeState, reply: Reply) {
        st.queued_bytes += reply.bytes().len();
        st.replies.push(reply);
        if std::thread::current().id() != self.reader {
            self.ready.notify_one();
        }
    }

    /// The outcome of a write-like request, reported by the export: queue
    /// its reply. `out_of_range` is the errno for
    /// [`ExportError::OutOfRange`].
    fn complete(&self, handle: u64, outcome: Result<(), ExportError>, out_of_range: NbdErrno) {
        let mut st = self.state.lock();
        match outcome {
            Ok(()) => {
                if st.refused_for_space > 0 {
                    log::info!(
                        "recording again after {} requests refused for want of space",
                        st.refused_for_space
                    );
                    st.refused_for_space = 0;
                }
                self.push(
                    &mut st,
                    Reply::Simple(proto::encode_simple_reply(0, handle)),
                );
            }
            Err(e) => self.fail(&mut st, handle, e, out_of_range),
        }
    }

    /// Reply with the errno for the export's error `e` (`out_of_range` if
    /// it is [`ExportError::OutOfRange`]). A fatal error ends the
    /// connection once the client has its reply.
    fn fail(&self, st: &mut PipeState, handle: u64, e: ExportError, out_of_range: NbdErrno) {
        st.errors += 1;
        let errno = match e {
            ExportError::OutOfRange => out_of_range,
            ExportError::NoSpace(_)
            | ExportError::Fatal {
                out_of_space: true, ..
            } => NbdErrno::NoSpc,
            ExportError::Io(_) | ExportError::Fatal { .. } => NbdErrno::Io,
        };
        self.push(
            st,
            Reply::Simple(proto::encode_simple_reply(errno as u32, handle)),
        );
        match e {
            ExportError::Fatal { why, .. } => {
                st.fatal.get_or_insert(why);
            }
            ExportError::NoSpace(why) => {
                // A client may retry in a loop while the disk is full: say
                // it once per spell, count the rest.
                st.no_space += 1;
                st.refused_for_space += 1;
                if st.refused_for_space == 1 {
                    log::warn!(
                        "request {handle:#x} refused with ENOSPC: {why}; further refusals \
                         are counted until a write succeeds again"
                    );
                }
            }
            other => log::warn!("request {handle:#x} failed: {other}"),
        }
    }
}

/// The socket's sending side, shared by the reading thread and the
/// sending thread; whoever holds it sends every reply queued.
struct Outbox<'w, W> {
    w: &'w mut W,
    /// Replies gathered into one send.
    buf: Vec<u8>,
}

/// The sending thread: replies the export completes later (from another
/// thread) as soon as they are ready, and any the reader left, until the
/// reader has stopped and every request it read has had its reply.
fn send_replies<W: Write>(
    pipe: &Pipeline,
    out: &Mutex<Outbox<'_, W>>,
    stop_reading: &(dyn Fn() + Sync),
) {
    loop {
        {
            let mut st = pipe.state.lock();
            while st.replies.is_empty() && (st.reading || st.in_flight > 0) {
                pipe.ready.wait(&mut st);
            }
            if st.replies.is_empty() {
                return;
            }
        }
        drain(pipe, &mut out.lock(), stop_reading);
    }
}

/// Send every queued reply, those queued together in one send; drop them
/// instead if the client no longer takes replies. Holding `out` while
/// taking from the queue keeps replies in the order they were queued.
fn drain<W: Write>(pipe: &Pipeline, out: &mut Outbox<'_, W>, stop_reading: &(dyn Fn() + Sync)) {
    loop {
        let (replies, failed, stop) = {
            let mut st = pipe.state.lock();
            if st.replies.is_empty() {
                return;
            }
            let stop = !st.told_reader && st.fatal.is_some();
            st.told_reader |= stop;
            (
                std::mem::take(&mut st.replies),
                st.send_error.is_some(),
                stop,
            )
        };
        if stop {
            stop_reading();
        }
        let sent = if failed {
            Ok(()) // dropped: nobody takes them
        } else {
            send(out, &replies)
        };
        let mut st = pipe.state.lock();
        if let Err(e) = sent {
            st.send_error = Some(e);
            // The reader may be waiting for a request that will not come.
            if !std::mem::replace(&mut st.told_reader, true) {
                drop(st);
                stop_reading();
                st = pipe.state.lock();
            }
        }
        st.in_flight -= replies.len();
        for r in replies {
            st.queued_bytes -= r.bytes().len();
            if let Reply::Data(v) = r {
                if st.spare.len() < SPARE_BUFFERS && v.capacity() <= SPARE_MAX_BYTES {
                    st.spare.push(v);
                }
            }
        }
        pipe.room.notify_one();
    }
}

/// Send `replies`, gathered up to [`SEND_CHUNK_BYTES`] a send.
fn send<W: Write>(out: &mut Outbox<'_, W>, replies: &[Reply]) -> io::Result<()> {
    let Outbox { w, buf } = out;
    buf.clear();
    for r in replies {
        let b = r.bytes();
        if buf.len() + b.len() > SEND_CHUNK_BYTES && !buf.is_empty() {
            w.write_all(buf)?;
            buf.clear();
        }
        if b.len() > SEND_CHUNK_BYTES {
            w.write_all(b)?;
        } else {
            buf.extend_from_slice(b);
        }
    }
    if !buf.is_empty() {
        w.write_all(buf)?;
    }
    w.flush()
}

/// One connection's reading side.
struct Transmission<'a, 'w, R, W, E: ?Sized> {
    r: io::BufReader<&'a mut R>,
    export: &'a E,
    counters: &'a mut Counters,
    pipe: &'a Arc<Pipeline>,
    out: &'a Mutex<Outbox<'w, W>>,
    stop_reading: &'a (dyn Fn() + Sync),
    /// Reused for every WRITE's payload: the export has applied it when
    /// `submit` returns.
    buf: Vec<u8>,
}

impl<R: Read, W: Write, E: Export + ?Sized> Transmission<'_, '_, R, W, E> {
    fn run(&mut self, limits: &RequestLimits) -> Result<End, TransmissionError> {
        loop {
            if self.r.buffer().is_empty() {
                self.send_ready();
            }
            if !self.wait_for_room() {
                return Ok(End::Closed);
            }
            match self.one(limits) {
                Ok(None) => {}
                Ok(Some(end)) => {
                    self.no_reply();
                    return Ok(end);
                }
                Err(e) => {
                    self.no_reply();
                    return Err(e);
                }
            }
        }
    }

    /// About to wait for the client: send the replies ready first, unless
    /// the sending thread is at it already.
    fn send_ready(&self) {
        match self.out.try_lock() {
            Some(mut out) => drain(self.pipe, &mut out, self.stop_reading),
            None => {
                self.pipe.ready.notify_one();
            }
        }
    }

    /// Read and handle one request, its reply queued now or by the export
    /// later; how the connection ends if it does (then, as on an error, the
    /// request has no reply).
    fn one(&mut self, limits: &RequestLimits) -> Result<Option<End>, TransmissionError> {
        let mut head = [0u8; proto::REQUEST_LEN];
        if !read_or_eof(&mut self.r, &mut head)? {
            return Ok(Some(End::Closed));
        }
        let h = proto::decode_request_header(&head)?;
        self.counters.requests += 1;
        match proto::classify(&h, limits) {
            Ok(Command::Disc) => return Ok(Some(End::Disconnect)),
            Ok(Command::Read {
                offset_bytes,
                length_bytes,
            }) => self.read(&h, offset_bytes, length_bytes),
            Ok(cmd) => self.write_like(&h, cmd)?,
            Err(rejection) => self.refuse(&h, &rejection)?,
        }
        Ok(None)
    }

    /// Wait until another request may be read; false if none may (the
    /// export failed for good, or the client takes no more replies).
    fn wait_for_room(&self) -> bool {
        let mut st = self.pipe.state.lock();
        loop {
            if st.fatal.is_some() || st.send_error.is_some() {
                return false;
            }
            if st.in_flight < MAX_IN_FLIGHT && st.queued_bytes < MAX_QUEUED_BYTES {
                st.in_flight += 1;
                return true;
            }
            // What this thread queued goes out from the other.
            self.pipe.ready.notify_one();
            self.pipe.room.wait(&mut st);
        }
    }

    /// The request counted in flight by `wait_for_room` has no reply after
    /// all (there was none, DISC, or the connection ended inside it).
    fn no_reply(&self) {
        let mut st = self.pipe.state.lock();
        st.in_flight -= 1;
        self.pipe.ready.notify_one();
    }

    /// Answer a request `classify` refused, reading past its payload so the
    /// connection stays in step.
    fn refuse(
        &mut self,
        h: &RequestHeader,
        rejection: &Rejection,
    ) -> Result<(), TransmissionError> {
        log::debug!("request {h:?} refused: {}", rejection.reason);
        skip(&mut self.r, rejection.skip_bytes)?;
        let mut st = self.pipe.state.lock();
        st.errors += 1;
        let reply = proto::encode_simple_reply(rejection.errno as u32, h.handle);
        self.pipe.push(&mut st, Reply::Simple(reply));
        Ok(())
    }

    /// READ: the reply header and the data go out in one buffer.
    fn read(&mut self, h: &RequestHeader, offset_bytes: u64, length_bytes: u32) {
        let len = length_bytes as usize;
        let mut buf = self.pipe.state.lock().spare.pop().unwrap_or_default();
        sized(&mut buf, proto::SIMPLE_REPLY_LEN + len);
        buf.truncate(proto::SIMPLE_REPLY_LEN + len);
        let res = self
            .export
            .read(offset_bytes, &mut buf[proto::SIMPLE_REPLY_LEN..]);
        let mut st = self.pipe.state.lock();
        match res {
            Ok(()) => {
                self.counters.reads += 1;
                self.counters.bytes_read += len as u64;
                buf[..proto::SIMPLE_REPLY_LEN]
                    .copy_from_slice(&proto::encode_simple_reply(0, h.handle));
                self.pipe.push(&mut st, Reply::Data(buf));
            }
            Err(e) => self.pipe.fail(&mut st, h.handle, e, NbdErrno::Inval),
        }
    }

    /// Apply a WRITE (once its whole payload has arrived), WRITE_ZEROES,
    /// TRIM or FLUSH to the export; its reply goes out when the export
    /// says it may.
    fn write_like(&mut self, h: &RequestHeader, cmd: Command) -> Result<(), TransmissionError> {
        let (req, out_of_range) = match cmd {
            Command::Write {
                offset_bytes,
                length_bytes,
                fua,
            } => {
                if self.r.buffer().len() < length_bytes as usize {
                    self.send_ready();
                }
                let data = sized(&mut self.buf, length_bytes as usize);
                self.r.read_exact(data)?;
                self.counters.writes += 1;
                self.counters.bytes_written += u64::from(length_bytes);
                let req = Request::Write {
                    offset_bytes,
                    data,
                    fua,
                };
                (req, NbdErrno::NoSpc)
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
                let req = Request::Zeroes {
                    offset_bytes,
                    length_bytes: u64::from(length_bytes),
                    fua,
                };
                (req, NbdErrno::NoSpc)
            }
            Command::Trim {
                offset_bytes,
                length_bytes,
                fua,
            } => {
                let req = Request::Trim {
                    offset_bytes,
                    length_bytes: u64::from(length_bytes),
                    fua,
                };
                (req, NbdErrno::Inval)
            }
            Command::Flush => {
                self.counters.flushes += 1;
                (Request::Flush, NbdErrno::Inval)
            }
            Command::Read { .. } | Command::Disc => {
                unreachable!("run answers READ and DISC itself")
            }
        };
        let pipe = Arc::clone(self.pipe);
        let handle = h.handle;
        let done: Done = Box::new(move |outcome| pipe.complete(handle, outcome, out_of_range));
        if is_empty(&req) {
            // Changes nothing and is not recorded.
            done(Ok(()));
        } else {
            self.export.submit(req, done);
        }
        Ok(())
    }
}

/// A zero-length WRITE, TRIM or WRITE_ZEROES.
fn is_empty(req: &Request<'_>) -> bool {
    match req {
        Request::Write { data, .. } => data.is_empty(),
        Request::Zeroes { length_bytes, .. } | Request::Trim { length_bytes, .. } => {
            *length_bytes == 0
        }
        Request::Flush => false,
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
