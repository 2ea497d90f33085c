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
    display_hint     text CHECK (length(display_hint) <= 64),
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
COMMENT ON TABLE @extschema@.payment_methods IS
    'Users'' payment methods (card, mobile_money, bank_account, wallet, cash): account details only as ciphertext plus a display hint; at most one default per user.';

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
    currency          text NOT NULL DEFAULT 'RWF' CHECK (currency ~ '^[A-Z]{3}$'),
    status            text NOT NULL DEFAULT 'pending' CHECK (status IN
                          ('pending', 'processing', 'completed', 'failed', 'cancelled', 'reversed')),
    idempotency_key   text CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    payment_method_id uuid REFERENCES @extschema@.payment_methods (id) ON DELETE SET NULL,
    description       text,
    metadata          jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    correlation_id    text CHECK (length(correlation_id) <= 128),
    error_message     text,
    completed_at      timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
CREATE TABLE @extschema@.transactions_default PARTITION OF @extschema@.transactions DEFAULT;
CREATE INDEX transactions_user_created_idx ON @extschema@.transactions (user_id, created_at DESC);
CREATE INDEX transactions_open_status_idx
    ON @extschema@.transactions (status, created_at)
    WHERE status IN ('pending', 'processing');
CREATE INDEX transactions_reference_idx ON @extschema@.transactions (reference);
CREATE INDEX transactions_correlation_idx
    ON @extschema@.transactions (correlation_id)
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
    idempotency_key        text PRIMARY KEY CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    transaction_id         uuid NOT NULL,
    transaction_created_at timestamptz NOT NULL,
    user_id                uuid NOT NULL,
    type                   text NOT NULL,
    amount                 numeric NOT NULL,
    currency               text NOT NULL,
    created_at             timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (transaction_id, transaction_created_at)
        REFERENCES @extschema@.transactions (id, created_at) ON DELETE CASCADE
);
CREATE INDEX transaction_idempotency_keys_txn_idx
    ON @extschema@.transaction_idempotency_keys (transaction_id, transaction_created_at);
CREATE INDEX transaction_idempotency_keys_user_idx
    ON @extschema@.transaction_idempotency_keys (user_id);
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
    created_at             timestamptz NOT NULL DEFAULT now(),
    -- NO ACTION: a transaction cannot be deleted while its audit trail exists.
    FOREIGN KEY (transaction_id, transaction_created_at)
        REFERENCES @extschema@.transactions (id, created_at)
);
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
