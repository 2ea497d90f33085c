//! Location: nearby search and the route cache, with WGS84 geodesics (geo's Karney `Geodesic`,
//! the same numbers PostGIS gives for geography) and no PostGIS.
//!
//! Index: a GiST on `point(longitude, latitude)` that INCLUDEs (latitude, longitude, id,
//! location_type), so the statements' candidate scan is index-only. Measured on this machine kind (1M rows,
//! LIMIT 50; ms at 1 / 5 / 25 km): PostGIS ST_DWithin 0.29 / 0.54 / 4.9, this point GiST 0.11 /
//! 0.16 / 0.9, an S2-cell B-tree 0.20 / 0.22 / 0.48. The point GiST is the fastest at the radii a
//! ride-hailing search mostly uses, meets the 25 km goal with room, is built in (no cell code to
//! carry), and an expression index stays correct under plain INSERT and UPDATE.
//!
//! A search: (1) boxes that contain the geodesic circle (split at the antimeridian, all
//! longitudes at a pole) select candidates from the index; (2) a haversine distance, within 0.6 %
//! of the geodesic, gives each a lower bound; (3) candidates are taken in that order and the
//! exact geodesic decides, until no remaining lower bound can enter the top `limit`; (4) the
//! remaining columns are read for those rows only. Steps 1-3 run for a growing radius (see
//! `Reach`) until `limit` rows lie inside it, so a large radius over dense data costs what the
//! nearest `limit` rows cost.
//!
//! Read natively (`points`: the index scanned and the rows read without a statement) when no
//! row-level security applies to the caller; by statements otherwise. Each statement paid its
//! executor start, so on sparse data, where a box holds a point or none, two statements were most
//! of a search: a 25 km search over 300k points spread over the globe went from 0.098 ms to
//! 0.053 ms (`SELECT 1`: 0.023 ms; PostGIS: 0.46 ms).
//!
//! The native read walks the index's pages itself, testing each entry's box inline (through the
//! index AM every entry cost a call of the operator class's consistent function through fmgr),
//! and, as an index-only scan does, takes the id and coordinates from the entry's INCLUDE copies
//! when the visibility map says its heap page is all visible; only the rows answered are read.
//! One client on one CPU (`SELECT 1` 0.0136 ms), 300k points over the globe: a 1 m search
//! 0.0317 → 0.0249 ms, a 25 km search 0.0389 → 0.0304 ms (PostGIS 0.205).

#![forbid(unsafe_code)]

pub mod geodesy;

use crate::error::{check_range, required, ContractError, OrRaise};
use crate::ids::new_v7;
use crate::postgres::backend;
use crate::postgres::catalog::ExtTable;
use crate::postgres::datum::RawJsonb;
use crate::postgres::plan::{prepared, Plan, PlanSlot};
use crate::postgres::points::{self, PointColumns, Tid};
use crate::postgres::relation::{self, Column, TableSpec};
use crate::postgres::srf;
use geodesy::{geodesic, geodesic_lower_bound, search_boxes, sphere, MAX_RADIUS};
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use std::cell::RefCell;
use std::cmp::Ordering;
use std::rc::Rc;

/// The first radius of the expanding search, in metres, before a backend has searched.
const FIRST_REACH: f64 = 250.0;

/// How the expanding search picks its radii. Each round costs an index scan (by statements, an
/// executor start too) besides its rows, so on sparse or clustered data a fixed doubling from
/// 250 m spent more on rounds than PostGIS spends on its one index scan (eight rounds to reach
/// 25 km). So:
/// * the first radius is the one the backend's last search of the same kind (all types, or
///   that type, by the same role) needed for its `limit`-th row, scaled to this limit by area:
///   a service searches the same region again and again. (By role: behind a transaction
///   pooler one backend serves many roles, and an end user under RLS sees only its own few
///   rows.) A guess too large reads more rows than needed, never more than the radius asked
///   for (all of which PostGIS reads); too small costs a round. A search that found nothing
///   counts as one row in its radius: a 30 m search that found nothing does not send the next
///   25 km search over its whole circle.
/// * a round that found too few grows the radius by the density it saw: area in proportion to
///   the rows still missing, with a margin, at least doubling, at most 16 times (a round with no
///   rows at all says little about what lies beyond it).
struct Reach;

