//! Data store lifecycle through the official Rust SDK: typed outputs and typed errors of
//! CreateDatastore, GetDatastore, ListDatastores and DeleteDatastore.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use lightbox_sdk_tests::aws_sdk_medicalimaging::error::{ProvideErrorMetadata, SdkError};
use lightbox_sdk_tests::aws_sdk_medicalimaging::operation::create_datastore::CreateDatastoreError;
use lightbox_sdk_tests::aws_sdk_medicalimaging::operation::delete_datastore::DeleteDatastoreError;
use lightbox_sdk_tests::aws_sdk_medicalimaging::operation::get_datastore::GetDatastoreError;
use lightbox_sdk_tests::aws_sdk_medicalimaging::operation::list_datastores::ListDatastoresError;
use lightbox_sdk_tests::aws_sdk_medicalimaging::types::{DatastoreStatus, LosslessStorageFormat};
use lightbox_sdk_tests::*;

const KMS: &str = "arn:aws:kms:us-east-1:123456789012:key/12345678-1234-1234-1234-123456789012";
const LAMBDA: &str = "arn:aws:lambda:us-east-1:123456789012:function:my-authorizer";

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test]
async fn create_get_echoes_every_member() {
    let srv = TestServer::start().await.unwrap();
    let client = srv.client();
    let before = now_secs();
    let out = client
        .create_datastore()
        .datastore_name("full.name_/#-1")
        .kms_key_arn(KMS)
        .lambda_authorizer_arn(LAMBDA)
        .lossless_storage_format(LosslessStorageFormat::Jpeg2000Lossless)
        .tags("team", "radiology")
        .send()
        .await
        .unwrap();
    let id = out.datastore_id().to_string();
    assert_eq!(id.len(), 32, "id {id}");
    assert!(
        id.chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase()),
        "id {id} must match [0-9a-z]{{32}}"
    );
    assert_eq!(out.datastore_status(), &DatastoreStatus::Creating);

    wait_active(&client, &id).await.unwrap();
    let props = client
        .get_datastore()
        .datastore_id(&id)
        .send()
        .await
        .unwrap()
        .datastore_properties
        .expect("datastoreProperties");
    assert_eq!(props.datastore_id(), id);
    assert_eq!(props.datastore_name(), "full.name_/#-1");
    assert_eq!(props.datastore_status(), &DatastoreStatus::Active);
    assert_eq!(props.kms_key_arn(), Some(KMS));
    assert_eq!(props.lambda_authorizer_arn(), Some(LAMBDA));
    assert_eq!(
        props.lossless_storage_format(),
        Some(&LosslessStorageFormat::Jpeg2000Lossless)
    );
    assert_eq!(
        props.datastore_arn(),
        Some(format!("arn:aws:medical-imaging:us-east-1:000000000000:datastore/{id}").as_str())
    );
    let created = props.created_at().expect("createdAt").as_secs_f64();
    let updated = props.updated_at().expect("updatedAt").as_secs_f64();
    assert!(
        created >= before - 2.0 && created <= now_secs() + 2.0,
        "createdAt {created} not near now"
    );
    assert!(
        updated >= created,
        "updatedAt {updated} < createdAt {created}"
    );

    let tags = client
        .list_tags_for_resource()
        .resource_arn(srv.datastore_arn(&id))
        .send()
        .await
        .unwrap();
    assert_eq!(
        tags.tags().get("team").map(String::as_str),
        Some("radiology")
    );
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn default_storage_format_is_htj2k_and_timestamps_are_numbers() {
    let srv = TestServer::start().await.unwrap();
    let client = srv.client();
    let id = create_active(&client, "plain").await.unwrap();
    let props = client
        .get_datastore()
        .datastore_id(&id)
        .send()
        .await
        .unwrap()
        .datastore_properties
        .unwrap();
    assert_eq!(
        props.lossless_storage_format(),
        Some(&LosslessStorageFormat::Htj2K)
    );
    assert_eq!(props.kms_key_arn(), None);
    assert_eq!(props.lambda_authorizer_arn(), None);

    // The wire form: epoch-second numbers, not strings.
    let raw = srv
        .raw("GET", &format!("/datastore/{id}"))
        .signed()
        .send()
        .await
        .unwrap();
    let body = raw.assert_ok();
    let p = &body["datastoreProperties"];
    assert!(p["createdAt"].is_number(), "createdAt on the wire: {p}");
    assert!(p["updatedAt"].is_number(), "updatedAt on the wire: {p}");
    assert_eq!(p["datastoreStatus"], "ACTIVE");
    assert_eq!(p["losslessStorageFormat"], "HTJ2K");
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn creating_becomes_active_only_after_the_delay() {
    let srv = TestServer::start_with(|c| c.transition_delay = Duration::from_millis(1500))
        .await
        .unwrap();
    let client = srv.client();
    let id = client
        .create_datastore()
        .datastore_name("slow")
        .send()
        .await
        .unwrap()
        .datastore_id
        .clone();
    let status = client
        .get_datastore()
        .datastore_id(&id)
        .send()
        .await
        .unwrap()
        .datastore_properties
        .unwrap()
        .datastore_status;
    assert_eq!(status, DatastoreStatus::Creating);

    // Delete while CREATING is a conflict.
    let err = client
        .delete_datastore()
        .datastore_id(&id)
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.as_service_error(),
            Some(DeleteDatastoreError::ConflictException(_))
        ),
        "delete while CREATING: {err:?}"
    );

    wait_status(
        &client,
        &id,
        DatastoreStatus::Active,
        Duration::from_secs(6),
    )
    .await
    .unwrap();
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn idempotent_create_with_client_token() {
    let srv = TestServer::start().await.unwrap();
    let client = srv.client();
    let first = client
        .create_datastore()
        .datastore_name("idem")
        .client_token("token-1")
        .tags("a", "b")
        .send()
        .await
        .unwrap();
    let again = client
        .create_datastore()
        .datastore_name("idem")
        .client_token("token-1")
        .tags("a", "b")
        .send()
        .await
        .unwrap();
    assert_eq!(first.datastore_id(), again.datastore_id());

    // Same token, different input.
    let err = client
        .create_datastore()
        .datastore_name("other-name")
        .client_token("token-1")
        .send()
        .await
        .unwrap_err();
    match err.as_service_error() {
        Some(CreateDatastoreError::ConflictException(e)) => {
            assert!(!e.message().is_empty())
        }
        _ => panic!("expected ConflictException, got {err:?}"),
    }

    // A different token creates a different data store; only two exist.
    let third = client
        .create_datastore()
        .datastore_name("idem")
        .client_token("token-2")
        .send()
        .await
        .unwrap();
    assert_ne!(third.datastore_id(), first.datastore_id());
    let list = client.list_datastores().send().await.unwrap();
    assert_eq!(list.datastore_summaries().len(), 2);

    // Retrying after the data store became ACTIVE still returns the same id.
    wait_active(&client, first.datastore_id()).await.unwrap();
    let later = client
        .create_datastore()
        .datastore_name("idem")
        .client_token("token-1")
        .tags("a", "b")
        .send()
        .await
        .unwrap();
    assert_eq!(later.datastore_id(), first.datastore_id());
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn sdk_fills_client_token_so_plain_creates_are_distinct() {
    let srv = TestServer::start().await.unwrap();
    let client = srv.client();
    let a = client
        .create_datastore()
        .datastore_name("same")
        .send()
        .await
        .unwrap();
    let b = client
        .create_datastore()
        .datastore_name("same")
        .send()
        .await
        .unwrap();
    assert_ne!(a.datastore_id(), b.datastore_id());
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn quota_on_non_deleted_datastores() {
    let srv = TestServer::start_with(|c| c.max_datastores = 2)
        .await
        .unwrap();
    let client = srv.client();
    let a = create_active(&client, "q1").await.unwrap();
    let _b = create_active(&client, "q2").await.unwrap();
    let err = client
        .create_datastore()
        .datastore_name("q3")
        .send()
        .await
        .unwrap_err();
    match err.as_service_error() {
        Some(CreateDatastoreError::ServiceQuotaExceededException(e)) => {
            assert!(!e.message().is_empty())
        }
        _ => panic!("expected ServiceQuotaExceededException, got {err:?}"),
    }
    if let SdkError::ServiceError(se) = &err {
        assert_eq!(se.raw().status().as_u16(), 402);
    }

    // Deleted data stores no longer count.
    client
        .delete_datastore()
        .datastore_id(&a)
        .send()
        .await
        .unwrap();
    wait_deleted(&client, &a).await.unwrap();
    create_active(&client, "q3").await.unwrap();
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn delete_lifecycle_and_repeated_delete() {
    let srv = TestServer::start().await.unwrap();
    let client = srv.client();
    let id = create_active(&client, "doomed").await.unwrap();
    let out = client
        .delete_datastore()
        .datastore_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(out.datastore_id(), id);
    assert_eq!(out.datastore_status(), &DatastoreStatus::Deleting);

    // Deleting again returns the current status with 200.
    let again = client
        .delete_datastore()
        .datastore_id(&id)
        .send()
        .await
        .unwrap();
    assert!(
        matches!(
            again.datastore_status(),
            DatastoreStatus::Deleting | DatastoreStatus::Deleted
        ),
        "{again:?}"
    );
    wait_deleted(&client, &id).await.unwrap();
    let third = client
        .delete_datastore()
        .datastore_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(third.datastore_status(), &DatastoreStatus::Deleted);
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn unknown_and_malformed_ids() {
    let srv = TestServer::start().await.unwrap();
    let client = srv.client();
    let unknown = random_id();

    let err = client
        .get_datastore()
        .datastore_id(&unknown)
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.as_service_error(),
            Some(GetDatastoreError::ResourceNotFoundException(_))
        ),
        "{err:?}"
    );
    let err = client
        .delete_datastore()
        .datastore_id(&unknown)
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.as_service_error(),
            Some(DeleteDatastoreError::ResourceNotFoundException(_))
        ),
        "{err:?}"
    );

    for bad in ["ABCDEF", "0123456789abcdef0123456789ABCDEF", "short"] {
        let err = client
            .get_datastore()
            .datastore_id(bad)
            .send()
            .await
            .unwrap_err();
        match err.as_service_error() {
            Some(GetDatastoreError::ValidationException(e)) => assert!(
                e.message().contains("datastoreId"),
                "message should name datastoreId: {}",
                e.message()
            ),
            _ => panic!("GetDatastore({bad}): expected ValidationException, got {err:?}"),
        }
        let err = client
            .delete_datastore()
            .datastore_id(bad)
            .send()
            .await
            .unwrap_err();
        assert!(
            matches!(
                err.as_service_error(),
                Some(DeleteDatastoreError::ValidationException(_))
            ),
            "DeleteDatastore({bad}): {err:?}"
        );
    }
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn create_validation_errors_are_typed() {
    let srv = TestServer::start().await.unwrap();
    let client = srv.client();
    // pattern
    let err = client
        .create_datastore()
        .datastore_name("bad name!")
        .send()
        .await
        .unwrap_err();
    match err.as_service_error() {
        Some(CreateDatastoreError::ValidationException(e)) => assert_eq!(
            e.message(),
            "1 validation error detected: Value 'bad name!' at 'datastoreName' failed to satisfy \
             constraint: Member must satisfy regular expression pattern: [A-Za-z0-9._/#-]+"
        ),
        _ => panic!("expected ValidationException, got {err:?}"),
    }
    // length
    let err = client
        .create_datastore()
        .datastore_name("x".repeat(257))
        .send()
        .await
        .unwrap_err();
    expect_create_validation(&err, "datastoreName");
    // enum
    let err = client
        .create_datastore()
        .datastore_name("ok")
        .lossless_storage_format(LosslessStorageFormat::from("PNG"))
        .send()
        .await
        .unwrap_err();
    expect_create_validation(&err, "losslessStorageFormat");
    // kms / lambda patterns
    let err = client
        .create_datastore()
        .datastore_name("ok")
        .kms_key_arn("not-an-arn")
        .send()
        .await
        .unwrap_err();
    expect_create_validation(&err, "kmsKeyArn");
    let err = client
        .create_datastore()
        .datastore_name("ok")
        .lambda_authorizer_arn("arn:aws:s3:::bucket")
        .send()
        .await
        .unwrap_err();
    expect_create_validation(&err, "lambdaAuthorizerArn");
    // clientToken pattern
    let err = client
        .create_datastore()
        .datastore_name("ok")
        .client_token("has space")
        .send()
        .await
        .unwrap_err();
    expect_create_validation(&err, "clientToken");
    // aws: tag keys cannot be set at creation either
    let err = client
        .create_datastore()
        .datastore_name("ok")
        .tags("aws:reserved", "v")
        .send()
        .await
        .unwrap_err();
    expect_create_validation(&err, "tags");

    // Nothing was created.
    let list = client.list_datastores().send().await.unwrap();
    assert!(list.datastore_summaries().is_empty(), "{list:?}");
    srv.shutdown().await.unwrap();
}

fn expect_create_validation(
    err: &SdkError<
        CreateDatastoreError,
        lightbox_sdk_tests::aws_sdk_medicalimaging::config::http::HttpResponse,
    >,
    member: &str,
) {
    match err.as_service_error() {
        Some(CreateDatastoreError::ValidationException(e)) => assert!(
            e.message().contains(&format!("'{member}")) || e.message().contains(member),
            "message should name {member}: {}",
            e.message()
        ),
        _ => panic!("expected ValidationException naming {member}, got {err:?}"),
    }
}

async fn list_all(
    client: &lightbox_sdk_tests::aws_sdk_medicalimaging::Client,
    page: i32,
    status: Option<DatastoreStatus>,
) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut pages = 0;
    let mut token: Option<String> = None;
    loop {
        let out = client
            .list_datastores()
            .max_results(page)
            .set_datastore_status(status.clone())
            .set_next_token(token.clone())
            .send()
            .await
            .unwrap();
        pages += 1;
        assert!(
            out.datastore_summaries().len() <= page as usize,
            "page of {} > maxResults {page}",
            out.datastore_summaries().len()
        );
        ids.extend(
            out.datastore_summaries()
                .iter()
                .map(|s| s.datastore_id().to_string()),
        );
        match out.next_token() {
            Some(t) => {
                assert!(!t.is_empty(), "nextToken must be absent, not empty");
                token = Some(t.to_string());
            }
            None => break,
        }
        assert!(pages < 100, "pagination does not end");
    }
    (ids, pages)
}

