//! Reading the first TABLE of a VOTable (1.1 to 1.5) into Arrow record batches.
//!
//! Why one long module: one streaming parser of the VOTable grammar; its states (FIELD, VALUES, TABLEDATA, BINARY)
//! share one reader and one error type, and split apart they would only pass their state back and forth.
//!
//! TABLEDATA streams: rows are parsed as they are read. BINARY and BINARY2 streams are base64 text inside one XML
//! element and are decoded when that element has been read, so they cost their size in memory (uploads are capped
//! well below that mattering). FITS-serialized data and `STREAM href=` references are refused.
//!
//! Types: boolean, unsignedByte, short, int, long, float, double as the Arrow type of that name (NULL from an empty
//! cell, `VALUES null=`, a NaN float, or the BINARY2 null flags); char and unicodeChar as UTF-8 strings; numeric
//! arrays as fixed-size lists (`arraysize="3"`, `"2x3"` flattened) or lists (`*`, `10*`). Field attributes `unit`,
//! `ucd`, `utype`, `xtype` and the DESCRIPTION become Arrow field metadata of the same names (`description`).
//! Complex numbers and bit arrays are refused, naming the field.
//!
//! Why one long module: FIELD parsing is shared by the three serializations (TABLEDATA, BINARY, BINARY2), each of
//! which is small on its own.

use std::collections::HashMap;
use std::io::BufRead;
use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, FixedSizeListBuilder, Float32Builder, Float64Builder,
    Int16Builder, Int32Builder, Int64Builder, ListBuilder, RecordBatch, StringBuilder,
    UInt8Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use base64::Engine as _;
use quick_xml::events::{BytesStart, Event};

#[derive(Debug, thiserror::Error)]
pub enum VoTableError {
    #[error("not a readable VOTable: {0}")]
    Xml(String),
    #[error("VOTable field {field}: {problem}")]
    Field { field: String, problem: String },
    #[error("VOTable row {row}, field {field}: {problem}")]
    Value {
        row: u64,
        field: String,
        problem: String,
    },
    #[error("VOTable: {0}")]
    Unsupported(String),
}

pub type Result<T, E = VoTableError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Prim {
    Boolean,
    UByte,
    Short,
    Int,
    Long,
    Float,
    Double,
    Char,
    UnicodeChar,
}

impl Prim {
    fn width(self) -> usize {
        match self {
            Prim::Boolean | Prim::UByte | Prim::Char => 1,
            Prim::Short | Prim::UnicodeChar => 2,
            Prim::Int | Prim::Float => 4,
            Prim::Long | Prim::Double => 8,
        }
    }

    fn arrow(self) -> DataType {
        match self {
            Prim::Boolean => DataType::Boolean,
            Prim::UByte => DataType::UInt8,
            Prim::Short => DataType::Int16,
            Prim::Int => DataType::Int32,
            Prim::Long => DataType::Int64,
            Prim::Float => DataType::Float32,
            Prim::Double => DataType::Float64,
            Prim::Char | Prim::UnicodeChar => DataType::Utf8,
        }
    }
}

/// Elements per value: one, a fixed count, or variable (with an optional maximum).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Count {
    Fixed(usize),
    Variable,
}

#[derive(Debug, Clone)]
struct Column {
    name: String,
    prim: Prim,
    count: Count,
    /// `VALUES null=`: the text (TABLEDATA) that means NULL, and its integer value (BINARY).
    null: Option<String>,
    is_string: bool,
    is_array: bool,
}

fn parse_arraysize(field: &str, a: Option<&str>) -> Result<Count> {
    let Some(a) = a.map(str::trim).filter(|a| !a.is_empty()) else {
        return Ok(Count::Fixed(1));
    };
    let mut total = 1usize;
    let parts: Vec<&str> = a.split('x').collect();
    for (k, p) in parts.iter().enumerate() {
        if p.ends_with('*') {
            if k + 1 != parts.len() {
                return Err(VoTableError::Field {
                    field: field.into(),
                    problem: format!("arraysize {a}: only the last dimension may be variable"),
                });
            }
            return Ok(Count::Variable);
        }
        let n = p.parse::<usize>().map_err(|_| VoTableError::Field {
            field: field.into(),
            problem: format!("arraysize {a} is not valid"),
        })?;
        total = total
            .checked_mul(n)
            .filter(|&t| t <= MAX_ELEMENTS)
            .ok_or_else(|| VoTableError::Field {
                field: field.into(),
                problem: format!(
                    "arraysize {a} is more than the {MAX_ELEMENTS} elements one value may have"
                ),
            })?;
    }
    Ok(Count::Fixed(total))
}

