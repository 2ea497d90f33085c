#!/usr/bin/env bash
# A streaming replica on loopback: a private primary (port 28840) with easymo and data, a standby
# made with pg_basebackup -R (port 28841), both started and stopped here. The read helpers must
# answer on the standby exactly as on the primary, including the ones that would like to write
# (flag evaluation logging, cache hit counters) - they skip writing there. The standby has easymo
# preloaded: its evaluations and cache reads are counted in its shared memory, and a session's
# counts outlive the session.
source "$(dirname "$0")/../../scripts/common.sh"
out="$ROOT/target/ops/standby"; rm -rf "$out"; mkdir -p "$out"
P1="${EASYMO_TEST_PRIMARY_PORT:-28840}"; P2="${EASYMO_TEST_STANDBY_PORT:-28841}"

cluster_start primary "$P1" fresh
primary_sock="$CLUSTER_SOCK"
standby_dir="$(cluster_dir standby)"
trap 'cluster_stop standby; cluster_stop primary' EXIT
cluster_stop standby; rm -rf "$standby_dir"; mkdir -p "$standby_dir/sock" "$standby_dir/log"
[ "$PG_USER" = postgres ] && chown -R postgres:postgres "$standby_dir"

cpsql -q -d postgres -c "CREATE DATABASE app"
cpsql -q -d app -c "CREATE EXTENSION easymo"
cpsql -q -d app -f tests/ops/fill.sql >/dev/null

as_pg "$PG_BIN/pg_basebackup" -h "$primary_sock" -p "$P1" -U postgres -D "$standby_dir/data" -R -X stream -c fast
cat >> "$standby_dir/data/postgresql.conf" <<CONF
port = $P2
unix_socket_directories = '$standby_dir/sock'
hot_standby = on
shared_preload_libraries = 'easymo'
CONF
as_pg "$PG_BIN/pg_ctl" -D "$standby_dir/data" -l "$standby_dir/log/postgres.log" -w start >/dev/null \
    || { tail -20 "$standby_dir/log/postgres.log" >&2; die "standby did not start"; }
spsql() { "$PG_BIN/psql" -X -v ON_ERROR_STOP=1 -h "$standby_dir/sock" -p "$P2" -U postgres "$@"; }
[ "$(spsql -At -d app -c 'SELECT pg_is_in_recovery()')" = t ] || die "standby: not in recovery"

# The counts of fill.sql's session (10 evaluations of new_checkout) are in the primary's counters
# table (the flush worker stores them when the session has ended), so the standby has them too
# before it counts its own.
for _ in $(seq 1 100); do
    [ "$(cpsql -At -d app -c "SELECT coalesce(sum(evaluations), 0) FROM feature_flag_exposure_counters WHERE flag_key = 'new_checkout'")" = 10 ] && break
    sleep 0.1
done
# Writes after the base backup reach the standby by streaming.
cpsql -q -d app -c "SELECT append_event('ride-streamed', 'ride', 'ride.created', '{\"late\": true}')" \
     -c "SELECT set_cache('streamed', '\"yes\"', 3600)" >/dev/null
lsn=$(cpsql -At -d app -c "SELECT pg_current_wal_lsn()")
for _ in $(seq 1 600); do
    [ "$(spsql -At -d app -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'")" = t ] && break
    sleep 0.1
done
[ "$(spsql -At -d app -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'")" = t ] || die "standby: did not catch up within a minute"

queries=$(cat <<'SQL'
SET easymo.flag_evaluation_log = 'all';
SELECT string_agg(is_feature_enabled('new_checkout', ('00000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid)::text, ',' ORDER BY g) FROM generate_series(1, 200) g;
SELECT string_agg(coalesce(get_feature_variant('new_checkout', ('00000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid), '-'), ',' ORDER BY g) FROM generate_series(1, 200) g;
SELECT get_cache('user:3'), get_cache('streamed'), get_cache('absent');
SELECT string_agg(format('%s %s', id, round(distance_meters::numeric, 3)), ',') FROM find_nearby_locations(-1.95, 30.06, 3000, 'pickup', 50);
SELECT string_agg(format('%s %s %s', version, event_type, payload), ',' ORDER BY version) FROM get_aggregate_events('ride', 'ride-2');
SELECT string_agg(format('%s %s', version, payload), ',') FROM get_aggregate_events('ride', 'ride-streamed');
SQL
)
counted() {
    spsql -At -d app -c "SELECT (SELECT coalesce(sum(evaluations), 0) FROM feature_flag_exposures() WHERE flag_key = 'new_checkout')
                              || ' ' || (SELECT coalesce(sum(hits), 0) || ' ' || coalesce(sum(misses), 0) FROM cache_hit_counters())"
}
counted_before=$(counted)
# The standby first: the primary's own counts of the same queries reach the standby later, through
# the counters table.
spsql -q -At -d app <<<"$queries" > "$out/standby.txt" 2> "$out/standby.err" || { cat "$out/standby.err" >&2; die "standby: a read helper failed"; }
# What the standby session counted (200 evaluations, 200 variants, 2 cache hits, 1 miss) is there
# after it ended: in the standby's shared memory, no row written anywhere.
read -r f0 h0 m0 <<<"$counted_before"
expected="$((f0 + 400)) $((h0 + 2)) $((m0 + 1))"
for _ in $(seq 1 100); do [ "$(counted)" = "$expected" ] && break; sleep 0.1; done
[ "$(counted)" = "$expected" ] || die "standby: expected counts '$expected' after the session, got '$(counted)' (before: '$counted_before')"
cpsql -q -At -d app <<<"$queries" > "$out/primary.txt"
if ! diff "$out/primary.txt" "$out/standby.txt"; then
    die "standby: answers differ from the primary's (< primary, > standby)"
fi
grep -q 'ride.created {"late": true}\|1 {"late": true}' "$out/standby.txt" || die "standby: the streamed event is missing"
[ "$(grep -c . "$out/standby.txt")" -ge 6 ] || die "standby: expected 6 answers, got: $(cat "$out/standby.txt")"
echo "standby: flags, variants, cache, nearby search and event streams answer on the replica as on the primary"

echo "standby: 400 flag evaluations and 3 cache reads of an ended session counted in the standby's shared memory"
# The standby (preloaded) answers no read from shared copies of cache entries: WAL replay fires no
# trigger that would drop them. A value read twice there, then changed on the primary, is new at
# the standby's next read after replay.
for _ in 1 2; do spsql -At -d app -c "SELECT get_cache('streamed')" >/dev/null; done
cpsql -q -d app -c "SELECT set_cache('streamed', '\"changed\"', 3600)" >/dev/null
lsn=$(cpsql -At -d app -c "SELECT pg_current_wal_lsn()")
for _ in $(seq 1 600); do
    [ "$(spsql -At -d app -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'")" = t ] && break
    sleep 0.1
done
[ "$(spsql -At -d app -c "SELECT get_cache('streamed')")" = '"changed"' ] || die "standby: a changed cache entry read its old value"
[ "$(spsql -At -d app -c "SELECT answers_from_copies FROM cache_shared_stats()")" = 0 ] || die "standby: answered from shared copies"
echo "standby: cache reads never answered from shared copies; a change streamed from the primary is read at once"

