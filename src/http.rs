//! The command line's HTTP/1.1 client (`skyshard query`, `skyshard load`), on hyper's connection API: the czar
//! speaks plain HTTP on loopback or a private network, so one connection per request is all it needs.

use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::header;
use hyper_util::rt::TokioIo;

/// The message of a DALI error document (its `QUERY_STATUS` INFO), or the body as it is.
pub fn error_text(body: &str) -> String {
    body.split("value=\"ERROR\">")
        .nth(1)
        .and_then(|m| m.split("</INFO>").next())
        .map(|m| {
            m.replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&amp;", "&")
        })
        .unwrap_or_else(|| body.to_string())
}

/// What a request sends.
pub enum Payload {
    Bytes(Vec<u8>),
    /// A file, streamed in pieces of 1 MiB.
    File(PathBuf),
}

/// One request; returns the status and the body as text.
pub fn send(
    method: &str,
    url: &str,
    content_type: &str,
    payload: Payload,
) -> Result<(u16, String), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(send_async(method, url, content_type, payload))
}

async fn send_async(
    method: &str,
    url: &str,
    content_type: &str,
    payload: Payload,
) -> Result<(u16, String), String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("{url}: only http:// URLs are supported"));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("{url}: no host"))?
        .clone();
    let address = match authority.port_u16() {
        Some(_) => authority.to_string(),
        None => format!("{}:80", authority.host()),
    };
    let stream = tokio::net::TcpStream::connect(&address)
        .await
        .map_err(|e| format!("cannot reach {authority}: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("{authority}: {e}"))?;
    tokio::spawn(connection);
    let (length, body): (u64, BoxBody<Bytes, std::io::Error>) = match payload {
        Payload::Bytes(b) => (
            b.len() as u64,
            Full::new(Bytes::from(b))
                .map_err(|never| match never {})
                .boxed(),
        ),
        Payload::File(path) => {
            let file = tokio::fs::File::open(&path)
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let length = file
                .metadata()
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?
                .len();
            let pieces = futures::stream::try_unfold(file, |mut file| async move {
                use tokio::io::AsyncReadExt;
                let mut buf = vec![0u8; 1 << 20];
                let n = file.read(&mut buf).await?;
                if n == 0 {
                    return Ok(None);
                }
                buf.truncate(n);
                Ok(Some((Frame::data(Bytes::from(buf)), file)))
            });
            (length, StreamBody::new(pieces).boxed())
        }
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, authority.as_str())
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, length);
    // A service with accounts: the token of `skyshard token create` (loads need one with the admin scope).
    if let Ok(token) = std::env::var("SKYSHARD_TOKEN")
        && !token.is_empty()
    {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request.body(body).map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("{authority}: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{authority}: {e}"))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Percent-encodes a form value (`application/x-www-form-urlencoded`).
pub fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
