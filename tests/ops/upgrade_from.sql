-- Included by tests/pg_regress/sql/upgrade.sql once per released version (:from_version): the
-- release installed from its kept script, filled with rows in every table, updated by ALTER
-- EXTENSION easymo UPDATE, must keep its rows and have exactly the objects of a fresh install
-- (whose fingerprint upgrade.sql saved in :fresh).
DROP DATABASE IF EXISTS easymo_upgrade_old;
CREATE DATABASE easymo_upgrade_old;
\c easymo_upgrade_old
SET client_min_messages = warning;
CREATE EXTENSION easymo VERSION :'from_version';
\set ECHO none
\o /dev/null
\i tests/ops/fill.sql
\o
\i tests/ops/checksums.sql
\i tests/ops/catalog.sql
SELECT pg_temp.table_columns() AS columns_before \gset
SELECT string_agg(format('%s %s %s', name, n, md5), E'\n' ORDER BY name) AS data_before FROM pg_temp.table_checksums(:'columns_before') \gset
\set ECHO all
ALTER EXTENSION easymo UPDATE;
SELECT :'from_version' AS updated_from, extversion AS updated_to FROM pg_extension WHERE extname = 'easymo';
-- Every row of the old tables is there, with its old columns unchanged.
SELECT string_agg(format('%s %s %s', name, n, md5), E'\n' ORDER BY name) = :'data_before' AS rows_intact,
       count(*) AS tables
  FROM pg_temp.table_checksums(:'columns_before');
-- The difference from a fresh install, both ways: none.
(SELECT 'only after upgrade: ' || l FROM pg_temp.catalog_fingerprint() l
 EXCEPT SELECT 'only after upgrade: ' || l FROM regexp_split_to_table(:'fresh', E'\n') l)
UNION ALL
(SELECT 'only in a fresh install: ' || l FROM regexp_split_to_table(:'fresh', E'\n') l
 EXCEPT SELECT 'only in a fresh install: ' || l FROM pg_temp.catalog_fingerprint() l)
ORDER BY 1;
-- What the new version added works on the upgraded data.
SELECT run_maintenance() -> 'errors' AS maintenance_errors;
\c :regress_db
SET client_min_messages = warning;
DROP DATABASE easymo_upgrade_old;
