-- easymo 0.2.0 -> 0.3.0: nothing lost, nothing leaked, no read that writes.
--   refuses a database whose encoding is not UTF8 (0A000), as a fresh install does
--   request_user_id()                  request.jwt.claims wins over the legacy request.jwt.claim.sub
--   queue functions                    written out one by one (no text templates), same behaviour
--   _check_currency_code(text)         transactions.currency is checked against the list
--                                      create_transaction uses
--   an index on transactions.payment_method_id (every partition): deleting a payment method no
--                                      longer scans every partition
--   partitions                         month partitions leave the extension; parents give their
--                                      primary key and indexes to the partitions (a plain pg_dump
--                                      restores every row)
--   _register_config_table(oid)        dropped (its C symbol stays for earlier versions)
--   cleanup_expired_cache(), invalidate_cache_by_tag()  return integer, as the reference says
--   _flush_stats()                     cache and flag counts leave the caller's transaction
--   cache_entries.visibility, owner_user_id, set_cache(..., p_visibility, p_owner_user_id)
--                                      who besides service_role may read an entry
--   is_feature_enabled, get_feature_variant  VOLATILE (they may log), PARALLEL RESTRICTED;
--                                      feature_flag_exposure_counters, feature_flag_exposures(),
--                                      feature_flag_overview.evaluations / evaluations_on
--   wallets                            wallet_accounts, wallet_transfers, wallet_entries,
--                                      wallet_hot_credits and their helpers (a double-entry ledger)
--   _check_*                           executable by authenticated (the wallet readers call them)
--   notifications                      notifications, notification_deliveries, notification_preferences,
--                                      notification_dedupe_keys, their helpers and channel workers
--   apply_retention('notifications'), run_maintenance steps for deliveries and dedupe keys
-- tests/pg_regress/sql/upgrade.sql checks that 0.2.0 updated by this script has exactly the
-- objects of a fresh 0.3.0 install. Frozen once released: later changes get a script of their own.

\echo Use "ALTER EXTENSION easymo UPDATE TO '0.3.0'" to load this file. \quit

DO $encoding$
BEGIN
    IF pg_catalog.getdatabaseencoding() OPERATOR(pg_catalog.<>) 'UTF8' THEN
        RAISE EXCEPTION 'easymo needs a database with encoding UTF8, this one is %', pg_catalog.getdatabaseencoding()
            USING ERRCODE = '0A000',
                  HINT = 'Create the database with ENCODING ''UTF8'' (and a UTF-8 or C locale, e.g. TEMPLATE template0 LOCALE ''C.UTF-8'') and install easymo there.';
    END IF;
END
$encoding$;

CREATE OR REPLACE FUNCTION @extschema@.request_user_id() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN nullif(current_setting('request.jwt.claims', true), '') IS NOT NULL
                THEN current_setting('request.jwt.claims', true)::jsonb ->> 'sub'
                ELSE nullif(current_setting('request.jwt.claim.sub', true), '')
           END::uuid
$$;
COMMENT ON FUNCTION @extschema@.request_user_id() IS
    'The calling user''s id: request.jwt.claims->>''sub'' when request.jwt.claims is set (NULL when it has no sub), else the legacy request.jwt.claim.sub, as uuid; NULL when neither is set. Used by every RLS policy.';


-- Queues (issue 19): receipts on every queue (deliveries counted by each claim, the receipt a
-- generated column), ordered groups and the order messages were queued in, the message queue's
-- claim native and able to wait for work, batches, receipts acted on natively.
CREATE SEQUENCE @extschema@.message_queue_seq;
COMMENT ON SEQUENCE @extschema@.message_queue_seq IS
    'The order messages were queued in (message_queue.seq): a group''s messages are delivered in it.';
ALTER TABLE @extschema@.message_queue
    ADD COLUMN deliveries integer NOT NULL DEFAULT 0 CHECK (deliveries >= 0),
    ADD COLUMN receipt text GENERATED ALWAYS AS
        (CASE WHEN deliveries > 0 THEN 'm:' || id::text || ':' || deliveries::text END) STORED,
    ADD COLUMN group_key text CHECK (length(group_key) BETWEEN 1 AND 255),
    ADD COLUMN seq bigint NOT NULL DEFAULT nextval('@extschema@.message_queue_seq');
CREATE INDEX message_queue_group_idx
    ON @extschema@.message_queue (queue_name, group_key, seq)
    WHERE group_key IS NOT NULL AND status IN ('pending', 'processing');
REVOKE ALL ON SEQUENCE @extschema@.message_queue_seq FROM PUBLIC, anon, authenticated;
GRANT USAGE, SELECT ON SEQUENCE @extschema@.message_queue_seq TO service_role;
SELECT pg_catalog.pg_extension_config_dump('@extschema@.message_queue_seq', '');
ALTER TABLE @extschema@.whatsapp_message_queue
    ADD COLUMN deliveries integer NOT NULL DEFAULT 0 CHECK (deliveries >= 0),
    ADD COLUMN receipt text GENERATED ALWAYS AS
        (CASE WHEN deliveries > 0 THEN 'w:' || id::text || ':' || deliveries::text END) STORED;
ALTER TABLE @extschema@.background_jobs
    ADD COLUMN deliveries integer NOT NULL DEFAULT 0 CHECK (deliveries >= 0),
    ADD COLUMN receipt text GENERATED ALWAYS AS
        (CASE WHEN deliveries > 0 THEN 'j:' || id::text || ':' || deliveries::text END) STORED;

CREATE FUNCTION @extschema@._queue_wake()
    RETURNS TRIGGER
    LANGUAGE c
    AS 'MODULE_PATHNAME', '_queue_wake_wrapper';
CREATE TRIGGER message_queue_wake AFTER INSERT ON @extschema@.message_queue
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._queue_wake();
COMMENT ON FUNCTION @extschema@._queue_wake() IS
    'Internal trigger (after INSERT on message_queue, per statement): the transaction''s commit wakes the read_messages calls waiting for work.';

