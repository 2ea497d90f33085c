//! Counters that a read keeps without writing in the caller's transaction: cache hits and misses
//! per cache type, feature flag exposures per flag, environment, variant and answer.
//!
//! 0.2.0 added a session's cache counts to a table inside the caller's transaction: a plain
//! `SELECT get_cache(k)` then took an xid and row locks, waited behind other sessions, could
//! deadlock with another reader, and lost its counts on rollback. Now a backend counts in its
//! own memory and hands its counts on at most every `easymo.stats_flush_interval` seconds (at
//! the start of a statement that counts) and when it exits:
//!   * with easymo preloaded, into shared memory: one table of slots for the whole server, also
//!     on a standby; like pg_stat_*, it starts from zero when the server starts;
//!   * otherwise to a short-lived background worker, which adds them to the counters tables
//!     (cache_stat_counters, feature_flag_exposure_counters) in a transaction of its own. The
//!     caller never takes an xid or a lock and never waits; read-only callers count the same. On
//!     a standby without preloading the counts stay with the session that made them.
//!
//! Readers add shared memory, the tables and the calling session's own pending counts.
//!
//! A counter's key is its kind (one byte) followed by its name parts, separated by NUL (which no
//! Postgres text can contain): a cache type, or flag key, environment and variant.

#![forbid(unsafe_code)]

use crate::gucs;
use crate::postgres::{backend, bgworker, shmem};
use pgrx::prelude::*;
use std::cell::RefCell;
use std::collections::HashMap;
use xxhash_rust::xxh3::Xxh3DefaultBuilder;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    CacheHit = 1,
    CacheMiss = 2,
    /// A flag evaluation that answered true (key: flag key, environment, variant).
    FlagOn = 3,
    FlagOff = 4,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::CacheHit,
            2 => Kind::CacheMiss,
            3 => Kind::FlagOn,
            4 => Kind::FlagOff,
            _ => return None,
        })
    }
}

/// The parts of a key, as the kind's table stores them.
pub fn split_key(key: &[u8]) -> Vec<String> {
    key.split(|b| *b == 0).map(|p| String::from_utf8_lossy(p).into_owned()).collect()
}

/// Pending counts, by encoded key (kind byte, then the NUL-separated parts). Hashed with xxh3:
/// every cache read adds one, and std's SipHash cost more than the rest of the addition.
pub type Counts = HashMap<Vec<u8>, u64, Xxh3DefaultBuilder>;

/// A source of counts kept elsewhere (the flag cache counts on its flags): moves them into
/// `into` when a flush or a reader needs them.
pub type Drain = fn(into: &mut dyn FnMut(Kind, &[&str], u64));

/// Flushes to shared memory at most this often (it costs a lock, nothing more).
const SHARED_INTERVAL_US: i64 = 1_000_000;

// ---------------------------------------------------------------------------------------------
// This backend's counts.

#[derive(Default)]
struct Local {
    pending: Pending,
    last_flush: pg_sys::TimestampTz,
    exit_hook: bool,
    drains: Vec<Drain>,
}

/// Pending counts, and the key counted last with its count apart: a run of one key (a service's
/// cache hits of one type) costs a comparison, not a hash and a lookup each (perf, 8 clients:
/// the hash and the lookup were a tenth of what a cache hit costs in easymo's code).
#[derive(Default)]
struct Pending {
    counts: Counts,
    last: Vec<u8>,
    last_n: u64,
    scratch: Vec<u8>,
}

impl Pending {
    fn add<P: AsRef<[u8]>>(&mut self, kind: Kind, parts: &[P], n: u64) {
        encode(&mut self.scratch, kind, parts);
        if self.scratch != self.last {
            self.settle();
            std::mem::swap(&mut self.last, &mut self.scratch);
        }
        self.last_n += n;
    }

    /// Moves the last key's count into the map.
    fn settle(&mut self) {
        if self.last_n > 0 {
            add_to(&mut self.counts, &self.last, self.last_n);
            self.last_n = 0;
        }
    }

    /// Every count, in the map.
    fn take(&mut self) -> Counts {
        self.settle();
        std::mem::take(&mut self.counts)
    }
}

thread_local! {
    static LOCAL: RefCell<Local> = RefCell::new(Local::default());
}

fn encode<P: AsRef<[u8]>>(buf: &mut Vec<u8>, kind: Kind, parts: &[P]) {
    buf.clear();
    buf.push(kind as u8);
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            buf.push(0);
        }
        buf.extend_from_slice(p.as_ref());
    }
}

fn add_to(counts: &mut Counts, key: &[u8], n: u64) {
    match counts.get_mut(key) {
        Some(c) => *c += n,
        None => {
            counts.insert(key.to_vec(), n);
        }
    }
}

/// Registers a source of counts kept elsewhere; called once per backend, from _PG_init.
pub fn register_drain(drain: Drain) {
    LOCAL.with_borrow_mut(|l| l.drains.push(drain));
}

