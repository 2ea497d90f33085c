-- Wallets: accounts, transfers posted at once or held, entries, hot accounts, batches,
-- reconciliation, every refusal's SQLSTATE (and that it writes nothing), and RLS.
\set VERBOSITY terse
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS easymo CASCADE;
CREATE EXTENSION easymo;

\set a '''00000000-0000-0000-0000-00000000000a'''
\set b '''00000000-0000-0000-0000-00000000000b'''

-- Runs p_sql; returns ok, or the SQLSTATE and message of its error with every account id
-- replaced by the account's name and other ids by <id> (they differ from run to run).
CREATE FUNCTION pg_temp.try(p_sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    state text;
    msg text;
    found_id text;
BEGIN
    EXECUTE p_sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
    FOR found_id IN SELECT DISTINCT m[1] FROM regexp_matches(msg, '([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})', 'g') m LOOP
        msg := replace(msg, found_id, coalesce((SELECT '<' || name || '>' FROM wallet_accounts WHERE id::text = found_id), '<id>'));
    END LOOP;
    RETURN state || ' ' || regexp_replace(msg, 'expired at [^;]*;', 'expired at <time>;');
END
$$;
CREATE FUNCTION pg_temp.acct(p_name text) RETURNS uuid LANGUAGE sql AS $$
    SELECT id FROM wallet_accounts WHERE name = p_name
$$;

-- Accounts: a rider (A) and a driver (B), the platform's fee account (hot), and the outside
-- world (external: no floor) from which top-ups come.
SELECT create_wallet_account('RWF', 'user', :a, 'rider') AS rider \gset
SELECT create_wallet_account('RWF', 'user', :b, 'driver', p_min_balance => -500) AS driver \gset
SELECT create_wallet_account('RWF', 'platform', p_name => 'fees', p_hot => true) AS fees \gset
SELECT create_wallet_account('RWF', 'external', p_name => 'world') AS world \gset
SELECT kind, user_id IS NOT NULL AS owned, name, status, min_balance, posted, version, hot
  FROM wallet_accounts ORDER BY kind, name;

-- A balance-tracking view for the rest of the file.
CREATE TEMP VIEW balances AS
SELECT a.name, b.posted, b.pending_debits, b.pending_credits, b.available, b.version
  FROM wallet_accounts a, get_wallet_balance(a.id) b ORDER BY a.name;
CREATE TEMP VIEW counts AS
SELECT (SELECT count(*) FROM wallet_transfers) AS transfers,
       (SELECT count(*) FROM wallet_entries) AS entries,
       (SELECT count(*) FROM wallet_hot_credits) AS hot_credits,
       (SELECT sum(version) FROM wallet_accounts) AS versions;

-- A top-up: the world (unbounded) pays the rider. Two entries, signed, with balance and
-- version after; the transfer is posted and carries its metadata.
SELECT wallet_transfer(:'world', :'rider', 10000, 'topup-1', p_metadata => '{"provider": "momo"}') AS t1 \gset
SELECT status, amount, currency, expires_at IS NULL AS posted_at_once, metadata, substr(id::text, 15, 1) AS uuid_version
  FROM wallet_transfers WHERE id = :'t1';
SELECT a.name, e.version, e.amount, e.balance_after, e.user_id IS NOT DISTINCT FROM a.user_id AS owner_copied
  FROM wallet_entries e JOIN wallet_accounts a ON a.id = e.account_id
 WHERE e.transfer_id = :'t1' ORDER BY e.amount;
SELECT * FROM balances;

-- Idempotency: the same key and accounts, amount (by value) and kind return the first id and
-- write nothing; any difference is 23505 naming it.
SELECT * FROM counts;
SELECT wallet_transfer(:'world', :'rider', 10000.00, 'topup-1') = :'t1' AS replayed;
SELECT * FROM counts;
SELECT pg_temp.try($$SELECT wallet_transfer(pg_temp.acct('world'), pg_temp.acct('rider'), 10001, 'topup-1')$$);
SELECT pg_temp.try($$SELECT wallet_transfer(pg_temp.acct('world'), pg_temp.acct('driver'), 10000, 'topup-1')$$);
SELECT pg_temp.try($$SELECT wallet_transfer(pg_temp.acct('world'), pg_temp.acct('rider'), 10000, 'topup-1', 60)$$);
SELECT * FROM counts;

-- A ride: the rider pays the driver 3000 and the platform's fee of 300, in one batch (all or
-- none); the fee account is hot, so its credit waits in wallet_hot_credits.
SELECT array_agg(id) AS ride FROM wallet_transfer_batch(jsonb_build_array(
    jsonb_build_object('debit_account_id', :'rider', 'credit_account_id', :'driver', 'amount', 3000, 'idempotency_key', 'ride-1-fare'),
    jsonb_build_object('debit_account_id', :'rider', 'credit_account_id', :'fees', 'amount', 300.5, 'idempotency_key', 'ride-1-fee',
                       'metadata', jsonb_build_object('ride', 1)))) AS id \gset
