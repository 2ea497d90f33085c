# Helpers for the benchmark scripts (sourced by benches/run.sh, after cluster_start).
BENCH_DB=easymo_bench

bsql() { cpsql -q -d "$BENCH_DB" "$@"; }

# pgbench_run FILE CLIENTS SECONDS [extra pgbench options]: prints the TPS.
# A run that aborts (an error in the script) stops the benchmark with pgbench's own message.
pgbench_tps() {
    local file="$1" clients="$2" seconds="$3"; shift 3
    local out
    out=$("$PG_BIN/pgbench" -n -h "$CLUSTER_SOCK" -p "$CLUSTER_PORT" -U postgres -M prepared \
        -c "$clients" -j "$(( clients < 2 ? 1 : 2 ))" -T "$seconds" -f "$file" "$@" "$BENCH_DB" 2>&1) || true
    if grep -q 'error' <<<"$out" || ! grep -q '^tps = ' <<<"$out"; then
        printf '%s\n' "$out" | grep -m 5 -i 'error' >&2
        die "pgbench failed on $file"
    fi
    awk '/^tps = / {printf "%.0f\n", $3}' <<<"$out"
}

# statement_ms FILE RUNS: average latency in ms of a single statement run RUNS times in a row.
statement_ms() {
    "$PG_BIN/pgbench" -n -h "$CLUSTER_SOCK" -p "$CLUSTER_PORT" -U postgres -M prepared \
        -c 1 -t "$2" -f "$1" "$BENCH_DB" 2>&1 | awk '/^latency average = / {print $4}'
}

# ratio A B: A / B with two decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# result BENCH MEASURE VALUE GOAL: one line of the final table (also shown as it comes).
result() {
    printf '%s|%s|%s|%s\n' "$1" "$2" "$3" "$4" >> "$BENCH_RESULTS"
    printf '  %-62s %12s   (goal: %s)\n' "$2" "$3" "$4" >&2
}

# alternate_tps CLIENTS SECONDS ROUNDS FILE...: each file's median TPS over ROUNDS rounds, one
# line per file in the order given. Odd rounds run the files in that order, even rounds in
# reverse, so no file always runs right after the same one (a run pays for the autovacuum and
# checkpoint work the run before it left).
alternate_tps() {
    local clients="$1" seconds="$2" rounds="$3"; shift 3
    local files=("$@") tps=() r k i
    for ((r = 1; r <= rounds; r++)); do
        for ((k = 0; k < ${#files[@]}; k++)); do
            if ((r % 2)); then i=$k; else i=$((${#files[@]} - 1 - k)); fi
            tps[i]+="$(pgbench_tps "${files[i]}" "$clients" "$seconds") "
        done
    done
    for ((i = 0; i < ${#files[@]}; i++)); do
        # shellcheck disable=SC2086 # the TPS values, one word each
        median ${tps[i]}
    done
}

# median V1 V2 ...: the middle value (for alternating rounds that even out machine noise).
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else printf "%.0f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# latency_ms FILE SECONDS: average latency in ms, one client, prepared.
latency_ms() {
    "$PG_BIN/pgbench" -n -h "$CLUSTER_SOCK" -p "$CLUSTER_PORT" -U postgres -M prepared \
        -c 1 -T "$2" -f "$1" "$BENCH_DB" 2>&1 | awk '/^latency average = / {print $4}'
}

# mixed_latencies CLIENTS SECONDS FILE...: one pgbench run in which every transaction runs one of
# the files, chosen at random with equal weights; prints each file's average latency per
# transaction in ms, one line per file in the order given. The sides share the run's every
# moment, so a change in the machine's speed (the same script's CPU per transaction moved by
# 1.6x between two runs here) weighs on both alike, which separate runs cannot promise.
mixed_latencies() {
    local clients="$1" seconds="$2"; shift 2
    local args=() f out
    for f in "$@"; do args+=(-f "$f@1"); done
    out=$("$PG_BIN/pgbench" -n -h "$CLUSTER_SOCK" -p "$CLUSTER_PORT" -U postgres -M prepared \
        -c "$clients" -j "$(( clients < 2 ? 1 : 2 ))" -T "$seconds" "${args[@]}" "$BENCH_DB" 2>&1) || true
    if grep -q 'error' <<<"$out" || [ "$(grep -c '^ - latency average = ' <<<"$out")" != "$#" ]; then
        printf '%s\n' "$out" | grep -m 5 -i 'error' >&2
        die "pgbench failed on $*"
    fi
    awk '/^ - latency average = / {print $5}' <<<"$out"
}
