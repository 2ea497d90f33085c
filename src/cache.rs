//! Cache: get/set at the speed of a primary-key lookup, TTL and tags (table layout and its
//! reasons: sql/cache.sql).
//!
//! `get_cache` reads the primary key directly (no SPI, no plan, no executor), checks the expiry
//! against the clock, and returns the stored jsonb as it is. It writes nothing: hits and misses
//! are counted in the backend and added in batches to shared memory (easymo preloaded) or to
//! cache_stat_counters (never in a read-only transaction or on a standby).

use crate::catalog::{self, as_owner, ext_table, ExtTable};
use crate::error::{required, ContractError, OrRaise};
use crate::plan::WritePlan;
use crate::raw::{RawJsonb, RawTextArray};
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient};
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::{PGRXSharedMemory, PgLwLock, PgOid};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};

const MAX_KEY_BYTES: usize = 512;
const MAX_TTL_SECONDS: i32 = 365 * 24 * 3600;
const MAX_TAGS: usize = 64;

fn check_key(key: Option<&str>) -> Result<&str, ContractError> {
    let key = required(key, "p_key")?;
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(ContractError::invalid("p_key", format!("must be 1 to {MAX_KEY_BYTES} bytes, got {}", key.len())));
    }
    Ok(key)
}

fn check_ttl(ttl: Option<i32>) -> Result<i32, ContractError> {
    let ttl = required(ttl, "p_ttl_seconds")?;
    if ttl <= 0 || ttl > MAX_TTL_SECONDS {
        return Err(ContractError::invalid(
            "p_ttl_seconds",
            format!("must be between 1 and {MAX_TTL_SECONDS} (one year), got {ttl}"),
        ));
    }
    Ok(ttl)
}

fn check_cache_type(kind: Option<&str>) -> Result<&str, ContractError> {
    let kind = required(kind, "p_cache_type")?;
    let chars = kind.chars().count();
    if chars == 0 || chars > 64 {
        return Err(ContractError::invalid("p_cache_type", format!("must be 1 to 64 characters, got {chars}")));
    }
    Ok(kind)
}

/// Checks the tags, looking at the elements only when there are some (the usual call has none).
fn check_tags(tags: Option<&RawTextArray>) -> Result<(), ContractError> {
    let Some(tags) = tags.filter(|t| !t.is_empty()) else {
        return Ok(());
    };
    let elements = tags.elements();
    if elements.len() > MAX_TAGS {
        return Err(ContractError::invalid("p_tags", format!("at most {MAX_TAGS} tags, got {}", elements.len())));
    }
    for t in elements {
        let t = t.ok_or(ContractError::NullArgument("p_tags element"))?;
        if t.is_empty() || t.chars().count() > 255 {
            return Err(ContractError::invalid("p_tags", format!("tags must be 1 to 255 characters, got {t:?}")));
        }
    }
    Ok(())
}

fn now() -> pg_sys::TimestampTz {
    // SAFETY: reads the clock.
    unsafe { pg_sys::GetCurrentTimestamp() }
}

// ---------------------------------------------------------------------------------------------
// Reading: the primary key, directly.

struct CacheTable {
    table: ExtTable,
    pkey: pg_sys::Oid,
    /// value, cache_type, expires_at.
    attributes: [i16; 3],
}

enum Found {
    Live { value: pg_sys::Datum, cache_type: String },
    Expired { cache_type: String },
    Absent,
}

impl CacheTable {
    fn find() -> CacheTable {
        let table = ext_table("cache_entries");
        // SAFETY: syscache lookups on a relation that exists.
        let pkey = unsafe { pg_sys::get_relname_relid(c"cache_entries_pkey".as_ptr(), table.namespace) };
        let attribute = |name: &std::ffi::CStr| unsafe { pg_sys::get_attnum(table.relid, name.as_ptr()) };
        let attributes = [attribute(c"value"), attribute(c"cache_type"), attribute(c"expires_at")];
        if pkey == pg_sys::Oid::INVALID || attributes.iter().any(|a| *a <= 0) {
            error!("cache_entries is not as easymo created it");
        }
        CacheTable { table, pkey, attributes }
    }

