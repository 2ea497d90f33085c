//! Wallets: the writers of the double-entry ledger (sql/wallets.sql has the tables, the readers
//! and the account helpers; docs/reference/wallets.md the design).
//!
//! Every writer first locks the accounts it will change, all in one statement, in id order
//! (`FOR NO KEY UPDATE`): two writers that share accounts take them in the same order, so they
//! queue and never deadlock, and what they read is the latest committed balance. Then it checks
//! and computes everything in memory and writes with a few statements: the transfer rows, one
//! UPDATE of every changed account, one INSERT of every entry. A refusal raises before the first
//! write that matters and the statement's rollback takes the rest: a refused call writes nothing.
//!
//! A hot account credited and not debited by a call is locked `FOR KEY SHARE` instead, after the
//! others: that lock does not conflict with another key-share or with the no-key update of a
//! debit, only with `FOR UPDATE` (a status change, which so waits for credits in flight and
//! holds new ones off). Its credit goes to wallet_hot_credits, a row of its own, so concurrent
//! credits do not queue behind one row; a debit or hold of the account locks its row as usual
//! and first folds the committed credits into the row and its entries (`fold`), so it sees an
//! exact available balance. A hot account's pending credits are not kept on its row either
//! (they are read from its open holds).
//!
//! Which accounts are hot is read once per backend without a lock (it is fixed at creation, a
//! trigger refuses to change it) and remembered.
//! Money is `numeric` throughout, with Postgres's own arithmetic.

#![forbid(unsafe_code)]

use crate::error::{excerpt, required, ContractError, OrRaise, Refusal};
use crate::ids::new_v7;
use crate::money::{check_amount, check_key};
use crate::postgres::backend;
use crate::postgres::datum::{timestamptz, RawJsonb, RawNumeric, StoredNumeric};
use crate::postgres::plan::{prepared, Plan, PlanSlot, ResultRow};
use crate::postgres::relation::{self, Column, Seen, Table, TableSpec};
use crate::postgres::writer::Writes;
use pgrx::prelude::*;
use pgrx::{AnyNumeric, JsonB, Uuid};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

/// The CHECKs of wallet_accounts and wallet_transfers say the same (tests: contract_values).
pub const ACCOUNT_KINDS: [&str; 3] = ["user", "platform", "external"];
pub const ACCOUNT_STATUSES: [&str; 3] = [ACTIVE, "frozen", "closed"];
pub const TRANSFER_STATUSES: [&str; 4] = [POSTED, PENDING, VOIDED, EXPIRED];
const ACTIVE: &str = "active";
const POSTED: &str = "posted";
const PENDING: &str = "pending";
const VOIDED: &str = "voided";
const EXPIRED: &str = "expired";
/// The longest hold: a year.
pub const MAX_HOLD_SECONDS: i32 = 31_536_000;
pub const MAX_BATCH_TRANSFERS: usize = 100;
/// How many lapsed holds one maintenance run releases (the next run takes the rest).
const EXPIRE_PER_RUN: i64 = 1_000;

/// What a replay reads of wallet_transfers, through its unique index on idempotency_key.
static TRANSFERS: TableSpec = TableSpec {
    name: c"wallet_transfers",
    columns: &[
        Column::new(c"idempotency_key", pg_sys::TEXTOID),
        Column::new(c"id", pg_sys::UUIDOID),
        Column::new(c"debit_account_id", pg_sys::UUIDOID),
        Column::new(c"credit_account_id", pg_sys::UUIDOID),
        Column::new(c"amount", pg_sys::NUMERICOID),
        Column::new(c"expires_at", pg_sys::TIMESTAMPTZOID),
    ],
};
const KEY_COLUMN: usize = 0;

/// What the writers write (src/postgres/writer.rs): a transfer row, in this column order.
static TRANSFER_ROW: TableSpec = TableSpec {
    name: c"wallet_transfers",
    columns: &[
        Column::new(c"id", pg_sys::UUIDOID),
        Column::new(c"debit_account_id", pg_sys::UUIDOID),
        Column::new(c"credit_account_id", pg_sys::UUIDOID),
        Column::new(c"debit_user_id", pg_sys::UUIDOID),
        Column::new(c"credit_user_id", pg_sys::UUIDOID),
        Column::new(c"amount", pg_sys::NUMERICOID),
        Column::new(c"currency", pg_sys::TEXTOID),
        Column::new(c"status", pg_sys::TEXTOID),
        Column::new(c"expires_at", pg_sys::TIMESTAMPTZOID),
        Column::new(c"pending_id", pg_sys::UUIDOID),
        Column::new(c"idempotency_key", pg_sys::TEXTOID),
        Column::new(c"transaction_id", pg_sys::UUIDOID),
        Column::new(c"metadata", pg_sys::JSONBOID),
        Column::new(c"created_at", pg_sys::TIMESTAMPTZOID),
    ],
};

/// The balance columns of an account an update changes, in this order.
static ACCOUNT_BALANCE: TableSpec = TableSpec {
    name: c"wallet_accounts",
    columns: &[
        Column::new(c"posted", pg_sys::NUMERICOID),
        Column::new(c"pending_debits", pg_sys::NUMERICOID),
        Column::new(c"pending_credits", pg_sys::NUMERICOID),
        Column::new(c"version", pg_sys::INT8OID),
        Column::new(c"updated_at", pg_sys::TIMESTAMPTZOID),
    ],
};

static ENTRY_ROW: TableSpec = TableSpec {
    name: c"wallet_entries",
    columns: &[
        Column::new(c"account_id", pg_sys::UUIDOID),
        Column::new(c"version", pg_sys::INT8OID),
        Column::new(c"transfer_id", pg_sys::UUIDOID),
        Column::new(c"user_id", pg_sys::UUIDOID),
        Column::new(c"amount", pg_sys::NUMERICOID),
        Column::new(c"balance_after", pg_sys::NUMERICOID),
        Column::new(c"created_at", pg_sys::TIMESTAMPTZOID),
    ],
};

