//! Every setting (GUC) of easymo, defined in one place (the README's Settings table lists the
//! same). All are `easymo.*`; the prefix is reserved, so a misspelt one is an error.

#![forbid(unsafe_code)]

use crate::postgres::backend;
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::prelude::*;
use std::ffi::CString;

#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum EvaluationLog {
    #[name = c"off"]
    Off,
    #[name = c"sample"]
    Sample,
    #[name = c"all"]
    All,
}

/// Which flag evaluations are written to feature_flag_evaluations.
pub static FLAG_EVALUATION_LOG: GucSetting<EvaluationLog> = GucSetting::<EvaluationLog>::new(EvaluationLog::Off);
/// Share of evaluations logged with `sample`.
pub static FLAG_EVALUATION_SAMPLE_RATE: GucSetting<f64> = GucSetting::<f64>::new(0.01);
/// Heartbeat age after which service_health_overview calls a service stale. The view reads the
/// setting by name; its fallback when the library is not loaded is this default, written there.
pub static SERVICE_STALE_SECONDS: GucSetting<i32> = GucSetting::<i32>::new(SERVICE_STALE_SECONDS_DEFAULT);
pub const SERVICE_STALE_SECONDS_DEFAULT: i32 = 120;
/// The window of a notification dedupe key. send_notification reads the setting by name; its
/// fallback when the library is not loaded is this default, written there.
pub static NOTIFICATION_DEDUPE_SECONDS: GucSetting<i32> = GucSetting::<i32>::new(NOTIFICATION_DEDUPE_SECONDS_DEFAULT);
pub const NOTIFICATION_DEDUPE_SECONDS_DEFAULT: i32 = 86_400;
/// Which environment this database serves, for the alert rules (alert_rules.environment). SQL
/// reads it by name; its fallback when the library is not loaded is this default, written there.
pub static ENVIRONMENT: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(ENVIRONMENT_DEFAULT));
pub const ENVIRONMENT_DEFAULT: &std::ffi::CStr = c"production";
/// How often a session hands its cache and flag counts on (src/stats.rs).
pub static STATS_FLUSH_INTERVAL: GucSetting<i32> = GucSetting::<i32>::new(10);
/// Seconds between two runs of the maintenance worker; 0 pauses it.
pub static MAINTENANCE_INTERVAL: GucSetting<i32> = GucSetting::<i32>::new(300);
/// The databases the maintenance worker runs in (preloaded only).
pub static MAINTENANCE_DATABASES: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
/// After how long a stopped maintenance worker is started again (preloaded only).
pub static MAINTENANCE_RESTART_INTERVAL: GucSetting<i32> = GucSetting::<i32>::new(60);
/// Shared memory for copies of cache entries that get_cache answers from (preloaded only).
pub static CACHE_SHARED_MEMORY: GucSetting<i32> = GucSetting::<i32>::new(32);

/// Defines every setting; called first from _PG_init.
pub fn init() {
    GucRegistry::define_enum_guc(
        c"easymo.flag_evaluation_log",
        c"Which feature flag evaluations are written to feature_flag_evaluations.",
        c"off: none; sample: a random share (easymo.flag_evaluation_sample_rate); all: every call. Never written in a read-only transaction, on a standby or inside a parallel query.",
        &FLAG_EVALUATION_LOG,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_float_guc(
        c"easymo.flag_evaluation_sample_rate",
        c"Share of evaluations logged when easymo.flag_evaluation_log = sample.",
        c"Between 0 and 1.",
        &FLAG_EVALUATION_SAMPLE_RATE,
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
    GucRegistry::define_int_guc(
        c"easymo.notification_dedupe_seconds",
        c"Seconds during which the same notification dedupe key returns the first notification.",
        c"Read by send_notification when the key is first used; a key whose window passed starts a new one.",
        &NOTIFICATION_DEDUPE_SECONDS,
        1,
        366 * 24 * 3600,
        GucContext::Userset,
        // No unit: SQL reads the plain number of seconds with current_setting.
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"easymo.environment",
        c"The environment this database serves (production, staging, ...), for the alert rules.",
        c"current_alerts() uses the alert_rules rows of this environment where there are any, else those for all.",
        &ENVIRONMENT,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"easymo.stats_flush_interval",
        c"Seconds after which a session hands its cache and feature flag counts on.",
        c"Each session counts cache hits and misses and flag exposures in its own memory. With easymo preloaded it adds them to shared memory every second; otherwise, every this many seconds (and when it ends), a short-lived background worker adds them to cache_stat_counters and feature_flag_exposure_counters in a transaction of its own. Reads never write in the caller's transaction.",
        &STATS_FLUSH_INTERVAL,
        1,
        24 * 3600,
        GucContext::Userset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"easymo.maintenance_interval",
        c"Seconds between two run_maintenance() calls of the easymo maintenance worker; 0 pauses it.",
        c"Read on reload (SIGHUP). Only used when easymo is in shared_preload_libraries.",
        &MAINTENANCE_INTERVAL,
        0,
        7 * 24 * 3600,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    // A server-start setting can only be defined while the server starts (defining it in a
    // backend that loads the library later is FATAL): without preloading these do not exist.
    if backend::preloading() {
        GucRegistry::define_string_guc(
            c"easymo.maintenance_databases",
            c"Comma-separated databases in which the easymo maintenance worker runs run_maintenance().",
            c"One background worker per database, started with the server (a change needs a restart). Empty: no worker. Exists only when easymo is in shared_preload_libraries.",
            &MAINTENANCE_DATABASES,
            GucContext::Postmaster,
            GucFlags::default(),
        );
        GucRegistry::define_int_guc(
            c"easymo.maintenance_restart_interval",
            c"Seconds after which a stopped easymo maintenance worker is started again.",
            c"A worker stops on an error, when terminated (pg_terminate_backend) or when its database is dropped; the postmaster starts it again after this long (a change needs a restart). Exists only when easymo is in shared_preload_libraries.",
            &MAINTENANCE_RESTART_INTERVAL,
            1,
            24 * 3600,
            GucContext::Postmaster,
            GucFlags::UNIT_S,
        );
        GucRegistry::define_int_guc(
            c"easymo.cache_shared_memory",
            c"Shared memory for copies of cache entries that get_cache answers from without reading cache_entries; 0: none.",
            c"In 256-byte slots, 4 to a bucket, each key copied into one of its two buckets (the first with room); an entry whose key, cache type and value take over 216 bytes is not copied. Copies are exact: any change to an entry drops its copy, and get_cache checks each copy against the caller's snapshot and rights. A change needs a restart. Exists only when easymo is in shared_preload_libraries.",
            &CACHE_SHARED_MEMORY,
            0,
            64 * 1024,
            GucContext::Postmaster,
            GucFlags::UNIT_MB,
        );
    }
    backend::reserve_guc_prefix(c"easymo");
}
