//! Writing rows without a statement: inserts and updates through the table access method, the
//! way logical replication's apply worker writes (ExecSimpleRelationInsert/Update): the
//! table's BEFORE and AFTER row triggers (and, for inserts, its INSERT statement triggers, once
//! per call), NOT NULL and CHECK constraints, every index, unique checks that wait for an
//! in-flight inserter, column defaults for the columns not given. Also what an INSERT does with
//! `ON CONFLICT (key) DO NOTHING` (Postgres's speculative insertion, step by step), and into a
//! partitioned table (the row routed to its partition, `partition::leaf_for`).
//!
//! Why: an SQL statement rebuilds at every execution what does not change between calls — the
//! CHECK constraints parsed from their catalog text and planned (13 on wallet_accounts), the
//! partial-index predicates, trigger WHEN clauses, the executor nodes. For a wallet transfer
//! that was most of the backend's time (perf: 21 % in ExecConstraints alone, 30 % in executor
//! set-up and the CTE's sub-plans). Here all of it is built once per backend and table and kept
//! until a relcache invalidation of the table arrives (any DDL: a constraint, trigger, index or
//! column added or dropped); what belongs to one call (the relation and its indexes opened and
//! locked, tuple slots and their buffer pins, the after-trigger query level) is opened and
//! released by every call.
//!
//! What a statement would do and this does not: row-level security policies (the writers are
//! the ledger's rules, run by service_role; the caller's INSERT/UPDATE privilege on the table is
//! checked; `inserts_as_statement` tells a caller when they would apply), transition tables
//! for triggers that read them, rules (a table with rules is refused), and, for updates, UPDATE
//! statement triggers (not fired) and column-specific (UPDATE OF) triggers (refused: an update
//! here names no columns); `updates_as_statement` tells a caller when any of these apply. Stored
//! generated columns are computed again on every update, from all the columns.

use super::datum::{RowOf, TableRowType};
use super::relation::{self, not_as_created, Table, TableSpec};
use crate::error::raise;
use pgrx::prelude::*;
use std::cell::RefCell;
use std::rc::Rc;

/// Where an inserted row's attribute comes from.
enum Fill {
    /// The value given for this column of the spec.
    Given(usize),
    /// The column's default, evaluated per row.
    Default(*mut pg_sys::ExprState),
    Null,
}

/// What is kept per backend for one table: built under one resolution of the table
/// (relation::table), all of it in a memory context of its own.
struct Target {
    spec: &'static TableSpec,
    table: Rc<Table>,
    /// The relation written: the spec's table, or one of its partitions.
    relid: pg_sys::Oid,
    /// For a partition the spec's (partitioned) table routes rows to.
    partition: Option<Partition>,
    cxt: pg_sys::MemoryContext,
    estate: *mut pg_sys::EState,
    rri: *mut pg_sys::ResultRelInfo,
    index_oids: Vec<pg_sys::Oid>,
    fill: Vec<Fill>,
    /// The stored generated columns (attribute index) and their expressions, computed again by
    /// every update: with no range table, an update names no columns, and 15 would compute
    /// none of them unless a BEFORE UPDATE trigger exists (16 and later compute all).
    generated: Vec<(usize, *mut pg_sys::ExprState)>,
    /// Virtual slots for the row written, and a slot of the table's kind for the row updated.
    new_slot: *mut pg_sys::TupleTableSlot,
    old_slot: *mut pg_sys::TupleTableSlot,
    /// Set while a call uses it. Still set when a call takes it means the call before failed
    /// half-way: the abort released its locks, pins and references, not this code, so the
    /// pointers into them are not to be touched; it is built again.
    in_use: bool,
}

/// What a partition's target adds: its relation is not the spec's, so its own invalidations are
/// watched; rows come in the partitioned table's layout, converted when the partition's differs.
struct Partition {
    watched: relation::Watched,
    /// convert_tuples_by_name from the partitioned table's descriptor (NULL: the same layout).
    map: *mut pg_sys::TupleConversionMap,
}

impl Target {
    /// Frees what the target holds. Its slots hold no pin and no reference counted
    /// descriptor (released at the end of every call, or by the abort of a failed one).
    fn discard(mut self) {
        let cxt = std::mem::replace(&mut self.cxt, std::ptr::null_mut());
        // SAFETY: the context was created by `build` and is deleted once, here.
        unsafe { pg_sys::MemoryContextDelete(cxt) };
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        // Only a target lost to an error gets here with its context (see ORPHANS).
        if !self.cxt.is_null() {
            ORPHANS.with_borrow_mut(|o| o.push(self.cxt));
        }
    }
}

/// Deletes the contexts of targets lost to earlier errors.
fn delete_orphans() {
    for cxt in ORPHANS.with_borrow_mut(std::mem::take) {
        // SAFETY: an orphan is referenced by nothing, and deleted once.
        unsafe { pg_sys::MemoryContextDelete(cxt) };
    }
}

thread_local! {
    static TARGETS: RefCell<Vec<Target>> = const { RefCell::new(Vec::new()) };
    /// Contexts of targets lost to an error (dropped while it unwound, or a build that failed):
    /// deleted by the next call, never while an error is being handled.
    static ORPHANS: RefCell<Vec<pg_sys::MemoryContext>> = const { RefCell::new(Vec::new()) };
}

/// A table opened by this call, with the privileges checked so far.
struct Open {
    target: Target,
    rel: pg_sys::Relation,
    insert_checked: bool,
    update_checked: bool,
    /// Rows were inserted by this call: its INSERT statement triggers fire (BEFORE at the
    /// first row, AFTER at `finish`), as for one INSERT statement.
    inserting: bool,
}

impl Open {
    /// Fires the table's BEFORE INSERT statement triggers at the call's first row, as one
    /// INSERT statement would (their AFTER ones fire at `finish`).
    fn begin_inserting(&mut self) {
        if !self.inserting {
            self.inserting = true;
            // SAFETY: the target's executor state, inside the call's after-trigger query level.
            unsafe { pg_sys::ExecBSInsertTriggers(self.target.estate, self.target.rri) };
        }
    }
}

