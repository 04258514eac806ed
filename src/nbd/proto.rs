//! The NBD wire format: constants and pure encode/decode functions, no I/O.
//! Every number on the wire is big-endian (network byte order), as the
//! protocol (NetworkBlockDevice/nbd `doc/proto.md`) says once for all.
//!
//! Handshake (fixed newstyle), as this server speaks it:
//!
//! ```text
//! S: "NBDMAGIC" u64 | "IHAVEOPT" u64 | handshake flags u16 (FIXED_NEWSTYLE|NO_ZEROES)
//! C: client flags u32
//! C: "IHAVEOPT" u64 | option u32 | length u32 | data[length]      (repeated)
//! S: 0x3e889045565a9 u64 | option u32 | reply type u32 | length u32 | data[length]
//! ```
//!
//! Transmission:
//!
//! ```text
//! request  0       4       6       8               16              24      28
//!          +-------+-------+-------+---------------+---------------+-------+
//!          | magic | flags | type  | handle        | offset        |length |  then length bytes for WRITE
//!          +-------+-------+-------+---------------+---------------+-------+
//! reply    0       4       8               16
//!          +-------+-------+---------------+
//!          | magic | error | handle        |  then the data for a successful READ
//!          +-------+-------+---------------+
//! ```

/// `NBDMAGIC`, the first thing the server sends.
pub const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
/// `IHAVEOPT`: the newstyle magic, and the prefix of every option request.
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
/// Prefix of every option reply.
pub const OPT_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;

// Handshake flags (server) and client flags.
pub const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
pub const FLAG_NO_ZEROES: u16 = 1 << 1;
pub const FLAG_C_FIXED_NEWSTYLE: u32 = 1 << 0;
pub const FLAG_C_NO_ZEROES: u32 = 1 << 1;

// Transmission flags.
pub const FLAG_HAS_FLAGS: u16 = 1 << 0;
pub const FLAG_READ_ONLY: u16 = 1 << 1;
pub const FLAG_SEND_FLUSH: u16 = 1 << 2;
pub const FLAG_SEND_FUA: u16 = 1 << 3;
pub const FLAG_ROTATIONAL: u16 = 1 << 4;
pub const FLAG_SEND_TRIM: u16 = 1 << 5;
pub const FLAG_SEND_WRITE_ZEROES: u16 = 1 << 6;
pub const FLAG_SEND_DF: u16 = 1 << 7;
pub const FLAG_CAN_MULTI_CONN: u16 = 1 << 8;
pub const FLAG_SEND_RESIZE: u16 = 1 << 9;
pub const FLAG_SEND_CACHE: u16 = 1 << 10;
pub const FLAG_SEND_FAST_ZERO: u16 = 1 << 11;

// Options.
pub const OPT_EXPORT_NAME: u32 = 1;
pub const OPT_ABORT: u32 = 2;
pub const OPT_LIST: u32 = 3;
pub const OPT_STARTTLS: u32 = 5;
pub const OPT_INFO: u32 = 6;
pub const OPT_GO: u32 = 7;
pub const OPT_STRUCTURED_REPLY: u32 = 8;
pub const OPT_LIST_META_CONTEXT: u32 = 9;
pub const OPT_SET_META_CONTEXT: u32 = 10;
pub const OPT_EXTENDED_HEADERS: u32 = 11;

// Option reply types; errors have bit 31 set.
pub const REP_ACK: u32 = 1;
pub const REP_SERVER: u32 = 2;
pub const REP_INFO: u32 = 3;
const REP_ERR: u32 = 1 << 31;
pub const REP_ERR_UNSUP: u32 = REP_ERR | 1;
pub const REP_ERR_POLICY: u32 = REP_ERR | 2;
pub const REP_ERR_INVALID: u32 = REP_ERR | 3;
pub const REP_ERR_PLATFORM: u32 = REP_ERR | 4;
pub const REP_ERR_TLS_REQD: u32 = REP_ERR | 5;
pub const REP_ERR_UNKNOWN: u32 = REP_ERR | 6;
pub const REP_ERR_SHUTDOWN: u32 = REP_ERR | 7;
pub const REP_ERR_BLOCK_SIZE_REQD: u32 = REP_ERR | 8;
pub const REP_ERR_TOO_BIG: u32 = REP_ERR | 9;

