//! StartDICOMImportJob: `POST /startDICOMImportJob/datastore/{datastoreId}`.

use std::sync::Arc;

use lightbox_service::{Service, StartImportJobInput};
use serde_json::json;

use super::{Output, shapes};
use crate::error::ApiError;
use crate::input::Input;

pub async fn handle(svc: Arc<Service>, input: Input) -> Result<Output, ApiError> {
    let job = svc
        .start_dicom_import_job(StartImportJobInput {
            datastore_id: shapes::datastore_id(&input)?,
            job_name: input.str("jobName").map(str::to_owned),
            data_access_role_arn: input.required_str("dataAccessRoleArn")?.to_owned(),
            client_token: input.required_str("clientToken")?.to_owned(),
            input_s3_uri: input.required_str("inputS3Uri")?.to_owned(),
            output_s3_uri: input.required_str("outputS3Uri")?.to_owned(),
            input_owner_account_id: input.str("inputOwnerAccountId").map(str::to_owned),
            import_configuration: input.0.get("importConfiguration").map(|v| v.to_string()),
        })
        .await?;
    Ok(Output::Json(json!({
        "datastoreId": job.datastore_id.as_str(),
        "jobId": job.id,
        "jobStatus": job.status.as_str(),
        "submittedAt": job.submitted_at.as_epoch_seconds(),
    })))
}
