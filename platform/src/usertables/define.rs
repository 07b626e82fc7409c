//! Table definitions: the declared columns (names, types, units, UCDs, descriptions), checked, and the layout they
//! call for (partitioned on positions and an id, or replicated).

use std::path::Path;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use metastore::TableKind;

use super::identifier;
use crate::Platform;
use crate::access::Space;

/// The declared columns of a table (Arrow fields with `description`, `unit`, `ucd` metadata) and its description.
#[derive(Debug)]
pub struct Definition {
    pub schema: SchemaRef,
    pub description: Option<String>,
    /// Rows that came with the definition (a VOTable with a DATA part).
    pub rows: Vec<RecordBatch>,
}

/// Checks the declared columns: plain, distinct names.
pub fn check_columns(schema: &Schema) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for f in schema.fields() {
        if !identifier(f.name()) {
            return Err(format!(
                "column {:?}: a column name is a letter then letters, digits and _ (at most 64)",
                f.name()
            ));
        }
        if !seen.insert(f.name().to_ascii_lowercase()) {
            return Err(format!("column {} is declared twice", f.name()));
        }
    }
    if schema.fields().len() > 1000 {
        return Err("a user table has at most 1000 columns".into());
    }
    Ok(())
}

/// How a table with these columns is laid out: partitioned on positions and an id (by their UCDs), or replicated.
pub(super) fn kind_of(
    schema: &Schema,
    platform: &Platform,
) -> (loader::ingest::LoadKind, Option<String>) {
    let ucd = |f: &Field| {
        f.metadata()
            .get("ucd")
            .map(|u| u.to_ascii_lowercase())
            .unwrap_or_default()
    };
    let pick = |want: &str, ok: &dyn Fn(&DataType) -> bool| {
        let matching: Vec<&Arc<Field>> = schema
            .fields()
            .iter()
            .filter(|f| ucd(f).split(';').any(|w| w == want) && ok(f.data_type()))
            .collect();
        matching
            .iter()
            .find(|f| ucd(f).contains("meta.main"))
            .or(matching.first())
            .map(|f| f.name().to_lowercase())
    };
    let double = |t: &DataType| *t == DataType::Float64;
    let integer = |t: &DataType| matches!(t, DataType::Int16 | DataType::Int32 | DataType::Int64);
    match (
        pick("pos.eq.ra", &double),
        pick("pos.eq.dec", &double),
        pick("meta.id", &integer),
    ) {
        (Some(ra), Some(dec), Some(id)) => {
            // The chunk map of the first catalog, so joins with it run chunk by chunk.
            let catalog = platform
                .czar
                .tables()
                .iter()
                .filter(|t| Space::of(&t.record.schema).is_none())
                .find(|t| {
                    matches!(t.record.kind, TableKind::Director { .. })
                        && !t.record.chunks.is_empty()
                })
                .map(|t| t.record.qualified_name());
            (loader::ingest::LoadKind::Director { ra, dec, id }, catalog)
        }
        _ => (loader::ingest::LoadKind::Replicated, None),
    }
}

pub(super) fn write_parquet(
    path: &Path,
    schema: SchemaRef,
    batches: &[RecordBatch],
) -> Result<(), String> {
    let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut w =
        parquet::arrow::ArrowWriter::try_new(file, schema, None).map_err(|e| e.to_string())?;
    for b in batches {
        w.write(b).map_err(|e| e.to_string())?;
    }
    w.close().map_err(|e| e.to_string())?;
    Ok(())
}
