//! The extension's tables as the native paths read them: found by name in the extension's schema,
//! their columns checked by name and type, and kept per backend only until a relcache
//! invalidation of one of them arrives (any DDL, REINDEX, VACUUM FULL, TRUNCATE, or the extension
//! dropped and created again). A key lookup remembers the index it used only while its table is
//! current, and checks it again at every use (it must still exist, belong to the table and be a
//! valid unique index on the key alone); otherwise it asks the relcache of the opened table.
//!
//! 0.2.0 remembered index OIDs and column numbers for the backend's life: after a REINDEX
//! CONCURRENTLY from another session every later read in an open session failed with "could not
//! open relation with OID", and a column made nullable crashed the backend.

use super::inval;
use super::unguarded;
use crate::error::raise;
use crate::postgres::catalog::{ext_table, ExtTable};
use crate::postgres::datum::{self, RawJsonb};
use pgrx::prelude::*;
use std::cell::{Cell, RefCell};
use std::ffi::CStr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// A column a native path reads, with the type it reads it as. An optional column is one an
/// earlier version's table lacks (a database not yet updated by ALTER EXTENSION easymo UPDATE):
/// missing, it reads as NULL.
pub struct Column {
    pub name: &'static CStr,
    pub type_oid: pg_sys::Oid,
    pub optional: bool,
}

impl Column {
    pub const fn new(name: &'static CStr, type_oid: pg_sys::Oid) -> Column {
        Column { name, type_oid, optional: false }
    }

    /// A column added in a later version (see the type's comment).
    pub const fn added_later(name: &'static CStr, type_oid: pg_sys::Oid) -> Column {
        Column { name, type_oid, optional: true }
    }
}

/// A table a native path reads: its name and the columns it reads (referred to by their
/// position in `columns`).
pub struct TableSpec {
    pub name: &'static CStr,
    pub columns: &'static [Column],
}

/// A table as found now.
pub struct Table {
    pub ext: ExtTable,
    attnums: Vec<i16>,
    watched: Watched,
    /// The indexes this table's native reads last used, by use: tried first, checked again at
    /// every use (`key_index`, `points`). Resolved with the table, so any DDL forgets them.
    indexes: RefCell<Vec<(IndexUse, pg_sys::Oid)>>,
    /// The role, privilege and roles generation (`inval::ROLES`) `require_privilege` last
    /// granted: GRANT and REVOKE on the table invalidate it (and so this resolution), a change
    /// of roles or memberships bumps the generation.
    allowed: Cell<(pg_sys::Oid, pg_sys::AclMode, u64)>,
}

/// What a native read uses an index of a table for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum IndexUse {
    /// Lookups by the key column of this attribute number.
    Key(i16),
    /// Scans for points in a box (`points`).
    Points,
}

impl Table {
    /// The index remembered for `what`.
    pub(super) fn remembered(&self, what: IndexUse) -> Option<pg_sys::Oid> {
        self.indexes.borrow().iter().find(|(u, _)| *u == what).map(|&(_, oid)| oid)
    }

    /// Remembers `index` for `what`, or forgets what was (None).
    pub(super) fn remember(&self, what: IndexUse, index: Option<pg_sys::Oid>) {
        let mut indexes = self.indexes.borrow_mut();
        indexes.retain(|(u, _)| *u != what);
        if let Some(oid) = index {
            indexes.push((what, oid));
        }
    }

    /// Whether no invalidation of this table has arrived since it was resolved.
    pub fn is_current(&self) -> bool {
        self.watched.is_current()
    }

    pub fn attnum(&self, column: usize) -> i16 {
        self.attnums[column]
    }

    /// How many columns the spec names.
    pub fn columns(&self) -> usize {
        self.attnums.len()
    }

    /// The last attribute a read of the spec's first `columns` columns needs deformed.
    pub(super) fn last_attnum(&self, columns: usize) -> i32 {
        i32::from(self.attnums[..columns].iter().copied().max().unwrap_or(1))
    }
}

/// 42501 unless the current role has `privilege` on `spec`'s table: a native read that answers
/// for a writer (a replay) answers only a role that could have written. Checked once per role
/// while neither the table's grants nor the roles change.
pub fn require_privilege(spec: &'static TableSpec, privilege: pg_sys::AclMode) {
    if !has_privilege(&table(spec), privilege) {
        raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied for table {}", spec.name.to_string_lossy()),
        );
    }
}

/// Whether the current role has `privilege` on the whole of `table` (remembered as
/// `require_privilege` says).
pub fn has_privilege(table: &Table, privilege: pg_sys::AclMode) -> bool {
    let granted = (super::backend::current_user(), privilege, inval::ROLES.load(Ordering::Relaxed));
    if table.allowed.get() == granted {
        return true;
    }
    // SAFETY: a catalog lookup for a relation that exists (just resolved).
    let ok = unsafe { pg_sys::pg_class_aclcheck(table.ext.relid, granted.0, privilege) };
    if ok == pg_sys::AclResult::ACLCHECK_OK {
        table.allowed.set(granted);
    }
    ok == pg_sys::AclResult::ACLCHECK_OK
}

