#!/bin/bash
# Files inside a state (MOUNT/at/<time>/files/) against the kernel's ext4
# reading the same state's disk.img through a read-only loop mount
# (`ro,noload`), side by side in one run, page cache dropped and the
# diskhist mount restarted before every cold measurement:
#
#   1. reading a 200 MiB file at an old state (history of >= 10,000 records)
#   2. `ls -l` of a directory of 10,000 files
#   3. `find files/ -type f | wc -l` over a tree of 50,000 files
#   4. the daemon's peak RSS after browsing 100 different states
#
#   benches/files_read.sh [WORKDIR]      ROUNDS=3 (median)
#
# REUSE=1 keeps the store built in WORKDIR for the next run with REUSE=1
# (to measure the daemon again without rebuilding the history).
#
# Needs root, e2fsprogs, python3.
set -euo pipefail

WORK=${1:-$(mktemp -d /var/tmp/diskhist-files-bench.XXXXXX)}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DISKHIST=${DISKHIST:-$ROOT/target/release/diskhist}
ROUNDS=${ROUNDS:-3}
[ -x "$DISKHIST" ] || (cd "$ROOT" && cargo build --release --quiet)

FS_MIB=1024          # the ext4 filesystem
DISK_MIB=1280        # the disk: the last 256 MiB take the later history
T0=2026-11-23T06:30:00Z
DPID=
LOOP=
cleanup() {
    set +e
    mountpoint -q "$WORK/kern" && umount "$WORK/kern"
    [ -n "$LOOP" ] && losetup -d "$LOOP"
    mountpoint -q "$WORK/dh" && umount "$WORK/dh"
    [ -n "$DPID" ] && kill "$DPID" 2>/dev/null
    mountpoint -q "$WORK/build" && umount "$WORK/build"
    [ "${REUSE:-0}" = 1 ] || rm -rf "$WORK/S" "$WORK/disk.img" "$WORK/later.dmlog" "$WORK/built"
}
trap cleanup EXIT INT TERM
mkdir -p "$WORK/dh" "$WORK/kern" "$WORK/build"

if [ "${REUSE:-0}" = 1 ] && [ -f "$WORK/built" ]; then
    echo "# reusing the store in $WORK/S"
    OLD=$(cat "$WORK/built")
else
echo "# building: a ${FS_MIB} MiB ext4 (a 200 MiB file, 10,000 files in one directory, 50,000 in a tree) in a ${DISK_MIB} MiB disk"
truncate -s ${DISK_MIB}M "$WORK/disk.img"
mkfs.ext4 -q -F -E nodiscard "$WORK/disk.img" ${FS_MIB}M
mount -o loop "$WORK/disk.img" "$WORK/build"
head -c 200M /dev/urandom > "$WORK/build/big.bin"
python3 - "$WORK/build" <<'EOF'
import os, sys
root = sys.argv[1]
os.mkdir(f"{root}/many")
for i in range(10000):
    with open(f"{root}/many/file{i:05d}.txt", "w") as f:
        f.write(f"file {i}\n")
for d in range(100):
    os.makedirs(f"{root}/tree/d{d:03d}")
    for i in range(500):
        with open(f"{root}/tree/d{d:03d}/f{i:03d}", "w") as f:
            f.write("x" * (i % 97))
