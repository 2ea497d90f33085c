//! Rows of a table whose `point(longitude, latitude)` lies in a box, read through the table's
//! GiST index on that expression without a statement: the nearby search's candidates.
//!
//! A statement executing `WHERE point(lng, lat) <@ box(...)` pays its executor start (the plan
//! copied, expressions compiled, an SPI tuple table) for every box; on sparse data, where a box
//! holds a point or none, that was most of a search. Here the heap and index are opened and read
//! under the statement's snapshot: the index's pages walked as GiST's own scan walks them
//! (`Walk`: the same locks, the same handling of concurrent splits, the same predicate locks
//! for SERIALIZABLE, and the same counts in pg_stat_user_indexes), the rows fetched from the
//! heap as an index scan fetches them.
//!
//! Used only where it reads what the statement would for the calling role; otherwise `with_scan`
//! answers None and the caller runs its statement: row-level security applies to the role, the
//! role lacks SELECT on the whole table (a column grant, or none: the statement raises), the
//! table is not a plain heap table or has inheritance children, it has no valid GiST index of
//! `point_ops` on the expression (dropped, invalid, or built after the snapshot over broken HOT
//! chains), or the text column compared has a nondeterministic collation.

use super::relation::{self, IndexUse, Row, Table, TableSpec};
use super::{snapshot, unguarded};
use pgrx::pg_sys;
use pgrx::pg_sys::ffi::pg_guard_ffi_boundary as guarded;
use std::rc::Rc;

/// GiST's `point_ops` operator family (pg_opfamily's OID 1029).
const GIST_POINT_OPS: u32 = 1029;

/// An open scan: the table and index, locked, a slot for the table's rows, the statement's
/// snapshot (registered), the heap's index fetch state, and what to count in the index's
/// statistics when it ends.
pub struct PointScan {
    table: Rc<Table>,
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    slot: *mut pg_sys::TupleTableSlot,
    snapshot: pg_sys::Snapshot,
    heap_fetch: *mut pg_sys::IndexFetchTableData,
    fetch_tuple: FetchTuple,
    /// Whether entries marked dead are passed over: not in a transaction begun in recovery
    /// (RelationGetIndexScan's rule).
    skip_dead: bool,
    columns: PointColumns,
    /// Scans, entries returned, rows fetched: for pg_stat_user_indexes, as an index scan counts.
    counts: (i64, i64, i64),
}

/// The heap AM's index_fetch_tuple.
type FetchTuple = unsafe extern "C-unwind" fn(
    *mut pg_sys::IndexFetchTableData,
    pg_sys::ItemPointer,
    pg_sys::Snapshot,
    *mut pg_sys::TupleTableSlot,
    *mut bool,
    *mut bool,
) -> bool;

/// The columns of a table's spec a point scan reads, by position in the spec.
#[derive(Clone, Copy)]
pub struct PointColumns {
    pub id: usize,
    pub lat: usize,
    pub lng: usize,
    /// A text column `in_box` can ask for one value of (compared by bytes: its collation must
    /// be deterministic).
    pub kind: usize,
}

/// Where a row read by `in_box` lies, to read it again with `fetch`.
pub type Tid = pg_sys::ItemPointerData;

