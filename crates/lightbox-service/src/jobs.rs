//! Background work on the catalog's job queue: workers claim jobs with leases, renew them while
//! working (heartbeats), and record the outcome. A job whose worker dies is taken over by any
//! node once its lease expires. The data store lifecycle, DICOM imports (`import.rs`), image set
//! changes (`changes.rs`) and the recovery of interrupted STOW-RS requests (`stow.rs`) run here.

use std::sync::Arc;
use std::time::Duration;

use lightbox_domain::{DatastoreId, DatastoreStatus, Millis};
use lightbox_storage::{Job, JobOutcome, Lease, NewJob};
use serde_json::json;
use tokio::sync::{Semaphore, watch};

use crate::{Service, ServiceError};

/// Completes CREATING -> ACTIVE once the data store's creation delay has passed.
pub(crate) const DATASTORE_ACTIVATE: &str = "datastore.activate";
/// Removes a DELETING data store's blobs, then marks it DELETED.
pub(crate) const DATASTORE_DELETE: &str = "datastore.delete";

const KINDS: &[&str] = &[
    DATASTORE_ACTIVATE,
    DATASTORE_DELETE,
    crate::import_jobs::DICOM_IMPORT,
    crate::changes::IMAGE_SET_CHANGE,
    crate::stow::STOW_RECOVER,
];

/// How often each node sweeps finished jobs past their retention.
const PURGE_EVERY: Duration = Duration::from_secs(3600);
/// Jobs deleted per statement by the sweep.
const PURGE_BATCH: u32 = 1000;

/// Blob keys of a data store all start with this prefix.
pub(crate) fn datastore_blob_prefix(id: &DatastoreId) -> String {
    format!("datastores/{id}")
}

pub(crate) fn datastore_job(kind: &str, id: &DatastoreId, not_before: Millis) -> NewJob {
    NewJob {
        id: format!("{kind}/{id}"),
        kind: kind.to_owned(),
        payload: json!({ "datastoreId": id.as_str() }).to_string(),
        not_before,
    }
}

fn payload_datastore(job: &Job) -> Result<DatastoreId, String> {
    let v: serde_json::Value =
        serde_json::from_str(&job.payload).map_err(|e| format!("bad payload: {e}"))?;
    v.get("datastoreId")
        .and_then(|d| d.as_str())
        .and_then(|d| DatastoreId::parse(d).ok())
        .ok_or_else(|| "payload lacks a valid datastoreId".to_owned())
}

