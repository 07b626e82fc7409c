//! HEALPix partitioning for skyshard (Gorski et al. 2005, nested scheme; IVOA MOC 2.0 for NUNIQ identifiers).
//!
//! A table is cut into *chunks*: HEALPix cells of varying depth chosen so that no chunk holds more than a bound on
//! rows (the sky is 10-100x denser in the galactic plane than at the poles). Chunks are named by their NUNIQ number,
//! so cells of different depths never collide and a chunk of one table lines up with the containing or contained
//! chunks of another. Each chunk also keeps copies of the rows of neighbouring chunks within the table's overlap
//! radius ([`overlap`]), so joins up to that radius run chunk-local. [`ChunkMap::cone`] and friends tell which
//! chunks a query shape touches. Angles are in degrees at this crate's boundary; cdshealpix takes radians.

pub mod chunk;
pub mod layout;
pub mod map;
pub mod overlap;

pub use chunk::ChunkId;
pub use map::{ChunkMap, ChunkMapError};
pub use overlap::OverlapFinder;
