//! The read-only FUSE tree: the disk at any past moment as a raw image,
//! its partitions, and the files inside them.
//!
//! ```text
//! MOUNTPOINT/
//!   at/<time>/disk.img   the disk at <time>: the state after every record
//!                        whose time is <= <time>
//!   at/<time>/info       time, record number, chain hash, Merkle tree size
//!                        and root, disk size, block
//!                        size; the partition table and each volume: what
//!                        it holds, and whether its files are shown or why not
//!   at/<time>/p<N>.img   partition N's bytes (MBR or GPT, Linux numbering)
//!   at/<time>/p<N>/files/  the filesystem in partition N as it was then
//!   at/<time>/files/     the same, for a disk without a table that is one
//!                        filesystem
//!   seq/<n>/...          the same, after record n (lookup-only)
//!   by-day/<YYYY-MM-DD>/<time>/  every second of that UTC day in which
//!                        writes happened: the state at/<time>/ shows, with
//!                        the same disk.img (one inode) and info
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
//! entry costs one O(log n) store query (listing.rs). The listing of a day
//! that is over (a later record exists) is kept, and answers the lookup and
//! `stat` of its states without asking the store. A day's states are
//! directories, not links into `at/`, so `ls -l` of a busy day costs no
//! `readlink` per entry. Directory mtimes are the state's time, so file
//! managers sort them.
//!
//! # Partitions and files
//! Every partition of the state's table that starts inside the disk has a
//! `p<N>.img` (cut at the end of the disk, as Linux cuts it) and a `p<N>/`
//! directory, which holds `files/` when the partition's filesystem can be
//! read. An MBR extended partition is shown too: its image is the whole
//! extended range (the EBRs and whatever lies between the logical
//! partitions, which forensics wants; Linux's tiny device for it exists
//! only to protect the EBR), and its directory is empty, as it holds no
//! filesystem. Filesystems are read in user space by `crate::fs`'s
//! readers, through the same block cache as `disk.img`; a damaged one
//! answers EIO on its damaged part alone (contents.rs).
//!
//! # Inodes and caching
//! Inode numbers derive from the state's record number (node.rs), so two
//! spellings of one state share the kernel's page cache. Nodes inside a
//! state beyond `disk.img` and `info` are numbered by a table (inodes.rs)
//! keyed by (state, volume, node), which the kernel's `forget` keeps as
//! small as what the kernel holds. `st_ino` is therefore the mount's
//! number, not the filesystem's: FUSE uses the node id as `st_ino`, and
//! node ids must differ between states; the filesystem's own inode (MFT
//! record) number is the extended attribute `user.diskhist.ino`. A state
//! never changes: files are opened with keep-cache and have long TTLs;
//! only names that may still move (`latest`, the listings, a time at or
//! after the newest record) get short ones. Images are rebuilt lazily,
//! block by block, through a bounded LRU of decoded blocks (cache.rs);
//! nothing is materialised.
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
//! - `contents.rs`: what a state holds beyond `disk.img` and `info`: its
//!   partitions and their files, each call to a filesystem run on the
//!   worker that owns the volume (`crate::fs::pool`).
//! - `volumes.rs`: a state's table and volumes, read through the block
//!   cache; how a volume's filesystem is opened (pluggable for tests,
//!   which use `test_fs.rs`, a filesystem in memory).
//! - `node.rs`: the nodes and their inode numbers; `inodes.rs`: the table
//!   that numbers the nodes inside states.
//! - `names.rs`: state names, buckets, days and partition names;
//!   `listing.rs`: which states a listing shows; `cache.rs`: reading an
//!   image through the block cache.

mod cache;
mod contents;
mod fuse;
mod inodes;
mod listing;
mod names;
mod node;
mod preflight;
mod run;
#[cfg(test)]
mod test_data;
#[cfg(test)]
mod test_fs;
mod tree;
mod volumes;

pub use listing::ListingLimits;
pub use preflight::{check_empty, check_fuse_device, check_mountpoint};
pub use run::{mount_until_unmounted, MountError, MountOptions, FUSE_DEVICE, SUBTYPE};
