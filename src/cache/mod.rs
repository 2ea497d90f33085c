//! Cache: get/set at the speed of a primary-key lookup, TTL and tags (table layout and its
//! reasons: sql/cache.sql).
//!
//! `get_cache` answers from an exact copy of the entry in shared memory when easymo is preloaded
//! (src/cache/shared.rs); otherwise, and for an entry without a copy it may use, it reads the
//! primary key directly (no SPI, no plan, no executor) and copies what it read. Either way it
//! checks the visibility and the expiry against the clock, and returns the stored jsonb as it
//! is. It writes nothing in the caller's transaction: hits and misses
//! are counted in the backend and added in batches to shared memory (easymo preloaded) or to
//! cache_stat_counters (never in a read-only transaction or on a standby).

#![forbid(unsafe_code)]

use crate::error::{required, ContractError, OrRaise};
use crate::gucs;
use crate::postgres::catalog::ExtTable;
use crate::postgres::datum::{timestamptz, RawJsonb, RawTextArray};
use crate::postgres::identity::as_owner;
use crate::postgres::plan::{prepared, Plan, PlanSlot};
use crate::postgres::relation::{self, Column, TableSpec};
use crate::postgres::{backend, fcall, inval, shmem, snapshot, srf};
use crate::postgres::{caller_has_role, caller_is_service};
use crate::session::request_user_id;
use crate::stats::{self, Kind};
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient};
use pgrx::PgOid;
use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

mod shared;
use shared::Shared;

pub const MAX_KEY_BYTES: usize = 512;
pub const MAX_TTL_SECONDS: i32 = 365 * 24 * 3600;
pub const MAX_TAGS: usize = 64;
pub const MAX_CACHE_TYPE_CHARS: usize = 64;

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
    // Characters are counted only when the bytes are too many: a text has no more characters
    // than bytes, so within the limit its byte count stands in.
    let chars = if kind.len() <= MAX_CACHE_TYPE_CHARS { kind.len() } else { kind.chars().count() };
    if chars == 0 || chars > MAX_CACHE_TYPE_CHARS {
        return Err(ContractError::invalid(
            "p_cache_type",
            format!("must be 1 to {MAX_CACHE_TYPE_CHARS} characters, got {chars}"),
        ));
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
        let t = t.ok_or(ContractError::NullArgument("p_tags element".into()))?;
        if t.is_empty() || t.chars().count() > 255 {
            return Err(ContractError::invalid("p_tags", format!("tags must be 1 to 255 characters, got {t:?}")));
        }
    }
    Ok(())
}

fn now() -> pg_sys::TimestampTz {
    crate::postgres::backend::now()
}

// ---------------------------------------------------------------------------------------------
// Who may read an entry.

/// An entry's visibility: who besides service_role may read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visibility {
    /// service_role (and superusers, and the table owner) only: the default.
    Service,
    /// Every authenticated caller too.
    Authenticated,
    /// The user named in owner_user_id too (request_user_id()).
    Owner,
}

pub const VISIBILITIES: [(&str, Visibility); 3] =
    [("service", Visibility::Service), ("authenticated", Visibility::Authenticated), ("owner", Visibility::Owner)];

impl Visibility {
    fn parse(s: &str) -> Option<Visibility> {
        VISIBILITIES.iter().find(|(name, _)| *name == s).map(|(_, v)| *v)
    }

    /// A small number for shared memory (0: a visibility this version does not know).
    fn code(v: Option<Visibility>) -> u8 {
        v.map_or(0, |v| v as u8 + 1)
    }

    fn from_code(code: u8) -> Option<Visibility> {
        VISIBILITIES.get(usize::from(code).checked_sub(1)?).map(|(_, v)| *v)
    }
}

fn check_visibility(visibility: Option<&str>, owner: Option<pgrx::Uuid>) -> Result<Visibility, ContractError> {
    let name = required(visibility, "p_visibility")?;
    let v = Visibility::parse(name).ok_or_else(|| {
        ContractError::invalid("p_visibility", format!("must be service, authenticated or owner, got {name:?}"))
    })?;
    if v == Visibility::Owner && owner.is_none() {
        return Err(ContractError::NullArgument("p_owner_user_id (p_visibility is owner)".into()));
    }
    Ok(v)
}

