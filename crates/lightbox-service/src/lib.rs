//! Lightbox's operations: one async function per HealthImaging operation, over the Catalog and
//! BlobStore. This is the only place where storage outcomes become domain errors.
//!
//! Architecture invariant: no HTTP, no JSON member names, no status codes here. Inputs are
//! already validated against the service model by the API layer; this layer enforces the rules
//! the model cannot express (state machines, quotas, idempotency, existence).

mod changes;
mod clock;
mod datastores;
mod dicomweb;
mod error;
mod image_sets;
mod import;
mod import_jobs;
mod jobs;
mod qido;
mod stow;
mod tags;
mod token;
mod wado_instance;

pub use changes::{CopyInput, CopyOutcome, MetadataUpdates, UpdateInput};
pub use clock::{Clock, OffsetClock};
pub use datastores::CreateDatastoreInput;
pub use dicomweb::{InstanceFrames, PixelAttributes, SeriesRef, parse_frame_list};
pub use error::ServiceError;
pub use image_sets::{BlobStream, FrameRead, ImageSetView, SearchPage, TOUCH_GRANULARITY};
pub use import_jobs::{StartImportJobInput, split_s3_uri};
pub use jobs::default_poll_interval;
pub use lightbox_storage::{
    FrameRecord, ImageSetFilter, ImageSetSearch, ImageSetSortField, ImageSetSummary,
    ImageSetTextField, ImageSetVersion,
};
pub use qido::{
    DicomInstance, DicomSeries, DicomStudy, InstanceResult, QIDO_MAX_INCLUDE_FIELDS,
    QIDO_MAX_LIMIT, QidoInclude, QidoLevel, QidoPage, QidoSearch, parse_qido,
};
pub use stow::{StowFailure, StowLimits, StowRequest, StowResult, StowStored, failure_reason};
pub use wado_instance::{InstanceEncoding, InstanceFile, InstanceSource};

use std::sync::Arc;
use std::time::Duration;

use lightbox_domain::{DatastoreId, ResourceArn, ResourceRef};
use lightbox_storage::{BlobStore, Catalog};

/// Settings that shape the service's behaviour.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Region named in ARNs.
    pub region: String,
    /// Account id named in ARNs.
    pub account_id: String,
    /// Maximum number of data stores that are not DELETED.
    pub max_datastores: u32,
    /// Maximum number of tags on one resource.
    pub max_tags_per_resource: usize,
    /// How long a data store stays CREATING / DELETING before it becomes ACTIVE / DELETED.
    pub transition_delay: Duration,
    /// This node's name in job leases (unique per process).
    pub node_id: String,
    /// How long a claimed job stays leased without a heartbeat (renewed every third of it).
    pub job_lease: Duration,
    /// A job whose lease expired this many times is failed instead of retried.
    pub job_max_attempts: i64,
    /// How often idle workers look for jobs.
    pub job_poll_interval: Duration,
    /// Jobs run at once on this node.
    pub worker_concurrency: usize,
    /// DICOM import limits and parallelism.
    pub import: ImportConfig,
    /// UpdateImageSetMetadata: largest total size of the decoded update documents
    /// (HealthImaging's payload quota, 10 KB).
    pub max_update_payload_bytes: u64,
    /// CopyImageSet: most image frames one copy may select.
    pub max_copy_frames: usize,
    /// Finished jobs are kept this long (their results say what happened), then purged.
    pub job_retention: Duration,
}

/// DICOM import limits (HealthImaging's quotas by default) and parallelism.
#[derive(Debug, Clone)]
pub struct ImportConfig {
    /// Import jobs SUBMITTED or IN_PROGRESS per data store.
    pub max_running_jobs: u32,
    /// Objects under one job's input prefix.
    pub max_files: u64,
    /// Total bytes under one job's input prefix.
    pub max_total_bytes: u64,
    /// Size of one P10 file.
    pub max_file_bytes: u64,
    /// Distinct folders under one job's input prefix.
    pub max_nested_folders: u64,
    /// Size of one image set's metadata document (uncompressed JSON).
    pub max_metadata_bytes: u64,
    /// Memory the files being imported at once may take on this node (a file needs about
    /// three times its size: input, decoded pixels, encoded frames).
    pub memory_budget: u64,
    /// Files parsed and transcoded at once on this node.
    pub file_concurrency: usize,
    /// Largest STOW-RS request body (HealthImaging's 1 GB); each part is at most
    /// `max_file_bytes`.
    pub stow_max_body_bytes: u64,
}

impl Default for ImportConfig {
    fn default() -> Self {
        const GIB: u64 = 1 << 30;
        Self {
            max_running_jobs: 100,
            max_files: 5000,
            max_total_bytes: 10 * GIB,
            max_file_bytes: 10 * GIB,
            max_nested_folders: 10_000,
            max_metadata_bytes: 50 << 20,
            memory_budget: 2 * GIB,
            file_concurrency: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            stow_max_body_bytes: GIB,
        }
    }
}

/// A process-unique node name: host name (if known), process id and a random suffix.
pub fn default_node_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &random[..8])
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            max_datastores: 100,
            max_tags_per_resource: 50,
            transition_delay: Duration::from_millis(500),
            node_id: default_node_id(),
            job_lease: Duration::from_secs(30),
            job_max_attempts: 5,
            job_poll_interval: jobs::default_poll_interval(Duration::from_millis(500)),
            worker_concurrency: 4,
            import: ImportConfig::default(),
            max_update_payload_bytes: 10 * 1024,
            max_copy_frames: 1000,
            job_retention: Duration::from_secs(7 * 86_400),
        }
    }
}

/// The operations, shared by every front end (rest-json API now; DICOMweb later).
pub struct Service {
    catalog: Arc<dyn Catalog>,
    blobs: Arc<dyn BlobStore>,
    config: ServiceConfig,
    clock: Arc<dyn Clock>,
    tokens: token::TokenSealer,
    /// Where import jobs read inputs and write outputs (built-in or external S3).
    s3: Option<Arc<dyn lightbox_s3::S3Access>>,
    /// Wakes this node's job workers when a request enqueued work.
    wake: tokio::sync::Notify,
    /// Parsed metadata documents of recent DICOMweb reads, by blob key.
    documents: dicomweb::DocumentCache,
    /// Memory (MiB permits) STOW-RS instances being processed take on this node.
    stow_memory: Arc<tokio::sync::Semaphore>,
}

impl Service {
    /// Builds the service; reads (or creates) the cluster-wide pagination token key.
    pub async fn new(
        catalog: Arc<dyn Catalog>,
        blobs: Arc<dyn BlobStore>,
        config: ServiceConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ServiceError> {
        let tokens = token::TokenSealer::load(&*catalog).await?;
        Ok(Self {
            catalog,
            blobs,
            clock,
            tokens,
            s3: None,
            wake: tokio::sync::Notify::new(),
            documents: dicomweb::DocumentCache::default(),
            stow_memory: stow::stow_memory(config.import.memory_budget),
            config,
        })
    }

    /// Gives import jobs their S3 access (the built-in endpoint's buckets or an external S3).
    pub fn with_s3_access(mut self, s3: Arc<dyn lightbox_s3::S3Access>) -> Self {
        self.s3 = Some(s3);
        self
    }

    /// The ARN of a data store or image set in this deployment's region and account.
    pub fn arn(&self, resource: ResourceRef) -> String {
        ResourceArn::new(&self.config.region, &self.config.account_id, resource).to_string()
    }

    pub fn datastore_arn(&self, id: &DatastoreId) -> String {
        self.arn(ResourceRef::Datastore(id.clone()))
    }
}
