-- Monthly partitions: inserts never fail for lack of a partition, and ensure_partitions() creates
-- the missing months and empties the DEFAULT partitions.
\set VERBOSITY terse
-- NOTICEs name dates (months moved by ensure_partitions): keep them out of the expected output.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS easymo CASCADE;
CREATE EXTENSION easymo;

\set a '''00000000-0000-0000-0000-00000000000a'''

-- Rows dated three years back, now, and three years ahead in every partitioned table.
CREATE TEMP TABLE stamps AS
SELECT * FROM (VALUES ('back', now() - interval '3 years'), ('now', now()), ('ahead', now() + interval '3 years')) v(label, at);
INSERT INTO system_metrics (service_name, metric_type, metric_name, value, created_at)
SELECT 'svc', 'latency', 'p50', 12.5, at FROM stamps;
INSERT INTO system_audit_logs (actor_type, actor_identifier, action, created_at)
SELECT 'system', 'test', 'insert', at FROM stamps;
INSERT INTO transactions (id, reference, user_id, type, amount, created_at)
SELECT gen_random_uuid(), 'TX-' || label, :a, 'payment', 100, at FROM stamps;
INSERT INTO transaction_events (transaction_id, transaction_created_at, user_id, event_type, new_status)
SELECT id, created_at, user_id, 'created', 'pending' FROM transactions;
INSERT INTO transaction_idempotency_keys (idempotency_key, transaction_id, transaction_created_at, user_id, type, amount, currency)
SELECT 'key-' || reference, id, created_at, user_id, type, amount, currency FROM transactions;
INSERT INTO event_store (aggregate_type, aggregate_id, event_type, version, created_at)
SELECT 'trip', 'trip-1', 'created', row_number() OVER (ORDER BY at), at FROM stamps;
INSERT INTO analytics_events (event_name, user_id, created_at)
SELECT 'opened', :a, at FROM stamps;

-- Where they landed: the past and far-future rows in DEFAULT.
CREATE TEMP VIEW placement AS
SELECT t.parent, s.label,
       CASE WHEN t.partition ~ '_default$' THEN 'default'
            WHEN t.partition = t.parent || '_p' || to_char(t.created_at AT TIME ZONE 'UTC', 'YYYY_MM') THEN 'its month'
            ELSE t.partition END AS placed_in
  FROM (SELECT 'system_metrics' AS parent, tableoid::regclass::text AS partition, created_at FROM system_metrics
        UNION ALL SELECT 'system_audit_logs', tableoid::regclass::text, created_at FROM system_audit_logs
        UNION ALL SELECT 'transactions', tableoid::regclass::text, created_at FROM transactions
        UNION ALL SELECT 'event_store', tableoid::regclass::text, created_at FROM event_store
        UNION ALL SELECT 'analytics_events', tableoid::regclass::text, created_at FROM analytics_events) t
  JOIN stamps s ON s.at = t.created_at
 ORDER BY 1, 2;
SELECT * FROM placement;

-- Two months (three years back and ahead) for each of the five tables.
SELECT ensure_partitions(3) AS created;
SELECT * FROM placement;
SELECT (SELECT count(*) FROM system_metrics_default) + (SELECT count(*) FROM system_audit_logs_default)
     + (SELECT count(*) FROM transactions_default) + (SELECT count(*) FROM event_store_default)
     + (SELECT count(*) FROM analytics_events_default) AS rows_left_in_default;

-- Moving the rows kept what points at them: the events and keys still find their transactions.
-- (The move fires no trigger: had the delete trigger of transactions run, it would have refused,
-- since these transactions have events.)
SELECT count(*) AS events_with_their_transaction
  FROM transaction_events e JOIN transactions t ON t.id = e.transaction_id AND t.created_at = e.transaction_created_at;
SELECT count(*) AS keys_with_their_transaction
  FROM transaction_idempotency_keys k JOIN transactions t ON t.id = k.transaction_id AND t.created_at = k.transaction_created_at;
