#!/usr/bin/env bash
# Random queries (sqlsmith, Debian's package) against a database with easymo and rows in every
# table, as a login with service_role's and authenticated's rights (so every helper is
# callable; a superuser's random query could terminate other sessions). Errors are expected and
# fine; a backend crash is the worst bug there is: the server log must not show one
# (scripts/test.sh checks the whole log for "terminated by signal" as well). Bounded by a
# query count and a fixed seed (EASYMO_SQLSMITH_QUERIES, EASYMO_SQLSMITH_SEED) so a run is
# repeatable.
source "$(dirname "$0")/../../scripts/common.sh"
CLUSTER_SOCK="$EASYMO_TEST_PGHOST"; CLUSTER_PORT="$EASYMO_TEST_PGPORT"
LOG="${EASYMO_TEST_LOG:?set to the server log of the cluster}"
out="$ROOT/target/ops/sqlsmith"; rm -rf "$out"; mkdir -p "$out"
db=easymo_sqlsmith
queries="${EASYMO_SQLSMITH_QUERIES:-3000}"
seed="${EASYMO_SQLSMITH_SEED:-20261201}"
command -v sqlsmith >/dev/null || ensure_toolchain sqlsmith

cpsql -q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
cpsql -q -d $db -c "CREATE EXTENSION easymo"
PGOPTIONS="-c client_min_messages=warning" cpsql -q -d $db -f tests/ops/fill.sql >/dev/null
cpsql -q -d $db >/dev/null <<'SQL'
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'easymo_smith') THEN
        CREATE ROLE easymo_smith LOGIN;
    END IF;
END $$;
GRANT service_role, authenticated TO easymo_smith;
-- A random query may be slow; none may hold the run up.
ALTER ROLE easymo_smith SET statement_timeout = '2s';
ALTER ROLE easymo_smith SET request.jwt.claims = '{"sub": "00000000-0000-4000-8000-000000000001"}';
SQL
# Where each error was raised (the LOCATION line): Rust source files are easymo's.
cpsql -q -d postgres -c "ALTER DATABASE $db SET log_error_verbosity = verbose"
start_line=$(wc -l < "$LOG")
set +e
timeout 600 sqlsmith --target="host=$CLUSTER_SOCK port=$CLUSTER_PORT dbname=$db user=easymo_smith" \
    --seed="$seed" --max-queries="$queries" --exclude-catalog --verbose > "$out/sqlsmith.log" 2>&1
rc=$?
set -e
tail -n +"$((start_line + 1))" "$LOG" > "$out/server.log"
if grep -E 'terminated by signal|server process .* was terminated|PANIC' "$out/server.log"; then
    die "sqlsmith: the server crashed (above; sqlsmith's output in $out/sqlsmith.log)"
fi
# sqlsmith exits non-zero when it loses its connection (what a crash does) or cannot start.
[ "$rc" -eq 0 ] || { tail -20 "$out/sqlsmith.log" >&2; die "sqlsmith exited with $rc"; }
# The log lines carry their SQLSTATE (log_line_prefix of scripts/test.sh) and where the error
# was raised: an internal error (XX000) raised by easymo's code (a .rs location) is a bug.
# (Postgres itself raises some XX000s for random SQL, "invalid INTERVAL typmod" say: not ours.)
errors=$(grep -c ' ERROR: ' "$out/server.log" || true)
internal=$(grep -c ' XX000 ERROR: ' "$out/server.log" || true)
grep -A4 ' XX000 ERROR: ' "$out/server.log" | grep -B4 'LOCATION: .*\.rs:' > "$out/ours.log" || true
cpsql -q -d postgres -c "DROP DATABASE $db WITH (FORCE)"
if [ -s "$out/ours.log" ]; then
    cat "$out/ours.log" >&2
    die "sqlsmith: easymo raised internal errors (XX000) (above)"
fi
echo "sqlsmith: $queries random queries (seed $seed): no crash, no internal error from easymo; $errors errors logged ($internal XX000 from Postgres itself)"
