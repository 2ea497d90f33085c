-- Money: transactions (monthly partitions), their idempotency keys, their event trail, and
-- payment methods.

CREATE TABLE @extschema@.payment_methods (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id          uuid NOT NULL,
    type             text NOT NULL
                         CHECK (type IN ('card', 'mobile_money', 'bank_account', 'wallet', 'cash')),
    provider         text CHECK (length(provider) <= 64),
    -- Only ciphertext is stored; what a person may see (e.g. the last 4 digits) is the hint.
    account_details_encrypted bytea,
    -- At most 4 digits in a row: a hint like '4242' or '**** 0002', never a card or account
    -- number in clear.
    display_hint     text CHECK (length(display_hint) <= 64 AND display_hint !~ '[0-9]{5}'),
    is_default       boolean NOT NULL DEFAULT false,
    is_verified      boolean NOT NULL DEFAULT false,
    verified_at      timestamptz,
    expires_at       timestamptz,
    status           text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive', 'expired')),
    metadata         jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payment_methods_user_idx ON @extschema@.payment_methods (user_id, created_at DESC);
-- At most one default per user, enforced by the index itself.
CREATE UNIQUE INDEX payment_methods_one_default_idx
    ON @extschema@.payment_methods (user_id)
    WHERE is_default;
CREATE TRIGGER payment_methods_touch BEFORE UPDATE ON @extschema@.payment_methods
    FOR EACH ROW EXECUTE FUNCTION @extschema@._touch_updated_at();

-- Making a payment method the default clears the user's previous default in the same statement.
-- The per-user advisory lock serialises two concurrent "make default" for one user, so the
-- second clears the first's instead of failing on the unique index.
CREATE FUNCTION @extschema@._payment_methods_single_default() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('easymo.payment_methods.default:' || NEW.user_id::text, 0));
    UPDATE @extschema@.payment_methods
       SET is_default = false
     WHERE user_id = NEW.user_id AND is_default AND id <> NEW.id;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION @extschema@._payment_methods_single_default() IS
    'Internal trigger: a new default payment method clears the user''s previous default.';
CREATE TRIGGER payment_methods_single_default
    BEFORE INSERT OR UPDATE OF is_default ON @extschema@.payment_methods
    FOR EACH ROW WHEN (NEW.is_default) EXECUTE FUNCTION @extschema@._payment_methods_single_default();
COMMENT ON TABLE @extschema@.payment_methods IS
    'Users'' payment methods (card, mobile_money, bank_account, wallet, cash): account details only as ciphertext plus a display hint; at most one default per user.';

-- Numbers of the human-readable references (TX-YYMMDD-NNNNNNNN): unique by construction.
CREATE SEQUENCE @extschema@.transaction_reference_seq;
COMMENT ON SEQUENCE @extschema@.transaction_reference_seq IS
    'Numbers the transaction references create_transaction() gives out; pg_dump keeps its position.';

