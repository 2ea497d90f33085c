//! Money: `create_transaction`, idempotent across partitions and under any concurrency.
//!
//! Idempotency keys live in the unpartitioned `transaction_idempotency_keys` (a unique index on
//! the partitioned table would have to include created_at). A call with a key:
//!   1. looks the key up: found with the same user, type, amount and currency, it returns the
//!      first call's id and writes nothing; found with any of them different, 23505;
//!   2. otherwise inserts the key row as `ON CONFLICT DO NOTHING` does, and the transaction and
//!      its event only when the key row went in: of concurrent callers with one new key exactly
//!      one inserts it (the others wait on the unique index until it commits), and only that one
//!      writes the transaction and its event; the others find nothing inserted, read the
//!      winner's row and replay as in 1.
//!
//! In REPEATABLE READ, a loser that cannot see the winner's row gets 40001 and retries.
//!
//! The key lookup, the whole of a replay, reads the key table's primary key directly (no SPI,
//! no plan, no executor): a replay then costs little more than the call itself. A new key's
//! rows go through the native writer (`create_through_writer`) when it does what the statements
//! would; otherwise through one statement (data-modifying CTEs).

#![forbid(unsafe_code)]

use crate::error::{excerpt, raise, required, ContractError, OrRaise};
use crate::ids::new_v7;
use crate::postgres::backend;
use crate::postgres::catalog::{self, ext_table};
use crate::postgres::datum::timestamptz;
use crate::postgres::datum::{RawJsonb, RawNumeric, StoredNumeric};
use crate::postgres::plan::{prepared, Plan, PlanSlot};
use crate::postgres::relation::Table;
use crate::postgres::relation::{self, Column, TableSpec};
use crate::postgres::writer::Writes;
use crate::session::request_user_id;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use std::cell::RefCell;
use std::rc::Rc;

pub const TYPES: [&str; 7] = ["debit", "credit", "transfer", "payment", "refund", "fee", "commission"];

/// Active ISO 4217 alphabetic codes (funds and precious-metal units included; XTS and XXX,
/// "testing" and "no currency", left out). Sorted, for binary search.
pub const CURRENCIES: [&str; 177] = [
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BGN", "BHD", "BIF",
    "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF", "CHE", "CHF", "CHW", "CLF",
    "CLP", "CNY", "COP", "COU", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR",
    "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS",
    "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT",
    "LAK", "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR",
    "MWK", "MXN", "MXV", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP",
    "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE",
    "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS",
    "UAH", "UGX", "USD", "USN", "UYI", "UYU", "UYW", "UZS", "VED", "VES", "VND", "VUV", "WST", "XAF", "XAG", "XAU",
    "XBA", "XBB", "XBC", "XBD", "XCD", "XCG", "XDR", "XOF", "XPD", "XPF", "XPT", "XSU", "XUA", "YER", "ZAR", "ZMW",
    "ZWG",
];

/// The amount (its normalized text), checked: > 0, <= 10^15, at most 4 decimals. Returns it (equal
/// for equal values: "10.50" and "10.5" both give "10.5"), on which the checks are made: no
/// numeric arithmetic on the hot path.
pub fn check_amount(normalized: String) -> Result<String, ContractError> {
    check_amount_text(&normalized)?;
    Ok(normalized)
}

/// The checks of `check_amount` on normalized numeric text (digits, at most one '.', an
/// optional leading '-', no insignificant zeros; or NaN, Infinity, -Infinity).
fn check_amount_text(text: &str) -> Result<(), ContractError> {
    if text == "NaN" {
        return Err(ContractError::invalid("p_amount", "must be a number, got NaN"));
    }
    if text.starts_with('-') || text == "0" {
        return Err(ContractError::invalid("p_amount", format!("must be greater than 0, got {}", excerpt(text))));
    }
    let (integer, decimals) = text.split_once('.').unwrap_or((text, ""));
    // 10^15 has 16 digits; any 16-digit integer part above it is larger, and so is Infinity.
    let too_large = text == "Infinity"
        || integer.len() > 16
        || (integer.len() == 16 && (integer != "1000000000000000" || !decimals.is_empty()));
    if too_large {
        return Err(ContractError::invalid(
            "p_amount",
            format!("must be at most 1000000000000000, got {}", excerpt(text)),
        ));
    }
    if decimals.len() > 4 {
        return Err(ContractError::invalid(
            "p_amount",
            format!("must have at most 4 decimal places, got {}", excerpt(text)),
        ));
    }
    Ok(())
}

