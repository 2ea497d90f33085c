//! The queues' native paths: the message queue's claim (waiting for work when asked, one message
//! of a group at a time), and the receipts every claim of the four queues hands out (message_queue,
//! whatsapp_message_queue, background_jobs, notification_deliveries): acknowledge, give back or
//! extend by receipt, one at a time or many in one statement.
//!
//! A receipt is `<queue letter>:<id>:<delivery>`: the item and the number of the claim that
//! handed it out (the table's `deliveries`, which every claim counts up and nothing counts down).
//! Only the current claim's receipt acts, and only while the item is in flight: one from an
//! earlier claim (the lease passed and the item was delivered again) is stale, EQ001, and
//! changes nothing. The tables carry the receipt as a generated column, so every claim function
//! returns it with the row.

#![forbid(unsafe_code)]

use crate::error::{check_range, required, ContractError, OrRaise, Refusal};
use crate::ids::new_v7;
use crate::postgres::backend;
use crate::postgres::datum::{timestamptz, RawJsonb, RowOf, TableRowType};
use crate::postgres::plan::{prepared, Plan, PlanSlot};
use crate::postgres::relation::{Column, Table, TableSpec};
use crate::postgres::writer::Writes;
use crate::postgres::{srf, wait};
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Longest a read may wait for work (10 minutes).
pub const MAX_WAIT_MS: i32 = 600_000;
/// Longest lease a claim or an extension gives (12 hours), as the claim functions.
pub const MAX_VISIBILITY_SECONDS: i32 = 43_200;
/// A waiting read looks again at least this often, whatever wakes it: a wake can be missed
/// while it runs its claim (src/postgres/wait.rs), and a message due later (a backoff) wakes
/// nobody.
const LOOK_AGAIN_MS: i64 = 100;
/// The error a message's lease leaves when it passes without an acknowledgement.
const LEASE_PASSED: &str = "visibility timeout passed without an acknowledgement";

// ---------------------------------------------------------------------------------------------
// The four queues, as a receipt names them.

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Queue {
    Message,
    WhatsApp,
    Job,
    Notification,
}

impl Queue {
    const ALL: [Queue; 4] = [Queue::Message, Queue::WhatsApp, Queue::Job, Queue::Notification];

    fn letter(self) -> char {
        match self {
            Queue::Message => 'm',
            Queue::WhatsApp => 'w',
            Queue::Job => 'j',
            Queue::Notification => 'n',
        }
    }

    fn table(self) -> &'static TableSpec {
        match self {
            Queue::Message => &MESSAGE_QUEUE,
            Queue::WhatsApp => &WHATSAPP_QUEUE,
            Queue::Job => &JOBS,
            Queue::Notification => &DELIVERIES,
        }
    }

    /// What the item is called in messages.
    fn what(self) -> &'static str {
        match self {
            Queue::Message => "message",
            Queue::WhatsApp => "WhatsApp message",
            Queue::Job => "job",
            Queue::Notification => "notification delivery",
        }
    }

    /// The status of an item in flight.
    fn claimed(self) -> &'static str {
        match self {
            Queue::Job => "running",
            _ => "processing",
        }
    }

    /// The status an acknowledgement gives.
    fn done(self) -> &'static str {
        match self {
            Queue::Message | Queue::Job => "completed",
            Queue::WhatsApp | Queue::Notification => "sent",
        }
    }

    /// What an acknowledgement sets (`r.provider`, `r.result`: the receipt's extras; $3: now).
    /// The same as the queue's own complete function (sql/queues.sql, sql/notifications.sql).
    fn ack_set(self) -> &'static str {
        match self {
            Queue::Message => "status = 'completed', locked_until = NULL, completed_at = $3, updated_at = $3",
            Queue::WhatsApp | Queue::Notification => {
                "status = 'sent', locked_until = NULL, sent_at = $3, \
                 provider_message_id = coalesce(r.provider, t.provider_message_id), updated_at = $3"
            }
            Queue::Job => {
                "status = 'completed', locked_until = NULL, completed_at = $3, result = r.result, updated_at = $3"
            }
        }
    }

    /// What an acknowledgement without provider message ids or results sets: `ack_set` with
    /// those given as NULL (a provider message id kept, a job's result NULL).
    fn ack_set_bare(self) -> &'static str {
        match self {
            Queue::Message => "status = 'completed', locked_until = NULL, completed_at = $3, updated_at = $3",
            Queue::Job => {
                "status = 'completed', locked_until = NULL, completed_at = $3, result = NULL, updated_at = $3"
            }
            Queue::WhatsApp | Queue::Notification => {
                "status = 'sent', locked_until = NULL, sent_at = $3, updated_at = $3"
            }
        }
    }

    /// What giving an item back sets ($3: the error, {delay}: the retry delay function), as the
    /// queue's own fail function: pending after a backoff, or its dead state past its retries.
    fn nack_set(self, delay: &str) -> String {
        match self {
            Queue::Message | Queue::WhatsApp | Queue::Notification => {
                let (dead, dead_at) = match self {
                    Queue::Message => (
                        "dead_letter",
                        ", dead_lettered_at = CASE WHEN t.retry_count + 1 > t.max_retries THEN now() END",
                    ),
                    Queue::WhatsApp => ("failed", ""),
                    _ => ("dead_letter", ", failed_at = CASE WHEN t.retry_count + 1 > t.max_retries THEN now() END"),
                };
                format!(
                    "retry_count = t.retry_count + 1, \
                     status = CASE WHEN t.retry_count + 1 > t.max_retries THEN '{dead}' ELSE 'pending' END, \
                     scheduled_at = CASE WHEN t.retry_count + 1 > t.max_retries THEN t.scheduled_at \
                                         ELSE now() + {delay}(t.retry_count + 1) END, \
                     locked_until = NULL, last_error = $3, updated_at = now(){dead_at}"
                )
            }
            // A job's claim counted the attempt already.
            Queue::Job => format!(
                "status = CASE WHEN t.attempts >= t.max_attempts THEN 'failed' ELSE 'pending' END, \
                 scheduled_at = CASE WHEN t.attempts >= t.max_attempts THEN t.scheduled_at \
                                     ELSE now() + {delay}(t.attempts) END, \
                 locked_until = NULL, last_error = $3, \
                 completed_at = CASE WHEN t.attempts >= t.max_attempts THEN now() END, updated_at = now()"
            ),
        }
    }
}

static MESSAGE_QUEUE: TableSpec = TableSpec { name: c"message_queue", columns: &[] };
static WHATSAPP_QUEUE: TableSpec = TableSpec { name: c"whatsapp_message_queue", columns: &[] };
static JOBS: TableSpec = TableSpec { name: c"background_jobs", columns: &[] };
static DELIVERIES: TableSpec = TableSpec { name: c"notification_deliveries", columns: &[] };

/// The columns of message_queue a producer gives; the others take their defaults (seq drawn
/// row by row, in the order the rows are written).
static MESSAGE_ROW: TableSpec = TableSpec {
    name: c"message_queue",
    columns: &[
        Column::new(c"id", pg_sys::UUIDOID),
        Column::new(c"queue_name", pg_sys::TEXTOID),
        Column::new(c"message_type", pg_sys::TEXTOID),
        Column::new(c"payload", pg_sys::JSONBOID),
        Column::new(c"priority", pg_sys::INT4OID),
        Column::new(c"scheduled_at", pg_sys::TIMESTAMPTZOID),
        Column::new(c"group_key", pg_sys::TEXTOID),
        Column::new(c"created_at", pg_sys::TIMESTAMPTZOID),
    ],
};

