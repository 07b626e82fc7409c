//! How fragments travel: a DataFusion physical plan encoded with `datafusion-proto`, our own nodes
//! ([`ChunkScanExec`], [`ConeJoinExec`]) written by [`Codec`] as their `protocol` messages behind a one-byte kind.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::bytes::Serializeable;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use prost::Message;
use protocol::{ChunkScan, ConeJoin};

use crate::cone_join::ConeJoinExec;
use crate::scan::{ChunkScanExec, ScanFactory};

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
        if *kind != NODE_CHUNK_SCAN {
            return Err(DataFusionError::Internal(format!(
                "unknown node kind {kind} in a fragment (this worker knows {NODE_CHUNK_SCAN} and {NODE_CONE_JOIN}): \
                 are the czar and the worker the same version?"
            )));
        }
        let factory = self
            .factory
            .as_ref()
            .ok_or_else(|| DataFusionError::Internal("this node cannot run chunk scans".into()))?;
        let scan = ChunkScan::decode(buf).map_err(|e| proto_err("chunk scan", e))?;
        if scan.schema.is_empty() {
            return Err(DataFusionError::Internal(
                "a chunk scan without a schema: the fragment is cut short".into(),
            ));
        }
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
