//! CONTAINS(a, b) and INTERSECTS(a, b): 1 when the geometry a lies inside b (shares a point with b), else 0; NULL
//! when either is NULL. A constant second argument is prepared once per batch, not once per row.

use std::f64::consts::FRAC_PI_2;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Array};
use arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::geometry::sphere::{Shape, Vec3, cos_dec};
use crate::geometry::values::{GeomColumn, GeomKind, f64_array, to_arrays, union_nulls};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Relation {
    Contains,
    Intersects,
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Relate {
    relation: Relation,
    signature: Signature,
}

impl Relate {
    pub fn new(relation: Relation) -> Self {
        Self {
            relation,
            signature: Signature::any(2, Volatility::Immutable),
        }
    }

    fn holds(&self, a: &Shape, b: &Shape) -> bool {
        match self.relation {
            Relation::Contains => b.contains(a),
            Relation::Intersects => a.intersects(b),
        }
    }
}

fn scalar_shape(v: &ScalarValue, what: &str) -> Result<Option<Shape>> {
    let col = GeomColumn::new(v.to_array()?, what)?;
    col.shape(0)
}

impl ScalarUDFImpl for Relate {
    fn name(&self) -> &str {
        match self.relation {
            Relation::Contains => "adql_contains",
            Relation::Intersects => "adql_intersects",
        }
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int32)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let fname = if self.relation == Relation::Contains {
            "CONTAINS"
        } else {
            "INTERSECTS"
        };
        let first = format!("the first argument of {fname}");
        let second = format!("the second argument of {fname}");
        // The usual case: a column of positions against one constant shape.
        if let (ColumnarValue::Array(a), ColumnarValue::Scalar(b)) = (&args.args[0], &args.args[1])
        {
            let Some(shape) = scalar_shape(b, &second)? else {
                return Ok(ColumnarValue::Scalar(ScalarValue::Int32(None)));
            };
            let col = GeomColumn::new(a.clone(), &first)?;
            let mut out = Vec::with_capacity(n);
            if col.kind() == GeomKind::Point {
                for i in 0..col.len() {
                    out.push(col.coords(i).map(|c| {
                        let p = Shape::Point(Vec3::from_radec(c[0], c[1]));
                        self.holds(&p, &shape) as i32
                    }));
                }
            } else {
                for i in 0..col.len() {
                    out.push(col.shape(i)?.map(|s| self.holds(&s, &shape) as i32));
                }
            }
            return Ok(ColumnarValue::Array(Arc::new(Int32Array::from(out))));
        }
        let arrays = to_arrays(&args.args, n)?;
        let (a, b) = (
            GeomColumn::new(arrays[0].clone(), &first)?,
            GeomColumn::new(arrays[1].clone(), &second)?,
        );
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            out.push(match (a.shape(i)?, b.shape(i)?) {
                (Some(x), Some(y)) => Some(self.holds(&x, &y) as i32),
                _ => None,
            });
        }
        Ok(ColumnarValue::Array(Arc::new(Int32Array::from(out))))
    }
}

/// CONTAINS(POINT(ra, dec), CIRCLE(cra, cdec, r)) fused into one kernel over plain coordinate columns: the cone
/// search, the most common ADQL query. Rows outside the declination band are rejected without trigonometry.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ContainsPointCircle {
    signature: Signature,
}

impl ContainsPointCircle {
    pub fn new() -> Self {
        Self {
            signature: Signature::uniform(5, vec![DataType::Float64], Volatility::Immutable),
        }
    }
}

impl Default for ContainsPointCircle {
    fn default() -> Self {
        Self::new()
    }
}

/// Haversine of the separation of (ra, dec) from a centre, all in radians, with the centre's cosine precomputed.
/// At a pole the cosine is exactly 0, so both poles lie exactly 90 degrees from any point of the equator.
#[inline]
fn hav_sep(ra: f64, dec: f64, cra: f64, cdec: f64, cos_cdec: f64) -> f64 {
    let sd = ((dec - cdec) * 0.5).sin();
    let sr = ((ra - cra) * 0.5).sin();
    let cos_dec = if dec.abs() == FRAC_PI_2 {
        0.0
    } else {
        dec.cos()
    };
    sd * sd + cos_dec * cos_cdec * sr * sr
}

