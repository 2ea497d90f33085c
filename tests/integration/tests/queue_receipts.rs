//! The message queue as consumers meet it (issue 19): receipts under crashes and slow consumers,
//! dead letters and replay, ordered groups under 8 consumers, a waiting read woken by an enqueue
//! (and idle without CPU meanwhile), batch producers racing with the same keys.

use easymo_integration_tests::{sqlstate, Rng, TestDb};
use postgres::error::SqlState;
use postgres::Client;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

fn queue_batch(c: &mut Client, queue: &str, messages: &[String]) {
    let json = format!("[{}]", messages.join(","));
    let n: i64 =
        c.query_one("SELECT count(*) FROM enqueue_messages($1, $2::text::jsonb)", &[&queue, &json]).unwrap().get(0);
    assert_eq!(n as usize, messages.len());
}

/// 4 consumers drain 5,000 messages with 2-second leases. Some consumers crash (their backend
/// terminated mid-batch: the batch comes back when its leases lapse), some are slow (they work
/// past their lease: by then another consumer may have the message, and the slow one's receipt
/// is refused with EQ001, changing nothing). 50 poison messages always fail: they are dead after
/// max_retries, and come back with replay_dead_letter. In the end every message was acknowledged
/// exactly once (a successful ack_receipt), and none is left.
#[test]
fn consumers_with_crashes_and_lapsed_leases_ack_every_message_once() {
    const MESSAGES: usize = 5000;
    const POISON_EVERY: usize = 100;
    let db = TestDb::new("receipts_stress");
    let mut c = db.connect();
    for chunk in (0..MESSAGES).collect::<Vec<_>>().chunks(500) {
        let msgs: Vec<String> = chunk
            .iter()
            .map(|n| {
                format!(r#"{{"message_type": "job", "payload": {{"n": {n}, "poison": {}}}}}"#, n % POISON_EVERY == 7)
            })
            .collect();
        queue_batch(&mut c, "stress", &msgs);
    }
    // Enough retries that crashes and lapses alone never kill a message; poison ones die by nacks.
    c.batch_execute("UPDATE message_queue SET max_retries = 20 WHERE payload ->> 'poison' = 'false'").unwrap();
    let acked: Arc<Mutex<HashMap<i64, u32>>> = Arc::new(Mutex::new(HashMap::new()));
    let stale = Arc::new(Mutex::new(0u64));
    let crashes = Arc::new(Mutex::new(0u64));
    let deadline = Instant::now() + Duration::from_secs(120);
    let done = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for w in 0..4u64 {
        let (db_acked, stale, crashes, done) =
            (Arc::clone(&acked), Arc::clone(&stale), Arc::clone(&crashes), Arc::clone(&done));
        let mut client = db.connect();
        let mut admin = db.connect();
        handles.push(thread::spawn(move || {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((w + 1) * 7919));
            while !done.load(Ordering::Relaxed) && Instant::now() < deadline {
                let rows = match client.query(
                    "SELECT receipt, (payload ->> 'n')::bigint, payload ->> 'poison' = 'true' FROM read_messages('stress', 10, 2, 200)",
                    &[],
                ) {
                    Ok(rows) => rows,
                    Err(e) => panic!("claim failed: {e}"),
                };
                if rows.is_empty() {
                    continue;
                }
                // A crash: the backend is terminated with the batch claimed and unacknowledged.
                if rng.percent() < 2 {
                    let pid: i32 = client.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
                    admin.execute("SELECT pg_terminate_backend($1)", &[&pid]).unwrap();
                    *crashes.lock().unwrap() += 1;
                    client = loop {
                        if let Ok(c) = postgres::Client::connect(&db_url(), postgres::NoTls) {
                            break c;
                        }
                        thread::sleep(Duration::from_millis(50));
                    };
                    continue;
                }
                // A slow consumer: works past its 2-second lease.
                if rng.percent() < 2 {
                    thread::sleep(Duration::from_millis(2300));
                }
                for row in rows {
                    let (receipt, n, poison): (String, i64, bool) = (row.get(0), row.get(1), row.get(2));
                    let sql = if poison { "SELECT nack_receipt($1, 'poison') IS NOT NULL" } else { "SELECT ack_receipt($1)" };
                    match client.query_one(sql, &[&receipt]) {
                        Ok(r) => {
                            let ok: bool = r.get(0);
                            assert!(ok, "a fresh acknowledgement returned false");
                            if !poison {
                                *db_acked.lock().unwrap().entry(n).or_default() += 1;
                            }
                        }
                        Err(e) if e.code() == Some(&SqlState::from_code("EQ001")) => *stale.lock().unwrap() += 1,
                        Err(e) => panic!("ack/nack failed with {}: {e}", sqlstate(&e)),
                    }
                }
            }
        }));
    }
    // Done when every healthy message is acknowledged and every poison one dead; poison nacks
    // back off (1, 2, 4 s ...), so make them due as they come back.
    let healthy = (MESSAGES - MESSAGES / POISON_EVERY) as i64;
    loop {
        c.batch_execute(
            "UPDATE message_queue SET scheduled_at = now() WHERE status = 'pending' AND scheduled_at > now()",
        )
        .unwrap();
        let (completed, dead): (i64, i64) = {
            let r = c
                .query_one(
                    "SELECT count(*) FILTER (WHERE status = 'completed'), count(*) FILTER (WHERE status = 'dead_letter') FROM message_queue",
                    &[],
                )
                .unwrap();
            (r.get(0), r.get(1))
        };
        if completed == healthy && dead == (MESSAGES / POISON_EVERY) as i64 {
            break;
        }
        assert!(Instant::now() < deadline, "not drained in time: {completed} completed, {dead} dead");
        thread::sleep(Duration::from_millis(200));
    }
    done.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().expect("a consumer panicked");
    }
    let acked = acked.lock().unwrap();
    let twice: Vec<_> = acked.iter().filter(|(_, &k)| k != 1).collect();
    assert!(twice.is_empty(), "messages acknowledged more than once: {twice:?}");
    assert_eq!(acked.len() as i64, healthy, "every healthy message acknowledged");
    let (stale, crashes) = (*stale.lock().unwrap(), *crashes.lock().unwrap());
    eprintln!("receipts stress: {healthy} acknowledged once each, {stale} stale receipts refused, {crashes} consumers crashed");
    assert!(crashes > 0 && stale > 0, "the test must exercise crashes ({crashes}) and stale receipts ({stale})");
    // Dead letters: exactly after their retry limit; replayed, they are delivered again.
    let wrong: i64 = c
        .query_one(
            "SELECT count(*) FROM message_queue WHERE status = 'dead_letter' AND retry_count <> max_retries + 1",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(wrong, 0, "a message went dead before or after its retry limit");
    let replayed: i64 = c
        .query_one(
            "SELECT count(*) FILTER (WHERE replay_dead_letter(id)) FROM message_queue WHERE status = 'dead_letter'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(replayed, (MESSAGES / POISON_EVERY) as i64);
    let redelivered: i64 =
        c.query_one("SELECT count(ack_receipt(receipt)) FROM read_messages('stress', 1000, 30)", &[]).unwrap().get(0);
    assert_eq!(redelivered, replayed, "every replayed message is delivered again");
    let left: i64 = c.query_one("SELECT count(*) FROM message_queue WHERE status <> 'completed'", &[]).unwrap().get(0);
    assert_eq!(left, 0);
}

fn db_url() -> String {
    format!(
        "host={} port={} user=postgres dbname=easymo_receipts_stress",
        std::env::var("EASYMO_TEST_PGHOST").unwrap(),
        std::env::var("EASYMO_TEST_PGPORT").unwrap()
    )
}

/// 40 groups of 25 messages, queued interleaved; 8 consumers claim in batches and work a random
/// while. No group ever has two messages in flight at once, and each group's messages arrive
/// in the order they were queued; different groups go on in parallel.
#[test]
fn ordered_groups_one_at_a_time_in_order_under_8_consumers() {
    const GROUPS: usize = 40;
    const PER_GROUP: usize = 25;
    let db = TestDb::new("receipts_groups");
    let mut c = db.connect();
    let msgs: Vec<String> = (0..PER_GROUP)
        .flat_map(|n| {
            (0..GROUPS).map(move |g| {
                format!(r#"{{"message_type": "t", "payload": {{"g": {g}, "n": {n}}}, "group_key": "trip-{g}", "priority": {}}}"#, 1 + (g + n) % 10)
            })
        })
        .collect();
    queue_batch(&mut c, "groups", &msgs);
    let in_flight: Arc<Mutex<HashSet<i64>>> = Arc::new(Mutex::new(HashSet::new()));
    let received: Arc<Mutex<HashMap<i64, Vec<i64>>>> = Arc::new(Mutex::new(HashMap::new()));
    let concurrent_groups = Arc::new(Mutex::new(0usize));
    let (flight, got, most) = (Arc::clone(&in_flight), Arc::clone(&received), Arc::clone(&concurrent_groups));
    db.race(8, move |w, client| {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ ((w as u64 + 1) * 104_729));
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut idle = 0;
        while idle < 20 && Instant::now() < deadline {
            let rows = client
                .query("SELECT receipt, (payload ->> 'g')::bigint, (payload ->> 'n')::bigint FROM read_messages('groups', 5, 60)", &[])
                .unwrap();
            if rows.is_empty() {
                idle += 1;
                thread::sleep(Duration::from_millis(5));
                continue;
            }
            idle = 0;
            for row in &rows {
                let (g, n): (i64, i64) = (row.get(1), row.get(2));
                let mut f = flight.lock().unwrap();
                assert!(f.insert(g), "group {g} delivered while another of its messages was in flight");
                let mut m = most.lock().unwrap();
                *m = (*m).max(f.len());
                drop(f);
                got.lock().unwrap().entry(g).or_default().push(n);
            }
            thread::sleep(Duration::from_millis(rng.next_u64() % 4));
            for row in &rows {
                let (receipt, g): (String, i64) = (row.get(0), row.get(1));
                // Out of the in-flight set before the acknowledgement commits: the next message of
                // the group cannot be claimed until it has.
                flight.lock().unwrap().remove(&g);
                let ok: bool = client.query_one("SELECT ack_receipt($1)", &[&receipt]).unwrap().get(0);
                assert!(ok);
            }
        }
    });
    let received = received.lock().unwrap();
    assert_eq!(received.len(), GROUPS);
    for (g, ns) in received.iter() {
        let expected: Vec<i64> = (0..PER_GROUP as i64).collect();
        assert_eq!(ns, &expected, "group {g} out of order or incomplete");
    }
    let most = *concurrent_groups.lock().unwrap();
    eprintln!("ordered groups: {GROUPS} x {PER_GROUP} messages in order, up to {most} groups in flight at once");
    assert!(most > 1, "groups were not delivered in parallel");
}

/// CPU time (user + system, in clock ticks) a process has used so far.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the backend's /proc entry");
    let fields: Vec<&str> = stat.rsplit_once(") ").expect("stat format").1.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// A read waiting for work returns within 50 ms of the enqueue that gives it some, and uses no
/// CPU while it waits.
#[test]
fn a_waiting_read_wakes_at_an_enqueue_and_idles_without_cpu() {
    let db = TestDb::new("receipts_wait");
    let mut producer = db.connect();
    let mut latencies = Vec::new();
    for round in 0..5 {
        let mut consumer = db.connect();
        let pid: i32 = consumer.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
        let reader = thread::spawn(move || {
            let rows = consumer.query("SELECT id FROM read_messages('waiting', 1, 30, 10000)", &[]).unwrap();
            (Instant::now(), rows.len())
        });
        thread::sleep(Duration::from_millis(300));
        let idle = if round == 0 {
            let before = cpu_ticks(pid);
            thread::sleep(Duration::from_secs(2));
            Some(cpu_ticks(pid) - before)
        } else {
            None
        };
        let sent = Instant::now();
        producer.execute("SELECT enqueue_message('waiting', 't', '{}')", &[]).unwrap();
        let (woke, got) = reader.join().unwrap();
        assert_eq!(got, 1, "the waiting read got the message");
        latencies.push(woke.duration_since(sent));
        if let Some(ticks) = idle {
            eprintln!("waiting read: {ticks} clock ticks (10 ms each) of CPU in 2 s of waiting");
            assert!(ticks <= 2, "a waiting read used {ticks} ticks of CPU in 2 s");
        }
    }
    let worst = latencies.iter().max().unwrap();
    eprintln!("waiting read: woken {latencies:?} after the enqueue committed");
    assert!(*worst < Duration::from_millis(50), "a waiting read took {worst:?} to wake");
}

/// 8 producers queue the same 50 keys at once, each in its own order: 50 messages, and every
/// producer got the same id for each key (no deadlock, no duplicate).
#[test]
fn batch_producers_racing_with_the_same_keys_queue_each_once() {
    let db = TestDb::new("receipts_batch_keys");
    let ids = db.race(8, |w, c| {
        let mut keys: Vec<usize> = (0..50).collect();
        keys.rotate_left(w * 7);
        if w % 2 == 1 {
            keys.reverse();
        }
        let msgs: Vec<String> = keys
            .iter()
            .map(|k| format!(r#"{{"message_type": "t", "payload": {{"k": {k}}}, "idempotency_key": "key-{k}"}}"#))
            .collect();
        let json = format!("[{}]", msgs.join(","));
        let rows = c.query("SELECT e::text FROM enqueue_messages('keys', $1::text::jsonb) e", &[&json]).unwrap();
        keys.into_iter().zip(rows.iter().map(|r| r.get::<_, String>(0))).collect::<HashMap<usize, String>>()
    });
    for other in &ids[1..] {
        assert_eq!(other, &ids[0], "producers got different ids for one key");
    }
    assert_eq!(db.scalar_i64("SELECT count(*) FROM message_queue WHERE queue_name = 'keys'"), 50);
}
