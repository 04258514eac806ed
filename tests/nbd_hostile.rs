//! `diskhist serve` against clients that break the protocol: raw bytes over
//! the socket. Each gets an NBD error or a disconnect, never a crash or a
//! hang; the server keeps serving others, and the store stays intact.

mod nbd_util;

use nbd_util::*;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::{Duration, Instant};

use diskhist::nbd::proto::*;

const SIZE: u64 = 4 << 20;

fn connect(s: &Served) -> UnixStream {
    let c = UnixStream::connect(&s.socket).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c
}

/// Greeting read, client flags sent.
fn greeted(s: &Served, client_flags: u32) -> UnixStream {
    let mut c = connect(s);
    let mut g = [0u8; GREETING_LEN];
    c.read_exact(&mut g).unwrap();
    assert_eq!(g, encode_greeting(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES));
    c.write_all(&client_flags.to_be_bytes()).unwrap();
    c
}

fn send_option(c: &mut UnixStream, opt: u32, data: &[u8]) {
    let mut v = IHAVEOPT.to_be_bytes().to_vec();
    v.extend_from_slice(&opt.to_be_bytes());
    v.extend_from_slice(&(data.len() as u32).to_be_bytes());
    v.extend_from_slice(data);
    c.write_all(&v).unwrap();
}

/// Read one option reply: (option, type, data).
fn option_reply(c: &mut UnixStream) -> (u32, u32, Vec<u8>) {
    let mut h = [0u8; OPTION_REPLY_HEADER_LEN];
    c.read_exact(&mut h).unwrap();
    assert_eq!(&h[..8], &OPT_REPLY_MAGIC.to_be_bytes());
    let be = |r: std::ops::Range<usize>| u32::from_be_bytes(h[r].try_into().unwrap());
    let mut d = vec![0u8; be(16..20) as usize];
    c.read_exact(&mut d).unwrap();
    (be(8..12), be(12..16), d)
}

/// A connection in transmission (via NBD_OPT_GO with the default name).
fn transmitting(s: &Served) -> UnixStream {
    let mut c = greeted(s, FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES);
    send_option(&mut c, OPT_GO, &[0, 0, 0, 0, 0, 0]);
    loop {
        let (opt, ty, _) = option_reply(&mut c);
        assert_eq!(opt, OPT_GO);
        match ty {
            REP_INFO => continue,
            REP_ACK => return c,
            other => panic!("GO refused: {other:#x}"),
        }
    }
}

fn request(
    c: &mut UnixStream,
    kind: u16,
    flags: u16,
    handle: u64,
    offset_bytes: u64,
    length_bytes: u32,
) {
    let h = RequestHeader {
        flags,
        kind,
        handle,
        offset_bytes,
        length_bytes,
    };
    c.write_all(&encode_request_header(&h)).unwrap();
}

/// (error, handle) of the next simple reply.
fn reply(c: &mut UnixStream) -> (u32, u64) {
    let mut r = [0u8; SIMPLE_REPLY_LEN];
    c.read_exact(&mut r).unwrap();
    assert_eq!(&r[..4], &SIMPLE_REPLY_MAGIC.to_be_bytes());
    (
        u32::from_be_bytes(r[4..8].try_into().unwrap()),
        u64::from_be_bytes(r[8..16].try_into().unwrap()),
    )
}

/// The server closed the connection (EOF, or reset).
fn closed_by_server(c: &mut UnixStream) -> bool {
    let mut b = [0u8; 64];
    loop {
        match c.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(e) => panic!("expected the server to close the connection, got {e}"),
        }
    }
}

/// The server still works for a well-behaved client.
fn still_serves(s: &Served) {
    let out = run(Command::new("qemu-io")
        .args(["-f", "raw", "-c", "read -P 0x5a 0 4k"])
        .arg(s.uri()));
    assert!(out.contains("read 4096/4096"), "{out}");
}

fn setup() -> (tempfile::TempDir, Served) {
    let dir = tempfile::tempdir().unwrap();
    let store = init_store(dir.path(), "4M");
    let s = Served::start(
        &store,
        &dir.path().join("nbd.sock"),
        &["--handshake-timeout", "2"],
    );
    // Something stored before the abuse, which must survive it.
    run(Command::new("qemu-io")
        .args(["-f", "raw", "-c", "write -P 0x5a 0 4k", "-c", "flush"])
        .arg(s.uri()));
    (dir, s)
}

