//! Writing results for people and tools: an aligned text table, CSV (RFC 4180) and VOTable 1.4 TABLEDATA. Geometry
//! values are written as DALI 1.1 serializes them: space-separated degrees.

use std::io::Write;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use crate::output::cell;

/// Writes a whole result with [`crate::output::ResultWriter`] (the TAP service streams the same documents).
fn write_document(
    out: &mut impl Write,
    format: crate::output::OutputFormat,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    ending: crate::output::Ending,
) -> std::io::Result<()> {
    let mut w = crate::output::ResultWriter::new(format, schema.clone(), &Default::default())?;
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
    votable::write::error_document(message)
}