/// Whether the caller may read an entry: service callers read everything; authenticated
/// callers what is visible to them. Only asked when an entry was found.
fn may_read(visibility: Option<Visibility>, owner: Option<pgrx::Uuid>, table_owner: pg_sys::Oid) -> bool {
    if caller_is_service(table_owner) {
        return true;
    }
    match visibility {
        Some(Visibility::Authenticated) => caller_has_role(c"authenticated"),
        Some(Visibility::Owner) => owner.is_some() && owner == request_user_id(),
        // A visibility this version does not know (a row written by hand): service only.
        Some(Visibility::Service) | None => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Reading: the primary key, directly.

/// What get_cache reads of cache_entries (positions below).
static ENTRIES: TableSpec = TableSpec {
    name: c"cache_entries",
    columns: &[
        Column::new(c"key", pg_sys::TEXTOID),
        Column::new(c"value", pg_sys::JSONBOID),
        Column::new(c"cache_type", pg_sys::TEXTOID),
        Column::new(c"expires_at", pg_sys::TIMESTAMPTZOID),
        // Added in 0.3.0; before the update every entry reads as service-only.
        Column::added_later(c"visibility", pg_sys::TEXTOID),
        Column::added_later(c"owner_user_id", pg_sys::UUIDOID),
    ],
};
const KEY: usize = 0;
const VALUE: usize = 1;
const CACHE_TYPE: usize = 2;
const EXPIRES_AT: usize = 3;
const VISIBILITY: usize = 4;
const OWNER_USER_ID: usize = 5;

/// A miss of a key that has no entry (or one the caller may not read: it is indistinguishable)
/// is counted under this cache type, which no entry can have (cache types are 1 to 64
/// characters).
pub const NO_ENTRY: &str = "";

/// What a read of the table answers the caller: None when there is no entry; else the cache
/// type it is counted under (NO_ENTRY when the caller may not read it) and the value when live
/// (a NULL in a column the table declares NOT NULL, altered by hand, reads as what it says: no
/// expiry is no entry, no value is a NULL value).
type Answer = Option<(String, Option<Option<RawJsonb>>)>;

/// The value cached under `p_key`, or NULL when there is none, it has expired, or the caller
/// may not read it. Called by Postgres through src/postgres/fcall.rs (its argument read straight
/// from the call: a hit is measured against a bare SELECT 1), declared in src/lib.rs.
pub fn get_cache(args: &fcall::Args) -> Option<RawJsonb> {
    let key = check_key(args.text(0, "p_key")).or_raise();
    // The key's copy is in a random place of the region, a miss to memory: start loading it
    // before the checks ahead (with the copies last described; if they changed since, the hint
    // was only wasted).
    DESCRIBED.with_borrow(|d| {
        if let Some(Described { copies: Some(copies), .. }) = d {
            copies.prefetch(key.as_bytes());
        }
    });
    let (table, copies) = shared_copies();
    let owner = table.ext.owner;
    if let Some(answer) = copies.as_ref().and_then(|c| answer_from_copy(c, key, owner)) {
        return answer;
    }
    match read_entry(copies.as_ref(), key, owner) {
        Some((cache_type, Some(value))) => {
            stats::add(Kind::CacheHit, &[&cache_type], 1);
            value
        }
        Some((cache_type, None)) => {
            stats::add(Kind::CacheMiss, &[&cache_type], 1);
            None
        }
        None => {
            stats::add(Kind::CacheMiss, &[NO_ENTRY], 1);
            None
        }
    }
}

/// The answer of `key`'s copy in shared memory (counted as a read of the table is), when it has
/// one the statement's snapshot sees.
fn answer_from_copy(copies: &Shared, key: &str, owner: pg_sys::Oid) -> Option<Option<RawJsonb>> {
    let mut copy = shared::Copy::empty();
    if !copies.copy(key.as_bytes(), &mut copy) {
        return None;
    }
    if snapshot::sees_committed(copy.xmin()) != Some(true) {
        return None;
    }
    // (Counted as bytes: written from a text, and never read as one here.)
    let cache_type = copy.cache_type();
    copies.answered();
    if !may_read(Visibility::from_code(copy.visibility()), copy.owner().map(pgrx::Uuid::from_bytes), owner) {
        stats::add(Kind::CacheMiss, &[NO_ENTRY], 1);
        Some(None)
    } else if copy.expires_at() > now() {
        stats::add(Kind::CacheHit, &[cache_type], 1);
        Some(Some(RawJsonb::from_bytes(copy.value())))
    } else {
        stats::add(Kind::CacheMiss, &[cache_type], 1);
        Some(None)
    }
}

/// The answer read from cache_entries by its primary key; copied to shared memory when the row
/// read is its latest committed version and the caller could read it live.
fn read_entry(copies: Option<&Shared>, key: &str, owner: pg_sys::Oid) -> Answer {
    let ticket = copies.and_then(|c| c.ticket(key.as_bytes()));
    let mut copyable = None;
    let found = relation::lookup_by_text_key(&ENTRIES, KEY, key, relation::Seen::Statement, |row| {
        let visibility = row.text(VISIBILITY).as_deref().and_then(Visibility::parse);
        let owner_user_id = row.uuid(OWNER_USER_ID);
        let expires_at = row.timestamptz(EXPIRES_AT);
        let readable = may_read(visibility, owner_user_id, owner);
        let live = expires_at.is_some_and(|e| e > now());
        match (readable, live) {
            (false, _) => (NO_ENTRY.to_owned(), None),
            (true, live) => {
                let cache_type = row.text(CACHE_TYPE).unwrap_or_default();
                let value = live.then(|| row.jsonb(VALUE));
                if ticket.is_some() {
                    let version = row.version();
                    if let (Some(Some(_)), Some(expires_at), true, false) =
                        (&value, expires_at, version.latest, version.own)
                    {
                        copyable = Some((version.xmin, expires_at, visibility, owner_user_id));
                    }
                }
                (cache_type, value)
            }
        }
    });
    if let (
        Some(copies),
        Some(ticket),
        Some((xmin, expires_at, visibility, owner_user_id)),
        Some((cache_type, Some(Some(value)))),
    ) = (copies, ticket, copyable, &found)
    {
        copies.fill(
            ticket,
            key.as_bytes(),
            &shared::Entry {
                xmin,
                expires_at,
                visibility: Visibility::code(visibility),
                owner: owner_user_id.map(|u| *u.as_bytes()),
                cache_type: cache_type.as_bytes(),
                value: value.bytes(),
            },
        );
    }
    found
}

// ---------------------------------------------------------------------------------------------
// The shared copies (src/cache/shared.rs): when they may be used.

/// The row trigger that drops a key's copies on every update and delete (sql/cache.sql), and
/// its pg_trigger.tgtype: ROW | DELETE | UPDATE, AFTER.
const COPIES_TRIGGER: &std::ffi::CStr = c"cache_entries_shared_copies";
const COPIES_TRIGGER_TYPE: u32 = pg_sys::TRIGGER_TYPE_ROW | pg_sys::TRIGGER_TYPE_DELETE | pg_sys::TRIGGER_TYPE_UPDATE;

/// The resolution of cache_entries this backend last described, and the copies it may use
/// with it (None: the trigger does not fire always, copies are not used).
struct Described {
    table: Rc<relation::Table>,
    copies: Option<Shared>,
}

thread_local! {
    static DESCRIBED: RefCell<Option<Described>> = const { RefCell::new(None) };
}

/// cache_entries as resolved now, and the shared copies this call may use: None without a
/// region, in recovery, or when the trigger that keeps them exact is not enabled ALWAYS.
fn shared_copies() -> (Rc<relation::Table>, Option<Shared>) {
    if shmem::cache_region().is_none() || backend::in_recovery() {
        return (relation::table(&ENTRIES), None);
    }
    // Changes to the table committed by other sessions (DDL, the trigger disabled) are seen
    // before a copy is trusted: with nothing queued, one unlocked flag test.
    inval::accept_invalidation_messages();
    // The table described last, while no invalidation has come since (then it is the one
    // relation::table would find).
    if let Some(known) =
        DESCRIBED.with_borrow(|d| d.as_ref().filter(|d| d.table.is_current()).map(|d| (Rc::clone(&d.table), d.copies)))
    {
        return known;
    }
    let table = relation::table(&ENTRIES);
    let form = relation::form(&ENTRIES, COPIES_TRIGGER, COPIES_TRIGGER_TYPE);
    let copies = form.and_then(|f| Shared::new(u32::from(table.ext.relid), Some(&f)));
    // Opening the table may have resolved it again: remember the form with what is current.
    let table = relation::table(&ENTRIES);
    DESCRIBED.set(Some(Described { table: Rc::clone(&table), copies }));
    (table, copies)
}

/// Row trigger on cache_entries, AFTER UPDATE OR DELETE (enabled ALWAYS): drops the copies of
/// the key changed, so that no session answers from them again.
#[pg_trigger]
fn _cache_entry_changed<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, pgrx::AllocatedByPostgres>>, pgrx::PgTriggerError> {
    let relid = trigger.relation()?.oid();
    if let (Some(copies), Some(old)) = (Shared::new(u32::from(relid), None), trigger.old()) {
        // A key the table cannot hold (a DBA's change of type) has no copy.
        if let Ok(Some(key)) = old.get_by_name::<&str>("key") {
            copies.drop_key(key.as_bytes());
        }
    }
    Ok(None)
}

/// The shared copies get_cache answers from (easymo preloaded): the server's slots, how many hold
/// a copy, and the copies made and answers given from them since the server started.
#[pg_extern(volatile, parallel_safe)]
fn cache_shared_stats() -> srf::TableIterator<
    'static,
    (name!(slots, i64), name!(copies, i64), name!(copies_made, i64), name!(answers_from_copies, i64)),
> {
    let [slots, copies, made, answers] = shared::counts();
    srf::TableIterator::once((slots, copies, made, answers))
}

/// Requests the shared memory of the copies; from _PG_init while preloading.
pub fn init() {
    if backend::preloading() {
        let mb = usize::try_from(gucs::CACHE_SHARED_MEMORY.get()).unwrap_or(0);
        shmem::init_cache_region(mb * 1024 * 1024);
    }
}

// ---------------------------------------------------------------------------------------------
// Writing: planned statements.

struct WritePlans {
    table: ExtTable,
    /// Prepared on first use: a database not yet updated to 0.3.0 has no visibility columns, and
    /// only the legacy set_cache (its own declaration) writes there.
    upsert: OnceCell<Plan>,
    legacy_upsert: OnceCell<Plan>,
    delete: OwnedPreparedStatement,
    invalidate: OwnedPreparedStatement,
    sweep: OwnedPreparedStatement,
}

thread_local! {
    static WRITE_PLANS: PlanSlot<WritePlans> = const { RefCell::new(None) };
}

fn oids(types: &[pg_sys::Oid]) -> Vec<PgOid> {
    types.iter().copied().map(PgOid::from).collect()
}

fn prepare_writes(client: &SpiClient<'_>, table: &ExtTable) -> pgrx::spi::SpiResult<WritePlans> {
    use pg_sys::{TEXTOID, TIDOID, TIMESTAMPTZOID};
    let table = table.clone();
    let t = &table.qualified;
    Ok(WritePlans {
        upsert: OnceCell::new(),
        legacy_upsert: OnceCell::new(),
        delete: client
            .prepare_mut(
                &format!("DELETE FROM {t} WHERE key OPERATOR(pg_catalog.=) $1 RETURNING expires_at OPERATOR(pg_catalog.>) $2"),
                &oids(&[TEXTOID, TIMESTAMPTZOID]),
            )?
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

impl WritePlans {
    // Only unindexed columns change on conflict: the update is HOT when the page has room.
    fn upsert(&self) -> &Plan {
        use pg_sys::{JSONBOID, TEXTARRAYOID, TEXTOID, TIMESTAMPTZOID, UUIDOID};
        self.upsert.get_or_init(|| {
            Plan::prepare(
                &format!(
                    "INSERT INTO {} AS c (key, value, cache_type, tags, expires_at, created_at, updated_at, visibility, owner_user_id) \
                     VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value, cache_type = excluded.cache_type, \
                         tags = excluded.tags, expires_at = excluded.expires_at, updated_at = excluded.updated_at, \
                         visibility = excluded.visibility, owner_user_id = excluded.owner_user_id",
                    self.table.qualified
                ),
                &[TEXTOID, JSONBOID, TEXTOID, TEXTARRAYOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TEXTOID, UUIDOID],
            )
        })
    }

    /// The upsert of 0.2.0's table (no visibility columns: every entry is service-only there).
    fn legacy_upsert(&self) -> &Plan {
        use pg_sys::{JSONBOID, TEXTARRAYOID, TEXTOID, TIMESTAMPTZOID};
        self.legacy_upsert.get_or_init(|| {
            Plan::prepare(
                &format!(
                    "INSERT INTO {} AS c (key, value, cache_type, tags, expires_at, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $6) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value, cache_type = excluded.cache_type, \
                         tags = excluded.tags, expires_at = excluded.expires_at, updated_at = excluded.updated_at",
                    self.table.qualified
                ),
                &[TEXTOID, JSONBOID, TEXTOID, TEXTARRAYOID, TIMESTAMPTZOID, TIMESTAMPTZOID],
            )
        })
    }
}

/// The table the write plans are kept against (their SQL names the columns they write).
static ENTRIES_TABLE: TableSpec = TableSpec { name: c"cache_entries", columns: &[] };
static COUNTERS: TableSpec = TableSpec { name: c"cache_stat_counters", columns: &[] };

fn write_plans() -> Rc<WritePlans> {
    prepared(&WRITE_PLANS, &ENTRIES_TABLE, |table| {
        Spi::connect(|c| prepare_writes(c, &table.ext))
            .unwrap_or_else(|e| error!("preparing the cache statements: {e}"))
    })
}

/// set_cache(p_key, p_value, p_ttl_seconds, p_cache_type, p_tags, p_visibility,
/// p_owner_user_id): stores `p_value` under `p_key` for `p_ttl_seconds`, replacing value, TTL,
/// type, tags and visibility; returns the expiry. `p_visibility`: service (service_role only,
/// the default), authenticated (every authenticated caller), owner (the user `p_owner_user_id`
/// too). Called by Postgres through src/postgres/fcall.rs (arguments read straight from the
/// call: a write is measured against the bare upsert), declared in src/lib.rs.
pub fn set_cache_entry(args: &fcall::Args) -> pg_sys::TimestampTz {
    let visibility = Some((args.text(5, "p_visibility"), args.uuid(6)));
    store(
        args.text(0, "p_key"),
        args.jsonb(1),
        args.int4(2),
        args.text(3, "p_cache_type"),
        args.text_array(4),
        visibility,
    )
}

/// set_cache's work; `visibility` None writes 0.2.0's table (see legacy_upsert). Returns the
/// expiry.
fn store(
    p_key: Option<&str>,
    p_value: Option<RawJsonb>,
    p_ttl_seconds: Option<i32>,
    p_cache_type: Option<&str>,
    p_tags: Option<RawTextArray>,
    visibility: Option<(Option<&str>, Option<pgrx::Uuid>)>,
) -> pg_sys::TimestampTz {
    let check = || -> Result<_, ContractError> {
        let checked = (
            check_key(p_key)?,
            required(p_value, "p_value")?,
            check_ttl(p_ttl_seconds)?,
            check_cache_type(p_cache_type)?,
        );
        check_tags(p_tags.as_ref())?;
        let visibility = match visibility {
            Some((name, owner)) => {
                let v = check_visibility(name, owner)?;
                Some((VISIBILITIES.iter().find(|(_, x)| *x == v).map(|(n, _)| *n).expect("listed"), owner))
            }
            None => None,
        };
        Ok((checked, visibility))
    };
    let ((key, value, ttl, kind), visibility) = check().or_raise();
    let plans = write_plans();
    let now = now();
    let expires_at = now + i64::from(ttl) * 1_000_000;
    let tags = match &p_tags {
        Some(t) => t.as_arg(),
        None => Vec::<String>::new().into(),
    };
    let [a, b, c, d, e, f] =
        [key.into(), value.as_arg(), kind.into(), tags, timestamptz(expires_at).into(), timestamptz(now).into()];
    match visibility {
        Some((name, owner)) => plans.upsert().execute(&[a, b, c, d, e, f, name.into(), owner.into()]),
        None => plans.legacy_upsert().execute(&[a, b, c, d, e, f]),
    };
    expires_at
}

/// set_cache as easymo 0.2.0 declared it (five arguments), kept under its C symbol: a database
/// still at 0.2.0 after this library is installed calls it until ALTER EXTENSION easymo UPDATE
/// replaces the declaration. Not declared by this version's install script.
#[pg_extern(sql = false, volatile, parallel_unsafe)]
fn set_cache(
    p_key: Option<&str>,
    p_value: Option<RawJsonb>,
    p_ttl_seconds: Option<i32>,
    p_cache_type: Option<&str>,
    p_tags: Option<RawTextArray>,
) -> TimestampWithTimeZone {
    timestamptz(store(p_key, p_value, p_ttl_seconds, p_cache_type, p_tags, None))
}

/// Deletes `p_key`; true when it held a value that had not expired.
#[pg_extern(volatile, parallel_unsafe)]
fn delete_cache(p_key: Option<&str>) -> bool {
    let key = check_key(p_key).or_raise();
    let plans = write_plans();
    let now = timestamptz(now());
    Spi::connect_mut(|client| {
        let mut live = false;
        for row in client.update(&plans.delete, None, &[key.into(), now.into()])? {
            live |= row.get::<bool>(1)?.unwrap_or(false);
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
    let tid = |page: u32| {
        let mut tid = pg_sys::ItemPointerData::default();
        pgrx::itemptr::item_pointer_set_all(&mut tid, page, 0);
        tid
    };
    Spi::connect_mut(|client| {
        let mut deleted = 0;
        let mut start = first;
        let end = first.saturating_add(pages);
        while start < end {
            let stop = start.saturating_add(SWEEP_PAGES).min(end);
            deleted +=
                client.update(&plans.sweep, None, &[tid(start).into(), tid(stop).into(), now.into()])?.len() as i64;
            start = stop;
        }
        Ok::<_, pgrx::spi::Error>(deleted)
    })
    .unwrap_or_else(|e| error!("sweeping expired cache entries: {e}"))
}

/// The heap's size in pages.
pub fn cache_pages() -> u32 {
    relation::heap_pages(&ENTRIES_TABLE)
}

/// Deletes every expired entry; returns how many.
#[pg_extern(volatile, parallel_unsafe)]
fn cleanup_expired_cache() -> i32 {
    saturating_i32(sweep_expired(0, cache_pages()))
}

// ---------------------------------------------------------------------------------------------
// Hit and miss counters (counted by src/stats.rs, never written in the caller's transaction).

/// Hits and misses per cache type (cache_type NULL: keys that had no entry the caller could
/// read): shared memory or cache_stat_counters, plus this session's counts not yet handed on.
#[pg_extern(stable, parallel_restricted)]
fn cache_hit_counters(
) -> srf::TableIterator<'static, (name!(cache_type, Option<String>), name!(hits, i64), name!(misses, i64))> {
    let mut totals: HashMap<String, (i64, i64)> = HashMap::new();
    for (key, n) in stats::totals(&[Kind::CacheHit, Kind::CacheMiss]) {
        let name = stats::split_key(&key[1..]).swap_remove(0);
        let t = totals.entry(name).or_default();
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        if key[0] == Kind::CacheHit as u8 {
            t.0 += n;
        } else {
            t.1 += n;
        }
    }
    let table = relation::table(&COUNTERS).ext.clone();
    let rows: Vec<(String, i64, i64)> = as_owner(table.owner, || {
        Spi::connect(|client| {
            client
                .select(
                    &format!(
                        "SELECT cache_type::pg_catalog.text, hits::pg_catalog.int8, misses::pg_catalog.int8 FROM {}",
                        table.qualified
                    ),
                    None,
                    &[],
                )?
                .map(|r| Ok((r.get(1)?.unwrap_or_default(), r.get(2)?.unwrap_or(0), r.get(3)?.unwrap_or(0))))
                .collect::<Result<Vec<_>, pgrx::spi::Error>>()
        })
    })
    .unwrap_or_else(|e| error!("reading cache counters: {e}"));
    for (name, h, m) in rows {
        let t = totals.entry(name).or_default();
        t.0 += h;
        t.1 += m;
    }
    let mut rows: Vec<_> =
        totals.into_iter().map(|(name, (h, m))| ((name != NO_ENTRY).then_some(name), h, m)).collect();
    rows.sort();
    srf::TableIterator::new(rows)
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
        // Characters, not bytes: 64 two-byte characters pass, 65 do not.
        assert!(check_cache_type(Some(&"é".repeat(64))).is_ok());
        assert!(check_cache_type(Some(&"é".repeat(65))).unwrap_err().to_string().contains("got 65"));
        assert!(check_cache_type(Some(&"a".repeat(64))).is_ok());
        assert!(check_cache_type(Some("")).unwrap_err().to_string().contains("got 0"));
        // (check_tags reads array datums: it is tested through SQL, tests/pg_regress/sql/cache.sql.)
    }
}
