//! The single-node engine: ADQL text -> validated syntax tree -> SQL -> DataFusion logical plan -> Arrow batches.
//! The planner sees tables only through the [`Catalog`], as DataFusion's `SqlToRel` sees them through a
//! `ContextProvider`.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DataFusionError, NullEquality, TableReference, plan_err};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::context::{SessionContext, SessionState};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::planner::{ContextProvider, ExprPlanner, TypePlanner};
use datafusion::logical_expr::{
    AggregateUDF, Expr, ExprFunctionExt, HigherOrderUDF, JoinType, LogicalPlan, LogicalPlanBuilder,
    ScalarUDF, TableSource, WindowUDF,
};
use datafusion::prelude::SessionConfig;
use datafusion::sql::parser::DFParserBuilder;
use datafusion::sql::planner::{ParserOptions, SqlToRel};
use datafusion::sql::sqlparser::dialect::GenericDialect;

use crate::catalog::Catalog;
use crate::error::{AdqlError, Result};
use crate::translate::{Translation, translate};

/// Runs ADQL over the tables of a catalog on this node.
pub struct Engine {
    catalog: Arc<dyn Catalog>,
    config: SessionConfig,
    /// Bytes one query's operators may hold (hash tables, sorts, aggregates); None: no limit.
    memory_limit: Option<usize>,
    /// The session [`Engine::planning_session`] clones: building one registers every function anew, which cost a
    /// small query more than its planning (docs/benchmarks.md, issue 15).
    base: std::sync::OnceLock<SessionState>,
}

impl Engine {
    pub fn new(catalog: Arc<dyn Catalog>) -> Self {
        let config = SessionConfig::new()
            .with_information_schema(false)
            .with_target_partitions(
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(2),
            );
        Engine {
            catalog,
            config,
            memory_limit: None,
            base: std::sync::OnceLock::new(),
        }
    }

    /// Gives every query its own memory pool of `bytes` (sorts and aggregates spill to disk beyond it; what
    /// cannot spill ends the query with "Resources exhausted").
    pub fn with_memory_limit(mut self, bytes: Option<usize>) -> Self {
        self.memory_limit = bytes;
        self
    }

    pub fn with_config(mut self, config: SessionConfig) -> Self {
        self.config = config;
        self
    }

    pub fn catalog(&self) -> &Arc<dyn Catalog> {
        &self.catalog
    }

    /// A fresh DataFusion session with ADQL's functions (one per query, so seeded RAND restarts its sequence).
    pub fn session(&self) -> SessionState {
        let mut builder = SessionStateBuilder::new()
            .with_config(self.config.clone())
            .with_default_features();
        if let Some(bytes) = self.memory_limit
            && let Ok(runtime) = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
                .with_memory_limit(bytes, 1.0)
                .build()
        {
            builder = builder.with_runtime_env(Arc::new(runtime));
        }
        Self::with_adql_functions(builder).build()
    }

    /// A session to plan one query in, with ADQL's functions (a fresh seeded RAND) but without the query's memory
    /// pool: execute what it plans with [`Engine::task_ctx`].
    pub fn planning_session(&self) -> SessionState {
        let mut state = self
            .base
            .get_or_init(|| {
                let builder = SessionStateBuilder::new()
                    .with_config(self.config.clone())
                    .with_default_features();
                Self::with_adql_functions(builder).build()
            })
            .clone();
        use datafusion::execution::FunctionRegistry;
        let _ = state.register_udf(Arc::new(ScalarUDF::from(crate::udf::SeededRand::new())));
        state
    }

    /// The context to run a plan made in `state`: with the per-query memory pool when there is a limit.
    pub fn task_ctx(&self, state: &SessionState) -> Arc<datafusion::execution::TaskContext> {
        match self.memory_limit.and_then(|bytes| {
            datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
                .with_memory_limit(bytes, 1.0)
                .build()
                .ok()
        }) {
            Some(runtime) => Arc::new(
                datafusion::execution::TaskContext::from(state).with_runtime(Arc::new(runtime)),
            ),
            None => state.task_ctx(),
        }
    }

