//! Lightbox's operations: one async function per HealthImaging operation, over the Catalog and
//! BlobStore. This is the only place where storage outcomes become domain errors.
//!
//! Architecture invariant: no HTTP, no JSON member names, no status codes here. Inputs are
//! already validated against the service model by the API layer; this layer enforces the rules
//! the model cannot express (state machines, quotas, idempotency, existence).

mod clock;
mod datastores;
mod error;
mod jobs;
mod tags;
mod token;

pub use clock::{Clock, SystemClock};
pub use datastores::CreateDatastoreInput;
pub use error::ServiceError;
pub use jobs::default_poll_interval;

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
            config,
            clock,
            tokens,
        })
    }

    /// The ARN of a data store or image set in this deployment's region and account.
    pub fn arn(&self, resource: ResourceRef) -> String {
        ResourceArn::new(&self.config.region, &self.config.account_id, resource).to_string()
    }

    pub fn datastore_arn(&self, id: &DatastoreId) -> String {
        self.arn(ResourceRef::Datastore(id.clone()))
    }
}
