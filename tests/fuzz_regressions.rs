//! The fuzz targets' checks (fuzz/checks/*.rs), run by `cargo test` on the
//! stable toolchain without libFuzzer: on every input of the committed
//! corpus (fuzz/corpus/<target>/), and on each input that once crashed a
//! target, inlined here. A parser change that breaks an input the fuzzers
//! reached fails here before anyone runs `make fuzz`.

#[path = "../fuzz/checks/dmlog.rs"]
mod dmlog;
#[path = "../fuzz/checks/files.rs"]
mod files;
#[path = "../fuzz/checks/nbd_handshake.rs"]
mod nbd_handshake;
#[path = "../fuzz/checks/nbd_request.rs"]
mod nbd_request;
#[path = "../fuzz/checks/partitions.rs"]
mod partitions;
#[path = "../fuzz/checks/seal.rs"]
mod seal;
#[path = "../fuzz/checks/stream.rs"]
mod stream;
#[path = "../fuzz/checks/time.rs"]
mod time;

use std::path::Path;

/// Run `check` on every file of fuzz/corpus/<target>/; the corpus must not
/// be empty (a test that checks nothing would pass).
fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(
            outcome.is_ok(),
            "{target}: corpus input {} fails",
            path.display()
        );
        n += 1;
    }
    assert!(n >= 10, "{target}: only {n} inputs in {}", dir.display());
}

#[test]
fn dmlog_corpus() {
    replay("dmlog", dmlog::check);
}

#[test]
fn stream_corpus() {
    replay("stream", stream::check);
}

#[test]
fn nbd_request_corpus() {
    replay("nbd_request", nbd_request::check);
}

#[test]
fn nbd_handshake_corpus() {
    replay("nbd_handshake", nbd_handshake::check);
}

#[test]
fn partitions_corpus() {
    replay("partitions", partitions::check);
}

#[test]
fn files_corpus() {
    replay("files", files::check);
}

#[test]
fn seal_corpus() {
    replay("seal", seal::check);
}

/// Found by the seal target: a checkpoint text whose extension line held a
/// control character parsed as a checkpoint, and then could not be signed.
#[test]
fn seal_control_character_in_an_extension_line_is_refused() {
    seal::check(
        b"diskhist/00\n2\nMx2QF43mF7dSRxXrq6hLrgIHD8XWPTZCP42g5KiIW58=\n\x0e\xe2\x80\x94 lab J+oy\n",
    );
}

#[test]
fn time_corpus() {
    replay("time", time::check);
}

/// Crash of the `time` target: an instant in the earliest second an i64 of
/// nanoseconds holds was accepted as `@UNIX` but its RFC 3339 spelling was
/// refused as out of range (fixed in src/time.rs, see its
/// `earliest_instants_round_trip`).
#[test]
fn time_earliest_second_round_trips() {
    for input in [
        "@-9223372036.8",
        "@-9223372036.854775808",
        "1677-09-21T00-12-43.200Z",
        "1677-09-21T00:12:43.145224192Z",
    ] {
        time::check(input.as_bytes());
        assert!(diskhist::parse_time(input).is_ok(), "{input}");
    }
}

/// Crash of the `stream` target, the input as found: a header, a write of
/// 512 bytes of 0xa5, then a FLUSH whose length field is 0x25 << 40, a trim,
/// a mark and an end record. With its checksums recomputed (the target tries
/// both), the flush was accepted and its length dropped, so the accepted
/// stream re-encoded to other bytes. Fixed in src/producers/stream/reader.rs (see
/// `fields_the_format_leaves_zero_must_be_zero`): such a flush is refused.
#[test]
fn stream_flush_with_a_length_is_refused() {
    const HEAD: &str = "444853545245414d0100000000020000000001000000000000000000044b33294448\
        535201000000030000000000000077dd036b00000000000600000000000000020000\
        0000000000020000";
    const TAIL: &str = "23fc8ad94448535204000000040000000000000077dd036b00000000000000000000\
        000000000000000025000000000000de494b8a444853520300000005000000000000\
        0077dd036b000000000008000000000000000600000000000000000000c915880544\
        48535205000000060000000000000077dd036b000000000000000000000000040000\
        0000000000040000006e616d658f92d06f4448535200000000040000000000000000\
        00000000000000000000000000000000000000000000002000000034d4f579ea6319\
        945409e2066247eaf886ec84d3856aac2f2f92629abe517ce14196ec05";
    let hex = |s: &str| -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    };
    let mut input = hex(HEAD);
    input.extend_from_slice(&[0xa5; 512]);
    input.extend_from_slice(&hex(TAIL));
    assert_eq!(input.len(), 821);

    stream::check(&input);
    // With the flush's checksum made right, the flush itself is refused.
    let mut fixed = input.clone();
    let flush = 32 + 44 + 512 + 4;
    let crc = crc32c::crc32c(&fixed[flush..flush + 44]);
    fixed[flush + 44..flush + 48].copy_from_slice(&crc.to_le_bytes());
    let mut r = diskhist::producers::stream::StreamReader::new(&fixed[..]).unwrap();
    assert!(
        r.next_record().unwrap().is_some(),
        "the write is whole and valid"
    );
    let e = r.next_record().unwrap_err();
    assert!(e.to_string().contains("kind 4"), "{e}");
}
