-- The claim / acknowledge / retry mechanism of the queues: message_queue,
-- whatsapp_message_queue, background_jobs (and notification_deliveries, sql/notifications.sql).
-- Each operation is written out per queue, as a plain function (grep finds it; an upgrade script
-- replaces it as it is); what they share lives in the small functions below (the retry delay,
-- the error for a row that is not claimed), in the argument checks of bootstrap.sql, and in the
-- native receipt functions (src/queues.rs).
--
-- Semantics, for every queue:
--   claim    due rows by priority (1 first), then age, locked with FOR UPDATE SKIP LOCKED so
--            concurrent consumers never get the same row; each leaves in the claimed status with
--            a lease (locked_until) and a receipt (the row's `receipt`: queue, id and the number
--            of this claim). For the two message queues a claimed row whose lease passed
--            without an acknowledgement is due again (visibility timeout): that counts as a
--            failed delivery, and past max_retries it goes to the dead state instead.
--   finish   claimed -> done. By receipt (ack_receipt, ack_receipts): only the current claim's
--            receipt acts, a stale one (the row was delivered again since) is EQ001 and changes
--            nothing. By id (complete_*, ack_message; kept for one version): true, or false when
--            the row was not claimed; unknown id P0002.
--   fail     claimed -> pending again after an exponential backoff with jitter
--            (_retry_delay), or to the dead state when its retries are used up; returns the new
--            status (nack_receipt, nack_receipts by receipt; fail_*, nack_message by id: unknown
--            id P0002, a row that is not claimed 55000).
--   extend   extend_receipt: the lease runs p_seconds from now (a consumer working long).

-- 1 s, 2 s, 4 s ... up to an hour, times a random 0.75 to 1.25: retries of many consumers do not
-- arrive in step, and each delay stays longer than the one before.
CREATE FUNCTION @extschema@._retry_delay(p_failures integer) RETURNS interval
LANGUAGE sql VOLATILE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT make_interval(secs => least(3600.0, power(2.0, greatest(p_failures, 1) - 1)) * (0.75 + 0.5 * random()))
$$;
COMMENT ON FUNCTION @extschema@._retry_delay(integer) IS
    'Internal: the delay before retry number p_failures: 2^(n-1) seconds, at most an hour, times a random 0.75 to 1.25.';

