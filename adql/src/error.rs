//! Errors a person can act on: every syntax and name error carries the `line:column` where it was found.

use std::fmt;

/// A position in the query text, both 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, PartialOrd, Ord)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AdqlError {
    /// The text is not ADQL 2.1.
    #[error("{pos}: {message}")]
    Syntax { pos: Pos, message: String },
    /// The text is ADQL but does not fit the catalog: unknown table, column or function, wrong argument types.
    #[error("{pos}: {message}")]
    Semantic { pos: Pos, message: String },
    /// DataFusion refused the translated plan; the message names the ADQL objects involved.
    #[error("{message}")]
    Plan { message: String },
    /// The query failed while running.
    #[error("query failed: {message}")]
    Execution { message: String },
}

impl AdqlError {
    pub fn syntax(pos: Pos, message: impl Into<String>) -> Self {
        AdqlError::Syntax {
            pos,
            message: message.into(),
        }
    }

    pub fn semantic(pos: Pos, message: impl Into<String>) -> Self {
        AdqlError::Semantic {
            pos,
            message: message.into(),
        }
    }

    /// Where in the query the error was found, when known.
    pub fn pos(&self) -> Option<Pos> {
        match self {
            AdqlError::Syntax { pos, .. } | AdqlError::Semantic { pos, .. } => Some(*pos),
            _ => None,
        }
    }

    /// The message without the position prefix.
    pub fn message(&self) -> &str {
        match self {
            AdqlError::Syntax { message, .. }
            | AdqlError::Semantic { message, .. }
            | AdqlError::Plan { message }
            | AdqlError::Execution { message } => message,
        }
    }

    /// True for errors in the user's query (a 400 in TAP), false for failures of the service.
    pub fn is_user_error(&self) -> bool {
        !matches!(self, AdqlError::Execution { .. })
    }
}

pub type Result<T, E = AdqlError> = std::result::Result<T, E>;
