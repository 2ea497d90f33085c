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
    UNIQUE (key, environment)
);
CREATE TRIGGER feature_flags_touch BEFORE UPDATE ON @extschema@.feature_flags
    FOR EACH ROW EXECUTE FUNCTION @extschema@._touch_updated_at();
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
    'Log of flag evaluations (who got which answer and why), written according to easymo.flag_evaluation_log; never written in read-only transactions or on a standby.';

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
       f.updated_at
  FROM @extschema@.feature_flags f;
COMMENT ON VIEW @extschema@.feature_flag_overview IS
    'Every feature flag with strategy, rollout, target/condition/variant counts and evaluations logged in the last 24 hours.';

SELECT @extschema@._secure_table('@extschema@.service_registry');
SELECT @extschema@._secure_table('@extschema@.feature_flags');
SELECT @extschema@._secure_table('@extschema@.feature_flag_evaluations', 'user_id');
SELECT @extschema@._secure_view('@extschema@.service_health_overview');
SELECT @extschema@._secure_view('@extschema@.feature_flag_overview');
