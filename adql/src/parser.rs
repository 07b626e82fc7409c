//! A recursive-descent parser for ADQL 2.1 (IVOA Recommendation, 2023-12-15), optional features included.
//!
//! Written by hand rather than on `sqlparser` so that every refusal names the position, what was found and what
//! ADQL expects there, and so that SQL which is not ADQL (LIMIT, `::`, `TOP` after `DISTINCT`, DML) is refused with
//! the ADQL way to say it instead of being silently accepted or misread.
//!
//! Why one long module: one recursive-descent parser for the whole ADQL grammar; its productions call each other,
//! and a reader follows the grammar top to bottom in one file.

use crate::ast::*;
use crate::error::{AdqlError, Pos, Result};
use crate::lexer::{Tok, Token, tokenize};
use crate::reserved::is_reserved;

/// How deep expressions and subqueries may nest before the parser refuses (guards the stack).
pub const MAX_DEPTH: usize = 200;
/// Chained operators one query may hold (see `Parser::link`).
pub const MAX_LINKS: usize = 1000;
/// The longest query text taken, in bytes.
pub const MAX_QUERY_BYTES: usize = 1 << 20;
/// The most items one select list may name (planning time grows faster than the list: 20,000 columns took
/// seconds of a thread). `*` counts as one.
pub const MAX_SELECT_ITEMS: usize = 4096;

/// Parses one ADQL query.
pub fn parse(src: &str) -> Result<Query> {
    if src.len() > MAX_QUERY_BYTES {
        return Err(AdqlError::syntax(
            Pos { line: 1, col: 1 },
            format!(
                "the query text is {} bytes; the limit is {MAX_QUERY_BYTES} (upload long lists as a table instead)",
                src.len()
            ),
        ));
    }
    let tokens = tokenize(src)?;
    let mut p = Parser {
        tokens,
        i: 0,
        depth: 0,
        links: 0,
    };
    p.statement()
}

