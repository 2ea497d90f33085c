//! Coordination: feature flags, evaluated natively from a per-backend cache (the service registry
//! itself is plain SQL, in sql/coordination.sql).

#![forbid(unsafe_code)]

pub mod cache;
pub mod rules;

use crate::error::{raise, required, ContractError, OrRaise};
use crate::gucs;
use crate::postgres::backend;
use crate::postgres::datum::RawJsonb;
use crate::postgres::fcall;
use crate::postgres::identity::as_owner;
use crate::postgres::relation::{self, TableSpec};
use crate::postgres::{caller_is_service, in_subtransaction, srf};
use crate::session::request_user_id;
use crate::stats::{self, Kind};
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use rules::{Environment, Flag};
use serde_json::Value;
use std::cell::{Cell, OnceCell};
use xxhash_rust::xxh3::xxh3_64;

/// Called from _PG_init (the settings are in src/gucs.rs).
pub fn init() {
    cache::register_invalidation_callback();
    stats::register_drain(cache::drain_exposures);
}

/// A call's arguments, checked.
struct Call<'a> {
    key: &'a str,
    user: Option<[u8; 16]>,
    env: Environment,
}

fn check_call<'a>(
    key: Option<&'a str>,
    user: Option<pgrx::Uuid>,
    env: Option<&str>,
) -> Result<Call<'a>, ContractError> {
    Ok(Call {
        key: required(key, "p_flag_key")?,
        user: user.map(|u| *u.as_bytes()),
        env: Environment::parse(required(env, "p_environment")?)?,
    })
}

/// The user an evaluation is for. Service callers (service_role, superusers, the table owner)
/// may evaluate for anyone; anyone else only for themselves: `p_user_id` defaults to
/// request_user_id() and must equal it (42501), so an end user cannot learn another user's
/// targeting.
fn evaluated_user(call: &Call, flags: &cache::FlagSet) -> Option<[u8; 16]> {
    let owner = flags.evaluations.as_ref().map_or(pg_sys::Oid::INVALID, |t| t.owner);
    if caller_is_service(owner) {
        return call.user;
    }
    let me = request_user_id().map(|u| *u.as_bytes());
    match call.user {
        None => me,
        Some(u) if Some(u) == me => me,
        Some(u) => raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!(
                "p_user_id: {} may evaluate feature flags only for its own user (request_user_id() is {}), got {}",
                backend::role_name(backend::current_user()),
                me.map_or("NULL".to_owned(), |m| uuid::Uuid::from_bytes(m).to_string()),
                uuid::Uuid::from_bytes(u)
            ),
        ),
    }
}

/// Whether the flag `p_flag_key` is on for `p_user_id` in `p_environment` (see the contract,
/// "Coordination"). Unknown and disabled flags are off. Volatile: it may write the evaluation
/// log (easymo.flag_evaluation_log), where a write is allowed. Called by Postgres through
/// src/postgres/fcall.rs (arguments read straight from the call: this is the call measured
/// against a bare SELECT 1), declared in src/lib.rs.
pub fn is_feature_enabled(args: &fcall::Args) -> bool {
    let p_flag_key = args.text(0, "p_flag_key");
    let p_user_id = args.uuid(1);
    let p_environment = args.text(2, "p_environment");
    let p_context = args.jsonb(3);
    let mut call = check_call(p_flag_key, p_user_id, p_environment).or_raise();
    if let Some(ctx) = &p_context {
        ctx.check_object("p_context").or_raise();
    }
    let flags = cache::flags();
    call.user = evaluated_user(&call, &flags);
    let found = flags.lookup(call.key, call.env);
    let flag = found.flag;
    let context = OnceCell::new();
    let (on, reason) = match flag {
        None => (false, "unknown_flag"),
        Some(flag) => flag
            .evaluate(call.key, call.user.as_ref(), || {
                // The context is read only when a condition needs it.
                if context.get().is_none() {
                    let value = match &p_context {
                        Some(ctx) => ctx.to_value("p_context")?,
                        None => Value::Object(Default::default()),
                    };
                    let _ = context.set(value);
                }
                Ok(context.get().expect("set above"))
            })
            .or_raise(),
    };
    found.count(on);
    stats::tick();
    log_evaluation(&flags, &call, flag, on, None, reason, p_context.as_ref());
    on
}

