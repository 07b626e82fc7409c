//! What the translator knows of tables: the [`Catalog`] trait (schemas, tables, columns with their TAP metadata)
//! and an in-memory implementation. Names are stored lower-case; regular ADQL identifiers match them
//! case-insensitively, delimited identifiers match a column's original spelling exactly.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::catalog::view::ViewTable;
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::{LogicalPlanBuilder, col};

use crate::error::{AdqlError, Result};

/// TAP metadata of one column (TAP 1.1 section 4: TAP_SCHEMA.columns).
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnMeta {
    /// The name queries use: lower-case.
    pub name: String,
    /// The name as the data spells it (what a delimited identifier must match).
    pub original_name: String,
    pub datatype: DataType,
    pub description: Option<String>,
    pub unit: Option<String>,
    pub ucd: Option<String>,
    pub utype: Option<String>,
    pub xtype: Option<String>,
    pub principal: bool,
    pub indexed: bool,
}

/// A queryable table.
#[derive(Debug, Clone)]
pub struct CatalogTable {
    pub schema: String,
    pub name: String,
    pub description: Option<String>,
    pub columns: Vec<ColumnMeta>,
    pub provider: Arc<dyn TableProvider>,
}

impl CatalogTable {
    /// A table over `provider`, its column metadata read from the Arrow field metadata (`description`, `unit`,
    /// `ucd`, `utype`, `xtype`). Columns not already lower-case are exposed under lower-case names.
    pub fn new(schema: &str, name: &str, provider: Arc<dyn TableProvider>) -> Result<CatalogTable> {
        let arrow_schema: SchemaRef = provider.schema();
        let mut seen = HashMap::new();
        for f in arrow_schema.fields() {
            if let Some(prev) = seen.insert(f.name().to_lowercase(), f.name().clone()) {
                return Err(AdqlError::Plan {
                    message: format!(
                        "table {schema}.{name} has columns {prev} and {} that differ only in case; ADQL cannot tell them apart",
                        f.name()
                    ),
                });
            }
        }
        let needs_rename = arrow_schema
            .fields()
            .iter()
            .any(|f| f.name() != &f.name().to_lowercase());
        let provider = if needs_rename {
            lowercase_view(provider)?
        } else {
            provider
        };
        let columns = arrow_schema
            .fields()
            .iter()
            .map(|f| {
                let m = f.metadata();
                let get = |k: &str| m.get(k).filter(|v| !v.is_empty()).cloned();
                let xtype = get("xtype").or_else(|| {
                    crate::geometry::values::GeomKind::of(f.data_type())
                        .map(|k| k.xtype().to_string())
                });
                ColumnMeta {
                    name: f.name().to_lowercase(),
                    // A provider that already exposes lower-case names may say how the data spells the column.
                    original_name: get("original_name").unwrap_or_else(|| f.name().clone()),
                    datatype: f.data_type().clone(),
                    description: get("description"),
                    unit: get("unit"),
                    ucd: get("ucd"),
                    utype: get("utype"),
                    xtype,
                    principal: m.get("principal").is_some_and(|v| v == "1" || v == "true"),
                    indexed: m.get("indexed").is_some_and(|v| v == "1" || v == "true"),
                }
            })
            .collect();
        Ok(CatalogTable {
            schema: schema.to_lowercase(),
            name: name.to_lowercase(),
            description: None,
            columns,
            provider,
        })
    }

    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    pub fn column(&self, name: &str) -> Option<&ColumnMeta> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

fn lowercase_view(provider: Arc<dyn TableProvider>) -> Result<Arc<dyn TableProvider>> {
    let schema = provider.schema();
    let plan =
        LogicalPlanBuilder::scan("source", provider_as_source(provider), None)
            .and_then(|b| {
                b.project(schema.fields().iter().map(|f| {
                    col(format!("source.\"{}\"", f.name())).alias(f.name().to_lowercase())
                }))
            })
            .and_then(|b| b.build())
            .map_err(|e| AdqlError::Plan {
                message: format!("cannot expose lower-case column names: {e}"),
            })?;
    Ok(Arc::new(ViewTable::new(plan, None)))
}

/// The tables a query may name.
pub trait Catalog: Send + Sync {
    fn tables(&self) -> Vec<Arc<CatalogTable>>;

    /// Finds a table by schema (optional) and name, case-insensitively. A name without a schema must be unique.
    fn find(&self, schema: Option<&str>, name: &str) -> Vec<Arc<CatalogTable>> {
        self.tables()
            .into_iter()
            .filter(|t| {
                t.name.eq_ignore_ascii_case(name)
                    && schema.is_none_or(|s| t.schema.eq_ignore_ascii_case(s))
            })
            .collect()
    }
}

/// A catalog held in memory.
#[derive(Debug, Default, Clone)]
pub struct MemoryCatalog {
    tables: Vec<Arc<CatalogTable>>,
}

impl MemoryCatalog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a table, replacing one of the same name.
    pub fn add(&mut self, table: CatalogTable) {
        self.tables
            .retain(|t| !(t.schema == table.schema && t.name == table.name));
        self.tables.push(Arc::new(table));
    }
}

impl Catalog for MemoryCatalog {
    fn tables(&self) -> Vec<Arc<CatalogTable>> {
        self.tables.clone()
    }
}
