//! Exact spherical geometry on the unit sphere: positions in degrees, polygon edges along great circles, right at the
//! poles and across RA 0/360 (everything is done on unit vectors, never on (ra, dec) differences).

use std::f64::consts::PI;

/// An angle in degrees. Coordinates enter and leave this module in degrees, as in ADQL.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Degrees(pub f64);

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Vec3 {
    pub x: f64,
    pub y: f64,
    pub z: f64,
}

impl Vec3 {
    pub fn from_radec(ra: f64, dec: f64) -> Vec3 {
        // A pole is one point whatever its RA: exactly (0, 0, +-1), not a vector 6e-17 off the axis in the RA's
        // direction (which put one pole inside a 90-degree circle and the other outside).
        if dec.abs() == 90.0 {
            return Vec3 {
                x: 0.0,
                y: 0.0,
                z: dec.signum(),
            };
        }
        let (sr, cr) = ra.to_radians().sin_cos();
        let (sd, cd) = dec.to_radians().sin_cos();
        Vec3 {
            x: cd * cr,
            y: cd * sr,
            z: sd,
        }
    }

    /// (ra, dec) in degrees, ra in [0, 360).
    pub fn to_radec(self) -> (f64, f64) {
        let n = self.norm();
        let (x, y, z) = (self.x / n, self.y / n, self.z / n);
        let mut ra = y.atan2(x).to_degrees();
        if ra < 0.0 {
            ra += 360.0;
        }
        if ra >= 360.0 {
            ra -= 360.0;
        }
        let dec = z.clamp(-1.0, 1.0).asin().to_degrees();
        (ra, dec)
    }

    pub fn dot(self, o: Vec3) -> f64 {
        self.x * o.x + self.y * o.y + self.z * o.z
    }

    pub fn cross(self, o: Vec3) -> Vec3 {
        Vec3 {
            x: self.y * o.z - self.z * o.y,
            y: self.z * o.x - self.x * o.z,
            z: self.x * o.y - self.y * o.x,
        }
    }

    pub fn add(self, o: Vec3) -> Vec3 {
        Vec3 {
            x: self.x + o.x,
            y: self.y + o.y,
            z: self.z + o.z,
        }
    }

    pub fn sub(self, o: Vec3) -> Vec3 {
        Vec3 {
            x: self.x - o.x,
            y: self.y - o.y,
            z: self.z - o.z,
        }
    }

    pub fn scale(self, k: f64) -> Vec3 {
        Vec3 {
            x: self.x * k,
            y: self.y * k,
            z: self.z * k,
        }
    }

    pub fn norm(self) -> f64 {
        self.dot(self).sqrt()
    }

    pub fn normalized(self) -> Vec3 {
        let n = self.norm();
        if n == 0.0 { self } else { self.scale(1.0 / n) }
    }
}

/// The angle between two unit vectors in radians, accurate for tiny and for near-antipodal separations.
pub fn angle_between(a: Vec3, b: Vec3) -> f64 {
    a.cross(b).norm().atan2(a.dot(b))
}

/// cos(dec) for dec in degrees, exactly 0 at the poles (where RA has no meaning).
#[inline]
pub fn cos_dec(dec_deg: f64) -> f64 {
    if dec_deg.abs() == 90.0 {
        0.0
    } else {
        dec_deg.to_radians().cos()
    }
}

/// Great-circle distance in degrees between two positions in degrees (haversine form: exact near 0).
pub fn distance_deg(ra1: f64, dec1: f64, ra2: f64, dec2: f64) -> f64 {
    let (d1, d2) = (dec1.to_radians(), dec2.to_radians());
    let sd = ((d2 - d1) * 0.5).sin();
    let sr = ((ra2 - ra1).to_radians() * 0.5).sin();
    let h = (sd * sd + cos_dec(dec1) * cos_dec(dec2) * sr * sr).clamp(0.0, 1.0);
    (2.0 * h.sqrt().asin()).to_degrees()
}

