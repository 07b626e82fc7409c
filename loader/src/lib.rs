//! Turning a data release into skyshard chunks: `synth` writes a synthetic release (`skyshard gen`), `partition` cuts Parquet input
//! into one Parquet file per HEALPix chunk (plus its overlap file), rows sorted by their depth-29 HEALPix index.

pub mod args;
pub mod columns_meta;
pub mod error;
pub mod fits;
pub mod hats;
pub mod ingest;
pub mod input;
pub mod partition;
pub mod progress;
pub mod skymap;
pub mod synth;

pub use error::{LoaderError, Result};
