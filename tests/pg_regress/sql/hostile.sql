-- Hostile input: every helper, each argument in turn replaced by NULL, empty and 1 MB strings,
-- NaN and +-Infinity, extreme numbers and times, deep and large JSON of every shape, wrong enum
-- values and odd arrays (the others kept valid). Each call must succeed or fail with one of the
-- contract's SQLSTATEs; every call is rolled back, and afterwards no table has changed and the
-- server has not restarted. (Malformed JSON never reaches a helper: the cast to jsonb refuses
-- it, 22P02, before the call; that is tested once at the end.)
\set VERBOSITY terse
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS easymo CASCADE;
CREATE EXTENSION easymo;
SELECT pg_postmaster_start_time() AS started \gset

-- Some rows for the calls to find.
SELECT create_transaction('00000000-0000-4000-8000-000000000001', 'payment', 10, 'RWF', 'k1') AS tx \gset
SELECT enqueue_message('q', 't', '{}') AS msg, schedule_job('t', 'n') AS job \gset
SELECT enqueue_whatsapp_message('+250788000001', 'text', '{}') AS wa \gset
-- An archived month, for unarchive_partition.
INSERT INTO system_metrics (service_name, metric_type, metric_name, value, created_at) VALUES ('svc', 'gauge', 'm', 1, now() - interval '15 months');
SELECT ensure_partitions(0) > 0 AS made, archive_partitions('system_metrics', 12) AS archived;
-- Claimed, so that finishing and failing them is valid.
SELECT (SELECT count(*) FROM read_messages('q', 1, 30)) AS m, (SELECT count(*) FROM claim_jobs()) AS j,
       (SELECT count(*) FROM claim_whatsapp_messages(1, 30)) AS w;
INSERT INTO feature_flags (key, name, enabled, rollout_strategy, rollout_percentage, variants)
VALUES ('f', 'F', true, 'percentage', 50, '[{"name": "a", "weight": 1}]');
SELECT set_cache('k', '{"v": 1}', 60, 'general', '{t}') IS NOT NULL AS cached;
SELECT register_service('svc', 'api', '1.0') IS NOT NULL AS registered;
SELECT create_wallet_account('RWF', 'external') AS wa1,
       create_wallet_account('RWF', 'user', '00000000-0000-4000-8000-000000000001') AS wa2 \gset
SELECT wallet_transfer(:'wa1', :'wa2', 100, NULL, 600) AS wh \gset
-- A claimed push delivery and a sent sms one (provider id 'pm'), for the delivery helpers.
SELECT send_notification('00000000-0000-4000-8000-000000000001', 't', 'T', 'B', p_channels => ARRAY['push', 'sms']) AS hn \gset
SELECT id AS hd FROM notification_deliveries WHERE notification_id = :'hn' AND channel = 'push' \gset
UPDATE notification_deliveries SET status = 'processing', locked_until = now() + interval '1 hour' WHERE id = :'hd';
UPDATE notification_deliveries SET status = 'sent', provider_message_id = 'pm', sent_at = now()
 WHERE notification_id = :'hn' AND channel = 'sms';

