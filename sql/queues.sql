-- The claim / acknowledge / retry mechanism shared by the three queues: message_queue,
-- whatsapp_message_queue and background_jobs.
--
-- One template per operation (claim, finish, fail), instantiated below for each queue from a
-- row of facts (its table, its statuses, its counters, where a lease comes from, what narrows a
-- claim). The result is plain plpgsql with cached plans, so a claim costs what the hand-written
-- SQL would; the logic exists once.
--
-- Semantics, for every queue:
--   claim    due rows by priority (1 first), then age, locked with FOR UPDATE SKIP LOCKED so
--            concurrent consumers never get the same row; each leaves in the claimed status with
--            a lease (locked_until). For the two message queues a claimed row whose lease passed
--            without an acknowledgement is due again (visibility timeout): that counts as a
--            failed delivery, and past max_retries it goes to the dead state instead.
--   finish   claimed -> done; true, or false when the row was not claimed (acknowledging twice
--            is harmless); unknown id P0002.
--   fail     claimed -> pending again after an exponential backoff with jitter
--            (_retry_delay), or to the dead state when its retries are used up; returns the new
--            status; unknown id P0002, a row that is not claimed 55000.

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

DO $queues$
DECLARE
    claim_template CONSTANT text := $template$
CREATE FUNCTION @extschema@.{claim_fn}({claim_args})
RETURNS SETOF @extschema@.{tbl}
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $body$
DECLARE
    v_scope text[] := {scope_value};
    v_lease integer := {lease_value};
    v_worker text := {worker_value};
BEGIN
    p_batch_size := @extschema@._check_range('p_batch_size', p_batch_size, 1, 1000);
    {claim_checks}
    RETURN QUERY
    WITH due AS (
        SELECT q.id FROM @extschema@.{tbl} q
         WHERE {due}
           AND {scope}
         ORDER BY q.priority, q.created_at, q.id
         LIMIT p_batch_size
           FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE @extschema@.{tbl} t
           SET {counter} = {counter_on_claim},
               status = CASE WHEN {dead_on_claim} THEN '{dead}' ELSE '{claimed}' END,
               locked_until = now() + make_interval(secs => {lease}),
               {claim_sets}
               updated_at = now()
          FROM due
         WHERE t.id = due.id
        RETURNING t.*
    )
    SELECT * FROM claimed c WHERE c.status = '{claimed}' ORDER BY c.priority, c.created_at, c.id;
END
$body$;
COMMENT ON FUNCTION @extschema@.{claim_fn}({claim_types}) IS '{claim_comment}';
$template$;

    finish_template CONSTANT text := $template$
CREATE FUNCTION @extschema@.{finish_fn}({finish_args})
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $body$
BEGIN
    {id_param} := @extschema@._check_not_null('{id_param}', {id_param});{finish_checks}
    UPDATE @extschema@.{tbl} t
       SET status = '{done}', locked_until = NULL, {done_at} = now(), {finish_sets} updated_at = now()
     WHERE t.id = {id_param} AND t.status = '{claimed}';
    IF FOUND THEN
        RETURN true;
    END IF;
    PERFORM @extschema@._queue_not_claimed('@extschema@.{tbl}', '{what}', {id_param}, '{claimed}', true);
    RETURN false;
END
$body$;
COMMENT ON FUNCTION @extschema@.{finish_fn}({finish_types}) IS '{finish_comment}';
$template$;

    fail_template CONSTANT text := $template$
CREATE FUNCTION @extschema@.{fail_fn}({fail_args})
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $body$
DECLARE
    new_status text;
BEGIN
    {id_param} := @extschema@._check_not_null('{id_param}', {id_param});
    UPDATE @extschema@.{tbl} t
       SET {counter} = {failures},
           status = CASE WHEN {used_up} THEN '{dead}' ELSE 'pending' END,
           scheduled_at = CASE WHEN {used_up} THEN t.scheduled_at
                               ELSE now() + @extschema@._retry_delay({failures}) END,
           locked_until = NULL,
           last_error = p_error,
           {fail_sets}
           updated_at = now()
     WHERE t.id = {id_param} AND t.status = '{claimed}'
    RETURNING t.status INTO new_status;
    IF NOT FOUND THEN
        PERFORM @extschema@._queue_not_claimed('@extschema@.{tbl}', '{what}', {id_param}, '{claimed}', false);
    END IF;
    RETURN new_status;
END
$body$;
COMMENT ON FUNCTION @extschema@.{fail_fn}({fail_types}) IS '{fail_comment}';
$template$;

    -- Maintenance's bulk form of what a claim does to a row whose visibility timeout passed:
    -- back to pending (due now) counting a failed delivery, or to the dead state past
    -- max_retries. Rows a consumer holds locked right now are skipped, not waited for.
    release_template CONSTANT text := $template$
