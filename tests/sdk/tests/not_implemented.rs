//! Operations of later issues answer 501 NotImplementedException naming the operation, after
//! auth and input validation. The image-set operations go through the SDK's `runtime-` host.

use std::sync::atomic::Ordering;

use lightbox_sdk_tests::aws_sdk_medicalimaging::config::http::HttpResponse;
use lightbox_sdk_tests::aws_sdk_medicalimaging::error::{ProvideErrorMetadata, SdkError};
use lightbox_sdk_tests::aws_sdk_medicalimaging::types::{
    CopyImageSetInformation, CopySourceImageSetInformation, MetadataUpdates,
};
use lightbox_sdk_tests::*;

#[track_caller]
fn check_501<O: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug>(
    op: &str,
    result: Result<O, SdkError<E, HttpResponse>>,
) {
    let err = result.expect_err(op);
    let status = err.raw_response().map(|r| r.status().as_u16());
    assert_eq!(status, Some(501), "{op}: {err:?}");
    assert_eq!(err.code(), Some("NotImplementedException"), "{op}: {err:?}");
    let message = err.message().unwrap_or_default();
    assert!(
        message.contains(op),
        "{op}: message should name the operation: {message:?}"
    );
    let raw = err.raw_response().unwrap();
    let rid = raw.headers().get("x-amzn-RequestId").unwrap_or_default();
    assert!(is_uuid(rid), "{op}: request id {rid:?}");
}

#[tokio::test]
async fn every_later_operation_answers_501_through_the_sdk() {
    let srv = TestServer::start().await.unwrap();
    let client = srv.runtime_host_client();
    let ds = create_active(&client, "later").await.unwrap();
    let is = random_id();
    let before = RUNTIME_HOST_REQUESTS.load(Ordering::SeqCst);

    // Runtime (image set) operations: Host runtime-127.0.0.1:PORT.
    check_501(
        "UpdateImageSetMetadata",
        client
            .update_image_set_metadata()
            .datastore_id(&ds)
            .image_set_id(&is)
            .latest_version_id("1")
            .update_image_set_metadata_updates(MetadataUpdates::RevertToVersionId("1".into()))
            .send()
            .await,
    );
    check_501(
        "CopyImageSet",
        client
            .copy_image_set()
            .datastore_id(&ds)
            .source_image_set_id(&is)
            .copy_image_set_information(
                CopyImageSetInformation::builder()
                    .source_image_set(
                        CopySourceImageSetInformation::builder()
                            .latest_version_id("1")
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .send()
            .await,
    );
    check_501(
        "DeleteImageSet",
        client
            .delete_image_set()
            .datastore_id(&ds)
            .image_set_id(&is)
            .send()
            .await,
    );

    let runtime_requests = RUNTIME_HOST_REQUESTS.load(Ordering::SeqCst) - before;
    assert!(
        runtime_requests >= 3,
        "the 3 image-set writes must have gone out with a runtime- Host ({runtime_requests})"
    );
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn strip_prefix_client_reaches_the_same_operations() {
    let srv = TestServer::start().await.unwrap();
    let client = srv.client();
    let ds = create_active(&client, "strip").await.unwrap();
    check_501(
        "DeleteImageSet",
        client
            .delete_image_set()
            .datastore_id(&ds)
            .image_set_id(random_id())
            .send()
            .await,
    );
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn auth_and_validation_come_before_501() {
    let srv = TestServer::start().await.unwrap();
    let client = srv.client();
    let ds = create_active(&client, "order").await.unwrap();

    // Unsigned: 403, not 501.
    let path = format!("/datastore/{ds}/imageSet/{}/deleteImageSet", random_id());
    srv.raw("POST", &path)
        .host(&format!("runtime-127.0.0.1:{}", srv.addr().port()))
        .send()
        .await
        .unwrap()
        .assert_error(403, "MissingAuthenticationTokenException");
    // Bad signature: 403.
    let bad = Signer {
        secret: "nope".into(),
        ..Signer::default()
    };
    srv.raw("POST", &path)
        .sign(&bad)
        .send()
        .await
        .unwrap()
        .assert_error(403, "InvalidSignatureException");

    // Malformed ids and versions: 400 ValidationException.
    let err = client
        .get_image_set()
        .datastore_id(&ds)
        .image_set_id("NOT-AN-ID")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ValidationException"), "{err:?}");
    assert!(
        err.message().unwrap_or_default().contains("imageSetId"),
        "{err:?}"
    );
    let err = client
        .get_image_set()
        .datastore_id(&ds)
        .image_set_id(random_id())
        .version_id("v1")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ValidationException"), "{err:?}");
    let err = client
        .list_dicom_import_jobs()
        .datastore_id(&ds)
        .max_results(51)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ValidationException"), "{err:?}");
    let err = client
        .start_dicom_import_job()
        .datastore_id(&ds)
        .data_access_role_arn("not-a-role")
        .input_s3_uri("s3://in-bucket/x/")
        .output_s3_uri("s3://out-bucket/y/")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ValidationException"), "{err:?}");
    assert!(
        err.message()
            .unwrap_or_default()
            .contains("dataAccessRoleArn"),
        "{err:?}"
    );

    // Body-less runtime operation with a garbage body still reaches the 501 (body ignored).
    let resp = srv
        .raw("POST", &path)
        .body("{\"version\":\"1\"}")
        .header("content-type", "application/json")
        .signed()
        .send()
        .await
        .unwrap();
    let msg = resp.assert_error(501, "NotImplementedException");
    assert!(msg.contains("DeleteImageSet"), "{msg}");
    srv.shutdown().await.unwrap();
}