EOF
umount "$WORK/build"
"$DISKHIST" init "$WORK/S" --size ${DISK_MIB}M >/dev/null
"$DISKHIST" import "$WORK/S" "$WORK/disk.img" --at "$T0" -q 2>/dev/null
OLD=$("$DISKHIST" log "$WORK/S" | tail -1 | awk '{print $1}')
echo "# the later history: 10,000 writes of 4 KiB past the filesystem, 100 moments"
python3 - "$WORK/later.dmlog" "$FS_MIB" <<'EOF'
import struct, sys, os
out, fs_mib = sys.argv[1], int(sys.argv[2])
ss = 4096
t0 = 1795415400 * 10**9 + 3600 * 10**9          # an hour after T0
blocks = [struct.pack('<QQQI', 0x006a736677736872, 1, 0, ss).ljust(ss, b'\0')]
n = 0
for i in range(10000):
    if i % 100 == 0:
        name = b't=%d' % (t0 + (i // 100) * 10**9)
        blocks.append(struct.pack('<QQQQ', 0, 0, 8, len(name)).ljust(32, b'\0') + name.ljust(ss - 32, b'\0'))
        n += 1
    sector = fs_mib * 256 + (i * 7919) % 65536
    blocks.append(struct.pack('<QQQQ', sector, 1, 0, 0).ljust(ss, b'\0'))
    blocks.append(os.urandom(ss))
    n += 1
blocks[0] = struct.pack('<QQQI', 0x006a736677736872, 1, n, ss).ljust(ss, b'\0')
open(out, 'wb').write(b''.join(blocks))
EOF
"$DISKHIST" ingest "$WORK/S" "$WORK/later.dmlog" -q 2>/dev/null
echo "$OLD" > "$WORK/built"
fi
echo "# store: $("$DISKHIST" info "$WORK/S" | grep records:) ; the old state is #$OLD"

start_mount() {
    # stdout away from any pipe: the daemon outlives the command it serves
    "$DISKHIST" mount "$WORK/S" "$WORK/dh" >/dev/null 2>>"$WORK/mount.log" &
    DPID=$!
    for _ in $(seq 200); do mountpoint -q "$WORK/dh" && return; sleep 0.05; done
    echo "mount did not appear" >&2; exit 1
}
stop_mount() {
    # A loop device just detached may hold disk.img a moment longer.
    for _ in $(seq 100); do umount "$WORK/dh" 2>/dev/null && break; sleep 0.1; done
    mountpoint -q "$WORK/dh" && { echo "cannot unmount $WORK/dh" >&2; exit 1; }
    wait "$DPID" 2>/dev/null || true; DPID=
}
cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
secs() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null; t1=$(date +%s.%N); echo "$t1 - $t0" | bc -l; }

STATE="seq/$OLD"
run_round() { # prints: dh_read kern_read dh_ls kern_ls dh_find kern_find
    local r=()
    stop_mount 2>/dev/null || true
    start_mount
    LOOP=$(losetup --read-only --find --show "$WORK/dh/$STATE/disk.img")
    mount -o ro,noload "$LOOP" "$WORK/kern"
    cold; r+=("$(secs cat "$WORK/dh/$STATE/files/big.bin")")
    cold; r+=("$(secs cat "$WORK/kern/big.bin")")
    umount "$WORK/kern"; losetup -d "$LOOP"; LOOP=
    stop_mount; start_mount
    LOOP=$(losetup --read-only --find --show "$WORK/dh/$STATE/disk.img")
    mount -o ro,noload "$LOOP" "$WORK/kern"
    cold; r+=("$(secs ls -l "$WORK/dh/$STATE/files/many")")
    cold; r+=("$(secs ls -l "$WORK/kern/many")")
    cold; r+=("$(secs sh -c "find '$WORK/dh/$STATE/files/tree' -type f | wc -l")")
    cold; r+=("$(secs sh -c "find '$WORK/kern/tree' -type f | wc -l")")
    umount "$WORK/kern"; losetup -d "$LOOP"; LOOP=
    echo "${r[*]}"
}
: > "$WORK/rounds"
# Not in a pipeline: run_round starts and stops the daemon, whose pid the
# main shell must know.
for i in $(seq "$ROUNDS"); do run_round >>"$WORK/rounds"; tail -1 "$WORK/rounds"; done
col() { awk -v c="$1" '{print $c}' "$WORK/rounds" | median; }
DR=$(col 1); KR=$(col 2); DL=$(col 3); KL=$(col 4); DF=$(col 5); KF=$(col 6)
printf '\n%-38s %12s %12s %10s\n' "files/ vs kernel ro,noload (cold)" diskhist kernel "ratio"
printf '%-38s %10.0f/s %10.0f/s %9.2fx   (target >= 0.8x)\n' "read 200 MiB (MiB/s)" "$(echo "200/$DR" | bc -l)" "$(echo "200/$KR" | bc -l)" "$(echo "$KR/$DR" | bc -l)"
printf '%-38s %11.3fs %11.3fs %9.2fx   (target < 1 s, within 3x: <= 3)\n' "ls -l of 10,000 files" "$DL" "$KL" "$(echo "$DL/$KL" | bc -l)"
printf '%-38s %11.3fs %11.3fs %9.2fx   (target within 3x: <= 3)\n' "find over 50,000 files" "$DF" "$KF" "$(echo "$DF/$KF" | bc -l)"

echo "# browsing 100 states: ls -l of many/ at each of 100 moments, peak RSS"
stop_mount; start_mount
for d in "$WORK"/dh/by-day/*/; do :; done
n=0
for e in "$WORK"/dh/by-day/*/*; do
    ls -l "$e/files/many" >/dev/null
    n=$((n + 1))
done
RSS=$(awk '/VmHWM/ {print $2}' /proc/$DPID/status)
printf '%-38s %8d states, peak RSS %6.1f MiB   (target < 200 MiB)\n' "browsing" "$n" "$(echo "$RSS/1024" | bc -l)"
