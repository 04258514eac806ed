//! Producers: the sources of the mirrored write stream, each turning its
//! input into [`op::Op`]s for the store.

pub mod dmlog;
pub mod image;
pub mod stream;

/// A progress callback: called with the input bytes done so far.
#[derive(Clone)]
pub struct ProgressFn(pub std::sync::Arc<dyn Fn(u64) + Send + Sync>);

impl std::fmt::Debug for ProgressFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressFn")
    }
}
