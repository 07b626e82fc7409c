//! Branch-free sine and arcsine for the per-row kernels: Horner-form Taylor series with their exact coefficients,
//! which the compiler vectorizes (libm calls do not). Accurate to a few units in the last place of the absolute
//! value on the ranges the kernels use; the tests compare them with libm.

use std::f64::consts::{FRAC_PI_2, PI};

/// Coefficients of sin(y) = y * sum_k S[k] * y^(2k): (-1)^k / (2k+1)!.
const SIN: [f64; 13] = {
    let mut c = [0.0; 13];
    let mut k = 0;
    let mut fact = 1.0; // (2k+1)!
    while k < 13 {
        c[k] = if k % 2 == 0 { 1.0 / fact } else { -1.0 / fact };
        fact *= ((2 * k + 2) * (2 * k + 3)) as f64;
        k += 1;
    }
    c
};

/// Coefficients of asin(x) = x * sum_k A[k] * x^(2k): (2k)! / (4^k (k!)^2 (2k+1)).
const ASIN: [f64; 28] = {
    let mut c = [0.0; 28];
    let mut k = 0;
    let mut central = 1.0; // (2k)! / (4^k (k!)^2)
    while k < 28 {
        c[k] = central / (2 * k + 1) as f64;
        central *= ((2 * k + 1) as f64) / ((2 * k + 2) as f64);
        k += 1;
    }
    c
};

#[inline(always)]
fn horner<const N: usize>(c: &[f64; N], y2: f64) -> f64 {
    let mut acc = c[N - 1];
    let mut i = N - 1;
    while i > 0 {
        i -= 1;
        acc = acc * y2 + c[i];
    }
    acc
}

/// sin(x) for x in [-pi, pi].
#[inline(always)]
pub fn sin_pi(x: f64) -> f64 {
    let y = if x > FRAC_PI_2 {
        PI - x
    } else if x < -FRAC_PI_2 {
        -PI - x
    } else {
        x
    };
    y * horner(&SIN, y * y)
}

/// cos(x) for x in [-pi/2, pi/2], exactly 0 at +-pi/2.
#[inline(always)]
pub fn cos_half_pi(x: f64) -> f64 {
    let y = FRAC_PI_2 - x.abs();
    y * horner(&SIN, y * y)
}

/// asin(x) for x in [0, 1].
#[inline(always)]
pub fn asin_unit(x: f64) -> f64 {
    let high = x > 0.5;
    let t = if high { ((1.0 - x) * 0.5).sqrt() } else { x };
    let p = t * horner(&ASIN, t * t);
    if high { FRAC_PI_2 - 2.0 * p } else { p }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agree_with_libm() {
        let n = 200_000;
        let mut worst = (0.0f64, 0.0f64, 0.0f64);
        for i in 0..=n {
            let u = i as f64 / n as f64;
            let x = -PI + 2.0 * PI * u;
            worst.0 = worst.0.max((sin_pi(x) - x.sin()).abs());
            let h = -FRAC_PI_2 + PI * u;
            worst.1 = worst.1.max((cos_half_pi(h) - h.cos()).abs());
            worst.2 = worst.2.max((asin_unit(u) - u.asin()).abs());
        }
        assert!(
            worst.0 < 4e-16 && worst.1 < 4e-16 && worst.2 < 1e-15,
            "{worst:?}"
        );
        assert_eq!(cos_half_pi(FRAC_PI_2), 0.0);
        assert_eq!(sin_pi(0.0), 0.0);
        assert!((asin_unit(1.0) - FRAC_PI_2).abs() < 1e-15);
        // Tiny arguments keep their relative precision.
        assert!((sin_pi(1e-12) - 1e-12).abs() < 1e-28);
        assert!((asin_unit(1e-12) - 1e-12).abs() < 1e-28);
    }
}
