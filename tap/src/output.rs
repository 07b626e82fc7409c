//! Streamed result documents: VOTable 1.4 TABLEDATA and BINARY2, CSV, TSV, Parquet and Arrow IPC streams, written
//! batch by batch as the merge produces them, so a result of any size passes through the czar in bounded memory.
//!
//! A [`ResultWriter`] appends to an internal buffer that the caller drains ([`ResultWriter::take`]) after each
//! batch. How a document ends says what happened: VOTables close with `QUERY_STATUS` = `OVERFLOW` when MAXREC cut
//! rows, and with `QUERY_STATUS` = `ERROR` (after the rows already sent) when the query failed mid-stream; formats
//! that cannot say so (CSV, TSV, Parquet, Arrow) are cut off instead, so a client never reads a partial result as
//! whole. Parquet and Arrow results carry `QUERY_STATUS` (OK or OVERFLOW) in their metadata.
//!
//! Why one long module: one writer for six formats (VOTable TABLEDATA and BINARY2, CSV, TSV, Parquet, Arrow) that
//! share its buffer, MAXREC and ending logic.

use std::io::Write;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, SchemaRef,
    UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use base64::Engine as _;
use bytes::Bytes;
use futures::StreamExt;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use tokio::sync::mpsc;

use votable::write::{field_element, field_element_with_id, votable_type, xml_escape};

/// A result format a client may ask for (TAP `RESPONSEFORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    VoTable,
    VoTableBinary2,
    Csv,
    Tsv,
    Parquet,
    /// Arrow IPC stream (the notebook's fast path: `pyarrow.ipc.open_stream`).
    ArrowStream,
}

/// (MIME type, short names) of each format, in the order `/capabilities` lists them.
pub const FORMATS: [(OutputFormat, &str, &[&str]); 6] = [
    (
        OutputFormat::VoTable,
        "application/x-votable+xml",
        &[
            "votable",
            "votable/td",
            "text/xml",
            "application/x-votable+xml;serialization=tabledata",
        ],
    ),
    (
        OutputFormat::VoTableBinary2,
        "application/x-votable+xml;serialization=binary2",
        &["votable/b2", "binary2", "votable/binary2"],
    ),
    (
        OutputFormat::Csv,
        "text/csv",
        &["csv", "text/csv;header=present"],
    ),
    (OutputFormat::Tsv, "text/tab-separated-values", &["tsv"]),
    (
        OutputFormat::Parquet,
        "application/vnd.apache.parquet",
        &["parquet", "application/x-parquet"],
    ),
    (
        OutputFormat::ArrowStream,
        "application/vnd.apache.arrow.stream",
        &["arrow", "arrow-stream", "arrows"],
    ),
];

impl OutputFormat {
    /// Reads a `RESPONSEFORMAT` value (a MIME type, with or without parameters, or a short name).
    pub fn parse(value: &str) -> Result<OutputFormat, String> {
        let v = value.trim().to_lowercase().replace(' ', "");
        for (format, mime, aliases) in FORMATS {
            if v == mime || aliases.contains(&v.as_str()) {
                return Ok(format);
            }
        }
        // A plain VOTable MIME type with other parameters (e.g. `;content=datalink`) is TABLEDATA.
        if v.starts_with("application/x-votable+xml") || v.starts_with("text/xml") {
            return Ok(OutputFormat::VoTable);
        }
        if v.starts_with("text/csv") {
            return Ok(OutputFormat::Csv);
        }
        Err(format!(
            "RESPONSEFORMAT={value} is not supported; this service writes {}",
            FORMATS
                .iter()
                .map(|(_, m, a)| format!("{m} ({})", a[0]))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }

    pub fn mime(self) -> &'static str {
        FORMATS
            .iter()
            .find(|(f, ..)| *f == self)
            .map(|(_, m, _)| *m)
            .unwrap_or("application/octet-stream")
    }

    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::VoTable | OutputFormat::VoTableBinary2 => "vot",
            OutputFormat::Csv => "csv",
            OutputFormat::Tsv => "tsv",
            OutputFormat::Parquet => "parquet",
            OutputFormat::ArrowStream => "arrows",
        }
    }

    /// Whether the document can carry an error after its rows (VOTable's trailing INFO).
    pub fn reports_errors_inline(self) -> bool {
        matches!(self, OutputFormat::VoTable | OutputFormat::VoTableBinary2)
    }
}

