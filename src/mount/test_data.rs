//! Data for the mount's unit tests.

/// `len` bytes that lz4 cannot shrink (xorshift), so a record stores them
/// raw and damaging one byte of the log damages exactly that byte.
pub fn incompressible(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| crate::testing::xorshift64(&mut x) as u8)
        .collect()
}
