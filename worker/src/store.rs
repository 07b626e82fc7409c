//! What a worker holds: files put by the czar (`skyshard load` ships every chunk file of a load with Flight
//! `DoPut`), loads dropped after a replacing load, and statistics of what is held. Every path a request names is
//! checked to stay inside the data directory's layout (`partitioner::layout`).

use std::path::{Path, PathBuf};

use arrow_flight::FlightData;
use partitioner::layout;
use sha2::{Digest, Sha256};
use tonic::Streaming;

use crate::error::WorkerError;

fn bad_path(reason: impl Into<String>) -> WorkerError {
    WorkerError::BadPath {
        reason: reason.into(),
    }
}

/// Every load under `DATA/tables` as (table, load, its files as (`chunks/NAME` or `replicated/NAME`, bytes)),
/// files being written (`.part`) included: the one walk [`statistics`] and [`census`] share.
fn loads(data_dir: &Path) -> Vec<(String, String, Vec<(String, u64)>)> {
    let dirs = |p: PathBuf| std::fs::read_dir(p).into_iter().flatten().flatten();
    let mut out = Vec::new();
    for table in dirs(layout::tables_dir(data_dir)) {
        for load in dirs(table.path()) {
            let mut files = Vec::new();
            for sub in [layout::CHUNKS, layout::REPLICATED] {
                for f in dirs(load.path().join(sub)) {
                    let name = f.file_name().to_string_lossy().into_owned();
                    files.push((
                        format!("{sub}/{name}"),
                        f.metadata().map(|m| m.len()).unwrap_or(0),
                    ));
                }
            }
            out.push((
                table.file_name().to_string_lossy().into_owned(),
                load.file_name().to_string_lossy().into_owned(),
                files,
            ));
        }
    }
    out
}

/// The loads under `DATA/tables`: files and bytes of each.
pub fn statistics(data_dir: &Path) -> protocol::Statistics {
    let loads = loads(data_dir)
        .into_iter()
        .map(|(table, load_id, files)| protocol::LoadStatistics {
            table,
            load_id,
            files: files.len() as u64,
            bytes: files.iter().map(|(_, b)| b).sum(),
        })
        .collect();
    protocol::Statistics { loads }
}

/// Where a put file goes: `DATA/tables/SCHEMA.TABLE/LOAD/(chunks|replicated)/NAME.parquet`, every part checked so
/// a put cannot write outside the data directory.
pub fn put_target(data_dir: &Path, path: &[String]) -> Result<PathBuf, WorkerError> {
    let [table, load, file] = path else {
        return Err(bad_path("a put names [SCHEMA.TABLE, LOAD, FILE]"));
    };
    let plain = |s: &str, extra: &[char]| {
        !s.is_empty()
            && !s.starts_with('.')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || extra.contains(&c))
    };
    let (dir, name) = file
        .split_once('/')
        .ok_or_else(|| bad_path("the file must be chunks/NAME or replicated/NAME"))?;
    if !(plain(table, &['.']) && table.matches('.').count() == 1)
        || !plain(load, &['-'])
        || ![layout::CHUNKS, layout::REPLICATED].contains(&dir)
        || !plain(name, &['.', '-'])
        || !name.ends_with(".parquet")
        || name.contains("..")
    {
        return Err(bad_path(format!("refusing to write {table}/{load}/{file}")));
    }
    Ok(layout::load_dir(data_dir, table, load).join(dir).join(name))
}

/// Writes a put's file: `first` carries the descriptor and the first bytes, `rest` the others in order. The file is
/// written beside its final name and renamed when whole, so a scan never sees half a file. Returns the bytes written.
pub async fn put(
    data_dir: &Path,
    first: FlightData,
    mut rest: Streaming<FlightData>,
) -> Result<u64, WorkerError> {
    let path = first
        .flight_descriptor
        .as_ref()
        .map(|d| d.path.clone())
        .unwrap_or_default();
    let target = put_target(data_dir, &path)?;
    let partial = target.with_extension("parquet.part");
    let write = async {
        use tokio::io::AsyncWriteExt;
        if let Some(dir) = target.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let mut file = tokio::fs::File::create(&partial).await?;
        let mut hasher = Sha256::new();
        let mut declared: Option<String> = None;
        let mut bytes = 0u64;
        let mut next = Some(first);
        while let Some(message) = next {
            if let Some(sum) = std::str::from_utf8(&message.app_metadata)
                .ok()
                .and_then(|m| m.strip_prefix(protocol::SHA256_METADATA))
            {
                declared = Some(sum.to_string());
            }
            bytes += message.data_body.len() as u64;
            hasher.update(&message.data_body);
            file.write_all(&message.data_body).await?;
            next = rest
                .message()
                .await
                .map_err(|s| std::io::Error::other(s.message().to_string()))?;
        }
        file.sync_all().await?;
        if let Some(declared) = declared {
            let written = protocol::hex(&hasher.finalize());
            if written != declared {
                return Err(std::io::Error::other(format!(
                    "the copy's SHA-256 is {written}, the sender's {declared}: discarded"
                )));
            }
        }
        tokio::fs::rename(&partial, &target).await?;
        Ok::<u64, std::io::Error>(bytes)
    };
    match write.await {
        Ok(bytes) => Ok(bytes),
        Err(source) => {
            let _ = tokio::fs::remove_file(&partial).await;
            Err(WorkerError::Io {
                path: target,
                source,
            })
        }
    }
}