/// A buffer that an `ArrowWriter` owns a handle to while the caller drains it.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Shared {
    /// Moves what was written so far to the end of `out`.
    fn drain_into(&self, out: &mut Vec<u8>) {
        out.append(
            &mut self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
    }
}

/// Writes one result document incrementally.
pub struct ResultWriter {
    format: OutputFormat,
    schema: SchemaRef,
    buf: Vec<u8>,
    /// BINARY2: raw row bytes not yet base64-encoded (always fewer than 3 after a batch).
    raw: Vec<u8>,
    parquet: Option<(ArrowWriter<Shared>, Shared)>,
    arrow: Option<ArrowStream>,
    /// [`ARROW_HOLD_BYTES`] (smaller in tests).
    arrow_hold: usize,
    /// A VOTable's DataLink service descriptor, written after the results resource.
    descriptor: Option<String>,
}

/// An Arrow IPC stream result. Its schema's metadata says `QUERY_STATUS` (OK or OVERFLOW), which is known only at
/// the end: batches are held back until then or until [`ARROW_HOLD_BYTES`] are held (a result cut at the default
/// MAXREC always fits). A larger result streams with no status in its schema; if MAXREC then cuts it, the body is
/// broken off instead of ended, so no reader takes it as whole.
enum ArrowStream {
    Holding(Vec<RecordBatch>, usize),
    /// The writer, its sink, and whether the schema carried the status.
    Streaming(arrow::ipc::writer::StreamWriter<Shared>, Shared, bool),
}

/// A DataLink service descriptor (DataLink 1.1 section 4): how to get the links of each row's publisher DID, so
/// pyvo's `iter_datalinks` and TOPCAT's activation actions find DataLink from the result itself.
fn datalink_descriptor(links: &str) -> String {
    format!(
        "<RESOURCE type=\"meta\" utype=\"adhoc:service\" name=\"datalink\">\n\
         <DESCRIPTION>The links of each image: the file, cutouts (SODA), previews</DESCRIPTION>\n\
         <PARAM name=\"standardID\" datatype=\"char\" arraysize=\"*\" value=\"ivo://ivoa.net/std/DataLink#links-1.1\"/>\n\
         <PARAM name=\"accessURL\" datatype=\"char\" arraysize=\"*\" value=\"{}\"/>\n\
         <GROUP name=\"inputParams\">\n\
         <PARAM name=\"ID\" datatype=\"char\" arraysize=\"*\" ucd=\"meta.id;meta.main\" ref=\"{DID_FIELD_ID}\" value=\"\"/>\n\
         </GROUP>\n</RESOURCE>\n",
        xml_escape(links)
    )
}

/// How much of an Arrow stream result is held back to learn its status.
const ARROW_HOLD_BYTES: usize = 64 << 20;

/// What a VOTable result says besides its rows: its `INFO` elements, and the DataLink service (`/datalink/links`,
/// absolute) that a column of ObsCore publisher DIDs leads to.
#[derive(Debug, Clone, Default)]
pub struct Head {
    pub info: Vec<(&'static str, String)>,
    pub links: Option<String>,
}

/// The utype of ObsCore's `obs_publisher_did`: a result with such a column gets a DataLink service descriptor.
const PUBLISHER_DID: &str = "obscore:Curation.PublisherDID";

/// The XML ID of the column a DataLink descriptor's `ID` parameter refers to.
const DID_FIELD_ID: &str = "skyshard_publisher_did";

/// How a result ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    Complete,
    /// MAXREC cut rows.
    Overflow,
    /// The query failed after rows were sent.
    Failed(String),
}

impl Ending {
    /// The `QUERY_STATUS` value that says so.
    fn status(&self) -> &'static str {
        match self {
            Ending::Complete => "OK",
            Ending::Overflow => "OVERFLOW",
            Ending::Failed(_) => "ERROR",
        }
    }
}

