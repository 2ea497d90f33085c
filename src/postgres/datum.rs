//! Arguments and results as the datums themselves: no conversion unless asked for.
//!
//! pgrx's `JsonB` converts every argument to text and parses it into serde_json (and every
//! result back), and its arrays are built into Rust vectors and back; that would dominate the
//! cost of a hot path that mostly passes a value through (metadata or tags into an INSERT, a
//! cached value out of the table) or looks only at its shape (a context that must be an object,
//! a tag list that is usually empty).

use crate::error::ContractError;
use pgrx::callconv::{Arg, ArgAbi, BoxRet, FcInfo};
use pgrx::datum::DatumWithOid;
use pgrx::nullable::Nullable;
use pgrx::pgrx_sql_entity_graph::metadata::{ArgumentError, Returns, ReturnsError, SqlMapping, SqlTranslatable};
use pgrx::prelude::*;
use serde_json::Value;

/// The argument conversions of a type that is the caller's datum itself (`$name(Datum)`):
/// no copy, no conversion; NULL is None.
macro_rules! datum_argument {
    ($name:ident, $sql:literal) => {
        impl FromDatum for $name {
            unsafe fn from_polymorphic_datum(datum: pg_sys::Datum, is_null: bool, _: pg_sys::Oid) -> Option<Self> {
                (!is_null).then_some($name(datum))
            }
        }

        unsafe impl<'fcx> ArgAbi<'fcx> for $name {
            unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
                unsafe { arg.unbox_arg_using_from_datum().expect("checked for NULL by the caller") }
            }

            unsafe fn unbox_nullable_arg(arg: Arg<'_, 'fcx>) -> Nullable<Self> {
                unsafe { arg.unbox_arg_using_from_datum().into() }
            }
        }

        unsafe impl SqlTranslatable for $name {
            fn argument_sql() -> Result<SqlMapping, ArgumentError> {
                Ok(SqlMapping::literal($sql))
            }
            fn return_sql() -> Result<Returns, ReturnsError> {
                Ok(Returns::One(SqlMapping::literal($sql)))
            }
        }
    };
}

/// (Cloning copies the pointer: the value stays where it is, valid as long as the original.)
#[derive(Clone)]
pub struct RawJsonb(pg_sys::Datum);

unsafe impl BoxRet for RawJsonb {
    unsafe fn box_into<'fcx>(self, fcinfo: &mut FcInfo<'fcx>) -> pgrx::datum::Datum<'fcx> {
        // SAFETY: the datum is a jsonb allocated in (or outliving) the function's memory context.
        unsafe { fcinfo.return_raw_datum(self.0) }
    }
}

datum_argument!(RawJsonb, "jsonb");

/// A numeric argument as the caller's datum: its normalized text is read without the copy
/// pgrx's `AnyNumeric` makes of every argument; converted only where arithmetic needs it.
#[derive(Clone)]
pub struct RawNumeric(pg_sys::Datum);

datum_argument!(RawNumeric, "numeric");

impl RawNumeric {
    /// The normalized text ("10.50" gives "10.5"; equal values, equal texts).
    pub fn normalized(&self) -> String {
        // SAFETY: a non-null numeric datum of the call.
        unsafe { numeric_text(self.0) }
    }

    /// The value's bytes (after the varlena header): equal bytes, equal values.
    fn bytes(&self) -> &[u8] {
        // SAFETY: a non-null numeric datum, alive as long as the wrapper.
        unsafe { bytes(self.0) }
    }

    /// The value, for arithmetic (a copy).
    pub fn value(&self) -> AnyNumeric {
        // SAFETY: a non-null numeric datum.
        unsafe { AnyNumeric::from_datum(self.0, false) }.expect("not null")
    }

    /// The datum itself, to pass on to a statement as numeric.
    pub fn as_arg(&self) -> DatumWithOid<'_> {
        // SAFETY: the datum is a valid numeric for as long as the call that received it.
        unsafe { DatumWithOid::new(self.0, pg_sys::NUMERICOID) }
    }

    /// The datum itself, to write into a numeric column (valid as long as the wrapper is).
    pub fn datum(&self) -> pg_sys::Datum {
        self.0
    }
}

/// A stored numeric as a replay compares it with the caller's: byte for byte the caller's value
/// (a retry sends what the first call sent, and that is what was stored), or else its
/// normalized text. The bytes are compared in place: no call into Postgres, no copy.
pub enum StoredNumeric {
    SameAsGiven,
    Text(String),
}

