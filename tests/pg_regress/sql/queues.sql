-- Message queue and background jobs: idempotent producers, claims by priority then age, visibility
-- timeouts, acknowledgements, retries with growing delays, dead letters and replay, job leases
-- timed out by maintenance, receipts (stale ones refused) on every queue, batches, ordered
-- groups, waiting reads, metrics, and bad input that writes nothing. (Concurrent consumers: the
-- isolation spec queue_claims and the integration crate.)
\set VERBOSITY terse
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS easymo CASCADE;
CREATE EXTENSION easymo;

-- The backoff before retry n: 2^(n-1) seconds times 0.75 to 1.25, capped at an hour, so each
-- retry waits longer than the one before whatever the jitter.
SELECT n, bool_and(d BETWEEN lo AND hi) AS within_bounds, min(d) <> max(d) AS jittered
  FROM (SELECT n, extract(epoch FROM _retry_delay(n)) AS d,
               0.75 * least(3600, 2 ^ (n - 1)) AS lo, 1.25 * least(3600, 2 ^ (n - 1)) AS hi
          FROM generate_series(1, 14) n, generate_series(1, 200)) s
 GROUP BY n ORDER BY n;

-- Producers. A repeated (queue, key) returns the first message and changes nothing; the same key
-- on another queue, or no key, is a new message.
SELECT enqueue_message('orders', 'order.created', '{"n": 1}', 5, now(), 'order-1') AS m1 \gset
SELECT enqueue_message('orders', 'order.created', '{"n": 1, "again": true}', 1, now(), 'order-1') = :'m1' AS same_id;
SELECT payload, priority FROM message_queue WHERE id = :'m1';
SELECT enqueue_message('billing', 'order.created', '{"n": 1}', 5, now(), 'order-1') <> :'m1' AS other_queue_new;
SELECT enqueue_message('orders', 'order.created', '{"n": 2}') <> enqueue_message('orders', 'order.created', '{"n": 2}') AS no_key_new;
SELECT queue_name, count(*) FROM message_queue GROUP BY 1 ORDER BY 1;

-- Bad input: the contract's SQLSTATE, and not a row written.
SELECT regress.error($$SELECT enqueue_message(NULL, 't', '{}')$$) AS null_queue;
SELECT regress.error($$SELECT enqueue_message('orders', NULL, '{}')$$) AS null_type;
SELECT regress.error($$SELECT enqueue_message('orders', 't', NULL)$$) AS null_payload;
SELECT regress.error($$SELECT enqueue_message('orders', 't', '{}', NULL)$$) AS null_priority;
SELECT regress.error($$SELECT enqueue_message('orders', 't', '{}', 0)$$) AS priority_0;
SELECT regress.error($$SELECT enqueue_message('orders', 't', '{}', 11)$$) AS priority_11;
SELECT regress.error($$SELECT enqueue_message('orders', 't', '{}', 5, 'infinity')$$) AS scheduled_infinity;
SELECT regress.error($$SELECT enqueue_message('', 't', '{}')$$) AS empty_queue;
SELECT regress.error($$SELECT enqueue_message('orders', 't', '{}', 5, now(), '')$$) AS empty_key;
SELECT regress.error(format('SELECT enqueue_message(%L, %L, %L)', 'orders', repeat('t', 256), '{}')) AS long_type;
SELECT count(*) AS still_4 FROM message_queue;

-- Claims: due messages only, by priority then age, never another queue's, at most the batch.
TRUNCATE message_queue;
SELECT count(enqueue_message('work', 'job', jsonb_build_object('n', n), p))
  FROM (VALUES (1, 5), (2, 9), (3, 1), (4, 5), (5, 1)) v(n, p);
SELECT enqueue_message('work', 'job', '{"n": 6}', 1, now() + interval '1 hour') IS NOT NULL AS later;
SELECT enqueue_message('elsewhere', 'job', '{"n": 7}', 1) IS NOT NULL AS other_queue;
SELECT payload ->> 'n' AS n, priority, status, retry_count,
       locked_until BETWEEN now() + interval '59 seconds' AND now() + interval '61 seconds' AS leased_60s
  FROM read_messages('work', 3, 60);
SELECT payload ->> 'n' AS n, priority FROM read_messages('work', 10, 60);
SELECT count(*) AS nothing_left FROM read_messages('work', 10, 60);
SELECT count(*) AS nothing_due FROM read_messages('no-such-queue');

-- Acknowledgement: true once, then false; unknown id P0002; NULL 22004.
SELECT id AS w3 FROM message_queue WHERE payload ->> 'n' = '3' \gset
SELECT ack_message(:'w3') AS first_ack;
SELECT ack_message(:'w3') AS second_ack;
SELECT status, locked_until, completed_at IS NOT NULL AS completed_at_set FROM message_queue WHERE id = :'w3';
SELECT regress.error($$SELECT ack_message('00000000-0000-0000-0000-000000000000')$$) AS unknown;
SELECT regress.error($$SELECT ack_message(NULL)$$) AS null_id;

-- Visibility timeout: a message read and not acknowledged is due again once its lease passes,
-- counted as a failed delivery; until then no one else gets it.
SELECT id AS w5 FROM message_queue WHERE payload ->> 'n' = '5' \gset
SELECT count(*) AS not_yet FROM read_messages('work', 10, 60);
UPDATE message_queue SET locked_until = now() - interval '1 second' WHERE id = :'w5';
SELECT payload ->> 'n' AS n, retry_count, last_error FROM read_messages('work', 10, 60);
-- A lease of 0 seconds makes the message due again at once.
SELECT payload ->> 'n' AS n FROM read_messages('elsewhere', 1, 0);
SELECT payload ->> 'n' AS n, retry_count FROM read_messages('elsewhere', 1, 0);

