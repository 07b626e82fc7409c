//! COORD1(point), COORD2(point): the longitude and latitude of a point in degrees; COORDSYS(geometry): its
//! coordinate system, which is always ICRS in skyshard.

use std::sync::Arc;

use arrow::array::{Float64Array, StringArray};
use arrow::datatypes::DataType;
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::geometry::values::{GeomColumn, GeomKind};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Coord {
    axis: u8,
    signature: Signature,
}

impl Coord {
    pub fn new(axis: u8) -> Self {
        Self {
            axis,
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for Coord {
    fn name(&self) -> &str {
        if self.axis == 1 {
            "adql_coord1"
        } else {
            "adql_coord2"
        }
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let what = format!("the argument of COORD{}", self.axis);
        let col = GeomColumn::new(args.args[0].to_array(args.number_rows)?, &what)?;
        if col.kind() == GeomKind::Polygon {
            return exec_err!("{what} must be a point, found a polygon");
        }
        let k = (self.axis - 1) as usize;
        let out: Vec<Option<f64>> = (0..col.len())
            .map(|i| col.coords(i).map(|c| c[k]))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(Float64Array::from(out))))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CoordSys {
    signature: Signature,
}

impl CoordSys {
    pub fn new() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl Default for CoordSys {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for CoordSys {
    fn name(&self) -> &str {
        "adql_coordsys"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let col = GeomColumn::new(
            args.args[0].to_array(args.number_rows)?,
            "the argument of COORDSYS",
        )?;
        let out: Vec<Option<&str>> = (0..col.len())
            .map(|i| col.coords(i).map(|_| "ICRS"))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(StringArray::from(out))))
    }
}
