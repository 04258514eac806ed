//! What the transmission phase needs from the thing it serves. The server
//! speaks to an [`Export`]; the store-backed one records every write, the
//! in-memory one lets the protocol be tested without a store.
//!
//! Ranges reaching an export have already been checked against its size
//! (see [`super::proto::classify`]); an export may still refuse with
//! [`ExportError::OutOfRange`].

/// An export refused or failed an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    #[error("range outside the export")]
    OutOfRange,
    /// The filesystem holding the export's data is full: this operation was
    /// not done, the export still works and takes writes again once space
    /// is freed (reply ENOSPC, go on).
    #[error("{0}")]
    NoSpace(String),
    /// This operation failed; the export still works (reply EIO, go on).
    #[error("{0}")]
    Io(String),
    /// The export can no longer guarantee anything (an fsync failed): it
    /// refuses everything from now on. Reply EIO (ENOSPC if the fsync failed
    /// for want of space), close, stop the server.
    #[error("{why}")]
    Fatal { why: String, out_of_space: bool },
}

impl ExportError {
    /// A fatal error that is not about space.
    pub fn fatal(why: impl Into<String>) -> ExportError {
        ExportError::Fatal {
            why: why.into(),
            out_of_space: false,
        }
    }
}

/// A write-like request, for [`Export::submit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    Write {
        offset_bytes: u64,
        data: &'a [u8],
        fua: bool,
    },
    Zeroes {
        offset_bytes: u64,
        length_bytes: u64,
        fua: bool,
    },
    Trim {
        offset_bytes: u64,
        length_bytes: u64,
        fua: bool,
    },
    Flush,
}

/// Told a submitted request's outcome, once its reply may be sent.
pub type Done = Box<dyn FnOnce(Result<(), ExportError>) + Send>;

/// A disk served over NBD. Shared by every connection, so `&self` methods;
/// an implementation orders concurrent writes itself.
pub trait Export: Send + Sync {
    fn size_bytes(&self) -> u64;
    /// The block size at which I/O is efficient (no read-modify-write).
    fn preferred_block_size(&self) -> u32;
    /// The latest state.
    fn read(&self, offset_bytes: u64, buf: &mut [u8]) -> Result<(), ExportError>;
    /// `fua`: durable before this returns.
    fn write(&self, offset_bytes: u64, data: &[u8], fua: bool) -> Result<(), ExportError>;
    /// The range reads as zeros afterwards.
    fn write_zeroes(
        &self,
        offset_bytes: u64,
        length_bytes: u64,
        fua: bool,
    ) -> Result<(), ExportError>;
    /// The client no longer needs the range (diskhist reads it back as zeros).
    fn trim(&self, offset_bytes: u64, length_bytes: u64, fua: bool) -> Result<(), ExportError>;
    /// Everything acknowledged so far is durable when this returns.
    fn flush(&self) -> Result<(), ExportError>;

    /// Apply `req` before returning (a read that follows sees it; requests
    /// submitted after it are applied after it), and call `done` with its
    /// outcome once its reply may go out: at once, or later, from another
    /// thread, when the reply must wait for the data to be durable (FLUSH,
    /// FUA). The connection reads on meanwhile: that is the pipelining.
    /// The default does it all at once with the methods above.
    fn submit(&self, req: Request<'_>, done: Done) {
        done(match req {
            Request::Write {
                offset_bytes,
                data,
                fua,
            } => self.write(offset_bytes, data, fua),
            Request::Zeroes {
                offset_bytes,
                length_bytes,
                fua,
            } => self.write_zeroes(offset_bytes, length_bytes, fua),
            Request::Trim {
                offset_bytes,
                length_bytes,
                fua,
            } => self.trim(offset_bytes, length_bytes, fua),
            Request::Flush => self.flush(),
        })
    }
}

/// An export held in memory, recording what was done to it: for tests of the
/// protocol layers without a store.
#[cfg(test)]
pub(crate) mod mem {
    use super::*;
    use std::sync::Mutex;

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Event {
        Write {
            offset_bytes: u64,
            length_bytes: u64,
            fua: bool,
        },
        Zero {
            offset_bytes: u64,
            length_bytes: u64,
            fua: bool,
        },
        Trim {
            offset_bytes: u64,
            length_bytes: u64,
            fua: bool,
        },
        Flush,
    }

    pub struct MemExport {
        pub data: Mutex<Vec<u8>>,
        pub events: Mutex<Vec<Event>>,
        /// The next flush fails fatally (a simulated fsync error).
        pub fail_flush: Mutex<bool>,
    }

    impl MemExport {
        pub fn new(size_bytes: usize) -> MemExport {
            MemExport {
                data: Mutex::new(vec![0; size_bytes]),
                events: Mutex::new(Vec::new()),
                fail_flush: Mutex::new(false),
            }
        }
        fn range(
            &self,
            offset_bytes: u64,
            length_bytes: u64,
        ) -> Result<std::ops::Range<usize>, ExportError> {
            let end = offset_bytes
                .checked_add(length_bytes)
                .ok_or(ExportError::OutOfRange)?;
            if end > self.size_bytes() {
                return Err(ExportError::OutOfRange);
            }
            Ok(offset_bytes as usize..end as usize)
        }
        fn poisoned(&self) -> Result<(), ExportError> {
            if *self.fail_flush.lock().unwrap()
                && self.events.lock().unwrap().contains(&Event::Flush)
            {
                return Err(ExportError::fatal("export poisoned by a failed flush"));
            }
            Ok(())
        }
    }

    impl Export for MemExport {
        fn size_bytes(&self) -> u64 {
            self.data.lock().unwrap().len() as u64
        }
        fn preferred_block_size(&self) -> u32 {
            4096
        }
        fn read(&self, offset_bytes: u64, buf: &mut [u8]) -> Result<(), ExportError> {
            let r = self.range(offset_bytes, buf.len() as u64)?;
            buf.copy_from_slice(&self.data.lock().unwrap()[r]);
            Ok(())
        }
        fn write(&self, offset_bytes: u64, data: &[u8], fua: bool) -> Result<(), ExportError> {
            self.poisoned()?;
            let r = self.range(offset_bytes, data.len() as u64)?;
            self.data.lock().unwrap()[r].copy_from_slice(data);
            let length_bytes = data.len() as u64;
            self.events.lock().unwrap().push(Event::Write {
                offset_bytes,
                length_bytes,
                fua,
            });
            Ok(())
        }
        fn write_zeroes(
            &self,
            offset_bytes: u64,
            length_bytes: u64,
            fua: bool,
        ) -> Result<(), ExportError> {
            self.poisoned()?;
            let r = self.range(offset_bytes, length_bytes)?;
            self.data.lock().unwrap()[r].fill(0);
            self.events.lock().unwrap().push(Event::Zero {
                offset_bytes,
                length_bytes,
                fua,
            });
            Ok(())
        }
        fn trim(&self, offset_bytes: u64, length_bytes: u64, fua: bool) -> Result<(), ExportError> {
            self.poisoned()?;
            let r = self.range(offset_bytes, length_bytes)?;
            self.data.lock().unwrap()[r].fill(0);
            self.events.lock().unwrap().push(Event::Trim {
                offset_bytes,
                length_bytes,
                fua,
            });
            Ok(())
        }
        fn flush(&self) -> Result<(), ExportError> {
            self.poisoned()?;
            self.events.lock().unwrap().push(Event::Flush);
            self.poisoned()
        }
    }
}