/// Counts `n` events of `kind` under `parts` (texts, as str or bytes), and hands the backend's
/// counts on when that is due.
pub fn add<P: AsRef<[u8]>>(kind: Kind, parts: &[P], n: u64) {
    LOCAL.with_borrow_mut(|l| l.pending.add(kind, parts, n));
    tick();
}

/// Hands the counts on when the interval has passed since the last time. Cheap: a comparison
/// with the statement's start time, which Postgres has already read.
pub fn tick() {
    let now = backend::statement_start();
    let due = LOCAL.with_borrow_mut(|l| {
        if l.last_flush == 0 {
            // The first interval is counted from the first event.
            l.last_flush = now;
            if !l.exit_hook {
                l.exit_hook = true;
                // A backend that exits hands its last counts on.
                backend::at_exit(flush);
            }
        }
        let interval =
            if shmem::ready() { SHARED_INTERVAL_US } else { i64::from(gucs::STATS_FLUSH_INTERVAL.get()) * 1_000_000 };
        now - l.last_flush >= interval
    });
    if due {
        flush();
    }
}

/// Takes this backend's counts, those kept by the drains included.
fn take_local() -> Counts {
    let (mut pending, drains) = LOCAL.with_borrow_mut(|l| (l.pending.take(), l.drains.clone()));
    let mut scratch = Vec::new();
    for drain in drains {
        drain(&mut |kind, parts, n| {
            encode(&mut scratch, kind, parts);
            add_to(&mut pending, &scratch, n);
        });
    }
    pending
}

/// Gives counts back to this backend (a hand-over that could not happen now).
fn give_back(counts: Counts) {
    LOCAL.with_borrow_mut(|l| {
        for (k, n) in counts {
            *l.pending.counts.entry(k).or_default() += n;
        }
    });
}

/// Hands this backend's counts on: to shared memory, or to a flush worker.
pub fn flush() {
    hand_over(false);
}

/// Hands the counts on; with `wait`, until the flush worker has stored them. False when they
/// could not be handed on now (they are kept).
fn hand_over(wait: bool) -> bool {
    let now = backend::statement_start();
    LOCAL.with_borrow_mut(|l| l.last_flush = now);
    let counts = take_local();
    if counts.is_empty() {
        return true;
    }
    if shmem::ready() {
        shmem::add_all(&counts);
        return true;
    }
    if bgworker::start_flush_worker(&encode_batch(&counts), wait) {
        return true;
    }
    give_back(counts);
    false
}

/// The counts of `kinds` as seen from this backend: shared memory and this backend's pending
/// counts (the tables are read by the callers, with SQL).
pub fn totals(kinds: &[Kind]) -> Counts {
    let wanted = |key: &[u8]| key.first().and_then(|b| Kind::from_byte(*b)).is_some_and(|k| kinds.contains(&k));
    let local = take_local();
    let mut totals: Counts = local.iter().filter(|(k, _)| wanted(k)).map(|(k, n)| (k.clone(), *n)).collect();
    give_back(local);
    if shmem::ready() {
        for (k, n) in shmem::snapshot() {
            if wanted(&k) {
                *totals.entry(k).or_default() += n;
            }
        }
    }
    totals
}

// ---------------------------------------------------------------------------------------------
// Without preloading: a short-lived background worker (src/postgres/bgworker.rs) adds a batch
// of counts to the tables, in a transaction of its own.

/// A batch as bytes: (key length u32, key, count u64) after one another.
fn encode_batch(counts: &Counts) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(counts.len() * 32);
    for (k, n) in counts {
        bytes.extend_from_slice(&(k.len() as u32).to_le_bytes());
        bytes.extend_from_slice(k);
        bytes.extend_from_slice(&n.to_le_bytes());
    }
    bytes
}

fn decode_batch(mut bytes: &[u8]) -> Vec<(Vec<u8>, u64)> {
    let mut out = Vec::new();
    while bytes.len() >= 4 {
        let len = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
        if bytes.len() < 4 + len + 8 {
            break;
        }
        let key = bytes[4..4 + len].to_vec();
        let n = u64::from_le_bytes(bytes[4 + len..12 + len].try_into().expect("8 bytes"));
        out.push((key, n));
        bytes = &bytes[12 + len..];
    }
    out
}

