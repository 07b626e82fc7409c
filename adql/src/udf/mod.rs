//! ADQL's geometry functions and this service's user-defined functions as DataFusion scalar functions, vectorized
//! over Arrow arrays. The translator calls them by their `adql_` names; users call them by their ADQL names.

mod area;
mod centroid;
mod circle;
mod contains;
mod coord;
mod distance;
mod healpix;
mod point;
mod polygon;
mod rand;

use datafusion::logical_expr::ScalarUDF;

pub use area::Area;
pub use centroid::Centroid;
pub use circle::CircleFn;
pub use contains::{ContainsPointCircle, Relate, Relation, cone_kernel};
pub use coord::{Coord, CoordSys};
pub use distance::{Distance, distance_kernel};
pub use healpix::{HealpixCenter, HealpixIndex};
pub use point::PointFn;
pub use polygon::{BoxFn, PolygonFn};
pub use rand::SeededRand;

/// Every function the translator may call.
pub fn all() -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::from(PointFn::new()),
        ScalarUDF::from(CircleFn::new()),
        ScalarUDF::from(PolygonFn::new()),
        ScalarUDF::from(BoxFn::new()),
        ScalarUDF::from(Relate::new(Relation::Contains)),
        ScalarUDF::from(Relate::new(Relation::Intersects)),
        ScalarUDF::from(ContainsPointCircle::new()),
        ScalarUDF::from(Distance::new()),
        ScalarUDF::from(Area::new()),
        ScalarUDF::from(Centroid::new()),
        ScalarUDF::from(Coord::new(1)),
        ScalarUDF::from(Coord::new(2)),
        ScalarUDF::from(CoordSys::new()),
        ScalarUDF::from(HealpixIndex::new()),
        ScalarUDF::from(HealpixCenter::new()),
        ScalarUDF::from(SeededRand::new()),
    ]
}
