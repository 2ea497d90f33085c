-- Wallets: a double-entry ledger. Accounts hold balances, transfers move money from one account
-- to another (at once, or as a hold that is later posted, voided or expires), and every posted
-- movement writes one entry per account with the signed amount, the balance after and the
-- account's version after: an account's entries read like a bank statement and sum to its
-- balance. The writers (wallet_transfer, wallet_transfer_batch, post_wallet_hold,
-- void_wallet_hold, the fold and expiry steps) are native (src/wallets.rs); docs/reference/wallets.md
-- explains the locking and the hot accounts.
--
-- Amounts are numeric with the money rules of create_transaction (> 0, <= 10^15, at most 4
-- decimals). Balances are sums of such amounts, so they have at most 4 decimals too.

CREATE TABLE @extschema@.wallet_accounts (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- The owner: a user for kind 'user', none for platform and external accounts.
    user_id         uuid,
    currency        text NOT NULL CHECK (@extschema@._check_currency_code(currency)),
    kind            text NOT NULL DEFAULT 'user' CHECK (kind IN ('user', 'platform', 'external')),
    name            text CHECK (length(name) BETWEEN 1 AND 128),
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'frozen', 'closed')),
    -- The floor of the available balance: 0, or negative for a credit line; NULL (unbounded)
    -- for an external account, the world outside the ledger, whose balance is the negative of
    -- everything that entered it.
    min_balance     numeric CHECK (min_balance <= 0 AND min_balance >= -1000000000000000
                                   AND min_balance = round(min_balance, 4)),
    posted          numeric NOT NULL DEFAULT 0,
    -- Reserved by open holds: debits lower the available balance, credits are only shown.
    -- A hot account's pending credits are not kept here (see wallet_hot_credits).
    pending_debits  numeric NOT NULL DEFAULT 0 CHECK (pending_debits >= 0),
    pending_credits numeric NOT NULL DEFAULT 0 CHECK (pending_credits >= 0),
    -- One more per entry: the number of entries the account has (folded ones, for a hot account).
    version         bigint NOT NULL DEFAULT 0 CHECK (version >= 0),
    -- Credits to a hot account do not lock its row (see wallet_hot_credits). Fixed at creation.
    hot             boolean NOT NULL DEFAULT false,
    metadata        jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT wallet_accounts_owner_check CHECK ((kind = 'user') = (user_id IS NOT NULL)),
    CONSTRAINT wallet_accounts_unbounded_check CHECK ((kind = 'external') = (min_balance IS NULL)),
    -- The last line of defence behind the helpers' EW001: no available balance below its floor.
    CONSTRAINT wallet_accounts_floor_check CHECK (min_balance IS NULL OR posted - pending_debits >= min_balance),
    CONSTRAINT wallet_accounts_closed_check
        CHECK (status <> 'closed' OR (posted = 0 AND pending_debits = 0 AND pending_credits = 0))
);
CREATE INDEX wallet_accounts_user_idx ON @extschema@.wallet_accounts (user_id) WHERE user_id IS NOT NULL;
COMMENT ON TABLE @extschema@.wallet_accounts IS
    'Wallet accounts (user, platform, external) with their posted balance, pending holds, floor of the available balance and version (one per entry). Create with create_wallet_account(); balances change only through the wallet transfer helpers.';

