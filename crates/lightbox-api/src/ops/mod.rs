//! The operation table: every one of the model's 18 operations, each mapped once to its handler.
//! Handlers take the validated input and return the response body; operations that later
//! releases implement answer NotImplemented (after authentication and validation).

mod create_datastore;
mod delete_datastore;
mod get_datastore;
mod get_dicom_import_job;
mod list_datastores;
mod list_dicom_import_jobs;
mod list_tags_for_resource;
mod shapes;
mod start_dicom_import_job;
mod tag_resource;
mod untag_resource;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use lightbox_service::{Service, ServiceError};
use serde_json::Value;

use crate::error::ApiError;
use crate::input::Input;

/// A successful response.
pub enum Output {
    /// A JSON document (`application/json`).
    Json(Value),
}

pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Output, ApiError>> + Send>>;
pub type Handler = fn(Arc<Service>, Input) -> HandlerFuture;

macro_rules! handler {
    ($module:ident) => {
        (|svc, input| Box::pin($module::handle(svc, input))) as Handler
    };
}

fn not_yet(name: &'static str) -> HandlerFuture {
    Box::pin(async move { Err(ServiceError::NotImplemented(name).into()) })
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
        "SearchImageSets" => |_, _| not_yet("SearchImageSets"),
        "GetImageSet" => |_, _| not_yet("GetImageSet"),
        "GetImageSetMetadata" => |_, _| not_yet("GetImageSetMetadata"),
        "GetImageFrame" => |_, _| not_yet("GetImageFrame"),
        "ListImageSetVersions" => |_, _| not_yet("ListImageSetVersions"),
        "UpdateImageSetMetadata" => |_, _| not_yet("UpdateImageSetMetadata"),
        "CopyImageSet" => |_, _| not_yet("CopyImageSet"),
        "DeleteImageSet" => |_, _| not_yet("DeleteImageSet"),
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
