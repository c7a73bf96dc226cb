//! CopyImageSet: `POST /datastore/{datastoreId}/imageSet/{sourceImageSetId}/copyImageSet?force=&promoteToPrimary=`.

use std::sync::Arc;

use lightbox_domain::{ImageSet, ImageSetId, ResourceRef};
use lightbox_service::{CopyInput, Service};
use serde_json::{Value, json};

use super::{Output, shapes};
use crate::error::ApiError;
use crate::input::Input;

/// `CopySourceImageSetProperties` / `CopyDestinationImageSetProperties`.
fn properties(svc: &Service, s: &ImageSet) -> Value {
    json!({
        "imageSetId": s.id.as_str(),
        "latestVersionId": s.version.to_string(),
        "imageSetState": s.state.as_str(),
        "imageSetWorkflowStatus": s.workflow_status.as_str(),
        "createdAt": s.created_at.as_epoch_seconds(),
        "updatedAt": s.updated_at.as_epoch_seconds(),
        "imageSetArn": svc.arn(ResourceRef::ImageSet(s.datastore_id.clone(), s.id.clone())),
    })
}

pub async fn handle(svc: Arc<Service>, input: Input) -> Result<Output, ApiError> {
    let ds = shapes::datastore_id(&input)?;
    let source = ImageSetId::parse(input.required_str("sourceImageSetId")?)
        .map_err(|_| ApiError::validation("invalid sourceImageSetId"))?;
    let info = input.0.get("copyImageSetInformation");
    let src = info.and_then(|i| i.get("sourceImageSet"));
    let text = |v: Option<&Value>, name: &str| {
        v.and_then(|v| v.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let destination = match info.and_then(|i| i.get("destinationImageSet")) {
        Some(d) => {
            let id = ImageSetId::parse(&text(Some(d), "imageSetId").unwrap_or_default()).map_err(
                |_| {
                    ApiError::validation(
                        "invalid copyImageSetInformation.destinationImageSet.imageSetId",
                    )
                },
            )?;
            Some((id, text(Some(d), "latestVersionId").unwrap_or_default()))
        }
        None => None,
    };
    let copy = svc
        .copy_image_set(
            &ds,
            &source,
            CopyInput {
                source_latest_version: text(src, "latestVersionId").unwrap_or_default(),
                copiable_attributes: text(
                    src.and_then(|s| s.get("DICOMCopies")),
                    "copiableAttributes",
                ),
                destination,
                force: shapes::flag(&input, "force"),
                promote_to_primary: shapes::flag(&input, "promoteToPrimary"),
            },
        )
        .await?;
    Ok(Output::Json(json!({
        "datastoreId": ds.as_str(),
        "sourceImageSetProperties": properties(&svc, &copy.source),
        "destinationImageSetProperties": properties(&svc, &copy.destination),
    })))
}
