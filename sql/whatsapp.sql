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
    updated_at          timestamptz NOT NULL DEFAULT now()
);
-- Consumers claim due messages by priority then age: only pending rows are indexed.
CREATE INDEX whatsapp_message_queue_due_idx
    ON @extschema@.whatsapp_message_queue (priority, scheduled_at)
    WHERE status = 'pending';
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
