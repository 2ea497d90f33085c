-- Monitoring: alerts on what goes wrong (rules and thresholds are rows, per environment), their
-- history (maintenance records when each starts and clears), and the extension's state in the
-- Prometheus text exposition format for a scraper.

CREATE TABLE @extschema@.alert_rules (
    rule           text NOT NULL CHECK (rule IN ('queue_backlog', 'queue_oldest_due_seconds', 'dead_letters',
                                                 'failed_transactions', 'service_stale', 'partitions_ahead',
                                                 'default_partition_rows', 'cache_hit_ratio', 'wallet_reconciliation')),
    -- The environment the rule is for (easymo.environment), all of them, or `default`: the
    -- extension's own rows, which a row for all or for one environment overrides.
    environment    text NOT NULL DEFAULT 'all' CHECK (length(environment) BETWEEN 1 AND 64),
    threshold      double precision NOT NULL CHECK (threshold = threshold AND threshold <> 'Infinity' AND threshold <> '-Infinity'),
    -- Fires when the value is above the threshold, or below it.
    fires_when     text NOT NULL DEFAULT 'above' CHECK (fires_when IN ('above', 'below')),
    severity       text NOT NULL DEFAULT 'warning' CHECK (severity IN ('info', 'warning', 'critical')),
    -- For the rules that count over a recent window (dead letters, failed transactions).
    window_seconds integer CHECK (window_seconds BETWEEN 1 AND 31536000),
    enabled        boolean NOT NULL DEFAULT true,
    description    text CHECK (length(description) <= 1000),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (rule, environment)
);
CREATE TRIGGER alert_rules_touch BEFORE UPDATE ON @extschema@.alert_rules
    FOR EACH ROW EXECUTE FUNCTION @extschema@._touch_updated_at();
COMMENT ON TABLE @extschema@.alert_rules IS
    'Alert thresholds, one row per rule and environment: the row for the current easymo.environment wins over the row for all, which wins over the extension''s own (environment default, read-only): threshold, fires above or below it, severity, window for counted rules, enabled.';
-- The extension's rows are made by CREATE EXTENSION (and its updates), so they are left out of
-- pg_dump (security.sql) and cannot be changed: an override is a row of its own, which the dump
-- keeps and a restore cannot collide with.
CREATE FUNCTION @extschema@._alert_rules_keep_defaults()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'alert rule % for environment default is the extension''s own', OLD.rule
        USING ERRCODE = '55000',
              HINT = 'Override it with a row of its own: INSERT INTO alert_rules (rule, environment, threshold, ...) VALUES (..., ''all'', ...).';
END
$$;
COMMENT ON FUNCTION @extschema@._alert_rules_keep_defaults() IS
    'Internal trigger function: the extension''s own alert rules (environment default) are read-only (55000); a row for all or one environment overrides them.';
INSERT INTO @extschema@.alert_rules (rule, environment, threshold, fires_when, severity, window_seconds, description)
SELECT rule, 'default', threshold, fires_when, severity, window_seconds, description FROM (VALUES
    ('queue_backlog',            1000, 'above', 'warning',  NULL, 'Due messages waiting in a queue (message_queue per queue, WhatsApp, jobs per type, notifications per channel).'),
    ('queue_oldest_due_seconds', 300,  'above', 'warning',  NULL, 'Seconds the oldest due message of a queue has waited.'),
    ('dead_letters',             0,    'above', 'critical', 86400, 'Messages, jobs and deliveries that gave up within the window, per queue.'),
    ('failed_transactions',      10,   'above', 'critical', 3600, 'Transactions that failed within the window.'),
    ('service_stale',            120,  'above', 'critical', NULL, 'Seconds since a registered service''s last heartbeat.'),
    ('partitions_ahead',         2,    'below', 'critical', NULL, 'Months of partitions after the current one, per partitioned table.'),
    ('default_partition_rows',   0,    'above', 'warning',  NULL, 'Rows in a DEFAULT partition (a month without its partition).'),
    ('cache_hit_ratio',          0.5,  'below', 'info',     NULL, 'Cache hits over lookups, per cache type with at least 100 lookups.'),
    ('wallet_reconciliation',    0,    'above', 'critical', NULL, 'Wallet accounts that disagree with their entries or holds, per currency (or balances not summing to zero).')
) AS d(rule, threshold, fires_when, severity, window_seconds, description);
CREATE TRIGGER alert_rules_keep_defaults BEFORE UPDATE OR DELETE ON @extschema@.alert_rules
    FOR EACH ROW WHEN (OLD.environment = 'default') EXECUTE FUNCTION @extschema@._alert_rules_keep_defaults();

