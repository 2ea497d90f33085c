-- The tour scripts/run.sh shows: what one CREATE EXTENSION installed, a view, RLS in action.
\set QUIET on
\pset footer off
\echo
\echo '-- The extension and what it installed:'
SELECT extname, extversion, extnamespace::regnamespace AS schema FROM pg_extension WHERE extname = 'easymo';
SELECT count(*) FILTER (WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition) AS tables,
       count(*) FILTER (WHERE c.relispartition) AS default_partitions,
       count(*) FILTER (WHERE c.relkind = 'v') AS views
  FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'easymo') AND d.deptype = 'e';

\echo '-- The first maintenance run makes this month''s partitions and the next three (pg_cron, or'
\echo '-- the maintenance worker when preloaded, runs it from then on):'
SELECT run_maintenance() -> 'partitions_created' AS partitions_created;

\echo '-- Two users with a few transactions (written as service_role, the backend''s role):'
SET ROLE service_role;
INSERT INTO transactions (reference, user_id, type, amount, currency, status) VALUES
  ('TX-TOUR-1', '00000000-0000-0000-0000-00000000000a', 'payment', 1500,  'RWF', 'completed'),
  ('TX-TOUR-2', '00000000-0000-0000-0000-00000000000a', 'credit',  25000, 'RWF', 'completed'),
  ('TX-TOUR-3', '00000000-0000-0000-0000-00000000000b', 'payment', 800,   'RWF', 'pending');
\echo '-- The transaction_summary view:'
SELECT status, type, currency, transactions, total_amount FROM transaction_summary ORDER BY status, type;
RESET ROLE;

\echo '-- RLS in action: user A, as PostgREST would call with A''s JWT, sees only A''s rows:'
SET ROLE authenticated;
SET request.jwt.claims = '{"sub": "00000000-0000-0000-0000-00000000000a", "role": "authenticated"}';
SELECT request_user_id() AS me, reference, amount, status FROM transactions ORDER BY reference;
\echo '-- ... and anon sees nothing at all (the error is the point):'
RESET request.jwt.claims;
SET ROLE anon;
\set ON_ERROR_STOP off
SELECT count(*) FROM transactions;
\set ON_ERROR_STOP on
RESET ROLE;

\echo '-- Monthly partitions (UTC) of transactions: the data''s, not the extension''s, so a plain pg_dump keeps them:'
SELECT c.relname AS partition, pg_get_expr(c.relpartbound, c.oid) AS bounds
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
 WHERE i.inhparent = 'transactions'::regclass ORDER BY c.relname;

\echo '-- One call does the periodic work, again (nothing left to do):'
SELECT jsonb_pretty(run_maintenance() - 'duration_ms') AS run_maintenance;
