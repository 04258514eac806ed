//! A minimal NBD client for pipelining: the handshake (fixed newstyle,
//! NBD_OPT_GO), then a sending half and a receiving half that can live in
//! different threads, so requests go out while replies come back.

use diskhist::nbd::proto::*;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Connect and negotiate; returns the two halves and the export size.
pub fn connect(socket: &Path) -> io::Result<(Sender, Receiver, u64)> {
    let mut c = UnixStream::connect(socket)?;
    c.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut g = [0u8; GREETING_LEN];
    c.read_exact(&mut g)?;
    if g[..8] != NBDMAGIC.to_be_bytes() || g[8..16] != IHAVEOPT.to_be_bytes() {
        return Err(io::Error::other(format!("not an NBD greeting: {g:02x?}")));
    }
    c.write_all(&(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES).to_be_bytes())?;
    // NBD_OPT_GO: empty export name, no information requests.
    let mut opt = IHAVEOPT.to_be_bytes().to_vec();
    opt.extend_from_slice(&OPT_GO.to_be_bytes());
    opt.extend_from_slice(&6u32.to_be_bytes());
    opt.extend_from_slice(&[0; 6]);
    c.write_all(&opt)?;
    let mut size = None;
    loop {
        let mut h = [0u8; OPTION_REPLY_HEADER_LEN];
        c.read_exact(&mut h)?;
        let be32 = |at: usize| u32::from_be_bytes(h[at..at + 4].try_into().unwrap());
        let mut data = vec![0u8; be32(16) as usize];
        c.read_exact(&mut data)?;
        match be32(12) {
            REP_ACK => break,
            REP_INFO if data.len() >= 10 && data[..2] == INFO_EXPORT.to_be_bytes() => {
                size = Some(u64::from_be_bytes(data[2..10].try_into().unwrap()));
            }
            REP_INFO => {}
            other => return Err(io::Error::other(format!("NBD_OPT_GO refused: {other:#x}"))),
        }
    }
    let size = size.ok_or_else(|| io::Error::other("no NBD_INFO_EXPORT before the ACK"))?;
    let r = c.try_clone()?;
    Ok((
        Sender {
            sock: c,
            buf: Vec::new(),
        },
        Receiver { sock: r },
        size,
    ))
}

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
        let h = RequestHeader {
            flags: if fua { CMD_FLAG_FUA } else { 0 },
            kind: CMD_WRITE,
            handle,
            offset_bytes,
            length_bytes: data.len() as u32,
        };
        self.buf.clear();
        self.buf.extend_from_slice(&encode_request_header(&h));
        self.buf.extend_from_slice(data);
        self.sock.write_all(&self.buf)
    }

    pub fn flush(&mut self, handle: u64) -> io::Result<()> {
        let h = RequestHeader {
            flags: 0,
            kind: CMD_FLUSH,
            handle,
            offset_bytes: 0,
            length_bytes: 0,
        };
        self.sock.write_all(&encode_request_header(&h))
    }

    pub fn disconnect(&mut self) -> io::Result<()> {
        let h = RequestHeader {
            flags: 0,
            kind: CMD_DISC,
            handle: 0,
            offset_bytes: 0,
            length_bytes: 0,
        };
        self.sock.write_all(&encode_request_header(&h))
    }
}

pub struct Receiver {
    sock: UnixStream,
}

impl Receiver {
    /// The next simple reply: (error, handle). An error at the end of the
    /// connection (the server died).
    pub fn reply(&mut self) -> io::Result<(u32, u64)> {
        let mut r = [0u8; SIMPLE_REPLY_LEN];
        self.sock.read_exact(&mut r)?;
        if r[..4] != SIMPLE_REPLY_MAGIC.to_be_bytes() {
            return Err(io::Error::other(format!("bad reply magic: {r:02x?}")));
        }
        Ok((
            u32::from_be_bytes(r[4..8].try_into().unwrap()),
            u64::from_be_bytes(r[8..16].try_into().unwrap()),
        ))
    }
}
