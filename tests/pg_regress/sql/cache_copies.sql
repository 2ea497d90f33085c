-- With easymo preloaded, get_cache answers from copies of entries in shared memory
-- (src/cache/shared.rs). A copy is exact or unused: every change below is seen by the very next
-- read, and `from_copy` shows which reads a copy answered (cache_shared_stats counts them).
\set VERBOSITY terse
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS easymo CASCADE;
CREATE EXTENSION easymo;
SELECT slots > 0 AS has_slots FROM cache_shared_stats();

-- get(key): the value and whether a copy answered (as the current role, which must be allowed
-- to read cache_shared_stats: the tests switch roles around plain get_cache calls instead).
CREATE FUNCTION pg_temp.get(k text, OUT value jsonb, OUT from_copy boolean) LANGUAGE plpgsql AS $$
DECLARE
    before bigint := (SELECT answers_from_copies FROM cache_shared_stats());
BEGIN
    value := get_cache(k);
    from_copy := (SELECT answers_from_copies FROM cache_shared_stats()) > before;
END $$;

-- The first read copies, the next ones answer from the copy.
SELECT set_cache('k1', '{"v": 1}', 600) IS NOT NULL AS stored;
SELECT * FROM pg_temp.get('k1');
SELECT * FROM pg_temp.get('k1');
-- Overwritten (INSERT ... ON CONFLICT DO UPDATE), updated by hand, deleted: the next read is right.
SELECT set_cache('k1', '{"v": 2}', 600) IS NOT NULL AS stored;
SELECT * FROM pg_temp.get('k1');
SELECT * FROM pg_temp.get('k1');
UPDATE cache_entries SET value = '{"v": 3}' WHERE key = 'k1';
SELECT * FROM pg_temp.get('k1');
SELECT * FROM pg_temp.get('k1');
SELECT delete_cache('k1');
SELECT * FROM pg_temp.get('k1');
-- Deleted by tag and by a sweep, after being copied.
SELECT set_cache('k1', '{"v": 4}', 600, 'general', ARRAY['t']) IS NOT NULL AS stored;
SELECT (pg_temp.get('k1')).value, (pg_temp.get('k1')).from_copy;
SELECT invalidate_cache_by_tag('t');
SELECT * FROM pg_temp.get('k1');

-- The transaction's own writes are never copied; a rollback leaves the committed value.
BEGIN;
SELECT set_cache('k2', '{"v": 1}', 600) IS NOT NULL AS stored;
SELECT * FROM pg_temp.get('k2');
SELECT * FROM pg_temp.get('k2');
ROLLBACK;
SELECT * FROM pg_temp.get('k2');
SELECT set_cache('k2', '{"v": 2}', 600) IS NOT NULL AS stored;
SELECT (pg_temp.get('k2')).value, (pg_temp.get('k2')).from_copy;
BEGIN;
UPDATE cache_entries SET value = '{"v": "mine"}' WHERE key = 'k2';
SELECT * FROM pg_temp.get('k2');
ROLLBACK;
SELECT * FROM pg_temp.get('k2');
SELECT * FROM pg_temp.get('k2');
-- Locked, not changed (SELECT FOR UPDATE): the copy still answers.
BEGIN;
SELECT key FROM cache_entries WHERE key = 'k2' FOR UPDATE;
SELECT * FROM pg_temp.get('k2');
COMMIT;

-- Expiry is checked on the copy.
SELECT set_cache('k3', '{"v": 1}', 1) IS NOT NULL AS stored;
SELECT (pg_temp.get('k3')).value, (pg_temp.get('k3')).from_copy;
SELECT pg_sleep(1.2);
SELECT * FROM pg_temp.get('k3');

-- Visibility and owner are checked on the copy, for each caller. Copies made by service reads.
SELECT set_cache('svc', '{"v": "service"}', 600) IS NOT NULL AS stored;
SELECT set_cache('all', '{"v": "authenticated"}', 600, 'general', '{}', 'authenticated') IS NOT NULL AS stored;
SELECT set_cache('own', '{"v": "owner"}', 600, 'general', '{}', 'owner', '00000000-0000-0000-0000-00000000000a') IS NOT NULL AS stored;
SELECT get_cache('svc') IS NOT NULL, get_cache('all') IS NOT NULL, get_cache('own') IS NOT NULL;
SELECT answers_from_copies AS before FROM cache_shared_stats() \gset
SET ROLE authenticated;
SET request.jwt.claims = '{"sub": "00000000-0000-0000-0000-00000000000a"}';
SELECT get_cache('svc') AS svc, get_cache('all') AS "all", get_cache('own') AS own;
SET request.jwt.claims = '{"sub": "00000000-0000-0000-0000-00000000000b"}';
SELECT get_cache('svc') AS svc, get_cache('all') AS "all", get_cache('own') AS own;
BEGIN READ ONLY;
SELECT get_cache('all') AS "all (read-only transaction)";
COMMIT;
RESET request.jwt.claims;
RESET ROLE;
SET ROLE service_role;
SELECT get_cache('svc') AS svc, get_cache('own') AS own;
RESET ROLE;
SELECT answers_from_copies - :before AS answered_from_copies FROM cache_shared_stats();

