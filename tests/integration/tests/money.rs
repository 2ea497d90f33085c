//! create_transaction under concurrency: 8 connections racing over the same 500 keys.

use easymo_integration_tests::TestDb;
use std::collections::HashMap;

#[test]
fn racing_callers_get_one_transaction_per_key() {
    let db = TestDb::new("money_race");
    const KEYS: usize = 500;
    let results = db.race(8, |worker, client| {
        // Half the workers go up the keys and half down, so every key is fought over.
        let order: Vec<usize> = if worker % 2 == 0 { (0..KEYS).collect() } else { (0..KEYS).rev().collect() };
        order
            .into_iter()
            .map(|k| {
                let row = client
                    .query_one(
                        "SELECT create_transaction($1::text::uuid, 'payment', $2::text::numeric, 'RWF', $3)::text",
                        &[
                            &format!("00000000-0000-0000-0000-{:012}", k % 50),
                            &format!("{}.25", 100 + k),
                            &format!("order-{k}"),
                        ],
                    )
                    .unwrap_or_else(|e| panic!("worker {worker}, key {k}: {e}"));
                (k, row.get::<_, String>(0))
            })
            .collect::<Vec<_>>()
    });
    // Every caller of a key got the same id.
    let mut ids: HashMap<usize, String> = HashMap::new();
    for (k, id) in results.into_iter().flatten() {
        let first = ids.entry(k).or_insert_with(|| id.clone());
        assert_eq!(*first, id, "key order-{k} gave two ids");
    }
    assert_eq!(ids.len(), KEYS);
    // Exactly one transaction, one key row and one creation event per key.
    assert_eq!(db.scalar_i64("SELECT count(*) FROM transactions"), KEYS as i64);
    assert_eq!(db.scalar_i64("SELECT count(*) FROM transaction_idempotency_keys"), KEYS as i64);
    assert_eq!(db.scalar_i64("SELECT count(*) FROM transaction_events WHERE event_type = 'created'"), KEYS as i64);
    assert_eq!(db.scalar_i64("SELECT count(DISTINCT reference) FROM transactions"), KEYS as i64);
    // The ids handed out are the ones stored.
    let stored = db.scalar_i64(&format!(
        "SELECT count(*) FROM transactions WHERE id::text = ANY ('{{{}}}'::text[])",
        ids.values().cloned().collect::<Vec<_>>().join(",")
    ));
    assert_eq!(stored, KEYS as i64);
}

#[test]
fn racing_conflicting_reuse_gives_one_winner_and_23505s() {
    let db = TestDb::new("money_conflict");
    // 8 callers, one key, each with a different amount: one transaction, seven 23505s.
    let outcomes = db.race(8, |worker, client| {
        client
            .query_one(
                "SELECT create_transaction('00000000-0000-0000-0000-00000000000a', 'payment', $1::text::numeric, 'RWF', 'contested')::text",
                &[&format!("{}", 10 + worker)],
            )
            .map(|_| "ok".to_owned())
            .unwrap_or_else(|e| e.code().map(|c| c.code().to_owned()).unwrap_or_else(|| e.to_string()))
    });
    assert_eq!(outcomes.iter().filter(|o| *o == "ok").count(), 1, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| *o == "23505").count(), 7, "{outcomes:?}");
    assert_eq!(db.scalar_i64("SELECT count(*) FROM transactions"), 1);
    assert_eq!(db.scalar_i64("SELECT count(*) FROM transaction_events"), 1);
}
