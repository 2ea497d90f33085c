#!/usr/bin/env bash
# Benchmarks: builds and installs the release build, starts a private cluster (port 28817),
# runs each hot path's benchmark against its baselines in the same run, and prints one table of
# ratios. `benches/run.sh flags` runs one; no argument runs them all. Figures vary with the
# machine: the ratios are what to compare. Not a test: nothing here fails on a slow machine.
source "$(dirname "$0")/../scripts/common.sh"
cd "$ROOT"

PORT="${EASYMO_BENCH_PORT:-28817}"
# PostGIS and Redis are baselines of the location and cache benchmarks only.
ensure_toolchain postgresql-15-postgis-3 redis-server
install_extension
# synchronous_commit off: a commit's WAL flush would otherwise dominate every write benchmark
# and hide the cost of the functions themselves.
EXTRA_PG_CONF=$'shared_buffers = 1GB\nmax_connections = 50\nmax_parallel_workers_per_gather = 0\nsynchronous_commit = off' \
    cluster_start bench "$PORT" fresh
trap 'cluster_stop bench' EXIT
cpsql -q -d postgres -c "CREATE DATABASE easymo_bench"
cpsql -q -d easymo_bench -c "CREATE EXTENSION easymo"

export BENCH_RESULTS="$ROOT/target/bench-results.txt"
: > "$BENCH_RESULTS"
source benches/lib.sh
benches=("$@")
[ "${#benches[@]}" -gt 0 ] || benches=(flags money wallets notifications location cache queues)
for b in "${benches[@]}"; do
    log "benchmark: $b"
    source "benches/$b.sh"
done

echo
printf '%-10s | %-62s | %12s | %s\n' bench measure value goal
printf '%s\n' "-----------+----------------------------------------------------------------+--------------+------------------"
while IFS='|' read -r bench measure value goal; do
    printf '%-10s | %-62s | %12s | %s\n' "$bench" "$measure" "$value" "$goal"
done < "$BENCH_RESULTS"
