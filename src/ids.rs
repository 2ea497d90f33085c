//! Ids for rows the native paths write: UUID version 7 (RFC 9562), time-ordered.
//!
//! Random (version 4) ids scatter inserts over every leaf page of a primary key, each of which
//! then costs a full-page image in the WAL after a checkpoint; version 7 ids start with the
//! millisecond timestamp, so new rows go to the right edge of the index, as with a sequence, while
//! staying unguessable (74 random bits) and unique across servers.

#![forbid(unsafe_code)]

use crate::postgres::backend;

/// Microseconds between the Unix epoch and the Postgres epoch (2000-01-01).
const POSTGRES_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

pub fn new_v7() -> pgrx::Uuid {
    let mut random = [0u8; 10];
    backend::strong_random(&mut random);
    let now_micros = backend::now() + POSTGRES_EPOCH_UNIX_MICROS;
    let millis = u64::try_from(now_micros / 1000).unwrap_or(0);
    let id = uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid();
    pgrx::Uuid::from_bytes(*id.as_bytes())
}