/// The variant of `p_flag_key` that `p_user_id` gets, or NULL when the flag is off for them (or
/// defines no variants). Condition flags are evaluated with an empty context.
#[pg_extern(volatile, parallel_restricted)]
fn get_feature_variant(
    p_flag_key: Option<&str>,
    p_user_id: Option<pgrx::Uuid>,
    p_environment: default!(Option<&str>, "'production'"),
) -> Option<String> {
    let mut call = check_call(p_flag_key, p_user_id, p_environment).or_raise();
    let flags = cache::flags();
    call.user = evaluated_user(&call, &flags);
    let user = required(call.user, "p_user_id").or_raise();
    let found = flags.lookup(call.key, call.env);
    let flag = found.flag;
    let empty = Value::Object(Default::default());
    let (on, reason) = match flag {
        None => (false, "unknown_flag"),
        Some(flag) => flag.evaluate(call.key, Some(&user), || Ok(&empty)).or_raise(),
    };
    let variant = match (on, flag) {
        (true, Some(flag)) => flag.variant(call.key, &user).or_raise().map(str::to_owned),
        _ => None,
    };
    match &variant {
        Some(v) => stats::add(Kind::FlagOn, &[call.key, call.env.as_str(), v], 1),
        None => {
            found.count(on);
            stats::tick();
        }
    }
    log_evaluation(&flags, &call, flag, on, variant.as_deref(), reason, None);
    variant
}

/// Found once per backend (again after a change to it).
static EXPOSURE_COUNTERS: TableSpec = TableSpec { name: c"feature_flag_exposure_counters", columns: &[] };

/// Evaluations per flag key, environment, variant and answer since counting began (shared
/// memory or feature_flag_exposure_counters, plus this session's counts not yet handed on): the
/// exposure counts of Unleash's metrics. flag_key NULL counts keys that name no flag; variant
/// NULL evaluations without a variant.
// (The row type must be spelled out here: pgrx reads the column names from the signature.)
#[allow(clippy::type_complexity)]
#[pg_extern(stable, parallel_restricted)]
fn feature_flag_exposures() -> srf::TableIterator<
    'static,
    (
        name!(flag_key, Option<String>),
        name!(environment, String),
        name!(variant, Option<String>),
        name!(enabled, bool),
        name!(evaluations, i64),
    ),
> {
    let mut totals: std::collections::BTreeMap<(String, String, String, bool), i64> = Default::default();
    for (key, n) in stats::totals(&[Kind::FlagOn, Kind::FlagOff]) {
        let parts = stats::split_key(&key[1..]);
        let [flag, env, variant] =
            <[String; 3]>::try_from(parts).unwrap_or_else(|p| [p.join(" "), String::new(), String::new()]);
        *totals.entry((flag, env, variant, key[0] == Kind::FlagOn as u8)).or_default() +=
            i64::try_from(n).unwrap_or(i64::MAX);
    }
    let table = relation::table(&EXPOSURE_COUNTERS).ext.clone();
    let rows: Vec<(String, String, String, bool, i64)> = as_owner(table.owner, || {
        Spi::connect(|client| {
            client
                .select(
                    &format!(
                        "SELECT flag_key::pg_catalog.text, environment::pg_catalog.text, variant::pg_catalog.text, \
                                enabled::pg_catalog.bool, evaluations::pg_catalog.int8 FROM {}",
                        table.qualified
                    ),
                    None,
                    &[],
                )?
                .map(|r| {
                    Ok((
                        r.get(1)?.unwrap_or_default(),
                        r.get(2)?.unwrap_or_default(),
                        r.get(3)?.unwrap_or_default(),
                        r.get(4)?.unwrap_or(false),
                        r.get(5)?.unwrap_or(0),
                    ))
                })
                .collect::<Result<Vec<_>, pgrx::spi::Error>>()
        })
    })
    .unwrap_or_else(|e| error!("reading feature flag exposure counters: {e}"));
    for (flag, env, variant, on, n) in rows {
        *totals.entry((flag, env, variant, on)).or_default() += n;
    }
    let blank = |s: String| (!s.is_empty()).then_some(s);
    srf::TableIterator::new(
        totals.into_iter().map(move |((flag, env, variant, on), n)| (blank(flag), env, blank(variant), on, n)),
    )
}

