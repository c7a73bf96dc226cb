//! Lightbox storage: the `Catalog` (relational metadata) and `BlobStore` (frames, documents)
//! interfaces, their backends, and a conformance suite for each interface.
//!
//! Architecture invariant: nothing above this crate sees SQL, connection pools, object-store
//! paths or backend error types. The interfaces speak in whole operations: each method is one
//! transaction that either fully applies or does not, compare-and-set is explicit in the method
//! contract, and pagination uses opaque cursors.

pub mod blob;
pub mod catalog;
mod error;
pub mod sql;
pub mod testsuite;

pub use blob::{BlobStore, ObjectBlobStore};
pub use catalog::{
    BeginChangeOutcome, BeginVersionOutcome, Catalog, ChangeEnd, ChangeLock,
    CreateDatastoreOutcome, CreateImageSetOutcome, CreateImportJobOutcome, Cursor,
    DeleteDatastoreOutcome, DicomAttribute, DicomCondition, DicomInstance, DicomMatch, DicomQuery,
    DicomSeries, DicomStudy, DicomStudyCounts, FrameRecord, ImageSetChange, ImageSetContent,
    ImageSetFilter, ImageSetSearch, ImageSetSortField, ImageSetSummary, ImageSetTextField,
    ImageSetVersion, InstanceScope, Job, JobOutcome, JobState, Lease, NewDatastore, NewImageSet,
    NewJob, NewLockedImageSet, Page, PrimaryImageSet, TagOutcome, UnindexedImageSet,
    VersionCompletion,
};
pub use error::StorageError;
pub use sql::SqlCatalog;
