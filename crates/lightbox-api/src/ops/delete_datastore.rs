//! DeleteDatastore: `DELETE /datastore/{datastoreId}`.

use std::sync::Arc;

use lightbox_service::Service;
use serde_json::json;

use super::{Output, shapes};
use crate::error::ApiError;
use crate::input::Input;

pub async fn handle(svc: Arc<Service>, input: Input) -> Result<Output, ApiError> {
    let d = svc.delete_datastore(&shapes::datastore_id(&input)?).await?;
    Ok(Output::Json(json!({
        "datastoreId": d.id.as_str(),
        "datastoreStatus": d.status.as_str(),
    })))
}