/// 55000, naming what is no longer as easymo created it.
pub fn not_as_created(table: &CStr, what: impl std::fmt::Display) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        format!("easymo table {} is not as easymo created it: {what}", table.to_string_lossy()),
    )
}

/// A watched relation: its relid, and a generation bumped by every relcache invalidation of it
/// (or of all relations). A resolved table is used only while its relation's generation is the
/// one it was found under, so a change to one table re-resolves that table only.
struct Watch {
    relid: AtomicU32,
    generation: AtomicU64,
}

static WATCHED: [Watch; 64] = [const { Watch { relid: AtomicU32::new(0), generation: AtomicU64::new(1) } }; 64];
/// The generation of relations beyond the 64 slots: bumped by every invalidation of a relation
/// not in a slot (only slower, never wrong).
static OVERFLOW: AtomicU64 = AtomicU64::new(1);

/// The generation counter of `relid`, taking a slot for it if it has none: a free one, or
/// one of a relation that no longer exists (the extension dropped and created again makes new
/// tables, and the slots of the old ones would otherwise stay taken for the backend's life).
fn watch(relid: pg_sys::Oid) -> &'static AtomicU64 {
    let relid = u32::from(relid);
    for w in &WATCHED {
        match w.relid.compare_exchange(0, relid, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return &w.generation,
            Err(current) if current == relid => return &w.generation,
            Err(_) => {}
        }
    }
    for w in &WATCHED {
        let current = w.relid.load(Ordering::Relaxed);
        // SAFETY: a syscache lookup; 0 for a relation that does not exist.
        let gone = unsafe { pg_sys::get_rel_relkind(pg_sys::Oid::from(current)) } == 0;
        if gone && w.relid.compare_exchange(current, relid, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            // Whatever was resolved under the old relation is stale.
            w.generation.fetch_add(1, Ordering::Relaxed);
            return &w.generation;
        }
    }
    &OVERFLOW
}

/// A relation watched for changes by its relcache invalidations: a resolved `Table`, or what is
/// kept about a relation no `TableSpec` names (a partition the writer inserts into).
pub struct Watched {
    watch: &'static AtomicU64,
    generation: u64,
}

impl Watched {
    /// Starts watching `relid`: read it after this, and what was read is current while
    /// `is_current` says so.
    pub fn new(relid: pg_sys::Oid) -> Watched {
        let watch = watch(relid);
        Watched { watch, generation: watch.load(Ordering::Relaxed) }
    }

    pub fn is_current(&self) -> bool {
        self.watch.load(Ordering::Relaxed) == self.generation
    }