impl Service {
    pub(crate) fn lease(&self) -> Lease<'_> {
        Lease {
            owner: &self.config.node_id,
            now: self.clock.now(),
            duration: self.config.job_lease,
            max_attempts: self.config.job_max_attempts,
        }
    }

    /// Claims and runs jobs until `shutdown` turns true. At most `worker_concurrency` jobs run
    /// at once on this node.
    pub async fn run_background(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let slots = Arc::new(Semaphore::new(self.config.worker_concurrency.max(1)));
        tokio::spawn(self.clone().backfill_qido_index());
        let mut next_purge = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(self.config.job_poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.wake.notified() => {}
                _ = shutdown.changed() => break,
            }
            if tokio::time::Instant::now() >= next_purge {
                next_purge += PURGE_EVERY;
                tokio::spawn(self.clone().purge_finished_jobs());
            }
            loop {
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    break;
                };
                match self.catalog.claim_job(KINDS, &self.lease()).await {
                    Ok(Some(job)) => {
                        let svc = self.clone();
                        tokio::spawn(async move {
                            svc.run_job(job).await;
                            drop(permit);
                        });
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "claiming jobs failed; will retry");
                        break;
                    }
                }
            }
        }
    }

    /// Deletes finished jobs older than the retention, a batch at a time (every node sweeps;
    /// the deletes do not conflict).
    async fn purge_finished_jobs(self: Arc<Self>) {
        let retention = i64::try_from(self.config.job_retention.as_millis()).unwrap_or(i64::MAX);
        let before = Millis(self.clock.now().0.saturating_sub(retention));
        let mut purged = 0;
        loop {
            match self.catalog.purge_finished_jobs(before, PURGE_BATCH).await {
                Ok(n) => {
                    purged += n;
                    if n < u64::from(PURGE_BATCH) {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "purging finished jobs failed; will retry");
                    break;
                }
            }
        }
        if purged > 0 {
            tracing::info!(purged, "finished jobs purged");
        }
    }

    /// Runs one claimed job, renewing its lease; abandons the work if the lease is lost.
    async fn run_job(self: Arc<Self>, job: Job) {
        tracing::info!(job_id = %job.id, kind = %job.kind, attempt = job.attempts, "job started");
        let heartbeat = self.config.job_lease / 3;
        let work = self.execute(&job);
        tokio::pin!(work);
        let outcome = loop {
            tokio::select! {
                r = &mut work => break r,
                _ = tokio::time::sleep(heartbeat) => {
                    match self.catalog.renew_job_lease(&job.id, &self.lease()).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(job_id = %job.id, "job lease lost; abandoning the work");
                            return;
                        }
                        Err(e) => tracing::warn!(job_id = %job.id, error = %e, "lease renewal failed"),
                    }
                }
            }
        };
        let outcome = match outcome {
            Ok(r) => JobOutcome::Succeeded(r),
            Err(r) => JobOutcome::Failed(r),
        };
        match self
            .catalog
            .finish_job(&job.id, &self.config.node_id, &outcome, self.clock.now())
            .await
        {
            Ok(true) => tracing::info!(job_id = %job.id, ?outcome, "job finished"),
            Ok(false) => tracing::warn!(job_id = %job.id, "job finished after its lease was lost"),
            Err(e) => {
                tracing::warn!(job_id = %job.id, error = %e, "recording the job outcome failed")
            }
        }
    }

    async fn execute(&self, job: &Job) -> Result<String, String> {
        if job.kind == crate::import_jobs::DICOM_IMPORT {
            return self.run_import_job(job).await;
        }
        if job.kind == crate::changes::IMAGE_SET_CHANGE {
            return self.run_image_set_change(job).await;
        }
        if job.kind == crate::stow::STOW_RECOVER {
            return self.run_stow_recovery(job).await;
        }
        let id = payload_datastore(job)?;
        let result = match job.kind.as_str() {
            DATASTORE_ACTIVATE => self.activate_datastore(&id).await,
            DATASTORE_DELETE => self.finish_datastore_deletion(&id).await,
            other => return Err(format!("unknown job kind {other}")),
        };
        result.map_err(|e| e.to_string())
    }

    async fn activate_datastore(&self, id: &DatastoreId) -> Result<String, ServiceError> {
        let moved = self
            .catalog
            .transition_datastore(
                id,
                &[DatastoreStatus::Creating],
                DatastoreStatus::Active,
                self.clock.now(),
            )
            .await?;
        Ok(if moved.is_some() {
            tracing::info!(datastore_id = %id, "data store ACTIVE");
            "ACTIVE".into()
        } else {
            "already past CREATING".into()
        })
    }

    async fn finish_datastore_deletion(&self, id: &DatastoreId) -> Result<String, ServiceError> {
        // Blobs first, status last: a crash in between leaves a DELETING data store whose job
        // is retried, never a DELETED one with data left behind.
        let keys = self.blobs.list(&datastore_blob_prefix(id)).await?;
        for key in &keys {
            self.blobs.delete(key).await?;
        }
        let moved = self
            .catalog
            .transition_datastore(
                id,
                &[DatastoreStatus::Deleting],
                DatastoreStatus::Deleted,
                self.clock.now(),
            )
            .await?;
        if moved.is_some() {
            tracing::info!(datastore_id = %id, blobs = keys.len(), "data store DELETED");
        }
        Ok(format!("removed {} blobs", keys.len()))
    }
}

/// The job poll interval to use for a given transition delay: short delays poll faster.
pub fn default_poll_interval(delay: Duration) -> Duration {
    (delay / 4).clamp(Duration::from_millis(25), Duration::from_millis(250))
}
