//! The DICOM import worker: lists the input prefix, parses and transcodes every object in
//! parallel (bounded by a memory budget), groups instances into image sets (one primary image set
//! per series; conflicting data goes to non-primary ones), commits each image set atomically,
//! and writes the job's output files (manifest, success / failure / warning ndjson).
//! Per-file processing (`process_instance`) and grouping + commit (`commit_instances`) take a
//! `Writer` (data store + owner id) and are shared with STOW-RS (`stow.rs`).
//!
//! Crash safety: every blob is registered as pending (owned by the job) before it is written and
//! becomes owned by a catalog record in the transaction that commits it; an image set version
//! being written is LOCKED/IMPORTING and is ended IMPORT_FAILED if the job is interrupted. A job
//! claimed again after its worker died ends FAILED with a truthful manifest, and its pending
//! blobs are deleted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use lightbox_dicom::{GroupingKey, InstanceMetadata, MetadataDocument, StoredInstance};
use lightbox_domain::{
    DatastoreId, ImageSet, ImageSetId, ImageSetState, ImageSetWorkflowStatus, ImportJob,
    ImportJobStatus, LosslessStorageFormat,
};
use lightbox_s3::{S3Access, S3AccessError};
use lightbox_storage::{
    BeginVersionOutcome, CreateImageSetOutcome, FrameRecord, ImageSetContent, Job, NewImageSet,
    VersionCompletion,
};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::Service;
use crate::import_jobs::split_s3_uri;

/// Why a whole job failed (goes to the job's `message`).
type JobFailure = String;

/// One input file's outcome.
pub(crate) enum FileOutcome {
    Imported(Box<ImportedInstance>),
    Failed {
        exception_type: &'static str,
        message: String,
    },
}

/// A parsed, transcoded instance whose frames are already in the blob store (pending).
pub(crate) struct ImportedInstance {
    pub(crate) metadata: InstanceMetadata,
    pub(crate) sop_instance_uid: String,
    pub(crate) study_instance_uid: String,
    pub(crate) series_instance_uid: String,
    pub(crate) grouping: GroupingKey,
    pub(crate) stored: StoredInstance,
    pub(crate) frames: Vec<FrameRecord>,
    pub(crate) warnings: Vec<(u32, &'static str, String)>,
}

/// Where a file's instance ended up.
#[derive(Clone)]
pub(crate) struct Placement {
    pub(crate) image_set_id: ImageSetId,
    pub(crate) version: i64,
    pub(crate) is_primary: bool,
}

/// Who writes: the data store, and the owner id of the pending blobs and versions written (an
/// import job's id, or a STOW-RS request's).
#[derive(Clone, Copy)]
pub(crate) struct Writer<'a> {
    pub(crate) ds: &'a DatastoreId,
    pub(crate) owner: &'a str,
}

/// How one P10 file is parsed and its frames stored.
#[derive(Clone, Copy)]
pub(crate) struct ProcessOptions {
    pub(crate) max_file_bytes: u64,
    pub(crate) format: lightbox_frames::StorageFormat,
    pub(crate) codec_threads: usize,
}

/// A group of instances bound for one image set.
struct Group {
    grouping: String,
    members: Vec<usize>,
}

const IMPORT_RETRY_LOCKED: Duration = Duration::from_millis(200);
const IMPORT_MAX_LOCK_WAIT: Duration = Duration::from_secs(600);

pub(crate) fn grouping_json(g: &GroupingKey) -> String {
    json!([
        g.study_date,
        g.accession_number,
        g.patient_id,
        g.study_instance_uid,
        g.study_id,
        g.series_instance_uid,
        g.series_number
    ])
    .to_string()
}

fn s3_failure(what: &str, e: &S3AccessError) -> JobFailure {
    match e {
        S3AccessError::NoSuchBucket => format!("The {what} S3 bucket does not exist"),
        S3AccessError::AccessDenied(_) => format!("Access to the {what} S3 location was denied"),
        other => format!("Cannot access the {what} S3 location: {other}"),
    }
}

fn frame_blob_key(ds: &DatastoreId, frame_id: &str) -> String {
    format!(
        "{}/frames/{frame_id}",
        crate::jobs::datastore_blob_prefix(ds)
    )
}

/// Documents are immutable, one per version, named at random (the catalog maps versions to
/// them). Keys stay short: some S3-compatible stores limit key lengths well below S3's 1024.
fn metadata_blob_key(ds: &DatastoreId) -> String {
    format!(
        "{}/metadata/{}.json.gz",
        crate::jobs::datastore_blob_prefix(ds),
        uuid::Uuid::new_v4().simple()
    )
}

