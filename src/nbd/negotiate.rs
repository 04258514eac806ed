//! The handshake phase: greeting, client flags, and option haggling in fixed
//! newstyle, up to the point where the client enters transmission (with
//! `NBD_OPT_GO` or `NBD_OPT_EXPORT_NAME`) or leaves (`NBD_OPT_ABORT`).
//!
//! The server has exactly one export; it answers to the empty name and to
//! [`ExportInfo::name`]. Options it does not implement (structured replies,
//! metadata contexts, extended headers, STARTTLS, anything unknown) get
//! `NBD_REP_ERR_UNSUP` with a message, so the client falls back to simple
//! replies. A client that breaks a MUST of the protocol (unknown client
//! flags, a wrong magic, absurd option lengths, endless options) is
//! disconnected; the caller bounds the time with socket read timeouts.

use std::io::{self, Read, Write};

use super::proto::{self, BlockSizes, WireError};

/// What the handshake tells a client about the one export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportInfo {
    /// The export's name; the empty name selects it too.
    pub name: String,
    /// Shown by `nbdinfo --list` and similar.
    pub description: String,
    pub size_bytes: u64,
    pub transmission_flags: u16,
    pub block_sizes: BlockSizes,
}

/// Bounds on what a client may send before transmission starts.
#[derive(Debug, Clone, Copy)]
pub struct HandshakeLimits {
    /// Longest option data accepted; longer is treated as a denial of
    /// service and disconnected (the longest legitimate option, GO with a
    /// 4096-byte name and a few info requests, is far below this).
    pub max_option_bytes: u32,
    /// Most options in one handshake.
    pub max_options: u32,
}

impl Default for HandshakeLimits {
    fn default() -> Self {
        HandshakeLimits {
            max_option_bytes: 64 << 10,
            max_options: 512,
        }
    }
}

