-- Location: user locations and cached routes.

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
-- The nearby search's index (see src/location/mod.rs for the measurements behind the choice):
-- GiST on the point, INCLUDE-ing what the candidate scan reads, so that scan is index-only. An
-- expression index, so plain INSERT and UPDATE of latitude/longitude keep it right.
CREATE INDEX locations_geo_idx ON @extschema@.locations
    USING gist (point(longitude, latitude)) INCLUDE (latitude, longitude, id, location_type);
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
CREATE INDEX routes_origin_idx ON @extschema@.routes USING gist (point(origin_lng, origin_lat));
CREATE INDEX routes_expires_idx ON @extschema@.routes (expires_at);
COMMENT ON TABLE @extschema@.routes IS
    'Cached routing answers between an origin and a destination (distance, duration, polyline, path, traffic multiplier, provider) until expires_at. Use cache_route() and get_cached_route().';

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

SELECT @extschema@._secure_table('@extschema@.locations', 'user_id');
SELECT @extschema@._secure_table('@extschema@.routes');
SELECT @extschema@._secure_view('@extschema@.route_cache_stats');

-- The native search and route cache (src/location).
COMMENT ON FUNCTION @extschema@.find_nearby_locations(double precision, double precision, double precision, text, integer) IS
    'The locations within p_radius_meters (WGS84 geodesic, as PostGIS ST_DWithin/ST_Distance on geography) of (p_lat, p_lng), nearest first then by id, at most p_limit (1..1000), optionally of one type. Correct across the antimeridian and at the poles; radius up to 20,000 km. Runs with the caller''s rights: row level security applies.';
COMMENT ON FUNCTION @extschema@.cache_route(double precision, double precision, double precision, double precision, double precision, integer, text, jsonb, double precision, integer, text) IS
    'Stores a routing answer (distance, duration, polyline, path, traffic multiplier, provider) between an origin and a destination for p_ttl_seconds; returns its id.';
COMMENT ON FUNCTION @extschema@._cached_route_id(double precision, double precision, double precision, double precision, integer, double precision) IS
    'Internal: the id of the route get_cached_route returns.';

-- The route cache is shared (no user's data), so reading it needs no table privilege: the
-- function runs as the extension's owner, and pins its search_path.
CREATE FUNCTION @extschema@.get_cached_route(
    p_origin_lat double precision,
    p_origin_lng double precision,
    p_dest_lat double precision,
    p_dest_lng double precision,
    p_max_age_minutes integer DEFAULT 60,
    p_tolerance_meters double precision DEFAULT 25
) RETURNS SETOF @extschema@.routes
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.* FROM @extschema@.routes r
     WHERE r.id = @extschema@._cached_route_id(p_origin_lat, p_origin_lng, p_dest_lat, p_dest_lng,
                                               p_max_age_minutes, p_tolerance_meters)
$$;
COMMENT ON FUNCTION @extschema@.get_cached_route(double precision, double precision, double precision, double precision, integer, double precision) IS
    'The freshest unexpired cached route (at most p_max_age_minutes old) whose origin and destination are each within p_tolerance_meters (geodesic) of the ones asked for: at most one row.';