static HOT_CREDIT_ROW: TableSpec = TableSpec {
    name: c"wallet_hot_credits",
    columns: &[
        Column::new(c"account_id", pg_sys::UUIDOID),
        Column::new(c"id", pg_sys::UUIDOID),
        Column::new(c"transfer_id", pg_sys::UUIDOID),
        Column::new(c"user_id", pg_sys::UUIDOID),
        Column::new(c"amount", pg_sys::NUMERICOID),
        Column::new(c"created_at", pg_sys::TIMESTAMPTZOID),
    ],
};

/// What a key was first used with, which a replay must match.
struct FirstUse {
    id: Uuid,
    debit: Uuid,
    credit: Uuid,
    amount: StoredNumeric,
    hold: bool,
}

impl FirstUse {
    fn replay(self, key: &str, leg: &Leg) -> Result<Uuid, ContractError> {
        let mut differences = Vec::new();
        if self.debit != leg.debit {
            differences.push(format!("debit account ({}, first {})", leg.debit, self.debit));
        }
        if self.credit != leg.credit {
            differences.push(format!("credit account ({}, first {})", leg.credit, self.credit));
        }
        if !self.amount.equals(&leg.amount_text) {
            let first = excerpt(self.amount.text(&leg.amount_text));
            differences.push(format!("amount ({}, first {first})", leg.amount_text));
        }
        if self.hold != leg.hold_seconds.is_some() {
            let kind = |hold| if hold { "a hold" } else { "posted at once" };
            differences.push(format!("kind ({}, first {})", kind(leg.hold_seconds.is_some()), kind(self.hold)));
        }
        if differences.is_empty() {
            return Ok(self.id);
        }
        Err(ContractError::UniqueViolation(format!(
            "idempotency key {key:?} was already used for wallet transfer {} with different parameters: {}",
            self.id,
            differences.join(", ")
        )))
    }
}

/// The transfer a key was first used for, seen as `seen` says; its amount compared with
/// `amount`'s (see `StoredNumeric`).
fn lookup_key(key: &str, seen: Seen, amount: &Amount) -> Option<FirstUse> {
    // What a key was used for is told only to a role that could have used it.
    relation::require_privilege(&TRANSFERS, pg_sys::ACL_INSERT as pg_sys::AclMode);
    relation::lookup_by_text_key(&TRANSFERS, KEY_COLUMN, key, seen, |row| {
        fn null<T>(key: &str, i: usize) -> T {
            relation::not_as_created(
                TRANSFERS.name,
                format_args!(
                    "column {} is NULL for idempotency key {key:?}",
                    TRANSFERS.columns[i].name.to_string_lossy()
                ),
            )
        }
        FirstUse {
            id: row.uuid(1).unwrap_or_else(|| null(key, 1)),
            debit: row.uuid(2).unwrap_or_else(|| null(key, 2)),
            credit: row.uuid(3).unwrap_or_else(|| null(key, 3)),
            amount: row.numeric(4, amount.given()).unwrap_or_else(|| null(key, 4)),
            hold: row.timestamptz(5).is_some(),
        }
    })
}

/// The statements of the writers, planned once per backend.
struct Plans {
    lock_exclusive: Plan,
    lock_shared: Plan,
    /// For maintenance, which takes what is free and never waits (see `expire_wallet_holds`).
    lock_exclusive_free: Plan,
    lock_shared_free: Plan,
    fold: Plan,
    hold_accounts: Plan,
    lock_hold: Plan,
    resolve_hold: Plan,
    due_holds: Plan,
    hot_accounts: Plan,
    hot_flags: Plan,
    parse_batch: Plan,
}

thread_local! {
    static PLANS: PlanSlot<Plans> = const { RefCell::new(None) };
    /// Whether an account is hot, for the accounts this backend has locked.
    static HOT: RefCell<HashMap<Uuid, bool>> = RefCell::new(HashMap::new());
}

const ACCOUNT_COLUMNS: &str =
    "ctid, id, user_id, currency, status, min_balance, posted, pending_debits, pending_credits, version, hot";

fn prepare(table: &Table) -> Plans {
    use pg_sys::{JSONBOID, TEXTOID, TIMESTAMPTZOID, UUIDARRAYOID, UUIDOID};
    let transfers = &table.ext.qualified;
    let accounts = table.ext.sibling("wallet_accounts");
    let hot = table.ext.sibling("wallet_hot_credits");
    let lock = |mode: &str| {
        Plan::prepare_latest(
            &format!("SELECT {ACCOUNT_COLUMNS} FROM {accounts} WHERE id = ANY ($1) ORDER BY id FOR {mode}"),
            &[UUIDARRAYOID],
        )
    };
    Plans {
        lock_exclusive: lock("NO KEY UPDATE"),
        lock_shared: lock("KEY SHARE"),
        lock_exclusive_free: lock("NO KEY UPDATE SKIP LOCKED"),
        lock_shared_free: lock("KEY SHARE SKIP LOCKED"),
        fold: Plan::prepare_latest(
            &format!("DELETE FROM {hot} WHERE account_id = $1 RETURNING id, transfer_id, amount, created_at"),
            &[UUIDOID],
        ),
        hold_accounts: Plan::prepare_latest(
            &format!("SELECT debit_account_id, credit_account_id FROM {transfers} WHERE id = $1"),
            &[UUIDOID],
        ),
        lock_hold: Plan::prepare_latest(
            &format!(
                "SELECT amount, status, expires_at, transaction_id, debit_account_id, credit_account_id \
                 FROM {transfers} WHERE id = $1 FOR UPDATE"
            ),
            &[UUIDOID],
        ),
        resolve_hold: Plan::prepare_latest(
            &format!("UPDATE {transfers} SET status = $2, resolved_at = $3 WHERE id = $1"),
            &[UUIDOID, TEXTOID, TIMESTAMPTZOID],
        ),
        due_holds: Plan::prepare_latest(
            &format!(
                "SELECT id, debit_account_id, credit_account_id FROM {transfers} \
                 WHERE status = '{PENDING}' AND expires_at <= $1 ORDER BY expires_at LIMIT {EXPIRE_PER_RUN}"
            ),
            &[TIMESTAMPTZOID],
        ),
        hot_accounts: Plan::prepare_latest(&format!("SELECT DISTINCT account_id FROM {hot}"), &[]),
        hot_flags: Plan::prepare_latest(
            &format!("SELECT id, hot FROM {accounts} WHERE id = ANY ($1)"),
            &[UUIDARRAYOID],
        ),
        // Read by Postgres's own jsonb and type input functions: numbers exactly as written.
        parse_batch: Plan::prepare_latest(
            "SELECT t.n - 1, jsonb_typeof(t.e), \
                    (SELECT string_agg(k, ', ' ORDER BY k) FROM jsonb_object_keys(x.o) k \
                      WHERE k NOT IN ('debit_account_id', 'credit_account_id', 'amount', 'idempotency_key', \
                                      'hold_seconds', 'transaction_id', 'metadata')), \
                    r.debit_account_id, r.credit_account_id, r.amount, r.idempotency_key, \
                    r.hold_seconds::int8, r.transaction_id, r.metadata \
               FROM jsonb_array_elements($1) WITH ORDINALITY AS t(e, n), \
                    LATERAL (SELECT CASE WHEN jsonb_typeof(t.e) = 'object' THEN t.e ELSE '{}' END AS o) x, \
                    LATERAL jsonb_to_record(x.o) AS r(debit_account_id uuid, credit_account_id uuid, amount numeric, \
                        idempotency_key text, hold_seconds bigint, transaction_id uuid, metadata jsonb) \
              ORDER BY t.n",
            &[JSONBOID],
        ),
    }
}

