//! A round of healing, planned: a pure function from what the round knows (members, who answered, who is gone,
//! what each holds, the published placements, the czar's own files) to what it will do (files to copy, placements
//! to publish, copies to remove after the linger, joining members to let serve). No I/O happens here; the executor
//! in [`super`] asks the workers, makes the copies, publishes and removes. Its unit tests are the healer's rules,
//! one case each.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use metastore::{TableKind, TableRecord};
use partitioner::layout;

use super::{Held, Member, MemberState};
use crate::cluster::rank;

/// One file to copy to one worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub table: String,
    pub load: String,
    /// `chunks/UNIQ.parquet`, `replicated/part-0.parquet`, ...
    pub file: String,
    pub target: String,
    /// Workers holding it, in the order to read from (none: the czar's own copy).
    pub sources: Vec<String>,
}

/// A chunk's copy on a worker, to remove once the placement that no longer names it is out.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Removal {
    pub table: String,
    pub load: String,
    pub worker: String,
    pub chunk: u64,
}

/// A table's placement to publish: the load it was computed for, and chunk -> holders.
pub type Placement = (String, BTreeMap<u64, Vec<String>>);

/// What a round knows.
pub struct RoundInput<'a> {
    pub members: &'a [Member],
    /// Members that read the czar's own data directory (they hold every file already).
    pub shared: &'a HashSet<String>,
    /// Members that answered this round's census.
    pub answering: &'a HashSet<String>,
    /// Members silent for longer than the grace period.
    pub gone: &'a HashSet<String>,
    pub census: &'a HashMap<String, Held>,
    pub records: &'a [TableRecord],
    /// The czar's own files of each load, `(table, load)` -> `chunks/...`, `replicated/...` (the source of last
    /// resort, and the list of a chunk's files).
    pub czar_files: &'a HashMap<(String, String), BTreeSet<String>>,
    pub replicas: usize,
    /// A worker was added: even out bytes once there is nothing to heal.
    pub rebalance: bool,
}

/// What a round does.
#[derive(Debug, Default, PartialEq)]
pub struct RoundPlan {
    pub copies: Vec<Copy>,
    /// Placements to publish, by table.
    pub placements: BTreeMap<String, Placement>,
    pub removals: Vec<Removal>,
    /// Joining members and how many files they are sent this round (none: they serve from now on).
    pub joining: Vec<(String, usize)>,
    /// Chunks of shipped tables by number of kept copies.
    pub copies_histogram: BTreeMap<usize, u64>,
    /// Rebalancing was asked for and found nothing more to move.
    pub balanced: bool,
}

impl RoundInput<'_> {
    fn has(&self, worker: &str, table: &str, load: &str, file: &str) -> bool {
        self.census
            .get(worker)
            .and_then(|h| h.get(&(table.to_string(), load.to_string())))
            .is_some_and(|files| files.contains_key(file))
    }

    fn size(&self, worker: &str, table: &str, load: &str, file: &str) -> u64 {
        self.census
            .get(worker)
            .and_then(|h| h.get(&(table.to_string(), load.to_string())))
            .and_then(|f| f.get(file))
            .copied()
            .unwrap_or(0)
    }

    fn state_of(&self, address: &str) -> Option<MemberState> {
        self.members
            .iter()
            .find(|m| m.address == address)
            .map(|m| m.state)
    }

    fn answers(&self, address: &str) -> bool {
        self.answering.contains(address)
    }

    /// The czar's files of a load under `sub/`.
    fn own_files(&self, table: &str, load: &str, sub: &str) -> Vec<String> {
        let prefix = format!("{sub}/");
        self.czar_files
            .get(&(table.to_string(), load.to_string()))
            .into_iter()
            .flatten()
            .filter(|f| f.starts_with(&prefix))
            .cloned()
            .collect()
    }

    /// A chunk's files of a load (its own rows, and its overlap when the load has one), as the czar holds them.
    fn chunk_files(&self, table: &str, load: &str, chunk: u64) -> Vec<String> {
        let files = self.czar_files.get(&(table.to_string(), load.to_string()));
        [layout::chunk_file(chunk), layout::overlap_file(chunk)]
            .into_iter()
            .map(|n| format!("{}/{n}", layout::CHUNKS))
            .filter(|f| files.is_some_and(|files| files.contains(f)))
            .collect()
    }
}

