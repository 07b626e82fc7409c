//! The chunk map of a table: which HEALPix cells are its chunks. Built adaptively from a histogram of positions
//! so that no chunk holds more than a bound on rows, except where one cell of the deepest allowed depth is denser.

use std::ops::Range;

use cdshealpix::nested;

use crate::chunk::{ChunkId, MAX_DEPTH};

/// Depth at which positions are hashed to find their chunk (and by which chunk files are sorted).
pub const INDEX_DEPTH: u8 = MAX_DEPTH;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChunkMapError {
    #[error(
        "position ({ra}, {dec}) is not on the sky: RA must be finite and Dec within [-90, 90] degrees"
    )]
    NotOnSky { ra: f64, dec: f64 },
    #[error("the chunk list does not tile the sphere: {reason}")]
    NotATiling { reason: String },
    #[error("histogram depth {0} is deeper than 12 (a dense histogram would not fit in memory)")]
    HistogramTooDeep(u8),
}

/// The fewest cells covering the hashes `[from, to)` at [`INDEX_DEPTH`]: at each point the largest cell that starts
/// there and fits.
fn filling(mut from: u64, to: u64) -> Vec<ChunkId> {
    let mut out = Vec::new();
    while from < to {
        // Depth 0 cells are the coarsest; a cell at depth d spans 4^(INDEX_DEPTH - d) hashes.
        let mut depth = 0u8;
        loop {
            let span = 1u64 << (2 * (INDEX_DEPTH - depth) as u32);
            if from % span == 0 && from + span <= to {
                out.push(ChunkId::new(depth, from / span));
                from += span;
                break;
            }
            depth += 1;
        }
    }
    out
}

/// Row counts per HEALPix cell at a fixed depth: the first pass over an input, from which a map is built.
#[derive(Debug, Clone)]
pub struct Histogram {
    depth: u8,
    counts: Vec<u64>,
}

impl Histogram {
    pub fn new(depth: u8) -> Result<Histogram, ChunkMapError> {
        if depth > 12 {
            return Err(ChunkMapError::HistogramTooDeep(depth));
        }
        Ok(Histogram {
            depth,
            counts: vec![0; 12usize << (2 * depth as u32)],
        })
    }

    pub fn depth(&self) -> u8 {
        self.depth
    }

    pub fn add(&mut self, ra: f64, dec: f64) -> Result<(), ChunkMapError> {
        let h = hash(self.depth, ra, dec)?;
        self.counts[h as usize] += 1;
        Ok(())
    }

    /// Counts a position already hashed at this histogram's depth.
    pub fn add_hash(&mut self, h: u64) {
        self.counts[h as usize] += 1;
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Rows in a cell of depth <= the histogram's depth.
    pub fn count(&self, prefix: &[u64], cell: ChunkId) -> u64 {
        let r = cell.range_at(self.depth);
        prefix[r.end as usize] - prefix[r.start as usize]
    }

    fn prefix_sums(&self) -> Vec<u64> {
        let mut p = Vec::with_capacity(self.counts.len() + 1);
        p.push(0);
        let mut acc = 0;
        for c in &self.counts {
            acc += c;
            p.push(acc);
        }
        p
    }
}

/// The nested hash of a position (degrees) at `depth`, refusing positions that are not on the sky.
pub fn hash(depth: u8, ra: f64, dec: f64) -> Result<u64, ChunkMapError> {
    if !ra.is_finite() || !dec.is_finite() || !(-90.0..=90.0).contains(&dec) {
        return Err(ChunkMapError::NotOnSky { ra, dec });
    }
    Ok(nested::hash(
        depth,
        ra.rem_euclid(360.0).to_radians(),
        dec.to_radians(),
    ))
}

/// A table's chunks: HEALPix cells that tile the sphere, sorted by position along the nested curve.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkMap {
    chunks: Vec<ChunkId>,
    /// Where each chunk starts at [`INDEX_DEPTH`].
    starts: Vec<u64>,
    max_depth: u8,
}

impl ChunkMap {
    /// Every cell of one depth is a chunk.
    pub fn uniform(depth: u8) -> ChunkMap {
        let chunks = (0..12u64 << (2 * depth as u32))
            .map(|h| ChunkId::new(depth, h))
            .collect();
        ChunkMap::from_chunks(chunks).expect("the cells of one depth tile the sphere")
    }

