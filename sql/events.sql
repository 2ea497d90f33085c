-- Events and work: the event store (monthly partitions) with its stream heads, the message queue
-- and background jobs.

CREATE TABLE @extschema@.event_store (
    id             uuid NOT NULL DEFAULT gen_random_uuid(),
    aggregate_type text NOT NULL CHECK (length(aggregate_type) BETWEEN 1 AND 128),
    aggregate_id   text NOT NULL CHECK (length(aggregate_id) BETWEEN 1 AND 255),
    event_type     text NOT NULL CHECK (length(event_type) BETWEEN 1 AND 255),
    version        bigint NOT NULL CHECK (version >= 1),
    payload        jsonb NOT NULL DEFAULT '{}',
    metadata       jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    correlation_id text CHECK (length(correlation_id) <= 128),
    causation_id   uuid,
    created_at     timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE (created_at);
CREATE TABLE @extschema@.event_store_default PARTITION OF @extschema@.event_store DEFAULT;
-- The primary key and indexes belong to each partition, not to the parent (sql/operations.sql
-- says why): declared here on the DEFAULT partition, copied to every month by ensure_partitions().
ALTER TABLE @extschema@.event_store_default ADD PRIMARY KEY (id, created_at);
CREATE INDEX ON @extschema@.event_store_default (aggregate_type, aggregate_id, version);
CREATE INDEX ON @extschema@.event_store_default (event_type, created_at DESC);
CREATE INDEX ON @extschema@.event_store_default (correlation_id)
    WHERE correlation_id IS NOT NULL;
COMMENT ON TABLE @extschema@.event_store IS
    'Domain events for event sourcing: per (aggregate_type, aggregate_id) stream, versions 1, 2, 3 ... without gaps. Monthly partitions on created_at (UTC); write with append_event(), read with get_aggregate_events().';
COMMENT ON TABLE @extschema@.event_store_default IS
    'DEFAULT partition of event_store: catches rows whose month has no partition yet; ensure_partitions() moves them out.';

-- A stream's version cannot be made unique on the partitioned table (the key would have to
-- include created_at), so each stream has one head row here: appenders lock it, read the current
-- version and advance it, which makes versions unique and gapless under any concurrency.
CREATE TABLE @extschema@.event_streams (
    aggregate_type  text NOT NULL,
    aggregate_id    text NOT NULL,
    current_version bigint NOT NULL DEFAULT 0 CHECK (current_version >= 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id)
);
COMMENT ON TABLE @extschema@.event_streams IS
    'One head row per event stream holding its current version: the lock that keeps event_store versions unique and gapless.';

-- The order messages were queued in: what a group's messages are delivered by.
CREATE SEQUENCE @extschema@.message_queue_seq;
COMMENT ON SEQUENCE @extschema@.message_queue_seq IS
    'The order messages were queued in (message_queue.seq): a group''s messages are delivered in it.';

CREATE TABLE @extschema@.message_queue (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    queue_name       text NOT NULL CHECK (length(queue_name) BETWEEN 1 AND 255),
    message_type     text NOT NULL CHECK (length(message_type) BETWEEN 1 AND 255),
    payload          jsonb NOT NULL,
    priority         integer NOT NULL DEFAULT 5 CHECK (priority BETWEEN 1 AND 10),
    status           text NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending', 'processing', 'completed', 'dead_letter')),
    retry_count      integer NOT NULL DEFAULT 0 CHECK (retry_count >= 0),
    max_retries      integer NOT NULL DEFAULT 3 CHECK (max_retries >= 0),
    -- When the message is due: set at enqueue, pushed back by each nack's backoff.
    scheduled_at     timestamptz NOT NULL DEFAULT now(),
    -- A read message is invisible to other consumers until locked_until passes.
    locked_until     timestamptz,
    idempotency_key  text CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    last_error       text,
    completed_at     timestamptz,
    dead_lettered_at timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    -- Claims so far. A claim's receipt names the message and this number, so the receipt of an
    -- earlier claim (the message was delivered again since) is refused.
    deliveries       integer NOT NULL DEFAULT 0 CHECK (deliveries >= 0),
    receipt          text GENERATED ALWAYS AS
                         (CASE WHEN deliveries > 0 THEN 'm:' || id::text || ':' || deliveries::text END) STORED,
    -- Messages of one group (a trip, a user, a phone number) are delivered one at a time, in the
    -- order they were queued; NULL: no group.
    group_key        text CHECK (length(group_key) BETWEEN 1 AND 255),
    seq              bigint NOT NULL DEFAULT nextval('@extschema@.message_queue_seq'),
    UNIQUE (queue_name, idempotency_key)
);
-- Consumers claim by priority, then age: active (pending or in-flight) messages only; an
-- in-flight one whose visibility timeout passed is due again.
CREATE INDEX message_queue_due_idx
    ON @extschema@.message_queue (queue_name, priority, created_at, id)
    WHERE status IN ('pending', 'processing');