CREATE TABLE @extschema@.alert_events (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    rule       text NOT NULL CHECK (length(rule) BETWEEN 1 AND 64),
    subject    text NOT NULL CHECK (length(subject) <= 512),
    severity   text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    value      double precision NOT NULL,
    threshold  double precision NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    cleared_at timestamptz,
    CHECK (cleared_at IS NULL OR cleared_at >= started_at)
);
-- One open event per rule and subject.
CREATE UNIQUE INDEX alert_events_open_idx ON @extschema@.alert_events (rule, subject) WHERE cleared_at IS NULL;
CREATE INDEX alert_events_started_idx ON @extschema@.alert_events (started_at);
COMMENT ON TABLE @extschema@.alert_events IS
    'Alert history: when each alert (rule, subject) started firing and when it cleared (NULL while it fires), with the value and threshold when it started. Written by run_maintenance().';

SELECT @extschema@._secure_table('@extschema@.alert_rules');
SELECT @extschema@._secure_table('@extschema@.alert_events');

-- Every measure a rule looks at, for the rule row that applies here: one row per rule and
-- subject, firing or not. As the owner: it counts DEFAULT partitions, which nobody else may read
-- directly (they are read through their parent); only service_role may call it.
CREATE FUNCTION @extschema@._alert_measures()
RETURNS TABLE(rule text, subject text, value double precision, threshold double precision, severity text, firing boolean)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    env CONSTANT text := coalesce(nullif(current_setting('easymo.environment', true), ''), 'production');
    dead_window interval;
    failed_window interval;
    this_month timestamptz := date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    -- Rows in each DEFAULT partition, by table: counted here with EXECUTE (no XML functions,
    -- which a server built without libxml lacks), and only when the rule is on.
    default_rows jsonb := '{}'::jsonb;
    part record;
    n bigint;