    /// Splits cells from `min_depth` down while they hold more than `max_rows` rows, no deeper than the histogram.
    pub fn build(histogram: &Histogram, max_rows: u64, min_depth: u8) -> ChunkMap {
        let prefix = histogram.prefix_sums();
        let min_depth = min_depth.min(histogram.depth());
        let mut chunks = Vec::new();
        let mut stack: Vec<ChunkId> = (0..12u64 << (2 * min_depth as u32))
            .rev()
            .map(|h| ChunkId::new(min_depth, h))
            .collect();
        while let Some(cell) = stack.pop() {
            if cell.depth() < histogram.depth() && histogram.count(&prefix, cell) > max_rows {
                stack.extend(cell.children().into_iter().rev());
            } else {
                chunks.push(cell);
            }
        }
        ChunkMap::from_chunks(chunks).expect("splitting a tiling keeps it a tiling")
    }

    /// A map from a list of chunks, checked to tile the sphere exactly once.
    pub fn from_chunks(mut chunks: Vec<ChunkId>) -> Result<ChunkMap, ChunkMapError> {
        chunks.sort_by_key(|c| c.range_at(INDEX_DEPTH).start);
        let mut next = 0u64;
        for c in &chunks {
            let r = c.range_at(INDEX_DEPTH);
            if r.start != next {
                return Err(ChunkMapError::NotATiling {
                    reason: format!("chunk {c} starts at {} where {next} was expected", r.start),
                });
            }
            next = r.end;
        }
        if next != 12u64 << (2 * INDEX_DEPTH as u32) {
            return Err(ChunkMapError::NotATiling {
                reason: "the chunks do not reach the end of the sphere".into(),
            });
        }
        let starts = chunks
            .iter()
            .map(|c| c.range_at(INDEX_DEPTH).start)
            .collect();
        let max_depth = chunks.iter().map(|c| c.depth()).max().unwrap_or(0);
        Ok(ChunkMap {
            chunks,
            starts,
            max_depth,
        })
    }

    /// The map whose chunks are `cells` (which must not overlap) and, where they leave sky uncovered, the fewest
    /// cells that fill each gap (the largest aligned cell that fits, again and again): a partitioning made
    /// elsewhere (a HATS catalog's, which covers only where there is data) kept as it is.
    pub fn covering(mut cells: Vec<ChunkId>) -> Result<ChunkMap, ChunkMapError> {
        cells.sort_by_key(|c| c.range_at(INDEX_DEPTH).start);
        let end = 12u64 << (2 * INDEX_DEPTH as u32);
        let mut all = Vec::with_capacity(cells.len() * 2);
        let mut next = 0u64;
        for c in cells.iter().copied().chain(std::iter::once(ChunkId(u64::MAX))) {
            let (start, stop) = if c.0 == u64::MAX {
                (end, end)
            } else {
                let r = c.range_at(INDEX_DEPTH);
                (r.start, r.end)
            };
            if start < next {
                return Err(ChunkMapError::NotATiling {
                    reason: format!("cell {c} (depth {}, index {}) overlaps the cell before it", c.depth(), c.hash()),
                });
            }
            all.extend(filling(next, start));
            if c.0 != u64::MAX {
                all.push(c);
            }
            next = stop;
        }
        ChunkMap::from_chunks(all)
    }

    pub fn chunks(&self) -> &[ChunkId] {
        &self.chunks
    }

    pub fn max_depth(&self) -> u8 {
        self.max_depth
    }

    /// The chunk that holds the hash `h` at [`INDEX_DEPTH`].
    pub fn chunk_of_index(&self, h: u64) -> ChunkId {
        self.chunks[self.starts.partition_point(|&s| s <= h) - 1]
    }

    /// The chunk a position (degrees) belongs to, and its hash at [`INDEX_DEPTH`] (the sort key inside the chunk).
    pub fn assign(&self, ra: f64, dec: f64) -> Result<(ChunkId, u64), ChunkMapError> {
        let h = hash(INDEX_DEPTH, ra, dec)?;
        Ok((self.chunk_of_index(h), h))
    }

