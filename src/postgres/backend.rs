//! Backend state read on the hot paths.
//!
//! pgrx wraps every `pg_sys` function in a guard that sets a jump buffer (sigsetjmp) so a
//! Postgres ERROR can unwind Rust frames: about 10-20 ns a call. The few functions here only
//! read backend globals and can never raise an ERROR, so they are declared again without the
//! guard (the same symbols) for the paths that call them per evaluation.

use pgrx::pg_sys;

mod unguarded {
    use pgrx::pg_sys::{Oid, TimestampTz};
    unsafe extern "C" {
        pub fn GetCurrentStatementStartTimestamp() -> TimestampTz;
        pub fn GetCurrentTimestamp() -> TimestampTz;
        pub fn GetUserId() -> Oid;
    }
}

/// When the current statement started (what now() and statement_timestamp() tell apart).
pub fn statement_start() -> pg_sys::TimestampTz {
    // SAFETY: reads a backend global; never raises an error.
    unsafe { unguarded::GetCurrentStatementStartTimestamp() }
}

/// The clock, now.
pub fn now() -> pg_sys::TimestampTz {
    // SAFETY: reads the clock; never raises an error.
    unsafe { unguarded::GetCurrentTimestamp() }
}

/// The current user (after SET ROLE, and inside SECURITY DEFINER functions their owner).
pub fn current_user() -> pg_sys::Oid {
    // SAFETY: reads a backend global; never raises an error.
    unsafe { unguarded::GetUserId() }
}