-- A transaction with an audit trail still cannot be deleted. (The message names a dated
-- partition's row; show only the SQLSTATE.)
\set VERBOSITY sqlstate
DELETE FROM transactions WHERE reference = 'TX-back';
\set VERBOSITY terse

-- The new partitions are the data's, not the extension's: not members and not registered as
-- configuration tables (pg_dump dumps them whole, sql/operations.sql); commented, RLS on, no
-- privileges for anyone but the owner.
SELECT count(*) AS new_partitions,
       bool_and(c.oid IN (SELECT objid FROM pg_depend WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e')) AS members,
       bool_and(c.oid IN (SELECT unnest(extconfig) FROM pg_extension WHERE extname = 'easymo')) AS dumped,
       bool_and(obj_description(c.oid, 'pg_class') LIKE 'Monthly partition of %') AS commented,
       bool_and(c.relrowsecurity) AS rls,
       bool_and(NOT has_table_privilege('service_role', c.oid, 'SELECT')
                AND NOT has_table_privilege('authenticated', c.oid, 'SELECT')) AS locked
  FROM pg_class c
 WHERE c.relname ~ '_p[0-9]{4}_[0-9]{2}$'
   AND c.relname !~ ('_p(' || (SELECT string_agg(to_char(date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => k), 'YYYY_MM'), '|')
                               FROM generate_series(0, 3) k) || ')$');

-- Idempotent; a longer horizon adds exactly the missing months.
SELECT ensure_partitions(3) AS created_again;
SELECT ensure_partitions(6) AS created_for_6_months;
SELECT ensure_partitions(0) AS created_for_0_months;

-- Many rows of one month move in one go.
INSERT INTO system_metrics (service_name, metric_type, metric_name, value, created_at)
SELECT 'svc', 'counter', 'hits', g, timestamptz '2040-03-01 00:00:00+00' + g * interval '1 minute'
  FROM generate_series(0, 4999) g;
SELECT ensure_partitions(3) AS created;
SELECT count(*) AS moved_rows FROM system_metrics_p2040_03;
SELECT count(*) AS left_in_default FROM system_metrics_default;
-- Month boundaries are UTC whatever the session's time zone.
SET TimeZone = 'Pacific/Kiritimati';
INSERT INTO system_metrics (service_name, metric_type, metric_name, value, created_at)
VALUES ('svc', 'gauge', 'edge', 1, timestamptz '2040-06-30 23:59:59.999999+00'),
       ('svc', 'gauge', 'edge', 2, timestamptz '2040-07-01 00:00:00+00');
SELECT ensure_partitions(3) AS created;
SELECT value, tableoid::regclass FROM system_metrics WHERE metric_name = 'edge' ORDER BY value;
RESET TimeZone;

-- A row stamped +-infinity has no month: it stays in DEFAULT and does not stop the others.
INSERT INTO analytics_events (event_name, created_at) VALUES ('far', 'infinity'), ('past', '-infinity'), ('ok', '2041-01-10');
SELECT ensure_partitions(3) AS created;
SELECT event_name, tableoid::regclass FROM analytics_events WHERE event_name IN ('far', 'past', 'ok') ORDER BY 1;

-- A partition someone made by hand, covering part of a month, is left alone (with a warning).
CREATE TABLE event_store_handmade PARTITION OF event_store
    FOR VALUES FROM ('2042-01-15 00:00:00+00') TO ('2042-02-15 00:00:00+00');
INSERT INTO event_store (aggregate_type, aggregate_id, event_type, version, created_at)
VALUES ('trip', 'trip-2', 'created', 1, '2042-01-05 00:00:00+00'),
       ('trip', 'trip-2', 'moved', 2, '2042-01-20 00:00:00+00');
SELECT ensure_partitions(3) AS created;
SELECT version, tableoid::regclass FROM event_store WHERE aggregate_id = 'trip-2' ORDER BY version;
DROP TABLE event_store_handmade;

-- Bad input: NULL is 22004, out of range 22023; nothing is created.
SELECT ensure_partitions(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT ensure_partitions(-1);
\echo :LAST_ERROR_SQLSTATE
SELECT ensure_partitions(121);
\echo :LAST_ERROR_SQLSTATE

-- service_role may run it (it is SECURITY DEFINER; with the hand-made partition gone it now
-- creates 2042-01); authenticated may not.
SET ROLE service_role;
SELECT ensure_partitions(3) AS created_by_service_role;
RESET ROLE;
SET ROLE authenticated;
SELECT ensure_partitions(3);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- create_transaction writes its row itself (no statement) into the partition an INSERT into
-- transactions would reach, whatever that partition's layout; a partition with BEFORE INSERT
-- row triggers, or partitioned again, gets the row through a statement.
SELECT create_transaction(:a, 'payment', 1, 'RWF', 'route-1') AS r1 \gset
INSERT INTO transactions (reference, user_id, type, amount) VALUES ('R-insert', :a, 'payment', 1);
SELECT (SELECT tableoid FROM transactions WHERE id = :'r1') = (SELECT tableoid FROM transactions WHERE reference = 'R-insert')
       AS where_insert_goes;
-- This month's partition replaced by one whose columns sit elsewhere (a dropped column first).
CREATE TEMP TABLE this_month AS
SELECT c.relname AS month, pg_get_expr(c.relpartbound, c.oid) AS bound
  FROM pg_class c WHERE c.oid = (SELECT tableoid FROM transactions WHERE id = :'r1');
-- (Attached by name and bound without echoing them: they name the date.)
CREATE FUNCTION pg_temp.attach(p_table text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('ALTER TABLE transactions ATTACH PARTITION %I %s', p_table, (SELECT bound FROM this_month));
END $$;
DO $$ BEGIN EXECUTE format('ALTER TABLE transactions DETACH PARTITION %I', (SELECT month FROM this_month)); END $$;
CREATE TABLE regress_shuffled (dropped int, LIKE transactions INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE regress_shuffled DROP COLUMN dropped;
SELECT pg_temp.attach('regress_shuffled');
SELECT create_transaction(:a, 'refund', 2.5, 'KES', 'route-2', '{"k": 2}', 'corr-2') AS r2 \gset
SELECT tableoid::regclass AS partition, reference ~ '^TX-[0-9]{6}-' AS referenced, user_id = :a AS own, type, amount,
       currency, idempotency_key, metadata, correlation_id, status, created_at = updated_at AS stamped
  FROM transactions WHERE id = :'r2';
SELECT count(*) AS events FROM transaction_events WHERE transaction_id = :'r2';
SELECT count(*) AS keys FROM transaction_idempotency_keys WHERE transaction_id = :'r2';
-- Its CHECK constraints hold as for an INSERT (a currency code the list lacks, made legal for the
-- table but not for the partition).
ALTER TABLE regress_shuffled ADD CONSTRAINT regress_no_usd CHECK (currency <> 'USD');
SELECT create_transaction(:a, 'payment', 3, 'USD', 'route-3');
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE regress_shuffled DROP CONSTRAINT regress_no_usd;
-- A BEFORE INSERT row trigger on the partition: the row goes through a statement, which fires it.
CREATE FUNCTION pg_temp.describe() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.description := 'described';
    RETURN NEW;
END $$;
CREATE TRIGGER regress_describe BEFORE INSERT ON regress_shuffled FOR EACH ROW EXECUTE FUNCTION pg_temp.describe();
SELECT create_transaction(:a, 'payment', 4, 'RWF', 'route-4') AS r4 \gset
SELECT tableoid::regclass AS partition, description, amount FROM transactions WHERE id = :'r4';
DROP TRIGGER regress_describe ON regress_shuffled;
-- A month partitioned again (by currency): the row goes through a statement, to the right one.
ALTER TABLE transactions DETACH PARTITION regress_shuffled;
CREATE TABLE regress_by_currency (LIKE transactions INCLUDING DEFAULTS INCLUDING CONSTRAINTS) PARTITION BY LIST (currency);
CREATE TABLE regress_rwf PARTITION OF regress_by_currency FOR VALUES IN ('RWF');
CREATE TABLE regress_other PARTITION OF regress_by_currency DEFAULT;
SELECT pg_temp.attach('regress_by_currency');
SELECT create_transaction(:a, 'payment', 5, 'RWF', 'route-5') AS r5 \gset
SELECT create_transaction(:a, 'payment', 6, 'EUR', 'route-6') AS r6 \gset
SELECT tableoid::regclass AS partition, amount FROM transactions WHERE id IN (:'r5', :'r6') ORDER BY amount;
-- No partition for the row (this month and DEFAULT detached): 23514, as for an INSERT, and
-- nothing written.
ALTER TABLE transactions DETACH PARTITION regress_by_currency;
ALTER TABLE transactions DETACH PARTITION transactions_default;
SELECT create_transaction(:a, 'payment', 7, 'RWF', 'route-7');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO transactions (reference, user_id, type, amount) VALUES ('R-nowhere', :a, 'payment', 7);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS keys_of_route_7 FROM transaction_idempotency_keys WHERE idempotency_key = 'route-7';
-- Everything back as it was: the row goes to its month again.
SELECT pg_temp.attach(month) FROM this_month;
ALTER TABLE transactions ATTACH PARTITION transactions_default DEFAULT;
DROP TABLE regress_shuffled, regress_by_currency;
SELECT create_transaction(:a, 'payment', 8, 'RWF', 'route-8') AS r8 \gset
SELECT t.tableoid = c.oid AS in_its_month FROM transactions t, pg_class c, this_month m
 WHERE t.id = :'r8' AND c.relname = m.month;
