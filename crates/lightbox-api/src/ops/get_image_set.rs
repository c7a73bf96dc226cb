//! GetImageSet: `POST /datastore/{datastoreId}/imageSet/{imageSetId}/getImageSet?version=`.

use std::sync::Arc;

use lightbox_domain::ResourceRef;
use lightbox_service::Service;

use super::{Output, shapes};
use crate::error::ApiError;
use crate::input::Input;

pub async fn handle(svc: Arc<Service>, input: Input) -> Result<Output, ApiError> {
    let ds = shapes::datastore_id(&input)?;
    let id = shapes::image_set_id(&input)?;
    let view = svc.get_image_set(&ds, &id, input.str("versionId")).await?;
    let mut body =
        shapes::image_set_version(&view.image_set, &view.version, "imageSetWorkflowStatus");
    let o = body.as_object_mut().expect("object");
    o.insert("datastoreId".into(), ds.as_str().into());
    o.insert(
        "imageSetArn".into(),
        svc.arn(ResourceRef::ImageSet(ds.clone(), id.clone()))
            .into(),
    );
    o.insert(
        "lastAccessedAt".into(),
        view.image_set.last_accessed_at.as_epoch_seconds().into(),
    );
    o.insert("storageTier".into(), view.storage_tier.as_str().into());
    Ok(Output::Json(body))
}