-- Transfers: posted at once, or a hold (pending, with expires_at) that a later call posts (a new
-- transfer with pending_id = the hold, for the held amount or less), voids, or that expires.
CREATE TABLE @extschema@.wallet_transfers (
    id                uuid PRIMARY KEY,
    debit_account_id  uuid NOT NULL,
    credit_account_id uuid NOT NULL,
    -- The accounts' owners, copied so RLS needs no join.
    debit_user_id     uuid,
    credit_user_id    uuid,
    amount            numeric NOT NULL
                          CHECK (amount > 0 AND amount <= 1000000000000000 AND amount = round(amount, 4)),
    currency          text NOT NULL CHECK (@extschema@._check_currency_code(currency)),
    status            text NOT NULL CHECK (status IN ('posted', 'pending', 'voided', 'expired')),
    -- For a hold: when it lapses. NULL for a transfer posted at once.
    expires_at        timestamptz,
    -- For the transfer that posts a hold: the hold.
    pending_id        uuid,
    -- When a hold was posted, voided or expired.
    resolved_at       timestamptz,
    -- Opaque, compared byte by byte (see transaction_idempotency_keys).
    idempotency_key   text COLLATE "C" UNIQUE CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    transaction_id    uuid,
    metadata          jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    created_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT wallet_transfers_accounts_check CHECK (debit_account_id <> credit_account_id),
    CONSTRAINT wallet_transfers_hold_check CHECK (expires_at IS NOT NULL OR status = 'posted'),
    CONSTRAINT wallet_transfers_post_check CHECK (pending_id IS NULL OR (expires_at IS NULL AND status = 'posted'))
);
CREATE INDEX wallet_transfers_debit_idx ON @extschema@.wallet_transfers (debit_account_id, created_at DESC);
CREATE INDEX wallet_transfers_credit_idx ON @extschema@.wallet_transfers (credit_account_id, created_at DESC);
-- Open holds: what expiry looks for, and a hot account's pending credits.
CREATE INDEX wallet_transfers_open_holds_idx ON @extschema@.wallet_transfers (expires_at)
    WHERE status = 'pending';
CREATE INDEX wallet_transfers_open_credits_idx ON @extschema@.wallet_transfers (credit_account_id)
    WHERE status = 'pending';
CREATE INDEX wallet_transfers_pending_idx ON @extschema@.wallet_transfers (pending_id)
    WHERE pending_id IS NOT NULL;
CREATE INDEX wallet_transfers_transaction_idx ON @extschema@.wallet_transfers (transaction_id)
    WHERE transaction_id IS NOT NULL;
COMMENT ON TABLE @extschema@.wallet_transfers IS
    'Wallet transfers: posted at once, or holds (pending until expires_at) later posted in full or less (a new transfer whose pending_id is the hold), voided or expired. Global idempotency keys; optional link to a transactions row.';

-- One row per account per posted movement. The primary key makes versions unique per account;
-- the helpers make them gapless.
CREATE TABLE @extschema@.wallet_entries (
    account_id    uuid NOT NULL,
    -- The account's version after this entry (1 for its first).
    version       bigint NOT NULL CHECK (version > 0),
    transfer_id   uuid NOT NULL,
    -- The account's owner, copied so RLS needs no join.
    user_id       uuid,
    -- Signed: negative for the debited account, positive for the credited one.
    amount        numeric NOT NULL CHECK (amount <> 0),
    balance_after numeric NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, version)
);
CREATE INDEX wallet_entries_transfer_idx ON @extschema@.wallet_entries (transfer_id);
COMMENT ON TABLE @extschema@.wallet_entries IS
    'Wallet entries: one per account per posted movement, with the signed amount, the balance after and the account version after; an account''s entries sum to its balance. Append-only.';

