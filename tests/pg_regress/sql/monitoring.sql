-- Monitoring: each alert rule firing and clearing, thresholds as rows (per environment), the
-- history maintenance records, and metrics_prometheus() after known activity, checked with
-- promtool.
\set VERBOSITY terse
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS easymo CASCADE;
CREATE EXTENSION easymo;

-- Values that depend on the clock are shown as what they are compared with.
CREATE FUNCTION pg_temp.alerts() RETURNS TABLE(rule text, subject text, value text, threshold double precision, severity text)
LANGUAGE sql AS $$
    SELECT a.rule, a.subject,
           CASE WHEN a.rule IN ('queue_oldest_due_seconds', 'service_stale') THEN CASE WHEN a.value > a.threshold THEN '> threshold' END
                ELSE a.value::text END,
           a.threshold, a.severity
      FROM current_alerts() a
$$;

-- A fresh install has no month partitions yet: partitions_ahead fires for each table.
SELECT * FROM pg_temp.alerts();
SELECT rule, environment, threshold, fires_when, severity, window_seconds, enabled FROM alert_rules ORDER BY rule;
-- Maintenance makes them (and records nothing: by its last step nothing fires).
SELECT run_maintenance() -> 'alert_events_changed' AS changed;
SELECT * FROM pg_temp.alerts();
SELECT subject, value FROM _alert_measures() WHERE rule = 'partitions_ahead' ORDER BY subject;

-- The extension's rows are read-only; an override is a row of its own.
UPDATE alert_rules SET threshold = 5 WHERE rule = 'queue_backlog';
DELETE FROM alert_rules WHERE rule = 'queue_backlog';
-- Each rule, made to fire.
INSERT INTO alert_rules (rule, environment, threshold) VALUES ('queue_backlog', 'all', 5);
SELECT count(enqueue_message('orders', 'order.created', jsonb_build_object('n', g))) FROM generate_series(1, 6) g;
UPDATE message_queue SET scheduled_at = now() - interval '10 minutes', created_at = now() - interval '10 minutes';
SELECT enqueue_message('mail', 'send', '{}') IS NOT NULL AS queued;
UPDATE message_queue SET max_retries = 0 WHERE queue_name = 'mail';
SELECT count(*) AS claimed FROM read_messages('mail', 1, 30);
SELECT nack_message(id, 'smtp down') FROM message_queue WHERE queue_name = 'mail';
SELECT create_transaction('00000000-0000-0000-0000-00000000000a', 'payment', 100, 'RWF') AS tx \gset
SELECT update_transaction_status(:'tx', 'failed', 'card declined') IS NOT NULL AS failed;
SELECT register_service('payments', 'api', '1.0') IS NOT NULL AS registered;
UPDATE service_registry SET last_heartbeat_at = now() - interval '10 minutes';
INSERT INTO system_metrics (service_name, metric_type, metric_name, value, created_at)
VALUES ('api', 'gauge', 'm', 1, '2031-01-15');
INSERT INTO cache_stat_counters (cache_type, hits, misses) VALUES ('profile', 10, 90);
SELECT create_wallet_account('RWF', 'external') AS w1, create_wallet_account('RWF', 'user', '00000000-0000-0000-0000-00000000000a') AS w2 \gset
SELECT wallet_transfer(:'w1', :'w2', 100) IS NOT NULL AS moved;
UPDATE wallet_accounts SET posted = posted + 1 WHERE id = :'w2';
SELECT * FROM pg_temp.alerts();

-- Thresholds are rows: one for this environment wins over the one for all.
INSERT INTO alert_rules (rule, environment, threshold) VALUES ('failed_transactions', 'staging', 0);
SET easymo.environment = 'staging';
SELECT rule, subject, value, threshold FROM pg_temp.alerts() WHERE rule = 'failed_transactions';
RESET easymo.environment;
SELECT count(*) AS production_failed FROM current_alerts() WHERE rule = 'failed_transactions';
-- A disabled rule does not fire.
INSERT INTO alert_rules (rule, environment, threshold, fires_when, severity, enabled) VALUES ('cache_hit_ratio', 'all', 0.5, 'below', 'info', false);
SELECT count(*) AS cache_alerts FROM current_alerts() WHERE rule = 'cache_hit_ratio';
DELETE FROM alert_rules WHERE rule = 'cache_hit_ratio' AND environment = 'all';

-- History: maintenance opens an event per alert and keeps it open while it fires ...
SELECT run_maintenance() -> 'alert_events_changed' AS opened;
SELECT rule, subject, severity, cleared_at IS NULL AS open FROM alert_events ORDER BY rule, subject;
SELECT count(*) = (SELECT count(*) FROM alert_events) AS since_is_start
  FROM current_alerts() a JOIN alert_events e USING (rule, subject) WHERE a.since = e.started_at;
