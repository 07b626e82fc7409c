//! The healer's rules, one case each: a round's knowledge in, its plan out.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use metastore::{TableKind, TableRecord};

use super::*;
use crate::heal::{Held, Member, MemberState};

const TABLE: &str = "sky.obj";
const LOAD: &str = "L1";

/// A round's knowledge, written as a test reads it.
struct World {
    members: Vec<Member>,
    answering: HashSet<String>,
    gone: HashSet<String>,
    shared: HashSet<String>,
    census: HashMap<String, Held>,
    records: Vec<TableRecord>,
    czar_files: HashMap<(String, String), BTreeSet<String>>,
    replicas: usize,
    rebalance: bool,
}

fn own(chunk: u64) -> String {
    format!("chunks/{chunk}.parquet")
}

fn overlap(chunk: u64) -> String {
    format!("chunks/{chunk}.overlap.parquet")
}

impl World {
    /// Serving members, all answering; `placement`: chunk -> holders of [`TABLE`]; every holder holds its chunks'
    /// files (100 bytes each) and the czar has every file.
    fn new(serving: &[&str], placement: &[(u64, &[&str])]) -> World {
        let mut w = World {
            members: serving
                .iter()
                .map(|a| Member {
                    address: a.to_string(),
                    state: MemberState::Serving,
                })
                .collect(),
            answering: serving.iter().map(|a| a.to_string()).collect(),
            gone: HashSet::new(),
            shared: HashSet::new(),
            census: HashMap::new(),
            records: vec![record(TABLE, LOAD, placement)],
            czar_files: HashMap::new(),
            replicas: 2,
            rebalance: false,
        };
        for (chunk, holders) in placement {
            let files = w.czar_files.entry((TABLE.into(), LOAD.into())).or_default();
            files.insert(own(*chunk));
            files.insert(overlap(*chunk));
            for h in *holders {
                w.holds(h, TABLE, LOAD, &[&own(*chunk), &overlap(*chunk)]);
            }
        }
        w
    }

    fn holds(&mut self, worker: &str, table: &str, load: &str, files: &[&str]) {
        let held = self
            .census
            .entry(worker.to_string())
            .or_default()
            .entry((table.to_string(), load.to_string()))
            .or_default();
        for f in files {
            held.insert(f.to_string(), 100);
        }
    }

    fn member(&mut self, address: &str, state: MemberState) {
        self.members.retain(|m| m.address != address);
        self.members.push(Member {
            address: address.to_string(),
            state,
        });
        self.answering.insert(address.to_string());
    }

    /// `worker` stopped answering (`gone`: for longer than the grace period).
    fn silent(&mut self, worker: &str, gone: bool) {
        self.answering.remove(worker);
        self.census.remove(worker);
        if gone {
            self.gone.insert(worker.to_string());
        }
    }

    fn plan(&self) -> RoundPlan {
        plan_round(&RoundInput {
            members: &self.members,
            shared: &self.shared,
            answering: &self.answering,
            gone: &self.gone,
            census: &self.census,
            records: &self.records,
            czar_files: &self.czar_files,
            replicas: self.replicas,
            rebalance: self.rebalance,
        })
    }

    /// The round's placements published: the records say them from now on.
    fn publish(&mut self, plan: &RoundPlan) {
        for r in &mut self.records {
            if let Some((_, p)) = plan.placements.get(&r.qualified_name()) {
                r.placement = p.clone().into_iter().collect();
            }
        }
    }
}

fn record(table: &str, load: &str, placement: &[(u64, &[&str])]) -> TableRecord {
    let (schema, name) = table.split_once('.').expect("schema.table");
    TableRecord {
        schema: schema.into(),
        name: name.into(),
        kind: TableKind::Director {
            ra: "ra".into(),
            dec: "dec".into(),
            id: "id".into(),
        },
        description: None,
        load_id: load.into(),
        rows: 0,
        overlap_arcsec: 5.0,
        chunks: placement.iter().map(|(c, _)| *c).collect(),
        columns: Vec::new(),
        orphan_rows: 0,
        placement: placement
            .iter()
            .map(|(c, h)| (*c, h.iter().map(|s| s.to_string()).collect()))
            .collect(),
    }
}

