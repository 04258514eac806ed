//! An NBD client for tests, over a Unix socket, written from the protocol
//! specification (NetworkBlockDevice/nbd, doc/proto.md) rather than from
//! diskhist's own constants, so that it cannot share a mistake with the
//! server it tests. Three levels:
//!
//! - [`Conn`]: the protocol's steps one by one (greeting, client flags,
//!   options and their replies, a request header, a simple reply), for
//!   tests that break the protocol on purpose; also raw `Read`/`Write`.
//! - [`Client`]: a connection in transmission (fixed newstyle handshake,
//!   `NBD_OPT_GO` on the default export), one request at a time: write
//!   (with or without FUA), write-zeroes, trim, flush, read, each returning
//!   the reply's error so that error cases can be checked exactly.
//! - [`Sender`] and [`Receiver`]: a client split in two halves that can live
//!   in different threads, so that requests go out while replies come back
//!   (pipelining), one by one or many in one send ([`Batch`]); replies may
//!   come back in any order, the handle says which request each answers.
//!   Their I/O errors are returned, not panicked on, since a server killed
//!   mid-stream is what some tests do.
//!
//! Every wire value is big-endian, as the protocol has it.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// The server's greeting: NBDMAGIC, IHAVEOPT, its 16-bit handshake flags.
pub const GREETING_LEN: usize = 18;
const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
const OPT_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// Option reply: magic (8), option (4), reply type (4), length (4).
const OPTION_REPLY_HEADER_LEN: usize = 20;
const REQUEST_MAGIC: u32 = 0x2560_9513;
/// Request: magic (4), flags (2), type (2), handle (8), offset (8), length (4).
const REQUEST_LEN: usize = 28;
const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
/// Simple reply: magic (4), error (4), handle (8).
const SIMPLE_REPLY_LEN: usize = 16;

/// Client handshake flags.
pub const FLAG_C_FIXED_NEWSTYLE: u32 = 1 << 0;
pub const FLAG_C_NO_ZEROES: u32 = 1 << 1;

const OPT_GO: u32 = 7;
const REP_ACK: u32 = 1;
const REP_INFO: u32 = 3;
const INFO_EXPORT: u16 = 0;

const CMD_READ: u16 = 0;
const CMD_WRITE: u16 = 1;
const CMD_DISC: u16 = 2;
const CMD_FLUSH: u16 = 3;
const CMD_TRIM: u16 = 4;
const CMD_WRITE_ZEROES: u16 = 6;
const CMD_FLAG_FUA: u16 = 1 << 0;

/// How long any read waits: a server that hangs fails the test, it does
/// not stop it.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().unwrap())
}

fn be_u64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[..8].try_into().unwrap())
}

