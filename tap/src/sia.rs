//! SIAv2 (`/sia/query`, `/sia/capabilities`, `/sia/availability`): an image search translated to ADQL over
//! `ivoa.obscore` and answered by `/tap/sync`'s own path, so identity, visibility, sync turns, MAXREC and error
//! documents are TAP's. Each parameter's values are OR-ed, the parameters AND-ed (SIAv2 section 2.1); values are
//! parsed as numbers or written as quoted literals, never pasted.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use crate::audit::Tally;
use crate::auth::{Caller, Client};
use crate::error::TapError;
use crate::params::Params;
use crate::reply::{base_url, failure};
use crate::service::Tap;

/// The ObsCore table SIA searches.
const OBSCORE: &str = "ivoa.obscore";

/// `/sia/query`.
pub async fn query(
    State(tap): State<Arc<Tap>>,
    client: Extension<Client>,
    caller: Extension<Caller>,
    tally: Option<Extension<Arc<Tally>>>,
    headers: HeaderMap,
    params: Params,
) -> Response {
    let adql = match adql_of(&params) {
        Ok(q) => q,
        Err(e) => return failure(&e),
    };
    let mut pairs = vec![
        ("LANG".to_string(), "ADQL".to_string()),
        ("QUERY".to_string(), adql),
        ("RESPONSEFORMAT".to_string(), "votable".to_string()),
    ];
    if let Some(m) = params.get("MAXREC") {
        pairs.push(("MAXREC".to_string(), m.to_string()));
    }
    let params = Params {
        pairs,
        parts: Vec::new(),
    };
    crate::sync::sync(State(tap), client, caller, tally, headers, params).await
}

/// The ADQL of a SIAv2 query.
pub(crate) fn adql_of(p: &Params) -> Result<String, TapError> {
    let mut and = Vec::new();
    for (name, build) in CONSTRAINTS {
        let values: Vec<&str> = p.all(name).collect();
        if values.is_empty() {
            continue;
        }
        let mut or = Vec::new();
        for v in values {
            or.push(build(v).map_err(|m| TapError::parameter(name, format!("{name}={v}: {m}")))?);
        }
        and.push(if or.len() == 1 {
            or.pop().expect("one")
        } else {
            format!("({})", or.join(" OR "))
        });
    }
    if let Some(f) = p.get("RESPONSEFORMAT")
        && !matches!(f.trim(), "" | "votable" | "application/x-votable+xml")
    {
        return Err(TapError::parameter(
            "RESPONSEFORMAT",
            format!("RESPONSEFORMAT={f}: SIA answers in VOTable (application/x-votable+xml)"),
        ));
    }
    let mut q = format!("SELECT * FROM {OBSCORE}");
    if !and.is_empty() {
        q.push_str(" WHERE ");
        q.push_str(&and.join(" AND "));
    }
    q.push_str(" ORDER BY obs_publisher_did");
    Ok(q)
}

type Build = fn(&str) -> Result<String, String>;

/// Each SIAv2 parameter and how one of its values constrains `ivoa.obscore`.
const CONSTRAINTS: &[(&str, Build)] = &[
    ("POS", pos),
    ("BAND", |v| interval(v, "em_min", "em_max")),
    ("TIME", |v| interval(v, "t_min", "t_max")),
    ("POL", |v| {
        let state = v.trim();
        if !matches!(state, "I" | "Q" | "U" | "V" | "RR" | "LL" | "RL" | "LR" | "XX" | "YY" | "XY" | "YX" | "POLI" | "POLA") {
            return Err("not a polarization state (I Q U V RR LL RL LR XX YY XY YX POLI POLA)".into());
        }
        Ok(format!("pol_states LIKE {}", literal(&format!("%/{state}/%"))))
    }),
    ("FOV", |v| range_of(v, "s_fov")),
    ("SPATRES", |v| range_of(v, "s_resolution")),
    ("EXPTIME", |v| range_of(v, "t_exptime")),
    ("TIMERES", |v| range_of(v, "t_resolution")),
    ("SPECRP", |v| range_of(v, "em_res_power")),
    ("ID", |v| Ok(format!("obs_publisher_did = {}", literal(v)))),
    ("COLLECTION", |v| Ok(format!("obs_collection = {}", literal(v)))),
    ("FACILITY", |v| Ok(format!("facility_name = {}", literal(v)))),
    ("INSTRUMENT", |v| Ok(format!("instrument_name = {}", literal(v)))),
    ("DPTYPE", |v| Ok(format!("dataproduct_type = {}", literal(v)))),
    ("TARGET", |v| Ok(format!("target_name = {}", literal(v)))),
    ("FORMAT", |v| Ok(format!("access_format = {}", literal(v)))),
    ("CALIB", |v| {
        let level: i64 = v.trim().parse().map_err(|_| "not an integer".to_string())?;
        Ok(format!("calib_level = {level}"))
    }),
];

