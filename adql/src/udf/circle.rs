//! CIRCLE(ra, dec, radius): a spherical cap, as a DALI circle value (degrees).

use arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::geometry::values::{
    circle_type, f64_array, fixed_geometry_array, to_arrays, union_nulls,
};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CircleFn {
    signature: Signature,
}

impl CircleFn {
    pub fn new() -> Self {
        Self {
            signature: Signature::uniform(3, vec![DataType::Float64], Volatility::Immutable),
        }
    }
}

impl Default for CircleFn {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for CircleFn {
    fn name(&self) -> &str {
        "adql_circle"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(circle_type())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = to_arrays(&args.args, args.number_rows)?;
        let (ra, dec, r) = (
            f64_array(&arrays[0]),
            f64_array(&arrays[1]),
            f64_array(&arrays[2]),
        );
        let mut values = Vec::with_capacity(ra.len() * 3);
        for i in 0..ra.len() {
            values.extend_from_slice(&[ra.value(i), dec.value(i), r.value(i)]);
        }
        Ok(ColumnarValue::Array(fixed_geometry_array(
            values,
            3,
            union_nulls(&[ra, dec, r]),
        )))
    }
}
