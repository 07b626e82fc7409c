//! STC-S region strings as TAP 1.0 and ObsCore serialize regions (`adql:REGION`; IVOA STC-S 1.33, the subset that
//! services use: POSITION, CIRCLE, BOX and POLYGON in ICRS): read for `REGION('...')` literals and for text
//! columns such as ObsCore's `s_region`, so both mean the same shapes. A frame other than ICRS (or its near twins
//! FK5/J2000, and the unknown frame) is refused rather than taken for ICRS.

use super::sphere::{Polygon, box_corners};

/// A region read from STC-S, in degrees.
#[derive(Debug, Clone, PartialEq)]
pub enum Region {
    Point(f64, f64),
    Circle(f64, f64, f64),
    /// Vertices as written (a BOX becomes its four corners); not yet checked as a polygon ([`polygon`] does).
    Polygon(Vec<(f64, f64)>),
}

/// The polygon of a region's vertices, or why they are none (too few distinct, degenerate): the one check, made once
/// by whoever builds it.
pub fn polygon(vertices: &[(f64, f64)]) -> Result<Polygon, String> {
    Polygon::new(vertices).map_err(|e| e.to_string())
}

/// The words that may stand between the shape and its numbers: frames, reference positions, flavours.
const FRAME_WORDS: &[&str] = &[
    "ICRS",
    "FK5",
    "J2000",
    "UNKNOWNFRAME",
    "BARYCENTER",
    "GEOCENTER",
    "TOPOCENTER",
    "UNKNOWNREFPOS",
    "SPHERICAL2",
];

/// The longest text read as a region: a footprint polygon of a few hundred vertices is a few kilobytes.
pub const MAX_LEN: usize = 64 * 1024;

/// Reads one STC-S region. The error says what is wrong in words a user of `REGION` or `s_region` can act on.
pub fn parse(s: &str) -> Result<Region, String> {
    if s.len() > MAX_LEN {
        return Err(format!(
            "a region of {} bytes is longer than the {MAX_LEN} read",
            s.len()
        ));
    }
    let mut words = s.split_whitespace();
    let shape = words
        .next()
        .map(|w| w.to_ascii_uppercase())
        .unwrap_or_default();
    if !matches!(shape.as_str(), "POSITION" | "POINT" | "CIRCLE" | "BOX" | "POLYGON") {
        return Err(format!(
            "unknown shape '{}'; skyshard reads POSITION, CIRCLE, BOX and POLYGON",
            shorten(&shape)
        ));
    }
    let mut nums = Vec::new();
    for w in words {
        if let Ok(v) = w.parse::<f64>() {
            if !v.is_finite() {
                return Err(format!("'{w}' is not a finite number"));
            }
            nums.push(v);
        } else if nums.is_empty() && FRAME_WORDS.contains(&w.to_ascii_uppercase().as_str()) {
            continue;
        } else {
            return Err(format!(
                "'{}' is not supported; use an ICRS STC-S shape such as 'CIRCLE ICRS 10 20 0.5'",
                shorten(w)
            ));
        }
    }
    let arity = |n: &str| format!("{shape} takes {n}, found {} numbers", nums.len());
    Ok(match shape.as_str() {
        "POSITION" | "POINT" => {
            if nums.len() != 2 {
                return Err(arity("two coordinates"));
            }
            Region::Point(nums[0], nums[1])
        }
        "CIRCLE" => {
            if nums.len() != 3 {
                return Err(arity("a centre and a radius"));
            }
            Region::Circle(nums[0], nums[1], nums[2])
        }
        "BOX" => {
            if nums.len() != 4 {
                return Err(arity("a centre, a width and a height"));
            }
            Region::Polygon(box_corners(nums[0], nums[1], nums[2], nums[3]))
        }
        _ => {
            if nums.len() < 6 || nums.len() % 2 != 0 {
                return Err(arity("at least three pairs of coordinates"));
            }
            Region::Polygon(nums.chunks_exact(2).map(|c| (c[0], c[1])).collect())
        }
    })
}

/// An STC-S polygon in ICRS, as ObsCore's `s_region` holds a footprint.
pub fn polygon_text(vertices: &[(f64, f64)]) -> String {
    let mut s = String::from("POLYGON ICRS");
    for &(ra, dec) in vertices {
        s.push_str(&format!(" {ra} {dec}"));
    }
    s
}

fn shorten(w: &str) -> String {
    if w.chars().count() > 40 {
        format!("{}...", w.chars().take(40).collect::<String>())
    } else {
        w.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_shapes_services_write() {
        assert_eq!(parse("POSITION ICRS 10 20"), Ok(Region::Point(10.0, 20.0)));
        assert_eq!(
            parse("Circle ICRS GEOCENTER 10 -20 0.5"),
            Ok(Region::Circle(10.0, -20.0, 0.5))
        );
        let p = polygon_text(&[(359.5, -1.0), (0.5, -1.0), (0.5, 1.0), (359.5, 1.0)]);
        assert_eq!(p, "POLYGON ICRS 359.5 -1 0.5 -1 0.5 1 359.5 1");
        assert_eq!(
            parse(&p),
            Ok(Region::Polygon(vec![(359.5, -1.0), (0.5, -1.0), (0.5, 1.0), (359.5, 1.0)]))
        );
        let Ok(Region::Polygon(corners)) = parse("BOX ICRS 0 0 2 2") else {
            panic!("a box is a polygon")
        };
        assert_eq!(corners.len(), 4);
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        assert!(parse("CIRCLE GALACTIC 10 20 1").unwrap_err().contains("'GALACTIC' is not supported"));
        assert!(parse("CIRCLE ICRS 10 20").unwrap_err().contains("CIRCLE takes a centre and a radius, found 2"));
        assert!(parse("POLYGON ICRS 1 2 3 4").unwrap_err().contains("at least three pairs"));
        assert!(parse("UNION ICRS (CIRCLE 1 2 3)").unwrap_err().contains("unknown shape 'UNION'"));
        assert!(parse("CIRCLE ICRS NaN 0 1").unwrap_err().contains("not a finite number"));
        assert!(parse("CIRCLE ICRS 1 inf 1").unwrap_err().contains("not a finite number"));
        assert!(parse(&"x".repeat(MAX_LEN + 1)).unwrap_err().contains("longer than"));
        // ICRS after the numbers is not a frame word any more.
        assert!(parse("POSITION 1 2 ICRS").is_err());
    }
}
