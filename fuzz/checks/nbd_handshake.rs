//! The NBD handshake (`diskhist serve`, option haggling) on arbitrary bytes
//! from a client: never panics, always greets first, and every reply it
//! sends is a well-formed option reply (or the EXPORT_NAME answer that ends
//! the handshake).

use diskhist::testing::nbd::negotiate::{negotiate, ExportInfo, HandshakeLimits, Negotiated};
use diskhist::testing::nbd::proto::{self, BlockSizes};

/// Run every check of this target on one input; panics on a failure.
pub fn check(data: &[u8]) {
    let export = ExportInfo {
        name: "diskhist".into(),
        description: "fuzz".into(),
        size_bytes: 1 << 30,
        transmission_flags: proto::FLAG_HAS_FLAGS | proto::FLAG_SEND_FLUSH,
        block_sizes: BlockSizes {
            minimum: 1,
            preferred: 4096,
            maximum: 32 << 20,
        },
    };
    let limits = HandshakeLimits {
        max_option_bytes: 64 << 10,
        max_options: 64,
    };
    let mut out = Vec::new();
    let result = negotiate(&mut &data[..], &mut out, &export, &limits);
    assert_eq!(
        &out[..proto::GREETING_LEN],
        &proto::encode_greeting(proto::FLAG_FIXED_NEWSTYLE | proto::FLAG_NO_ZEROES)
    );
    // Walk the option replies that follow.
    let mut rest = &out[proto::GREETING_LEN..];
    while !rest.is_empty() {
        if rest.len() < proto::OPTION_REPLY_HEADER_LEN
            || rest[..8] != proto::OPT_REPLY_MAGIC.to_be_bytes()
        {
            // Only the EXPORT_NAME reply has no header, and it ends the handshake.
            assert!(
                matches!(result, Ok(Negotiated::Transmission)),
                "stray bytes {rest:?}"
            );
            assert!(rest.len() == 10 || rest.len() == 10 + proto::EXPORT_NAME_ZEROES);
            assert_eq!(&rest[..8], &export.size_bytes.to_be_bytes());
            break;
        }
        let len = u32::from_be_bytes(rest[16..20].try_into().unwrap()) as usize;
        assert!(
            rest.len() >= proto::OPTION_REPLY_HEADER_LEN + len,
            "reply longer than sent"
        );
        rest = &rest[proto::OPTION_REPLY_HEADER_LEN + len..];
    }
}