/// Check the server survived, then stop it and check the store: only the
/// setup's one write changed the disk (flushes come and go with clients).
fn finish(dir: tempfile::TempDir, mut s: Served) {
    assert!(s.alive(), "server died:\n{}", s.stderr());
    still_serves(&s);
    let store = s.store.clone();
    let (st, err) = s.stop();
    assert!(st.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    diskhist(&["verify", store.to_str().unwrap()]);
    let recs = log_records(&store);
    let changes: Vec<_> = recs.iter().filter(|r| r.kind != "flush").collect();
    assert_eq!(changes.len(), 1, "records: {recs:?}");
    let img = export_at(&store, "latest", dir.path());
    assert!(img[..4096].iter().all(|&b| b == 0x5a));
}

#[test]
fn malformed_handshakes_are_disconnected() {
    let (dir, s) = setup();
    // Unknown client flags.
    let mut c = greeted(&s, 0x8000_0000);
    assert!(closed_by_server(&mut c));
    // Garbage instead of an option.
    let mut c = greeted(&s, FLAG_C_FIXED_NEWSTYLE);
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(closed_by_server(&mut c));
    // An option claiming 4 GiB of data.
    let mut c = greeted(&s, FLAG_C_FIXED_NEWSTYLE);
    let mut v = IHAVEOPT.to_be_bytes().to_vec();
    v.extend_from_slice(&OPT_GO.to_be_bytes());
    v.extend_from_slice(&u32::MAX.to_be_bytes());
    c.write_all(&v).unwrap();
    assert!(closed_by_server(&mut c));
    // EXPORT_NAME for an export that does not exist: the protocol's only answer is to close.
    let mut c = greeted(&s, FLAG_C_FIXED_NEWSTYLE);
    send_option(&mut c, OPT_EXPORT_NAME, b"no-such-export");
    assert!(closed_by_server(&mut c));
    // A client that leaves in the middle of an option.
    let mut c = greeted(&s, FLAG_C_FIXED_NEWSTYLE);
    c.write_all(&IHAVEOPT.to_be_bytes()[..5]).unwrap();
    drop(c);
    // Silent clients and trickling clients are dropped after the handshake timeout (2 s here).
    let t0 = Instant::now();
    let mut silent = connect(&s);
    let mut trickle = greeted(&s, FLAG_C_FIXED_NEWSTYLE);
    // A valid option, one byte every 300 ms: each read is quick, the whole
    // (4.8 s) too slow; the deadline is for the whole handshake.
    let mut list = IHAVEOPT.to_be_bytes().to_vec();
    list.extend_from_slice(&OPT_LIST.to_be_bytes());
    list.extend_from_slice(&0u32.to_be_bytes());
    let dropped = list.iter().any(|b| {
        std::thread::sleep(Duration::from_millis(300));
        trickle.write_all(&[*b]).is_err()
    });
    assert!(dropped, "a client trickling its handshake was not dropped");
    // Meanwhile others are served.
    still_serves(&s);
    assert!(closed_by_server(&mut silent));
    assert!(closed_by_server(&mut trickle));
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "timeouts took {:?}",
        t0.elapsed()
    );
    finish(dir, s);
}

#[test]
fn unknown_and_unsupported_options_are_answered() {
    let (dir, s) = setup();
    let mut c = greeted(&s, FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES);
    for (opt, data, want) in [
        (OPT_STARTTLS, &[][..], REP_ERR_UNSUP),
        (OPT_STRUCTURED_REPLY, &[], REP_ERR_UNSUP),
        (OPT_EXTENDED_HEADERS, &[], REP_ERR_UNSUP),
        (
            OPT_SET_META_CONTEXT,
            &[0, 0, 0, 0, 0, 0, 0, 0],
            REP_ERR_UNSUP,
        ),
        (0x4242_4242, &[1, 2, 3], REP_ERR_UNSUP),
        (OPT_LIST, &[9], REP_ERR_INVALID),
        (OPT_INFO, &[0, 0, 0, 50, 0, 0], REP_ERR_INVALID),
        (OPT_GO, &[0, 0, 0, 1, b'x', 0, 0], REP_ERR_UNKNOWN),
    ] {
        send_option(&mut c, opt, data);
        let (o, ty, msg) = option_reply(&mut c);
        assert_eq!(
            (o, ty),
            (opt, want),
            "option {opt}: {}",
            String::from_utf8_lossy(&msg)
        );
        assert!(!msg.is_empty(), "error replies carry a message");
    }
    // After all that, the client can still go, by name this time.
    let mut go = 8u32.to_be_bytes().to_vec();
    go.extend_from_slice(b"diskhist");
    go.extend_from_slice(&[0, 1, 0, INFO_BLOCK_SIZE as u8]);
    send_option(&mut c, OPT_GO, &go);
    let mut types = Vec::new();
    loop {
        let (_, ty, d) = option_reply(&mut c);
        types.push(ty);
        if ty == REP_INFO && d[..2] == INFO_EXPORT.to_be_bytes() {
            assert_eq!(u64::from_be_bytes(d[2..10].try_into().unwrap()), SIZE);
        }
        if ty != REP_INFO {
            break;
        }
    }
    assert_eq!(types.last(), Some(&REP_ACK));
    request(&mut c, CMD_READ, 0, 1, 0, 8);
    assert_eq!(reply(&mut c), (0, 1));
    let mut d = [0u8; 8];
    c.read_exact(&mut d).unwrap();
    assert_eq!(d, [0x5a; 8]);
    // Abort path on a second connection.
    let mut a = greeted(&s, FLAG_C_FIXED_NEWSTYLE);
    send_option(&mut a, OPT_ABORT, &[]);
    assert_eq!(option_reply(&mut a).1, REP_ACK);
    assert!(closed_by_server(&mut a));
    request(&mut c, CMD_DISC, 0, 2, 0, 0);
    assert!(closed_by_server(&mut c));
    finish(dir, s);
}