fn plans() -> Rc<Plans> {
    prepared(&PLANS, &TRANSFERS, prepare)
}

fn known_hot(id: Uuid) -> bool {
    HOT.with_borrow(|h| h.get(&id).copied().unwrap_or(false))
}

/// Reads (without a lock: the flag never changes) whether the accounts of `ids` not seen yet
/// are hot.
fn learn_hot(plans: &Plans, ids: &[Uuid]) {
    let unseen: Vec<Uuid> = HOT.with_borrow(|h| ids.iter().filter(|id| !h.contains_key(id)).copied().collect());
    if unseen.is_empty() {
        return;
    }
    for (id, hot) in plans.hot_flags.query(&[unseen.into()], |row| (row.get::<Uuid>(0), row.get::<bool>(1))) {
        if let (Some(id), Some(hot)) = (id, hot) {
            remember_hot(id, hot);
        }
    }
}

fn remember_hot(id: Uuid, hot: bool) {
    HOT.with_borrow_mut(|h| {
        if h.len() >= 100_000 {
            h.clear();
        }
        h.insert(id, hot);
    });
}

/// One transfer asked for, checked.
struct Leg {
    debit: Uuid,
    credit: Uuid,
    amount: Amount,
    amount_text: String,
    key: Option<String>,
    hold_seconds: Option<i32>,
    transaction_id: Option<Uuid>,
    /// None: the table's default ('{}').
    metadata: Option<RawJsonb>,
}

/// A leg's amount: the caller's numeric argument as given (converted only when written), or a
/// value read from a batch's JSON.
enum Amount {
    Arg(RawNumeric),
    Value(AnyNumeric),
}

impl Amount {
    fn normalized(&self) -> String {
        match self {
            Amount::Arg(a) => a.normalized(),
            Amount::Value(a) => a.normalize().to_owned(),
        }
    }

    /// The caller's argument as given, if it is one.
    fn given(&self) -> Option<&RawNumeric> {
        match self {
            Amount::Arg(a) => Some(a),
            Amount::Value(_) => None,
        }
    }

    fn value(&self) -> AnyNumeric {
        match self {
            Amount::Arg(a) => a.value(),
            Amount::Value(a) => a.clone(),
        }
    }
}

impl Leg {
    #[allow(clippy::too_many_arguments)]
    fn check(
        debit: Option<Uuid>,
        credit: Option<Uuid>,
        amount: Option<Amount>,
        key: Option<String>,
        hold_seconds: Option<i64>,
        transaction_id: Option<Uuid>,
        metadata: Option<RawJsonb>,
        metadata_is_object: bool,
    ) -> Result<Leg, ContractError> {
        let debit = required(debit, "p_debit_account_id")?;
        let credit = required(credit, "p_credit_account_id")?;
        let amount = required(amount, "p_amount")?;
        if debit == credit {
            return Err(ContractError::Refused(
                Refusal::SameAccount,
                format!("p_credit_account_id must differ from the debit account, got {credit} for both"),
            ));
        }
        let amount_text = check_amount(amount.normalized())?;
        if let Some(key) = &key {
            check_key(key)?;
        }
        let hold_seconds = match hold_seconds {
            None => None,
            Some(s) if (1..=i64::from(MAX_HOLD_SECONDS)).contains(&s) => Some(s as i32),
            Some(s) => {
                return Err(ContractError::invalid(
                    "p_hold_seconds",
                    format!("must be between 1 and {MAX_HOLD_SECONDS}, got {s}"),
                ))
            }
        };
        if !metadata_is_object {
            return Err(ContractError::invalid("p_metadata", "must be a JSON object"));
        }
        Ok(Leg { debit, credit, amount, amount_text, key, hold_seconds, transaction_id, metadata })
    }
}

/// An account as locked by this call, with the changes made to it so far.
#[derive(Clone)]
struct Account {
    /// The version of its row this call locked (and, once written, the one it wrote).
    tid: pg_sys::ItemPointerData,
    id: Uuid,
    user_id: Option<Uuid>,
    currency: String,
    status: String,
    /// None: unbounded (an external account).
    min_balance: Option<AnyNumeric>,
    posted: AnyNumeric,
    pending_debits: AnyNumeric,
    pending_credits: AnyNumeric,
    version: i64,
    hot: bool,
    /// Locked FOR NO KEY UPDATE, so its row may change; otherwise FOR KEY SHARE (a hot account
    /// only credited), whose credits go to wallet_hot_credits.
    exclusive: bool,
    changed: bool,
}

