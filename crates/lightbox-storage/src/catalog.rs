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

    /// Data stores newest first (by creation time, then id), optionally of one status.
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
    /// in one transaction (an image set cannot slip in between the check and the change).
    async fn begin_delete_datastore(
        &self,
        id: &DatastoreId,
        now: Millis,
    ) -> Result<DeleteDatastoreOutcome, StorageError>;

    /// Data stores whose status is one of `statuses` and was last changed at or before `before`.
    async fn datastores_in_status(
        &self,
        statuses: &[DatastoreStatus],
        before: Millis,
    ) -> Result<Vec<Datastore>, StorageError>;

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