    /// Makes everything resolved under this watch stale, as an invalidation of the relation does.
    fn forget(&self) {
        self.watch.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs inside invalidation processing: it must not fail and must not touch the database.
fn on_relcache_invalidation(relid: pg_sys::Oid) {
    let relid = u32::from(relid);
    let mut found = false;
    for w in &WATCHED {
        let r = w.relid.load(Ordering::Relaxed);
        if relid == 0 || r == relid {
            w.generation.fetch_add(1, Ordering::Relaxed);
            found = r == relid;
        }
    }
    if !found {
        OVERFLOW.fetch_add(1, Ordering::Relaxed);
    }
}

/// Called once per backend, from _PG_init.
pub fn init() {
    inval::on_relcache_invalidation(on_relcache_invalidation);
    inval::watch_roles();
}

thread_local! {
    static TABLES: RefCell<Vec<(*const TableSpec, Rc<Table>)>> = const { RefCell::new(Vec::new()) };
}

/// The table of `spec` as it is now, found again after any change to it.
pub fn table(spec: &'static TableSpec) -> Rc<Table> {
    let cached = TABLES
        .with_borrow(|t| t.iter().find(|(s, t)| std::ptr::eq(*s, spec) && t.is_current()).map(|(_, t)| Rc::clone(t)));
    if let Some(t) = cached {
        return t;
    }
    let t = Rc::new(resolve(spec));
    TABLES.with_borrow_mut(|tables| {
        tables.retain(|(s, _)| !std::ptr::eq(*s, spec));
        tables.push((spec, Rc::clone(&t)));
    });
    t
}

fn resolve(spec: &'static TableSpec) -> Table {
    let ext = ext_table(&spec.name.to_string_lossy());
    // The generation is read before the columns: a change committed while we look at them is
    // seen by the next call.
    let watched = Watched::new(ext.relid);
    let attnums = spec
        .columns
        .iter()
        .map(|c| {
            // SAFETY: syscache lookups on a relation that exists; a dropped column is not found.
            let (attnum, type_oid) = unsafe {
                let attnum = pg_sys::get_attnum(ext.relid, c.name.as_ptr());
                (attnum, if attnum > 0 { pg_sys::get_atttype(ext.relid, attnum) } else { pg_sys::Oid::INVALID })
            };
            if attnum <= 0 {
                if c.optional {
                    return 0;
                }
                not_as_created(spec.name, format_args!("column {} is missing", c.name.to_string_lossy()));
            }
            if type_oid != c.type_oid {
                not_as_created(
                    spec.name,
                    format_args!(
                        "column {} is of type {}, easymo reads {}",
                        c.name.to_string_lossy(),
                        type_name(type_oid),
                        type_name(c.type_oid)
                    ),
                );
            }
            attnum
        })
        .collect();
    Table { ext, attnums, watched, indexes: RefCell::new(Vec::new()), allowed: Cell::new((pg_sys::Oid::INVALID, 0, 0)) }
}

fn type_name(oid: pg_sys::Oid) -> String {
    // SAFETY: format_type_be returns a palloc'd string for any oid.
    unsafe { CStr::from_ptr(pg_sys::format_type_be(oid)) }.to_string_lossy().into_owned()
}

/// HEAP_XMAX_IS_LOCKED_ONLY: the xmax only locks the version (the second form is a lock
/// written by PostgreSQL 9.2 and before, kept by pg_upgrade).
fn locked_only(infomask: u32) -> bool {
    infomask & pg_sys::HEAP_XMAX_LOCK_ONLY != 0
        || infomask & (pg_sys::HEAP_XMAX_IS_MULTI | pg_sys::HEAP_LOCK_MASK) == pg_sys::HEAP_XMAX_EXCL_LOCK
}

/// FrozenTransactionId: committed before every snapshot.
const FROZEN_XID: u32 = 2;

/// What copies of `spec`'s rows kept elsewhere depend on besides the rows themselves, as this
/// backend's relcache has it now: the table's file (TRUNCATE, VACUUM FULL and rewrites change
/// it), the attribute numbers of the spec's columns, and the oid and raw xmin of the trigger
/// `trigger` (disabling or enabling it writes a new pg_trigger row version; the raw xmin, unlike
/// the xmin column, survives freezing). None unless that trigger is enabled ALWAYS (fired
/// whatever a session's session_replication_role), of exactly the type `tgtype`
/// (pg_trigger.tgtype bits), on every column and without a WHEN condition.
pub fn form(spec: &'static TableSpec, trigger: &std::ffi::CStr, tgtype: u32) -> Option<Vec<u8>> {
    let (table, heap) = open_current(spec, pg_sys::AccessShareLock, "read");
    // SAFETY: the relation is open and locked; its trigger descriptor, when there is one, has
    // numtriggers entries with NUL-terminated names; pg_trigger is opened, scanned by its oid
    // index with the catalog snapshot, and closed; the row found is read while the scan holds it.
    unsafe {
        #[cfg(feature = "pg15")]
        let file = u32::from((*heap).rd_node.relNode);
        #[cfg(not(feature = "pg15"))]
        let file = u32::from((*heap).rd_locator.relNumber);
        let desc = (*heap).trigdesc;
        let tgoid = (!desc.is_null())
            .then(|| {
                (0..(*desc).numtriggers as usize).map(|i| &*(*desc).triggers.add(i)).find(|t| {
                    std::ffi::CStr::from_ptr(t.tgname) == trigger
                        && t.tgenabled as u8 == pg_sys::TRIGGER_FIRES_ALWAYS
                        && u32::from(t.tgtype as u16) == tgtype
                        && t.tgnattr == 0
                        && t.tgqual.is_null()
                })
            })
            .flatten()
            .map(|t| t.tgoid);
        pg_sys::table_close(heap, pg_sys::NoLock as i32);
        let tgoid = tgoid?;
        let catalog = pg_sys::table_open(pg_sys::TriggerRelationId, pg_sys::AccessShareLock as i32);
        let mut key: pg_sys::ScanKeyData = std::mem::zeroed();
        pg_sys::ScanKeyInit(
            &mut key,
            pg_sys::Anum_pg_trigger_oid as pg_sys::AttrNumber,
            pg_sys::BTEqualStrategyNumber as u16,
            pg_sys::Oid::from(pg_sys::F_OIDEQ),
            pg_sys::Datum::from(tgoid),
        );
        let scan = pg_sys::systable_beginscan(
            catalog,
            pg_sys::Oid::from(pg_sys::TriggerOidIndexId),
            true,
            std::ptr::null_mut(),
            1,
            &mut key,
        );
        let row = pg_sys::systable_getnext(scan);
        let xmin = (!row.is_null()).then(|| u32::from((*(*row).t_data).t_choice.t_heap.t_xmin));
        pg_sys::systable_endscan(scan);
        pg_sys::table_close(catalog, pg_sys::AccessShareLock as i32);
        let mut form = Vec::with_capacity(64);
        form.extend_from_slice(&file.to_ne_bytes());
        for column in 0..spec.columns.len() {
            form.extend_from_slice(&table.attnum(column).to_ne_bytes());
        }
        form.extend_from_slice(&u32::from(tgoid).to_ne_bytes());
        form.extend_from_slice(&xmin?.to_ne_bytes());
        Some(form)
    }
}

/// A row version as `Row::version` reads it.
#[derive(Clone, Copy, Debug)]
pub struct Version {
    pub xmin: u32,
    pub latest: bool,
    pub own: bool,
}

/// A row being read, with its NULL flags: column getters take the position in the spec's
/// `columns`, and copy the value out of the buffer.
pub struct Row<'a> {
    slot: *mut pg_sys::TupleTableSlot,
    table: &'a Table,
}

impl Row<'_> {
    /// The row in `slot`, deformed at least up to the last spec column read.
    pub(super) fn of(slot: *mut pg_sys::TupleTableSlot, table: &Table) -> Row<'_> {
        Row { slot, table }
    }

    fn datum(&self, column: usize) -> Option<pg_sys::Datum> {
        let attnum = self.table.attnum(column);
        if attnum == 0 {
            return None; // an optional column the table does not have
        }
        let i = attnum as usize - 1;
        // SAFETY: the slot holds a row whose attributes up to the spec's last were deformed.
        unsafe { (!*(*self.slot).tts_isnull.add(i)).then(|| *(*self.slot).tts_values.add(i)) }
    }

    /// A text column's value; 22021 if it is not UTF-8 (possible only in a database of another
    /// encoding), never a silently altered string.
    pub fn text(&self, column: usize) -> Option<String> {
        // SAFETY: the column's type was checked to be text when the table was resolved.
        let bytes = self.datum(column).map(|d| unsafe { datum::bytes(d) })?;
        Some(datum::utf8(bytes, || format!("a text value of easymo table {}", self.table.ext.qualified)).to_owned())
    }

    /// Whether a text column's value is `s`, byte for byte (no copy).
    pub fn text_is(&self, column: usize, s: &str) -> bool {
        // SAFETY: the column's type was checked to be text when the table was resolved.
        self.datum(column).is_some_and(|d| unsafe { datum::bytes(d) } == s.as_bytes())
    }

    pub fn float8(&self, column: usize) -> Option<f64> {
        // SAFETY: checked to be float8, passed by value.
        self.datum(column).map(|d| f64::from_bits(d.value() as u64))
    }

    pub fn uuid(&self, column: usize) -> Option<pgrx::Uuid> {
        // SAFETY: checked to be uuid.
        self.datum(column).and_then(|d| unsafe { pgrx::Uuid::from_datum(d, false) })
    }

    pub fn timestamptz(&self, column: usize) -> Option<pg_sys::TimestampTz> {
        // SAFETY: checked to be timestamptz, a by-value int64.
        self.datum(column).map(|d| d.value() as pg_sys::TimestampTz)
    }

    /// A numeric column's value as compared with `given` (see `StoredNumeric`).
    pub fn numeric(&self, column: usize, given: Option<&datum::RawNumeric>) -> Option<datum::StoredNumeric> {
        // SAFETY: checked to be numeric.
        self.datum(column).map(|d| unsafe { datum::StoredNumeric::read(d, given) })
    }

    /// Which version of its row this is: its inserting transaction, whether nobody has
    /// updated or deleted it (its xmax is unset, aborted or only a lock, which INSERT ... ON
    /// CONFLICT DO UPDATE leaves on the version it writes: it is the row's latest version), and
    /// whether the current transaction inserted it.
    pub fn version(&self) -> Version {
        // SAFETY: the slot holds a heap row fetched from a pinned buffer (a heap table's slot);
        // its header is read without the buffer's content lock, each field once, with volatile
        // aligned reads: a concurrent writer sets xmax and infomask under that lock, and a
        // caller that must not miss it orders its reads after its own (src/cache/shared.rs).
        unsafe {
            let tuple = pg_sys::ffi::pg_guard_ffi_boundary(|| {
                pg_sys::ExecFetchSlotHeapTuple(self.slot, false, std::ptr::null_mut())
            });
            let header = (*tuple).t_data;
            let infomask = u32::from(std::ptr::read_volatile(&raw const (*header).t_infomask));
            let xmin = std::ptr::read_volatile(&raw const (*header).t_choice.t_heap.t_xmin);
            let xmax = std::ptr::read_volatile(&raw const (*header).t_choice.t_heap.t_xmax);
            let frozen = infomask & pg_sys::HEAP_XMIN_FROZEN == pg_sys::HEAP_XMIN_FROZEN;
            Version {
                xmin: if frozen { FROZEN_XID } else { u32::from(xmin) },
                latest: u32::from(xmax) == 0 || infomask & pg_sys::HEAP_XMAX_INVALID != 0 || locked_only(infomask),
                own: !frozen && pg_sys::TransactionIdIsCurrentTransactionId(xmin),
            }
        }
    }

    /// A jsonb column's value, copied (detoasted) into the current memory context.
    pub fn jsonb(&self, column: usize) -> Option<RawJsonb> {
        // SAFETY: checked to be jsonb; the copy outlives the buffer.
        self.datum(column).map(|d| unsafe {
            RawJsonb::from_datum_unchecked(pg_sys::Datum::from(pg_sys::pg_detoast_datum_copy(d.cast_mut_ptr())))
        })
    }
}