impl Service {
    /// Runs (or, after an interruption, ends) the import job named by a queue job's payload.
    pub(crate) async fn run_import_job(&self, queued: &Job) -> Result<String, String> {
        let v: Value = serde_json::from_str(&queued.payload).map_err(|e| e.to_string())?;
        let ds = v
            .get("datastoreId")
            .and_then(Value::as_str)
            .and_then(|d| DatastoreId::parse(d).ok())
            .ok_or("payload lacks a valid datastoreId")?;
        let job_id = v
            .get("jobId")
            .and_then(Value::as_str)
            .ok_or("payload lacks a jobId")?;
        let Some(job) = self
            .catalog
            .get_import_job(&ds, job_id)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Err("the import job does not exist".into());
        };
        if job.status.is_final() {
            return Ok(format!("already {}", job.status.as_str()));
        }
        if queued.attempts > 1 {
            let message = "The import job was interrupted (the server processing it stopped) \
                           before it completed. The image sets in the job output manifest were \
                           imported, other files were not";
            self.fail_import(&job, message).await;
            return Ok("ended FAILED after an interruption".into());
        }
        match self.import(&job).await {
            Ok(summary) => Ok(summary),
            Err(message) => {
                self.fail_import(&job, &message).await;
                Ok(format!("import job FAILED: {message}"))
            }
        }
    }

    fn s3(&self) -> Result<&Arc<dyn S3Access>, JobFailure> {
        self.s3
            .as_ref()
            .ok_or_else(|| "This server has no S3 access configured for import jobs".to_owned())
    }

    /// Ends a job FAILED: finishes versions it left LOCKED, deletes its pending blobs, writes
    /// the outputs it can, and records `message`.
    async fn fail_import(&self, job: &ImportJob, message: &str) {
        let committed = self
            .recover_versions(
                &job.id,
                "The import job writing this version was interrupted",
            )
            .await;
        self.collect_pending_blobs(&job.id).await;
        let failure = vec![json!({
            "inputFile": split_s3_uri(&job.input_s3_uri).map(|(_, prefix)| prefix).unwrap_or(""),
            "exception": {"exceptionType": "ValidationException", "message": message},
        })];
        // What was scanned before the failure is not known here: the manifest counts the image
        // sets committed and the one failure line.
        let summary = ImportSummary {
            image_sets: committed,
            failure,
            ..ImportSummary::default()
        };
        if let Err(e) = self.write_outputs(job, &summary).await {
            tracing::warn!(job_id = %job.id, error = %e, "writing the outputs of a failed import job failed");
        }
        let _ = self
            .catalog
            .transition_import_job(
                &job.datastore_id,
                &job.id,
                &[ImportJobStatus::Submitted, ImportJobStatus::InProgress],
                ImportJobStatus::Failed,
                Some(&truncate_message(message)),
                self.clock.now(),
            )
            .await
            .inspect_err(|e| tracing::warn!(job_id = %job.id, error = %e, "marking an import job FAILED failed"));
        tracing::info!(job_id = %job.id, "import job FAILED");
    }

    /// Versions the writer `job_id` (an import job, a STOW-RS request) left LOCKED end
    /// IMPORT_FAILED with `message`; returns the image sets it committed.
    pub(crate) async fn recover_versions(
        &self,
        job_id: &str,
        message: &str,
    ) -> BTreeMap<String, (i64, bool, u64)> {
        let mut committed = BTreeMap::new();
        let versions = match self.catalog.image_set_versions_by_job(job_id).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(job_id = %job_id, error = %e, "listing a writer's versions failed");
                return committed;
            }
        };
        for (ds, v) in versions {
            if v.state == ImageSetState::Locked {
                let _ = self
                    .catalog
                    .complete_image_set_version(
                        &ds,
                        &v.image_set_id,
                        v.version,
                        &VersionCompletion::Failed {
                            status: ImageSetWorkflowStatus::ImportFailed,
                            message: message.into(),
                        },
                        self.clock.now(),
                    )
                    .await;
            } else if matches!(
                v.workflow_status,
                ImageSetWorkflowStatus::Created | ImageSetWorkflowStatus::Imported
            ) {
                committed.insert(v.image_set_id.to_string(), (v.version, v.is_primary, 0));
            }
        }
        committed
    }

    /// Deletes blobs `owner` registered that no committed record owns.
    pub(crate) async fn collect_pending_blobs(&self, owner: &str) {
        let Ok(keys) = self.catalog.pending_blobs(owner).await else {
            return;
        };
        let mut gone = Vec::with_capacity(keys.len());
        for k in keys {
            match self.blobs.delete(&k).await {
                Ok(()) => gone.push(k),
                Err(e) => tracing::warn!(error = %e, "deleting an abandoned blob failed"),
            }
        }
        let _ = self.catalog.forget_pending_blobs(&gone).await;
    }

    async fn import(&self, job: &ImportJob) -> Result<String, JobFailure> {
        let s3 = self.s3()?.clone();
        let limits = self.config.import.clone();
        if let Some(owner) = &job.input_owner_account_id
            && owner != &self.config.account_id
        {
            return Err(
                "The input S3 bucket does not belong to the account named by inputOwnerAccountId"
                    .into(),
            );
        }
        let datastore = self
            .catalog
            .get_datastore(&job.datastore_id)
            .await
            .map_err(internal)?
            .ok_or("The data store no longer exists")?;
        let format = match datastore.lossless_storage_format {
            LosslessStorageFormat::Htj2k => lightbox_frames::StorageFormat::Htj2k,
            LosslessStorageFormat::Jpeg2000Lossless => {
                lightbox_frames::StorageFormat::Jpeg2000Lossless
            }
        };
        self.catalog
            .transition_import_job(
                &job.datastore_id,
                &job.id,
                &[ImportJobStatus::Submitted],
                ImportJobStatus::InProgress,
                None,
                self.clock.now(),
            )
            .await
            .map_err(internal)?;
        tracing::info!(job_id = %job.id, "import job IN_PROGRESS");

        // The output location must be writable before any work is done.
        let (out_bucket, _) = split_s3_uri(&job.output_s3_uri).ok_or("invalid outputS3Uri")?;
        s3.list(out_bucket, "", None)
            .await
            .map_err(|e| s3_failure("output", &e))?;

        // 1. List the input prefix (recursive), enforcing the job limits.
        let (in_bucket, in_prefix) = split_s3_uri(&job.input_s3_uri).ok_or("invalid inputS3Uri")?;
        let mut objects = Vec::new();
        let mut folders = HashSet::new();
        let mut total = 0u64;
        let mut next = None;
        loop {
            let page = s3
                .list(in_bucket, in_prefix, next.take())
                .await
                .map_err(|e| s3_failure("input", &e))?;
            for o in page.objects {
                if o.key.ends_with('/') && o.size == 0 {
                    continue; // a folder marker, not a file
                }
                if let Some((dir, _)) = o.key.rsplit_once('/') {
                    folders.insert(dir.to_owned());
                }
                total += o.size;
                objects.push(o);
                if objects.len() as u64 > limits.max_files {
                    return Err(format!(
                        "The input S3 prefix holds more than {} files, the limit per import job",
                        limits.max_files
                    ));
                }
            }
            if folders.len() as u64 > limits.max_nested_folders {
                return Err(format!(
                    "The input S3 prefix holds more than {} nested folders, the limit per import job",
                    limits.max_nested_folders
                ));
            }
            if total > limits.max_total_bytes {
                return Err(format!(
                    "The input S3 prefix holds more than {} bytes, the limit per import job",
                    limits.max_total_bytes
                ));
            }
            match page.next {
                Some(n) => next = Some(n),
                None => break,
            }
        }
        if objects.is_empty() {
            return Err("The input S3 prefix contains no objects".into());
        }
        let scanned = objects.len() as u64;
        // Cores are shared between the files in flight; a lone large file gets them all.
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let in_flight = limits.file_concurrency.max(1).min(objects.len());
        let codec_threads = (cores / in_flight).max(1);

        // 2. Parse and transcode every file in parallel, bounded by the memory budget.
        const MIB: u64 = 1 << 20;
        let budget_mib = (limits.memory_budget / MIB).max(1);
        let memory = Arc::new(Semaphore::new(budget_mib as usize));
        let outcomes: Vec<(usize, String, FileOutcome)> = futures::stream::iter(
            objects.into_iter().enumerate(),
        )
        .map(|(i, o)| {
            let s3 = s3.clone();
            let memory = memory.clone();
            let limits = limits.clone();
            let bucket = in_bucket.to_owned();
            async move {
                let need = (o.size.saturating_mul(3) / MIB + 1).min(u32::MAX as u64);
                let outcome = if o.size > limits.max_file_bytes {
                    FileOutcome::Failed {
                        exception_type: "ValidationException",
                        message: format!(
                            "The file is larger than {} bytes, the limit per DICOM P10 file",
                            limits.max_file_bytes
                        ),
                    }
                } else if need > budget_mib {
                    FileOutcome::Failed {
                        exception_type: "ValidationException",
                        message: "The file is larger than this server's import memory \
                                  budget allows (see --import-memory-budget)"
                            .into(),
                    }
                } else {
                    let _permit = memory.acquire_many(need as u32).await;
                    let how = FileImport {
                        bucket: &bucket,
                        limits: &limits,
                        format,
                        codec_threads,
                    };
                    self.import_file(&*s3, job, &o.key, &how).await
                };
                (i, o.key, outcome)
            }
        })
        .buffer_unordered(limits.file_concurrency.max(1))
        .collect()
        .await;
        let mut outcomes = outcomes;
        outcomes.sort_by_key(|(i, _, _)| *i);

        // 3.–4. Group by series and the grouping elements, commit each group as one image set.
        let instances: Vec<Option<&ImportedInstance>> = outcomes
            .iter()
            .map(|(_, _, o)| match o {
                FileOutcome::Imported(inst) => Some(&**inst),
                FileOutcome::Failed { .. } => None,
            })
            .collect();
        let writer = Writer {
            ds: &job.datastore_id,
            owner: &job.id,
        };
        let placements = self.commit_instances(writer, &instances).await;

        // 5. Delete what no committed record owns (failed files' frames, replaced duplicates).
        self.collect_pending_blobs(&job.id).await;

        // 6. Outputs.
        let mut summary = ImportSummary {
            scanned,
            ..ImportSummary::default()
        };
        for (i, (_, key, outcome)) in outcomes.iter().enumerate() {
            match (outcome, placements.get(&i)) {
                (FileOutcome::Imported(inst), Some(Ok(p))) => {
                    summary.imported += 1;
                    let entry = summary
                        .image_sets
                        .entry(p.image_set_id.to_string())
                        .or_insert((p.version, p.is_primary, 0));
                    entry.0 = entry.0.max(p.version);
                    entry.2 += 1;
                    summary.success.push(json!({
                        "inputFile": key,
                        "importResponse": {"imageSetId": p.image_set_id.as_str(), "isPrimary": p.is_primary},
                    }));
                    if !inst.warnings.is_empty() {
                        let warnings: Vec<Value> = inst
                            .warnings
                            .iter()
                            .map(|(code, kind, message)| {
                                json!({"warning_reason_code": code, "type": kind, "message": message})
                            })
                            .collect();
                        summary.warning.push(json!({
                            "inputFile": key,
                            "importResponse": {
                                "imageSetId": p.image_set_id.as_str(),
                                "imageSetVersion": p.version,
                                "isPrimary": p.is_primary,
                                "warnings": warnings,
                            },
                        }));
                    }
                }
                (FileOutcome::Imported(_), Some(Err(_)) | None) => {
                    summary.server_errors += 1;
                    let message = match placements.get(&i) {
                        Some(Err(m)) => m.clone(),
                        _ => "The file was not committed".to_owned(),
                    };
                    summary.failure.push(json!({
                        "inputFile": key,
                        "exception": {"exceptionType": "InternalServerException", "message": message},
                    }));
                }
                (
                    FileOutcome::Failed {
                        exception_type,
                        message,
                    },
                    _,
                ) => {
                    if *exception_type == "InternalServerException" {
                        summary.server_errors += 1;
                    } else {
                        summary.customer_errors += 1;
                    }
                    summary.failure.push(json!({
                        "inputFile": key,
                        "exception": {"exceptionType": exception_type, "message": message},
                    }));
                }
            }
        }
        self.write_outputs(job, &summary).await?;
        self.catalog
            .transition_import_job(
                &job.datastore_id,
                &job.id,
                &[ImportJobStatus::InProgress],
                ImportJobStatus::Completed,
                None,
                self.clock.now(),
            )
            .await
            .map_err(internal)?;
        tracing::info!(
            job_id = %job.id,
            scanned = summary.scanned,
            imported = summary.imported,
            failed = summary.failure.len(),
            image_sets = summary.image_sets.len(),
            "import job COMPLETED"
        );
        Ok(format!(
            "imported {} of {} files into {} image sets",
            summary.imported,
            summary.scanned,
            summary.image_sets.len()
        ))
    }

    /// Reads, parses and transcodes one file and stores its frames (registered as pending).
    async fn import_file(
        &self,
        s3: &dyn S3Access,
        job: &ImportJob,
        key: &str,
        how: &FileImport<'_>,
    ) -> FileOutcome {
        let FileImport {
            bucket,
            limits,
            format,
            codec_threads,
        } = *how;
        let failed = |exception_type: &'static str, message: String| FileOutcome::Failed {
            exception_type,
            message,
        };
        let bytes = match s3.get(bucket, key, limits.max_file_bytes).await {
            Ok(b) => b,
            Err(S3AccessError::TooLarge { max, .. }) => {
                return failed(
                    "ValidationException",
                    format!("The file is larger than {max} bytes, the limit per DICOM P10 file"),
                );
            }
            Err(e) => {
                return failed(
                    "InternalServerException",
                    format!("The file could not be read: {e}"),
                );
            }
        };
        if bytes.is_empty() {
            return failed("ValidationException", "The file is empty".into());
        }
        let options = ProcessOptions {
            max_file_bytes: limits.max_file_bytes,
            format,
            codec_threads,
        };
        let writer = Writer {
            ds: &job.datastore_id,
            owner: &job.id,
        };
        self.process_instance(writer, bytes, &options).await
    }

    /// Parses and transcodes one P10 file and stores its frames as pending blobs of the
    /// writer's owner (registered before they are written, so an interruption never leaks
    /// them). Shared by import jobs and STOW-RS.
    pub(crate) async fn process_instance(
        &self,
        w: Writer<'_>,
        bytes: Bytes,
        options: &ProcessOptions,
    ) -> FileOutcome {
        let failed = |exception_type: &'static str, message: String| FileOutcome::Failed {
            exception_type,
            message,
        };
        let ProcessOptions {
            max_file_bytes,
            format,
            codec_threads,
        } = *options;
        let dicom_limits = lightbox_dicom::Limits {
            max_file_bytes,
            ..Default::default()
        };
        let work = tokio::task::spawn_blocking(move || {
            let parsed = lightbox_dicom::parse_p10(&bytes, &dicom_limits)
                .map_err(|e| (e.exception_type, e.message))?;
            drop(bytes);
            let mut frames = Vec::new();
            let info = lightbox_frames::process_frames_with(
                &parsed.object,
                &parsed.transfer_syntax,
                format,
                &lightbox_frames::ProcessOptions {
                    threads: codec_threads,
                },
                &mut |_, f| {
                    frames.push(f);
                    Ok(())
                },
            )
            .map_err(|e| (e.exception_type, e.message))?;
            Ok::<_, (&'static str, String)>((parsed, info, frames))
        })
        .await;
        let (parsed, info, frames) = match work {
            Ok(Ok(r)) => r,
            Ok(Err((t, m))) => return failed(t, m),
            Err(e) => {
                tracing::error!(error = %e, "import worker panicked");
                return failed(
                    "InternalServerException",
                    "The file could not be processed (internal error)".into(),
                );
            }
        };
        // Store the frames: register first, so an interruption can never leak them.
        let ids: Vec<String> = frames
            .iter()
            .map(|_| uuid::Uuid::new_v4().simple().to_string())
            .collect();
        let keys: Vec<String> = ids.iter().map(|id| frame_blob_key(w.ds, id)).collect();
        if let Err(e) = self
            .catalog
            .register_pending_blobs(w.owner, &keys, self.clock.now())
            .await
        {
            return failed("InternalServerException", internal(e));
        }
        let mut records = Vec::with_capacity(frames.len());
        let mut entries = Vec::with_capacity(frames.len());
        for ((frame, id), key) in frames.into_iter().zip(ids).zip(keys) {
            let size = frame.bytes.len() as u64;
            if let Err(e) = self.blobs.put(&key, Bytes::from(frame.bytes)).await {
                return failed("InternalServerException", internal(e));
            }
            records.push(FrameRecord {
                frame_id: id.clone(),
                blob_key: key,
                size,
                transfer_syntax: info.stored_transfer_syntax.clone(),
            });
            entries.push(lightbox_dicom::FrameEntry {
                id,
                checksums: frame.checksums,
                min_pixel_value: frame.min_pixel_value,
                max_pixel_value: frame.max_pixel_value,
                frame_size_in_bytes: size,
            });
        }
        let mut warnings: Vec<(u32, &'static str, String)> = parsed
            .warnings
            .iter()
            .map(|w| (w.code, w.kind, w.message.clone()))
            .collect();
        warnings.extend(
            info.warnings
                .iter()
                .map(|w| (w.code, w.kind, w.message.clone())),
        );
        let mut metadata = parsed.metadata;
        if let Some(pi) = &info.stored_photometric_interpretation {
            // The stored frames' samples are in another colour space than the source's (e.g.
            // a YBR JPEG decoded to RGB before lossless transcoding): say what viewers get.
            metadata
                .instance
                .insert("PhotometricInterpretation".into(), Value::from(pi.as_str()));
        }
        FileOutcome::Imported(Box::new(ImportedInstance {
            metadata,
            sop_instance_uid: parsed.sop_instance_uid,
            study_instance_uid: parsed.study_instance_uid,
            series_instance_uid: parsed.series_instance_uid,
            grouping: parsed.grouping,
            stored: StoredInstance {
                stored_transfer_syntax: info.stored_transfer_syntax,
                frames: entries,
            },
            frames: records,
            warnings,
        }))
    }

    /// Groups instances (`None`: a file that failed) by series, then by the grouping elements
    /// in input order, and commits each group as one image set (version): the first group of a
    /// series may become its primary image set, the others are non-primary. Returns each
    /// instance's placement by index. Shared by import jobs and STOW-RS.
    pub(crate) async fn commit_instances(
        &self,
        w: Writer<'_>,
        instances: &[Option<&ImportedInstance>],
    ) -> HashMap<usize, Result<Placement, String>> {
        let mut series: BTreeMap<(String, String), Vec<Group>> = BTreeMap::new();
        let mut series_order: Vec<(String, String)> = Vec::new();
        for (i, inst) in instances.iter().enumerate() {
            let Some(inst) = inst else { continue };
            let key = (
                inst.study_instance_uid.clone(),
                inst.series_instance_uid.clone(),
            );
            let grouping = grouping_json(&inst.grouping);
            let groups = series.entry(key.clone()).or_insert_with(|| {
                series_order.push(key.clone());
                Vec::new()
            });
            match groups.iter_mut().find(|g| g.grouping == grouping) {
                Some(g) => g.members.push(i),
                None => groups.push(Group {
                    grouping,
                    members: vec![i],
                }),
            }
        }
        let mut placements = HashMap::new();
        for key in &series_order {
            let groups = series.remove(key).unwrap_or_default();
            for (gi, group) in groups.iter().enumerate() {
                let result = self.commit_group(w, instances, group, gi == 0).await;
                for &m in &group.members {
                    placements.insert(m, result.clone());
                }
            }
        }
        placements
    }

    /// Commits one group: into the series' primary image set (new version) when the grouping
    /// elements agree, as the series' new primary image set when there is none and
    /// `may_be_primary`, otherwise as a new non-primary image set.
    async fn commit_group(
        &self,
        w: Writer<'_>,
        instances: &[Option<&ImportedInstance>],
        group: &Group,
        may_be_primary: bool,
    ) -> Result<Placement, String> {
        let members: Vec<&ImportedInstance> =
            group.members.iter().filter_map(|&i| instances[i]).collect();
        let first = members.first().ok_or("empty group")?;
        let ds = w.ds;
        let started = std::time::Instant::now();
        loop {
            let primary = self
                .catalog
                .find_primary_image_set(ds, &first.study_instance_uid, &first.series_instance_uid)
                .await
                .map_err(internal)?;
            match primary {
                Some(p) if p.grouping == group.grouping => {
                    match self
                        .catalog
                        .begin_image_set_version(
                            ds,
                            &p.image_set.id,
                            p.image_set.version,
                            ImageSetWorkflowStatus::Importing,
                            w.owner,
                            self.clock.now(),
                        )
                        .await
                        .map_err(internal)?
                    {
                        BeginVersionOutcome::Begun(version) => {
                            return self
                                .add_to_image_set(
                                    w,
                                    &p.image_set.id,
                                    version,
                                    &p.metadata_key,
                                    &members,
                                    group,
                                )
                                .await;
                        }
                        BeginVersionOutcome::Conflict(_) | BeginVersionOutcome::NotFound => {
                            if started.elapsed() > IMPORT_MAX_LOCK_WAIT {
                                return Err("The primary image set of this series stayed locked by other work".into());
                            }
                            tokio::time::sleep(IMPORT_RETRY_LOCKED).await;
                            continue;
                        }
                    }
                }
                Some(_) => {
                    return self.create_image_set_from(w, &members, group, false).await;
                }
                None if may_be_primary => {
                    match self.create_image_set_from(w, &members, group, true).await {
                        Err(e) if e == PRIMARY_TAKEN => continue,
                        other => return other,
                    }
                }
                None => {
                    return self.create_image_set_from(w, &members, group, false).await;
                }
            }
        }
    }

    async fn create_image_set_from(
        &self,
        w: Writer<'_>,
        members: &[&ImportedInstance],
        group: &Group,
        is_primary: bool,
    ) -> Result<Placement, String> {
        let ds = w.ds;
        let id = ImageSetId::generate();
        let mut doc = MetadataDocument::new(ds.as_str(), id.as_str());
        let mut frames: HashMap<&str, &FrameRecord> = HashMap::new();
        for m in members {
            doc.put_instance(
                &m.metadata,
                &m.series_instance_uid,
                &m.sop_instance_uid,
                &m.stored,
            );
            frames.extend(m.frames.iter().map(|f| (f.frame_id.as_str(), f)));
        }
        let live: Vec<FrameRecord> = doc
            .frame_ids()
            .iter()
            .filter_map(|f| frames.get(f.as_str()).map(|r| (*r).clone()))
            .collect();
        let content = self.store_document(w, &doc, group).await?;
        let now = self.clock.now();
        let new = NewImageSet {
            image_set: ImageSet {
                datastore_id: ds.clone(),
                id: id.clone(),
                version: 1,
                state: ImageSetState::Active,
                workflow_status: ImageSetWorkflowStatus::Created,
                is_primary,
                created_at: now,
                updated_at: now,
                deleted_at: None,
                last_accessed_at: now,
            },
            content,
            frames: live,
            job_id: w.owner.to_owned(),
        };
        match self
            .catalog
            .create_image_set(&new)
            .await
            .map_err(internal)?
        {
            CreateImageSetOutcome::Created => Ok(Placement {
                image_set_id: id,
                version: 1,
                is_primary,
            }),
            CreateImageSetOutcome::PrimaryExists { .. } => Err(PRIMARY_TAKEN.into()),
            CreateImageSetOutcome::DatastoreNotActive => {
                Err("The data store is no longer ACTIVE".into())
            }
        }
    }

    /// Writes version `version` (begun LOCKED/IMPORTING) of an existing image set: its previous
    /// document plus the group's instances (a re-imported SOP instance replaces the old one).
    async fn add_to_image_set(
        &self,
        w: Writer<'_>,
        id: &ImageSetId,
        version: i64,
        previous_key: &str,
        members: &[&ImportedInstance],
        group: &Group,
    ) -> Result<Placement, String> {
        let ds = w.ds;
        let result: Result<VersionCompletion, String> = async {
            let bytes = self
                .blobs
                .get(previous_key)
                .await
                .map_err(internal)?
                .ok_or("the image set's metadata document is missing")?;
            let mut doc = MetadataDocument::from_gzip(&bytes).map_err(internal)?;
            let before: HashSet<String> = doc.frame_ids().into_iter().collect();
            let mut frames: HashMap<&str, &FrameRecord> = HashMap::new();
            for m in members {
                doc.put_instance(
                    &m.metadata,
                    &m.series_instance_uid,
                    &m.sop_instance_uid,
                    &m.stored,
                );
                frames.extend(m.frames.iter().map(|f| (f.frame_id.as_str(), f)));
            }
            let after: HashSet<String> = doc.frame_ids().into_iter().collect();
            let added: Vec<FrameRecord> = after
                .difference(&before)
                .filter_map(|f| frames.get(f.as_str()).map(|r| (*r).clone()))
                .collect();
            let removed: Vec<String> = before.difference(&after).cloned().collect();
            let content = self.store_document(w, &doc, group).await?;
            Ok(VersionCompletion::Succeeded {
                status: ImageSetWorkflowStatus::Imported,
                content: Box::new(content),
                added_frames: added,
                removed_frame_ids: removed,
            })
        }
        .await;
        let completion = match &result {
            Ok(c) => c.clone(),
            Err(message) => VersionCompletion::Failed {
                status: ImageSetWorkflowStatus::ImportFailed,
                message: truncate_message(message),
            },
        };
        let done = self
            .catalog
            .complete_image_set_version(ds, id, version, &completion, self.clock.now())
            .await
            .map_err(internal)?;
        result?;
        if !done {
            return Err("The image set version was ended by other work".into());
        }
        Ok(Placement {
            image_set_id: id.clone(),
            version,
            is_primary: true,
        })
    }

    /// Stores a document (registered as pending first) and describes it for the catalog.
    async fn store_document(
        &self,
        w: Writer<'_>,
        doc: &MetadataDocument,
        group: &Group,
    ) -> Result<ImageSetContent, String> {
        let (key, size) = self.put_document(w.ds, w.owner, doc).await?;
        Ok(ImageSetContent {
            grouping: group.grouping.clone(),
            // From the merged document: an image set's first instances set its tags.
            tags: doc.search_tags(),
            qido: doc.qido_index(),
            instance_count: doc.instance_count() as i64,
            metadata_key: key,
            metadata_size: size,
        })
    }

    /// Stores a metadata document under a new key, registered first as a pending blob of
    /// `owner` (so it is deleted if no record takes it over); returns its key and stored size.
    /// A document over the per-image-set limit is refused.
    pub(crate) async fn put_document(
        &self,
        ds: &DatastoreId,
        owner: &str,
        doc: &MetadataDocument,
    ) -> Result<(String, u64), String> {
        let json = doc.to_json_bytes();
        let json_len = json.len() as u64;
        if json_len > self.config.import.max_metadata_bytes {
            return Err(format!(
                "The image set metadata would exceed {} bytes, the limit per image set",
                self.config.import.max_metadata_bytes
            ));
        }
        let gz = lightbox_dicom::gzip(&json);
        drop(json);
        let key = metadata_blob_key(ds);
        self.catalog
            .register_pending_blobs(owner, std::slice::from_ref(&key), self.clock.now())
            .await
            .map_err(internal)?;
        let size = gz.len() as u64;
        self.blobs
            .put(&key, Bytes::from(gz))
            .await
            .map_err(internal)?;
        Ok((key, size))
    }

    async fn write_outputs(&self, job: &ImportJob, s: &ImportSummary) -> Result<(), JobFailure> {
        let s3 = self.s3()?;
        let (bucket, prefix) = split_s3_uri(&job.output_s3_uri).ok_or("invalid outputS3Uri")?;
        let out = &job.output_s3_uri;
        let image_sets: Vec<Value> = s
            .image_sets
            .iter()
            .map(|(id, (version, primary, n))| {
                json!({"imageSetId": id, "imageSetVersion": version, "isPrimary": primary,
                       "numberOfMatchedSOPInstances": n})
            })
            .collect();
        let manifest = json!({"jobSummary": {
            "jobId": job.id,
            "datastoreId": job.datastore_id.as_str(),
            "inputS3Uri": job.input_s3_uri,
            "outputS3Uri": out,
            "successOutputS3Uri": format!("{out}SUCCESS/"),
            "failureOutputS3Uri": format!("{out}FAILURE/"),
            "warningsOutputS3Uri": format!("{out}WARNING/"),
            "numberOfScannedFiles": s.scanned,
            "numberOfImportedFiles": s.imported,
            "numberOfFilesWithCustomerError": s.customer_errors,
            "numberOfFilesWithServerError": s.server_errors,
            "numberOfGeneratedImageSets": s.image_sets.len(),
            "imageSetsSummary": image_sets,
        }});
        let ndjson = |lines: &[Value]| -> Bytes {
            let mut text = String::new();
            for l in lines {
                text.push_str(&l.to_string());
                text.push('\n');
            }
            Bytes::from(text)
        };
        let files = [
            (
                "job-output-manifest.json",
                Bytes::from(manifest.to_string()),
            ),
            ("SUCCESS/success.ndjson", ndjson(&s.success)),
            ("FAILURE/failure.ndjson", ndjson(&s.failure)),
            ("WARNING/warning.ndjson", ndjson(&s.warning)),
        ];
        for (name, body) in files {
            s3.put(bucket, &format!("{prefix}{name}"), body)
                .await
                .map_err(|e| s3_failure("output", &e))?;
        }
        Ok(())
    }
}

