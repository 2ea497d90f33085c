-- pg_temp.table_checksums(): one line per easymo table (partitioned tables as a whole, not per partition): its row count
-- and an md5 over its rows in a stable order. Sequences: their position.
\set ON_ERROR_STOP 1
CREATE FUNCTION pg_temp.table_checksums() RETURNS TABLE (name text, n bigint, md5 text)
LANGUAGE plpgsql AS $$
DECLARE
    rel regclass;
BEGIN
    FOR rel IN
        SELECT c.oid::regclass FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
         WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_extension'::regclass
           AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'easymo') AND d.deptype = 'e'
           AND c.relkind IN ('r', 'p') AND NOT c.relispartition
         ORDER BY c.relname
    LOOP
        name := rel::text;
        EXECUTE format('SELECT count(*), md5(coalesce(string_agg(t::text, E''\n'' ORDER BY t::text), '''')) FROM %s t', rel)
           INTO n, md5;
        RETURN NEXT;
    END LOOP;
    RETURN QUERY SELECT 'transaction_reference_seq', last_value, is_called::text FROM transaction_reference_seq;
END
$$;
