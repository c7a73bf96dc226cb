//! The Catalog interface: every relational read and write Lightbox makes, one transaction each.

use async_trait::async_trait;
use lightbox_domain::{
    Datastore, DatastoreId, DatastoreStatus, ImageSet, ImageSetId, Millis, ResourceRef,
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

    /// Inserts an image set record (its first version). Fails if the data store is unknown.
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
}
