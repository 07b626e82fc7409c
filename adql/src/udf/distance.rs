//! DISTANCE(ra1, dec1, ra2, dec2) in degrees along the great circle (haversine form, exact for small angles). The
//! translator turns DISTANCE(point, point) into this four-argument form.

use std::sync::Arc;

use arrow::array::Float64Array;
use arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};

use crate::geometry::sphere::{cos_dec, distance_deg};
use crate::geometry::values::{f64_array, to_arrays, union_nulls};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Distance {
    signature: Signature,
}

impl Distance {
    pub fn new() -> Self {
        Self { signature: Signature::uniform(4, vec![DataType::Float64], Volatility::Immutable) }
    }
}

impl Default for Distance {
    fn default() -> Self {
        Self::new()
    }
}

/// Distances from each (ra, dec) to one fixed position, all in degrees.
pub fn distance_kernel(ra: &[f64], dec: &[f64], ra0: f64, dec0: f64, out: &mut Vec<f64>) {
    let cos_dec0 = cos_dec(dec0);
    let (ra0, dec0) = (ra0.to_radians(), dec0.to_radians());
    for (&a, &d) in ra.iter().zip(dec) {
        let cd = cos_dec(d);
        let d = d.to_radians();
        let sd = ((d - dec0) * 0.5).sin();
        let sr = ((a.to_radians() - ra0) * 0.5).sin();
        let h = (sd * sd + cd * cos_dec0 * sr * sr).clamp(0.0, 1.0);
        out.push((2.0 * h.sqrt().asin()).to_degrees());
    }
}

impl ScalarUDFImpl for Distance {
    fn name(&self) -> &str {
        "adql_distance"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let fixed = match (&args.args[2], &args.args[3]) {
            (ColumnarValue::Scalar(ScalarValue::Float64(a)), ColumnarValue::Scalar(ScalarValue::Float64(b))) => {
                match (a, b) {
                    (Some(a), Some(b)) => Some((*a, *b)),
                    _ => return Ok(ColumnarValue::Scalar(ScalarValue::Float64(None))),
                }
            }
            _ => None,
        };
        let mut out = Vec::with_capacity(n);
        if let Some((ra0, dec0)) = fixed {
            let arrays = to_arrays(&args.args[..2], n)?;
            let (ra, dec) = (f64_array(&arrays[0]), f64_array(&arrays[1]));
            distance_kernel(ra.values(), dec.values(), ra0, dec0, &mut out);
            return Ok(ColumnarValue::Array(Arc::new(Float64Array::new(out.into(), union_nulls(&[ra, dec])))));
        }
        let arrays = to_arrays(&args.args, n)?;
        let c: Vec<_> = arrays.iter().map(f64_array).collect();
        for i in 0..n {
            out.push(distance_deg(c[0].value(i), c[1].value(i), c[2].value(i), c[3].value(i)));
        }
        let nulls = union_nulls(&[c[0], c[1], c[2], c[3]]);
        Ok(ColumnarValue::Array(Arc::new(Float64Array::new(out.into(), nulls))))
    }
}
