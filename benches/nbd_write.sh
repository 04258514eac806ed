#!/usr/bin/env bash
# Write throughput of `diskhist serve` against qemu-nbd serving a raw file,
# same client, same data, same run. Prints MiB/s of each and the ratio
# (diskhist / qemu-nbd; the target is >= 0.8).
#
# Client: qemu-img convert -n -f raw -O raw SRC URI (8 requests in flight,
# 2 MiB each, and one FLUSH at the end, which both servers must fsync).
# qemu-nbd: -f raw --cache=writeback (its default: page cache, fsync on
# FLUSH), --aio=threads, -k SOCKET, --persistent. Each target starts empty
# (a fresh store; a fresh sparse raw file). The source is random data (no
# compression or deduplication helps diskhist).
#
# Usage: benches/nbd_write.sh [SIZE_MIB=1024] [WORKDIR=mktemp]
set -euo pipefail
size_mib=${1:-1024}
work=${2:-$(mktemp -d /var/tmp/diskhist-bench.XXXXXX)}
here=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release --quiet --manifest-path "$here/Cargo.toml"
bin="$here/target/release/diskhist"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

src="$work/src.img"
head -c $((size_mib << 20)) /dev/urandom > "$src"
wait_sock() { for _ in $(seq 200); do [ -S "$1" ] && return 0; sleep 0.05; done; echo "no socket $1" >&2; exit 1; }
seconds() { local t0 t1; t0=$(date +%s.%N); "$@"; t1=$(date +%s.%N); echo "$t1 - $t0" | bc -l; }

# diskhist serve
"$bin" init "$work/store" --size "${size_mib}M" >/dev/null
"$bin" serve "$work/store" --socket "$work/dh.sock" 2>"$work/dh.log" & pids+=($!)
wait_sock "$work/dh.sock"
t_dh=$(seconds qemu-img convert -n -f raw -O raw "$src" "nbd+unix:///?socket=$work/dh.sock")
kill "${pids[-1]}"; wait "${pids[-1]}" || true

# qemu-nbd on a raw file
truncate -s "${size_mib}M" "$work/target.raw"
qemu-nbd -f raw --cache=writeback --aio=threads --persistent -k "$work/qn.sock" "$work/target.raw" & pids+=($!)
wait_sock "$work/qn.sock"
t_qn=$(seconds qemu-img convert -n -f raw -O raw "$src" "nbd+unix:///?socket=$work/qn.sock")

rate() { echo "$size_mib / $1" | bc -l; }
printf 'diskhist serve: %6.1f MiB/s (%.2f s)\n' "$(rate "$t_dh")" "$t_dh"
printf 'qemu-nbd:       %6.1f MiB/s (%.2f s)\n' "$(rate "$t_qn")" "$t_qn"
printf 'ratio diskhist/qemu-nbd: %.2f (target >= 0.80)\n' "$(echo "$t_qn / $t_dh" | bc -l)"
du -sh "$work/store" | sed 's/^/store size: /'
