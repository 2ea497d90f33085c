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