pub fn check_currency(currency: &str) -> Result<(), ContractError> {
    if CURRENCIES.binary_search(&currency).is_err() {
        return Err(ContractError::invalid(
            "p_currency",
            format!("must be an ISO 4217 code in capitals (e.g. RWF, USD), got {currency:?}"),
        ));
    }
    Ok(())
}

/// The CHECK of every currency column (transactions.currency): the list `create_transaction`
/// checks, so a row written by hand is held to the same codes.
#[pg_extern(immutable, parallel_safe, strict, name = "_check_currency_code")]
fn check_currency_code(p_code: &str) -> bool {
    check_currency(p_code).is_ok()
}

fn check_type(kind: &str) -> Result<(), ContractError> {
    if !TYPES.contains(&kind) {
        return Err(ContractError::invalid("p_type", format!("must be one of {}, got {kind:?}", TYPES.join(", "))));
    }
    Ok(())
}

pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;
pub const MAX_CORRELATION_ID_CHARS: usize = 128;

pub fn check_key(key: &str) -> Result<(), ContractError> {
    let chars = key.chars().count();
    if chars == 0 || chars > MAX_IDEMPOTENCY_KEY_CHARS {
        return Err(ContractError::invalid(
            "p_idempotency_key",
            format!("must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters, got {chars}"),
        ));
    }
    Ok(())
}

fn check_correlation_id(id: &str) -> Result<(), ContractError> {
    let chars = id.chars().count();
    if chars > MAX_CORRELATION_ID_CHARS {
        return Err(ContractError::invalid(
            "p_correlation_id",
            format!("must be at most {MAX_CORRELATION_ID_CHARS} characters, got {chars}"),
        ));
    }
    Ok(())
}

/// What a key was first used with, which a replay must match.
struct KeyUse {
    transaction_id: pgrx::Uuid,
    user_id: pgrx::Uuid,
    kind: String,
    /// Compared with the caller's (see `StoredNumeric`).
    amount: StoredNumeric,
    currency: String,
}

impl KeyUse {
    /// The first call's id when this call asks for the same money movement, else 23505 naming
    /// each difference.
    fn replay(
        self,
        key: &str,
        user: pgrx::Uuid,
        kind: &str,
        amount: &str,
        currency: &str,
    ) -> Result<pgrx::Uuid, ContractError> {
        let mut differences = Vec::new();
        if self.user_id != user {
            differences.push(format!("p_user_id ({user}, first {})", self.user_id));
        }
        if self.kind != kind {
            differences.push(format!("p_type ({kind}, first {})", excerpt(&self.kind)));
        }
        if !self.amount.equals(amount) {
            differences.push(format!("p_amount ({amount}, first {})", excerpt(self.amount.text(amount))));
        }
        if self.currency != currency {
            differences.push(format!("p_currency ({currency}, first {})", excerpt(&self.currency)));
        }
        if differences.is_empty() {
            return Ok(self.transaction_id);
        }
        Err(ContractError::UniqueViolation(format!(
            "idempotency key {key:?} was already used for transaction {} with different parameters: {}",
            self.transaction_id,
            differences.join(", ")
        )))
    }
}

