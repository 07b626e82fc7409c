//! Extractors that decide on the matched route: the job a route names, checked against the caller by
//! [`platform::Platform::job_access`] before the handler runs. A route that names a job takes [`OwnedJob`], so a new
//! one cannot forget the check, and the id is read as the router decoded it (`%6A...` is the same job as `j...`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Path};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use platform::access::JobAccess;
use platform::jobs::Job;

use crate::auth::Caller;
use crate::reply::{error, unauthorized};
use crate::service::Tap;

/// The job of the route's `{id}`, which the caller may see and change. Refused: 404 when there is no such job (it
/// may have been destroyed), 403 for another user's job (UWS 1.1), 401 for an anonymous caller and a named user's
/// job (they may be its owner, not logged in).
pub struct OwnedJob(pub Job);

impl FromRequestParts<Arc<Tap>> for OwnedJob {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, tap: &Arc<Tap>) -> Result<OwnedJob, Response> {
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, tap)
            .await
            .map_err(IntoResponse::into_response)?;
        let id = params.get("id").cloned().unwrap_or_default();
        let job = tap.jobs.get(&id).ok_or_else(|| no_job(&id))?;
        let caller = parts
            .extensions
            .get::<Caller>()
            .cloned()
            .unwrap_or(Caller::Anonymous);
        match tap.job_access(&caller, job.owner.as_deref()) {
            JobAccess::Allowed => Ok(OwnedJob(job)),
            JobAccess::Forbidden => Err(error(
                StatusCode::FORBIDDEN,
                &format!("job {id} belongs to another user"),
            )),
            JobAccess::Unauthenticated => Err(unauthorized(
                &parts.headers,
                &format!("job {id} belongs to a named user: send their token or log in"),
            )),
        }
    }
}

/// 404 for a job id that names no job.
pub(crate) fn no_job(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        &format!("no job {id} (it may have been destroyed)"),
    )
}
