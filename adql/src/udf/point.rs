//! POINT(ra, dec): a position, as a DALI point value.

use arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::geometry::values::{
    f64_array, fixed_geometry_array, point_type, to_arrays, union_nulls,
};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PointFn {
    signature: Signature,
}

impl PointFn {
    pub fn new() -> Self {
        Self {
            signature: Signature::uniform(2, vec![DataType::Float64], Volatility::Immutable),
        }
    }
}

impl Default for PointFn {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for PointFn {
    fn name(&self) -> &str {
        "adql_point"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(point_type())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = to_arrays(&args.args, args.number_rows)?;
        let (ra, dec) = (f64_array(&arrays[0]), f64_array(&arrays[1]));
        let mut values = Vec::with_capacity(ra.len() * 2);
        for (r, d) in ra.values().iter().zip(dec.values()) {
            values.push(*r);
            values.push(*d);
        }
        Ok(ColumnarValue::Array(fixed_geometry_array(
            values,
            2,
            union_nulls(&[ra, dec]),
        )))
    }
}