-- A credit to a hot account is written here instead of to the account's row, so concurrent
-- credits (every ride paying the platform's fee account) never wait for one another. The
-- account's posted balance is its row's plus these rows; a fold (at the account's next debit, a
-- status change, or run_maintenance()) moves them into wallet_entries in order, giving each its
-- version and balance after, and adds them to the row. Debits and holds on a hot account lock
-- its row as on any other, and see every committed credit.
CREATE TABLE @extschema@.wallet_hot_credits (
    account_id  uuid NOT NULL,
    -- UUIDv7: time-ordered, so folding in id order is folding in the order they came.
    id          uuid NOT NULL,
    transfer_id uuid NOT NULL,
    user_id     uuid,
    amount      numeric NOT NULL CHECK (amount > 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, id)
);
COMMENT ON TABLE @extschema@.wallet_hot_credits IS
    'Credits to hot wallet accounts not yet folded into the account row and wallet_entries: part of the balance (get_wallet_balance adds them), folded in order at the account''s next debit, status change or run_maintenance().';

-- Currency, kind and hot say how an account's balance is kept: they do not change. A status
-- change waits for credits in flight to a hot account (they hold a key-share lock on its row,
-- which FOR UPDATE waits for) and is refused where it would strand money.
CREATE FUNCTION @extschema@._wallet_accounts_before_update() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.id IS DISTINCT FROM OLD.id OR NEW.currency IS DISTINCT FROM OLD.currency
       OR NEW.kind IS DISTINCT FROM OLD.kind OR NEW.hot IS DISTINCT FROM OLD.hot THEN
        RAISE EXCEPTION 'wallet account %: id, currency, kind and hot are fixed at creation', OLD.id
            USING ERRCODE = '55000';
    END IF;
    IF NEW.status IS DISTINCT FROM OLD.status THEN
        IF OLD.status = 'closed' THEN
            RAISE EXCEPTION 'wallet account % is closed, which is final', OLD.id USING ERRCODE = '55000';
        END IF;
        IF OLD.hot THEN
            PERFORM 1 FROM @extschema@.wallet_accounts WHERE id = OLD.id FOR UPDATE;
        END IF;
        IF NEW.status = 'closed' THEN
            IF NEW.posted <> 0 OR NEW.pending_debits <> 0 OR NEW.pending_credits <> 0
               OR EXISTS (SELECT 1 FROM @extschema@.wallet_hot_credits WHERE account_id = OLD.id)
               OR EXISTS (SELECT 1 FROM @extschema@.wallet_transfers
                           WHERE credit_account_id = OLD.id AND status = 'pending') THEN
                RAISE EXCEPTION 'wallet account % cannot be closed: its balance is not zero or it has open holds', OLD.id
                    USING ERRCODE = '55000',
                          HINT = 'Move the balance out and post or void its holds first.';
            END IF;
        END IF;
    END IF;
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION @extschema@._wallet_accounts_before_update() IS
    'Internal trigger: keeps currency, kind and hot fixed (55000), makes closed final, refuses to close an account with money or open holds (55000), and makes a status change of a hot account wait for credits in flight.';
-- Only for the changes it guards: a balance update (every transfer) does not call it.
CREATE TRIGGER wallet_accounts_before_update BEFORE UPDATE ON @extschema@.wallet_accounts
    FOR EACH ROW
    WHEN (NEW.status IS DISTINCT FROM OLD.status OR NEW.id IS DISTINCT FROM OLD.id
          OR NEW.currency IS DISTINCT FROM OLD.currency OR NEW.kind IS DISTINCT FROM OLD.kind
          OR NEW.hot IS DISTINCT FROM OLD.hot)
    EXECUTE FUNCTION @extschema@._wallet_accounts_before_update();

-- No foreign keys point at wallet_accounts (each would cost a query per inserted row on the hot
-- path, as on transactions); the writers lock the accounts they touch, and this keeps what the
-- keys would give on delete.
CREATE FUNCTION @extschema@._wallet_accounts_before_delete() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM @extschema@.wallet_entries WHERE account_id = OLD.id)
       OR EXISTS (SELECT 1 FROM @extschema@.wallet_hot_credits WHERE account_id = OLD.id)
       OR EXISTS (SELECT 1 FROM @extschema@.wallet_transfers WHERE debit_account_id = OLD.id)
       OR EXISTS (SELECT 1 FROM @extschema@.wallet_transfers WHERE credit_account_id = OLD.id) THEN
        RAISE EXCEPTION 'wallet account % has transfers and cannot be deleted', OLD.id
            USING ERRCODE = '23503', HINT = 'Close it instead.';
    END IF;
    RETURN OLD;
END
$$;
COMMENT ON FUNCTION @extschema@._wallet_accounts_before_delete() IS
    'Internal trigger: refuses to delete a wallet account that has transfers or entries (23503).';
CREATE TRIGGER wallet_accounts_before_delete BEFORE DELETE ON @extschema@.wallet_accounts
    FOR EACH ROW EXECUTE FUNCTION @extschema@._wallet_accounts_before_delete();