/// `spec`'s table opened and locked in `lockmode`, with its resolution as it is once the lock
/// is held. Opening processes pending invalidations: if one concerned this table, what was
/// resolved before may be stale, so it is resolved again (twice at most: a third change in
/// between is a table being changed in a loop, 55000 naming what the caller does: `doing`).
pub fn open_current(spec: &'static TableSpec, lockmode: u32, doing: &str) -> (Rc<Table>, pg_sys::Relation) {
    let mut attempts = 0;
    loop {
        let table = table(spec);
        // SAFETY: try_table_open returns NULL for a relation that no longer exists.
        let heap = unsafe { pg_sys::try_table_open(table.ext.relid, lockmode as i32) };
        if !heap.is_null() && table.is_current() {
            return (table, heap);
        }
        if !heap.is_null() {
            // SAFETY: opened just above.
            unsafe { pg_sys::table_close(heap, pg_sys::NoLock as i32) };
        }
        // Changed while being opened (or gone): resolved again by the next `table(spec)`.
        table.watched.forget();
        attempts += 1;
        if attempts == 3 {
            raise(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!("easymo table {} keeps changing while it is {doing}", spec.name.to_string_lossy()),
            );
        }
    }
}

/// Under which snapshot a key lookup reads.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The calling statement's.
    Statement,
    /// A new one: everything committed now (in READ COMMITTED; the transaction's otherwise).
    Fresh,
    /// A new one, taken after waiting for the transactions in flight that insert or delete
    /// the key to end: a writer about to insert the key learns whether it may.
    Settled,
}

