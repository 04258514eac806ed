//! diskhist's own stream format: a history with its times and its hash
//! chain, so it can be moved or replicated between stores without losing
//! anything and checked record by record on arrival. `dump` writes it
//! ([`dump()`]), `ingest --format stream` reads it ([`ingest()`]).
//!
//! - `format.rs` holds the byte map (version 2, and version 1 that older
//!   releases wrote), the types a stream is made of, and its errors.
//! - `reader.rs` has [`StreamReader`], which returns only records it has
//!   checked: checksum, fields, sequence, times, and (version 2) the chain
//!   hash each record carries, recomputed from the record.
//! - `writer.rs` has [`StreamWriter`], which encodes what it is given.
//! - `ingest.rs` records a stream into a store: records the store
//!   already holds are skipped, a stream that conflicts with the store or
//!   does not link to its history is refused before anything is written,
//!   and every record is verified before it is written.
//! - `dump.rs` writes records of a store as a stream.

mod dump;
mod format;
mod ingest;
mod reader;
mod writer;

pub use dump::{dump, dump_with_progress, DumpError};
pub use format::{StreamEnd, StreamError, StreamHeader, StreamRecord, StreamStart, StreamVersion};
pub use ingest::{ingest, IngestError, IngestOptions, IngestSummary, Resume};
pub use reader::StreamReader;
pub use writer::StreamWriter;
