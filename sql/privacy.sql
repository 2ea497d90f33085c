-- Erasing a user (the right to be forgotten): the user's personal data leaves every table of the
-- extension, in one transaction; what the law requires to keep for money stays, detached from
-- the person.
--
--   deleted      what is only about the person: locations, WhatsApp sessions and the messages
--                to their numbers, payment methods, analytics events, flag evaluations, cache
--                entries they own, notifications with their deliveries, preferences and dedupe
--                keys;
--   detached     money (transactions, their keys and events, wallet accounts, transfers,
--                entries, hot credits): amounts and balances stay, the user id becomes a
--                tombstone (one random id per erasure, the same in every table, so sums per
--                account and currency still reconcile), names, descriptions, errors and
--                metadata are cleared; event streams keyed to the user get the tombstone as key
--                and lose their payloads;
--   scrubbed     then every row of every table of the extension and of its archive, whatever the
--                table (present or added later), is searched: a uuid column equal to the user id
--                gets the tombstone, and the user id, phone numbers and e-mail addresses inside
--                text, text[] and jsonb columns are replaced by a token (the tombstone for the id,
--                `erased-<n>-<tombstone>` for the others, so unique columns stay unique).
--
-- The scrub reads every table once: an erasure costs a scan of the database. It runs as the
-- tables' owner (the wallet tables take writes from their helpers only); only service_role may
-- call it.
CREATE FUNCTION @extschema@.erase_user_data(
    p_user_id uuid,
    p_emails text[] DEFAULT '{}',
    p_phone_numbers text[] DEFAULT '{}',
    p_force boolean DEFAULT false
) RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    uid       text;
    tombstone uuid := gen_random_uuid();
    phones    text[];
    emails    text[];
    -- Each identifier found in text, as a case-insensitive regular expression, and its token.
    patterns  text[];
    tokens    text[];
    tables    jsonb := '{}'::jsonb;
    holds     bigint;
    in_flight bigint;
    n         bigint;
    total     bigint := 0;
    rel       regclass;
    relname   text;
    sets      text[];
    conds     text[];
    col       record;
    scrubbed  bigint;
