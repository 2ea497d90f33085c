-- WhatsApp: sessions (E.164 validation, create, refresh, reactivate, expire), the outbound queue
-- with its consumers (claim, sent, retry, failed after max_retries), the stats views, bad input.
\set VERBOSITY terse
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS easymo CASCADE;
CREATE EXTENSION easymo;

-- Phones are E.164: a plus sign and 8 to 15 digits. Anything else is 22023, NULL 22004, and no
-- session is written.
SELECT phone, regress.error(format('SELECT update_whatsapp_session_activity(%L)', phone)) AS outcome
  FROM unnest(ARRAY['+25078812345', '+1234567', '+123456789012345', '+1234567890123456', '250788123456',
                    '+25078812345 ', ' +25078812345', '+2507881234a', '++25078812345', '+', '', '+２５０７８８１２３４５']) phone;
SELECT regress.error($$SELECT update_whatsapp_session_activity(NULL)$$) AS null_phone;
SELECT phone_number FROM whatsapp_sessions ORDER BY 1;

-- The first activity creates the session; later ones refresh it, counting messages unless told
-- not to, and keep its id.
SELECT update_whatsapp_session_activity('+250788000001') AS s1 \gset
SELECT update_whatsapp_session_activity('+250788000001') = :'s1' AS same_session;
SELECT update_whatsapp_session_activity('+250788000001', false) = :'s1' AS heartbeat_only;
SELECT status, message_count, last_activity_at > created_at AS refreshed FROM whatsapp_sessions WHERE id = :'s1';

-- Idle sessions expire; activity reactivates an expired (or inactive) one, never a suspended one.
SELECT update_whatsapp_session_activity('+250788000002') IS NOT NULL AS s2;
SELECT update_whatsapp_session_activity('+250788000003') IS NOT NULL AS s3;
UPDATE whatsapp_sessions SET last_activity_at = now() - interval '2 hours' WHERE phone_number <> '+250788000001';
UPDATE whatsapp_sessions SET status = 'suspended' WHERE phone_number = '+250788000003';
SELECT cleanup_expired_whatsapp_sessions() AS idle_a_day;
SELECT cleanup_expired_whatsapp_sessions(60) AS idle_an_hour;
SELECT phone_number, status FROM whatsapp_sessions ORDER BY 1;
SELECT update_whatsapp_session_activity('+250788000002') IS NOT NULL AS back;
SELECT update_whatsapp_session_activity('+250788000003') IS NOT NULL AS still_suspended;
SELECT phone_number, status, message_count FROM whatsapp_sessions ORDER BY 1;
SELECT regress.error($$SELECT cleanup_expired_whatsapp_sessions(0)$$) AS zero_minutes;
SELECT regress.error($$SELECT cleanup_expired_whatsapp_sessions(-5)$$) AS negative_minutes;
SELECT regress.error($$SELECT cleanup_expired_whatsapp_sessions(NULL)$$) AS null_minutes;

-- The outbound queue. A message to a number with a session is linked to it.
SELECT enqueue_whatsapp_message('+250788000001', 'text', '{"body": "Your ride is here"}') AS w1 \gset
SELECT enqueue_whatsapp_message('+250788000009', 'template', '{"name": "otp", "code": "1234"}', 1, 'corr-9') AS w2 \gset
SELECT enqueue_whatsapp_message('+250788000001', 'location', '{"lat": -1.95, "lng": 30.06}', 5, NULL, now() + interval '1 hour') IS NOT NULL AS later;
SELECT recipient_phone, message_type, priority, status, session_id = :'s1' AS linked, correlation_id
  FROM whatsapp_message_queue ORDER BY priority, recipient_phone;