impl PointScan {
    /// Calls `found` with the id, latitude, longitude and index entry of each visible row whose
    /// point lies in the box (as `<@` decides, edges included), and, with `only`, whose type is
    /// that one. Rows with a NULL id are passed over (possible only in a table altered by hand).
    ///
    /// Index-only where it can be, as an index-only scan is: an entry whose heap page the
    /// visibility map says is visible to all gives its copies (INCLUDE columns) without the row
    /// being read. Otherwise the row is read, and decides.
    pub fn in_box(
        &mut self,
        min: (f64, f64),
        max: (f64, f64),
        only: Option<&str>,
        mut found: impl FnMut([u8; 16], f64, f64, Tid),
    ) {
        let c = self.columns;
        let last = self.table.last_attnum(1 + c.id.max(c.lat).max(c.lng).max(c.kind));
        let query = pg_sys::BOX {
            low: pg_sys::Point { x: min.0.min(max.0), y: min.1.min(max.1) },
            high: pg_sys::Point { x: min.0.max(max.0), y: min.1.max(max.1) },
        };
        // SAFETY: the relations are open and locked, the slot made for the heap, the snapshot
        // registered, the scan begun on them by `with_scan` (which ends it). Pages are read
        // under their buffer's share lock (`gist_page`); the slot is cleared by the next row and
        // dropped by `with_scan`; the visibility map's page is released here.
        unsafe {
            let (heap, index, slot, snapshot) = (self.heap, self.index, self.slot, self.snapshot);
            let copy = |column: usize| included(index, self.table.attnum(column));
            let copies = match (copy(c.id), copy(c.lat), copy(c.lng)) {
                (Some(id), Some(lat), Some(lng)) => Some((id, lat, lng)),
                _ => None,
            };
            let only = only.map(|value| (copy(c.kind), value));
            let walk = Walk { heap, index, snapshot, query, only, copies, skip_dead: self.skip_dead };
            // The pages still to read, with the LSN of the parent when its downlink was read.
            let mut pages: Vec<(pg_sys::BlockNumber, pg_sys::XLogRecPtr)> = vec![(GIST_ROOT, 0)];
            let mut entries = Vec::new();
            let mut returned = 0;
            let mut vm_buffer: pg_sys::Buffer = pg_sys::InvalidBuffer as pg_sys::Buffer;
            while let Some(page) = pages.pop() {
                pgrx::check_for_interrupts!();
                entries.clear();
                if !guarded(|| walk.gist_page(page, &mut pages, &mut entries, &mut returned, &mut vm_buffer)) {
                    let name = std::ffi::CStr::from_ptr((*(*index).rd_rel).relname.data.as_ptr());
                    crate::error::raise(
                        pgrx::PgSqlErrorCode::ERRCODE_INDEX_CORRUPTED,
                        format!("index \"{}\" contains a damaged item on page {}", name.to_string_lossy(), page.0),
                    );
                }
                for entry in &entries {
                    if let Some((id, lat, lng)) = entry.copies {
                        found(id, lat, lng, entry.tid);
                        continue;
                    }
                    // Every visible version of the HOT chain (one, under an MVCC snapshot).
                    let mut tid = entry.tid;
                    let mut again = false;
                    loop {
                        if self.fetch_heap(&mut tid, &mut again, last) {
                            let row = Row::of(slot, &self.table);
                            if only.is_none_or(|(_, t)| row.text_is(c.kind, t)) {
                                if let (Some(id), Some(lat), Some(lng)) =
                                    (row.uuid(c.id), row.float8(c.lat), row.float8(c.lng))
                                {
                                    found(*id.as_bytes(), lat, lng, entry.tid);
                                }
                            }
                        }
                        if !again {
                            break;
                        }
                    }
                }
            }
            if vm_buffer != pg_sys::InvalidBuffer as pg_sys::Buffer {
                pg_sys::ReleaseBuffer(vm_buffer);
            }
            self.counts.0 += 1;
            self.counts.1 += returned;
        }
    }

    /// index_fetch_heap without an index scan: the version of the HOT chain at `tid` the
    /// snapshot sees into the slot, readable up to attribute `last`; `again` set when another
    /// may be visible too (not under an MVCC snapshot), `tid` then where to go on from.
    unsafe fn fetch_heap(&mut self, tid: &mut Tid, again: &mut bool, last: i32) -> bool {
        // SAFETY: the caller's: the fetch state begun on the heap by `with_scan`, the slot its.
        unsafe {
            let (fetch_tuple, heap_fetch, snapshot, slot) =
                (self.fetch_tuple, self.heap_fetch, self.snapshot, self.slot);
            let found = guarded(|| {
                let mut all_dead = false;
                let found = fetch_tuple(heap_fetch, tid, snapshot, slot, again, &mut all_dead);
                if found {
                    unguarded::slot_getsomeattrs_int(slot, last);
                }
                found
            });
            self.counts.2 += i64::from(found);
            found
        }
    }

