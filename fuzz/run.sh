#!/usr/bin/env bash
# Fuzz every target for DURATION seconds each: bash fuzz/run.sh DURATION
#
# Installs cargo-fuzz if it is missing, builds all targets (AddressSanitizer),
# then runs each target in turn, starting from the committed corpus in
# fuzz/corpus/<target>/. Exits non-zero if any target crashed, naming the
# input that crashed it (under fuzz/artifacts/<target>/).
#
# New inputs are found in a temporary directory. Runs of 60 seconds or more
# merge the ones that add coverage into fuzz/corpus/<target>/ (review and
# commit them); shorter runs, the CI smoke test, leave the tree as it was.
# FUZZ_GROW=1 or FUZZ_GROW=0 overrides that choice.
#
# Works with the stable toolchain: cargo-fuzz needs nightly-only rustc flags
# (-Zsanitizer), which RUSTC_BOOTSTRAP=1 unlocks. FUZZ_SANITIZER=none skips
# AddressSanitizer (faster; the parsers are safe Rust). FUZZ_TARGETS="a b"
# runs only those targets.
set -euo pipefail

usage() {
    echo "usage: bash fuzz/run.sh DURATION   (seconds per target, e.g. 15 or 600)" >&2
    exit 2
}
[ $# -eq 1 ] || usage
case "$1" in '' | *[!0-9]*) usage ;; esac
duration=$1
[ "$duration" -gt 0 ] || usage

fuzz_dir=$(cd "$(dirname "$0")" && pwd)
cd "$fuzz_dir"
export RUSTC_BOOTSTRAP=1
sanitizer=${FUZZ_SANITIZER:-address}
if [ -n "${FUZZ_GROW:-}" ]; then
    grow=$FUZZ_GROW
elif [ "$duration" -ge 60 ]; then
    grow=1
else
    grow=0
fi

if ! command -v "${CXX:-c++}" >/dev/null 2>&1; then
    echo "run.sh: no C++ compiler (${CXX:-c++}): libfuzzer-sys compiles libFuzzer, which is C++;" \
        "install one (Debian: apt-get install g++)" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "run.sh: cargo-fuzz is not installed; installing it: cargo install cargo-fuzz --locked"
    cargo install cargo-fuzz --locked
fi

targets=${FUZZ_TARGETS:-$(cargo fuzz list)}

start=$(date +%s)
echo "run.sh: building the fuzz targets ($(cargo fuzz --version), sanitizer $sanitizer)"
cargo fuzz build -s "$sanitizer"
echo "run.sh: built in $(($(date +%s) - start)) s"

work=$(mktemp -d "${TMPDIR:-/tmp}/diskhist-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT

failed=()
for t in $targets; do
    mkdir -p "corpus/$t" "$work/$t"
    log="$work/$t.log"
    echo "run.sh: fuzzing $t for $duration s (corpus: $(find "corpus/$t" -type f | wc -l) inputs)"
    # New inputs go to the first directory (temporary); the committed corpus
    # is only read.
    if cargo fuzz run -s "$sanitizer" "$t" "$work/$t" "corpus/$t" -- \
        -max_total_time="$duration" -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
        echo "run.sh: $t: no crash in ${runs:-?} executions; $(find "$work/$t" -type f | wc -l) new inputs"
    else
        failed+=("$t")
        echo "run.sh: $t FAILED; the end of its log:" >&2
        grep -v '^#[0-9]' "$log" | tail -40 >&2
        artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
        if [ -n "$artifact" ]; then
            echo "run.sh: $t: crashing input: $fuzz_dir/${artifact#"$fuzz_dir"/}" >&2
            echo "run.sh: reproduce: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run $t $artifact" >&2
        fi
        continue
    fi
    if [ "$grow" = 1 ] && [ -n "$(ls -A "$work/$t")" ]; then
        before=$(find "corpus/$t" -type f | wc -l)
        cargo fuzz run -s "$sanitizer" "$t" "corpus/$t" "$work/$t" -- -merge=1 \
            >"$work/$t.merge.log" 2>&1 || {
            echo "run.sh: $t: merging new inputs into corpus/$t failed:" >&2
            tail -20 "$work/$t.merge.log" >&2
            failed+=("$t (merge)")
            continue
        }
        echo "run.sh: $t: corpus/$t grew from $before to $(find "corpus/$t" -type f | wc -l) inputs"
    fi
done

echo "run.sh: done in $(($(date +%s) - start)) s"
if [ ${#failed[@]} -gt 0 ]; then
    echo "run.sh: crashes in: ${failed[*]}" >&2
    exit 1
fi
