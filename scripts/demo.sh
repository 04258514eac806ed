#!/bin/bash
# The main job on the bundled fixture: record a disk's history, then find
# out when a file appeared, when one changed and when one was deleted.
#
#   scripts/demo.sh [DISKHIST]        (run by `make demo`)
#
# fixtures/ext4-history.timed.dmlog is a dm-log-writes log, written by
# QEMU's blklogwrites driver, of a 16 MiB ext4 disk: mkfs; alpha.txt and
# notes/beta.txt created; gamma.txt created and alpha.txt rewritten;
# notes/beta.txt deleted (a sync after each step), with a `t=` mark before
# the first write and after every flush: 18 moments, one minute apart from
# 2026-11-23T06:30:00Z (fixtures/README says how it was made). The demo
# ingests it into a new store under target/demo, shows `info` and `log`,
# lists and reads files at two moments with `diskhist ls` and `cat`,
# exports an early and the final image and runs The Sleuth Kit on both;
# then, if `diskhist mount` works here, mounts the history, lists its
# moments, browses files/ at two of them, finds when gamma.txt appeared and
# compares the two moments' files with diff -r: no root, no loop mount.
# Everything it mounts it unmounts, also on failure.
# Last, fixtures/ext4-tamper.stream (a log cut and its mtime put back) goes
# into a second store, and `history` and `timeline --check` find when.
#
# Needs: fls and icat (sleuthkit); for the mount part /dev/fuse.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
diskhist=$(realpath "${1:-$root/target/release/diskhist}")
fixture=$root/fixtures/ext4-history.timed.dmlog
final_sha=$root/fixtures/ext4-history.final.sha256
# 06:35 is the moment after the flush that ends step 1 of the fixture's
# history (record 33): alpha.txt v1 and notes/beta.txt exist, gamma.txt does
# not yet. At 06:36 alpha.txt is v2 and gamma.txt is there.
early=${DEMO_EARLY:-2026-11-23T06:35:00Z}

for tool in fls icat; do
    command -v "$tool" >/dev/null || {
        echo "demo: $tool not found: install The Sleuth Kit (apt-get install sleuthkit)" >&2
        exit 1
    }
done
[[ -x $diskhist ]] || { echo "demo: $diskhist not built: run make build" >&2; exit 1; }

demo_dir=$root/target/demo
mkdir -p "$demo_dir"
# Keep only this run. Never delete through a mount a crashed run left.
if awk -v d="$demo_dir/" 'index($2, d) == 1 { found = 1 } END { exit !found }' /proc/mounts; then
    echo "demo: something is still mounted under $demo_dir (see /proc/mounts); unmount it first" >&2
    exit 1
fi
rm -rf "$demo_dir"/run.*
work=$(mktemp -d "$demo_dir/run.XXXXXX")
store=$work/store
mnt=$work/mnt
mount_pid=