impl StoredNumeric {
    /// Reads `datum`, a valid non-null numeric, against `given`.
    ///
    /// # Safety
    /// `datum` must be a valid, non-null numeric datum.
    pub unsafe fn read(datum: pg_sys::Datum, given: Option<&RawNumeric>) -> StoredNumeric {
        // SAFETY: the caller's.
        unsafe {
            match given {
                Some(g) if bytes(datum) == g.bytes() => StoredNumeric::SameAsGiven,
                _ => StoredNumeric::Text(numeric_text(datum)),
            }
        }
    }

    /// Whether it equals the value whose normalized text is `normalized` (the given one's).
    pub fn equals(&self, normalized: &str) -> bool {
        match self {
            StoredNumeric::SameAsGiven => true,
            StoredNumeric::Text(t) => t == normalized,
        }
    }

    /// Its normalized text (`given_normalized`: the given value's).
    pub fn text<'a>(&'a self, given_normalized: &'a str) -> &'a str {
        match self {
            StoredNumeric::SameAsGiven => given_normalized,
            StoredNumeric::Text(t) => t,
        }
    }
}

/// The normalized text of a numeric datum: detoasted (to the 4-byte header the numeric code
/// reads) and normalized in one guard, nothing Rust in between.
///
/// # Safety
/// `datum` must be a valid, non-null numeric datum.
pub unsafe fn numeric_text(datum: pg_sys::Datum) -> String {
    mod unguarded {
        use pgrx::pg_sys::{varlena, NumericData};
        // The same symbols as pgrx's bindings, without the per-call guard (run inside one).
        unsafe extern "C-unwind" {
            pub fn pg_detoast_datum(datum: *mut varlena) -> *mut varlena;
            pub fn numeric_normalize(num: *mut NumericData) -> *mut std::ffi::c_char;
        }
    }
    // SAFETY: the caller's; the result is a palloc'd C string.
    unsafe {
        let text = pg_sys::ffi::pg_guard_ffi_boundary(|| {
            unguarded::numeric_normalize(unguarded::pg_detoast_datum(datum.cast_mut_ptr()).cast())
        });
        std::ffi::CStr::from_ptr(text).to_string_lossy().into_owned()
    }
}

/// A varlena datum readable in place (`VARDATA_ANY`): itself when it is stored inline and
/// uncompressed, which is nearly always on the hot paths, so no call into Postgres is made;
/// otherwise detoasted (a copy in the current memory context), as pg_detoast_datum_packed does.
///
/// # Safety
/// `datum` must be a valid, non-null varlena datum.
pub unsafe fn packed(datum: pg_sys::Datum) -> *const pg_sys::varlena {
    let ptr = datum.cast_mut_ptr::<pg_sys::varlena>();
    // SAFETY: the caller's; an external or compressed value is detoasted by Postgres.
    unsafe {
        if pgrx::varlena::varatt_is_1b_e(ptr) || pgrx::varlena::varatt_is_4b_c(ptr) {
            pg_sys::pg_detoast_datum_packed(ptr)
        } else {
            ptr
        }
    }
}

/// A varlena datum's bytes after its header, read in place when `packed` allows (the form of
/// every text, numeric and jsonb read here).
///
/// # Safety
/// `datum` must be a valid, non-null varlena datum that outlives the slice (a detoasted copy
/// lives in the current memory context).
pub unsafe fn bytes<'a>(datum: pg_sys::Datum) -> &'a [u8] {
    // SAFETY: the caller's.
    unsafe { pgrx::varlena::varlena_to_byte_slice(packed(datum)) }
}

/// Text bytes as a str; 22021 naming `what` when they are not UTF-8 (possible only in a database
/// of another encoding): never a silently altered string.
pub fn utf8(bytes: &[u8], what: impl FnOnce() -> String) -> &str {
    match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => crate::error::raise(
            PgSqlErrorCode::ERRCODE_CHARACTER_NOT_IN_REPERTOIRE,
            format!("{} is not UTF-8: {e}", what()),
        ),
    }
}

/// The jsonb container header flags (utils/jsonb.h). A scalar is stored as a one-element array
/// with JB_FSCALAR set as well.
const JB_FSCALAR: u32 = 0x1000_0000;
const JB_FOBJECT: u32 = 0x2000_0000;
const JB_FARRAY: u32 = 0x4000_0000;

impl RawJsonb {
    /// Wraps a jsonb datum (a detoasted copy the caller owns, when it is to be returned).
    ///
    /// # Safety
    /// `datum` must be a valid, non-null jsonb that lives as long as the wrapper is used.
    pub unsafe fn from_datum_unchecked(datum: pg_sys::Datum) -> Self {
        RawJsonb(datum)
    }