struct Parser {
    tokens: Vec<Token>,
    i: usize,
    depth: usize,
    /// Chained operators so far.
    links: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.tokens[self.i].tok
    }

    fn peek_at(&self, k: usize) -> &Tok {
        &self.tokens[(self.i + k).min(self.tokens.len() - 1)].tok
    }

    fn pos(&self) -> Pos {
        self.tokens[self.i].pos
    }

    /// Moves past the current token; returns where it stood.
    fn bump(&mut self) -> Pos {
        let pos = self.tokens[self.i].pos;
        if self.i < self.tokens.len() - 1 {
            self.i += 1;
        }
        pos
    }

    fn at_kw(&self, kw: &str) -> bool {
        self.peek().is_kw(kw)
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.at_kw(kw) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn eat(&mut self, tok: &Tok) -> bool {
        if self.peek() == tok {
            self.bump();
            true
        } else {
            false
        }
    }

    fn err_expected(&self, expected: &str) -> AdqlError {
        let found = self.peek();
        let mut message = format!("expected {expected}, found {}", found.describe());
        if let Some(hint) = self.hint() {
            message = format!("{message}: {hint}");
        }
        AdqlError::syntax(self.pos(), message)
    }

    /// A word about SQL that is not ADQL, when the current token is such SQL.
    fn hint(&self) -> Option<&'static str> {
        let t = self.peek();
        if t.is_kw("LIMIT") {
            Some("LIMIT is not ADQL; use SELECT TOP n")
        } else if t.is_kw("FETCH") {
            Some("FETCH FIRST is not ADQL; use SELECT TOP n")
        } else if *t == Tok::Semicolon {
            Some("only one query is allowed")
        } else if t.is_kw("TOP") {
            Some("TOP goes right after SELECT or SELECT DISTINCT, as in SELECT DISTINCT TOP 10 ...")
        } else {
            None
        }
    }

    fn expect(&mut self, tok: Tok, what: &str) -> Result<Pos> {
        if *self.peek() == tok {
            Ok(self.bump())
        } else {
            Err(self.err_expected(what))
        }
    }

    fn expect_kw(&mut self, kw: &str) -> Result<Pos> {
        if self.at_kw(kw) {
            Ok(self.bump())
        } else {
            Err(self.err_expected(kw))
        }
    }

    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(AdqlError::syntax(
                self.pos(),
                format!("the query nests deeper than {MAX_DEPTH} levels"),
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    /// Counts one more link of a chain (`a + b + c`, `x OR y OR z`, joins, set operations): chains are built
    /// without recursion, but every later pass walks them recursively, so their length is bounded.
    fn link(&mut self) -> Result<()> {
        self.links += 1;
        if self.links > MAX_LINKS {
            return Err(AdqlError::syntax(
                self.pos(),
                format!(
                    "the query chains more than {MAX_LINKS} operators (AND, OR, +, joins, ...); write long lists \
                     as IN (...) or split the query"
                ),
            ));
        }
        Ok(())
    }

    fn statement(&mut self) -> Result<Query> {
        const NOT_QUERIES: &[&str] = &[
            "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "GRANT", "REVOKE", "TRUNCATE",
            "MERGE", "COPY", "SET", "BEGIN", "COMMIT", "ROLLBACK", "EXPLAIN", "SHOW", "DESCRIBE",
            "VALUES", "CALL", "USE",
        ];
        if let Tok::Word(w) = self.peek() {
            let upper = w.to_ascii_uppercase();
            if NOT_QUERIES.contains(&upper.as_str()) {
                return Err(AdqlError::syntax(
                    self.pos(),
                    format!(
                        "{upper} is not ADQL: ADQL is a query language and only SELECT queries are allowed"
                    ),
                ));
            }
        }
        if *self.peek() == Tok::Eof {
            return Err(self.err_expected("SELECT or WITH"));
        }
        let query = self.query(true)?;
        // One trailing semicolon is tolerated; anything after it is a second statement.
        if self.eat(&Tok::Semicolon) && *self.peek() != Tok::Eof {
            return Err(AdqlError::syntax(
                self.pos(),
                "only one query is allowed; remove what follows the ';'",
            ));
        }
        if *self.peek() != Tok::Eof {
            return Err(self.err_expected("end of query"));
        }
        Ok(query)
    }

    /// `[WITH ...] set_expression [ORDER BY ...] [OFFSET n]`; WITH only where `allow_with`.
    fn query(&mut self, allow_with: bool) -> Result<Query> {
        self.enter()?;
        let pos = self.pos();
        let mut with = Vec::new();
        if self.at_kw("WITH") {
            if !allow_with {
                return Err(AdqlError::syntax(
                    self.pos(),
                    "WITH is only allowed at the start of the whole query, not inside a subquery",
                ));
            }
            self.bump();
            loop {
                let name = self.ident("a name for the WITH query")?;
                self.expect_kw("AS")?;
                self.expect(Tok::LParen, "'(' after AS")?;
                let query = self.query(false)?;
                self.expect(Tok::RParen, "')' to close the WITH query")?;
                with.push(Cte { name, query });
                if !self.eat(&Tok::Comma) {
                    break;
                }
            }
        }
        let body = self.set_expr()?;
        let mut order_by = Vec::new();
        if self.at_kw("ORDER") {
            self.bump();
            self.expect_kw("BY")?;
            loop {
                let expr = self.expr()?;
                let descending = if self.eat_kw("DESC") {
                    true
                } else {
                    self.eat_kw("ASC");
                    false
                };
                if self.at_kw("NULLS") {
                    return Err(AdqlError::syntax(
                        self.pos(),
                        "NULLS FIRST/LAST is not ADQL",
                    ));
                }
                order_by.push(OrderItem { expr, descending });
                if !self.eat(&Tok::Comma) {
                    break;
                }
            }
        }
        let offset = if self.eat_kw("OFFSET") {
            Some(self.unsigned("an unsigned integer after OFFSET")?)
        } else {
            None
        };
        self.leave();
        Ok(Query {
            with,
            body,
            order_by,
            offset,
            pos,
        })
    }

    fn unsigned(&mut self, what: &str) -> Result<u64> {
        match self.peek().clone() {
            Tok::Int(s) => {
                let pos = self.bump();
                s.parse::<u64>()
                    .map_err(|_| AdqlError::syntax(pos, format!("{s} is too large")))
            }
            _ => Err(self.err_expected(what)),
        }
    }

    /// `term { (UNION | EXCEPT) [ALL] term }`
    fn set_expr(&mut self) -> Result<SetExpr> {
        let mut left = self.set_term()?;
        loop {
            let op = if self.at_kw("UNION") {
                SetOp::Union
            } else if self.at_kw("EXCEPT") {
                SetOp::Except
            } else {
                return Ok(left);
            };
            let pos = self.bump();
            let all = self.eat_kw("ALL");
            self.eat_kw("DISTINCT");
            let right = self.set_term()?;
            self.link()?;
            left = SetExpr::SetOp {
                op,
                all,
                left: Box::new(left),
                right: Box::new(right),
                pos,
            };
        }
    }

    /// `primary { INTERSECT [ALL] primary }`: INTERSECT binds tighter than UNION and EXCEPT.
    fn set_term(&mut self) -> Result<SetExpr> {
        let mut left = self.set_primary()?;
        while self.at_kw("INTERSECT") {
            let pos = self.bump();
            let all = self.eat_kw("ALL");
            self.eat_kw("DISTINCT");
            let right = self.set_primary()?;
            self.link()?;
            left = SetExpr::SetOp {
                op: SetOp::Intersect,
                all,
                left: Box::new(left),
                right: Box::new(right),
                pos,
            };
        }
        Ok(left)
    }

    fn set_primary(&mut self) -> Result<SetExpr> {
        if *self.peek() == Tok::LParen {
            self.bump();
            let q = self.query(false)?;
            self.expect(Tok::RParen, "')' to close the parenthesized query")?;
            return Ok(SetExpr::Nested(Box::new(q)));
        }
        if !self.at_kw("SELECT") {
            return Err(self.err_expected("SELECT"));
        }
        Ok(SetExpr::Select(Box::new(self.select()?)))
    }

    fn select(&mut self) -> Result<Select> {
        let pos = self.expect_kw("SELECT")?;
        let mut distinct = false;
        if self.eat_kw("DISTINCT") {
            distinct = true;
        } else {
            self.eat_kw("ALL");
        }
        let mut top = None;
        if self.eat_kw("TOP") {
            if *self.peek() == Tok::Minus {
                return Err(AdqlError::syntax(
                    self.pos(),
                    "TOP takes an unsigned integer; a negative row count has no meaning",
                ));
            }
            top = Some(self.unsigned("an unsigned integer after TOP")?);
            if self.at_kw("DISTINCT") || self.at_kw("ALL") {
                return Err(AdqlError::syntax(
                    self.pos(),
                    "DISTINCT goes before TOP in ADQL: write SELECT DISTINCT TOP n ...",
                ));
            }
        }
        let mut items = Vec::new();
        loop {
            if items.len() == MAX_SELECT_ITEMS {
                return Err(AdqlError::syntax(
                    self.pos(),
                    format!("a select list of more than {MAX_SELECT_ITEMS} items; select fewer columns"),
                ));
            }
            items.push(self.select_item()?);
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        if !self.at_kw("FROM") {
            return Err(self.err_expected(if items.is_empty() {
                "a select list"
            } else {
                "',' or FROM"
            }));
        }
        self.bump();
        let mut from = Vec::new();
        loop {
            from.push(self.table_ref()?);
            if !self.eat(&Tok::Comma) {
                break;
            }
        }
        let selection = if self.eat_kw("WHERE") {
            Some(self.expr()?)
        } else {
            None
        };
        let mut group_by = Vec::new();
        if self.eat_kw("GROUP") {
            self.expect_kw("BY")?;
            loop {
                group_by.push(self.expr()?);
                if !self.eat(&Tok::Comma) {
                    break;
                }
            }
        }
        let having = if self.eat_kw("HAVING") {
            Some(self.expr()?)
        } else {
            None
        };
        Ok(Select {
            distinct,
            top,
            items,
            from,
            selection,
            group_by,
            having,
            pos,
        })
    }

    fn select_item(&mut self) -> Result<SelectItem> {
        if *self.peek() == Tok::Star {
            let pos = self.bump();
            return Ok(SelectItem::Wildcard(pos));
        }
        if self.at_kw("FROM") {
            return Err(self.err_expected("a select list"));
        }
        // `qualifier.*`
        let save = self.i;
        if let Ok(first) = self.ident("a name") {
            let mut parts = vec![first];
            while *self.peek() == Tok::Period {
                self.bump();
                if *self.peek() == Tok::Star {
                    self.bump();
                    if parts.len() > 3 {
                        return Err(AdqlError::syntax(
                            parts[0].pos,
                            "a table name has at most three parts",
                        ));
                    }
                    return Ok(SelectItem::QualifiedWildcard(parts));
                }
                match self.ident("a name") {
                    Ok(id) => parts.push(id),
                    Err(_) => break,
                }
            }
        }
        self.i = save;
        let expr = self.expr()?;
        let alias = self.alias()?;
        Ok(SelectItem::Expr { expr, alias })
    }

    /// `[AS] name`; without AS only a word that is not reserved counts as an alias.
    fn alias(&mut self) -> Result<Option<Ident>> {
        if self.eat_kw("AS") {
            return Ok(Some(self.ident("a name after AS")?));
        }
        match self.peek() {
            Tok::Quoted(_) => Ok(Some(self.ident("a name")?)),
            Tok::Word(w) if !is_reserved(w) => {
                if w.eq_ignore_ascii_case("LIMIT") && matches!(self.peek_at(1), Tok::Int(_)) {
                    return Err(AdqlError::syntax(
                        self.pos(),
                        "LIMIT is not ADQL: use SELECT TOP n",
                    ));
                }
                Ok(Some(self.ident("a name")?))
            }
            _ => Ok(None),
        }
    }

    /// An identifier that may name a table, column or alias: a delimited one, or a regular one that is not reserved.
    fn ident(&mut self, what: &str) -> Result<Ident> {
        let pos = self.pos();
        match self.peek().clone() {
            Tok::Quoted(name) => {
                self.bump();
                Ok(Ident {
                    name,
                    quoted: true,
                    pos,
                })
            }
            Tok::Word(name) => {
                if is_reserved(&name) {
                    return Err(AdqlError::syntax(
                        pos,
                        format!(
                            "expected {what}, found the reserved word {}; to use it as a name, write it as a delimited identifier (\"{}\")",
                            name.to_ascii_uppercase(),
                            name.to_ascii_lowercase()
                        ),
                    ));
                }
                self.bump();
                Ok(Ident {
                    name,
                    quoted: false,
                    pos,
                })
            }
            _ => Err(self.err_expected(what)),
        }
    }

    fn table_ref(&mut self) -> Result<TableRef> {
        let mut left = self.table_primary()?;
        loop {
            let pos = self.pos();
            let natural = self.eat_kw("NATURAL");
            let explicit_inner = self.at_kw("INNER");
            let kind = if self.eat_kw("INNER") {
                JoinKind::Inner
            } else if self.eat_kw("LEFT") {
                self.eat_kw("OUTER");
                JoinKind::Left
            } else if self.eat_kw("RIGHT") {
                self.eat_kw("OUTER");
                JoinKind::Right
            } else if self.eat_kw("FULL") {
                self.eat_kw("OUTER");
                JoinKind::Full
            } else if !natural && self.at_kw("CROSS") {
                self.bump();
                JoinKind::Cross
            } else if self.at_kw("JOIN") {
                JoinKind::Inner
            } else if natural {
                return Err(self.err_expected("JOIN after NATURAL"));
            } else {
                return Ok(left);
            };
            self.expect_kw("JOIN")?;
            let right = self.table_primary()?;
            let constraint = if natural {
                if self.at_kw("ON") || self.at_kw("USING") {
                    return Err(AdqlError::syntax(
                        self.pos(),
                        "a NATURAL join takes neither ON nor USING",
                    ));
                }
                JoinConstraint::Natural
            } else if kind == JoinKind::Cross {
                JoinConstraint::None
            } else if self.eat_kw("ON") {
                JoinConstraint::On(self.expr()?)
            } else if self.eat_kw("USING") {
                self.expect(Tok::LParen, "'(' after USING")?;
                let mut cols = Vec::new();
                loop {
                    cols.push(self.ident("a column name")?);
                    if !self.eat(&Tok::Comma) {
                        break;
                    }
                }
                self.expect(Tok::RParen, "')' to close USING")?;
                JoinConstraint::Using(cols)
            } else if explicit_inner && matches!(right, TableRef::Table { .. }) {
                return Err(self.err_expected("ON or USING after INNER JOIN (or write CROSS JOIN)"));
            } else {
                // A join without a condition pairs every row with every row, as DaCHS and ADQLLib read it.
                JoinConstraint::None
            };
            self.link()?;
            left = TableRef::Join {
                left: Box::new(left),
                right: Box::new(right),
                kind,
                constraint,
                pos,
            };
        }
    }

    fn table_primary(&mut self) -> Result<TableRef> {
        if *self.peek() == Tok::LParen {
            let open = self.pos();
            self.enter()?;
            self.bump();
            let starts_query =
                self.at_kw("SELECT") || self.at_kw("WITH") || self.starts_nested_query();
            let result = if starts_query {
                if self.at_kw("WITH") {
                    return Err(AdqlError::syntax(
                        self.pos(),
                        "WITH is only allowed at the start of the whole query, not inside a subquery",
                    ));
                }
                let query = self.query(false)?;
                self.expect(Tok::RParen, "')' to close the subquery")?;
                let alias = match self.alias()? {
                    Some(a) => a,
                    None => {
                        return Err(AdqlError::syntax(
                            self.pos(),
                            format!(
                                "a subquery in FROM needs a name: add AS name after the ')' (found {})",
                                self.peek().describe()
                            ),
                        ));
                    }
                };
                TableRef::Derived {
                    query: Box::new(query),
                    alias,
                }
            } else {
                let inner = self.table_ref()?;
                if !matches!(inner, TableRef::Join { .. }) {
                    return Err(AdqlError::syntax(
                        open,
                        "parentheses in FROM enclose a subquery or a join",
                    ));
                }
                self.expect(Tok::RParen, "')' to close the joined table")?;
                TableRef::Nested(Box::new(inner))
            };
            self.leave();
            return Ok(result);
        }
        let mut name = vec![self.ident("a table name")?];
        while *self.peek() == Tok::Period {
            self.bump();
            name.push(self.ident("a table name after '.'")?);
        }
        if name.len() > 3 {
            return Err(AdqlError::syntax(
                name[0].pos,
                "a table name has at most three parts: catalog.schema.table",
            ));
        }
        let alias = self.alias()?;
        Ok(TableRef::Table { name, alias })
    }

    /// After a '(' in FROM: do more '(' lead to SELECT (a parenthesized query) rather than to a join?
    fn starts_nested_query(&self) -> bool {
        let mut k = 0;
        while *self.peek_at(k) == Tok::LParen {
            k += 1;
        }
        k > 0 && (self.peek_at(k).is_kw("SELECT") || self.peek_at(k).is_kw("WITH"))
    }

    // ---- expressions, loosest first ----

    pub(crate) fn expr(&mut self) -> Result<Expr> {
        self.enter()?;
        let e = self.or_expr();
        self.leave();
        e
    }

    fn or_expr(&mut self) -> Result<Expr> {
        let mut left = self.and_expr()?;
        while self.at_kw("OR") {
            let pos = self.bump();
            let right = self.and_expr()?;
            self.link()?;
            left = Expr::Binary {
                op: BinOp::Or,
                left: Box::new(left),
                right: Box::new(right),
                pos,
            };
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> Result<Expr> {
        let mut left = self.not_expr()?;
        while self.at_kw("AND") {
            let pos = self.bump();
            let right = self.not_expr()?;
            self.link()?;
            left = Expr::Binary {
                op: BinOp::And,
                left: Box::new(left),
                right: Box::new(right),
                pos,
            };
        }
        Ok(left)
    }

    fn not_expr(&mut self) -> Result<Expr> {
        if self.at_kw("NOT") {
            let pos = self.bump();
            self.enter()?;
            let inner = self.not_expr()?;
            self.leave();
            return Ok(Expr::Unary {
                op: UnaryOp::Not,
                expr: Box::new(inner),
                pos,
            });
        }
        self.predicate()
    }

    fn predicate(&mut self) -> Result<Expr> {
        if self.at_kw("EXISTS") {
            let pos = self.bump();
            self.expect(Tok::LParen, "'(' and a subquery after EXISTS")?;
            let query = self.query(false)?;
            self.expect(Tok::RParen, "')' to close the subquery")?;
            return Ok(Expr::Exists {
                query: Box::new(query),
                pos,
            });
        }
        let left = self.bitor_expr()?;
        let pos = self.pos();
        let op = match self.peek() {
            Tok::Eq => Some(BinOp::Eq),
            Tok::Ne => Some(BinOp::Ne),
            Tok::Lt => Some(BinOp::Lt),
            Tok::Gt => Some(BinOp::Gt),
            Tok::Le => Some(BinOp::Le),
            Tok::Ge => Some(BinOp::Ge),
            _ => None,
        };
        if let Some(op) = op {
            self.bump();
            let right = self.bitor_expr()?;
            return Ok(Expr::Binary {
                op,
                left: Box::new(left),
                right: Box::new(right),
                pos,
            });
        }
        let negated = if self.at_kw("NOT")
            && (self.peek_at(1).is_kw("BETWEEN")
                || self.peek_at(1).is_kw("IN")
                || self.peek_at(1).is_kw("LIKE")
                || self.peek_at(1).is_kw("ILIKE"))
        {
            self.bump();
            true
        } else {
            false
        };
        if self.eat_kw("BETWEEN") {
            let low = self.bitor_expr()?;
            self.expect_kw("AND")?;
            let high = self.bitor_expr()?;
            return Ok(Expr::Between {
                expr: Box::new(left),
                low: Box::new(low),
                high: Box::new(high),
                negated,
                pos,
            });
        }
        if self.eat_kw("IN") {
            self.expect(
                Tok::LParen,
                "'(' and a list of values or a subquery after IN",
            )?;
            if self.at_kw("SELECT") || self.starts_nested_query() {
                let query = self.query(false)?;
                self.expect(Tok::RParen, "')' to close the subquery")?;
                return Ok(Expr::InSubquery {
                    expr: Box::new(left),
                    query: Box::new(query),
                    negated,
                    pos,
                });
            }
            let mut list = Vec::new();
            loop {
                list.push(self.bitor_expr()?);
                if !self.eat(&Tok::Comma) {
                    break;
                }
            }
            self.expect(Tok::RParen, "',' or ')' in the IN list")?;
            return Ok(Expr::InList {
                expr: Box::new(left),
                list,
                negated,
                pos,
            });
        }
        let like = self.at_kw("LIKE");
        if like || self.at_kw("ILIKE") {
            self.bump();
            let pattern = self.bitor_expr()?;
            if self.at_kw("ESCAPE") {
                return Err(AdqlError::syntax(self.pos(), "LIKE ... ESCAPE is not ADQL"));
            }
            return Ok(Expr::Like {
                expr: Box::new(left),
                pattern: Box::new(pattern),
                negated,
                case_insensitive: !like,
                pos,
            });
        }
        if self.eat_kw("IS") {
            let negated = self.eat_kw("NOT");
            if !self.eat_kw("NULL") {
                return Err(self.err_expected(if negated {
                    "NULL after IS NOT"
                } else {
                    "NULL or NOT NULL after IS"
                }));
            }
            return Ok(Expr::IsNull {
                expr: Box::new(left),
                negated,
                pos,
            });
        }
        Ok(left)
    }

    fn bitor_expr(&mut self) -> Result<Expr> {
        let mut left = self.bitxor_expr()?;
        while *self.peek() == Tok::Pipe {
            let pos = self.bump();
            let right = self.bitxor_expr()?;
            self.link()?;
            left = Expr::Binary {
                op: BinOp::BitOr,
                left: Box::new(left),
                right: Box::new(right),
                pos,
            };
        }
        Ok(left)
    }

    fn bitxor_expr(&mut self) -> Result<Expr> {
        let mut left = self.bitand_expr()?;
        while *self.peek() == Tok::Caret {
            let pos = self.bump();
            let right = self.bitand_expr()?;
            self.link()?;
            left = Expr::Binary {
                op: BinOp::BitXor,
                left: Box::new(left),
                right: Box::new(right),
                pos,
            };
        }
        Ok(left)
    }

    fn bitand_expr(&mut self) -> Result<Expr> {
        let mut left = self.additive()?;
        while *self.peek() == Tok::Amp {
            let pos = self.bump();
            let right = self.additive()?;
            self.link()?;
            left = Expr::Binary {
                op: BinOp::BitAnd,
                left: Box::new(left),
                right: Box::new(right),
                pos,
            };
        }
        Ok(left)
    }

    fn additive(&mut self) -> Result<Expr> {
        let mut left = self.multiplicative()?;
        loop {
            let op = match self.peek() {
                Tok::Plus => BinOp::Add,
                Tok::Minus => BinOp::Sub,
                Tok::Concat => BinOp::Concat,
                _ => return Ok(left),
            };
            let pos = self.bump();
            let right = self.multiplicative()?;
            self.link()?;
            left = Expr::Binary {
                op,
                left: Box::new(left),
                right: Box::new(right),
                pos,
            };
        }
    }

    fn multiplicative(&mut self) -> Result<Expr> {
        let mut left = self.unary()?;
        loop {
            let op = match self.peek() {
                Tok::Star => BinOp::Mul,
                Tok::Slash => BinOp::Div,
                _ => return Ok(left),
            };
            let pos = self.bump();
            let right = self.unary()?;
            self.link()?;
            left = Expr::Binary {
                op,
                left: Box::new(left),
                right: Box::new(right),
                pos,
            };
        }
    }

    fn unary(&mut self) -> Result<Expr> {
        let op = match self.peek() {
            Tok::Minus => UnaryOp::Neg,
            Tok::Plus => UnaryOp::Plus,
            Tok::Tilde => UnaryOp::BitNot,
            _ => return self.primary(),
        };
        let pos = self.bump();
        self.enter()?;
        let inner = self.unary()?;
        self.leave();
        Ok(Expr::Unary {
            op,
            expr: Box::new(inner),
            pos,
        })
    }

    fn primary(&mut self) -> Result<Expr> {
        let pos = self.pos();
        match self.peek().clone() {
            Tok::Int(s) => {
                self.bump();
                Ok(Expr::Literal(Literal::Int(s), pos))
            }
            Tok::Real(s) => {
                if !s.parse::<f64>().is_ok_and(f64::is_finite) {
                    return Err(AdqlError::syntax(
                        pos,
                        format!("the number {s} is beyond the range of a double (about 1.8e308)"),
                    ));
                }
                self.bump();
                Ok(Expr::Literal(Literal::Real(s), pos))
            }
            Tok::Hex(v) => {
                self.bump();
                Ok(Expr::Literal(Literal::Hex(v), pos))
            }
            Tok::Str(s) => {
                self.bump();
                // Adjacent string literals separated by white space concatenate (SQL-92, ADQL 2.1 section 2.1.3).
                let mut s = s;
                while let Tok::Str(more) = self.peek().clone() {
                    self.bump();
                    s.push_str(&more);
                }
                Ok(Expr::Literal(Literal::Str(s), pos))
            }
            Tok::LParen => {
                self.bump();
                self.enter()?;
                if self.at_kw("SELECT") || self.starts_nested_query() {
                    let query = self.query(false)?;
                    self.expect(Tok::RParen, "')' to close the subquery")?;
                    self.leave();
                    return Ok(Expr::Subquery {
                        query: Box::new(query),
                        pos,
                    });
                }
                if self.at_kw("WITH") {
                    return Err(AdqlError::syntax(
                        self.pos(),
                        "WITH is only allowed at the start of the whole query, not inside a subquery",
                    ));
                }
                let inner = self.expr()?;
                self.expect(Tok::RParen, "')'")?;
                self.leave();
                Ok(Expr::Nested(Box::new(inner), pos))
            }
            Tok::Word(w) => {
                let upper = w.to_ascii_uppercase();
                match upper.as_str() {
                    "NULL" => {
                        self.bump();
                        Ok(Expr::Literal(Literal::Null, pos))
                    }
                    "TRUE" | "FALSE" => Err(AdqlError::syntax(
                        pos,
                        format!(
                            "{upper} is not ADQL: ADQL has no boolean literals; compare with 1 or 0"
                        ),
                    )),
                    "CAST" if *self.peek_at(1) == Tok::LParen => self.cast(),
                    "CASE" => self.case(),
                    "EXISTS" => self.predicate(),
                    "INTERVAL" | "DATE" | "TIME" if matches!(self.peek_at(1), Tok::Str(_)) => {
                        Err(AdqlError::syntax(
                            pos,
                            format!(
                                "{upper} '...' literals are not ADQL; use a string or CAST('...' AS TIMESTAMP)"
                            ),
                        ))
                    }
                    _ if *self.peek_at(1) == Tok::LParen => self.function(),
                    _ => self.column_ref(),
                }
            }
            Tok::Quoted(_) => self.column_ref(),
            _ => {
                Err(self
                    .err_expected("a value: a column, a number, a string, a function call or '('"))
            }
        }
    }

    fn column_ref(&mut self) -> Result<Expr> {
        let mut parts = vec![self.ident("a column name")?];
        while *self.peek() == Tok::Period {
            self.bump();
            parts.push(self.ident("a column name after '.'")?);
        }
        if *self.peek() == Tok::LParen {
            return Err(AdqlError::syntax(
                parts[0].pos,
                "function names cannot be qualified; a delimited identifier cannot name a function either",
            ));
        }
        if parts.len() > 4 {
            return Err(AdqlError::syntax(
                parts[0].pos,
                "a column reference has at most four parts: catalog.schema.table.column",
            ));
        }
        Ok(Expr::Column(parts))
    }

    fn function(&mut self) -> Result<Expr> {
        let Tok::Word(name) = self.peek().clone() else {
            unreachable!("function() is only called on a word")
        };
        let name = Ident {
            name,
            quoted: false,
            pos: self.bump(),
        };
        self.expect(Tok::LParen, "'('")?;
        self.enter()?;
        let upper = name.name.to_ascii_uppercase();
        let is_aggregate = matches!(upper.as_str(), "COUNT" | "SUM" | "AVG" | "MIN" | "MAX");
        if *self.peek() == Tok::Star {
            if upper != "COUNT" {
                return Err(AdqlError::syntax(
                    self.pos(),
                    format!("'*' is only allowed in COUNT(*), not in {upper}"),
                ));
            }
            self.bump();
            self.expect(Tok::RParen, "')' after COUNT(*")?;
            self.leave();
            return Ok(Expr::Function {
                name,
                args: Vec::new(),
                distinct: false,
                star: true,
            });
        }
        let mut distinct = false;
        if is_aggregate {
            if self.eat_kw("DISTINCT") {
                distinct = true;
            } else {
                self.eat_kw("ALL");
            }
        }
        let mut args = Vec::new();
        if *self.peek() != Tok::RParen {
            loop {
                args.push(self.expr()?);
                if !self.eat(&Tok::Comma) {
                    break;
                }
            }
        }
        self.expect(Tok::RParen, "',' or ')' in the argument list")?;
        self.leave();
        Ok(Expr::Function {
            name,
            args,
            distinct,
            star: false,
        })
    }

    fn cast(&mut self) -> Result<Expr> {
        let pos = self.bump();
        self.expect(Tok::LParen, "'(' after CAST")?;
        let expr = self.expr()?;
        self.expect_kw("AS")?;
        let ty_pos = self.pos();
        let word = match self.peek().clone() {
            Tok::Word(w) => w.to_ascii_uppercase(),
            _ => return Err(self.err_expected("a type after AS")),
        };
        self.bump();
        let length = |p: &mut Parser| -> Result<Option<u32>> {
            if p.eat(&Tok::LParen) {
                let n = p.unsigned("a length")?;
                p.expect(Tok::RParen, "')' after the length")?;
                Ok(Some(u32::try_from(n).map_err(|_| {
                    AdqlError::syntax(ty_pos, "length too large")
                })?))
            } else {
                Ok(None)
            }
        };
        let ty = match word.as_str() {
            "SMALLINT" => CastType::SmallInt,
            "INTEGER" => CastType::Integer,
            "BIGINT" => CastType::BigInt,
            "REAL" => CastType::Real,
            "DOUBLE" => {
                self.expect_kw("PRECISION")?;
                CastType::Double
            }
            "CHAR" => CastType::Char(length(self)?),
            "VARCHAR" => CastType::Varchar(length(self)?),
            "TIMESTAMP" => CastType::Timestamp,
            "POINT" => CastType::Point,
            "CIRCLE" => CastType::Circle,
            "POLYGON" => CastType::Polygon,
            "INT" => {
                return Err(AdqlError::syntax(
                    ty_pos,
                    "INT is not an ADQL type: use INTEGER",
                ));
            }
            "FLOAT" => {
                return Err(AdqlError::syntax(
                    ty_pos,
                    "FLOAT is not an ADQL type: use REAL or DOUBLE PRECISION",
                ));
            }
            "TEXT" | "STRING" => {
                return Err(AdqlError::syntax(
                    ty_pos,
                    format!("{word} is not an ADQL type: use VARCHAR"),
                ));
            }
            _ => {
                return Err(AdqlError::syntax(
                    ty_pos,
                    format!(
                        "{word} is not an ADQL type; expected SMALLINT, INTEGER, BIGINT, REAL, DOUBLE PRECISION, CHAR, VARCHAR, TIMESTAMP, POINT, CIRCLE or POLYGON"
                    ),
                ));
            }
        };
        self.expect(Tok::RParen, "')' to close CAST")?;
        Ok(Expr::Cast {
            expr: Box::new(expr),
            ty,
            pos,
        })
    }

    fn case(&mut self) -> Result<Expr> {
        let pos = self.bump();
        self.enter()?;
        let operand = if self.at_kw("WHEN") {
            None
        } else {
            Some(Box::new(self.expr()?))
        };
        let mut whens = Vec::new();
        while self.eat_kw("WHEN") {
            let cond = self.expr()?;
            self.expect_kw("THEN")?;
            let value = self.expr()?;
            whens.push((cond, value));
        }
        if whens.is_empty() {
            return Err(self.err_expected("WHEN"));
        }
        let otherwise = if self.eat_kw("ELSE") {
            Some(Box::new(self.expr()?))
        } else {
            None
        };
        self.expect_kw("END")?;
        self.leave();
        Ok(Expr::Case {
            operand,
            whens,
            otherwise,
            pos,
        })
    }
}