/// The cone test over whole columns with a constant circle: 1 inside, 0 outside.
pub fn cone_kernel(ra: &[f64], dec: &[f64], cra: f64, cdec: f64, radius: f64, out: &mut Vec<i32>) {
    let (cra_r, cdec_r, r_r) = (cra.to_radians(), cdec.to_radians(), radius.to_radians());
    let cos_cdec = cos_dec(cdec);
    let hav_r = (r_r * 0.5).sin().powi(2);
    let band = radius;
    for (&a, &d) in ra.iter().zip(dec) {
        let inside = if (d - cdec).abs() > band {
            false
        } else {
            hav_sep(a.to_radians(), d.to_radians(), cra_r, cdec_r, cos_cdec) <= hav_r
        };
        out.push(inside as i32);
    }
}

impl ScalarUDFImpl for ContainsPointCircle {
    fn name(&self) -> &str {
        "adql_contains_point_circle"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int32)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let circle_const: Option<[f64; 3]> = match (&args.args[2], &args.args[3], &args.args[4]) {
            (
                ColumnarValue::Scalar(ScalarValue::Float64(a)),
                ColumnarValue::Scalar(ScalarValue::Float64(b)),
                ColumnarValue::Scalar(ScalarValue::Float64(c)),
            ) => match (a, b, c) {
                (Some(a), Some(b), Some(c)) => Some([*a, *b, *c]),
                _ => return Ok(ColumnarValue::Scalar(ScalarValue::Int32(None))),
            },
            _ => None,
        };
        let arrays: Vec<ArrayRef> = to_arrays(&args.args[..2], n)?;
        let (ra, dec) = (f64_array(&arrays[0]), f64_array(&arrays[1]));
        let mut out = Vec::with_capacity(n);
        if let Some([cra, cdec, r]) = circle_const {
            cone_kernel(ra.values(), dec.values(), cra, cdec, r, &mut out);
            let nulls = union_nulls(&[ra, dec]);
            return Ok(ColumnarValue::Array(Arc::new(Int32Array::new(
                out.into(),
                nulls,
            ))));
        }
        let rest = to_arrays(&args.args[2..], n)?;
        let (cra, cdec, r) = (
            f64_array(&rest[0]),
            f64_array(&rest[1]),
            f64_array(&rest[2]),
        );
        for i in 0..n {
            let (c_ra, c_dec) = (cra.value(i).to_radians(), cdec.value(i).to_radians());
            let hav_r = (r.value(i).to_radians() * 0.5).sin().powi(2);
            let h = hav_sep(
                ra.value(i).to_radians(),
                dec.value(i).to_radians(),
                c_ra,
                c_dec,
                cos_dec(cdec.value(i)),
            );
            out.push((h <= hav_r) as i32);
        }
        let nulls = union_nulls(&[ra, dec, cra, cdec, r]);
        Ok(ColumnarValue::Array(Arc::new(Int32Array::new(
            out.into(),
            nulls,
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::sphere::distance_deg;

    #[test]
    fn cone_kernel_agrees_with_distance() {
        let mut ra = Vec::new();
        let mut dec = Vec::new();
        let mut s = 12345u64;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64
        };
        for _ in 0..20000 {
            ra.push(next() * 360.0);
            dec.push((next() * 2.0 - 1.0).asin().to_degrees());
        }
        for &(cra, cdec, r) in &[
            (0.0, 0.0, 10.0),
            (359.9, 89.5, 5.0),
            (180.0, -90.0, 20.0),
            (0.05, 1.0, 30.0),
        ] {
            let mut out = Vec::new();
            cone_kernel(&ra, &dec, cra, cdec, r, &mut out);
            for i in 0..ra.len() {
                let d = distance_deg(ra[i], dec[i], cra, cdec);
                if (d - r).abs() > 1e-9 {
                    assert_eq!(
                        out[i] == 1,
                        d <= r,
                        "row {i}: ({}, {}) vs circle ({cra}, {cdec}, {r})",
                        ra[i],
                        dec[i]
                    );
                }
            }
        }
    }
}
