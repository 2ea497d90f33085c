-- Analytics and configuration: product events (monthly partitions), service configuration and
-- its change history.

CREATE TABLE @extschema@.analytics_events (
    id         uuid NOT NULL DEFAULT gen_random_uuid(),
    event_name text NOT NULL CHECK (length(event_name) BETWEEN 1 AND 255),
    user_id    uuid,
    session_id text CHECK (length(session_id) <= 255),
    properties jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(properties) = 'object'),
    created_at timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE (created_at);
CREATE TABLE @extschema@.analytics_events_default PARTITION OF @extschema@.analytics_events DEFAULT;
-- The primary key and indexes belong to each partition, not to the parent (sql/operations.sql
-- says why): declared here on the DEFAULT partition, copied to every month by ensure_partitions().
ALTER TABLE @extschema@.analytics_events_default ADD PRIMARY KEY (id, created_at);
CREATE INDEX ON @extschema@.analytics_events_default (event_name, created_at DESC);
CREATE INDEX ON @extschema@.analytics_events_default (user_id, created_at DESC)
    WHERE user_id IS NOT NULL;
CREATE INDEX ON @extschema@.analytics_events_default (session_id)
    WHERE session_id IS NOT NULL;
CREATE INDEX ON @extschema@.analytics_events_default USING gin (properties jsonb_path_ops);
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

-- ---------------------------------------------------------------------------------------------
-- Helpers (0.2.0). Everything below is also in sql/upgrades/easymo--0.1.0--0.2.0.sql.

CREATE FUNCTION @extschema@.track_event(
    p_event_name text,
    p_user_id uuid DEFAULT NULL,
    p_session_id text DEFAULT NULL,
    p_properties jsonb DEFAULT '{}'
) RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    event_id uuid;
BEGIN
    p_event_name := @extschema@._check_text('p_event_name', p_event_name, 255);
    p_session_id := @extschema@._check_text('p_session_id', p_session_id, 255, false);
    p_properties := @extschema@._check_json('p_properties', p_properties, 'object');
    INSERT INTO @extschema@.analytics_events (event_name, user_id, session_id, properties)
    VALUES (p_event_name, p_user_id, p_session_id, coalesce(p_properties, '{}'))
    RETURNING id INTO event_id;
    RETURN event_id;
END
$$;
COMMENT ON FUNCTION @extschema@.track_event(text, uuid, text, jsonb) IS
    'Records one product analytics event (name, user, session, properties object); returns its id. Counted per day in daily_metrics after refresh_daily_metrics().';

-- Per UTC day and event name. The unique index is what lets a refresh run CONCURRENTLY: readers
-- keep the previous contents until the new ones are committed, instead of waiting.
CREATE MATERIALIZED VIEW @extschema@.daily_metrics AS
SELECT (created_at AT TIME ZONE 'UTC')::date AS day,
       event_name,
       count(*)                   AS events,
       count(DISTINCT user_id)    AS users,
       count(DISTINCT session_id) AS sessions
  FROM @extschema@.analytics_events
 GROUP BY 1, 2;
CREATE UNIQUE INDEX daily_metrics_day_event_idx ON @extschema@.daily_metrics (day, event_name);
COMMENT ON MATERIALIZED VIEW @extschema@.daily_metrics IS
    'Analytics events per UTC day and event name: events, distinct users, distinct sessions. As of the last refresh_daily_metrics().';
SELECT @extschema@._secure_view('@extschema@.daily_metrics');

-- The owner refreshes (a materialized view can only be refreshed by its owner), whoever calls.
CREATE FUNCTION @extschema@.refresh_daily_metrics() RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    REFRESH MATERIALIZED VIEW CONCURRENTLY @extschema@.daily_metrics;
END
$$;
COMMENT ON FUNCTION @extschema@.refresh_daily_metrics() IS
    'Recomputes daily_metrics from analytics_events without blocking its readers (REFRESH ... CONCURRENTLY).';

-- Secrets are shown to service_role (and the roles that are members of it, superusers included),
-- masked for every other role. The caller, seen from inside a SECURITY DEFINER function (where
-- current_user is the owner), is the role set with SET ROLE (as PostgREST does), else the
-- session's login role.
CREATE FUNCTION @extschema@._sees_secrets() RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_has_role(CASE WHEN current_setting('role') IN ('none', '') THEN session_user::text
                            ELSE current_setting('role') END,
                       'service_role', 'MEMBER')
$$;
COMMENT ON FUNCTION @extschema@._sees_secrets() IS
    'Internal: whether the calling role (SET ROLE, else the login role; also inside SECURITY DEFINER functions) may see secret configuration values: a member of service_role.';

-- Every change that matters (value, secrecy, identity) lands in the history with who made it;
-- an update that changes nothing else (updated_at only) does not. A row that already has its
-- INSERT record is not recorded again: that is pg_restore loading a dump (the extension's
-- trigger exists before the data arrives, and pg_dump loads service_configuration_history, by
-- name, before service_configurations), which must give back the history as it was.
CREATE FUNCTION @extschema@._service_configuration_history() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r @extschema@.service_configurations;
BEGIN
    r := CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
    IF TG_OP = 'INSERT' AND EXISTS (
        SELECT 1 FROM @extschema@.service_configuration_history h
         WHERE h.service_name = r.service_name AND h.environment = r.environment AND h.key = r.key
           AND h.configuration_id = r.id AND h.operation = 'INSERT') THEN
        RETURN NULL;
    END IF;
    INSERT INTO @extschema@.service_configuration_history
        (configuration_id, service_name, environment, key, operation, old_value, new_value, is_secret,
         changed_by_role, changed_by_user)
    VALUES (r.id, r.service_name, r.environment, r.key, TG_OP,
            CASE WHEN TG_OP <> 'INSERT' THEN OLD.value END,
            CASE WHEN TG_OP <> 'DELETE' THEN NEW.value END,
            r.is_secret OR (TG_OP = 'UPDATE' AND OLD.is_secret),
            current_user, @extschema@.request_user_id());
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION @extschema@._service_configuration_history() IS
    'Internal trigger: writes each insert, update and delete of service_configurations to service_configuration_history.';
