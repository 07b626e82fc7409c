//! The functions a query may call: ADQL 2.1's own (sections 2.3 and 4) and the user-defined functions this service
//! declares, with their arities.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunctionKind {
    Numeric,
    String,
    Aggregate,
    Coalesce,
    InUnit,
    Point,
    Circle,
    Box,
    Polygon,
    Region,
    Centroid,
    Area,
    Coord,
    Coordsys,
    Predicate,
    Distance,
    UserDefined,
}

#[derive(Debug, Clone, Copy)]
pub struct FunctionDef {
    pub name: &'static str,
    pub kind: FunctionKind,
    pub min_args: usize,
    pub max_args: usize,
    /// A one-line description for TAPRegExt and error messages.
    pub signature: &'static str,
}

const fn f(
    name: &'static str,
    kind: FunctionKind,
    min_args: usize,
    max_args: usize,
    signature: &'static str,
) -> FunctionDef {
    FunctionDef {
        name,
        kind,
        min_args,
        max_args,
        signature,
    }
}

use FunctionKind::*;

/// ADQL 2.1's functions.
pub const ADQL_FUNCTIONS: &[FunctionDef] = &[
    f("ABS", Numeric, 1, 1, "ABS(x)"),
    f("ACOS", Numeric, 1, 1, "ACOS(x)"),
    f("ASIN", Numeric, 1, 1, "ASIN(x)"),
    f("ATAN", Numeric, 1, 1, "ATAN(x)"),
    f("ATAN2", Numeric, 2, 2, "ATAN2(y, x)"),
    f("CEILING", Numeric, 1, 1, "CEILING(x)"),
    f("COS", Numeric, 1, 1, "COS(x)"),
    f("COT", Numeric, 1, 1, "COT(x)"),
    f("DEGREES", Numeric, 1, 1, "DEGREES(x)"),
    f("EXP", Numeric, 1, 1, "EXP(x)"),
    f("FLOOR", Numeric, 1, 1, "FLOOR(x)"),
    f("LOG", Numeric, 1, 1, "LOG(x)"),
    f("LOG10", Numeric, 1, 1, "LOG10(x)"),
    f("MOD", Numeric, 2, 2, "MOD(x, y)"),
    f("PI", Numeric, 0, 0, "PI()"),
    f("POWER", Numeric, 2, 2, "POWER(x, y)"),
    f("RADIANS", Numeric, 1, 1, "RADIANS(x)"),
    f("RAND", Numeric, 0, 1, "RAND([seed])"),
    f("ROUND", Numeric, 1, 2, "ROUND(x [, n])"),
    f("SIN", Numeric, 1, 1, "SIN(x)"),
    f("SQRT", Numeric, 1, 1, "SQRT(x)"),
    f("TAN", Numeric, 1, 1, "TAN(x)"),
    f("TRUNCATE", Numeric, 1, 2, "TRUNCATE(x [, n])"),
    f("LOWER", String, 1, 1, "LOWER(s)"),
    f("UPPER", String, 1, 1, "UPPER(s)"),
    f("COALESCE", Coalesce, 1, usize::MAX, "COALESCE(a, b, ...)"),
    f("IN_UNIT", InUnit, 2, 2, "IN_UNIT(x, 'unit')"),
    f("COUNT", Aggregate, 1, 1, "COUNT([DISTINCT] x)"),
    f("SUM", Aggregate, 1, 1, "SUM([DISTINCT] x)"),
    f("AVG", Aggregate, 1, 1, "AVG([DISTINCT] x)"),
    f("MIN", Aggregate, 1, 1, "MIN(x)"),
    f("MAX", Aggregate, 1, 1, "MAX(x)"),
    f("POINT", Point, 2, 3, "POINT(ra, dec)"),
    f("CIRCLE", Circle, 2, 4, "CIRCLE(ra, dec, radius)"),
    f("BOX", Box, 3, 5, "BOX(ra, dec, width, height)"),
    f(
        "POLYGON",
        Polygon,
        3,
        usize::MAX,
        "POLYGON(ra1, dec1, ra2, dec2, ra3, dec3, ...)",
    ),
    f("REGION", Region, 1, 1, "REGION('STC-S or DALI string')"),
    f("CENTROID", Centroid, 1, 1, "CENTROID(geometry)"),
    f("AREA", Area, 1, 1, "AREA(geometry)"),
    f("COORD1", Coord, 1, 1, "COORD1(point)"),
    f("COORD2", Coord, 1, 1, "COORD2(point)"),
    f("COORDSYS", Coordsys, 1, 1, "COORDSYS(geometry)"),
    f("CONTAINS", Predicate, 2, 2, "CONTAINS(geometry, geometry)"),
    f(
        "INTERSECTS",
        Predicate,
        2,
        2,
        "INTERSECTS(geometry, geometry)",
    ),
    f("DISTANCE", Distance, 2, 4, "DISTANCE(point, point)"),
];

/// The user-defined functions this service declares (TAPRegExt `languageFeatures` type `ivo-udf`).
pub const USER_DEFINED_FUNCTIONS: &[FunctionDef] = &[
    f(
        "IVO_HEALPIX_INDEX",
        UserDefined,
        3,
        3,
        "ivo_healpix_index(depth INTEGER, ra DOUBLE, dec DOUBLE) -> BIGINT: the nested HEALPix index of a position",
    ),
    f(
        "IVO_HEALPIX_CENTER",
        UserDefined,
        2,
        2,
        "ivo_healpix_center(depth INTEGER, index BIGINT) -> POINT: the centre of a nested HEALPix cell",
    ),
];

/// Finds a function by name, case-insensitively. Names with the `ivo_` prefix that this service does not implement
/// are still valid ADQL (the prefix is reserved for IVOA-registered functions); the translator refuses them with a
/// message that they are not available here.
pub fn lookup_function(name: &str) -> Option<FunctionDef> {
    let upper = name.to_ascii_uppercase();
    if let Some(def) = ADQL_FUNCTIONS
        .iter()
        .chain(USER_DEFINED_FUNCTIONS)
        .find(|f| f.name == upper)
    {
        return Some(*def);
    }
    if upper.starts_with("IVO_") && upper.len() > 4 {
        return Some(f(
            "IVO_",
            UserDefined,
            0,
            usize::MAX,
            "an IVOA-registered function",
        ));
    }
    None
}

/// True when the service implements the function (not only accepts its name).
pub fn is_implemented(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ADQL_FUNCTIONS
        .iter()
        .chain(USER_DEFINED_FUNCTIONS)
        .any(|f| f.name == upper)
}
