//! The Catalog interface: every relational read and write Lightbox makes, one transaction each.

use async_trait::async_trait;
use lightbox_domain::{
    Datastore, DatastoreId, DatastoreStatus, ImageSet, ImageSetDicomTags, ImageSetId,
    ImageSetWorkflowStatus, ImportJob, ImportJobStatus, Millis, QidoAttributes, QidoIndex,
    QidoInstance, ResourceRef,
};

use crate::StorageError;

/// An opaque position in a listing, issued by the backend that produced the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(pub String);

/// One page of a listing; `next` is `None` on the last page.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Cursor>,
}

/// Input of `create_datastore`: the row to insert if the client token is new.
#[derive(Debug, Clone)]
pub struct NewDatastore {
    pub datastore: Datastore,
    /// Data stores that are not DELETED may not exceed this count.
    pub quota: u32,
    /// Tags applied in the same transaction as the insert.
    pub tags: Vec<(String, String)>,
    /// Background work enqueued in the same transaction as the insert (e.g. activation).
    pub job: Option<NewJob>,
}

/// Background work to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// Unique id; enqueueing an id that exists is a no-op (idempotent).
    pub id: String,
    /// Which worker runs it, e.g. `datastore.delete`.
    pub kind: String,
    /// Worker-defined parameters (JSON text).
    pub payload: String,
    /// Not claimed before this time.
    pub not_before: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::Running => "RUNNING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Queued, Self::Running, Self::Succeeded, Self::Failed]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: String,
    pub kind: String,
    pub payload: String,
    pub state: JobState,
    /// How many times the job was claimed.
    pub attempts: i64,
    pub not_before: Millis,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<Millis>,
    /// What the worker reported when it finished.
    pub result: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    Succeeded(String),
    Failed(String),
}

/// A lease request: who claims, for how long, and which kinds they run.
#[derive(Debug, Clone)]
pub struct Lease<'a> {
    pub owner: &'a str,
    pub now: Millis,
    pub duration: std::time::Duration,
    /// A job claimed this many times whose lease expired again is failed instead of retried.
    pub max_attempts: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CreateDatastoreOutcome {
    Created(Datastore),
    /// A data store with the same client token already exists (returned as stored).
    ExistingToken(Datastore),
    QuotaExceeded,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DeleteDatastoreOutcome {
    /// Now DELETING (or already DELETING / DELETED: returned as stored).
    Deleting(Datastore),
    NotFound,
    /// It still holds image sets that are not DELETED.
    NotEmpty,
    /// Its status does not allow deletion (e.g. CREATING).
    WrongStatus(DatastoreStatus),
}

#[derive(Debug, Clone, PartialEq)]
pub enum TagOutcome {
    Done,
    NotFound,
    /// Applying the change would leave more tags than allowed on the resource.
    TooManyTags,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CreateImportJobOutcome {
    Created(ImportJob),
    /// A job with the same client token exists in this data store (returned as stored).
    ExistingToken(ImportJob),
    DatastoreNotFound,
    /// Jobs can only start on an ACTIVE data store.
    DatastoreNotActive(DatastoreStatus),
    /// The data store already has this many jobs SUBMITTED or IN_PROGRESS.
    TooManyJobs(u32),
}

/// One stored frame of an image set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameRecord {
    pub frame_id: String,
    pub blob_key: String,
    pub size: u64,
    pub transfer_syntax: String,
}

/// What an image set version is found and grouped by, and its document.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSetContent {
    /// The 7 grouping elements (canonical JSON), compared to decide primary membership.
    pub grouping: String,
    pub tags: ImageSetDicomTags,
    /// What QIDO-RS finds it by beyond `tags` (`MetadataDocument::qido_index`).
    pub qido: QidoIndex,
    pub instance_count: i64,
    /// Blob key of the gzip metadata document of this version.
    pub metadata_key: String,
    pub metadata_size: u64,
}

