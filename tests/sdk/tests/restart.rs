//! Data stores and tags survive `shutdown()` + `start()` on the same data directory.

use lightbox_sdk_tests::aws_sdk_medicalimaging::types::{DatastoreStatus, LosslessStorageFormat};
use lightbox_sdk_tests::*;

#[tokio::test]
async fn everything_survives_a_restart() {
    let mut srv = TestServer::start().await.unwrap();
    let client = srv.client();
    let kept = client
        .create_datastore()
        .datastore_name("kept")
        .client_token("restart-token")
        .lossless_storage_format(LosslessStorageFormat::Jpeg2000Lossless)
        .kms_key_arn("arn:aws:kms:us-east-1:123456789012:alias/my-key")
        .tags("created", "at-create")
        .send()
        .await
        .unwrap()
        .datastore_id
        .clone();
    wait_active(&client, &kept).await.unwrap();
    let arn = srv.datastore_arn(&kept);
    client
        .tag_resource()
        .resource_arn(&arn)
        .tags("added", "later")
        .send()
        .await
        .unwrap();
    let second = create_active(&client, "second").await.unwrap();
    let gone = create_active(&client, "gone").await.unwrap();
    client
        .delete_datastore()
        .datastore_id(&gone)
        .send()
        .await
        .unwrap();
    wait_deleted(&client, &gone).await.unwrap();
    let before = client
        .get_datastore()
        .datastore_id(&kept)
        .send()
        .await
        .unwrap()
        .datastore_properties
        .unwrap();

    srv.restart().await.unwrap();
    let client = srv.client();

    let after = client
        .get_datastore()
        .datastore_id(&kept)
        .send()
        .await
        .unwrap()
        .datastore_properties
        .unwrap();
    assert_eq!(after, before, "GetDatastore differs after restart");
    let tags = client
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .unwrap()
        .tags()
        .clone();
    assert_eq!(tags.len(), 2, "{tags:?}");
    assert_eq!(tags["created"], "at-create");
    assert_eq!(tags["added"], "later");

    let active: Vec<String> = client
        .list_datastores()
        .datastore_status(DatastoreStatus::Active)
        .send()
        .await
        .unwrap()
        .datastore_summaries()
        .iter()
        .map(|s| s.datastore_id().to_string())
        .collect();
    assert_eq!(active, vec![second.clone(), kept.clone()], "newest first");
    let deleted = client.get_datastore().datastore_id(&gone).send().await;
    if let Ok(out) = deleted {
        assert_eq!(
            out.datastore_properties().unwrap().datastore_status(),
            &DatastoreStatus::Deleted
        );
    }

    // The idempotency token survives too.
    let again = client
        .create_datastore()
        .datastore_name("kept")
        .client_token("restart-token")
        .lossless_storage_format(LosslessStorageFormat::Jpeg2000Lossless)
        .kms_key_arn("arn:aws:kms:us-east-1:123456789012:alias/my-key")
        .tags("created", "at-create")
        .send()
        .await
        .unwrap();
    assert_eq!(again.datastore_id(), kept);

    // And the server keeps working: a new data store, untag, delete.
    let fresh = create_active(&client, "after-restart").await.unwrap();
    client
        .untag_resource()
        .resource_arn(&arn)
        .tag_keys("added")
        .send()
        .await
        .unwrap();
    client
        .delete_datastore()
        .datastore_id(&fresh)
        .send()
        .await
        .unwrap();

    // A second restart sees the changes made after the first.
    srv.restart().await.unwrap();
    let client = srv.client();
    let tags = client
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .unwrap()
        .tags()
        .clone();
    assert_eq!(tags.keys().collect::<Vec<_>>(), vec!["created"]);
    let status = client
        .get_datastore()
        .datastore_id(&fresh)
        .send()
        .await
        .unwrap()
        .datastore_properties
        .unwrap()
        .datastore_status;
    assert!(
        matches!(status, DatastoreStatus::Deleting | DatastoreStatus::Deleted),
        "{status:?}"
    );
    // A data store that was DELETING when the server stopped still reaches DELETED.
    wait_deleted(&client, &fresh).await.unwrap();
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn creating_at_shutdown_becomes_active_after_restart() {
    let mut srv =
        TestServer::start_with(|c| c.transition_delay = std::time::Duration::from_millis(800))
            .await
            .unwrap();
    let id = srv
        .client()
        .create_datastore()
        .datastore_name("in-flight")
        .send()
        .await
        .unwrap()
        .datastore_id
        .clone();
    srv.restart().await.unwrap();
    wait_active(&srv.client(), &id).await.unwrap();
    srv.shutdown().await.unwrap();
}
