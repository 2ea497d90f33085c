-- Observability: time-series metrics and the audit trail.
-- Both are range-partitioned by month on created_at (UTC months) with a DEFAULT partition, so an
-- insert never fails for lack of a partition; ensure_partitions() adds months and empties DEFAULT.

CREATE TABLE @extschema@.system_metrics (
    id           uuid NOT NULL DEFAULT gen_random_uuid(),
    service_name text NOT NULL CHECK (length(service_name) BETWEEN 1 AND 255),
    metric_type  text NOT NULL CHECK (metric_type IN
                     ('latency', 'error_rate', 'throughput', 'memory', 'cpu', 'counter', 'gauge')),
    metric_name  text NOT NULL CHECK (length(metric_name) BETWEEN 1 AND 255),
    -- NaN and +-Infinity would poison every aggregate in the views.
    value        double precision NOT NULL
                     CHECK (value <> 'NaN'::float8 AND value <> 'Infinity'::float8 AND value <> '-Infinity'::float8),
    unit         text CHECK (length(unit) <= 32),
    tags         jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(tags) = 'object'),
    metadata     jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    created_at   timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE (created_at);
CREATE TABLE @extschema@.system_metrics_default PARTITION OF @extschema@.system_metrics DEFAULT;
-- The primary key and indexes belong to each partition, not to the parent (sql/operations.sql
-- says why): declared here on the DEFAULT partition, copied to every month by ensure_partitions().
ALTER TABLE @extschema@.system_metrics_default ADD PRIMARY KEY (id, created_at);
CREATE INDEX ON @extschema@.system_metrics_default (service_name, metric_type, created_at DESC);
CREATE INDEX ON @extschema@.system_metrics_default (metric_name, created_at DESC);
CREATE INDEX ON @extschema@.system_metrics_default USING gin (tags jsonb_path_ops);
COMMENT ON TABLE @extschema@.system_metrics IS
    'Time-series metrics from every service (latency, error_rate, throughput, memory, cpu, counter, gauge). Monthly partitions on created_at (UTC); write with record_metric().';
COMMENT ON TABLE @extschema@.system_metrics_default IS
    'DEFAULT partition of system_metrics: catches rows whose month has no partition yet; ensure_partitions() moves them out.';

CREATE TABLE @extschema@.system_audit_logs (
    id               uuid NOT NULL DEFAULT gen_random_uuid(),
    actor_type       text NOT NULL CHECK (actor_type IN ('user', 'service', 'system', 'admin')),
    actor_identifier text NOT NULL CHECK (length(actor_identifier) BETWEEN 1 AND 255),
    action           text NOT NULL CHECK (length(action) BETWEEN 1 AND 255),
    resource_type    text CHECK (length(resource_type) <= 255),
    resource_id      text CHECK (length(resource_id) <= 255),
    old_data         jsonb,
    new_data         jsonb,
    metadata         jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    correlation_id   text CHECK (length(correlation_id) <= 128),
    created_at       timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE (created_at);
CREATE TABLE @extschema@.system_audit_logs_default PARTITION OF @extschema@.system_audit_logs DEFAULT;
-- The primary key and indexes belong to each partition, not to the parent (sql/operations.sql
-- says why): declared here on the DEFAULT partition, copied to every month by ensure_partitions().
ALTER TABLE @extschema@.system_audit_logs_default ADD PRIMARY KEY (id, created_at);
CREATE INDEX ON @extschema@.system_audit_logs_default (actor_type, actor_identifier, created_at DESC);
CREATE INDEX ON @extschema@.system_audit_logs_default (resource_type, resource_id, created_at DESC)
    WHERE resource_type IS NOT NULL;
CREATE INDEX ON @extschema@.system_audit_logs_default (action, created_at DESC);
CREATE INDEX ON @extschema@.system_audit_logs_default (correlation_id)
    WHERE correlation_id IS NOT NULL;
COMMENT ON TABLE @extschema@.system_audit_logs IS
    'Central audit trail of user, service, system and admin actions, with old/new data and correlation ids. Monthly partitions on created_at (UTC); write with log_audit_event().';
COMMENT ON TABLE @extschema@.system_audit_logs_default IS
    'DEFAULT partition of system_audit_logs: catches rows whose month has no partition yet; ensure_partitions() moves them out.';

CREATE VIEW @extschema@.recent_metrics_by_service WITH (security_invoker = true) AS
SELECT service_name,
       metric_type,
       metric_name,
       count(*)                                                  AS samples,
       avg(value)                                                AS avg_value,
       min(value)                                                AS min_value,
       max(value)                                                AS max_value,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY value)       AS p95_value,
       max(created_at)                                           AS last_recorded_at
  FROM @extschema@.system_metrics
 WHERE created_at > now() - interval '1 hour'
 GROUP BY service_name, metric_type, metric_name;
