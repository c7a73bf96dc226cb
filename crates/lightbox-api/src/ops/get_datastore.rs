//! GetDatastore: `GET /datastore/{datastoreId}`.

use std::sync::Arc;

use lightbox_service::Service;
use serde_json::json;

use super::{Output, shapes};
use crate::error::ApiError;
use crate::input::Input;

pub async fn handle(svc: Arc<Service>, input: Input) -> Result<Output, ApiError> {
    let d = svc.get_datastore(&shapes::datastore_id(&input)?).await?;
    Ok(Output::Json(json!({
        "datastoreProperties": shapes::datastore_properties(&svc, &d),
    })))
}
