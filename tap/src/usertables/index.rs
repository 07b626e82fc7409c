//! `POST /tap/table-update`: index jobs (UWS), which check uniqueness when asked and mark the column indexed in
//! TAP_SCHEMA.

use super::*;

/// `POST /tap/table-update` (`table`, `index`, `unique`): a PENDING UWS job; RUN does the work.
pub(crate) async fn table_update(
    State(tap): State<Arc<Tap>>,
    Extension(caller): Extension<Caller>,
    Extension(client): Extension<Client>,
    headers: HeaderMap,
    params: crate::params::Params,
) -> Response {
    let (Some(name), Some(column)) = (params.get("TABLE"), params.get("INDEX")) else {
        return error(
            StatusCode::BAD_REQUEST,
            "table-update needs table (SCHEMA.TABLE) and index (a column name)",
        );
    };
    let unique = match params.get("UNIQUE").map(|u| u.trim().to_ascii_lowercase()) {
        None => false,
        Some(u) if u == "true" => true,
        Some(u) if u == "false" => false,
        Some(u) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("unique={u}: use true or false"),
            );
        }
    };
    let (qualified, _) = match target(&tap, &caller, name, &headers, Change::Rows) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let Some(info) = existing(&tap, &caller, &qualified) else {
        return error(StatusCode::NOT_FOUND, &format!("no table {qualified}"));
    };
    if !info
        .record
        .columns
        .iter()
        .any(|c| c.name.eq_ignore_ascii_case(column))
    {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("{qualified} has no column {column}"),
        );
    }
    let column = info
        .record
        .columns
        .iter()
        .find(|c| c.name.eq_ignore_ascii_case(column))
        .map(|c| c.name.clone())
        .unwrap_or_else(|| column.to_lowercase());
    let work = platform::jobs::JobKind::Index {
        table: qualified,
        column,
        unique,
    };
    match crate::uws::create_pending(&tap, &caller, &client, work) {
        Ok(id) => (
            StatusCode::SEE_OTHER,
            [(
                header::LOCATION,
                format!("{}/tap/async/{id}", crate::reply::base_url(&headers)),
            )],
        )
            .into_response(),
        Err(r) => r,
    }
}
