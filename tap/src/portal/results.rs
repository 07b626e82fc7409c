//! Pages of a job's stored Parquet result, sorted by any column, and the result written again in another format.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::Response;
use datafusion::arrow::array::{Array, RecordBatch, UInt32Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::Column;
use datafusion::logical_expr::Expr;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use futures::StreamExt;
use serde_json::{Value, json};

use super::api::{json_response, query_of};
use crate::extract::OwnedJob;
use crate::output::{OutputFormat, stream_result};
use crate::params::Params;
use crate::reply::{error, streamed_response};
use crate::service::Tap;
use platform::jobs::{Job, Phase};

/// The stored Parquet result of a completed job, or the response that says why there is none.
async fn parquet_result(
    tap: &Tap,
    job: Job,
) -> Result<(Job, datafusion::dataframe::DataFrame), Response> {
    let id = job.id.as_str();
    let Some(r) = job.result.clone().filter(|_| job.phase == Phase::Completed) else {
        return Err(error(
            StatusCode::NOT_FOUND,
            &format!("the job is {}: it has no result", job.phase.name()),
        ));
    };
    if r.mime != OutputFormat::Parquet.mime() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            &format!(
                "the job's result is {}: pages and other formats are made from Parquet results \
                 (RESPONSEFORMAT=parquet)",
                r.mime
            ),
        ));
    }
    let path = tap.jobs.job_dir(id).join(&r.file);
    // The fields' units, UCDs and descriptions are in the file's Arrow schema: keep them.
    let frame = SessionContext::new()
        .read_parquet(
            path.to_string_lossy().as_ref(),
            ParquetReadOptions::default().skip_metadata(false),
        )
        .await
        .map_err(|e| {
            error(
                StatusCode::NOT_FOUND,
                &format!("the result cannot be read: {e}"),
            )
        })?;
    Ok((job, frame))
}

/// The most rows one page may have.
const PAGE_MAX: usize = 1000;

fn number(params: &Params, name: &str, default: usize) -> Result<usize, Response> {
    match params.get(name) {
        None => Ok(default),
        Some(v) => v.trim().parse::<usize>().map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                &format!("{name}={v} is not a non-negative integer"),
            )
        }),
    }
}

pub(super) async fn rows(
    State(tap): State<Arc<Tap>>,
    OwnedJob(job): OwnedJob,
    params: Params,
) -> Response {
    let (job, frame) = match parquet_result(&tap, job).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let (offset, limit) = match (number(&params, "OFFSET", 0), number(&params, "LIMIT", 100)) {
        (Ok(o), Ok(l)) => (o, l.min(PAGE_MAX)),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let descending = match params.get("ORDER").map(|o| o.trim().to_lowercase()) {
        None => false,
        Some(o) if o == "asc" => false,
        Some(o) if o == "desc" => true,
        Some(o) => {
            return error(StatusCode::BAD_REQUEST, &format!("ORDER={o}: asc or desc"));
        }
    };
    let schema = frame.schema().as_arrow().clone();
    let batches = match params.get("SORT").filter(|s| !s.is_empty()) {
        None => match frame.limit(offset, Some(limit)) {
            Ok(f) => f.collect().await,
            Err(e) => Err(e),
        },
        Some(name) => {
            if schema.field_with_name(name).is_err() {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("the result has no column {name} to sort by"),
                );
            }
            let key = (job.id.clone(), name.to_string(), descending);
            let file_bytes = job.result.as_ref().map_or(0, |r| r.bytes);
            sorted_page(frame, key, file_bytes, offset, limit).await
        }
    };
    let batches = match batches {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("the page cannot be read: {e}"),
            );
        }
    };
    let columns: Vec<Value> = schema
        .fields()
        .iter()
        .map(|f| {
            let meta = |k: &str| f.metadata().get(k).cloned();
            json!({
                "name": f.name(),
                "datatype": f.data_type().to_string(),
                "numeric": f.data_type().is_numeric(),
                "unit": meta("unit"),
                "ucd": meta("ucd"),
                "description": meta("description"),
            })
        })
        .collect();
    let rows = match page_rows(&batches) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    json_response(&json!({
        "total": job.result.as_ref().map_or(0, |r| r.rows),
        "overflow": job.result.as_ref().is_some_and(|r| r.overflow),
        "offset": offset,
        "columns": columns,
        "rows": rows,
    }))
}