impl Reach {
    /// Margin over the area the observed density says holds `limit` rows.
    const MARGIN: f64 = 1.3;
    const MIN_GROWTH: f64 = 2.0;
    const MAX_GROWTH: f64 = 16.0;

    /// The index of `p_location_type` (0 for all types) in the per-backend memory.
    fn slot(location_type: Option<&str>) -> usize {
        location_type.and_then(|t| LOCATION_TYPES.iter().position(|l| *l == t)).map_or(0, |i| i + 1)
    }

    /// Rows per square metre seen by the last search of this kind by `role`, if any.
    fn remembered(slot: usize, role: u32) -> Option<f64> {
        DENSITY.with(|d| d.get()[slot]).filter(|(r, _)| *r == role).map(|(_, density)| density)
    }

    fn remember(slot: usize, role: u32, density: f64) {
        DENSITY.with(|d| {
            let mut all = d.get();
            all[slot] = Some((role, density));
            d.set(all);
        });
    }

    /// The radius holding `rows` at `density`, with the margin.
    fn for_density(rows: usize, density: f64) -> f64 {
        (Self::MARGIN * rows as f64 / (std::f64::consts::PI * density)).sqrt()
    }

    fn first(slot: usize, role: u32, limit: usize, radius: f64) -> f64 {
        Self::remembered(slot, role)
            .map_or(FIRST_REACH, |density| Self::for_density(limit, density))
            .max(1.0)
            .min(radius)
    }

    /// The next radius after `reach` found `found` (< limit) rows.
    fn next(reach: f64, found: usize, limit: usize, radius: f64) -> f64 {
        let growth = if found == 0 {
            Self::MAX_GROWTH
        } else {
            (Self::MARGIN * limit as f64 / found as f64).sqrt().clamp(Self::MIN_GROWTH, Self::MAX_GROWTH)
        };
        (reach * growth).min(radius)
    }

    /// What a finished search says about the density: its `limit` rows within the distance of
    /// the last; fewer than `limit`, that many within the whole radius (none: at most one).
    fn learn(slot: usize, role: u32, hits: &[Hit], limit: usize, radius: f64) {
        let area = |r: f64| std::f64::consts::PI * r * r;
        let density = match hits.last() {
            Some(last) if hits.len() == limit => limit as f64 / area(last.distance.max(1.0)),
            _ => hits.len().max(1) as f64 / area(radius),
        };
        Self::remember(slot, role, density);
    }
}

pub const LOCATION_TYPES: [&str; 6] = ["current", "home", "work", "favorite", "pickup", "dropoff"];

/// A float as Postgres prints it (Infinity, not inf), for messages that quote the caller's value.
fn pg_float(v: f64) -> String {
    match v {
        f64::INFINITY => "Infinity".to_owned(),
        f64::NEG_INFINITY => "-Infinity".to_owned(),
        v => v.to_string(),
    }
}

fn check_coordinate(param: &'static str, value: Option<f64>, limit: f64) -> Result<f64, ContractError> {
    let v = required(value, param)?;
    if !v.is_finite() || v.abs() > limit {
        return Err(ContractError::invalid(
            param,
            format!("must be between -{limit} and {limit}, got {}", pg_float(v)),
        ));
    }
    Ok(v)
}

fn check_lat(param: &'static str, value: Option<f64>) -> Result<f64, ContractError> {
    check_coordinate(param, value, 90.0)
}

fn check_lng(param: &'static str, value: Option<f64>) -> Result<f64, ContractError> {
    check_coordinate(param, value, 180.0)
}