CREATE INDEX message_queue_locked_idx
    ON @extschema@.message_queue (locked_until)
    WHERE status = 'processing';
CREATE INDEX message_queue_status_idx ON @extschema@.message_queue (queue_name, status);
-- A group's active messages in their order: only its first may be claimed.
CREATE INDEX message_queue_group_idx
    ON @extschema@.message_queue (queue_name, group_key, seq)
    WHERE group_key IS NOT NULL AND status IN ('pending', 'processing');
CREATE TRIGGER message_queue_touch BEFORE UPDATE ON @extschema@.message_queue
    FOR EACH ROW EXECUTE FUNCTION @extschema@._touch_updated_at();
COMMENT ON TABLE @extschema@.message_queue IS
    'Named asynchronous message queues: priority 1 (most urgent) to 10, visibility timeout, retries with backoff and a dead letter state; idempotent by (queue_name, idempotency_key).';

CREATE TABLE @extschema@.background_jobs (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    job_type        text NOT NULL CHECK (length(job_type) BETWEEN 1 AND 255),
    job_name        text NOT NULL CHECK (length(job_name) BETWEEN 1 AND 255),
    payload         jsonb NOT NULL DEFAULT '{}',
    status          text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled', 'timeout')),
    priority        integer NOT NULL DEFAULT 5 CHECK (priority BETWEEN 1 AND 10),
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts    integer NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    timeout_seconds integer NOT NULL DEFAULT 300 CHECK (timeout_seconds > 0),
    scheduled_at    timestamptz NOT NULL DEFAULT now(),
    -- A claimed job's lease: started_at + timeout_seconds.
    locked_until    timestamptz,
    worker_id       text CHECK (length(worker_id) <= 255),
    idempotency_key text CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    result          jsonb,
    last_error      text,
    started_at      timestamptz,
    completed_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    -- Claims so far, and the receipt of the current one (see message_queue).
    deliveries      integer NOT NULL DEFAULT 0 CHECK (deliveries >= 0),
    receipt         text GENERATED ALWAYS AS
                        (CASE WHEN deliveries > 0 THEN 'j:' || id::text || ':' || deliveries::text END) STORED,
    UNIQUE (job_type, idempotency_key)
);
CREATE INDEX background_jobs_due_idx
    ON @extschema@.background_jobs (priority, created_at, id)
    WHERE status = 'pending';
CREATE INDEX background_jobs_running_idx
    ON @extschema@.background_jobs (locked_until)
    WHERE status = 'running';
CREATE INDEX background_jobs_type_status_idx ON @extschema@.background_jobs (job_type, status);
CREATE TRIGGER background_jobs_touch BEFORE UPDATE ON @extschema@.background_jobs
    FOR EACH ROW EXECUTE FUNCTION @extschema@._touch_updated_at();
COMMENT ON TABLE @extschema@.background_jobs IS
    'Background jobs: scheduled, claimed with a lease of timeout_seconds, retried up to max_attempts; status pending, running, completed, failed, cancelled or timeout.';

CREATE VIEW @extschema@.event_store_stats WITH (security_invoker = true) AS
SELECT aggregate_type,
       event_type,
       count(*)                     AS events,
       count(DISTINCT aggregate_id) AS aggregates,
       min(created_at)              AS first_event_at,
       max(created_at)              AS last_event_at
  FROM @extschema@.event_store
 GROUP BY aggregate_type, event_type;
COMMENT ON VIEW @extschema@.event_store_stats IS
    'Events per aggregate type and event type: count, distinct aggregates, first and last event time.';

