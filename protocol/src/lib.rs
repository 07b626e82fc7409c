//! The wire between the czar and its workers: protobuf messages (written with prost's derive, no `protoc`) and
//! the error codes every layer shares.
//!
//! Queries: a plan fragment (see the `exec` crate) travels in a Flight `DoGet` ticket ([`FragmentTicket`]); its
//! chunk-scan leaves are [`ChunkScan`] messages, a chunk-local cross-match a [`ConeJoin`]. Loads: `DoPut` with a
//! descriptor path `[SCHEMA.TABLE, LOAD, chunks/NAME.parquet | replicated/NAME.parquet]`.
//!
//! Actions (`DoAction` type, body): `health` (empty) -> [`Health`]; `cancel` ([`Cancel`]) -> empty; `drop`
//! ([`DropTable`]) -> empty; `statistics` (empty) -> [`Statistics`]; `census` (empty) -> [`Census`]; `fetch`
//! ([`FetchFile`]) -> [`FilePiece`]s; `drop_chunks` ([`DropChunks`]) -> empty (the replica census and healer).
//!
//! Failures: [`ErrorCode`] is the one mapping from the kind of a failure to its gRPC code and HTTP status, and
//! says whether another replica may succeed where one failed.

mod error;
pub mod metrics;

pub use error::ErrorCode;

/// Identifies a query on every worker, for cancelling it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FragmentTicket {
    #[prost(string, tag = "1")]
    pub query_id: String,
    /// A physical plan (`datafusion_proto::protobuf::PhysicalPlanNode`) whose leaves are chunk scans.
    #[prost(bytes = "vec", tag = "2")]
    pub plan: Vec<u8>,
}

/// The rows of one table in one chunk, as the leaf of a fragment.
///
/// Invariants: `chunks` names chunks the receiving worker holds (for a child table with orphans, chunk 0 means
/// its `orphans.parquet`); `schema` is the table's visible schema (lower-case names, no `_hpx29`) and
/// `projection` indexes into it; `filters` are `datafusion_proto` logical expressions over unqualified visible
/// columns; `ranges` restrict the `_hpx29` index (inclusive bounds): rows outside every range are not read (a
/// cone's ranges are a superset of its rows, which the filters then decide; a [`ScanPart`]'s are exact). `parts`
/// exist only at the czar: a fragment is shipped with them resolved into `chunks` and `ranges`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ChunkScan {
    /// `SCHEMA.TABLE`, lower case.
    #[prost(string, tag = "1")]
    pub table: String,
    /// The load whose files to read (a worker refuses a load it does not hold).
    #[prost(string, tag = "2")]
    pub load_id: String,
    #[prost(uint64, repeated, tag = "3")]
    pub chunks: Vec<u64>,
    /// Also read each chunk's overlap file (near-neighbour joins).
    #[prost(bool, tag = "4")]
    pub overlap: bool,
    /// `datafusion_proto_common::Schema`.
    #[prost(bytes = "vec", tag = "5")]
    pub schema: Vec<u8>,
    #[prost(bool, tag = "6")]
    pub projected: bool,
    #[prost(uint32, repeated, tag = "7")]
    pub projection: Vec<u32>,
    #[prost(bytes = "vec", repeated, tag = "8")]
    pub filters: Vec<Vec<u8>>,
    #[prost(message, repeated, tag = "9")]
    pub ranges: Vec<IndexRange>,
    #[prost(uint64, optional, tag = "10")]
    pub limit: Option<u64>,
    /// Replicated tables: the files are under `replicated/`, `chunks` is empty.
    #[prost(bool, tag = "11")]
    pub replicated: bool,
    /// Some `chunks` may have no file of this table (the overlap side of a cone join reads the other side's
    /// chunks). Otherwise a missing chunk file is an error, never an empty chunk.
    #[prost(bool, tag = "12")]
    pub optional_files: bool,
    /// A scan that reads other chunks in each partition (a cross-match of tables with different chunk trees):
    /// partition i reads `parts[i]`, and `chunks[i]` is only the key of that partition (the HEALPix cell it
    /// answers for). Empty for every other scan.
    #[prost(message, repeated, tag = "13")]
    pub parts: Vec<ScanPart>,
}

/// What one partition of a [`ChunkScan`] with `parts` reads.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ScanPart {
    #[prost(uint64, repeated, tag = "1")]
    pub chunks: Vec<u64>,
    /// Replace the scan's `ranges` when not empty (the part reads only the rows of one cell of its chunk).
    #[prost(message, repeated, tag = "2")]
    pub ranges: Vec<IndexRange>,
    /// Worker addresses holding every chunk of the part, for tables shipped to workers' own disks; empty when
    /// the workers share the czar's data directory.
    #[prost(string, repeated, tag = "3")]
    pub holders: Vec<String>,
}