/// Reads the row whose text key column (`key_column`, a position in the spec's columns) equals
/// `key` through a unique btree index on exactly that column (the primary key, or a UNIQUE
/// constraint): at most one row. No SPI, no plan: the heap and index are opened and locked as the
/// executor would, and the index is the one the last lookup used while it still fits, or the one
/// the relcache names now. `read` sees the row while its buffer is pinned.
/// `seen` says under which snapshot.
pub fn lookup_by_text_key<R>(
    spec: &'static TableSpec,
    key_column: usize,
    key: &str,
    seen: Seen,
    read: impl FnOnce(&Row) -> R,
) -> Option<R> {
    use pg_sys::ffi::pg_guard_ffi_boundary as guarded;
    use pg_sys::{AccessShareLock, NoLock};
    let table = table(spec);
    let attnum = table.attnum(key_column);
    let last = table.last_attnum(table.columns());
    let mut scankey: pg_sys::ScanKeyData = unsafe { std::mem::zeroed() };
    // SAFETY: relations are opened and locked before use; every resource is released before
    // returning (and by transaction abort on error); attribute values are only handed to `read`
    // while the slot holds the row, with their NULL flags. The unguarded calls run inside one
    // guard per group (see `unguarded`), and the groups hold only raw pointers, references and
    // plain values.
    unsafe {
        // The common case in one guard: the table still as resolved, its remembered key index
        // still fitting, the statement's snapshot.
        let fast = table.remembered(IndexUse::Key(attnum)).filter(|_| seen != Seen::Settled).and_then(|oid| {
            guarded(|| {
                let heap = unguarded::try_table_open(table.ext.relid, AccessShareLock as i32);
                if heap.is_null() {
                    return None;
                }
                let index = if table.is_current() { remembered_index(heap, oid, attnum) } else { std::ptr::null_mut() };
                if index.is_null() {
                    if table.is_current() {
                        // It no longer fits: the slow path asks the relcache, not it again.
                        table.remember(IndexUse::Key(attnum), None);
                    }
                    unguarded::table_close(heap, NoLock as i32);
                    return None;
                }
                let slot = begin_key_scan(heap, index, key, &mut scankey);
                let (snapshot, scan, found) = first_match(heap, index, &mut scankey, slot, seen, last);
                Some(Scan { heap, index, slot, snapshot, scan, found })
            })
        });
        // Otherwise: opened as any change requires, the index asked of the relcache, and for
        // `Settled` a wait for writers of the key between the steps.
        let (table, open) = match fast {
            Some(open) => (table, open),
            None => {
                let (table, heap) = open_current(spec, AccessShareLock, "read");
                let index = key_index(&table, heap, table.attnum(key_column));
                if index.is_null() {
                    pg_sys::table_close(heap, NoLock as i32);
                    let key_name = spec.columns[key_column].name.to_string_lossy();
                    not_as_created(
                        spec.name,
                        format_args!("it must have a unique, not deferrable btree index on ({key_name}) alone"),
                    );
                }
                let slot = guarded(|| begin_key_scan(heap, index, key, &mut scankey));
                if seen == Seen::Settled {
                    wait_for_key_writers(heap, index, &mut scankey, slot);
                }
                let last = table.last_attnum(table.columns());
                let (snapshot, scan, found) = guarded(|| first_match(heap, index, &mut scankey, slot, seen, last));
                (table, Scan { heap, index, slot, snapshot, scan, found })
            }
        };
        let found = open.found.then(|| read(&Row { slot: open.slot, table: &table }));
        // Not usable by this snapshot: whether it never will be in this transaction (created by
        // it), or will be after a retry.
        let unusable = open.scan.is_null().then(|| pg_sys::TransactionIdIsCurrentTransactionId(index_xmin(open.index)));
        guarded(|| {
            unguarded::ExecDropSingleTupleTableSlot(open.slot);
            if !open.scan.is_null() {
                unguarded::index_endscan(open.scan);
            }
            unguarded::UnregisterSnapshot(open.snapshot);
            unguarded::index_close(open.index, NoLock as i32);
            unguarded::table_close(open.heap, NoLock as i32);
        });
        match unusable {
            Some(true) => raise(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!(
                    "the key index of easymo table {} was created in this transaction over rows that older snapshots still see; it can be used once this transaction has committed",
                    table.ext.qualified
                ),
            ),
            Some(false) => raise(
                PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE,
                format!(
                    "the key index of easymo table {} was created after this transaction's snapshot was taken; retry the transaction",
                    table.ext.qualified
                ),
            ),
            None => found,
        }
    }
}

