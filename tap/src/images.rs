//! The image archive's files over HTTP: the whole file (`/images/COLLECTION/OBS_ID.fits`) and its preview
//! (`.png`), SODA cutouts (`/soda/sync`) and DataLink documents (`/datalink/links`). An image is found by its
//! `obs_publisher_did` through an ADQL query over `ivoa.obscore` run as the caller, so what the caller may not see
//! does not exist for them here either.

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;

use crate::auth::{Caller, Client};
use crate::params::Params;
use crate::reply::{base_url, plain};
use crate::service::Tap;
use platform::access::Reader;

/// A body that holds `turn` until it has been sent whole or dropped.
fn held_body(
    chunks: impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static,
    turn: crate::service::Turn,
) -> Body {
    use futures::StreamExt;
    let mut turn = Some(turn);
    Body::from_stream(chunks.chain(futures::stream::poll_fn(move |_| {
        turn.take();
        std::task::Poll::Ready(None)
    })))
}

/// A SODA error: `text/plain`, starting with the fault's name (SODA 1.0 section 5.2).
fn fault(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{kind}: {message}\n"),
    )
        .into_response()
}

/// (collection, obs_id) of the image `did` names, if the caller may see it.
async fn find(tap: &Tap, caller: &Caller, did: &str) -> Result<Option<(String, String)>, String> {
    let adql = format!(
        "SELECT obs_collection, obs_id FROM ivoa.obscore WHERE obs_publisher_did = '{}'",
        did.replace('\'', "''")
    );
    Ok(first_row(tap, caller, &adql).await?.map(|row| (row[0].clone(), row[1].clone())))
}

/// The first row (as text) of an ADQL query run as the caller: what they may not see is not there.
async fn first_row(tap: &Tap, caller: &Caller, adql: &str) -> Result<Option<Vec<String>>, String> {
    let visible = tap.visible_to(Reader::of(caller));
    let query = czar::QueryContext::seeing(visible.as_deref());
    let stream = tap.czar.execute(adql, &query).await.map_err(|e| e.to_string())?;
    let batches: Vec<arrow::record_batch::RecordBatch> =
        stream.try_collect().await.map_err(|e| e.to_string())?;
    Ok(batches.iter().find(|b| b.num_rows() > 0).map(|batch| {
        (0..batch.num_columns())
            .map(|i| arrow::util::display::array_value_to_string(batch.column(i), 0).unwrap_or_default())
            .collect()
    }))
}

/// The file of an image in the data directory, if the names are plain and it is there.
fn file_of(tap: &Tap, collection: &str, obs_id: &str) -> Option<std::path::PathBuf> {
    if !plain(collection) || !plain(obs_id) {
        return None;
    }
    let path = partitioner::layout::images_dir(tap.czar.data_dir())
        .join(collection)
        .join(format!("{obs_id}.fits"));
    path.is_file().then_some(path)
}

