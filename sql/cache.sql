-- Cache: a general-purpose key-value cache with TTL and tags (functions in src/cache.rs).
--
-- Layout, for overwrites that stay HOT and sweeps that stay cheap:
--   * the key is the primary key, in the "C" collation (keys are opaque: memcmp comparisons,
--     immune to operating-system collation changes);
--   * no index on expires_at (or on anything else an overwrite changes): an UPDATE that changes
--     no indexed column is a HOT update, which writes no index entry and can reuse its page, so
--     the fillfactor leaves 30 % of each page free for the new versions;
--   * expiry is checked on every read, so sweeping is only about reclaiming space: it walks the
--     heap in page ranges (a TID range scan), each batch bounded, the whole table in one pass;
--   * tags are found through a GIN index that is partial (non-empty tags only): untagged entries,
--     the common case, never touch it, and an overwrite with the same tags stays HOT;
--   * visibility says who besides service_role may read an entry through get_cache: nobody
--     (service, the default), every authenticated caller, or one user (owner, owner_user_id =
--     request_user_id()). get_cache checks it natively; an entry the caller may not read is
--     NULL, exactly like a missing one. owner_user_id may also mark whose data an entry is.
CREATE TABLE @extschema@.cache_entries (
    key        text COLLATE "C" PRIMARY KEY CHECK (octet_length(key) BETWEEN 1 AND 512),
    value      jsonb NOT NULL,
    cache_type text NOT NULL DEFAULT 'general' CHECK (length(cache_type) BETWEEN 1 AND 64),
    tags       text[] NOT NULL DEFAULT '{}',
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    visibility text NOT NULL DEFAULT 'service' CHECK (visibility IN ('service', 'authenticated', 'owner')),
    owner_user_id uuid,
    CONSTRAINT cache_entries_owner_check CHECK (visibility <> 'owner' OR owner_user_id IS NOT NULL)
) WITH (fillfactor = 70);
CREATE INDEX cache_entries_tags_idx ON @extschema@.cache_entries USING gin (tags) WHERE tags <> '{}';
COMMENT ON TABLE @extschema@.cache_entries IS
    'General-purpose key-value cache: jsonb values with a TTL (expires_at, checked on every read), a cache type and tags for bulk invalidation. Use set_cache(), get_cache(), delete_cache(), invalidate_cache_by_tag(), cleanup_expired_cache().';

-- get_cache answers from copies in shared memory when easymo is preloaded (src/cache/shared.rs);
-- this trigger drops a key's copies at every update and delete. ENABLE ALWAYS: it fires whatever
-- the session's session_replication_role (logical replication, restores). Without it enabled
-- ALWAYS, get_cache reads the table.
CREATE TRIGGER cache_entries_shared_copies AFTER UPDATE OR DELETE ON @extschema@.cache_entries
    FOR EACH ROW EXECUTE FUNCTION @extschema@._cache_entry_changed();
ALTER TABLE @extschema@.cache_entries ENABLE ALWAYS TRIGGER cache_entries_shared_copies;
COMMENT ON FUNCTION @extschema@._cache_entry_changed() IS
    'Internal trigger (after UPDATE or DELETE on cache_entries, per row, enabled always): drops the shared-memory copies of the key changed, which get_cache answers from when easymo is preloaded.';

-- Hits and misses, when easymo is not in shared_preload_libraries: each backend counts in its
-- own memory and hands its counts to a short-lived background worker, which adds them here in a
-- transaction of its own (src/stats.rs), so a read never writes in the caller's transaction.
-- With the library preloaded the counts go to shared memory instead. cache_type '' holds the
-- misses of keys that had no entry the caller could read.
CREATE TABLE @extschema@.cache_stat_counters (
    cache_type text PRIMARY KEY,
    hits       bigint NOT NULL DEFAULT 0 CHECK (hits >= 0),
    misses     bigint NOT NULL DEFAULT 0 CHECK (misses >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE @extschema@.cache_stat_counters IS
    'Cache hits and misses per cache type, added by easymo''s flush worker when easymo is not preloaded (cache_type '''' = misses of keys with no entry the caller could read). Read them through cache_stats.';

COMMENT ON FUNCTION @extschema@.set_cache(text, jsonb, integer, text, text[], text, uuid) IS
    'Stores p_value under p_key for p_ttl_seconds (1 s to 365 days) with a cache type, tags and a visibility (service: service_role only, the default; authenticated: every authenticated caller; owner: the user p_owner_user_id too), replacing any previous value, TTL, tags and visibility; returns the expiry.';
COMMENT ON FUNCTION @extschema@.get_cache(text) IS
    'The value cached under p_key, or NULL when there is none, it has expired, or the caller may not read it (its visibility). Never writes in the caller''s transaction; works read-only and on a hot standby. Counts a hit or a miss for cache_stats.';
COMMENT ON FUNCTION @extschema@.delete_cache(text) IS
    'Deletes p_key; true when it held a value that had not expired.';
COMMENT ON FUNCTION @extschema@.invalidate_cache_by_tag(text) IS
    'Deletes every entry tagged p_tag; returns how many.';
COMMENT ON FUNCTION @extschema@.cleanup_expired_cache() IS
    'Deletes every expired entry, walking the table in page batches; returns how many.';
COMMENT ON FUNCTION @extschema@.cache_hit_counters() IS
    'Hits and misses per cache type since counting began (shared memory when easymo is preloaded, plus the counters table, plus the calling session''s counts not yet handed on); cache_type NULL counts keys that had no entry the caller could read. What cache_stats reports.';
COMMENT ON FUNCTION @extschema@.cache_shared_stats() IS
    'The shared-memory copies get_cache answers from when easymo is preloaded (easymo.cache_shared_memory): the server''s slots, how many hold a copy, and the copies made and answers given from them since the server started. Zeros without them.';
COMMENT ON FUNCTION @extschema@._flush_stats() IS
    'Internal: hands the calling session''s cache and flag counts on now (shared memory, or the flush worker, waiting until it has stored them); false when that is not possible now (the counts are kept). Sessions do this by themselves every easymo.stats_flush_interval seconds and when they end.';

CREATE VIEW @extschema@.cache_stats WITH (security_invoker = true) AS
WITH entries AS (
    SELECT cache_type,
           count(*)                                          AS entries,
           count(*) FILTER (WHERE expires_at <= now())       AS expired,
           sum(pg_column_size(value))                        AS value_bytes
      FROM @extschema@.cache_entries
     GROUP BY cache_type
)
SELECT coalesce(e.cache_type, c.cache_type)                  AS cache_type,
       coalesce(e.entries, 0)                                AS entries,
       coalesce(e.expired, 0)                                AS expired,
       coalesce(c.hits, 0)                                   AS hits,
       coalesce(c.misses, 0)                                 AS misses,
       CASE WHEN coalesce(c.hits, 0) + coalesce(c.misses, 0) > 0
            THEN round(c.hits::numeric / (c.hits + c.misses), 4) END AS hit_ratio,
       coalesce(e.value_bytes, 0)                            AS value_bytes
  FROM entries e
  FULL JOIN @extschema@.cache_hit_counters() c ON c.cache_type = e.cache_type;
COMMENT ON VIEW @extschema@.cache_stats IS
    'Per cache type: entries, expired (not yet swept), hits, misses, hit ratio and stored value bytes. The row with cache_type NULL counts misses of keys that had no entry.';

SELECT @extschema@._secure_table('@extschema@.cache_entries');
SELECT @extschema@._secure_table('@extschema@.cache_stat_counters');
SELECT @extschema@._secure_view('@extschema@.cache_stats');