impl Account {
    fn from_row(row: &ResultRow, exclusive: bool) -> Account {
        let required = |i: usize| -> AnyNumeric {
            row.get::<AnyNumeric>(i).unwrap_or_else(|| {
                relation::not_as_created(c"wallet_accounts", format_args!("a balance column of an account is NULL"))
            })
        };
        Account {
            tid: row.get(0).expect("a row's ctid"),
            id: row.get(1).expect("primary key"),
            user_id: row.get(2),
            currency: row.get(3).unwrap_or_default(),
            status: row.get(4).unwrap_or_default(),
            min_balance: row.get(5),
            posted: required(6),
            pending_debits: required(7),
            pending_credits: required(8),
            version: row.get(9).unwrap_or_else(|| {
                relation::not_as_created(c"wallet_accounts", format_args!("an account's version is NULL"))
            }),
            hot: row.get(10).unwrap_or(false),
            exclusive,
            changed: false,
        }
    }

    fn check_active(&self) -> Result<(), ContractError> {
        if self.status != ACTIVE {
            return Err(ContractError::Refused(
                Refusal::AccountNotActive,
                format!("wallet account {} is {}", self.id, self.status),
            ));
        }
        Ok(())
    }

    /// EW001 unless `amount` more can be taken from the available balance.
    fn check_available(&self, amount: &AnyNumeric) -> Result<(), ContractError> {
        let Some(floor) = &self.min_balance else { return Ok(()) };
        let available = self.posted.clone() - self.pending_debits.clone();
        if available.clone() - amount.clone() < *floor {
            return Err(ContractError::Refused(
                Refusal::InsufficientFunds,
                format!(
                    "wallet account {}: insufficient available balance: {} available, floor {}, {} asked",
                    self.id, available, floor, amount
                ),
            ));
        }
        Ok(())
    }
}

struct Entry {
    account_id: Uuid,
    version: i64,
    transfer_id: Uuid,
    user_id: Option<Uuid>,
    amount: AnyNumeric,
    balance_after: AnyNumeric,
    created_at: TimestampWithTimeZone,
}

struct HotCredit {
    account_id: Uuid,
    id: Uuid,
    transfer_id: Uuid,
    user_id: Option<Uuid>,
    amount: AnyNumeric,
}

/// A transfer row to write.
struct TransferRow {
    id: Uuid,
    debit: Uuid,
    credit: Uuid,
    amount: AnyNumeric,
    status: &'static str,
    expires_at: Option<TimestampWithTimeZone>,
    pending_id: Option<Uuid>,
    key: Option<String>,
    transaction_id: Option<Uuid>,
    metadata: Option<RawJsonb>,
}

/// The accounts one call locked, and what it will write.
struct Ledger {
    plans: Rc<Plans>,
    accounts: BTreeMap<Uuid, Account>,
    transfers: Vec<TransferRow>,
    entries: Vec<Entry>,
    hot_credits: Vec<HotCredit>,
    /// How many hot credits the lock folded.
    folded: usize,
    /// The transaction's start, which is what now() returns: the rows' created_at.
    now: TimestampWithTimeZone,
}

impl Ledger {
    /// Locks `changed` (accounts whose row this call may change) FOR NO KEY UPDATE, then
    /// `credited` (hot accounts it only credits) FOR KEY SHARE, each set in id order; then
    /// folds the hot accounts locked exclusively.
    fn lock(plans: Rc<Plans>, changed: &[Uuid], credited: &[Uuid]) -> Result<Ledger, ContractError> {
        Ledger::lock_with(plans, changed, credited, false)
    }

    /// `lock`, or with `free_only` the accounts among them that no one holds now (SKIP LOCKED):
    /// the others are left out, and nothing waits.
    fn lock_with(
        plans: Rc<Plans>,
        changed: &[Uuid],
        credited: &[Uuid],
        free_only: bool,
    ) -> Result<Ledger, ContractError> {
        let mut exclusive: Vec<Uuid> = changed.to_vec();
        exclusive.sort();
        exclusive.dedup();
        let mut shared: Vec<Uuid> =
            credited.iter().filter(|id| exclusive.binary_search(id).is_err()).copied().collect();
        shared.sort();
        shared.dedup();
        let mut accounts = BTreeMap::new();
        let (lock_exclusive, lock_shared) = if free_only {
            (&plans.lock_exclusive_free, &plans.lock_shared_free)
        } else {
            (&plans.lock_exclusive, &plans.lock_shared)
        };
        for (ids, exclusive, plan) in [(&exclusive, true, lock_exclusive), (&shared, false, lock_shared)] {
            if ids.is_empty() {
                continue;
            }
            for account in plan.query(&[ids.clone().into()], |row| Account::from_row(row, exclusive)) {
                remember_hot(account.id, account.hot);
                if !exclusive && !account.hot {
                    // Remembered as hot, and not (re-created by hand): its row must change, and
                    // locking it now would break the order. The next attempt locks it first.
                    return Err(ContractError::SerializationFailure(format!(
                        "wallet account {} is no longer hot; retry",
                        account.id
                    )));
                }
                accounts.insert(account.id, account);
            }
            if let Some(missing) = ids.iter().find(|id| !accounts.contains_key(id)).filter(|_| !free_only) {
                return Err(ContractError::NoDataFound(format!("wallet account {missing} does not exist")));
            }
        }
        let mut ledger = Ledger {
            plans,
            accounts,
            transfers: Vec::new(),
            entries: Vec::new(),
            hot_credits: Vec::new(),
            folded: 0,
            now: timestamptz(backend::transaction_start()),
        };
        // Folded now and written at once: what the call then does starts from an exact balance,
        // and a fold never waits on the call's own idempotency claims.
        let hot: Vec<Uuid> = ledger.accounts.values().filter(|a| a.hot && a.exclusive).map(|a| a.id).collect();
        for id in hot {
            ledger.folded += ledger.fold(id);
        }
        if ledger.folded > 0 {
            ledger.write();
        }
        Ok(ledger)
    }

    fn account(&self, id: Uuid) -> &Account {
        &self.accounts[&id]
    }

