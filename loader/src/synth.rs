//! `skyshard gen`: a deterministic synthetic data release for demos and scale tests.
//!
//! - `object.parquet`: the director table, one row per object, with a sky density that rises tenfold towards the
//!   galactic plane (as real surveys see it), magnitudes in g, r, i and proper motions.
//! - `source.parquet`: the child table, 1 to 6 detections per object (`object_id` is the director key), positions
//!   scattered by 0.1 arcsec around the object's.
//! - `xmatch.parquet`: a second catalog for cross-matching: 60 % of the objects again, offset by up to 1 arcsec,
//!   plus 10 % unrelated positions.
//!
//! One object in [`LANDMARK_EVERY`] sits near a landmark: both poles and the RA 0/360 seam (at the equator and at
//! +-60), every other one as a close twin (about 1 arcsec) of the one before, so tests of cones, regions, pairs and
//! cross-matches at the edges of the coordinate system always have rows to find.
//!
//! Every column carries its unit, UCD and description as Parquet field metadata. Rows are written in batches, so
//! memory stays bounded whatever the row count.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Float32Array, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::error::{LoaderError, Result, io};

const BATCH: usize = 100_000;

/// A small, fast, seedable generator (SplitMix64), so a release is the same on every machine.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.uniform().max(1e-300);
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// Galactic latitude (degrees) of an ICRS position, from the north galactic pole (192.85948, 27.12825).
pub fn galactic_latitude(ra: f64, dec: f64) -> f64 {
    let (ra_p, dec_p) = (192.85948f64.to_radians(), 27.12825f64.to_radians());
    let (ra, dec) = (ra.to_radians(), dec.to_radians());
    (dec.sin() * dec_p.sin() + dec.cos() * dec_p.cos() * (ra - ra_p).cos())
        .clamp(-1.0, 1.0)
        .asin()
        .to_degrees()
}

/// A position drawn from a sky ten times denser at the galactic plane than at the galactic poles.
pub fn sky_position(rng: &mut Rng) -> (f64, f64) {
    loop {
        let ra = rng.uniform() * 360.0;
        let dec = (rng.uniform() * 2.0 - 1.0).asin().to_degrees();
        let b = galactic_latitude(ra, dec);
        let weight = 0.1 + 0.9 * (-(b / 12.0).powi(2)).exp();
        if rng.uniform() < weight {
            return (ra, dec);
        }
    }
}

/// Places every release populates densely: (ra, dec) in degrees.
pub const LANDMARKS: [(f64, f64); 5] = [
    (0.0, 90.0),
    (0.0, -90.0),
    (0.0, 0.0),
    (0.0, 60.0),
    (0.0, -60.0),
];
/// One object in this many is placed near a landmark.
pub const LANDMARK_EVERY: u64 = 50;
/// Landmark objects lie within this many degrees of their landmark.
pub const LANDMARK_RADIUS: f64 = 1.0;

/// A position uniformly distributed within `radius` degrees of (ra, dec) (a small cap), also at a pole.
fn cap_position(rng: &mut Rng, ra: f64, dec: f64, radius: f64) -> (f64, f64) {
    let rho = (radius * rng.uniform().sqrt()).to_radians();
    let theta = rng.uniform() * std::f64::consts::TAU;
    let (a, d) = (ra.to_radians(), dec.to_radians());
    let dec2 = (d.sin() * rho.cos() + d.cos() * rho.sin() * theta.cos())
        .clamp(-1.0, 1.0)
        .asin();
    let ra2 = if d.cos() < 1e-9 {
        // At a pole every bearing is a right ascension.
        theta
    } else {
        a + (theta.sin() * rho.sin() * d.cos()).atan2(rho.cos() - d.sin() * dec2.sin())
    };
    (ra2.to_degrees().rem_euclid(360.0), dec2.to_degrees())
}

/// The position of object `id`: near a landmark for one in [`LANDMARK_EVERY`] (every other one a twin of the
/// landmark object before it), else [`sky_position`].
fn object_position(rng: &mut Rng, id: u64, previous_landmark: &mut (f64, f64)) -> (f64, f64) {
    if id % LANDMARK_EVERY != 0 {
        return sky_position(rng);
    }
    let n = id / LANDMARK_EVERY;
    let p = if n % 2 == 1 {
        jitter(rng, previous_landmark.0, previous_landmark.1, 1.0)
    } else {
        let (a, d) = LANDMARKS[(n / 2 % LANDMARKS.len() as u64) as usize];
        cap_position(rng, a, d, LANDMARK_RADIUS)
    };
    *previous_landmark = p;
    p
}

