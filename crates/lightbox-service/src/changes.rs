//! Image set changes: UpdateImageSetMetadata, CopyImageSet and DeleteImageSet. The request
//! validates, then allocates versions and locks in one catalog transaction together with an
//! `image_set.change` job; the job computes and stores the new documents and ends the versions
//! in one transaction (so any node finishes what a dead node started, and a crash leaves the old
//! or the new version, never a mix).

use std::collections::{HashMap, HashSet};

use lightbox_dicom::{CopySelection, MetadataDocument, UpdateOptions};
use lightbox_domain::{DatastoreId, ImageSet, ImageSetId, ImageSetState, ImageSetWorkflowStatus};
use lightbox_storage::{
    BeginChangeOutcome, ChangeEnd, ChangeLock, FrameRecord, ImageSetChange, ImageSetContent, Job,
    NewJob, NewLockedImageSet, VersionCompletion,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::import::{grouping_json, internal, truncate_message};
use crate::{Service, ServiceError};

/// A decoded `updatableAttributes` / `removableAttributes` document.
type ChangeDocument = Map<String, Value>;

/// The job kind that finishes image set changes.
pub(crate) const IMAGE_SET_CHANGE: &str = "image_set.change";

/// A job that was taken over this many times ends its versions FAILED instead of redoing the
/// work (the first takeover redoes it).
const MAX_WORK_ATTEMPTS: i64 = 2;

/// `load_document`'s error for a version without a document.
const NO_DOCUMENT: &str = "the image set version has no metadata document";

/// What UpdateImageSetMetadata changes.
#[derive(Debug, Clone)]
pub enum MetadataUpdates {
    /// `DICOMUpdates`: the decoded `updatableAttributes` / `removableAttributes` documents.
    Dicom {
        updatable: Option<Vec<u8>>,
        removable: Option<Vec<u8>>,
    },
    /// `revertToVersionId`.
    Revert(String),
}

/// UpdateImageSetMetadata's input beyond the image set's identity.
#[derive(Debug, Clone)]
pub struct UpdateInput {
    /// `latestVersion`: the version the caller saw (compare-and-set).
    pub latest_version: String,
    pub force: bool,
    pub include_study_image_sets: bool,
    pub updates: MetadataUpdates,
}

/// CopyImageSet's input beyond the source's identity.
#[derive(Debug, Clone)]
pub struct CopyInput {
    pub source_latest_version: String,
    /// `copiableAttributes` as received (JSON text).
    pub copiable_attributes: Option<String>,
    /// `destinationImageSet`: id and latest version.
    pub destination: Option<(ImageSetId, String)>,
    pub force: bool,
    pub promote_to_primary: bool,
}

/// The two image sets of a copy as the response shows them.
#[derive(Debug, Clone)]
pub struct CopyOutcome {
    pub source: ImageSet,
    pub destination: ImageSet,
}

/// The work an `image_set.change` job finishes (its payload).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
enum ChangeWork {
    #[serde(rename_all = "camelCase")]
    Update {
        datastore_id: String,
        /// `(image set, new version)`: the updated image set first, then the other primary
        /// image sets of its study (includeStudyImageSets), which get the study-level part.
        versions: Vec<(String, i64)>,
        updatable: Option<String>,
        removable: Option<String>,
        revert_to: Option<i64>,
        force: bool,
        is_primary: bool,
    },
    #[serde(rename_all = "camelCase")]
    Copy {
        datastore_id: String,
        source_id: String,
        source_version: i64,
        /// The source's status before it was locked read-only (restored afterwards).
        source_status: String,
        destination_id: String,
        destination_version: i64,
        /// A primary destination holds one series whatever `force` says.
        destination_primary: bool,
        selection: Option<String>,
        force: bool,
    },
    #[serde(rename_all = "camelCase")]
    Delete {
        datastore_id: String,
        image_set_id: String,
    },
}

fn validation(m: impl Into<String>) -> ServiceError {
    ServiceError::Validation(m.into())
}

fn parse_version_number(member: &str, v: &str) -> Result<i64, ServiceError> {
    v.parse::<i64>()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| validation(format!("{member} must be a version number")))
}

