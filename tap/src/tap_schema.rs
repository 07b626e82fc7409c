//! TAP_SCHEMA (TAP 1.1 section 4): `schemas`, `tables`, `columns`, `keys` and `key_columns`, built from the
//! catalog's metadata at every refresh as in-memory tables that ADQL queries like any other. TAP_SCHEMA describes
//! itself too. Column datatypes are VOTable's (as result FIELDs and `/tables` give them).

use std::collections::HashMap;
use std::sync::Arc;

use adql::{CatalogTable, ColumnMeta};
use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;

use czar::ForeignKey;
use votable::write::votable_type;

/// The `key_id` of a foreign key in TAP_SCHEMA.keys and `/tables`.
pub fn key_id(k: &ForeignKey) -> String {
    format!("{}.{}->{}", k.from, k.from_column, k.target)
}

/// The czar's system-tables hook: TAP_SCHEMA over the published tables, with TAP_SCHEMA's own foreign keys added.
pub fn system_tables(
    tables: &[Arc<CatalogTable>],
    keys: &mut Vec<ForeignKey>,
) -> Vec<CatalogTable> {
    keys.extend(own_keys());
    build(tables, keys)
}

pub const SCHEMA: &str = "tap_schema";

/// (name, VOTable-compatible Arrow type, description) of each TAP_SCHEMA table's columns.
fn layout(table: &str) -> &'static [(&'static str, DataType, &'static str)] {
    use DataType::{Int32, Utf8};
    match table {
        "schemas" => &[
            (
                "schema_name",
                Utf8,
                "schema name for reference to TAP_SCHEMA.schemas",
            ),
            ("utype", Utf8, "lists the utypes of schemas in the tableset"),
            ("description", Utf8, "describes schemas in the tableset"),
            (
                "schema_index",
                Int32,
                "recommended sort order when listing schemas",
            ),
        ],
        "tables" => &[
            ("schema_name", Utf8, "the schema this table belongs to"),
            ("table_name", Utf8, "the fully qualified table name"),
            ("table_type", Utf8, "one of: table view"),
            ("utype", Utf8, "lists the utype of tables in the tableset"),
            ("description", Utf8, "describes tables in the tableset"),
            (
                "table_index",
                Int32,
                "recommended sort order when listing tables",
            ),
        ],
        "columns" => &[
            ("table_name", Utf8, "the table this column belongs to"),
            ("column_name", Utf8, "the column name"),
            ("utype", Utf8, "lists the utypes of columns in the tableset"),
            ("ucd", Utf8, "lists the UCDs of columns in the tableset"),
            (
                "unit",
                Utf8,
                "lists the unit used for column values in the tableset",
            ),
            ("description", Utf8, "describes the columns in the tableset"),
            (
                "datatype",
                Utf8,
                "lists the ADQL datatype of columns in the tableset",
            ),
            (
                "arraysize",
                Utf8,
                "lists the size of variable-length columns in the tableset",
            ),
            ("xtype", Utf8, "a DALI or custom extended type annotation"),
            ("size", Int32, "deprecated: use arraysize"),
            (
                "principal",
                Int32,
                "a principal column; 1 means 1, 0 means 0",
            ),
            ("indexed", Int32, "an indexed column; 1 means 1, 0 means 0"),
            ("std", Int32, "a standard column; 1 means 1, 0 means 0"),
            (
                "column_index",
                Int32,
                "recommended sort order when listing columns",
            ),
        ],
        "keys" => &[
            (
                "key_id",
                Utf8,
                "unique key to join to TAP_SCHEMA.key_columns",
            ),
            ("from_table", Utf8, "the table with the foreign key"),
            ("target_table", Utf8, "the table with the primary key"),
            ("utype", Utf8, "lists the utype of keys in the tableset"),
            ("description", Utf8, "describes keys in the tableset"),
        ],
        "key_columns" => &[
            ("key_id", Utf8, "key to join to TAP_SCHEMA.keys"),
            ("from_column", Utf8, "column in the from_table"),
            ("target_column", Utf8, "column in the target_table"),
        ],
        _ => &[],
    }
}