/// What a replay reads of transaction_idempotency_keys (positions below).
static KEYS: TableSpec = TableSpec {
    name: c"transaction_idempotency_keys",
    columns: &[
        Column::new(c"idempotency_key", pg_sys::TEXTOID),
        Column::new(c"transaction_id", pg_sys::UUIDOID),
        Column::new(c"user_id", pg_sys::UUIDOID),
        Column::new(c"type", pg_sys::TEXTOID),
        Column::new(c"amount", pg_sys::NUMERICOID),
        Column::new(c"currency", pg_sys::TEXTOID),
        // Written, not read: a new key's row (see `create_through_writer`).
        Column::new(c"transaction_created_at", pg_sys::TIMESTAMPTZOID),
    ],
};
const KEY_COLUMN: usize = 0;

/// What a new transaction's `created` event writes into transaction_events (the other
/// columns take their defaults).
static EVENTS: TableSpec = TableSpec {
    name: c"transaction_events",
    columns: &[
        Column::new(c"id", pg_sys::UUIDOID),
        Column::new(c"transaction_id", pg_sys::UUIDOID),
        Column::new(c"transaction_created_at", pg_sys::TIMESTAMPTZOID),
        Column::new(c"user_id", pg_sys::UUIDOID),
        Column::new(c"event_type", pg_sys::TEXTOID),
        Column::new(c"new_status", pg_sys::TEXTOID),
        Column::new(c"changed_by_user", pg_sys::UUIDOID),
        Column::new(c"created_at", pg_sys::TIMESTAMPTZOID),
    ],
};

/// The key's row, read through the primary key. With `fresh`, under a snapshot as a new
/// statement would take it (READ COMMITTED: everything committed now, so a racing winner is
/// seen); otherwise under the calling statement's snapshot, which is enough for the first look:
/// a key committed since then is caught by the insert's conflict, and looked up fresh. A NULL
/// where the table declares NOT NULL (altered by hand) cannot be replayed against: 55000.
fn lookup_key(key: &str, fresh: bool, amount: &RawNumeric) -> Option<KeyUse> {
    // What a key was used for is told only to a role that could have used it.
    relation::require_privilege(&KEYS, pg_sys::ACL_INSERT as pg_sys::AclMode);
    relation::lookup_by_text_key(
        &KEYS,
        KEY_COLUMN,
        key,
        if fresh { relation::Seen::Fresh } else { relation::Seen::Statement },
        |row| {
            fn null<T>(key: &str, i: usize) -> T {
                relation::not_as_created(
                    KEYS.name,
                    format_args!(
                        "column {} is NULL for idempotency key {key:?}",
                        KEYS.columns[i].name.to_string_lossy()
                    ),
                )
            }
            KeyUse {
                transaction_id: row.uuid(1).unwrap_or_else(|| null(key, 1)),
                user_id: row.uuid(2).unwrap_or_else(|| null(key, 2)),
                kind: row.text(3).unwrap_or_else(|| null(key, 3)),
                amount: row.numeric(4, Some(amount)).unwrap_or_else(|| null(key, 4)),
                currency: row.text(5).unwrap_or_else(|| null(key, 5)),
            }
        },
    )
}

/// The statements of create_transaction, planned once per backend (re-planned by Postgres when
/// a table changes; prepared again here if the extension moved).
struct Plans {
    reference_sequence: pg_sys::Oid,
    /// Claims the key and, only when it did, writes the transaction and its event: one
    /// statement (processes 0 rows when the key is taken).
    create_with_key: Plan,
    /// The transaction and its event, without a key.
    create: Plan,
    /// The transaction's row alone, for `create_through_writer` when the writer does not route
    /// it to its partition (`Writes::insert_routed`).
    insert_transaction: Plan,
}

thread_local! {
    static PLANS: PlanSlot<Plans> = const { RefCell::new(None) };
}

/// The table the plans are kept against (its siblings live and move with it).
static TRANSACTIONS: TableSpec = TableSpec { name: c"transactions", columns: &[] };

