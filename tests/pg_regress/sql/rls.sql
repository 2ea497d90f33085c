-- Row level security: the matrix over every table that has a user_id.
--   anon sees nothing; authenticated sees only its own rows and writes nothing of anybody's;
--   service_role sees and writes everything.
\set VERBOSITY terse
-- NOTICEs name dates (months moved by ensure_partitions): keep them out of the expected output.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS easymo CASCADE;
CREATE EXTENSION easymo;

\set a '''00000000-0000-0000-0000-00000000000a'''
\set b '''00000000-0000-0000-0000-00000000000b'''

-- request_user_id(): request.jwt.claims->>'sub' when the claims are set, else the legacy
-- request.jwt.claim.sub, else NULL. The current claims win over a legacy setting: behind a
-- transaction pooler a stray session-level claim.sub must not make another client's transaction
-- act as that user (it did in 0.2.0).
SELECT request_user_id() IS NULL AS no_claims;
SET request.jwt.claim.sub = '00000000-0000-0000-0000-00000000000b';
SELECT request_user_id() = :b AS legacy_claim_sub_alone;
SET request.jwt.claims = '{"sub": "00000000-0000-0000-0000-00000000000a", "role": "authenticated"}';
SELECT request_user_id() = :a AS claims_win_over_legacy;
BEGIN;
SELECT set_config('request.jwt.claims', '{"role": "anon"}', true) IS NOT NULL AS anonymous_claims;
SELECT request_user_id() IS NULL AS claims_without_sub_are_null_not_legacy;
COMMIT;
SET request.jwt.claims = '';
SELECT request_user_id() = :b AS empty_claims_fall_back_to_legacy;
SET request.jwt.claim.sub = '';
SELECT request_user_id() IS NULL AS both_empty;
RESET request.jwt.claim.sub;
RESET request.jwt.claims;

-- One row for A and one for B in every owned table.
INSERT INTO whatsapp_sessions (phone_number, user_id) VALUES ('+250788000001', :a), ('+250788000002', :b);
INSERT INTO payment_methods (user_id, type, display_hint) VALUES (:a, 'card', '4242'), (:b, 'mobile_money', '0002');
INSERT INTO transactions (id, reference, user_id, type, amount)
VALUES ('10000000-0000-0000-0000-00000000000a', 'TX-A', :a, 'debit', 10),
       ('10000000-0000-0000-0000-00000000000b', 'TX-B', :b, 'credit', 20);
INSERT INTO transaction_events (transaction_id, transaction_created_at, user_id, event_type, new_status)
SELECT id, created_at, user_id, 'created', 'pending' FROM transactions;
INSERT INTO feature_flag_evaluations (flag_key, user_id, environment, result)
VALUES ('f', :a, 'production', true), ('f', :b, 'production', false);
INSERT INTO locations (user_id, location_type, latitude, longitude) VALUES (:a, 'home', -1.95, 30.06), (:b, 'work', -1.94, 30.1);
INSERT INTO analytics_events (event_name, user_id) VALUES ('opened', :a), ('opened', :b);
INSERT INTO wallet_accounts (id, user_id, currency, kind, min_balance)
VALUES ('20000000-0000-0000-0000-00000000000a', :a, 'RWF', 'user', 0),
       ('20000000-0000-0000-0000-00000000000b', :b, 'RWF', 'user', 0);
INSERT INTO wallet_entries (account_id, version, transfer_id, user_id, amount, balance_after)
SELECT id, 1, gen_random_uuid(), user_id, 1, 1 FROM wallet_accounts;
INSERT INTO wallet_hot_credits (account_id, id, transfer_id, user_id, amount)
SELECT id, gen_random_uuid(), gen_random_uuid(), user_id, 1 FROM wallet_accounts;
INSERT INTO notifications (id, user_id, type, title, body)
VALUES ('30000000-0000-0000-0000-00000000000a', :a, 't', 'T', 'B'),
       ('30000000-0000-0000-0000-00000000000b', :b, 't', 'T', 'B');
INSERT INTO notification_deliveries (notification_id, user_id, channel)
SELECT id, user_id, 'push' FROM notifications;
INSERT INTO notification_preferences (user_id, channel) VALUES (:a, 'push'), (:b, 'push');

-- A further row for B per table, as jsonb, for the write attempts.
CREATE TEMP TABLE fixture (tbl regclass, row_b jsonb);
INSERT INTO fixture VALUES
  ('whatsapp_sessions', jsonb_build_object('phone_number', '+250788000003', 'user_id', :b)),
  ('payment_methods', jsonb_build_object('user_id', :b, 'type', 'cash')),
  ('transactions', jsonb_build_object('reference', 'TX-B2', 'user_id', :b, 'type', 'fee', 'amount', 1)),
  ('transaction_events', (SELECT to_jsonb(e) - 'id' FROM transaction_events e WHERE user_id = :b)),
  ('feature_flag_evaluations', jsonb_build_object('flag_key', 'g', 'user_id', :b, 'environment', 'staging', 'result', true)),
  ('locations', jsonb_build_object('user_id', :b, 'location_type', 'pickup', 'latitude', 0, 'longitude', 0)),
  ('analytics_events', jsonb_build_object('event_name', 'tapped', 'user_id', :b)),
  ('wallet_accounts', jsonb_build_object('user_id', :b, 'currency', 'USD', 'kind', 'user', 'min_balance', 0)),
  ('wallet_entries', jsonb_build_object('account_id', '20000000-0000-0000-0000-00000000000b', 'version', 2,
                                        'transfer_id', gen_random_uuid(), 'user_id', :b, 'amount', 1, 'balance_after', 2)),
  ('wallet_hot_credits', jsonb_build_object('account_id', '20000000-0000-0000-0000-00000000000b', 'id', gen_random_uuid(),
                                            'transfer_id', gen_random_uuid(), 'user_id', :b, 'amount', 1)),
  ('notifications', jsonb_build_object('user_id', :b, 'type', 't', 'title', 'T2', 'body', 'B')),
  ('notification_deliveries', jsonb_build_object('notification_id', '30000000-0000-0000-0000-00000000000b', 'user_id', :b, 'channel', 'sms')),
  ('notification_preferences', jsonb_build_object('user_id', :b, 'channel', 'sms'));