/// (target, file) of every copy, sorted.
fn copies(plan: &RoundPlan) -> Vec<(String, String)> {
    let mut c: Vec<_> = plan
        .copies
        .iter()
        .map(|c| (c.target.clone(), c.file.clone()))
        .collect();
    c.sort();
    c
}

fn copies_of(target: &str, chunk: u64) -> Vec<(String, String)> {
    let mut c = vec![
        (target.to_string(), own(chunk)),
        (target.to_string(), overlap(chunk)),
    ];
    c.sort();
    c
}

/// The holders of `chunk` of [`TABLE`] the plan publishes (None: no new placement of the table).
fn placed(plan: &RoundPlan, chunk: u64) -> Option<Vec<String>> {
    let (_, p) = plan.placements.get(TABLE)?;
    let mut h = p.get(&chunk)?.clone();
    h.sort();
    Some(h)
}

fn names(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// (worker, chunk) of every removal, sorted.
fn removals(plan: &RoundPlan) -> Vec<(String, u64)> {
    let mut r: Vec<_> = plan
        .removals
        .iter()
        .map(|r| (r.worker.clone(), r.chunk))
        .collect();
    r.sort();
    r
}

#[test]
fn a_healthy_cluster_is_left_alone() {
    let w = World::new(&["a", "b", "c"], &[(16, &["a", "b"]), (17, &["b", "c"])]);
    let plan = w.plan();
    assert_eq!(
        plan,
        RoundPlan {
            copies_histogram: BTreeMap::from([(2, 2)]),
            ..Default::default()
        }
    );
}

#[test]
fn a_dead_worker_s_chunks_are_copied_from_a_survivor() {
    let mut w = World::new(&["a", "b", "c"], &[(16, &["a", "b"])]);
    w.silent("b", true);
    let plan = w.plan();
    assert_eq!(copies(&plan), copies_of("c", 16));
    assert!(
        plan.copies.iter().all(|c| c.sources == ["a"]),
        "{:?}",
        plan.copies
    );
    assert_eq!(placed(&plan, 16), Some(names(&["a", "c"])));
    // b does not answer: nothing can be removed from it.
    assert_eq!(removals(&plan), []);
    assert_eq!(plan.copies_histogram, BTreeMap::from([(1, 1)]));
}

#[test]
fn a_worker_silent_within_the_grace_period_keeps_its_copies() {
    let mut w = World::new(&["a", "b", "c"], &[(16, &["a", "b"])]);
    w.silent("b", false);
    let plan = w.plan();
    assert_eq!(copies(&plan), []);
    assert_eq!(placed(&plan, 16), None);
    assert_eq!(plan.copies_histogram, BTreeMap::from([(2, 1)]));
}

#[test]
fn a_returning_worker_s_old_holdings_are_removed() {
    // b was gone, its chunk went to c; now b answers again with its old copy.
    let mut w = World::new(&["a", "b", "c"], &[(16, &["a", "c"])]);
    w.holds("b", TABLE, LOAD, &[&own(16), &overlap(16)]);
    let plan = w.plan();
    assert_eq!(copies(&plan), []);
    assert_eq!(placed(&plan, 16), None);
    assert_eq!(removals(&plan), [("b".to_string(), 16)]);
}

#[test]
fn a_worker_that_lost_a_file_is_replaced_for_that_chunk() {
    let mut w = World::new(&["a", "b", "c"], &[(16, &["a", "b"]), (17, &["a", "b"])]);
    w.census
        .get_mut("b")
        .and_then(|h| h.get_mut(&(TABLE.to_string(), LOAD.to_string())))
        .expect("b holds the table")
        .remove(&own(16));
    let plan = w.plan();
    assert_eq!(copies(&plan), copies_of("c", 16));
    assert_eq!(placed(&plan, 16), Some(names(&["a", "c"])));
    assert_eq!(placed(&plan, 17), Some(names(&["a", "b"])));
    assert_eq!(removals(&plan), [("b".to_string(), 16)]);
}

#[test]
fn a_chunk_without_a_surviving_replica_is_copied_from_the_czar() {
    let mut w = World::new(&["a", "b", "c"], &[(16, &["b", "c"])]);
    w.silent("b", true);
    w.silent("c", true);
    let plan = w.plan();
    assert_eq!(copies(&plan), copies_of("a", 16));
    assert!(
        plan.copies.iter().all(|c| c.sources.is_empty()),
        "{:?}",
        plan.copies
    );
    assert_eq!(placed(&plan, 16), Some(names(&["a"])));
    assert_eq!(plan.copies_histogram, BTreeMap::from([(0, 1)]));
}

#[test]
fn a_draining_worker_s_chunks_move_and_it_leaves_once_no_placement_names_it() {
    let mut w = World::new(&["a", "b", "c"], &[(16, &["b", "c"])]);
    w.member("c", MemberState::Draining);
    let plan = w.plan();
    assert_eq!(copies(&plan), copies_of("a", 16));
    assert_eq!(plan.copies[0].sources, ["b", "c"]);
    assert_eq!(placed(&plan, 16), Some(names(&["a", "b"])));
    assert_eq!(removals(&plan), [("c".to_string(), 16)]);
    assert_eq!(
        drained(&w.members, &w.records, &BTreeMap::new()),
        Vec::<String>::new()
    );
    assert_eq!(drained(&w.members, &w.records, &plan.placements), ["c"]);
}

#[test]
fn a_failed_copy_keeps_the_old_holders_and_their_copies() {
    // As above, but the copy to a fails its checksum: c stays in the placement and keeps its file.
    let mut w = World::new(&["a", "b", "c"], &[(16, &["b", "c"])]);
    w.member("c", MemberState::Draining);
    let mut plan = w.plan();
    let failed = HashSet::from([(TABLE.to_string(), LOAD.to_string(), "a".to_string())]);
    settle(&mut plan, &failed, &w.records, &w.gone);
    assert_eq!(placed(&plan, 16), Some(names(&["b", "c"])));
    assert_eq!(removals(&plan), []);
    assert_eq!(
        drained(&w.members, &w.records, &plan.placements),
        Vec::<String>::new()
    );
}

#[test]
fn a_failed_copy_does_not_bring_back_a_gone_holder() {
    let mut w = World::new(&["a", "b", "c"], &[(16, &["a", "b"])]);
    w.silent("b", true);
    let mut plan = w.plan();
    let failed = HashSet::from([(TABLE.to_string(), LOAD.to_string(), "c".to_string())]);
    settle(&mut plan, &failed, &w.records, &w.gone);
    assert_eq!(placed(&plan, 16), Some(names(&["a"])));
}

#[test]
fn two_deaths_in_a_row_are_healed_one_round_after_the_other() {
    let mut w = World::new(&["a", "b", "c", "d"], &[(16, &["a", "b"])]);
    w.silent("b", true);
    let first = w.plan();
    let to = placed(&first, 16).expect("a new placement");
    assert!(to.contains(&"a".to_string()) && to.len() == 2, "{to:?}");
    let new = to
        .iter()
        .find(|h| *h != "a")
        .expect("a second holder")
        .clone();
    w.publish(&first);
    w.holds(&new, TABLE, LOAD, &[&own(16), &overlap(16)]);
    // The worker that took the copy dies too.
    w.silent(&new, true);
    let second = w.plan();
    let last = placed(&second, 16).expect("a new placement");
    assert_eq!(last.len(), 2);
    assert!(last.contains(&"a".to_string()), "{last:?}");
    assert!(
        !last.contains(&"b".to_string()) && !last.contains(&new),
        "{last:?}"
    );
    assert!(second.copies.iter().all(|c| c.sources == ["a"]));
}

#[test]
fn a_placement_made_for_a_load_that_was_replaced_is_not_published() {
    let mut w = World::new(&["a", "b", "c"], &[(16, &["a", "b"])]);
    w.silent("b", true);
    let plan = w.plan();
    assert_eq!(still_current(&plan.placements, &w.records).len(), 1);
    // A new load of the table was published while the copies ran.
    let replaced = vec![record(TABLE, "L2", &[(16, &["a", "b"])])];
    assert_eq!(still_current(&plan.placements, &replaced), []);
}

#[test]
fn an_added_worker_receives_whole_chunks_from_the_fullest() {
    let chunks: Vec<(u64, &[&str])> = (16..24).map(|c| (c, &["a", "b"][..])).collect();
    let mut w = World::new(&["a", "b"], &chunks);
    w.member("e", MemberState::Serving);
    w.rebalance = true;
    let plan = w.plan();
    assert!(!plan.balanced);
    assert!(plan.copies.len() >= 4, "{:?}", copies(&plan));
    assert!(plan.copies.iter().all(|c| c.target == "e"));
    assert!(
        plan.removals
            .iter()
            .all(|r| r.worker == "a" || r.worker == "b")
    );
    // Each moved chunk moves whole (its own and overlap files) and keeps two holders.
    let (_, placement) = plan.placements.get(TABLE).expect("moves");
    let mut bytes: BTreeMap<&str, u64> = BTreeMap::new();
    for holders in placement.values() {
        assert_eq!(holders.len(), 2, "{placement:?}");
        for h in holders {
            *bytes.entry(h.as_str()).or_default() += 100;
        }
    }
    let spread = bytes.values().max().unwrap() - bytes.get("e").copied().unwrap_or(0);
    assert!(spread < 800, "the gap narrowed from 800 bytes: {bytes:?}");
    // A balanced cluster moves nothing, and says so.
    let even = World {
        rebalance: true,
        ..World::new(&["a", "b"], &chunks)
    };
    let plan = even.plan();
    assert!(plan.balanced && plan.copies.is_empty());
}

#[test]
fn a_joining_worker_gets_the_replicated_tables_then_serves() {
    let mut w = World::new(&["a"], &[]);
    w.records = vec![TableRecord {
        kind: TableKind::Replicated,
        placement: Vec::new(),
        ..record("sky.filters", "L9", &[])
    }];
    w.czar_files.insert(
        ("sky.filters".into(), "L9".into()),
        BTreeSet::from(["replicated/part-0.parquet".to_string()]),
    );
    w.holds("a", "sky.filters", "L9", &["replicated/part-0.parquet"]);
    w.member("j", MemberState::Joining);
    let plan = w.plan();
    assert_eq!(
        copies(&plan),
        [("j".to_string(), "replicated/part-0.parquet".to_string())]
    );
    assert_eq!(plan.copies[0].sources, ["a"]);
    assert_eq!(plan.joining, [("j".to_string(), 1)]);
    assert_eq!(joined(&plan, &HashSet::new()), ["j"]);
    assert_eq!(
        joined(&plan, &HashSet::from(["j".to_string()])),
        Vec::<String>::new()
    );
}

#[test]
fn a_member_sharing_the_czar_s_directory_holds_everything_and_is_never_a_target() {
    let mut w = World::new(&["s", "a", "b", "c"], &[(16, &["s", "a"])]);
    w.shared.insert("s".into());
    w.census.remove("s");
    w.silent("a", true);
    let plan = w.plan();
    let targets: BTreeSet<&str> = plan.copies.iter().map(|c| c.target.as_str()).collect();
    assert_eq!(targets.len(), 1, "{:?}", copies(&plan));
    let target = *targets.iter().next().unwrap();
    assert!(target == "b" || target == "c", "{target}");
    assert_eq!(copies(&plan), copies_of(target, 16));
    assert_eq!(placed(&plan, 16), Some(names(&["s", target])));
}
