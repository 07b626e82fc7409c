//! FITS as far as images need it: the header of the first image HDU as its raw 80-byte cards and their values, where
//! its pixels start, and a header written back (FITS 4.0, sections 3-4).

use std::io::{Read, Seek, SeekFrom};

use crate::ImageError;

pub const BLOCK: usize = 2880;
/// The longest axis taken (2^31 elements).
pub const MAX_AXIS: i64 = 1 << 31;
pub const CARD: usize = 80;

/// A card's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    Int(i64),
    Real(f64),
    Logical(bool),
    /// A keyword without a value (COMMENT, HISTORY, blank) or one this reader does not parse (complex numbers).
    None,
}

impl Value {
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Real(r) => Some(*r),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }
}

/// One header: its cards in order (END excluded).
#[derive(Debug, Clone)]
pub struct Header {
    pub cards: Vec<[u8; CARD]>,
}

impl Header {
    /// The keyword of a card, trimmed.
    pub fn keyword(card: &[u8; CARD]) -> &str {
        std::str::from_utf8(&card[..8]).unwrap_or("").trim_end()
    }

    /// The value of `keyword` (the last card that names it, as most readers do).
    pub fn get(&self, keyword: &str) -> Option<Value> {
        self.cards
            .iter()
            .rev()
            .find(|c| Self::keyword(c) == keyword && &c[8..10] == b"= ")
            .map(|c| parse_value(&c[10..]))
    }

    pub fn f64(&self, keyword: &str) -> Option<f64> {
        self.get(keyword).and_then(|v| v.as_f64())
    }

    pub fn i64(&self, keyword: &str) -> Option<i64> {
        self.get(keyword).and_then(|v| v.as_i64())
    }

    pub fn text(&self, keyword: &str) -> Option<String> {
        self.get(keyword)
            .and_then(|v| v.as_str().map(|s| s.trim_end().to_string()))
    }

    /// Every keyword with a value, as JSON (for the WCS's parameters).
    pub fn values(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut out = serde_json::Map::new();
        for card in &self.cards {
            if &card[8..10] != b"= " {
                continue;
            }
            let value = match parse_value(&card[10..]) {
                Value::Text(s) => serde_json::Value::from(s.trim_end()),
                Value::Int(i) => serde_json::Value::from(i),
                Value::Real(r) if r.is_finite() => serde_json::Value::from(r),
                Value::Logical(b) => serde_json::Value::from(b),
                _ => continue,
            };
            out.insert(Self::keyword(card).to_string(), value);
        }
        out
    }
}

/// A card's value field (bytes 11-80): a quoted string (with '' for a quote), T or F, an integer or a real (a D
/// exponent too), then an optional comment after '/'.
pub fn parse_value(field: &[u8]) -> Value {
    let text = String::from_utf8_lossy(field);
    let t = text.trim_start();
    if let Some(rest) = t.strip_prefix('\'') {
        let mut out = String::new();
        let mut chars = rest.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\'' {
                if chars.peek() == Some(&'\'') {
                    out.push('\'');
                    chars.next();
                } else {
                    return Value::Text(out);
                }
            } else {
                out.push(c);
            }
        }
        return Value::Text(out);
    }
    let token = t.split('/').next().unwrap_or("").trim();
    match token {
        "" => Value::None,
        "T" => Value::Logical(true),
        "F" => Value::Logical(false),
        _ => {
            if let Ok(i) = token.parse::<i64>() {
                Value::Int(i)
            } else if let Ok(r) = token.replace(['D', 'd'], "E").parse::<f64>() {
                Value::Real(r)
            } else {
                Value::None
            }
        }
    }
}

/// The first image of a file: its header, its pixel type and size, and the offset of its first pixel.
#[derive(Debug, Clone)]
pub struct ImageHdu {
    pub header: Header,
    pub bitpix: i64,
    pub naxis1: u64,
    pub naxis2: u64,
    pub data_offset: u64,
}