/// A key lookup's open resources, and whether the scan found a row (then in `slot`); no scan
/// (NULL) when the snapshot may not use the index (`usable_by_snapshot`).
#[derive(Clone, Copy)]
struct Scan {
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    slot: *mut pg_sys::TupleTableSlot,
    snapshot: pg_sys::Snapshot,
    scan: pg_sys::IndexScanDesc,
    found: bool,
}

/// The scan key for `key` on `index`, and a slot for `heap`'s rows. Unguarded calls: run inside
/// a guard.
unsafe fn begin_key_scan(
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    key: &str,
    scankey: &mut pg_sys::ScanKeyData,
) -> *mut pg_sys::TupleTableSlot {
    // SAFETY: both relations open and locked; the key's text is copied into palloc'd memory.
    unsafe {
        let text = unguarded::cstring_to_text_with_len(key.as_ptr().cast(), key.len() as i32);
        unguarded::ScanKeyEntryInitialize(
            scankey,
            0,
            1,
            pg_sys::BTEqualStrategyNumber as u16,
            pg_sys::Oid::INVALID,
            *(*index).rd_indcollation,
            pg_sys::Oid::from(pg_sys::F_TEXTEQ),
            pg_sys::Datum::from(text),
        );
        unguarded::table_slot_create(heap, std::ptr::null_mut())
    }
}

/// Starts the scan under the snapshot `seen` names (registered) and reads the first match into
/// `slot`, deformed up to attribute `last`. Unguarded calls: run inside a guard.
unsafe fn first_match(
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    scankey: &mut pg_sys::ScanKeyData,
    slot: *mut pg_sys::TupleTableSlot,
    seen: Seen,
    last: i32,
) -> (pg_sys::Snapshot, pg_sys::IndexScanDesc, bool) {
    // SAFETY: both relations open and locked, the slot made for heap.
    unsafe {
        let snapshot = unguarded::RegisterSnapshot(if seen == Seen::Statement {
            super::snapshot::statement()
        } else {
            unguarded::GetTransactionSnapshot()
        });
        if !usable_by_snapshot(index, snapshot) {
            return (snapshot, std::ptr::null_mut(), false);
        }
        let scan = unguarded::begin_index_scan(heap, index, snapshot);
        unguarded::index_rescan(scan, scankey, 1, std::ptr::null_mut(), 0);
        let found = unguarded::index_getnext_slot(scan, pg_sys::ScanDirection::ForwardScanDirection, slot);
        if found {
            unguarded::slot_getsomeattrs_int(slot, last);
        }
        (snapshot, scan, found)
    }
}

