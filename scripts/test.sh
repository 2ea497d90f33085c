#!/usr/bin/env bash
# Runs the tests of easymo and exits non-zero on any failure.
#
#   scripts/test.sh                 everything (what CI runs):
#     0. lint: cargo fmt --check and cargo clippy -D warnings (both crates), and released files
#        unchanged (scripts/check-released.sh), unsafe code only in src/postgres (scripts/check-unsafe.sh);
#     1. the Rust-level #[pg_test] units (cargo pgrx test, its own throw-away cluster);
#     2. the release build, installed into the system PostgreSQL 15;
#     3. every pg_regress suite (tests/pg_regress) and isolation spec (tests/isolation), against a
#        fresh private cluster;
#     4. the tests that race several real connections or compare with PostGIS (tests/integration),
#        on that cluster;
#     5. what a DBA does (tests/ops): backup/restore, a streaming replica, a transaction pooler,
#        DDL from another session, random queries;
#     6. the suites that need easymo preloaded, on that cluster restarted with it.
#   scripts/test.sh NAME...         only the named tests, in the order above: a pg_regress suite
#                                   or isolation spec by file name (cache, queue_claims, ...), an
#                                   ops test (backup, standby, pooler, ...), `lint`, `units`,
#                                   `integration` (all of it) or `integration:FILTER` (cargo test
#                                   filter). The cluster is set up as for the full run.
#   scripts/test.sh --debug ...     build the library in debug mode (faster to rebuild).
#   scripts/test.sh --pg 16 ...     on PostgreSQL 16 (15, 16, 17, 18; 15 is the default), or
#   scripts/test.sh --pg all ...    on each of them in turn: one summary line per version, and
#                                   the combined `easymo tests: N passed, M failed` last.
# On a fresh Debian 12 machine it first installs what is missing (see scripts/common.sh).
PROFILE=release
PG_ARG=15
while [ $# -gt 0 ]; do
    case "$1" in
        --debug) PROFILE=debug; shift ;;
        --pg) PG_ARG="${2:?--pg needs a version: 15, 16, 17, 18 or all}"; shift 2 ;;
        *) break ;;
    esac
done
if [ "$PG_ARG" = all ]; then
    # Each version in a process of its own (its own build directory and cluster), in turn.
    total_passed=0; total_failed=0; lines=()
    for v in 15 16 17 18; do
        args=(--pg "$v"); [ "$PROFILE" = debug ] && args=(--debug "${args[@]}")
        set +e
        "$0" "${args[@]}" "$@" 2>&1 | tee "/tmp/easymo-test-pg$v.$$.log"
        set -e
        summary=$(grep -Eo 'easymo tests: [0-9]+ passed, [0-9]+ failed' "/tmp/easymo-test-pg$v.$$.log" | tail -1)
        rm -f "/tmp/easymo-test-pg$v.$$.log"
        if [ -z "$summary" ]; then summary="easymo tests: 0 passed, 1 failed"; fi
        p=$(echo "$summary" | awk '{print $3}'); f=$(echo "$summary" | awk '{print $5}')
        total_passed=$((total_passed + p)); total_failed=$((total_failed + f))
        lines+=("PostgreSQL $v: $p passed, $f failed")
    done
    echo
    printf '%s\n' "${lines[@]}"
    echo "easymo tests: $total_passed passed, $total_failed failed"
    [ "$total_failed" -eq 0 ]
    exit
fi
export EASYMO_PG_MAJOR="$PG_ARG"
source "$(dirname "$0")/common.sh"
cd "$ROOT"

PORT="${EASYMO_TEST_PORT:-28816}"
SELECTED=("$@")
# Where this version's results go (target/pg_regress for 15, target/pg_regress-pg16 ...).
SUFFIX=""; [ "$PG_MAJOR" = 15 ] || SUFFIX="-pg$PG_MAJOR"
# Suites whose outside tool this version cannot have: plpgsql_check comes from Debian, which has
# no PostgreSQL 16 (15 from bookworm, 17 from trixie, 18 from sid; scripts/postgres.sh). The same
# SQL is checked on the other three versions.
NOT_HERE=()
[ "$PG_MAJOR" = 16 ] && NOT_HERE=(plpgsql_check)
OPS_TESTS=(backup standby pooler sqlsmith cache_copies_race)

# PostGIS is for the cross-check of the nearby search only; the extension never requires it.
# pgbouncer and sqlsmith for the ops tests (a transaction pooler, random queries); plpgsql_check
# for the suite of that name.
ensure_toolchain postgresql-15-postgis-3 pgbouncer sqlsmith postgresql-15-plpgsql-check prometheus

