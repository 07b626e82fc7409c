//! The wire between the czar and its workers.
//!
//! Queries: the czar plans an ADQL query with DataFusion; the part of the physical plan that runs per chunk (scan,
//! filters, projections, partial aggregates, per-chunk top-k) is a *fragment*. It travels as a DataFusion physical
//! plan (`datafusion-proto`) in a Flight `DoGet` ticket ([`FragmentTicket`]); its leaf is a [`ChunkScanExec`],
//! encoded by [`Codec`] as a [`ChunkScan`] message, which a worker turns into a scan of its local chunk files. ADQL's
//! functions travel by name: both sides register the same UDFs. A fragment may also join two chunk scans of the
//! same chunk: a hash join on a director-child key, or a [`ConeJoinExec`] (pairs within a radius, with the overlap).
//!
//! Actions (`DoAction` type, body): `health` (empty) -> [`Health`]; `cancel` ([`Cancel`]) -> empty; `drop`
//! ([`DropTable`]) -> empty; `statistics` (empty) -> [`Statistics`].

mod join;
mod scan;

pub use join::{ConeJoin, ConeJoinExec};
pub use scan::{
    ChunkScanExec, Codec, ScanFactory, decode_fragment, encode_filter, encode_fragment,
    encode_schema, leaf_properties,
};

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

pub const ACTION_HEALTH: &str = "health";
pub const ACTION_CANCEL: &str = "cancel";
/// Body [`DropTable`], answer empty.
pub const ACTION_DROP: &str = "drop";
/// Body empty, answer [`Statistics`].
pub const ACTION_STATISTICS: &str = "statistics";