/// `/soda/sync`: `ID` and one shape (`CIRCLE`, `POLYGON` or `POS`): the cutout as FITS, 204 when the shape misses.
pub async fn soda_sync(
    State(tap): State<Arc<Tap>>,
    Extension(caller): Extension<Caller>,
    Extension(client): Extension<Client>,
    params: Params,
) -> Response {
    let usage = |m: &str| fault(StatusCode::BAD_REQUEST, "UsageError", m);
    let ids: Vec<&str> = params.all("ID").collect();
    let id = match ids[..] {
        [] => return usage("ID is missing: the obs_publisher_did of an image"),
        [one] => one,
        _ => {
            return fault(
                StatusCode::BAD_REQUEST,
                "MultiValuedParamNotSupported",
                "one ID per request",
            );
        }
    };
    let mut shapes = Vec::new();
    for v in params.all("CIRCLE") {
        shapes.push(format!("CIRCLE {v}"));
    }
    for v in params.all("POLYGON") {
        shapes.push(format!("POLYGON {v}"));
    }
    for v in params.all("POS") {
        shapes.push(v.to_string());
    }
    let shape = match &shapes[..] {
        [] => return usage("a cutout needs CIRCLE, POLYGON or POS"),
        [one] => match images::Shape::parse(one) {
            Ok(s) => s,
            Err(e) => return usage(&e.to_string()),
        },
        _ => {
            return fault(
                StatusCode::BAD_REQUEST,
                "MultiValuedParamNotSupported",
                "one shape (CIRCLE, POLYGON or POS) per request",
            );
        }
    };
    let (collection, obs_id) = match find(&tap, &caller, id).await {
        Ok(Some(found)) => found,
        Ok(None) => return fault(StatusCode::NOT_FOUND, "NotFoundFault", &format!("no image {id}")),
        Err(e) => return fault(StatusCode::SERVICE_UNAVAILABLE, "TransientFault", &e),
    };
    let Some(path) = file_of(&tap, &collection, &obs_id) else {
        return fault(StatusCode::NOT_FOUND, "NotFoundFault", &format!("the file of {id} is not here"));
    };
    // A cutout is held in memory while it is made and sent: it takes one of the caller's sync turns, as a query
    // does, kept by the work (a client that goes away does not free it early) and then by the body until its last
    // byte.
    let turn = match tap.sync_turn(&client).await {
        Ok(t) => t,
        Err(b) => return crate::reply::busy(&b),
    };
    let cut = tokio::task::spawn_blocking(move || {
        let made = (|| -> Result<Option<Vec<u8>>, images::ImageError> {
            let image = images::Image::open(&path)?;
            let Some(c) = image.bounds(&shape) else {
                return Ok(None);
            };
            let mut out = Vec::new();
            image
                .write_cutout(c, &mut out)
                .map_err(|e| images::ImageError::Io(path.clone(), e))?;
            Ok(Some(out))
        })();
        (made, turn)
    })
    .await;
    match cut {
        Ok((Ok(Some(bytes)), turn)) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/fits".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{obs_id}-cutout.fits\""),
                ),
            ],
            held_body(futures::stream::iter([Ok(bytes::Bytes::from(bytes))]), turn),
        )
            .into_response(),
        Ok((Ok(None), _)) => StatusCode::NO_CONTENT.into_response(),
        Ok((Err(e), _)) => {
            tracing::error!(event = "cutout", "cutting {id}: {e}");
            fault(StatusCode::INTERNAL_SERVER_ERROR, "FatalFault", "the image could not be read")
        }
        Err(_) => fault(StatusCode::INTERNAL_SERVER_ERROR, "FatalFault", "the cutout failed"),
    }
}

/// The longest side of a DataLink preview, in pixels.
const PREVIEW_SIDE: u64 = 512;

/// The preview of an image (PNG), made once and kept beside the images (`images/.previews/COLLECTION/OBS_ID.png`,
/// a name no collection can have) until the image file is newer than it.
fn preview_of(path: &std::path::Path, cache: &std::path::Path) -> Result<Vec<u8>, String> {
    let image_time = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    if let Ok(m) = std::fs::metadata(cache)
        && m.modified().ok() >= image_time
        && let Ok(bytes) = std::fs::read(cache)
    {
        return Ok(bytes);
    }
    let png = images::Image::open(path)
        .and_then(|i| i.preview_png(PREVIEW_SIDE))
        .map_err(|e| e.to_string())?;
    // Kept if it can be (written aside, then renamed: a reader never sees half a file); served either way.
    if let Some(dir) = cache.parent()
        && std::fs::create_dir_all(dir).is_ok()
    {
        let aside = cache.with_extension(format!("png.{}", std::process::id()));
        if std::fs::write(&aside, &png).is_ok() && std::fs::rename(&aside, cache).is_err() {
            let _ = std::fs::remove_file(&aside);
        }
    }
    Ok(png)
}

