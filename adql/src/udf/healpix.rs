//! ivo_healpix_index(depth, ra, dec) and ivo_healpix_center(depth, index): the nested HEALPix scheme (Gorski et al.
//! 2005) through CDS's cdshealpix, as the IVOA UDF catalogue defines them.

use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::geometry::values::{
    f64_array, fixed_geometry_array, point_type, to_arrays, union_nulls,
};

/// The deepest depth cdshealpix supports.
const MAX_DEPTH: i64 = 29;

fn check_depth(d: i64) -> Result<u8> {
    if !(0..=MAX_DEPTH).contains(&d) {
        return exec_err!("a HEALPix depth must be between 0 and {MAX_DEPTH}, found {d}");
    }
    Ok(d as u8)
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct HealpixIndex {
    signature: Signature,
}

impl HealpixIndex {
    pub fn new() -> Self {
        Self {
            signature: Signature::exact(
                vec![DataType::Int64, DataType::Float64, DataType::Float64],
                Volatility::Immutable,
            ),
        }
    }
}

impl Default for HealpixIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for HealpixIndex {
    fn name(&self) -> &str {
        "ivo_healpix_index"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, _arg_types: &[DataType]) -> Result<Vec<DataType>> {
        Ok(vec![DataType::Int64, DataType::Float64, DataType::Float64])
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = to_arrays(&args.args, args.number_rows)?;
        let depth = arrays[0].as_primitive::<Int64Type>();
        let (ra, dec) = (f64_array(&arrays[1]), f64_array(&arrays[2]));
        let mut out = Vec::with_capacity(ra.len());
        for i in 0..ra.len() {
            if depth.is_null(i) || ra.is_null(i) || dec.is_null(i) {
                out.push(0);
                continue;
            }
            let d = check_depth(depth.value(i))?;
            let (lon, lat) = (ra.value(i).to_radians(), dec.value(i).to_radians());
            if !(-90.0..=90.0).contains(&dec.value(i)) || !lon.is_finite() {
                return exec_err!(
                    "ivo_healpix_index: ({}, {}) is not a position on the sky",
                    ra.value(i),
                    dec.value(i)
                );
            }
            out.push(cdshealpix::nested::hash(d, lon, lat) as i64);
        }
        let nulls = union_nulls(&[depth, ra, dec]);
        Ok(ColumnarValue::Array(Arc::new(Int64Array::new(
            out.into(),
            nulls,
        ))))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct HealpixCenter {
    signature: Signature,
}

impl HealpixCenter {
    pub fn new() -> Self {
        Self {
            signature: Signature::exact(
                vec![DataType::Int64, DataType::Int64],
                Volatility::Immutable,
            ),
        }
    }
}

impl Default for HealpixCenter {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for HealpixCenter {
    fn name(&self) -> &str {
        "ivo_healpix_center"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, _arg_types: &[DataType]) -> Result<Vec<DataType>> {
        Ok(vec![DataType::Int64, DataType::Int64])
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(point_type())
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = to_arrays(&args.args, args.number_rows)?;
        let (depth, index) = (
            arrays[0].as_primitive::<Int64Type>(),
            arrays[1].as_primitive::<Int64Type>(),
        );
        let mut values = Vec::with_capacity(depth.len() * 2);
        for i in 0..depth.len() {
            if depth.is_null(i) || index.is_null(i) {
                values.extend([f64::NAN, f64::NAN]);
                continue;
            }
            let d = check_depth(depth.value(i))?;
            let h = index.value(i);
            let ncells = 12i64 << (2 * d as i64);
            if !(0..ncells).contains(&h) {
                return exec_err!(
                    "ivo_healpix_center: index {h} is not a cell of depth {d} (0 to {})",
                    ncells - 1
                );
            }
            let (lon, lat) = cdshealpix::nested::center(d, h as u64);
            values.extend([lon.to_degrees(), lat.to_degrees()]);
        }
        let nulls: Option<NullBuffer> = union_nulls(&[depth, index]);
        Ok(ColumnarValue::Array(fixed_geometry_array(values, 2, nulls)))
    }
}