CREATE TEMP TABLE calls (fn text, args text[]);  -- args: 'p_name => valid SQL expression'
INSERT INTO calls VALUES
  ('record_metric', ARRAY['p_service_name => ''svc''', 'p_metric_type => ''gauge''', 'p_metric_name => ''m''', 'p_value => 1.5::float8', 'p_unit => ''ms''', 'p_tags => ''{}''::jsonb']),
  ('log_audit_event', ARRAY['p_actor_type => ''user''', 'p_actor_identifier => ''u1''', 'p_action => ''login''', 'p_resource_type => ''r''', 'p_resource_id => ''1''', 'p_metadata => ''{}''::jsonb', 'p_correlation_id => ''c''', 'p_old_data => ''{}''::jsonb', 'p_new_data => ''{}''::jsonb']),
  ('update_whatsapp_session_activity', ARRAY['p_phone_number => ''+250788000001''', 'p_increment_message_count => true']),
  ('cleanup_expired_whatsapp_sessions', ARRAY['p_idle_minutes => 1440']),
  ('enqueue_whatsapp_message', ARRAY['p_recipient_phone => ''+250788000001''', 'p_message_type => ''text''', 'p_payload => ''{}''::jsonb', 'p_priority => 5', 'p_correlation_id => ''c''', 'p_scheduled_at => now()']),
  ('claim_whatsapp_messages', ARRAY['p_batch_size => 1', 'p_visibility_timeout_seconds => 30']),
  ('complete_whatsapp_message', ARRAY[format('p_message_id => %L::uuid', :'wa'), 'p_provider_message_id => ''wamid''']),
  ('fail_whatsapp_message', ARRAY[format('p_message_id => %L::uuid', :'wa'), 'p_error => ''e''']),
  ('create_transaction', ARRAY['p_user_id => ''00000000-0000-4000-8000-000000000002''::uuid', 'p_type => ''payment''', 'p_amount => 10::numeric', 'p_currency => ''RWF''', 'p_idempotency_key => ''k2''', 'p_metadata => ''{}''::jsonb', 'p_correlation_id => ''c''']),
  ('update_transaction_status', ARRAY[format('p_transaction_id => %L::uuid', :'tx'), 'p_new_status => ''processing''', 'p_error_message => ''e''']),
  ('register_service', ARRAY['p_service_name => ''svc2''', 'p_service_type => ''api''', 'p_version => ''1''', 'p_endpoint => ''http://x''', 'p_health_check_url => ''http://x/h''', 'p_capabilities => ''[]''::jsonb', 'p_dependencies => ''[]''::jsonb']),
  ('service_heartbeat', ARRAY['p_service_name => ''svc''', 'p_status => ''healthy''', 'p_metrics => ''{}''::jsonb']),
  ('is_feature_enabled', ARRAY['p_flag_key => ''f''', 'p_user_id => ''00000000-0000-4000-8000-000000000001''::uuid', 'p_environment => ''production''', 'p_context => ''{}''::jsonb']),
  ('get_feature_variant', ARRAY['p_flag_key => ''f''', 'p_user_id => ''00000000-0000-4000-8000-000000000001''::uuid', 'p_environment => ''production''']),
  ('append_event', ARRAY['p_aggregate_id => ''a1''', 'p_aggregate_type => ''ride''', 'p_event_type => ''e''', 'p_payload => ''{}''::jsonb', 'p_correlation_id => ''c''', 'p_metadata => ''{}''::jsonb', 'p_expected_version => NULL::bigint', 'p_causation_id => NULL::uuid']),
  ('get_aggregate_events', ARRAY['p_aggregate_type => ''ride''', 'p_aggregate_id => ''a1''', 'p_limit => 10', 'p_after_version => 0::bigint']),
  ('enqueue_message', ARRAY['p_queue_name => ''q''', 'p_message_type => ''t''', 'p_payload => ''{}''::jsonb', 'p_priority => 5', 'p_scheduled_at => now()', 'p_idempotency_key => ''i''', 'p_group_key => ''g''']),
  ('enqueue_messages', ARRAY['p_queue_name => ''q''', 'p_messages => ''[{"message_type": "t", "payload": {}, "priority": 3, "delay_seconds": 1, "idempotency_key": "i2", "group_key": "g"}]''::jsonb']),
  ('read_messages', ARRAY['p_queue_name => ''q''', 'p_batch_size => 1', 'p_visibility_timeout_seconds => 30', 'p_wait_ms => 0']),
  ('ack_receipt', ARRAY[format('p_receipt => %L', 'm:' || :'msg' || ':1'), 'p_provider_message_id => NULL::text', 'p_result => NULL::jsonb']),
  ('ack_receipts', ARRAY[format('p_receipts => ARRAY[%L]', 'm:' || :'msg' || ':1')]),
  ('nack_receipt', ARRAY[format('p_receipt => %L', 'm:' || :'msg' || ':1'), 'p_error => ''e''']),
  ('nack_receipts', ARRAY[format('p_receipts => ARRAY[%L]', 'm:' || :'msg' || ':1'), 'p_error => ''e''']),
  ('extend_receipt', ARRAY[format('p_receipt => %L', 'm:' || :'msg' || ':1'), 'p_seconds => 60']),
  ('ack_message', ARRAY[format('p_message_id => %L::uuid', :'msg')]),
  ('nack_message', ARRAY[format('p_message_id => %L::uuid', :'msg'), 'p_error => ''e''']),
  ('replay_dead_letter', ARRAY[format('p_message_id => %L::uuid', :'msg')]),
  ('schedule_job', ARRAY['p_job_type => ''t''', 'p_job_name => ''n''', 'p_payload => ''{}''::jsonb', 'p_scheduled_at => now()', 'p_priority => 5', 'p_idempotency_key => ''i''']),
  ('claim_jobs', ARRAY['p_job_types => ''{t}''::text[]', 'p_batch_size => 1', 'p_worker_id => ''w''']),
  ('complete_job', ARRAY[format('p_job_id => %L::uuid', :'job'), 'p_result => ''{}''::jsonb']),
  ('fail_job', ARRAY[format('p_job_id => %L::uuid', :'job'), 'p_error => ''e''']),
  ('find_nearby_locations', ARRAY['p_lat => -1.95::float8', 'p_lng => 30.06::float8', 'p_radius_meters => 1000::float8', 'p_location_type => ''pickup''', 'p_limit => 50']),
  ('cache_route', ARRAY['p_origin_lat => -1.95::float8', 'p_origin_lng => 30.06::float8', 'p_dest_lat => -1.94::float8', 'p_dest_lng => 30.07::float8', 'p_distance_meters => 1500::float8', 'p_duration_seconds => 300', 'p_polyline => ''abc''', 'p_path => ''[]''::jsonb', 'p_traffic_multiplier => 1.0::float8', 'p_ttl_seconds => 3600', 'p_provider => ''osrm''']),
  ('get_cached_route', ARRAY['p_origin_lat => -1.95::float8', 'p_origin_lng => 30.06::float8', 'p_dest_lat => -1.94::float8', 'p_dest_lng => 30.07::float8', 'p_max_age_minutes => 60', 'p_tolerance_meters => 25::float8']),
  ('set_cache', ARRAY['p_key => ''k2''', 'p_value => ''{}''::jsonb', 'p_ttl_seconds => 60', 'p_cache_type => ''general''', 'p_tags => ''{t}''::text[]', 'p_visibility => ''owner''', 'p_owner_user_id => ''00000000-0000-4000-8000-000000000001''::uuid']),
  ('get_cache', ARRAY['p_key => ''k''']),
  ('delete_cache', ARRAY['p_key => ''k''']),
  ('invalidate_cache_by_tag', ARRAY['p_tag => ''t''']),
  ('ensure_partitions', ARRAY['p_months_ahead => 1']),
  ('apply_retention', ARRAY['p_table => ''system_metrics''', 'p_keep_months => 12']),
  ('track_event', ARRAY['p_event_name => ''screen_view''', 'p_user_id => ''00000000-0000-4000-8000-000000000001''::uuid', 'p_session_id => ''s1''', 'p_properties => ''{}''::jsonb']),
  ('set_service_config', ARRAY['p_service_name => ''api''', 'p_environment => ''production''', 'p_key => ''timeout''', 'p_value => ''30''::jsonb', 'p_is_secret => false']),
  ('get_service_config', ARRAY['p_service_name => ''api''', 'p_environment => ''production''']),
  ('get_service_config_history', ARRAY['p_service_name => ''api''', 'p_environment => ''production''', 'p_key => ''timeout''']),
  ('create_wallet_account', ARRAY['p_currency => ''RWF''', 'p_kind => ''user''', 'p_user_id => ''00000000-0000-4000-8000-000000000001''::uuid', 'p_name => ''n''', 'p_min_balance => 0::numeric', 'p_hot => false', 'p_metadata => ''{}''::jsonb']),
  ('set_wallet_account_status', ARRAY[format('p_account_id => %L::uuid', :'wa2'), 'p_status => ''frozen''']),
  ('wallet_transfer', ARRAY[format('p_debit_account_id => %L::uuid', :'wa1'), format('p_credit_account_id => %L::uuid', :'wa2'), 'p_amount => 10::numeric', 'p_idempotency_key => ''wk''', 'p_hold_seconds => 60', 'p_transaction_id => NULL::uuid', 'p_metadata => ''{}''::jsonb']),
  ('wallet_transfer_batch', ARRAY[format('p_transfers => %L::jsonb', jsonb_build_array(jsonb_build_object('debit_account_id', :'wa1', 'credit_account_id', :'wa2', 'amount', 1)))]),
  ('post_wallet_hold', ARRAY[format('p_transfer_id => %L::uuid', :'wh'), 'p_amount => 10::numeric']),
  ('void_wallet_hold', ARRAY[format('p_transfer_id => %L::uuid', :'wh')]),
  ('get_wallet_balance', ARRAY[format('p_account_id => %L::uuid', :'wa2')]),
  ('wallet_history', ARRAY[format('p_account_id => %L::uuid', :'wa2'), 'p_before_version => NULL::bigint', 'p_limit => 50']),
  ('reconcile_wallets', '{}'),
  ('send_notification', ARRAY['p_user_id => ''00000000-0000-4000-8000-000000000001''::uuid', 'p_type => ''t''', 'p_title => ''T''', 'p_body => ''B''', 'p_data => ''{}''::jsonb', 'p_channels => ''{push,sms}''::text[]', 'p_priority => 5', 'p_dedupe_key => ''dk''', 'p_scheduled_at => now()']),
  ('set_notification_preference', ARRAY['p_user_id => ''00000000-0000-4000-8000-000000000001''::uuid', 'p_channel => ''push''', 'p_enabled => true', 'p_quiet_start => ''22:00''::time', 'p_quiet_end => ''07:00''::time', 'p_timezone => ''Africa/Kigali''', 'p_muted_types => ''{promo}''::text[]']),
  ('mark_notifications_read', ARRAY['p_notification_ids => ARRAY[gen_random_uuid()]']),
  ('unread_notification_count', '{}'),
  ('claim_notification_deliveries', ARRAY['p_channel => ''push''', 'p_batch_size => 10', 'p_visibility_timeout_seconds => 30']),
  ('complete_notification_delivery', ARRAY[format('p_delivery_id => %L::uuid', :'hd'), 'p_provider_message_id => ''pm2''']),
  ('fail_notification_delivery', ARRAY[format('p_delivery_id => %L::uuid', :'hd'), 'p_error => ''e''']),
  ('record_notification_status', ARRAY['p_channel => ''sms''', 'p_provider_message_id => ''pm''', 'p_status => ''delivered''', 'p_error => NULL::text']),
  ('run_maintenance', '{}'), ('time_out_jobs', '{}'), ('cleanup_expired_cache', '{}'), ('refresh_daily_metrics', '{}'),
  ('archive_partitions', ARRAY['p_table => ''system_metrics''', 'p_older_than_months => 12']),
  ('unarchive_partition', ARRAY['p_table => ''system_metrics''', 'p_month => (now() - interval ''15 months'')::date']),
  ('erase_user_data', ARRAY['p_user_id => ''00000000-0000-4000-8000-0000000000e1''::uuid', 'p_emails => ''{e@example.com}''::text[]', 'p_phone_numbers => ''{+250788000002}''::text[]', 'p_force => false']),
  ('feature_flag_exposures', '{}'), ('current_alerts', '{}'), ('metrics_prometheus', '{}'), ('queue_metrics', '{}'),
  ('cache_shared_stats', '{}');

