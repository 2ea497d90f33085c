//! Copies of cache entries in shared memory (easymo preloaded, easymo.cache_shared_memory), so
//! that a hit reads no table: a cache read then costs little more than the round trip.
//!
//! A copy is exact or unused. Its rules, and why they hold:
//! - **Only the row's latest committed version is copied.** The reader takes a ticket (the
//!   slot's sequence number) *before* reading the row, and copies the row only when another
//!   transaction inserted it and nobody has updated or deleted it (its xmax is unset, aborted or
//!   only a lock); the copy is written only if the slot's sequence is still the ticket's.
//! - **Every change drops the copies of its key.** An AFTER UPDATE OR DELETE row trigger
//!   (`cache_entries_shared_copies`, enabled ALWAYS, so it fires whatever the session's
//!   session_replication_role) moves the sequence of every slot of the key's two buckets on; it
//!   runs after the row's xmax is set. So a reader whose ticket is older than the change fails
//!   to copy, and one whose ticket is newer sees the xmax and does not copy. The buckets depend
//!   on the database, the table and the key only, so every writer finds them.
//! - **A hit still answers for the caller's snapshot and rights.** A copy holds its version's
//!   inserting transaction and is used only when the statement's snapshot sees it (then, with
//!   nothing changed since, it is the version that snapshot sees); visibility, owner and expiry
//!   are checked as for a row read.
//! - **Changes no trigger sees make every copy unusable.** A copy is made and used under the
//!   table's *form* (`Shared::new`): its file (TRUNCATE, VACUUM FULL and rewrites give a new
//!   one), its columns, and the trigger's oid and version (disabling and enabling it again
//!   gives a new version, so copies from before writes it missed are never used). A backend
//!   learns of such a change from the relcache invalidation, which it reads before each hit;
//!   without the trigger enabled ALWAYS it reads the table. No copies are used in recovery (a
//!   standby's changes come from WAL, without triggers).
//!
//! Layout: a header of counters (a cache line each), then buckets of 4 slots; a key's copy is in
//! one of its two buckets (`buckets_of`): where it already was, else the first with room, else
//! in place of another copy in either. A bucket starts with one
//! cache line of tags (the 4 slots' sequences and key hashes), so a lookup touches that line and
//! then only the words of the slot it wants (perf: the first load of a bucket, a miss to memory,
//! was 60 % of a hit's own time when each slot held its own tags). A slot is a seqlock: readers
//! copy its words and check that its sequence did not move (a slot being written is a miss);
//! writers take it by moving its sequence to odd, and release it two steps on.

#![forbid(unsafe_code)]

use crate::postgres::{backend, shmem};
use std::sync::atomic::{fence, AtomicU64, Ordering};
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Counts since the server started: copies made (word 0), and answers given from copies in
/// stripes, one cache line each, by backend (every hit adds one: a single counter would move
/// its cache line between the cores at every hit).
const COPIES_MADE: usize = 0;
const STRIPES: usize = 16;
const HEADER_WORDS: usize = 8 * (1 + STRIPES);
const WAYS: usize = 4;
/// A bucket's tags: the slots' sequences (words 0-3), then their keys' hashes (4-7; 0: none).
const TAG_WORDS: usize = 2 * WAYS;
const HASHES: usize = WAYS;
const SLOT_WORDS: usize = 32;
/// Words in a cache line (64 bytes).
const LINE_WORDS: usize = 8;
const BUCKET_WORDS: usize = TAG_WORDS + WAYS * SLOT_WORDS;
// A slot's words.
/// The table's form the copy was made under (0: empty).
const FORM: usize = 0;
/// xmin | key length << 32 | cache type length << 40 | value length << 48 | flags << 56.
const VERSION: usize = 1;
const EXPIRES: usize = 2;
const OWNER: usize = 3; // and 4
const PAYLOAD: usize = 5;
const PAYLOAD_WORDS: usize = SLOT_WORDS - PAYLOAD;
/// The most bytes of key, cache type and value (jsonb bytes) a slot holds.
pub const PAYLOAD_BYTES: usize = PAYLOAD_WORDS * 8;
const HAS_OWNER: u64 = 0x80;

/// The region, and whose copies: the database and table (the hash seed), and the table's form.
#[derive(Clone, Copy)]
pub struct Shared {
    region: &'static [AtomicU64],
    seed: u64,
    form: u64,
}

