//! `--columns-meta FILE`: descriptions, units and UCDs for a table's columns, over what the input files say.
//!
//! JSON: `{"COLUMN": {"description": "...", "unit": "...", "ucd": "..."}, ...}`. CSV: a header line naming `name`
//! (or `column`) and any of `description`, `unit`, `ucd`, then one line per column (RFC 4180 quoting). Column names
//! match case-insensitively; a name that is no column of the table is an error (a typo would otherwise be lost).

use std::path::Path;

use metastore::ColumnRecord;

use crate::error::{LoaderError, Result, io};

#[derive(Debug, Default, Clone, PartialEq)]
struct Meta {
    description: Option<String>,
    unit: Option<String>,
    ucd: Option<String>,
}

fn problem(path: &Path, problem: impl Into<String>) -> LoaderError {
    LoaderError::ColumnsMeta {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

fn parse_json(path: &Path, text: &str) -> Result<Vec<(String, Meta)>> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| problem(path, format!("not valid JSON: {e}")))?;
    let object = value
        .as_object()
        .ok_or_else(|| problem(path, "the JSON must be an object of column names"))?;
    let mut out = Vec::new();
    for (name, v) in object {
        let fields = v.as_object().ok_or_else(|| {
            problem(
                path,
                format!("the entry of column {name} must be an object"),
            )
        })?;
        let mut m = Meta::default();
        for (key, value) in fields {
            let text = value
                .as_str()
                .ok_or_else(|| problem(path, format!("{name}.{key} must be a string")))?
                .to_string();
            match key.as_str() {
                "description" => m.description = Some(text),
                "unit" => m.unit = Some(text),
                "ucd" => m.ucd = Some(text),
                other => {
                    return Err(problem(
                        path,
                        format!("{name}: unknown key {other} (description, unit, ucd)"),
                    ));
                }
            }
        }
        out.push((name.clone(), m));
    }
    Ok(out)
}

/// Splits one CSV line into fields, with "" quoting.
fn csv_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    out.push(field);
    out
}

fn parse_csv(path: &Path, text: &str) -> Result<Vec<(String, Meta)>> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<String> = csv_fields(
        lines
            .next()
            .ok_or_else(|| problem(path, "the file is empty"))?,
    )
    .into_iter()
    .map(|h| h.trim().to_lowercase())
    .collect();
    let name_at = header
        .iter()
        .position(|h| h == "name" || h == "column")
        .ok_or_else(|| problem(path, "the header line needs a name column"))?;
    for h in &header {
        if !matches!(
            h.as_str(),
            "name" | "column" | "description" | "unit" | "ucd"
        ) {
            return Err(problem(
                path,
                format!("unknown header {h} (name, description, unit, ucd)"),
            ));
        }
    }
    let mut out = Vec::new();
    for (k, line) in lines.enumerate() {
        let fields = csv_fields(line);
        if fields.len() != header.len() {
            return Err(problem(
                path,
                format!(
                    "line {}: {} fields, the header has {}",
                    k + 2,
                    fields.len(),
                    header.len()
                ),
            ));
        }
        let mut m = Meta::default();
        for (h, v) in header.iter().zip(&fields) {
            let v = (!v.is_empty()).then(|| v.clone());
            match h.as_str() {
                "description" => m.description = v,
                "unit" => m.unit = v,
                "ucd" => m.ucd = v,
                _ => {}
            }
        }
        out.push((fields[name_at].trim().to_string(), m));
    }
    Ok(out)
}

/// Sets the metadata `path` gives on `columns`.
pub fn apply(path: &Path, columns: &mut [ColumnRecord]) -> Result<()> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let entries = if text.trim_start().starts_with('{') {
        parse_json(path, &text)?
    } else {
        parse_csv(path, &text)?
    };
    let names = columns
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    for (name, m) in entries {
        let column = columns
            .iter_mut()
            .find(|c| c.name.eq_ignore_ascii_case(&name))
            .ok_or_else(|| problem(path, format!("no column named {name} (columns: {names})")))?;
        if m.description.is_some() {
            column.description = m.description;
        }
        if m.unit.is_some() {
            column.unit = m.unit;
        }
        if m.ucd.is_some() {
            column.ucd = m.ucd;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns() -> Vec<ColumnRecord> {
        ["id", "ra", "mag_g"]
            .iter()
            .map(|n| ColumnRecord {
                name: n.to_string(),
                datatype: "Float64".into(),
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn json_and_csv_set_metadata_and_unknown_columns_are_errors() {
        let dir = std::env::temp_dir().join(format!("skyshard-colmeta-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let json = dir.join("m.json");
        std::fs::write(&json, r#"{"RA": {"unit": "deg", "ucd": "pos.eq.ra;meta.main", "description": "right ascension"}}"#).unwrap();
        let mut cols = columns();
        apply(&json, &mut cols).unwrap();
        assert_eq!(cols[1].unit.as_deref(), Some("deg"));
        assert_eq!(cols[1].description.as_deref(), Some("right ascension"));
        let csv = dir.join("m.csv");
        std::fs::write(
            &csv,
            "name,unit,description\nmag_g,mag,\"g magnitude, \"\"PSF\"\"\"\n",
        )
        .unwrap();
        apply(&csv, &mut cols).unwrap();
        assert_eq!(cols[2].description.as_deref(), Some("g magnitude, \"PSF\""));
        assert_eq!(cols[2].unit.as_deref(), Some("mag"));
        std::fs::write(&csv, "name,unit\nmag_r,mag\n").unwrap();
        let err = apply(&csv, &mut cols).unwrap_err().to_string();
        assert!(err.contains("mag_r") && err.contains("m.csv"), "{err}");
        std::fs::write(&json, r#"{"ra": {"units": "deg"}}"#).unwrap();
        assert!(
            apply(&json, &mut cols)
                .unwrap_err()
                .to_string()
                .contains("unknown key units")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
