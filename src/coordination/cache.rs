//! The per-backend cache of flag definitions, so that an evaluation in the steady state runs no
//! SQL, and its invalidation, so that a committed change is seen by the very next call in every
//! session.
//!
//! A statement-level trigger on `feature_flags` queues a relcache invalidation of the table;
//! Postgres delivers it to every backend once the writing transaction commits (and to the writer
//! itself at its next command). Our relcache callback bumps GENERATION, and a cache is used only
//! while the generation it was loaded under is current.
//!
//! A cache must never hold data older than an invalidation it has already consumed. So the
//! generation is read *before* loading, and the load reads with a snapshot taken *after*: any
//! commit it misses sends an invalidation that has not arrived yet. That fresh snapshot can be
//! had only in READ COMMITTED outside parallel mode; elsewhere the cache is loaded with the
//! transaction's snapshot and kept only until the transaction ends.

#![forbid(unsafe_code)]

use super::rules::{compile_conditions, compile_variants, Environment, Flag, Strategy};
use crate::postgres::catalog::{ext_table, ExtTable};
use crate::postgres::identity::as_owner;
use crate::postgres::snapshot::with_latest_snapshot;
use crate::postgres::{backend, inval};
use crate::stats::{self, Kind};
use pgrx::prelude::*;
use pgrx::{register_xact_callback, PgXactCallbackEvent};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use xxhash_rust::xxh3::Xxh3DefaultBuilder;

static GENERATION: AtomicU64 = AtomicU64::new(1);
/// The oid of feature_flags as of the last load; 0 before.
static FLAGS_RELID: AtomicU32 = AtomicU32::new(0);

/// A key's definitions: one for `all` and one per specific environment; and how often each
/// environment's evaluations answered on and off without a variant, counted here so that an
/// evaluation costs no hash lookup for its count (stats::add counts the variants).
#[derive(Default)]
struct Slots {
    all: Option<Flag>,
    specific: [Option<Flag>; 3],
    on: [Cell<u64>; 3],
    off: [Cell<u64>; 3],
}

fn env_index(env: Environment) -> usize {
    match env {
        Environment::Development => 0,
        Environment::Staging => 1,
        Environment::Production => 2,
    }
}

#[derive(Default)]
pub struct FlagSet {
    /// Each key's definitions, found through `index`.
    keys: Vec<(String, Slots)>,
    index: HashMap<String, usize, Xxh3DefaultBuilder>,
    /// The place in `keys` of the key looked up last: evaluations come in runs of one key (a
    /// statement over many users), and one comparison is cheaper than hashing the key (perf:
    /// the hash and the lookup were a tenth of an evaluation over 1M users).
    last: Cell<usize>,
    /// Evaluations of keys that name no flag, per environment (counted under the key '').
    unknown: [Cell<u64>; 3],
    /// Where evaluations are logged; looked up with the flags, not on every logged call.
    pub evaluations: Option<ExtTable>,
}

impl FlagSet {
    /// The flag that applies to `key` in `env`: the environment's own row, else the `all` row.
    /// One comparison (the key looked up last) or one hash lookup finds both the flag and where
    /// its evaluation is counted.
    pub fn lookup(&self, key: &str, env: Environment) -> Lookup<'_> {
        let i = env_index(env);
        let found = match self.keys.get(self.last.get()) {
            Some((k, slots)) if k == key => Some(slots),
            _ => self.index.get(key).map(|&n| {
                self.last.set(n);
                &self.keys[n].1
            }),
        };
        match found {
            Some(slots) => {
                Lookup { flag: slots.specific[i].as_ref().or(slots.all.as_ref()), on: &slots.on[i], off: &slots.off[i] }
            }
            None => Lookup { flag: None, on: &self.unknown[i], off: &self.unknown[i] },
        }
    }

    /// Moves the counts kept here into `into`.
    fn drain(&self, into: &mut dyn FnMut(Kind, &[&str], u64)) {
        let envs = [Environment::Development, Environment::Staging, Environment::Production];
        for (i, env) in envs.iter().enumerate() {
            let n = self.unknown[i].replace(0);
            if n > 0 {
                into(Kind::FlagOff, &[UNKNOWN_FLAG, env.as_str(), ""], n);
            }
        }
        for (key, slots) in &self.keys {
            for (i, env) in envs.iter().enumerate() {
                for (cell, kind) in [(&slots.on[i], Kind::FlagOn), (&slots.off[i], Kind::FlagOff)] {
                    let n = cell.replace(0);
                    if n > 0 {
                        into(kind, &[key, env.as_str(), ""], n);
                    }
                }
            }
        }
    }
}

/// The key under which evaluations of keys that name no flag are counted (flag keys are 1 to 255
/// characters, so no flag has it): counting each unknown key would let any caller grow the
/// counters without bound.
pub const UNKNOWN_FLAG: &str = "";

/// The stats drain (registered in _PG_init): the cached set's counts.
pub fn drain_exposures(into: &mut dyn FnMut(Kind, &[&str], u64)) {
    let set = CACHE.with_borrow(|c| c.as_ref().map(|c| Rc::clone(&c.flags)));
    if let Some(set) = set {
        set.drain(into);
    }
}

/// A flag as found for one evaluation, with its counters.
pub struct Lookup<'a> {
    pub flag: Option<&'a Flag>,
    on: &'a Cell<u64>,
    off: &'a Cell<u64>,
}

impl Lookup<'_> {
    /// Counts the evaluation, which answered `on` without a variant.
    pub fn count(&self, on: bool) {
        let cell = if on { self.on } else { self.off };
        cell.set(cell.get() + 1);
    }
}

struct Cached {
    generation: u64,
    flags: Rc<FlagSet>,
}

thread_local! {
    static CACHE: RefCell<Option<Cached>> = const { RefCell::new(None) };
}

