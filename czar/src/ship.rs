//! Shipping a load's files to the workers that are to hold them (`skyshard load`): the czar runs the loader into
//! its own data directory and, before the one metadata write that publishes the load, sends every chunk file to the
//! workers [`Cluster::holders`] names for its chunk (Flight `DoPut`; replicas; a child's chunks follow its
//! director's placement; replicated tables go to every worker). If any worker cannot take its files, nothing is
//! published. Workers that share the czar's data directory (`skyshard serve`) already have the files and are
//! skipped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_flight::{FlightData, FlightDescriptor};
use futures::{StreamExt, TryStreamExt};
use metastore::{TableKind, TableRecord};
use partitioner::layout;
use prost::Message;

use crate::cluster::{Cluster, WorkerHandle};
use crate::error::CzarError;

/// Sends every file of a load to the workers that are to hold its chunk (those in `follow`, else the cluster's
/// placement) and notes them in `record.placement`; returns how many puts were made.
pub async fn ship(
    cluster: &Cluster,
    czar_dir: &Path,
    load_dir: &Path,
    record: &mut TableRecord,
    follow: &HashMap<u64, Vec<String>>,
) -> Result<usize, CzarError> {
    // Workers serving the czar's own data directory have the files already.
    let own = std::fs::canonicalize(czar_dir).unwrap_or_else(|_| czar_dir.to_path_buf());
    let mut remote: Vec<Arc<WorkerHandle>> = Vec::new();
    for w in &cluster.workers {
        let health = w
            .client()
            .do_action(arrow_flight::Action {
                r#type: protocol::ACTION_HEALTH.into(),
                body: Default::default(),
            })
            .await
            .map_err(|s| CzarError::Ship {
                worker: w.address.clone(),
                reason: format!("it does not answer: {}", s.message()),
            })?;
        let mut results = health.into_inner();
        let body = results
            .message()
            .await
            .map_err(|s| CzarError::Ship {
                worker: w.address.clone(),
                reason: s.message().to_string(),
            })?
            .map(|r| r.body)
            .unwrap_or_default();
        let data_dir = protocol::Health::decode(body)
            .map(|h| PathBuf::from(h.data_dir))
            .unwrap_or_default();
        let theirs = std::fs::canonicalize(&data_dir).unwrap_or(data_dir);
        if theirs != own {
            remote.push(w.clone());
        }
    }
    if remote.is_empty() {
        return Ok(0);
    }
    let mut puts: Vec<(PathBuf, String, Vec<Arc<WorkerHandle>>)> = Vec::new();
    let mut placement: std::collections::BTreeMap<u64, Vec<String>> = Default::default();
    for sub in [layout::CHUNKS, layout::REPLICATED] {
        let Ok(entries) = std::fs::read_dir(load_dir.join(sub)) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if !name.ends_with(".parquet") {
                continue;
            }
            let targets: Vec<Arc<WorkerHandle>> = if record.kind == TableKind::Replicated
                || sub == layout::REPLICATED
            {
                remote.clone()
            } else {
                // Chunk files only (`UNIQ.parquet`, `UNIQ.overlap.parquet`, `orphans.parquet`): nothing else is
                // written into a load's chunk directory.
                let Some((chunk, overlap)) = layout::parse_chunk_file(&name) else {
                    continue;
                };
                let holders: Vec<Arc<WorkerHandle>> = cluster
                    .holders(chunk, Some(follow))
                    .into_iter()
                    .filter(|w| remote.iter().any(|r| r.address == w.address))
                    .collect();
                if holders.is_empty() {
                    return Err(CzarError::NoPlacement { chunk });
                }
                if !overlap {
                    placement.insert(chunk, holders.iter().map(|w| w.address.clone()).collect());
                }
                holders
            };
            if !targets.is_empty() {
                puts.push((entry.path(), format!("{sub}/{name}"), targets));
            }
        }
    }
    let table = record.qualified_name();
    let load = record.load_id.clone();
    let jobs = puts.into_iter().flat_map(|(path, rel, targets)| {
        targets
            .into_iter()
            .map(move |w| (path.clone(), rel.clone(), w))
    });
    let results: Vec<Result<(), CzarError>> = futures::stream::iter(jobs)
        .map(|(path, rel, worker)| {
            let descriptor =
                FlightDescriptor::new_path(vec![table.clone(), load.clone(), rel.clone()]);
            async move {
                put_file(&worker, descriptor, &path)
                    .await
                    .map_err(|e| CzarError::Ship {
                        worker: worker.address.clone(),
                        reason: format!("{rel}: {e}"),
                    })
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    let n = results.len();
    results.into_iter().collect::<Result<Vec<_>, _>>()?;
    record.placement = placement.into_iter().collect();
    Ok(n)
}

/// Streams one file to a worker with `DoPut`, in pieces of 1 MiB.
async fn put_file(
    worker: &WorkerHandle,
    descriptor: FlightDescriptor,
    path: &Path,
) -> Result<(), String> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| e.to_string())?;
    let pieces = futures::stream::unfold(
        (file, Some(descriptor)),
        |(mut file, descriptor)| async move {
            use tokio::io::AsyncReadExt;
            let mut buf = vec![0u8; 1 << 20];
            let mut filled = 0;
            while filled < buf.len() {
                match file.read(&mut buf[filled..]).await {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(_) => break,
                }
            }
            if filled == 0 && descriptor.is_none() {
                return None;
            }
            buf.truncate(filled);
            let message = FlightData {
                flight_descriptor: descriptor,
                data_body: buf.into(),
                ..Default::default()
            };
            Some((message, (file, None)))
        },
    );
    let expected = tokio::fs::metadata(path)
        .await
        .map_err(|e| e.to_string())?
        .len();
    let response = worker
        .client()
        .do_put(pieces)
        .await
        .map_err(|s| s.message().to_string())?;
    let results = response
        .into_inner()
        .try_collect::<Vec<_>>()
        .await
        .map_err(|s| s.message().to_string())?;
    // The worker says how many bytes it wrote: a short read here must not pass for a whole file.
    let written: Option<u64> = results
        .first()
        .and_then(|r| std::str::from_utf8(&r.app_metadata).ok()?.parse().ok());
    if written != Some(expected) {
        return Err(format!("the worker wrote {written:?} bytes of {expected}"));
    }
    Ok(())
}

/// Tells every worker to drop the loads of `table` older than `keep_load` (after a replacing load, queries name the
/// new one; a load published or arriving since is newer and stays). A worker that does not answer keeps its old
/// files until the next drop.
pub async fn drop_old_loads(cluster: &Cluster, table: &str, keep_load: &str) {
    for w in &cluster.workers {
        let body = protocol::DropTable {
            table: table.to_string(),
            keep_load: keep_load.to_string(),
        };
        let _ = w.act(protocol::ACTION_DROP, body).await;
    }
}
