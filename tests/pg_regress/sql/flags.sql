-- Feature flags: native evaluation, bucketing, strategies, environments, logging, bad input.
\set VERBOSITY terse
-- NOTICEs name dates (months moved by ensure_partitions): keep them out of the expected output.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS easymo CASCADE;
CREATE EXTENSION easymo;
-- Counts are handed on only when this suite says so (_flush_stats), not by the clock.
SET easymo.stats_flush_interval = 3600;

-- 100,000 users with stable ids.
CREATE TEMP TABLE users AS SELECT md5(i::text)::uuid AS id FROM generate_series(1, 100000) i;

-- Pinned vectors: the bucket xxh3_64(key || ':' || user) mod 10000 of these pairs was computed
-- independently (Python's xxhash) and must never change. A user with bucket b is off at b/100 %
-- and on at (b+1)/100 %, which pins b exactly through the public function.
CREATE TEMP TABLE pinned (flag_key text, user_id uuid, bucket int);
INSERT INTO pinned VALUES
  ('new_checkout', '00000000-0000-0000-0000-000000000001', 4119),
  ('new_checkout', '7c9e6679-7425-40de-944b-e07fc1f90ae7', 1586),
  ('dark_mode', '00000000-0000-0000-0000-000000000001', 5260),
  ('dark_mode', 'f47ac10b-58cc-4372-a567-0e02b2c3d479', 5869),
  ('driver-bonus.v2', '550e8400-e29b-41d4-a716-446655440000', 1075),
  ('ünïcode_flag', '550e8400-e29b-41d4-a716-446655440000', 2595);
INSERT INTO feature_flags (key, name, enabled, rollout_strategy)
SELECT DISTINCT flag_key, flag_key, true, 'percentage' FROM pinned;
CREATE FUNCTION pg_temp.pins_bucket(p_key text, p_user uuid, p_bucket int) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    below boolean;
    at boolean;
BEGIN
    UPDATE feature_flags SET rollout_percentage = p_bucket / 100.0 WHERE key = p_key;
    below := is_feature_enabled(p_key, p_user);
    UPDATE feature_flags SET rollout_percentage = (p_bucket + 1) / 100.0 WHERE key = p_key;
    at := is_feature_enabled(p_key, p_user);
    RETURN NOT below AND at;
END $$;
SELECT flag_key, user_id, bucket, pg_temp.pins_bucket(flag_key, user_id, bucket) AS pinned
  FROM pinned ORDER BY flag_key, user_id;

-- Percentage rollouts: uniform (25 % -> 25 % +- 1 %), monotonic (everyone on at 10 % is on at
-- 20 %), and independent between flags (two 50 % flags -> both on for 25 % +- 1.5 %).
INSERT INTO feature_flags (key, name, enabled, rollout_strategy, rollout_percentage) VALUES
  ('quarter', 'q', true, 'percentage', 25),
  ('ramp', 'r', true, 'percentage', 10),
  ('half_a', 'a', true, 'percentage', 50),
  ('half_b', 'b', true, 'percentage', 50);
SELECT count(*) FILTER (WHERE is_feature_enabled('quarter', id)) BETWEEN 24000 AND 26000 AS uniform_25
  FROM users;
CREATE TEMP TABLE on_at_10 AS SELECT id FROM users WHERE is_feature_enabled('ramp', id);
UPDATE feature_flags SET rollout_percentage = 20 WHERE key = 'ramp';
SELECT count(*) FILTER (WHERE NOT is_feature_enabled('ramp', id)) AS turned_off_by_raising
  FROM on_at_10;
SELECT (SELECT count(*) FROM on_at_10) BETWEEN 9000 AND 11000 AS about_10,
       (SELECT count(*) FROM users WHERE is_feature_enabled('ramp', id)) BETWEEN 19000 AND 21000 AS about_20;
SELECT count(*) FILTER (WHERE is_feature_enabled('half_a', id) AND is_feature_enabled('half_b', id))
       BETWEEN 23500 AND 26500 AS independent
  FROM users;
-- 0 % and 100 % are exact; without a user only 100 % is on.
UPDATE feature_flags SET rollout_percentage = 0 WHERE key = 'quarter';
SELECT count(*) FILTER (WHERE is_feature_enabled('quarter', id)) AS on_at_0 FROM users;
SELECT is_feature_enabled('quarter', NULL) AS null_user_at_0;
UPDATE feature_flags SET rollout_percentage = 99.99 WHERE key = 'quarter';
SELECT is_feature_enabled('quarter', NULL) AS null_user_at_99_99;
UPDATE feature_flags SET rollout_percentage = 100 WHERE key = 'quarter';
SELECT count(*) FILTER (WHERE is_feature_enabled('quarter', id)) AS on_at_100 FROM users;
SELECT is_feature_enabled('quarter', NULL) AS null_user_at_100;

-- Strategies all and none; unknown and disabled flags are off.
INSERT INTO feature_flags (key, name, enabled, rollout_strategy) VALUES
  ('everyone', 'e', true, 'all'), ('nobody', 'n', true, 'none'), ('switched_off', 's', false, 'all');
SELECT is_feature_enabled('everyone') AS all_, is_feature_enabled('nobody') AS none_,
       is_feature_enabled('switched_off') AS disabled, is_feature_enabled('no_such_flag') AS unknown;
-- Keys taken in turn within one statement (and the same key in runs) answer as each does alone.
SELECT count(*) FILTER (WHERE is_feature_enabled(k) IS DISTINCT FROM (k = 'everyone')) AS wrong,
       count(*) FILTER (WHERE k = 'everyone') AS everyone
  FROM (SELECT (ARRAY['everyone', 'nobody', 'no_such_flag', 'switched_off', 'everyone'])[1 + g % 5 - (g / 100) % 2 * (g % 5)] AS k
          FROM generate_series(1, 1000) g) s;

-- user_list.
INSERT INTO feature_flags (key, name, enabled, rollout_strategy, target_users) VALUES
  ('beta', 'b', true, 'user_list', ARRAY['00000000-0000-0000-0000-00000000000a'::uuid, '00000000-0000-0000-0000-00000000000c']);
SELECT is_feature_enabled('beta', '00000000-0000-0000-0000-00000000000a') AS listed,
       is_feature_enabled('beta', '00000000-0000-0000-0000-00000000000b') AS not_listed,
       is_feature_enabled('beta', NULL) AS no_user;

-- Environments: a flag applies when its environment is `all` or the one asked for; a key's
-- environment-specific row wins over its `all` row.
INSERT INTO feature_flags (key, name, enabled, rollout_strategy, environment) VALUES
  ('staging_only', 's', true, 'all', 'staging'),
  ('layered', 'l', true, 'all', 'all'),
  ('layered', 'l', false, 'all', 'production');
SELECT e AS environment,
       is_feature_enabled('staging_only', NULL, e) AS staging_only,
       is_feature_enabled('layered', NULL, e) AS layered,
       is_feature_enabled('everyone', NULL, e) AS everyone
  FROM unnest(ARRAY['development', 'staging', 'production']) e;

-- Conditions: every rule must hold for p_context; one flag per operator.
INSERT INTO feature_flags (key, name, enabled, rollout_strategy, conditions)
SELECT 'cond_' || op, op, true, 'condition', jsonb_build_array(jsonb_build_object('attribute', attr, 'operator', op, 'value', val))
  FROM (VALUES ('eq', 'country', '"RW"'::jsonb), ('neq', 'country', '"KE"'), ('in', 'country', '["KE", "RW"]'),
               ('not_in', 'country', '["UG"]'), ('contains', 'tags', '"vip"'), ('starts_with', 'phone', '"+250"'),
               ('gt', 'trips', '10'), ('gte', 'trips', '12'), ('lt', 'trips', '13'), ('lte', 'trips', '12'),
               ('semver_gte', 'app.version', '"2.9"'), ('semver_lt', 'app.version', '"2.11.0"')) v(op, attr, val);
SELECT substr(key, 6) AS operator,
       is_feature_enabled(key, NULL, 'production',
                          '{"country": "RW", "tags": ["vip"], "phone": "+250788000001", "trips": 12, "app": {"version": "2.10.3"}}') AS matching,
       is_feature_enabled(key, NULL, 'production',
                          '{"country": "UG", "tags": [], "phone": "+254700000001", "trips": 9, "app": {"version": "2.8"}}') AS other,
       is_feature_enabled(key) AS empty_context
  FROM feature_flags WHERE key LIKE 'cond\_%' ORDER BY key;
-- Several rules: all of them must hold.
INSERT INTO feature_flags (key, name, enabled, rollout_strategy, conditions) VALUES
  ('kigali_vips', 'k', true, 'condition',
   '[{"attribute": "city", "operator": "eq", "value": "Kigali"}, {"attribute": "tier", "operator": "in", "value": ["gold", "vip"]}]');
SELECT is_feature_enabled('kigali_vips', NULL, 'production', '{"city": "Kigali", "tier": "vip"}') AS both,
       is_feature_enabled('kigali_vips', NULL, 'production', '{"city": "Kigali", "tier": "basic"}') AS one;

-- Variants: weighted 1:3, independent of the rollout; NULL when the flag is off for the user.
INSERT INTO feature_flags (key, name, enabled, rollout_strategy, rollout_percentage, variants) VALUES
  ('colour', 'c', true, 'percentage', 50, '[{"name": "blue", "weight": 1}, {"name": "green", "weight": 3}]');
SELECT v AS variant, count(*) BETWEEN 0.25 * 50000 - 1000 AND 0.25 * 50000 + 1000 AS about_a_quarter_of_half,
       count(*) BETWEEN 0.75 * 50000 - 1000 AND 0.75 * 50000 + 1000 AS about_three_quarters_of_half
  FROM (SELECT get_feature_variant('colour', id) AS v FROM users) x
 GROUP BY v ORDER BY v;
SELECT count(*) AS variant_when_off
  FROM users WHERE NOT is_feature_enabled('colour', id) AND get_feature_variant('colour', id) IS NOT NULL;
SELECT get_feature_variant('everyone', '00000000-0000-0000-0000-00000000000a') AS no_variants_defined;

-- Bad input: NULL key or environment 22004; unknown environment, non-object context,
-- malformed rules 22023.
SELECT regress.outcome($$SELECT is_feature_enabled(NULL)$$);
SELECT regress.outcome($$SELECT is_feature_enabled('everyone', NULL, NULL)$$);
SELECT regress.outcome($$SELECT get_feature_variant('everyone', NULL)$$);
SELECT is_feature_enabled('everyone', NULL, 'prod');
SELECT is_feature_enabled('everyone', NULL, 'production', '[1, 2]');
SELECT is_feature_enabled('everyone', NULL, 'production', '"RW"');
SELECT is_feature_enabled('everyone', NULL, 'production', NULL) AS null_context_is_empty;
INSERT INTO feature_flags (key, name, rollout_strategy, conditions) VALUES ('bad', 'b', 'condition', '{"country": "RW"}');
INSERT INTO feature_flags (key, name, rollout_strategy, conditions) VALUES ('bad', 'b', 'condition', '[{"attribute": "x", "operator": "like", "value": 1}]');
INSERT INTO feature_flags (key, name, rollout_strategy, conditions) VALUES ('bad', 'b', 'condition', '[{"attribute": "v", "operator": "semver_gte", "value": "two"}]');
INSERT INTO feature_flags (key, name, variants) VALUES ('bad', 'b', '[{"name": "x"}]');
-- A weight past 10^12 (0.2.0 summed such weights in 64 bits and overflowed silently).
SELECT regress.outcome($$INSERT INTO feature_flags (key, name, variants) VALUES ('bad', 'b', '[{"name": "x", "weight": 1e12}, {"name": "y", "weight": 1.000001e12}]')$$) AS weight_past_limit;
-- A malformed rule that got past the constraint fails that flag's evaluations only.
ALTER TABLE feature_flags DROP CONSTRAINT feature_flags_rules_check;
INSERT INTO feature_flags (key, name, enabled, rollout_strategy, conditions) VALUES
  ('bad', 'b', true, 'condition', '[{"attribute": "x", "operator": "like", "value": 1}]');
SELECT is_feature_enabled('bad');
SELECT is_feature_enabled('everyone') AS others_unaffected;
DELETE FROM feature_flags WHERE key = 'bad';
ALTER TABLE feature_flags ADD CONSTRAINT feature_flags_rules_check CHECK (_check_flag_rules(conditions, variants));

-- Evaluation logging (easymo.flag_evaluation_log): off by default, `all` writes one row per
-- call, `sample` a share; in a read-only transaction nothing is written and nothing fails.
SELECT is_feature_enabled('everyone', '00000000-0000-0000-0000-00000000000a');
SELECT count(*) AS logged_while_off FROM feature_flag_evaluations;
SET easymo.flag_evaluation_log = 'all';
SELECT is_feature_enabled('everyone', '00000000-0000-0000-0000-00000000000a'),
       is_feature_enabled('no_such_flag', NULL, 'staging'),
       is_feature_enabled('kigali_vips', NULL, 'production', '{"city": "Kigali", "tier": "vip"}'),
       get_feature_variant('colour', '00000000-0000-0000-0000-00000000000a');
SELECT flag_key, flag_id IS NOT NULL AS known, user_id, environment, result, variant, reason, context
  FROM feature_flag_evaluations ORDER BY flag_key;
SELECT count(*) FILTER (WHERE is_feature_enabled('quarter', id)) AS evaluated FROM (SELECT id FROM users LIMIT 500) u;
SELECT count(*) AS logged FROM feature_flag_evaluations WHERE flag_key = 'quarter';
BEGIN READ ONLY;
SELECT count(*) FILTER (WHERE is_feature_enabled('quarter', id)) AS evaluated_read_only FROM (SELECT id FROM users LIMIT 500) u;
COMMIT;
SELECT count(*) AS still_logged FROM feature_flag_evaluations WHERE flag_key = 'quarter';
SET easymo.flag_evaluation_log = 'sample';
SET easymo.flag_evaluation_sample_rate = 0.1;
SELECT count(*) FILTER (WHERE is_feature_enabled('half_a', id)) > 0 AS evaluated FROM users;
SELECT count(*) BETWEEN 9000 AND 11000 AS sampled_about_10_percent FROM feature_flag_evaluations WHERE flag_key = 'half_a';
SET easymo.flag_evaluation_sample_rate = 0;
SELECT count(*) FILTER (WHERE is_feature_enabled('half_b', id)) > 0 AS evaluated FROM users;
SELECT count(*) AS sampled_at_0 FROM feature_flag_evaluations WHERE flag_key = 'half_b';
SET easymo.flag_evaluation_log = 'verbose';
RESET easymo.flag_evaluation_log;
RESET easymo.flag_evaluation_sample_rate;
SELECT key, evaluations_24h FROM feature_flag_overview
 WHERE key IN ('colour', 'everyone', 'kigali_vips', 'quarter', 'nobody') ORDER BY key;

-- A failed log write never fails an evaluation: a key longer than any flag key (0.2.0 failed
-- with 54000 from the log's index) is evaluated, not logged; so is an evaluation whose log row
-- cannot be written (the table locked out by a trigger that refuses every row: a WARNING).
SET easymo.flag_evaluation_log = 'all';
SELECT is_feature_enabled(repeat('k', 3000)) AS long_unknown_key;
SELECT count(*) AS logged_long_keys FROM feature_flag_evaluations WHERE length(flag_key) > 255;
CREATE FUNCTION pg_temp.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'log refused'; END $$;
CREATE TRIGGER refuse BEFORE INSERT ON feature_flag_evaluations FOR EACH ROW EXECUTE FUNCTION pg_temp.refuse();
SELECT is_feature_enabled('everyone', '00000000-0000-0000-0000-00000000000a') AS evaluated_despite_log_failure;
DROP TRIGGER refuse ON feature_flag_evaluations;
RESET easymo.flag_evaluation_log;

-- Every evaluation is counted, without a write in the caller's transaction (no xid), also
-- read-only (PostgREST runs STABLE helpers so; these are VOLATILE now, as they may log). The
-- session's counts show at once; _flush_stats() hands them to the flush worker, which stores
-- them in feature_flag_exposure_counters in a transaction of its own.
SELECT provolatile FROM pg_proc WHERE proname IN ('is_feature_enabled', 'get_feature_variant') ORDER BY proname;
SELECT _flush_stats() AS flushed_before;
DELETE FROM feature_flag_exposure_counters;
BEGIN;
SELECT count(*) FILTER (WHERE is_feature_enabled('quarter', id)) AS on_of_1000 FROM (SELECT id FROM users LIMIT 1000) u;
SELECT count(get_feature_variant('colour', id)) AS variants_of_300 FROM (SELECT id FROM users LIMIT 300) u;
SELECT txid_current_if_assigned() IS NULL AS no_xid_taken;
COMMIT;
BEGIN READ ONLY;
SELECT is_feature_enabled('everyone', '00000000-0000-0000-0000-00000000000a') AS read_only_evaluation;
SELECT is_feature_enabled('no_such_flag') AS unknown;
COMMIT;
SELECT count(*) AS stored_before_flush FROM feature_flag_exposure_counters;
CREATE TEMP TABLE exposures_before AS SELECT * FROM feature_flag_exposures();
SELECT flag_key, environment, enabled, sum(evaluations) AS evaluations, count(DISTINCT variant) AS variants
  FROM exposures_before WHERE flag_key IN ('quarter', 'colour', 'everyone') OR flag_key IS NULL
 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
SELECT _flush_stats() AS flushed;
SELECT count(*) > 0 AS stored_after_flush FROM feature_flag_exposure_counters;
-- The same totals, now from the table.
SELECT (SELECT array_agg(x ORDER BY x) FROM (SELECT (e.*)::text AS x FROM feature_flag_exposures() e) a)
     = (SELECT array_agg(x ORDER BY x) FROM (SELECT (e.*)::text AS x FROM exposures_before e) b) AS same_totals;
SELECT key, evaluations, evaluations_on FROM feature_flag_overview WHERE key IN ('quarter', 'everyone') ORDER BY key;

-- Who may call: authenticated (an end-user helper) and service_role, not anon. authenticated
-- cannot read feature_flags, yet evaluation works: it reads as the table's owner. An end user
-- evaluates for itself only: p_user_id defaults to request_user_id() and must equal it (42501;
-- 0.2.0 answered for any user id, revealing another user's targeting). service_role is free.
CREATE TEMP TABLE quarter_of_a AS SELECT is_feature_enabled('ramp', '00000000-0000-0000-0000-00000000000a') AS on_for_a;
GRANT SELECT ON quarter_of_a TO authenticated;
SET ROLE authenticated;
SET request.jwt.claims = '{"sub": "00000000-0000-0000-0000-00000000000a"}';
SELECT is_feature_enabled('beta', '00000000-0000-0000-0000-00000000000a') AS authenticated_can_evaluate,
       get_feature_variant('colour', '00000000-0000-0000-0000-00000000000a') IS NOT NULL AS and_get_variants;
SELECT is_feature_enabled('ramp') = (SELECT on_for_a FROM quarter_of_a) AS defaults_to_own_user;
SELECT regress.outcome($$SELECT is_feature_enabled('ramp', '00000000-0000-0000-0000-00000000000b')$$) AS other_user,
       regress.outcome($$SELECT get_feature_variant('colour', '00000000-0000-0000-0000-00000000000b')$$) AS other_variant;
\set VERBOSITY default
SELECT is_feature_enabled('ramp', '00000000-0000-0000-0000-00000000000b');
\set VERBOSITY terse
RESET request.jwt.claims;
SELECT regress.outcome($$SELECT is_feature_enabled('ramp', '00000000-0000-0000-0000-00000000000a')$$) AS without_claims;
SELECT is_feature_enabled('everyone') AS without_claims_no_user;
SELECT regress.outcome('SELECT 1 FROM feature_flags', false) AS authenticated_reads_flags;
SET ROLE service_role;
SELECT is_feature_enabled('ramp', '00000000-0000-0000-0000-00000000000b') IS NOT NULL AS service_role_any_user;
SET ROLE anon;
SELECT regress.outcome($$SELECT is_feature_enabled('everyone')$$, false) AS anon_evaluates;
RESET ROLE;
-- A search_path that shadows nothing still cannot redirect the cache load.
CREATE SCHEMA shadow;
CREATE TABLE shadow.feature_flags (LIKE feature_flags);
SET search_path = shadow, public;
UPDATE public.feature_flags SET enabled = true WHERE key = 'switched_off';
SELECT is_feature_enabled('switched_off') AS reads_the_extension_table;
RESET search_path;
DROP SCHEMA shadow CASCADE;

-- Service registry: upsert by name (the id is kept), heartbeats, staleness.
SELECT register_service('wallet-service', 'api', '1.0.0', 'http://wallet:8080', NULL, '["payments"]', '["db"]') AS first_id \gset
SELECT register_service('wallet-service', 'api', '1.1.0') = :'first_id' AS same_id_on_reregister;
SELECT service_name, version, status, capabilities, last_heartbeat_at IS NULL AS no_heartbeat_yet
  FROM service_registry;
SELECT service_heartbeat('wallet-service', 'healthy', '{"rps": 120}');
SELECT service_name, status, is_stale, seconds_since_heartbeat < 60 AS recent FROM service_health_overview;
UPDATE service_registry SET last_heartbeat_at = now() - interval '10 minutes';
SELECT service_name, is_stale FROM service_health_overview;
SET easymo.service_stale_seconds = 3600;
SELECT service_name, is_stale FROM service_health_overview;
RESET easymo.service_stale_seconds;
SELECT service_heartbeat('ghost-service');
SELECT service_heartbeat('wallet-service', 'sleeping');
SELECT service_heartbeat('wallet-service', 'healthy', '[]');
SELECT regress.outcome($$SELECT service_heartbeat(NULL)$$);
SELECT regress.outcome($$SELECT register_service('x', NULL, '1')$$);
SELECT register_service('x', 'api', '1', p_capabilities => '{}');
SELECT register_service('', 'api', '1');

-- service_role writes flags itself (the rules CHECK runs with its rights).
SET ROLE service_role;
SELECT regress.outcome($$INSERT INTO feature_flags (key, name, enabled, rollout_strategy, conditions) VALUES ('by_service', 'S', true, 'condition', '[{"attribute": "country", "operator": "eq", "value": "RW"}]')$$) AS service_role_inserts;
SELECT regress.outcome($$INSERT INTO feature_flags (key, name, conditions) VALUES ('bad_rules', 'B', '[{"attribute": "x", "operator": "bogus"}]')$$) AS bad_rules_refused;
RESET ROLE;
