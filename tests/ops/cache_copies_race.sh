#!/usr/bin/env bash
# The shared copies of cache entries under concurrency (easymo preloaded, its own cluster on
# port 28842): writers change and delete 20 hot keys, each in one transaction with a row of
# `truth` that says what the key holds; readers check, in every statement, that get_cache
# answers exactly what that statement's snapshot sees in `truth` (READ COMMITTED, and twice in
# one REPEATABLE READ transaction); now and then VACUUM FULL rewrites the table and the trigger
# is disabled and enabled again (each changes the table's form, dropping every copy). A wrong
# answer divides by zero and stops pgbench. The copies must also have answered most reads.
source "$(dirname "$0")/../../scripts/common.sh"
out="$ROOT/target/ops/cache_copies_race"; rm -rf "$out"; mkdir -p "$out"
PORT_COPIES="${EASYMO_TEST_COPIES_PORT:-28842}"
fail() { die "cache_copies_race: $*"; }

EXTRA_PG_CONF="shared_preload_libraries = 'easymo'
easymo.cache_shared_memory = 8MB" cluster_start copies "$PORT_COPIES" fresh
trap 'cluster_stop copies' EXIT
cpsql -q -d postgres -c "CREATE DATABASE app"
cpsql -q -d app >/dev/null <<'SQL'
CREATE EXTENSION easymo;
CREATE TABLE truth (key text PRIMARY KEY, n bigint NOT NULL, present boolean NOT NULL);
INSERT INTO truth SELECT 'hot:' || g, 0, true FROM generate_series(1, 20) g;
SELECT count(set_cache('hot:' || g, jsonb_build_object('n', 0), 3600)) FROM generate_series(1, 20) g;
SQL

check="SELECT 1 / (CASE WHEN (get_cache('hot:' || :k) ->> 'n')::bigint IS NOT DISTINCT FROM
                    (SELECT CASE WHEN present THEN n END FROM truth WHERE key = 'hot:' || :k) THEN 1 ELSE 0 END) AS right_answer;"
printf '%s\n' '\set k random(1, 20)' "$check" > "$out/read.sql"
printf '%s\n' '\set k random(1, 20)' 'BEGIN ISOLATION LEVEL REPEATABLE READ;' "$check" "$check" 'COMMIT;' > "$out/read_rr.sql"
cat > "$out/write.sql" <<'SQL'
\set k random(1, 20)
BEGIN;
UPDATE truth SET n = n + 1, present = true WHERE key = 'hot:' || :k RETURNING n \gset
SELECT set_cache('hot:' || :k, jsonb_build_object('n', :n), 3600) IS NOT NULL;
COMMIT;
SQL
cat > "$out/delete.sql" <<'SQL'
\set k random(1, 20)
BEGIN;
UPDATE truth SET present = false WHERE key = 'hot:' || :k;
SELECT delete_cache('hot:' || :k);
COMMIT;
SQL
cat > "$out/ddl.sql" <<'SQL'
\set r random(1, 2)
\if :r = 1
VACUUM FULL cache_entries;
\else
ALTER TABLE cache_entries DISABLE TRIGGER cache_entries_shared_copies;
ALTER TABLE cache_entries ENABLE ALWAYS TRIGGER cache_entries_shared_copies;
\endif
SQL

before=$(cpsql -At -d app -c "SELECT answers_from_copies FROM cache_shared_stats()")
set +e
"$PG_BIN/pgbench" -n -h "$CLUSTER_SOCK" -p "$PORT_COPIES" -U postgres -c 6 -j 2 -T 15 \
    -f "$out/read.sql@1200" -f "$out/read_rr.sql@300" -f "$out/write.sql@400" -f "$out/delete.sql@100" -f "$out/ddl.sql@1" \
    app > "$out/pgbench.log" 2>&1
rc=$?
set -e
grep -E 'error|abort' "$out/pgbench.log" | head -5 || true
[ "$rc" -eq 0 ] && ! grep -qi 'error' "$out/pgbench.log" || fail "a read answered something else than its snapshot sees (pgbench.log above)"
stats=$(cpsql -At -F ' ' -d app -c "SELECT answers_from_copies - $before, copies_made FROM cache_shared_stats()")
read -r answers made <<<"$stats"
reads=$(awk '/^SQL script [12]:/ {getline; getline; s += $2} END {print s}' "$out/pgbench.log")
[ "$answers" -gt 0 ] || fail "no read was answered from a copy"
echo "cache_copies_race: $reads read transactions, every answer what its snapshot sees; $answers answered from copies ($made copies made)"
