-- Location: the native nearby search (WGS84 geodesics, no PostGIS) and the route cache.
\set VERBOSITY terse
-- NOTICEs name dates (months moved by ensure_partitions): keep them out of the expected output.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS easymo CASCADE;
CREATE EXTENSION easymo;

\set a '''00000000-0000-0000-0000-00000000000a'''
\set b '''00000000-0000-0000-0000-00000000000b'''

-- Named places; ids fixed so the order (distance, then id) is visible.
INSERT INTO locations (id, user_id, location_type, latitude, longitude, place_name, city, country) VALUES
  ('00000000-0000-0000-0001-000000000001', :a, 'pickup',  0, 0, 'origin', 'Null Island', 'XX'),
  ('00000000-0000-0000-0001-000000000002', :a, 'pickup',  0.001, 0, 'north 0.001', NULL, NULL),
  ('00000000-0000-0000-0001-000000000003', :a, 'dropoff', 0, 0.001, 'east 0.001', NULL, NULL),
  ('00000000-0000-0000-0001-000000000004', :b, 'pickup',  0, -0.001, 'west 0.001', NULL, NULL),
  ('00000000-0000-0000-0001-000000000005', :b, 'home',    0.0000081, 0, 'about 0.9 m north', NULL, NULL),
  ('00000000-0000-0000-0001-000000000006', :b, 'home',    0.0000099, 0, 'about 1.1 m north', NULL, NULL),
  ('00000000-0000-0000-0002-000000000001', :a, 'pickup',  10, 179.999, 'east of the antimeridian', NULL, NULL),
  ('00000000-0000-0000-0002-000000000002', :a, 'pickup',  10, -179.999, 'west of the antimeridian', NULL, NULL),
  ('00000000-0000-0000-0003-000000000001', :a, 'work',    89.9995, 0, 'near the pole, lng 0', NULL, NULL),
  ('00000000-0000-0000-0003-000000000002', :a, 'work',    89.9995, 180, 'near the pole, lng 180', NULL, NULL),
  ('00000000-0000-0000-0003-000000000003', :a, 'work',    89.9995, -90, 'near the pole, lng -90', NULL, NULL),
  ('00000000-0000-0000-0003-000000000004', :b, 'work',    -90, 0, 'south pole', NULL, NULL),
  ('00000000-0000-0000-0004-000000000001', :b, 'current', -1.9441, 30.0619, 'Kigali', 'Kigali', 'RW');