CREATE VIEW @extschema@.message_queue_stats WITH (security_invoker = true) AS
SELECT queue_name,
       status,
       count(*)                                       AS messages,
       count(*) FILTER (WHERE scheduled_at <= now())  AS due,
       min(created_at)                                AS oldest_created_at,
       avg(retry_count)                               AS avg_retries,
       max(retry_count)                               AS max_retries_seen
  FROM @extschema@.message_queue
 GROUP BY queue_name, status;
COMMENT ON VIEW @extschema@.message_queue_stats IS
    'Messages per queue and status: count, due now, oldest, average and highest retry count.';

CREATE VIEW @extschema@.background_job_stats WITH (security_invoker = true) AS
SELECT job_type,
       status,
       count(*)                                                          AS jobs,
       avg(extract(epoch FROM completed_at - started_at))
           FILTER (WHERE completed_at IS NOT NULL AND started_at IS NOT NULL) AS avg_duration_seconds,
       avg(attempts)                                                     AS avg_attempts,
       min(scheduled_at) FILTER (WHERE status = 'pending')              AS oldest_pending_at
  FROM @extschema@.background_jobs
 GROUP BY job_type, status;
COMMENT ON VIEW @extschema@.background_job_stats IS
    'Jobs per type and status: count, average run time, average attempts, oldest pending schedule.';

SELECT @extschema@._secure_table('@extschema@.event_store');
SELECT @extschema@._secure_table('@extschema@.event_streams');
SELECT @extschema@._secure_table('@extschema@.message_queue');
REVOKE ALL ON SEQUENCE @extschema@.message_queue_seq FROM PUBLIC, anon, authenticated;
GRANT USAGE, SELECT ON SEQUENCE @extschema@.message_queue_seq TO service_role;
-- A transaction that queued messages wakes the reads waiting for work when it commits.
CREATE TRIGGER message_queue_wake AFTER INSERT ON @extschema@.message_queue
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._queue_wake();
COMMENT ON FUNCTION @extschema@._queue_wake() IS
    'Internal trigger (after INSERT on message_queue, per statement): the transaction''s commit wakes the read_messages calls waiting for work.';
SELECT @extschema@._secure_table('@extschema@.background_jobs');
SELECT @extschema@._secure_view('@extschema@.event_store_stats');
SELECT @extschema@._secure_view('@extschema@.message_queue_stats');
SELECT @extschema@._secure_view('@extschema@.background_job_stats');

