-- The baseline: the same contract as is_feature_enabled written in plpgsql, reading the flag row
-- on every call (no cache). Bucketing uses hashtextextended, the hash plain SQL has.
CREATE FUNCTION plpgsql_is_feature_enabled(p_flag_key text, p_user_id uuid DEFAULT NULL,
                                           p_environment text DEFAULT 'production',
                                           p_context jsonb DEFAULT '{}')
RETURNS boolean LANGUAGE plpgsql STABLE AS $$
DECLARE
    f feature_flags;
    rule jsonb;
    attr jsonb;
    holds boolean;
BEGIN
    IF p_flag_key IS NULL THEN
        RAISE EXCEPTION 'p_flag_key must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF p_environment NOT IN ('development', 'staging', 'production') THEN
        RAISE EXCEPTION 'p_environment: bad value %', p_environment USING ERRCODE = '22023';
    END IF;
    SELECT * INTO f FROM feature_flags
     WHERE key = p_flag_key AND environment IN (p_environment, 'all')
     ORDER BY environment = 'all' LIMIT 1;
    IF NOT FOUND OR NOT f.enabled THEN
        RETURN false;
    END IF;
    CASE f.rollout_strategy
    WHEN 'all' THEN RETURN true;
    WHEN 'none' THEN RETURN false;
    WHEN 'user_list' THEN RETURN p_user_id = ANY (f.target_users);
    WHEN 'percentage' THEN
        IF p_user_id IS NULL THEN
            RETURN f.rollout_percentage >= 100;
        END IF;
        RETURN ((hashtextextended(p_flag_key || ':' || p_user_id::text, 0) % 10000 + 10000) % 10000)
               < f.rollout_percentage * 100;
    ELSE
        FOR rule IN SELECT * FROM jsonb_array_elements(f.conditions) LOOP
            attr := p_context #> string_to_array(rule ->> 'attribute', '.');
            holds := CASE rule ->> 'operator'
                WHEN 'eq' THEN attr = rule -> 'value'
                WHEN 'neq' THEN attr <> rule -> 'value'
                WHEN 'in' THEN rule -> 'value' @> jsonb_build_array(attr)
                WHEN 'not_in' THEN NOT rule -> 'value' @> jsonb_build_array(attr)
                ELSE false END;
            IF attr IS NULL OR NOT holds THEN
                RETURN false;
            END IF;
        END LOOP;
        RETURN true;
    END CASE;
END $$;
