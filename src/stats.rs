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
//! Readers add shared memory, the tables and the calling session's own pending counts.
//!
//! A counter's key is its kind (one byte) followed by its name parts, separated by NUL (which no
//! Postgres text can contain): a cache type, or flag key, environment and variant.

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags};
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::prelude::*;
use pgrx::{PGRXSharedMemory, PgLwLock};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use xxhash_rust::xxh3::xxh3_64;

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

/// Pending counts, by encoded key (kind byte, then the NUL-separated parts).
pub type Counts = HashMap<Vec<u8>, u64>;

/// A source of counts kept elsewhere (the flag cache counts on its flags): moves them into
/// `into` when a flush or a reader needs them.
pub type Drain = fn(into: &mut dyn FnMut(Kind, &[&str], u64));

pub static FLUSH_INTERVAL: GucSetting<i32> = GucSetting::<i32>::new(10);

/// Flushes to shared memory at most this often (it costs a lock, nothing more).
const SHARED_INTERVAL_US: i64 = 1_000_000;

// ---------------------------------------------------------------------------------------------
// This backend's counts.

#[derive(Default)]
struct Local {
    pending: Counts,
    scratch: Vec<u8>,
    last_flush: pg_sys::TimestampTz,
    exit_hook: bool,
    drains: Vec<Drain>,
}

thread_local! {
    static LOCAL: RefCell<Local> = RefCell::new(Local::default());
}

fn encode(buf: &mut Vec<u8>, kind: Kind, parts: &[&str]) {
    buf.clear();
    buf.push(kind as u8);
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            buf.push(0);
        }
        buf.extend_from_slice(p.as_bytes());
    }
}

fn add_to(pending: &mut Counts, scratch: &mut Vec<u8>, kind: Kind, parts: &[&str], n: u64) {
    encode(scratch, kind, parts);
    match pending.get_mut(scratch.as_slice()) {
        Some(c) => *c += n,
        None => {
            pending.insert(scratch.clone(), n);
        }
    }
}

/// Registers a source of counts kept elsewhere; called once per backend, from _PG_init.
pub fn register_drain(drain: Drain) {
    LOCAL.with_borrow_mut(|l| l.drains.push(drain));
}

/// Counts `n` events of `kind` under `parts`, and hands the backend's counts on when that is due.
pub fn add(kind: Kind, parts: &[&str], n: u64) {
    LOCAL.with_borrow_mut(|l| {
        let Local { pending, scratch, .. } = l;
        add_to(pending, scratch, kind, parts, n);
    });
    tick();
}

/// Hands the counts on when the interval has passed since the last time. Cheap: a comparison
/// with the statement's start time, which Postgres has already read.
pub fn tick() {
    let now = crate::postgres::backend::statement_start();
    let due = LOCAL.with_borrow_mut(|l| {
        if l.last_flush == 0 {
            // The first interval is counted from the first event.
            l.last_flush = now;
            if !l.exit_hook {
                l.exit_hook = true;
                // SAFETY: registers a callback for this backend's exit.
                unsafe { pg_sys::before_shmem_exit(Some(flush_at_exit), pg_sys::Datum::from(0)) };
            }
        }
        let interval = if SHARED_READY.load(Ordering::Relaxed) {
            SHARED_INTERVAL_US
        } else {
            i64::from(FLUSH_INTERVAL.get()) * 1_000_000
        };
        now - l.last_flush >= interval
    });
    if due {
        flush();
    }
}

/// Takes this backend's counts, those kept by the drains included.
fn take_local() -> Counts {
    let (mut pending, drains) = LOCAL.with_borrow_mut(|l| (std::mem::take(&mut l.pending), l.drains.clone()));
    let mut scratch = Vec::new();
    for drain in drains {
        drain(&mut |kind, parts, n| add_to(&mut pending, &mut scratch, kind, parts, n));
    }
    pending
}

/// Gives counts back to this backend (a hand-over that could not happen now).
fn give_back(counts: Counts) {
    LOCAL.with_borrow_mut(|l| {
        for (k, n) in counts {
            *l.pending.entry(k).or_default() += n;
        }
    });
}