/// What a new transaction writes into transactions (the other columns take their defaults).
static TRANSACTION_ROW: TableSpec = TableSpec {
    name: c"transactions",
    columns: &[
        Column::new(c"id", pg_sys::UUIDOID),
        Column::new(c"reference", pg_sys::TEXTOID),
        Column::new(c"user_id", pg_sys::UUIDOID),
        Column::new(c"type", pg_sys::TEXTOID),
        Column::new(c"amount", pg_sys::NUMERICOID),
        Column::new(c"currency", pg_sys::TEXTOID),
        Column::new(c"idempotency_key", pg_sys::TEXTOID),
        Column::new(c"metadata", pg_sys::JSONBOID),
        Column::new(c"correlation_id", pg_sys::TEXTOID),
        Column::new(c"created_at", pg_sys::TIMESTAMPTZOID),
        Column::new(c"updated_at", pg_sys::TIMESTAMPTZOID),
    ],
};

fn prepare(table: &Table) -> Plans {
    use pg_sys::{JSONBOID, NUMERICOID, TEXTOID, TIMESTAMPTZOID, UUIDOID};
    let transactions = table.ext.clone();
    let keys = transactions.sibling("transaction_idempotency_keys");
    let events = transactions.sibling("transaction_events");
    let sequence = ext_table("transaction_reference_seq");
    // $1 id, $2 reference, $3 user, $4 type, $5 amount, $6 currency, $7 key, $8 metadata,
    // $9 correlation id, $10 created_at, $11 the event's id, $12 who asked (request_user_id).
    // One statement, not three: each statement through SPI costs its own executor set-up.
    // Data-modifying CTEs run on one snapshot, each once, in full.
    let types = [
        UUIDOID,
        TEXTOID,
        UUIDOID,
        TEXTOID,
        NUMERICOID,
        TEXTOID,
        TEXTOID,
        JSONBOID,
        TEXTOID,
        TIMESTAMPTZOID,
        UUIDOID,
        UUIDOID,
    ];
    let write = |rows: &str| {
        format!(
            "t AS (INSERT INTO {} (id, reference, user_id, type, amount, currency, idempotency_key, metadata, correlation_id, created_at, updated_at) \
                   {rows} RETURNING id) \
             INSERT INTO {events} (id, transaction_id, transaction_created_at, user_id, event_type, new_status, changed_by_user, created_at) \
             SELECT $11, t.id, $10, $3, 'created', 'pending', $12, $10 FROM t",
            transactions.qualified
        )
    };
    Plans {
        // Of concurrent callers with one new key exactly one inserts the key row (the others
        // wait on the unique index until it commits, then insert nothing, and nothing else).
        create_with_key: Plan::prepare(
            &format!(
                "WITH k AS (INSERT INTO {keys} (idempotency_key, transaction_id, transaction_created_at, user_id, type, amount, currency) \
                            VALUES ($7, $1, $10, $3, $4, $5, $6) ON CONFLICT (idempotency_key) DO NOTHING RETURNING transaction_id), {}",
                write("SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10 FROM k")
            ),
            &types,
        ),
        create: Plan::prepare(
            &format!("WITH {}", write("VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)")),
            &types,
        ),
        insert_transaction: Plan::prepare(
            &format!(
                "INSERT INTO {} (id, reference, user_id, type, amount, currency, idempotency_key, metadata, correlation_id, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
                transactions.qualified
            ),
            &types,
        ),
        reference_sequence: sequence.relid,
    }
}

fn plans() -> Rc<Plans> {
    prepared(&PLANS, &TRANSACTIONS, prepare)
}

/// Crockford's base32 alphabet: no I, L, O or U, so a reference read aloud is unambiguous.
const BASE32: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A human-readable reference, unique because its number comes from a sequence:
/// TX-YYMMDD-NNNNNNNN (UTC date, then the sequence value in base 32, at least 8 digits).
fn reference(sequence: pg_sys::Oid, created_at: TimestampWithTimeZone) -> String {
    let n = catalog::nextval(sequence) as u64;
    let mut digits = Vec::with_capacity(13);
    let mut v = n;
    while v > 0 || digits.len() < 8 {
        digits.push(BASE32[(v % 32) as usize]);
        v /= 32;
    }
    digits.reverse();
    let date = created_at.to_utc();
    format!(
        "TX-{:02}{:02}{:02}-{}",
        date.year() % 100,
        date.month(),
        date.day(),
        String::from_utf8(digits).expect("ASCII")
    )
}

