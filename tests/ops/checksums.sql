-- pg_temp.table_checksums(): one line per easymo table (partitioned tables as a whole, not per
-- partition): its row count and an md5 over its rows in a stable order. Sequences: their
-- position. A table registered with a pg_dump filter (the extension's own alert rules are left
-- out) is compared on the rows the filter keeps: the others come with CREATE EXTENSION. With
-- p_columns (what pg_temp.table_columns() returned, e.g. before an upgrade that
-- adds columns and tables), only those tables and those columns.
\set ON_ERROR_STOP 1
CREATE FUNCTION pg_temp.table_columns() RETURNS jsonb
LANGUAGE sql AS $$
    SELECT jsonb_object_agg(c.oid::regclass::text, (SELECT jsonb_agg(a.attname ORDER BY a.attnum)
                                                       FROM pg_attribute a
                                                      WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped))
      FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
     WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_extension'::regclass
       AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'easymo') AND d.deptype = 'e'
       AND c.relkind IN ('r', 'p') AND NOT c.relispartition
$$;

CREATE FUNCTION pg_temp.table_checksums(p_columns jsonb DEFAULT NULL) RETURNS TABLE (name text, n bigint, md5 text)
LANGUAGE plpgsql AS $$
DECLARE
    rel regclass;
    cols text;
    dump_filter text;
BEGIN
    FOR rel IN
        SELECT c.oid::regclass FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
         WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_extension'::regclass
           AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'easymo') AND d.deptype = 'e'
           AND c.relkind IN ('r', 'p') AND NOT c.relispartition
         ORDER BY c.relname
    LOOP
        name := rel::text;
        CONTINUE WHEN p_columns IS NOT NULL AND NOT p_columns ? name;
        cols := CASE WHEN p_columns IS NULL THEN 't'
                     ELSE format('ROW(%s)', (SELECT string_agg(format('t.%I', c), ', ') FROM jsonb_array_elements_text(p_columns -> name) c))
                END;
        SELECT coalesce(e.extcondition[array_position(e.extconfig, rel::oid)], '') INTO dump_filter
          FROM pg_extension e WHERE e.extname = 'easymo';
        EXECUTE format('SELECT count(*), md5(coalesce(string_agg(x::text, E''\n'' ORDER BY x::text), '''')) FROM (SELECT %s AS x FROM %s t %s) s',
                       cols, rel, dump_filter)
           INTO n, md5;
        RETURN NEXT;
    END LOOP;
    RETURN QUERY SELECT 'transaction_reference_seq', last_value, is_called::text FROM transaction_reference_seq;
END
$$;
