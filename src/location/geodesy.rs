//! Distances on the WGS84 ellipsoid and the bounds that let a search skip most of them.
//! Plain Rust (geo's Karney geodesic), unit-tested without a server.

#![forbid(unsafe_code)]

use geo::{Distance, Geodesic, Haversine, Point};

/// The smallest radius of curvature of the WGS84 ellipsoid (the meridian's, at the equator,
/// a(1-e²)): no geodesic of length r changes latitude by more than r / MIN_RADIUS radians.
const MIN_RADIUS: f64 = 6_335_439.0;
/// Safety factor on the search boxes. The boxes only have to contain the circle; what is in the
/// circle is decided by the geodesic itself.
const BOX_GUARD: f64 = 1.01;
/// The geodesic over the haversine distance stays within 0.9944 .. 1.0045 on WGS84 (the ratio of
/// the radii of curvature to the mean radius); this lower factor keeps a wide margin.
const SPHERE_LOWER: f64 = 0.985;

/// The largest radius a search accepts: about half the circumference, the whole Earth.
pub const MAX_RADIUS: f64 = 20_000_000.0;

/// WGS84 geodesic distance in metres (what PostGIS ST_Distance(geography, geography) gives).
pub fn geodesic(lat1: f64, lng1: f64, lat2: f64, lng2: f64) -> f64 {
    Geodesic.distance(Point::new(lng1, lat1), Point::new(lng2, lat2))
}

/// Haversine distance on the mean-radius sphere: cheap, and within 0.6 % of the geodesic.
pub fn sphere(lat1: f64, lng1: f64, lat2: f64, lng2: f64) -> f64 {
    Haversine.distance(Point::new(lng1, lat1), Point::new(lng2, lat2))
}

/// A lower bound of the geodesic distance from a haversine distance.
pub fn geodesic_lower_bound(sphere_distance: f64) -> f64 {
    sphere_distance * SPHERE_LOWER - 0.001
}

/// A latitude/longitude box, in degrees: min_lng <= lng <= max_lng, min_lat <= lat <= max_lat.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LatLngBox {
    pub min_lng: f64,
    pub min_lat: f64,
    pub max_lng: f64,
    pub max_lat: f64,
}

/// Boxes that together contain every point within `radius` metres of (lat, lng): one, or two
/// when the circle crosses the antimeridian; all longitudes when it reaches a pole.
pub fn search_boxes(lat: f64, lng: f64, radius: f64) -> Vec<LatLngBox> {
    let delta = radius * BOX_GUARD / MIN_RADIUS; // radians
    let dlat = delta.to_degrees();
    let (min_lat, max_lat) = ((lat - dlat).max(-90.0), (lat + dlat).min(90.0));
    let whole = |min_lng: f64, max_lng: f64| LatLngBox { min_lng, min_lat, max_lng, max_lat };
    if lat - dlat <= -90.0 || lat + dlat >= 90.0 || delta >= std::f64::consts::FRAC_PI_2 {
        return vec![whole(-180.0, 180.0)];
    }
    // The widest longitude reach of a spherical cap of angular radius delta centred at lat.
    let reach = delta.sin() / lat.to_radians().cos();
    if reach >= 1.0 {
        return vec![whole(-180.0, 180.0)];
    }
    let dlng = reach.asin().to_degrees();
    let (west, east) = (lng - dlng, lng + dlng);
    if west < -180.0 {
        vec![whole(west + 360.0, 180.0), whole(-180.0, east)]
    } else if east > 180.0 {
        vec![whole(west, 180.0), whole(-180.0, east - 360.0)]
    } else {
        vec![whole(west, east)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_distances() {
        // One degree of latitude at the equator (the toolchain notes' (0,0)->(0,1), lng/lat order)
        // and one degree of longitude there.
        assert!((geodesic(0.0, 0.0, 1.0, 0.0) - 110_574.39).abs() < 0.01);
        assert!((geodesic(0.0, 0.0, 0.0, 1.0) - 111_319.49).abs() < 0.01);
        // Across the antimeridian the short way round.
        assert!(geodesic(0.0, 179.99, 0.0, -179.99) < 2_300.0);
        // Pole to pole along a meridian: twice the quarter meridian, 20,003,931.46 m.
        assert!((geodesic(90.0, 0.0, -90.0, 0.0) - 20_003_931.46).abs() < 0.01);
    }

    #[test]
    fn sphere_stays_near_the_geodesic() {
        let mut worst: f64 = 1.0;
        for i in 0..2000 {
            let t = i as f64;
            let (lat1, lng1) = ((t * 37.1) % 180.0 - 90.0, (t * 71.3) % 360.0 - 180.0);
            let (lat2, lng2) = ((t * 13.7 + 11.0) % 180.0 - 90.0, (t * 29.9 + 5.0) % 360.0 - 180.0);
            let g = geodesic(lat1, lng1, lat2, lng2);
            let s = sphere(lat1, lng1, lat2, lng2);
            if g > 1.0 {
                worst = worst.min(g / s);
                assert!(geodesic_lower_bound(s) <= g, "{lat1},{lng1} -> {lat2},{lng2}: {g} vs {s}");
            }
        }
        assert!(worst > 0.99, "{worst}");
    }

    fn inside(b: &[LatLngBox], lat: f64, lng: f64) -> bool {
        b.iter().any(|b| b.min_lat <= lat && lat <= b.max_lat && b.min_lng <= lng && lng <= b.max_lng)
    }

    #[test]
    fn boxes_contain_the_circle() {
        // Walk the circle's edge (and just inside it) for centres everywhere, including the
        // antimeridian and the poles, and radii from 1 m to 5,000 km.
        for &(lat, lng) in
            &[(0.0, 0.0), (-1.95, 30.06), (60.0, 179.99), (-45.0, -179.9), (89.9, 10.0), (-89.99, 0.0), (75.0, -100.0)]
        {
            for &r in &[1.0, 50.0, 1_000.0, 25_000.0, 500_000.0, 5_000_000.0] {
                let boxes = search_boxes(lat, lng, r);
                for step in 0..360 {
                    let azimuth = step as f64;
                    let p = geo::Destination::destination(&Geodesic, Point::new(lng, lat), azimuth, r * 0.999_999);
                    let (lat2, lng2) = (p.y(), p.x());
                    assert!(
                        inside(&boxes, lat2, lng2),
                        "({lat},{lng}) r={r} az={azimuth}: ({lat2},{lng2}) outside {boxes:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn boxes_split_at_the_antimeridian_and_open_at_the_poles() {
        assert_eq!(search_boxes(0.0, 179.99, 5_000.0).len(), 2);
        assert_eq!(search_boxes(0.0, -179.99, 5_000.0).len(), 2);
        let polar = search_boxes(89.99, 0.0, 5_000.0);
        assert_eq!((polar.len(), polar[0].min_lng, polar[0].max_lng), (1, -180.0, 180.0));
    }
}