    /// The row an entry of `in_box` points to, as the snapshot sees it (None if it does not),
    /// all the spec's columns readable: the visible version of its HOT chain, as an index scan
    /// finds it.
    pub fn fetch<R>(&mut self, tid: Tid, read: impl FnOnce(&Row) -> R) -> Option<R> {
        let last = self.table.last_attnum(self.table.columns());
        // SAFETY: as in `in_box`; the slot keeps the buffer's pin until it is cleared.
        unsafe {
            let (mut tid, mut again) = (tid, false);
            if !self.fetch_heap(&mut tid, &mut again, last) {
                return None;
            }
            let r = read(&Row::of(self.slot, &self.table));
            pg_sys::ExecClearTuple(self.slot);
            Some(r)
        }
    }
}

/// GiST's root page.
const GIST_ROOT: pg_sys::BlockNumber = 0;

/// A walk of the point index for the entries in a box: what gistScanPage does for `<@` on
/// `point_ops`, with the box test inline. Through the index AM each entry cost a call of the
/// operator class's consistent function through fmgr (with its memory context reset); a search
/// reads a root, an internal and a leaf page, some 400 entries on 300k points, whatever its
/// radius, and that was about 9 µs of a 37 µs search (perf, one CPU).
struct Walk<'a> {
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    snapshot: pg_sys::Snapshot,
    query: pg_sys::BOX,
    /// With a kind asked for: the position of the entries' copy of it (an INCLUDE column), if
    /// the index has one, and the value.
    only: Option<(Option<i32>, &'a str)>,
    /// The positions of the entries' copies of the id, latitude and longitude, if it has all.
    copies: Option<(i32, i32, i32)>,
    /// Whether entries marked dead are passed over (not in a transaction begun in recovery, as
    /// the index AM decides).
    skip_dead: bool,
}

