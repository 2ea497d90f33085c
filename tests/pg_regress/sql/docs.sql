-- The repository describes itself: every public function of the extension is in the reference
-- (docs/reference/*.md, as `name(...)`), every table and view in docs/installation.md, every
-- setting in docs/operations.md; and every function, internal ones included, carries a COMMENT
-- (install.sql checks that). Paths are relative to the repository root, where scripts/test.sh
-- runs pg_regress.
\set VERBOSITY terse
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS easymo CASCADE;
CREATE EXTENSION easymo;
CREATE TEMP TABLE doc (file text, line text);
-- (csv with a delimiter and quote that no document holds: each line read as it is)
\copy doc (line) FROM PROGRAM 'cat docs/reference/*.md' WITH (FORMAT csv, DELIMITER E'\x01', QUOTE E'\x02')
UPDATE doc SET file = 'reference' WHERE file IS NULL;
\copy doc (line) FROM PROGRAM 'cat docs/installation.md' WITH (FORMAT csv, DELIMITER E'\x01', QUOTE E'\x02')
UPDATE doc SET file = 'installation' WHERE file IS NULL;
\copy doc (line) FROM PROGRAM 'cat docs/operations.md' WITH (FORMAT csv, DELIMITER E'\x01', QUOTE E'\x02')
UPDATE doc SET file = 'operations' WHERE file IS NULL;
SELECT file, count(*) > 20 AS read FROM doc GROUP BY file ORDER BY file;

CREATE TEMP VIEW members AS
SELECT d.classid, d.objid FROM pg_depend d
 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'easymo');

SELECT p.proname AS function_not_in_the_reference
  FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
 WHERE p.proname NOT LIKE '\_%' AND p.prorettype <> 'trigger'::regtype
   AND NOT EXISTS (SELECT 1 FROM doc WHERE file = 'reference' AND line LIKE '%`' || p.proname || '(%')
 ORDER BY 1;
SELECT count(*) > 40 AS functions_documented
  FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
 WHERE p.proname NOT LIKE '\_%';

SELECT c.relname AS relation_not_in_installation_md
  FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
 WHERE c.relkind IN ('r', 'p', 'v', 'm') AND NOT c.relispartition
   AND NOT EXISTS (SELECT 1 FROM doc WHERE file = 'installation' AND line LIKE '%`' || c.relname || '`%')
 ORDER BY 1;

SELECT name AS setting_not_in_operations_md
  FROM pg_settings
 WHERE name LIKE 'easymo.%'
   AND NOT EXISTS (SELECT 1 FROM doc WHERE file = 'operations' AND line LIKE '%`' || name || '`%')
 ORDER BY 1;
-- Every SQLSTATE of the contract's own (wallets EW, queues EQ) is in the reference.
SELECT value AS sqlstate_not_documented FROM _contract_values()
 WHERE list = 'refusal_sqlstates'
   AND NOT EXISTS (SELECT 1 FROM doc WHERE file = 'reference' AND line LIKE '%| `' || value || '` |%')
 ORDER BY 1;
SELECT count(*) AS own_sqlstates FROM _contract_values() WHERE list = 'refusal_sqlstates';
