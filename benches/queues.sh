# Queues (issues 7, 19): messages through message_queue, enqueue + read + ack, with easymo's
# helpers (enqueue_message or, for a batch, enqueue_messages; read_messages; ack_receipts) against
# the plain-SQL way on the same table (INSERT; UPDATE ... FROM (SELECT ... FOR UPDATE SKIP
# LOCKED); UPDATE ... WHERE id = ANY). Each pgbench client is a producer and a consumer: per
# transaction of the script it queues a batch, claims a batch (the oldest due, by priority, from a
# backlog of 10,000) and acknowledges what it claimed, each step its own transaction as in a real
# service. Batches of 1 and 10, at 1 and 4 clients; both sides in the same runs (see below), and
# for reference in runs of their own. Then the latency from an enqueue's commit to a read that
# was waiting for it.
bsql -c "INSERT INTO message_queue (queue_name, message_type, payload, priority, created_at)
         SELECT 'bench', 'job', jsonb_build_object('n', g), 1 + g % 10, now() - interval '1 hour' + g * interval '1 ms'
           FROM generate_series(1, 10000) g" >/dev/null
bsql -c "VACUUM ANALYZE message_queue"
tmp=$(mktemp -d)
payload='{"ride": 42, "event": "driver_assigned"}'
for batch in 1 10; do
    if [ "$batch" = 1 ]; then
        enqueue="SELECT enqueue_message('bench', 'job', '$payload');"
    else
        messages=""
        for _ in $(seq "$batch"); do messages+="{\"message_type\": \"job\", \"payload\": $payload},"; done
        enqueue="SELECT count(*) FROM enqueue_messages('bench', '[${messages%,}]');"
    fi
    cat > "$tmp/native_$batch.sql" <<SQL
$enqueue
SELECT array_agg(receipt) AS receipts, jsonb_agg(payload) AS payloads FROM read_messages('bench', $batch, 30) \gset
SELECT count(*) FROM ack_receipts(:receipts::text[]);
SQL
    # The same steps in plain SQL; the claim hands its ids on as an array, as the native one does
    # its receipts, and both bring the payloads to the consumer (which works on them).
    cat > "$tmp/sql_$batch.sql" <<SQL
INSERT INTO message_queue (queue_name, message_type, payload) SELECT 'bench', 'job', '$payload' FROM generate_series(1, $batch);
WITH due AS (SELECT id FROM message_queue WHERE queue_name = 'bench' AND status = 'pending' AND scheduled_at <= now() ORDER BY priority, created_at, id LIMIT $batch FOR UPDATE SKIP LOCKED), claimed AS (UPDATE message_queue t SET status = 'processing', locked_until = now() + interval '30 seconds', updated_at = now() FROM due WHERE t.id = due.id RETURNING t.id, t.payload) SELECT array_agg(id) AS ids, jsonb_agg(payload) AS payloads FROM claimed \gset
UPDATE message_queue SET status = 'completed', completed_at = now(), locked_until = NULL, updated_at = now() WHERE id = ANY (:ids::uuid[]) AND status = 'processing';
SQL
done

for clients in 1 4; do
    for batch in 1 10; do
        # The goal's measure: both sides in the same runs, each transaction running one of the
        # two scripts at random (mixed_latencies), five 6-second runs, each from a vacuumed
        # table and a checkpoint (the acknowledged rows a run leaves in the indexes, which every
        # claim walks past until a vacuum, and the full-page images after a checkpoint would
        # otherwise weigh on whichever run comes next). Medians of the latency per script run;
        # messages/s as the clients would move them at that latency.
        n=(); s=()
        for round in 1 2 3 4 5; do
            bsql -c "VACUUM message_queue" -c "CHECKPOINT"
            read -r -d '' ln ls < <(mixed_latencies "$clients" 6 "$tmp/native_$batch.sql" "$tmp/sql_$batch.sql") || true
            n+=("$ln"); s+=("$ls")
        done
        n=$(median "${n[@]}"); s=$(median "${s[@]}")
        rate() { awk -v c="$clients" -v b="$batch" -v l="$1" 'BEGIN { printf "%.0f", c * b * 1000 / l }'; }
        result queues "$clients client(s), batch $batch: easymo / plain SQL ms per run" "$n/$s" ""
        result queues "$clients client(s), batch $batch: easymo / plain SQL messages/s" "$(rate "$n")/$(rate "$s")" ""
        result queues "$clients client(s), batch $batch: easymo / plain SQL" "$(ratio "$s" "$n")" ">= 1.0"
        # For reference, the earlier measure: each side in runs of its own (seven 4-second rounds
        # in alternating order, medians), which the machine's drift between runs moves by as
        # much as 0.4.
        n=(); s=()
        for round in 1 2 3 4 5 6 7; do
            for side in native sql; do
                ((round % 2)) || side=$([ "$side" = native ] && echo sql || echo native)
                bsql -c "VACUUM message_queue" -c "CHECKPOINT"
                if [ "$side" = native ]; then
                    n+=("$(pgbench_tps "$tmp/native_$batch.sql" "$clients" 4)")
                else
                    s+=("$(pgbench_tps "$tmp/sql_$batch.sql" "$clients" 4)")
                fi
            done
        done
        n=$(median "${n[@]}"); s=$(median "${s[@]}")
        result queues "$clients client(s), batch $batch: separate runs, easymo / plain SQL messages/s" "$((n * batch))/$((s * batch))" ""
    done
done
# Nothing was lost on the way: every message queued was acknowledged or is still waiting.
bsql -At -c "SELECT 'left in flight: ' || count(*) FILTER (WHERE status = 'processing') || ', pending: ' || count(*) FILTER (WHERE status = 'pending') FROM message_queue" >&2

# Latency: a read waits (up to 5 s) on an empty queue; 200 ms later a producer queues a message
# carrying its clock time; the read returns the time from then to its return. 20 rounds.
latencies=()
for _ in $(seq 20); do
    bsql -At -c "SELECT round(extract(epoch FROM clock_timestamp() - (payload ->> 't')::timestamptz) * 1000, 2)
                   FROM read_messages('latency', 1, 30, 5000)" > "$tmp/latency" &
    sleep 0.2
    bsql -c "SELECT enqueue_message('latency', 't', jsonb_build_object('t', clock_timestamp()))" >/dev/null
    wait
    latencies+=("$(cat "$tmp/latency")")
done
result queues "enqueue to a waiting read, ms (median of 20)" "$(median "${latencies[@]}")" "< 50"
result queues "enqueue to a waiting read, ms (worst of 20)" "$(printf '%s\n' "${latencies[@]}" | sort -n | tail -1)" "< 50"
rm -rf "$tmp"
