//! The queues, the event store and the idempotent producers under real concurrency: consumers
//! that never lose or double-deliver, a consumer killed mid-batch, appenders racing for versions,
//! producers racing with one idempotency key.

use easymo_integration_tests::TestDb;
use postgres::error::SqlState;
use postgres::Client;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

/// How one of the three queues is fed and consumed. They share one mechanism; the test runs on
/// each. Ids travel as text.
struct Queue {
    table: &'static str,
    /// Queues one item whose payload is {"n": $1}.
    enqueue: &'static str,
    /// Claims a batch: rows of (id, n).
    claim: &'static str,
    /// Acknowledges $1: true when it was in flight.
    finish: &'static str,
    done_status: &'static str,
    /// Deliveries beyond the first show up here.
    redeliveries: &'static str,
}

const QUEUES: [Queue; 3] = [
    Queue {
        table: "message_queue",
        enqueue: "SELECT enqueue_message('drain', 'job', jsonb_build_object('n', $1::int), 1 + $1::int % 10)",
        claim: "SELECT id::text, (payload ->> 'n')::int FROM read_messages('drain', 10, 600)",
        finish: "SELECT ack_message($1::text::uuid)",
        done_status: "completed",
        redeliveries: "retry_count",
    },
    Queue {
        table: "whatsapp_message_queue",
        enqueue: "SELECT enqueue_whatsapp_message('+250788' || lpad($1::int::text, 6, '0'), 'text', jsonb_build_object('n', $1::int), 1 + $1::int % 10)",
        claim: "SELECT id::text, (payload ->> 'n')::int FROM claim_whatsapp_messages(10, 600)",
        finish: "SELECT complete_whatsapp_message($1::text::uuid, 'wamid.' || $1::text)",
        done_status: "sent",
        redeliveries: "retry_count",
    },
    Queue {
        table: "background_jobs",
        enqueue: "SELECT schedule_job('drain', 'job', jsonb_build_object('n', $1::int), now(), 1 + $1::int % 10)",
        claim: "SELECT id::text, (payload ->> 'n')::int FROM claim_jobs(ARRAY['drain'], 10, 'worker')",
        finish: "SELECT complete_job($1::text::uuid, '{}')",
        done_status: "completed",
        redeliveries: "attempts - 1",
    },
];

fn enqueue(client: &mut Client, sql: &str, items: i32) {
    let mut tx = client.transaction().unwrap();
    let stmt = tx.prepare(sql).unwrap();
    for n in 0..items {
        tx.query_one(&stmt, &[&n]).unwrap();
    }
    tx.commit().unwrap();
}

/// 4 consumers drain 2,000 items from each queue, claiming and acknowledging in separate
/// transactions as a real consumer does: each item is delivered to exactly one consumer (the
/// visibility timeout, 10 minutes, never passes here), acknowledged exactly once, none lost.
#[test]
fn four_consumers_drain_2000_items_once_each() {
    const ITEMS: i32 = 2000;
    let db = TestDb::new("queue_drain");
    for (qi, q) in QUEUES.iter().enumerate() {
        enqueue(&mut db.connect(), q.enqueue, ITEMS);
        let deliveries = db.race(4, move |_, client| {
            let q = &QUEUES[qi];
            let claim = client.prepare(q.claim).unwrap();
            let finish = client.prepare(q.finish).unwrap();
            let mut got = Vec::new();
            loop {
                let rows = client.query(&claim, &[]).unwrap();
                if rows.is_empty() {
                    // Everything left is in other consumers' hands.
                    return got;
                }
                for row in rows {
                    let (id, n): (String, i32) = (row.get(0), row.get(1));
                    let acked: bool = client.query_one(&finish, &[&id]).unwrap().get(0);
                    got.push((n, acked));
                }
            }
        });
        let mut seen = HashMap::new();
        for (consumer, items) in deliveries.iter().enumerate() {
            for &(n, acked) in items {
                assert!(acked, "{}: item {n} was not in flight when consumer {consumer} acknowledged it", q.table);
                if let Some(other) = seen.insert(n, consumer) {
                    panic!("{}: item {n} delivered to consumers {other} and {consumer}", q.table);
                }
            }
        }
        assert_eq!(seen.len(), ITEMS as usize, "{}: items lost", q.table);
        let done = db.scalar_i64(&format!(
            "SELECT count(*) FROM {} WHERE status = '{}' AND locked_until IS NULL",
            q.table, q.done_status
        ));
        assert_eq!(done, ITEMS as i64, "{}: not every item is {}", q.table, q.done_status);
        let redelivered = db.scalar_i64(&format!("SELECT count(*) FROM {} WHERE {} > 0", q.table, q.redeliveries));
        assert_eq!(redelivered, 0, "{}: items delivered more than once", q.table);
    }
}