/// The columns of message_queue a claim changes (`claim_through_writer`).
static MESSAGE_CLAIM: TableSpec = TableSpec {
    name: c"message_queue",
    columns: &[
        Column::new(c"retry_count", pg_sys::INT4OID),
        Column::new(c"deliveries", pg_sys::INT4OID),
        Column::new(c"status", pg_sys::TEXTOID),
        Column::new(c"locked_until", pg_sys::TIMESTAMPTZOID),
        Column::new(c"last_error", pg_sys::TEXTOID),
        Column::new(c"dead_lettered_at", pg_sys::TIMESTAMPTZOID),
        Column::new(c"updated_at", pg_sys::TIMESTAMPTZOID),
    ],
};

/// The columns of message_queue an acknowledgement changes (`ack_through_writer`).
static MESSAGE_ACK: TableSpec = TableSpec {
    name: c"message_queue",
    columns: &[
        Column::new(c"status", pg_sys::TEXTOID),
        Column::new(c"locked_until", pg_sys::TIMESTAMPTZOID),
        Column::new(c"completed_at", pg_sys::TIMESTAMPTZOID),
        Column::new(c"updated_at", pg_sys::TIMESTAMPTZOID),
    ],
};

/// message_queue's row type, which read_messages returns.
pub struct MessageQueue;
impl TableRowType for MessageQueue {
    const NAME: &'static str = "message_queue";
}

// ---------------------------------------------------------------------------------------------
// Receipts.

/// A receipt as read: its queue, item and delivery.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Receipt {
    queue: Queue,
    id: pgrx::Uuid,
    delivery: i32,
}

impl Receipt {
    fn parse(text: &str) -> Option<Receipt> {
        let mut parts = text.splitn(3, ':');
        let (letter, id, delivery) = (parts.next()?, parts.next()?, parts.next()?);
        let queue = Queue::ALL.into_iter().find(|q| letter.len() == 1 && letter.starts_with(q.letter()))?;
        let id = uuid::Uuid::try_parse(id).ok()?;
        let delivery: i32 = delivery.parse().ok().filter(|d| *d > 0)?;
        Some(Receipt { queue, id: pgrx::Uuid::from_bytes(*id.as_bytes()), delivery })
    }
}

/// What happened to one receipt.
#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    /// Acknowledged now.
    Acked,
    /// Already acknowledged with this receipt (a retried acknowledgement).
    AlreadyAcked,
    /// Given back: the item's new status (pending, or its dead state).
    GivenBack(String),
    /// The lease extended until then.
    Extended(pg_sys::TimestampTz),
    /// Not the current claim's receipt, or the item is no longer in flight under it.
    Stale { status: String, delivery: i32 },
    /// No such item.
    Unknown,
    /// Not a receipt.
    Invalid,
}

impl Outcome {
    fn name(&self) -> String {
        match self {
            Outcome::Acked => "acked".to_owned(),
            Outcome::AlreadyAcked => "already_acked".to_owned(),
            Outcome::GivenBack(status) => status.clone(),
            Outcome::Extended(_) => "extended".to_owned(),
            Outcome::Stale { .. } => "stale".to_owned(),
            Outcome::Unknown => "unknown".to_owned(),
            Outcome::Invalid => "invalid".to_owned(),
        }
    }

    /// The error a single-receipt call raises for an outcome that did nothing.
    fn error(&self, receipt: &str, queue: Option<Queue>) -> Option<ContractError> {
        let what = queue.map_or("item", Queue::what);
        match self {
            Outcome::Stale { status, delivery } => Some(ContractError::Refused(
                Refusal::StaleReceipt,
                format!("receipt {receipt} is no longer current: the {what} is {status} (delivery {delivery})"),
            )),
            Outcome::Unknown => Some(ContractError::NoDataFound(format!("no {what} has receipt {receipt}"))),
            Outcome::Invalid => Some(ContractError::invalid(
                "p_receipt",
                format!("must be a receipt as a claim returns it (<queue>:<id>:<delivery>), got {receipt:?}"),
            )),
            _ => None,
        }
    }
}

/// The statements of one queue's receipts, prepared once per backend (again after its table changed).
struct ReceiptPlans {
    ack: Plan,
    /// `ack` for receipts without provider message ids or results (ack_receipts): two arrays to
    /// unnest instead of four, two of them all NULL.
    ack_bare: Plan,
    nack: Plan,
    extend: Plan,
    /// Where receipts that did nothing stand: (id, deliveries, status).
    lookup: Plan,
    /// The items receipts name while in flight, locked (FOR NO KEY UPDATE), for
    /// `ack_through_writer`: (ctid, id, deliveries).
    lock: Plan,
}

thread_local! {
    static MESSAGE_PLANS: PlanSlot<ReceiptPlans> = const { RefCell::new(None) };
    static WHATSAPP_PLANS: PlanSlot<ReceiptPlans> = const { RefCell::new(None) };
    static JOB_PLANS: PlanSlot<ReceiptPlans> = const { RefCell::new(None) };
    static DELIVERY_PLANS: PlanSlot<ReceiptPlans> = const { RefCell::new(None) };
}

fn receipt_plans(queue: Queue) -> Rc<ReceiptPlans> {
    let slot = match queue {
        Queue::Message => &MESSAGE_PLANS,
        Queue::WhatsApp => &WHATSAPP_PLANS,
        Queue::Job => &JOB_PLANS,
        Queue::Notification => &DELIVERY_PLANS,
    };
    prepared(slot, queue.table(), |table| prepare_receipts(queue, table))
}

