//! VOSI 1.1 (`/capabilities` with TAPRegExt, `/availability`, `/tables` with `detail=min|max` and
//! `/tables/{name}`) and DALI examples (`/examples`, XHTML with RDFa, queries written for the loaded tables).

use std::sync::Arc;

use adql::CatalogTable;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use czar::ForeignKey;
use votable::write::xml_escape;

use crate::output::FORMATS;
use crate::params::form_urlencoded;
use crate::reply::{base_url, error};
use crate::service::Tap;
use crate::tap_schema;

pub(crate) fn xml(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], body).into_response()
}

/// `/tap`: a short page pointing at the endpoints.
pub async fn root(headers: HeaderMap) -> Response {
    let base = base_url(&headers);
    let body = format!(
        "<!DOCTYPE html>\n<html><head><title>skyshard TAP service</title></head><body>\n<h1>skyshard TAP service</h1>\n<p>IVOA TAP 1.1 endpoint: <code>{base}/tap</code> (use it in TOPCAT or <code>pyvo.dal.TAPService(\"{base}/tap\")</code>).</p>\n<ul><li><a href=\"tap/capabilities\">capabilities</a></li><li><a href=\"tap/tables\">tables</a></li><li><a href=\"tap/examples\">examples</a></li><li><a href=\"tap/availability\">availability</a></li><li><a href=\"tap/async\">async jobs</a></li></ul>\n</body></html>\n"
    );
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

pub async fn availability(State(tap): State<Arc<Tap>>) -> Response {
    let (up, workers) = tap
        .czar
        .cluster()
        .up(std::time::Duration::from_secs(2))
        .await;
    let available = up > 0;
    let note = format!("{up} of {workers} workers answer");
    xml(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<vosi:availability xmlns:vosi=\"http://www.ivoa.net/xml/VOSIAvailability/v1.0\">\n  <vosi:available>{available}</vosi:available>\n  <vosi:note>{note}</vosi:note>\n</vosi:availability>\n"
    ))
}

/// ADQL features beyond the core that this service implements, by TAPRegExt feature type.
const FEATURES: &[(&str, &[&str])] = &[
    (
        "ivo://ivoa.net/std/TAPRegExt#features-adqlgeo",
        &[
            "POINT",
            "CIRCLE",
            "BOX",
            "POLYGON",
            "REGION",
            "CONTAINS",
            "INTERSECTS",
            "AREA",
            "CENTROID",
            "COORD1",
            "COORD2",
            "COORDSYS",
            "DISTANCE",
        ],
    ),
    (
        "ivo://ivoa.net/std/TAPRegExt#features-adql-string",
        &["LOWER", "UPPER", "ILIKE"],
    ),
    (
        "ivo://ivoa.net/std/TAPRegExt#features-adql-sets",
        &["UNION", "EXCEPT", "INTERSECT"],
    ),
    (
        "ivo://ivoa.net/std/TAPRegExt#features-adql-common-table",
        &["WITH"],
    ),
    ("ivo://ivoa.net/std/TAPRegExt#features-adql-type", &["CAST"]),
    (
        "ivo://ivoa.net/std/TAPRegExt#features-adql-unit",
        &["IN_UNIT"],
    ),
    (
        "ivo://ivoa.net/std/TAPRegExt#features-adql-offset",
        &["OFFSET"],
    ),
    (
        "ivo://ivoa.net/std/TAPRegExt#features-adql-bitwise",
        &["BIT_AND", "BIT_OR", "BIT_XOR", "BIT_NOT"],
    ),
];

const UDFS: &[(&str, &str)] = &[
    (
        "ivo_healpix_index(hpxOrder INTEGER, ra DOUBLE PRECISION, dec DOUBLE PRECISION) -> BIGINT",
        "The nested HEALPix index of the cell of order hpxOrder that contains (ra, dec) in degrees.",
    ),
    (
        "ivo_healpix_center(hpxOrder INTEGER, hpxIndex BIGINT) -> POINT",
        "The center of the nested HEALPix cell hpxIndex of order hpxOrder.",
    ),
];

