//! ListImageSetVersions: `POST /datastore/{datastoreId}/imageSet/{imageSetId}/listImageSetVersions
//! ?maxResults=&nextToken=`, newest version first.

use std::sync::Arc;

use lightbox_service::Service;
use serde_json::{Value, json};

use super::{Output, shapes};
use crate::error::ApiError;
use crate::input::Input;

pub async fn handle(svc: Arc<Service>, input: Input) -> Result<Output, ApiError> {
    let (image_set, versions, next) = svc
        .list_image_set_versions(
            &shapes::datastore_id(&input)?,
            &shapes::image_set_id(&input)?,
            input.str("nextToken"),
            shapes::max_results(&input),
        )
        .await?;
    let list: Vec<Value> = versions
        .iter()
        .map(|v| shapes::image_set_version(&image_set, v, "ImageSetWorkflowStatus"))
        .collect();
    let mut body = json!({ "imageSetPropertiesList": list });
    if let Some(t) = next {
        body["nextToken"] = t.into();
    }
    Ok(Output::Json(body))
}
