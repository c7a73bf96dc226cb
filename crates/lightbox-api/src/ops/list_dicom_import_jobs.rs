//! ListDICOMImportJobs: `GET /listDICOMImportJobs/datastore/{datastoreId}?jobStatus=&nextToken=&maxResults=`.

use std::sync::Arc;

use lightbox_domain::ImportJobStatus;
use lightbox_service::Service;
use serde_json::{Value, json};

use super::{Output, shapes};
use crate::error::ApiError;
use crate::input::Input;

pub async fn handle(svc: Arc<Service>, input: Input) -> Result<Output, ApiError> {
    let status = input.str("jobStatus").and_then(ImportJobStatus::parse);
    let max = shapes::max_results(&input);
    let (items, next) = svc
        .list_dicom_import_jobs(
            &shapes::datastore_id(&input)?,
            status,
            input.str("nextToken"),
            max,
        )
        .await?;
    let summaries: Vec<Value> = items.iter().map(shapes::import_job_summary).collect();
    let mut body = json!({ "jobSummaries": summaries });
    if let Some(t) = next {
        body["nextToken"] = t.into();
    }
    Ok(Output::Json(body))
}