    /// Whether `id` is locked, and exclusively when `exclusive` (for `lock_with(free_only)`).
    fn holds(&self, id: Uuid, exclusive: bool) -> bool {
        self.accounts.get(&id).is_some_and(|a| a.exclusive || !exclusive)
    }

    fn change(&mut self, id: Uuid) -> &mut Account {
        let account = self.accounts.get_mut(&id).expect("locked");
        account.changed = true;
        account
    }

    /// Moves the committed credits of hot account `id` (locked exclusively) from
    /// wallet_hot_credits into its row and entries, in the order they came. Returns how many.
    fn fold(&mut self, id: Uuid) -> usize {
        let mut credits = self.plans.fold.query(&[id.into()], |row| {
            let amount: Option<AnyNumeric> = row.get(2);
            (row.get::<Uuid>(0), row.get::<Uuid>(1), amount, row.get::<TimestampWithTimeZone>(3))
        });
        credits.sort_by_key(|c| c.0);
        let account = self.accounts.get_mut(&id).expect("locked");
        for (credit_id, transfer_id, amount, created_at) in &credits {
            let (Some(_), Some(transfer_id), Some(amount), Some(created_at)) =
                (credit_id, transfer_id, amount, created_at)
            else {
                relation::not_as_created(c"wallet_hot_credits", format_args!("a credit has a NULL column"));
            };
            account.posted = account.posted.clone() + amount.clone();
            account.version += 1;
            account.changed = true;
            self.entries.push(Entry {
                account_id: id,
                version: account.version,
                transfer_id: *transfer_id,
                user_id: account.user_id,
                amount: amount.clone(),
                balance_after: account.posted.clone(),
                created_at: *created_at,
            });
        }
        credits.len()
    }

    fn entry(&mut self, id: Uuid, transfer_id: Uuid, amount: AnyNumeric) {
        let now = self.now;
        let account = self.change(id);
        account.posted = account.posted.clone() + amount.clone();
        account.version += 1;
        let entry = Entry {
            account_id: id,
            version: account.version,
            transfer_id,
            user_id: account.user_id,
            amount,
            balance_after: account.posted.clone(),
            created_at: now,
        };
        self.entries.push(entry);
    }

    /// Moves `amount` from `debit` to `credit` at once.
    fn post(&mut self, transfer_id: Uuid, debit: Uuid, credit: Uuid, amount: &AnyNumeric) -> Result<(), ContractError> {
        self.account(debit).check_available(amount)?;
        self.entry(debit, transfer_id, AnyNumeric::from(0) - amount.clone());
        if self.account(credit).exclusive {
            self.entry(credit, transfer_id, amount.clone());
        } else {
            let user_id = self.account(credit).user_id;
            self.hot_credits.push(HotCredit {
                account_id: credit,
                id: new_v7(),
                transfer_id,
                user_id,
                amount: amount.clone(),
            });
        }
        Ok(())
    }

    /// Reserves `amount` of `debit`'s available balance for a hold crediting `credit`.
    fn hold(&mut self, debit: Uuid, credit: Uuid, amount: &AnyNumeric) -> Result<(), ContractError> {
        let account = self.change(debit);
        account.check_available(amount)?;
        account.pending_debits = account.pending_debits.clone() + amount.clone();
        if !self.account(credit).hot {
            let account = self.change(credit);
            account.pending_credits = account.pending_credits.clone() + amount.clone();
        }
        Ok(())
    }

    /// Releases what a hold of `amount` reserved.
    fn release(&mut self, debit: Uuid, credit: Uuid, amount: &AnyNumeric) {
        let account = self.change(debit);
        account.pending_debits = account.pending_debits.clone() - amount.clone();
        if !self.account(credit).hot {
            let account = self.change(credit);
            account.pending_credits = account.pending_credits.clone() - amount.clone();
        }
    }

    /// Writes the queued transfers (in key order, so two calls naming the same keys wait for
    /// each other in one order), every changed account, and the entries and hot credits, row
    /// by row through the table (src/postgres/writer.rs). A key taken meanwhile by a call that
    /// did not share our accounts fails the unique index with 23505 (one sharing them was
    /// waited for when they were locked, and found by `transfer`).
    fn write(&mut self) {
        let mut transfers = std::mem::take(&mut self.transfers);
        transfers.sort_by(|a, b| a.key.cmp(&b.key));
        let mut w = Writes::new();
        let updated_at = timestamptz(backend::now()).into_datum();
        let now = self.now.into_datum();
        let empty = RawJsonb::from_jsonb(JsonB(serde_json::json!({})));
        for t in &transfers {
            let (debit, credit) = (&self.accounts[&t.debit], &self.accounts[&t.credit]);
            w.insert(
                &TRANSFER_ROW,
                &[
                    t.id.into_datum(),
                    t.debit.into_datum(),
                    t.credit.into_datum(),
                    debit.user_id.into_datum(),
                    credit.user_id.into_datum(),
                    t.amount.clone().into_datum(),
                    debit.currency.as_str().into_datum(),
                    t.status.into_datum(),
                    t.expires_at.into_datum(),
                    t.pending_id.into_datum(),
                    t.key.as_deref().into_datum(),
                    t.transaction_id.into_datum(),
                    Some(t.metadata.as_ref().unwrap_or(&empty).datum()),
                    now,
                ],
            );
        }
        for a in self.accounts.values_mut().filter(|a| a.changed) {
            a.tid = w.update(
                &ACCOUNT_BALANCE,
                a.tid,
                &[
                    (0, a.posted.clone().into_datum()),
                    (1, a.pending_debits.clone().into_datum()),
                    (2, a.pending_credits.clone().into_datum()),
                    (3, a.version.into_datum()),
                    (4, updated_at),
                ],
            );
            a.changed = false;
        }
        for e in self.entries.drain(..) {
            w.insert(
                &ENTRY_ROW,
                &[
                    e.account_id.into_datum(),
                    e.version.into_datum(),
                    e.transfer_id.into_datum(),
                    e.user_id.into_datum(),
                    e.amount.into_datum(),
                    e.balance_after.into_datum(),
                    e.created_at.into_datum(),
                ],
            );
        }
        for h in self.hot_credits.drain(..) {
            w.insert(
                &HOT_CREDIT_ROW,
                &[
                    h.account_id.into_datum(),
                    h.id.into_datum(),
                    h.transfer_id.into_datum(),
                    h.user_id.into_datum(),
                    h.amount.into_datum(),
                    now,
                ],
            );
        }
        w.finish();
    }
}