/// Input of `create_image_set`: a new image set at version 1.
#[derive(Debug, Clone, PartialEq)]
pub struct NewImageSet {
    /// `version` must be 1; `state`/`workflow_status` as the first version shows them.
    pub image_set: ImageSet,
    pub content: ImageSetContent,
    pub frames: Vec<FrameRecord>,
    /// The job (or operation) writing it; its pending blobs in `content`/`frames` become owned.
    pub job_id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CreateImageSetOutcome {
    Created,
    /// `is_primary` was requested but the series already has a live primary image set.
    PrimaryExists {
        image_set: ImageSet,
        grouping: String,
    },
    DatastoreNotActive,
}

/// A live primary image set of a series, as the import grouping sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PrimaryImageSet {
    pub image_set: ImageSet,
    pub grouping: String,
    pub metadata_key: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BeginVersionOutcome {
    /// The new version (latest + 1) exists, LOCKED with the requested workflow status.
    Begun(i64),
    /// The image set is LOCKED, DELETED, or its latest version is not the expected one.
    Conflict(ImageSet),
    NotFound,
}

/// How a version written by `begin_image_set_version` ends.
#[derive(Debug, Clone, PartialEq)]
pub enum VersionCompletion {
    /// ACTIVE with `status` (e.g. IMPORTED), the new content, frames added and frames that are
    /// no longer part of the image set from this version on.
    Succeeded {
        status: ImageSetWorkflowStatus,
        content: Box<ImageSetContent>,
        added_frames: Vec<FrameRecord>,
        removed_frame_ids: Vec<String>,
    },
    /// ACTIVE with `status` (e.g. IMPORT_FAILED) and `message`; the content stays the previous
    /// version's.
    Failed {
        status: ImageSetWorkflowStatus,
        message: String,
    },
}

/// One image set an image set change locks (see `begin_image_set_change`).
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeLock {
    pub id: ImageSetId,
    /// Compare-and-set: the image set must be ACTIVE at this latest version.
    pub expected_latest: i64,
    /// The workflow status while LOCKED.
    pub status: ImageSetWorkflowStatus,
    /// A new version is started (Update, Copy destination), or the latest one is locked as it
    /// is (Copy source, Delete).
    pub new_version: bool,
    /// Recorded as `overrides.forced` on the new version.
    pub forced: bool,
}

/// An image set created LOCKED at version 1 by a change (a copy into a new image set), with what
/// it will be found and grouped by (its document comes when the change finishes).
#[derive(Debug, Clone, PartialEq)]
pub struct NewLockedImageSet {
    pub image_set: ImageSet,
    pub tags: ImageSetDicomTags,
    pub grouping: String,
    pub instance_count: i64,
}

/// Input of `begin_image_set_change`: everything a change locks or creates, and its work.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSetChange {
    pub datastore_id: DatastoreId,
    pub locks: Vec<ChangeLock>,
    pub create: Option<NewLockedImageSet>,
    /// Enqueued in the same transaction; its id is recorded as the new versions' job id.
    pub job: NewJob,
    pub now: Millis,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BeginChangeOutcome {
    /// Everything is locked: the image sets as they are now, in `locks` order, then the
    /// created one.
    Begun(Vec<ImageSet>),
    NotFound(ImageSetId),
    /// An image set is LOCKED, DELETED, or not at the expected version.
    Conflict(ImageSet),
    /// The image set to create is primary but its series already has a live primary one.
    PrimaryExists,
    DatastoreNotActive,
}

/// How `finish_image_set_change` ends a change.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeEnd {
    /// Versions started by the change and how each ends.
    pub versions: Vec<(ImageSetId, i64, VersionCompletion)>,
    /// Read-only locks released: `(image set, status while locked, status restored)`; an image
    /// set no longer LOCKED with that status is left alone.
    pub unlock: Vec<(ImageSetId, ImageSetWorkflowStatus, ImageSetWorkflowStatus)>,
    pub now: Millis,
}

