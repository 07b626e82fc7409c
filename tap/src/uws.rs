//! UWS 1.1 async jobs at `/tap/async`: creating, listing, running, aborting and deleting jobs, and their fields
//! (phase, quote, destruction, executionduration, error, parameters, results, owner). The records live in
//! [`platform::jobs`]. ABORT and DELETE drop the running query, which ends its Flight streams and so the work on the
//! workers.
//!
//! Why one long module: the handlers of UWS's one resource tree (UWS 1.1 section 2.2) share their helpers (job
//! documents, phase changes, parameter checks); split by resource they would only import each other.

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use votable::write::xml_escape;

use crate::async_query::part_file;
use crate::auth::{Caller, Client};
use crate::extract::{OwnedJob, no_job};
use crate::output::OutputFormat;
use crate::params::Params;
use crate::reply::{base_url, busy, error};
use crate::service::Tap;
use platform::jobs::{Job, JobKind, Phase, iso, parse_iso};

pub fn routes() -> Router<Arc<Tap>> {
    Router::new()
        .route("/tap/async", get(list).post(create))
        .route(
            "/tap/async/{id}",
            get(job).post(post_job).delete(delete_job),
        )
        .route("/tap/async/{id}/{field}", get(job_field).post(post_field))
        .route("/tap/async/{id}/results/result", get(result))
}

fn xml(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

fn see_other(headers: &HeaderMap, path: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, format!("{}{path}", base_url(headers)))],
    )
        .into_response()
}

const UWS_NS: &str = "xmlns:uws=\"http://www.ivoa.net/xml/UWS/v1.0\" xmlns:xlink=\"http://www.w3.org/1999/xlink\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"";

/// Parameters that control the job rather than the query.
const CONTROL: [&str; 5] = [
    "PHASE",
    "ACTION",
    "DESTRUCTION",
    "EXECUTIONDURATION",
    "WAIT",
];

async fn list(
    State(tap): State<Arc<Tap>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    p: Params,
) -> Response {
    let phases: Vec<Phase> = p.all("PHASE").filter_map(Phase::parse).collect();
    let after = p.get("AFTER").and_then(parse_iso);
    let mut jobs: Vec<Job> = listed_to(&tap, &caller)
        .into_iter()
        .filter(|j| phases.is_empty() || phases.contains(&j.phase))
        .filter(|j| after.is_none_or(|a| j.creation > a))
        .collect();
    if let Some(last) = p.get("LAST").and_then(|l| l.trim().parse::<usize>().ok()) {
        jobs.truncate(last);
    }
    let base = base_url(&headers);
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<uws:jobs {UWS_NS} version=\"1.1\">\n"
    );
    for j in jobs {
        out.push_str(&format!(
            "<uws:jobref id=\"{0}\" xlink:href=\"{base}/tap/async/{0}\">\n<uws:phase>{1}</uws:phase>\n",
            j.id,
            j.phase.name()
        ));
        if let Some(r) = &j.run_id {
            out.push_str(&format!("<uws:runId>{}</uws:runId>\n", xml_escape(r)));
        }
        out.push_str(&format!(
            "<uws:creationTime>{}</uws:creationTime>\n</uws:jobref>\n",
            iso(j.creation)
        ));
    }
    out.push_str("</uws:jobs>\n");
    xml(StatusCode::OK, out)
}

/// The jobs a caller's list shows, newest first. Without accounts every job is everyone's; with them a caller sees
/// their own jobs, and anonymous jobs are listed to nobody (their URL is their key).
pub(crate) fn listed_to(tap: &Tap, caller: &Caller) -> Vec<Job> {
    let everyone = tap.auth.is_none();
    let mut jobs: Vec<Job> = tap
        .jobs
        .list()
        .into_iter()
        .filter(|j| everyone || (j.owner.is_some() && j.owner.as_deref() == caller.user()))
        .collect();
    jobs.sort_by(|a, b| b.creation.cmp(&a.creation));
    jobs
}

