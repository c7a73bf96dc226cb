//! Lightbox's domain model: identifiers, data stores, image sets, import jobs,
//! their states, and ARNs.
//!
//! Architecture invariant: this crate does no IO and knows nothing of HTTP, JSON wire names,
//! SQL or object storage. It is the vocabulary every other crate shares.

pub mod arn;
pub mod datastore;
pub mod ids;
pub mod image_set;
pub mod import_job;
pub mod time;

pub use arn::{ResourceArn, ResourceRef};
pub use datastore::{Datastore, DatastoreStatus, LosslessStorageFormat};
pub use ids::{DatastoreId, ImageSetId, InvalidId};
pub use image_set::{
    ImageSet, ImageSetDicomTags, ImageSetState, ImageSetWorkflowStatus, QidoAttributes, QidoIndex,
    QidoInstance, StorageTier, study_date_time_key,
};
pub use import_job::{ImportJob, ImportJobStatus, new_import_job_id};
pub use time::Millis;
