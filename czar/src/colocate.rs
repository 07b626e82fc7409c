//! Why one long module: the rewrites share their helpers (the chunk narrowing, the radius constraints, the cone
//! pairs, the child-director relation) and each calls the others' entry points; split, they would import each other.
//!
//! Chunk-local joins. Before [`crate::distribute`] cuts the plan, joins whose rows meet inside one chunk
//! are rewritten to work chunk by chunk, so they run on the workers instead of gathering both tables at the czar:
//!
//! - an inner hash join of a child table with its director on the child's key = the director's id: a child row
//!   lives in its director object's chunk, so chunk i of one side only meets chunk i of the other
//!   (`HashJoinExec` in `Partitioned` mode straight over the two chunk scans, both over the chunks they share);
//! - an inner nested-loop join of two director tables with the same chunk map (a near-neighbour self-join, or two
//!   catalogs loaded on one map) whose filter confines pairs to a radius (`CONTAINS(POINT(b), CIRCLE(a, r)) = 1`
//!   or `DISTANCE(a, b) < r`) no larger than the overlap of one side: that side reads each chunk with its overlap
//!   rows, the other without, and a [`ConeJoinExec`] pairs them (the exact filter runs above it). Every pair closer
//!   than the overlap meets in the chunk of the side read without overlap, and only there: each pair exactly once.
//!
//! Joins of three or more tables are rewritten level by level: a join whose side is already chunk-local follows its
//! key or position columns to their tables ([`crate::lineage`]) and stays chunk-local when the same rules hold.
//! Anything else (outer joins, larger radii, unrelated tables) is left as DataFusion planned it: correct, gathered
//! at the czar.


use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::Schema;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{JoinSide, JoinType, Result as DfResult, ScalarValue};
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::expressions::{BinaryExpr, Column};
use datafusion::physical_expr::utils::split_conjunction;
use datafusion::physical_expr::{PhysicalExpr, ScalarFunctionExpr};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::joins::utils::JoinFilter;
use datafusion::physical_plan::joins::{HashJoinExec, NestedLoopJoinExec, PartitionMode};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use exec::{ChunkScanExec, ConeJoinExec};
use metastore::{TableKind, TableRecord};
use partitioner::ChunkId;
use protocol::{ConeJoin, IndexRange, ScanPart};

use crate::catalog::TableInfo;
use crate::cluster::Cluster;
use crate::fragment::{fragment_leaves, keeps_chunked_side, narrow};
use crate::prune::{chunks_near, within_radius};

/// The record of the table a chunk scan reads.
fn record<'a>(
    tables: &'a HashMap<String, Arc<TableInfo>>,
    leaf: &ChunkScanExec,
) -> Option<&'a TableRecord> {
    tables.get(&leaf.scan.table).map(|t| &t.record)
}

/// Rewrites the joins of `plan` that can run chunk by chunk; `tables` by qualified lower-case name.
pub fn colocate(
    plan: Arc<dyn ExecutionPlan>,
    tables: &HashMap<String, Arc<TableInfo>>,
    cluster: &Cluster,
    small: &SmallSides,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    Ok(plan
        .transform_up(|node| {
            let rewritten = if let Some(j) = node.downcast_ref::<HashJoinExec>() {
                match key_join(j, tables)? {
                    Some(n) => Some(n),
                    None => replicated_join(j)?,
                }
            } else if let Some(j) = node.downcast_ref::<NestedLoopJoinExec>() {
                match cone_join(j, tables, cluster)? {
                    Some(n) => Some(n),
                    None => list_join(&node, j, tables, small)?,
                }
            } else {
                None
            };
            Ok(match rewritten {
                Some(n) => Transformed::yes(n),
                None => Transformed::no(node),
            })
        })?
        .data)
}

/// Below the exchanges DataFusion put in to bring partitions together (not one that also keeps only the first rows:
/// a `TOP` in a subquery folded into the exchange would become one per chunk).
fn strip(node: &Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
    let mut node = node.clone();
    while (node.is::<RepartitionExec>() || node.is::<CoalescePartitionsExec>()) && node.fetch().is_none() {
        node = node.children()[0].clone();
    }
    node
}

/// The single chunk scan of a per-chunk subtree (not a replicated table).
fn single_leaf(node: &Arc<dyn ExecutionPlan>) -> Option<ChunkScanExec> {
    match fragment_leaves(node)?.as_slice() {
        [leaf] if !leaf.scan.replicated => Some(leaf.clone()),
        _ => None,
    }
}

/// `node` with its chunk scan reading `chunks` (and the overlap when asked).
fn with_chunks(
    node: Arc<dyn ExecutionPlan>,
    chunks: &[u64],
    overlap: bool,
    optional_files: bool,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    narrow(node, |scan| {
        scan.chunks = chunks.to_vec();
        scan.overlap = overlap;
        scan.optional_files = optional_files;
    })
}

