//! Rows of a table whose `point(longitude, latitude)` lies in a box, read through the table's
//! GiST index on that expression without a statement: the nearby search's candidates.
//!
//! A statement executing `WHERE point(lng, lat) <@ box(...)` pays its executor start (the plan
//! copied, expressions compiled, an SPI tuple table) for every box; on sparse data, where a box
//! holds a point or none, that was most of a search. Here the heap and index are opened and
//! scanned as an index scan node scans them, under the statement's snapshot (the index AM and
//! the heap take the predicate locks SERIALIZABLE needs).
//!
//! Used only where it reads what the statement would for the calling role; otherwise `with_scan`
//! answers None and the caller runs its statement: row-level security applies to the role, the
//! role lacks SELECT on the whole table (a column grant, or none: the statement raises), the
//! table is not a plain heap table or has inheritance children, it has no valid GiST index of
//! `point_ops` on the expression (dropped, invalid, or built after the snapshot over broken HOT
//! chains), or the text column compared has a nondeterministic collation.

use super::relation::{self, IndexUse, Row, Table, TableSpec};
use super::{datum, snapshot, unguarded};
use pgrx::pg_sys;
use pgrx::pg_sys::ffi::pg_guard_ffi_boundary as guarded;
use std::rc::Rc;

/// `point <@ box` (`on_pb`, pg_operator's OID 511): the operator the index must support.
const POINT_IN_BOX_OP: u32 = 511;
/// GiST's `point_ops` operator family (pg_opfamily's OID 1029).
const GIST_POINT_OPS: u32 = 1029;

/// An open scan: the table and index, locked, a slot for the table's rows and the statement's
/// snapshot (registered).
pub struct PointScan {
    table: Rc<Table>,
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    slot: *mut pg_sys::TupleTableSlot,
    snapshot: pg_sys::Snapshot,
    strategy: u16,
}

/// Where a row read by `in_box` lies, to read it again with `fetch`.
pub type Tid = pg_sys::ItemPointerData;

impl PointScan {
    /// Calls `read` for each visible row whose point lies in the box (as `<@` decides, edges
    /// included), with the spec's first `columns` columns readable. With `only`, a text column
    /// and a value: entries whose copy of that column in the index (an INCLUDE column) is
    /// another value are passed over before their row is read (the row of an entry can only
    /// have the entry's value); `read` still sees every row the index does not tell about.
    pub fn in_box(
        &mut self,
        min: (f64, f64),
        max: (f64, f64),
        columns: usize,
        only: Option<(usize, &str)>,
        mut read: impl FnMut(&Row, Tid),
    ) {
        let last = self.table.last_attnum(columns);
        // SAFETY: the relations are open and locked, the slot made for the heap, the snapshot
        // registered; the box is palloc'd in the statement's memory and outlives the scan. The
        // slot is cleared by the next row and dropped by `with_scan`; the scan is ended here.
        // An entry's copy of the column is read from the scan's returned tuple (GiST returns
        // entries as heap-form tuples), valid until the next entry.
        unsafe {
            let (heap, index, snapshot, slot, strategy) =
                (self.heap, self.index, self.snapshot, self.slot, self.strategy);
            let only = only.and_then(|(column, value)| Some((included(index, self.table.attnum(column))?, value)));
            let mut key: pg_sys::ScanKeyData = std::mem::zeroed();
            let b = pg_sys::palloc(std::mem::size_of::<pg_sys::BOX>()).cast::<pg_sys::BOX>();
            (*b).low = pg_sys::Point { x: min.0.min(max.0), y: min.1.min(max.1) };
            (*b).high = pg_sys::Point { x: min.0.max(max.0), y: min.1.max(max.1) };
            let scan = guarded(|| {
                unguarded::ScanKeyEntryInitialize(
                    &mut key,
                    0,
                    1,
                    strategy,
                    pg_sys::BOXOID,
                    pg_sys::InvalidOid,
                    pg_sys::Oid::from(pg_sys::F_ON_PB),
                    pg_sys::Datum::from(b),
                );
                let scan = unguarded::begin_index_scan(heap, index, snapshot);
                (*scan).xs_want_itup = only.is_some();
                unguarded::index_rescan(scan, &mut key, 1, std::ptr::null_mut(), 0);
                scan
            });
            let direction = pg_sys::ScanDirection::ForwardScanDirection;
            // The steps of index_getnext_slot, with the entry looked at before its row is read
            // (outside the guards: reading the entry's copy may call into Postgres, guarded).
            loop {
                if !(*scan).xs_heap_continue {
                    if guarded(|| unguarded::index_getnext_tid(scan, direction)).is_null() {
                        break;
                    }
                    if let Some((attnum, value)) = only {
                        let entry = (*scan).xs_hitup;
                        let mut isnull = false;
                        if !entry.is_null() {
                            let d = pg_sys::heap_getattr(entry, attnum, (*scan).xs_hitupdesc, &mut isnull);
                            if isnull || pgrx::varlena::varlena_to_byte_slice(datum::packed(d)) != value.as_bytes() {
                                continue;
                            }
                        }
                    }
                }
                let visible = guarded(|| {
                    let visible = unguarded::index_fetch_heap(scan, slot);
                    if visible {
                        unguarded::slot_getsomeattrs_int(slot, last);
                    }
                    visible
                });
                if visible {
                    read(&Row::of(slot, &self.table), (*slot).tts_tid);
                }
            }
            guarded(|| unguarded::index_endscan(scan));
        }
    }

