//! [`ConeJoinExec`]: the pairs of rows within a radius of each other, partition by partition (chunk by chunk).
//! The czar puts it in place of a nested-loop join whose filter confines pairs to a circle (`CONTAINS(POINT,
//! CIRCLE) = 1` or `DISTANCE < r`) when the radius fits in the overlap: partition i of the left input (a chunk's
//! own rows) meets partition i of the right input (the same chunk's rows and its overlap), so every pair closer
//! than the overlap radius is found exactly once. The exact join filter still runs above it; this node only has to
//! produce a superset of the qualifying pairs, and it produces the pairs closer than the radius plus a margin.
//!
//! Algorithm: the right partition is collected and sorted by declination; each left row looks up its declination
//! band with a binary search and tests the candidates' angular distance. Memory: the right partition (one chunk).

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{concat_batches, take};
use datafusion::arrow::datatypes::{DataType, Float64Type, Schema, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use futures::{StreamExt, TryStreamExt};
use protocol::ConeJoin;

/// Pairs of rows (left ++ right columns) closer than `radius` degrees, partition by partition.
#[derive(Debug, Clone)]
pub struct ConeJoinExec {
    pub left: Arc<dyn ExecutionPlan>,
    pub right: Arc<dyn ExecutionPlan>,
    pub spec: ConeJoin,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl ConeJoinExec {
    pub fn try_new(
        left: Arc<dyn ExecutionPlan>,
        right: Arc<dyn ExecutionPlan>,
        spec: ConeJoin,
    ) -> Result<ConeJoinExec> {
        for (plan, columns) in [
            (&left, [spec.left_ra, spec.left_dec]),
            (&right, [spec.right_ra, spec.right_dec]),
        ] {
            for c in columns {
                let schema = plan.schema();
                let f = schema.fields().get(c as usize).ok_or_else(|| {
                    DataFusionError::Internal(format!("cone join: no column {c}"))
                })?;
                if f.data_type() != &DataType::Float64 {
                    return Err(DataFusionError::Internal(format!(
                        "cone join: position column {} is {}, not double",
                        f.name(),
                        f.data_type()
                    )));
                }
            }
        }
        let fields: Vec<_> = left
            .schema()
            .fields()
            .iter()
            .chain(right.schema().fields().iter())
            .map(|f| f.as_ref().clone())
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let partitions = left.properties().partitioning.partition_count();
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Ok(ConeJoinExec {
            left,
            right,
            spec,
            schema,
            properties,
        })
    }
}

impl DisplayAs for ConeJoinExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "ConeJoinExec: radius={} deg, left=({}, {}), right=({}, {})",
            self.spec.radius,
            self.spec.left_ra,
            self.spec.left_dec,
            self.spec.right_ra,
            self.spec.right_dec
        )
    }
}

impl ExecutionPlan for ConeJoinExec {
    fn name(&self) -> &str {
        "ConeJoinExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.left, &self.right]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [left, right]: [Arc<dyn ExecutionPlan>; 2] = children
            .try_into()
            .map_err(|_| DataFusionError::Internal("cone join has two inputs".into()))?;
        Ok(Arc::new(ConeJoinExec::try_new(
            left,
            right,
            self.spec.clone(),
        )?))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let right = self.right.execute(partition, context.clone())?;
        let left = self.left.execute(partition, context)?;
        let right_schema = self.right.schema();
        let schema = self.schema.clone();
        let spec = self.spec.clone();
        let stream = futures::stream::once(async move {
            let batches: Vec<RecordBatch> = right.try_collect().await?;
            let build = Arc::new(Build::new(
                concat_batches(&right_schema, &batches)?,
                spec.right_ra as usize,
                spec.right_dec as usize,
            ));
            let schema2 = schema.clone();
            Ok::<_, DataFusionError>(
                left.map(move |batch| batch.and_then(|b| build.probe(&b, &spec, &schema2))),
            )
        })
        .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            stream,
        )))
    }
}

/// The right side, sorted by declination.
struct Build {
    batch: RecordBatch,
    /// Row numbers in declination order, with their declination, right ascension and unit vector.
    order: Vec<u32>,
    dec: Vec<f64>,
    xyz: Vec<[f64; 3]>,
}

fn unit(ra: f64, dec: f64) -> [f64; 3] {
    let (ra, dec) = (ra.to_radians(), dec.to_radians());
    [dec.cos() * ra.cos(), dec.cos() * ra.sin(), dec.sin()]
}

impl Build {
    fn new(batch: RecordBatch, ra: usize, dec: usize) -> Build {
        let ras = batch.column(ra).as_primitive::<Float64Type>().clone();
        let decs = batch.column(dec).as_primitive::<Float64Type>().clone();
        let mut order: Vec<u32> = (0..batch.num_rows() as u32)
            .filter(|&i| {
                let i = i as usize;
                !ras.is_null(i) && !decs.is_null(i) && decs.value(i).is_finite()
            })
            .collect();
        order.sort_unstable_by(|&a, &b| decs.value(a as usize).total_cmp(&decs.value(b as usize)));
        let dec = order.iter().map(|&i| decs.value(i as usize)).collect();
        let xyz = order
            .iter()
            .map(|&i| unit(ras.value(i as usize), decs.value(i as usize)))
            .collect();
        Build {
            batch,
            order,
            dec,
            xyz,
        }
    }

    /// The pairs of `left`'s rows with the build rows within the radius, as left ++ right columns.
    fn probe(
        &self,
        left: &RecordBatch,
        spec: &ConeJoin,
        schema: &SchemaRef,
    ) -> Result<RecordBatch> {
        let ras = left
            .column(spec.left_ra as usize)
            .as_primitive::<Float64Type>();
        let decs = left
            .column(spec.left_dec as usize)
            .as_primitive::<Float64Type>();
        // A margin keeps pairs at the radius itself for the exact filter above to decide.
        let r = spec.radius * (1.0 + 1e-9) + 1e-12;
        // Chord length for the radius: |a - b|^2 <= chord^2.
        let chord = 2.0 * (r.to_radians() / 2.0).sin();
        let chord2 = chord * chord;
        let mut li: Vec<u32> = Vec::new();
        let mut ri: Vec<u32> = Vec::new();
        for i in 0..left.num_rows() {
            if ras.is_null(i) || decs.is_null(i) {
                continue;
            }
            let (ra, dec) = (ras.value(i), decs.value(i));
            if !dec.is_finite() || !ra.is_finite() {
                continue;
            }
            let p = unit(ra, dec);
            let start = self.dec.partition_point(|&d| d < dec - r);
            for k in start..self.dec.len() {
                if self.dec[k] > dec + r {
                    break;
                }
                let q = self.xyz[k];
                let d2 = (p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2) + (p[2] - q[2]).powi(2);
                if d2 <= chord2 {
                    li.push(i as u32);
                    ri.push(self.order[k]);
                }
            }
        }
        let li = UInt32Array::from(li);
        let ri = UInt32Array::from(ri);
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        for c in left.columns() {
            columns.push(take(c.as_ref(), &li, None)?);
        }
        for c in self.batch.columns() {
            columns.push(take(c.as_ref(), &ri, None)?);
        }
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    }
}
