//! Which partition of a partitioned table a row goes to: the one Postgres's tuple routing chooses
//! (get_partition_for_tuple, static in execPartition.c, done again here), for the shape easymo
//! creates: RANGE partitioning on plain columns. The native writer then inserts into that
//! partition as into a plain table, with what it keeps for it (`writer::Writes::insert_routed`).

use crate::error::raise;
use pgrx::prelude::*;

/// The leading fields of partcache.h's PartitionKeyData (not in pgrx's bindings), the same in
/// PostgreSQL 15 to 18 but for the strategy's type (a char in 15, an enum after).
#[repr(C)]
struct PartitionKeyData {
    #[cfg(feature = "pg15")]
    strategy: std::ffi::c_char,
    #[cfg(not(feature = "pg15"))]
    strategy: u32,
    partnatts: i16,
    partattrs: *mut pg_sys::AttrNumber,
    partexprs: *mut pg_sys::List,
    partopfamily: *mut pg_sys::Oid,
    partopcintype: *mut pg_sys::Oid,
    partsupfunc: *mut pg_sys::FmgrInfo,
    partcollation: *mut pg_sys::Oid,
}

unsafe extern "C-unwind" {
    /// partcache.h: the relation's partition key, built into its relcache entry when first
    /// asked. Called inside pgrx's guard (it may raise while building).
    fn RelationGetPartitionKey(rel: pg_sys::Relation) -> *mut PartitionKeyData;
}

/// The partition of `rel` (partitioned, open and locked) that tuple routing gives the row in
/// `slot` (a virtual slot of `rel`'s descriptor), partitions being detached included as routing
/// includes them; None when `rel` is not range-partitioned on columns, or the partition is itself
/// partitioned (the caller inserts with a statement). 23514 when no partition takes the row, as
/// for the statement.
pub unsafe fn leaf_for(rel: pg_sys::Relation, slot: *mut pg_sys::TupleTableSlot) -> Option<pg_sys::Oid> {
    // SAFETY: the relation is open and locked, so its partition key and descriptor (owned by its
    // relcache entry) stay valid while this reads them; the slot holds every attribute.
    unsafe {
        let key = pg_sys::ffi::pg_guard_ffi_boundary(|| RelationGetPartitionKey(rel));
        if key.is_null() || (*key).strategy as u8 != b'r' {
            return None;
        }
        let n = (*key).partnatts as usize;
        let attrs = std::slice::from_raw_parts((*key).partattrs, n);
        if attrs.iter().any(|&a| a <= 0) {
            return None;
        }
        let mut values: Vec<pg_sys::Datum> = Vec::with_capacity(n);
        let mut has_null = false;
        for &a in attrs {
            let i = a as usize - 1;
            has_null |= *(*slot).tts_isnull.add(i);
            values.push(*(*slot).tts_values.add(i));
        }
        let desc = pg_sys::RelationGetPartitionDesc(rel, false);
        let bounds = (*desc).boundinfo;
        let mut index = -1;
        if !bounds.is_null() {
            // A NULL in a range key fits no range: the default partition takes it.
            if !has_null {
                let mut equal = false;
                let offset = pg_sys::partition_range_datum_bsearch(
                    (*key).partsupfunc,
                    (*key).partcollation,
                    bounds,
                    n as i32,
                    values.as_mut_ptr(),
                    &mut equal,
                );
                // The bound at `offset` is at or below the row: the next one is the upper bound of
                // the partition that holds it, if any.
                index = *(*bounds).indexes.add((offset + 1) as usize);
            }
            if index < 0 {
                index = (*bounds).default_index;
            }
        }
        if index < 0 {
            raise(
                PgSqlErrorCode::ERRCODE_CHECK_VIOLATION,
                format!(
                    "no partition of relation \"{}\" found for row",
                    std::ffi::CStr::from_ptr(pg_sys::get_rel_name((*rel).rd_id)).to_string_lossy()
                ),
            );
        }
        let index = index as usize;
        (*(*desc).is_leaf.add(index)).then(|| *(*desc).oids.add(index))
    }
}
