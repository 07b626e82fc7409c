//! What an async query job computes, for the platform's job runner ([`platform::jobs::QueryJobs`]): its
//! parameters read as a sync request's, its inline uploads from the job's directory, the query planned over what
//! its owner sees and run with its progress counted, the result written in its format into the job's directory.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::Bytes;
use platform::Platform;
use platform::jobs::{Finished, Job, ResultFile};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::output::{Ending, stream_result};
use crate::params::Params;
use crate::query::{QueryRequest, result_info, start_query};
use crate::upload;

/// The file an inline upload part is kept in (part names come from the client: no path characters).
pub(crate) fn part_file(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A query job's parameters as a request's (names upper-case), to be read as one.
fn params_of(job: &Job) -> Params {
    Params {
        pairs: job
            .params
            .iter()
            .map(|(k, v)| (k.to_uppercase(), v.clone()))
            .collect(),
        parts: Vec::new(),
    }
}

/// The TAP work of a query job ([`platform::jobs::QueryJobs`]): its parameters read as a request's, its inline
/// uploads from the job's directory, the query planned over what its owner sees and run, the result written in its
/// format into the job's directory.
pub(crate) struct QueryWork;

impl platform::jobs::QueryJobs for QueryWork {
    fn run(
        &self,
        platform: Arc<Platform>,
        job: Job,
        progress: Arc<czar::progress::Progress>,
    ) -> Pin<Box<dyn Future<Output = Result<Finished, String>> + Send>> {
        Box::pin(async move { run_query(&platform, &job, progress).await })
    }
}

async fn run_query(
    platform: &Platform,
    job: &Job,
    progress: Arc<czar::progress::Progress>,
) -> Result<Finished, String> {
    let mut params = params_of(job);
    let dir = platform.jobs.job_dir(&job.id);
    for name in &job.parts {
        let bytes = std::fs::read(dir.join("uploads").join(part_file(name)))
            .map_err(|e| format!("the upload {name} is gone: {e}"))?;
        params.parts.push((name.clone(), Bytes::from(bytes)));
    }
    let req = QueryRequest::from_params(&params, &platform.limits).map_err(|e| e.to_string())?;
    let uploads = upload::load_all(&params, &platform.limits)
        .await
        .map_err(|e| e.to_string())?;
    let visible = platform.visible_to_owner(job.owner.as_deref());
    let query = czar::QueryContext {
        uploads: &uploads,
        visible: visible.as_deref(),
        progress: Some(&progress),
        ..Default::default()
    };
    let stream = start_query(&platform.czar, &req, &query)
        .await
        .map_err(|e| e.to_string())?;
    let stream = counted(stream, progress);
    let file_name = format!("result.{}", req.format.extension());
    let mut file = tokio::fs::File::create(dir.join(&file_name))
        .await
        .map_err(|e| format!("cannot write the result: {e}"))?;
    let (tx, mut rx) = mpsc::channel::<std::io::Result<Bytes>>(4);
    let writer = async move {
        let mut bytes = 0u64;
        while let Some(chunk) = rx.recv().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            file.write_all(&chunk)
                .await
                .map_err(|e| format!("cannot write the result: {e}"))?;
            bytes += chunk.len() as u64;
        }
        file.flush().await.map_err(|e| e.to_string())?;
        Ok::<u64, String>(bytes)
    };
    let info = result_info(&req);
    let (outcome, written) = tokio::join!(
        stream_result(stream, req.format, req.maxrec, &info, tx, None, true),
        writer
    );
    let outcome = outcome?;
    let bytes = written?;
    Ok(Finished {
        result: ResultFile {
            mime: req.format.mime().to_string(),
            file: file_name,
            rows: outcome.rows,
            overflow: outcome.ending == Ending::Overflow,
            bytes,
        },
        failure: match outcome.ending {
            Ending::Failed(m) => Some(m),
            _ => None,
        },
    })
}

/// `stream`, counting the rows it yields (the result's, after the merge) into `progress`.
fn counted(
    stream: datafusion::physical_plan::SendableRecordBatchStream,
    progress: Arc<czar::progress::Progress>,
) -> datafusion::physical_plan::SendableRecordBatchStream {
    let schema = stream.schema();
    let rows = futures::StreamExt::inspect(stream, move |item| {
        if let Ok(batch) = item {
            progress.returned(batch.num_rows() as u64);
        }
    });
    Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, rows))
}