/// Conflict for an image set that cannot be written now.
fn conflict(s: &ImageSet, expected: Option<i64>) -> ServiceError {
    let id = &s.id;
    ServiceError::Conflict(match s.state {
        ImageSetState::Locked => format!(
            "Image set {id} is LOCKED ({}): no other write is allowed until it completes",
            s.workflow_status.as_str()
        ),
        ImageSetState::Deleted => format!("Image set {id} is DELETED"),
        ImageSetState::Active => match expected {
            Some(e) if e != s.version => format!(
                "Version {e} is not the latest version of image set {id} (the latest is {})",
                s.version
            ),
            _ => format!("Image set {id} changed meanwhile; read it again and retry"),
        },
    })
}

/// The conflict an image set shows before any transaction (state and expected version).
fn check_writable(s: &ImageSet, expected: i64) -> Result<(), ServiceError> {
    if s.state != ImageSetState::Active || s.version != expected {
        return Err(conflict(s, Some(expected)));
    }
    Ok(())
}

fn change_job(work: &ChangeWork, now: lightbox_domain::Millis) -> NewJob {
    NewJob {
        id: format!("{IMAGE_SET_CHANGE}/{}", uuid::Uuid::new_v4().simple()),
        kind: IMAGE_SET_CHANGE.into(),
        payload: serde_json::to_string(work).expect("change work serializes"),
        not_before: now,
    }
}

fn parse_document(bytes: &[u8], member: &str) -> Result<Map<String, Value>, ServiceError> {
    lightbox_dicom::parse_change_document(bytes, member).map_err(|e| validation(e.0))
}

fn parse_ids(ds: &str, id: &str) -> Result<(DatastoreId, ImageSetId), String> {
    Ok((
        DatastoreId::parse(ds).map_err(|_| "bad datastore id in job payload")?,
        ImageSetId::parse(id).map_err(|_| "bad image set id in job payload")?,
    ))
}

/// What an image set version is found and grouped by, for a stored document.
fn content_of(doc: &MetadataDocument, key: String, size: u64) -> ImageSetContent {
    ImageSetContent {
        grouping: grouping_json(&doc.grouping_key()),
        tags: doc.search_tags(),
        qido: doc.qido_index(),
        instance_count: doc.instance_count() as i64,
        metadata_key: key,
        metadata_size: size,
    }
}

impl Service {
    /// Wakes this node's job workers (work was just enqueued).
    pub(crate) fn wake_workers(&self) {
        self.wake.notify_one();
    }

    /// The document of one version: `(document, blob key, stored size)`.
    async fn load_document(
        &self,
        ds: &DatastoreId,
        id: &ImageSetId,
        version: i64,
    ) -> Result<(MetadataDocument, String, u64), String> {
        let v = self
            .catalog
            .get_image_set_version(ds, id, version)
            .await
            .map_err(internal)?
            .ok_or("the image set version is missing")?;
        let key = v.metadata_key.ok_or(NO_DOCUMENT)?;
        let bytes = self
            .blobs
            .get(&key)
            .await
            .map_err(internal)?
            .ok_or("the image set's metadata document is missing")?;
        let doc = MetadataDocument::from_gzip(&bytes).map_err(internal)?;
        Ok((doc, key, v.metadata_size.unwrap_or(bytes.len() as u64)))
    }

    /// `load_document` for a request: an image set without a document (a copy into a new image
    /// set that failed) is a conflict; other failures are internal errors.
    async fn current_document(
        &self,
        ds: &DatastoreId,
        id: &ImageSetId,
        version: i64,
    ) -> Result<MetadataDocument, ServiceError> {
        match self.load_document(ds, id, version).await {
            Ok((d, _, _)) => Ok(d),
            Err(e) if e == NO_DOCUMENT => Err(ServiceError::Conflict(format!(
                "Image set {id} has no metadata: the copy that created it failed. Only \
                 DeleteImageSet applies to it"
            ))),
            Err(e) => Err(ServiceError::Internal(e)),
        }
    }

