//! Differential property tests against brute force: every position lands in exactly one chunk, cone and polygon
//! coverage never miss a position inside the shape, and every pair of positions closer than the overlap radius
//! meets in a chunk (each row's chunk holds a copy of the other), at the poles and across RA 0/360 too.

use partitioner::map::{ChunkMap, Histogram, INDEX_DEPTH};
use partitioner::{ChunkId, OverlapFinder};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform on the sphere, with a share of positions at the poles, on RA 0/360 and in clusters.
    fn position(&mut self) -> (f64, f64) {
        let k = self.next();
        if k < 0.03 {
            (
                self.next() * 360.0,
                if self.next() < 0.5 { 90.0 } else { -90.0 },
            )
        } else if k < 0.1 {
            (
                if self.next() < 0.5 { 0.0 } else { 359.9999 },
                self.next() * 180.0 - 90.0,
            )
        } else if k < 0.3 {
            (10.0 + self.next() * 3.0, 20.0 + self.next() * 3.0)
        } else {
            (
                self.next() * 360.0,
                (self.next() * 2.0 - 1.0).asin().to_degrees(),
            )
        }
    }
}

fn distance(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (d1, d2) = (a.1.to_radians(), b.1.to_radians());
    let sd = ((d2 - d1) / 2.0).sin();
    let sr = ((b.0 - a.0).to_radians() / 2.0).sin();
    (2.0 * (sd * sd + d1.cos() * d2.cos() * sr * sr)
        .clamp(0.0, 1.0)
        .sqrt()
        .asin())
    .to_degrees()
}

fn adaptive_map(rng: &mut Rng) -> (ChunkMap, Vec<(f64, f64)>) {
    let points: Vec<(f64, f64)> = (0..20_000).map(|_| rng.position()).collect();
    let mut hist = Histogram::new(7).unwrap();
    for &(ra, dec) in &points {
        hist.add(ra, dec).unwrap();
    }
    (ChunkMap::build(&hist, 500, 1), points)
}

#[test]
fn every_position_is_in_exactly_one_chunk() {
    let mut rng = Rng(11);
    let (map, points) = adaptive_map(&mut rng);
    assert!(
        map.max_depth() >= 4 && map.chunks().iter().any(|c| c.depth() <= 2),
        "the map mixes depths"
    );
    for &(ra, dec) in &points {
        let (chunk, h) = map.assign(ra, dec).unwrap();
        let holders: Vec<&ChunkId> = map
            .chunks()
            .iter()
            .filter(|c| c.range_at(INDEX_DEPTH).contains(&h))
            .collect();
        assert_eq!(holders, vec![&chunk]);
    }
}

#[test]
fn cone_coverage_never_misses_a_position() {
    let mut rng = Rng(12);
    let (map, points) = adaptive_map(&mut rng);
    let mut cones = vec![
        (0.0, 90.0, 3.0),
        (200.0, -90.0, 10.0),
        (0.0, 0.0, 2.0),
        (359.9, 45.0, 1.0),
        (11.0, 21.0, 0.5),
        // Radii cdshealpix refuses (a zero radius, one that is zero in radians): the point itself is covered.
        (0.0, -90.0, 0.0),
        (points[0].0, points[0].1, 0.0),
        (points[1].0, points[1].1, 5e-324),
    ];
    cones.extend((0..40).map(|_| {
        let (ra, dec) = rng.position();
        (ra, dec, 0.01 + rng.next() * 30.0)
    }));
    for (ra, dec, r) in cones {
        let covered = map.cone(ra, dec, r);
        for &p in &points {
            if distance(p, (ra, dec)) <= r {
                let (c, _) = map.assign(p.0, p.1).unwrap();
                assert!(
                    covered.contains(&c),
                    "cone ({ra}, {dec}, {r}) misses chunk {c} of {p:?}"
                );
            }
        }
    }
}