fn field(name: &str, dt: DataType, unit: &str, ucd: &str, description: &str) -> Field {
    let mut m = HashMap::new();
    for (k, v) in [("unit", unit), ("ucd", ucd), ("description", description)] {
        if !v.is_empty() {
            m.insert(k.to_string(), v.to_string());
        }
    }
    Field::new(name, dt, false).with_metadata(m)
}

pub fn object_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        field(
            "id",
            DataType::Int64,
            "",
            "meta.id;meta.main",
            "unique object identifier",
        ),
        field(
            "ra",
            DataType::Float64,
            "deg",
            "pos.eq.ra;meta.main",
            "right ascension (ICRS)",
        ),
        field(
            "dec",
            DataType::Float64,
            "deg",
            "pos.eq.dec;meta.main",
            "declination (ICRS)",
        ),
        field(
            "mag_g",
            DataType::Float32,
            "mag",
            "phot.mag;em.opt.B",
            "g-band magnitude",
        ),
        field(
            "mag_r",
            DataType::Float32,
            "mag",
            "phot.mag;em.opt.R",
            "r-band magnitude",
        ),
        field(
            "mag_i",
            DataType::Float32,
            "mag",
            "phot.mag;em.opt.I",
            "i-band magnitude",
        ),
        field(
            "pmra",
            DataType::Float32,
            "mas/yr",
            "pos.pm;pos.eq.ra",
            "proper motion in RA * cos(dec)",
        ),
        field(
            "pmdec",
            DataType::Float32,
            "mas/yr",
            "pos.pm;pos.eq.dec",
            "proper motion in Dec",
        ),
    ]))
}

pub fn source_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        field(
            "source_id",
            DataType::Int64,
            "",
            "meta.id;meta.main",
            "unique detection identifier",
        ),
        field(
            "object_id",
            DataType::Int64,
            "",
            "meta.id.parent",
            "the object this detection belongs to",
        ),
        field(
            "ra",
            DataType::Float64,
            "deg",
            "pos.eq.ra",
            "right ascension of the detection (ICRS)",
        ),
        field(
            "dec",
            DataType::Float64,
            "deg",
            "pos.eq.dec",
            "declination of the detection (ICRS)",
        ),
        field(
            "mjd",
            DataType::Float64,
            "d",
            "time.epoch",
            "modified Julian date of the exposure",
        ),
        field(
            "band",
            DataType::Utf8,
            "",
            "instr.bandpass",
            "filter: g, r or i",
        ),
        field("flux", DataType::Float32, "nJy", "phot.flux", "PSF flux"),
    ]))
}

pub fn xmatch_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        field(
            "xid",
            DataType::Int64,
            "",
            "meta.id;meta.main",
            "identifier in the second catalog",
        ),
        field(
            "ra",
            DataType::Float64,
            "deg",
            "pos.eq.ra;meta.main",
            "right ascension (ICRS)",
        ),
        field(
            "dec",
            DataType::Float64,
            "deg",
            "pos.eq.dec;meta.main",
            "declination (ICRS)",
        ),
        field(
            "mag",
            DataType::Float32,
            "mag",
            "phot.mag",
            "magnitude in the second catalog",
        ),
    ]))
}

fn writer(path: &Path, schema: SchemaRef) -> Result<ArrowWriter<File>> {
    let file = File::create(path).map_err(io(path))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    ArrowWriter::try_new(file, schema, Some(props)).map_err(|source| LoaderError::Parquet {
        path: path.to_path_buf(),
        source,
    })
}

/// What `generate` wrote.
#[derive(Debug, Clone)]
pub struct GenSummary {
    pub objects: u64,
    pub sources: u64,
    pub xmatch: u64,
    pub files: Vec<PathBuf>,
}