    /// Maps the outcome of `begin_image_set_change`.
    async fn begin_change(&self, change: &ImageSetChange) -> Result<Vec<ImageSet>, ServiceError> {
        let ds = &change.datastore_id;
        let outcome = self.catalog.begin_image_set_change(change).await?;
        match outcome {
            BeginChangeOutcome::Begun(sets) => {
                self.wake_workers();
                Ok(sets)
            }
            BeginChangeOutcome::NotFound(id) => Err(self.missing(ds, &id).await),
            BeginChangeOutcome::Conflict(s) => {
                let expected = change
                    .locks
                    .iter()
                    .find(|l| l.id == s.id)
                    .map(|l| l.expected_latest);
                Err(conflict(&s, expected))
            }
            BeginChangeOutcome::PrimaryExists => Err(ServiceError::Conflict(
                "The series got a primary image set meanwhile; retry the copy".into(),
            )),
            BeginChangeOutcome::DatastoreNotActive => Err(ServiceError::Conflict(format!(
                "Data store {ds} is not ACTIVE"
            ))),
        }
    }

    /// UpdateImageSetMetadata: validates the update against the latest document, then starts
    /// the new version (LOCKED / UPDATING). Returns the image set as it is now.
    pub async fn update_image_set_metadata(
        &self,
        ds: &DatastoreId,
        id: &ImageSetId,
        input: UpdateInput,
    ) -> Result<ImageSet, ServiceError> {
        let expected = parse_version_number("latestVersionId", &input.latest_version)?;
        let current = self.image_set_or_not_found(ds, id).await?;
        check_writable(&current, expected)?;
        let opts = UpdateOptions {
            force: input.force,
            is_primary: current.is_primary,
        };
        // The study whose other primary image sets an includeStudyImageSets update reaches.
        let mut study = None;
        let (updatable, removable, revert_to) = match &input.updates {
            MetadataUpdates::Revert(v) => {
                if input.include_study_image_sets {
                    return Err(validation(
                        "includeStudyImageSets cannot be combined with revertToVersionId",
                    ));
                }
                let n = parse_version_number("revertToVersionId", v)?;
                let target = self.catalog.get_image_set_version(ds, id, n).await?;
                match target {
                    Some(t) if n != current.version && t.metadata_key.is_some() => {}
                    Some(_) if n == current.version => {
                        return Err(validation(format!(
                            "revertToVersionId {n} is the latest version of the image set"
                        )));
                    }
                    _ => {
                        return Err(validation(format!(
                            "revertToVersionId {n} is not a version of the image set"
                        )));
                    }
                }
                (None, None, Some(n))
            }
            MetadataUpdates::Dicom {
                updatable,
                removable,
            } => {
                if updatable.is_none() && removable.is_none() {
                    return Err(validation(
                        "DICOMUpdates must contain updatableAttributes or removableAttributes",
                    ));
                }
                let total =
                    updatable.as_ref().map_or(0, Vec::len) + removable.as_ref().map_or(0, Vec::len);
                if total as u64 > self.config.max_update_payload_bytes {
                    return Err(ServiceError::QuotaExceeded(format!(
                        "The update documents total {total} bytes; at most {} are allowed",
                        self.config.max_update_payload_bytes
                    )));
                }
                let u = updatable
                    .as_deref()
                    .map(|b| parse_document(b, "updatableAttributes"))
                    .transpose()?;
                let r = removable
                    .as_deref()
                    .map(|b| parse_document(b, "removableAttributes"))
                    .transpose()?;
                if input.include_study_image_sets && !current.is_primary {
                    return Err(validation(
                        "includeStudyImageSets applies to primary image sets only",
                    ));
                }
                // Validate by applying to the latest document (the job applies it again to the
                // same document: the version is compare-and-set).
                let mut doc = self.current_document(ds, id, current.version).await?;
                study = doc.search_tags().study_instance_uid;
                doc.apply_updates(u.as_ref(), r.as_ref(), opts)
                    .map_err(|e| validation(e.0))?;
                let text = |m: Option<Map<String, Value>>| m.map(|m| Value::Object(m).to_string());
                (text(u), text(r), None)
            }
        };
        let now = self.clock.now();
        let mut locks = vec![ChangeLock {
            id: id.clone(),
            expected_latest: expected,
            status: ImageSetWorkflowStatus::Updating,
            new_version: true,
            forced: input.force,
        }];
        if input.include_study_image_sets
            && let Some(study) = study
        {
            for other in self.catalog.primary_image_sets_of_study(ds, &study).await? {
                if other.id == *id {
                    continue;
                }
                check_writable(&other, other.version)?;
                locks.push(ChangeLock {
                    id: other.id.clone(),
                    expected_latest: other.version,
                    status: ImageSetWorkflowStatus::UpdatingForStudyConsistency,
                    new_version: true,
                    forced: input.force,
                });
            }
        }
        let work = ChangeWork::Update {
            datastore_id: ds.to_string(),
            versions: locks
                .iter()
                .map(|l| (l.id.to_string(), l.expected_latest + 1))
                .collect(),
            updatable,
            removable,
            revert_to,
            force: input.force,
            is_primary: current.is_primary,
        };
        let change = ImageSetChange {
            datastore_id: ds.clone(),
            locks,
            create: None,
            job: change_job(&work, now),
            now,
        };
        let sets = self.begin_change(&change).await?;
        Ok(sets.into_iter().next().expect("the updated image set"))
    }