/// One call's writes. Rows written are visible to the call's later statements after `finish`
/// (which advances the command counter); an error before it aborts them with the statement.
pub struct Writes {
    open: Vec<Open>,
}

impl Default for Writes {
    fn default() -> Self {
        Self::new()
    }
}

impl Writes {
    pub fn new() -> Writes {
        Writes { open: Vec::new() }
    }

    /// Inserts one row into `spec`'s table: `values[i]` for the spec's column `i` (None:
    /// NULL), the column defaults for the other columns.
    pub fn insert(&mut self, spec: &'static TableSpec, values: &[Option<pg_sys::Datum>]) {
        let open = self.open_for_insert(spec, values);
        let t = &open.target;
        // SAFETY: the target was built for this relation, which is open and locked; `fill`
        // gives the slot a value (or NULL) for every attribute; per-row memory is reset after
        // the row is written.
        unsafe {
            fill(t, values);
            pg_sys::ExecSimpleRelationInsert(t.rri, t.estate, t.new_slot);
            reset_row(t);
        }
    }

    /// Inserts one row as `insert` does unless the table holds one with the same value in the
    /// spec's column `key`, as `INSERT ... ON CONFLICT (key) DO NOTHING` does: true when the
    /// row went in. The same protocol (Postgres's speculative insertion): an in-flight inserter
    /// of the key is waited for, and of concurrent callers with one new key exactly one inserts
    /// it. In REPEATABLE READ or SERIALIZABLE a conflicting row the transaction's snapshot does
    /// not see is 40001, as for the statement. The table's unique index on that one column is
    /// the arbiter (42P10 without one); a BEFORE INSERT row trigger is refused (55000: callers
    /// ask `inserts_as_statement` first).
    pub fn insert_unless_conflict(
        &mut self,
        spec: &'static TableSpec,
        key: usize,
        values: &[Option<pg_sys::Datum>],
    ) -> bool {
        let open = self.open_for_insert(spec, values);
        let rel = open.rel;
        let t = &open.target;
        // SAFETY: as in `insert`; the steps are ExecInsert's for ON CONFLICT DO NOTHING, each
        // on the open relation and the target's executor state; the arbiter list lives in
        // per-row memory, reset at the end.
        unsafe {
            let triggers = (*t.rri).ri_TrigDesc;
            if !triggers.is_null() && (*triggers).trig_insert_before_row {
                not_as_created(
                    spec.name,
                    "it has a BEFORE INSERT row trigger, which ON CONFLICT inserts here do not fire",
                );
            }
            let econtext = pg_sys::MakePerTupleExprContext(t.estate);
            let old = pg_sys::MemoryContextSwitchTo((*econtext).ecxt_per_tuple_memory);
            let arbiters = pg_sys::lappend_oid(std::ptr::null_mut(), arbiter_index(spec, t, key));
            pg_sys::MemoryContextSwitchTo(old);
            fill(t, values);
            let slot = t.new_slot;
            compute_generated(t, slot);
            if !(*(*rel).rd_att).constr.is_null() {
                pg_sys::ExecConstraints(t.rri, slot, t.estate);
            }
            if (*(*rel).rd_rel).relispartition {
                pg_sys::ExecPartitionCheck(t.rri, slot, t.estate, true);
            }
            let inserted = loop {
                let mut conflict_tid = pg_sys::ItemPointerData::default();
                if !check_index_constraints(t, slot, &mut conflict_tid, arbiters) {
                    check_conflict_visible(t, rel, conflict_tid);
                    break false;
                }
                let xid = pg_sys::GetCurrentTransactionId();
                let token = pg_sys::SpeculativeInsertionLockAcquire(xid);
                let am = &*(*rel).rd_tableam;
                am.tuple_insert_speculative.expect("a table access method")(
                    rel,
                    slot,
                    (*t.estate).es_output_cid,
                    0,
                    std::ptr::null_mut(),
                    token,
                );
                let mut conflict = false;
                let recheck = insert_index_tuples(t, slot, &mut conflict, arbiters);
                am.tuple_complete_speculative.expect("a table access method")(rel, slot, token, !conflict);
                pg_sys::SpeculativeInsertionLockRelease(xid);
                if !conflict {
                    pg_sys::ExecARInsertTriggers(t.estate, t.rri, slot, recheck, std::ptr::null_mut());
                    break true;
                }
                // Another inserter of the key got in between the check and the insert (which
                // was taken back): look again, waiting for it.
            };
            reset_row(t);
            inserted
        }
    }

    /// Inserts one row into `spec`'s partitioned table as an INSERT into it does: the row (the
    /// table's column defaults for the columns not given) goes to the partition tuple routing
    /// chooses (`partition::leaf_for`) and is written there as `insert` writes a plain table's;
    /// the table's INSERT statement triggers fire, and the partition's row triggers. False, with
    /// nothing written, when the writer would not do what the statement does: a partitioning it
    /// does not route, or a partition that is not a plain table, has rules or BEFORE INSERT row
    /// triggers (which could suppress the row); the caller inserts with a statement then. A
    /// table made plain by hand is written as `insert` writes it. Callers ask
    /// `inserts_as_statement` first (the table's own policies and triggers).
    pub fn insert_routed(&mut self, spec: &'static TableSpec, values: &[Option<pg_sys::Datum>]) -> bool {
        assert_eq!(values.len(), spec.columns.len(), "a value for every column of the spec");
        self.open(spec, pg_sys::ACL_INSERT as pg_sys::AclMode);
        let parent = self.position(spec, None).expect("opened just above");
        let (rel, slot, table) = {
            let p = &self.open[parent];
            (p.rel, p.target.new_slot, Rc::clone(&p.target.table))
        };
        if !partitioned(rel) {
            // Made a plain table by hand: written as one.
            self.insert(spec, values);
            return true;
        }
        // SAFETY: the parent's target was built for this relation, open and locked; the row's
        // values (defaults evaluated in its per-row memory) stay there until reset below.
        let leaf = unsafe {
            fill(&self.open[parent].target, values);
            super::partition::leaf_for(rel, slot)
        };
        let written = leaf.and_then(|leaf| self.open_partition(spec, table, rel, leaf)).map(|i| {
            self.open[parent].begin_inserting();
            let t = &self.open[i].target;
            // SAFETY: the partition's target is open for this call; its slot gets the row in
            // its own layout (converted by name, or the same values), then written and reset.
            unsafe {
                let map = t.partition.as_ref().expect("a partition's target").map;
                clear(t.new_slot);
                if map.is_null() {
                    let natts = (*(*slot).tts_tupleDescriptor).natts as usize;
                    std::ptr::copy_nonoverlapping((*slot).tts_values, (*t.new_slot).tts_values, natts);
                    std::ptr::copy_nonoverlapping((*slot).tts_isnull, (*t.new_slot).tts_isnull, natts);
                    pg_sys::ExecStoreVirtualTuple(t.new_slot);
                } else {
                    pg_sys::execute_attr_map_slot((*map).attrMap, slot, t.new_slot);
                }
                pg_sys::ExecSimpleRelationInsert(t.rri, t.estate, t.new_slot);
                reset_row(t);
            }
        });
        // SAFETY: the parent's per-row memory (the defaults), no longer referenced.
        unsafe {
            let t = &self.open[parent].target;
            reset_row(t);
        }
        written.is_some()
    }