-- nack: pending again after 1, 2, 4 seconds (each within its jitter, so each longer than the
-- last), then dead_letter once max_retries (3) retries are used up.
SELECT enqueue_message('retry', 'job', '{}') AS r \gset
CREATE TEMP TABLE delays (attempt int, status text, delay_s numeric);
DO $$
DECLARE
    m uuid := (SELECT id FROM message_queue WHERE queue_name = 'retry');
    s text;
BEGIN
    FOR i IN 1..4 LOOP
        UPDATE message_queue SET scheduled_at = now() WHERE id = m;  -- the backoff, skipped
        PERFORM read_messages('retry', 1, 60);
        s := nack_message(m, 'attempt ' || i || ' failed');
        INSERT INTO delays
        SELECT i, s, CASE WHEN s = 'pending' THEN extract(epoch FROM scheduled_at - now()) END
          FROM message_queue WHERE id = m;
    END LOOP;
END
$$;
SELECT attempt, status,
       delay_s BETWEEN 0.75 * 2 ^ (attempt - 1) AND 1.25 * 2 ^ (attempt - 1) AS delay_in_range,
       delay_s > lag(delay_s) OVER (ORDER BY attempt) AS longer_than_before
  FROM delays ORDER BY attempt;
SELECT status, retry_count, last_error, dead_lettered_at IS NOT NULL AS dead_lettered_at_set
  FROM message_queue WHERE id = :'r';
-- A dead letter is never delivered, even when due.
UPDATE message_queue SET scheduled_at = now() - interval '1 hour' WHERE id = :'r';
SELECT count(*) AS not_delivered FROM read_messages('retry');
-- nack of a message not in flight: 55000; unknown: P0002.
SELECT regress.error(format('SELECT nack_message(%L)', :'r')) AS not_in_flight;
SELECT regress.error($$SELECT nack_message('00000000-0000-0000-0000-000000000000')$$) AS unknown;

-- Replay brings it back with its retries counted afresh; replaying twice is a no-op.
SELECT replay_dead_letter(:'r') AS replayed;
SELECT replay_dead_letter(:'r') AS again;
SELECT status, retry_count, dead_lettered_at FROM message_queue WHERE id = :'r';
SELECT payload, retry_count FROM read_messages('retry');
SELECT ack_message(:'r') AS acked;
SELECT regress.error($$SELECT replay_dead_letter('00000000-0000-0000-0000-000000000000')$$) AS unknown;

-- A message whose visibility timeout keeps passing dead-letters too (max_retries 0: one delivery).
SELECT enqueue_message('fragile', 'job', '{}') AS f \gset
UPDATE message_queue SET max_retries = 0 WHERE id = :'f';
SELECT count(*) AS delivered FROM read_messages('fragile', 1, 0);
SELECT count(*) AS not_redelivered FROM read_messages('fragile', 1, 0);
SELECT status, retry_count, last_error FROM message_queue WHERE id = :'f';

-- Consumer bad input: 22004/22023, nothing claimed.
SELECT regress.error($$SELECT read_messages(NULL)$$) AS null_queue;
SELECT regress.error($$SELECT read_messages('work', NULL)$$) AS null_batch;
SELECT regress.error($$SELECT read_messages('work', 0)$$) AS batch_0;
SELECT regress.error($$SELECT read_messages('work', 1001)$$) AS batch_1001;
SELECT regress.error($$SELECT read_messages('work', 10, -1)$$) AS negative_timeout;
SELECT regress.error($$SELECT read_messages('work', 10, NULL)$$) AS null_timeout;
SELECT regress.error($$SELECT nack_message(NULL)$$) AS null_nack;
SELECT regress.error($$SELECT replay_dead_letter(NULL)$$) AS null_replay;

SELECT queue_name, status, messages, max_retries_seen FROM message_queue_stats ORDER BY 1, 2;

-- Background jobs. schedule_job is idempotent by (job type, key).
SELECT schedule_job('email', 'welcome', '{"user": 1}', now(), 5, 'welcome-1') AS j1 \gset
SELECT schedule_job('email', 'welcome', '{"user": 2}', now(), 5, 'welcome-1') = :'j1' AS same_id;
SELECT schedule_job('sms', 'welcome', '{"user": 1}', now(), 5, 'welcome-1') <> :'j1' AS other_type_new;
SELECT schedule_job('email', 'digest', '{}', now() + interval '1 hour') IS NOT NULL AS later;
SELECT schedule_job('report', 'monthly', '{}', now(), 1) IS NOT NULL AS urgent;
SELECT regress.error($$SELECT schedule_job(NULL, 'x')$$) AS null_type;
SELECT regress.error($$SELECT schedule_job('email', NULL)$$) AS null_name;
SELECT regress.error($$SELECT schedule_job('email', 'x', '{}', now(), 0)$$) AS priority_0;
SELECT regress.error($$SELECT schedule_job('email', 'x', '{}', '-infinity')$$) AS scheduled_infinity;
SELECT regress.error($$SELECT schedule_job('email', 'x', '{}', now(), 5, '')$$) AS empty_key;
SELECT count(*) AS still_4 FROM background_jobs;

-- claim_jobs: of the types asked for (or any), due only, priority then age; the lease is the
-- job's timeout_seconds and each claim counts an attempt.
SELECT job_type, job_name, status, attempts, worker_id, locked_until - started_at AS lease
  FROM claim_jobs(ARRAY['email'], 10, 'worker-a');
