//! What the platform's integration tests share: a platform over an empty data directory, with accounts
//! (`--auth optional`) and the query jobs a test chooses.

use std::path::Path;
use std::sync::Arc;

use metastore::accounts::Accounts;
use platform::Platform;
use platform::identity::{Auth, Policy};
use platform::jobs::QueryJobs;

/// A platform over `dir/data` (a czar with one unreachable worker: nothing here runs a query on a worker).
pub fn platform(dir: &Path, query_jobs: Arc<dyn QueryJobs>) -> Arc<Platform> {
    let cluster =
        czar::cluster::Cluster::new(&["127.0.0.1:9".to_string()], 1, 1).expect("a cluster");
    let czar =
        Arc::new(czar::Czar::open(&dir.join("data"), cluster, Default::default()).expect("a czar"));
    let auth = Auth {
        policy: Policy::Optional,
        accounts: Accounts::new(&dir.join("data")),
        proxy: None,
    };
    Arc::new(
        Platform::open(czar, Default::default(), None, Some(auth), query_jobs).expect("a platform"),
    )
}
