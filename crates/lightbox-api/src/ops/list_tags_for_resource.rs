//! ListTagsForResource: `GET /tags/{resourceArn}`.

use std::sync::Arc;

use lightbox_service::Service;
use serde_json::{Map, Value, json};

use super::Output;
use crate::error::ApiError;
use crate::input::Input;

pub async fn handle(svc: Arc<Service>, input: Input) -> Result<Output, ApiError> {
    let tags = svc
        .list_tags_for_resource(input.required_str("resourceArn")?)
        .await?;
    let tags: Map<String, Value> = tags
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    Ok(Output::Json(json!({ "tags": tags })))
}
