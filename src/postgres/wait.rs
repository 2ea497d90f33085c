//! Waiting for work without spinning, with nothing but core shared state (no preloading).
//!
//! A backend waiting for a queue sleeps on its own latch, its wait event set to
//! `PG_WAIT_EXTENSION` (what pg_stat_activity shows as `Extension`). A transaction that queued
//! work asks, once, to wake waiters when it commits: at commit, after its rows became visible,
//! every backend whose wait event says it is sleeping so gets its latch set, and looks again.
//! Other extensions that sleep the same way may be woken too, which costs them one look.
//!
//! A waiter shows the wait event while it looks for work too (`reset`), so a producer that
//! commits while it looks still wakes it. What it cannot see: a look that itself waits (on a
//! lock, for I/O) clears the event meanwhile, so a waiter never sleeps longer than a short cap
//! and then looks again anyway (`sleep`'s caller chooses it).

use pgrx::pg_sys;
use std::cell::Cell;

thread_local! {
    /// Whether this transaction queued work whose commit must wake the waiters.
    static WAKE_AT_COMMIT: Cell<bool> = const { Cell::new(false) };
}

/// Called once per backend, from _PG_init: the transaction callback that wakes waiters.
pub fn init() {
    // SAFETY: registers a plain function for the backend's life; it neither raises nor allocates.
    unsafe { pg_sys::RegisterXactCallback(Some(at_transaction_end), std::ptr::null_mut()) };
}

// (Raises nothing, allocates nothing: it may run while a transaction aborts.)
unsafe extern "C-unwind" fn at_transaction_end(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_COMMIT | XACT_EVENT_PARALLEL_COMMIT if WAKE_AT_COMMIT.replace(false) => wake_waiters(),
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT | XACT_EVENT_PREPARE => WAKE_AT_COMMIT.set(false),
        _ => {}
    }
}

/// Asks this transaction's commit to wake the waiters (cheap to call again).
pub fn wake_at_commit() {
    WAKE_AT_COMMIT.set(true);
}

/// Sets the latch of every other backend sleeping in `sleep` (or in any `PG_WAIT_EXTENSION` wait).
fn wake_waiters() {
    // SAFETY: ProcGlobal's array of PGPROCs lives in shared memory for the server's life; pid
    // and wait_event_info are plain words other backends write, read here as pg_stat_activity
    // reads them (no lock); SetLatch on another backend's latch is what latches are for.
    unsafe {
        let global = pg_sys::ProcGlobal;
        if global.is_null() {
            return;
        }
        let procs = (*global).allProcs;
        for i in 0..(*global).allProcCount as usize {
            let proc = procs.add(i);
            if proc == pg_sys::MyProc || std::ptr::read_volatile(&(*proc).pid) == 0 {
                continue;
            }
            if std::ptr::read_volatile(&(*proc).wait_event_info) == pg_sys::PG_WAIT_EXTENSION {
                pg_sys::SetLatch(&mut (*proc).procLatch);
            }
        }
    }
}

/// Clears this backend's latch and shows it as waiting (the wait event a committing producer
/// looks for): call before looking for work, then `sleep` if there was none, so a producer that
/// commits in between sets the latch and the sleep returns at once. (Should the look itself wait
/// on a lock or for I/O, Postgres clears the event meanwhile: that rare wake is the one the
/// caller's cap on each sleep catches.)
pub fn reset() {
    // SAFETY: MyLatch is this backend's own latch, set up before any SQL runs; my_wait_event_info
    // points at this backend's own wait event word, which only it writes.
    unsafe {
        pg_sys::ResetLatch(pg_sys::MyLatch);
        std::ptr::write_volatile(pg_sys::my_wait_event_info, pg_sys::PG_WAIT_EXTENSION);
    }
}

/// Shows this backend as no longer waiting (after the last look).
pub fn done() {
    // SAFETY: as in `reset`.
    unsafe { std::ptr::write_volatile(pg_sys::my_wait_event_info, 0) };
}

/// Sleeps until woken, `timeout_ms` pass, or an interrupt (a cancel or terminate raises its
/// error here); exits if the postmaster died.
pub fn sleep(timeout_ms: i64) {
    // SAFETY: waits on this backend's own latch with a timeout; the flags are WaitLatch's own.
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            timeout_ms.max(0),
            pg_sys::PG_WAIT_EXTENSION,
        );
    }
    pgrx::check_for_interrupts!();
}
