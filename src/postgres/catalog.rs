//! Where the extension's own tables are, and touching them with their owner's rights.
//!
//! The native hot paths are SECURITY INVOKER, so the steady state pays nothing for a user switch
//! or a pinned search_path (a SECURITY DEFINER or SET clause costs a GUC save/restore on every
//! call). When one of them must read or write its table (a cache miss, an evaluation log row)
//! it switches to the table's owner for exactly that statement, as Postgres's own RI triggers
//! do. Those statements name the table schema-qualified and contain no operator, cast or
//! function call, so nothing in the caller's search_path can be resolved into them.

use crate::error::raise;
use pgrx::prelude::*;
use std::ffi::{CStr, CString};

/// An extension table: its oid, owner and schema-qualified, quoted name.
#[derive(Clone, Debug)]
pub struct ExtTable {
    pub relid: pg_sys::Oid,
    pub owner: pg_sys::Oid,
    pub qualified: String,
}

impl ExtTable {
    /// The schema-qualified, quoted name of another object in the same schema.
    pub fn sibling(&self, name: &str) -> String {
        let schema = self.qualified.rsplit_once('.').map_or("", |(schema, _)| schema);
        let name = CString::new(name).expect("object names have no NUL");
        format!("{schema}.{}", quote_ident(&name))
    }
}

fn quote_ident(ident: &CStr) -> String {
    // SAFETY: quote_identifier returns its argument or a palloc'd quoted copy, both valid C strings.
    unsafe { CStr::from_ptr(pg_sys::quote_identifier(ident.as_ptr())) }.to_string_lossy().into_owned()
}

/// The next value of sequence `sequence` (nextval, with its privilege check and locking).
pub fn nextval(sequence: pg_sys::Oid) -> i64 {
    // SAFETY: nextval's SQL-callable entry point with an oid datum; it raises its own errors.
    unsafe { pgrx::direct_function_call::<i64>(pg_sys::nextval_oid, &[sequence.into_datum()]) }
        .expect("nextval returns a value")
}

/// Looks up the extension table `name` in the schema easymo is installed in. Runs as the
/// caller: it reads only the catalogs, with every operator spelled out.
pub fn ext_table(name: &str) -> ExtTable {
    let found = Spi::connect(|client| {
        let rows = client.select(
            "SELECT e.extnamespace, c.oid, c.relowner \
               FROM pg_catalog.pg_extension e \
               JOIN pg_catalog.pg_class c ON c.relnamespace OPERATOR(pg_catalog.=) e.extnamespace \
              WHERE e.extname OPERATOR(pg_catalog.=) 'easymo' \
                AND c.relname OPERATOR(pg_catalog.=) $1::pg_catalog.name",
            Some(1),
            &[name.into()],
        )?;
        let mut found = None;
        for row in rows {
            found = Some((
                row.get::<pg_sys::Oid>(1)?.expect("extnamespace is not null"),
                row.get::<pg_sys::Oid>(2)?.expect("oid is not null"),
                row.get::<pg_sys::Oid>(3)?.expect("relowner is not null"),
            ));
        }
        Ok::<_, pgrx::spi::Error>(found)
    })
    .unwrap_or_else(|e| error!("looking up easymo table {name}: {e}"));
    let Some((namespace, relid, owner)) = found else {
        // A DBA renamed or dropped it (or the extension is being dropped): a state to fix, not
        // an internal error.
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("easymo table {name} not found in the extension's schema: it was renamed or dropped, or easymo is not installed in this database"),
        )
    };
    // SAFETY: the namespace oid came from the catalog just now; the result is palloc'd.
    let schema = unsafe { CStr::from_ptr(pg_sys::get_namespace_name(namespace)) }.to_owned();
    let table = CString::new(name).expect("table names have no NUL");
    ExtTable { relid, owner, qualified: format!("{}.{}", quote_ident(&schema), quote_ident(&table)) }
}