    fn with_adql_functions(mut builder: SessionStateBuilder) -> SessionStateBuilder {
        let mut functions: Vec<Arc<ScalarUDF>> =
            builder.scalar_functions().take().unwrap_or_default();
        functions.extend(crate::udf::all().into_iter().map(Arc::new));
        builder.with_scalar_functions(functions)
    }

    /// ADQL -> SQL for DataFusion, with the tables it reads.
    pub fn translate(&self, adql: &str) -> Result<Translation> {
        let query = crate::parser::parse(adql)?;
        crate::validate::validate_values(&query)?;
        translate(&query, self.catalog.as_ref())
    }

    /// ADQL -> logical plan (not yet optimized).
    pub fn plan(&self, adql: &str, state: &SessionState) -> Result<LogicalPlan> {
        let translation = self.translate(adql)?;
        plan_sql(&translation, state, adql)
    }

    /// Plans and runs a query, streaming its result.
    pub async fn execute(&self, adql: &str) -> Result<SendableRecordBatchStream> {
        let state = self.session();
        let plan = self.plan(adql, &state)?;
        let ctx = SessionContext::new_with_state(state);
        let df = ctx
            .execute_logical_plan(plan)
            .await
            .map_err(|e| plan_error(e, adql))?;
        df.execute_stream().await.map_err(|e| plan_error(e, adql))
    }

    /// Runs a query and collects its result.
    pub async fn collect(&self, adql: &str) -> Result<Vec<RecordBatch>> {
        use futures::TryStreamExt;
        let stream = self.execute(adql).await?;
        stream
            .try_collect()
            .await
            .map_err(|e| AdqlError::Execution {
                message: clean_message(&e),
            })
    }
}

/// Plans translated SQL through a context that knows only the catalog's tables.
pub fn plan_sql(
    translation: &Translation,
    state: &SessionState,
    adql: &str,
) -> Result<LogicalPlan> {
    let provider = Provider {
        state,
        tables: &translation.tables,
    };
    let options = ParserOptions::new()
        .with_parse_float_as_decimal(false)
        .with_enable_ident_normalization(false)
        .with_map_string_types_to_utf8view(false);
    // The translation parenthesizes every operation: a chain of N operators nests N deep (bounded by the parser).
    let internal = |e: datafusion::error::DataFusionError| AdqlError::Plan {
        message: format!("internal translation error: {e} in {}", translation.sql),
    };
    let statement = DFParserBuilder::new(translation.sql.as_str())
        .with_dialect(&GenericDialect {})
        .with_recursion_limit(crate::parser::MAX_LINKS + 2 * crate::parser::MAX_DEPTH + 64)
        .build()
        .map_err(internal)?
        .parse_statements()
        .map_err(internal)?
        .pop_front()
        .ok_or_else(|| AdqlError::Plan {
            message: "empty translation".into(),
        })?;
    let plan = SqlToRel::new_with_options(&provider, options)
        .statement_to_plan(statement)
        .map_err(|e| plan_error(e, adql))?;
    plan.transform_up(count_copies)
        .map(|t| t.data)
        .map_err(|e| plan_error(e, adql))
}

