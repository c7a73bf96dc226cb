//! STOW-RS (StoreDICOM, StoreDICOMStudy): instances received in one request are parsed,
//! transcoded, grouped and committed with the import job's own functions
//! (`Service::process_instance`, `Service::commit_instances`), synchronously, under an owner id
//! of the request's own. Frames are pending blobs of that owner until a commit takes them over;
//! whatever no committed record owns (failed instances, an aborted request) is deleted.
//!
//! Usage: `begin_stow`, then `stow_part` / `stow_reject_part` once per part in request order,
//! then `finish_stow` (commit, one result per part) or `abort_stow` (store nothing).
//!
//! Every request is a job of the queue (`stow/<uuid>`, kind `stow.recover`), started already
//! leased to this node (`Catalog::start_leased_job`); its id is the owner id. A heartbeat task
//! renews the lease while the request runs and stops when the request ends or is dropped;
//! `finish_stow` / `abort_stow` finish the job. If the node dies (or the request is dropped)
//! the lease expires and any node claims the job: `run_stow_recovery` ends the versions the
//! request left LOCKED IMPORT_FAILED and deletes its pending blobs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use lightbox_domain::{DatastoreId, DatastoreStatus, LosslessStorageFormat};
use lightbox_storage::{Job, JobOutcome, Lease, NewJob};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::import::{FileOutcome, ImportedInstance, ProcessOptions, Writer};
use crate::{Service, ServiceError};

/// Recovers a STOW-RS request whose node died: claimed only once its lease expired.
pub(crate) const STOW_RECOVER: &str = "stow.recover";

/// The message of versions an interrupted STOW-RS request left LOCKED.
const INTERRUPTED: &str = "The STOW-RS request writing this version was interrupted";

/// PS3.18 / PS3.4 failure reasons of a STOW-RS FailedSOPSequence item.
pub mod failure_reason {
    /// Processing failure (a server-side error).
    pub const PROCESSING_FAILURE: u16 = 0x0110;
    /// Refused: out of resources (the instance is larger than this server accepts).
    pub const OUT_OF_RESOURCES: u16 = 0xA700;
    /// Error: data set does not match SOP class (incl. an instance of another study than the
    /// StoreDICOMStudy path names).
    pub const DATA_SET_MISMATCH: u16 = 0xA900;
    /// Error: cannot understand (not a readable DICOM P10 instance).
    pub const CANNOT_UNDERSTAND: u16 = 0xC000;
    /// Referenced transfer syntax not supported.
    pub const TRANSFER_SYNTAX_NOT_SUPPORTED: u16 = 0xC122;
}

/// One STOW-RS request in progress.
pub struct StowRequest {
    datastore_id: DatastoreId,
    /// The request's job id, owner of its pending blobs and versions.
    owner: String,
    study: Option<String>,
    format: lightbox_frames::StorageFormat,
    parts: Vec<Part>,
    heartbeat: Heartbeat,
}

/// Renews a request's job lease while it lives; stops when dropped.
struct Heartbeat {
    task: tokio::task::JoinHandle<()>,
    /// Set once a renewal found the lease lost (another node may be recovering the request).
    lost: Arc<AtomicBool>,
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}

enum Part {
    Processed(Box<ImportedInstance>),
    Failed(StowFailure),
}

/// Why one part was not stored.
#[derive(Debug, Clone)]
pub struct StowFailure {
    /// A [`failure_reason`] code.
    pub reason: u16,
    pub sop_class_uid: Option<String>,
    pub sop_instance_uid: Option<String>,
    /// For logs and tests; never carries UIDs or values.
    pub message: String,
}

/// A stored instance.
#[derive(Debug, Clone)]
pub struct StowStored {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub image_set_id: String,
    /// Whether the image set is its series' primary one (else retrieve with `?imageSetId=`).
    pub is_primary: bool,
    /// The PS3.18 / PS3.4 warning code of the instance's first warning (e.g. 0xB000 coercion
    /// of data elements), when it was stored with warnings.
    pub warning_reason: Option<u16>,
}

/// One part's outcome, in request order.
#[derive(Debug, Clone)]
pub enum StowResult {
    Stored(StowStored),
    Failed(StowFailure),
}