    /// Where `spec`'s table (None) or its partition `relid` is open in this call.
    fn position(&self, spec: &'static TableSpec, partition: Option<pg_sys::Oid>) -> Option<usize> {
        self.open.iter().position(|o| {
            std::ptr::eq(o.target.spec, spec)
                && match partition {
                    None => o.target.partition.is_none(),
                    Some(relid) => o.target.partition.is_some() && o.target.relid == relid,
                }
        })
    }

    /// The partition `relid` of `spec`'s table `parent` (open), opened and locked for this call
    /// as routing opens it (its privileges are not checked: the statement checks the table's);
    /// None when the writer does not write it (see `insert_routed`).
    fn open_partition(
        &mut self,
        spec: &'static TableSpec,
        table: Rc<Table>,
        parent: pg_sys::Relation,
        relid: pg_sys::Oid,
    ) -> Option<usize> {
        if let Some(i) = self.position(spec, Some(relid)) {
            return Some(i);
        }
        // SAFETY: opens and locks the partition (it exists: the parent, locked, lists it); its
        // relcache entry is read while it is open, and closed again when it is not written here.
        let rel = unsafe { pg_sys::table_open(relid, pg_sys::RowExclusiveLock as i32) };
        // SAFETY: as above.
        let writable = unsafe {
            let triggers = (*rel).trigdesc;
            (*(*rel).rd_rel).relkind == pg_sys::RELKIND_RELATION as std::ffi::c_char
                && !(*(*rel).rd_rel).relhasrules
                && (triggers.is_null() || !(*triggers).trig_insert_before_row)
        };
        if !writable {
            // SAFETY: opened above; the lock is kept, as the statement that writes instead takes it.
            unsafe { pg_sys::table_close(rel, pg_sys::NoLock as i32) };
            return None;
        }
        delete_orphans();
        let kept = TARGETS.with_borrow_mut(|targets| {
            let i =
                targets.iter().position(|t| std::ptr::eq(t.spec, spec) && t.partition.is_some() && t.relid == relid)?;
            Some(targets.swap_remove(i))
        });
        let mut target = match kept {
            Some(t)
                if Rc::ptr_eq(&t.table, &table)
                    && !t.in_use
                    && t.partition.as_ref().is_some_and(|p| p.watched.is_current()) =>
            {
                // SAFETY: built for this partition, unchanged since, released by the last call.
                unsafe { reopen(&t, rel) };
                t
            }
            other => {
                if let Some(old) = other {
                    old.discard();
                }
                // Watched from before the target reads the partition (open and locked: a change
                // that matters here waits for this transaction), so a later one is seen.
                let watched = relation::Watched::new(relid);
                // SAFETY: both relations are open and locked.
                unsafe { build(spec, table, rel, Some((parent, watched))) }
            }
        };
        // SAFETY: the target's per-call fields.
        unsafe { ready(&mut target) };
        self.open.push(Open { target, rel, insert_checked: true, update_checked: true, inserting: false });
        Some(self.open.len() - 1)
    }

    /// `spec`'s plain table opened for inserting, its INSERT statement triggers fired before the
    /// call's first row. (A partitioned one is written by `insert_routed`.)
    fn open_for_insert(&mut self, spec: &'static TableSpec, values: &[Option<pg_sys::Datum>]) -> &mut Open {
        assert_eq!(values.len(), spec.columns.len(), "a value for every column of the spec");
        let open = self.open(spec, pg_sys::ACL_INSERT as pg_sys::AclMode);
        if partitioned(open.rel) {
            not_as_created(spec.name, "it is partitioned, which this native writer does not route");
        }
        open.begin_inserting();
        open
    }

    /// Updates the row version `tid` of `spec`'s table: `changes` are (spec column, value), the
    /// other columns keep theirs. Returns the new version's tid. A row is updated at most once
    /// between two `finish`es.
    ///
    /// The caller must hold the row locked (FOR [NO KEY] UPDATE) and `tid` must be the version
    /// it locked (the newest): with no plan to re-check, a row changed by another transaction
    /// under a BEFORE trigger could not be followed (EvalPlanQual has nothing to run). A BEFORE
    /// UPDATE trigger that suppresses the update is an error here (55000): the callers' rows
    /// (balances) must change together or not at all.
    pub fn update(
        &mut self,
        spec: &'static TableSpec,
        tid: pg_sys::ItemPointerData,
        changes: &[(usize, Option<pg_sys::Datum>)],
    ) -> pg_sys::ItemPointerData {
        self.try_update(spec, tid, changes)
            .unwrap_or_else(|| not_as_created(spec.name, "a BEFORE UPDATE trigger suppressed an update of its rows"))
    }