fn prepare_receipts(queue: Queue, table: &Table) -> ReceiptPlans {
    use pg_sys::{INT4ARRAYOID, JSONBARRAYOID, TEXTARRAYOID, TEXTOID, TIMESTAMPTZOID, UUIDARRAYOID};
    let t = &table.ext.qualified;
    let claimed = queue.claimed();
    let delay = table.ext.sibling("_retry_delay");
    // The receipts that act: the item's current claim, still in flight. (The status compared
    // under COLLATE "C", the same equality: otherwise the plan, kept generic, would walk the
    // partial index of in-flight rows, dead entries and all, instead of looking each id up.)
    let current = format!("t.id = r.id AND t.deliveries = r.n AND t.status = '{claimed}' COLLATE \"C\"");
    ReceiptPlans {
        ack: Plan::prepare(
            &format!(
                "UPDATE {t} t SET {set} FROM unnest($1, $2, $4, $5) AS r(id, n, provider, result) \
                 WHERE {current} RETURNING t.id, t.deliveries, t.status",
                set = queue.ack_set()
            ),
            &[UUIDARRAYOID, INT4ARRAYOID, TIMESTAMPTZOID, TEXTARRAYOID, JSONBARRAYOID],
        ),
        ack_bare: Plan::prepare(
            &format!(
                "UPDATE {t} t SET {set} FROM unnest($1, $2) AS r(id, n) \
                 WHERE {current} RETURNING t.id, t.deliveries, t.status",
                set = queue.ack_set_bare()
            ),
            &[UUIDARRAYOID, INT4ARRAYOID, TIMESTAMPTZOID],
        ),
        nack: Plan::prepare(
            &format!(
                "UPDATE {t} t SET {set} FROM unnest($1, $2) AS r(id, n) WHERE {current} RETURNING t.id, t.deliveries, t.status",
                set = queue.nack_set(&delay)
            ),
            &[UUIDARRAYOID, INT4ARRAYOID, TEXTOID],
        ),
        extend: Plan::prepare(
            &format!(
                "UPDATE {t} t SET locked_until = $3, updated_at = now() FROM unnest($1, $2) AS r(id, n) \
                 WHERE {current} RETURNING t.id, t.deliveries, t.status"
            ),
            &[UUIDARRAYOID, INT4ARRAYOID, TIMESTAMPTZOID],
        ),
        lookup: Plan::prepare(
            &format!("SELECT t.id, t.deliveries, t.status FROM {t} t WHERE t.id = ANY ($1)"),
            &[UUIDARRAYOID],
        ),
        // The ids and deliveries as two sets, not joined pairwise: one index scan instead of
        // one per receipt (30 µs less for ten); `ack_through_writer` pairs them. In id order:
        // two calls acknowledging overlapping sets lock in the same order, and the plan is an
        // index scan, which marks the versions it finds dead in the index (a bitmap scan does
        // not, and btree then cleans its pages by visiting the heap: 27 µs a call of ten).
        lock: Plan::prepare(
            &format!(
                "SELECT t.ctid, t.id, t.deliveries FROM {t} t \
                 WHERE t.id = ANY ($1) AND t.deliveries = ANY ($2) AND t.status = '{claimed}' COLLATE \"C\" \
                 ORDER BY t.id FOR NO KEY UPDATE"
            ),
            &[UUIDARRAYOID, INT4ARRAYOID],
        ),
    }
}

/// What to do with a queue's receipts.
enum Action<'a> {
    /// Acknowledge, with each receipt's provider message id and result (None: none given).
    Ack {
        providers: &'a [Option<String>],
        results: &'a [Option<&'a RawJsonb>],
    },
    GiveBack {
        error: Option<&'a str>,
    },
    Extend {
        until: pg_sys::TimestampTz,
    },
}

/// An item a receipt changed: its id, and (its delivery, status after, what was done).
type Changed = (pgrx::Uuid, (i32, String, Outcome));

/// The item a receipt statement changed, from its row (id, delivery, status after).
fn changed_row(row: &crate::postgres::plan::ResultRow, outcome: impl Fn(&str) -> Outcome) -> Option<Changed> {
    let status = row.get::<String>(2)?;
    let done = outcome(&status);
    Some((row.get::<pgrx::Uuid>(0)?, (row.get::<i32>(1)?, status, done)))
}

/// Runs `action` on parsed receipts (None: not a receipt), in one statement per queue; the
/// outcome of each, in their order.
fn act(receipts: &[Option<Receipt>], action: &Action<'_>) -> Vec<Outcome> {
    let mut outcomes: Vec<Option<Outcome>> =
        receipts.iter().map(|r| if r.is_none() { Some(Outcome::Invalid) } else { None }).collect();
    for queue in Queue::ALL {
        let mine: Vec<usize> = (0..receipts.len()).filter(|&i| receipts[i].is_some_and(|r| r.queue == queue)).collect();
        if mine.is_empty() {
            continue;
        }
        let plans = receipt_plans(queue);
        let ids: Vec<pgrx::Uuid> = mine.iter().map(|&i| receipts[i].expect("parsed").id).collect();
        let deliveries: Vec<i32> = mine.iter().map(|&i| receipts[i].expect("parsed").delivery).collect();
        // The items the statement changed: their delivery, status after, and what it did.
        let changed: HashMap<pgrx::Uuid, (i32, String, Outcome)> = match action {
            // A message's acknowledgement takes no provider message id or result.
            Action::Ack { .. } if queue == Queue::Message && Writes::updates_as_statement(&MESSAGE_ACK) => {
                ack_through_writer(&plans.lock, &ids, &deliveries)
            }
            Action::Ack { providers, results }
                if providers.iter().all(Option::is_none) && results.iter().all(Option::is_none) =>
            {
                plans.ack_bare.query(
                    &[ids.clone().into(), deliveries.clone().into(), timestamptz(backend::transaction_start()).into()],
                    |row| changed_row(row, |_| Outcome::Acked),
                )
            }
            Action::Ack { providers, results } => {
                let providers: Vec<Option<String>> = mine.iter().map(|&i| providers[i].clone()).collect();
                let results: Vec<Option<&RawJsonb>> = mine.iter().map(|&i| results[i]).collect();
                plans.ack.query(
                    &[
                        ids.clone().into(),
                        deliveries.clone().into(),
                        timestamptz(backend::transaction_start()).into(),
                        providers.into(),
                        crate::postgres::datum::jsonb_array(&results),
                    ],
                    |row| changed_row(row, |_| Outcome::Acked),
                )
            }
            Action::GiveBack { error } => {
                plans.nack.query(&[ids.clone().into(), deliveries.clone().into(), (*error).into()], |row| {
                    changed_row(row, |status| Outcome::GivenBack(status.to_owned()))
                })
            }
            Action::Extend { until } => plans
                .extend
                .query(&[ids.clone().into(), deliveries.clone().into(), timestamptz(*until).into()], |row| {
                    changed_row(row, |_| Outcome::Extended(*until))
                }),
        }
        .into_iter()
        .flatten()
        .collect();
        // The rest did nothing: say why.
        let missing: Vec<pgrx::Uuid> = ids.iter().filter(|id| !changed.contains_key(id)).copied().collect();
        let standing: HashMap<pgrx::Uuid, (i32, String)> = if missing.is_empty() {
            HashMap::new()
        } else {
            let rows = plans.lookup.query(&[missing.into()], |row| {
                Some((row.get::<pgrx::Uuid>(0)?, (row.get::<i32>(1)?, row.get::<String>(2)?)))
            });
            rows.into_iter().flatten().collect()
        };
        let mut acted = std::collections::HashSet::new();
        for &i in &mine {
            let r = receipts[i].expect("parsed");
            let (delivery, status) = match changed.get(&r.id) {
                // The receipt that acted (the first, when a call names the same one twice).
                Some((delivery, _, done)) if *delivery == r.delivery && acted.insert(r.id) => {
                    outcomes[i] = Some(done.clone());
                    continue;
                }
                Some((delivery, status, _)) => (*delivery, status.clone()),
                None => match standing.get(&r.id) {
                    Some((delivery, status)) => (*delivery, status.clone()),
                    None => {
                        outcomes[i] = Some(Outcome::Unknown);
                        continue;
                    }
                },
            };
            let repeated_ack = matches!(action, Action::Ack { .. }) && delivery == r.delivery && status == queue.done();
            outcomes[i] = Some(if repeated_ack { Outcome::AlreadyAcked } else { Outcome::Stale { status, delivery } });
        }
    }
    outcomes.into_iter().map(|o| o.expect("every receipt has an outcome")).collect()
}

