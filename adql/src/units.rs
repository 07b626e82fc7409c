//! Units for IN_UNIT (ADQL 2.1 section 2.3.4): a subset of IVOA VOUnits 1.0 large enough for catalog columns
//! (angles, times, lengths, masses, fluxes, with prefixes, products, quotients and powers), reduced to a scale factor
//! and a dimension vector so that conversions between compatible units are exact multiplications.

use std::collections::BTreeMap;

/// A unit as a factor times a product of base units raised to integer powers.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    pub factor: f64,
    pub dims: BTreeMap<&'static str, i32>,
}

impl Unit {
    fn base(name: &'static str, factor: f64) -> Unit {
        let mut dims = BTreeMap::new();
        if !name.is_empty() {
            dims.insert(name, 1);
        }
        Unit { factor, dims }
    }

    pub fn dimensionless() -> Unit {
        Unit {
            factor: 1.0,
            dims: BTreeMap::new(),
        }
    }

    pub fn mul(&self, o: &Unit) -> Unit {
        let mut dims = self.dims.clone();
        for (k, v) in &o.dims {
            *dims.entry(k).or_insert(0) += v;
        }
        dims.retain(|_, v| *v != 0);
        Unit {
            factor: self.factor * o.factor,
            dims,
        }
    }

    pub fn powi(&self, p: i32) -> Unit {
        let dims = self
            .dims
            .iter()
            .map(|(k, v)| (*k, v * p))
            .filter(|(_, v)| *v != 0)
            .collect();
        Unit {
            factor: self.factor.powi(p),
            dims,
        }
    }

    /// The square root, when every exponent is even.
    pub fn sqrt(&self) -> Option<Unit> {
        if self.dims.values().any(|v| v % 2 != 0) {
            return None;
        }
        Some(Unit {
            factor: self.factor.sqrt(),
            dims: self.dims.iter().map(|(k, v)| (*k, v / 2)).collect(),
        })
    }

    /// The factor that converts a value in `self` into `to`, when the two measure the same thing.
    pub fn conversion_to(&self, to: &Unit) -> Option<f64> {
        if self.dims == to.dims {
            Some(self.factor / to.factor)
        } else {
            None
        }
    }
}

/// Known unit symbols: name, base dimension, factor to the base.
fn symbol(s: &str) -> Option<Unit> {
    use std::f64::consts::PI;
    let deg = PI / 180.0;
    Some(match s {
        "rad" => Unit::base("rad", 1.0),
        "deg" => Unit::base("rad", deg),
        "arcmin" => Unit::base("rad", deg / 60.0),
        "arcsec" => Unit::base("rad", deg / 3600.0),
        "mas" => Unit::base("rad", deg / 3.6e6),
        "uas" => Unit::base("rad", deg / 3.6e9),
        "h" => Unit::base("s", 3600.0),
        "min" => Unit::base("s", 60.0),
        "s" => Unit::base("s", 1.0),
        "d" => Unit::base("s", 86400.0),
        "a" | "yr" => Unit::base("s", 365.25 * 86400.0),
        "m" => Unit::base("m", 1.0),
        "AU" | "au" => Unit::base("m", 1.495978707e11),
        "pc" => Unit::base("m", 3.0856775814913673e16),
        "lyr" => Unit::base("m", 9.4607304725808e15),
        "Angstrom" | "angstrom" => Unit::base("m", 1e-10),
        "g" => Unit::base("kg", 1e-3),
        "solMass" => Unit::base("kg", 1.98847e30),
        "Jy" => Unit::base("Jy", 1.0),
        "Hz" => Unit::base("s", 1.0).powi(-1),
        "K" => Unit::base("K", 1.0),
        "mag" => Unit::base("mag", 1.0),
        "ct" | "count" => Unit::base("ct", 1.0),
        "" => Unit::dimensionless(),
        _ => return None,
    })
}