-- Appends to a stream. The head row is advanced and locked by one upsert, so concurrent
-- appenders to a stream queue behind each other and versions come out 1, 2, 3 ... without gaps
-- (a failed append rolls its increment back with it). The expected version is checked against
-- the version the upsert returns: a mismatch is 40001, and the whole append is undone.
CREATE FUNCTION @extschema@.append_event(
    p_aggregate_id text,
    p_aggregate_type text,
    p_event_type text,
    p_payload jsonb DEFAULT '{}',
    p_correlation_id text DEFAULT NULL,
    p_metadata jsonb DEFAULT '{}',
    p_expected_version bigint DEFAULT NULL,
    p_causation_id uuid DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    new_version bigint;
    event_id uuid;
BEGIN
    p_aggregate_id := @extschema@._check_text('p_aggregate_id', p_aggregate_id, 255);
    p_aggregate_type := @extschema@._check_text('p_aggregate_type', p_aggregate_type, 128);
    p_event_type := @extschema@._check_text('p_event_type', p_event_type, 255);
    p_correlation_id := @extschema@._check_text('p_correlation_id', p_correlation_id, 128, false);
    p_metadata := @extschema@._check_json('p_metadata', p_metadata, 'object');
    IF p_expected_version < 0 THEN
        RAISE EXCEPTION 'p_expected_version: must be NULL (any), 0 (empty stream) or a version, got %', p_expected_version
            USING ERRCODE = '22023';
    END IF;
    INSERT INTO @extschema@.event_streams AS s (aggregate_type, aggregate_id, current_version)
    VALUES (p_aggregate_type, p_aggregate_id, 1)
    ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE
       SET current_version = s.current_version + 1, updated_at = now()
    RETURNING s.current_version INTO new_version;
    IF p_expected_version IS NOT NULL AND new_version - 1 <> p_expected_version THEN
        RAISE EXCEPTION 'stream %/% is at version %, expected %', p_aggregate_type, p_aggregate_id, new_version - 1, p_expected_version
            USING ERRCODE = '40001',
                  DETAIL = format('expected version %s, actual version %s', p_expected_version, new_version - 1);
    END IF;
    INSERT INTO @extschema@.event_store
           (aggregate_type, aggregate_id, event_type, version, payload, metadata, correlation_id, causation_id)
    VALUES (p_aggregate_type, p_aggregate_id, p_event_type, new_version, coalesce(p_payload, '{}'),
            coalesce(p_metadata, '{}'), p_correlation_id, p_causation_id)
    RETURNING id INTO event_id;
    RETURN event_id;
END
$$;
COMMENT ON FUNCTION @extschema@.append_event(text, text, text, jsonb, text, jsonb, bigint, uuid) IS
    'Appends an event to the stream (aggregate_type, aggregate_id) at the next version (1, 2, 3 ... without gaps under any concurrency). p_expected_version: NULL any, 0 the stream must be empty, N it must be at N; otherwise 40001 naming expected and actual. Returns the event id.';

CREATE FUNCTION @extschema@.get_aggregate_events(
    p_aggregate_type text,
    p_aggregate_id text,
    p_limit integer DEFAULT 1000,
    p_after_version bigint DEFAULT 0
) RETURNS SETOF @extschema@.event_store
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    p_aggregate_type := @extschema@._check_not_null('p_aggregate_type', p_aggregate_type);
    p_aggregate_id := @extschema@._check_not_null('p_aggregate_id', p_aggregate_id);
    p_limit := @extschema@._check_range('p_limit', p_limit, 1, 10000);
    p_after_version := @extschema@._check_range('p_after_version', p_after_version, 0, 9223372036854775807);
    RETURN QUERY
    SELECT * FROM @extschema@.event_store
     WHERE aggregate_type = p_aggregate_type AND aggregate_id = p_aggregate_id AND version > p_after_version
     ORDER BY version
     LIMIT p_limit;
END
$$;
COMMENT ON FUNCTION @extschema@.get_aggregate_events(text, text, integer, bigint) IS
    'The events of a stream after p_after_version, in version order, at most p_limit (1..10000).';

-- enqueue_message and enqueue_messages are native (src/queues.rs); their COMMENTs are in sql/queues.sql.

CREATE FUNCTION @extschema@.schedule_job(
    p_job_type text,
    p_job_name text,
    p_payload jsonb DEFAULT '{}',
    p_scheduled_at timestamptz DEFAULT now(),
    p_priority integer DEFAULT 5,
    p_idempotency_key text DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job_id uuid;
BEGIN
    p_job_type := @extschema@._check_text('p_job_type', p_job_type, 255);
    p_job_name := @extschema@._check_text('p_job_name', p_job_name, 255);
    p_priority := @extschema@._check_range('p_priority', p_priority, 1, 10);
    p_scheduled_at := @extschema@._check_time('p_scheduled_at', p_scheduled_at);
    p_idempotency_key := @extschema@._check_text('p_idempotency_key', p_idempotency_key, 255, false);
    INSERT INTO @extschema@.background_jobs (job_type, job_name, payload, scheduled_at, priority, idempotency_key, created_at)
    VALUES (p_job_type, p_job_name, coalesce(p_payload, '{}'), p_scheduled_at, p_priority, p_idempotency_key, clock_timestamp())
    ON CONFLICT (job_type, idempotency_key) DO NOTHING
    RETURNING id INTO job_id;
    IF job_id IS NULL THEN
        SELECT id INTO job_id FROM @extschema@.background_jobs
         WHERE job_type = p_job_type AND idempotency_key = p_idempotency_key;
    END IF;
    RETURN job_id;
END
$$;
COMMENT ON FUNCTION @extschema@.schedule_job(text, text, jsonb, timestamptz, integer, text) IS
    'Schedules a background job (priority 1 most urgent to 10, due at p_scheduled_at); a repeated (job type, idempotency key) returns the first job''s id. Workers: claim_jobs, complete_job, fail_job; overrunning jobs are timed out by run_maintenance().';
