//! Writing results for people and tools: an aligned text table, CSV (RFC 4180) and VOTable 1.4 TABLEDATA. Geometry
//! values are written as DALI 1.1 serializes them: space-separated degrees.

use std::io::Write;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};

/// One cell as text, or None for NULL.
pub fn cell(array: &ArrayRef, row: usize) -> Option<String> {
    if array.is_null(row) {
        return None;
    }
    match array.data_type() {
        DataType::FixedSizeList(f, _) | DataType::List(f) | DataType::LargeList(f)
            if f.data_type() == &DataType::Float64 =>
        {
            let values = match array.data_type() {
                DataType::FixedSizeList(..) => array.as_fixed_size_list().value(row),
                DataType::List(_) => array.as_list::<i32>().value(row),
                _ => array.as_list::<i64>().value(row),
            };
            let v = values.as_primitive::<Float64Type>();
            Some(
                v.iter()
                    .map(|x| x.map_or("NaN".into(), |x| format!("{x}")))
                    .collect::<Vec<_>>()
                    .join(" "),
            )
        }
        DataType::Float64 => {
            let v = array.as_primitive::<Float64Type>().value(row);
            if v.is_nan() {
                None
            } else {
                Some(format!("{v}"))
            }
        }
        _ => {
            let f = ArrayFormatter::try_new(array.as_ref(), &FormatOptions::default()).ok()?;
            Some(f.value(row).to_string())
        }
    }
}

/// Writes a whole result with [`crate::output::ResultWriter`] (the TAP service streams the same documents).
fn write_document(
    out: &mut impl Write,
    format: crate::output::OutputFormat,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    ending: crate::output::Ending,
) -> std::io::Result<()> {
    let mut w = crate::output::ResultWriter::new(format, schema.clone(), &[])?;
    for b in batches {
        w.write(b)?;
        out.write_all(&w.take())?;
    }
    w.finish(&ending)?;
    out.write_all(&w.take())
}

/// CSV (RFC 4180) with a header line.
pub fn write_csv(
    out: &mut impl Write,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> std::io::Result<()> {
    write_document(
        out,
        crate::output::OutputFormat::Csv,
        schema,
        batches,
        crate::output::Ending::Complete,
    )
}

pub fn write_table(
    out: &mut impl Write,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> std::io::Result<()> {
    let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let mut rows: Vec<Vec<String>> = Vec::new();
    for b in batches {
        for row in 0..b.num_rows() {
            rows.push(
                b.columns()
                    .iter()
                    .map(|c| cell(c, row).unwrap_or_else(|| "NULL".into()))
                    .collect(),
            );
        }
    }
    let widths: Vec<usize> = (0..names.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([names[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    writeln!(out, "{}", line(&names))?;
    writeln!(
        out,
        "{}",
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("-+-")
    )?;
    for r in &rows {
        writeln!(out, "{}", line(r))?;
    }
    writeln!(
        out,
        "({} row{})",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    )?;
    Ok(())
}

/// VOTable datatype, arraysize and xtype of an Arrow type.
pub fn votable_type(dt: &DataType) -> (&'static str, Option<&'static str>, Option<&'static str>) {
    match dt {
        DataType::Boolean => ("boolean", None, None),
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => ("short", None, None),
        DataType::Int32 | DataType::UInt16 => ("int", None, None),
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => ("long", None, None),
        DataType::Float16 | DataType::Float32 => ("float", None, None),
        DataType::Float64 | DataType::Decimal128(..) | DataType::Decimal256(..) => {
            ("double", None, None)
        }
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => {
            ("char", Some("*"), Some("timestamp"))
        }
        DataType::FixedSizeList(_, 2) => ("double", Some("2"), Some("point")),
        DataType::FixedSizeList(_, 3) => ("double", Some("3"), Some("circle")),
        DataType::List(_) | DataType::LargeList(_) => ("double", Some("*"), Some("polygon")),
        _ => ("char", Some("*"), None),
    }
}

pub fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A VOTable of the result; `overflow`: rows were cut at MAXREC (a trailing `QUERY_STATUS` = `OVERFLOW` says so).
pub fn write_votable(
    out: &mut impl Write,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    overflow: bool,
) -> std::io::Result<()> {
    let ending = if overflow {
        crate::output::Ending::Overflow
    } else {
        crate::output::Ending::Complete
    };
    write_document(
        out,
        crate::output::OutputFormat::VoTable,
        schema,
        batches,
        ending,
    )
}

/// A DALI error document: `QUERY_STATUS` = `ERROR` with the message.
pub fn error_votable(message: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<VOTABLE version=\"1.4\" xmlns=\"http://www.ivoa.net/xml/VOTable/v1.3\">\n<RESOURCE type=\"results\">\n<INFO name=\"QUERY_STATUS\" value=\"ERROR\">{}</INFO>\n</RESOURCE>\n</VOTABLE>\n",
        xml_escape(message)
    )
}
