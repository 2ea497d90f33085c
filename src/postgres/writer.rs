//! Writing rows without a statement: inserts and updates through the table access method, the
//! way logical replication's apply worker writes (ExecSimpleRelationInsert/Update): the
//! table's BEFORE and AFTER row triggers (and, for inserts, its INSERT statement triggers, once
//! per call), NOT NULL and CHECK constraints, every index, unique checks that wait for an
//! in-flight inserter, column defaults for the columns not given.
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
        assert_eq!(values.len(), spec.columns.len(), "a value for every column of the spec");
        let open = self.open(spec, pg_sys::ACL_INSERT as pg_sys::AclMode);
        if !open.inserting {
            open.inserting = true;
            // SAFETY: the target's executor state, inside the call's after-trigger query level.
            unsafe { pg_sys::ExecBSInsertTriggers(open.target.estate, open.target.rri) };
        }
        let t = &open.target;
        // SAFETY: the target was built for this relation, which is open and locked; the slot
        // has the table's descriptor and gets a value (or NULL) for every attribute; per-row
        // memory is reset after the row is written.
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
            pg_sys::ExecSimpleRelationInsert(t.rri, t.estate, slot);
            pg_sys::MemoryContextReset((*econtext).ecxt_per_tuple_memory);
        }
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
            let econtext = pg_sys::MakePerTupleExprContext(t.estate);
            if !t.generated.is_empty() {
                (*econtext).ecxt_scantuple = new;
                let old_cxt = pg_sys::MemoryContextSwitchTo((*econtext).ecxt_per_tuple_memory);
                for &(i, state) in &t.generated {
                    let mut null = false;
                    let value = (*state).evalfunc.expect("a compiled expression")(state, econtext, &mut null);
                    *(*new).tts_values.add(i) = value;
                    *(*new).tts_isnull.add(i) = null;
                }
                pg_sys::MemoryContextSwitchTo(old_cxt);
                (*econtext).ecxt_scantuple = std::ptr::null_mut();
            }
            let mut epq: pg_sys::EPQState = std::mem::zeroed();
            epq_init(&mut epq, t.estate);
            pg_sys::ExecSimpleRelationUpdate(t.rri, t.estate, &mut epq, old, new);
            pg_sys::EvalPlanQualEnd(&mut epq);
            // The new version's tid is set by the update; a BEFORE trigger that returned NULL
            // left the slot as it was (a virtual slot has no tid).
            let done = pgrx::itemptr::item_pointer_is_valid(&raw const (*new).tts_tid);
            let result = done.then(|| written(new));
            clear(old);
            pg_sys::MemoryContextReset((*econtext).ecxt_per_tuple_memory);
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
        let i = match self.open.iter().position(|o| std::ptr::eq(o.target.spec, spec)) {
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
        let i = targets.iter().position(|t| std::ptr::eq(t.spec, spec))?;
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
            unsafe { build(spec, table, rel) }
        }
    };
    let mut target = target;
    target.in_use = true;
    // SAFETY: per-call fields of the target's executor state.
    unsafe {
        // A trigger's function is looked up (fmgr_info) when it first fires, in the memory of
        // that call: looked up again in every call, never used from a call that ended.
        let triggers = (*target.rri).ri_TrigDesc;
        if !triggers.is_null() && !(*target.rri).ri_TrigFunctions.is_null() {
            std::ptr::write_bytes((*target.rri).ri_TrigFunctions, 0, (*triggers).numtriggers as usize);
        }
        (*target.estate).es_snapshot =
            if pg_sys::ActiveSnapshotSet() { pg_sys::GetActiveSnapshot() } else { pg_sys::GetTransactionSnapshot() };
        (*target.estate).es_output_cid = pg_sys::GetCurrentCommandId(true);
        for i in 0..(*target.rri).ri_NumIndices as usize {
            let info = *(*target.rri).ri_IndexRelationInfo.add(i);
            // What an index AM caches for a statement lives for this call only.
            (*info).ii_AmCache = std::ptr::null_mut();
            (*info).ii_Context = pg_sys::CurrentMemoryContext;
        }
    }
    Open { target, rel, insert_checked: false, update_checked: false, inserting: false }
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

/// Builds the target of `spec`'s table, open and locked as `rel`; its indexes are left open
/// for this call.
unsafe fn build(spec: &'static TableSpec, table: Rc<Table>, rel: pg_sys::Relation) -> Target {
    // SAFETY: `rel` is open and locked; everything is allocated in the new context, which is a
    // child of TopMemoryContext and lives until `discard`.
    unsafe {
        let form = (*rel).rd_rel;
        if (*form).relkind != pg_sys::RELKIND_RELATION as std::ffi::c_char {
            not_as_created(spec.name, "it is no longer a plain table");
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
        pg_sys::ExecOpenIndices(rri, false);
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
        let fill = (0..attrs.len())
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
        Target { spec, table, cxt, estate, rri, index_oids, fill, generated, new_slot, old_slot, in_use: false }
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

/// ExecClearTuple (an inline function of tuptable.h).
unsafe fn clear(slot: *mut pg_sys::TupleTableSlot) {
    // SAFETY: a valid slot; clearing an empty slot does nothing.
    unsafe { (*(*slot).tts_ops).clear.expect("slot operations")(slot) };
}