/// The table column a join key of `side` is ([`crate::lineage::origin`]), if it is a plain column of one.
fn origin_name(side: &Arc<dyn ExecutionPlan>, e: &Arc<dyn PhysicalExpr>) -> Option<String> {
    let c = e.downcast_ref::<Column>()?;
    crate::lineage::origin(side, c.index()).map(|(_, name)| name)
}

fn key_join(
    j: &HashJoinExec,
    tables: &HashMap<String, Arc<TableInfo>>,
) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
    if j.join_type != JoinType::Inner {
        return Ok(None);
    }
    let (left, right) = (strip(&j.left), strip(&j.right));
    let (Some(ll), Some(rl)) = (single_leaf(&left), single_leaf(&right)) else {
        return deep_key_join(j, left, right, tables);
    };
    let (Some(lt), Some(rt)) = (record(tables, &ll), record(tables, &rl)) else {
        return Ok(None);
    };
    // By where the columns come from, not by their names here (a subquery may rename another column to the key's).
    let on_key = |left_col: &str, right_col: &str| {
        j.on.iter().any(|(l, r)| {
            origin_name(&left, l).as_deref() == Some(left_col)
                && origin_name(&right, r).as_deref() == Some(right_col)
        })
    };
    let colocated = match (child_key(lt, rt), child_key(rt, lt)) {
        (Some((key, id)), _) => on_key(&key, &id),
        (_, Some((key, id))) => on_key(&id, &key),
        _ => false,
    };
    if !colocated {
        return Ok(None);
    }
    let chunks: Vec<u64> = ll
        .scan
        .chunks
        .iter()
        .copied()
        .filter(|c| rl.scan.chunks.binary_search(c).is_ok())
        .collect();
    partitioned(
        j,
        with_chunks(left, &chunks, false, false)?,
        with_chunks(right, &chunks, false, false)?,
    )
    .map(Some)
}

/// `j` over `left` and `right` as a chunk-by-chunk join: partition i of one side meets partition i of the other.
fn partitioned(
    j: &HashJoinExec,
    left: Arc<dyn ExecutionPlan>,
    right: Arc<dyn ExecutionPlan>,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    Ok(Arc::new(HashJoinExec::try_new(
        left,
        right,
        j.on.clone(),
        j.filter.clone(),
        &j.join_type,
        j.projection.as_ref().map(|p| p.to_vec()),
        PartitionMode::Partitioned,
        j.null_equality,
        j.null_aware,
    )?))
}

/// (child column, director column) of the key relation, if `child` is `director`'s child table.
fn child_key(child: &TableRecord, director: &TableRecord) -> Option<(String, String)> {
    match (&child.kind, &director.kind) {
        (TableKind::Child { director: d, key }, TableKind::Director { id, .. })
            if d.eq_ignore_ascii_case(&director.qualified_name()) =>
        {
            Some((key.to_lowercase(), id.to_lowercase()))
        }
        _ => None,
    }
}

/// The chunk scans of both sides of a join when each side is a per-chunk subtree over tables of one chunk map
/// (every chunked leaf read by chunk, not by cell; replicated tables joined in are under every chunk), with the
/// chunks each side reads (those all of its chunked leaves read): the sides of a join of three or more tables, one
/// side already chunk-local.
#[allow(clippy::type_complexity)]
fn same_map_sides(
    left: &Arc<dyn ExecutionPlan>,
    right: &Arc<dyn ExecutionPlan>,
    tables: &HashMap<String, Arc<TableInfo>>,
) -> Option<(Vec<ChunkScanExec>, Vec<ChunkScanExec>, Vec<u64>, Vec<u64>)> {
    let (l, r) = (fragment_leaves(left)?, fragment_leaves(right)?);
    let chunked = |leaves: &[ChunkScanExec]| -> Vec<ChunkScanExec> {
        leaves.iter().filter(|x| !x.scan.replicated).cloned().collect()
    };
    let (lc, rc) = (chunked(&l), chunked(&r));
    if lc.is_empty() || rc.is_empty() || lc.iter().chain(rc.iter()).any(|x| !x.scan.parts.is_empty()) {
        return None;
    }
    let maps: Vec<&Vec<u64>> = lc
        .iter()
        .chain(rc.iter())
        .map(|x| record(tables, x).map(|t| &t.chunks))
        .collect::<Option<_>>()?;
    if maps.windows(2).any(|w| w[0] != w[1]) {
        return None;
    }
    let read_by_all = |leaves: &[ChunkScanExec]| {
        let mut chunks = leaves[0].scan.chunks.clone();
        for x in &leaves[1..] {
            chunks.retain(|c| x.scan.chunks.contains(c));
        }
        chunks.sort_unstable();
        chunks
    };
    let (lchunks, rchunks) = (read_by_all(&lc), read_by_all(&rc));
    Some((l, r, lchunks, rchunks))
}