    /// The entry under `key`, seen with the statement's snapshot, its expiry checked against the
    /// clock. A live value is copied out of the buffer (and detoasted) into the caller's memory.
    fn lookup(&self, key: &str) -> Found {
        let last = *self.attributes.iter().max().expect("three attributes");
        catalog::lookup_by_text_key(self.table.relid, self.pkey, key, false, last, |datum| {
            // SAFETY: the attributes are those found in `find`, read while the row is pinned.
            unsafe {
                let cache_type = String::from_datum(datum(self.attributes[1]), false).expect("not null");
                let expires_at = datum(self.attributes[2]).value() as pg_sys::TimestampTz;
                if expires_at > now() {
                    let value = pg_sys::pg_detoast_datum_copy(datum(self.attributes[0]).cast_mut_ptr());
                    Found::Live { value: pg_sys::Datum::from(value), cache_type }
                } else {
                    Found::Expired { cache_type }
                }
            }
        })
        .unwrap_or(Found::Absent)
    }
}

thread_local! {
    static CACHE_TABLE: RefCell<Option<Rc<CacheTable>>> = const { RefCell::new(None) };
}

fn cache_table() -> Rc<CacheTable> {
    if let Some(t) = CACHE_TABLE.with_borrow(|t| t.as_ref().filter(|t| t.table.still_valid()).cloned()) {
        return t;
    }
    let t = Rc::new(CacheTable::find());
    CACHE_TABLE.set(Some(Rc::clone(&t)));
    t
}

