//! FITS binary tables (the first `BINTABLE` extension of a file) as Arrow record batches, read in a stream.
//!
//! Column types: `L` boolean, `B`/`I`/`J`/`K` integers (with the unsigned `TZERO` convention: `B` with
//! `TZERO = -128` is a signed byte, `I`/`J`/`K` with `TZERO = 2^15/2^31/2^63` unsigned), other `TSCAL`/`TZERO` on
//! integers give float64 physical values, `E`/`D` floats, `rA` strings (trailing blanks and NULs trimmed), numeric
//! repeats > 1 as fixed-size lists. `TNULL` integers and NaN floats read as NULL. `TUNITn`, `TUCDn` and `TCOMMn`
//! become the field metadata `unit`, `ucd` and `description`. Bits (`X`), complex numbers and variable-length arrays
//! are refused with the column's name.
//!
//! Why one long module: a FITS BINTABLE reader: header cards, the column types and the row decoder belong together.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, FixedSizeListArray, Float32Builder, Float64Builder, Int8Builder,
    Int16Builder, Int32Builder, Int64Builder, RecordBatch, StringBuilder, UInt8Builder,
    UInt16Builder, UInt32Builder, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::error::{LoaderError, Result, io};

const BLOCK: usize = 2880;
const CARD: usize = 80;

/// One header: keyword -> value text (strings unquoted), in order of appearance.
struct Header {
    cards: HashMap<String, String>,
}

impl Header {
    fn get(&self, key: &str) -> Option<&str> {
        self.cards.get(key).map(String::as_str)
    }

    fn int(&self, path: &Path, key: &str) -> Result<i64> {
        let v = self
            .get(key)
            .ok_or_else(|| bad(path, format!("header keyword {key} is missing")))?;
        v.parse().map_err(|_| {
            bad(
                path,
                format!("header keyword {key} = {v} is not an integer"),
            )
        })
    }

    fn float(&self, key: &str) -> Option<f64> {
        self.get(key)
            .and_then(|v| v.replace(['D', 'd'], "E").parse().ok())
    }
}

fn bad(path: &Path, problem: String) -> LoaderError {
    LoaderError::Format {
        path: path.to_path_buf(),
        format: "FITS",
        problem,
    }
}

/// Reads header blocks up to and including the one holding `END`.
fn read_header(path: &Path, r: &mut impl Read) -> Result<Option<Header>> {
    let mut cards = HashMap::new();
    let mut block = vec![0u8; BLOCK];
    let mut first = true;
    loop {
        match r.read_exact(&mut block) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && first => return Ok(None),
            Err(e) => return Err(io(path)(e)),
        }
        first = false;
        for card in block.chunks(CARD) {
            let card = String::from_utf8_lossy(card);
            let key = card[..8].trim_end().to_string();
            if key == "END" {
                return Ok(Some(Header { cards }));
            }
            if card.len() < 10 || &card[8..10] != "= " {
                continue;
            }
            let value = card[10..].trim();
            let value = if let Some(rest) = value.strip_prefix('\'') {
                // A quoted string: '' is a quote; the value ends at the first lone quote.
                let mut s = String::new();
                let mut chars = rest.chars().peekable();
                while let Some(c) = chars.next() {
                    if c == '\'' {
                        if chars.peek() == Some(&'\'') {
                            chars.next();
                            s.push('\'');
                        } else {
                            break;
                        }
                    } else {
                        s.push(c);
                    }
                }
                s.trim_end().to_string()
            } else {
                value.split('/').next().unwrap_or("").trim().to_string()
            };
            cards.insert(key, value);
        }
    }
}

/// The bytes of an HDU's data part, padded to whole blocks.
fn data_bytes(path: &Path, h: &Header) -> Result<u64> {
    let bitpix = h.int(path, "BITPIX")?.unsigned_abs();
    let naxis = h.int(path, "NAXIS")?;
    if naxis == 0 {
        return Ok(0);
    }
    let mut n = 1u64;
    for k in 1..=naxis {
        n *= h.int(path, &format!("NAXIS{k}"))? as u64;
    }
    let gcount = h
        .get("GCOUNT")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(1);
    let pcount = h
        .get("PCOUNT")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let bytes = bitpix / 8 * gcount * (pcount + n);
    Ok(bytes.div_ceil(BLOCK as u64) * BLOCK as u64)
}

