//! Synthetic images of a generated sky (`skyshard gen --images N`): FITS files with a TAN WCS, a band and an epoch,
//! the catalog's objects drawn in as Gaussian stars on a noisy background, so a cutout around an object shows it.

use std::io::Write;
use std::path::Path;

use crate::fits::{self, CARD};
use crate::sky;

/// One synthetic image.
#[derive(Debug, Clone)]
pub struct Exposure {
    pub ra: f64,
    pub dec: f64,
    /// Pixels a side.
    pub size: u64,
    /// Degrees a pixel.
    pub scale: f64,
    /// `u g r i z y`.
    pub band: char,
    pub mjd: f64,
    pub exptime: f64,
    pub seed: u64,
}

/// A small, fast, reproducible generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A standard normal deviate (Box-Muller).
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform().max(1e-300), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// Writes `e` to `path` with the `stars` (ra, dec, magnitude) that fall on it; returns how many were drawn.
pub fn write(path: &Path, e: &Exposure, name: &str, stars: &[(f64, f64, f64)]) -> std::io::Result<usize> {
    let n = e.size as usize;
    let mut rng = Rng(e.seed);
    let mut pixels: Vec<f32> = (0..n * n).map(|_| (100.0 + 5.0 * rng.normal()) as f32).collect();
    // The tangent plane about the centre: standard coordinates (xi east, eta north) in degrees, pixel x grows west
    // (east to the left, as the sky is seen), y north.
    let c = sky::unit(e.ra, e.dec);
    let east = [-e.ra.to_radians().sin(), e.ra.to_radians().cos(), 0.0];
    let north = [
        c[1] * east[2] - c[2] * east[1],
        c[2] * east[0] - c[0] * east[2],
        c[0] * east[1] - c[1] * east[0],
    ];
    let crpix = (n as f64 + 1.0) / 2.0;
    let sigma = 1.5f64;
    let mut drawn = 0;
    for &(ra, dec, mag) in stars {
        let p = sky::unit(ra, dec);
        let d = p[0] * c[0] + p[1] * c[1] + p[2] * c[2];
        if d <= 0.0 {
            continue;
        }
        let xi = (p[0] * east[0] + p[1] * east[1] + p[2] * east[2]) / d;
        let eta = (p[0] * north[0] + p[1] * north[1] + p[2] * north[2]) / d;
        // FITS pixel coordinates (1-based): CD1_1 = -scale, CD2_2 = scale.
        let x = crpix - xi.to_degrees() / e.scale;
        let y = crpix + eta.to_degrees() / e.scale;
        if x < -5.0 || y < -5.0 || x > n as f64 + 6.0 || y > n as f64 + 6.0 {
            continue;
        }
        drawn += 1;
        // Zero point 30: a 22nd-magnitude star peaks some 20 sigma above the noise.
        let flux = 10f64.powf(-0.4 * (mag - 30.0));
        let peak = flux / (2.0 * std::f64::consts::PI * sigma * sigma);
        let (x0, y0) = (x - 1.0, y - 1.0);
        let lo = |v: f64| ((v - 5.0 * sigma).floor().max(0.0)) as usize;
        let hi = |v: f64| ((v + 5.0 * sigma).ceil().max(0.0) as usize).min(n - 1);
        for j in lo(y0)..=hi(y0) {
            for i in lo(x0)..=hi(x0) {
                let r2 = (i as f64 - x0).powi(2) + (j as f64 - y0).powi(2);
                pixels[j * n + i] += (peak * (-r2 / (2.0 * sigma * sigma)).exp()) as f32;
            }
        }
    }
    let text = |v: &str| format!("'{}'", v.replace('\'', "''"));
    let cards: Vec<[u8; CARD]> = vec![
        fits::card("SIMPLE", "T"),
        fits::card("BITPIX", "-32"),
        fits::card("NAXIS", "2"),
        fits::card("NAXIS1", &n.to_string()),
        fits::card("NAXIS2", &n.to_string()),
        fits::card("CTYPE1", &text("RA---TAN")),
        fits::card("CTYPE2", &text("DEC--TAN")),
        fits::card("CRPIX1", &fits::real(crpix)),
        fits::card("CRPIX2", &fits::real(crpix)),
        fits::card("CRVAL1", &fits::real(e.ra)),
        fits::card("CRVAL2", &fits::real(e.dec)),
        fits::card("CD1_1", &fits::real(-e.scale)),
        fits::card("CD1_2", "0.0"),
        fits::card("CD2_1", "0.0"),
        fits::card("CD2_2", &fits::real(e.scale)),
        fits::card("RADESYS", &text("ICRS")),
        fits::card("FILTER", &text(&e.band.to_string())),
        fits::card("MJD-OBS", &fits::real(e.mjd)),
        fits::card("EXPTIME", &fits::real(e.exptime)),
        fits::card("OBJECT", &text(name)),
        fits::card("TELESCOP", &text("skyshard synthetic sky")),
        fits::card("INSTRUME", &text("skyshard gen")),
        fits::card("BUNIT", &text("adu")),
    ];
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    out.write_all(&fits::header_bytes(&cards))?;
    for v in &pixels {
        out.write_all(&v.to_be_bytes())?;
    }
    let data = pixels.len() * 4;
    out.write_all(&vec![0u8; data.div_ceil(fits::BLOCK) * fits::BLOCK - data])?;
    out.flush()?;
    Ok(drawn)
}

/// `count` exposures centred on `centres` in turn (cycling the bands ugrizy and a few epochs), `size` pixels of
/// `scale` degrees.
pub fn exposures(centres: &[(f64, f64)], count: usize, size: u64, scale: f64, seed: u64) -> Vec<Exposure> {
    const BANDS: [char; 6] = ['u', 'g', 'r', 'i', 'z', 'y'];
    (0..count)
        .filter_map(|k| {
            let &(ra, dec) = centres.get(k % centres.len().max(1))?;
            Some(Exposure {
                ra,
                dec,
                size,
                scale,
                band: BANDS[k % BANDS.len()],
                mjd: 60_000.0 + (k / BANDS.len()) as f64 * 3.0 + 0.1,
                exptime: 30.0,
                seed: seed.wrapping_mul(1_000_003).wrapping_add(k as u64),
            })
        })
        .collect()
}
