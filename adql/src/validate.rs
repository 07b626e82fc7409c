//! The checks ADQL's grammar makes beyond the shape of the text: which functions exist and with how many arguments,
//! where a condition is needed and where a value (ADQL has no boolean type), and which arguments must be
//! geometries. Needs no catalog; the translator adds the checks that do.
//!
//! Why one long module: one walk over the syntax tree; the checks for functions, conditions and geometry share its
//! context.

use crate::ast::*;
use crate::error::{AdqlError, Pos, Result};
use crate::functions::{FunctionKind, lookup_function};

/// What an expression yields, as far as can be told without a catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A condition: only WHERE, HAVING, ON, NOT/AND/OR, CASE WHEN and EXISTS take these.
    Bool,
    Num,
    Str,
    Point,
    Circle,
    Polygon,
    /// A geometry whose shape is known only at run time (REGION, a geometry column).
    Geometry,
    /// Not known without the catalog: a column, NULL, a subquery, a user-defined function.
    Unknown,
}

impl Kind {
    fn is_geometry(self) -> bool {
        matches!(
            self,
            Kind::Point | Kind::Circle | Kind::Polygon | Kind::Geometry
        )
    }

    fn describe(self) -> &'static str {
        match self {
            Kind::Bool => "a condition",
            Kind::Num => "a number",
            Kind::Str => "a string",
            Kind::Point => "a POINT",
            Kind::Circle => "a CIRCLE",
            Kind::Polygon => "a POLYGON",
            Kind::Geometry => "a geometry",
            Kind::Unknown => "a value",
        }
    }
}

/// Checks a parsed query.
pub fn validate(query: &Query) -> Result<()> {
    Validator { values: false }.query(query)
}

/// [`validate`], and the values of geometry literals too: a declination within -90..90, finite coordinates, a
/// CIRCLE radius within 0..180, a BOX size within 0..180 (what a query run by the engine needs; `adql check` judges
/// the grammar alone).
pub fn validate_values(query: &Query) -> Result<()> {
    Validator { values: true }.query(query)
}

struct Validator {
    /// Check the values of constant geometry arguments.
    values: bool,
}

/// The value of a constant number (a literal, maybe signed), with its position.
fn constant(e: &Expr) -> Option<f64> {
    match e.unnested() {
        Expr::Literal(Literal::Int(t) | Literal::Real(t), _) => t.parse().ok(),
        Expr::Literal(Literal::Hex(v), _) => Some(*v as f64),
        Expr::Unary {
            op: UnaryOp::Neg,
            expr,
            ..
        } => constant(expr).map(|v| -v),
        Expr::Unary {
            op: UnaryOp::Plus,
            expr,
            ..
        } => constant(expr),
        _ => None,
    }
}

fn err(pos: Pos, message: impl Into<String>) -> AdqlError {
    AdqlError::syntax(pos, message)
}

impl Validator {
    #[recursive::recursive]
    fn query(&self, q: &Query) -> Result<()> {
        for cte in &q.with {
            self.query(&cte.query)?;
        }
        self.set_expr(&q.body)?;
        for item in &q.order_by {
            self.value(&item.expr)?;
        }
        Ok(())
    }

    #[recursive::recursive]
    fn set_expr(&self, s: &SetExpr) -> Result<()> {
        match s {
            SetExpr::Select(select) => self.select(select),
            SetExpr::Nested(q) => self.query(q),
            SetExpr::SetOp { left, right, .. } => {
                self.set_expr(left)?;
                self.set_expr(right)
            }
        }
    }

    fn select(&self, s: &Select) -> Result<()> {
        for item in &s.items {
            if let SelectItem::Expr { expr, .. } = item {
                self.value(expr)?;
            }
        }
        for t in &s.from {
            self.table_ref(t)?;
        }
        if let Some(cond) = &s.selection {
            self.condition(cond, "WHERE")?;
        }
        for g in &s.group_by {
            self.value(g)?;
        }
        if let Some(cond) = &s.having {
            self.condition(cond, "HAVING")?;
        }
        Ok(())
    }

    #[recursive::recursive]
    fn table_ref(&self, t: &TableRef) -> Result<()> {
        match t {
            TableRef::Table { .. } => Ok(()),
            TableRef::Derived { query, .. } => self.query(query),
            TableRef::Nested(inner) => self.table_ref(inner),
            TableRef::Join {
                left,
                right,
                constraint,
                ..
            } => {
                self.table_ref(left)?;
                self.table_ref(right)?;
                if let JoinConstraint::On(cond) = constraint {
                    self.condition(cond, "ON")?;
                }
                Ok(())
            }
        }
    }