/// The acknowledgement of messages as `lock` finds and locks the ones whose receipt is
/// current and the writer updates them (what `ack_set` does, without the UPDATE statement's
/// set-up; see `claim_through_writer`). The items changed, as `act` takes them.
fn ack_through_writer(lock: &Plan, ids: &[pgrx::Uuid], deliveries: &[i32]) -> Vec<Option<Changed>> {
    let locked = lock.query(&[ids.to_vec().into(), deliveries.to_vec().into()], |row| {
        Some((row.get::<pg_sys::ItemPointerData>(0)?, row.get::<pgrx::Uuid>(1)?, row.get::<i32>(2)?))
    });
    let at = timestamptz(backend::transaction_start()).into_datum();
    let mut w = Writes::new();
    let mut changed = Vec::new();
    // A row locked acts when a receipt names it with its delivery (the sets matched it with
    // another receipt's delivery otherwise: it stays as it is, locked until the transaction
    // ends, as a stale receipt's row would be by an UPDATE that looked at it).
    let current: std::collections::HashSet<(pgrx::Uuid, i32)> =
        ids.iter().copied().zip(deliveries.iter().copied()).collect();
    for (tid, id, delivery) in locked.into_iter().flatten().filter(|(_, id, n)| current.contains(&(*id, *n))) {
        let changes = [(0, Queue::Message.done().into_datum()), (1, None), (2, at), (3, at)];
        if w.try_update(&MESSAGE_ACK, tid, &changes).is_some() {
            changed.push(Some((id, (delivery, Queue::Message.done().to_owned(), Outcome::Acked))));
        }
    }
    w.finish();
    changed
}

fn parse_all(receipts: &[Option<String>]) -> Vec<Option<Receipt>> {
    receipts.iter().map(|r| r.as_deref().and_then(Receipt::parse)).collect()
}

/// The receipts of a batch call: at most 1000, none NULL.
fn check_receipts(p_receipts: Option<Vec<Option<String>>>) -> Result<Vec<String>, ContractError> {
    let receipts = required(p_receipts, "p_receipts")?;
    if receipts.len() > 1000 {
        return Err(ContractError::invalid("p_receipts", format!("at most 1000 receipts, got {}", receipts.len())));
    }
    receipts
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.ok_or_else(|| ContractError::NullArgument(format!("p_receipts[{i}]").into())))
        .collect()
}

/// One receipt's outcome, or its error raised (22023 for a malformed receipt, P0002 for an
/// unknown item, EQ001 for a stale receipt).
fn single(receipt: &str, action: &Action<'_>) -> Outcome {
    let parsed = Receipt::parse(receipt);
    let outcome = act(&[parsed], action).swap_remove(0);
    if let Some(e) = outcome.error(receipt, parsed.map(|r| r.queue)) {
        e.raise();
    }
    outcome
}

/// Acknowledges the item a claim handed out with `p_receipt`: true, or false when it was
/// acknowledged with this receipt already. A WhatsApp message or notification delivery takes
/// the provider's message id, a job its result.
#[pg_extern(volatile, parallel_unsafe)]
fn ack_receipt(
    p_receipt: Option<&str>,
    p_provider_message_id: default!(Option<&str>, "NULL"),
    p_result: default!(Option<RawJsonb>, "NULL"),
) -> bool {
    let receipt = required(p_receipt, "p_receipt").or_raise();
    let queue = Receipt::parse(receipt).map(|r| r.queue);
    let check = || -> Result<(), ContractError> {
        if let Some(p) = p_provider_message_id {
            if !matches!(queue, Some(Queue::WhatsApp | Queue::Notification) | None) {
                return Err(ContractError::invalid(
                    "p_provider_message_id",
                    "only a WhatsApp message or notification delivery has one",
                ));
            }
            if p.is_empty() || p.chars().count() > 255 {
                return Err(ContractError::invalid("p_provider_message_id", "must be 1 to 255 characters"));
            }
        }
        if p_result.is_some() && !matches!(queue, Some(Queue::Job) | None) {
            return Err(ContractError::invalid("p_result", "only a job has a result"));
        }
        Ok(())
    };
    check().or_raise();
    let providers = [p_provider_message_id.map(str::to_owned)];
    let results = [p_result.as_ref()];
    single(receipt, &Action::Ack { providers: &providers, results: &results }) == Outcome::Acked
}

/// Acknowledges many items by their receipts in one statement per queue; what happened to each:
/// acked, already_acked, stale (not the current claim's receipt, or no longer in flight),
/// unknown or invalid.
#[pg_extern(volatile, parallel_unsafe)]
fn ack_receipts(
    p_receipts: Option<Vec<Option<String>>>,
) -> srf::TableIterator<'static, (name!(receipt, String), name!(outcome, String))> {
    let receipts = check_receipts(p_receipts).or_raise();
    let none_text = vec![None; receipts.len()];
    let none_json = vec![None; receipts.len()];
    let outcomes = act(
        &parse_all(&receipts.iter().cloned().map(Some).collect::<Vec<_>>()),
        &Action::Ack { providers: &none_text, results: &none_json },
    );
    srf::TableIterator::new(receipts.into_iter().zip(outcomes).map(|(r, o)| (r, o.name())))
}

/// Gives the item a claim handed out with `p_receipt` back: pending again after a backoff, or
/// its dead state past its retries; returns the new status.
#[pg_extern(volatile, parallel_unsafe)]
fn nack_receipt(p_receipt: Option<&str>, p_error: default!(Option<&str>, "NULL")) -> String {
    let receipt = required(p_receipt, "p_receipt").or_raise();
    single(receipt, &Action::GiveBack { error: p_error }).name()
}

/// Gives many items back by their receipts; what happened to each: the new status (pending or
/// the dead state), or stale, unknown, invalid.
#[pg_extern(volatile, parallel_unsafe)]
fn nack_receipts(
    p_receipts: Option<Vec<Option<String>>>,
    p_error: default!(Option<&str>, "NULL"),
) -> srf::TableIterator<'static, (name!(receipt, String), name!(outcome, String))> {
    let receipts = check_receipts(p_receipts).or_raise();
    let outcomes =
        act(&parse_all(&receipts.iter().cloned().map(Some).collect::<Vec<_>>()), &Action::GiveBack { error: p_error });
    srf::TableIterator::new(receipts.into_iter().zip(outcomes).map(|(r, o)| (r, o.name())))
}