#[tokio::test]
async fn list_newest_first_and_paginate() {
    let srv = TestServer::start().await.unwrap();
    let client = srv.client();
    let mut created = Vec::new();
    for i in 0..7 {
        let out = client
            .create_datastore()
            .datastore_name(format!("ds-{i}"))
            .send()
            .await
            .unwrap();
        created.push(out.datastore_id().to_string());
    }
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();

    for page in [1, 2, 3, 6, 7, 50] {
        let (ids, pages) = list_all(&client, page, None).await;
        assert_eq!(ids, newest_first, "maxResults {page}");
        let expected_pages = 7usize.div_ceil(page as usize);
        assert!(
            pages == expected_pages || pages == expected_pages + 1,
            "maxResults {page}: {pages} pages"
        );
    }

    // Default page size is 50: one page, no token.
    let out = client.list_datastores().send().await.unwrap();
    assert_eq!(out.datastore_summaries().len(), 7);
    assert_eq!(out.next_token(), None);
    let summary = &out.datastore_summaries()[0];
    assert_eq!(summary.datastore_id(), newest_first[0]);
    assert_eq!(summary.datastore_name(), "ds-6");
    assert_eq!(
        summary.datastore_arn(),
        Some(srv.datastore_arn(&newest_first[0]).as_str())
    );
    assert!(summary.created_at().is_some() && summary.updated_at().is_some());

    // The SDK paginator walks the same pages.
    let mut stream = client
        .list_datastores()
        .max_results(2)
        .into_paginator()
        .items()
        .send();
    let mut via_paginator = Vec::new();
    while let Some(item) = stream.next().await {
        via_paginator.push(item.unwrap().datastore_id().to_string());
    }
    assert_eq!(via_paginator, newest_first);
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn list_more_than_one_default_page() {
    let srv = TestServer::start().await.unwrap();
    let client = srv.client();
    let mut created = HashSet::new();
    for i in 0..53 {
        let out = client
            .create_datastore()
            .datastore_name(format!("many-{i}"))
            .send()
            .await
            .unwrap();
        created.insert(out.datastore_id().to_string());
    }
    let first = client.list_datastores().send().await.unwrap();
    assert_eq!(first.datastore_summaries().len(), 50);
    let token = first.next_token().expect("nextToken after 50 of 53");
    let second = client
        .list_datastores()
        .next_token(token)
        .send()
        .await
        .unwrap();
    assert_eq!(second.datastore_summaries().len(), 3);
    assert_eq!(second.next_token(), None);
    let all: HashSet<String> = first
        .datastore_summaries()
        .iter()
        .chain(second.datastore_summaries())
        .map(|s| s.datastore_id().to_string())
        .collect();
    assert_eq!(all, created);
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn list_filters_by_status() {
    let srv = TestServer::start_with(|c| c.transition_delay = Duration::from_millis(1500))
        .await
        .unwrap();
    let client = srv.client();
    let a = client
        .create_datastore()
        .datastore_name("a")
        .send()
        .await
        .unwrap()
        .datastore_id
        .clone();
    let b = client
        .create_datastore()
        .datastore_name("b")
        .send()
        .await
        .unwrap()
        .datastore_id
        .clone();
    wait_status(&client, &a, DatastoreStatus::Active, Duration::from_secs(6))
        .await
        .unwrap();
    wait_status(&client, &b, DatastoreStatus::Active, Duration::from_secs(6))
        .await
        .unwrap();
    let c = client
        .create_datastore()
        .datastore_name("c")
        .send()
        .await
        .unwrap()
        .datastore_id
        .clone();
    client
        .delete_datastore()
        .datastore_id(&a)
        .send()
        .await
        .unwrap();

    let (creating, _) = list_all(&client, 50, Some(DatastoreStatus::Creating)).await;
    assert_eq!(creating, vec![c.clone()]);
    let (active, _) = list_all(&client, 50, Some(DatastoreStatus::Active)).await;
    assert_eq!(active, vec![b.clone()]);
    let (deleting, _) = list_all(&client, 50, Some(DatastoreStatus::Deleting)).await;
    assert_eq!(deleting, vec![a.clone()]);
    // Filter plus pagination.
    let (all, _) = list_all(&client, 1, None).await;
    assert_eq!(all.len(), 3);
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn list_validation_errors_are_typed() {
    let srv = TestServer::start().await.unwrap();
    let client = srv.client();
    for _ in 0..3 {
        client
            .create_datastore()
            .datastore_name("p")
            .send()
            .await
            .unwrap();
    }
    for bad in [0, 51, -1] {
        let err = client
            .list_datastores()
            .max_results(bad)
            .send()
            .await
            .unwrap_err();
        match err.as_service_error() {
            Some(ListDatastoresError::ValidationException(e)) => assert!(
                e.message().contains("maxResults"),
                "message should name maxResults: {}",
                e.message()
            ),
            _ => panic!("maxResults {bad}: expected ValidationException, got {err:?}"),
        }
    }
    let err = client
        .list_datastores()
        .datastore_status(DatastoreStatus::from("SLEEPING"))
        .send()
        .await
        .unwrap_err();
    match err.as_service_error() {
        Some(ListDatastoresError::ValidationException(e)) => {
            assert!(e.message().contains("datastoreStatus"), "{}", e.message())
        }
        _ => panic!("expected ValidationException, got {err:?}"),
    }

    // Forged and altered tokens.
    let page = client
        .list_datastores()
        .max_results(1)
        .send()
        .await
        .unwrap();
    let token = page.next_token().expect("token").to_string();
    let mut altered: Vec<char> = token.chars().collect();
    let mid = altered.len() / 2;
    altered[mid] = if altered[mid] == 'A' { 'B' } else { 'A' };
    let altered: String = altered.into_iter().collect();
    let truncated = token[..token.len() - 1].to_string();
    for forged in [
        "forged".to_string(),
        altered,
        truncated,
        format!("{token}x"),
        "eyJvZmZzZXQiOjB9".to_string(),
    ] {
        let err = client
            .list_datastores()
            .next_token(&forged)
            .send()
            .await
            .unwrap_err();
        match err.as_service_error() {
            Some(ListDatastoresError::ValidationException(e)) => assert!(
                e.message().contains("nextToken"),
                "message should name nextToken: {}",
                e.message()
            ),
            _ => panic!("nextToken {forged:?}: expected ValidationException, got {err:?}"),
        }
    }
    // The genuine token still works.
    let next = client
        .list_datastores()
        .max_results(1)
        .next_token(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(next.datastore_summaries().len(), 1);
    assert_ne!(
        next.datastore_summaries()[0].datastore_id(),
        page.datastore_summaries()[0].datastore_id()
    );
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn error_metadata_carries_request_id() {
    let srv = TestServer::start().await.unwrap();
    let client = srv.client();
    let err = client
        .get_datastore()
        .datastore_id(random_id())
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ResourceNotFoundException"));
    assert!(err.message().is_some_and(|m| !m.is_empty()));
    use lightbox_sdk_tests::aws_sdk_medicalimaging::operation::RequestId;
    let rid = err.request_id().expect("request id");
    assert!(is_uuid(rid), "request id {rid}");
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn concurrent_creates_with_one_token_make_one_datastore() {
    let srv = TestServer::start().await.unwrap();
    let client = srv.client();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            client
                .create_datastore()
                .datastore_name("race")
                .client_token("race-token")
                .send()
                .await
                .map(|o| o.datastore_id().to_string())
        }));
    }
    let mut ids = HashSet::new();
    for t in tasks {
        ids.insert(t.await.unwrap().expect("every retry of the token succeeds"));
    }
    assert_eq!(ids.len(), 1, "one token, several data stores: {ids:?}");
    let list = client.list_datastores().send().await.unwrap();
    assert_eq!(list.datastore_summaries().len(), 1);
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn concurrent_creates_respect_the_quota() {
    let srv = TestServer::start_with(|c| c.max_datastores = 3)
        .await
        .unwrap();
    let client = srv.client();
    let mut tasks = Vec::new();
    for i in 0..12 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            client
                .create_datastore()
                .datastore_name(format!("burst-{i}"))
                .send()
                .await
        }));
    }
    let (mut ok, mut quota) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => match e.as_service_error() {
                Some(CreateDatastoreError::ServiceQuotaExceededException(_)) => quota += 1,
                _ => panic!("unexpected error: {e:?}"),
            },
        }
    }
    assert_eq!((ok, quota), (3, 9));
    let list = client.list_datastores().send().await.unwrap();
    assert_eq!(list.datastore_summaries().len(), 3);
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn pagination_is_a_cursor_not_an_offset() {
    // New data stores created between pages must not shift the remaining pages.
    let srv = TestServer::start().await.unwrap();
    let client = srv.client();
    let mut old = Vec::new();
    for i in 0..5 {
        old.push(
            client
                .create_datastore()
                .datastore_name(format!("old-{i}"))
                .send()
                .await
                .unwrap()
                .datastore_id
                .clone(),
        );
    }
    let first = client
        .list_datastores()
        .max_results(2)
        .send()
        .await
        .unwrap();
    let token = first.next_token().unwrap().to_string();
    for i in 0..2 {
        client
            .create_datastore()
            .datastore_name(format!("new-{i}"))
            .send()
            .await
            .unwrap();
    }
    let mut seen: Vec<String> = first
        .datastore_summaries()
        .iter()
        .map(|s| s.datastore_id().to_string())
        .collect();
    let mut token = Some(token);
    while let Some(t) = token {
        let page = client
            .list_datastores()
            .max_results(2)
            .next_token(t)
            .send()
            .await
            .unwrap();
        seen.extend(
            page.datastore_summaries()
                .iter()
                .map(|s| s.datastore_id().to_string()),
        );
        token = page.next_token().map(String::from);
    }
    let newest_first: Vec<String> = old.iter().rev().cloned().collect();
    assert_eq!(
        seen, newest_first,
        "pages after the first must continue where it ended"
    );
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn create_with_too_many_tags_is_rejected() {
    let srv = TestServer::start().await.unwrap();
    let client = srv.client();
    let mut req = client.create_datastore().datastore_name("tags51");
    for i in 0..51 {
        req = req.tags(format!("k{i}"), "v");
    }
    let err = req.send().await.unwrap_err();
    assert!(
        matches!(
            err.as_service_error(),
            Some(CreateDatastoreError::ValidationException(_))
        ),
        "{err:?}"
    );
    let mut req = client.create_datastore().datastore_name("tags50");
    for i in 0..50 {
        req = req.tags(format!("k{i}"), "v");
    }
    let id = req.send().await.unwrap().datastore_id().to_string();
    let tags = client
        .list_tags_for_resource()
        .resource_arn(srv.datastore_arn(&id))
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tags().len(), 50);
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn sequential_creates_list_in_reverse_creation_order() {
    // Each create completes before the next starts, so "newest first" is well defined even when
    // several land in the same millisecond.
    let srv = TestServer::start().await.unwrap();
    let client = srv.client();
    let mut created = Vec::new();
    for i in 0..30 {
        created.push(
            client
                .create_datastore()
                .datastore_name(format!("seq-{i}"))
                .send()
                .await
                .unwrap()
                .datastore_id
                .clone(),
        );
    }
    let listed: Vec<String> = client
        .list_datastores()
        .send()
        .await
        .unwrap()
        .datastore_summaries()
        .iter()
        .map(|s| s.datastore_id().to_string())
        .collect();
    let newest_first: Vec<String> = created.into_iter().rev().collect();
    let first_wrong = listed.iter().zip(&newest_first).position(|(a, b)| a != b);
    assert_eq!(
        first_wrong, None,
        "ListDatastores is not newest first (ties within one createdAt millisecond?):\n\
         listed {listed:?}\nexpected {newest_first:?}"
    );
    srv.shutdown().await.unwrap();
}