impl ImageHdu {
    pub fn bytes_per_pixel(&self) -> u64 {
        self.bitpix.unsigned_abs() / 8
    }
}

/// Reads one header at the reader's position: its cards up to END, and the bytes it took (whole blocks).
fn read_header(reader: &mut impl Read) -> Result<Option<(Header, u64)>, String> {
    let mut cards = Vec::new();
    let mut taken = 0u64;
    let mut block = [0u8; BLOCK];
    loop {
        match read_block(reader, &mut block) {
            Ok(true) => {}
            Ok(false) if taken == 0 => return Ok(None),
            Ok(false) => return Err("the file ends inside a header (no END card)".into()),
            Err(e) => return Err(e.to_string()),
        }
        taken += BLOCK as u64;
        for chunk in block.chunks_exact(CARD) {
            let card: [u8; CARD] = chunk.try_into().expect("80 bytes");
            if Header::keyword(&card) == "END" {
                return Ok(Some((Header { cards }, taken)));
            }
            if !card.iter().all(|b| (0x20..=0x7e).contains(b)) {
                return Err("a header card holds bytes that are not printable ASCII: not a FITS file".into());
            }
            cards.push(card);
        }
        if cards.len() > 100_000 {
            return Err("a header of more than 100,000 cards".into());
        }
    }
}

/// A whole block, false at a clean end of file.
fn read_block(reader: &mut impl Read, block: &mut [u8; BLOCK]) -> std::io::Result<bool> {
    let mut filled = 0;
    while filled < BLOCK {
        let n = reader.read(&mut block[filled..])?;
        if n == 0 {
            return if filled == 0 {
                Ok(false)
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the file ends inside a 2880-byte block",
                ))
            };
        }
        filled += n;
    }
    Ok(true)
}

/// The first HDU that holds a 2-D (or thicker) image: the primary array, or an IMAGE extension. A tile-compressed
/// image (a BINTABLE with ZIMAGE = T) is named as such.
pub fn first_image(file: &mut (impl Read + Seek), len: u64) -> Result<ImageHdu, ImageError> {
    let mut offset = 0u64;
    for index in 0.. {
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| ImageError::NotFits(e.to_string()))?;
        let Some((header, taken)) = read_header(file).map_err(ImageError::NotFits)? else {
            break;
        };
        if index == 0 && header.get("SIMPLE") != Some(Value::Logical(true)) {
            return Err(ImageError::NotFits("the first card is not SIMPLE = T".into()));
        }
        let bitpix = header
            .i64("BITPIX")
            .ok_or_else(|| ImageError::NotFits("a header without BITPIX".into()))?;
        if ![8, 16, 32, 64, -32, -64].contains(&bitpix) {
            return Err(ImageError::NotFits(format!("BITPIX {bitpix} is not a FITS pixel type")));
        }
        let bad = |m: String| ImageError::NotFits(m);
        let naxis = header.i64("NAXIS").unwrap_or(0);
        if !(0..=999).contains(&naxis) {
            return Err(bad(format!("NAXIS = {naxis}: FITS allows 0 to 999 axes")));
        }
        let mut axes = Vec::with_capacity(naxis as usize);
        for i in 1..=naxis {
            let n = header.i64(&format!("NAXIS{i}")).unwrap_or(0);
            if !(0..=MAX_AXIS).contains(&n) {
                return Err(bad(format!("NAXIS{i} = {n}: an axis has 0 to {MAX_AXIS} elements here")));
            }
            axes.push(n as u64);
        }
        let pcount = header.i64("PCOUNT").unwrap_or(0);
        let gcount = header.i64("GCOUNT").unwrap_or(1);
        if !(0..=i64::from(u32::MAX)).contains(&pcount) || !(0..=i64::from(u32::MAX)).contains(&gcount) {
            return Err(bad(format!("PCOUNT = {pcount}, GCOUNT = {gcount}: out of range")));
        }
        let elements = if axes.is_empty() {
            Some(0u64)
        } else {
            axes.iter().try_fold(1u64, |a, &n| a.checked_mul(n))
        };
        let data_bytes = elements
            .and_then(|e| e.checked_add(pcount as u64))
            .and_then(|e| e.checked_mul(gcount.max(1) as u64))
            .and_then(|e| e.checked_mul(bitpix.unsigned_abs() / 8))
            .filter(|&b| b <= len)
            .ok_or_else(|| bad(format!("the header claims more data than the file's {len} bytes hold")))?;
        let xtension = header.text("XTENSION").unwrap_or_default();
        let data_offset = offset + taken;
        if header.get("ZIMAGE") == Some(Value::Logical(true)) {
            return Err(ImageError::Unsupported(
                "a tile-compressed image (RICE or GZIP): not read yet; store it uncompressed (funpack)".into(),
            ));
        }
        if (index == 0 || xtension == "IMAGE")
            && axes.len() >= 2
            && axes[0] > 0
            && axes[1] > 0
            && axes[2..].iter().all(|&a| a >= 1)
        {
            let plane = axes[0] * axes[1] * (bitpix.unsigned_abs() / 8);
            if data_offset.saturating_add(plane) > len {
                return Err(ImageError::NotFits(format!(
                    "the image's pixels ({} bytes) run past the end of the file",
                    plane
                )));
            }
            return Ok(ImageHdu {
                header,
                bitpix,
                naxis1: axes[0],
                naxis2: axes[1],
                data_offset,
            });
        }
        offset = data_offset.saturating_add(data_bytes.div_ceil(BLOCK as u64) * BLOCK as u64);
        if offset >= len {
            break;
        }
    }
    Err(ImageError::NoImage)
}

