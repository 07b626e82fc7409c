//! `/tap/permissions/S.T` (cadctap's `permission`): who else may read a user table, as `public=` and `r-group=`
//! lines.

use super::*;

/// A group named by URI (`ivo://authority/gms?GROUP`) or plainly.
pub(super) fn group_of(text: &str) -> Result<String, String> {
    let name = text
        .rsplit(['?', '#'])
        .next()
        .unwrap_or(text)
        .trim()
        .to_string();
    if metastore::accounts::valid_name(&name) {
        Ok(name)
    } else {
        Err(format!(
            "{text:?} names no group (ivo://.../gms?GROUP or GROUP)"
        ))
    }
}

/// The groups a `r-group`/`rw-group` value names (space- or comma-separated), sorted, each once.
fn groups_of(value: &str) -> Result<Vec<String>, String> {
    let mut groups = value
        .split([' ', ','])
        .filter(|g| !g.is_empty())
        .map(group_of)
        .collect::<Result<Vec<_>, _>>()?;
    groups.sort();
    groups.dedup();
    Ok(groups)
}

pub(super) fn permissions_text(table: &str, grant: &Grant) -> String {
    let space = table.split('.').next().and_then(Space::of);
    let owner = match space {
        Some(Space::User(u)) => format!("owner={u}\n"),
        Some(Space::Group(g)) => format!("owner-group={g}\n"),
        None => String::new(),
    };
    let uris = |groups: &[String]| {
        groups
            .iter()
            .map(|g| format!("ivo://skyshard/gms?{g}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!(
        "{owner}public={}\nr-group={}\nrw-group={}\n",
        grant.public,
        uris(&grant.groups),
        uris(&grant.write_groups)
    )
}

/// `GET /tap/permissions/S.T`: who may read it.
pub(crate) async fn permissions(
    State(tap): State<Arc<Tap>>,
    Extension(caller): Extension<Caller>,
    UrlPath(name): UrlPath<String>,
) -> Response {
    let Some(grant) = tap.grant_of(&caller, &name) else {
        return error(StatusCode::NOT_FOUND, &format!("no user table {name}"));
    };
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        permissions_text(&name.to_ascii_lowercase(), &grant),
    )
        .into_response()
}

/// `POST /tap/permissions/S.T`: `public=true|false` and `r-group=GROUP...` lines (an empty value clears);
/// the owner only.
pub(crate) async fn set_permissions(
    State(tap): State<Arc<Tap>>,
    Extension(caller): Extension<Caller>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let target = match tap.user_table(&caller, &name, Change::Table) {
        Ok(t) => t,
        Err(e) => return refused(&headers, &e),
    };
    let text = String::from_utf8_lossy(&body);
    // What the body sets; what it leaves out stays as it is.
    let (mut public, mut readers, mut writers) = (None, None, None);
    // Form-encoded bodies (a browser, curl -d) are read the same way.
    let pairs: Vec<(String, String)> = if text.contains('\n') || !text.contains('&') {
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect()
    } else {
        form_urlencoded::parse(text.as_bytes())
            .into_owned()
            .collect()
    };
    for (key, value) in pairs {
        match key.to_ascii_lowercase().as_str() {
            "public" => match value.to_ascii_lowercase().as_str() {
                "true" => public = Some(true),
                "false" => public = Some(false),
                other => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        &format!("public={other}: use true or false"),
                    );
                }
            },
            "r-group" | "rw-group" => {
                let groups = match groups_of(&value) {
                    Ok(g) => g,
                    Err(m) => return error(StatusCode::BAD_REQUEST, &m),
                };
                if key.eq_ignore_ascii_case("r-group") {
                    readers = Some(groups);
                } else {
                    writers = Some(groups);
                }
            }
            other => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "{other}: set public=true|false, r-group=GROUP... or rw-group=GROUP..."
                    ),
                );
            }
        }
    }
    let shared = tap.share(&caller, &target, |grant| {
        if let Some(p) = public {
            grant.public = p;
        }
        if let Some(g) = readers {
            grant.groups = g;
        }
        if let Some(g) = writers {
            grant.write_groups = g;
        }
    });
    match shared {
        Ok(grant) => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            permissions_text(&target.qualified, &grant),
        )
            .into_response(),
        Err(e) => refused(&headers, &e),
    }
}
