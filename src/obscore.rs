//! `skyshard images add`: images into the archive: each file's ObsCore record into `ivoa.obscore` (a replicated
//! table), the files into `DATA/images/COLLECTION/`, all or nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Builder, Int64Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};

/// The ObsCore table.
pub const TABLE: &str = "ivoa.obscore";

/// ObsCore 1.1's columns (table 1 and section 4): name, type, unit, UCD, utype, description.
const COLUMNS: &[(&str, &str, &str, &str, &str, &str)] = &[
    ("dataproduct_type", "s", "", "meta.code.class", "obscore:ObsDataset.dataProductType", "Data product (file content) primary type"),
    ("dataproduct_subtype", "s", "", "meta.code.class", "obscore:ObsDataset.dataProductSubtype", "Data product specific type"),
    ("calib_level", "i", "", "meta.code;obs.calib", "obscore:ObsDataset.calibLevel", "Calibration level of the observation: in {0, 1, 2, 3, 4}"),
    ("obs_collection", "s", "", "meta.id", "obscore:DataID.Collection", "Name of the data collection"),
    ("obs_id", "s", "", "meta.id", "obscore:DataID.observationID", "Internal ID given by the ObsTAP service"),
    ("obs_title", "s", "", "meta.title;obs", "obscore:DataID.Title", "Brief description of dataset in free format"),
    ("obs_publisher_did", "s", "", "meta.ref.ivoid", "obscore:Curation.PublisherDID", "ID for the Dataset given by the publisher"),
    ("obs_creator_did", "s", "", "meta.id", "obscore:DataID.CreatorDID", "IVOA dataset identifier given by the creator"),
    ("access_url", "s", "", "meta.ref.url", "obscore:Access.Reference", "URL used to access (download) dataset"),
    ("access_format", "s", "", "meta.code.mime", "obscore:Access.Format", "File content format"),
    ("access_estsize", "i", "kbyte", "phys.size;meta.file", "obscore:Access.Size", "Estimated size of dataset in kilo bytes"),
    ("target_name", "s", "", "meta.id;src", "obscore:Target.Name", "Astronomical object observed, if any"),
    ("target_class", "s", "", "src.class", "obscore:Target.Class", "Class of the Target object as in SSA"),
    ("s_ra", "d", "deg", "pos.eq.ra", "obscore:Char.SpatialAxis.Coverage.Location.Coord.Position2D.Value2.C1", "Central right ascension, ICRS"),
    ("s_dec", "d", "deg", "pos.eq.dec", "obscore:Char.SpatialAxis.Coverage.Location.Coord.Position2D.Value2.C2", "Central declination, ICRS"),
    ("s_fov", "d", "deg", "phys.angSize;instr.fov", "obscore:Char.SpatialAxis.Coverage.Bounds.Extent.diameter", "Diameter (bounds) of the covered region"),
    ("s_region", "p", "", "pos.outline;obs.field", "obscore:Char.SpatialAxis.Coverage.Support.Area", "Sky region covered by the data product (expressed in ICRS frame)"),
    ("s_resolution", "d", "arcsec", "pos.angResolution", "obscore:Char.SpatialAxis.Resolution.Refval.value", "Spatial resolution of data as FWHM"),
    ("s_xel1", "i", "", "meta.number", "obscore:Char.SpatialAxis.numBins1", "Number of elements along the first spatial axis"),
    ("s_xel2", "i", "", "meta.number", "obscore:Char.SpatialAxis.numBins2", "Number of elements along the second spatial axis"),
    ("s_pixel_scale", "d", "arcsec", "phys.angSize;instr.pixel", "obscore:Char.SpatialAxis.Sampling.RefVal.SamplingPeriod", "Sampling period in world coordinate units along the spatial axis"),
    ("t_min", "d", "d", "time.start;obs.exposure", "obscore:Char.TimeAxis.Coverage.Bounds.Limits.StartTime", "Start time in MJD"),
    ("t_max", "d", "d", "time.end;obs.exposure", "obscore:Char.TimeAxis.Coverage.Bounds.Limits.StopTime", "Stop time in MJD"),
    ("t_exptime", "d", "s", "time.duration;obs.exposure", "obscore:Char.TimeAxis.Coverage.Support.Extent", "Total exposure time"),
    ("t_resolution", "d", "s", "time.resolution", "obscore:Char.TimeAxis.Resolution.Refval.value", "Temporal resolution FWHM"),
    ("t_xel", "i", "", "meta.number", "obscore:Char.TimeAxis.numBins", "Number of elements along the time axis"),
    ("em_min", "d", "m", "em.wl;stat.min", "obscore:Char.SpectralAxis.Coverage.Bounds.Limits.LoLimit", "Start in spectral coordinates"),
    ("em_max", "d", "m", "em.wl;stat.max", "obscore:Char.SpectralAxis.Coverage.Bounds.Limits.HiLimit", "Stop in spectral coordinates"),
    ("em_res_power", "d", "", "spect.resolution", "obscore:Char.SpectralAxis.Resolution.ResolPower.refVal", "Value of the resolving power along the spectral axis"),
    ("em_xel", "i", "", "meta.number", "obscore:Char.SpectralAxis.numBins", "Number of elements along the spectral axis"),
    ("o_ucd", "s", "", "meta.ucd", "obscore:Char.ObservableAxis.ucd", "Nature of the observable axis"),
    ("pol_states", "s", "", "meta.code;phys.polarization", "obscore:Char.PolarizationAxis.stateList", "List of polarization states present in the data file"),
    ("pol_xel", "i", "", "meta.number", "obscore:Char.PolarizationAxis.numBins", "Number of elements along the polarization axis"),
    ("facility_name", "s", "", "meta.id;instr.tel", "obscore:Provenance.ObsConfig.Facility.name", "The name of the facility, telescope, or space craft used for the observation"),
    ("instrument_name", "s", "", "meta.id;instr", "obscore:Provenance.ObsConfig.Instrument.name", "The name of the instrument used for the observation"),
    // Not ObsCore's: the id the loader needs for a row.
    ("image_id", "i", "", "meta.id", "", "skyshard's number of the image"),
];