/// 0 < value <= max, finite.
fn check_positive(param: &'static str, value: Option<f64>, max: f64) -> Result<f64, ContractError> {
    let v = required(value, param)?;
    if !(v > 0.0 && v <= max) {
        return Err(ContractError::invalid(
            param,
            format!("must be greater than 0 and at most {max}, got {}", pg_float(v)),
        ));
    }
    Ok(v)
}

/// The statements of a search, planned once per backend (again after the table changed), run
/// on the calling statement's snapshot as the native read is.
struct SearchPlans {
    candidates: Plan,
    candidates_of_type: Plan,
    details: Plan,
}

thread_local! {
    static SEARCH_PLANS: PlanSlot<SearchPlans> = const { RefCell::new(None) };
    /// Per kind of search (all types, then each type): the role of its last search and the rows
    /// per m² that search saw.
    static DENSITY: std::cell::Cell<[Option<(u32, f64)>; LOCATION_TYPES.len() + 1]> =
        const { std::cell::Cell::new([None; LOCATION_TYPES.len() + 1]) };
}

static LOCATIONS: TableSpec = TableSpec { name: c"locations", columns: &[] };
/// What the native search reads (`search_natively`), by position.
static POINTS: TableSpec = TableSpec {
    name: c"locations",
    columns: &[
        Column::new(c"id", pg_sys::UUIDOID),
        Column::new(c"latitude", pg_sys::FLOAT8OID),
        Column::new(c"longitude", pg_sys::FLOAT8OID),
        Column::new(c"location_type", pg_sys::TEXTOID),
        Column::new(c"user_id", pg_sys::UUIDOID),
        Column::new(c"address", pg_sys::TEXTOID),
        Column::new(c"place_name", pg_sys::TEXTOID),
        Column::new(c"city", pg_sys::TEXTOID),
        Column::new(c"country", pg_sys::TEXTOID),
    ],
};
const P_ID: usize = 0;
const P_LAT: usize = 1;
const P_LNG: usize = 2;
const P_TYPE: usize = 3;
const P_USER: usize = 4;
const P_ADDRESS: usize = 5;
const P_PLACE: usize = 6;
const P_CITY: usize = 7;
const P_COUNTRY: usize = 8;
/// Found once per backend (again after a change to it), like every table a native path uses.
static ROUTES: TableSpec = TableSpec { name: c"routes", columns: &[] };

fn search_plans() -> Rc<SearchPlans> {
    prepared(&SEARCH_PLANS, &LOCATIONS, |table| prepare_search(&table.ext))
}

fn prepare_search(locations: &ExtTable) -> SearchPlans {
    use pg_sys::{FLOAT8OID, TEXTOID, UUIDARRAYOID};
    let t = &locations.qualified;
    // Matches the index expression point(longitude, latitude); the box is built from the
    // parameters once per execution. Operators are schema-qualified.
    let candidates = format!(
        "SELECT id::pg_catalog.uuid, latitude::pg_catalog.float8, longitude::pg_catalog.float8 FROM {t} \
          WHERE pg_catalog.point(longitude, latitude) OPERATOR(pg_catalog.<@) \
                pg_catalog.box(pg_catalog.point($1, $2), pg_catalog.point($3, $4))"
    );
    let box_args = [FLOAT8OID, FLOAT8OID, FLOAT8OID, FLOAT8OID];
    SearchPlans {
        candidates: Plan::prepare_read(&candidates, &box_args),
        candidates_of_type: Plan::prepare_read(
            &format!("{candidates} AND location_type OPERATOR(pg_catalog.=) $5"),
            &[FLOAT8OID, FLOAT8OID, FLOAT8OID, FLOAT8OID, TEXTOID],
        ),
        details: Plan::prepare_read(
            &format!(
                "SELECT id::pg_catalog.uuid, user_id::pg_catalog.uuid, location_type::pg_catalog.text, address::pg_catalog.text, \
                        place_name::pg_catalog.text, city::pg_catalog.text, country::pg_catalog.text FROM {t} \
                  WHERE id OPERATOR(pg_catalog.=) ANY ($1)"
            ),
            &[UUIDARRAYOID],
        ),
    }
}