impl ResultWriter {
    /// Starts a document for `schema` (`info`: extra `INFO name=value` elements of a VOTable header).
    pub fn new(format: OutputFormat, schema: SchemaRef, head: &Head) -> std::io::Result<ResultWriter> {
        let mut w = ResultWriter {
            format,
            schema: schema.clone(),
            buf: Vec::with_capacity(1 << 16),
            raw: Vec::new(),
            parquet: None,
            arrow: None,
            arrow_hold: ARROW_HOLD_BYTES,
            descriptor: None,
        };
        match format {
            OutputFormat::VoTable | OutputFormat::VoTableBinary2 => w.votable_header(head)?,
            OutputFormat::Csv => {
                let names: Vec<String> = schema
                    .fields()
                    .iter()
                    .map(|f| csv_escape(f.name()))
                    .collect();
                writeln!(w.buf, "{}", names.join(","))?;
            }
            OutputFormat::Tsv => {
                let names: Vec<String> = schema
                    .fields()
                    .iter()
                    .map(|f| tsv_clean(f.name()))
                    .collect();
                writeln!(w.buf, "{}", names.join("\t"))?;
            }
            OutputFormat::Parquet => {
                let sink = Shared::default();
                // Plain encoding without compression or page statistics: results are read once, by the client,
                // and these settings write about 3x faster than dictionary + Snappy (docs/benchmarks.md).
                let props = WriterProperties::builder()
                    .set_max_row_group_row_count(Some(128 * 1024))
                    .set_compression(parquet::basic::Compression::UNCOMPRESSED)
                    .set_dictionary_enabled(false)
                    .set_statistics_enabled(parquet::file::properties::EnabledStatistics::None)
                    .build();
                let writer = ArrowWriter::try_new(sink.clone(), schema, Some(props))
                    .map_err(std::io::Error::other)?;
                w.parquet = Some((writer, sink));
            }
            OutputFormat::ArrowStream => w.arrow = Some(ArrowStream::Holding(Vec::new(), 0)),
        }
        Ok(w)
    }

    /// Starts the Arrow stream: the schema (its fields' units, UCDs and descriptions in their metadata), with the
    /// result's status and VOTable header in its own metadata when known.
    fn arrow_start(&self, status: Option<&str>) -> std::io::Result<ArrowStream> {
        let mut metadata = self.schema.metadata().clone();
        if let Some(status) = status {
            metadata.insert("QUERY_STATUS".into(), status.into());
            metadata.insert("IVOA.VOTable.content".into(), self.votable_summary(status));
        }
        let schema =
            arrow::datatypes::Schema::new_with_metadata(self.schema.fields().clone(), metadata);
        let sink = Shared::default();
        let writer = arrow::ipc::writer::StreamWriter::try_new(sink.clone(), &schema)
            .map_err(std::io::Error::other)?;
        Ok(ArrowStream::Streaming(writer, sink, status.is_some()))
    }

