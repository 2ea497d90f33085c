#!/usr/bin/env bash
# Behind a transaction pooler, as Supabase clients meet easymo: pgbouncer (Debian's package) in
# transaction mode, 4 server connections shared by many clients, in front of the cluster of
# scripts/test.sh (EASYMO_TEST_PGHOST/PORT). Checked through it:
#   1. a committed flag change is seen by every pooled backend at its next evaluation;
#   2. per-transaction identity (SET LOCAL ROLE + set_config(..., true), as PostgREST does) never
#      leaks into another client's transaction, not even past a stray session-level
#      request.jwt.claim.sub left on a backend by a plain SET (0.2.0 let that one win);
#   3. SET LOCAL of an easymo setting stays in its transaction (a plain SET would stay on the
#      server connection for every later client: the README says to use SET LOCAL);
#   4. a cache write is read back from another backend;
#   5. 8 clients racing with the same idempotency keys make one transaction per key.
source "$(dirname "$0")/../../scripts/common.sh"
CLUSTER_SOCK="$EASYMO_TEST_PGHOST"; CLUSTER_PORT="$EASYMO_TEST_PGPORT"
out="$ROOT/target/ops/pooler"; rm -rf "$out"; mkdir -p "$out/sock"
[ "$PG_USER" = postgres ] && chown -R postgres:postgres "$out"
db=easymo_pool
POOL_PORT=28850
command -v pgbouncer >/dev/null || ensure_toolchain pgbouncer

cpsql -q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
cpsql -q -d $db >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION easymo;
SELECT ensure_partitions(1);
INSERT INTO feature_flags (key, name, enabled, rollout_strategy) VALUES ('pool_flag', 'Pool flag', true, 'all');
-- The login PostgREST uses: it switches to authenticated or service_role per transaction.
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'easymo_authenticator') THEN
        CREATE ROLE easymo_authenticator LOGIN NOINHERIT;
    END IF;
END $$;
GRANT authenticated, service_role TO easymo_authenticator;
SQL

cat > "$out/pgbouncer.ini" <<INI
[databases]
$db = host=$CLUSTER_SOCK port=$CLUSTER_PORT dbname=$db
[pgbouncer]
pool_mode = transaction
listen_addr =
listen_port = $POOL_PORT
unix_socket_dir = $out/sock
auth_type = trust
auth_file = $out/users.txt
default_pool_size = 4
max_client_conn = 200
logfile = $out/pgbouncer.log
pidfile = $out/pgbouncer.pid
INI
printf '"postgres" ""\n"easymo_authenticator" ""\n' > "$out/users.txt"
[ "$PG_USER" = postgres ] && chown -R postgres:postgres "$out"
as_pg pgbouncer -d "$out/pgbouncer.ini"
trap 'kill "$(cat "$out/pgbouncer.pid" 2>/dev/null)" 2>/dev/null || true' EXIT
for _ in $(seq 50); do [ -S "$out/sock/.s.PGSQL.$POOL_PORT" ] && break; sleep 0.1; done

# pool [USER] SQL: one client of the pooler (its own connection; a transaction runs on whichever
# server connection is free).
pool() {
    local user=postgres
    if [ "$1" = "-U" ]; then user="$2"; shift 2; fi
    "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$out/sock" -p $POOL_PORT -U "$user" -d $db -c "$1"
}
fail() { die "pooler: $*"; }

# 1. Flag changes. 16 clients at once keep all 4 server connections busy (each warms its cache).
for i in $(seq 16); do pool "SELECT pg_backend_pid(), is_feature_enabled('pool_flag'), pg_sleep(0.2)" > "$out/warm.$i" & done; wait
warm_pids=$(cut -d'|' -f1 "$out"/warm.* | sort -u | wc -l)
[ "$warm_pids" -ge 2 ] || fail "expected the 16 clients to share several server connections, got $warm_pids"
[ "$(cat "$out"/warm.* | grep -c '|t|' || true)" -eq 16 ] || fail "a client saw pool_flag off before the change"
pool "UPDATE feature_flags SET enabled = false WHERE key = 'pool_flag'"
for i in $(seq 16); do pool "SELECT pg_backend_pid(), is_feature_enabled('pool_flag'), pg_sleep(0.2)" > "$out/after.$i" & done; wait
after_pids=$(cut -d'|' -f1 "$out"/after.* | sort -u | wc -l)
stale=$(cat "$out"/after.* | grep -c '|t|' || true)
[ "$after_pids" -ge 2 ] || fail "expected the evaluations after the change on several server connections, got $after_pids"
[ "$stale" -eq 0 ] || fail "$stale of 16 evaluations after the commit still saw the old flag"
echo "pooler: flag change seen by all 16 evaluations on $after_pids pooled server connections"

