#!/usr/bin/env bash
# Write throughput of `diskhist serve` against qemu-nbd serving a raw file,
# same client, same data, same run. Prints MiB/s of each and the ratio
# (diskhist / qemu-nbd; the target is >= 0.9).
#
# Client: qemu-img convert -n -f raw -O raw SRC URI (8 requests in flight,
# 2 MiB each, and one FLUSH at the end, which both servers must fsync).
# qemu-nbd: -f raw --cache=writeback (its default: page cache, fsync on
# FLUSH), --aio=threads, -k SOCKET, --persistent. Each target starts empty
# (a fresh store; a fresh sparse raw file). The source is random data (no
# compression or deduplication helps diskhist).
#
# Usage: [ROUNDS=5] [TMPFS=1] benches/nbd_write.sh [SIZE_MIB=1024] [WORKDIR=mktemp]
#   TMPFS=1: the source and both targets on tmpfs (/dev/shm), so that
#   neither side's writeback decides the ratio.
#   DISKHIST=PATH: the binary to measure (default: target/release/diskhist,
#   built first).
#   PAGE_REPORTING=keep: leave the VM's free page reporting on; by default
#   it is deferred for the run where the kernel allows it, so that the
#   host's page faults do not decide the rounds
#   (benches/lib/page_reporting.bash).
# Prints each round and the medians.
set -euo pipefail
size_mib=${1:-1024}
if [ "${TMPFS:-0}" = 1 ]; then base=/dev/shm; else base=/var/tmp; fi
work=${2:-$(mktemp -d "$base/diskhist-bench.XXXXXX")}
here=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${DISKHIST:-}" ]; then
    cargo build --release --quiet --manifest-path "$here/Cargo.toml"
fi
bin=${DISKHIST:-$here/target/release/diskhist}
pids=()
# shellcheck source=lib/page_reporting.bash
. "$here/benches/lib/page_reporting.bash"
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$work"; restore_page_reporting; }
trap cleanup EXIT
hold_page_reporting

src="$work/src.img"
head -c $((size_mib << 20)) /dev/urandom > "$src"
wait_sock() { for _ in $(seq 200); do [ -S "$1" ] && return 0; sleep 0.05; done; echo "no socket $1" >&2; exit 1; }
seconds() { local t0 t1; t0=$(date +%s.%N); "$@"; t1=$(date +%s.%N); echo "$t1 - $t0" | bc -l; }

# One round: each server gets a fresh, empty target and the same client.
# Before each measurement `sync` writes back what earlier steps (building
# the source, the previous round) left dirty, so neither side pays for the
# other's writeback. Rounds alternate which server goes first.
run_diskhist() {
    rm -rf "$work/store"
    "$bin" init "$work/store" --size "${size_mib}M" >/dev/null
    "$bin" serve "$work/store" --socket "$work/dh.sock" >/dev/null 2>"$work/dh.log" & pids+=($!)
    wait_sock "$work/dh.sock"
    sync
    seconds qemu-img convert -n -f raw -O raw "$src" "nbd+unix:///?socket=$work/dh.sock"
    kill "${pids[-1]}"; wait "${pids[-1]}" || true
}
run_qemu_nbd() {
    rm -f "$work/target.raw"
    truncate -s "${size_mib}M" "$work/target.raw"
    qemu-nbd -f raw --cache=writeback --aio=threads --persistent -k "$work/qn.sock" "$work/target.raw" >/dev/null 2>&1 & pids+=($!)
    wait_sock "$work/qn.sock"
    sync
    seconds qemu-img convert -n -f raw -O raw "$src" "nbd+unix:///?socket=$work/qn.sock"
    kill "${pids[-1]}"; wait "${pids[-1]}" || true
}
rounds=${ROUNDS:-5}
echo "# $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); work dir $work ($(stat -f -c %T "$work"))"
t_dh_all=(); t_qn_all=()
for r in $(seq "$rounds"); do
    if [ $((r % 2)) = 1 ]; then
        t_dh_all+=("$(run_diskhist)"); t_qn_all+=("$(run_qemu_nbd)")
    else
        t_qn_all+=("$(run_qemu_nbd)"); t_dh_all+=("$(run_diskhist)")
    fi
    printf 'round %d: diskhist %.2f s, qemu-nbd %.2f s\n' "$r" "${t_dh_all[-1]}" "${t_qn_all[-1]}"
done
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
t_dh=$(median "${t_dh_all[@]}")
t_qn=$(median "${t_qn_all[@]}")

rate() { echo "$size_mib / $1" | bc -l; }
printf 'diskhist serve: %6.1f MiB/s (median of %d: %.2f s)\n' "$(rate "$t_dh")" "$rounds" "$t_dh"
printf 'qemu-nbd:       %6.1f MiB/s (median of %d: %.2f s)\n' "$(rate "$t_qn")" "$rounds" "$t_qn"
printf 'ratio diskhist/qemu-nbd: %.2f (target >= 0.90)\n' "$(echo "$t_qn / $t_dh" | bc -l)"
du -sh "$work/store" | sed 's/^/store size: /'
