-- easymo bootstrap: roles and the helpers every domain file relies on.
-- Runs first (pgrx `bootstrap`). Every object is created in the schema CREATE EXTENSION was given
-- and referenced through @extschema@, so nothing assumes `public`.

-- Every text the native functions read is UTF-8; in a database of another encoding (SQL_ASCII,
-- LATIN1, ...) a non-ASCII argument could not be read. Refuse to install there, saying why.
DO $encoding$
BEGIN
    IF pg_catalog.getdatabaseencoding() OPERATOR(pg_catalog.<>) 'UTF8' THEN
        RAISE EXCEPTION 'easymo needs a database with encoding UTF8, this one is %', pg_catalog.getdatabaseencoding()
            USING ERRCODE = '0A000',
                  HINT = 'Create the database with ENCODING ''UTF8'' (and a UTF-8 or C locale, e.g. TEMPLATE template0 LOCALE ''C.UTF-8'') and install easymo there.';
    END IF;
END
$encoding$;

-- The Supabase role names. Roles are cluster-wide and may already exist (Supabase, a second
-- database): create them only when absent, NOLOGIN, and never drop them with the extension.
DO $roles$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['anon', 'authenticated', 'service_role'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
            EXCEPTION WHEN unique_violation OR duplicate_object THEN
                NULL;  -- made meanwhile by a CREATE EXTENSION in another database
            END;
        END IF;
    END LOOP;
END
$roles$;

-- The calling user's id: the `sub` claim PostgREST puts in the request settings, as Supabase's
-- auth.uid() reads it, except that the current setting wins. PostgREST sets
-- request.jwt.claims for each transaction (set_config(..., true)); the legacy
-- request.jwt.claim.sub is only read when request.jwt.claims is not set at all. Behind a
-- transaction pooler a backend serves many clients, and one stray session-level claim.sub
-- would otherwise make every later client that does set its claims act as that user (a
-- claims object without a sub, an anonymous caller, is NULL, never the legacy value).
CREATE FUNCTION @extschema@.request_user_id() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN nullif(current_setting('request.jwt.claims', true), '') IS NOT NULL
                THEN current_setting('request.jwt.claims', true)::jsonb ->> 'sub'
                ELSE nullif(current_setting('request.jwt.claim.sub', true), '')
           END::uuid
$$;
COMMENT ON FUNCTION @extschema@.request_user_id() IS
    'The calling user''s id: request.jwt.claims->>''sub'' when request.jwt.claims is set (NULL when it has no sub), else the legacy request.jwt.claim.sub, as uuid; NULL when neither is set. Used by every RLS policy.';

-- One trigger function keeps updated_at honest on every table that has it.
CREATE FUNCTION @extschema@._touch_updated_at() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    NEW.updated_at := pg_catalog.now();
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION @extschema@._touch_updated_at() IS
    'Internal trigger function: sets updated_at to now() on every UPDATE.';

-- Secures a table the way the contract says every table is secured, right after it is created
-- (so Supabase-style default privileges granted at creation are revoked too):
-- RLS on; service_role may do anything; when p_owner_column is given, `authenticated` may read
-- the rows whose owner column equals request_user_id(); anon and PUBLIC get nothing. Existing
-- partitions are locked down as well: they are only ever reached through their parent.
CREATE FUNCTION @extschema@._secure_table(p_table regclass, p_owner_column name DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    part regclass;
BEGIN
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', p_table);
    EXECUTE format('CREATE POLICY service_role_all ON %s FOR ALL TO service_role USING (true) WITH CHECK (true)',
                   p_table);
    EXECUTE format('REVOKE ALL ON TABLE %s FROM PUBLIC, anon, authenticated', p_table);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE %s TO service_role', p_table);
    IF p_owner_column IS NOT NULL THEN
        EXECUTE format('CREATE POLICY owner_read ON %s FOR SELECT TO authenticated USING (%I = (SELECT @extschema@.request_user_id()))',
                       p_table, p_owner_column);
        EXECUTE format('GRANT SELECT ON TABLE %s TO authenticated', p_table);
    END IF;
    FOR part IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = p_table LOOP
        PERFORM @extschema@._secure_partition(part);
    END LOOP;
END
$$;
COMMENT ON FUNCTION @extschema@._secure_table(regclass, name) IS
    'Internal: enables RLS with the service_role and (optional) owner-read policies and sets the table''s grants.';

-- A partition is reached only through its parent, whose policies then apply; reading it
-- directly would bypass them, so nobody but the owner gets any privilege on it, and RLS is on
-- in case a default privilege grants one later, with one restrictive policy that lets nothing
-- through (querying the parent does not apply a partition's policies; the owner bypasses RLS).
-- Supabase's linter reports a table with RLS on and no policy at all as unfinished work.
CREATE FUNCTION @extschema@._secure_partition(p_partition regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', p_partition);
    EXECUTE format('REVOKE ALL ON TABLE %s FROM PUBLIC, anon, authenticated, service_role', p_partition);
    IF NOT EXISTS (SELECT 1 FROM pg_policy WHERE polrelid = p_partition AND polname = 'only_through_parent') THEN
        EXECUTE format('CREATE POLICY only_through_parent ON %s AS RESTRICTIVE FOR ALL USING (false) WITH CHECK (false)', p_partition);
    END IF;
END
$$;
COMMENT ON FUNCTION @extschema@._secure_partition(regclass) IS
    'Internal: locks a partition down (RLS on with a restrictive policy that lets nothing through, no privileges) so it can only be read through its parent.';

-- Views are security_invoker, so the caller's table privileges and RLS apply beneath them; the
-- view itself is readable by service_role, and by authenticated only when it says so.
CREATE FUNCTION @extschema@._secure_view(p_view regclass, p_authenticated boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('REVOKE ALL ON TABLE %s FROM PUBLIC, anon, authenticated', p_view);
    EXECUTE format('GRANT SELECT ON TABLE %s TO service_role', p_view);
    IF p_authenticated THEN
        EXECUTE format('GRANT SELECT ON TABLE %s TO authenticated', p_view);
    END IF;
END
$$;
COMMENT ON FUNCTION @extschema@._secure_view(regclass, boolean) IS
    'Internal: sets a view''s grants: service_role always, authenticated when asked.';

-- Argument checks shared by the plpgsql helpers: the contract's SQLSTATEs (22004 for a NULL,
-- 22023 for a value out of range) with a message naming the parameter and the value, written
-- once. They run before a helper writes anything, so a rejected call writes nothing.
-- Each returns the value it checked, so a helper calls it as `p_x := _check_x('p_x', p_x, ...)`:
-- plpgsql evaluates such an assignment as a simple expression, about 0.3 us a check, where a
-- PERFORM (a query) costs five times that. They have no `SET search_path` (which would cost
-- another 1.5 us a call): they are only called from helpers that set it to pg_catalog.
CREATE FUNCTION @extschema@._check_not_null(p_param text, p_value anyelement) RETURNS anyelement
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF p_value IS NULL THEN
        RAISE EXCEPTION '% must not be NULL', p_param USING ERRCODE = '22004';
    END IF;
    RETURN p_value;
END
$$;
COMMENT ON FUNCTION @extschema@._check_not_null(text, anyelement) IS
    'Internal: p_value, or 22004 when it is NULL.';

CREATE FUNCTION @extschema@._check_text(p_param text, p_value text, p_max_length integer, p_required boolean DEFAULT true)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF p_value IS NULL THEN
        IF p_required THEN
            RAISE EXCEPTION '% must not be NULL', p_param USING ERRCODE = '22004';
        END IF;
    ELSIF length(p_value) NOT BETWEEN 1 AND p_max_length THEN
        RAISE EXCEPTION '%: must be 1 to % characters, got %', p_param, p_max_length, length(p_value)
            USING ERRCODE = '22023';
    END IF;
    RETURN p_value;
END
$$;
COMMENT ON FUNCTION @extschema@._check_text(text, text, integer, boolean) IS
    'Internal: 22004 when a required p_value is NULL, 22023 unless it has 1 to p_max_length characters.';

-- (The list is joined by hand: array_to_string is only STABLE, and an IMMUTABLE function that
-- calls it is what plpgsql_check 2.10 rightly reports.)
CREATE FUNCTION @extschema@._check_choice(p_param text, p_value text, p_allowed text[]) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
    choices text := '';
    choice text;
BEGIN
    IF p_value IS NULL THEN
        RAISE EXCEPTION '% must not be NULL', p_param USING ERRCODE = '22004';
    ELSIF NOT p_value = ANY (p_allowed) THEN
        FOREACH choice IN ARRAY p_allowed LOOP
            choices := choices || CASE WHEN choices = '' THEN '' ELSE ', ' END || choice;
        END LOOP;
        RAISE EXCEPTION '%: must be one of %, got %', p_param, choices, quote_literal(p_value)
            USING ERRCODE = '22023';
    END IF;
    RETURN p_value;
END
$$;
COMMENT ON FUNCTION @extschema@._check_choice(text, text, text[]) IS
    'Internal: 22004 when p_value is NULL, 22023 unless it is one of p_allowed.';

CREATE FUNCTION @extschema@._check_range(p_param text, p_value bigint, p_min bigint, p_max bigint) RETURNS bigint
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF p_value IS NULL THEN
        RAISE EXCEPTION '% must not be NULL', p_param USING ERRCODE = '22004';
    ELSIF p_value NOT BETWEEN p_min AND p_max THEN
        RAISE EXCEPTION '%: must be between % and %, got %', p_param, p_min, p_max, p_value USING ERRCODE = '22023';
    END IF;
    RETURN p_value;
END
$$;
COMMENT ON FUNCTION @extschema@._check_range(text, bigint, bigint, bigint) IS
    'Internal: 22004 when p_value is NULL, 22023 unless p_min <= p_value <= p_max.';

CREATE FUNCTION @extschema@._check_time(p_param text, p_value timestamptz) RETURNS timestamptz
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF p_value IS NULL THEN
        RAISE EXCEPTION '% must not be NULL', p_param USING ERRCODE = '22004';
    ELSIF NOT isfinite(p_value) THEN
        RAISE EXCEPTION '%: must be a finite time, got %', p_param, p_value USING ERRCODE = '22023';
    END IF;
    RETURN p_value;
END
$$;
COMMENT ON FUNCTION @extschema@._check_time(text, timestamptz) IS
    'Internal: 22004 when p_value is NULL, 22023 when it is infinity or -infinity.';

-- p_type is object or array. A NULL passes unless p_required: optional JSON arguments default.
CREATE FUNCTION @extschema@._check_json(p_param text, p_value jsonb, p_type text, p_required boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF p_value IS NULL THEN
        IF p_required THEN
            RAISE EXCEPTION '% must not be NULL', p_param USING ERRCODE = '22004';
        END IF;
    ELSIF jsonb_typeof(p_value) <> p_type THEN
        RAISE EXCEPTION '%: must be a JSON %, got %', p_param, p_type, left(p_value::text, 100) USING ERRCODE = '22023';
    END IF;
    RETURN p_value;
END
$$;
COMMENT ON FUNCTION @extschema@._check_json(text, jsonb, text, boolean) IS
    'Internal: 22023 unless p_value is a JSON value of p_type (object, array); 22004 when a required one is NULL.';
