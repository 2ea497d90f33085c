//! Set-returning functions that hand Postgres all their rows in one call (materialize mode).
//!
//! Every `RETURNS TABLE` function of easymo returns through here. pgrx's `TableIterator`
//! returns one row per call (value-per-call): at each execution it makes
//! a multi-call memory context, builds the result's tuple descriptor from the function's
//! pg_proc row (a type lookup per column) and registers it in the record-type cache, and then
//! goes through its call wrapper once more per row and once at the end. A nearby search over
//! sparse data returns a row or two, so that was most of what the search cost above its index
//! scan. Here the rows go into a tuplestore in the one call, with the descriptor the executor
//! expects (`ReturnSetInfo.expectedDesc`), as Postgres's own `InitMaterializedSRF` does.

use pgrx::callconv::{BoxRet, FcInfo};
use pgrx::pg_sys;
use pgrx::pgrx_sql_entity_graph::metadata::{ArgumentError, Returns, ReturnsError, SqlMapping, SqlTranslatable};
use pgrx::{IntoDatum, PgSqlErrorCode};
use std::marker::PhantomData;

/// The rows of a `RETURNS TABLE` function, returned in materialize mode. (Named as pgrx's type:
/// pgrx's macro reads the column names, `name!(...)`, from a return type so named, and the SQL
/// it generates is the same.)
pub struct TableIterator<'a, Row> {
    rows: Vec<Row>,
    _lifetime: PhantomData<&'a ()>,
}

impl<Row> TableIterator<'_, Row> {
    pub fn new(rows: impl IntoIterator<Item = Row>) -> Self {
        TableIterator { rows: rows.into_iter().collect(), _lifetime: PhantomData }
    }

    pub fn once(row: Row) -> Self {
        Self::new([row])
    }
}

// SAFETY: the SQL of pgrx's own TableIterator of the same rows: `RETURNS TABLE (...)`.
unsafe impl<'a, Row> SqlTranslatable for TableIterator<'a, Row>
where
    pgrx::iter::TableIterator<'a, Row>: SqlTranslatable,
{
    fn argument_sql() -> Result<SqlMapping, ArgumentError> {
        pgrx::iter::TableIterator::<'a, Row>::argument_sql()
    }

    fn return_sql() -> Result<Returns, ReturnsError> {
        pgrx::iter::TableIterator::<'a, Row>::return_sql()
    }
}

// SAFETY: returns NULL, with the rows in the ReturnSetInfo as materialize mode asks: a
// tuplestore and a descriptor, both in the query's memory, and returnMode set.
unsafe impl<Row: Columns> BoxRet for TableIterator<'_, Row> {
    unsafe fn box_into<'fcx>(self, fcinfo: &mut FcInfo<'fcx>) -> pgrx::datum::Datum<'fcx> {
        // SAFETY: the fcinfo of this call; its resultinfo, when it is a ReturnSetInfo, is the
        // executor's for this call, with its expression context (whose per-query memory
        // outlives the scan of the result).
        unsafe {
            let rsinfo = (*fcinfo.as_mut_ptr()).resultinfo.cast::<pg_sys::ReturnSetInfo>();
            let accepted = !rsinfo.is_null()
                && (*rsinfo).type_ == pg_sys::NodeTag::T_ReturnSetInfo
                && (*rsinfo).allowedModes & pg_sys::SetFunctionReturnMode::SFRM_Materialize as i32 != 0
                && !(*rsinfo).expectedDesc.is_null();
            if !accepted {
                crate::error::raise(
                    PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                    "materialize mode required, but it is not allowed in this context",
                );
            }
            let random = (*rsinfo).allowedModes & pg_sys::SetFunctionReturnMode::SFRM_Materialize_Random as i32 != 0;
            let old = pg_sys::MemoryContextSwitchTo((*(*rsinfo).econtext).ecxt_per_query_memory);
            let desc = pg_sys::CreateTupleDescCopy((*rsinfo).expectedDesc);
            let store = pg_sys::tuplestore_begin_heap(random, false, pg_sys::work_mem);
            pg_sys::MemoryContextSwitchTo(old);
            for row in self.rows {
                row.put(store, desc);
            }
            (*rsinfo).returnMode = pg_sys::SetFunctionReturnMode::SFRM_Materialize;
            (*rsinfo).setResult = store;
            (*rsinfo).setDesc = desc;
            fcinfo.return_null()
        }
    }
}

/// A row as its columns' datums, put into a tuplestore, which forms the row once, in its own
/// memory (pgrx's `IntoHeapTuple` forms a heap tuple that the store would copy).
pub trait Columns {
    /// # Safety
    /// `store` is a live tuplestore and `desc` describes these columns, in this order.
    unsafe fn put(self, store: *mut pg_sys::Tuplestorestate, desc: pg_sys::TupleDesc);
}

macro_rules! columns {
    ($($C:ident),+) => {
        impl<$($C: IntoDatum),+> Columns for ($($C,)+) {
            unsafe fn put(self, store: *mut pg_sys::Tuplestorestate, desc: pg_sys::TupleDesc) {
                #[allow(non_snake_case)]
                let ($($C,)+) = self;
                let datums = [$($C.into_datum(),)+];
                let mut nulls = datums.map(|datum| datum.is_none());
                let mut values = datums.map(|datum| datum.unwrap_or(pg_sys::Datum::from(0)));
                // SAFETY: the caller's store and descriptor; one value and one flag per column.
                unsafe { pg_sys::tuplestore_putvalues(store, desc, values.as_mut_ptr(), nulls.as_mut_ptr()) }
            }
        }
    };
}

columns!(A);
columns!(A, B);
columns!(A, B, C);
columns!(A, B, C, D);
columns!(A, B, C, D, E);
columns!(A, B, C, D, E, F);
columns!(A, B, C, D, E, F, G);
columns!(A, B, C, D, E, F, G, H);
columns!(A, B, C, D, E, F, G, H, I);
columns!(A, B, C, D, E, F, G, H, I, J);
