-- Money: create_transaction (idempotent, validated), the status state machine, payment methods.
\set VERBOSITY terse
-- NOTICEs name dates (months moved by ensure_partitions): keep them out of the expected output.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS easymo CASCADE;
CREATE EXTENSION easymo;
-- This month's and the next three's partitions, as run_maintenance() makes them.
SELECT ensure_partitions(3) AS month_partitions;

\set a '''00000000-0000-0000-0000-00000000000a'''
\set b '''00000000-0000-0000-0000-00000000000b'''

-- A new transaction: pending, a TX-YYMMDD-NNNNNNNN reference (UTC date, base-32 sequence
-- number), the caller's metadata and correlation id, and one `created` event.
SELECT create_transaction(:a, 'payment', 1500, 'RWF', NULL, '{"order": 17}', 'corr-1') AS t1 \gset
SELECT reference ~ ('^TX-' || to_char(now() AT TIME ZONE 'UTC', 'YYMMDD') || '-[0-9A-HJKMNP-TV-Z]{8}$') AS reference_format,
       user_id = :a AS owner, type, amount, currency, status, metadata, correlation_id,
       created_at = updated_at AS fresh
  FROM transactions WHERE id = :'t1';
SELECT event_type, old_status, new_status, changed_by_role, changed_by_user IS NULL AS no_jwt_user
  FROM transaction_events WHERE transaction_id = :'t1';
-- Ids are time-ordered UUIDs, version 7: new rows go to the right edge of the primary keys.
SELECT substr(:'t1', 15, 1) AS transaction_id_version,
       (SELECT substr(id::text, 15, 1) FROM transaction_events WHERE transaction_id = :'t1') AS event_id_version;
-- The currency defaults to RWF; references are distinct.
SELECT create_transaction(:a, 'fee', 0.0001) IS NOT NULL AS created;
SELECT count(DISTINCT reference) = count(*) AS references_unique, min(currency) AS currency FROM transactions;

-- Idempotency: the same key and the same user, type, amount (by value: 10.5 = 10.50) and
-- currency return the first id and write nothing; any difference is 23505, naming it.
SELECT create_transaction(:a, 'payment', 10.50, 'RWF', 'order-42') AS k1 \gset
CREATE TEMP VIEW counts AS
SELECT (SELECT count(*) FROM transactions) AS transactions,
       (SELECT count(*) FROM transaction_events) AS events,
       (SELECT count(*) FROM transaction_idempotency_keys) AS keys,
       (SELECT last_value FROM transaction_reference_seq) AS references_issued;
SELECT * FROM counts;
SELECT create_transaction(:a, 'payment', 10.5, 'RWF', 'order-42') = :'k1' AS same_id,
       create_transaction(:a, 'payment', 10.5000, 'RWF', 'order-42', '{"retry": 3}') = :'k1' AS metadata_may_differ;
SELECT * FROM counts;
SELECT regress.error($$SELECT create_transaction('00000000-0000-0000-0000-00000000000a', 'payment', 11, 'RWF', 'order-42')$$);
SELECT regress.error($$SELECT create_transaction('00000000-0000-0000-0000-00000000000b', 'refund', 10.5, 'USD', 'order-42')$$);
SELECT regress.error($$SELECT create_transaction('00000000-0000-0000-0000-00000000000a', 'debit', 10.5, 'RWF', 'order-42')$$);
SELECT * FROM counts;
-- A read-only transaction (PostgREST runs STABLE calls read-only) replays a key; a new one, keyed
-- or not, is 25006 naming the function.
BEGIN READ ONLY;
SELECT create_transaction(:a, 'payment', 10.5, 'RWF', 'order-42') = :'k1' AS replayed_read_only;
SELECT regress.error($$SELECT create_transaction('00000000-0000-0000-0000-00000000000a', 'payment', 1, 'RWF', 'read-only')$$) AS new_key,
       regress.error($$SELECT create_transaction('00000000-0000-0000-0000-00000000000a', 'payment', 1)$$) AS no_key;
COMMIT;
-- A replay answers only a role that could have made the call: one granted EXECUTE alone gets
-- 42501, as for a new key, not the first use's id; granted INSERT on the keys, it gets the id
-- (and, revoked again, no longer).
CREATE ROLE regress_execute_only NOLOGIN;
GRANT EXECUTE ON FUNCTION create_transaction TO regress_execute_only;
SET ROLE regress_execute_only;
SELECT regress.error($$SELECT create_transaction('00000000-0000-0000-0000-00000000000a', 'payment', 10.5, 'RWF', 'order-42')$$) AS replay,
       regress.error($$SELECT create_transaction('00000000-0000-0000-0000-00000000000a', 'payment', 1, 'RWF', 'execute-only')$$) AS new_key;
