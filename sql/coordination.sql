-- Coordination: the service registry and feature flags.

CREATE TABLE @extschema@.service_registry (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    service_name      text NOT NULL UNIQUE CHECK (length(service_name) BETWEEN 1 AND 255),
    service_type      text NOT NULL CHECK (length(service_type) BETWEEN 1 AND 64),
    version           text NOT NULL CHECK (length(version) BETWEEN 1 AND 64),
    endpoint          text CHECK (length(endpoint) <= 2048),
    health_check_url  text CHECK (length(health_check_url) <= 2048),
    status            text NOT NULL DEFAULT 'starting'
                          CHECK (status IN ('healthy', 'unhealthy', 'starting', 'stopping', 'stopped')),
    capabilities      jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(capabilities) = 'array'),
    dependencies      jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(dependencies) = 'array'),
    metrics           jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metrics) = 'object'),
    metadata          jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    last_heartbeat_at timestamptz,
    registered_at     timestamptz NOT NULL DEFAULT now(),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX service_registry_status_idx ON @extschema@.service_registry (status, last_heartbeat_at);
CREATE TRIGGER service_registry_touch BEFORE UPDATE ON @extschema@.service_registry
    FOR EACH ROW EXECUTE FUNCTION @extschema@._touch_updated_at();
COMMENT ON TABLE @extschema@.service_registry IS
    'Service discovery and health: one row per service name with type, version, endpoints, capabilities, dependencies, status and last heartbeat.';

CREATE TABLE @extschema@.feature_flags (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    key                text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    name               text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    description        text,
    enabled            boolean NOT NULL DEFAULT false,
    rollout_strategy   text NOT NULL DEFAULT 'all'
                           CHECK (rollout_strategy IN ('all', 'none', 'percentage', 'user_list', 'condition')),
    -- Two decimals: buckets are 0.01 % wide (bucket < percentage * 100).
    rollout_percentage numeric(5, 2) NOT NULL DEFAULT 0
                           CHECK (rollout_percentage BETWEEN 0 AND 100),
    target_users       uuid[] NOT NULL DEFAULT '{}',
    conditions         jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(conditions) = 'array'),
    variants           jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(variants) = 'array'),
    environment        text NOT NULL DEFAULT 'all'
                           CHECK (environment IN ('development', 'staging', 'production', 'all')),
    metadata           jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    -- A key may carry one row for `all` and one per specific environment; the specific row wins.
    UNIQUE (key, environment),
    -- Rules that cannot be evaluated are refused when written (22023 saying what is wrong).
    CONSTRAINT feature_flags_rules_check CHECK (@extschema@._check_flag_rules(conditions, variants))
);
CREATE TRIGGER feature_flags_touch BEFORE UPDATE ON @extschema@.feature_flags
    FOR EACH ROW EXECUTE FUNCTION @extschema@._touch_updated_at();
-- Every session caches flag definitions; a change invalidates the caches when it commits.
CREATE TRIGGER feature_flags_invalidate AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.feature_flags
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._feature_flags_changed();
COMMENT ON TABLE @extschema@.feature_flags IS
    'Feature flags: strategy all, none, percentage (0.01 % steps), user_list or condition; per environment (development, staging, production, all), with weighted variants. Evaluate with is_feature_enabled() and get_feature_variant().';

