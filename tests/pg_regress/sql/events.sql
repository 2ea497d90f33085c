-- Event store: gapless per-stream versions, expected-version checks (40001 naming both versions,
-- nothing written), reads in version order, bad input. (Concurrent appenders: the isolation spec
-- append_versions and the integration crate.)
\set VERBOSITY terse
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS easymo CASCADE;
CREATE EXTENSION easymo;
-- This month's and the next three's partitions, as run_maintenance() makes them.
SELECT ensure_partitions(3) AS month_partitions;

-- Versions start at 1 and count up per (aggregate_type, aggregate_id).
SELECT append_event('order-1', 'order', 'created', '{"total": 100}', 'corr-1') IS NOT NULL AS v1;
SELECT append_event('order-1', 'order', 'paid', '{"amount": 100}', 'corr-1', '{"by": "momo"}') IS NOT NULL AS v2;
SELECT append_event('order-1', 'order', 'shipped') IS NOT NULL AS v3;
SELECT append_event('order-2', 'order', 'created') IS NOT NULL AS other_stream;
SELECT append_event('order-1', 'invoice', 'created') IS NOT NULL AS same_id_other_type;
SELECT aggregate_type, aggregate_id, version, event_type, payload, metadata, correlation_id
  FROM event_store ORDER BY aggregate_type, aggregate_id, version;
SELECT aggregate_type, aggregate_id, current_version FROM event_streams ORDER BY 1, 2;
-- Events land in their month's partition, not the DEFAULT one.
SELECT count(*) AS in_default FROM event_store_default;

-- Causation: an event may name the event that caused it.
SELECT id AS paid FROM event_store WHERE aggregate_id = 'order-1' AND event_type = 'paid' \gset
SELECT append_event('order-1', 'order', 'receipt_sent', p_causation_id => :'paid') IS NOT NULL AS v4;
SELECT causation_id = :'paid' AS caused_by_paid FROM event_store WHERE event_type = 'receipt_sent';

-- Expected version: NULL any, 0 empty stream, N the stream must be at N.
SELECT append_event('order-3', 'order', 'created', p_expected_version => 0) IS NOT NULL AS empty_ok;
SELECT append_event('order-3', 'order', 'paid', p_expected_version => 1) IS NOT NULL AS at_1_ok;
SELECT regress.error($$SELECT append_event('order-3', 'order', 'paid', p_expected_version => 1)$$) AS stale;
SELECT regress.error($$SELECT append_event('order-3', 'order', 'created', p_expected_version => 0)$$) AS not_empty;
SELECT regress.error($$SELECT append_event('order-3', 'order', 'paid', p_expected_version => 5)$$) AS ahead;
SELECT regress.error($$SELECT append_event('order-9', 'order', 'paid', p_expected_version => 1)$$) AS new_stream;
-- The DETAIL names both versions too, for clients that read it.
SET client_min_messages = notice;
DO $$
BEGIN
    PERFORM append_event('order-3', 'order', 'paid', p_expected_version => 1);
EXCEPTION WHEN serialization_failure THEN
    DECLARE detail text;
    BEGIN
        GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
        RAISE NOTICE 'DETAIL: %', detail;
    END;
END
$$;
SET client_min_messages = warning;
-- A refused append wrote nothing: no event, no stream head, no version taken.
SELECT count(*) AS order_3_events, max(version) AS order_3_version FROM event_store WHERE aggregate_id = 'order-3';
SELECT aggregate_id, current_version FROM event_streams WHERE aggregate_id IN ('order-3', 'order-9') ORDER BY 1;
-- So the next append gets the next version: no gap.
SELECT append_event('order-3', 'order', 'shipped', p_expected_version => 2) IS NOT NULL AS at_2_ok;
SELECT array_agg(version ORDER BY version) AS order_3_versions FROM event_store WHERE aggregate_id = 'order-3';

-- Reads: in version order, after a version, at most a limit.
SELECT version, event_type FROM get_aggregate_events('order', 'order-1');
SELECT version, event_type FROM get_aggregate_events('order', 'order-1', 2);
SELECT version, event_type FROM get_aggregate_events('order', 'order-1', 10, 2);
SELECT count(*) AS none FROM get_aggregate_events('order', 'no-such-order');
SELECT regress.error($$SELECT * FROM get_aggregate_events(NULL, 'order-1')$$) AS null_type;
SELECT regress.error($$SELECT * FROM get_aggregate_events('order', 'order-1', 0)$$) AS limit_0;
SELECT regress.error($$SELECT * FROM get_aggregate_events('order', 'order-1', 10001)$$) AS limit_10001;
SELECT regress.error($$SELECT * FROM get_aggregate_events('order', 'order-1', 10, -1)$$) AS after_negative;

-- Bad appends: 22004/22023, and nothing written.
SELECT regress.error($$SELECT append_event(NULL, 'order', 'created')$$) AS null_id;
SELECT regress.error($$SELECT append_event('order-1', NULL, 'created')$$) AS null_type;
SELECT regress.error($$SELECT append_event('order-1', 'order', NULL)$$) AS null_event_type;
SELECT regress.error($$SELECT append_event('', 'order', 'created')$$) AS empty_id;
SELECT regress.error(format('SELECT append_event(%L, %L, %L)', 'order-1', repeat('o', 129), 'created')) AS long_type;
SELECT regress.error($$SELECT append_event('order-1', 'order', 'paid', p_expected_version => -1)$$) AS negative_expected;
SELECT regress.error(format('SELECT append_event(%L, %L, %L, p_correlation_id => %L)', 'order-1', 'order', 'paid', repeat('c', 129))) AS long_correlation;
SELECT regress.error($$SELECT append_event('order-1', 'order', 'paid', p_metadata => '[1]')$$) AS metadata_array;
SELECT (SELECT count(*) FROM event_store) AS events, (SELECT sum(current_version) FROM event_streams) AS versions_taken;

SELECT aggregate_type, event_type, events, aggregates FROM event_store_stats ORDER BY 1, 2;