cleanup() {
    set +e
    if [[ -n $mount_pid ]]; then
        if grep -q " $mnt fuse.diskhist " /proc/mounts; then umount "$mnt" || umount -l "$mnt"; fi
        kill -0 "$mount_pid" 2>/dev/null && kill "$mount_pid"
        wait "$mount_pid" 2>/dev/null
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
# The files of an image, without The Sleuth Kit's metadata files.
files() { fls -r -p "$1" | grep -v -e '\$' -e 'lost+found' || true; }

say "A store for a 16 MiB disk, and the history of the fixture recorded into it"
run "$diskhist" init "$store" --size 16M
run "$diskhist" ingest "$store" --format dmlog "$fixture"
echo "(the log's t= marks give its writes their times; a log without marks is stamped"
echo " as it is read, and \`serve\` stamps writes as they happen)"

say "What the store holds (keep the chain head in your case notes)"
run "$diskhist" info "$store"

say "The first records: seq, time, offset, length, kind"
printf '$ %s\n' "diskhist log $store | head -12"
"$diskhist" log "$store" | head -12
echo "..."
printf '$ %s\n' "diskhist log $store --json | tail -1"
"$diskhist" log "$store" --json | tail -1

say "Files at two moments, read straight from the store (no mount, no root)"
run "$diskhist" ls "$store" --at "$early" -l
run "$diskhist" ls "$store" --at latest -l
run "$diskhist" cat "$store" --at "$early" alpha.txt
run "$diskhist" cat "$store" --at latest alpha.txt
v1=$("$diskhist" cat "$store" --at "$early" alpha.txt)
v2=$("$diskhist" cat "$store" --at latest alpha.txt)
[[ $v1 == "alpha v1" && $v2 == "alpha v2" ]] || {
    echo "demo: alpha.txt reads '$v1' at $early and '$v2' now; expected alpha v1 then alpha v2" >&2
    exit 1
}

say "Every record checked: checksums, hash chain, content hashes, index"
run "$diskhist" verify "$store"

say "The disk after record ${early#\#} and now, as raw images"
run "$diskhist" export "$store" --at "$early" -o "$work/early.img"
run "$diskhist" export "$store" --at latest -o "$work/final.img"
want=$(cut -d' ' -f1 "$final_sha")
have=$(sha256sum "$work/final.img" | cut -d' ' -f1)
if [[ $want == "$have" ]]; then
    echo "final image = the disk QEMU wrote (sha256 $have, fixtures/ext4-history.final.sha256)"
else
    echo "demo: the final image's sha256 $have differs from the disk QEMU wrote ($want)" >&2
    exit 1
fi

say "The Sleuth Kit on both: fls -r"
echo "--- $early"
files "$work/early.img"
echo "--- latest"
files "$work/final.img"
echo "--- what changed (diff of the two listings)"
diff <(files "$work/early.img") <(files "$work/final.img") || true
alpha=$(fls -r -p "$work/final.img" | awk -F'\t' '$2 == "alpha.txt" { split($1, a, " "); sub(/:$/, "", a[2]); print a[2] }')
if [[ -n $alpha ]]; then
    printf '$ icat early.img %s; icat final.img %s    (alpha.txt)\n' "$alpha" "$alpha"
    icat "$work/early.img" "$alpha"
    icat "$work/final.img" "$alpha"
fi

say "Blocks that differ between the two states (exit status 1: they differ)"
# diff answers like cmp: 0 equal, 1 different, 2 trouble.
printf '$ %s\n' "diskhist diff $store '$early' latest | head -5"
rc=0; ranges=$("$diskhist" diff "$store" "$early" latest) || rc=$?
head -5 <<<"$ranges"
[[ $rc == 1 ]] || { echo "demo: diff exited $rc, expected 1 (the states differ)" >&2; exit 1; }
printf '$ %s\n' "diskhist diff $store '$early' latest --summary"
rc=0; "$diskhist" diff "$store" "$early" latest --summary || rc=$?
[[ $rc == 1 ]] || { echo "demo: diff --summary exited $rc, expected 1" >&2; exit 1; }

if ! "$diskhist" mount --help >/dev/null 2>&1; then
    say "diskhist mount is not available in this build: skipping the mounted tree"
    exit 0
fi
if [[ ! -c /dev/fuse ]]; then
    say "/dev/fuse is missing (modprobe fuse): skipping the mounted tree"
    exit 0
fi

say "The whole history as a read-only tree"
mkdir "$mnt"
printf '$ %s &\n' "diskhist mount $store $mnt"
"$diskhist" mount "$store" "$mnt" 2>"$work/mount.log" &
mount_pid=$!
for _ in $(seq 100); do
    grep -q " $mnt fuse.diskhist " /proc/mounts && break
    kill -0 "$mount_pid" 2>/dev/null || break
    sleep 0.1
done
if ! grep -q " $mnt fuse.diskhist " /proc/mounts; then
    echo "demo: diskhist mount did not come up:" >&2
    cat "$work/mount.log" >&2
    exit 1
fi
grep " $mnt " /proc/mounts
run ls -l "$mnt"
run cat "$mnt/latest/info"
printf '$ readlink %s\n' "'$mnt/at/$early'"
readlink "$mnt/at/$early"

# at/ names a moment with '-' for ':' (so file managers and Windows shares
# take it); a lookup accepts either spelling and any time format diskhist does.
say "The moments of the history, and the files at two of them"
run ls "$mnt/at"
run cat "$mnt/at/$early/info"
run ls -l "$mnt/at/$early/files" "$mnt/latest/files"
run cat "$mnt/at/$early/files/alpha.txt" "$mnt/latest/files/alpha.txt"

say "When did gamma.txt appear? Look for it in every moment's files/"
prev=
found=
for moment in $(ls "$mnt/at"); do
    # A moment before mkfs has no filesystem, so no files/: that is fine.
    # A mount that stops answering must not hang the demo: hence the timeout.
    rc=0; timeout 60 test -e "$mnt/at/$moment/files/gamma.txt" || rc=$?
    [[ $rc != 124 ]] || { echo "demo: $mnt/at/$moment did not answer in 60 s" >&2; exit 1; }
    if [[ $rc == 0 ]]; then
        found=$moment
        break
    fi
    prev=$moment
done
if [[ -z $found ]]; then
    echo "demo: gamma.txt is in no state of the mounted history" >&2
    exit 1
fi
echo "gamma.txt is first there at $found (record $(sed -n 's/^seq: //p' "$mnt/at/$found/info"));" \
    "at ${prev:-the start} it was not"

say "What changed in the files between the two moments"
printf '$ %s\n' "diff -r $mnt/at/$early/files $mnt/latest/files"
diff -r "$mnt/at/$early/files" "$mnt/latest/files" || true

say "Unmounting"
run umount "$mnt"
wait "$mount_pid"
mount_pid=

say "When did it change: a log edited and its mtime put back (fixtures/ext4-tamper.stream)"
tstore=$work/tamper-store
run "$diskhist" init "$tstore" --size 16M
run "$diskhist" ingest "$tstore" --format stream "$root/fixtures/ext4-tamper.stream"
echo "(every change of the log, found by jumping from one write to its blocks to the next:)"
run "$diskhist" history "$tstore" /var/log/app.log --stats
echo "(the times the file claims against the times its blocks were recorded:)"
printf '$ %s\n' "diskhist timeline $tstore --check"
status=0
"$diskhist" timeline "$tstore" --check || status=$?
if [[ $status != 1 ]]; then
    echo "demo: timeline --check should have found the planted contradiction (exit $status)" >&2
    exit 1
fi
echo "(exit 1: a contradiction found; the log lost lines 61-80 at that record, yet claims no change)"
echo "done: the stores are in $store and $tstore"
