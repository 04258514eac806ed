//! `diskhist serve` with many requests in flight: replies come back as
//! they are ready, not in the order sent (NBD allows it; each answers its
//! handle); a connection's writes are still applied in the order sent,
//! reads see every write applied before them, and one fdatasync covers
//! every FLUSH and FUA write waiting when it starts, across connections.
//! (Killing serve with many requests in flight: tests/crash.rs.)

use diskhist_test_common::nbd::{Batch, Client};
use diskhist_test_common::{export_at, incompressible, init_store, verify_ok, Served, MIB};
use std::collections::HashMap;
use std::time::Duration;

const BLOCK: usize = 4096;
const READ: u64 = 1 << 63;
const FLUSH: u64 = 1 << 62;
const FUA: u64 = 1 << 61;

/// The numbers in serve's last line about group commit: (fdatasyncs,
/// requests that waited to be durable).
fn group_commit(stderr: &str) -> (u64, u64) {
    let line = stderr
        .lines()
        .find(|l| l.contains("group commit: "))
        .unwrap_or_else(|| panic!("no group commit line:\n{stderr}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "commit:").unwrap();
    (
        words[at + 1].parse().unwrap(),
        words[at + 4].parse().unwrap(),
    )
}

#[test]
fn replies_come_back_out_of_order_and_reads_see_the_writes_before_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = init_store(dir.path(), "8M");
    let s = Served::start(&store, &dir.path().join("nbd.sock"), &[]);
    let blocks = 8 * MIB / BLOCK;
    let client = Client::connect(&s.socket);
    let (mut tx, mut rx) = client.split();

    // Rounds of: a FUA write, a FLUSH, then plain writes and reads, all in
    // one send. The plain writes' replies need no sync and overtake the
    // FUA write's and the flush's. Every read expects the disk as the
    // writes sent before it left it.
    let mut disk = vec![0u8; 8 * MIB];
    let mut expect: HashMap<u64, Vec<u8>> = HashMap::new();
    let mut sent = Vec::new();
    let mut batch = Batch::default();
    let mut batches = Vec::new();
    let mut n = 0u64;
    for round in 0..30u64 {
        for k in 0..40u64 {
            n += 1;
            let b = ((round * 7919 + k * 104_729) as usize) % blocks;
            let off = b * BLOCK;
            match k {
                0 | 1 => {
                    let data = incompressible(BLOCK, n);
                    disk[off..off + BLOCK].copy_from_slice(&data);
                    let h = n | if k == 0 { FUA } else { 0 };
                    batch.write(h, off as u64, &data, k == 0);
                    sent.push(h);
                    if k == 1 {
                        n += 1;
                        batch.flush(n | FLUSH);
                        sent.push(n | FLUSH);
                    }
                }
                _ if k % 3 == 0 => {
                    expect.insert(n | READ, disk[off..off + BLOCK].to_vec());
                    batch.read(n | READ, off as u64, BLOCK as u32);
                    sent.push(n | READ);
                }
                _ => {
                    let data = incompressible(BLOCK, n);
                    disk[off..off + BLOCK].copy_from_slice(&data);
                    batch.write(n, off as u64, &data, false);
                    sent.push(n);
                }
            }
        }
        batches.push(std::mem::take(&mut batch));
    }
    // Replies are read while the requests go out, as every NBD client does
    // (a client that sends without reading fills the socket both ways).
    let total = sent.len();
    let receiver = std::thread::spawn(move || {
        let mut order = Vec::new();
        for _ in 0..total {
            let (err, h) = rx.reply().expect("a reply for every request");
            assert_eq!(err, 0, "request {h:#x} failed");
            if h & READ != 0 {
                let got = rx.data(BLOCK).unwrap();
                let want = expect.get(&h).expect("a reply to a read sent once");
                assert!(
                    got == *want,
                    "read {h:#x} does not see the writes sent before it"
                );
            }
            order.push(h);
        }
        (order, rx)
    });
    for b in &batches {
        tx.send(b).unwrap();
    }
    let (order, rx) = receiver.join().unwrap();
    // Each request answered once.
    let mut answered = order.clone();
    answered.sort_unstable();
    let mut want = sent.clone();
    want.sort_unstable();
    assert_eq!(answered, want);
    // Some reply overtook the reply of a request sent before it.
    let position: HashMap<u64, usize> = sent.iter().enumerate().map(|(i, h)| (*h, i)).collect();
    let overtaken = order
        .windows(2)
        .filter(|w| position[&w[1]] < position[&w[0]])
        .count();
    assert!(
        overtaken > 0,
        "every reply came back in the order sent: no pipelining"
    );
    drop(tx);
    drop(rx);
    let (st, err) = s.stop();
    assert!(st.success(), "{err}");
    verify_ok(&store, "after the pipelined requests");
    assert!(
        export_at(&store, "latest", dir.path()) == disk,
        "the store does not hold the writes in the order sent"
    );
}

#[test]
fn a_write_acknowledged_on_one_connection_is_read_on_another() {
    let dir = tempfile::tempdir().unwrap();
    let store = init_store(dir.path(), "4M");
    let s = Served::start(&store, &dir.path().join("nbd.sock"), &[]);
    let (mut tx, mut rx) = Client::connect(&s.socket).split();
    let mut reader = Client::connect(&s.socket);
    let count = 400u64;
    let sender = std::thread::spawn(move || {
        let mut batch = Batch::default();
        for i in 0..count {
            // Each write its own block; some FUA, some followed by a flush.
            let data = incompressible(BLOCK, i + 1);
            batch.write(i + 1, i * BLOCK as u64, &data, i % 5 == 0);
            if i % 7 == 0 {
                batch.flush((i + 1) | FLUSH);
            }
            if i % 20 == 19 {
                tx.send(&batch).unwrap();
                batch.clear();
            }
        }
        tx
    });
    let mut flushes = 0;
    let mut writes = 0;
    while writes < count || flushes < count.div_ceil(7) {
        let (err, h) = rx.reply().unwrap();
        assert_eq!(err, 0, "request {h:#x} failed");
        if h & FLUSH != 0 {
            flushes += 1;
            continue;
        }
        writes += 1;
        let got = reader.read((h - 1) * BLOCK as u64, BLOCK);
        assert!(
            got == incompressible(BLOCK, h),
            "write {h} was acknowledged but another connection does not read it"
        );
    }
    drop(sender.join().unwrap());
    reader.disconnect();
    let (st, err) = s.stop();
    assert!(st.success(), "{err}");
}

#[test]
fn one_fdatasync_covers_the_flushes_of_several_connections() {
    let dir = tempfile::tempdir().unwrap();
    let store = init_store(dir.path(), "4M");
    let s = Served::start_verbose(&store, &dir.path().join("nbd.sock"), &[]);
    let (conns, rounds, flushes_per_round) = (4u64, 25u64, 4u64);
    let threads: Vec<_> = (0..conns)
        .map(|c| {
            let socket = s.socket.clone();
            std::thread::spawn(move || {
                let (mut tx, mut rx) = Client::connect(&socket).split();
                for r in 0..rounds {
                    // A write, then several flushes, in one send: one sync
                    // makes the write durable for all of them.
                    let mut batch = Batch::default();
                    let n = c * rounds + r;
                    let data = incompressible(BLOCK, n + 1);
                    batch.write(n, n * BLOCK as u64, &data, false);
                    for f in 0..flushes_per_round {
                        batch.flush(FLUSH | (n << 8) | f);
                    }
                    tx.send(&batch).unwrap();
                    for _ in 0..=flushes_per_round {
                        let (err, h) = rx.reply().unwrap();
                        assert_eq!(err, 0, "request {h:#x} failed");
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // Another flush, from a fresh connection.
    let mut c = Client::connect(&s.socket);
    assert_eq!(c.flush(), 0);
    c.disconnect();
    std::thread::sleep(Duration::from_millis(100));
    let (st, err) = s.stop();
    assert!(st.success(), "{err}");
    let (syncs, waited) = group_commit(&err);
    eprintln!("{syncs} fdatasyncs for {waited} flushes");
    assert_eq!(waited, conns * rounds * flushes_per_round + 1, "{err}");
    // Exact counts are timing's (tests in src/nbd/store_export.rs pin them
    // down with a held sync); here: flushes shared syncs.
    assert!(
        syncs < waited,
        "{syncs} fdatasyncs for {waited} flushes: no group commit\n{err}"
    );
    verify_ok(&store, "after the flushes");
}
