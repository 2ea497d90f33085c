# Nearby search (issue 5): native find_nearby_locations against PostGIS (ST_DWithin and
# ST_Distance on geography, GiST index) on the same points and the same queries, LIMIT 50.
# Points at constant density (1,000,000 over 60 x 60 km around Kigali, about 278 per km²; fewer
# points over a proportionally smaller square), so a query returns the same number of rows at
# every table size. PostGIS is installed in the benchmark database only.
bsql -c "CREATE EXTENSION IF NOT EXISTS postgis" >/dev/null
tmp=$(mktemp -d)
for size in 10000 100000 1000000; do
    # Half the side of the square, in degrees (1 degree ~ 111 km here, near the equator).
    half=$(awk -v n="$size" 'BEGIN { printf "%.6f", 30.0 * sqrt(n / 1000000) / 111.0 }')
    bsql <<SQL >/dev/null
TRUNCATE locations;
DROP TABLE IF EXISTS postgis_locations;
SELECT setseed(0.5);
INSERT INTO locations (location_type, latitude, longitude)
SELECT (ARRAY['current','home','work','favorite','pickup','dropoff'])[1 + floor(random() * 6)::int],
       -1.95 + (random() * 2 - 1) * $half, 30.06 + (random() * 2 - 1) * $half
  FROM generate_series(1, $size);
CREATE TABLE postgis_locations AS
SELECT id, location_type, ST_SetSRID(ST_MakePoint(longitude, latitude), 4326)::geography AS g FROM locations;
CREATE INDEX ON postgis_locations USING gist (g);
SQL
    bsql -c "VACUUM ANALYZE locations" -c "VACUUM ANALYZE postgis_locations"
    label=$(awk -v n="$size" 'BEGIN { if (n >= 1000000) printf "%dM", n / 1000000; else printf "%dk", n / 1000 }')
    for radius in 1000 5000 25000; do
        for filter in all one; do
            # Centres anywhere in the inner 80 % of the square.
            centre="\\set x random(-800000, 800000)
\\set y random(-800000, 800000)"
            if [ "$filter" = one ]; then t="'pickup'"; pg_t="AND location_type = 'pickup'"; else t=NULL; pg_t=""; fi
            cat > "$tmp/native.sql" <<SQL
$centre
SELECT count(*) FROM find_nearby_locations(-1.95 + :y * $half / 1000000.0, 30.06 + :x * $half / 1000000.0, $radius, $t, 50);
SQL
            cat > "$tmp/postgis.sql" <<SQL
$centre
SELECT count(*) FROM (SELECT id, ST_Distance(g, c) AS d
  FROM postgis_locations, (SELECT ST_SetSRID(ST_MakePoint(30.06 + :x * $half / 1000000.0, -1.95 + :y * $half / 1000000.0), 4326)::geography AS c) q
 WHERE ST_DWithin(g, c, $radius) $pg_t ORDER BY d, id LIMIT 50) r;
SQL
            n=(); p=()
            for round in 1 2 3; do
                n+=("$(latency_ms "$tmp/native.sql" 4)")
                p+=("$(latency_ms "$tmp/postgis.sql" 4)")
            done
            n=$(median "${n[@]}"); p=$(median "${p[@]}")
            goal="<= 1.0"; [ "$radius" = 25000 ] && goal="<= 0.5"
            result location "$label rows, $((radius / 1000)) km, $filter types: native / PostGIS ms" "$n / $p" ""
            result location "$label rows, $((radius / 1000)) km, $filter types: native / PostGIS" "$(ratio "$n" "$p")" "$goal"
            echo "$size $radius $filter $n" >> "$tmp/native_latencies"
        done
    done
done
# Scale: the same query at 1M rows against 10k rows (same density, same result size).
for radius in 1000 5000 25000; do
    for filter in all one; do
        small=$(awk -v r="$radius" -v f="$filter" '$1 == 10000 && $2 == r && $3 == f {print $4}' "$tmp/native_latencies")
        big=$(awk -v r="$radius" -v f="$filter" '$1 == 1000000 && $2 == r && $3 == f {print $4}' "$tmp/native_latencies")
        result location "$((radius / 1000)) km, $filter types: native latency 1M / 10k rows" "$(ratio "$big" "$small")" "<= 2.0"
    done
done
rm -rf "$tmp"