/// Request limits: the largest part (the per-file quota of import jobs) and request body.
#[derive(Debug, Clone, Copy)]
pub struct StowLimits {
    pub max_part_bytes: u64,
    pub max_body_bytes: u64,
}

impl StowFailure {
    pub fn new(reason: u16, message: impl Into<String>) -> Self {
        Self {
            reason,
            sop_class_uid: None,
            sop_instance_uid: None,
            message: message.into(),
        }
    }
}

/// The memory STOW-RS instances being processed at once may take on this node (MiB permits).
pub(crate) fn stow_memory(budget: u64) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(((budget >> 20).max(1)) as usize))
}

fn sop_class(inst: &ImportedInstance) -> String {
    inst.metadata
        .instance
        .get("SOPClassUID")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// The failure reason for a file the import pipeline refused.
fn reason_for(exception_type: &str, message: &str) -> u16 {
    if exception_type == "InternalServerException" {
        failure_reason::PROCESSING_FAILURE
    } else if message.to_ascii_lowercase().contains("transfer syntax")
        && message.contains("not supported")
    {
        failure_reason::TRANSFER_SYNTAX_NOT_SUPPORTED
    } else if message.contains("larger than") {
        failure_reason::OUT_OF_RESOURCES
    } else {
        failure_reason::CANNOT_UNDERSTAND
    }
}

impl Service {
    /// STOW-RS limits.
    pub fn stow_limits(&self) -> StowLimits {
        StowLimits {
            max_part_bytes: self.config.import.max_file_bytes,
            max_body_bytes: self.config.import.stow_max_body_bytes,
        }
    }

    /// Starts a STOW-RS request on an ACTIVE data store; `study` for StoreDICOMStudy.
    pub async fn begin_stow(
        &self,
        datastore_id: &DatastoreId,
        study: Option<&str>,
    ) -> Result<StowRequest, ServiceError> {
        let Some(ds) = self.catalog.get_datastore(datastore_id).await? else {
            return Err(crate::datastores::not_found(datastore_id));
        };
        if ds.status != DatastoreStatus::Active {
            return Err(ServiceError::Conflict(
                "The data store is not ACTIVE".to_owned(),
            ));
        }
        let format = match ds.lossless_storage_format {
            LosslessStorageFormat::Htj2k => lightbox_frames::StorageFormat::Htj2k,
            LosslessStorageFormat::Jpeg2000Lossless => {
                lightbox_frames::StorageFormat::Jpeg2000Lossless
            }
        };
        let owner = format!("stow/{}", uuid::Uuid::new_v4().simple());
        let job = NewJob {
            id: owner.clone(),
            kind: STOW_RECOVER.to_owned(),
            payload: json!({ "datastoreId": datastore_id.as_str(), "owner": owner }).to_string(),
            not_before: self.clock.now(),
        };
        self.catalog.start_leased_job(&job, &self.lease()).await?;
        let heartbeat = self.stow_heartbeat(&owner);
        Ok(StowRequest {
            datastore_id: datastore_id.clone(),
            owner,
            study: study.map(str::to_owned),
            format,
            parts: Vec::new(),
            heartbeat,
        })
    }

    /// Renews the lease of job `id` every third of `job_lease` until dropped.
    fn stow_heartbeat(&self, id: &str) -> Heartbeat {
        let catalog = self.catalog.clone();
        let clock = self.clock.clone();
        let node = self.config.node_id.clone();
        let duration = self.config.job_lease;
        let max_attempts = self.config.job_max_attempts;
        let id = id.to_owned();
        let lost = Arc::new(AtomicBool::new(false));
        let flag = lost.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(duration / 3).await;
                let lease = Lease {
                    owner: &node,
                    now: clock.now(),
                    duration,
                    max_attempts,
                };
                match catalog.renew_job_lease(&id, &lease).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(job_id = %id, "STOW-RS request lease lost");
                        flag.store(true, Ordering::SeqCst);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(job_id = %id, error = %e, "STOW-RS lease renewal failed")
                    }
                }
            }
        });
        Heartbeat { task, lost }
    }

    /// Whether the request still holds its job lease (renewing it now).
    async fn stow_lease_held(&self, req: &StowRequest) -> bool {
        if req.heartbeat.lost.load(Ordering::SeqCst) {
            return false;
        }
        // An unreachable catalog counts as held: the commit then fails on its own.
        self.catalog
            .renew_job_lease(&req.owner, &self.lease())
            .await
            .unwrap_or(true)
    }

    /// Stops the request's heartbeat and records how its job ended.
    async fn finish_stow_job(&self, req: &StowRequest, outcome: JobOutcome) {
        req.heartbeat.task.abort();
        match self
            .catalog
            .finish_job(&req.owner, &self.config.node_id, &outcome, self.clock.now())
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(job_id = %req.owner, "STOW-RS request finished after its lease was lost")
            }
            Err(e) => {
                tracing::warn!(job_id = %req.owner, error = %e, "recording a STOW-RS request's end failed")
            }
        }
    }

    /// Runs a `stow.recover` job, claimed only once the lease of the request's node expired:
    /// versions the request left LOCKED end IMPORT_FAILED and its pending blobs are deleted.
    pub(crate) async fn run_stow_recovery(&self, job: &Job) -> Result<String, String> {
        let v: Value =
            serde_json::from_str(&job.payload).map_err(|e| format!("bad payload: {e}"))?;
        let owner = v
            .get("owner")
            .and_then(Value::as_str)
            .ok_or("payload lacks an owner")?;
        let committed = self.recover_versions(owner, INTERRUPTED).await;
        self.collect_pending_blobs(owner).await;
        tracing::info!(job_id = %job.id, committed = committed.len(), "interrupted STOW-RS request recovered");
        Ok(format!(
            "recovered an interrupted request ({} image sets committed)",
            committed.len()
        ))
    }

    /// Parses and transcodes one part's P10 bytes (at most the per-file quota), storing its
    /// frames as pending blobs of the request; a failure is recorded for the response.
    pub async fn stow_part(&self, req: &mut StowRequest, bytes: Bytes) {
        let part = self.process_part(req, bytes).await;
        req.parts.push(part);
    }

    /// Records a part that is not stored (not `application/dicom`, too large, …).
    pub fn stow_reject_part(&self, req: &mut StowRequest, failure: StowFailure) {
        req.parts.push(Part::Failed(failure));
    }

    async fn process_part(&self, req: &StowRequest, bytes: Bytes) -> Part {
        let limits = &self.config.import;
        if bytes.is_empty() {
            return Part::Failed(StowFailure::new(
                failure_reason::CANNOT_UNDERSTAND,
                "The part is empty",
            ));
        }
        if bytes.len() as u64 > limits.max_file_bytes {
            return Part::Failed(StowFailure::new(
                failure_reason::OUT_OF_RESOURCES,
                "The instance is larger than the limit per DICOM P10 file",
            ));
        }
        const MIB: u64 = 1 << 20;
        let need = (bytes.len() as u64).saturating_mul(3) / MIB + 1;
        if need > (limits.memory_budget / MIB).max(1) {
            return Part::Failed(StowFailure::new(
                failure_reason::OUT_OF_RESOURCES,
                "The instance is larger than this server's memory budget allows",
            ));
        }
        let Ok(_permit) = self.stow_memory.acquire_many(need as u32).await else {
            return Part::Failed(StowFailure::new(
                failure_reason::PROCESSING_FAILURE,
                "The server is shutting down",
            ));
        };
        let options = ProcessOptions {
            max_file_bytes: limits.max_file_bytes,
            format: req.format,
            codec_threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
        };
        let writer = Writer {
            ds: &req.datastore_id,
            owner: &req.owner,
        };
        match self.process_instance(writer, bytes, &options).await {
            FileOutcome::Imported(inst) => {
                if let Some(study) = &req.study
                    && inst.study_instance_uid != *study
                {
                    // Its frames stay pending and are deleted when the request ends.
                    return Part::Failed(StowFailure {
                        reason: failure_reason::DATA_SET_MISMATCH,
                        sop_class_uid: Some(sop_class(&inst)),
                        sop_instance_uid: Some(inst.sop_instance_uid.clone()),
                        message:
                            "The instance belongs to another study than the request path names"
                                .into(),
                    });
                }
                Part::Processed(inst)
            }
            FileOutcome::Failed {
                exception_type,
                message,
            } => Part::Failed(StowFailure::new(
                reason_for(exception_type, &message),
                message,
            )),
        }
    }

    /// Commits every processed part (grouping and primary / non-primary image sets exactly as
    /// import jobs do), deletes what no record took over, and returns one result per part.
    pub async fn finish_stow(&self, req: StowRequest) -> Vec<StowResult> {
        if !self.stow_lease_held(&req).await {
            // Another node may be recovering the request: commit nothing.
            self.collect_pending_blobs(&req.owner).await;
            self.finish_stow_job(&req, JobOutcome::Failed("lease lost".into()))
                .await;
            return req
                .parts
                .iter()
                .map(|p| match p {
                    Part::Failed(f) => StowResult::Failed(f.clone()),
                    Part::Processed(inst) => StowResult::Failed(StowFailure {
                        reason: failure_reason::PROCESSING_FAILURE,
                        sop_class_uid: Some(sop_class(inst)),
                        sop_instance_uid: Some(inst.sop_instance_uid.clone()),
                        message: "The request took too long to be committed".into(),
                    }),
                })
                .collect();
        }
        let instances: Vec<Option<&ImportedInstance>> = req
            .parts
            .iter()
            .map(|p| match p {
                Part::Processed(inst) => Some(&**inst),
                Part::Failed(_) => None,
            })
            .collect();
        let writer = Writer {
            ds: &req.datastore_id,
            owner: &req.owner,
        };
        let placements = self.commit_instances(writer, &instances).await;
        self.collect_pending_blobs(&req.owner).await;
        let stored = placements.values().filter(|p| p.is_ok()).count();
        self.finish_stow_job(
            &req,
            JobOutcome::Succeeded(format!("{stored} of {} parts stored", req.parts.len())),
        )
        .await;
        req.parts
            .iter()
            .enumerate()
            .map(|(i, p)| match p {
                Part::Failed(f) => StowResult::Failed(f.clone()),
                Part::Processed(inst) => match placements.get(&i) {
                    Some(Ok(placement)) => StowResult::Stored(StowStored {
                        sop_class_uid: sop_class(inst),
                        sop_instance_uid: inst.sop_instance_uid.clone(),
                        study_instance_uid: inst.study_instance_uid.clone(),
                        series_instance_uid: inst.series_instance_uid.clone(),
                        image_set_id: placement.image_set_id.to_string(),
                        is_primary: placement.is_primary,
                        warning_reason: inst
                            .warnings
                            .first()
                            .map(|w| u16::try_from(w.0).unwrap_or(0xB000)),
                    }),
                    Some(Err(message)) => StowResult::Failed(StowFailure {
                        reason: failure_reason::PROCESSING_FAILURE,
                        sop_class_uid: Some(sop_class(inst)),
                        sop_instance_uid: Some(inst.sop_instance_uid.clone()),
                        message: message.clone(),
                    }),
                    None => StowResult::Failed(StowFailure {
                        reason: failure_reason::PROCESSING_FAILURE,
                        sop_class_uid: Some(sop_class(inst)),
                        sop_instance_uid: Some(inst.sop_instance_uid.clone()),
                        message: "The instance was not committed".into(),
                    }),
                },
            })
            .collect()
    }

    /// Ends a request that cannot complete (malformed body, body too large, hash mismatch):
    /// nothing is committed and every blob it wrote is deleted.
    pub async fn abort_stow(&self, req: StowRequest) {
        self.collect_pending_blobs(&req.owner).await;
        self.finish_stow_job(&req, JobOutcome::Failed("aborted".into()))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_reasons() {
        assert_eq!(
            reason_for("InternalServerException", "x"),
            failure_reason::PROCESSING_FAILURE
        );
        assert_eq!(
            reason_for(
                "ValidationException",
                "transfer syntax 1.2.3 is not supported for pixel data"
            ),
            failure_reason::TRANSFER_SYNTAX_NOT_SUPPORTED
        );
        assert_eq!(
            reason_for("ValidationException", "The file is larger than 10 bytes"),
            failure_reason::OUT_OF_RESOURCES
        );
        assert_eq!(
            reason_for("ValidationException", "DICOM attribute X is missing"),
            failure_reason::CANNOT_UNDERSTAND
        );
    }
}