    /// The row at `tid` as the snapshot sees it (None if it does not), all the spec's columns
    /// readable.
    pub fn fetch<R>(&mut self, tid: Tid, read: impl FnOnce(&Row) -> R) -> Option<R> {
        let last = self.table.last_attnum(self.table.columns());
        // SAFETY: the heap is a heap table (checked in `with_scan`), so the slot is a buffer heap
        // tuple slot; heap_fetch pins the buffer of a visible version, and the slot keeps that
        // pin until it is cleared.
        unsafe {
            // As heapam's fetch_row_version: into the slot's own tuple header, the buffer's pin
            // handed to the slot.
            let bslot = self.slot.cast::<pg_sys::BufferHeapTupleTableSlot>();
            let tuple = &raw mut (*bslot).base.tupdata;
            (*tuple).t_self = tid;
            let mut buffer: pg_sys::Buffer = 0;
            if !pg_sys::heap_fetch(self.heap, self.snapshot, tuple, &mut buffer, false) {
                return None;
            }
            pg_sys::ExecStorePinnedBufferHeapTuple(tuple, self.slot, buffer);
            pg_sys::slot_getsomeattrs_int(self.slot, last);
            let r = read(&Row::of(self.slot, &self.table));
            pg_sys::ExecClearTuple(self.slot);
            Some(r)
        }
    }
}

/// Runs `f` with a scan of `spec`'s table by its GiST index on `point(lng, lat)` (positions in
/// the spec's columns), or answers None where such a read would not be what a statement of the
/// calling role reads (see the module's comment). `text` is a text column `f` compares by bytes:
/// its collation must be deterministic.
pub fn with_scan<R>(
    spec: &'static TableSpec,
    lng: usize,
    lat: usize,
    text: usize,
    f: impl FnOnce(&mut PointScan) -> R,
) -> Option<R> {
    let (table, heap) = relation::open_current(spec, pg_sys::AccessShareLock, "read");
    // SAFETY: the heap is open and locked (the lock kept to the end of the transaction, as a
    // statement's); what is opened here is closed before returning, and by abort on error.
    unsafe {
        let Some((index, strategy)) = usable(&table, heap, lng, lat, text) else {
            pg_sys::table_close(heap, pg_sys::NoLock as i32);
            return None;
        };
        // The statement's snapshot, as the statement's scan would use.
        let (snapshot, slot) = guarded(|| {
            let snapshot = unguarded::RegisterSnapshot(snapshot::statement());
            let slot = relation::usable_by_snapshot(index, snapshot)
                .then(|| unguarded::table_slot_create(heap, std::ptr::null_mut()));
            (snapshot, slot)
        });
        let close = |slot: Option<*mut pg_sys::TupleTableSlot>| {
            guarded(|| {
                if let Some(slot) = slot {
                    unguarded::ExecDropSingleTupleTableSlot(slot);
                }
                unguarded::UnregisterSnapshot(snapshot);
                unguarded::index_close(index, pg_sys::NoLock as i32);
                unguarded::table_close(heap, pg_sys::NoLock as i32);
            })
        };
        let Some(slot) = slot else {
            close(None);
            return None;
        };
        let mut scan = PointScan { table, heap, index, slot, snapshot, strategy };
        let r = f(&mut scan);
        close(Some(slot));
        Some(r)
    }
}

