//! Rows for a user table as they arrive: the format a request's Content-Type names, and its body received to disk
//! within the space left and the body's deadline, before the platform is asked to load it.

use super::*;

/// The format of a load's body, from its Content-Type.
pub(super) fn upload_format(mime: &str) -> Option<RowsFormat> {
    let mime = mime
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    Some(match mime.as_str() {
        "text/csv" | "application/csv" => RowsFormat::Csv(b','),
        "text/tab-separated-values" | "text/tsv" => RowsFormat::Csv(b'\t'),
        "application/fits" | "image/fits" | "application/x-fits-table" => RowsFormat::Fits,
        "application/x-votable+xml" | "text/xml" | "application/xml" => RowsFormat::VoTable,
        "application/vnd.apache.parquet" | "application/x-parquet" | "application/parquet" => {
            RowsFormat::Parquet
        }
        _ => return None,
    })
}

/// Streams a request body to `path`, refusing it past `limit` bytes (the space left) or when it has not arrived
/// within `deadline`.
pub(super) async fn receive(
    body: Body,
    path: &std::path::Path,
    limit: u64,
    deadline: std::time::Duration,
) -> Result<u64, PlatformError> {
    let write = async {
        let mut out = tokio::fs::File::create(path)
            .await
            .map_err(PlatformError::unavailable)?;
        let mut stream = body.into_data_stream();
        let mut bytes = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk
                .map_err(|e| PlatformError::BadRequest(format!("receiving the upload: {e}")))?;
            bytes += chunk.len() as u64;
            if bytes > limit {
                return Err(PlatformError::OverQuota(format!(
                    "over the table quota: the upload passed the {} MiB left in the table space; nothing was changed",
                    limit >> 20
                )));
            }
            out.write_all(&chunk)
                .await
                .map_err(PlatformError::unavailable)?;
        }
        out.flush().await.map_err(PlatformError::unavailable)?;
        Ok(bytes)
    };
    tokio::time::timeout(deadline, write)
        .await
        .unwrap_or_else(|_| {
            Err(PlatformError::BadRequest(format!(
                "the upload did not arrive within {} s; nothing was changed",
                deadline.as_secs()
            )))
        })
}
