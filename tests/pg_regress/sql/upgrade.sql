-- Versioned upgrades: every earlier release (its install script kept in sql/releases), with rows
-- in every table, updated by ALTER EXTENSION easymo UPDATE, must have exactly the objects of a
-- fresh install of the current version (tests/ops/catalog.sql compares members, columns,
-- constraints, indexes, triggers, policies, functions, privileges, views, comments and pg_dump
-- registrations), and keep its rows (tests/ops/checksums.sql). Paths are relative to the
-- repository root, where scripts/test.sh runs pg_regress.
\set VERBOSITY terse
SET client_min_messages = warning;
\set regress_db :DBNAME
SELECT array_agg(version ORDER BY version) AS installable FROM pg_available_extension_versions WHERE name = 'easymo';

-- The fresh install's fingerprint.
DROP DATABASE IF EXISTS easymo_upgrade_fresh;
CREATE DATABASE easymo_upgrade_fresh;
\c easymo_upgrade_fresh
SET client_min_messages = warning;
CREATE EXTENSION easymo;
\set ECHO none
\i tests/ops/catalog.sql
SELECT string_agg(l, E'\n' ORDER BY l) AS fresh FROM pg_temp.catalog_fingerprint() l \gset
\set ECHO all
SELECT count(*) > 500 AS fingerprint_lines FROM regexp_split_to_table(:'fresh', E'\n');
\c :regress_db
SET client_min_messages = warning;
DROP DATABASE easymo_upgrade_fresh;

-- From 0.1.0 (through 0.2.0) and from 0.2.0.
\set from_version 0.1.0
\i tests/ops/upgrade_from.sql
\set from_version 0.2.0
\i tests/ops/upgrade_from.sql