/// `/images/COLLECTION/FILE`: a whole image file (`OBS_ID.fits`) or its preview (`OBS_ID.png`), for a caller who may
/// see its record.
pub async fn download(
    State(tap): State<Arc<Tap>>,
    Extension(caller): Extension<Caller>,
    Extension(client): Extension<Client>,
    UrlPath((collection, file)): UrlPath<(String, String)>,
) -> Response {
    let not_found = || fault(StatusCode::NOT_FOUND, "NotFoundFault", "no such image");
    let (obs_id, preview) = match (file.strip_suffix(".fits"), file.strip_suffix(".png")) {
        (Some(id), _) => (id, false),
        (_, Some(id)) => (id, true),
        _ => return not_found(),
    };
    if !plain(&collection) || !plain(obs_id) {
        return not_found();
    }
    // Seen through the caller's eyes: the record must be visible to them.
    let adql = format!(
        "SELECT obs_publisher_did FROM ivoa.obscore WHERE obs_collection = '{}' AND obs_id = '{}'",
        collection.replace('\'', "''"),
        obs_id.replace('\'', "''")
    );
    let seen = matches!(first_row(&tap, &caller, &adql).await, Ok(Some(_)));
    let Some(path) = seen.then(|| file_of(&tap, &collection, obs_id)).flatten() else {
        return not_found();
    };
    let turn = match tap.sync_turn(&client).await {
        Ok(t) => t,
        Err(b) => return crate::reply::busy(&b),
    };
    if preview {
        let cache = partitioner::layout::images_dir(tap.czar.data_dir())
            .join(".previews")
            .join(&collection)
            .join(format!("{obs_id}.png"));
        // Made under the caller's turn (reading a large image is their work), off the runtime's threads.
        let made = tokio::task::spawn_blocking(move || (preview_of(&path, &cache), turn)).await;
        return match made {
            Ok((Ok(png), _)) => (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "image/png"),
                    (header::CACHE_CONTROL, "private, max-age=3600"),
                ],
                png,
            )
                .into_response(),
            Ok((Err(e), _)) => {
                tracing::error!(event = "preview", "previewing {collection}/{obs_id}: {e}");
                fault(StatusCode::INTERNAL_SERVER_ERROR, "FatalFault", "the image could not be read")
            }
            Err(_) => fault(StatusCode::INTERNAL_SERVER_ERROR, "FatalFault", "the preview failed"),
        };
    }
    // Streamed in pieces, the turn held by the body until its last byte (or until the client goes).
    match tokio::fs::File::open(&path).await {
        Ok(opened) => {
            let length = opened.metadata().await.map_or(0, |m| m.len());
            let chunks = crate::files::chunks(opened);
            (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "application/fits".to_string()),
                    (header::CONTENT_LENGTH, length.to_string()),
                    (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{file}\"")),
                ],
                held_body(chunks, turn),
            )
                .into_response()
        }
        Err(_) => not_found(),
    }
}

/// The most IDs one DataLink request may name.
const MAX_LINK_IDS: usize = 100;

