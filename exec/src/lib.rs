//! Execution nodes that czar and workers share, and how fragments built from them travel.
//!
//! The czar plans an ADQL query with DataFusion; the part of the physical plan that runs chunk by chunk (scan,
//! filters, projections, partial aggregates, per-chunk top-k, chunk-local joins) is a *fragment*. Its leaves are
//! [`ChunkScanExec`]s; a chunk-local cross-match is a [`ConeJoinExec`]. A fragment travels as a DataFusion physical
//! plan encoded with `datafusion-proto` ([`encode_fragment`]), our nodes written by [`Codec`] as their `protocol`
//! messages; a worker decodes it with [`decode_fragment`] and a [`ScanFactory`] that turns each chunk scan into a scan
//! of its own files. ADQL's functions travel by name: both sides register the same UDFs.

mod codec;
mod cone_join;
mod scan;

pub use codec::{Codec, decode_fragment, encode_filter, encode_fragment, encode_schema};
pub use cone_join::ConeJoinExec;
pub use scan::{ChunkScanExec, ScanFactory, leaf_properties};
