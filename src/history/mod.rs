//! When did it change: the history of one path, the timeline of every
//! file version, and the contradictions between the times filesystems
//! claim and the times the recorder saw their blocks written. Built on the
//! store and [`crate::fs`]; knows nothing of FUSE or the command line.
//!
//! - `recorder.rs`: a state's disk noting every block read through it.
//! - `view.rs`: a path's (or a node's) version at a state: stat, content
//!   hash, and the blocks that made it.
//! - `path.rs`: [`history`], jumping from one write to a block a path's
//!   view depends on to the next (see its docs for why that is exact).
//! - `diff.rs`: what differs between two versions.
//! - `tree.rs`: [`timeline`], every version of every file, by the same
//!   jumps over the whole tree's blocks.
//! - `check.rs`: the rules `timeline --check` applies to those versions.

pub mod check;
pub mod diff;
mod path;
pub mod recorder;
pub mod tree;
pub mod view;

pub use diff::ChangeKind;
pub use path::{group_end, history, Change, HistoryError, NextWrite, Stats};
pub use view::{Version, View};