fn request_header(
    kind: u16,
    flags: u16,
    handle: u64,
    offset_bytes: u64,
    length_bytes: u32,
) -> [u8; REQUEST_LEN] {
    let mut b = [0u8; REQUEST_LEN];
    b[0..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
    b[4..6].copy_from_slice(&flags.to_be_bytes());
    b[6..8].copy_from_slice(&kind.to_be_bytes());
    b[8..16].copy_from_slice(&handle.to_be_bytes());
    b[16..24].copy_from_slice(&offset_bytes.to_be_bytes());
    b[24..28].copy_from_slice(&length_bytes.to_be_bytes());
    b
}

/// (error, handle) of the next simple reply on `sock`.
fn read_reply(sock: &mut UnixStream) -> io::Result<(u32, u64)> {
    let mut r = [0u8; SIMPLE_REPLY_LEN];
    sock.read_exact(&mut r)?;
    if be_u32(&r) != SIMPLE_REPLY_MAGIC {
        return Err(io::Error::other(format!("bad reply magic: {r:02x?}")));
    }
    Ok((be_u32(&r[4..]), be_u64(&r[8..])))
}

/// A connection to the server, driven step by step. Panics on I/O errors
/// (the server hanging up where the test did not expect it).
pub struct Conn {
    sock: UnixStream,
}

impl Conn {
    /// Connect; nothing read or sent yet.
    pub fn open(socket: &Path) -> Conn {
        let sock = UnixStream::connect(socket)
            .unwrap_or_else(|e| panic!("connect to {}: {e}", socket.display()));
        sock.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        Conn { sock }
    }

    /// The server's greeting, as sent.
    pub fn greeting(&mut self) -> [u8; GREETING_LEN] {
        let mut g = [0u8; GREETING_LEN];
        self.sock.read_exact(&mut g).expect("the NBD greeting");
        g
    }

    pub fn send_client_flags(&mut self, flags: u32) {
        self.sock.write_all(&flags.to_be_bytes()).unwrap();
    }

    /// The greeting read and checked (NBDMAGIC, IHAVEOPT), `flags` sent.
    pub fn greeted(socket: &Path, flags: u32) -> Conn {
        let mut c = Conn::open(socket);
        let g = c.greeting();
        assert!(
            be_u64(&g) == NBDMAGIC && be_u64(&g[8..]) == IHAVEOPT,
            "not a fixed newstyle NBD greeting: {g:02x?}"
        );
        c.send_client_flags(flags);
        c
    }

    /// Option `option` with `data`.
    pub fn send_option(&mut self, option: u32, data: &[u8]) {
        let mut v = IHAVEOPT.to_be_bytes().to_vec();
        v.extend_from_slice(&option.to_be_bytes());
        v.extend_from_slice(&(data.len() as u32).to_be_bytes());
        v.extend_from_slice(data);
        self.sock.write_all(&v).unwrap();
    }

    /// The next option reply (its magic checked): (option, reply type,
    /// data).
    pub fn option_reply(&mut self) -> (u32, u32, Vec<u8>) {
        let mut h = [0u8; OPTION_REPLY_HEADER_LEN];
        self.sock.read_exact(&mut h).expect("an option reply");
        assert_eq!(be_u64(&h), OPT_REPLY_MAGIC, "option reply magic: {h:02x?}");
        let mut data = vec![0u8; be_u32(&h[16..]) as usize];
        self.sock
            .read_exact(&mut data)
            .expect("an option reply's data");
        (be_u32(&h[8..]), be_u32(&h[12..]), data)
    }

    /// `NBD_OPT_GO` on the default export with no information requests,
    /// after the handshake flags: the export's size, from the
    /// `NBD_INFO_EXPORT` the server must send before its ACK. The
    /// connection is then in transmission.
    pub fn go(&mut self) -> u64 {
        // The name's length (0), then the number of information requests (0).
        self.send_option(OPT_GO, &[0; 6]);
        let mut size = None;
        loop {
            let (option, kind, data) = self.option_reply();
            assert_eq!(option, OPT_GO, "a reply to another option");
            match kind {
                REP_ACK => break,
                REP_INFO if data.len() >= 10 && data[..2] == INFO_EXPORT.to_be_bytes() => {
                    size = Some(be_u64(&data[2..]));
                }
                REP_INFO => {}
                other => panic!("NBD_OPT_GO refused: {other:#x}"),
            }
        }
        size.expect("no NBD_INFO_EXPORT before the ACK")
    }

    /// A request header alone (a write's payload, if any, follows with
    /// `write_all`).
    pub fn request(&mut self, kind: u16, flags: u16, handle: u64, offset_bytes: u64, len: u32) {
        self.sock
            .write_all(&request_header(kind, flags, handle, offset_bytes, len))
            .unwrap();
    }

    /// (error, handle) of the next simple reply.
    pub fn reply(&mut self) -> (u32, u64) {
        read_reply(&mut self.sock).expect("a simple reply")
    }

    /// The server closed the connection (EOF, or reset), after whatever it
    /// still had to send.
    pub fn closed_by_server(&mut self) -> bool {
        let mut b = [0u8; 64];
        loop {
            match self.sock.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return true,
                Err(e) => panic!("expected the server to close the connection, got {e}"),
            }
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.read(buf)
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sock.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.sock.flush()
    }
}

/// A connection in transmission, one request at a time, each with a
/// handle of its own that the reply must carry.
pub struct Client {
    conn: Conn,
    size: u64,
    handle: u64,
}

impl Client {
    /// Connect, fixed newstyle handshake (no zeroes), `NBD_OPT_GO`.
    pub fn connect(socket: &Path) -> Client {
        let mut conn = Conn::greeted(socket, FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES);
        let size = conn.go();
        Client {
            conn,
            size,
            handle: 0,
        }
    }

    /// The export's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Send one request with its payload (a write's data); the reply's
    /// error (0: success). The reply must answer this request.
    pub fn call(
        &mut self,
        kind: u16,
        flags: u16,
        offset_bytes: u64,
        len: u64,
        payload: &[u8],
    ) -> u32 {
        self.handle += 1;
        let mut req = request_header(kind, flags, self.handle, offset_bytes, len as u32).to_vec();
        req.extend_from_slice(payload);
        self.conn.sock.write_all(&req).unwrap();
        let (error, handle) =
            read_reply(&mut self.conn.sock).expect("the server must answer, not hang up or hang");
        assert_eq!(handle, self.handle, "a reply to another request");
        error
    }

    pub fn write(&mut self, offset_bytes: u64, data: &[u8], fua: bool) -> u32 {
        let flags = if fua { CMD_FLAG_FUA } else { 0 };
        self.call(CMD_WRITE, flags, offset_bytes, data.len() as u64, data)
    }

    pub fn write_zeroes(&mut self, offset_bytes: u64, len: u64, fua: bool) -> u32 {
        let flags = if fua { CMD_FLAG_FUA } else { 0 };
        self.call(CMD_WRITE_ZEROES, flags, offset_bytes, len, &[])
    }

    pub fn trim(&mut self, offset_bytes: u64, len: u64) -> u32 {
        self.call(CMD_TRIM, 0, offset_bytes, len, &[])
    }

    pub fn flush(&mut self) -> u32 {
        self.call(CMD_FLUSH, 0, 0, 0, &[])
    }

    /// `len` bytes from `offset_bytes`; the read must succeed.
    pub fn read(&mut self, offset_bytes: u64, len: usize) -> Vec<u8> {
        assert_eq!(
            self.call(CMD_READ, 0, offset_bytes, len as u64, &[]),
            0,
            "read failed"
        );
        let mut d = vec![0u8; len];
        self.conn.sock.read_exact(&mut d).unwrap();
        d
    }

    /// Say goodbye (`NBD_CMD_DISC`, which has no reply) and close.
    pub fn disconnect(mut self) {
        let _ = self
            .conn
            .sock
            .write_all(&request_header(CMD_DISC, 0, 0, 0, 0));
    }

    /// The two halves, for pipelining; the caller picks the handles.
    pub fn split(self) -> (Sender, Receiver) {
        let rx = self
            .conn
            .sock
            .try_clone()
            .expect("a second handle on the socket");
        (
            Sender {
                sock: self.conn.sock,
                buf: Vec::new(),
            },
            Receiver { sock: rx },
        )
    }
}

/// The sending half of a [`Client`].
pub struct Sender {
    sock: UnixStream,
    buf: Vec<u8>,
}

impl Sender {
    pub fn write(
        &mut self,
        handle: u64,
        offset_bytes: u64,
        data: &[u8],
        fua: bool,
    ) -> io::Result<()> {
        let flags = if fua { CMD_FLAG_FUA } else { 0 };
        let h = request_header(CMD_WRITE, flags, handle, offset_bytes, data.len() as u32);
        self.buf.clear();
        self.buf.extend_from_slice(&h);
        self.buf.extend_from_slice(data);
        self.sock.write_all(&self.buf)
    }

    pub fn flush(&mut self, handle: u64) -> io::Result<()> {
        self.sock
            .write_all(&request_header(CMD_FLUSH, 0, handle, 0, 0))
    }

    /// A READ of `len` bytes: its reply carries the data, which the
    /// receiver takes with [`Receiver::data`].
    pub fn read(&mut self, handle: u64, offset_bytes: u64, len: u32) -> io::Result<()> {
        self.sock
            .write_all(&request_header(CMD_READ, 0, handle, offset_bytes, len))
    }

    /// Several requests built with the methods of a [`Batch`], in one send:
    /// they reach the server together, as from a client with many in
    /// flight.
    pub fn send(&mut self, batch: &Batch) -> io::Result<()> {
        self.sock.write_all(&batch.bytes)
    }
}

/// Requests gathered for one send ([`Sender::send`]).
#[derive(Default)]
pub struct Batch {
    bytes: Vec<u8>,
}

impl Batch {
    pub fn write(&mut self, handle: u64, offset_bytes: u64, data: &[u8], fua: bool) {
        let flags = if fua { CMD_FLAG_FUA } else { 0 };
        self.bytes.extend_from_slice(&request_header(
            CMD_WRITE,
            flags,
            handle,
            offset_bytes,
            data.len() as u32,
        ));
        self.bytes.extend_from_slice(data);
    }

    pub fn flush(&mut self, handle: u64) {
        self.bytes
            .extend_from_slice(&request_header(CMD_FLUSH, 0, handle, 0, 0));
    }

    pub fn read(&mut self, handle: u64, offset_bytes: u64, len: u32) {
        self.bytes
            .extend_from_slice(&request_header(CMD_READ, 0, handle, offset_bytes, len));
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
    }
}

/// The receiving half of a [`Client`].
pub struct Receiver {
    sock: UnixStream,
}

impl Receiver {
    /// (error, handle) of the next simple reply; an error at the end of the
    /// connection (the server died).
    pub fn reply(&mut self) -> io::Result<(u32, u64)> {
        read_reply(&mut self.sock)
    }

    /// The data of a successful READ's reply, just received with
    /// [`Receiver::reply`]: `len` bytes, as asked.
    pub fn data(&mut self, len: usize) -> io::Result<Vec<u8>> {
        let mut d = vec![0u8; len];
        self.sock.read_exact(&mut d)?;
        Ok(d)
    }
}