pub fn schema() -> Arc<Schema> {
    let fields: Vec<Field> = COLUMNS
        .iter()
        .map(|&(name, kind, unit, ucd, utype, description)| {
            let data_type = match kind {
                "s" => DataType::Utf8,
                "i" => DataType::Int64,
                "d" => DataType::Float64,
                // A region: STC-S text, as ObsCore 1.1 and TAP 1.0 give it (`adql:REGION`).
                _ => DataType::Utf8,
            };
            let mut meta = HashMap::new();
            for (k, v) in [("unit", unit), ("ucd", ucd), ("utype", utype), ("description", description)] {
                if !v.is_empty() {
                    meta.insert(k.to_string(), v.to_string());
                }
            }
            if kind == "p" {
                meta.insert("xtype".into(), "adql:REGION".into());
            }
            Field::new(name, data_type, true).with_metadata(meta)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// The records as one batch of `ivoa.obscore`, their `image_id`s from `first_id`.
pub fn batch(records: &[images::ObsRecord], first_id: i64) -> anyhow::Result<RecordBatch> {
    let schema = schema();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for &(name, kind, ..) in COLUMNS {
        let column: ArrayRef = match kind {
            "p" => {
                let mut b = StringBuilder::new();
                for r in records {
                    b.append_value(adql::geometry::stcs::polygon_text(&r.s_region));
                }
                Arc::new(b.finish())
            }
            "s" => {
                let mut b = StringBuilder::new();
                for r in records {
                    let v = r.to_json();
                    b.append_option(v.get(name).and_then(|v| v.as_str()).map(String::from));
                }
                Arc::new(b.finish())
            }
            "i" => {
                let mut b = Int64Builder::new();
                for (i, r) in records.iter().enumerate() {
                    if name == "image_id" {
                        b.append_value(first_id + i as i64);
                    } else {
                        b.append_option(r.to_json().get(name).and_then(|v| v.as_i64()));
                    }
                }
                Arc::new(b.finish())
            }
            _ => {
                let mut b = Float64Builder::new();
                for r in records {
                    let v = r.to_json();
                    let value = match name {
                        "s_pixel_scale" => Some(r.s_resolution),
                        _ => v.get(name).and_then(|v| v.as_f64()),
                    };
                    b.append_option(value);
                }
                Arc::new(b.finish())
            }
        };
        columns.push(column);
    }
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// The image files of `paths` (files, and the FITS files under folders), in order.
pub fn image_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found = Vec::new();
            let mut stack = vec![p.clone()];
            while let Some(d) = stack.pop() {
                for entry in std::fs::read_dir(&d)? {
                    let entry = entry?;
                    let path = entry.path();
                    // A symbolic link to a folder is not followed (a loop would never end).
                    let kind = entry.file_type()?;
                    if kind.is_dir() {
                        stack.push(path);
                    } else if kind.is_symlink() && path.is_dir() {
                        continue;
                    } else {
                        let name = path.to_string_lossy().to_ascii_lowercase();
                        if [".fits", ".fit", ".fts"].iter().any(|e| name.ends_with(e)) {
                            found.push(path);
                        }
                    }
                }
            }
            found.sort();
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// A collection's name: lower-case letters, digits, `_` and `-`, starting with a letter, at most 64.
pub fn valid_collection(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Adds the images to the archive in `data_dir`: every file read first (any that cannot be is named and nothing is
/// added), then copied beside their collection, then their records loaded into `ivoa.obscore`, then the copies put
/// in place. Returns the records.
pub fn add(
    data_dir: &Path,
    collection: &str,
    options: &images::record::RecordOptions,
    files: &[PathBuf],
) -> anyhow::Result<Vec<images::ObsRecord>> {
    anyhow::ensure!(
        valid_collection(collection),
        "{collection:?} is not a collection name (lower-case letters, digits, _ and -, starting with a letter)"
    );
    let files = image_files(files)?;
    anyhow::ensure!(!files.is_empty(), "no FITS images among the paths given");
    let mut problems = Vec::new();
    let mut records = Vec::new();
    let mut opened = Vec::new();
    for f in &files {
        match images::Image::open(f) {
            Ok(image) => {
                records.push(images::ObsRecord::of(&image, options));
                opened.push(f.clone());
            }
            Err(e) => problems.push(format!("{}: {e}", f.display())),
        }
    }
    let files = opened;
    // One `images add` at a time in a data directory: the check that an image is new, the load and the files'
    // move are one step.
    let root = partitioner::layout::images_dir(data_dir);
    std::fs::create_dir_all(&root)?;
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(root.join("LOCK"))?;
    lock.try_lock().map_err(|_| {
        anyhow::anyhow!("another `skyshard images add` is adding images to this data directory; try again after it")
    })?;
    let dir = root.join(collection);
    let mut seen = std::collections::HashSet::new();
    for (f, r) in files.iter().zip(&records) {
        if !images::record::plain_id(&r.obs_id) {
            problems.push(format!(
                "{}: obs_id {:?} (from OBS_ID or the file name) is not a plain name: letters, digits, _, - and ., \
                 not starting with a dot, at most 64",
                f.display(),
                r.obs_id
            ));
            continue;
        }
        if !seen.insert(r.obs_id.clone()) {
            problems.push(format!("{}: obs_id {} is given twice", f.display(), r.obs_id));
        }
        if dir.join(format!("{}.fits", r.obs_id)).exists() {
            problems.push(format!(
                "{}: collection {collection} already holds an image {}",
                f.display(),
                r.obs_id
            ));
        }
    }
    anyhow::ensure!(
        problems.is_empty(),
        "nothing was added:\n  {}",
        problems.join("\n  ")
    );
    std::fs::create_dir_all(&dir)?;
    let staging = dir.join(format!(".incoming-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)?;
    let result = (|| -> anyhow::Result<()> {
        for (f, r) in files.iter().zip(&records) {
            std::fs::copy(f, staging.join(format!("{}.fits", r.obs_id)))?;
        }
        let first_id = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        let parquet = staging.join("obscore.parquet");
        let batch = batch(&records, first_id)?;
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&parquet)?, batch.schema(), None)?;
        writer.write(&batch)?;
        writer.close()?;
        let exists = metastore::MetaStore::open_read_only(&partitioner::layout::meta_dir(data_dir))
            .ok()
            .and_then(|m| m.table(TABLE).ok().flatten())
            .is_some();
        let mut opts = loader::ingest::IngestOptions::new(TABLE, loader::ingest::LoadKind::Replicated);
        opts.append = exists;
        opts.description = Some("The images of this archive, one ObsCore 1.1 record each".into());
        loader::ingest::ingest(data_dir, &[parquet], &opts)?;
        for r in &records {
            let name = format!("{}.fits", r.obs_id);
            std::fs::rename(staging.join(&name), dir.join(&name))?;
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&staging);
    result.map(|()| records)
}

/// `skyshard gen --images N`: N images of the generated sky in `OUT/images/`, centred on objects of
/// `OUT/object.parquet` spread through the table, with every object drawn in by its g magnitude.
pub fn synthetic_images(out: &Path, count: usize, seed: u64) -> anyhow::Result<usize> {
    use arrow::array::{Array, Float64Array};
    let file = std::fs::File::open(out.join("object.parquet"))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
    let mut stars = Vec::new();
    for batch in reader {
        let batch = batch?;
        let column = |name: &str| -> anyhow::Result<Float64Array> {
            let c = batch
                .column_by_name(name)
                .ok_or_else(|| anyhow::anyhow!("object.parquet has no column {name}"))?;
            Ok(arrow::compute::cast(c, &arrow::datatypes::DataType::Float64)?
                .as_any()
                .downcast_ref::<Float64Array>()
                .expect("cast to Float64")
                .clone())
        };
        let (ra, dec, mag) = (column("ra")?, column("dec")?, column("mag_g")?);
        for i in 0..batch.num_rows() {
            if !ra.is_null(i) && !dec.is_null(i) {
                let m = if mag.is_null(i) { 22.0 } else { mag.value(i) };
                stars.push((ra.value(i), dec.value(i), m));
            }
        }
    }
    anyhow::ensure!(!stars.is_empty(), "no objects to centre images on");
    let step = (stars.len() / count.max(1)).max(1);
    let centres: Vec<(f64, f64)> = stars.iter().step_by(step).map(|&(ra, dec, _)| (ra, dec)).collect();
    let dir = out.join("images");
    std::fs::create_dir_all(&dir)?;
    let exposures = images::synth::exposures(&centres, count, 256, 1.0 / 3600.0, seed);
    for (k, e) in exposures.iter().enumerate() {
        let name = format!("img-{k:04}-{}", e.band);
        images::synth::write(&dir.join(format!("{name}.fits")), e, &name, &stars)?;
    }
    Ok(exposures.len())
}