#[test]
fn polygon_coverage_never_misses_a_position() {
    let mut rng = Rng(13);
    let (map, points) = adaptive_map(&mut rng);
    let polygons: Vec<Vec<(f64, f64)>> = vec![
        vec![(9.0, 19.0), (14.0, 19.0), (14.0, 24.0), (9.0, 24.0)],
        vec![(350.0, -5.0), (10.0, -5.0), (10.0, 5.0), (350.0, 5.0)],
        vec![(0.0, 70.0), (120.0, 70.0), (240.0, 70.0)],
    ];
    let unit = |(ra, dec): (f64, f64)| {
        let (a, d) = (ra.to_radians(), dec.to_radians());
        [d.cos() * a.cos(), d.cos() * a.sin(), d.sin()]
    };
    let cross = |a: [f64; 3], b: [f64; 3]| {
        [
            a[1] * b[2] - a[2] * b[1],
            a[2] * b[0] - a[0] * b[2],
            a[0] * b[1] - a[1] * b[0],
        ]
    };
    let dot = |a: [f64; 3], b: [f64; 3]| a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
    for poly in polygons {
        let covered = map.polygon(&poly);
        let v: Vec<[f64; 3]> = poly.iter().map(|&p| unit(p)).collect();
        let n = v.len();
        let mut inside = 0;
        for &p in &points {
            let u = unit(p);
            // Convex and counter-clockwise: inside is left of every edge.
            if (0..n).all(|i| dot(cross(v[i], v[(i + 1) % n]), u) >= 0.0) {
                inside += 1;
                let (c, _) = map.assign(p.0, p.1).unwrap();
                assert!(
                    covered.contains(&c),
                    "polygon {poly:?} misses chunk {c} of {p:?}"
                );
            }
        }
        assert!(
            inside > 10,
            "polygon {poly:?} holds only {inside} test positions"
        );
    }
}

#[test]
fn pairs_within_the_overlap_radius_meet_in_a_chunk() {
    let mut rng = Rng(14);
    let (map, _) = adaptive_map(&mut rng);
    let radius = 0.5;
    // Positions packed near chunk edges, the poles and RA 0 so that many pairs straddle chunks.
    let points: Vec<(f64, f64)> = (0..2500)
        .map(|i| match i % 4 {
            0 => (
                rng.next() * 4.0 - 2.0 + 360.0 * (rng.next() < 0.5) as u8 as f64,
                rng.next() * 10.0 - 5.0,
            ),
            1 => (rng.next() * 360.0, 88.0 + rng.next() * 2.0),
            2 => (44.0 + rng.next() * 2.0, -1.0 + rng.next() * 2.0),
            _ => (10.0 + rng.next() * 3.0, 20.0 + rng.next() * 3.0),
        })
        .map(|(ra, dec): (f64, f64)| (ra.rem_euclid(360.0), dec))
        .collect();
    let mut finder = OverlapFinder::new(&map, radius);
    let mut copies: Vec<(ChunkId, Vec<ChunkId>)> = Vec::new();
    for &(ra, dec) in &points {
        let (own, index) = map.assign(ra, dec).unwrap();
        let mut others = Vec::new();
        finder.others(ra, dec, index, own, &mut others);
        assert!(!others.contains(&own));
        copies.push((own, others));
    }
    let mut straddling = 0;
    for i in 0..points.len() {
        for j in i + 1..points.len() {
            if copies[i].0 != copies[j].0 && distance(points[i], points[j]) <= radius {
                straddling += 1;
                assert!(
                    copies[i].1.contains(&copies[j].0),
                    "{:?} has no copy in the chunk of {:?}",
                    points[i],
                    points[j]
                );
                assert!(
                    copies[j].1.contains(&copies[i].0),
                    "{:?} has no copy in the chunk of {:?}",
                    points[j],
                    points[i]
                );
            }
        }
    }
    assert!(
        straddling > 100,
        "the test needs pairs across chunk boundaries, found {straddling}"
    );
}

#[test]
fn tables_with_different_chunk_trees_align() {
    let mut rng = Rng(15);
    let (a, points) = adaptive_map(&mut rng);
    let b = ChunkMap::uniform(2);
    for map_pair in [(&a, &b), (&b, &a)] {
        let (this, other) = map_pair;
        for &p in points.iter().step_by(7) {
            let (own, _) = this.assign(p.0, p.1).unwrap();
            let (theirs, _) = other.assign(p.0, p.1).unwrap();
            let partners = other.overlapping(own);
            assert!(
                partners.contains(&theirs),
                "{p:?}: chunk {own} does not meet {theirs}"
            );
            // Partners either contain the chunk or lie inside it.
            assert!(partners.iter().all(|&c| c.contains(own) || own.contains(c)));
        }
    }
}