RESET ROLE;
GRANT INSERT ON transaction_idempotency_keys TO regress_execute_only;
SET ROLE regress_execute_only;
SELECT create_transaction(:a, 'payment', 10.5, 'RWF', 'order-42') = :'k1' AS replayed_with_insert;
RESET ROLE;
REVOKE INSERT ON transaction_idempotency_keys FROM regress_execute_only;
SET ROLE regress_execute_only;
SELECT regress.error($$SELECT create_transaction('00000000-0000-0000-0000-00000000000a', 'payment', 10.5, 'RWF', 'order-42')$$) AS replay_revoked;
RESET ROLE;
-- Privileges through a role membership count, and its end is seen by the same session.
GRANT service_role TO regress_execute_only;
SET ROLE regress_execute_only;
SELECT create_transaction(:a, 'payment', 10.5, 'RWF', 'order-42') = :'k1' AS replayed_as_member;
RESET ROLE;
REVOKE service_role FROM regress_execute_only;
SET ROLE regress_execute_only;
SELECT regress.error($$SELECT create_transaction('00000000-0000-0000-0000-00000000000a', 'payment', 10.5, 'RWF', 'order-42')$$) AS replay_no_longer_member;
RESET ROLE;
REVOKE ALL ON FUNCTION create_transaction FROM regress_execute_only;
DROP ROLE regress_execute_only;
SELECT * FROM counts;

-- A key first used in one month replays the same id from the next month's partition: the key
-- table is global. (The first use is written as it would have been a month ago.)
INSERT INTO transactions (id, reference, user_id, type, amount, currency, idempotency_key, created_at)
VALUES ('20000000-0000-0000-0000-000000000001', 'TX-OLD-1', :a, 'transfer', 99, 'KES', 'last-month',
        now() - interval '1 month');
INSERT INTO transaction_idempotency_keys (idempotency_key, transaction_id, transaction_created_at, user_id, type, amount, currency)
SELECT idempotency_key, id, created_at, user_id, type, amount, currency FROM transactions WHERE reference = 'TX-OLD-1';
SELECT tableoid::regclass::text <> (SELECT tableoid::regclass::text FROM transactions WHERE id = :'t1') AS in_another_partition
  FROM transactions WHERE reference = 'TX-OLD-1';
SELECT * FROM counts;
SELECT create_transaction(:a, 'transfer', 99, 'KES', 'last-month') AS replayed_id;
SELECT regress.error($$SELECT create_transaction('00000000-0000-0000-0000-00000000000a', 'transfer', 98, 'KES', 'last-month')$$);
SELECT * FROM counts;

-- Bad input: each refused with its SQLSTATE and nothing written.
SELECT regress.outcome($$SELECT create_transaction(NULL, 'payment', 1)$$) AS null_user,
       regress.outcome($$SELECT create_transaction('00000000-0000-0000-0000-00000000000a', NULL, 1)$$) AS null_type,
       regress.outcome($$SELECT create_transaction('00000000-0000-0000-0000-00000000000a', 'payment', NULL)$$) AS null_amount,
       regress.outcome($$SELECT create_transaction('00000000-0000-0000-0000-00000000000a', 'payment', 1, NULL)$$) AS null_currency;
SELECT create_transaction(:a, 'gift', 1);
SELECT create_transaction(:a, 'Payment', 1);
SELECT create_transaction(:a, 'payment', 0);
SELECT create_transaction(:a, 'payment', -0.01);
SELECT create_transaction(:a, 'payment', 1.00001);
SELECT create_transaction(:a, 'payment', 1000000000000000.0001);
SELECT create_transaction(:a, 'payment', 'NaN');
SELECT create_transaction(:a, 'payment', 'Infinity');
SELECT create_transaction(:a, 'payment', '-Infinity');
SELECT create_transaction(:a, 'payment', 1, 'usd');
SELECT create_transaction(:a, 'payment', 1, 'ZZZ');
SELECT create_transaction(:a, 'payment', 1, 'US');
SELECT create_transaction(:a, 'payment', 1, 'RWF', '');
SELECT create_transaction(:a, 'payment', 1, 'RWF', repeat('k', 256));
SELECT create_transaction(:a, 'payment', 1, 'RWF', NULL, '["not", "an", "object"]');
SELECT create_transaction(:a, 'payment', 1, 'RWF', NULL, '{}', repeat('c', 129));
SELECT * FROM counts;
-- The edges are accepted.
SELECT create_transaction(:a, 'commission', 1000000000000000, 'USD', repeat('k', 255), '{}', repeat('c', 128)) IS NOT NULL AS edges_ok;

