-- The baseline: create_transaction's contract written in plpgsql, on the same tables, with the
-- same key-first protocol (validation, key lookup, key claim, transaction, event).
CREATE FUNCTION plpgsql_create_transaction(p_user_id uuid, p_type text, p_amount numeric,
                                           p_currency text DEFAULT 'RWF', p_idempotency_key text DEFAULT NULL,
                                           p_metadata jsonb DEFAULT '{}', p_correlation_id text DEFAULT NULL)
RETURNS uuid LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    k record;
    new_id uuid := gen_random_uuid();
    ts timestamptz := now();
    claimed integer;
BEGIN
    IF p_user_id IS NULL OR p_type IS NULL OR p_amount IS NULL OR p_currency IS NULL THEN
        RAISE EXCEPTION 'a required argument is NULL' USING ERRCODE = '22004';
    END IF;
    IF p_type NOT IN ('debit', 'credit', 'transfer', 'payment', 'refund', 'fee', 'commission') THEN
        RAISE EXCEPTION 'p_type: bad value %', p_type USING ERRCODE = '22023';
    END IF;
    IF p_amount = 'NaN' OR p_amount <= 0 OR p_amount > 1000000000000000 OR p_amount <> round(p_amount, 4) THEN
        RAISE EXCEPTION 'p_amount: bad value %', p_amount USING ERRCODE = '22023';
    END IF;
    IF NOT p_currency = ANY ('{AED,AFN,ALL,AMD,ANG,AOA,ARS,AUD,AWG,AZN,BAM,BBD,BDT,BGN,BHD,BIF,BMD,BND,BOB,BOV,BRL,BSD,BTN,BWP,BYN,BZD,CAD,CDF,CHE,CHF,CHW,CLF,CLP,CNY,COP,COU,CRC,CUP,CVE,CZK,DJF,DKK,DOP,DZD,EGP,ERN,ETB,EUR,FJD,FKP,GBP,GEL,GHS,GIP,GMD,GNF,GTQ,GYD,HKD,HNL,HTG,HUF,IDR,ILS,INR,IQD,IRR,ISK,JMD,JOD,JPY,KES,KGS,KHR,KMF,KPW,KRW,KWD,KYD,KZT,LAK,LBP,LKR,LRD,LSL,LYD,MAD,MDL,MGA,MKD,MMK,MNT,MOP,MRU,MUR,MVR,MWK,MXN,MXV,MYR,MZN,NAD,NGN,NIO,NOK,NPR,NZD,OMR,PAB,PEN,PGK,PHP,PKR,PLN,PYG,QAR,RON,RSD,RUB,RWF,SAR,SBD,SCR,SDG,SEK,SGD,SHP,SLE,SOS,SRD,SSP,STN,SVC,SYP,SZL,THB,TJS,TMT,TND,TOP,TRY,TTD,TWD,TZS,UAH,UGX,USD,USN,UYI,UYU,UYW,UZS,VED,VES,VND,VUV,WST,XAF,XAG,XAU,XBA,XBB,XBC,XBD,XCD,XCG,XDR,XOF,XPD,XPF,XPT,XSU,XUA,YER,ZAR,ZMW,ZWG}'::text[]) THEN
        RAISE EXCEPTION 'p_currency: bad value %', p_currency USING ERRCODE = '22023';
    END IF;
    IF length(p_idempotency_key) NOT BETWEEN 1 AND 255 OR jsonb_typeof(p_metadata) <> 'object'
       OR length(p_correlation_id) > 128 THEN
        RAISE EXCEPTION 'bad argument' USING ERRCODE = '22023';
    END IF;
    IF p_idempotency_key IS NOT NULL THEN
        SELECT * INTO k FROM transaction_idempotency_keys WHERE idempotency_key = p_idempotency_key;
        IF NOT FOUND THEN
            INSERT INTO transaction_idempotency_keys (idempotency_key, transaction_id, transaction_created_at, user_id, type, amount, currency)
            VALUES (p_idempotency_key, new_id, ts, p_user_id, p_type, p_amount, p_currency)
            ON CONFLICT (idempotency_key) DO NOTHING;
            GET DIAGNOSTICS claimed = ROW_COUNT;
            IF claimed = 0 THEN
                SELECT * INTO k FROM transaction_idempotency_keys WHERE idempotency_key = p_idempotency_key;
            END IF;
        END IF;
        IF k.transaction_id IS NOT NULL THEN
            IF k.user_id = p_user_id AND k.type = p_type AND k.amount = p_amount AND k.currency = p_currency THEN
                RETURN k.transaction_id;
            END IF;
            RAISE EXCEPTION 'idempotency key % reused with different parameters', p_idempotency_key USING ERRCODE = '23505';
        END IF;
    END IF;
    INSERT INTO transactions (id, reference, user_id, type, amount, currency, idempotency_key, metadata, correlation_id, created_at, updated_at)
    VALUES (new_id,
            'TX-' || to_char(ts AT TIME ZONE 'UTC', 'YYMMDD') || '-' || lpad(upper(to_hex(nextval('transaction_reference_seq'))), 8, '0'),
            p_user_id, p_type, p_amount, p_currency, p_idempotency_key, p_metadata, p_correlation_id, ts, ts);
    INSERT INTO transaction_events (transaction_id, transaction_created_at, user_id, event_type, new_status, changed_by_user, created_at)
    VALUES (new_id, ts, p_user_id, 'created', 'pending', request_user_id(), ts);
    RETURN new_id;
END $$;
