#!/usr/bin/env bash
# Small synced writes through `diskhist serve` against qemu-nbd serving a
# raw file, same client (fio's nbd engine, libnbd), same run. Prints the
# IOPS of each and the ratio diskhist / qemu-nbd (target >= 1.0).
#
# Workloads: 4 KiB writes, 16 in flight (iodepth=16), a FLUSH after every
# 16 writes (fsync=16), unique incompressible data (refill_buffers,
# buffer_compress_percentage=0: neither deduplication nor compression helps
# diskhist); random (randwrite) and sequential (write) over the first
# SIZE of the disk. qemu-nbd as in benches/nbd_write.sh: -f raw
# --cache=writeback --aio=threads (page cache, fdatasync on FLUSH). Each
# target starts empty (a fresh store; a fresh sparse raw file); rounds
# alternate which server goes first; the medians are printed.
#
# Usage: [ROUNDS=3] [RUNTIME=15] [TMPFS=1] benches/nbd_fio.sh [SIZE_MIB=1024] [WORKDIR]
#   TMPFS=1: both targets on tmpfs (/dev/shm), so that neither side's
#   writeback decides the ratio (fdatasync then costs next to nothing).
#   PAGE_REPORTING=keep: leave the VM's free page reporting on (deferred
#   for the run by default: benches/lib/page_reporting.bash).
set -euo pipefail
size_mib=${1:-1024}
if [ "${TMPFS:-0}" = 1 ]; then base=/dev/shm; else base=/var/tmp; fi
work=${2:-$(mktemp -d "$base/diskhist-fio.XXXXXX")}
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${DISKHIST:-$here/target/release/diskhist}
[ -x "$bin" ] || cargo build --release --quiet --manifest-path "$here/Cargo.toml"
command -v fio >/dev/null || { echo "needs fio (apt-get install fio)" >&2; exit 1; }
fio --enghelp 2>/dev/null | grep -qw nbd || { echo "this fio has no nbd engine" >&2; exit 1; }
runtime=${RUNTIME:-15}
rounds=${ROUNDS:-3}
pids=()
# shellcheck source=lib/page_reporting.bash
. "$here/benches/lib/page_reporting.bash"
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$work"; restore_page_reporting; }
trap cleanup EXIT
hold_page_reporting

wait_sock() { for _ in $(seq 200); do [ -S "$1" ] && return 0; sleep 0.05; done; echo "no socket $1" >&2; exit 1; }

# fio against URI with pattern $1; prints the write IOPS.
run_fio() {
    local rw=$1 uri=$2
    fio --name=w --ioengine=nbd --uri="$uri" --rw="$rw" --bs=4k --iodepth=16 \
        --fsync=16 --size="${size_mib}M" --time_based --runtime="$runtime" \
        --refill_buffers --buffer_compress_percentage=0 --randrepeat=0 \
        --output-format=json 2>"$work/fio.err" |
        # (the nbd engine says "connected" on standard output first)
        python3 -c 'import json,sys; t=sys.stdin.read(); j=json.loads(t[t.index("{"):]); print("%.0f" % j["jobs"][0]["write"]["iops"])'
}

run_diskhist() {
    rm -rf "$work/store"
    "$bin" init "$work/store" --size "${size_mib}M" >/dev/null
    "$bin" serve "$work/store" --socket "$work/dh.sock" >/dev/null 2>"$work/dh.log" & pids+=($!)
    wait_sock "$work/dh.sock"
    sync
    run_fio "$1" "nbd+unix:///?socket=$work/dh.sock"
    kill "${pids[-1]}"; wait "${pids[-1]}" || true
    rm -rf "$work/store"
}
run_qemu_nbd() {
    rm -f "$work/target.raw"
    truncate -s "${size_mib}M" "$work/target.raw"
    qemu-nbd -f raw --cache=writeback --aio=threads --persistent -k "$work/qn.sock" "$work/target.raw" >/dev/null 2>&1 & pids+=($!)
    wait_sock "$work/qn.sock"
    sync
    run_fio "$1" "nbd+unix:///?socket=$work/qn.sock"
    kill "${pids[-1]}"; wait "${pids[-1]}" || true
    rm -f "$work/target.raw"
}
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo "# $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); work dir $work ($(stat -f -c %T "$work"))"
for rw in randwrite write; do
    dh=(); qn=()
    for r in $(seq "$rounds"); do
        if [ $((r % 2)) = 1 ]; then
            dh+=("$(run_diskhist "$rw")"); qn+=("$(run_qemu_nbd "$rw")")
        else
            qn+=("$(run_qemu_nbd "$rw")"); dh+=("$(run_diskhist "$rw")")
        fi
        printf '%s round %d: diskhist %s IOPS, qemu-nbd %s IOPS\n' "$rw" "$r" "${dh[-1]}" "${qn[-1]}"
    done
    m_dh=$(median "${dh[@]}"); m_qn=$(median "${qn[@]}")
    printf '%-9s 4k QD16 fsync=16: diskhist serve %6d IOPS, qemu-nbd %6d IOPS, ratio %.2f (target >= 1.00; median of %d, %ds each)\n' \
        "$rw" "$m_dh" "$m_qn" "$(echo "$m_dh / $m_qn" | bc -l)" "$rounds" "$runtime"
done
