-- The archive tier: old months leave the hot table for easymo_archive (compressed), stay
-- queryable through one view per table, come back with unarchive_partition, and are dropped by
-- apply_retention after their archive period. The hot table shrinks by what left.
\set VERBOSITY terse
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS easymo CASCADE;
CREATE EXTENSION easymo;

-- Months -15 .. 0 of system_metrics, 300 rows each with a payload worth compressing.
INSERT INTO system_metrics (service_name, metric_type, metric_name, value, tags, metadata, created_at)
SELECT 'api', 'gauge', 'latency', m * 1000 + g,
       jsonb_build_object('month', m),
       jsonb_build_object('trace', repeat('span ' || (g % 7)::text || ' ', 60)),
       date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - make_interval(months => m) + interval '2 days' + g * interval '1 minute'
  FROM generate_series(0, 15) m, generate_series(1, 300) g;
SELECT ensure_partitions(1) > 0 AS made;
CREATE TEMP TABLE old_months AS
SELECT count(*) AS n, sum(value) AS total FROM system_metrics
 WHERE created_at < (date_trunc('month', now() AT TIME ZONE 'UTC') - interval '12 months') AT TIME ZONE 'UTC';
SELECT n, total FROM old_months;
CREATE TEMP TABLE hot_before AS
SELECT count(*) AS partitions, sum(pg_total_relation_size(inhrelid)) AS bytes,
       (SELECT count(*) FROM pg_index i JOIN pg_inherits h ON h.inhrelid = i.indrelid WHERE h.inhparent = 'system_metrics'::regclass) AS indexes
  FROM pg_inherits WHERE inhparent = 'system_metrics'::regclass;

-- Months that ended 12 or more months before this one: 3 (-15, -14, -13).
SELECT archive_partitions('system_metrics', 12) AS archived;
SELECT regexp_replace(c.relname, '[0-9]{4}_[0-9]{2}$', 'YYYY_MM') AS archived_table, count(*)
  FROM pg_class c WHERE c.relnamespace = 'easymo_archive'::regnamespace AND c.relkind = 'r' GROUP BY 1;
-- The hot table: 3 partitions fewer, smaller, fewer indexes; its rows are the younger months.
SELECT b.partitions - a.partitions AS partitions_gone, a.bytes < b.bytes AS smaller, b.indexes - a.indexes AS indexes_gone
  FROM hot_before b,
       (SELECT count(*) AS partitions, sum(pg_total_relation_size(inhrelid)) AS bytes,
               (SELECT count(*) FROM pg_index i JOIN pg_inherits h ON h.inhrelid = i.indrelid WHERE h.inhparent = 'system_metrics'::regclass) AS indexes
          FROM pg_inherits WHERE inhparent = 'system_metrics'::regclass) a;
SELECT count(*) AS old_rows_left_in_hot FROM system_metrics
 WHERE created_at < (date_trunc('month', now() AT TIME ZONE 'UTC') - interval '12 months') AT TIME ZONE 'UTC';
-- Through the view: the same rows.
SELECT v.n = o.n AND v.total = o.total AS same_rows FROM old_months o, (SELECT count(*) AS n, sum(value) AS total FROM easymo_archive.system_metrics) v;
-- Compressed: lz4 where the server has it (pglz otherwise), and smaller than the hot copies were.
SELECT bool_and(a.attcompression = CASE WHEN EXISTS (SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals))
                                         THEN 'l' ELSE 'p' END) AS compressed_columns
  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  JOIN pg_type t ON t.oid = a.atttypid AND t.typlen = -1 AND t.typstorage <> 'p'
 WHERE c.relnamespace = 'easymo_archive'::regnamespace AND c.relkind = 'r';
SELECT (SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c WHERE c.relnamespace = 'easymo_archive'::regnamespace AND c.relkind = 'r')
       < (SELECT b.bytes - a.bytes FROM hot_before b,
              (SELECT sum(pg_total_relation_size(inhrelid)) AS bytes FROM pg_inherits WHERE inhparent = 'system_metrics'::regclass) a) AS archive_smaller;
-- Who reads it: service_role, directly and through the view; not authenticated.
SET ROLE service_role;
SELECT count(*) AS service_role_reads_view FROM easymo_archive.system_metrics;
RESET ROLE;
SET ROLE authenticated;
SELECT regress.error($$SELECT count(*) FROM easymo_archive.system_metrics$$) AS authenticated_denied;
RESET ROLE;
-- Nothing more to archive.
SELECT archive_partitions('system_metrics', 12) AS again;

-- A month comes back (its partition made again, its rows in the table), and leaves the view.
SELECT unarchive_partition('system_metrics', (now() - interval '14 months')::date) AS rows_back;
SELECT count(*) AS back_in_hot FROM system_metrics
 WHERE created_at >= date_trunc('month', now() - interval '14 months') AND created_at < date_trunc('month', now() - interval '13 months');
SELECT count(*) AS archived_months_left FROM pg_class WHERE relnamespace = 'easymo_archive'::regnamespace AND relkind = 'r';
SELECT count(*) = 600 AS view_has_the_other_two FROM easymo_archive.system_metrics;
SELECT regress.error($$SELECT unarchive_partition('system_metrics', '1990-01-01')$$) AS not_archived;

-- Retention with an archive period: months older than 6 are archived, archived months older
-- than 6 + 6 are dropped.
SELECT apply_retention('system_metrics', 6, 6) AS dropped;
SELECT min(created_at) >= (date_trunc('month', now() AT TIME ZONE 'UTC') - interval '6 months') AT TIME ZONE 'UTC' AS hot_keeps_6_months
  FROM system_metrics;
SELECT count(*) AS archived_months, min(to_date(right(relname, 7), 'YYYY_MM')) >= date_trunc('month', now() - interval '12 months')::date AS archive_keeps_12
  FROM pg_class WHERE relnamespace = 'easymo_archive'::regnamespace AND relkind = 'r';
SELECT count(*) AS rows_in_view FROM easymo_archive.system_metrics;
-- Without an archive period, as before: old months are dropped.
SELECT apply_retention('system_metrics', 3) AS dropped_hot;

-- Bad input.
SELECT regress.error($$SELECT archive_partitions('notifications', 1)$$) AS not_partitioned;
SELECT regress.error($$SELECT archive_partitions('system_metrics', -1)$$) AS negative;
SELECT regress.error($$SELECT archive_partitions(NULL, 1)$$) AS null_table;
SELECT regress.error($$SELECT apply_retention('notifications', 1, 1)$$) AS notifications_not_archived;
SELECT regress.error($$SELECT unarchive_partition('system_metrics', NULL)$$) AS null_month;