/// CHECK constraint of feature_flags: conditions and variants must compile, so a malformed flag
/// is refused when written (22023, saying what is wrong) rather than failing every evaluation.
#[pg_extern(immutable, parallel_safe, name = "_check_flag_rules")]
fn check_flag_rules(p_conditions: RawJsonb, p_variants: RawJsonb) -> bool {
    let check = || -> Result<(), ContractError> {
        rules::compile_conditions(&p_conditions.to_value("conditions")?)
            .map_err(|e| ContractError::invalid("conditions", e))?;
        rules::compile_variants(&p_variants.to_value("variants")?)
            .map_err(|e| ContractError::invalid("variants", e))?;
        Ok(())
    };
    check().or_raise();
    true
}

thread_local! {
    static SAMPLE_COUNTER: Cell<u64> = const { Cell::new(0) };
}

/// A uniform draw in [0, 1) from a per-backend counter, for sampling.
fn draw() -> f64 {
    let n = SAMPLE_COUNTER.get().wrapping_add(1);
    SAMPLE_COUNTER.set(n);
    let seed = n ^ (u64::from(backend::pid() as u32) << 32);
    (xxh3_64(&seed.to_le_bytes()) >> 11) as f64 / (1u64 << 53) as f64
}

/// Writes one feature_flag_evaluations row when easymo.flag_evaluation_log asks for it, where a
/// write is possible (not in a read-only transaction, on a standby or in a parallel query). The
/// insert runs in a subtransaction: logging never makes an evaluation fail (a failure is a
/// WARNING). Keys longer than a flag key can be name no flag and are not logged.
fn log_evaluation(
    flags: &cache::FlagSet,
    call: &Call,
    flag: Option<&Flag>,
    result: bool,
    variant: Option<&str>,
    reason: &str,
    context: Option<&RawJsonb>,
) {
    let wanted = match gucs::FLAG_EVALUATION_LOG.get() {
        gucs::EvaluationLog::Off => false,
        gucs::EvaluationLog::All => true,
        gucs::EvaluationLog::Sample => draw() < gucs::FLAG_EVALUATION_SAMPLE_RATE.get(),
    };
    if !wanted || !backend::can_write() {
        return;
    }
    if call.key.chars().count() > MAX_FLAG_KEY_CHARS {
        return;
    }
    let table = flags.evaluations.as_ref().expect("loaded with the flags");
    let query = format!(
        "INSERT INTO {} (flag_key, flag_id, user_id, environment, result, variant, reason, context) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        table.qualified
    );
    let args = [
        call.key.into(),
        flag.map(|f| pgrx::Uuid::from_bytes(f.id)).into(),
        call.user.map(pgrx::Uuid::from_bytes).into(),
        call.env.as_str().into(),
        result.into(),
        variant.into(),
        reason.into(),
        context.map_or_else(DatumWithOid::null::<pgrx::JsonB>, RawJsonb::as_arg),
    ];
    let logged =
        in_subtransaction(std::panic::AssertUnwindSafe(|| as_owner(table.owner, || Spi::run_with_args(&query, &args))));
    match logged {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warning!("feature flag evaluation of {:?} not logged: {e}", call.key),
        Err(message) => warning!("feature flag evaluation of {:?} not logged: {message}", call.key),
    }
}

/// The longest flag key (feature_flags.key's CHECK).
pub const MAX_FLAG_KEY_CHARS: usize = 255;

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn evaluation_uses_the_cache_and_sees_committed_changes() {
        Spi::run("INSERT INTO feature_flags (key, name, enabled, rollout_strategy) VALUES ('t', 't', true, 'all')")
            .unwrap();
        assert_eq!(Spi::get_one::<bool>("SELECT is_feature_enabled('t')").unwrap(), Some(true));
        // Within the transaction, the trigger's invalidation is processed at the next command.
        Spi::run("UPDATE feature_flags SET enabled = false WHERE key = 't'").unwrap();
        assert_eq!(Spi::get_one::<bool>("SELECT is_feature_enabled('t')").unwrap(), Some(false));
    }

    #[pg_test(error = "p_environment: must be development, staging or production, got \"prod\"")]
    fn unknown_environment_is_refused() {
        Spi::get_one::<bool>("SELECT is_feature_enabled('t', NULL, 'prod')").unwrap();
    }
}