// Information types in NBD_REP_INFO.
pub const INFO_EXPORT: u16 = 0;
pub const INFO_NAME: u16 = 1;
pub const INFO_DESCRIPTION: u16 = 2;
pub const INFO_BLOCK_SIZE: u16 = 3;

// Commands.
pub const CMD_READ: u16 = 0;
pub const CMD_WRITE: u16 = 1;
pub const CMD_DISC: u16 = 2;
pub const CMD_FLUSH: u16 = 3;
pub const CMD_TRIM: u16 = 4;
pub const CMD_CACHE: u16 = 5;
pub const CMD_WRITE_ZEROES: u16 = 6;
pub const CMD_BLOCK_STATUS: u16 = 7;

// Command flags.
pub const CMD_FLAG_FUA: u16 = 1 << 0;
pub const CMD_FLAG_NO_HOLE: u16 = 1 << 1;
pub const CMD_FLAG_DF: u16 = 1 << 2;
pub const CMD_FLAG_REQ_ONE: u16 = 1 << 3;
pub const CMD_FLAG_FAST_ZERO: u16 = 1 << 4;

/// Length of the server's greeting: two magics and the handshake flags.
pub const GREETING_LEN: usize = 8 + 8 + 2;
/// Length of an option request header: magic, option, data length.
pub const OPTION_HEADER_LEN: usize = 8 + 4 + 4;
/// Length of an option reply header: magic, option, reply type, data length.
pub const OPTION_REPLY_HEADER_LEN: usize = 8 + 4 + 4 + 4;
/// The reserved zeroes after an `NBD_OPT_EXPORT_NAME` reply, unless the
/// client negotiated `NBD_FLAG_C_NO_ZEROES`.
pub const EXPORT_NAME_ZEROES: usize = 124;
/// Length of a request header (the WRITE payload follows it).
pub const REQUEST_LEN: usize = 4 + 2 + 2 + 8 + 8 + 4;
/// Length of a simple reply header (the READ payload follows it).
pub const SIMPLE_REPLY_LEN: usize = 4 + 4 + 8;
/// Longest string the protocol allows (export names, messages).
pub const MAX_STRING_LEN: usize = 4096;

/// Error values of the reply's error field. The protocol fixes these
/// numbers (they happen to be Linux errno values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum NbdErrno {
    Perm = 1,
    Io = 5,
    NoMem = 12,
    Inval = 22,
    NoSpc = 28,
    Overflow = 75,
    NotSup = 95,
    Shutdown = 108,
}

fn be_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn be_u64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The server's first message.
pub fn encode_greeting(handshake_flags: u16) -> [u8; GREETING_LEN] {
    let mut b = [0u8; GREETING_LEN];
    b[0..8].copy_from_slice(&NBDMAGIC.to_be_bytes());
    b[8..16].copy_from_slice(&IHAVEOPT.to_be_bytes());
    b[16..18].copy_from_slice(&handshake_flags.to_be_bytes());
    b
}

/// An option request's header; `length` bytes of data follow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionHeader {
    pub option: u32,
    pub length: u32,
}

/// Why bytes are not what the protocol allows at this point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("option request does not start with IHAVEOPT (got {0:#018x})")]
    OptionMagic(u64),
    #[error("request does not start with the NBD request magic (got {0:#010x})")]
    RequestMagic(u32),
    #[error("need {need} bytes, have {have}")]
    Short { need: usize, have: usize },
}

pub fn decode_option_header(b: &[u8; OPTION_HEADER_LEN]) -> Result<OptionHeader, WireError> {
    let magic = be_u64(b, 0);
    if magic != IHAVEOPT {
        return Err(WireError::OptionMagic(magic));
    }
    Ok(OptionHeader {
        option: be_u32(b, 8),
        length: be_u32(b, 12),
    })
}

