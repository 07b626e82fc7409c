//! ADQL syntax tree -> SQL that DataFusion's planner reads, resolving tables through the [`Catalog`].
//!
//! The output is SQL text in DataFusion's dialect: every identifier quoted with its resolved spelling, every ADQL
//! function mapped to a DataFusion built-in or to one of our `adql_*` functions, TOP turned into LIMIT, geometry
//! constructors folded into the fused kernels where the shapes are known (CONTAINS(POINT, CIRCLE) becomes the cone
//! kernel over plain coordinate columns). SQL text rather than a hand-built plan keeps DataFusion in charge of
//! name resolution, type coercion, subquery decorrelation and join planning.
//!
//! Why one long module: one pass over the syntax tree that writes SQL; every node kind has its case here, and
//! splitting by node kind would scatter the quoting and naming rules they share.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::ast::*;
use crate::catalog::{Catalog, CatalogTable};
use crate::error::{AdqlError, Pos, Result};
use crate::functions::is_implemented;
use crate::geometry::stcs::{self, Region};
use crate::units::{Unit, parse_unit};
use crate::validate::strip_coordsys;

/// The translated query and the catalog tables it reads.
#[derive(Debug, Clone)]
pub struct Translation {
    pub sql: String,
    pub tables: Vec<Arc<CatalogTable>>,
}

/// Translates a validated query.
pub fn translate(query: &Query, catalog: &dyn Catalog) -> Result<Translation> {
    let mut t = Translator {
        catalog,
        tables: Vec::new(),
        aliases: HashMap::new(),
        delimited: HashMap::new(),
        unaliased: HashMap::new(),
    };
    t.collect_query(query, &mut Vec::new())?;
    for table in &t.tables {
        for c in &table.columns {
            if c.original_name != c.name {
                t.delimited.insert(c.original_name.clone(), c.name.clone());
            }
        }
    }
    let sql = t.query(query, &mut Vec::new())?;
    Ok(Translation {
        sql,
        tables: t.tables,
    })
}

pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

pub fn quote_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A translated expression; geometry constructors stay structured so that consumers can fuse them.
#[derive(Debug, Clone)]
enum Sql {
    Text(String),
    Point(String, String),
    Circle(String, String, String),
}

impl Sql {
    fn text(&self) -> String {
        match self {
            Sql::Text(s) => s.clone(),
            Sql::Point(a, b) => format!("adql_point({a}, {b})"),
            Sql::Circle(a, b, r) => format!("adql_circle({a}, {b}, {r})"),
        }
    }

    /// The coordinates of a point-valued expression.
    fn point_coords(&self) -> (String, String) {
        match self {
            Sql::Point(a, b) => (a.clone(), b.clone()),
            other => {
                let t = other.text();
                (format!("adql_coord1({t})"), format!("adql_coord2({t})"))
            }
        }
    }
}

struct Translator<'a> {
    catalog: &'a dyn Catalog,
    tables: Vec<Arc<CatalogTable>>,
    /// Lower-cased table names and aliases in the query, for the units of IN_UNIT.
    aliases: HashMap<String, Arc<CatalogTable>>,
    /// Original column spellings that differ from the exposed lower-case names.
    delimited: HashMap<String, String>,
    /// Catalog tables named in FROM without an alias, by lower-cased table name.
    unaliased: HashMap<String, Arc<CatalogTable>>,
}

fn sem(pos: Pos, message: impl Into<String>) -> AdqlError {
    AdqlError::semantic(pos, message)
}

impl<'a> Translator<'a> {
    // ---- pass 1: resolve table names ----

    #[recursive::recursive]
    fn collect_query(&mut self, q: &Query, ctes: &mut Vec<String>) -> Result<()> {
        let depth = ctes.len();
        for cte in &q.with {
            self.collect_query(&cte.query, ctes)?;
            ctes.push(cte.name.name.to_lowercase());
        }
        self.collect_set(&q.body, ctes)?;
        for item in &q.order_by {
            self.collect_expr(&item.expr, ctes)?;
        }
        ctes.truncate(depth);
        Ok(())
    }