#[test]
fn bad_requests_get_errors_and_the_connection_goes_on() {
    let (dir, s) = setup();
    let mut c = transmitting(&s);
    let einval = NbdErrno::Inval as u32;
    let enospc = NbdErrno::NoSpc as u32;
    // Unknown command, unsupported commands, bad flags.
    request(&mut c, 42, 0, 1, 0, 512);
    assert_eq!(reply(&mut c), (einval, 1));
    request(&mut c, CMD_BLOCK_STATUS, 0, 2, 0, 512);
    assert_eq!(reply(&mut c), (einval, 2));
    request(&mut c, CMD_READ, CMD_FLAG_DF, 3, 0, 512);
    assert_eq!(reply(&mut c), (einval, 3));
    // Reads past the end and over 32 MiB: EINVAL, no payload.
    request(&mut c, CMD_READ, 0, 4, SIZE - 4, 8);
    assert_eq!(reply(&mut c), (einval, 4));
    request(&mut c, CMD_READ, 0, 5, 0, u32::MAX);
    assert_eq!(reply(&mut c), (einval, 5));
    request(&mut c, CMD_TRIM, 0, 6, u64::MAX - 1, 4096);
    assert_eq!(reply(&mut c), (einval, 6));
    // Writes past the end: ENOSPC, and the payload is skipped.
    request(&mut c, CMD_WRITE, 0, 7, SIZE, 4096);
    c.write_all(&[0xee; 4096]).unwrap();
    assert_eq!(reply(&mut c), (enospc, 7));
    request(&mut c, CMD_WRITE_ZEROES, 0, 8, SIZE - 512, 1024);
    assert_eq!(reply(&mut c), (enospc, 8));
    // A write over 32 MiB: EINVAL after its payload is read past.
    let big = (32 << 20) + 4096;
    request(&mut c, CMD_WRITE, 0, 9, 0, big);
    let chunk = vec![0xee; 1 << 20];
    let mut left = big as usize;
    while left > 0 {
        let n = left.min(chunk.len());
        c.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
    assert_eq!(reply(&mut c), (einval, 9));
    // The connection is still in step: a real read works.
    request(&mut c, CMD_READ, 0, 10, 0, 16);
    assert_eq!(reply(&mut c), (0, 10));
    let mut d = [0u8; 16];
    c.read_exact(&mut d).unwrap();
    assert_eq!(d, [0x5a; 16]);
    request(&mut c, CMD_DISC, 0, 11, 0, 0);
    assert!(closed_by_server(&mut c));
    // Nothing refused was recorded.
    finish(dir, s);
}

#[test]
fn bad_magic_and_mid_request_disconnects_lose_nothing() {
    let (dir, s) = setup();
    // A wrong request magic cannot be resynchronised: disconnect.
    let mut c = transmitting(&s);
    c.write_all(&[0xff; REQUEST_LEN]).unwrap();
    assert!(closed_by_server(&mut c));
    // A client that leaves halfway through a write's payload: nothing recorded.
    let mut c = transmitting(&s);
    request(&mut c, CMD_WRITE, 0, 1, 8192, 65536);
    c.write_all(&[0xcc; 1000]).unwrap();
    drop(c);
    // ...and halfway through a request header.
    let mut c = transmitting(&s);
    c.write_all(&REQUEST_MAGIC.to_be_bytes()).unwrap();
    drop(c);
    // A client that sends requests and never reads its replies, then leaves.
    let mut c = transmitting(&s);
    for h in 0..64 {
        request(&mut c, CMD_READ, 0, h, 0, 1 << 20);
    }
    drop(c);
    std::thread::sleep(Duration::from_millis(300));
    finish(dir, s);
}
