# Nearby search (issues 5, 20): native find_nearby_locations against PostGIS (ST_DWithin and
# ST_Distance on geography, GiST index) on the same points and the same queries, LIMIT 50, at
# 1, 5 and 25 km, all types and one type, on several shapes of data:
#   * constant density: 10k, 100k and 1M points over a square around Kigali at ~278 per km²
#     (fewer points over a proportionally smaller square: a query returns the same number of rows
#     at every size), six types;
#   * clusters: 300k points, 80 % in ten cities (Gaussian, sigma ~5.5 km) and 20 % over the whole
#     globe, five types, queries near a city centre;
#   * globe: 300k points uniform over the sphere (sparse: ~1 per 1,700 km²), five types, queries
#     anywhere.
# One type is a sixth (constant density) or a fifth (the others) of the points. PostGIS is
# installed in the benchmark database only.
bsql -c "CREATE EXTENSION IF NOT EXISTS postgis" >/dev/null
tmp=$(mktemp -d)
cities="ARRAY[-1.95, -1.29, 0.35, -6.79, 6.52, 30.04, -26.20, 48.86, 40.71, 35.68]::float8[]"
city_lngs="ARRAY[30.06, 36.82, 32.58, 39.21, 3.38, 31.24, 28.05, 2.35, -74.00, 139.69]::float8[]"

# load SQL: replaces the points (locations and the PostGIS copy).
load() {
    bsql <<SQL >/dev/null
TRUNCATE locations;
DROP TABLE IF EXISTS postgis_locations;
SELECT setseed(0.5);
$1
CREATE TABLE postgis_locations AS
SELECT id, location_type, ST_SetSRID(ST_MakePoint(longitude, latitude), 4326)::geography AS g FROM locations;
CREATE INDEX ON postgis_locations USING gist (g);
SQL
    bsql -c "VACUUM ANALYZE locations" -c "VACUUM ANALYZE postgis_locations"
}

# postgis_search LAT LNG RADIUS TYPE_FILTER: a search the PostGIS way, as a subquery of (id, d):
# the points within RADIUS metres of the centre (SQL expressions), nearest first, LIMIT 50.
postgis_search() {
    printf '(SELECT id, ST_Distance(g, q.c) AS d
  FROM postgis_locations, (SELECT ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography AS c) q
 WHERE ST_DWithin(g, q.c, %s) %s ORDER BY d, id LIMIT 50)' "$2" "$1" "$3" "$4"
}

# measure LABEL CENTRE_LAT CENTRE_LNG ONE_TYPE: the six queries (3 radii x all/one type) at random
# centres given as SQL expressions over the pgbench variables :c, :x and :y.
measure() {
    local label="$1" clat="$2" clng="$3" one="$4" radius filter t pg_t n p goal
    local centre=$'\\set c random(1, 10)\n\\set x random(-1000000, 1000000)\n\\set y random(-1000000, 1000000)'
    for radius in 1000 5000 25000; do
        for filter in all one; do
            if [ "$filter" = one ]; then t="'$one'"; pg_t="AND location_type = '$one'"; else t=NULL; pg_t=""; fi
            cat > "$tmp/native.sql" <<SQL
$centre
SELECT count(*) FROM find_nearby_locations($clat, $clng, $radius, $t, 50);
SQL
            cat > "$tmp/postgis.sql" <<SQL
$centre
SELECT count(*) FROM $(postgis_search "$clat" "$clng" "$radius" "$pg_t") r;
SQL
            n=(); p=()
            for round in 1 2 3; do
                n+=("$(latency_ms "$tmp/native.sql" 4)")
                p+=("$(latency_ms "$tmp/postgis.sql" 4)")
            done
            n=$(median "${n[@]}"); p=$(median "${p[@]}")
            case "$radius" in 1000) goal="<= 0.7" ;; 5000) goal="<= 0.5" ;; *) goal="<= 0.15" ;; esac
            result location "$label, $((radius / 1000)) km, $filter types: native / PostGIS ms" "$n / $p" ""
            result location "$label, $((radius / 1000)) km, $filter types: native / PostGIS" "$(ratio "$n" "$p")" "$goal"
            echo "$label $radius $filter $n" >> "$tmp/native_latencies"
        done
    done
}

