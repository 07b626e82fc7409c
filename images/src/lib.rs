//! Images as an archive serves them: a FITS image's celestial WCS (CDS's `wcs`: TAN, SIN and the other common
//! projections, SIP distortions), the ObsCore record that describes it (`record.rs`), and cutouts whose pixels are
//! exactly the original's (`cutout.rs`), and previews (`preview.rs`). No HTTP and no DataFusion here: the loader and the service call it.

pub mod cutout;
pub mod fits;
pub mod preview;
pub mod record;
pub mod sky;
pub mod synth;

use std::fs::File;
use std::path::{Path, PathBuf};

pub use cutout::{Cutout, Shape};
pub use record::ObsRecord;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{0}: not a readable FITS file: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("not a FITS file: {0}")]
    NotFits(String),
    #[error("the file holds no 2-D image")]
    NoImage,
    #[error("{0}")]
    Unsupported(String),
    #[error("no usable celestial WCS: {0}")]
    NoWcs(String),
    #[error("{0}")]
    BadShape(String),
}

/// An image file opened: its first image HDU and its celestial WCS.
pub struct Image {
    pub path: PathBuf,
    pub hdu: fits::ImageHdu,
    wcs: wcs::WCS,
    /// SIP distortions, applied here to the pixel coordinates (the `wcs` crate is given the projection without them).
    sip: Option<Sip>,
}

/// Simple Imaging Polynomial distortions (Shupe et al. 2005): pixel offsets from CRPIX (u, v) become u + f(u, v),
/// v + g(u, v) before the linear transform; the inverse uses AP/BP when the header has them, then refines.
#[derive(Debug, Clone)]
struct Sip {
    crpix: (f64, f64),
    a: Vec<(i32, i32, f64)>,
    b: Vec<(i32, i32, f64)>,
}

impl Sip {
    fn of(h: &fits::Header) -> Option<Sip> {
        let ctype = h.text("CTYPE1").unwrap_or_default();
        if !ctype.ends_with("-SIP") {
            return None;
        }
        let terms = |prefix: &str| {
            let order = h.i64(&format!("{prefix}_ORDER")).unwrap_or(0).clamp(0, 9) as i32;
            let mut out = Vec::new();
            for p in 0..=order {
                for q in 0..=(order - p) {
                    if let Some(c) = h.f64(&format!("{prefix}_{p}_{q}")).filter(|c| *c != 0.0) {
                        out.push((p, q, c));
                    }
                }
            }
            out
        };
        Some(Sip {
            crpix: (h.f64("CRPIX1")?, h.f64("CRPIX2")?),
            a: terms("A"),
            b: terms("B"),
        })
    }

    fn poly(terms: &[(i32, i32, f64)], u: f64, v: f64) -> f64 {
        terms.iter().map(|&(p, q, c)| c * u.powi(p) * v.powi(q)).sum()
    }

    /// Distorted pixel coordinates: what the linear transform sees.
    fn forward(&self, x: f64, y: f64) -> (f64, f64) {
        let (u, v) = (x - self.crpix.0, y - self.crpix.1);
        (
            x + Self::poly(&self.a, u, v),
            y + Self::poly(&self.b, u, v),
        )
    }

    /// The pixel whose distorted coordinates are (x', y'): fixed-point iteration (the distortions are small).
    fn inverse(&self, xd: f64, yd: f64) -> (f64, f64) {
        let (mut x, mut y) = (xd, yd);
        for _ in 0..50 {
            let (fx, fy) = self.forward(x, y);
            let (dx, dy) = (xd - fx, yd - fy);
            x += dx;
            y += dy;
            if dx.abs() < 1e-12 && dy.abs() < 1e-12 {
                break;
            }
        }
        (x, y)
    }
}

