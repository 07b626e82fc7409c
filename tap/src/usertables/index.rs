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
    let params = vec![
        ("table".to_string(), qualified),
        ("index".to_string(), column.to_lowercase()),
        ("unique".to_string(), unique.to_string()),
    ];
    match crate::uws::create_pending(&tap, &caller, &client, params) {
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

/// Runs a table-update job: checks uniqueness when asked, then marks the column indexed (TAP_SCHEMA shows it).
pub(crate) async fn run_index(tap: &Tap, job: &crate::jobs::Job) -> Result<(), String> {
    let param = |k: &str| {
        job.params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    let (Some(table), Some(column)) = (param("table"), param("index")) else {
        return Err("the job names no table and index".into());
    };
    let _turn = writing(tap).lock().await;
    if param("unique").as_deref() == Some("true") {
        let query = format!("SELECT COUNT(*) AS n, COUNT(DISTINCT {column}) AS d FROM {table}");
        let stream = tap
            .czar
            .execute(&query, &[])
            .await
            .map_err(|e| e.to_string())?;
        let batches: Vec<RecordBatch> = datafusion::physical_plan::common::collect(stream)
            .await
            .map_err(|e| e.to_string())?;
        let value = |name: &str| -> i64 {
            batches
                .first()
                .and_then(|b| b.column_by_name(name))
                .and_then(|c| arrow::compute::cast(c, &DataType::Int64).ok())
                .and_then(|c| {
                    c.as_any()
                        .downcast_ref::<arrow::array::Int64Array>()
                        .map(|a| a.value(0))
                })
                .unwrap_or(0)
        };
        let (n, d) = (value("n"), value("d"));
        if n != d {
            return Err(format!(
                "{column} of {table} is not unique: {} rows repeat a value (or are null) among {n}",
                n - d
            ));
        }
    }
    let data_dir = tap.czar.data_dir().to_path_buf();
    let (t, c) = (table.clone(), column.clone());
    tokio::task::spawn_blocking(move || -> Result<(), String> {
        let store = loader::ingest::open_store(&data_dir).map_err(|e| e.to_string())?;
        let mut record = store
            .table(&t)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{t} was dropped"))?;
        for col in record
            .columns
            .iter_mut()
            .filter(|x| x.name.eq_ignore_ascii_case(&c))
        {
            col.indexed = true;
        }
        store.publish(&record).map_err(|e| e.to_string())?;
        Ok(())
    })
    .await
    .map_err(|e| e.to_string())??;
    tap.czar.refresh().map_err(|e| e.to_string())
}
