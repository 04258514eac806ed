//! Little-endian fields at byte offsets: every on-disk and on-the-wire
//! format diskhist reads is little-endian (NBD, which is big-endian, reads
//! its own). Callers check lengths first; an offset past the end panics.

/// The `u32` at `b[at..at + 4]`.
pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// The `u64` at `b[at..at + 8]`.
pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn fields_read_little_endian_at_their_offsets() {
        let b = [0xff, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(super::u32_at(&b, 1), 1);
        assert_eq!(super::u64_at(&b, 5), 2);
    }
}
