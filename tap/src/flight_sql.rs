//! Arrow Flight SQL beside the TAP service (`--flight-sql-port`): ADBC's Flight SQL driver
//! (`adbc_driver_flightsql`), `pyarrow.flight` and the Flight SQL JDBC driver get a query's result as Arrow record
//! batches straight from the czar's merge, with no result format in between.
//!
//! It is the same service as `/tap/sync` behind another door: a statement is ADQL; the caller presents the same
//! token (gRPC `authorization: Bearer TOKEN`, or Basic with the token as password, also through `Handshake`); they
//! see the tables TAP shows them; a query takes one of their sync turns ([`Tap::sync_turn`]) and runs within the
//! sync time limit. A result longer than the service's largest MAXREC ends with an error after that many rows:
//! Flight SQL has no overflow flag, and a cut result must never pass for a whole one.
//!
//! Served: `GetFlightInfo` + `DoGet` of a statement (`CommandStatementQuery`, its ticket the ADQL text); the
//! metadata a client browses with (`GetDbSchemas`, `GetTables` with their Arrow schemas, `GetTableTypes`,
//! `GetCatalogs`: none, tables are `schema.table` as in ADQL), each listing only what the caller may see;
//! `GetSqlInfo` (name, version, read-only); `Handshake`. Updates, prepared statements and transactions answer
//! `UNIMPLEMENTED`.

use std::pin::Pin;
use std::sync::{Arc, LazyLock};

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightServiceServer;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::FlightSqlService;
use arrow_flight::sql::{
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetSqlInfo, CommandGetTableTypes,
    CommandGetTables, CommandStatementQuery, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, Ticket,
};
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use crate::audit::Tally;
use crate::auth::{Caller, Client, Policy, Refusal};
use crate::error::TapError;
use crate::output::OutputFormat;
use crate::query::{QueryRequest, start_query};
use crate::service::{Busy, Tap};
use platform::access::Reader;

/// What `GetSqlInfo` says of the server.
static SQL_INFO: LazyLock<SqlInfoData> = LazyLock::new(|| {
    let mut info = SqlInfoDataBuilder::new();
    info.append(SqlInfo::FlightSqlServerName, "skyshard (ADQL)");
    info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    info.append(SqlInfo::FlightSqlServerArrowVersion, "59");
    info.append(SqlInfo::FlightSqlServerReadOnly, true);
    info.append(SqlInfo::FlightSqlServerSql, true);
    info.append(SqlInfo::FlightSqlServerSubstrait, false);
    info.append(SqlInfo::FlightSqlServerTransaction, 0i32);
    info.append(SqlInfo::FlightSqlServerCancel, false);
    info.build().expect("SqlInfo of fixed values")
});

/// The Flight SQL service over a [`Tap`].
pub struct FlightSql {
    tap: Arc<Tap>,
}

type Batches = Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send>>;

/// Serves Flight SQL on `listener` until `stop` resolves.
pub async fn serve_until(
    listener: tokio::net::TcpListener,
    tap: Arc<Tap>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    // A statement (the ADQL text) is at most what a TAP request body may carry.
    let limit = tap.limits.max_body_bytes();
    let service = FlightServiceServer::new(FlightSql { tap })
        .max_decoding_message_size(limit)
        .max_encoding_message_size(64 << 20);
    tonic::transport::Server::builder()
        // A client cannot open unbounded streams on one connection; dead peers are found by keep-alive pings.
        .concurrency_limit_per_connection(64)
        .max_concurrent_streams(64)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)))
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, stop)
        .await
        .map_err(|e| format!("Flight SQL: {e}"))
}

fn status(e: TapError) -> Status {
    Status::new(e.code().grpc(), e.to_string())
}

fn busy_status(b: &Busy) -> Status {
    if b.mine {
        Status::resource_exhausted(format!(
            "{} for {}: {} of {}; wait for one to finish",
            b.what, b.whose, b.used, b.limit
        ))
    } else {
        Status::unavailable(format!(
            "the service is busy ({} at its limit of {}); try again shortly",
            b.what, b.limit
        ))
    }
}

impl FlightSql {
    /// Who is calling, from the request's `authorization` metadata, as the HTTP service decides it.
    fn caller(&self, metadata: &tonic::metadata::MetadataMap) -> Result<Caller, Status> {
        if self.tap.stopping() {
            return Err(Status::unavailable(
                "the service is stopping; try again shortly",
            ));
        }
        let Some(auth) = &self.tap.auth else {
            return Ok(Caller::Anonymous);
        };
        let headers = metadata.clone().into_headers();
        let caller = self.identify(auth, &headers)?;
        self.tap
            .may_read_catalog(&caller)
            .map_err(|e| Status::permission_denied(e.to_string()))?;
        Ok(caller)
    }