/// Run by the flush worker, in its transaction: adds a batch to the extension's tables, rows in
/// key order (two workers upserting the same rows then lock them in the same order).
pub fn store_batch(bytes: &[u8]) {
    let counts = decode_batch(bytes);
    let found = Spi::get_one::<String>(
        "SELECT pg_catalog.quote_ident(n.nspname) FROM pg_catalog.pg_extension e \
           JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace \
          WHERE e.extname OPERATOR(pg_catalog.=) 'easymo'",
    );
    let Ok(Some(schema)) = found else { return };
    let mut cache: std::collections::BTreeMap<String, (i64, i64)> = Default::default();
    let mut flags: std::collections::BTreeMap<(String, String, String, bool), i64> = Default::default();
    for (key, n) in &counts {
        let Some(kind) = key.first().and_then(|b| Kind::from_byte(*b)) else { continue };
        let parts = split_key(&key[1..]);
        let n = i64::try_from(*n).unwrap_or(i64::MAX);
        match kind {
            Kind::CacheHit => cache.entry(parts[0].clone()).or_default().0 += n,
            Kind::CacheMiss => cache.entry(parts[0].clone()).or_default().1 += n,
            Kind::FlagOn | Kind::FlagOff if parts.len() == 3 => {
                *flags
                    .entry((parts[0].clone(), parts[1].clone(), parts[2].clone(), kind == Kind::FlagOn))
                    .or_default() += n
            }
            _ => {}
        }
    }
    if !cache.is_empty() {
        let (names, (hits, misses)): (Vec<String>, (Vec<i64>, Vec<i64>)) = cache.into_iter().unzip();
        Spi::run_with_args(
            &format!(
                "INSERT INTO {schema}.cache_stat_counters AS c (cache_type, hits, misses) \
                 SELECT * FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), \
                     pg_catalog.unnest($2::pg_catalog.int8[]), pg_catalog.unnest($3::pg_catalog.int8[])) \
                 ON CONFLICT (cache_type) DO UPDATE SET hits = c.hits OPERATOR(pg_catalog.+) excluded.hits, \
                     misses = c.misses OPERATOR(pg_catalog.+) excluded.misses, updated_at = pg_catalog.now()"
            ),
            &[names.into(), hits.into(), misses.into()],
        )
        .unwrap_or_else(|e| error!("easymo stats flush: cache counters: {e}"));
    }
    // A database not yet updated to 0.3.0 has no flag counters table: its counts are dropped.
    let has_flag_table = Spi::get_one::<bool>(&format!(
        "SELECT pg_catalog.to_regclass('{schema}.feature_flag_exposure_counters') IS NOT NULL"
    ));
    if !flags.is_empty() && has_flag_table == Ok(Some(true)) {
        let mut keys = Vec::new();
        let mut envs = Vec::new();
        let mut variants = Vec::new();
        let mut answers = Vec::new();
        let mut ns = Vec::new();
        for ((k, e, v, a), n) in flags {
            keys.push(k);
            envs.push(e);
            variants.push(v);
            answers.push(a);
            ns.push(n);
        }
        Spi::run_with_args(
            &format!(
                "INSERT INTO {schema}.feature_flag_exposure_counters AS c (flag_key, environment, variant, enabled, evaluations) \
                 SELECT * FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.text[]), \
                     pg_catalog.unnest($3::pg_catalog.text[]), pg_catalog.unnest($4::pg_catalog.bool[]), \
                     pg_catalog.unnest($5::pg_catalog.int8[])) \
                 ON CONFLICT (flag_key, environment, variant, enabled) DO UPDATE \
                    SET evaluations = c.evaluations OPERATOR(pg_catalog.+) excluded.evaluations, updated_at = pg_catalog.now()"
            ),
            &[keys.into(), envs.into(), variants.into(), answers.into(), ns.into()],
        )
        .unwrap_or_else(|e| error!("easymo stats flush: flag exposure counters: {e}"));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn batch_round_trip() {
        let mut counts = super::Counts::default();
        counts.insert(vec![1, b'a'], 3);
        counts.insert(vec![3, b'f', 0, b'p', 0], u64::MAX);
        let mut back = super::decode_batch(&super::encode_batch(&counts));
        back.sort();
        let mut want: Vec<_> = counts.into_iter().collect();
        want.sort();
        assert_eq!(back, want);
    }

    #[test]
    fn pending_counts_runs_and_switches() {
        use super::Kind::{CacheHit, CacheMiss};
        let mut pending = super::Pending::default();
        for (kind, part, n) in [
            (CacheHit, "a", 1),
            (CacheHit, "a", 2),
            (CacheMiss, "a", 1),
            (CacheHit, "a", 1),
            (CacheHit, "b", 5),
            (CacheHit, "a", 1),
        ] {
            pending.add(kind, &[part], n);
        }
        pending.add(CacheMiss, &[b"a".as_slice()], 3);
        let counts = pending.take();
        assert_eq!(counts.len(), 3);
        assert_eq!(counts[&[1, b'a'][..]], 5);
        assert_eq!(counts[&[2, b'a'][..]], 4);
        assert_eq!(counts[&[1, b'b'][..]], 5);
        assert!(pending.take().is_empty());
    }
}

/// Shared memory for the counters when easymo is preloaded. Called from _PG_init.
pub fn init() {
    if backend::preloading() {
        shmem::init();
    }
}

/// Hands this session's counts on now and, without preloading, waits until the worker has
/// stored them (tests, and anyone who wants a session's counts seen at once). False when they
/// could not be handed on (they are kept for later).
#[pg_extern(volatile, parallel_unsafe, name = "_flush_stats")]
fn flush_stats() -> bool {
    hand_over(true)
}