DROP FUNCTION @extschema@.read_messages(text, integer, integer);
CREATE FUNCTION @extschema@.read_messages(
	"p_queue_name" TEXT,
	"p_batch_size" INT DEFAULT 10,
	"p_visibility_timeout_seconds" INT DEFAULT 30,
	"p_wait_ms" INT DEFAULT 0
) RETURNS SETOF @extschema@.message_queue
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'read_messages_wrapper';
CREATE FUNCTION @extschema@.ack_receipt(
	"p_receipt" TEXT,
	"p_provider_message_id" TEXT DEFAULT NULL,
	"p_result" jsonb DEFAULT NULL
) RETURNS bool
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'ack_receipt_wrapper';
CREATE FUNCTION @extschema@.ack_receipts(
	"p_receipts" TEXT[]
) RETURNS TABLE (
	"receipt" TEXT,
	"outcome" TEXT
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'ack_receipts_wrapper';
CREATE FUNCTION @extschema@.nack_receipt(
	"p_receipt" TEXT,
	"p_error" TEXT DEFAULT NULL
) RETURNS TEXT
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'nack_receipt_wrapper';
CREATE FUNCTION @extschema@.nack_receipts(
	"p_receipts" TEXT[],
	"p_error" TEXT DEFAULT NULL
) RETURNS TABLE (
	"receipt" TEXT,
	"outcome" TEXT
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'nack_receipts_wrapper';
CREATE FUNCTION @extschema@.extend_receipt(
	"p_receipt" TEXT,
	"p_seconds" INT
) RETURNS timestamp with time zone
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'extend_receipt_wrapper';

DROP FUNCTION @extschema@.enqueue_message(text, text, jsonb, integer, timestamptz, text);
CREATE FUNCTION @extschema@.enqueue_message(
	"p_queue_name" TEXT,
	"p_message_type" TEXT,
	"p_payload" jsonb,
	"p_priority" INT DEFAULT 5,
	"p_scheduled_at" timestamp with time zone DEFAULT now(),
	"p_idempotency_key" TEXT DEFAULT NULL,
	"p_group_key" TEXT DEFAULT NULL
) RETURNS uuid
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'enqueue_message_wrapper';
COMMENT ON FUNCTION @extschema@.enqueue_message(text, text, jsonb, integer, timestamptz, text, text) IS
    'Queues a message on p_queue_name (priority 1 most urgent to 10, due at p_scheduled_at; messages of one p_group_key are delivered one at a time, in order); a repeated (queue, idempotency key) returns the first message''s id. Consumers: read_messages, ack_receipt, nack_receipt, extend_receipt, replay_dead_letter.';

CREATE FUNCTION @extschema@.enqueue_messages(
	"p_queue_name" TEXT,
	"p_messages" jsonb
) RETURNS SETOF uuid
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'enqueue_messages_wrapper';
COMMENT ON FUNCTION @extschema@.enqueue_messages(text, jsonb) IS
    'Queues up to 1000 messages on p_queue_name in one statement: elements {message_type, payload, priority, delay_seconds, idempotency_key, group_key}; returns their ids in order (a repeated key, in the batch or already queued, gives the first message''s id). A bad element is 22023 naming it, and nothing is queued.';

-- read_messages is native (src/queues.rs): the same claim, plus the group rule and a wait for
-- work when asked.
COMMENT ON FUNCTION @extschema@.read_messages(text, integer, integer, integer) IS
    'Claims up to p_batch_size due messages of p_queue_name (priority, then age; FOR UPDATE SKIP LOCKED) for p_visibility_timeout_seconds; each row carries its receipt. An unacknowledged message is due again after that, counting as a failed delivery. A message of a group (group_key) is due only when no earlier message of its group is pending or in flight. With p_wait_ms (up to 600000), waits that long at most for a message, woken when a transaction that queued one commits (READ COMMITTED).';

CREATE OR REPLACE FUNCTION @extschema@.ack_message(p_message_id uuid)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    p_message_id := @extschema@._check_not_null('p_message_id', p_message_id);
    UPDATE @extschema@.message_queue t
       SET status = 'completed', locked_until = NULL, completed_at = now(), updated_at = now()
     WHERE t.id = p_message_id AND t.status = 'processing';
    IF FOUND THEN
        RETURN true;
    END IF;
    PERFORM @extschema@._queue_not_claimed('@extschema@.message_queue', 'message', p_message_id, 'processing', true);
    RETURN false;
END
$$;
COMMENT ON FUNCTION @extschema@.ack_message(uuid) IS
    'Deprecated (kept for 0.3.0, to be removed in the next version): acknowledges a claimed message by id (-> completed), even one whose lease passed and that another consumer claimed since; use ack_receipt. True, or false when it was not claimed; unknown id P0002.';

CREATE OR REPLACE FUNCTION @extschema@.nack_message(p_message_id uuid, p_error text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_status text;
BEGIN
    p_message_id := @extschema@._check_not_null('p_message_id', p_message_id);
    UPDATE @extschema@.message_queue t
       SET retry_count = t.retry_count + 1,
           status = CASE WHEN t.retry_count + 1 > t.max_retries THEN 'dead_letter' ELSE 'pending' END,
           scheduled_at = CASE WHEN t.retry_count + 1 > t.max_retries THEN t.scheduled_at
                               ELSE now() + @extschema@._retry_delay(t.retry_count + 1) END,
           locked_until = NULL,
           last_error = p_error,
           dead_lettered_at = CASE WHEN t.retry_count + 1 > t.max_retries THEN now() END,
           updated_at = now()
     WHERE t.id = p_message_id AND t.status = 'processing'
    RETURNING t.status INTO new_status;
    IF NOT FOUND THEN
        PERFORM @extschema@._queue_not_claimed('@extschema@.message_queue', 'message', p_message_id, 'processing', false);
    END IF;
    RETURN new_status;
END
$$;
COMMENT ON FUNCTION @extschema@.nack_message(uuid, text) IS
    'Deprecated (kept for 0.3.0, to be removed in the next version): gives a claimed message back by id; use nack_receipt. Pending again after an exponential backoff with jitter, or dead_letter after max_retries; returns the new status.';

-- Maintenance's bulk form of what a claim does to a message whose visibility timeout passed:
-- back to pending (due now) counting a failed delivery, or dead_letter past max_retries. Rows a
-- consumer holds locked right now are skipped, not waited for.
CREATE OR REPLACE FUNCTION @extschema@._release_expired_messages()
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    WITH expired AS (
        SELECT q.id FROM @extschema@.message_queue q
         WHERE q.status = 'processing' AND q.locked_until <= now()
           FOR UPDATE SKIP LOCKED
    )
    UPDATE @extschema@.message_queue t
       SET retry_count = t.retry_count + 1,
           status = CASE WHEN t.retry_count + 1 > t.max_retries THEN 'dead_letter' ELSE 'pending' END,
           scheduled_at = now(),
           locked_until = NULL,
           last_error = 'visibility timeout passed without an acknowledgement',
           dead_lettered_at = CASE WHEN t.retry_count + 1 > t.max_retries THEN now() END,
           updated_at = now()
      FROM expired
     WHERE t.id = expired.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
COMMENT ON FUNCTION @extschema@._release_expired_messages() IS
    'Internal: messages whose visibility timeout passed without an acknowledgement go back to pending (a failed delivery) or, past max_retries, to dead_letter; returns how many. Run by run_maintenance().';

CREATE OR REPLACE FUNCTION @extschema@.claim_whatsapp_messages(p_batch_size integer DEFAULT 10, p_visibility_timeout_seconds integer DEFAULT 30)
RETURNS SETOF @extschema@.whatsapp_message_queue
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    p_batch_size := @extschema@._check_range('p_batch_size', p_batch_size, 1, 1000);
    p_visibility_timeout_seconds := @extschema@._check_range('p_visibility_timeout_seconds', p_visibility_timeout_seconds, 0, 43200);
    RETURN QUERY
    WITH due AS (
        SELECT q.id FROM @extschema@.whatsapp_message_queue q
         WHERE q.status IN ('pending', 'processing')
           AND CASE q.status WHEN 'pending' THEN q.scheduled_at <= now() ELSE q.locked_until <= now() END
         ORDER BY q.priority, q.created_at, q.id
         LIMIT p_batch_size
           FOR UPDATE SKIP LOCKED
    ), claimed AS (
        -- A row still processing here had its visibility timeout pass: a failed delivery.
        UPDATE @extschema@.whatsapp_message_queue t
           SET retry_count = t.retry_count + (t.status = 'processing')::int,
               deliveries = t.deliveries + 1,
               status = CASE WHEN t.status = 'processing' AND t.retry_count + 1 > t.max_retries
                             THEN 'failed' ELSE 'processing' END,
               locked_until = now() + make_interval(secs => p_visibility_timeout_seconds),
               last_error = CASE WHEN t.status = 'processing'
                                 THEN 'visibility timeout passed without an acknowledgement' ELSE t.last_error END,
               updated_at = now()
          FROM due
         WHERE t.id = due.id
        RETURNING t.*
    )
    SELECT * FROM claimed c WHERE c.status = 'processing' ORDER BY c.priority, c.created_at, c.id;
END
$$;
COMMENT ON FUNCTION @extschema@.claim_whatsapp_messages(integer, integer) IS
    'Claims up to p_batch_size due outbound WhatsApp messages (priority, then age; FOR UPDATE SKIP LOCKED) for p_visibility_timeout_seconds; an unconfirmed message is due again after that, counting as a failed delivery.';

CREATE OR REPLACE FUNCTION @extschema@.complete_whatsapp_message(p_message_id uuid, p_provider_message_id text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    p_message_id := @extschema@._check_not_null('p_message_id', p_message_id);
    p_provider_message_id := @extschema@._check_text('p_provider_message_id', p_provider_message_id, 255, false);
    UPDATE @extschema@.whatsapp_message_queue t
       SET status = 'sent', locked_until = NULL, sent_at = now(),
           provider_message_id = coalesce(p_provider_message_id, t.provider_message_id), updated_at = now()
     WHERE t.id = p_message_id AND t.status = 'processing';
    IF FOUND THEN
        RETURN true;
    END IF;
    PERFORM @extschema@._queue_not_claimed('@extschema@.whatsapp_message_queue', 'WhatsApp message', p_message_id, 'processing', true);
    RETURN false;
END
$$;
COMMENT ON FUNCTION @extschema@.complete_whatsapp_message(uuid, text) IS
    'Marks a claimed WhatsApp message sent, with the provider''s message id: true, or false when it was not claimed; unknown id P0002.';

CREATE OR REPLACE FUNCTION @extschema@.fail_whatsapp_message(p_message_id uuid, p_error text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_status text;
BEGIN
    p_message_id := @extschema@._check_not_null('p_message_id', p_message_id);
    UPDATE @extschema@.whatsapp_message_queue t
       SET retry_count = t.retry_count + 1,
           status = CASE WHEN t.retry_count + 1 > t.max_retries THEN 'failed' ELSE 'pending' END,
           scheduled_at = CASE WHEN t.retry_count + 1 > t.max_retries THEN t.scheduled_at
                               ELSE now() + @extschema@._retry_delay(t.retry_count + 1) END,
           locked_until = NULL,
           last_error = p_error,
           updated_at = now()
     WHERE t.id = p_message_id AND t.status = 'processing'
    RETURNING t.status INTO new_status;
    IF NOT FOUND THEN
        PERFORM @extschema@._queue_not_claimed('@extschema@.whatsapp_message_queue', 'WhatsApp message', p_message_id, 'processing', false);
    END IF;
    RETURN new_status;
END
$$;
COMMENT ON FUNCTION @extschema@.fail_whatsapp_message(uuid, text) IS
    'Gives a claimed WhatsApp message back: pending again after an exponential backoff with jitter, or failed after max_retries; returns the new status.';

CREATE OR REPLACE FUNCTION @extschema@._release_expired_whatsapp_messages()
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    WITH expired AS (
        SELECT q.id FROM @extschema@.whatsapp_message_queue q
         WHERE q.status = 'processing' AND q.locked_until <= now()
           FOR UPDATE SKIP LOCKED
    )
    UPDATE @extschema@.whatsapp_message_queue t
       SET retry_count = t.retry_count + 1,
           status = CASE WHEN t.retry_count + 1 > t.max_retries THEN 'failed' ELSE 'pending' END,
           scheduled_at = now(),
           locked_until = NULL,
           last_error = 'visibility timeout passed without an acknowledgement',
           updated_at = now()
      FROM expired
     WHERE t.id = expired.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
COMMENT ON FUNCTION @extschema@._release_expired_whatsapp_messages() IS
    'Internal: WhatsApp messages whose visibility timeout passed without an acknowledgement go back to pending (a failed delivery) or, past max_retries, to failed; returns how many. Run by run_maintenance().';

CREATE OR REPLACE FUNCTION @extschema@.claim_jobs(p_job_types text[] DEFAULT NULL, p_batch_size integer DEFAULT 1, p_worker_id text DEFAULT NULL)
RETURNS SETOF @extschema@.background_jobs
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    p_batch_size := @extschema@._check_range('p_batch_size', p_batch_size, 1, 1000);
    p_worker_id := @extschema@._check_text('p_worker_id', p_worker_id, 255, false);
    RETURN QUERY
    WITH due AS (
        SELECT q.id FROM @extschema@.background_jobs q
         WHERE q.status = 'pending' AND q.scheduled_at <= now()
           AND (p_job_types IS NULL OR q.job_type = ANY (p_job_types))
         ORDER BY q.priority, q.created_at, q.id
         LIMIT p_batch_size
           FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE @extschema@.background_jobs t
           SET attempts = t.attempts + 1,
               deliveries = t.deliveries + 1,
               status = 'running',
               locked_until = now() + make_interval(secs => t.timeout_seconds),
               started_at = now(),
               worker_id = p_worker_id,
               updated_at = now()
          FROM due
         WHERE t.id = due.id
        RETURNING t.*
    )
    SELECT * FROM claimed c ORDER BY c.priority, c.created_at, c.id;
END
$$;
COMMENT ON FUNCTION @extschema@.claim_jobs(text[], integer, text) IS
    'Claims up to p_batch_size due jobs (of p_job_types, or any), priority then age, FOR UPDATE SKIP LOCKED; each is leased for its timeout_seconds (maintenance times out the ones that overrun) and counts an attempt.';

CREATE OR REPLACE FUNCTION @extschema@.complete_job(p_job_id uuid, p_result jsonb DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    p_job_id := @extschema@._check_not_null('p_job_id', p_job_id);
    UPDATE @extschema@.background_jobs t
       SET status = 'completed', locked_until = NULL, completed_at = now(), result = p_result, updated_at = now()
     WHERE t.id = p_job_id AND t.status = 'running';
    IF FOUND THEN
        RETURN true;
    END IF;
    PERFORM @extschema@._queue_not_claimed('@extschema@.background_jobs', 'job', p_job_id, 'running', true);
    RETURN false;
END
$$;
COMMENT ON FUNCTION @extschema@.complete_job(uuid, jsonb) IS
    'Completes a running job with its result: true, or false when it was not running; unknown id P0002.';

CREATE OR REPLACE FUNCTION @extschema@.fail_job(p_job_id uuid, p_error text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_status text;
BEGIN
    p_job_id := @extschema@._check_not_null('p_job_id', p_job_id);
    -- The claim counted the attempt already.
    UPDATE @extschema@.background_jobs t
       SET status = CASE WHEN t.attempts >= t.max_attempts THEN 'failed' ELSE 'pending' END,
           scheduled_at = CASE WHEN t.attempts >= t.max_attempts THEN t.scheduled_at
                               ELSE now() + @extschema@._retry_delay(t.attempts) END,
           locked_until = NULL,
           last_error = p_error,
           completed_at = CASE WHEN t.attempts >= t.max_attempts THEN now() END,
           updated_at = now()
     WHERE t.id = p_job_id AND t.status = 'running'
    RETURNING t.status INTO new_status;
    IF NOT FOUND THEN
        PERFORM @extschema@._queue_not_claimed('@extschema@.background_jobs', 'job', p_job_id, 'running', false);
    END IF;
    RETURN new_status;
END
$$;
COMMENT ON FUNCTION @extschema@.fail_job(uuid, text) IS
    'Gives a running job back: pending again after an exponential backoff with jitter, or failed after max_attempts; returns the new status.';


-- Partition ownership (sql/operations.sql says why): month partitions leave the extension (and
-- pg_dump's list of configuration tables), and each partitioned parent gives up its primary
-- key and indexes, which every partition keeps as its own. Detaching a partition keeps its
-- copies of the parent's indexes as indexes of its own; with no partition attached, dropping the
-- parent's drops only those; re-attaching then builds nothing. Re-attaching reads each
-- partition once (to check its rows against its bounds): on large tables run the update when a
-- full read of them is acceptable.
DO $partitions$
DECLARE
    ext_oid oid := (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'easymo');
    parent regclass;
    part record;
    parts regclass[];
    bounds text[];
    idx regclass;
    con name;
BEGIN
    FOR parent IN
        SELECT c.oid::regclass FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_class c ON c.oid = d.objid
         WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.refclassid = 'pg_catalog.pg_extension'::regclass
           AND d.refobjid = ext_oid AND d.deptype = 'e' AND c.relkind = 'p'
         ORDER BY c.relname
    LOOP
        parts := '{}';
        bounds := '{}';
        -- Months first, DEFAULT last: attaching the DEFAULT checks its rows against the months.
        FOR part IN
            SELECT c.oid::regclass AS rel, pg_catalog.pg_get_expr(c.relpartbound, c.oid) AS bound
              FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = parent
             ORDER BY pg_catalog.pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT', c.relname
        LOOP
            EXECUTE pg_catalog.format('ALTER TABLE %s DETACH PARTITION %s', parent, part.rel);
            parts := parts || part.rel;
            bounds := bounds || part.bound;
            IF part.bound <> 'DEFAULT' AND EXISTS (
                SELECT 1 FROM pg_catalog.pg_depend
                 WHERE classid = 'pg_catalog.pg_class'::regclass AND objid = part.rel
                   AND refclassid = 'pg_catalog.pg_extension'::regclass AND deptype = 'e') THEN
                EXECUTE pg_catalog.format('ALTER EXTENSION easymo DROP TABLE %s', part.rel);
            END IF;
        END LOOP;
        FOR con IN SELECT conname FROM pg_catalog.pg_constraint WHERE conrelid = parent AND contype = 'p' LOOP
            EXECUTE pg_catalog.format('ALTER TABLE %s DROP CONSTRAINT %I', parent, con);
        END LOOP;
        FOR idx IN SELECT indexrelid::regclass FROM pg_catalog.pg_index WHERE indrelid = parent LOOP
            EXECUTE pg_catalog.format('DROP INDEX %s', idx);
        END LOOP;
        FOR i IN 1 .. pg_catalog.array_length(parts, 1) LOOP
            EXECUTE pg_catalog.format('ALTER TABLE %s ATTACH PARTITION %s %s', parent, parts[i], bounds[i]);
        END LOOP;
    END LOOP;
END
$partitions$;

CREATE FUNCTION @extschema@._check_currency_code(p_code text) RETURNS boolean
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'check_currency_code_wrapper';
COMMENT ON FUNCTION @extschema@._check_currency_code(text) IS
    'Internal: whether p_code is an active ISO 4217 code in capitals, the list create_transaction accepts; the CHECK of transactions.currency.';
ALTER TABLE @extschema@.transactions DROP CONSTRAINT transactions_currency_check;
ALTER TABLE @extschema@.transactions ADD CONSTRAINT transactions_currency_check CHECK (@extschema@._check_currency_code(currency));

-- Every partition gets the index (named as CREATE INDEX names it, as a fresh install's DEFAULT
-- partition and the months copied from it have it).
DO $payment_method_index$
DECLARE
    part regclass;
BEGIN
    FOR part IN SELECT inhrelid::regclass FROM pg_catalog.pg_inherits WHERE inhparent = '@extschema@.transactions'::regclass LOOP
        EXECUTE pg_catalog.format('CREATE INDEX ON %s (payment_method_id) WHERE payment_method_id IS NOT NULL', part);
    END LOOP;
END
$payment_method_index$;

DROP FUNCTION @extschema@.cleanup_expired_cache();
CREATE FUNCTION @extschema@.cleanup_expired_cache() RETURNS integer
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'cleanup_expired_cache_wrapper';
COMMENT ON FUNCTION @extschema@.cleanup_expired_cache() IS
    'Deletes every expired entry, walking the table in page batches; returns how many.';
DROP FUNCTION @extschema@.invalidate_cache_by_tag(text);
CREATE FUNCTION @extschema@.invalidate_cache_by_tag(p_tag text) RETURNS integer
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'invalidate_cache_by_tag_wrapper';
COMMENT ON FUNCTION @extschema@.invalidate_cache_by_tag(text) IS
    'Deletes every entry tagged p_tag; returns how many.';

-- Reads never write in the caller's transaction (src/stats.rs): cache hits and misses and flag
-- exposures are handed to shared memory or to a flush worker.
CREATE FUNCTION @extschema@._flush_stats() RETURNS boolean
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'flush_stats_wrapper';
COMMENT ON FUNCTION @extschema@._flush_stats() IS
    'Internal: hands the calling session''s cache and flag counts on now (shared memory, or the flush worker, waiting until it has stored them); false when that is not possible now (the counts are kept). Sessions do this by themselves every easymo.stats_flush_interval seconds and when they end.';
COMMENT ON TABLE @extschema@.cache_stat_counters IS
    'Cache hits and misses per cache type, added by easymo''s flush worker when easymo is not preloaded (cache_type '''' = misses of keys with no entry the caller could read). Read them through cache_stats.';
COMMENT ON FUNCTION @extschema@.cache_hit_counters() IS
    'Hits and misses per cache type since counting began (shared memory when easymo is preloaded, plus the counters table, plus the calling session''s counts not yet handed on); cache_type NULL counts keys that had no entry the caller could read. What cache_stats reports.';

-- Cache entries carry a visibility, checked by get_cache.
ALTER TABLE @extschema@.cache_entries
    ADD COLUMN visibility text NOT NULL DEFAULT 'service' CHECK (visibility IN ('service', 'authenticated', 'owner')),
    ADD COLUMN owner_user_id uuid,
    ADD CONSTRAINT cache_entries_owner_check CHECK (visibility <> 'owner' OR owner_user_id IS NOT NULL);
CREATE FUNCTION @extschema@._cache_entry_changed()
    RETURNS TRIGGER
    LANGUAGE c
    AS 'MODULE_PATHNAME', '_cache_entry_changed_wrapper';
-- get_cache answers from copies in shared memory when easymo is preloaded (src/cache/shared.rs);
-- this trigger drops a key's copies at every update and delete. ENABLE ALWAYS: it fires whatever
-- the session's session_replication_role (logical replication, restores). Without it enabled
-- ALWAYS, get_cache reads the table.
CREATE TRIGGER cache_entries_shared_copies AFTER UPDATE OR DELETE ON @extschema@.cache_entries
    FOR EACH ROW EXECUTE FUNCTION @extschema@._cache_entry_changed();
ALTER TABLE @extschema@.cache_entries ENABLE ALWAYS TRIGGER cache_entries_shared_copies;
COMMENT ON FUNCTION @extschema@._cache_entry_changed() IS
    'Internal trigger (after UPDATE or DELETE on cache_entries, per row, enabled always): drops the shared-memory copies of the key changed, which get_cache answers from when easymo is preloaded.';
CREATE FUNCTION @extschema@.cache_shared_stats() RETURNS TABLE (
	"slots" bigint,
	"copies" bigint,
	"copies_made" bigint,
	"answers_from_copies" bigint
)
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'cache_shared_stats_wrapper';
COMMENT ON FUNCTION @extschema@.cache_shared_stats() IS
    'The shared-memory copies get_cache answers from when easymo is preloaded (easymo.cache_shared_memory): the server''s slots, how many hold a copy, and the copies made and answers given from them since the server started. Zeros without them.';
DROP FUNCTION @extschema@.set_cache(text, jsonb, integer, text, text[]);
CREATE FUNCTION @extschema@.set_cache(
    p_key text,
    p_value jsonb,
    p_ttl_seconds integer DEFAULT 3600,
    p_cache_type text DEFAULT 'general',
    p_tags text[] DEFAULT '{}',
    p_visibility text DEFAULT 'service',
    p_owner_user_id uuid DEFAULT NULL
) RETURNS timestamptz
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'set_cache_entry_wrapper';
COMMENT ON FUNCTION @extschema@.set_cache(text, jsonb, integer, text, text[], text, uuid) IS
    'Stores p_value under p_key for p_ttl_seconds (1 s to 365 days) with a cache type, tags and a visibility (service: service_role only, the default; authenticated: every authenticated caller; owner: the user p_owner_user_id too), replacing any previous value, TTL, tags and visibility; returns the expiry.';
ALTER FUNCTION @extschema@.get_cache(text) PARALLEL RESTRICTED;
COMMENT ON FUNCTION @extschema@.get_cache(text) IS
    'The value cached under p_key, or NULL when there is none, it has expired, or the caller may not read it (its visibility). Never writes in the caller''s transaction; works read-only and on a hot standby. Counts a hit or a miss for cache_stats.';

-- Flag evaluation: honest volatility, evaluations counted, callers other than service_role
-- evaluate for themselves only.
ALTER FUNCTION @extschema@.is_feature_enabled(text, uuid, text, jsonb) VOLATILE PARALLEL RESTRICTED;
ALTER FUNCTION @extschema@.get_feature_variant(text, uuid, text) VOLATILE PARALLEL RESTRICTED;
COMMENT ON FUNCTION @extschema@.is_feature_enabled(text, uuid, text, jsonb) IS
    'Whether flag p_flag_key is on for p_user_id in p_environment (development, staging, production): strategies all, none, user_list, percentage (xxh3_64(key:user) mod 10000 < percentage*100) and condition (every rule holds for p_context). Unknown or disabled flags are off. Evaluated from a per-session cache that a committed change to feature_flags invalidates. Callers other than service_role evaluate for themselves only: p_user_id defaults to and must equal request_user_id() (42501). Every evaluation is counted (feature_flag_exposures); VOLATILE because it writes the evaluation log where easymo.flag_evaluation_log asks for it and a write is allowed.';
COMMENT ON FUNCTION @extschema@.get_feature_variant(text, uuid, text) IS
    'The weighted variant of p_flag_key for p_user_id (bucketed independently of the on/off decision), or NULL when the flag is off for that user or has no variants. Callers other than service_role ask for themselves only (42501). Counted and logged as is_feature_enabled.';
COMMENT ON TABLE @extschema@.feature_flag_evaluations IS
    'Log of flag evaluations (who got which answer and why), written according to easymo.flag_evaluation_log where a write is allowed (not in read-only transactions, on a standby or in parallel queries); a failed log write never fails the evaluation.';
CREATE TABLE @extschema@.feature_flag_exposure_counters (
    flag_key    text NOT NULL,
    environment text NOT NULL,
    variant     text NOT NULL DEFAULT '',
    enabled     boolean NOT NULL,
    evaluations bigint NOT NULL DEFAULT 0 CHECK (evaluations >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (flag_key, environment, variant, enabled)
);
COMMENT ON TABLE @extschema@.feature_flag_exposure_counters IS
    'Feature flag evaluations per flag key, environment, variant ('''' = none) and answer, added by easymo''s flush worker when easymo is not preloaded (flag_key '''' = keys that name no flag). Read them through feature_flag_exposures().';
SELECT @extschema@._secure_table('@extschema@.feature_flag_exposure_counters');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.feature_flag_exposure_counters', '');
CREATE FUNCTION @extschema@.feature_flag_exposures()
RETURNS TABLE (flag_key text, environment text, variant text, enabled boolean, evaluations bigint)
STRICT STABLE PARALLEL RESTRICTED
LANGUAGE c
AS 'MODULE_PATHNAME', 'feature_flag_exposures_wrapper';
COMMENT ON FUNCTION @extschema@.feature_flag_exposures() IS
    'Every flag evaluation counted since counting began, per flag key (NULL: keys that name no flag), requested environment, variant (NULL: none) and answer: shared memory when easymo is preloaded, plus feature_flag_exposure_counters, plus the calling session''s counts not yet handed on.';
CREATE OR REPLACE VIEW @extschema@.feature_flag_overview WITH (security_invoker = true) AS
SELECT f.key,
       f.environment,
       f.name,
       f.enabled,
       f.rollout_strategy,
       f.rollout_percentage,
       cardinality(f.target_users)      AS target_user_count,
       jsonb_array_length(f.conditions) AS condition_count,
       jsonb_array_length(f.variants)   AS variant_count,
       (SELECT count(*)
          FROM @extschema@.feature_flag_evaluations e
         WHERE e.flag_key = f.key
           AND e.evaluated_at > now() - interval '24 hours') AS evaluations_24h,
       f.updated_at,
       coalesce(x.evaluations, 0)    AS evaluations,
       coalesce(x.evaluations_on, 0) AS evaluations_on
  FROM @extschema@.feature_flags f
  LEFT JOIN (SELECT e.flag_key, sum(e.evaluations)::bigint AS evaluations,
                    (sum(e.evaluations) FILTER (WHERE e.enabled))::bigint AS evaluations_on
               FROM @extschema@.feature_flag_exposures() e
              GROUP BY e.flag_key) x ON x.flag_key = f.key;
COMMENT ON VIEW @extschema@.feature_flag_overview IS
    'Every feature flag with strategy, rollout, target/condition/variant counts, evaluations logged in the last 24 hours, and every evaluation counted since counting began (all environments) and how many of them answered on.';


DROP FUNCTION @extschema@._register_config_table(oid);
CREATE OR REPLACE FUNCTION @extschema@._create_month_partition(p_parent regclass, p_month date)
RETURNS regclass
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    nsp         name;
    relname     name;
    part_name   name;
    default_rel regclass;
    part        regclass;
    lo          timestamptz := p_month::timestamp AT TIME ZONE 'UTC';
    hi          timestamptz := (p_month + interval '1 month')::timestamp AT TIME ZONE 'UTC';
    cols        text;
    moved       bigint := 0;
    replication_role text;
BEGIN
    SELECT n.nspname, c.relname, pt.partdefid::regclass
      INTO nsp, relname, default_rel
      FROM pg_class c
      JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_partitioned_table pt ON pt.partrelid = c.oid
     WHERE c.oid = p_parent;
    part_name := relname || '_p' || to_char(p_month, 'YYYY_MM');

    -- No new row may land in DEFAULT between the move and the attach.
    IF default_rel IS NOT NULL THEN
        EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', default_rel);
    END IF;

    -- The DEFAULT partition is the template: its columns, defaults, CHECKs, primary key and
    -- indexes (see the top of this file).
    IF default_rel IS NULL THEN
        RAISE EXCEPTION '% has no DEFAULT partition, which easymo copies new partitions from', p_parent
            USING ERRCODE = '55000', HINT = 'Recreate it: CREATE TABLE ... PARTITION OF ... DEFAULT, with its primary key and indexes (see the extension''s domain SQL), or ALTER EXTENSION easymo UPDATE.';
    END IF;
    EXECUTE format('CREATE TABLE %I.%I (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES INCLUDING STORAGE)',
                   nsp, part_name, default_rel);
    part := format('%I.%I', nsp, part_name)::regclass;

    IF default_rel IS NOT NULL THEN
        SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum)
          INTO cols
          FROM pg_attribute
         WHERE attrelid = p_parent AND attnum > 0 AND NOT attisdropped;
        -- A move, not a delete and an insert: with the replica role no trigger fires (no audit
        -- trigger sees a delete, no foreign key check objects to a row that comes straight back).
        replication_role := current_setting('session_replication_role');
        PERFORM set_config('session_replication_role', 'replica', true);
        EXECUTE format('WITH moved AS (DELETE FROM %s WHERE created_at >= $1 AND created_at < $2 RETURNING %s) '
                       'INSERT INTO %s (%s) SELECT %s FROM moved',
                       default_rel, cols, part, cols, cols)
          USING lo, hi;
        GET DIAGNOSTICS moved = ROW_COUNT;
        PERFORM set_config('session_replication_role', replication_role, true);
        IF moved > 0 THEN
            RAISE NOTICE 'moved % row(s) of % from % into %', moved, to_char(p_month, 'YYYY-MM'), default_rel, part;
        END IF;
    END IF;

    EXECUTE format('ALTER TABLE %s ATTACH PARTITION %s FOR VALUES FROM (%L) TO (%L)', p_parent, part, lo, hi);

    PERFORM @extschema@._secure_partition(part);
    EXECUTE format('COMMENT ON TABLE %s IS %L', part,
                   format('Monthly partition of %s for %s (UTC); created by ensure_partitions(). Not a member of the extension: pg_dump dumps it like any table.',
                          relname, to_char(p_month, 'YYYY-MM')));
    -- Made inside an extension script (an upgrade that creates a month, say), the new table
    -- would be a member: it is not one (see the top of this file).
    IF EXISTS (SELECT 1 FROM pg_depend
                WHERE classid = 'pg_class'::regclass AND objid = part
                  AND refclassid = 'pg_extension'::regclass AND deptype = 'e') THEN
        EXECUTE format('ALTER EXTENSION easymo DROP TABLE %s', part);
    END IF;
    RETURN part;
END
$$;
COMMENT ON FUNCTION @extschema@._create_month_partition(regclass, date) IS
    'Internal: creates one UTC-month partition like the DEFAULT partition (indexes included), moving that month''s rows out of the DEFAULT partition; the partition is not a member of the extension.';

DROP FUNCTION @extschema@.apply_retention(text, integer);

-- ---------------------------------------------------------------------------------------------
-- Archive tier: whole old months leave the hot table for the schema easymo_archive (detached,
-- as tables of their own named like the partition, compressed), still queryable through one view
-- per table there (easymo_archive.<table>, the archived months only), and can come back. They are
-- the data's like the month partitions: not members of the extension, so a plain pg_dump keeps
-- them (the schema comes back with CREATE EXTENSION); DROP EXTENSION ... CASCADE removes them.
CREATE SCHEMA easymo_archive;
COMMENT ON SCHEMA easymo_archive IS
    'easymo''s archive tier: old months detached from the partitioned tables by archive_partitions() (tables <table>_pYYYY_MM), and one view per table over them.';
REVOKE ALL ON SCHEMA easymo_archive FROM PUBLIC;
GRANT USAGE ON SCHEMA easymo_archive TO service_role;

-- The partitioned tables whose months can be archived and retained.
CREATE FUNCTION @extschema@._partitioned_tables() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ARRAY['system_metrics', 'system_audit_logs', 'transactions', 'event_store', 'analytics_events'] $$;
COMMENT ON FUNCTION @extschema@._partitioned_tables() IS
    'Internal: the monthly partitioned tables (what archive_partitions, apply_retention and unarchive_partition take).';

-- The archived months of a table: (relation, month).
CREATE FUNCTION @extschema@._archived_months(p_table text)
RETURNS TABLE (relation regclass, month date)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.oid::regclass, to_date(right(c.relname, 7), 'YYYY_MM')
      FROM pg_class c
     WHERE c.relnamespace = 'easymo_archive'::regnamespace AND c.relkind = 'r'
       AND c.relname ~ ('^' || p_table || '_p[0-9]{4}_[0-9]{2}$')
     ORDER BY 2
$$;
COMMENT ON FUNCTION @extschema@._archived_months(text) IS
    'Internal: the archived month tables of p_table in easymo_archive, with their month.';

-- The columns p_from has that p_to has too, quoted, in p_from's order: what a copy of rows
-- between a month table and its parent or archive names.
CREATE FUNCTION @extschema@._shared_columns(p_from regclass, p_to regclass)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
      FROM pg_attribute a
     WHERE a.attrelid = p_from AND a.attnum > 0 AND NOT a.attisdropped
       AND a.attname IN (SELECT b.attname FROM pg_attribute b WHERE b.attrelid = p_to AND NOT b.attisdropped)
$$;
COMMENT ON FUNCTION @extschema@._shared_columns(regclass, regclass) IS
    'Internal: the quoted columns of p_from that p_to has too, in p_from''s order.';

-- (Re)makes easymo_archive.<table>: every archived month of the table, with the table's
-- current columns (a column the table gained after a month was archived reads NULL there).
CREATE FUNCTION @extschema@._archive_view(p_table text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    parent regclass := format('@extschema@.%I', p_table)::regclass;
    body   text;
BEGIN
    SELECT string_agg(format('SELECT %s FROM %s', cols.list, m.relation), E'\nUNION ALL\n' ORDER BY m.month)
      INTO body
      FROM @extschema@._archived_months(p_table) m,
           LATERAL (SELECT string_agg(CASE WHEN EXISTS (SELECT 1 FROM pg_attribute x
                                                          WHERE x.attrelid = m.relation AND x.attname = a.attname AND NOT x.attisdropped)
                                           THEN quote_ident(a.attname)
                                           ELSE format('NULL::%s AS %I', format_type(a.atttypid, a.atttypmod), a.attname) END,
                                      ', ' ORDER BY a.attnum) AS list
                      FROM pg_attribute a WHERE a.attrelid = parent AND a.attnum > 0 AND NOT a.attisdropped) cols;
    IF body IS NULL THEN
        EXECUTE format('DROP VIEW IF EXISTS easymo_archive.%I', p_table);
        RETURN;
    END IF;
    EXECUTE format('DROP VIEW IF EXISTS easymo_archive.%I', p_table);
    EXECUTE format('CREATE VIEW easymo_archive.%I WITH (security_invoker = true) AS %s', p_table, body);
    EXECUTE format('REVOKE ALL ON easymo_archive.%I FROM PUBLIC, anon, authenticated', p_table);
    EXECUTE format('GRANT SELECT ON easymo_archive.%I TO service_role', p_table);
    EXECUTE format('COMMENT ON VIEW easymo_archive.%I IS %L', p_table,
                   format('The archived months of %s (archive_partitions()); the hot months are in the table itself.', p_table));
END
$$;
COMMENT ON FUNCTION @extschema@._archive_view(text) IS
    'Internal: (re)creates the view easymo_archive.<table> over the archived months of the table.';

-- Moves the months of p_table that end p_older_than_months or more before the current UTC month
-- out to easymo_archive. Each month is detached, moved, readable by service_role (directly and
-- through the view), its columns set to lz4 compression where the server has it (else pglz)
-- with a low TOAST target, and rewritten (CLUSTER on its primary key), so its rows are stored
-- compressed. Returns how many months it archived.
CREATE FUNCTION @extschema@.archive_partitions(p_table text, p_older_than_months integer)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    parent      regclass;
    cutoff      timestamptz;
    part        record;
    moved       regclass;
    existing    regclass;
    archived    integer := 0;
    method      text;
    col         record;
    pkey        name;
    cols        text;
BEGIN
    p_table := @extschema@._check_choice('p_table', p_table, @extschema@._partitioned_tables());
    p_older_than_months := @extschema@._check_range('p_older_than_months', p_older_than_months, 0, 1200);
    cutoff := (date_trunc('month', now() AT TIME ZONE 'UTC') - make_interval(months => p_older_than_months)) AT TIME ZONE 'UTC';
    parent := format('@extschema@.%I', p_table)::regclass;
    -- Not at the same time as ensure_partitions or apply_retention.
    PERFORM pg_advisory_xact_lock(7310309163452661761);
    method := CASE WHEN EXISTS (SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals))
                   THEN 'lz4' ELSE 'pglz' END;
    FOR part IN
        SELECT b.partition, c.relname FROM @extschema@._partition_bounds(parent) b JOIN pg_class c ON c.oid = b.partition
         WHERE b.upper_bound <= cutoff ORDER BY b.lower_bound
    LOOP
        EXECUTE format('ALTER TABLE %s DETACH PARTITION %s', parent, part.partition);
        IF EXISTS (SELECT 1 FROM pg_depend
                    WHERE classid = 'pg_class'::regclass AND objid = part.partition
                      AND refclassid = 'pg_extension'::regclass AND deptype = 'e') THEN
            EXECUTE format('ALTER EXTENSION easymo DROP TABLE %s', part.partition);
        END IF;
        existing := to_regclass(format('easymo_archive.%I', part.relname));
        IF existing IS NOT NULL THEN
            -- The month was archived before and made again since (rows for it came): one table.
            cols := @extschema@._shared_columns(part.partition, existing);
            EXECUTE format('INSERT INTO %s (%s) SELECT %s FROM %s', existing, cols, cols, part.partition);
            EXECUTE format('DROP TABLE %s', part.partition);
            moved := existing;
        ELSE
            EXECUTE format('ALTER TABLE %s SET SCHEMA easymo_archive', part.partition);
            moved := format('easymo_archive.%I', part.relname)::regclass;
            -- Readable by service_role, directly and through the view (no longer only through a parent).
            EXECUTE format('DROP POLICY IF EXISTS only_through_parent ON %s', moved);
            EXECUTE format('CREATE POLICY service_role_all ON %s FOR ALL TO service_role USING (true) WITH CHECK (true)', moved);
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE %s TO service_role', moved);
            EXECUTE format('COMMENT ON TABLE %s IS %L', moved,
                           format('Archived month of %s (archive_partitions()); unarchive_partition() brings it back.', p_table));
        END IF;
        FOR col IN
            SELECT a.attname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
             WHERE a.attrelid = moved AND a.attnum > 0 AND NOT a.attisdropped AND t.typlen = -1 AND t.typstorage <> 'p'
        LOOP
            EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET COMPRESSION %s', moved, col.attname, method);
        END LOOP;
        EXECUTE format('ALTER TABLE %s SET (toast_tuple_target = 128)', moved);
        SELECT c.relname INTO pkey FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = moved AND i.indisprimary;
        IF pkey IS NOT NULL THEN
            EXECUTE format('CLUSTER %s USING %I', moved, pkey);
        END IF;
        archived := archived + 1;
    END LOOP;
    IF archived > 0 THEN
        PERFORM @extschema@._archive_view(p_table);
    END IF;
    RETURN archived;
END
$$;
COMMENT ON FUNCTION @extschema@.archive_partitions(text, integer) IS
    'Moves the monthly partitions of p_table (system_metrics, system_audit_logs, transactions, event_store, analytics_events) that end before the current UTC month minus p_older_than_months to the schema easymo_archive: detached, compressed (lz4 where the server has it), readable by service_role and through the view easymo_archive.<table>. Returns how many months it archived. unarchive_partition() brings one back.';

-- Brings an archived month back into its table (through a new partition made like any month,
-- rows that waited in DEFAULT moved into it), and drops the archived copy.
CREATE FUNCTION @extschema@.unarchive_partition(p_table text, p_month date)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    parent   regclass;
    archived regclass;
    part     regclass;
    cols     text;
    n        bigint;
    replication_role text;
BEGIN
    p_table := @extschema@._check_choice('p_table', p_table, @extschema@._partitioned_tables());
    p_month := @extschema@._check_not_null('p_month', p_month);
    parent := format('@extschema@.%I', p_table)::regclass;
    SELECT m.relation INTO archived FROM @extschema@._archived_months(p_table) m WHERE m.month = date_trunc('month', p_month)::date;
    IF archived IS NULL THEN
        RAISE EXCEPTION 'no archived month % of %', to_char(p_month, 'YYYY-MM'), p_table USING ERRCODE = 'P0002';
    END IF;
    PERFORM pg_advisory_xact_lock(7310309163452661761);
    SELECT b.partition INTO part FROM @extschema@._partition_bounds(parent) b
     WHERE b.lower_bound = date_trunc('month', p_month)::timestamp AT TIME ZONE 'UTC';
    IF part IS NULL THEN
        part := @extschema@._create_month_partition(parent, date_trunc('month', p_month)::date);
    END IF;
    cols := @extschema@._shared_columns(archived, parent);
    -- A move: no trigger fires (the rows were written once already).
    replication_role := current_setting('session_replication_role');
    PERFORM set_config('session_replication_role', 'replica', true);
    EXECUTE format('INSERT INTO %s (%s) SELECT %s FROM %s', part, cols, cols, archived);
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM set_config('session_replication_role', replication_role, true);
    -- (The view over the archived months goes first: it depends on them, and is made again.)
    EXECUTE format('DROP VIEW IF EXISTS easymo_archive.%I', p_table);
    EXECUTE format('DROP TABLE %s', archived);
    PERFORM @extschema@._archive_view(p_table);
    RETURN n;
END
$$;
COMMENT ON FUNCTION @extschema@.unarchive_partition(text, date) IS
    'Brings the archived month of p_table that contains p_month back into the table (its partition made again, or the one made since); returns how many rows came back. P0002 when that month is not archived.';

-- Retention: months older than p_keep_months are dropped, or, with p_archive_for_months,
-- archived first and dropped from the archive once they are p_keep_months + p_archive_for_months
-- old.
CREATE FUNCTION @extschema@.apply_retention(p_table text, p_keep_months integer, p_archive_for_months integer DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    parent      regclass;
    default_rel regclass;
    cutoff      timestamptz;
    drop_before timestamptz;
    part        record;
    dropped     integer := 0;
    replication_role text;
BEGIN
    p_table := @extschema@._check_choice('p_table', p_table, @extschema@._partitioned_tables() || 'notifications'::text);
    p_keep_months := @extschema@._check_range('p_keep_months', p_keep_months, 0, 1200);
    IF p_archive_for_months IS NOT NULL THEN
        p_archive_for_months := @extschema@._check_range('p_archive_for_months', p_archive_for_months, 0, 1200);
    END IF;
    cutoff := (date_trunc('month', now() AT TIME ZONE 'UTC') - make_interval(months => p_keep_months)) AT TIME ZONE 'UTC';
    drop_before := (date_trunc('month', now() AT TIME ZONE 'UTC')
                    - make_interval(months => p_keep_months + coalesce(p_archive_for_months, 0))) AT TIME ZONE 'UTC';
    IF p_table = 'notifications' THEN
        IF p_archive_for_months IS NOT NULL THEN
            RAISE EXCEPTION 'p_archive_for_months: notifications are not partitioned, so not archived' USING ERRCODE = '22023';
        END IF;
        -- Not partitioned (a notification is read and marked read by its user, its deliveries
        -- point at it): older rows are deleted, their deliveries with them.
        DELETE FROM @extschema@.notifications WHERE created_at < cutoff;
        GET DIAGNOSTICS dropped = ROW_COUNT;
        RETURN dropped;
    END IF;
    parent := format('@extschema@.%I', p_table)::regclass;
    SELECT pt.partdefid::regclass INTO default_rel FROM pg_partitioned_table pt WHERE pt.partrelid = parent;
    -- Not at the same time as ensure_partitions (which may be moving rows into a partition).
    PERFORM pg_advisory_xact_lock(7310309163452661761);
    IF p_archive_for_months IS NOT NULL THEN
        PERFORM @extschema@.archive_partitions(p_table, p_keep_months);
        EXECUTE format('DROP VIEW IF EXISTS easymo_archive.%I', p_table);
        FOR part IN SELECT m.relation FROM @extschema@._archived_months(p_table) m
                     WHERE (m.month + interval '1 month')::timestamp AT TIME ZONE 'UTC' <= drop_before
        LOOP
            EXECUTE format('DROP TABLE %s', part.relation);
            dropped := dropped + 1;
        END LOOP;
        PERFORM @extschema@._archive_view(p_table);
    END IF;

    IF p_table = 'transactions' THEN
        DELETE FROM @extschema@.transaction_events WHERE transaction_created_at < drop_before;
        DELETE FROM @extschema@.transaction_idempotency_keys WHERE transaction_created_at < drop_before;
    END IF;

    FOR part IN
        SELECT b.partition FROM @extschema@._partition_bounds(parent) b
         WHERE b.upper_bound <= drop_before
         ORDER BY b.lower_bound
    LOOP
        EXECUTE format('ALTER TABLE %s DETACH PARTITION %s', parent, part.partition);
        -- A month partition is not a member (one left from 0.2.0 would be: it leaves first).
        IF EXISTS (SELECT 1 FROM pg_depend
                    WHERE classid = 'pg_class'::regclass AND objid = part.partition
                      AND refclassid = 'pg_extension'::regclass AND deptype = 'e') THEN
            EXECUTE format('ALTER EXTENSION easymo DROP TABLE %s', part.partition);
        END IF;
        EXECUTE format('DROP TABLE %s', part.partition);
        dropped := dropped + 1;
    END LOOP;

    IF default_rel IS NOT NULL THEN
        -- The replica role: the row triggers that guard single deletes (a transaction with
        -- events) have nothing to guard here, their side rows went above.
        replication_role := current_setting('session_replication_role');
        PERFORM set_config('session_replication_role', 'replica', true);
        EXECUTE format('DELETE FROM %s WHERE created_at < $1', default_rel) USING drop_before;
        PERFORM set_config('session_replication_role', replication_role, true);
    END IF;
    RETURN dropped;
END
$$;
COMMENT ON FUNCTION @extschema@.apply_retention(text, integer, integer) IS
    'Drops the monthly partitions of p_table (system_metrics, system_audit_logs, transactions, event_store, analytics_events) that end before the current UTC month minus p_keep_months, and deletes older rows from its DEFAULT partition (for transactions also their events and idempotency keys). With p_archive_for_months, those months are archived instead (archive_partitions) and archived months are dropped once they end before the current month minus p_keep_months + p_archive_for_months. Returns how many partitions it dropped (hot or archived). For notifications (not partitioned, never archived) it deletes the older notifications with their deliveries and returns how many notifications.';


-- (plpgsql_check: its jsonb defaults are typed.)
CREATE OR REPLACE FUNCTION @extschema@.run_maintenance()
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    steps CONSTANT text[][] := ARRAY[
        ['partitions_created',          'SELECT @extschema@.ensure_partitions(3)'],
        ['cache_entries_removed',       'SELECT @extschema@.cleanup_expired_cache()'],
        ['whatsapp_sessions_expired',   'SELECT @extschema@.cleanup_expired_whatsapp_sessions()'],
        ['jobs_timed_out',              'SELECT @extschema@.time_out_jobs()'],
        ['messages_released',           'SELECT @extschema@._release_expired_messages()'],
        ['whatsapp_messages_released',  'SELECT @extschema@._release_expired_whatsapp_messages()']];
    summary jsonb := '{}'::jsonb;
    errors  jsonb := '{}'::jsonb;
    started timestamptz := clock_timestamp();
    n       bigint;
    msg     text;
    state   text;
BEGIN
    FOR i IN 1 .. array_length(steps, 1) LOOP
        BEGIN
            EXECUTE steps[i][2] INTO n;
            summary := summary || jsonb_build_object(steps[i][1], n);
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, state = RETURNED_SQLSTATE;
            RAISE WARNING 'run_maintenance: % failed: % (SQLSTATE %)', steps[i][1], msg, state;
            errors := errors || jsonb_build_object(steps[i][1], jsonb_build_object('sqlstate', state, 'message', msg));
        END;
    END LOOP;
    RETURN summary
        || jsonb_build_object('errors', errors,
                              'duration_ms', round(extract(epoch FROM clock_timestamp() - started) * 1000, 1));
END
$$;

-- Partitions get a restrictive policy that lets nothing through (Supabase's linter reports RLS
-- without any policy); every existing partition too.
CREATE OR REPLACE FUNCTION @extschema@._secure_partition(p_partition regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', p_partition);
    EXECUTE format('REVOKE ALL ON TABLE %s FROM PUBLIC, anon, authenticated, service_role', p_partition);
    IF NOT EXISTS (SELECT 1 FROM pg_policy WHERE polrelid = p_partition AND polname = 'only_through_parent') THEN
        EXECUTE format('CREATE POLICY only_through_parent ON %s AS RESTRICTIVE FOR ALL USING (false) WITH CHECK (false)', p_partition);
    END IF;
END
$$;
COMMENT ON FUNCTION @extschema@._secure_partition(regclass) IS
    'Internal: locks a partition down (RLS on with a restrictive policy that lets nothing through, no privileges) so it can only be read through its parent.';
DO $partition_policies$
DECLARE
    part regclass;
BEGIN
    FOR part IN
        SELECT i.inhrelid::regclass FROM pg_catalog.pg_inherits i
          JOIN pg_catalog.pg_depend d ON d.objid = i.inhparent AND d.classid = 'pg_catalog.pg_class'::regclass
           AND d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.deptype = 'e'
           AND d.refobjid = (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'easymo')
    LOOP
        PERFORM @extschema@._secure_partition(part);
    END LOOP;
END
$partition_policies$;

-- Helpers check their arguments with the shared checks (bootstrap.sql).
CREATE OR REPLACE FUNCTION @extschema@.register_service(
    p_service_name text,
    p_service_type text,
    p_version text,
    p_endpoint text DEFAULT NULL,
    p_health_check_url text DEFAULT NULL,
    p_capabilities jsonb DEFAULT '[]',
    p_dependencies jsonb DEFAULT '[]'
) RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    service_id uuid;
BEGIN
    p_service_name := @extschema@._check_text('p_service_name', p_service_name, 255);
    p_service_type := @extschema@._check_text('p_service_type', p_service_type, 64);
    p_version := @extschema@._check_text('p_version', p_version, 64);
    -- (An empty endpoint is allowed, as the table allows it: only the length is bounded.)
    IF length(p_endpoint) > 2048 OR length(p_health_check_url) > 2048 THEN
        RAISE EXCEPTION 'p_endpoint and p_health_check_url: at most 2048 characters' USING ERRCODE = '22023';
    END IF;
    p_capabilities := @extschema@._check_json('p_capabilities', p_capabilities, 'array');
    p_dependencies := @extschema@._check_json('p_dependencies', p_dependencies, 'array');
    -- Upsert by name: a restarted service re-registers and keeps its id.
    INSERT INTO @extschema@.service_registry AS s
           (service_name, service_type, version, endpoint, health_check_url, capabilities, dependencies, status)
    VALUES (p_service_name, p_service_type, p_version, p_endpoint, p_health_check_url,
            coalesce(p_capabilities, '[]'), coalesce(p_dependencies, '[]'), 'starting')
    ON CONFLICT (service_name) DO UPDATE
       SET service_type = excluded.service_type,
           version = excluded.version,
           endpoint = excluded.endpoint,
           health_check_url = excluded.health_check_url,
           capabilities = excluded.capabilities,
           dependencies = excluded.dependencies,
           status = 'starting',
           registered_at = now()
    RETURNING s.id INTO service_id;
    RETURN service_id;
END
$$;
CREATE OR REPLACE FUNCTION @extschema@.service_heartbeat(
    p_service_name text,
    p_status text DEFAULT 'healthy',
    p_metrics jsonb DEFAULT '{}'
) RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    p_service_name := @extschema@._check_not_null('p_service_name', p_service_name);
    p_status := @extschema@._check_choice('p_status', p_status, ARRAY['healthy', 'unhealthy', 'starting', 'stopping', 'stopped']);
    p_metrics := @extschema@._check_json('p_metrics', p_metrics, 'object');
    UPDATE @extschema@.service_registry
       SET status = p_status, metrics = coalesce(p_metrics, '{}'), last_heartbeat_at = now()
     WHERE service_name = p_service_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'service % is not registered', quote_literal(p_service_name) USING ERRCODE = 'P0002';
    END IF;
    RETURN true;
END
$$;
CREATE OR REPLACE FUNCTION @extschema@.update_transaction_status(
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
CREATE OR REPLACE FUNCTION @extschema@.ensure_partitions(p_months_ahead integer DEFAULT 3)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    parent   record;
    m        date;
    lo       timestamptz;
    hi       timestamptz;
    this_month date := date_trunc('month', now() AT TIME ZONE 'UTC')::date;
    covering integer;
    overlapping integer;
    created  integer := 0;
    default_months date[];
BEGIN
    p_months_ahead := @extschema@._check_range('p_months_ahead', p_months_ahead, 0, 120);
    -- One caller at a time (the maintenance worker and a DBA may well meet here).
    PERFORM pg_advisory_xact_lock(7310309163452661761);

    FOR parent IN
        SELECT c.oid::regclass AS rel, pt.partdefid::regclass AS default_rel
          FROM pg_depend d
          JOIN pg_class c ON c.oid = d.objid
          JOIN pg_partitioned_table pt ON pt.partrelid = c.oid
         WHERE d.classid = 'pg_class'::regclass
           AND d.refclassid = 'pg_extension'::regclass
           AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'easymo')
           AND d.deptype = 'e'
           AND c.relkind = 'p'
         ORDER BY c.relname
    LOOP
        default_months := '{}';
        IF parent.default_rel IS NOT NULL THEN
            EXECUTE format('SELECT coalesce(array_agg(DISTINCT date_trunc(''month'', created_at AT TIME ZONE ''UTC'')::date), ''{}'') '
                           'FROM %s WHERE isfinite(created_at)', parent.default_rel)
              INTO default_months;
        END IF;

        FOR m IN
            SELECT g::date FROM generate_series(this_month,
                                                this_month + make_interval(months => p_months_ahead),
                                                interval '1 month') g
            UNION
            SELECT unnest(default_months)
            ORDER BY 1
        LOOP
            lo := m::timestamp AT TIME ZONE 'UTC';
            hi := (m + interval '1 month')::timestamp AT TIME ZONE 'UTC';
            SELECT count(*) FILTER (WHERE b.lower_bound <= lo AND hi <= b.upper_bound),
                   count(*) FILTER (WHERE b.lower_bound < hi AND lo < b.upper_bound)
              INTO covering, overlapping
              FROM @extschema@._partition_bounds(parent.rel) b;
            IF covering > 0 THEN
                CONTINUE;
            ELSIF overlapping > 0 THEN
                -- A partition someone made by hand covers part of this month: leave it alone.
                RAISE WARNING 'ensure_partitions: % already has a partition overlapping % (UTC); no monthly partition created, rows of that month stay where they are',
                    parent.rel, to_char(m, 'YYYY-MM');
                CONTINUE;
            END IF;
            PERFORM @extschema@._create_month_partition(parent.rel, m);
            created := created + 1;
        END LOOP;
    END LOOP;
    RETURN created;
END
$$;

-- The native code's lists and limits, for the test that compares them with the CHECKs.
CREATE FUNCTION @extschema@._contract_values() RETURNS TABLE (list text, value text)
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'contract_values_wrapper';
COMMENT ON FUNCTION @extschema@._contract_values() IS
    'Internal: the lists (transaction types, currencies, location types, environments, rollout strategies, cache visibilities) and limits the native functions check, one row per value; what the test suite compares with the CHECK constraints.';

-- The shared choice check joins its list without STABLE functions (plpgsql_check 2.10).
CREATE OR REPLACE FUNCTION @extschema@._check_choice(p_param text, p_value text, p_allowed text[]) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
    choices text := '';
    choice text;
BEGIN
    IF p_value IS NULL THEN
        RAISE EXCEPTION '% must not be NULL', p_param USING ERRCODE = '22004';
    ELSIF NOT p_value = ANY (p_allowed) THEN
        FOREACH choice IN ARRAY p_allowed LOOP
            choices := choices || CASE WHEN choices = '' THEN '' ELSE ', ' END || choice;
        END LOOP;
        RAISE EXCEPTION '%: must be one of %, got %', p_param, choices, quote_literal(p_value)
            USING ERRCODE = '22023';
    END IF;
    RETURN p_value;
END
$$;

-- Wallets (sql/wallets.sql): a double-entry ledger with holds and hot accounts; the native
-- writers first, then the tables and helpers as a fresh install makes them.

CREATE FUNCTION @extschema@.wallet_transfer(
    p_debit_account_id uuid,
    p_credit_account_id uuid,
    p_amount numeric,
    p_idempotency_key text DEFAULT NULL,
    p_hold_seconds integer DEFAULT NULL,
    p_transaction_id uuid DEFAULT NULL,
    p_metadata jsonb DEFAULT '{}'
) RETURNS uuid
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'wallet_transfer_wrapper';
CREATE FUNCTION @extschema@.wallet_transfer_batch(p_transfers jsonb) RETURNS SETOF uuid
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'wallet_transfer_batch_wrapper';
CREATE FUNCTION @extschema@.post_wallet_hold(p_transfer_id uuid, p_amount numeric DEFAULT NULL) RETURNS uuid
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'post_wallet_hold_wrapper';
CREATE FUNCTION @extschema@.void_wallet_hold(p_transfer_id uuid) RETURNS boolean
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'void_wallet_hold_wrapper';
CREATE FUNCTION @extschema@._expire_wallet_holds() RETURNS bigint
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'expire_wallet_holds_wrapper';
CREATE FUNCTION @extschema@._fold_wallet_credits(p_account_id uuid) RETURNS bigint
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'fold_wallet_credits_wrapper';
CREATE FUNCTION @extschema@._fold_all_wallet_credits() RETURNS bigint
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'fold_all_wallet_credits_wrapper';

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

SELECT pg_catalog.pg_extension_config_dump('@extschema@.wallet_accounts', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.wallet_transfers', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.wallet_entries', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.wallet_hot_credits', '');

-- Maintenance expires wallet holds and folds hot wallet credits.
CREATE OR REPLACE FUNCTION @extschema@.run_maintenance()
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    steps CONSTANT text[][] := ARRAY[
        ['partitions_created',          'SELECT @extschema@.ensure_partitions(3)'],
        ['cache_entries_removed',       'SELECT @extschema@.cleanup_expired_cache()'],
        ['whatsapp_sessions_expired',   'SELECT @extschema@.cleanup_expired_whatsapp_sessions()'],
        ['jobs_timed_out',              'SELECT @extschema@.time_out_jobs()'],
        ['messages_released',           'SELECT @extschema@._release_expired_messages()'],
        ['whatsapp_messages_released',  'SELECT @extschema@._release_expired_whatsapp_messages()'],
        ['wallet_holds_expired',        'SELECT @extschema@._expire_wallet_holds()'],
        ['wallet_credits_folded',       'SELECT @extschema@._fold_all_wallet_credits()'],
        ['notification_deliveries_released', 'SELECT @extschema@._release_expired_notification_deliveries()'],
        ['notification_dedupe_keys_removed', 'SELECT @extschema@._cleanup_notification_dedupe_keys()'],
        ['alert_events_changed',        'SELECT @extschema@._record_alerts()']];
    summary jsonb := '{}'::jsonb;
    errors  jsonb := '{}'::jsonb;
    started timestamptz := clock_timestamp();
    n       bigint;
    msg     text;
    state   text;
BEGIN
    FOR i IN 1 .. array_length(steps, 1) LOOP
        BEGIN
            EXECUTE steps[i][2] INTO n;
            summary := summary || jsonb_build_object(steps[i][1], n);
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, state = RETURNED_SQLSTATE;
            RAISE WARNING 'run_maintenance: % failed: % (SQLSTATE %)', steps[i][1], msg, state;
            errors := errors || jsonb_build_object(steps[i][1], jsonb_build_object('sqlstate', state, 'message', msg));
        END;
    END LOOP;
    RETURN summary
        || jsonb_build_object('errors', errors,
                              'duration_ms', round(extract(epoch FROM clock_timestamp() - started) * 1000, 1));
END
$$;
COMMENT ON FUNCTION @extschema@.run_maintenance() IS
    'Runs every maintenance step: partitions 3 months ahead, expired cache entries, idle WhatsApp sessions, jobs past their lease, messages past their visibility timeout, wallet holds past their expiry, hot wallet credits to fold, notification deliveries past their visibility timeout, expired notification dedupe keys, then the alerts that started or cleared. Returns a jsonb summary of counts, errors per failed step, and the duration. What pg_cron or the easymo background worker calls.';

-- Notifications (sql/notifications.sql), as a fresh install makes them.
-- Notifications: a notification for a user fans out to one delivery per channel (whatsapp, sms,
-- push, email). Preferences per user and channel decide which channels, when (quiet hours in
-- the user's time zone) and whether at all (a disabled channel or a muted type leaves a
-- `suppressed` delivery saying why). Channel workers claim deliveries with the claim /
-- acknowledge / retry semantics of the other queues (queues.sql); WhatsApp deliveries go through
-- whatsapp_message_queue, the one outbound WhatsApp path, and follow its rows' status.

CREATE TABLE @extschema@.notifications (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      uuid NOT NULL,
    type         text NOT NULL CHECK (length(type) BETWEEN 1 AND 100),
    title        text NOT NULL CHECK (length(title) BETWEEN 1 AND 255),
    body         text NOT NULL CHECK (length(body) BETWEEN 1 AND 4096),
    data         jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(data) = 'object'),
    priority     integer NOT NULL DEFAULT 5 CHECK (priority BETWEEN 1 AND 10),
    dedupe_key   text CHECK (length(dedupe_key) BETWEEN 1 AND 255),
    scheduled_at timestamptz NOT NULL DEFAULT now(),
    read_at      timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notifications_user_idx ON @extschema@.notifications (user_id, created_at DESC);
-- unread_notification_count reads only this.
CREATE INDEX notifications_unread_idx ON @extschema@.notifications (user_id) WHERE read_at IS NULL;
CREATE INDEX notifications_created_idx ON @extschema@.notifications (created_at);
COMMENT ON TABLE @extschema@.notifications IS
    'One row per notification to a user (type, title, body, data, priority 1 most urgent to 10); read_at when the user marked it read. Fanned out to notification_deliveries.';

CREATE TABLE @extschema@.notification_deliveries (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    notification_id     uuid NOT NULL REFERENCES @extschema@.notifications (id) ON DELETE CASCADE,
    user_id             uuid NOT NULL,
    channel             text NOT NULL CHECK (channel IN ('whatsapp', 'sms', 'push', 'email')),
    -- pending: waits for a channel worker (scheduled_at, after quiet hours); queued: handed to
    -- whatsapp_message_queue; processing: claimed; sent: the provider took it; delivered or
    -- failed: what the provider reported back; dead_letter: retries used up; suppressed: not
    -- sent, `reason` says why; cancelled: its WhatsApp message was cancelled.
    status              text NOT NULL DEFAULT 'pending'
                            CHECK (status IN ('pending', 'queued', 'processing', 'sent', 'delivered', 'failed',
                                              'dead_letter', 'suppressed', 'cancelled')),
    reason              text CHECK (length(reason) <= 255),
    priority            integer NOT NULL DEFAULT 5 CHECK (priority BETWEEN 1 AND 10),
    scheduled_at        timestamptz NOT NULL DEFAULT now(),
    retry_count         integer NOT NULL DEFAULT 0 CHECK (retry_count >= 0),
    max_retries         integer NOT NULL DEFAULT 3 CHECK (max_retries >= 0),
    locked_until        timestamptz,
    whatsapp_message_id uuid,
    provider_message_id text CHECK (length(provider_message_id) <= 255),
    last_error          text,
    sent_at             timestamptz,
    delivered_at        timestamptz,
    failed_at           timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    -- Claims so far, and the receipt of the current one (see message_queue).
    deliveries          integer NOT NULL DEFAULT 0 CHECK (deliveries >= 0),
    receipt             text GENERATED ALWAYS AS
                            (CASE WHEN deliveries > 0 THEN 'n:' || id::text || ':' || deliveries::text END) STORED,
    UNIQUE (notification_id, channel),
    CHECK ((channel = 'whatsapp') OR whatsapp_message_id IS NULL),
    CHECK ((status = 'suppressed') = (reason IS NOT NULL))
);
-- Channel workers claim by priority, then age: active (pending or in-flight) deliveries only.
CREATE INDEX notification_deliveries_due_idx
    ON @extschema@.notification_deliveries (channel, priority, created_at, id)
    WHERE status IN ('pending', 'processing');
CREATE INDEX notification_deliveries_locked_idx
    ON @extschema@.notification_deliveries (locked_until)
    WHERE status = 'processing';
CREATE INDEX notification_deliveries_notification_idx ON @extschema@.notification_deliveries (notification_id);
CREATE INDEX notification_deliveries_user_idx ON @extschema@.notification_deliveries (user_id);
CREATE INDEX notification_deliveries_status_idx ON @extschema@.notification_deliveries (channel, status);
-- Provider callbacks find their delivery by the provider's id; WhatsApp status by its message.
CREATE UNIQUE INDEX notification_deliveries_provider_idx
    ON @extschema@.notification_deliveries (channel, provider_message_id)
    WHERE provider_message_id IS NOT NULL;
CREATE UNIQUE INDEX notification_deliveries_whatsapp_idx
    ON @extschema@.notification_deliveries (whatsapp_message_id)
    WHERE whatsapp_message_id IS NOT NULL;
CREATE TRIGGER notification_deliveries_touch BEFORE UPDATE ON @extschema@.notification_deliveries
    FOR EACH ROW EXECUTE FUNCTION @extschema@._touch_updated_at();
COMMENT ON TABLE @extschema@.notification_deliveries IS
    'One delivery of a notification per channel (whatsapp, sms, push, email): status pending, queued (in whatsapp_message_queue), processing, sent, delivered, failed, dead_letter, suppressed (reason says why) or cancelled; claimed with a visibility timeout and retried with backoff.';

CREATE TABLE @extschema@.notification_preferences (
    user_id     uuid NOT NULL,
    channel     text NOT NULL CHECK (channel IN ('whatsapp', 'sms', 'push', 'email')),
    enabled     boolean NOT NULL DEFAULT true,
    -- Quiet hours, local times in `timezone`: start after end spans midnight (22:00 to 07:00).
    quiet_start time,
    quiet_end   time,
    timezone    text NOT NULL DEFAULT 'UTC' CHECK (length(timezone) BETWEEN 1 AND 64),
    muted_types text[] NOT NULL DEFAULT '{}' CHECK (array_position(muted_types, NULL) IS NULL),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, channel),
    CHECK ((quiet_start IS NULL) = (quiet_end IS NULL)),
    CHECK (quiet_start IS DISTINCT FROM quiet_end OR quiet_start IS NULL)
);
CREATE TRIGGER notification_preferences_touch BEFORE UPDATE ON @extschema@.notification_preferences
    FOR EACH ROW EXECUTE FUNCTION @extschema@._touch_updated_at();
COMMENT ON TABLE @extschema@.notification_preferences IS
    'Per user and channel: enabled, quiet hours (local times in timezone; a non-urgent delivery in them waits until they end) and the notification types muted on that channel.';

-- A dedupe key claims its window here: the primary key serializes concurrent senders.
CREATE TABLE @extschema@.notification_dedupe_keys (
    user_id         uuid NOT NULL,
    dedupe_key      text NOT NULL CHECK (length(dedupe_key) BETWEEN 1 AND 255),
    notification_id uuid NOT NULL,
    expires_at      timestamptz NOT NULL,
    PRIMARY KEY (user_id, dedupe_key)
);
CREATE INDEX notification_dedupe_keys_expires_idx ON @extschema@.notification_dedupe_keys (expires_at);
COMMENT ON TABLE @extschema@.notification_dedupe_keys IS
    'Dedupe keys of notifications per user, each with the notification it returns until expires_at (easymo.notification_dedupe_seconds after it was first used).';

CREATE VIEW @extschema@.notification_delivery_stats WITH (security_invoker = true) AS
SELECT channel,
       status,
       count(*)                                          AS deliveries,
       count(*) FILTER (WHERE scheduled_at <= now())     AS due,
       min(scheduled_at) FILTER (WHERE status IN ('pending', 'processing')) AS oldest_active_scheduled_at,
       avg(retry_count)                                  AS avg_retries
  FROM @extschema@.notification_deliveries
 GROUP BY channel, status;
COMMENT ON VIEW @extschema@.notification_delivery_stats IS
    'Notification deliveries per channel and status: count, how many are due, oldest active scheduled time, average retries.';

SELECT @extschema@._secure_table('@extschema@.notifications', 'user_id');
SELECT @extschema@._secure_table('@extschema@.notification_deliveries', 'user_id');
SELECT @extschema@._secure_table('@extschema@.notification_preferences', 'user_id');
SELECT @extschema@._secure_table('@extschema@.notification_dedupe_keys');
SELECT @extschema@._secure_view('@extschema@.notification_delivery_stats');
-- A user marks its own notifications read (mark_notifications_read, with the caller's rights):
-- that one column of its own rows.
CREATE POLICY owner_mark_read ON @extschema@.notifications FOR UPDATE TO authenticated
    USING (user_id = (SELECT @extschema@.request_user_id()))
    WITH CHECK (user_id = (SELECT @extschema@.request_user_id()));
GRANT UPDATE (read_at) ON TABLE @extschema@.notifications TO authenticated;

-- When a delivery that falls at p_at in quiet hours [p_start, p_end) (local times in p_tz) may go:
-- p_at itself outside them, else the local end of the quiet hours (the next day's when they span
-- midnight and p_at is before it). Local times are converted back in p_tz, so a daylight saving
-- change between is accounted for.
CREATE FUNCTION @extschema@._notification_send_at(p_at timestamptz, p_start time, p_end time, p_tz text)
RETURNS timestamptz
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
DECLARE
    local_at timestamp := p_at AT TIME ZONE p_tz;
    t time := local_at::time;
BEGIN
    IF p_start IS NULL OR p_end IS NULL OR p_start = p_end THEN
        RETURN p_at;
    ELSIF p_start < p_end THEN
        IF t >= p_start AND t < p_end THEN
            RETURN (local_at::date + p_end) AT TIME ZONE p_tz;
        END IF;
    ELSIF t >= p_start THEN
        RETURN (local_at::date + 1 + p_end) AT TIME ZONE p_tz;
    ELSIF t < p_end THEN
        RETURN (local_at::date + p_end) AT TIME ZONE p_tz;
    END IF;
    RETURN p_at;
END
$$;
COMMENT ON FUNCTION @extschema@._notification_send_at(timestamptz, time, time, text) IS
    'Internal: p_at, or the end of the quiet hours [p_start, p_end) (local times in p_tz, spanning midnight when start > end) when p_at falls in them.';

CREATE FUNCTION @extschema@.set_notification_preference(
    p_user_id uuid,
    p_channel text,
    p_enabled boolean,
    p_quiet_start time DEFAULT NULL,
    p_quiet_end time DEFAULT NULL,
    p_timezone text DEFAULT 'UTC',
    p_muted_types text[] DEFAULT '{}'
) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    p_user_id := @extschema@._check_not_null('p_user_id', p_user_id);
    p_channel := @extschema@._check_choice('p_channel', p_channel, ARRAY['whatsapp', 'sms', 'push', 'email']);
    p_enabled := @extschema@._check_not_null('p_enabled', p_enabled);
    p_timezone := @extschema@._check_text('p_timezone', p_timezone, 64);
    p_muted_types := coalesce(p_muted_types, '{}');
    IF (p_quiet_start IS NULL) <> (p_quiet_end IS NULL) OR p_quiet_start = p_quiet_end THEN
        RAISE EXCEPTION 'p_quiet_start and p_quiet_end: both or neither, and different, got % and %',
            coalesce(p_quiet_start::text, 'NULL'), coalesce(p_quiet_end::text, 'NULL') USING ERRCODE = '22023';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = p_timezone)
       AND NOT EXISTS (SELECT 1 FROM pg_timezone_abbrevs WHERE abbrev = p_timezone) THEN
        RAISE EXCEPTION 'p_timezone: unknown time zone %', quote_literal(p_timezone)
            USING ERRCODE = '22023', HINT = 'A name of pg_timezone_names, such as Africa/Kigali.';
    END IF;
    IF array_ndims(p_muted_types) > 1 THEN
        RAISE EXCEPTION 'p_muted_types: must be a one-dimensional array' USING ERRCODE = '22023';
    ELSIF array_position(p_muted_types, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'p_muted_types: must not contain NULL' USING ERRCODE = '22023';
    END IF;
    INSERT INTO @extschema@.notification_preferences AS p
           (user_id, channel, enabled, quiet_start, quiet_end, timezone, muted_types)
    VALUES (p_user_id, p_channel, p_enabled, p_quiet_start, p_quiet_end, p_timezone, p_muted_types)
    ON CONFLICT (user_id, channel) DO UPDATE
       SET enabled = EXCLUDED.enabled, quiet_start = EXCLUDED.quiet_start, quiet_end = EXCLUDED.quiet_end,
           timezone = EXCLUDED.timezone, muted_types = EXCLUDED.muted_types;
END
$$;
COMMENT ON FUNCTION @extschema@.set_notification_preference(uuid, text, boolean, time, time, text, text[]) IS
    'Sets a user''s preference for one channel: enabled, quiet hours (local times in p_timezone; start after end spans midnight) and the muted notification types.';

CREATE FUNCTION @extschema@.send_notification(
    p_user_id uuid,
    p_type text,
    p_title text,
    p_body text,
    p_data jsonb DEFAULT '{}',
    p_channels text[] DEFAULT NULL,
    p_priority integer DEFAULT 5,
    p_dedupe_key text DEFAULT NULL,
    p_scheduled_at timestamptz DEFAULT now()
) RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    all_channels CONSTANT text[] := ARRAY['whatsapp', 'sms', 'push', 'email'];
    new_id   uuid := gen_random_uuid();
    first_id uuid;
    ch       text;
    pref     @extschema@.notification_preferences;
    why      text;
    send_at  timestamptz;
    phone    text;
    message_id uuid;
    delivery_id uuid;
BEGIN
    p_user_id := @extschema@._check_not_null('p_user_id', p_user_id);
    p_type := @extschema@._check_text('p_type', p_type, 100);
    p_title := @extschema@._check_text('p_title', p_title, 255);
    p_body := @extschema@._check_text('p_body', p_body, 4096);
    p_data := coalesce(@extschema@._check_json('p_data', p_data, 'object', false), '{}');
    p_priority := @extschema@._check_range('p_priority', p_priority, 1, 10);
    p_dedupe_key := @extschema@._check_text('p_dedupe_key', p_dedupe_key, 255, false);
    p_scheduled_at := @extschema@._check_time('p_scheduled_at', p_scheduled_at);
    IF p_channels IS NOT NULL THEN
        IF cardinality(p_channels) = 0 THEN
            RAISE EXCEPTION 'p_channels: must name at least one channel, or be NULL for the user''s enabled channels'
                USING ERRCODE = '22023';
        END IF;
        FOREACH ch IN ARRAY p_channels LOOP
            ch := @extschema@._check_choice('p_channels', ch, all_channels);
        END LOOP;
    END IF;

    -- The key's window: the first sender within it claims the key; the others (waiting on the
    -- key's row while the first is in flight) get the first notification.
    IF p_dedupe_key IS NOT NULL THEN
        INSERT INTO @extschema@.notification_dedupe_keys AS d (user_id, dedupe_key, notification_id, expires_at)
        VALUES (p_user_id, p_dedupe_key, new_id,
                now() + make_interval(secs => coalesce(
                    nullif(current_setting('easymo.notification_dedupe_seconds', true), '')::double precision, 86400)))
        ON CONFLICT (user_id, dedupe_key) DO UPDATE
           SET notification_id = CASE WHEN d.expires_at <= now() THEN EXCLUDED.notification_id ELSE d.notification_id END,
               expires_at = CASE WHEN d.expires_at <= now() THEN EXCLUDED.expires_at ELSE d.expires_at END
        RETURNING d.notification_id INTO first_id;
        IF first_id <> new_id THEN
            RETURN first_id;
        END IF;
    END IF;

    INSERT INTO @extschema@.notifications (id, user_id, type, title, body, data, priority, dedupe_key, scheduled_at)
    VALUES (new_id, p_user_id, p_type, p_title, p_body, p_data, p_priority, p_dedupe_key, p_scheduled_at);

    -- Named channels (each once, in the contract's order), or the user's enabled ones.
    FOR ch IN
        SELECT c FROM unnest(all_channels) WITH ORDINALITY u(c, n)
         WHERE CASE WHEN p_channels IS NULL
                    THEN EXISTS (SELECT 1 FROM @extschema@.notification_preferences np
                                  WHERE np.user_id = p_user_id AND np.channel = u.c AND np.enabled)
                    ELSE u.c = ANY (p_channels) END
         ORDER BY n
    LOOP
        SELECT * INTO pref FROM @extschema@.notification_preferences np WHERE np.user_id = p_user_id AND np.channel = ch;
        why := CASE WHEN pref.user_id IS NULL THEN NULL
                    WHEN NOT pref.enabled THEN 'channel disabled by the user'
                    WHEN p_type = ANY (pref.muted_types) THEN format('type %s muted by the user', p_type) END;
        -- Priority 1 and 2 are urgent: they ignore quiet hours.
        send_at := CASE WHEN p_priority <= 2 OR pref.user_id IS NULL THEN p_scheduled_at
                        ELSE @extschema@._notification_send_at(p_scheduled_at, pref.quiet_start, pref.quiet_end, pref.timezone) END;
        delivery_id := gen_random_uuid();
        message_id := NULL;
        IF why IS NULL AND ch = 'whatsapp' THEN
            SELECT s.phone_number INTO phone FROM @extschema@.whatsapp_sessions s
             WHERE s.user_id = p_user_id AND s.status = 'active'
             ORDER BY s.last_activity_at DESC LIMIT 1;
            IF phone IS NULL THEN
                why := 'no active WhatsApp session for the user';
            ELSE
                message_id := @extschema@.enqueue_whatsapp_message(
                    phone, 'text',
                    jsonb_build_object('title', p_title, 'body', p_body, 'data', p_data, 'type', p_type,
                                       'notification_id', new_id, 'delivery_id', delivery_id),
                    p_priority, 'notification:' || delivery_id, send_at);
            END IF;
        END IF;
        INSERT INTO @extschema@.notification_deliveries
               (id, notification_id, user_id, channel, status, reason, priority, scheduled_at, whatsapp_message_id)
        VALUES (delivery_id, new_id, p_user_id, ch,
                CASE WHEN why IS NOT NULL THEN 'suppressed' WHEN message_id IS NOT NULL THEN 'queued' ELSE 'pending' END,
                why, p_priority, send_at, message_id);
    END LOOP;
    RETURN new_id;
END
$$;
COMMENT ON FUNCTION @extschema@.send_notification(uuid, text, text, text, jsonb, text[], integer, text, timestamptz) IS
    'Sends a notification to a user: one delivery per channel named (whatsapp, sms, push, email), or per channel the user enabled when p_channels is NULL; quiet hours delay non-urgent ones (priority 3 to 10); a disabled channel, a muted type or no WhatsApp number leaves a suppressed delivery. The same p_dedupe_key within easymo.notification_dedupe_seconds returns the first notification and sends nothing.';

CREATE FUNCTION @extschema@.mark_notifications_read(p_notification_ids uuid[])
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    p_notification_ids := @extschema@._check_not_null('p_notification_ids', p_notification_ids);
    UPDATE @extschema@.notifications t SET read_at = now()
     WHERE t.id = ANY (p_notification_ids) AND t.read_at IS NULL
       AND t.user_id = (SELECT @extschema@.request_user_id());
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
COMMENT ON FUNCTION @extschema@.mark_notifications_read(uuid[]) IS
    'Marks the caller''s own notifications among p_notification_ids read (request_user_id()); returns how many were unread. Another user''s ids are ignored.';

CREATE FUNCTION @extschema@.unread_notification_count()
RETURNS bigint
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT count(*) FROM @extschema@.notifications t
     WHERE t.user_id = (SELECT @extschema@.request_user_id()) AND t.read_at IS NULL
$$;
COMMENT ON FUNCTION @extschema@.unread_notification_count() IS
    'How many of the caller''s own notifications (request_user_id()) are unread.';

-- ---------------------------------------------------------------------------------------------
-- Channel workers (sms, push, email): the queue semantics of queues.sql. processing while
-- claimed, sent when completed, dead_letter when its retries are used up.

CREATE FUNCTION @extschema@.claim_notification_deliveries(
    p_channel text,
    p_batch_size integer DEFAULT 10,
    p_visibility_timeout_seconds integer DEFAULT 30
) RETURNS TABLE(delivery_id uuid, notification_id uuid, user_id uuid, channel text, type text, title text,
                body text, data jsonb, priority integer, retry_count integer)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    p_channel := @extschema@._check_choice('p_channel', p_channel, ARRAY['sms', 'push', 'email', 'whatsapp']);
    IF p_channel = 'whatsapp' THEN
        RAISE EXCEPTION 'p_channel: WhatsApp deliveries go out through whatsapp_message_queue'
            USING ERRCODE = '22023', HINT = 'Claim them with claim_whatsapp_messages().';
    END IF;
    p_batch_size := @extschema@._check_range('p_batch_size', p_batch_size, 1, 1000);
    p_visibility_timeout_seconds := @extschema@._check_range('p_visibility_timeout_seconds', p_visibility_timeout_seconds, 0, 43200);
    RETURN QUERY
    WITH due AS (
        SELECT q.id FROM @extschema@.notification_deliveries q
         WHERE q.status IN ('pending', 'processing')
           AND CASE q.status WHEN 'pending' THEN q.scheduled_at <= now() ELSE q.locked_until <= now() END
           AND q.channel = p_channel
         ORDER BY q.priority, q.created_at, q.id
         LIMIT p_batch_size
           FOR UPDATE SKIP LOCKED
    ), claimed AS (
        -- A row still processing here had its visibility timeout pass: a failed attempt.
        UPDATE @extschema@.notification_deliveries t
           SET retry_count = t.retry_count + (t.status = 'processing')::int,
               deliveries = t.deliveries + 1,
               status = CASE WHEN t.status = 'processing' AND t.retry_count + 1 > t.max_retries
                             THEN 'dead_letter' ELSE 'processing' END,
               locked_until = now() + make_interval(secs => p_visibility_timeout_seconds),
               last_error = CASE WHEN t.status = 'processing'
                                 THEN 'visibility timeout passed without an acknowledgement' ELSE t.last_error END,
               failed_at = CASE WHEN t.status = 'processing' AND t.retry_count + 1 > t.max_retries THEN now() END,
               updated_at = now()
          FROM due
         WHERE t.id = due.id
        RETURNING t.*
    )
    SELECT c.id, c.notification_id, c.user_id, c.channel, n.type, n.title, n.body, n.data, c.priority, c.retry_count
      FROM claimed c JOIN @extschema@.notifications n ON n.id = c.notification_id
     WHERE c.status = 'processing'
     ORDER BY c.priority, c.created_at, c.id;
END
$$;
COMMENT ON FUNCTION @extschema@.claim_notification_deliveries(text, integer, integer) IS
    'Claims up to p_batch_size due deliveries of one channel (sms, push, email; priority, then age; FOR UPDATE SKIP LOCKED) for p_visibility_timeout_seconds, with what to send; an unacknowledged one is due again after that, counting as a failed attempt.';

CREATE FUNCTION @extschema@.complete_notification_delivery(p_delivery_id uuid, p_provider_message_id text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    p_delivery_id := @extschema@._check_not_null('p_delivery_id', p_delivery_id);
    p_provider_message_id := @extschema@._check_text('p_provider_message_id', p_provider_message_id, 255, false);
    UPDATE @extschema@.notification_deliveries t
       SET status = 'sent', locked_until = NULL, sent_at = now(),
           provider_message_id = coalesce(p_provider_message_id, t.provider_message_id), updated_at = now()
     WHERE t.id = p_delivery_id AND t.status = 'processing';
    IF FOUND THEN
        RETURN true;
    END IF;
    PERFORM @extschema@._queue_not_claimed('@extschema@.notification_deliveries', 'notification delivery', p_delivery_id, 'processing', true);
    RETURN false;
END
$$;
COMMENT ON FUNCTION @extschema@.complete_notification_delivery(uuid, text) IS
    'Marks a claimed delivery sent, with the provider''s message id: true, or false when it was not claimed; unknown id P0002.';

CREATE FUNCTION @extschema@.fail_notification_delivery(p_delivery_id uuid, p_error text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_status text;
BEGIN
    p_delivery_id := @extschema@._check_not_null('p_delivery_id', p_delivery_id);
    UPDATE @extschema@.notification_deliveries t
       SET retry_count = t.retry_count + 1,
           status = CASE WHEN t.retry_count + 1 > t.max_retries THEN 'dead_letter' ELSE 'pending' END,
           scheduled_at = CASE WHEN t.retry_count + 1 > t.max_retries THEN t.scheduled_at
                               ELSE now() + @extschema@._retry_delay(t.retry_count + 1) END,
           locked_until = NULL,
           last_error = p_error,
           failed_at = CASE WHEN t.retry_count + 1 > t.max_retries THEN now() END,
           updated_at = now()
     WHERE t.id = p_delivery_id AND t.status = 'processing'
    RETURNING t.status INTO new_status;
    IF NOT FOUND THEN
        PERFORM @extschema@._queue_not_claimed('@extschema@.notification_deliveries', 'notification delivery', p_delivery_id, 'processing', false);
    END IF;
    RETURN new_status;
END
$$;
COMMENT ON FUNCTION @extschema@.fail_notification_delivery(uuid, text) IS
    'Gives a claimed delivery back: pending again after an exponential backoff with jitter, or dead_letter after max_retries; returns the new status.';

-- Provider callbacks: what happened after the provider took a message (any channel; a WhatsApp
-- delivery has its provider id once its message was completed).
CREATE FUNCTION @extschema@.record_notification_status(
    p_channel text,
    p_provider_message_id text,
    p_status text,
    p_error text DEFAULT NULL
) RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current_status text;
BEGIN
    p_channel := @extschema@._check_choice('p_channel', p_channel, ARRAY['whatsapp', 'sms', 'push', 'email']);
    p_provider_message_id := @extschema@._check_text('p_provider_message_id', p_provider_message_id, 255);
    p_status := @extschema@._check_choice('p_status', p_status, ARRAY['sent', 'delivered', 'failed']);
    -- Forward only: sent (from a delivery not yet marked so), then delivered, then failed
    -- (a delivered message can still bounce); a late or repeated callback changes nothing.
    UPDATE @extschema@.notification_deliveries t
       SET status = p_status,
           sent_at = CASE WHEN p_status = 'sent' THEN coalesce(t.sent_at, now()) ELSE t.sent_at END,
           delivered_at = CASE WHEN p_status = 'delivered' THEN now() ELSE t.delivered_at END,
           failed_at = CASE WHEN p_status = 'failed' THEN now() ELSE t.failed_at END,
           last_error = CASE WHEN p_status = 'failed' THEN p_error ELSE t.last_error END,
           updated_at = now()
     WHERE t.channel = p_channel AND t.provider_message_id = p_provider_message_id
       AND CASE p_status
               WHEN 'sent' THEN t.status IN ('queued', 'processing')
               WHEN 'delivered' THEN t.status = 'sent'
               ELSE t.status IN ('sent', 'delivered')
           END;
    IF FOUND THEN
        RETURN true;
    END IF;
    SELECT t.status INTO current_status FROM @extschema@.notification_deliveries t
     WHERE t.channel = p_channel AND t.provider_message_id = p_provider_message_id;
    IF current_status IS NULL THEN
        RAISE EXCEPTION 'no % delivery has provider message id %', p_channel, quote_literal(p_provider_message_id)
            USING ERRCODE = 'P0002';
    END IF;
    RETURN false;
END
$$;
COMMENT ON FUNCTION @extschema@.record_notification_status(text, text, text, text) IS
    'A provider callback: the delivery of p_channel with that provider message id was sent (from queued or processing), delivered (from sent) or failed (from sent or delivered). True when recorded, false when it already says so or is past it; unknown id P0002.';

-- A WhatsApp delivery follows its message in whatsapp_message_queue.
CREATE FUNCTION @extschema@._notification_follow_whatsapp()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE @extschema@.notification_deliveries t
       SET status = CASE NEW.status WHEN 'pending' THEN 'queued' WHEN 'failed' THEN 'dead_letter' ELSE NEW.status END,
           retry_count = NEW.retry_count,
           provider_message_id = coalesce(NEW.provider_message_id, t.provider_message_id),
           last_error = NEW.last_error,
           sent_at = CASE WHEN NEW.status = 'sent' THEN coalesce(NEW.sent_at, now()) ELSE t.sent_at END,
           failed_at = CASE WHEN NEW.status = 'failed' THEN now() ELSE t.failed_at END
     WHERE t.whatsapp_message_id = NEW.id
       AND t.status IN ('queued', 'processing');
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION @extschema@._notification_follow_whatsapp() IS
    'Internal trigger function: a WhatsApp notification delivery takes its message''s status (processing, sent, failed -> dead_letter, cancelled).';
CREATE TRIGGER notification_follow_whatsapp AFTER UPDATE OF status ON @extschema@.whatsapp_message_queue
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status AND NEW.correlation_id LIKE 'notification:%')
    EXECUTE FUNCTION @extschema@._notification_follow_whatsapp();

-- Maintenance's bulk form of what a claim does to a delivery whose visibility timeout passed.
CREATE FUNCTION @extschema@._release_expired_notification_deliveries()
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    WITH expired AS (
        SELECT q.id FROM @extschema@.notification_deliveries q
         WHERE q.status = 'processing' AND q.locked_until <= now()
           FOR UPDATE SKIP LOCKED
    )
    UPDATE @extschema@.notification_deliveries t
       SET retry_count = t.retry_count + 1,
           status = CASE WHEN t.retry_count + 1 > t.max_retries THEN 'dead_letter' ELSE 'pending' END,
           scheduled_at = CASE WHEN t.retry_count + 1 > t.max_retries THEN t.scheduled_at ELSE now() END,
           locked_until = NULL,
           last_error = 'visibility timeout passed without an acknowledgement',
           failed_at = CASE WHEN t.retry_count + 1 > t.max_retries THEN now() END,
           updated_at = now()
      FROM expired
     WHERE t.id = expired.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
COMMENT ON FUNCTION @extschema@._release_expired_notification_deliveries() IS
    'Internal (maintenance): deliveries claimed past their visibility timeout go back to pending (a failed attempt) or to dead_letter past max_retries; rows locked now are skipped.';

CREATE FUNCTION @extschema@._cleanup_notification_dedupe_keys()
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    DELETE FROM @extschema@.notification_dedupe_keys d
     WHERE d.ctid IN (SELECT k.ctid FROM @extschema@.notification_dedupe_keys k
                       WHERE k.expires_at <= now() FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
COMMENT ON FUNCTION @extschema@._cleanup_notification_dedupe_keys() IS
    'Internal (maintenance): removes dedupe keys whose window has passed; rows locked now are skipped.';

-- Monitoring (sql/monitoring.sql), as a fresh install makes them.
-- Monitoring: alerts on what goes wrong (rules and thresholds are rows, per environment), their
-- history (maintenance records when each starts and clears), and the extension's state in the
-- Prometheus text exposition format for a scraper.

CREATE TABLE @extschema@.alert_rules (
    rule           text NOT NULL CHECK (rule IN ('queue_backlog', 'queue_oldest_due_seconds', 'dead_letters',
                                                 'failed_transactions', 'service_stale', 'partitions_ahead',
                                                 'default_partition_rows', 'cache_hit_ratio', 'wallet_reconciliation')),
    -- The environment the rule is for (easymo.environment), all of them, or `default`: the
    -- extension's own rows, which a row for all or for one environment overrides.
    environment    text NOT NULL DEFAULT 'all' CHECK (length(environment) BETWEEN 1 AND 64),
    threshold      double precision NOT NULL CHECK (threshold = threshold AND threshold <> 'Infinity' AND threshold <> '-Infinity'),
    -- Fires when the value is above the threshold, or below it.
    fires_when     text NOT NULL DEFAULT 'above' CHECK (fires_when IN ('above', 'below')),
    severity       text NOT NULL DEFAULT 'warning' CHECK (severity IN ('info', 'warning', 'critical')),
    -- For the rules that count over a recent window (dead letters, failed transactions).
    window_seconds integer CHECK (window_seconds BETWEEN 1 AND 31536000),
    enabled        boolean NOT NULL DEFAULT true,
    description    text CHECK (length(description) <= 1000),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (rule, environment)
);
CREATE TRIGGER alert_rules_touch BEFORE UPDATE ON @extschema@.alert_rules
    FOR EACH ROW EXECUTE FUNCTION @extschema@._touch_updated_at();
COMMENT ON TABLE @extschema@.alert_rules IS
    'Alert thresholds, one row per rule and environment: the row for the current easymo.environment wins over the row for all, which wins over the extension''s own (environment default, read-only): threshold, fires above or below it, severity, window for counted rules, enabled.';
-- The extension's rows are made by CREATE EXTENSION (and its updates), so they are left out of
-- pg_dump (security.sql) and cannot be changed: an override is a row of its own, which the dump
-- keeps and a restore cannot collide with.
CREATE FUNCTION @extschema@._alert_rules_keep_defaults()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'alert rule % for environment default is the extension''s own', OLD.rule
        USING ERRCODE = '55000',
              HINT = 'Override it with a row of its own: INSERT INTO alert_rules (rule, environment, threshold, ...) VALUES (..., ''all'', ...).';
END
$$;
COMMENT ON FUNCTION @extschema@._alert_rules_keep_defaults() IS
    'Internal trigger function: the extension''s own alert rules (environment default) are read-only (55000); a row for all or one environment overrides them.';
INSERT INTO @extschema@.alert_rules (rule, environment, threshold, fires_when, severity, window_seconds, description)
SELECT rule, 'default', threshold, fires_when, severity, window_seconds, description FROM (VALUES
    ('queue_backlog',            1000, 'above', 'warning',  NULL, 'Due messages waiting in a queue (message_queue per queue, WhatsApp, jobs per type, notifications per channel).'),
    ('queue_oldest_due_seconds', 300,  'above', 'warning',  NULL, 'Seconds the oldest due message of a queue has waited.'),
    ('dead_letters',             0,    'above', 'critical', 86400, 'Messages, jobs and deliveries that gave up within the window, per queue.'),
    ('failed_transactions',      10,   'above', 'critical', 3600, 'Transactions that failed within the window.'),
    ('service_stale',            120,  'above', 'critical', NULL, 'Seconds since a registered service''s last heartbeat.'),
    ('partitions_ahead',         2,    'below', 'critical', NULL, 'Months of partitions after the current one, per partitioned table.'),
    ('default_partition_rows',   0,    'above', 'warning',  NULL, 'Rows in a DEFAULT partition (a month without its partition).'),
    ('cache_hit_ratio',          0.5,  'below', 'info',     NULL, 'Cache hits over lookups, per cache type with at least 100 lookups.'),
    ('wallet_reconciliation',    0,    'above', 'critical', NULL, 'Wallet accounts that disagree with their entries or holds, per currency (or balances not summing to zero).')
) AS d(rule, threshold, fires_when, severity, window_seconds, description);
CREATE TRIGGER alert_rules_keep_defaults BEFORE UPDATE OR DELETE ON @extschema@.alert_rules
    FOR EACH ROW WHEN (OLD.environment = 'default') EXECUTE FUNCTION @extschema@._alert_rules_keep_defaults();

CREATE TABLE @extschema@.alert_events (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    rule       text NOT NULL CHECK (length(rule) BETWEEN 1 AND 64),
    subject    text NOT NULL CHECK (length(subject) <= 512),
    severity   text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    value      double precision NOT NULL,
    threshold  double precision NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    cleared_at timestamptz,
    CHECK (cleared_at IS NULL OR cleared_at >= started_at)
);
-- One open event per rule and subject.
CREATE UNIQUE INDEX alert_events_open_idx ON @extschema@.alert_events (rule, subject) WHERE cleared_at IS NULL;
CREATE INDEX alert_events_started_idx ON @extschema@.alert_events (started_at);
COMMENT ON TABLE @extschema@.alert_events IS
    'Alert history: when each alert (rule, subject) started firing and when it cleared (NULL while it fires), with the value and threshold when it started. Written by run_maintenance().';

SELECT @extschema@._secure_table('@extschema@.alert_rules');
SELECT @extschema@._secure_table('@extschema@.alert_events');

-- Every measure a rule looks at, for the rule row that applies here: one row per rule and
-- subject, firing or not. As the owner: it counts DEFAULT partitions, which nobody else may read
-- directly (they are read through their parent); only service_role may call it.
CREATE FUNCTION @extschema@._alert_measures()
RETURNS TABLE(rule text, subject text, value double precision, threshold double precision, severity text, firing boolean)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    env CONSTANT text := coalesce(nullif(current_setting('easymo.environment', true), ''), 'production');
    dead_window interval;
    failed_window interval;
    this_month timestamptz := date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    -- Rows in each DEFAULT partition, by table: counted here with EXECUTE (no XML functions,
    -- which a server built without libxml lacks), and only when the rule is on.
    default_rows jsonb := '{}'::jsonb;
    part record;
    n bigint;
BEGIN
    IF EXISTS (SELECT 1 FROM (SELECT ar.enabled FROM @extschema@.alert_rules ar
                               WHERE ar.rule = 'default_partition_rows' AND ar.environment IN (env, 'all', 'default')
                               ORDER BY array_position(ARRAY[env, 'all', 'default'], ar.environment) LIMIT 1) x
                WHERE x.enabled) THEN
        FOR part IN SELECT c.relname::text AS name, p.partdefid::regclass AS default_part
                      FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid
                     WHERE c.relnamespace = '@extschema@'::regnamespace AND p.partdefid <> 0
        LOOP
            EXECUTE format('SELECT count(*) FROM %s', part.default_part) INTO n;
            default_rows := default_rows || jsonb_build_object(part.name, n);
        END LOOP;
    END IF;
    SELECT make_interval(secs => coalesce(r.window_seconds, 86400)) INTO dead_window
      FROM @extschema@.alert_rules r WHERE r.rule = 'dead_letters' AND r.environment IN (env, 'all', 'default')
     ORDER BY array_position(ARRAY[env, 'all', 'default'], r.environment) LIMIT 1;
    SELECT make_interval(secs => coalesce(r.window_seconds, 3600)) INTO failed_window
      FROM @extschema@.alert_rules r WHERE r.rule = 'failed_transactions' AND r.environment IN (env, 'all', 'default')
     ORDER BY array_position(ARRAY[env, 'all', 'default'], r.environment) LIMIT 1;
    RETURN QUERY
    WITH r AS (
        -- The row for this environment, else for all, else the extension's; then only if enabled.
        SELECT x.rule, x.threshold, x.fires_when, x.severity FROM (
            SELECT DISTINCT ON (ar.rule) ar.rule, ar.threshold, ar.fires_when, ar.severity, ar.enabled
              FROM @extschema@.alert_rules ar
             WHERE ar.environment IN (env, 'all', 'default')
             ORDER BY ar.rule, array_position(ARRAY[env, 'all', 'default'], ar.environment)) x
         WHERE x.enabled
    ), queues(subject, due, oldest) AS (
        SELECT 'message_queue:' || q.queue_name, count(*), min(q.scheduled_at)
          FROM @extschema@.message_queue q WHERE q.status = 'pending' AND q.scheduled_at <= now() GROUP BY q.queue_name
        UNION ALL
        SELECT 'whatsapp_message_queue', count(*), min(w.scheduled_at)
          FROM @extschema@.whatsapp_message_queue w WHERE w.status = 'pending' AND w.scheduled_at <= now() HAVING count(*) > 0
        UNION ALL
        SELECT 'background_jobs:' || j.job_type, count(*), min(j.scheduled_at)
          FROM @extschema@.background_jobs j WHERE j.status = 'pending' AND j.scheduled_at <= now() GROUP BY j.job_type
        UNION ALL
        SELECT 'notification_deliveries:' || d.channel, count(*), min(d.scheduled_at)
          FROM @extschema@.notification_deliveries d WHERE d.status = 'pending' AND d.scheduled_at <= now() GROUP BY d.channel
    ), dead(subject, n) AS (
        SELECT 'message_queue:' || q.queue_name, count(*)
          FROM @extschema@.message_queue q WHERE q.status = 'dead_letter' AND q.dead_lettered_at > now() - dead_window GROUP BY q.queue_name
        UNION ALL
        SELECT 'whatsapp_message_queue', count(*)
          FROM @extschema@.whatsapp_message_queue w WHERE w.status = 'failed' AND w.updated_at > now() - dead_window HAVING count(*) > 0
        UNION ALL
        SELECT 'background_jobs:' || j.job_type, count(*)
          FROM @extschema@.background_jobs j WHERE j.status IN ('failed', 'timeout') AND j.updated_at > now() - dead_window GROUP BY j.job_type
        UNION ALL
        SELECT 'notification_deliveries:' || d.channel, count(*)
          FROM @extschema@.notification_deliveries d WHERE d.status = 'dead_letter' AND d.failed_at > now() - dead_window GROUP BY d.channel
    ), partitioned AS (
        SELECT c.oid::regclass AS parent, c.relname::text AS name
          FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid
         WHERE c.relnamespace = '@extschema@'::regnamespace
    ), bounds AS MATERIALIZED (
        SELECT p.parent, b.lower_bound, b.upper_bound FROM partitioned p, @extschema@._partition_bounds(p.parent) b
    ), m(rule, subject, value) AS (
        SELECT 'queue_backlog', q.subject, q.due::float8 FROM queues q
        UNION ALL
        SELECT 'queue_oldest_due_seconds', q.subject, extract(epoch FROM now() - q.oldest)::float8 FROM queues q
        UNION ALL
        SELECT 'dead_letters', d.subject, d.n::float8 FROM dead d
        UNION ALL
        SELECT 'failed_transactions', 'transactions', count(*)::float8
          FROM @extschema@.transactions t WHERE t.status = 'failed' AND t.updated_at > now() - failed_window
        UNION ALL
        SELECT 'service_stale', s.service_name, extract(epoch FROM now() - s.last_heartbeat_at)::float8
          FROM @extschema@.service_registry s WHERE s.last_heartbeat_at IS NOT NULL AND s.status <> 'stopped'
        UNION ALL
        -- Consecutive months after this one that have their partition (-1: not even this one).
        SELECT 'partitions_ahead', p.name,
               (SELECT coalesce(min(g), 122) - 1 FROM generate_series(0, 121) g
                 WHERE NOT EXISTS (
                       SELECT 1 FROM bounds b
                        WHERE b.parent = p.parent
                          AND b.lower_bound <= ((this_month AT TIME ZONE 'UTC') + make_interval(months => g)) AT TIME ZONE 'UTC'
                          AND b.upper_bound > ((this_month AT TIME ZONE 'UTC') + make_interval(months => g)) AT TIME ZONE 'UTC'))::float8
          FROM partitioned p
        UNION ALL
        SELECT 'default_partition_rows', d.key, d.value::float8 FROM jsonb_each_text(default_rows) d
        UNION ALL
        SELECT 'cache_hit_ratio', cs.cache_type, cs.hits::float8 / (cs.hits + cs.misses)
          FROM @extschema@.cache_stats cs WHERE cs.hits + cs.misses >= 100
        UNION ALL
        SELECT 'wallet_reconciliation', w.currency,
               (w.accounts_mismatched + CASE WHEN w.balance_sum <> 0 THEN 1 ELSE 0 END)::float8
          FROM @extschema@.reconcile_wallets() w
         WHERE EXISTS (SELECT 1 FROM r WHERE r.rule = 'wallet_reconciliation')
    )
    SELECT m.rule, m.subject, m.value, r.threshold, r.severity,
           CASE r.fires_when WHEN 'above' THEN m.value > r.threshold ELSE m.value < r.threshold END
      FROM m JOIN r ON r.rule = m.rule;
END
$$;
COMMENT ON FUNCTION @extschema@._alert_measures() IS
    'Internal: every value an alert rule looks at (per rule and subject) with the threshold and severity of the rule row for easymo.environment, and whether it fires.';

CREATE FUNCTION @extschema@.current_alerts()
RETURNS TABLE(rule text, subject text, value double precision, threshold double precision, severity text, since timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT m.rule, m.subject, m.value, m.threshold, m.severity, coalesce(e.started_at, now())
      FROM @extschema@._alert_measures() m
      LEFT JOIN @extschema@.alert_events e ON e.rule = m.rule AND e.subject = m.subject AND e.cleared_at IS NULL
     WHERE m.firing
     ORDER BY array_position(ARRAY['critical', 'warning', 'info'], m.severity), m.rule, m.subject
$$;
COMMENT ON FUNCTION @extschema@.current_alerts() IS
    'The alerts firing now: rule, subject (a queue, service, table, cache type or currency), value, threshold, severity, and since when (when run_maintenance() first saw it, else now). Thresholds are rows of alert_rules.';

CREATE VIEW @extschema@.alerts_firing WITH (security_invoker = true) AS
SELECT * FROM @extschema@.current_alerts();
COMMENT ON VIEW @extschema@.alerts_firing IS
    'The alerts firing now (current_alerts()).';
SELECT @extschema@._secure_view('@extschema@.alerts_firing');

-- Maintenance: opens an event for each alert that started firing and closes the events of
-- those that stopped. Returns how many changed.
CREATE FUNCTION @extschema@._record_alerts()
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    changed integer;
BEGIN
    -- One statement: the close sees the events as they were before the opens.
    WITH firing AS (
        SELECT m.rule, m.subject, m.value, m.threshold, m.severity FROM @extschema@._alert_measures() m WHERE m.firing
    ), opened AS (
        INSERT INTO @extschema@.alert_events (rule, subject, severity, value, threshold)
        SELECT f.rule, f.subject, f.severity, f.value, f.threshold FROM firing f
        ON CONFLICT (rule, subject) WHERE cleared_at IS NULL DO NOTHING
        RETURNING 1
    ), cleared AS (
        UPDATE @extschema@.alert_events e SET cleared_at = greatest(now(), e.started_at)
         WHERE e.cleared_at IS NULL
           AND NOT EXISTS (SELECT 1 FROM firing f WHERE f.rule = e.rule AND f.subject = e.subject)
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM opened) + (SELECT count(*) FROM cleared) INTO changed;
    RETURN changed;
END
$$;
COMMENT ON FUNCTION @extschema@._record_alerts() IS
    'Internal (maintenance): records in alert_events when each alert starts firing and when it clears; returns how many events it opened or closed.';

-- ---------------------------------------------------------------------------------------------
-- Metrics: the Prometheus text exposition format (version 0.0.4), for a textfile collector or
-- postgres_exporter's custom queries (docs/operations.md).

-- A label value as the format wants it: backslash, double quote and newline escaped.
CREATE FUNCTION @extschema@._prometheus_label(p_value text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT replace(replace(replace(coalesce(p_value, ''), E'\\', E'\\\\'), '"', E'\\"'), E'\n', E'\\n')
$$;
COMMENT ON FUNCTION @extschema@._prometheus_label(text) IS
    'Internal: a Prometheus label value with backslash, double quote and newline escaped.';

CREATE FUNCTION @extschema@.metrics_prometheus()
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    out text := '';
BEGIN
    -- One family: its HELP and TYPE lines, then its samples (name{labels} value).
    out := out || (
        WITH families(ord, name, kind, help) AS (VALUES
            (1, 'easymo_queue_messages', 'gauge', 'Messages, jobs and deliveries per queue and status.'),
            (2, 'easymo_queue_oldest_due_seconds', 'gauge', 'Seconds the oldest due pending item of a queue has waited.'),
            (3, 'easymo_notification_deliveries', 'gauge', 'Notification deliveries per channel and status.'),
            (4, 'easymo_flag_exposures_total', 'counter', 'Feature flag evaluations per flag, environment, variant and answer.'),
            (5, 'easymo_cache_hits_total', 'counter', 'Cache hits per cache type.'),
            (6, 'easymo_cache_misses_total', 'counter', 'Cache misses per cache type (cache_type "" = keys with no entry the caller could read).'),
            (7, 'easymo_transactions', 'gauge', 'Transactions created in the last 24 hours, per status.'),
            (8, 'easymo_partitions_ahead', 'gauge', 'Months of partitions after the current one, per partitioned table.'),
            (9, 'easymo_alerts_firing', 'gauge', 'Alerts firing now, per rule and severity.')
        ), measures AS MATERIALIZED (
            SELECT * FROM @extschema@._alert_measures()
        ), samples(ord, labels, value) AS (
            SELECT 1, format('queue="%s",status="%s"', @extschema@._prometheus_label('message_queue:' || q.queue_name), q.status), count(*)::float8
              FROM @extschema@.message_queue q GROUP BY q.queue_name, q.status
            UNION ALL
            SELECT 1, format('queue="whatsapp_message_queue",status="%s"', w.status), count(*)::float8
              FROM @extschema@.whatsapp_message_queue w GROUP BY w.status
            UNION ALL
            SELECT 1, format('queue="%s",status="%s"', @extschema@._prometheus_label('background_jobs:' || j.job_type), j.status), count(*)::float8
              FROM @extschema@.background_jobs j GROUP BY j.job_type, j.status
            UNION ALL
            SELECT 2, format('queue="%s"', @extschema@._prometheus_label(a.subject)), a.value
              FROM measures a WHERE a.rule = 'queue_oldest_due_seconds'
            UNION ALL
            SELECT 3, format('channel="%s",status="%s"', d.channel, d.status), count(*)::float8
              FROM @extschema@.notification_deliveries d GROUP BY d.channel, d.status
            UNION ALL
            SELECT 4, format('flag="%s",environment="%s",variant="%s",enabled="%s"', @extschema@._prometheus_label(e.flag_key),
                             @extschema@._prometheus_label(e.environment), @extschema@._prometheus_label(e.variant), e.enabled),
                   e.evaluations::float8
              FROM @extschema@.feature_flag_exposures() e
            UNION ALL
            SELECT 5, format('cache_type="%s"', @extschema@._prometheus_label(c.cache_type)), c.hits::float8 FROM @extschema@.cache_stats c
            UNION ALL
            SELECT 6, format('cache_type="%s"', @extschema@._prometheus_label(c.cache_type)), c.misses::float8 FROM @extschema@.cache_stats c
            UNION ALL
            SELECT 7, format('status="%s"', t.status), count(*)::float8
              FROM @extschema@.transactions t WHERE t.created_at > now() - interval '24 hours' GROUP BY t.status
            UNION ALL
            SELECT 8, format('table="%s"', @extschema@._prometheus_label(a.subject)), a.value
              FROM measures a WHERE a.rule = 'partitions_ahead'
            UNION ALL
            SELECT 9, format('rule="%s",severity="%s"', a.rule, a.severity), count(*)::float8
              FROM measures a WHERE a.firing GROUP BY a.rule, a.severity
        )
        SELECT string_agg(
                   format(E'# HELP %s %s\n# TYPE %s %s\n', f.name, f.help, f.name, f.kind)
                   || coalesce((SELECT string_agg(format(E'%s{%s} %s\n', f.name, s.labels,
                                                         CASE WHEN s.value = trunc(s.value) AND abs(s.value) < 1e15
                                                              THEN trunc(s.value)::bigint::text ELSE s.value::text END),
                                                  '' ORDER BY s.labels)
                                  FROM samples s WHERE s.ord = f.ord), ''),
                   '' ORDER BY f.ord)
          FROM families f);
    RETURN out;
END
$$;
COMMENT ON FUNCTION @extschema@.metrics_prometheus() IS
    'The extension''s state in the Prometheus text exposition format: queue depths and ages, notification deliveries by status, flag exposures, cache hits and misses, transactions by status (last 24 h), partitions ahead, alerts firing. Valid for promtool check metrics.';

-- The notification tables' rows are the data's: pg_dump keeps them (as security.sql does for a fresh install).
SELECT pg_catalog.pg_extension_config_dump('@extschema@.notifications', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.notification_deliveries', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.notification_preferences', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.notification_dedupe_keys', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.alert_rules', $$WHERE environment <> 'default'$$);
SELECT pg_catalog.pg_extension_config_dump('@extschema@.alert_events', '');

-- ---------------------------------------------------------------------------------------------
-- Receipts, for every queue (native, src/queues.rs): the row's receipt from the claim.

COMMENT ON FUNCTION @extschema@.ack_receipt(text, text, jsonb) IS
    'Acknowledges the item a claim handed out with p_receipt (message -> completed, WhatsApp message or notification delivery -> sent with p_provider_message_id, job -> completed with p_result): true, or false when it was acknowledged with this receipt already. A receipt that is no longer current (the item was delivered again since, or is no longer in flight) is EQ001 and changes nothing; an unknown item P0002; not a receipt 22023.';
COMMENT ON FUNCTION @extschema@.ack_receipts(text[]) IS
    'Acknowledges up to 1000 items by their receipts, any queues, one statement per queue; one row per receipt, in order: acked, already_acked, stale (EQ001''s case: changes nothing), unknown or invalid.';
COMMENT ON FUNCTION @extschema@.nack_receipt(text, text) IS
    'Gives the item a claim handed out with p_receipt back: pending again after an exponential backoff with jitter, or its dead state (dead_letter, failed) past its retries; returns the new status. Stale receipt EQ001, unknown item P0002, not a receipt 22023.';
COMMENT ON FUNCTION @extschema@.nack_receipts(text[], text) IS
    'Gives up to 1000 items back by their receipts; one row per receipt, in order: the new status, or stale, unknown, invalid.';
COMMENT ON FUNCTION @extschema@.extend_receipt(text, integer) IS
    'Extends the lease of the item a claim handed out with p_receipt to p_seconds (0 to 43200) from now, for a consumer that works long; returns the new end of the lease. Stale receipt EQ001, unknown item P0002, not a receipt 22023.';

-- Per queue: depth (pending and in flight), due now, in flight, dead, how long the oldest due item
-- has waited, and totals (every item it holds, completed or sent ones). Queue names as the alerts
-- name them.
CREATE FUNCTION @extschema@.queue_metrics()
RETURNS TABLE(queue text, depth bigint, due bigint, in_flight bigint, dead bigint,
              oldest_due_seconds double precision, done bigint, total bigint)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'message_queue:' || q.queue_name,
           count(*) FILTER (WHERE q.status IN ('pending', 'processing')),
           count(*) FILTER (WHERE (q.status = 'pending' AND q.scheduled_at <= now())
                               OR (q.status = 'processing' AND q.locked_until <= now())),
           count(*) FILTER (WHERE q.status = 'processing' AND q.locked_until > now()),
           count(*) FILTER (WHERE q.status = 'dead_letter'),
           extract(epoch FROM now() - min(q.scheduled_at) FILTER (WHERE q.status = 'pending' AND q.scheduled_at <= now()))::float8,
           count(*) FILTER (WHERE q.status = 'completed'),
           count(*)
      FROM @extschema@.message_queue q GROUP BY q.queue_name
    UNION ALL
    SELECT 'whatsapp_message_queue',
           count(*) FILTER (WHERE w.status IN ('pending', 'processing')),
           count(*) FILTER (WHERE (w.status = 'pending' AND w.scheduled_at <= now())
                               OR (w.status = 'processing' AND w.locked_until <= now())),
           count(*) FILTER (WHERE w.status = 'processing' AND w.locked_until > now()),
           count(*) FILTER (WHERE w.status = 'failed'),
           extract(epoch FROM now() - min(w.scheduled_at) FILTER (WHERE w.status = 'pending' AND w.scheduled_at <= now()))::float8,
           count(*) FILTER (WHERE w.status = 'sent'),
           count(*)
      FROM @extschema@.whatsapp_message_queue w HAVING count(*) > 0
    UNION ALL
    SELECT 'background_jobs:' || j.job_type,
           count(*) FILTER (WHERE j.status IN ('pending', 'running')),
           count(*) FILTER (WHERE j.status = 'pending' AND j.scheduled_at <= now()),
           count(*) FILTER (WHERE j.status = 'running'),
           count(*) FILTER (WHERE j.status IN ('failed', 'timeout')),
           extract(epoch FROM now() - min(j.scheduled_at) FILTER (WHERE j.status = 'pending' AND j.scheduled_at <= now()))::float8,
           count(*) FILTER (WHERE j.status = 'completed'),
           count(*)
      FROM @extschema@.background_jobs j GROUP BY j.job_type
    UNION ALL
    SELECT 'notification_deliveries:' || d.channel,
           count(*) FILTER (WHERE d.status IN ('pending', 'processing')),
           count(*) FILTER (WHERE (d.status = 'pending' AND d.scheduled_at <= now())
                               OR (d.status = 'processing' AND d.locked_until <= now())),
           count(*) FILTER (WHERE d.status = 'processing' AND d.locked_until > now()),
           count(*) FILTER (WHERE d.status = 'dead_letter'),
           extract(epoch FROM now() - min(d.scheduled_at) FILTER (WHERE d.status = 'pending' AND d.scheduled_at <= now()))::float8,
           count(*) FILTER (WHERE d.status IN ('sent', 'delivered')),
           count(*)
      FROM @extschema@.notification_deliveries d GROUP BY d.channel
     ORDER BY 1
$$;
COMMENT ON FUNCTION @extschema@.queue_metrics() IS
    'Per queue (message_queue:<name>, whatsapp_message_queue, background_jobs:<type>, notification_deliveries:<channel>): depth (pending and in flight), due now (a lapsed lease counts), in flight, dead (dead letters, failed), seconds the oldest due item has waited, done (completed, sent or delivered) and total rows.';

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

-- Function privileges, exactly as a fresh install sets them (sql/security.sql): new and
-- re-created functions start with PUBLIC EXECUTE. Keep this block last.
DO $function_privileges$
DECLARE
    fn regprocedure;
    fname name;
    -- The end-user surface (contract: "Calling conventions"); request_user_id is needed by the
    -- RLS policies themselves.
    end_user_helpers name[] := ARRAY['request_user_id', 'is_feature_enabled', 'get_feature_variant',
                                     'find_nearby_locations', 'get_cache', 'get_cached_route',
                                     'get_wallet_balance', 'wallet_history',
                                     'mark_notifications_read', 'unread_notification_count'];
    service_role_internals name[] := ARRAY['_retry_delay', '_queue_not_claimed', '_notification_send_at',
                                           '_alert_measures', '_prometheus_label'];
BEGIN
    FOR fn, fname IN
        SELECT p.oid::regprocedure, p.proname
          FROM pg_catalog.pg_depend d
          JOIN pg_catalog.pg_proc p ON p.oid = d.objid
         WHERE d.classid = 'pg_catalog.pg_proc'::regclass
           AND d.refclassid = 'pg_catalog.pg_extension'::regclass
           AND d.refobjid = (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'easymo')
           AND d.deptype = 'e'
    LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC, anon, authenticated, service_role', fn);
        IF fname LIKE '\_check\_%' OR fname = ANY (service_role_internals) THEN
            EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO service_role', fn);
        END IF;
        IF fname LIKE '\_check\_%' THEN
            EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO authenticated', fn);
        END IF;
        CONTINUE WHEN fname LIKE '\_%';
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO service_role', fn);
        IF fname = ANY (end_user_helpers) THEN
            EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO authenticated', fn);
        END IF;
    END LOOP;
END
$function_privileges$;
