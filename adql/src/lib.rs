//! ADQL 2.1 for skyshard: parsing, validation with positioned errors, spherical geometry as DataFusion functions,
//! and translation of a query into a DataFusion logical plan through a catalog trait.
//!
//! Implements the IVOA Astronomical Data Query Language, version 2.1 (IVOA Recommendation 2023-12-15), with its
//! optional features, and the DALI 1.1 geometry value serializations. This crate does no I/O.
//!
//! Without the default `engine` feature only the parser, the validator and the spherical geometry are built (no
//! DataFusion): that is what the fuzz target links.

pub mod ast;
#[cfg(feature = "engine")]
pub mod catalog;
#[cfg(feature = "engine")]
pub mod engine;
pub mod error;
pub mod functions;
pub mod geometry;
pub mod lexer;
pub mod parser;
pub mod reserved;
#[cfg(feature = "engine")]
pub mod translate;
#[cfg(feature = "engine")]
pub mod udf;
pub mod units;
pub mod validate;

#[cfg(feature = "engine")]
pub use catalog::{Catalog, CatalogTable, ColumnMeta, MemoryCatalog};
#[cfg(feature = "engine")]
pub use engine::Engine;
pub use error::{AdqlError, Pos, Result};

/// Parses and validates one ADQL query: the whole of what `skyshard adql check` does.
pub fn check(src: &str) -> Result<ast::Query> {
    let query = parser::parse(src)?;
    validate::validate(&query)?;
    Ok(query)
}