/// A card `KEYWORD = value` (the value right-aligned to column 30 as fixed format wants numbers).
pub fn card(keyword: &str, value: &str) -> [u8; CARD] {
    let mut out = [b' '; CARD];
    let text = if value.starts_with('\'') {
        format!("{keyword:<8}= {value}")
    } else {
        format!("{keyword:<8}= {value:>20}")
    };
    for (o, b) in out.iter_mut().zip(text.bytes()) {
        *o = b;
    }
    out
}

/// A real in a card: the shortest text that reads back as the same number.
pub fn real(x: f64) -> String {
    let s = format!("{x:?}");
    if s.contains('.') || s.contains('e') || s.contains("inf") || s.contains("NaN") {
        s.replace('e', "E")
    } else {
        format!("{s}.0")
    }
}

/// A header's bytes: its cards, END, and spaces to a whole block.
pub fn header_bytes(cards: &[[u8; CARD]]) -> Vec<u8> {
    let mut out = Vec::with_capacity((cards.len() + 1) * CARD + BLOCK);
    for c in cards {
        out.extend_from_slice(c);
    }
    let mut end = [b' '; CARD];
    end[..3].copy_from_slice(b"END");
    out.extend_from_slice(&end);
    out.resize(out.len().div_ceil(BLOCK) * BLOCK, b' ');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_as_fits_writes_them() {
        let v = |s: &str| parse_value(s.as_bytes());
        assert_eq!(v("                   T / yes"), Value::Logical(true));
        assert_eq!(v("                 -32"), Value::Int(-32));
        assert_eq!(v("  1.5D-3 / a D exponent"), Value::Real(1.5e-3));
        assert_eq!(v("'RA---TAN'           / projection"), Value::Text("RA---TAN".into()));
        assert_eq!(v("'it''s'"), Value::Text("it's".into()));
        assert_eq!(v("   / only a comment"), Value::None);
        let c = card("CRPIX1", &real(12.5));
        assert_eq!(parse_value(&c[10..]), Value::Real(12.5));
        assert_eq!(parse_value(&card("NAXIS1", "100")[10..]), Value::Int(100));
        assert_eq!(real(3.0), "3.0");
        assert_eq!(real(1e-20), "1E-20");
    }
}
