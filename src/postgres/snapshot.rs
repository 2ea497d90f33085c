//! The snapshots native reads use: the calling statement's, or one taken now.

use super::unguarded;
use pgrx::pg_sys;

/// The calling statement's snapshot: the active one if a statement set one, else the
/// transaction's (what a statement started now would take). Unguarded calls: run inside a guard.
pub(super) unsafe fn statement() -> pg_sys::Snapshot {
    // SAFETY: the caller's (inside a guard); both calls only read the snapshot state.
    unsafe {
        if unguarded::ActiveSnapshotSet() {
            unguarded::GetActiveSnapshot()
        } else {
            unguarded::GetTransactionSnapshot()
        }
    }
}

/// Runs `f` with a snapshot of everything committed now as the active snapshot (what a new
/// READ COMMITTED statement would see). On an error inside `f` the snapshot is popped by
/// transaction abort, as Postgres pops its own.
pub fn with_latest_snapshot<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: pushes a snapshot taken now; popped right after `f` returns.
    unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetLatestSnapshot()) };
    let result = f();
    // SAFETY: pops the snapshot pushed above (f leaves the stack as it found it).
    unsafe { pg_sys::PopActiveSnapshot() };
    result
}

/// Whether the statement's snapshot sees what transaction `xid`, known to have committed,
/// wrote; None when there is no MVCC snapshot to ask. (A cache hit asks this: one guard around
/// the three calls.)
pub fn sees_committed(xid: u32) -> Option<bool> {
    // SAFETY: the active snapshot, when one is set, lives at least as long as this call; the
    // calls run inside one guard.
    unsafe {
        pg_sys::ffi::pg_guard_ffi_boundary(|| {
            if !unguarded::ActiveSnapshotSet() {
                return None;
            }
            let snapshot = unguarded::GetActiveSnapshot();
            ((*snapshot).snapshot_type == pg_sys::SnapshotType::SNAPSHOT_MVCC)
                .then(|| !unguarded::XidInMVCCSnapshot(pg_sys::TransactionId::from(xid), snapshot))
        })
    }
}
