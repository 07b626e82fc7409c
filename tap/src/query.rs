//! A TAP query request: its parameters checked (`LANG`, `QUERY`, `RESPONSEFORMAT`, `MAXREC`, `RUNID`), and its
//! start, shared by sync queries, async jobs and cone searches.

use czar::{Czar, CzarError};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;

use crate::error::TapError;
use crate::output::OutputFormat;
use crate::params::Params;
use platform::Limits;

/// A checked query request (sync, or the parameters of an async job).
#[derive(Debug, Clone)]
pub struct QueryRequest {
    pub query: String,
    pub format: OutputFormat,
    pub maxrec: u64,
    pub run_id: Option<String>,
    /// The service's DataLink URL as the caller reaches it, for the descriptor of a result with publisher DIDs.
    pub links: Option<String>,
}

impl QueryRequest {
    pub fn from_params(p: &Params, limits: &Limits) -> Result<QueryRequest, TapError> {
        match p.get("LANG") {
            None => {
                return Err(TapError::parameter(
                    "LANG",
                    "LANG is missing: this service speaks LANG=ADQL",
                ));
            }
            Some(l)
                if !matches!(
                    l.trim().to_uppercase().as_str(),
                    "ADQL" | "ADQL-2.0" | "ADQL-2.1"
                ) =>
            {
                return Err(TapError::parameter(
                    "LANG",
                    format!("LANG={l} is not supported: this service speaks ADQL (2.0, 2.1)"),
                ));
            }
            _ => {}
        }
        let query = p
            .get("QUERY")
            .filter(|q| !q.trim().is_empty())
            .ok_or_else(|| TapError::parameter("QUERY", "QUERY is missing"))?;
        let format = match p.get("RESPONSEFORMAT").or_else(|| p.get("FORMAT")) {
            None => OutputFormat::VoTable,
            Some(f) if f.trim().is_empty() => OutputFormat::VoTable,
            Some(f) => {
                OutputFormat::parse(f).map_err(|m| TapError::parameter("RESPONSEFORMAT", m))?
            }
        };
        let maxrec = match p.get("MAXREC") {
            None => limits.default_maxrec,
            Some(m) => m
                .trim()
                .parse::<u64>()
                .map_err(|_| {
                    TapError::parameter(
                        "MAXREC",
                        format!("MAXREC={m} is not a non-negative integer"),
                    )
                })?
                .min(limits.max_maxrec),
        };
        Ok(QueryRequest {
            query: query.to_string(),
            format,
            maxrec,
            run_id: p.get("RUNID").map(String::from),
            links: None,
        })
    }
}

/// INFO elements a result VOTable carries.
pub(crate) fn result_info(req: &QueryRequest) -> crate::output::Head {
    let mut info = vec![("QUERY", req.query.clone())];
    if let Some(r) = &req.run_id {
        info.push(("RUNID", r.clone()));
    }
    crate::output::Head {
        info,
        links: req.links.clone(),
    }
}

/// Plans and starts a query as `query` says (who it runs for, its uploads, its progress); returns a stream whose
/// first batch (or first error) has been looked at, so a query that fails at once is reported as an error rather
/// than as a cut document.
pub async fn start_query(
    czar: &Czar,
    req: &QueryRequest,
    query: &czar::QueryContext<'_>,
) -> Result<datafusion::physical_plan::SendableRecordBatchStream, CzarError> {
    if req.maxrec == 0 {
        // Metadata only: plan, don't run.
        let plan = czar.plan(&req.query, query).await?.plan;
        return Ok(Box::pin(
            datafusion::physical_plan::EmptyRecordBatchStream::new(plan.schema()),
        ));
    }
    let mut stream = czar.execute(&req.query, query).await?;
    let schema = stream.schema();
    let first = stream.next().await;
    if let Some(Err(e)) = first {
        return Err(CzarError::from_datafusion(e));
    }
    let rest = futures::stream::iter(first).chain(stream);
    Ok(Box::pin(RecordBatchStreamAdapter::new(schema, rest)))
}
