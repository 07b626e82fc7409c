//! A caller's share of async jobs is checked and taken as one step: many `PHASE=RUN`s at once for the same caller
//! start no more jobs than the share allows (issue 33.5: 20 concurrent runs with a share of 2 once started 3).

mod common;

use std::pin::Pin;
use std::sync::{Arc, Barrier};

use metastore::accounts::{Identity, Quota};
use platform::Platform;
use platform::identity::Caller;
use platform::jobs::{Finished, Job, JobKind, Phase, QueryJobs};
use platform::quota::{Allowance, Client};

/// Query jobs that run until the test ends: an admitted job stays executing, so it keeps counting.
struct Forever;

impl QueryJobs for Forever {
    fn run(
        &self,
        _: Arc<Platform>,
        _: Job,
        _: Arc<czar::progress::Progress>,
    ) -> Pin<Box<dyn std::future::Future<Output = Result<Finished, String>> + Send>> {
        Box::pin(std::future::pending())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_runs_start_no_more_jobs_than_the_share() {
    let dir = std::env::temp_dir().join(format!("skyshard-admission-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let platform = common::platform(&dir, Arc::new(Forever));
    let ada = Caller::User(Identity {
        user: "ada".into(),
        groups: Vec::new(),
        scopes: vec!["read:tap".into()],
        token: "token of ada".into(),
        quota: Quota::default(),
        group_quotas: Vec::new(),
    });
    let client = Client {
        key: "user ada".into(),
        allowance: Allowance {
            sync: 4,
            jobs: 2,
            result_bytes: u64::MAX,
        },
        groups: Vec::new(),
    };
    let ids: Vec<String> = (0..20)
        .map(|_| {
            platform
                .create_job(&ada, &client, JobKind::Query)
                .expect("a job")
        })
        .collect();
    // Twenty runs from twenty threads, released together.
    let barrier = Arc::new(Barrier::new(ids.len()));
    let handle = tokio::runtime::Handle::current();
    let threads: Vec<_> = ids
        .iter()
        .map(|id| {
            let (platform, client, barrier, id, handle) = (
                platform.clone(),
                client.clone(),
                barrier.clone(),
                id.clone(),
                handle.clone(),
            );
            std::thread::spawn(move || {
                let _runtime = handle.enter();
                barrier.wait();
                platform.run_job(&id, &client)
            })
        })
        .collect();
    let outcomes: Vec<_> = threads
        .into_iter()
        .map(|t| t.join().expect("no panic"))
        .collect();
    let started = outcomes.iter().filter(|o| o.is_ok()).count();
    assert_eq!(started, 2, "{outcomes:?}");
    for refused in outcomes.iter().filter_map(|o| o.as_ref().err()) {
        assert!(refused.mine, "{refused:?}");
        assert_eq!(refused.whose, "user ada");
        assert_eq!(refused.limit, 2);
    }
    let active = platform
        .jobs
        .list()
        .into_iter()
        .filter(|j| matches!(j.phase, Phase::Queued | Phase::Executing))
        .count();
    assert_eq!(active, 2, "two jobs queued or executing");
    let _ = std::fs::remove_dir_all(&dir);
}
