//! Running async jobs: admission (the service's line and the caller's shares, checked and reserved under one lock,
//! so concurrent `PHASE=RUN`s cannot pass a share together), execution slots, the execution duration, ABORT, and
//! the audit line of each job that ends. What a job does is its [`JobKind`]: an index job is the platform's own
//! ([`crate::usertables::run_index`]); a query job is the TAP work of the front end ([`QueryJobs`]), handed to the
//! platform when it opens.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use czar::progress::Progress;
use tracing::Instrument;

use super::{Job, JobKind, Phase, ResultFile, now_ms};
use crate::Platform;
use crate::quota::{Busy, Client};

/// How a query job ended when it wrote a result: the result, and the failure that cut it short, if one did (a
/// VOTable then ends with `QUERY_STATUS` = `ERROR`).
#[derive(Debug)]
pub struct Finished {
    pub result: ResultFile,
    pub failure: Option<String>,
}

/// The work of a query job: read its parameters, plan and run it as its owner, write its result into the job's
/// directory. Err: the job failed before writing a result, with a message for the user.
pub trait QueryJobs: Send + Sync + 'static {
    fn run(
        &self,
        platform: Arc<Platform>,
        job: Job,
        progress: Arc<Progress>,
    ) -> Pin<Box<dyn Future<Output = Result<Finished, String>> + Send>>;
}

impl Platform {
    /// A new PENDING job of the caller's, with no parameters yet, the service's default execution duration and
    /// retention, and an id of 128 random bits (an anonymous job's URL is the only key to it, so it must not be
    /// guessable); its directory is made, it is not stored yet.
    pub fn new_job(
        &self,
        caller: &crate::identity::Caller,
        client: &Client,
    ) -> Result<Job, String> {
        let id = format!(
            "j{}",
            metastore::accounts::random_hex(16).map_err(|e| e.to_string())?
        );
        std::fs::create_dir_all(self.jobs.job_dir(&id)).map_err(|e| e.to_string())?;
        let now = now_ms();
        Ok(Job {
            id,
            work: JobKind::Query,
            run_id: None,
            phase: Phase::Pending,
            params: Vec::new(),
            parts: Vec::new(),
            creation: now,
            start: None,
            end: None,
            duration: self.limits.default_duration,
            destruction: now + self.limits.default_retention * 1000,
            error: None,
            result: None,
            owner: caller.user().map(str::to_string),
            client: Some(client.key.clone()),
            groups: client.groups.iter().map(|(k, _)| k.clone()).collect(),
            restarts: 0,
        })
    }

    /// A PENDING job of work other than a query (its parameters show `work` and cannot change it), owned by the
    /// caller and stored; its id.
    pub fn create_job(
        &self,
        caller: &crate::identity::Caller,
        client: &Client,
        work: JobKind,
    ) -> Result<String, String> {
        let mut job = self.new_job(caller, client)?;
        if let JobKind::Index {
            table,
            column,
            unique,
        } = &work
        {
            job.params = vec![
                ("table".to_string(), table.clone()),
                ("index".to_string(), column.clone()),
                ("unique".to_string(), unique.to_string()),
            ];
        }
        job.work = work;
        self.jobs.put(&job)?;
        Ok(job.id)
    }

    /// Queues a PENDING job and starts it when an execution slot is free; it counts against the shares of `client`,
    /// who runs it. [`Busy`] when the service's line or one of the caller's shares (kept results, jobs queued or
    /// executing) is full; the job then stays PENDING.
    pub fn run_job(self: &Arc<Self>, id: &str, client: &Client) -> Result<(), Busy> {
        let _admission = self
            .admission
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.jobs.active() >= self.limits.queued_jobs {
            return Err(Busy::service(
                "async jobs queued or executing",
                self.limits.queued_jobs as u64,
            ));
        }
        for (key, allowance) in client.shares() {
            let kept = self.jobs.result_bytes_of(key);
            if kept >= allowance.result_bytes {
                return Err(Busy {
                    what: "bytes of kept results (delete finished jobs to make room)",
                    limit: allowance.result_bytes,
                    mine: true,
                    used: kept,
                    whose: key.to_string(),
                });
            }
            let active = self.jobs.active_of(key);
            if active >= allowance.jobs {
                return Err(Busy {
                    what: "async jobs queued or executing",
                    limit: allowance.jobs as u64,
                    mine: true,
                    used: active as u64,
                    whose: key.to_string(),
                });
            }
        }
        let queued = self.jobs.update(id, |j| {
            if j.phase == Phase::Pending {
                j.phase = Phase::Queued;
                j.client = Some(client.key.clone());
                j.groups = client.groups.iter().map(|(k, _)| k.clone()).collect();
            }
        });
        if queued.is_some_and(|j| j.phase == Phase::Queued) {
            // Registered as running before the admission lock is let go: the next admission counts it.
            self.enqueue(id);
        }
        Ok(())
    }

