#!/bin/sh
# Read speed of MOUNT/at/<time>/disk.img against xmount serving the same
# state, exported to a raw file, over FUSE as well (`xmount --in raw`).
#
#   benches/mount_read.sh [SIZE] [WORKDIR]     SIZE default 2G (e.g. 10G)
#   MOUNT_ARGS="--cache-size 0" benches/mount_read.sh   extra mount flags
#
# Prints, for both: sequential read MB/s (dd bs=1M, caches dropped first),
# the ratio diskhist/xmount; 4 KiB random-read latency (pread of SAMPLES
# aligned random offsets, readahead off; median and p99) cold (caches
# dropped) and hot (the same offsets read once first, no drop, so both
# sides serve from the page cache and their daemons' caches; measured
# after the cold passes), each with the ratio of medians xmount/diskhist
# (above 1: diskhist is faster); and the diskhist daemon's peak RSS
# (VmHWM). Needs root, xmount, python3.
#
# The random reads alternate between the two images, one read each in
# turn (which goes first alternates too), so that both see the disk as it
# is at that moment: this machine's disk latency drifts by 20% or more
# from one minute to the next, which two passes one after the other would
# measure as much as the daemons. Cold reads run ROUNDS times (default
# 3), each on fresh offsets and after dropping the caches; the ratio is
# that of the median round.
set -eu

SIZE=${1:-2G}
WORK=${2:-$(mktemp -d /var/tmp/diskhist-bench.XXXXXX)}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DISKHIST=${DISKHIST:-$ROOT/target/release/diskhist}
AT=2026-11-23T06:30:15Z
SAMPLES=${SAMPLES:-2000}
ROUNDS=${ROUNDS:-3}

[ -x "$DISKHIST" ] || (cd "$ROOT" && cargo build --release --quiet)
command -v xmount >/dev/null || { echo "needs xmount (apt-get install xmount)" >&2; exit 1; }

DPID=
cleanup() {
    umount "$WORK/dh" 2>/dev/null || umount -l "$WORK/dh" 2>/dev/null || true
    umount "$WORK/xm" 2>/dev/null || umount -l "$WORK/xm" 2>/dev/null || true
    [ -n "$DPID" ] && kill "$DPID" 2>/dev/null || true
    rm -rf "$WORK/S" "$WORK/src.img" "$WORK/exported.img"
}
trap cleanup EXIT INT TERM

mkdir -p "$WORK/dh" "$WORK/xm"
echo "# building a $SIZE store in $WORK (random content, incompressible)"
"$DISKHIST" init "$WORK/S" --size "$SIZE" >/dev/null
BYTES=$(python3 -c "import sys; s=sys.argv[1]; m={'K':1<<10,'M':1<<20,'G':1<<30,'T':1<<40}; print(int(s[:-1])*m[s[-1].upper()] if s[-1].isalpha() else int(s))" "$SIZE")
head -c "$BYTES" /dev/urandom > "$WORK/src.img"
"$DISKHIST" import "$WORK/S" "$WORK/src.img" --at "$AT" 2>/dev/null
rm -f "$WORK/src.img"
"$DISKHIST" export "$WORK/S" --at "$AT" -o "$WORK/exported.img" >/dev/null

