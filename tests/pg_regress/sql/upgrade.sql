-- Versioned upgrades: the previous release (0.1.0, its install script kept in sql/releases),
-- with rows in every table, updated by ALTER EXTENSION easymo UPDATE, must have exactly the
-- objects of a fresh install of the current version (tests/ops/catalog.sql compares members,
-- columns, constraints, indexes, triggers, policies, functions, privileges, views, comments and
-- pg_dump registrations), and keep its rows (tests/ops/checksums.sql). Paths are relative to the
-- repository root, where scripts/test.sh runs pg_regress.
\set VERBOSITY terse
SET client_min_messages = warning;
\set regress_db :DBNAME
DROP DATABASE IF EXISTS easymo_upgrade_old;
DROP DATABASE IF EXISTS easymo_upgrade_fresh;
CREATE DATABASE easymo_upgrade_old;
CREATE DATABASE easymo_upgrade_fresh;
SELECT array_agg(version ORDER BY version) AS installable FROM pg_available_extension_versions WHERE name = 'easymo';

\c easymo_upgrade_old
SET client_min_messages = warning;
CREATE EXTENSION easymo VERSION '0.1.0';
-- (The shared scripts run without echo.)
\set ECHO none
\o /dev/null
\i tests/ops/fill.sql
\o
\i tests/ops/checksums.sql
\i tests/ops/catalog.sql
\set ECHO all
SELECT string_agg(format('%s %s %s', name, n, md5), E'\n' ORDER BY name) AS data_before FROM pg_temp.table_checksums() \gset
ALTER EXTENSION easymo UPDATE;
SELECT extversion AS updated_to FROM pg_extension WHERE extname = 'easymo';
SELECT string_agg(format('%s %s %s', name, n, md5), E'\n' ORDER BY name) = :'data_before' AS rows_intact,
       count(*) AS tables
  FROM pg_temp.table_checksums();
SELECT string_agg(l, E'\n' ORDER BY l) AS upgraded FROM pg_temp.catalog_fingerprint() l \gset
-- What the new version added works on the upgraded data.
SELECT run_maintenance() -> 'errors' AS maintenance_errors;

\c easymo_upgrade_fresh
SET client_min_messages = warning;
CREATE EXTENSION easymo;
\set ECHO none
\i tests/ops/catalog.sql
\set ECHO all
SELECT count(*) > 500 AS fingerprint_lines FROM pg_temp.catalog_fingerprint();
-- The difference between the two, both ways: none.
(SELECT 'only after upgrade: ' || l FROM regexp_split_to_table(:'upgraded', E'\n') l
 EXCEPT SELECT 'only after upgrade: ' || l FROM pg_temp.catalog_fingerprint() l)
UNION ALL
(SELECT 'only in a fresh install: ' || l FROM pg_temp.catalog_fingerprint() l
 EXCEPT SELECT 'only in a fresh install: ' || l FROM regexp_split_to_table(:'upgraded', E'\n') l)
ORDER BY 1;

\c :regress_db
SET client_min_messages = warning;
DROP DATABASE easymo_upgrade_old;
DROP DATABASE easymo_upgrade_fresh;