/// Moves a position by `sigma_arcsec` (Gaussian, per axis) on the sky.
fn jitter(rng: &mut Rng, ra: f64, dec: f64, sigma_arcsec: f64) -> (f64, f64) {
    let s = sigma_arcsec / 3600.0;
    let d = (dec + rng.normal() * s).clamp(-90.0, 90.0);
    let c = dec.to_radians().cos().max(1e-6);
    ((ra + rng.normal() * s / c).rem_euclid(360.0), d)
}

/// Writes a synthetic release of `rows` objects into `out`.
pub fn generate(rows: u64, out: &Path, seed: u64) -> Result<GenSummary> {
    std::fs::create_dir_all(out).map_err(io(out))?;
    let paths = [
        out.join("object.parquet"),
        out.join("source.parquet"),
        out.join("xmatch.parquet"),
    ];
    let mut w_obj = writer(&paths[0], object_schema())?;
    let mut w_src = writer(&paths[1], source_schema())?;
    let mut w_x = writer(&paths[2], xmatch_schema())?;
    let mut rng = Rng::new(seed);
    let mut summary = GenSummary {
        objects: 0,
        sources: 0,
        xmatch: 0,
        files: paths.to_vec(),
    };
    let mut next_source = 0i64;
    let mut next_x = 0i64;
    let mut done = 0u64;
    let mut previous_landmark = (0.0, 0.0);
    while done < rows {
        let n = (rows - done).min(BATCH as u64) as usize;
        let mut o: (Vec<i64>, Vec<f64>, Vec<f64>) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let mut mags: [Vec<f32>; 5] = Default::default();
        let mut s: (
            Vec<i64>,
            Vec<i64>,
            Vec<f64>,
            Vec<f64>,
            Vec<f64>,
            Vec<&str>,
            Vec<f32>,
        ) = Default::default();
        let mut x: (Vec<i64>, Vec<f64>, Vec<f64>, Vec<f32>) = Default::default();
        for k in 0..n {
            let id = (done as usize + k) as i64;
            let (ra, dec) = object_position(&mut rng, id as u64, &mut previous_landmark);
            let r = 14.0 + 10.0 * rng.uniform().powf(0.4);
            let color = 0.3 + 0.5 * rng.normal().abs();
            o.0.push(id);
            o.1.push(ra);
            o.2.push(dec);
            mags[0].push((r + color) as f32);
            mags[1].push(r as f32);
            mags[2].push((r - 0.4 * color) as f32);
            mags[3].push((rng.normal() * 8.0) as f32);
            mags[4].push((rng.normal() * 8.0) as f32);
            let detections = 1 + (rng.next_u64() % 6) as usize;
            for _ in 0..detections {
                let (sra, sdec) = jitter(&mut rng, ra, dec, 0.1);
                let band = ["g", "r", "i"][(rng.next_u64() % 3) as usize];
                s.0.push(next_source);
                s.1.push(id);
                s.2.push(sra);
                s.3.push(sdec);
                s.4.push(60000.0 + rng.uniform() * 3650.0);
                s.5.push(band);
                s.6.push((3631e9 * 10f64.powf(-0.4 * r) * (1.0 + 0.05 * rng.normal())) as f32);
                next_source += 1;
            }
            if rng.uniform() < 0.6 {
                let (xra, xdec) = jitter(&mut rng, ra, dec, 0.5);
                x.0.push(next_x);
                x.1.push(xra);
                x.2.push(xdec);
                x.3.push((r + 0.1 * rng.normal()) as f32);
                next_x += 1;
            }
            if rng.uniform() < 0.1 {
                let (xra, xdec) = sky_position(&mut rng);
                x.0.push(next_x);
                x.1.push(xra);
                x.2.push(xdec);
                x.3.push((15.0 + 8.0 * rng.uniform()) as f32);
                next_x += 1;
            }
        }
        let [g, r, i, pmra, pmdec] = mags;
        let cols: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(o.0)),
            Arc::new(Float64Array::from(o.1)),
            Arc::new(Float64Array::from(o.2)),
            Arc::new(Float32Array::from(g)),
            Arc::new(Float32Array::from(r)),
            Arc::new(Float32Array::from(i)),
            Arc::new(Float32Array::from(pmra)),
            Arc::new(Float32Array::from(pmdec)),
        ];
        let src_n = s.0.len() as u64;
        let x_n = x.0.len() as u64;
        let batches = [
            (
                RecordBatch::try_new(object_schema(), cols),
                &mut w_obj,
                &paths[0],
            ),
            (
                RecordBatch::try_new(
                    source_schema(),
                    vec![
                        Arc::new(Int64Array::from(s.0)),
                        Arc::new(Int64Array::from(s.1)),
                        Arc::new(Float64Array::from(s.2)),
                        Arc::new(Float64Array::from(s.3)),
                        Arc::new(Float64Array::from(s.4)),
                        Arc::new(StringArray::from(s.5)),
                        Arc::new(Float32Array::from(s.6)),
                    ],
                ),
                &mut w_src,
                &paths[1],
            ),
            (
                RecordBatch::try_new(
                    xmatch_schema(),
                    vec![
                        Arc::new(Int64Array::from(x.0)),
                        Arc::new(Float64Array::from(x.1)),
                        Arc::new(Float64Array::from(x.2)),
                        Arc::new(Float32Array::from(x.3)),
                    ],
                ),
                &mut w_x,
                &paths[2],
            ),
        ];
        for (batch, w, path) in batches {
            let batch = batch.map_err(|source| LoaderError::Arrow {
                path: path.clone(),
                source,
            })?;
            w.write(&batch).map_err(|source| LoaderError::Parquet {
                path: path.clone(),
                source,
            })?;
        }
        summary.objects += n as u64;
        summary.sources += src_n;
        summary.xmatch += x_n;
        done += n as u64;
    }
    for (w, path) in [(w_obj, &paths[0]), (w_src, &paths[1]), (w_x, &paths[2])] {
        w.close().map_err(|source| LoaderError::Parquet {
            path: path.clone(),
            source,
        })?;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;
    use arrow::datatypes::Float64Type;

    /// Great-circle distance in degrees (haversine), independent of the partitioner and the ADQL kernels.
    fn distance(a: (f64, f64), b: (f64, f64)) -> f64 {
        let (ra1, de1, ra2, de2) = (
            a.0.to_radians(),
            a.1.to_radians(),
            b.0.to_radians(),
            b.1.to_radians(),
        );
        let h = ((de2 - de1) / 2.0).sin().powi(2)
            + de1.cos() * de2.cos() * ((ra2 - ra1) / 2.0).sin().powi(2);
        2.0 * h.sqrt().min(1.0).asin().to_degrees()
    }

    #[test]
    fn every_landmark_has_objects_and_close_pairs() {
        let dir = std::env::temp_dir().join(format!("skyshard-synth-{}", std::process::id()));
        generate(20_000, &dir, 3).unwrap();
        let file = File::open(dir.join("object.parquet")).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let mut positions = Vec::new();
        for b in reader {
            let b = b.unwrap();
            let (ra, dec) = (
                b.column(1).as_primitive::<Float64Type>(),
                b.column(2).as_primitive::<Float64Type>(),
            );
            positions.extend((0..b.num_rows()).map(|i| (ra.value(i), dec.value(i))));
        }
        assert!(
            positions
                .iter()
                .all(|&(a, d)| (0.0..360.0).contains(&a) && (-90.0..=90.0).contains(&d))
        );
        for landmark in LANDMARKS {
            let near: Vec<(f64, f64)> = positions
                .iter()
                .copied()
                .filter(|&p| distance(p, landmark) <= LANDMARK_RADIUS + 0.01)
                .collect();
            assert!(near.len() >= 70, "{landmark:?}: {} objects", near.len());
            let pairs = near
                .iter()
                .enumerate()
                .flat_map(|(i, &p)| near[i + 1..].iter().map(move |&q| distance(p, q)))
                .filter(|&d| d < 5.0 / 3600.0)
                .count();
            assert!(pairs >= 30, "{landmark:?}: {pairs} pairs within 5 arcsec");
        }
        // Both sides of the RA 0/360 seam.
        let seam = |lo: f64, hi: f64| {
            positions
                .iter()
                .filter(|p| p.0 >= lo && p.0 < hi && p.1.abs() < 1.0)
                .count()
        };
        assert!(seam(359.5, 360.0) >= 10 && seam(0.0, 0.5) >= 10);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