types6="(ARRAY['current','home','work','favorite','pickup','dropoff'])[1 + floor(random() * 6)::int]"
types5="(ARRAY['current','home','work','pickup','dropoff'])[1 + floor(random() * 5)::int]"
for size in 10000 100000 1000000; do
    # Half the side of the square, in degrees (1 degree ~ 111 km here, near the equator).
    half=$(awk -v n="$size" 'BEGIN { printf "%.6f", 30.0 * sqrt(n / 1000000) / 111.0 }')
    load "INSERT INTO locations (location_type, latitude, longitude)
          SELECT $types6, -1.95 + (random() * 2 - 1) * $half, 30.06 + (random() * 2 - 1) * $half
            FROM generate_series(1, $size);"
    label=$(awk -v n="$size" 'BEGIN { if (n >= 1000000) printf "density %dM", n / 1000000; else printf "density %dk", n / 1000 }')
    # Centres anywhere in the inner 80 % of the square.
    measure "$label" "(-1.95 + :y * 0.8 * $half / 1000000.0)" "(30.06 + :x * 0.8 * $half / 1000000.0)" pickup
done

# Ten cities and a global spread. Normal offsets by Box-Muller.
load "INSERT INTO locations (location_type, latitude, longitude)
      SELECT $types5,
             greatest(-90, least(90, ($cities)[c] + 0.05 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()))),
             ($city_lngs)[c] + 0.05 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())
        FROM (SELECT 1 + floor(random() * 10)::int AS c FROM generate_series(1, 240000)) g;
      INSERT INTO locations (location_type, latitude, longitude)
      SELECT $types5, degrees(asin(2 * random() - 1)), 360 * random() - 180 FROM generate_series(1, 60000);"
measure "clusters 300k" "(($cities)[:c] + :y * 0.1 / 1000000.0)" "(($city_lngs)[:c] + :x * 0.1 / 1000000.0)" pickup

# Sparse: uniform over the sphere.
load "INSERT INTO locations (location_type, latitude, longitude)
      SELECT $types5, degrees(asin(2 * random() - 1)), 360 * random() - 180 FROM generate_series(1, 300000);"
measure "globe 300k" "degrees(asin(:y / 1000000.0))" "(:x * 180 / 1000000.0)" pickup

# What a search costs the server, without the round trip: one statement runs 2,000 searches (a
# centre per row, as above), so its time over 2,000 is a search's share. On sparse data a
# search's latency is mostly the round trip every call pays (`SELECT 1`, below), which moves
# with the machine; this moves only with the work.
server_us() {
    echo "SELECT count(*) FROM generate_series(1, 2000) AS n, $1;" > "$tmp/server.sql"
    local ms=() round
    for round in 1 2 3; do ms+=("$(statement_ms "$tmp/server.sql" 3)"); done
    awk -v ms="$(median "${ms[@]}")" 'BEGIN { printf "%.1f", ms * 1000 / 2000 }'
}
centre="degrees(asin(2 * random() - 1)) AS lat, 360 * random() - 180 + n * 0 AS lng"
for radius in 1000 5000 25000; do
    for filter in all one; do
        if [ "$filter" = one ]; then t="'pickup'"; pg_t="AND location_type = 'pickup'"; else t=NULL; pg_t=""; fi
        n=$(server_us "LATERAL (SELECT $centre) o, LATERAL find_nearby_locations(o.lat, o.lng, $radius, $t, 50) f")
        p=$(server_us "LATERAL (SELECT $centre) o, LATERAL $(postgis_search o.lat o.lng "$radius" "$pg_t") r")
        result location "globe 300k, $((radius / 1000)) km, $filter types: server µs per search, native / PostGIS" "$n / $p" ""
        result location "globe 300k, $((radius / 1000)) km, $filter types: server time, native / PostGIS" "$(ratio "$n" "$p")" ""
    done
done

# The floor no call goes below: a bare SELECT 1, prepared, on the same connection kind. A ratio
# goal whose PostGIS time times the goal is below it cannot be met by any function.
echo "SELECT 1;" > "$tmp/select1.sql"
f=(); for round in 1 2 3; do f+=("$(latency_ms "$tmp/select1.sql" 4)"); done
result location "floor: SELECT 1 ms" "$(median "${f[@]}")" ""

# Scale: the same query at 1M rows against 10k rows (same density, same result size).
for radius in 1000 5000 25000; do
    for filter in all one; do
        small=$(awk -v r="$radius" -v f="$filter" '$1 " " $2 == "density 10k" && $3 == r && $4 == f {print $5}' "$tmp/native_latencies")
        big=$(awk -v r="$radius" -v f="$filter" '$1 " " $2 == "density 1M" && $3 == r && $4 == f {print $5}' "$tmp/native_latencies")
        result location "$((radius / 1000)) km, $filter types: native latency 1M / 10k rows" "$(ratio "$big" "$small")" "<= 2.0"
    done
done
rm -rf "$tmp"