/// Results kept sorted for paging, newest last: (job, column, descending), the whole result as one batch and the
/// order of its rows by that column. A result is sorted once (the order of one column, `sort_to_indices`) and each
/// page is the rows it names (a page of a million-row result sorted by a column took 0.7 s sorted again for every
/// page, then 0.28 s for a first page fully sorted by DataFusion).
type SortedResult = ((String, String, bool), RecordBatch, Arc<UInt32Array>, usize);
static SORTED: std::sync::Mutex<std::collections::VecDeque<SortedResult>> =
    std::sync::Mutex::new(std::collections::VecDeque::new());

/// Memory the sorted results may hold in all.
const SORTED_BYTES: usize = 512 << 20;

/// Stored results larger than this (Parquet bytes) are not read whole to be sorted: each page is a top-k.
const SORTED_FILE_BYTES: u64 = 128 << 20;

/// Rows `offset..offset + limit` of the result in `frame` (a file of `file_bytes`) sorted by `key`'s column.
async fn sorted_page(
    frame: datafusion::dataframe::DataFrame,
    key: (String, String, bool),
    file_bytes: u64,
    offset: usize,
    limit: usize,
) -> datafusion::common::Result<Vec<RecordBatch>> {
    let order = Expr::Column(Column::new_unqualified(&key.1)).sort(!key.2, key.2);
    if file_bytes > SORTED_FILE_BYTES {
        return frame
            .sort(vec![order])?
            .limit(offset, Some(limit))?
            .collect()
            .await;
    }
    let cached = SORTED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .find(|(k, ..)| *k == key)
        .map(|(_, b, o, _)| (b.clone(), o.clone()));
    let (batch, rows) = match cached {
        Some(c) => c,
        None => {
            let schema = Arc::new(frame.schema().as_arrow().clone());
            let batches = frame.collect().await?;
            let batch = datafusion::arrow::compute::concat_batches(&schema, &batches)?;
            let column = batch.column_by_name(&key.1).ok_or_else(|| {
                datafusion::common::DataFusionError::Plan(format!("no column {}", key.1))
            })?;
            let options = datafusion::arrow::compute::SortOptions {
                descending: key.2,
                nulls_first: key.2,
            };
            let rows = Arc::new(datafusion::arrow::compute::sort_to_indices(
                column,
                Some(options),
                None,
            )?);
            let bytes = batch.get_array_memory_size() + rows.get_array_memory_size();
            if bytes <= SORTED_BYTES / 2 {
                let mut kept = SORTED
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                kept.retain(|(k, ..)| *k != key);
                kept.push_back((key, batch.clone(), rows.clone(), bytes));
                while kept.iter().map(|(.., n)| n).sum::<usize>() > SORTED_BYTES {
                    kept.pop_front();
                }
            }
            (batch, rows)
        }
    };
    let start = offset.min(rows.len());
    let wanted = rows.slice(start, limit.min(rows.len() - start));
    Ok(vec![datafusion::arrow::compute::take_record_batch(
        &batch, &wanted,
    )?])
}

