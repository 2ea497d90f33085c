//! Wallets under concurrency: 16 connections for 30 seconds of random transfers, batches, holds
//! (posted, voided, left to expire), payouts from the hot fee account and replayed keys among
//! 200 accounts, with run_maintenance() beside them; then the books must balance. And batches
//! whose connections are killed mid-way leave nothing half-written.

use easymo_integration_tests::{sqlstate, Rng, TestDb};
use postgres::Client;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ACCOUNTS: usize = 200;
const WORKERS: usize = 16;
const SECONDS: u64 = 30;

fn setup(db: &TestDb) -> (Vec<String>, String, String) {
    let mut c = db.connect();
    let ext: String =
        c.query_one("SELECT create_wallet_account('RWF', 'external', p_name => 'world')::text", &[]).unwrap().get(0);
    let fees: String = c
        .query_one("SELECT create_wallet_account('RWF', 'platform', p_name => 'fees', p_hot => true)::text", &[])
        .unwrap()
        .get(0);
    // Users; every tenth has a credit line of 100.
    let users: Vec<String> = c
        .query(
            "SELECT create_wallet_account('RWF', 'user', gen_random_uuid(), 'user ' || g,
                                          CASE WHEN g % 10 = 0 THEN -100 ELSE 0 END)::text
               FROM generate_series(1, $1::int) g",
            &[&(ACCOUNTS as i32)],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    c.execute(
        "SELECT wallet_transfer($1::text::uuid, id, 1000, 'topup-' || id) FROM wallet_accounts WHERE kind = 'user'",
        &[&ext],
    )
    .unwrap();
    (users, ext, fees)
}

/// Every invariant of the ledger, checked on the database as it is.
fn assert_books_balance(c: &mut Client) {
    let rows =
        c.query("SELECT currency, balance_sum::text, accounts_mismatched, ok FROM reconcile_wallets()", &[]).unwrap();
    assert!(!rows.is_empty());
    for r in &rows {
        let (currency, sum, mismatched, ok): (String, String, i64, bool) = (r.get(0), r.get(1), r.get(2), r.get(3));
        assert!(ok, "{currency}: balances sum to {sum}, {mismatched} accounts disagree with their entries");
    }
    let one = |c: &mut Client, sql: &str| -> i64 { c.query_one(sql, &[]).unwrap().get(0) };
    // No available balance below its floor.
    assert_eq!(
        one(c, "SELECT count(*) FROM wallet_accounts WHERE min_balance IS NOT NULL AND posted - pending_debits < min_balance"),
        0
    );
    // Versions gapless from 1, and each entry's balance after is the running sum of the entries.
    assert_eq!(
        one(
            c,
            "SELECT count(*) FROM (SELECT account_id, min(version) AS lo, max(version) AS hi, count(*) AS n
                                     FROM wallet_entries GROUP BY account_id) v WHERE lo <> 1 OR hi <> n"
        ),
        0
    );
    assert_eq!(
        one(
            c,
            "SELECT count(*) FROM (SELECT balance_after, sum(amount) OVER (PARTITION BY account_id ORDER BY version) AS running
                                     FROM wallet_entries) e WHERE balance_after <> running"
        ),
        0
    );
    // Every posted transfer has its two entries (or, to a hot account, one and a credit not yet
    // folded), summing to zero; holds have none.
    assert_eq!(
        one(
            c,
            "SELECT count(*) FROM wallet_transfers t
               LEFT JOIN LATERAL (SELECT count(*) AS n, coalesce(sum(amount), 0) AS total FROM wallet_entries e WHERE e.transfer_id = t.id) e ON true
               LEFT JOIN LATERAL (SELECT count(*) AS n, coalesce(sum(amount), 0) AS total FROM wallet_hot_credits h WHERE h.transfer_id = t.id) h ON true
              WHERE CASE WHEN t.expires_at IS NULL THEN e.n + h.n <> 2 OR e.total + h.total <> 0
                         ELSE e.n + h.n <> 0 END"
        ),
        0
    );
    // A hold that was posted has exactly one posting transfer, for at most what it held.
    assert_eq!(
        one(
            c,
            "SELECT count(*) FROM wallet_transfers h
              WHERE h.expires_at IS NOT NULL AND h.status = 'posted'
                AND (SELECT count(*) FROM wallet_transfers p WHERE p.pending_id = h.id AND p.amount <= h.amount) <> 1"
        ),
        0
    );
    assert_eq!(
        one(c, "SELECT count(*) FROM wallet_transfers p WHERE p.pending_id IS NOT NULL AND (SELECT status FROM wallet_transfers h WHERE h.id = p.pending_id) <> 'posted'"),
        0
    );
}