CREATE TRIGGER service_configurations_history
    AFTER INSERT OR DELETE ON @extschema@.service_configurations
    FOR EACH ROW EXECUTE FUNCTION @extschema@._service_configuration_history();
CREATE TRIGGER service_configurations_history_update
    AFTER UPDATE ON @extschema@.service_configurations
    FOR EACH ROW
    WHEN ((OLD.service_name, OLD.environment, OLD.key, OLD.value, OLD.is_secret)
          IS DISTINCT FROM (NEW.service_name, NEW.environment, NEW.key, NEW.value, NEW.is_secret))
    EXECUTE FUNCTION @extschema@._service_configuration_history();

CREATE FUNCTION @extschema@.set_service_config(
    p_service_name text,
    p_environment text,
    p_key text,
    p_value jsonb,
    p_is_secret boolean DEFAULT false
) RETURNS uuid
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    config_id uuid;
BEGIN
    p_service_name := @extschema@._check_text('p_service_name', p_service_name, 255);
    p_environment := @extschema@._check_choice('p_environment', p_environment, ARRAY['development', 'staging', 'production', 'all']);
    p_key := @extschema@._check_text('p_key', p_key, 255);
    p_value := @extschema@._check_not_null('p_value', p_value);
    p_is_secret := @extschema@._check_not_null('p_is_secret', p_is_secret);
    -- Setting the value it already has changes nothing and writes no history.
    INSERT INTO @extschema@.service_configurations AS c (service_name, environment, key, value, is_secret)
    VALUES (p_service_name, p_environment, p_key, p_value, p_is_secret)
    ON CONFLICT (service_name, environment, key) DO UPDATE
       SET value = EXCLUDED.value, is_secret = EXCLUDED.is_secret
     WHERE (c.value, c.is_secret) IS DISTINCT FROM (EXCLUDED.value, EXCLUDED.is_secret)
    RETURNING c.id INTO config_id;
    IF config_id IS NULL THEN
        SELECT id INTO config_id FROM @extschema@.service_configurations
         WHERE service_name = p_service_name AND environment = p_environment AND key = p_key;
    END IF;
    RETURN config_id;
END
$$;
COMMENT ON FUNCTION @extschema@.set_service_config(text, text, text, jsonb, boolean) IS
    'Sets one configuration value of a service in an environment (development, staging, production, or all: the default for every environment); returns its id. Each change is recorded in service_configuration_history.';

-- One object of the service's keys for an environment: the `all` values, overridden by the
-- environment's own. SECURITY DEFINER so a role given only EXECUTE gets the masked view.
CREATE FUNCTION @extschema@.get_service_config(p_service_name text, p_environment text) RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    show_secrets boolean := @extschema@._sees_secrets();
    config jsonb;
BEGIN
    p_service_name := @extschema@._check_text('p_service_name', p_service_name, 255);
    p_environment := @extschema@._check_choice('p_environment', p_environment, ARRAY['development', 'staging', 'production', 'all']);
    SELECT coalesce(jsonb_object_agg(key, CASE WHEN is_secret AND NOT show_secrets THEN '"********"'::jsonb ELSE value END), '{}')
      INTO config
      FROM (SELECT DISTINCT ON (key) key, value, is_secret
              FROM @extschema@.service_configurations
             WHERE service_name = p_service_name AND environment IN (p_environment, 'all')
             ORDER BY key, environment = 'all') c;
    RETURN config;
END
$$;
COMMENT ON FUNCTION @extschema@.get_service_config(text, text) IS
    'The configuration of a service in an environment as one JSON object: environment-specific values override `all` ones; secret values are shown to service_role and masked ("********") for every other role. {} when there is none.';

CREATE FUNCTION @extschema@.get_service_config_history(
    p_service_name text,
    p_environment text DEFAULT NULL,
    p_key text DEFAULT NULL
) RETURNS SETOF @extschema@.service_configuration_history
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    show_secrets boolean := @extschema@._sees_secrets();
BEGIN
    p_service_name := @extschema@._check_text('p_service_name', p_service_name, 255);
    IF p_environment IS NOT NULL THEN
        p_environment := @extschema@._check_choice('p_environment', p_environment, ARRAY['development', 'staging', 'production', 'all']);
    END IF;
    RETURN QUERY
    SELECT h.id, h.configuration_id, h.service_name, h.environment, h.key, h.operation,
           CASE WHEN h.is_secret AND NOT show_secrets AND h.old_value IS NOT NULL THEN '"********"'::jsonb ELSE h.old_value END,
           CASE WHEN h.is_secret AND NOT show_secrets AND h.new_value IS NOT NULL THEN '"********"'::jsonb ELSE h.new_value END,
           h.is_secret, h.changed_by_role, h.changed_by_user, h.changed_at
      FROM @extschema@.service_configuration_history h
     WHERE h.service_name = p_service_name
       AND (p_environment IS NULL OR h.environment = p_environment)
       AND (p_key IS NULL OR h.key = p_key)
     ORDER BY h.changed_at, h.id;
END
$$;
COMMENT ON FUNCTION @extschema@.get_service_config_history(text, text, text) IS
    'The changes of a service''s configuration, oldest first (optionally one environment, one key): old and new value, who and when; values of secrets masked ("********") for every role but service_role.';
