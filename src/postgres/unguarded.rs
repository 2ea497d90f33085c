//! Functions of Postgres declared again without pgrx's per-call guard (the same symbols), for
//! the hot paths. pgrx sets a jump buffer around every call so a Postgres ERROR unwinds Rust
//! frames; the sixteen calls of a key lookup paid about 1 µs for that, a tenth of a replayed
//! transfer. A caller runs these in a few groups, each inside one guard
//! (`pg_sys::ffi::pg_guard_ffi_boundary`): an ERROR in a group lands in its guard, and the frames
//! it skips must hold no value with a destructor. A group makes no guarded call (pgrx's `pg_sys`
//! functions): an ERROR there becomes a Rust panic that unwinds through the outer guard, which
//! leaves Postgres's error handler pointing into it.

use pgrx::pg_sys::{
    BlockNumber, Buffer, Datum, HeapTuple, IndexScanDesc, IndexTuple, List, Oid, Relation, ScanDirection, ScanKey,
    Snapshot, TransactionId, TupleDesc, TupleTableSlot, XLogRecPtr, LOCKMODE,
};
use std::ffi::{c_char, c_int};
unsafe extern "C-unwind" {
    pub fn cstring_to_text_with_len(s: *const c_char, len: c_int) -> *mut pgrx::pg_sys::text;
    #[allow(clippy::too_many_arguments)]
    pub fn ScanKeyEntryInitialize(
        entry: ScanKey,
        flags: c_int,
        attribute_number: i16,
        strategy: u16,
        subtype: Oid,
        collation: Oid,
        procedure: Oid,
        argument: Datum,
    );
    pub fn table_slot_create(rel: Relation, reglist: *mut *mut List) -> *mut TupleTableSlot;
    pub fn ActiveSnapshotSet() -> bool;
    pub fn GetActiveSnapshot() -> Snapshot;
    pub fn GetTransactionSnapshot() -> Snapshot;
    pub fn RegisterSnapshot(snapshot: Snapshot) -> Snapshot;
    pub fn UnregisterSnapshot(snapshot: Snapshot);
    #[cfg(not(feature = "pg18"))]
    fn index_beginscan(
        heap: Relation,
        index: Relation,
        snapshot: Snapshot,
        nkeys: c_int,
        norderbys: c_int,
    ) -> IndexScanDesc;
    #[cfg(feature = "pg18")]
    fn index_beginscan(
        heap: Relation,
        index: Relation,
        snapshot: Snapshot,
        instrument: *mut std::ffi::c_void,
        nkeys: c_int,
        norderbys: c_int,
    ) -> IndexScanDesc;
    pub fn index_rescan(scan: IndexScanDesc, keys: ScanKey, nkeys: c_int, orderbys: ScanKey, norderbys: c_int);
    pub fn index_getnext_slot(scan: IndexScanDesc, direction: ScanDirection::Type, slot: *mut TupleTableSlot) -> bool;
    pub fn slot_getsomeattrs_int(slot: *mut TupleTableSlot, attnum: c_int);
    pub fn ExecDropSingleTupleTableSlot(slot: *mut TupleTableSlot);
    pub fn index_endscan(scan: IndexScanDesc);
    pub fn index_close(relation: Relation, lockmode: LOCKMODE);
    pub fn table_close(relation: Relation, lockmode: LOCKMODE);
    pub fn try_relation_open(relation_id: Oid, lockmode: LOCKMODE) -> Relation;
    pub fn try_table_open(relation_id: Oid, lockmode: LOCKMODE) -> Relation;
    pub fn heap_attisnull(tuple: HeapTuple, attnum: c_int, descriptor: TupleDesc) -> bool;
    pub fn TransactionIdPrecedes(id1: TransactionId, id2: TransactionId) -> bool;
    pub fn get_collation_isdeterministic(colloid: Oid) -> bool;
    pub fn XidInMVCCSnapshot(xid: TransactionId, snapshot: Snapshot) -> bool;
    pub fn ReadBuffer(relation: Relation, block: BlockNumber) -> Buffer;
    pub fn LockBuffer(buffer: Buffer, mode: c_int);
    pub fn UnlockReleaseBuffer(buffer: Buffer);
    pub fn BufferGetLSNAtomic(buffer: Buffer) -> XLogRecPtr;
    pub fn gistcheckpage(relation: Relation, buffer: Buffer);
    pub fn PredicateLockPage(relation: Relation, block: BlockNumber, snapshot: Snapshot);
    pub fn visibilitymap_get_status(relation: Relation, block: BlockNumber, vm_buffer: *mut Buffer) -> u8;
    pub fn nocache_index_getattr(tuple: IndexTuple, attnum: c_int, descriptor: TupleDesc) -> Datum;
    #[cfg(any(feature = "pg15", feature = "pg16"))]
    pub fn TestForOldSnapshot_impl(snapshot: Snapshot, relation: Relation);
}

/// One key, no ordering; 18 added an instrumentation argument (none here).
pub unsafe fn begin_index_scan(heap: Relation, index: Relation, snapshot: Snapshot) -> IndexScanDesc {
    // SAFETY: the caller's: both relations open and locked, the snapshot registered.
    #[cfg(not(feature = "pg18"))]
    unsafe {
        index_beginscan(heap, index, snapshot, 1, 0)
    }
    #[cfg(feature = "pg18")]
    unsafe {
        index_beginscan(heap, index, snapshot, std::ptr::null_mut(), 1, 0)
    }
}