CREATE FUNCTION @extschema@.{release_fn}()
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $body$
DECLARE
    n integer;
BEGIN
    WITH expired AS (
        SELECT q.id FROM @extschema@.{tbl} q
         WHERE q.status = '{claimed}' AND q.locked_until <= now()
           FOR UPDATE SKIP LOCKED
    )
    UPDATE @extschema@.{tbl} t
       SET {counter} = {counter_on_claim},
           status = CASE WHEN {dead_on_claim} THEN '{dead}' ELSE 'pending' END,
           scheduled_at = now(),
           locked_until = NULL,
           {claim_sets}
           updated_at = now()
      FROM expired
     WHERE t.id = expired.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$body$;
COMMENT ON FUNCTION @extschema@.{release_fn}() IS 'Internal: {what}s whose visibility timeout passed without an acknowledgement go back to pending (a failed delivery) or, past max_retries, to {dead}; returns how many. Run by run_maintenance().';
$template$;

    q record;
    sql text;
    key text;
    facts jsonb;
BEGIN
    FOR facts IN SELECT * FROM jsonb_array_elements($facts$[
      {
        "what": "message", "tbl": "message_queue",
        "claimed": "processing", "done": "completed", "dead": "dead_letter", "done_at": "completed_at",
        "counter": "retry_count",
        "claim_fn": "read_messages", "release_fn": "_release_expired_messages",
        "claim_args": "p_queue_name text, p_batch_size integer DEFAULT 10, p_visibility_timeout_seconds integer DEFAULT 30",
        "claim_types": "text, integer, integer",
        "scope_value": "ARRAY[p_queue_name]", "lease_value": "p_visibility_timeout_seconds", "worker_value": "NULL",
        "claim_checks": "p_queue_name := {ext}._check_not_null('p_queue_name', p_queue_name); v_lease := {ext}._check_range('p_visibility_timeout_seconds', v_lease, 0, 43200);",
        "due": "q.status IN ('pending', 'processing') AND CASE q.status WHEN 'pending' THEN q.scheduled_at <= now() ELSE q.locked_until <= now() END",
        "scope": "q.queue_name = v_scope[1]",
        "counter_on_claim": "t.retry_count + (t.status = 'processing')::int",
        "dead_on_claim": "t.status = 'processing' AND t.retry_count + 1 > t.max_retries",
        "lease": "v_lease",
        "claim_sets": "last_error = CASE WHEN t.status = 'processing' THEN 'visibility timeout passed without an acknowledgement' ELSE t.last_error END, dead_lettered_at = CASE WHEN t.status = 'processing' AND t.retry_count + 1 > t.max_retries THEN now() END,",
        "claim_comment": "Claims up to p_batch_size due messages of p_queue_name (priority, then age; FOR UPDATE SKIP LOCKED) for p_visibility_timeout_seconds; an unacknowledged message is due again after that, counting as a failed delivery.",
        "finish_fn": "ack_message", "finish_args": "p_message_id uuid", "finish_types": "uuid",
        "id_param": "p_message_id", "finish_sets": "", "finish_checks": "",
        "finish_comment": "Acknowledges a claimed message (-> completed): true, or false when it was not claimed; unknown id P0002.",
        "fail_fn": "nack_message", "fail_args": "p_message_id uuid, p_error text DEFAULT NULL", "fail_types": "uuid, text",
        "failures": "t.retry_count + 1", "used_up": "t.retry_count + 1 > t.max_retries",
        "fail_sets": "dead_lettered_at = CASE WHEN t.retry_count + 1 > t.max_retries THEN now() END,",
        "fail_comment": "Gives a claimed message back: pending again after an exponential backoff with jitter, or dead_letter after max_retries; returns the new status."
      },
      {
        "what": "WhatsApp message", "tbl": "whatsapp_message_queue",
        "claimed": "processing", "done": "sent", "dead": "failed", "done_at": "sent_at",
        "counter": "retry_count",
        "claim_fn": "claim_whatsapp_messages", "release_fn": "_release_expired_whatsapp_messages",
        "claim_args": "p_batch_size integer DEFAULT 10, p_visibility_timeout_seconds integer DEFAULT 30",
        "claim_types": "integer, integer",
        "scope_value": "NULL", "lease_value": "p_visibility_timeout_seconds", "worker_value": "NULL",
        "claim_checks": "v_lease := {ext}._check_range('p_visibility_timeout_seconds', v_lease, 0, 43200);",
        "due": "q.status IN ('pending', 'processing') AND CASE q.status WHEN 'pending' THEN q.scheduled_at <= now() ELSE q.locked_until <= now() END",
        "scope": "true",
        "counter_on_claim": "t.retry_count + (t.status = 'processing')::int",
        "dead_on_claim": "t.status = 'processing' AND t.retry_count + 1 > t.max_retries",
        "lease": "v_lease",
        "claim_sets": "last_error = CASE WHEN t.status = 'processing' THEN 'visibility timeout passed without an acknowledgement' ELSE t.last_error END,",
        "claim_comment": "Claims up to p_batch_size due outbound WhatsApp messages (priority, then age; FOR UPDATE SKIP LOCKED) for p_visibility_timeout_seconds; an unconfirmed message is due again after that, counting as a failed delivery.",
        "finish_fn": "complete_whatsapp_message", "finish_args": "p_message_id uuid, p_provider_message_id text DEFAULT NULL", "finish_types": "uuid, text",
        "id_param": "p_message_id", "finish_sets": "provider_message_id = coalesce(p_provider_message_id, t.provider_message_id),",
        "finish_checks": "\n    p_provider_message_id := {ext}._check_text('p_provider_message_id', p_provider_message_id, 255, false);",
        "finish_comment": "Marks a claimed WhatsApp message sent, with the provider''s message id: true, or false when it was not claimed; unknown id P0002.",
        "fail_fn": "fail_whatsapp_message", "fail_args": "p_message_id uuid, p_error text DEFAULT NULL", "fail_types": "uuid, text",
        "failures": "t.retry_count + 1", "used_up": "t.retry_count + 1 > t.max_retries",
        "fail_sets": "",
        "fail_comment": "Gives a claimed WhatsApp message back: pending again after an exponential backoff with jitter, or failed after max_retries; returns the new status."
      },
      {
        "what": "job", "tbl": "background_jobs",
        "claimed": "running", "done": "completed", "dead": "failed", "done_at": "completed_at",
        "counter": "attempts",
        "claim_fn": "claim_jobs",
        "claim_args": "p_job_types text[] DEFAULT NULL, p_batch_size integer DEFAULT 1, p_worker_id text DEFAULT NULL",
        "claim_types": "text[], integer, text",
        "scope_value": "p_job_types", "lease_value": "NULL", "worker_value": "p_worker_id",
        "claim_checks": "v_worker := {ext}._check_text('p_worker_id', v_worker, 255, false);",
        "due": "q.status = 'pending' AND q.scheduled_at <= now()",
        "scope": "(v_scope IS NULL OR q.job_type = ANY (v_scope))",
        "counter_on_claim": "t.attempts + 1",
        "dead_on_claim": "false",
        "lease": "t.timeout_seconds",
        "claim_sets": "started_at = now(), worker_id = v_worker,",
        "claim_comment": "Claims up to p_batch_size due jobs (of p_job_types, or any), priority then age, FOR UPDATE SKIP LOCKED; each is leased for its timeout_seconds (maintenance times out the ones that overrun) and counts an attempt.",
        "finish_fn": "complete_job", "finish_args": "p_job_id uuid, p_result jsonb DEFAULT NULL", "finish_types": "uuid, jsonb",
        "id_param": "p_job_id", "finish_sets": "result = p_result,", "finish_checks": "",
        "finish_comment": "Completes a running job with its result: true, or false when it was not running; unknown id P0002.",
        "fail_fn": "fail_job", "fail_args": "p_job_id uuid, p_error text DEFAULT NULL", "fail_types": "uuid, text",
        "failures": "t.attempts", "used_up": "t.attempts >= t.max_attempts",
        "fail_sets": "completed_at = CASE WHEN t.attempts >= t.max_attempts THEN now() END,",
        "fail_comment": "Gives a running job back: pending again after an exponential backoff with jitter, or failed after max_attempts; returns the new status."
      }
    ]$facts$::jsonb)
    LOOP
        FOREACH sql IN ARRAY ARRAY[claim_template, finish_template, fail_template]
                             || CASE WHEN facts ? 'release_fn' THEN ARRAY[release_template] ELSE '{}' END LOOP
            FOR key IN SELECT jsonb_object_keys(facts) LOOP
                sql := replace(sql, '{' || key || '}', facts ->> key);
            END LOOP;
            -- The facts are JSON, where a quoted schema name ("Easy Mo") cannot be written as is.
            sql := replace(sql, '{ext}', '@extschema@');
            EXECUTE sql;
        END LOOP;
    END LOOP;
END
$queues$;

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
