//! GetImageSetMetadata: `POST /datastore/{datastoreId}/imageSet/{imageSetId}/getImageSetMetadata
//! ?version=`: the stored gzip document, streamed as it is (`Content-Encoding: gzip`).

use std::sync::Arc;

use lightbox_service::Service;

use super::{Output, shapes};
use crate::error::ApiError;
use crate::input::Input;

pub async fn handle(svc: Arc<Service>, input: Input) -> Result<Output, ApiError> {
    let (body, size) = svc
        .get_image_set_metadata(
            &shapes::datastore_id(&input)?,
            &shapes::image_set_id(&input)?,
            input.str("versionId"),
        )
        .await?;
    Ok(Output::Stream {
        content_type: "application/json",
        content_encoding: Some("gzip"),
        content_length: size,
        body,
    })
}