-- Bad input: the contract's SQLSTATE, nothing queued.
SELECT regress.error($$SELECT enqueue_whatsapp_message('0788000001', 'text', '{}')$$) AS bad_phone;
SELECT regress.error($$SELECT enqueue_whatsapp_message(NULL, 'text', '{}')$$) AS null_phone;
SELECT regress.error($$SELECT enqueue_whatsapp_message('+250788000001', 'fax', '{}')$$) AS bad_type;
SELECT regress.error($$SELECT enqueue_whatsapp_message('+250788000001', NULL, '{}')$$) AS null_type;
SELECT regress.error($$SELECT enqueue_whatsapp_message('+250788000001', 'text', NULL)$$) AS null_payload;
SELECT regress.error($$SELECT enqueue_whatsapp_message('+250788000001', 'text', '"hi"')$$) AS payload_string;
SELECT regress.error($$SELECT enqueue_whatsapp_message('+250788000001', 'text', '{}', 0)$$) AS priority_0;
SELECT regress.error($$SELECT enqueue_whatsapp_message('+250788000001', 'text', '{}', 11)$$) AS priority_11;
SELECT regress.error($$SELECT enqueue_whatsapp_message('+250788000001', 'text', '{}', 5, NULL, 'infinity')$$) AS scheduled_infinity;
SELECT count(*) AS still_3 FROM whatsapp_message_queue;

-- Consumers: due messages by priority then age, leased for the visibility timeout.
SELECT recipient_phone, status, retry_count,
       locked_until BETWEEN now() + interval '119 seconds' AND now() + interval '121 seconds' AS leased_120s
  FROM claim_whatsapp_messages(10, 120);
SELECT count(*) AS nothing_more FROM claim_whatsapp_messages();
SELECT complete_whatsapp_message(:'w1', 'wamid.HBgM1') AS sent;
SELECT complete_whatsapp_message(:'w1', 'wamid.other') AS sent_again;
SELECT status, provider_message_id, sent_at IS NOT NULL AS sent_at_set, locked_until FROM whatsapp_message_queue WHERE id = :'w1';

-- A failure is retried after a growing delay, then the message fails after max_retries (3).
SELECT fail_whatsapp_message(:'w2', 'rate limited') AS attempt_1;
SELECT status, retry_count, last_error, scheduled_at > now() AS backed_off FROM whatsapp_message_queue WHERE id = :'w2';
SELECT regress.error(format('SELECT fail_whatsapp_message(%L)', :'w2')) AS not_claimed;
DO $$
DECLARE
    m uuid := (SELECT id FROM whatsapp_message_queue WHERE correlation_id = 'corr-9');
BEGIN
    FOR i IN 2..4 LOOP
        UPDATE whatsapp_message_queue SET scheduled_at = now() WHERE id = m;  -- the backoff, skipped
        PERFORM claim_whatsapp_messages(1);
        RAISE WARNING 'attempt %: %', i, fail_whatsapp_message(m, 'rate limited again');
    END LOOP;
END
$$;
SELECT status, retry_count, last_error FROM whatsapp_message_queue WHERE id = :'w2';
UPDATE whatsapp_message_queue SET scheduled_at = now() WHERE id = :'w2';
SELECT count(*) AS failed_not_claimed FROM claim_whatsapp_messages();
-- A claimed message the sender never confirms is due again after its visibility timeout.
UPDATE whatsapp_message_queue SET scheduled_at = now() WHERE status = 'pending';
SELECT recipient_phone, retry_count FROM claim_whatsapp_messages(10, 0);
SELECT recipient_phone, retry_count, last_error FROM claim_whatsapp_messages(10, 0);

SELECT regress.error($$SELECT claim_whatsapp_messages(0)$$) AS batch_0;
SELECT regress.error($$SELECT claim_whatsapp_messages(1001)$$) AS batch_1001;
SELECT regress.error($$SELECT claim_whatsapp_messages(10, -1)$$) AS negative_timeout;
SELECT regress.error($$SELECT complete_whatsapp_message(NULL)$$) AS null_id;
SELECT regress.error($$SELECT complete_whatsapp_message('00000000-0000-0000-0000-000000000000')$$) AS unknown;
SELECT regress.error($$SELECT fail_whatsapp_message('00000000-0000-0000-0000-000000000000')$$) AS unknown_fail;

SELECT status, messages, avg_retries FROM whatsapp_queue_stats ORDER BY 1;
SELECT status, sessions, messages FROM whatsapp_session_stats ORDER BY 1;