/// The `securityMethod`s of an interface under the service's policy (SSO 2.0): anonymous unless identity is
/// required, and with accounts HTTP Basic, the login cookie and bearer tokens.
fn security(tap: &Tap) -> &'static str {
    use crate::auth::Policy;
    match tap.auth.as_ref().map(|a| a.policy) {
        None | Some(Policy::None) => "",
        Some(Policy::Optional) => concat!(
            "<securityMethod/>\n",
            "<securityMethod standardID=\"ivo://ivoa.net/sso#BasicAA\"/>\n",
            "<securityMethod standardID=\"ivo://ivoa.net/sso#cookie\"/>\n",
            "<securityMethod standardID=\"ivo://ivoa.net/sso#OAuth\"/>\n"
        ),
        Some(Policy::Required) => concat!(
            "<securityMethod standardID=\"ivo://ivoa.net/sso#BasicAA\"/>\n",
            "<securityMethod standardID=\"ivo://ivoa.net/sso#cookie\"/>\n",
            "<securityMethod standardID=\"ivo://ivoa.net/sso#OAuth\"/>\n"
        ),
    }
}

pub async fn capabilities(State(tap): State<Arc<Tap>>, headers: HeaderMap) -> Response {
    let base = format!("{}/tap", base_url(&headers));
    let secured = security(&tap);
    let l = &tap.limits;
    let mut out = String::new();
    out.push_str(concat!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
        "<vosi:capabilities xmlns:vosi=\"http://www.ivoa.net/xml/VOSICapabilities/v1.0\"",
        " xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"",
        " xmlns:vr=\"http://www.ivoa.net/xml/VOResource/v1.0\"",
        " xmlns:vs=\"http://www.ivoa.net/xml/VODataService/v1.1\"",
        " xmlns:tr=\"http://www.ivoa.net/xml/TAPRegExt/v1.0\">\n",
    ));
    out.push_str(&format!(
        "<capability standardID=\"ivo://ivoa.net/std/TAP\" xsi:type=\"tr:TableAccess\">\n<interface xsi:type=\"vs:ParamHTTP\" role=\"std\" version=\"1.1\">\n<accessURL use=\"base\">{base}</accessURL>\n{secured}</interface>\n"
    ));
    // ObsCore's data model, when the archive has images (ivoa.obscore): TAPRegExt puts dataModel before language.
    if tap
        .czar
        .tables()
        .iter()
        .any(|t| t.record.qualified_name().eq_ignore_ascii_case("ivoa.obscore"))
    {
        out.push_str("<dataModel ivo-id=\"ivo://ivoa.net/std/ObsCore#core-1.1\">ObsCore-1.1</dataModel>\n");
    }
    out.push_str("<language>\n<name>ADQL</name>\n<version ivo-id=\"ivo://ivoa.net/std/ADQL#v2.0\">2.0</version>\n<version ivo-id=\"ivo://ivoa.net/std/ADQL#v2.1\">2.1</version>\n<description>ADQL 2.1 with its optional features; geometry is exact on the sphere.</description>\n");
    out.push_str("<languageFeatures type=\"ivo://ivoa.net/std/TAPRegExt#features-udf\">\n");
    for (form, description) in UDFS {
        out.push_str(&format!(
            "<feature><form>{}</form><description>{}</description></feature>\n",
            xml_escape(form),
            xml_escape(description)
        ));
    }
    out.push_str("</languageFeatures>\n");
    for (kind, forms) in FEATURES {
        out.push_str(&format!("<languageFeatures type=\"{kind}\">\n"));
        for f in *forms {
            out.push_str(&format!("<feature><form>{f}</form></feature>\n"));
        }
        out.push_str("</languageFeatures>\n");
    }
    out.push_str("</language>\n");
    for (format, mime, aliases) in FORMATS {
        let id = match format {
            crate::output::OutputFormat::VoTable => {
                " ivo-id=\"ivo://ivoa.net/std/TAPRegExt#output-votable-td\""
            }
            crate::output::OutputFormat::VoTableBinary2 => {
                " ivo-id=\"ivo://ivoa.net/std/TAPRegExt#output-votable-binary2\""
            }
            _ => "",
        };
        out.push_str(&format!(
            "<outputFormat{id}>\n<mime>{}</mime>\n",
            xml_escape(mime)
        ));
        for a in aliases.iter().filter(|a| !a.contains('/')) {
            out.push_str(&format!("<alias>{a}</alias>\n"));
        }
        out.push_str("</outputFormat>\n");
    }
    out.push_str("<uploadMethod ivo-id=\"ivo://ivoa.net/std/TAPRegExt#upload-inline\"/>\n");
    out.push_str("<uploadMethod ivo-id=\"ivo://ivoa.net/std/TAPRegExt#upload-http\"/>\n");
    out.push_str(&format!(
        "<retentionPeriod><default>{}</default><hard>{}</hard></retentionPeriod>\n",
        l.default_retention, l.max_retention
    ));
    out.push_str(&format!(
        "<executionDuration><default>{}</default><hard>{}</hard></executionDuration>\n",
        l.default_duration, l.max_duration
    ));
    out.push_str(&format!(
        "<outputLimit><default unit=\"row\">{}</default><hard unit=\"row\">{}</hard></outputLimit>\n",
        l.default_maxrec, l.max_maxrec
    ));
    out.push_str(&format!(
        "<uploadLimit><default unit=\"byte\">{0}</default><hard unit=\"byte\">{0}</hard></uploadLimit>\n",
        l.max_upload_bytes
    ));
    out.push_str("</capability>\n");
    // Capabilities and availability stay anonymous: a client reads them to learn how to log in.
    for (id, path, secured) in [
        ("ivo://ivoa.net/std/VOSI#capabilities", "capabilities", ""),
        ("ivo://ivoa.net/std/VOSI#availability", "availability", ""),
        ("ivo://ivoa.net/std/VOSI#tables-1.1", "tables", secured),
        ("ivo://ivoa.net/std/DALI#examples", "examples", secured),
    ]
    .into_iter()
    .chain(user_table_capabilities(&tap, secured))
    {
        out.push_str(&format!(
            "<capability standardID=\"{id}\">\n<interface xsi:type=\"vs:ParamHTTP\" version=\"1.1\">\n<accessURL use=\"full\">{base}/{path}</accessURL>\n{secured}</interface>\n</capability>\n"
        ));
    }
    out.push_str("</vosi:capabilities>\n");
    xml(out)
}