    /// Queues again the jobs the last run of the service left queued or executing ([`super::Jobs::interrupted`]).
    pub fn requeue_interrupted(self: &Arc<Self>) {
        for id in self.jobs.interrupted() {
            self.enqueue(&id);
        }
    }

    /// Aborts a job: its task is dropped (its Flight streams end, and with them the work on the workers) and it
    /// ends ABORTED, unless it had already ended.
    pub fn abort_job(&self, id: &str) {
        let running = self.jobs.stop(id);
        self.jobs.update(id, |j| {
            if j.phase.active() || running {
                j.phase = Phase::Aborted;
                j.end = Some(now_ms());
            }
        });
    }

    /// Runs a queued job when a slot frees.
    fn enqueue(self: &Arc<Self>, id: &str) {
        let platform = self.clone();
        let owned = id.to_string();
        // The job's events (its query's planning and failovers among them) are logged in the span `job`.
        let span = tracing::info_span!("job", job = %id);
        let task = tokio::spawn(
            async move {
                let slots = platform.jobs.slots.clone();
                let Ok(_permit) = slots.acquire_owned().await else {
                    return;
                };
                platform.execute(&owned).await;
                platform
                    .jobs
                    .running
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&owned);
            }
            .instrument(span),
        );
        self.jobs
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.to_string(), task.abort_handle());
    }

    async fn execute(self: &Arc<Self>, id: &str) {
        let Some(job) = self.jobs.update(id, |j| {
            j.phase = Phase::Executing;
            j.start = Some(now_ms());
        }) else {
            return;
        };
        let deadline = Duration::from_secs(job.duration.max(1));
        let work: Pin<Box<dyn Future<Output = Result<Option<Finished>, String>> + Send>> =
            match job.work.clone() {
                JobKind::Index {
                    table,
                    column,
                    unique,
                } => {
                    let platform = self.clone();
                    let owner = job.owner.clone();
                    Box::pin(async move {
                        crate::usertables::run_index(
                            &platform,
                            owner.as_deref(),
                            &table,
                            &column,
                            unique,
                        )
                        .await
                        .map(|()| None)
                    })
                }
                JobKind::Query => {
                    let progress = self.jobs.watch(id);
                    let run = self.query_jobs.run(self.clone(), job.clone(), progress);
                    Box::pin(async move { run.await.map(Some) })
                }
            };
        let outcome = match tokio::time::timeout(deadline, work).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!(
                "the job ran longer than its execution duration of {} s and was stopped",
                job.duration
            )),
        };
        self.jobs.update(id, |j| {
            j.end = Some(now_ms());
            match outcome {
                Ok(None) => j.phase = Phase::Completed,
                Ok(Some(Finished { result, failure })) => {
                    j.result = Some(result);
                    match failure {
                        Some(m) => {
                            j.phase = Phase::Error;
                            j.error = Some(m);
                        }
                        None => j.phase = Phase::Completed,
                    }
                }
                Err(m) => {
                    j.phase = Phase::Error;
                    j.error = Some(m);
                }
            }
        });
        self.audit_end(id);
    }

    /// The audit line of a job that ended: whose, its query's fingerprint, phase, rows, bytes and run time.
    fn audit_end(&self, id: &str) {
        let Some(job) = self.jobs.get(id) else {
            return;
        };
        tracing::info!(
            event = "job",
            job = %job.id,
            phase = job.phase.name(),
            rows = job.result.as_ref().map_or(0, |r| r.rows),
            "an async job ended"
        );
        let Some(audit) = &self.audit else {
            return;
        };
        let query = job
            .params
            .iter()
            .find(|(k, _)| k == "query")
            .map(|(_, q)| crate::audit::fingerprint(q));
        let line = serde_json::json!({
            "time": super::iso(now_ms()),
            "who": job.client,
            "event": "job ended",
            "job": job.id,
            "phase": job.phase.name(),
            "query": query,
            "rows": job.result.as_ref().map_or(0, |r| r.rows),
            "bytes": job.result.as_ref().map_or(0, |r| r.bytes),
            "ms": job.end.zip(job.start).map_or(0, |(e, s)| e.saturating_sub(s)),
        });
        audit.write(&line);
    }
}
