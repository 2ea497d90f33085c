//! Shared memory, when easymo is in shared_preload_libraries: one table of counters for the
//! whole server (src/stats.rs decides what is counted).

use pgrx::prelude::*;
use pgrx::{PGRXSharedMemory, PgLwLock};
use std::sync::atomic::{AtomicBool, Ordering};
use xxhash_rust::xxh3::xxh3_64;

const SLOTS: usize = 1024;
/// Longest key a slot holds; longer keys (and any beyond the table's size) are counted in
/// their kind's "(other)" counter (a key's first byte is its kind).
const KEY_CAPACITY: usize = 512;
pub const OTHER: &str = "(other)";

#[derive(Copy, Clone)]
struct Slot {
    len: u16,
    key: [u8; KEY_CAPACITY],
    count: u64,
}

#[derive(Copy, Clone)]
pub struct Counters {
    slots: [Slot; SLOTS],
    other: [u64; 8],
}

impl Default for Counters {
    fn default() -> Self {
        Counters { slots: [Slot { len: 0, key: [0; KEY_CAPACITY], count: 0 }; SLOTS], other: [0; 8] }
    }
}

// SAFETY: plain old data, no pointers.
unsafe impl PGRXSharedMemory for Counters {}

// SAFETY: one name, used by this extension only.
static COUNTERS: PgLwLock<Counters> = unsafe { PgLwLock::new(c"easymo_stats") };
static READY: AtomicBool = AtomicBool::new(false);

impl Counters {
    fn add(&mut self, key: &[u8], n: u64) {
        if !key.is_empty() && key.len() <= KEY_CAPACITY {
            // Open addressing; slots are never freed, so a probe stops at the first empty one.
            let start = xxh3_64(key) as usize % SLOTS;
            for i in 0..SLOTS {
                let slot = &mut self.slots[(start + i) % SLOTS];
                if slot.len == 0 {
                    slot.len = key.len() as u16;
                    slot.key[..key.len()].copy_from_slice(key);
                    slot.count = n;
                    return;
                }
                if &slot.key[..slot.len as usize] == key {
                    slot.count += n;
                    return;
                }
            }
        }
        self.other[usize::from(key.first().copied().unwrap_or(0)) % 8] += n;
    }
}

/// Requests the shared memory; called from _PG_init while preloading.
pub fn init() {
    pgrx::pg_shmem_init!(COUNTERS);
    READY.store(true, Ordering::Relaxed);
}

/// Whether the shared counters exist (easymo was preloaded).
pub fn ready() -> bool {
    READY.load(Ordering::Relaxed)
}

/// Adds counts (key, n) under one exclusive lock.
pub fn add_all<'a>(counts: impl IntoIterator<Item = (&'a Vec<u8>, &'a u64)>) {
    let mut table = COUNTERS.exclusive();
    for (k, n) in counts {
        table.add(k, *n);
    }
}

/// Every counter: (key, count), the "(other)" ones keyed by their kind byte and OTHER.
pub fn snapshot() -> Vec<(Vec<u8>, u64)> {
    let table = COUNTERS.share();
    let mut out: Vec<(Vec<u8>, u64)> =
        table.slots.iter().filter(|s| s.len > 0).map(|s| (s.key[..s.len as usize].to_vec(), s.count)).collect();
    for (kind, n) in table.other.iter().enumerate().filter(|(_, n)| **n > 0) {
        let mut key = vec![kind as u8];
        key.extend_from_slice(OTHER.as_bytes());
        out.push((key, *n));
    }
    out
}
