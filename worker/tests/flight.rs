//! A worker served on loopback and asked over Arrow Flight, as the czar asks it: fragments built from `exec`'s
//! nodes, encoded with its codec, sent in a `DoGet` ticket. Rows are checked against the chunk files read with the
//! Parquet crate; failures against the gRPC codes the czar acts on.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Float32Type;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{Action, FlightData, Ticket};
use common::{Data, assert_same_rows, int64s, keep, project, read_file};
use datafusion::common::{DFSchema, JoinType, NullEquality};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};
use datafusion::physical_plan::union::UnionExec;
use datafusion::prelude::{col, lit};
use exec::ChunkScanExec;
use futures::TryStreamExt;
use partitioner::layout;
use prost::Message;
use protocol::{ChunkScan, ErrorCode, FragmentTicket, IndexRange};
use tonic::transport::Channel;
use worker::Worker;

/// Serves `worker` on a loopback port of this runtime and connects to it.
async fn start(worker: Worker) -> FlightServiceClient<Channel> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(worker.serve(listener));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    FlightServiceClient::new(channel)
}

/// The czar's placeholder for a scan.
fn leaf(data: &Data, scan: ChunkScan) -> Arc<dyn ExecutionPlan> {
    let output = data.output(&scan);
    Arc::new(ChunkScanExec::new(scan, output))
}

fn ticket(plan: Arc<dyn ExecutionPlan>) -> Ticket {
    let fragment = FragmentTicket {
        query_id: "q".into(),
        plan: exec::encode_fragment(plan).unwrap(),
    };
    Ticket {
        ticket: fragment.encode_to_vec().into(),
    }
}

/// A keep-alive as the czar recognizes it (and takes it out before decoding).
fn is_keep_alive(m: &FlightData) -> bool {
    m.data_header.is_empty() && m.app_metadata.as_ref() == protocol::KEEP_ALIVE_METADATA
}

/// The rows of a fragment's messages, keep-alives taken out as the czar does.
async fn rows(messages: &[FlightData], schema: &arrow::datatypes::SchemaRef) -> RecordBatch {
    let data: Vec<_> = messages
        .iter()
        .filter(|m| !is_keep_alive(m))
        .cloned()
        .map(Ok)
        .collect();
    let batches: Vec<RecordBatch> =
        FlightRecordBatchStream::new_from_flight_data(futures::stream::iter(data))
            .try_collect()
            .await
            .unwrap();
    arrow::compute::concat_batches(schema, &batches).unwrap()
}

/// Every message of a fragment's `DoGet`, and the status that ended it if it failed.
async fn fetch(
    client: &mut FlightServiceClient<Channel>,
    plan: Arc<dyn ExecutionPlan>,
) -> (Vec<FlightData>, Option<tonic::Status>) {
    let mut stream = match client.do_get(ticket(plan)).await {
        Ok(response) => response.into_inner(),
        Err(status) => return (Vec::new(), Some(status)),
    };
    let mut messages = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(m)) => messages.push(m),
            Ok(None) => return (messages, None),
            Err(status) => return (messages, Some(status)),
        }
    }
}

async fn health(client: &mut FlightServiceClient<Channel>) -> protocol::Health {
    let action = Action {
        r#type: protocol::ACTION_HEALTH.into(),
        body: Default::default(),
    };
    let mut results = client.do_action(action).await.unwrap().into_inner();
    let result = results.message().await.unwrap().unwrap();
    protocol::Health::decode(result.body).unwrap()
}

