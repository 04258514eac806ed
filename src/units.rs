//! Unit-carrying newtypes. A bare `u64` that could be blocks or bytes is a bug
//! waiting to happen, so the store's interfaces speak in these.

use std::fmt;

/// A record's sequence number, counted from 1 in arrival order.
/// `Seq(0)` names the state before any record: the all-zero disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Seq(pub u64);

/// Nanoseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TimeNs(pub i64);

/// A block number: byte offset divided by the store's block size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct BlockNo(pub u64);

/// The fixed shape of a store's disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub size_bytes: u64,
    pub block_size: u32,
}

impl Geometry {
    pub fn block_of(&self, offset_bytes: u64) -> BlockNo {
        BlockNo(offset_bytes / u64::from(self.block_size))
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A 32-byte BLAKE3 hash (chain heads, content hashes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Hash32(pub [u8; 32]);

impl Hash32 {
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }
}

impl fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Display for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Why a size given on the command line is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SizeError {
    #[error("size {input:?}: unknown suffix {suffix:?} (use K, M, G, T or P)")]
    UnknownSuffix { input: String, suffix: char },
    #[error("size {input:?} is not a number with an optional K/M/G/T suffix")]
    NotANumber { input: String },
    #[error("size {input:?} is too large")]
    TooLarge { input: String },
}

/// Parse a size with an optional binary suffix: `4096`, `64M`, `10G`, `1T`, `512K`.
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                'P' => 1 << 50,
                _ => {
                    return Err(SizeError::UnknownSuffix {
                        input: s.to_string(),
                        suffix: c,
                    })
                }
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    let n: u64 = num.parse().map_err(|_| SizeError::NotANumber {
        input: s.to_string(),
    })?;
    n.checked_mul(mult).ok_or_else(|| SizeError::TooLarge {
        input: s.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("10g"), Ok(10 << 30));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("99999999999P").is_err());
    }
}
