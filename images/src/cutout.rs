//! Cutouts as SODA asks for them: the image's pixels inside a shape's bounding box, clipped to the image, written as
//! a FITS file with the original's header and its WCS moved (CRPIX shifted, NAXISn set). Pixels are copied as bytes,
//! never resampled, so each is exactly the original's.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};

use crate::fits::{self, CARD};
use crate::{Image, ImageError, sky};

/// A region of the sky (degrees), as SODA's CIRCLE, POLYGON and POS (CIRCLE, RANGE, POLYGON) name it.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    Circle { ra: f64, dec: f64, radius: f64 },
    Polygon(Vec<(f64, f64)>),
    /// ra from ra1 to ra2 (across 0 when ra1 > ra2), dec from dec1 to dec2.
    Range { ra1: f64, ra2: f64, dec1: f64, dec2: f64 },
}

impl Shape {
    /// SODA's text forms: `CIRCLE ra dec r` (or the three numbers alone for the CIRCLE parameter), `POLYGON ra dec
    /// ra dec ra dec ...`, `RANGE ra1 ra2 dec1 dec2`; +/-Inf allowed in a RANGE.
    pub fn parse(text: &str) -> Result<Shape, ImageError> {
        let mut words = text.split_whitespace();
        let first = words.next().unwrap_or("");
        let (kind, rest): (String, Vec<&str>) = if first.parse::<f64>().is_ok() {
            ("CIRCLE".into(), text.split_whitespace().collect())
        } else {
            (first.to_ascii_uppercase(), words.collect())
        };
        let numbers: Vec<f64> = rest
            .iter()
            .map(|w| w.parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|_| ImageError::BadShape(format!("{text:?}: the coordinates must be numbers")))?;
        let bad = |why: &str| Err(ImageError::BadShape(format!("{text:?}: {why}")));
        if numbers.iter().any(|x| x.is_nan()) {
            return bad("NaN is not a coordinate");
        }
        match kind.as_str() {
            "CIRCLE" => {
                let [ra, dec, radius] = numbers[..] else {
                    return bad("a circle is ra dec radius");
                };
                if !(ra.is_finite() && (-90.0..=90.0).contains(&dec) && radius > 0.0 && radius <= 180.0) {
                    return bad("a circle needs a finite ra, a dec within [-90, 90] and a radius in (0, 180]");
                }
                Ok(Shape::Circle { ra: ra.rem_euclid(360.0), dec, radius })
            }
            "POLYGON" => {
                if numbers.len() < 6 || numbers.len() % 2 != 0 || numbers.len() > 2000 {
                    return bad("a polygon is 3 to 1000 ra dec pairs");
                }
                let points: Vec<(f64, f64)> = numbers.chunks(2).map(|p| (p[0], p[1])).collect();
                if points.iter().any(|&(ra, dec)| !ra.is_finite() || !(-90.0..=90.0).contains(&dec)) {
                    return bad("every vertex needs a finite ra and a dec within [-90, 90]");
                }
                Ok(Shape::Polygon(points.into_iter().map(|(ra, dec)| (ra.rem_euclid(360.0), dec)).collect()))
            }
            "RANGE" => {
                let [ra1, ra2, dec1, dec2] = numbers[..] else {
                    return bad("a range is ra1 ra2 dec1 dec2");
                };
                let (ra1, ra2) = if ra1 == f64::NEG_INFINITY || ra2 == f64::INFINITY {
                    (0.0, 360.0)
                } else {
                    (ra1, ra2)
                };
                let (dec1, dec2) = (dec1.max(-90.0), dec2.min(90.0));
                if !(ra1.is_finite() && ra2.is_finite() && (ra2 - ra1).is_finite())
                    || ra1.abs() > 1e6
                    || ra2.abs() > 1e6
                    || dec1 > dec2
                {
                    return bad("a range needs ra bounds within +-1e6 (or -Inf +Inf) and dec1 <= dec2");
                }
                let (ra1, ra2) = if ra2 - ra1 >= 360.0 {
                    (0.0, 360.0)
                } else {
                    (ra1.rem_euclid(360.0), ra2.rem_euclid(360.0))
                };
                Ok(Shape::Range { ra1, ra2, dec1, dec2 })
            }
            _ => bad("a shape is CIRCLE, POLYGON or RANGE"),
        }
    }