/// Elements one fixed-size value may have (`arraysize="AxB"`: A times B), so that no declared shape can overflow
/// a size computation or ask for memory its data does not bring.
pub const MAX_ELEMENTS: usize = 1 << 20;

fn attrs(e: &BytesStart) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for a in e.attributes() {
        let a = a.map_err(|err| VoTableError::Xml(err.to_string()))?;
        let key = String::from_utf8_lossy(a.key.local_name().as_ref()).to_string();
        let value = a
            .unescape_value()
            .map_err(|err| VoTableError::Xml(err.to_string()))?
            .to_string();
        out.insert(key, value);
    }
    Ok(out)
}

/// Builders for one batch of one column.
enum Builder {
    Bool(BooleanBuilder),
    UByte(UInt8Builder),
    Short(Int16Builder),
    Int(Int32Builder),
    Long(Int64Builder),
    Float(Float32Builder),
    Double(Float64Builder),
    Str(StringBuilder),
    Fixed(FixedSizeListBuilder<Box<dyn ArrayBuilder>>),
    List(ListBuilder<Box<dyn ArrayBuilder>>),
}

fn scalar_builder(prim: Prim) -> Box<dyn ArrayBuilder> {
    arrow::array::make_builder(&prim.arrow(), 1024)
}

impl Builder {
    fn new(c: &Column) -> Builder {
        match (c.is_array, c.count) {
            (true, Count::Fixed(n)) => {
                Builder::Fixed(FixedSizeListBuilder::new(scalar_builder(c.prim), n as i32))
            }
            (true, Count::Variable) => Builder::List(ListBuilder::new(scalar_builder(c.prim))),
            _ => match c.prim {
                Prim::Boolean => Builder::Bool(BooleanBuilder::new()),
                Prim::UByte => Builder::UByte(UInt8Builder::new()),
                Prim::Short => Builder::Short(Int16Builder::new()),
                Prim::Int => Builder::Int(Int32Builder::new()),
                Prim::Long => Builder::Long(Int64Builder::new()),
                Prim::Float => Builder::Float(Float32Builder::new()),
                Prim::Double => Builder::Double(Float64Builder::new()),
                Prim::Char | Prim::UnicodeChar => Builder::Str(StringBuilder::new()),
            },
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::UByte(b) => Arc::new(b.finish()),
            Builder::Short(b) => Arc::new(b.finish()),
            Builder::Int(b) => Arc::new(b.finish()),
            Builder::Long(b) => Arc::new(b.finish()),
            Builder::Float(b) => Arc::new(b.finish()),
            Builder::Double(b) => Arc::new(b.finish()),
            Builder::Str(b) => Arc::new(b.finish()),
            Builder::Fixed(b) => Arc::new(b.finish()),
            Builder::List(b) => Arc::new(b.finish()),
        }
    }
}

/// One parsed element value.
#[derive(Debug, Clone, Copy)]
enum Elem {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
}

fn push_elem(b: &mut dyn ArrayBuilder, prim: Prim, e: Elem) {
    macro_rules! put {
        ($t:ty, $v:expr) => {{
            let b = b
                .as_any_mut()
                .downcast_mut::<$t>()
                .expect("builder of the column type");
            match $v {
                Some(v) => b.append_value(v),
                None => b.append_null(),
            }
        }};
    }
    let int = |e: Elem| match e {
        Elem::Int(v) => Some(v),
        _ => None,
    };
    let float = |e: Elem| match e {
        Elem::Float(v) if !v.is_nan() => Some(v),
        _ => None,
    };
    match prim {
        Prim::Boolean => put!(
            BooleanBuilder,
            match e {
                Elem::Bool(v) => Some(v),
                _ => None,
            }
        ),
        Prim::UByte => put!(UInt8Builder, int(e).map(|v| v as u8)),
        Prim::Short => put!(Int16Builder, int(e).map(|v| v as i16)),
        Prim::Int => put!(Int32Builder, int(e).map(|v| v as i32)),
        Prim::Long => put!(Int64Builder, int(e)),
        Prim::Float => put!(Float32Builder, float(e).map(|v| v as f32)),
        Prim::Double => put!(Float64Builder, float(e)),
        Prim::Char | Prim::UnicodeChar => unreachable!("strings are not elements"),
    }
}