# 2. Identity per transaction. First a stray session-level legacy claim on a server connection
#    (a plain SET survives the transaction in transaction mode) ...
pool -U easymo_authenticator "SET request.jwt.claim.sub = '00000000-0000-4000-8000-00000000dead'"
# ... then 40 clients, each its own user, the PostgREST way.
for i in $(seq 40); do
    uid=$(printf '00000000-0000-4000-8000-%012d' "$i")
    pool -U easymo_authenticator "BEGIN; SET LOCAL ROLE authenticated;
        SELECT set_config('request.jwt.claims', '{\"sub\": \"$uid\", \"role\": \"authenticated\"}', true) IS NOT NULL;
        SELECT '$uid', request_user_id(), current_user, is_feature_enabled('pool_flag') IS NOT NULL; COMMIT;" \
        | grep -- '-4000-' > "$out/identity.$i" &
done
wait
leaks=$(awk -F'|' '$1 != $2 || $3 != "authenticated"' "$out"/identity.* | wc -l)
answered=$(cat "$out"/identity.* | wc -l)
[ "$answered" -eq 40 ] || fail "expected 40 answers, got $answered"
[ "$leaks" -eq 0 ] || fail "$leaks of 40 transactions acted as another user (e.g. $(awk -F'|' '$1 != $2' "$out"/identity.* | head -1))"
# After those transactions, no role or claim of theirs is left on the server connections.
for i in $(seq 8); do
    pool -U easymo_authenticator "SELECT current_user, coalesce(nullif(current_setting('request.jwt.claims', true), ''), 'none'), pg_sleep(0.1)" > "$out/left.$i" &
done
wait
if cat "$out"/left.* | grep -v '^easymo_authenticator|none|'; then
    fail "a role or claims of an earlier transaction were left on a server connection"
fi
pool "RESET ALL" >/dev/null 2>&1 || true
echo "pooler: 40 transactions, each its own user through SET LOCAL ROLE and set_config(..., true): 0 leaks, stray legacy claim ignored"

# 3. SET LOCAL stays in its transaction: one client logs its evaluations, the others do not.
pool "DELETE FROM feature_flag_evaluations"
pool "BEGIN; SET LOCAL easymo.flag_evaluation_log = 'all'; SELECT is_feature_enabled('pool_flag', '00000000-0000-4000-8000-000000000001'); COMMIT;" >/dev/null
for i in $(seq 16); do pool "SELECT is_feature_enabled('pool_flag', '00000000-0000-4000-8000-000000000002'), pg_sleep(0.1)" >/dev/null & done; wait
logged=$(pool "SELECT count(*) FILTER (WHERE user_id = '00000000-0000-4000-8000-000000000001') || ' ' || count(*) FILTER (WHERE user_id = '00000000-0000-4000-8000-000000000002') FROM feature_flag_evaluations")
[ "$logged" = "1 0" ] || fail "expected the SET LOCAL client's evaluation logged and no other (got '$logged')"
echo "pooler: SET LOCAL easymo.flag_evaluation_log logged its own transaction only (16 other evaluations unlogged)"

# 4. Cache: written through one server connection, read from others.
pool "SELECT set_cache('pool:k', '{\"v\": 42}', 600, 'general', '{}', 'authenticated') IS NOT NULL" >/dev/null
for i in $(seq 12); do pool "SELECT pg_backend_pid(), get_cache('pool:k'), pg_sleep(0.1)" > "$out/cache.$i" & done; wait
misses=$(cat "$out"/cache.* | grep -vc '|{"v": 42}|' || true)
cache_pids=$(cut -d'|' -f1 "$out"/cache.* | sort -u | wc -l)
[ "$misses" -eq 0 ] || fail "$misses of 12 reads did not see the cached value"
[ "$cache_pids" -ge 2 ] || fail "expected the 12 reads on several server connections, got $cache_pids"
echo "pooler: a cache write read back by 12 clients on $cache_pids server connections"

# 5. Idempotency keys shared by racing clients.
for c in $(seq 8); do
    pool "SELECT count(create_transaction('00000000-0000-4000-8000-000000000009', 'payment', 100, 'RWF', 'pool-key-' || g)) FROM generate_series(1, 50) g" >/dev/null &
done
wait
counts=$(pool "SELECT count(*) || ' ' || count(DISTINCT idempotency_key) FROM transactions WHERE idempotency_key LIKE 'pool-key-%'")
[ "$counts" = "50 50" ] || fail "expected 50 transactions for 50 keys, got '$counts'"
echo "pooler: 8 clients x 50 shared idempotency keys -> 50 transactions"

kill "$(cat "$out/pgbouncer.pid")" 2>/dev/null || true
cpsql -q -d postgres -c "DROP DATABASE $db WITH (FORCE)"
echo "pooler: pgbouncer $(pgbouncer --version | head -1 | awk '{print $2}') in transaction mode: all checks passed"
