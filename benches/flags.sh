# Feature flag evaluation (issue 3): native is_feature_enabled against
#   - the floor: hashtextextended bucketing in plain SQL over the same rows (no flag lookup);
#   - a plpgsql implementation of the same contract that reads the flag row per call;
#   - SELECT 1, for one evaluation per pgbench transaction.
dir=benches/flags
bsql <<'SQL'
CREATE TABLE bench_users AS SELECT md5(i::text)::uuid AS id FROM generate_series(1, 1000000) i;
ANALYZE bench_users;
INSERT INTO feature_flags (key, name, enabled, rollout_strategy, rollout_percentage)
SELECT 'flag_' || i, 'bench', true, 'percentage', 25 FROM generate_series(1, 10) i;
SQL
bsql -f "$dir/plpgsql.sql"
tmp=$(mktemp -d)
echo "SELECT count(*) FILTER (WHERE is_feature_enabled('flag_1', id)) FROM bench_users;" > "$tmp/native.sql"
echo "SELECT count(*) FILTER (WHERE (hashtextextended('flag_1:' || id::text, 0) % 10000 + 10000) % 10000 < 2500) FROM bench_users;" > "$tmp/floor.sql"
echo "SELECT count(*) FILTER (WHERE plpgsql_is_feature_enabled('flag_1', id)) FROM bench_users;" > "$tmp/plpgsql.sql"
echo "SELECT is_feature_enabled('flag_1', '7c9e6679-7425-40de-944b-e07fc1f90ae7');" > "$tmp/one_native.sql"
echo "SELECT plpgsql_is_feature_enabled('flag_1', '7c9e6679-7425-40de-944b-e07fc1f90ae7');" > "$tmp/one_plpgsql.sql"
echo "SELECT 1;" > "$tmp/select1.sql"

# 1. One statement over 1,000,000 users.
# Native and the floor in the same runs (each statement one or the other at random: the
# machine's speed moves between separate runs by more than the goal's margin).
{ read -r native; read -r floor; } < <(mixed_medians 1 8 3 "" "$tmp/native.sql" "$tmp/floor.sql")
plpgsql=$(statement_ms "$tmp/plpgsql.sql" 1)
result flags "1M users, one statement: native ms" "$native" ""
result flags "1M users, one statement: hashtextextended floor ms" "$floor" ""
result flags "1M users, one statement: plpgsql ms" "$plpgsql" ""
result flags "1M users: native / floor (time)" "$(ratio "$native" "$floor")" "<= 1.2"
result flags "1M users: plpgsql / native (speed-up)" "$(ratio "$plpgsql" "$native")" ">= 20"

# 2. One evaluation per transaction, prepared, against SELECT 1 (compare_latencies: at 1 client
#    in the same pgbench runs, at 8 in alternating runs of their own; 6-second runs, medians of
#    floor_rounds).
#    The goal's two sides run without the plpgsql call beside them: at one client, a third,
#    heavier script in the same run evicts the caches the next transaction uses, and made
#    native's cost over SELECT 1 look 0.2 µs larger than with the two sides alone.
for clients in 1 8; do
    rounds=$(floor_rounds "$clients")
    { read -r s1; read -r n1; } < <(compare_latencies "$clients" 6 "$rounds" "" "$tmp/select1.sql" "$tmp/one_native.sql")
    spread=$(run_spread 1 2)
    { read -r p1; read -r _; } < <(compare_latencies "$clients" 6 3 "" "$tmp/one_plpgsql.sql" "$tmp/select1.sql")
    result flags "pgbench $clients client(s): SELECT 1 / native / plpgsql TPS" "$(tps_of "$clients" "$s1")/$(tps_of "$clients" "$n1")/$(tps_of "$clients" "$p1")" ""
    result flags "pgbench $clients client(s): native TPS / SELECT 1 TPS" "$(ratio "$s1" "$n1")" ">= 0.98"
    result flags "pgbench $clients client(s): the same, one run's (lowest-highest)" "$spread" "(spread)"
done

# 3. The per-evaluation cost does not grow with the number of flags defined (1, 100, 10,000),
#    and a condition rule of 10 conditions costs what it checks.
#    The three counts alternate over three rounds, medians: measured once each, one after the
#    other, a slower minute of the machine made 10,000 flags look 1.43 times as slow as one (the
#    same code: 1.00-1.12 alternating).
flags_defined() {
    bsql -c "DELETE FROM feature_flags WHERE key <> 'flag_1'" \
         -c "INSERT INTO feature_flags (key, name, enabled, rollout_strategy, rollout_percentage)
             SELECT 'flag_' || i, 'bench', true, 'percentage', 25 FROM generate_series(2, $1) i" >/dev/null
}
# (The last round ends with 10,000 defined, which the rule measure below runs beside.)
counts=(1 100 10000) times=()
for ((r = 1; r <= 3; r++)); do
    for ((k = 0; k < 3; k++)); do
        if ((r % 2)); then i=$k; else i=$((2 - k)); fi
        flags_defined "${counts[i]}"
        times[i]+="$(statement_ms "$tmp/native.sql" 5) "
    done
done
# shellcheck disable=SC2086 # the times, one word each
{ one=$(median ${times[0]}); hundred=$(median ${times[1]}); many=$(median ${times[2]}); }
result flags "1M users with 1 / 100 / 10,000 flags defined ms" "$one/$hundred/$many" ""
result flags "10,000 flags / 1 flag (time)" "$(ratio "$many" "$one")" "<= 1.2"
bsql <<'SQL' >/dev/null
INSERT INTO feature_flags (key, name, enabled, rollout_strategy, conditions)
SELECT 'rules_10', 'bench', true, 'condition', jsonb_agg(jsonb_build_object('attribute', 'a' || i, 'operator', 'eq', 'value', i) ORDER BY i)
  FROM generate_series(1, 10) i;
SQL
context=$(printf '"a%s": %s, ' $(for i in $(seq 10); do echo "$i $i"; done) | sed 's/, $//')
echo "SELECT count(*) FILTER (WHERE is_feature_enabled('rules_10', id, 'production', '{$context}')) FROM bench_users;" > "$tmp/rules.sql"
rules=$(statement_ms "$tmp/rules.sql" 5)
result flags "1M users, 10-condition rule / percentage flag (time)" "$(ratio "$rules" "$many")" "(noted)"
rm -rf "$tmp"
