//! UpdateImageSetMetadata: `POST /datastore/{datastoreId}/imageSet/{imageSetId}/updateImageSetMetadata?latestVersion=&force=&includeStudyImageSets=`.

use std::sync::Arc;

use base64::Engine;
use lightbox_service::{MetadataUpdates, Service, UpdateInput};
use serde_json::{Value, json};

use super::{Output, shapes};
use crate::error::ApiError;
use crate::input::Input;

pub async fn handle(svc: Arc<Service>, input: Input) -> Result<Output, ApiError> {
    let ds = shapes::datastore_id(&input)?;
    let id = shapes::image_set_id(&input)?;
    // The model makes the updates a union: exactly one member (checked by the decoder).
    let updates = input.0.get("updateImageSetMetadataUpdates");
    let updates = match updates.and_then(|u| u.get("revertToVersionId")) {
        Some(v) => MetadataUpdates::Revert(v.as_str().unwrap_or_default().to_owned()),
        None => {
            let dicom = updates.and_then(|u| u.get("DICOMUpdates"));
            let blob = |name: &str| -> Result<Option<Vec<u8>>, ApiError> {
                match dicom.and_then(|d| d.get(name)).and_then(Value::as_str) {
                    Some(b64) => base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .map(Some)
                        .map_err(|_| ApiError::validation(format!("{name} is not valid base64"))),
                    None => Ok(None),
                }
            };
            MetadataUpdates::Dicom {
                updatable: blob("updatableAttributes")?,
                removable: blob("removableAttributes")?,
            }
        }
    };
    let s = svc
        .update_image_set_metadata(
            &ds,
            &id,
            UpdateInput {
                latest_version: input.required_str("latestVersionId")?.to_owned(),
                force: shapes::flag(&input, "force"),
                include_study_image_sets: shapes::flag(&input, "includeStudyImageSets"),
                updates,
            },
        )
        .await?;
    Ok(Output::Json(json!({
        "datastoreId": ds.as_str(),
        "imageSetId": s.id.as_str(),
        "latestVersionId": s.version.to_string(),
        "imageSetState": s.state.as_str(),
        "imageSetWorkflowStatus": s.workflow_status.as_str(),
        "createdAt": s.created_at.as_epoch_seconds(),
        "updatedAt": s.updated_at.as_epoch_seconds(),
    })))
}
