//! The layer that touches Postgres internals for the native hot paths: finding the extension's
//! tables and indexes through the relcache (so DDL, REINDEX CONCURRENTLY, VACUUM FULL or
//! TRUNCATE from another session are seen at the next call), reading rows with their NULL flags,
//! switching to the table owner for one statement and back, running a step in a
//! subtransaction, who the caller is, handing a function's rows back as one set, and the entry
//! points of the calls measured against a bare `SELECT 1`, which read their arguments without
//! pgrx's wrapper (`fcall`).
//!
//! Every function here that can be misused with a wrong datum or pointer is `unsafe`; the safe
//! ones check what they rely on and raise a clear error (SQLSTATE 55000 for a table that is
//! no longer as easymo created it) instead of trusting remembered OIDs or column numbers.

pub mod backend;
pub mod bgworker;
pub mod catalog;
pub mod datum;
pub mod extension;
pub mod fcall;
pub mod identity;
pub mod inval;
pub mod partition;
pub mod plan;
pub mod points;
pub mod relation;
pub mod shmem;
pub mod snapshot;
pub mod srf;
pub mod subxact;
mod unguarded;
pub mod wait;
pub mod writer;

pub use identity::{caller_has_role, caller_is_service};
pub use subxact::in_subtransaction;