    /// As `update`; None when a BEFORE UPDATE trigger suppressed the update (nothing changed).
    pub fn try_update(
        &mut self,
        spec: &'static TableSpec,
        tid: pg_sys::ItemPointerData,
        changes: &[(usize, Option<pg_sys::Datum>)],
    ) -> Option<pg_sys::ItemPointerData> {
        self.update_with(spec, tid, changes, |slot| {
            // SAFETY: the slot the update wrote from.
            unsafe { (*slot).tts_tid }
        })
    }

    /// As `update`, returning the new version as a composite datum of the table's row type (as
    /// `RETURNING t`), in the current memory context; None when a BEFORE UPDATE trigger
    /// suppressed the update (nothing changed).
    pub fn update_returning<T: TableRowType>(
        &mut self,
        spec: &'static TableSpec,
        tid: pg_sys::ItemPointerData,
        changes: &[(usize, Option<pg_sys::Datum>)],
    ) -> Option<RowOf<T>> {
        assert_eq!(spec.name.to_bytes(), T::NAME.as_bytes(), "a row of the table updated");
        self.update_with(spec, tid, changes, |slot| {
            // SAFETY: the slot holds the row written, with a copy of the table's descriptor (its
            // row type); the datum is a copy in the current context.
            unsafe { RowOf::from_datum_unchecked(pg_sys::ExecFetchSlotHeapTupleDatum(slot)) }
        })
    }

    fn update_with<R>(
        &mut self,
        spec: &'static TableSpec,
        tid: pg_sys::ItemPointerData,
        changes: &[(usize, Option<pg_sys::Datum>)],
        written: impl FnOnce(*mut pg_sys::TupleTableSlot) -> R,
    ) -> Option<R> {
        let open = self.open(spec, pg_sys::ACL_UPDATE as pg_sys::AclMode);
        let rel = open.rel;
        let t = &open.target;
        if partitioned(rel) {
            not_as_created(spec.name, "it is partitioned, which easymo's native updates do not route");
        }
        // SAFETY: reads the open relation's descriptor and triggers.
        unsafe { check_updatable(spec, rel) };
        // SAFETY: as in `insert`; the old version is fetched by its tid (any visibility: it is
        // the version the caller locked) into a slot that pins its buffer until cleared, and
        // the new row copies its values (the update copies them into the new tuple before the
        // pin is released). Generated values are computed in per-row memory, reset after.
        unsafe {
            let (old, new) = (t.old_slot, t.new_slot);
            clear(old);
            clear(new);
            let mut tid = tid;
            let fetch = (*(*rel).rd_tableam).tuple_fetch_row_version.expect("a table access method");
            if !fetch(rel, &mut tid, &raw mut pg_sys::SnapshotAnyData, old) {
                raise(
                    PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE,
                    format!("a locked row of {} was not found; retry", spec.name.to_string_lossy()),
                );
            }
            let natts = t.fill.len();
            pg_sys::slot_getsomeattrs_int(old, natts as i32);
            std::ptr::copy_nonoverlapping((*old).tts_values, (*new).tts_values, natts);
            std::ptr::copy_nonoverlapping((*old).tts_isnull, (*new).tts_isnull, natts);
            for &(column, value) in changes {
                let attnum = t.table.attnum(column);
                assert!(attnum > 0, "an update names columns the table has");
                let i = attnum as usize - 1;
                *(*new).tts_values.add(i) = value.unwrap_or(pg_sys::Datum::from(0));
                *(*new).tts_isnull.add(i) = value.is_none();
            }
            pg_sys::ExecStoreVirtualTuple(new);
            compute_generated(t, new);
            let mut epq: pg_sys::EPQState = std::mem::zeroed();
            epq_init(&mut epq, t.estate);
            pg_sys::ExecSimpleRelationUpdate(t.rri, t.estate, &mut epq, old, new);
            pg_sys::EvalPlanQualEnd(&mut epq);
            // The new version's tid is set by the update; a BEFORE trigger that returned NULL
            // left the slot as it was (a virtual slot has no tid).
            let done = pgrx::itemptr::item_pointer_is_valid(&raw const (*new).tts_tid);
            let result = done.then(|| written(new));
            clear(old);
            reset_row(t);
            result
        }
    }

    /// Ends the call's writes: fires the AFTER row triggers they queued, releases what the
    /// call opened, and makes the rows visible to what the call runs next.
    pub fn finish(mut self) {
        if self.open.is_empty() {
            return;
        }
        // SAFETY: every target was opened by this call (`open`), in this transaction; each is
        // released once, and only then handed back for the next call. A trigger that fails
        // here leaves them in `self`, whose drop marks them for rebuilding.
        unsafe {
            for o in self.open.iter().filter(|o| o.inserting) {
                pg_sys::ExecASInsertTriggers(o.target.estate, o.target.rri, std::ptr::null_mut());
            }
            // No estate of ours: the trigger machinery makes one of its own for firing (and
            // frees it), instead of adding a result relation to a kept one at every call.
            pg_sys::AfterTriggerEndQuery(std::ptr::null_mut());
            for o in std::mem::take(&mut self.open) {
                let Open { mut target, rel, .. } = o;
                let (estate, rri) = (target.estate, target.rri);
                pg_sys::ExecCloseIndices(rri);
                for i in 0..(*rri).ri_NumIndices as usize {
                    *(*rri).ri_IndexRelationDescs.add(i) = std::ptr::null_mut();
                }
                // The slots the triggers made (their descriptor is the relcache's, reference
                // counted by the transaction): dropped, and made again by the next call.
                pg_sys::ExecResetTupleTable((*estate).es_tupleTable, true);
                (*estate).es_tupleTable = std::ptr::null_mut();
                (*rri).ri_TrigOldSlot = std::ptr::null_mut();
                (*rri).ri_TrigNewSlot = std::ptr::null_mut();
                (*rri).ri_ReturningSlot = std::ptr::null_mut();
                clear(target.new_slot);
                clear(target.old_slot);
                (*rri).ri_RelationDesc = std::ptr::null_mut();
                pg_sys::table_close(rel, pg_sys::NoLock as i32);
                target.in_use = false;
                TARGETS.with_borrow_mut(|t| t.push(target));
            }
            pg_sys::CommandCounterIncrement();
        }
    }