/// How the files of one job are read and stored.
#[derive(Clone, Copy)]
struct FileImport<'a> {
    bucket: &'a str,
    limits: &'a crate::ImportConfig,
    format: lightbox_frames::StorageFormat,
    codec_threads: usize,
}

/// Sentinel: a concurrent writer created the series' primary image set first.
const PRIMARY_TAKEN: &str = "primary image set created concurrently";

/// Counts and lines of a job's outputs.
#[derive(Default)]
struct ImportSummary {
    scanned: u64,
    imported: u64,
    customer_errors: u64,
    server_errors: u64,
    /// image set id → (version, is primary, matched SOP instances)
    image_sets: BTreeMap<String, (i64, bool, u64)>,
    success: Vec<Value>,
    failure: Vec<Value>,
    warning: Vec<Value>,
}

/// A storage failure as a job / file message: the cause is logged, the message stays generic
/// (causes carry endpoints and keys, which are not the client's business).
pub(crate) fn internal(e: impl std::fmt::Display) -> String {
    tracing::error!(error = %e, "import storage failure");
    "An internal error occurred while storing the imported data".into()
}

/// Job and version messages are at most 2048 characters (the model's `Message`).
pub(crate) fn truncate_message(m: &str) -> String {
    m.chars().take(2000).collect()
}
