-- easymo 0.1.0 -> 0.2.0: maintenance, retention, analytics and service configuration.
--   run_maintenance()                  partitions, expired cache, idle WhatsApp sessions, jobs past
--                                      their lease, messages past their visibility timeout
--   apply_retention(text, integer)     drops whole months of a partitioned table
--   _release_expired_messages(),
--   _release_expired_whatsapp_messages()  the bulk form of a claim's visibility-timeout rule
--   complete_whatsapp_message          checks the provider message id's length (22023)
--   track_event, daily_metrics, refresh_daily_metrics, set_service_config, get_service_config,
--   get_service_config_history         analytics and service configuration, with the history trigger
--   function privileges                service_role may execute the argument checks its helpers use
-- The 0.2.0 library also brings the optional maintenance worker (easymo.maintenance_interval,
-- easymo.maintenance_databases); it needs no SQL object.
-- tests/pg_regress/sql/upgrade.sql checks that 0.1.0 updated by this script has exactly the
-- objects of a fresh 0.2.0 install. Frozen once released: later changes get a script of their own.

\echo Use "ALTER EXTENSION easymo UPDATE TO '0.2.0'" to load this file. \quit

CREATE FUNCTION @extschema@._release_expired_messages()
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $body$
DECLARE
    n integer;
BEGIN
    WITH expired AS (
        SELECT q.id FROM @extschema@.message_queue q
         WHERE q.status = 'processing' AND q.locked_until <= now()
           FOR UPDATE SKIP LOCKED
    )
    UPDATE @extschema@.message_queue t
       SET retry_count = t.retry_count + (t.status = 'processing')::int,
           status = CASE WHEN t.status = 'processing' AND t.retry_count + 1 > t.max_retries THEN 'dead_letter' ELSE 'pending' END,
           scheduled_at = now(),
           locked_until = NULL,
           last_error = CASE WHEN t.status = 'processing' THEN 'visibility timeout passed without an acknowledgement' ELSE t.last_error END, dead_lettered_at = CASE WHEN t.status = 'processing' AND t.retry_count + 1 > t.max_retries THEN now() END,
           updated_at = now()
      FROM expired
     WHERE t.id = expired.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$body$;
COMMENT ON FUNCTION @extschema@._release_expired_messages() IS 'Internal: messages whose visibility timeout passed without an acknowledgement go back to pending (a failed delivery) or, past max_retries, to dead_letter; returns how many. Run by run_maintenance().';

CREATE FUNCTION @extschema@._release_expired_whatsapp_messages()
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $body$
DECLARE
    n integer;
BEGIN
    WITH expired AS (
        SELECT q.id FROM @extschema@.whatsapp_message_queue q
         WHERE q.status = 'processing' AND q.locked_until <= now()
           FOR UPDATE SKIP LOCKED
    )
    UPDATE @extschema@.whatsapp_message_queue t
       SET retry_count = t.retry_count + (t.status = 'processing')::int,
           status = CASE WHEN t.status = 'processing' AND t.retry_count + 1 > t.max_retries THEN 'failed' ELSE 'pending' END,
           scheduled_at = now(),
           locked_until = NULL,
           last_error = CASE WHEN t.status = 'processing' THEN 'visibility timeout passed without an acknowledgement' ELSE t.last_error END,
           updated_at = now()
      FROM expired
     WHERE t.id = expired.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$body$;
COMMENT ON FUNCTION @extschema@._release_expired_whatsapp_messages() IS 'Internal: WhatsApp messages whose visibility timeout passed without an acknowledgement go back to pending (a failed delivery) or, past max_retries, to failed; returns how many. Run by run_maintenance().';