/// Keeps the lease of the item a claim handed out with `p_receipt` for `p_seconds` from now (a
/// consumer working long); returns the new end of the lease.
#[pg_extern(volatile, parallel_unsafe)]
fn extend_receipt(p_receipt: Option<&str>, p_seconds: Option<i32>) -> TimestampWithTimeZone {
    let receipt = required(p_receipt, "p_receipt").or_raise();
    let seconds = check_range("p_seconds", p_seconds, 0, MAX_VISIBILITY_SECONDS).or_raise();
    let until = backend::now() + i64::from(seconds) * 1_000_000;
    match single(receipt, &Action::Extend { until }) {
        Outcome::Extended(until) => timestamptz(until),
        other => unreachable!("an extension that did nothing raised its error: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The message queue's claim.

struct ClaimPlans {
    /// On the calling statement's snapshot (a read that does not wait, and a waiting read's
    /// first look).
    claim: Plan,
    /// On a snapshot of its own (a waiting read looking again sees what committed meanwhile).
    claim_latest: Plan,
    /// The due messages locked (FOR UPDATE SKIP LOCKED), for `claim_through_writer`: the
    /// same choice as `claim`'s, and what the claim's changes depend on.
    lock: Plan,
    lock_latest: Plan,
    relid: pg_sys::Oid,
}

thread_local! {
    static CLAIM_PLANS: PlanSlot<ClaimPlans> = const { RefCell::new(None) };
}

fn claim_plans() -> Rc<ClaimPlans> {
    prepared(&CLAIM_PLANS, &MESSAGE_QUEUE, |table| {
        use pg_sys::{INT4OID, TEXTOID, TIMESTAMPTZOID};
        let q = &table.ext.qualified;
        // Due: pending and scheduled, or in flight with its lease passed (a failed delivery,
        // counted; past max_retries it goes to dead_letter instead). A message of a group is
        // due only while no earlier message of its group is active (pending or in flight).
        // $1 queue, $2 batch, $3 now (the clock: a waiting read's now moves), $4 lease end.
        // (The claimed ids as an array: a generic plan guesses a LIMIT $2 at a tenth of the
        // queue and would join them by hashing the whole table.)
        let due = format!(
            "FROM {q} q \
             WHERE q.queue_name = $1 AND q.status IN ('pending', 'processing') \
               AND CASE q.status WHEN 'pending' THEN q.scheduled_at <= $3 ELSE q.locked_until <= $3 END \
               AND (q.group_key IS NULL OR NOT EXISTS ( \
                     SELECT 1 FROM {q} g \
                      WHERE g.queue_name = q.queue_name AND g.group_key = q.group_key \
                        AND g.status IN ('pending', 'processing') AND g.seq < q.seq)) \
             ORDER BY q.priority, q.created_at, q.id \
             LIMIT $2 \
               FOR UPDATE SKIP LOCKED"
        );
        let sql = format!(
            "WITH due AS (SELECT q.id {due}), claimed AS ( \
               UPDATE {q} t \
                  SET retry_count = t.retry_count + (t.status = 'processing')::int, \
                      deliveries = t.deliveries + 1, \
                      status = CASE WHEN t.status = 'processing' AND t.retry_count + 1 > t.max_retries \
                                    THEN 'dead_letter' ELSE 'processing' END, \
                      locked_until = $4, \
                      last_error = CASE WHEN t.status = 'processing' \
                                        THEN '{LEASE_PASSED}' ELSE t.last_error END, \
                      dead_lettered_at = CASE WHEN t.status = 'processing' AND t.retry_count + 1 > t.max_retries \
                                              THEN $3 END, \
                      updated_at = $3 \
                WHERE t.id = ANY (ARRAY(SELECT due.id FROM due)) \
               RETURNING t AS r, t.status AS s, t.priority AS p, t.created_at AS c, t.id AS i \
             ) \
             SELECT r FROM claimed WHERE s = 'processing' ORDER BY p, c, i"
        );
        // The locked version's ctid (FOR UPDATE follows a row updated since the snapshot to
        // its newest version, checked again).
        let lock = format!("SELECT q.ctid, q.status, q.retry_count, q.max_retries, q.deliveries {due}");
        let lock_types = [TEXTOID, INT4OID, TIMESTAMPTZOID];
        let types = [TEXTOID, INT4OID, TIMESTAMPTZOID, TIMESTAMPTZOID];
        ClaimPlans {
            claim: Plan::prepare(&sql, &types),
            claim_latest: Plan::prepare_latest(&sql, &types),
            lock: Plan::prepare(&lock, &lock_types),
            lock_latest: Plan::prepare_latest(&lock, &lock_types),
            relid: table.ext.relid,
        }
    })
}

/// Claims up to `p_batch_size` due messages of `p_queue_name` for
/// `p_visibility_timeout_seconds`; with `p_wait_ms`, waits that long at most for one to come.
#[pg_extern(volatile, parallel_unsafe, requires = ["events"])]
fn read_messages(
    p_queue_name: Option<&str>,
    p_batch_size: default!(Option<i32>, 10),
    p_visibility_timeout_seconds: default!(Option<i32>, 30),
    p_wait_ms: default!(Option<i32>, 0),
) -> SetOfIterator<'static, RowOf<MessageQueue>> {
    let check = || -> Result<_, ContractError> {
        Ok((
            required(p_queue_name, "p_queue_name")?,
            check_range("p_batch_size", p_batch_size, 1, 1000)?,
            check_range("p_visibility_timeout_seconds", p_visibility_timeout_seconds, 0, MAX_VISIBILITY_SECONDS)?,
            check_range("p_wait_ms", p_wait_ms, 0, MAX_WAIT_MS)?,
        ))
    };
    let (queue, batch, lease, wait_ms) = check().or_raise();
    let plans = claim_plans();
    let through_writer = Writes::updates_as_statement(&MESSAGE_CLAIM);
    let start = backend::now();
    let deadline = start + i64::from(wait_ms) * 1000;
    let mut latest = false;
    loop {
        if latest {
            wait::reset();
        }
        let now = backend::now();
        let args: [DatumWithOid<'_>; 4] = [
            queue.into(),
            batch.into(),
            timestamptz(now).into(),
            timestamptz(now + i64::from(lease) * 1_000_000).into(),
        ];
        let rows: Vec<RowOf<MessageQueue>> = if through_writer {
            let lock = if latest { &plans.lock_latest } else { &plans.lock };
            claim_through_writer(lock, queue, batch, now, now + i64::from(lease) * 1_000_000)
        } else {
            let plan = if latest { &plans.claim_latest } else { &plans.claim };
            plan.query(&args, |row| row.row::<MessageQueue>(0, plans.relid)).into_iter().flatten().collect()
        };
        let now = backend::now();
        if !rows.is_empty() || now >= deadline {
            if latest {
                wait::done();
            }
            return SetOfIterator::new(rows);
        }
        if latest {
            wait::sleep(((deadline - now) / 1000 + 1).min(LOOK_AGAIN_MS));
        }
        latest = true;
    }
}

/// The claim of `read_messages` as `lock` chooses and locks the messages and the writer
/// updates them: what the claim statement does, without its UPDATE's set-up (its plan and
/// executor, the nine CHECK constraints built from their text at every execution). The
/// claimed rows, in the claim's order (a message whose lease passed too often goes to
/// dead_letter and is not among them).
fn claim_through_writer(
    lock: &Plan,
    queue: &str,
    batch: i32,
    now: pg_sys::TimestampTz,
    until: pg_sys::TimestampTz,
) -> Vec<RowOf<MessageQueue>> {
    struct Due {
        tid: pg_sys::ItemPointerData,
        redelivery: bool,
        retry_count: i32,
        max_retries: i32,
        deliveries: i32,
    }
    let due = lock.query(&[queue.into(), batch.into(), timestamptz(now).into()], |row| {
        Some(Due {
            tid: row.get(0)?,
            redelivery: row.get::<String>(1)? == "processing",
            retry_count: row.get(2)?,
            max_retries: row.get(3)?,
            deliveries: row.get(4)?,
        })
    });
    let (now, until) = (timestamptz(now).into_datum(), timestamptz(until).into_datum());
    let mut w = Writes::new();
    let mut rows = Vec::new();
    for d in due.into_iter().flatten() {
        let dead = d.redelivery && i64::from(d.retry_count) + 1 > i64::from(d.max_retries);
        let mut changes = vec![
            (0, i32_plus(d.retry_count, i32::from(d.redelivery)).into_datum()),
            (1, i32_plus(d.deliveries, 1).into_datum()),
            (2, if dead { "dead_letter" } else { "processing" }.into_datum()),
            (3, until),
            (5, if dead { now } else { None }),
            (6, now),
        ];
        if d.redelivery {
            changes.push((4, LEASE_PASSED.into_datum()));
        }
        let written = w.update_returning::<MessageQueue>(&MESSAGE_CLAIM, d.tid, &changes);
        rows.extend(written.filter(|_| !dead));
    }
    w.finish();
    rows
}

/// `a + b`, or 22003 as SQL's int4 addition raises.
fn i32_plus(a: i32, b: i32) -> i32 {
    a.checked_add(b).unwrap_or_else(|| {
        crate::error::raise(PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE, "integer out of range")
    })
}

// ---------------------------------------------------------------------------------------------
// The message queue's producer.

struct EnqueuePlans {
    /// Claims the key; no row when the key is taken.
    insert: Plan,
    /// A message without a key: a plain INSERT (ON CONFLICT would insert speculatively, a
    /// lock and a second WAL record per message, for a conflict a NULL key cannot have).
    insert_unkeyed: Plan,
    /// The first message's id, on a snapshot of its own (a racing producer's row committed after
    /// the calling statement began).
    existing: Plan,
}

thread_local! {
    static ENQUEUE_PLANS: PlanSlot<EnqueuePlans> = const { RefCell::new(None) };
}

fn enqueue_plans() -> Rc<EnqueuePlans> {
    prepared(&ENQUEUE_PLANS, &MESSAGE_QUEUE, |table| {
        use pg_sys::{INT4OID, JSONBOID, TEXTOID, TIMESTAMPTZOID, UUIDOID};
        let q = &table.ext.qualified;
        // Ids are chosen by the caller (time-ordered, as the row writer's and the batches').
        EnqueuePlans {
            // created_at from the clock: messages queued by one transaction keep their order.
            insert: Plan::prepare(
                &format!(
                    "INSERT INTO {q} (queue_name, message_type, payload, priority, scheduled_at, idempotency_key, group_key, id, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, pg_catalog.clock_timestamp()) \
                     ON CONFLICT (queue_name, idempotency_key) DO NOTHING RETURNING id"
                ),
                &[TEXTOID, TEXTOID, JSONBOID, INT4OID, TIMESTAMPTZOID, TEXTOID, TEXTOID, UUIDOID],
            ),
            insert_unkeyed: Plan::prepare(
                &format!(
                    "INSERT INTO {q} (queue_name, message_type, payload, priority, scheduled_at, group_key, id, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, pg_catalog.clock_timestamp()) RETURNING id"
                ),
                &[TEXTOID, TEXTOID, JSONBOID, INT4OID, TIMESTAMPTZOID, TEXTOID, UUIDOID],
            ),
            existing: Plan::prepare_latest(
                &format!("SELECT id FROM {q} WHERE queue_name = $1 AND idempotency_key = $2"),
                &[TEXTOID, TEXTOID],
            ),
        }
    })
}

/// 22004 when a required text is NULL, 22023 unless it has 1 to `max` characters (the native
/// twin of bootstrap.sql's _check_text).
fn check_text<'a>(param: &'static str, value: Option<&'a str>, max: usize) -> Result<&'a str, ContractError> {
    let v = required(value, param)?;
    let n = v.chars().count();
    if n == 0 || n > max {
        return Err(ContractError::invalid(param, format!("must be 1 to {max} characters, got {n}")));
    }
    Ok(v)
}

/// Queues a message; a repeated (queue, key) returns the first message's id. See the COMMENT in
/// sql/queues.sql.
#[pg_extern(volatile, parallel_unsafe, requires = ["events"])]
#[allow(clippy::too_many_arguments)]
fn enqueue_message(
    p_queue_name: Option<&str>,
    p_message_type: Option<&str>,
    p_payload: Option<RawJsonb>,
    p_priority: default!(Option<i32>, 5),
    p_scheduled_at: default!(Option<TimestampWithTimeZone>, "now()"),
    p_idempotency_key: default!(Option<&str>, "NULL"),
    p_group_key: default!(Option<&str>, "NULL"),
) -> pgrx::Uuid {
    let check = || -> Result<_, ContractError> {
        let queue = check_text("p_queue_name", p_queue_name, 255)?;
        let kind = check_text("p_message_type", p_message_type, 255)?;
        let payload = required(p_payload, "p_payload")?;
        let priority = check_range("p_priority", p_priority, 1, 10)?;
        let at = required(p_scheduled_at, "p_scheduled_at")?;
        if !at.is_finite() {
            return Err(ContractError::invalid("p_scheduled_at", format!("must be a finite time, got {at}")));
        }
        let key = p_idempotency_key.map(|k| check_text("p_idempotency_key", Some(k), 255)).transpose()?;
        let group = p_group_key.map(|g| check_text("p_group_key", Some(g), 255)).transpose()?;
        Ok((queue, kind, payload, priority, at, key, group))
    };
    let (queue, kind, payload, priority, at, key, group) = check().or_raise();
    let id = new_v7();
    let Some(key) = key else {
        let message = NewMessage { kind, payload: payload.datum(), priority, scheduled_at: at.into_inner(), group };
        if write_messages(queue, &[id], &[message], backend::now()) {
            return id;
        }
        return enqueue_plans()
            .insert_unkeyed
            .query(
                &[queue.into(), kind.into(), payload.as_arg(), priority.into(), at.into(), group.into(), id.into()],
                |row| row.get::<pgrx::Uuid>(0),
            )
            .into_iter()
            .flatten()
            .next()
            .unwrap_or_else(|| {
                // Only a DBA's BEFORE trigger returning NULL (or a rule) makes an INSERT store nothing.
                crate::error::raise(
                    PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                    "the message was not stored: a trigger or rule on message_queue suppressed it",
                )
            });
    };
    let plans = enqueue_plans();
    let inserted = plans.insert.query(
        &[queue.into(), kind.into(), payload.as_arg(), priority.into(), at.into(), key.into(), group.into(), id.into()],
        |row| row.get::<pgrx::Uuid>(0),
    );
    if let Some(id) = inserted.into_iter().flatten().next() {
        return id;
    }
    // The key was taken: the first message's id.
    plans
        .existing
        .query(&[queue.into(), key.into()], |row| row.get::<pgrx::Uuid>(0))
        .into_iter()
        .flatten()
        .next()
        .unwrap_or_else(|| {
            ContractError::NoDataFound(format!(
                "the message with idempotency key {key:?} was not stored and no message holds the key: \
                 it was deleted while it was read, or a trigger or rule on message_queue suppressed this one"
            ))
            .raise()
        })
}

// ---------------------------------------------------------------------------------------------
// Many messages in one call.

struct BatchPlans {
    /// The first element that is not a message: (index from 0, why); when every element is a
    /// message, the first with a key (why NULL); no row when none has one.
    check: Plan,
    /// Inserts the elements in key order (ids, seq and created_at in the order given).
    insert: Plan,
    /// The same for a batch without keys: no ON CONFLICT (which inserts speculatively: a lock
    /// and a second WAL record per row), nothing to look up after.
    insert_unkeyed: Plan,
    /// Each element's id, a taken key giving the first message's (on a snapshot of its own).
    ids: Plan,
}

thread_local! {
    static BATCH_PLANS: PlanSlot<BatchPlans> = const { RefCell::new(None) };
}

/// Why an element of enqueue_messages' array is not a message (NULL when it is one), over
/// `m.e` (the element). A CASE, not OR: only a number may be cast.
const BAD_MESSAGE: &str = "CASE \
    WHEN pg_catalog.jsonb_typeof(m.e) <> 'object' THEN 'must be a JSON object' \
    WHEN EXISTS (SELECT 1 FROM pg_catalog.jsonb_object_keys(m.e) k \
                  WHERE k NOT IN ('message_type', 'payload', 'priority', 'delay_seconds', 'idempotency_key', 'group_key')) \
         THEN 'has fields other than message_type, payload, priority, delay_seconds, idempotency_key, group_key' \
    WHEN pg_catalog.jsonb_typeof(m.e -> 'message_type') IS DISTINCT FROM 'string' \
         OR pg_catalog.length(m.e ->> 'message_type') NOT BETWEEN 1 AND 255 \
         THEN 'message_type must be a string of 1 to 255 characters' \
    WHEN NOT m.e ? 'payload' THEN 'payload is required' \
    WHEN m.e ? 'priority' AND CASE WHEN pg_catalog.jsonb_typeof(m.e -> 'priority') = 'number' \
                                   THEN (m.e ->> 'priority')::pg_catalog.numeric NOT IN (1, 2, 3, 4, 5, 6, 7, 8, 9, 10) \
                                   ELSE true END \
         THEN 'priority must be an integer from 1 to 10' \
    WHEN m.e ? 'delay_seconds' AND CASE WHEN pg_catalog.jsonb_typeof(m.e -> 'delay_seconds') = 'number' \
                                        THEN (m.e ->> 'delay_seconds')::pg_catalog.numeric NOT BETWEEN 0 AND 31536000 \
                                        ELSE true END \
         THEN 'delay_seconds must be a number from 0 to 31536000' \
    WHEN pg_catalog.jsonb_typeof(m.e -> 'idempotency_key') NOT IN ('string', 'null') \
         OR pg_catalog.length(m.e ->> 'idempotency_key') NOT BETWEEN 1 AND 255 \
         THEN 'idempotency_key must be a string of 1 to 255 characters' \
    WHEN pg_catalog.jsonb_typeof(m.e -> 'group_key') NOT IN ('string', 'null') \
         OR pg_catalog.length(m.e ->> 'group_key') NOT BETWEEN 1 AND 255 \
         THEN 'group_key must be a string of 1 to 255 characters' \
  END";

/// The batch INSERT: every element a row (its id from $3, seq in the order given, created_at
/// from $4 plus a microsecond per position). With keys, rows go in in key order and a taken key
/// inserts nothing: two batches naming the same keys in other orders wait for each other
/// instead of deadlocking on the unique index.
fn batch_insert(q: &str, seq: &str, keyed: bool) -> Plan {
    use pg_sys::{JSONBOID, TEXTOID, TIMESTAMPTZOID, UUIDARRAYOID};
    let (order, conflict) = if keyed {
        ("m.e ->> 'idempotency_key', m.i", "ON CONFLICT (queue_name, idempotency_key) DO NOTHING")
    } else {
        ("m.i", "")
    };
    Plan::prepare(
        &format!(
            "WITH m AS MATERIALIZED ( \
               SELECT m.e, m.i, pg_catalog.nextval('{seq}'::pg_catalog.regclass) AS seq \
                 FROM pg_catalog.jsonb_array_elements($2) WITH ORDINALITY m(e, i)) \
             INSERT INTO {q} (id, queue_name, message_type, payload, priority, scheduled_at, \
                              idempotency_key, group_key, seq, created_at) \
             SELECT $3[m.i], $1, m.e ->> 'message_type', m.e -> 'payload', \
                    COALESCE((m.e ->> 'priority')::pg_catalog.numeric::pg_catalog.int4, 5), \
                    pg_catalog.now() + pg_catalog.make_interval(secs => COALESCE(pg_catalog.round((m.e ->> 'delay_seconds')::pg_catalog.numeric, 6)::pg_catalog.float8, 0)), \
                    m.e ->> 'idempotency_key', m.e ->> 'group_key', m.seq, \
                    $4 + pg_catalog.make_interval(secs => m.i / 1000000.0) \
               FROM m ORDER BY {order} \
             {conflict}"
        ),
        &[TEXTOID, JSONBOID, UUIDARRAYOID, TIMESTAMPTZOID],
    )
}

fn batch_plans() -> Rc<BatchPlans> {
    prepared(&BATCH_PLANS, &MESSAGE_QUEUE, |table| {
        use pg_sys::{JSONBOID, TEXTOID, UUIDARRAYOID};
        let q = &table.ext.qualified;
        let seq = table.ext.sibling("message_queue_seq").replace('\'', "''");
        BatchPlans {
            check: Plan::prepare(
                &format!(
                    "SELECT x.i - 1, x.why FROM ( \
                       SELECT m.i, {BAD_MESSAGE} AS why, (m.e ->> 'idempotency_key') IS NOT NULL AS keyed \
                         FROM pg_catalog.jsonb_array_elements($1) WITH ORDINALITY m(e, i)) x \
                      WHERE x.why IS NOT NULL OR x.keyed ORDER BY x.why IS NULL, x.i LIMIT 1"
                ),
                &[JSONBOID],
            ),
            // seq is drawn in the order given (the CTE runs once, element by element), the rows
            // go in in key order: two batches naming the same keys in other orders wait for
            // each other instead of deadlocking on the unique index.
            insert: batch_insert(q, &seq, true),
            insert_unkeyed: batch_insert(q, &seq, false),
            ids: Plan::prepare_latest(
                &format!(
                    "SELECT COALESCE(q.id, $3[m.i]) \
                       FROM pg_catalog.jsonb_array_elements($2) WITH ORDINALITY m(e, i) \
                       LEFT JOIN {q} q ON q.queue_name = $1 AND q.idempotency_key = m.e ->> 'idempotency_key' \
                      ORDER BY m.i"
                ),
                &[TEXTOID, JSONBOID, UUIDARRAYOID],
            ),
        }
    })
}

/// Queues up to 1000 messages in one statement; returns their ids in the order given. See the
/// COMMENT in sql/queues.sql.
#[pg_extern(volatile, parallel_unsafe, requires = ["events"])]
fn enqueue_messages(p_queue_name: Option<&str>, p_messages: Option<RawJsonb>) -> SetOfIterator<'static, pgrx::Uuid> {
    let check = || -> Result<_, ContractError> {
        let queue = check_text("p_queue_name", p_queue_name, 255)?;
        let messages = required(p_messages, "p_messages")?;
        let n = match messages.array_len() {
            Some(n @ 1..=1000) => n,
            _ => {
                return Err(ContractError::invalid(
                    "p_messages",
                    "must be a JSON array of 1 to 1000 message objects".to_owned(),
                ))
            }
        };
        Ok((queue, messages, n))
    };
    let (queue, messages, n) = check().or_raise();
    // Ids chosen here, in the order given, so each element knows its row.
    let ids: Vec<pgrx::Uuid> = (0..n).map(|_| new_v7()).collect();
    let at = backend::now();
    let text = messages.text();
    if let Some(plain) = text.to_str().ok().and_then(plain_messages) {
        if write_messages(queue, &ids, &plain, at) {
            return SetOfIterator::new(ids);
        }
    }
    let plans = batch_plans();
    let checked = plans.check.query(&[messages.as_arg()], |row| (row.get::<i64>(0), row.get::<String>(1)));
    let keyed = match checked.into_iter().next() {
        Some((Some(i), Some(why))) => ContractError::invalid(format!("p_messages[{i}]"), why).raise(),
        found => found.is_some(),
    };
    let at = timestamptz(at);
    let insert = if keyed { &plans.insert } else { &plans.insert_unkeyed };
    let inserted = insert.execute(&[queue.into(), messages.as_arg(), ids.clone().into(), at.into()]);
    if inserted as usize != n && !keyed {
        // Only a DBA's BEFORE trigger returning NULL (or a rule) makes an INSERT store less.
        crate::error::raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!(
                "{} of {n} messages were not stored: a trigger or rule on message_queue suppressed them",
                n - inserted as usize
            ),
        );
    }
    if inserted as usize == n {
        return SetOfIterator::new(ids);
    }
    // Some keys were taken: those elements get the first message's id (a new snapshot, which
    // sees this statement's rows and what committed meanwhile).
    let found: Vec<pgrx::Uuid> = plans
        .ids
        .query(&[queue.into(), messages.as_arg(), ids.into()], |row| row.get::<pgrx::Uuid>(0))
        .into_iter()
        .flatten()
        .collect();
    SetOfIterator::new(found)
}

