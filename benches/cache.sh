# Cache (issue 6): native get_cache / set_cache against
#   - the plain SQL floor on the same table: a primary-key SELECT with the expiry filter, and
#     INSERT ... ON CONFLICT DO UPDATE;
#   - a plpgsql implementation (benches/cache/plpgsql.sql);
# at 1 and 8 clients; and redis-benchmark against a local redis-server beside them.
bsql -f benches/cache/plpgsql.sql >/dev/null
bsql -c "INSERT INTO cache_entries (key, value, expires_at)
         SELECT g::text, jsonb_build_object('user', g, 'name', 'user ' || g), now() + interval '1 day'
           FROM generate_series(1, 100000) g" >/dev/null
bsql -c "VACUUM ANALYZE cache_entries"
# A service's hot entries have been read before: one read of each makes its shared copy.
bsql -c "SELECT count(get_cache(g::text)) FROM generate_series(1, 100000) g" >/dev/null
tmp=$(mktemp -d)
value="'{\"user\": 42, \"name\": \"user 42\"}'"
q() { printf '%s\n%s\n' "$1" "$2" > "$tmp/$3.sql"; }
# The key is the call's parameter, as a service sends it (supabase.rpc, any driver). The keys
# are numbers: pgbench builds a text key only in SQL, and a prefix ('k:' || :k) put a
# concatenation into every call measured (0.1 µs of a hit's 1.5 over SELECT 1, one client).
# Entries are 1-100000; misses 100001-200000; new keys above them.
hot='\set k random(1, 100000)'
absent='\set k random(100001, 200000)'
fresh='\set k random(200001, 9000000000000000000)'
q "$hot" "SELECT get_cache(:k);" get_hit_native
q "$hot" "SELECT value FROM cache_entries WHERE key = :k AND expires_at > now();" get_hit_floor
q "$hot" "SELECT plpgsql_get_cache(:k);" get_hit_plpgsql
q "$absent" "SELECT get_cache(:k);" get_miss_native
q "$absent" "SELECT value FROM cache_entries WHERE key = :k AND expires_at > now();" get_miss_floor
q "$absent" "SELECT plpgsql_get_cache(:k);" get_miss_plpgsql
upsert="ON CONFLICT (key) DO UPDATE SET value = excluded.value, cache_type = excluded.cache_type, tags = excluded.tags, expires_at = excluded.expires_at, updated_at = now()"
q "$fresh" "SELECT set_cache(:k, $value, 3600);" set_new_native
q "$fresh" "INSERT INTO cache_entries (key, value, expires_at) VALUES (:k, $value, now() + interval '3600 seconds') $upsert;" set_new_floor
q "$fresh" "SELECT plpgsql_set_cache(:k, $value, 3600);" set_new_plpgsql
q "$hot" "SELECT set_cache(:k, $value, 3600);" set_over_native
q "$hot" "INSERT INTO cache_entries (key, value, expires_at) VALUES (:k, $value, now() + interval '3600 seconds') $upsert;" set_over_floor
q "$hot" "SELECT plpgsql_set_cache(:k, $value, 3600);" set_over_plpgsql

echo "SELECT 1;" > "$tmp/select1.sql"
q "$hot" "SELECT to_jsonb(:k::text);" call_floor
# compare_latencies (benches/lib.sh): at 1 client every side in the same pgbench runs, at 8 in
# alternating runs of their own; five 4-second runs (floor_rounds for the wire floor), medians.
# TPS as the clients make them at that latency.
for clients in 1 8; do
    # The wire floor: a hit against a bare SELECT 1; and the floor of any call of this shape, a
    # built-in function of the same argument (to_jsonb(text): the parameter, a function call and
    # a jsonb to send), which no function can beat.
    # Each ratio's two sides in runs of their own (a third script in the run evicts what the
    # others keep in the caches).
    rounds=$(floor_rounds "$clients")
    { read -r n; read -r s; } < <(compare_latencies "$clients" 4 "$rounds" "" "$tmp/get_hit_native.sql" "$tmp/select1.sql")
    spread=$(run_spread 2 1)
    { read -r c; read -r s2; } < <(compare_latencies "$clients" 4 "$rounds" "" "$tmp/call_floor.sql" "$tmp/select1.sql")
    result cache "$clients client(s), get hit / SELECT 1 / to_jsonb(key) TPS" "$(tps_of "$clients" "$n")/$(tps_of "$clients" "$s")/$(tps_of "$clients" "$c")" ""
    result cache "$clients client(s), get hit / SELECT 1" "$(ratio "$s" "$n")" ">= 0.9"
    result cache "$clients client(s), get hit / SELECT 1, one run's (lowest-highest)" "$spread" "(spread)"
    result cache "$clients client(s), to_jsonb(key) / SELECT 1 (a built-in call)" "$(ratio "$s2" "$c")" "(call floor)"
    # (Each against its own run's SELECT 1.)
    result cache "$clients client(s), get hit / to_jsonb(key)" "$(ratio "$(awk -v a="$c" -v b="$s2" 'BEGIN { print a / b }')" "$(awk -v a="$n" -v b="$s" 'BEGIN { print a / b }')")" "(reference)"
    for op in get_hit get_miss set_new set_over; do
        { read -r n; read -r f; read -r p; } < <(compare_latencies "$clients" 4 5 "" \
            "$tmp/${op}_native.sql" "$tmp/${op}_floor.sql" "$tmp/${op}_plpgsql.sql")
        floor_name="PK SELECT"; [ "${op%%_*}" = set ] && floor_name="upsert"
        result cache "$clients client(s), ${op//_/ }: native / $floor_name / plpgsql TPS" "$(tps_of "$clients" "$n")/$(tps_of "$clients" "$f")/$(tps_of "$clients" "$p")" ""
        result cache "$clients client(s), ${op//_/ }: native / $floor_name" "$(ratio "$f" "$n")" ">= 0.9"
    done
done

# Redis beside it: loopback only, no persistence, started and stopped here.
if command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null; then
    redis_port=6399
    redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
        --pidfile "$tmp/redis.pid" --logfile "$tmp/redis.log" >/dev/null
    sleep 0.5
    for clients in 1 8; do
        # -q still draws progress with carriage returns: keep the final lines only.
        rps=$(on_cpus "$clients" "$(cat "$tmp/redis.pid")" redis-benchmark -h 127.0.0.1 -p "$redis_port" -c "$clients" -n 200000 -r 100000 -d 32 -t get,set -q 2>/dev/null \
              | tr '\r' '\n' | awk '/requests per second/ {printf "%s %.0f ", $1, $2}')
        result cache "$clients client(s), redis-benchmark requests/s" "$rps" "(reference)"
    done
    kill "$(cat "$tmp/redis.pid")" 2>/dev/null || true
fi
rm -rf "$tmp"
