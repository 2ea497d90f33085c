//! The contract's lists and limits as the native code holds them, for the test that compares
//! them with the SQL side (tests/pg_regress/sql/contract_values.sql reads the CHECK constraints
//! and the helpers' checks from the catalog): a list kept in two places must say the same.

#![forbid(unsafe_code)]

use crate::error::Refusal;
use crate::postgres::srf;
use crate::{cache, coordination, gucs, location, money, wallets};
use pgrx::prelude::*;

/// One row per value of each list, and per limit (its number as text).
#[pg_extern(immutable, parallel_safe, name = "_contract_values")]
fn contract_values() -> srf::TableIterator<'static, (name!(list, String), name!(value, String))> {
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut list = |name: &str, values: &mut dyn Iterator<Item = String>| {
        rows.extend(values.map(|v| (name.to_owned(), v)));
    };
    list("transaction_types", &mut money::TYPES.iter().map(|s| s.to_string()));
    list("currencies", &mut money::CURRENCIES.iter().map(|s| s.to_string()));
    list("location_types", &mut location::LOCATION_TYPES.iter().map(|s| s.to_string()));
    list("environments", &mut coordination::rules::ENVIRONMENTS.iter().map(|s| s.to_string()));
    list("rollout_strategies", &mut coordination::rules::STRATEGIES.iter().map(|s| s.to_string()));
    list("cache_visibilities", &mut cache::VISIBILITIES.iter().map(|(n, _)| n.to_string()));
    list("wallet_account_kinds", &mut wallets::ACCOUNT_KINDS.iter().map(|s| s.to_string()));
    list("wallet_account_statuses", &mut wallets::ACCOUNT_STATUSES.iter().map(|s| s.to_string()));
    list("wallet_transfer_statuses", &mut wallets::TRANSFER_STATUSES.iter().map(|s| s.to_string()));
    list("refusal_sqlstates", &mut Refusal::ALL.iter().map(|r| String::from_utf8_lossy(r.sqlstate()).into_owned()));
    rows.push(("environment_default".to_owned(), gucs::ENVIRONMENT_DEFAULT.to_string_lossy().into_owned()));
    for (name, n) in [
        ("cache_key_max_bytes", cache::MAX_KEY_BYTES as i64),
        ("cache_type_max_chars", cache::MAX_CACHE_TYPE_CHARS as i64),
        ("cache_ttl_max_seconds", i64::from(cache::MAX_TTL_SECONDS)),
        ("flag_key_max_chars", coordination::MAX_FLAG_KEY_CHARS as i64),
        ("idempotency_key_max_chars", money::MAX_IDEMPOTENCY_KEY_CHARS as i64),
        ("correlation_id_max_chars", money::MAX_CORRELATION_ID_CHARS as i64),
        ("service_stale_seconds_default", i64::from(gucs::SERVICE_STALE_SECONDS_DEFAULT)),
        ("notification_dedupe_seconds_default", i64::from(gucs::NOTIFICATION_DEDUPE_SECONDS_DEFAULT)),
        ("wallet_hold_max_seconds", i64::from(wallets::MAX_HOLD_SECONDS)),
        ("wallet_batch_max_transfers", wallets::MAX_BATCH_TRANSFERS as i64),
    ] {
        rows.push((name.to_owned(), n.to_string()));
    }
    srf::TableIterator::new(rows)
}

#[cfg(test)]
mod tests {
    use crate::coordination::rules::{Environment, Strategy, ENVIRONMENTS, STRATEGIES};

    #[test]
    fn lists_match_what_is_parsed() {
        assert!(STRATEGIES.iter().all(|s| Strategy::parse(s).is_some()));
        assert!(ENVIRONMENTS.iter().all(|e| Environment::parse(e).map(|env| env.as_str() == *e).unwrap_or(false)));
    }
}