impl Builder {
    /// Appends one scalar (not for arrays or strings).
    fn push(&mut self, prim: Prim, e: Elem) {
        let b: &mut dyn ArrayBuilder = match self {
            Builder::Bool(b) => b,
            Builder::UByte(b) => b,
            Builder::Short(b) => b,
            Builder::Int(b) => b,
            Builder::Long(b) => b,
            Builder::Float(b) => b,
            Builder::Double(b) => b,
            _ => unreachable!("scalar column"),
        };
        push_elem(b, prim, e);
    }

    /// Appends an array value; `None` is a NULL array.
    fn push_array(&mut self, prim: Prim, elems: Option<&[Elem]>, fixed: usize) {
        match self {
            Builder::Fixed(b) => {
                let values = b.values();
                for k in 0..fixed {
                    let e = elems.and_then(|e| e.get(k).copied()).unwrap_or(Elem::Null);
                    push_elem(values.as_mut(), prim, e);
                }
                b.append(elems.is_some());
            }
            Builder::List(b) => {
                for &e in elems.unwrap_or(&[]) {
                    push_elem(b.values().as_mut(), prim, e);
                }
                b.append(elems.is_some());
            }
            _ => unreachable!("array column"),
        }
    }
}

fn parse_text(prim: Prim, s: &str) -> Option<Elem> {
    let s = s.trim();
    if s.is_empty() {
        return Some(Elem::Null);
    }
    match prim {
        Prim::Boolean => match s.to_ascii_lowercase().as_str() {
            "t" | "true" | "1" => Some(Elem::Bool(true)),
            "f" | "false" | "0" => Some(Elem::Bool(false)),
            "?" => Some(Elem::Null),
            _ => None,
        },
        Prim::UByte | Prim::Short | Prim::Int | Prim::Long => {
            let v = if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                i64::from_str_radix(hex, 16).ok()
            } else {
                s.parse::<i64>().ok()
            }?;
            let ok = match prim {
                Prim::UByte => (0..=255).contains(&v),
                Prim::Short => i16::try_from(v).is_ok(),
                Prim::Int => i32::try_from(v).is_ok(),
                _ => true,
            };
            ok.then_some(Elem::Int(v))
        }
        Prim::Float | Prim::Double => match s {
            "NaN" | "nan" => Some(Elem::Null),
            "+Inf" | "Inf" | "inf" | "Infinity" => Some(Elem::Float(f64::INFINITY)),
            "-Inf" | "-inf" | "-Infinity" => Some(Elem::Float(f64::NEG_INFINITY)),
            _ => s.parse::<f64>().ok().map(Elem::Float),
        },
        Prim::Char | Prim::UnicodeChar => unreachable!("strings are not elements"),
    }
}

/// Where the reader is in the document.
enum Data {
    TableData,
    Binary { version2: bool },
}

/// A VOTable open for reading its first table, positioned at its data.
pub struct VoTableReader<R: BufRead> {
    xml: quick_xml::Reader<R>,
    schema: SchemaRef,
    columns: Vec<Column>,
    data: Option<Data>,
    /// Decoded BINARY/BINARY2 bytes and the read position.
    binary: Vec<u8>,
    at: usize,
    rows: u64,
    done: bool,
    buf: Vec<u8>,
}

