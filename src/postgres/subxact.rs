//! A step that may fail without failing its caller: run in a subtransaction, as plpgsql runs an
//! EXCEPTION block. On error the subtransaction's work is rolled back, the error is swallowed and
//! its message returned.

use pgrx::pg_sys;
use pgrx::PgTryBuilder;

pub fn in_subtransaction<R>(f: impl FnOnce() -> R + std::panic::UnwindSafe) -> Result<R, String> {
    // SAFETY: the same sequence as plpgsql's exec_stmt_block: the caller's memory context and
    // resource owner are restored on both paths; an error inside is caught by PgTryBuilder
    // (which flushes the error state) and its subtransaction rolled back.
    unsafe {
        let context = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(context);
        PgTryBuilder::new(|| {
            let result = f();
            pg_sys::ReleaseCurrentSubTransaction();
            pg_sys::MemoryContextSwitchTo(context);
            pg_sys::CurrentResourceOwner = owner;
            Ok(result)
        })
        .catch_others(|e| {
            pg_sys::MemoryContextSwitchTo(context);
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
            pg_sys::MemoryContextSwitchTo(context);
            pg_sys::CurrentResourceOwner = owner;
            Err(match e {
                pgrx::pg_sys::panic::CaughtError::PostgresError(report)
                | pgrx::pg_sys::panic::CaughtError::ErrorReport(report) => report.message().to_owned(),
                pgrx::pg_sys::panic::CaughtError::RustPanic { ereport, .. } => ereport.message().to_owned(),
            })
        })
        .execute()
    }
}