/// The point index to scan, opened and locked, with the strategy of `<@` in its operator
/// family; None when the read must be a statement's. The index found is remembered with the
/// table (any change to the table forgets it) and checked again at each use.
unsafe fn usable(
    table: &Table,
    heap: pg_sys::Relation,
    lng: usize,
    lat: usize,
    text: usize,
) -> Option<(pg_sys::Relation, u16)> {
    // SAFETY: the heap is open and locked; indexes are opened to be looked at and closed unless
    // returned.
    unsafe {
        // (A table with inheritance children: the statements read those too.)
        let plain = (*(*heap).rd_rel).relkind == pg_sys::RELKIND_RELATION as std::ffi::c_char
            && !(*(*heap).rd_rel).relhassubclass
            && std::ptr::eq((*heap).rd_tableam, pg_sys::GetHeapamTableAmRoutine());
        if !plain
            || !relation::has_privilege(table, pg_sys::ACL_SELECT as pg_sys::AclMode)
            || pg_sys::check_enable_rls((*heap).rd_id, pg_sys::InvalidOid, false)
                == pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32
        {
            return None;
        }
        if let Some((oid, strategy)) = table.remembered(IndexUse::Points) {
            // Its definition cannot change under its OID; whether it is still there, still of
            // this table and valid can (a concurrent DROP INDEX CONCURRENTLY marks it invalid).
            let index = guarded(|| unguarded::try_relation_open(oid, pg_sys::AccessShareLock as i32));
            if !index.is_null() {
                if of_heap(heap, index) {
                    return Some((index, strategy));
                }
                pg_sys::index_close(index, pg_sys::NoLock as i32);
            }
            table.remember(IndexUse::Points, None);
        }
        let (lng, lat) = (table.attnum(lng), table.attnum(lat));
        let (mut typid, mut typmod, mut collation) = (pg_sys::InvalidOid, 0, pg_sys::InvalidOid);
        pg_sys::get_atttypetypmodcoll((*heap).rd_id, table.attnum(text), &mut typid, &mut typmod, &mut collation);
        if !guarded(|| relation::deterministic(collation)) {
            return None;
        }
        for oid in relation::index_oids(heap) {
            let index = pg_sys::index_open(oid, pg_sys::AccessShareLock as i32);
            if let Some(strategy) = fits(heap, index, lng, lat) {
                table.remember(IndexUse::Points, Some((oid, strategy)));
                return Some((index, strategy));
            }
            pg_sys::index_close(index, pg_sys::NoLock as i32);
        }
        None
    }
}

/// The position in `index`'s entries of its INCLUDE column on the table's attribute `attnum`.
unsafe fn included(index: pg_sys::Relation, attnum: i16) -> Option<i32> {
    // SAFETY: an open index relation; indkey has indnatts entries.
    unsafe {
        let form = (*index).rd_index;
        let keys = (*form).indnkeyatts as usize;
        let all = std::slice::from_raw_parts((*form).indkey.values.as_ptr(), (*form).indnatts as usize);
        all.iter().skip(keys).position(|&a| a == attnum).map(|i| (keys + i + 1) as i32)
    }
}

/// Whether `index` is a valid index of `heap`.
unsafe fn of_heap(heap: pg_sys::Relation, index: pg_sys::Relation) -> bool {
    // SAFETY: open relations.
    unsafe { relation::index_of(heap, index) && (*(*index).rd_index).indisvalid }
}

/// The strategy of `<@` when `index` is a valid GiST index of `heap` on exactly
/// `point(lng, lat)` (attribute numbers; INCLUDE columns allowed) with no predicate, of the
/// core `point_ops` operator family.
unsafe fn fits(heap: pg_sys::Relation, index: pg_sys::Relation, lng: i16, lat: i16) -> Option<u16> {
    // SAFETY: open relations; the expression list is the relcache's copy, read only.
    unsafe {
        let form = (*index).rd_index;
        let shape = of_heap(heap, index)
            && (*(*index).rd_rel).relam == pg_sys::GIST_AM_OID
            && (*form).indnkeyatts == 1
            && *(*form).indkey.values.as_ptr() == 0
            && pg_sys::heap_attisnull(
                (*index).rd_indextuple,
                pg_sys::Anum_pg_index_indpred as i32,
                std::ptr::null_mut(),
            );
        if !shape {
            return None;
        }
        let exprs = pg_sys::RelationGetIndexExpressions(index);
        let is_point = !exprs.is_null() && (*exprs).length == 1 && {
            let e = (*(*exprs).elements).ptr_value.cast::<pg_sys::Node>();
            (*e).type_ == pg_sys::NodeTag::T_FuncExpr && {
                let f = e.cast::<pg_sys::FuncExpr>();
                let args = (*f).args;
                let var_at = |i: usize, attnum: i16| {
                    let a = (*(*args).elements.add(i)).ptr_value.cast::<pg_sys::Node>();
                    (*a).type_ == pg_sys::NodeTag::T_Var && (*a.cast::<pg_sys::Var>()).varattno == attnum
                };
                (*f).funcid == pg_sys::Oid::from(pg_sys::F_POINT_FLOAT8_FLOAT8)
                    && !args.is_null()
                    && (*args).length == 2
                    && var_at(0, lng)
                    && var_at(1, lat)
            }
        };
        if !is_point {
            return None;
        }
        // Core point_ops only: its consistent function answers `<@` exactly, so no entry
        // returned needs a recheck (another operator class might ask for one).
        if *(*index).rd_opfamily != pg_sys::Oid::from(GIST_POINT_OPS) {
            return None;
        }
        let strategy = pg_sys::get_op_opfamily_strategy(pg_sys::Oid::from(POINT_IN_BOX_OP), *(*index).rd_opfamily);
        u16::try_from(strategy).ok().filter(|&s| s != 0)
    }
}
