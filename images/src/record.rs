//! The ObsCore 1.1 record of an image: what, where, when, in which band, from the file's name and header and its WCS.

use serde_json::{Value, json};

use crate::{Image, sky};

/// What the loader says about images beyond their headers.
#[derive(Debug, Clone)]
pub struct RecordOptions {
    /// `obs_collection`.
    pub collection: String,
    /// The authority of `obs_publisher_did` (`ivo://AUTHORITY/images?COLLECTION/OBS_ID`).
    pub authority: String,
    /// Where DataLink documents are served: `access_url` is `{links_url}?ID={did}`.
    pub links_url: String,
    pub calib_level: i64,
}

/// One image's ObsCore record (the mandatory columns of ObsCore 1.1, table 1).
#[derive(Debug, Clone, PartialEq)]
pub struct ObsRecord {
    pub obs_id: String,
    pub obs_publisher_did: String,
    pub obs_collection: String,
    pub dataproduct_type: String,
    pub calib_level: i64,
    pub target_name: Option<String>,
    pub s_ra: f64,
    pub s_dec: f64,
    /// The footprint: (ra, dec) vertices, counter-clockwise as the sky is seen (DALI's order).
    pub s_region: Vec<(f64, f64)>,
    /// The diameter of the smallest circle about the centre that holds the image, degrees.
    pub s_fov: f64,
    /// The pixel scale at the centre, arcseconds.
    pub s_resolution: f64,
    pub s_xel1: i64,
    pub s_xel2: i64,
    pub t_min: Option<f64>,
    pub t_max: Option<f64>,
    pub t_exptime: Option<f64>,
    pub em_min: Option<f64>,
    pub em_max: Option<f64>,
    pub facility_name: Option<String>,
    pub instrument_name: Option<String>,
    pub access_url: String,
    pub access_format: String,
    pub access_estsize: i64,
}

impl ObsRecord {
    /// The record of an opened image.
    pub fn of(image: &Image, options: &RecordOptions) -> ObsRecord {
        let h = &image.hdu.header;
        let obs_id = h
            .text("OBS_ID")
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| obs_id_of(&image.path));
        let did = format!(
            "ivo://{}/images?{}/{}",
            options.authority, options.collection, obs_id
        );
        let (s_ra, s_dec) = image.centre();
        // The footprint from the outer edge: 4 points a side (a straight pixel edge is not a great circle).
        let outline: Vec<(f64, f64)> = image
            .outline(4)
            .into_iter()
            .filter_map(|(x, y)| image.to_sky(x, y))
            .collect();
        let s_region = counter_clockwise(outline, (s_ra, s_dec));
        let s_fov = 2.0
            * s_region
                .iter()
                .map(|&(ra, dec)| sky::distance(s_ra, s_dec, ra, dec))
                .fold(0.0, f64::max);
        let (w, hgt) = (image.hdu.naxis1 as f64, image.hdu.naxis2 as f64);
        let (cx, cy) = ((w + 1.0) / 2.0, (hgt + 1.0) / 2.0);
        let scale = |dx: f64, dy: f64| {
            image
                .to_sky(cx + dx, cy + dy)
                .map(|(ra, dec)| sky::distance(s_ra, s_dec, ra, dec))
        };
        let s_resolution = match (scale(1.0, 0.0), scale(0.0, 1.0)) {
            (Some(a), Some(b)) => (a * b).sqrt() * 3600.0,
            _ => 0.0,
        };
        let exptime = h.f64("EXPTIME").or_else(|| h.f64("EXPOSURE"));
        let t_min = h.f64("MJD-OBS").or_else(|| h.text("DATE-OBS").and_then(|d| mjd_of(&d)));
        let t_max = t_min.map(|t| t + exptime.unwrap_or(0.0) / 86_400.0);
        let band = h.text("FILTER").and_then(|f| band_of(&f));
        let size = std::fs::metadata(&image.path).map_or(0, |m| m.len());
        ObsRecord {
            access_url: format!("{}?ID={}", options.links_url, percent(&did)),
            obs_id,
            obs_publisher_did: did,
            obs_collection: options.collection.clone(),
            dataproduct_type: "image".into(),
            calib_level: options.calib_level,
            target_name: h.text("OBJECT").filter(|s| !s.trim().is_empty()),
            s_ra,
            s_dec,
            s_region,
            s_fov,
            s_resolution,
            s_xel1: image.hdu.naxis1 as i64,
            s_xel2: image.hdu.naxis2 as i64,
            t_min,
            t_max,
            t_exptime: exptime,
            em_min: band.map(|b| b.0),
            em_max: band.map(|b| b.1),
            facility_name: h.text("TELESCOP").filter(|s| !s.trim().is_empty()),
            instrument_name: h.text("INSTRUME").filter(|s| !s.trim().is_empty()),
            access_format: "application/x-votable+xml;content=datalink".into(),
            access_estsize: size.div_ceil(1024) as i64,
        }
    }

    /// The record as JSON (ObsCore's column names).
    pub fn to_json(&self) -> Value {
        json!({
            "obs_id": self.obs_id,
            "obs_publisher_did": self.obs_publisher_did,
            "obs_collection": self.obs_collection,
            "dataproduct_type": self.dataproduct_type,
            "calib_level": self.calib_level,
            "target_name": self.target_name,
            "s_ra": self.s_ra,
            "s_dec": self.s_dec,
            "s_region": self.s_region.iter().flat_map(|&(a, b)| [a, b]).collect::<Vec<_>>(),
            "s_fov": self.s_fov,
            "s_resolution": self.s_resolution,
            "s_xel1": self.s_xel1,
            "s_xel2": self.s_xel2,
            "t_min": self.t_min,
            "t_max": self.t_max,
            "t_exptime": self.t_exptime,
            "em_min": self.em_min,
            "em_max": self.em_max,
            "facility_name": self.facility_name,
            "instrument_name": self.instrument_name,
            "access_url": self.access_url,
            "access_format": self.access_format,
            "access_estsize": self.access_estsize,
        })
    }
}

