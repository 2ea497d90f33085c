-- With easymo in shared_preload_libraries (scripts/test.sh runs this suite after restarting
-- the cluster so): cache hits and misses go to shared memory, sessions' counts add up, a
-- session's last counts arrive when it ends, and no read writes a row. Flag exposures the same,
-- read-only transactions included (what PostgREST and a standby give).
\set VERBOSITY terse
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS easymo CASCADE;
CREATE EXTENSION easymo;
SHOW shared_preload_libraries;

SELECT set_cache('session:1', '{"user": 1}', 600, 'sessions') IS NOT NULL AS stored;
INSERT INTO feature_flags (key, name, enabled, rollout_strategy) VALUES ('on_for_all', 'On', true, 'all');
-- Three sessions, 100 hits and 30 misses each (130 reads: not a multiple of the batch of 64,
-- so each ends with unflushed counts).
\c
SELECT count(get_cache('session:1')) AS hits FROM generate_series(1, 100);
SELECT count(get_cache('missing:' || g)) AS found FROM generate_series(1, 30) g;
BEGIN READ ONLY;
SELECT count(*) FILTER (WHERE is_feature_enabled('on_for_all', gen_random_uuid())) AS on_of_70 FROM generate_series(1, 70);
SELECT txid_current_if_assigned() IS NULL AS no_xid_taken;
COMMIT;
\c
SELECT count(get_cache('session:1')) AS hits FROM generate_series(1, 100);
SELECT count(get_cache('missing:' || g)) AS found FROM generate_series(1, 30) g;
BEGIN READ ONLY;
SELECT count(*) FILTER (WHERE is_feature_enabled('on_for_all', gen_random_uuid())) AS on_of_70 FROM generate_series(1, 70);
SELECT txid_current_if_assigned() IS NULL AS no_xid_taken;
COMMIT;
\c
SELECT count(get_cache('session:1')) AS hits FROM generate_series(1, 100);
SELECT count(get_cache('missing:' || g)) AS found FROM generate_series(1, 30) g;
BEGIN READ ONLY;
SELECT count(*) FILTER (WHERE is_feature_enabled('on_for_all', gen_random_uuid())) AS on_of_70 FROM generate_series(1, 70);
SELECT txid_current_if_assigned() IS NULL AS no_xid_taken;
COMMIT;
\c
-- Wait (at most 30 s) until the earlier sessions have exited: a backend runs its exit callbacks
-- before it leaves pg_stat_activity.
DO $$
BEGIN
    FOR i IN 1 .. 3000 LOOP
        EXIT WHEN NOT EXISTS (SELECT 1 FROM pg_stat_activity
                               WHERE datname = current_database() AND pid <> pg_backend_pid());
        PERFORM pg_sleep(0.01);
    END LOOP;
END $$;
-- The sessions are gone: their counts are all there, and not one row was written for them.
SELECT cache_type, entries, hits, misses, hit_ratio FROM cache_stats ORDER BY cache_type NULLS FIRST;
SELECT count(*) AS rows_written FROM cache_stat_counters;
SELECT flag_key, environment, variant, enabled, evaluations FROM feature_flag_exposures() WHERE flag_key = 'on_for_all';
SELECT count(*) AS exposure_rows_written FROM feature_flag_exposure_counters;
