//! AREA(geometry): the area in square degrees (0 for a point).

use std::sync::Arc;

use arrow::array::Float64Array;
use arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::geometry::values::GeomColumn;

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Area {
    signature: Signature,
}

impl Area {
    pub fn new() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl Default for Area {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for Area {
    fn name(&self) -> &str {
        "adql_area"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let col = GeomColumn::new(
            args.args[0].to_array(args.number_rows)?,
            "the argument of AREA",
        )?;
        let out = (0..col.len())
            .map(|i| Ok(col.shape(i)?.map(|s| s.area_sq_deg())))
            .collect::<Result<Vec<_>>>()?;
        Ok(ColumnarValue::Array(Arc::new(Float64Array::from(out))))
    }
}