/// Hands this backend's counts on: to shared memory, or to a flush worker.
pub fn flush() {
    // SAFETY: reads a backend global.
    let now = unsafe { pg_sys::GetCurrentStatementStartTimestamp() };
    LOCAL.with_borrow_mut(|l| l.last_flush = now);
    let counts = take_local();
    if counts.is_empty() {
        return;
    }
    if SHARED_READY.load(Ordering::Relaxed) {
        shared::add_all(&counts);
    } else if !worker::ship(&counts, false) {
        give_back(counts);
    }
}

/// A backend that exits hands its last counts on. Errors are swallowed: an exiting backend
/// must exit.
unsafe extern "C-unwind" fn flush_at_exit(_code: i32, _arg: pg_sys::Datum) {
    PgTryBuilder::new(flush).catch_others(|_| ()).execute();
}

/// The counts of `kinds` as seen from this backend: shared memory and this backend's pending
/// counts (the tables are read by the callers, with SQL).
pub fn totals(kinds: &[Kind]) -> Counts {
    let wanted = |key: &[u8]| key.first().and_then(|b| Kind::from_byte(*b)).is_some_and(|k| kinds.contains(&k));
    let local = take_local();
    let mut totals: Counts = local.iter().filter(|(k, _)| wanted(k)).map(|(k, n)| (k.clone(), *n)).collect();
    give_back(local);
    if SHARED_READY.load(Ordering::Relaxed) {
        for (k, n) in shared::snapshot() {
            if wanted(&k) {
                *totals.entry(k).or_default() += n;
            }
        }
    }
    totals
}

// ---------------------------------------------------------------------------------------------
// Shared memory, when easymo is preloaded.

pub static SHARED_READY: AtomicBool = AtomicBool::new(false);

mod shared {
    use super::*;

    const SLOTS: usize = 1024;
    /// Longest key a slot holds; longer keys (and any beyond the table's size) are counted in
    /// their kind's "(other)" counter.
    const KEY_CAPACITY: usize = 512;
    pub const OTHER: &str = "(other)";

    #[derive(Copy, Clone)]
    struct Slot {
        len: u16,
        key: [u8; KEY_CAPACITY],
        count: u64,
    }

    #[derive(Copy, Clone)]
    pub struct Table {
        slots: [Slot; SLOTS],
        other: [u64; 8],
    }

    impl Default for Table {
        fn default() -> Self {
            Table { slots: [Slot { len: 0, key: [0; KEY_CAPACITY], count: 0 }; SLOTS], other: [0; 8] }
        }
    }

    // SAFETY: plain old data, no pointers.
    unsafe impl PGRXSharedMemory for Table {}

    // SAFETY: one name, used by this extension only.
    pub static TABLE: PgLwLock<Table> = unsafe { PgLwLock::new(c"easymo_stats") };

    impl Table {
        fn add(&mut self, key: &[u8], n: u64) {
            if key.len() <= KEY_CAPACITY {
                // Open addressing; slots are never freed, so a probe stops at the first empty one.
                let start = xxh3_64(key) as usize % SLOTS;
                for i in 0..SLOTS {
                    let slot = &mut self.slots[(start + i) % SLOTS];
                    if slot.len == 0 {
                        slot.len = key.len() as u16;
                        slot.key[..key.len()].copy_from_slice(key);
                        slot.count = n;
                        return;
                    }
                    if &slot.key[..slot.len as usize] == key {
                        slot.count += n;
                        return;
                    }
                }
            }
            self.other[usize::from(key[0]) % 8] += n;
        }
    }

    pub fn add_all(counts: &Counts) {
        let mut table = TABLE.exclusive();
        for (k, n) in counts {
            table.add(k, *n);
        }
    }