    /// The chunks that overlap a range of hashes at `depth`.
    fn chunks_in(&self, depth: u8, range: Range<u64>, out: &mut Vec<ChunkId>) {
        let shift = 2 * (INDEX_DEPTH - depth) as u32;
        let (start, end) = (range.start << shift, range.end << shift);
        let mut i = self.starts.partition_point(|&s| s <= start) - 1;
        while i < self.chunks.len() && self.starts[i] < end {
            if out.last() != Some(&self.chunks[i]) {
                out.push(self.chunks[i]);
            }
            i += 1;
        }
    }

    fn from_bmoc(&self, bmoc: &nested::bmoc::BMOC) -> Vec<ChunkId> {
        let depth = bmoc.get_depth_max();
        let mut out = Vec::new();
        for r in bmoc.to_ranges().iter() {
            self.chunks_in(depth, r.clone(), &mut out);
        }
        out.dedup();
        out
    }

    /// The chunks of this map that share sky with `cell`, a chunk of another table's map: the one chunk that
    /// contains it, or the chunks inside it. This is how tables with different chunk trees are joined chunk by
    /// chunk: a chunk of one table meets exactly these chunks of the other.
    pub fn overlapping(&self, cell: ChunkId) -> Vec<ChunkId> {
        let mut out = Vec::new();
        let h = cell.hash();
        self.chunks_in(cell.depth(), h..h + 1, &mut out);
        out
    }

    /// The chunks of this map with sky within `radius` degrees of `cell` (a cell of any depth; a superset): what a
    /// cross-match with a radius wider than the overlap reads around one cell of the other table.
    pub fn near(&self, cell: ChunkId, radius: f64) -> Vec<ChunkId> {
        let (depth, hash) = (cell.depth(), cell.hash());
        let (lon, lat) = nested::center(depth, hash);
        // The cell's edges are not great circles: its farthest point from the centre is found along them.
        let edge = nested::path_along_cell_edge(
            depth,
            hash,
            &cdshealpix::compass_point::Cardinal::S,
            true,
            16,
        );
        let reach = edge
            .iter()
            .map(|&(l, b)| angle((lon, lat), (l, b)))
            .fold(0.0_f64, f64::max);
        let r = reach * 1.01 + radius.max(0.0).to_radians() + 1e-9;
        if !r.is_finite() || r >= std::f64::consts::PI {
            return self.chunks.clone();
        }
        self.from_bmoc(&nested::cone_coverage_approx(self.max_depth, lon, lat, r))
    }

    /// The chunks a cone touches (a superset: never misses one). A cone that is not one (a centre off the sphere,
    /// a radius that is not a finite non-negative angle) touches every chunk: pruning stays correct, and nothing
    /// below panics on it.
    pub fn cone(&self, ra: f64, dec: f64, radius: f64) -> Vec<ChunkId> {
        if radius >= 180.0 || !valid_cone(ra, dec, radius) {
            return self.chunks.clone();
        }
        let bmoc = nested::cone_coverage_approx(
            self.max_depth,
            ra.rem_euclid(360.0).to_radians(),
            dec.to_radians(),
            coverage_radius(radius),
        );
        self.from_bmoc(&bmoc)
    }

    /// The chunks a polygon with great-circle edges touches (vertices in degrees; a superset: never misses one).
    ///
    /// cdshealpix's exact polygon coverage panics on some polygons around a pole (seen with a triangle at Dec 70);
    /// such a polygon falls back to the coverage of its bounding cone.
    pub fn polygon(&self, vertices: &[(f64, f64)]) -> Vec<ChunkId> {
        if vertices.len() < 3 || !vertices.iter().all(|&(a, d)| valid_position(a, d)) {
            return self.chunks.clone();
        }
        let v: Vec<(f64, f64)> = vertices
            .iter()
            .map(|&(a, d)| (a.rem_euclid(360.0).to_radians(), d.to_radians()))
            .collect();
        let depth = self.max_depth;
        match std::panic::catch_unwind(|| nested::polygon_coverage(depth, &v, true)) {
            Ok(bmoc) => self.from_bmoc(&bmoc),
            Err(_) => {
                let (ra, dec, r) = bounding_cone(vertices);
                self.cone(ra, dec, r)
            }
        }
    }
}

/// The angle in radians between two positions given in radians (haversine).
fn angle((l1, b1): (f64, f64), (l2, b2): (f64, f64)) -> f64 {
    let h = ((b2 - b1) / 2.0).sin().powi(2) + b1.cos() * b2.cos() * ((l2 - l1) / 2.0).sin().powi(2);
    2.0 * h.sqrt().min(1.0).asin()
}