/// Runs checked legs in order, all or none; returns their ids. `batch` names the legs in
/// messages (`p_transfers[i]`). `looked_up`: the caller found none of the keys under the
/// statement's snapshot already.
fn transfer(legs: Vec<Leg>, batch: bool, looked_up: bool) -> Vec<Uuid> {
    let in_leg = |i: usize, e: ContractError| -> ContractError {
        if !batch {
            return e;
        }
        match e {
            ContractError::Refused(r, m) => ContractError::Refused(r, format!("p_transfers[{i}]: {m}")),
            ContractError::NoDataFound(m) => ContractError::NoDataFound(format!("p_transfers[{i}]: {m}")),
            ContractError::UniqueViolation(m) => ContractError::UniqueViolation(format!("p_transfers[{i}]: {m}")),
            other => other.in_element("p_transfers", i),
        }
    };
    // A replay of a committed key reads one index entry: no lock, no write.
    let mut ids: Vec<Option<Uuid>> = Vec::with_capacity(legs.len());
    for (i, leg) in legs.iter().enumerate() {
        let first = leg
            .key
            .as_deref()
            .filter(|_| !looked_up)
            .and_then(|k| lookup_key(k, Seen::Statement, &leg.amount).map(|f| (k, f)));
        ids.push(first.map(|(k, f)| f.replay(k, leg).map_err(|e| in_leg(i, e)).or_raise()));
    }
    if ids.iter().all(Option::is_some) {
        return ids.into_iter().flatten().collect();
    }
    let todo: Vec<usize> = (0..legs.len()).filter(|&i| ids[i].is_none()).collect();
    let plans = plans();
    learn_hot(&plans, &todo.iter().map(|&i| legs[i].credit).collect::<Vec<_>>());
    let mut changed = Vec::new();
    let mut credited = Vec::new();
    for &i in &todo {
        let leg = &legs[i];
        changed.push(leg.debit);
        if known_hot(leg.credit) {
            credited.push(leg.credit);
        } else {
            changed.push(leg.credit);
        }
    }
    // A hold on a hot account changes its row (its pending debits); a hold crediting it does not.
    let mut ledger = Ledger::lock(plans, &changed, &credited).or_raise();
    // A concurrent call with the same key: one that shares the debit account (every writer
    // locks it exclusively) committed while we waited for it; one on other accounts may still
    // be in flight, and is waited for here, as its unique index entry would make us wait. What
    // it wrote is replayed, or refused with 23505 naming the differences. (In REPEATABLE READ a
    // call that changed our accounts after our snapshot already failed our lock with 40001.)
    // Waited for in key order (two batches with crossing keys wait in one order), judged in
    // the order given (the first leg in error is the one named).
    let mut keyed: Vec<usize> = todo.iter().copied().filter(|&i| legs[i].key.is_some()).collect();
    keyed.sort_by(|&a, &b| legs[a].key.cmp(&legs[b].key));
    let mut taken: Vec<(usize, FirstUse)> = keyed
        .into_iter()
        .filter_map(|i| {
            lookup_key(legs[i].key.as_deref().expect("keyed"), Seen::Settled, &legs[i].amount).map(|f| (i, f))
        })
        .collect();
    taken.sort_by_key(|(i, _)| *i);
    for (i, first) in taken {
        let key = legs[i].key.as_deref().expect("keyed");
        ids[i] = Some(first.replay(key, &legs[i]).map_err(|e| in_leg(i, e)).or_raise());
    }
    let todo: Vec<usize> = todo.into_iter().filter(|&i| ids[i].is_none()).collect();
    let now = backend::now();
    let mut run: Vec<(usize, Uuid)> = Vec::with_capacity(todo.len());
    for &i in &todo {
        let leg = &legs[i];
        let id = new_v7();
        let amount = leg.amount.value();
        let check = |ledger: &Ledger| -> Result<(), ContractError> {
            let (debit, credit) = (ledger.account(leg.debit), ledger.account(leg.credit));
            if debit.currency != credit.currency {
                return Err(ContractError::Refused(
                    Refusal::CurrencyMismatch,
                    format!(
                        "p_credit_account_id: account {} is in {}, the debit account {} in {}: a transfer has one currency",
                        credit.id, credit.currency, debit.id, debit.currency
                    ),
                ));
            }
            debit.check_active()?;
            credit.check_active()
        };
        check(&ledger).map_err(|e| in_leg(i, e)).or_raise();
        ledger.transfers.push(TransferRow {
            id,
            debit: leg.debit,
            credit: leg.credit,
            amount: amount.clone(),
            status: if leg.hold_seconds.is_some() { PENDING } else { POSTED },
            expires_at: leg.hold_seconds.map(|s| timestamptz(now.saturating_add(i64::from(s) * 1_000_000))),
            pending_id: None,
            key: leg.key.clone(),
            transaction_id: leg.transaction_id,
            metadata: leg.metadata.clone(),
        });
        apply(&mut ledger, leg, id, &amount).map_err(|e| in_leg(i, e)).or_raise();
        run.push((i, id));
    }
    ledger.write();
    for (i, id) in run {
        ids[i] = Some(id);
    }
    ids.into_iter().map(|id| id.expect("every leg ran")).collect()
}

/// What leg `leg` (transfer `id`, of `amount`) does to the locked accounts.
fn apply(ledger: &mut Ledger, leg: &Leg, id: Uuid, amount: &AnyNumeric) -> Result<(), ContractError> {
    if leg.hold_seconds.is_some() {
        ledger.hold(leg.debit, leg.credit, amount)
    } else {
        ledger.post(id, leg.debit, leg.credit, amount)
    }
}

