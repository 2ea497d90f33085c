-- The baseline: get_cache and set_cache in plpgsql on the same table (without hit counting,
-- which plpgsql could only do by writing a row per read).
CREATE FUNCTION plpgsql_get_cache(p_key text) RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    v jsonb;
BEGIN
    IF p_key IS NULL THEN
        RAISE EXCEPTION 'p_key must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF octet_length(p_key) NOT BETWEEN 1 AND 512 THEN
        RAISE EXCEPTION 'p_key: bad length' USING ERRCODE = '22023';
    END IF;
    SELECT value INTO v FROM cache_entries WHERE key = p_key AND expires_at > clock_timestamp();
    RETURN v;
END $$;

CREATE FUNCTION plpgsql_set_cache(p_key text, p_value jsonb, p_ttl_seconds integer DEFAULT 3600,
                                  p_cache_type text DEFAULT 'general', p_tags text[] DEFAULT '{}')
RETURNS timestamptz LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    expiry timestamptz;
BEGIN
    IF p_key IS NULL OR p_value IS NULL OR p_ttl_seconds IS NULL OR p_cache_type IS NULL THEN
        RAISE EXCEPTION 'a required argument is NULL' USING ERRCODE = '22004';
    END IF;
    IF octet_length(p_key) NOT BETWEEN 1 AND 512 OR p_ttl_seconds NOT BETWEEN 1 AND 31536000
       OR length(p_cache_type) NOT BETWEEN 1 AND 64 THEN
        RAISE EXCEPTION 'bad argument' USING ERRCODE = '22023';
    END IF;
    expiry := clock_timestamp() + make_interval(secs => p_ttl_seconds);
    INSERT INTO cache_entries AS c (key, value, cache_type, tags, expires_at)
    VALUES (p_key, p_value, p_cache_type, coalesce(p_tags, '{}'), expiry)
    ON CONFLICT (key) DO UPDATE SET value = excluded.value, cache_type = excluded.cache_type,
        tags = excluded.tags, expires_at = excluded.expires_at, updated_at = now();
    RETURN expiry;
END $$;