/// What a copy (or a row read to be copied) holds besides the key.
pub struct Entry<'a> {
    pub xmin: u32,
    pub expires_at: i64,
    /// The visibility's code (see `super::Visibility::code`), below 0x80.
    pub visibility: u8,
    pub owner: Option<[u8; 16]>,
    pub cache_type: &'a [u8],
    pub value: &'a [u8],
}

/// A slot as read, consistent with itself: its meta words and its payload's bytes.
pub struct Copy {
    meta: [u64; PAYLOAD],
    payload: [u8; PAYLOAD_BYTES],
}

/// Where a row read now may be copied, if nothing changes its slot meanwhile.
pub struct Ticket {
    bucket: usize,
    way: usize,
    seq: u64,
}

/// One bucket's words: its tags and slots.
struct Bucket<'a> {
    words: &'a [AtomicU64],
}

impl Bucket<'_> {
    fn seq(&self, way: usize) -> &AtomicU64 {
        &self.words[way]
    }

    fn hash(&self, way: usize) -> &AtomicU64 {
        &self.words[HASHES + way]
    }

    fn slot(&self, way: usize) -> &[AtomicU64] {
        let start = TAG_WORDS + way * SLOT_WORDS;
        &self.words[start..start + SLOT_WORDS]
    }

    /// Moves a slot's sequence from even to odd, waiting while another writer has it (writers
    /// hold a slot for a few stores, with nothing in between that can fail or wait); returns
    /// the even value it had.
    fn take(&self, way: usize) -> u64 {
        let seq = self.seq(way);
        let mut spins = 0u32;
        loop {
            let s = seq.load(Ordering::Relaxed);
            if s & 1 == 0 && seq.compare_exchange_weak(s, s + 1, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                fence(Ordering::Release);
                return s;
            }
            spins += 1;
            if spins.is_multiple_of(64) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

impl Shared {
    /// The copies of cache_entries (table oid `relid`) in this database, when there is a
    /// region; `form` describes the table as this backend sees it (`None`: only to drop
    /// copies, as a writer does whatever it sees).
    pub fn new(relid: u32, form: Option<&[u8]>) -> Option<Shared> {
        let region = shmem::cache_region()?;
        let seed = u64::from(u32::from(backend::database())) << 32 | u64::from(relid);
        let form = form.map_or(0, |f| xxh3_64_with_seed(f, seed).max(1));
        (region.len() >= HEADER_WORDS + BUCKET_WORDS).then_some(Shared { region, seed, form })
    }

    /// The key's hash (never 0, which marks a slot without a key).
    fn hash(&self, key: &[u8]) -> u64 {
        xxh3_64_with_seed(key, self.seed).max(1)
    }

    fn bucket(&self, index: usize) -> Bucket<'static> {
        bucket_at(self.region, index)
    }

    /// The two buckets a key's copy may be in: the first is where it goes when there is room,
    /// the second when the first is full (equal only in a region of one bucket). With a
    /// second choice, a bucket that more keys fall into than it has slots sheds them to
    /// another bucket instead of evicting: with 100,000 entries in 246,716 slots, 2 % of the
    /// keys had no slot with one choice (each read of one a read of the table).
    fn buckets_of(&self, hash: u64) -> [usize; 2] {
        let n = bucket_count(self.region) as u64;
        let first = hash % n;
        let mut second = hash.rotate_left(32) % n;
        if second == first {
            second = (first + 1) % n;
        }
        [first as usize, second as usize]
    }

    /// Starts loading `key`'s bucket: its tags and the first two cache lines of each slot (the
    /// meta words and the payload's start) at once, so that a hit waits for memory once, not
    /// for the tags and then for a slot, and partly while the call does its checks.
    pub fn prefetch(&self, key: &[u8]) {
        let bucket = self.bucket(self.buckets_of(self.hash(key))[0]);
        shmem::prefetch(bucket.seq(0));
        for way in 0..WAYS {
            shmem::prefetch(&bucket.slot(way)[0]);
            shmem::prefetch(&bucket.slot(way)[LINE_WORDS]);
        }
    }

    /// Reads the copy of `key` into `copy`, if there is one made under this form (its first
    /// bucket is looked at first: most copies are there); false when there is none. Read into
    /// the caller's `Copy` rather than returned, so its 256 bytes are not moved through the
    /// callers' frames.
    pub fn copy(&self, key: &[u8], copy: &mut Copy) -> bool {
        let hash = self.hash(key);
        let [first, second] = self.buckets_of(hash);
        self.copy_in(first, hash, key, copy) || self.copy_in(second, hash, key, copy)
    }

    fn copy_in(&self, index: usize, hash: u64, key: &[u8], copy: &mut Copy) -> bool {
        let bucket = self.bucket(index);
        (0..WAYS).any(|way| {
            let seq = bucket.seq(way).load(Ordering::Acquire);
            if seq & 1 == 1 || bucket.hash(way).load(Ordering::Relaxed) != hash {
                return false;
            }
            let slot = bucket.slot(way);
            for (m, w) in copy.meta.iter_mut().zip(slot) {
                *m = w.load(Ordering::Relaxed);
            }
            // Only the payload words in use: the lengths may be torn, so they are bounded here
            // and checked with everything else below (the bytes past them are never read).
            let (k, t, v) = lens(copy.meta[VERSION]);
            let used = (k + t + v).div_ceil(8).min(PAYLOAD_WORDS);
            for (chunk, w) in copy.payload.chunks_exact_mut(8).zip(&slot[PAYLOAD..PAYLOAD + used]) {
                chunk.copy_from_slice(&w.load(Ordering::Relaxed).to_ne_bytes());
            }
            fence(Ordering::Acquire);
            bucket.seq(way).load(Ordering::Relaxed) == seq
                && copy.meta[FORM] == self.form
                && k + t + v <= PAYLOAD_BYTES
                && copy.key() == key
        })
    }

    /// A ticket to copy `key` after reading its row: the slot that holds it (in either of its
    /// buckets), else an empty one or one of another form (the first bucket's first), else
    /// the next victim of the two. None while that slot is being written.
    pub fn ticket(&self, key: &[u8]) -> Option<Ticket> {
        let hash = self.hash(key);
        let buckets = self.buckets_of(hash);
        let ways = || buckets.into_iter().flat_map(|b| (0..WAYS).map(move |w| (b, w)));
        let (index, way) = ways()
            .find(|&(b, w)| self.bucket(b).hash(w).load(Ordering::Relaxed) == hash)
            .or_else(|| ways().find(|&(b, w)| self.bucket(b).slot(w)[FORM].load(Ordering::Relaxed) != self.form))
            .unwrap_or_else(|| {
                let v = victim();
                (buckets[v / WAYS], v % WAYS)
            });
        let seq = self.bucket(index).seq(way).load(Ordering::Acquire);
        (seq & 1 == 0).then_some(Ticket { bucket: index, way, seq })
    }

    /// Copies the row read with `ticket`, unless its slot changed meanwhile (then a change may
    /// have been missed) or it does not fit. The caller checked that the row was the latest
    /// committed version.
    pub fn fill(&self, ticket: Ticket, key: &[u8], entry: &Entry) {
        let total = key.len() + entry.cache_type.len() + entry.value.len();
        if total > PAYLOAD_BYTES {
            return;
        }
        let bucket = self.bucket(ticket.bucket);
        let seq = bucket.seq(ticket.way);
        if seq.compare_exchange(ticket.seq, ticket.seq + 1, Ordering::AcqRel, Ordering::Relaxed).is_err() {
            return;
        }
        fence(Ordering::Release);
        let mut payload = [0u8; PAYLOAD_BYTES];
        let mut at = 0;
        for part in [key, entry.cache_type, entry.value] {
            payload[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        let owner = entry.owner.unwrap_or_default();
        let flags = u64::from(entry.visibility) | if entry.owner.is_some() { HAS_OWNER } else { 0 };
        let meta = [
            self.form,
            u64::from(entry.xmin)
                | (key.len() as u64) << 32
                | (entry.cache_type.len() as u64) << 40
                | (entry.value.len() as u64) << 48
                | flags << 56,
            entry.expires_at as u64,
            u64::from_ne_bytes(owner[..8].try_into().expect("8 bytes")),
            u64::from_ne_bytes(owner[8..].try_into().expect("8 bytes")),
        ];
        let slot = bucket.slot(ticket.way);
        for (w, m) in slot.iter().zip(meta) {
            w.store(m, Ordering::Relaxed);
        }
        for (w, chunk) in slot[PAYLOAD..].iter().zip(payload[..total.div_ceil(8) * 8].chunks_exact(8)) {
            w.store(u64::from_ne_bytes(chunk.try_into().expect("8 bytes")), Ordering::Relaxed);
        }
        bucket.hash(ticket.way).store(self.hash(key), Ordering::Relaxed);
        seq.store(ticket.seq + 2, Ordering::Release);
        self.region[COPIES_MADE].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an answer given from a copy.
    pub fn answered(&self) {
        let stripe = backend::pid().unsigned_abs() as usize % STRIPES;
        self.region[8 * (1 + stripe)].fetch_add(1, Ordering::Relaxed);
    }

    /// Drops the copies of `key` and fails every ticket for its two buckets (the change
    /// trigger).
    pub fn drop_key(&self, key: &[u8]) {
        let hash = self.hash(key);
        let both = self.buckets_of(hash);
        for &index in &both[..if both[0] == both[1] { 1 } else { 2 }] {
            let bucket = self.bucket(index);
            for way in 0..WAYS {
                let seq = bucket.take(way);
                if bucket.hash(way).load(Ordering::Relaxed) == hash {
                    bucket.slot(way)[FORM].store(0, Ordering::Relaxed);
                    bucket.hash(way).store(0, Ordering::Relaxed);
                }
                bucket.seq(way).store(seq + 2, Ordering::Release);
            }
        }
    }
}

/// The region's counts: slots, slots holding a copy (of any database), copies made and
/// answers given from copies since the server started. Zeros without a region.
pub fn counts() -> [i64; 4] {
    let Some(region) = shmem::cache_region() else {
        return [0; 4];
    };
    let buckets = bucket_count(region);
    let held = (0..buckets)
        .flat_map(|b| (0..WAYS).map(move |w| bucket_at(region, b).slot(w)[FORM].load(Ordering::Relaxed)))
        .filter(|&form| form != 0)
        .count();
    let n = |w: usize| i64::try_from(region[w].load(Ordering::Relaxed)).unwrap_or(i64::MAX);
    let answers = (0..STRIPES).map(|s| n(8 * (1 + s))).fold(0i64, i64::saturating_add);
    [(buckets * WAYS) as i64, held as i64, n(COPIES_MADE), answers]
}

/// How many buckets the region holds (after its header).
fn bucket_count(region: &[AtomicU64]) -> usize {
    region.len().saturating_sub(HEADER_WORDS) / BUCKET_WORDS
}

/// The region's bucket `index`.
fn bucket_at(region: &'static [AtomicU64], index: usize) -> Bucket<'static> {
    let start = HEADER_WORDS + index * BUCKET_WORDS;
    Bucket { words: &region[start..start + BUCKET_WORDS] }
}

/// Which of the 2 * WAYS slots of a key's two full buckets the next copy replaces: rotating
/// per backend.
fn victim() -> usize {
    thread_local!(static NEXT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) });
    NEXT.with(|n| {
        let v = n.get();
        n.set(v.wrapping_add(1));
        v % (2 * WAYS)
    })
}

/// The key, cache type and value lengths in a VERSION word.
fn lens(version: u64) -> (usize, usize, usize) {
    ((version >> 32 & 0xff) as usize, (version >> 40 & 0xff) as usize, (version >> 48 & 0xff) as usize)
}

impl Copy {
    /// A copy to read into (`Shared::copy`).
    pub fn empty() -> Copy {
        Copy { meta: [0; PAYLOAD], payload: [0; PAYLOAD_BYTES] }
    }

    fn key(&self) -> &[u8] {
        let (k, _, _) = lens(self.meta[VERSION]);
        &self.payload[..k]
    }

    pub fn cache_type(&self) -> &[u8] {
        let (k, t, _) = lens(self.meta[VERSION]);
        &self.payload[k..k + t]
    }

    pub fn value(&self) -> &[u8] {
        let (k, t, v) = lens(self.meta[VERSION]);
        &self.payload[k + t..k + t + v]
    }

    pub fn xmin(&self) -> u32 {
        self.meta[VERSION] as u32
    }

    pub fn expires_at(&self) -> i64 {
        self.meta[EXPIRES] as i64
    }

    pub fn visibility(&self) -> u8 {
        (self.meta[VERSION] >> 56) as u8 & !(HAS_OWNER as u8)
    }

    pub fn owner(&self) -> Option<[u8; 16]> {
        ((self.meta[VERSION] >> 56) & HAS_OWNER != 0).then(|| {
            let mut owner = [0u8; 16];
            owner[..8].copy_from_slice(&self.meta[OWNER].to_ne_bytes());
            owner[8..].copy_from_slice(&self.meta[OWNER + 1].to_ne_bytes());
            owner
        })
    }
}
