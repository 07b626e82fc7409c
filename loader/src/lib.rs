//! Turning a data release into skyshard chunks: `synth` writes a synthetic release (`skyshard gen`), `partition` cuts Parquet input
//! into one Parquet file per HEALPix chunk (plus its overlap file), rows sorted by their depth-29 HEALPix index.

pub mod error;
pub mod ingest;
pub mod input;
pub mod synth;
pub mod partition;
pub mod progress;
pub mod skymap;

pub use error::{LoaderError, Result};
