-- A key index under a nondeterministic collation ("abc" = "ABC") is not a key index to the
-- native lookups: 55000, never another key's transaction. Nondeterministic collations exist
-- only in builds with ICU: without it the collation cannot be created, and this file's
-- expected output is key_collation_1.out.
\set VERBOSITY terse
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS easymo CASCADE;
CREATE EXTENSION easymo;
SELECT ensure_partitions(1) IS NOT NULL AS months;
SELECT create_transaction('00000000-0000-4000-8000-000000000001', 'payment', 5, 'RWF', 'ABC') IS NOT NULL AS created;
CREATE COLLATION pg_temp.case_insensitive (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
BEGIN;
ALTER TABLE transaction_idempotency_keys DROP CONSTRAINT transaction_idempotency_keys_pkey;
CREATE UNIQUE INDEX transaction_idempotency_keys_ci ON transaction_idempotency_keys (idempotency_key COLLATE pg_temp.case_insensitive);
SELECT regress.error($$SELECT create_transaction('00000000-0000-4000-8000-000000000001', 'payment', 5, 'RWF', 'abc')$$) AS other_case;
ROLLBACK;
-- The key index as created: 'abc' is a key of its own.
SELECT create_transaction('00000000-0000-4000-8000-000000000001', 'payment', 5, 'RWF', 'abc')
       <> create_transaction('00000000-0000-4000-8000-000000000001', 'payment', 5, 'RWF', 'ABC') AS distinct_keys;
