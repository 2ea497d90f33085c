# Helpers for the benchmark scripts (sourced by benches/run.sh, after cluster_start).
BENCH_DB=easymo_bench

bsql() { cpsql -q -d "$BENCH_DB" "$@"; }

# One client runs on one CPU with its server (a postmaster's new backends inherit its affinity).
# On a virtual machine, a client and a backend on two CPUs wake each other with an
# inter-processor interrupt at every message: here a bare SELECT 1 took 70 µs that way and 14 µs
# on one CPU, the 70 had been 22 on an earlier machine, and that wake-up, not the work, decided
# every 1-client ratio. On one CPU, runs agree within about 1 %. More clients use every CPU.
# BENCH_PIN=0: every run on every CPU.

# all_cpus: every CPU, as taskset takes them.
all_cpus() { echo "0-$(( $(getconf _NPROCESSORS_ONLN) - 1 ))"; }

# cpus_for CLIENTS: the CPUs a run of CLIENTS clients and its server use.
cpus_for() {
    if [ "${BENCH_PIN:-1}" = 1 ] && [ "$1" -eq 1 ]; then echo 0; else all_cpus; fi
}

# on_cpus CLIENTS SERVER_PID COMMAND...: runs COMMAND, and has the server's processes (and those
# it starts meanwhile) run, on the CPUs for CLIENTS clients; the server gets every CPU back after.
on_cpus() {
    local cpus rc=0
    cpus=$(cpus_for "$1")
    taskset -a -p -c "$cpus" "$2" >/dev/null
    taskset -c "$cpus" "${@:3}" || rc=$?
    taskset -a -p -c "$(all_cpus)" "$2" >/dev/null
    return "$rc"
}

# pgbench_with CLIENTS PGBENCH_ARGS...: pgbench against the benchmark cluster, on cpus_for CLIENTS.
pgbench_with() {
    local clients="$1"; shift
    on_cpus "$clients" "$(head -1 "$CLUSTER_DIR/data/postmaster.pid")" \
        "$PG_BIN/pgbench" -n -h "$CLUSTER_SOCK" -p "$CLUSTER_PORT" -U postgres -M prepared \
        -c "$clients" -j "$(( clients < 2 ? 1 : 2 ))" "$@"
}

# pgbench_tps FILE CLIENTS SECONDS [extra pgbench options]: prints the TPS.
# A run that aborts (an error in the script) stops the benchmark with pgbench's own message.
pgbench_tps() {
    local file="$1" clients="$2" seconds="$3"; shift 3
    local out
    out=$(pgbench_with "$clients" -T "$seconds" -f "$file" "$@" "$BENCH_DB" 2>&1) || true
    if grep -q 'error' <<<"$out" || ! grep -q '^tps = ' <<<"$out"; then
        printf '%s\n' "$out" | grep -m 5 -i 'error' >&2
        die "pgbench failed on $file"
    fi
    awk '/^tps = / {printf "%.0f\n", $3}' <<<"$out"
}

# statement_ms FILE RUNS: average latency in ms of a single statement run RUNS times in a row.
statement_ms() {
    pgbench_with 1 -t "$2" -f "$1" "$BENCH_DB" 2>&1 | awk '/^latency average = / {print $4}'
}

# ratio A B: A / B with three decimals (the goal checks read the printed value: with two, 0.975
# would have passed for 0.98).
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }

# result BENCH MEASURE VALUE GOAL: one line of the final table (also shown as it comes).
result() {
    printf '%s|%s|%s|%s\n' "$1" "$2" "$3" "$4" >> "$BENCH_RESULTS"
    printf '  %-62s %12s   (goal: %s)\n' "$2" "$3" "$4" >&2
}