/// Every chunk scan of `node` reading `chunks` (keeping whether it reads overlap files; replicated tables as they
/// are).
fn reading(node: Arc<dyn ExecutionPlan>, chunks: &[u64]) -> DfResult<Arc<dyn ExecutionPlan>> {
    narrow(node, |scan| {
        if !scan.replicated {
            scan.chunks = chunks.to_vec();
        }
    })
}

/// A key join of a child with its director where a side is itself a chunk-local join (`object JOIN xmatch ON
/// CONTAINS(...) JOIN source ON source.object_id = object.id`): the key columns are followed to their tables
/// ([`crate::lineage::origin`]); if one is a child's key and the other its director's id, and every table of both
/// sides is on one chunk map, chunk i of one side meets only chunk i of the other.
fn deep_key_join(
    j: &HashJoinExec,
    left: Arc<dyn ExecutionPlan>,
    right: Arc<dyn ExecutionPlan>,
    tables: &HashMap<String, Arc<TableInfo>>,
) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
    let Some((_, _, mut chunks, rchunks)) = same_map_sides(&left, &right, tables) else {
        return Ok(None);
    };
    // An inner key join: a pair's two rows are in the same chunk, so only chunks both sides read.
    chunks.retain(|c| rchunks.contains(c));
    let related = j.on.iter().any(|(a, b)| {
        let (Some(a), Some(b)) = (a.downcast_ref::<Column>(), b.downcast_ref::<Column>()) else {
            return false;
        };
        let (Some((sa, ca)), Some((sb, cb))) = (
            crate::lineage::origin(&left, a.index()),
            crate::lineage::origin(&right, b.index()),
        ) else {
            return false;
        };
        let (Some(ta), Some(tb)) = (record(tables, &sa), record(tables, &sb)) else {
            return false;
        };
        child_key(ta, tb) == Some((ca.clone(), cb.clone())) || child_key(tb, ta) == Some((cb, ca))
    });
    if !related {
        return Ok(None);
    }
    partitioned(j, reading(left, &chunks)?, reading(right, &chunks)?).map(Some)
}

/// A hash join of a chunked side with a replicated table runs under every chunk when [`keeps_chunked_side`].
fn replicated_join(j: &HashJoinExec) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
    let (left, right) = (strip(&j.left), strip(&j.right));
    let (Some(l), Some(r)) = (fragment_leaves(&left), fragment_leaves(&right)) else {
        return Ok(None);
    };
    let replicated = |leaves: &[ChunkScanExec]| leaves.iter().all(|x| x.scan.replicated);
    // One table, or a chunk-local join of several (each partition one chunk): every chunk meets the whole list.
    let single_chunked = |leaves: &[ChunkScanExec]| {
        !leaves.is_empty() && leaves.iter().all(|x| !x.scan.replicated && x.scan.parts.is_empty())
    };
    let mode = if single_chunked(&l)
        && replicated(&r)
        && keeps_chunked_side(j.join_type, JoinSide::Left)
    {
        PartitionMode::Partitioned
    } else if replicated(&l)
        && single_chunked(&r)
        && keeps_chunked_side(j.join_type, JoinSide::Right)
    {
        PartitionMode::CollectLeft
    } else {
        return Ok(None);
    };
    let join = HashJoinExec::try_new(
        left,
        right,
        j.on.clone(),
        j.filter.clone(),
        &j.join_type,
        j.projection.as_ref().map(|p| p.to_vec()),
        mode,
        j.null_equality,
        j.null_aware,
    )?;
    Ok(Some(Arc::new(join)))
}

/// The value of an expression without columns.
fn constant(e: &Arc<dyn PhysicalExpr>) -> Option<f64> {
    let mut has_column = false;
    e.apply(|n| {
        has_column |= n.is::<Column>();
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    })
    .ok()?;
    if has_column {
        return None;
    }
    let batch = RecordBatch::try_new_with_options(
        Arc::new(Schema::empty()),
        vec![],
        &RecordBatchOptions::new().with_row_count(Some(1)),
    )
    .ok()?;
    match e.evaluate(&batch).ok()? {
        ColumnarValue::Scalar(v) => match v.cast_to(&arrow::datatypes::DataType::Float64).ok()? {
            ScalarValue::Float64(Some(x)) => Some(x),
            _ => None,
        },
        ColumnarValue::Array(_) => None,
    }
}