    /// CopyImageSet: validates the selection, locks the source read-only and starts the
    /// destination's new version (or creates it LOCKED / COPYING).
    pub async fn copy_image_set(
        &self,
        ds: &DatastoreId,
        source_id: &ImageSetId,
        input: CopyInput,
    ) -> Result<CopyOutcome, ServiceError> {
        let source_expected = parse_version_number(
            "sourceImageSet.latestVersionId",
            &input.source_latest_version,
        )?;
        if input
            .destination
            .as_ref()
            .is_some_and(|(d, _)| d == source_id)
        {
            return Err(validation(
                "destinationImageSet.imageSetId must differ from the source image set",
            ));
        }
        if input.promote_to_primary && input.destination.is_some() {
            return Err(validation(
                "promoteToPrimary copies into the series' primary image set: \
                 destinationImageSet cannot be given with it",
            ));
        }
        let source = self.image_set_or_not_found(ds, source_id).await?;
        let destination = match &input.destination {
            Some((d, v)) => {
                let expected = parse_version_number("destinationImageSet.latestVersionId", v)?;
                let dest = self.image_set_or_not_found(ds, d).await?;
                Some((dest, expected))
            }
            None => None,
        };
        check_writable(&source, source_expected)?;
        if let Some((dest, expected)) = &destination {
            check_writable(dest, *expected)?;
        }
        let selection = input
            .copiable_attributes
            .as_deref()
            .map(lightbox_dicom::parse_copy_selection)
            .transpose()
            .map_err(|e| validation(e.0))?;
        let doc = self.current_document(ds, source_id, source.version).await?;
        let selected = doc
            .select_for_copy(selection.as_ref())
            .map_err(|e| validation(e.0))?;
        let frames = selected.frame_count();
        if frames > self.config.max_copy_frames {
            return Err(ServiceError::QuotaExceeded(format!(
                "The copy selects {frames} image frames; at most {} may be copied at once",
                self.config.max_copy_frames
            )));
        }
        let now = self.clock.now();
        let mut locks = vec![ChangeLock {
            id: source_id.clone(),
            expected_latest: source_expected,
            status: ImageSetWorkflowStatus::CopyingWithReadOnlyAccess,
            new_version: false,
            forced: false,
        }];
        let mut promote_into = None;
        if input.promote_to_primary {
            if source.is_primary {
                return Err(validation(
                    "promoteToPrimary needs a non-primary source image set",
                ));
            }
            let tags = selected.search_tags();
            let series_count = selected
                .instances()
                .map(|(s, _, _)| s)
                .collect::<HashSet<_>>()
                .len();
            let (Some(study), Some(series), 1) = (
                tags.study_instance_uid.as_deref(),
                tags.series_instance_uid.as_deref(),
                series_count,
            ) else {
                return Err(validation(
                    "promoteToPrimary needs the copied instances to form one series",
                ));
            };
            promote_into = self
                .catalog
                .find_primary_image_set(ds, study, series)
                .await?
                .map(|p| p.image_set);
        }
        let existing = destination
            .as_ref()
            .map(|(d, v)| (d.clone(), *v))
            .or_else(|| {
                promote_into.clone().map(|p| {
                    let v = p.version;
                    (p, v)
                })
            });
        let destination_primary = existing
            .as_ref()
            .map_or(input.promote_to_primary, |(d, _)| d.is_primary);
        let (create, destination_id, destination_version) = match &existing {
            Some((dest, expected)) => {
                check_writable(dest, *expected)?;
                locks.push(ChangeLock {
                    id: dest.id.clone(),
                    expected_latest: *expected,
                    status: ImageSetWorkflowStatus::Copying,
                    new_version: true,
                    forced: input.force && !input.promote_to_primary,
                });
                (None, dest.id.clone(), expected + 1)
            }
            None => {
                let id = ImageSetId::generate();
                let image_set = ImageSet {
                    datastore_id: ds.clone(),
                    id: id.clone(),
                    version: 1,
                    state: ImageSetState::Locked,
                    workflow_status: ImageSetWorkflowStatus::Copying,
                    is_primary: input.promote_to_primary,
                    created_at: now,
                    updated_at: now,
                    deleted_at: None,
                    last_accessed_at: now,
                };
                let create = NewLockedImageSet {
                    image_set,
                    tags: selected.search_tags(),
                    grouping: grouping_json(&selected.grouping_key()),
                    instance_count: selected.instance_count() as i64,
                };
                (Some(create), id, 1)
            }
        };
        let work = ChangeWork::Copy {
            datastore_id: ds.to_string(),
            source_id: source_id.to_string(),
            source_version: source.version,
            source_status: source.workflow_status.as_str().into(),
            destination_id: destination_id.to_string(),
            destination_version,
            destination_primary,
            selection: input.copiable_attributes.clone(),
            // Promoting merges like an import into the primary image set: elements must agree.
            force: input.force && !input.promote_to_primary,
        };
        let change = ImageSetChange {
            datastore_id: ds.clone(),
            locks,
            create,
            job: change_job(&work, now),
            now,
        };
        let mut sets = self.begin_change(&change).await?.into_iter();
        let source = sets.next().expect("the source image set");
        let destination = sets.next().expect("the destination image set");
        Ok(CopyOutcome {
            source,
            destination,
        })
    }