-- One degree of latitude along the equator's meridian: 110,574.389 m (WGS84), the geodesic the
-- contract names (PostGIS's ST_Distance on geography gives the same).
INSERT INTO locations (id, location_type, latitude, longitude, place_name)
VALUES ('00000000-0000-0000-0005-000000000001', 'favorite', 1, 0, 'one degree north');

-- Around (0, 0): nearest first, ties (east and west, equally far) by id, distances in metres.
SELECT place_name, round(distance_meters::numeric, 3) AS metres
  FROM find_nearby_locations(0, 0, 200);
SELECT place_name, round(distance_meters::numeric, 3) AS metres
  FROM find_nearby_locations(0, 0, 200000, 'favorite');
-- LIMIT, a type filter, and every returned column.
SELECT * FROM find_nearby_locations(0, 0, 200, 'pickup', 2);
-- 1 m radius: 0.9 m in, 1.1 m out (plus the centre itself).
SELECT place_name, round(distance_meters::numeric, 3) AS metres
  FROM find_nearby_locations(0, 0, 1);
-- Across the antimeridian: a circle around lng 179.99 finds the point at -179.999.
SELECT place_name, round(distance_meters::numeric, 3) AS metres
  FROM find_nearby_locations(10, 179.9995, 500);
SELECT place_name, round(distance_meters::numeric, 3) AS metres
  FROM find_nearby_locations(10, -179.9995, 500);
-- At the pole every longitude is close: the three points 55.7 m from the North Pole.
SELECT place_name, round(distance_meters::numeric, 3) AS metres
  FROM find_nearby_locations(90, 0, 100);
SELECT place_name, round(distance_meters::numeric, 3) AS metres
  FROM find_nearby_locations(89.9995, 90, 200);
SELECT place_name, round(distance_meters::numeric, 3) AS metres
  FROM find_nearby_locations(-89.9999, 123, 50);
-- 20,000 km reaches every point on Earth but the ones within ~3 km of the antipode.
SELECT count(*) AS found_at_20000_km FROM find_nearby_locations(0, 0, 20000000, NULL, 1000);
SELECT count(*) AS locations FROM locations;
-- The far side of the world: Kigali is 20,004 km from its antipode, beyond the largest radius
-- (20,000 km), so nothing; 1 degree closer (19,926 km), it is found.
SELECT place_name, round(distance_meters::numeric, 0) AS metres
  FROM find_nearby_locations(1.9441, 30.0619 - 180, 20000000, 'current');
SELECT place_name, round(distance_meters::numeric, 0) AS metres
  FROM find_nearby_locations(1.9441, 30.0619 - 179, 20000000, 'current');

-- The rows come back as one set (materialize mode), wherever a set may be used: in the target
-- list (whole rows and a column), once per outer row (LATERAL, each centre its own rows), with
-- ORDINALITY, in a scrollable cursor read backwards, in a PL/pgSQL loop, and empty.
SELECT find_nearby_locations(0, 0, 120, 'pickup');
SELECT (find_nearby_locations(0, 0, 120)).place_name;
SELECT c.name, f.place_name
  FROM (VALUES ('origin', 0.0, 0.0), ('antimeridian', 10.0, 179.9995), ('nowhere', -45.0, -45.0)) AS c(name, lat, lng)
  LEFT JOIN LATERAL find_nearby_locations(c.lat, c.lng, 500, NULL, 2) f ON true
 ORDER BY c.name, f.distance_meters, f.id;
SELECT n, place_name FROM find_nearby_locations(0, 0, 200, 'pickup') WITH ORDINALITY AS f(id, u, t, la, lo, d, a, place_name, ci, co, n);
BEGIN;
DECLARE nearby SCROLL CURSOR FOR SELECT place_name FROM find_nearby_locations(0, 0, 200);
FETCH LAST FROM nearby;
FETCH BACKWARD 2 FROM nearby;
FETCH ABSOLUTE 1 FROM nearby;
COMMIT;
DO $$
DECLARE r record; names text := '';
BEGIN
  FOR r IN SELECT * FROM find_nearby_locations(0, 0, 200, 'pickup') LOOP
    names := names || r.place_name || '; ';
  END LOOP;
  RAISE WARNING 'plpgsql loop: %', names;
END $$;
SELECT count(*) AS nothing_there FROM find_nearby_locations(-45, -45, 10);

-- Plain INSERT, UPDATE and DELETE are seen by the next search (the index is an expression
-- index on the columns themselves).
INSERT INTO locations (id, location_type, latitude, longitude, place_name)
VALUES ('00000000-0000-0000-0006-000000000001', 'pickup', -1.9450, 30.0620, 'new pickup');
SELECT place_name, round(distance_meters::numeric, 3) AS metres FROM find_nearby_locations(-1.9441, 30.0619, 200);
UPDATE locations SET latitude = 50, longitude = 8 WHERE place_name = 'new pickup';
SELECT place_name, round(distance_meters::numeric, 3) AS metres FROM find_nearby_locations(-1.9441, 30.0619, 200);
SELECT place_name, round(distance_meters::numeric, 3) AS metres FROM find_nearby_locations(50, 8, 10);
DELETE FROM locations WHERE place_name = 'new pickup';
SELECT count(*) AS after_delete FROM find_nearby_locations(50, 8, 10);

-- Row level security applies: an end user finds its own places only.
SET ROLE authenticated;
SET request.jwt.claims = '{"sub": "00000000-0000-0000-0000-00000000000b"}';
SELECT place_name, round(distance_meters::numeric, 3) AS metres FROM find_nearby_locations(0, 0, 200);
SET ROLE anon;
SELECT regress.outcome($$SELECT * FROM find_nearby_locations(0, 0)$$, false) AS anon;
RESET ROLE;
RESET request.jwt.claims;

-- Two ways to the same answers. A role no row-level security applies to (here the superuser)
-- reads the GiST index natively; a role under a policy reads by statements. Over 3,000 more
-- points (a city and the globe) and 300 searches (radii 50 m to 2,000 km, all types and one,
-- limits 1 to 50), the rows, their order and distances are the same. The statements read the
-- other columns by primary key, the native read by row: the key index's scans tell which ran.
CREATE ROLE regress_locations_reader NOLOGIN;
GRANT SELECT ON locations TO regress_locations_reader;
GRANT EXECUTE ON FUNCTION find_nearby_locations TO regress_locations_reader;
CREATE POLICY regress_reads_all ON locations FOR SELECT TO regress_locations_reader USING (true);
SELECT setseed(0.25);
INSERT INTO locations (location_type, latitude, longitude, place_name)
SELECT (ARRAY['current','home','work','favorite','pickup','dropoff'])[1 + floor(random() * 6)::int],
       -1.95 + (random() - 0.5) * 0.4, 30.06 + (random() - 0.5) * 0.4, 'city ' || g
  FROM generate_series(1, 2000) g;
INSERT INTO locations (location_type, latitude, longitude, place_name)
SELECT (ARRAY['current','home','work','favorite','pickup','dropoff'])[1 + floor(random() * 6)::int],
       degrees(asin(2 * random() - 1)), 360 * random() - 180, 'globe ' || g
  FROM generate_series(1, 1000) g;
CREATE TABLE regress_searches AS
SELECT g AS i,
       CASE WHEN g % 3 = 0 THEN degrees(asin(2 * random() - 1)) ELSE -1.95 + (random() - 0.5) * 0.5 END AS lat,
       CASE WHEN g % 3 = 0 THEN 360 * random() - 180 ELSE 30.06 + (random() - 0.5) * 0.5 END AS lng,
       (ARRAY[50, 1000, 5000, 25000, 2000000])[1 + g % 5]::float8 AS radius,
       CASE WHEN g % 2 = 0 THEN 'pickup' END AS kind,
       (ARRAY[1, 10, 50])[1 + g % 7 % 3] AS lim
  FROM generate_series(1, 300) g;
GRANT SELECT ON regress_searches TO regress_locations_reader;
CREATE VIEW regress_answers AS
SELECT count(*) AS rows, md5(string_agg(s.i || ':' || f.n || ':' || f.id || ':' || round(f.distance_meters::numeric, 6)
                                        || ':' || coalesce(f.place_name, '') || ':' || f.location_type, ',' ORDER BY s.i, f.n)) AS digest
  FROM regress_searches s,
       LATERAL find_nearby_locations(s.lat, s.lng, s.radius, s.kind, s.lim) WITH ORDINALITY f(id, user_id, location_type, latitude, longitude, distance_meters, address, place_name, city, country, n);
GRANT SELECT ON regress_answers TO regress_locations_reader;
CREATE VIEW regress_key_scans AS SELECT pg_stat_get_xact_numscans('locations_pkey'::regclass) AS idx_scan;
GRANT SELECT ON regress_key_scans TO regress_locations_reader;
BEGIN;
SELECT rows, digest AS native FROM regress_answers \gset
SELECT :rows AS rows, idx_scan AS native_key_scans FROM regress_key_scans;
COMMIT;
BEGIN;
SET LOCAL ROLE regress_locations_reader;
SELECT rows = :rows AS same_rows, digest = :'native' AS same_answers FROM regress_answers;
SELECT idx_scan > 0 AS statements_read_by_key FROM regress_key_scans;
COMMIT;
-- Both read what the calling statement sees, as a STABLE function's reads do: not a row that a
-- function earlier in the same statement inserted (with a later command id).
CREATE FUNCTION regress_add_place(lat float8) RETURNS int LANGUAGE sql VOLATILE SECURITY DEFINER AS
$$ INSERT INTO locations (location_type, latitude, longitude, place_name) VALUES ('pickup', lat, 45, 'mid-statement') RETURNING 1 $$;
GRANT EXECUTE ON FUNCTION regress_add_place(float8) TO regress_locations_reader;
SELECT added, (SELECT count(*) FROM find_nearby_locations(45, 45, 100)) AS native_sees_it
  FROM (SELECT regress_add_place(45) AS added OFFSET 0) w;
SELECT count(*) AS next_statement_sees_it FROM find_nearby_locations(45, 45, 100);
BEGIN;
SET LOCAL ROLE regress_locations_reader;
SELECT added, (SELECT count(*) FROM find_nearby_locations(46, 45, 100)) AS statements_see_it
  FROM (SELECT regress_add_place(46) AS added OFFSET 0) w;
SELECT count(*) AS next_statement_sees_it FROM find_nearby_locations(46, 45, 100);
COMMIT;
DROP FUNCTION regress_add_place(float8);
-- Without the GiST index the native read steps aside: the statements (a sequential scan) give
-- the same answers.
BEGIN;
DROP INDEX locations_geo_idx;
SELECT digest = :'native' AS same_without_index, idx_scan > 0 AS statements_read_by_key FROM regress_answers, regress_key_scans;
ROLLBACK;
-- Nor do the INCLUDE columns decide: without them the native read reads each row in the box;
-- in another order, it finds them where they are. The same answers, still read natively.
BEGIN;
DROP INDEX locations_geo_idx;
CREATE INDEX regress_bare_point ON locations USING gist (point(longitude, latitude));
SELECT idx_scan AS key_scans_before FROM regress_key_scans \gset
SELECT digest = :'native' AS same_with_bare_index FROM regress_answers;
SELECT idx_scan = :key_scans_before AS read_natively FROM regress_key_scans;
ROLLBACK;
BEGIN;
DROP INDEX locations_geo_idx;
CREATE INDEX regress_reordered ON locations USING gist (point(longitude, latitude))
    INCLUDE (location_type, place_name, id, longitude, latitude);
SELECT idx_scan AS key_scans_before FROM regress_key_scans \gset
SELECT digest = :'native' AS same_with_reordered_index FROM regress_answers;
SELECT idx_scan = :key_scans_before AS read_natively FROM regress_key_scans;
ROLLBACK;
DROP VIEW regress_answers, regress_key_scans;
DROP TABLE regress_searches;
-- A row updated in place (no indexed column changed: a HOT update) and vacuumed: its index entry
-- points to the first version, now a redirect to the second. The search finds the row with its
-- new values, whether it read the row or, its page all visible, took the index's copies.
INSERT INTO locations (id, location_type, latitude, longitude, place_name)
VALUES ('00000000-0000-0000-0006-000000000002', 'pickup', 40, 40, 'before');
VACUUM locations;
UPDATE locations SET place_name = 'after' WHERE id = '00000000-0000-0000-0006-000000000002';
VACUUM locations;
SELECT place_name, round(distance_meters::numeric, 3) AS metres FROM find_nearby_locations(40, 40, 10, 'pickup');
-- The native read counts its index scans where Postgres's own would (pg_stat_user_indexes).
BEGIN;
SELECT count(*) AS found FROM find_nearby_locations(40, 40, 10);
SELECT pg_stat_get_xact_numscans('locations_geo_idx'::regclass) > 0 AS scans_counted,
       pg_stat_get_xact_tuples_returned('locations_geo_idx'::regclass) > 0 AS entries_counted;
COMMIT;
DELETE FROM locations WHERE place_name = 'after';
DROP POLICY regress_reads_all ON locations;
REVOKE ALL ON locations FROM regress_locations_reader;
REVOKE ALL ON FUNCTION find_nearby_locations FROM regress_locations_reader;
DROP ROLE regress_locations_reader;
DELETE FROM locations WHERE place_name LIKE 'city %' OR place_name LIKE 'globe %' OR place_name = 'mid-statement';

-- Bad input: NULL 22004; out of range, NaN, infinities, unknown type 22023.
SELECT regress.outcome($$SELECT * FROM find_nearby_locations(NULL, 0)$$) AS null_lat,
       regress.outcome($$SELECT * FROM find_nearby_locations(0, NULL)$$) AS null_lng,
       regress.outcome($$SELECT * FROM find_nearby_locations(0, 0, NULL)$$) AS null_radius,
       regress.outcome($$SELECT * FROM find_nearby_locations(0, 0, 10, NULL, NULL)$$) AS null_limit;
SELECT * FROM find_nearby_locations(91, 0);
SELECT * FROM find_nearby_locations(-90.0001, 0);
SELECT * FROM find_nearby_locations(0, 180.5);
SELECT * FROM find_nearby_locations('NaN', 0);
SELECT * FROM find_nearby_locations(0, 'Infinity');
SELECT * FROM find_nearby_locations(0, 0, 0);
SELECT * FROM find_nearby_locations(0, 0, -5);
SELECT * FROM find_nearby_locations(0, 0, 20000001);
SELECT * FROM find_nearby_locations(0, 0, 'NaN');
SELECT * FROM find_nearby_locations(0, 0, 10, NULL, 0);
SELECT * FROM find_nearby_locations(0, 0, 10, NULL, 1001);
SELECT * FROM find_nearby_locations(0, 0, 10, 'garage');
-- The edges are fine.
SELECT count(*) AS edges_ok FROM find_nearby_locations(90, 180, 20000000, NULL, 1000);
SELECT count(*) AS edges_ok FROM find_nearby_locations(-90, -180, 0.001, NULL, 1);

-- Route cache: origin and destination each matched within the tolerance (geodesic), the
-- freshest unexpired route wins, expired and too-old ones are never returned.
SELECT cache_route(-1.9441, 30.0619, -1.9706, 30.1044, 5400.5, 900, 'abc~polyline', '[[30.0619, -1.9441], [30.1044, -1.9706]]', 1.2, 3600, 'osrm') AS r1 \gset
SELECT distance_meters, duration_seconds, polyline, path, traffic_multiplier, provider,
       expires_at - created_at AS ttl
  FROM get_cached_route(-1.9441, 30.0619, -1.9706, 30.1044);
-- 10 m away at both ends is within the default 25 m; 40 m away is not (unless asked).
SELECT count(*) AS within_25 FROM get_cached_route(-1.94419, 30.0619, -1.97069, 30.1044);
SELECT count(*) AS beyond_25 FROM get_cached_route(-1.94446, 30.0619, -1.9706, 30.1044);
SELECT count(*) AS within_50 FROM get_cached_route(-1.94446, 30.0619, -1.9706, 30.1044, 60, 50);
-- Destination must match too.
SELECT count(*) AS other_destination FROM get_cached_route(-1.9441, 30.0619, -1.9506, 30.1044);
-- A fresher route for the same trip wins; an expired one never shows; max age applies.
SELECT cache_route(-1.9441, 30.0619, -1.9706, 30.1044, 5600, 1000, p_provider => 'google') AS r2 \gset
UPDATE routes SET created_at = created_at - interval '10 minutes', expires_at = expires_at - interval '10 minutes'
 WHERE id = :'r1';
SELECT provider FROM get_cached_route(-1.9441, 30.0619, -1.9706, 30.1044);
UPDATE routes SET expires_at = now() - interval '1 second' WHERE id = :'r2';
SELECT provider FROM get_cached_route(-1.9441, 30.0619, -1.9706, 30.1044);
SELECT count(*) AS older_than_5_minutes FROM get_cached_route(-1.9441, 30.0619, -1.9706, 30.1044, 5);
SELECT provider, routes, active, expired FROM route_cache_stats ORDER BY provider;
-- Callable by authenticated (a shared cache, read as the owner); writing is for service_role.
SET ROLE authenticated;
SELECT provider AS authenticated_reads FROM get_cached_route(-1.9441, 30.0619, -1.9706, 30.1044);
SELECT regress.outcome($$SELECT cache_route(0, 0, 1, 1, 10, 10)$$, false) AS authenticated_writes;
RESET ROLE;
-- Bad input.
SELECT regress.outcome($$SELECT cache_route(NULL, 0, 1, 1, 10, 10)$$) AS null_origin;
SELECT cache_route(0, 0, 91, 1, 10, 10);
SELECT cache_route(0, 0, 1, 1, -1, 10);
SELECT cache_route(0, 0, 1, 1, 'Infinity', 10);
SELECT cache_route(0, 0, 1, 1, 10, -1);
SELECT cache_route(0, 0, 1, 1, 10, 10, NULL, '{"not": "an array"}');
SELECT cache_route(0, 0, 1, 1, 10, 10, NULL, NULL, 0);
SELECT cache_route(0, 0, 1, 1, 10, 10, NULL, NULL, 1.0, 0);
SELECT * FROM get_cached_route(0, 0, 1, 1, 0);
SELECT * FROM get_cached_route(0, 0, 1, 1, 60, 0);
SELECT * FROM get_cached_route(0, 0, 1, 1, 60, 10001);
SELECT * FROM get_cached_route(0, 'NaN', 1, 1);
