# Money (issue 4): native create_transaction against
#   - a plpgsql implementation of the same contract on the same tables;
#   - the floor: a bare INSERT of one transactions row.
#   - for replays, the floor: a bare primary-key SELECT of the key row, which is all a replay is.
# New keys (every call creates) and replayed keys (every call returns an existing id).
dir=benches/money
bsql -f "$dir/plpgsql.sql"
# 10,000 keys to replay, made by each implementation's own first call.
bsql -c "SELECT count(create_transaction('00000000-0000-0000-0000-000000000001', 'payment', 100.25, 'RWF', 'replay-' || g)) FROM generate_series(1, 10000) g" >/dev/null
bsql -c "VACUUM ANALYZE"
tmp=$(mktemp -d)
user="'00000000-0000-0000-0000-000000000001'"
cat > "$tmp/new_native.sql" <<SQL
\set k random(1, 9000000000000000000)
SELECT create_transaction($user, 'payment', 100.25, 'RWF', 'new-' || :k);
SQL
cat > "$tmp/new_plpgsql.sql" <<SQL
\set k random(1, 9000000000000000000)
SELECT plpgsql_create_transaction($user, 'payment', 100.25, 'RWF', 'pl-' || :k);
SQL
cat > "$tmp/new_floor.sql" <<SQL
\set k random(1, 9000000000000000000)
INSERT INTO transactions (reference, user_id, type, amount, currency, idempotency_key) VALUES ('R-' || :k, $user, 'payment', 100.25, 'RWF', 'bare-' || :k);
SQL
cat > "$tmp/replay_native.sql" <<SQL
\set k random(1, 10000)
SELECT create_transaction($user, 'payment', 100.25, 'RWF', 'replay-' || :k);
SQL
cat > "$tmp/replay_floor.sql" <<SQL
\set k random(1, 10000)
SELECT transaction_id FROM transaction_idempotency_keys WHERE idempotency_key = 'replay-' || :k;
SQL
cat > "$tmp/replay_plpgsql.sql" <<SQL
\set k random(1, 10000)
SELECT plpgsql_create_transaction($user, 'payment', 100.25, 'RWF', 'replay-' || :k);
SQL

# compare_latencies (benches/lib.sh): at 1 client every side in the same pgbench runs (the
# machine's speed moves between separate runs by more than the goals' margins), at 8 in
# alternating runs of their own. Five 6-second runs, medians; TPS as the clients make them at
# that latency.
replay_before='bsql -q -c "VACUUM (ANALYZE) transaction_idempotency_keys" -c "CHECKPOINT"'
for clients in 1 8; do
    { read -r nn; read -r pn; read -r fn; } < <(compare_latencies "$clients" 6 5 "" \
        "$tmp/new_native.sql" "$tmp/new_plpgsql.sql" "$tmp/new_floor.sql")
    # Replays read only: their runs start from a vacuum and a checkpoint, so the new keys'
    # aftermath does not land on them.
    { read -r nr; read -r pr; read -r fr; } < <(compare_latencies "$clients" 6 5 "$replay_before" \
        "$tmp/replay_native.sql" "$tmp/replay_plpgsql.sql" "$tmp/replay_floor.sql")
    result money "$clients client(s), new keys: native / plpgsql / bare INSERT TPS" "$(tps_of "$clients" "$nn")/$(tps_of "$clients" "$pn")/$(tps_of "$clients" "$fn")" ""
    result money "$clients client(s), new keys: native / plpgsql" "$(ratio "$pn" "$nn")" ">= 1.0"
    result money "$clients client(s), new keys: native / bare INSERT" "$(ratio "$fn" "$nn")" ">= 0.7"
    result money "$clients client(s), replayed keys: native / plpgsql / bare key SELECT TPS" "$(tps_of "$clients" "$nr")/$(tps_of "$clients" "$pr")/$(tps_of "$clients" "$fr")" ""
    result money "$clients client(s), replayed keys: native / plpgsql" "$(ratio "$pr" "$nr")" ">= 1.5"
    result money "$clients client(s), replayed keys: native / bare key SELECT" "$(ratio "$fr" "$nr")" ">= 0.95"
done
rm -rf "$tmp"