/// Whether (ra, dec) in degrees is a position on the sphere.
pub fn valid_position(ra: f64, dec: f64) -> bool {
    ra.is_finite() && dec.is_finite() && (-90.0..=90.0).contains(&dec)
}

/// Whether a cone is one: a valid centre and a finite, non-negative radius in degrees.
/// The radius (radians) whose coverage is asked of cdshealpix, which refuses a zero radius (an assertion): a cone
/// of radius 0 (or one too small to be a positive angle in radians) is covered as one of 1e-9 degrees, a superset.
fn coverage_radius(radius: f64) -> f64 {
    radius.max(1e-9).to_radians()
}

pub fn valid_cone(ra: f64, dec: f64, radius: f64) -> bool {
    valid_position(ra, dec) && radius.is_finite() && radius >= 0.0
}

/// A cone around a small polygon: centred on the mean of its vertex vectors, reaching past its farthest vertex.
pub fn bounding_cone(vertices: &[(f64, f64)]) -> (f64, f64, f64) {
    let unit = |(ra, dec): (f64, f64)| {
        let (a, d) = (ra.to_radians(), dec.to_radians());
        [d.cos() * a.cos(), d.cos() * a.sin(), d.sin()]
    };
    let mut c = [0.0; 3];
    for &p in vertices {
        let u = unit(p);
        (0..3).for_each(|k| c[k] += u[k]);
    }
    let n = (c[0] * c[0] + c[1] * c[1] + c[2] * c[2]).sqrt();
    if n < 1e-9 {
        return (0.0, 0.0, 180.0);
    }
    let c = [c[0] / n, c[1] / n, c[2] / n];
    let r = vertices
        .iter()
        .map(|&p| {
            let u = unit(p);
            (c[0] * u[0] + c[1] * u[1] + c[2] * u[2])
                .clamp(-1.0, 1.0)
                .acos()
                .to_degrees()
        })
        .fold(0.0, f64::max);
    let ra = c[1].atan2(c[0]).to_degrees().rem_euclid(360.0);
    (ra, c[2].asin().to_degrees(), (r * 1.01 + 1e-6).min(180.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_map_assigns_like_cdshealpix() {
        let map = ChunkMap::uniform(3);
        assert_eq!(map.chunks().len(), 768);
        let (c, _) = map.assign(123.4, -56.7).unwrap();
        assert_eq!(
            c,
            ChunkId::new(
                3,
                nested::hash(3, 123.4f64.to_radians(), (-56.7f64).to_radians())
            )
        );
        assert!(map.assign(0.0, 91.0).is_err());
        assert!(map.assign(f64::NAN, 0.0).is_err());
        assert_eq!(
            map.assign(360.0, 0.0).unwrap().0,
            map.assign(0.0, 0.0).unwrap().0
        );
    }

    #[test]
    fn adaptive_map_bounds_chunk_rows() {
        let mut hist = Histogram::new(8).unwrap();
        // A dense blob around (10, 10) and a thin background.
        let mut s = 1u64;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64
        };
        for _ in 0..50_000 {
            hist.add(next() * 360.0, (next() * 2.0 - 1.0).asin().to_degrees())
                .unwrap();
            hist.add(10.0 + next() * 2.0, 10.0 + next() * 2.0).unwrap();
        }
        let map = ChunkMap::build(&hist, 2000, 1);
        let prefix = hist.prefix_sums();
        for &c in map.chunks() {
            assert!(
                hist.count(&prefix, c) <= 2000 || c.depth() == 8,
                "chunk {c} holds too many rows"
            );
        }
        assert!(map.max_depth() > 3, "the blob was split");
        assert!(
            map.chunks().len() < 200,
            "the thin background was not over-split: {}",
            map.chunks().len()
        );
        assert_eq!(
            map.chunks()
                .iter()
                .map(|&c| hist.count(&prefix, c))
                .sum::<u64>(),
            100_000
        );
    }

    #[test]
    fn shapes_off_the_sphere_touch_every_chunk_and_never_panic() {
        let map = ChunkMap::uniform(2);
        let all = map.chunks().len();
        for (ra, dec, r) in [
            (10.0, 95.0, 1.0),
            (10.0, -90.5, 1.0),
            (f64::NAN, 0.0, 1.0),
            (0.0, f64::INFINITY, 1.0),
            (10.0, 10.0, f64::NAN),
            (10.0, 10.0, -1.0),
        ] {
            assert_eq!(map.cone(ra, dec, r).len(), all, "({ra}, {dec}, {r})");
            assert_eq!(cone_index_ranges(ra, dec, r).len(), 1, "({ra}, {dec}, {r})");
        }
        assert_eq!(
            map.polygon(&[(10.0, 95.0), (11.0, 0.0), (12.0, 1.0)]).len(),
            all
        );
        // Radii of zero and of a subnormal size (cdshealpix asserts a positive radius): a small coverage.
        for (ra, dec, r) in [(0.0, -90.0, 0.0), (180.0, 0.0, 0.0), (33.0, 89.9, 5e-324)] {
            assert!(
                (1..all).contains(&map.cone(ra, dec, r).len()),
                "({ra}, {dec}, {r})"
            );
            assert!(!cone_index_ranges(ra, dec, r).is_empty());
        }
        assert_eq!(
            map.polygon(&[(10.0, 0.0), (f64::NAN, 0.0), (12.0, 1.0)])
                .len(),
            all
        );
        assert_eq!(map.polygon(&[(10.0, 0.0), (11.0, 0.0)]).len(), all);
        // A valid cone still prunes.
        assert!(map.cone(10.0, 10.0, 1.0).len() < all);
    }

    #[test]
    fn from_chunks_refuses_gaps_and_overlaps() {
        let mut chunks = ChunkMap::uniform(1).chunks().to_vec();
        chunks.pop();
        assert!(ChunkMap::from_chunks(chunks.clone()).is_err());
        chunks.push(ChunkId::new(0, 11));
        assert!(ChunkMap::from_chunks(chunks).is_err());
    }

    #[test]
    fn a_partial_partitioning_is_kept_and_its_gaps_filled() {
        // Two cells of a HATS-like catalog: one at depth 1, one at depth 3 inside base cell 7.
        let a = ChunkId::new(1, 5);
        let b = ChunkId::new(3, 7 * 64 + 9);
        let map = ChunkMap::covering(vec![b, a]).unwrap();
        assert!(map.chunks().contains(&a) && map.chunks().contains(&b));
        // A tiling (from_chunks checked it), with the fewest cells: the other base cells whole.
        assert!(map.chunks().contains(&ChunkId::new(0, 0)) && map.chunks().contains(&ChunkId::new(0, 11)));
        assert!(!map.chunks().contains(&ChunkId::new(0, 7)));
        assert_eq!(map.chunk_of_index(b.range_at(INDEX_DEPTH).start + 3), b);
        // Overlapping cells are refused, by name.
        let e = ChunkMap::covering(vec![ChunkId::new(1, 5), ChunkId::new(2, 21)]).unwrap_err();
        assert!(e.to_string().contains("overlaps"), "{e}");
        // Nothing: the twelve base cells.
        assert_eq!(ChunkMap::covering(vec![]).unwrap().chunks().len(), 12);
    }
}

/// Depth-29 index ranges (inclusive) covering a cone, for skipping row groups inside chunk files. The coverage depth
/// grows as the cone shrinks (cells about half its radius, at most depth 16), keeping the list short.
pub fn cone_index_ranges(ra: f64, dec: f64, radius: f64) -> Vec<(u64, u64)> {
    if radius >= 30.0 || !valid_cone(ra, dec, radius) {
        return vec![(0, (12u64 << (2 * INDEX_DEPTH as u32)) - 1)];
    }
    // A cell at depth d is about 58.6 / 2^d degrees across.
    let mut depth = 0u8;
    while depth < 16 && 58.6 / f64::powi(2.0, depth as i32 + 1) >= radius / 2.0 {
        depth += 1;
    }
    let bmoc = nested::cone_coverage_approx(
        depth,
        ra.rem_euclid(360.0).to_radians(),
        dec.to_radians(),
        coverage_radius(radius),
    );
    let shift = 2 * (INDEX_DEPTH - bmoc.get_depth_max()) as u32;
    bmoc.to_ranges()
        .iter()
        .map(|r| (r.start << shift, (r.end << shift) - 1))
        .collect()

}