/// Sign of the triple product (a x b) . c: which side of the great circle through a and b the point c lies on.
fn orient(a: Vec3, b: Vec3, c: Vec3) -> f64 {
    a.cross(b).dot(c)
}

/// True when the great-circle arcs ab and cd (each shorter than 180 degrees) cross at a point inside both.
pub fn arcs_cross(a: Vec3, b: Vec3, c: Vec3, d: Vec3) -> bool {
    let acb = -orient(a, b, c);
    let bda = orient(a, b, d);
    if acb * bda <= 0.0 {
        return false;
    }
    let cbd = -orient(c, d, b);
    let dac = orient(c, d, a);
    acb * cbd > 0.0 && cbd * dac > 0.0
}

/// The distance in radians from p to the great-circle arc ab.
pub fn distance_to_arc(p: Vec3, a: Vec3, b: Vec3) -> f64 {
    let n = a.cross(b);
    let nn = n.norm();
    if nn > 0.0 {
        let n = n.scale(1.0 / nn);
        // The foot of p on the great circle lies within the arc when it is on the inner side of both end normals.
        let foot = p.sub(n.scale(p.dot(n)));
        if foot.norm() > 0.0 && orient(a, foot, n) >= 0.0 && orient(foot, b, n) >= 0.0 {
            return (p.dot(n)).abs().clamp(0.0, 1.0).asin();
        }
    }
    angle_between(p, a).min(angle_between(p, b))
}

/// A spherical cap: centre and radius.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Circle {
    pub center: Vec3,
    pub ra: f64,
    pub dec: f64,
    /// Radius in radians.
    pub radius: f64,
}

impl Circle {
    pub fn new(ra: f64, dec: f64, radius_deg: f64) -> Circle {
        Circle {
            center: Vec3::from_radec(ra, dec),
            ra,
            dec,
            radius: radius_deg.to_radians(),
        }
    }

    pub fn contains_vec(&self, p: Vec3) -> bool {
        angle_between(self.center, p) <= self.radius
    }

    /// Area in steradians.
    pub fn area(&self) -> f64 {
        2.0 * PI * (1.0 - self.radius.cos())
    }
}

/// A spherical polygon with great-circle edges. Its inside is the smaller of the two regions its edges bound, so
/// the order in which the vertices are given does not matter.
#[derive(Debug, Clone, PartialEq)]
pub struct Polygon {
    /// Vertices, counter-clockwise seen from outside the sphere (inside on the left of each edge).
    pub vertices: Vec<Vec3>,
    /// Edge normals `v[i] x v[i+1]`, pointing to the inside.
    normals: Vec<Vec3>,
    convex: bool,
    /// A point known to be inside, the start of the crossing test.
    inside_ref: Vec3,
    /// Area in steradians.
    area: f64,
}

/// Why a list of coordinates is not a polygon.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolygonError {
    #[error("a polygon needs at least three vertices, found {0}")]
    TooFewVertices(usize),
    #[error(
        "the polygon's vertices are degenerate (repeated, antipodal, or all on one great circle)"
    )]
    Degenerate,
}

/// Oriented area of the spherical triangle abc (positive when counter-clockwise), in steradians.
fn signed_triangle_area(a: Vec3, b: Vec3, c: Vec3) -> f64 {
    let num = a.dot(b.cross(c));
    let den = 1.0 + a.dot(b) + b.dot(c) + c.dot(a);
    2.0 * num.atan2(den)
}