/// A point found within the radius, with its exact distance (and where the native scan read
/// it, to read its other columns).
#[derive(Clone, Copy)]
struct Hit {
    id: [u8; 16],
    lat: f64,
    lng: f64,
    distance: f64,
    at: Option<Tid>,
}

/// A point in a search box: id, latitude, longitude, and where the native scan read it.
type Candidate = ([u8; 16], f64, f64, Option<Tid>);

/// Orders by distance, then id (the contract's order).
fn by_distance_then_id(a: &Hit, b: &Hit) -> Ordering {
    a.distance.total_cmp(&b.distance).then_with(|| a.id.cmp(&b.id))
}

/// The `limit` nearest of `candidates` within `radius` of (lat, lng), in order. The geodesic is
/// computed only for candidates whose lower bound could still enter the result.
fn nearest(lat: f64, lng: f64, radius: f64, limit: usize, candidates: Vec<Candidate>) -> Vec<Hit> {
    let mut bounded: Vec<(f64, Candidate)> = candidates
        .into_iter()
        .filter_map(|c| {
            let lower = geodesic_lower_bound(sphere(lat, lng, c.1, c.2));
            (lower <= radius).then_some((lower, c))
        })
        .collect();
    bounded.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let mut hits: Vec<Hit> = Vec::with_capacity(limit + 1);
    for (lower, (id, plat, plng, at)) in bounded {
        if hits.len() == limit && lower > hits[limit - 1].distance {
            break; // nobody left can beat the current last
        }
        let distance = geodesic(lat, lng, plat, plng);
        if distance > radius {
            continue;
        }
        let hit = Hit { id, lat: plat, lng: plng, distance, at };
        let at = hits.partition_point(|h| by_distance_then_id(h, &hit) == Ordering::Less);
        if at < limit {
            hits.insert(at, hit);
            hits.truncate(limit);
        }
    }
    hits
}

/// The search's answer (see the rows below).
type Found = (
    pgrx::Uuid,
    Option<pgrx::Uuid>,
    Option<String>,
    f64,
    f64,
    f64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);
/// A hit's other columns: user_id, location_type, address, place_name, city, country.
type Details = (Option<pgrx::Uuid>, Option<String>, Option<String>, Option<String>, Option<String>, Option<String>);

/// The search's rounds (see `Reach`): the candidates of each round's boxes from `candidates`,
/// until the `limit` nearest lie within the round's radius or the radius is the one asked for.
fn expanding_search(
    lat: f64,
    lng: f64,
    radius: f64,
    limit: usize,
    location_type: Option<&str>,
    mut candidates: impl FnMut(&geodesy::LatLngBox, &mut Vec<Candidate>),
) -> Vec<Hit> {
    // Once the `limit` nearest found lie within the current radius the answer is final
    // (anything outside that radius's boxes is farther), so a LIMIT 50 search over a dense
    // city reads the points of a few hundred metres, not of the whole radius.
    let slot = Reach::slot(location_type);
    let role = u32::from(backend::current_user());
    let mut reach = Reach::first(slot, role, limit, radius);
    let hits = loop {
        let mut found = Vec::new();
        for b in search_boxes(lat, lng, reach) {
            candidates(&b, &mut found);
        }
        let hits = nearest(lat, lng, reach, limit, found);
        if hits.len() == limit || reach >= radius {
            break hits;
        }
        reach = Reach::next(reach, hits.len(), limit, radius);
    };
    Reach::learn(slot, role, &hits, limit, radius);
    hits
}

/// The hits in order with their other columns (a hit whose row `details` no longer finds, which
/// the same snapshot cannot give, is skipped).
fn answer(hits: Vec<Hit>, mut details: impl FnMut(&Hit) -> Option<Details>) -> Vec<Found> {
    hits.into_iter()
        .filter_map(|h| {
            let (user_id, kind, address, place, city, country) = details(&h)?;
            Some((pgrx::Uuid::from_bytes(h.id), user_id, kind, h.lat, h.lng, h.distance, address, place, city, country))
        })
        .collect()
}

