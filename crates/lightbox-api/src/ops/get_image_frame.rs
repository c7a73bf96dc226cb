//! GetImageFrame: `POST /datastore/{datastoreId}/imageSet/{imageSetId}/getImageFrame` with
//! `{"imageFrameId": …}`: the stored frame, streamed, typed by its stored transfer syntax.

use std::sync::Arc;

use lightbox_service::Service;

use super::{Output, shapes};
use crate::error::ApiError;
use crate::input::Input;

/// The `Content-Type` of a frame stored in `transfer_syntax` (the model's table; JPEG 2000
/// Lossless, absent from it, is `image/jp2` as DICOMweb pairs them).
pub fn content_type(transfer_syntax: &str) -> &'static str {
    match transfer_syntax {
        "1.2.840.10008.1.2.1" => "application/octet-stream",
        "1.2.840.10008.1.2.4.50" => "image/jpeg",
        "1.2.840.10008.1.2.4.91" => "image/j2c",
        "1.2.840.10008.1.2.4.90" => "image/jp2",
        "1.2.840.10008.1.2.4.203" => "image/jphc",
        "1.2.840.10008.1.2.4.112" => "image/jxl",
        "1.2.840.10008.1.2.4.100"
        | "1.2.840.10008.1.2.4.100.1"
        | "1.2.840.10008.1.2.4.101"
        | "1.2.840.10008.1.2.4.101.1" => "video/mpeg",
        "1.2.840.10008.1.2.4.102"
        | "1.2.840.10008.1.2.4.102.1"
        | "1.2.840.10008.1.2.4.103"
        | "1.2.840.10008.1.2.4.103.1"
        | "1.2.840.10008.1.2.4.104"
        | "1.2.840.10008.1.2.4.104.1"
        | "1.2.840.10008.1.2.4.105"
        | "1.2.840.10008.1.2.4.105.1"
        | "1.2.840.10008.1.2.4.106"
        | "1.2.840.10008.1.2.4.106.1" => "video/mp4",
        "1.2.840.10008.1.2.4.107" | "1.2.840.10008.1.2.4.108" => "video/H256",
        // 1.2.840.10008.1.2.4.202 or missing.
        _ => "image/jph",
    }
}

pub async fn handle(svc: Arc<Service>, input: Input) -> Result<Output, ApiError> {
    let frame_id = input
        .0
        .get("imageFrameInformation")
        .and_then(|v| v.get("imageFrameId"))
        .and_then(|v| v.as_str())
        .ok_or_else(|| ApiError::internal("validated input lacks imageFrameId"))?;
    let read = svc
        .get_image_frame(
            &shapes::datastore_id(&input)?,
            &shapes::image_set_id(&input)?,
            frame_id,
        )
        .await?;
    Ok(Output::Stream {
        content_type: content_type(&read.frame.transfer_syntax),
        content_encoding: None,
        content_length: Some(read.frame.size),
        body: read.body,
    })
}

#[cfg(test)]
mod tests {
    use super::content_type;

    #[test]
    fn content_types_follow_the_model_table() {
        assert_eq!(content_type("1.2.840.10008.1.2.4.202"), "image/jph");
        assert_eq!(content_type(""), "image/jph");
        assert_eq!(content_type("1.2.840.10008.1.2.4.203"), "image/jphc");
        assert_eq!(content_type("1.2.840.10008.1.2.4.50"), "image/jpeg");
        assert_eq!(content_type("1.2.840.10008.1.2.4.91"), "image/j2c");
        assert_eq!(
            content_type("1.2.840.10008.1.2.1"),
            "application/octet-stream"
        );
        assert_eq!(content_type("1.2.840.10008.1.2.4.101.1"), "video/mpeg");
        assert_eq!(content_type("1.2.840.10008.1.2.4.106.1"), "video/mp4");
        assert_eq!(content_type("1.2.840.10008.1.2.4.108"), "video/H256");
        assert_eq!(content_type("1.2.840.10008.1.2.4.90"), "image/jp2");
    }
}
