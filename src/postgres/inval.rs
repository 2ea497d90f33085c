//! Cache invalidation: how a backend learns that a table changed in another session.
//! utils/inval.h is not among pgrx 0.16.1's bindings; these are stable exported functions.

use pgrx::pg_sys;

type RelcacheCallback = unsafe extern "C-unwind" fn(arg: pg_sys::Datum, relid: pg_sys::Oid);
type SyscacheCallback = unsafe extern "C-unwind" fn(arg: pg_sys::Datum, cacheid: std::ffi::c_int, hashvalue: u32);

unsafe extern "C-unwind" {
    fn CacheRegisterRelcacheCallback(func: RelcacheCallback, arg: pg_sys::Datum);
    fn CacheRegisterSyscacheCallback(cacheid: std::ffi::c_int, func: SyscacheCallback, arg: pg_sys::Datum);
    fn CacheInvalidateRelcacheByRelid(relid: pg_sys::Oid);
    fn AcceptInvalidationMessages();
}

thread_local! {
    static LISTENERS: std::cell::RefCell<Vec<fn(pg_sys::Oid)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Registers `listener` for the backend's life; call from _PG_init. It is told the relid of every
/// relcache invalidation (InvalidOid: every relation, e.g. after a shared-invalidation queue
/// overflow). It runs inside invalidation processing: it must not fail, and must not touch the
/// database or anything a caller of Postgres may hold borrowed (use atomics).
pub fn on_relcache_invalidation(listener: fn(pg_sys::Oid)) {
    let first = LISTENERS.with_borrow_mut(|l| {
        l.push(listener);
        l.len() == 1
    });
    if first {
        // SAFETY: called in _PG_init, where registering a callback for the backend's life is allowed.
        unsafe {
            pg_sys::ffi::pg_guard_ffi_boundary(|| CacheRegisterRelcacheCallback(dispatch, pg_sys::Datum::from(0)))
        };
    }
}

unsafe extern "C-unwind" fn dispatch(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    // (Registered in _PG_init only, so the list is never borrowed mutably while this runs.)
    LISTENERS.with_borrow(|l| l.iter().for_each(|f| f(relid)));
}

/// Bumped by every change to a role or a role membership, in any session (seen here when
/// invalidations are processed): privilege checks remembered under an older value are stale.
pub static ROLES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Has `ROLES` bumped for the backend's life; call from _PG_init.
pub fn watch_roles() {
    unsafe extern "C-unwind" fn bump(_arg: pg_sys::Datum, _cacheid: std::ffi::c_int, _hash: u32) {
        ROLES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    for cache in [pg_sys::SysCacheIdentifier::AUTHOID, pg_sys::SysCacheIdentifier::AUTHMEMMEMROLE] {
        // SAFETY: called in _PG_init, where registering a callback for the backend's life is allowed.
        unsafe {
            pg_sys::ffi::pg_guard_ffi_boundary(|| {
                CacheRegisterSyscacheCallback(cache as std::ffi::c_int, bump, pg_sys::Datum::from(0))
            })
        };
    }
}

/// Queues a relcache invalidation of `relid`, delivered to every backend when (and only if) the
/// current transaction commits, and to this one at its next command.
pub fn invalidate_relcache(relid: pg_sys::Oid) {
    // SAFETY: queues a message; an unknown relid is harmless.
    unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| CacheInvalidateRelcacheByRelid(relid)) };
}

/// Processes the invalidations other sessions have committed since this backend last looked
/// (Postgres does so at transaction start and when it takes a lock). With nothing queued, one
/// unlocked flag test.
pub fn accept_invalidation_messages() {
    // SAFETY: what any lock acquisition does.
    unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| AcceptInvalidationMessages()) };
}