/// A filter conjunct that confines pairs to a radius: (first point's columns, second point's columns, radius in
/// degrees), columns as indexes into the join filter's schema.
fn radius_of(e: &Arc<dyn PhysicalExpr>) -> Option<([usize; 2], [usize; 2], f64)> {
    let b = e.downcast_ref::<BinaryExpr>()?;
    fn call(e: &Arc<dyn PhysicalExpr>) -> Option<(&str, &[Arc<dyn PhysicalExpr>])> {
        e.downcast_ref::<ScalarFunctionExpr>()
            .map(|f| (f.name(), f.args()))
    }
    let (args, r) = within_radius(*b.op(), b.left(), b.right(), call, constant)?;
    let c = |i: usize| args[i].downcast_ref::<Column>().map(|c| c.index());
    Some(([c(0)?, c(1)?], [c(2)?, c(3)?], r))
}

/// Whether column `index` of `schema` is called `want` (case-insensitively).
/// Whether column `index` of `side` is the table column `want` (followed to its scan, not judged by its name here:
/// `(SELECT ra + 1 AS ra, dec FROM ...)` is not the position).
fn named(side: &Arc<dyn ExecutionPlan>, index: usize, want: &str) -> bool {
    crate::lineage::origin(side, index).is_some_and(|(_, name)| name.eq_ignore_ascii_case(want))
}

/// The conjuncts of a join filter that confine a left-side point and a right-side point to a radius: (the left
/// point's (ra, dec) column indexes in the left schema, the right point's in the right schema, radius in degrees).
fn radius_constraints(filter: &JoinFilter) -> Vec<([usize; 2], [usize; 2], f64)> {
    // Where a filter column comes from: (side, index in that side's schema).
    let origin = |i: usize| filter.column_indices().get(i).map(|c| (c.side, c.index));
    split_conjunction(filter.expression())
        .into_iter()
        .filter_map(|conjunct| {
            let (p, q, r) = radius_of(conjunct)?;
            let (p0, p1, q0, q1) = (origin(p[0])?, origin(p[1])?, origin(q[0])?, origin(q[1])?);
            if p0.0 != p1.0 || q0.0 != q1.0 || !r.is_finite() || r < 0.0 {
                return None;
            }
            match (p0.0, q0.0) {
                (JoinSide::Left, JoinSide::Right) => Some(([p0.1, p1.1], [q0.1, q1.1], r)),
                (JoinSide::Right, JoinSide::Left) => Some(([q0.1, q1.1], [p0.1, p1.1], r)),
                _ => None,
            }
        })
        .collect()
}

fn cone_join(
    j: &NestedLoopJoinExec,
    tables: &HashMap<String, Arc<TableInfo>>,
    cluster: &Cluster,
) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
    if *j.join_type() != JoinType::Inner {
        return Ok(None);
    }
    let Some(filter) = j.filter() else {
        return Ok(None);
    };
    let (left, right) = (strip(j.left()), strip(j.right()));
    let (Some(ll), Some(rl)) = (single_leaf(&left), single_leaf(&right)) else {
        return deep_cone_join(j, filter, left, right, tables);
    };
    let (Some(lt), Some(rt)) = (record(tables, &ll), record(tables, &rl)) else {
        return Ok(None);
    };
    let (
        TableKind::Director {
            ra: lra, dec: ldec, ..
        },
        TableKind::Director {
            ra: rra, dec: rdec, ..
        },
    ) = (&lt.kind, &rt.kind)
    else {
        return Ok(None);
    };
    let found = radius_constraints(filter).into_iter().find(|(l, r, _)| {
        named(&left, l[0], lra) && named(&left, l[1], ldec) && named(&right, r[0], rra) && named(&right, r[1], rdec)
    });
    let found = found.map(|(l, r, radius)| (l[0], l[1], r[0], r[1], radius));
    let Some((left_ra, left_dec, right_ra, right_dec, radius)) = found else {
        return Ok(None);
    };
    let (left, right) = if lt.chunks == rt.chunks && (fits(radius, rt) || fits(radius, lt)) {
        // The side read with its overlap must have an overlap at least as wide as the radius; the other side decides
        // which chunks to read (its own rows are read exactly once). The side read with overlap reads the other
        // side's chunks, where it may have no rows of its own.
        let left_overlap = !fits(radius, rt);
        let chunks = if left_overlap {
            rl.scan.chunks.clone()
        } else {
            ll.scan.chunks.clone()
        };
        (
            with_chunks(left, &chunks, left_overlap, left_overlap)?,
            with_chunks(right, &chunks, !left_overlap, !left_overlap)?,
        )
    } else {
        let (Some(li), Some(ri)) = (tables.get(&ll.scan.table), tables.get(&rl.scan.table)) else {
            return Ok(None);
        };
        let Some(aligned) = align(
            Side {
                plan: left,
                leaf: &ll,
                info: li,
            },
            Side {
                plan: right,
                leaf: &rl,
                info: ri,
            },
            radius,
            cluster,
        )?
        else {
            return Ok(None);
        };
        aligned
    };
    cone_pairs(j, filter, left, right, [left_ra, left_dec, right_ra, right_dec], radius).map(Some)
}