/// Whether `snapshot` may use `index`: an index created over broken HOT chains (indcheckxmin)
/// lacks entries for row versions that only snapshots older than it still see, and its entry
/// for a key can lead to such an older version with another key. The planner skips it until
/// its pg_index row is older than every snapshot of the transaction; one scan under one
/// snapshot needs only that snapshot's xmin to be newer (the creating transaction ended before
/// it was taken). Unguarded call: run inside a guard.
pub(super) unsafe fn usable_by_snapshot(index: pg_sys::Relation, snapshot: pg_sys::Snapshot) -> bool {
    // SAFETY: an open index relation (its pg_index tuple is kept by the relcache); a
    // registered snapshot.
    unsafe {
        !(*(*index).rd_index).indcheckxmin || unguarded::TransactionIdPrecedes(index_xmin(index), (*snapshot).xmin)
    }
}

/// The transaction that created `index`'s pg_index row. Safe to call anywhere (reads only).
unsafe fn index_xmin(index: pg_sys::Relation) -> pg_sys::TransactionId {
    // SAFETY: an open index relation.
    unsafe { pg_sys::submodules::htup::HeapTupleHeaderGetXmin((*(*index).rd_indextuple).t_data) }
}

/// Waits until no transaction in flight (other than ours) inserts or deletes a row matching
/// `scankey`, as a unique index's insertion check does: a dirty snapshot shows their rows, with
/// the inserting or deleting transaction's id.
unsafe fn wait_for_key_writers(
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    scankey: &mut pg_sys::ScanKeyData,
    slot: *mut pg_sys::TupleTableSlot,
) {
    // SAFETY: both relations are open and locked; the dirty snapshot outlives each scan; the
    // slot is released before waiting.
    unsafe {
        loop {
            let mut dirty: pg_sys::SnapshotData = std::mem::zeroed();
            dirty.snapshot_type = pg_sys::SnapshotType::SNAPSHOT_DIRTY;
            let scan = pg_sys::ffi::pg_guard_ffi_boundary(|| unguarded::begin_index_scan(heap, index, &mut dirty));
            pg_sys::index_rescan(scan, scankey, 1, std::ptr::null_mut(), 0);
            let mut writer = None;
            while pg_sys::index_getnext_slot(scan, pg_sys::ScanDirection::ForwardScanDirection, slot) {
                let xid = if dirty.xmin != pg_sys::InvalidTransactionId { dirty.xmin } else { dirty.xmax };
                if xid != pg_sys::InvalidTransactionId {
                    writer = Some((xid, (*slot).tts_tid));
                    break;
                }
            }
            (*(*slot).tts_ops).clear.expect("slot operations")(slot);
            pg_sys::index_endscan(scan);
            let Some((xid, mut tid)) = writer else { return };
            pg_sys::XactLockTableWait(xid, heap, &mut tid, pg_sys::XLTW_Oper::XLTW_InsertIndexUnique);
        }
    }
}

/// The size of `spec`'s table in pages, as pg_relation_size counts them.
pub fn heap_pages(spec: &'static TableSpec) -> u32 {
    let table = table(spec);
    // SAFETY: opens and locks the relation to read its size; closed (lock kept) before returning.
    unsafe {
        let rel = pg_sys::table_open(table.ext.relid, pg_sys::AccessShareLock as i32);
        let pages = pg_sys::RelationGetNumberOfBlocksInFork(rel, pg_sys::ForkNumber::MAIN_FORKNUM);
        pg_sys::table_close(rel, pg_sys::NoLock as i32);
        pages
    }
}

/// The unique key index of `heap` on the text column `attnum`, opened and locked; NULL when it
/// has none. The one the table's last lookup used is tried first: it is used only if it still
/// exists (looked up by OID, so a dropped one is not found), is an index of `heap`, and still
/// fits; otherwise the relcache is asked (`unique_text_index`).
unsafe fn key_index(table: &Table, heap: pg_sys::Relation, attnum: i16) -> pg_sys::Relation {
    // SAFETY: heap is open and locked; an index opened here is closed unless returned.
    unsafe {
        if let Some(oid) = table.remembered(IndexUse::Key(attnum)) {
            let index = pg_sys::ffi::pg_guard_ffi_boundary(|| remembered_index(heap, oid, attnum));
            if !index.is_null() {
                return index;
            }
        }
        let index = unique_text_index(heap, attnum);
        if !index.is_null() {
            table.remember(IndexUse::Key(attnum), Some((*index).rd_id));
        }
        index
    }
}

/// The index `oid` opened and locked if it still exists, is an index of `heap` and still fits
/// (`fits_text_key`); otherwise NULL. Unguarded calls: run inside a guard.
unsafe fn remembered_index(heap: pg_sys::Relation, oid: pg_sys::Oid, attnum: i16) -> pg_sys::Relation {
    use pg_sys::{AccessShareLock, NoLock};
    // SAFETY: heap is open; try_relation_open returns NULL for a relation that is gone.
    unsafe {
        let index = unguarded::try_relation_open(oid, AccessShareLock as i32);
        if index.is_null() {
            return index;
        }
        if index_of(heap, index) && fits_text_key(index, attnum) {
            return index;
        }
        unguarded::index_close(index, NoLock as i32);
        std::ptr::null_mut()
    }
}

