//! `diskhist serve` against clients that break the protocol: raw bytes over
//! the socket. Each gets an NBD error or a disconnect, never a crash or a
//! hang; the server keeps serving others, and the store stays intact.

use diskhist::testing::nbd::proto::*;
use diskhist_test_common::nbd::Conn;
use diskhist_test_common::{diskhist, export_at, init_store, log_records, run, Served};
use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

const SIZE: u64 = 4 << 20;

/// Greeting read, client flags sent.
fn greeted(s: &Served, client_flags: u32) -> Conn {
    let mut c = Conn::open(&s.socket);
    let g = c.greeting();
    assert_eq!(g, encode_greeting(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES));
    c.send_client_flags(client_flags);
    c
}

/// A connection in transmission (via NBD_OPT_GO with the default name).
fn transmitting(s: &Served) -> Conn {
    let mut c = greeted(s, FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES);
    c.go();
    c
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
    assert!(c.closed_by_server());
    // Garbage instead of an option.
    let mut c = greeted(&s, FLAG_C_FIXED_NEWSTYLE);
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(c.closed_by_server());
    // An option claiming 4 GiB of data.
    let mut c = greeted(&s, FLAG_C_FIXED_NEWSTYLE);
    let mut v = IHAVEOPT.to_be_bytes().to_vec();
    v.extend_from_slice(&OPT_GO.to_be_bytes());
    v.extend_from_slice(&u32::MAX.to_be_bytes());
    c.write_all(&v).unwrap();
    assert!(c.closed_by_server());
    // EXPORT_NAME for an export that does not exist: the protocol's only answer is to close.
    let mut c = greeted(&s, FLAG_C_FIXED_NEWSTYLE);
    c.send_option(OPT_EXPORT_NAME, b"no-such-export");
    assert!(c.closed_by_server());
    // A client that leaves in the middle of an option.
    let mut c = greeted(&s, FLAG_C_FIXED_NEWSTYLE);
    c.write_all(&IHAVEOPT.to_be_bytes()[..5]).unwrap();
    drop(c);
    // Silent clients and trickling clients are dropped after the handshake timeout (2 s here).
    let t0 = Instant::now();
    let mut silent = Conn::open(&s.socket);
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
    assert!(silent.closed_by_server());
    assert!(trickle.closed_by_server());
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
        c.send_option(opt, data);
        let (o, ty, msg) = c.option_reply();
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
    c.send_option(OPT_GO, &go);
    let mut types = Vec::new();
    loop {
        let (_, ty, d) = c.option_reply();
        types.push(ty);
        if ty == REP_INFO && d[..2] == INFO_EXPORT.to_be_bytes() {
            assert_eq!(u64::from_be_bytes(d[2..10].try_into().unwrap()), SIZE);
        }
        if ty != REP_INFO {
            break;
        }
    }
    assert_eq!(types.last(), Some(&REP_ACK));
    c.request(CMD_READ, 0, 1, 0, 8);
    assert_eq!(c.reply(), (0, 1));
    let mut d = [0u8; 8];
    c.read_exact(&mut d).unwrap();
    assert_eq!(d, [0x5a; 8]);
    // Abort path on a second connection.
    let mut a = greeted(&s, FLAG_C_FIXED_NEWSTYLE);
    a.send_option(OPT_ABORT, &[]);
    assert_eq!(a.option_reply().1, REP_ACK);
    assert!(a.closed_by_server());
    c.request(CMD_DISC, 0, 2, 0, 0);
    assert!(c.closed_by_server());
    finish(dir, s);
}

#[test]
fn bad_requests_get_errors_and_the_connection_goes_on() {
    let (dir, s) = setup();
    let mut c = transmitting(&s);
    let einval = NbdErrno::Inval as u32;
    let enospc = NbdErrno::NoSpc as u32;
    // Unknown command, unsupported commands, bad flags.
    c.request(42, 0, 1, 0, 512);
    assert_eq!(c.reply(), (einval, 1));
    c.request(CMD_BLOCK_STATUS, 0, 2, 0, 512);
    assert_eq!(c.reply(), (einval, 2));
    c.request(CMD_READ, CMD_FLAG_DF, 3, 0, 512);
    assert_eq!(c.reply(), (einval, 3));
    // Reads past the end and over 32 MiB: EINVAL, no payload.
    c.request(CMD_READ, 0, 4, SIZE - 4, 8);
    assert_eq!(c.reply(), (einval, 4));
    c.request(CMD_READ, 0, 5, 0, u32::MAX);
    assert_eq!(c.reply(), (einval, 5));
    c.request(CMD_TRIM, 0, 6, u64::MAX - 1, 4096);
    assert_eq!(c.reply(), (einval, 6));
    // Writes past the end: ENOSPC, and the payload is skipped.
    c.request(CMD_WRITE, 0, 7, SIZE, 4096);
    c.write_all(&[0xee; 4096]).unwrap();
    assert_eq!(c.reply(), (enospc, 7));
    c.request(CMD_WRITE_ZEROES, 0, 8, SIZE - 512, 1024);
    assert_eq!(c.reply(), (enospc, 8));
    // A write over 32 MiB: EINVAL after its payload is read past.
    let big = (32 << 20) + 4096;
    c.request(CMD_WRITE, 0, 9, 0, big);
    let chunk = vec![0xee; 1 << 20];
    let mut left = big as usize;
    while left > 0 {
        let n = left.min(chunk.len());
        c.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
    assert_eq!(c.reply(), (einval, 9));
    // The connection is still in step: a real read works.
    c.request(CMD_READ, 0, 10, 0, 16);
    assert_eq!(c.reply(), (0, 10));
    let mut d = [0u8; 16];
    c.read_exact(&mut d).unwrap();
    assert_eq!(d, [0x5a; 16]);
    c.request(CMD_DISC, 0, 11, 0, 0);
    assert!(c.closed_by_server());
    // Nothing refused was recorded.
    finish(dir, s);
}

#[test]
fn bad_magic_and_mid_request_disconnects_lose_nothing() {
    let (dir, s) = setup();
    // A wrong request magic cannot be resynchronised: disconnect.
    let mut c = transmitting(&s);
    c.write_all(&[0xff; REQUEST_LEN]).unwrap();
    assert!(c.closed_by_server());
    // A client that leaves halfway through a write's payload: nothing recorded.
    let mut c = transmitting(&s);
    c.request(CMD_WRITE, 0, 1, 8192, 65536);
    c.write_all(&[0xcc; 1000]).unwrap();
    drop(c);
    // ...and halfway through a request header.
    let mut c = transmitting(&s);
    c.write_all(&REQUEST_MAGIC.to_be_bytes()).unwrap();
    drop(c);
    // A client that sends requests and never reads its replies, then leaves.
    let mut c = transmitting(&s);
    for h in 0..64 {
        c.request(CMD_READ, 0, h, 0, 1 << 20);
    }
    drop(c);
    std::thread::sleep(Duration::from_millis(300));
    finish(dir, s);
}