    #[recursive::recursive]
    fn collect_set(&mut self, s: &SetExpr, ctes: &mut Vec<String>) -> Result<()> {
        match s {
            SetExpr::Select(sel) => {
                for t in &sel.from {
                    self.collect_table(t, ctes)?;
                }
                for item in &sel.items {
                    if let SelectItem::Expr { expr, .. } = item {
                        self.collect_expr(expr, ctes)?;
                    }
                }
                for e in sel
                    .selection
                    .iter()
                    .chain(sel.having.iter())
                    .chain(sel.group_by.iter())
                {
                    self.collect_expr(e, ctes)?;
                }
                Ok(())
            }
            SetExpr::Nested(q) => self.collect_query(q, ctes),
            SetExpr::SetOp { left, right, .. } => {
                self.collect_set(left, ctes)?;
                self.collect_set(right, ctes)
            }
        }
    }

    #[recursive::recursive]
    fn collect_expr(&mut self, e: &Expr, ctes: &mut Vec<String>) -> Result<()> {
        match e {
            Expr::Exists { query, .. } | Expr::Subquery { query, .. } => {
                self.collect_query(query, ctes)
            }
            Expr::InSubquery { expr, query, .. } => {
                self.collect_expr(expr, ctes)?;
                self.collect_query(query, ctes)
            }
            Expr::Unary { expr, .. }
            | Expr::Nested(expr, _)
            | Expr::Cast { expr, .. }
            | Expr::IsNull { expr, .. } => self.collect_expr(expr, ctes),
            Expr::Binary { left, right, .. }
            | Expr::Like {
                expr: left,
                pattern: right,
                ..
            } => {
                self.collect_expr(left, ctes)?;
                self.collect_expr(right, ctes)
            }
            Expr::Between {
                expr, low, high, ..
            } => {
                self.collect_expr(expr, ctes)?;
                self.collect_expr(low, ctes)?;
                self.collect_expr(high, ctes)
            }
            Expr::InList { expr, list, .. } => {
                self.collect_expr(expr, ctes)?;
                list.iter().try_for_each(|x| self.collect_expr(x, ctes))
            }
            Expr::Function { args, .. } => args.iter().try_for_each(|x| self.collect_expr(x, ctes)),
            Expr::Case {
                operand,
                whens,
                otherwise,
                ..
            } => {
                if let Some(o) = operand {
                    self.collect_expr(o, ctes)?;
                }
                for (a, b) in whens {
                    self.collect_expr(a, ctes)?;
                    self.collect_expr(b, ctes)?;
                }
                if let Some(o) = otherwise {
                    self.collect_expr(o, ctes)?;
                }
                Ok(())
            }
            Expr::Column(_) | Expr::Literal(..) => Ok(()),
        }
    }

    #[recursive::recursive]
    fn collect_table(&mut self, t: &TableRef, ctes: &mut Vec<String>) -> Result<()> {
        match t {
            TableRef::Table { name, alias } => {
                if let Some(table) = self.resolve_table(name, ctes)? {
                    let key = alias
                        .as_ref()
                        .map_or(table.name.clone(), |a| a.name.to_lowercase());
                    if alias.is_none() {
                        self.unaliased.insert(table.name.clone(), table.clone());
                    }
                    self.aliases.insert(key, table.clone());
                    if !self.tables.iter().any(|x| Arc::ptr_eq(x, &table)) {
                        self.tables.push(table);
                    }
                }
                Ok(())
            }
            TableRef::Derived { query, .. } => self.collect_query(query, ctes),
            TableRef::Nested(inner) => self.collect_table(inner, ctes),
            TableRef::Join {
                left,
                right,
                constraint,
                ..
            } => {
                self.collect_table(left, ctes)?;
                self.collect_table(right, ctes)?;
                if let JoinConstraint::On(e) = constraint {
                    self.collect_expr(e, ctes)?;
                }
                Ok(())
            }
        }
    }

    /// The catalog table a FROM name denotes, or None for a WITH query of that name.
    fn resolve_table(&self, name: &[Ident], ctes: &[String]) -> Result<Option<Arc<CatalogTable>>> {
        let table = name.last().expect("a table name has at least one part");
        if name.len() == 1 && ctes.contains(&table.name.to_lowercase()) {
            return Ok(None);
        }
        let schema = if name.len() >= 2 {
            Some(name[name.len() - 2].name.as_str())
        } else {
            None
        };
        let found = self.catalog.find(schema, &table.name);
        let written = name
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>()
            .join(".");
        match found.len() {
            1 => Ok(found.into_iter().next()),
            0 => {
                let mut known: Vec<String> = self
                    .catalog
                    .tables()
                    .iter()
                    .map(|t| t.qualified_name())
                    .collect();
                known.sort();
                let hint = if known.is_empty() {
                    "no tables are loaded".to_string()
                } else if known.len() <= 12 {
                    format!("known tables: {}", known.join(", "))
                } else {
                    format!(
                        "{} tables are known; query TAP_SCHEMA.tables to list them",
                        known.len()
                    )
                };
                Err(sem(
                    name[0].pos,
                    format!("table {written} not found ({hint})"),
                ))
            }
            _ => {
                let names: Vec<String> = found.iter().map(|t| t.qualified_name()).collect();
                Err(sem(
                    name[0].pos,
                    format!(
                        "table name {written} is ambiguous: write one of {}",
                        names.join(", ")
                    ),
                ))
            }
        }
    }