async fn create(
    State(tap): State<Arc<Tap>>,
    Extension(caller): Extension<Caller>,
    Extension(client): Extension<Client>,
    tally: Option<Extension<Arc<crate::audit::Tally>>>,
    headers: HeaderMap,
    p: Params,
) -> Response {
    let pending = match tap.new_job(&caller, &client) {
        Ok(job) => job,
        Err(e) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("cannot create the job: {e}"),
            );
        }
    };
    let id = pending.id.clone();
    let dir = tap.jobs.job_dir(&id);
    if let Err(e) = std::fs::create_dir_all(dir.join("uploads")) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("cannot create the job: {e}"),
        );
    }
    let mut parts = Vec::new();
    for (name, content) in &p.parts {
        if let Err(e) = std::fs::write(dir.join("uploads").join(part_file(name)), content) {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("cannot keep the upload: {e}"),
            );
        }
        parts.push(name.clone());
    }
    let mut job = Job {
        run_id: p.get("RUNID").map(String::from),
        parts,
        ..pending
    };
    if let Some(phase) = p.get("PHASE").filter(|v| !v.eq_ignore_ascii_case("RUN")) {
        let _ = std::fs::remove_dir_all(&dir);
        return error(
            StatusCode::BAD_REQUEST,
            &format!("PHASE={phase}: a new job may be given PHASE=RUN, or no PHASE (it waits, PENDING)"),
        );
    }
    if let Err(m) = apply_controls(&tap, &mut job, &p) {
        let _ = std::fs::remove_dir_all(&dir);
        return error(StatusCode::BAD_REQUEST, &m);
    }
    set_params(&mut job, &p);
    if let Some(t) = &tally {
        t.job(&id);
        if let Some(q) = p.get("QUERY") {
            t.query(q);
        }
    }
    if let Err(e) = tap.jobs.put(&job) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("cannot store the job: {e}"),
        );
    }
    if p.get("PHASE")
        .is_some_and(|v| v.eq_ignore_ascii_case("RUN"))
        && let Err(b) = tap.platform.run_job(&id, &client)
    {
        // The job stays PENDING: it can be run later.
        return busy(&b);
    }
    see_other(&headers, &format!("/tap/async/{id}"))
}

fn set_params(job: &mut Job, p: &Params) {
    for (k, v) in &p.pairs {
        if CONTROL.contains(&k.as_str()) {
            continue;
        }
        let k = k.to_lowercase();
        if k == "runid" {
            job.run_id = Some(v.clone());
        }
        job.params.retain(|(name, _)| name != &k);
        job.params.push((k, v.clone()));
    }
}

/// Only a query job's parameters can change: another kind of job does what its creating endpoint checked.
fn parameters_fixed(job: &Job) -> Result<(), Response> {
    match job.work {
        JobKind::Query => Ok(()),
        JobKind::Index { .. } => Err(error(
            StatusCode::BAD_REQUEST,
            "a table-update job's parameters are fixed when it is created: create another job with \
             POST /tap/table-update",
        )),
    }
}

/// DESTRUCTION and EXECUTIONDURATION, checked and capped.
fn apply_controls(tap: &Tap, job: &mut Job, p: &Params) -> Result<(), String> {
    if let Some(d) = p.get("EXECUTIONDURATION") {
        let secs: u64 = d
            .trim()
            .parse()
            .map_err(|_| format!("EXECUTIONDURATION={d} is not a number of seconds"))?;
        // 0 means "no limit" in UWS: the hard limit applies.
        job.duration = if secs == 0 {
            tap.limits.max_duration
        } else {
            secs.min(tap.limits.max_duration)
        };
    }
    if let Some(d) = p.get("DESTRUCTION") {
        let at = parse_iso(d).ok_or_else(|| format!("DESTRUCTION={d} is not an ISO 8601 time"))?;
        job.destruction = at.min(job.creation + tap.limits.max_retention * 1000);
    }
    Ok(())
}

/// The `uws:parameter` elements of a job.
fn parameter_elements(job: &Job) -> String {
    job.params
        .iter()
        .map(|(k, v)| {
            format!(
                "<uws:parameter id=\"{}\">{}</uws:parameter>\n",
                xml_escape(k),
                xml_escape(v)
            )
        })
        .collect()
}

/// The `uws:result` elements of a job (its one result, once it is COMPLETED).
fn result_elements(job: &Job, base: &str) -> String {
    match &job.result {
        Some(r) if job.phase == Phase::Completed => format!(
            "<uws:result id=\"result\" xlink:type=\"simple\" xlink:href=\"{base}/tap/async/{}/results/result\" mime-type=\"{}\" size=\"{}\"/>\n",
            job.id,
            xml_escape(&r.mime),
            r.bytes
        ),
        _ => String::new(),
    }
}

