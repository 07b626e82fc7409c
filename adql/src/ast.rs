//! The ADQL 2.1 syntax tree. Every node that can be named in an error keeps its position.

use crate::error::Pos;

/// An identifier as written: regular identifiers compare case-insensitively, delimited ones exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct Ident {
    pub name: String,
    pub quoted: bool,
    pub pos: Pos,
}

impl Ident {
    /// True when this identifier names `other` under ADQL's case rules.
    pub fn matches(&self, other: &str) -> bool {
        if self.quoted {
            self.name == other
        } else {
            self.name.eq_ignore_ascii_case(other)
        }
    }
}

/// A full query: `[WITH ...] set-expression [ORDER BY ...] [OFFSET n]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub with: Vec<Cte>,
    pub body: SetExpr,
    pub order_by: Vec<OrderItem>,
    pub offset: Option<u64>,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cte {
    pub name: Ident,
    pub query: Query,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOp {
    Union,
    Except,
    Intersect,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SetExpr {
    Select(Box<Select>),
    /// A parenthesized query, which may carry its own ORDER BY and OFFSET.
    Nested(Box<Query>),
    SetOp {
        op: SetOp,
        all: bool,
        left: Box<SetExpr>,
        right: Box<SetExpr>,
        pos: Pos,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Select {
    pub distinct: bool,
    pub top: Option<u64>,
    pub items: Vec<SelectItem>,
    pub from: Vec<TableRef>,
    pub selection: Option<Expr>,
    pub group_by: Vec<Expr>,
    pub having: Option<Expr>,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SelectItem {
    Wildcard(Pos),
    QualifiedWildcard(Vec<Ident>),
    Expr { expr: Expr, alias: Option<Ident> },
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderItem {
    pub expr: Expr,
    pub descending: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    Inner,
    Left,
    Right,
    Full,
    Cross,
}

#[derive(Debug, Clone, PartialEq)]
pub enum JoinConstraint {
    On(Expr),
    Using(Vec<Ident>),
    Natural,
    None,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TableRef {
    Table {
        name: Vec<Ident>,
        alias: Option<Ident>,
    },
    Derived {
        query: Box<Query>,
        alias: Ident,
    },
    Join {
        left: Box<TableRef>,
        right: Box<TableRef>,
        kind: JoinKind,
        constraint: JoinConstraint,
        pos: Pos,
    },
    /// `( joined_table )`
    Nested(Box<TableRef>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// An unsigned integer literal, as written.
    Int(String),
    /// An unsigned decimal or approximate literal, as written.
    Real(String),
    Hex(u64),
    Str(String),
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    Neg,
    Plus,
    BitNot,
    Not,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Concat,
    BitAnd,
    BitOr,
    BitXor,
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    And,
    Or,
}

impl BinOp {
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Gt | BinOp::Le | BinOp::Ge
        )
    }

    pub fn sql(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Concat => "||",
            BinOp::BitAnd => "&",
            BinOp::BitOr => "|",
            BinOp::BitXor => "#",
            BinOp::Eq => "=",
            BinOp::Ne => "<>",
            BinOp::Lt => "<",
            BinOp::Gt => ">",
            BinOp::Le => "<=",
            BinOp::Ge => ">=",
            BinOp::And => "AND",
            BinOp::Or => "OR",
        }
    }
}

/// The ADQL 2.1 CAST targets (section 4.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CastType {
    SmallInt,
    Integer,
    BigInt,
    Real,
    Double,
    Char(Option<u32>),
    Varchar(Option<u32>),
    Timestamp,
    Point,
    Circle,
    Polygon,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Column(Vec<Ident>),
    Literal(Literal, Pos),
    Unary {
        op: UnaryOp,
        expr: Box<Expr>,
        pos: Pos,
    },
    Binary {
        op: BinOp,
        left: Box<Expr>,
        right: Box<Expr>,
        pos: Pos,
    },
    Between {
        expr: Box<Expr>,
        low: Box<Expr>,
        high: Box<Expr>,
        negated: bool,
        pos: Pos,
    },
    InList {
        expr: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
        pos: Pos,
    },
    InSubquery {
        expr: Box<Expr>,
        query: Box<Query>,
        negated: bool,
        pos: Pos,
    },
    Like {
        expr: Box<Expr>,
        pattern: Box<Expr>,
        negated: bool,
        case_insensitive: bool,
        pos: Pos,
    },
    IsNull {
        expr: Box<Expr>,
        negated: bool,
        pos: Pos,
    },
    Exists {
        query: Box<Query>,
        pos: Pos,
    },
    Subquery {
        query: Box<Query>,
        pos: Pos,
    },
    /// A function call; `name` is as written. `star` is `COUNT(*)`.
    Function {
        name: Ident,
        args: Vec<Expr>,
        distinct: bool,
        star: bool,
    },
    Cast {
        expr: Box<Expr>,
        ty: CastType,
        pos: Pos,
    },
    Case {
        operand: Option<Box<Expr>>,
        whens: Vec<(Expr, Expr)>,
        otherwise: Option<Box<Expr>>,
        pos: Pos,
    },
    Nested(Box<Expr>, Pos),
}

impl Expr {
    /// Where the expression starts in the query text.
    pub fn pos(&self) -> Pos {
        match self {
            Expr::Column(parts) => parts[0].pos,
            Expr::Literal(_, pos)
            | Expr::Unary { pos, .. }
            | Expr::Between { pos, .. }
            | Expr::InList { pos, .. }
            | Expr::InSubquery { pos, .. }
            | Expr::Like { pos, .. }
            | Expr::IsNull { pos, .. }
            | Expr::Exists { pos, .. }
            | Expr::Subquery { pos, .. }
            | Expr::Cast { pos, .. }
            | Expr::Case { pos, .. }
            | Expr::Nested(_, pos) => *pos,
            Expr::Binary { left, .. } => left.pos(),
            Expr::Function { name, .. } => name.pos,
        }
    }

    /// The expression without enclosing parentheses.
    pub fn unnested(&self) -> &Expr {
        match self {
            Expr::Nested(inner, _) => inner.unnested(),
            other => other,
        }
    }

    /// The upper-cased function name when this is a call.
    pub fn function_name(&self) -> Option<String> {
        match self.unnested() {
            Expr::Function { name, .. } => Some(name.name.to_ascii_uppercase()),
            _ => None,
        }
    }
}
