//! Wire renderings of domain records shared by several operations (DatastoreProperties,
//! DatastoreSummary, DICOMImportJobProperties, DICOMImportJobSummary, ImageSetProperties), with
//! the model's member names and epoch-second timestamps.

use lightbox_domain::{Datastore, ImageSet, ImportJob};
use lightbox_service::{ImageSetVersion, Service};
use serde_json::{Value, json};

pub fn datastore_summary(svc: &Service, d: &Datastore) -> Value {
    json!({
        "datastoreId": d.id.as_str(),
        "datastoreName": d.name,
        "datastoreStatus": d.status.as_str(),
        "datastoreArn": svc.datastore_arn(&d.id),
        "createdAt": d.created_at.as_epoch_seconds(),
        "updatedAt": d.updated_at.as_epoch_seconds(),
    })
}

pub fn datastore_properties(svc: &Service, d: &Datastore) -> Value {
    let mut v = datastore_summary(svc, d);
    let o = v.as_object_mut().expect("object");
    o.insert(
        "losslessStorageFormat".into(),
        d.lossless_storage_format.as_str().into(),
    );
    if let Some(k) = &d.kms_key_arn {
        o.insert("kmsKeyArn".into(), k.as_str().into());
    }
    if let Some(l) = &d.lambda_authorizer_arn {
        o.insert("lambdaAuthorizerArn".into(), l.as_str().into());
    }
    v
}

/// Parses a validated datastoreId label.
pub fn datastore_id(
    input: &crate::input::Input,
) -> Result<lightbox_domain::DatastoreId, crate::error::ApiError> {
    lightbox_domain::DatastoreId::parse(input.required_str("datastoreId")?)
        .map_err(|_| crate::error::ApiError::validation("invalid datastoreId"))
}

/// Parses a validated imageSetId label.
pub fn image_set_id(
    input: &crate::input::Input,
) -> Result<lightbox_domain::ImageSetId, crate::error::ApiError> {
    lightbox_domain::ImageSetId::parse(input.required_str("imageSetId")?)
        .map_err(|_| crate::error::ApiError::validation("invalid imageSetId"))
}

/// The members a version shares between GetImageSet and ListImageSetVersions' `ImageSetProperties`
/// (whose status member is `ImageSetWorkflowStatus`, capital I). `createdAt` is the image set's.
pub fn image_set_version(image_set: &ImageSet, v: &ImageSetVersion, status_member: &str) -> Value {
    let mut o = serde_json::Map::new();
    o.insert("imageSetId".into(), v.image_set_id.as_str().into());
    o.insert("versionId".into(), v.version.to_string().into());
    o.insert("imageSetState".into(), v.state.as_str().into());
    o.insert(status_member.into(), v.workflow_status.as_str().into());
    o.insert(
        "createdAt".into(),
        image_set.created_at.as_epoch_seconds().into(),
    );
    o.insert("updatedAt".into(), v.updated_at.as_epoch_seconds().into());
    if let Some(d) = v.deleted_at {
        o.insert("deletedAt".into(), d.as_epoch_seconds().into());
    }
    if let Some(m) = &v.message {
        o.insert("message".into(), m.as_str().into());
    }
    if v.forced {
        o.insert("overrides".into(), json!({ "forced": true }));
    }
    o.insert("isPrimary".into(), v.is_primary.into());
    Value::Object(o)
}

/// The optional `maxResults` of a listing (validated 1–50); absent, the model's maximum.
pub fn max_results(input: &crate::input::Input) -> u32 {
    const DEFAULT_MAX_RESULTS: u32 = 50;
    input
        .int("maxResults")
        .map(|n| n as u32)
        .unwrap_or(DEFAULT_MAX_RESULTS)
}

/// `DICOMImportJobSummary`. `jobName` is required on the wire: a job started without one is
/// named by its id.
pub fn import_job_summary(j: &ImportJob) -> Value {
    let mut v = json!({
        "jobId": j.id,
        "jobName": j.name.clone().unwrap_or_else(|| j.id.clone()),
        "jobStatus": j.status.as_str(),
        "datastoreId": j.datastore_id.as_str(),
        "dataAccessRoleArn": j.data_access_role_arn,
        "submittedAt": j.submitted_at.as_epoch_seconds(),
    });
    let o = v.as_object_mut().expect("object");
    if let Some(e) = j.ended_at {
        o.insert("endedAt".into(), e.as_epoch_seconds().into());
    }
    if let Some(m) = &j.message {
        o.insert("message".into(), m.as_str().into());
    }
    v
}

/// `DICOMImportJobProperties`: the summary plus the S3 URIs (output: the job-specific prefix)
/// and the import configuration as received.
pub fn import_job_properties(j: &ImportJob) -> Value {
    let mut v = import_job_summary(j);
    let o = v.as_object_mut().expect("object");
    o.insert("inputS3Uri".into(), j.input_s3_uri.as_str().into());
    o.insert("outputS3Uri".into(), j.output_s3_uri.as_str().into());
    if let Some(c) = j
        .import_configuration
        .as_deref()
        .and_then(|c| serde_json::from_str::<Value>(c).ok())
    {
        o.insert("importConfiguration".into(), c);
    }
    v
}

/// A boolean query member (`force`, `promoteToPrimary`...): false when absent.
pub fn flag(input: &crate::input::Input, name: &str) -> bool {
    input.0.get(name).and_then(Value::as_bool).unwrap_or(false)
}