/// A message to write: what its row takes from the call (the rest is `write_messages`').
struct NewMessage<'a> {
    kind: &'a str,
    payload: pg_sys::Datum,
    priority: i32,
    scheduled_at: pg_sys::TimestampTz,
    group: Option<&'a str>,
}

/// Writes messages without keys row by row through the table (src/postgres/writer.rs), each
/// with its id, created_at `at` plus a microsecond per position from 1: the rows an INSERT
/// statement would store, without the statement's set-up (its plan, the nine CHECK constraints
/// built from their text, the executor). False, with nothing written, when a statement must
/// insert them instead (`Writes::inserts_as_statement`: row-level security applies to the
/// caller, or a BEFORE ROW trigger, a transition-table trigger or a rule could change what is
/// stored).
fn write_messages(queue: &str, ids: &[pgrx::Uuid], messages: &[NewMessage<'_>], at: pg_sys::TimestampTz) -> bool {
    let mut w = Writes::new();
    if !w.inserts_as_statement(&MESSAGE_ROW) {
        w.finish();
        return false;
    }
    let queue = queue.into_datum();
    for (i, (id, m)) in ids.iter().zip(messages).enumerate() {
        w.insert(
            &MESSAGE_ROW,
            &[
                id.into_datum(),
                queue,
                m.kind.into_datum(),
                Some(m.payload),
                m.priority.into_datum(),
                timestamptz(m.scheduled_at).into_datum(),
                m.group.into_datum(),
                timestamptz(at + i as i64 + 1).into_datum(),
            ],
        );
    }
    w.finish();
    true
}

/// An element of enqueue_messages' array as JSON text, its values unread.
type Element<'a> = HashMap<&'a str, &'a serde_json::value::RawValue>;

/// The messages of enqueue_messages' array (its jsonb output text) when every element is a
/// plain message without a key: an object of the known fields, message_type a string of 1 to
/// 255 characters, a payload, priority and delay_seconds whole numbers in range (as jsonb
/// writes them), group_key NULL or a string of 1 to 255 characters. None for anything else:
/// the statement path checks those (BAD_MESSAGE, whose error a bad element gets) and inserts
/// messages with keys. Payloads are read back from their text, which is the jsonb's own.
fn plain_messages(text: &str) -> Option<Vec<NewMessage<'_>>> {
    fn string(raw: &serde_json::value::RawValue) -> Option<&str> {
        // Only a string without escapes is read in place; others go by the statement.
        let s: &str = serde_json::from_str(raw.get()).ok()?;
        (1..=255).contains(&s.chars().count()).then_some(s)
    }
    let elements: Vec<Element<'_>> = serde_json::from_str(text).ok()?;
    let now = backend::transaction_start();
    elements
        .into_iter()
        .map(|e| {
            const FIELDS: [&str; 6] =
                ["message_type", "payload", "priority", "delay_seconds", "idempotency_key", "group_key"];
            if !e.keys().all(|k| FIELDS.contains(k)) {
                return None;
            }
            let number = |field: &str, default: i32, range: std::ops::RangeInclusive<i32>| match e.get(field) {
                None => Some(default),
                Some(raw) => raw.get().parse::<i32>().ok().filter(|n| range.contains(n)),
            };
            let delay = number("delay_seconds", 0, 0..=31_536_000)?;
            let group = match e.get("group_key").map(|g| g.get()) {
                None | Some("null") => None,
                Some(_) => Some(string(e["group_key"])?),
            };
            if !matches!(e.get("idempotency_key").map(|k| k.get()), None | Some("null")) {
                return None;
            }
            Some(NewMessage {
                kind: string(e.get("message_type")?)?,
                payload: RawJsonb::parse(e.get("payload")?.get()).datum(),
                priority: number("priority", 5, 1..=10)?,
                scheduled_at: now + i64::from(delay) * 1_000_000,
                group,
            })
        })
        .collect()
}