#[derive(Debug, Clone, Copy)]
enum Code {
    Logical,
    Byte,
    Short,
    Int,
    Long,
    Float,
    Double,
    Chars,
}

#[derive(Debug, Clone)]
struct Column {
    code: Code,
    repeat: usize,
    offset: usize,
    /// Arrow type of one element.
    element: DataType,
    null: Option<i64>,
    /// Physical value = zero + scale * stored, when not the unsigned convention.
    scaling: Option<(f64, f64)>,
}

fn parse_tform(path: &Path, name: &str, tform: &str) -> Result<(Code, usize, usize)> {
    let t = tform.trim();
    let digits: String = t.chars().take_while(|c| c.is_ascii_digit()).collect();
    let repeat = if digits.is_empty() {
        1
    } else {
        digits.parse().unwrap_or(1)
    };
    let code = t[digits.len()..].chars().next().unwrap_or(' ');
    let (code, width) = match code {
        'L' => (Code::Logical, 1),
        'B' => (Code::Byte, 1),
        'I' => (Code::Short, 2),
        'J' => (Code::Int, 4),
        'K' => (Code::Long, 8),
        'E' => (Code::Float, 4),
        'D' => (Code::Double, 8),
        'A' => (Code::Chars, 1),
        other => {
            return Err(bad(
                path,
                format!(
                    "column {name} has TFORM {tform}: type '{other}' (bits, complex or variable-length arrays) cannot be loaded"
                ),
            ));
        }
    };
    Ok((code, repeat, width * repeat))
}

/// A FITS binary table open for reading, positioned at its first row.
pub struct FitsTable {
    path: PathBuf,
    reader: BufReader<File>,
    schema: SchemaRef,
    columns: Vec<Column>,
    row_bytes: usize,
    rows_left: u64,
}

