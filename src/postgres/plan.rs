//! A statement planned once per backend and run on the calling statement's snapshot.
//!
//! pgrx's SPI layer takes a fresh snapshot for every statement that writes (SPI_execute_plan);
//! a hot path that is one write wrapped in a function then pays for two snapshots where the same
//! statement sent by the client pays for one, and under concurrency GetSnapshotData is not free.
//! SPI_execute_snapshot runs the plan on the snapshot of the statement that called us (with the
//! command id advanced, so earlier writes of the transaction are seen), exactly what the bare
//! statement would have used. Datums go in as they are: no conversion on the way.
//!
//! A writer that locks rows and then writes them (the wallets) needs the opposite:
//! `prepare_latest` plans run on a snapshot taken when they start (in READ COMMITTED). On the
//! calling statement's snapshot, a row another transaction changed and committed meanwhile is
//! still seen in its old version: the lock follows the update chain to the newest, but every
//! later statement of the call would find the old version again, queue for its tuple lock
//! behind the transactions waiting for us, and deadlock with them.

use super::datum::{RowOf, TableRowType};
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use smallvec::SmallVec;
use std::ffi::CString;
use std::ptr::NonNull;

/// A kept plan and the snapshot it runs on: the calling statement's for a write (`prepare`) or
/// a read (`prepare_read`), one taken when it starts (`prepare_latest`).
pub struct Plan {
    plan: NonNull<pg_sys::_SPI_plan>,
    /// Runs on a snapshot of its own (see the module comment), not the calling statement's.
    latest: bool,
    /// A read run as the calling statement sees the tables: its snapshot as it is, the command
    /// id not advanced (so not even the calling statement's own writes are seen).
    read_only: bool,
}

impl Plan {
    /// Plans `query` (parameters typed `types`) and keeps the plan for the backend's life; it
    /// runs on the calling statement's snapshot.
    pub fn prepare(query: &str, types: &[pg_sys::Oid]) -> Plan {
        Plan { plan: Self::plan(query, types), latest: false, read_only: false }
    }

    /// As `prepare`, for a SELECT that reads what the calling statement sees (what a native read
    /// on the statement's snapshot reads).
    pub fn prepare_read(query: &str, types: &[pg_sys::Oid]) -> Plan {
        Plan { plan: Self::plan(query, types), latest: false, read_only: true }
    }

    /// As `prepare`, for a plan that runs on a snapshot taken when it starts (the transaction's
    /// in REPEATABLE READ and SERIALIZABLE, as any statement).
    pub fn prepare_latest(query: &str, types: &[pg_sys::Oid]) -> Plan {
        Plan { plan: Self::plan(query, types), latest: true, read_only: false }
    }

    fn plan(query: &str, types: &[pg_sys::Oid]) -> NonNull<pg_sys::_SPI_plan> {
        let query = CString::new(query).expect("no NUL in a query");
        let mut types = types.to_vec();
        // SAFETY: a balanced SPI connection around the preparation; errors unwind through pgrx's
        // guards and abort processing cleans SPI up.
        unsafe {
            if pg_sys::SPI_connect() != pg_sys::SPI_OK_CONNECT as i32 {
                error!("SPI_connect failed");
            }
            // A generic plan, always: the plan cache would otherwise plan every call anew
            // whenever a custom plan looks cheaper, as it always does for `= ANY($1)` or
            // `unnest($1)` (it sees the array's length), and planning costs more than running.
            let plan = pg_sys::SPI_prepare_cursor(
                query.as_ptr(),
                types.len() as i32,
                types.as_mut_ptr(),
                pg_sys::CURSOR_OPT_GENERIC_PLAN as i32,
            );
            if plan.is_null() || pg_sys::SPI_keepplan(plan) != 0 {
                let result = pg_sys::SPI_result;
                error!("could not prepare {query:?}: SPI result {result}");
            }
            pg_sys::SPI_finish();
            NonNull::new_unchecked(plan)
        }
    }

