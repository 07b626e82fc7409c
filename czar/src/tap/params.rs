//! Request parameters as DALI defines them: from the query string and from an `application/x-www-form-urlencoded`
//! or `multipart/form-data` body; names are case-insensitive (kept upper-case here), values are not. Multipart
//! parts with a file name (or that are not plain form fields) are kept as inline upload content (`param:NAME`).

use axum::body::Bytes;
use axum::http::{HeaderMap, header};

/// Parameters of one request, names upper-cased, in the order they came.
#[derive(Debug, Clone, Default)]
pub struct Params {
    pub pairs: Vec<(String, String)>,
    /// Multipart parts that were files: (part name as sent, content).
    pub parts: Vec<(String, Bytes)>,
}

impl Params {
    pub fn parse(query: Option<&str>, headers: &HeaderMap, body: &Bytes) -> Result<Params, String> {
        let mut params = Params::default();
        if let Some(q) = query {
            params.add_urlencoded(q);
        }
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let lower = content_type.to_ascii_lowercase();
        if lower.starts_with("multipart/form-data") {
            let boundary = content_type
                .split(';')
                .filter_map(|p| p.trim().split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
                .map(|(_, v)| v.trim().trim_matches('"').to_string())
                .ok_or("a multipart/form-data body needs a boundary")?;
            params.add_multipart(body, &boundary)?;
        } else if !body.is_empty()
            && (lower.is_empty() || lower.starts_with("application/x-www-form-urlencoded"))
        {
            params.add_urlencoded(&String::from_utf8_lossy(body));
        }
        Ok(params)
    }

    fn add_urlencoded(&mut self, text: &str) {
        for (k, v) in form_urlencoded(text) {
            self.pairs.push((k.to_uppercase(), v));
        }
    }

    fn add_multipart(&mut self, body: &[u8], boundary: &str) -> Result<(), String> {
        let delimiter = format!("--{boundary}");
        let d = delimiter.as_bytes();
        let mut pos = find(body, d, 0).ok_or("the multipart body has no part")?;
        loop {
            pos += d.len();
            if body[pos..].starts_with(b"--") {
                return Ok(());
            }
            let head_start = skip_line_end(body, pos);
            let head_end = find(body, b"\r\n\r\n", head_start)
                .ok_or("a multipart part has no end of headers")?;
            let head = String::from_utf8_lossy(&body[head_start..head_end]);
            let content_start = head_end + 4;
            let next = find(body, d, content_start).ok_or("the multipart body is cut off")?;
            // The content ends before the CRLF that precedes the next delimiter.
            let mut content_end = next;
            if content_end >= 2 && &body[content_end - 2..content_end] == b"\r\n" {
                content_end -= 2;
            }
            let content = &body[content_start..content_end.max(content_start)];
            let mut name = None;
            let mut filename = None;
            let mut part_type = None;
            for line in head.split("\r\n") {
                let Some((key, value)) = line.split_once(':') else {
                    continue;
                };
                if key.trim().eq_ignore_ascii_case("content-disposition") {
                    for attr in value.split(';').skip(1) {
                        if let Some((k, v)) = attr.trim().split_once('=') {
                            let v = v.trim().trim_matches('"').to_string();
                            match k.trim().to_ascii_lowercase().as_str() {
                                "name" => name = Some(v),
                                "filename" => filename = Some(v),
                                _ => {}
                            }
                        }
                    }
                } else if key.trim().eq_ignore_ascii_case("content-type") {
                    part_type = Some(value.trim().to_ascii_lowercase());
                }
            }
            let name = name.ok_or("a multipart part has no name")?;
            let is_file =
                filename.is_some() || part_type.is_some_and(|t| !t.starts_with("text/plain"));
            if is_file {
                self.parts.push((name, Bytes::copy_from_slice(content)));
            } else {
                self.pairs.push((
                    name.to_uppercase(),
                    String::from_utf8_lossy(content).into_owned(),
                ));
            }
            pos = next;
        }
    }

    /// The first value of a parameter (name in upper case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a parameter.
    pub fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A multipart part by name (case-sensitive, as `param:NAME` spells it; case-insensitive as a fallback).
    pub fn part(&self, name: &str) -> Option<&Bytes> {
        self.parts
            .iter()
            .find(|(k, _)| k == name)
            .or_else(|| {
                self.parts
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
            })
            .map(|(_, v)| v)
    }
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn skip_line_end(body: &[u8], mut pos: usize) -> usize {
    while pos < body.len() && (body[pos] == b'\r' || body[pos] == b'\n' || body[pos] == b' ') {
        pos += 1;
        if pos > 0 && body[pos - 1] == b'\n' {
            break;
        }
    }
    pos
}

/// Decodes `a=b&c=d` (`+` is a space, `%XX` a byte).
pub fn form_urlencoded(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urlencoded_names_are_case_insensitive() {
        let p = Params::parse(
            Some("lang=ADQL&Query=SELECT+1%2B1&REQUEST=doQuery&x"),
            &HeaderMap::new(),
            &Bytes::new(),
        )
        .unwrap();
        assert_eq!(p.get("LANG"), Some("ADQL"));
        assert_eq!(p.get("QUERY"), Some("SELECT 1+1"));
        assert_eq!(p.get("X"), Some(""));
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%4"), "%4");
    }

    #[test]
    fn multipart_fields_and_files() {
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"query\"\r\n\r\nSELECT * FROM t\r\n--XyZ\r\nContent-Disposition: form-data; name=\"UPLOAD\"\r\n\r\nmine,param:tab\r\n--XyZ\r\nContent-Disposition: form-data; name=\"tab\"; filename=\"x.vot\"\r\nContent-Type: application/x-votable+xml\r\n\r\n<VOTABLE>\r\n</VOTABLE>\r\n--XyZ--\r\n";
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            "multipart/form-data; boundary=XyZ".parse().unwrap(),
        );
        let p = Params::parse(None, &headers, &Bytes::from(body)).unwrap();
        assert_eq!(p.get("QUERY"), Some("SELECT * FROM t"));
        assert_eq!(p.get("UPLOAD"), Some("mine,param:tab"));
        assert_eq!(&p.part("tab").unwrap()[..], b"<VOTABLE>\r\n</VOTABLE>");
        let cut = &body[..body.len() - 30];
        assert!(Params::parse(None, &headers, &Bytes::from(cut.to_string())).is_err());
    }
}
