//! The read-only FUSE tree (in progress).