SELECT cardinality(:'ride'::uuid[]) AS legs,
       (SELECT array_agg(amount ORDER BY amount) FROM wallet_transfers WHERE id = ANY (:'ride'::uuid[])) AS amounts;
SELECT * FROM balances;
SELECT count(*) AS unfolded_fee_credits FROM wallet_hot_credits;
-- Replayed as a whole: the same ids in input order.
SELECT array_agg(id) = :'ride'::uuid[] AS batch_replayed FROM wallet_transfer_batch(jsonb_build_array(
    jsonb_build_object('debit_account_id', :'rider', 'credit_account_id', :'driver', 'amount', 3000, 'idempotency_key', 'ride-1-fare'),
    jsonb_build_object('debit_account_id', :'rider', 'credit_account_id', :'fees', 'amount', 300.5, 'idempotency_key', 'ride-1-fee'))) AS id;

-- A batch with one failing leg writes nothing: the second leg would take the rider below 0.
SELECT * FROM counts;
SELECT pg_temp.try($$SELECT * FROM wallet_transfer_batch(jsonb_build_array(
    jsonb_build_object('debit_account_id', pg_temp.acct('rider'), 'credit_account_id', pg_temp.acct('driver'), 'amount', 100),
    jsonb_build_object('debit_account_id', pg_temp.acct('rider'), 'credit_account_id', pg_temp.acct('fees'), 'amount', 1000000)))$$);
SELECT * FROM counts;
SELECT * FROM balances;

-- Holds: a ride reserves 2000 at pickup. The available balance drops, the posted one does not;
-- a hold writes no entry.
SELECT wallet_transfer(:'rider', :'driver', 2000, 'ride-2-hold', 600, '00000000-0000-7000-8000-0000000000f2') AS h1 \gset
SELECT status, expires_at > now() + interval '590 seconds' AS expires_in_ten_minutes FROM wallet_transfers WHERE id = :'h1';
SELECT * FROM balances;
-- More than the available balance cannot be held or moved (EW001), even though posted covers it.
SELECT pg_temp.try($$SELECT wallet_transfer(pg_temp.acct('rider'), pg_temp.acct('driver'), 5000)$$);
-- Posted for less at drop-off (1800): the rest is released; the posting is its own transfer.
SELECT post_wallet_hold(:'h1', 1800) AS p1 \gset
SELECT status, pending_id = :'h1' AS posts_the_hold, amount, transaction_id AS linked_transaction_copied FROM wallet_transfers WHERE id = :'p1';
SELECT status, resolved_at IS NOT NULL AS resolved FROM wallet_transfers WHERE id = :'h1';
SELECT * FROM balances;
-- A hold once posted cannot be posted or voided again (EW006); a posted transfer is no hold.
SELECT pg_temp.try(format($$SELECT post_wallet_hold(%L)$$, :'h1'));
SELECT pg_temp.try(format($$SELECT void_wallet_hold(%L)$$, :'h1'));
SELECT pg_temp.try(format($$SELECT void_wallet_hold(%L)$$, :'t1'));
-- Posting more than held is EW005 and writes nothing; voiding releases it all.
SELECT wallet_transfer(:'rider', :'driver', 500, NULL, 600) AS h2 \gset
SELECT pg_temp.try(format($$SELECT post_wallet_hold(%L, 500.0001)$$, :'h2'));
SELECT void_wallet_hold(:'h2') AS voided;
SELECT status FROM wallet_transfers WHERE id = :'h2';
SELECT pg_temp.try(format($$SELECT post_wallet_hold(%L)$$, :'h2'));
SELECT * FROM balances;