-- The trigger that keeps copies exact, disabled: copies are not used, and a change made while
-- it was off is never hidden by a copy from before, even once it is enabled again.
SELECT set_cache('k4', '{"v": 1}', 600) IS NOT NULL AS stored;
SELECT (pg_temp.get('k4')).value, (pg_temp.get('k4')).from_copy;
ALTER TABLE cache_entries DISABLE TRIGGER cache_entries_shared_copies;
UPDATE cache_entries SET value = '{"v": "while off"}' WHERE key = 'k4';
SELECT * FROM pg_temp.get('k4');
SELECT * FROM pg_temp.get('k4');
ALTER TABLE cache_entries ENABLE ALWAYS TRIGGER cache_entries_shared_copies;
SELECT * FROM pg_temp.get('k4');
SELECT * FROM pg_temp.get('k4');
-- Enabled for origin sessions only: not enough (a replica session would not fire it).
ALTER TABLE cache_entries ENABLE TRIGGER cache_entries_shared_copies;
SELECT * FROM pg_temp.get('k4');
ALTER TABLE cache_entries ENABLE ALWAYS TRIGGER cache_entries_shared_copies;
-- A session in replica mode (logical replication, a restore) still drops the copy.
SELECT (pg_temp.get('k4')).value, (pg_temp.get('k4')).from_copy;
SET session_replication_role = replica;
UPDATE cache_entries SET value = '{"v": "replica"}' WHERE key = 'k4';
RESET session_replication_role;
SELECT * FROM pg_temp.get('k4');
-- The trigger dropped: copies are not used.
DROP TRIGGER cache_entries_shared_copies ON cache_entries;
SELECT * FROM pg_temp.get('k4');
SELECT * FROM pg_temp.get('k4');
CREATE TRIGGER cache_entries_shared_copies AFTER UPDATE OR DELETE ON cache_entries
    FOR EACH ROW EXECUTE FUNCTION _cache_entry_changed();
ALTER TABLE cache_entries ENABLE ALWAYS TRIGGER cache_entries_shared_copies;
SELECT (pg_temp.get('k4')).value, (pg_temp.get('k4')).from_copy;

-- What no row trigger sees: TRUNCATE, VACUUM FULL, a rewrite of the values by ALTER TABLE.
SELECT set_cache('k5', '{"v": 1}', 600) IS NOT NULL AS stored;
SELECT (pg_temp.get('k5')).value, (pg_temp.get('k5')).from_copy;
VACUUM FULL cache_entries;
SELECT * FROM pg_temp.get('k5');
SELECT * FROM pg_temp.get('k5');
-- Every entry made readable by authenticated callers in a rewrite (no UPDATE, no trigger): a copy
-- of k5 made when it was service-only does not answer them.
ALTER TABLE cache_entries ALTER COLUMN visibility TYPE text USING 'authenticated';
SET ROLE authenticated;
SELECT get_cache('k5') AS "k5 as authenticated";
RESET ROLE;
SELECT * FROM pg_temp.get('k5');
SELECT * FROM pg_temp.get('k5');
BEGIN;
TRUNCATE cache_entries;
SELECT * FROM pg_temp.get('k5');
ROLLBACK;
SELECT * FROM pg_temp.get('k5');
TRUNCATE cache_entries;
SELECT * FROM pg_temp.get('k5');

-- A value too large for a slot is read from the table every time.
SELECT set_cache('big', jsonb_build_object('text', repeat('x', 300)), 600) IS NOT NULL AS stored;
SELECT length((pg_temp.get('big')).value ->> 'text'), (pg_temp.get('big')).from_copy;
SELECT length((pg_temp.get('big')).value ->> 'text'), (pg_temp.get('big')).from_copy;

-- Many keys: each read answers the value stored under its own key.
SELECT count(set_cache('many:' || g, jsonb_build_object('g', g), 600)) FROM generate_series(1, 2000) g;
SELECT count(*) FILTER (WHERE (get_cache('many:' || g) ->> 'g')::int = g) AS right_first FROM generate_series(1, 2000) g;
SELECT count(*) FILTER (WHERE (get_cache('many:' || g) ->> 'g')::int = g) AS right_again FROM generate_series(1, 2000) g;
SELECT copies >= 1000 AS copied FROM cache_shared_stats();

-- Filled to 40 % of the slots, nearly every entry has a copy: a key whose first bucket is full
-- is copied to its second (with one bucket per key, 2 % had none at this fill). A change drops
-- a copy in either bucket.
SELECT (slots * 0.4)::int AS n FROM cache_shared_stats() \gset
TRUNCATE cache_entries;
SELECT count(set_cache('fill:' || g, jsonb_build_object('g', g), 600)) = :n AS filled FROM generate_series(1, :n) g;
SELECT count(get_cache('fill:' || g)) = :n AS read FROM generate_series(1, :n) g;
SELECT answers_from_copies AS before FROM cache_shared_stats() \gset
SELECT count(*) FILTER (WHERE (get_cache('fill:' || g) ->> 'g')::int = g) = :n AS right FROM generate_series(1, :n) g;
SELECT answers_from_copies - :before >= 0.995 * :n AS nearly_all_from_copies FROM cache_shared_stats();
UPDATE cache_entries SET value = jsonb_build_object('g', -1) WHERE key LIKE 'fill:%';
SELECT count(*) FILTER (WHERE (get_cache('fill:' || g) ->> 'g')::int = -1) = :n AS all_changed FROM generate_series(1, :n) g;
DELETE FROM cache_entries WHERE key LIKE 'fill:%';
SELECT count(get_cache('fill:' || g)) AS none_left FROM generate_series(1, :n) g;