# Every spec or sql file must be in a schedule: a forgotten file would silently never run.
for f in tests/pg_regress/sql/*.sql tests/isolation/specs/*.spec; do
    dir=$(dirname "$(dirname "$f")"); name=$(basename "${f%.*}")
    grep -qx "test: $name" "$dir"/schedule* || die "$f is not listed in a schedule of $dir"
done

# selected NAME: whether NAME is to run (everything runs when nothing was named).
selected() {
    [ "${#SELECTED[@]}" -eq 0 ] && return 0
    local s; for s in "${SELECTED[@]}"; do [ "$s" = "$1" ] && return 0; done
    return 1
}
# Names that no stage knows are a typo: say so rather than run nothing.
for s in "${SELECTED[@]}"; do
    case "$s" in
        lint|units|integration|integration:*) continue ;;
    esac
    [ -f "tests/pg_regress/sql/$s.sql" ] || [ -f "tests/isolation/specs/$s.spec" ] || [ -f "tests/ops/$s.sh" ] \
        || die "no test named $s (a pg_regress suite, isolation spec, ops test, lint, units or integration[:FILTER])"
done

passed=0; failed=0
count_result() { if [ "$1" -eq 0 ]; then passed=$((passed + $2)); else failed=$((failed + ${3:-1})); fi; }

# 0. The code as it is written: formatted, clippy-clean, released files untouched.
mkdir -p target
if selected lint; then
    log "lint"
    for check in "cargo fmt --check" "cargo fmt --check --manifest-path tests/integration/Cargo.toml" \
                 "cargo clippy ${PGRX_FEATURES[*]:---features pg15} --all-targets -- -D warnings" \
                 "cargo clippy --manifest-path tests/integration/Cargo.toml --target-dir target/integration --all-targets -- -D warnings" \
                 "scripts/check-released.sh" "scripts/check-unsafe.sh"; do
        set +e
        $check > target/lint.log 2>&1
        rc=$?
        set -e
        [ "$rc" -eq 0 ] || { log "lint: $check failed"; tail -40 target/lint.log; }
        count_result "$rc" 1
    done
fi

# 1. cargo pgrx test runs initdb itself (and refuses an existing data directory) and installs its
#    debug build over the system's easymo.so: run it before our cluster starts, and install the
#    build under test afterwards.
if selected units; then
    log "cargo pgrx test"
    pgrx_data="$(cluster_base)/pgrx-test"
    rm -rf "$pgrx_data"; mkdir -p "$pgrx_data"
    [ "$PG_USER" = postgres ] && chown postgres:postgres "$pgrx_data"
    set +e
    CARGO_PGRX_TEST_RUNAS=$PG_USER CARGO_PGRX_TEST_PGDATA="$pgrx_data" \
        cargo pgrx test "pg$PG_MAJOR" 2>&1 | tee target/pgrx-test.log
    rc=${PIPESTATUS[0]}
    set -e
    units=$(grep -Eo 'test result: [a-z]+\. [0-9]+ passed' target/pgrx-test.log | awk '{s+=$4} END {print s+0}')
    count_result "$rc" "$units"
fi

# Only lint or units named: no build to install, no cluster to start.
only_lint_units=1
for s in "${SELECTED[@]}"; do case "$s" in lint|units) ;; *) only_lint_units=0 ;; esac; done
if [ "${#SELECTED[@]}" -gt 0 ] && [ "$only_lint_units" -eq 1 ]; then
    echo; echo "easymo tests: $passed passed, $failed failed"; [ "$failed" -eq 0 ]; exit
fi

# 2. The build the suites run against.
install_extension "$PROFILE"

# 3. pg_regress and pg_isolation_regress suites against a fresh private cluster.
# The SQLSTATE in every log line: what the ops tests look for (an XX000, a crash).
EXTRA_PG_CONF="fsync = off
log_line_prefix = '%m [%p] %e '" cluster_start test "$PORT" fresh
trap 'cluster_stop test' EXIT

# run_suites KIND DRIVER DIR SCHEDULE [driver options]: runs the suites of SCHEDULE (in DIR), or
# those of them that were named (with setup first, which the others rely on).
run_suites() {
    local kind="$1" driver="$2" dir="$3" schedule="$4"; shift 4
    local out="$ROOT/target/$kind$SUFFIX" names=() name
    while read -r name; do
        if [[ " ${NOT_HERE[*]} " == *" $name "* ]]; then
            log "$name: not on PostgreSQL $PG_MAJOR (no plpgsql_check for it in the package registries)"
            continue
        fi
        if selected "$name" || { [ "$name" = setup ] && [ "${#SELECTED[@]}" -gt 0 ]; }; then names+=("$name"); fi
    done < <(sed -n 's/^test: //p' "$schedule")
    # Only setup: nothing of this schedule was named.
    if [ "${#names[@]}" -eq 0 ] || [ "${names[*]}" = setup ]; then return 0; fi
    log "$kind"
    rm -rf "$out"; mkdir -p "$out"
    set +e
    # --bindir: the psql of this version (a wheel's pg_regress has its build machine's path in it);
    # LD_LIBRARY_PATH: its libpq, not Debian's 15.
    LD_LIBRARY_PATH="$PG_LIBDIR" "$driver" --host="$CLUSTER_SOCK" --port="$PORT" --user=postgres --bindir="$PG_BIN" \
        --inputdir="$dir" --outputdir="$out" "$@" "${names[@]}" 2>&1 | tee "$out/summary.txt"
    local rc=${PIPESTATUS[0]}
    set -e
    if [ "$rc" -ne 0 ] && [ -f "$out/regression.diffs" ]; then
        log "$kind: regression.diffs"; cat "$out/regression.diffs"
    fi
    # Passed is what the driver reported as ok, whatever its exit status says (a missing
    # expected file makes pg_regress stop without a FAILED line).
    local total=${#names[@]} oks
    # (`test x ... ok` up to 15, TAP's `ok 3 - x` from 16 on)
    oks=$(grep -cE '\.\.\. ok|^ok [0-9]+ ' "$out/summary.txt" || true)
    if [ "$rc" -eq 0 ] && [ "$oks" -eq "$total" ]; then
        count_result 0 "$total"
    else
        passed=$((passed + oks)); count_result 1 0 "$(( total > oks ? total - oks : 1 ))"
    fi
}

run_suites pg_regress "$PGXS_TEST/regress/pg_regress" tests/pg_regress tests/pg_regress/schedule \
    --dbname=easymo_regress
# The isolation specs get a database with the extension created.
run_suites isolation "$PGXS_TEST/isolation/pg_isolation_regress" tests/isolation tests/isolation/schedule \
    --dbname=easymo_isolation --load-extension=easymo

# 4. Tests that race several real connections, or compare with PostGIS (tests/integration, a
#    crate of its own; each test makes its own database on the cluster).
filters=()
for s in "${SELECTED[@]}"; do case "$s" in integration:*) filters+=("${s#integration:}") ;; esac; done
if selected integration || [ "${#filters[@]}" -gt 0 ]; then
    log "integration"
    [ "${#filters[@]}" -eq 0 ] && filters=("")
    for filter in "${filters[@]}"; do
        set +e
        EASYMO_TEST_PGHOST="$CLUSTER_SOCK" EASYMO_TEST_PGPORT="$PORT" \
            cargo test --manifest-path tests/integration/Cargo.toml --target-dir "$ROOT/target/integration" -- $filter 2>&1 \
            | tee target/integration.log
        rc=${PIPESTATUS[0]}
        set -e
        count_result "$rc" "$(grep -Eo 'test result: [a-z]+\. [0-9]+ passed' target/integration.log | awk '{s+=$4} END {print s+0}')"
    done
fi

# 5. What a DBA does (tests/ops), each script against this cluster or clusters of its own.
for t in "${OPS_TESTS[@]}"; do
    selected "$t" || continue
    log "ops: $t"
    set +e
    EASYMO_TEST_PGHOST="$CLUSTER_SOCK" EASYMO_TEST_PGPORT="$PORT" EASYMO_TEST_LOG="$CLUSTER_DIR/log/postgres.log" \
        bash "tests/ops/$t.sh"
    rc=$?
    set -e
    count_result "$rc" 1
done
# No input in any suite may have crashed a backend (a crash restarts every connection).
log_checked=0
crashed() {
    local log_file="$CLUSTER_DIR/log/postgres.log"
    if tail -n +"$((log_checked + 1))" "$log_file" | grep -E 'terminated by signal|server process .* was terminated'; then
        log "a backend crashed (above, from $log_file)"; count_result 1 0
    fi
    log_checked=$(wc -l < "$log_file")
}
crashed

# 6. The same cluster restarted with easymo in shared_preload_libraries (shared-memory counters,
#    the background worker, the shared copies of cache entries): the suites of
#    tests/pg_regress/schedule_preloaded and the specs of tests/isolation/schedule_preloaded.
#    The maintenance worker runs in a database of its own (pg_regress drops and re-creates its
#    database, which a connected worker would prevent), every second.
#    A second one is still at 0.1.0, which has no run_maintenance(), until the suite updates it.
preloaded=0
while read -r name; do
    [ "$name" != setup ] && selected "$name" && preloaded=1
done < <(sed -n 's/^test: //p' tests/pg_regress/schedule_preloaded tests/isolation/schedule_preloaded)
if [ "$preloaded" -eq 1 ]; then
    cpsql -q -d postgres -c "DROP DATABASE IF EXISTS easymo_worker" -c "CREATE DATABASE easymo_worker" \
        -c "DROP DATABASE IF EXISTS easymo_worker_old" -c "CREATE DATABASE easymo_worker_old"
    cpsql -q -d easymo_worker -c "CREATE EXTENSION easymo"
    cpsql -q -d easymo_worker_old -c "CREATE EXTENSION easymo VERSION '0.1.0'"
    cluster_stop test
    cat >> "$CLUSTER_DIR/data/postgresql.conf" <<'CONF'
shared_preload_libraries = 'easymo'
easymo.maintenance_databases = 'easymo_worker, easymo_worker_old'
easymo.maintenance_interval = 1
easymo.maintenance_restart_interval = 1
CONF
    cluster_start test "$PORT"
    run_suites pg_regress_preloaded "$PGXS_TEST/regress/pg_regress" tests/pg_regress tests/pg_regress/schedule_preloaded \
        --dbname=easymo_regress
    run_suites isolation_preloaded "$PGXS_TEST/isolation/pg_isolation_regress" tests/isolation tests/isolation/schedule_preloaded \
        --dbname=easymo_isolation --load-extension=easymo
    crashed
fi

echo
echo "easymo tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