impl Polygon {
    /// From (ra, dec) pairs in degrees. A closing vertex equal to the first is dropped.
    pub fn new(radec: &[(f64, f64)]) -> Result<Polygon, PolygonError> {
        let mut vertices: Vec<Vec3> = radec
            .iter()
            .map(|&(ra, dec)| Vec3::from_radec(ra, dec))
            .collect();
        // Drop consecutive duplicates, including a closing vertex.
        vertices.dedup_by(|b, a| angle_between(*a, *b) < 1e-15);
        while vertices.len() > 1 && angle_between(vertices[0], *vertices.last().unwrap()) < 1e-15 {
            vertices.pop();
        }
        if vertices.len() < 3 {
            return Err(PolygonError::TooFewVertices(vertices.len()));
        }
        let n = vertices.len();
        let mut signed = 0.0;
        for i in 1..n - 1 {
            signed += signed_triangle_area(vertices[0], vertices[i], vertices[i + 1]);
        }
        if signed < 0.0 {
            vertices.reverse();
            signed = -signed;
        }
        if signed == 0.0 || !signed.is_finite() {
            return Err(PolygonError::Degenerate);
        }
        let normals: Vec<Vec3> = (0..n)
            .map(|i| vertices[i].cross(vertices[(i + 1) % n]))
            .collect();
        if normals.iter().any(|m| m.norm() < 1e-300) {
            return Err(PolygonError::Degenerate);
        }
        let convex = (0..n).all(|i| normals[i].dot(vertices[(i + 2) % n]) >= 0.0);
        // A point just inside the first edge, beside its midpoint; the offset is far below any edge's length.
        let mid = vertices[0].add(vertices[1]).normalized();
        let edge_len = angle_between(vertices[0], vertices[1]);
        let step = (edge_len * 1e-6).max(1e-12);
        let inside_ref = mid.add(normals[0].normalized().scale(step)).normalized();
        Ok(Polygon {
            vertices,
            normals,
            convex,
            inside_ref,
            area: signed,
        })
    }

    /// The (ra, dec) vertices in degrees, counter-clockwise.
    pub fn radec(&self) -> Vec<(f64, f64)> {
        self.vertices.iter().map(|v| v.to_radec()).collect()
    }

    pub fn area(&self) -> f64 {
        self.area
    }

    fn edges(&self) -> impl Iterator<Item = (Vec3, Vec3)> + '_ {
        let n = self.vertices.len();
        (0..n).map(move |i| (self.vertices[i], self.vertices[(i + 1) % n]))
    }

    pub fn contains_vec(&self, p: Vec3) -> bool {
        if self.convex {
            return self.normals.iter().all(|m| m.dot(p) >= 0.0);
        }
        // Count the edges crossed on the way from a point known to be inside.
        let mut inside = true;
        for (a, b) in self.edges() {
            if arcs_cross(self.inside_ref, p, a, b) {
                inside = !inside;
            }
        }
        inside
    }

    /// The smallest distance in radians from p to the polygon's boundary.
    pub fn distance_to_boundary(&self, p: Vec3) -> f64 {
        self.edges()
            .map(|(a, b)| distance_to_arc(p, a, b))
            .fold(f64::INFINITY, f64::min)
    }

    /// Area-weighted centroid of the fan triangles (exact for the spherical polygon's mass centre direction).
    pub fn centroid(&self) -> Vec3 {
        let v0 = self.vertices[0];
        let mut sum = Vec3 {
            x: 0.0,
            y: 0.0,
            z: 0.0,
        };
        for i in 1..self.vertices.len() - 1 {
            let (b, c) = (self.vertices[i], self.vertices[i + 1]);
            let w = signed_triangle_area(v0, b, c);
            sum = sum.add(v0.add(b).add(c).normalized().scale(w));
        }
        sum.normalized()
    }

    fn any_edges_cross(&self, other: &Polygon) -> bool {
        self.edges()
            .any(|(a, b)| other.edges().any(|(c, d)| arcs_cross(a, b, c, d)))
    }
}

/// A geometry value: what ADQL's POINT, CIRCLE, POLYGON (and BOX, REGION) denote.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    Point(Vec3),
    Circle(Circle),
    Polygon(Polygon),
}

