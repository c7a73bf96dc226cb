//! DICOM import job operations: StartDICOMImportJob, GetDICOMImportJob, ListDICOMImportJobs.
//! The work itself runs on the job queue (`import.rs`).

use lightbox_domain::{DatastoreId, ImportJob, ImportJobStatus, new_import_job_id};
use lightbox_storage::{CreateImportJobOutcome, NewJob, Page};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::{Service, ServiceError, datastores};

/// Queue kind of the work that runs an import job.
pub(crate) const DICOM_IMPORT: &str = "dicom.import";

/// StartDICOMImportJob's input, already validated against the model.
#[derive(Debug, Clone)]
pub struct StartImportJobInput {
    pub datastore_id: DatastoreId,
    pub job_name: Option<String>,
    pub data_access_role_arn: String,
    pub client_token: String,
    pub input_s3_uri: String,
    pub output_s3_uri: String,
    pub input_owner_account_id: Option<String>,
    /// `importConfiguration` as received (JSON text).
    pub import_configuration: Option<String>,
}

impl StartImportJobInput {
    fn fingerprint(&self) -> String {
        let canonical = json!({
            "name": self.job_name,
            "role": self.data_access_role_arn,
            "in": self.input_s3_uri,
            "out": self.output_s3_uri,
            "owner": self.input_owner_account_id,
            "config": self.import_configuration,
        });
        hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
    }
}

/// `s3://bucket/prefix` → (bucket, prefix). The model's pattern was checked by the API layer.
pub fn split_s3_uri(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("s3://")?;
    Some(match rest.split_once('/') {
        Some((b, p)) => (b, p),
        None => (rest, ""),
    })
}

pub(crate) fn import_job_not_found(id: &str) -> ServiceError {
    ServiceError::NotFound(format!("Import job {id} does not exist"))
}

impl Service {
    pub async fn start_dicom_import_job(
        &self,
        input: StartImportJobInput,
    ) -> Result<ImportJob, ServiceError> {
        let now = self.clock.now();
        let id = new_import_job_id();
        let out = if input.output_s3_uri.ends_with('/') {
            input.output_s3_uri.clone()
        } else {
            format!("{}/", input.output_s3_uri)
        };
        let fingerprint = input.fingerprint();
        let job = ImportJob {
            datastore_id: input.datastore_id.clone(),
            output_s3_uri: format!("{out}{}-DicomImport-{id}/", input.datastore_id),
            name: input.job_name.clone(),
            status: ImportJobStatus::Submitted,
            data_access_role_arn: input.data_access_role_arn.clone(),
            input_s3_uri: input.input_s3_uri.clone(),
            input_owner_account_id: input.input_owner_account_id.clone(),
            import_configuration: input.import_configuration.clone(),
            message: None,
            submitted_at: now,
            ended_at: None,
            updated_at: now,
            client_token: input.client_token.clone(),
            request_fingerprint: fingerprint.clone(),
            id,
        };
        let work = NewJob {
            id: format!("{DICOM_IMPORT}/{}/{}", job.datastore_id, job.id),
            kind: DICOM_IMPORT.into(),
            payload: json!({ "datastoreId": job.datastore_id.as_str(), "jobId": job.id })
                .to_string(),
            not_before: now,
        };
        match self
            .catalog
            .create_import_job(&job, work, self.config.import.max_running_jobs)
            .await?
        {
            CreateImportJobOutcome::Created(j) => {
                tracing::info!(datastore_id = %j.datastore_id, job_id = %j.id, "import job submitted");
                Ok(j)
            }
            CreateImportJobOutcome::ExistingToken(j) if j.request_fingerprint == fingerprint => {
                Ok(j)
            }
            CreateImportJobOutcome::ExistingToken(_) => Err(ServiceError::Conflict(
                "The clientToken was already used for a StartDICOMImportJob request with different parameters"
                    .into(),
            )),
            CreateImportJobOutcome::DatastoreNotFound => {
                Err(datastores::not_found(&input.datastore_id))
            }
            CreateImportJobOutcome::DatastoreNotActive(s) => Err(ServiceError::Conflict(format!(
                "Datastore {} is {} and import jobs need an ACTIVE data store",
                input.datastore_id,
                s.as_str()
            ))),
            CreateImportJobOutcome::TooManyJobs(n) => Err(ServiceError::QuotaExceeded(format!(
                "Datastore {} already has {n} import jobs in progress",
                input.datastore_id
            ))),
        }
    }

    pub async fn get_dicom_import_job(
        &self,
        datastore_id: &DatastoreId,
        job_id: &str,
    ) -> Result<ImportJob, ServiceError> {
        if let Some(j) = self.catalog.get_import_job(datastore_id, job_id).await? {
            return Ok(j);
        }
        if self.catalog.get_datastore(datastore_id).await?.is_none() {
            return Err(datastores::not_found(datastore_id));
        }
        Err(import_job_not_found(job_id))
    }

    /// One page of a data store's import jobs, newest first.
    pub async fn list_dicom_import_jobs(
        &self,
        datastore_id: &DatastoreId,
        status: Option<ImportJobStatus>,
        next_token: Option<&str>,
        max_results: u32,
    ) -> Result<(Vec<ImportJob>, Option<String>), ServiceError> {
        const LISTING: &str = "ListDICOMImportJobs";
        if self.catalog.get_datastore(datastore_id).await?.is_none() {
            return Err(datastores::not_found(datastore_id));
        }
        let filters = format!(
            "{datastore_id}/{}",
            status.map(|s| s.as_str()).unwrap_or("")
        );
        let cursor = next_token
            .map(|t| self.tokens.open(LISTING, &filters, t))
            .transpose()?;
        let Page { items, next } = self
            .catalog
            .list_import_jobs(datastore_id, status, cursor.as_ref(), max_results)
            .await
            .map_err(|e| match e {
                lightbox_storage::StorageError::InvalidCursor => crate::token::invalid(),
                other => other.into(),
            })?;
        let token = next.map(|c| self.tokens.seal(LISTING, &filters, &c));
        Ok((items, token))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn s3_uris_split_into_bucket_and_prefix() {
        assert_eq!(super::split_s3_uri("s3://b/in/x/"), Some(("b", "in/x/")));
        assert_eq!(super::split_s3_uri("s3://b"), Some(("b", "")));
        assert_eq!(super::split_s3_uri("s3://b/"), Some(("b", "")));
        assert_eq!(super::split_s3_uri("http://b"), None);
    }
}