fn backend_pid(client: &mut Client) -> i32 {
    client.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0)
}

fn terminate(db: &TestDb, pid: i32) {
    let mut admin = db.connect();
    assert!(admin.query_one("SELECT pg_terminate_backend($1, 10000)", &[&pid]).unwrap().get::<_, bool>(0));
}

/// A consumer's backend is terminated while it holds messages. Messages it had claimed in a
/// committed read reappear once their visibility timeout passes, counted as a failed delivery;
/// a read still inside its open transaction is rolled back with the backend, so those messages
/// are due at once. Another consumer then processes all of them.
#[test]
fn messages_of_a_terminated_consumer_reappear_and_are_processed() {
    let db = TestDb::new("queue_terminated");
    enqueue(&mut db.connect(), "SELECT enqueue_message('work', 'job', jsonb_build_object('n', $1::int))", 100);

    // Consumer A claims 20 with a 2-second visibility timeout (its read commits), then starts a
    // batch of 30 more inside a transaction, and is killed mid-batch.
    let mut a = db.connect();
    let committed: HashSet<i32> = a
        .query("SELECT (payload ->> 'n')::int FROM read_messages('work', 20, 2)", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    a.batch_execute("BEGIN").unwrap();
    let in_transaction: HashSet<i32> = a
        .query("SELECT (payload ->> 'n')::int FROM read_messages('work', 30, 600)", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!((committed.len(), in_transaction.len()), (20, 30));
    let pid = backend_pid(&mut a);
    terminate(&db, pid);
    assert!(a.query_one("SELECT 1", &[]).is_err(), "consumer A's connection survived");

    // Consumer B processes everything it can get until all 100 are done. A's committed 20 come
    // back only after their timeout; polling is bounded so a lost message fails the test.
    let mut b = db.connect();
    let mut processed = HashSet::new();
    let mut first_pass = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while processed.len() < 100 {
        assert!(Instant::now() < deadline, "only {} of 100 processed: messages lost", processed.len());
        let rows =
            b.query("SELECT id::text, (payload ->> 'n')::int FROM read_messages('work', 100, 600)", &[]).unwrap();
        for row in &rows {
            let (id, n): (String, i32) = (row.get(0), row.get(1));
            assert!(b.query_one("SELECT ack_message($1::text::uuid)", &[&id]).unwrap().get::<_, bool>(0));
            assert!(processed.insert(n), "message {n} delivered to B twice");
        }
        if first_pass.is_none() {
            first_pass = Some(processed.clone());
        }
        if rows.is_empty() {
            thread::sleep(Duration::from_millis(200));
        }
    }
    // B's first read already had everything except A's committed claims, which were still
    // invisible: the killed transaction's 30 were due at once.
    let first_pass = first_pass.unwrap();
    assert_eq!(first_pass.len(), 80);
    assert!(first_pass.is_disjoint(&committed), "a message came back before its visibility timeout");
    assert!(in_transaction.is_subset(&first_pass));
    // A's committed claims came back as redeliveries; nothing else was redelivered.
    assert_eq!(
        db.scalar_i64(
            "SELECT count(*) FROM message_queue WHERE retry_count = 1 \
             AND last_error = 'visibility timeout passed without an acknowledgement'"
        ),
        20
    );
    assert_eq!(db.scalar_i64("SELECT count(*) FROM message_queue WHERE status = 'completed'"), 100);
}

/// 8 appenders on one stream, each round all of them appending with the version they saw: one
/// wins each round, the other 7 get 40001, and the versions come out 1..N without gaps.
#[test]
fn eight_appenders_one_stream_one_winner_per_version() {
    const ROUNDS: i64 = 25;
    let db = TestDb::new("append_race");
    let round_start = Arc::new(Barrier::new(8));
    let outcomes = db.race(8, move |worker, client| {
        let append = client
            .prepare("SELECT append_event('ride-1', 'ride', 'moved', jsonb_build_object('worker', $1::int), p_expected_version => $2)")
            .unwrap();
        let mut wins = Vec::new();
        let mut conflicts = 0;
        for round in 0..ROUNDS {
            round_start.wait();
            match client.query_one(&append, &[&(worker as i32), &round]) {
                Ok(_) => wins.push(round + 1),
                Err(e) if e.code() == Some(&SqlState::T_R_SERIALIZATION_FAILURE) => {
                    let message = e.as_db_error().unwrap().message().to_string();
                    assert!(message.contains(&format!("expected {round}")), "{message}");
                    conflicts += 1;
                }
                Err(e) => panic!("worker {worker}, round {round}: {e}"),
            }
        }
        (wins, conflicts)
    });
    let mut versions: Vec<i64> = outcomes.iter().flat_map(|(wins, _)| wins.clone()).collect();
    versions.sort_unstable();
    assert_eq!(versions, (1..=ROUNDS).collect::<Vec<_>>(), "one winner per version");
    assert_eq!(outcomes.iter().map(|(_, c)| c).sum::<i64>(), 7 * ROUNDS, "every loser got 40001");
    // The store agrees: versions 1..N, once each, and the stream head is at N.
    let mut client = db.connect();
    let stored: Vec<i64> = client
        .query("SELECT version FROM event_store WHERE aggregate_id = 'ride-1' ORDER BY version", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(stored, (1..=ROUNDS).collect::<Vec<_>>());
    assert_eq!(db.scalar_i64("SELECT current_version FROM event_streams WHERE aggregate_id = 'ride-1'"), ROUNDS);
}

/// 8 producers enqueue and schedule with the same keys at the same moment: one message and one
/// job per key, and every producer is handed its id.
#[test]
fn idempotent_enqueue_and_schedule_under_concurrency() {
    const KEYS: i32 = 50;
    let db = TestDb::new("queue_idempotency");
    let round_start = Arc::new(Barrier::new(8));
    let ids = db.race(8, move |worker, client| {
        let enqueue = client
            .prepare("SELECT enqueue_message('payments', 'charge', jsonb_build_object('worker', $1::int), 5, now(), 'charge-' || $2::int)::text")
            .unwrap();
        let schedule = client
            .prepare("SELECT schedule_job('receipt', 'send', jsonb_build_object('worker', $1::int), now(), 5, 'receipt-' || $2::int)::text")
            .unwrap();
        let mut ids = Vec::new();
        for key in 0..KEYS {
            round_start.wait();
            let m: String = client.query_one(&enqueue, &[&(worker as i32), &key]).unwrap().get(0);
            let j: String = client.query_one(&schedule, &[&(worker as i32), &key]).unwrap().get(0);
            ids.push((m, j));
        }
        ids
    });
    for key in 0..KEYS as usize {
        let firsts: HashSet<&(String, String)> = ids.iter().map(|w| &w[key]).collect();
        assert_eq!(firsts.len(), 1, "key {key}: producers were handed different ids: {firsts:?}");
    }
    assert_eq!(db.scalar_i64("SELECT count(*) FROM message_queue"), KEYS as i64);
    assert_eq!(db.scalar_i64("SELECT count(DISTINCT idempotency_key) FROM message_queue"), KEYS as i64);
    assert_eq!(db.scalar_i64("SELECT count(*) FROM background_jobs"), KEYS as i64);
    assert_eq!(db.scalar_i64("SELECT count(DISTINCT idempotency_key) FROM background_jobs"), KEYS as i64);
}
