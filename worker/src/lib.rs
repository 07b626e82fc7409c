//! A skyshard worker: an Arrow Flight server over the chunk files in its data directory.
//!
//! - [`flight`]: the service. `DoGet` runs a plan fragment, `DoPut` receives a load's files, actions `health`,
//!   `cancel`, `drop`, `statistics`.
//! - [`scan`]: where a worker reads a chunk file: a fragment's chunk-scan leaves read
//!   `DATA/tables/SCHEMA.TABLE/LOAD/chunks/UNIQ.parquet` (and the overlap file beside it when asked) with the Parquet
//!   reader directly (footers cached; row groups, rows and pages cut by `_hpx29` ranges; filters as physical
//!   expressions), no DataFusion planning per chunk.
//! - [`run`]: a worker as one call, [`run::run`] with a [`WorkerConfig`] (what `skyshard worker` does).
//! - [`store`]: what the worker holds (puts written atomically, drops, statistics).
//! - [`error`]: [`WorkerError`] and its gRPC codes.
//!
//! Architecture invariant: a worker holds no per-query state after a query's streams end (the abort handles of a
//! query live as long as its streams).

pub mod error;
pub mod flight;
pub mod run;
pub mod scan;
pub mod store;

pub use error::WorkerError;
pub use flight::Worker;
pub use run::{WorkerConfig, run};
pub use scan::{LocalFiles, session};