    // ---- pass 2: write SQL ----

    fn ident(&self, id: &Ident) -> String {
        if id.quoted {
            quote_ident(self.delimited.get(&id.name).map_or(&id.name, |s| s))
        } else {
            quote_ident(&id.name.to_lowercase())
        }
    }

    /// A table or alias part of a column reference.
    fn qualifier(&self, id: &Ident) -> String {
        let lower = id.name.to_lowercase();
        if !id.quoted
            || self
                .tables
                .iter()
                .any(|t| t.name == lower || t.schema == lower)
        {
            quote_ident(&lower)
        } else {
            quote_ident(&id.name)
        }
    }

    #[recursive::recursive]
    fn query(&mut self, q: &Query, ctes: &mut Vec<String>) -> Result<String> {
        let depth = ctes.len();
        let mut out = String::new();
        if !q.with.is_empty() {
            out.push_str("WITH ");
            for (i, cte) in q.with.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let body = self.query(&cte.query, ctes)?;
                out.push_str(&format!("{} AS ({body})", self.ident(&cte.name)));
                ctes.push(cte.name.name.to_lowercase());
            }
            out.push(' ');
        }
        // A lone SELECT keeps its TOP as the query's LIMIT so that ORDER BY applies before it.
        let (body, limit) = match &q.body {
            SetExpr::Select(sel) => (self.select(sel, ctes, false)?, sel.top),
            other => (self.set_expr(other, ctes)?, None),
        };
        out.push_str(&body);
        if !q.order_by.is_empty() {
            out.push_str(" ORDER BY ");
            let items = q
                .order_by
                .iter()
                .map(|o| {
                    let e = match o.expr.unnested() {
                        // ORDER BY n names the n-th select item, as in SQL-92.
                        Expr::Literal(Literal::Int(n), _) => n.clone(),
                        _ => self.expr(&o.expr, ctes)?.text(),
                    };
                    Ok(format!("{e} {}", if o.descending { "DESC" } else { "ASC" }))
                })
                .collect::<Result<Vec<_>>>()?;
            out.push_str(&items.join(", "));
        }
        if let Some(n) = limit {
            out.push_str(&format!(" LIMIT {n}"));
        }
        if let Some(n) = q.offset {
            out.push_str(&format!(" OFFSET {n}"));
        }
        ctes.truncate(depth);
        Ok(out)
    }

    #[recursive::recursive]
    fn set_expr(&mut self, s: &SetExpr, ctes: &mut Vec<String>) -> Result<String> {
        Ok(match s {
            SetExpr::Select(sel) => {
                if sel.top.is_some() {
                    format!("({})", self.select(sel, ctes, true)?)
                } else {
                    self.select(sel, ctes, false)?
                }
            }
            SetExpr::Nested(q) => format!("({})", self.query(q, ctes)?),
            SetExpr::SetOp {
                op,
                all,
                left,
                right,
                ..
            } => {
                let op = match op {
                    SetOp::Union => "UNION",
                    SetOp::Except => "EXCEPT",
                    SetOp::Intersect => "INTERSECT",
                };
                let all = if *all { " ALL" } else { "" };
                let (l, r) = (self.set_expr(left, ctes)?, self.set_expr(right, ctes)?);
                // Parenthesize nested set operations so INTERSECT's precedence survives.
                let wrap = |x: String, e: &SetExpr| {
                    if matches!(e, SetExpr::SetOp { .. }) {
                        format!("({x})")
                    } else {
                        x
                    }
                };
                format!("{} {op}{all} {}", wrap(l, left), wrap(r, right))
            }
        })
    }

    fn select(&mut self, s: &Select, ctes: &mut Vec<String>, with_top: bool) -> Result<String> {
        let mut out = String::from("SELECT ");
        if s.distinct {
            out.push_str("DISTINCT ");
        }
        let mut used: HashSet<String> = HashSet::new();
        let mut items = Vec::new();
        for item in &s.items {
            items.push(match item {
                SelectItem::Wildcard(_) => "*".to_string(),
                SelectItem::QualifiedWildcard(parts) => {
                    // DataFusion needs the full name of an unaliased table before `.*`.
                    let lower = parts[0].name.to_lowercase();
                    match self.unaliased.get(&lower) {
                        Some(t) if parts.len() == 1 => {
                            format!("{}.{}.*", quote_ident(&t.schema), quote_ident(&t.name))
                        }
                        _ => {
                            let q: Vec<String> = parts.iter().map(|p| self.qualifier(p)).collect();
                            format!("{}.*", q.join("."))
                        }
                    }
                }
                SelectItem::Expr { expr, alias } => {
                    let sql = self.expr(expr, ctes)?.text();
                    let name = match alias {
                        Some(a) => {
                            used.insert(if a.quoted {
                                a.name.clone()
                            } else {
                                a.name.to_lowercase()
                            });
                            Some(self.ident(a))
                        }
                        None => match expr.unnested() {
                            // A column keeps its name unless an earlier item took it (ADQL allows repeats).
                            Expr::Column(parts) => {
                                let base = parts
                                    .last()
                                    .map(|p| p.name.to_lowercase())
                                    .unwrap_or_default();
                                if used.insert(base.clone()) {
                                    None
                                } else {
                                    Some(quote_ident(&unique_name(base, &mut used)))
                                }
                            }
                            e => Some(quote_ident(&unique_name(default_name(e), &mut used))),
                        },
                    };
                    match name {
                        Some(n) => format!("{sql} AS {n}"),
                        None => sql,
                    }
                }
            });
        }
        out.push_str(&items.join(", "));
        out.push_str(" FROM ");
        let from = s
            .from
            .iter()
            .map(|t| self.table_ref(t, ctes))
            .collect::<Result<Vec<_>>>()?;
        out.push_str(&from.join(", "));
        if let Some(w) = &s.selection {
            out.push_str(&format!(" WHERE {}", self.expr(w, ctes)?.text()));
        }
        if !s.group_by.is_empty() {
            let g = s
                .group_by
                .iter()
                .map(|e| Ok(self.expr(e, ctes)?.text()))
                .collect::<Result<Vec<_>>>()?;
            out.push_str(&format!(" GROUP BY {}", g.join(", ")));
        }
        if let Some(h) = &s.having {
            out.push_str(&format!(" HAVING {}", self.expr(h, ctes)?.text()));
        }
        if with_top && let Some(n) = s.top {
            out.push_str(&format!(" LIMIT {n}"));
        }
        Ok(out)
    }

    #[recursive::recursive]
    fn table_ref(&mut self, t: &TableRef, ctes: &mut Vec<String>) -> Result<String> {
        Ok(match t {
            TableRef::Table { name, alias } => {
                let base = match self.resolve_table(name, ctes)? {
                    Some(table) => format!(
                        "{}.{}",
                        quote_ident(&table.schema),
                        quote_ident(&table.name)
                    ),
                    None => self.ident(name.last().expect("non-empty name")),
                };
                match alias {
                    Some(a) => format!("{base} AS {}", self.ident(a)),
                    None => base,
                }
            }
            TableRef::Derived { query, alias } => {
                format!("({}) AS {}", self.query(query, ctes)?, self.ident(alias))
            }
            TableRef::Nested(inner) => format!("({})", self.table_ref(inner, ctes)?),
            TableRef::Join {
                left,
                right,
                kind,
                constraint,
                ..
            } => {
                let l = self.table_ref(left, ctes)?;
                let r = self.table_ref(right, ctes)?;
                let natural = matches!(constraint, JoinConstraint::Natural);
                let k = match (kind, constraint) {
                    (JoinKind::Cross, _) | (JoinKind::Inner, JoinConstraint::None) => "CROSS JOIN",
                    (JoinKind::Inner, _) => "INNER JOIN",
                    (JoinKind::Left, _) => "LEFT OUTER JOIN",
                    (JoinKind::Right, _) => "RIGHT OUTER JOIN",
                    (JoinKind::Full, _) => "FULL OUTER JOIN",
                };
                let spec = match constraint {
                    JoinConstraint::On(e) => format!(" ON {}", self.expr(e, ctes)?.text()),
                    JoinConstraint::Using(cols) => {
                        format!(
                            " USING ({})",
                            cols.iter()
                                .map(|c| self.ident(c))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    }
                    // An outer join without a condition keeps every pair.
                    JoinConstraint::None
                        if *kind != JoinKind::Cross && *kind != JoinKind::Inner =>
                    {
                        " ON TRUE".into()
                    }
                    _ => String::new(),
                };
                format!("{l} {}{k} {r}{spec}", if natural { "NATURAL " } else { "" })
            }
        })
    }

    fn text(&mut self, e: &Expr, ctes: &mut Vec<String>) -> Result<String> {
        Ok(self.expr(e, ctes)?.text())
    }

    #[recursive::recursive]
    fn expr(&mut self, e: &Expr, ctes: &mut Vec<String>) -> Result<Sql> {
        Ok(Sql::Text(match e {
            Expr::Column(parts) => {
                let n = parts.len();
                let mut out: Vec<String> =
                    parts[..n - 1].iter().map(|p| self.qualifier(p)).collect();
                out.push(self.ident(&parts[n - 1]));
                out.join(".")
            }
            Expr::Literal(lit, _) => literal(lit),
            Expr::Nested(inner, _) => {
                return Ok(match self.expr(inner, ctes)? {
                    Sql::Text(t) => Sql::Text(format!("({t})")),
                    geometry => geometry,
                });
            }
            Expr::Unary { op, expr, .. } => {
                let x = self.text(expr, ctes)?;
                match op {
                    UnaryOp::Neg => format!("(- {x})"),
                    UnaryOp::Plus => x,
                    // Two's complement: ~x = -x - 1 (DataFusion's SQL has no bitwise NOT).
                    UnaryOp::BitNot => format!("((- {x}) - 1)"),
                    UnaryOp::Not => format!("(NOT {x})"),
                }
            }
            Expr::Binary {
                op, left, right, ..
            } => {
                let (l, r) = (self.text(left, ctes)?, self.text(right, ctes)?);
                if *op == BinOp::BitXor {
                    // DataFusion's SQL has no XOR operator: a ^ b = (a | b) - (a & b).
                    format!("(({l} | {r}) - ({l} & {r}))")
                } else {
                    format!("({l} {} {r})", op.sql())
                }
            }
            Expr::Between {
                expr,
                low,
                high,
                negated,
                ..
            } => format!(
                "({} {}BETWEEN {} AND {})",
                self.text(expr, ctes)?,
                if *negated { "NOT " } else { "" },
                self.text(low, ctes)?,
                self.text(high, ctes)?
            ),
            Expr::InList {
                expr,
                list,
                negated,
                ..
            } => {
                let items = list
                    .iter()
                    .map(|x| self.text(x, ctes))
                    .collect::<Result<Vec<_>>>()?;
                format!(
                    "({} {}IN ({}))",
                    self.text(expr, ctes)?,
                    if *negated { "NOT " } else { "" },
                    items.join(", ")
                )
            }
            Expr::InSubquery {
                expr,
                query,
                negated,
                ..
            } => format!(
                "({} {}IN ({}))",
                self.text(expr, ctes)?,
                if *negated { "NOT " } else { "" },
                self.query(query, ctes)?
            ),
            Expr::Like {
                expr,
                pattern,
                negated,
                case_insensitive,
                ..
            } => format!(
                "({} {}{} {})",
                self.text(expr, ctes)?,
                if *negated { "NOT " } else { "" },
                if *case_insensitive { "ILIKE" } else { "LIKE" },
                self.text(pattern, ctes)?
            ),
            Expr::IsNull { expr, negated, .. } => {
                format!(
                    "({} IS {}NULL)",
                    self.text(expr, ctes)?,
                    if *negated { "NOT " } else { "" }
                )
            }
            Expr::Exists { query, .. } => format!("(EXISTS ({}))", self.query(query, ctes)?),
            Expr::Subquery { query, .. } => format!("({})", self.query(query, ctes)?),
            Expr::Cast { expr, ty, .. } => {
                let inner = self.expr(expr, ctes)?;
                let target = match ty {
                    CastType::SmallInt => "SMALLINT",
                    CastType::Integer => "INT",
                    CastType::BigInt => "BIGINT",
                    CastType::Real => "REAL",
                    CastType::Double => "DOUBLE",
                    CastType::Char(_) | CastType::Varchar(_) => "VARCHAR",
                    CastType::Timestamp => "TIMESTAMP",
                    // Geometry casts keep geometry values as they are.
                    CastType::Point | CastType::Circle | CastType::Polygon => return Ok(inner),
                };
                let mut s = format!("CAST({} AS {target})", inner.text());
                if let CastType::Char(Some(n)) = ty {
                    // CHAR(n) is fixed width: pad or cut to n characters.
                    s = format!("rpad({s}, {n})");
                } else if let CastType::Varchar(Some(n)) = ty {
                    s = format!("substr({s}, 1, {n})");
                }
                s
            }
            Expr::Case {
                operand,
                whens,
                otherwise,
                ..
            } => {
                let mut s = String::from("(CASE");
                if let Some(o) = operand {
                    s.push_str(&format!(" {}", self.text(o, ctes)?));
                }
                for (w, t) in whens {
                    s.push_str(&format!(
                        " WHEN {} THEN {}",
                        self.text(w, ctes)?,
                        self.text(t, ctes)?
                    ));
                }
                if let Some(o) = otherwise {
                    s.push_str(&format!(" ELSE {}", self.text(o, ctes)?));
                }
                s.push_str(" END)");
                s
            }
            Expr::Function {
                name,
                args,
                distinct,
                star,
            } => return self.function(name, args, *distinct, *star, ctes),
        }))
    }

    fn function(
        &mut self,
        name: &Ident,
        args: &[Expr],
        distinct: bool,
        star: bool,
        ctes: &mut Vec<String>,
    ) -> Result<Sql> {
        let upper = name.name.to_ascii_uppercase();
        if !is_implemented(&upper) {
            return Err(sem(
                name.pos,
                format!("function {} is not available on this service", name.name),
            ));
        }
        let mut a = Vec::with_capacity(args.len());
        for x in args {
            a.push(self.expr(x, ctes)?);
        }
        let t = |i: usize| a[i].text();
        let all = |a: &[Sql]| a.iter().map(Sql::text).collect::<Vec<_>>().join(", ");
        let simple = |f: &str| Sql::Text(format!("{f}({})", all(&a)));
        Ok(match upper.as_str() {
            "ABS" | "ACOS" | "ASIN" | "ATAN" | "ATAN2" | "COS" | "COT" | "DEGREES" | "EXP"
            | "FLOOR" | "LOG10" | "RADIANS" | "SIN" | "SQRT" | "TAN" | "LOWER" | "UPPER"
            | "COALESCE" | "ROUND" => simple(&upper.to_lowercase()),
            "CEILING" => simple("ceil"),
            "LOG" => simple("ln"),
            "TRUNCATE" => simple("trunc"),
            "PI" => Sql::Text("pi()".into()),
            "MOD" => Sql::Text(format!("({} % {})", t(0), t(1))),
            "POWER" => Sql::Text(format!(
                "power(CAST({} AS DOUBLE), CAST({} AS DOUBLE))",
                t(0),
                t(1)
            )),
            "RAND" if a.is_empty() => Sql::Text("random()".into()),
            "RAND" => Sql::Text(format!("adql_rand(CAST({} AS BIGINT))", t(0))),
            "COUNT" if star => Sql::Text("count(*)".into()),
            "COUNT" | "SUM" | "AVG" | "MIN" | "MAX" => Sql::Text(format!(
                "{}({}{})",
                upper.to_lowercase(),
                if distinct { "DISTINCT " } else { "" },
                t(0)
            )),
            "IN_UNIT" => {
                let Expr::Literal(Literal::Str(target), pos) = args[1].unnested() else {
                    unreachable!("validated: IN_UNIT's unit is a string literal")
                };
                let to = parse_unit(target)
                    .ok_or_else(|| sem(*pos, format!("unknown unit '{target}'")))?;
                let from = self.unit_of(&args[0]).ok_or_else(|| {
                    sem(
                        args[0].pos(),
                        "the unit of this value is not known, so IN_UNIT cannot convert it",
                    )
                })?;
                let factor = from.conversion_to(&to).ok_or_else(|| {
                    sem(
                        *pos,
                        format!("cannot convert to '{target}': the value measures something else"),
                    )
                })?;
                Sql::Text(format!("(CAST({} AS DOUBLE) * {factor:?})", t(0)))
            }
            "POINT" => {
                let rest = self.geometry_args("POINT", args, &a);
                Sql::Point(rest[0].text(), rest[1].text())
            }
            "CIRCLE" => {
                let rest = self.geometry_args("CIRCLE", args, &a);
                if rest.len() == 3 {
                    Sql::Circle(rest[0].text(), rest[1].text(), rest[2].text())
                } else {
                    let (ra, dec) = rest[0].point_coords();
                    Sql::Circle(ra, dec, rest[1].text())
                }
            }
            "BOX" => {
                let rest = self.geometry_args("BOX", args, &a);
                let (ra, dec, w, h) = if rest.len() == 4 {
                    (
                        rest[0].text(),
                        rest[1].text(),
                        rest[2].text(),
                        rest[3].text(),
                    )
                } else {
                    let (ra, dec) = rest[0].point_coords();
                    (ra, dec, rest[1].text(), rest[2].text())
                };
                Sql::Text(format!("adql_box({ra}, {dec}, {w}, {h})"))
            }
            "POLYGON" => {
                let rest = self.geometry_args("POLYGON", args, &a);
                let points = rest.iter().any(|s| matches!(s, Sql::Point(..))) || rest.len() < 6;
                let coords: Vec<String> = if points {
                    rest.iter()
                        .flat_map(|p| <[String; 2]>::from(p.point_coords()))
                        .collect()
                } else {
                    rest.iter().map(Sql::text).collect()
                };
                Sql::Text(format!("adql_polygon({})", coords.join(", ")))
            }
            "REGION" => {
                let Expr::Literal(Literal::Str(s), pos) = args[0].unnested() else {
                    unreachable!("validated: REGION takes a string literal")
                };
                region(s, *pos)?
            }
            "CENTROID" => match &a[0] {
                Sql::Point(..) => a[0].clone(),
                Sql::Circle(ra, dec, _) => Sql::Point(ra.clone(), dec.clone()),
                other => Sql::Text(format!("adql_centroid({})", other.text())),
            },
            "AREA" => Sql::Text(format!("adql_area({})", t(0))),
            "COORD1" | "COORD2" => {
                let (ra, dec) = a[0].point_coords();
                Sql::Text(if upper == "COORD1" { ra } else { dec })
            }
            "COORDSYS" => Sql::Text(format!("adql_coordsys({})", t(0))),
            "CONTAINS" | "INTERSECTS" => match (&a[0], &a[1]) {
                (Sql::Point(ra, dec), Sql::Circle(cra, cdec, r)) => Sql::Text(format!(
                    "adql_contains_point_circle({ra}, {dec}, {cra}, {cdec}, {r})"
                )),
                (Sql::Circle(cra, cdec, r), Sql::Point(ra, dec)) if upper == "INTERSECTS" => {
                    Sql::Text(format!(
                        "adql_contains_point_circle({ra}, {dec}, {cra}, {cdec}, {r})"
                    ))
                }
                _ => Sql::Text(format!("adql_{}({}, {})", upper.to_lowercase(), t(0), t(1))),
            },
            "DISTANCE" => {
                if a.len() == 4 {
                    simple("adql_distance")
                } else {
                    let (r1, d1) = a[0].point_coords();
                    let (r2, d2) = a[1].point_coords();
                    Sql::Text(format!("adql_distance({r1}, {d1}, {r2}, {d2})"))
                }
            }
            "IVO_HEALPIX_INDEX" => simple("ivo_healpix_index"),
            "IVO_HEALPIX_CENTER" => simple("ivo_healpix_center"),
            other => {
                return Err(sem(
                    name.pos,
                    format!("function {other} is not available on this service"),
                ));
            }
        })
    }

    /// The translated arguments of a geometry constructor, without the coordinate system.
    fn geometry_args<'s>(&self, name: &str, args: &[Expr], translated: &'s [Sql]) -> &'s [Sql] {
        let kept = strip_coordsys(name, args).len();
        &translated[translated.len() - kept..]
    }

    /// The unit of a value, from column metadata through arithmetic (for IN_UNIT).
    fn unit_of(&self, e: &Expr) -> Option<Unit> {
        match e.unnested() {
            Expr::Column(parts) => {
                let col = parts.last()?.name.to_lowercase();
                let unit = if parts.len() >= 2 {
                    let q = parts[parts.len() - 2].name.to_lowercase();
                    self.aliases.get(&q)?.column(&col)?.unit.clone()?
                } else {
                    let mut units = self
                        .tables
                        .iter()
                        .filter_map(|t| t.column(&col))
                        .filter_map(|c| c.unit.clone());
                    units.next()?
                };
                parse_unit(&unit)
            }
            Expr::Literal(Literal::Int(_) | Literal::Real(_) | Literal::Hex(_), _) => {
                Some(Unit::dimensionless())
            }
            Expr::Unary {
                op: UnaryOp::Neg | UnaryOp::Plus,
                expr,
                ..
            } => self.unit_of(expr),
            Expr::Binary {
                op: BinOp::Add | BinOp::Sub,
                left,
                right,
                ..
            } => {
                let (l, r) = (self.unit_of(left)?, self.unit_of(right)?);
                let f = r.conversion_to(&l)?;
                if (f - 1.0).abs() < 1e-12 {
                    Some(l)
                } else {
                    None
                }
            }
            Expr::Binary {
                op: BinOp::Mul,
                left,
                right,
                ..
            } => Some(self.unit_of(left)?.mul(&self.unit_of(right)?)),
            Expr::Binary {
                op: BinOp::Div,
                left,
                right,
                ..
            } => Some(self.unit_of(left)?.mul(&self.unit_of(right)?.powi(-1))),
            Expr::Function { name, args, .. } => match name.name.to_ascii_uppercase().as_str() {
                "ABS" | "ROUND" | "TRUNCATE" | "FLOOR" | "CEILING" | "MIN" | "MAX" | "AVG"
                | "SUM" => self.unit_of(&args[0]),
                "SQRT" => self.unit_of(&args[0])?.sqrt(),
                "POWER" => {
                    let p: i32 = match args[1].unnested() {
                        Expr::Literal(Literal::Int(s), _) => s.parse().ok()?,
                        _ => return None,
                    };
                    Some(self.unit_of(&args[0])?.powi(p))
                }
                "DISTANCE" => parse_unit("deg"),
                "AREA" => parse_unit("deg2"),
                _ => None,
            },
            _ => None,
        }
    }
}

