-- Rows in every easymo table (several months, the DEFAULT partitions, side tables, the reference
-- sequence), for the backup, upgrade and standby tests. Helpers where they exist, plain INSERTs
-- elsewhere. Runs in a database where easymo is installed in the search_path's first schema.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
SELECT record_metric('api', 'latency', 'p95', g, 'ms', jsonb_build_object('n', g)) FROM generate_series(1, 50) g;
INSERT INTO system_metrics (service_name, metric_type, metric_name, value, created_at)
SELECT 'api', 'gauge', 'old', g, now() - make_interval(months => g) FROM generate_series(1, 14) g;
SELECT log_audit_event('user', 'u' || g, 'login', 'session', g::text, '{}', 'corr-' || g) FROM generate_series(1, 20) g;
INSERT INTO system_audit_logs (actor_type, actor_identifier, action, created_at)
VALUES ('system', 'cron', 'future', now() + interval '2 years');
SELECT update_whatsapp_session_activity('+25078800' || lpad(g::text, 4, '0')) FROM generate_series(1, 20) g;
SELECT enqueue_whatsapp_message('+25078800' || lpad(g::text, 4, '0'), 'text', jsonb_build_object('body', 'hi ' || g)) FROM generate_series(1, 20) g;
SELECT create_transaction(('00000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid, 'payment', g * 100, 'RWF', 'key-' || g)
  FROM generate_series(1, 30) g;
SELECT update_transaction_status(id, 'completed') FROM transactions WHERE amount <= 1000;
INSERT INTO payment_methods (user_id, type, provider, account_details_encrypted, display_hint, is_default)
SELECT ('00000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid, 'mobile_money', 'mtn', '\xdeadbeef', '**** 0' || g, true
  FROM generate_series(1, 5) g;
SELECT register_service('svc-' || g, 'api', '1.0.' || g) FROM generate_series(1, 5) g;
SELECT service_heartbeat('svc-1', 'healthy', '{"rps": 10}');
INSERT INTO feature_flags (key, name, enabled, rollout_strategy, rollout_percentage, variants)
VALUES ('new_checkout', 'New checkout', true, 'percentage', 30,
        '[{"name": "a", "weight": 50}, {"name": "b", "weight": 50}]'),
       ('dark_mode', 'Dark mode', true, 'all', 0, '[]');
SET easymo.flag_evaluation_log = 'all';
SELECT is_feature_enabled('new_checkout', ('00000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid) FROM generate_series(1, 10) g;
RESET easymo.flag_evaluation_log;
SELECT append_event('ride-' || (g % 5), 'ride', 'ride.updated', jsonb_build_object('n', g)) FROM generate_series(1, 40) g;
SELECT enqueue_message('orders', 'order.created', jsonb_build_object('n', g), 1 + g % 10, now(), 'order-' || g) FROM generate_series(1, 30) g;
SELECT schedule_job('report', 'daily-' || g, '{}', now() + make_interval(hours => g)) FROM generate_series(1, 10) g;
INSERT INTO analytics_events (event_name, user_id, session_id, properties)
SELECT 'screen_view', ('00000000-0000-4000-8000-' || lpad((g % 7)::text, 12, '0'))::uuid, 's' || g, jsonb_build_object('screen', 'home')
  FROM generate_series(1, 25) g;
INSERT INTO service_configurations (service_name, environment, key, value) VALUES ('api', 'production', 'timeout', '30');
UPDATE service_configurations SET value = '45' WHERE key = 'timeout';
-- (A trigger writes the history once configuration helpers exist; until then, by hand.)
INSERT INTO service_configuration_history (configuration_id, service_name, environment, key, operation, is_secret)
SELECT id, service_name, environment, key, 'UPDATE', false FROM service_configurations
 WHERE NOT EXISTS (SELECT 1 FROM service_configuration_history);
INSERT INTO locations (user_id, location_type, latitude, longitude, city)
SELECT ('00000000-0000-4000-8000-' || lpad((g % 9)::text, 12, '0'))::uuid, 'pickup',
       -1.95 + (g % 20) * 0.001, 30.06 + (g / 20) * 0.001, 'Kigali'
  FROM generate_series(1, 200) g;
SELECT cache_route(-1.95, 30.06, -1.94, 30.07, 1500, 300);
SELECT set_cache('user:' || g, jsonb_build_object('n', g), 3600, 'profile', ARRAY['users']) FROM generate_series(1, 30) g;
INSERT INTO cache_stat_counters (cache_type, hits, misses) VALUES ('profile', 5, 2);
-- Wallets (0.3.0 on): top-ups from an external account, fees to a hot account (left unfolded),
-- open holds.
SELECT to_regproc('create_wallet_account') IS NOT NULL AS has_wallets \gset
\if :has_wallets
SELECT create_wallet_account('RWF', 'external', p_name => 'momo') AS w_ext,
       create_wallet_account('RWF', 'platform', p_name => 'fees', p_hot => true) AS w_fees \gset
SELECT create_wallet_account('RWF', 'user', ('00000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid, 'wallet ' || g)
  FROM generate_series(1, 5) g;
SELECT wallet_transfer(:'w_ext', id, 1000, 'topup-' || name) FROM wallet_accounts WHERE kind = 'user';
SELECT wallet_transfer(id, :'w_fees', 10.5) FROM wallet_accounts WHERE kind = 'user';
SELECT wallet_transfer(id, :'w_ext', 100, NULL, 3600) FROM wallet_accounts WHERE kind = 'user';
\endif
SELECT to_regproc('send_notification') IS NOT NULL AS has_notifications \gset
\if :has_notifications
SELECT set_notification_preference(('00000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid, 'push', true, '22:00', '07:00', 'Africa/Kigali')
  FROM generate_series(1, 5) g;
SELECT send_notification(('00000000-0000-4000-8000-' || lpad((g % 5 + 1)::text, 12, '0'))::uuid, 'receipt', 'Receipt ' || g, 'Paid',
                         p_channels => ARRAY['push', 'sms'], p_dedupe_key => 'receipt-' || g)
  FROM generate_series(1, 20) g;
\endif
SELECT to_regclass('alert_rules') IS NOT NULL AS has_alerts \gset
\if :has_alerts
-- An override of the extension's own rule (those come with CREATE EXTENSION), and history.
INSERT INTO alert_rules (rule, environment, threshold) VALUES ('queue_backlog', 'staging', 50);
INSERT INTO alert_events (rule, subject, severity, value, threshold, started_at, cleared_at)
VALUES ('queue_backlog', 'message_queue:orders', 'warning', 1200, 1000, now() - interval '2 hours', now() - interval '1 hour'),
       ('service_stale', 'payments', 'critical', 600, 120, now() - interval '5 minutes', NULL);
\endif
-- Rows in months that have no partition yet go to DEFAULT; ensure_partitions moves them.
SELECT ensure_partitions(3);