    /// DeleteImageSet: LOCKED / DELETING now, DELETED when the job has run.
    pub async fn delete_image_set(
        &self,
        ds: &DatastoreId,
        id: &ImageSetId,
    ) -> Result<ImageSet, ServiceError> {
        let current = self.image_set_or_not_found(ds, id).await?;
        check_writable(&current, current.version)?;
        let now = self.clock.now();
        let work = ChangeWork::Delete {
            datastore_id: ds.to_string(),
            image_set_id: id.to_string(),
        };
        let change = ImageSetChange {
            datastore_id: ds.clone(),
            locks: vec![ChangeLock {
                id: id.clone(),
                expected_latest: current.version,
                status: ImageSetWorkflowStatus::Deleting,
                new_version: false,
                forced: false,
            }],
            create: None,
            job: change_job(&work, now),
            now,
        };
        let sets = self.begin_change(&change).await?;
        Ok(sets.into_iter().next().expect("the deleted image set"))
    }

    /// Runs an `image_set.change` job.
    pub(crate) async fn run_image_set_change(&self, job: &Job) -> Result<String, String> {
        let work: ChangeWork =
            serde_json::from_str(&job.payload).map_err(|e| format!("bad payload: {e}"))?;
        let result = match &work {
            ChangeWork::Delete {
                datastore_id,
                image_set_id,
            } => {
                let (ds, id) = parse_ids(datastore_id, image_set_id)?;
                let done = self
                    .catalog
                    .finish_delete_image_set(&ds, &id, &job.id, self.clock.now())
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(if done { "DELETED" } else { "already ended" }.to_string())
            }
            // Also on the queue's last permitted attempt (`job_max_attempts`), whatever it is: a
            // change job must end its versions, or its image sets would stay LOCKED.
            _ if job.attempts > MAX_WORK_ATTEMPTS
                || job.attempts >= self.config.job_max_attempts =>
            {
                self.abandon_change(&work).await
            }
            ChangeWork::Update { .. } => self.finish_update(job, &work).await,
            ChangeWork::Copy { .. } => self.finish_copy(job, &work).await,
        };
        self.collect_pending_blobs(&job.id).await;
        result
    }

