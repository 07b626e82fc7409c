//! `skyshard load` and `skyshard query`: asking a running czar over HTTP.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use crate::failure;
use crate::http::{self, Payload, encode};

/// A form POST: status and body.
fn post(url: &str, form: &str) -> Result<(u16, String), String> {
    http::send(
        "POST",
        url,
        "application/x-www-form-urlencoded",
        Payload::Bytes(form.as_bytes().to_vec()),
    )
}

/// `skyshard load`: uploads the inputs to the czar and asks it to load them.
pub fn load(url: &str, mut args: loader::args::LoadArgs) -> ExitCode {
    let base = url.trim_end_matches('/').trim_end_matches("/tap");
    if args.format.as_deref() == Some("hats") {
        return failure(
            "--format hats is not sent through a czar yet: load the catalog with `skyshard ingest --format hats` into \
             the czar's data directory (a serving czar picks the table up)",
        );
    }
    let inputs = match loader::input::expand(&args.input) {
        Ok(i) => i,
        Err(e) => return failure(e),
    };
    let session = format!(
        "s{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let send = |i: usize, path: &Path| -> Result<std::path::PathBuf, String> {
        let base_name: String = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let name = format!("{i}-{base_name}");
        let (status, body) = http::send(
            "PUT",
            &format!("{base}/admin/loads/{session}/{name}"),
            "application/octet-stream",
            Payload::File(path.to_path_buf()),
        )?;
        if status != 200 {
            return Err(format!("uploading {}: {}", path.display(), error_of(&body)));
        }
        Ok(std::path::PathBuf::from(name))
    };
    let mut uploaded = Vec::new();
    for (i, path) in inputs.iter().enumerate() {
        match send(i, path) {
            Ok(name) => uploaded.push(name),
            Err(e) => return failure(e),
        }
    }
    if let Some(meta) = args.columns_meta.clone() {
        match send(inputs.len(), &meta) {
            Ok(name) => args.columns_meta = Some(name),
            Err(e) => return failure(e),
        }
    }
    args.input = uploaded;
    let request = match serde_json::to_string(&args) {
        Ok(r) => r,
        Err(e) => return failure(e),
    };
    match http::send(
        "POST",
        &format!("{base}/admin/loads/{session}"),
        "application/json",
        Payload::Bytes(request.into_bytes()),
    ) {
        Ok((200, body)) => {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            println!(
                "loaded {}: {} rows in {} chunks (load {}), {} files shipped to workers",
                v["table"].as_str().unwrap_or("?"),
                v["rows"],
                v["chunks"],
                v["load_id"].as_str().unwrap_or("?"),
                v["files_shipped"]
            );
            ExitCode::SUCCESS
        }
        Ok((_, body)) => failure(error_of(&body)),
        Err(e) => failure(e),
    }
}

/// The message of a JSON error answer (or the body as it is).
pub(crate) fn error_of(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(String::from))
        .unwrap_or_else(|| body.to_string())
}

pub fn query(url: &str, explain: bool, query: Option<String>) -> ExitCode {
    let query = match query {
        Some(q) => q,
        None => {
            let mut q = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut q) {
                return failure(format!("cannot read the query from standard input: {e}"));
            }
            q
        }
    };
    let base = url.trim_end_matches('/');
    let (endpoint, form) = if explain {
        (
            format!("{base}/explain"),
            format!("QUERY={}", encode(&query)),
        )
    } else {
        (
            format!("{base}/sync"),
            format!(
                "LANG=ADQL&RESPONSEFORMAT=csv&MAXREC={}&QUERY={}",
                tap::Limits::default().max_maxrec,
                encode(&query)
            ),
        )
    };
    match post(&endpoint, &form) {
        Ok((200, body)) => {
            print!("{body}");
            ExitCode::SUCCESS
        }
        Ok((_, body)) => failure(http::error_text(&body)),
        Err(e) => failure(e),
    }
}