impl<R: BufRead> VoTableReader<R> {
    /// Reads the document up to the data of its first TABLE (the FIELDs, their metadata).
    pub fn new(input: R) -> Result<VoTableReader<R>> {
        let mut xml = quick_xml::Reader::from_reader(input);
        xml.config_mut().trim_text(false);
        let mut buf = Vec::new();
        let mut columns = Vec::new();
        let mut fields = Vec::new();
        let mut in_table = false;
        let mut seen_votable = false;
        // The FIELD whose children (DESCRIPTION, VALUES) are being read.
        let mut open_field: Option<(Column, HashMap<String, String>)> = None;
        let mut in_description = false;
        let mut description = String::new();
        let finish_field = |open: &mut Option<(Column, HashMap<String, String>)>,
                            columns: &mut Vec<Column>,
                            fields: &mut Vec<Field>,
                            description: &mut String| {
            if let Some((col, meta)) = open.take() {
                let mut meta = meta;
                if !description.trim().is_empty() {
                    meta.insert("description".into(), description.trim().to_string());
                }
                description.clear();
                let dt = if col.is_array {
                    let item = Arc::new(Field::new("item", col.prim.arrow(), true));
                    match col.count {
                        Count::Fixed(n) => DataType::FixedSizeList(item, n as i32),
                        Count::Variable => DataType::List(item),
                    }
                } else {
                    col.prim.arrow()
                };
                fields.push(Field::new(col.name.clone(), dt, true).with_metadata(meta));
                columns.push(col);
            }
        };
        let data = loop {
            buf.clear();
            let event = xml.read_event_into(&mut buf).map_err(|e| {
                VoTableError::Xml(format!("at byte {}: {e}", xml.buffer_position()))
            })?;
            match event {
                Event::Start(ref e) | Event::Empty(ref e) => {
                    let empty = matches!(event, Event::Empty(_));
                    let name = e.local_name().as_ref().to_vec();
                    match name.as_slice() {
                        b"VOTABLE" => seen_votable = true,
                        b"TABLE" => in_table = true,
                        b"FIELD" if in_table => {
                            finish_field(&mut open_field, &mut columns, &mut fields, &mut description);
                            let a = attrs(e)?;
                            let fname = a.get("name").cloned().or_else(|| a.get("ID").cloned()).unwrap_or_else(|| format!("col{}", columns.len() + 1));
                            let dt = a.get("datatype").map(String::as_str).unwrap_or("");
                            let prim = match dt {
                                "boolean" => Prim::Boolean,
                                "unsignedByte" => Prim::UByte,
                                "short" => Prim::Short,
                                "int" => Prim::Int,
                                "long" => Prim::Long,
                                "float" => Prim::Float,
                                "double" => Prim::Double,
                                "char" => Prim::Char,
                                "unicodeChar" => Prim::UnicodeChar,
                                "bit" | "floatComplex" | "doubleComplex" => {
                                    return Err(VoTableError::Field { field: fname, problem: format!("datatype {dt} is not supported") });
                                }
                                "" => return Err(VoTableError::Field { field: fname, problem: "no datatype".into() }),
                                other => return Err(VoTableError::Field { field: fname, problem: format!("unknown datatype {other}") }),
                            };
                            let count = parse_arraysize(&fname, a.get("arraysize").map(String::as_str))?;
                            let is_string = matches!(prim, Prim::Char | Prim::UnicodeChar);
                            let is_array = !is_string && count != Count::Fixed(1);
                            let mut meta = HashMap::new();
                            for key in ["unit", "ucd", "utype", "xtype"] {
                                if let Some(v) = a.get(key).filter(|v| !v.is_empty()) {
                                    meta.insert(key.to_string(), v.clone());
                                }
                            }
                            let col = Column { name: fname, prim, count, null: None, is_string, is_array };
                            open_field = Some((col, meta));
                            if empty {
                                finish_field(&mut open_field, &mut columns, &mut fields, &mut description);
                            }
                        }
                        b"DESCRIPTION" if open_field.is_some() && !empty => in_description = true,
                        b"VALUES" => {
                            if let Some((col, _)) = open_field.as_mut() {
                                col.null = attrs(e)?.get("null").cloned();
                            }
                        }
                        b"TABLEDATA" => break Data::TableData,
                        b"BINARY" => break Data::Binary { version2: false },
                        b"BINARY2" => break Data::Binary { version2: true },
                        b"FITS" => return Err(VoTableError::Unsupported("FITS-serialized table data is not supported; send TABLEDATA, BINARY or BINARY2".into())),
                        _ => {}
                    }
                }
                Event::End(ref e) => match e.local_name().as_ref() {
                    b"DESCRIPTION" => in_description = false,
                    b"FIELD" => {
                        finish_field(&mut open_field, &mut columns, &mut fields, &mut description)
                    }
                    b"TABLE" if in_table => {
                        // A table without DATA: no rows.
                        finish_field(&mut open_field, &mut columns, &mut fields, &mut description);
                        let schema = Arc::new(Schema::new(fields));
                        return Ok(VoTableReader {
                            xml,
                            schema,
                            columns,
                            data: None,
                            binary: Vec::new(),
                            at: 0,
                            rows: 0,
                            done: true,
                            buf,
                        });
                    }
                    _ => {}
                },
                Event::Text(t) if in_description => {
                    description
                        .push_str(&t.unescape().map_err(|e| VoTableError::Xml(e.to_string()))?);
                }
                Event::Eof => {
                    return Err(VoTableError::Xml(if seen_votable {
                        "the document has no TABLE".into()
                    } else {
                        "no VOTABLE element".into()
                    }));
                }
                _ => {}
            }
        };
        finish_field(&mut open_field, &mut columns, &mut fields, &mut description);
        if columns.is_empty() {
            return Err(VoTableError::Xml("the TABLE has no FIELD".into()));
        }
        let schema = Arc::new(Schema::new(fields));
        let mut reader = VoTableReader {
            xml,
            schema,
            columns,
            data: Some(data),
            binary: Vec::new(),
            at: 0,
            rows: 0,
            done: false,
            buf,
        };
        if let Some(Data::Binary { .. }) = reader.data {
            reader.read_stream()?;
        }
        Ok(reader)
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Reads the base64 STREAM of a BINARY or BINARY2 element.
    fn read_stream(&mut self) -> Result<()> {
        let mut text = String::new();
        let mut in_stream = false;
        loop {
            self.buf.clear();
            match self
                .xml
                .read_event_into(&mut self.buf)
                .map_err(|e| VoTableError::Xml(e.to_string()))?
            {
                Event::Start(e) if e.local_name().as_ref() == b"STREAM" => {
                    let a = attrs(&e)?;
                    if a.contains_key("href") {
                        return Err(VoTableError::Unsupported(
                            "a STREAM that refers to external data (href) is not supported".into(),
                        ));
                    }
                    if a.get("encoding").is_some_and(|enc| enc != "base64") {
                        return Err(VoTableError::Unsupported(format!(
                            "STREAM encoding {} is not supported (only base64)",
                            a["encoding"]
                        )));
                    }
                    in_stream = true;
                }
                Event::Text(t) if in_stream => {
                    text.push_str(&t.unescape().map_err(|e| VoTableError::Xml(e.to_string()))?)
                }
                Event::End(e) if e.local_name().as_ref() == b"STREAM" => break,
                Event::Eof => {
                    return Err(VoTableError::Xml(
                        "the document ends inside its data".into(),
                    ));
                }
                _ => {}
            }
        }
        let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        self.binary = base64::engine::general_purpose::STANDARD
            .decode(clean.as_bytes())
            .map_err(|e| VoTableError::Xml(format!("the STREAM is not valid base64: {e}")))?;
        Ok(())
    }

    /// The next batch of up to `max_rows` rows, or `None` after the last.
    pub fn next_batch(&mut self, max_rows: usize) -> Result<Option<RecordBatch>> {
        if self.done {
            return Ok(None);
        }
        let mut builders: Vec<Builder> = self.columns.iter().map(Builder::new).collect();
        let mut n = 0;
        while n < max_rows {
            let more = match self.data {
                Some(Data::TableData) => self.tabledata_row(&mut builders)?,
                Some(Data::Binary { version2 }) => self.binary_row(&mut builders, version2)?,
                None => false,
            };
            if !more {
                self.done = true;
                break;
            }
            n += 1;
            self.rows += 1;
        }
        if n == 0 {
            return Ok(None);
        }
        let arrays: Vec<ArrayRef> = builders.iter_mut().map(Builder::finish).collect();
        let batch = RecordBatch::try_new(self.schema.clone(), arrays)
            .map_err(|e| VoTableError::Xml(e.to_string()))?;
        Ok(Some(batch))
    }

    /// Every remaining row, as batches.
    pub fn read_all(mut self, batch_rows: usize) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let mut out = Vec::new();
        while let Some(b) = self.next_batch(batch_rows)? {
            out.push(b);
        }
        Ok((self.schema, out))
    }