/// Moves money between two accounts, at once or as a hold; see the COMMENT in sql/wallets.sql.
#[pg_extern(volatile, parallel_unsafe)]
fn wallet_transfer(
    p_debit_account_id: Option<Uuid>,
    p_credit_account_id: Option<Uuid>,
    p_amount: Option<RawNumeric>,
    p_idempotency_key: default!(Option<&str>, "NULL"),
    p_hold_seconds: default!(Option<i32>, "NULL"),
    p_transaction_id: default!(Option<Uuid>, "NULL"),
    p_metadata: default!(Option<RawJsonb>, "'{}'"),
) -> Uuid {
    let is_object = p_metadata.as_ref().is_none_or(|m| m.check_object("p_metadata").is_ok());
    let metadata = p_metadata;
    let leg = Leg::check(
        p_debit_account_id,
        p_credit_account_id,
        p_amount.map(Amount::Arg),
        p_idempotency_key.map(str::to_owned),
        p_hold_seconds.map(i64::from),
        p_transaction_id,
        metadata,
        is_object,
    )
    .or_raise();
    // A replay: one index read, nothing else built.
    if let Some(key) = leg.key.as_deref() {
        if let Some(first) = lookup_key(key, Seen::Statement, &leg.amount) {
            return first.replay(key, &leg).or_raise();
        }
    }
    transfer(vec![leg], false, true)[0]
}

/// Several transfers in one call, all or none, ids in input order.
#[pg_extern(volatile, parallel_unsafe)]
fn wallet_transfer_batch(p_transfers: Option<RawJsonb>) -> SetOfIterator<'static, Uuid> {
    let transfers = required(p_transfers, "p_transfers").or_raise();
    if !transfers.is_array() {
        ContractError::invalid("p_transfers", "must be a JSON array of transfer objects").raise();
    }
    let plans = plans();
    let rows = plans.parse_batch.query(&[transfers.as_arg()], |row| {
        (
            row.get::<i64>(0).unwrap_or(0) as usize,
            row.get::<String>(1).unwrap_or_default(),
            row.get::<String>(2),
            row.get::<Uuid>(3),
            row.get::<Uuid>(4),
            row.get::<AnyNumeric>(5),
            row.get::<String>(6),
            row.get::<i64>(7),
            row.get::<Uuid>(8),
            row.get::<JsonB>(9),
        )
    });
    if rows.is_empty() || rows.len() > MAX_BATCH_TRANSFERS {
        ContractError::invalid(
            "p_transfers",
            format!("must hold 1 to {MAX_BATCH_TRANSFERS} transfers, got {}", rows.len()),
        )
        .raise();
    }
    let mut legs = Vec::with_capacity(rows.len());
    let mut keys = std::collections::HashSet::new();
    for (i, kind, unknown, debit, credit, amount, key, hold, transaction, metadata) in rows {
        let check = || -> Result<Leg, ContractError> {
            if kind != "object" {
                return Err(ContractError::invalid(
                    "p_transfers",
                    format!("[{i}] must be a JSON object, got a {kind}"),
                ));
            }
            if let Some(unknown) = unknown {
                return Err(ContractError::invalid("p_transfers", format!("[{i}] has unknown fields: {unknown}")));
            }
            if let Some(key) = &key {
                if !keys.insert(key.clone()) {
                    return Err(ContractError::invalid(
                        "p_transfers",
                        format!("[{i}] repeats idempotency_key {key:?} of an earlier transfer of the batch"),
                    ));
                }
            }
            let is_object = metadata.as_ref().is_none_or(|m| m.0.is_object());
            let metadata = metadata.map(RawJsonb::from_jsonb);
            Leg::check(debit, credit, amount.map(Amount::Value), key, hold, transaction, metadata, is_object)
                .map_err(|e| e.in_element("p_transfers", i))
        };
        legs.push(check().or_raise());
    }
    SetOfIterator::new(transfer(legs, true, false))
}

enum Resolution {
    /// Post the hold, in full (None) or this much of it.
    Post(Option<(AnyNumeric, String)>),
    Void,
    /// Release it if it lapsed (maintenance); nothing to do otherwise.
    Expire,
}

/// Posts, voids or expires hold `id`. Returns the posting transfer's id for a post, the hold's
/// for a void or an expiry, None when an expiry found nothing to do.
fn resolve(id: Uuid, resolution: Resolution) -> Result<Option<Uuid>, ContractError> {
    let plans = plans();
    let accounts = plans.hold_accounts.query(&[id.into()], |row| (row.get::<Uuid>(0), row.get::<Uuid>(1)));
    let Some(&(Some(debit), Some(credit))) = accounts.first() else {
        return Err(ContractError::NoDataFound(format!("wallet transfer {id} does not exist")));
    };
    let mut ledger = lock_for_holds(&plans, &[(debit, credit)], false)?;
    let result = resolve_locked(&mut ledger, id, debit, credit, resolution)?;
    ledger.write();
    Ok(result)
}

/// Locks the accounts of holds (debit, credit), all in one go as every writer does (with
/// `free_only`, those no one holds now).
fn lock_for_holds(plans: &Rc<Plans>, holds: &[(Uuid, Uuid)], free_only: bool) -> Result<Ledger, ContractError> {
    learn_hot(plans, &holds.iter().map(|h| h.1).collect::<Vec<_>>());
    let mut changed = Vec::new();
    let mut credited = Vec::new();
    for &(debit, credit) in holds {
        changed.push(debit);
        if known_hot(credit) {
            credited.push(credit);
        } else {
            changed.push(credit);
        }
    }
    Ledger::lock_with(Rc::clone(plans), &changed, &credited, free_only)
}

