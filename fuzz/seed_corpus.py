#!/usr/bin/env python3
"""Write the hand-made seeds of the fuzz corpus into fuzz/corpus/<target>/.

Run once from the repository root (`python3 fuzz/seed_corpus.py`); the
committed corpus is what `cargo fuzz cmin` kept after long runs grown from
these seeds. Stream seeds come from `diskhist dump` (see README).
"""
import os
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
MAGIC = 0x006A736677736872


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


# --- dm-log-writes --------------------------------------------------------
def super_block(nr_entries, ss):
    return struct.pack("<QQQI", MAGIC, 1, nr_entries, ss).ljust(ss, b"\0")


def entry(ss, sector, nr, flags, data_len=0, mark=b"", data=b""):
    h = struct.pack("<QQQQ", sector, nr, flags, data_len) + mark
    return h.ljust(ss, b"\0") + data


def fixture_windows():
    path = os.path.join(ROOT, "fixtures", "ext4-history.dmlog")
    d = open(path, "rb").read()
    _, _, _, ss = struct.unpack_from("<QQQI", d, 0)
    entries, pos = [], ss
    while pos + ss <= len(d):
        sec, nr, fl, dl = struct.unpack_from("<QQQQ", d, pos)
        if fl == 0 and nr == 0:
            break
        n = ss + (0 if fl & 12 else nr * ss)
        entries.append(d[pos : pos + n])
        pos += n
    # Runs of consecutive entries, each seed under 24 KiB.
    out, i = [], 0
    while i < len(entries):
        run = []
        while i < len(entries) and sum(map(len, run)) + len(entries[i]) <= 24 << 10:
            run.append(entries[i])
            i += 1
        if not run:
            i += 1
            continue
        out.append(run)
    for k, run in enumerate(out[:6]):
        body = b"".join(run)
        put("dmlog", f"ext4-{k}", super_block(len(run), ss) + body)
        # Stale count: the entries lie past the super block's count.
        put("dmlog", f"ext4-{k}-stale", super_block(0, ss) + body + b"\0" * ss)


def synthetic():
    for ss in (64, 512):
        body = b"".join(
            [
                entry(ss, 0, 0, 8, 12, b"t=1795415415"),
                entry(ss, 1, 2, 1 | 2 | 16, data=(bytes(range(256)) * 4)[: 2 * ss]),
                entry(ss, 3, 1, 0, data=b"\xa5" * ss),
                entry(ss, 0, 0, 1),
                entry(ss, 4, 3, 4),
                entry(ss, 0, 0, 8, 5, b"name\0"),
                entry(ss, 0, 0, 2),
            ]
        )
        put("dmlog", f"synthetic-{ss}", super_block(7, ss) + body)
        put("dmlog", f"synthetic-{ss}-stale", super_block(3, ss) + body)
        put("dmlog", f"synthetic-{ss}-cut", super_block(7, ss) + body[: len(body) - 7])
    put("dmlog", "super-only", super_block(0, 32))


# --- NBD --------------------------------------------------------------------
REQ = 0x25609513


def req(kind, flags=0, off=0, length=0, handle=7, payload=b""):
    return struct.pack(">IHHQQI", REQ, flags, kind, handle, off, length) + payload


def nbd():
    session = b"".join(
        [
            req(1, 0, 4096, 512, 1, b"\x5a" * 512),
            req(0, 0, 4000, 1000, 2),
            req(1, 1, 0, 16, 3, b"0123456789abcdef"),
            req(6, 2, 8192, 4096, 4),
            req(4, 0, 0, 4096, 5),
            req(3, 0, 0, 0, 6),
            req(0, 0, 65536 - 16, 16, 7),
            req(1, 0, 65536, 8, 8, b"past end"),
            req(0, 0, 0, 20000, 9),
            req(99, 0, 0, 0, 10),
            req(7, 0, 0, 0, 11),
            req(2, 0, 0, 0, 12),
        ]
    )
    put("nbd_request", "session", session)
    put("nbd_request", "write", req(1, 1, 512, 4, 1, b"abcd"))
    put("nbd_request", "read", req(0, 0, 0, 4096))
    put("nbd_request", "flush-disc", req(3) + req(2))
    put("nbd_request", "refused-write", req(1, 4, 0, 3, 1, b"xyz") + req(3))
    # The fuzz export's full zone (last 4 KiB) and its poisoned flush
    # (first byte 0xff), see fuzz/checks/nbd_request.rs.
    full = (64 << 10) - 4096
    put(
        "nbd_request",
        "disk-full",
        req(1, 0, full, 4, 1, b"full")
        + req(6, 0, full + 512, 512, 2)
        + req(4, 0, full - 512, 1024, 3)
        + req(1, 0, full - 4, 4, 4, b"fits")
        + req(3, 0, 0, 0, 5),
    )
    put("nbd_request", "fatal-flush", req(1, 1, 0, 1, 1, b"\xff") + req(3, 0, 0, 0, 2) + req(0, 0, 0, 1, 3))


def opt(option, data=b""):
    return struct.pack(">QII", 0x49484156454F5054, option, len(data)) + data


def info(name, types):
    return struct.pack(">I", len(name)) + name + struct.pack(">H", len(types)) + b"".join(
        struct.pack(">H", t) for t in types
    )


def handshake():
    flags = struct.pack(">I", 3)
    put("nbd_handshake", "go", flags + opt(7, info(b"diskhist", [3, 1, 2])))
    put("nbd_handshake", "export-name", struct.pack(">I", 1) + opt(1, b"diskhist"))
    put("nbd_handshake", "export-name-empty", struct.pack(">I", 3) + opt(1))
    put(
        "nbd_handshake",
        "haggle",
        flags
        + opt(8)
        + opt(3)
        + opt(6, info(b"", []))
        + opt(6, info(b"other", [1]))
        + opt(5)
        + opt(9, b"\0" * 8)
        + opt(11)
        + opt(1234)
        + opt(2),
    )
    put("nbd_handshake", "bad-flags", struct.pack(">I", 4) + opt(7, info(b"", [])))


# --- time -------------------------------------------------------------------
TIMES = [
    "2026-11-23T06:30:15.25+09:00",
    "2026-11-23T06-30-15Z",
    "2026-11-23T06-30-15.25+09-00",
    "2026-11-23T06:30:15Z",
    "2026-11-23t06:30:15.123456789z",
    "1970-01-01T00:00:00Z",
    "1677-09-21T00:12:44Z",
    "2262-04-11T23:47:16.854775807Z",
    "@1795415415.5",
    "@-1.5",
    "@0",
    "#42",
    "#0",
    "latest",
    " latest ",
]


def times():
    for i, t in enumerate(TIMES):
        put("time", str(i), t.encode())


if __name__ == "__main__":
    fixture_windows()
    synthetic()
    nbd()
    handshake()
    times()
    print("seeds written under", CORPUS, file=sys.stderr)
