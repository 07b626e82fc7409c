//! Simple Cone Search 1.03 at `/scs/SCHEMA.TABLE?RA=&DEC=&SR=[&VERB=1|2|3]` for each director table: the rows
//! within SR degrees of (RA, DEC), as a VOTable whose id, RA and Dec fields carry the UCDs SCS requires
//! (`ID_MAIN`, `POS_EQ_RA_MAIN`, `POS_EQ_DEC_MAIN`, which pyvo's `SCSRecord` looks for). VERB=1 gives those three
//! columns, 2 and 3 all of them. Errors are VOTables with an `INFO name="Error"` (and DALI's `QUERY_STATUS`), as
//! SCS 1.03 asks, with HTTP 200.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;

use votable::write::xml_escape;

use crate::output::OutputFormat;
use crate::params::Params;
use crate::query::{QueryRequest, start_query};
use crate::reply::busy;
use crate::service::Tap;
use crate::sync::result_response;

/// The largest radius answered, in degrees.
pub const MAX_SR: f64 = 10.0;

fn scs_error(message: &str) -> Response {
    let m = xml_escape(message);
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<VOTABLE version=\"1.4\" xmlns=\"http://www.ivoa.net/xml/VOTable/v1.3\">\n<RESOURCE type=\"results\">\n<INFO name=\"QUERY_STATUS\" value=\"ERROR\">{m}</INFO>\n<INFO ID=\"Error\" name=\"Error\" value=\"{m}\"/>\n</RESOURCE>\n</VOTABLE>\n"
    );
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-votable+xml")],
        body,
    )
        .into_response()
}

fn number(p: &Params, name: &str) -> Result<f64, String> {
    let v = p
        .get(name)
        .ok_or_else(|| format!("{name} is missing (RA, DEC and SR in degrees)"))?;
    v.trim()
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite())
        .ok_or_else(|| format!("{name}={v} is not a number"))
}

pub async fn cone(
    State(tap): State<Arc<Tap>>,
    axum::Extension(client): axum::Extension<crate::auth::Client>,
    axum::Extension(caller): axum::Extension<crate::auth::Caller>,
    tally: Option<axum::Extension<Arc<crate::audit::Tally>>>,
    Path(table): Path<String>,
    p: Params,
) -> Response {
    let reader = platform::access::Reader::of(&caller);
    let Some(info) = tap
        .czar
        .tables()
        .into_iter()
        .find(|t| t.record.qualified_name().eq_ignore_ascii_case(&table))
        .filter(|t| tap.auth.is_none() || tap.grants.may_read(&reader, &t.record.qualified_name()))
    else {
        return scs_error(&format!("no table named {table} here"));
    };
    let metastore::TableKind::Director { ra, dec, id } = &info.record.kind else {
        return scs_error(&format!(
            "{table} has no positions of its own: cone search serves director tables"
        ));
    };
    let (ra, dec, id) = (ra.to_lowercase(), dec.to_lowercase(), id.to_lowercase());
    let (x, y, r) = match (number(&p, "RA"), number(&p, "DEC"), number(&p, "SR")) {
        (Ok(x), Ok(y), Ok(r)) => (x, y, r),
        (Err(m), ..) | (_, Err(m), _) | (.., Err(m)) => return scs_error(&m),
    };
    if !(-90.0..=90.0).contains(&y) {
        return scs_error(&format!("DEC={y} is outside -90..90"));
    }
    if !(0.0..=MAX_SR).contains(&r) {
        return scs_error(&format!("SR={r} must be between 0 and {MAX_SR} degrees"));
    }
    let verb = p
        .get("VERB")
        .and_then(|v| v.trim().parse::<u8>().ok())
        .unwrap_or(2);
    let columns = if verb == 1 {
        format!("{id}, {ra}, {dec}")
    } else {
        "*".to_string()
    };
    let x = x.rem_euclid(360.0);
    let query = format!(
        "SELECT {columns} FROM {} WHERE CONTAINS(POINT('ICRS', {ra}, {dec}), CIRCLE('ICRS', {x}, {y}, {r})) = 1",
        info.record.qualified_name()
    );
    let req = QueryRequest {
        query,
        format: OutputFormat::VoTable,
        maxrec: tap.limits.max_maxrec,
        run_id: None,
        links: None,
    };
    let turn = match tap.sync_turn(&client).await {
        Ok(t) => t,
        Err(b) => return busy(&b),
    };
    let secs = tap.limits.sync_duration;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    let stream = match tokio::time::timeout_at(
        deadline,
        start_query(&tap.czar, &req, &czar::QueryContext::all()),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return scs_error(&e.to_string()),
        Err(_) => return scs_error(&format!("the search ran longer than the limit of {secs} s")),
    };
    // The SCS UCDs on the id and position columns.
    let fields: Vec<Field> = stream
        .schema()
        .fields()
        .iter()
        .map(|f| {
            let ucd = match f.name() {
                n if *n == id => Some("ID_MAIN"),
                n if *n == ra => Some("POS_EQ_RA_MAIN"),
                n if *n == dec => Some("POS_EQ_DEC_MAIN"),
                _ => None,
            };
            let mut meta = f.metadata().clone();
            if let Some(u) = ucd {
                meta.insert("ucd".into(), u.into());
            }
            f.as_ref().clone().with_metadata(meta)
        })
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let relabel = schema.clone();
    let batches = stream.map(move |b| {
        b.and_then(|b| {
            RecordBatch::try_new(relabel.clone(), b.columns().to_vec()).map_err(Into::into)
        })
    });
    let stream = Box::pin(RecordBatchStreamAdapter::new(schema, batches));
    let deadline = (deadline, secs);
    result_response(
        stream,
        OutputFormat::VoTable,
        req.maxrec,
        Default::default(),
        deadline,
        turn,
        Vec::new(),
        tally.map(|t| t.0),
    )
}
