//! TAP uploads (DALI 1.1 `UPLOAD=name,uri`): `param:PART` names a multipart part of the request,
//! `http://...` a VOTable the service fetches. Several tables per request (`a,param:a;b,param:b` or several UPLOAD
//! parameters). Each becomes `TAP_UPLOAD.name` for this query only.
//!
//! Fetching is guarded: a size cap and a timeout, plain HTTP/1.0 without redirects, and no loopback, private,
//! link-local or unspecified addresses unless the operator allows them ([`super::Limits::allow_private_uploads`]):
//! a TAP service must not become a way into its own network. `https://` URLs are refused with a message (this
//! build has no TLS client).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use adql::CatalogTable;
use datafusion::datasource::MemTable;

use crate::error::TapError;
use crate::params::Params;
use platform::Limits;

pub const SCHEMA: &str = "tap_upload";

/// The uploads a request names, as tables.
pub async fn load_all(
    params: &Params,
    limits: &Limits,
) -> Result<Vec<Arc<CatalogTable>>, TapError> {
    let mut tables: Vec<Arc<CatalogTable>> = Vec::new();
    for value in params.all("UPLOAD") {
        for item in value.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, uri) = item.split_once(',').ok_or_else(|| {
                TapError::parameter(
                    "UPLOAD",
                    format!("UPLOAD={item} must be NAME,URI (e.g. mytable,param:part or mytable,http://host/t.xml)"),
                )
            })?;
            let (name, uri) = (name.trim(), uri.trim());
            let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(TapError::parameter(
                    "UPLOAD",
                    format!(
                        "upload name {name:?} is not an ADQL identifier (a letter, then letters, digits or _)"
                    ),
                ));
            }
            if tables.iter().any(|t| t.name.eq_ignore_ascii_case(name)) {
                return Err(TapError::parameter(
                    "UPLOAD",
                    format!("two uploads are named {name}"),
                ));
            }
            let bytes = if let Some(part) = uri.strip_prefix("param:") {
                params
                    .part(part)
                    .ok_or_else(|| {
                        TapError::parameter(
                            "UPLOAD",
                            format!("UPLOAD {name} names param:{part} but the request has no part called {part}"),
                        )
                    })?
                    .to_vec()
            } else if uri.starts_with("http://") {
                fetch(uri, limits)
                    .await
                    .map_err(|reason| TapError::BadUpload {
                        name: name.to_string(),
                        reason,
                    })?
            } else if uri.starts_with("https://") {
                return Err(TapError::BadUpload {
                    name: name.to_string(),
                    reason: "https URLs are not fetched by this service yet; send the table inline (param:)".into(),
                });
            } else {
                return Err(TapError::BadUpload {
                    name: name.to_string(),
                    reason: format!("{uri} is neither param:PART nor an http URL"),
                });
            };
            if bytes.len() > limits.max_upload_bytes {
                return Err(TapError::UploadTooLarge {
                    name: name.to_string(),
                    bytes: bytes.len(),
                    limit: limits.max_upload_bytes,
                });
            }
            let table = table(name, &bytes).map_err(|reason| TapError::BadUpload {
                name: name.to_string(),
                reason,
            })?;
            tables.push(Arc::new(table));
        }
    }
    Ok(tables)
}

/// A VOTable's first table as `TAP_UPLOAD.name`.
pub fn table(name: &str, bytes: &[u8]) -> Result<CatalogTable, String> {
    let (schema, batches) = votable::read_bytes(bytes)
        .map_err(|e| format!("upload {name} is not a readable VOTable: {e}"))?;
    let provider = MemTable::try_new(schema, vec![batches]).map_err(|e| e.to_string())?;
    CatalogTable::new(SCHEMA, name, Arc::new(provider)).map_err(|e| format!("upload {name}: {e}"))
}

fn forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || o[0] == 0
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| forbidden(IpAddr::V4(v4)))
        }
    }
}

/// GETs an http URL: at most `max_upload_bytes`, within `upload_timeout`.
async fn fetch(url: &str, limits: &Limits) -> Result<Vec<u8>, String> {
    let rest = url.strip_prefix("http://").ok_or("not an http URL")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.contains('@') {
        return Err("URLs with credentials are not fetched".into());
    }
    let host_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && !authority.ends_with(']')
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let timeout = Duration::from_secs(limits.upload_timeout);
    let work = async {
        let addresses: Vec<SocketAddr> = tokio::net::lookup_host(&host_port)
            .await
            .map_err(|e| format!("cannot resolve {authority}: {e}"))?
            .collect();
        let allowed: Vec<SocketAddr> = addresses
            .iter()
            .copied()
            .filter(|a| limits.allow_private_uploads || !forbidden(a.ip()))
            .collect();
        if allowed.is_empty() {
            return Err(format!(
                "{authority} is a loopback or private address; this service does not fetch uploads from its own network"
            ));
        }
        let stream = tokio::net::TcpStream::connect(&allowed[..])
            .await
            .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
        // HTTP/1.1 through hyper on the connection whose address was checked above; redirects are not followed.
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("{authority}: {e}"))?;
        tokio::spawn(connection);
        let request = hyper::Request::get(path)
            .header(hyper::header::HOST, authority)
            .header(hyper::header::USER_AGENT, "skyshard-tap")
            .header(
                hyper::header::ACCEPT,
                "application/x-votable+xml, text/xml, */*",
            )
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|e| format!("{url}: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("{authority}: {e}"))?;
        if response.status() != hyper::StatusCode::OK {
            return Err(format!(
                "the server answered HTTP {}",
                response.status().as_u16()
            ));
        }
        let limited = http_body_util::Limited::new(response.into_body(), limits.max_upload_bytes);
        let body = http_body_util::BodyExt::collect(limited)
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    format!(
                        "the table is larger than the upload limit of {} bytes",
                        limits.max_upload_bytes
                    )
                } else {
                    format!("{authority}: {e}")
                }
            })?;
        Ok(body.to_bytes().to_vec())
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("fetching took longer than {} s", limits.upload_timeout))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_are_refused() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.5.4",
            "169.254.1.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "100.64.0.1",
        ] {
            assert!(forbidden(a.parse().unwrap()), "{a}");
        }
        for a in ["8.8.8.8", "193.48.1.1", "2001:4860::8888"] {
            assert!(!forbidden(a.parse().unwrap()), "{a}");
        }
    }
}