impl Walk<'_> {
    /// Reads one page: its leaf entries in the box into `entries` (counted in `matched_entries`,
    /// of any kind), the children of its internal
    /// entries that may hold some onto `pages`, and its right sibling there too if it was split
    /// after its parent was read (its NSN is newer than the parent's LSN then, or the split's
    /// downlink is not in the parent yet). False when an item does not fit the page (damaged).
    /// Runs inside one guard: no guarded call, no panic, nothing with a destructor made.
    unsafe fn gist_page(
        &self,
        (block, parent_lsn): (pg_sys::BlockNumber, pg_sys::XLogRecPtr),
        pages: &mut Vec<(pg_sys::BlockNumber, pg_sys::XLogRecPtr)>,
        entries: &mut Vec<Entry>,
        matched_entries: &mut i64,
        vm_buffer: &mut pg_sys::Buffer,
    ) -> bool {
        // SAFETY: the index is open and locked; the page is read under its buffer's share lock
        // and pin, after gistcheckpage checked its header and special space, and every item's
        // extent is checked against the page before it is read.
        unsafe {
            let buffer = unguarded::ReadBuffer(self.index, block);
            unguarded::LockBuffer(buffer, pg_sys::BUFFER_LOCK_SHARE as i32);
            unguarded::PredicateLockPage(self.index, block, self.snapshot);
            unguarded::gistcheckpage(self.index, buffer);
            let page = pg_sys::BufferGetPage(buffer).cast::<u8>().cast_const();
            let header = &*page.cast::<pg_sys::PageHeaderData>();
            #[cfg(any(feature = "pg15", feature = "pg16"))]
            test_for_old_snapshot(self.snapshot, self.index, header);
            let opaque = &*page.add(usize::from(header.pd_special)).cast::<pg_sys::GISTPageOpaqueData>();
            let flags = u32::from(opaque.flags);
            let nsn = lsn(&opaque.nsn);
            if parent_lsn != 0
                && (flags & pg_sys::F_FOLLOW_RIGHT != 0 || parent_lsn < nsn)
                && opaque.rightlink != pg_sys::InvalidBlockNumber
            {
                pages.push((opaque.rightlink, parent_lsn));
            }
            // Deleted after its downlink was read: nothing on it (checked after the split).
            if flags & pg_sys::F_DELETED != 0 {
                unguarded::UnlockReleaseBuffer(buffer);
                return true;
            }
            let leaf = flags & pg_sys::F_LEAF != 0;
            let page_lsn = if leaf { 0 } else { unguarded::BufferGetLSNAtomic(buffer) };
            let linp = std::mem::offset_of!(pg_sys::PageHeaderData, pd_linp);
            let end = usize::from(header.pd_special);
            let items = usize::from(header.pd_lower).saturating_sub(linp) / std::mem::size_of::<pg_sys::ItemIdData>();
            let mut sound = usize::from(header.pd_lower) <= end;
            for i in 0..if sound { items } else { 0 } {
                let item = &*page.add(linp).cast::<pg_sys::ItemIdData>().add(i);
                let (off, len) = (item.lp_off() as usize, item.lp_len() as usize);
                match item.lp_flags() {
                    pg_sys::LP_NORMAL => {}
                    pg_sys::LP_DEAD if !self.skip_dead && len > 0 => {}
                    _ => continue,
                }
                // (Entries are MAXALIGNed, and their header tells their length.)
                if off < linp
                    || off + len > end
                    || off % 8 != 0
                    || len < std::mem::size_of::<pg_sys::IndexTupleData>()
                    || usize::from((*page.add(off).cast::<pg_sys::IndexTupleData>()).t_info)
                        & pg_sys::INDEX_SIZE_MASK as usize
                        != len
                {
                    sound = false;
                    break;
                }
                let tuple = page.add(off).cast::<pg_sys::IndexTupleData>();
                let tid = (*tuple).t_tid;
                // A tuple of before 9.1 left by an interrupted split: matches (as the AM says).
                let invalid = !leaf && tid.ip_posid == GIST_TUPLE_INVALID;
                let matched = invalid
                    || match entry_box(tuple, len) {
                        Some(Some(key)) => overlaps(&key, &self.query),
                        Some(None) => false,
                        None => {
                            sound = false;
                            break;
                        }
                    };
                if !matched {
                    continue;
                }
                if !leaf {
                    pages.push((block_of(&tid), page_lsn));
                    continue;
                }
                *matched_entries += 1;
                let kind = match self.only {
                    None => Some(true),
                    Some((Some(attnum), value)) => self.has_value(tuple, len, attnum, value),
                    Some((None, _)) => None,
                };
                if kind == Some(false) {
                    continue;
                }
                let copies =
                    if kind == Some(true) { self.copies.and_then(|c| self.copies_of(tuple, len, c)) } else { None };
                // As an index-only scan: a row on a heap page all visible needs no read, and takes
                // the predicate lock reading it would have. Asked while this page is locked: VACUUM
                // removes an entry (under an exclusive lock on its page) before it can remove the
                // row and mark the heap page all visible, so a row seen all visible here is not a
                // row deleted since (checked after the lock, it could be: Postgres's own GiST
                // index-only scan has that race).
                let copies = copies.filter(|_| {
                    let block = block_of(&tid);
                    let visible = unguarded::visibilitymap_get_status(self.heap, block, vm_buffer)
                        & pg_sys::VISIBILITYMAP_ALL_VISIBLE as u8
                        != 0;
                    if visible {
                        unguarded::PredicateLockPage(self.heap, block, self.snapshot);
                    }
                    visible
                });
                entries.push(Entry { tid, copies });
            }
            unguarded::UnlockReleaseBuffer(buffer);
            sound
        }
    }

    /// Whether a leaf entry of `len` bytes, its INCLUDE column `attnum` holds `value`: None when
    /// its copy does not tell (compressed, external, or not within the entry); NULL is another
    /// value.
    unsafe fn has_value(
        &self,
        tuple: *const pg_sys::IndexTupleData,
        len: usize,
        attnum: i32,
        value: &str,
    ) -> Option<bool> {
        // SAFETY: a leaf entry of the index, `len` bytes on a page read under its lock; an
        // attribute that is not NULL is found by the index's descriptor, as index_getattr finds
        // it, and read only once its header and its length lie within the entry.
        unsafe {
            if is_null(tuple, attnum) {
                return Some(false);
            }
            let v = unguarded::nocache_index_getattr(tuple.cast_mut(), attnum, (*self.index).rd_att)
                .cast_mut_ptr::<pg_sys::varlena>();
            let (start, end) = (tuple as usize, tuple as usize + len);
            if (v as usize) < start || (v as usize) >= end {
                return None;
            }
            if pgrx::varlena::varatt_is_1b_e(v) || pgrx::varlena::varatt_is_4b_c(v) {
                return None;
            }
            let header = if pgrx::varlena::varatt_is_1b(v) { 1 } else { 4 };
            let size = pgrx::varlena::varsize_any(v);
            if size < header || v as usize + header > end || v as usize + size > end {
                return None;
            }
            Some(pgrx::varlena::varlena_to_byte_slice(v) == value.as_bytes())
        }
    }

    /// A leaf entry's copies of the id (uuid), latitude and longitude (float8); None if one is
    /// NULL.
    unsafe fn copies_of(
        &self,
        tuple: *const pg_sys::IndexTupleData,
        len: usize,
        (id, lat, lng): (i32, i32, i32),
    ) -> Option<([u8; 16], f64, f64)> {
        // SAFETY: as `has_value`; the types were checked when the table was resolved (float8 is
        // passed by value, a uuid by reference to its 16 bytes).
        unsafe {
            if is_null(tuple, id) || is_null(tuple, lat) || is_null(tuple, lng) {
                return None;
            }
            let attr = |attnum| unguarded::nocache_index_getattr(tuple.cast_mut(), attnum, (*self.index).rd_att);
            let float = |attnum| f64::from_bits(attr(attnum).value() as u64);
            let uuid = attr(id).cast_mut_ptr::<[u8; 16]>();
            if (uuid as usize) < tuple as usize || uuid as usize + 16 > tuple as usize + len {
                return None;
            }
            Some((uuid.read_unaligned(), float(lat), float(lng)))
        }
    }
}

