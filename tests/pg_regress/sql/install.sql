-- Installation: one CREATE EXTENSION installs the whole schema; DROP EXTENSION leaves nothing.
\set VERBOSITY terse
-- NOTICEs name dates (months moved by ensure_partitions): keep them out of the expected output.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS easymo CASCADE;

-- Everything in the public schema before the extension exists.
CREATE TEMP VIEW public_objects AS
SELECT 'relation' AS kind, relname::text AS name FROM pg_class WHERE relnamespace = 'public'::regnamespace
UNION ALL SELECT 'function', proname::text FROM pg_proc WHERE pronamespace = 'public'::regnamespace
UNION ALL SELECT 'type', typname::text FROM pg_type WHERE typnamespace = 'public'::regnamespace;
CREATE TEMP TABLE before_install AS SELECT * FROM public_objects;

CREATE EXTENSION easymo;

-- The extension's members, for the checks below.
CREATE TEMP VIEW members AS
SELECT d.classid, d.objid
  FROM pg_depend d
 WHERE d.refclassid = 'pg_extension'::regclass
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'easymo')
   AND d.deptype = 'e';

-- Every table and view of the contract, with RLS on every table, a comment on each, and every
-- view security_invoker.
SELECT c.relname,
       CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned' WHEN 'v' THEN 'view' END AS kind,
       c.relrowsecurity AS rls,
       obj_description(c.oid, 'pg_class') IS NOT NULL AS commented,
       CASE WHEN c.relkind = 'v' THEN 'security_invoker=true' = ANY (c.reloptions) END AS invoker
  FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
 WHERE c.relkind IN ('r', 'p', 'v') AND NOT c.relispartition
 ORDER BY kind, c.relname;

-- Partitions: CREATE EXTENSION makes only the DEFAULT partition of each partitioned table, a
-- member of the extension, commented, locked down, registered for pg_dump, and carrying the
-- primary key and indexes (the parents have none). Month partitions are the data's: the first
-- ensure_partitions() makes them, outside the extension (sql/operations.sql says why).
SELECT p.relname AS parent,
       count(*) FILTER (WHERE c.relname = p.relname || '_default') AS default_partitions,
       count(*) FILTER (WHERE c.relname IN (
           SELECT p.relname || '_p' || to_char(date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => k), 'YYYY_MM')
             FROM generate_series(0, 3) k)) AS months_0_to_3,
       count(*) AS partitions,
       bool_and(c.oid IN (SELECT objid FROM members)) AS all_members,
       bool_and(obj_description(c.oid, 'pg_class') IS NOT NULL) AS all_commented,
       bool_and(c.relrowsecurity) AS all_rls,
       bool_and(c.oid IN (SELECT unnest(extconfig) FROM pg_extension WHERE extname = 'easymo')) AS all_dumped
  FROM pg_class p
  JOIN pg_inherits i ON i.inhparent = p.oid
  JOIN pg_class c ON c.oid = i.inhrelid
 WHERE p.relkind = 'p' AND p.relnamespace = 'public'::regnamespace
 GROUP BY p.relname
 ORDER BY p.relname;
SELECT p.relname AS parent,
       (SELECT count(*) FROM pg_index x WHERE x.indrelid = p.oid) AS parent_indexes,
       (SELECT count(*) FROM pg_index x WHERE x.indrelid = (p.relname || '_default')::regclass) AS default_indexes,
       (SELECT count(*) FROM pg_index x WHERE x.indrelid = (p.relname || '_default')::regclass AND x.indisprimary) AS default_primary_key
  FROM pg_class p
 WHERE p.relkind = 'p' AND p.relnamespace = 'public'::regnamespace
 ORDER BY p.relname;
SELECT ensure_partitions(3) AS first_months;
SELECT p.relname AS parent, count(*) AS months,
       bool_or(c.oid IN (SELECT objid FROM members)) AS any_member,
       bool_or(c.oid IN (SELECT unnest(extconfig) FROM pg_extension WHERE extname = 'easymo')) AS any_registered,
       bool_and((SELECT count(*) FROM pg_index x WHERE x.indrelid = c.oid)
                = (SELECT count(*) FROM pg_index x WHERE x.indrelid = (p.relname || '_default')::regclass)) AS indexed_like_default
  FROM pg_class p
  JOIN pg_inherits i ON i.inhparent = p.oid
  JOIN pg_class c ON c.oid = i.inhrelid
 WHERE p.relkind = 'p' AND p.relnamespace = 'public'::regnamespace AND c.relname ~ '_p[0-9]{4}_[0-9]{2}$'
 GROUP BY p.relname
 ORDER BY p.relname;

-- What Supabase's linter (splinter) checks and easymo answers for itself: every table with RLS
-- on has a policy (partitions: one that lets nothing through, they are read through their
-- parent), and the only SECURITY DEFINER function authenticated may execute is
-- get_cached_route (it returns a route only to a caller who knows both its ends; the routes
-- table itself is closed to authenticated).
SELECT c.relname AS rls_without_policy
  FROM pg_class c
 WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') AND c.relrowsecurity
   AND NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid);
SELECT p.oid::regprocedure AS definer_functions_for_authenticated
  FROM pg_proc p
  JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'easymo')
   AND p.prosecdef AND has_function_privilege('authenticated', p.oid, 'EXECUTE');

-- pg_dump keeps the rows of every plain table (partitioned parents hold none of their own).
SELECT c.relname AS not_registered_for_pg_dump
  FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
 WHERE c.relkind = 'r'
   AND NOT c.oid IN (SELECT unnest(extconfig) FROM pg_extension WHERE extname = 'easymo');