-- Expiry: a lapsed hold can be neither posted nor voided (EW006), and run_maintenance()
-- releases it (expired); it never posts.
SELECT wallet_transfer(:'rider', :'driver', 700, NULL, 1) AS h3 \gset
UPDATE wallet_transfers SET expires_at = now() - interval '1 second' WHERE id = :'h3';
SELECT pg_temp.try(format($$SELECT post_wallet_hold(%L)$$, :'h3'));
SELECT pg_temp.try(format($$SELECT void_wallet_hold(%L)$$, :'h3'));
SELECT (run_maintenance() ->> 'wallet_holds_expired')::int AS holds_expired;
SELECT status FROM wallet_transfers WHERE id = :'h3';
SELECT * FROM balances;

-- A credit line: the driver may go down to -500, not further.
SELECT wallet_transfer(:'driver', :'world', 5300) IS NOT NULL AS to_the_floor;
SELECT pg_temp.try($$SELECT wallet_transfer(pg_temp.acct('driver'), pg_temp.acct('world'), 0.0001)$$);
SELECT available FROM get_wallet_balance(:'driver');

-- The hot account: its balance counts unfolded credits; debiting it folds them first, in
-- order, into its entries, with versions and balances after.
SELECT wallet_transfer(:'rider', :'fees', 50) IS NOT NULL AS fee_2, wallet_transfer(:'rider', :'fees', 25) IS NOT NULL AS fee_3;
SELECT posted, version FROM get_wallet_balance(:'fees');
SELECT count(*) AS unfolded FROM wallet_hot_credits;
SELECT wallet_transfer(:'fees', :'world', 75.5) IS NOT NULL AS payout;
SELECT count(*) AS unfolded FROM wallet_hot_credits;
SELECT version, amount, balance_after FROM wallet_history(:'fees') ORDER BY version;
-- History pages newest first.
SELECT version, amount FROM wallet_history(:'rider', p_limit => 2);
SELECT version, amount FROM wallet_history(:'rider', p_before_version => 3, p_limit => 10);
-- run_maintenance() folds what is left.
SELECT wallet_transfer(:'rider', :'fees', 10) IS NOT NULL AS fee_4;
SELECT (run_maintenance() ->> 'wallet_credits_folded')::int AS folded;
SELECT count(*) AS unfolded FROM wallet_hot_credits;

-- The ledger holds: balances sum to zero per currency, every balance equals its entries.
SELECT * FROM reconcile_wallets();
SELECT a.name, a.posted = (SELECT sum(amount) FROM wallet_entries e WHERE e.account_id = a.id) AS balance_is_entries,
       a.version = (SELECT count(*) FROM wallet_entries e WHERE e.account_id = a.id) AS versions_gapless
  FROM wallet_accounts a WHERE a.version > 0 ORDER BY a.name;
-- A balance edited by hand is caught.
BEGIN;
ALTER TABLE wallet_accounts DISABLE TRIGGER USER;
UPDATE wallet_accounts SET posted = posted + 1 WHERE id = :'driver';
SELECT * FROM reconcile_wallets();
ROLLBACK;
-- A BEFORE UPDATE trigger that suppresses a balance update: refused (55000), nothing written.
BEGIN;
CREATE FUNCTION pg_temp.skip_update() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE TRIGGER skip_update BEFORE UPDATE ON wallet_accounts FOR EACH ROW EXECUTE FUNCTION pg_temp.skip_update();
SELECT pg_temp.try($$SELECT wallet_transfer(pg_temp.acct('world'), pg_temp.acct('rider'), 1)$$);
ROLLBACK;