    /// Whether rows inserted into `spec`'s table here are the rows an INSERT statement of the
    /// calling role would store: no row-level security policy applies to the role, no BEFORE
    /// ROW trigger may change or suppress a row, no trigger reads a transition table (which
    /// only a statement fills), no rule rewrites the insert. When true, the table is open for
    /// inserting (42501 without the privilege); when false, the caller inserts with a statement
    /// instead, which applies (or refuses) what this writer does not.
    pub fn inserts_as_statement(&mut self, spec: &'static TableSpec) -> bool {
        let (_, rel) = relation::open_current(spec, pg_sys::RowExclusiveLock, "written");
        // SAFETY: reads the open relation's descriptors; check_enable_rls reads the catalogs
        // (and raises, as a statement would, when row_security is off and policies would
        // apply). The lock is kept to the end of the transaction, as a statement's.
        let alike = unsafe {
            let triggers = (*rel).trigdesc;
            let plain_triggers =
                triggers.is_null() || !((*triggers).trig_insert_before_row || (*triggers).trig_insert_new_table);
            let alike = plain_triggers
                && !(*(*rel).rd_rel).relhasrules
                && pg_sys::check_enable_rls((*rel).rd_id, pg_sys::InvalidOid, false)
                    != pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32;
            pg_sys::table_close(rel, pg_sys::NoLock as i32);
            alike
        };
        if alike {
            self.open(spec, pg_sys::ACL_INSERT as pg_sys::AclMode);
        }
        alike
    }

    /// Whether updates of `spec`'s table here do what an UPDATE statement of the calling role
    /// would: no row-level security policy applies to the role, the role may update the whole
    /// table (not only some columns), no rule rewrites the update, and no trigger needs what
    /// only a statement gives (UPDATE statement triggers, UPDATE OF columns, transition
    /// tables). When false, the caller updates with a statement instead. The table is opened
    /// and locked to look, and closed again (the lock kept, as a statement's).
    pub fn updates_as_statement(spec: &'static TableSpec) -> bool {
        let (_, rel) = relation::open_current(spec, pg_sys::RowExclusiveLock, "written");
        // SAFETY: as in `inserts_as_statement`.
        unsafe {
            let triggers = (*rel).trigdesc;
            let plain_triggers = triggers.is_null()
                || !((*triggers).trig_update_before_statement
                    || (*triggers).trig_update_after_statement
                    || (*triggers).trig_update_old_table
                    || (*triggers).trig_update_new_table
                    || (0..(*triggers).numtriggers as usize).any(|i| (*(*triggers).triggers.add(i)).tgnattr > 0));
            let alike = plain_triggers
                && !(*(*rel).rd_rel).relhasrules
                && pg_sys::pg_class_aclcheck((*rel).rd_id, pg_sys::GetUserId(), pg_sys::ACL_UPDATE as pg_sys::AclMode)
                    == pg_sys::AclResult::ACLCHECK_OK
                && pg_sys::check_enable_rls((*rel).rd_id, pg_sys::InvalidOid, false)
                    != pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32;
            pg_sys::table_close(rel, pg_sys::NoLock as i32);
            alike
        }
    }

    /// `spec`'s table opened for this call (once), with `privilege` checked.
    fn open(&mut self, spec: &'static TableSpec, privilege: pg_sys::AclMode) -> &mut Open {
        let i = match self.position(spec, None) {
            Some(i) => i,
            None => {
                let first = self.open.is_empty();
                if first {
                    let command =
                        if privilege == pg_sys::ACL_INSERT as pg_sys::AclMode { c"INSERT" } else { c"UPDATE" };
                    // 25006 in a read-only transaction, as the executor raises for a statement
                    // that writes.
                    super::backend::prevent_write(command);
                }
                let open = open_target(spec);
                if first {
                    // SAFETY: paired with AfterTriggerEndQuery in `finish` (or undone by abort).
                    unsafe { pg_sys::AfterTriggerBeginQuery() };
                }
                self.open.push(open);
                self.open.len() - 1
            }
        };
        let open = &mut self.open[i];
        let checked = if privilege == pg_sys::ACL_INSERT as pg_sys::AclMode {
            &mut open.insert_checked
        } else {
            &mut open.update_checked
        };
        if !*checked {
            // SAFETY: a catalog lookup for an open relation.
            let ok = unsafe { pg_sys::pg_class_aclcheck((*open.rel).rd_id, pg_sys::GetUserId(), privilege) };
            if ok != pg_sys::AclResult::ACLCHECK_OK {
                raise(
                    PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                    format!("permission denied for table {}", spec.name.to_string_lossy()),
                );
            }
            *checked = true;
        }
        open
    }
}

impl Drop for Writes {
    fn drop(&mut self) {
        // Only when a call ends without `finish`: an error is unwinding, and the abort releases
        // what was opened. Nothing of Postgres is touched here; the targets go back marked in
        // use, so the next call builds them again.
        for o in self.open.drain(..) {
            TARGETS.with_borrow_mut(|t| t.push(o.target));
        }
    }
}

/// Opens and locks `spec`'s table for writing and readies its target for this call: the one
/// kept, or a new one when the table changed (or the call before failed with it in use).
fn open_target(spec: &'static TableSpec) -> Open {
    delete_orphans();
    let (table, rel) = relation::open_current(spec, pg_sys::RowExclusiveLock, "written");
    let kept = TARGETS.with_borrow_mut(|targets| {
        let i = targets.iter().position(|t| std::ptr::eq(t.spec, spec) && t.partition.is_none())?;
        Some(targets.swap_remove(i))
    });
    let target = match kept {
        Some(t) if Rc::ptr_eq(&t.table, &table) && !t.in_use => {
            // SAFETY: the target was built for this relation (same resolution, no change since)
            // and released by the last call: its indexes are opened again, its per-call fields
            // set for this one.
            unsafe { reopen(&t, rel) };
            t
        }
        other => {
            if let Some(old) = other {
                old.discard();
            }
            // SAFETY: the relation is open and locked.
            unsafe { build(spec, table, rel, None) }
        }
    };
    let mut target = target;
    // SAFETY: the target's per-call fields.
    unsafe { ready(&mut target) };
    Open { target, rel, insert_checked: false, update_checked: false, inserting: false }
}

