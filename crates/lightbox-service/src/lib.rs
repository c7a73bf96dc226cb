//! Lightbox's operations: one async function per HealthImaging operation, over the Catalog and
//! BlobStore. This is the only place where storage outcomes become domain errors.
//!
//! Architecture invariant: no HTTP, no JSON member names, no status codes here. Inputs are
//! already validated against the service model by the API layer; this layer enforces the rules
//! the model cannot express (state machines, quotas, idempotency, existence).

mod clock;
mod datastores;
mod error;
mod tags;
mod token;

pub use clock::{Clock, SystemClock};
pub use datastores::CreateDatastoreInput;
pub use error::ServiceError;

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
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            max_datastores: 100,
            max_tags_per_resource: 50,
            transition_delay: Duration::from_millis(500),
        }
    }
}

/// The operations, shared by every front end (rest-json API now; DICOMweb later).
pub struct Service {
    catalog: Arc<dyn Catalog>,
    #[allow(dead_code)] // frames and documents arrive with the import issue
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

    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// The ARN of a data store or image set in this deployment's region and account.
    pub fn arn(&self, resource: ResourceRef) -> String {
        ResourceArn::new(&self.config.region, &self.config.account_id, resource).to_string()
    }

    pub fn datastore_arn(&self, id: &DatastoreId) -> String {
        self.arn(ResourceRef::Datastore(id.clone()))
    }

    /// Runs background work (data store state transitions) until `shutdown` resolves.
    pub async fn run_background(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let period = (self.config.transition_delay / 4)
            .clamp(Duration::from_millis(25), Duration::from_secs(1));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(e) = self.complete_due_transitions().await {
                        tracing::warn!(error = %e, "data store transitions failed; will retry");
                    }
                }
                _ = shutdown.changed() => break,
            }
        }
    }
}