BEGIN
    IF EXISTS (SELECT 1 FROM (SELECT ar.enabled FROM @extschema@.alert_rules ar
                               WHERE ar.rule = 'default_partition_rows' AND ar.environment IN (env, 'all', 'default')
                               ORDER BY array_position(ARRAY[env, 'all', 'default'], ar.environment) LIMIT 1) x
                WHERE x.enabled) THEN
        FOR part IN SELECT c.relname::text AS name, p.partdefid::regclass AS default_part
                      FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid
                     WHERE c.relnamespace = '@extschema@'::regnamespace AND p.partdefid <> 0
        LOOP
            EXECUTE format('SELECT count(*) FROM %s', part.default_part) INTO n;
            default_rows := default_rows || jsonb_build_object(part.name, n);
        END LOOP;
    END IF;
    SELECT make_interval(secs => coalesce(r.window_seconds, 86400)) INTO dead_window
      FROM @extschema@.alert_rules r WHERE r.rule = 'dead_letters' AND r.environment IN (env, 'all', 'default')
     ORDER BY array_position(ARRAY[env, 'all', 'default'], r.environment) LIMIT 1;
    SELECT make_interval(secs => coalesce(r.window_seconds, 3600)) INTO failed_window
      FROM @extschema@.alert_rules r WHERE r.rule = 'failed_transactions' AND r.environment IN (env, 'all', 'default')
     ORDER BY array_position(ARRAY[env, 'all', 'default'], r.environment) LIMIT 1;
    RETURN QUERY
    WITH r AS (
        -- The row for this environment, else for all, else the extension's; then only if enabled.
        SELECT x.rule, x.threshold, x.fires_when, x.severity FROM (
            SELECT DISTINCT ON (ar.rule) ar.rule, ar.threshold, ar.fires_when, ar.severity, ar.enabled
              FROM @extschema@.alert_rules ar
             WHERE ar.environment IN (env, 'all', 'default')
             ORDER BY ar.rule, array_position(ARRAY[env, 'all', 'default'], ar.environment)) x
         WHERE x.enabled
    ), queues(subject, due, oldest) AS (
        SELECT 'message_queue:' || q.queue_name, count(*), min(q.scheduled_at)
          FROM @extschema@.message_queue q WHERE q.status = 'pending' AND q.scheduled_at <= now() GROUP BY q.queue_name
        UNION ALL
        SELECT 'whatsapp_message_queue', count(*), min(w.scheduled_at)
          FROM @extschema@.whatsapp_message_queue w WHERE w.status = 'pending' AND w.scheduled_at <= now() HAVING count(*) > 0
        UNION ALL
        SELECT 'background_jobs:' || j.job_type, count(*), min(j.scheduled_at)
          FROM @extschema@.background_jobs j WHERE j.status = 'pending' AND j.scheduled_at <= now() GROUP BY j.job_type
        UNION ALL
        SELECT 'notification_deliveries:' || d.channel, count(*), min(d.scheduled_at)
          FROM @extschema@.notification_deliveries d WHERE d.status = 'pending' AND d.scheduled_at <= now() GROUP BY d.channel
    ), dead(subject, n) AS (
        SELECT 'message_queue:' || q.queue_name, count(*)
          FROM @extschema@.message_queue q WHERE q.status = 'dead_letter' AND q.dead_lettered_at > now() - dead_window GROUP BY q.queue_name
        UNION ALL
        SELECT 'whatsapp_message_queue', count(*)
          FROM @extschema@.whatsapp_message_queue w WHERE w.status = 'failed' AND w.updated_at > now() - dead_window HAVING count(*) > 0
        UNION ALL
        SELECT 'background_jobs:' || j.job_type, count(*)
          FROM @extschema@.background_jobs j WHERE j.status IN ('failed', 'timeout') AND j.updated_at > now() - dead_window GROUP BY j.job_type
        UNION ALL
        SELECT 'notification_deliveries:' || d.channel, count(*)
          FROM @extschema@.notification_deliveries d WHERE d.status = 'dead_letter' AND d.failed_at > now() - dead_window GROUP BY d.channel
    ), partitioned AS (
        SELECT c.oid::regclass AS parent, c.relname::text AS name
          FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid
         WHERE c.relnamespace = '@extschema@'::regnamespace
    ), bounds AS MATERIALIZED (
        SELECT p.parent, b.lower_bound, b.upper_bound FROM partitioned p, @extschema@._partition_bounds(p.parent) b
    ), m(rule, subject, value) AS (
        SELECT 'queue_backlog', q.subject, q.due::float8 FROM queues q
        UNION ALL
        SELECT 'queue_oldest_due_seconds', q.subject, extract(epoch FROM now() - q.oldest)::float8 FROM queues q
        UNION ALL
        SELECT 'dead_letters', d.subject, d.n::float8 FROM dead d
        UNION ALL
        SELECT 'failed_transactions', 'transactions', count(*)::float8
          FROM @extschema@.transactions t WHERE t.status = 'failed' AND t.updated_at > now() - failed_window
        UNION ALL
        SELECT 'service_stale', s.service_name, extract(epoch FROM now() - s.last_heartbeat_at)::float8
          FROM @extschema@.service_registry s WHERE s.last_heartbeat_at IS NOT NULL AND s.status <> 'stopped'
        UNION ALL
        -- Consecutive months after this one that have their partition (-1: not even this one).
        SELECT 'partitions_ahead', p.name,
               (SELECT coalesce(min(g), 122) - 1 FROM generate_series(0, 121) g
                 WHERE NOT EXISTS (
                       SELECT 1 FROM bounds b
                        WHERE b.parent = p.parent
                          AND b.lower_bound <= ((this_month AT TIME ZONE 'UTC') + make_interval(months => g)) AT TIME ZONE 'UTC'
                          AND b.upper_bound > ((this_month AT TIME ZONE 'UTC') + make_interval(months => g)) AT TIME ZONE 'UTC'))::float8
          FROM partitioned p
        UNION ALL
        SELECT 'default_partition_rows', d.key, d.value::float8 FROM jsonb_each_text(default_rows) d
        UNION ALL
        SELECT 'cache_hit_ratio', cs.cache_type, cs.hits::float8 / (cs.hits + cs.misses)
          FROM @extschema@.cache_stats cs WHERE cs.hits + cs.misses >= 100
        UNION ALL
        SELECT 'wallet_reconciliation', w.currency,
               (w.accounts_mismatched + CASE WHEN w.balance_sum <> 0 THEN 1 ELSE 0 END)::float8
          FROM @extschema@.reconcile_wallets() w
         WHERE EXISTS (SELECT 1 FROM r WHERE r.rule = 'wallet_reconciliation')
    )
    SELECT m.rule, m.subject, m.value, r.threshold, r.severity,
           CASE r.fires_when WHEN 'above' THEN m.value > r.threshold ELSE m.value < r.threshold END
      FROM m JOIN r ON r.rule = m.rule;
