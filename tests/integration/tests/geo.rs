//! find_nearby_locations against PostGIS on the same points and the same queries: identical ids
//! in identical order, distances within 1 mm. PostGIS lives only in this test's own database.

use easymo_integration_tests::TestDb;

/// 100,000 points: a dense city cluster, a global spread (uniform on the sphere), a band on both
/// sides of the antimeridian and the two polar caps; the six location types at random.
const POINTS: &str = "
SELECT setseed(0.42);
INSERT INTO locations (location_type, latitude, longitude)
SELECT (ARRAY['current','home','work','favorite','pickup','dropoff'])[1 + floor(random() * 6)::int], lat, lng FROM (
  SELECT -1.95 + (random() - 0.5) * 0.6 AS lat, 30.06 + (random() - 0.5) * 0.6 AS lng FROM generate_series(1, 40000)
  UNION ALL SELECT degrees(asin(2 * random() - 1)), random() * 360 - 180 FROM generate_series(1, 30000)
  UNION ALL SELECT random() * 120 - 60, CASE WHEN random() < 0.5 THEN 179 + random() ELSE -180 + random() END FROM generate_series(1, 15000)
  UNION ALL SELECT CASE WHEN random() < 0.5 THEN 85 + random() * 5 ELSE -90 + random() * 5 END, random() * 360 - 180 FROM generate_series(1, 15000)
) p;
ALTER TABLE locations ADD COLUMN g geography
    GENERATED ALWAYS AS (ST_SetSRID(ST_MakePoint(longitude, latitude), 4326)::geography) STORED;
CREATE INDEX ON locations USING gist (g);
";

/// 300 queries: centres in the city, anywhere, on the antimeridian, near both poles and on the
/// equator; radii from 1 m to 20,000 km; half with a type filter; limits 1 to 1000.
const QUERIES: &str = "
SELECT setseed(0.7);
CREATE TABLE queries AS
SELECT q,
  CASE q % 6 WHEN 0 THEN -1.95 + (random() - 0.5) * 0.5 WHEN 1 THEN degrees(asin(2 * random() - 1))
             WHEN 2 THEN random() * 120 - 60 WHEN 3 THEN 89 + random() WHEN 4 THEN -90 + random() ELSE 0 END AS lat,
  CASE q % 6 WHEN 0 THEN 30.06 + (random() - 0.5) * 0.5
             WHEN 2 THEN CASE WHEN random() < 0.5 THEN 179.99 ELSE -179.99 END
             ELSE random() * 360 - 180 END AS lng,
  (ARRAY[1, 30, 1000, 5000, 25000, 100000, 1000000, 5000000, 20000000])[1 + floor(random() * 9)::int]::float8 AS r,
  CASE WHEN random() < 0.5 THEN NULL
       ELSE (ARRAY['current','home','work','favorite','pickup','dropoff'])[1 + floor(random() * 6)::int] END AS typ,
  (ARRAY[1, 10, 50, 1000])[1 + floor(random() * 4)::int] AS lim
FROM generate_series(1, 300) q;
";

const COMPARE: &str = "
SELECT count(*)::int8,
       count(*) FILTER (WHERE ours.ids = pg.ids)::int8,
       coalesce(sum(cardinality(ours.ids)), 0)::int8,
       coalesce(max((SELECT max(abs(a - b)) FROM unnest(ours.ds, pg.ds) u(a, b))), 0)::float8,
       count(*) FILTER (WHERE q.lng IN (179.99, -179.99) AND cardinality(ours.ids) > 0)::int8,
       count(*) FILTER (WHERE abs(q.lat) > 89 AND cardinality(ours.ids) > 0)::int8
  FROM queries q
  CROSS JOIN LATERAL (
      SELECT coalesce(array_agg(id ORDER BY ord), '{}') ids, coalesce(array_agg(distance_meters ORDER BY ord), '{}') ds
        FROM (SELECT f.id, f.distance_meters, row_number() OVER () ord
                FROM find_nearby_locations(q.lat, q.lng, q.r, q.typ, q.lim) f) x) ours
  CROSS JOIN LATERAL (
      SELECT coalesce(array_agg(id ORDER BY d, id), '{}') ids, coalesce(array_agg(d ORDER BY d, id), '{}') ds
        FROM (SELECT l.id, ST_Distance(l.g, c.c) d
                FROM locations l, (SELECT ST_SetSRID(ST_MakePoint(q.lng, q.lat), 4326)::geography c) c
               WHERE ST_DWithin(l.g, c.c, q.r) AND (q.typ IS NULL OR l.location_type = q.typ)
               ORDER BY d, l.id LIMIT q.lim) y) pg;
";

#[test]
fn nearby_search_equals_postgis() {
    let db = TestDb::new("geo_postgis");
    let mut c = db.connect();
    c.batch_execute("SET client_min_messages = warning; CREATE EXTENSION postgis").unwrap();
    c.batch_execute(POINTS).unwrap();
    // On its own: VACUUM refuses to run inside the implicit transaction of a batch.
    c.batch_execute("VACUUM ANALYZE locations").unwrap();
    c.batch_execute(QUERIES).unwrap();
    let row = c.query_one(COMPARE, &[]).unwrap();
    let (queries, identical, rows, max_diff, antimeridian, polar): (i64, i64, i64, f64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4), row.get(5));
    println!("{queries} queries, {identical} identical, {rows} rows compared, max distance difference {max_diff} m");
    assert_eq!(queries, 300);
    assert_eq!(identical, queries, "queries whose ids or order differ from PostGIS");
    assert!(rows > 10_000, "too few rows compared: {rows}");
    assert!(max_diff < 0.001, "distances differ from ST_Distance by {max_diff} m");
    // The hard places were really exercised.
    assert!(antimeridian > 10 && polar > 10, "antimeridian {antimeridian}, polar {polar}");
}
