# Sourced by the NBD write benches (not a bench itself).
#
# This machine kind is a VM whose balloon has free page reporting: memory
# the guest frees goes back to the host, and the next time the guest
# touches such a page the host faults it in again, 2 to 5 us per 4 KiB page
# as measured here. Whichever process is handed those pages pays: one
# round writing 1 GiB into tmpfs took 1.1 s or 3.5 s depending on the pages
# it got, not on the server, and the two servers' medians over five rounds
# swung the ratio from 0.66 to 1.15 with the same binaries.
#
# This kind's kernel lets root defer reporting (min_free_ms: how long a page
# must stay free first; max_waiting_mib: how much may wait). For the run,
# hold_page_reporting defers it past the run's length, so pages one round
# frees are still the guest's when the next round takes them, and then
# touches the free memory once (all but 3 GiB of it, written into a
# tmpfs file and deleted: 21 to 52 s measured here), since memory reported before the run
# would still cost whichever round is handed it first. The cleanup puts the
# settings back. Kernels without these knobs (mainline has
# only page_reporting_order) are left as they are, and the bench says so.
# PAGE_REPORTING=keep leaves them alone here too.

page_reporting_dir=/sys/module/page_reporting/parameters
page_reporting_saved=

hold_page_reporting() {
    local d=$page_reporting_dir
    if [ "${PAGE_REPORTING:-}" = keep ]; then
        echo "# free page reporting to the host: left as it is (PAGE_REPORTING=keep)"
        return 0
    fi
    if ! [ -w "$d/min_free_ms" ] || ! [ -w "$d/max_waiting_mib" ]; then
        if [ -d "$d" ]; then
            echo "# free page reporting to the host is on and cannot be deferred here: rounds may differ by the host's page faults"
        fi
        return 0
    fi
    page_reporting_saved="$(cat "$d/min_free_ms") $(cat "$d/max_waiting_mib")"
    if echo 60000 > "$d/min_free_ms" && echo 1048576 > "$d/max_waiting_mib"; then
        echo "# free page reporting to the host deferred for this run (min_free_ms 60000, max_waiting_mib 1048576; were ${page_reporting_saved% *} and ${page_reporting_saved#* })"
        touch_free_memory
    else
        restore_page_reporting
        echo "# free page reporting to the host could not be deferred: rounds may differ by the host's page faults"
    fi
}

restore_page_reporting() {
    [ -n "$page_reporting_saved" ] || return 0
    echo "${page_reporting_saved% *}" > "$page_reporting_dir/min_free_ms" || true
    echo "${page_reporting_saved#* }" > "$page_reporting_dir/max_waiting_mib" || true
    page_reporting_saved=
}

# Write all but 3 GiB of the available memory once into a file on
# /dev/shm, and delete it.
touch_free_memory() {
    local avail_mib t0 t1 f=/dev/shm/diskhist-bench-touch.$$
    avail_mib=$(awk '/^MemAvailable:/ { print int($2 / 1024) }' /proc/meminfo)
    local mib=$((avail_mib - 3072))
    [ "$mib" -gt 0 ] || return 0
    t0=$(date +%s.%N)
    # Stops early where /dev/shm is smaller: what it wrote is said.
    dd if=/dev/zero of="$f" bs=1M count="$mib" status=none 2>/dev/null || true
    local wrote
    wrote=$(($(stat -c %s "$f" 2>/dev/null || echo 0) >> 20))
    rm -f "$f"
    t1=$(date +%s.%N)
    printf '# touched %d MiB of free memory once, in %.1f s\n' "$wrote" "$(echo "$t1 - $t0" | bc -l)"
}