-- Frozen and closed accounts: no transfer in or out (EW002); freezing and unfreezing, closing
-- only an empty account, and closed is final.
SELECT set_wallet_account_status(:'driver', 'frozen') AS frozen, set_wallet_account_status(:'driver', 'frozen') AS again;
SELECT pg_temp.try($$SELECT wallet_transfer(pg_temp.acct('rider'), pg_temp.acct('driver'), 1)$$);
SELECT pg_temp.try($$SELECT wallet_transfer(pg_temp.acct('driver'), pg_temp.acct('rider'), 1)$$);
SELECT set_wallet_account_status(:'driver', 'active') AS unfrozen;
SELECT pg_temp.try($$SELECT set_wallet_account_status(pg_temp.acct('rider'), 'closed')$$);
SELECT create_wallet_account('RWF', 'user', :a, 'spare') AS spare \gset
SELECT set_wallet_account_status(:'spare', 'closed') AS closed;
SELECT pg_temp.try($$SELECT wallet_transfer(pg_temp.acct('world'), pg_temp.acct('spare'), 1)$$);
SELECT pg_temp.try($$SELECT set_wallet_account_status(pg_temp.acct('spare'), 'active')$$);
-- Currency, kind and hot are fixed; an account with transfers is not deleted.
SELECT pg_temp.try($$UPDATE wallet_accounts SET hot = true WHERE id = pg_temp.acct('rider')$$);
SELECT pg_temp.try($$UPDATE wallet_accounts SET currency = 'USD' WHERE id = pg_temp.acct('rider')$$);
SELECT pg_temp.try($$DELETE FROM wallet_accounts WHERE id = pg_temp.acct('rider')$$);
DELETE FROM wallet_accounts WHERE id = :'spare' RETURNING name;

-- Every bad input has its SQLSTATE, and none writes anything.
SELECT * FROM counts;
SELECT create_wallet_account('USD', 'user', :a, 'usd') AS usd \gset
SELECT pg_temp.try($$SELECT wallet_transfer(pg_temp.acct('rider'), pg_temp.acct('usd'), 1)$$);  -- currency mismatch
SELECT pg_temp.try($$SELECT wallet_transfer(pg_temp.acct('rider'), pg_temp.acct('rider'), 1)$$);  -- the same account
SELECT pg_temp.try($$SELECT wallet_transfer(pg_temp.acct('rider'), '00000000-0000-0000-0000-000000000001', 1)$$);  -- unknown
SELECT pg_temp.try($$SELECT wallet_transfer(pg_temp.acct('rider'), pg_temp.acct('driver'), 0)$$);
SELECT pg_temp.try($$SELECT wallet_transfer(pg_temp.acct('rider'), pg_temp.acct('driver'), -5)$$);
SELECT pg_temp.try($$SELECT wallet_transfer(pg_temp.acct('rider'), pg_temp.acct('driver'), 1.00001)$$);
SELECT pg_temp.try($$SELECT wallet_transfer(pg_temp.acct('rider'), pg_temp.acct('driver'), 1000000000000001)$$);
SELECT pg_temp.try($$SELECT wallet_transfer(pg_temp.acct('rider'), pg_temp.acct('driver'), 'NaN')$$);
SELECT pg_temp.try($$SELECT wallet_transfer(NULL, pg_temp.acct('driver'), 1)$$);
SELECT pg_temp.try($$SELECT wallet_transfer(pg_temp.acct('rider'), pg_temp.acct('driver'), NULL)$$);
SELECT pg_temp.try($$SELECT wallet_transfer(pg_temp.acct('rider'), pg_temp.acct('driver'), 1, '')$$);
SELECT pg_temp.try($$SELECT wallet_transfer(pg_temp.acct('rider'), pg_temp.acct('driver'), 1, NULL, 0)$$);
SELECT pg_temp.try($$SELECT wallet_transfer(pg_temp.acct('rider'), pg_temp.acct('driver'), 1, NULL, 31536001)$$);
SELECT pg_temp.try($$SELECT wallet_transfer(pg_temp.acct('rider'), pg_temp.acct('driver'), 1, NULL, NULL, NULL, '[]')$$);
SELECT pg_temp.try($$SELECT post_wallet_hold('00000000-0000-0000-0000-000000000001')$$);
SELECT pg_temp.try($$SELECT void_wallet_hold(NULL)$$);
SELECT pg_temp.try(format($$SELECT post_wallet_hold(%L, 0)$$, :'h1'));
SELECT pg_temp.try($$SELECT * FROM wallet_transfer_batch(NULL)$$);
SELECT pg_temp.try($$SELECT * FROM wallet_transfer_batch('{}')$$);
SELECT pg_temp.try($$SELECT * FROM wallet_transfer_batch('[]')$$);
SELECT pg_temp.try($$SELECT * FROM wallet_transfer_batch('[1]')$$);
SELECT pg_temp.try($$SELECT * FROM wallet_transfer_batch(jsonb_build_array(jsonb_build_object('debit_account_id', pg_temp.acct('rider'), 'credit_account_id', pg_temp.acct('driver'), 'amount', 1, 'amout', 2)))$$);
SELECT pg_temp.try($$SELECT * FROM wallet_transfer_batch(jsonb_build_array(jsonb_build_object('debit_account_id', pg_temp.acct('rider'), 'credit_account_id', pg_temp.acct('driver'))))$$);
SELECT pg_temp.try($$SELECT * FROM wallet_transfer_batch(jsonb_build_array(
    jsonb_build_object('debit_account_id', pg_temp.acct('rider'), 'credit_account_id', pg_temp.acct('driver'), 'amount', 1),
    jsonb_build_object('debit_account_id', pg_temp.acct('rider'), 'credit_account_id', pg_temp.acct('driver'), 'amount', 1, 'hold_seconds', -1)))$$);