/// A cross-match where one side is itself a chunk-local join (`object JOIN source ON ... JOIN xmatch ON
/// CONTAINS(...)`): the positions are followed to their director tables ([`crate::lineage::origin`]); with every
/// table on one chunk map and the radius within the overlap of a side that is a single table, that side reads each
/// chunk with its overlap and the other side each chunk as it is: each pair meets once, in the chunk of its row on
/// the other side.
fn deep_cone_join(
    j: &NestedLoopJoinExec,
    filter: &JoinFilter,
    left: Arc<dyn ExecutionPlan>,
    right: Arc<dyn ExecutionPlan>,
    tables: &HashMap<String, Arc<TableInfo>>,
) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
    let Some((l, r, lchunks, rchunks)) = same_map_sides(&left, &right, tables) else {
        return Ok(None);
    };
    // The director table both position columns of a side come from.
    let director = |side: &Arc<dyn ExecutionPlan>, [ra, dec]: [usize; 2]| -> Option<TableRecord> {
        let ((a, ra), (b, dec)) = (crate::lineage::origin(side, ra)?, crate::lineage::origin(side, dec)?);
        let t = record(tables, &a)?;
        match &t.kind {
            TableKind::Director { ra: r, dec: d, .. }
                if a.scan.table == b.scan.table && r.eq_ignore_ascii_case(&ra) && d.eq_ignore_ascii_case(&dec) =>
            {
                Some(t.clone())
            }
            _ => None,
        }
    };
    for (lc, rc, radius) in radius_constraints(filter) {
        let (Some(lt), Some(rt)) = (director(&left, lc), director(&right, rc)) else {
            continue;
        };
        // The side read with its overlap: a single table whose overlap reaches the radius.
        let (left_around, right_around) = (
            l.len() == 1 && !l[0].scan.overlap && fits(radius, &lt),
            r.len() == 1 && !r[0].scan.overlap && fits(radius, &rt),
        );
        // The other side decides the chunks (its rows are each read once, in their own chunk); the side read with
        // overlap reads those, where it may have no rows of its own, whatever its own filters pruned (a partner
        // within the radius of a row can lie in a chunk the partner's table would not read).
        let (left, right) = if right_around {
            (reading(left.clone(), &lchunks)?, with_chunks(right.clone(), &lchunks, true, true)?)
        } else if left_around {
            (with_chunks(left.clone(), &rchunks, true, true)?, reading(right.clone(), &rchunks)?)
        } else {
            continue;
        };
        return cone_pairs(j, filter, left, right, [lc[0], lc[1], rc[0], rc[1]], radius).map(Some);
    }
    Ok(None)
}

/// The cone join of `left` and `right` (partition i of each the same chunk or cell), its exact filter above it and
/// the join's projection.
fn cone_pairs(
    j: &NestedLoopJoinExec,
    filter: &JoinFilter,
    left: Arc<dyn ExecutionPlan>,
    right: Arc<dyn ExecutionPlan>,
    [left_ra, left_dec, right_ra, right_dec]: [usize; 4],
    radius: f64,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    let left_len = left.schema().fields().len();
    let pairs: Arc<dyn ExecutionPlan> = Arc::new(ConeJoinExec::try_new(
        left,
        right,
        ConeJoin {
            left_ra: left_ra as u32,
            left_dec: left_dec as u32,
            right_ra: right_ra as u32,
            right_dec: right_dec as u32,
            radius,
        },
    )?);
    let predicate = concat_columns(filter, left_len)?;
    let filtered: Arc<dyn ExecutionPlan> = Arc::new(FilterExec::try_new(predicate, pairs)?);
    let out = match j.projection() {
        Some(p) => {
            let schema = filtered.schema();
            let exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = p
                .iter()
                .map(|&i| {
                    let name = schema.field(i).name().clone();
                    (
                        Arc::new(Column::new(&name, i)) as Arc<dyn PhysicalExpr>,
                        name,
                    )
                })
                .collect();
            Arc::new(ProjectionExec::try_new(exprs, filtered)?) as Arc<dyn ExecutionPlan>
        }
        None => filtered,
    };
    Ok(out)
}

/// Whether a table's overlap copies reach `radius` degrees.
fn fits(radius: f64, table: &TableRecord) -> bool {
    radius <= table.overlap_arcsec / 3600.0
}

