//! Where the extension's own tables are, and touching them with their owner's rights.
//!
//! The native hot paths are SECURITY INVOKER, so the steady state pays nothing for a user switch
//! or a pinned search_path (a SECURITY DEFINER or SET clause costs a GUC save/restore on every
//! call). When one of them must read or write its table (a cache miss, an evaluation log row)
//! it switches to the table's owner for exactly that statement, as Postgres's own RI triggers
//! do. Those statements name the table schema-qualified and contain no operator, cast or
//! function call, so nothing in the caller's search_path can be resolved into them.

use pgrx::prelude::*;
use std::ffi::{CStr, CString};

/// An extension table: its oid, owner and schema-qualified, quoted name.
#[derive(Clone, Debug)]
pub struct ExtTable {
    pub relid: pg_sys::Oid,
    pub owner: pg_sys::Oid,
    pub namespace: pg_sys::Oid,
    pub qualified: String,
}

impl ExtTable {
    /// Whether the table still exists where it was found (the extension may have been dropped
    /// and created again, elsewhere). One syscache lookup: cheap enough for every call.
    pub fn still_valid(&self) -> bool {
        // SAFETY: a syscache read; an unknown oid yields InvalidOid.
        unsafe { pg_sys::get_rel_namespace(self.relid) == self.namespace }
    }

    /// The schema-qualified, quoted name of another object in the same schema.
    pub fn sibling(&self, name: &str) -> String {
        let schema = self.qualified.rsplit_once('.').map_or("", |(schema, _)| schema);
        let name = CString::new(name).expect("object names have no NUL");
        format!("{schema}.{}", quote_ident(&name))
    }
}

fn quote_ident(ident: &CStr) -> String {
    // SAFETY: quote_identifier returns its argument or a palloc'd quoted copy, both valid C strings.
    unsafe { CStr::from_ptr(pg_sys::quote_identifier(ident.as_ptr())) }
        .to_string_lossy()
        .into_owned()
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
        error!("easymo table {name} not found: is the extension installed in this database?")
    };
    // SAFETY: the namespace oid came from the catalog just now; the result is palloc'd.
    let schema = unsafe { CStr::from_ptr(pg_sys::get_namespace_name(namespace)) }.to_owned();
    let table = CString::new(name).expect("table names have no NUL");
    ExtTable { relid, owner, namespace, qualified: format!("{}.{}", quote_ident(&schema), quote_ident(&table)) }
}

/// Runs `f` with `owner`'s privileges, in a security-restricted context (no SET ROLE, no temp
/// objects), as Postgres does for RI checks. On error, transaction (or subtransaction) abort
/// restores the caller's identity.
pub fn as_owner<R>(owner: pg_sys::Oid, f: impl FnOnce() -> R) -> R {
    let mut saved_user = pg_sys::Oid::INVALID;
    let mut saved_context = 0;
    // SAFETY: plain backend state getters and setters, restored below.
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context);
        pg_sys::SetUserIdAndSecContext(
            owner,
            saved_context
                | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
                | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
        );
    }
    let result = f();
    // SAFETY: see above.
    unsafe { pg_sys::SetUserIdAndSecContext(saved_user, saved_context) };
    result
}

/// Reads the row whose text key equals `key` through the btree `index` on `table` (a primary
/// key: at most one row), with no SPI and no plan: the heap and index are opened and locked as
/// the executor would. `read` gets the row's attributes (1-based numbers, up to `last_attribute`)
/// while the buffer is pinned and must copy out whatever it keeps. With `fresh` the row is seen
/// under a new snapshot (everything committed now), otherwise under the calling statement's.
pub fn lookup_by_text_key<R>(
    table: pg_sys::Oid,
    index: pg_sys::Oid,
    key: &str,
    fresh: bool,
    last_attribute: i16,
    read: impl FnOnce(&dyn Fn(i16) -> pg_sys::Datum) -> R,
) -> Option<R> {
    use pg_sys::{AccessShareLock, NoLock};
    // SAFETY: every resource is released before returning (and by transaction abort on error);
    // attribute datums are only handed to `read` while the slot holds the row.
    unsafe {
        let heap = pg_sys::table_open(table, AccessShareLock as i32);
        let index = pg_sys::index_open(index, AccessShareLock as i32);
        let snapshot = pg_sys::RegisterSnapshot(if fresh || !pg_sys::ActiveSnapshotSet() {
            pg_sys::GetTransactionSnapshot()
        } else {
            pg_sys::GetActiveSnapshot()
        });
        let mut scankey: pg_sys::ScanKeyData = std::mem::zeroed();
        let text = pg_sys::cstring_to_text_with_len(key.as_ptr().cast(), key.len() as i32);
        pg_sys::ScanKeyEntryInitialize(
            &mut scankey,
            0,
            1,
            pg_sys::BTEqualStrategyNumber as u16,
            pg_sys::Oid::INVALID,
            *(*index).rd_indcollation,
            pg_sys::Oid::from(pg_sys::F_TEXTEQ),
            pg_sys::Datum::from(text),
        );
        let scan = pg_sys::index_beginscan(heap, index, snapshot, 1, 0);
        pg_sys::index_rescan(scan, &mut scankey, 1, std::ptr::null_mut(), 0);
        let slot = pg_sys::table_slot_create(heap, std::ptr::null_mut());
        let found = pg_sys::index_getnext_slot(scan, pg_sys::ScanDirection::ForwardScanDirection, slot).then(|| {
            pg_sys::slot_getsomeattrs_int(slot, i32::from(last_attribute));
            read(&|att: i16| *(*slot).tts_values.add(att as usize - 1))
        });
        pg_sys::ExecDropSingleTupleTableSlot(slot);
        pg_sys::index_endscan(scan);
        pg_sys::UnregisterSnapshot(snapshot);
        pg_sys::index_close(index, NoLock as i32);
        pg_sys::table_close(heap, NoLock as i32);
        found
    }
}