#[test]
fn wallets_sixteen_connections_of_random_transfers_keep_the_books() {
    let db = TestDb::new("wallets_stress");
    let (users, ext, fees) = setup(&db);
    let total_before: String =
        db.connect().query_one("SELECT sum(posted)::text FROM wallet_accounts", &[]).unwrap().get(0);
    let users = Arc::new(users);
    let stop = Arc::new(AtomicBool::new(false));

    // Beside the workers: maintenance (expires holds, folds the hot account) and a watcher for
    // any available balance below its floor, as it happens.
    let watcher = {
        let mut c = db.connect();
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut runs = 0;
            while !stop.load(Ordering::Relaxed) {
                let below: i64 = c
                    .query_one(
                        "SELECT count(*) FROM wallet_accounts WHERE min_balance IS NOT NULL AND posted - pending_debits < min_balance",
                        &[],
                    )
                    .unwrap()
                    .get(0);
                assert_eq!(below, 0, "an available balance went below its floor");
                let errors: String = c.query_one("SELECT (run_maintenance() -> 'errors')::text", &[]).unwrap().get(0);
                assert_eq!(errors, "{}", "run_maintenance failed beside the writers");
                runs += 1;
                std::thread::sleep(Duration::from_millis(300));
            }
            runs
        })
    };

    let deadline = Instant::now() + Duration::from_secs(SECONDS);
    let outcomes = {
        let (users, ext, fees) = (Arc::clone(&users), ext.clone(), fees.clone());
        db.race(WORKERS, move |worker, c| {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (worker as u64 + 1));
            let mut holds: Vec<String> = Vec::new();
            let mut keys: Vec<(String, String, String, String)> = Vec::new();
            let mut counts: HashMap<String, u64> = HashMap::new();
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                let a = &users[rng.below(users.len())];
                let b = &users[rng.below(users.len())];
                let op = rng.below(100);
                let result: Result<(), postgres::Error> = if a == b {
                    Ok(())
                } else if op < 35 {
                    let amount = rng.amount(150);
                    let key = format!("w{worker}-{n}");
                    keys.push((a.clone(), b.clone(), amount.clone(), key.clone()));
                    c.execute(
                        "SELECT wallet_transfer($1::text::uuid, $2::text::uuid, $3::text::numeric, $4)",
                        &[a, b, &amount, &key],
                    )
                    .map(|_| ())
                } else if op < 45 && !keys.is_empty() {
                    // A retry of an earlier call: the first id, or (if the first was refused) a
                    // fresh attempt.
                    let (a, b, amount, key) = keys[rng.below(keys.len())].clone();
                    c.execute(
                        "SELECT wallet_transfer($1::text::uuid, $2::text::uuid, $3::text::numeric, $4)",
                        &[&a, &b, &amount, &key],
                    )
                    .map(|_| ())
                } else if op < 60 {
                    // A ride: fare to the driver, fee to the platform, all or none.
                    let batch = format!(
                        r#"[{{"debit_account_id": "{a}", "credit_account_id": "{b}", "amount": {}}},
                            {{"debit_account_id": "{a}", "credit_account_id": "{fees}", "amount": {}}}]"#,
                        rng.amount(80),
                        rng.amount(8)
                    );
                    c.execute("SELECT count(*) FROM wallet_transfer_batch($1::text::jsonb)", &[&batch]).map(|_| ())
                } else if op < 72 {
                    let amount = rng.amount(100);
                    let seconds = 1 + rng.below(3) as i32;
                    c.query_one(
                        "SELECT wallet_transfer($1::text::uuid, $2::text::uuid, $3::text::numeric, NULL, $4)::text",
                        &[a, b, &amount, &seconds],
                    )
                    .map(|r| holds.push(r.get(0)))
                } else if op < 84 && !holds.is_empty() {
                    let hold = holds.swap_remove(rng.below(holds.len()));
                    if rng.below(3) == 0 {
                        c.execute("SELECT void_wallet_hold($1::text::uuid)", &[&hold]).map(|_| ())
                    } else {
                        let part = format!("{}", 1 + rng.below(10));
                        c.execute(
                            "SELECT post_wallet_hold($1::text::uuid, least($2::text::numeric, amount)) FROM wallet_transfers WHERE id = $1::text::uuid",
                            &[&hold, &part],
                        )
                        .map(|_| ())
                    }
                } else if op < 90 {
                    let amount = rng.amount(20);
                    c.execute(
                        "SELECT wallet_transfer($1::text::uuid, $2::text::uuid, $3::text::numeric)",
                        &[&fees, &ext, &amount],
                    )
                    .map(|_| ())
                } else {
                    let amount = rng.amount(200);
                    c.execute(
                        "SELECT wallet_transfer($1::text::uuid, $2::text::uuid, $3::text::numeric)",
                        &[&ext, a, &amount],
                    )
                    .map(|_| ())
                };
                let outcome = match result {
                    Ok(()) => "ok".to_owned(),
                    Err(e) => sqlstate(&e),
                };
                *counts.entry(outcome).or_default() += 1;
            }
            counts
        })
    };
    stop.store(true, Ordering::Relaxed);
    let maintenance_runs = watcher.join().expect("the watcher failed");

    let mut total: HashMap<String, u64> = HashMap::new();
    for counts in outcomes {
        for (k, v) in counts {
            *total.entry(k).or_default() += v;
        }
    }
    eprintln!("wallets stress: {total:?}, {maintenance_runs} maintenance runs beside");
    // Refusals are insufficient funds and holds already resolved or lapsed; never a deadlock,
    // a serialization failure or anything else.
    for (outcome, n) in &total {
        assert!(["ok", "EW001", "EW006"].contains(&outcome.as_str()), "{n} calls ended in {outcome}");
    }
    assert!(total.get("ok").copied().unwrap_or(0) > 1000, "too few transfers to prove anything: {total:?}");

    let mut c = db.connect();
    // Lapsed holds released, the hot account folded: then the books, and the total.
    std::thread::sleep(Duration::from_secs(3));
    c.query_one("SELECT run_maintenance()", &[]).unwrap();
    assert_books_balance(&mut c);
    let total_after: String = c.query_one("SELECT sum(posted)::text FROM wallet_accounts", &[]).unwrap().get(0);
    assert_eq!(total_after.parse::<f64>().unwrap(), total_before.parse::<f64>().unwrap(), "money was made or lost");
    let open: i64 = c
        .query_one("SELECT count(*) FROM wallet_transfers WHERE status = 'pending' AND expires_at < now()", &[])
        .unwrap()
        .get(0);
    assert_eq!(open, 0, "lapsed holds left open after run_maintenance");
    let unfolded: i64 = c.query_one("SELECT count(*) FROM wallet_hot_credits", &[]).unwrap().get(0);
    assert_eq!(unfolded, 0, "hot credits left unfolded after run_maintenance");
}