/// How the handshake ended, when it ended as the protocol allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Negotiated {
    /// Transmission starts now.
    Transmission,
    /// The client sent `NBD_OPT_ABORT` (or left between options).
    Aborted,
}

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("connection failed during the handshake: {0}")]
    Io(#[from] io::Error),
    #[error("client sent unknown client flags {0:#x}")]
    ClientFlags(u32),
    #[error("{0}")]
    Wire(#[from] WireError),
    #[error("client sent option {option} with {length} bytes of data (limit {limit})")]
    OptionTooLong {
        option: u32,
        length: u32,
        limit: u32,
    },
    #[error("client sent more than {0} options without starting transmission")]
    TooManyOptions(u32),
    #[error("client asked for export {0:?} with NBD_OPT_EXPORT_NAME; there is no such export")]
    UnknownExport(String),
}

/// Run the handshake on a fresh connection.
pub fn negotiate<R: Read, W: Write>(
    r: &mut R,
    w: &mut W,
    export: &ExportInfo,
    limits: &HandshakeLimits,
) -> Result<Negotiated, HandshakeError> {
    w.write_all(&proto::encode_greeting(
        proto::FLAG_FIXED_NEWSTYLE | proto::FLAG_NO_ZEROES,
    ))?;
    w.flush()?;
    let mut flags = [0u8; 4];
    r.read_exact(&mut flags)?;
    let client_flags = u32::from_be_bytes(flags);
    if client_flags & !(proto::FLAG_C_FIXED_NEWSTYLE | proto::FLAG_C_NO_ZEROES) != 0 {
        return Err(HandshakeError::ClientFlags(client_flags));
    }
    // Servers may honour fixed newstyle from clients that did not set the
    // bit; a non-fixed client only ever sends NBD_OPT_EXPORT_NAME anyway.
    let no_zeroes = client_flags & proto::FLAG_C_NO_ZEROES != 0;

    let mut out = Vec::with_capacity(256);
    for _ in 0..limits.max_options {
        let mut head = [0u8; proto::OPTION_HEADER_LEN];
        match read_or_eof(r, &mut head)? {
            true => {}
            false => return Ok(Negotiated::Aborted),
        }
        let opt = proto::decode_option_header(&head)?;
        if opt.length > limits.max_option_bytes {
            return Err(HandshakeError::OptionTooLong {
                option: opt.option,
                length: opt.length,
                limit: limits.max_option_bytes,
            });
        }
        let mut data = vec![0u8; opt.length as usize];
        r.read_exact(&mut data)?;
        out.clear();
        let step = answer_option(opt.option, &data, export, no_zeroes, &mut out);
        if let Step::RefuseExportName = step {
            return Err(HandshakeError::UnknownExport(
                String::from_utf8_lossy(&data).into_owned(),
            ));
        }
        // A client that aborts may already have closed its end: a failed
        // write of the ACK is not an error then.
        let written = w.write_all(&out).and_then(|()| w.flush());
        match step {
            Step::Continue => written?,
            Step::Transmission => {
                written?;
                return Ok(Negotiated::Transmission);
            }
            Step::Abort => return Ok(Negotiated::Aborted),
            Step::RefuseExportName => unreachable!("handled above"),
        }
    }
    Err(HandshakeError::TooManyOptions(limits.max_options))
}

enum Step {
    Continue,
    Transmission,
    Abort,
    /// `NBD_OPT_EXPORT_NAME` for a name we do not have: the protocol gives
    /// no way to say so but closing the connection.
    RefuseExportName,
}

fn is_our_name(name: &[u8], export: &ExportInfo) -> bool {
    name.is_empty() || name == export.name.as_bytes()
}

/// Append the reply (or replies) to one option to `out`.
fn answer_option(
    option: u32,
    data: &[u8],
    export: &ExportInfo,
    no_zeroes: bool,
    out: &mut Vec<u8>,
) -> Step {
    match option {
        proto::OPT_EXPORT_NAME => {
            if !is_our_name(data, export) {
                return Step::RefuseExportName;
            }
            out.extend_from_slice(&proto::encode_export_name_reply(
                export.size_bytes,
                export.transmission_flags,
                !no_zeroes,
            ));
            Step::Transmission
        }
        proto::OPT_ABORT => {
            // Data, if any, is ignored as the protocol asks.
            proto::encode_option_reply(out, option, proto::REP_ACK, &[]);
            Step::Abort
        }
        proto::OPT_LIST => {
            if !data.is_empty() {
                return refuse_option(
                    out,
                    option,
                    proto::REP_ERR_INVALID,
                    "NBD_OPT_LIST takes no data".into(),
                );
            }
            let server = proto::encode_rep_server(&export.name, &export.description);
            proto::encode_option_reply(out, option, proto::REP_SERVER, &server);
            proto::encode_option_reply(out, option, proto::REP_ACK, &[]);
            Step::Continue
        }
        proto::OPT_INFO | proto::OPT_GO => answer_info_or_go(option, data, export, out),
        proto::OPT_STARTTLS => refuse_option(
            out,
            option,
            proto::REP_ERR_UNSUP,
            "TLS is not implemented by diskhist serve; it listens on a Unix socket or on \
             loopback by default"
                .into(),
        ),
        proto::OPT_STRUCTURED_REPLY
        | proto::OPT_LIST_META_CONTEXT
        | proto::OPT_SET_META_CONTEXT
        | proto::OPT_EXTENDED_HEADERS => refuse_option(
            out,
            option,
            proto::REP_ERR_UNSUP,
            format!("option {option} is not supported; diskhist serve uses simple replies"),
        ),
        _ => refuse_option(
            out,
            option,
            proto::REP_ERR_UNSUP,
            format!("unknown option {option}"),
        ),
    }
}

/// Refuse `option` with an error reply that says why; the client may go on.
fn refuse_option(out: &mut Vec<u8>, option: u32, reply_type: u32, message: String) -> Step {
    proto::encode_option_reply(out, option, reply_type, message.as_bytes());
    Step::Continue
}

/// Answer `NBD_OPT_INFO` or `NBD_OPT_GO`: the export's size, flags and
/// block sizes, its name and description if asked for; GO then starts
/// transmission.
fn answer_info_or_go(option: u32, data: &[u8], export: &ExportInfo, out: &mut Vec<u8>) -> Step {
    let req = match proto::parse_info_request(data) {
        Ok(req) => req,
        Err(why) => return refuse_option(out, option, proto::REP_ERR_INVALID, why.to_string()),
    };
    if !is_our_name(req.name, export) {
        let message = format!(
            "no export named {:?}; this server has one export, {:?} (the empty name works too)",
            String::from_utf8_lossy(req.name),
            export.name
        );
        return refuse_option(out, option, proto::REP_ERR_UNKNOWN, message);
    }
    let info = proto::encode_info_export(export.size_bytes, export.transmission_flags);
    proto::encode_option_reply(out, option, proto::REP_INFO, &info);
    // Sent whether asked for or not: the minimum is the default (1),
    // so a client that ignores it breaks nothing.
    let sizes = proto::encode_info_block_size(export.block_sizes);
    proto::encode_option_reply(out, option, proto::REP_INFO, &sizes);
    if req.info_types.contains(&proto::INFO_NAME) {
        let d = proto::encode_info_string(proto::INFO_NAME, &export.name);
        proto::encode_option_reply(out, option, proto::REP_INFO, &d);
    }
    if req.info_types.contains(&proto::INFO_DESCRIPTION) {
        let d = proto::encode_info_string(proto::INFO_DESCRIPTION, &export.description);
        proto::encode_option_reply(out, option, proto::REP_INFO, &d);
    }
    proto::encode_option_reply(out, option, proto::REP_ACK, &[]);
    if option == proto::OPT_GO {
        Step::Transmission
    } else {
        Step::Continue
    }
}

/// Fill `buf`; `Ok(false)` if the peer closed before sending its first byte.
pub(crate) fn read_or_eof<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "peer closed the connection after {got} of {} bytes",
                        buf.len()
                    ),
                ))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nbd::proto::*;

    fn export() -> ExportInfo {
        ExportInfo {
            name: "diskhist".into(),
            description: "test".into(),
            size_bytes: 1 << 20,
            transmission_flags: FLAG_HAS_FLAGS | FLAG_SEND_FLUSH,
            block_sizes: BlockSizes {
                minimum: 1,
                preferred: 4096,
                maximum: 32 << 20,
            },
        }
    }

    fn option(opt: u32, data: &[u8]) -> Vec<u8> {
        let mut v = IHAVEOPT.to_be_bytes().to_vec();
        v.extend_from_slice(&opt.to_be_bytes());
        v.extend_from_slice(&(data.len() as u32).to_be_bytes());
        v.extend_from_slice(data);
        v
    }

    fn go_data(name: &[u8], infos: &[u16]) -> Vec<u8> {
        let mut d = (name.len() as u32).to_be_bytes().to_vec();
        d.extend_from_slice(name);
        d.extend_from_slice(&(infos.len() as u16).to_be_bytes());
        for i in infos {
            d.extend_from_slice(&i.to_be_bytes());
        }
        d
    }

    /// Run the handshake on `client` bytes (after the client flags).
    fn run(client_flags: u32, client: &[u8]) -> (Result<Negotiated, HandshakeError>, Vec<u8>) {
        let mut input = client_flags.to_be_bytes().to_vec();
        input.extend_from_slice(client);
        let mut r = io::Cursor::new(input);
        let mut w = Vec::new();
        let res = negotiate(&mut r, &mut w, &export(), &HandshakeLimits::default());
        assert_eq!(&w[..GREETING_LEN], &encode_greeting(3));
        (res, w[GREETING_LEN..].to_vec())
    }

    /// Split option replies into (option, type, data).
    fn replies(mut b: &[u8]) -> Vec<(u32, u32, Vec<u8>)> {
        let mut v = Vec::new();
        while !b.is_empty() {
            assert_eq!(&b[..8], &OPT_REPLY_MAGIC.to_be_bytes());
            let opt = u32::from_be_bytes(b[8..12].try_into().unwrap());
            let ty = u32::from_be_bytes(b[12..16].try_into().unwrap());
            let len = u32::from_be_bytes(b[16..20].try_into().unwrap()) as usize;
            v.push((opt, ty, b[20..20 + len].to_vec()));
            b = &b[20 + len..];
        }
        v
    }

    #[test]
    fn go_with_default_name_enters_transmission() {
        let (res, out) = run(3, &option(OPT_GO, &go_data(b"", &[INFO_BLOCK_SIZE])));
        assert_eq!(res.unwrap(), Negotiated::Transmission);
        let r = replies(&out);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].1, REP_INFO);
        assert_eq!(
            r[0].2,
            encode_info_export(1 << 20, FLAG_HAS_FLAGS | FLAG_SEND_FLUSH)
        );
        assert_eq!(&r[1].2[..2], &INFO_BLOCK_SIZE.to_be_bytes());
        assert_eq!(r[2], (OPT_GO, REP_ACK, vec![]));
    }

    #[test]
    fn info_then_list_then_go_by_name() {
        let mut c = option(
            OPT_INFO,
            &go_data(b"diskhist", &[INFO_NAME, INFO_DESCRIPTION]),
        );
        c.extend(option(OPT_LIST, &[]));
        c.extend(option(OPT_GO, &go_data(b"diskhist", &[])));
        let (res, out) = run(1, &c);
        assert_eq!(res.unwrap(), Negotiated::Transmission);
        let r = replies(&out);
        let kinds: Vec<_> = r.iter().map(|x| (x.0, x.1)).collect();
        assert_eq!(
            kinds,
            vec![
                (OPT_INFO, REP_INFO),
                (OPT_INFO, REP_INFO),
                (OPT_INFO, REP_INFO),
                (OPT_INFO, REP_INFO),
                (OPT_INFO, REP_ACK),
                (OPT_LIST, REP_SERVER),
                (OPT_LIST, REP_ACK),
                (OPT_GO, REP_INFO),
                (OPT_GO, REP_INFO),
                (OPT_GO, REP_ACK),
            ]
        );
        assert_eq!(r[2].2, encode_info_string(INFO_NAME, "diskhist"));
        assert_eq!(r[5].2, encode_rep_server("diskhist", "test"));
    }

    #[test]
    fn unsupported_and_invalid_options_are_answered_not_fatal() {
        let mut c = option(OPT_STRUCTURED_REPLY, &[]);
        c.extend(option(OPT_STARTTLS, &[]));
        c.extend(option(0xdead, &[1, 2, 3]));
        c.extend(option(OPT_GO, &go_data(b"other", &[])));
        c.extend(option(OPT_GO, &[0, 0, 0, 9, 0]));
        c.extend(option(OPT_LIST, &[1]));
        c.extend(option(OPT_ABORT, &[]));
        let (res, out) = run(3, &c);
        assert_eq!(res.unwrap(), Negotiated::Aborted);
        let types: Vec<_> = replies(&out).iter().map(|x| x.1).collect();
        assert_eq!(
            types,
            vec![
                REP_ERR_UNSUP,
                REP_ERR_UNSUP,
                REP_ERR_UNSUP,
                REP_ERR_UNKNOWN,
                REP_ERR_INVALID,
                REP_ERR_INVALID,
                REP_ACK
            ]
        );
    }

    #[test]
    fn export_name_with_and_without_zeroes() {
        let (res, out) = run(1, &option(OPT_EXPORT_NAME, b""));
        assert_eq!(res.unwrap(), Negotiated::Transmission);
        assert_eq!(
            out,
            encode_export_name_reply(1 << 20, FLAG_HAS_FLAGS | FLAG_SEND_FLUSH, true)
        );
        let (res, out) = run(3, &option(OPT_EXPORT_NAME, b"diskhist"));
        assert_eq!(res.unwrap(), Negotiated::Transmission);
        assert_eq!(out.len(), 10);
        let (res, out) = run(3, &option(OPT_EXPORT_NAME, b"nope"));
        assert!(matches!(res, Err(HandshakeError::UnknownExport(n)) if n == "nope"));
        assert!(out.is_empty());
    }

    #[test]
    fn protocol_violations_disconnect() {
        let (res, _) = run(4, &[]);
        assert!(matches!(res, Err(HandshakeError::ClientFlags(4))));
        let mut bad = option(OPT_LIST, &[]);
        bad[0] = b'X';
        let (res, _) = run(1, &bad);
        assert!(matches!(
            res,
            Err(HandshakeError::Wire(WireError::OptionMagic(_)))
        ));
        let mut huge = IHAVEOPT.to_be_bytes().to_vec();
        huge.extend_from_slice(&OPT_GO.to_be_bytes());
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        let (res, _) = run(1, &huge);
        assert!(matches!(res, Err(HandshakeError::OptionTooLong { .. })));
        // Truncated option data, and a client that leaves mid-header.
        let (res, _) = run(1, &option(OPT_GO, &go_data(b"", &[]))[..20]);
        assert!(matches!(res, Err(HandshakeError::Io(_))));
        let (res, _) = run(1, &option(OPT_LIST, &[])[..5]);
        assert!(matches!(res, Err(HandshakeError::Io(_))));
        // Leaving between options is a (hard) abort, not a failure.
        let (res, _) = run(1, &[]);
        assert_eq!(res.unwrap(), Negotiated::Aborted);
        let many: Vec<u8> = (0..600).flat_map(|_| option(OPT_LIST, &[])).collect();
        let (res, _) = run(1, &many);
        assert!(matches!(res, Err(HandshakeError::TooManyOptions(512))));
    }
}
