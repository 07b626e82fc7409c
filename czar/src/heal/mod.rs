//! Replication that heals itself: the czar's census of which worker holds which chunk (asked of the workers every
//! round, not only remembered), re-replication of a gone worker's chunks, a new worker's share, and draining.
//!
//! The truth about where a shipped table's chunk lives is its record's `placement` (chunk -> workers, published
//! through the metadata store); queries go where it says. A round of the [`Healer`]:
//! 1. asks every member for its census ([`protocol::Census`]); a member silent for longer than the grace period is
//!    *gone*; one that answers without a chunk its placement names has lost it;
//! 2. gives every answering member the current load of each replicated table, and makes joining members serving;
//! 3. for each chunk of each shipped table, counts the copies that are kept (on members that are not draining,
//!    not gone, and hold it or have not answered yet within the grace period); below `replicas`, copies the chunk's
//!    files from a kept holder (else from the czar's own copy) to the best-ranked serving members not holding it;
//! 4. with nothing to heal, after a worker was added, moves whole chunks (every table's files of the chunk, so chunk-local joins stay local)
//!    from the fullest serving member to the emptiest while that narrows the gap;
//! 5. publishes the new placements (the same load, one atomic record write each), re-reads the catalog, and only
//!    then removes moved copies from their old holders (after a delay, so queries planned on the old placement find
//!    their files). A drained member that holds nothing any placement names leaves the cluster.
//!
//! Every copy is checked end to end: the source worker sends the SHA-256 of what it read, the czar compares it
//! with what passed through, and the target worker compares it with what it wrote before renaming the file into
//! place. A chunk never has fewer live copies than before a move: copies are made and published before any is
//! removed. Members live in `DATA_DIR/cluster/workers.json`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metastore::{MetaError, MetaStore, TableRecord};
use partitioner::layout;
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::Czar;
use crate::cluster::{ClusterError, WorkerHandle};
use crate::error::CzarError;

mod copy;
pub mod plan;

pub use plan::Copy;