END
$$;
COMMENT ON FUNCTION @extschema@._alert_measures() IS
    'Internal: every value an alert rule looks at (per rule and subject) with the threshold and severity of the rule row for easymo.environment, and whether it fires.';

CREATE FUNCTION @extschema@.current_alerts()
RETURNS TABLE(rule text, subject text, value double precision, threshold double precision, severity text, since timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT m.rule, m.subject, m.value, m.threshold, m.severity, coalesce(e.started_at, now())
      FROM @extschema@._alert_measures() m
      LEFT JOIN @extschema@.alert_events e ON e.rule = m.rule AND e.subject = m.subject AND e.cleared_at IS NULL
     WHERE m.firing
     ORDER BY array_position(ARRAY['critical', 'warning', 'info'], m.severity), m.rule, m.subject
$$;
COMMENT ON FUNCTION @extschema@.current_alerts() IS
    'The alerts firing now: rule, subject (a queue, service, table, cache type or currency), value, threshold, severity, and since when (when run_maintenance() first saw it, else now). Thresholds are rows of alert_rules.';

CREATE VIEW @extschema@.alerts_firing WITH (security_invoker = true) AS
SELECT * FROM @extschema@.current_alerts();
COMMENT ON VIEW @extschema@.alerts_firing IS
    'The alerts firing now (current_alerts()).';
SELECT @extschema@._secure_view('@extschema@.alerts_firing');

-- Maintenance: opens an event for each alert that started firing and closes the events of
-- those that stopped. Returns how many changed.
CREATE FUNCTION @extschema@._record_alerts()
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    changed integer;
BEGIN
    -- One statement: the close sees the events as they were before the opens.
    WITH firing AS (
        SELECT m.rule, m.subject, m.value, m.threshold, m.severity FROM @extschema@._alert_measures() m WHERE m.firing
    ), opened AS (
        INSERT INTO @extschema@.alert_events (rule, subject, severity, value, threshold)
        SELECT f.rule, f.subject, f.severity, f.value, f.threshold FROM firing f
        ON CONFLICT (rule, subject) WHERE cleared_at IS NULL DO NOTHING
        RETURNING 1
    ), cleared AS (
        UPDATE @extschema@.alert_events e SET cleared_at = greatest(now(), e.started_at)
         WHERE e.cleared_at IS NULL
           AND NOT EXISTS (SELECT 1 FROM firing f WHERE f.rule = e.rule AND f.subject = e.subject)
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM opened) + (SELECT count(*) FROM cleared) INTO changed;
    RETURN changed;
END
$$;
COMMENT ON FUNCTION @extschema@._record_alerts() IS
    'Internal (maintenance): records in alert_events when each alert starts firing and when it clears; returns how many events it opened or closed.';

-- Per queue: depth (pending and in flight), due now, in flight, dead, how long the oldest due item
-- has waited, and totals (every item it holds, completed or sent ones). Queue names as the alerts
-- name them.
CREATE FUNCTION @extschema@.queue_metrics()
RETURNS TABLE(queue text, depth bigint, due bigint, in_flight bigint, dead bigint,
              oldest_due_seconds double precision, done bigint, total bigint)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'message_queue:' || q.queue_name,
           count(*) FILTER (WHERE q.status IN ('pending', 'processing')),
           count(*) FILTER (WHERE (q.status = 'pending' AND q.scheduled_at <= now())
                               OR (q.status = 'processing' AND q.locked_until <= now())),
           count(*) FILTER (WHERE q.status = 'processing' AND q.locked_until > now()),
           count(*) FILTER (WHERE q.status = 'dead_letter'),
           extract(epoch FROM now() - min(q.scheduled_at) FILTER (WHERE q.status = 'pending' AND q.scheduled_at <= now()))::float8,
           count(*) FILTER (WHERE q.status = 'completed'),
           count(*)
      FROM @extschema@.message_queue q GROUP BY q.queue_name
    UNION ALL
    SELECT 'whatsapp_message_queue',
           count(*) FILTER (WHERE w.status IN ('pending', 'processing')),
           count(*) FILTER (WHERE (w.status = 'pending' AND w.scheduled_at <= now())
                               OR (w.status = 'processing' AND w.locked_until <= now())),
           count(*) FILTER (WHERE w.status = 'processing' AND w.locked_until > now()),
           count(*) FILTER (WHERE w.status = 'failed'),
           extract(epoch FROM now() - min(w.scheduled_at) FILTER (WHERE w.status = 'pending' AND w.scheduled_at <= now()))::float8,
           count(*) FILTER (WHERE w.status = 'sent'),
           count(*)
      FROM @extschema@.whatsapp_message_queue w HAVING count(*) > 0
    UNION ALL
    SELECT 'background_jobs:' || j.job_type,
           count(*) FILTER (WHERE j.status IN ('pending', 'running')),
           count(*) FILTER (WHERE j.status = 'pending' AND j.scheduled_at <= now()),
           count(*) FILTER (WHERE j.status = 'running'),
           count(*) FILTER (WHERE j.status IN ('failed', 'timeout')),
           extract(epoch FROM now() - min(j.scheduled_at) FILTER (WHERE j.status = 'pending' AND j.scheduled_at <= now()))::float8,
           count(*) FILTER (WHERE j.status = 'completed'),
           count(*)
      FROM @extschema@.background_jobs j GROUP BY j.job_type
    UNION ALL
    SELECT 'notification_deliveries:' || d.channel,
           count(*) FILTER (WHERE d.status IN ('pending', 'processing')),
           count(*) FILTER (WHERE (d.status = 'pending' AND d.scheduled_at <= now())
                               OR (d.status = 'processing' AND d.locked_until <= now())),
           count(*) FILTER (WHERE d.status = 'processing' AND d.locked_until > now()),
           count(*) FILTER (WHERE d.status = 'dead_letter'),
           extract(epoch FROM now() - min(d.scheduled_at) FILTER (WHERE d.status = 'pending' AND d.scheduled_at <= now()))::float8,
           count(*) FILTER (WHERE d.status IN ('sent', 'delivered')),
           count(*)
      FROM @extschema@.notification_deliveries d GROUP BY d.channel
     ORDER BY 1
$$;
COMMENT ON FUNCTION @extschema@.queue_metrics() IS
    'Per queue (message_queue:<name>, whatsapp_message_queue, background_jobs:<type>, notification_deliveries:<channel>): depth (pending and in flight), due now (a lapsed lease counts), in flight, dead (dead letters, failed), seconds the oldest due item has waited, done (completed, sent or delivered) and total rows.';

-- ---------------------------------------------------------------------------------------------
-- Metrics: the Prometheus text exposition format (version 0.0.4), for a textfile collector or
-- postgres_exporter's custom queries (docs/operations.md).

-- A label value as the format wants it: backslash, double quote and newline escaped.
CREATE FUNCTION @extschema@._prometheus_label(p_value text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT replace(replace(replace(coalesce(p_value, ''), E'\\', E'\\\\'), '"', E'\\"'), E'\n', E'\\n')
$$;
COMMENT ON FUNCTION @extschema@._prometheus_label(text) IS
    'Internal: a Prometheus label value with backslash, double quote and newline escaped.';

CREATE FUNCTION @extschema@.metrics_prometheus()
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    out text := '';
BEGIN
    -- One family: its HELP and TYPE lines, then its samples (name{labels} value).
    out := out || (
        WITH families(ord, name, kind, help) AS (VALUES
            (1, 'easymo_queue_messages', 'gauge', 'Messages, jobs and deliveries per queue and status.'),
            (2, 'easymo_queue_oldest_due_seconds', 'gauge', 'Seconds the oldest due pending item of a queue has waited.'),
            (3, 'easymo_notification_deliveries', 'gauge', 'Notification deliveries per channel and status.'),
            (4, 'easymo_flag_exposures_total', 'counter', 'Feature flag evaluations per flag, environment, variant and answer.'),
            (5, 'easymo_cache_hits_total', 'counter', 'Cache hits per cache type.'),
            (6, 'easymo_cache_misses_total', 'counter', 'Cache misses per cache type (cache_type "" = keys with no entry the caller could read).'),
            (7, 'easymo_transactions', 'gauge', 'Transactions created in the last 24 hours, per status.'),
            (8, 'easymo_partitions_ahead', 'gauge', 'Months of partitions after the current one, per partitioned table.'),
            (9, 'easymo_alerts_firing', 'gauge', 'Alerts firing now, per rule and severity.')
        ), measures AS MATERIALIZED (
            SELECT * FROM @extschema@._alert_measures()
        ), samples(ord, labels, value) AS (
            SELECT 1, format('queue="%s",status="%s"', @extschema@._prometheus_label('message_queue:' || q.queue_name), q.status), count(*)::float8
              FROM @extschema@.message_queue q GROUP BY q.queue_name, q.status
            UNION ALL
            SELECT 1, format('queue="whatsapp_message_queue",status="%s"', w.status), count(*)::float8
              FROM @extschema@.whatsapp_message_queue w GROUP BY w.status
            UNION ALL
            SELECT 1, format('queue="%s",status="%s"', @extschema@._prometheus_label('background_jobs:' || j.job_type), j.status), count(*)::float8
              FROM @extschema@.background_jobs j GROUP BY j.job_type, j.status
            UNION ALL
            SELECT 2, format('queue="%s"', @extschema@._prometheus_label(a.subject)), a.value
              FROM measures a WHERE a.rule = 'queue_oldest_due_seconds'
            UNION ALL
            SELECT 3, format('channel="%s",status="%s"', d.channel, d.status), count(*)::float8
              FROM @extschema@.notification_deliveries d GROUP BY d.channel, d.status
            UNION ALL
            SELECT 4, format('flag="%s",environment="%s",variant="%s",enabled="%s"', @extschema@._prometheus_label(e.flag_key),
                             @extschema@._prometheus_label(e.environment), @extschema@._prometheus_label(e.variant), e.enabled),
                   e.evaluations::float8
              FROM @extschema@.feature_flag_exposures() e
            UNION ALL
            SELECT 5, format('cache_type="%s"', @extschema@._prometheus_label(c.cache_type)), c.hits::float8 FROM @extschema@.cache_stats c
            UNION ALL
            SELECT 6, format('cache_type="%s"', @extschema@._prometheus_label(c.cache_type)), c.misses::float8 FROM @extschema@.cache_stats c
            UNION ALL
            SELECT 7, format('status="%s"', t.status), count(*)::float8
              FROM @extschema@.transactions t WHERE t.created_at > now() - interval '24 hours' GROUP BY t.status
            UNION ALL
            SELECT 8, format('table="%s"', @extschema@._prometheus_label(a.subject)), a.value
              FROM measures a WHERE a.rule = 'partitions_ahead'
            UNION ALL
            SELECT 9, format('rule="%s",severity="%s"', a.rule, a.severity), count(*)::float8
              FROM measures a WHERE a.firing GROUP BY a.rule, a.severity
        )
        SELECT string_agg(
                   format(E'# HELP %s %s\n# TYPE %s %s\n', f.name, f.help, f.name, f.kind)
                   || coalesce((SELECT string_agg(format(E'%s{%s} %s\n', f.name, s.labels,
                                                         CASE WHEN s.value = trunc(s.value) AND abs(s.value) < 1e15
                                                              THEN trunc(s.value)::bigint::text ELSE s.value::text END),
                                                  '' ORDER BY s.labels)
                                  FROM samples s WHERE s.ord = f.ord), ''),
                   '' ORDER BY f.ord)
          FROM families f);
    RETURN out;
END
$$;
COMMENT ON FUNCTION @extschema@.metrics_prometheus() IS
    'The extension''s state in the Prometheus text exposition format: queue depths and ages, notification deliveries by status, flag exposures, cache hits and misses, transactions by status (last 24 h), partitions ahead, alerts firing. Valid for promtool check metrics.';