/// Creates a pending transaction and its `created` event; with an idempotency key, at most once
/// (see the module comment). Returns the transaction's id.
#[pg_extern(volatile, parallel_unsafe)]
fn create_transaction(
    p_user_id: Option<pgrx::Uuid>,
    p_type: Option<&str>,
    p_amount: Option<RawNumeric>,
    p_currency: default!(Option<&str>, "'RWF'"),
    p_idempotency_key: default!(Option<&str>, "NULL"),
    p_metadata: default!(Option<RawJsonb>, "'{}'"),
    p_correlation_id: default!(Option<&str>, "NULL"),
) -> pgrx::Uuid {
    let check = || -> Result<_, ContractError> {
        let user = required(p_user_id, "p_user_id")?;
        let kind = required(p_type, "p_type")?;
        let amount = required(p_amount, "p_amount")?;
        let currency = required(p_currency, "p_currency")?;
        check_type(kind)?;
        check_currency(currency)?;
        if let Some(key) = p_idempotency_key {
            check_key(key)?;
        }
        if let Some(metadata) = &p_metadata {
            metadata.check_object("p_metadata")?;
        }
        if let Some(id) = p_correlation_id {
            check_correlation_id(id)?;
        }
        Ok((user, kind, amount, currency))
    };
    let (user, kind, amount, currency) = check().or_raise();

    // A replay reads one index entry and returns: no SPI, no plan, no write. An amount byte for
    // byte the one stored under the key (what a retry sends) was checked when the key was
    // written, so its text is not even made (a numeric_out per call); any other amount is
    // checked first, so a bad one is 22023 whatever the key holds.
    if let Some(key) = p_idempotency_key {
        if let Some(first) = lookup_key(key, false, &amount) {
            let amount_text = match first.amount {
                StoredNumeric::SameAsGiven => String::new(),
                StoredNumeric::Text(_) => check_amount(amount.normalized()).or_raise(),
            };
            return first.replay(key, user, kind, &amount_text, currency).or_raise();
        }
    }
    let amount_text = check_amount(amount.normalized()).or_raise();
    let plans = plans();
    // Before the reference's nextval, whose own 25006 would name nextval().
    backend::prevent_write(c"create_transaction()");
    // The transaction's start time, which is what now() returns.
    let created_at = timestamptz(backend::transaction_start());
    let (id, event_id, asked_by) = (new_v7(), new_v7(), request_user_id());
    let reference = reference(plans.reference_sequence, created_at);
    let args = [
        id.into(),
        reference.as_str().into(),
        user.into(),
        kind.into(),
        amount.as_arg(),
        currency.into(),
        p_idempotency_key.into(),
        match &p_metadata {
            Some(m) => m.as_arg(),
            None => pgrx::JsonB(serde_json::json!({})).into(),
        },
        p_correlation_id.into(),
        created_at.into(),
        event_id.into(),
        asked_by.into(),
    ];
    let mut writes = Writes::new();
    let through_writer = writes.inserts_as_statement(&EVENTS)
        && writes.inserts_as_statement(&TRANSACTION_ROW)
        && (p_idempotency_key.is_none() || writes.inserts_as_statement(&KEYS));
    let created = if through_writer {
        // Each value made a datum once (a uuid or text datum is a copy), shared by the rows.
        let (id_d, user_d, kind_d, currency_d, at_d) =
            (id.into_datum(), user.into_datum(), kind.into_datum(), currency.into_datum(), created_at.into_datum());
        let key_d = p_idempotency_key.into_datum();
        let amount_d = Some(amount.datum());
        let rows = NewRows {
            key: key_d.map(|key| [Some(key), id_d, user_d, kind_d, amount_d, currency_d, at_d]),
            transaction: [
                id_d,
                reference.as_str().into_datum(),
                user_d,
                kind_d,
                amount_d,
                currency_d,
                key_d,
                match &p_metadata {
                    Some(m) => Some(m.datum()),
                    None => pgrx::JsonB(serde_json::json!({})).into_datum(),
                },
                p_correlation_id.into_datum(),
                at_d,
                at_d,
            ],
            event: [
                event_id.into_datum(),
                id_d,
                at_d,
                user_d,
                "created".into_datum(),
                "pending".into_datum(),
                asked_by.into_datum(),
                at_d,
            ],
        };
        create_through_writer(&plans, writes, &rows, &args)
    } else {
        writes.finish();
        match p_idempotency_key {
            None => plans.create.execute(&args) > 0,
            Some(_) => plans.create_with_key.execute(&args) > 0,
        }
    };
    if created {
        return id;
    }
    let key = p_idempotency_key.expect("only a key's insert can find it taken");
    // A concurrent call with this key committed first: replay it.
    let Some(first) = lookup_key(key, true, &amount) else {
        // Deleted again between the conflict and the look (a retention run, say).
        raise(
            PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE,
            format!("idempotency key {key:?} was taken and released by a concurrent call; retry"),
        )
    };
    first.replay(key, user, kind, &amount_text, currency).or_raise()
}