/// What can stop the healer or refuse a change of members.
#[derive(Debug, thiserror::Error)]
pub enum HealError {
    #[error("the members file {}: {source}", path.display())]
    MembersFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the members file {} is unreadable: {source}", path.display())]
    MembersUnreadable {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{0} is not a worker of this czar")]
    NotAMember(String),
    #[error("{0} is the last serving worker: add another before draining it")]
    LastServing(String),
    #[error("{0}")]
    Cluster(#[from] ClusterError),
    #[error("the metadata store: {0}")]
    Meta(#[from] MetaError),
    #[error("re-reading the catalog: {0}")]
    Catalog(CzarError),
}

/// How the healer runs.
#[derive(Debug, Clone)]
pub struct HealOptions {
    /// Time between rounds.
    pub every: Duration,
    /// How long a member may be silent before its copies are made again elsewhere.
    pub grace: Duration,
    /// Copies each chunk should have.
    pub replicas: usize,
    /// How long a moved copy stays on its old holder after the new placement is published.
    pub linger: Duration,
}

impl Default for HealOptions {
    fn default() -> HealOptions {
        HealOptions {
            every: Duration::from_secs(10),
            grace: Duration::from_secs(300),
            replicas: 2,
            linger: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// Added, receiving the replicated tables; queries do not go to it yet.
    Joining,
    Serving,
    /// Its chunks are moving away; it leaves the cluster when none is left.
    Draining,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Member {
    pub address: String,
    pub state: MemberState,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Members {
    workers: Vec<Member>,
    /// Drained workers that left: not members again because the czar's `--workers` still names them.
    #[serde(default)]
    left: Vec<String>,
}

/// What one worker said it holds: (table, load) -> file -> bytes.
type Held = HashMap<(String, String), HashMap<String, u64>>;

#[derive(Default)]
struct State {
    members: Vec<Member>,
    /// When each member last answered the census.
    seen: HashMap<String, Instant>,
    census: HashMap<String, Held>,
    /// Members that read the czar's own data directory (they hold every file already).
    shared: HashSet<String>,
    /// Members that answered the last round.
    answering: HashSet<String>,
    /// Drained workers that left.
    left: Vec<String>,
    /// Members said to be gone in the log (once each, until they answer again).
    announced: HashSet<String>,
    /// A worker was added: even out bytes until no move narrows the gap (placement by rendezvous hashing is even
    /// enough otherwise; data is not moved for small differences).
    rebalance: bool,
    /// Copies made and removed, bytes copied, rounds run.
    copies: u64,
    removals: u64,
    bytes_copied: u64,
    rounds: u64,
    /// Chunks of shipped tables by number of kept copies, at the last round.
    copies_histogram: BTreeMap<usize, u64>,
    last_error: Option<String>,
}

/// The czar's replica census and healer (one per czar).
pub struct Healer {
    czar: Arc<Czar>,
    options: HealOptions,
    started: Instant,
    state: Mutex<State>,
    /// One round at a time.
    round: tokio::sync::Mutex<()>,
    wake: tokio::sync::Notify,
}

fn members_path(data_dir: &Path) -> PathBuf {
    layout::members_file(data_dir)
}

impl Healer {
    /// The healer of `czar`, its members those of `DATA_DIR/cluster/workers.json` and the workers the czar was
    /// started with (serving unless the file says otherwise); the czar's cluster is set to them.
    pub fn new(czar: Arc<Czar>, options: HealOptions) -> Result<Arc<Healer>, HealError> {
        let path = members_path(czar.data_dir());
        let mut members: Members = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| HealError::MembersUnreadable { path, source })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Members::default(),
            Err(source) => return Err(HealError::MembersFile { path, source }),
        };
        let left = members.left.clone();
        for w in &czar.cluster().workers {
            if !members.workers.iter().any(|m| m.address == w.address) && !left.contains(&w.address)
            {
                members.workers.push(Member {
                    address: w.address.clone(),
                    state: MemberState::Serving,
                });
            }
        }
        let healer = Arc::new(Healer {
            czar,
            options,
            started: Instant::now(),
            state: Mutex::new(State {
                members: members.workers,
                left,
                ..Default::default()
            }),
            round: tokio::sync::Mutex::new(()),
            wake: tokio::sync::Notify::new(),
        });
        healer.apply_members(false)?;
        Ok(healer)
    }

    /// Runs rounds until the process ends.
    pub fn spawn(self: &Arc<Healer>) {
        let healer = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = healer.run_round().await {
                    tracing::warn!(event = "heal", "replica healer: {e}");
                    healer.lock().last_error = Some(e.to_string());
                }
                let _ = tokio::time::timeout(healer.options.every, healer.wake.notified()).await;
            }
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a worker: it joins (receives the replicated tables, then serves and receives its share of chunks).
    pub fn add(&self, address: &str) -> Result<(), HealError> {
        self.czar.cluster().outsider(address)?;
        {
            let mut s = self.lock();
            s.left.retain(|a| a != address);
            s.rebalance = true;
            match s.members.iter_mut().find(|m| m.address == address) {
                Some(m) if m.state == MemberState::Draining => m.state = MemberState::Serving,
                Some(_) => return Ok(()),
                None => s.members.push(Member {
                    address: address.to_string(),
                    state: MemberState::Joining,
                }),
            }
        }
        self.apply_members(true)?;
        self.wake.notify_one();
        Ok(())
    }

    /// Starts draining a worker: its chunks move to the others, then it leaves the cluster.
    pub fn drain(&self, address: &str) -> Result<(), HealError> {
        {
            let mut s = self.lock();
            let serving = s
                .members
                .iter()
                .filter(|m| m.state == MemberState::Serving && m.address != address)
                .count();
            let Some(m) = s.members.iter_mut().find(|m| m.address == address) else {
                return Err(HealError::NotAMember(address.to_string()));
            };
            if serving == 0 {
                return Err(HealError::LastServing(address.to_string()));
            }
            m.state = MemberState::Draining;
        }
        self.apply_members(true)?;
        self.wake.notify_one();
        Ok(())
    }

    /// Gives the czar the cluster of serving and draining members; `persist`: after a change by the admin API (or a
    /// join completing), writes the members down, so a restarted czar keeps them (the workers it is started with
    /// alone are never written: a czar whose members never changed leaves no file).
    fn apply_members(&self, persist: bool) -> Result<(), HealError> {
        let (members, left) = {
            let s = self.lock();
            (s.members.clone(), s.left.clone())
        };
        if persist {
            let path = members_path(self.czar.data_dir());
            let bytes = serde_json::to_vec_pretty(&Members {
                workers: members.clone(),
                left,
            })
            .expect("members serialize");
            path.parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| metastore::files::write_atomically(&path, &bytes))
                .map_err(|source| HealError::MembersFile {
                    path: path.clone(),
                    source,
                })?;
        }
        let addresses: Vec<String> = members
            .iter()
            .filter(|m| m.state != MemberState::Joining)
            .map(|m| m.address.clone())
            .collect();
        let current = self.czar.cluster();
        let same: Vec<&String> = current.workers.iter().map(|w| &w.address).collect();
        if !addresses.is_empty() && same != addresses.iter().collect::<Vec<_>>() {
            let next = current.with_workers(&addresses, self.options.replicas)?;
            self.czar.set_cluster(next);
        }
        for w in &self.czar.cluster().workers {
            w.set_draining(
                members
                    .iter()
                    .any(|m| m.address == w.address && m.state == MemberState::Draining),
            );
        }
        Ok(())
    }

    /// A handle of a member, in the cluster or not (joining).
    fn handle(&self, address: &str) -> Option<Arc<WorkerHandle>> {
        let cluster = self.czar.cluster();
        cluster
            .workers
            .iter()
            .find(|w| w.address == address)
            .cloned()
            .or_else(|| cluster.outsider(address).ok())
    }

    /// Runs one round now (the admin API's "heal now"; rounds also run every [`HealOptions::every`]): the census,
    /// the plan ([`plan::plan_round`]), the copies, the placements published, then the removals after the linger.
    pub async fn run_round(&self) -> Result<(), HealError> {
        let _one = self.round.lock().await;
        self.census().await;
        let (members, shared, answering, census, rebalance, gone) = {
            let s = self.lock();
            let now = Instant::now();
            let gone: HashSet<String> = s
                .members
                .iter()
                .filter(|m| {
                    !s.answering.contains(&m.address)
                        && now
                            .duration_since(s.seen.get(&m.address).copied().unwrap_or(self.started))
                            > self.options.grace
                })
                .map(|m| m.address.clone())
                .collect();
            (
                s.members.clone(),
                s.shared.clone(),
                s.answering.clone(),
                s.census.clone(),
                s.rebalance,
                gone,
            )
        };
        let records = MetaStore::open_read_only(&layout::meta_dir(self.czar.data_dir()))
            .and_then(|s| s.tables())?;
        let czar_files = self.czar_files(&records);
        let mut plan = plan::plan_round(&plan::RoundInput {
            members: &members,
            shared: &shared,
            answering: &answering,
            gone: &gone,
            census: &census,
            records: &records,
            czar_files: &czar_files,
            replicas: self.options.replicas,
            rebalance,
        });
        if plan.balanced {
            self.lock().rebalance = false;
        }
        let copies = std::mem::take(&mut plan.copies);
        let planned = copies.len();
        let failed = self.copy_all(copies).await;
        if planned > 0 {
            tracing::info!(
                event = "heal",
                copied = planned - failed.len(),
                failed = failed.len(),
                "replica healer: {} chunk files copied, {} failed{}",
                planned - failed.len(),
                failed.len(),
                failed
                    .first()
                    .map(|(c, e)| format!(" (first: {} to {}: {e})", c.file, c.target))
                    .unwrap_or_default()
            );
        }
        for m in &members {
            if gone.contains(&m.address) && self.lock().announced.insert(m.address.clone()) {
                tracing::warn!(
                    event = "heal",
                    worker = %m.address,
                    "worker {} has been silent for more than {} s: its chunks are copied to other workers",
                    m.address,
                    self.options.grace.as_secs_f64()
                );
            } else if answering.contains(&m.address) {
                self.lock().announced.remove(&m.address);
            }
        }
        if let Some((c, e)) = failed.first() {
            self.lock().last_error = Some(format!(
                "copying {}/{}/{} to {}: {e}",
                c.table, c.load, c.file, c.target
            ));
        }
        let failed_copies: HashSet<(String, String, String)> = failed
            .iter()
            .map(|(c, _)| (c.table.clone(), c.load.clone(), c.target.clone()))
            .collect();
        plan::settle(&mut plan, &failed_copies, &records, &gone);
        if !plan.placements.is_empty() && !self.publish(&plan.placements)? {
            // A load holds the metadata store: try again next round (the copies made are found then).
            return Ok(());
        }
        let failed_targets: HashSet<String> =
            failed.iter().map(|(c, _)| c.target.clone()).collect();
        let joined = plan::joined(&plan, &failed_targets);
        {
            let mut s = self.lock();
            s.copies_histogram = std::mem::take(&mut plan.copies_histogram);
            s.rounds += 1;
            for address in &joined {
                if let Some(m) = s.members.iter_mut().find(|m| &m.address == address) {
                    m.state = MemberState::Serving;
                    tracing::info!(
                        event = "join",
                        worker = %address,
                        "worker {address} has joined: it serves"
                    );
                }
            }
        }
        if !plan.joining.is_empty() {
            self.apply_members(true)?;
        }
        self.remove_later(std::mem::take(&mut plan.removals));
        let drained = plan::drained(&members, &records, &plan.placements);
        self.finish_drains(drained, &census)?;
        Ok(())
    }

    /// The czar's own files of every load of `records` (`chunks/...`, `replicated/...`), listed once a round.
    fn czar_files(&self, records: &[TableRecord]) -> HashMap<(String, String), BTreeSet<String>> {
        let mut files = HashMap::new();
        for r in records {
            let table = r.qualified_name().to_lowercase();
            let dir = layout::load_dir(self.czar.data_dir(), &table, &r.load_id);
            let mut names = BTreeSet::new();
            for sub in [layout::CHUNKS, layout::REPLICATED] {
                for entry in std::fs::read_dir(dir.join(sub))
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if name.ends_with(".parquet") {
                        names.insert(format!("{sub}/{name}"));
                    }
                }
            }
            files.insert((table, r.load_id.clone()), names);
        }
        files
    }

    /// Asks every member what it holds.
    async fn census(&self) {
        let members = self.lock().members.clone();
        let own = std::fs::canonicalize(self.czar.data_dir())
            .unwrap_or_else(|_| self.czar.data_dir().to_path_buf());
        let asks = members.iter().map(|m| {
            let handle = self.handle(&m.address);
            async move {
                let handle = handle?;
                let ask = async {
                    let mut results = handle
                        .client()
                        .do_action(arrow_flight::Action {
                            r#type: protocol::ACTION_CENSUS.into(),
                            body: Default::default(),
                        })
                        .await
                        .ok()?
                        .into_inner();
                    let body = results.message().await.ok()??.body;
                    protocol::Census::decode(body).ok()
                };
                let census = tokio::time::timeout(Duration::from_secs(5), ask)
                    .await
                    .ok()??;
                Some((m.address.clone(), census))
            }
        });
        let answers = futures::future::join_all(asks).await;
        let now = Instant::now();
        let mut s = self.lock();
        s.answering.clear();
        for (address, census) in answers.into_iter().flatten() {
            let theirs = std::fs::canonicalize(&census.data_dir)
                .unwrap_or_else(|_| PathBuf::from(&census.data_dir));
            if theirs == own {
                s.shared.insert(address.clone());
            } else {
                s.shared.remove(&address);
            }
            let held: Held = census
                .loads
                .into_iter()
                .map(|l| {
                    (
                        (l.table, l.load_id),
                        l.files.into_iter().map(|f| (f.name, f.bytes)).collect(),
                    )
                })
                .collect();
            s.census.insert(address.clone(), held);
            s.seen.insert(address.clone(), now);
            s.answering.insert(address);
        }
    }

    /// Publishes the new placements, each only where the table's load is still the one it was computed for
    /// ([`plan::still_current`]). Ok(false): the metadata store is being written by a load; nothing published.
    fn publish(&self, placements: &BTreeMap<String, plan::Placement>) -> Result<bool, HealError> {
        let store = match MetaStore::open(&layout::meta_dir(self.czar.data_dir())) {
            Ok(s) => s,
            Err(e) if e.is_locked() => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let records = store.tables()?;
        for (table, placement) in plan::still_current(placements, &records) {
            let Some(mut record) = records
                .iter()
                .find(|r| r.qualified_name().to_lowercase() == table)
                .cloned()
            else {
                continue;
            };
            record.placement = placement.into_iter().collect();
            store.publish(&record)?;
        }
        drop(store);
        self.czar.refresh().map_err(HealError::Catalog)?;
        Ok(true)
    }

    /// Removes moved copies from their old holders after [`HealOptions::linger`].
    fn remove_later(&self, leaving: Vec<plan::Removal>) {
        if leaving.is_empty() {
            return;
        }
        let mut by_worker: BTreeMap<(String, String, String), Vec<u64>> = BTreeMap::new();
        for plan::Removal {
            table,
            load,
            worker,
            chunk,
        } in leaving
        {
            by_worker
                .entry((worker, table, load))
                .or_default()
                .push(chunk);
        }
        let handles: Vec<_> = by_worker
            .into_iter()
            .filter_map(|((worker, table, load), chunks)| {
                Some((self.handle(&worker)?, table, load, chunks))
            })
            .collect();
        let linger = self.options.linger;
        let n: u64 = handles.iter().map(|(_, _, _, c)| c.len() as u64).sum();
        self.lock().removals += n;
        let czar = self.czar.clone();
        tokio::spawn(async move {
            tokio::time::sleep(linger).await;
            for (worker, table, load_id, mut chunks) in handles {
                // A later round may have placed a chunk back on this worker meanwhile: that copy stays.
                if let Some(t) = czar
                    .tables()
                    .iter()
                    .find(|t| t.record.qualified_name().to_lowercase() == table)
                {
                    chunks.retain(|c| {
                        t.record.load_id != load_id
                            || !t
                                .placement
                                .get(c)
                                .is_some_and(|h| h.contains(&worker.address))
                    });
                }
                if chunks.is_empty() {
                    continue;
                }
                let body = protocol::DropChunks {
                    table,
                    load_id,
                    chunks,
                };
                let _ = worker.act(protocol::ACTION_DROP_CHUNKS, body).await;
            }
        });
    }

    /// Draining members that no placement names any more leave the cluster; their files go after the linger.
    fn finish_drains(
        &self,
        done: Vec<String>,
        census: &HashMap<String, Held>,
    ) -> Result<(), HealError> {
        if done.is_empty() {
            return Ok(());
        }
        let handles: Vec<(Arc<WorkerHandle>, Vec<String>)> = done
            .iter()
            .filter_map(|d| {
                let tables: HashSet<String> =
                    census.get(d)?.keys().map(|(t, _)| t.clone()).collect();
                Some((self.handle(d)?, tables.into_iter().collect()))
            })
            .collect();
        {
            let mut s = self.lock();
            s.members.retain(|m| !done.contains(&m.address));
            s.left.extend(done.iter().cloned());
            for d in &done {
                tracing::info!(
                    event = "drain",
                    worker = %d,
                    "worker {d} is drained: it has left the cluster"
                );
            }
        }
        self.apply_members(true)?;
        let linger = self.options.linger;
        tokio::spawn(async move {
            tokio::time::sleep(linger).await;
            for (worker, tables) in handles {
                for table in tables {
                    let body = protocol::DropTable {
                        table,
                        keep_load: String::new(),
                    };
                    let _ = worker.act(protocol::ACTION_DROP, body).await;
                }
            }
        });
        Ok(())
    }

    /// The census as the admin API shows it: members, what each holds, copies per chunk, what the healer did.
    pub fn status(&self) -> serde_json::Value {
        let s = self.lock();
        let now = Instant::now();
        let workers: Vec<serde_json::Value> = s
            .members
            .iter()
            .map(|m| {
                let held = s.census.get(&m.address);
                let files: usize = held.map(|h| h.values().map(|f| f.len()).sum()).unwrap_or(0);
                let bytes: u64 = held.map(|h| h.values().flat_map(|f| f.values()).sum()).unwrap_or(0);
                let chunks: usize = held
                    .map(|h| {
                        h.values()
                            .flat_map(|f| f.keys())
                            .filter(|n| {
                                n.strip_prefix("chunks/")
                                    .and_then(layout::parse_chunk_file)
                                    .is_some_and(|(_, overlap)| !overlap)
                            })
                            .count()
                    })
                    .unwrap_or(0);
                serde_json::json!({
                    "address": m.address,
                    "state": m.state,
                    "answering": s.answering.contains(&m.address),
                    "shares_czar_data": s.shared.contains(&m.address),
                    "silent_seconds": s.seen.get(&m.address).map(|t| now.duration_since(*t).as_secs_f64()),
                    "chunk_files": chunks,
                    "files": files,
                    "bytes": bytes,
                })
            })
            .collect();
        serde_json::json!({
            "replicas": self.options.replicas,
            "grace_seconds": self.options.grace.as_secs_f64(),
            "workers": workers,
            "chunks_by_copies": s.copies_histogram.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
            "copies_made": s.copies,
            "copies_removed": s.removals,
            "bytes_copied": s.bytes_copied,
            "rounds": s.rounds,
            "last_error": s.last_error,
        })
    }

    /// Counters for `/metrics`: (copies made, copies removed, bytes copied, chunks by kept copies, members by
    /// state and whether they answer).
    pub fn counters(
        &self,
    ) -> (
        u64,
        u64,
        u64,
        BTreeMap<usize, u64>,
        Vec<(String, MemberState, bool)>,
    ) {
        let s = self.lock();
        (
            s.copies,
            s.removals,
            s.bytes_copied,
            s.copies_histogram.clone(),
            s.members
                .iter()
                .map(|m| (m.address.clone(), m.state, s.answering.contains(&m.address)))
                .collect(),
        )
    }
}

/// The cluster a czar is started with, given the healer's members file: used by `skyshard czar` before the
/// healer exists so queries never go to a worker the file says has left.
pub fn starting_workers(data_dir: &Path, flags: &[String]) -> Vec<String> {
    let mut addresses: Vec<String> = flags.to_vec();
    if let Ok(bytes) = std::fs::read(members_path(data_dir))
        && let Ok(members) = serde_json::from_slice::<Members>(&bytes)
    {
        addresses.retain(|a| !members.left.contains(a));
        for m in members.workers {
            if m.state != MemberState::Joining && !addresses.contains(&m.address) {
                addresses.push(m.address);
            }
        }
    }
    addresses
}