/// The offset GiST gives the downlinks of tuples of before 9.1 left by a split (TUPLE_IS_INVALID).
const GIST_TUPLE_INVALID: u16 = 0xfffe;

/// `point_ops`' consistent test for `<@`, exact (as gist_point_consistent's, not box_overlap's
/// fuzzy one), the same for an internal entry's box and a leaf's point (a box with low = high).
fn overlaps(key: &pg_sys::BOX, query: &pg_sys::BOX) -> bool {
    key.high.x >= query.low.x && key.low.x <= query.high.x && key.high.y >= query.low.y && key.low.y <= query.high.y
}

/// A leaf entry in the box: where its row lies, and its copies of the row's id, latitude and
/// longitude when the index has them, tells the row is of the kind asked for, and the row's
/// heap page is all visible (so they are the row's).
struct Entry {
    tid: Tid,
    copies: Option<([u8; 16], f64, f64)>,
}

/// The key of an entry of `len` bytes (a BOX, the storage type of `point_ops`, first and aligned
/// to 8): Some(None) when it is NULL, None when the entry is too short to hold it.
unsafe fn entry_box(tuple: *const pg_sys::IndexTupleData, len: usize) -> Option<Option<pg_sys::BOX>> {
    // SAFETY: the caller's: `len` bytes readable at `tuple`.
    unsafe {
        let header = std::mem::size_of::<pg_sys::IndexTupleData>();
        let start = if u32::from((*tuple).t_info) & pg_sys::INDEX_NULL_MASK != 0 {
            if is_null(tuple, 1) {
                return Some(None);
            }
            // The NULL bitmap after the header, MAXALIGNed (IndexInfoFindDataOffset).
            (header + std::mem::size_of::<pg_sys::IndexAttributeBitMapData>()).next_multiple_of(8)
        } else {
            header
        };
        (start + std::mem::size_of::<pg_sys::BOX>() <= len)
            .then(|| Some(tuple.cast::<u8>().add(start).cast::<pg_sys::BOX>().read_unaligned()))
    }
}

