-- Cache: set/get, overwrite, TTL, tags, cleanup, hit/miss counting without writes, bad input.
\set VERBOSITY terse
-- NOTICEs name dates (months moved by ensure_partitions): keep them out of the expected output.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS easymo CASCADE;
CREATE EXTENSION easymo;
SET easymo.stats_flush_interval = 3600;

-- Every jsonb shape comes back as it went in.
CREATE TEMP TABLE shapes (key text, value jsonb);
INSERT INTO shapes VALUES
  ('object', '{"a": 1, "b": [true, null, "x"], "c": {"d": 1.5e-7}}'),
  ('array', '[1, "two", {"three": 3}, [4]]'),
  ('string', '"héllo, wörld"'),
  ('number', '-12345.6789'),
  ('true', 'true'),
  ('false', 'false'),
  ('null', 'null'),
  ('empty object', '{}'),
  ('empty array', '[]'),
  ('big', (SELECT jsonb_agg(jsonb_build_object('i', g, 'pad', repeat('x', 100))) FROM generate_series(1, 2000) g));
SELECT key, set_cache(key, value) > now() AS stored FROM shapes ORDER BY key;
SELECT s.key, get_cache(s.key) = s.value AS round_trip, jsonb_typeof(get_cache(s.key)) AS type
  FROM shapes s ORDER BY s.key;
-- The big one (about 250 kB) was stored compressed, out of line, and came back whole.
SELECT pg_column_size(value) < octet_length(value::text) AS compressed FROM cache_entries WHERE key = 'big';

-- Overwriting replaces value, TTL, type and tags.
SELECT set_cache('user:1', '{"v": 1}', 60, 'users', ARRAY['team:a']) IS NOT NULL AS first;
SELECT set_cache('user:1', '{"v": 2}', 3600, 'people', ARRAY['team:b', 'vip'])
       BETWEEN now() + interval '3599 seconds' AND clock_timestamp() + interval '3601 seconds' AS returns_expiry;
SELECT key, value, cache_type, tags, expires_at - updated_at AS ttl FROM cache_entries WHERE key = 'user:1';
-- An overwrite that keeps the tags changes no indexed column: a HOT update.
SELECT pg_stat_force_next_flush();
CREATE TEMP TABLE before_stats AS
SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'cache_entries';
SELECT set_cache('user:1', '{"v": 3}', 3600, 'people', ARRAY['team:b', 'vip']) IS NOT NULL AS same_tags;
SELECT pg_stat_force_next_flush();
SELECT s.n_tup_upd - b.n_tup_upd AS updates, s.n_tup_hot_upd - b.n_tup_hot_upd AS hot_updates
  FROM pg_stat_user_tables s, before_stats b WHERE s.relname = 'cache_entries';
SELECT get_cache('user:1');

-- Expired entries are never returned: a short TTL passes, and an entry whose expiry is past.
SELECT set_cache('short', '"soon gone"', 1) IS NOT NULL AS set;
SELECT get_cache('short') AS before_expiry;
SELECT pg_sleep(1.2);
SELECT get_cache('short') AS after_expiry;
SELECT set_cache('stale', '1', 60) IS NOT NULL AS set;
UPDATE cache_entries SET expires_at = now() - interval '1 second' WHERE key = 'stale';
SELECT get_cache('stale') AS past_expiry;

-- Tags: invalidation deletes exactly the entries carrying the tag.
SELECT count(set_cache('p:' || g, to_jsonb(g), 600, 'products', CASE WHEN g % 3 = 0 THEN ARRAY['sale', 'p'] ELSE ARRAY['p'] END)) AS stored
  FROM generate_series(1, 9) g;
SELECT invalidate_cache_by_tag('sale') AS invalidated;
SELECT key FROM cache_entries WHERE key LIKE 'p:%' ORDER BY key;
SELECT invalidate_cache_by_tag('no-such-tag') AS none;
SELECT invalidate_cache_by_tag('vip') AS vip;
SELECT get_cache('user:1') AS user_1_gone;
-- Untagged entries stay out of the tag index (it is partial).
SELECT pg_get_indexdef('cache_entries_tags_idx'::regclass);

-- delete_cache: true when a live value was there.
SELECT delete_cache('p:1') AS live, delete_cache('p:1') AS again, delete_cache('stale') AS expired_one;