CREATE FUNCTION @extschema@.create_wallet_account(
    p_currency text,
    p_kind text DEFAULT 'user',
    p_user_id uuid DEFAULT NULL,
    p_name text DEFAULT NULL,
    p_min_balance numeric DEFAULT 0,
    p_hot boolean DEFAULT false,
    p_metadata jsonb DEFAULT '{}'
) RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_id uuid;
BEGIN
    p_currency := @extschema@._check_not_null('p_currency', p_currency);
    IF NOT @extschema@._check_currency_code(p_currency) THEN
        RAISE EXCEPTION 'p_currency: must be an ISO 4217 code in capitals (e.g. RWF, USD), got %', quote_literal(p_currency)
            USING ERRCODE = '22023';
    END IF;
    p_kind := @extschema@._check_choice('p_kind', p_kind, ARRAY['user', 'platform', 'external']);
    IF p_kind = 'user' THEN
        p_user_id := @extschema@._check_not_null('p_user_id', p_user_id);
    ELSIF p_user_id IS NOT NULL THEN
        RAISE EXCEPTION 'p_user_id: a % account has no owner, got %', p_kind, p_user_id USING ERRCODE = '22023';
    END IF;
    p_name := @extschema@._check_text('p_name', p_name, 128, false);
    IF p_kind = 'external' THEN
        IF p_min_balance IS DISTINCT FROM 0 AND p_min_balance IS NOT NULL THEN
            RAISE EXCEPTION 'p_min_balance: an external account has no floor, got %', p_min_balance
                USING ERRCODE = '22023';
        END IF;
        p_min_balance := NULL;
    ELSE
        p_min_balance := @extschema@._check_not_null('p_min_balance', p_min_balance);
        IF p_min_balance > 0 OR p_min_balance < -1000000000000000 OR p_min_balance <> round(p_min_balance, 4) THEN
            RAISE EXCEPTION 'p_min_balance: must be 0 or a negative credit line down to -1000000000000000 with at most 4 decimal places, got %', p_min_balance
                USING ERRCODE = '22023';
        END IF;
    END IF;
    p_hot := @extschema@._check_not_null('p_hot', p_hot);
    p_metadata := coalesce(@extschema@._check_json('p_metadata', p_metadata, 'object'), '{}');
    INSERT INTO @extschema@.wallet_accounts (user_id, currency, kind, name, min_balance, hot, metadata)
    VALUES (p_user_id, p_currency, p_kind, p_name, p_min_balance, p_hot, p_metadata)
    RETURNING id INTO new_id;
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION @extschema@.create_wallet_account(text, text, uuid, text, numeric, boolean, jsonb) IS
    'Creates a wallet account and returns its id. p_kind user (p_user_id required), platform or external (no owner, no floor); p_min_balance is the floor of the available balance (0, or negative for a credit line); p_hot makes credits to it lock-free (summed on read, folded later).';