    fn header(&self) -> u32 {
        // SAFETY: a non-null jsonb datum; detoasting may copy, never changes the value.
        unsafe { pgrx::varlena::vardata_any(packed(self.0)).cast::<u32>().read_unaligned() }
    }

    /// 22023 naming `param` unless the value is a JSON object: read from the jsonb header.
    pub fn check_object(&self, param: &'static str) -> Result<(), ContractError> {
        if self.header() & JB_FOBJECT == 0 {
            return Err(ContractError::invalid(param, format!("must be a JSON object, got {}", self.preview())));
        }
        Ok(())
    }

    /// Whether the value is a JSON array (not a scalar), from the header.
    pub fn is_array(&self) -> bool {
        self.header() & (JB_FARRAY | JB_FSCALAR) == JB_FARRAY
    }

    /// The number of elements when the value is a JSON array (not a scalar), from the header.
    pub fn array_len(&self) -> Option<usize> {
        const JB_CMASK: u32 = 0x0FFF_FFFF;
        let header = self.header();
        (header & (JB_FARRAY | JB_FSCALAR) == JB_FARRAY).then_some((header & JB_CMASK) as usize)
    }

    /// The value's text, from Postgres's own output function (no depth limit; palloc'd in the
    /// current memory context).
    pub fn text(&self) -> &std::ffi::CStr {
        // SAFETY: jsonb_out of a valid jsonb datum returns a NUL-terminated C string.
        unsafe {
            let out = pgrx::fcinfo::direct_function_call_as_datum(pg_sys::jsonb_out, &[Some(self.0)])
                .expect("jsonb_out returns a string");
            std::ffi::CStr::from_ptr(out.cast_mut_ptr::<std::ffi::c_char>())
        }
    }

    /// The first 100 characters of the value's text, for messages (Postgres's own output
    /// function: no depth limit).
    fn preview(&self) -> String {
        self.text().to_string_lossy().chars().take(100).collect()
    }

    /// The value as JSON (a conversion: use only when the content is needed). serde_json reads
    /// at most 128 levels of nesting; deeper values are refused with 22023 naming `param`
    /// rather than failing inside the conversion.
    pub fn to_value(&self, param: &'static str) -> Result<Value, ContractError> {
        serde_json::from_slice(self.text().to_bytes())
            .map_err(|e| ContractError::invalid(param, format!("cannot be read: {e} (at most 128 levels of nesting)")))
    }

    /// The value's bytes after the varlena header: equal bytes, the same jsonb.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: a non-null jsonb datum, alive as long as the wrapper.
        unsafe { bytes(self.0) }
    }

    /// A jsonb made of bytes that `bytes` returned (palloc'd in the current memory context).
    pub fn from_bytes(bytes: &[u8]) -> RawJsonb {
        // SAFETY: a new varlena of the right length, its header set, the bytes copied after it.
        unsafe {
            let total = pg_sys::VARHDRSZ + bytes.len();
            let ptr = pg_sys::palloc(total).cast::<u8>();
            pgrx::varlena::set_varsize_4b(ptr.cast(), total as i32);
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr.add(pg_sys::VARHDRSZ), bytes.len());
            RawJsonb(pg_sys::Datum::from(ptr))
        }
    }

    /// The datum itself, to pass on to a statement as jsonb.
    pub fn as_arg(&self) -> DatumWithOid<'_> {
        // SAFETY: the datum is a valid jsonb for as long as the call that received it.
        unsafe { DatumWithOid::new(self.0, pg_sys::JSONBOID) }
    }

    /// The datum itself, to write into a jsonb column (valid as long as the wrapper is).
    pub fn datum(&self) -> pg_sys::Datum {
        self.0
    }

    /// The jsonb of a JSON text (Postgres's own input function, palloc'd in the current memory
    /// context). Text that jsonb's output function wrote reads back as the same value, the
    /// scale of its numbers and all.
    pub fn parse(text: &str) -> RawJsonb {
        let text = std::ffi::CString::new(text).expect("JSON text has no NUL byte");
        // SAFETY: jsonb_in reads a NUL-terminated string and returns a new jsonb (or raises).
        let datum = unsafe {
            pgrx::fcinfo::direct_function_call_as_datum(pg_sys::jsonb_in, &[Some(pg_sys::Datum::from(text.as_ptr()))])
        };
        RawJsonb(datum.expect("jsonb_in returns a value"))
    }

    /// A value made here (a conversion from serde_json, palloc'd in the current memory context).
    pub fn from_jsonb(value: pgrx::JsonB) -> RawJsonb {
        RawJsonb(value.into_datum().expect("a jsonb is never NULL"))
    }
}

