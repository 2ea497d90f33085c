-- Notifications: fan-out to channels, preferences (disabled, muted, quiet hours across a time
-- zone boundary and midnight), dedupe, the WhatsApp path, channel workers with retries and dead
-- letters, provider callbacks, RLS, retention and every bad input's SQLSTATE.
\set VERBOSITY terse
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS easymo CASCADE;
CREATE EXTENSION easymo;

\set a '''00000000-0000-0000-0000-00000000000a'''
\set b '''00000000-0000-0000-0000-00000000000b'''
\set c '''00000000-0000-0000-0000-00000000000c'''

CREATE FUNCTION pg_temp.try(p_sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    state text;
    msg text;
BEGIN
    EXECUTE p_sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
    RETURN state || ' ' || regexp_replace(msg, '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<id>', 'g');
END
$$;
-- The deliveries of a notification, in channel order.
CREATE FUNCTION pg_temp.deliveries(p_id uuid)
RETURNS TABLE(channel text, status text, reason text, delay interval, whatsapp boolean)
LANGUAGE sql AS $$
    SELECT d.channel, d.status, d.reason, d.scheduled_at - n.scheduled_at, d.whatsapp_message_id IS NOT NULL
      FROM notification_deliveries d JOIN notifications n ON n.id = d.notification_id
     WHERE d.notification_id = p_id
     ORDER BY array_position(ARRAY['whatsapp', 'sms', 'push', 'email'], d.channel)
$$;

-- Named channels, no preferences: one pending delivery each, sent as asked.
SELECT send_notification(:a, 'ride.arrived', 'Your driver is here', 'Plate RAB 123', '{"ride": 42}',
                         ARRAY['push', 'sms', 'push']) AS n1 \gset
SELECT * FROM pg_temp.deliveries(:'n1');
SELECT user_id = :a AS mine, type, title, body, data, priority, read_at IS NULL AS unread FROM notifications WHERE id = :'n1';

-- The user's enabled channels when none are named; no preference at all: the notification
-- alone (what the inbox shows), no delivery.
SELECT send_notification(:c, 'promo', 'Hello', 'Welcome') AS n0 \gset
SELECT count(*) AS deliveries FROM notification_deliveries WHERE notification_id = :'n0';
SELECT set_notification_preference(:a, 'push', true);
SELECT set_notification_preference(:a, 'email', true, p_muted_types => ARRAY['promo']);
SELECT set_notification_preference(:a, 'sms', false);
SELECT send_notification(:a, 'receipt', 'Receipt', 'You paid 1500 RWF') AS n2 \gset
SELECT * FROM pg_temp.deliveries(:'n2');
-- A disabled channel named explicitly, and a muted type: suppressed, with the reason.
SELECT send_notification(:a, 'promo', 'Deal', '50% off', p_channels => ARRAY['sms', 'email', 'push']) AS n3 \gset
SELECT * FROM pg_temp.deliveries(:'n3');
-- Changing a preference replaces it.
SELECT set_notification_preference(:a, 'sms', true);
SELECT channel, enabled, quiet_start, timezone, muted_types FROM notification_preferences WHERE user_id = :a ORDER BY channel;

-- Quiet hours, in the user's time zone. Kigali is UTC+2: 22:00-07:00 local is 20:00-05:00 UTC.
SELECT set_notification_preference(:b, 'push', true, '22:00', '07:00', 'Africa/Kigali');
SELECT set_notification_preference(:b, 'sms', true, '13:00', '14:00', 'Africa/Kigali');
-- 21:30 UTC = 23:30 in Kigali (the previous UTC day is not the local day): waits until 07:00
-- local the next day = 05:00 UTC, 7.5 hours.
SELECT send_notification(:b, 'receipt', 'R', 'B', p_scheduled_at => '2026-03-10 21:30+00') AS q1 \gset
SELECT * FROM pg_temp.deliveries(:'q1');
SELECT scheduled_at AT TIME ZONE 'UTC' AS utc FROM notification_deliveries WHERE notification_id = :'q1' AND channel = 'push';
-- 01:00 UTC = 03:00 local, after midnight: until 07:00 local the same day (4 hours).
SELECT send_notification(:b, 'receipt', 'R', 'B', p_scheduled_at => '2026-03-11 01:00+00') AS q2 \gset
SELECT channel, delay FROM pg_temp.deliveries(:'q2');
-- 11:30 UTC = 13:30 local: push goes now, sms waits for 14:00 local.
SELECT send_notification(:b, 'receipt', 'R', 'B', p_scheduled_at => '2026-03-11 11:30+00') AS q3 \gset
SELECT channel, delay FROM pg_temp.deliveries(:'q3');
-- 05:00 UTC = 07:00 local, the first minute after quiet hours: now.
SELECT send_notification(:b, 'receipt', 'R', 'B', p_scheduled_at => '2026-03-11 05:00+00') AS q4 \gset
SELECT channel, delay FROM pg_temp.deliveries(:'q4');
-- Urgent (priority 1 and 2) ignores quiet hours; priority 3 does not.
SELECT send_notification(:b, 'security', 'Login', 'New device', p_priority => 2, p_scheduled_at => '2026-03-10 21:30+00') AS q5 \gset
SELECT channel, delay FROM pg_temp.deliveries(:'q5');
SELECT send_notification(:b, 'security', 'Login', 'New device', p_priority => 3, p_scheduled_at => '2026-03-10 21:30+00') AS q6 \gset
SELECT channel, delay FROM pg_temp.deliveries(:'q6');
-- A zone with daylight saving: New York's 22:00-07:00 on the night the clocks go forward
-- (2026-03-08, 02:00 -> 03:00 local): 23:00 local (04:00 UTC) waits until 07:00 EDT = 11:00 UTC,
-- 7 hours, not 8.
SELECT set_notification_preference(:c, 'email', true, '22:00', '07:00', 'America/New_York');
SELECT send_notification(:c, 'receipt', 'R', 'B', p_scheduled_at => '2026-03-08 04:00+00') AS q7 \gset
SELECT channel, delay FROM pg_temp.deliveries(:'q7');

-- Dedupe: the same key within its window returns the first notification and sends nothing.
SELECT send_notification(:a, 'ride.arrived', 'Here', 'Driver here', p_channels => ARRAY['push'], p_dedupe_key => 'ride-42-arrived') AS d1 \gset
SELECT send_notification(:a, 'ride.arrived', 'Here again', 'Driver here', p_channels => ARRAY['push', 'sms'], p_dedupe_key => 'ride-42-arrived') = :'d1' AS same;
SELECT count(*) AS notifications, (SELECT count(*) FROM notification_deliveries d JOIN notifications n ON n.id = d.notification_id WHERE n.dedupe_key = 'ride-42-arrived') AS deliveries
  FROM notifications WHERE dedupe_key = 'ride-42-arrived';
-- Keys are per user.
SELECT send_notification(:b, 'ride.arrived', 'Here', 'Driver here', p_channels => ARRAY['push'], p_dedupe_key => 'ride-42-arrived') <> :'d1' AS other_user;
-- After the window, a new notification; maintenance removes expired keys.
UPDATE notification_dedupe_keys SET expires_at = now() - interval '1 second' WHERE user_id = :a AND dedupe_key = 'ride-42-arrived';
SELECT send_notification(:a, 'ride.arrived', 'Here', 'Driver here', p_channels => ARRAY['push'], p_dedupe_key => 'ride-42-arrived') <> :'d1' AS new_window;
UPDATE notification_dedupe_keys SET expires_at = now() - interval '1 second' WHERE user_id = :b;
SELECT run_maintenance() -> 'notification_dedupe_keys_removed' AS keys_removed;
SET easymo.notification_dedupe_seconds = 1;
SELECT send_notification(:c, 'x', 'T', 'B', p_channels => ARRAY['push'], p_dedupe_key => 'short') IS NOT NULL AS sent;
SELECT expires_at - now() BETWEEN interval '0' AND interval '1 second' AS one_second FROM notification_dedupe_keys WHERE user_id = :c;
RESET easymo.notification_dedupe_seconds;

-- WhatsApp goes through whatsapp_message_queue, to the user's active session's number.
SELECT send_notification(:a, 'ride.arrived', 'Here', 'Driver here', p_channels => ARRAY['whatsapp']) AS w0 \gset
SELECT * FROM pg_temp.deliveries(:'w0');
INSERT INTO whatsapp_sessions (phone_number, user_id) VALUES ('+250788000001', :a);
SELECT send_notification(:a, 'ride.arrived', 'Here', 'Driver here', p_channels => ARRAY['whatsapp', 'push'], p_priority => 1) AS w1 \gset
SELECT * FROM pg_temp.deliveries(:'w1');
SELECT q.recipient_phone, q.message_type, q.priority, q.payload ->> 'title' AS title, q.payload ->> 'body' AS body,
       q.payload ->> 'notification_id' = :'w1' AS links, q.correlation_id LIKE 'notification:%' AS correlated
  FROM whatsapp_message_queue q JOIN notification_deliveries d ON d.whatsapp_message_id = q.id WHERE d.notification_id = :'w1';
-- The delivery follows its message: claimed, failed once (back to queued), sent with the
-- provider's id, then delivered by the provider's callback.
SELECT count(*) AS claimed FROM claim_whatsapp_messages(10, 30);
SELECT status FROM notification_deliveries WHERE notification_id = :'w1' AND channel = 'whatsapp';
SELECT fail_whatsapp_message(whatsapp_message_id, 'timeout') FROM notification_deliveries WHERE notification_id = :'w1' AND channel = 'whatsapp';
SELECT status, retry_count, last_error FROM notification_deliveries WHERE notification_id = :'w1' AND channel = 'whatsapp';
UPDATE whatsapp_message_queue SET scheduled_at = now() - interval '1 second' WHERE status = 'pending';
SELECT count(*) AS claimed FROM claim_whatsapp_messages(10, 30);
SELECT complete_whatsapp_message(whatsapp_message_id, 'wamid.1') FROM notification_deliveries WHERE notification_id = :'w1' AND channel = 'whatsapp';
SELECT status, provider_message_id, sent_at IS NOT NULL AS sent FROM notification_deliveries WHERE notification_id = :'w1' AND channel = 'whatsapp';
SELECT record_notification_status('whatsapp', 'wamid.1', 'sent') AS sent_callback_after_sent;
SELECT record_notification_status('whatsapp', 'wamid.1', 'delivered');
SELECT record_notification_status('whatsapp', 'wamid.1', 'delivered') AS again;
SELECT status, delivered_at IS NOT NULL AS delivered FROM notification_deliveries WHERE notification_id = :'w1' AND channel = 'whatsapp';
-- A message that fails for good: the delivery is dead.
SELECT send_notification(:a, 'x', 'T', 'B', p_channels => ARRAY['whatsapp']) AS w2 \gset
UPDATE whatsapp_message_queue q SET max_retries = 0 FROM notification_deliveries d WHERE d.notification_id = :'w2' AND q.id = d.whatsapp_message_id;
SELECT count(*) AS claimed FROM claim_whatsapp_messages(10, 30);
SELECT fail_whatsapp_message(whatsapp_message_id, 'blocked') FROM notification_deliveries WHERE notification_id = :'w2';
SELECT status, last_error, failed_at IS NOT NULL AS failed FROM notification_deliveries WHERE notification_id = :'w2';

-- Channel workers: claim by priority, complete, fail with backoff, dead letter, lapsed leases.
DELETE FROM notifications;
SELECT send_notification(:a, 'low', 'L', 'B', p_channels => ARRAY['sms'], p_priority => 9) AS s_low \gset
SELECT send_notification(:a, 'high', 'H', 'B', p_channels => ARRAY['sms', 'push'], p_priority => 1) AS s_high \gset
SELECT send_notification(:a, 'later', 'L', 'B', p_channels => ARRAY['sms'], p_scheduled_at => now() + interval '1 hour') AS s_later \gset
SELECT type, title, body, data, priority, retry_count FROM claim_notification_deliveries('sms', 10, 30);
SELECT count(*) AS nothing_left FROM claim_notification_deliveries('sms', 10, 30);
SELECT complete_notification_delivery(d.id, 'SM1') FROM notification_deliveries d WHERE d.notification_id = :'s_high' AND d.channel = 'sms';
SELECT complete_notification_delivery(d.id, 'SM1') AS twice FROM notification_deliveries d WHERE d.notification_id = :'s_high' AND d.channel = 'sms';
SELECT record_notification_status('sms', 'SM1', 'failed', 'handset off');
SELECT status, last_error FROM notification_deliveries WHERE notification_id = :'s_high' AND channel = 'sms';
SELECT fail_notification_delivery(d.id, 'gateway 503') FROM notification_deliveries d WHERE d.notification_id = :'s_low';
SELECT status, retry_count, scheduled_at > now() AS backoff, last_error FROM notification_deliveries WHERE notification_id = :'s_low';
UPDATE notification_deliveries SET max_retries = 1, scheduled_at = now() - interval '1 second' WHERE notification_id = :'s_low';
SELECT count(*) AS claimed FROM claim_notification_deliveries('sms', 10, 0);
SELECT run_maintenance() -> 'notification_deliveries_released' AS released;
SELECT status, retry_count, last_error FROM notification_deliveries WHERE notification_id = :'s_low';
-- A failure past max_retries: dead_letter.
UPDATE notification_deliveries SET max_retries = 0 WHERE notification_id = :'s_high' AND channel = 'push';
SELECT count(*) AS claimed FROM claim_notification_deliveries('push', 10, 30);
SELECT fail_notification_delivery(d.id, 'no device token') FROM notification_deliveries d WHERE d.notification_id = :'s_high' AND d.channel = 'push';
SELECT status, retry_count, failed_at IS NOT NULL AS failed FROM notification_deliveries WHERE notification_id = :'s_high' AND channel = 'push';
SELECT channel, status, deliveries FROM notification_delivery_stats ORDER BY channel, status;

-- Bad input: each its SQLSTATE, nothing written.
SELECT count(*) AS before FROM notifications \gset
SELECT pg_temp.try($$SELECT send_notification(NULL, 't', 'T', 'B')$$);
SELECT pg_temp.try($$SELECT send_notification('00000000-0000-0000-0000-00000000000a', NULL, 'T', 'B')$$);
SELECT pg_temp.try($$SELECT send_notification('00000000-0000-0000-0000-00000000000a', 't', '', 'B')$$);
SELECT pg_temp.try($$SELECT send_notification('00000000-0000-0000-0000-00000000000a', 't', 'T', repeat('b', 4097))$$);
SELECT pg_temp.try($$SELECT send_notification('00000000-0000-0000-0000-00000000000a', 't', 'T', 'B', '[1]')$$);
SELECT pg_temp.try($$SELECT send_notification('00000000-0000-0000-0000-00000000000a', 't', 'T', 'B', p_channels => ARRAY['fax'])$$);
SELECT pg_temp.try($$SELECT send_notification('00000000-0000-0000-0000-00000000000a', 't', 'T', 'B', p_channels => ARRAY[NULL])$$);
SELECT pg_temp.try($$SELECT send_notification('00000000-0000-0000-0000-00000000000a', 't', 'T', 'B', p_channels => '{}')$$);
SELECT pg_temp.try($$SELECT send_notification('00000000-0000-0000-0000-00000000000a', 't', 'T', 'B', p_priority => 11)$$);
SELECT pg_temp.try($$SELECT send_notification('00000000-0000-0000-0000-00000000000a', 't', 'T', 'B', p_dedupe_key => '')$$);
SELECT pg_temp.try($$SELECT send_notification('00000000-0000-0000-0000-00000000000a', 't', 'T', 'B', p_scheduled_at => 'infinity')$$);
SELECT count(*) = :before AS nothing_written FROM notifications;
SELECT pg_temp.try($$SELECT set_notification_preference('00000000-0000-0000-0000-00000000000a', 'fax', true)$$);
SELECT pg_temp.try($$SELECT set_notification_preference('00000000-0000-0000-0000-00000000000a', 'sms', NULL)$$);
SELECT pg_temp.try($$SELECT set_notification_preference('00000000-0000-0000-0000-00000000000a', 'sms', true, '22:00')$$);
SELECT pg_temp.try($$SELECT set_notification_preference('00000000-0000-0000-0000-00000000000a', 'sms', true, '22:00', '22:00')$$);
SELECT pg_temp.try($$SELECT set_notification_preference('00000000-0000-0000-0000-00000000000a', 'sms', true, p_timezone => 'Mars/Olympus')$$);
SELECT pg_temp.try($$SELECT set_notification_preference('00000000-0000-0000-0000-00000000000a', 'sms', true, p_muted_types => ARRAY[NULL])$$);
SELECT pg_temp.try($$SELECT claim_notification_deliveries('whatsapp')$$);
SELECT pg_temp.try($$SELECT claim_notification_deliveries('fax')$$);
SELECT pg_temp.try($$SELECT claim_notification_deliveries('sms', 0)$$);
SELECT pg_temp.try($$SELECT complete_notification_delivery('00000000-0000-0000-0000-000000000001')$$);
SELECT pg_temp.try($$SELECT fail_notification_delivery('00000000-0000-0000-0000-000000000001')$$);
SELECT pg_temp.try($$SELECT fail_notification_delivery(id) FROM notification_deliveries WHERE status = 'dead_letter' LIMIT 1$$);
SELECT pg_temp.try($$SELECT record_notification_status('sms', 'nope', 'delivered')$$);
SELECT pg_temp.try($$SELECT record_notification_status('sms', 'SM1', 'read')$$);
SELECT pg_temp.try($$SELECT mark_notifications_read(NULL)$$);

-- RLS: a user reads its own notifications, deliveries and preferences, marks its own read
-- (another's ids are ignored) and counts its unread ones; it writes nothing else.
SELECT send_notification(:b, 'x', 'For B', 'B', p_channels => ARRAY['push']) AS b1 \gset
SELECT send_notification(:a, 'x', 'For A', 'A', p_channels => ARRAY['push']) AS a1 \gset
SET ROLE authenticated;
BEGIN READ ONLY;
SELECT set_config('request.jwt.claims', '{"sub": "00000000-0000-0000-0000-00000000000b", "role": "authenticated"}', true) IS NOT NULL AS claims;
SELECT unread_notification_count();
SELECT count(*) FILTER (WHERE user_id <> :b) AS others, count(*) > 0 AS own FROM notifications;
SELECT count(*) FILTER (WHERE user_id <> :b) AS others FROM notification_deliveries;
SELECT count(*) FILTER (WHERE user_id <> :b) AS others, count(*) AS own FROM notification_preferences;
SELECT pg_temp.try($$SELECT count(*) FROM notification_dedupe_keys$$) AS dedupe_keys;
COMMIT;
BEGIN;
SELECT set_config('request.jwt.claims', '{"sub": "00000000-0000-0000-0000-00000000000b", "role": "authenticated"}', true) IS NOT NULL AS claims;
SELECT mark_notifications_read(ARRAY[:'b1', :'a1']::uuid[]) AS marked;
SELECT mark_notifications_read(ARRAY[:'b1']::uuid[]) AS again;
SELECT unread_notification_count() >= 0 AS counted;
SELECT pg_temp.try($$UPDATE notifications SET title = 'hacked'$$);
SELECT pg_temp.try($$SELECT send_notification('00000000-0000-0000-0000-00000000000b', 'x', 'T', 'B')$$);
SELECT pg_temp.try($$SELECT set_notification_preference('00000000-0000-0000-0000-00000000000b', 'sms', false)$$);
SELECT pg_temp.try($$SELECT claim_notification_deliveries('sms')$$);
COMMIT;
RESET ROLE;
SELECT id = :'b1' AS b_read FROM notifications WHERE read_at IS NOT NULL;
SELECT read_at IS NULL AS a_untouched FROM notifications WHERE id = :'a1';
SET ROLE anon;
SELECT pg_temp.try($$SELECT unread_notification_count()$$);
SELECT pg_temp.try($$SELECT count(*) FROM notifications$$);
RESET ROLE;

-- Retention: older notifications go with their deliveries.
UPDATE notifications SET created_at = now() - interval '5 months' WHERE id = :'b1';
SELECT apply_retention('notifications', 2) AS removed;
SELECT count(*) AS left_of_b1 FROM notification_deliveries WHERE notification_id = :'b1';
SELECT count(*) > 0 AS others_kept FROM notifications;