-- Every function is commented.
SELECT p.oid::regprocedure AS uncommented_function
  FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
 WHERE obj_description(p.oid, 'pg_proc') IS NULL;

-- Nothing for anon and PUBLIC: no table, view or function.
SELECT c.relname AS anon_can_read
  FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
 WHERE c.relkind IN ('r', 'p', 'v')
   AND has_table_privilege('anon', c.oid, 'SELECT, INSERT, UPDATE, DELETE');
SELECT p.oid::regprocedure AS anon_can_execute
  FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
 WHERE has_function_privilege('anon', p.oid, 'EXECUTE');
-- authenticated may call only the end-user helpers (and the argument checks the plpgsql ones
-- use); service_role every helper but the internal
-- (underscore) ones.
SELECT p.proname AS authenticated_can_execute
  FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
 WHERE has_function_privilege('authenticated', p.oid, 'EXECUTE')
 ORDER BY 1;
SELECT p.proname,
       has_function_privilege('service_role', p.oid, 'EXECUTE') AS service_role_can_execute
  FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
 ORDER BY 1;

-- The roles exist and cannot log in.
SELECT rolname, rolcanlogin FROM pg_roles
 WHERE rolname IN ('anon', 'authenticated', 'service_role') ORDER BY 1;

-- DROP EXTENSION ... CASCADE removes every object, partitions included.
SELECT count(*) > 0 AS had_objects FROM (SELECT * FROM public_objects EXCEPT SELECT * FROM before_install) x;
DROP EXTENSION easymo CASCADE;
SELECT * FROM public_objects EXCEPT SELECT * FROM before_install;
SELECT count(*) AS leftover_partitions FROM pg_class WHERE relname ~ '_(p[0-9]{4}_[0-9]{2}|default)$';

-- ... and it can be created again.
CREATE EXTENSION easymo;
SELECT count(*) AS member_tables
  FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition;
DROP EXTENSION easymo CASCADE;

-- Into another schema: every object lands there and nothing in public, and the internal
-- references (@extschema@) resolve there, also with the schema off the search path.
CREATE SCHEMA api;
CREATE EXTENSION easymo SCHEMA api;
SELECT * FROM public_objects EXCEPT SELECT * FROM before_install;
SELECT n.nspname, count(*) AS relations
  FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 GROUP BY n.nspname;
SET search_path = pg_catalog;
INSERT INTO api.system_metrics (service_name, metric_type, metric_name, value, created_at)
VALUES ('svc', 'cpu', 'load', 1, now() - interval '2 years');
SELECT api.ensure_partitions(3) AS created;
SELECT count(*) AS rows_left_in_default FROM api.system_metrics_default;
SELECT tableoid::regclass::text ~ '^api\.system_metrics_p[0-9]{4}_[0-9]{2}$' AS moved_to_its_month
  FROM api.system_metrics;
-- The RLS policies call api.request_user_id().
GRANT USAGE ON SCHEMA api TO authenticated;
INSERT INTO api.locations (user_id, location_type, latitude, longitude)
VALUES ('00000000-0000-0000-0000-00000000000a', 'home', 1, 2),
       ('00000000-0000-0000-0000-00000000000b', 'home', 3, 4);
SET ROLE authenticated;
SET request.jwt.claims = '{"sub": "00000000-0000-0000-0000-00000000000a"}';
SELECT user_id, latitude FROM api.locations;
RESET ROLE;
RESET request.jwt.claims;
RESET search_path;
DROP EXTENSION easymo CASCADE;
REVOKE USAGE ON SCHEMA api FROM authenticated;
DROP SCHEMA api;

-- A schema whose name must be quoted.
CREATE SCHEMA "Easy Mo";
CREATE EXTENSION easymo SCHEMA "Easy Mo";
INSERT INTO "Easy Mo".transactions (reference, user_id, type, amount, created_at)
VALUES ('R-1', '00000000-0000-0000-0000-00000000000a', 'debit', 5, now() + interval '2 years');
SELECT "Easy Mo".ensure_partitions(3) AS created;
SELECT count(*) AS rows_left_in_default FROM "Easy Mo".transactions_default;
DROP EXTENSION easymo CASCADE;
DROP SCHEMA "Easy Mo";
SELECT * FROM public_objects EXCEPT SELECT * FROM before_install;

-- Only in a UTF8 database: in SQL_ASCII or LATIN1 a non-ASCII argument could not be read by the
-- native functions (0.2.0 installed there and answered XX000), so CREATE EXTENSION refuses,
-- saying why (0A000), and leaves nothing behind.
\set regress_db :DBNAME
CREATE DATABASE easymo_sql_ascii ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;
CREATE DATABASE easymo_latin1 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;
\c easymo_sql_ascii
-- (The message and its hint, not the context: from 18 on it names the install script and the
-- line within it, which moves with every change to the script.)
\set VERBOSITY default
\set SHOW_CONTEXT never
CREATE EXTENSION easymo;
\set SHOW_CONTEXT errors
\set VERBOSITY terse
SELECT count(*) AS installed FROM pg_extension WHERE extname = 'easymo';
\c easymo_latin1
CREATE EXTENSION easymo;
-- A 0.2.0 installed there before is refused the update the same way, and stays as it was.
CREATE EXTENSION easymo VERSION '0.2.0';
ALTER EXTENSION easymo UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'easymo';
\c :regress_db
DROP DATABASE easymo_sql_ascii;
DROP DATABASE easymo_latin1;