BEGIN
    p_user_id := @extschema@._check_not_null('p_user_id', p_user_id);
    p_force := coalesce(p_force, false);
    IF EXISTS (SELECT 1 FROM unnest(coalesce(p_emails, '{}')) e
                WHERE e IS NULL OR length(e) > 320 OR e !~ '^[^@[:space:]]+@[^@[:space:]]+\.[^@[:space:]]+$') THEN
        RAISE EXCEPTION 'p_emails: each must be an e-mail address (local@domain.tld)' USING ERRCODE = '22023';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(coalesce(p_phone_numbers, '{}')) p WHERE p IS NULL OR p !~ '^\+[0-9]{8,15}$') THEN
        RAISE EXCEPTION 'p_phone_numbers: each must be an E.164 number (+ and 8 to 15 digits)' USING ERRCODE = '22023';
    END IF;
    uid := p_user_id::text;
    phones := ARRAY(SELECT DISTINCT x FROM (SELECT unnest(coalesce(p_phone_numbers, '{}'))
                                             UNION SELECT s.phone_number FROM @extschema@.whatsapp_sessions s WHERE s.user_id = p_user_id) p(x)
                     ORDER BY x);
    emails := ARRAY(SELECT DISTINCT lower(e) FROM unnest(coalesce(p_emails, '{}')) e ORDER BY 1);

    -- Money in flight and messages on their way are not erased from under their owners.
    SELECT count(*) INTO holds FROM @extschema@.wallet_transfers t
     WHERE t.status = 'pending' AND (t.debit_user_id = p_user_id OR t.credit_user_id = p_user_id);
    SELECT (SELECT count(*) FROM @extschema@.notification_deliveries d WHERE d.user_id = p_user_id AND d.status IN ('processing', 'queued'))
         + (SELECT count(*) FROM @extschema@.whatsapp_message_queue w WHERE w.recipient_phone = ANY (phones) AND w.status = 'processing')
      INTO in_flight;
    IF (holds > 0 OR in_flight > 0) AND NOT p_force THEN
        RAISE EXCEPTION 'user % has % pending wallet hold(s) and % message(s) in flight', p_user_id, holds, in_flight
            USING ERRCODE = '55006',
                  HINT = 'Post or void the holds and let the deliveries finish, or erase with p_force => true (the holds are voided, the deliveries dropped).';
    END IF;
    IF holds > 0 THEN
        PERFORM @extschema@.void_wallet_hold(t.id) FROM @extschema@.wallet_transfers t
          WHERE t.status = 'pending' AND (t.debit_user_id = p_user_id OR t.credit_user_id = p_user_id);
        tables := tables || jsonb_build_object('wallet_transfers', jsonb_build_object('holds_voided', holds));
    END IF;

    -- What is only about the person: deleted (children first).
    DELETE FROM @extschema@.notification_dedupe_keys WHERE user_id = p_user_id;
    GET DIAGNOSTICS n = ROW_COUNT; tables := @extschema@._erasure_count(tables, 'notification_dedupe_keys', 'deleted', n);
    DELETE FROM @extschema@.notification_deliveries WHERE user_id = p_user_id;
    GET DIAGNOSTICS n = ROW_COUNT; tables := @extschema@._erasure_count(tables, 'notification_deliveries', 'deleted', n);
    DELETE FROM @extschema@.notifications WHERE user_id = p_user_id;
    GET DIAGNOSTICS n = ROW_COUNT; tables := @extschema@._erasure_count(tables, 'notifications', 'deleted', n);
    DELETE FROM @extschema@.notification_preferences WHERE user_id = p_user_id;
    GET DIAGNOSTICS n = ROW_COUNT; tables := @extschema@._erasure_count(tables, 'notification_preferences', 'deleted', n);
    DELETE FROM @extschema@.whatsapp_message_queue WHERE recipient_phone = ANY (phones);
    GET DIAGNOSTICS n = ROW_COUNT; tables := @extschema@._erasure_count(tables, 'whatsapp_message_queue', 'deleted', n);
    DELETE FROM @extschema@.whatsapp_sessions WHERE user_id = p_user_id OR phone_number = ANY (phones);
    GET DIAGNOSTICS n = ROW_COUNT; tables := @extschema@._erasure_count(tables, 'whatsapp_sessions', 'deleted', n);
    DELETE FROM @extschema@.locations WHERE user_id = p_user_id;
    GET DIAGNOSTICS n = ROW_COUNT; tables := @extschema@._erasure_count(tables, 'locations', 'deleted', n);
    -- (transactions.payment_method_id is set to NULL by its foreign key.)
    DELETE FROM @extschema@.payment_methods WHERE user_id = p_user_id;
    GET DIAGNOSTICS n = ROW_COUNT; tables := @extschema@._erasure_count(tables, 'payment_methods', 'deleted', n);
    DELETE FROM @extschema@.analytics_events WHERE user_id = p_user_id;
    GET DIAGNOSTICS n = ROW_COUNT; tables := @extschema@._erasure_count(tables, 'analytics_events', 'deleted', n);
    -- (and from the archived months of analytics_events)
    FOR rel, relname IN SELECT c.oid::regclass, 'easymo_archive.' || c.relname FROM pg_catalog.pg_class c
                WHERE c.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = 'easymo_archive')
                  AND c.relkind = 'r' AND c.relname ~ '^analytics_events_p[0-9]{4}_[0-9]{2}$'
    LOOP
        EXECUTE format('DELETE FROM %s WHERE user_id = $1', rel) USING p_user_id;
        GET DIAGNOSTICS n = ROW_COUNT; tables := @extschema@._erasure_count(tables, relname, 'deleted', n);
    END LOOP;
    DELETE FROM @extschema@.feature_flag_evaluations WHERE user_id = p_user_id;
    GET DIAGNOSTICS n = ROW_COUNT; tables := @extschema@._erasure_count(tables, 'feature_flag_evaluations', 'deleted', n);
    DELETE FROM @extschema@.cache_entries WHERE owner_user_id = p_user_id;
    GET DIAGNOSTICS n = ROW_COUNT; tables := @extschema@._erasure_count(tables, 'cache_entries', 'deleted', n);

    -- Money: kept, detached from the person.
    UPDATE @extschema@.transactions
       SET user_id = tombstone, description = NULL, metadata = '{}', error_message = NULL, correlation_id = NULL
     WHERE user_id = p_user_id;
    GET DIAGNOSTICS n = ROW_COUNT; tables := @extschema@._erasure_count(tables, 'transactions', 'detached', n);
    UPDATE @extschema@.transaction_idempotency_keys SET user_id = tombstone WHERE user_id = p_user_id;
    GET DIAGNOSTICS n = ROW_COUNT; tables := @extschema@._erasure_count(tables, 'transaction_idempotency_keys', 'detached', n);
    UPDATE @extschema@.transaction_events
       SET user_id = CASE WHEN user_id = p_user_id THEN tombstone ELSE user_id END,
           changed_by_user = CASE WHEN changed_by_user = p_user_id THEN tombstone ELSE changed_by_user END,
           metadata = '{}', error_message = NULL
     WHERE user_id = p_user_id OR changed_by_user = p_user_id;
    GET DIAGNOSTICS n = ROW_COUNT; tables := @extschema@._erasure_count(tables, 'transaction_events', 'detached', n);
    UPDATE @extschema@.wallet_accounts SET user_id = tombstone, name = NULL, metadata = '{}' WHERE user_id = p_user_id;
    GET DIAGNOSTICS n = ROW_COUNT; tables := @extschema@._erasure_count(tables, 'wallet_accounts', 'detached', n);
    UPDATE @extschema@.wallet_transfers
       SET debit_user_id = CASE WHEN debit_user_id = p_user_id THEN tombstone ELSE debit_user_id END,
           credit_user_id = CASE WHEN credit_user_id = p_user_id THEN tombstone ELSE credit_user_id END,
           metadata = '{}'
     WHERE debit_user_id = p_user_id OR credit_user_id = p_user_id;
    GET DIAGNOSTICS n = ROW_COUNT; tables := @extschema@._erasure_count(tables, 'wallet_transfers', 'detached', n);
    UPDATE @extschema@.wallet_entries SET user_id = tombstone WHERE user_id = p_user_id;
    GET DIAGNOSTICS n = ROW_COUNT; tables := @extschema@._erasure_count(tables, 'wallet_entries', 'detached', n);
    UPDATE @extschema@.wallet_hot_credits SET user_id = tombstone WHERE user_id = p_user_id;
    GET DIAGNOSTICS n = ROW_COUNT; tables := @extschema@._erasure_count(tables, 'wallet_hot_credits', 'detached', n);
    -- Streams keyed to the user: the tombstone as key, the payloads gone.
    UPDATE @extschema@.event_streams SET aggregate_id = tombstone::text WHERE aggregate_id = uid;
    GET DIAGNOSTICS n = ROW_COUNT; tables := @extschema@._erasure_count(tables, 'event_streams', 'detached', n);
    UPDATE @extschema@.event_store SET aggregate_id = tombstone::text, payload = '{}', metadata = '{}' WHERE aggregate_id = uid;
    GET DIAGNOSTICS n = ROW_COUNT; tables := @extschema@._erasure_count(tables, 'event_store', 'detached', n);

    -- Every other trace, in every table (partitions through their parent, archived months as
    -- tables of their own), one statement per table. A pass may make a trigger record a trace
    -- again (configuration history): passes repeat until one finds nothing.
    patterns := ARRAY[uid] || ARRAY(SELECT regexp_replace(x, '([.^$*+?()\[\]{}|\\-])', '\\\1', 'g') FROM unnest(phones || emails) x);
    tokens := ARRAY[tombstone::text] || ARRAY(SELECT 'erased-' || i || '-' || tombstone FROM generate_series(1, cardinality(phones || emails)) i);
    FOR pass IN 1 .. 3 LOOP
        scrubbed := 0;
        FOR rel, relname IN
            SELECT c.oid::regclass, CASE WHEN c.relnamespace = '@extschema@'::regnamespace THEN '' ELSE 'easymo_archive.' END || c.relname
              FROM pg_catalog.pg_class c
             WHERE c.relnamespace IN (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname IN ('@extschema@', 'easymo_archive'))
               AND c.relkind IN ('r', 'p') AND NOT c.relispartition
             ORDER BY c.relname
        LOOP
            sets := '{}'; conds := '{}';
            FOR col IN
                SELECT a.attname, a.atttypid FROM pg_catalog.pg_attribute a
                 WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
                   AND a.atttypid IN ('uuid'::regtype, 'uuid[]'::regtype, 'text'::regtype, 'text[]'::regtype,
                                      'jsonb'::regtype, 'varchar'::regtype)
                 ORDER BY a.attnum
            LOOP
                CASE col.atttypid
                WHEN 'uuid'::regtype THEN
                    sets := sets || format('%I = CASE WHEN %I = $1 THEN $2 ELSE %I END', col.attname, col.attname, col.attname);
                    conds := conds || format('%I = $1', col.attname);
                WHEN 'uuid[]'::regtype THEN
                    sets := sets || format('%I = array_replace(%I, $1, $2)', col.attname, col.attname);
                    conds := conds || format('$1 = ANY (%I)', col.attname);
                WHEN 'text[]'::regtype THEN
                    sets := sets || format('%I = ARRAY(SELECT %s FROM unnest(%I) WITH ORDINALITY u(x, i) ORDER BY u.i)',
                                           col.attname, @extschema@._erasure_replace('u.x', cardinality(patterns)), col.attname);
                    conds := conds || format('array_to_string(%I, %L) ~* $5', col.attname, E'\x01');
                WHEN 'jsonb'::regtype THEN
                    sets := sets || format('%I = (%s)::jsonb', col.attname, @extschema@._erasure_replace(format('%I::text', col.attname), cardinality(patterns)));
                    conds := conds || format('%I::text ~* $5', col.attname);
                ELSE
                    sets := sets || format('%I = %s', col.attname, @extschema@._erasure_replace(format('%I', col.attname), cardinality(patterns)));
                    conds := conds || format('%I ~* $5', col.attname);
                END CASE;
            END LOOP;
            CONTINUE WHEN cardinality(sets) = 0;
            EXECUTE format('UPDATE %s SET %s WHERE %s', rel, array_to_string(sets, ', '), array_to_string(conds, ' OR '))
              USING p_user_id, tombstone, patterns, tokens, array_to_string(patterns, '|');
            GET DIAGNOSTICS n = ROW_COUNT;
            tables := @extschema@._erasure_count(tables, relname, 'scrubbed', n);
            scrubbed := scrubbed + n;
        END LOOP;
        EXIT WHEN scrubbed = 0;
    END LOOP;

    SELECT coalesce(sum(v.value::bigint), 0) INTO total FROM jsonb_each(tables) t, jsonb_each_text(t.value) v;
    IF total = 0 THEN
        RETURN jsonb_build_object('erased', false, 'tables', tables);
    END IF;
    -- One audit row, without the personal data: the user id only as its SHA-256 (whoever knows
    -- the id can find the record; the row alone names nobody).
    INSERT INTO @extschema@.system_audit_logs (actor_type, actor_identifier, action, resource_type, resource_id, metadata)
    VALUES ('system', coalesce(nullif(current_setting('role', true), 'none'), session_user), 'user.erased', 'user', encode(sha256(convert_to(uid, 'UTF8')), 'hex'),
            jsonb_build_object('tables', tables, 'forced', p_force AND (holds > 0 OR in_flight > 0)));
    RETURN jsonb_build_object('erased', true, 'tables', tables);
