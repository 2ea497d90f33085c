//! Functions that Postgres calls directly (fmgr's version-1 convention), their arguments read
//! straight from the call. For the calls measured against a bare `SELECT 1`: pgrx's wrapper
//! fetches each argument through an iterator, a memory-context switch and a guarded detoast
//! call, which for is_feature_enabled's four arguments was a third of the 0.28 µs a call may
//! cost over `SELECT 1` (perf, one client). The body still runs inside pgrx's guard, so a
//! Postgres error or a Rust panic inside it is reported as from any pgrx function.
//!
//! Their SQL declarations are written out in src/lib.rs (extension_sql!) as pgrx wrote them,
//! with the same symbols (`<name>_wrapper`), so upgrading needs no change.

use crate::postgres::datum::{bytes, utf8, RawJsonb, RawTextArray};
use pgrx::pg_sys;

/// The arguments of one call.
pub struct Args<'a> {
    args: &'a [pg_sys::NullableDatum],
}

impl Args<'_> {
    /// The argument at `index` (from 0), None when NULL or when the function was declared with
    /// fewer arguments (by hand: then it is as if NULL).
    fn datum(&self, index: usize) -> Option<pg_sys::Datum> {
        self.args.get(index).filter(|a| !a.isnull).map(|a| a.value)
    }

    /// A text argument; 22021 naming `name` if it is not UTF-8 (possible only in a database of
    /// another encoding, as for a text column read natively; in a UTF-8 database Postgres has
    /// checked it, as pgrx relies on too).
    pub fn text(&self, index: usize, name: &'static str) -> Option<&str> {
        let datum = self.datum(index)?;
        // SAFETY: a non-null text argument of the call, alive until the call returns; `packed`
        // detoasts into the current memory context when it must.
        let bytes = unsafe { bytes(datum) };
        if utf8_database() {
            // SAFETY: text in a UTF-8 database is valid UTF-8 (Postgres checks it on input).
            return Some(unsafe { std::str::from_utf8_unchecked(bytes) });
        }
        Some(utf8(bytes, || format!("{name}:")))
    }

    /// A uuid argument.
    pub fn uuid(&self, index: usize) -> Option<pgrx::Uuid> {
        let datum = self.datum(index)?;
        // SAFETY: a non-null uuid argument points to its 16 bytes (pass by reference).
        Some(pgrx::Uuid::from_bytes(unsafe { datum.cast_mut_ptr::<[u8; 16]>().read() }))
    }

    /// An integer argument.
    pub fn int4(&self, index: usize) -> Option<i32> {
        // A by-value int4: the low 32 bits of the datum.
        self.datum(index).map(|d| d.value() as i32)
    }

    /// A text[] argument, as the datum itself.
    pub fn text_array(&self, index: usize) -> Option<RawTextArray> {
        let datum = self.datum(index)?;
        // SAFETY: a non-null text[] argument of the call, alive until the call returns.
        Some(unsafe { RawTextArray::from_datum_unchecked(datum) })
    }

    /// A jsonb argument, as the datum itself.
    pub fn jsonb(&self, index: usize) -> Option<RawJsonb> {
        let datum = self.datum(index)?;
        // SAFETY: a non-null jsonb argument of the call, alive until the call returns.
        Some(unsafe { RawJsonb::from_datum_unchecked(datum) })
    }
}

/// Whether this backend's database is UTF-8 (fixed for the backend's life once connected).
fn utf8_database() -> bool {
    thread_local!(static UTF8: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) });
    UTF8.get().unwrap_or_else(|| {
        // SAFETY: reads the database encoding; never raises.
        let utf8 = unsafe { pg_sys::GetDatabaseEncoding() } == pg_sys::pg_enc::PG_UTF8 as i32;
        UTF8.set(Some(utf8));
        utf8
    })
}

/// What a function of this module returns, as the call's result: a datum, or None for NULL.
pub trait Returned {
    fn into_result(self) -> Option<pg_sys::Datum>;
}

impl Returned for bool {
    fn into_result(self) -> Option<pg_sys::Datum> {
        Some(pg_sys::Datum::from(self))
    }
}

impl Returned for pg_sys::TimestampTz {
    fn into_result(self) -> Option<pg_sys::Datum> {
        Some(pg_sys::Datum::from(self))
    }
}

impl Returned for Option<RawJsonb> {
    fn into_result(self) -> Option<pg_sys::Datum> {
        self.map(|r| r.datum())
    }
}

/// Runs `body` for the call `fcinfo` inside pgrx's guard and returns its result.
///
/// # Safety
/// `fcinfo` must be the call Postgres made to a function declared with the argument types the
/// body reads and the result type it returns.
unsafe fn call<R: Returned>(fcinfo: pg_sys::FunctionCallInfo, body: fn(&Args) -> R) -> pg_sys::Datum {
    // SAFETY: the caller's; the guard turns a Postgres error or a panic in `body` into an
    // error report for Postgres, after Rust's frames are gone; `isnull` is the call's result
    // flag, which Postgres reads after.
    unsafe {
        pg_sys::submodules::panic::pgrx_extern_c_guard(|| {
            let call = &mut *fcinfo;
            let result =
                body(&Args { args: call.args.as_slice(usize::try_from(call.nargs).unwrap_or(0)) }).into_result();
            call.isnull = result.is_none();
            result.unwrap_or(pg_sys::Datum::from(0))
        })
    }
}

/// fmgr's version-1 record (`PG_FUNCTION_INFO_V1`).
static V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };

/// is_feature_enabled(text, uuid, text, jsonb) RETURNS bool (src/coordination/mod.rs; declared
/// in src/lib.rs).
#[unsafe(no_mangle)]
pub extern "C" fn pg_finfo_is_feature_enabled_wrapper() -> &'static pg_sys::Pg_finfo_record {
    &V1
}

/// # Safety
/// Called by Postgres only, as declared in src/lib.rs.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn is_feature_enabled_wrapper(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: Postgres's call of the function declared with these arguments.
    unsafe { call(fcinfo, crate::coordination::is_feature_enabled) }
}

/// get_cache(text) RETURNS jsonb (src/cache/mod.rs; declared in src/lib.rs).
#[unsafe(no_mangle)]
pub extern "C" fn pg_finfo_get_cache_wrapper() -> &'static pg_sys::Pg_finfo_record {
    &V1
}

/// # Safety
/// Called by Postgres only, as declared in src/lib.rs.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn get_cache_wrapper(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: Postgres's call of the function declared with this argument.
    unsafe { call(fcinfo, crate::cache::get_cache) }
}

/// set_cache(text, jsonb, integer, text, text[], text, uuid) RETURNS timestamptz
/// (src/cache/mod.rs; declared in src/lib.rs).
#[unsafe(no_mangle)]
pub extern "C" fn pg_finfo_set_cache_entry_wrapper() -> &'static pg_sys::Pg_finfo_record {
    &V1
}

/// # Safety
/// Called by Postgres only, as declared in src/lib.rs.
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn set_cache_entry_wrapper(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: Postgres's call of the function declared with these arguments.
    unsafe { call(fcinfo, crate::cache::set_cache_entry) }
}
