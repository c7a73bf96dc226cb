//! Tagging image-set ARNs through the SDK: TagResource / ListTagsForResource / UntagResource on
//! `…:datastore/{ds}/imageset/{is}`, with the image set seeded in the catalog (no operation
//! creates image sets before import jobs land). Deleted image sets cannot be tagged.

use lightbox_domain::{ImageSet, ImageSetId, ImageSetState, ImageSetWorkflowStatus, Millis};
use lightbox_sdk_tests::{TestServer, create_active};
use lightbox_storage::Catalog;

fn image_set(ds: &str, state: ImageSetState) -> ImageSet {
    ImageSet {
        datastore_id: lightbox_domain::DatastoreId::parse(ds).unwrap(),
        id: ImageSetId::generate(),
        version: 1,
        state,
        workflow_status: ImageSetWorkflowStatus::Created,
        is_primary: true,
        created_at: Millis(1_700_000_000_000),
        updated_at: Millis(1_700_000_000_000),
        deleted_at: None,
        last_accessed_at: Millis(1_700_000_000_000),
    }
}

#[tokio::test]
async fn image_set_arns_take_tags() {
    let srv = TestServer::start().await.unwrap();
    let client = srv.client();
    let ds = create_active(&client, "with-image-sets").await.unwrap();
    let catalog = srv.catalog().await.unwrap();
    let live = image_set(&ds, ImageSetState::Active);
    catalog.insert_image_set(&live).await.unwrap();
    let arn = format!("{}/imageset/{}", srv.datastore_arn(&ds), live.id);

    client
        .tag_resource()
        .resource_arn(&arn)
        .tags("study", "demo")
        .tags("owner", "radiology")
        .send()
        .await
        .unwrap();
    let tags = client
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tags().len(), 2);
    assert_eq!(tags.tags().get("study").map(String::as_str), Some("demo"));
    // Image-set tags are separate from the data store's.
    let ds_tags = client
        .list_tags_for_resource()
        .resource_arn(srv.datastore_arn(&ds))
        .send()
        .await
        .unwrap();
    assert!(ds_tags.tags().is_empty());

    client
        .untag_resource()
        .resource_arn(&arn)
        .tag_keys("study")
        .send()
        .await
        .unwrap();
    let tags = client
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tags().keys().collect::<Vec<_>>(), vec!["owner"]);

    // The image set keeps the data store from being deleted.
    let err = client
        .delete_datastore()
        .datastore_id(&ds)
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_conflict_exception()),
        "{err:?}"
    );

    // A deleted image set, or one in another data store, has no tags to give.
    let gone = image_set(&ds, ImageSetState::Deleted);
    catalog.insert_image_set(&gone).await.unwrap();
    let gone_arn = format!("{}/imageset/{}", srv.datastore_arn(&ds), gone.id);
    let err = client
        .tag_resource()
        .resource_arn(&gone_arn)
        .tags("a", "b")
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_resource_not_found_exception()),
        "{err:?}"
    );
    let other = create_active(&client, "other").await.unwrap();
    let wrong_parent = format!("{}/imageset/{}", srv.datastore_arn(&other), live.id);
    let err = client
        .list_tags_for_resource()
        .resource_arn(&wrong_parent)
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_resource_not_found_exception()),
        "{err:?}"
    );
}