CREATE TABLE @extschema@.transactions (
    id                uuid NOT NULL DEFAULT gen_random_uuid(),
    reference         text NOT NULL CHECK (length(reference) BETWEEN 1 AND 64),
    user_id           uuid NOT NULL,
    type              text NOT NULL CHECK (type IN
                          ('debit', 'credit', 'transfer', 'payment', 'refund', 'fee', 'commission')),
    -- Plain numeric with a CHECK rather than numeric(p,4): a typmod would silently round a fifth
    -- decimal instead of refusing it.
    amount            numeric NOT NULL
                          CHECK (amount > 0 AND amount <= 1000000000000000 AND amount = round(amount, 4)),
    -- The codes create_transaction accepts (the list lives once, in src/money.rs).
    currency          text NOT NULL DEFAULT 'RWF' CHECK (@extschema@._check_currency_code(currency)),
    status            text NOT NULL DEFAULT 'pending' CHECK (status IN
                          ('pending', 'processing', 'completed', 'failed', 'cancelled', 'reversed')),
    idempotency_key   text COLLATE "C" CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    payment_method_id uuid REFERENCES @extschema@.payment_methods (id) ON DELETE SET NULL,
    description       text,
    metadata          jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    correlation_id    text CHECK (length(correlation_id) <= 128),
    error_message     text,
    completed_at      timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE (created_at);
CREATE TABLE @extschema@.transactions_default PARTITION OF @extschema@.transactions DEFAULT;
-- The primary key and indexes belong to each partition, not to the parent (sql/operations.sql
-- says why): declared here on the DEFAULT partition, copied to every month by ensure_partitions().
ALTER TABLE @extschema@.transactions_default ADD PRIMARY KEY (id, created_at);
CREATE INDEX ON @extschema@.transactions_default (user_id, created_at DESC);
CREATE INDEX ON @extschema@.transactions_default (status, created_at)
    WHERE status IN ('pending', 'processing');
CREATE INDEX ON @extschema@.transactions_default (reference);
-- Deleting a payment method sets its transactions' payment_method_id to NULL: found here, not
-- by scanning every partition.
CREATE INDEX ON @extschema@.transactions_default (payment_method_id)
    WHERE payment_method_id IS NOT NULL;
CREATE INDEX ON @extschema@.transactions_default (correlation_id)
    WHERE correlation_id IS NOT NULL;
CREATE TRIGGER transactions_touch BEFORE UPDATE ON @extschema@.transactions
    FOR EACH ROW EXECUTE FUNCTION @extschema@._touch_updated_at();
COMMENT ON TABLE @extschema@.transactions IS
    'Money movements (debit, credit, transfer, payment, refund, fee, commission) from pending to a final status. Monthly partitions on created_at (UTC); create with create_transaction(), change status with update_transaction_status().';
COMMENT ON TABLE @extschema@.transactions_default IS
    'DEFAULT partition of transactions: catches rows whose month has no partition yet; ensure_partitions() moves them out.';

-- A unique index on a partitioned table must contain the partition key, so a key used in
-- November and replayed in December would not collide there. Keys live here instead: global,
-- unpartitioned, and holding what a replay must match.
CREATE TABLE @extschema@.transaction_idempotency_keys (
    -- Keys are opaque: byte order ("C") makes every index comparison a memcmp instead of a
    -- locale-aware strcoll, and the index immune to collation changes of the operating system.
    idempotency_key        text COLLATE "C" PRIMARY KEY CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    transaction_id         uuid NOT NULL,
    transaction_created_at timestamptz NOT NULL,
    user_id                uuid NOT NULL,
    type                   text NOT NULL,
    amount                 numeric NOT NULL,
    currency               text NOT NULL,
    created_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX transaction_idempotency_keys_txn_idx
    ON @extschema@.transaction_idempotency_keys (transaction_id, transaction_created_at);
COMMENT ON TABLE @extschema@.transaction_idempotency_keys IS
    'Global idempotency keys of transactions (unpartitioned, so a key is unique across all months) with the user, type, amount and currency a replay must match.';

CREATE TABLE @extschema@.transaction_events (
    id                     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    transaction_id         uuid NOT NULL,
    transaction_created_at timestamptz NOT NULL,
    -- The transaction's owner, copied so RLS needs no join into the partitioned table.
    user_id                uuid NOT NULL,
    event_type             text NOT NULL CHECK (event_type IN ('created', 'status_changed')),
    old_status             text,
    new_status             text NOT NULL,
    changed_by_role        text NOT NULL DEFAULT current_user,
    changed_by_user        uuid,
    error_message          text,
    metadata               jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    created_at             timestamptz NOT NULL DEFAULT now()
);
-- No foreign keys point into the partitioned transactions table. Postgres checks such a key per
-- inserted row with a query over the partitions that costs 22 us (generic plan) to 104 us
-- (custom plan) here, more than a whole INSERT into transactions (48 us): a key on the events and
-- one on the idempotency keys would make create_transaction three times slower. The rows are
-- written together, in one transaction, by create_transaction and update_transaction_status; the
-- trigger below keeps what the keys gave on delete: a transaction with an audit trail cannot be
-- deleted (23503), and its idempotency key goes with it.
CREATE FUNCTION @extschema@._transactions_before_delete() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM @extschema@.transaction_events
                WHERE transaction_id = OLD.id AND transaction_created_at = OLD.created_at) THEN
        RAISE EXCEPTION 'transaction % has events (its audit trail) and cannot be deleted', OLD.id
            USING ERRCODE = '23503';
    END IF;
    DELETE FROM @extschema@.transaction_idempotency_keys
     WHERE transaction_id = OLD.id AND transaction_created_at = OLD.created_at;
    RETURN OLD;
END
$$;
COMMENT ON FUNCTION @extschema@._transactions_before_delete() IS
    'Internal trigger: refuses to delete a transaction that has events (23503) and deletes its idempotency key.';
CREATE TRIGGER transactions_before_delete BEFORE DELETE ON @extschema@.transactions
    FOR EACH ROW EXECUTE FUNCTION @extschema@._transactions_before_delete();

CREATE INDEX transaction_events_txn_idx
    ON @extschema@.transaction_events (transaction_id, transaction_created_at, created_at);
CREATE INDEX transaction_events_user_idx ON @extschema@.transaction_events (user_id, created_at DESC);
COMMENT ON TABLE @extschema@.transaction_events IS
    'Audit trail of every transaction: its creation and each status change, with old and new status, the role and user who made it, and any error.';

CREATE VIEW @extschema@.transaction_summary WITH (security_invoker = true) AS
SELECT status,
       type,
       currency,
       count(*)         AS transactions,
       sum(amount)      AS total_amount,
       avg(amount)      AS avg_amount,
       min(created_at)  AS first_at,
       max(created_at)  AS last_at
  FROM @extschema@.transactions
 GROUP BY status, type, currency;
COMMENT ON VIEW @extschema@.transaction_summary IS
    'Transactions per status, type and currency: count, total and average amount, first and last creation time.';

CREATE VIEW @extschema@.user_recent_transactions WITH (security_invoker = true) AS
SELECT user_id,
       currency,
       count(*)                                                            AS transactions,
       count(*) FILTER (WHERE status = 'completed')                        AS completed,
       count(*) FILTER (WHERE status IN ('pending', 'processing'))         AS open,
       coalesce(sum(amount) FILTER (WHERE type IN ('credit', 'refund') AND status = 'completed'), 0) AS total_in,
       coalesce(sum(amount) FILTER (WHERE type NOT IN ('credit', 'refund') AND status = 'completed'), 0) AS total_out,
       max(created_at)                                                     AS last_transaction_at
  FROM @extschema@.transactions
 WHERE created_at > now() - interval '30 days'
 GROUP BY user_id, currency;
COMMENT ON VIEW @extschema@.user_recent_transactions IS
    'Per user and currency over the last 30 days: counts, completed money in and out, latest transaction. security_invoker: an authenticated caller sees only its own row.';

SELECT @extschema@._secure_table('@extschema@.payment_methods', 'user_id');
SELECT @extschema@._secure_table('@extschema@.transactions', 'user_id');
SELECT @extschema@._secure_table('@extschema@.transaction_idempotency_keys');
SELECT @extschema@._secure_table('@extschema@.transaction_events', 'user_id');
SELECT @extschema@._secure_view('@extschema@.transaction_summary');
SELECT @extschema@._secure_view('@extschema@.user_recent_transactions', p_authenticated => true);

REVOKE ALL ON SEQUENCE @extschema@.transaction_reference_seq FROM PUBLIC, anon, authenticated;
GRANT USAGE, SELECT ON SEQUENCE @extschema@.transaction_reference_seq TO service_role;

COMMENT ON FUNCTION @extschema@._check_currency_code(text) IS
    'Internal: whether p_code is an active ISO 4217 code in capitals, the list create_transaction accepts; the CHECK of transactions.currency.';
COMMENT ON FUNCTION @extschema@.create_transaction(uuid, text, numeric, text, text, jsonb, text) IS
    'Creates a pending transaction with a unique reference and its created event; returns its id. With p_idempotency_key: the same key and the same user, type, amount and currency return the first call''s id and write nothing, any difference is 23505; concurrent callers with one key produce exactly one transaction.';

-- The status state machine: pending -> processing | completed | failed | cancelled;
-- processing -> completed | failed | cancelled; completed -> reversed. Every change writes one
-- transaction_events row naming who made it.
CREATE FUNCTION @extschema@.update_transaction_status(
    p_transaction_id uuid,
    p_new_status text,
    p_error_message text DEFAULT NULL
) RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t record;
    allowed text[];
BEGIN
    p_transaction_id := @extschema@._check_not_null('p_transaction_id', p_transaction_id);
    p_new_status := @extschema@._check_choice('p_new_status', p_new_status,
                                              ARRAY['pending', 'processing', 'completed', 'failed', 'cancelled', 'reversed']);
    -- The row lock serialises concurrent changes of one transaction.
    SELECT id, created_at, user_id, status INTO t
      FROM @extschema@.transactions
     WHERE id = p_transaction_id
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'transaction % does not exist', p_transaction_id USING ERRCODE = 'P0002';
    END IF;
    IF t.status = p_new_status THEN
        RETURN false;
    END IF;
    allowed := CASE t.status
        WHEN 'pending' THEN ARRAY['processing', 'completed', 'failed', 'cancelled']
        WHEN 'processing' THEN ARRAY['completed', 'failed', 'cancelled']
        WHEN 'completed' THEN ARRAY['reversed']
        ELSE ARRAY[]::text[]
    END;
    IF NOT p_new_status = ANY (allowed) THEN
        RAISE EXCEPTION 'transaction %: status % cannot change to %', p_transaction_id, t.status, p_new_status
            USING ERRCODE = '55000',
                  HINT = CASE WHEN cardinality(allowed) = 0 THEN format('%s is final', t.status)
                              ELSE format('from %s it may go to %s', t.status, array_to_string(allowed, ', ')) END;
    END IF;
    UPDATE @extschema@.transactions
       SET status = p_new_status,
           error_message = coalesce(p_error_message, error_message),
           completed_at = CASE WHEN p_new_status = 'completed' THEN now() ELSE completed_at END
     WHERE id = t.id AND created_at = t.created_at;
    INSERT INTO @extschema@.transaction_events
           (transaction_id, transaction_created_at, user_id, event_type, old_status, new_status, changed_by_user, error_message)
    VALUES (t.id, t.created_at, t.user_id, 'status_changed', t.status, p_new_status,
            @extschema@.request_user_id(), p_error_message);
    RETURN true;
END
$$;
COMMENT ON FUNCTION @extschema@.update_transaction_status(uuid, text, text) IS
    'Moves a transaction along its state machine (pending -> processing|completed|failed|cancelled; processing -> completed|failed|cancelled; completed -> reversed), writing one transaction_events row with the role and request_user_id() that made the change. True when changed, false when already in that status; forbidden change 55000; unknown id P0002.';
