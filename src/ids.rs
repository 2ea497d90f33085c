//! Ids for rows the native paths write: UUID version 7 (RFC 9562), time-ordered.
//!
//! Random (version 4) ids scatter inserts over every leaf page of a primary key, each of which
//! then costs a full-page image in the WAL after a checkpoint; version 7 ids start with the
//! millisecond timestamp, so new rows go to the right edge of the index, as with a sequence, while
//! staying unguessable (62 random bits) and unique across servers.
//!
//! The 12 bits after the version hold the fraction of the millisecond (RFC 9562 §6.2, method 3),
//! and a backend never repeats or goes back: ids made one after the other by a backend sort in
//! the order they were made (the hot wallet credits are folded in that order).

#![forbid(unsafe_code)]

use crate::postgres::backend;
use std::cell::Cell;

/// Microseconds between the Unix epoch and the Postgres epoch (2000-01-01).
const POSTGRES_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

thread_local! {
    /// The (millisecond, fraction) of the backend's last id.
    static LAST: Cell<(u64, u16)> = const { Cell::new((0, 0)) };
}

/// The (millisecond, 12-bit fraction) for an id made at `unix_micros`, after `last`.
fn next_stamp(unix_micros: i64, last: (u64, u16)) -> (u64, u16) {
    let micros = u64::try_from(unix_micros).unwrap_or(0);
    let stamp = (micros / 1000, ((micros % 1000) * 4096 / 1000) as u16);
    if stamp > last {
        return stamp;
    }
    // Same fraction (or a clock that went back): one step after the last.
    if last.1 == 4095 {
        (last.0 + 1, 0)
    } else {
        (last.0, last.1 + 1)
    }
}

pub fn new_v7() -> pgrx::Uuid {
    let mut random = [0u8; 10];
    backend::strong_random(&mut random);
    let (millis, fraction) = next_stamp(backend::now() + POSTGRES_EPOCH_UNIX_MICROS, LAST.get());
    LAST.set((millis, fraction));
    let mut bytes = *uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid().as_bytes();
    bytes[6] = 0x70 | (fraction >> 8) as u8;
    bytes[7] = fraction as u8;
    pgrx::Uuid::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::next_stamp;

    #[test]
    fn stamps_only_go_forward() {
        assert_eq!(next_stamp(1_000_500, (0, 0)), (1000, 2048));
        assert_eq!(next_stamp(1_000_500, (1000, 2048)), (1000, 2049));
        assert_eq!(next_stamp(999_000, (1000, 4095)), (1001, 0));
        assert_eq!(next_stamp(2_000_000, (1000, 4095)), (2000, 0));
    }
}