/// When a load was made: the milliseconds its id starts with (`MILLIS-PID`, `loader::ingest::prepare`).
fn load_time(load: &str) -> Option<u128> {
    load.split_once('-')?.0.parse().ok()
}

/// Removes a table's loads older than `keep_load` (empty: all of them). Only older ones: the czar asks for this a
/// while after publishing `keep_load`, and by then a newer load may have been published (its files must stay) or be
/// arriving to be published (likewise); each load's own request removes what came before it. A load whose id does
/// not say when it was made is kept.
pub fn drop_loads(data_dir: &Path, table: &str, keep_load: &str) -> Result<(), WorkerError> {
    // The same checks as a put of this table's files.
    put_target(
        data_dir,
        &[table.to_string(), "0".into(), "chunks/x.parquet".into()],
    )
    .map_err(|_| bad_path(format!("bad table name {table}")))?;
    let dir = layout::table_dir(data_dir, table);
    if keep_load.is_empty() {
        // The table is dropped: nothing of it stays.
        return match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(WorkerError::Io {
                path: dir,
                source: e,
            }),
            _ => Ok(()),
        };
    }
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let older = matches!((load_time(&name), load_time(keep_load)), (Some(a), Some(b)) if a < b);
            if name != keep_load && older {
                std::fs::remove_dir_all(e.path()).map_err(|source| WorkerError::Io {
                    path: e.path(),
                    source,
                })?;
            }
        }
    }
    Ok(())
}

/// Every file under `DATA/tables`, by table and load, with its size: what the czar's replica census asks.
pub fn census(data_dir: &Path) -> protocol::Census {
    let loads = loads(data_dir)
        .into_iter()
        .map(|(table, load_id, files)| protocol::HeldLoad {
            table,
            load_id,
            // Files being written (`.part`) are not held yet.
            files: files
                .into_iter()
                .filter(|(name, _)| name.ends_with(".parquet"))
                .map(|(name, bytes)| protocol::HeldFile { name, bytes })
                .collect(),
        })
        .collect();
    protocol::Census {
        loads,
        data_dir: data_dir.display().to_string(),
    }
}

/// A held file read back in pieces of 1 MiB, the last piece carrying the SHA-256 of all of them (the path checked
/// like a put's).
pub fn fetch(
    data_dir: &Path,
    request: &protocol::FetchFile,
) -> Result<
    impl futures::Stream<Item = Result<protocol::FilePiece, WorkerError>> + Send + 'static,
    WorkerError,
> {
    let path = put_target(
        data_dir,
        &[
            request.table.clone(),
            request.load_id.clone(),
            request.file.clone(),
        ],
    )?;
    let file = std::fs::File::open(&path).map_err(|source| WorkerError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(futures::stream::unfold(
        Some((file, Sha256::new(), path)),
        |state| async move {
            use std::io::Read;
            let (mut file, mut hasher, path) = state?;
            let mut buf = vec![0u8; 1 << 20];
            let mut filled = 0;
            while filled < buf.len() {
                match file.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(source) => return Some((Err(WorkerError::Io { path, source }), None)),
                }
            }
            buf.truncate(filled);
            hasher.update(&buf);
            if filled == 0 {
                let piece = protocol::FilePiece {
                    data: Vec::new(),
                    sha256: protocol::hex(&hasher.finalize()),
                };
                return Some((Ok(piece), None));
            }
            let piece = protocol::FilePiece {
                data: buf,
                sha256: String::new(),
            };
            Some((Ok(piece), Some((file, hasher, path))))
        },
    ))
}

/// Removes a load's files of `chunks` (their own and overlap files), after they moved to other workers.
pub fn drop_chunks(data_dir: &Path, request: &protocol::DropChunks) -> Result<(), WorkerError> {
    for &chunk in &request.chunks {
        for name in [layout::chunk_file(chunk), layout::overlap_file(chunk)] {
            let path = put_target(
                data_dir,
                &[
                    request.table.clone(),
                    request.load_id.clone(),
                    format!("{}/{name}", layout::CHUNKS),
                ],
            )?;
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(WorkerError::Io { path, source: e });
                }
                _ => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loads_older_than_the_kept_one_are_dropped() {
        let data = std::env::temp_dir().join(format!("skyshard-drop-{}", std::process::id()));
        let table = layout::table_dir(&data, "sky.object");
        for load in ["100-7", "200-7", "300-7", "odd"] {
            std::fs::create_dir_all(table.join(load).join("chunks")).unwrap();
        }
        // A cleanup asked for after load 200 was published runs after load 300 was: 300 stays (data lost otherwise).
        drop_loads(&data, "sky.object", "200-7").unwrap();
        let mut left: Vec<String> = std::fs::read_dir(&table)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["200-7", "300-7", "odd"]);
        drop_loads(&data, "sky.object", "").unwrap();
        assert!(!table.exists());
        std::fs::remove_dir_all(&data).unwrap();
    }
}
