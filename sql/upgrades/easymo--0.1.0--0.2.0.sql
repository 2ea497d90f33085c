-- easymo 0.1.0 -> 0.2.0: maintenance and retention.
--   run_maintenance()                  partitions, expired cache, idle WhatsApp sessions, jobs past
--                                      their lease, messages past their visibility timeout
--   apply_retention(text, integer)     drops whole months of a partitioned table
--   _release_expired_messages(),
--   _release_expired_whatsapp_messages()  the bulk form of a claim's visibility-timeout rule
--   complete_whatsapp_message          checks the provider message id's length (22023)
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

-- The privileges of every function, as the install script sets them (sql/security.sql).
-- Function privileges. Postgres grants EXECUTE to PUBLIC on every new function (and a Supabase
-- database adds default grants to anon and authenticated), so take everything back, then give
-- service_role every public helper and authenticated only the ones safe for an end user.
-- Internal functions (name starting with `_`) are executed by nobody but their owner.
DO $function_privileges$
DECLARE
    fn regprocedure;
    fname name;
    -- The end-user surface (contract: "Calling conventions"); request_user_id is needed by the
    -- RLS policies themselves.
    end_user_helpers name[] := ARRAY['request_user_id', 'is_feature_enabled', 'get_feature_variant',
                                     'find_nearby_locations', 'get_cache', 'get_cached_route'];
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
        CONTINUE WHEN fname LIKE '\_%';
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO service_role', fn);
        IF fname = ANY (end_user_helpers) THEN
            EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO authenticated', fn);
        END IF;
    END LOOP;
END
$function_privileges$;