    /// Points on the shape's outline, close enough together to bound it in an image's pixels.
    fn outline(&self) -> Vec<(f64, f64)> {
        match self {
            Shape::Circle { ra, dec, radius } => (0..72)
                .map(|k| sky::offset(*ra, *dec, k as f64 * 5.0, *radius))
                .collect(),
            Shape::Polygon(points) => {
                let mut out = Vec::new();
                for i in 0..points.len() {
                    let (a, b) = (points[i], points[(i + 1) % points.len()]);
                    for k in 0..16 {
                        out.push(sky::between(a, b, k as f64 / 16.0));
                    }
                }
                out
            }
            Shape::Range { ra1, ra2, dec1, dec2 } => {
                let width = (ra2 - ra1).rem_euclid(360.0);
                let width = if width == 0.0 && ra2 != ra1 { 360.0 } else { width };
                let mut out = Vec::new();
                for k in 0..=32 {
                    let ra = ra1 + width * k as f64 / 32.0;
                    out.push((ra.rem_euclid(360.0), *dec1));
                    out.push((ra.rem_euclid(360.0), *dec2));
                }
                for k in 0..=16 {
                    let dec = dec1 + (dec2 - dec1) * k as f64 / 16.0;
                    out.push((ra1.rem_euclid(360.0), dec));
                    out.push(((ra1 + width).rem_euclid(360.0), dec));
                }
                out
            }
        }
    }

    /// Whether the shape holds a position (for the image's centre: a shape around the whole image).
    fn holds(&self, ra: f64, dec: f64) -> bool {
        match self {
            Shape::Circle { ra: cra, dec: cdec, radius } => sky::distance(ra, dec, *cra, *cdec) <= *radius,
            Shape::Range { ra1, ra2, dec1, dec2 } => {
                let width = (ra2 - ra1).rem_euclid(360.0);
                let full = width == 0.0 && ra2 != ra1;
                (full || (ra - ra1).rem_euclid(360.0) <= width) && (*dec1..=*dec2).contains(&dec)
            }
            Shape::Polygon(points) => polygon_holds(points, ra, dec),
        }
    }

    /// The shape's centre and the radius of a circle about it that holds it (degrees).
    fn bounding_circle(&self) -> (f64, f64, f64) {
        match self {
            Shape::Circle { ra, dec, radius } => (*ra, *dec, *radius),
            _ => {
                let points = self.outline();
                let (ra, dec) = sky::middle(&points).unwrap_or((0.0, 90.0));
                let r = points
                    .iter()
                    .map(|&(a, d)| sky::distance(ra, dec, a, d))
                    .fold(0.0, f64::max);
                if sky::middle(&points).is_none() { (0.0, 90.0, 180.0) } else { (ra, dec, r) }
            }
        }
    }
}

/// Whether a spherical polygon (its smaller side) holds a position: the even-odd rule in the gnomonic projection
/// about the polygon's middle, where its great-circle edges are straight lines. A position more than 90 degrees from
/// the middle is outside (a polygon here spans less than a hemisphere).
fn polygon_holds(points: &[(f64, f64)], ra: f64, dec: f64) -> bool {
    let Some((mra, mdec)) = sky::middle(points) else {
        return false;
    };
    let project = |ra: f64, dec: f64| -> Option<(f64, f64)> {
        let (p, c) = (sky::unit(ra, dec), sky::unit(mra, mdec));
        let d = p[0] * c[0] + p[1] * c[1] + p[2] * c[2];
        if d <= 1e-12 {
            return None;
        }
        // East and north at the middle.
        let e = [-mra.to_radians().sin(), mra.to_radians().cos(), 0.0];
        let n = [c[1] * e[2] - c[2] * e[1], c[2] * e[0] - c[0] * e[2], c[0] * e[1] - c[1] * e[0]];
        Some(((p[0] * e[0] + p[1] * e[1] + p[2] * e[2]) / d, (p[0] * n[0] + p[1] * n[1] + p[2] * n[2]) / d))
    };
    let Some((x, y)) = project(ra, dec) else {
        return false;
    };
    let Some(poly) = points.iter().map(|&(a, b)| project(a, b)).collect::<Option<Vec<_>>>() else {
        return false;
    };
    let mut inside = false;
    for i in 0..poly.len() {
        let ((x1, y1), (x2, y2)) = (poly[i], poly[(i + 1) % poly.len()]);
        if (y1 > y) != (y2 > y) && x < (x2 - x1) * (y - y1) / (y2 - y1) + x1 {
            inside = !inside;
        }
    }
    inside
}

