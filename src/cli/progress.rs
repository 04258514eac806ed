//! Progress of long work, on standard error: bytes (or records) done, the
//! total, the rate and the time left. Shown only when standard error is a terminal
//! and `--quiet` was not given; otherwise every call is a no-op, so
//! commands call it unconditionally and scripts see nothing extra.
//!
//! ```ignore
//! let p = Progress::bytes(total_bytes, a.quiet);
//! for chunk in ... { ...; p.inc(chunk.len() as u64); }
//! p.finish();
//! // or, for an input read through:
//! let input = p.reader(file);
//! ```
//!
//! Drawing is indicatif's (rate-limited, so calling `set` or `inc` per
//! record or per block costs little).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Read};

/// A progress bar over a byte count; see the module header.
pub struct Progress {
    bar: ProgressBar,
}

const TEMPLATE: &str = "{elapsed_precise} [{wide_bar}] {binary_bytes}/{binary_total_bytes} \
                        {binary_bytes_per_sec}, {eta} left";
const TEMPLATE_RECORDS: &str = "{elapsed_precise} [{wide_bar}] {human_pos}/{human_len} records \
                                {per_sec}, {eta} left";
const TEMPLATE_UNKNOWN: &str = "{elapsed_precise} {spinner} {binary_bytes} {binary_bytes_per_sec}";

impl Progress {
    /// Progress over `total_bytes`.
    pub fn bytes(total_bytes: u64, quiet: bool) -> Progress {
        Progress::build(Some(total_bytes), TEMPLATE, quiet)
    }

    /// Progress over a byte count not known in advance (standard input, a
    /// growing log): bytes done and the rate.
    pub fn bytes_unknown(quiet: bool) -> Progress {
        Progress::build(None, TEMPLATE_UNKNOWN, quiet)
    }

    /// Progress over `total` records (where their size in bytes is not
    /// known in advance).
    pub fn records(total: u64, quiet: bool) -> Progress {
        Progress::build(Some(total), TEMPLATE_RECORDS, quiet)
    }

    fn build(total: Option<u64>, template: &str, quiet: bool) -> Progress {
        if quiet || !std::io::stderr().is_terminal() {
            return Progress {
                bar: ProgressBar::hidden(),
            };
        }
        let style = ProgressStyle::with_template(template)
            .expect("a valid progress template")
            .progress_chars("=> ")
            .tick_chars("-\\|/ ");
        let bar =
            ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr()).with_style(style);
        Progress { bar }
    }

    /// Set the bytes done so far.
    pub fn set(&self, done_bytes: u64) {
        self.bar.set_position(done_bytes);
    }

    /// A callback that sets the bytes done, for library code that reports
    /// its progress (import, dm-log-writes ingest).
    pub fn callback(&self) -> diskhist::producers::ProgressFn {
        let bar = self.bar.clone();
        diskhist::producers::ProgressFn(std::sync::Arc::new(move |done| bar.set_position(done)))
    }

    /// Change the total (work found larger or smaller than announced).
    pub fn set_total(&self, total_bytes: u64) {
        self.bar.set_length(total_bytes);
    }

    /// Draw the final state (time taken, total, rate) and leave it on its
    /// own line.
    pub fn finish(&self) {
        if self.bar.is_hidden() || self.bar.is_finished() {
            self.bar.finish();
            return;
        }
        self.bar.finish();
        eprintln!();
    }

    /// Run `f` (which prints to the terminal) with the bar out of the way.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.bar.suspend(f)
    }

    /// `inner`, counting every byte read from it as done.
    pub fn reader<R: Read>(&self, inner: R) -> ProgressReader<R> {
        ProgressReader {
            inner,
            bar: self.bar.clone(),
        }
    }
}

impl Drop for Progress {
    /// Unfinished (an error on the way): clear the bar, so that the error
    /// message that follows starts on a clean line.
    fn drop(&mut self) {
        if !self.bar.is_finished() {
            self.bar.finish_and_clear();
        }
    }
}

/// A reader that advances a [`Progress`]; see [`Progress::reader`].
pub struct ProgressReader<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R: Read> Read for ProgressReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

/// Seeking moves the bar to the new position (an input read twice shows
/// each pass).
impl<R: std::io::Seek> std::io::Seek for ProgressReader<R> {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        let at = self.inner.seek(pos)?;
        self.bar.set_position(at);
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hidden_bar_still_counts_what_is_read() {
        let p = Progress::bytes(10, true);
        let mut r = p.reader(&b"abcdef"[..]);
        let mut buf = Vec::new();
        r.read_to_end(&mut buf).unwrap();
        assert_eq!(buf, b"abcdef");
        assert_eq!(p.bar.position(), 6);
        (p.callback().0)(8);
        p.suspend(|| ());
        assert_eq!(p.bar.position(), 8);
        p.finish();
    }
}