/// Statement trigger on message_queue (after INSERT): the transaction's commit wakes the reads
/// that wait for work.
#[pg_trigger]
fn _queue_wake<'a>(
    _trigger: &'a pgrx::PgTrigger<'a>,
) -> Result<Option<pgrx::heap_tuple::PgHeapTuple<'a, pgrx::AllocatedByPostgres>>, std::convert::Infallible> {
    wait::wake_at_commit();
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_parse() {
        let r = Receipt::parse("m:0193a000-0000-7000-8000-000000000001:3").expect("a receipt");
        assert_eq!((r.queue, r.delivery), (Queue::Message, 3));
        assert_eq!(Receipt::parse("j:0193a000-0000-7000-8000-000000000001:1").map(|r| r.queue), Some(Queue::Job));
        for bad in [
            "",
            "m",
            "m:",
            "x:0193a000-0000-7000-8000-000000000001:1",
            "m:not-a-uuid:1",
            "m:0193a000-0000-7000-8000-000000000001:0",
            "m:0193a000-0000-7000-8000-000000000001:-1",
            "m:0193a000-0000-7000-8000-000000000001:1:2",
            "mm:0193a000-0000-7000-8000-000000000001:1",
        ] {
            assert_eq!(Receipt::parse(bad), None, "{bad:?}");
        }
    }
}
