//! DeleteImageSet: `POST /datastore/{datastoreId}/imageSet/{imageSetId}/deleteImageSet`.

use std::sync::Arc;

use lightbox_service::Service;
use serde_json::json;

use super::{Output, shapes};
use crate::error::ApiError;
use crate::input::Input;

pub async fn handle(svc: Arc<Service>, input: Input) -> Result<Output, ApiError> {
    let ds = shapes::datastore_id(&input)?;
    let id = shapes::image_set_id(&input)?;
    let s = svc.delete_image_set(&ds, &id).await?;
    Ok(Output::Json(json!({
        "datastoreId": ds.as_str(),
        "imageSetId": s.id.as_str(),
        "imageSetState": s.state.as_str(),
        "imageSetWorkflowStatus": s.workflow_status.as_str(),
    })))
}