/// Whether `index` is a valid, immediately checked unique btree index of text's own operator
/// families, under a deterministic collation, on exactly the text column `attnum`, with no
/// predicate: one that promises at most one row per key at every moment. Called inside a guard
/// (its calls into Postgres, a bit test on the index's pg_index row and, for a collation other
/// than "C" or the default, a syscache lookup, are unguarded).
unsafe fn fits_text_key(index: pg_sys::Relation, attnum: i16) -> bool {
    // SAFETY: an open index relation.
    unsafe {
        let form = (*index).rd_index;
        (*form).indisunique
            && (*form).indimmediate
            && (*form).indisvalid
            && (*form).indnkeyatts == 1
            && *(*form).indkey.values.as_ptr() == attnum
            && (*(*index).rd_rel).relam == pg_sys::BTREE_AM_OID
            && *(*index).rd_opcintype == pg_sys::TEXTOID
            // Ordered as text's own `=` (texteq, which the scan key compares with) orders: a
            // custom operator class (case-insensitive, say) would find other keys, or none.
            && matches!(*(*index).rd_opfamily, pg_sys::TEXT_BTREE_FAM_OID | pg_sys::TEXT_PATTERN_BTREE_FAM_OID)
            // Keys equal only byte for byte: under a nondeterministic collation another key's
            // row would answer. (Ours are "C".)
            && deterministic(*(*index).rd_indcollation)
            && unguarded::heap_attisnull(
                (*index).rd_indextuple,
                pg_sys::Anum_pg_index_indpred as i32,
                std::ptr::null_mut(),
            )
    }
}

/// A unique, valid btree index of `heap` on exactly the text column `attnum` (its primary key
/// first), opened and locked; NULL when it has none. Asked of the relcache.
unsafe fn unique_text_index(heap: pg_sys::Relation, attnum: i16) -> pg_sys::Relation {
    use pg_sys::{AccessShareLock, NoLock};
    // SAFETY: an open relation; each index is opened and locked to be looked at, and closed
    // unless it is the one returned.
    unsafe {
        let pkey = primary_key(heap);
        let others = index_oids(heap).into_iter().filter(|&o| o != pkey);
        for oid in std::iter::once(pkey).chain(others).filter(|&o| o != pg_sys::Oid::INVALID) {
            let index = pg_sys::index_open(oid, AccessShareLock as i32);
            if pg_sys::ffi::pg_guard_ffi_boundary(|| fits_text_key(index, attnum)) {
                return index;
            }
            pg_sys::index_close(index, NoLock as i32);
        }
        std::ptr::null_mut()
    }
}

/// The OIDs of `heap`'s indexes, as the relcache knows them now.
pub(super) unsafe fn index_oids(heap: pg_sys::Relation) -> Vec<pg_sys::Oid> {
    // SAFETY: an open relation; the list is a copy, freed here.
    unsafe {
        let list = pg_sys::RelationGetIndexList(heap);
        if list.is_null() {
            return Vec::new();
        }
        let oids = (0..(*list).length as usize).map(|i| (*(*list).elements.add(i)).oid_value).collect();
        pg_sys::list_free(list);
        oids
    }
}

/// Whether `index` (open) is an index of `heap` (open): an OID remembered may since name
/// another relation.
pub(super) unsafe fn index_of(heap: pg_sys::Relation, index: pg_sys::Relation) -> bool {
    // SAFETY: open relations; an index's rd_index is set.
    unsafe {
        (*(*index).rd_rel).relkind == pg_sys::RELKIND_INDEX as std::ffi::c_char
            && !(*index).rd_index.is_null()
            && (*(*index).rd_index).indrelid == (*heap).rd_id
    }
}

/// Whether comparing values of `collation` byte for byte is comparing them as equal: not under
/// a nondeterministic collation ("abc" = "ABC"). "C" and a database's default are always
/// deterministic; any other is asked of the syscache. Unguarded call: run inside a guard.
pub(super) unsafe fn deterministic(collation: pg_sys::Oid) -> bool {
    // SAFETY: a syscache lookup, inside the caller's guard.
    matches!(collation, pg_sys::C_COLLATION_OID | pg_sys::DEFAULT_COLLATION_OID)
        || unsafe { unguarded::get_collation_isdeterministic(collation) }
}

/// The primary key the relcache knows for `heap` now (InvalidOid when there is none).
unsafe fn primary_key(heap: pg_sys::Relation) -> pg_sys::Oid {
    // SAFETY: an open relation. (18 can also name a deferrable key: ours is not deferrable,
    // and a deferrable one would not promise one row per key at every moment.)
    #[cfg(not(feature = "pg18"))]
    unsafe {
        pg_sys::RelationGetPrimaryKeyIndex(heap)
    }
    #[cfg(feature = "pg18")]
    unsafe {
        pg_sys::RelationGetPrimaryKeyIndex(heap, false)
    }
}