"$DISKHIST" mount "$WORK/S" "$WORK/dh" ${MOUNT_ARGS:-} 2>"$WORK/mount.log" &
DPID=$!
xmount --in raw "$WORK/exported.img" --out raw "$WORK/xm" >/dev/null
for _ in $(seq 100); do grep -q " $WORK/dh " /proc/mounts && break; sleep 0.1; done
DH_IMG="$WORK/dh/at/$AT/disk.img"
XM_IMG=$(ls "$WORK"/xm/*.dd)

seq_read() { # file -> MB/s
    sync; echo 3 > /proc/sys/vm/drop_caches
    python3 - "$1" <<'EOF'
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
t = time.monotonic(); n = 0
while True:
    b = os.read(fd, 1 << 20)
    if not b: break
    n += len(b)
dt = time.monotonic() - t
print(f"{n / dt / 1e6:.1f}")
EOF
}

rand_read() { # cold|hot seed -> "dh_median dh_p99 xm_median xm_p99"
    if [ "$1" = cold ]; then sync; echo 3 > /proc/sys/vm/drop_caches; fi
    python3 - "$DH_IMG" "$XM_IMG" "$SAMPLES" "$1" "$2" <<'EOF'
import os, random, sys, time
fds = [os.open(f, os.O_RDONLY) for f in sys.argv[1:3]]
for fd in fds:
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
blocks = os.fstat(fds[0]).st_size // 4096
rng = random.Random(int(sys.argv[5]))
offs = [rng.randrange(blocks) * 4096 for _ in range(int(sys.argv[3]))]
if sys.argv[4] == "hot":
    for off in offs:
        for fd in fds:
            os.pread(fd, 4096, off)
lat = [[], []]
for i, off in enumerate(offs):
    for k in ((0, 1) if i % 2 == 0 else (1, 0)):
        t = time.perf_counter_ns()
        os.pread(fds[k], 4096, off)
        lat[k].append((time.perf_counter_ns() - t) / 1000)
for l in lat:
    l.sort()
print(" ".join(f"{l[len(l) // 2]:.1f} {l[int(len(l) * 0.99)]:.1f}" for l in lat))
EOF
}

DH_SEQ=$(seq_read "$DH_IMG")
XM_SEQ=$(seq_read "$XM_IMG")
COLD=""
for r in $(seq "$ROUNDS"); do
    COLD="$COLD$(rand_read cold "$r")
"
done
# After the cold passes: warming first would leave diskhist's own cache
# (which dropping the page cache does not empty) hot for the cold ones.
HOT=$(rand_read hot 42)
HWM=$(awk '/VmHWM/ {print $2 " " $3}' /proc/$DPID/status)
# The round whose ratio is the median of the rounds'.
COLD_MID=$(printf '%s' "$COLD" | python3 -c "
import sys
rows = sorted((float(r.split()[2]) / float(r.split()[0]), r.strip()) for r in sys.stdin if r.strip())
print(rows[len(rows) // 2][1])")
set -- $COLD_MID; DH_RAND="$1 $2"; XM_RAND="$3 $4"
set -- $HOT; DH_HOT="$1 $2"; XM_HOT="$3 $4"

echo "size:                    $SIZE"
echo "sequential diskhist:     $DH_SEQ MB/s"
echo "sequential xmount:       $XM_SEQ MB/s"
echo "ratio diskhist/xmount:   $(python3 -c "print(f'{$DH_SEQ/$XM_SEQ:.2f}')")"
echo "4k random diskhist:      median ${DH_RAND% *} us, p99 ${DH_RAND#* } us"
echo "4k random xmount:        median ${XM_RAND% *} us, p99 ${XM_RAND#* } us"
printf '%s' "$COLD" | awk '{printf "  cold round %d:           diskhist %s us, xmount %s us, ratio %.2f\n", NR, $1, $3, $3 / $1}'
echo "ratio xmount/diskhist:   $(python3 -c "print(f'{${XM_RAND% *}/${DH_RAND% *}:.2f}')") (median latency, cold, the median of $ROUNDS rounds; target >= 0.8)"
echo "4k random hot diskhist:  median ${DH_HOT% *} us, p99 ${DH_HOT#* } us"
echo "4k random hot xmount:    median ${XM_HOT% *} us, p99 ${XM_HOT#* } us"
echo "ratio xmount/diskhist:   $(python3 -c "print(f'{${XM_HOT% *}/${DH_HOT% *}:.2f}')") (median latency, page cache hot; target >= 0.8)"
echo "diskhist peak RSS:       $HWM (VmHWM, --cache-size 64M default)"