    fn value_error(&self, col: usize, problem: String) -> VoTableError {
        VoTableError::Value {
            row: self.rows + 1,
            field: self.columns[col].name.clone(),
            problem,
        }
    }

    /// Parses one TR; false at the end of the TABLEDATA.
    fn tabledata_row(&mut self, builders: &mut [Builder]) -> Result<bool> {
        let mut cells: Vec<Option<String>> = Vec::with_capacity(self.columns.len());
        let mut in_row = false;
        let mut cell: Option<String> = None;
        loop {
            self.buf.clear();
            let event = self
                .xml
                .read_event_into(&mut self.buf)
                .map_err(|e| VoTableError::Xml(format!("row {}: {e}", self.rows + 1)))?;
            match event {
                Event::Start(e) => match e.local_name().as_ref() {
                    b"TR" => in_row = true,
                    b"TD" if in_row => cell = Some(String::new()),
                    _ => {}
                },
                Event::Empty(e) if in_row && e.local_name().as_ref() == b"TD" => {
                    cells.push(Some(String::new()))
                }
                Event::Text(t) => {
                    if let Some(c) = cell.as_mut() {
                        c.push_str(&t.unescape().map_err(|e| VoTableError::Xml(e.to_string()))?);
                    }
                }
                Event::CData(t) => {
                    if let Some(c) = cell.as_mut() {
                        c.push_str(&String::from_utf8_lossy(&t));
                    }
                }
                Event::End(e) => match e.local_name().as_ref() {
                    b"TD" => cells.push(cell.take()),
                    b"TR" => break,
                    b"TABLEDATA" => return Ok(false),
                    _ => {}
                },
                Event::Eof => {
                    return Err(VoTableError::Xml(
                        "the document ends inside its TABLEDATA".into(),
                    ));
                }
                _ => {}
            }
        }
        if cells.len() != self.columns.len() {
            return Err(VoTableError::Value {
                row: self.rows + 1,
                field: String::new(),
                problem: format!(
                    "the row has {} cells, the table {} fields",
                    cells.len(),
                    self.columns.len()
                ),
            });
        }
        for (k, cell) in cells.into_iter().enumerate() {
            let text = cell.unwrap_or_default();
            let col = &self.columns[k];
            let is_null = col.null.as_deref().is_some_and(|n| n == text.trim());
            if col.is_string {
                let Builder::Str(b) = &mut builders[k] else {
                    unreachable!("string column")
                };
                // An empty cell is NULL; a string that is only blanks is a value.
                if text.is_empty() || is_null {
                    b.append_null()
                } else {
                    b.append_value(&text)
                }
            } else if col.is_array {
                if text.trim().is_empty() || is_null {
                    builders[k].push_array(col.prim, None, fixed(col.count));
                } else {
                    let mut elems = Vec::new();
                    for part in text.split_whitespace() {
                        let e = parse_text(col.prim, part).ok_or_else(|| {
                            self.value_error(k, format!("{part:?} is not a {:?}", col.prim))
                        })?;
                        elems.push(e);
                    }
                    if let Count::Fixed(n) = col.count
                        && elems.len() != n
                    {
                        return Err(self.value_error(
                            k,
                            format!("{} elements where arraysize says {n}", elems.len()),
                        ));
                    }
                    builders[k].push_array(col.prim, Some(&elems), fixed(col.count));
                }
            } else {
                let e = if is_null {
                    Elem::Null
                } else {
                    parse_text(col.prim, &text).ok_or_else(|| {
                        self.value_error(k, format!("{:?} is not a {:?}", text.trim(), col.prim))
                    })?
                };
                builders[k].push(col.prim, e);
            }
        }
        Ok(true)
    }