/// The capabilities of user tables (CADC's youcat layout, which cadctap looks for), when there are accounts.
fn user_table_capabilities<'a>(
    tap: &Tap,
    secured: &'a str,
) -> Vec<(&'static str, &'static str, &'a str)> {
    if tap.auth.is_none() {
        return Vec::new();
    }
    vec![
        (
            "ivo://ivoa.net/std/VOSI#table-load-sync-1.x",
            "load",
            secured,
        ),
        (
            "ivo://ivoa.net/std/VOSI#table-update-async-1.x",
            "table-update",
            secured,
        ),
        (
            "ivo://ivoa.net/std/VOSI#table-permissions-1.x",
            "permissions",
            secured,
        ),
    ]
}

const TABLESET_OPEN: &str = concat!(
    "<vosi:tableset xmlns:vosi=\"http://www.ivoa.net/xml/VOSITables/v1.0\"",
    " xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"",
    " xmlns:vs=\"http://www.ivoa.net/xml/VODataService/v1.1\">\n"
);

fn table_xml(t: &CatalogTable, keys: &[ForeignKey], detail: bool, root: bool) -> String {
    let mut out = if root {
        "<vosi:table xmlns:vosi=\"http://www.ivoa.net/xml/VOSITables/v1.0\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns:vs=\"http://www.ivoa.net/xml/VODataService/v1.1\" type=\"output\">\n".to_string()
    } else {
        "<table type=\"output\">\n".to_string()
    };
    out.push_str(&format!(
        "<name>{}</name>\n",
        xml_escape(&t.qualified_name())
    ));
    if let Some(d) = &t.description {
        out.push_str(&format!("<description>{}</description>\n", xml_escape(d)));
    }
    if detail {
        for c in &t.columns {
            out.push_str("<column>\n");
            out.push_str(&format!(
                "<name>{}</name>\n",
                xml_escape(&tap_schema::column_name(c))
            ));
            for (tag, v) in [
                ("description", &c.description),
                ("unit", &c.unit),
                ("ucd", &c.ucd),
                ("utype", &c.utype),
            ] {
                if let Some(v) = v {
                    out.push_str(&format!("<{tag}>{}</{tag}>\n", xml_escape(v)));
                }
            }
            let (datatype, arraysize) = tap_schema::column_type(c);
            let arraysize = arraysize.map_or(String::new(), |a| format!(" arraysize=\"{a}\""));
            let xtype = c.xtype.as_ref().map_or(String::new(), |x| {
                format!(" extendedType=\"{}\"", xml_escape(x))
            });
            out.push_str(&format!(
                "<dataType xsi:type=\"vs:VOTableType\"{arraysize}{xtype}>{datatype}</dataType>\n"
            ));
            if c.indexed {
                out.push_str("<flag>indexed</flag>\n");
            }
            if c.principal {
                out.push_str("<flag>principal</flag>\n");
            }
            out.push_str("</column>\n");
        }
        for k in keys.iter().filter(|k| k.from == t.qualified_name()) {
            out.push_str(&format!(
                "<foreignKey>\n<targetTable>{}</targetTable>\n<fkColumn>\n<fromColumn>{}</fromColumn>\n<targetColumn>{}</targetColumn>\n</fkColumn>\n</foreignKey>\n",
                xml_escape(&k.target),
                xml_escape(&k.from_column),
                xml_escape(&k.target_column)
            ));
        }
    }
    out.push_str(if root {
        "</vosi:table>\n"
    } else {
        "</table>\n"
    });
    out
}