const TABLES: [(&str, &str); 5] = [
    ("schemas", "description of schemas in this tableset"),
    ("tables", "description of tables in this tableset"),
    ("columns", "description of columns in this tableset"),
    ("keys", "description of foreign keys in this tableset"),
    (
        "key_columns",
        "description of foreign key columns in this tableset",
    ),
];

fn schema_of(table: &str) -> Arc<Schema> {
    Arc::new(Schema::new(
        layout(table)
            .iter()
            .map(|(name, dt, description)| {
                let mut meta =
                    HashMap::from([("description".to_string(), description.to_string())]);
                if matches!(
                    *name,
                    "schema_name" | "table_name" | "column_name" | "key_id"
                ) {
                    meta.insert("principal".into(), "1".into());
                }
                // `size` is an ADQL reserved word: the standard spells it as a delimited identifier.
                Field::new(*name, dt.clone(), true).with_metadata(meta)
            })
            .collect::<Vec<_>>(),
    ))
}

/// Column values for a TAP_SCHEMA table, built up row by row.
struct Rows {
    schema: Arc<Schema>,
    cells: Vec<Vec<Cell>>,
}

enum Cell {
    S(Option<String>),
    I(Option<i32>),
}

impl Rows {
    fn new(table: &str) -> Rows {
        let schema = schema_of(table);
        let cells = schema.fields().iter().map(|_| Vec::new()).collect();
        Rows { schema, cells }
    }

    fn push(&mut self, row: Vec<Cell>) {
        for (i, c) in row.into_iter().enumerate() {
            self.cells[i].push(c);
        }
    }

    fn into_table(self, name: &str, description: &str) -> CatalogTable {
        let columns: Vec<ArrayRef> = self
            .cells
            .into_iter()
            .zip(self.schema.fields())
            .map(|(cells, f)| -> ArrayRef {
                match f.data_type() {
                    DataType::Int32 => Arc::new(Int32Array::from(
                        cells
                            .into_iter()
                            .map(|c| match c {
                                Cell::I(v) => v,
                                Cell::S(_) => None,
                            })
                            .collect::<Vec<_>>(),
                    )),
                    _ => Arc::new(StringArray::from(
                        cells
                            .into_iter()
                            .map(|c| match c {
                                Cell::S(v) => v,
                                Cell::I(v) => v.map(|v| v.to_string()),
                            })
                            .collect::<Vec<_>>(),
                    )),
                }
            })
            .collect();
        let batch =
            RecordBatch::try_new(self.schema.clone(), columns).expect("TAP_SCHEMA columns line up");
        let provider = MemTable::try_new(self.schema, vec![vec![batch]]).expect("TAP_SCHEMA table");
        CatalogTable::new(SCHEMA, name, Arc::new(provider))
            .expect("TAP_SCHEMA names are distinct")
            .with_description(description)
    }
}

fn s(v: impl Into<String>) -> Cell {
    Cell::S(Some(v.into()))
}

fn opt(v: &Option<String>) -> Cell {
    Cell::S(v.clone())
}

/// A column's name as queries must write it: delimited when it is an ADQL reserved word (TAP_SCHEMA's own
/// `"size"`, a table's `"dec"`...).
pub fn column_name(c: &ColumnMeta) -> String {
    if adql::reserved::is_reserved(&c.name) {
        format!("\"{}\"", c.original_name)
    } else {
        c.name.clone()
    }
}

/// (datatype, arraysize) as TAP_SCHEMA.columns and VOSI tables give them.
pub fn column_type(c: &ColumnMeta) -> (&'static str, Option<&'static str>) {
    let (datatype, arraysize, _) = votable_type(&c.datatype);
    (datatype, arraysize)
}