/// The rows of `batches` as JSON arrays: numbers as numbers (non-finite ones, which JSON lacks, as text), nulls
/// as null, everything else as Arrow displays it.
fn page_rows(batches: &[RecordBatch]) -> Result<Vec<Value>, String> {
    let options = FormatOptions::default();
    let mut out = Vec::new();
    for batch in batches {
        let formatters: Vec<ArrayFormatter> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        for row in 0..batch.num_rows() {
            let cells = batch
                .columns()
                .iter()
                .zip(&formatters)
                .map(|(column, f)| {
                    if column.is_null(row) {
                        return Value::Null;
                    }
                    let text = f.value(row).to_string();
                    let numeric = matches!(
                        column.data_type(),
                        DataType::Int8
                            | DataType::Int16
                            | DataType::Int32
                            | DataType::Int64
                            | DataType::UInt8
                            | DataType::UInt16
                            | DataType::UInt32
                            | DataType::UInt64
                            | DataType::Float32
                            | DataType::Float64
                    );
                    if numeric
                        && let Ok(n) = text.parse::<f64>()
                        && n.is_finite()
                        && let Some(v) = serde_json::Number::from_f64(n)
                    {
                        // Integers keep their exact digits (an f64 holds 53 bits; ids have 64).
                        if let Ok(i) = text.parse::<i64>() {
                            return Value::from(i);
                        }
                        if let Ok(u) = text.parse::<u64>() {
                            return Value::from(u);
                        }
                        return Value::Number(v);
                    }
                    Value::String(text)
                })
                .collect();
            out.push(Value::Array(cells));
        }
    }
    Ok(out)
}

/// A Parquet result written again in another format. A result that was cut at MAXREC says OVERFLOW again: one
/// row past the stored ones is offered to the writer (and, being past MAXREC, never written).
pub(super) async fn result(
    State(tap): State<Arc<Tap>>,
    OwnedJob(job): OwnedJob,
    params: Params,
) -> Response {
    let (job, frame) = match parquet_result(&tap, job).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let format = match params
        .get("RESPONSEFORMAT")
        .or(params.get("FORMAT"))
        .map(OutputFormat::parse)
        .unwrap_or(Ok(OutputFormat::VoTable))
    {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    let stored = job.result.clone().expect("a completed job's result");
    let stream = match frame.execute_stream().await {
        Ok(s) => s,
        Err(e) => {
            return error(
                StatusCode::NOT_FOUND,
                &format!("the result cannot be read: {e}"),
            );
        }
    };
    let schema = stream.schema();
    let stream: datafusion::physical_plan::SendableRecordBatchStream = if stored.overflow {
        let last = Arc::new(std::sync::Mutex::new(None::<RecordBatch>));
        let keep = last.clone();
        let rows = stream
            .inspect(move |item| {
                if let Ok(b) = item
                    && b.num_rows() > 0
                {
                    *keep
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(b.slice(0, 1));
                }
            })
            .chain(
                futures::stream::once(async move {
                    last.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .take()
                })
                .filter_map(|b| async move { b.map(Ok) }),
            );
        Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, rows))
    } else {
        stream
    };
    let mut info = vec![("QUERY", query_of(&job).unwrap_or("").to_string())];
    if let Some(r) = &job.run_id {
        info.push(("RUNID", r.clone()));
    }
    let name = format!("{}.{}", job.id, format.extension());
    let extra = vec![(
        header::CONTENT_DISPOSITION,
        format!("attachment; filename=\"{name}\""),
    )];
    streamed_response(StatusCode::OK, format.mime(), extra, move |tx| {
        tokio::spawn(async move {
            let body = tx.clone();
            let head = crate::output::Head { info, links: None };
            let written = stream_result(stream, format, stored.rows, &head, tx, None, false);
            if let Err(e) = written.await {
                let _ = body.send(Err(std::io::Error::other(e))).await;
            }
        });
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_keep_ids_exact() {
        use datafusion::arrow::array::{Float64Array, Int64Array, StringArray};
        use datafusion::arrow::datatypes::{Field, Schema};
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("x", DataType::Float64, true),
            Field::new("s", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![Some(9007199254740993), None])),
                Arc::new(Float64Array::from(vec![Some(1.5), Some(f64::NAN)])),
                Arc::new(StringArray::from(vec![Some("a"), Some("b")])),
            ],
        )
        .expect("a batch");
        let rows = page_rows(&[batch]).expect("rows");
        assert_eq!(rows[0], json!([9007199254740993i64, 1.5, "a"]));
        assert_eq!(rows[1], json!([null, "NaN", "b"]));
    }
}