    /// Ends a change whose work was interrupted too often: its versions FAILED with the previous
    /// documents, read-only locks released.
    async fn abandon_change(&self, work: &ChangeWork) -> Result<String, String> {
        let message = "The work on this version was interrupted (the server processing it \
                       stopped); the image set keeps its previous metadata"
            .to_string();
        let (ds, end) = match work {
            ChangeWork::Update {
                datastore_id,
                versions,
                ..
            } => {
                let ds = DatastoreId::parse(datastore_id).map_err(|_| "bad datastore id")?;
                let mut ends = Vec::new();
                for (id, v) in versions {
                    let (_, id) = parse_ids(datastore_id, id)?;
                    let completion = VersionCompletion::Failed {
                        status: ImageSetWorkflowStatus::UpdateFailed,
                        message: message.clone(),
                    };
                    ends.push((id, *v, completion));
                }
                (ds, ends_only(ends, self.clock.now()))
            }
            ChangeWork::Copy {
                datastore_id,
                source_id,
                source_status,
                destination_id,
                destination_version,
                ..
            } => {
                let (ds, source) = parse_ids(datastore_id, source_id)?;
                let (_, dest) = parse_ids(datastore_id, destination_id)?;
                let end = ChangeEnd {
                    versions: vec![(
                        dest,
                        *destination_version,
                        VersionCompletion::Failed {
                            status: ImageSetWorkflowStatus::CopyFailed,
                            message,
                        },
                    )],
                    unlock: vec![(
                        source,
                        ImageSetWorkflowStatus::CopyingWithReadOnlyAccess,
                        restored_status(source_status),
                    )],
                    now: self.clock.now(),
                };
                (ds, end)
            }
            ChangeWork::Delete { .. } => unreachable!("deletes are always redone"),
        };
        let done = self
            .catalog
            .finish_image_set_change(&ds, &end)
            .await
            .map_err(|e| e.to_string())?;
        Ok(if done {
            "ended FAILED after interruptions"
        } else {
            "already ended"
        }
        .into())
    }

