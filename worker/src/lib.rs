//! A skyshard worker: an Arrow Flight server over the chunk files in its data directory.
//!
//! - [`flight`]: the service. `DoGet` runs a plan fragment, `DoPut` receives a load's files, actions `health`,
//!   `cancel`, `drop`, `statistics`.
//! - [`scan`]: where a worker reads a chunk file: a fragment's chunk-scan leaves become DataFusion Parquet scans of
//!   `DATA/tables/SCHEMA.TABLE/LOAD/chunks/UNIQ.parquet` (and the overlap file beside it when asked), row groups cut
//!   by `_hpx29` ranges.
//! - [`store`]: what the worker holds (puts written atomically, drops, statistics).
//! - `pread_store`: the object store the scans read through (positioned reads on the calling thread).
//! - [`error`]: [`WorkerError`] and its gRPC codes.
//!
//! Architecture invariant: a worker holds no per-query state after a query's streams end (the abort handles of a
//! query live as long as its streams).

pub mod error;
pub mod flight;
mod pread_store;
pub mod scan;
pub mod store;

pub use error::WorkerError;
pub use flight::Worker;
pub use scan::{LocalFiles, session};
