//! Producers: the sources of the mirrored write stream, each turning its
//! input into [`op::Op`]s for the store.

pub mod dmlog;
pub mod image;
pub mod op;
pub mod stream;
