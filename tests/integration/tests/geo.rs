//! find_nearby_locations against PostGIS on the same points and the same queries: identical ids
//! in identical order, distances within 1 mm.
//!
//! Where PostGIS is installed (Debian packages it for PostgreSQL 15 here), the test compares with
//! it live, in this test's own database, and also with the recorded answers in
//! tests/integration/fixtures/geo_postgis.tsv (so a stale record fails here). Where it is not
//! (16, 17, 18: no PostGIS for them in the package registries), it compares with that record:
//! PostGIS's answers on the same points, which are the same on every version (seeded random(),
//! whose generator is the same from 15 on, and ids derived from the point's number; the test
//! checks the points against the record's digest first). EASYMO_WRITE_GEO_FIXTURE=1 with PostGIS
//! writes the record anew.

use easymo_integration_tests::TestDb;

/// 100,000 points: a dense city cluster, a global spread (uniform on the sphere), a band on both
/// sides of the antimeridian and the two polar caps; the six location types at random.
const POINTS: &str = "
SELECT setseed(0.42);
INSERT INTO locations (id, location_type, latitude, longitude)
SELECT md5('point ' || n)::uuid, typ, lat, lng FROM (
  SELECT row_number() OVER () AS n, * FROM (
    SELECT (ARRAY['current','home','work','favorite','pickup','dropoff'])[1 + floor(random() * 6)::int] AS typ, lat, lng FROM (
      SELECT -1.95 + (random() - 0.5) * 0.6 AS lat, 30.06 + (random() - 0.5) * 0.6 AS lng FROM generate_series(1, 40000)
      UNION ALL SELECT degrees(asin(2 * random() - 1)), random() * 360 - 180 FROM generate_series(1, 30000)
      UNION ALL SELECT random() * 120 - 60, CASE WHEN random() < 0.5 THEN 179 + random() ELSE -180 + random() END FROM generate_series(1, 15000)
      UNION ALL SELECT CASE WHEN random() < 0.5 THEN 85 + random() * 5 ELSE -90 + random() * 5 END, random() * 360 - 180 FROM generate_series(1, 15000)
    ) p
  ) t
) numbered;
";

/// The points' digest: the record is only valid for exactly these points.
const POINTS_DIGEST: &str = "
SELECT md5(string_agg(id::text || ' ' || location_type || ' ' || latitude::text || ' ' || longitude::text, ',' ORDER BY id))
  FROM locations";

const POSTGIS_COLUMN: &str = "
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

/// Per query: how many rows, the md5 of the ids in order, the distances (metres, to the
/// micrometre) in order. `{answer}` is a lateral subquery giving (ids, ds) for query q.
const ANSWERS: &str = "
SELECT q.q, cardinality(a.ids), md5(array_to_string(a.ids, ',')), array_to_string(a.ds, ',')
  FROM queries q CROSS JOIN LATERAL ({answer}) a ORDER BY q.q";

const NATIVE: &str = "
SELECT coalesce(array_agg(id ORDER BY ord), '{}') ids, coalesce(array_agg(round(distance_meters::numeric, 6) ORDER BY ord), '{}') ds
  FROM (SELECT f.id, f.distance_meters, row_number() OVER () ord
          FROM find_nearby_locations(q.lat, q.lng, q.r, q.typ, q.lim) f) x";

const POSTGIS: &str = "
SELECT coalesce(array_agg(id ORDER BY d, id), '{}') ids, coalesce(array_agg(round(d::numeric, 6) ORDER BY d, id), '{}') ds
  FROM (SELECT l.id, ST_Distance(l.g, c.c) d
          FROM locations l, (SELECT ST_SetSRID(ST_MakePoint(q.lng, q.lat), 4326)::geography c) c
         WHERE ST_DWithin(l.g, c.c, q.r) AND (q.typ IS NULL OR l.location_type = q.typ)
         ORDER BY d, l.id LIMIT q.lim) y";

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/geo_postgis.tsv");

