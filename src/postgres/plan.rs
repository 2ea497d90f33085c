//! A write statement planned once per backend and run on the calling statement's snapshot.
//!
//! pgrx's SPI layer takes a fresh snapshot for every statement that writes (SPI_execute_plan);
//! a hot path that is one write wrapped in a function then pays for two snapshots where the same
//! statement sent by the client pays for one, and under concurrency GetSnapshotData is not free.
//! SPI_execute_snapshot runs the plan on the snapshot of the statement that called us (with the
//! command id advanced, so earlier writes of the transaction are seen), exactly what the bare
//! statement would have used. Datums go in as they are: no conversion on the way.

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use std::ffi::CString;
use std::ptr::NonNull;

pub struct WritePlan(NonNull<pg_sys::_SPI_plan>);

impl WritePlan {
    /// Plans `query` (parameters typed `types`) and keeps the plan for the backend's life.
    pub fn prepare(query: &str, types: &[pg_sys::Oid]) -> WritePlan {
        let query = CString::new(query).expect("no NUL in a query");
        let mut types = types.to_vec();
        // SAFETY: a balanced SPI connection around the preparation; errors unwind through pgrx's
        // guards and abort processing cleans SPI up.
        unsafe {
            if pg_sys::SPI_connect() != pg_sys::SPI_OK_CONNECT as i32 {
                error!("SPI_connect failed");
            }
            let plan = pg_sys::SPI_prepare(query.as_ptr(), types.len() as i32, types.as_mut_ptr());
            if plan.is_null() || pg_sys::SPI_keepplan(plan) != 0 {
                let result = pg_sys::SPI_result;
                error!("could not prepare {query:?}: SPI result {result}");
            }
            pg_sys::SPI_finish();
            WritePlan(NonNull::new_unchecked(plan))
        }
    }

    /// Runs the plan with `args` on the calling statement's snapshot; returns the number of
    /// rows it processed. (A `DatumWithOid` is valid for its lifetime by construction: made from
    /// a Rust value, or by a wrapper that vouches for its datum, as `RawJsonb::as_arg`.)
    pub fn execute(&self, args: &[DatumWithOid<'_>]) -> u64 {
        let mut values: Vec<pg_sys::Datum> =
            args.iter().map(|a| a.datum().map_or(pg_sys::Datum::from(0), |d| d.sans_lifetime())).collect();
        let nulls: Vec<std::ffi::c_char> =
            args.iter().map(|a| if a.datum().is_some() { b' ' } else { b'n' } as std::ffi::c_char).collect();
        // SAFETY: as in `prepare`; the plan was kept, the datums are valid for the call.
        unsafe {
            if pg_sys::SPI_connect() != pg_sys::SPI_OK_CONNECT as i32 {
                error!("SPI_connect failed");
            }
            let snapshot = if pg_sys::ActiveSnapshotSet() {
                pg_sys::GetActiveSnapshot()
            } else {
                pg_sys::GetTransactionSnapshot()
            };
            let rc = pg_sys::SPI_execute_snapshot(
                self.0.as_ptr(),
                values.as_mut_ptr(),
                nulls.as_ptr(),
                snapshot,
                std::ptr::null_mut(),
                false,
                true,
                0,
            );
            if rc < 0 {
                error!("SPI_execute_snapshot failed: {rc}");
            }
            let processed = pg_sys::SPI_processed;
            pg_sys::SPI_finish();
            processed
        }
    }
}

impl Drop for WritePlan {
    fn drop(&mut self) {
        // SAFETY: the plan was kept by `prepare` and is freed once, here.
        unsafe { pg_sys::SPI_freeplan(self.0.as_ptr()) };
    }
}

/// A per-backend slot for what a hot path prepares against a table: kept while the table
/// resolves to the same thing (relation::table), prepared again after the table changed.
pub type PlanSlot<T> = std::cell::RefCell<Option<(std::rc::Rc<super::relation::Table>, std::rc::Rc<T>)>>;

/// The plans in `slot`, prepared by `make` when there are none yet or `spec`'s table changed
/// since they were.
pub fn prepared<T>(
    slot: &'static std::thread::LocalKey<PlanSlot<T>>,
    spec: &'static super::relation::TableSpec,
    make: impl FnOnce(&super::relation::Table) -> T,
) -> std::rc::Rc<T> {
    let table = super::relation::table(spec);
    if let Some(plans) = slot
        .with_borrow(|s| s.as_ref().filter(|(t, _)| std::rc::Rc::ptr_eq(t, &table)).map(|(_, p)| std::rc::Rc::clone(p)))
    {
        return plans;
    }
    let plans = std::rc::Rc::new(make(&table));
    slot.set(Some((table, std::rc::Rc::clone(&plans))));
    plans
}
