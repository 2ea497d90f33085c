#!/usr/bin/env bash
# Backup and restore the way most DBAs and hosting backups do it: plain pg_dump, no special
# flags (0.2.0 needed --load-via-partition-root, and without it lost every row of a month
# partition the restoring CREATE EXTENSION did not make). A database with rows in every easymo
# table, and in every partitioned table rows in each month from 3 back to 6 ahead plus rows
# waiting in DEFAULT, is dumped twice: `pg_dump -Fc` restored by `pg_restore`, and plain-text
# `pg_dump` restored by `psql`. Each restore must log no error, and give back every table with the
# same row count and checksum, each partition with the same rows; the restored database must
# work. Runs against the cluster of scripts/test.sh (EASYMO_TEST_PGHOST/PORT).
source "$(dirname "$0")/../../scripts/common.sh"
CLUSTER_SOCK="$EASYMO_TEST_PGHOST"; CLUSTER_PORT="$EASYMO_TEST_PGPORT"
out="$ROOT/target/ops/backup"; rm -rf "$out"; mkdir -p "$out"
src=easymo_backup_src

# backup FROM: the whole check on a source database made at the current version (FROM =
# current), or made at FROM and updated to the current version first (its install-time month
# partitions were extension members then; the update hands them to the data).
backup() {
local from="$1"
cpsql -q -d postgres -c "DROP DATABASE IF EXISTS $src" -c "CREATE DATABASE $src"
if [ "$from" = current ]; then
    cpsql -q -d $src -c "CREATE EXTENSION easymo"
else
    PGOPTIONS="-c client_min_messages=warning" cpsql -q -d $src >/dev/null <<SQL
CREATE EXTENSION easymo VERSION '$from';
INSERT INTO system_metrics (service_name, metric_type, metric_name, value) VALUES ('backup', 'gauge', 'before_update', 1);
INSERT INTO analytics_events (event_name) VALUES ('before_update');
ALTER EXTENSION easymo UPDATE;
SQL
fi
PGOPTIONS="-c client_min_messages=warning" cpsql -q -d $src -f tests/ops/fill.sql >/dev/null
# Months -3 .. +6 of every partitioned table, made by ensure_partitions (not by the install), and
# rows in DEFAULT (month +9, which has no partition).
PGOPTIONS="-c client_min_messages=warning" cpsql -q -d $src >/dev/null <<'SQL'
CREATE TEMP TABLE months AS
SELECT date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' + make_interval(months => m) + interval '3 days' AS at, m
  FROM generate_series(-3, 6) m;
INSERT INTO system_metrics (service_name, metric_type, metric_name, value, created_at)
SELECT 'backup', 'gauge', 'month', m, at FROM months, generate_series(1, 3);
INSERT INTO system_audit_logs (actor_type, actor_identifier, action, created_at)
SELECT 'system', 'backup', 'month ' || m, at FROM months;
INSERT INTO transactions (reference, user_id, type, amount, created_at)
SELECT 'BK-' || m || '-' || g, '00000000-0000-4000-8000-000000000001', 'payment', 10 + g, at FROM months, generate_series(1, 2) g;
INSERT INTO event_store (aggregate_type, aggregate_id, event_type, version, created_at)
SELECT 'backup', 'month-' || m, 'happened', 1, at FROM months;
INSERT INTO analytics_events (event_name, created_at)
SELECT 'backup_month_' || m, at FROM months;
SELECT ensure_partitions(6);
-- The oldest month of system_metrics goes to the archive tier: it must come back as well.
SELECT archive_partitions('system_metrics', 2);
INSERT INTO system_metrics (service_name, metric_type, metric_name, value, created_at)
VALUES ('backup', 'gauge', 'in_default', 9, now() + interval '9 months');
INSERT INTO analytics_events (event_name, created_at) VALUES ('in_default', now() + interval '9 months');
SQL
checksums() {
    cpsql -q -At -d "$1" -f tests/ops/checksums.sql -c "SELECT * FROM pg_temp.table_checksums()" \
        -c "SELECT 'partition ' || c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid ORDER BY 1" \
        -c "SELECT 'rows ' || tableoid::regclass || ' ' || count(*) FROM system_metrics GROUP BY tableoid ORDER BY 1" \
        -c "SELECT 'rows ' || tableoid::regclass || ' ' || count(*) FROM transactions GROUP BY tableoid ORDER BY 1" \
        -c "SELECT 'rows ' || tableoid::regclass || ' ' || count(*) FROM analytics_events GROUP BY tableoid ORDER BY 1" \
        -c "SELECT 'archived ' || c.oid::regclass FROM pg_class c WHERE c.relnamespace = 'easymo_archive'::regnamespace ORDER BY 1" \
        -c "SELECT 'archive view ' || count(*) || ' ' || md5(string_agg(t::text, E'\n' ORDER BY t::text)) FROM easymo_archive.system_metrics t"
}
checksums $src > "$out/before.txt"
months=$(grep -c '^partition .*_p[0-9]\{4\}_[0-9]\{2\}$' "$out/before.txt")
[ "$months" -ge 49 ] || die "backup: expected at least 49 month partitions (5 tables x 10 months, one archived), got $months"
grep -q '^archived easymo_archive.system_metrics_p' "$out/before.txt" || die "backup: expected an archived month"
grep -q '^rows system_metrics_default 1$' "$out/before.txt" || die "backup: expected one row waiting in DEFAULT"

"$PG_BIN/pg_dump" -h "$CLUSTER_SOCK" -p "$CLUSTER_PORT" -U postgres -Fc -d $src -f "$out/dump.custom"
"$PG_BIN/pg_dump" -h "$CLUSTER_SOCK" -p "$CLUSTER_PORT" -U postgres -d $src -f "$out/dump.sql"

# restore WAY DATABASE: restores one of the dumps into a new database, keeping what it printed.
restore() {
    local way="$1" db="$2"
    cpsql -q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
    if [ "$way" = pg_restore ]; then
        "$PG_BIN/pg_restore" -h "$CLUSTER_SOCK" -p "$CLUSTER_PORT" -U postgres -d "$db" "$out/dump.custom" \
            > "$out/$way.log" 2>&1 || true
    else
        "$PG_BIN/psql" -X -h "$CLUSTER_SOCK" -p "$CLUSTER_PORT" -U postgres -d "$db" -f "$out/dump.sql" \
            > "$out/$way.log" 2>&1 || true
    fi
    if grep -iE 'error|fatal' "$out/$way.log"; then
        die "backup: $way logged errors (above; whole log in $out/$way.log)"
    fi
    checksums "$db" > "$out/after-$way.txt"
    if ! diff "$out/before.txt" "$out/after-$way.txt"; then
        die "backup: tables differ after pg_dump / $way (above: < before, > after)"
    fi
}
restore pg_restore easymo_backup_custom
restore psql easymo_backup_plain

[ "$(grep -c '' "$out/before.txt")" -ge 20 ] || die "backup: expected 20 or more lines, got $(grep -c '' "$out/before.txt")"
grep -E '^[a-z_.]+\|0\|' "$out/before.txt" | grep -v 'feature_flag_exposure_counters' && die "backup: a table was empty before the dump"

# The restored database works: replays find their keys (wallet transfers too), streams continue at their version,
# new references continue the sequence, flags, cache and nearby search answer, and maintenance
# makes next months' partitions as before.
for db in easymo_backup_custom easymo_backup_plain; do
    PGOPTIONS="-c client_min_messages=warning" cpsql -q -At -d $db > "$out/works-$db.txt" <<'SQL'
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
SELECT 'wallet replay ' || (wallet_transfer((SELECT id FROM wallet_accounts WHERE name = 'momo'),
                                            (SELECT id FROM wallet_accounts WHERE name = 'wallet 1'), 1000, 'topup-wallet 1')
                            = (SELECT id FROM wallet_transfers WHERE idempotency_key = 'topup-wallet 1'));
SELECT 'wallet fee ' || (wallet_transfer((SELECT id FROM wallet_accounts WHERE name = 'wallet 2'),
                                         (SELECT id FROM wallet_accounts WHERE name = 'fees'), 1) IS NOT NULL);
SELECT 'wallets reconciled ' || bool_and(ok) FROM reconcile_wallets();
SELECT 'notification dedupe ' || (send_notification('00000000-0000-4000-8000-000000000002', 'receipt', 'Again', 'Paid', p_dedupe_key => 'receipt-1')
                                   = (SELECT notification_id FROM notification_dedupe_keys WHERE dedupe_key = 'receipt-1'));
SELECT 'maintenance errors ' || (run_maintenance() -> 'errors')::text;
SELECT 'partition ahead ' || count(*) FROM pg_class
 WHERE relname = 'system_metrics_p' || to_char(now() AT TIME ZONE 'UTC' + interval '6 months', 'YYYY_MM');
SQL
    expected=$'replay true\nnew reference true\nappend 9\nflag true\ncache {"n": 7}\nnearby 200\nclaim 5\nwallet replay true\nwallet fee true\nwallets reconciled true\nnotification dedupe true\nmaintenance errors {}\npartition ahead 1'
    if [ "$(cat "$out/works-$db.txt")" != "$expected" ]; then
        printf 'got:\n%s\nexpected:\n%s\n' "$(cat "$out/works-$db.txt")" "$expected" >&2
        die "backup: the database restored into $db does not work as expected"
    fi
done
cpsql -q -d postgres -c "DROP DATABASE $src" -c "DROP DATABASE easymo_backup_custom" -c "DROP DATABASE easymo_backup_plain"
echo "backup ($from): $(grep -c '' "$out/before.txt") lines ($months month partitions) identical after pg_dump -Fc / pg_restore and pg_dump / psql, no flags, no error logged; both restored databases work"
}

backup current
backup 0.2.0