impl Shape {
    /// True when `self` contains `inner` entirely (ADQL CONTAINS(inner, self) = 1).
    pub fn contains(&self, inner: &Shape) -> bool {
        match (self, inner) {
            (Shape::Point(a), Shape::Point(b)) => angle_between(*a, *b) < 1e-14,
            (Shape::Point(_), _) => false,
            (Shape::Circle(c), Shape::Point(p)) => c.contains_vec(*p),
            (Shape::Polygon(poly), Shape::Point(p)) => poly.contains_vec(*p),
            (Shape::Circle(outer), Shape::Circle(c)) => {
                angle_between(outer.center, c.center) + c.radius <= outer.radius
            }
            (Shape::Circle(outer), Shape::Polygon(poly)) => {
                // A cap of radius up to 90 degrees is convex, so holding every vertex holds the edges; a larger
                // cap is the complement of a convex one, which the polygon's edges must not enter.
                poly.vertices.iter().all(|v| outer.contains_vec(*v))
                    && (outer.radius <= PI / 2.0
                        || poly.edges().all(|(a, b)| {
                            distance_to_arc(outer.center.scale(-1.0), a, b) >= PI - outer.radius
                        }))
            }
            (Shape::Polygon(poly), Shape::Circle(c)) => {
                poly.contains_vec(c.center) && poly.distance_to_boundary(c.center) >= c.radius
            }
            (Shape::Polygon(outer), Shape::Polygon(inner)) => {
                inner.vertices.iter().all(|v| outer.contains_vec(*v))
                    && !outer.any_edges_cross(inner)
            }
        }
    }

    /// True when the two shapes share at least one point (ADQL INTERSECTS).
    pub fn intersects(&self, other: &Shape) -> bool {
        match (self, other) {
            (Shape::Point(_), _) => other.contains(self),
            (_, Shape::Point(_)) => self.contains(other),
            (Shape::Circle(a), Shape::Circle(b)) => {
                angle_between(a.center, b.center) <= a.radius + b.radius
            }
            (Shape::Circle(c), Shape::Polygon(p)) | (Shape::Polygon(p), Shape::Circle(c)) => {
                p.contains_vec(c.center) || p.distance_to_boundary(c.center) <= c.radius
            }
            (Shape::Polygon(a), Shape::Polygon(b)) => {
                a.any_edges_cross(b)
                    || a.contains_vec(b.vertices[0])
                    || b.contains_vec(a.vertices[0])
            }
        }
    }

    /// Area in square degrees (0 for a point).
    pub fn area_sq_deg(&self) -> f64 {
        let sr = match self {
            Shape::Point(_) => 0.0,
            Shape::Circle(c) => c.area(),
            Shape::Polygon(p) => p.area(),
        };
        sr * (180.0 / PI) * (180.0 / PI)
    }

    pub fn centroid(&self) -> Vec3 {
        match self {
            Shape::Point(p) => *p,
            Shape::Circle(c) => c.center,
            Shape::Polygon(p) => p.centroid(),
        }
    }
}

