//! Notifications under real concurrency: senders racing with one dedupe key make one
//! notification; channel workers that fail some sends and retry drain every delivery to sent or
//! dead exactly once, never two workers on one delivery.

use easymo_integration_tests::TestDb;
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[test]
fn notifications_eight_senders_with_one_dedupe_key_make_one() {
    let db = TestDb::new("notify_dedupe");
    for round in 0..20 {
        let ids = db.race(8, move |_, c| {
            let row = c
                .query_one(
                    "SELECT send_notification('00000000-0000-0000-0000-00000000000a', 'ride.arrived', 'Here', 'Driver here', \
                     p_channels => ARRAY['push', 'sms'], p_dedupe_key => $1)::text",
                    &[&format!("ride-{round}")],
                )
                .unwrap();
            row.get::<_, String>(0)
        });
        assert!(ids.iter().all(|id| *id == ids[0]), "round {round}: different notifications {ids:?}");
    }
    assert_eq!(db.scalar_i64("SELECT count(*) FROM notifications"), 20);
    assert_eq!(db.scalar_i64("SELECT count(*) FROM notification_deliveries"), 40);
}

#[test]
fn notifications_workers_with_failures_drain_every_delivery_once() {
    let db = TestDb::new("notify_drain");
    let mut c = db.connect();
    // 300 notifications to 3 channels each, drained by 6 workers (2 per channel) under a
    // provider that fails one attempt in three, rejects every attempt for one notification in 25
    // (those go dead), and a worker that drops another one in 25 on its first claim without a
    // word (its 2-second lease lapses and the next claim takes it again, as a failed attempt).
    c.batch_execute(
        "SELECT count(send_notification(('00000000-0000-0000-0000-' || lpad((g % 50)::text, 12, '0'))::uuid,
                                        'receipt', 'Receipt ' || g, 'Body', jsonb_build_object('n', g),
                                        ARRAY['sms', 'push', 'email'], 1 + g % 10))
           FROM generate_series(1, 300) g",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let outcomes = db.race(6, move |w, c| {
        let channel = ["sms", "push", "email"][w % 3];
        let mut sent: Vec<String> = Vec::new();
        let mut failures = 0u32;
        let mut n = 0u64;
        loop {
            let rows = c
                .query(
                    "SELECT delivery_id::text, (data ->> 'n')::int, retry_count FROM claim_notification_deliveries($1, 5, 2)",
                    &[&channel],
                )
                .unwrap();
            if rows.is_empty() {
                // Retries wait out a backoff: make them due, or stop when none is left.
                let active: i64 = c
                    .query_one(
                        "WITH due AS (UPDATE notification_deliveries SET scheduled_at = now()
                                       WHERE channel = $1 AND status = 'pending' RETURNING 1)
                         SELECT (SELECT count(*) FROM due) + (SELECT count(*) FROM notification_deliveries
                                                              WHERE channel = $1 AND status IN ('pending', 'processing'))",
                        &[&channel],
                    )
                    .unwrap()
                    .get(0);
                if active == 0 || Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            for row in rows {
                let id: String = row.get(0);
                let (k, retries): (i32, i32) = (row.get(1), row.get(2));
                n += 1;
                if k % 25 == 1 && retries == 0 {
                    continue; // dropped: the lease lapses
                }
                if k % 25 == 0 || (n + w as u64).is_multiple_of(3) {
                    c.query_one("SELECT fail_notification_delivery($1::text::uuid, 'provider said 503')", &[&id])
                        .unwrap();
                    failures += 1;
                } else {
                    let done: bool = c
                        .query_one(
                            "SELECT complete_notification_delivery($1::text::uuid, 'pm-' || $1)",
                            &[&id],
                        )
                        .unwrap()
                        .get(0);
                    assert!(done, "a claimed delivery was not in flight");
                    sent.push(id);
                }
            }
        }
        (sent, failures)
    });
    let mut completed_by: HashMap<String, usize> = HashMap::new();
    let mut failures = 0;
    for (sent, f) in outcomes {
        failures += f;
        for id in sent {
            *completed_by.entry(id).or_default() += 1;
        }
    }
    assert!(completed_by.values().all(|&n| n == 1), "a delivery was completed twice");
    assert!(failures > 0, "the test provider never failed");
    let mut c = db.connect();
    let row = c
        .query_one(
            "SELECT count(*) FILTER (WHERE status = 'sent'), count(*) FILTER (WHERE status = 'dead_letter'),
                    count(*) FILTER (WHERE status NOT IN ('sent', 'dead_letter')),
                    count(*) FILTER (WHERE status = 'sent' AND provider_message_id IS NULL),
                    count(*) FILTER (WHERE status = 'dead_letter' AND retry_count <> max_retries + 1)
               FROM notification_deliveries",
            &[],
        )
        .unwrap();
    let (sent, dead, other, sent_without_id, dead_early): (i64, i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    eprintln!("notifications drain: {sent} sent, {dead} dead, {failures} failed attempts");
    assert_eq!(other, 0, "deliveries neither sent nor dead");
    assert_eq!(sent + dead, 900);
    assert_eq!(sent as usize, completed_by.len(), "sent deliveries and completions differ");
    assert_eq!(sent_without_id, 0);
    assert_eq!(dead_early, 0, "a delivery went dead before its retries were used up");
    let row = c
        .query_one(
            "SELECT count(*) FILTER (WHERE (n.data ->> 'n')::int % 25 = 0 AND d.status = 'dead_letter'),
                    count(*) FILTER (WHERE (n.data ->> 'n')::int % 25 = 1 AND d.retry_count >= 1)
               FROM notification_deliveries d JOIN notifications n ON n.id = d.notification_id",
            &[],
        )
        .unwrap();
    let (rejected_dead, dropped_retried): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(rejected_dead, 36, "every delivery the provider always rejects ends dead");
    assert_eq!(dropped_retried, 36, "every dropped delivery was claimed again after its lease lapsed");
}
