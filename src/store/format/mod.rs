//! On-disk layout of the store: the header (here) and log records
//! ([`record`]). Little-endian everywhere.
//!
//! # Header (`diskhist.store`, written once by `init`)
//!
//! ```text
//!  0        8       12       16               24               32
//!  +--------+--------+--------+----------------+----------------+
//!  | magic "DISKHIST"| version| block_size     | size_bytes     |
//!  +--------+--------+--------+----------------+----------------+
//!  32               40                       56          60     64
//!  +----------------+------------------------+-----------+------+
//!  | created_ns     | store_id (16 bytes)    | reserved  |crc32c|
//!  +----------------+------------------------+-----------+------+
//! ```

pub mod record;

pub use record::*;

use crate::le::{u32_at, u64_at};
use crate::units::TimeNs;

pub const HEADER_MAGIC: &[u8; 8] = b"DISKHIST";
/// The version new stores get: 2, compact records (see [`record`]).
/// Stores of version 1 are still read and written in their own format.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest version this release reads.
pub const OLDEST_FORMAT_VERSION: u32 = 1;
pub const HEADER_LEN: usize = 64;
const H_VERSION: usize = 8;
const H_BLOCK_SIZE: usize = H_VERSION + 4;
const H_SIZE: usize = H_BLOCK_SIZE + 4;
const H_CREATED: usize = H_SIZE + 8;
const H_STORE_ID: usize = H_CREATED + 8;
const H_CRC: usize = HEADER_LEN - 4;

pub const MIN_BLOCK_SIZE: u32 = 512;
pub const MAX_BLOCK_SIZE: u32 = 65536;

/// The store's fixed description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreHeader {
    /// The log's record format: the header's version field.
    pub format: LogFormat,
    pub block_size: u32,
    pub size_bytes: u64,
    pub created_ns: TimeNs,
    pub store_id: [u8; 16],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderFault {
    NotAStore,
    /// `checksum_ok` false: the version field may itself be damage.
    Version {
        found: u32,
        checksum_ok: bool,
    },
    Corrupt(&'static str),
}

pub fn encode_header(h: &StoreHeader) -> [u8; HEADER_LEN] {
    let mut b = [0u8; HEADER_LEN];
    b[..8].copy_from_slice(HEADER_MAGIC);
    b[H_VERSION..H_VERSION + 4].copy_from_slice(&h.format.version().to_le_bytes());
    b[H_BLOCK_SIZE..H_BLOCK_SIZE + 4].copy_from_slice(&h.block_size.to_le_bytes());
    b[H_SIZE..H_SIZE + 8].copy_from_slice(&h.size_bytes.to_le_bytes());
    b[H_CREATED..H_CREATED + 8].copy_from_slice(&h.created_ns.0.to_le_bytes());
    b[H_STORE_ID..H_STORE_ID + 16].copy_from_slice(&h.store_id);
    let crc = crc32c::crc32c(&b[..H_CRC]);
    b[H_CRC..].copy_from_slice(&crc.to_le_bytes());
    b
}

pub fn decode_header(b: &[u8]) -> Result<StoreHeader, HeaderFault> {
    // A damaged magic or version byte is damage, not another kind of file;
    // a version this release does not know may be either (a later format
    // need not keep this checksum), so the fault says which it looks like.
    let crc_ok = b.len() == HEADER_LEN && crc32c::crc32c(&b[..H_CRC]) == u32_at(b, H_CRC);
    if b.len() < HEADER_LEN || &b[..8] != HEADER_MAGIC {
        // A magic off by a byte or two in a file of the header's length is
        // a damaged header rather than some other file.
        let magic_off = b.iter().zip(HEADER_MAGIC).filter(|(x, y)| x != y).count();
        return Err(if b.len() == HEADER_LEN && !crc_ok && magic_off <= 2 {
            HeaderFault::Corrupt("bad magic and checksum (the header was damaged or edited)")
        } else {
            HeaderFault::NotAStore
        });
    }
    let version = u32_at(b, H_VERSION);
    let Some(format) = LogFormat::of_version(version) else {
        return Err(HeaderFault::Version {
            found: version,
            checksum_ok: crc_ok,
        });
    };
    if b.len() != HEADER_LEN {
        return Err(HeaderFault::Corrupt("header file has the wrong length"));
    }
    if !crc_ok {
        return Err(HeaderFault::Corrupt(
            "header checksum mismatch (the header was damaged or edited)",
        ));
    }
    let h = StoreHeader {
        format,
        block_size: u32_at(b, H_BLOCK_SIZE),
        size_bytes: u64_at(b, H_SIZE),
        created_ns: TimeNs(u64_at(b, H_CREATED) as i64),
        store_id: b[H_STORE_ID..H_STORE_ID + 16].try_into().unwrap(),
    };
    if !valid_block_size(h.block_size) || h.size_bytes % u64::from(h.block_size) != 0 {
        return Err(HeaderFault::Corrupt("impossible geometry in header"));
    }
    Ok(h)
}

pub fn valid_block_size(bs: u32) -> bool {
    bs.is_power_of_two() && (MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&bs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_version() {
        let h = StoreHeader {
            format: LogFormat::V2,
            block_size: 4096,
            size_bytes: 1 << 30,
            created_ns: TimeNs(1),
            store_id: [1; 16],
        };
        let mut b = encode_header(&h);
        assert_eq!(decode_header(&b), Ok(h));
        for i in 0..HEADER_LEN {
            let mut bad = b;
            bad[i] ^= 0x01;
            let fault = decode_header(&bad).unwrap_err();
            assert!(
                matches!(
                    fault,
                    HeaderFault::Corrupt(_)
                        | HeaderFault::Version {
                            checksum_ok: false,
                            ..
                        }
                ),
                "flip at {i} not reported as damage: {fault:?}"
            );
        }
        // The version names the record format; a later one with a valid
        // checksum is another version.
        let v1 = StoreHeader {
            format: LogFormat::V1,
            ..h
        };
        assert_eq!(decode_header(&encode_header(&v1)), Ok(v1));
        b[H_VERSION] = 3;
        let crc = crc32c::crc32c(&b[..H_CRC]);
        b[H_CRC..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            decode_header(&b),
            Err(HeaderFault::Version {
                found: 3,
                checksum_ok: true
            })
        );
    }
}
