//! easymo: the data platform of a WhatsApp mobility and payments service as one extension.
//!
//! The schema lives in `sql/`, one file per domain, pulled into the install script here in
//! dependency order; the native hot paths live in one Rust module per domain.

#![deny(unsafe_op_in_unsafe_fn)]

use pgrx::prelude::*;

::pgrx::pg_module_magic!(name, version);

mod cache;
mod contract;
mod coordination;
mod error;
mod gucs;
mod ids;
mod location;
mod money;
mod operations;
mod postgres;
mod queues;
mod session;
mod stats;
mod wallets;

/// Runs once per backend, when the library is first loaded.
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    gucs::init();
    cache::init();
    postgres::relation::init();
    postgres::wait::init();
    stats::init();
    coordination::init();
    operations::worker::init();
}

extension_sql_file!("../sql/bootstrap.sql", name = "bootstrap", bootstrap);
extension_sql_file!("../sql/observability.sql", name = "observability", requires = ["bootstrap"]);
extension_sql_file!("../sql/whatsapp.sql", name = "whatsapp", requires = ["bootstrap"]);
extension_sql_file!(
    "../sql/money.sql",
    name = "money",
    requires = ["bootstrap", money::create_transaction, money::check_currency_code]
);
// is_feature_enabled, get_cache and set_cache are called without pgrx's wrapper
// (src/postgres/fcall.rs), so they are declared here as pgrx would declare them.
extension_sql!(
    r#"
CREATE FUNCTION "is_feature_enabled"(
	"p_flag_key" TEXT,
	"p_user_id" uuid DEFAULT NULL,
	"p_environment" TEXT DEFAULT 'production',
	"p_context" jsonb DEFAULT '{}'
) RETURNS bool
VOLATILE PARALLEL RESTRICTED
LANGUAGE c
AS 'MODULE_PATHNAME', 'is_feature_enabled_wrapper';
"#,
    name = "is_feature_enabled",
    requires = ["bootstrap"]
);
extension_sql_file!(
    "../sql/coordination.sql",
    name = "coordination",
    requires = [
        "bootstrap",
        coordination::check_flag_rules,
        coordination::cache::_feature_flags_changed,
        "is_feature_enabled",
        coordination::get_feature_variant,
        coordination::feature_flag_exposures
    ]
);
extension_sql_file!("../sql/events.sql", name = "events", requires = ["bootstrap", queues::_queue_wake]);
extension_sql_file!(
    "../sql/location.sql",
    name = "location",
    requires = ["bootstrap", location::find_nearby_locations, location::cache_route, location::cached_route_id]
);
extension_sql_file!("../sql/analytics.sql", name = "analytics", requires = ["bootstrap"]);
extension_sql_file!(
    "../sql/queues.sql",
    name = "queues",
    requires = [
        "whatsapp",
        "events",
        queues::enqueue_message,
        queues::enqueue_messages,
        queues::read_messages,
        queues::ack_receipt,
        queues::ack_receipts,
        queues::nack_receipt,
        queues::nack_receipts,
        queues::extend_receipt
    ]
);
extension_sql!(
    r#"
CREATE FUNCTION "get_cache"(
	"p_key" TEXT
) RETURNS jsonb
STABLE PARALLEL RESTRICTED
LANGUAGE c
AS 'MODULE_PATHNAME', 'get_cache_wrapper';
"#,
    name = "get_cache",
    requires = ["bootstrap"]
);
extension_sql!(
    r#"
CREATE FUNCTION "set_cache"(
	"p_key" TEXT,
	"p_value" jsonb,
	"p_ttl_seconds" INT DEFAULT 3600,
	"p_cache_type" TEXT DEFAULT 'general',
	"p_tags" text[] DEFAULT '{}',
	"p_visibility" TEXT DEFAULT 'service',
	"p_owner_user_id" uuid DEFAULT NULL
) RETURNS timestamp with time zone
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'set_cache_entry_wrapper';
"#,
    name = "set_cache",
    requires = ["bootstrap"]
);
extension_sql_file!(
    "../sql/cache.sql",
    name = "cache",
    requires = [
        "bootstrap",
        "get_cache",
        "set_cache",
        cache::delete_cache,
        cache::invalidate_cache_by_tag,
        cache::cleanup_expired_cache,
        cache::cache_hit_counters,
        cache::_cache_entry_changed,
        cache::cache_shared_stats,
        stats::flush_stats
    ]
);
extension_sql_file!(
    "../sql/wallets.sql",
    name = "wallets",
    requires = [
        "money",
        wallets::wallet_transfer,
        wallets::wallet_transfer_batch,
        wallets::post_wallet_hold,
        wallets::void_wallet_hold,
        wallets::expire_wallet_holds,
        wallets::fold_wallet_credits,
        wallets::fold_all_wallet_credits
    ]
);
extension_sql_file!("../sql/notifications.sql", name = "notifications", requires = ["whatsapp", "queues"]);
extension_sql_file!("../sql/monitoring.sql", name = "monitoring", requires = ["notifications", "wallets", "cache"]);
extension_sql_file!("../sql/operations.sql", name = "operations", requires = ["bootstrap"]);
extension_sql_file!("../sql/privacy.sql", name = "privacy", requires = ["operations", "monitoring"]);
extension_sql_file!("../sql/contract.sql", name = "contract", requires = ["bootstrap", contract::contract_values]);
extension_sql_file!("../sql/security.sql", name = "security", finalize);

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn install_makes_default_partitions_only() {
        // Month partitions are the data's: the first ensure_partitions() makes them (5 tables x
        // this month and three ahead), outside the extension.
        let months = || {
            Spi::get_one::<i64>(
                "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
                 WHERE c.relname ~ '_p[0-9]{4}_[0-9]{2}$'",
            )
            .unwrap()
            .unwrap()
        };
        assert_eq!(months(), 0);
        assert_eq!(Spi::get_one::<i32>("SELECT ensure_partitions(3)").unwrap(), Some(20));
        assert_eq!(months(), 20);
        let members = Spi::get_one::<i64>(
            "SELECT count(*) FROM pg_depend d JOIN pg_class c ON c.oid = d.objid \
             WHERE d.deptype = 'e' AND d.classid = 'pg_class'::regclass AND c.relname ~ '_p[0-9]{4}_[0-9]{2}$'",
        )
        .unwrap()
        .unwrap();
        assert_eq!(members, 0);
    }
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
