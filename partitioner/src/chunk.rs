//! Chunk identifiers: HEALPix cells as IVOA NUNIQ numbers (`uniq = 4 * 4^depth + hash`).

use std::fmt;

/// The deepest HEALPix depth cdshealpix handles.
pub const MAX_DEPTH: u8 = 29;

/// A chunk: one nested HEALPix cell, named by its NUNIQ number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId(pub u64);

impl ChunkId {
    pub fn new(depth: u8, hash: u64) -> ChunkId {
        debug_assert!(depth <= MAX_DEPTH && hash < 12u64 << (2 * depth as u32));
        ChunkId((4u64 << (2 * depth as u32)) + hash)
    }

    pub fn depth(self) -> u8 {
        // uniq lies in [4 * 4^d, 16 * 4^d): its highest set bit is 2d + 2 or 2d + 3.
        ((63 - self.0.leading_zeros()) / 2 - 1) as u8
    }

    pub fn hash(self) -> u64 {
        self.0 - (4u64 << (2 * self.depth() as u32))
    }

    /// The range of hashes at `depth` (>= this chunk's depth) that this cell covers.
    pub fn range_at(self, depth: u8) -> std::ops::Range<u64> {
        let shift = 2 * (depth - self.depth()) as u32;
        (self.hash() << shift)..((self.hash() + 1) << shift)
    }

    pub fn parent(self) -> Option<ChunkId> {
        let d = self.depth();
        (d > 0).then(|| ChunkId::new(d - 1, self.hash() >> 2))
    }

    pub fn children(self) -> [ChunkId; 4] {
        let (d, h) = (self.depth() + 1, self.hash() << 2);
        [
            ChunkId::new(d, h),
            ChunkId::new(d, h + 1),
            ChunkId::new(d, h + 2),
            ChunkId::new(d, h + 3),
        ]
    }

    /// True when `other` lies inside this cell (or is it).
    pub fn contains(self, other: ChunkId) -> bool {
        other.depth() >= self.depth()
            && (other.hash() >> (2 * (other.depth() - self.depth()) as u32)) == self.hash()
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nuniq_round_trips_and_matches_cdshealpix() {
        for depth in [0u8, 1, 5, 12, 29] {
            for hash in [0u64, 1, (12u64 << (2 * depth as u32)) - 1] {
                let c = ChunkId::new(depth, hash);
                assert_eq!((c.depth(), c.hash()), (depth, hash));
                assert_eq!(c.0, cdshealpix::nested::to_uniq_ivoa(depth, hash));
            }
        }
    }

    #[test]
    fn hierarchy() {
        let c = ChunkId::new(3, 100);
        for child in c.children() {
            assert_eq!(child.parent(), Some(c));
            assert!(c.contains(child) && !child.contains(c));
        }
        assert_eq!(c.range_at(5), 1600..1616);
        assert_eq!(ChunkId::new(0, 7).parent(), None);
    }
}