-- Every helper a client can call is listed above (a new one must be added here).
SELECT p.proname AS missing_from_this_suite
  FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'easymo')
   AND p.proname NOT LIKE '\_%' AND p.prorettype <> 'trigger'::regtype
   AND p.proname NOT IN ('request_user_id', 'cache_hit_counters')
   AND p.proname NOT IN (SELECT fn FROM calls)
 ORDER BY 1;

-- The hostile values, by the type of the parameter they replace.
CREATE TEMP TABLE hostile (typ regtype, label text, expr text);
INSERT INTO hostile VALUES
  ('text', 'NULL', 'NULL::text'), ('text', 'empty', ''''''), ('text', 'blank', ''' '''),
  ('text', '1 MB', 'repeat(''x'', 1048576)'), ('text', '300 two-byte chars', 'repeat(''é'', 300)'),
  ('text', 'wrong enum', '''bogus'''), ('text', 'injection', '''''''; DROP TABLE cache_entries; --'''),
  ('text', 'control chars', 'E''\t\r\n\x01''' ), ('text', 'right-to-left', 'E''\u202Eevil'''),
  ('uuid', 'NULL', 'NULL::uuid'), ('uuid', 'nil', '''00000000-0000-0000-0000-000000000000''::uuid'),
  ('uuid', 'max', '''ffffffff-ffff-ffff-ffff-ffffffffffff''::uuid'),
  ('integer', 'NULL', 'NULL::int'), ('integer', 'min', '(-2147483648)::int'), ('integer', '-1', '(-1)::int'),
  ('integer', '0', '0'), ('integer', 'max', '2147483647'),
  ('bigint', 'NULL', 'NULL::bigint'), ('bigint', 'min', '(-9223372036854775808)::bigint'), ('bigint', '-1', '(-1)::bigint'),
  ('bigint', 'max', '9223372036854775807::bigint'),
  ('double precision', 'NULL', 'NULL::float8'), ('double precision', 'NaN', '''NaN''::float8'),
  ('double precision', 'Infinity', '''Infinity''::float8'), ('double precision', '-Infinity', '''-Infinity''::float8'),
  ('double precision', '-1e308', '(-1e308)::float8'), ('double precision', '1e308', '1e308::float8'),
  ('double precision', '-0', '''-0''::float8'), ('double precision', 'denormal', '''5e-324''::float8'),
  ('numeric', 'NULL', 'NULL::numeric'), ('numeric', 'NaN', '''NaN''::numeric'), ('numeric', 'Infinity', '''Infinity''::numeric'),
  ('numeric', '-Infinity', '''-Infinity''::numeric'), ('numeric', '-1', '(-1)::numeric'), ('numeric', '0', '0::numeric'),
  ('numeric', '1e1000', '1e1000::numeric'), ('numeric', '1e-1000', '1e-1000::numeric'),
  ('jsonb', 'NULL', 'NULL::jsonb'), ('jsonb', 'json null', '''null''::jsonb'), ('jsonb', 'array', '''[1, 2]''::jsonb'),
  ('jsonb', 'string', '''"s"''::jsonb'), ('jsonb', 'number', '''1e300''::jsonb'), ('jsonb', 'object', '''{"a": [null, true]}''::jsonb'),
  ('jsonb', 'nested 2000 deep', '(repeat(''{"a": '', 2000) || ''1'' || repeat(''}'', 2000))::jsonb'),
  ('jsonb', 'array nested 2000 deep', '(repeat(''['', 2000) || repeat('']'', 2000))::jsonb'),
  ('jsonb', '1 MB object', '(SELECT jsonb_object_agg(g::text, repeat(''v'', 100)) FROM generate_series(1, 10000) g)'),
  ('jsonb', 'odd keys', '''{"": 1, "\\u0000x": 2}''::jsonb'),
  ('timestamp with time zone', 'NULL', 'NULL::timestamptz'), ('timestamp with time zone', 'infinity', '''infinity''::timestamptz'),
  ('timestamp with time zone', '-infinity', '''-infinity''::timestamptz'),
  ('timestamp with time zone', '4713 BC', '''4713-01-01 00:00:00+00 BC''::timestamptz'),
  ('timestamp with time zone', 'year 294276', '''294276-12-31 23:59:59+00''::timestamptz'),
  ('text[]', 'NULL', 'NULL::text[]'), ('text[]', 'empty', '''{}''::text[]'), ('text[]', '{NULL}', '''{NULL}''::text[]'),
  ('text[]', '{""}', '''{""}''::text[]'), ('text[]', '100k elements', 'array_fill(''x''::text, ARRAY[100000])'),
  ('text[]', '1 MB element', 'ARRAY[repeat(''x'', 1048576)]'), ('text[]', '2-D', '''{{a,b},{c,d}}''::text[]'),
  ('boolean', 'NULL', 'NULL::boolean'),
  ('time without time zone', 'NULL', 'NULL::time'), ('time without time zone', '24:00', '''24:00''::time'),
  ('uuid[]', 'NULL', 'NULL::uuid[]'), ('uuid[]', 'empty', '''{}''::uuid[]'), ('uuid[]', '{NULL}', '''{NULL}''::uuid[]'),
  ('uuid[]', '100k elements', 'array_fill(gen_random_uuid(), ARRAY[100000])');

CREATE TEMP TABLE results (fn text, param text, label text, sqlstate text, message text);
GRANT SELECT ON calls TO service_role, authenticated;
GRANT SELECT, INSERT ON results TO service_role, authenticated;

-- Runs one call, rolled back whatever happens, and records how it ended.
CREATE FUNCTION pg_temp.try(p_fn text, p_param text, p_label text, p_sql text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    state text;
    msg text;
BEGIN
    BEGIN
        EXECUTE p_sql;
        RAISE EXCEPTION USING ERRCODE = 'EZ000';
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
    END;
    INSERT INTO results VALUES (p_fn, p_param, p_label, CASE state WHEN 'EZ000' THEN 'ok' ELSE state END, left(msg, 200));
END
$$;

-- Row counts of every easymo table, to compare before and after.
CREATE FUNCTION pg_temp.row_counts() RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    rel regclass;
    n bigint;
    acc text := '';
BEGIN
    FOR rel IN SELECT c.oid FROM pg_class c JOIN pg_depend d ON d.objid = c.oid AND d.deptype = 'e'
                WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'easymo')
                  AND c.relkind = 'r' ORDER BY c.relname LOOP
        EXECUTE format('SELECT count(*) FROM %s', rel) INTO n;
        acc := acc || rel || '=' || n || ' ';
    END LOOP;
    RETURN acc;
END
$$;
SELECT pg_temp.row_counts() AS counts_before \gset

DO $drive$
DECLARE
    c record;
    h record;
    i integer;
    param text;
    v_typ regtype;
    args text[];
BEGIN
    FOR c IN SELECT * FROM calls LOOP
        PERFORM pg_temp.try(c.fn, '-', 'valid', format('SELECT count(*) FROM %I(%s)', c.fn, array_to_string(c.args, ', ')));
        FOR i IN 1 .. coalesce(array_length(c.args, 1), 0) LOOP
            param := split_part(c.args[i], ' => ', 1);
            SELECT t INTO v_typ
              FROM pg_proc p, unnest(p.proargnames, p.proargtypes::oid[]) AS a(name, t)
             WHERE p.proname = c.fn AND a.name = param;
            FOR h IN SELECT * FROM hostile WHERE hostile.typ = v_typ LOOP
                args := c.args;
                args[i] := param || ' => ' || h.expr;
                PERFORM pg_temp.try(c.fn, param, h.label, format('SELECT count(*) FROM %I(%s)', c.fn, array_to_string(args, ', ')));
            END LOOP;
        END LOOP;
    END LOOP;
END
$drive$;

-- Every valid baseline call worked (else the variants test nothing).
SELECT fn, sqlstate, message FROM results WHERE label = 'valid' AND sqlstate <> 'ok' ORDER BY fn;
-- Enough calls, and every outcome either success or a contract SQLSTATE.
SELECT count(*) > 1000 AS calls_made, count(DISTINCT fn) AS helpers FROM results;
SELECT fn, param, label, sqlstate, message FROM results
 WHERE sqlstate NOT IN ('ok', '22004', '22023', '23505', '40001', '55000', 'P0002', 'EW001', 'EW002', 'EW003', 'EW004', 'EW005', 'EW006')
 ORDER BY fn, param, label;
-- What the outcomes were, by SQLSTATE.
SELECT sqlstate, count(*) > 0 AS seen FROM results GROUP BY sqlstate ORDER BY sqlstate;
-- Nothing stayed written, and the server never restarted.
SELECT pg_temp.row_counts() = :'counts_before' AS tables_unchanged;
SELECT pg_postmaster_start_time() = :'started' AS same_postmaster;

-- Every helper works for service_role (its rights, not the superuser's), and the end-user
-- helpers for authenticated.
DELETE FROM results;
SET ROLE service_role;
SELECT count(*) AS service_role_calls
  FROM calls, pg_temp.try(fn, '-', 'valid', format('SELECT count(*) FROM %I(%s)', fn, array_to_string(args, ', ')));
RESET ROLE;
SELECT fn, sqlstate, message FROM results WHERE sqlstate <> 'ok' ORDER BY fn;
DELETE FROM results;
-- (As the user the calls name: an end user evaluates flags for itself only.)
SET ROLE authenticated;
SET request.jwt.claims = '{"sub": "00000000-0000-4000-8000-000000000001"}';
SELECT count(*) AS authenticated_calls
  FROM calls, pg_temp.try(fn, '-', 'valid', format('SELECT count(*) FROM %I(%s)', fn, array_to_string(args, ', ')))
 WHERE fn IN ('is_feature_enabled', 'get_feature_variant', 'find_nearby_locations', 'get_cache', 'get_cached_route');
RESET ROLE;
RESET request.jwt.claims;
SELECT fn, sqlstate, message FROM results WHERE sqlstate <> 'ok' ORDER BY fn;

-- Malformed JSON stops at the cast.
SELECT regress.error($$SELECT set_cache('k', '{"a": ', 60)$$) AS malformed_json;

-- A renamed table is a state to fix (55000 naming it), not an internal error; renamed back, the
-- same session reads it again.
SELECT set_cache('renamed', '1', 60) IS NOT NULL AS cached;
ALTER TABLE cache_entries RENAME TO cache_entries_elsewhere;
SELECT regress.error($$SELECT get_cache('renamed')$$) AS renamed;
ALTER TABLE cache_entries_elsewhere RENAME TO cache_entries;
SELECT get_cache('renamed') AS read_again;