/// A new transaction's rows as the writer takes them (the specs' columns, in order).
struct NewRows {
    key: Option<[Option<pg_sys::Datum>; 7]>,
    transaction: [Option<pg_sys::Datum>; 11],
    event: [Option<pg_sys::Datum>; 8],
}

/// What `create_with_key` (or `create`) does, through the writer: no statement's executor set-up,
/// and none of the CHECK constraints a statement parses from the catalog at every execution
/// (perf: ExecConstraints alone was 31 % of a new key's time). The key is claimed first, as ON
/// CONFLICT DO NOTHING claims it; taken (false), nothing is written. The transaction's row goes
/// to its month's partition; where the writer does not route it (`insert_routed`), through the
/// one-row statement.
fn create_through_writer(plans: &Plans, mut writes: Writes, rows: &NewRows, args: &[DatumWithOid<'_>]) -> bool {
    if let Some(key) = &rows.key {
        if !writes.insert_unless_conflict(&KEYS, KEY_COLUMN, key) {
            writes.finish();
            return false;
        }
    }
    if !writes.insert_routed(&TRANSACTION_ROW, &rows.transaction) {
        plans.insert_transaction.execute(args);
    }
    writes.insert(&EVENTS, &rows.event);
    writes.finish();
    true
}

#[cfg(test)]
mod tests {
    #[test]
    fn amounts_on_normalized_text() {
        for ok in ["1", "0.0001", "10.5", "999999999999999.9999", "1000000000000000"] {
            assert!(super::check_amount_text(ok).is_ok(), "{ok}");
        }
        for (bad, says) in [
            ("0", "greater than 0"),
            ("-0.01", "greater than 0"),
            ("-Infinity", "greater than 0"),
            ("NaN", "must be a number"),
            ("Infinity", "at most 1000000000000000"),
            ("1000000000000000.0001", "at most 1000000000000000"),
            ("1000000000000001", "at most 1000000000000000"),
            ("10000000000000000", "at most 1000000000000000"),
            ("1.00001", "at most 4 decimal places"),
        ] {
            let err = super::check_amount_text(bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn currencies_are_sorted_and_unique() {
        assert!(super::CURRENCIES.windows(2).all(|w| w[0] < w[1]));
        assert!(super::check_currency("RWF").is_ok());
        assert!(super::check_currency("rwf").is_err());
        assert!(super::check_currency("ABC").is_err());
    }
}
