-- The baseline: wallet_transfer's contract (posted transfers) written in plpgsql on the same
-- tables, the pgledger way: key looked up, both accounts locked in id order (FOR UPDATE), checked,
-- the transfer claimed by its key, each balance updated with its version, two entries written.
-- A hot account is, here, a row like any other.
CREATE FUNCTION plpgsql_wallet_transfer(p_debit_account_id uuid, p_credit_account_id uuid, p_amount numeric,
                                        p_idempotency_key text DEFAULT NULL)
RETURNS uuid LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    k record;
    a record;
    d record;
    c record;
    new_id uuid := gen_random_uuid();
    ts timestamptz := now();
    claimed integer;
BEGIN
    IF p_debit_account_id IS NULL OR p_credit_account_id IS NULL OR p_amount IS NULL THEN
        RAISE EXCEPTION 'a required argument is NULL' USING ERRCODE = '22004';
    END IF;
    IF p_debit_account_id = p_credit_account_id THEN
        RAISE EXCEPTION 'the same account twice' USING ERRCODE = '22023';
    END IF;
    IF p_amount = 'NaN' OR p_amount <= 0 OR p_amount > 1000000000000000 OR p_amount <> round(p_amount, 4) THEN
        RAISE EXCEPTION 'p_amount: bad value %', p_amount USING ERRCODE = '22023';
    END IF;
    IF length(p_idempotency_key) NOT BETWEEN 1 AND 255 THEN
        RAISE EXCEPTION 'bad key' USING ERRCODE = '22023';
    END IF;
    IF p_idempotency_key IS NOT NULL THEN
        SELECT id, debit_account_id, credit_account_id, amount INTO k
          FROM wallet_transfers WHERE idempotency_key = p_idempotency_key;
        IF FOUND THEN
            IF k.debit_account_id = p_debit_account_id AND k.credit_account_id = p_credit_account_id AND k.amount = p_amount THEN
                RETURN k.id;
            END IF;
            RAISE EXCEPTION 'idempotency key % reused with different parameters', p_idempotency_key USING ERRCODE = '23505';
        END IF;
    END IF;
    FOR a IN SELECT * FROM wallet_accounts WHERE id IN (p_debit_account_id, p_credit_account_id) ORDER BY id FOR UPDATE LOOP
        IF a.id = p_debit_account_id THEN d := a; ELSE c := a; END IF;
    END LOOP;
    IF d.id IS NULL OR c.id IS NULL THEN
        RAISE EXCEPTION 'unknown account' USING ERRCODE = 'P0002';
    END IF;
    IF d.currency <> c.currency THEN
        RAISE EXCEPTION 'currency mismatch' USING ERRCODE = '22023';
    END IF;
    IF d.status <> 'active' OR c.status <> 'active' THEN
        RAISE EXCEPTION 'account not active' USING ERRCODE = 'EW002';
    END IF;
    IF d.min_balance IS NOT NULL AND d.posted - d.pending_debits - p_amount < d.min_balance THEN
        RAISE EXCEPTION 'insufficient available balance' USING ERRCODE = 'EW001';
    END IF;
    INSERT INTO wallet_transfers (id, debit_account_id, credit_account_id, debit_user_id, credit_user_id, amount,
                                  currency, status, idempotency_key, created_at)
    VALUES (new_id, d.id, c.id, d.user_id, c.user_id, p_amount, d.currency, 'posted', p_idempotency_key, ts)
    ON CONFLICT (idempotency_key) DO NOTHING;
    GET DIAGNOSTICS claimed = ROW_COUNT;
    IF claimed = 0 THEN
        RETURN plpgsql_wallet_transfer(p_debit_account_id, p_credit_account_id, p_amount, p_idempotency_key);
    END IF;
    UPDATE wallet_accounts SET posted = posted - p_amount, version = version + 1, updated_at = ts
     WHERE id = d.id RETURNING posted, version INTO d.posted, d.version;
    UPDATE wallet_accounts SET posted = posted + p_amount, version = version + 1, updated_at = ts
     WHERE id = c.id RETURNING posted, version INTO c.posted, c.version;
    INSERT INTO wallet_entries (account_id, version, transfer_id, user_id, amount, balance_after, created_at)
    VALUES (d.id, d.version, new_id, d.user_id, -p_amount, d.posted, ts),
           (c.id, c.version, new_id, c.user_id, p_amount, c.posted, ts);
    RETURN new_id;
END
$$;