impl FitsTable {
    pub fn open(path: &Path) -> Result<FitsTable> {
        let file = File::open(path).map_err(io(path))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let primary = read_header(path, &mut reader)?.ok_or_else(|| {
            bad(
                path,
                "not a FITS file (shorter than one header block)".into(),
            )
        })?;
        if primary.get("SIMPLE") != Some("T") {
            return Err(bad(
                path,
                "not a FITS file (no SIMPLE = T in its first header)".into(),
            ));
        }
        let mut skip = data_bytes(path, &primary)?;
        let table = loop {
            std::io::copy(&mut (&mut reader).take(skip), &mut std::io::sink()).map_err(io(path))?;
            let Some(h) = read_header(path, &mut reader)? else {
                return Err(bad(path, "the file has no BINTABLE extension".into()));
            };
            if h.get("XTENSION").map(str::trim) == Some("BINTABLE") {
                break h;
            }
            skip = data_bytes(path, &h)?;
        };
        let row_bytes = table.int(path, "NAXIS1")? as usize;
        let rows = table.int(path, "NAXIS2")? as u64;
        let nfields = table.int(path, "TFIELDS")? as usize;
        let mut fields = Vec::new();
        let mut columns = Vec::new();
        let mut offset = 0;
        for k in 1..=nfields {
            let name = table
                .get(&format!("TTYPE{k}"))
                .map(str::to_string)
                .unwrap_or_else(|| format!("col{k}"));
            let tform = table
                .get(&format!("TFORM{k}"))
                .ok_or_else(|| bad(path, format!("TFORM{k} is missing")))?;
            let (code, repeat, width) = parse_tform(path, &name, tform)?;
            let null = table
                .get(&format!("TNULL{k}"))
                .and_then(|v| v.parse::<i64>().ok());
            let scale = table.float(&format!("TSCAL{k}")).unwrap_or(1.0);
            let zero = table.float(&format!("TZERO{k}")).unwrap_or(0.0);
            let unsigned = scale == 1.0
                && matches!((code, zero), (Code::Byte, z) if z == -128.0)
                    | matches!((code, zero), (Code::Short, z) if z == 32768.0)
                    | matches!((code, zero), (Code::Int, z) if z == 2147483648.0)
                    | matches!((code, zero), (Code::Long, z) if z == 9223372036854775808.0);
            let scaled = !unsigned
                && (scale != 1.0 || zero != 0.0)
                && matches!(code, Code::Byte | Code::Short | Code::Int | Code::Long);
            let element = match code {
                Code::Logical => DataType::Boolean,
                Code::Chars => DataType::Utf8,
                _ if scaled => DataType::Float64,
                Code::Byte if unsigned => DataType::Int8,
                Code::Byte => DataType::UInt8,
                Code::Short if unsigned => DataType::UInt16,
                Code::Short => DataType::Int16,
                Code::Int if unsigned => DataType::UInt32,
                Code::Int => DataType::Int32,
                Code::Long if unsigned => DataType::UInt64,
                Code::Long => DataType::Int64,
                Code::Float => DataType::Float32,
                Code::Double => DataType::Float64,
            };
            let mut meta = HashMap::new();
            for (key, m) in [("TUNIT", "unit"), ("TUCD", "ucd"), ("TCOMM", "description")] {
                if let Some(v) = table.get(&format!("{key}{k}")).filter(|v| !v.is_empty()) {
                    meta.insert(m.to_string(), v.to_string());
                }
            }
            if repeat > 0 {
                let dt = if repeat == 1 || matches!(code, Code::Chars) {
                    element.clone()
                } else {
                    DataType::FixedSizeList(
                        Arc::new(Field::new("item", element.clone(), true)),
                        repeat as i32,
                    )
                };
                fields.push(Field::new(name, dt, true).with_metadata(meta));
                columns.push(Column {
                    code,
                    repeat,
                    offset,
                    element,
                    null,
                    scaling: scaled.then_some((zero, scale)),
                });
            }
            offset += width;
        }
        if offset > row_bytes {
            return Err(bad(
                path,
                format!("the columns need {offset} bytes a row but NAXIS1 is {row_bytes}"),
            ));
        }
        Ok(FitsTable {
            path: path.to_path_buf(),
            reader,
            schema: Arc::new(Schema::new(fields)),
            columns,
            row_bytes,
            rows_left: rows,
        })
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The next batch of up to `max_rows` rows, or `None` at the end of the table.
    pub fn next_batch(&mut self, max_rows: usize) -> Result<Option<RecordBatch>> {
        let n = (max_rows as u64).min(self.rows_left) as usize;
        if n == 0 {
            return Ok(None);
        }
        let mut data = vec![0u8; n * self.row_bytes];
        self.reader.read_exact(&mut data).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                bad(
                    &self.path,
                    format!("the file ends before its last {} rows", self.rows_left),
                )
            } else {
                io(&self.path)(e)
            }
        })?;
        self.rows_left -= n as u64;
        let arrays = self
            .columns
            .iter()
            .map(|c| decode(c, &data, self.row_bytes, n))
            .collect::<Vec<_>>();
        let batch = RecordBatch::try_new(self.schema.clone(), arrays).map_err(|source| {
            LoaderError::Arrow {
                path: self.path.clone(),
                source,
            }
        })?;
        Ok(Some(batch))
    }
}

fn be<const N: usize>(b: &[u8]) -> [u8; N] {
    b[..N].try_into().expect("slice of the element width")
}