/// Whether attribute `attnum` (from 1) of an index tuple is NULL (att_isnull on its bitmap).
unsafe fn is_null(tuple: *const pg_sys::IndexTupleData, attnum: i32) -> bool {
    // SAFETY: the caller's: an index tuple; its bitmap, when it has one, follows the header.
    unsafe {
        if u32::from((*tuple).t_info) & pg_sys::INDEX_NULL_MASK == 0 {
            return false;
        }
        let bits = tuple.cast::<u8>().add(std::mem::size_of::<pg_sys::IndexTupleData>());
        let i = (attnum - 1) as usize;
        *bits.add(i / 8) & (1 << (i % 8)) == 0
    }
}

fn block_of(tid: &Tid) -> pg_sys::BlockNumber {
    pgrx::itemptr::item_pointer_get_both(*tid).0
}

fn lsn(l: &pg_sys::PageXLogRecPtr) -> pg_sys::XLogRecPtr {
    (u64::from(l.xlogid) << 32) | u64::from(l.xrecoff)
}

/// TestForOldSnapshot (bufmgr.h; `old_snapshot_threshold` is gone from 17): a page changed after
/// an old snapshot was taken raises "snapshot too old".
#[cfg(any(feature = "pg15", feature = "pg16"))]
unsafe fn test_for_old_snapshot(
    snapshot: pg_sys::Snapshot,
    relation: pg_sys::Relation,
    header: &pg_sys::PageHeaderData,
) {
    // SAFETY: the caller's: a registered snapshot, an open relation, a page under lock.
    unsafe {
        if pg_sys::old_snapshot_threshold >= 0
            && !snapshot.is_null()
            && matches!(
                (*snapshot).snapshot_type,
                pg_sys::SnapshotType::SNAPSHOT_MVCC | pg_sys::SnapshotType::SNAPSHOT_TOAST
            )
            && (*snapshot).lsn != 0
            && lsn(&header.pd_lsn) > (*snapshot).lsn
        {
            unguarded::TestForOldSnapshot_impl(snapshot, relation);
        }
    }
}

/// What an index scan counts for its index (pg_stat_user_indexes: idx_scan, idx_tup_read,
/// idx_tup_fetch): scans, entries returned, rows fetched.
unsafe fn count_index_scans(index: pg_sys::Relation, (scans, returned, fetched): (i64, i64, i64)) {
    // SAFETY: an open relation; pgstat_info is the backend's pending entry for it.
    unsafe {
        if (*index).pgstat_info.is_null() {
            if !(*index).pgstat_enabled {
                return;
            }
            pg_sys::pgstat_assoc_relation(index);
        }
        let info = (*index).pgstat_info;
        if info.is_null() {
            return;
        }
        #[cfg(feature = "pg15")]
        let counts = &mut (*info).t_counts;
        #[cfg(feature = "pg15")]
        {
            counts.t_numscans += scans;
            counts.t_tuples_returned += returned;
            counts.t_tuples_fetched += fetched;
        }
        #[cfg(not(feature = "pg15"))]
        let counts = &mut (*info).counts;
        #[cfg(not(feature = "pg15"))]
        {
            counts.numscans += scans;
            counts.tuples_returned += returned;
            counts.tuples_fetched += fetched;
        }
    }
}

