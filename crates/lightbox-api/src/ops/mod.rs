//! The operation table: every one of the model's 18 operations, each mapped once to its handler.
//! Handlers take the validated input and return the response body.

mod copy_image_set;
mod create_datastore;
mod delete_datastore;
mod delete_image_set;
mod get_datastore;
mod get_dicom_import_job;
mod get_image_frame;
mod get_image_set;
mod get_image_set_metadata;
mod list_datastores;
mod list_dicom_import_jobs;
mod list_image_set_versions;
mod list_tags_for_resource;
mod search_image_sets;
mod shapes;
mod start_dicom_import_job;
mod tag_resource;
mod untag_resource;
mod update_image_set_metadata;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use lightbox_service::Service;
use serde_json::Value;

use crate::error::ApiError;
use crate::input::Input;

/// A successful response.
pub enum Output {
    /// A JSON document (`application/json`).
    Json(Value),
    /// Stored bytes streamed as the body (an `httpPayload` blob member).
    Stream {
        content_type: &'static str,
        content_encoding: Option<&'static str>,
        content_length: Option<u64>,
        body: lightbox_service::BlobStream,
    },
}

pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Output, ApiError>> + Send>>;
pub type Handler = fn(Arc<Service>, Input) -> HandlerFuture;

macro_rules! handler {
    ($module:ident) => {
        (|svc, input| Box::pin($module::handle(svc, input))) as Handler
    };
}

/// The handler of `operation` (a model operation name).
pub fn handler(operation: &str) -> Handler {
    match operation {
        "CreateDatastore" => handler!(create_datastore),
        "GetDatastore" => handler!(get_datastore),
        "ListDatastores" => handler!(list_datastores),
        "DeleteDatastore" => handler!(delete_datastore),
        "TagResource" => handler!(tag_resource),
        "UntagResource" => handler!(untag_resource),
        "ListTagsForResource" => handler!(list_tags_for_resource),
        "StartDICOMImportJob" => handler!(start_dicom_import_job),
        "GetDICOMImportJob" => handler!(get_dicom_import_job),
        "ListDICOMImportJobs" => handler!(list_dicom_import_jobs),
        "SearchImageSets" => handler!(search_image_sets),
        "GetImageSet" => handler!(get_image_set),
        "GetImageSetMetadata" => handler!(get_image_set_metadata),
        "GetImageFrame" => handler!(get_image_frame),
        "ListImageSetVersions" => handler!(list_image_set_versions),
        "UpdateImageSetMetadata" => handler!(update_image_set_metadata),
        "CopyImageSet" => handler!(copy_image_set),
        "DeleteImageSet" => handler!(delete_image_set),
        other => unreachable!("operation {other} is in the route table but has no handler"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_model_operation_has_a_handler() {
        for name in crate::model::MODEL.operations.keys() {
            let _ = super::handler(name);
        }
    }
}