/// One input of a cross-match being aligned: its subtree, the chunk scan in it, and its table.
struct Side<'a> {
    plan: Arc<dyn ExecutionPlan>,
    leaf: &'a ChunkScanExec,
    info: &'a TableInfo,
}

/// Lines up two director tables whose chunk trees differ (or whose overlap is narrower than the radius) so their
/// cross-match still runs chunk by chunk on the workers. Chunk ids are HEALPix cells, so a chunk of one tree either
/// contains or lies inside each chunk of the other it shares sky with: the *cells* of the join are the finer of
/// each such pair, and they tile the sky of the chunks read. Each cell is one partition: the *own* side (read without
/// overlap) reads its chunk holding the cell, restricted to the cell's index range, so each of its rows is in
/// exactly one partition; the *around* side reads every row within the radius of the cell: its chunk holding the
/// cell with its overlap when the radius fits in that overlap, else the own rows of all its chunks near the cell
/// ([`partitioner::ChunkMap::near`]). Every pair is found once, in the partition of its own-side row.
///
/// Returns the two subtrees with [`ScanPart`]s, or None when they cannot run on workers: a table without a chunk
/// map, or tables shipped to workers where no worker holds a cell's chunks of both (then it is gathered at the czar,
/// as before).
fn align(
    left: Side,
    right: Side,
    radius: f64,
    cluster: &Cluster,
) -> DfResult<Option<(Arc<dyn ExecutionPlan>, Arc<dyn ExecutionPlan>)>> {
    let fits = |s: &Side| fits(radius, &s.info.record);
    // The right side is the build side of the cone join: it reads around the cell unless only the left's overlap
    // is wide enough.
    let own_is_left = fits(&right) || !fits(&left);
    let (own, around) = if own_is_left {
        (&left, &right)
    } else {
        (&right, &left)
    };
    let with_overlap = fits(around);
    let Some(map) = &around.info.map else {
        return Ok(None);
    };
    let shipped = (
        !own.info.placement.is_empty(),
        !around.info.placement.is_empty(),
    );
    if shipped.0 != shipped.1 {
        return Ok(None);
    }
    let addresses = |chunk: u64, info: &TableInfo| -> Vec<String> {
        cluster
            .holders(chunk, Some(&info.placement))
            .iter()
            .map(|w| w.address.clone())
            .collect()
    };
    // Around-side chunks that can hold a qualifying row: with a file, and left by its own pruning.
    let readable = |c: &ChunkId| around.leaf.scan.chunks.binary_search(&c.0).is_ok();
    let mut units: Vec<(u64, ScanPart, ScanPart)> = Vec::new();
    for &chunk in &own.leaf.scan.chunks {
        let chunk = ChunkId(chunk);
        let theirs = map.overlapping(chunk);
        let cells: Vec<(ChunkId, ChunkId)> = match theirs.as_slice() {
            [one] if one.contains(chunk) => vec![(chunk, *one)],
            inside => inside.iter().map(|&c| (c, c)).collect(),
        };
        let own_holders = if shipped.0 {
            addresses(chunk.0, own.info)
        } else {
            Vec::new()
        };
        for (cell, holding) in cells {
            let Some(ranges) = cell_ranges(&own.leaf.scan.ranges, chunk, cell) else {
                continue;
            };
            let read: Vec<u64> = if with_overlap {
                vec![holding.0]
            } else {
                map.near(cell, radius)
                    .into_iter()
                    .filter(readable)
                    .map(|c| c.0)
                    .collect()
            };
            if read.is_empty() {
                continue;
            }
            let holders = if shipped.0 {
                let mut common = own_holders.clone();
                for &c in &read {
                    let theirs = addresses(c, around.info);
                    common.retain(|a| theirs.contains(a));
                }
                if common.is_empty() {
                    return Ok(None);
                }
                common
            } else {
                Vec::new()
            };
            let own_part = ScanPart {
                chunks: vec![chunk.0],
                ranges,
                holders: holders.clone(),
            };
            let around_part = ScanPart {
                chunks: read,
                ranges: Vec::new(),
                holders,
            };
            units.push((cell.0, own_part, around_part));
        }
    }
    units.sort_by_key(|u| u.0);
    let keys: Vec<u64> = units.iter().map(|u| u.0).collect();
    let (own_parts, around_parts): (Vec<ScanPart>, Vec<ScanPart>) =
        units.into_iter().map(|(_, o, a)| (o, a)).unzip();
    let own_plan = narrow(own.plan.clone(), |scan| {
        scan.chunks = keys.clone();
        scan.parts = own_parts.clone();
        scan.overlap = false;
        scan.optional_files = false;
    })?;
    let around_plan = narrow(around.plan.clone(), |scan| {
        scan.chunks = keys.clone();
        scan.parts = around_parts.clone();
        scan.overlap = with_overlap;
        scan.optional_files = true;
    })?;
    Ok(Some(if own_is_left {
        (own_plan, around_plan)
    } else {
        (around_plan, own_plan)
    }))
}

