//! `diskhist serve`: an NBD server that records every write QEMU (or any
//! NBD client) makes into the store, with the time it was applied.
//!
//! Layers: `proto.rs` (wire format, pure), `negotiate.rs` (handshake),
//! `transmission.rs` (requests against an `Export`, `export.rs`),
//! `store_export.rs` (the store as an export), [`server`] (sockets,
//! threads, stop). The `STORE/sessions` evidence file each run appends to is
//! [`crate::sessions`], which `info` and `verify` read too.
//!
//! # Serving
//!
//! ```text
//! diskhist serve STORE [--socket PATH | --listen ADDR:PORT] [--sync flush|always]
//! ```
//!
//! By default it listens on the Unix socket `STORE/nbd.sock` (mode 0600,
//! inside the 0700 store directory). `--listen PORT` or `--listen :PORT`
//! binds 127.0.0.1 only; any other address must be given explicitly (NBD has
//! no authentication). One export, named `diskhist` (the empty name works
//! too); size and block size are the store's; minimum block size 1, maximum
//! request 32 MiB. FLUSH and FUA writes are durable (fdatasync of the log)
//! before their reply; `--sync always` makes every write durable before its
//! reply. Several clients may connect; their writes form one history in the
//! order they were applied. A second server on the same store is refused.
//!
//! Requests are pipelined: a connection's requests are applied in the order
//! they arrive while earlier FLUSH and FUA replies wait for a sync, and
//! replies go out as they are ready ([`transmission`]); one sync covers every
//! request waiting when it starts, across connections (group commit,
//! [`store_export`]).
//! SIGINT/SIGTERM close the store cleanly and remove the socket.
//!
//! # Three ways to attach
//!
//! 1. **As a VM's disk.** The VM reads and writes the store directly; every
//!    guest write is recorded (reads return the latest state):
//!
//!    ```text
//!    diskhist serve /srv/hist
//!    qemu-system-x86_64 ... \
//!      -drive file=nbd+unix:///?socket=/srv/hist/nbd.sock,format=raw,cache=none
//!    ```
//!
//!    (The tests use `qemu-io -f raw -t none nbd+unix:///?socket=...`, the
//!    same block layer without a guest.) `cache=none` passes guest flushes
//!    and FUA through, so what the guest made durable is durable in the store.
//!
//! 2. **As a quorum mirror** beside the real disk: QEMU writes every request
//!    to both children; `vote-threshold=1` keeps the VM running if the
//!    recorder fails, `read-pattern=fifo` reads from the real disk first.
//!    With qemu-storage-daemon exporting the pair (here over FUSE, for the
//!    host to loop-mount; `--export type=vhost-user-blk,...` serves a VM):
//!
//!    ```text
//!    qemu-storage-daemon \
//!      --blockdev driver=file,node-name=disk-file,filename=disk.raw \
//!      --blockdev driver=raw,node-name=disk,file=disk-file \
//!      --blockdev driver=nbd,node-name=hist,server.type=unix,server.path=/srv/hist/nbd.sock \
//!      --blockdev driver=quorum,node-name=mirror,children.0=disk,children.1=hist,vote-threshold=1,read-pattern=fifo \
//!      --export type=fuse,id=exp,node-name=mirror,mountpoint=disk.img,writable=on
//!    ```
//!
//!    In a VM: `-blockdev` the same nodes and `-device virtio-blk,drive=mirror`.
//!    Caveat: with `vote-threshold=1` a failed write to the recorder is not
//!    reported to the guest (QEMU emits a `QUORUM_REPORT_BAD` event); the
//!    history then has a gap. Stop the VM if that event appears.
//!
//! 3. **As a `blockdev-mirror` target** with `copy-mode=write-blocking`:
//!    an existing disk is copied into the store, then every guest write is
//!    written to both before it completes. Over QMP:
//!
//!    ```text
//!    {"execute": "blockdev-add", "arguments": {"driver": "nbd", "node-name": "hist",
//!      "server": {"type": "unix", "path": "/srv/hist/nbd.sock"}}}
//!    {"execute": "blockdev-mirror", "arguments": {"job-id": "rec", "device": "disk",
//!      "target": "hist", "sync": "full", "copy-mode": "write-blocking"}}
//!    ```
//!
//!    Caveat: QEMU does not forward the guest's flushes to a mirror target,
//!    so nothing tells serve when mirrored writes must be durable: run it
//!    with `--sync always`. The initial copy is recorded as ordinary writes
//!    stamped with the time of the copy, not the time the data was written.
//!
//! # Evidence
//!
//! Every session's start and end (time, diskhist version, pid, listener,
//! sync mode, the clock's synchronisation state and error bounds from
//! `adjtimex`, the store's head seq and chain) are appended to
//! `STORE/sessions`; see [`crate::sessions`].

pub(crate) mod export;
pub(crate) mod negotiate;
pub(crate) mod proto;
pub mod server;
pub(crate) mod store_export;
pub(crate) mod transmission;

pub use store_export::SyncMode;

/// The server's pieces, for [`crate::testing`]: the fuzz targets and the
/// hostile-client tests check each alone.
pub(crate) mod testing {
    pub mod export {
        pub use crate::nbd::export::*;
    }
    pub mod negotiate {
        pub use crate::nbd::negotiate::*;
    }
    pub mod proto {
        pub use crate::nbd::proto::*;
    }
    pub mod transmission {
        pub use crate::nbd::transmission::*;
    }
}
