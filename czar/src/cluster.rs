//! The workers the czar sends fragments to: their Flight clients, chunk placement with replicas, and a cap on the
//! chunk queries each runs at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arrow_flight::flight_service_client::FlightServiceClient;
use tokio::sync::Semaphore;
use tonic::transport::{Channel, Endpoint};

/// Adds the cluster secret to a call's metadata.
#[derive(Clone)]
pub struct Secret(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Secret {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(secret) = &self.0 {
            request
                .metadata_mut()
                .insert(protocol::SECRET_HEADER, secret.clone());
        }
        Ok(request)
    }
}

/// One worker as the czar sees it.
#[derive(Debug)]
pub struct WorkerHandle {
    /// `HOST:PORT`.
    pub address: String,
    channel: Channel,
    /// The cluster secret every call carries ([`protocol::SECRET_HEADER`]), when the workers are given one.
    secret: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    /// Chunk queries running on it, at most [`Cluster::per_worker`].
    pub slots: Arc<Semaphore>,
    /// False after a failed call, true again after a successful one: failed workers are tried last.
    healthy: AtomicBool,
    /// Being drained (`skyshard worker drain`): new loads are not placed on it; it serves what it holds until its
    /// chunks have moved.
    draining: AtomicBool,
}

impl WorkerHandle {
    /// A Flight client whose every call carries the cluster secret.
    pub fn client(
        &self,
    ) -> FlightServiceClient<tonic::service::interceptor::InterceptedService<Channel, Secret>> {
        FlightServiceClient::with_interceptor(self.channel.clone(), Secret(self.secret.clone()))
            .max_decoding_message_size(64 << 20)
    }

    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn mark(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }

    /// Sends an action whose answer is empty (drop, drop_chunks), with the cluster secret.
    pub async fn act(&self, action: &str, body: impl prost::Message) -> Result<(), tonic::Status> {
        self.client()
            .do_action(arrow_flight::Action {
                r#type: action.into(),
                body: body.encode_to_vec().into(),
            })
            .await
            .map(|_| ())
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub fn set_draining(&self, draining: bool) {
        self.draining.store(draining, Ordering::Relaxed);
    }
}

#[derive(Debug)]
pub struct Cluster {
    pub workers: Vec<Arc<WorkerHandle>>,
    /// Copies of each chunk (capped at the number of workers).
    pub replicas: usize,
    pub per_worker: usize,
    /// How long a worker may stay silent per chunk of a call (before its first batch, or between two) before it
    /// counts as hung and the chunk goes to a replica.
    pub silence: Duration,
    secret: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

/// The default of [`Cluster::silence`].
pub const DEFAULT_SILENCE: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("worker address {0} is not HOST:PORT")]
    Address(String),
    #[error("a cluster needs at least one worker")]
    NoWorkers,
    #[error("the cluster secret must be printable ASCII")]
    BadSecret,
}

fn handle(
    address: &str,
    secret: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    per_worker: usize,
) -> Result<Arc<WorkerHandle>, ClusterError> {
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .map_err(|_| ClusterError::Address(address.to_string()))?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true);
    Ok(Arc::new(WorkerHandle {
        address: address.to_string(),
        channel: endpoint.connect_lazy(),
        secret,
        slots: Arc::new(Semaphore::new(per_worker)),
        healthy: AtomicBool::new(true),
        draining: AtomicBool::new(false),
    }))
}

/// Rendezvous rank of `address` for `chunk`: placement and the choice of a new holder both take the highest.
/// Ranked by the chunk's cell at [`PLACEMENT_DEPTH`], so every chunk of every table inside one such cell has the same
/// holders: chunks of different trees that share sky (one contains the other) sit together, and any two catalogs
/// cross-match on the workers (`colocate::align`).
pub fn rank(chunk: u64, address: &str) -> u64 {
    mix(placement_key(chunk) ^ address_hash(address))
}

/// The HEALPix depth whose cells decide placement: the coarsest depth of any chunk map (the partitioner starts at
/// depth 1), so every chunk lies inside one such cell. 48 cells: an even spread over a dozen workers or so; larger
/// clusters want finer cells and chunk maps that start there (docs/benchmarks.md, "A 100-node cluster").
pub const PLACEMENT_DEPTH: u8 = 1;

