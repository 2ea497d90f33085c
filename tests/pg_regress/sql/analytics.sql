-- Analytics and service configuration: tracking and the daily counts, the environment override
-- order, secrets shown to service_role and masked for every other role (values and history),
-- a history row with who for each change, and bad input.
\set VERBOSITY terse
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS easymo CASCADE;
CREATE EXTENSION easymo;

-- Tracking. Three users over two UTC days, two of them in two sessions; one anonymous event.
SELECT count(track_event(e.name, e.user_id::uuid, e.session_id, e.props::jsonb))
  FROM (VALUES ('screen_view', '00000000-0000-4000-8000-000000000001', 's1', '{"screen": "home"}'),
               ('screen_view', '00000000-0000-4000-8000-000000000001', 's1', '{"screen": "ride"}'),
               ('screen_view', '00000000-0000-4000-8000-000000000002', 's2', '{}'),
               ('ride_booked', '00000000-0000-4000-8000-000000000002', 's2', '{"fare": 1500}'),
               ('ride_booked', '00000000-0000-4000-8000-000000000003', 's3', '{}'),
               ('screen_view', NULL, NULL, '{}')) e(name, user_id, session_id, props);
-- Yesterday's events, dated directly (track_event stamps now()).
INSERT INTO analytics_events (event_name, user_id, session_id, created_at)
VALUES ('screen_view', '00000000-0000-4000-8000-000000000001', 's0', date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - interval '1 hour'),
       ('screen_view', '00000000-0000-4000-8000-000000000003', 's9', date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - interval '2 hours');
-- Nothing until a refresh.
SELECT count(*) AS before_refresh FROM daily_metrics;
SELECT refresh_daily_metrics();
SELECT day - (now() AT TIME ZONE 'UTC')::date AS day_offset, event_name, events, users, sessions
  FROM daily_metrics ORDER BY 1, 2;
-- A refresh picks up what came since.
SELECT track_event('ride_booked', '00000000-0000-4000-8000-000000000001', 's1') IS NOT NULL AS tracked;
SELECT refresh_daily_metrics();
SELECT events, users, sessions FROM daily_metrics
 WHERE day = (now() AT TIME ZONE 'UTC')::date AND event_name = 'ride_booked';
SELECT user_id, events_30d, sessions_30d, active_days_30d, distinct_events_30d
  FROM user_engagement_metrics ORDER BY user_id;

SELECT regress.error($$SELECT track_event(NULL)$$) AS null_name;
SELECT regress.error($$SELECT track_event('')$$) AS empty_name;
SELECT regress.error($$SELECT track_event('e', NULL, repeat('s', 256))$$) AS long_session;
SELECT regress.error($$SELECT track_event('e', NULL, NULL, '[1]')$$) AS properties_array;
SELECT count(*) AS still_9 FROM analytics_events;

-- daily_metrics is for service_role; authenticated cannot read it or refresh it.
SELECT has_table_privilege('service_role', 'daily_metrics', 'SELECT') AS service_role_reads,
       has_table_privilege('authenticated', 'daily_metrics', 'SELECT') AS authenticated_reads,
       has_function_privilege('authenticated', 'refresh_daily_metrics()', 'EXECUTE') AS authenticated_refreshes;

-- Configuration: `all` is the default of every environment, the environment's own value wins.
SELECT set_service_config('api', 'all', 'timeout_ms', '3000') IS NOT NULL AS set1,
       set_service_config('api', 'all', 'retries', '3') IS NOT NULL AS set2,
       set_service_config('api', 'production', 'timeout_ms', '1500') IS NOT NULL AS set3,
       set_service_config('api', 'production', 'db_password', '"s3cret"', true) IS NOT NULL AS set4,
       set_service_config('api', 'staging', 'feature', '{"beta": true}') IS NOT NULL AS set5;
SELECT get_service_config('api', 'production') AS production;
SELECT get_service_config('api', 'staging') AS staging;
SELECT get_service_config('api', 'development') AS development;
SELECT get_service_config('api', 'all') AS all_only;
SELECT get_service_config('nobody', 'production') AS unknown_service;
-- The same value again changes nothing; the same key gets the same id.
SELECT set_service_config('api', 'all', 'retries', '3') = set_service_config('api', 'all', 'retries', '5') AS same_id;

-- Secrets by role: service_role sees them; a role given EXECUTE (but no table access) gets them
-- masked; authenticated may not call it at all.
SET ROLE service_role;
SELECT get_service_config('api', 'production') ->> 'db_password' AS as_service_role;
RESET ROLE;
CREATE ROLE easymo_support NOLOGIN;
GRANT USAGE ON SCHEMA public TO easymo_support;
GRANT EXECUTE ON FUNCTION get_service_config(text, text), get_service_config_history(text, text, text) TO easymo_support;
SET ROLE easymo_support;
SELECT get_service_config('api', 'production') AS as_support;
SELECT regress.outcome($$SELECT * FROM service_configurations$$) AS support_reads_table;
RESET ROLE;
SET ROLE authenticated;
SELECT regress.outcome($$SELECT get_service_config('api', 'production')$$) AS authenticated_calls;
RESET ROLE;

-- History: one row per change, with who; deletes too.
SET ROLE service_role;
SELECT set_service_config('api', 'production', 'db_password', '"n3w"', true) IS NOT NULL AS rotated;
RESET ROLE;
DELETE FROM service_configurations WHERE key = 'feature';
SELECT environment, key, operation, old_value, new_value, is_secret, changed_by_role
  FROM service_configuration_history ORDER BY changed_at, key, operation, environment;
SET ROLE easymo_support;
SELECT key, operation, old_value, new_value FROM get_service_config_history('api', 'production') ORDER BY changed_at, key, operation;
RESET ROLE;
SET ROLE service_role;
SELECT key, operation, old_value, new_value FROM get_service_config_history('api', 'production', 'db_password') ORDER BY changed_at;
RESET ROLE;
-- A secret made public keeps its earlier values masked in the history.
SELECT set_service_config('api', 'production', 'db_password', '"public now"', false) IS NOT NULL AS unsecreted;
SET ROLE easymo_support;
SELECT operation, old_value, new_value, is_secret FROM get_service_config_history('api', 'production', 'db_password') ORDER BY changed_at;
RESET ROLE;
REVOKE ALL ON FUNCTION get_service_config(text, text), get_service_config_history(text, text, text) FROM easymo_support;
REVOKE USAGE ON SCHEMA public FROM easymo_support;
DROP ROLE easymo_support;

-- Bad input: the contract's SQLSTATE, nothing written.
SELECT count(*) AS configs_before FROM service_configurations \gset
SELECT regress.error($$SELECT set_service_config(NULL, 'all', 'k', '1')$$) AS null_service;
SELECT regress.error($$SELECT set_service_config('api', 'prod', 'k', '1')$$) AS bad_environment;
SELECT regress.error($$SELECT set_service_config('api', NULL, 'k', '1')$$) AS null_environment;
SELECT regress.error($$SELECT set_service_config('api', 'all', '', '1')$$) AS empty_key;
SELECT regress.error($$SELECT set_service_config('api', 'all', 'k', NULL)$$) AS null_value;
SELECT regress.error($$SELECT set_service_config('api', 'all', 'k', '1', NULL)$$) AS null_secret_flag;
SELECT regress.error($$SELECT get_service_config('api', 'qa')$$) AS get_bad_environment;
SELECT regress.error($$SELECT get_service_config(NULL, 'all')$$) AS get_null_service;
SELECT count(*) = :configs_before AS nothing_written FROM service_configurations;