/// The worker's health once its fragments' streams are gone (a stream is dropped just after its last message is
/// sent), waiting up to 5 s.
async fn idle(client: &mut FlightServiceClient<Channel>) -> protocol::Health {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let h = health(client).await;
        if h.running_fragments == 0 || Instant::now() > deadline {
            return h;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_filtered_fragment_returns_exactly_the_oracle_rows() {
    let data = Data::build("doget", 4_000, 500);
    let mut client = start(Worker::new(&data.dir)).await;
    let chunk = data.chunks[0];
    let file = read_file(&data.chunk_path(chunk));
    let hpx = int64s(&file, layout::INDEX_COLUMN);
    let mags = file
        .column_by_name("mag_g")
        .unwrap()
        .as_primitive::<Float32Type>();
    let n = hpx.len();
    let (from, to) = (hpx[n / 4], hpx[3 * n / 4]);
    let cut = mags.value(n / 2);

    // As the czar ships it: the filter pushed into the scan (inexact) and applied again above it.
    let filter = col("mag_g").lt_eq(lit(cut));
    let mut scan = data.scan(&[chunk]);
    scan.projected = true;
    scan.projection = vec![data.column("id"), data.column("mag_g")];
    scan.ranges = vec![IndexRange { from, to }];
    scan.filters = vec![exec::encode_filter(&filter).unwrap()];
    let leaf = leaf(&data, scan);
    let schema = leaf.schema();
    let predicate = worker::session()
        .create_physical_expr(
            filter,
            &DFSchema::try_from(schema.as_ref().clone()).unwrap(),
        )
        .unwrap();
    let plan = Arc::new(FilterExec::try_new(predicate, leaf).unwrap());

    let (messages, end) = fetch(&mut client, plan).await;
    assert!(end.is_none(), "{end:?}");
    let expected = project(
        &keep(&file, |i| {
            from <= hpx[i] && hpx[i] <= to && mags.value(i) <= cut
        }),
        &schema,
    );
    assert!(expected.num_rows() > 0 && expected.num_rows() < n / 2);
    assert_same_rows(&rows(&messages, &schema).await, &expected);
    let health = idle(&mut client).await;
    assert_eq!((health.fragments_served, health.running_fragments), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_chunk_the_worker_lacks_is_not_found_and_sends_no_rows() {
    let data = Data::build("notfound", 4_000, 500);
    let mut client = start(Worker::new(&data.dir)).await;
    let absent = data.chunks.last().unwrap() + 1_000_003;
    let (messages, end) = fetch(
        &mut client,
        leaf(&data, data.scan(&[data.chunks[0], absent])),
    )
    .await;
    let status = end.expect("a scan of a chunk the worker lacks must fail");
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    assert!(ErrorCode::from_grpc(status.code()).retryable());
    assert!(status.message().contains(&absent.to_string()), "{status:?}");
    assert!(messages.iter().all(|m| m.data_body.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fragment_over_its_memory_limit_fails_as_too_large() {
    let data = Data::build("memory", 50_000, 5_000);
    let all: Vec<RecordBatch> = data
        .chunks
        .iter()
        .map(|&c| project(&read_file(&data.chunk_path(c)), &data.schema))
        .collect();
    let mut ids: Vec<i64> = all.iter().flat_map(|b| int64s(b, "id")).collect();
    ids.sort_unstable();
    let build_side: usize = all.iter().map(RecordBatch::get_array_memory_size).sum();
    assert!(
        build_side > 3 << 19,
        "the build side ({build_side} bytes) must not fit in 1 MiB"
    );

    // Every object joined with itself on id: the hash join holds all rows of the left side.
    let mut right = data.scan(&data.chunks);
    right.projected = true;
    right.projection = vec![data.column("id")];
    let id = || Arc::new(Column::new("id", 0)) as _;
    let join: Arc<dyn ExecutionPlan> = Arc::new(
        HashJoinExec::try_new(
            leaf(&data, data.scan(&data.chunks)),
            leaf(&data, right),
            vec![(id(), id())],
            None,
            &JoinType::Inner,
            None,
            PartitionMode::CollectLeft,
            NullEquality::NullEqualsNothing,
            false,
        )
        .unwrap(),
    );

    let mut roomy = start(Worker::new(&data.dir)).await;
    let (messages, end) = fetch(&mut roomy, join.clone()).await;
    assert!(end.is_none(), "{end:?}");
    let joined = rows(&messages, &join.schema()).await;
    let mut got = int64s(&joined, "id");
    got.sort_unstable();
    assert_eq!(got, ids);

    let mut small = start(Worker::new(&data.dir).with_fragment_memory(1 << 20)).await;
    let (_, end) = fetch(&mut small, join).await;
    let status = end.expect("a join over 1 MiB on a worker allowed 1 MiB must fail");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert_eq!(ErrorCode::from_grpc(status.code()), ErrorCode::TooLarge);
    assert!(status.message().contains("needs more memory"), "{status:?}");
    // The worker is still there, and serves a fragment that fits.
    let (messages, end) = fetch(&mut small, leaf(&data, data.scan(&data.chunks[..1]))).await;
    assert!(end.is_none(), "{end:?}");
    assert_same_rows(&rows(&messages, &data.schema).await, &all[0]);
    assert_eq!(idle(&mut small).await.fragments_served, 2);
}

/// A named pipe standing for a chunk file on a disk that does not answer: opening it for reading blocks until
/// [`Fifo::release`] opens its other end (and closes it at once: the reader then finds no byte).
struct Fifo {
    path: PathBuf,
    released: bool,
}

impl Fifo {
    fn new(path: PathBuf) -> Fifo {
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success());
        Fifo {
            path,
            released: false,
        }
    }

    /// Opens the writing end, once a reader waits on the other (retried for 10 s); whether it was opened.
    fn release(&mut self) -> bool {
        use std::os::unix::fs::OpenOptionsExt;
        // Linux's O_NONBLOCK: opening the writing end fails (ENXIO) until a reader is there.
        const O_NONBLOCK: i32 = 0o4000;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.released && Instant::now() < deadline {
            let open = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(O_NONBLOCK)
                .open(&self.path);
            self.released = open.is_ok();
            if !self.released {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.released
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        // A test that failed early must not leave a runtime thread blocked in the open.
        self.release();
    }
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fragment_with_nothing_to_send_keeps_saying_it_is_alive() {
    let data = Data::build("alive", 4_000, 500);
    let a = data.chunks[0];
    let stalled = data.chunks.last().unwrap() + 1_000_003;
    let mut fifo = Fifo::new(data.chunk_path(stalled));
    let mut client = start(Worker::new(&data.dir)).await;
    // Two partitions, so the worker runs them side by side: one reads a chunk, the other waits on its file.
    let plan = UnionExec::try_new(vec![
        leaf(&data, data.scan(&[a])),
        leaf(&data, data.scan(&[stalled])),
    ])
    .unwrap();

    let started = Instant::now();
    let mut stream = client.do_get(ticket(plan)).await.unwrap().into_inner();
    let mut messages = Vec::new();
    let mut alive = Vec::new();
    while alive.len() < 3 {
        let m = tokio::time::timeout(Duration::from_secs(20), stream.message())
            .await
            .expect("20 s without a message from a worker at work")
            .unwrap()
            .expect("the stream ended while a chunk file was still being opened");
        if is_keep_alive(&m) {
            assert!(m.data_body.is_empty() && m.flight_descriptor.is_none());
            alive.push(started.elapsed());
        } else {
            messages.push(m);
        }
    }
    // One at most every KEEP_ALIVE: never flooding the czar.
    for (k, at) in alive.iter().enumerate() {
        assert!(*at >= protocol::KEEP_ALIVE * (k as u32 + 1), "{alive:?}");
    }
    // The chunk that could be read came through whole, keep-alives taken out.
    let expected = project(&read_file(&data.chunk_path(a)), &data.schema);
    assert_same_rows(&rows(&messages, &data.schema).await, &expected);

    // The stalled file turns out to hold nothing: the fragment fails, it does not end as if complete.
    assert!(
        fifo.release(),
        "the worker never opened the stalled chunk file"
    );
    let end = loop {
        let next = tokio::time::timeout(Duration::from_secs(20), stream.message())
            .await
            .expect("20 s without a message after the stalled file was released");
        match next {
            Ok(Some(m)) if is_keep_alive(&m) => {}
            Ok(Some(m)) => panic!("a message after the stalled file was released: {m:?}"),
            Ok(None) => break None,
            Err(status) => break Some(status),
        }
    };
    assert!(
        end.is_some(),
        "a fragment whose chunk file is empty must fail"
    );
    assert_eq!(idle(&mut client).await.running_fragments, 0);
}