fn job_xml(job: &Job, base: &str) -> String {
    let nil = |tag: &str, v: Option<String>| match v {
        Some(v) => format!("<uws:{tag}>{}</uws:{tag}>\n", xml_escape(&v)),
        None => format!("<uws:{tag} xsi:nil=\"true\"/>\n"),
    };
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<uws:job {UWS_NS} version=\"1.1\">\n<uws:jobId>{}</uws:jobId>\n",
        job.id
    );
    if let Some(r) = &job.run_id {
        out.push_str(&format!("<uws:runId>{}</uws:runId>\n", xml_escape(r)));
    }
    match &job.owner {
        Some(o) => out.push_str(&format!("<uws:ownerId>{}</uws:ownerId>\n", xml_escape(o))),
        None => out.push_str("<uws:ownerId xsi:nil=\"true\"/>\n"),
    }
    out.push_str(&format!("<uws:phase>{}</uws:phase>\n", job.phase.name()));
    out.push_str("<uws:quote xsi:nil=\"true\"/>\n");
    out.push_str(&format!(
        "<uws:creationTime>{}</uws:creationTime>\n",
        iso(job.creation)
    ));
    out.push_str(&nil("startTime", job.start.map(iso)));
    out.push_str(&nil("endTime", job.end.map(iso)));
    out.push_str(&format!(
        "<uws:executionDuration>{}</uws:executionDuration>\n<uws:destruction>{}</uws:destruction>\n<uws:parameters>\n",
        job.duration,
        iso(job.destruction)
    ));
    out.push_str(&parameter_elements(job));
    out.push_str("</uws:parameters>\n<uws:results>\n");
    out.push_str(&result_elements(job, base));
    out.push_str("</uws:results>\n");
    if let Some(e) = &job.error {
        out.push_str(&format!(
            "<uws:errorSummary type=\"fatal\" hasDetail=\"true\">\n<uws:message>{}</uws:message>\n</uws:errorSummary>\n",
            xml_escape(e)
        ));
    }
    if let Some(r) = &job.result {
        out.push_str(&format!(
            "<uws:jobInfo><rows>{}</rows><overflow>{}</overflow></uws:jobInfo>\n",
            r.rows, r.overflow
        ));
    }
    out.push_str("</uws:job>\n");
    out
}

/// Blocks for at most `wait` seconds while the job is in `phase` (or any active phase) (UWS 1.1 section 2.2.1.1).
async fn wait_for(tap: &Tap, id: &str, wait: i64, phase: Option<Phase>) -> Option<Job> {
    let limit = if wait < 0 { 60 } else { wait.min(60) } as u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(limit);
    let mut changes = tap.jobs.changed.subscribe();
    loop {
        let job = tap.jobs.get(id)?;
        let blocking = job.phase.active() && phase.is_none_or(|p| p == job.phase);
        if !blocking {
            return Some(job);
        }
        match tokio::time::timeout_at(deadline, changes.changed()).await {
            Ok(Ok(())) => continue,
            _ => return tap.jobs.get(id),
        }
    }
}

async fn job(
    State(tap): State<Arc<Tap>>,
    OwnedJob(job): OwnedJob,
    headers: HeaderMap,
    p: Params,
) -> Response {
    let id = job.id;
    let job = match p.get("WAIT").map(|w| w.trim().parse::<i64>()) {
        Some(Ok(wait)) => {
            let phase = p.get("PHASE").and_then(Phase::parse);
            wait_for(&tap, &id, wait, phase).await
        }
        Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "WAIT must be a number of seconds"),
        None => tap.jobs.get(&id),
    };
    match job {
        Some(j) => xml(StatusCode::OK, job_xml(&j, &base_url(&headers))),
        None => no_job(&id),
    }
}

async fn delete_job(
    State(tap): State<Arc<Tap>>,
    OwnedJob(job): OwnedJob,
    headers: HeaderMap,
) -> Response {
    tap.jobs.delete(&job.id);
    see_other(&headers, "/tap/async")
}

/// Applies a PHASE change (RUN or ABORT).
fn change_phase(tap: &Arc<Tap>, id: &str, phase: &str, client: &Client) -> Result<(), Response> {
    let job = tap.jobs.get(id).ok_or_else(|| no_job(id))?;
    match phase.trim().to_uppercase().as_str() {
        "RUN" => {
            if job.phase != Phase::Pending {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "the job is {}: only a PENDING job can be run",
                        job.phase.name()
                    ),
                ));
            }
            tap.platform.run_job(id, client).map_err(|b| busy(&b))?;
        }
        "ABORT" => {
            if job.phase.active() {
                tap.abort_job(id);
            }
        }
        other => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                &format!("PHASE={other}: use PHASE=RUN or PHASE=ABORT"),
            ));
        }
    }
    Ok(())
}

async fn post_job(
    State(tap): State<Arc<Tap>>,
    OwnedJob(job): OwnedJob,
    Extension(client): Extension<Client>,
    headers: HeaderMap,
    p: Params,
) -> Response {
    let id = job.id.clone();
    if p.get("ACTION")
        .is_some_and(|a| a.eq_ignore_ascii_case("DELETE"))
    {
        tap.jobs.delete(&id);
        return see_other(&headers, "/tap/async");
    }
    let mut updated = job.clone();
    if let Err(m) = apply_controls(&tap, &mut updated, &p) {
        return error(StatusCode::BAD_REQUEST, &m);
    }
    let has_query_params = p.pairs.iter().any(|(k, _)| !CONTROL.contains(&k.as_str()));
    if has_query_params {
        if let Err(r) = parameters_fixed(&job) {
            return r;
        }
        if job.phase != Phase::Pending {
            return error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "the job is {}: parameters can change only while it is PENDING",
                    job.phase.name()
                ),
            );
        }
        set_params(&mut updated, &p);
    }
    let (duration, destruction, params, run_id) = (
        updated.duration,
        updated.destruction,
        updated.params,
        updated.run_id,
    );
    tap.jobs.update(&id, |j| {
        j.duration = duration;
        j.destruction = destruction;
        j.params = params;
        j.run_id = run_id;
    });
    if let Some(phase) = p.get("PHASE")
        && let Err(r) = change_phase(&tap, &id, phase, &client)
    {
        return r;
    }
    see_other(&headers, &format!("/tap/async/{id}"))
}

