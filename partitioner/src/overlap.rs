//! Overlap: which other chunks must keep a copy of a row so that every pair of rows closer than the table's overlap
//! radius meets in at least one chunk (the chunk of either row), and joins up to that radius run chunk-local.
//!
//! A row is copied into every chunk that the cone of the overlap radius around it touches, by cdshealpix's cone
//! coverage (a superset: it may add a copy a little beyond the radius, never misses one). Most rows sit deep inside
//! their chunk; those are recognised from a cached per-cell test and cost one hash.

use std::collections::HashMap;

use cdshealpix::nested;

use crate::chunk::ChunkId;
use crate::map::{ChunkMap, INDEX_DEPTH};

/// Finds, for positions, the chunks other than their own that need an overlap copy.
pub struct OverlapFinder<'a> {
    map: &'a ChunkMap,
    radius_deg: f64,
    /// Depth of the cells whose 3x3 neighbourhood certainly contains any cone of the radius centred in the middle
    /// cell.
    cell_depth: u8,
    /// Per cell at `cell_depth`: whether the cell and its neighbours all lie in one chunk (0: not known yet, 1: yes,
    /// 2: no), a flat table when it is small enough (depth 10: 12.6 M cells), else a map.
    interior: Interior,
}

enum Interior {
    Table(Vec<u8>),
    Map(HashMap<u64, bool>),
}

/// The deepest cell depth whose interior flags are kept in a flat table.
const TABLE_DEPTH: u8 = 10;

/// Mean HEALPix cell size at `depth`, in degrees: sqrt(4 pi / (12 * 4^depth)).
fn cell_size_deg(depth: u8) -> f64 {
    (4.0 * std::f64::consts::PI / (12.0 * 4f64.powi(depth as i32)))
        .sqrt()
        .to_degrees()
}

impl<'a> OverlapFinder<'a> {
    pub fn new(map: &'a ChunkMap, radius_deg: f64) -> OverlapFinder<'a> {
        // The smallest cells are about half the mean size; keep the radius under a quarter of the mean.
        let mut cell_depth = 0u8;
        while cell_depth < 20 && cell_size_deg(cell_depth + 1) >= 4.0 * radius_deg {
            cell_depth += 1;
        }
        OverlapFinder {
            map,
            radius_deg,
            cell_depth,
            interior: if cell_depth <= TABLE_DEPTH {
                Interior::Table(vec![0; 12usize << (2 * cell_depth as u32)])
            } else {
                Interior::Map(HashMap::new())
            },
        }
    }

    fn is_interior(&mut self, cell: u64) -> bool {
        let known = match &self.interior {
            Interior::Table(t) => match t[cell as usize] {
                0 => None,
                v => Some(v == 1),
            },
            Interior::Map(m) => m.get(&cell).copied(),
        };
        if let Some(v) = known {
            return v;
        }
        let d = self.cell_depth;
        let shift = 2 * (INDEX_DEPTH - d) as u32;
        let chunk_of = |h: u64| {
            let first = self.map.chunk_of_index(h << shift);
            // The whole cell lies in that chunk only when the chunk is no deeper than the cell.
            (first.depth() <= d).then_some(first)
        };
        let own = chunk_of(cell);
        let v = own.is_some()
            && nested::neighbours(d, cell, false)
                .values_vec()
                .into_iter()
                .all(|n| chunk_of(n) == own);
        match &mut self.interior {
            Interior::Table(t) => t[cell as usize] = if v { 1 } else { 2 },
            Interior::Map(m) => {
                m.insert(cell, v);
            }
        }
        v
    }

    /// Appends to `out` the chunks other than `own` within the radius of (ra, dec), whose depth-29 index is `index`
    /// (as [`ChunkMap::assign`] gives it: the cell is read off it, not hashed again).
    pub fn others(&mut self, ra: f64, dec: f64, index: u64, own: ChunkId, out: &mut Vec<ChunkId>) {
        if self.radius_deg <= 0.0 {
            return;
        }
        let cell = index >> (2 * (INDEX_DEPTH - self.cell_depth) as u32);
        if self.is_interior(cell) {
            return;
        }
        let before = out.len();
        out.extend(
            self.map
                .cone(ra, dec, self.radius_deg)
                .into_iter()
                .filter(|&c| c != own),
        );
        debug_assert!(out[before..].iter().all(|&c| c != own));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_depth_fits_the_radius() {
        let map = ChunkMap::uniform(4);
        let f = OverlapFinder::new(&map, 1.0 / 60.0);
        assert!(cell_size_deg(f.cell_depth) >= 4.0 / 60.0);
        assert!(cell_size_deg(f.cell_depth + 1) < 4.0 / 60.0);
    }
}
