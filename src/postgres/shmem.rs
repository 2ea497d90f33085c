//! Shared memory, when easymo is in shared_preload_libraries: one table of counters for the
//! whole server (src/stats.rs decides what is counted).

use pgrx::prelude::*;
use pgrx::{PGRXSharedMemory, PgLwLock};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
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

// ---------------------------------------------------------------------------------------------
// The region of the shared cache (src/cache/shared.rs decides what it holds): words the size
// of easymo.cache_shared_memory, zeroed at server start, reached by every backend through the
// pointer the postmaster set before forking them.

static REGION: AtomicPtr<AtomicU64> = AtomicPtr::new(std::ptr::null_mut());
static REGION_WORDS: AtomicUsize = AtomicUsize::new(0);
static mut PREV_REQUEST_HOOK: pg_sys::shmem_request_hook_type = None;
static mut PREV_STARTUP_HOOK: pg_sys::shmem_startup_hook_type = None;

/// Requests `bytes` of shared memory for the cache region; called from _PG_init while
/// preloading, after the settings are defined. Zero requests nothing.
pub fn init_cache_region(bytes: usize) {
    if bytes == 0 {
        return;
    }
    REGION_WORDS.store(bytes / 8, Ordering::Relaxed);
    // SAFETY: _PG_init of a preloaded library runs in the postmaster, once, before these hooks
    // are called; the previous hooks are kept and called first.
    unsafe {
        PREV_REQUEST_HOOK = pg_sys::shmem_request_hook;
        pg_sys::shmem_request_hook = Some(request_region);
        PREV_STARTUP_HOOK = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(start_region);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn request_region() {
    // SAFETY: called by the postmaster in its shmem request phase, where requests are allowed.
    unsafe {
        if let Some(prev) = PREV_REQUEST_HOOK {
            pg_sys::ffi::pg_guard_ffi_boundary(|| prev());
        }
        pg_sys::RequestAddinShmemSpace(REGION_WORDS.load(Ordering::Relaxed) * 8);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn start_region() {
    // SAFETY: called at shared memory creation, under AddinShmemInitLock as every extension
    // does (its index in MainLWLockArray is 21 in every supported version); the region was
    // requested with this size, and the words are zeroed before any backend exists.
    unsafe {
        if let Some(prev) = PREV_STARTUP_HOOK {
            pg_sys::ffi::pg_guard_ffi_boundary(|| prev());
        }
        let lock = &raw mut (*pg_sys::MainLWLockArray.add(21)).lock;
        pg_sys::LWLockAcquire(lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let words = REGION_WORDS.load(Ordering::Relaxed);
        let mut found = false;
        let ptr = pg_sys::ShmemInitStruct(c"easymo_cache".as_ptr(), words * 8, &mut found).cast::<AtomicU64>();
        if !found {
            std::ptr::write_bytes(ptr, 0, words);
        }
        REGION.store(ptr, Ordering::Relaxed);
        pg_sys::LWLockRelease(lock);
    }
}

/// The cache region, when easymo was preloaded with easymo.cache_shared_memory above zero.
pub fn cache_region() -> Option<&'static [AtomicU64]> {
    let ptr = REGION.load(Ordering::Relaxed);
    // SAFETY: set once at server start to shared memory of REGION_WORDS words that lives as
    // long as the server; only ever accessed through atomics.
    (!ptr.is_null()).then(|| unsafe { std::slice::from_raw_parts(ptr, REGION_WORDS.load(Ordering::Relaxed)) })
}

/// Asks the CPU to start loading the cache line of `word` (a hint: nothing waits for it and
/// nothing faults), so that a read of it a little later finds it near.
pub fn prefetch(word: &AtomicU64) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing into the program and cannot fault; SSE is part of x86_64.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(std::ptr::from_ref(word).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = word;
}
