//! Coordination: feature flags, evaluated natively from a per-backend cache (the service registry
//! itself is plain SQL, in sql/coordination.sql).

pub mod cache;
pub mod rules;

use crate::catalog::as_owner;
use crate::error::{required, ContractError, OrRaise};
use crate::raw::RawJsonb;
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use rules::{Environment, Flag};
use serde_json::Value;
use std::cell::{Cell, OnceCell};
use xxhash_rust::xxh3::xxh3_64;

#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum EvaluationLog {
    #[name = c"off"]
    Off,
    #[name = c"sample"]
    Sample,
    #[name = c"all"]
    All,
}

static EVALUATION_LOG: GucSetting<EvaluationLog> = GucSetting::<EvaluationLog>::new(EvaluationLog::Off);
static SAMPLE_RATE: GucSetting<f64> = GucSetting::<f64>::new(0.01);
static SERVICE_STALE_SECONDS: GucSetting<i32> = GucSetting::<i32>::new(120);

/// GUCs and the cache invalidation callback; called from _PG_init.
pub fn init() {
    GucRegistry::define_enum_guc(
        c"easymo.flag_evaluation_log",
        c"Which feature flag evaluations are written to feature_flag_evaluations.",
        c"off: none; sample: a random share (easymo.flag_evaluation_sample_rate); all: every call. Never written in a read-only transaction, on a standby or inside a parallel query.",
        &EVALUATION_LOG,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"easymo.flag_evaluation_sample_rate",
        c"Share of evaluations logged when easymo.flag_evaluation_log = sample.",
        c"Between 0 and 1.",
        &SAMPLE_RATE,
        0.0,
        1.0,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"easymo.service_stale_seconds",
        c"Seconds without a heartbeat after which service_health_overview calls a service stale.",
        c"Read by the service_health_overview view.",
        &SERVICE_STALE_SECONDS,
        1,
        7 * 24 * 3600,
        GucContext::Userset,
        GucFlags::default(),
    );
    cache::register_invalidation_callback();
}

/// A call's arguments, checked.
struct Call<'a> {
    key: &'a str,
    user: Option<[u8; 16]>,
    env: Environment,
}

fn check_call<'a>(key: Option<&'a str>, user: Option<pgrx::Uuid>, env: Option<&str>) -> Result<Call<'a>, ContractError> {
    Ok(Call {
        key: required(key, "p_flag_key")?,
        user: user.map(|u| *u.as_bytes()),
        env: Environment::parse(required(env, "p_environment")?)?,
    })
}

/// Whether the flag `p_flag_key` is on for `p_user_id` in `p_environment` (see the contract,
/// "Coordination"). Unknown and disabled flags are off.
#[pg_extern(stable, parallel_safe)]
fn is_feature_enabled(
    p_flag_key: Option<&str>,
    p_user_id: default!(Option<pgrx::Uuid>, "NULL"),
    p_environment: default!(Option<&str>, "'production'"),
    p_context: default!(Option<RawJsonb>, "'{}'"),
) -> bool {
    let call = check_call(p_flag_key, p_user_id, p_environment).or_raise();
    if let Some(ctx) = &p_context {
        ctx.check_object("p_context").or_raise();
    }
    let flags = cache::flags();
    let flag = flags.lookup(call.key, call.env);
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
    log_evaluation(&flags, &call, flag, on, None, reason, p_context.as_ref());
    on
}

/// The variant of `p_flag_key` that `p_user_id` gets, or NULL when the flag is off for them (or
/// defines no variants). Condition flags are evaluated with an empty context.
#[pg_extern(stable, parallel_safe)]
fn get_feature_variant(
    p_flag_key: Option<&str>,
    p_user_id: Option<pgrx::Uuid>,
    p_environment: default!(Option<&str>, "'production'"),
) -> Option<String> {
    let call = check_call(p_flag_key, p_user_id, p_environment).or_raise();
    let user = required(call.user, "p_user_id").or_raise();
    let flags = cache::flags();
    let flag = flags.lookup(call.key, call.env);
    let empty = Value::Object(Default::default());
    let (on, reason) = match flag {
        None => (false, "unknown_flag"),
        Some(flag) => flag.evaluate(call.key, Some(&user), || Ok(&empty)).or_raise(),
    };
    let variant = match (on, flag) {
        (true, Some(flag)) => flag.variant(call.key, &user).or_raise().map(str::to_owned),
        _ => None,
    };
    log_evaluation(&flags, &call, flag, on, variant.as_deref(), reason, None);
    variant
}

/// CHECK constraint of feature_flags: conditions and variants must compile, so a malformed flag
/// is refused when written (22023, saying what is wrong) rather than failing every evaluation.
#[pg_extern(immutable, parallel_safe, name = "_check_flag_rules")]
fn check_flag_rules(p_conditions: RawJsonb, p_variants: RawJsonb) -> bool {
    let check = || -> Result<(), ContractError> {
        rules::compile_conditions(&p_conditions.to_value("conditions")?).map_err(|e| ContractError::invalid("conditions", e))?;
        rules::compile_variants(&p_variants.to_value("variants")?).map_err(|e| ContractError::invalid("variants", e))?;
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
    // SAFETY: MyProcPid is a plain backend global.
    let seed = n ^ (u64::from(unsafe { pg_sys::MyProcPid } as u32) << 32);
    (xxh3_64(&seed.to_le_bytes()) >> 11) as f64 / (1u64 << 53) as f64
}

/// Writes one feature_flag_evaluations row when easymo.flag_evaluation_log asks for it, and
/// silently not where no write is possible (read-only transaction, standby, parallel query).
fn log_evaluation(
    flags: &cache::FlagSet,
    call: &Call,
    flag: Option<&Flag>,
    result: bool,
    variant: Option<&str>,
    reason: &str,
    context: Option<&RawJsonb>,
) {
    let wanted = match EVALUATION_LOG.get() {
        EvaluationLog::Off => false,
        EvaluationLog::All => true,
        EvaluationLog::Sample => draw() < SAMPLE_RATE.get(),
    };
    // SAFETY: reads of backend state.
    if !wanted || unsafe { pg_sys::XactReadOnly || pg_sys::RecoveryInProgress() || pg_sys::IsInParallelMode() } {
        return;
    }
    let table = flags.evaluations.as_ref().expect("loaded with the flags");
    let query = format!(
        "INSERT INTO {} (flag_key, flag_id, user_id, environment, result, variant, reason, context) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        table.qualified
    );
        as_owner(table.owner, || {
        Spi::run_with_args(
            &query,
            &[
                call.key.into(),
                flag.map(|f| pgrx::Uuid::from_bytes(f.id)).into(),
                call.user.map(pgrx::Uuid::from_bytes).into(),
                call.env.as_str().into(),
                result.into(),
                variant.into(),
                reason.into(),
                context.map_or_else(|| DatumWithOid::null::<pgrx::JsonB>(), RawJsonb::as_arg),
            ],
        )
    })
    .unwrap_or_else(|e| error!("logging a feature flag evaluation: {e}"));
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn evaluation_uses_the_cache_and_sees_committed_changes() {
        Spi::run("INSERT INTO feature_flags (key, name, enabled, rollout_strategy) VALUES ('t', 't', true, 'all')").unwrap();
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