/// One query's answer: row count, md5 of the ids in order, distances.
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    q: i32,
    rows: i64,
    ids_md5: String,
    distances: Vec<f64>,
}

fn answers(c: &mut postgres::Client, answer: &str) -> Vec<Answer> {
    c.query(&ANSWERS.replace("{answer}", answer), &[])
        .unwrap()
        .iter()
        .map(|r| Answer {
            q: r.get(0),
            rows: i64::from(r.get::<_, i32>(1)),
            ids_md5: r.get(2),
            distances: r.get::<_, String>(3).split(',').filter(|s| !s.is_empty()).map(|s| s.parse().unwrap()).collect(),
        })
        .collect()
}

/// (points digest, answers) as recorded.
fn read_fixture() -> (String, Vec<Answer>) {
    let text = std::fs::read_to_string(FIXTURE).unwrap_or_else(|e| panic!("reading {FIXTURE}: {e}"));
    let mut lines = text.lines().filter(|l| !l.starts_with('#'));
    let digest = lines.next().expect("the points digest").trim().to_owned();
    let answers = lines
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Answer {
                q: f[0].parse().unwrap(),
                rows: f[1].parse().unwrap(),
                ids_md5: f[2].to_owned(),
                distances: f
                    .get(3)
                    .map_or(vec![], |d| d.split(',').filter(|s| !s.is_empty()).map(|s| s.parse().unwrap()).collect()),
            }
        })
        .collect();
    (digest, answers)
}

fn write_fixture(digest: &str, answers: &[Answer]) {
    let mut text = String::from(
        "# PostGIS 3 (ST_DWithin, ST_Distance on geography) on the points and queries of tests/geo.rs:\n\
         # the points' digest, then per query: number, rows, md5 of the ids in order, distances in metres.\n\
         # Written by the test with EASYMO_WRITE_GEO_FIXTURE=1 where PostGIS is installed.\n",
    );
    text.push_str(digest);
    text.push('\n');
    for a in answers {
        let ds: Vec<String> = a.distances.iter().map(|d| format!("{d:.6}")).collect();
        text.push_str(&format!("{}\t{}\t{}\t{}\n", a.q, a.rows, a.ids_md5, ds.join(",")));
    }
    std::fs::write(FIXTURE, text).unwrap();
}

/// Ids in the same order and distances within 1 mm; returns (queries identical, rows, max diff).
fn compare(ours: &[Answer], theirs: &[Answer]) -> (usize, i64, f64) {
    assert_eq!(ours.len(), theirs.len(), "number of queries");
    let mut identical = 0;
    let mut rows = 0;
    let mut max_diff: f64 = 0.0;
    for (a, b) in ours.iter().zip(theirs) {
        assert_eq!(a.q, b.q);
        let diff = a.distances.iter().zip(&b.distances).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
        max_diff = max_diff.max(diff);
        if a.rows == b.rows && a.ids_md5 == b.ids_md5 && diff < 0.001 {
            identical += 1;
        }
        rows += a.rows;
    }
    (identical, rows, max_diff)
}

