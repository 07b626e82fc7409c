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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_flight::{FlightData, FlightDescriptor};
use futures::{StreamExt, TryStreamExt};
use metastore::{MetaStore, TableKind, TableRecord};
use partitioner::layout;
use prost::Message;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Czar;
use crate::cluster::{WorkerHandle, rank};

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

/// One file to copy to one worker.
struct Copy {
    table: String,
    load: String,
    file: String,
    target: String,
    /// Workers holding it, in the order to read from.
    sources: Vec<String>,
}

fn members_path(data_dir: &Path) -> PathBuf {
    data_dir.join("cluster").join("workers.json")
}

impl Healer {
    /// The healer of `czar`, its members those of `DATA_DIR/cluster/workers.json` and the workers the czar was
    /// started with (serving unless the file says otherwise); the czar's cluster is set to them.
    pub fn new(czar: Arc<Czar>, options: HealOptions) -> Result<Arc<Healer>, String> {
        let path = members_path(czar.data_dir());
        let mut members: Members = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Members::default(),
            Err(e) => return Err(format!("{}: {e}", path.display())),
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
                    protocol::log::warning("heal", &format!("replica healer: {e}"));
                    healer.lock().last_error = Some(e);
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
    pub fn add(&self, address: &str) -> Result<(), String> {
        self.czar
            .cluster()
            .outsider(address)
            .map_err(|e| e.to_string())?;
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
    pub fn drain(&self, address: &str) -> Result<(), String> {
        {
            let mut s = self.lock();
            let serving = s
                .members
                .iter()
                .filter(|m| m.state == MemberState::Serving && m.address != address)
                .count();
            let Some(m) = s.members.iter_mut().find(|m| m.address == address) else {
                return Err(format!("{address} is not a worker of this czar"));
            };
            if serving == 0 {
                return Err(format!(
                    "{address} is the last serving worker: add another before draining it"
                ));
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
    fn apply_members(&self, persist: bool) -> Result<(), String> {
        let (members, left) = {
            let s = self.lock();
            (s.members.clone(), s.left.clone())
        };
        if persist {
            let path = members_path(self.czar.data_dir());
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            }
            let bytes = serde_json::to_vec_pretty(&Members {
                workers: members.clone(),
                left,
            })
            .map_err(|e| e.to_string())?;
            metastore::files::write_atomically(&path, &bytes)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        let addresses: Vec<String> = members
            .iter()
            .filter(|m| m.state != MemberState::Joining)
            .map(|m| m.address.clone())
            .collect();
        let current = self.czar.cluster();
        let same: Vec<&String> = current.workers.iter().map(|w| &w.address).collect();
        if !addresses.is_empty() && same != addresses.iter().collect::<Vec<_>>() {
            let next = current
                .with_workers(&addresses, self.options.replicas)
                .map_err(|e| e.to_string())?;
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

    /// Runs one round now (the admin API's "heal now"; rounds also run every [`HealOptions::every`]).
    pub async fn run_round(&self) -> Result<(), String> {
        let _one = self.round.lock().await;
        self.census().await;
        let (members, shared, answering, census) = {
            let s = self.lock();
            (
                s.members.clone(),
                s.shared.clone(),
                s.answering.clone(),
                s.census.clone(),
            )
        };
        let remote: Vec<&Member> = members
            .iter()
            .filter(|m| !shared.contains(&m.address))
            .collect();
        let records = MetaStore::open_read_only(&layout::meta_dir(self.czar.data_dir()))
            .and_then(|s| s.tables())
            .map_err(|e| e.to_string())?;
        let has = |worker: &str, table: &str, load: &str, file: &str| {
            census
                .get(worker)
                .and_then(|h| h.get(&(table.to_string(), load.to_string())))
                .is_some_and(|files| files.contains_key(file))
        };
        let now = Instant::now();
        let gone = |address: &str| {
            !answering.contains(address) && {
                let s = self.lock();
                let since = s.seen.get(address).copied().unwrap_or(self.started);
                now.duration_since(since) > self.options.grace
            }
        };
        let state_of = |address: &str| {
            members
                .iter()
                .find(|m| m.address == address)
                .map(|m| m.state)
        };

        // 2. Replicated tables on every answering remote member; joining members become serving.
        let mut copies: Vec<Copy> = Vec::new();
        let mut joined = Vec::new();
        for m in &remote {
            if !answering.contains(&m.address) || m.state == MemberState::Draining {
                continue;
            }
            let before = copies.len();
            for r in records.iter().filter(|r| r.kind == TableKind::Replicated) {
                let table = r.qualified_name().to_lowercase();
                for file in self.own_files(&table, &r.load_id, layout::REPLICATED) {
                    if !has(&m.address, &table, &r.load_id, &file) {
                        let sources = remote
                            .iter()
                            .filter(|o| {
                                answering.contains(&o.address)
                                    && has(&o.address, &table, &r.load_id, &file)
                            })
                            .map(|o| o.address.clone())
                            .collect();
                        copies.push(Copy {
                            table: table.clone(),
                            load: r.load_id.clone(),
                            file,
                            target: m.address.clone(),
                            sources,
                        });
                    }
                }
            }
            if m.state == MemberState::Joining {
                joined.push((m.address.clone(), copies.len() - before));
            }
        }

        // 3. Chunks below their copies.
        let serving: Vec<&str> = remote
            .iter()
            .filter(|m| m.state == MemberState::Serving && answering.contains(&m.address))
            .map(|m| m.address.as_str())
            .chain(
                joined
                    .iter()
                    .filter(|(_, n)| *n == 0)
                    .map(|(a, _)| a.as_str()),
            )
            .collect();
        let replicas = self.options.replicas.max(1);
        let mut placements: HashMap<String, (String, BTreeMap<u64, Vec<String>>)> = HashMap::new();
        let mut histogram: BTreeMap<usize, u64> = BTreeMap::new();
        let mut leaving: Vec<(String, String, String, u64)> = Vec::new();
        for r in records.iter().filter(|r| !r.placement.is_empty()) {
            let table = r.qualified_name().to_lowercase();
            let mut placement: BTreeMap<u64, Vec<String>> = r.placement.iter().cloned().collect();
            let mut changed = false;
            for (chunk, holders) in placement.iter_mut() {
                let file = format!("{}/{}", layout::CHUNKS, layout::chunk_file(*chunk));
                let kept: Vec<String> = holders
                    .iter()
                    .filter(|h| {
                        matches!(state_of(h), Some(MemberState::Serving))
                            && !gone(h)
                            && (!answering.contains(h.as_str())
                                || shared.contains(h.as_str())
                                || has(h, &table, &r.load_id, &file))
                    })
                    .cloned()
                    .collect();
                *histogram.entry(kept.len()).or_default() += 1;
                let want = replicas.min(serving.len().max(kept.len()));
                let mut next = kept.clone();
                if kept.len() < want {
                    let mut candidates: Vec<&str> = serving
                        .iter()
                        .copied()
                        .filter(|a| !holders.iter().any(|h| h == a))
                        .collect();
                    candidates.sort_by_key(|a| std::cmp::Reverse(rank(*chunk, a)));
                    let sources: Vec<String> = kept
                        .iter()
                        .filter(|h| answering.contains(h.as_str()))
                        .cloned()
                        .chain(
                            holders
                                .iter()
                                .filter(|h| {
                                    answering.contains(h.as_str())
                                        && has(h, &table, &r.load_id, &file)
                                })
                                .cloned(),
                        )
                        .collect();
                    for target in candidates.into_iter().take(want - kept.len()) {
                        for f in self.chunk_files(&table, &r.load_id, *chunk) {
                            if !has(target, &table, &r.load_id, &f) {
                                copies.push(Copy {
                                    table: table.clone(),
                                    load: r.load_id.clone(),
                                    file: f,
                                    target: target.to_string(),
                                    sources: sources.clone(),
                                });
                            }
                        }
                        next.push(target.to_string());
                    }
                }
                // Holders dropped from the placement (draining, lost, gone): their copy is garbage once the new
                // placement is out.
                if next.len() >= want.min(holders.len()) && next != *holders {
                    for h in holders.iter().filter(|h| !next.contains(h)) {
                        if answering.contains(h.as_str()) && !shared.contains(h.as_str()) {
                            leaving.push((table.clone(), r.load_id.clone(), h.clone(), *chunk));
                        }
                    }
                    *holders = next;
                    changed = true;
                }
            }
            if changed {
                placements.insert(table, (r.load_id.clone(), placement));
            }
        }

        // 4. Nothing to heal and a worker was added: even out bytes between serving members.
        if placements.is_empty()
            && copies.is_empty()
            && serving.len() > 1
            && members.iter().all(|m| {
                answering.contains(&m.address) || shared.contains(&m.address) || gone(&m.address)
            })
            && self.lock().rebalance
        {
            self.rebalance(
                &records,
                &serving,
                &census,
                &mut copies,
                &mut placements,
                &mut leaving,
            );
            if copies.is_empty() {
                self.lock().rebalance = false;
            }
        }

        // Copies no placement names (a copy whose placement was not published, a returning worker's old holdings):
        // garbage, removed after the linger.
        for r in records.iter().filter(|r| !r.placement.is_empty()) {
            let table = r.qualified_name().to_lowercase();
            let placed: HashMap<u64, &Vec<String>> =
                r.placement.iter().map(|(c, h)| (*c, h)).collect();
            for m in &remote {
                if !answering.contains(&m.address) {
                    continue;
                }
                let Some(files) = census
                    .get(&m.address)
                    .and_then(|h| h.get(&(table.clone(), r.load_id.clone())))
                else {
                    continue;
                };
                let mut stray: Vec<u64> = files
                    .keys()
                    .filter_map(|f| f.strip_prefix("chunks/").and_then(layout::parse_chunk_file))
                    .map(|(chunk, _)| chunk)
                    .filter(|chunk| {
                        placed.get(chunk).is_none_or(|h| !h.contains(&m.address))
                            && !copies
                                .iter()
                                .any(|c| c.target == m.address && c.table == table)
                    })
                    .collect();
                stray.sort_unstable();
                stray.dedup();
                for chunk in stray {
                    if !placements
                        .get(&table)
                        .is_some_and(|(_, p)| p.get(&chunk).is_some_and(|h| h.contains(&m.address)))
                    {
                        leaving.push((table.clone(), r.load_id.clone(), m.address.clone(), chunk));
                    }
                }
            }
        }

        // 5. Copy, publish, then remove.
        let planned = copies.len();
        let failed = self.copy_all(copies).await;
        if planned > 0 {
            protocol::log::event(
                protocol::log::Level::Notice,
                "heal",
                &format!(
                    "replica healer: {} chunk files copied, {} failed{}",
                    planned - failed.len(),
                    failed.len(),
                    failed
                        .first()
                        .map(|(c, e)| format!(" (first: {} to {}: {e})", c.file, c.target))
                        .unwrap_or_default()
                ),
                &[
                    ("copied", (planned - failed.len()).into()),
                    ("failed", failed.len().into()),
                ],
            );
        }
        for m in &members {
            if gone(&m.address) && self.lock().announced.insert(m.address.clone()) {
                protocol::log::event(
                    protocol::log::Level::Warning,
                    "heal",
                    &format!(
                        "worker {} has been silent for more than {} s: its chunks are copied to other workers",
                        m.address,
                        self.options.grace.as_secs_f64()
                    ),
                    &[("worker", m.address.clone().into())],
                );
            } else if answering.contains(&m.address) {
                self.lock().announced.remove(&m.address);
            }
        }
        let failed_targets: HashSet<(String, String, String)> = failed
            .iter()
            .map(|(c, _)| (c.table.clone(), c.load.clone(), c.target.clone()))
            .collect();
        if let Some((c, e)) = failed.first() {
            self.lock().last_error = Some(format!(
                "copying {}/{}/{} to {}: {e}",
                c.table, c.load, c.file, c.target
            ));
        }
        // A target whose copy failed is not put in the placement (nor is the chunk's old holder let go).
        for (table, (load, placement)) in placements.iter_mut() {
            let record = records
                .iter()
                .find(|r| r.qualified_name().to_lowercase() == *table);
            let old: HashMap<u64, Vec<String>> = record
                .map(|r| r.placement.iter().cloned().collect())
                .unwrap_or_default();
            for (chunk, holders) in placement.iter_mut() {
                if holders
                    .iter()
                    .any(|h| failed_targets.contains(&(table.clone(), load.clone(), h.clone())))
                {
                    let previous = old.get(chunk).cloned().unwrap_or_default();
                    holders.retain(|h| {
                        !failed_targets.contains(&(table.clone(), load.clone(), h.clone()))
                    });
                    for p in previous {
                        if !holders.contains(&p) && !gone(&p) {
                            holders.push(p.clone());
                            leaving.retain(|(t, l, w, c)| {
                                !(t == table && l == load && *w == p && c == chunk)
                            });
                        }
                    }
                }
            }
        }
        let published = if placements.is_empty() {
            true
        } else {
            self.publish(&placements)?
        };
        if !published {
            // A load holds the metadata store: try again next round (the copies made are found then).
            return Ok(());
        }
        {
            let mut s = self.lock();
            s.copies_histogram = histogram;
            s.rounds += 1;
            for (address, n) in &joined {
                if *n == 0 || failed.iter().all(|(c, _)| &c.target != address) {
                    if let Some(m) = s.members.iter_mut().find(|m| &m.address == address) {
                        m.state = MemberState::Serving;
                        protocol::log::event(
                            protocol::log::Level::Notice,
                            "join",
                            &format!("worker {address} has joined: it serves"),
                            &[("worker", address.clone().into())],
                        );
                    }
                }
            }
        }
        if !joined.is_empty() {
            self.apply_members(true)?;
        }
        self.remove_later(leaving);
        self.finish_drains(&records, &placements, &census).await?;
        Ok(())
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

    /// The czar's own files of a load under `sub` (`replicated`), as `sub/NAME`.
    fn own_files(&self, table: &str, load: &str, sub: &str) -> Vec<String> {
        let dir = layout::load_dir(self.czar.data_dir(), table, load).join(sub);
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".parquet"))
            .map(|n| format!("{sub}/{n}"))
            .collect();
        names.sort();
        names
    }

    /// A chunk's files of a load (its own rows, and its overlap when the load has overlap files), as the czar
    /// holds them.
    fn chunk_files(&self, table: &str, load: &str, chunk: u64) -> Vec<String> {
        let dir = layout::load_dir(self.czar.data_dir(), table, load).join(layout::CHUNKS);
        [layout::chunk_file(chunk), layout::overlap_file(chunk)]
            .into_iter()
            .filter(|n| dir.join(n).exists())
            .map(|n| format!("{}/{n}", layout::CHUNKS))
            .collect()
    }

    /// Moves whole chunks from the fullest serving member to the emptiest while a move narrows the gap.
    fn rebalance(
        &self,
        records: &[TableRecord],
        serving: &[&str],
        census: &HashMap<String, Held>,
        copies: &mut Vec<Copy>,
        placements: &mut HashMap<String, (String, BTreeMap<u64, Vec<String>>)>,
        leaving: &mut Vec<(String, String, String, u64)>,
    ) {
        let size = |worker: &str, table: &str, load: &str, file: &str| {
            census
                .get(worker)
                .and_then(|h| h.get(&(table.to_string(), load.to_string())))
                .and_then(|f| f.get(file))
                .copied()
                .unwrap_or(0)
        };
        // Bytes of each chunk (all tables), and which members hold it.
        let mut chunk_bytes: BTreeMap<u64, u64> = BTreeMap::new();
        let mut holders_of: BTreeMap<u64, HashSet<String>> = BTreeMap::new();
        let mut load: HashMap<&str, u64> = serving.iter().map(|a| (*a, 0)).collect();
        for r in records.iter().filter(|r| !r.placement.is_empty()) {
            let table = r.qualified_name().to_lowercase();
            for (chunk, holders) in &r.placement {
                let file = format!("{}/{}", layout::CHUNKS, layout::chunk_file(*chunk));
                let bytes = holders
                    .iter()
                    .map(|h| size(h, &table, &r.load_id, &file))
                    .max()
                    .unwrap_or(0);
                *chunk_bytes.entry(*chunk).or_default() += bytes;
                for h in holders {
                    holders_of.entry(*chunk).or_default().insert(h.clone());
                    if let Some(l) = load.get_mut(h.as_str()) {
                        *l += bytes;
                    }
                }
            }
        }
        let mut moves: Vec<(u64, String, String)> = Vec::new();
        for _ in 0..64 {
            let (Some((&full, &most)), Some((&empty, &least))) = (
                load.iter()
                    .max_by_key(|(a, b)| (**b, std::cmp::Reverse(**a))),
                load.iter().min_by_key(|(a, b)| (**b, **a)),
            ) else {
                break;
            };
            let gap = most - least;
            // Placement by rendezvous hashing is even to within a few chunks: only a gap past a fifth of the mean
            // (a new worker, a drained one's share landing unevenly) is worth moving data for.
            let mean = load.values().sum::<u64>() / load.len().max(1) as u64;
            if gap * 5 < mean && moves.is_empty() {
                break;
            }
            let pick = chunk_bytes
                .iter()
                .filter(|(c, b)| {
                    **b > 0
                        && 2 * **b <= gap
                        && holders_of
                            .get(c)
                            .is_some_and(|h| h.contains(full) && !h.contains(empty))
                        && !moves.iter().any(|(m, _, _)| m == *c)
                })
                .max_by_key(|(c, b)| (**b, rank(**c, empty)))
                .map(|(c, b)| (*c, *b));
            let Some((chunk, bytes)) = pick else {
                break;
            };
            moves.push((chunk, full.to_string(), empty.to_string()));
            *load.get_mut(full).expect("a serving member") -= bytes;
            *load.get_mut(empty).expect("a serving member") += bytes;
            let h = holders_of.get_mut(&chunk).expect("a held chunk");
            h.remove(full);
            h.insert(empty.to_string());
        }
        for (chunk, from, to) in moves {
            for r in records.iter().filter(|r| !r.placement.is_empty()) {
                let table = r.qualified_name().to_lowercase();
                let entry = placements
                    .entry(table.clone())
                    .or_insert_with(|| (r.load_id.clone(), r.placement.iter().cloned().collect()));
                let Some(holders) = entry.1.get_mut(&chunk) else {
                    continue;
                };
                let Some(slot) = holders.iter().position(|h| *h == from) else {
                    continue;
                };
                for f in self.chunk_files(&table, &r.load_id, chunk) {
                    copies.push(Copy {
                        table: table.clone(),
                        load: r.load_id.clone(),
                        file: f,
                        target: to.clone(),
                        sources: vec![from.clone()],
                    });
                }
                holders[slot] = to.clone();
                leaving.push((table, r.load_id.clone(), from.clone(), chunk));
            }
        }
        placements.retain(|table, (_, p)| {
            records
                .iter()
                .find(|r| r.qualified_name().to_lowercase() == *table)
                .is_some_and(|r| r.placement.iter().cloned().collect::<BTreeMap<_, _>>() != *p)
        });
    }

    /// Makes every copy (four at a time); returns the ones that failed, with why.
    async fn copy_all(&self, copies: Vec<Copy>) -> Vec<(Copy, String)> {
        let results: Vec<(Copy, Result<u64, String>)> = futures::stream::iter(copies)
            .map(|c| async move {
                let r = self.copy_one(&c).await;
                (c, r)
            })
            .buffer_unordered(4)
            .collect()
            .await;
        let mut failed = Vec::new();
        let mut s = self.lock();
        for (c, r) in results {
            match r {
                Ok(bytes) => {
                    s.copies += 1;
                    s.bytes_copied += bytes;
                }
                Err(e) => failed.push((c, e)),
            }
        }
        failed
    }

    /// Copies one file to its target: from the first source that gives it whole, else from the czar's own copy.
    async fn copy_one(&self, c: &Copy) -> Result<u64, String> {
        let target = self.handle(&c.target).ok_or("no such worker")?;
        let mut last = String::from("no worker holds it and the czar has no copy");
        for source in &c.sources {
            let Some(from) = self.handle(source) else {
                continue;
            };
            match relay(&from, &target, c).await {
                Ok(bytes) => return Ok(bytes),
                Err(e) => last = format!("from {source}: {e}"),
            }
        }
        let own = layout::load_dir(self.czar.data_dir(), &c.table, &c.load).join(&c.file);
        if own.exists() {
            let bytes = tokio::fs::read(&own)
                .await
                .map_err(|e| format!("{}: {e}", own.display()))?;
            let sum = protocol::hex(&Sha256::digest(&bytes));
            let n = bytes.len() as u64;
            let pieces = bytes
                .chunks(1 << 20)
                .map(|p| Ok(p.to_vec()))
                .collect::<Vec<_>>();
            return put(
                &target,
                c,
                futures::stream::iter(pieces),
                futures::future::ready(Ok(sum)),
            )
            .await
            .map(|_| n);
        }
        Err(last)
    }

    /// Publishes the new placements (only where the table's load is still the one they were made for).
    /// Ok(false): the metadata store is being written by a load; nothing published.
    fn publish(
        &self,
        placements: &HashMap<String, (String, BTreeMap<u64, Vec<String>>)>,
    ) -> Result<bool, String> {
        let store = match MetaStore::open(&layout::meta_dir(self.czar.data_dir())) {
            Ok(s) => s,
            Err(e) if e.to_string().contains("another process") => return Ok(false),
            Err(e) => return Err(e.to_string()),
        };
        for (table, (load, placement)) in placements {
            let Some(mut record) = store.table(table).map_err(|e| e.to_string())? else {
                continue;
            };
            if &record.load_id != load {
                continue;
            }
            record.placement = placement.clone().into_iter().collect();
            store.publish(&record).map_err(|e| e.to_string())?;
        }
        drop(store);
        self.czar.refresh().map_err(|e| e.to_string())?;
        Ok(true)
    }

    /// Removes moved copies from their old holders after [`HealOptions::linger`].
    fn remove_later(&self, leaving: Vec<(String, String, String, u64)>) {
        if leaving.is_empty() {
            return;
        }
        let mut by_worker: BTreeMap<(String, String, String), Vec<u64>> = BTreeMap::new();
        for (table, load, worker, chunk) in leaving {
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
    async fn finish_drains(
        &self,
        records: &[TableRecord],
        placements: &HashMap<String, (String, BTreeMap<u64, Vec<String>>)>,
        census: &HashMap<String, Held>,
    ) -> Result<(), String> {
        let draining: Vec<String> = self
            .lock()
            .members
            .iter()
            .filter(|m| m.state == MemberState::Draining)
            .map(|m| m.address.clone())
            .collect();
        let mut done = Vec::new();
        for d in draining {
            let named = records.iter().any(|r| {
                let table = r.qualified_name().to_lowercase();
                match placements.get(&table) {
                    Some((_, p)) => p.values().any(|h| h.contains(&d)),
                    None => r.placement.iter().any(|(_, h)| h.contains(&d)),
                }
            });
            if !named {
                done.push(d);
            }
        }
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
                protocol::log::event(
                    protocol::log::Level::Notice,
                    "drain",
                    &format!("worker {d} is drained: it has left the cluster"),
                    &[("worker", d.clone().into())],
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

/// Streams a file from one worker to another, checking the source's SHA-256 against the bytes that passed.
async fn relay(from: &WorkerHandle, to: &WorkerHandle, c: &Copy) -> Result<u64, String> {
    let request = protocol::FetchFile {
        table: c.table.clone(),
        load_id: c.load.clone(),
        file: c.file.clone(),
    };
    let pieces = from
        .client()
        .do_action(arrow_flight::Action {
            r#type: protocol::ACTION_FETCH.into(),
            body: request.encode_to_vec().into(),
        })
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner();
    let (sum_tx, sum_rx) = tokio::sync::oneshot::channel::<Result<String, String>>();
    let (mut data_tx, data_rx) = futures::channel::mpsc::channel::<Result<Vec<u8>, String>>(2);
    // The source is read by its own task, which ends (dropping both senders) whatever happens.
    let reader = tokio::spawn(async move {
        use futures::SinkExt;
        let mut pieces = pieces;
        let mut hasher = Sha256::new();
        let mut bytes = 0u64;
        loop {
            let piece = match pieces.message().await {
                Ok(Some(result)) => {
                    protocol::FilePiece::decode(result.body).map_err(|e| e.to_string())
                }
                Ok(None) => Err("the source stopped before the end of the file".to_string()),
                Err(s) => Err(s.message().to_string()),
            };
            let piece = match piece {
                Ok(p) => p,
                Err(e) => {
                    let _ = data_tx.send(Err(e)).await;
                    return bytes;
                }
            };
            hasher.update(&piece.data);
            bytes += piece.data.len() as u64;
            if !piece.data.is_empty() && data_tx.send(Ok(piece.data)).await.is_err() {
                return bytes;
            }
            if !piece.sha256.is_empty() {
                let passed = protocol::hex(&hasher.finalize());
                let verdict = if passed == piece.sha256 {
                    Ok(passed)
                } else {
                    Err(format!(
                        "the source's SHA-256 {} is not that of the bytes received ({passed})",
                        piece.sha256
                    ))
                };
                let _ = sum_tx.send(verdict);
                return bytes;
            }
        }
    });
    let sum = async move {
        sum_rx
            .await
            .unwrap_or_else(|_| Err("the source stopped before the end of the file".into()))
    };
    put(to, c, data_rx, sum).await?;
    reader.await.map_err(|e| e.to_string())
}

/// Puts a file's bytes to a worker; the last message carries the SHA-256 `sum` resolves to once the bytes are
/// through (the worker discards a copy whose sum differs).
async fn put(
    to: &WorkerHandle,
    c: &Copy,
    data: impl futures::Stream<Item = Result<Vec<u8>, String>> + Send + 'static,
    sum: impl std::future::Future<Output = Result<String, String>> + Send + 'static,
) -> Result<(), String> {
    let descriptor =
        FlightDescriptor::new_path(vec![c.table.clone(), c.load.clone(), c.file.clone()]);
    let failure = Arc::new(Mutex::new(None::<String>));
    let f1 = failure.clone();
    let f2 = failure.clone();
    let mut first = Some(descriptor);
    let body = data
        .take_while(move |r| {
            let ok = match r {
                Ok(_) => true,
                Err(e) => {
                    *f1.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e.clone());
                    false
                }
            };
            futures::future::ready(ok)
        })
        .map(move |r| FlightData {
            flight_descriptor: first.take(),
            data_body: r.unwrap_or_default().into(),
            ..Default::default()
        })
        .chain(futures::stream::once(async move {
            // An empty message, the descriptor if nothing came before, and the checked sum; a failed check
            // sends a sum no file has, so the worker discards what it wrote.
            let sum = match sum.await {
                Ok(s) => s,
                Err(e) => {
                    *f2.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e);
                    "mismatch".to_string()
                }
            };
            FlightData {
                app_metadata: format!("{}{sum}", protocol::SHA256_METADATA)
                    .into_bytes()
                    .into(),
                ..Default::default()
            }
        }));
    let result = async {
        let response = to
            .client()
            .do_put(body)
            .await
            .map_err(|s| s.message().to_string())?;
        response
            .into_inner()
            .try_collect::<Vec<_>>()
            .await
            .map_err(|s| s.message().to_string())
    }
    .await;
    if let Some(e) = failure
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
    {
        return Err(e);
    }
    result.map(|_| ())
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
