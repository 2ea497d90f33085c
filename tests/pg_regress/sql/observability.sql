-- Observability: metrics and audit entries through their helpers, into the current month's
-- partition; the per-service metrics view; bad input writes nothing.
\set VERBOSITY terse
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS easymo CASCADE;
CREATE EXTENSION easymo;
-- This month's and the next three's partitions, as run_maintenance() makes them.
SELECT ensure_partitions(3) AS month_partitions;

SELECT t AS metric_type, record_metric('api', t, 'm', 1.5) IS NOT NULL AS recorded
  FROM unnest(ARRAY['latency', 'error_rate', 'throughput', 'memory', 'cpu', 'counter', 'gauge']) t;
SELECT count(record_metric('api', 'latency', 'request_ms', v, 'ms', '{"route": "/rides"}'))
  FROM generate_series(1, 100) v;
SELECT record_metric('matcher', 'gauge', 'drivers_online', 42) IS NOT NULL AS recorded;
SELECT service_name, metric_type, metric_name, samples, avg_value, min_value, max_value, p95_value
  FROM recent_metrics_by_service ORDER BY 1, 2, 3;
SELECT unit, tags FROM system_metrics WHERE metric_name = 'request_ms' LIMIT 1;
SELECT count(*) AS in_default FROM system_metrics_default;

SELECT regress.error($$SELECT record_metric(NULL, 'latency', 'm', 1)$$) AS null_service;
SELECT regress.error($$SELECT record_metric('api', NULL, 'm', 1)$$) AS null_type;
SELECT regress.error($$SELECT record_metric('api', 'latency', NULL, 1)$$) AS null_name;
SELECT regress.error($$SELECT record_metric('api', 'latency', 'm', NULL)$$) AS null_value;
SELECT regress.error($$SELECT record_metric('api', 'temperature', 'm', 1)$$) AS bad_type;
SELECT regress.error($$SELECT record_metric('api', 'LATENCY', 'm', 1)$$) AS upper_case_type;
SELECT regress.error($$SELECT record_metric('api', 'latency', 'm', 'NaN')$$) AS nan;
SELECT regress.error($$SELECT record_metric('api', 'latency', 'm', 'Infinity')$$) AS infinity;
SELECT regress.error($$SELECT record_metric('api', 'latency', 'm', '-Infinity')$$) AS minus_infinity;
SELECT regress.error($$SELECT record_metric('', 'latency', 'm', 1)$$) AS empty_service;
SELECT regress.error($$SELECT record_metric('api', 'latency', 'm', 1, repeat('u', 33))$$) AS long_unit;
SELECT regress.error($$SELECT record_metric('api', 'latency', 'm', 1, 'ms', '[1, 2]')$$) AS tags_array;
SELECT count(*) AS still_108 FROM system_metrics;

-- Audit entries.
SELECT log_audit_event('admin', 'ops@easymo', 'flag.update', 'feature_flag', 'new-checkout',
                       '{"reason": "rollout"}', 'corr-1', '{"enabled": false}', '{"enabled": true}') IS NOT NULL AS logged;
SELECT t AS actor_type, log_audit_event(t, 'x', 'login') IS NOT NULL AS logged
  FROM unnest(ARRAY['user', 'service', 'system']) t;
SELECT actor_type, actor_identifier, action, resource_type, resource_id, metadata, correlation_id, old_data, new_data
  FROM system_audit_logs ORDER BY actor_type;
SELECT count(*) AS in_default FROM system_audit_logs_default;
SELECT regress.error($$SELECT log_audit_event('robot', 'x', 'login')$$) AS bad_actor;
SELECT regress.error($$SELECT log_audit_event(NULL, 'x', 'login')$$) AS null_actor;
SELECT regress.error($$SELECT log_audit_event('user', NULL, 'login')$$) AS null_identifier;
SELECT regress.error($$SELECT log_audit_event('user', 'x', NULL)$$) AS null_action;
SELECT regress.error($$SELECT log_audit_event('user', 'x', 'login', p_metadata => '"text"')$$) AS metadata_string;
SELECT regress.error(format('SELECT log_audit_event(%L, %L, %L, p_correlation_id => %L)', 'user', 'x', 'login', repeat('c', 129))) AS long_correlation;
SELECT count(*) AS still_4 FROM system_audit_logs;
