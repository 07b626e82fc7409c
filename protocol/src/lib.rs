//! The wire between the czar and its workers: protobuf messages (written with prost's derive, no `protoc`) and
//! the error codes every layer shares.
//!
//! Queries: a plan fragment (see the `exec` crate) travels in a Flight `DoGet` ticket ([`FragmentTicket`]); its
//! chunk-scan leaves are [`ChunkScan`] messages, a chunk-local cross-match a [`ConeJoin`]. Loads: `DoPut` with a
//! descriptor path `[SCHEMA.TABLE, LOAD, chunks/NAME.parquet | replicated/NAME.parquet]`.
//!
//! Actions (`DoAction` type, body): `health` (empty) -> [`Health`]; `cancel` ([`Cancel`]) -> empty; `drop`
//! ([`DropTable`]) -> empty; `statistics` (empty) -> [`Statistics`].
//!
//! Failures: [`ErrorCode`] is the one mapping from the kind of a failure to its gRPC code and HTTP status, and
//! says whether another replica may succeed where one failed.

mod error;

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
/// columns; `ranges` restrict the `_hpx29` index (inclusive bounds) and are only an optimisation: the filters alone
/// decide which rows qualify.
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