/// Readies a target, open for this call, for it: in use, the call's snapshot and command id, no
/// trigger function or index AM state of an earlier call.
unsafe fn ready(target: &mut Target) {
    target.in_use = true;
    // SAFETY: per-call fields of the target's executor state.
    unsafe {
        // A trigger's function is looked up (fmgr_info) when it first fires, in the memory of
        // that call: looked up again in every call, never used from a call that ended.
        let triggers = (*target.rri).ri_TrigDesc;
        if !triggers.is_null() && !(*target.rri).ri_TrigFunctions.is_null() {
            std::ptr::write_bytes((*target.rri).ri_TrigFunctions, 0, (*triggers).numtriggers as usize);
        }
        (*target.estate).es_snapshot = pg_sys::ffi::pg_guard_ffi_boundary(|| super::snapshot::statement());
        (*target.estate).es_output_cid = pg_sys::GetCurrentCommandId(true);
        for i in 0..(*target.rri).ri_NumIndices as usize {
            let info = *(*target.rri).ri_IndexRelationInfo.add(i);
            // What an index AM caches for a statement lives for this call only.
            (*info).ii_AmCache = std::ptr::null_mut();
            (*info).ii_Context = pg_sys::CurrentMemoryContext;
        }
    }
}

/// Opens (and locks) the target's indexes again for this call, as ExecOpenIndices did.
unsafe fn reopen(t: &Target, rel: pg_sys::Relation) {
    // SAFETY: the index list is the one the relation had when the target was built (an index
    // created or dropped invalidates the table's relcache entry, and the target with it).
    unsafe {
        (*t.rri).ri_RelationDesc = rel;
        for (i, &oid) in t.index_oids.iter().enumerate() {
            *(*t.rri).ri_IndexRelationDescs.add(i) = pg_sys::index_open(oid, pg_sys::RowExclusiveLock as i32);
        }
    }
}

/// Builds the target of `spec`'s table, open and locked as `rel`, or of its partition `rel`
/// when `partition_of` gives the (open) partitioned table and the partition's watch; its
/// indexes are left open for this call.
unsafe fn build(
    spec: &'static TableSpec,
    table: Rc<Table>,
    rel: pg_sys::Relation,
    partition_of: Option<(pg_sys::Relation, relation::Watched)>,
) -> Target {
    // SAFETY: `rel` is open and locked; everything is allocated in the new context, which is a
    // child of TopMemoryContext and lives until `discard`.
    unsafe {
        let form = (*rel).rd_rel;
        // A partitioned table is written through its partitions (`insert_routed`); its target
        // fills the row and fires its statement triggers.
        if (*form).relkind != pg_sys::RELKIND_RELATION as std::ffi::c_char && !partitioned(rel) {
            not_as_created(spec.name, "it is no longer a plain or partitioned table");
        }
        if (*form).relhasrules {
            not_as_created(spec.name, "it has rules, which easymo's native writers do not apply");
        }
        let desc = (*rel).rd_att;
        let cxt = pg_sys::AllocSetContextCreateInternal(
            pg_sys::TopMemoryContext,
            c"easymo writer".as_ptr(),
            0,
            8 * 1024,
            8 * 1024 * 1024,
        );
        // An orphan until built: an error while building leaves it to the next call to delete.
        ORPHANS.with_borrow_mut(|o| o.push(cxt));
        let old = pg_sys::MemoryContextSwitchTo(cxt);
        let estate = pg_sys::CreateExecutorState();
        pg_sys::MemoryContextSwitchTo((*estate).es_query_cxt);
        let rri = pg_sys::palloc0(std::mem::size_of::<pg_sys::ResultRelInfo>()).cast::<pg_sys::ResultRelInfo>();
        (*rri).type_ = pg_sys::NodeTag::T_ResultRelInfo;
        pg_sys::InitResultRelInfo(rri, rel, 0, std::ptr::null_mut(), 0);
        if !partitioned(rel) {
            // With what a unique check of its own needs (ON CONFLICT's arbiters:
            // `insert_unless_conflict`). A partitioned table's indexes are its partitions'.
            pg_sys::ExecOpenIndices(rri, true);
        }
        let index_oids =
            (0..(*rri).ri_NumIndices as usize).map(|i| (**(*rri).ri_IndexRelationDescs.add(i)).rd_id).collect();
        // The slots' descriptor is a copy: not reference counted, so a slot kept across
        // transactions holds no resource of one. With its constraints: the values of columns
        // added after a row was stored (ADD COLUMN ... DEFAULT) are among them, and a row
        // read without them would be updated with NULLs there.
        let copy = pg_sys::CreateTupleDescCopyConstr(desc);
        let new_slot = pg_sys::MakeSingleTupleTableSlot(copy, &pg_sys::TTSOpsVirtual);
        let old_slot = pg_sys::MakeSingleTupleTableSlot(copy, pg_sys::table_slot_callbacks(rel));
        let attrs = pgrx::PgTupleDesc::from_pg_unchecked(desc);
        // A partition's rows come filled by the partitioned table's target, with its defaults (a
        // routed row takes the table's, not the partition's).
        let fill = (0..attrs.len())
            .filter(|_| partition_of.is_none())
            .map(|i| {
                let att = attrs.get(i).expect("an attribute");
                let attnum = i as i16 + 1;
                if att.attisdropped {
                    return Fill::Null;
                }
                if let Some(c) = (0..spec.columns.len()).find(|&c| table.attnum(c) == attnum) {
                    return Fill::Given(c);
                }
                if att.attgenerated != 0 {
                    return Fill::Null;
                }
                let default = pg_sys::build_column_default(rel, i32::from(attnum));
                if default.is_null() {
                    return Fill::Null;
                }
                let planned = pg_sys::expression_planner(default.cast());
                Fill::Default(pg_sys::ExecInitExpr(planned, std::ptr::null_mut()))
            })
            .collect();
        let partition = partition_of.map(|(parent, watched)| Partition {
            watched,
            map: pg_sys::convert_tuples_by_name((*parent).rd_att, desc),
        });
        let generated: Vec<(usize, *mut pg_sys::ExprState)> = (0..attrs.len())
            .filter(|&i| {
                let att = attrs.get(i).expect("an attribute");
                !att.attisdropped && att.attgenerated == pg_sys::ATTRIBUTE_GENERATED_STORED as std::ffi::c_char
            })
            .map(|i| {
                // The generation expression, its Vars reading the row being written.
                let expr = pg_sys::build_column_default(rel, i as i32 + 1);
                assert!(!expr.is_null(), "a generated column has its expression");
                (i, pg_sys::ExecPrepareExpr(expr.cast(), estate))
            })
            .collect();
        std::mem::forget(attrs);
        // Which indexes an update here leaves logically unchanged: none of their key columns
        // among those it may change (the spec's and the generated ones), as a statement's
        // index_unchanged_by_update tells from its updated columns. Left to it, with no range
        // table it finds no column changed and hints every index, and btree then tries a
        // bottom-up deletion (a visit to the heap, a sort) before splitting a page of an
        // index whose keys did change: 3 % of a claim of ten's CPU, 1 % for the statement.
        let changed: Vec<i16> = (0..spec.columns.len())
            .map(|c| table.attnum(c))
            .chain(generated.iter().map(|&(i, _)| i as i16 + 1))
            .collect();
        for i in 0..(*rri).ri_NumIndices as usize {
            let info = *(*rri).ri_IndexRelationInfo.add(i);
            let keys = &(&(*info).ii_IndexAttrNumbers)[..(*info).ii_NumIndexKeyAttrs as usize];
            (*info).ii_IndexUnchanged = keys.iter().all(|&k| k != 0 && !changed.contains(&k));
            (*info).ii_CheckedUnchanged = true;
        }
        pg_sys::MemoryContextSwitchTo(old);
        ORPHANS.with_borrow_mut(|o| o.retain(|&c| c != cxt));
        Target {
            spec,
            table,
            relid: (*rel).rd_id,
            partition,
            cxt,
            estate,
            rri,
            index_oids,
            fill,
            generated,
            new_slot,
            old_slot,
            in_use: false,
        }
    }
}