    /// The caller the request's credentials name, under the service's policy.
    fn identify(
        &self,
        auth: &crate::auth::Auth,
        headers: &axum::http::HeaderMap,
    ) -> Result<Caller, Status> {
        match crate::auth::presented(headers) {
            Err(problem) => Err(Status::unauthenticated(problem)),
            Ok(Some(token)) => auth.identify(&token).map_err(|refusal| match refusal {
                Refusal::Invalid(message) => Status::unauthenticated(message),
                Refusal::Unreadable(message) => Status::unavailable(message),
            }),
            Ok(None) if auth.policy == Policy::Required => Err(Status::unauthenticated(
                "this service needs identity: send a token (authorization: Bearer TOKEN, or Basic with the token as \
                 password)",
            )),
            Ok(None) => Ok(Caller::Anonymous),
        }
    }

    /// The statement of a `CommandStatementQuery` or of its ticket: ADQL text, not empty.
    fn statement(text: &[u8]) -> Result<String, Status> {
        let text = std::str::from_utf8(text)
            .map_err(|_| Status::invalid_argument("the statement is not UTF-8 text"))?;
        if text.trim().is_empty() {
            return Err(Status::invalid_argument(
                "the statement is empty: send an ADQL query",
            ));
        }
        Ok(text.to_string())
    }
}

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    /// Basic credentials (any user name, a token as password) or a Bearer token, answered with the token as a
    /// Bearer header for the calls that follow (what `pyarrow.flight`'s `authenticate_basic_token` and ADBC's
    /// `username`/`password` options expect).
    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let caller = self.caller(request.metadata())?;
        let headers = request.metadata().clone().into_headers();
        let token = crate::auth::presented(&headers).ok().flatten();
        let payload = match (&caller, &token) {
            (Caller::User(_), Some(token)) => token.clone().into_bytes(),
            _ => Vec::new(),
        };
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: payload.into(),
        };
        let mut response: Response<Pin<Box<dyn Stream<Item = _> + Send>>> =
            Response::new(Box::pin(futures::stream::iter([Ok(reply)])));
        if let (Caller::User(_), Some(token)) = (&caller, token)
            && let Ok(value) = format!("Bearer {token}").parse()
        {
            response.metadata_mut().insert("authorization", value);
        }
        Ok(response)
    }

    /// Plans the statement (names checked against what the caller sees) and answers its schema and one endpoint
    /// whose ticket is the statement itself; nothing runs until `DoGet`.
    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let caller = self.caller(request.metadata())?;
        let adql = FlightSql::statement(query.query.as_bytes())?;
        let visible = self.tap.visible_to(Reader::of(&caller));
        // Planning is work too: it takes one of the caller's sync turns, as `/tap/sync` does before it plans.
        let client = Client::of(&self.tap.limits, &caller, || address_of(&request));
        let _turn = self
            .tap
            .sync_turn(&client)
            .await
            .map_err(|b| busy_status(&b))?;
        let secs = self.tap.limits.sync_duration;
        let planned = tokio::time::timeout(
            std::time::Duration::from_secs(secs),
            self.tap
                .czar
                .plan(&adql, &czar::QueryContext::seeing(visible.as_deref())),
        )
        .await
        .map_err(|_| status(TapError::SyncTimeout { seconds: secs }))?;
        let plan = planned.map_err(|e| status(e.into()))?.plan;
        let ticket = TicketStatementQuery {
            statement_handle: adql.into_bytes().into(),
        };
        let info = FlightInfo::new()
            .try_with_schema(plan.schema().as_ref())
            .map_err(|e| Status::internal(format!("the result's schema: {e}")))?
            .with_endpoint(
                FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec())),
            )
            .with_descriptor(request.into_inner())
            .with_ordered(true);
        Ok(Response::new(info))
    }

    /// Runs the statement of a ticket as the caller, in one of their sync turns, and streams its batches.
    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<Batches>, Status> {
        let tap = self.tap.clone();
        let caller = self.caller(request.metadata())?;
        let client = Client::of(&tap.limits, &caller, || address_of(&request));
        let adql = FlightSql::statement(&ticket.statement_handle)?;
        let visible = tap.visible_to(Reader::of(&caller));
        let tally = Tally::default();
        tally.query(&adql);
        let turn = tap.sync_turn(&client).await.map_err(|b| busy_status(&b))?;
        // Held until the stream ends or is dropped (the client went away): gives the turn back, writes the audit line.
        let mut open = Open {
            tap: tap.clone(),
            client,
            tally,
            started: std::time::Instant::now(),
            code: tonic::Code::Cancelled,
            _turn: turn,
        };
        let secs = tap.limits.sync_duration;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
        let req = QueryRequest {
            query: adql,
            format: OutputFormat::Parquet,
            maxrec: tap.limits.max_maxrec,
            run_id: None,
            links: None,
        };
        let stream = match tokio::time::timeout_at(
            deadline,
            start_query(
                &tap.czar,
                &req,
                &czar::QueryContext::seeing(visible.as_deref()),
            ),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                let e = status(e.into());
                open.code = e.code();
                return Err(e);
            }
            Err(_) => {
                open.code = tonic::Code::DeadlineExceeded;
                return Err(status(TapError::SyncTimeout { seconds: secs }));
            }
        };
        let schema = stream.schema();
        let most = tap.limits.max_maxrec;
        let batches = futures::stream::unfold(
            (stream, 0u64, Some(open)),
            move |(mut stream, rows, mut open)| async move {
                let guard = open.as_mut()?;
                let next = tokio::time::timeout_at(deadline, stream.next()).await;
                let end = match next {
                    Ok(Some(Ok(batch))) => {
                        let rows = rows + batch.num_rows() as u64;
                        if rows <= most {
                            guard.tally.rows(rows);
                            return Some((Ok(batch), (stream, rows, open)));
                        }
                        Some(Status::resource_exhausted(format!(
                            "the result has more than {most} rows, the most one result may have here \
                             (the service's --max-maxrec); narrow the query, or take it in parts (TOP, ranges \
                             of a column)"
                        )))
                    }
                    Ok(None) => None,
                    Ok(Some(Err(e))) => {
                        Some(status(TapError::Query(czar::CzarError::from_datafusion(e))))
                    }
                    Err(_) => Some(status(TapError::SyncTimeout { seconds: secs })),
                };
                // The end, or an error that ends it.
                guard.code = end.as_ref().map_or(tonic::Code::Ok, Status::code);
                open.take();
                end.map(|e| (Err(FlightError::Tonic(Box::new(e))), (stream, rows, None)))
            },
        );
        let encoded = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(batches)
            .map_err(Status::from);
        Ok(Response::new(Box::pin(encoded)))
    }

    /// A ticket that is neither a statement's nor a `GetSqlInfo`'s was not issued here.
    async fn do_get_fallback(
        &self,
        request: Request<Ticket>,
        _message: arrow_flight::sql::Any,
    ) -> Result<Response<Batches>, Status> {
        self.caller(request.metadata())?;
        Err(Status::invalid_argument(
            "the ticket is not one this service issued: get one from GetFlightInfo of an ADQL statement",
        ))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(request.metadata())?;
        let ticket = Ticket::new(query.as_any().encode_to_vec());
        let info = FlightInfo::new()
            .try_with_schema(query.into_builder(&SQL_INFO).schema().as_ref())
            .map_err(|e| Status::internal(format!("the SqlInfo schema: {e}")))?
            .with_endpoint(FlightEndpoint::new().with_ticket(ticket))
            .with_descriptor(request.into_inner());
        Ok(Response::new(info))
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<Batches>, Status> {
        self.caller(request.metadata())?;
        let builder = query.into_builder(&SQL_INFO);
        let schema = builder.schema();
        let batch = builder.build().map_err(FlightError::from);
        let stream = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(futures::stream::iter([batch]))
            .map_err(Status::from);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(request.metadata())?;
        let schema = query.clone().into_builder().schema();
        metadata_info(query, &schema, request)
    }

    /// No catalogs: ADQL names tables `schema.table`.
    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<Batches>, Status> {
        self.caller(request.metadata())?;
        let builder = query.into_builder();
        Ok(one_batch(builder.schema(), builder.build()))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(request.metadata())?;
        let schema = query.clone().into_builder().schema();
        metadata_info(query, &schema, request)
    }

    /// The schemas of the tables the caller sees.
    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<Batches>, Status> {
        let tables = self.tables_for(request.metadata())?;
        let mut builder = query.into_builder();
        let mut schemas: Vec<&str> = tables.iter().map(|t| t.schema.as_str()).collect();
        schemas.sort_unstable();
        schemas.dedup();
        for s in schemas {
            builder.append("", s);
        }
        Ok(one_batch(builder.schema(), builder.build()))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(request.metadata())?;
        let schema = query.clone().into_builder().schema();
        metadata_info(query, &schema, request)
    }

    /// The tables the caller sees, with their columns as ADQL names them (lower case) when asked.
    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<Batches>, Status> {
        let tables = self.tables_for(request.metadata())?;
        let mut builder = query.into_builder();
        for t in &tables {
            let fields: Vec<arrow::datatypes::Field> = t
                .provider
                .schema()
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_name(f.name().to_lowercase()))
                .collect();
            builder
                .append(
                    "",
                    &t.schema,
                    &t.name,
                    TABLE_TYPE,
                    &arrow::datatypes::Schema::new(fields),
                )
                .map_err(|e| Status::internal(format!("listing {}.{}: {e}", t.schema, t.name)))?;
        }
        Ok(one_batch(builder.schema(), builder.build()))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(request.metadata())?;
        let schema = query.into_builder().schema();
        metadata_info(query, &schema, request)
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<Batches>, Status> {
        self.caller(request.metadata())?;
        let mut builder = query.into_builder();
        builder.append(TABLE_TYPE);
        Ok(one_batch(builder.schema(), builder.build()))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// The one kind of table listed (catalog tables, TAP_SCHEMA and user tables alike are queried the same way).
const TABLE_TYPE: &str = "TABLE";

impl FlightSql {
    /// The tables a caller sees (user tables only to their owners and grantees, as in TAP), sorted by name.
    fn tables_for(
        &self,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<Vec<Arc<adql::CatalogTable>>, Status> {
        let caller = self.caller(metadata)?;
        let visible = self.tap.visible_to(Reader::of(&caller));
        let mut tables = self.tap.czar.catalog_tables_for(visible.as_deref());
        tables.sort_by(|a, b| (&a.schema, &a.name).cmp(&(&b.schema, &b.name)));
        Ok(tables)
    }
}

/// The `FlightInfo` of a metadata command: its schema, and the command itself as the ticket.
fn metadata_info<T: ProstMessageExt>(
    command: T,
    schema: &arrow::datatypes::Schema,
    request: Request<FlightDescriptor>,
) -> Result<Response<FlightInfo>, Status> {
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(format!("a metadata schema: {e}")))?
        .with_endpoint(
            FlightEndpoint::new().with_ticket(Ticket::new(command.as_any().encode_to_vec())),
        )
        .with_descriptor(request.into_inner());
    Ok(Response::new(info))
}

/// A stream of one metadata batch.
fn one_batch(
    schema: arrow::datatypes::SchemaRef,
    batch: Result<arrow::array::RecordBatch, FlightError>,
) -> Response<Batches> {
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::iter([batch]))
        .map_err(Status::from);
    Response::new(Box::pin(stream))
}

/// A running Flight SQL query: its sync turn, and what its audit line says when it ends or is dropped.
struct Open {
    tap: Arc<Tap>,
    client: Client,
    tally: Tally,
    started: std::time::Instant,
    /// How it ended; `Cancelled` until it does (a client that goes away drops the stream).
    code: tonic::Code,
    _turn: crate::service::Turn,
}

impl Drop for Open {
    fn drop(&mut self) {
        let Some(log) = &self.tap.audit else {
            return;
        };
        let mut line = serde_json::json!({
            "time": platform::jobs::iso(platform::jobs::now_ms()),
            "who": self.client.key,
            "method": "DoGet",
            "path": "flight-sql",
            "status": format!("{:?}", self.code),
        });
        self.tally.fill(&mut line);
        line["ms"] = (self.started.elapsed().as_secs_f64() * 1000.0).into();
        log.write(&line);
    }
}

/// The caller's address, for the shares of anonymous callers.
fn address_of<T>(request: &Request<T>) -> String {
    request
        .remote_addr()
        .map_or_else(|| "unknown".to_string(), |a| a.ip().to_string())
}

/// Decodes a message the way the Flight SQL layer hands it over, for tests.
#[cfg(test)]
fn ticket_of(info: &FlightInfo) -> TicketStatementQuery {
    let ticket = &info.endpoint[0].ticket.as_ref().expect("ticket").ticket;
    let any = arrow_flight::sql::Any::decode(ticket.as_ref()).expect("Any");
    any.unpack::<TicketStatementQuery>()
        .expect("unpack")
        .expect("a statement ticket")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_must_be_text() {
        assert!(FlightSql::statement(b"SELECT 1").is_ok());
        assert_eq!(
            FlightSql::statement(b"  ").unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            FlightSql::statement(&[0xff, 0xfe]).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }

    #[test]
    fn a_ticket_carries_the_statement() {
        let ticket = TicketStatementQuery {
            statement_handle: "SELECT TOP 1 * FROM t".as_bytes().to_vec().into(),
        };
        let info = FlightInfo::new().with_endpoint(
            FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec())),
        );
        assert_eq!(ticket_of(&info).statement_handle, ticket.statement_handle);
    }
}