pub async fn tables(
    State(tap): State<Arc<Tap>>,
    axum::Extension(caller): axum::Extension<crate::auth::Caller>,
    RawQuery(q): RawQuery,
) -> Response {
    let visible = tap.visible_to(platform::access::Reader::of(&caller));
    let detail = q
        .as_deref()
        .map(form_urlencoded)
        .unwrap_or_default()
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("detail"))
        .map(|(_, v)| v.to_lowercase());
    let detail = match detail.as_deref() {
        None | Some("max") => true,
        Some("min") => false,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("detail={other}: use detail=min or detail=max"),
            );
        }
    };
    let tables = tap.czar.catalog_tables_for(visible.as_deref());
    let keys = tap.czar.foreign_keys_for(visible.as_deref());
    let mut schemas: Vec<&str> = Vec::new();
    for t in &tables {
        if !schemas.contains(&t.schema.as_str()) {
            schemas.push(&t.schema);
        }
    }
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(TABLESET_OPEN);
    for s in schemas {
        out.push_str(&format!("<schema>\n<name>{}</name>\n", xml_escape(s)));
        for t in tables.iter().filter(|t| t.schema == s) {
            out.push_str(&table_xml(t, &keys, detail, false));
        }
        out.push_str("</schema>\n");
    }
    out.push_str("</vosi:tableset>\n");
    xml(out)
}