    pub fn snapshot() -> Vec<(Vec<u8>, u64)> {
        let table = TABLE.share();
        let mut out: Vec<(Vec<u8>, u64)> =
            table.slots.iter().filter(|s| s.len > 0).map(|s| (s.key[..s.len as usize].to_vec(), s.count)).collect();
        for (kind, n) in table.other.iter().enumerate().filter(|(_, n)| **n > 0) {
            let mut key = vec![kind as u8];
            key.extend_from_slice(OTHER.as_bytes());
            out.push((key, *n));
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Without preloading: a short-lived background worker adds a batch of counts to the tables.

mod worker {
    use super::*;

    /// Serializes `counts` into a dynamic shared memory segment and starts a worker that adds
    /// them to the tables; false when that cannot happen now (a standby, no free worker slot, no
    /// segment), and the caller keeps the counts.
    pub fn ship(counts: &Counts, wait: bool) -> bool {
        // SAFETY: backend state reads.
        if unsafe { pg_sys::RecoveryInProgress() || pg_sys::MyDatabaseId == pg_sys::Oid::INVALID } {
            return false;
        }
        let mut bytes = Vec::with_capacity(counts.len() * 32);
        for (k, n) in counts {
            bytes.extend_from_slice(&(k.len() as u32).to_le_bytes());
            bytes.extend_from_slice(k);
            bytes.extend_from_slice(&n.to_le_bytes());
        }
        // SAFETY: the segment is created, filled and pinned here, detached before returning;
        // pinned, it outlives this backend until the worker (or the failure path) unpins it.
        unsafe {
            let segment = pg_sys::dsm_create(bytes.len() + 8, pg_sys::DSM_CREATE_NULL_IF_MAXSEGMENTS as i32);
            if segment.is_null() {
                return false;
            }
            let address = pg_sys::dsm_segment_address(segment).cast::<u8>();
            address.cast::<u64>().write_unaligned(bytes.len() as u64);
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), address.add(8), bytes.len());
            pg_sys::dsm_pin_segment(segment);
            let handle = pg_sys::dsm_segment_handle(segment);
            let worker = BackgroundWorkerBuilder::new("easymo stats flush")
                .set_type("easymo stats flush")
                .set_library("easymo")
                .set_function("easymo_stats_flush_main")
                .set_argument(Some(pg_sys::Datum::from(handle)))
                .set_extra(&u32::from(pg_sys::MyDatabaseId).to_string())
                .enable_spi_access()
                .set_start_time(BgWorkerStartTime::RecoveryFinished)
                .set_restart_time(None)
                .set_notify_pid(if wait { pg_sys::MyProcPid } else { 0 })
                .load_dynamic();
            if worker.is_err() {
                pg_sys::dsm_unpin_segment(handle);
            }
            pg_sys::dsm_detach(segment);
            match worker {
                Ok(worker) if wait => worker.wait_for_shutdown().is_ok(),
                Ok(_) => true,
                Err(_) => false,
            }
        }
    }

    /// The flush worker: reads its batch, lets the segment go, and adds the counts in one
    /// transaction. Counts for a database where easymo is gone are dropped.
    #[pg_guard]
    #[unsafe(no_mangle)]
    pub extern "C-unwind" fn easymo_stats_flush_main(arg: pg_sys::Datum) {
        BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGTERM);
        let handle = arg.value() as pg_sys::dsm_handle;
        // SAFETY: the segment was pinned for this worker; it is copied, unpinned and detached
        // before anything can fail.
        let bytes = unsafe {
            let segment = pg_sys::dsm_attach(handle);
            if segment.is_null() {
                return;
            }
            let address = pg_sys::dsm_segment_address(segment).cast::<u8>();
            let len = address.cast::<u64>().read_unaligned() as usize;
            let bytes = std::slice::from_raw_parts(address.add(8), len).to_vec();
            pg_sys::dsm_unpin_segment(handle);
            pg_sys::dsm_detach(segment);
            bytes
        };
        let Ok(database) = BackgroundWorker::get_extra().parse::<u32>() else { return };
        BackgroundWorker::connect_worker_to_spi_by_oid(Some(pg_sys::Oid::from(database)), None);
        let counts = decode(&bytes);
        BackgroundWorker::transaction(|| store(&counts));
    }