#[test]
fn wallets_batches_killed_mid_way_leave_nothing_half_written() {
    let db = TestDb::new("wallets_killed");
    let (users, ext, fees) = setup(&db);
    let users = Arc::new(users);
    let mut admin = db.connect();
    let mut blocker = db.connect();
    let mut killed = 0;
    let mut killed_mid_write = 0;
    for round in 0..12 {
        // A batch of 100 keyed legs in a transaction that then waits. Even rounds: its last key
        // (legs claim their keys in key order) is being claimed by another open transaction, so
        // the batch's one write statement stops half way, its first 99 transfers inserted, and is
        // killed there. Odd rounds: killed at some point while the batch runs or after it,
        // before the commit.
        let mid_write = round % 2 == 0;
        let last_key = format!("zz-{round}");
        if mid_write {
            blocker.batch_execute("BEGIN").unwrap();
            blocker
                .execute("SELECT wallet_transfer($1::text::uuid, $2::text::uuid, 1, $3)", &[&ext, &fees, &last_key])
                .unwrap();
        }
        let mut victim = db.connect();
        let pid: i32 = victim.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
        let legs: Vec<String> = (0..100)
            .map(|i| {
                let (a, b) = (&users[(round * 7 + i) % users.len()], &users[(round * 7 + i + 1) % users.len()]);
                let credit = if i % 10 == 0 { &fees } else { b };
                let key = if i == 99 { last_key.clone() } else { format!("k-{round}-{i:03}") };
                format!(
                    r#"{{"debit_account_id": "{a}", "credit_account_id": "{credit}", "amount": 0.5, "idempotency_key": "{key}", "metadata": {{"round": {round}}}}}"#
                )
            })
            .collect();
        let batch = format!("[{}]", legs.join(","));
        let worker = std::thread::spawn(move || {
            let _ = victim.batch_execute("BEGIN");
            let r = victim.execute("SELECT count(*) FROM wallet_transfer_batch($1::text::jsonb)", &[&batch]);
            let _ = victim.batch_execute("SELECT pg_sleep(30)");
            r.is_ok()
        });
        if mid_write {
            // Waiting for the other transaction's key: inside its write statement.
            let mut waiting = false;
            for _ in 0..600 {
                waiting = admin
                    .query_one("SELECT wait_event = 'transactionid' FROM pg_stat_activity WHERE pid = $1", &[&pid])
                    .unwrap()
                    .get::<_, Option<bool>>(0)
                    .unwrap_or(false);
                if waiting {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            assert!(waiting, "round {round}: the batch never waited for the key being claimed");
        } else {
            std::thread::sleep(Duration::from_millis(5 + 20 * (round as u64 % 4)));
        }
        let done: bool = admin.query_one("SELECT pg_terminate_backend($1)", &[&pid]).unwrap().get(0);
        killed += done as i32;
        killed_mid_write += (done && mid_write) as i32;
        let _ = worker.join();
        if mid_write {
            blocker.batch_execute("ROLLBACK").unwrap();
        }
    }
    assert_eq!(killed_mid_write, 6, "every even round is killed inside its write statement");
    assert!(killed > 0);
    // Every round's batch is all there (it committed) or not at all: here, never committed.
    let rounds: i64 =
        admin.query_one("SELECT count(*) FROM wallet_transfers WHERE metadata ? 'round'", &[]).unwrap().get(0);
    assert_eq!(rounds, 0, "a killed batch left {rounds} transfers");
    admin.query_one("SELECT run_maintenance()", &[]).unwrap();
    assert_books_balance(&mut admin);
    // The accounts it had locked are free again: a transfer between them goes through.
    admin.execute("SELECT wallet_transfer($1::text::uuid, $2::text::uuid, 1)", &[&users[0], &users[1]]).unwrap();
}
