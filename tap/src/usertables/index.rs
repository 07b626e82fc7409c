//! `POST /tap/table-update`: index jobs (UWS), which check uniqueness when asked and mark the column indexed in
//! TAP_SCHEMA.

use super::*;

/// `POST /tap/table-update` (`table`, `index`, `unique`): a PENDING UWS job; RUN does the work.
pub(crate) async fn table_update(
    State(tap): State<Arc<Tap>>,
    Extension(caller): Extension<Caller>,
    Extension(client): Extension<crate::auth::Client>,
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
    let created = tap
        .user_table(&caller, name, Change::Rows)
        .and_then(|target| tap.create_index_job(&caller, &client, &target, column, unique));
    match created {
        Ok(id) => (
            StatusCode::SEE_OTHER,
            [(
                header::LOCATION,
                format!("{}/tap/async/{id}", crate::reply::base_url(&headers)),
            )],
        )
            .into_response(),
        Err(e) => refused(&headers, &e),
    }
}