/// Whether an `obs_id` may name a file of the archive: letters, digits, `_`, `-` and `.`, not starting with a dot, at
/// most 64 characters (an image's header chooses it: it must not be a path).
pub fn plain_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// The file's name without its FITS extensions (`.fits`, `.fit`, `.fts`, and those with `.fz` or `.gz`).
pub fn obs_id_of(path: &std::path::Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut stem = name.as_str();
    for ext in [".fz", ".gz"] {
        if stem.to_ascii_lowercase().ends_with(ext) {
            stem = &stem[..stem.len() - ext.len()];
        }
    }
    for ext in [".fits", ".fit", ".fts"] {
        if stem.to_ascii_lowercase().ends_with(ext) {
            stem = &stem[..stem.len() - ext.len()];
            break;
        }
    }
    stem.to_string()
}

/// The vertices in counter-clockwise order as the sky is seen from inside the sphere (north, then east, which is to
/// the left of north, then south: DALI's order for a polygon).
fn counter_clockwise(points: Vec<(f64, f64)>, centre: (f64, f64)) -> Vec<(f64, f64)> {
    let c = sky::unit(centre.0, centre.1);
    let mut signed = 0.0;
    for i in 0..points.len() {
        let a = sky::unit(points[i].0, points[i].1);
        let b = sky::unit(points[(i + 1) % points.len()].0, points[(i + 1) % points.len()].1);
        // The triple product c . (a x b): negative when a -> b turns counter-clockwise about c seen from inside (from
        // north toward east).
        signed += c[0] * (a[1] * b[2] - a[2] * b[1]) + c[1] * (a[2] * b[0] - a[0] * b[2])
            + c[2] * (a[0] * b[1] - a[1] * b[0]);
    }
    let mut points = points;
    if signed > 0.0 {
        points.reverse();
    }
    points
}

/// The wavelength range (metres) of a filter named ugrizy (LSST) in any common spelling ("g", "HSC-G", "LSST r",
/// "sdss_i").
pub fn band_of(filter: &str) -> Option<(f64, f64)> {
    let f = filter.trim().to_ascii_lowercase();
    let letter = f
        .rsplit(|c: char| !c.is_ascii_alphanumeric())
        .find(|s| !s.is_empty())
        .filter(|s| s.len() == 1)
        .and_then(|s| s.chars().next())?;
    let (lo, hi) = match letter {
        'u' => (320e-9, 400e-9),
        'g' => (400e-9, 552e-9),
        'r' => (552e-9, 691e-9),
        'i' => (691e-9, 818e-9),
        'z' => (818e-9, 922e-9),
        'y' => (950e-9, 1080e-9),
        _ => return None,
    };
    Some((lo, hi))
}

/// The MJD of an ISO date (`YYYY-MM-DD` or `YYYY-MM-DDThh:mm:ss[.s]`, UTC).
pub fn mjd_of(date: &str) -> Option<f64> {
    let date = date.trim();
    let (day, time) = date.split_once('T').unwrap_or((date, "00:00:00"));
    let mut ymd = day.split('-').map(|s| s.parse::<i64>());
    let (y, m, d) = (ymd.next()?.ok()?, ymd.next()?.ok()?, ymd.next()?.ok()?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let mut hms = time.trim_end_matches('Z').split(':');
    let h: f64 = hms.next()?.parse().ok()?;
    let mi: f64 = hms.next().unwrap_or("0").parse().ok()?;
    let s: f64 = hms.next().unwrap_or("0").parse().ok()?;
    // Days from 1970-01-01 (the civil-from-days algorithm, proleptic Gregorian).
    let (y2, m2) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(40_587.0 + days as f64 + (h * 3600.0 + mi * 60.0 + s) / 86_400.0)
}

/// Percent-encoding for a query parameter's value.
fn percent(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_dates_and_bands() {
        let p = std::path::Path::new;
        assert_eq!(obs_id_of(p("/x/calexp-123.fits")), "calexp-123");
        assert_eq!(obs_id_of(p("a.b.fits.fz")), "a.b");
        assert_eq!(obs_id_of(p("IMG.FIT.gz")), "IMG");
        assert_eq!(obs_id_of(p("raw")), "raw");
        assert_eq!(mjd_of("1858-11-17"), Some(0.0));
        assert_eq!(mjd_of("2000-01-01T12:00:00"), Some(51_544.5));
        assert_eq!(mjd_of("2024-02-29T06:00:00.0Z"), Some(60_369.25));
        assert_eq!(mjd_of("yesterday"), None);
        assert_eq!(band_of("g"), Some((400e-9, 552e-9)));
        assert_eq!(band_of("HSC-R"), band_of("r"));
        assert_eq!(band_of("LSST y"), Some((950e-9, 1080e-9)));
        assert_eq!(band_of("H-alpha"), None);
    }
}