/// A jsonb[] of the values (NULL for None), to pass on to a statement.
pub fn jsonb_array<'a>(values: &[Option<&'a RawJsonb>]) -> DatumWithOid<'a> {
    let mut datums: Vec<pg_sys::Datum> = values.iter().map(|v| v.map_or(pg_sys::Datum::from(0), |j| j.0)).collect();
    let mut nulls: Vec<bool> = values.iter().map(Option::is_none).collect();
    let mut dims = [datums.len() as i32];
    let mut lbs = [1];
    // SAFETY: every non-NULL element is a valid jsonb datum (a RawJsonb), alive for 'a; jsonb
    // is a varlena (typlen -1, not by value, int alignment); the array is palloc'd.
    unsafe {
        let array = pg_sys::construct_md_array(
            datums.as_mut_ptr(),
            nulls.as_mut_ptr(),
            1,
            dims.as_mut_ptr(),
            lbs.as_mut_ptr(),
            pg_sys::JSONBOID,
            -1,
            false,
            pg_sys::TYPALIGN_INT as std::ffi::c_char,
        );
        DatumWithOid::new(pg_sys::Datum::from(array), pg_sys::JSONBARRAYOID)
    }
}

/// A timestamptz as the Rust value pgrx converts (a TimestampTz is a plain int64 datum).
pub fn timestamptz(t: pg_sys::TimestampTz) -> TimestampWithTimeZone {
    // SAFETY: every int64 is a valid timestamptz datum (infinities included).
    unsafe { TimestampWithTimeZone::from_datum(pg_sys::Datum::from(t), false) }.expect("not null")
}

/// A text[] argument as the caller's datum.
pub struct RawTextArray(pg_sys::Datum);

datum_argument!(RawTextArray, "text[]");

impl RawTextArray {
    /// Wraps a text[] datum.
    ///
    /// # Safety
    /// `datum` must be a valid, non-null text[] that lives as long as the wrapper is used.
    pub unsafe fn from_datum_unchecked(datum: pg_sys::Datum) -> Self {
        RawTextArray(datum)
    }

    /// Whether the array has no element (read from its header).
    pub fn is_empty(&self) -> bool {
        // SAFETY: a non-null array datum, detoasted to its full header.
        unsafe {
            let array = pg_sys::pg_detoast_datum(self.0.cast_mut_ptr()) as *const pg_sys::ArrayType;
            (*array).ndim == 0
        }
    }

    /// The elements (a conversion: use only when they are needed).
    pub fn elements(&self) -> Vec<Option<String>> {
        // SAFETY: a non-null text[] datum.
        unsafe { Vec::<Option<String>>::from_datum(self.0, false) }.unwrap_or_default()
    }

    /// The datum itself, to pass on to a statement as text[].
    pub fn as_arg(&self) -> DatumWithOid<'_> {
        // SAFETY: the datum is a valid text[] for as long as the call that received it.
        unsafe { DatumWithOid::new(self.0, pg_sys::TEXTARRAYOID) }
    }
}

/// A table whose rows a function returns whole (`RETURNS SETOF <table>`).
pub trait TableRowType {
    /// The table's name, as the install script knows it (in the extension's schema).
    const NAME: &'static str;
}

/// One row of table `T` as a composite datum, returned as it is: the row a statement's
/// `RETURNING t` gave, copied out of SPI's memory (`ResultRow::row`).
pub struct RowOf<T>(pg_sys::Datum, std::marker::PhantomData<T>);

unsafe impl<T> BoxRet for RowOf<T> {
    unsafe fn box_into<'fcx>(self, fcinfo: &mut FcInfo<'fcx>) -> pgrx::datum::Datum<'fcx> {
        // SAFETY: the datum is a composite copied into the function's multi-call memory.
        unsafe { fcinfo.return_raw_datum(self.0) }
    }
}

unsafe impl<T: TableRowType> SqlTranslatable for RowOf<T> {
    fn argument_sql() -> Result<SqlMapping, ArgumentError> {
        Ok(SqlMapping::literal(T::NAME))
    }
    fn return_sql() -> Result<Returns, ReturnsError> {
        Ok(Returns::One(SqlMapping::literal(T::NAME)))
    }
}

impl<T> RowOf<T> {
    /// Wraps a composite datum of `T`'s row type.
    ///
    /// # Safety
    /// `datum` must be a valid composite of `T`'s row type, in memory that outlives the call.
    pub unsafe fn from_datum_unchecked(datum: pg_sys::Datum) -> Self {
        RowOf(datum, std::marker::PhantomData)
    }
}