END
$$;
COMMENT ON FUNCTION @extschema@.erase_user_data(uuid, text[], text[], boolean) IS
    'Erases a user''s personal data from every table of the extension and its archive, in one transaction: deletes what is only about the person, keeps money rows detached (the user id replaced by a tombstone, names, descriptions and metadata cleared), and replaces every remaining trace of the user id, p_phone_numbers (and the numbers of the user''s WhatsApp sessions) and p_emails in any uuid, text, text[] or jsonb column. Refused (55006) while the user has a pending wallet hold or a message in flight, unless p_force (holds voided). Returns {erased, tables: {table: {deleted|detached|scrubbed: n}}}; a second call finds nothing and says so (erased false). Writes one audit row holding only the SHA-256 of the user id and the counts.';

-- The nested replacements of every identifier in `p_value` (an SQL expression of type text):
-- $3 holds the patterns, $4 their tokens.
CREATE FUNCTION @extschema@._erasure_replace(p_value text, p_identifiers integer)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce((SELECT string_agg('regexp_replace(', '' ORDER BY i) FROM generate_series(1, p_identifiers) i), '')
        || p_value
        || coalesce((SELECT string_agg(format(', $3[%s], $4[%s], ''gi'')', i, i), '' ORDER BY i) FROM generate_series(1, p_identifiers) i), '')
$$;
COMMENT ON FUNCTION @extschema@._erasure_replace(text, integer) IS
    'Internal (erase_user_data): the SQL expression that replaces each identifier pattern ($3[i]) by its token ($4[i]) in an expression.';

-- Adds a count to the report (nothing for zero).
CREATE FUNCTION @extschema@._erasure_count(p_tables jsonb, p_table text, p_what text, p_n bigint)
RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN coalesce(p_n, 0) = 0 THEN p_tables
                ELSE p_tables || jsonb_build_object(p_table,
                         coalesce(p_tables -> p_table, '{}'::jsonb)
                         || jsonb_build_object(p_what, coalesce((p_tables -> p_table ->> p_what)::bigint, 0) + p_n))
           END
$$;
COMMENT ON FUNCTION @extschema@._erasure_count(jsonb, text, text, bigint) IS
    'Internal (erase_user_data): adds p_n rows of p_what to p_table''s entry of the report.';