/// An update here names no columns (no range table entry): an UPDATE OF trigger would not be
/// fired. Such a table is refused (55000).
unsafe fn check_updatable(spec: &'static TableSpec, rel: pg_sys::Relation) {
    // SAFETY: an open relation.
    unsafe {
        let triggers = (*rel).trigdesc;
        if !triggers.is_null() {
            for i in 0..(*triggers).numtriggers as usize {
                if (*(*triggers).triggers.add(i)).tgnattr > 0 {
                    not_as_created(
                        spec.name,
                        "it has a column-specific (UPDATE OF) trigger, which easymo's native updates do not fire",
                    );
                }
            }
        }
    }
}

/// An EvalPlanQual state for a row trigger's re-check (needed only when the row changed under
/// a lock, which a caller holding the row's lock never sees).
unsafe fn epq_init(epq: &mut pg_sys::EPQState, estate: *mut pg_sys::EState) {
    // SAFETY: initializes a zeroed state for `estate`, ended by EvalPlanQualEnd.
    unsafe {
        #[cfg(feature = "pg15")]
        pg_sys::EvalPlanQualInitExt(epq, estate, std::ptr::null_mut(), std::ptr::null_mut(), -1, std::ptr::null_mut());
        #[cfg(not(feature = "pg15"))]
        pg_sys::EvalPlanQualInit(epq, estate, std::ptr::null_mut(), std::ptr::null_mut(), -1, std::ptr::null_mut());
    }
}

/// Whether `rel` (open) is a partitioned table.
fn partitioned(rel: pg_sys::Relation) -> bool {
    // SAFETY: an open relation's pg_class row.
    unsafe { (*(*rel).rd_rel).relkind == pg_sys::RELKIND_PARTITIONED_TABLE as std::ffi::c_char }
}

/// Fills the target's new slot with a row to insert: `values[i]` for the spec's column `i`, the
/// column defaults (evaluated in per-row memory) for the others.
unsafe fn fill(t: &Target, values: &[Option<pg_sys::Datum>]) {
    // SAFETY: the slot has the table's descriptor and gets a value (or NULL) for every
    // attribute.
    unsafe {
        let slot = t.new_slot;
        clear(slot);
        let econtext = pg_sys::MakePerTupleExprContext(t.estate);
        for (i, fill) in t.fill.iter().enumerate() {
            let (value, null) = match fill {
                Fill::Given(c) => values[*c].map_or((pg_sys::Datum::from(0), true), |d| (d, false)),
                Fill::Default(state) => {
                    let mut null = false;
                    let old = pg_sys::MemoryContextSwitchTo((*econtext).ecxt_per_tuple_memory);
                    let value = (*(*state)).evalfunc.expect("a compiled expression")(*state, econtext, &mut null);
                    pg_sys::MemoryContextSwitchTo(old);
                    (value, null)
                }
                Fill::Null => (pg_sys::Datum::from(0), true),
            };
            *(*slot).tts_values.add(i) = value;
            *(*slot).tts_isnull.add(i) = null;
        }
        pg_sys::ExecStoreVirtualTuple(slot);
    }
}

/// Frees what the target's last row allocated (defaults, generated values, conversions).
unsafe fn reset_row(t: &Target) {
    // SAFETY: nothing of the row written is referenced any more.
    unsafe { pg_sys::MemoryContextReset((*pg_sys::MakePerTupleExprContext(t.estate)).ecxt_per_tuple_memory) };
}