SELECT run_maintenance() -> 'alert_events_changed' AS unchanged;
-- ... and closes it when it clears; a new start is a new event.
UPDATE wallet_accounts SET posted = posted - 1 WHERE id = :'w2';
SELECT ack_message(id) FROM read_messages('orders', 10, 30);
SELECT ensure_partitions(3) >= 0 AS moved_default_rows;
SELECT run_maintenance() -> 'alert_events_changed' AS cleared;
SELECT rule, subject, cleared_at IS NULL AS open FROM alert_events ORDER BY rule, subject;
SELECT * FROM pg_temp.alerts();
SELECT count(*) AS alerts_firing_view FROM alerts_firing;

-- Metrics after known activity.
SELECT set_cache('k', '{}', 60) IS NOT NULL AS cached;
SELECT send_notification('00000000-0000-0000-0000-00000000000a', 't', 'T', 'B', p_channels => ARRAY['push', 'sms']) IS NOT NULL AS notified;
SELECT line FROM regexp_split_to_table(metrics_prometheus(), E'\n') line
 WHERE line LIKE 'easymo_queue_messages{queue="message_queue:%'
    OR line LIKE 'easymo_notification_deliveries%'
    OR line LIKE 'easymo_transactions{%'
    OR line LIKE 'easymo_partitions_ahead{%'
    OR line LIKE 'easymo_alerts_firing{%'
    OR line LIKE 'easymo_cache_misses_total{cache_type="profile"}%'
 ORDER BY line;
SELECT count(*) FILTER (WHERE line LIKE '# HELP %') AS help_lines, count(*) FILTER (WHERE line LIKE '# TYPE %') AS type_lines
  FROM regexp_split_to_table(metrics_prometheus(), E'\n') line;
-- Label values are escaped.
SELECT _prometheus_label(E'a"b\\c\nd') AS escaped;
SELECT enqueue_message(E'we"ird\\queue', 't', '{}') IS NOT NULL AS queued;
SELECT line FROM regexp_split_to_table(metrics_prometheus(), E'\n') line WHERE line LIKE 'easymo_queue_messages%we%ird%' ORDER BY line;
-- promtool (Prometheus's own checker) accepts the whole output.
\pset tuples_only on
\pset format unaligned
\o /tmp/easymo_regress_metrics.prom
SELECT metrics_prometheus();
\o
\! promtool check metrics < /tmp/easymo_regress_metrics.prom > /tmp/easymo_regress_promtool.log 2>&1 && echo 'promtool check metrics: ok' || cat /tmp/easymo_regress_promtool.log
\! rm -f /tmp/easymo_regress_metrics.prom /tmp/easymo_regress_promtool.log
\pset tuples_only off
\pset format aligned

-- Only service_role reads alerts and metrics.
SET ROLE authenticated;
SELECT count(*) FROM current_alerts();
SELECT metrics_prometheus() IS NOT NULL;
RESET ROLE;
SET ROLE service_role;
BEGIN READ ONLY;
SELECT count(*) >= 0 AS read_only_alerts FROM current_alerts();
SELECT length(metrics_prometheus()) > 0 AS read_only_metrics;
COMMIT;
RESET ROLE;

-- Every rule clears, and maintenance closes its event: a heartbeat (service_stale), the dead
-- letter replayed (dead_letters), hits (cache_hit_ratio). failed_transactions opens and closes
-- under the staging override; partitions_ahead under a stricter one (maintenance itself makes
-- the months, so only a threshold above what it keeps makes it fire for long enough to record).
SELECT service_heartbeat('payments') AS heartbeat;
SELECT replay_dead_letter(id) AS replayed FROM message_queue WHERE queue_name = 'mail';
UPDATE cache_stat_counters SET hits = 90, misses = 10 WHERE cache_type = 'profile';
INSERT INTO alert_rules (rule, environment, threshold, fires_when, severity) VALUES ('partitions_ahead', 'all', 5, 'below', 'critical');
SET easymo.environment = 'staging';
SELECT run_maintenance() -> 'alert_events_changed' AS staging_changes;
SELECT rule, subject, cleared_at IS NULL AS open FROM alert_events ORDER BY rule, subject, started_at;
DELETE FROM alert_rules WHERE environment IN ('staging', 'all') AND rule IN ('failed_transactions', 'partitions_ahead');
SELECT run_maintenance() -> 'alert_events_changed' AS staging_cleared;
RESET easymo.environment;
SELECT rule, subject, cleared_at IS NULL AS open FROM alert_events ORDER BY rule, subject, started_at;
SELECT count(*) AS open_events FROM alert_events WHERE cleared_at IS NULL;
SELECT * FROM pg_temp.alerts();
