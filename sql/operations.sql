-- Operations: monthly partitions, retention and maintenance.
--
-- Who owns what, so that a plain pg_dump (no flags) restores every row:
--   * The five partitioned parents and their DEFAULT partitions belong to the extension.
--     CREATE EXTENSION makes them; the DEFAULT partitions are registered with
--     pg_extension_config_dump, so pg_dump keeps their rows.
--   * Month partitions (<table>_pYYYY_MM, UTC months) are not members: they are the data's, made
--     at run time by ensure_partitions() (run_maintenance, the maintenance worker, pg_cron), as
--     pg_partman and TimescaleDB leave their partitions and chunks out of the extension. pg_dump
--     dumps them like any table (CREATE TABLE, ATTACH PARTITION to the parent the restoring
--     CREATE EXTENSION made, their rows, indexes, grants and RLS), whichever months they are.
--     CREATE EXTENSION therefore makes no month partition (a restore would meet the ones it
--     made: "already exists"); until ensure_partitions() first runs, rows wait in DEFAULT.
--     DROP EXTENSION still removes them: a partition goes with its parent.
--     (0.2.0 made month partitions members registered for pg_dump: their rows were dumped, but
--     the restoring CREATE EXTENSION made only its own four months, so every other month's rows
--     were lost with "relation ... does not exist".)
--   * The parents carry no index or primary key of their own: a parent's index exists at restore
--     (CREATE EXTENSION made it) when pg_dump's ATTACH PARTITION runs, which would build the
--     partition's copy then, and pg_dump's own CREATE INDEX of that copy would fail ("already
--     exists"). So each partition has its own primary key (id, created_at) and indexes: the
--     DEFAULT partition's are declared in the domain files, and ensure_partitions() creates each
--     month LIKE the DEFAULT partition, indexes included. Partitions never overlap in created_at,
--     so (id, created_at) is as unique as a parent key made it; queries on the parent use each
--     partition's indexes as before.

-- The bounds of every non-default partition of p_parent, as instants. pg_get_expr prints them in
-- the session time zone with the offset, so the cast back is exact whatever TimeZone says.
CREATE FUNCTION @extschema@._partition_bounds(p_parent regclass)
RETURNS TABLE (partition regclass, lower_bound timestamptz, upper_bound timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT b.relid::regclass,
           CASE b.bounds[1] WHEN 'MINVALUE' THEN '-infinity'
                            ELSE btrim(b.bounds[1], '''') END::timestamptz,
           CASE b.bounds[2] WHEN 'MAXVALUE' THEN 'infinity'
                            ELSE btrim(b.bounds[2], '''') END::timestamptz
      FROM (SELECT c.oid AS relid,
                   regexp_match(pg_get_expr(c.relpartbound, c.oid), '^FOR VALUES FROM \((.*)\) TO \((.*)\)$') AS bounds
              FROM pg_inherits i
              JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = p_parent) b
     WHERE b.bounds IS NOT NULL
$$;
COMMENT ON FUNCTION @extschema@._partition_bounds(regclass) IS
    'Internal: the lower and upper bound of each non-default range partition of a table.';

-- Creates the partition of p_parent for the UTC month starting p_month, moving the rows of that
-- month out of the DEFAULT partition first: attaching (or creating) a partition whose range has
-- rows in DEFAULT is refused by Postgres, the failure pg_partman users know.
CREATE FUNCTION @extschema@._create_month_partition(p_parent regclass, p_month date)
RETURNS regclass
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    nsp         name;
    relname     name;
    part_name   name;
    default_rel regclass;
    part        regclass;
    lo          timestamptz := p_month::timestamp AT TIME ZONE 'UTC';
    hi          timestamptz := (p_month + interval '1 month')::timestamp AT TIME ZONE 'UTC';
    cols        text;
    moved       bigint := 0;
    replication_role text;
BEGIN
    SELECT n.nspname, c.relname, pt.partdefid::regclass
      INTO nsp, relname, default_rel
      FROM pg_class c
      JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_partitioned_table pt ON pt.partrelid = c.oid
     WHERE c.oid = p_parent;
    part_name := relname || '_p' || to_char(p_month, 'YYYY_MM');

    -- No new row may land in DEFAULT between the move and the attach.
    IF default_rel IS NOT NULL THEN
        EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', default_rel);
    END IF;

    -- The DEFAULT partition is the template: its columns, defaults, CHECKs, primary key and
    -- indexes (see the top of this file).
    IF default_rel IS NULL THEN
        RAISE EXCEPTION '% has no DEFAULT partition, which easymo copies new partitions from', p_parent
            USING ERRCODE = '55000', HINT = 'Recreate it: CREATE TABLE ... PARTITION OF ... DEFAULT, with its primary key and indexes (see the extension''s domain SQL), or ALTER EXTENSION easymo UPDATE.';
    END IF;
    EXECUTE format('CREATE TABLE %I.%I (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES INCLUDING STORAGE)',
                   nsp, part_name, default_rel);
    part := format('%I.%I', nsp, part_name)::regclass;

    IF default_rel IS NOT NULL THEN
        SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum)
          INTO cols
          FROM pg_attribute
         WHERE attrelid = p_parent AND attnum > 0 AND NOT attisdropped;
        -- A move, not a delete and an insert: with the replica role no trigger fires (no audit
        -- trigger sees a delete, no foreign key check objects to a row that comes straight back).
        replication_role := current_setting('session_replication_role');
        PERFORM set_config('session_replication_role', 'replica', true);
        EXECUTE format('WITH moved AS (DELETE FROM %s WHERE created_at >= $1 AND created_at < $2 RETURNING %s) '
                       'INSERT INTO %s (%s) SELECT %s FROM moved',
                       default_rel, cols, part, cols, cols)
          USING lo, hi;
        GET DIAGNOSTICS moved = ROW_COUNT;
        PERFORM set_config('session_replication_role', replication_role, true);
        IF moved > 0 THEN
            RAISE NOTICE 'moved % row(s) of % from % into %', moved, to_char(p_month, 'YYYY-MM'), default_rel, part;
        END IF;
    END IF;

    EXECUTE format('ALTER TABLE %s ATTACH PARTITION %s FOR VALUES FROM (%L) TO (%L)', p_parent, part, lo, hi);

    PERFORM @extschema@._secure_partition(part);
    EXECUTE format('COMMENT ON TABLE %s IS %L', part,
                   format('Monthly partition of %s for %s (UTC); created by ensure_partitions(). Not a member of the extension: pg_dump dumps it like any table.',
                          relname, to_char(p_month, 'YYYY-MM')));
    -- Made inside an extension script (an upgrade that creates a month, say), the new table
    -- would be a member: it is not one (see the top of this file).
    IF EXISTS (SELECT 1 FROM pg_depend
                WHERE classid = 'pg_class'::regclass AND objid = part
                  AND refclassid = 'pg_extension'::regclass AND deptype = 'e') THEN
        EXECUTE format('ALTER EXTENSION easymo DROP TABLE %s', part);
    END IF;
    RETURN part;
END
$$;
COMMENT ON FUNCTION @extschema@._create_month_partition(regclass, date) IS
    'Internal: creates one UTC-month partition like the DEFAULT partition (indexes included), moving that month''s rows out of the DEFAULT partition; the partition is not a member of the extension.';

CREATE FUNCTION @extschema@.ensure_partitions(p_months_ahead integer DEFAULT 3)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    parent   record;
    m        date;
    lo       timestamptz;
    hi       timestamptz;
    this_month date := date_trunc('month', now() AT TIME ZONE 'UTC')::date;
    covering integer;
    overlapping integer;
    created  integer := 0;
    default_months date[];
BEGIN
    p_months_ahead := @extschema@._check_range('p_months_ahead', p_months_ahead, 0, 120);
    -- One caller at a time (the maintenance worker and a DBA may well meet here).
    PERFORM pg_advisory_xact_lock(7310309163452661761);

    FOR parent IN
        SELECT c.oid::regclass AS rel, pt.partdefid::regclass AS default_rel
          FROM pg_depend d
          JOIN pg_class c ON c.oid = d.objid
          JOIN pg_partitioned_table pt ON pt.partrelid = c.oid
         WHERE d.classid = 'pg_class'::regclass
           AND d.refclassid = 'pg_extension'::regclass
           AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'easymo')
           AND d.deptype = 'e'
           AND c.relkind = 'p'
         ORDER BY c.relname
    LOOP
        default_months := '{}';
        IF parent.default_rel IS NOT NULL THEN
            EXECUTE format('SELECT coalesce(array_agg(DISTINCT date_trunc(''month'', created_at AT TIME ZONE ''UTC'')::date), ''{}'') '
                           'FROM %s WHERE isfinite(created_at)', parent.default_rel)
              INTO default_months;
        END IF;

        FOR m IN
            SELECT g::date FROM generate_series(this_month,
                                                this_month + make_interval(months => p_months_ahead),
                                                interval '1 month') g
            UNION
            SELECT unnest(default_months)
            ORDER BY 1
        LOOP
            lo := m::timestamp AT TIME ZONE 'UTC';
            hi := (m + interval '1 month')::timestamp AT TIME ZONE 'UTC';
            SELECT count(*) FILTER (WHERE b.lower_bound <= lo AND hi <= b.upper_bound),
                   count(*) FILTER (WHERE b.lower_bound < hi AND lo < b.upper_bound)
              INTO covering, overlapping
              FROM @extschema@._partition_bounds(parent.rel) b;
            IF covering > 0 THEN
                CONTINUE;
            ELSIF overlapping > 0 THEN
                -- A partition someone made by hand covers part of this month: leave it alone.
                RAISE WARNING 'ensure_partitions: % already has a partition overlapping % (UTC); no monthly partition created, rows of that month stay where they are',
                    parent.rel, to_char(m, 'YYYY-MM');
                CONTINUE;
            END IF;
            PERFORM @extschema@._create_month_partition(parent.rel, m);
            created := created + 1;
        END LOOP;
    END LOOP;
    RETURN created;
END
$$;
COMMENT ON FUNCTION @extschema@.ensure_partitions(integer) IS
    'Creates the missing monthly (UTC) partitions of every partitioned easymo table, from this month to p_months_ahead months ahead and for every month that has rows in a DEFAULT partition, moving those rows into their new partition. Returns how many partitions it created.';

-- ---------------------------------------------------------------------------------------------
-- Archive tier: whole old months leave the hot table for the schema easymo_archive (detached,
-- as tables of their own named like the partition, compressed), still queryable through one view
-- per table there (easymo_archive.<table>, the archived months only), and can come back. They are
-- the data's like the month partitions: not members of the extension, so a plain pg_dump keeps
-- them (the schema comes back with CREATE EXTENSION); DROP EXTENSION ... CASCADE removes them.
CREATE SCHEMA easymo_archive;
COMMENT ON SCHEMA easymo_archive IS
    'easymo''s archive tier: old months detached from the partitioned tables by archive_partitions() (tables <table>_pYYYY_MM), and one view per table over them.';
REVOKE ALL ON SCHEMA easymo_archive FROM PUBLIC;
GRANT USAGE ON SCHEMA easymo_archive TO service_role;

-- The partitioned tables whose months can be archived and retained.
CREATE FUNCTION @extschema@._partitioned_tables() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ARRAY['system_metrics', 'system_audit_logs', 'transactions', 'event_store', 'analytics_events'] $$;
COMMENT ON FUNCTION @extschema@._partitioned_tables() IS
    'Internal: the monthly partitioned tables (what archive_partitions, apply_retention and unarchive_partition take).';

-- The archived months of a table: (relation, month).
CREATE FUNCTION @extschema@._archived_months(p_table text)
RETURNS TABLE (relation regclass, month date)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.oid::regclass, to_date(right(c.relname, 7), 'YYYY_MM')
      FROM pg_class c
     WHERE c.relnamespace = 'easymo_archive'::regnamespace AND c.relkind = 'r'
       AND c.relname ~ ('^' || p_table || '_p[0-9]{4}_[0-9]{2}$')
     ORDER BY 2
$$;
COMMENT ON FUNCTION @extschema@._archived_months(text) IS
    'Internal: the archived month tables of p_table in easymo_archive, with their month.';

-- The columns p_from has that p_to has too, quoted, in p_from's order: what a copy of rows
-- between a month table and its parent or archive names.
CREATE FUNCTION @extschema@._shared_columns(p_from regclass, p_to regclass)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
      FROM pg_attribute a
     WHERE a.attrelid = p_from AND a.attnum > 0 AND NOT a.attisdropped
       AND a.attname IN (SELECT b.attname FROM pg_attribute b WHERE b.attrelid = p_to AND NOT b.attisdropped)
$$;
COMMENT ON FUNCTION @extschema@._shared_columns(regclass, regclass) IS
    'Internal: the quoted columns of p_from that p_to has too, in p_from''s order.';

-- (Re)makes easymo_archive.<table>: every archived month of the table, with the table's
-- current columns (a column the table gained after a month was archived reads NULL there).
CREATE FUNCTION @extschema@._archive_view(p_table text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    parent regclass := format('@extschema@.%I', p_table)::regclass;
    body   text;
BEGIN
    SELECT string_agg(format('SELECT %s FROM %s', cols.list, m.relation), E'\nUNION ALL\n' ORDER BY m.month)
      INTO body
      FROM @extschema@._archived_months(p_table) m,
           LATERAL (SELECT string_agg(CASE WHEN EXISTS (SELECT 1 FROM pg_attribute x
                                                          WHERE x.attrelid = m.relation AND x.attname = a.attname AND NOT x.attisdropped)
                                           THEN quote_ident(a.attname)
                                           ELSE format('NULL::%s AS %I', format_type(a.atttypid, a.atttypmod), a.attname) END,
                                      ', ' ORDER BY a.attnum) AS list
                      FROM pg_attribute a WHERE a.attrelid = parent AND a.attnum > 0 AND NOT a.attisdropped) cols;
    IF body IS NULL THEN
        EXECUTE format('DROP VIEW IF EXISTS easymo_archive.%I', p_table);
        RETURN;
    END IF;
    EXECUTE format('DROP VIEW IF EXISTS easymo_archive.%I', p_table);
    EXECUTE format('CREATE VIEW easymo_archive.%I WITH (security_invoker = true) AS %s', p_table, body);
    EXECUTE format('REVOKE ALL ON easymo_archive.%I FROM PUBLIC, anon, authenticated', p_table);
    EXECUTE format('GRANT SELECT ON easymo_archive.%I TO service_role', p_table);
    EXECUTE format('COMMENT ON VIEW easymo_archive.%I IS %L', p_table,
                   format('The archived months of %s (archive_partitions()); the hot months are in the table itself.', p_table));
END
$$;
COMMENT ON FUNCTION @extschema@._archive_view(text) IS
    'Internal: (re)creates the view easymo_archive.<table> over the archived months of the table.';

-- Moves the months of p_table that end p_older_than_months or more before the current UTC month
-- out to easymo_archive. Each month is detached, moved, readable by service_role (directly and
-- through the view), its columns set to lz4 compression where the server has it (else pglz)
-- with a low TOAST target, and rewritten (CLUSTER on its primary key), so its rows are stored
-- compressed. Returns how many months it archived.
CREATE FUNCTION @extschema@.archive_partitions(p_table text, p_older_than_months integer)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    parent      regclass;
    cutoff      timestamptz;
    part        record;
    moved       regclass;
    existing    regclass;
    archived    integer := 0;
    method      text;
    col         record;
    pkey        name;
    cols        text;
BEGIN
    p_table := @extschema@._check_choice('p_table', p_table, @extschema@._partitioned_tables());
    p_older_than_months := @extschema@._check_range('p_older_than_months', p_older_than_months, 0, 1200);
    cutoff := (date_trunc('month', now() AT TIME ZONE 'UTC') - make_interval(months => p_older_than_months)) AT TIME ZONE 'UTC';
    parent := format('@extschema@.%I', p_table)::regclass;
    -- Not at the same time as ensure_partitions or apply_retention.
    PERFORM pg_advisory_xact_lock(7310309163452661761);
    method := CASE WHEN EXISTS (SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals))
                   THEN 'lz4' ELSE 'pglz' END;
    FOR part IN
        SELECT b.partition, c.relname FROM @extschema@._partition_bounds(parent) b JOIN pg_class c ON c.oid = b.partition
         WHERE b.upper_bound <= cutoff ORDER BY b.lower_bound
    LOOP
        EXECUTE format('ALTER TABLE %s DETACH PARTITION %s', parent, part.partition);
        IF EXISTS (SELECT 1 FROM pg_depend
                    WHERE classid = 'pg_class'::regclass AND objid = part.partition
                      AND refclassid = 'pg_extension'::regclass AND deptype = 'e') THEN
            EXECUTE format('ALTER EXTENSION easymo DROP TABLE %s', part.partition);
        END IF;
        existing := to_regclass(format('easymo_archive.%I', part.relname));
        IF existing IS NOT NULL THEN
            -- The month was archived before and made again since (rows for it came): one table.
            cols := @extschema@._shared_columns(part.partition, existing);
            EXECUTE format('INSERT INTO %s (%s) SELECT %s FROM %s', existing, cols, cols, part.partition);
            EXECUTE format('DROP TABLE %s', part.partition);
            moved := existing;
        ELSE
            EXECUTE format('ALTER TABLE %s SET SCHEMA easymo_archive', part.partition);
            moved := format('easymo_archive.%I', part.relname)::regclass;
            -- Readable by service_role, directly and through the view (no longer only through a parent).
            EXECUTE format('DROP POLICY IF EXISTS only_through_parent ON %s', moved);
            EXECUTE format('CREATE POLICY service_role_all ON %s FOR ALL TO service_role USING (true) WITH CHECK (true)', moved);
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE %s TO service_role', moved);
            EXECUTE format('COMMENT ON TABLE %s IS %L', moved,
                           format('Archived month of %s (archive_partitions()); unarchive_partition() brings it back.', p_table));
        END IF;
        FOR col IN
            SELECT a.attname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
             WHERE a.attrelid = moved AND a.attnum > 0 AND NOT a.attisdropped AND t.typlen = -1 AND t.typstorage <> 'p'
        LOOP
            EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET COMPRESSION %s', moved, col.attname, method);
        END LOOP;
        EXECUTE format('ALTER TABLE %s SET (toast_tuple_target = 128)', moved);
        SELECT c.relname INTO pkey FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = moved AND i.indisprimary;
        IF pkey IS NOT NULL THEN
            EXECUTE format('CLUSTER %s USING %I', moved, pkey);
        END IF;
        archived := archived + 1;
    END LOOP;
    IF archived > 0 THEN
        PERFORM @extschema@._archive_view(p_table);
    END IF;
    RETURN archived;
END
$$;
COMMENT ON FUNCTION @extschema@.archive_partitions(text, integer) IS
    'Moves the monthly partitions of p_table (system_metrics, system_audit_logs, transactions, event_store, analytics_events) that end before the current UTC month minus p_older_than_months to the schema easymo_archive: detached, compressed (lz4 where the server has it), readable by service_role and through the view easymo_archive.<table>. Returns how many months it archived. unarchive_partition() brings one back.';

-- Brings an archived month back into its table (through a new partition made like any month,
-- rows that waited in DEFAULT moved into it), and drops the archived copy.
CREATE FUNCTION @extschema@.unarchive_partition(p_table text, p_month date)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    parent   regclass;
    archived regclass;
    part     regclass;
    cols     text;
    n        bigint;
    replication_role text;
BEGIN
    p_table := @extschema@._check_choice('p_table', p_table, @extschema@._partitioned_tables());
    p_month := @extschema@._check_not_null('p_month', p_month);
    parent := format('@extschema@.%I', p_table)::regclass;
    SELECT m.relation INTO archived FROM @extschema@._archived_months(p_table) m WHERE m.month = date_trunc('month', p_month)::date;
    IF archived IS NULL THEN
        RAISE EXCEPTION 'no archived month % of %', to_char(p_month, 'YYYY-MM'), p_table USING ERRCODE = 'P0002';
    END IF;
    PERFORM pg_advisory_xact_lock(7310309163452661761);
    SELECT b.partition INTO part FROM @extschema@._partition_bounds(parent) b
     WHERE b.lower_bound = date_trunc('month', p_month)::timestamp AT TIME ZONE 'UTC';
    IF part IS NULL THEN
        part := @extschema@._create_month_partition(parent, date_trunc('month', p_month)::date);
    END IF;
    cols := @extschema@._shared_columns(archived, parent);
    -- A move: no trigger fires (the rows were written once already).
    replication_role := current_setting('session_replication_role');
    PERFORM set_config('session_replication_role', 'replica', true);
    EXECUTE format('INSERT INTO %s (%s) SELECT %s FROM %s', part, cols, cols, archived);
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM set_config('session_replication_role', replication_role, true);
    -- (The view over the archived months goes first: it depends on them, and is made again.)
    EXECUTE format('DROP VIEW IF EXISTS easymo_archive.%I', p_table);
    EXECUTE format('DROP TABLE %s', archived);
    PERFORM @extschema@._archive_view(p_table);
    RETURN n;
END
$$;
COMMENT ON FUNCTION @extschema@.unarchive_partition(text, date) IS
    'Brings the archived month of p_table that contains p_month back into the table (its partition made again, or the one made since); returns how many rows came back. P0002 when that month is not archived.';

-- Retention: months older than p_keep_months are dropped, or, with p_archive_for_months,
-- archived first and dropped from the archive once they are p_keep_months + p_archive_for_months
-- old.
CREATE FUNCTION @extschema@.apply_retention(p_table text, p_keep_months integer, p_archive_for_months integer DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    parent      regclass;
    default_rel regclass;
    cutoff      timestamptz;
    drop_before timestamptz;
    part        record;
    dropped     integer := 0;
    replication_role text;
BEGIN
    p_table := @extschema@._check_choice('p_table', p_table, @extschema@._partitioned_tables() || 'notifications'::text);
    p_keep_months := @extschema@._check_range('p_keep_months', p_keep_months, 0, 1200);
    IF p_archive_for_months IS NOT NULL THEN
        p_archive_for_months := @extschema@._check_range('p_archive_for_months', p_archive_for_months, 0, 1200);
    END IF;
    cutoff := (date_trunc('month', now() AT TIME ZONE 'UTC') - make_interval(months => p_keep_months)) AT TIME ZONE 'UTC';
    drop_before := (date_trunc('month', now() AT TIME ZONE 'UTC')
                    - make_interval(months => p_keep_months + coalesce(p_archive_for_months, 0))) AT TIME ZONE 'UTC';
    IF p_table = 'notifications' THEN
        IF p_archive_for_months IS NOT NULL THEN
            RAISE EXCEPTION 'p_archive_for_months: notifications are not partitioned, so not archived' USING ERRCODE = '22023';
        END IF;
        -- Not partitioned (a notification is read and marked read by its user, its deliveries
        -- point at it): older rows are deleted, their deliveries with them.
        DELETE FROM @extschema@.notifications WHERE created_at < cutoff;
        GET DIAGNOSTICS dropped = ROW_COUNT;
        RETURN dropped;
    END IF;
    parent := format('@extschema@.%I', p_table)::regclass;
    SELECT pt.partdefid::regclass INTO default_rel FROM pg_partitioned_table pt WHERE pt.partrelid = parent;
    -- Not at the same time as ensure_partitions (which may be moving rows into a partition).
    PERFORM pg_advisory_xact_lock(7310309163452661761);
    IF p_archive_for_months IS NOT NULL THEN
        PERFORM @extschema@.archive_partitions(p_table, p_keep_months);
        EXECUTE format('DROP VIEW IF EXISTS easymo_archive.%I', p_table);
        FOR part IN SELECT m.relation FROM @extschema@._archived_months(p_table) m
                     WHERE (m.month + interval '1 month')::timestamp AT TIME ZONE 'UTC' <= drop_before
        LOOP
            EXECUTE format('DROP TABLE %s', part.relation);
            dropped := dropped + 1;
        END LOOP;
        PERFORM @extschema@._archive_view(p_table);
    END IF;

    IF p_table = 'transactions' THEN
        DELETE FROM @extschema@.transaction_events WHERE transaction_created_at < drop_before;
        DELETE FROM @extschema@.transaction_idempotency_keys WHERE transaction_created_at < drop_before;
    END IF;

    FOR part IN
        SELECT b.partition FROM @extschema@._partition_bounds(parent) b
         WHERE b.upper_bound <= drop_before
         ORDER BY b.lower_bound
    LOOP
        EXECUTE format('ALTER TABLE %s DETACH PARTITION %s', parent, part.partition);
        -- A month partition is not a member (one left from 0.2.0 would be: it leaves first).
        IF EXISTS (SELECT 1 FROM pg_depend
                    WHERE classid = 'pg_class'::regclass AND objid = part.partition
                      AND refclassid = 'pg_extension'::regclass AND deptype = 'e') THEN
            EXECUTE format('ALTER EXTENSION easymo DROP TABLE %s', part.partition);
        END IF;
        EXECUTE format('DROP TABLE %s', part.partition);
        dropped := dropped + 1;
    END LOOP;

    IF default_rel IS NOT NULL THEN
        -- The replica role: the row triggers that guard single deletes (a transaction with
        -- events) have nothing to guard here, their side rows went above.
        replication_role := current_setting('session_replication_role');
        PERFORM set_config('session_replication_role', 'replica', true);
        EXECUTE format('DELETE FROM %s WHERE created_at < $1', default_rel) USING drop_before;
        PERFORM set_config('session_replication_role', replication_role, true);
    END IF;
    RETURN dropped;
END
$$;
COMMENT ON FUNCTION @extschema@.apply_retention(text, integer, integer) IS
    'Drops the monthly partitions of p_table (system_metrics, system_audit_logs, transactions, event_store, analytics_events) that end before the current UTC month minus p_keep_months, and deletes older rows from its DEFAULT partition (for transactions also their events and idempotency keys). With p_archive_for_months, those months are archived instead (archive_partitions) and archived months are dropped once they end before the current month minus p_keep_months + p_archive_for_months. Returns how many partitions it dropped (hot or archived). For notifications (not partitioned, never archived) it deletes the older notifications with their deliveries and returns how many notifications.';

-- Everything that keeps the tables in shape, in one call: what pg_cron or the background worker
-- runs. Each step runs in its own subtransaction, so one that fails (a lock timeout, say) is
-- reported in the summary and as a WARNING while the others still do their work.
CREATE FUNCTION @extschema@.run_maintenance()
RETURNS jsonb
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    steps CONSTANT text[][] := ARRAY[
        ['partitions_created',          'SELECT @extschema@.ensure_partitions(3)'],
        ['cache_entries_removed',       'SELECT @extschema@.cleanup_expired_cache()'],
        ['whatsapp_sessions_expired',   'SELECT @extschema@.cleanup_expired_whatsapp_sessions()'],
        ['jobs_timed_out',              'SELECT @extschema@.time_out_jobs()'],
        ['messages_released',           'SELECT @extschema@._release_expired_messages()'],
        ['whatsapp_messages_released',  'SELECT @extschema@._release_expired_whatsapp_messages()'],
        ['wallet_holds_expired',        'SELECT @extschema@._expire_wallet_holds()'],
        ['wallet_credits_folded',       'SELECT @extschema@._fold_all_wallet_credits()'],
        ['notification_deliveries_released', 'SELECT @extschema@._release_expired_notification_deliveries()'],
        ['notification_dedupe_keys_removed', 'SELECT @extschema@._cleanup_notification_dedupe_keys()'],
        ['alert_events_changed',        'SELECT @extschema@._record_alerts()']];
    summary jsonb := '{}'::jsonb;
    errors  jsonb := '{}'::jsonb;
    started timestamptz := clock_timestamp();
    n       bigint;
    msg     text;
    state   text;
BEGIN
    FOR i IN 1 .. array_length(steps, 1) LOOP
        BEGIN
            EXECUTE steps[i][2] INTO n;
            summary := summary || jsonb_build_object(steps[i][1], n);
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, state = RETURNED_SQLSTATE;
            RAISE WARNING 'run_maintenance: % failed: % (SQLSTATE %)', steps[i][1], msg, state;
            errors := errors || jsonb_build_object(steps[i][1], jsonb_build_object('sqlstate', state, 'message', msg));
        END;
    END LOOP;
    RETURN summary
        || jsonb_build_object('errors', errors,
                              'duration_ms', round(extract(epoch FROM clock_timestamp() - started) * 1000, 1));
END
$$;
COMMENT ON FUNCTION @extschema@.run_maintenance() IS
    'Runs every maintenance step: partitions 3 months ahead, expired cache entries, idle WhatsApp sessions, jobs past their lease, messages past their visibility timeout, wallet holds past their expiry, hot wallet credits to fold, notification deliveries past their visibility timeout, expired notification dedupe keys, then the alerts that started or cleared. Returns a jsonb summary of counts, errors per failed step, and the duration. What pg_cron or the easymo background worker calls.';
