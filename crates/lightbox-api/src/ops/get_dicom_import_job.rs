//! GetDICOMImportJob: `GET /getDICOMImportJob/datastore/{datastoreId}/job/{jobId}`.

use std::sync::Arc;

use lightbox_service::Service;
use serde_json::json;

use super::{Output, shapes};
use crate::error::ApiError;
use crate::input::Input;

pub async fn handle(svc: Arc<Service>, input: Input) -> Result<Output, ApiError> {
    let job = svc
        .get_dicom_import_job(&shapes::datastore_id(&input)?, input.required_str("jobId")?)
        .await?;
    Ok(Output::Json(
        json!({ "jobProperties": shapes::import_job_properties(&job) }),
    ))
}