/// One version of an image set as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSetVersion {
    pub image_set_id: ImageSetId,
    pub version: i64,
    pub state: lightbox_domain::ImageSetState,
    pub workflow_status: ImageSetWorkflowStatus,
    pub is_primary: bool,
    pub message: Option<String>,
    pub forced: bool,
    pub metadata_key: Option<String>,
    pub metadata_size: Option<u64>,
    pub job_id: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub deleted_at: Option<Millis>,
}

/// Text attributes SearchImageSets matches exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageSetTextField {
    PatientId,
    AccessionNumber,
    StudyId,
    StudyInstanceUid,
    SeriesInstanceUid,
}

/// One SearchImageSets condition; ranges are inclusive at both ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSetFilter {
    Text(ImageSetTextField, String),
    CreatedAt(Millis, Millis),
    UpdatedAt(Millis, Millis),
    /// Keys made by `lightbox_domain::study_date_time_key`.
    StudyDateTime(String, String),
    IsPrimary(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageSetSortField {
    UpdatedAt,
    CreatedAt,
    StudyDateTime,
}

/// A SearchImageSets query: every filter must hold; the image set id breaks sort ties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSetSearch {
    pub filters: Vec<ImageSetFilter>,
    pub sort: ImageSetSortField,
    pub descending: bool,
}

/// A search result: the latest version of a live image set and what it is found by.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSetSummary {
    pub image_set: ImageSet,
    pub tags: ImageSetDicomTags,
    /// Series and instances of the study: over all live primary image sets of the study for a
    /// primary image set, the image set's own for a non-primary one.
    pub study_series: i64,
    pub study_instances: i64,
}

/// An attribute QIDO-RS matches, as the catalog stores it (the latest version of a primary
/// image set; study attributes of a study come from its most recently updated one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DicomAttribute {
    PatientName,
    PatientId,
    PatientBirthDate,
    PatientSex,
    AccessionNumber,
    StudyId,
    StudyInstanceUid,
    StudyDate,
    StudyTime,
    StudyDescription,
    /// Any primary series of the study has a matching Modality.
    ModalitiesInStudy,
    SeriesInstanceUid,
    Modality,
    SeriesNumber,
    BodyPartExamined,
    ReferringPhysicianName,
    SeriesDescription,
    SeriesDate,
    SopClassUid,
    SopInstanceUid,
    InstanceNumber,
}

/// How one QIDO-RS condition matches (PS3.4 C.2.2.2; values as the client sent them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DicomMatch {
    /// Equal, case-sensitive.
    Exact(String),
    /// `*` (any run) and `?` (one character), case-sensitive.
    Wildcard(String),
    /// Equal to one of the values.
    AnyOf(Vec<String>),
    /// Inclusive range of normalised values: DA `YYYYMMDD`, TM `HHMMSSffffff` (12 digits);
    /// `None` is an open end.
    Range(Option<String>, Option<String>),
    /// PN fuzzy matching: some name component (split at `^`, `=` and spaces) starts with the
    /// value, case-insensitively (`*` / `?` allowed inside).
    Fuzzy(String),
}

/// One condition of a QIDO-RS query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DicomCondition {
    pub attribute: DicomAttribute,
    pub matching: DicomMatch,
}

/// A QIDO-RS query: every condition must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DicomQuery {
    pub conditions: Vec<DicomCondition>,
}

/// A study as QIDO-RS sees it: the live primary image sets sharing a StudyInstanceUID.
#[derive(Debug, Clone, PartialEq)]
pub struct DicomStudy {
    /// Patient and study attributes of the most recently updated primary image set of the
    /// study (its series attributes are not the study's).
    pub tags: ImageSetDicomTags,
    pub attributes: QidoAttributes,
    /// Distinct modalities of the study's primary image sets, sorted.
    pub modalities: Vec<String>,
    pub series: i64,
    pub instances: i64,
    /// The latest `updated_at` of the study's primary image sets.
    pub updated_at: Millis,
}

