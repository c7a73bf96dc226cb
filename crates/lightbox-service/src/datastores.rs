//! Data store operations: CreateDatastore, GetDatastore, ListDatastores, DeleteDatastore, and
//! the background completion of their asynchronous state transitions.

use lightbox_domain::{Datastore, DatastoreId, DatastoreStatus, LosslessStorageFormat};
use lightbox_storage::{CreateDatastoreOutcome, DeleteDatastoreOutcome, NewDatastore, Page};
use sha2::{Digest, Sha256};

use crate::{Service, ServiceError, jobs};

/// CreateDatastore's input, already validated against the model.
#[derive(Debug, Clone, Default)]
pub struct CreateDatastoreInput {
    pub name: Option<String>,
    pub client_token: String,
    pub tags: Vec<(String, String)>,
    pub kms_key_arn: Option<String>,
    pub lambda_authorizer_arn: Option<String>,
    pub lossless_storage_format: Option<LosslessStorageFormat>,
}

impl CreateDatastoreInput {
    /// A digest of everything but the token: equal digests mean "the same request".
    fn fingerprint(&self) -> String {
        let mut tags = self.tags.clone();
        tags.sort();
        let canonical = serde_json::json!({
            "name": self.name,
            "tags": tags,
            "kms": self.kms_key_arn,
            "lambda": self.lambda_authorizer_arn,
            "format": self.lossless_storage_format.map(|f| f.as_str()),
        });
        hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
    }
}

pub(crate) fn not_found(id: &DatastoreId) -> ServiceError {
    ServiceError::NotFound(format!("Datastore {id} does not exist"))
}

impl Service {
    pub async fn create_datastore(
        &self,
        input: CreateDatastoreInput,
    ) -> Result<Datastore, ServiceError> {
        if input.tags.len() > self.config.max_tags_per_resource {
            return Err(ServiceError::Validation(format!(
                "1 validation error detected: Value at 'tags' failed to satisfy constraint: \
                 a resource can have at most {} tags",
                self.config.max_tags_per_resource
            )));
        }
        let now = self.clock.now();
        let id = DatastoreId::generate();
        let fingerprint = input.fingerprint();
        let datastore = Datastore {
            name: input.name.clone().unwrap_or_else(|| id.to_string()),
            id,
            status: DatastoreStatus::Creating,
            kms_key_arn: input.kms_key_arn,
            lambda_authorizer_arn: input.lambda_authorizer_arn,
            lossless_storage_format: input.lossless_storage_format.unwrap_or_default(),
            created_at: now,
            updated_at: now,
            client_token: input.client_token,
            request_fingerprint: fingerprint.clone(),
        };
        let outcome = self
            .catalog
            .create_datastore(NewDatastore {
                job: Some(jobs::datastore_job(
                    jobs::DATASTORE_ACTIVATE,
                    &datastore.id,
                    now.plus(self.config.transition_delay),
                )),
                datastore,
                quota: self.config.max_datastores,
                tags: input.tags,
            })
            .await?;
        match outcome {
            CreateDatastoreOutcome::Created(d) => {
                tracing::info!(datastore_id = %d.id, "data store created");
                Ok(d)
            }
            CreateDatastoreOutcome::ExistingToken(d) if d.request_fingerprint == fingerprint => Ok(d),
            CreateDatastoreOutcome::ExistingToken(_) => Err(ServiceError::Conflict(
                "The clientToken was already used for a CreateDatastore request with different parameters"
                    .into(),
            )),
            CreateDatastoreOutcome::QuotaExceeded => Err(ServiceError::QuotaExceeded(format!(
                "The maximum number of data stores ({}) has been reached",
                self.config.max_datastores
            ))),
        }
    }

    pub async fn get_datastore(&self, id: &DatastoreId) -> Result<Datastore, ServiceError> {
        self.catalog
            .get_datastore(id)
            .await?
            .ok_or_else(|| not_found(id))
    }

    /// One page of data stores, newest first; returns the items and the next page's token.
    pub async fn list_datastores(
        &self,
        status: Option<DatastoreStatus>,
        next_token: Option<&str>,
        max_results: u32,
    ) -> Result<(Vec<Datastore>, Option<String>), ServiceError> {
        const LISTING: &str = "ListDatastores";
        let filters = status.map(|s| s.as_str()).unwrap_or("");
        let cursor = next_token
            .map(|t| self.tokens.open(LISTING, filters, t))
            .transpose()?;
        let Page { items, next } = self
            .catalog
            .list_datastores(status, cursor.as_ref(), max_results)
            .await
            .map_err(|e| match e {
                lightbox_storage::StorageError::InvalidCursor => crate::token::invalid(),
                other => other.into(),
            })?;
        let token = next.map(|c| self.tokens.seal(LISTING, filters, &c));
        Ok((items, token))
    }

    pub async fn delete_datastore(&self, id: &DatastoreId) -> Result<Datastore, ServiceError> {
        let now = self.clock.now();
        let job = jobs::datastore_job(
            jobs::DATASTORE_DELETE,
            id,
            now.plus(self.config.transition_delay),
        );
        match self.catalog.begin_delete_datastore(id, now, job).await? {
            DeleteDatastoreOutcome::Deleting(d) => Ok(d),
            DeleteDatastoreOutcome::NotFound => Err(not_found(id)),
            DeleteDatastoreOutcome::NotEmpty => Err(ServiceError::Conflict(format!(
                "Datastore {id} still contains image sets; delete them before deleting the data store"
            ))),
            DeleteDatastoreOutcome::WrongStatus(s) => Err(ServiceError::Conflict(format!(
                "Datastore {id} is {} and cannot be deleted now",
                s.as_str()
            ))),
        }
    }
}
