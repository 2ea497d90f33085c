-- The maintenance worker (easymo preloaded; scripts/test.sh sets easymo.maintenance_databases =
-- 'easymo_worker, easymo_worker_old', which it created with the extension at 0.2.0 and 0.1.0,
-- and easymo.maintenance_interval = 1): a missing partition of next month comes back without
-- anybody calling anything; in a database still at 0.1.0 the worker waits, and does its work
-- once the extension is updated.
\set VERBOSITY terse
SET client_min_messages = warning;
SHOW easymo.maintenance_databases;
SHOW easymo.maintenance_interval;
\c easymo_worker
SET client_min_messages = warning;
SELECT count(*) AS workers FROM pg_stat_activity WHERE backend_type = 'easymo maintenance' AND datname = 'easymo_worker';

SELECT format('system_metrics_p%s', to_char(now() AT TIME ZONE 'UTC' + interval '1 month', 'YYYY_MM')) AS next_part \gset
-- CREATE EXTENSION makes no month partition: the worker's first run makes them.
DO $wait$
BEGIN
    FOR i IN 1 .. 600 LOOP
        EXIT WHEN EXISTS (SELECT 1 FROM pg_class WHERE relname = format('system_metrics_p%s', to_char(now() AT TIME ZONE 'UTC' + interval '1 month', 'YYYY_MM')));
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$wait$;
SELECT count(*) AS made_by_the_worker FROM pg_class WHERE relname = :'next_part';
-- The parent locked first, as maintenance locks it (the parent, then its partitions): a DROP of a
-- partition alone locks the partition, then the parent, and deadlocks with a maintenance run
-- that reads the parent meanwhile (40P01 seen once on 16).
BEGIN;
LOCK TABLE system_metrics IN ACCESS EXCLUSIVE MODE;
DROP TABLE :"next_part";
COMMIT;
SELECT count(*) AS gone FROM pg_class WHERE relname = :'next_part';

-- Wait for it (each query sees the latest commits); a minute at most, so a broken worker fails
-- the test instead of hanging it.
DO $wait$
BEGIN
    FOR i IN 1 .. 600 LOOP
        EXIT WHEN EXISTS (SELECT 1 FROM pg_class WHERE relname = format('system_metrics_p%s', to_char(now() AT TIME ZONE 'UTC' + interval '1 month', 'YYYY_MM')));
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$wait$;
SELECT count(*) AS back FROM pg_class WHERE relname = :'next_part';
-- Back, and like every month partition not a member of the extension (pg_dump dumps it whole).
SELECT count(*) AS member FROM pg_depend
 WHERE objid = :'next_part'::regclass AND refclassid = 'pg_extension'::regclass AND deptype = 'e';
SELECT :'next_part'::regclass::oid = ANY (extconfig) AS registered FROM pg_extension WHERE extname = 'easymo';

-- The database at 0.1.0: its worker is there, waiting (not failing and restarting).
\c easymo_worker_old
SET client_min_messages = warning;
SELECT extversion FROM pg_extension WHERE extname = 'easymo';
-- Still connected after a few of its 1-second intervals (a failing worker would have exited).
SELECT pg_sleep(3);
SELECT count(*) AS workers FROM pg_stat_activity WHERE backend_type = 'easymo maintenance' AND datname = 'easymo_worker_old';
ALTER EXTENSION easymo UPDATE;
SELECT format('system_metrics_p%s', to_char(now() AT TIME ZONE 'UTC' + interval '1 month', 'YYYY_MM')) AS next_part \gset
BEGIN;
LOCK TABLE system_metrics IN ACCESS EXCLUSIVE MODE;
DROP TABLE :"next_part";
COMMIT;
DO $wait$
BEGIN
    FOR i IN 1 .. 600 LOOP
        EXIT WHEN EXISTS (SELECT 1 FROM pg_class WHERE relname = format('system_metrics_p%s', to_char(now() AT TIME ZONE 'UTC' + interval '1 month', 'YYYY_MM')));
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$wait$;
SELECT count(*) AS back_after_update FROM pg_class WHERE relname = :'next_part';

-- A terminated worker comes back after easymo.maintenance_restart_interval (1 s here; 0.2.0's
-- worker exited with code 0 when terminated and was never started again until the server
-- restarted). Its database at 0.3.0 has nothing to wait for.
\c easymo_worker
SET client_min_messages = warning;
SHOW easymo.maintenance_restart_interval;
SELECT pid AS old_worker FROM pg_stat_activity WHERE backend_type = 'easymo maintenance' AND datname = 'easymo_worker' \gset
SELECT pg_terminate_backend(:old_worker) AS terminated;
SELECT set_config('regress.old_worker', :'old_worker', false) IS NOT NULL AS remembered;
DO $wait$
BEGIN
    FOR i IN 1 .. 300 LOOP
        EXIT WHEN EXISTS (SELECT 1 FROM pg_stat_activity
                           WHERE backend_type = 'easymo maintenance' AND datname = 'easymo_worker'
                             AND pid <> current_setting('regress.old_worker')::int);
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$wait$;
SELECT count(*) AS workers_again FROM pg_stat_activity
 WHERE backend_type = 'easymo maintenance' AND datname = 'easymo_worker' AND pid <> :old_worker;

-- A database dropped WITH (FORCE) under its worker (which terminates it) and created again: the
-- worker keeps coming back (each try fails while the database is missing) and, once the
-- extension is there, does its work in the new database.
DROP DATABASE easymo_worker_old WITH (FORCE);
SELECT count(*) AS workers_of_dropped FROM pg_stat_activity WHERE backend_type = 'easymo maintenance' AND datname = 'easymo_worker_old';
SELECT pg_sleep(2);
CREATE DATABASE easymo_worker_old;
\c easymo_worker_old
SET client_min_messages = warning;
CREATE EXTENSION easymo;
DO $wait$
BEGIN
    FOR i IN 1 .. 600 LOOP
        EXIT WHEN EXISTS (SELECT 1 FROM pg_class WHERE relname = format('system_metrics_p%s', to_char(now() AT TIME ZONE 'UTC' + interval '1 month', 'YYYY_MM')));
        PERFORM pg_sleep(0.1);
    END LOOP;
END
$wait$;
SELECT count(*) AS made_in_the_new_database FROM pg_class WHERE relname = :'next_part';
SELECT count(*) AS workers_back FROM pg_stat_activity WHERE backend_type = 'easymo maintenance' AND datname = 'easymo_worker_old';