/// How a cone join is encoded in a fragment (its two inputs travel as the node's children).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ConeJoin {
    #[prost(uint32, tag = "1")]
    pub left_ra: u32,
    #[prost(uint32, tag = "2")]
    pub left_dec: u32,
    #[prost(uint32, tag = "3")]
    pub right_ra: u32,
    #[prost(uint32, tag = "4")]
    pub right_dec: u32,
    /// Degrees.
    #[prost(double, tag = "5")]
    pub radius: f64,
}

/// An inclusive range of depth-29 nested HEALPix indexes.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct IndexRange {
    #[prost(int64, tag = "1")]
    pub from: i64,
    #[prost(int64, tag = "2")]
    pub to: i64,
}

/// What a worker says of itself.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Health {
    #[prost(uint32, tag = "1")]
    pub running_fragments: u32,
    #[prost(uint64, tag = "2")]
    pub fragments_served: u64,
    #[prost(string, tag = "3")]
    pub data_dir: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Cancel {
    #[prost(string, tag = "1")]
    pub query_id: String,
}

/// Removes a table's loads from a worker, all but `keep_load` (empty: all of them).
#[derive(Clone, PartialEq, prost::Message)]
pub struct DropTable {
    #[prost(string, tag = "1")]
    pub table: String,
    #[prost(string, tag = "2")]
    pub keep_load: String,
}

/// The loads a worker holds: one entry per table and load.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Statistics {
    #[prost(message, repeated, tag = "1")]
    pub loads: Vec<LoadStatistics>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LoadStatistics {
    #[prost(string, tag = "1")]
    pub table: String,
    #[prost(string, tag = "2")]
    pub load_id: String,
    #[prost(uint64, tag = "3")]
    pub files: u64,
    #[prost(uint64, tag = "4")]
    pub bytes: u64,
}

/// The gRPC metadata key of the cluster secret: a worker given one (`--cluster-secret`) refuses every call that
/// does not carry it, so only its czar can read chunks, ship files or drop tables.
pub const SECRET_HEADER: &str = "x-skyshard-cluster-secret";

/// A worker streaming a fragment sends a message at least this often (a keep-alive with only `app_metadata` when
/// it has no batch ready), so a czar's silence limit applies per message, not per fragment.
pub const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(1);
pub const KEEP_ALIVE_METADATA: &[u8] = b"skyshard:alive";

pub const ACTION_HEALTH: &str = "health";
pub const ACTION_CANCEL: &str = "cancel";
/// Body [`DropTable`], answer empty.
pub const ACTION_DROP: &str = "drop";
/// Body empty, answer [`Statistics`].
pub const ACTION_STATISTICS: &str = "statistics";

/// Body empty, answer [`Census`]: what a worker really holds, asked by the czar's replica census.
pub const ACTION_CENSUS: &str = "census";
/// Body [`FetchFile`], answer a stream of [`FilePiece`]s (the last one carrying the file's SHA-256): a chunk file
/// read back, for copying it to another worker.
pub const ACTION_FETCH: &str = "fetch";
/// Body [`DropChunks`], answer empty: a load's files of some chunks removed (after they moved elsewhere).
pub const ACTION_DROP_CHUNKS: &str = "drop_chunks";
/// A put whose last message carries `app_metadata` starting with this, then the file's SHA-256 in hex, is checked
/// by the worker before it is renamed into place: a copy that does not match is discarded.
pub const SHA256_METADATA: &str = "sha256:";

/// The files a worker holds, by table and load.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Census {
    #[prost(message, repeated, tag = "1")]
    pub loads: Vec<HeldLoad>,
    /// The worker's data directory (workers sharing the czar's have every file already).
    #[prost(string, tag = "2")]
    pub data_dir: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct HeldLoad {
    #[prost(string, tag = "1")]
    pub table: String,
    #[prost(string, tag = "2")]
    pub load_id: String,
    /// Relative to the load: `chunks/NAME.parquet` or `replicated/NAME.parquet`.
    #[prost(message, repeated, tag = "3")]
    pub files: Vec<HeldFile>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct HeldFile {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(uint64, tag = "2")]
    pub bytes: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct FetchFile {
    #[prost(string, tag = "1")]
    pub table: String,
    #[prost(string, tag = "2")]
    pub load_id: String,
    /// `chunks/NAME.parquet` or `replicated/NAME.parquet`.
    #[prost(string, tag = "3")]
    pub file: String,
}

/// A piece of a fetched file; the last piece has `sha256` (hex) set and may be empty.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FilePiece {
    #[prost(bytes = "vec", tag = "1")]
    pub data: Vec<u8>,
    #[prost(string, tag = "2")]
    pub sha256: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DropChunks {
    #[prost(string, tag = "1")]
    pub table: String,
    #[prost(string, tag = "2")]
    pub load_id: String,
    #[prost(uint64, repeated, tag = "3")]
    pub chunks: Vec<u64>,
}

/// Lower-case hex of a digest (the form [`SHA256_METADATA`] and [`FilePiece::sha256`] carry).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