-- Freezing stops every transfer into or out of the account (open holds may still be voided);
-- closing is final and needs a zero balance and no open hold.
CREATE FUNCTION @extschema@.set_wallet_account_status(p_account_id uuid, p_status text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current_status text;
    is_hot boolean;
BEGIN
    p_account_id := @extschema@._check_not_null('p_account_id', p_account_id);
    p_status := @extschema@._check_choice('p_status', p_status, ARRAY['active', 'frozen', 'closed']);
    -- FOR UPDATE: waits for credits in flight to a hot account, and keeps new ones out.
    SELECT status, hot INTO current_status, is_hot
      FROM @extschema@.wallet_accounts WHERE id = p_account_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'wallet account % does not exist', p_account_id USING ERRCODE = 'P0002';
    END IF;
    IF current_status = p_status THEN
        RETURN false;
    END IF;
    IF is_hot THEN
        PERFORM @extschema@._fold_wallet_credits(p_account_id);
    END IF;
    UPDATE @extschema@.wallet_accounts SET status = p_status, updated_at = now() WHERE id = p_account_id;
    RETURN true;
END
$$;
COMMENT ON FUNCTION @extschema@.set_wallet_account_status(uuid, text) IS
    'Sets a wallet account''s status (active, frozen, closed); true when changed, false when it already had it. Closed is final and needs a zero balance and no open hold (55000); unknown account P0002.';

CREATE FUNCTION @extschema@.get_wallet_balance(p_account_id uuid)
RETURNS TABLE(posted numeric, pending_debits numeric, pending_credits numeric, available numeric, version bigint)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    a record;
    unfolded numeric := 0;
    open_credits numeric := 0;
BEGIN
    p_account_id := @extschema@._check_not_null('p_account_id', p_account_id);
    SELECT w.posted, w.pending_debits, w.pending_credits, w.version, w.hot INTO a
      FROM @extschema@.wallet_accounts w WHERE w.id = p_account_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'wallet account % does not exist', p_account_id USING ERRCODE = 'P0002';
    END IF;
    IF a.hot THEN
        SELECT coalesce(sum(c.amount), 0) INTO unfolded
          FROM @extschema@.wallet_hot_credits c WHERE c.account_id = p_account_id;
        SELECT coalesce(sum(t.amount), 0) INTO open_credits
          FROM @extschema@.wallet_transfers t WHERE t.credit_account_id = p_account_id AND t.status = 'pending';
    END IF;
    posted := a.posted + unfolded;
    pending_debits := a.pending_debits;
    pending_credits := a.pending_credits + open_credits;
    available := posted - pending_debits;
    version := a.version;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION @extschema@.get_wallet_balance(uuid) IS
    'A wallet account''s posted balance, pending debits and credits of its open holds, available balance (posted - pending_debits) and version (its number of entries; a hot account''s credits not yet folded count in the balance, not in the version). Unknown (or, for authenticated, not its own) account P0002.';

CREATE FUNCTION @extschema@.wallet_history(p_account_id uuid, p_before_version bigint DEFAULT NULL, p_limit integer DEFAULT 50)
RETURNS SETOF @extschema@.wallet_entries
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    p_account_id := @extschema@._check_not_null('p_account_id', p_account_id);
    p_limit := @extschema@._check_range('p_limit', p_limit, 1, 1000);
    IF p_before_version IS NOT NULL AND p_before_version < 1 THEN
        RAISE EXCEPTION 'p_before_version: must be at least 1, got %', p_before_version USING ERRCODE = '22023';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM @extschema@.wallet_accounts WHERE id = p_account_id) THEN
        RAISE EXCEPTION 'wallet account % does not exist', p_account_id USING ERRCODE = 'P0002';
    END IF;
    RETURN QUERY
        SELECT * FROM @extschema@.wallet_entries e
         WHERE e.account_id = p_account_id
           AND (p_before_version IS NULL OR e.version < p_before_version)
         ORDER BY e.version DESC
         LIMIT p_limit;
END
$$;
COMMENT ON FUNCTION @extschema@.wallet_history(uuid, bigint, integer) IS
    'A wallet account''s entries, newest first, p_limit (1 to 1000) at a time: pass the last version seen as p_before_version for the next page. Unknown (or, for authenticated, not its own) account P0002.';

