#!/usr/bin/env bash
# Runs every test of easymo and exits non-zero on any failure:
#   1. the Rust-level #[pg_test] units (cargo pgrx test, its own throw-away cluster);
#   2. the release build, installed into the system PostgreSQL 15;
#   3. every pg_regress suite under tests/pg_regress, against a fresh private cluster.
# On a fresh Debian 12 machine it first installs what is missing (see scripts/common.sh).
source "$(dirname "$0")/common.sh"
cd "$ROOT"

PORT="${EASYMO_TEST_PORT:-28816}"
ensure_toolchain

passed=0; failed=0
count_result() { if [ "$1" -eq 0 ]; then passed=$((passed + $2)); else failed=$((failed + ${3:-1})); fi; }

# 1. cargo pgrx test runs initdb itself (and refuses an existing data directory) and installs its
#    debug build over the system's easymo.so: run it before our cluster starts, and install the
#    release build afterwards.
log "cargo pgrx test"
pgrx_data="$(cluster_base)/pgrx-test"
rm -rf "$pgrx_data"; mkdir -p "$pgrx_data"
[ "$PG_USER" = postgres ] && chown postgres:postgres "$pgrx_data"
set +e
CARGO_PGRX_TEST_RUNAS=$PG_USER CARGO_PGRX_TEST_PGDATA="$pgrx_data" \
    cargo pgrx test pg15 2>&1 | tee target/pgrx-test.log
rc=${PIPESTATUS[0]}
set -e
units=$(grep -Eo 'test result: [a-z]+\. [0-9]+ passed' target/pgrx-test.log | awk '{s+=$4} END {print s+0}')
count_result "$rc" "$units"

# 2. The release build the suites run against.
install_extension

# 3. pg_regress: one suite per file in tests/pg_regress/sql, against a fresh private cluster.
log "pg_regress"
EXTRA_PG_CONF="fsync = off" cluster_start test "$PORT" fresh
trap 'cluster_stop test' EXIT
# Every suite must be in the schedule: a forgotten file would silently never run.
for f in tests/pg_regress/sql/*.sql; do
    grep -qx "test: $(basename "$f" .sql)" tests/pg_regress/schedule \
        || die "$f is not listed in tests/pg_regress/schedule"
done
suites=$(grep -c '^test: ' tests/pg_regress/schedule)
out="$ROOT/target/pg_regress"
rm -rf "$out"; mkdir -p "$out"
set +e
/usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress \
    --host="$CLUSTER_SOCK" --port="$PORT" --user=postgres \
    --inputdir=tests/pg_regress --outputdir="$out" --dbname=easymo_regress \
    --schedule=tests/pg_regress/schedule 2>&1 | tee "$out/summary.txt"
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" -ne 0 ] && [ -f "$out/regression.diffs" ]; then
    log "regression.diffs"; cat "$out/regression.diffs"
fi
regress_failed=$(grep -c 'FAILED\|^not ok' "$out/summary.txt" || true)
count_result "$rc" "$suites" "${regress_failed:-1}"

echo
echo "easymo tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
