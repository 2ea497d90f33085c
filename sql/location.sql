-- Location and cache: user locations, cached routes and the general key-value cache.

CREATE TABLE @extschema@.locations (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         uuid,
    location_type   text NOT NULL CHECK (location_type IN
                        ('current', 'home', 'work', 'favorite', 'pickup', 'dropoff')),
    -- BETWEEN is false for NaN, so these also refuse NaN and +-Infinity.
    latitude        double precision NOT NULL CHECK (latitude BETWEEN -90 AND 90),
    longitude       double precision NOT NULL CHECK (longitude BETWEEN -180 AND 180),
    accuracy_meters double precision CHECK (accuracy_meters >= 0 AND accuracy_meters < 'Infinity'),
    altitude_meters double precision CHECK (altitude_meters BETWEEN -11000 AND 100000),
    address         text,
    place_name      text,
    place_id        text,
    city            text,
    country         text,
    metadata        jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX locations_user_type_idx
    ON @extschema@.locations (user_id, location_type)
    WHERE user_id IS NOT NULL;
CREATE TRIGGER locations_touch BEFORE UPDATE ON @extschema@.locations
    FOR EACH ROW EXECUTE FUNCTION @extschema@._touch_updated_at();
COMMENT ON TABLE @extschema@.locations IS
    'Places of users and trips (current, home, work, favorite, pickup, dropoff) as WGS84 latitude/longitude with geocoding fields. Search with find_nearby_locations().';

CREATE TABLE @extschema@.routes (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    origin_lat         double precision NOT NULL CHECK (origin_lat BETWEEN -90 AND 90),
    origin_lng         double precision NOT NULL CHECK (origin_lng BETWEEN -180 AND 180),
    dest_lat           double precision NOT NULL CHECK (dest_lat BETWEEN -90 AND 90),
    dest_lng           double precision NOT NULL CHECK (dest_lng BETWEEN -180 AND 180),
    distance_meters    double precision NOT NULL CHECK (distance_meters >= 0 AND distance_meters < 'Infinity'),
    duration_seconds   integer NOT NULL CHECK (duration_seconds >= 0),
    polyline           text,
    -- The path as a GeoJSON-style array of [lng, lat] pairs; no PostGIS needed.
    path               jsonb CHECK (path IS NULL OR jsonb_typeof(path) = 'array'),
    traffic_multiplier double precision NOT NULL DEFAULT 1.0
                           CHECK (traffic_multiplier > 0 AND traffic_multiplier < 100),
    provider           text CHECK (length(provider) <= 64),
    expires_at         timestamptz NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX routes_origin_idx ON @extschema@.routes (origin_lat, origin_lng);
CREATE INDEX routes_expires_idx ON @extschema@.routes (expires_at);
COMMENT ON TABLE @extschema@.routes IS
    'Cached routing answers between an origin and a destination (distance, duration, polyline, path, traffic multiplier, provider) until expires_at. Use cache_route() and get_cached_route().';

CREATE TABLE @extschema@.cache_entries (
    key        text PRIMARY KEY CHECK (octet_length(key) BETWEEN 1 AND 512),
    value      jsonb NOT NULL,
    cache_type text NOT NULL DEFAULT 'general' CHECK (length(cache_type) BETWEEN 1 AND 64),
    tags       text[] NOT NULL DEFAULT '{}',
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 80);
CREATE INDEX cache_entries_tags_idx ON @extschema@.cache_entries USING gin (tags);
COMMENT ON TABLE @extschema@.cache_entries IS
    'General-purpose key-value cache: jsonb values with a TTL (expires_at), a cache type and tags for bulk invalidation. Use set_cache(), get_cache(), delete_cache(), invalidate_cache_by_tag().';

CREATE VIEW @extschema@.route_cache_stats WITH (security_invoker = true) AS
SELECT coalesce(provider, '(none)')                 AS provider,
       count(*)                                     AS routes,
       count(*) FILTER (WHERE expires_at > now())   AS active,
       count(*) FILTER (WHERE expires_at <= now())  AS expired,
       avg(distance_meters)                         AS avg_distance_meters,
       avg(duration_seconds)                        AS avg_duration_seconds,
       max(created_at)                              AS newest_at
  FROM @extschema@.routes
 GROUP BY coalesce(provider, '(none)');
COMMENT ON VIEW @extschema@.route_cache_stats IS
    'Cached routes per provider: total, still valid, expired, average distance and duration, newest entry.';

CREATE VIEW @extschema@.cache_stats WITH (security_invoker = true) AS
SELECT cache_type,
       count(*)                                        AS entries,
       count(*) FILTER (WHERE expires_at <= now())     AS expired,
       sum(pg_column_size(value))                      AS value_bytes,
       min(expires_at) FILTER (WHERE expires_at > now()) AS next_expiry_at
  FROM @extschema@.cache_entries
 GROUP BY cache_type;
COMMENT ON VIEW @extschema@.cache_stats IS
    'Cache entries per cache type: entries, expired (not yet swept), stored value bytes, next expiry.';

SELECT @extschema@._secure_table('@extschema@.locations', 'user_id');
SELECT @extschema@._secure_table('@extschema@.routes');
SELECT @extschema@._secure_table('@extschema@.cache_entries');
SELECT @extschema@._secure_view('@extschema@.route_cache_stats');
SELECT @extschema@._secure_view('@extschema@.cache_stats');
