-- Analytics and configuration: product events (monthly partitions), service configuration and
-- its change history.

CREATE TABLE @extschema@.analytics_events (
    id         uuid NOT NULL DEFAULT gen_random_uuid(),
    event_name text NOT NULL CHECK (length(event_name) BETWEEN 1 AND 255),
    user_id    uuid,
    session_id text CHECK (length(session_id) <= 255),
    properties jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(properties) = 'object'),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
CREATE TABLE @extschema@.analytics_events_default PARTITION OF @extschema@.analytics_events DEFAULT;
CREATE INDEX analytics_events_name_created_idx
    ON @extschema@.analytics_events (event_name, created_at DESC);
CREATE INDEX analytics_events_user_created_idx
    ON @extschema@.analytics_events (user_id, created_at DESC)
    WHERE user_id IS NOT NULL;
CREATE INDEX analytics_events_session_idx
    ON @extschema@.analytics_events (session_id)
    WHERE session_id IS NOT NULL;
CREATE INDEX analytics_events_properties_idx
    ON @extschema@.analytics_events USING gin (properties jsonb_path_ops);
COMMENT ON TABLE @extschema@.analytics_events IS
    'Product analytics events (name, user, session, properties). Monthly partitions on created_at (UTC); write with track_event().';
COMMENT ON TABLE @extschema@.analytics_events_default IS
    'DEFAULT partition of analytics_events: catches rows whose month has no partition yet; ensure_partitions() moves them out.';

CREATE TABLE @extschema@.service_configurations (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    service_name text NOT NULL CHECK (length(service_name) BETWEEN 1 AND 255),
    environment  text NOT NULL CHECK (environment IN ('development', 'staging', 'production', 'all')),
    key          text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    value        jsonb NOT NULL,
    is_secret    boolean NOT NULL DEFAULT false,
    description  text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (service_name, environment, key)
);
CREATE TRIGGER service_configurations_touch BEFORE UPDATE ON @extschema@.service_configurations
    FOR EACH ROW EXECUTE FUNCTION @extschema@._touch_updated_at();
COMMENT ON TABLE @extschema@.service_configurations IS
    'Configuration values per service, environment (development, staging, production, all) and key; environment-specific values override `all`; secrets are shown only to service_role.';

CREATE TABLE @extschema@.service_configuration_history (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    configuration_id uuid NOT NULL,
    service_name     text NOT NULL,
    environment      text NOT NULL,
    key              text NOT NULL,
    operation        text NOT NULL CHECK (operation IN ('INSERT', 'UPDATE', 'DELETE')),
    old_value        jsonb,
    new_value        jsonb,
    is_secret        boolean NOT NULL,
    changed_by_role  text NOT NULL DEFAULT current_user,
    changed_by_user  uuid,
    changed_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX service_configuration_history_config_idx
    ON @extschema@.service_configuration_history (service_name, environment, key, changed_at DESC);
COMMENT ON TABLE @extschema@.service_configuration_history IS
    'Every insert, update and delete of service_configurations: old and new value, who (role and user) and when.';

CREATE VIEW @extschema@.user_engagement_metrics WITH (security_invoker = true) AS
SELECT user_id,
       count(*)                                                     AS events_30d,
       count(DISTINCT session_id)                                   AS sessions_30d,
       count(DISTINCT (created_at AT TIME ZONE 'UTC')::date)        AS active_days_30d,
       count(DISTINCT event_name)                                   AS distinct_events_30d,
       min(created_at)                                              AS first_seen_at,
       max(created_at)                                              AS last_seen_at
  FROM @extschema@.analytics_events
 WHERE user_id IS NOT NULL
   AND created_at > now() - interval '30 days'
 GROUP BY user_id;
COMMENT ON VIEW @extschema@.user_engagement_metrics IS
    'Per user over the last 30 days: events, sessions, active days (UTC), distinct event names, first and last seen.';

SELECT @extschema@._secure_table('@extschema@.analytics_events', 'user_id');
SELECT @extschema@._secure_table('@extschema@.service_configurations');
SELECT @extschema@._secure_table('@extschema@.service_configuration_history');
SELECT @extschema@._secure_view('@extschema@.user_engagement_metrics', p_authenticated => true);
