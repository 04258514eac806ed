//! One seeded RNG for every test's choices (offsets, sizes, delays, which
//! file to damage), the data generators built for them, and the seed a run
//! takes from its environment variable so that it can be replayed.

use std::time::{SystemTime, UNIX_EPOCH};

/// Spreads a small seed over the whole state (the golden ratio).
const SPREAD: u64 = 0x9E37_79B9_7F4A_7C15;
/// xorshift64*'s output multiplier.
const STAR: u64 = 0x2545_F491_4F6C_DD1D;

/// xorshift64*: tiny, deterministic, good enough to pick offsets and
/// delays and to fill buffers with bytes that do not compress.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// The sequence of `seed`: small seeds give unrelated sequences.
    pub fn new(seed: u64) -> Rng {
        Rng::from_state(seed.wrapping_mul(SPREAD))
    }

    /// The sequence from a whole 64-bit state, taken as is but made odd
    /// (zero is xorshift's fixed point).
    pub fn from_state(state: u64) -> Rng {
        Rng(state | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(STAR)
    }

    /// Uniform in `0..n`; 0 when `n` is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability 1/n.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// `out` filled with the next bytes of the sequence.
    pub fn fill(&mut self, out: &mut [u8]) {
        for c in out.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }

    /// The next `len` bytes of the sequence.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.fill(&mut v);
        v
    }
}

/// A run's seed: the number in environment variable `var` (decimal or
/// 0x-hex), so that a run can be replayed, else the clock.
pub fn seed_from_env(var: &str) -> u64 {
    crate::env_number(var).unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_nanos() as u64
    })
}

/// `len` bytes that do not compress, a function of `seed`: the bytes of
/// `Rng::new(seed)`.
pub fn incompressible(len: usize, seed: u64) -> Vec<u8> {
    Rng::new(seed).bytes(len)
}

/// Other bytes that do not compress, also a function of `seed`: plain
/// xorshift64 (shifts 13, 7, 17, the state itself as output) from the same
/// spread seed. What the mount and import tests have always written; the
/// same seed gives other bytes than [`incompressible`].
pub fn incompressible_xorshift64(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(SPREAD) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// `len` bytes of text that compresses, but not trivially (lz4 stores it
/// in fewer bytes): words, a path and numbers, a function of `seed`.
pub fn text_like(len: usize, seed: u64) -> Vec<u8> {
    let words = [
        "evidence ",
        "inode ",
        "journal ",
        "block ",
        "deleted ",
        "/var/log/auth.log ",
    ];
    let mut r = Rng::new(seed);
    let mut v = Vec::with_capacity(len + 32);
    while v.len() < len {
        v.extend_from_slice(words[r.below(words.len() as u64) as usize].as_bytes());
        v.extend_from_slice(format!("{} ", r.below(1000)).as_bytes());
    }
    v.truncate(len);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// tests/nbd_util's `pseudo_random`, as it was before the move here.
    fn nbd_util_pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            v.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        v.truncate(len);
        v
    }

    /// tests/mount_support's `pseudo_random`, as it was before the move.
    fn mount_support_pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.truncate(len);
        v
    }

    #[test]
    fn the_generators_write_what_the_tests_wrote_before() {
        for seed in [0, 1, 2, 7, 0xf111, 4242, u64::MAX] {
            for len in [0, 1, 7, 8, 9, 4096, 65_537] {
                assert_eq!(incompressible(len, seed), nbd_util_pseudo_random(len, seed));
                assert_eq!(
                    incompressible_xorshift64(len, seed),
                    mount_support_pseudo_random(len, seed)
                );
            }
        }
        // They are two different generators.
        assert_ne!(incompressible(64, 1), incompressible_xorshift64(64, 1));
    }

    #[test]
    fn below_zero_is_zero_and_range_is_inclusive() {
        let mut r = Rng::new(3);
        assert_eq!(r.below(0), 0);
        let seen: std::collections::BTreeSet<u64> = (0..1000).map(|_| r.range(5, 7)).collect();
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), [5, 6, 7]);
    }

    #[test]
    fn text_like_compresses_and_is_text() {
        let t = text_like(4096, 9);
        assert_eq!(t.len(), 4096);
        assert!(std::str::from_utf8(&t).is_ok());
        assert_eq!(t, text_like(4096, 9));
        assert_ne!(t, text_like(4096, 10));
    }
}