    fn take_bytes(&mut self, n: usize) -> Result<&[u8]> {
        if n > self.binary.len() - self.at {
            return Err(VoTableError::Xml(format!(
                "the binary stream ends inside row {}",
                self.rows + 1
            )));
        }
        let s = &self.binary[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    /// Decodes one row of a BINARY/BINARY2 stream; false at its end.
    fn binary_row(&mut self, builders: &mut [Builder], version2: bool) -> Result<bool> {
        if self.at >= self.binary.len() {
            return Ok(false);
        }
        let ncols = self.columns.len();
        let flags = if version2 {
            self.take_bytes(ncols.div_ceil(8))?.to_vec()
        } else {
            Vec::new()
        };
        for k in 0..ncols {
            let flagged = version2 && flags[k / 8] & (0x80 >> (k % 8)) != 0;
            let col = self.columns[k].clone();
            let count = match col.count {
                Count::Fixed(n) => n,
                Count::Variable => {
                    u32::from_be_bytes(self.take_bytes(4)?.try_into().expect("4 bytes")) as usize
                }
            };
            // count <= MAX_ELEMENTS for fixed sizes and < 2^32 for variable ones: the product fits a 64-bit usize.
            let bytes = self
                .take_bytes(count.saturating_mul(col.prim.width()))?
                .to_vec();
            if col.is_string {
                let Builder::Str(b) = &mut builders[k] else {
                    unreachable!("string column")
                };
                let text = if col.prim == Prim::UnicodeChar {
                    let units: Vec<u16> = bytes
                        .chunks(2)
                        .map(|c| u16::from_be_bytes([c[0], c[1]]))
                        .collect();
                    String::from_utf16_lossy(&units)
                } else {
                    String::from_utf8_lossy(&bytes).into_owned()
                };
                let text = text.trim_end_matches('\0');
                if flagged || col.null.as_deref() == Some(text) {
                    b.append_null()
                } else {
                    b.append_value(text)
                }
                continue;
            }
            let null_int = col
                .null
                .as_deref()
                .and_then(|n| parse_text(col.prim, n))
                .and_then(|e| match e {
                    Elem::Int(v) => Some(v),
                    _ => None,
                });
            let elems: Vec<Elem> = bytes
                .chunks(col.prim.width())
                .map(|b| {
                    let e = match col.prim {
                        Prim::Boolean => match b[0] {
                            b'T' | b't' | b'1' => Elem::Bool(true),
                            b'F' | b'f' | b'0' => Elem::Bool(false),
                            _ => Elem::Null,
                        },
                        Prim::UByte => Elem::Int(b[0] as i64),
                        Prim::Short => Elem::Int(i16::from_be_bytes([b[0], b[1]]) as i64),
                        Prim::Int => {
                            Elem::Int(i32::from_be_bytes(b.try_into().expect("4 bytes")) as i64)
                        }
                        Prim::Long => Elem::Int(i64::from_be_bytes(b.try_into().expect("8 bytes"))),
                        Prim::Float => {
                            Elem::Float(f32::from_be_bytes(b.try_into().expect("4 bytes")) as f64)
                        }
                        Prim::Double => {
                            Elem::Float(f64::from_be_bytes(b.try_into().expect("8 bytes")))
                        }
                        Prim::Char | Prim::UnicodeChar => unreachable!("handled above"),
                    };
                    match e {
                        Elem::Int(v) if null_int == Some(v) => Elem::Null,
                        e => e,
                    }
                })
                .collect();
            if col.is_array {
                builders[k].push_array(
                    col.prim,
                    (!flagged).then_some(&elems[..]),
                    fixed(col.count),
                );
            } else {
                builders[k].push(col.prim, if flagged { Elem::Null } else { elems[0] });
            }
        }
        Ok(true)
    }
}

fn fixed(c: Count) -> usize {
    match c {
        Count::Fixed(n) => n,
        Count::Variable => 0,
    }
}

/// Reads a whole VOTable held in memory.
pub fn read_bytes(bytes: &[u8]) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    VoTableReader::new(bytes)?.read_all(65_536)
}
