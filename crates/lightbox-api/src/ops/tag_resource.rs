//! TagResource: `POST /tags/{resourceArn}` with `{"tags": {…}}`.

use std::sync::Arc;

use lightbox_service::Service;
use serde_json::json;

use super::Output;
use crate::error::ApiError;
use crate::input::Input;

pub async fn handle(svc: Arc<Service>, input: Input) -> Result<Output, ApiError> {
    svc.tag_resource(input.required_str("resourceArn")?, input.string_map("tags"))
        .await?;
    Ok(Output::Json(json!({})))
}
