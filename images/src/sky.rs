//! Positions on the sphere (degrees) as images need them: distances, a point at a bearing, great-circle steps.

pub fn unit(ra: f64, dec: f64) -> [f64; 3] {
    let (ra, dec) = (ra.to_radians(), dec.to_radians());
    [dec.cos() * ra.cos(), dec.cos() * ra.sin(), dec.sin()]
}

pub fn to_radec(v: [f64; 3]) -> (f64, f64) {
    let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    let dec = (v[2] / n).clamp(-1.0, 1.0).asin().to_degrees();
    let ra = v[1].atan2(v[0]).to_degrees().rem_euclid(360.0);
    (ra, dec)
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn norm(a: [f64; 3]) -> f64 {
    dot(a, a).sqrt()
}

/// The angle between two positions, in degrees (the atan2 form: exact near 0 and 180).
pub fn distance(ra1: f64, dec1: f64, ra2: f64, dec2: f64) -> f64 {
    let (a, b) = (unit(ra1, dec1), unit(ra2, dec2));
    norm(cross(a, b)).atan2(dot(a, b)).to_degrees()
}

/// The position `dist` degrees from (ra, dec) toward `bearing` degrees (east of north).
pub fn offset(ra: f64, dec: f64, bearing: f64, dist: f64) -> (f64, f64) {
    let (d, b) = (dist.to_radians(), bearing.to_radians());
    let (ra0, dec0) = (ra.to_radians(), dec.to_radians());
    let dec1 = (dec0.sin() * d.cos() + dec0.cos() * d.sin() * b.cos())
        .clamp(-1.0, 1.0)
        .asin();
    let ra1 = ra0 + (b.sin() * d.sin() * dec0.cos()).atan2(d.cos() - dec0.sin() * dec1.sin());
    (ra1.to_degrees().rem_euclid(360.0), dec1.to_degrees())
}

/// The point a fraction `t` of the way from a to b along the shorter great circle.
pub fn between(a: (f64, f64), b: (f64, f64), t: f64) -> (f64, f64) {
    let (u, v) = (unit(a.0, a.1), unit(b.0, b.1));
    let p = [
        u[0] + (v[0] - u[0]) * t,
        u[1] + (v[1] - u[1]) * t,
        u[2] + (v[2] - u[2]) * t,
    ];
    if norm(p) < 1e-12 {
        return a;
    }
    to_radec(p)
}

/// The mean direction of some positions (their "middle"), if they do not cancel out.
pub fn middle(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let mut s = [0.0; 3];
    for &(ra, dec) in points {
        let u = unit(ra, dec);
        s = [s[0] + u[0], s[1] + u[1], s[2] + u[2]];
    }
    (norm(s) > 1e-9).then(|| to_radec(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_and_offsets_agree() {
        assert!((distance(0.0, 0.0, 1.0, 0.0) - 1.0).abs() < 1e-12);
        assert!((distance(359.5, 0.0, 0.5, 0.0) - 1.0).abs() < 1e-12);
        assert!((distance(10.0, -90.0, 200.0, -90.0)).abs() < 1e-9);
        for (ra, dec, bearing, d) in [(10.0, 20.0, 30.0, 2.0), (359.0, 89.0, 200.0, 3.0), (0.0, -45.0, 90.0, 0.001)] {
            let (r2, d2) = offset(ra, dec, bearing, d);
            assert!((distance(ra, dec, r2, d2) - d).abs() < 1e-9, "{ra} {dec} {bearing}");
        }
        let (ra, dec) = between((359.0, 0.0), (1.0, 0.0), 0.5);
        assert!(ra.abs() < 1e-9 || (ra - 360.0).abs() < 1e-9, "{ra}");
        assert!(dec.abs() < 1e-12);
    }
}