    /// The VOTable header of the result (fields with units and UCDs, and its status), as VOParquet keeps it.
    fn votable_summary(&self, status: &str) -> String {
        let fields: String = self
            .schema
            .fields()
            .iter()
            .map(|f| field_element(f))
            .collect();
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<VOTABLE version=\"1.4\" \
             xmlns=\"http://www.ivoa.net/xml/VOTable/v1.3\">\n<RESOURCE type=\"results\">\n\
             <INFO name=\"QUERY_STATUS\" value=\"{status}\"/>\n<TABLE>\n{fields}\n</TABLE>\n\
             </RESOURCE>\n</VOTABLE>\n"
        )
    }

    /// Whether the document can end as `ending` says; if not (an Arrow stream already under way, with no status in
    /// its schema, cut at MAXREC) the body must be broken off.
    pub fn can_end_as(&self, ending: &Ending) -> bool {
        !matches!(
            (&self.arrow, ending),
            (Some(ArrowStream::Streaming(_, _, false)), Ending::Overflow)
        )
    }

    fn votable_header(&mut self, head: &Head) -> std::io::Result<()> {
        // The first column of publisher DIDs, if the result has one and the service's DataLink URL is known.
        let did = head.links.as_ref().and_then(|links| {
            let i = self.schema.fields().iter().position(|f| {
                f.metadata()
                    .get("utype")
                    .is_some_and(|u| u.eq_ignore_ascii_case(PUBLISHER_DID))
            })?;
            Some((i, links.clone()))
        });
        let out = &mut self.buf;
        writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
        writeln!(
            out,
            r#"<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">"#
        )?;
        writeln!(out, r#"<RESOURCE type="results">"#)?;
        writeln!(out, r#"<INFO name="QUERY_STATUS" value="OK"/>"#)?;
        for (name, value) in &head.info {
            writeln!(
                out,
                r#"<INFO name="{}" value="{}"/>"#,
                xml_escape(name),
                xml_escape(value)
            )?;
        }
        writeln!(out, "<TABLE>")?;
        for (i, f) in self.schema.fields().iter().enumerate() {
            let id = did.as_ref().filter(|(d, _)| *d == i).map(|_| DID_FIELD_ID);
            out.extend_from_slice(field_element_with_id(f, id).as_bytes());
            out.push(b'\n');
        }
        self.descriptor = did.map(|(_, links)| datalink_descriptor(&links));
        match self.format {
            OutputFormat::VoTableBinary2 => {
                writeln!(out, r#"<DATA><BINARY2><STREAM encoding="base64">"#)?
            }
            _ => writeln!(out, "<DATA><TABLEDATA>")?,
        }
        Ok(())
    }

    /// Appends the rows of `batch`.
    pub fn write(&mut self, batch: &RecordBatch) -> std::io::Result<()> {
        match self.format {
            OutputFormat::VoTable => {
                for row in 0..batch.num_rows() {
                    self.buf.extend_from_slice(b"<TR>");
                    for c in batch.columns() {
                        match cell(c, row) {
                            Some(v) => {
                                self.buf.extend_from_slice(b"<TD>");
                                self.buf.extend_from_slice(xml_escape(&v).as_bytes());
                                self.buf.extend_from_slice(b"</TD>");
                            }
                            None => self.buf.extend_from_slice(b"<TD/>"),
                        }
                    }
                    self.buf.extend_from_slice(b"</TR>\n");
                }
            }
            OutputFormat::VoTableBinary2 => {
                binary2_rows(batch, &mut self.raw);
                let whole = self.raw.len() / 3 * 3;
                let encoded = base64::engine::general_purpose::STANDARD.encode(&self.raw[..whole]);
                self.raw.drain(..whole);
                self.buf.extend_from_slice(encoded.as_bytes());
                self.buf.push(b'\n');
            }
            OutputFormat::Csv | OutputFormat::Tsv => {
                let csv = self.format == OutputFormat::Csv;
                for row in 0..batch.num_rows() {
                    for (i, c) in batch.columns().iter().enumerate() {
                        if i > 0 {
                            self.buf.push(if csv { b',' } else { b'\t' });
                        }
                        if let Some(v) = cell(c, row) {
                            let v = if csv { csv_escape(&v) } else { tsv_clean(&v) };
                            self.buf.extend_from_slice(v.as_bytes());
                        }
                    }
                    self.buf.push(b'\n');
                }
            }
            OutputFormat::Parquet => {
                let (writer, _) = self.parquet.as_mut().expect("parquet writer");
                writer.write(batch).map_err(std::io::Error::other)?;
            }
            OutputFormat::ArrowStream => {
                if let Some(ArrowStream::Holding(held, bytes)) = &mut self.arrow {
                    held.push(batch.clone());
                    *bytes += batch.get_array_memory_size();
                    if *bytes >= self.arrow_hold {
                        self.arrow_release(None)?;
                    }
                } else {
                    self.arrow_write(batch)?;
                }
            }
        }
        Ok(())
    }

    /// Starts the stream (with `status` in its schema when known) and writes the batches held back so far; nothing
    /// if it is under way already.
    fn arrow_release(&mut self, status: Option<&str>) -> std::io::Result<()> {
        if let Some(ArrowStream::Holding(held, _)) = &mut self.arrow {
            let held = std::mem::take(held);
            self.arrow = Some(self.arrow_start(status)?);
            for b in &held {
                self.arrow_write(b)?;
            }
        }
        Ok(())
    }

    fn arrow_write(&mut self, batch: &RecordBatch) -> std::io::Result<()> {
        if let Some(ArrowStream::Streaming(writer, ..)) = &mut self.arrow {
            writer.write(batch).map_err(std::io::Error::other)?;
        }
        Ok(())
    }

    /// Ends the document.
    pub fn finish(&mut self, ending: &Ending) -> std::io::Result<()> {
        match self.format {
            OutputFormat::VoTable | OutputFormat::VoTableBinary2 => {
                if self.format == OutputFormat::VoTableBinary2 {
                    let encoded = base64::engine::general_purpose::STANDARD.encode(&self.raw);
                    self.raw.clear();
                    self.buf.extend_from_slice(encoded.as_bytes());
                    writeln!(self.buf, "\n</STREAM></BINARY2></DATA>\n</TABLE>")?;
                } else {
                    writeln!(self.buf, "</TABLEDATA></DATA>\n</TABLE>")?;
                }
                match ending {
                    Ending::Complete => {}
                    Ending::Overflow => {
                        writeln!(self.buf, r#"<INFO name="QUERY_STATUS" value="OVERFLOW"/>"#)?
                    }
                    Ending::Failed(m) => writeln!(
                        self.buf,
                        r#"<INFO name="QUERY_STATUS" value="ERROR">{}</INFO>"#,
                        xml_escape(m)
                    )?,
                }
                writeln!(self.buf, "</RESOURCE>")?;
                if let Some(d) = self.descriptor.take() {
                    self.buf.extend_from_slice(d.as_bytes());
                }
                writeln!(self.buf, "</VOTABLE>")?;
            }
            OutputFormat::Parquet => {
                if let Some((mut writer, _)) = self.parquet.take() {
                    // VOParquet (IVOA Note): the VOTable header of the result in the footer, with its units, UCDs
                    // and QUERY_STATUS, so a reader can tell a result cut at MAXREC from a whole one; and the
                    // status alone under its own key for readers that know no VOTable.
                    let status = ending.status();
                    let header = self.votable_summary(status);
                    for (key, value) in [
                        ("QUERY_STATUS", status.to_string()),
                        ("IVOA.VOTable-Parquet.version", "1.0".to_string()),
                        ("IVOA.VOTable-Parquet.content", header),
                    ] {
                        writer.append_key_value_metadata(parquet::file::metadata::KeyValue::new(
                            key.into(),
                            value,
                        ));
                    }
                    // Keep the sink: `take` still drains it.
                    let sink = writer.inner().clone();
                    writer.close().map_err(std::io::Error::other)?;
                    self.parquet = None;
                    sink.drain_into(&mut self.buf);
                }
            }
            OutputFormat::ArrowStream => {
                self.arrow_release(Some(ending.status()))?;
                if let Some(ArrowStream::Streaming(mut writer, sink, _)) = self.arrow.take() {
                    writer.finish().map_err(std::io::Error::other)?;
                    sink.drain_into(&mut self.buf);
                }
            }
            OutputFormat::Csv | OutputFormat::Tsv => {}
        }
        Ok(())
    }

    /// The bytes written since the last call.
    pub fn take(&mut self) -> Vec<u8> {
        if let Some(ArrowStream::Streaming(_, sink, _)) = &self.arrow {
            sink.drain_into(&mut self.buf);
        }
        if let Some((_, sink)) = &self.parquet {
            sink.drain_into(&mut self.buf);
        }
        std::mem::take(&mut self.buf)
    }
}

fn csv_escape(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn tsv_clean(s: &str) -> String {
    s.replace(['\t', '\n', '\r'], " ")
}

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

/// Appends the BINARY2 encoding of each row of `batch` (null flags, then each cell big-endian) to `out`.
fn binary2_rows(batch: &RecordBatch, out: &mut Vec<u8>) {
    let columns = batch.columns();
    let flag_bytes = columns.len().div_ceil(8);
    let strings: Vec<Option<ArrayRef>> = columns
        .iter()
        .map(|c| match votable_type(c.data_type()) {
            ("char", ..)
                if !matches!(
                    c.data_type(),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                ) =>
            {
                arrow::compute::cast(c, &DataType::Utf8).ok()
            }
            _ => None,
        })
        .collect();
    for row in 0..batch.num_rows() {
        let start = out.len();
        out.resize(start + flag_bytes, 0);
        for (i, c) in columns.iter().enumerate() {
            if c.is_null(row) {
                out[start + i / 8] |= 0x80 >> (i % 8);
            }
            let c = strings[i].as_ref().unwrap_or(c);
            binary2_cell(c, row, out);
        }
    }
}

fn binary2_cell(c: &ArrayRef, row: usize, out: &mut Vec<u8>) {
    let null = c.is_null(row);
    macro_rules! prim {
        ($t:ty, $as:ty) => {{
            let v = if null {
                Default::default()
            } else {
                c.as_primitive::<$t>().value(row) as $as
            };
            out.extend_from_slice(&v.to_be_bytes());
        }};
    }
    match c.data_type() {
        DataType::Boolean => out.push(if null {
            b'?'
        } else if c.as_boolean().value(row) {
            b'T'
        } else {
            b'F'
        }),
        DataType::Int8 => prim!(Int8Type, i16),
        DataType::Int16 => prim!(Int16Type, i16),
        DataType::UInt8 => prim!(UInt8Type, i16),
        DataType::Int32 => prim!(Int32Type, i32),
        DataType::UInt16 => prim!(UInt16Type, i32),
        DataType::Int64 => prim!(Int64Type, i64),
        DataType::UInt32 => prim!(UInt32Type, i64),
        DataType::UInt64 => prim!(UInt64Type, i64),
        DataType::Float32 => {
            let v = if null {
                f32::NAN
            } else {
                c.as_primitive::<Float32Type>().value(row)
            };
            out.extend_from_slice(&v.to_be_bytes());
        }
        DataType::Float64 => {
            let v = if null {
                f64::NAN
            } else {
                c.as_primitive::<Float64Type>().value(row)
            };
            out.extend_from_slice(&v.to_be_bytes());
        }
        DataType::FixedSizeList(_, n) => {
            let n = *n as usize;
            if null {
                for _ in 0..n {
                    out.extend_from_slice(&f64::NAN.to_be_bytes());
                }
            } else {
                let v = c.as_fixed_size_list().value(row);
                write_doubles(&v, n, out);
            }
        }
        DataType::List(_) | DataType::LargeList(_) => {
            if null {
                out.extend_from_slice(&0u32.to_be_bytes());
            } else {
                let v = match c.data_type() {
                    DataType::List(_) => c.as_list::<i32>().value(row),
                    _ => c.as_list::<i64>().value(row),
                };
                out.extend_from_slice(&(v.len() as u32).to_be_bytes());
                write_doubles(&v, v.len(), out);
            }
        }
        DataType::Float16 | DataType::Decimal128(..) | DataType::Decimal256(..) => {
            let v = if null {
                f64::NAN
            } else {
                arrow::compute::cast(&c.slice(row, 1), &DataType::Float64)
                    .ok()
                    .map(|a| a.as_primitive::<Float64Type>().value(0))
                    .unwrap_or(f64::NAN)
            };
            out.extend_from_slice(&v.to_be_bytes());
        }
        _ => {
            let s: &str = if null {
                ""
            } else {
                match c.data_type() {
                    DataType::Utf8 => c.as_string::<i32>().value(row),
                    DataType::LargeUtf8 => c.as_string::<i64>().value(row),
                    DataType::Utf8View => c.as_string_view().value(row),
                    _ => "",
                }
            };
            out.extend_from_slice(&(s.len() as u32).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    }
}

fn write_doubles(values: &ArrayRef, n: usize, out: &mut Vec<u8>) {
    let v = arrow::compute::cast(values, &DataType::Float64).ok();
    for k in 0..n {
        let x = v
            .as_ref()
            .filter(|v| k < v.len() && !v.is_null(k))
            .map(|v| v.as_primitive::<Float64Type>().value(k))
            .unwrap_or(f64::NAN);
        out.extend_from_slice(&x.to_be_bytes());
    }
}

/// What streaming a result did.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub rows: u64,
    pub ending: Ending,
}

/// Streams `batches` (at most `maxrec` rows) as a `format` document into `sink`, flushing at least every 256 KiB.
/// `recorded`: the caller keeps the ending where the client reads it (an async job's `jobInfo`), so a document that
/// cannot say it was cut (a long Arrow stream) may still end normally; otherwise such a document is broken off.
/// Returns Err when the query failed and the format cannot say so inline (the sink then got an error to cut the
/// document off), or when the sink went away (the client left: the query's streams are dropped, which cancels the
/// work on the workers).
pub async fn stream_result(
    mut batches: datafusion::physical_plan::SendableRecordBatchStream,
    format: OutputFormat,
    maxrec: u64,
    head: &Head,
    sink: mpsc::Sender<std::io::Result<Bytes>>,
    deadline: Option<(tokio::time::Instant, u64)>,
    recorded: bool,
) -> Result<Outcome, String> {
    let schema = batches.schema();
    let mut writer = ResultWriter::new(format, schema, head).map_err(|e| e.to_string())?;
    let mut rows = 0u64;
    let send = |bytes: Vec<u8>| {
        let sink = sink.clone();
        async move {
            if bytes.is_empty() {
                return Ok(());
            }
            sink.send(Ok(Bytes::from(bytes)))
                .await
                .map_err(|_| "the client went away".to_string())
        }
    };
    let ending = loop {
        if rows >= maxrec {
            // Cut here; tell OVERFLOW only if a row really was left out.
            let more = loop {
                match batches.next().await {
                    Some(Ok(b)) if b.num_rows() == 0 => continue,
                    Some(Ok(_)) => break true,
                    _ => break false,
                }
            };
            break if more {
                Ending::Overflow
            } else {
                Ending::Complete
            };
        }
        let next = match deadline {
            Some((at, secs)) => match tokio::time::timeout_at(at, batches.next()).await {
                Ok(next) => next,
                Err(_) => Some(Err(datafusion::error::DataFusionError::Execution(format!(
                    "the query ran longer than the limit of {secs} s and was stopped"
                )))),
            },
            None => batches.next().await,
        };
        match next {
            None => break Ending::Complete,
            Some(Ok(batch)) => {
                let take = (maxrec - rows).min(batch.num_rows() as u64) as usize;
                let cut = take < batch.num_rows();
                writer
                    .write(&batch.slice(0, take))
                    .map_err(|e| e.to_string())?;
                rows += take as u64;
                if cut {
                    break Ending::Overflow;
                }
                // Parquet and Arrow write into their own sinks: drained after every batch.
                if writer.buf.len() >= 256 * 1024
                    || matches!(format, OutputFormat::Parquet | OutputFormat::ArrowStream)
                {
                    send(writer.take()).await?;
                }
            }
            Some(Err(e)) => {
                let message = czar::CzarError::from_datafusion(e).to_string();
                if !format.reports_errors_inline() {
                    send(writer.take()).await?;
                    let _ = sink.send(Err(std::io::Error::other(message.clone()))).await;
                    return Err(message);
                }
                break Ending::Failed(message);
            }
        }
    };
    drop(batches);
    if !recorded && !writer.can_end_as(&ending) {
        let message = format!(
            "the result was cut at MAXREC={maxrec} after its schema was sent without a status"
        );
        send(writer.take()).await?;
        let _ = sink.send(Err(std::io::Error::other(message.clone()))).await;
        return Err(message);
    }
    writer.finish(&ending).map_err(|e| e.to_string())?;
    send(writer.take()).await?;
    Ok(Outcome { rows, ending })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{Field, Schema};
    use std::collections::HashMap;

    fn batch(schema: &SchemaRef, from: i64) -> RecordBatch {
        let values: Int64Array = (from..from + 100).collect();
        RecordBatch::try_new(schema.clone(), vec![Arc::new(values)]).unwrap()
    }

    fn read(bytes: Vec<u8>) -> (HashMap<String, String>, usize) {
        let reader =
            arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
        let metadata = reader.schema().metadata().clone();
        let rows = reader.map(|b| b.unwrap().num_rows()).sum();
        (metadata, rows)
    }

    #[test]
    fn arrow_streams_say_whether_they_were_cut() {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        // Held back until the end: the status is in the schema.
        let mut w = ResultWriter::new(OutputFormat::ArrowStream, schema.clone(), &Head::default()).unwrap();
        let mut out = Vec::new();
        for i in 0..3 {
            w.write(&batch(&schema, i * 100)).unwrap();
            out.extend(w.take());
        }
        assert!(out.is_empty(), "nothing is sent before the status is known");
        assert!(w.can_end_as(&Ending::Overflow));
        w.finish(&Ending::Overflow).unwrap();
        out.extend(w.take());
        let (metadata, rows) = read(out);
        assert_eq!(rows, 300);
        assert_eq!(metadata["QUERY_STATUS"], "OVERFLOW");
        assert!(metadata["IVOA.VOTable.content"].contains(r#"<FIELD name="id""#));

        // Too large to hold: streamed without a status, which only a whole result may end.
        let mut w = ResultWriter::new(OutputFormat::ArrowStream, schema.clone(), &Head::default()).unwrap();
        w.arrow_hold = 1;
        let mut out = Vec::new();
        for i in 0..3 {
            w.write(&batch(&schema, i * 100)).unwrap();
            out.extend(w.take());
        }
        assert!(!out.is_empty());
        assert!(!w.can_end_as(&Ending::Overflow));
        assert!(w.can_end_as(&Ending::Complete));
        w.finish(&Ending::Complete).unwrap();
        out.extend(w.take());
        let (metadata, rows) = read(out);
        assert_eq!(rows, 300);
        assert!(!metadata.contains_key("QUERY_STATUS"));
    }
}