/// The index ranges that read the rows of `cell` in `chunk` (which holds it): the scan's own ranges (empty: the
/// whole chunk) cut to the cell; None if nothing of the cell is left.
fn cell_ranges(scan: &[IndexRange], chunk: ChunkId, cell: ChunkId) -> Option<Vec<IndexRange>> {
    if cell == chunk {
        return Some(scan.to_vec());
    }
    let span = cell.range_at(29);
    let (from, to) = (span.start as i64, span.end as i64 - 1);
    if scan.is_empty() {
        return Some(vec![IndexRange { from, to }]);
    }
    let cut: Vec<IndexRange> = scan
        .iter()
        .filter(|r| r.from <= to && r.to >= from)
        .map(|r| IndexRange {
            from: r.from.max(from),
            to: r.to.min(to),
        })
        .collect();
    (!cut.is_empty()).then_some(cut)
}

/// The rows of the small sides a list join may use, by node (`Arc::as_ptr`): every input of a nested-loop join
/// with no chunk scan below it (an upload, a constant list) and at most [`LIST_ROWS`] rows, computed before the
/// rewrite (planning is async; the rewrite is not, and must not block a thread on a plan).
pub(crate) type SmallSides = HashMap<usize, Vec<arrow::array::RecordBatch>>;

/// Rows of an uploaded list a list join reads at most; a longer list is joined at the czar as planned.
const LIST_ROWS: usize = 200_000;

fn node_key(plan: &Arc<dyn ExecutionPlan>) -> usize {
    Arc::as_ptr(plan) as *const () as usize
}

/// [`SmallSides`] of `plan`.
pub(crate) async fn small_sides(plan: &Arc<dyn ExecutionPlan>) -> SmallSides {
    let mut candidates = Vec::new();
    let _ = plan.apply(|n| {
        if n.is::<NestedLoopJoinExec>() {
            for child in n.children() {
                // As the rewrite sees it (below repartitions and coalesces).
                let child = strip(child);
                let mut chunked = false;
                let _ = child.apply(|c| {
                    chunked |= c.is::<ChunkScanExec>();
                    Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
                });
                if !chunked {
                    candidates.push(child.clone());
                }
            }
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    });
    let mut sides = SmallSides::new();
    for side in candidates {
        let ctx = Arc::new(datafusion::execution::TaskContext::default());
        let Ok(batches) = datafusion::physical_plan::collect(side.clone(), ctx).await else {
            continue;
        };
        if batches.iter().map(|b| b.num_rows()).sum::<usize>() <= LIST_ROWS {
            sides.insert(node_key(&side), batches);
        }
    }
    sides
}

/// A user's list (an upload) cross-matched with a director table at the czar: the table's scan is narrowed to the
/// chunks the list's cones touch, so only those chunks are read (instead of the whole table).
fn list_join(
    node: &Arc<dyn ExecutionPlan>,
    j: &NestedLoopJoinExec,
    tables: &HashMap<String, Arc<TableInfo>>,
    small: &SmallSides,
) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
    if !matches!(
        j.join_type(),
        JoinType::Inner
            | JoinType::Left
            | JoinType::LeftSemi
            | JoinType::Right
            | JoinType::RightSemi
    ) {
        return Ok(None);
    }
    let Some(filter) = j.filter() else {
        return Ok(None);
    };
    let (left, right) = (strip(j.left()), strip(j.right()));
    // Which side is the table: the other must be small rows without chunk scans.
    let (table_side, list_side) = match (single_leaf(&left), single_leaf(&right)) {
        (Some(leaf), None) => ((JoinSide::Left, leaf), (JoinSide::Right, right.clone())),
        (None, Some(leaf)) => ((JoinSide::Right, leaf), (JoinSide::Left, left.clone())),
        _ => return Ok(None),
    };
    // Outer joins must preserve the list side, never the table side (pruning drops unmatched table rows).
    let table_preserved = matches!(
        (j.join_type(), table_side.0),
        (JoinType::Left | JoinType::LeftSemi, JoinSide::Left)
            | (JoinType::Right | JoinType::RightSemi, JoinSide::Right)
    );
    if table_preserved {
        return Ok(None);
    }
    let Some(info) = tables.get(&table_side.1.scan.table) else {
        return Ok(None);
    };
    let record = &info.record;
    let TableKind::Director { ra, dec, .. } = &record.kind else {
        return Ok(None);
    };
    let table_plan = if table_side.0 == JoinSide::Left {
        left.clone()
    } else {
        right.clone()
    };
    let found = radius_constraints(filter)
        .into_iter()
        .find_map(|(l, r, radius)| {
            let (table_point, list_point) = if table_side.0 == JoinSide::Left {
                (l, r)
            } else {
                (r, l)
            };
            (named(&table_plan, table_point[0], ra) && named(&table_plan, table_point[1], dec))
                .then_some((list_point[0], list_point[1], radius))
        });
    let Some((list_ra, list_dec, radius)) = found else {
        return Ok(None);
    };
    let Some(batches) = small.get(&node_key(&list_side.1)) else {
        return Ok(None);
    };
    // The table's chunk map, built once when the catalog was read.
    let Some(map) = &info.map else {
        return Ok(None);
    };
    let Some(touched) = chunks_near(map, batches, list_ra, list_dec, radius) else {
        return Ok(None);
    };
    let chunks: Vec<u64> = table_side
        .1
        .scan
        .chunks
        .iter()
        .copied()
        .filter(|c| touched.contains(c))
        .collect();
    // A list that fits comfortably in a Flight ticket (the workers take 64 MiB messages) travels with each fragment.
    let bytes: usize = batches.iter().map(|b| b.get_array_memory_size()).sum();
    if *j.join_type() == JoinType::Inner && bytes <= BROADCAST_BYTES {
        return broadcast(
            node,
            table_side.0,
            &left,
            &right,
            &list_side.1,
            batches.clone(),
            &chunks,
        )
        .map(Some);
    }
    let narrowed = |side: &Arc<dyn ExecutionPlan>| with_chunks(side.clone(), &chunks, false, false);
    let children = if table_side.0 == JoinSide::Left {
        vec![narrowed(j.left())?, j.right().clone()]
    } else {
        vec![j.left().clone(), narrowed(j.right())?]
    };
    Ok(Some(
        datafusion::physical_plan::execution_plan::replace_children_if_necessary(
            node.clone(),
            children,
        )?,
    ))
}

