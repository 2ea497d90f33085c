-- WhatsApp: one session per phone number, and the outbound message queue.

CREATE TABLE @extschema@.whatsapp_sessions (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- E.164: a plus sign and 8 to 15 digits.
    phone_number      text NOT NULL UNIQUE CHECK (phone_number ~ '^\+[0-9]{8,15}$'),
    user_id           uuid,
    status            text NOT NULL DEFAULT 'active'
                          CHECK (status IN ('active', 'inactive', 'suspended', 'expired')),
    webhook_url       text CHECK (length(webhook_url) <= 2048),
    message_count     bigint NOT NULL DEFAULT 0 CHECK (message_count >= 0),
    error_count       bigint NOT NULL DEFAULT 0 CHECK (error_count >= 0),
    last_activity_at  timestamptz NOT NULL DEFAULT now(),
    last_heartbeat_at timestamptz NOT NULL DEFAULT now(),
    metadata          jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
-- The expiry sweep only ever looks at active sessions.
CREATE INDEX whatsapp_sessions_active_activity_idx
    ON @extschema@.whatsapp_sessions (last_activity_at)
    WHERE status = 'active';
CREATE INDEX whatsapp_sessions_user_idx
    ON @extschema@.whatsapp_sessions (user_id)
    WHERE user_id IS NOT NULL;
CREATE TRIGGER whatsapp_sessions_touch BEFORE UPDATE ON @extschema@.whatsapp_sessions
    FOR EACH ROW EXECUTE FUNCTION @extschema@._touch_updated_at();
COMMENT ON TABLE @extschema@.whatsapp_sessions IS
    'One WhatsApp session per E.164 phone number: status (active, inactive, suspended, expired), activity and heartbeat times, message and error counts.';

CREATE TABLE @extschema@.whatsapp_message_queue (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    session_id          uuid REFERENCES @extschema@.whatsapp_sessions (id) ON DELETE SET NULL,
    recipient_phone     text NOT NULL CHECK (recipient_phone ~ '^\+[0-9]{8,15}$'),
    message_type        text NOT NULL
                            CHECK (message_type IN ('text', 'template', 'media', 'interactive', 'location')),
    payload             jsonb NOT NULL CHECK (jsonb_typeof(payload) = 'object'),
    priority            integer NOT NULL DEFAULT 5 CHECK (priority BETWEEN 1 AND 10),
    status              text NOT NULL DEFAULT 'pending'
                            CHECK (status IN ('pending', 'processing', 'sent', 'failed', 'cancelled')),
    retry_count         integer NOT NULL DEFAULT 0 CHECK (retry_count >= 0),
    max_retries         integer NOT NULL DEFAULT 3 CHECK (max_retries >= 0),
    scheduled_at        timestamptz NOT NULL DEFAULT now(),
    -- A claimed message is invisible to other consumers until locked_until passes.
    locked_until        timestamptz,
    correlation_id      text CHECK (length(correlation_id) <= 128),
    provider_message_id text CHECK (length(provider_message_id) <= 255),
    last_error          text,
    sent_at             timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    -- Claims so far, and the receipt of the current one (see message_queue).
    deliveries          integer NOT NULL DEFAULT 0 CHECK (deliveries >= 0),
    receipt             text GENERATED ALWAYS AS
                            (CASE WHEN deliveries > 0 THEN 'w:' || id::text || ':' || deliveries::text END) STORED
);
-- Consumers claim by priority, then age: active (pending or in-flight) messages only; an
-- in-flight one whose visibility timeout passed is due again.
CREATE INDEX whatsapp_message_queue_due_idx
    ON @extschema@.whatsapp_message_queue (priority, created_at, id)
    WHERE status IN ('pending', 'processing');
-- Claimed rows whose visibility timeout passed are found through this one.
CREATE INDEX whatsapp_message_queue_locked_idx
    ON @extschema@.whatsapp_message_queue (locked_until)
    WHERE status = 'processing';
CREATE INDEX whatsapp_message_queue_correlation_idx
    ON @extschema@.whatsapp_message_queue (correlation_id)
    WHERE correlation_id IS NOT NULL;
CREATE INDEX whatsapp_message_queue_session_idx
    ON @extschema@.whatsapp_message_queue (session_id)
    WHERE session_id IS NOT NULL;
CREATE TRIGGER whatsapp_message_queue_touch BEFORE UPDATE ON @extschema@.whatsapp_message_queue
    FOR EACH ROW EXECUTE FUNCTION @extschema@._touch_updated_at();
COMMENT ON TABLE @extschema@.whatsapp_message_queue IS
    'Outbound WhatsApp messages (text, template, media, interactive, location) by priority 1 (most urgent) to 10, with scheduled delivery, visibility timeout and retries.';

CREATE VIEW @extschema@.whatsapp_session_stats WITH (security_invoker = true) AS
SELECT status,
       count(*)                 AS sessions,
       sum(message_count)       AS messages,
       sum(error_count)         AS errors,
       avg(message_count)       AS avg_messages_per_session,
       max(last_activity_at)    AS last_activity_at
  FROM @extschema@.whatsapp_sessions
 GROUP BY status;
COMMENT ON VIEW @extschema@.whatsapp_session_stats IS
    'WhatsApp sessions per status: count, messages, errors, average messages per session, latest activity.';

CREATE VIEW @extschema@.whatsapp_queue_stats WITH (security_invoker = true) AS
SELECT status,
       count(*)                                   AS messages,
       count(*) FILTER (WHERE scheduled_at <= now()) AS due,
       min(scheduled_at)                          AS oldest_scheduled_at,
       avg(retry_count)                           AS avg_retries,
       avg(priority)                              AS avg_priority
  FROM @extschema@.whatsapp_message_queue
 GROUP BY status;
COMMENT ON VIEW @extschema@.whatsapp_queue_stats IS
    'Outbound WhatsApp queue per status: messages, how many are due, oldest scheduled time, average retries and priority.';

SELECT @extschema@._secure_table('@extschema@.whatsapp_sessions', 'user_id');
SELECT @extschema@._secure_table('@extschema@.whatsapp_message_queue');
SELECT @extschema@._secure_view('@extschema@.whatsapp_session_stats');
SELECT @extschema@._secure_view('@extschema@.whatsapp_queue_stats');

-- E.164: a plus sign and 8 to 15 digits. One place for the rule the helpers share.
CREATE FUNCTION @extschema@._check_phone(p_param text, p_phone text) RETURNS text
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    IF p_phone IS NULL THEN
        RAISE EXCEPTION '% must not be NULL', p_param USING ERRCODE = '22004';
    ELSIF p_phone !~ '^\+[0-9]{8,15}$' THEN
        RAISE EXCEPTION '%: must be an E.164 number (+ and 8 to 15 digits), got %', p_param, quote_literal(p_phone)
            USING ERRCODE = '22023';
    END IF;
    RETURN p_phone;
END
$$;
COMMENT ON FUNCTION @extschema@._check_phone(text, text) IS
    'Internal: p_phone, or 22004/22023 unless it is an E.164 number.';

CREATE FUNCTION @extschema@.update_whatsapp_session_activity(
    p_phone_number text,
    p_increment_message_count boolean DEFAULT true
) RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    session_id uuid;
BEGIN
    p_phone_number := @extschema@._check_phone('p_phone_number', p_phone_number);
    -- Creates the session, or refreshes it; an inactive or expired one becomes active again, a
    -- suspended one stays suspended (suspension is a decision, not idleness).
    INSERT INTO @extschema@.whatsapp_sessions AS s (phone_number, message_count)
    VALUES (p_phone_number, CASE WHEN coalesce(p_increment_message_count, true) THEN 1 ELSE 0 END)
    ON CONFLICT (phone_number) DO UPDATE
       SET last_activity_at = now(),
           last_heartbeat_at = now(),
           message_count = s.message_count + CASE WHEN coalesce(p_increment_message_count, true) THEN 1 ELSE 0 END,
           status = CASE WHEN s.status = 'suspended' THEN 'suspended' ELSE 'active' END
    RETURNING s.id INTO session_id;
    RETURN session_id;
END
$$;
COMMENT ON FUNCTION @extschema@.update_whatsapp_session_activity(text, boolean) IS
    'Records activity on the WhatsApp session of an E.164 number: creates it, or refreshes its activity and heartbeat times (reactivating an inactive or expired one; a suspended one stays suspended), counting a message unless told not to. Returns the session id.';

CREATE FUNCTION @extschema@.cleanup_expired_whatsapp_sessions(p_idle_minutes integer DEFAULT 1440) RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    p_idle_minutes := @extschema@._check_range('p_idle_minutes', p_idle_minutes, 1, 525600);
    UPDATE @extschema@.whatsapp_sessions
       SET status = 'expired'
     WHERE status = 'active' AND last_activity_at < now() - make_interval(mins => p_idle_minutes);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
COMMENT ON FUNCTION @extschema@.cleanup_expired_whatsapp_sessions(integer) IS
    'Marks active sessions idle for more than p_idle_minutes (default a day) expired; returns how many.';

CREATE FUNCTION @extschema@.enqueue_whatsapp_message(
    p_recipient_phone text,
    p_message_type text,
    p_payload jsonb,
    p_priority integer DEFAULT 5,
    p_correlation_id text DEFAULT NULL,
    p_scheduled_at timestamptz DEFAULT now()
) RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    message_id uuid;
BEGIN
    p_recipient_phone := @extschema@._check_phone('p_recipient_phone', p_recipient_phone);
    p_message_type := @extschema@._check_choice('p_message_type', p_message_type, ARRAY['text', 'template', 'media', 'interactive', 'location']);
    p_payload := @extschema@._check_json('p_payload', p_payload, 'object', true);
    p_priority := @extschema@._check_range('p_priority', p_priority, 1, 10);
    p_correlation_id := @extschema@._check_text('p_correlation_id', p_correlation_id, 128, false);
    p_scheduled_at := @extschema@._check_time('p_scheduled_at', p_scheduled_at);
    INSERT INTO @extschema@.whatsapp_message_queue
           (session_id, recipient_phone, message_type, payload, priority, correlation_id, scheduled_at, created_at)
    VALUES ((SELECT id FROM @extschema@.whatsapp_sessions WHERE phone_number = p_recipient_phone),
            p_recipient_phone, p_message_type, p_payload, p_priority, p_correlation_id, p_scheduled_at, clock_timestamp())
    RETURNING id INTO message_id;
    RETURN message_id;
END
$$;
COMMENT ON FUNCTION @extschema@.enqueue_whatsapp_message(text, text, jsonb, integer, text, timestamptz) IS
    'Queues an outbound WhatsApp message (text, template, media, interactive, location) to an E.164 number, priority 1 (most urgent) to 10, due at p_scheduled_at; returns its id. Consumers: claim_whatsapp_messages, complete_whatsapp_message, fail_whatsapp_message.';
