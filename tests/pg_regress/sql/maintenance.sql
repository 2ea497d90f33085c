-- Maintenance and retention: run_maintenance() does each of its jobs and reports them,
-- apply_retention() drops whole months (and what hangs off them) and nothing newer.
\set VERBOSITY terse
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS easymo CASCADE;
CREATE EXTENSION easymo;

-- Nothing to do on a fresh install (installation made this month's partitions and 3 ahead).
SELECT run_maintenance() - 'duration_ms' AS fresh;

-- One of each kind of work.
SELECT set_cache('gone', '1', 60) IS NOT NULL AS cached, set_cache('kept', '2', 60) IS NOT NULL AS cached;
UPDATE cache_entries SET expires_at = now() - interval '1 second' WHERE key = 'gone';
SELECT update_whatsapp_session_activity('+250788000001') IS NOT NULL AS idle,
       update_whatsapp_session_activity('+250788000002') IS NOT NULL AS busy;
UPDATE whatsapp_sessions SET last_activity_at = now() - interval '2 days' WHERE phone_number = '+250788000001';
SELECT schedule_job('report', 'overrun', '{}', now(), 5) IS NOT NULL AS job;
SELECT count(*) AS claimed FROM claim_jobs();
UPDATE background_jobs SET locked_until = now() - interval '1 second';
SELECT enqueue_message('q', 't', '{"n": 1}') IS NOT NULL AS m1, enqueue_message('q', 't', '{"n": 2}') IS NOT NULL AS m2;
SELECT count(*) AS read FROM read_messages('q', 2, 30);
-- One message's visibility timeout passes with its retries left, the other's with none left.
UPDATE message_queue SET locked_until = now() - interval '1 second';
UPDATE message_queue SET retry_count = max_retries WHERE payload = '{"n": 2}';
SELECT enqueue_whatsapp_message('+250788000002', 'text', '{"body": "hi"}') IS NOT NULL AS wa;
SELECT count(*) AS claimed FROM claim_whatsapp_messages(1, 30);
UPDATE whatsapp_message_queue SET locked_until = now() - interval '1 second';
-- And next month's partition of system_metrics is missing.
SELECT format('system_metrics_p%s', to_char(now() AT TIME ZONE 'UTC' + interval '1 month', 'YYYY_MM')) AS next_part \gset
DROP TABLE :"next_part";

SELECT run_maintenance() - 'duration_ms' AS summary;
SELECT to_regclass(:'next_part') IS NOT NULL AS next_month_back;
SELECT key FROM cache_entries ORDER BY key;
SELECT phone_number, status FROM whatsapp_sessions ORDER BY phone_number;
SELECT status, attempts, last_error FROM background_jobs;
SELECT payload, status, retry_count, locked_until IS NULL AS unlocked, last_error FROM message_queue ORDER BY payload::text;
SELECT status, retry_count, last_error FROM whatsapp_message_queue;
-- The released message is due again at once.
SELECT count(*) AS redelivered FROM read_messages('q', 10, 30);
-- A second run finds nothing more to do.
SELECT run_maintenance() - 'duration_ms' AS again;

-- A step that fails is reported, and the other steps still run.
BEGIN;
ALTER FUNCTION time_out_jobs() RENAME TO time_out_jobs_away;
SELECT run_maintenance() -> 'errors' AS errors, run_maintenance() ? 'cache_entries_removed' AS others_ran;
ROLLBACK;

-- Retention. Rows two and three years back and this month, in metrics, transactions (with
-- events and keys) and events; then keep 12 months.
INSERT INTO system_metrics (service_name, metric_type, metric_name, value, created_at)
SELECT 'svc', 'gauge', 'm', g, now() - make_interval(years => g) FROM generate_series(0, 3) g;
SELECT create_transaction('00000000-0000-4000-8000-000000000001', 'payment', 10, 'RWF', 'old-' || g) IS NOT NULL AS tx
  FROM generate_series(0, 3) g;
-- Backdated with the triggers off (a row moving partitions counts as a delete, which the guard
-- against deleting a transaction with events would refuse), side rows along.
SET session_replication_role = replica;
UPDATE transactions t SET created_at = now() - make_interval(years => substr(k.idempotency_key, 5)::int)
  FROM transaction_idempotency_keys k WHERE k.transaction_id = t.id;
UPDATE transaction_events e SET transaction_created_at = t.created_at FROM transactions t WHERE t.id = e.transaction_id;
UPDATE transaction_idempotency_keys k SET transaction_created_at = t.created_at FROM transactions t WHERE t.id = k.transaction_id;
RESET session_replication_role;
SELECT count(*) FILTER (WHERE idempotency_key LIKE 'old-%') AS keys FROM transaction_idempotency_keys;
SELECT ensure_partitions(3) > 0 AS old_months_partitioned;

SELECT apply_retention('system_metrics', 12) AS dropped_metric_partitions;
SELECT count(*) AS metrics_left, min(value) AS newest_kept FROM system_metrics;
SELECT apply_retention('transactions', 12) AS dropped_transaction_partitions;
SELECT count(*) AS transactions_left FROM transactions;
SELECT (SELECT count(*) FROM transaction_events e WHERE NOT EXISTS
          (SELECT 1 FROM transactions t WHERE t.id = e.transaction_id)) AS orphan_events,
       (SELECT count(*) FROM transaction_idempotency_keys k WHERE NOT EXISTS
          (SELECT 1 FROM transactions t WHERE t.id = k.transaction_id)) AS orphan_keys;
-- The dropped partitions left the extension and pg_dump's list of tables with data.
SELECT count(*) AS dangling_config_tables
  FROM pg_extension e, unnest(e.extconfig) c WHERE e.extname = 'easymo' AND to_regclass(c::regclass::text) IS NULL;
SELECT count(*) AS old_partitions_left FROM _partition_bounds('transactions') WHERE upper_bound < now() - interval '1 year';

-- Rows older than the window that sit in the DEFAULT partition go too.
INSERT INTO system_metrics (service_name, metric_type, metric_name, value, created_at)
VALUES ('svc', 'gauge', 'm', 99, now() - interval '5 years');
SELECT count(*) AS in_default FROM system_metrics_default;
SELECT apply_retention('system_metrics', 12) AS dropped_again;
SELECT count(*) AS in_default_after FROM system_metrics_default;
-- 0 months keeps only the current month.
SELECT apply_retention('event_store', 0) AS nothing_to_drop;

-- Bad input.
SELECT regress.error($$SELECT apply_retention(NULL, 3)$$) AS null_table;
SELECT regress.error($$SELECT apply_retention('cache_entries', 3)$$) AS not_partitioned;
SELECT regress.error($$SELECT apply_retention('system_metrics', NULL)$$) AS null_months;
SELECT regress.error($$SELECT apply_retention('system_metrics', -1)$$) AS negative_months;

-- Both are for service_role only.
SELECT has_function_privilege('service_role', 'run_maintenance()', 'EXECUTE') AS service_role_runs,
       has_function_privilege('authenticated', 'run_maintenance()', 'EXECUTE') AS authenticated_runs,
       has_function_privilege('authenticated', 'apply_retention(text, integer, integer)', 'EXECUTE') AS authenticated_retains;