/// The value cached under `p_key`, or NULL when there is none or it has expired.
#[pg_extern(stable, parallel_safe)]
fn get_cache(p_key: Option<&str>) -> Option<RawJsonb> {
    let key = check_key(p_key).or_raise();
    match cache_table().lookup(key) {
        Found::Live { value, cache_type } => {
            counters::note(&cache_type, true);
            Some(RawJsonb::from_datum(value))
        }
        Found::Expired { cache_type } => {
            counters::note(&cache_type, false);
            None
        }
        Found::Absent => {
            counters::note(counters::NO_ENTRY, false);
            None
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Writing: planned statements.

struct WritePlans {
    table: ExtTable,
    upsert: WritePlan,
    delete: OwnedPreparedStatement,
    invalidate: OwnedPreparedStatement,
    sweep: OwnedPreparedStatement,
}

thread_local! {
    static WRITE_PLANS: RefCell<Option<Rc<WritePlans>>> = const { RefCell::new(None) };
}

fn oids(types: &[pg_sys::Oid]) -> Vec<PgOid> {
    types.iter().copied().map(PgOid::from).collect()
}

fn prepare_writes(client: &SpiClient<'_>) -> pgrx::spi::SpiResult<WritePlans> {
    use pg_sys::{JSONBOID, TEXTARRAYOID, TEXTOID, TIDOID, TIMESTAMPTZOID};
    let table = ext_table("cache_entries");
    let t = &table.qualified;
    Ok(WritePlans {
        // Only unindexed columns change on conflict: the update is HOT when the page has room.
        upsert: WritePlan::prepare(
            &format!(
                "INSERT INTO {t} AS c (key, value, cache_type, tags, expires_at, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, cache_type = excluded.cache_type, \
                     tags = excluded.tags, expires_at = excluded.expires_at, updated_at = excluded.updated_at"
            ),
            &[TEXTOID, JSONBOID, TEXTOID, TEXTARRAYOID, TIMESTAMPTZOID, TIMESTAMPTZOID],
        ),
        delete: client
            .prepare_mut(&format!("DELETE FROM {t} WHERE key OPERATOR(pg_catalog.=) $1 RETURNING expires_at"), &oids(&[TEXTOID]))?
            .keep(),
        // The partial GIN index needs its predicate spelled out to be chosen.
        invalidate: client
            .prepare_mut(
                &format!(
                    "DELETE FROM {t} WHERE tags OPERATOR(pg_catalog.@>) pg_catalog.array_append('{{}}'::text[], $1) \
                       AND tags OPERATOR(pg_catalog.<>) '{{}}'::text[]"
                ),
                &oids(&[TEXTOID]),
            )?
            .keep(),
        // One batch of the sweep: the pages [$1, $2) of the heap, by TID range scan.
        sweep: client
            .prepare_mut(
                &format!(
                    "DELETE FROM {t} WHERE ctid OPERATOR(pg_catalog.>=) $1 AND ctid OPERATOR(pg_catalog.<) $2 \
                       AND expires_at OPERATOR(pg_catalog.<=) $3"
                ),
                &oids(&[TIDOID, TIDOID, TIMESTAMPTZOID]),
            )?
            .keep(),
        table,
    })
}

fn write_plans() -> Rc<WritePlans> {
    if let Some(p) = WRITE_PLANS.with_borrow(|p| p.as_ref().filter(|p| p.table.still_valid()).cloned()) {
        return p;
    }
    let p = Rc::new(Spi::connect(|c| prepare_writes(c)).unwrap_or_else(|e| error!("preparing the cache statements: {e}")));
    WRITE_PLANS.set(Some(Rc::clone(&p)));
    p
}

fn timestamptz(t: pg_sys::TimestampTz) -> TimestampWithTimeZone {
    // SAFETY: a TimestampTz is a plain int64 datum.
    unsafe { TimestampWithTimeZone::from_datum(pg_sys::Datum::from(t), false) }.expect("not null")
}

/// Stores `p_value` under `p_key` for `p_ttl_seconds`, replacing value, TTL, type and tags;
/// returns the expiry.
#[pg_extern(volatile, parallel_unsafe)]
fn set_cache(
    p_key: Option<&str>,
    p_value: Option<RawJsonb>,
    p_ttl_seconds: default!(Option<i32>, 3600),
    p_cache_type: default!(Option<&str>, "'general'"),
    p_tags: default!(Option<RawTextArray>, "'{}'"),
) -> TimestampWithTimeZone {
    let check = || -> Result<_, ContractError> {
        let checked = (check_key(p_key)?, required(p_value, "p_value")?, check_ttl(p_ttl_seconds)?, check_cache_type(p_cache_type)?);
        check_tags(p_tags.as_ref())?;
        Ok(checked)
    };
    let (key, value, ttl, kind) = check().or_raise();
    let plans = write_plans();
    let now = now();
    let expires_at = now + i64::from(ttl) * 1_000_000;
    let tags = match &p_tags {
        Some(t) => Some(t.datum()),
        None => Vec::<String>::new().into_datum(),
    };
    plans.upsert.execute(&[
        key.into_datum(),
        Some(value.datum()),
        kind.into_datum(),
        tags,
        Some(pg_sys::Datum::from(expires_at)),
        Some(pg_sys::Datum::from(now)),
    ]);
    timestamptz(expires_at)
}

/// Deletes `p_key`; true when it held a value that had not expired.
#[pg_extern(volatile, parallel_unsafe)]
fn delete_cache(p_key: Option<&str>) -> bool {
    let key = check_key(p_key).or_raise();
    let plans = write_plans();
    let now = timestamptz(now());
    Spi::connect_mut(|client| {
        let mut live = false;
        for row in client.update(&plans.delete, None, &[key.into()])? {
            live |= row.get::<TimestampWithTimeZone>(1)?.is_some_and(|e| e > now);
        }
        Ok::<_, pgrx::spi::Error>(live)
    })
    .unwrap_or_else(|e| error!("delete_cache: {e}"))
}

/// Deletes every entry tagged `p_tag`; returns how many.
#[pg_extern(volatile, parallel_unsafe)]
fn invalidate_cache_by_tag(p_tag: Option<&str>) -> i32 {
    let tag = required(p_tag, "p_tag").or_raise();
    if tag.is_empty() {
        ContractError::invalid("p_tag", "must not be empty").raise();
    }
    let plans = write_plans();
    Spi::connect_mut(|client| client.update(&plans.invalidate, None, &[tag.into()]).map(|t| saturating_i32(t.len())))
        .unwrap_or_else(|e| error!("invalidate_cache_by_tag: {e}"))
}

/// A row count as the contract's integer (a count past 2^31 - 1 is reported as that).
fn saturating_i32(n: impl TryInto<i32>) -> i32 {
    n.try_into().unwrap_or(i32::MAX)
}

/// Pages per sweep batch: 8 MB of heap per DELETE.
const SWEEP_PAGES: u32 = 1024;

/// Deletes expired entries in the pages [first, first + pages) of the heap, one bounded batch at
/// a time; returns how many. The caller's rights apply (service_role, or maintenance).
pub fn sweep_expired(first: u32, pages: u32) -> i64 {
    let plans = write_plans();
    let now = timestamptz(now());
    // The first item pointer of a page: (page, 0) sorts before every tuple on it.
    let tid = |page: u32| pg_sys::ItemPointerData {
        ip_blkid: pg_sys::BlockIdData { bi_hi: (page >> 16) as u16, bi_lo: page as u16 },
        ip_posid: 0,
    };
    Spi::connect_mut(|client| {
        let mut deleted = 0;
        let mut start = first;
        let end = first.saturating_add(pages);
        while start < end {
            let stop = start.saturating_add(SWEEP_PAGES).min(end);
            deleted += client.update(&plans.sweep, None, &[tid(start).into(), tid(stop).into(), now.into()])?.len() as i64;
            start = stop;
        }
        Ok::<_, pgrx::spi::Error>(deleted)
    })
    .unwrap_or_else(|e| error!("sweeping expired cache entries: {e}"))
}

/// The heap's size in pages.
pub fn cache_pages() -> u32 {
    let table = write_plans().table.relid;
    // SAFETY: opens the relation to read its size, as pg_relation_size does.
    unsafe {
        let rel = pg_sys::table_open(table, pg_sys::AccessShareLock as i32);
        let pages = pg_sys::RelationGetNumberOfBlocksInFork(rel, pg_sys::ForkNumber::MAIN_FORKNUM);
        pg_sys::table_close(rel, pg_sys::NoLock as i32);
        pages
    }
}

/// Deletes every expired entry; returns how many.
#[pg_extern(volatile, parallel_unsafe)]
fn cleanup_expired_cache() -> i32 {
    saturating_i32(sweep_expired(0, cache_pages()))
}

// ---------------------------------------------------------------------------------------------
// Hit and miss counters.

pub mod counters {
    use super::*;

    /// The counter of misses on keys that had no entry (cache_type is 1 to 64 characters, so
    /// this never names a real type).
    pub const NO_ENTRY: &str = "";

    const SLOTS: usize = 128;

    #[derive(Copy, Clone)]
    struct Slot {
        used: bool,
        len: u8,
        name: [u8; 256],
        hits: u64,
        misses: u64,
    }

    impl Default for Slot {
        fn default() -> Self {
            Slot { used: false, len: 0, name: [0; 256], hits: 0, misses: 0 }
        }
    }

    /// Counters in shared memory (easymo preloaded): one slot per cache type; types beyond the
    /// table's size share the last slot, reported as '(other)'.
    #[derive(Copy, Clone)]
    pub struct SharedCounters {
        slots: [Slot; SLOTS],
    }

    impl Default for SharedCounters {
        fn default() -> Self {
            SharedCounters { slots: [Slot::default(); SLOTS] }
        }
    }

    // SAFETY: plain old data, no pointers.
    unsafe impl PGRXSharedMemory for SharedCounters {}

    impl SharedCounters {
        fn add(&mut self, name: &str, hits: u64, misses: u64) {
            let bytes = &name.as_bytes()[..name.len().min(255)];
            let slot = match self.slots.iter().position(|s| !s.used || &s.name[..s.len as usize] == bytes) {
                Some(i) => &mut self.slots[i],
                None => {
                    let last = &mut self.slots[SLOTS - 1];
                    let other = b"(other)";
                    last.name[..other.len()].copy_from_slice(other);
                    last.len = other.len() as u8;
                    last
                }
            };
            if !slot.used {
                slot.used = true;
                slot.len = bytes.len() as u8;
                slot.name[..bytes.len()].copy_from_slice(bytes);
            }
            slot.hits += hits;
            slot.misses += misses;
        }
    }

    // SAFETY: one name, used by this extension only.
    pub static SHARED: PgLwLock<SharedCounters> = unsafe { PgLwLock::new(c"easymo_cache_counters") };
    /// Set in _PG_init when the library is preloaded (inherited by every backend).
    pub static SHARED_READY: AtomicBool = AtomicBool::new(false);

    /// Flushes to shared memory after this many events or this long.
    const SHARED_BATCH: u64 = 64;
    const SHARED_INTERVAL_US: i64 = 1_000_000;
    /// Flushes to the counters table after this many events (or after
    /// easymo.cache_stats_flush_interval seconds).
    const TABLE_BATCH: u64 = 1_000;

    #[derive(Default)]
    struct Local {
        counts: HashMap<String, (u64, u64)>,
        pending: u64,
        last_flush: pg_sys::TimestampTz,
        exit_hook: bool,
    }

    /// A backend that exits hands its last counts to shared memory (while that is still
    /// attached). Without preloading there is no way to write a table at exit: up to one batch
    /// may be lost then.
    unsafe extern "C-unwind" fn flush_at_exit(_code: i32, _arg: pg_sys::Datum) {
        let counts = LOCAL.with_borrow_mut(|l| std::mem::take(&mut l.counts));
        if !counts.is_empty() {
            let mut s = SHARED.exclusive();
            for (name, (hits, misses)) in &counts {
                s.add(name, *hits, *misses);
            }
        }
    }

    thread_local! {
        static LOCAL: RefCell<Local> = RefCell::new(Local::default());
    }

    /// Counts one read: a hit or a miss of `cache_type`. No write, unless a batch is due.
    pub fn note(cache_type: &str, hit: bool) {
        let due = LOCAL.with_borrow_mut(|l| {
            match l.counts.get_mut(cache_type) {
                Some(c) => *if hit { &mut c.0 } else { &mut c.1 } += 1,
                None => {
                    l.counts.insert(cache_type.to_owned(), if hit { (1, 0) } else { (0, 1) });
                }
            }
            l.pending += 1;
            if l.last_flush == 0 {
                l.last_flush = now(); // the first batch is counted from the first event
            }
            let shared = SHARED_READY.load(Ordering::Relaxed);
            if shared && !l.exit_hook {
                l.exit_hook = true;
                // SAFETY: registers a callback for this backend's exit.
                unsafe { pg_sys::before_shmem_exit(Some(flush_at_exit), pg_sys::Datum::from(0)) };
            }
            let (batch, interval) = if shared {
                (SHARED_BATCH, SHARED_INTERVAL_US)
            } else {
                (TABLE_BATCH, i64::from(super::FLUSH_INTERVAL.get()) * 1_000_000)
            };
            l.pending >= batch || now() - l.last_flush >= interval
        });
        if due {
            flush();
        }
    }

    fn can_write() -> bool {
        // SAFETY: reads of backend state.
        unsafe { !(pg_sys::XactReadOnly || pg_sys::RecoveryInProgress() || pg_sys::IsInParallelMode()) }
    }

    /// Moves this backend's counts to shared memory, or to the counters table when that is
    /// possible now; otherwise keeps them for later.
    pub fn flush() {
        let shared = SHARED_READY.load(Ordering::Relaxed);
        if !shared && !can_write() {
            return;
        }
        let counts = LOCAL.with_borrow_mut(|l| {
            l.pending = 0;
            l.last_flush = now();
            std::mem::take(&mut l.counts)
        });
        if counts.is_empty() {
            return;
        }
        if shared {
            let mut s = SHARED.exclusive();
            for (name, (hits, misses)) in &counts {
                s.add(name, *hits, *misses);
            }
            return;
        }
        let table = ext_table("cache_stat_counters");
        let (names, (hits, misses)): (Vec<String>, (Vec<i64>, Vec<i64>)) =
            counts.into_iter().map(|(n, (h, m))| (n, (h as i64, m as i64))).unzip();
        as_owner(table.owner, || {
            Spi::run_with_args(
                &format!(
                    "INSERT INTO {0} AS c (cache_type, hits, misses) \
                     SELECT * FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), \
                         pg_catalog.unnest($2::pg_catalog.int8[]), pg_catalog.unnest($3::pg_catalog.int8[])) \
                     ON CONFLICT (cache_type) DO UPDATE SET hits = c.hits OPERATOR(pg_catalog.+) excluded.hits, \
                         misses = c.misses OPERATOR(pg_catalog.+) excluded.misses, updated_at = pg_catalog.now()",
                    table.qualified
                ),
                &[names.into(), hits.into(), misses.into()],
            )
        })
        .unwrap_or_else(|e| error!("flushing cache counters: {e}"));
    }

    /// Totals per cache type: shared memory, the counters table, and this backend's unflushed
    /// counts.
    pub fn totals() -> HashMap<String, (i64, i64)> {
        let mut totals: HashMap<String, (i64, i64)> = HashMap::new();
        let mut add = |name: &str, h: i64, m: i64| {
            let t = totals.entry(name.to_owned()).or_default();
            t.0 += h;
            t.1 += m;
        };
        if SHARED_READY.load(Ordering::Relaxed) {
            flush();
            let s = SHARED.share();
            for slot in s.slots.iter().filter(|s| s.used) {
                add(&String::from_utf8_lossy(&slot.name[..slot.len as usize]), slot.hits as i64, slot.misses as i64);
            }
        }
        LOCAL.with_borrow(|l| {
            for (name, (h, m)) in &l.counts {
                add(name, *h as i64, *m as i64);
            }
        });
        let table = ext_table("cache_stat_counters");
        let rows: Vec<(String, i64, i64)> = as_owner(table.owner, || {
            Spi::connect(|client| {
                client
                    .select(&format!("SELECT cache_type, hits, misses FROM {}", table.qualified), None, &[])?
                    .map(|r| Ok((r.get(1)?.unwrap_or_default(), r.get(2)?.unwrap_or(0), r.get(3)?.unwrap_or(0))))
                    .collect::<Result<Vec<_>, pgrx::spi::Error>>()
            })
        })
        .unwrap_or_else(|e| error!("reading cache counters: {e}"));
        for (name, h, m) in rows {
            add(&name, h, m);
        }
        totals
    }
}

pub static FLUSH_INTERVAL: GucSetting<i32> = GucSetting::<i32>::new(10);

/// The flush interval setting; shared memory for the counters when easymo is preloaded.
pub fn init() {
    GucRegistry::define_int_guc(
        c"easymo.cache_stats_flush_interval",
        c"Seconds after which a session adds its cache hit and miss counts to cache_stat_counters.",
        c"When easymo is not preloaded, each session counts cache hits and misses in its own memory and adds them to the table after 1,000 reads or this many seconds, whichever comes first (never in a read-only transaction or on a standby).",
        &FLUSH_INTERVAL,
        1,
        24 * 3600,
        GucContext::Userset,
        GucFlags::default(),
    );
    // SAFETY: reading a postmaster global in _PG_init.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        use counters::SHARED;
        pgrx::pg_shmem_init!(SHARED);
        counters::SHARED_READY.store(true, Ordering::Relaxed);
    }
}

/// Hits and misses per cache type (cache_type NULL: keys that had no entry).
#[pg_extern(stable, parallel_restricted)]
fn cache_hit_counters() -> TableIterator<'static, (name!(cache_type, Option<String>), name!(hits, i64), name!(misses, i64))> {
    let mut rows: Vec<_> = counters::totals()
        .into_iter()
        .map(|(name, (h, m))| ((name != counters::NO_ENTRY).then_some(name), h, m))
        .collect();
    rows.sort();
    TableIterator::new(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_checks() {
        assert!(check_key(Some("k")).is_ok());
        assert!(check_key(Some(&"é".repeat(256))).is_ok());
        assert!(check_key(Some(&"é".repeat(257))).unwrap_err().to_string().contains("1 to 512 bytes"));
        assert!(check_key(Some("")).is_err());
        assert_eq!(check_key(None).unwrap_err().sqlstate(), pgrx::PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED);
        assert!(check_ttl(Some(0)).is_err() && check_ttl(Some(MAX_TTL_SECONDS + 1)).is_err());
        assert!(check_ttl(Some(MAX_TTL_SECONDS)).is_ok());
        // (check_tags reads array datums: it is tested through SQL, tests/pg_regress/sql/cache.sql.)
    }
}