    async fn finish_update(&self, job: &Job, work: &ChangeWork) -> Result<String, String> {
        let ChangeWork::Update {
            datastore_id,
            versions,
            updatable,
            removable,
            revert_to,
            force,
            is_primary,
        } = work
        else {
            unreachable!()
        };
        let ds = DatastoreId::parse(datastore_id).map_err(|_| "bad datastore id")?;
        let parse = |t: &Option<String>| -> Result<Option<Map<String, Value>>, String> {
            t.as_deref()
                .map(|t| match serde_json::from_str(t) {
                    Ok(Value::Object(m)) => Ok(m),
                    _ => Err("bad update document in job payload".to_string()),
                })
                .transpose()
        };
        let (u, r) = (parse(updatable)?, parse(removable)?);
        let opts = UpdateOptions {
            force: *force,
            is_primary: *is_primary,
        };
        let mut computed = Vec::new();
        let mut failure = None;
        for (i, (id, version)) in versions.iter().enumerate() {
            let (_, id) = parse_ids(datastore_id, id)?;
            let r = self
                .updated_version(
                    &ds,
                    &id,
                    *version,
                    job,
                    *revert_to,
                    (u.as_ref(), r.as_ref()),
                    opts,
                    i > 0,
                )
                .await;
            match r {
                Ok(c) => computed.push((id, *version, c)),
                Err(m) => {
                    failure = Some(m);
                    break;
                }
            }
        }
        let now = self.clock.now();
        let end = match failure {
            None => ChangeEnd {
                versions: computed,
                unlock: vec![],
                now,
            },
            Some(message) => {
                let mut ends = Vec::new();
                for (id, v) in versions {
                    let (_, id) = parse_ids(datastore_id, id)?;
                    ends.push((
                        id,
                        *v,
                        VersionCompletion::Failed {
                            status: ImageSetWorkflowStatus::UpdateFailed,
                            message: truncate_message(&message),
                        },
                    ));
                }
                ends_only(ends, now)
            }
        };
        let done = self
            .catalog
            .finish_image_set_change(&ds, &end)
            .await
            .map_err(|e| e.to_string())?;
        Ok(if done { "UPDATED" } else { "already ended" }.into())
    }

    /// Computes and stores version `version` of one image set of an update: its previous
    /// document with the update applied (`study_only`: the study-level part), or the document
    /// of the version reverted to.
    #[allow(clippy::too_many_arguments)]
    async fn updated_version(
        &self,
        ds: &DatastoreId,
        id: &ImageSetId,
        version: i64,
        job: &Job,
        revert_to: Option<i64>,
        (updatable, removable): (Option<&ChangeDocument>, Option<&ChangeDocument>),
        opts: UpdateOptions,
        study_only: bool,
    ) -> Result<VersionCompletion, String> {
        let previous = version - 1;
        let live: Vec<FrameRecord> = self
            .catalog
            .list_image_frames(ds, id, previous)
            .await
            .map_err(internal)?;
        let live_ids: HashSet<&str> = live.iter().map(|f| f.frame_id.as_str()).collect();
        let (doc, content, added) = if let Some(target) = revert_to {
            let (doc, key, size) = self.load_document(ds, id, target).await?;
            let old = self
                .catalog
                .list_image_frames(ds, id, target)
                .await
                .map_err(internal)?;
            let added: Vec<FrameRecord> = old
                .into_iter()
                .filter(|f| !live_ids.contains(f.frame_id.as_str()))
                .collect();
            let content = content_of(&doc, key, size);
            (doc, content, added)
        } else {
            let (mut doc, _, _) = self.load_document(ds, id, previous).await?;
            let applied = if study_only {
                doc.apply_study_updates(updatable, removable, opts)
            } else {
                doc.apply_updates(updatable, removable, opts)
            };
            applied.map_err(|e| e.0)?;
            let (key, size) = self.put_document(ds, &job.id, &doc).await?;
            let content = content_of(&doc, key, size);
            (doc, content, Vec::new())
        };
        let now_ids: HashSet<String> = doc.frame_ids().into_iter().collect();
        let removed: Vec<String> = live_ids
            .iter()
            .filter(|f| !now_ids.contains(**f))
            .map(|f| f.to_string())
            .collect();
        Ok(VersionCompletion::Succeeded {
            status: ImageSetWorkflowStatus::Updated,
            content: Box::new(content),
            added_frames: added,
            removed_frame_ids: removed,
        })
    }

