//! CENTROID(geometry): the centre of a circle, the centroid of a polygon, a point itself.

use arrow::buffer::NullBuffer;
use arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::geometry::values::{GeomColumn, fixed_geometry_array, point_type};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Centroid {
    signature: Signature,
}

impl Centroid {
    pub fn new() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl Default for Centroid {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for Centroid {
    fn name(&self) -> &str {
        "adql_centroid"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(point_type())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let col = GeomColumn::new(
            args.args[0].to_array(args.number_rows)?,
            "the argument of CENTROID",
        )?;
        let mut values = Vec::with_capacity(col.len() * 2);
        let mut valid = Vec::with_capacity(col.len());
        for i in 0..col.len() {
            match col.shape(i)? {
                Some(s) => {
                    let (ra, dec) = s.centroid().to_radec();
                    values.extend([ra, dec]);
                    valid.push(true);
                }
                None => {
                    values.extend([f64::NAN, f64::NAN]);
                    valid.push(false);
                }
            }
        }
        Ok(ColumnarValue::Array(fixed_geometry_array(
            values,
            2,
            Some(NullBuffer::from(valid)),
        )))
    }
}