pub async fn table(
    State(tap): State<Arc<Tap>>,
    axum::Extension(caller): axum::Extension<crate::auth::Caller>,
    Path(name): Path<String>,
) -> Response {
    let visible = tap.visible_to(platform::access::Reader::of(&caller));
    let found = tap
        .czar
        .catalog_tables_for(visible.as_deref())
        .into_iter()
        .find(|t| t.qualified_name().eq_ignore_ascii_case(&name));
    match found {
        Some(t) => xml(format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{}",
            table_xml(
                &t,
                &tap.czar.foreign_keys_for(visible.as_deref()),
                true,
                true
            )
        )),
        None => error(StatusCode::NOT_FOUND, &format!("no table named {name}")),
    }
}

/// Example queries for the tables this service holds: (id, title, explanation, ADQL).
pub fn example_queries(tap: &Tap) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    out.push((
        "tables".into(),
        "What tables are there".into(),
        "TAP_SCHEMA describes every table and column; this lists the tables with their descriptions.".into(),
        "SELECT table_name, description FROM TAP_SCHEMA.tables ORDER BY table_index".into(),
    ));
    // The operator's catalogs only: user tables are not everyone's to see.
    let infos: Vec<_> = tap
        .czar
        .tables()
        .into_iter()
        .filter(|t| platform::access::Space::of(&t.record.schema).is_none())
        .collect();
    let director = infos
        .iter()
        .find(|t| matches!(t.record.kind, metastore::TableKind::Director { .. }));
    if let Some(d) = director
        && let metastore::TableKind::Director { ra, dec, id } = &d.record.kind
    {
        let t = d.record.qualified_name();
        let (ra, dec, id) = (ra.to_lowercase(), dec.to_lowercase(), id.to_lowercase());
        let r = cone_radius(d.record.rows);
        out.push((
            "cone".into(),
            "A cone search".into(),
            format!("Objects of {t} within {r} degrees of M31, nearest first."),
            format!(
                "SELECT TOP 100 {id}, {ra}, {dec}, DISTANCE(POINT('ICRS', {ra}, {dec}), POINT('ICRS', 10.68, 41.27)) AS dist\nFROM {t}\nWHERE CONTAINS(POINT('ICRS', {ra}, {dec}), CIRCLE('ICRS', 10.68, 41.27, {r})) = 1\nORDER BY dist"
            ),
        ));
        out.push((
            "count".into(),
            "Counting over the whole sky".into(),
            format!("How many objects {t} holds north of the celestial equator."),
            format!("SELECT COUNT(*) AS n FROM {t} WHERE {dec} > 0"),
        ));
        out.push((
            "healpix-density".into(),
            "Object density on a HEALPix grid".into(),
            "Objects per HEALPix order-2 cell, densest first: a full-sky aggregate run on every chunk.".into(),
            format!(
                "SELECT ivo_healpix_index(2, {ra}, {dec}) AS cell, COUNT(*) AS n\nFROM {t}\nGROUP BY cell\nORDER BY n DESC"
            ),
        ));
        out.push((
            "by-id".into(),
            "An object by its id".into(),
            "Looking an object up by its id uses the secondary index and reads one chunk.".into(),
            format!("SELECT * FROM {t} WHERE {id} = 1"),
        ));
        if let Some(child) = infos.iter().find(|c| {
            matches!(&c.record.kind, metastore::TableKind::Child { director, .. } if director.eq_ignore_ascii_case(&t))
        }) && let metastore::TableKind::Child { key, .. } = &child.record.kind
        {
            let c = child.record.qualified_name();
            out.push((
                "join".into(),
                "Objects with their sources".into(),
                format!("A join of {c} with {t} on its key, inside a small box."),
                format!(
                    "SELECT TOP 50 o.{id} AS director_{id}, o.{ra} AS director_{ra}, o.{dec} AS director_{dec}, s.*\nFROM {t} AS o JOIN {c} AS s ON s.{key} = o.{id}\nWHERE CONTAINS(POINT('ICRS', o.{ra}, o.{dec}), BOX('ICRS', 180, 0, 1, 1)) = 1",
                    key = key.to_lowercase()
                ),
            ));
        }
    }
    // A cross-match with a second catalog on the same chunk map (it runs chunk by chunk).
    let directors: Vec<_> = infos
        .iter()
        .filter(|t| matches!(t.record.kind, metastore::TableKind::Director { .. }))
        .collect();
    if let [a, b, ..] = directors.as_slice()
        && a.record.chunks == b.record.chunks
        && let (
            metastore::TableKind::Director {
                ra: ra_a,
                dec: dec_a,
                id: id_a,
            },
            metastore::TableKind::Director {
                ra: ra_b,
                dec: dec_b,
                id: id_b,
            },
        ) = (&a.record.kind, &b.record.kind)
    {
        out.push((
            "cross-match".into(),
            "A cross-match of two catalogs".into(),
            format!(
                "Every object of {} with the objects of {} within 1 arcsecond, inside a 2-degree circle.",
                a.record.qualified_name(),
                b.record.qualified_name()
            ),
            format!(
                "SELECT a.{id_a}, b.{id_b}, DISTANCE(POINT('ICRS', a.{ra_a}, a.{dec_a}), POINT('ICRS', b.{ra_b}, b.{dec_b})) * 3600 AS sep_arcsec\nFROM {} AS a JOIN {} AS b\nON CONTAINS(POINT('ICRS', b.{ra_b}, b.{dec_b}), CIRCLE('ICRS', a.{ra_a}, a.{dec_a}, 1.0 / 3600)) = 1\nWHERE CONTAINS(POINT('ICRS', a.{ra_a}, a.{dec_a}), CIRCLE('ICRS', 180, 0, 2)) = 1",
                a.record.qualified_name(),
                b.record.qualified_name(),
                id_a = id_a.to_lowercase(),
                id_b = id_b.to_lowercase(),
                ra_a = ra_a.to_lowercase(),
                dec_a = dec_a.to_lowercase(),
                ra_b = ra_b.to_lowercase(),
                dec_b = dec_b.to_lowercase(),
            ),
        ));
    }
    out.push((
        "columns".into(),
        "Columns with units and UCDs".into(),
        "The columns of every table with their units and UCDs.".into(),
        "SELECT table_name, column_name, datatype, unit, ucd FROM TAP_SCHEMA.columns WHERE table_name NOT LIKE 'tap_schema.%'".into(),
    ));
    out
}

