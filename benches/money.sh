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

for clients in 1 8; do
    # Five alternating rounds, medians: single runs differ by 10 % here, and the tables grow as
    # the runs go, which all three then see alike.
    nn=(); pn=(); fn=()
    for round in 1 2 3 4 5; do
        nn+=("$(pgbench_tps "$tmp/new_native.sql" "$clients" 6)")
        pn+=("$(pgbench_tps "$tmp/new_plpgsql.sql" "$clients" 6)")
        fn+=("$(pgbench_tps "$tmp/new_floor.sql" "$clients" 6)")
    done
    nn=$(median "${nn[@]}"); pn=$(median "${pn[@]}"); fn=$(median "${fn[@]}")
    # Replays read only: measured apart from the writing runs, after a vacuum and a checkpoint
    # (the writes' aftermath would land on whichever ran first), in alternating order.
    bsql -q -c "VACUUM (ANALYZE) transaction_idempotency_keys" -c "CHECKPOINT"
    { read -r nr; read -r pr; read -r fr; } < <(alternate_tps "$clients" 6 4 \
        "$tmp/replay_native.sql" "$tmp/replay_plpgsql.sql" "$tmp/replay_floor.sql")
    result money "$clients client(s), new keys: native / plpgsql / bare INSERT TPS" "$nn/$pn/$fn" ""
    result money "$clients client(s), new keys: native / plpgsql" "$(ratio "$nn" "$pn")" ">= 1.0"
    result money "$clients client(s), new keys: native / bare INSERT" "$(ratio "$nn" "$fn")" ">= 0.7"
    result money "$clients client(s), replayed keys: native / plpgsql / bare key SELECT TPS" "$nr/$pr/$fr" ""
    result money "$clients client(s), replayed keys: native / plpgsql" "$(ratio "$nr" "$pr")" ">= 1.5"
    result money "$clients client(s), replayed keys: native / bare key SELECT" "$(ratio "$nr" "$fr")" ">= 0.95"
done
rm -rf "$tmp"