/// The four corners of an ADQL BOX: a centre, a full width along RA and a full height along Dec, in degrees. The
/// corners are offset from the centre along the great circles of the local tangent frame, so a box is the same
/// shape wherever it stands, also at a pole; its edges are great circles like any polygon's.
pub fn box_corners(ra: f64, dec: f64, width: f64, height: f64) -> Vec<(f64, f64)> {
    let c = Vec3::from_radec(ra, dec);
    let east = Vec3 {
        x: -ra.to_radians().sin(),
        y: ra.to_radians().cos(),
        z: 0.0,
    };
    let north = c.cross(east);
    let (hw, hh) = (
        (width / 2.0).to_radians().tan(),
        (height / 2.0).to_radians().tan(),
    );
    [(-hw, -hh), (hw, -hh), (hw, hh), (-hw, hh)]
        .iter()
        .map(|&(x, y)| {
            c.add(east.scale(x))
                .add(north.scale(y))
                .normalized()
                .to_radec()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poly(v: &[(f64, f64)]) -> Polygon {
        Polygon::new(v).unwrap()
    }

    #[test]
    fn distance_is_exact_at_small_and_large_separations() {
        assert!((distance_deg(10.0, 20.0, 10.0, 20.0 + 1e-9) - 1e-9).abs() < 1e-14);
        assert!((distance_deg(0.0, 0.0, 180.0, 0.0) - 180.0).abs() < 1e-12);
        assert!((distance_deg(359.9, 0.0, 0.1, 0.0) - 0.2).abs() < 1e-12);
        assert!((distance_deg(0.0, 90.0, 123.0, 89.0) - 1.0).abs() < 1e-12);
    }

    /// Property: on random positions (poles and RA 0/360 included), distance is symmetric, zero to itself,
    /// at most 180 degrees, obeys the triangle inequality, and agrees with the angle between unit vectors.
    #[test]
    fn distance_properties() {
        let mut s = 99u64;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut pos = || {
            let k = next();
            if k < 0.05 {
                (next() * 360.0, if next() < 0.5 { 90.0 } else { -90.0 })
            } else if k < 0.1 {
                (
                    if next() < 0.5 { 0.0 } else { 359.999999 },
                    next() * 180.0 - 90.0,
                )
            } else {
                (next() * 360.0, (next() * 2.0 - 1.0).asin().to_degrees())
            }
        };
        for _ in 0..20_000 {
            let (a, b, c) = (pos(), pos(), pos());
            let ab = distance_deg(a.0, a.1, b.0, b.1);
            assert!((ab - distance_deg(b.0, b.1, a.0, a.1)).abs() < 1e-12);
            assert!(distance_deg(a.0, a.1, a.0, a.1) == 0.0);
            assert!((0.0..=180.0).contains(&ab));
            let (ac, bc) = (
                distance_deg(a.0, a.1, c.0, c.1),
                distance_deg(b.0, b.1, c.0, c.1),
            );
            assert!(ab <= ac + bc + 1e-9);
            let vec_angle =
                angle_between(Vec3::from_radec(a.0, a.1), Vec3::from_radec(b.0, b.1)).to_degrees();
            assert!(
                (ab - vec_angle).abs() < 1e-9,
                "{a:?} {b:?}: {ab} vs {vec_angle}"
            );
            let circle = Circle::new(b.0, b.1, 25.0);
            if (ab - 25.0).abs() > 1e-9 {
                assert_eq!(circle.contains_vec(Vec3::from_radec(a.0, a.1)), ab <= 25.0);
            }
        }
    }

    #[test]
    fn polygon_orientation_does_not_matter() {
        let ccw = poly(&[(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0)]);
        let cw = poly(&[(0.0, 10.0), (10.0, 10.0), (10.0, 0.0), (0.0, 0.0)]);
        let p = Vec3::from_radec(5.0, 5.0);
        let q = Vec3::from_radec(15.0, 5.0);
        assert!(ccw.contains_vec(p) && cw.contains_vec(p));
        assert!(!ccw.contains_vec(q) && !cw.contains_vec(q));
        assert!((ccw.area() - cw.area()).abs() < 1e-15);
    }

    /// A pole is one point whatever RA it is given: exactly 90 degrees from every point of the equator, so both poles
    /// are on the edge of (and inside) a 90-degree circle about any equator point (the mutation check of issue 28
    /// found nothing held this).
    #[test]
    fn a_pole_is_one_point_whatever_its_ra() {
        for ra in [0.0, 37.0, 123.456, 359.9] {
            for dec in [90.0, -90.0] {
                let p = Vec3::from_radec(ra, dec);
                assert_eq!((p.x, p.y, p.z), (0.0, 0.0, dec.signum()), "ra {ra} dec {dec}");
                for ra2 in [0.0, 100.0, 271.3] {
                    let angle = angle_between(p, Vec3::from_radec(ra2, 0.0));
                    assert_eq!(angle, std::f64::consts::FRAC_PI_2, "ra {ra} dec {dec} to ({ra2}, 0)");
                }
            }
        }
    }

    #[test]
    fn polygon_around_the_pole_and_across_ra_zero() {
        let cap = poly(&[(0.0, 80.0), (90.0, 80.0), (180.0, 80.0), (270.0, 80.0)]);
        assert!(cap.contains_vec(Vec3::from_radec(0.0, 90.0)));
        // Edges are great circles: between RA 0 and 90 at Dec 80 the edge bulges to Dec 82.9 at RA 45.
        assert!(cap.contains_vec(Vec3::from_radec(45.0, 83.0)));
        assert!(!cap.contains_vec(Vec3::from_radec(45.0, 82.5)));
        assert!(cap.contains_vec(Vec3::from_radec(0.0, 80.5)));
        let wrap = poly(&[(355.0, -5.0), (5.0, -5.0), (5.0, 5.0), (355.0, 5.0)]);
        assert!(wrap.contains_vec(Vec3::from_radec(359.0, 0.0)));
        assert!(wrap.contains_vec(Vec3::from_radec(1.0, 0.0)));
        assert!(!wrap.contains_vec(Vec3::from_radec(180.0, 0.0)));
        assert!(!wrap.contains_vec(Vec3::from_radec(10.0, 0.0)));
    }

    #[test]
    fn concave_polygon() {
        // A "U": the notch between x=4..6 above y=2 is outside.
        let u = poly(&[
            (0.0, 0.0),
            (10.0, 0.0),
            (10.0, 10.0),
            (6.0, 10.0),
            (6.0, 2.0),
            (4.0, 2.0),
            (4.0, 10.0),
            (0.0, 10.0),
        ]);
        assert!(u.contains_vec(Vec3::from_radec(2.0, 5.0)));
        assert!(u.contains_vec(Vec3::from_radec(8.0, 5.0)));
        assert!(u.contains_vec(Vec3::from_radec(5.0, 1.0)));
        assert!(!u.contains_vec(Vec3::from_radec(5.0, 5.0)));
        assert!(!u.contains_vec(Vec3::from_radec(20.0, 5.0)));
    }

    #[test]
    fn circle_and_polygon_relations() {
        let big = Shape::Circle(Circle::new(0.0, 0.0, 10.0));
        let small = Shape::Circle(Circle::new(1.0, 1.0, 1.0));
        let far = Shape::Circle(Circle::new(50.0, 0.0, 1.0));
        assert!(big.contains(&small) && !small.contains(&big));
        assert!(big.intersects(&small) && !big.intersects(&far));
        let square = Shape::Polygon(poly(&[(-2.0, -2.0), (2.0, -2.0), (2.0, 2.0), (-2.0, 2.0)]));
        assert!(big.contains(&square));
        assert!(square.contains(&Shape::Circle(Circle::new(0.0, 0.0, 1.0))));
        assert!(!square.contains(&Shape::Circle(Circle::new(0.0, 0.0, 3.0))));
        assert!(square.intersects(&Shape::Circle(Circle::new(3.0, 0.0, 1.5))));
        assert!(!square.intersects(&Shape::Circle(Circle::new(5.0, 0.0, 1.5))));
    }

    #[test]
    fn areas() {
        let whole_hemisphere_cap = Shape::Circle(Circle::new(0.0, 90.0, 90.0));
        assert!((whole_hemisphere_cap.area_sq_deg() - 20626.480624709636).abs() < 1e-6);
        // One octant: a third of... an eighth of the sky.
        let octant = Shape::Polygon(poly(&[(0.0, 0.0), (90.0, 0.0), (0.0, 90.0)]));
        assert!((octant.area_sq_deg() - 41252.96124941927 / 8.0).abs() < 1e-6);
    }

    #[test]
    fn box_is_symmetric_about_its_centre() {
        let corners = box_corners(10.0, 20.0, 2.0, 1.0);
        let shape = Shape::Polygon(poly(&corners));
        assert!(shape.contains(&Shape::Point(Vec3::from_radec(10.0, 20.0))));
        assert!(shape.contains(&Shape::Point(Vec3::from_radec(10.9, 20.0))));
        assert!(!shape.contains(&Shape::Point(Vec3::from_radec(10.0, 20.6))));
        let c = shape.centroid().to_radec();
        assert!((c.0 - 10.0).abs() < 1e-9 && (c.1 - 20.0).abs() < 1e-3);
    }
}