-- Raises the right error for a row that a finish or fail did not find claimed.
CREATE FUNCTION @extschema@._queue_not_claimed(p_table regclass, p_what text, p_id uuid, p_claimed text, p_missing_only boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current_status text;
BEGIN
    EXECUTE format('SELECT status FROM %s WHERE id = $1', p_table) INTO current_status USING p_id;
    IF current_status IS NULL THEN
        RAISE EXCEPTION '% % does not exist', p_what, p_id USING ERRCODE = 'P0002';
    ELSIF NOT p_missing_only THEN
        RAISE EXCEPTION '% % is %, not %', p_what, p_id, current_status, p_claimed USING ERRCODE = '55000';
    END IF;
END
$$;
COMMENT ON FUNCTION @extschema@._queue_not_claimed(regclass, text, uuid, text, boolean) IS
    'Internal: P0002 for an unknown queue row; 55000 (unless p_missing_only) for one that is not claimed.';

-- ---------------------------------------------------------------------------------------------
-- message_queue: processing while claimed, completed when acknowledged, dead_letter when its
-- retries are used up.

-- enqueue_message and read_messages are native (src/queues.rs): read_messages is the same
-- claim, plus the group rule and a wait for work when asked.
COMMENT ON FUNCTION @extschema@.enqueue_message(text, text, jsonb, integer, timestamptz, text, text) IS
    'Queues a message on p_queue_name (priority 1 most urgent to 10, due at p_scheduled_at; messages of one p_group_key are delivered one at a time, in order); a repeated (queue, idempotency key) returns the first message''s id. Consumers: read_messages, ack_receipt, nack_receipt, extend_receipt, replay_dead_letter.';
COMMENT ON FUNCTION @extschema@.enqueue_messages(text, jsonb) IS
    'Queues up to 1000 messages on p_queue_name in one statement: elements {message_type, payload, priority, delay_seconds, idempotency_key, group_key}; returns their ids in order (a repeated key, in the batch or already queued, gives the first message''s id). A bad element is 22023 naming it, and nothing is queued.';

COMMENT ON FUNCTION @extschema@.read_messages(text, integer, integer, integer) IS
    'Claims up to p_batch_size due messages of p_queue_name (priority, then age; FOR UPDATE SKIP LOCKED) for p_visibility_timeout_seconds; each row carries its receipt. An unacknowledged message is due again after that, counting as a failed delivery. A message of a group (group_key) is due only when no earlier message of its group is pending or in flight. With p_wait_ms (up to 600000), waits that long at most for a message, woken when a transaction that queued one commits (READ COMMITTED).';

CREATE FUNCTION @extschema@.ack_message(p_message_id uuid)
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

CREATE FUNCTION @extschema@.nack_message(p_message_id uuid, p_error text DEFAULT NULL)
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
CREATE FUNCTION @extschema@._release_expired_messages()
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

-- A dead-lettered message goes back to the queue, its retries counted afresh.
CREATE FUNCTION @extschema@.replay_dead_letter(p_message_id uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    p_message_id := @extschema@._check_not_null('p_message_id', p_message_id);
    UPDATE @extschema@.message_queue
       SET status = 'pending', retry_count = 0, scheduled_at = now(), locked_until = NULL,
           dead_lettered_at = NULL, updated_at = now()
     WHERE id = p_message_id AND status = 'dead_letter';
    IF FOUND THEN
        RETURN true;
    END IF;
    PERFORM @extschema@._queue_not_claimed('@extschema@.message_queue', 'message', p_message_id, 'dead_letter', true);
    RETURN false;
END
$$;
COMMENT ON FUNCTION @extschema@.replay_dead_letter(uuid) IS
    'Puts a dead-lettered message back in its queue (pending, retries counted afresh): true, or false when it was not dead-lettered; unknown id P0002.';

-- ---------------------------------------------------------------------------------------------
-- whatsapp_message_queue: processing while claimed, sent when the provider took it, failed when
-- its retries are used up.

CREATE FUNCTION @extschema@.claim_whatsapp_messages(p_batch_size integer DEFAULT 10, p_visibility_timeout_seconds integer DEFAULT 30)
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

CREATE FUNCTION @extschema@.complete_whatsapp_message(p_message_id uuid, p_provider_message_id text DEFAULT NULL)
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

CREATE FUNCTION @extschema@.fail_whatsapp_message(p_message_id uuid, p_error text DEFAULT NULL)
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

CREATE FUNCTION @extschema@._release_expired_whatsapp_messages()
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

-- ---------------------------------------------------------------------------------------------
-- background_jobs: running while claimed (leased for the job's own timeout_seconds; maintenance
-- times out the ones that overrun), completed, or failed when its attempts are used up.

CREATE FUNCTION @extschema@.claim_jobs(p_job_types text[] DEFAULT NULL, p_batch_size integer DEFAULT 1, p_worker_id text DEFAULT NULL)
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

CREATE FUNCTION @extschema@.complete_job(p_job_id uuid, p_result jsonb DEFAULT NULL)
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

CREATE FUNCTION @extschema@.fail_job(p_job_id uuid, p_error text DEFAULT NULL)
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

-- Jobs that overran their lease, in the contract's two steps: a running job past its
-- timeout_seconds becomes `timeout`, and every `timeout` job (including one a supervisor marked
-- so by hand) is then retried after a backoff while attempts remain, or failed. Both steps run in
-- one transaction, so a worker never sees a timed-out job stuck between them. Run by
-- run_maintenance(); returns how many jobs timed out.
CREATE FUNCTION @extschema@.time_out_jobs() RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    UPDATE @extschema@.background_jobs t
       SET status = 'timeout',
           last_error = format('timed out after %s s (attempt %s of %s)', t.timeout_seconds, t.attempts, t.max_attempts),
           locked_until = NULL,
           updated_at = now()
     WHERE t.status = 'running' AND t.locked_until <= now();
    GET DIAGNOSTICS n = ROW_COUNT;
    UPDATE @extschema@.background_jobs t
       SET status = CASE WHEN t.attempts >= t.max_attempts THEN 'failed' ELSE 'pending' END,
           scheduled_at = CASE WHEN t.attempts >= t.max_attempts THEN t.scheduled_at
                               ELSE now() + @extschema@._retry_delay(t.attempts) END,
           completed_at = CASE WHEN t.attempts >= t.max_attempts THEN now() END,
           updated_at = now()
     WHERE t.status = 'timeout';
    RETURN n;
END
$$;
COMMENT ON FUNCTION @extschema@.time_out_jobs() IS
    'Running jobs past their timeout_seconds become timeout; timeout jobs are then retried (pending after a backoff) while attempts remain, else failed. Returns how many timed out. Run by run_maintenance().';

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