/// Computes the stored generated columns of the row in `slot` (virtual, the table's
/// descriptor), in per-row memory.
unsafe fn compute_generated(t: &Target, slot: *mut pg_sys::TupleTableSlot) {
    if t.generated.is_empty() {
        return;
    }
    // SAFETY: the expressions were prepared for this table's rows, read from `slot`.
    unsafe {
        let econtext = pg_sys::MakePerTupleExprContext(t.estate);
        (*econtext).ecxt_scantuple = slot;
        let old = pg_sys::MemoryContextSwitchTo((*econtext).ecxt_per_tuple_memory);
        for &(i, state) in &t.generated {
            let mut null = false;
            let value = (*state).evalfunc.expect("a compiled expression")(state, econtext, &mut null);
            *(*slot).tts_values.add(i) = value;
            *(*slot).tts_isnull.add(i) = null;
        }
        pg_sys::MemoryContextSwitchTo(old);
        (*econtext).ecxt_scantuple = std::ptr::null_mut();
    }
}

/// The unique index an ON CONFLICT (column) would infer for the spec's column `key`: unique,
/// immediate, valid, on that one column with no expression or predicate. 42P10 without one, as
/// the statement raises.
unsafe fn arbiter_index(spec: &'static TableSpec, t: &Target, key: usize) -> pg_sys::Oid {
    let attnum = t.table.attnum(key);
    // SAFETY: the target's indexes, open for this call.
    unsafe {
        for i in 0..(*t.rri).ri_NumIndices as usize {
            let info = *(*t.rri).ri_IndexRelationInfo.add(i);
            let index = *(*t.rri).ri_IndexRelationDescs.add(i);
            let form = (*index).rd_index;
            if (*info).ii_Unique
                && (*info).ii_ReadyForInserts
                && (*form).indisvalid
                && (*form).indimmediate
                && (*info).ii_NumIndexKeyAttrs == 1
                && (*info).ii_IndexAttrNumbers[0] == attnum
                && (*info).ii_Expressions.is_null()
                && (*info).ii_Predicate.is_null()
            {
                return (*index).rd_id;
            }
        }
    }
    raise(
        PgSqlErrorCode::ERRCODE_INVALID_COLUMN_REFERENCE,
        format!(
            "there is no unique or exclusion constraint matching the ON CONFLICT specification ({}.{})",
            spec.name.to_string_lossy(),
            spec.columns[key].name.to_string_lossy()
        ),
    )
}

/// ExecCheckIndexConstraints: false (and the conflicting row's tid) when an arbiter index holds
/// the row's key, after waiting for an in-flight inserter of it.
unsafe fn check_index_constraints(
    t: &Target,
    slot: *mut pg_sys::TupleTableSlot,
    conflict_tid: &mut pg_sys::ItemPointerData,
    arbiters: *mut pg_sys::List,
) -> bool {
    // SAFETY: the target's open indexes and executor state.
    unsafe {
        #[cfg(not(feature = "pg18"))]
        return pg_sys::ExecCheckIndexConstraints(t.rri, slot, t.estate, conflict_tid, arbiters);
        #[cfg(feature = "pg18")]
        return pg_sys::ExecCheckIndexConstraints(t.rri, slot, t.estate, conflict_tid, std::ptr::null_mut(), arbiters);
    }
}

/// ExecInsertIndexTuples for a speculatively inserted row: `conflict` set when an arbiter index
/// already held the key. Returns the indexes to re-check (deferred constraints).
unsafe fn insert_index_tuples(
    t: &Target,
    slot: *mut pg_sys::TupleTableSlot,
    conflict: &mut bool,
    arbiters: *mut pg_sys::List,
) -> *mut pg_sys::List {
    // SAFETY: the target's open indexes and executor state; the row was just inserted.
    unsafe {
        #[cfg(feature = "pg15")]
        return pg_sys::ExecInsertIndexTuples(t.rri, slot, t.estate, false, true, conflict, arbiters);
        #[cfg(not(feature = "pg15"))]
        return pg_sys::ExecInsertIndexTuples(t.rri, slot, t.estate, false, true, conflict, arbiters, false);
    }
}

/// In REPEATABLE READ or SERIALIZABLE, the row an insert conflicted with must be one the
/// transaction's snapshot sees (or its own), else 40001: ExecCheckTIDVisible's rule.
unsafe fn check_conflict_visible(t: &Target, rel: pg_sys::Relation, conflict_tid: pg_sys::ItemPointerData) {
    // SAFETY: reads the global isolation level; fetches the conflicting version (any
    // visibility) into the target's slot of the table's kind, cleared after.
    unsafe {
        if pg_sys::XactIsoLevel < pg_sys::XACT_REPEATABLE_READ as i32 {
            return;
        }
        let am = &*(*rel).rd_tableam;
        let slot = t.old_slot;
        clear(slot);
        let mut tid = conflict_tid;
        let found = am.tuple_fetch_row_version.expect("a table access method")(
            rel,
            &mut tid,
            &raw mut pg_sys::SnapshotAnyData,
            slot,
        );
        let visible = found
            && (am.tuple_satisfies_snapshot.expect("a table access method")(rel, slot, (*t.estate).es_snapshot) || {
                let mut null = false;
                let xmin = (*(*slot).tts_ops).getsysattr.expect("slot operations")(
                    slot,
                    pg_sys::MinTransactionIdAttributeNumber,
                    &mut null,
                );
                pg_sys::TransactionIdIsCurrentTransactionId(pg_sys::TransactionId::from(xmin.value() as u32))
            });
        clear(slot);
        if !visible {
            // The statement's words, so both paths read alike.
            raise(
                PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE,
                "could not serialize access due to concurrent update",
            );
        }
    }
}

/// ExecClearTuple (an inline function of tuptable.h).
unsafe fn clear(slot: *mut pg_sys::TupleTableSlot) {
    // SAFETY: a valid slot; clearing an empty slot does nothing.
    unsafe { (*(*slot).tts_ops).clear.expect("slot operations")(slot) };
}
