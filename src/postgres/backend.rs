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
        pub fn GetCurrentTransactionStartTimestamp() -> TimestampTz;
        pub fn RecoveryInProgress() -> bool;
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

/// When the current transaction started (what now() returns).
pub fn transaction_start() -> pg_sys::TimestampTz {
    // SAFETY: reads a backend global; never raises an error.
    unsafe { unguarded::GetCurrentTransactionStartTimestamp() }
}

/// The current user (after SET ROLE, and inside SECURITY DEFINER functions their owner).
pub fn current_user() -> pg_sys::Oid {
    // SAFETY: reads a backend global; never raises an error.
    unsafe { unguarded::GetUserId() }
}

/// 25006 if this transaction may not write (read-only, or a standby's), naming `command` as the
/// executor names a statement; likewise in a parallel query.
pub fn prevent_write(command: &std::ffi::CStr) {
    // SAFETY: both raise their error, or return.
    unsafe {
        pg_sys::PreventCommandIfReadOnly(command.as_ptr());
        pg_sys::PreventCommandIfParallelMode(command.as_ptr());
    }
}

/// Whether this transaction may write: not read-only, not on a standby, not in a parallel
/// query (where Postgres refuses writes).
pub fn can_write() -> bool {
    // SAFETY: reads of backend state.
    unsafe { !(pg_sys::XactReadOnly || pg_sys::RecoveryInProgress() || pg_sys::IsInParallelMode()) }
}

/// Whether the server is a standby (in recovery).
pub fn in_recovery() -> bool {
    // SAFETY: reads shared state; never raises an error (since 15 it no longer sets up WAL
    // access on its first false).
    unsafe { unguarded::RecoveryInProgress() }
}

/// Whether a parallel query is running (in this backend as leader or worker).
pub fn in_parallel_mode() -> bool {
    // SAFETY: reads backend state.
    unsafe { pg_sys::IsInParallelMode() }
}

/// Whether the transaction is REPEATABLE READ or SERIALIZABLE (one snapshot for all of it).
pub fn repeatable_read() -> bool {
    // SAFETY: reads a backend global.
    unsafe { pg_sys::XactIsoLevel >= pg_sys::XACT_REPEATABLE_READ as i32 }
}

/// This backend's process id.
pub fn pid() -> i32 {
    // SAFETY: a backend global, set at start.
    unsafe { pg_sys::MyProcPid }
}

/// The database this backend is connected to (InvalidOid in a worker not connected yet).
pub fn database() -> pg_sys::Oid {
    // SAFETY: a backend global.
    unsafe { pg_sys::MyDatabaseId }
}

/// A role's name (the current user's for messages).
pub fn role_name(role: pg_sys::Oid) -> String {
    // SAFETY: a syscache lookup; noerr = false raises a normal ERROR for a role that is gone.
    unsafe { std::ffi::CStr::from_ptr(pg_sys::GetUserNameFromId(role, false)) }.to_string_lossy().into_owned()
}

/// Whether the library is being loaded by shared_preload_libraries (only true in _PG_init then).
pub fn preloading() -> bool {
    // SAFETY: a postmaster global read in _PG_init.
    unsafe { pg_sys::process_shared_preload_libraries_in_progress }
}

/// A setting's value, or None when it is unset or empty (a placeholder nobody set).
pub fn setting(name: &std::ffi::CStr) -> Option<String> {
    // SAFETY: missing_ok = true returns NULL for an unknown placeholder; the string is copied.
    let value = unsafe { pg_sys::GetConfigOption(name.as_ptr(), true, false) };
    (!value.is_null())
        .then(|| unsafe { std::ffi::CStr::from_ptr(value) }.to_string_lossy().into_owned())
        .filter(|v| !v.is_empty())
}

/// Fills `buffer` from Postgres's strong random source (what gen_random_uuid uses).
pub fn strong_random(buffer: &mut [u8]) {
    // SAFETY: writes exactly buffer.len() bytes into the buffer.
    if !unsafe { pg_sys::pg_strong_random(buffer.as_mut_ptr().cast(), buffer.len()) } {
        pgrx::error!("could not generate random values");
    }
}

