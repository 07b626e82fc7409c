//! `skyshard images`: what the archive makes of an image file (its ObsCore record) and cutouts of it, on this
//! machine, before it is added to an archive.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum ImagesCommand {
    /// Adds FITS images (files, or the .fits/.fit/.fts files under folders) to a data directory's archive: one
    /// ObsCore record each in ivoa.obscore, the files kept under DATA_DIR/images/COLLECTION/; all or nothing.
    Add {
        #[arg(long)]
        data_dir: PathBuf,
        /// `obs_collection`: lower-case letters, digits, _ and -.
        #[arg(long)]
        collection: String,
        /// The authority of `obs_publisher_did` (`ivo://AUTHORITY/images?COLLECTION/OBS_ID`).
        #[arg(long, default_value = "skyshard.local")]
        authority: String,
        /// The service's public base URL, for `access_url` (its DataLink document).
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        base_url: String,
        /// `calib_level` of the images (0 raw ... 3 science-ready and enhanced).
        #[arg(long, default_value_t = 2)]
        calib_level: i64,
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// The ObsCore record of each FITS image, as a JSON line (or its name and why it cannot be read, on stderr).
    Inspect {
        /// `obs_collection` of the records.
        #[arg(long, default_value = "images")]
        collection: String,
        /// The authority of `obs_publisher_did` (`ivo://AUTHORITY/images?COLLECTION/OBS_ID`).
        #[arg(long, default_value = "skyshard.local")]
        authority: String,
        /// Where the archive serves DataLink documents (`access_url` is `URL?ID=DID`).
        #[arg(long, default_value = "http://127.0.0.1:8080/datalink/links")]
        links_url: String,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// A cutout of one image, as SODA makes it: the pixels inside the shape's bounding box, exactly the original's.
    Cutout {
        file: PathBuf,
        /// `CIRCLE ra dec radius`, `POLYGON ra dec ra dec ra dec ...` or `RANGE ra1 ra2 dec1 dec2` (degrees).
        #[arg(long)]
        shape: String,
        /// Where to write the FITS cutout.
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn images(command: ImagesCommand) -> ExitCode {
    match command {
        ImagesCommand::Add {
            data_dir,
            collection,
            authority,
            base_url,
            calib_level,
            paths,
        } => {
            let options = images::record::RecordOptions {
                collection: collection.clone(),
                authority,
                links_url: format!("{}/datalink/links", base_url.trim_end_matches('/')),
                calib_level,
            };
            match crate::obscore::add(&data_dir, &collection, &options, &paths) {
                Ok(records) => {
                    println!(
                        "{} images added to collection {collection} ({})",
                        records.len(),
                        crate::obscore::TABLE
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        ImagesCommand::Inspect {
            collection,
            authority,
            links_url,
            files,
        } => {
            let options = images::record::RecordOptions {
                collection,
                authority,
                links_url,
                calib_level: 2,
            };
            let mut failed = false;
            for file in files {
                match images::Image::open(&file) {
                    Ok(image) => println!("{}", images::ObsRecord::of(&image, &options).to_json()),
                    Err(e) => {
                        eprintln!("{}: {e}", file.display());
                        failed = true;
                    }
                }
            }
            if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        ImagesCommand::Cutout { file, shape, out } => {
            let result = (|| -> Result<String, String> {
                let image = images::Image::open(&file).map_err(|e| format!("{}: {e}", file.display()))?;
                let shape = images::Shape::parse(&shape).map_err(|e| e.to_string())?;
                let Some(cut) = image.bounds(&shape) else {
                    return Ok("the shape misses the image: no cutout written".to_string());
                };
                let mut writer = std::io::BufWriter::new(
                    std::fs::File::create(&out).map_err(|e| format!("{}: {e}", out.display()))?,
                );
                image
                    .write_cutout(cut, &mut writer)
                    .and_then(|_| std::io::Write::flush(&mut writer))
                    .map_err(|e| format!("writing {}: {e}", out.display()))?;
                Ok(format!(
                    "{}: pixels x {}..{}, y {}..{} ({} x {})",
                    out.display(),
                    cut.x0,
                    cut.x1,
                    cut.y0,
                    cut.y1,
                    cut.width(),
                    cut.height()
                ))
            })();
            match result {
                Ok(line) => {
                    println!("{line}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
