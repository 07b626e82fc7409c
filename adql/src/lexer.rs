//! ADQL 2.1 tokens (IVOA ADQL 2.1, section 2.1: characters, tokens, literals, comments).
//!
//! The lexer is strict where ADQL is strict: regular identifiers start with a letter, string literals use single
//! quotes, delimited identifiers use double quotes, comments start with `--`. Characters that have no meaning in
//! ADQL (`%`, `?`, `[`, `:`, ...) are errors with a position.

use crate::error::{AdqlError, Pos};

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// A regular identifier or keyword, as written (keywords are matched case-insensitively).
    Word(String),
    /// A delimited identifier, with `""` already turned into `"`.
    Quoted(String),
    /// An unsigned integer literal (decimal digits only).
    Int(String),
    /// An unsigned exact or approximate numeric literal with a period or an exponent.
    Real(String),
    /// A hexadecimal literal `0x...`, value already decoded.
    Hex(u64),
    Str(String),
    LParen,
    RParen,
    Comma,
    Period,
    Star,
    Plus,
    Minus,
    Slash,
    Concat,
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    Semicolon,
    Amp,
    Pipe,
    Caret,
    Tilde,
    Eof,
}

impl Tok {
    /// How the token reads in an error message.
    pub fn describe(&self) -> String {
        match self {
            Tok::Word(w) => format!("'{w}'"),
            Tok::Quoted(w) => format!("\"{w}\""),
            Tok::Int(s) | Tok::Real(s) => format!("number {s}"),
            Tok::Hex(v) => format!("number 0x{v:x}"),
            Tok::Str(s) => format!("string '{s}'"),
            Tok::Eof => "end of query".to_string(),
            other => format!("'{}'", other.symbol()),
        }
    }

    fn symbol(&self) -> &'static str {
        match self {
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::Comma => ",",
            Tok::Period => ".",
            Tok::Star => "*",
            Tok::Plus => "+",
            Tok::Minus => "-",
            Tok::Slash => "/",
            Tok::Concat => "||",
            Tok::Eq => "=",
            Tok::Ne => "<>",
            Tok::Lt => "<",
            Tok::Gt => ">",
            Tok::Le => "<=",
            Tok::Ge => ">=",
            Tok::Semicolon => ";",
            Tok::Amp => "&",
            Tok::Pipe => "|",
            Tok::Caret => "^",
            Tok::Tilde => "~",
            _ => "",
        }
    }

    /// True when this is the keyword `kw` (given in upper case).
    pub fn is_kw(&self, kw: &str) -> bool {
        matches!(self, Tok::Word(w) if w.eq_ignore_ascii_case(kw))
    }
}

#[derive(Debug, Clone)]
pub struct Token {
    pub tok: Tok,
    pub pos: Pos,
}

