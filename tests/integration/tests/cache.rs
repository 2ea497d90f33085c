//! The cache under concurrency: writers overwriting the same keys while readers read them.

use easymo_integration_tests::TestDb;

const KEYS: usize = 50;

#[test]
fn concurrent_sets_and_gets_stay_consistent() {
    let db = TestDb::new("cache_race");
    // Workers 0-3 overwrite the keys with {"key": k, "writer": w, "n": i}; workers 4-7 read them.
    let problems = db.race(8, |worker, client| {
        let mut problems = Vec::new();
        if worker < 4 {
            for i in 0..500 {
                let k = (i * 7 + worker) % KEYS;
                let value =
                    format!(r#"{{"key": {k}, "writer": {worker}, "n": {i}, "pad": "{}"}}"#, "x".repeat(i % 200));
                if let Err(e) = client.query_one(
                    "SELECT set_cache($1, $2::text::jsonb, 600, 'race', ARRAY['t' || ($3::int % 3)])",
                    &[&format!("key:{k}"), &value, &(i as i32)],
                ) {
                    problems.push(format!("set by {worker}: {e}"));
                }
            }
        } else {
            for i in 0..2000 {
                let k = (i * 13 + worker) % KEYS;
                match client.query_one("SELECT get_cache($1)::text", &[&format!("key:{k}")]) {
                    // Absent until the first write; afterwards always a whole value of this key.
                    Ok(row) => match row.get::<_, Option<String>>(0) {
                        None => {}
                        Some(v) if v.starts_with(r#"{"n": "#) && v.contains(&format!(r#""key": {k},"#)) => {}
                        Some(v) => problems.push(format!("key:{k} read as {v}")),
                    },
                    Err(e) => problems.push(format!("get by {worker}: {e}")),
                }
            }
        }
        problems
    });
    let problems: Vec<String> = problems.into_iter().flatten().collect();
    assert!(problems.is_empty(), "{} problems, e.g. {:?}", problems.len(), &problems[..problems.len().min(5)]);
    // One row per key, each holding one writer's whole value for that key.
    assert_eq!(db.scalar_i64("SELECT count(*) FROM cache_entries"), KEYS as i64);
    assert_eq!(
        db.scalar_i64(
            "SELECT count(*) FROM cache_entries WHERE key = 'key:' || (value ->> 'key') AND value ? 'writer'"
        ),
        KEYS as i64
    );
    // The readers' hits and misses were counted (2000 reads each; batches flushed on the way).
    let counted = db.scalar_i64("SELECT coalesce(sum(hits + misses), 0)::int8 FROM cache_stat_counters");
    assert!(counted >= 4 * 1000, "only {counted} reads counted");
}
