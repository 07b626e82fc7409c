//! The fragment leaf: [`ChunkScanExec`] at the czar, encoded as a [`ChunkScan`], and a worker's local scan after
//! decoding.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use datafusion_proto::bytes::Serializeable;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use prost::Message;

use crate::ChunkScan;
use crate::join::{ConeJoin, ConeJoinExec};

/// The rows of one table in a set of chunks: one output partition per chunk. Only a placeholder at the czar (the
/// fragment above it is shipped to workers, see `czar::fragment`); executing it there is an error.
#[derive(Debug, Clone)]
pub struct ChunkScanExec {
    /// The scan, with all chunks.
    pub scan: ChunkScan,
    /// Output schema (the projection of the table's visible schema).
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

/// The properties of a scan leaf (ours at the czar and on workers): bounded, incremental, unordered partitions.
pub fn leaf_properties(schema: &SchemaRef, partitions: usize) -> Arc<PlanProperties> {
    Arc::new(PlanProperties::new(
        EquivalenceProperties::new(schema.clone()),
        Partitioning::UnknownPartitioning(partitions),
        EmissionType::Incremental,
        Boundedness::Bounded,
    ))
}

impl ChunkScanExec {
    pub fn new(scan: ChunkScan, schema: SchemaRef) -> ChunkScanExec {
        let properties = leaf_properties(&schema, scan.chunks.len().max(1));
        ChunkScanExec {
            scan,
            schema,
            properties,
        }
    }

    /// The same scan restricted to one of its chunks (partition `i`).
    pub fn for_partition(&self, i: usize) -> ChunkScanExec {
        let mut scan = self.scan.clone();
        if !scan.chunks.is_empty() {
            scan.chunks = vec![scan.chunks[i]];
        }
        ChunkScanExec::new(scan, self.schema.clone())
    }
}

impl DisplayAs for ChunkScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let columns: Vec<&str> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        write!(
            f,
            "ChunkScanExec: {} chunks of {} [{}]",
            self.scan.chunks.len(),
            self.scan.table,
            columns.join(", ")
        )?;
        if !self.scan.filters.is_empty() {
            write!(f, ", {} filters", self.scan.filters.len())?;
        }
        if !self.scan.ranges.is_empty() {
            write!(f, ", {} index ranges", self.scan.ranges.len())?;
        }
        if self.scan.overlap {
            write!(f, ", with overlap")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for ChunkScanExec {
    fn name(&self) -> &str {
        "ChunkScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        Err(DataFusionError::Internal(
            "a chunk scan runs on a worker; the czar ships the fragment above it".into(),
        ))
    }
}

/// How a worker turns a decoded [`ChunkScan`] into a plan over its own files.
pub trait ScanFactory: fmt::Debug + Send + Sync {
    /// `schema`: the table's visible schema; `filters`: decoded, over its columns.
    fn local_scan(
        &self,
        scan: ChunkScan,
        schema: SchemaRef,
        filters: Vec<Expr>,
    ) -> Result<Arc<dyn ExecutionPlan>>;
}

/// Encodes [`ChunkScanExec`] leaves; decoding (on a worker) needs a [`ScanFactory`].
#[derive(Debug, Default)]
pub struct Codec {
    pub factory: Option<Arc<dyn ScanFactory>>,
}

fn proto_err(what: &str, e: impl fmt::Display) -> DataFusionError {
    DataFusionError::Internal(format!("{what}: {e}"))
}

impl PhysicalExtensionCodec for Codec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // The first byte says which of our nodes follows.
        let (kind, buf) = buf
            .split_first()
            .ok_or_else(|| DataFusionError::Internal("empty extension node".into()))?;
        if *kind == NODE_CONE_JOIN {
            let spec = ConeJoin::decode(buf).map_err(|e| proto_err("cone join", e))?;
            let [left, right] = inputs else {
                return Err(DataFusionError::Internal(
                    "a cone join has two inputs".into(),
                ));
            };
            return Ok(Arc::new(ConeJoinExec::try_new(
                left.clone(),
                right.clone(),
                spec,
            )?));
        }
        let factory = self
            .factory
            .as_ref()
            .ok_or_else(|| DataFusionError::Internal("this node cannot run chunk scans".into()))?;
        let scan = ChunkScan::decode(buf).map_err(|e| proto_err("chunk scan", e))?;
        let schema_proto = datafusion_proto::protobuf::Schema::decode(scan.schema.as_slice())
            .map_err(|e| proto_err("chunk scan schema", e))?;
        let schema: Schema = (&schema_proto)
            .try_into()
            .map_err(|e| proto_err("chunk scan schema", e))?;
        let filters = scan
            .filters
            .iter()
            .map(|f| Expr::from_bytes_with_ctx(f, ctx))
            .collect::<Result<Vec<_>>>()?;
        factory.local_scan(scan, Arc::new(schema), filters)
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        if let Some(join) = node.downcast_ref::<ConeJoinExec>() {
            buf.push(NODE_CONE_JOIN);
            return join.spec.encode(buf).map_err(|e| proto_err("cone join", e));
        }
        let scan = node.downcast_ref::<ChunkScanExec>().ok_or_else(|| {
            DataFusionError::NotImplemented(format!("{} cannot run on a worker", node.name()))
        })?;
        buf.push(NODE_CHUNK_SCAN);
        scan.scan
            .encode(buf)
            .map_err(|e| proto_err("chunk scan", e))
    }
}

/// Extension node kinds (the first byte of an encoded node).
const NODE_CHUNK_SCAN: u8 = 1;
const NODE_CONE_JOIN: u8 = 2;

/// Serializes a fragment for a ticket.
pub fn encode_fragment(plan: Arc<dyn ExecutionPlan>) -> Result<Vec<u8>> {
    Ok(
        datafusion_proto::bytes::physical_plan_to_bytes_with_extension_codec(
            plan,
            &Codec::default(),
        )?
        .to_vec(),
    )
}

/// Rebuilds a fragment on a worker, its chunk scans made by `factory`.
pub fn decode_fragment(
    bytes: &[u8],
    ctx: &TaskContext,
    factory: Arc<dyn ScanFactory>,
) -> Result<Arc<dyn ExecutionPlan>> {
    datafusion_proto::bytes::physical_plan_from_bytes_with_extension_codec(
        bytes,
        ctx,
        &Codec {
            factory: Some(factory),
        },
    )
}

/// Encodes a schema for [`ChunkScan::schema`].
pub fn encode_schema(schema: &Schema) -> Result<Vec<u8>> {
    let proto: datafusion_proto::protobuf::Schema =
        schema.try_into().map_err(|e| proto_err("schema", e))?;
    Ok(proto.encode_to_vec())
}

/// Encodes a filter for [`ChunkScan::filters`].
pub fn encode_filter(e: &Expr) -> Result<Vec<u8>> {
    Ok(e.to_bytes()?.to_vec())
}