/// The search read natively (`points`): None where that would not read what the statements
/// read for the calling role (row-level security applies, and so on), and the statements run.
fn search_natively(lat: f64, lng: f64, radius: f64, limit: usize, location_type: Option<&str>) -> Option<Vec<Found>> {
    let columns = PointColumns { id: P_ID, lat: P_LAT, lng: P_LNG, kind: P_TYPE };
    points::with_scan(&POINTS, columns, |scan| {
        let hits = expanding_search(lat, lng, radius, limit, location_type, |b, out| {
            scan.in_box((b.min_lng, b.min_lat), (b.max_lng, b.max_lat), location_type, |id, plat, plng, tid| {
                out.push((id, plat, plng, Some(tid)));
            });
        });
        answer(hits, |h| {
            scan.fetch(h.at?, |row| {
                (
                    row.uuid(P_USER),
                    row.text(P_TYPE),
                    row.text(P_ADDRESS),
                    row.text(P_PLACE),
                    row.text(P_CITY),
                    row.text(P_COUNTRY),
                )
            })
        })
    })
}

/// The search by statements, with the caller's rights.
fn search_by_statements(lat: f64, lng: f64, radius: f64, limit: usize, location_type: Option<&str>) -> Vec<Found> {
    let plans = search_plans();
    let hits = expanding_search(lat, lng, radius, limit, location_type, |b, out| {
        let mut args: Vec<DatumWithOid> = vec![b.min_lng.into(), b.min_lat.into(), b.max_lng.into(), b.max_lat.into()];
        let plan = match location_type {
            Some(t) => {
                args.push(t.into());
                &plans.candidates_of_type
            }
            None => &plans.candidates,
        };
        // (Rows with a NULL coordinate never match the box; a NULL id, possible only in a table
        // altered by hand, cannot be returned: skipped.)
        out.extend(
            plan.query(&args, |row| (row.get::<pgrx::Uuid>(0), row.get::<f64>(1), row.get::<f64>(2)))
                .into_iter()
                .filter_map(|c| match c {
                    (Some(id), Some(plat), Some(plng)) => Some((*id.as_bytes(), plat, plng, None)),
                    _ => None,
                }),
        );
    });
    if hits.is_empty() {
        return Vec::new();
    }
    // The other columns, for the hits only.
    let ids: Vec<pgrx::Uuid> = hits.iter().map(|h| pgrx::Uuid::from_bytes(h.id)).collect();
    let mut details: std::collections::HashMap<[u8; 16], Details> = plans
        .details
        .query(&[ids.into()], |row| {
            let details = (row.get(1), row.get(2), row.get(3), row.get(4), row.get(5), row.get(6));
            row.get::<pgrx::Uuid>(0).map(|id| (*id.as_bytes(), details))
        })
        .into_iter()
        .flatten()
        .collect();
    answer(hits, |h| details.remove(&h.id))
}

/// The locations within `p_radius_meters` (WGS84 geodesic) of (p_lat, p_lng), nearest first
/// (ties by id), at most `p_limit`, optionally of one type. Runs with the caller's rights, so
/// row level security applies: an end user searches its own places.
// (The row type must be spelled out here: pgrx reads the column names from the signature.)
#[allow(clippy::type_complexity)]
#[pg_extern(stable, parallel_safe)]
fn find_nearby_locations(
    p_lat: Option<f64>,
    p_lng: Option<f64>,
    p_radius_meters: default!(Option<f64>, 1000),
    p_location_type: default!(Option<&str>, "NULL"),
    p_limit: default!(Option<i32>, 50),
) -> srf::TableIterator<
    'static,
    (
        name!(id, pgrx::Uuid),
        name!(user_id, Option<pgrx::Uuid>),
        name!(location_type, Option<String>),
        name!(latitude, f64),
        name!(longitude, f64),
        name!(distance_meters, f64),
        name!(address, Option<String>),
        name!(place_name, Option<String>),
        name!(city, Option<String>),
        name!(country, Option<String>),
    ),