-- The proof the ledger holds: per currency the balances sum to zero (money moves, it is never
-- made or destroyed), and every account's balance, version and pending amounts agree with its
-- entries and open holds.
CREATE FUNCTION @extschema@.reconcile_wallets()
RETURNS TABLE(currency text, balance_sum numeric, accounts_mismatched bigint, ok boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH entries AS (
        SELECT account_id, sum(amount) AS total, count(*) AS n, max(version) AS last
          FROM @extschema@.wallet_entries GROUP BY account_id
    ), unfolded AS (
        SELECT account_id, sum(amount) AS total FROM @extschema@.wallet_hot_credits GROUP BY account_id
    ), holds_out AS (
        SELECT debit_account_id AS account_id, sum(amount) AS total
          FROM @extschema@.wallet_transfers WHERE status = 'pending' GROUP BY debit_account_id
    ), holds_in AS (
        SELECT credit_account_id AS account_id, sum(amount) AS total
          FROM @extschema@.wallet_transfers WHERE status = 'pending' GROUP BY credit_account_id
    ), checked AS (
        SELECT a.currency,
               a.posted + coalesce(u.total, 0) AS balance,
               a.posted = coalesce(e.total, 0)
                   AND a.version = coalesce(e.n, 0)
                   AND a.version = coalesce(e.last, 0)
                   AND a.pending_debits = coalesce(o.total, 0)
                   AND a.pending_credits = CASE WHEN a.hot THEN 0 ELSE coalesce(i.total, 0) END
                   AND (a.hot OR u.total IS NULL) AS consistent
          FROM @extschema@.wallet_accounts a
          LEFT JOIN entries e ON e.account_id = a.id
          LEFT JOIN unfolded u ON u.account_id = a.id
          LEFT JOIN holds_out o ON o.account_id = a.id
          LEFT JOIN holds_in i ON i.account_id = a.id
    )
    SELECT c.currency, sum(c.balance), count(*) FILTER (WHERE NOT c.consistent),
           sum(c.balance) = 0 AND count(*) FILTER (WHERE NOT c.consistent) = 0
      FROM checked c
     GROUP BY c.currency
     ORDER BY c.currency
$$;
COMMENT ON FUNCTION @extschema@.reconcile_wallets() IS
    'Per currency: the sum of all wallet balances (zero when no money was made or destroyed), the number of accounts whose balance, version or pending amounts disagree with their entries and open holds, and ok when both are right. A hot account''s unfolded credits count on both sides.';

SELECT @extschema@._secure_table('@extschema@.wallet_accounts', 'user_id');
SELECT @extschema@._secure_table('@extschema@.wallet_transfers');
SELECT @extschema@._secure_table('@extschema@.wallet_entries', 'user_id');
SELECT @extschema@._secure_table('@extschema@.wallet_hot_credits', 'user_id');
CREATE POLICY owner_read ON @extschema@.wallet_transfers FOR SELECT TO authenticated
    USING (debit_user_id = (SELECT @extschema@.request_user_id())
           OR credit_user_id = (SELECT @extschema@.request_user_id()));
GRANT SELECT ON TABLE @extschema@.wallet_transfers TO authenticated;
-- The ledger is append-only: entries are never changed or removed, transfers never removed
-- (a hold's status is the one thing that changes).
REVOKE UPDATE, DELETE ON TABLE @extschema@.wallet_entries FROM service_role;
REVOKE DELETE ON TABLE @extschema@.wallet_transfers FROM service_role;
REVOKE UPDATE ON TABLE @extschema@.wallet_hot_credits FROM service_role;

COMMENT ON FUNCTION @extschema@.wallet_transfer(uuid, uuid, numeric, text, integer, uuid, jsonb) IS
    'Moves p_amount from the debit to the credit account (same currency, both active), at once or, with p_hold_seconds, as a hold that reserves it until posted, voided or expired; returns the transfer id. Refusals write nothing: available balance below the floor EW001, account frozen or closed EW002, currency mismatch or the same account twice 22023, unknown account P0002. With p_idempotency_key: the same key, accounts, amount and kind return the first id; any difference 23505.';
COMMENT ON FUNCTION @extschema@.wallet_transfer_batch(jsonb) IS
    'Several wallet transfers (a JSON array of objects with debit_account_id, credit_account_id, amount and optional idempotency_key, hold_seconds, transaction_id, metadata) all or none, in order; returns their ids in input order. Any refusal refuses the whole batch with that leg''s SQLSTATE.';
COMMENT ON FUNCTION @extschema@.post_wallet_hold(uuid, numeric) IS
    'Posts an open hold, in full or p_amount of it (the rest is released); returns the id of the posting transfer. Unknown transfer P0002; more than held, or a hold posted, voided or expired 55000; account frozen or closed EW002.';
COMMENT ON FUNCTION @extschema@.void_wallet_hold(uuid) IS
    'Voids an open hold, releasing what it reserved; true. Unknown transfer P0002; a hold posted, voided or expired 55000.';
COMMENT ON FUNCTION @extschema@._fold_wallet_credits(uuid) IS
    'Internal: folds a hot wallet account''s committed credits into its row and wallet_entries, in order; returns how many it folded.';
COMMENT ON FUNCTION @extschema@._fold_all_wallet_credits() IS
    'Internal (run_maintenance): folds every hot wallet account''s credits; returns how many it folded.';
COMMENT ON FUNCTION @extschema@._expire_wallet_holds() IS
    'Internal (run_maintenance): releases open wallet holds past expires_at (status expired); returns how many.';