/// A series as QIDO-RS sees it: one live primary image set.
#[derive(Debug, Clone, PartialEq)]
pub struct DicomSeries {
    pub image_set_id: ImageSetId,
    pub tags: ImageSetDicomTags,
    pub attributes: QidoAttributes,
    pub instances: i64,
    pub updated_at: Millis,
}

/// An instance as QIDO-RS sees it: one instance of a live primary image set's latest content.
#[derive(Debug, Clone, PartialEq)]
pub struct DicomInstance {
    pub image_set_id: ImageSetId,
    /// The document holding the instance (the image set's latest content).
    pub metadata_key: Option<String>,
    /// The image set's own values (its study and series).
    pub tags: ImageSetDicomTags,
    pub attributes: QidoAttributes,
    pub instance: QidoInstance,
    /// Instances of its series (image set).
    pub series_instances: i64,
    /// Its study's counts and modalities (over the study's live primary image sets).
    pub study: DicomStudyCounts,
    pub updated_at: Millis,
}

/// Series and instance counts and modalities of a study: its live primary image sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DicomStudyCounts {
    /// Distinct modalities, sorted.
    pub modalities: Vec<String>,
    pub series: i64,
    pub instances: i64,
}

/// Which instances a QIDO-RS instance search walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceScope<'a> {
    /// `/instances`: the whole data store, by InstanceNumber.
    Datastore,
    /// `/studies/{s}/instances`: one study series by series (most recently updated first, ties
    /// by image set id), each by InstanceNumber.
    Study(&'a str),
    /// `/studies/{s}/series/{se}/instances`: one series, by InstanceNumber.
    Series(&'a str, &'a str),
}

/// An image set whose latest content is not in the QIDO-RS index yet (written before schema
/// v7): the service reads its document and calls `write_qido_index`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnindexedImageSet {
    pub datastore_id: DatastoreId,
    pub id: ImageSetId,
    pub version: i64,
    pub metadata_key: String,
}

