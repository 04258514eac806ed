//! What diskhist's integration tests share, in one place:
//!
//! - running the `diskhist` binary or any tool to its end, capturing what
//!   it says and checking it succeeded or failed as expected (`process`);
//! - processes that run beside the test, always stopped and reaped
//!   ([`Spawned`]), and the two the tests start most: `diskhist serve`
//!   ([`Served`]) and `diskhist mount` ([`Mounted`]);
//! - mounts made with mount(8) ([`KernelMount`]), ext4 images and disks
//!   partitioned by sfdisk (`mount`);
//! - disks written live through `diskhist serve` by QEMU ([`LiveDisk`]),
//!   loop devices ([`LoopDev`]) and frozen instants (`live`);
//! - walks of file trees into comparable lines, and The Sleuth Kit's
//!   reading of a FAT volume in the same lines (`walk`);
//! - stores built and read through the command line (`stores`);
//! - one seeded RNG ([`Rng`]) and the data generators built on it
//!   (`random`);
//! - an NBD client ([`nbd`]) and a dm-log-writes log writer ([`dmlog`]),
//!   used by their module's name: `nbd::Client`, `dmlog::Entry`.

pub mod dmlog;
pub mod forged;
mod live;
mod mount;
pub mod nbd;
mod process;
mod random;
mod serve;
mod spawned;
mod stores;
mod walk;

pub use live::{frozen_instant, now_instant, while_frozen, LiveDisk, LoopDev};
pub use mount::{
    ext4_image, is_mounted, mount_fails, mount_line, sfdisk, volume_line, KernelMount, Mounted,
};
pub use process::{
    bin, diskhist, diskhist_cmd, diskhist_fails, diskhist_ok, diskhist_output, diskhist_with_input,
    failed_with, fails, ok, on_a_terminal, output, output_with_input, run, stderr_of, stdout_of,
};
pub use random::{incompressible, incompressible_xorshift64, seed_from_env, text_like, Rng};
pub use serve::{free_port, Served};
pub use spawned::Spawned;
pub use stores::{
    chain_head, export_at, import, init_store, log_records, store_fingerprint, verify_ok, LogRecord,
};
pub use walk::{
    assert_same_tree, has, kernel_walk, line_of, node_line, noload_walk, ntfs3g_walk, try_walk,
    tsk_walk, user_xattrs, walk, within, WalkOptions,
};

use std::path::Path;
use std::time::{Duration, Instant};

pub const KIB: usize = 1 << 10;
pub const MIB: usize = 1 << 20;

/// A path as `&str`, for argument lists (temporary paths are UTF-8).
pub fn p(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// SHA-256 of `data`, in lowercase hex (as `diskhist export` prints it).
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Poll `cond` every 10 ms until it holds; panic with `what()` (built only
/// then, so it can say how things stand) after `limit`.
pub fn wait_until(limit: Duration, what: impl Fn() -> String, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(
            t0.elapsed() < limit,
            "timed out after {limit:?}: {}",
            what()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The number in environment variable `var` (decimal or 0x-hex), if set;
/// anything else there is a mistake worth stopping for.
pub fn env_number(var: &str) -> Option<u64> {
    let s = std::env::var(var).ok()?;
    let s = s.trim();
    let parsed = match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{var}={s:?} is not a number")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_hex_of_nothing() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