const PREFIXES: &[(&str, f64)] = &[
    ("da", 1e1),
    ("y", 1e-24),
    ("z", 1e-21),
    ("a", 1e-18),
    ("f", 1e-15),
    ("p", 1e-12),
    ("n", 1e-9),
    ("u", 1e-6),
    ("m", 1e-3),
    ("c", 1e-2),
    ("d", 1e-1),
    ("h", 1e2),
    ("k", 1e3),
    ("M", 1e6),
    ("G", 1e9),
    ("T", 1e12),
    ("P", 1e15),
];

fn prefixed(s: &str) -> Option<Unit> {
    if let Some(u) = symbol(s) {
        return Some(u);
    }
    for (p, f) in PREFIXES {
        if let Some(rest) = s.strip_prefix(p)
            && !rest.is_empty()
            && let Some(u) = symbol(rest)
        {
            // Prefixes do not apply to the angle units below the degree, nor to year-like aliases.
            if matches!(rest, "deg" | "arcmin" | "min" | "h" | "d") {
                continue;
            }
            return Some(Unit {
                factor: u.factor * f,
                dims: u.dims,
            });
        }
    }
    None
}

/// One factor: `sym`, `sym2`, `sym**2`, `sym^2`, `sym^-1`, `sym**(-1)`.
fn factor(s: &str) -> Option<Unit> {
    let s = s.trim();
    let (base, pow) = if let Some((b, p)) = s.split_once("**").or_else(|| s.split_once('^')) {
        (
            b,
            p.trim_matches(|c| c == '(' || c == ')')
                .parse::<i32>()
                .ok()?,
        )
    } else {
        let digits = s.trim_start_matches(|c: char| !(c.is_ascii_digit() || c == '-'));
        let cut = s.len() - digits.len();
        if cut > 0 && !digits.is_empty() && digits.parse::<i32>().is_ok() {
            (&s[..cut], digits.parse::<i32>().ok()?)
        } else {
            (s, 1)
        }
    };
    prefixed(base).map(|u| u.powi(pow))
}

/// Parses a unit string such as `mas/yr`, `km.s-1`, `deg**2`, `erg/s/cm2`.
pub fn parse_unit(s: &str) -> Option<Unit> {
    let s = s.trim().replace("**", "^");
    let s = s.as_str();
    if s.is_empty() {
        return Some(Unit::dimensionless());
    }
    let mut result = Unit::dimensionless();
    for (i, part) in s.split('/').enumerate() {
        let mut u = Unit::dimensionless();
        for f in part.split(['.', ' ', '*']).filter(|p| !p.is_empty()) {
            u = u.mul(&factor(f)?);
        }
        result = if i == 0 { u } else { result.mul(&u.powi(-1)) };
    }
    Some(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(a: &str, b: &str) -> f64 {
        let (ua, ub) = (
            parse_unit(a).unwrap_or_else(|| panic!("{a}")),
            parse_unit(b).unwrap_or_else(|| panic!("{b}")),
        );
        ua.conversion_to(&ub)
            .unwrap_or_else(|| panic!("{a} -> {b}"))
    }

    #[test]
    fn conversions() {
        assert!((conv("deg", "rad") - std::f64::consts::PI / 180.0).abs() < 1e-15);
        assert!((conv("deg", "arcsec") - 3600.0).abs() < 1e-9);
        assert!((conv("mas/yr", "arcsec/a") - 1e-3).abs() < 1e-15);
        assert!((conv("km/s", "m.s-1") - 1000.0).abs() < 1e-9);
        assert!((conv("kpc", "pc") - 1000.0).abs() < 1e-9);
        assert!((conv("deg**2", "arcmin2") - 3600.0).abs() < 1e-6);
        assert!((conv("mJy", "Jy") - 1e-3).abs() < 1e-18);
    }

    #[test]
    fn incompatible_units_do_not_convert() {
        assert!(
            parse_unit("deg")
                .unwrap()
                .conversion_to(&parse_unit("s").unwrap())
                .is_none()
        );
        assert!(parse_unit("furlong").is_none());
    }
}