COMMENT ON VIEW @extschema@.recent_metrics_by_service IS
    'Per service, metric type and name over the last hour: sample count, avg, min, max, p95 and the latest sample time.';

SELECT @extschema@._secure_table('@extschema@.system_metrics');
SELECT @extschema@._secure_table('@extschema@.system_audit_logs');
SELECT @extschema@._secure_view('@extschema@.recent_metrics_by_service');

CREATE FUNCTION @extschema@.record_metric(
    p_service_name text,
    p_metric_type text,
    p_metric_name text,
    p_value double precision,
    p_unit text DEFAULT NULL,
    p_tags jsonb DEFAULT '{}'
) RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    metric_id uuid;
BEGIN
    p_service_name := @extschema@._check_text('p_service_name', p_service_name, 255);
    p_metric_type := @extschema@._check_choice('p_metric_type', p_metric_type, ARRAY['latency', 'error_rate', 'throughput', 'memory', 'cpu', 'counter', 'gauge']);
    p_metric_name := @extschema@._check_text('p_metric_name', p_metric_name, 255);
    p_value := @extschema@._check_not_null('p_value', p_value);
    IF p_value = 'NaN' OR p_value IN ('Infinity', '-Infinity') THEN
        RAISE EXCEPTION 'p_value: must be a finite number, got %', p_value USING ERRCODE = '22023';
    END IF;
    p_unit := @extschema@._check_text('p_unit', p_unit, 32, false);
    p_tags := @extschema@._check_json('p_tags', p_tags, 'object');
    INSERT INTO @extschema@.system_metrics (service_name, metric_type, metric_name, value, unit, tags)
    VALUES (p_service_name, p_metric_type, p_metric_name, p_value, p_unit, coalesce(p_tags, '{}'))
    RETURNING id INTO metric_id;
    RETURN metric_id;
END
$$;
COMMENT ON FUNCTION @extschema@.record_metric(text, text, text, double precision, text, jsonb) IS
    'Records one metric sample (types latency, error_rate, throughput, memory, cpu, counter, gauge; a finite value) with unit and tags; returns its id.';

CREATE FUNCTION @extschema@.log_audit_event(
    p_actor_type text,
    p_actor_identifier text,
    p_action text,
    p_resource_type text DEFAULT NULL,
    p_resource_id text DEFAULT NULL,
    p_metadata jsonb DEFAULT '{}',
    p_correlation_id text DEFAULT NULL,
    p_old_data jsonb DEFAULT NULL,
    p_new_data jsonb DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    event_id uuid;
BEGIN
    p_actor_type := @extschema@._check_choice('p_actor_type', p_actor_type, ARRAY['user', 'service', 'system', 'admin']);
    p_actor_identifier := @extschema@._check_text('p_actor_identifier', p_actor_identifier, 255);
    p_action := @extschema@._check_text('p_action', p_action, 255);
    p_resource_type := @extschema@._check_text('p_resource_type', p_resource_type, 255, false);
    p_resource_id := @extschema@._check_text('p_resource_id', p_resource_id, 255, false);
    p_metadata := @extschema@._check_json('p_metadata', p_metadata, 'object');
    p_correlation_id := @extschema@._check_text('p_correlation_id', p_correlation_id, 128, false);
    INSERT INTO @extschema@.system_audit_logs
           (actor_type, actor_identifier, action, resource_type, resource_id, metadata, correlation_id, old_data, new_data)
    VALUES (p_actor_type, p_actor_identifier, p_action, p_resource_type, p_resource_id, coalesce(p_metadata, '{}'),
            p_correlation_id, p_old_data, p_new_data)
    RETURNING id INTO event_id;
    RETURN event_id;
END
$$;
COMMENT ON FUNCTION @extschema@.log_audit_event(text, text, text, text, text, jsonb, text, jsonb, jsonb) IS
    'Writes one audit entry (actor types user, service, system, admin) with resource, metadata, correlation id and old/new data; returns its id.';