async fn job_field(
    OwnedJob(job): OwnedJob,
    UrlPath((_, field)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let base = base_url(&headers);
    match field.as_str() {
        "phase" => text(job.phase.name().to_string()),
        "executionduration" => text(job.duration.to_string()),
        "destruction" => text(iso(job.destruction)),
        "quote" => text(String::new()),
        "owner" => text(job.owner.clone().unwrap_or_default()),
        "runId" | "runid" => text(job.run_id.unwrap_or_default()),
        "error" => match &job.error {
            Some(m) => (
                [(header::CONTENT_TYPE, "application/x-votable+xml")],
                crate::format::error_votable(m),
            )
                .into_response(),
            None => error(StatusCode::NOT_FOUND, "the job has no error"),
        },
        "parameters" => {
            let mut out =
                format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<uws:parameters {UWS_NS}>\n");
            out.push_str(&parameter_elements(&job));
            out.push_str("</uws:parameters>\n");
            xml(StatusCode::OK, out)
        }
        "results" => {
            let mut out =
                format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<uws:results {UWS_NS}>\n");
            out.push_str(&result_elements(&job, &base));
            out.push_str("</uws:results>\n");
            xml(StatusCode::OK, out)
        }
        other => error(StatusCode::NOT_FOUND, &format!("a job has no {other}")),
    }
}

async fn post_field(
    State(tap): State<Arc<Tap>>,
    OwnedJob(job): OwnedJob,
    UrlPath((_, field)): UrlPath<(String, String)>,
    Extension(client): Extension<Client>,
    headers: HeaderMap,
    p: Params,
) -> Response {
    let id = job.id.clone();
    match field.as_str() {
        "phase" => {
            let Some(phase) = p.get("PHASE") else {
                return error(StatusCode::BAD_REQUEST, "PHASE is missing");
            };
            if let Err(r) = change_phase(&tap, &id, phase, &client) {
                return r;
            }
        }
        "executionduration" | "destruction" => {
            let key = field.to_uppercase();
            let Some(v) = p.get(&key) else {
                return error(StatusCode::BAD_REQUEST, &format!("{key} is missing"));
            };
            let mut updated = job.clone();
            let only = Params {
                pairs: vec![(key, v.to_string())],
                parts: Vec::new(),
            };
            if let Err(m) = apply_controls(&tap, &mut updated, &only) {
                return error(StatusCode::BAD_REQUEST, &m);
            }
            tap.jobs.update(&id, |j| {
                j.duration = updated.duration;
                j.destruction = updated.destruction;
            });
        }
        "parameters" => {
            if let Err(r) = parameters_fixed(&job) {
                return r;
            }
            if job.phase != Phase::Pending {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "the job is {}: parameters can change only while it is PENDING",
                        job.phase.name()
                    ),
                );
            }
            let mut updated = job.clone();
            set_params(&mut updated, &p);
            tap.jobs.update(&id, |j| {
                j.params = updated.params;
                j.run_id = updated.run_id;
            });
        }
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("a job's {other} cannot be changed"),
            );
        }
    }
    see_other(&headers, &format!("/tap/async/{id}"))
}

async fn result(State(tap): State<Arc<Tap>>, OwnedJob(job): OwnedJob) -> Response {
    let id = job.id.clone();
    let Some(r) = job.result.filter(|_| job.phase == Phase::Completed) else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("the job is {}: it has no result", job.phase.name()),
        );
    };
    let path = tap.jobs.job_dir(&id).join(&r.file);
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) => return error(StatusCode::NOT_FOUND, &format!("the result is gone: {e}")),
    };
    let stream = futures::stream::unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 256 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<Bytes, std::io::Error>(Bytes::from(buf)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    let mut response = (
        [(header::CONTENT_TYPE, r.mime.clone())],
        Body::from_stream(stream),
    )
        .into_response();
    if r.mime == OutputFormat::Parquet.mime()
        && let Ok(v) = "attachment; filename=\"result.parquet\"".parse()
    {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, v);
    }
    response
}