-- Both counts are integer, as the reference says (0.2.0 returned bigint).
SELECT pg_typeof(cleanup_expired_cache()) AS cleanup_returns, pg_typeof(invalidate_cache_by_tag('none')) AS invalidate_returns;

-- cleanup_expired_cache removes the expired entries only, and says how many.
INSERT INTO cache_entries (key, value, expires_at)
SELECT 'old:' || g, '{}', now() - interval '1 minute' FROM generate_series(1, 2500) g;
SELECT count(*) AS live_before FROM cache_entries WHERE expires_at > now();
SELECT cleanup_expired_cache() AS removed;
SELECT cleanup_expired_cache() AS removed_again;
SELECT count(*) AS live_after FROM cache_entries WHERE expires_at > now();

-- Hits and misses per cache type, counted without writing in the caller's transaction: no
-- xid, no row lock, however many reads (0.2.0 flushed into cache_stat_counters inside the
-- reading transaction: a plain SELECT get_cache(k) could wait on, and deadlock with, another
-- reader). This session's counts are visible at once; they reach cache_stat_counters through
-- the flush worker, in a transaction of its own, every easymo.stats_flush_interval seconds (set
-- long here, so time plays no part), when the session ends, or when _flush_stats() says so.
SET easymo.stats_flush_interval = 3600;
SELECT _flush_stats() AS flushed_before;
DELETE FROM cache_stat_counters;
BEGIN;
SELECT get_cache('p:2') IS NOT NULL AS hit, get_cache('p:404') IS NULL AS miss, get_cache('short') IS NULL AS expired_miss;
SELECT count(get_cache('p:' || (g % 9 + 1))) AS hits_of_5000 FROM generate_series(1, 5000) g;
SELECT txid_current_if_assigned() IS NULL AS no_xid_after_5002_reads;
SELECT count(*) AS locks_on_counters FROM pg_locks WHERE relation = 'cache_stat_counters'::regclass AND pid = pg_backend_pid();
COMMIT;
SELECT cache_type, hits, misses FROM cache_hit_counters();
SELECT cache_type, entries, expired, hits, misses, hit_ratio FROM cache_stats ORDER BY cache_type NULLS FIRST;
SELECT count(*) AS rows_written_by_reads FROM cache_stat_counters;
-- Read-only, counted the same.
BEGIN READ ONLY;
SELECT count(get_cache('p:2')) AS hits_read_only FROM generate_series(1, 1500);
COMMIT;
-- A rolled-back transaction's reads still count (they happened).
BEGIN;
SELECT count(get_cache('p:2')) AS hits_rolled_back FROM generate_series(1, 10);
ROLLBACK;
SELECT cache_type, hits, misses FROM cache_hit_counters();
SELECT _flush_stats() AS flushed;
SELECT cache_type, hits, misses FROM cache_stat_counters ORDER BY cache_type;
SELECT cache_type, hits, misses FROM cache_hit_counters();
-- A session that ends hands its counts to the flush worker as it exits.
SELECT hits AS hits_before FROM cache_stat_counters WHERE cache_type = 'products' \gset
\c
SELECT count(get_cache('p:2')) AS hits_in_a_session_that_ends FROM generate_series(1, 7);
\c
SET client_min_messages = warning;
SELECT set_config('regress.hits_before', :'hits_before', false) IS NOT NULL AS remembered;
DO $wait$
BEGIN
    FOR i IN 1 .. 300 LOOP
        EXIT WHEN (SELECT hits FROM cache_stat_counters WHERE cache_type = 'products')
                  >= current_setting('regress.hits_before')::bigint + 7;
        PERFORM pg_sleep(0.05);
    END LOOP;
END
$wait$;
SELECT hits - :hits_before AS arrived_from_the_ended_session FROM cache_stat_counters WHERE cache_type = 'products';
SET easymo.stats_flush_interval = 3600;

-- Bad input: NULL 22004; empty or longer than 512 bytes, TTL <= 0 or above a year, a bad type
-- or tag 22023.
SELECT regress.outcome($$SELECT get_cache(NULL)$$) AS get_null,
       regress.outcome($$SELECT set_cache(NULL, '1')$$) AS set_null_key,
       regress.outcome($$SELECT set_cache('k', NULL)$$) AS set_null_value,
       regress.outcome($$SELECT set_cache('k', '1', NULL)$$) AS null_ttl,
       regress.outcome($$SELECT set_cache('k', '1', 60, NULL)$$) AS null_type,
       regress.outcome($$SELECT set_cache('k', '1', 60, 'general', ARRAY['a', NULL])$$) AS null_tag,
       regress.outcome($$SELECT delete_cache(NULL)$$) AS delete_null,
       regress.outcome($$SELECT invalidate_cache_by_tag(NULL)$$) AS tag_null;