SELECT job_type, job_name FROM claim_jobs(NULL, 10, 'worker-b');
SELECT count(*) AS nothing_due FROM claim_jobs();
SELECT regress.error($$SELECT claim_jobs(NULL, 0)$$) AS batch_0;
SELECT regress.error($$SELECT claim_jobs(NULL, NULL)$$) AS null_batch;
SELECT regress.error(format('SELECT claim_jobs(NULL, 1, %L)', repeat('w', 256))) AS long_worker;

-- complete_job: true once, stores the result; false for a job not running; unknown P0002.
SELECT complete_job(:'j1', '{"sent": true}') AS completed;
SELECT complete_job(:'j1') AS again;
SELECT status, result, locked_until, completed_at IS NOT NULL AS completed_at_set FROM background_jobs WHERE id = :'j1';
SELECT regress.error($$SELECT complete_job('00000000-0000-0000-0000-000000000000')$$) AS unknown;
SELECT regress.error($$SELECT complete_job(NULL)$$) AS null_id;

-- fail_job: retried after a backoff while attempts remain, failed after max_attempts (3).
SELECT id AS s1 FROM background_jobs WHERE job_type = 'sms' \gset
SELECT fail_job(:'s1', 'gateway down') AS attempt_1;
SELECT status, attempts, last_error, scheduled_at > now() AS backed_off FROM background_jobs WHERE id = :'s1';
SELECT regress.error(format('SELECT fail_job(%L)', :'s1')) AS not_running;
UPDATE background_jobs SET scheduled_at = now() WHERE id = :'s1';
SELECT attempts FROM claim_jobs(ARRAY['sms']);
SELECT fail_job(:'s1', 'gateway down') AS attempt_2;
UPDATE background_jobs SET scheduled_at = now() WHERE id = :'s1';
SELECT attempts FROM claim_jobs(ARRAY['sms']);
SELECT fail_job(:'s1', 'gateway down for good') AS attempt_3;
SELECT status, attempts, last_error, completed_at IS NOT NULL AS completed_at_set FROM background_jobs WHERE id = :'s1';
SELECT count(*) AS not_claimed_again FROM claim_jobs(ARRAY['sms']);

-- Timeouts: a running job past its lease becomes timeout and is retried, or failed when it has
-- used its attempts. Jobs still within their lease are left alone.
SELECT schedule_job('export', 'slow') AS t1 \gset
UPDATE background_jobs SET max_attempts = 2, timeout_seconds = 60 WHERE id = :'t1';
SELECT attempts, locked_until - started_at AS lease FROM claim_jobs(ARRAY['export']);
SELECT time_out_jobs() AS within_lease;
UPDATE background_jobs SET locked_until = now() - interval '1 second' WHERE id = :'t1';
SELECT time_out_jobs() AS timed_out;
SELECT status, attempts, last_error, scheduled_at > now() AS backed_off, worker_id FROM background_jobs WHERE id = :'t1';
UPDATE background_jobs SET scheduled_at = now() WHERE id = :'t1';
SELECT attempts FROM claim_jobs(ARRAY['export']);
UPDATE background_jobs SET locked_until = now() - interval '1 second' WHERE id = :'t1';
SELECT time_out_jobs() AS timed_out;
SELECT status, attempts, last_error, completed_at IS NOT NULL AS completed_at_set FROM background_jobs WHERE id = :'t1';
-- A worker that finishes after its job timed out is told so.
SELECT complete_job(:'t1') AS late_completion;
-- A job a supervisor marked timeout by hand is resolved the same way.
SELECT schedule_job('export', 'stuck') AS t2 \gset
SELECT count(*) FROM claim_jobs(ARRAY['export']);
UPDATE background_jobs SET status = 'timeout' WHERE id = :'t2';
SELECT time_out_jobs() AS none_overran;
SELECT status, attempts FROM background_jobs WHERE id = :'t2';

SELECT job_type, status, jobs, avg_attempts FROM background_job_stats ORDER BY 1, 2;