/// The largest list (in memory) sent inside each fragment; larger ones are joined at the czar.
const BROADCAST_BYTES: usize = 16 << 20;

/// An inner join of a list with a table, broadcast: the list's rows (already computed) become the join's build side
/// in memory, the table's scan (its own rows in the touched chunks, no overlap) its probe side, one partition per
/// chunk, so [`crate::distribute`] sends the whole join to the workers with the list inside each fragment
/// ([`crate::fragment`]). Each pair is found once, in the chunk of its table row. The output keeps the join's
/// column order.
fn broadcast(
    node: &Arc<dyn ExecutionPlan>,
    table_side: JoinSide,
    left: &Arc<dyn ExecutionPlan>,
    right: &Arc<dyn ExecutionPlan>,
    list: &Arc<dyn ExecutionPlan>,
    batches: Vec<arrow::array::RecordBatch>,
    chunks: &[u64],
) -> DfResult<Arc<dyn ExecutionPlan>> {
    use datafusion::datasource::memory::MemorySourceConfig;
    let table = if table_side == JoinSide::Left {
        left
    } else {
        right
    };
    let table = with_chunks(table.clone(), chunks, false, false)?;
    let rows = MemorySourceConfig::try_new_exec(&[batches], list.schema(), None)?
        as Arc<dyn ExecutionPlan>;
    let children = if table_side == JoinSide::Left {
        vec![table, rows]
    } else {
        vec![rows, table]
    };
    let join = datafusion::physical_plan::execution_plan::replace_children_if_necessary(
        node.clone(),
        children,
    )?;
    if table_side == JoinSide::Right {
        return Ok(join);
    }
    // The list must be the build (left) side.
    match join.downcast_ref::<NestedLoopJoinExec>() {
        Some(j) => j.swap_inputs(),
        None => Ok(join),
    }
}

/// The join filter's expression over the left ++ right columns (instead of its own intermediate schema).
fn concat_columns(filter: &JoinFilter, left_len: usize) -> DfResult<Arc<dyn PhysicalExpr>> {
    let indices = filter.column_indices().to_vec();
    Ok(
        filter
            .expression()
            .clone()
            .transform_up(|e| {
                Ok(match e.downcast_ref::<Column>() {
                    Some(c) => {
                        let origin = &indices[c.index()];
                        let index = match origin.side {
                            JoinSide::Left => origin.index,
                            _ => left_len + origin.index,
                        };
                        Transformed::yes(
                            Arc::new(Column::new(c.name(), index)) as Arc<dyn PhysicalExpr>
                        )
                    }
                    None => Transformed::no(e),
                })
            })?
            .data,
    )
}