#[test]
fn nearby_search_equals_postgis() {
    let db = TestDb::new("geo_postgis");
    let mut c = db.connect();
    let postgis: bool = c
        .query_one("SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'postgis')", &[])
        .unwrap()
        .get(0);
    c.batch_execute(POINTS).unwrap();
    let digest: String = c.query_one(POINTS_DIGEST, &[]).unwrap().get(0);
    if postgis {
        c.batch_execute("SET client_min_messages = warning; CREATE EXTENSION postgis").unwrap();
        c.batch_execute(POSTGIS_COLUMN).unwrap();
    }
    // On its own: VACUUM refuses to run inside the implicit transaction of a batch.
    c.batch_execute("VACUUM ANALYZE locations").unwrap();
    c.batch_execute(QUERIES).unwrap();
    let ours = answers(&mut c, NATIVE);

    let (recorded_digest, recorded) = if postgis && std::env::var("EASYMO_WRITE_GEO_FIXTURE").is_ok() {
        let theirs = answers(&mut c, POSTGIS);
        write_fixture(&digest, &theirs);
        (digest.clone(), theirs)
    } else {
        read_fixture()
    };
    assert_eq!(digest, recorded_digest, "the points are not those the PostGIS record was made on");
    if postgis {
        // The record is PostGIS's answer, checked live where PostGIS is.
        let live = answers(&mut c, POSTGIS);
        let (same, _, diff) = compare(&live, &recorded);
        assert_eq!(same, live.len(), "the PostGIS record differs from PostGIS itself (max {diff} m)");
    }
    let (identical, rows, max_diff) = compare(&ours, &recorded);
    println!(
        "{} queries, {identical} identical to PostGIS ({}), {rows} rows compared, max distance difference {max_diff} m",
        ours.len(),
        if postgis { "live and recorded" } else { "recorded" }
    );
    assert_eq!(ours.len(), 300);
    assert_eq!(identical, ours.len(), "queries whose ids, order or distances differ from PostGIS");
    assert!(rows > 10_000, "too few rows compared: {rows}");
    // The hard places were really exercised.
    let hard: (i64, i64) = {
        let r = c
            .query_one(
                "SELECT count(*) FILTER (WHERE lng IN (179.99, -179.99)), count(*) FILTER (WHERE abs(lat) > 89) FROM queries q
                  WHERE EXISTS (SELECT 1 FROM find_nearby_locations(q.lat, q.lng, q.r, q.typ, q.lim))",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert!(hard.0 > 10 && hard.1 > 10, "antimeridian {}, polar {}", hard.0, hard.1);
}

/// The native read walks the GiST index's pages itself, so it must follow a page split that
/// happens while it walks, as GiST's own scan does (the right sibling of a page split after its
/// parent was read). Two sessions keep inserting and deleting points in one 1 km square (its
/// pages split again and again, and VACUUM in a third empties and deletes some), while a fourth
/// searches the whole square: every search, in a REPEATABLE READ transaction, finds exactly the
/// rows a count of the table finds on the same snapshot.
#[test]
fn searches_during_page_splits_miss_nothing() {
    use std::time::{Duration, Instant};
    const POINTS: &str = "INSERT INTO locations (location_type, latitude, longitude)
        SELECT 'pickup', random() * 0.01, random() * 0.01 FROM generate_series(1, $1::int)";
    let db = TestDb::new("geo_splits");
    db.connect().execute(POINTS, &[&500i32]).unwrap();
    let rounds = db.race(4, |worker, c| {
        let deadline = Instant::now() + Duration::from_secs(4);
        let mut rounds = 0;
        while Instant::now() < deadline {
            match worker {
                0 | 1 => {
                    let mut t = c.transaction().unwrap();
                    t.execute(POINTS, &[&10i32]).unwrap();
                    t.execute(
                        "DELETE FROM locations WHERE id IN
                           (SELECT id FROM locations ORDER BY random() LIMIT 10 FOR UPDATE SKIP LOCKED)",
                        &[],
                    )
                    .unwrap();
                    t.commit().unwrap();
                }
                2 => {
                    c.batch_execute("VACUUM locations").unwrap();
                    std::thread::sleep(Duration::from_millis(50));
                }
                _ => {
                    let mut t = c
                        .build_transaction()
                        .isolation_level(postgres::IsolationLevel::RepeatableRead)
                        .start()
                        .unwrap();
                    let found: i64 = t
                        .query_one("SELECT count(*) FROM find_nearby_locations(0.005, 0.005, 2000, NULL, 1000)", &[])
                        .unwrap()
                        .get(0);
                    let all: i64 = t.query_one("SELECT count(*) FROM locations", &[]).unwrap().get(0);
                    t.commit().unwrap();
                    assert_eq!(found, all.min(1000), "search {rounds} missed rows or found too many");
                }
            }
            rounds += 1;
        }
        rounds
    });
    assert!(rounds[3] > 20, "only {} searches ran", rounds[3]);
}
