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

/// Append `v` as a LEB128 varint (7 bits a byte, low first).
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Bytes [`put_varint`] takes for `v`.
pub(crate) fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Read a varint from the front of `b`, advancing it; `None` if `b` ends
/// first or the value overflows 64 bits.
#[inline]
pub(crate) fn get_varint(b: &mut &[u8]) -> Option<u64> {
    // Most steps fit one byte.
    if let Some((&byte, rest)) = b.split_first() {
        if byte < 0x80 {
            *b = rest;
            return Some(u64::from(byte));
        }
    }
    let mut v = 0u64;
    for i in 0..10 {
        let (&byte, rest) = b.split_first()?;
        *b = rest;
        if i == 9 && byte > 1 {
            return None;
        }
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn fields_read_little_endian_at_their_offsets() {
        let b = [0xff, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(super::u32_at(&b, 1), 1);
        assert_eq!(super::u64_at(&b, 5), 2);
    }

    #[test]
    fn varints_round_trip_and_say_their_length() {
        for v in [0, 1, 127, 128, 16383, 16384, 1 << 35, u64::MAX] {
            let mut out = Vec::new();
            super::put_varint(&mut out, v);
            assert_eq!(out.len(), super::varint_len(v), "{v}");
            let mut b = &out[..];
            assert_eq!(super::get_varint(&mut b), Some(v));
            assert!(b.is_empty());
        }
    }
}