    /// Runs the plan with `args` on the calling statement's snapshot; returns the number of
    /// rows it processed. (A `DatumWithOid` is valid for its lifetime by construction: made from
    /// a Rust value, or by a wrapper that vouches for its datum, as `RawJsonb::as_arg`.)
    pub fn execute(&self, args: &[DatumWithOid<'_>]) -> u64 {
        self.run(args, |processed, _| processed)
    }

    /// Runs the plan as `execute` does and hands each row of its result (a SELECT, or a
    /// RETURNING) to `each`, which copies out what it needs: the rows live only until then.
    pub fn query<R>(&self, args: &[DatumWithOid<'_>], mut each: impl FnMut(&ResultRow) -> R) -> Vec<R> {
        self.run(args, |processed, table| {
            if table.is_null() {
                return Vec::new();
            }
            // SAFETY: SPI_tuptable holds `processed` rows with their descriptor until SPI_finish.
            unsafe {
                let desc = (*table).tupdesc;
                (0..processed as usize).map(|i| each(&ResultRow { tuple: *(*table).vals.add(i), desc })).collect()
            }
        })
    }

    fn run<R>(&self, args: &[DatumWithOid<'_>], result: impl FnOnce(u64, *mut pg_sys::SPITupleTable) -> R) -> R {
        // On the stack for the usual few arguments (a write's allocations were a tenth of what
        // set_cache costs over the bare upsert, perf).
        let mut values: SmallVec<[pg_sys::Datum; 16]> =
            args.iter().map(|a| a.datum().map_or(pg_sys::Datum::from(0), |d| d.sans_lifetime())).collect();
        let nulls: SmallVec<[std::ffi::c_char; 16]> =
            args.iter().map(|a| if a.datum().is_some() { b' ' } else { b'n' } as std::ffi::c_char).collect();
        let _no_jit = NoJit::new();
        // SAFETY: as in `prepare`; the plan was kept, the datums are valid for the call.
        unsafe {
            if pg_sys::SPI_connect() != pg_sys::SPI_OK_CONNECT as i32 {
                error!("SPI_connect failed");
            }
            // InvalidSnapshot: SPI takes one per statement (GetTransactionSnapshot).
            let snapshot = if self.latest {
                std::ptr::null_mut()
            } else {
                pg_sys::ffi::pg_guard_ffi_boundary(|| super::snapshot::statement())
            };
            let rc = pg_sys::SPI_execute_snapshot(
                self.plan.as_ptr(),
                values.as_mut_ptr(),
                nulls.as_ptr(),
                snapshot,
                std::ptr::null_mut(),
                self.read_only,
                true,
                0,
            );
            if rc < 0 {
                error!("SPI_execute_snapshot failed: {rc}");
            }
            let out = result(pg_sys::SPI_processed, pg_sys::SPI_tuptable);
            pg_sys::SPI_finish();
            out
        }
    }
}

/// JIT off while one of our plans is planned and run. A generic plan costs `LIMIT $n` at a tenth
/// of the table, so a claim over a queue of 100,000 rows crosses jit_above_cost and its generic
/// plan, kept for the backend's life, compiled its expressions on every call: 15 ms of LLVM for
/// a statement that reads 10 rows (the queue bench at batch 10 fell to 0.08x plain SQL). The
/// flag is read when a plan is made (PlannedStmt.jitFlags), so clearing it for the call keeps
/// every plan of ours, made again after an invalidation too, free of JIT; restored on the way
/// out, an error included (the guard drops while the error unwinds).
struct NoJit(bool);

impl NoJit {
    fn new() -> NoJit {
        // SAFETY: a backend-local GUC variable, read and written on the backend's one thread.
        unsafe {
            let was = pg_sys::jit_enabled;
            pg_sys::jit_enabled = false;
            NoJit(was)
        }
    }
}

impl Drop for NoJit {
    fn drop(&mut self) {
        // SAFETY: as in `new`.
        unsafe { pg_sys::jit_enabled = self.0 };
    }
}

/// A row of a statement's result, while SPI holds it.
pub struct ResultRow {
    tuple: pg_sys::HeapTuple,
    desc: pg_sys::TupleDesc,
}

impl ResultRow {
    /// Column `column` (from 0) as a Rust value (copied out), None for NULL. The column's type
    /// must be the one `T` reads: the statements are ours, so a mismatch means a table was
    /// altered (a column retyped): 55000, as for any table not as easymo created it.
    pub fn get<T: FromDatum + IntoDatum>(&self, column: usize) -> Option<T> {
        let attno = column as i32 + 1;
        // SAFETY: the tuple and descriptor are SPI's result, alive until SPI_finish; the type is
        // checked before the datum is read as T.
        unsafe {
            let type_oid = pg_sys::SPI_gettypeid(self.desc, attno);
            if type_oid != T::type_oid() {
                crate::error::raise(
                    PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                    format!(
                        "an easymo table is not as easymo created it: a column read as type {} is of type {}",
                        u32::from(T::type_oid()),
                        u32::from(type_oid)
                    ),
                );
            }
            let mut is_null = false;
            let datum = pg_sys::SPI_getbinval(self.tuple, self.desc, attno, &mut is_null);
            T::from_datum(datum, is_null)
        }
    }

    /// Column `column` (from 0), a whole row of table `T` (`RETURNING t`) whose relation is
    /// `relid`, copied out of SPI's memory into the memory the function was called in; None for
    /// NULL. 55000 when the column is not of that table's row type.
    pub fn row<T: TableRowType>(&self, column: usize, relid: pg_sys::Oid) -> Option<RowOf<T>> {
        let attno = column as i32 + 1;
        // SAFETY: as in `get`; the type is checked to be the table's row type before the datum
        // is copied as a composite (SPI_datumTransfer copies a varlena into the upper context).
        unsafe {
            let type_oid = pg_sys::SPI_gettypeid(self.desc, attno);
            if type_oid != pg_sys::get_rel_type_id(relid) {
                crate::error::raise(
                    PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                    format!("easymo table {} is not as easymo created it: a row read is not of its type", T::NAME),
                );
            }
            let mut is_null = false;
            let datum = pg_sys::SPI_getbinval(self.tuple, self.desc, attno, &mut is_null);
            (!is_null).then(|| RowOf::from_datum_unchecked(pg_sys::SPI_datumTransfer(datum, false, -1)))
        }
    }
}

impl Drop for Plan {
    fn drop(&mut self) {
        // SAFETY: the plan was kept by `prepare` and is freed once, here.
        unsafe { pg_sys::SPI_freeplan(self.plan.as_ptr()) };
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
