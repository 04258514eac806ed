//! Property: whatever sequence of writes (partial blocks, zeros, trims,
//! repeated content, times that step back) goes into a store, the disk it
//! presents at any time equals an in-memory reference replaying the same
//! operations.

use diskhist::store::{Op, OpFlags, Store, Writer, WriterOptions};
use diskhist::TimeNs;
use diskhist::TimeSpec;
use proptest::prelude::*;

const BS: u32 = 512;
const BLOCKS: u64 = 48;
const SIZE: u64 = BS as u64 * BLOCKS;

#[derive(Debug, Clone)]
enum TestOp {
    Write {
        offset: u64,
        len: usize,
        fill: Fill,
    },
    Zero {
        offset: u64,
        len: u64,
    },
    Trim {
        offset: u64,
        len: u64,
    },
    Flush,
    Mark(String),
    /// Close the writer and open it again (index flush, compaction, tail scan).
    Reopen,
}

#[derive(Debug, Clone)]
enum Fill {
    /// Bytes from a seed: distinct content.
    Random(u64),
    /// One repeated byte: content that recurs (dedup) or zeros.
    Byte(u8),
}

fn range() -> impl Strategy<Value = (u64, u64)> {
    (0..SIZE).prop_flat_map(|o| (Just(o), 0..=(SIZE - o).min(4 * BS as u64)))
}

fn op() -> impl Strategy<Value = TestOp> {
    prop_oneof![
        6 => range().prop_flat_map(|(o, l)| (Just(o), Just(l as usize), prop_oneof![
            any::<u64>().prop_map(Fill::Random),
            prop_oneof![Just(0u8), Just(0xAA), Just(7)].prop_map(Fill::Byte),
        ])).prop_map(|(offset, len, fill)| TestOp::Write { offset, len, fill }),
        2 => range().prop_map(|(offset, len)| TestOp::Zero { offset, len }),
        2 => range().prop_map(|(offset, len)| TestOp::Trim { offset, len }),
        1 => Just(TestOp::Flush),
        1 => "[a-z=0-9]{0,12}".prop_map(TestOp::Mark),
        1 => Just(TestOp::Reopen),
    ]
}

fn bytes(fill: &Fill, len: usize) -> Vec<u8> {
    match fill {
        Fill::Byte(b) => vec![*b; len],
        Fill::Random(seed) => {
            let mut x = *seed | 1;
            (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn states_equal_the_reference(
        ops in prop::collection::vec((op(), -3i64..40), 1..60),
        probes in prop::collection::vec(0i64..2500, 1..12),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("s");
        Writer::init(&store, SIZE, BS).unwrap();
        let opts = WriterOptions { flush_threshold: 16 };
        let mut w = Writer::open_with(&store, opts).unwrap();
        let mut disk = vec![0u8; SIZE as usize];
        // (time of record, disk after it)
        let mut states: Vec<(TimeNs, Vec<u8>)> = Vec::new();
        let mut clock = 1_000i64;
        for (o, dt) in &ops {
            clock += dt;
            let t = TimeNs(clock);
            let appended = match o {
                TestOp::Reopen => {
                    w.close().unwrap();
                    w = Writer::open_with(&store, opts).unwrap();
                    continue;
                }
                TestOp::Write { offset, len, fill } => {
                    let data = bytes(fill, *len);
                    disk[*offset as usize..*offset as usize + len].copy_from_slice(&data);
                    w.append(t, Op::Write { offset_bytes: *offset, data: &data }, OpFlags::default()).unwrap()
                }
                TestOp::Zero { offset, len } | TestOp::Trim { offset, len } => {
                    disk[*offset as usize..(*offset + *len) as usize].fill(0);
                    let op = if matches!(o, TestOp::Zero { .. }) {
                        Op::Zero { offset_bytes: *offset, length_bytes: *len }
                    } else {
                        Op::Trim { offset_bytes: *offset, length_bytes: *len }
                    };
                    w.append(t, op, OpFlags::default()).unwrap()
                }
                TestOp::Flush => w.append(t, Op::Flush, OpFlags::FUA).unwrap(),
                TestOp::Mark(name) => w.append(t, Op::Mark { name }, OpFlags::default()).unwrap(),
            };
            // Times never decrease: a step back is held at the last time.
            if let Some((last, _)) = states.last() {
                prop_assert!(appended.time_ns >= *last);
            }
            prop_assert_eq!(appended.seq.0, states.len() as u64 + 1);
            states.push((appended.time_ns, disk.clone()));
        }
        // The writer's own view of the latest state.
        let mut latest = vec![0u8; SIZE as usize];
        w.read_at(0, &mut latest).unwrap();
        prop_assert!(latest == disk, "the writer's latest state differs from the reference");
        // A reader opened while the writer is still open (live tail), then after close.
        let live = Store::open(&store).unwrap();
        w.close().unwrap();
        let closed = Store::open(&store).unwrap();
        for reader in [&live, &closed] {
            for p in &probes {
                let t = TimeNs(1_000 + p);
                let seq = reader.resolve(TimeSpec::At(t)).unwrap();
                let expect = states.iter().rev().find(|(st, _)| *st <= t).map(|(_, d)| d.clone())
                    .unwrap_or_else(|| vec![0u8; SIZE as usize]);
                let mut got = vec![0u8; SIZE as usize];
                reader.read_at(seq, 0, &mut got).unwrap();
                prop_assert!(got == expect, "state at time {} (seq {}) differs from the reference at byte {:?}",
                    t.0, seq.0, got.iter().zip(&expect).position(|(a, b)| a != b));
            }
            // Every state by sequence number, at an unaligned offset too.
            for (i, (_, d)) in states.iter().enumerate() {
                let mut got = vec![0u8; 1000];
                reader.read_at(diskhist::Seq(i as u64 + 1), 333, &mut got).unwrap();
                prop_assert!(got[..] == d[333..1333], "state #{} differs from the reference", i + 1);
            }
        }
        let report = diskhist::store::verify::verify(&store).unwrap();
        prop_assert!(report.ok(), "verify: {:?}", report);
        prop_assert_eq!(report.records, states.len() as u64);
    }
}
