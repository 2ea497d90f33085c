-- Erasing a user (erase_user_data): a user seeded into every table of the extension, an archived
-- month included; after the erasure a scan of every text, text[], jsonb, uuid and uuid[] column of
-- every table (walking the catalog: a table added later is scanned too) finds no trace of the
-- user's id, phone numbers or e-mail; money totals per currency are unchanged and the books
-- reconcile; another user's rows are untouched; a second call changes nothing and says so.
-- The seed is checked to reach every table of the extension: a new table that the seed (and so
-- the erasure) does not cover fails here.
\set VERBOSITY terse
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS easymo CASCADE;
CREATE EXTENSION easymo;
SELECT ensure_partitions(1) > 0 AS months;

\set a '00000000-0000-4000-8000-0000000000a1'
\set b '00000000-0000-4000-8000-0000000000b2'
\set a_phone '+250788123456'
\set a_email 'aline.uwase@example.com'

-- Rows with a trace of each identifier (in any text, text[], jsonb, uuid or uuid[] column),
-- per table, for a list of case-insensitive patterns.
CREATE FUNCTION pg_temp.traces(p_patterns text[], p_uuid uuid)
RETURNS TABLE (tab text, col text, n bigint)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    pattern text := array_to_string(ARRAY(SELECT regexp_replace(x, '([.^$*+?()\[\]{}|\\-])', '\\\1', 'g') FROM unnest(p_patterns) x), '|');
BEGIN
    FOR r IN
        SELECT c.oid::regclass AS t, a.attname, a.atttypid
          FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
         WHERE c.relnamespace IN ('public'::regnamespace, 'easymo_archive'::regnamespace) AND c.relkind = 'r'
           AND a.atttypid IN ('uuid'::regtype, 'uuid[]'::regtype, 'text'::regtype, 'text[]'::regtype, 'jsonb'::regtype)
         ORDER BY 1, 2
    LOOP
        tab := r.t::text; col := r.attname;
        IF r.atttypid = 'uuid'::regtype THEN
            EXECUTE format('SELECT count(*) FROM ONLY %s WHERE %I = $1', r.t, r.attname) INTO n USING p_uuid;
        ELSIF r.atttypid = 'uuid[]'::regtype THEN
            EXECUTE format('SELECT count(*) FROM ONLY %s WHERE $1 = ANY (%I)', r.t, r.attname) INTO n USING p_uuid;
        ELSE
            EXECUTE format('SELECT count(*) FROM ONLY %s WHERE %I::text ~* $1', r.t, r.attname) INTO n USING pattern;
        END IF;
        IF n > 0 THEN
            RETURN NEXT;
        END IF;
    END LOOP;
END $$;