/// `/datalink/links?ID=...`: for each ID, `#this` (the file) and `#cutout` (SODA, described by the service
/// descriptor that follows the results), or an error row for an ID that names no image the caller may see.
pub async fn links(
    State(tap): State<Arc<Tap>>,
    Extension(caller): Extension<Caller>,
    Extension(client): Extension<Client>,
    headers: HeaderMap,
    params: Params,
) -> Response {
    let base = base_url(&headers);
    // Control characters have no place in an identifier (nor in XML 1.0): dropped.
    let ids: Vec<String> = params
        .all("ID")
        .map(|id| id.chars().filter(|c| !c.is_control()).collect())
        .collect();
    if ids.is_empty() {
        return crate::reply::error(StatusCode::BAD_REQUEST, "ID is missing: the obs_publisher_did of an image");
    }
    if ids.len() > MAX_LINK_IDS {
        return crate::reply::error(
            StatusCode::BAD_REQUEST,
            &format!("at most {MAX_LINK_IDS} IDs per request ({} given)", ids.len()),
        );
    }
    // Each ID is a query: the request takes one of the caller's sync turns.
    let _turn = match tap.sync_turn(&client).await {
        Ok(t) => t,
        Err(b) => return crate::reply::busy(&b),
    };
    let esc = votable::write::xml_escape;
    let mut rows = String::new();
    for id in &ids {
        match find(&tap, &caller, id).await {
            Ok(Some((collection, obs_id))) => {
                let size = file_of(&tap, &collection, &obs_id)
                    .and_then(|p| std::fs::metadata(p).ok())
                    .map_or(0, |m| m.len());
                rows.push_str(&format!(
                    "<TR><TD>{}</TD><TD>{}</TD><TD></TD><TD></TD><TD>#this</TD><TD>the whole image</TD><TD>application/fits</TD><TD>{size}</TD></TR>\n",
                    esc(id),
                    esc(&format!("{base}/images/{collection}/{obs_id}.fits")),
                ));
                rows.push_str(&format!(
                    "<TR><TD>{}</TD><TD>{}</TD><TD></TD><TD></TD><TD>#preview</TD><TD>a preview of the image (PNG, at most {PREVIEW_SIDE} pixels a side, asinh stretch)</TD><TD>image/png</TD><TD></TD></TR>\n",
                    esc(id),
                    esc(&format!("{base}/images/{collection}/{obs_id}.png")),
                ));
                rows.push_str(&format!(
                    "<TR><TD>{}</TD><TD></TD><TD>soda</TD><TD></TD><TD>#cutout</TD><TD>a cutout of the image (SODA)</TD><TD>application/fits</TD><TD></TD></TR>\n",
                    esc(id)
                ));
            }
            Ok(None) => rows.push_str(&format!(
                "<TR><TD>{}</TD><TD></TD><TD></TD><TD>NotFoundFault: no image {}</TD><TD>#this</TD><TD></TD><TD></TD><TD></TD></TR>\n",
                esc(id),
                esc(id)
            )),
            Err(e) => rows.push_str(&format!(
                "<TR><TD>{}</TD><TD></TD><TD></TD><TD>TransientFault: {}</TD><TD>#this</TD><TD></TD><TD></TD><TD></TD></TR>\n",
                esc(id),
                esc(&e)
            )),
        }
    }
    let body = format!(
        r##"<?xml version="1.0" encoding="UTF-8"?>
<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<RESOURCE type="results">
<INFO name="QUERY_STATUS" value="OK"/>
<INFO name="standardID" value="ivo://ivoa.net/std/DataLink#links-1.1"/>
<TABLE>
<FIELD name="ID" ID="id" datatype="char" arraysize="*" ucd="meta.id;meta.main"/>
<FIELD name="access_url" datatype="char" arraysize="*" ucd="meta.ref.url"/>
<FIELD name="service_def" datatype="char" arraysize="*" ucd="meta.ref"/>
<FIELD name="error_message" datatype="char" arraysize="*" ucd="meta.code.error"/>
<FIELD name="semantics" datatype="char" arraysize="*" ucd="meta.code"/>
<FIELD name="description" datatype="char" arraysize="*" ucd="meta.note"/>
<FIELD name="content_type" datatype="char" arraysize="*" ucd="meta.code.mime"/>
<FIELD name="content_length" datatype="long" unit="byte" ucd="phys.size;meta.file"/>
<DATA><TABLEDATA>
{rows}</TABLEDATA></DATA>
</TABLE>
</RESOURCE>
<RESOURCE type="meta" utype="adhoc:service" ID="soda">
<PARAM name="standardID" datatype="char" arraysize="*" value="ivo://ivoa.net/std/SODA#sync-1.0"/>
<PARAM name="accessURL" datatype="char" arraysize="*" value="{soda}"/>
<GROUP name="inputParams">
<PARAM name="ID" datatype="char" arraysize="*" ucd="meta.id;meta.main" value="" ref="id">
<DESCRIPTION>The obs_publisher_did of the image</DESCRIPTION>
</PARAM>
<PARAM name="CIRCLE" datatype="double" arraysize="3" xtype="circle" unit="deg" ucd="obs.field" value="">
<DESCRIPTION>A circle (ra dec radius) the cutout holds</DESCRIPTION>
</PARAM>
<PARAM name="POLYGON" datatype="double" arraysize="*" xtype="polygon" unit="deg" ucd="obs.field" value="">
<DESCRIPTION>A polygon (ra dec ...) the cutout holds</DESCRIPTION>
</PARAM>
<PARAM name="POS" datatype="char" arraysize="*" ucd="obs.field" value="">
<DESCRIPTION>CIRCLE, RANGE or POLYGON as SODA writes them</DESCRIPTION>
</PARAM>
</GROUP>
</RESOURCE>
</VOTABLE>
"##,
        soda = esc(&format!("{base}/soda/sync")),
    );
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/x-votable+xml;content=datalink",
        )],
        body,
    )
        .into_response()
}