/// The cell at [`PLACEMENT_DEPTH`] holding `chunk` (a NUNIQ number), or the chunk itself if coarser (or not a
/// chunk: 0 is a child table's orphans).
fn placement_key(chunk: u64) -> u64 {
    use partitioner::ChunkId;
    if chunk < 4 {
        return chunk;
    }
    let c = ChunkId(chunk);
    match c.depth().checked_sub(PLACEMENT_DEPTH) {
        Some(finer) if finer > 0 => ChunkId::new(PLACEMENT_DEPTH, c.hash() >> (2 * finer as u32)).0,
        _ => chunk,
    }
}

/// A 64-bit mix (splitmix64's finalizer): placement must not depend on the order workers were listed in.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d049bb133111eb);
    x ^ (x >> 31)
}

fn address_hash(address: &str) -> u64 {
    address.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

impl Cluster {
    pub fn new(
        addresses: &[String],
        replicas: usize,
        per_worker: usize,
    ) -> Result<Cluster, ClusterError> {
        Cluster {
            workers: Vec::new(),
            replicas,
            per_worker,
            silence: DEFAULT_SILENCE,
            secret: None,
        }
        .with_workers(addresses, replicas)
    }

    /// The same cluster over `addresses` (workers added or removed), keeping the handles (connections, health,
    /// slots) of the workers it had. The number of copies asked for stays: with fewer workers than that, as many
    /// as there are.
    pub fn with_workers(
        &self,
        addresses: &[String],
        replicas: usize,
    ) -> Result<Cluster, ClusterError> {
        if addresses.is_empty() {
            return Err(ClusterError::NoWorkers);
        }
        let workers = addresses
            .iter()
            .map(|a| match self.workers.iter().find(|w| &w.address == a) {
                Some(w) => Ok(w.clone()),
                None => handle(a, self.secret.clone(), self.per_worker),
            })
            .collect::<Result<Vec<_>, ClusterError>>()?;
        Ok(Cluster {
            replicas: replicas.clamp(1, workers.len()),
            workers,
            per_worker: self.per_worker,
            silence: self.silence,
            secret: self.secret.clone(),
        })
    }

    /// A handle of a worker not in the cluster (one being added), with the cluster's secret.
    pub fn outsider(&self, address: &str) -> Result<Arc<WorkerHandle>, ClusterError> {
        handle(address, self.secret.clone(), self.per_worker)
    }

    /// The same cluster, every call to its workers carrying `secret` (workers started with it refuse calls
    /// without it).
    pub fn with_secret(mut self, secret: &str) -> Result<Cluster, ClusterError> {
        let value: tonic::metadata::MetadataValue<tonic::metadata::Ascii> =
            secret.parse().map_err(|_| ClusterError::BadSecret)?;
        for w in &mut self.workers {
            let handle = Arc::get_mut(w).expect("no call made before the secret is set");
            handle.secret = Some(value.clone());
        }
        self.secret = Some(value);
        Ok(self)
    }

    /// The same cluster, a worker counting as hung after `silence` without a batch (per chunk of a call).
    pub fn with_silence(mut self, silence: Duration) -> Cluster {
        self.silence = silence.max(Duration::from_millis(100));
        self
    }

    /// (workers answering a health check within `timeout`, workers).
    pub async fn up(&self, timeout: Duration) -> (usize, usize) {
        let answers = self.answering(timeout).await;
        (answers.iter().filter(|ok| **ok).count(), answers.len())
    }

    /// Whether each worker answers a health check within `timeout`, in the order of [`Cluster::workers`].
    pub async fn answering(&self, timeout: Duration) -> Vec<bool> {
        let asks = self.workers.iter().map(|w| async move {
            let mut client = w.client();
            let ask = client.do_action(arrow_flight::Action {
                r#type: protocol::ACTION_HEALTH.into(),
                body: Default::default(),
            });
            matches!(tokio::time::timeout(timeout, ask).await, Ok(Ok(_)))
        });
        futures::future::join_all(asks).await
    }

    /// The workers to ask for `chunk`, in order: where `stored` says a shipped table's chunk was put (only there),
    /// else the cluster's [`placement`](Cluster::placement).
    pub fn holders(
        &self,
        chunk: u64,
        stored: Option<&std::collections::HashMap<u64, Vec<String>>>,
    ) -> Vec<Arc<WorkerHandle>> {
        match stored.and_then(|p| p.get(&chunk)) {
            Some(addresses) => addresses
                .iter()
                .filter_map(|a| self.workers.iter().find(|w| &w.address == a).cloned())
                .collect(),
            None => self.placement(chunk),
        }
    }

    /// The address of a chunk's first holder whatever its health: where the chunk runs when nothing has failed.
    pub fn primary(
        &self,
        chunk: u64,
        stored: Option<&std::collections::HashMap<u64, Vec<String>>>,
    ) -> Option<String> {
        match stored.and_then(|p| p.get(&chunk)) {
            Some(addresses) => addresses.first().cloned(),
            None => self.ranked(chunk).first().map(|w| w.address.clone()),
        }
    }

    /// The `replicas` workers holding `chunk` by rendezvous hashing (highest `mix(chunk, worker)` first), health
    /// aside.
    fn ranked(&self, chunk: u64) -> Vec<Arc<WorkerHandle>> {
        let staying = self.workers.iter().filter(|w| !w.draining()).count();
        let mut ranked: Vec<(u64, &Arc<WorkerHandle>)> = self
            .workers
            .iter()
            .filter(|w| staying < self.replicas || !w.draining())
            .map(|w| (rank(chunk, &w.address), w))
            .collect();
        ranked.sort_by(|a, b| b.0.cmp(&a.0));
        ranked
            .into_iter()
            .take(self.replicas)
            .map(|(_, w)| w.clone())
            .collect()
    }

    /// The workers holding `chunk`, in the order to try them: rendezvous hashing ([`rank`], highest first), so a
    /// chunk's replicas do not move when unrelated workers come and go, and every table's chunks in one placement
    /// cell sit on the same workers (chunk-local joins). Workers that failed recently go last.
    pub fn placement(&self, chunk: u64) -> Vec<Arc<WorkerHandle>> {
        let mut chosen = self.ranked(chunk);
        chosen.sort_by_key(|w| !w.healthy());
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn placement_is_stable_and_spreads_chunks() {
        let addresses: Vec<String> = (0..4).map(|i| format!("127.0.0.1:{}", 9000 + i)).collect();
        let cluster = Cluster::new(&addresses, 2, 4).unwrap();
        let mut load = [0usize; 4];
        for hash in 0..48u64 {
            let p = cluster.placement(partitioner::ChunkId::new(1, hash).0);
            assert_eq!(p.len(), 2);
            assert_ne!(p[0].address, p[1].address);
            load[addresses.iter().position(|a| *a == p[0].address).unwrap()] += 1;
        }
        assert!(load.iter().all(|&n| n >= 6), "{load:?}");
        // Chunks of any depth inside one placement cell (as different tables' trees have) share their holders.
        let holders = |c: partitioner::ChunkId| -> Vec<String> {
            cluster
                .placement(c.0)
                .iter()
                .map(|w| w.address.clone())
                .collect()
        };
        for hash in 0..48u64 {
            let cell = partitioner::ChunkId::new(1, hash);
            let deep = partitioner::ChunkId::new(7, (hash << 12) + 1234);
            assert!(cell.contains(deep));
            assert_eq!(holders(cell), holders(deep));
            assert_eq!(holders(cell), holders(cell.children()[3]));
        }
        // Listing the workers in another order places every chunk on the same workers.
        let mut reversed = addresses.clone();
        reversed.reverse();
        let other = Cluster::new(&reversed, 2, 4).unwrap();
        for chunk in 0..100u64 {
            let a: Vec<_> = cluster
                .placement(chunk)
                .iter()
                .map(|w| w.address.clone())
                .collect();
            let b: Vec<_> = other
                .placement(chunk)
                .iter()
                .map(|w| w.address.clone())
                .collect();
            assert_eq!(a, b);
        }
    }
}