# alternate_tps CLIENTS SECONDS ROUNDS BEFORE FILE...: each file's median TPS over ROUNDS
# rounds, one line per file in the order given (BEFORE: a shell command run before each run, or
# empty). Odd rounds run the files in that order, even rounds in reverse, so no file always runs
# right after the same one (a run pays for the autovacuum and checkpoint work the run before it
# left).
alternate_tps() {
    local clients="$1" seconds="$2" rounds="$3" before="$4"; shift 4
    local files=("$@") tps=() r k i line
    : > "$RUNS_FILE"
    for ((r = 1; r <= rounds; r++)); do
        line=()
        for ((k = 0; k < ${#files[@]}; k++)); do
            if ((r % 2)); then i=$k; else i=$((${#files[@]} - 1 - k)); fi
            [ -z "$before" ] || eval "$before"
            line[i]=$(pgbench_tps "${files[i]}" "$clients" "$seconds")
            tps[i]+="${line[i]} "
        done
        printf '%s\n' "${line[*]}" | awk -v c="$clients" '{ for (i = 1; i <= NF; i++) printf "%.6f%s", c * 1000 / $i, (i < NF ? " " : "\n") }' >> "$RUNS_FILE"
    done
    for ((i = 0; i < ${#files[@]}; i++)); do
        # shellcheck disable=SC2086 # the TPS values, one word each
        median ${tps[i]}
    done
}

# RUNS_FILE: each run (a mixed run, or a round of alternating runs) of the last
# compare_latencies call, one line a run: every file's latency in ms, in the files' order.
RUNS_FILE="$(dirname "$BENCH_RESULTS")/bench-runs.txt"

# run_spread I J: the lowest and highest ratio of file I's latency to file J's (from 1, as given
# to compare_latencies) over the runs of the last compare_latencies call, as "min-max": how far
# one run's ratio may stray from the median's (with more clients than cores, by more than a
# goal's margin: a cache hit 0.645-0.971 of SELECT 1 in one run of nine rounds).
run_spread() {
    awk -v i="$1" -v j="$2" '{ r = $i / $j; if (NR == 1 || r < lo) lo = r; if (NR == 1 || r > hi) hi = r }
        END { printf "%.3f-%.3f", lo, hi }' "$RUNS_FILE"
}

# median V1 V2 ...: the middle value (for alternating rounds that even out machine noise).
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else printf "%.0f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# latency_ms FILE SECONDS: average latency in ms, one client, prepared.
latency_ms() {
    pgbench_with 1 -T "$2" -f "$1" "$BENCH_DB" 2>&1 | awk '/^latency average = / {print $4}'
}

# mixed_latencies CLIENTS SECONDS FILE...: one pgbench run in which every transaction runs one of
# the files, chosen at random with equal weights; prints each file's average time per
# transaction in ms, one line per file in the order given. The sides share the run's every
# moment, so a change in the machine's speed (the same script's CPU per transaction moved by
# 1.6x between two runs here) weighs on both alike, which separate runs cannot promise.
# A transaction's time is from the end of its client's previous transaction to its own end
# (pgbench's per-transaction log, in microseconds): all a client and its server spend on it.
# Printed to the nanosecond: at 0.1 µs (four decimals of a millisecond) a 14 µs transaction's
# ratios moved in steps of 0.7 %, more than some goals' margins.
# pgbench's own "latency" starts later, and how much later depends on the script: a script
# that begins with \set starts its clock before the meta-command, one that begins with a query
# after the client's work between transactions, so a bare `SELECT 1` measured 2.5 µs faster
# than the same query after a `\set` (3 µs to 0.1 µs of the cycle, one CPU). At one client the
# log's own cost (log_cost_ms) is taken off, so the figures are those of a run without the log.
mixed_latencies() {
    local clients="$1" seconds="$2"; shift 2
    local args=() f out logs cost=0
    logs=$(mktemp -d)
    for f in "$@"; do args+=(-f "$f@1"); done
    [ "$clients" -ne 1 ] || cost="$LOG_COST_MS"
    out=$(cd "$logs" && pgbench_with "$clients" -T "$seconds" -l --log-prefix=tx "${args[@]}" "$BENCH_DB" 2>&1) || true
    if grep -q 'error' <<<"$out" || [ "$(grep -c '^ - latency average = ' <<<"$out")" != "$#" ]; then
        printf '%s\n' "$out" | grep -m 5 -i 'error' >&2
        rm -rf "$logs"
        die "pgbench failed on $*"
    fi
    # Log lines: client, transaction, latency (µs), script number (from 0), end time (s, µs);
    # each client's lines in order. A client's first transaction has no previous end: skipped.
    cat "$logs"/tx.* | awk -v n="$#" -v cost="$cost" '{ t = $5 * 1000000 + $6
            if ($1 in last) { sum[$4] += t - last[$1]; count[$4]++ }
            last[$1] = t }
        END { for (i = 0; i < n; i++) printf "%.6f\n", sum[i] / count[i] / 1000 - cost }'
    rm -rf "$logs"
}

# log_cost_ms: what pgbench's per-transaction log adds to a transaction, in ms: a bare SELECT 1
# at one client without and with the log, one run right after the other, seven times; the
# median of the seven differences (about 0.001 ms here). benches/run.sh measures it once, as
# LOG_COST_MS.
log_cost_ms() {
    local dir diffs=() r without with
    dir=$(mktemp -d)
    echo "SELECT 1;" > "$dir/select1.sql"
    for ((r = 1; r <= 7; r++)); do
        without=$(pgbench_tps "$dir/select1.sql" 1 2)
        with=$(cd "$dir" && pgbench_tps "$dir/select1.sql" 1 2 -l --log-prefix=tx)
        rm -f "$dir"/tx.*
        diffs+=("$(awk -v a="$with" -v b="$without" 'BEGIN { printf "%.6f\n", 1000 / a - 1000 / b }')")
    done
    rm -rf "$dir"
    printf '%s\n' "${diffs[@]}" | sort -g | awk '{ v[NR] = $1 } END { m = v[(NR + 1) / 2]; printf "%.6f\n", (m > 0 ? m : 0) }'
}

# mixed_medians CLIENTS SECONDS RUNS BEFORE FILE...: RUNS runs of mixed_latencies (RUNS odd);
# before each, the shell command BEFORE when not empty (a vacuum, a checkpoint). Prints each
# file's median latency in ms, one line per file in the order given.
mixed_medians() {
    local clients="$1" seconds="$2" runs="$3" before="$4"; shift 4
    local lat=() r i line run
    : > "$RUNS_FILE"
    for ((r = 1; r <= runs; r++)); do
        [ -z "$before" ] || eval "$before"
        i=0 run=()
        while read -r line; do lat[i]+="$line " run[i]=$line; i=$((i + 1)); done < <(mixed_latencies "$clients" "$seconds" "$@")
        printf '%s\n' "${run[*]}" >> "$RUNS_FILE"
    done
    for ((i = 0; i < $#; i++)); do
        # shellcheck disable=SC2086 # the latencies, one word each
        printf '%s\n' ${lat[i]} | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'
    done
}

# floor_rounds CLIENTS: how many rounds a comparison against the wire floor (SELECT 1) takes:
# five at one client; nine at more, where separate runs of the same script move by a few per
# cent from one run to the next (the virtual machine's speed, not the code).
floor_rounds() { if [ "$1" -eq 1 ]; then echo 5; else echo 9; fi; }

# tps_of CLIENTS LATENCY_MS: the transactions per second CLIENTS clients make at that latency.
tps_of() { awk -v c="$1" -v l="$2" 'BEGIN { printf "%.0f", c * 1000 / l }'; }

# compare_latencies CLIENTS SECONDS RUNS BEFORE FILE...: each file's latency per transaction in
# ms as CLIENTS clients see it, one line per file in the order given (BEFORE: a shell command run
# before each run, or empty). One client: in the same runs (mixed_medians), which share the
# machine's every moment. More clients: each file in runs of its own, in alternating order,
# medians, as clients * 1000 / TPS. With more clients than cores a mixed run is no measure of
# cost: a transaction waits behind the others whatever it costs itself, which pulls every ratio
# towards 1 (a plpgsql flag evaluation came out at 0.80 of native's rate mixed, 0.38 alone).
compare_latencies() {
    local clients="$1" seconds="$2" runs="$3" before="$4"; shift 4
    if [ "$clients" -eq 1 ]; then
        mixed_medians "$clients" "$seconds" "$runs" "$before" "$@"
        return
    fi
    alternate_tps "$clients" "$seconds" "$runs" "$before" "$@" | awk -v c="$clients" '{printf "%.6f\n", c * 1000 / $1}'
}