-- The state machine: every (from, to) pair. A fresh transaction is driven to `from` along
-- allowed steps, then asked to go to `to`: t (changed), f (already there) or the SQLSTATE.
CREATE FUNCTION pg_temp.transition(p_from text, p_to text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    id uuid := create_transaction('00000000-0000-0000-0000-00000000000c', 'payment', 1);
    step text;
BEGIN
    FOREACH step IN ARRAY CASE p_from WHEN 'pending' THEN ARRAY[]::text[]
                                      WHEN 'reversed' THEN ARRAY['completed', 'reversed']
                                      ELSE ARRAY[p_from] END LOOP
        PERFORM update_transaction_status(id, step);
    END LOOP;
    RETURN update_transaction_status(id, p_to)::text;
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END $$;
SELECT f AS "from \ to",
       pg_temp.transition(f, 'pending') AS pending, pg_temp.transition(f, 'processing') AS processing,
       pg_temp.transition(f, 'completed') AS completed, pg_temp.transition(f, 'failed') AS failed,
       pg_temp.transition(f, 'cancelled') AS cancelled, pg_temp.transition(f, 'reversed') AS reversed
  FROM unnest(ARRAY['pending', 'processing', 'completed', 'failed', 'cancelled', 'reversed']) f;
-- Each change wrote one event (with who made it); unchanged and refused ones wrote none.
SET ROLE service_role;
SET request.jwt.claims = '{"sub": "00000000-0000-0000-0000-0000000000ff"}';
SELECT update_transaction_status(:'t1', 'processing'), update_transaction_status(:'t1', 'processing') AS again,
       update_transaction_status(:'t1', 'failed', 'provider timeout');
RESET ROLE;
RESET request.jwt.claims;
SELECT event_type, old_status, new_status, changed_by_role, changed_by_user, error_message
  FROM transaction_events WHERE transaction_id = :'t1' ORDER BY created_at, event_type;
SELECT status, error_message, completed_at IS NULL AS not_completed FROM transactions WHERE id = :'t1';
SELECT regress.error(format('SELECT update_transaction_status(%L, %L)', :'t1', 'completed'));
SELECT regress.error($$SELECT update_transaction_status(gen_random_uuid(), 'completed')$$);
SELECT update_transaction_status(:'t1', 'done');
SELECT regress.outcome($$SELECT update_transaction_status(NULL, 'completed')$$),
       regress.outcome(format('SELECT update_transaction_status(%L, NULL)', :'t1'));

-- Payment methods: making one the default clears the user's previous default in the same
-- statement; hints never hold a full number; details are ciphertext.
INSERT INTO payment_methods (id, user_id, type, display_hint, is_default, account_details_encrypted)
VALUES ('30000000-0000-0000-0000-000000000001', :a, 'card', '4242', true, '\x8f3a'),
       ('30000000-0000-0000-0000-000000000002', :b, 'wallet', NULL, true, NULL);
INSERT INTO payment_methods (id, user_id, type, display_hint, is_default)
VALUES ('30000000-0000-0000-0000-000000000003', :a, 'mobile_money', '*** 0001', true);
SELECT id, user_id = :a AS of_a, type, is_default FROM payment_methods ORDER BY id;
UPDATE payment_methods SET is_default = true WHERE id = '30000000-0000-0000-0000-000000000001';
SELECT id, is_default FROM payment_methods WHERE user_id = :a ORDER BY id;
SELECT regress.outcome($$INSERT INTO payment_methods (user_id, type, display_hint) VALUES ('00000000-0000-0000-0000-00000000000a', 'card', '4242424242424242')$$);

-- Deleting a payment method detaches its transactions, found through an index on
-- payment_method_id in every partition (0.2.0 had none: each delete scanned every partition).
INSERT INTO transactions (reference, user_id, type, amount, payment_method_id)
VALUES ('R-pm', :a, 'payment', 7, '30000000-0000-0000-0000-000000000003');
SELECT p.relname AS partition_without_payment_method_index
  FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhrelid
 WHERE i.inhparent = 'transactions'::regclass
   AND NOT EXISTS (SELECT 1 FROM pg_index x
                    WHERE x.indrelid = p.oid
                      AND x.indkey[0] = (SELECT attnum FROM pg_attribute WHERE attrelid = p.oid AND attname = 'payment_method_id'));
DELETE FROM payment_methods WHERE id = '30000000-0000-0000-0000-000000000003';
SELECT payment_method_id IS NULL AS detached FROM transactions WHERE reference = 'R-pm';
DELETE FROM transactions WHERE reference = 'R-pm';

-- Views and RLS: a user sees only its own transactions, events and payment methods.
SELECT status, type, currency, transactions FROM transaction_summary ORDER BY status, type, currency;
SELECT create_transaction(:b, 'credit', 5000) IS NOT NULL AS b_created;
SET ROLE authenticated;
SET request.jwt.claims = '{"sub": "00000000-0000-0000-0000-00000000000b"}';
SELECT user_id = :b AS own, type, amount FROM transactions;
SELECT user_id = :b AS own, event_type FROM transaction_events;
SELECT user_id = :b AS own, type FROM payment_methods;
SELECT user_id = :b AS own, currency, transactions, total_in FROM user_recent_transactions;
-- End users cannot create or change transactions.
SELECT regress.outcome($$SELECT create_transaction('00000000-0000-0000-0000-00000000000b', 'credit', 1)$$, false),
       regress.outcome(format('SELECT update_transaction_status(%L, %L)', :'t1', 'completed'), false);
RESET ROLE;
RESET request.jwt.claims;

-- A new transaction's key and event rows are written natively (no statement) when no
-- row-level security applies to the caller and no BEFORE INSERT row trigger could change them;
-- otherwise by statements. Either way a DBA's triggers fire as for an INSERT: AFTER row
-- triggers see the whole transaction, statement triggers fire once per call that tries to
-- insert a key (the replay in the same statement does: the first call's key is newer than the
-- statement's snapshot, and is found by the insert's conflict).
CREATE TABLE regress.money_seen (what text, n bigint);
CREATE FUNCTION regress.money_event_after() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO regress.money_seen
    SELECT 'event of a transaction ' || CASE WHEN count(*) = 1 THEN 'present' ELSE 'missing' END, count(*)
      FROM transactions WHERE id = NEW.transaction_id;
    RETURN NULL;
END $$;
CREATE FUNCTION regress.money_key_statement() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO regress.money_seen VALUES ('key insert statement', 1);
    RETURN NULL;
END $$;
CREATE TRIGGER regress_after AFTER INSERT ON transaction_events
    FOR EACH ROW EXECUTE FUNCTION regress.money_event_after();
CREATE TRIGGER regress_statement AFTER INSERT ON transaction_idempotency_keys
    FOR EACH STATEMENT EXECUTE FUNCTION regress.money_key_statement();
SELECT create_transaction(:a, 'payment', 3, 'RWF', 'triggers-1') IS NOT NULL AS created,
       create_transaction(:a, 'payment', 3, 'RWF', 'triggers-1') IS NOT NULL AS replayed;
SELECT what, n FROM regress.money_seen;
DELETE FROM regress.money_seen;
-- A BEFORE INSERT row trigger on the events: written by a statement, which fires it.
CREATE FUNCTION regress.money_event_before() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.metadata := jsonb_build_object('stamped', true);
    RETURN NEW;
END $$;
CREATE TRIGGER regress_before BEFORE INSERT ON transaction_events
    FOR EACH ROW EXECUTE FUNCTION regress.money_event_before();
SELECT create_transaction(:a, 'payment', 4, 'RWF', 'triggers-2') AS t_before \gset
SELECT metadata FROM transaction_events WHERE transaction_id = :'t_before';
SELECT what, n FROM regress.money_seen;
DROP TRIGGER regress_before ON transaction_events;
DROP TRIGGER regress_after ON transaction_events;
DROP TRIGGER regress_statement ON transaction_idempotency_keys;
DROP TABLE regress.money_seen;
DROP FUNCTION regress.money_event_after(), regress.money_key_statement(), regress.money_event_before();
-- Without the key's unique index no key can be looked up or claimed: 55000, naming it.
BEGIN;
ALTER TABLE transaction_idempotency_keys DROP CONSTRAINT transaction_idempotency_keys_pkey;
SELECT regress.error($$SELECT create_transaction('00000000-0000-0000-0000-00000000000a', 'payment', 5, 'RWF', 'no-index')$$) AS new_key;
ROLLBACK;
SELECT create_transaction(:a, 'payment', 3, 'RWF', 'triggers-1') IS NOT NULL AS replayed_after;
