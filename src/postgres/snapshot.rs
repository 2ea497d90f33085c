//! Reading with a snapshot other than the statement's.

use pgrx::pg_sys;

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