SELECT get_cache('');
SELECT get_cache(repeat('é', 257));
SELECT set_cache(repeat('k', 513), '1');
SELECT set_cache('k', '1', 0);
SELECT set_cache('k', '1', -5);
SELECT set_cache('k', '1', 31536001);
SELECT set_cache('k', '1', 60, '');
SELECT set_cache('k', '1', 60, repeat('t', 65));
SELECT set_cache('k', '1', 60, 'general', ARRAY['']);
SELECT invalidate_cache_by_tag('');
-- The edges are accepted: 512 bytes, a year.
SELECT set_cache(repeat('é', 256), '1', 31536000) IS NOT NULL AS edges_ok;
SELECT get_cache(repeat('é', 256)) AS value;

-- Visibility: an entry is readable by service_role only (the default), by every authenticated
-- caller, or by one user too. An entry the caller may not read is NULL, exactly like a missing
-- one, and is counted as a miss of no entry (0.2.0 let any authenticated user read any entry).
SELECT set_cache('v:service', '"secret"') IS NOT NULL AND set_cache('v:all', '"shared"', 60, 'general', '{}', 'authenticated') IS NOT NULL
   AND set_cache('v:a', '"for a"', 60, 'general', '{}', 'owner', '00000000-0000-0000-0000-00000000000a') IS NOT NULL AS stored;
SELECT key, visibility, owner_user_id FROM cache_entries WHERE key LIKE 'v:%' ORDER BY key;
SELECT regress.outcome($$SELECT set_cache('v:x', '1', 60, 'general', '{}', 'owner')$$) AS owner_without_user,
       regress.outcome($$SELECT set_cache('v:x', '1', 60, 'general', '{}', 'public')$$) AS unknown_visibility,
       regress.outcome($$SELECT set_cache('v:x', '1', 60, 'general', '{}', NULL)$$) AS null_visibility;
SET ROLE authenticated;
SET request.jwt.claims = '{"sub": "00000000-0000-0000-0000-00000000000a"}';
SELECT get_cache('v:service') AS service_only, get_cache('v:all') AS for_authenticated, get_cache('v:a') AS own;
SET request.jwt.claims = '{"sub": "00000000-0000-0000-0000-00000000000b"}';
SELECT get_cache('v:service') AS service_only, get_cache('v:all') AS for_authenticated, get_cache('v:a') AS others;
RESET request.jwt.claims;
SELECT get_cache('v:a') AS no_claims;
BEGIN READ ONLY;
SELECT get_cache('v:all') AS read_only_too;
COMMIT;
SET ROLE service_role;
SELECT get_cache('v:service') AS service_only, get_cache('v:all') AS for_authenticated, get_cache('v:a') AS owned_by_a;
RESET ROLE;
-- An overwrite replaces the visibility.
SELECT set_cache('v:a', '"now service"') IS NOT NULL AS overwritten;
SET ROLE authenticated;
SET request.jwt.claims = '{"sub": "00000000-0000-0000-0000-00000000000a"}';
SELECT get_cache('v:a') AS after_overwrite;
RESET request.jwt.claims;
RESET ROLE;

-- Who may call: authenticated reads (get_cache only); service_role all.
SET ROLE authenticated;
SELECT get_cache('v:all') AS authenticated_reads;
SELECT regress.outcome($$SELECT set_cache('x', '1')$$, false) AS authenticated_sets,
       regress.outcome($$SELECT * FROM cache_entries$$, false) AS authenticated_table;
SET ROLE anon;
SELECT regress.outcome($$SELECT get_cache('p:2')$$, false) AS anon_reads;
SET ROLE service_role;
SELECT set_cache('svc', '"ok"', 60) IS NOT NULL AS service_role_sets;
SELECT get_cache('svc') AS value;
SELECT cache_type, entries FROM cache_stats WHERE cache_type = 'general';
RESET ROLE;