/// INTERSECT ALL and EXCEPT ALL keep multiplicities: `[0, 0, 0] EXCEPT ALL [0]` is `[0, 0]`. DataFusion 55 plans
/// both (and their DISTINCT forms) as a semi or anti join on every column with NULLs equal, which loses them (that
/// EXCEPT ALL gives nothing). Numbering the copies of each distinct row on both sides (ROW_NUMBER over a partition
/// by every column) and joining on the number too makes the same join exact: the n-th copy of a row on the left is
/// kept by INTERSECT ALL when the right has at least n copies, and by EXCEPT ALL when it has fewer.
fn count_copies(plan: LogicalPlan) -> datafusion::error::Result<Transformed<LogicalPlan>> {
    let LogicalPlan::Join(join) = &plan else {
        return Ok(Transformed::no(plan));
    };
    let set_join = matches!(join.join_type, JoinType::LeftSemi | JoinType::LeftAnti)
        && join.null_equality == NullEquality::NullEqualsNull
        && join.filter.is_none()
        && !join.null_aware
        && join.on.len() == join.left.schema().fields().len()
        && join
            .on
            .iter()
            .all(|(l, r)| matches!((l, r), (Expr::Column(_), Expr::Column(_))));
    if !set_join {
        return Ok(Transformed::no(plan));
    }
    let number = |input: &LogicalPlan, name: &str| -> datafusion::error::Result<LogicalPlan> {
        let columns: Vec<Expr> = input
            .schema()
            .columns()
            .into_iter()
            .map(Expr::Column)
            .collect();
        let copy = row_number().partition_by(columns).build()?.alias(name);
        LogicalPlanBuilder::from(input.clone())
            .window(vec![copy])?
            .build()
    };
    let (left_copy, right_copy) = ("__adql_copy_left", "__adql_copy_right");
    let left = number(&join.left, left_copy)?;
    let right = number(&join.right, right_copy)?;
    let mut left_keys = Vec::new();
    let mut right_keys = Vec::new();
    for (l, r) in &join.on {
        if let (Expr::Column(l), Expr::Column(r)) = (l, r) {
            left_keys.push(l.clone());
            right_keys.push(r.clone());
        }
    }
    left_keys.push(Column::from_name(left_copy));
    right_keys.push(Column::from_name(right_copy));
    let output: Vec<Expr> = join
        .left
        .schema()
        .columns()
        .into_iter()
        .map(Expr::Column)
        .collect();
    let rewritten = LogicalPlanBuilder::from(left)
        .join_detailed(
            right,
            join.join_type,
            (left_keys, right_keys),
            None,
            NullEquality::NullEqualsNull,
        )?
        .project(output)?
        .build()?;
    Ok(Transformed::yes(rewritten))
}

struct Provider<'a> {
    state: &'a SessionState,
    tables: &'a [Arc<crate::catalog::CatalogTable>],
}

impl ContextProvider for Provider<'_> {
    fn get_table_source(
        &self,
        name: TableReference,
    ) -> datafusion::common::Result<Arc<dyn TableSource>> {
        let table = self
            .tables
            .iter()
            .find(|t| t.name == name.table() && name.schema().is_none_or(|s| s == t.schema));
        match table {
            Some(t) => Ok(datafusion::datasource::provider_as_source(
                t.provider.clone(),
            )),
            None => plan_err!("table {name} not found"),
        }
    }

    fn get_expr_planners(&self) -> &[Arc<dyn ExprPlanner>] {
        self.state.expr_planners()
    }

    fn get_type_planner(&self) -> Option<Arc<dyn TypePlanner>> {
        None
    }

    fn get_function_meta(&self, name: &str) -> Option<Arc<ScalarUDF>> {
        self.state.scalar_functions().get(name).cloned()
    }

    fn get_higher_order_meta(&self, _name: &str) -> Option<Arc<HigherOrderUDF>> {
        None
    }

    fn get_aggregate_meta(&self, name: &str) -> Option<Arc<AggregateUDF>> {
        self.state.aggregate_functions().get(name).cloned()
    }

    fn get_window_meta(&self, name: &str) -> Option<Arc<WindowUDF>> {
        self.state.window_functions().get(name).cloned()
    }

    fn get_variable_type(&self, _names: &[String]) -> Option<DataType> {
        None
    }

    fn options(&self) -> &ConfigOptions {
        self.state.config_options()
    }

    fn udf_names(&self) -> Vec<String> {
        self.state.scalar_functions().keys().cloned().collect()
    }

    fn higher_order_function_names(&self) -> Vec<String> {
        Vec::new()
    }

    fn udaf_names(&self) -> Vec<String> {
        self.state.aggregate_functions().keys().cloned().collect()
    }

    fn udwf_names(&self) -> Vec<String> {
        self.state.window_functions().keys().cloned().collect()
    }
}

/// DataFusion's message without its internal prefixes and backtrace hints.
pub fn clean_message(e: &DataFusionError) -> String {
    let mut e = e;
    loop {
        match e {
            DataFusionError::Context(_, inner) => e = inner,
            DataFusionError::Shared(inner) => e = inner,
            DataFusionError::Diagnostic(_, inner) => e = inner,
            _ => break,
        }
    }
    let s = match e {
        DataFusionError::Plan(m)
        | DataFusionError::Execution(m)
        | DataFusionError::NotImplemented(m)
        | DataFusionError::Configuration(m) => m.clone(),
        DataFusionError::SchemaError(se, _) => se.to_string(),
        DataFusionError::ArrowError(ae, _) => ae.to_string(),
        DataFusionError::ResourcesExhausted(m) => format!("resources exhausted: {m}"),
        other => other.to_string(),
    };
    s.replace("adql_", "").replace("\"", "")
}

