//! POLYGON(ra1, dec1, ra2, dec2, ...) and BOX(ra, dec, width, height): DALI polygon values with great-circle edges.

use arrow::array::Array;
use arrow::datatypes::DataType;
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::geometry::sphere::{Polygon, box_corners};
use crate::geometry::values::{f64_array, polygon_array, polygon_type, to_arrays, union_nulls};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PolygonFn {
    signature: Signature,
}

impl PolygonFn {
    pub fn new() -> Self {
        Self {
            signature: Signature::variadic(vec![DataType::Float64], Volatility::Immutable),
        }
    }
}

impl Default for PolygonFn {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for PolygonFn {
    fn name(&self) -> &str {
        "adql_polygon"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(polygon_type())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let k = args.args.len();
        if k < 6 || k % 2 != 0 {
            return exec_err!(
                "POLYGON takes pairs of coordinates for at least three vertices, found {k} numbers"
            );
        }
        let arrays = to_arrays(&args.args, args.number_rows)?;
        let cols: Vec<_> = arrays.iter().map(f64_array).collect();
        let refs: Vec<&dyn Array> = cols.iter().map(|c| *c as &dyn Array).collect();
        let nulls = union_nulls(&refs);
        let n = args.number_rows;
        let mut values = Vec::with_capacity(n * k);
        let mut pairs = Vec::with_capacity(k / 2);
        for i in 0..n {
            if nulls.as_ref().is_some_and(|m| m.is_null(i)) {
                values.extend(std::iter::repeat_n(f64::NAN, k));
                continue;
            }
            pairs.clear();
            pairs.extend(cols.chunks_exact(2).map(|c| (c[0].value(i), c[1].value(i))));
            if let Err(e) = Polygon::new(&pairs) {
                return exec_err!("POLYGON{pairs:?}: {e}");
            }
            values.extend(pairs.iter().flat_map(|&(a, b)| [a, b]));
        }
        Ok(ColumnarValue::Array(polygon_array(
            values,
            vec![k; n],
            nulls,
        )))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct BoxFn {
    signature: Signature,
}

impl BoxFn {
    pub fn new() -> Self {
        Self {
            signature: Signature::uniform(4, vec![DataType::Float64], Volatility::Immutable),
        }
    }
}

impl Default for BoxFn {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for BoxFn {
    fn name(&self) -> &str {
        "adql_box"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(polygon_type())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = to_arrays(&args.args, args.number_rows)?;
        let c: Vec<_> = arrays.iter().map(f64_array).collect();
        let nulls = union_nulls(&[c[0], c[1], c[2], c[3]]);
        let n = args.number_rows;
        let mut values = Vec::with_capacity(n * 8);
        for i in 0..n {
            let (w, h) = (c[2].value(i), c[3].value(i));
            if !(w > 0.0 && h > 0.0 && w < 180.0 && h < 180.0)
                && !nulls.as_ref().is_some_and(|m| m.is_null(i))
            {
                return exec_err!(
                    "BOX width and height must be between 0 and 180 degrees, found {w} and {h}"
                );
            }
            values.extend(
                box_corners(c[0].value(i), c[1].value(i), w, h)
                    .into_iter()
                    .flat_map(|(a, b)| [a, b]),
            );
        }
        Ok(ColumnarValue::Array(polygon_array(
            values,
            vec![8; n],
            nulls,
        )))
    }
}