/// Append one option reply (header and data) to `out`.
pub fn encode_option_reply(out: &mut Vec<u8>, option: u32, reply_type: u32, data: &[u8]) {
    out.extend_from_slice(&OPT_REPLY_MAGIC.to_be_bytes());
    out.extend_from_slice(&option.to_be_bytes());
    out.extend_from_slice(&reply_type.to_be_bytes());
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
}

/// Data of an `NBD_REP_SERVER` reply: the name, then a description for humans.
pub fn encode_rep_server(name: &str, description: &str) -> Vec<u8> {
    let mut d = Vec::with_capacity(4 + name.len() + description.len());
    d.extend_from_slice(&(name.len() as u32).to_be_bytes());
    d.extend_from_slice(name.as_bytes());
    d.extend_from_slice(description.as_bytes());
    d
}

/// Data of an `NBD_REP_INFO` reply of type `NBD_INFO_EXPORT`.
pub fn encode_info_export(size_bytes: u64, transmission_flags: u16) -> [u8; 12] {
    let mut d = [0u8; 12];
    d[0..2].copy_from_slice(&INFO_EXPORT.to_be_bytes());
    d[2..10].copy_from_slice(&size_bytes.to_be_bytes());
    d[10..12].copy_from_slice(&transmission_flags.to_be_bytes());
    d
}

/// Data of an `NBD_REP_INFO` reply of type `NBD_INFO_BLOCK_SIZE`.
pub fn encode_info_block_size(sizes: BlockSizes) -> [u8; 14] {
    let mut d = [0u8; 14];
    d[0..2].copy_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
    d[2..6].copy_from_slice(&sizes.minimum.to_be_bytes());
    d[6..10].copy_from_slice(&sizes.preferred.to_be_bytes());
    d[10..14].copy_from_slice(&sizes.maximum.to_be_bytes());
    d
}

/// Data of an `NBD_REP_INFO` reply carrying a string (`NBD_INFO_NAME`,
/// `NBD_INFO_DESCRIPTION`).
pub fn encode_info_string(info_type: u16, s: &str) -> Vec<u8> {
    let mut d = Vec::with_capacity(2 + s.len());
    d.extend_from_slice(&info_type.to_be_bytes());
    d.extend_from_slice(s.as_bytes());
    d
}

/// The reply to `NBD_OPT_EXPORT_NAME`: size, transmission flags, and the
/// 124 reserved zeroes unless the client asked to leave them out.
pub fn encode_export_name_reply(size_bytes: u64, transmission_flags: u16, zeroes: bool) -> Vec<u8> {
    let mut d = Vec::with_capacity(10 + EXPORT_NAME_ZEROES);
    d.extend_from_slice(&size_bytes.to_be_bytes());
    d.extend_from_slice(&transmission_flags.to_be_bytes());
    if zeroes {
        d.resize(d.len() + EXPORT_NAME_ZEROES, 0);
    }
    d
}

/// Block size constraints as `NBD_INFO_BLOCK_SIZE` announces them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSizes {
    pub minimum: u32,
    pub preferred: u32,
    pub maximum: u32,
}

/// The data of an `NBD_OPT_INFO` / `NBD_OPT_GO` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfoRequest<'a> {
    pub name: &'a [u8],
    pub info_types: Vec<u16>,
}

/// Why `NBD_OPT_INFO` / `NBD_OPT_GO` data is malformed (answered with
/// `NBD_REP_ERR_INVALID` and this text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InfoRequestError {
    #[error("INFO/GO data shorter than 6 bytes")]
    Short,
    #[error("export name length runs past the option data")]
    NameLength,
    #[error("number of information requests does not match the option length")]
    RequestCount,
}

