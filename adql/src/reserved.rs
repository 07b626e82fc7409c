//! The reserved words of ADQL 2.1 (section 2.1.2): ADQL's own and SQL-92's. A regular identifier may not be one
//! of these; a delimited identifier ("...") may.

const ADQL_RESERVED: &[&str] = &[
    "ABS", "ACOS", "AREA", "ASIN", "ATAN", "ATAN2", "BIGINT", "BOX", "CAST", "CEILING", "CENTROID", "CHAR", "CIRCLE",
    "COALESCE", "CONTAINS", "COORD1", "COORD2", "COORDSYS", "COS", "COT", "DEGREES", "DISTANCE", "DOUBLE", "EXP",
    "FLOOR", "ILIKE", "INTEGER", "INTERSECTS", "IN_UNIT", "LOG", "LOG10", "LOWER", "MOD", "NULL", "OFFSET", "PI",
    "POINT", "POLYGON", "POWER", "PRECISION", "RADIANS", "RAND", "REAL", "REGION", "ROUND", "SIN", "SMALLINT", "SQRT",
    "TAN", "TIMESTAMP", "TOP", "TRUNCATE", "UPPER", "VARCHAR",
];

const SQL_RESERVED: &[&str] = &[
    "ABSOLUTE", "ACTION", "ADD", "ALL", "ALLOCATE", "ALTER", "AND", "ANY", "ARE", "AS", "ASC", "ASSERTION", "AT",
    "AUTHORIZATION", "AVG", "BEGIN", "BETWEEN", "BIT", "BIT_LENGTH", "BOTH", "BY", "CASCADE", "CASCADED", "CASE",
    "CATALOG", "CHARACTER", "CHARACTER_LENGTH", "CHAR_LENGTH", "CHECK", "CLOSE", "COLLATE", "COLLATION", "COLUMN",
    "COMMIT", "CONNECT", "CONNECTION", "CONSTRAINT", "CONSTRAINTS", "CONTINUE", "CONVERT", "CORRESPONDING", "COUNT",
    "CREATE", "CROSS", "CURRENT", "CURRENT_DATE", "CURRENT_TIME", "CURRENT_TIMESTAMP", "CURRENT_USER", "CURSOR",
    "DATE", "DAY", "DEALLOCATE", "DECIMAL", "DECLARE", "DEFAULT", "DEFERRABLE", "DEFERRED", "DELETE", "DESC",
    "DESCRIBE", "DESCRIPTOR", "DIAGNOSTICS", "DISCONNECT", "DISTINCT", "DOMAIN", "DROP", "ELSE", "END", "END-EXEC",
    "ESCAPE", "EXCEPT", "EXCEPTION", "EXEC", "EXECUTE", "EXISTS", "EXTERNAL", "EXTRACT", "FALSE", "FETCH", "FIRST",
    "FLOAT", "FOR", "FOREIGN", "FOUND", "FROM", "FULL", "GET", "GLOBAL", "GO", "GOTO", "GRANT", "GROUP", "HAVING",
    "HOUR", "IDENTITY", "IMMEDIATE", "IN", "INDICATOR", "INITIALLY", "INNER", "INPUT", "INSENSITIVE", "INSERT", "INT",
    "INTERSECT", "INTERVAL", "INTO", "IS", "ISOLATION", "JOIN", "KEY", "LANGUAGE", "LAST", "LEADING", "LEFT", "LEVEL",
    "LIKE", "LOCAL", "MATCH", "MAX", "MIN", "MINUTE", "MODULE", "MONTH", "NAMES", "NATIONAL", "NATURAL", "NCHAR",
    "NEXT", "NO", "NOT", "NULLIF", "NUMERIC", "OCTET_LENGTH", "OF", "ON", "ONLY", "OPEN", "OPTION", "OR", "ORDER",
    "OUTER", "OUTPUT", "OVERLAPS", "PAD", "PARTIAL", "POSITION", "PREPARE", "PRESERVE", "PRIMARY", "PRIOR",
    "PRIVILEGES", "PROCEDURE", "PUBLIC", "READ", "REFERENCES", "RELATIVE", "RESTRICT", "REVOKE", "RIGHT", "ROLLBACK",
    "ROWS", "SCHEMA", "SCROLL", "SECOND", "SECTION", "SELECT", "SESSION", "SESSION_USER", "SET", "SIZE", "SOME",
    "SPACE", "SQL", "SQLCODE", "SQLERROR", "SQLSTATE", "SUBSTRING", "SUM", "SYSTEM_USER", "TABLE", "TEMPORARY",
    "THEN", "TIME", "TIMEZONE_HOUR", "TIMEZONE_MINUTE", "TO", "TRAILING", "TRANSACTION", "TRANSLATE", "TRANSLATION",
    "TRIM", "TRUE", "UNION", "UNIQUE", "UNKNOWN", "UPDATE", "USAGE", "USER", "USING", "VALUE", "VALUES", "VARYING",
    "VIEW", "WHEN", "WHENEVER", "WHERE", "WITH", "WORK", "WRITE", "YEAR", "ZONE",
];

/// True when `word` is reserved in ADQL 2.1 (compared case-insensitively).
pub fn is_reserved(word: &str) -> bool {
    // The longest reserved word has 17 letters: upper-case on the stack, no allocation per identifier.
    let mut buf = [0u8; 24];
    if word.len() > buf.len() {
        return false;
    }
    for (b, c) in buf.iter_mut().zip(word.bytes()) {
        *b = c.to_ascii_uppercase();
    }
    let Ok(upper) = std::str::from_utf8(&buf[..word.len()]) else { return false };
    ADQL_RESERVED.binary_search(&upper).is_ok() || SQL_RESERVED.binary_search(&upper).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_sorted_for_binary_search() {
        for list in [ADQL_RESERVED, SQL_RESERVED] {
            let mut sorted = list.to_vec();
            sorted.sort();
            assert_eq!(sorted, list);
        }
    }

    #[test]
    fn reserved_words_case_insensitively() {
        assert!(is_reserved("distance"));
        assert!(is_reserved("Select"));
        assert!(!is_reserved("ra"));
        assert!(!is_reserved("dec"));
    }
}
