# Wallets (issue 17): native wallet_transfer against
#   - a plpgsql ledger of the same contract on the same tables (benches/wallets/plpgsql.sql: rows
#     locked in id order, balances updated, entries inserted: the pgledger way);
#   - for replays, the floor: a bare SELECT of the key's row through its unique index.
# Transfers between random accounts (200 of them), and transfers that all credit one account:
# hot for the native path (credits do not lock its row), a plain row for plpgsql (the row every
# transfer wants). 1 and 8 clients.
dir=benches/wallets
bsql -f "$dir/plpgsql.sql"
# Accounts with ids made from their number, so a script names one without a lookup.
bsql -q <<'SQL' >/dev/null
INSERT INTO wallet_accounts (id, user_id, currency, kind, name, min_balance)
SELECT ('00000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid, gen_random_uuid(), 'RWF', 'user', 'user ' || g, 0
  FROM generate_series(1, 200) g;
INSERT INTO wallet_accounts (id, currency, kind, name, min_balance, hot) VALUES
  ('00000000-0000-4000-9000-000000000001', 'RWF', 'external', 'world', NULL, false),
  ('00000000-0000-4000-9000-000000000002', 'RWF', 'platform', 'fees (hot)', 0, true),
  ('00000000-0000-4000-9000-000000000003', 'RWF', 'platform', 'fees (plain row)', 0, false);
SELECT count(wallet_transfer('00000000-0000-4000-9000-000000000001', id, 1000000000)) FROM wallet_accounts WHERE kind = 'user';
-- 10,000 keys to replay.
SELECT count(wallet_transfer('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000002', 1, 'replay-' || g))
  FROM generate_series(1, 10000) g;
VACUUM ANALYZE;
SQL
tmp=$(mktemp -d)
acct="('00000000-0000-4000-8000-' || lpad(:a::text, 12, '0'))::uuid"
other="('00000000-0000-4000-8000-' || lpad(:b::text, 12, '0'))::uuid"
pick=$'\\set a random(1, 200)\n\\set b 1 + (:a + random(0, 198)) % 200\n\\set k random(1, 9000000000000000000)'
printf '%s\nSELECT wallet_transfer(%s, %s, 1, %s);\n' "$pick" "$acct" "$other" "'n-' || :k" > "$tmp/random_native.sql"
printf '%s\nSELECT plpgsql_wallet_transfer(%s, %s, 1, %s);\n' "$pick" "$acct" "$other" "'p-' || :k" > "$tmp/random_plpgsql.sql"
printf '%s\nSELECT wallet_transfer(%s, %s, 1, %s);\n' "$pick" "$acct" "'00000000-0000-4000-9000-000000000002'::uuid" "'nh-' || :k" > "$tmp/hot_native.sql"
printf '%s\nSELECT plpgsql_wallet_transfer(%s, %s, 1, %s);\n' "$pick" "$acct" "'00000000-0000-4000-9000-000000000003'::uuid" "'ph-' || :k" > "$tmp/hot_plpgsql.sql"
cat > "$tmp/replay_native.sql" <<'SQL'
\set k random(1, 10000)
SELECT wallet_transfer('00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000002', 1, 'replay-' || :k);
SQL
cat > "$tmp/replay_floor.sql" <<'SQL'
\set k random(1, 10000)
SELECT id FROM wallet_transfers WHERE idempotency_key = 'replay-' || :k;
SQL

for clients in 1 8; do
    # Three alternating rounds, medians (the tables grow as the runs go, which both sides see alike).
    rn=(); rp=(); hn=(); hp=()
    for round in 1 2 3; do
        rn+=("$(pgbench_tps "$tmp/random_native.sql" "$clients" 5)")
        rp+=("$(pgbench_tps "$tmp/random_plpgsql.sql" "$clients" 5)")
        hn+=("$(pgbench_tps "$tmp/hot_native.sql" "$clients" 5)")
        hp+=("$(pgbench_tps "$tmp/hot_plpgsql.sql" "$clients" 5)")
    done
    rn=$(median "${rn[@]}"); rp=$(median "${rp[@]}"); hn=$(median "${hn[@]}"); hp=$(median "${hp[@]}")
    # Replays read only: measured apart from the writing runs, after a vacuum and a checkpoint
    # (the writes' aftermath would land on whichever side ran first), in alternating order.
    bsql -q -c "VACUUM (ANALYZE) wallet_transfers" -c "CHECKPOINT"
    { read -r pn; read -r pf; } < <(alternate_tps "$clients" 5 4 "" "$tmp/replay_native.sql" "$tmp/replay_floor.sql")
    result wallets "$clients client(s), random accounts: native / plpgsql TPS" "$rn/$rp" ""
    result wallets "$clients client(s), random accounts: native / plpgsql" "$(ratio "$rn" "$rp")" ">= 1.5"
    result wallets "$clients client(s), one hot credit account: native / plpgsql TPS" "$hn/$hp" ""
    result wallets "$clients client(s), one hot credit account: native / plpgsql" "$(ratio "$hn" "$hp")" \
        "$([ "$clients" = 8 ] && echo '>= 3' || echo '')"
    result wallets "$clients client(s), replayed keys: native / bare key SELECT TPS" "$pn/$pf" ""
    result wallets "$clients client(s), replayed keys: native / bare key SELECT" "$(ratio "$pn" "$pf")" ">= 0.9"
done
# The books after all of it.
result wallets "reconcile_wallets() after the runs" "$(bsql -At -c "SELECT bool_and(ok) FROM reconcile_wallets()")" "t"
rm -rf "$tmp"