-- Receipts. Every claim hands out the row's receipt (queue letter, id, delivery number); only the
-- current claim's receipt acts, and only while the message is in flight.
DELETE FROM message_queue;
SELECT enqueue_message('rq', 't', '{"n": 1}') AS r1 \gset
SELECT receipt = 'm:' || id || ':1' AS first_receipt, deliveries FROM read_messages('rq', 1, 0);
SELECT receipt AS old_receipt FROM message_queue WHERE id = :'r1' \gset
-- The lease (0 s) passed: the next claim redelivers it, with a new receipt.
SELECT receipt = 'm:' || id || ':2' AS second_receipt, retry_count FROM read_messages('rq', 1, 30);
SELECT receipt AS new_receipt FROM message_queue WHERE id = :'r1' \gset
-- The first consumer, late, is refused (EQ001) and changes nothing: not ack, nack nor extend.
SELECT regress.error(format('SELECT ack_receipt(%L)', :'old_receipt')) AS stale_ack;
SELECT regress.error(format('SELECT nack_receipt(%L)', :'old_receipt')) AS stale_nack;
SELECT regress.error(format('SELECT extend_receipt(%L, 60)', :'old_receipt')) AS stale_extend;
SELECT status, deliveries, locked_until > now() + interval '25 seconds' AS lease_untouched FROM message_queue WHERE id = :'r1';
-- The current consumer extends its lease, then acknowledges; again is false (a retried ack).
SELECT extend_receipt(:'new_receipt', 600) > now() + interval '590 seconds' AS extended;
SELECT ack_receipt(:'new_receipt') AS acked, ack_receipt(:'new_receipt') AS acked_again;
SELECT status, completed_at IS NOT NULL AS completed FROM message_queue WHERE id = :'r1';
SELECT regress.error(format('SELECT extend_receipt(%L, 60)', :'new_receipt')) AS extend_after_ack;
-- nack by receipt: back to pending after a backoff; the receipt is spent.
SELECT enqueue_message('rq', 't', '{"n": 2}') AS r2 \gset
SELECT receipt AS r2_receipt FROM read_messages('rq', 1, 30) \gset
SELECT nack_receipt(:'r2_receipt', 'smtp down') AS nacked;
SELECT status, retry_count, last_error, scheduled_at > now() AS backed_off FROM message_queue WHERE id = :'r2';
SELECT regress.error(format('SELECT ack_receipt(%L)', :'r2_receipt')) AS ack_after_nack;
-- Unknown item P0002; not a receipt 22023; NULL 22004; extras a queue has no field for 22023.
SELECT regress.error($$SELECT ack_receipt('m:00000000-0000-4000-8000-000000000009:1')$$) AS unknown;
SELECT regress.error($$SELECT ack_receipt('x:1:1')$$) AS not_a_receipt;
SELECT regress.error($$SELECT ack_receipt(NULL)$$) AS null_receipt;
SELECT regress.error(format('SELECT ack_receipt(%L, p_provider_message_id => %L)', :'new_receipt', 'pm')) AS message_has_no_provider_id;
SELECT regress.error(format('SELECT extend_receipt(%L, 43201)', :'new_receipt')) AS lease_too_long;

-- Batches: many receipts in one statement per queue, an outcome each, nothing raised.
SELECT count(*) FROM enqueue_messages('rq', (SELECT jsonb_agg(jsonb_build_object('message_type', 't', 'payload', g)) FROM generate_series(1, 5) g));
UPDATE message_queue SET scheduled_at = now() WHERE queue_name = 'rq';
CREATE TEMP TABLE claimed AS SELECT receipt, payload FROM read_messages('rq', 10, 30) WHERE jsonb_typeof(payload) = 'number';
SELECT count(*) AS claimed FROM claimed;
SELECT outcome, count(*) FROM ack_receipts(ARRAY(SELECT receipt FROM claimed WHERE payload::text::int <= 3 ORDER BY payload::text::int)
                                           || ARRAY[:'old_receipt', :'new_receipt', 'nonsense', 'm:00000000-0000-4000-8000-000000000009:1'])
 GROUP BY 1 ORDER BY 1;
SELECT n.i, n.receipt = c.receipt AS in_order, n.outcome
  FROM nack_receipts(ARRAY(SELECT receipt FROM claimed ORDER BY payload::text::int), 'later') WITH ORDINALITY n(receipt, outcome, i)
  JOIN (SELECT receipt, row_number() OVER (ORDER BY payload::text::int) AS i FROM claimed) c ON c.i = n.i ORDER BY n.i;
SELECT regress.error($$SELECT count(*) FROM ack_receipts(ARRAY[NULL]::text[])$$) AS null_element;
SELECT regress.error($$SELECT count(*) FROM ack_receipts(array_fill('x'::text, ARRAY[1001]))$$) AS too_many;

