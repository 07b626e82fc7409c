//! DISTANCE(ra1, dec1, ra2, dec2) in degrees along the great circle (haversine form, exact for small angles). The
//! translator turns DISTANCE(point, point) into this four-argument form.

use std::sync::Arc;

use arrow::array::Float64Array;
use arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use std::f64::consts::PI;

use crate::geometry::fastmath::{asin_unit, cos_half_pi, sin_pi};
use crate::geometry::sphere::{cos_dec, distance_deg};
use crate::geometry::values::{f64_array, to_arrays, union_nulls};

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Distance {
    signature: Signature,
}

impl Distance {
    pub fn new() -> Self {
        Self {
            signature: Signature::uniform(4, vec![DataType::Float64], Volatility::Immutable),
        }
    }
}

impl Default for Distance {
    fn default() -> Self {
        Self::new()
    }
}

/// Distances from each (ra, dec) to one fixed position, all in degrees: the haversine form with the vectorizable
/// sine and arcsine of `geometry::fastmath`.
pub fn distance_kernel(ra: &[f64], dec: &[f64], ra0: f64, dec0: f64, out: &mut Vec<f64>) {
    let start = out.len();
    out.resize(start + ra.len().min(dec.len()), 0.0);
    let out = &mut out[start..];
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has just been checked for the features the function is compiled with.
        unsafe { distance_loop_avx2(ra, dec, ra0, dec0, out) };
        return;
    }
    distance_loop(ra, dec, ra0, dec0, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn distance_loop_avx2(ra: &[f64], dec: &[f64], ra0: f64, dec0: f64, out: &mut [f64]) {
    distance_loop(ra, dec, ra0, dec0, out)
}

#[inline(always)]
fn distance_loop(ra: &[f64], dec: &[f64], ra0: f64, dec0: f64, out: &mut [f64]) {
    let cos_dec0 = cos_dec(dec0);
    let (ra0, dec0) = (ra0.to_radians(), dec0.to_radians());
    for ((o, &a), &d) in out.iter_mut().zip(ra).zip(dec) {
        let d = d.to_radians();
        let sd = sin_pi((d - dec0) * 0.5);
        // Half the RA difference, brought into [-pi, pi].
        let mut half = (a.to_radians() - ra0) * 0.5;
        half -= if half > PI { 2.0 * PI } else { 0.0 };
        half += if half < -PI { 2.0 * PI } else { 0.0 };
        let sr = sin_pi(half);
        let h = (sd * sd + cos_half_pi(d) * cos_dec0 * sr * sr).clamp(0.0, 1.0);
        *o = (2.0 * asin_unit(h.sqrt())).to_degrees();
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
            (
                ColumnarValue::Scalar(ScalarValue::Float64(a)),
                ColumnarValue::Scalar(ScalarValue::Float64(b)),
            ) => match (a, b) {
                (Some(a), Some(b)) => Some((*a, *b)),
                _ => return Ok(ColumnarValue::Scalar(ScalarValue::Float64(None))),
            },
            _ => None,
        };
        let mut out = Vec::with_capacity(n);
        if let Some((ra0, dec0)) = fixed {
            let arrays = to_arrays(&args.args[..2], n)?;
            let (ra, dec) = (f64_array(&arrays[0]), f64_array(&arrays[1]));
            distance_kernel(ra.values(), dec.values(), ra0, dec0, &mut out);
            return Ok(ColumnarValue::Array(Arc::new(Float64Array::new(
                out.into(),
                union_nulls(&[ra, dec]),
            ))));
        }
        let arrays = to_arrays(&args.args, n)?;
        let c: Vec<_> = arrays.iter().map(f64_array).collect();
        for i in 0..n {
            out.push(distance_deg(
                c[0].value(i),
                c[1].value(i),
                c[2].value(i),
                c[3].value(i),
            ));
        }
        let nulls = union_nulls(&[c[0], c[1], c[2], c[3]]);
        Ok(ColumnarValue::Array(Arc::new(Float64Array::new(
            out.into(),
            nulls,
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_agrees_with_libm_distance_everywhere() {
        let mut s = 7u64;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut ra = vec![0.0, 359.9999999, 180.0, 10.0, 10.0];
        let mut dec = vec![90.0, 0.0, -90.0, 20.0, 20.0 + 1e-9];
        for _ in 0..100_000 {
            ra.push(next() * 360.0);
            dec.push((next() * 2.0 - 1.0).asin().to_degrees());
        }
        for &(ra0, dec0) in &[
            (0.0, 0.0),
            (10.0, 20.0),
            (359.5, -89.9),
            (180.0, 90.0),
            (0.0, -90.0),
        ] {
            let mut out = Vec::new();
            distance_kernel(&ra, &dec, ra0, dec0, &mut out);
            for i in 0..ra.len() {
                let reference = distance_deg(ra[i], dec[i], ra0, dec0);
                // Near antipodes the haversine is ill-conditioned for any implementation.
                let tolerance = if reference < 179.0 { 1e-11 } else { 1e-9 };
                assert!(
                    (out[i] - reference).abs() < tolerance,
                    "({}, {}) to ({ra0}, {dec0}): {} vs {reference}",
                    ra[i],
                    dec[i],
                    out[i]
                );
            }
        }
    }
}
