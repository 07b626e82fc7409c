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

/// Handlers take their parameters as an extractor: the query string and the body read into [`Params`], or the DALI
/// error document that says why they cannot be: a body announced larger than the service takes is refused (413)
/// before any of it is read, and a body that does not arrive within [`Limits::body_timeout`] is dropped (408), so
/// a slow or lying client cannot hold a connection open.
///
/// [`Limits::body_timeout`]: platform::Limits::body_timeout
impl<S: BodyLimits + Send + Sync> axum::extract::FromRequest<S> for Params {
    type Rejection = axum::response::Response;

    async fn from_request(
        request: axum::extract::Request,
        state: &S,
    ) -> Result<Params, Self::Rejection> {
        use crate::reply::error;
        use axum::http::StatusCode;
        let limits = state.limits();
        let limit = limits.max_body_bytes();
        let announced = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if announced.is_some_and(|n| n > limit as u64) {
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the request body is larger than the {limit} bytes this service takes"),
            ));
        }
        let query = request.uri().query().map(str::to_string);
        let headers = request.headers().clone();
        let seconds = limits.body_timeout;
        let read = Bytes::from_request(request, state);
        let body = match tokio::time::timeout(std::time::Duration::from_secs(seconds), read).await {
            Err(_) => {
                return Err(error(
                    StatusCode::REQUEST_TIMEOUT,
                    &format!("the request body did not arrive within {seconds} s"),
                ));
            }
            Ok(Err(e)) => return Err(error(e.status(), &e.body_text())),
            Ok(Ok(body)) => body,
        };
        Params::parse(query.as_deref(), &headers, &body)
            .await
            .map_err(|m| error(StatusCode::BAD_REQUEST, &m))
    }
}

/// A router's state that says how large and how slow a request body may be.
pub trait BodyLimits {
    fn limits(&self) -> &platform::Limits;
}

/// Parameters (query string, form fields and multipart parts together) one request may carry: TAP needs a
/// handful; a body of a million empty fields is work for nothing.
pub const MAX_PARAMETERS: usize = 1000;

impl Params {
    /// The parameters of a request: its query string and its body (read whole, within the service's body limit).
    pub async fn parse(
        query: Option<&str>,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<Params, String> {
        let mut params = Params::default();
        if let Some(q) = query {
            params.add_urlencoded(q.as_bytes());
        }
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let lower = content_type.to_ascii_lowercase();
        if lower.starts_with("multipart/form-data") {
            let boundary = multer::parse_boundary(content_type)
                .ok()
                .or_else(|| loose_boundary(content_type))
                .ok_or_else(|| "a multipart/form-data body needs a boundary".to_string())?;
            params.add_multipart(body.clone(), boundary).await?;
        } else if !body.is_empty()
            && (lower.is_empty() || lower.starts_with("application/x-www-form-urlencoded"))
        {
            params.add_urlencoded(body);
        }
        let count = params.pairs.len() + params.parts.len();
        if count > MAX_PARAMETERS {
            return Err(format!(
                "the request has {count} parameters and parts; this service takes at most {MAX_PARAMETERS}"
            ));
        }
        Ok(params)
    }

    fn add_urlencoded(&mut self, text: &[u8]) {
        for (k, v) in form_urlencoded::parse(text) {
            self.pairs.push((k.to_uppercase(), v.into_owned()));
        }
    }

    /// Parts with a file name, or whose type is not plain text, are upload content; the others are parameters.
    async fn add_multipart(&mut self, body: Bytes, boundary: String) -> Result<(), String> {
        let once =
            futures::stream::once(async move { Ok::<Bytes, std::convert::Infallible>(body) });
        let mut multipart = multer::Multipart::new(once, boundary);
        let bad = |e: multer::Error| format!("the multipart/form-data body cannot be read: {e}");
        while let Some(field) = multipart.next_field().await.map_err(bad)? {
            let name = field
                .name()
                .map(String::from)
                .ok_or("a multipart part has no name")?;
            let is_file = field.file_name().is_some()
                || field
                    .content_type()
                    .is_some_and(|t| t.essence_str() != "text/plain");
            let content = field.bytes().await.map_err(bad)?;
            if is_file {
                self.parts.push((name, content));
            } else {
                self.pairs.push((
                    name.to_uppercase(),
                    String::from_utf8_lossy(&content).into_owned(),
                ));
            }
        }
        Ok(())
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

/// Decodes `a=b&c=d` (`+` is a space, `%XX` a byte).
pub fn form_urlencoded(text: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(text.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The boundary of a multipart Content-Type that strict parsing refuses: astroquery sends `boundary====123===`
/// unquoted, though `=` should be quoted there. Up to the next `;`, quotes trimmed; 1-70 characters.
fn loose_boundary(content_type: &str) -> Option<String> {
    let at = content_type.to_ascii_lowercase().find("boundary=")?;
    let value = content_type[at + "boundary=".len()..]
        .split(';')
        .next()?
        .trim()
        .trim_matches('"');
    (1..=70).contains(&value.len()).then(|| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unquoted_boundaries_with_equals_signs_are_read() {
        assert_eq!(
            loose_boundary("multipart/form-data; boundary====1764==="),
            Some("===1764===".into())
        );
        assert_eq!(
            loose_boundary("multipart/form-data; boundary=\"a=b\"; x=y"),
            Some("a=b".into())
        );
        assert_eq!(loose_boundary("multipart/form-data"), None);
        assert_eq!(loose_boundary("multipart/form-data; boundary="), None);
    }

    #[tokio::test]
    async fn urlencoded_names_are_case_insensitive() {
        let p = Params::parse(
            Some("lang=ADQL&Query=SELECT+1%2B1&REQUEST=doQuery&x"),
            &HeaderMap::new(),
            &Bytes::new(),
        )
        .await
        .unwrap();
        assert_eq!(p.get("LANG"), Some("ADQL"));
        assert_eq!(p.get("QUERY"), Some("SELECT 1+1"));
        assert_eq!(p.get("X"), Some(""));
        let odd = form_urlencoded("a=100%&b=%4&c=%zz");
        assert_eq!(odd[0].1, "100%");
        assert_eq!(odd[1].1, "%4");
        assert_eq!(odd[2].1, "%zz");
    }

    #[tokio::test]
    async fn multipart_fields_and_files() {
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"query\"\r\n\r\nSELECT * FROM t\r\n--XyZ\r\nContent-Disposition: form-data; name=\"UPLOAD\"\r\n\r\nmine,param:tab\r\n--XyZ\r\nContent-Disposition: form-data; name=\"tab\"; filename=\"x.vot\"\r\nContent-Type: application/x-votable+xml\r\n\r\n<VOTABLE>\r\n</VOTABLE>\r\n--XyZ--\r\n";
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            "multipart/form-data; boundary=XyZ".parse().unwrap(),
        );
        let p = Params::parse(None, &headers, &Bytes::from(body))
            .await
            .unwrap();
        assert_eq!(p.get("QUERY"), Some("SELECT * FROM t"));
        assert_eq!(p.get("UPLOAD"), Some("mine,param:tab"));
        assert_eq!(&p.part("tab").unwrap()[..], b"<VOTABLE>\r\n</VOTABLE>");
        let cut = &body[..body.len() - 30];
        assert!(
            Params::parse(None, &headers, &Bytes::from(cut.to_string()))
                .await
                .is_err()
        );
    }
}