SELECT pg_temp.try($$SELECT * FROM wallet_transfer_batch(jsonb_build_array(
    jsonb_build_object('debit_account_id', pg_temp.acct('rider'), 'credit_account_id', pg_temp.acct('driver'), 'amount', 1, 'idempotency_key', 'k'),
    jsonb_build_object('debit_account_id', pg_temp.acct('rider'), 'credit_account_id', pg_temp.acct('fees'), 'amount', 1, 'idempotency_key', 'k')))$$);
SELECT pg_temp.try($$SELECT * FROM wallet_transfer_batch(jsonb_build_array(
    jsonb_build_object('debit_account_id', pg_temp.acct('rider'), 'credit_account_id', pg_temp.acct('driver'), 'amount', 1),
    jsonb_build_object('debit_account_id', pg_temp.acct('rider'), 'credit_account_id', pg_temp.acct('usd'), 'amount', 1)))$$);
SELECT pg_temp.try($$SELECT * FROM wallet_transfer_batch(jsonb_build_array(jsonb_build_object('debit_account_id', 'x', 'credit_account_id', pg_temp.acct('driver'), 'amount', 1)))$$);
SELECT pg_temp.try($$SELECT * FROM wallet_transfer_batch((SELECT jsonb_agg(jsonb_build_object('debit_account_id', pg_temp.acct('rider'), 'credit_account_id', pg_temp.acct('driver'), 'amount', 1)) FROM generate_series(1, 101)))$$);
SELECT pg_temp.try($$SELECT create_wallet_account('rwf')$$);
SELECT pg_temp.try($$SELECT create_wallet_account('RWF', 'bank')$$);
SELECT pg_temp.try($$SELECT create_wallet_account('RWF', 'user')$$);
SELECT pg_temp.try($$SELECT create_wallet_account('RWF', 'platform', '00000000-0000-0000-0000-00000000000a')$$);
SELECT pg_temp.try($$SELECT create_wallet_account('RWF', 'user', '00000000-0000-0000-0000-00000000000a', p_min_balance => 1)$$);
SELECT pg_temp.try($$SELECT create_wallet_account('RWF', 'user', '00000000-0000-0000-0000-00000000000a', p_min_balance => -0.00001)$$);
SELECT pg_temp.try($$SELECT create_wallet_account('RWF', 'external', p_min_balance => -10)$$);
SELECT pg_temp.try($$SELECT get_wallet_balance('00000000-0000-0000-0000-000000000001')$$);
SELECT pg_temp.try($$SELECT wallet_history(pg_temp.acct('rider'), p_limit => 0)$$);
SELECT pg_temp.try($$SELECT set_wallet_account_status(pg_temp.acct('rider'), 'deleted')$$);
SELECT * FROM counts;
SELECT * FROM reconcile_wallets();