> {
    let check = || -> Result<_, ContractError> {
        let lat = check_lat("p_lat", p_lat)?;
        let lng = check_lng("p_lng", p_lng)?;
        let radius = check_positive("p_radius_meters", p_radius_meters, MAX_RADIUS)?;
        let limit = check_range("p_limit", p_limit, 1, 1000)? as usize;
        if let Some(t) = p_location_type {
            if !LOCATION_TYPES.contains(&t) {
                return Err(ContractError::invalid(
                    "p_location_type",
                    format!("must be one of {} (or NULL for all), got {t:?}", LOCATION_TYPES.join(", ")),
                ));
            }
        }
        Ok((lat, lng, radius, limit))
    };
    let (lat, lng, radius, limit) = check().or_raise();
    let rows = match search_natively(lat, lng, radius, limit, p_location_type) {
        Some(rows) => rows,
        None => search_by_statements(lat, lng, radius, limit, p_location_type),
    };
    srf::TableIterator::new(rows)
}

/// Stores a routing answer for `p_ttl_seconds`; returns its id.
#[pg_extern(volatile, parallel_unsafe)]
#[allow(clippy::too_many_arguments)]
fn cache_route(
    p_origin_lat: Option<f64>,
    p_origin_lng: Option<f64>,
    p_dest_lat: Option<f64>,
    p_dest_lng: Option<f64>,
    p_distance_meters: Option<f64>,
    p_duration_seconds: Option<i32>,
    p_polyline: default!(Option<&str>, "NULL"),
    p_path: default!(Option<RawJsonb>, "NULL"),
    p_traffic_multiplier: default!(Option<f64>, 1.0),
    p_ttl_seconds: default!(Option<i32>, 3600),
    p_provider: default!(Option<&str>, "NULL"),
) -> pgrx::Uuid {
    let check = || -> Result<_, ContractError> {
        let origin = (check_lat("p_origin_lat", p_origin_lat)?, check_lng("p_origin_lng", p_origin_lng)?);
        let dest = (check_lat("p_dest_lat", p_dest_lat)?, check_lng("p_dest_lng", p_dest_lng)?);
        let distance = required(p_distance_meters, "p_distance_meters")?;
        if !(distance.is_finite() && distance >= 0.0) {
            return Err(ContractError::invalid(
                "p_distance_meters",
                format!("must be a finite number >= 0, got {}", pg_float(distance)),
            ));
        }
        let duration = check_range("p_duration_seconds", p_duration_seconds, 0, i32::MAX)?;
        let traffic = check_positive("p_traffic_multiplier", p_traffic_multiplier, 99.0)?;
        let ttl = check_range("p_ttl_seconds", p_ttl_seconds, 1, 366 * 24 * 3600)?;
        if let Some(path) = &p_path {
            if !path.is_array() {
                return Err(ContractError::invalid("p_path", "must be a JSON array of [lng, lat] pairs"));
            }
        }
        if p_provider.is_some_and(|p| p.chars().count() > 64) {
            return Err(ContractError::invalid("p_provider", "must be at most 64 characters"));
        }
        Ok((origin, dest, distance, duration, traffic, ttl))
    };
    let ((olat, olng), (dlat, dlng), distance, duration, traffic, ttl) = check().or_raise();
    let routes = relation::table(&ROUTES).ext.clone();
    let id = new_v7();
    Spi::run_with_args(
        &format!(
            "INSERT INTO {} (id, origin_lat, origin_lng, dest_lat, dest_lng, distance_meters, duration_seconds, \
                             polyline, path, traffic_multiplier, provider, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
                     pg_catalog.now() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => $12))",
            routes.qualified
        ),
        &[
            id.into(),
            olat.into(),
            olng.into(),
            dlat.into(),
            dlng.into(),
            distance.into(),
            duration.into(),
            p_polyline.into(),
            p_path.as_ref().map_or_else(DatumWithOid::null::<pgrx::JsonB>, RawJsonb::as_arg),
            traffic.into(),
            p_provider.into(),
            f64::from(ttl).into(),
        ],
    )
    .unwrap_or_else(|e| error!("cache_route: {e}"));
    id
}