CREATE TABLE @extschema@.feature_flag_evaluations (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    flag_key     text NOT NULL,
    flag_id      uuid,
    user_id      uuid,
    environment  text NOT NULL,
    result       boolean NOT NULL,
    variant      text,
    reason       text,
    context      jsonb,
    evaluated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX feature_flag_evaluations_flag_idx
    ON @extschema@.feature_flag_evaluations (flag_key, evaluated_at DESC);
CREATE INDEX feature_flag_evaluations_user_idx
    ON @extschema@.feature_flag_evaluations (user_id, evaluated_at DESC)
    WHERE user_id IS NOT NULL;
COMMENT ON TABLE @extschema@.feature_flag_evaluations IS
    'Log of flag evaluations (who got which answer and why), written according to easymo.flag_evaluation_log where a write is allowed (not in read-only transactions, on a standby or in parallel queries); a failed log write never fails the evaluation.';

-- Every evaluation is counted, per flag key, requested environment, variant ('' for none) and
-- answer: Unleash's yes/no and variant exposure counts. Sessions count in memory and hand their
-- counts to shared memory (easymo preloaded) or to a background worker that adds them here in
-- a transaction of its own (src/stats.rs): no evaluation writes a row, so read-only callers and
-- standbys are counted too. flag_key '' counts keys that name no flag.
CREATE TABLE @extschema@.feature_flag_exposure_counters (
    flag_key    text NOT NULL,
    environment text NOT NULL,
    variant     text NOT NULL DEFAULT '',
    enabled     boolean NOT NULL,
    evaluations bigint NOT NULL DEFAULT 0 CHECK (evaluations >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (flag_key, environment, variant, enabled)
);
COMMENT ON TABLE @extschema@.feature_flag_exposure_counters IS
    'Feature flag evaluations per flag key, environment, variant ('''' = none) and answer, added by easymo''s flush worker when easymo is not preloaded (flag_key '''' = keys that name no flag). Read them through feature_flag_exposures().';

CREATE VIEW @extschema@.service_health_overview WITH (security_invoker = true) AS
SELECT s.service_name,
       s.service_type,
       s.version,
       s.status,
       s.endpoint,
       s.last_heartbeat_at,
       extract(epoch FROM now() - s.last_heartbeat_at)::bigint AS seconds_since_heartbeat,
       -- Stale: no heartbeat within easymo.service_stale_seconds (default 120 s).
       (s.last_heartbeat_at IS NULL
        OR s.last_heartbeat_at < now() - make_interval(secs => coalesce(
               nullif(current_setting('easymo.service_stale_seconds', true), '')::double precision,
               120))) AS is_stale,
       jsonb_array_length(s.capabilities)  AS capability_count,
       jsonb_array_length(s.dependencies)  AS dependency_count,
       s.registered_at
  FROM @extschema@.service_registry s;
COMMENT ON VIEW @extschema@.service_health_overview IS
    'Every registered service with status, last heartbeat, seconds since it and is_stale (no heartbeat within easymo.service_stale_seconds, default 120).';

CREATE VIEW @extschema@.feature_flag_overview WITH (security_invoker = true) AS
SELECT f.key,
       f.environment,
       f.name,
       f.enabled,
       f.rollout_strategy,
       f.rollout_percentage,
       cardinality(f.target_users)      AS target_user_count,
       jsonb_array_length(f.conditions) AS condition_count,
       jsonb_array_length(f.variants)   AS variant_count,
       (SELECT count(*)
          FROM @extschema@.feature_flag_evaluations e
         WHERE e.flag_key = f.key
           AND e.evaluated_at > now() - interval '24 hours') AS evaluations_24h,
       f.updated_at,
       coalesce(x.evaluations, 0)    AS evaluations,
       coalesce(x.evaluations_on, 0) AS evaluations_on
  FROM @extschema@.feature_flags f
  LEFT JOIN (SELECT e.flag_key, sum(e.evaluations)::bigint AS evaluations,
                    (sum(e.evaluations) FILTER (WHERE e.enabled))::bigint AS evaluations_on
               FROM @extschema@.feature_flag_exposures() e
              GROUP BY e.flag_key) x ON x.flag_key = f.key;
COMMENT ON VIEW @extschema@.feature_flag_overview IS
    'Every feature flag with strategy, rollout, target/condition/variant counts, evaluations logged in the last 24 hours, and every evaluation counted since counting began (all environments) and how many of them answered on.';

SELECT @extschema@._secure_table('@extschema@.service_registry');
SELECT @extschema@._secure_table('@extschema@.feature_flags');
SELECT @extschema@._secure_table('@extschema@.feature_flag_evaluations', 'user_id');
SELECT @extschema@._secure_table('@extschema@.feature_flag_exposure_counters');
SELECT @extschema@._secure_view('@extschema@.service_health_overview');
SELECT @extschema@._secure_view('@extschema@.feature_flag_overview');

-- Evaluation (Rust, src/coordination).
COMMENT ON FUNCTION @extschema@.is_feature_enabled(text, uuid, text, jsonb) IS
    'Whether flag p_flag_key is on for p_user_id in p_environment (development, staging, production): strategies all, none, user_list, percentage (xxh3_64(key:user) mod 10000 < percentage*100) and condition (every rule holds for p_context). Unknown or disabled flags are off. Evaluated from a per-session cache that a committed change to feature_flags invalidates. Callers other than service_role evaluate for themselves only: p_user_id defaults to and must equal request_user_id() (42501). Every evaluation is counted (feature_flag_exposures); VOLATILE because it writes the evaluation log where easymo.flag_evaluation_log asks for it and a write is allowed.';
COMMENT ON FUNCTION @extschema@.get_feature_variant(text, uuid, text) IS
    'The weighted variant of p_flag_key for p_user_id (bucketed independently of the on/off decision), or NULL when the flag is off for that user or has no variants. Callers other than service_role ask for themselves only (42501). Counted and logged as is_feature_enabled.';
COMMENT ON FUNCTION @extschema@.feature_flag_exposures() IS
    'Every flag evaluation counted since counting began, per flag key (NULL: keys that name no flag), requested environment, variant (NULL: none) and answer: shared memory when easymo is preloaded, plus feature_flag_exposure_counters, plus the calling session''s counts not yet handed on.';
COMMENT ON FUNCTION @extschema@._check_flag_rules(jsonb, jsonb) IS
    'Internal: CHECK constraint of feature_flags; raises 22023 unless conditions and variants are well-formed.';
COMMENT ON FUNCTION @extschema@._feature_flags_changed() IS
    'Internal trigger: invalidates every session''s flag cache when a change to feature_flags commits.';

-- Service registry.
CREATE FUNCTION @extschema@.register_service(
    p_service_name text,
    p_service_type text,
    p_version text,
    p_endpoint text DEFAULT NULL,
    p_health_check_url text DEFAULT NULL,
    p_capabilities jsonb DEFAULT '[]',
    p_dependencies jsonb DEFAULT '[]'
) RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    service_id uuid;
BEGIN
    p_service_name := @extschema@._check_text('p_service_name', p_service_name, 255);
    p_service_type := @extschema@._check_text('p_service_type', p_service_type, 64);
    p_version := @extschema@._check_text('p_version', p_version, 64);
    -- (An empty endpoint is allowed, as the table allows it: only the length is bounded.)
    IF length(p_endpoint) > 2048 OR length(p_health_check_url) > 2048 THEN
        RAISE EXCEPTION 'p_endpoint and p_health_check_url: at most 2048 characters' USING ERRCODE = '22023';
    END IF;
    p_capabilities := @extschema@._check_json('p_capabilities', p_capabilities, 'array');
    p_dependencies := @extschema@._check_json('p_dependencies', p_dependencies, 'array');
    -- Upsert by name: a restarted service re-registers and keeps its id.
    INSERT INTO @extschema@.service_registry AS s
           (service_name, service_type, version, endpoint, health_check_url, capabilities, dependencies, status)
    VALUES (p_service_name, p_service_type, p_version, p_endpoint, p_health_check_url,
            coalesce(p_capabilities, '[]'), coalesce(p_dependencies, '[]'), 'starting')
    ON CONFLICT (service_name) DO UPDATE
       SET service_type = excluded.service_type,
           version = excluded.version,
           endpoint = excluded.endpoint,
           health_check_url = excluded.health_check_url,
           capabilities = excluded.capabilities,
           dependencies = excluded.dependencies,
           status = 'starting',
           registered_at = now()
    RETURNING s.id INTO service_id;
    RETURN service_id;
END
$$;
COMMENT ON FUNCTION @extschema@.register_service(text, text, text, text, text, jsonb, jsonb) IS
    'Registers a service (upsert by name; a re-registering service keeps its id) with status starting; returns its id.';

CREATE FUNCTION @extschema@.service_heartbeat(
    p_service_name text,
    p_status text DEFAULT 'healthy',
    p_metrics jsonb DEFAULT '{}'
) RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    p_service_name := @extschema@._check_not_null('p_service_name', p_service_name);
    p_status := @extschema@._check_choice('p_status', p_status, ARRAY['healthy', 'unhealthy', 'starting', 'stopping', 'stopped']);
    p_metrics := @extschema@._check_json('p_metrics', p_metrics, 'object');
    UPDATE @extschema@.service_registry
       SET status = p_status, metrics = coalesce(p_metrics, '{}'), last_heartbeat_at = now()
     WHERE service_name = p_service_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'service % is not registered', quote_literal(p_service_name) USING ERRCODE = 'P0002';
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION @extschema@.service_heartbeat(text, text, jsonb) IS
    'Records a heartbeat: status (healthy, unhealthy, starting, stopping, stopped), metrics and time. Unknown service: P0002.';