/// Plans a round: replicated tables for every answering member, copies for chunks below their replica count,
/// the rebalancing moves after a worker was added (only when nothing needs healing), and the removal of copies no
/// placement names.
pub fn plan_round(input: &RoundInput) -> RoundPlan {
    let mut plan = RoundPlan::default();
    let remote: Vec<&Member> = input
        .members
        .iter()
        .filter(|m| !input.shared.contains(&m.address))
        .collect();

    // Replicated tables on every answering remote member; joining members become serving once they have them.
    for m in &remote {
        if !input.answers(&m.address) || m.state == MemberState::Draining {
            continue;
        }
        let before = plan.copies.len();
        for r in input
            .records
            .iter()
            .filter(|r| r.kind == TableKind::Replicated)
        {
            let table = r.qualified_name().to_lowercase();
            for file in input.own_files(&table, &r.load_id, layout::REPLICATED) {
                if !input.has(&m.address, &table, &r.load_id, &file) {
                    let sources = remote
                        .iter()
                        .filter(|o| {
                            input.answers(&o.address)
                                && input.has(&o.address, &table, &r.load_id, &file)
                        })
                        .map(|o| o.address.clone())
                        .collect();
                    plan.copies.push(Copy {
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
            plan.joining
                .push((m.address.clone(), plan.copies.len() - before));
        }
    }

    // Chunks below their copies.
    let ready: Vec<String> = plan
        .joining
        .iter()
        .filter(|(_, n)| *n == 0)
        .map(|(a, _)| a.clone())
        .collect();
    let serving: Vec<&str> = remote
        .iter()
        .filter(|m| m.state == MemberState::Serving && input.answers(&m.address))
        .map(|m| m.address.as_str())
        .chain(ready.iter().map(String::as_str))
        .collect();
    let replicas = input.replicas.max(1);
    for r in input.records.iter().filter(|r| !r.placement.is_empty()) {
        let table = r.qualified_name().to_lowercase();
        let mut placement: BTreeMap<u64, Vec<String>> = r.placement.iter().cloned().collect();
        let mut changed = false;
        for (chunk, holders) in placement.iter_mut() {
            let file = format!("{}/{}", layout::CHUNKS, layout::chunk_file(*chunk));
            // A copy is kept on a serving member that is not gone and holds it (or has not answered yet, within
            // the grace period).
            let kept: Vec<String> = holders
                .iter()
                .filter(|h| {
                    input.state_of(h) == Some(MemberState::Serving)
                        && !input.gone.contains(h.as_str())
                        && (!input.answers(h)
                            || input.shared.contains(h.as_str())
                            || input.has(h, &table, &r.load_id, &file))
                })
                .cloned()
                .collect();
            *plan.copies_histogram.entry(kept.len()).or_default() += 1;
            let want = replicas.min(serving.len().max(kept.len()));
            let mut next = kept.clone();
            if kept.len() < want {
                let mut candidates: Vec<&str> = serving
                    .iter()
                    .copied()
                    .filter(|a| !holders.iter().any(|h| h == a))
                    .collect();
                candidates.sort_by_key(|a| std::cmp::Reverse(rank(*chunk, a)));
                // Kept holders first, then any other holder that still has the file (a draining one), each once.
                let mut sources: Vec<String> = Vec::new();
                for h in kept.iter().filter(|h| input.answers(h)).chain(
                    holders
                        .iter()
                        .filter(|h| input.answers(h) && input.has(h, &table, &r.load_id, &file)),
                ) {
                    if !sources.contains(h) {
                        sources.push(h.clone());
                    }
                }
                for target in candidates.into_iter().take(want - kept.len()) {
                    for f in input.chunk_files(&table, &r.load_id, *chunk) {
                        if !input.has(target, &table, &r.load_id, &f) {
                            plan.copies.push(Copy {
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
                    if input.answers(h) && !input.shared.contains(h.as_str()) {
                        plan.removals.push(Removal {
                            table: table.clone(),
                            load: r.load_id.clone(),
                            worker: h.clone(),
                            chunk: *chunk,
                        });
                    }
                }
                *holders = next;
                changed = true;
            }
        }
        if changed {
            plan.placements
                .insert(table, (r.load_id.clone(), placement));
        }
    }

    // Nothing to heal and a worker was added: even out bytes between serving members.
    if input.rebalance
        && plan.placements.is_empty()
        && plan.copies.is_empty()
        && serving.len() > 1
        && input.members.iter().all(|m| {
            input.answers(&m.address)
                || input.shared.contains(&m.address)
                || input.gone.contains(&m.address)
        })
    {
        rebalance(input, &serving, &mut plan);
        plan.balanced = plan.copies.is_empty();
    }

    stray_copies(input, &remote, &mut plan);
    plan
}

/// Moves whole chunks (every table's files of the chunk, so chunk-local joins stay local) from the fullest serving
/// member to the emptiest while a move narrows the gap.
fn rebalance(input: &RoundInput, serving: &[&str], plan: &mut RoundPlan) {
    let mut chunk_bytes: BTreeMap<u64, u64> = BTreeMap::new();
    let mut holders_of: BTreeMap<u64, HashSet<String>> = BTreeMap::new();
    let mut load: BTreeMap<&str, u64> = serving.iter().map(|a| (*a, 0)).collect();
    for r in input.records.iter().filter(|r| !r.placement.is_empty()) {
        let table = r.qualified_name().to_lowercase();
        for (chunk, holders) in &r.placement {
            let file = format!("{}/{}", layout::CHUNKS, layout::chunk_file(*chunk));
            let bytes = holders
                .iter()
                .map(|h| input.size(h, &table, &r.load_id, &file))
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
        // Placement by rendezvous hashing is even to within a few chunks: only a gap past a fifth of the mean (a
        // new worker, a drained one's share landing unevenly) is worth moving data for.
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
        for r in input.records.iter().filter(|r| !r.placement.is_empty()) {
            let table = r.qualified_name().to_lowercase();
            let entry = plan
                .placements
                .entry(table.clone())
                .or_insert_with(|| (r.load_id.clone(), r.placement.iter().cloned().collect()));
            let Some(holders) = entry.1.get_mut(&chunk) else {
                continue;
            };
            let Some(slot) = holders.iter().position(|h| *h == from) else {
                continue;
            };
            for f in input.chunk_files(&table, &r.load_id, chunk) {
                plan.copies.push(Copy {
                    table: table.clone(),
                    load: r.load_id.clone(),
                    file: f,
                    target: to.clone(),
                    sources: vec![from.clone()],
                });
            }
            holders[slot] = to.clone();
            plan.removals.push(Removal {
                table,
                load: r.load_id.clone(),
                worker: from.clone(),
                chunk,
            });
        }
    }
    plan.placements.retain(|table, (_, p)| {
        input
            .records
            .iter()
            .find(|r| r.qualified_name().to_lowercase() == *table)
            .is_some_and(|r| r.placement.iter().cloned().collect::<BTreeMap<_, _>>() != *p)
    });
}

/// Copies no placement names (a copy whose placement was not published, a returning worker's old holdings):
/// garbage, removed after the linger.
fn stray_copies(input: &RoundInput, remote: &[&Member], plan: &mut RoundPlan) {
    for r in input.records.iter().filter(|r| !r.placement.is_empty()) {
        let table = r.qualified_name().to_lowercase();
        let placed: HashMap<u64, &Vec<String>> = r.placement.iter().map(|(c, h)| (*c, h)).collect();
        for m in remote {
            if !input.answers(&m.address) {
                continue;
            }
            let Some(files) = input
                .census
                .get(&m.address)
                .and_then(|h| h.get(&(table.clone(), r.load_id.clone())))
            else {
                continue;
            };
            let stray: BTreeSet<u64> = files
                .keys()
                .filter_map(|f| f.strip_prefix("chunks/").and_then(layout::parse_chunk_file))
                .map(|(chunk, _)| chunk)
                .filter(|chunk| {
                    placed.get(chunk).is_none_or(|h| !h.contains(&m.address))
                        && !plan
                            .copies
                            .iter()
                            .any(|c| c.target == m.address && c.table == table)
                })
                .collect();
            for chunk in stray {
                let placed_now = plan
                    .placements
                    .get(&table)
                    .is_some_and(|(_, p)| p.get(&chunk).is_some_and(|h| h.contains(&m.address)));
                if !placed_now {
                    plan.removals.push(Removal {
                        table: table.clone(),
                        load: r.load_id.clone(),
                        worker: m.address.clone(),
                        chunk,
                    });
                }
            }
        }
    }
}

/// After the copies: a target whose copy failed is not put in the placement, and the chunk's previous holders
/// (those not gone) stay in it and keep their copy.
pub fn settle(
    plan: &mut RoundPlan,
    failed_targets: &HashSet<(String, String, String)>,
    records: &[TableRecord],
    gone: &HashSet<String>,
) {
    let failed = |table: &str, load: &str, worker: &str| {
        failed_targets.contains(&(table.to_string(), load.to_string(), worker.to_string()))
    };
    for (table, (load, placement)) in plan.placements.iter_mut() {
        let old: HashMap<u64, Vec<String>> = records
            .iter()
            .find(|r| r.qualified_name().to_lowercase() == *table)
            .map(|r| r.placement.iter().cloned().collect())
            .unwrap_or_default();
        for (chunk, holders) in placement.iter_mut() {
            if holders.iter().any(|h| failed(table, load, h)) {
                holders.retain(|h| !failed(table, load, h));
                for p in old.get(chunk).cloned().unwrap_or_default() {
                    if !holders.contains(&p) && !gone.contains(&p) {
                        holders.push(p.clone());
                        plan.removals.retain(|r| {
                            !(r.table == *table
                                && r.load == *load
                                && r.worker == p
                                && r.chunk == *chunk)
                        });
                    }
                }
            }
        }
    }
}

/// Joining members that serve from now on: those sent nothing this round, or whose copies all succeeded.
pub fn joined(plan: &RoundPlan, failed_targets: &HashSet<String>) -> Vec<String> {
    plan.joining
        .iter()
        .filter(|(address, n)| *n == 0 || !failed_targets.contains(address))
        .map(|(address, _)| address.clone())
        .collect()
}

/// Draining members that no placement names any more (the published ones, or this round's where it changed one).
pub fn drained(
    members: &[Member],
    records: &[TableRecord],
    placements: &BTreeMap<String, Placement>,
) -> Vec<String> {
    members
        .iter()
        .filter(|m| m.state == MemberState::Draining)
        .filter(|m| {
            !records.iter().any(|r| {
                let table = r.qualified_name().to_lowercase();
                match placements.get(&table) {
                    Some((_, p)) => p.values().any(|h| h.contains(&m.address)),
                    None => r.placement.iter().any(|(_, h)| h.contains(&m.address)),
                }
            })
        })
        .map(|m| m.address.clone())
        .collect()
}

/// The placements still meant for the table's current load: a load published while the round ran (a new chunk
/// map, new files) makes the round's placement of the old load meaningless, so it is dropped, not published.
pub fn still_current(
    placements: &BTreeMap<String, Placement>,
    records: &[TableRecord],
) -> Vec<(String, BTreeMap<u64, Vec<String>>)> {
    placements
        .iter()
        .filter(|(table, (load, _))| {
            records
                .iter()
                .any(|r| r.qualified_name().to_lowercase() == **table && r.load_id == *load)
        })
        .map(|(table, (_, placement))| (table.clone(), placement.clone()))
        .collect()
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