-- Seed: users a and b in every table.
CREATE FUNCTION pg_temp.seed(u uuid, phone text, email text, tag text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    tx uuid;
    acct uuid;
    ext uuid;
    msg uuid;
BEGIN
    INSERT INTO locations (user_id, location_type, latitude, longitude, address, metadata)
    VALUES (u, 'pickup', -1.95, 30.06, 'KG 7 Ave, ' || email, jsonb_build_object('phone', phone));
    PERFORM update_whatsapp_session_activity(phone);
    UPDATE whatsapp_sessions SET user_id = u, metadata = jsonb_build_object('email', email) WHERE phone_number = phone;
    msg := enqueue_whatsapp_message(phone, 'text', jsonb_build_object('body', 'Hello ' || email));
    INSERT INTO payment_methods (user_id, type, provider, display_hint, metadata)
    VALUES (u, 'mobile_money', 'mtn', 'MoMo ...56', jsonb_build_object('email', email));
    PERFORM track_event('ride_requested', u, 'sess-' || u, jsonb_build_object('email', email));
    -- An old month, archived below.
    INSERT INTO analytics_events (event_name, user_id, session_id, properties, created_at)
    VALUES ('ride_requested', u, 'old-' || u, jsonb_build_object('phone', phone), now() - interval '14 months');
    INSERT INTO feature_flag_evaluations (flag_key, user_id, environment, result, reason, context)
    VALUES ('f', u, 'production', true, 'all', jsonb_build_object('email', email));
    PERFORM set_cache('profile:' || u, jsonb_build_object('email', email, 'phone', phone), 600, 'profile', ARRAY['user:' || u], 'owner', u);
    PERFORM set_cache('service-note:' || tag, jsonb_build_object('about', u), 600);
    PERFORM set_notification_preference(u, 'email', true);
    PERFORM send_notification(u, 'receipt', 'Receipt for ' || email, 'Paid from ' || phone, jsonb_build_object('user', u),
                              ARRAY['email', 'push', 'whatsapp'], 5, 'receipt-' || u);
    tx := create_transaction(u, 'payment', 1500, 'RWF', 'ride-' || u, jsonb_build_object('email', email), 'corr-' || tag);
    PERFORM update_transaction_status(tx, 'failed', 'card of ' || email || ' declined');
    UPDATE transactions SET description = 'Ride for ' || phone WHERE id = tx;
    ext := create_wallet_account('RWF', 'external', p_name => 'momo ' || tag);
    acct := create_wallet_account('RWF', 'user', u, 'Wallet of ' || email, 0, false, jsonb_build_object('phone', phone));
    PERFORM wallet_transfer(ext, acct, 5000, 'topup-' || u, NULL, tx, jsonb_build_object('email', email));
    PERFORM wallet_transfer(acct, (SELECT id FROM wallet_accounts WHERE name = 'fees'), 100, NULL, NULL, NULL, jsonb_build_object('rider', u));
    PERFORM append_event(u::text, 'rider', 'rider.registered', jsonb_build_object('email', email, 'phone', phone));
    PERFORM append_event('ride-' || tag, 'ride', 'ride.requested', jsonb_build_object('rider', u));
    PERFORM enqueue_message('receipts', 'send', jsonb_build_object('to', email), 5, now(), 'receipt-' || u, 'user-' || u);
    PERFORM schedule_job('export', 'export for ' || email, jsonb_build_object('user', u));
    PERFORM record_metric('api', 'counter', 'logins', 1, NULL, jsonb_build_object('user', u));
    PERFORM log_audit_event('user', u::text, 'login', 'session', phone, jsonb_build_object('email', email));
    PERFORM set_service_config('crm', 'production', 'vip-' || tag, jsonb_build_object('email', email));
    PERFORM register_service('svc-' || tag, 'api', '1.0', 'http://' || tag, NULL, '[]', '[]');
    UPDATE service_registry SET metadata = jsonb_build_object('owner_email', email) WHERE service_name = 'svc-' || tag;
    UPDATE feature_flags SET target_users = target_users || u WHERE key = 'f';
    INSERT INTO routes (origin_lat, origin_lng, dest_lat, dest_lng, distance_meters, duration_seconds, provider, expires_at)
    VALUES (-1.95, 30.06, -1.94, 30.07, 1500, 300, 'osrm for ' || email, now() + interval '1 hour');
    INSERT INTO cache_stat_counters (cache_type, hits, misses) VALUES ('by-' || u, 1, 0);
    INSERT INTO feature_flag_exposure_counters (flag_key, environment, variant, enabled, evaluations)
    VALUES ('f-' || u, 'production', '', true, 1);
    INSERT INTO alert_rules (rule, environment, threshold, description) VALUES ('queue_backlog', 'env-' || tag, 5, 'paged ' || phone);
    INSERT INTO alert_events (rule, subject, severity, value, threshold) VALUES ('queue_backlog', 'message_queue:' || u, 'warning', 1, 0);
END $$;
INSERT INTO feature_flags (key, name, enabled, rollout_strategy, target_users) VALUES ('f', 'F', true, 'user_list', '{}');
SELECT create_wallet_account('RWF', 'platform', p_name => 'fees', p_hot => true) IS NOT NULL AS fees;
SELECT pg_temp.seed(:'a', :'a_phone', :'a_email', 'a');
SELECT pg_temp.seed(:'b', '+250788654321', 'bosco@example.com', 'b');
SELECT run_maintenance() -> 'errors' AS maintenance_errors;
-- A credit to a hot account of each user, left unfolded (maintenance folds them).
SELECT count(wallet_transfer((SELECT id FROM wallet_accounts WHERE name = 'momo ' || t),
                             create_wallet_account('RWF', 'user', u, 'savings', 0, true), 20))
  FROM (VALUES (:'a'::uuid, 'a'), (:'b'::uuid, 'b')) v(u, t);
-- A pending hold of a's, and its analytics month archived.
SELECT wallet_transfer((SELECT id FROM wallet_accounts WHERE user_id = :'a' AND NOT hot), (SELECT id FROM wallet_accounts WHERE name = 'fees'), 50, NULL, 600) AS hold \gset
SELECT archive_partitions('analytics_events', 12) AS months_archived;

-- The seed reaches every table of the extension (partitions: DEFAULT and months included, the
-- archive too): a table it misses is one the erasure was never shown to cover.
CREATE TEMP TABLE a_traces AS SELECT * FROM pg_temp.traces(ARRAY[:'a', :'a_phone', :'a_email'], :'a');
SELECT c.oid::regclass AS table_without_a_trace_of_a
  FROM pg_class c
 WHERE c.relnamespace IN ('public'::regnamespace, 'easymo_archive'::regnamespace) AND c.relkind IN ('r', 'p') AND NOT c.relispartition
   AND NOT EXISTS (SELECT 1 FROM (SELECT c.oid AS relid UNION SELECT relid FROM pg_partition_tree(c.oid)) p
                     JOIN a_traces t ON t.tab = p.relid::regclass::text)
 ORDER BY 1;
SELECT count(DISTINCT tab) > 30 AS tables_with_traces FROM a_traces;

-- Before: money per currency, the books, b's traces.
CREATE TEMP TABLE money_before AS
SELECT 'transactions' AS what, currency, sum(amount) AS total, count(*) AS n FROM transactions GROUP BY currency
UNION ALL SELECT 'wallet balances', currency, sum(posted), count(*) FROM wallet_accounts GROUP BY currency
UNION ALL SELECT 'wallet entries', a.currency, sum(e.amount), count(*) FROM wallet_entries e JOIN wallet_accounts a ON a.id = e.account_id GROUP BY a.currency;
CREATE TEMP TABLE b_before AS SELECT * FROM pg_temp.traces(ARRAY[:'b', '+250788654321', 'bosco@example.com'], :'b');

-- Refused while a's hold is pending (55006), nothing changed; bad input 22004 / 22023.
SELECT regress.error(format('SELECT erase_user_data(%L)', :'a')) AS pending_hold;
SELECT count(*) > 0 AS still_there FROM locations WHERE user_id = :'a';
SELECT regress.error($$SELECT erase_user_data(NULL)$$) AS null_user;
SELECT regress.error(format('SELECT erase_user_data(%L, ARRAY[%L])', :'a', 'not-an-email')) AS bad_email;
SELECT regress.error(format('SELECT erase_user_data(%L, p_phone_numbers => ARRAY[%L])', :'a', '0788')) AS bad_phone;
-- authenticated may not call it.
SET ROLE authenticated;
SELECT regress.error(format('SELECT erase_user_data(%L)', :'a')) AS not_for_end_users;
RESET ROLE;

-- Forced, as service_role: the hold is voided, then everything goes.
SET ROLE service_role;
SELECT erase_user_data(:'a', ARRAY[:'a_email'], p_force => true) AS report \gset
RESET ROLE;
SELECT (:'report')::jsonb ->> 'erased' AS erased;
SELECT regexp_replace(t.key, '_p[0-9]{4}_[0-9]{2}$', '_pYYYY_MM') AS tab, t.value AS what
  FROM jsonb_each((:'report')::jsonb -> 'tables') t ORDER BY 1;
SELECT status FROM wallet_transfers WHERE id = :'hold';
-- No trace of a's id, phone or e-mail anywhere.
SELECT * FROM pg_temp.traces(ARRAY[:'a', :'a_phone', :'a_email'], :'a');
-- Money is where it was, the books balance, b is untouched.
SELECT m.what, m.currency, m.total = b.total AND m.n = b.n AS unchanged
  FROM (SELECT 'transactions' AS what, currency, sum(amount) AS total, count(*) AS n FROM transactions GROUP BY currency
        UNION ALL SELECT 'wallet balances', currency, sum(posted), count(*) FROM wallet_accounts GROUP BY currency
        UNION ALL SELECT 'wallet entries', a.currency, sum(e.amount), count(*) FROM wallet_entries e JOIN wallet_accounts a ON a.id = e.account_id GROUP BY a.currency) m
  JOIN money_before b USING (what, currency) ORDER BY 1, 2;
SELECT bool_and(ok) AS books_reconcile FROM reconcile_wallets();
SELECT (SELECT array_agg(x ORDER BY x) FROM (SELECT (t.*)::text AS x FROM pg_temp.traces(ARRAY[:'b', '+250788654321', 'bosco@example.com'], :'b') t) s)
     = (SELECT array_agg(x ORDER BY x) FROM (SELECT (t.*)::text AS x FROM b_before t) s) AS b_untouched;
-- What a's money rows became: one tombstone everywhere, their sums per account intact.
SELECT count(DISTINCT user_id) AS one_tombstone FROM (
    SELECT user_id FROM transactions WHERE reference IS NOT NULL AND user_id <> :'b'
    UNION ALL SELECT user_id FROM wallet_accounts WHERE kind = 'user' AND user_id <> :'b'
    UNION ALL SELECT user_id FROM wallet_entries WHERE user_id IS NOT NULL AND user_id <> :'b') x;
SELECT name IS NULL AS name_cleared, metadata = '{}' AS metadata_cleared, posted = (SELECT coalesce(sum(amount), 0) FROM wallet_entries e WHERE e.account_id = w.id) AS balance_is_entries
  FROM wallet_accounts w WHERE kind = 'user' AND user_id <> :'b' ORDER BY hot;
-- One audit row, without the personal data (the scan above covered it): the id's hash only.
SELECT action, resource_type, resource_id = encode(sha256(convert_to(:'a', 'UTF8')), 'hex') AS hashed_id, metadata ? 'tables' AS counts
  FROM system_audit_logs WHERE action = 'user.erased';

-- Again: nothing left, nothing done, no second audit row.
SET ROLE service_role;
SELECT erase_user_data(:'a', ARRAY[:'a_email'], ARRAY[:'a_phone']) AS again;
RESET ROLE;
SELECT count(*) AS audit_rows FROM system_audit_logs WHERE action = 'user.erased';