/// The id of the freshest unexpired cached route whose origin and destination are each within
/// `p_tolerance_meters` (geodesic) of the ones asked for and which is at most
/// `p_max_age_minutes` old; NULL when there is none. `get_cached_route` returns its row.
#[pg_extern(stable, parallel_safe, name = "_cached_route_id")]
fn cached_route_id(
    p_origin_lat: Option<f64>,
    p_origin_lng: Option<f64>,
    p_dest_lat: Option<f64>,
    p_dest_lng: Option<f64>,
    p_max_age_minutes: Option<i32>,
    p_tolerance_meters: Option<f64>,
) -> Option<pgrx::Uuid> {
    let check = || -> Result<_, ContractError> {
        Ok((
            (check_lat("p_origin_lat", p_origin_lat)?, check_lng("p_origin_lng", p_origin_lng)?),
            (check_lat("p_dest_lat", p_dest_lat)?, check_lng("p_dest_lng", p_dest_lng)?),
            check_range("p_max_age_minutes", p_max_age_minutes, 1, 366 * 24 * 60)?,
            check_positive("p_tolerance_meters", p_tolerance_meters, 10_000.0)?,
        ))
    };
    let ((olat, olng), (dlat, dlng), max_age, tolerance) = check().or_raise();
    let routes = relation::table(&ROUTES).ext.clone();
    let query = format!(
        "SELECT id::pg_catalog.uuid, dest_lat::pg_catalog.float8, dest_lng::pg_catalog.float8, origin_lat::pg_catalog.float8, \
                origin_lng::pg_catalog.float8, created_at::pg_catalog.timestamptz FROM {} \
          WHERE pg_catalog.point(origin_lng, origin_lat) OPERATOR(pg_catalog.<@) \
                pg_catalog.box(pg_catalog.point($1, $2), pg_catalog.point($3, $4)) \
            AND expires_at OPERATOR(pg_catalog.>) pg_catalog.now() \
            AND created_at OPERATOR(pg_catalog.>=) (pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(mins => $5))",
        routes.qualified
    );
    Spi::connect(|client| {
        let mut best: Option<(TimestampWithTimeZone, pgrx::Uuid)> = None;
        for b in search_boxes(olat, olng, tolerance) {
            let rows = client.select(
                &query,
                None,
                &[b.min_lng.into(), b.min_lat.into(), b.max_lng.into(), b.max_lat.into(), max_age.into()],
            )?;
            for row in rows {
                // A row with a NULL where the table says NOT NULL (altered by hand) matches nothing.
                let (Some(id), Some(rdlat), Some(rdlng), Some(rolat), Some(rolng), Some(created)) = (
                    row.get::<pgrx::Uuid>(1)?,
                    row.get::<f64>(2)?,
                    row.get::<f64>(3)?,
                    row.get::<f64>(4)?,
                    row.get::<f64>(5)?,
                    row.get::<TimestampWithTimeZone>(6)?,
                ) else {
                    continue;
                };
                if geodesic(olat, olng, rolat, rolng) <= tolerance && geodesic(dlat, dlng, rdlat, rdlng) <= tolerance {
                    // Freshest first; among equally fresh, the smallest id, so the answer is stable.
                    let better = match &best {
                        None => true,
                        Some((t, bid)) => created > *t || (created == *t && id.as_bytes() < bid.as_bytes()),
                    };
                    if better {
                        best = Some((created, id));
                    }
                }
            }
        }
        Ok::<_, pgrx::spi::Error>(best.map(|(_, id)| id))
    })
    .unwrap_or_else(|e| error!("get_cached_route: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_orders_by_distance_then_id_and_stops_early() {
        let c = |n: u8, lat: f64, lng: f64| ([n; 16], lat, lng, None);
        let candidates = vec![c(3, 0.0, 0.002), c(1, 0.0, 0.001), c(2, 0.001, 0.0), c(9, 0.0, 0.1), c(4, 0.0, -0.001)];
        let hits = nearest(0.0, 0.0, 1_000.0, 3, candidates);
        let ids: Vec<u8> = hits.iter().map(|h| h.id[0]).collect();
        // 0.001 degree of latitude (id 2) is shorter than 0.001 of longitude at the equator; (0,
        // 0.001) and (0, -0.001) are equally far, the smaller id first.
        assert_eq!(ids, vec![2, 1, 4]);
        assert!(hits.windows(2).all(|w| w[0].distance <= w[1].distance));
        // The point 11 km away is outside a 1 km radius whatever the limit.
        assert!(nearest(0.0, 0.0, 1_000.0, 10, vec![c(9, 0.0, 0.1)]).is_empty());
    }

    #[test]
    fn reach_grows_by_the_density_seen_and_starts_where_the_last_search_ended() {
        // Growth: at least doubling, at most 16 times, never past the radius.
        assert_eq!(Reach::next(250.0, 49, 50, 25_000.0), 500.0);
        assert_eq!(Reach::next(250.0, 0, 50, 25_000.0), 4_000.0);
        assert_eq!(Reach::next(250.0, 5, 50, 25_000.0), 250.0 * (1.3f64 * 10.0).sqrt());
        assert_eq!(Reach::next(20_000.0, 0, 50, 25_000.0), 25_000.0);
        // Nothing remembered: the fixed first radius (or the radius, when smaller).
        let slot = Reach::slot(Some("dropoff"));
        assert_eq!(slot, LOCATION_TYPES.len());
        assert_eq!(Reach::first(slot, 10, 50, 25_000.0), FIRST_REACH);
        assert_eq!(Reach::first(slot, 10, 50, 100.0), 100.0);
        assert_eq!(Reach::first(slot, 10, 50, 0.001), 0.001);
        // 50 rows within 400 m: the next search of 50 starts a margin beyond 400 m, one of 200
        // twice as far.
        let hit = |d: f64| Hit { id: [0; 16], lat: 0.0, lng: 0.0, distance: d, at: None };
        let hits: Vec<Hit> = (1..=50).map(|i| hit(i as f64 * 8.0)).collect();
        Reach::learn(slot, 10, &hits, 50, 25_000.0);
        let first = Reach::first(slot, 10, 50, 25_000.0);
        assert!((first - 400.0 * 1.3f64.sqrt()).abs() < 1e-6, "{first}");
        assert!((Reach::first(slot, 10, 200, 25_000.0) - 2.0 * first).abs() < 1e-6);
        // Another kind of search remembers nothing of it.
        assert_eq!(Reach::first(Reach::slot(None), 10, 50, 25_000.0), FIRST_REACH);
        // Nor does another role (an end user under RLS sees other rows).
        assert_eq!(Reach::first(slot, 11, 50, 25_000.0), FIRST_REACH);
        // A search that found nothing in 25 km: the next one reads its whole radius at once.
        Reach::learn(slot, 10, &[], 50, 25_000.0);
        assert_eq!(Reach::first(slot, 10, 50, 5_000.0), 5_000.0);
        assert_eq!(Reach::first(slot, 10, 50, 0.001), 0.001);
        // One that found nothing in 30 m says little: the next starts near where 50 rows could
        // be if that circle held one, not at the whole 25 km.
        Reach::learn(slot, 10, &[], 50, 30.0);
        let first = Reach::first(slot, 10, 50, 25_000.0);
        assert!((first - 30.0 * (1.3f64 * 50.0).sqrt()).abs() < 1e-6, "{first}");
    }
}