/// Reserves a settings prefix: a misspelt `prefix.name` is then an error, not a placeholder.
pub fn reserve_guc_prefix(prefix: &std::ffi::CStr) {
    // SAFETY: a valid C string; called from _PG_init after the prefix's settings are defined.
    unsafe { pg_sys::MarkGUCPrefixReserved(prefix.as_ptr()) };
}

thread_local! {
    static AT_EXIT: std::cell::RefCell<Vec<fn()>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Registers `f` to run when this backend exits, while shared memory is still attached. An error
/// raised by `f` is swallowed: an exiting backend must exit.
pub fn at_exit(f: fn()) {
    let first = AT_EXIT.with_borrow_mut(|fs| {
        fs.push(f);
        fs.len() == 1
    });
    if first {
        // SAFETY: registers a callback for this backend's exit.
        unsafe { pg_sys::before_shmem_exit(Some(run_at_exit), pg_sys::Datum::from(0)) };
    }
}

unsafe extern "C-unwind" fn run_at_exit(_code: i32, _arg: pg_sys::Datum) {
    for f in AT_EXIT.with_borrow(|fs| fs.clone()) {
        pgrx::PgTryBuilder::new(f).catch_others(|_| ()).execute();
    }
}

/// Re-reads postgresql.conf (what a background worker does on SIGHUP).
pub fn reload_config() {
    // SAFETY: the documented way for a background worker to re-read the configuration.
    unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
}

/// Ends a background worker asking the postmaster to start it again after its restart interval
/// (exit code 1; 0 would unregister it).
pub fn exit_for_restart() -> ! {
    // SAFETY: ends this background worker process the way Postgres's own workers do.
    unsafe { pg_sys::proc_exit(1) };
    // (18's bindings do not say that proc_exit never returns.)
    #[allow(unreachable_code)]
    {
        unreachable!("proc_exit does not return")
    }
}

/// The SQLSTATE as Postgres encodes it (MAKE_SQLSTATE in utils/elog.h): six bits a character.
pub const fn make_sqlstate(code: &[u8; 5]) -> i32 {
    let mut value = 0;
    let mut i = 0;
    while i < 5 {
        value |= ((code[i].wrapping_sub(b'0') & 0x3F) as i32) << (6 * i);
        i += 1;
    }
    value
}

/// Raises an ERROR with a SQLSTATE of the contract's own (EW001, EW002), which pgrx's error type
/// cannot carry: reported through Postgres's own ereport functions, inside the guard that turns
/// the longjmp into an unwind, so the error keeps its code on the way out. Does not return.
pub fn raise_sqlstate(code: &[u8; 5], message: &str, hint: Option<&str>) -> ! {
    use std::ffi::{c_char, c_int, CString};
    unsafe extern "C-unwind" {
        fn errstart(elevel: c_int, domain: *const c_char) -> bool;
        fn errcode(sqlerrcode: c_int) -> c_int;
        fn errmsg(fmt: *const c_char, ...) -> c_int;
        fn errhint(fmt: *const c_char, ...) -> c_int;
        fn errfinish(filename: *const c_char, lineno: c_int, funcname: *const c_char);
    }
    let message = CString::new(message.replace('\0', " ")).expect("no NUL left");
    let hint = hint.map(|h| CString::new(h.replace('\0', " ")).expect("no NUL left"));
    // SAFETY: the texts are copied into palloc'd memory first, so nothing with a destructor is
    // alive in the frames the ERROR leaves; errstart(ERROR) always returns true and errfinish
    // does not return.
    unsafe {
        let message = pg_sys::pstrdup(message.as_ptr());
        let hint = hint.as_ref().map_or(std::ptr::null_mut(), |h| pg_sys::pstrdup(h.as_ptr()));
        pg_sys::ffi::pg_guard_ffi_boundary(|| {
            if errstart(pgrx::PgLogLevel::ERROR as c_int, std::ptr::null()) {
                errcode(make_sqlstate(code));
                errmsg(c"%s".as_ptr(), message);
                if !hint.is_null() {
                    errhint(c"%s".as_ptr(), hint);
                }
                errfinish(c"easymo".as_ptr(), 0, std::ptr::null());
            }
        });
    }
    unreachable!("ERROR does not return")
}