impl Image {
    /// Opens `path`: the first 2-D image (primary array or IMAGE extension) and a celestial WCS in its header that
    /// maps the image's centre and corners to finite positions.
    pub fn open(path: &Path) -> Result<Image, ImageError> {
        let io = |e| ImageError::Io(path.to_path_buf(), e);
        let mut file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let hdu = fits::first_image(&mut file, len)?;
        let wcs = celestial_wcs(&hdu)?;
        let sip = Sip::of(&hdu.header);
        let image = Image {
            path: path.to_path_buf(),
            hdu,
            wcs,
            sip,
        };
        let (w, h) = (image.hdu.naxis1 as f64, image.hdu.naxis2 as f64);
        for (x, y) in image
            .outline(4)
            .into_iter()
            .chain([((w + 1.0) / 2.0, (h + 1.0) / 2.0)])
        {
            if image.to_sky(x, y).is_none() {
                return Err(ImageError::NoWcs(format!(
                    "pixel ({x}, {y}) of the image has no position on the sky"
                )));
            }
        }
        Ok(image)
    }

    /// The sky position (ra, dec in degrees, ra in [0, 360)) of FITS pixel coordinates (1-based; a pixel's centre is
    /// at whole numbers).
    pub fn to_sky(&self, x: f64, y: f64) -> Option<(f64, f64)> {
        // The wcs crate counts pixels as FITS does, from 1.
        let (x, y) = self.sip.as_ref().map_or((x, y), |s| s.forward(x, y));
        if !(x.is_finite() && y.is_finite()) {
            return None;
        }
        // The projections assert on what they cannot take: a refusal, not a crash.
        let lonlat = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.wcs.unproj_lonlat(&wcs::ImgXY::new(x, y))
        }))
        .ok()??;
        let (ra, dec) = (lonlat.lon().to_degrees(), lonlat.lat().to_degrees());
        (ra.is_finite() && dec.is_finite()).then(|| (ra.rem_euclid(360.0), dec))
    }

    /// The FITS pixel coordinates of a sky position, if the projection reaches it.
    pub fn to_pixel(&self, ra: f64, dec: f64) -> Option<(f64, f64)> {
        if !(ra.is_finite() && dec.is_finite()) {
            return None;
        }
        let xy = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.wcs
                .proj_lonlat(&wcs::LonLat::new(ra.to_radians(), dec.to_radians()))
        }))
        .ok()??;
        let (x, y) = (xy.x(), xy.y());
        let (x, y) = self.sip.as_ref().map_or((x, y), |s| s.inverse(x, y));
        (x.is_finite() && y.is_finite()).then_some((x, y))
    }

    /// Points along the image's outer edge (the pixels' outer corners), counter-clockwise in pixel space from the
    /// first pixel's corner, `per_side` points per side.
    pub fn outline(&self, per_side: usize) -> Vec<(f64, f64)> {
        let (w, h) = (self.hdu.naxis1 as f64, self.hdu.naxis2 as f64);
        let corners = [(0.5, 0.5), (w + 0.5, 0.5), (w + 0.5, h + 0.5), (0.5, h + 0.5)];
        let mut out = Vec::with_capacity(4 * per_side);
        for i in 0..4 {
            let (a, b) = (corners[i], corners[(i + 1) % 4]);
            for k in 0..per_side {
                let t = k as f64 / per_side as f64;
                out.push((a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t));
            }
        }
        out
    }

    /// The sky position of the image's centre.
    pub fn centre(&self) -> (f64, f64) {
        let (w, h) = (self.hdu.naxis1 as f64, self.hdu.naxis2 as f64);
        self.to_sky((w + 1.0) / 2.0, (h + 1.0) / 2.0)
            .expect("checked when the image was opened")
    }
}