pub fn tokenize(src: &str) -> Result<Vec<Token>, AdqlError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let (mut line, mut col) = (1u32, 1u32);
    // Advances over `n` characters, keeping line and column right.
    let advance = |i: &mut usize, line: &mut u32, col: &mut u32, n: usize| {
        for _ in 0..n {
            if chars[*i] == '\n' {
                *line += 1;
                *col = 1;
            } else {
                *col += 1;
            }
            *i += 1;
        }
    };
    while i < chars.len() {
        let c = chars[i];
        let pos = Pos { line, col };
        if c.is_whitespace() {
            advance(&mut i, &mut line, &mut col, 1);
            continue;
        }
        if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                advance(&mut i, &mut line, &mut col, 1);
            }
            continue;
        }
        if c.is_ascii_alphabetic() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                advance(&mut i, &mut line, &mut col, 1);
            }
            if i < chars.len() && chars[i].is_alphabetic() {
                return Err(AdqlError::syntax(
                    Pos { line, col },
                    format!(
                        "character '{}' is not allowed in a regular identifier; use a delimited identifier (\"...\")",
                        chars[i]
                    ),
                ));
            }
            out.push(Token {
                tok: Tok::Word(chars[start..i].iter().collect()),
                pos,
            });
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            if c == '0' && matches!(chars.get(i + 1), Some('x') | Some('X')) {
                let start = i + 2;
                let mut j = start;
                while j < chars.len() && chars[j].is_ascii_hexdigit() {
                    j += 1;
                }
                let digits: String = chars[start..j].iter().collect();
                let value = u64::from_str_radix(&digits, 16).map_err(|_| {
                    AdqlError::syntax(
                        pos,
                        format!("hexadecimal literal 0x{digits} is empty or larger than 64 bits"),
                    )
                })?;
                let n = j - i;
                advance(&mut i, &mut line, &mut col, n);
                out.push(Token {
                    tok: Tok::Hex(value),
                    pos,
                });
            } else {
                let start = i;
                let mut real = false;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    advance(&mut i, &mut line, &mut col, 1);
                }
                if i < chars.len() && chars[i] == '.' {
                    real = true;
                    advance(&mut i, &mut line, &mut col, 1);
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        advance(&mut i, &mut line, &mut col, 1);
                    }
                }
                if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                    let mut j = i + 1;
                    if j < chars.len() && (chars[j] == '+' || chars[j] == '-') {
                        j += 1;
                    }
                    if j < chars.len() && chars[j].is_ascii_digit() {
                        while j < chars.len() && chars[j].is_ascii_digit() {
                            j += 1;
                        }
                        real = true;
                        let n = j - i;
                        advance(&mut i, &mut line, &mut col, n);
                    }
                }
                let text: String = chars[start..i].iter().collect();
                out.push(Token {
                    tok: if real {
                        Tok::Real(text)
                    } else {
                        Tok::Int(text)
                    },
                    pos,
                });
            }
            continue;
        }
        if c == '\'' || c == '"' {
            let mut text = String::new();
            advance(&mut i, &mut line, &mut col, 1);
            loop {
                if i >= chars.len() {
                    let what = if c == '\'' {
                        "string literal"
                    } else {
                        "delimited identifier"
                    };
                    return Err(AdqlError::syntax(
                        pos,
                        format!("unterminated {what}: expected a closing {c}"),
                    ));
                }
                if chars[i] == c {
                    if chars.get(i + 1) == Some(&c) {
                        text.push(c);
                        advance(&mut i, &mut line, &mut col, 2);
                        continue;
                    }
                    advance(&mut i, &mut line, &mut col, 1);
                    break;
                }
                text.push(chars[i]);
                advance(&mut i, &mut line, &mut col, 1);
            }
            if c == '"' && text.is_empty() {
                return Err(AdqlError::syntax(
                    pos,
                    "a delimited identifier cannot be empty",
                ));
            }
            out.push(Token {
                tok: if c == '\'' {
                    Tok::Str(text)
                } else {
                    Tok::Quoted(text)
                },
                pos,
            });
            continue;
        }
        let next = chars.get(i + 1).copied();
        let (tok, n) = match (c, next) {
            ('|', Some('|')) => (Tok::Concat, 2),
            ('<', Some('>')) => (Tok::Ne, 2),
            ('!', Some('=')) => (Tok::Ne, 2),
            ('<', Some('=')) => (Tok::Le, 2),
            ('>', Some('=')) => (Tok::Ge, 2),
            ('=', Some('=')) => {
                return Err(AdqlError::syntax(
                    pos,
                    "'==' is not ADQL: use '=' to compare",
                ));
            }
            ('(', _) => (Tok::LParen, 1),
            (')', _) => (Tok::RParen, 1),
            (',', _) => (Tok::Comma, 1),
            ('.', _) => (Tok::Period, 1),
            ('*', _) => (Tok::Star, 1),
            ('+', _) => (Tok::Plus, 1),
            ('-', _) => (Tok::Minus, 1),
            ('/', _) => (Tok::Slash, 1),
            ('=', _) => (Tok::Eq, 1),
            ('<', _) => (Tok::Lt, 1),
            ('>', _) => (Tok::Gt, 1),
            (';', _) => (Tok::Semicolon, 1),
            ('&', _) => (Tok::Amp, 1),
            ('|', _) => (Tok::Pipe, 1),
            ('^', _) => (Tok::Caret, 1),
            ('~', _) => (Tok::Tilde, 1),
            ('_', _) => {
                return Err(AdqlError::syntax(
                    pos,
                    "a regular identifier must start with a letter; write names starting with '_' as delimited identifiers (\"_name\")",
                ));
            }
            ('%', _) => {
                return Err(AdqlError::syntax(
                    pos,
                    "'%' is not an ADQL operator: use MOD(a, b) for the remainder",
                ));
            }
            (':', Some(':')) => {
                return Err(AdqlError::syntax(
                    pos,
                    "'::' casts are not ADQL: use CAST(value AS type)",
                ));
            }
            _ => {
                return Err(AdqlError::syntax(
                    pos,
                    format!("unexpected character '{c}'"),
                ));
            }
        };
        advance(&mut i, &mut line, &mut col, n);
        out.push(Token { tok, pos });
    }
    out.push(Token {
        tok: Tok::Eof,
        pos: Pos { line, col },
    });
    Ok(out)
}
