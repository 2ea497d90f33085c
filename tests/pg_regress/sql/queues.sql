-- Message queue and background jobs: idempotent producers, claims by priority then age, visibility
-- timeouts, acknowledgements, retries with growing delays, dead letters and replay, job leases
-- timed out by maintenance, and bad input that writes nothing. (Concurrent consumers: the
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
