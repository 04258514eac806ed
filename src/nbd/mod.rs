//! The NBD server (in progress).

pub mod export;
pub mod negotiate;
pub mod proto;
pub mod server;
pub mod session;
pub mod store_export;
pub mod transmission;
