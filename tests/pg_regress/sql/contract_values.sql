-- Every list and limit the contract keeps in two places says the same in both: the native
-- code's copy (_contract_values(), src/contract.rs) against the CHECK constraints, and the
-- helpers' argument checks against the CHECK of the column they fill. A list changed on one
-- side only shows up here as a row.
\set VERBOSITY terse
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS easymo CASCADE;
CREATE EXTENSION easymo;

-- The quoted literals of a text, sorted ('a'::text, 'b' -> {a,b}).
CREATE FUNCTION pg_temp.literals(p_text text) RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(array_agg(DISTINCT m[1] ORDER BY m[1]), '{}') FROM regexp_matches(p_text, '''([^'']*)''', 'g') m
$$;
CREATE FUNCTION pg_temp.check_of(p_constraint name) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = p_constraint AND contype = 'c'
     ORDER BY conrelid LIMIT 1
$$;
-- The ARRAY[...] a helper's body passes to _check_choice for parameter p_param.
CREATE FUNCTION pg_temp.choice_in(p_function regproc, p_param text) RETURNS text[] LANGUAGE sql STABLE AS $$
    SELECT pg_temp.literals((regexp_match(prosrc, '''' || p_param || ''', ' || p_param || ',\s*ARRAY\[([^]]*)\]'))[1])
      FROM pg_proc WHERE oid = p_function
$$;
CREATE FUNCTION pg_temp.native(p_list text) RETURNS text[] LANGUAGE sql STABLE AS $$
    SELECT coalesce(array_agg(value ORDER BY value), '{}') FROM _contract_values() WHERE list = p_list
$$;

-- Native lists against the CHECKs (an environment row of a flag may also be for all of them).
SELECT x.what, x.native = x.sql AS same, CASE WHEN x.native <> x.sql THEN x.native::text || ' <> ' || x.sql::text END AS differs
  FROM (VALUES
    ('transaction types', pg_temp.native('transaction_types'), pg_temp.literals(pg_temp.check_of('transactions_type_check'))),
    ('location types', pg_temp.native('location_types'), pg_temp.literals(pg_temp.check_of('locations_location_type_check'))),
    ('flag environments', (SELECT array_agg(v ORDER BY v) FROM unnest(pg_temp.native('environments') || '{all}'::text[]) v),
                          pg_temp.literals(pg_temp.check_of('feature_flags_environment_check'))),
    ('rollout strategies', pg_temp.native('rollout_strategies'), pg_temp.literals(pg_temp.check_of('feature_flags_rollout_strategy_check'))),
    ('cache visibilities', pg_temp.native('cache_visibilities'), pg_temp.literals(pg_temp.check_of('cache_entries_visibility_check'))),
    ('wallet account kinds', pg_temp.native('wallet_account_kinds'), pg_temp.literals(pg_temp.check_of('wallet_accounts_kind_check'))),
    ('wallet account statuses', pg_temp.native('wallet_account_statuses'), pg_temp.literals(pg_temp.check_of('wallet_accounts_status_check'))),
    ('wallet transfer statuses', pg_temp.native('wallet_transfer_statuses'), pg_temp.literals(pg_temp.check_of('wallet_transfers_status_check')))
  ) x(what, native, sql)
 ORDER BY 1;

-- Currencies: the CHECK calls the native list itself, which has 177 codes.
SELECT pg_temp.check_of('transactions_currency_check') LIKE '%_check_currency_code(currency)%' AS currency_check_is_native,
       cardinality(pg_temp.native('currencies')) AS currencies,
       (SELECT bool_and(_check_currency_code(c)) FROM unnest(pg_temp.native('currencies')) c) AS all_accepted;

-- Native limits against the CHECKs and views that repeat them.
SELECT x.what, x.native, x.sql_text LIKE '%' || x.native || '%' AS same
  FROM (VALUES
    ('cache key bytes', (SELECT value FROM _contract_values() WHERE list = 'cache_key_max_bytes'), pg_temp.check_of('cache_entries_key_check')),
    ('cache type characters', (SELECT value FROM _contract_values() WHERE list = 'cache_type_max_chars'), pg_temp.check_of('cache_entries_cache_type_check')),
    ('flag key characters', (SELECT value FROM _contract_values() WHERE list = 'flag_key_max_chars'), pg_temp.check_of('feature_flags_key_check')),
    ('idempotency key characters (keys)', (SELECT value FROM _contract_values() WHERE list = 'idempotency_key_max_chars'), pg_temp.check_of('transaction_idempotency_keys_idempotency_key_check')),
    ('idempotency key characters (transactions)', (SELECT value FROM _contract_values() WHERE list = 'idempotency_key_max_chars'), pg_temp.check_of('transactions_idempotency_key_check')),
    ('correlation id characters', (SELECT value FROM _contract_values() WHERE list = 'correlation_id_max_chars'), pg_temp.check_of('transactions_correlation_id_check')),
    ('service stale seconds default', (SELECT value FROM _contract_values() WHERE list = 'service_stale_seconds_default'), pg_get_viewdef('service_health_overview')),
    ('notification dedupe seconds default', (SELECT value FROM _contract_values() WHERE list = 'notification_dedupe_seconds_default'), (SELECT prosrc FROM pg_proc WHERE proname = 'send_notification')),
    ('environment default', (SELECT value FROM _contract_values() WHERE list = 'environment_default'), (SELECT prosrc FROM pg_proc WHERE proname = '_alert_measures'))
  ) x(what, native, sql_text)
 ORDER BY 1;

-- The helpers' argument checks against the CHECK of the column they fill.
SELECT x.helper, x.checked = x.column_check AS same,
       CASE WHEN x.checked <> x.column_check THEN x.checked::text || ' <> ' || x.column_check::text END AS differs
  FROM (VALUES
    ('record_metric p_metric_type', pg_temp.choice_in('record_metric', 'p_metric_type'), pg_temp.literals(pg_temp.check_of('system_metrics_metric_type_check'))),
    ('log_audit_event p_actor_type', pg_temp.choice_in('log_audit_event', 'p_actor_type'), pg_temp.literals(pg_temp.check_of('system_audit_logs_actor_type_check'))),
    ('enqueue_whatsapp_message p_message_type', pg_temp.choice_in('enqueue_whatsapp_message', 'p_message_type'), pg_temp.literals(pg_temp.check_of('whatsapp_message_queue_message_type_check'))),
    ('update_transaction_status p_new_status', pg_temp.choice_in('update_transaction_status', 'p_new_status'), pg_temp.literals(pg_temp.check_of('transactions_status_check'))),
    ('service_heartbeat p_status', pg_temp.choice_in('service_heartbeat', 'p_status'), pg_temp.literals(pg_temp.check_of('service_registry_status_check'))),
    ('set_service_config p_environment', pg_temp.choice_in('set_service_config', 'p_environment'), pg_temp.literals(pg_temp.check_of('service_configurations_environment_check'))),
    ('get_service_config p_environment', pg_temp.choice_in('get_service_config', 'p_environment'), pg_temp.literals(pg_temp.check_of('service_configurations_environment_check'))),
    ('set_notification_preference p_channel', pg_temp.choice_in('set_notification_preference', 'p_channel'), pg_temp.literals(pg_temp.check_of('notification_preferences_channel_check'))),
    ('record_notification_status p_channel', pg_temp.choice_in('record_notification_status', 'p_channel'), pg_temp.literals(pg_temp.check_of('notification_deliveries_channel_check'))),
    ('create_wallet_account p_kind', pg_temp.choice_in('create_wallet_account', 'p_kind'), pg_temp.literals(pg_temp.check_of('wallet_accounts_kind_check'))),
    ('set_wallet_account_status p_status', pg_temp.choice_in('set_wallet_account_status', 'p_status'), pg_temp.literals(pg_temp.check_of('wallet_accounts_status_check'))),
    ('claim_notification_deliveries p_channel', pg_temp.choice_in('claim_notification_deliveries', 'p_channel'), pg_temp.literals(pg_temp.check_of('notification_deliveries_channel_check'))),
    ('send_notification channels', pg_temp.literals((regexp_match((SELECT prosrc FROM pg_proc WHERE proname = 'send_notification'), 'all_channels CONSTANT text\[\] := ARRAY\[([^]]*)\]'))[1]), pg_temp.literals(pg_temp.check_of('notification_deliveries_channel_check')))
  ) x(helper, checked, column_check)
 ORDER BY 1;
-- The tables apply_retention and archive_partitions take (_partitioned_tables()) are the
-- partitioned ones.
SELECT (SELECT array_agg(t ORDER BY t) FROM unnest(_partitioned_tables()) t)
       = (SELECT array_agg(c.relname::text ORDER BY c.relname) FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid
           WHERE c.relnamespace = 'public'::regnamespace) AS retention_covers_every_partitioned_table;

-- No helper repeats a NULL or range check the shared checks make (22004/22023 raised by hand
-- outside bootstrap.sql's _check_* functions); the ones left are checks those cannot express.
SELECT p.proname, (SELECT count(*) FROM regexp_matches(p.prosrc, 'ERRCODE = ''22004''', 'g')) AS own_null_checks
  FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'easymo')
   AND p.proname NOT LIKE '\_check\_%' AND p.prosrc LIKE '%ERRCODE = ''22004''%'
 ORDER BY 1;
