//! Wire renderings of domain records shared by several operations (DatastoreProperties,
//! DatastoreSummary), with the model's member names and epoch-second timestamps.

use lightbox_domain::Datastore;
use lightbox_service::Service;
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
