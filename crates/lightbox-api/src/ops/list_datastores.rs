//! ListDatastores: `GET /datastore?datastoreStatus=&nextToken=&maxResults=`.

use std::sync::Arc;

use lightbox_domain::DatastoreStatus;
use lightbox_service::Service;
use serde_json::{Value, json};

use super::{Output, shapes};
use crate::error::ApiError;
use crate::input::Input;

pub async fn handle(svc: Arc<Service>, input: Input) -> Result<Output, ApiError> {
    let status = input
        .str("datastoreStatus")
        .and_then(DatastoreStatus::parse);
    let max = shapes::max_results(&input);
    let (items, next) = svc
        .list_datastores(status, input.str("nextToken"), max)
        .await?;
    let summaries: Vec<Value> = items
        .iter()
        .map(|d| shapes::datastore_summary(&svc, d))
        .collect();
    let mut body = json!({ "datastoreSummaries": summaries });
    if let Some(t) = next {
        body["nextToken"] = t.into();
    }
    Ok(Output::Json(body))
}
