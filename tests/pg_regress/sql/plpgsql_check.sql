-- Every plpgsql function of easymo passes plpgsql_check (Debian's postgresql-15-plpgsql-check),
-- with its extra warnings on: no error, no unused variable or parameter, no unreachable code, no
-- implicit cast that hides a mistake. (0.2.0's generated claim functions had unused variables
-- and a dead CASE WHEN false, which this found.) A trigger function is checked against a table
-- that uses it.
\set VERBOSITY terse
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS easymo CASCADE;
CREATE EXTENSION easymo;
CREATE EXTENSION IF NOT EXISTS plpgsql_check;

CREATE TEMP VIEW easymo_plpgsql AS
SELECT p.oid::regprocedure AS fn,
       coalesce((SELECT min(t.tgrelid::regclass::text) FROM pg_trigger t WHERE t.tgfoid = p.oid), '-') AS on_table
  FROM pg_proc p
  JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_language l ON l.oid = p.prolang
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'easymo')
   AND l.lanname = 'plpgsql';
SELECT count(*) > 20 AS functions_checked FROM easymo_plpgsql;
SELECT f.fn, c.lineno, c.level, c.message
  FROM easymo_plpgsql f
 CROSS JOIN LATERAL plpgsql_check_function_tb(f.fn, CASE WHEN f.on_table = '-' THEN 0 ELSE f.on_table::regclass END,
                                               fatal_errors => false, other_warnings => true, extra_warnings => true) c
 ORDER BY 1, 2, 4;

DROP EXTENSION plpgsql_check;
