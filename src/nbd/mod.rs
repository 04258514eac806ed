//! The NBD server (in progress).

pub mod export;
pub mod negotiate;
pub mod proto;
pub mod session;
pub mod transmission;
