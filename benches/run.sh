#!/usr/bin/env bash
# Benchmarks: builds and installs the release build, starts a private cluster (port 28817),
# runs each hot path's benchmark against its baselines in the same run, and prints one table of
# ratios, each against its goal; exits non-zero when a goal is missed (a check for people, not
# part of CI). `benches/run.sh flags` runs one; no argument runs them all. Figures vary with the
# machine: the ratios are what to compare. Not a test: nothing here fails on a slow machine.
source "$(dirname "$0")/../scripts/common.sh"
cd "$ROOT"

PORT="${EASYMO_BENCH_PORT:-28817}"
# PostGIS and Redis are baselines of the location and cache benchmarks only.
ensure_toolchain postgresql-15-postgis-3 redis-server
install_extension
# synchronous_commit off: a commit's WAL flush would otherwise dominate every write benchmark
# and hide the cost of the functions themselves. easymo preloaded, as docs/installation.md
# recommends: counts go to shared memory, and get_cache answers from its shared copies.
# Huge pages for the server's shared memory, as docs/reference/cache.md recommends with
# easymo.cache_shared_memory: on 4 kB pages a cache hit's bucket, in a random place of the
# 64 MB of copies, cost a TLB miss, 0.3-0.5 µs a hit on this virtual machine (its page walks
# have two levels). Reserved for the run when this is root and the kernel has the memory, and
# given back after; without them the server starts on 4 kB pages (huge_pages = try) and the
# table says so.
huge_before=$(cat /proc/sys/vm/nr_hugepages)
give_back() { [ "$(id -u)" != 0 ] || echo "$huge_before" > /proc/sys/vm/nr_hugepages; }
trap give_back EXIT
if [ "$(id -u)" = 0 ]; then
    echo $((huge_before + 640)) > /proc/sys/vm/nr_hugepages 2>/dev/null || true
fi
EXTRA_PG_CONF=$'shared_buffers = 1GB\nhuge_pages = try\nmax_connections = 50\nmax_parallel_workers_per_gather = 0\nsynchronous_commit = off\nshared_preload_libraries = \'easymo\'\neasymo.cache_shared_memory = 64MB' \
    cluster_start bench "$PORT" fresh
trap 'cluster_stop bench; give_back' EXIT
cpsql -q -d postgres -c "CREATE DATABASE easymo_bench"
cpsql -q -d easymo_bench -c "CREATE EXTENSION easymo"

export BENCH_RESULTS="$ROOT/target/bench-results.txt"
: > "$BENCH_RESULTS"
source benches/lib.sh
LOG_COST_MS=$(log_cost_ms)
# Whether the server's shared memory is on huge pages (its mappings of 2 MB pages).
huge=unknown
if [ -r "/proc/$(head -1 "$CLUSTER_DIR/data/postmaster.pid")/smaps" ]; then
    huge=$(awk '/^KernelPageSize: *2048 kB/ { n++ } END { print n ? "on" : "off" }' "/proc/$(head -1 "$CLUSTER_DIR/data/postmaster.pid")/smaps")
fi
result setup "huge pages for shared memory" "$huge" ""
result setup "pgbench's per-transaction log, ms a transaction (taken off 1-client figures)" "$LOG_COST_MS" ""
benches=("$@")
[ "${#benches[@]}" -gt 0 ] || benches=(flags money wallets notifications location cache queues)
for b in "${benches[@]}"; do
    log "benchmark: $b"
    source "benches/$b.sh"
done

# met VALUE GOAL: whether a numeric VALUE meets a goal written as ">= 0.9", "<= 2", "< 50" or "> 1";
# a goal in another form (a note, a reference) is not a check.
met() {
    awk -v v="$1" -v g="$2" 'BEGIN {
        if (v !~ /^-?[0-9.]+$/ || g !~ /^(>=|<=|<|>) *-?[0-9.]+$/) exit 2
        op = g; sub(/ *-?[0-9.]+$/, "", op); t = g; sub(/^(>=|<=|<|>) */, "", t)
        ok = (op == ">=" && v + 0 >= t + 0) || (op == "<=" && v + 0 <= t + 0) || (op == "<" && v + 0 < t + 0) || (op == ">" && v + 0 > t + 0)
        exit ok ? 0 : 1 }'
}

echo
printf '%-13s | %-62s | %12s | %-10s | %s\n' bench measure value goal ""
printf '%s\n' "--------------+----------------------------------------------------------------+--------------+------------+-------"
missed=0
while IFS='|' read -r bench measure value goal; do
    verdict=""
    if [ -n "$goal" ]; then
        set +e; met "$value" "$goal"; rc=$?; set -e
        case "$rc" in 0) verdict="met" ;; 1) verdict="MISSED"; missed=$((missed + 1)) ;; esac
    fi
    printf '%-13s | %-62s | %12s | %-10s | %s\n' "$bench" "$measure" "$value" "$goal" "$verdict"
done < "$BENCH_RESULTS"
# A check for people, not part of CI: non-zero when a goal was missed on this run.
if [ "$missed" -gt 0 ]; then
    echo "$missed goal(s) missed on this run"
    exit 1
fi
echo "every goal met on this run"
