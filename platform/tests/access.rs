//! The access table (`access_table.json`: caller x resource x action -> allowed) run through the platform's own
//! decisions, without HTTP: `Grants::may_read`, `Platform::may_add_rows`, `Platform::may_write_tables`,
//! `Platform::job_access` and `Platform::may_use_space`. tests/python/test_access_table.py runs the same table
//! through a real service's HTTP endpoints.

mod common;

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use metastore::accounts::{Identity, Quota};
use platform::Platform;
use platform::access::{Grant, JobAccess, Reader, Space};
use platform::files::{FilePath, Use};
use platform::identity::Caller;
use platform::jobs::{Finished, Job, QueryJobs};

/// Query jobs are not run here.
struct NoQueries;

impl QueryJobs for NoQueries {
    fn run(
        &self,
        _: Arc<Platform>,
        _: Job,
        _: Arc<czar::progress::Progress>,
    ) -> Pin<Box<dyn std::future::Future<Output = Result<Finished, String>> + Send>> {
        Box::pin(async { Err("not in this test".to_string()) })
    }
}

fn table() -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/access_table.json");
    serde_json::from_slice(&std::fs::read(path).expect("the access table")).expect("JSON")
}

fn user(name: &str, groups: &[&str], scopes: &[&str]) -> Caller {
    Caller::User(Identity {
        user: name.to_string(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        token: format!("token of {name}"),
        quota: Quota::default(),
        group_quotas: Vec::new(),
    })
}

/// The callers of the table.
fn caller(name: &str) -> Caller {
    let everything = ["read:tap", "write:tables", "write:files"];
    match name {
        "anonymous" => Caller::Anonymous,
        "ada" => user("ada", &["optics"], &everything),
        "bob" => user("bob", &[], &everything),
        "cy" => user("cy", &["optics"], &everything),
        "root" => user(
            "root",
            &[],
            &["read:tap", "write:tables", "write:files", "admin"],
        ),
        "ada_ro" => user("ada", &["optics"], &["read:tap"]),
        other => panic!("no caller {other} in the table"),
    }
}


/// Whether the platform allows `caller` to do `action` to `resource`.
fn allowed(platform: &Platform, who: &Caller, action: &str, resource: &str) -> bool {
    let space_of = |table: &str| Space::of(table.split('.').next().expect("schema"));
    match action {
        "read" => platform.grants.may_read(&Reader::of(who), resource),
        "add_rows" => space_of(resource)
            .is_some_and(|space| platform.may_add_rows(who, &space, resource).is_ok()),
        "change" => {
            space_of(resource).is_some_and(|space| platform.may_write_tables(who, &space).is_ok())
        }
        "create_in" => {
            Space::of(resource).is_some_and(|space| platform.may_write_tables(who, &space).is_ok())
        }
        "job" => {
            let owner = (resource != "anonymous").then_some(resource);
            platform.job_access(who, owner) == JobAccess::Allowed
        }
        "file_read" | "file_write" => {
            let path = FilePath::parse(&format!("/files/{resource}/x.txt")).expect("a path");
            let what = if action == "file_read" {
                Use::Read
            } else {
                Use::Write
            };
            platform.may_use_space(who, &path, what).is_ok()
        }
        other => panic!("no action {other} in the table"),
    }
}

#[tokio::test]
async fn the_access_table_holds_for_the_platform_s_decisions() {
    let dir = std::env::temp_dir().join(format!("skyshard-access-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let platform = common::platform(&dir, Arc::new(NoQueries));
    let table = table();
    for (name, spec) in table["tables"].as_object().expect("tables") {
        let mut grant = Grant::default();
        if let Some(g) = spec["r-group"].as_str() {
            grant.groups = vec![g.to_string()];
        }
        if let Some(g) = spec["rw-group"].as_str() {
            grant.write_groups = vec![g.to_string()];
        }
        grant.public = spec["public"].as_bool().unwrap_or(false);
        platform.grants.set(name, grant).expect("a grant");
    }
    let callers: Vec<&str> = table["callers"]
        .as_array()
        .expect("callers")
        .iter()
        .map(|c| c.as_str().expect("a name"))
        .collect();
    let mut wrong = Vec::new();
    let mut rows = 0;
    for rule in table["rules"].as_array().expect("rules") {
        let (action, resource) = (
            rule["action"].as_str().expect("an action"),
            rule["resource"].as_str().expect("a resource"),
        );
        let may: Vec<&str> = rule["allowed"]
            .as_array()
            .expect("allowed")
            .iter()
            .map(|c| c.as_str().expect("a name"))
            .collect();
        for who in &callers {
            rows += 1;
            let want = may.contains(who);
            if allowed(&platform, &caller(who), action, resource) != want {
                wrong.push(format!(
                    "{who} {action} {resource}: expected {}",
                    if want { "allowed" } else { "refused" }
                ));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(rows >= 40, "the table has {rows} rows");
    assert!(
        wrong.is_empty(),
        "{} of {rows} rows disagree:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