-- complete_whatsapp_message: a provider message id over 255 characters is 22023 (was the
-- table's CHECK, 23514), found by the hostile-input suite.
CREATE OR REPLACE FUNCTION @extschema@.complete_whatsapp_message(p_message_id uuid, p_provider_message_id text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $body$
BEGIN
    p_message_id := @extschema@._check_not_null('p_message_id', p_message_id);
    p_provider_message_id := @extschema@._check_text('p_provider_message_id', p_provider_message_id, 255, false);
    UPDATE @extschema@.whatsapp_message_queue t
       SET status = 'sent', locked_until = NULL, sent_at = now(), provider_message_id = coalesce(p_provider_message_id, t.provider_message_id), updated_at = now()
     WHERE t.id = p_message_id AND t.status = 'processing';
    IF FOUND THEN
        RETURN true;
    END IF;
    PERFORM @extschema@._queue_not_claimed('@extschema@.whatsapp_message_queue', 'WhatsApp message', p_message_id, 'processing', true);
    RETURN false;
END
$body$;

-- Retention: whole months go, by dropping their partitions (no row-by-row DELETE, no bloat).
-- The cut is at a UTC month boundary: p_keep_months = 3 in May keeps February to May. Rows
-- older than the cut that sit in the DEFAULT partition are deleted too, so nothing outlives the
-- window for want of a partition. For transactions, the side rows that point at the dropped
-- months (transaction_events, transaction_idempotency_keys) go in the same transaction: no event
-- is left without its transaction (a key dropped this way can be used again). Event streams keep
-- their version: appends continue where they were.
CREATE FUNCTION @extschema@.apply_retention(p_table text, p_keep_months integer)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    parent      regclass;
    default_rel regclass;
    cutoff      timestamptz;
    part        record;
    dropped     integer := 0;
    replication_role text;
    tables      CONSTANT text[] := ARRAY['system_metrics', 'system_audit_logs', 'transactions', 'event_store', 'analytics_events'];
BEGIN
    p_table := @extschema@._check_choice('p_table', p_table, tables);
    p_keep_months := @extschema@._check_range('p_keep_months', p_keep_months, 0, 1200);
    parent := format('@extschema@.%I', p_table)::regclass;
    SELECT pt.partdefid::regclass INTO default_rel FROM pg_partitioned_table pt WHERE pt.partrelid = parent;
    cutoff := (date_trunc('month', now() AT TIME ZONE 'UTC') - make_interval(months => p_keep_months)) AT TIME ZONE 'UTC';
    -- Not at the same time as ensure_partitions (which may be moving rows into a partition).
    PERFORM pg_advisory_xact_lock(7310309163452661761);

    IF p_table = 'transactions' THEN
        DELETE FROM @extschema@.transaction_events WHERE transaction_created_at < cutoff;
        DELETE FROM @extschema@.transaction_idempotency_keys WHERE transaction_created_at < cutoff;
    END IF;

    FOR part IN
        SELECT b.partition FROM @extschema@._partition_bounds(parent) b
         WHERE b.upper_bound <= cutoff
         ORDER BY b.lower_bound
    LOOP
        EXECUTE format('ALTER TABLE %s DETACH PARTITION %s', parent, part.partition);
        -- Leaving the extension also takes the table off pg_dump's list (extconfig).
        EXECUTE format('ALTER EXTENSION easymo DROP TABLE %s', part.partition);
        EXECUTE format('DROP TABLE %s', part.partition);
        dropped := dropped + 1;
    END LOOP;

    IF default_rel IS NOT NULL THEN
        -- The replica role: the row triggers that guard single deletes (a transaction with
        -- events) have nothing to guard here, their side rows went above.
        replication_role := current_setting('session_replication_role');
        PERFORM set_config('session_replication_role', 'replica', true);
        EXECUTE format('DELETE FROM %s WHERE created_at < $1', default_rel) USING cutoff;
        PERFORM set_config('session_replication_role', replication_role, true);
    END IF;
    RETURN dropped;
END
$$;
COMMENT ON FUNCTION @extschema@.apply_retention(text, integer) IS
    'Drops the monthly partitions of p_table (system_metrics, system_audit_logs, transactions, event_store, analytics_events) that end before the current UTC month minus p_keep_months, and deletes older rows from its DEFAULT partition (for transactions also their events and idempotency keys). Returns how many partitions it dropped.';

-- Everything that keeps the tables in shape, in one call: what pg_cron or the background worker
-- runs. Each step runs in its own subtransaction, so one that fails (a lock timeout, say) is
-- reported in the summary and as a WARNING while the others still do their work.
CREATE FUNCTION @extschema@.run_maintenance()
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    steps CONSTANT text[][] := ARRAY[
        ['partitions_created',          'SELECT @extschema@.ensure_partitions(3)'],
        ['cache_entries_removed',       'SELECT @extschema@.cleanup_expired_cache()'],
        ['whatsapp_sessions_expired',   'SELECT @extschema@.cleanup_expired_whatsapp_sessions()'],
        ['jobs_timed_out',              'SELECT @extschema@.time_out_jobs()'],
        ['messages_released',           'SELECT @extschema@._release_expired_messages()'],
        ['whatsapp_messages_released',  'SELECT @extschema@._release_expired_whatsapp_messages()']];
    summary jsonb := '{}';
    errors  jsonb := '{}';
    started timestamptz := clock_timestamp();
    n       bigint;
    msg     text;
    state   text;
BEGIN
    FOR i IN 1 .. array_length(steps, 1) LOOP
        BEGIN
            EXECUTE steps[i][2] INTO n;
            summary := summary || jsonb_build_object(steps[i][1], n);
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, state = RETURNED_SQLSTATE;
            RAISE WARNING 'run_maintenance: % failed: % (SQLSTATE %)', steps[i][1], msg, state;
            errors := errors || jsonb_build_object(steps[i][1], jsonb_build_object('sqlstate', state, 'message', msg));
        END;
    END LOOP;
    RETURN summary
        || jsonb_build_object('errors', errors,
                              'duration_ms', round(extract(epoch FROM clock_timestamp() - started) * 1000, 1));
END
$$;
COMMENT ON FUNCTION @extschema@.run_maintenance() IS
    'Runs every maintenance step: partitions 3 months ahead, expired cache entries, idle WhatsApp sessions, jobs past their lease, messages past their visibility timeout. Returns a jsonb summary of counts, errors per failed step, and the duration. What pg_cron or the easymo background worker calls.';

-- Analytics and service configuration helpers (sql/analytics.sql).
CREATE FUNCTION @extschema@.track_event(
    p_event_name text,
    p_user_id uuid DEFAULT NULL,
    p_session_id text DEFAULT NULL,
    p_properties jsonb DEFAULT '{}'
) RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    event_id uuid;
BEGIN
    p_event_name := @extschema@._check_text('p_event_name', p_event_name, 255);
    p_session_id := @extschema@._check_text('p_session_id', p_session_id, 255, false);
    p_properties := @extschema@._check_json('p_properties', p_properties, 'object');
    INSERT INTO @extschema@.analytics_events (event_name, user_id, session_id, properties)
    VALUES (p_event_name, p_user_id, p_session_id, coalesce(p_properties, '{}'))
    RETURNING id INTO event_id;
    RETURN event_id;
END
$$;
COMMENT ON FUNCTION @extschema@.track_event(text, uuid, text, jsonb) IS
    'Records one product analytics event (name, user, session, properties object); returns its id. Counted per day in daily_metrics after refresh_daily_metrics().';

-- Per UTC day and event name. The unique index is what lets a refresh run CONCURRENTLY: readers
-- keep the previous contents until the new ones are committed, instead of waiting.
CREATE MATERIALIZED VIEW @extschema@.daily_metrics AS
SELECT (created_at AT TIME ZONE 'UTC')::date AS day,
       event_name,
       count(*)                   AS events,
       count(DISTINCT user_id)    AS users,
       count(DISTINCT session_id) AS sessions
  FROM @extschema@.analytics_events
 GROUP BY 1, 2;
CREATE UNIQUE INDEX daily_metrics_day_event_idx ON @extschema@.daily_metrics (day, event_name);
COMMENT ON MATERIALIZED VIEW @extschema@.daily_metrics IS
    'Analytics events per UTC day and event name: events, distinct users, distinct sessions. As of the last refresh_daily_metrics().';
SELECT @extschema@._secure_view('@extschema@.daily_metrics');

-- The owner refreshes (a materialized view can only be refreshed by its owner), whoever calls.
CREATE FUNCTION @extschema@.refresh_daily_metrics() RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    REFRESH MATERIALIZED VIEW CONCURRENTLY @extschema@.daily_metrics;
END
$$;
COMMENT ON FUNCTION @extschema@.refresh_daily_metrics() IS
    'Recomputes daily_metrics from analytics_events without blocking its readers (REFRESH ... CONCURRENTLY).';

-- Secrets are shown to service_role (and the roles that are members of it, superusers included),
-- masked for every other role. The caller, seen from inside a SECURITY DEFINER function (where
-- current_user is the owner), is the role set with SET ROLE (as PostgREST does), else the
-- session's login role.
CREATE FUNCTION @extschema@._sees_secrets() RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_has_role(CASE WHEN current_setting('role') IN ('none', '') THEN session_user::text
                            ELSE current_setting('role') END,
                       'service_role', 'MEMBER')
$$;
COMMENT ON FUNCTION @extschema@._sees_secrets() IS
    'Internal: whether the calling role (SET ROLE, else the login role; also inside SECURITY DEFINER functions) may see secret configuration values: a member of service_role.';

-- Every change that matters (value, secrecy, identity) lands in the history with who made it;
-- an update that changes nothing else (updated_at only) does not. A row that already has its
-- INSERT record is not recorded again: that is pg_restore loading a dump (the extension's
-- trigger exists before the data arrives, and pg_dump loads service_configuration_history, by
-- name, before service_configurations), which must give back the history as it was.
CREATE FUNCTION @extschema@._service_configuration_history() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r @extschema@.service_configurations;
BEGIN
    r := CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
    IF TG_OP = 'INSERT' AND EXISTS (
        SELECT 1 FROM @extschema@.service_configuration_history h
         WHERE h.service_name = r.service_name AND h.environment = r.environment AND h.key = r.key
           AND h.configuration_id = r.id AND h.operation = 'INSERT') THEN
        RETURN NULL;
    END IF;
    INSERT INTO @extschema@.service_configuration_history
        (configuration_id, service_name, environment, key, operation, old_value, new_value, is_secret,
         changed_by_role, changed_by_user)
    VALUES (r.id, r.service_name, r.environment, r.key, TG_OP,
            CASE WHEN TG_OP <> 'INSERT' THEN OLD.value END,
            CASE WHEN TG_OP <> 'DELETE' THEN NEW.value END,
            r.is_secret OR (TG_OP = 'UPDATE' AND OLD.is_secret),
            current_user, @extschema@.request_user_id());
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION @extschema@._service_configuration_history() IS
    'Internal trigger: writes each insert, update and delete of service_configurations to service_configuration_history.';
CREATE TRIGGER service_configurations_history
    AFTER INSERT OR DELETE ON @extschema@.service_configurations
    FOR EACH ROW EXECUTE FUNCTION @extschema@._service_configuration_history();
CREATE TRIGGER service_configurations_history_update
    AFTER UPDATE ON @extschema@.service_configurations
    FOR EACH ROW
    WHEN ((OLD.service_name, OLD.environment, OLD.key, OLD.value, OLD.is_secret)
          IS DISTINCT FROM (NEW.service_name, NEW.environment, NEW.key, NEW.value, NEW.is_secret))
    EXECUTE FUNCTION @extschema@._service_configuration_history();

CREATE FUNCTION @extschema@.set_service_config(
    p_service_name text,
    p_environment text,
    p_key text,
    p_value jsonb,
    p_is_secret boolean DEFAULT false
) RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    config_id uuid;
BEGIN
    p_service_name := @extschema@._check_text('p_service_name', p_service_name, 255);
    p_environment := @extschema@._check_choice('p_environment', p_environment, ARRAY['development', 'staging', 'production', 'all']);
    p_key := @extschema@._check_text('p_key', p_key, 255);
    p_value := @extschema@._check_not_null('p_value', p_value);
    p_is_secret := @extschema@._check_not_null('p_is_secret', p_is_secret);
    -- Setting the value it already has changes nothing and writes no history.
    INSERT INTO @extschema@.service_configurations AS c (service_name, environment, key, value, is_secret)
    VALUES (p_service_name, p_environment, p_key, p_value, p_is_secret)
    ON CONFLICT (service_name, environment, key) DO UPDATE
       SET value = EXCLUDED.value, is_secret = EXCLUDED.is_secret
     WHERE (c.value, c.is_secret) IS DISTINCT FROM (EXCLUDED.value, EXCLUDED.is_secret)
    RETURNING c.id INTO config_id;
    IF config_id IS NULL THEN
        SELECT id INTO config_id FROM @extschema@.service_configurations
         WHERE service_name = p_service_name AND environment = p_environment AND key = p_key;
    END IF;
    RETURN config_id;
END
$$;
COMMENT ON FUNCTION @extschema@.set_service_config(text, text, text, jsonb, boolean) IS
    'Sets one configuration value of a service in an environment (development, staging, production, or all: the default for every environment); returns its id. Each change is recorded in service_configuration_history.';

-- One object of the service's keys for an environment: the `all` values, overridden by the
-- environment's own. SECURITY DEFINER so a role given only EXECUTE gets the masked view.
CREATE FUNCTION @extschema@.get_service_config(p_service_name text, p_environment text) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    show_secrets boolean := @extschema@._sees_secrets();
    config jsonb;
BEGIN
    p_service_name := @extschema@._check_text('p_service_name', p_service_name, 255);
    p_environment := @extschema@._check_choice('p_environment', p_environment, ARRAY['development', 'staging', 'production', 'all']);
    SELECT coalesce(jsonb_object_agg(key, CASE WHEN is_secret AND NOT show_secrets THEN '"********"'::jsonb ELSE value END), '{}')
      INTO config
      FROM (SELECT DISTINCT ON (key) key, value, is_secret
              FROM @extschema@.service_configurations
             WHERE service_name = p_service_name AND environment IN (p_environment, 'all')
             ORDER BY key, environment = 'all') c;
    RETURN config;
END
$$;
COMMENT ON FUNCTION @extschema@.get_service_config(text, text) IS
    'The configuration of a service in an environment as one JSON object: environment-specific values override `all` ones; secret values are shown to service_role and masked ("********") for every other role. {} when there is none.';

CREATE FUNCTION @extschema@.get_service_config_history(
    p_service_name text,
    p_environment text DEFAULT NULL,
    p_key text DEFAULT NULL
) RETURNS SETOF @extschema@.service_configuration_history
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    show_secrets boolean := @extschema@._sees_secrets();
BEGIN
    p_service_name := @extschema@._check_text('p_service_name', p_service_name, 255);
    IF p_environment IS NOT NULL THEN
        p_environment := @extschema@._check_choice('p_environment', p_environment, ARRAY['development', 'staging', 'production', 'all']);
    END IF;
    RETURN QUERY
    SELECT h.id, h.configuration_id, h.service_name, h.environment, h.key, h.operation,
           CASE WHEN h.is_secret AND NOT show_secrets AND h.old_value IS NOT NULL THEN '"********"'::jsonb ELSE h.old_value END,
           CASE WHEN h.is_secret AND NOT show_secrets AND h.new_value IS NOT NULL THEN '"********"'::jsonb ELSE h.new_value END,
           h.is_secret, h.changed_by_role, h.changed_by_user, h.changed_at
      FROM @extschema@.service_configuration_history h
     WHERE h.service_name = p_service_name
       AND (p_environment IS NULL OR h.environment = p_environment)
       AND (p_key IS NULL OR h.key = p_key)
     ORDER BY h.changed_at, h.id;
END
$$;
COMMENT ON FUNCTION @extschema@.get_service_config_history(text, text, text) IS
    'The changes of a service''s configuration, oldest first (optionally one environment, one key): old and new value, who and when; values of secrets masked ("********") for every role but service_role.';

-- The privileges of every function, as the install script sets them (sql/security.sql).
-- Function privileges. Postgres grants EXECUTE to PUBLIC on every new function (and a Supabase
-- database adds default grants to anon and authenticated), so take everything back, then give
-- service_role every public helper and authenticated only the ones safe for an end user.
-- Internal functions (name starting with `_`) are executed by nobody but their owner, except
-- those that run with the caller's rights inside service_role's helpers and constraints: the
-- argument checks (and the feature_flags rules CHECK), the retry delay and the queue error
-- reporting. They only validate or compute; none reads or writes more than its caller could.
DO $function_privileges$
DECLARE
    fn regprocedure;
    fname name;
    -- The end-user surface (contract: "Calling conventions"); request_user_id is needed by the
    -- RLS policies themselves.
    end_user_helpers name[] := ARRAY['request_user_id', 'is_feature_enabled', 'get_feature_variant',
                                     'find_nearby_locations', 'get_cache', 'get_cached_route'];
    service_role_internals name[] := ARRAY['_retry_delay', '_queue_not_claimed'];
BEGIN
    FOR fn, fname IN
        SELECT p.oid::regprocedure, p.proname
          FROM pg_catalog.pg_depend d
          JOIN pg_catalog.pg_proc p ON p.oid = d.objid
         WHERE d.classid = 'pg_catalog.pg_proc'::regclass
           AND d.refclassid = 'pg_catalog.pg_extension'::regclass
           AND d.refobjid = (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'easymo')
           AND d.deptype = 'e'
    LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC, anon, authenticated, service_role', fn);
        IF fname LIKE '\_check\_%' OR fname = ANY (service_role_internals) THEN
            EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO service_role', fn);
        END IF;
        CONTINUE WHEN fname LIKE '\_%';
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO service_role', fn);
        IF fname = ANY (end_user_helpers) THEN
            EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO authenticated', fn);
        END IF;
    END LOOP;
END
$function_privileges$;
