#!/usr/bin/env bash
# Backup and restore: a database with rows in every easymo table is dumped with pg_dump -Fc (as
# the README says, --load-via-partition-root) and restored with pg_restore into a new database;
# every table must come back with the same row count and checksum, and the extension must work
# on the restored data. Runs against the cluster of scripts/test.sh (EASYMO_TEST_PGHOST/PORT).
source "$(dirname "$0")/../../scripts/common.sh"
CLUSTER_SOCK="$EASYMO_TEST_PGHOST"; CLUSTER_PORT="$EASYMO_TEST_PGPORT"
out="$ROOT/target/ops/backup"; rm -rf "$out"; mkdir -p "$out"
src=easymo_backup_src; dst=easymo_backup_dst

cpsql -q -d postgres -c "DROP DATABASE IF EXISTS $src" -c "DROP DATABASE IF EXISTS $dst" -c "CREATE DATABASE $src" -c "CREATE DATABASE $dst"
cpsql -q -d $src -c "CREATE EXTENSION easymo"
PGOPTIONS="-c client_min_messages=warning" cpsql -q -d $src -f tests/ops/fill.sql >/dev/null
cpsql -q -At -d $src -f tests/ops/checksums.sql -c "SELECT * FROM pg_temp.table_checksums()" > "$out/before.txt"

"$PG_BIN/pg_dump" -h "$CLUSTER_SOCK" -p "$CLUSTER_PORT" -U postgres -Fc --load-via-partition-root -d $src -f "$out/dump"
"$PG_BIN/pg_restore" -h "$CLUSTER_SOCK" -p "$CLUSTER_PORT" -U postgres --exit-on-error -d $dst "$out/dump"
# Rows of months whose partition the new install does not have yet wait in DEFAULT until this.
PGOPTIONS="-c client_min_messages=warning" cpsql -q -d $dst -c "SELECT ensure_partitions(3)" >/dev/null
cpsql -q -At -d $dst -f tests/ops/checksums.sql -c "SELECT * FROM pg_temp.table_checksums()" > "$out/after.txt"

if ! diff "$out/before.txt" "$out/after.txt"; then
    die "backup: tables differ after pg_dump/pg_restore (above: < before, > after)"
fi
[ "$(wc -l < "$out/before.txt")" -ge 20 ] || die "backup: expected 20 or more tables, got $(wc -l < "$out/before.txt")"
grep -q '|0|' "$out/before.txt" && die "backup: a table was empty before the dump: $(grep '|0|' "$out/before.txt")"

# The restored database works: replays find their keys, streams continue at their version,
# new references continue the sequence, flags, cache and nearby search answer.
cpsql -q -At -d $dst > "$out/works.txt" <<'SQL'
SELECT 'replay ' || (create_transaction('00000000-0000-4000-8000-000000000001', 'payment', 100, 'RWF', 'key-1')
                     = (SELECT transaction_id FROM transaction_idempotency_keys WHERE idempotency_key = 'key-1'));
SELECT create_transaction('00000000-0000-4000-8000-000000000001', 'payment', 5, 'RWF', 'after-restore') AS new_tx,
       append_event('ride-1', 'ride', 'ride.updated', '{}', NULL, '{}', 8) AS new_event \gset
SELECT 'new reference ' || ((SELECT reference FROM transactions WHERE id = :'new_tx')
       NOT IN (SELECT reference FROM transactions WHERE id <> :'new_tx'));
SELECT 'append ' || version FROM event_store WHERE id = :'new_event';
SELECT 'flag ' || is_feature_enabled('dark_mode', '00000000-0000-4000-8000-000000000001');
SELECT 'cache ' || get_cache('user:7')::text;
SELECT 'nearby ' || count(*) FROM find_nearby_locations(-1.95, 30.06, 5000, NULL, 1000);
SELECT 'claim ' || count(*) FROM read_messages('orders', 5, 30);
SQL
expected=$'replay true\nnew reference true\nappend 9\nflag true\ncache {"n": 7}\nnearby 200\nclaim 5'
if [ "$(cat "$out/works.txt")" != "$expected" ]; then
    printf 'got:\n%s\nexpected:\n%s\n' "$(cat "$out/works.txt")" "$expected" >&2
    die "backup: the restored database does not work as expected"
fi
cpsql -q -d postgres -c "DROP DATABASE $src" -c "DROP DATABASE $dst"
echo "backup: $(wc -l < "$out/before.txt") tables and sequences identical after pg_dump -Fc / pg_restore; restored database works"
