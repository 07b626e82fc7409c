//! Geometry values in Arrow, as DALI 1.1 serializes them (section 3.3): a point is two doubles (`xtype="point"`),
//! a circle three (`xtype="circle"`), a polygon a variable-length list of ra, dec pairs (`xtype="polygon"`); and text
//! holding STC-S (`xtype="adql:REGION"`), read as geometry wherever a geometry is asked.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, FixedSizeListArray, Float64Array, ListArray};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{DataType, Field, Float64Type};
use datafusion::common::{DataFusionError, Result, exec_err};
use datafusion::logical_expr::ColumnarValue;

use super::sphere::{Circle, Polygon, Shape, Vec3};
use super::stcs::{self, Region};

pub fn item_field() -> Arc<Field> {
    Arc::new(Field::new_list_field(DataType::Float64, true))
}

pub fn point_type() -> DataType {
    DataType::FixedSizeList(item_field(), 2)
}

pub fn circle_type() -> DataType {
    DataType::FixedSizeList(item_field(), 3)
}

pub fn polygon_type() -> DataType {
    DataType::List(item_field())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeomKind {
    Point,
    Circle,
    Polygon,
}

impl GeomKind {
    pub fn of(dt: &DataType) -> Option<GeomKind> {
        match dt {
            DataType::FixedSizeList(f, 2) if f.data_type() == &DataType::Float64 => {
                Some(GeomKind::Point)
            }
            DataType::FixedSizeList(f, 3) if f.data_type() == &DataType::Float64 => {
                Some(GeomKind::Circle)
            }
            DataType::List(f) | DataType::LargeList(f) if f.data_type() == &DataType::Float64 => {
                Some(GeomKind::Polygon)
            }
            _ => None,
        }
    }

    /// The DALI xtype of this kind.
    pub fn xtype(self) -> &'static str {
        match self {
            GeomKind::Point => "point",
            GeomKind::Circle => "circle",
            GeomKind::Polygon => "polygon",
        }
    }
}

/// Random access to the geometries of one Arrow array, whatever its layout: the DALI arrays above, or text holding
/// STC-S regions (an `adql:REGION` column such as ObsCore's `s_region`), read once when the column is made.
pub struct GeomColumn {
    kind: GeomKind,
    layout: Layout,
}

enum Layout {
    Arrays { array: ArrayRef, values: Float64Array },
    /// One region per row (None for NULL or empty text): its kind, its coordinates in that kind's layout, and its
    /// shape, built (and a polygon checked) once.
    Text(Vec<Option<(GeomKind, Vec<f64>, Shape)>>),
}

impl GeomColumn {
    pub fn new(array: ArrayRef, what: &str) -> Result<GeomColumn> {
        if matches!(
            array.data_type(),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        ) {
            return Self::from_text(&array, what);
        }
        let Some(kind) = GeomKind::of(array.data_type()) else {
            return exec_err!(
                "{what} must be a geometry (point, circle or polygon), found {}",
                array.data_type()
            );
        };
        let values = match array.data_type() {
            DataType::FixedSizeList(..) => array
                .as_fixed_size_list()
                .values()
                .as_primitive::<Float64Type>()
                .clone(),
            DataType::List(_) => array
                .as_list::<i32>()
                .values()
                .as_primitive::<Float64Type>()
                .clone(),
            _ => array
                .as_list::<i64>()
                .values()
                .as_primitive::<Float64Type>()
                .clone(),
        };
        Ok(GeomColumn {
            kind,
            layout: Layout::Arrays { array, values },
        })
    }

    /// Text regions. The column's kind is Point when every row is a point, Polygon when any row is a polygon,
    /// else Circle (what the kind-specific kernels ask).
    fn from_text(array: &ArrayRef, what: &str) -> Result<GeomColumn> {
        let text = arrow::compute::cast(array, &DataType::Utf8)?;
        let text = text.as_string::<i32>();
        let mut rows = Vec::with_capacity(text.len());
        for i in 0..text.len() {
            if text.is_null(i) || text.value(i).trim().is_empty() {
                rows.push(None);
                continue;
            }
            let unreadable =
                |e: String| DataFusionError::Execution(format!("{what} is not a region it can read: {e}"));
            rows.push(Some(match stcs::parse(text.value(i)).map_err(unreadable)? {
                Region::Point(ra, dec) => (
                    GeomKind::Point,
                    vec![ra, dec],
                    Shape::Point(Vec3::from_radec(ra, dec)),
                ),
                Region::Circle(ra, dec, r) => (
                    GeomKind::Circle,
                    vec![ra, dec, r],
                    Shape::Circle(Circle::new(ra, dec, r)),
                ),
                Region::Polygon(pairs) => {
                    let shape = Shape::Polygon(stcs::polygon(&pairs).map_err(unreadable)?);
                    (
                        GeomKind::Polygon,
                        pairs.into_iter().flat_map(|(a, b)| [a, b]).collect(),
                        shape,
                    )
                }
            }));
        }
        let kinds = || rows.iter().flatten().map(|(k, ..)| *k);
        let kind = if kinds().all(|k| k == GeomKind::Point) {
            GeomKind::Point
        } else if kinds().any(|k| k == GeomKind::Polygon) {
            GeomKind::Polygon
        } else {
            GeomKind::Circle
        };
        Ok(GeomColumn {
            kind,
            layout: Layout::Text(rows),
        })
    }