/// Decodes one column of `n` rows: every element, flattened, then wrapped in a fixed-size list for repeats.
fn decode(c: &Column, data: &[u8], row_bytes: usize, n: usize) -> ArrayRef {
    let rows = (0..n).map(|r| &data[r * row_bytes + c.offset..]);
    if let Code::Chars = c.code {
        let mut b = StringBuilder::with_capacity(n, n * c.repeat);
        for row in rows {
            let raw = &row[..c.repeat];
            let end = raw.iter().position(|&x| x == 0).unwrap_or(raw.len());
            b.append_value(String::from_utf8_lossy(&raw[..end]).trim_end());
        }
        return Arc::new(b.finish());
    }
    let width = match c.code {
        Code::Logical | Code::Byte => 1,
        Code::Short => 2,
        Code::Int | Code::Float => 4,
        Code::Long | Code::Double => 8,
        Code::Chars => unreachable!("handled above"),
    };
    let elements = rows.flat_map(|row| (0..c.repeat).map(move |k| &row[k * width..]));
    let null = c.null;
    macro_rules! ints {
        ($builder:ty, $raw:ty, $conv:expr) => {{
            let mut b = <$builder>::with_capacity(n * c.repeat);
            for e in elements {
                let raw = <$raw>::from_be_bytes(be(e));
                if null == Some(raw as i64) {
                    b.append_null();
                } else {
                    b.append_value($conv(raw));
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    macro_rules! scaled {
        ($raw:ty, $zero:expr, $scale:expr) => {{
            let mut b = Float64Builder::with_capacity(n * c.repeat);
            for e in elements {
                let raw = <$raw>::from_be_bytes(be(e));
                if null == Some(raw as i64) {
                    b.append_null();
                } else {
                    b.append_value($zero + $scale * raw as f64);
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    let flat: ArrayRef = match (c.code, &c.element, c.scaling) {
        (Code::Logical, _, _) => {
            let mut b = BooleanBuilder::with_capacity(n * c.repeat);
            for e in elements {
                match e[0] {
                    b'T' => b.append_value(true),
                    b'F' => b.append_value(false),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        (Code::Byte, _, Some((z, s))) => scaled!(u8, z, s),
        (Code::Short, _, Some((z, s))) => scaled!(i16, z, s),
        (Code::Int, _, Some((z, s))) => scaled!(i32, z, s),
        (Code::Long, _, Some((z, s))) => scaled!(i64, z, s),
        (Code::Byte, DataType::Int8, _) => ints!(Int8Builder, u8, |v: u8| (v ^ 0x80) as i8),
        (Code::Byte, _, _) => ints!(UInt8Builder, u8, |v: u8| v),
        (Code::Short, DataType::UInt16, _) => {
            ints!(UInt16Builder, i16, |v: i16| (v as u16) ^ 0x8000)
        }
        (Code::Short, _, _) => ints!(Int16Builder, i16, |v: i16| v),
        (Code::Int, DataType::UInt32, _) => {
            ints!(UInt32Builder, i32, |v: i32| (v as u32) ^ 0x8000_0000)
        }
        (Code::Int, _, _) => ints!(Int32Builder, i32, |v: i32| v),
        (Code::Long, DataType::UInt64, _) => {
            ints!(UInt64Builder, i64, |v: i64| (v as u64) ^ (1 << 63))
        }
        (Code::Long, _, _) => ints!(Int64Builder, i64, |v: i64| v),
        (Code::Float, _, _) => {
            let mut b = Float32Builder::with_capacity(n * c.repeat);
            for e in elements {
                let v = f32::from_be_bytes(be(e));
                if v.is_nan() {
                    b.append_null()
                } else {
                    b.append_value(v)
                }
            }
            Arc::new(b.finish())
        }
        (Code::Double, _, _) => {
            let mut b = Float64Builder::with_capacity(n * c.repeat);
            for e in elements {
                let v = f64::from_be_bytes(be(e));
                if v.is_nan() {
                    b.append_null()
                } else {
                    b.append_value(v)
                }
            }
            Arc::new(b.finish())
        }
        (Code::Chars, _, _) => unreachable!("handled above"),
    };
    if c.repeat == 1 {
        flat
    } else {
        let field = Arc::new(Field::new("item", flat.data_type().clone(), true));
        Arc::new(FixedSizeListArray::new(field, c.repeat as i32, flat, None))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Float64Type, Int32Type, UInt16Type};

    fn card(s: &str) -> String {
        format!("{s:<80}")
    }

    /// A FITS file with an empty primary HDU and one BINTABLE of `rows` rows (id J, ra D, dec D, flag I unsigned, name 4A).
    pub(crate) fn write_fits(path: &Path, rows: &[(i32, f64, f64, u16, &str)]) {
        let mut out = Vec::new();
        let header = |cards: Vec<String>, out: &mut Vec<u8>| {
            let mut h: String = cards.concat();
            h.push_str(&card("END"));
            while h.len() % BLOCK != 0 {
                h.push(' ');
            }
            out.extend_from_slice(h.as_bytes());
        };
        header(
            vec![
                card("SIMPLE  =                    T"),
                card("BITPIX  =                    8"),
                card("NAXIS   =                    0"),
            ],
            &mut out,
        );
        header(
            vec![
                card("XTENSION= 'BINTABLE'"),
                card("BITPIX  =                    8"),
                card("NAXIS   =                    2"),
                card("NAXIS1  =                   26"),
                card(&format!("NAXIS2  = {:>20}", rows.len())),
                card("PCOUNT  =                    0"),
                card("GCOUNT  =                    1"),
                card("TFIELDS =                    5"),
                card("TTYPE1  = 'id      '"),
                card("TFORM1  = 'J       '"),
                card("TNULL1  =                   -1"),
                card("TTYPE2  = 'ra      '"),
                card("TFORM2  = 'D       '"),
                card("TUNIT2  = 'deg     '"),
                card("TUCD2   = 'pos.eq.ra;meta.main'"),
                card("TCOMM2  = 'right ascension, ICRS'"),
                card("TTYPE3  = 'dec     '"),
                card("TFORM3  = 'D       '"),
                card("TUNIT3  = 'deg     '"),
                card("TTYPE4  = 'flags   '"),
                card("TFORM4  = 'I       '"),
                card("TZERO4  =                32768"),
                card("TTYPE5  = 'name    '"),
                card("TFORM5  = '4A      '"),
            ],
            &mut out,
        );
        let start = out.len();
        for (id, ra, dec, flags, name) in rows {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&ra.to_be_bytes());
            out.extend_from_slice(&dec.to_be_bytes());
            out.extend_from_slice(&((*flags ^ 0x8000) as i16).to_be_bytes());
            let mut n = name.as_bytes().to_vec();
            n.resize(4, b' ');
            out.extend_from_slice(&n);
        }
        while (out.len() - start) % BLOCK != 0 {
            out.push(0);
        }
        std::fs::write(path, out).unwrap();
    }

    #[test]
    fn reads_a_binary_table_with_metadata_nulls_and_unsigned_columns() {
        let dir = std::env::temp_dir().join(format!("skyshard-fits-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.fits");
        let rows: Vec<_> = (0..1000)
            .map(|i| {
                (
                    if i == 7 { -1 } else { i },
                    i as f64 * 0.3,
                    -45.0 + i as f64 * 0.01,
                    60000 + i as u16,
                    "ab",
                )
            })
            .collect();
        write_fits(&path, &rows);
        let mut t = FitsTable::open(&path).unwrap();
        let schema = t.schema();
        assert_eq!(
            schema.field(1).metadata().get("unit").map(String::as_str),
            Some("deg")
        );
        assert_eq!(
            schema.field(1).metadata().get("ucd").map(String::as_str),
            Some("pos.eq.ra;meta.main")
        );
        assert_eq!(
            schema
                .field(1)
                .metadata()
                .get("description")
                .map(String::as_str),
            Some("right ascension, ICRS")
        );
        assert_eq!(schema.field(3).data_type(), &DataType::UInt16);
        let mut seen = 0;
        while let Some(b) = t.next_batch(300).unwrap() {
            let id = b.column(0).as_primitive::<Int32Type>();
            let ra = b.column(1).as_primitive::<Float64Type>();
            let flags = b.column(3).as_primitive::<UInt16Type>();
            for i in 0..b.num_rows() {
                let k = seen + i;
                assert_eq!(id.is_null(i), k == 7);
                assert_eq!(ra.value(i), k as f64 * 0.3);
                assert_eq!(flags.value(i), 60000 + k as u16);
                assert_eq!(b.column(4).as_string::<i32>().value(i), "ab");
            }
            seen += b.num_rows();
        }
        assert_eq!(seen, 1000);
        std::fs::write(
            dir.join("short.fits"),
            &std::fs::read(&path).unwrap()[..BLOCK * 2 + 100],
        )
        .unwrap();
        let mut t = FitsTable::open(&dir.join("short.fits")).unwrap();
        let err = t.next_batch(10_000).unwrap_err().to_string();
        assert!(
            err.contains("short.fits") && err.contains("ends before"),
            "{err}"
        );
        std::fs::write(dir.join("not.fits"), b"hello").unwrap();
        assert!(FitsTable::open(&dir.join("not.fits")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