/// Runs inside invalidation processing: it must not fail and must not touch the database.
fn on_relcache_invalidation(relid: pg_sys::Oid) {
    // InvalidOid means "every relation" (e.g. after a shared-invalidation queue overflow).
    if relid == pg_sys::Oid::INVALID || u32::from(relid) == FLAGS_RELID.load(Ordering::Relaxed) {
        GENERATION.fetch_add(1, Ordering::Relaxed);
    }
}

/// Called once per backend, from _PG_init.
pub fn register_invalidation_callback() {
    inval::on_relcache_invalidation(on_relcache_invalidation);
}

/// Statement-level trigger on feature_flags: every insert, update, delete or truncate
/// invalidates every session's cache when (and only if) the transaction commits.
#[pg_trigger]
fn _feature_flags_changed<'a>(
    trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, pgrx::AllocatedByPostgres>>, pgrx::PgTriggerError> {
    let relid = trigger.relation()?.oid();
    inval::invalidate_relcache(relid);
    Ok(None)
}

/// The current flag definitions, loading them when the cache is missing or stale.
pub fn flags() -> Rc<FlagSet> {
    // Postgres reads the invalidation queue only at transaction start and when it takes a lock;
    // a statement that evaluates flags may take none. Read it now, so a change whose COMMIT has
    // returned is seen by this very call. With nothing queued this is one unlocked flag test.
    inval::accept_invalidation_messages();
    let generation = GENERATION.load(Ordering::Relaxed);
    if let Some(flags) =
        CACHE.with_borrow(|c| c.as_ref().filter(|c| c.generation == generation).map(|c| Rc::clone(&c.flags)))
    {
        return flags;
    }
    let flags = Rc::new(load());
    // The counts of the set being replaced are kept.
    if let Some(old) = CACHE.replace(Some(Cached { generation, flags: Rc::clone(&flags) })) {
        old.flags.drain(&mut |kind, parts, n| stats::add(kind, parts, n));
    }
    flags
}

fn load() -> FlagSet {
    let fresh_snapshot_possible = !backend::in_parallel_mode() && !backend::repeatable_read();
    if !fresh_snapshot_possible {
        // This load may see the transaction's older snapshot: drop it when the transaction ends.
        for event in [PgXactCallbackEvent::Commit, PgXactCallbackEvent::Abort] {
            register_xact_callback(event, || {
                GENERATION.fetch_add(1, Ordering::Relaxed);
            });
        }
    }

    let table = ext_table("feature_flags");
    FLAGS_RELID.store(u32::from(table.relid), Ordering::Relaxed);
    // Cast to the types read here, so a column a superuser retyped still reads (or fails with
    // a clear cast error); a NULL where the table says NOT NULL reads as the safe answer (a
    // flag without a key or environment cannot be asked for; not enabled; no rules: an
    // evaluation that needs them fails with 22023 naming the flag).
    let query = format!(
        "SELECT id::pg_catalog.uuid, key::pg_catalog.text, environment::pg_catalog.text, enabled::pg_catalog.bool, \
                rollout_strategy::pg_catalog.text, rollout_percentage::pg_catalog.float8, \
                target_users::pg_catalog.uuid[], conditions::pg_catalog.jsonb, variants::pg_catalog.jsonb FROM {}",
        table.qualified
    );
    let read = || {
        as_owner(table.owner, || {
            Spi::connect(|client| {
                let mut set = FlagSet::default();
                for row in client.select(&query, None, &[])? {
                    let (Some(key), Some(environment)) = (row.get::<String>(2)?, row.get::<String>(3)?) else {
                        continue;
                    };
                    let strategy: String = row.get(5)?.unwrap_or_default();
                    let percentage: f64 = row.get(6)?.unwrap_or(0.0);
                    let mut target_users: Vec<[u8; 16]> = row
                        .get::<Vec<Option<pgrx::Uuid>>>(7)?
                        .unwrap_or_default()
                        .into_iter()
                        .flatten()
                        .map(|u| *u.as_bytes())
                        .collect();
                    target_users.sort_unstable();
                    let conditions = row.get::<pgrx::JsonB>(8)?.map_or(serde_json::Value::Null, |j| j.0);
                    let variants = row.get::<pgrx::JsonB>(9)?.map_or(serde_json::Value::Null, |j| j.0);
                    let flag = Flag {
                        id: row.get::<pgrx::Uuid>(1)?.map_or([0; 16], |u| *u.as_bytes()),
                        enabled: row.get(4)?.unwrap_or(false),
                        // The table's CHECK constraints keep these in range.
                        strategy: Strategy::parse(&strategy).unwrap_or(Strategy::None),
                        percentage_bp: (percentage.clamp(0.0, 100.0) * 100.0).round() as u32,
                        target_users,
                        conditions: compile_conditions(&conditions),
                        variants: compile_variants(&variants),
                    };
                    let n = match set.index.get(&key) {
                        Some(&n) => n,
                        None => {
                            set.index.insert(key.clone(), set.keys.len());
                            set.keys.push((key, Slots::default()));
                            set.keys.len() - 1
                        }
                    };
                    let slots = &mut set.keys[n].1;
                    match Environment::parse(&environment) {
                        Ok(env) => slots.specific[env_index(env)] = Some(flag),
                        Err(_) => slots.all = Some(flag),
                    }
                }
                Ok::<_, pgrx::spi::Error>(set)
            })
        })
    };
    // A snapshot of everything committed now, when the isolation level allows one.
    let loaded = if fresh_snapshot_possible { with_latest_snapshot(read) } else { read() };
    let mut set = loaded.unwrap_or_else(|e| error!("loading feature flags: {e}"));
    set.evaluations = Some(ext_table("feature_flag_evaluations"));
    set
}