/// A cutout's pixel box in the original image (FITS pixels, 1-based, inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutout {
    pub x0: u64,
    pub x1: u64,
    pub y0: u64,
    pub y1: u64,
}

impl Cutout {
    pub fn width(&self) -> u64 {
        self.x1 - self.x0 + 1
    }

    pub fn height(&self) -> u64 {
        self.y1 - self.y0 + 1
    }
}

impl Image {
    /// The pixels of the image inside the shape's bounding box, or None when the shape misses the image.
    pub fn bounds(&self, shape: &Shape) -> Option<Cutout> {
        let (w, h) = (self.hdu.naxis1 as f64, self.hdu.naxis2 as f64);
        // Far apart on the sky: a miss, whatever the projection does with the far side.
        let (cra, cdec) = self.centre();
        let image_radius = self
            .outline(2)
            .into_iter()
            .filter_map(|(x, y)| self.to_sky(x, y))
            .map(|(ra, dec)| sky::distance(cra, cdec, ra, dec))
            .fold(0.0, f64::max);
        let (sra, sdec, sr) = shape.bounding_circle();
        if sky::distance(cra, cdec, sra, sdec) > image_radius + sr {
            return None;
        }
        let whole = Cutout { x0: 1, x1: self.hdu.naxis1, y0: 1, y1: self.hdu.naxis2 };
        if shape.holds(cra, cdec) && sr >= 90.0 {
            return Some(whole);
        }
        let mut projected = Vec::new();
        for (ra, dec) in shape.outline() {
            match self.to_pixel(ra, dec) {
                // A point the projection cannot place (behind a TAN's tangent plane): the shape is too large to
                // bound by its outline in pixels; it is bounded by the image's pixels it holds instead.
                None => return self.bounds_by_sampling(shape),
                Some(p) => projected.push(p),
            }
        }
        let (mut xmin, mut xmax, mut ymin, mut ymax) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, y) in &projected {
            xmin = xmin.min(x);
            xmax = xmax.max(x);
            ymin = ymin.min(y);
            ymax = ymax.max(y);
        }
        // A shape that holds the image's centre but whose outline projects to one side (a circle around a pole seen
        // in a zenithal projection does not): widen to the centre.
        if shape.holds(cra, cdec) {
            let (cx, cy) = ((w + 1.0) / 2.0, (h + 1.0) / 2.0);
            xmin = xmin.min(cx);
            xmax = xmax.max(cx);
            ymin = ymin.min(cy);
            ymax = ymax.max(cy);
        }
        // Pixel n covers [n - 0.5, n + 0.5).
        if xmax < 0.5 || ymax < 0.5 || xmin >= w + 0.5 || ymin >= h + 0.5 {
            return None;
        }
        let first = |v: f64, n: f64| (v + 0.5).floor().clamp(1.0, n) as u64;
        let last = |v: f64, n: f64| ((v + 0.5).floor()).clamp(1.0, n) as u64;
        Some(Cutout {
            x0: first(xmin, w),
            x1: last(xmax, w),
            y0: first(ymin, h),
            y1: last(ymax, h),
        })
    }

    /// The bounds of the pixels a large shape holds, found on a grid over the image (each grid cell's pixels kept
    /// whole when one of its corners is held, so nothing held is cut off); None when it holds none of them.
    fn bounds_by_sampling(&self, shape: &Shape) -> Option<Cutout> {
        const STEPS: u64 = 32;
        let (w, h) = (self.hdu.naxis1, self.hdu.naxis2);
        let at = |i: u64, n: u64| 0.5 + n as f64 * i as f64 / STEPS as f64;
        let (mut x0, mut x1, mut y0, mut y1) = (u64::MAX, 0, u64::MAX, 0);
        for j in 0..=STEPS {
            for i in 0..=STEPS {
                let (x, y) = (at(i, w), at(j, h));
                let Some((ra, dec)) = self.to_sky(x, y) else { continue };
                if shape.holds(ra, dec) {
                    let cell = |v: f64, n: u64| {
                        let step = n as f64 / STEPS as f64;
                        (((v - step).floor().max(1.0)) as u64, ((v + step).ceil() as u64).min(n))
                    };
                    let ((a, b), (c, d)) = (cell(x, w), cell(y, h));
                    x0 = x0.min(a);
                    x1 = x1.max(b);
                    y0 = y0.min(c);
                    y1 = y1.max(d);
                }
            }
        }
        (x0 <= x1 && y0 <= y1).then_some(Cutout { x0, x1, y0, y1 })
    }

    /// Writes the cutout `c` as a FITS file: a primary HDU with the original's header (its WCS moved, its NAXISn
    /// set, checksums dropped) and the pixels of the box, row by row, as they are in the original.
    pub fn write_cutout(&self, c: Cutout, out: &mut impl Write) -> std::io::Result<u64> {
        let hdu = &self.hdu;
        let mut cards: Vec<[u8; CARD]> = vec![
            fits::card("SIMPLE", "T"),
            fits::card("BITPIX", &hdu.bitpix.to_string()),
            fits::card("NAXIS", "2"),
            fits::card("NAXIS1", &c.width().to_string()),
            fits::card("NAXIS2", &c.height().to_string()),
        ];
        let skip = |k: &str| {
            matches!(k, "SIMPLE" | "XTENSION" | "BITPIX" | "NAXIS" | "EXTEND" | "PCOUNT" | "GCOUNT" | "CHECKSUM" | "DATASUM" | "END")
                || (k.starts_with("NAXIS") && k[5..].chars().all(|c| c.is_ascii_digit()))
        };
        for card in &hdu.header.cards {
            let k = fits::Header::keyword(card);
            if skip(k) {
                continue;
            }
            let shifted = match k {
                "CRPIX1" => hdu.header.f64(k).map(|v| v - (c.x0 - 1) as f64),
                "CRPIX2" => hdu.header.f64(k).map(|v| v - (c.y0 - 1) as f64),
                _ => None,
            };
            match shifted {
                Some(v) => cards.push(fits::card(k, &fits::real(v))),
                None => cards.push(*card),
            }
        }
        let head = fits::header_bytes(&cards);
        out.write_all(&head)?;
        let bpp = hdu.bytes_per_pixel();
        let row_bytes = (c.width() * bpp) as usize;
        let mut file = File::open(&self.path)?;
        let mut row = vec![0u8; row_bytes];
        for y in c.y0..=c.y1 {
            let offset = hdu.data_offset + ((y - 1) * hdu.naxis1 + (c.x0 - 1)) * bpp;
            file.seek(SeekFrom::Start(offset))?;
            file.read_exact(&mut row)?;
            out.write_all(&row)?;
        }
        let data = c.height() * row_bytes as u64;
        let pad = data.div_ceil(fits::BLOCK as u64) * fits::BLOCK as u64 - data;
        out.write_all(&vec![0u8; pad as usize])?;
        Ok(head.len() as u64 + data + pad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_read_as_soda_writes_them() {
        assert_eq!(
            Shape::parse("CIRCLE 10 20 0.5").unwrap(),
            Shape::Circle { ra: 10.0, dec: 20.0, radius: 0.5 }
        );
        assert_eq!(
            Shape::parse("370 -20 1").unwrap(),
            Shape::Circle { ra: 10.0, dec: -20.0, radius: 1.0 }
        );
        assert!(matches!(Shape::parse("POLYGON 1 1 2 1 2 2").unwrap(), Shape::Polygon(p) if p.len() == 3));
        assert_eq!(
            Shape::parse("RANGE -Inf +Inf 10 20").unwrap(),
            Shape::Range { ra1: 0.0, ra2: 360.0, dec1: 10.0, dec2: 20.0 }
        );
        for bad in ["CIRCLE 1 2", "CIRCLE 1 95 1", "CIRCLE 1 2 0", "CIRCLE 1 2 NaN", "POLYGON 1 2 3 4", "RANGE 1 2 30 10",
                    "ELLIPSE 1 2 3 4 5", "CIRCLE a b c", ""] {
            assert!(Shape::parse(bad).is_err(), "{bad}");
        }
    }
}
