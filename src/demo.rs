//! `skyshard demo`: a sample data release, loaded and served by a local cluster, in one command.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use loader::ingest::{IngestOptions, LoadKind};

use crate::failure;

/// Where the demo keeps its data unless told: one directory per user under the system's temporary directory.
pub fn default_dir() -> PathBuf {
    std::env::temp_dir().join("skyshard-demo")
}

/// Generates and loads the sample release into `data_dir` unless it already holds one of `rows` objects.
fn prepare(data_dir: &Path, rows: u64, port: u16) -> Result<(), String> {
    let marker = data_dir.join("demo-rows");
    // A catalog an older skyshard wrote (its metadata in RocksDB) is made again, not refused.
    let readable =
        metastore::MetaStore::open_read_only(&partitioner::layout::meta_dir(data_dir)).is_ok();
    if readable && std::fs::read_to_string(&marker).is_ok_and(|s| s.trim() == rows.to_string()) {
        println!("using the sample catalog already in {}", data_dir.display());
        return Ok(());
    }
    if data_dir.exists() {
        let leftovers = std::fs::read_dir(data_dir)
            .map_err(|e| format!("{}: {e}", data_dir.display()))?
            .next()
            .is_some();
        if leftovers && !marker.exists() {
            return Err(format!(
                "{} holds something that is not a skyshard demo; give the demo an empty --data-dir",
                data_dir.display()
            ));
        }
        std::fs::remove_dir_all(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    }
    let started = std::time::Instant::now();
    let release = data_dir.join("release");
    let summary = loader::synth::generate(rows, &release, 42).map_err(|e| e.to_string())?;
    let director = |id: &str| LoadKind::Director {
        ra: "ra".into(),
        dec: "dec".into(),
        id: id.into(),
    };
    let loads = [
        (
            "sky.object",
            "object.parquet",
            director("id"),
            "Synthetic objects (the demo's director table)",
        ),
        (
            "sky.source",
            "source.parquet",
            LoadKind::Child {
                director: "sky.object".into(),
                key: "object_id".into(),
            },
            "Synthetic single-epoch detections of the objects",
        ),
        (
            "sky.xmatch",
            "xmatch.parquet",
            director("xid"),
            "A second synthetic catalog for cross-matching",
        ),
    ];
    for (table, file, kind, description) in loads {
        let mut opts = IngestOptions::new(table, kind);
        if table == "sky.xmatch" {
            // On the objects' chunk map: cross-matches of the two catalogs run chunk by chunk.
            opts.chunk_map_of = Some("sky.object".into());
        }
        opts.description = Some(description.into());
        opts.quiet = true;
        loader::ingest::ingest(data_dir, &[release.join(file)], &opts)
            .map_err(|e| format!("loading {table}: {e}"))?;
    }
    // Images of the same sky, one on each of 24 objects in the bands ugrizy: ivoa.obscore, SIA, SODA, DataLink.
    let images = crate::obscore::synthetic_images(&release, 24, 42).map_err(|e| format!("{e:#}"))?;
    let base = format!("http://127.0.0.1:{}", if port == 0 { 8080 } else { port });
    let options = images::record::RecordOptions {
        collection: "demo".into(),
        authority: "skyshard.local".into(),
        links_url: format!("{base}/datalink/links"),
        calib_level: 2,
    };
    crate::obscore::add(data_dir, "demo", &options, &[release.join("images")])
        .map_err(|e| format!("adding the demo's {images} images: {e:#}"))?;
    std::fs::write(&marker, rows.to_string()).map_err(|e| e.to_string())?;
    println!(
        "generated and loaded {} objects, {} sources and {} cross-match rows in {:.1} s",
        summary.objects,
        summary.sources,
        summary.xmatch,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// How to connect, printed once the service listens.
pub fn howto(base: &str) -> String {
    let tap = format!("{base}/tap");
    format!(
        "\nskyshard demo is serving a sample catalog (sky.object, sky.source, sky.xmatch) and 24 images of it (ivoa.obscore).\n\n  portal:   {base}/portal/   (in a browser: the sky, ADQL, plots, downloads)\n  TAP URL:  {tap}\n\n  TOPCAT:   VO > Table Access Protocol (TAP) Query, paste the TAP URL, then 'Use Service'\n  pyvo:     import pyvo; svc = pyvo.dal.TAPService(\"{tap}\")\n            svc.search(\"SELECT TOP 10 * FROM sky.object WHERE CONTAINS(POINT(ra, dec), CIRCLE(266.4, -29.0, 0.5)) = 1\").to_table()\n  curl:     curl '{tap}/sync?LANG=ADQL&RESPONSEFORMAT=csv&QUERY=SELECT+COUNT(*)+FROM+sky.object'\n  shell:    skyshard query --url {tap} \"SELECT TOP 5 id, ra, dec FROM sky.object ORDER BY id\"\n  cone:     {base}/scs/sky.object?RA=266.4&DEC=-29.0&SR=0.5\n  images:   pyvo.dal.SIA2Service(\"{base}/sia\").search(pos=(RA, DEC, 1)), or in ADQL: SELECT * FROM ivoa.obscore\n  examples: {tap}/examples\n\nCtrl-C stops it.\n"
    )
}

pub fn demo(port: u16, rows: u64, workers: usize, data_dir: Option<PathBuf>) -> ExitCode {
    let data_dir = data_dir.unwrap_or_else(default_dir);
    if let Err(e) = prepare(&data_dir, rows, port) {
        return failure(e);
    }
    let limits = tap::Limits::default();
    let service = crate::serve::ServiceArgs {
        query_memory_mb: 2048,
        sync_timeout: limits.sync_duration,
        max_maxrec: limits.max_maxrec,
        flight_sql_port: Some(0),
        concurrent_sync: limits.concurrent_sync,
        waiting_sync: limits.waiting_sync,
        queued_jobs: limits.queued_jobs,
        worker_silence: czar::cluster::DEFAULT_SILENCE.as_secs_f64(),
        fragment_memory_mb: worker::flight::DEFAULT_FRAGMENT_MEMORY >> 20,
        max_upload_mb: limits.max_upload_bytes >> 20,
        body_timeout: limits.body_timeout,
        header_timeout: limits.header_timeout,
        auth: "optional".into(),
        caller_sync: limits.caller_sync,
        caller_jobs: limits.caller_jobs,
        caller_storage_mb: limits.caller_storage >> 20,
        user_tables_mb: limits.user_tables >> 20,
        user_files_mb: limits.user_files >> 20,
        ..Default::default()
    };
    crate::serve::serve_with(
        &data_dir,
        port,
        workers,
        workers.min(2),
        &service,
        Some(howto),
    )
}