/// TAP_SCHEMA's own foreign keys (TAP 1.1 section 4).
pub fn own_keys() -> Vec<ForeignKey> {
    [
        ("tables", "schema_name", "schemas", "schema_name"),
        ("columns", "table_name", "tables", "table_name"),
        ("keys", "from_table", "tables", "table_name"),
        ("keys", "target_table", "tables", "table_name"),
        ("key_columns", "key_id", "keys", "key_id"),
    ]
    .map(|(from, from_column, target, target_column)| ForeignKey {
        from: format!("{SCHEMA}.{from}"),
        target: format!("{SCHEMA}.{target}"),
        from_column: from_column.into(),
        target_column: target_column.into(),
    })
    .to_vec()
}

/// The five TAP_SCHEMA tables (`keys` includes [`own_keys`]) describing `tables` (the published ones) and themselves.
pub fn build(tables: &[Arc<CatalogTable>], keys: &[ForeignKey]) -> Vec<CatalogTable> {
    // TAP_SCHEMA describes itself: first build its tables empty, to have their column metadata.
    let own: Vec<Arc<CatalogTable>> = TABLES
        .iter()
        .map(|(name, description)| Arc::new(Rows::new(name).into_table(name, description)))
        .collect();
    let all: Vec<&Arc<CatalogTable>> = tables.iter().chain(own.iter()).collect();
    let mut schema_names: Vec<(String, Option<String>)> = Vec::new();
    for t in &all {
        if !schema_names.iter().any(|(n, _)| n == &t.schema) {
            let description = if t.schema == SCHEMA {
                Some("a description of the tables in this service (TAP 1.1)".to_string())
            } else {
                None
            };
            schema_names.push((t.schema.clone(), description));
        }
    }
    let mut schemas = Rows::new("schemas");
    for (i, (name, description)) in schema_names.iter().enumerate() {
        schemas.push(vec![
            s(name),
            Cell::S(None),
            opt(description),
            Cell::I(Some(i as i32)),
        ]);
    }
    let mut table_rows = Rows::new("tables");
    let mut column_rows = Rows::new("columns");
    for (i, t) in all.iter().enumerate() {
        table_rows.push(vec![
            s(&t.schema),
            s(t.qualified_name()),
            s("table"),
            Cell::S(None),
            opt(&t.description),
            Cell::I(Some(i as i32)),
        ]);
        for (k, c) in t.columns.iter().enumerate() {
            let (datatype, arraysize) = column_type(c);
            column_rows.push(vec![
                s(t.qualified_name()),
                s(column_name(c)),
                opt(&c.utype),
                opt(&c.ucd),
                opt(&c.unit),
                opt(&c.description),
                s(datatype),
                Cell::S(arraysize.map(String::from)),
                opt(&c.xtype),
                Cell::I(None),
                Cell::I(Some(c.principal as i32)),
                Cell::I(Some(c.indexed as i32)),
                Cell::I(Some((t.schema == SCHEMA) as i32)),
                Cell::I(Some(k as i32)),
            ]);
        }
    }
    let mut key_rows = Rows::new("keys");
    let mut key_column_rows = Rows::new("key_columns");
    for k in keys {
        key_rows.push(vec![
            s(key_id(k)),
            s(&k.from),
            s(&k.target),
            Cell::S(None),
            s(format!(
                "each row of {} belongs to one object of {}",
                k.from, k.target
            )),
        ]);
        key_column_rows.push(vec![s(key_id(k)), s(&k.from_column), s(&k.target_column)]);
    }
    let descriptions: HashMap<&str, &str> = TABLES.into_iter().collect();
    vec![
        schemas.into_table("schemas", descriptions["schemas"]),
        table_rows.into_table("tables", descriptions["tables"]),
        column_rows.into_table("columns", descriptions["columns"]),
        key_rows.into_table("keys", descriptions["keys"]),
        key_column_rows.into_table("key_columns", descriptions["key_columns"]),
    ]
}
