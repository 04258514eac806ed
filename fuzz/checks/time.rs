//! `diskhist::parse_time`: every string a user or the mounted tree may
//! hand it. Never panics; whatever it accepts as an instant prints back
//! (canonical, RFC 3339, RFC 3339 with nanoseconds) to the same instant, and
//! a `#SEQ` prints back to the same record.

use diskhist::{format_canonical, format_rfc3339, format_rfc3339_ns, parse_time, TimeSpec};

/// Run every check of this target on one input; panics on a failure.
pub fn check(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    match parse_time(s) {
        Ok(TimeSpec::At(t)) => {
            for (how, printed) in [
                ("format_canonical", format_canonical(t)),
                ("format_rfc3339", format_rfc3339(t)),
                ("format_rfc3339_ns", format_rfc3339_ns(t)),
            ] {
                assert_eq!(
                    parse_time(&printed),
                    Ok(TimeSpec::At(t)),
                    "{s:?} parsed as {t:?}, which {how} prints as {printed:?}"
                );
            }
            assert!(!format_canonical(t).contains(':'));
        }
        Ok(TimeSpec::AfterSeq(seq)) => {
            assert_eq!(
                parse_time(&format!("#{}", seq.0)),
                Ok(TimeSpec::AfterSeq(seq))
            );
        }
        Ok(TimeSpec::Latest) => {}
        Err(e) => {
            // The message always says what is accepted.
            assert!(e.to_string().contains("accepted forms"), "{e}");
        }
    }
}