GRANT SELECT ON fixture TO PUBLIC;

-- The matrix for the current role and claims; a is the caller, b someone else.
CREATE FUNCTION pg_temp.rls_matrix(a uuid, b uuid)
RETURNS TABLE (tbl text, read_own text, read_others text, insert_others text,
               update_others text, delete_others text, update_own text)
LANGUAGE sql AS $$
    SELECT f.tbl::text,
           regress.outcome(format('SELECT 1 FROM %s WHERE user_id = %L', f.tbl, a), false),
           regress.outcome(format('SELECT 1 FROM %s WHERE user_id IS DISTINCT FROM %L', f.tbl, a), false),
           regress.outcome(format('INSERT INTO %s (%s) SELECT %s FROM jsonb_populate_record(NULL::%s, %L)',
                                  f.tbl, cols, cols, f.tbl, f.row_b), false),
           regress.outcome(format('UPDATE %s SET user_id = user_id WHERE user_id = %L', f.tbl, b), false),
           regress.outcome(format('DELETE FROM %s WHERE user_id = %L', f.tbl, b), false),
           regress.outcome(format('UPDATE %s SET user_id = %L WHERE user_id = %L', f.tbl, b, a), false)
      FROM fixture f,
           LATERAL (SELECT string_agg(quote_ident(k), ', ') AS cols FROM jsonb_object_keys(f.row_b) k) c
     ORDER BY 1
$$;

-- The contract's owned tables: exactly those with a user_id column.
SELECT c.relname
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
 WHERE a.attname = 'user_id' AND c.relnamespace = 'public'::regnamespace
   AND c.relkind IN ('r', 'p') AND NOT c.relispartition
 ORDER BY 1;

-- anon: no privilege on any table.
SET ROLE anon;
SELECT * FROM pg_temp.rls_matrix(:a, :b);
RESET ROLE;
-- Even where a default privilege grants anon SELECT (as a Supabase database does), RLS shows it
-- no row: there is no policy for anon.
GRANT SELECT ON whatsapp_sessions, payment_methods, transactions, transaction_events,
                feature_flag_evaluations, locations, analytics_events TO anon;
SET ROLE anon;
SELECT tbl, read_own, read_others FROM pg_temp.rls_matrix(:a, :b);
RESET ROLE;
REVOKE SELECT ON whatsapp_sessions, payment_methods, transactions, transaction_events,
                 feature_flag_evaluations, locations, analytics_events FROM anon;

-- authenticated as A: reads its own row only, writes nothing.
SET ROLE authenticated;
SET request.jwt.claims = '{"sub": "00000000-0000-0000-0000-00000000000a"}';
SELECT * FROM pg_temp.rls_matrix(:a, :b);
-- ... and as B, the mirror image.
SET request.jwt.claims = '{"sub": "00000000-0000-0000-0000-00000000000b"}';
SELECT tbl, read_own, read_others FROM pg_temp.rls_matrix(:b, :a);
-- Without a user id: nothing.
RESET request.jwt.claims;
SELECT tbl, read_own, read_others FROM pg_temp.rls_matrix(:a, :b);
-- The per-user view shows the caller's own row only.
SET request.jwt.claims = '{"sub": "00000000-0000-0000-0000-00000000000a"}';
SELECT user_id = :a AS own, transactions FROM user_recent_transactions;
RESET ROLE;
RESET request.jwt.claims;

-- service_role: everything. (Deleting B's transaction is refused by its audit trail, a foreign
-- key, not by RLS: 23503.)
SET ROLE service_role;
SELECT * FROM pg_temp.rls_matrix(:a, :b);
SELECT count(*) AS all_rows_via_view FROM user_recent_transactions;
RESET ROLE;

-- Tables without an owner are closed to authenticated altogether; so are partitions, which
-- would otherwise be a way around their parent's policies.
SELECT c.relname, c.relispartition AS partition
  FROM pg_class c
 WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v')
   AND has_table_privilege('authenticated', c.oid, 'SELECT')
 ORDER BY 1;
SET ROLE authenticated;
SET request.jwt.claims = '{"sub": "00000000-0000-0000-0000-00000000000a"}';
SELECT regress.outcome('SELECT 1 FROM transactions_default', false) AS read_default_partition;
SELECT regress.outcome('SELECT 1 FROM service_registry', false) AS read_service_registry;
RESET ROLE;
RESET request.jwt.claims;
