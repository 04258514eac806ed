//! Taking in the log past the manifest's point: every whole record is
//! checked (framing, checksum, sequence, time order, chain, body) and
//! applied to the in-memory index; the first record that is not whole stops
//! the scan, and whether it is a torn tail (the last thing in the log) or
//! damage in the middle is told apart here.

use super::Index;
use crate::store::error::{IoContext, Result};
use crate::store::format::{self, read_record_at, record_block_locs, LogFormat, RecordHeader};
use crate::units::{Seq, TimeNs};
use std::fs::File;
use std::os::unix::fs::FileExt;

/// Where and why the scan of the log stopped before its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailStop {
    /// Offset of the first record that is not whole.
    pub offset_bytes: u64,
    /// The sequence number it should have had.
    pub seq: Seq,
    pub reason: String,
    /// Bytes from `offset_bytes` to the end of the log.
    pub bytes_left: u64,
    /// True when what stops the scan is the last thing in the log (a torn
    /// write), false when more data follows (damage in the middle).
    pub at_end: bool,
}

/// A record after the manifest's point, held in memory.
#[derive(Debug, Clone, Copy)]
pub struct TailRecord {
    pub time_ns: TimeNs,
    pub offset_bytes: u64,
    pub record_len: u32,
}

/// A bad record at `offset` is a torn tail when no whole record header can
/// follow it: its claimed extent reaches the end of the log, or the bytes
/// left are fewer than one record could be.
pub fn is_torn_tail(log: &File, format: LogFormat, offset: u64, log_len: u64) -> bool {
    let left = log_len - offset;
    if left < u64::from(format.min_record_len()) {
        return true;
    }
    let mut prefix = [0u8; 8];
    if log.read_exact_at(&mut prefix, offset).is_err() {
        return true;
    }
    match format::peek_record_len(&prefix) {
        Ok(len) => offset + u64::from(len) >= log_len,
        // A file that grew but whose data never reached the disk (a
        // power cut on some filesystems) ends in zeros: torn too.
        Err(_) => zeros_to_end(log, offset, log_len),
    }
}

/// True when every byte from `offset` to `log_len` is zero.
fn zeros_to_end(log: &File, mut offset: u64, log_len: u64) -> bool {
    let mut buf = vec![0u8; (log_len - offset).min(1 << 20) as usize];
    while offset < log_len {
        let n = buf.len().min((log_len - offset) as usize);
        if log.read_exact_at(&mut buf[..n], offset).is_err() || buf[..n].iter().any(|&b| b != 0) {
            return false;
        }
        offset += n as u64;
    }
    true
}

impl Index {
    /// Take in every whole record after `log_end`. Stops (recording why in
    /// `stop`) at the first record that is not whole.
    pub fn scan(&mut self) -> Result<Vec<RecordHeader>> {
        let log_len = self.log.metadata().at(&self.log_path)?.len();
        let mut seen = Vec::new();
        self.stop = None;
        let mut buf = std::mem::take(&mut self.scan_buf);
        while self.log_end < log_len {
            let offset = self.log_end;
            let expect = Seq(self.head.seq.0 + 1);
            let res = read_record_at(&self.log, offset, log_len, &mut buf).at(&self.log_path)?;
            let fault = match res {
                Err(f) => Some(f.to_string()),
                Ok(h) => match self.check_and_apply(offset, &h, &buf) {
                    Ok(h) => {
                        seen.push(h);
                        None
                    }
                    Err(why) => Some(why),
                },
            };
            if let Some(reason) = fault {
                let at_end = is_torn_tail(&self.log, self.header.format, offset, log_len);
                self.stop = Some(TailStop {
                    offset_bytes: offset,
                    seq: expect,
                    reason,
                    bytes_left: log_len - offset,
                    at_end,
                });
                break;
            }
        }
        self.scan_buf = buf;
        Ok(seen)
    }

    fn check_and_apply(
        &mut self,
        offset: u64,
        h: &RecordHeader,
        rec: &[u8],
    ) -> std::result::Result<RecordHeader, String> {
        let expect = self.head.seq.0 + 1;
        if h.format != self.header.format {
            return Err(format!(
                "a record of format {} in a log of format {}",
                h.format.version(),
                self.header.format.version()
            ));
        }
        if h.seq.0 != expect {
            return Err(format!(
                "sequence number {} where {expect} was due",
                h.seq.0
            ));
        }
        if let Some(t) = self.head.time_ns {
            if h.time_ns < t {
                return Err(format!(
                    "time {} is before the previous record's {}",
                    h.time_ns.0, t.0
                ));
            }
        }
        let locs = record_block_locs(
            offset,
            h,
            format::record_body(rec),
            self.header.block_size,
            self.header.size_bytes,
        )
        .map_err(|e| e.to_string())?;
        let mut h = *h;
        self.rebuild_content(offset, &mut h, rec, &locs)
            .map_err(|e| e.to_string())?;
        let Some(chain) = h.chain_after(&self.head.chain) else {
            return Err("chain hash does not follow from the previous record".into());
        };
        self.apply(offset, &h, chain, &locs);
        Ok(h)
    }
}