    fn decode(mut bytes: &[u8]) -> Vec<(Vec<u8>, u64)> {
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

    /// Adds the counts to the extension's tables, rows in key order (two workers upserting the
    /// same rows then lock them in the same order).
    fn store(counts: &[(Vec<u8>, u64)]) {
        let found = Spi::get_one::<String>(
            "SELECT pg_catalog.quote_ident(n.nspname) FROM pg_catalog.pg_extension e \
               JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace \
              WHERE e.extname OPERATOR(pg_catalog.=) 'easymo'",
        );
        let Ok(Some(schema)) = found else { return };
        let mut cache: std::collections::BTreeMap<String, (i64, i64)> = Default::default();
        let mut flags: std::collections::BTreeMap<(String, String, String, bool), i64> = Default::default();
        for (key, n) in counts {
            let Some(kind) = key.first().and_then(|b| Kind::from_byte(*b)) else { continue };
            let parts = split_key(&key[1..]);
            let n = i64::try_from(*n).unwrap_or(i64::MAX);
            match kind {
                Kind::CacheHit => cache.entry(parts[0].clone()).or_default().0 += n,
                Kind::CacheMiss => cache.entry(parts[0].clone()).or_default().1 += n,
                Kind::FlagOn | Kind::FlagOff if parts.len() == 3 => {
                    *flags.entry((parts[0].clone(), parts[1].clone(), parts[2].clone(), kind == Kind::FlagOn)).or_default() += n
                }
                _ => {}
            }
        }
        if !cache.is_empty() {
            let (names, (hits, misses)): (Vec<String>, (Vec<i64>, Vec<i64>)) = cache.into_iter().map(|(k, (h, m))| (k, (h, m))).unzip();
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
        fn round_trip() {
            let mut counts = super::Counts::new();
            counts.insert(vec![1, b'a'], 3);
            counts.insert(vec![3, b'f', 0, b'p', 0], u64::MAX);
            let mut bytes = Vec::new();
            for (k, n) in &counts {
                bytes.extend_from_slice(&(k.len() as u32).to_le_bytes());
                bytes.extend_from_slice(k);
                bytes.extend_from_slice(&n.to_le_bytes());
            }
            let mut back = super::decode(&bytes);
            back.sort();
            let mut want: Vec<_> = counts.into_iter().collect();
            want.sort();
            assert_eq!(back, want);
        }
    }
}

/// The flush interval setting; shared memory when easymo is preloaded. Called from _PG_init.
pub fn init() {
    GucRegistry::define_int_guc(
        c"easymo.stats_flush_interval",
        c"Seconds after which a session hands its cache and feature flag counts on.",
        c"Each session counts cache hits and misses and flag exposures in its own memory. With easymo preloaded it adds them to shared memory every second; otherwise, every this many seconds (and when it ends), a short-lived background worker adds them to cache_stat_counters and feature_flag_exposure_counters in a transaction of its own. Reads never write in the caller's transaction.",
        &FLUSH_INTERVAL,
        1,
        24 * 3600,
        GucContext::Userset,
        GucFlags::UNIT_S,
    );
    // SAFETY: reading a postmaster global in _PG_init.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        use shared::TABLE;
        pgrx::pg_shmem_init!(TABLE);
        SHARED_READY.store(true, Ordering::Relaxed);
    }
}

/// Hands this session's counts on now and, without preloading, waits until the worker has
/// stored them (tests, and anyone who wants a session's counts seen at once). False when they
/// could not be handed on (they are kept for later).
#[pg_extern(volatile, parallel_unsafe, name = "_flush_stats")]
fn flush_stats() -> bool {
    // SAFETY: reads a backend global.
    let now = unsafe { pg_sys::GetCurrentStatementStartTimestamp() };
    LOCAL.with_borrow_mut(|l| l.last_flush = now);
    let counts = take_local();
    if counts.is_empty() {
        return true;
    }
    if SHARED_READY.load(Ordering::Relaxed) {
        shared::add_all(&counts);
        return true;
    }
    if worker::ship(&counts, true) {
        return true;
    }
    give_back(counts);
    false
}