/// `resolve` once the hold's accounts are locked in `ledger`.
fn resolve_locked(
    ledger: &mut Ledger,
    id: Uuid,
    debit: Uuid,
    credit: Uuid,
    resolution: Resolution,
) -> Result<Option<Uuid>, ContractError> {
    let plans = Rc::clone(&ledger.plans);
    let unknown = || ContractError::NoDataFound(format!("wallet transfer {id} does not exist"));
    // Locked after its accounts, like every writer: concurrent resolutions queue on the
    // accounts first, then find it resolved.
    let hold = plans.lock_hold.query(&[id.into()], |row| {
        (
            row.get::<AnyNumeric>(0),
            row.get::<String>(1).unwrap_or_default(),
            row.get::<TimestampWithTimeZone>(2),
            row.get::<Uuid>(3),
            row.get::<Uuid>(4),
            row.get::<Uuid>(5),
        )
    });
    let Some((Some(held), status, expires_at, transaction_id, d, c)) = hold.into_iter().next() else {
        return Err(unknown());
    };
    if d != Some(debit) || c != Some(credit) {
        return Err(ContractError::SerializationFailure(format!(
            "wallet transfer {id} changed while it was read; retry"
        )));
    }
    let Some(expires_at) = expires_at else {
        return Err(ContractError::Refused(
            Refusal::HoldNotOpen,
            format!("wallet transfer {id} is not a hold: it was posted at once"),
        ));
    };
    let now = backend::now();
    let lapsed = pg_sys::TimestampTz::from(expires_at) <= now;
    if let Resolution::Expire = resolution {
        if status != PENDING || !lapsed {
            return Ok(None);
        }
    } else if status != PENDING {
        return Err(ContractError::Refused(Refusal::HoldNotOpen, format!("wallet hold {id} is {status}")));
    } else if lapsed {
        return Err(ContractError::Refused(
            Refusal::HoldNotOpen,
            format!("wallet hold {id} expired at {expires_at}; it is released by run_maintenance()"),
        ));
    }
    ledger.release(debit, credit, &held);
    let (result, new_status) = match resolution {
        Resolution::Post(amount) => {
            let amount = match amount {
                None => held.clone(),
                Some((amount, text)) => {
                    if amount > held {
                        return Err(ContractError::Refused(
                            Refusal::ExceedsHold,
                            format!("cannot post {text} of wallet hold {id}: it holds {held}"),
                        ));
                    }
                    amount
                }
            };
            ledger.account(debit).check_active()?;
            ledger.account(credit).check_active()?;
            let posting = new_v7();
            ledger.transfers.push(TransferRow {
                id: posting,
                debit,
                credit,
                amount: amount.clone(),
                status: POSTED,
                expires_at: None,
                pending_id: Some(id),
                key: None,
                transaction_id,
                metadata: None,
            });
            ledger.post(posting, debit, credit, &amount)?;
            (posting, POSTED)
        }
        Resolution::Void => (id, VOIDED),
        Resolution::Expire => (id, EXPIRED),
    };
    plans.resolve_hold.execute(&[id.into(), new_status.into(), timestamptz(now).into()]);
    Ok(Some(result))
}

#[pg_extern(volatile, parallel_unsafe)]
fn post_wallet_hold(p_transfer_id: Option<Uuid>, p_amount: default!(Option<AnyNumeric>, "NULL")) -> Uuid {
    let id = required(p_transfer_id, "p_transfer_id").or_raise();
    let amount = p_amount.map(|a| check_amount(a.normalize().to_owned()).map(|text| (a, text))).transpose().or_raise();
    resolve(id, Resolution::Post(amount)).or_raise().expect("a post returns its id")
}

#[pg_extern(volatile, parallel_unsafe)]
fn void_wallet_hold(p_transfer_id: Option<Uuid>) -> bool {
    let id = required(p_transfer_id, "p_transfer_id").or_raise();
    resolve(id, Resolution::Void).or_raise().is_some()
}

/// Releases lapsed holds, up to EXPIRE_PER_RUN, whose accounts no one holds now: maintenance
/// takes what is free and never waits (it runs several steps in one transaction, and waiting
/// there while holding what an earlier step locked could deadlock with a writer). A hold whose
/// account is busy is released by the next run.
#[pg_extern(volatile, parallel_unsafe, name = "_expire_wallet_holds")]
fn expire_wallet_holds() -> i64 {
    let plans = plans();
    let due: Vec<(Uuid, Uuid, Uuid)> = plans
        .due_holds
        .query(&[timestamptz(backend::now()).into()], |row| {
            (row.get::<Uuid>(0), row.get::<Uuid>(1), row.get::<Uuid>(2))
        })
        .into_iter()
        .filter_map(|(id, d, c)| Some((id?, d?, c?)))
        .collect();
    if due.is_empty() {
        return 0;
    }
    let mut ledger = lock_for_holds(&plans, &due.iter().map(|&(_, d, c)| (d, c)).collect::<Vec<_>>(), true).or_raise();
    let mut expired = 0;
    for (id, debit, credit) in due {
        if !ledger.holds(debit, true) || !ledger.holds(credit, !known_hot(credit)) {
            continue;
        }
        if resolve_locked(&mut ledger, id, debit, credit, Resolution::Expire).or_raise().is_some() {
            expired += 1;
        }
    }
    ledger.write();
    expired
}

/// Folds one hot account's credits (0 for an account that is not hot; with `free_only`, 0 for
/// one someone holds now, whose next debit folds it anyway).
fn fold_account(plans: &Rc<Plans>, id: Uuid, free_only: bool) -> Result<i64, ContractError> {
    // Locking a hot account exclusively folds it.
    let ledger = Ledger::lock_with(Rc::clone(plans), &[id], &[], free_only)?;
    Ok(ledger.folded as i64)
}

#[pg_extern(volatile, parallel_unsafe, name = "_fold_wallet_credits")]
fn fold_wallet_credits(p_account_id: Option<Uuid>) -> i64 {
    let id = required(p_account_id, "p_account_id").or_raise();
    fold_account(&plans(), id, false).or_raise()
}

#[pg_extern(volatile, parallel_unsafe, name = "_fold_all_wallet_credits")]
fn fold_all_wallet_credits() -> i64 {
    let plans = plans();
    // Maintenance: only the accounts no one holds now (see expire_wallet_holds).
    let accounts = plans.hot_accounts.query(&[], |row| row.get::<Uuid>(0));
    let mut folded = 0;
    for id in accounts.into_iter().flatten() {
        folded += fold_account(&plans, id, true).or_raise();
    }
    folded
}