fn literal(lit: &Literal) -> String {
    match lit {
        Literal::Int(s) => {
            let digits = s.trim_start_matches('0');
            if digits.is_empty() {
                "0".to_string()
            } else {
                digits.to_string()
            }
        }
        Literal::Real(s) => {
            let v: f64 = s.parse().unwrap_or(f64::NAN);
            let t = format!("{v:?}");
            if t.contains('.') || t.contains('e') {
                t
            } else {
                format!("{t}.0")
            }
        }
        Literal::Hex(v) => {
            // Hex literals denote the bit pattern of a 64-bit integer.
            format!("{}", *v as i64)
        }
        Literal::Str(s) => quote_str(s),
        Literal::Null => "NULL".into(),
    }
}

/// The output name of an unnamed select item: the function's name, as TAP services usually call it.
fn default_name(e: &Expr) -> String {
    match e {
        Expr::Function { name, .. } => name.name.to_lowercase(),
        Expr::Cast { expr, .. } => default_name(expr.unnested()),
        Expr::Literal(..) => "literal".into(),
        _ => "expr".into(),
    }
}

fn unique_name(base: String, used: &mut HashSet<String>) -> String {
    let mut name = base.clone();
    let mut k = 2;
    while !used.insert(name.clone()) {
        name = format!("{base}_{k}");
        k += 1;
    }
    name
}

/// A `REGION('...')` literal (read by `geometry::stcs`, as text columns of regions are) as a geometry.
fn region(s: &str, pos: Pos) -> Result<Sql> {
    let f = |v: f64| format!("{v:?}");
    let polygon = |pairs: &[(f64, f64)]| {
        Sql::Text(format!(
            "adql_polygon({})",
            pairs
                .iter()
                .flat_map(|&(a, b)| [f(a), f(b)])
                .collect::<Vec<_>>()
                .join(", ")
        ))
    };
    Ok(
        match stcs::parse(s).map_err(|e| sem(pos, format!("REGION: {e}")))? {
            Region::Point(ra, dec) => Sql::Point(f(ra), f(dec)),
            Region::Circle(ra, dec, r) => Sql::Circle(f(ra), f(dec), f(r)),
            Region::Polygon(pairs) => {
                stcs::polygon(&pairs).map_err(|e| sem(pos, format!("REGION: {e}")))?;
                polygon(&pairs)
            }
        },
    )
}