/// A string literal: quotes doubled.
fn literal(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

/// Numbers of a value, `+Inf`/`-Inf` included; refused if any is NaN.
fn numbers(v: &str) -> Result<Vec<f64>, String> {
    v.split_whitespace()
        .map(|w| {
            w.parse::<f64>()
                .ok()
                .filter(|x| !x.is_nan())
                .ok_or_else(|| format!("{w:?} is not a number"))
        })
        .collect()
}

/// A number as ADQL reads it (infinities as the largest doubles; NaN, which `numbers` refuses, as 0).
fn number(x: f64) -> String {
    let x = if x.is_nan() { 0.0 } else { x.clamp(-f64::MAX, f64::MAX) };
    format!("{x:e}")
}

/// `lo hi`: the row's [min, max] meets [lo, hi].
fn interval(v: &str, min: &str, max: &str) -> Result<String, String> {
    let [lo, hi] = numbers(v)?[..] else {
        return Err("an interval is two numbers, lo hi (+Inf and -Inf allowed)".into());
    };
    if lo > hi {
        return Err("lo is above hi".into());
    }
    if lo == f64::INFINITY || hi == f64::NEG_INFINITY {
        return Ok("1 = 0".to_string());
    }
    let mut parts = Vec::new();
    if hi.is_finite() {
        parts.push(format!("{min} <= {}", number(hi)));
    }
    if lo.is_finite() {
        parts.push(format!("{max} >= {}", number(lo)));
    }
    Ok(if parts.is_empty() {
        "1 = 1".to_string()
    } else {
        format!("({})", parts.join(" AND "))
    })
}

/// `lo hi`: the row's value is within [lo, hi].
fn range_of(v: &str, column: &str) -> Result<String, String> {
    let [lo, hi] = numbers(v)?[..] else {
        return Err("a range is two numbers, lo hi (+Inf and -Inf allowed)".into());
    };
    if lo > hi {
        return Err("lo is above hi".into());
    }
    if lo == f64::INFINITY || hi == f64::NEG_INFINITY {
        return Ok("1 = 0".to_string());
    }
    let mut parts = Vec::new();
    if lo.is_finite() {
        parts.push(format!("{column} >= {}", number(lo)));
    }
    if hi.is_finite() {
        parts.push(format!("{column} <= {}", number(hi)));
    }
    Ok(if parts.is_empty() {
        "1 = 1".to_string()
    } else {
        format!("({})", parts.join(" AND "))
    })
}

/// A cheap condition every image meeting the cap (centre, radius `r` degrees) satisfies: its centre within `r` plus
/// half its field of view (`s_fov` is the diameter of a cap around the centre holding the footprint, and a cap under
/// 90 degrees is convex, so its edges stay inside). The exact test over the footprint's STC-S text goes in the THEN
/// of a CASE on it, which DataFusion evaluates for the rows near the shape only (an AND evaluates both sides for
/// every row: 1.3 s against 0.17 s over a million records, `benches/images_bench.py`).
fn near(ra: &str, dec: &str, r: f64) -> String {
    format!("DISTANCE(s_ra, s_dec, {ra}, {dec}) <= {} + s_fov / 2", number(r))
}

/// Images whose footprint meets the polygon: the exact test, after [`near`] with the polygon's bounding cone (the
/// planner's own, `partitioner::map::bounding_cone`) when that cone is under 89 degrees.
fn polygon_meets(vertices: &[(f64, f64)]) -> String {
    let coords: Vec<String> = vertices
        .iter()
        .flat_map(|&(ra, dec)| [number(ra.rem_euclid(360.0)), number(dec)])
        .collect();
    let intersects = format!("INTERSECTS(POLYGON('ICRS', {}), s_region)", coords.join(", "));
    // The cone reaches a little past the farthest vertex: it only narrows what the exact test then decides.
    let (ra, dec, radius) = partitioner::map::bounding_cone(vertices);
    if !(radius < 89.0) {
        return format!("1 = {intersects}");
    }
    format!(
        "1 = CASE WHEN {} THEN {intersects} ELSE 0 END",
        near(&number(ra), &number(dec), radius)
    )
}

/// `POS`: `CIRCLE ra dec r`, `RANGE ra1 ra2 dec1 dec2`, `POLYGON ra dec ...`: images whose footprint meets it.
fn pos(v: &str) -> Result<String, String> {
    let mut words = v.split_whitespace();
    let kind = words.next().unwrap_or("").to_ascii_uppercase();
    let rest: Vec<&str> = words.collect();
    let n = numbers(&rest.join(" "))?;
    match kind.as_str() {
        "CIRCLE" => {
            let [ra, dec, r] = n[..] else {
                return Err("CIRCLE is ra dec radius".into());
            };
            if !ra.is_finite() || !(-90.0..=90.0).contains(&dec) || !(r > 0.0 && r <= 180.0) {
                return Err("a circle needs a finite ra, a dec within [-90, 90] and a radius in (0, 180]".into());
            }
            let (ra, dec) = (number(ra.rem_euclid(360.0)), number(dec));
            Ok(format!(
                "1 = CASE WHEN {} THEN INTERSECTS(CIRCLE('ICRS', {ra}, {dec}, {}), s_region) ELSE 0 END",
                near(&ra, &dec, r),
                number(r)
            ))
        }
        "POLYGON" => {
            if n.len() < 6 || n.len() % 2 != 0 {
                return Err("POLYGON is 3 or more ra dec pairs".into());
            }
            if n.chunks(2).any(|p| !p[0].is_finite() || !(-90.0..=90.0).contains(&p[1])) {
                return Err("every vertex needs a finite ra and a dec within [-90, 90]".into());
            }
            let vertices: Vec<(f64, f64)> = n.chunks(2).map(|p| (p[0], p[1])).collect();
            Ok(polygon_meets(&vertices))
        }
        "RANGE" => {
            let [ra1, ra2, dec1, dec2] = n[..] else {
                return Err("RANGE is ra1 ra2 dec1 dec2 (+Inf and -Inf allowed)".into());
            };
            let (dec1, dec2) = (dec1.max(-90.0), dec2.min(90.0));
            if dec1 > dec2 {
                return Err("dec1 is above dec2".into());
            }
            let all_ra = !ra1.is_finite() || !ra2.is_finite() || (ra2 - ra1) >= 360.0;
            if all_ra {
                // A band of declination: an image meets it when its footprint reaches into the band.
                return Ok(format!(
                    "(s_dec + s_fov / 2 >= {} AND s_dec - s_fov / 2 <= {})",
                    number(dec1),
                    number(dec2)
                ));
            }
            let width = ra2 - ra1;
            if !width.is_finite() || width <= 0.0 || width >= 180.0 {
                return Err(
                    "a RANGE needs 0 < ra2 - ra1 < 180 degrees (split a wider one, or use -Inf +Inf for all ra)"
                        .into(),
                );
            }
            if dec1 <= -90.0 || dec2 >= 90.0 || dec1 >= dec2 {
                return Err("a RANGE in ra needs -90 < dec1 < dec2 < 90 (use -Inf +Inf in ra about a pole)".into());
            }
            // The range as a polygon, with its ra edges cut into steps of at most 10 degrees (a parallel of
            // declination is not a great circle).
            let steps = (width / 10.0).ceil().max(1.0) as usize;
            let mut vertices = Vec::new();
            for k in 0..=steps {
                vertices.push((ra1 + width * k as f64 / steps as f64, dec1));
            }
            for k in (0..=steps).rev() {
                vertices.push((ra1 + width * k as f64 / steps as f64, dec2));
            }
            Ok(polygon_meets(&vertices))
        }
        _ => Err("a position is CIRCLE, RANGE or POLYGON".into()),
    }
}

/// `/sia/capabilities`: SIAv2's query capability, the VOSI ones.
pub async fn capabilities(headers: HeaderMap) -> Response {
    let base = format!("{}/sia", base_url(&headers));
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
<vosi:capabilities xmlns:vosi=\"http://www.ivoa.net/xml/VOSICapabilities/v1.0\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns:vs=\"http://www.ivoa.net/xml/VODataService/v1.1\">\n\
<capability standardID=\"ivo://ivoa.net/std/SIA#query-2.0\">\n<interface xsi:type=\"vs:ParamHTTP\" role=\"std\" version=\"2.0\">\n<accessURL use=\"base\">{base}/query</accessURL>\n</interface>\n</capability>\n\
<capability standardID=\"ivo://ivoa.net/std/VOSI#capabilities\">\n<interface xsi:type=\"vs:ParamHTTP\">\n<accessURL use=\"full\">{base}/capabilities</accessURL>\n</interface>\n</capability>\n\
<capability standardID=\"ivo://ivoa.net/std/VOSI#availability\">\n<interface xsi:type=\"vs:ParamHTTP\">\n<accessURL use=\"full\">{base}/availability</accessURL>\n</interface>\n</capability>\n\
</vosi:capabilities>\n"
    );
    crate::vosi::xml(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params {
            pairs: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            parts: Vec::new(),
        }
    }

    #[test]
    fn parameters_become_adql_with_values_as_literals() {
        let q = adql_of(&params(&[
            ("POS", "CIRCLE 10 20 0.5"),
            ("POS", "RANGE -Inf +Inf 10 20"),
            ("BAND", "4e-7 +Inf"),
            ("COLLECTION", "it's"),
            ("CALIB", "2"),
        ]))
        .unwrap();
        assert!(q.starts_with("SELECT * FROM ivoa.obscore WHERE ("), "{q}");
        assert!(
            q.contains("(1 = CASE WHEN DISTANCE(s_ra, s_dec, 1e1, 2e1) <= 5e-1 + s_fov / 2 THEN INTERSECTS(CIRCLE('ICRS', 1e1, 2e1, 5e-1), s_region) ELSE 0 END OR (s_dec + s_fov / 2 >= 1e1"),
            "{q}"
        );
        assert!(q.contains("(em_max >= 4e-7)"), "{q}");
        assert!(q.contains("obs_collection = 'it''s'"), "{q}");
        assert!(q.contains("calib_level = 2"), "{q}");
        for (k, v) in [
            ("POS", "CIRCLE 10 95 1"),
            ("POS", "ELLIPSE 1 2 3"),
            ("POS", "CIRCLE 1 2 NaN"),
            ("BAND", "5 4"),
            ("CALIB", "two"),
            ("TIME", "1"),
            ("POL", "X'; DROP"),
            ("POS", "RANGE 0 270 0 10"),
        ] {
            let e = adql_of(&params(&[(k, v)])).unwrap_err();
            assert!(e.to_string().contains(&format!("{k}={v}")), "{e}");
        }
    }
}