-- RLS: authenticated reads its own accounts, their entries and the transfers that touch
-- them, through the tables and the read helpers; it writes nothing, not even through the
-- helpers; anon gets nothing.
SET ROLE authenticated;
BEGIN READ ONLY;
SELECT set_config('request.jwt.claims', '{"sub": "00000000-0000-0000-0000-00000000000b", "role": "authenticated"}', true) IS NOT NULL AS claims;
SELECT name FROM wallet_accounts;
SELECT count(*) > 0 AS own_entries, bool_and(user_id = :b) AS only_own FROM wallet_entries;
SELECT count(*) AS transfers_touching_driver FROM wallet_transfers;
SELECT posted, available FROM get_wallet_balance(:'driver');
SELECT count(*) AS history FROM wallet_history(:'driver');
-- Somebody else's account does not exist, as far as authenticated can tell.
SELECT regress.outcome(format('SELECT get_wallet_balance(%L)', :'rider'), false) AS others_balance,
       regress.outcome(format('SELECT wallet_history(%L)', :'rider'), false) AS others_history;
COMMIT;
SELECT wallet_transfer(:'driver', :'rider', 1);
SELECT create_wallet_account('RWF', 'user', :b);
UPDATE wallet_accounts SET posted = posted + 1000;
SELECT reconcile_wallets();
RESET ROLE;
SET ROLE anon;
SELECT count(*) FROM wallet_accounts;
RESET ROLE;
-- service_role writes through the helpers, and reads everything, read-only where PostgREST
-- runs the STABLE readers.
SET ROLE service_role;
SELECT wallet_transfer(:'world', :'driver', 5) IS NOT NULL AS service_role_transfers;
-- The writers write rows through the table, not with a statement: the caller's privileges on
-- the tables still decide, and a read-only transaction still refuses them (25006).
RESET ROLE;
REVOKE INSERT ON wallet_entries FROM service_role;
SET ROLE service_role;
SELECT pg_temp.try(format('SELECT wallet_transfer(%L, %L, 5)', :'world', :'driver'));
RESET ROLE;
GRANT INSERT ON wallet_entries TO service_role;
SET ROLE service_role;
BEGIN READ ONLY;
SELECT pg_temp.try(format('SELECT wallet_transfer(%L, %L, 5)', :'world', :'driver'));
COMMIT;
BEGIN READ ONLY;
SELECT posted FROM get_wallet_balance(:'driver');
SELECT count(*) AS history FROM wallet_history(:'fees');
SELECT bool_and(ok) AS reconciled FROM reconcile_wallets();
COMMIT;
-- A key index made DEFERRABLE no longer promises one row per key at every moment: a replay
-- refuses it (55000) instead of trusting it, even right after a replay remembered the index.
RESET ROLE;
SELECT wallet_transfer(:'world', :'rider', 10000.00, 'topup-1') = :'t1' AS replayed;
BEGIN;
ALTER TABLE wallet_transfers DROP CONSTRAINT wallet_transfers_idempotency_key_key,
    ADD CONSTRAINT wallet_transfers_idempotency_key_key UNIQUE (idempotency_key) DEFERRABLE INITIALLY DEFERRED;
SELECT pg_temp.try(format('SELECT wallet_transfer(%L, %L, 10000.00, %L)', :'world', :'rider', 'topup-1'));
ROLLBACK;
-- So does a unique index of another operator class (here case-insensitive): the lookup compares
-- keys with text's own equality, which such an index does not order by.
BEGIN;
CREATE FUNCTION pg_temp.ci_cmp(text, text) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT bttextcmp(lower($1), lower($2))';
CREATE OPERATOR CLASS pg_temp.ci_ops FOR TYPE text USING btree AS FUNCTION 1 pg_temp.ci_cmp(text, text);
ALTER TABLE wallet_transfers DROP CONSTRAINT wallet_transfers_idempotency_key_key;
CREATE UNIQUE INDEX wallet_transfers_key_ci ON wallet_transfers (idempotency_key pg_temp.ci_ops);
SELECT pg_temp.try(format('SELECT wallet_transfer(%L, %L, 10000.00, %L)', :'world', :'rider', 'TOPUP-1'));
ROLLBACK;
SELECT wallet_transfer(:'world', :'rider', 10000.00, 'topup-1') = :'t1' AS replayed_again;
SET ROLE service_role;
-- The ledger is append-only, even for service_role.
DELETE FROM wallet_entries;
DELETE FROM wallet_transfers;
RESET ROLE;
