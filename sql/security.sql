-- Finalize: runs after every domain file and every Rust function exists.

-- No month partition is made here: they are the data's, not the extension's (see
-- sql/operations.sql); the first ensure_partitions() or run_maintenance() makes them.

-- pg_dump skips the rows of extension tables unless they are registered as configuration
-- tables; register every plain table (DEFAULT partitions included) and every sequence (pg_dump
-- then restores its position). Partitioned parents hold no rows of their own; month partitions
-- are not members, and pg_dump dumps them whole.
DO $config_dump$
DECLARE
    rel regclass;
BEGIN
    FOR rel IN
        SELECT c.oid::regclass
          FROM pg_catalog.pg_depend d
          JOIN pg_catalog.pg_class c ON c.oid = d.objid
         WHERE d.classid = 'pg_catalog.pg_class'::regclass
           AND d.refclassid = 'pg_catalog.pg_extension'::regclass
           AND d.refobjid = (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'easymo')
           AND d.deptype = 'e'
           AND c.relkind IN ('r', 'S')
    LOOP
        PERFORM pg_catalog.pg_extension_config_dump(rel, '');
    END LOOP;
    -- The extension's own alert rules come with CREATE EXTENSION: only the overrides are data.
    PERFORM pg_catalog.pg_extension_config_dump('@extschema@.alert_rules', $$WHERE environment <> 'default'$$);
END
$config_dump$;

-- Function privileges. Postgres grants EXECUTE to PUBLIC on every new function (and a Supabase
-- database adds default grants to anon and authenticated), so take everything back, then give
-- service_role every public helper and authenticated only the ones safe for an end user.
-- Internal functions (name starting with `_`) are executed by nobody but their owner, except
-- those that run with the caller's rights inside service_role's helpers and constraints: the
-- argument checks (and the feature_flags rules CHECK), the retry delay, the queue error
-- reporting, the quiet-hours computation, and what the alerts and metrics read (the measures,
-- a definer function of service_role's alone, and label escaping). They only validate, compute or read; none reads or writes
-- more than its caller could.
-- The argument checks are authenticated's too, for the end-user helpers written in plpgsql
-- (the wallet readers).
DO $function_privileges$
DECLARE
    fn regprocedure;
    fname name;
    -- The end-user surface (contract: "Calling conventions"); request_user_id is needed by the
    -- RLS policies themselves.
    end_user_helpers name[] := ARRAY['request_user_id', 'is_feature_enabled', 'get_feature_variant',
                                     'find_nearby_locations', 'get_cache', 'get_cached_route',
                                     'get_wallet_balance', 'wallet_history',
                                     'mark_notifications_read', 'unread_notification_count'];
    service_role_internals name[] := ARRAY['_retry_delay', '_queue_not_claimed', '_notification_send_at',
                                           '_alert_measures', '_prometheus_label'];
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
        IF fname LIKE '\_check\_%' THEN
            EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO authenticated', fn);
        END IF;
        CONTINUE WHEN fname LIKE '\_%';
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO service_role', fn);
        IF fname = ANY (end_user_helpers) THEN
            EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO authenticated', fn);
        END IF;
    END LOOP;
END
$function_privileges$;