/// Parse `NBD_OPT_INFO` / `NBD_OPT_GO` data: u32 name length, name,
/// u16 count, count × u16 information types. The lengths must add up
/// exactly.
pub fn parse_info_request(data: &[u8]) -> Result<InfoRequest<'_>, InfoRequestError> {
    if data.len() < 6 {
        return Err(InfoRequestError::Short);
    }
    let name_len = be_u32(data, 0) as usize;
    if name_len > data.len() - 6 {
        return Err(InfoRequestError::NameLength);
    }
    let name = &data[4..4 + name_len];
    let count_at = 4 + name_len;
    let count = usize::from(be_u16(data, count_at));
    let list = &data[count_at + 2..];
    if list.len() != 2 * count {
        return Err(InfoRequestError::RequestCount);
    }
    let info_types = list
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    Ok(InfoRequest { name, info_types })
}

/// A request header as it came off the wire (magic checked, nothing else).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    pub flags: u16,
    pub kind: u16,
    pub handle: u64,
    pub offset_bytes: u64,
    pub length_bytes: u32,
}

pub fn decode_request_header(b: &[u8; REQUEST_LEN]) -> Result<RequestHeader, WireError> {
    let magic = be_u32(b, 0);
    if magic != REQUEST_MAGIC {
        return Err(WireError::RequestMagic(magic));
    }
    Ok(RequestHeader {
        flags: be_u16(b, 4),
        kind: be_u16(b, 6),
        handle: be_u64(b, 8),
        offset_bytes: be_u64(b, 16),
        length_bytes: be_u32(b, 24),
    })
}

pub fn encode_request_header(h: &RequestHeader) -> [u8; REQUEST_LEN] {
    let mut b = [0u8; REQUEST_LEN];
    b[0..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
    b[4..6].copy_from_slice(&h.flags.to_be_bytes());
    b[6..8].copy_from_slice(&h.kind.to_be_bytes());
    b[8..16].copy_from_slice(&h.handle.to_be_bytes());
    b[16..24].copy_from_slice(&h.offset_bytes.to_be_bytes());
    b[24..28].copy_from_slice(&h.length_bytes.to_be_bytes());
    b
}

pub fn encode_simple_reply(error: u32, handle: u64) -> [u8; SIMPLE_REPLY_LEN] {
    let mut b = [0u8; SIMPLE_REPLY_LEN];
    b[0..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    b[4..8].copy_from_slice(&error.to_be_bytes());
    b[8..16].copy_from_slice(&handle.to_be_bytes());
    b
}

/// What the export is and what the server will accept in one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    pub size_bytes: u64,
    /// Largest READ or WRITE payload; also advertised as the maximum block size.
    pub max_payload_bytes: u32,
}

/// A request that passed every check: in range, known, with allowed flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Read {
        offset_bytes: u64,
        length_bytes: u32,
    },
    /// `length_bytes` of payload follow the header.
    Write {
        offset_bytes: u64,
        length_bytes: u32,
        fua: bool,
    },
    Flush,
    Trim {
        offset_bytes: u64,
        length_bytes: u32,
        fua: bool,
    },
    WriteZeroes {
        offset_bytes: u64,
        length_bytes: u32,
        fua: bool,
        no_hole: bool,
    },
    Disc,
}

/// A request the server answers with an error. For a WRITE the payload
/// still follows the header and must be read past (`skip_bytes`) to stay
/// in step with the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    pub errno: NbdErrno,
    pub skip_bytes: u32,
    pub reason: &'static str,
}

