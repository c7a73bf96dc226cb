//! CreateDatastore: `POST /datastore`.

use std::sync::Arc;

use lightbox_domain::LosslessStorageFormat;
use lightbox_service::{CreateDatastoreInput, Service};
use serde_json::json;

use super::Output;
use crate::error::ApiError;
use crate::input::Input;

pub async fn handle(svc: Arc<Service>, input: Input) -> Result<Output, ApiError> {
    let d = svc
        .create_datastore(CreateDatastoreInput {
            name: input.str("datastoreName").map(str::to_owned),
            client_token: input.required_str("clientToken")?.to_owned(),
            tags: input.string_map("tags"),
            kms_key_arn: input.str("kmsKeyArn").map(str::to_owned),
            lambda_authorizer_arn: input.str("lambdaAuthorizerArn").map(str::to_owned),
            lossless_storage_format: input
                .str("losslessStorageFormat")
                .and_then(LosslessStorageFormat::parse),
        })
        .await?;
    Ok(Output::Json(json!({
        "datastoreId": d.id.as_str(),
        "datastoreStatus": d.status.as_str(),
    })))
}