-- Receipts on every queue: a job (with its result), a WhatsApp message (with the provider's id).
SELECT schedule_job('receipt-job', 'j') AS rj \gset
SELECT receipt LIKE 'j:%:1' AS job_receipt FROM claim_jobs(ARRAY['receipt-job']);
SELECT ack_receipt(receipt, p_result => '{"rows": 3}') FROM background_jobs WHERE id = :'rj';
SELECT status, result FROM background_jobs WHERE id = :'rj';
SELECT enqueue_whatsapp_message('+250788000009', 'text', '{"body": "hi"}') AS rw \gset
SELECT receipt LIKE 'w:%:1' AS whatsapp_receipt FROM claim_whatsapp_messages(10, 30) WHERE id = :'rw';
SELECT nack_receipt(receipt, 'rate limited') FROM whatsapp_message_queue WHERE id = :'rw';
UPDATE whatsapp_message_queue SET scheduled_at = now() WHERE id = :'rw';
SELECT receipt LIKE 'w:%:2' AS second_claim FROM claim_whatsapp_messages(10, 30) WHERE id = :'rw';
SELECT ack_receipt(receipt, 'wamid.9') FROM whatsapp_message_queue WHERE id = :'rw';
SELECT status, provider_message_id, retry_count FROM whatsapp_message_queue WHERE id = :'rw';
SELECT regress.error(format('SELECT ack_receipt(%L, p_result => %L::jsonb)', (SELECT receipt FROM whatsapp_message_queue WHERE id = :'rw'), '{}')) AS whatsapp_has_no_result;

-- Batch enqueue: ids in the order given; a key repeated in the batch or already queued gives the
-- first message's id; one bad element refuses the batch and queues nothing.
DELETE FROM message_queue;
SELECT enqueue_message('bq', 't', '{"first": true}', p_idempotency_key => 'k0') AS k0 \gset
SELECT i, id = :'k0' AS is_k0, count(*) OVER (PARTITION BY id) AS same_id
  FROM enqueue_messages('bq', '[{"message_type": "t", "payload": 1, "idempotency_key": "k1"},
                                {"message_type": "t", "payload": 2, "idempotency_key": "k0"},
                                {"message_type": "t", "payload": 3, "idempotency_key": "k1", "priority": 1},
                                {"message_type": "t", "payload": null, "delay_seconds": 60}]') WITH ORDINALITY e(id, i)
 ORDER BY i;
SELECT payload, priority, idempotency_key, scheduled_at > now() + interval '59 seconds' AS delayed
  FROM message_queue WHERE queue_name = 'bq' ORDER BY seq;
SELECT regress.error($$SELECT count(*) FROM enqueue_messages('bq', '[{"message_type": "t", "payload": 1}, {"message_type": "t"}]')$$) AS missing_payload;
SELECT regress.error($$SELECT count(*) FROM enqueue_messages('bq', '[{"message_type": "t", "payload": 1, "priority": 11}]')$$) AS bad_priority;
SELECT regress.error($$SELECT count(*) FROM enqueue_messages('bq', '[{"message_type": "t", "payload": 1, "priority": "high"}]')$$) AS priority_not_a_number;
SELECT regress.error($$SELECT count(*) FROM enqueue_messages('bq', '[{"message_type": "t", "payload": 1, "colour": "red"}]')$$) AS unknown_field;
SELECT regress.error($$SELECT count(*) FROM enqueue_messages('bq', '[]')$$) AS empty;
SELECT regress.error($$SELECT count(*) FROM enqueue_messages('bq', '{"message_type": "t"}')$$) AS not_an_array;
SELECT regress.error($$SELECT count(*) FROM enqueue_messages('bq', NULL)$$) AS null_messages;
SELECT count(*) AS still_three FROM message_queue WHERE queue_name = 'bq';

-- Ordered groups: one message of a group in flight at a time, in the order queued; other groups
-- and ungrouped messages go on in parallel; a message given back holds its group until it is
-- due again; a dead one lets the group go on.
DELETE FROM message_queue;
SELECT count(*) FROM enqueue_messages('g', '[{"message_type": "t", "payload": "a1", "group_key": "a"},
                                             {"message_type": "t", "payload": "a2", "group_key": "a", "priority": 1},
                                             {"message_type": "t", "payload": "b1", "group_key": "b"},
                                             {"message_type": "t", "payload": "a3", "group_key": "a"},
                                             {"message_type": "t", "payload": "x", "priority": 9}]');
CREATE TEMP TABLE g1 AS SELECT payload #>> '{}' AS p, receipt FROM read_messages('g', 10, 30);
SELECT p FROM g1 ORDER BY p;
SELECT count(*) AS nothing_more_while_heads_in_flight FROM read_messages('g', 10, 30);
SELECT nack_receipt(receipt) FROM g1 WHERE p = 'a1';
SELECT count(*) AS a1_backing_off_holds_its_group FROM read_messages('g', 10, 30);
UPDATE message_queue SET scheduled_at = now() WHERE payload = '"a1"';
SELECT payload #>> '{}' AS p, receipt AS a1_again FROM read_messages('g', 10, 30) \gset
SELECT :'p' AS redelivered_first;
SELECT ack_receipt(:'a1_again');
SELECT payload #>> '{}' AS then_a2 FROM read_messages('g', 10, 30);
UPDATE message_queue SET status = 'dead_letter', dead_lettered_at = now() WHERE payload = '"a2"';
SELECT payload #>> '{}' AS a2_dead_then_a3 FROM read_messages('g', 10, 30);

-- Waiting reads: work already there returns at once; nothing due returns nothing after the wait
-- (woken reads are tested with real connections in the integration crate).
SELECT enqueue_message('w', 't', '{}') IS NOT NULL AS queued;
SELECT count(*) AS got, clock_timestamp() - statement_timestamp() < interval '1 second' AS at_once FROM read_messages('w', 1, 30, 5000);
SELECT count(*) AS got, clock_timestamp() - statement_timestamp() >= interval '200 ms' AS waited FROM read_messages('w', 1, 30, 200);
SELECT regress.error($$SELECT count(*) FROM read_messages('w', 1, 30, 600001)$$) AS wait_too_long;
SELECT regress.error($$SELECT count(*) FROM read_messages('w', 1, 30, -1)$$) AS negative_wait;

-- Metrics per queue.
DELETE FROM message_queue;
SELECT count(*) FROM enqueue_messages('metrics', '[{"message_type": "t", "payload": 1}, {"message_type": "t", "payload": 2},
                                                   {"message_type": "t", "payload": 3}, {"message_type": "t", "payload": 4, "delay_seconds": 3600}]');
SELECT ack_receipt(receipt) FROM read_messages('metrics', 1, 30);
SELECT count(*) FROM read_messages('metrics', 1, 30);
SELECT queue, depth, due, in_flight, dead, oldest_due_seconds >= 0 AS has_oldest, done, total
  FROM queue_metrics() WHERE queue IN ('message_queue:metrics', 'background_jobs:receipt-job', 'whatsapp_message_queue') ORDER BY queue;

-- No JIT inside our statements: their plans are generic, and a generic LIMIT $n is costed at a
-- tenth of the table, which once crossed jit_above_cost on every claim (15 ms of LLVM for a
-- 10-row read). A trigger sees the setting while our INSERT runs; the claim's rows are written
-- without a statement (through the row writer), so its trigger sees the session's own setting,
-- which is back after our statements, after an error inside one too.
CREATE TEMP TABLE jit_seen (during text);
CREATE FUNCTION pg_temp.record_jit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO jit_seen VALUES (current_setting('jit'));
    IF NEW.payload = '"fail"' THEN
        RAISE EXCEPTION 'failing inside our insert';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER record_jit BEFORE INSERT OR UPDATE ON message_queue FOR EACH ROW EXECUTE FUNCTION pg_temp.record_jit();
SET jit = on;
SELECT enqueue_message('jit', 't', '"ok"') IS NOT NULL AS queued;
SELECT count(*) AS claimed FROM read_messages('jit', 1, 30);
SELECT during, count(*) FROM jit_seen GROUP BY during;
SHOW jit;
SELECT regress.error($$SELECT enqueue_message('jit', 't', '"fail"')$$) AS failing_insert;
SHOW jit;
DROP TRIGGER record_jit ON message_queue;
RESET jit;
-- A message without a key is a plain INSERT; a DBA's trigger that suppresses it makes the call
-- fail (55000) rather than return an id of nothing. With a key, the same.
CREATE FUNCTION pg_temp.drop_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE TRIGGER drop_row BEFORE INSERT ON message_queue FOR EACH ROW EXECUTE FUNCTION pg_temp.drop_row();
SELECT regress.error($$SELECT enqueue_message('suppressed', 't', '{}')$$) AS unkeyed;
SELECT regress.error($$SELECT enqueue_message('suppressed', 't', '{}', 5, now(), 'k-1')$$) AS keyed;
DROP TRIGGER drop_row ON message_queue;
SELECT count(*) AS stored FROM message_queue WHERE queue_name = 'suppressed';
SELECT enqueue_message('suppressed', 't', '{}', 5, now(), 'k-1') = enqueue_message('suppressed', 't', '{}', 5, now(), 'k-1') AS keyed_replayed;
-- A batch without keys is a plain INSERT too; suppressed rows make it fail, nothing stored.
CREATE TRIGGER drop_row BEFORE INSERT ON message_queue FOR EACH ROW
    WHEN (NEW.payload = '"drop"') EXECUTE FUNCTION pg_temp.drop_row();
SELECT regress.error($$SELECT count(*) FROM enqueue_messages('suppressed-batch', '[{"message_type": "t", "payload": 1}, {"message_type": "t", "payload": "drop"}]')$$) AS unkeyed_batch;
DROP TRIGGER drop_row ON message_queue;
SELECT count(*) AS stored FROM message_queue WHERE queue_name = 'suppressed-batch';
-- A batch whose keys are all JSON null has no keys; one key anywhere makes it keyed.
SELECT count(DISTINCT id) AS distinct_ids FROM enqueue_messages('mixed-batch', '[{"message_type": "t", "payload": 1, "idempotency_key": null}, {"message_type": "t", "payload": 2}]') id;
SELECT array_agg(id ORDER BY o) AS first_ids
  FROM enqueue_messages('mixed-batch', '[{"message_type": "t", "payload": 1}, {"message_type": "t", "payload": 2, "idempotency_key": "mb-1"}]') WITH ORDINALITY x(id, o) \gset
SELECT ids[1] <> (:'first_ids'::uuid[])[1] AS unkeyed_queued_again, ids[2] = (:'first_ids'::uuid[])[2] AS keyed_replayed
  FROM (SELECT array_agg(id ORDER BY o) AS ids
          FROM enqueue_messages('mixed-batch', '[{"message_type": "t", "payload": 1}, {"message_type": "t", "payload": 2, "idempotency_key": "mb-1"}]') WITH ORDINALITY x(id, o)) b;
SELECT count(*) AS stored FROM message_queue WHERE queue_name = 'mixed-batch';
-- Messages without keys are written row by row through the table (src/postgres/writer.rs) when
-- nothing needs the INSERT statement, by a statement otherwise: the rows are the same. Payloads
-- as given (numbers keep their scale and size), order, priority, delay and group; an element
-- the row writer does not read (a priority written 5.0) sends the batch to the statement
-- (which once refused 5.0 with 22P02 after its check had let it through, and a delay of
-- 1e-400 seconds with 22003). Ids are time-ordered on both ways.
CREATE TEMP TABLE batch AS SELECT jsonb_array AS m FROM (VALUES
    ('[{"message_type": "t", "payload": {"amount": 1.10, "tiny": 1e-3, "big": 123456789012345678901234567890.50, "s": "é\n"}},
       {"message_type": "t", "payload": [1, 2.50], "priority": 1, "delay_seconds": 60, "group_key": "g"},
       {"message_type": "t", "payload": null, "group_key": null, "idempotency_key": null}]'::jsonb),
    ('[{"message_type": "t", "payload": 1}, {"message_type": "t", "payload": 2, "priority": 5.0},
       {"message_type": "t", "payload": 3, "delay_seconds": 1e-400}]'::jsonb)) v(jsonb_array);
SELECT count(*) FROM batch b, enqueue_messages('written', b.m);
SELECT enqueue_message('written', 't', '{"one": 1.0}', 2, now() + interval '1 hour', NULL, 'g2') IS NOT NULL AS single;
CREATE FUNCTION pg_temp.pass() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER pass BEFORE INSERT ON message_queue FOR EACH ROW EXECUTE FUNCTION pg_temp.pass();
SELECT count(*) FROM batch b, enqueue_messages('by-statement', b.m);
SELECT enqueue_message('by-statement', 't', '{"one": 1.0}', 2, now() + interval '1 hour', NULL, 'g2') IS NOT NULL AS single;
DROP TRIGGER pass ON message_queue;
SELECT payload::text, priority, round(extract(epoch FROM scheduled_at - created_at)) AS delay_s, group_key, status, deliveries, receipt
  FROM message_queue WHERE queue_name = 'written' ORDER BY seq;
SELECT (SELECT array_agg(row(message_type, payload::text, priority, round(extract(epoch FROM scheduled_at - created_at)), group_key, status,
                             retry_count, max_retries, deliveries, receipt, idempotency_key) ORDER BY seq)
          FROM message_queue WHERE queue_name = 'written')
     = (SELECT array_agg(row(message_type, payload::text, priority, round(extract(epoch FROM scheduled_at - created_at)), group_key, status,
                             retry_count, max_retries, deliveries, receipt, idempotency_key) ORDER BY seq)
          FROM message_queue WHERE queue_name = 'by-statement') AS same_rows,
       (SELECT bool_and(id::text ~ '^.{14}7') FROM message_queue WHERE queue_name IN ('written', 'by-statement')) AS time_ordered_ids,
       (SELECT array_agg(payload ORDER BY created_at) = array_agg(payload ORDER BY seq)
          FROM message_queue WHERE queue_name = 'written') AS created_in_order;
-- A DBA's statement triggers fire once per call, BEFORE and AFTER, as for one INSERT; a trigger
-- reading the new rows as a transition table sees every message of the call.
CREATE TEMP TABLE stmt_seen (what text);
CREATE FUNCTION pg_temp.stmt_seen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO stmt_seen VALUES (TG_WHEN || ' ' || TG_OP); RETURN NULL; END $$;
CREATE TRIGGER stmt_before BEFORE INSERT ON message_queue FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.stmt_seen();
CREATE TRIGGER stmt_after AFTER INSERT ON message_queue FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.stmt_seen();
SELECT count(*) FROM enqueue_messages('stmt', '[{"message_type": "t", "payload": 1}, {"message_type": "t", "payload": 2}]');
SELECT enqueue_message('stmt', 't', '3') IS NOT NULL AS single;
SELECT what, count(*) FROM stmt_seen GROUP BY what ORDER BY what;
DROP TRIGGER stmt_before ON message_queue;
DROP TRIGGER stmt_after ON message_queue;
CREATE FUNCTION pg_temp.count_new() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO stmt_seen SELECT 'new rows: ' || count(*) FROM new_rows; RETURN NULL; END $$;
CREATE TRIGGER count_new AFTER INSERT ON message_queue REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.count_new();
TRUNCATE stmt_seen;
SELECT count(*) FROM enqueue_messages('stmt', '[{"message_type": "t", "payload": 1}, {"message_type": "t", "payload": 2}]');
SELECT * FROM stmt_seen;
DROP TRIGGER count_new ON message_queue;
-- Row-level security applies to a role without BYPASSRLS: granted INSERT but under no policy,
-- its messages are refused as its own INSERT would be (42501), nothing stored.
CREATE ROLE regress_queue_writer NOLOGIN;
GRANT INSERT, SELECT ON message_queue TO regress_queue_writer;
GRANT USAGE ON SEQUENCE message_queue_seq TO regress_queue_writer;
GRANT EXECUTE ON FUNCTION enqueue_message, enqueue_messages TO regress_queue_writer;
SET ROLE regress_queue_writer;
SELECT regress.error($$SELECT enqueue_message('rls', 't', '1')$$) AS single,
       regress.error($$SELECT count(*) FROM enqueue_messages('rls', '[{"message_type": "t", "payload": 1}]')$$) AS batch;
RESET ROLE;
SELECT count(*) AS stored FROM message_queue WHERE queue_name = 'rls';
REVOKE ALL ON message_queue FROM regress_queue_writer;
REVOKE ALL ON SEQUENCE message_queue_seq FROM regress_queue_writer;
REVOKE ALL ON FUNCTION enqueue_message, enqueue_messages FROM regress_queue_writer;
DROP ROLE regress_queue_writer;
-- A rule on message_queue: the statement inserts, and refuses it (0A000) as before the writer.
BEGIN;
CREATE RULE also_notify AS ON INSERT TO message_queue DO ALSO NOTIFY queue_rule;
SELECT regress.error($$SELECT enqueue_message('rule', 't', '1')$$) AS single,
       regress.error($$SELECT count(*) FROM enqueue_messages('rule', '[{"message_type": "t", "payload": 1}]')$$) AS batch;
ROLLBACK;
-- Claims and acknowledgements of messages are written through the row writer when nothing
-- needs the UPDATE statement, by the statement otherwise (an UPDATE statement trigger, an
-- UPDATE OF trigger, a transition table, a rule, row-level security, a role with only column
-- privileges): the same rows either way. The story: two messages claimed with a lease of 0 s;
-- claimed again, the first is redelivered (counted, its error set, a new receipt) and the
-- second, past its max_retries of 0, goes to dead_letter and is not returned; the first
-- acknowledged, again (already_acked), and with its old receipt (stale).
CREATE FUNCTION pg_temp.claim_story(q text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE r text;
BEGIN
    PERFORM enqueue_message(q, 't', '1', 1);
    PERFORM enqueue_message(q, 't', '2', 2);
    UPDATE message_queue SET max_retries = 0 WHERE queue_name = q AND payload = '2';
    RETURN QUERY SELECT 'first: ' || row(m.payload::text, m.status, m.retry_count, m.deliveries,
                                         m.receipt = 'm:' || m.id || ':1', m.last_error)::text
                   FROM read_messages(q, 10, 0) m;
    RETURN QUERY SELECT 'again: ' || row(m.payload::text, m.status, m.retry_count, m.deliveries,
                                         m.receipt = 'm:' || m.id || ':2', m.last_error)::text
                   FROM read_messages(q, 10, 30) m;
    SELECT receipt INTO r FROM message_queue WHERE queue_name = q AND payload = '1';
    RETURN QUERY SELECT 'acks: ' || string_agg(a.outcome, ', ') FROM ack_receipts(ARRAY[r, r, replace(r, ':2', ':1')]) a;
    RETURN QUERY SELECT 'rows: ' || string_agg(row(m.payload::text, m.status, m.retry_count, m.deliveries, m.receipt IS NOT NULL,
                                                   m.locked_until IS NULL, m.completed_at IS NOT NULL,
                                                   m.dead_lettered_at IS NOT NULL, m.last_error)::text, '; ' ORDER BY m.seq)
                   FROM message_queue m WHERE m.queue_name = q;
END $$;
SELECT pg_temp.claim_story('by-writer');
CREATE TABLE regress_updates_seen (n int);
CREATE FUNCTION pg_temp.update_seen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO regress_updates_seen VALUES (1); RETURN NULL; END $$;
CREATE TRIGGER update_seen AFTER UPDATE ON message_queue FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.update_seen();
SELECT pg_temp.claim_story('by-update');
SELECT count(*) > 0 AS statements_ran FROM regress_updates_seen;
DROP TRIGGER update_seen ON message_queue;
SELECT (SELECT array_agg(s) FROM pg_temp.claim_story('by-writer-2') s) IS NOT DISTINCT FROM
       (SELECT array_agg(s) FROM pg_temp.claim_story('by-update-2') s) AS same_without_trigger;
-- A BEFORE UPDATE trigger that suppresses the update: nothing is claimed or acknowledged,
-- either way (the acknowledgement's receipt is then stale: the message is still in flight).
CREATE FUNCTION pg_temp.suppress() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RETURN CASE WHEN NEW.payload = '"keep"' THEN NULL ELSE NEW END; END $$;
SELECT enqueue_message('update-suppressed', 't', '"keep"') IS NOT NULL AS queued;
CREATE TRIGGER suppress BEFORE UPDATE ON message_queue FOR EACH ROW EXECUTE FUNCTION pg_temp.suppress();
SELECT count(*) AS claimed_by_writer FROM read_messages('update-suppressed', 10, 30);
CREATE TRIGGER update_seen AFTER UPDATE ON message_queue FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.update_seen();
SELECT count(*) AS claimed_by_statement FROM read_messages('update-suppressed', 10, 30);
DROP TRIGGER update_seen ON message_queue;
DROP TRIGGER suppress ON message_queue;
SELECT status, deliveries FROM message_queue WHERE queue_name = 'update-suppressed';
SELECT receipt AS kept_receipt FROM read_messages('update-suppressed', 10, 30) \gset
CREATE TRIGGER suppress BEFORE UPDATE ON message_queue FOR EACH ROW EXECUTE FUNCTION pg_temp.suppress();
SELECT outcome AS by_writer FROM ack_receipts(ARRAY[:'kept_receipt']);
CREATE TRIGGER update_seen AFTER UPDATE ON message_queue FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.update_seen();
SELECT outcome AS by_statement FROM ack_receipts(ARRAY[:'kept_receipt']);
DROP TRIGGER update_seen ON message_queue;
DROP TRIGGER suppress ON message_queue;
SELECT status FROM message_queue WHERE queue_name = 'update-suppressed';
-- A role with UPDATE on some columns only: the statements claim, as its own UPDATE would.
CREATE ROLE regress_queue_columns NOLOGIN BYPASSRLS;
GRANT SELECT, UPDATE (retry_count, deliveries, status, locked_until, last_error, dead_lettered_at, updated_at, completed_at)
    ON message_queue TO regress_queue_columns;
GRANT EXECUTE ON FUNCTION read_messages, ack_receipts TO regress_queue_columns;
SELECT enqueue_message('columns', 't', '1') IS NOT NULL AS queued;
SET ROLE regress_queue_columns;
SELECT receipt AS column_receipt FROM read_messages('columns', 10, 30) \gset
SELECT outcome FROM ack_receipts(ARRAY[:'column_receipt']);
RESET ROLE;
SELECT status FROM message_queue WHERE queue_name = 'columns';
REVOKE ALL ON message_queue FROM regress_queue_columns;
REVOKE ALL ON FUNCTION read_messages, ack_receipts FROM regress_queue_columns;
DROP ROLE regress_queue_columns;
DROP TABLE regress_updates_seen;
-- Receipts are matched to their message pairwise: two in flight at deliveries 1 and 2, each
-- named with the other's delivery, are both stale and stay in flight.
SELECT count(*) FROM enqueue_messages('pairs', '[{"message_type": "t", "payload": "a"}, {"message_type": "t", "payload": "b"}]');
SELECT count(*) AS claimed FROM read_messages('pairs', 1, 0);
SELECT count(*) AS claimed FROM read_messages('pairs', 2, 30);
SELECT payload #>> '{}' AS payload, deliveries FROM message_queue WHERE queue_name = 'pairs' ORDER BY payload;
SELECT string_agg(a.outcome, ', ') AS outcomes
  FROM ack_receipts((SELECT array_agg('m:' || id || ':' || (3 - deliveries) ORDER BY seq) FROM message_queue WHERE queue_name = 'pairs')) a;
SELECT payload #>> '{}' AS payload, status FROM message_queue WHERE queue_name = 'pairs' ORDER BY payload;
SELECT string_agg(a.outcome, ', ') AS outcomes
  FROM ack_receipts((SELECT array_agg(receipt ORDER BY seq) FROM message_queue WHERE queue_name = 'pairs')) a;