/// Check a request against the limits. Errors follow the protocol:
/// EINVAL for unknown commands and flags, for reads and trims past the end
/// and for payloads over the maximum; ENOSPC for writes past the end.
pub fn classify(h: &RequestHeader, limits: &RequestLimits) -> Result<Command, Rejection> {
    let payload = if h.kind == CMD_WRITE {
        h.length_bytes
    } else {
        0
    };
    let reject = |errno, reason| {
        Err(Rejection {
            errno,
            skip_bytes: payload,
            reason,
        })
    };
    // FUA is valid on every command (clients are known to set it on any).
    let allowed = match h.kind {
        CMD_WRITE_ZEROES => CMD_FLAG_FUA | CMD_FLAG_NO_HOLE,
        CMD_READ | CMD_WRITE | CMD_FLUSH | CMD_TRIM | CMD_DISC => CMD_FLAG_FUA,
        CMD_CACHE | CMD_BLOCK_STATUS => {
            return reject(NbdErrno::Inval, "command not supported by this server")
        }
        _ => return reject(NbdErrno::Inval, "unknown command"),
    };
    if h.flags & !allowed != 0 {
        return reject(NbdErrno::Inval, "command flag not valid for this command");
    }
    let fua = h.flags & CMD_FLAG_FUA != 0;
    let in_range = h
        .offset_bytes
        .checked_add(u64::from(h.length_bytes))
        .is_some_and(|end| end <= limits.size_bytes);
    let (offset_bytes, length_bytes) = (h.offset_bytes, h.length_bytes);
    match h.kind {
        CMD_READ => {
            if length_bytes > limits.max_payload_bytes {
                return reject(NbdErrno::Inval, "read longer than the maximum block size");
            }
            if !in_range {
                return reject(NbdErrno::Inval, "read past the end of the export");
            }
            Ok(Command::Read {
                offset_bytes,
                length_bytes,
            })
        }
        CMD_WRITE => {
            if length_bytes > limits.max_payload_bytes {
                return reject(NbdErrno::Inval, "write longer than the maximum block size");
            }
            if !in_range {
                return reject(NbdErrno::NoSpc, "write past the end of the export");
            }
            Ok(Command::Write {
                offset_bytes,
                length_bytes,
                fua,
            })
        }
        CMD_TRIM => {
            if !in_range {
                return reject(NbdErrno::Inval, "trim past the end of the export");
            }
            Ok(Command::Trim {
                offset_bytes,
                length_bytes,
                fua,
            })
        }
        CMD_WRITE_ZEROES => {
            if !in_range {
                return reject(NbdErrno::NoSpc, "write zeroes past the end of the export");
            }
            let no_hole = h.flags & CMD_FLAG_NO_HOLE != 0;
            Ok(Command::WriteZeroes {
                offset_bytes,
                length_bytes,
                fua,
                no_hole,
            })
        }
        // Offset and length of FLUSH and DISC are reserved (zero); a client
        // that sets them anyway still gets its flush or disconnect.
        CMD_FLUSH => Ok(Command::Flush),
        _ => Ok(Command::Disc),
    }
}

