//! The index job of `POST /tap/table-update`: checks that a column's values do not repeat when asked, then marks
//! the column indexed (TAP_SCHEMA shows it). It runs as a job of its own kind ([`crate::jobs::JobKind::Index`]),
//! which request parameters cannot make.

use arrow::array::RecordBatch;
use arrow::datatypes::DataType;

use crate::Platform;
use crate::access::Space;

/// Runs a table-update job as its owner: checks again that they may add rows to the table (a grant may have been
/// withdrawn since the job was created), checks uniqueness when asked, then marks the column indexed (TAP_SCHEMA
/// shows it). The uniqueness query names the table and column as the catalog spells them, quoted, and is planned
/// over what the owner sees, like any query of theirs.
pub async fn run_index(
    platform: &Platform,
    owner: Option<&str>,
    table: &str,
    column: &str,
    unique: bool,
) -> Result<(), String> {
    let reader = platform.reader_of_owner(owner);
    let may_index = reader.user.is_some()
        && table
            .split_once('.')
            .and_then(|(schema, _)| Space::of(schema))
            .is_some_and(|space| {
                reader.owns(&space) || platform.grants.may_add_rows(&reader, table)
            });
    if !may_index {
        return Err(format!(
            "the job's owner may not change {table} (only its space's owners and groups it is shared with for writing)"
        ));
    }
    let _turn = platform.user_tables_lock.lock().await;
    let gone = || format!("no table {table} (was it dropped?)");
    let info = platform
        .czar
        .tables()
        .into_iter()
        .find(|t| t.record.qualified_name().eq_ignore_ascii_case(table))
        .ok_or_else(gone)?;
    let declared = info
        .record
        .columns
        .iter()
        .find(|c| c.name.eq_ignore_ascii_case(column))
        .map(|c| c.name.clone())
        .ok_or_else(|| format!("{table} has no column {column}"))?;
    if unique {
        let query = format!(
            "SELECT COUNT(*) AS n, COUNT(DISTINCT {}) AS d FROM {}.{}",
            delimited(&declared),
            delimited(&info.record.schema),
            delimited(&info.record.name),
        );
        let visible = platform.visible_to(reader);
        let stream = platform
            .czar
            .execute(&query, &czar::QueryContext::seeing(visible.as_deref()))
            .await
            .map_err(|e| e.to_string())?;
        let batches: Vec<RecordBatch> = datafusion::physical_plan::common::collect(stream)
            .await
            .map_err(|e| e.to_string())?;
        let value = |name: &str| -> Option<i64> {
            let c = batches.first()?.column_by_name(name)?;
            let c = arrow::compute::cast(c, &DataType::Int64).ok()?;
            let a = c.as_any().downcast_ref::<arrow::array::Int64Array>()?;
            (a.len() == 1).then(|| a.value(0))
        };
        let (Some(n), Some(d)) = (value("n"), value("d")) else {
            return Err(format!(
                "counting the values of {declared} in {table} gave no answer"
            ));
        };
        if n != d {
            return Err(format!(
                "{declared} of {table} is not unique: {} rows repeat a value (or are null) among {n}",
                n - d
            ));
        }
    }
    let data_dir = platform.czar.data_dir().to_path_buf();
    let (t, c) = (info.record.qualified_name(), declared);
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
    platform.czar.refresh().map_err(|e| e.to_string())
}

/// An ADQL delimited identifier: the name as the catalog spells it, quoted, an inner quote doubled.
fn delimited(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