/// Runs `f` with a scan of `spec`'s table by its GiST index on `point(lng, lat)` (`columns`),
/// or answers None where such a read would not be what a statement of the calling role reads
/// (see the module's comment).
pub fn with_scan<R>(spec: &'static TableSpec, columns: PointColumns, f: impl FnOnce(&mut PointScan) -> R) -> Option<R> {
    let (table, heap) = relation::open_current(spec, pg_sys::AccessShareLock, "read");
    // SAFETY: the heap is open and locked (the lock kept to the end of the transaction, as a
    // statement's); what is opened here is closed before returning, and by abort on error.
    unsafe {
        let Some(index) = usable(&table, heap, columns.lng, columns.lat, columns.kind) else {
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
        let close = || {
            guarded(|| {
                unguarded::UnregisterSnapshot(snapshot);
                unguarded::index_close(index, pg_sys::NoLock as i32);
                unguarded::table_close(heap, pg_sys::NoLock as i32);
            })
        };
        let Some(slot) = slot else {
            close();
            return None;
        };
        // The heap AM's index fetch, as an index scan begins it (the table is a heap table).
        let am = &*(*heap).rd_tableam;
        let (Some(begin), Some(end), Some(fetch_tuple)) =
            (am.index_fetch_begin, am.index_fetch_end, am.index_fetch_tuple)
        else {
            guarded(|| unguarded::ExecDropSingleTupleTableSlot(slot));
            close();
            return None;
        };
        let heap_fetch = guarded(|| begin(heap));
        let skip_dead = !pg_sys::TransactionStartedDuringRecovery();
        let mut points = PointScan {
            table,
            heap,
            index,
            slot,
            snapshot,
            heap_fetch,
            fetch_tuple,
            skip_dead,
            columns,
            counts: (0, 0, 0),
        };
        let r = f(&mut points);
        count_index_scans(index, points.counts);
        guarded(|| {
            end(heap_fetch);
            unguarded::ExecDropSingleTupleTableSlot(slot);
        });
        close();
        Some(r)
    }
}

/// The point index to scan, opened and locked; None when the read must be a statement's. The index found is remembered with the
/// table (any change to the table forgets it) and checked again at each use.
unsafe fn usable(
    table: &Table,
    heap: pg_sys::Relation,
    lng: usize,
    lat: usize,
    text: usize,
) -> Option<pg_sys::Relation> {
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
        if let Some(oid) = table.remembered(IndexUse::Points) {
            // Its definition cannot change under its OID; whether it is still there, still of
            // this table and valid can (a concurrent DROP INDEX CONCURRENTLY marks it invalid).
            let index = guarded(|| unguarded::try_relation_open(oid, pg_sys::AccessShareLock as i32));
            if !index.is_null() {
                if of_heap(heap, index) {
                    return Some(index);
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
            if fits(heap, index, lng, lat) {
                table.remember(IndexUse::Points, Some(oid));
                return Some(index);
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

/// Whether `index` is a valid GiST index of `heap` on exactly `point(lng, lat)` (attribute
/// numbers; INCLUDE columns allowed) with no predicate, of the core `point_ops` operator family.
unsafe fn fits(heap: pg_sys::Relation, index: pg_sys::Relation, lng: i16, lat: i16) -> bool {
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
            return false;
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
        // Core point_ops only: the walk reads its entries as it stores them (a BOX per entry,
        // low = high for a point) and answers `<@` as its consistent function does.
        is_point
            && *(*index).rd_opfamily == pg_sys::Oid::from(GIST_POINT_OPS)
            && pg_sys::get_atttype((*index).rd_id, 1) == pg_sys::BOXOID
    }
}
