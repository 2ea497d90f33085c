//! Operations: the maintenance worker (worker.rs), and one entry point kept for earlier versions.
//!
//! Up to 0.2.0, `ensure_partitions()` added each month partition it made to the extension and
//! registered it as a configuration table for pg_dump, which Postgres only lets
//! `pg_extension_config_dump()` do inside the extension's own script: `_register_config_table`
//! ran that very function in the extension's context. From 0.3.0 month partitions are not
//! members (sql/operations.sql says why) and nothing calls it; its C symbol stays so that a
//! database still at 0.2.0 (or 0.1.0) keeps working with this library until it is updated.

#![forbid(unsafe_code)]

use crate::postgres::extension::in_extension_script;
use pgrx::prelude::*;

/// Registers `p_table`, already a member of the extension, as a configuration table whose
/// rows pg_dump keeps. Declared only by the 0.1.0 and 0.2.0 install scripts.
#[pg_extern(sql = false, name = "_register_config_table", volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn register_config_table(p_table: pg_sys::Oid) {
    in_extension_script(c"easymo", || {
        Spi::run_with_args("SELECT pg_catalog.pg_extension_config_dump($1::pg_catalog.regclass, '')", &[p_table.into()])
    })
    .unwrap_or_else(|e| error!("registering table {p_table:?} for pg_dump failed: {e}"));
}

pub mod worker;
