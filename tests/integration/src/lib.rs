//! A database of its own per test, on the cluster scripts/test.sh starts.
//!
//! EASYMO_TEST_PGHOST (the socket directory) and EASYMO_TEST_PGPORT say where it is; without
//! them the tests fail rather than pass vacuously.

use postgres::{Client, NoTls};
use std::sync::{Arc, Barrier};
use std::thread;

pub struct TestDb {
    name: String,
    host: String,
    port: String,
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run these tests through scripts/test.sh"))
}

impl TestDb {
    /// A fresh database `easymo_<name>` with the extension created.
    pub fn new(name: &str) -> TestDb {
        let db =
            TestDb { name: format!("easymo_{name}"), host: env("EASYMO_TEST_PGHOST"), port: env("EASYMO_TEST_PGPORT") };
        let mut admin = db.connect_to("postgres");
        // Two statements: DROP and CREATE DATABASE refuse to run inside one implicit transaction.
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", db.name)).unwrap();
        admin.batch_execute(&format!("CREATE DATABASE {}", db.name)).unwrap();
        db.connect().batch_execute("CREATE EXTENSION easymo").unwrap();
        db
    }

    fn connect_to(&self, dbname: &str) -> Client {
        Client::connect(&format!("host={} port={} user=postgres dbname={dbname}", self.host, self.port), NoTls)
            .unwrap_or_else(|e| panic!("connecting to {dbname}: {e}"))
    }

    pub fn connect(&self) -> Client {
        self.connect_to(&self.name)
    }

    /// Runs `work(worker index, connection)` on `workers` connections at once, all starting
    /// together, and returns what each returned, in worker order.
    pub fn race<T: Send + 'static>(
        &self,
        workers: usize,
        work: impl Fn(usize, &mut Client) -> T + Send + Sync + 'static,
    ) -> Vec<T> {
        let work = Arc::new(work);
        let start = Arc::new(Barrier::new(workers));
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let mut client = self.connect();
                let (work, start) = (Arc::clone(&work), Arc::clone(&start));
                thread::spawn(move || {
                    start.wait();
                    work(w, &mut client)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a worker panicked")).collect()
    }

    /// One value of a one-row, one-column query.
    pub fn scalar_i64(&self, sql: &str) -> i64 {
        self.connect().query_one(sql, &[]).unwrap().get(0)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if !thread::panicking() {
            let _ = self
                .connect_to("postgres")
                .batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

/// A small deterministic generator (xorshift), seeded per worker: reproducible runs, no
/// dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// 0 to n - 1.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// 0 to 99.
    pub fn percent(&mut self) -> u64 {
        self.next_u64() % 100
    }

    /// An amount with up to 4 decimals, 0.0001 to `max`.
    pub fn amount(&mut self, max: u64) -> String {
        let units = 1 + self.next_u64() % (max * 10_000);
        format!("{}.{:04}", units / 10_000, units % 10_000)
    }
}

/// The SQLSTATE of an error the server raised, or what the client saw.
pub fn sqlstate(e: &postgres::Error) -> String {
    e.as_db_error().map(|d| d.code().code().to_owned()).unwrap_or_else(|| format!("client error: {e}"))
}