    /// An expression where a condition is required.
    #[recursive::recursive]
    fn condition(&self, e: &Expr, clause: &str) -> Result<()> {
        let kind = self.kind(e)?;
        if kind != Kind::Bool {
            let hint = match e.function_name().as_deref() {
                Some("CONTAINS") | Some("INTERSECTS") => {
                    " (CONTAINS and INTERSECTS return 1 or 0: write CONTAINS(...) = 1)"
                }
                _ => "",
            };
            return Err(err(
                e.pos(),
                format!(
                    "{clause} needs a condition such as a comparison, found {}{hint}",
                    kind.describe()
                ),
            ));
        }
        Ok(())
    }

    /// An expression where a value (not a condition) is required.
    fn value(&self, e: &Expr) -> Result<Kind> {
        let kind = self.kind(e)?;
        if kind == Kind::Bool {
            return Err(err(
                e.pos(),
                "a condition cannot be used as a value in ADQL (there is no boolean type); use CASE WHEN ... THEN 1 ELSE 0 END",
            ));
        }
        Ok(kind)
    }

    /// A value that must be a number (or may be one: unknown kinds pass).
    /// A constant `what` must lie within `range` (degrees); anything not constant is checked when it is computed.
    fn within(&self, e: &Expr, what: &str, range: std::ops::RangeInclusive<f64>) -> Result<()> {
        if !self.values {
            return Ok(());
        }
        match constant(e) {
            Some(v) if !v.is_finite() || !range.contains(&v) => Err(err(
                e.pos(),
                format!(
                    "{what} is {}; it must be between {} and {} degrees",
                    shown(v),
                    range.start(),
                    range.end()
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The coordinates of a position: a finite RA, a declination within -90..90.
    fn position(&self, ra: &Expr, dec: &Expr, of: &str) -> Result<()> {
        self.within(ra, &format!("the right ascension of {of}"), -1e9..=1e9)?;
        self.within(dec, &format!("the declination of {of}"), -90.0..=90.0)
    }

    fn number(&self, e: &Expr, what: &str) -> Result<()> {
        let kind = self.value(e)?;
        if kind.is_geometry() {
            return Err(err(
                e.pos(),
                format!("{what} must be a number, found {}", kind.describe()),
            ));
        }
        Ok(())
    }

    fn not_geometry(&self, e: &Expr, what: &str) -> Result<Kind> {
        let kind = self.value(e)?;
        if kind.is_geometry() {
            return Err(err(
                e.pos(),
                format!("{what} cannot be {}", kind.describe()),
            ));
        }
        Ok(kind)
    }

    fn geometry(&self, e: &Expr, what: &str) -> Result<Kind> {
        let kind = self.value(e)?;
        if matches!(kind, Kind::Num | Kind::Str) {
            return Err(err(
                e.pos(),
                format!(
                    "{what} must be a geometry (POINT, CIRCLE, POLYGON, ...), found {}",
                    kind.describe()
                ),
            ));
        }
        Ok(kind)
    }

    fn point(&self, e: &Expr, what: &str) -> Result<()> {
        let kind = self.value(e)?;
        if !matches!(kind, Kind::Point | Kind::Unknown | Kind::Geometry) {
            return Err(err(
                e.pos(),
                format!("{what} must be a POINT, found {}", kind.describe()),
            ));
        }
        Ok(())
    }

    #[recursive::recursive]
    fn kind(&self, e: &Expr) -> Result<Kind> {
        Ok(match e {
            Expr::Column(_) => Kind::Unknown,
            Expr::Literal(lit, _) => match lit {
                Literal::Int(_) | Literal::Real(_) | Literal::Hex(_) => Kind::Num,
                Literal::Str(_) => Kind::Str,
                Literal::Null => Kind::Unknown,
            },
            Expr::Nested(inner, _) => self.kind(inner)?,
            Expr::Unary {
                op: UnaryOp::Not,
                expr,
                ..
            } => {
                self.condition(expr, "NOT")?;
                Kind::Bool
            }
            Expr::Unary { expr, op, .. } => {
                let what = if *op == UnaryOp::BitNot {
                    "the operand of ~"
                } else {
                    "a signed value"
                };
                self.number(expr, what)?;
                Kind::Num
            }
            Expr::Binary {
                op, left, right, ..
            } => match op {
                BinOp::And | BinOp::Or => {
                    self.condition(left, op.sql())?;
                    self.condition(right, op.sql())?;
                    Kind::Bool
                }
                op if op.is_comparison() => {
                    self.value(left)?;
                    self.value(right)?;
                    Kind::Bool
                }
                BinOp::Concat => {
                    self.not_geometry(left, "an operand of ||")?;
                    self.not_geometry(right, "an operand of ||")?;
                    Kind::Str
                }
                _ => {
                    let what = format!("an operand of {}", op.sql());
                    self.number(left, &what)?;
                    self.number(right, &what)?;
                    Kind::Num
                }
            },
            Expr::Between {
                expr, low, high, ..
            } => {
                self.value(expr)?;
                self.value(low)?;
                self.value(high)?;
                Kind::Bool
            }
            Expr::InList { expr, list, .. } => {
                self.value(expr)?;
                for v in list {
                    self.value(v)?;
                }
                Kind::Bool
            }
            Expr::InSubquery { expr, query, .. } => {
                self.value(expr)?;
                self.query(query)?;
                Kind::Bool
            }
            Expr::Like { expr, pattern, .. } => {
                self.not_geometry(expr, "the value of LIKE")?;
                self.not_geometry(pattern, "the pattern of LIKE")?;
                Kind::Bool
            }
            Expr::IsNull { expr, .. } => {
                self.value(expr)?;
                Kind::Bool
            }
            Expr::Exists { query, .. } => {
                self.query(query)?;
                Kind::Bool
            }
            Expr::Subquery { query, .. } => {
                self.query(query)?;
                Kind::Unknown
            }
            Expr::Cast { expr, ty, .. } => {
                let from = self.value(expr)?;
                match ty {
                    CastType::Point | CastType::Circle | CastType::Polygon => {
                        if from == Kind::Num {
                            return Err(err(expr.pos(), "a number cannot be cast to a geometry"));
                        }
                        match ty {
                            CastType::Point => Kind::Point,
                            CastType::Circle => Kind::Circle,
                            _ => Kind::Polygon,
                        }
                    }
                    CastType::Char(_) | CastType::Varchar(_) => Kind::Str,
                    CastType::Timestamp => Kind::Unknown,
                    _ => {
                        if from.is_geometry() {
                            return Err(err(
                                expr.pos(),
                                format!("{} cannot be cast to a number", from.describe()),
                            ));
                        }
                        Kind::Num
                    }
                }
            }
            Expr::Case {
                operand,
                whens,
                otherwise,
                ..
            } => {
                if let Some(op) = operand {
                    self.value(op)?;
                }
                let mut result = Kind::Unknown;
                for (cond, value) in whens {
                    if operand.is_some() {
                        self.value(cond)?;
                    } else {
                        self.condition(cond, "CASE WHEN")?;
                    }
                    let k = self.value(value)?;
                    if result == Kind::Unknown {
                        result = k;
                    }
                }
                if let Some(o) = otherwise {
                    self.value(o)?;
                }
                result
            }
            Expr::Function {
                name, args, star, ..
            } => self.function(name, args, *star)?,
        })
    }

    fn function(&self, name: &Ident, args: &[Expr], star: bool) -> Result<Kind> {
        let upper = name.name.to_ascii_uppercase();
        let Some(f) = lookup_function(&name.name) else {
            return Err(err(
                name.pos,
                format!(
                    "unknown function {}: it is neither an ADQL function nor a user-defined function of this service",
                    name.name
                ),
            ));
        };
        if star {
            return Ok(Kind::Num);
        }
        let n = args.len();
        if n < f.min_args || n > f.max_args {
            let expected = if f.min_args == f.max_args {
                format!("{}", f.min_args)
            } else if f.max_args == usize::MAX {
                format!("at least {}", f.min_args)
            } else {
                format!("{} to {}", f.min_args, f.max_args)
            };
            return Err(err(
                name.pos,
                format!("{upper} takes {expected} argument(s), found {n}"),
            ));
        }
        // An optional leading coordinate-system string in the geometry constructors (deprecated in ADQL 2.1).
        Ok(match f.kind {
            FunctionKind::Numeric => {
                for a in args {
                    self.number(a, &format!("an argument of {upper}"))?;
                }
                if matches!(upper.as_str(), "ROUND" | "TRUNCATE") && n == 2 {
                    check_signed_integer(&args[1], &upper)?;
                }
                if upper == "RAND"
                    && n == 1
                    && !matches!(args[0].unnested(), Expr::Literal(Literal::Int(_), _))
                {
                    return Err(err(
                        args[0].pos(),
                        "the seed of RAND must be an unsigned integer literal",
                    ));
                }
                Kind::Num
            }
            FunctionKind::String => {
                for a in args {
                    self.not_geometry(a, &format!("an argument of {upper}"))?;
                }
                Kind::Str
            }
            FunctionKind::Aggregate => {
                if upper == "COUNT" {
                    self.value(&args[0])?;
                } else {
                    self.not_geometry(&args[0], &format!("the argument of {upper}"))?;
                }
                Kind::Num
            }
            FunctionKind::Coalesce => {
                let mut result = Kind::Unknown;
                for a in args {
                    let k = self.value(a)?;
                    if result == Kind::Unknown {
                        result = k;
                    }
                }
                result
            }
            FunctionKind::InUnit => {
                self.number(&args[0], "the value of IN_UNIT")?;
                if !matches!(args[1].unnested(), Expr::Literal(Literal::Str(_), _)) {
                    return Err(err(
                        args[1].pos(),
                        "the unit of IN_UNIT must be a string literal such as 'deg'",
                    ));
                }
                Kind::Num
            }
            FunctionKind::Point => {
                let rest = strip_coordsys("POINT", args);
                if rest.len() != 2 {
                    return Err(err(
                        name.pos,
                        format!("POINT takes two coordinates, found {}", rest.len()),
                    ));
                }
                for a in rest {
                    self.number(a, "a coordinate of POINT")?;
                }
                self.position(&rest[0], &rest[1], "POINT")?;
                Kind::Point
            }
            FunctionKind::Circle => {
                let rest = strip_coordsys("CIRCLE", args);
                match rest.len() {
                    3 => {
                        for a in rest {
                            self.number(a, "an argument of CIRCLE")?;
                        }
                        self.position(&rest[0], &rest[1], "the centre of CIRCLE")?;
                        self.within(&rest[2], "the radius of CIRCLE", 0.0..=180.0)?;
                    }
                    2 => {
                        self.point(&rest[0], "the centre of CIRCLE")?;
                        self.number(&rest[1], "the radius of CIRCLE")?;
                        self.within(&rest[1], "the radius of CIRCLE", 0.0..=180.0)?;
                    }
                    k => {
                        return Err(err(
                            name.pos,
                            format!(
                                "CIRCLE takes a centre (two coordinates or a POINT) and a radius, found {k} argument(s)"
                            ),
                        ));
                    }
                }
                Kind::Circle
            }
            FunctionKind::Box => {
                let rest = strip_coordsys("BOX", args);
                match rest.len() {
                    4 => {
                        for a in rest {
                            self.number(a, "an argument of BOX")?;
                        }
                        self.position(&rest[0], &rest[1], "the centre of BOX")?;
                        self.within(&rest[2], "the width of BOX", 0.0..=180.0)?;
                        self.within(&rest[3], "the height of BOX", 0.0..=180.0)?;
                    }
                    3 => {
                        self.point(&rest[0], "the centre of BOX")?;
                        self.number(&rest[1], "the width of BOX")?;
                        self.number(&rest[2], "the height of BOX")?;
                        self.within(&rest[1], "the width of BOX", 0.0..=180.0)?;
                        self.within(&rest[2], "the height of BOX", 0.0..=180.0)?;
                    }
                    k => {
                        return Err(err(
                            name.pos,
                            format!(
                                "BOX takes a centre (two coordinates or a POINT), a width and a height, found {k} argument(s)"
                            ),
                        ));
                    }
                }
                Kind::Polygon
            }
            FunctionKind::Polygon => {
                let rest = strip_coordsys("POLYGON", args);
                let kinds = rest
                    .iter()
                    .map(|a| self.value(a))
                    .collect::<Result<Vec<_>>>()?;
                let all_points = kinds
                    .iter()
                    .all(|k| matches!(k, Kind::Point | Kind::Unknown | Kind::Geometry));
                let any_point = kinds.iter().any(|k| matches!(k, Kind::Point));
                if any_point || (all_points && rest.len() < 6) {
                    if rest.len() < 3 {
                        return Err(err(
                            name.pos,
                            format!(
                                "POLYGON needs at least three vertices, found {}",
                                rest.len()
                            ),
                        ));
                    }
                    for a in rest {
                        self.point(a, "a vertex of POLYGON")?;
                    }
                } else {
                    if rest.len() < 6 || rest.len() % 2 != 0 {
                        return Err(err(
                            name.pos,
                            format!(
                                "POLYGON takes pairs of coordinates for at least three vertices, found {} number(s)",
                                rest.len()
                            ),
                        ));
                    }
                    for a in rest {
                        self.number(a, "a coordinate of POLYGON")?;
                    }
                    for (i, v) in rest.chunks(2).enumerate() {
                        self.position(&v[0], &v[1], &format!("vertex {} of POLYGON", i + 1))?;
                    }
                }
                Kind::Polygon
            }
            FunctionKind::Region => {
                if !matches!(args[0].unnested(), Expr::Literal(Literal::Str(_), _)) {
                    return Err(err(
                        args[0].pos(),
                        "REGION takes a string literal such as 'CIRCLE ICRS 10 20 1'",
                    ));
                }
                Kind::Geometry
            }
            FunctionKind::Centroid => {
                // Only the shape of the argument is checked at translation: DaCHS and the IVOA collection accept
                // CENTROID of any value at the syntax level.
                self.value(&args[0])?;
                Kind::Point
            }
            FunctionKind::Area => {
                self.geometry(&args[0], "the argument of AREA")?;
                Kind::Num
            }
            FunctionKind::Coord => {
                self.point(&args[0], &format!("the argument of {upper}"))?;
                Kind::Num
            }
            FunctionKind::Coordsys => {
                self.geometry(&args[0], "the argument of COORDSYS")?;
                Kind::Str
            }
            FunctionKind::Predicate => {
                self.geometry(&args[0], &format!("the first argument of {upper}"))?;
                self.geometry(&args[1], &format!("the second argument of {upper}"))?;
                Kind::Num
            }
            FunctionKind::Distance => {
                if n == 2 {
                    self.point(&args[0], "the first argument of DISTANCE")?;
                    self.point(&args[1], "the second argument of DISTANCE")?;
                } else if n == 4 {
                    for a in args {
                        self.number(a, "an argument of DISTANCE")?;
                    }
                } else {
                    return Err(err(
                        name.pos,
                        format!(
                            "DISTANCE takes two POINTs or four coordinates, found {n} argument(s)"
                        ),
                    ));
                }
                Kind::Num
            }
            FunctionKind::UserDefined => {
                for a in args {
                    self.value(a)?;
                }
                Kind::Unknown
            }
        })
    }
}

fn check_signed_integer(e: &Expr, func: &str) -> Result<()> {
    let ok = match e.unnested() {
        Expr::Literal(Literal::Int(_), _) => true,
        Expr::Unary {
            op: UnaryOp::Neg | UnaryOp::Plus,
            expr,
            ..
        } => {
            matches!(expr.unnested(), Expr::Literal(Literal::Int(_), _))
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(err(
            e.pos(),
            format!("the number of decimals in {func} must be an integer literal"),
        ))
    }
}

/// The arguments of a geometry constructor without the optional leading coordinate system (deprecated in ADQL 2.1):
/// a string literal or NULL in first place when the call has the longer of its two forms.
pub fn strip_coordsys<'a>(name: &str, args: &'a [Expr]) -> &'a [Expr] {
    let first = args.first().map(Expr::unnested);
    let first_is_coordsys = matches!(first, Some(Expr::Literal(Literal::Str(_), _)))
        || (name == "POLYGON" && matches!(first, Some(Expr::Literal(Literal::Null, _))));
    let longest = match name {
        "POINT" => 3,
        "CIRCLE" => 4,
        "BOX" => 5,
        _ => usize::MAX,
    };
    if args.len() == longest || first_is_coordsys {
        &args[1..]
    } else {
        args
    }
}
/// A number as a message shows it: as written for ordinary sizes, in exponent form when very large or small.
fn shown(v: f64) -> String {
    if v != 0.0 && (v.abs() >= 1e9 || v.abs() < 1e-6) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

