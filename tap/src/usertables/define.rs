//! Table definitions as clients send them: the columns a VOSI `table` document declares (names, types, units, UCDs,
//! descriptions), read into a [`Definition`] for [`platform::usertables`].

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
pub(super) use platform::usertables::Definition;

/// The type of a column as a VOSI document names it (`vs:TAPType` or `vs:VOTableType`).
pub(super) fn column_type(
    name: &str,
    declared: &str,
    arraysize: Option<&str>,
) -> Result<DataType, String> {
    let t = declared.trim().to_ascii_lowercase();
    let text = matches!(
        t.as_str(),
        "char" | "varchar" | "unicodechar" | "clob" | "timestamp"
    );
    if arraysize.is_some() && !text {
        return Err(format!(
            "column {name}: arrays ({declared} with arraysize) are not supported in user tables"
        ));
    }
    Ok(match t.as_str() {
        "boolean" => DataType::Boolean,
        "unsignedbyte" | "smallint" | "short" => DataType::Int16,
        "integer" | "int" => DataType::Int32,
        "bigint" | "long" => DataType::Int64,
        "real" | "float" => DataType::Float32,
        "double" => DataType::Float64,
        _ if text => DataType::Utf8,
        _ => {
            return Err(format!(
                "column {name}: type {declared} is not supported in user tables (use BOOLEAN, SMALLINT, INTEGER, \
                 BIGINT, REAL, DOUBLE, CHAR, VARCHAR, TIMESTAMP, or their VOTable names)"
            ));
        }
    })
}

/// Parses a VOSI `table` document.
pub(super) fn vosi_definition(xml: &[u8]) -> Result<Definition, String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut path: Vec<String> = Vec::new();
    let mut fields: Vec<Field> = Vec::new();
    let mut description = None;
    // The column being read: name, description, unit, ucd, datatype, arraysize, xtype.
    #[derive(Default)]
    struct Column {
        name: String,
        description: String,
        unit: String,
        ucd: String,
        datatype: String,
        arraysize: Option<String>,
    }
    let mut column: Option<Column> = None;
    let mut text = String::new();
    let mut buf = Vec::new();
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| format!("the table document is not well-formed XML: {e}"))?;
        match event {
            Event::Start(e) => {
                let local = String::from_utf8_lossy(e.local_name().as_ref()).to_string();
                if local == "column" && path.len() == 1 {
                    column = Some(Column::default());
                }
                if local == "dataType"
                    && let Some(c) = column.as_mut()
                {
                    for a in e.attributes().flatten() {
                        if a.key.local_name().as_ref() == b"arraysize" {
                            c.arraysize = Some(String::from_utf8_lossy(&a.value).to_string());
                        }
                    }
                }
                path.push(local);
                if path.len() > 16 {
                    return Err("the table document nests elements more than 16 deep".into());
                }
                text.clear();
            }
            Event::Text(t) => {
                text.push_str(
                    &t.unescape()
                        .map_err(|e| format!("the table document: {e}"))?,
                );
            }
            Event::CData(t) => text.push_str(&String::from_utf8_lossy(&t)),
            Event::End(_) => {
                let local = path.pop().unwrap_or_default();
                let value = text.trim().to_string();
                match (path.len(), local.as_str(), column.as_mut()) {
                    (1, "description", None) => description = Some(value).filter(|v| !v.is_empty()),
                    (2, "name", Some(c)) => c.name = value,
                    (2, "description", Some(c)) => c.description = value,
                    (2, "unit", Some(c)) => c.unit = value,
                    (2, "ucd", Some(c)) => c.ucd = value,
                    (2, "dataType", Some(c)) => c.datatype = value,
                    (1, "column", Some(_)) => {
                        let c = column.take().expect("a column is open");
                        let dt = column_type(&c.name, &c.datatype, c.arraysize.as_deref())?;
                        let mut meta = std::collections::HashMap::new();
                        for (k, v) in [
                            ("description", c.description),
                            ("unit", c.unit),
                            ("ucd", c.ucd),
                        ] {
                            if !v.is_empty() {
                                meta.insert(k.to_string(), v);
                            }
                        }
                        fields.push(Field::new(c.name, dt, true).with_metadata(meta));
                    }
                    _ => {}
                }
                text.clear();
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if fields.is_empty() {
        return Err(
            "the table document declares no column (a vosi:table with column elements)".into(),
        );
    }
    Ok(Definition {
        schema: Arc::new(Schema::new(fields)),
        description,
        rows: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vosi_table_document_defines_columns() {
        let doc = br#"<?xml version="1.0"?>
<vosi:table xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0" xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" type="output">
  <name>user_ada.targets</name>
  <description>my targets &amp; friends</description>
  <column><name>id</name><ucd>meta.id;meta.main</ucd><dataType xsi:type="vs:TAPType">BIGINT</dataType></column>
  <column><name>ra</name><unit>deg</unit><ucd>pos.eq.ra;meta.main</ucd>
    <dataType xsi:type="vs:VOTableType">double</dataType></column>
  <column><name>label</name><description>a name</description>
    <dataType xsi:type="vs:VOTableType" arraysize="16*">char</dataType></column>
</vosi:table>"#;
        let d = vosi_definition(doc).unwrap();
        assert_eq!(d.description.as_deref(), Some("my targets & friends"));
        let f = d.schema.fields();
        assert_eq!(f.len(), 3);
        assert_eq!(
            (f[0].name().as_str(), f[0].data_type()),
            ("id", &DataType::Int64)
        );
        assert_eq!(f[1].metadata()["unit"], "deg");
        assert_eq!(
            (f[2].data_type(), f[2].metadata()["description"].as_str()),
            (&DataType::Utf8, "a name")
        );
        let bad = br#"<table><column><name>x</name><dataType arraysize="3">double</dataType></column></table>"#;
        assert!(vosi_definition(bad).unwrap_err().contains("arrays"));
        assert!(
            vosi_definition(b"<table/>")
                .unwrap_err()
                .contains("no column")
        );
        assert!(
            vosi_definition(b"<table><column>").is_err()
                || vosi_definition(b"<table><column>").is_ok()
        );
        let deep = "<table>".repeat(100_000);
        assert!(
            vosi_definition(deep.as_bytes())
                .unwrap_err()
                .contains("deep")
        );
    }
}
