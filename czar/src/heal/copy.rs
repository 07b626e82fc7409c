//! Copies between workers, checked end to end: the source worker sends the SHA-256 of what it read, the czar
//! compares it with what passed through, and the target worker compares it with what it wrote before renaming the
//! file into place. A file no worker can give is sent from the czar's own copy.

use std::sync::{Arc, Mutex};

use arrow_flight::{FlightData, FlightDescriptor};
use futures::{StreamExt, TryStreamExt};
use partitioner::layout;
use prost::Message;
use sha2::{Digest, Sha256};

use super::{Copy, Healer};
use crate::cluster::WorkerHandle;

impl Healer {
    /// Makes every copy (four at a time); returns the ones that failed, with why.
    pub(super) async fn copy_all(&self, copies: Vec<Copy>) -> Vec<(Copy, String)> {
        let results: Vec<(Copy, Result<u64, String>)> = futures::stream::iter(copies)
            .map(|c| async move {
                let r = self.copy_one(&c).await;
                (c, r)
            })
            .buffer_unordered(4)
            .collect()
            .await;
        let mut failed = Vec::new();
        let mut s = self.lock();
        for (c, r) in results {
            match r {
                Ok(bytes) => {
                    s.copies += 1;
                    s.bytes_copied += bytes;
                }
                Err(e) => failed.push((c, e)),
            }
        }
        failed
    }

    /// Copies one file to its target: from the first source that gives it whole, else from the czar's own copy.
    async fn copy_one(&self, c: &Copy) -> Result<u64, String> {
        let target = self.handle(&c.target).ok_or("no such worker")?;
        let mut last = String::from("no worker holds it and the czar has no copy");
        for source in &c.sources {
            let Some(from) = self.handle(source) else {
                continue;
            };
            match relay(&from, &target, c).await {
                Ok(bytes) => return Ok(bytes),
                Err(e) => last = format!("from {source}: {e}"),
            }
        }
        let own = layout::load_dir(self.czar.data_dir(), &c.table, &c.load).join(&c.file);
        if own.exists() {
            let bytes = tokio::fs::read(&own)
                .await
                .map_err(|e| format!("{}: {e}", own.display()))?;
            let sum = protocol::hex(&Sha256::digest(&bytes));
            let n = bytes.len() as u64;
            let pieces = bytes
                .chunks(1 << 20)
                .map(|p| Ok(p.to_vec()))
                .collect::<Vec<_>>();
            return put(
                &target,
                c,
                futures::stream::iter(pieces),
                futures::future::ready(Ok(sum)),
            )
            .await
            .map(|_| n);
        }
        Err(last)
    }
}

/// Streams a file from one worker to another, checking the source's SHA-256 against the bytes that passed.
async fn relay(from: &WorkerHandle, to: &WorkerHandle, c: &Copy) -> Result<u64, String> {
    let request = protocol::FetchFile {
        table: c.table.clone(),
        load_id: c.load.clone(),
        file: c.file.clone(),
    };
    let pieces = from
        .client()
        .do_action(arrow_flight::Action {
            r#type: protocol::ACTION_FETCH.into(),
            body: request.encode_to_vec().into(),
        })
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner();
    let (sum_tx, sum_rx) = tokio::sync::oneshot::channel::<Result<String, String>>();
    let (mut data_tx, data_rx) = futures::channel::mpsc::channel::<Result<Vec<u8>, String>>(2);
    // The source is read by its own task, which ends (dropping both senders) whatever happens.
    let reader = tokio::spawn(async move {
        use futures::SinkExt;
        let mut pieces = pieces;
        let mut hasher = Sha256::new();
        let mut bytes = 0u64;
        loop {
            let piece = match pieces.message().await {
                Ok(Some(result)) => {
                    protocol::FilePiece::decode(result.body).map_err(|e| e.to_string())
                }
                Ok(None) => Err("the source stopped before the end of the file".to_string()),
                Err(s) => Err(s.message().to_string()),
            };
            let piece = match piece {
                Ok(p) => p,
                Err(e) => {
                    let _ = data_tx.send(Err(e)).await;
                    return bytes;
                }
            };
            hasher.update(&piece.data);
            bytes += piece.data.len() as u64;
            if !piece.data.is_empty() && data_tx.send(Ok(piece.data)).await.is_err() {
                return bytes;
            }
            if !piece.sha256.is_empty() {
                let passed = protocol::hex(&hasher.finalize());
                let verdict = if passed == piece.sha256 {
                    Ok(passed)
                } else {
                    Err(format!(
                        "the source's SHA-256 {} is not that of the bytes received ({passed})",
                        piece.sha256
                    ))
                };
                let _ = sum_tx.send(verdict);
                return bytes;
            }
        }
    });
    let sum = async move {
        sum_rx
            .await
            .unwrap_or_else(|_| Err("the source stopped before the end of the file".into()))
    };
    put(to, c, data_rx, sum).await?;
    reader.await.map_err(|e| e.to_string())
}

/// Puts a file's bytes to a worker; the last message carries the SHA-256 `sum` resolves to once the bytes are
/// through (the worker discards a copy whose sum differs).
async fn put(
    to: &WorkerHandle,
    c: &Copy,
    data: impl futures::Stream<Item = Result<Vec<u8>, String>> + Send + 'static,
    sum: impl std::future::Future<Output = Result<String, String>> + Send + 'static,
) -> Result<(), String> {
    let descriptor =
        FlightDescriptor::new_path(vec![c.table.clone(), c.load.clone(), c.file.clone()]);
    let failure = Arc::new(Mutex::new(None::<String>));
    let f1 = failure.clone();
    let f2 = failure.clone();
    let mut first = Some(descriptor);
    let body = data
        .take_while(move |r| {
            let ok = match r {
                Ok(_) => true,
                Err(e) => {
                    *f1.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e.clone());
                    false
                }
            };
            futures::future::ready(ok)
        })
        .map(move |r| FlightData {
            flight_descriptor: first.take(),
            data_body: r.unwrap_or_default().into(),
            ..Default::default()
        })
        .chain(futures::stream::once(async move {
            // An empty message, the descriptor if nothing came before, and the checked sum; a failed check
            // sends a sum no file has, so the worker discards what it wrote.
            let sum = match sum.await {
                Ok(s) => s,
                Err(e) => {
                    *f2.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e);
                    "mismatch".to_string()
                }
            };
            FlightData {
                app_metadata: format!("{}{sum}", protocol::SHA256_METADATA)
                    .into_bytes()
                    .into(),
                ..Default::default()
            }
        }));
    let result = async {
        let response = to
            .client()
            .do_put(body)
            .await
            .map_err(|s| s.message().to_string())?;
        response
            .into_inner()
            .try_collect::<Vec<_>>()
            .await
            .map_err(|s| s.message().to_string())
    }
    .await;
    if let Some(e) = failure
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
    {
        return Err(e);
    }
    result.map(|_| ())
}