/// Parse one request from the start of `bytes`: the entry point for a fuzz
/// target. `Ok((command, used))` says how many bytes the request took,
/// payload included; an `Err(Ok(rejection))` is answered with an error reply,
/// an `Err(Err(wire))` ends the connection (bad magic) or needs more bytes.
#[allow(clippy::type_complexity)]
pub fn parse_request(
    bytes: &[u8],
    limits: &RequestLimits,
) -> Result<(Command, usize), Result<Rejection, WireError>> {
    let head: &[u8; REQUEST_LEN] = bytes
        .get(..REQUEST_LEN)
        .and_then(|b| b.try_into().ok())
        .ok_or(Err(WireError::Short {
            need: REQUEST_LEN,
            have: bytes.len(),
        }))?;
    let h = decode_request_header(head).map_err(Err)?;
    let cmd = classify(&h, limits).map_err(Ok)?;
    let used = REQUEST_LEN
        + if let Command::Write { length_bytes, .. } = cmd {
            length_bytes as usize
        } else {
            0
        };
    if bytes.len() < used {
        return Err(Err(WireError::Short {
            need: used,
            have: bytes.len(),
        }));
    }
    Ok((cmd, used))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: RequestLimits = RequestLimits {
        size_bytes: 1 << 20,
        max_payload_bytes: 32 << 20,
    };

    fn req(kind: u16, flags: u16, offset_bytes: u64, length_bytes: u32) -> RequestHeader {
        RequestHeader {
            flags,
            kind,
            handle: 0x1122_3344_5566_7788,
            offset_bytes,
            length_bytes,
        }
    }

    #[test]
    fn magics_spell_what_the_spec_says() {
        assert_eq!(&NBDMAGIC.to_be_bytes(), b"NBDMAGIC");
        assert_eq!(&IHAVEOPT.to_be_bytes(), b"IHAVEOPT");
        assert_eq!(REP_ERR_UNSUP, 0x8000_0001);
        assert_eq!(REP_ERR_TOO_BIG, 0x8000_0009);
        let g = encode_greeting(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES);
        assert_eq!(&g[..16], b"NBDMAGICIHAVEOPT");
        assert_eq!(&g[16..], &[0, 3]);
    }

    #[test]
    fn request_header_round_trip_and_magic() {
        let h = req(CMD_WRITE, CMD_FLAG_FUA, 4096, 512);
        let b = encode_request_header(&h);
        assert_eq!(&b[..4], &[0x25, 0x60, 0x95, 0x13]);
        assert_eq!(decode_request_header(&b), Ok(h));
        let mut bad = b;
        bad[0] = 0;
        assert_eq!(
            decode_request_header(&bad),
            Err(WireError::RequestMagic(0x0060_9513))
        );
    }

    #[test]
    fn simple_reply_layout() {
        let r = encode_simple_reply(NbdErrno::Inval as u32, 7);
        assert_eq!(
            r,
            [0x67, 0x44, 0x66, 0x98, 0, 0, 0, 22, 0, 0, 0, 0, 0, 0, 0, 7]
        );
    }

    #[test]
    fn classify_bounds_and_errors() {
        let ok = |h| classify(&h, &LIMITS);
        assert_eq!(
            ok(req(CMD_READ, 0, 0, 4096)),
            Ok(Command::Read {
                offset_bytes: 0,
                length_bytes: 4096
            })
        );
        // Exactly up to the end is fine; one byte more is not.
        assert!(ok(req(CMD_READ, 0, (1 << 20) - 512, 512)).is_ok());
        let e = ok(req(CMD_READ, 0, (1 << 20) - 512, 513)).unwrap_err();
        assert_eq!((e.errno, e.skip_bytes), (NbdErrno::Inval, 0));
        let e = ok(req(CMD_WRITE, 0, 1 << 20, 512)).unwrap_err();
        assert_eq!((e.errno, e.skip_bytes), (NbdErrno::NoSpc, 512));
        let e = ok(req(CMD_WRITE_ZEROES, 0, u64::MAX, 1)).unwrap_err();
        assert_eq!(e.errno, NbdErrno::NoSpc);
        let e = ok(req(CMD_TRIM, 0, u64::MAX - 10, 100)).unwrap_err();
        assert_eq!(e.errno, NbdErrno::Inval);
        // Over the maximum payload, even inside a (huge) export.
        let big = RequestLimits {
            size_bytes: u64::MAX,
            max_payload_bytes: 32 << 20,
        };
        let e = classify(&req(CMD_WRITE, 0, 0, (32 << 20) + 1), &big).unwrap_err();
        assert_eq!((e.errno, e.skip_bytes), (NbdErrno::Inval, (32 << 20) + 1));
        let e = classify(&req(CMD_READ, 0, 0, u32::MAX), &big).unwrap_err();
        assert_eq!(e.errno, NbdErrno::Inval);
        // Trim and zeroes carry no payload, so no maximum applies.
        assert!(classify(&req(CMD_TRIM, 0, 0, u32::MAX), &big).is_ok());
    }

    #[test]
    fn classify_commands_and_flags() {
        let c = |kind, flags| classify(&req(kind, flags, 0, 512), &LIMITS);
        assert_eq!(
            c(CMD_WRITE_ZEROES, CMD_FLAG_NO_HOLE | CMD_FLAG_FUA),
            Ok(Command::WriteZeroes {
                offset_bytes: 0,
                length_bytes: 512,
                fua: true,
                no_hole: true
            })
        );
        assert_eq!(
            c(CMD_WRITE_ZEROES, CMD_FLAG_FAST_ZERO).unwrap_err().errno,
            NbdErrno::Inval
        );
        assert_eq!(c(CMD_WRITE, CMD_FLAG_NO_HOLE).unwrap_err().skip_bytes, 512);
        assert_eq!(c(CMD_READ, CMD_FLAG_DF).unwrap_err().errno, NbdErrno::Inval);
        assert_eq!(
            c(CMD_READ, CMD_FLAG_FUA),
            Ok(Command::Read {
                offset_bytes: 0,
                length_bytes: 512
            })
        );
        assert_eq!(c(CMD_BLOCK_STATUS, 0).unwrap_err().errno, NbdErrno::Inval);
        assert_eq!(c(CMD_CACHE, 0).unwrap_err().errno, NbdErrno::Inval);
        assert_eq!(c(99, 0).unwrap_err().reason, "unknown command");
        assert_eq!(c(CMD_FLUSH, 0), Ok(Command::Flush));
        assert_eq!(c(CMD_DISC, 0), Ok(Command::Disc));
        assert_eq!(c(CMD_READ, 1 << 15).unwrap_err().errno, NbdErrno::Inval);
    }

    #[test]
    fn info_request_parsing() {
        let mut d = Vec::new();
        d.extend_from_slice(&3u32.to_be_bytes());
        d.extend_from_slice(b"abc");
        d.extend_from_slice(&2u16.to_be_bytes());
        d.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
        d.extend_from_slice(&INFO_NAME.to_be_bytes());
        let r = parse_info_request(&d).unwrap();
        assert_eq!(r.name, b"abc");
        assert_eq!(r.info_types, vec![INFO_BLOCK_SIZE, INFO_NAME]);
        assert!(parse_info_request(&d[..d.len() - 1]).is_err());
        let mut longer = d.clone();
        longer.push(0);
        assert!(parse_info_request(&longer).is_err());
        let mut lying = d.clone();
        lying[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(parse_info_request(&lying).is_err());
        assert!(parse_info_request(&[0, 0, 0, 0, 0]).is_err());
        assert_eq!(
            parse_info_request(&[0, 0, 0, 0, 0, 0]).unwrap(),
            InfoRequest {
                name: b"",
                info_types: vec![]
            }
        );
    }

    #[test]
    fn parse_request_needs_the_whole_payload() {
        let mut b = encode_request_header(&req(CMD_WRITE, 0, 0, 4)).to_vec();
        assert!(matches!(
            parse_request(&b, &LIMITS),
            Err(Err(WireError::Short { need: 32, .. }))
        ));
        b.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(
            parse_request(&b, &LIMITS),
            Ok((
                Command::Write {
                    offset_bytes: 0,
                    length_bytes: 4,
                    fua: false
                },
                32
            ))
        );
        assert!(matches!(
            parse_request(&b[..3], &LIMITS),
            Err(Err(WireError::Short { .. }))
        ));
    }

    #[test]
    fn option_replies_encode() {
        let mut out = Vec::new();
        encode_option_reply(
            &mut out,
            OPT_GO,
            REP_INFO,
            &encode_info_export(1 << 30, 0x10d),
        );
        assert_eq!(out.len(), OPTION_REPLY_HEADER_LEN + 12);
        assert_eq!(&out[..8], &OPT_REPLY_MAGIC.to_be_bytes());
        assert_eq!(&out[8..12], &[0, 0, 0, 7]);
        assert_eq!(&out[12..16], &[0, 0, 0, 3]);
        assert_eq!(&out[16..20], &[0, 0, 0, 12]);
        assert_eq!(&out[20..22], &[0, 0]);
        assert_eq!(&out[30..32], &[0x01, 0x0d]);
        let bs = encode_info_block_size(BlockSizes {
            minimum: 1,
            preferred: 4096,
            maximum: 1 << 25,
        });
        assert_eq!(bs, [0, 3, 0, 0, 0, 1, 0, 0, 0x10, 0, 0x02, 0, 0, 0]);
        assert_eq!(encode_export_name_reply(5, 1, true).len(), 134);
        assert_eq!(encode_export_name_reply(5, 1, false).len(), 10);
        let s = encode_rep_server("x", "desc");
        assert_eq!(s, [0, 0, 0, 1, b'x', b'd', b'e', b's', b'c']);
    }
}