pub async fn examples(State(tap): State<Arc<Tap>>) -> Response {
    let mut out = String::from(concat!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
        "<!DOCTYPE html>\n",
        "<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head><title>Example queries</title>",
        "<meta http-equiv=\"content-type\" content=\"text/html; charset=utf-8\"/></head>\n",
        "<body vocab=\"http://www.ivoa.net/rdf/examples#\">\n<h1>Example queries</h1>\n"
    ));
    for (id, name, explanation, query) in example_queries(&tap) {
        out.push_str(&format!(
            "<div typeof=\"example\" id=\"{id}\" resource=\"#{id}\">\n<h2 property=\"name\">{}</h2>\n<p>{}</p>\n<pre property=\"query\">{}</pre>\n</div>\n",
            xml_escape(&name),
            xml_escape(&explanation),
            xml_escape(&query)
        ));
    }
    out.push_str("</body>\n</html>\n");
    (
        [(header::CONTENT_TYPE, "application/xhtml+xml; charset=utf-8")],
        out,
    )
        .into_response()
}

/// A cone radius (degrees, two significant digits) that holds about 100 rows of a table of `rows` spread over the
/// sky: an example that answers with nothing teaches nothing (0.1 degrees held no row of the 200,000-row demo).
fn cone_radius(rows: u64) -> String {
    let per_square_degree = rows.max(1) as f64 / 41_253.0;
    let r = (100.0 / (std::f64::consts::PI * per_square_degree)).sqrt().clamp(0.001, 5.0);
    let decimals = (1.0 - r.log10().floor()).max(0.0) as usize;
    format!("{r:.decimals$}")
}