    pub fn kind(&self) -> GeomKind {
        self.kind
    }

    pub fn len(&self) -> usize {
        match &self.layout {
            Layout::Arrays { array, .. } => array.len(),
            Layout::Text(rows) => rows.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The coordinates of row `i`, or None when it is null or has a null coordinate.
    pub fn coords(&self, i: usize) -> Option<&[f64]> {
        let (array, values) = match &self.layout {
            Layout::Text(rows) => return rows[i].as_ref().map(|(_, c, _)| c.as_slice()),
            Layout::Arrays { array, values } => (array, values),
        };
        if array.is_null(i) {
            return None;
        }
        let (start, end) = match array.data_type() {
            DataType::FixedSizeList(_, n) => {
                let fsl = array.as_fixed_size_list();
                let s = fsl.value_offset(i) as usize;
                (s, s + *n as usize)
            }
            DataType::List(_) => {
                let o = array.as_list::<i32>().value_offsets();
                (o[i] as usize, o[i + 1] as usize)
            }
            _ => {
                let o = array.as_list::<i64>().value_offsets();
                (o[i] as usize, o[i + 1] as usize)
            }
        };
        if values.null_count() > 0 && (start..end).any(|k| values.is_null(k)) {
            return None;
        }
        Some(&values.values()[start..end])
    }

    /// The shape of row `i`; a malformed polygon is an error naming the row's coordinates.
    pub fn shape(&self, i: usize) -> Result<Option<Shape>> {
        if let Layout::Text(rows) = &self.layout {
            return Ok(rows[i].as_ref().map(|(_, _, shape)| shape.clone()));
        }
        let Some(c) = self.coords(i) else {
            return Ok(None);
        };
        shape_from_coords(self.kind, c).map(Some)
    }
}

pub fn shape_from_coords(kind: GeomKind, c: &[f64]) -> Result<Shape> {
    Ok(match kind {
        GeomKind::Point => Shape::Point(Vec3::from_radec(c[0], c[1])),
        GeomKind::Circle => Shape::Circle(Circle::new(c[0], c[1], c[2])),
        GeomKind::Polygon => {
            if c.len() % 2 != 0 {
                return exec_err!(
                    "a polygon value must hold pairs of coordinates, found {} numbers",
                    c.len()
                );
            }
            let pairs: Vec<(f64, f64)> = c.chunks_exact(2).map(|p| (p[0], p[1])).collect();
            Shape::Polygon(
                Polygon::new(&pairs).map_err(|e| DataFusionError::Execution(e.to_string()))?,
            )
        }
    })
}

/// Arguments as arrays of `n` rows (scalars repeated).
pub fn to_arrays(args: &[ColumnarValue], n: usize) -> Result<Vec<ArrayRef>> {
    args.iter().map(|a| a.to_array(n)).collect()
}

/// A float argument as a Float64 array (the signature already coerced it).
pub fn f64_array(a: &ArrayRef) -> &Float64Array {
    a.as_primitive::<Float64Type>()
}

/// Builds a fixed-size-list geometry array (points, circles) from interleaved coordinates.
pub fn fixed_geometry_array(values: Vec<f64>, width: i32, nulls: Option<NullBuffer>) -> ArrayRef {
    let values = Float64Array::from(values);
    Arc::new(FixedSizeListArray::new(
        item_field(),
        width,
        Arc::new(values),
        nulls,
    ))
}

/// Builds a polygon array from per-row coordinate counts.
pub fn polygon_array(values: Vec<f64>, lengths: Vec<usize>, nulls: Option<NullBuffer>) -> ArrayRef {
    let offsets = OffsetBuffer::from_lengths(lengths);
    Arc::new(ListArray::new(
        item_field(),
        offsets,
        Arc::new(Float64Array::from(values)),
        nulls,
    ))
}

/// The union of the null masks of several arrays.
pub fn union_nulls(arrays: &[&dyn Array]) -> Option<NullBuffer> {
    arrays.iter().fold(None, |acc, a| {
        NullBuffer::union(acc.as_ref(), a.logical_nulls().as_ref())
    })
}
