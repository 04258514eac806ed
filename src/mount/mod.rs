//! The read-only FUSE tree: the disk at any past moment as a raw image.
//!
//! ```text
//! MOUNTPOINT/
//!   at/<time>/disk.img   the disk at <time>: the state after every record
//!                        whose time is <= <time>
//!   at/<time>/info       time, record number, chain hash, disk size, block size
//!   seq/<n>/...          the same, after record n (lookup-only)
//!   by-day/<YYYY-MM-DD>/<time> -> ../../at/<time>
//!                        every second of that UTC day in which writes happened
//!   latest -> at/<time>  the newest state
//! ```
//!
//! # Names
//! A state's canonical name is its record's time, colon-free, to the
//! nanosecond where needed: `2026-11-23T06-30-15.123456789Z`. That name is a
//! real directory. Every other accepted spelling of a time (RFC 3339 with
//! colons or an offset, `@UNIX.FRAC`, `#SEQ`, `latest`, or simply a moment
//! between two writes) is a symlink to the canonical name of the state it
//! resolves to, so `readlink` tells which state a time really means, and
//! all spellings share one directory and one `disk.img`. A time before the
//! first record links to `../seq/0`, the all-zero disk.
//!
//! # Listings
//! `ls at` shows one entry per second in which writes happened, named by the
//! *last* record of that second: the name resolves to the state at the end
//! of that second, which is what the listing promises. To stay bounded over
//! a month of continuous writes, `at` lists the newest 3,600 such seconds
//! one by one and older history one entry per hour (the state at the end of
//! that hour); `by-day/<day>` lists every second of one day. Each listed
//! entry costs one O(log n) store query (listing.rs). Directory mtimes are
//! the state's time, so file managers sort them.
//!
//! # Inodes and caching
//! Inode numbers derive from the state's record number (node.rs), so two
//! spellings of one state share the kernel's page cache. A state never
//! changes: files are opened with keep-cache and have long TTLs; only
//! names that may still move (`latest`, the listings, a time at or after the
//! newest record) get short ones. Images are rebuilt lazily, block by block,
//! through a bounded LRU of decoded blocks (cache.rs); nothing is
//! materialised.
//!
//! # Read-only
//! The mount is `ro`, and every write-like request answers EROFS anyway.
//! The filesystem type is `fuse.diskhist`, so indexers can be told to stay
//! out (updatedb's PRUNEFS).

//!
//! # Files
//! - `run.rs`: mounting ([`mount_until_unmounted`]), unmounting on a signal.
//! - `preflight.rs`: the checks before mounting, with messages that say
//!   what to do.
//! - `fuse.rs`: the FUSE adapter, a thin translation of the kernel's
//!   requests into calls on the tree and of its answers into replies.
//! - `tree.rs`: the tree's logic: which node a name or inode is, its
//!   attributes, listings, link targets, `info` and file contents.
//! - `node.rs`: the nodes and their inode numbers.
//! - `names.rs`: state names, buckets and days; `listing.rs`: which states
//!   a listing shows; `cache.rs`: reading an image through the block cache.

mod cache;
mod fuse;
mod listing;
mod names;
mod node;
mod preflight;
mod run;
#[cfg(test)]
mod test_data;
mod tree;

pub use listing::ListingLimits;
pub use preflight::{check_empty, check_fuse_device, check_mountpoint};
pub use run::{mount_until_unmounted, MountError, MountOptions, FUSE_DEVICE, SUBTYPE};