/// A planning error in terms of the ADQL query, positioned at the name it is about when there is one.
pub fn plan_error(e: DataFusionError, adql: &str) -> AdqlError {
    let message = clean_message(&e);
    let at =
        |name: &str, text: String| match find_word(adql, name.rsplit('.').next().unwrap_or(name)) {
            Some(pos) => AdqlError::semantic(pos, text),
            None => AdqlError::Plan { message: text },
        };
    if let Some(rest) = message.split("No field named ").nth(1) {
        let name = rest
            .split(['\n', ' '])
            .next()
            .unwrap_or(rest)
            .trim_end_matches('.')
            .to_string();
        let mut valid: Vec<&str> = message
            .split("Valid fields are ")
            .nth(1)
            .map(|v| v.trim_end_matches('.').split(", ").collect())
            .unwrap_or_default();
        valid.dedup();
        let first = name.split('.').next().unwrap_or(&name).to_string();
        let hint = if valid.is_empty() {
            String::new()
        } else {
            format!("; columns here: {}", valid.join(", "))
        };
        return match find_word(adql, &first) {
            Some(pos) => AdqlError::semantic(pos, format!("column {name} not found{hint}")),
            None => AdqlError::Plan {
                message: format!("column {name} not found{hint}"),
            },
        };
    }
    if let Some(rest) = message
        .split("Ambiguous reference to unqualified field ")
        .nth(1)
    {
        let name = rest.split_whitespace().next().unwrap_or(rest).to_string();
        return at(
            &name,
            format!(
                "column {name} is ambiguous: more than one table has it; qualify it, as in t.{name}"
            ),
        );
    }
    if let Some(rest) = message.split("column ").nth(1)
        && message.contains("must appear in the GROUP BY clause")
    {
        let name = rest.split_whitespace().next().unwrap_or(rest).to_string();
        let short = name.rsplit('.').next().unwrap_or(&name).to_string();
        return at(
            &short,
            format!(
                "column {short} must appear in GROUP BY or inside an aggregate function such as MAX({short})"
            ),
        );
    }
    if let Some(head) = message.split(". No function matches").next()
        && message.contains("No function matches")
    {
        let name = message
            .split("a call to '")
            .nth(1)
            .or_else(|| message.split("Function '").nth(1))
            .and_then(|r| r.split('\'').next())
            .unwrap_or("");
        let adql_name = match name {
            "contains_point_circle" => "CONTAINS",
            "ln" => "LOG",
            "ceil" => "CEILING",
            "trunc" => "TRUNCATE",
            other => other,
        }
        .to_ascii_uppercase();
        let detail = if let Some(r) = head.split("requires ").nth(1) {
            format!("requires {}", r.split(" (DataType").next().unwrap_or(r))
        } else if let Some(r) = head.split("coercion from ").nth(1) {
            let types = r.split(" to the signature").next().unwrap_or(r);
            let numbers = if r.contains("Float64]") {
                "; all must be numbers"
            } else {
                ""
            };
            format!("found ({types}){numbers}")
        } else {
            head.to_string()
        };
        return at(
            &adql_name,
            format!("wrong argument types for {adql_name}: {detail}"),
        );
    }
    AdqlError::Plan { message }
}

/// The position of the first occurrence of `word` as a whole identifier, case-insensitively.
fn find_word(text: &str, word: &str) -> Option<crate::Pos> {
    if word.is_empty() {
        return None;
    }
    let lower = text.to_lowercase();
    let w = word.to_lowercase();
    let bytes = lower.as_bytes();
    let mut start = 0;
    while let Some(i) = lower[start..].find(&w) {
        let at = start + i;
        let before_ok =
            at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
        let end = at + w.len();
        let after_ok =
            end >= bytes.len() || !(bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_');
        if before_ok && after_ok {
            let line = text[..at].matches('\n').count() as u32 + 1;
            let col = (at - text[..at].rfind('\n').map_or(0, |p| p + 1)) as u32 + 1;
            return Some(crate::Pos { line, col });
        }
        start = at + 1;
    }
    None
}