    async fn finish_copy(&self, job: &Job, work: &ChangeWork) -> Result<String, String> {
        let ChangeWork::Copy {
            datastore_id,
            source_id,
            source_version,
            source_status,
            destination_id,
            destination_version,
            destination_primary,
            selection,
            force,
        } = work
        else {
            unreachable!()
        };
        let (ds, source) = parse_ids(datastore_id, source_id)?;
        let (_, dest) = parse_ids(datastore_id, destination_id)?;
        let completion = match self
            .copied_version(
                &ds,
                (&source, *source_version),
                (&dest, *destination_version, *destination_primary),
                selection.as_deref(),
                *force,
                job,
            )
            .await
        {
            Ok(c) => c,
            Err(message) => VersionCompletion::Failed {
                status: ImageSetWorkflowStatus::CopyFailed,
                message: truncate_message(&message),
            },
        };
        let end = ChangeEnd {
            versions: vec![(dest, *destination_version, completion)],
            unlock: vec![(
                source,
                ImageSetWorkflowStatus::CopyingWithReadOnlyAccess,
                restored_status(source_status),
            )],
            now: self.clock.now(),
        };
        let done = self
            .catalog
            .finish_image_set_change(&ds, &end)
            .await
            .map_err(|e| e.to_string())?;
        Ok(if done { "COPIED" } else { "already ended" }.into())
    }

    /// Computes and stores the destination's version of a copy: the selected instances alone
    /// (a new image set) or merged into the destination's previous document. The frames are
    /// the source's (shared blobs).
    async fn copied_version(
        &self,
        ds: &DatastoreId,
        (source, source_version): (&ImageSetId, i64),
        (dest, version, primary): (&ImageSetId, i64, bool),
        selection: Option<&str>,
        force: bool,
        job: &Job,
    ) -> Result<VersionCompletion, String> {
        let selection: Option<CopySelection> = selection
            .map(lightbox_dicom::parse_copy_selection)
            .transpose()
            .map_err(|e| e.0)?;
        let (src_doc, _, _) = self.load_document(ds, source, source_version).await?;
        let selected = src_doc
            .select_for_copy(selection.as_ref())
            .map_err(|e| e.0)?;
        let source_frames: HashMap<String, FrameRecord> = self
            .catalog
            .list_image_frames(ds, source, source_version)
            .await
            .map_err(internal)?
            .into_iter()
            .map(|f| (f.frame_id.clone(), f))
            .collect();
        let (doc, live_before) = if version == 1 {
            let mut doc = selected;
            doc.set_image_set_id(dest.as_str());
            (doc, HashSet::new())
        } else {
            let (mut doc, _, _) = self.load_document(ds, dest, version - 1).await?;
            doc.merge_copy(&selected, force).map_err(|e| e.0)?;
            let series: HashSet<&str> = doc.instances().map(|(s, _, _)| s).collect();
            if primary && series.len() > 1 {
                return Err("INVALID_REQUEST: A primary image set holds one series.".into());
            }
            let live: HashSet<String> = self
                .catalog
                .list_image_frames(ds, dest, version - 1)
                .await
                .map_err(internal)?
                .into_iter()
                .map(|f| f.frame_id)
                .collect();
            (doc, live)
        };
        let added: Vec<FrameRecord> = doc
            .frame_ids()
            .into_iter()
            .filter(|f| !live_before.contains(f))
            .filter_map(|f| source_frames.get(&f).cloned())
            .collect();
        let (key, size) = self.put_document(ds, &job.id, &doc).await?;
        Ok(VersionCompletion::Succeeded {
            status: ImageSetWorkflowStatus::Copied,
            content: Box::new(content_of(&doc, key, size)),
            added_frames: added,
            removed_frame_ids: Vec::new(),
        })
    }
}

fn ends_only(
    versions: Vec<(ImageSetId, i64, VersionCompletion)>,
    now: lightbox_domain::Millis,
) -> ChangeEnd {
    ChangeEnd {
        versions,
        unlock: Vec::new(),
        now,
    }
}

fn restored_status(s: &str) -> ImageSetWorkflowStatus {
    ImageSetWorkflowStatus::parse(s).unwrap_or(ImageSetWorkflowStatus::Copied)
}

#[cfg(test)]
#[path = "changes_abandon_tests.rs"]
mod changes_abandon_tests;