/// The header's celestial WCS: the keywords the `wcs` crate reads (CTYPE, CRPIX, CRVAL, CD or PC and CDELT, PV, SIP),
/// refused when the axes are not celestial or a keyword it needs is missing or not finite.
fn celestial_wcs(hdu: &fits::ImageHdu) -> Result<wcs::WCS, ImageError> {
    let h = &hdu.header;
    let ctype1 = h.text("CTYPE1").unwrap_or_default();
    let ctype2 = h.text("CTYPE2").unwrap_or_default();
    let celestial = |c: &str| {
        ["RA--", "DEC-", "GLON", "GLAT", "ELON", "ELAT"]
            .iter()
            .any(|p| c.starts_with(p))
    };
    // `XXXX-PPP` (or `XXXX-PPP-SIP`): a longitude axis and a latitude axis of the same projection.
    let well_formed = |c: &str| c.len() >= 8 && c.is_ascii() && c.as_bytes()[4] == b'-';
    let longitude = |c: &str| ["RA--", "GLON", "ELON"].iter().any(|p| c.starts_with(p));
    let latitude = |c: &str| ["DEC-", "GLAT", "ELAT"].iter().any(|p| c.starts_with(p));
    if !celestial(&ctype1)
        || !celestial(&ctype2)
        || !well_formed(&ctype1)
        || !well_formed(&ctype2)
        || !longitude(&ctype1)
        || !latitude(&ctype2)
        || ctype1[4..8] != ctype2[4..8]
    {
        return Err(ImageError::NoWcs(format!(
            "CTYPE1 {ctype1:?} and CTYPE2 {ctype2:?} are not a longitude and a latitude axis of one projection"
        )));
    }
    for (k, limit) in [("CRPIX1", 1e9), ("CRPIX2", 1e9), ("CRVAL1", 1e6), ("CRVAL2", 90.0)] {
        match h.get(k).and_then(|v| v.as_f64()) {
            Some(v) if v.is_finite() && v.abs() <= limit => {}
            Some(v) if v.is_finite() => {
                return Err(ImageError::NoWcs(format!("{k} = {v:e} is out of range (at most {limit:e})")));
            }
            Some(_) => return Err(ImageError::NoWcs(format!("{k} is not a finite number"))),
            None => return Err(ImageError::NoWcs(format!("{k} is missing"))),
        }
    }
    // Every WCS keyword that is there must be a finite number (one the crate would otherwise not see).
    for card in &h.cards {
        let k = fits::Header::keyword(card);
        let wcs_key = ["CD", "PC", "CDELT", "CROTA", "PV", "A_", "B_", "AP_", "BP_"]
            .iter()
            .any(|p| k.starts_with(p));
        if wcs_key
            && &card[8..10] == b"= "
            && fits::parse_value(&card[10..])
                .as_f64()
                .is_some_and(|x| !x.is_finite() || x.abs() > 1e12)
        {
            return Err(ImageError::NoWcs(format!("{k} is not a finite number of a sensible size")));
        }
    }
    // The linear transform must not be singular (a footprint of one point).
    let m = |i: usize, j: usize| {
        h.f64(&format!("CD{i}_{j}")).or_else(|| {
            let pc = h.f64(&format!("PC{i}_{j}")).unwrap_or(if i == j { 1.0 } else { 0.0 });
            Some(pc * h.f64(&format!("CDELT{i}")).unwrap_or(1.0))
        })
    };
    if let (Some(a), Some(b), Some(c), Some(d)) = (m(1, 1), m(1, 2), m(2, 1), m(2, 2))
        && (a * d - b * c).abs() < 1e-30
    {
        return Err(ImageError::NoWcs("the CD (or PC and CDELT) matrix is singular".into()));
    }
    let mut values = h.values();
    // The image's own size, whatever further axes it has.
    values.insert("NAXIS".into(), 2.into());
    // SIP distortions are applied by `Sip`: the crate gets the projection alone.
    for axis in ["CTYPE1", "CTYPE2"] {
        if let Some(serde_json::Value::String(c)) = values.get_mut(axis)
            && c.ends_with("-SIP")
        {
            c.truncate(c.len() - 4);
        }
    }
    let params: wcs::WCSParams = serde_json::from_value(serde_json::Value::Object(values))
        .map_err(|e| ImageError::NoWcs(format!("the WCS keywords: {e}")))?;
    std::panic::catch_unwind(|| wcs::WCS::new(&params))
        .map_err(|_| ImageError::NoWcs("the WCS keywords describe no projection the wcs crate can make".into()))?
        .map_err(|e| ImageError::NoWcs(format!("{e:?}")))
}
