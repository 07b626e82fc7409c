//! Writing VOTable 1.4 pieces: the datatype of an Arrow type, FIELD elements with their metadata, escaping, and the
//! DALI error document. The streamed TABLEDATA and BINARY2 result writers (in the `tap` crate) are built on these.

use arrow::datatypes::{DataType, Field};

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

/// Escapes text for XML content and attribute values.
pub fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A VOTable FIELD element for an Arrow field (datatype, arraysize, xtype, unit, UCD, utype, description).
pub fn field_element(f: &Field) -> String {
    field_element_with_id(f, None)
}

/// [`field_element`] with an XML `ID` another element can refer to (a service descriptor's input parameter).
pub fn field_element_with_id(f: &Field, id: Option<&str>) -> String {
    let (datatype, arraysize, xtype) = votable_type(f.data_type());
    let m = f.metadata();
    let mut attrs = format!(r#"name="{}" datatype="{datatype}""#, xml_escape(f.name()));
    if let Some(id) = id {
        attrs.push_str(&format!(r#" ID="{}""#, xml_escape(id)));
    }
    if let Some(a) = arraysize {
        attrs.push_str(&format!(r#" arraysize="{a}""#));
    }
    if let Some(x) = m.get("xtype").map(String::as_str).or(xtype) {
        attrs.push_str(&format!(r#" xtype="{}""#, xml_escape(x)));
    }
    for key in ["unit", "ucd", "utype"] {
        if let Some(v) = m.get(key).filter(|v| !v.is_empty()) {
            attrs.push_str(&format!(r#" {key}="{}""#, xml_escape(v)));
        }
    }
    match m.get("description").filter(|d| !d.is_empty()) {
        Some(d) => format!(
            "<FIELD {attrs}><DESCRIPTION>{}</DESCRIPTION></FIELD>",
            xml_escape(d)
        ),
        None => format!("<FIELD {attrs}/>"),
    }
}

/// A DALI error document: `QUERY_STATUS` = `ERROR` with the message.
pub fn error_document(message: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<VOTABLE version=\"1.4\" xmlns=\"http://www.ivoa.net/xml/VOTable/v1.3\">\n<RESOURCE type=\"results\">\n<INFO name=\"QUERY_STATUS\" value=\"ERROR\">{}</INFO>\n</RESOURCE>\n</VOTABLE>\n",
        xml_escape(message)
    )
}
