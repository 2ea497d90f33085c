-- Runs first (see tests/pg_regress/schedule): helpers shared by every suite, kept in their own
-- schema so that dropping and re-creating the extension leaves them alone.
CREATE SCHEMA regress;
GRANT USAGE ON SCHEMA regress TO PUBLIC;

-- Runs p_sql as the current role and always rolls it back. Returns 'N rows' when it succeeded,
-- else its SQLSTATE followed (with p_detail) by the constraint or column that refused it: the
-- messages themselves may name a dated partition, these never do.
CREATE FUNCTION regress.outcome(p_sql text, p_detail boolean DEFAULT true) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
    state text;
    con text;
    col text;
BEGIN
    EXECUTE p_sql;
    GET DIAGNOSTICS n = ROW_COUNT;
    RAISE EXCEPTION USING ERRCODE = 'EZ000';
EXCEPTION
    WHEN SQLSTATE 'EZ000' THEN RETURN n || ' rows';
    WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, con = CONSTRAINT_NAME, col = COLUMN_NAME;
        IF NOT p_detail THEN
            RETURN state;
        END IF;
        RETURN concat_ws(' ', state, nullif(con, ''), nullif(col, ''));
END
$$;
GRANT EXECUTE ON FUNCTION regress.outcome(text, boolean) TO PUBLIC;

-- Runs p_sql and returns its SQLSTATE and message, with uuids masked (they differ every run),
-- or 'no error'. Always rolls back.
CREATE FUNCTION regress.error(p_sql text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE p_sql;
    RAISE EXCEPTION USING ERRCODE = 'EZ000';
EXCEPTION
    WHEN SQLSTATE 'EZ000' THEN RETURN 'no error';
    WHEN OTHERS THEN
        RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<uuid>', 'g');
END
$$;
GRANT EXECUTE ON FUNCTION regress.error(text) TO PUBLIC;