/// The relational half of storage. Implementations must be safe to share between several
/// Lightbox processes: every guarantee below is enforced by the database, not process memory.
#[async_trait]
pub trait Catalog: Send + Sync + 'static {
    /// A human-readable backend name for logs ("sqlite", "postgres").
    fn backend(&self) -> &'static str;

    /// Returns the value of a setting, creating it with `init` if absent (first writer wins,
    /// so every node sees the same value).
    async fn setting_or_init(&self, name: &str, init: &str) -> Result<String, StorageError>;

    /// Inserts a data store unless one with the same client token exists; enforces the quota
    /// atomically with the insert.
    async fn create_datastore(
        &self,
        new: NewDatastore,
    ) -> Result<CreateDatastoreOutcome, StorageError>;

    async fn get_datastore(&self, id: &DatastoreId) -> Result<Option<Datastore>, StorageError>;

    /// Data stores newest first (in creation order), optionally of one status.
    async fn list_datastores(
        &self,
        status: Option<DatastoreStatus>,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Page<Datastore>, StorageError>;

    /// Compare-and-set of a data store's status: applies only if the current status is one of
    /// `from`. Returns the updated row, or `None` if absent or not in `from`.
    async fn transition_datastore(
        &self,
        id: &DatastoreId,
        from: &[DatastoreStatus],
        to: DatastoreStatus,
        now: Millis,
    ) -> Result<Option<Datastore>, StorageError>;

    /// Moves an ACTIVE or CREATE_FAILED data store to DELETING if it holds no live image set,
    /// and enqueues `job` (the work that finishes the deletion), in one transaction: an image
    /// set cannot slip in between the check and the change, and no DELETING data store is ever
    /// left without its job.
    async fn begin_delete_datastore(
        &self,
        id: &DatastoreId,
        now: Millis,
        job: NewJob,
    ) -> Result<DeleteDatastoreOutcome, StorageError>;

    /// Enqueues a job; returns `false` if a job with that id already exists.
    async fn enqueue_job(&self, job: NewJob) -> Result<bool, StorageError>;

    /// Inserts `job` already claimed: RUNNING, attempts 1, leased to `lease.owner` until
    /// `lease.now + lease.duration` (as `claim_job` leaves it), for work the caller starts at
    /// once and keeps leased while it runs (renew and finish as a claimed job). If the holder
    /// dies, the job is claimed again once the lease expires, so its kind's worker can recover
    /// what was left. An id that exists is an error.
    async fn start_leased_job(&self, job: &NewJob, lease: &Lease<'_>) -> Result<(), StorageError>;

    /// Atomically claims the oldest claimable job of one of `kinds`: QUEUED and due, or RUNNING
    /// with an expired lease (its owner died). Exactly one caller gets each claim, whichever
    /// process it runs in. A job whose lease expired after `max_attempts` claims is marked
    /// FAILED instead.
    async fn claim_job(
        &self,
        kinds: &[&str],
        lease: &Lease<'_>,
    ) -> Result<Option<Job>, StorageError>;

    /// Extends the lease of a job the caller holds; `false` if the lease was lost.
    async fn renew_job_lease(&self, id: &str, lease: &Lease<'_>) -> Result<bool, StorageError>;

    /// Deletes up to `limit` SUCCEEDED or FAILED jobs last updated before `finished_before`
    /// (the retention sweep); returns how many. Queued and running jobs are never deleted.
    async fn purge_finished_jobs(
        &self,
        finished_before: Millis,
        limit: u32,
    ) -> Result<u64, StorageError>;

    /// Records the outcome of a job the caller holds; `false` if the lease was lost (the
    /// outcome is then discarded: another owner runs or ran the job).
    async fn finish_job(
        &self,
        id: &str,
        owner: &str,
        outcome: &JobOutcome,
        now: Millis,
    ) -> Result<bool, StorageError>;

    async fn get_job(&self, id: &str) -> Result<Option<Job>, StorageError>;

    /// Inserts an image set record and its version row, without content (a record seeded by
    /// tests of operations that need one). Fails unless the data store is ACTIVE.
    async fn insert_image_set(&self, image_set: &ImageSet) -> Result<(), StorageError>;

    async fn get_image_set(
        &self,
        datastore_id: &DatastoreId,
        id: &ImageSetId,
    ) -> Result<Option<ImageSet>, StorageError>;

    /// Adds or overwrites tags on a live resource; at most `max_tags` may remain afterwards.
    async fn tag_resource(
        &self,
        resource: &ResourceRef,
        tags: &[(String, String)],
        max_tags: usize,
    ) -> Result<TagOutcome, StorageError>;

    /// Removes tags (absent keys are ignored) from a live resource.
    async fn untag_resource(
        &self,
        resource: &ResourceRef,
        keys: &[String],
    ) -> Result<TagOutcome, StorageError>;

    /// Tags of a live resource sorted by key, or `None` if the resource does not exist.
    async fn list_tags(
        &self,
        resource: &ResourceRef,
    ) -> Result<Option<Vec<(String, String)>>, StorageError>;

    /// Inserts an import job and enqueues its work in one transaction, unless the client token
    /// was used in this data store before; requires an ACTIVE data store and fewer than
    /// `max_running` unfinished jobs in it.
    async fn create_import_job(
        &self,
        job: &ImportJob,
        work: NewJob,
        max_running: u32,
    ) -> Result<CreateImportJobOutcome, StorageError>;

    async fn get_import_job(
        &self,
        datastore_id: &DatastoreId,
        id: &str,
    ) -> Result<Option<ImportJob>, StorageError>;

    /// Import jobs of a data store, newest first, optionally of one status.
    async fn list_import_jobs(
        &self,
        datastore_id: &DatastoreId,
        status: Option<ImportJobStatus>,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Page<ImportJob>, StorageError>;

    /// Compare-and-set of an import job's status (and message; `ended_at` set on final states).
    async fn transition_import_job(
        &self,
        datastore_id: &DatastoreId,
        id: &str,
        from: &[ImportJobStatus],
        to: ImportJobStatus,
        message: Option<&str>,
        now: Millis,
    ) -> Result<Option<ImportJob>, StorageError>;

    /// Records blob keys about to be written by `owner`, before they are written.
    async fn register_pending_blobs(
        &self,
        owner: &str,
        keys: &[String],
        now: Millis,
    ) -> Result<(), StorageError>;

    /// Blob keys `owner` registered that no committed record took over.
    async fn pending_blobs(&self, owner: &str) -> Result<Vec<String>, StorageError>;

    /// Forgets pending blob records (after their blobs were deleted).
    async fn forget_pending_blobs(&self, keys: &[String]) -> Result<(), StorageError>;

    /// Creates an image set at version 1 with its frames in one transaction (the data store
    /// must be ACTIVE); a primary one only if its series has no live primary image set yet.
    /// Pending blobs named by the new records stop being pending.
    async fn create_image_set(
        &self,
        new: &NewImageSet,
    ) -> Result<CreateImageSetOutcome, StorageError>;

    /// The live primary image set of a series, if any.
    async fn find_primary_image_set(
        &self,
        datastore_id: &DatastoreId,
        study_instance_uid: &str,
        series_instance_uid: &str,
    ) -> Result<Option<PrimaryImageSet>, StorageError>;

    /// Starts version `expected_latest + 1` of an ACTIVE image set whose latest version is
    /// `expected_latest`: the image set becomes LOCKED with `status` until
    /// `complete_image_set_version`. Compare-and-set: anything else is `Conflict`.
    async fn begin_image_set_version(
        &self,
        datastore_id: &DatastoreId,
        id: &ImageSetId,
        expected_latest: i64,
        status: ImageSetWorkflowStatus,
        job_id: &str,
        now: Millis,
    ) -> Result<BeginVersionOutcome, StorageError>;

    /// Ends a version started by `begin_image_set_version`; `false` if that version is not
    /// the LOCKED latest one (already completed).
    async fn complete_image_set_version(
        &self,
        datastore_id: &DatastoreId,
        id: &ImageSetId,
        version: i64,
        completion: &VersionCompletion,
        now: Millis,
    ) -> Result<bool, StorageError>;

    /// Starts a change in one transaction: every lock (compare-and-set on each image set's
    /// latest version; LOCKED, DELETED or moved on is `Conflict`), the created image set (a
    /// primary one only if its series has none), and the job that finishes the work.
    async fn begin_image_set_change(
        &self,
        change: &ImageSetChange,
    ) -> Result<BeginChangeOutcome, StorageError>;

    /// Ends the versions of a change and releases its read-only locks in one transaction;
    /// `false` (nothing applied) if a version is no longer the LOCKED latest one.
    async fn finish_image_set_change(
        &self,
        datastore_id: &DatastoreId,
        end: &ChangeEnd,
    ) -> Result<bool, StorageError>;

    /// DELETING -> DELETED (`deletedAt` now) in one transaction: the image set's frames and
    /// documents stop being referenced, its tags go, and blobs no other image set refers to
    /// become pending blobs of `owner` (for the caller to delete). `false` if the image set is
    /// not LOCKED with DELETING.
    async fn finish_delete_image_set(
        &self,
        datastore_id: &DatastoreId,
        id: &ImageSetId,
        owner: &str,
        now: Millis,
    ) -> Result<bool, StorageError>;

    /// The live primary image sets of a study.
    async fn primary_image_sets_of_study(
        &self,
        datastore_id: &DatastoreId,
        study_instance_uid: &str,
    ) -> Result<Vec<ImageSet>, StorageError>;

    /// Versions of any image set written by `job_id`, oldest first.
    async fn image_set_versions_by_job(
        &self,
        job_id: &str,
    ) -> Result<Vec<(DatastoreId, ImageSetVersion)>, StorageError>;

    /// One version of an image set.
    async fn get_image_set_version(
        &self,
        datastore_id: &DatastoreId,
        id: &ImageSetId,
        version: i64,
    ) -> Result<Option<ImageSetVersion>, StorageError>;

    /// Frames live in `version` of an image set.
    async fn list_image_frames(
        &self,
        datastore_id: &DatastoreId,
        id: &ImageSetId,
        version: i64,
    ) -> Result<Vec<FrameRecord>, StorageError>;

    /// One page of a data store's live (not DELETED) image sets matching `search`, from
    /// indexes only.
    async fn search_image_sets(
        &self,
        datastore_id: &DatastoreId,
        search: &ImageSetSearch,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Page<ImageSetSummary>, StorageError>;

    /// One page of an image set's versions, newest first.
    async fn list_image_set_versions(
        &self,
        datastore_id: &DatastoreId,
        id: &ImageSetId,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Page<ImageSetVersion>, StorageError>;

    /// QIDO-RS studies of a data store matching `query`, most recently updated first (ties by
    /// StudyInstanceUID), `limit` of them after skipping `offset`; from indexes only.
    async fn search_dicom_studies(
        &self,
        datastore_id: &DatastoreId,
        query: &DicomQuery,
        offset: u64,
        limit: u32,
    ) -> Result<Vec<DicomStudy>, StorageError>;

    /// QIDO-RS series (live primary image sets) of a data store, or of one study, matching
    /// `query` (study attributes on each image set's own values), by SeriesNumber ascending
    /// (absent last; ties by SeriesInstanceUID).
    async fn search_dicom_series(
        &self,
        datastore_id: &DatastoreId,
        study_instance_uid: Option<&str>,
        query: &DicomQuery,
        offset: u64,
        limit: u32,
    ) -> Result<Vec<DicomSeries>, StorageError>;

    /// QIDO-RS instances of live primary image sets in `scope` matching `query` (study and
    /// series attributes on each image set's own values), in the scope's order (InstanceNumber
    /// ascending, absent last, ties by SOPInstanceUID then image set). The instance attributes
    /// (SOPClassUID, SOPInstanceUID, InstanceNumber) are match keys of this search only.
    async fn search_dicom_instances(
        &self,
        datastore_id: &DatastoreId,
        scope: InstanceScope<'_>,
        query: &DicomQuery,
        offset: u64,
        limit: u32,
    ) -> Result<Vec<DicomInstance>, StorageError>;

    /// Up to `limit` image sets (not DELETED, with a document) whose QIDO-RS index is not
    /// written yet.
    async fn unindexed_image_sets(
        &self,
        limit: u32,
    ) -> Result<Vec<UnindexedImageSet>, StorageError>;

    /// Writes the QIDO-RS index of an image set read from `metadata_key`, if that is still its
    /// latest content (`image_set.version` and the key unchanged); `false` otherwise (newer
    /// content was indexed when it was written).
    async fn write_qido_index(
        &self,
        image_set: &UnindexedImageSet,
        index: &QidoIndex,
    ) -> Result<bool, StorageError>;

    /// An image set and, if it is live in its latest version, one of its frames.
    async fn get_image_frame(
        &self,
        datastore_id: &DatastoreId,
        id: &ImageSetId,
        frame_id: &str,
    ) -> Result<Option<(ImageSet, Option<FrameRecord>)>, StorageError>;

    /// Records a touch (storage tiers) unless one at most `granularity` before `now` is
    /// recorded already; `true` if written.
    async fn touch_image_set(
        &self,
        datastore_id: &DatastoreId,
        id: &ImageSetId,
        now: Millis,
        granularity: std::time::Duration,
    ) -> Result<bool, StorageError>;
}
