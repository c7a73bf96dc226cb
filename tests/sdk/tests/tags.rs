//! TagResource / ListTagsForResource / UntagResource through the official Rust SDK, plus the
//! raw wire forms (percent-encoded ARN label, repeated `tagKeys`).

use std::collections::HashMap;

use lightbox_sdk_tests::aws_sdk_medicalimaging::Client;
use lightbox_sdk_tests::aws_sdk_medicalimaging::operation::list_tags_for_resource::ListTagsForResourceError;
use lightbox_sdk_tests::aws_sdk_medicalimaging::operation::tag_resource::TagResourceError;
use lightbox_sdk_tests::aws_sdk_medicalimaging::operation::untag_resource::UntagResourceError;
use lightbox_sdk_tests::*;

async fn tags_of(client: &Client, arn: &str) -> HashMap<String, String> {
    client
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .unwrap()
        .tags()
        .clone()
}

#[tokio::test]
async fn tag_list_untag_roundtrip() {
    let srv = TestServer::start().await.unwrap();
    let client = srv.client();
    let id = create_active(&client, "tagged").await.unwrap();
    let arn = srv.datastore_arn(&id);

    assert!(tags_of(&client, &arn).await.is_empty());
    client
        .tag_resource()
        .resource_arn(&arn)
        .tags("Deployment", "Development")
        .tags("owner", "a+b=c.d_e:f/g-h")
        .tags("empty", "")
        .send()
        .await
        .unwrap();
    let tags = tags_of(&client, &arn).await;
    assert_eq!(tags.len(), 3);
    assert_eq!(tags["Deployment"], "Development");
    assert_eq!(tags["owner"], "a+b=c.d_e:f/g-h");
    assert_eq!(tags["empty"], "");

    // Overwrite a value.
    client
        .tag_resource()
        .resource_arn(&arn)
        .tags("Deployment", "Production")
        .send()
        .await
        .unwrap();
    assert_eq!(tags_of(&client, &arn).await["Deployment"], "Production");

    // Untag two keys at once (repeated tagKeys), plus one that does not exist.
    client
        .untag_resource()
        .resource_arn(&arn)
        .tag_keys("Deployment")
        .tag_keys("empty")
        .tag_keys("never-set")
        .send()
        .await
        .unwrap();
    let tags = tags_of(&client, &arn).await;
    assert_eq!(tags.keys().collect::<Vec<_>>(), vec!["owner"]);
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn raw_wire_forms() {
    let srv = TestServer::start().await.unwrap();
    let client = srv.client();
    let id = create_active(&client, "raw-tags").await.unwrap();
    let label = encode_label(&srv.datastore_arn(&id));
    assert!(label.contains("%3A") && label.contains("%2F"));

    srv.raw("POST", &format!("/tags/{label}"))
        .json(&serde_json::json!({"tags": {"k1": "v1", "k2": "v2", "k3": "v3"}}))
        .signed()
        .send()
        .await
        .unwrap()
        .assert_ok();
    let listed = srv
        .raw("GET", &format!("/tags/{label}"))
        .signed()
        .send()
        .await
        .unwrap()
        .assert_ok();
    assert_eq!(
        listed,
        serde_json::json!({"tags": {"k1": "v1", "k2": "v2", "k3": "v3"}})
    );
    srv.raw("DELETE", &format!("/tags/{label}?tagKeys=k1&tagKeys=k3"))
        .signed()
        .send()
        .await
        .unwrap()
        .assert_ok();
    let listed = srv
        .raw("GET", &format!("/tags/{label}"))
        .signed()
        .send()
        .await
        .unwrap()
        .assert_ok();
    assert_eq!(listed, serde_json::json!({"tags": {"k2": "v2"}}));

    // UntagResource without tagKeys: required member missing.
    let resp = srv
        .raw("DELETE", &format!("/tags/{label}"))
        .signed()
        .send()
        .await
        .unwrap();
    let msg = resp.assert_error(400, "ValidationException");
    assert!(msg.contains("tagKeys"), "{msg}");
    // TagResource without tags: required member missing.
    let resp = srv
        .raw("POST", &format!("/tags/{label}"))
        .json(&serde_json::json!({}))
        .signed()
        .send()
        .await
        .unwrap();
    let msg = resp.assert_error(400, "ValidationException");
    assert!(msg.contains("tags"), "{msg}");
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn fifty_tags_max() {
    let srv = TestServer::start().await.unwrap();
    let client = srv.client();
    let id = create_active(&client, "fifty").await.unwrap();
    let arn = srv.datastore_arn(&id);

    // 51 in one call.
    let mut req = client.tag_resource().resource_arn(&arn);
    for i in 0..51 {
        req = req.tags(format!("k{i}"), "v");
    }
    let err = req.send().await.unwrap_err();
    assert!(
        matches!(
            err.as_service_error(),
            Some(TagResourceError::ValidationException(_))
        ),
        "51 tags in one call: {err:?}"
    );
    assert!(tags_of(&client, &arn).await.is_empty());

    // 30 + 20 = 50 is fine; overwriting is fine; one more new key is not.
    let mut req = client.tag_resource().resource_arn(&arn);
    for i in 0..30 {
        req = req.tags(format!("k{i}"), "v");
    }
    req.send().await.unwrap();
    let mut req = client.tag_resource().resource_arn(&arn);
    for i in 30..50 {
        req = req.tags(format!("k{i}"), "v");
    }
    req.send().await.unwrap();
    client
        .tag_resource()
        .resource_arn(&arn)
        .tags("k0", "changed")
        .send()
        .await
        .unwrap();
    assert_eq!(tags_of(&client, &arn).await.len(), 50);
    let err = client
        .tag_resource()
        .resource_arn(&arn)
        .tags("k50", "v")
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.as_service_error(),
            Some(TagResourceError::ValidationException(_))
        ),
        "51st tag: {err:?}"
    );
    let tags = tags_of(&client, &arn).await;
    assert_eq!(tags.len(), 50);
    assert_eq!(tags["k0"], "changed");
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn tag_key_and_value_constraints() {
    let srv = TestServer::start().await.unwrap();
    let client = srv.client();
    let id = create_active(&client, "keys").await.unwrap();
    let arn = srv.datastore_arn(&id);
    for (key, value) in [
        ("aws:reserved", "v"),
        ("", "v"),
        (&*"k".repeat(129), "v"),
        ("ok", &*"v".repeat(257)),
        ("bad key!", "v"),
        ("with space", "v"),
    ] {
        let err = client
            .tag_resource()
            .resource_arn(&arn)
            .tags(key, value)
            .send()
            .await
            .unwrap_err();
        assert!(
            matches!(
                err.as_service_error(),
                Some(TagResourceError::ValidationException(_))
            ),
            "tag {key:?}={value:?}: {err:?}"
        );
    }
    assert!(tags_of(&client, &arn).await.is_empty());
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn unknown_foreign_and_malformed_arns() {
    let srv = TestServer::start().await.unwrap();
    let client = srv.client();
    let id = create_active(&client, "mine").await.unwrap();

    let not_found = [
        srv.datastore_arn(&random_id()),
        format!("arn:aws:medical-imaging:eu-west-1:000000000000:datastore/{id}"),
        format!("arn:aws:medical-imaging:us-east-1:123456789012:datastore/{id}"),
        format!(
            "arn:aws:medical-imaging:us-east-1:000000000000:datastore/{id}/imageset/{}",
            random_id()
        ),
    ];
    for arn in &not_found {
        let err = client
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .unwrap_err();
        assert!(
            matches!(
                err.as_service_error(),
                Some(ListTagsForResourceError::ResourceNotFoundException(_))
            ),
            "ListTags {arn}: {err:?}"
        );
        let err = client
            .tag_resource()
            .resource_arn(arn)
            .tags("a", "b")
            .send()
            .await
            .unwrap_err();
        assert!(
            matches!(
                err.as_service_error(),
                Some(TagResourceError::ResourceNotFoundException(_))
            ),
            "Tag {arn}: {err:?}"
        );
        let err = client
            .untag_resource()
            .resource_arn(arn)
            .tag_keys("a")
            .send()
            .await
            .unwrap_err();
        assert!(
            matches!(
                err.as_service_error(),
                Some(UntagResourceError::ResourceNotFoundException(_))
            ),
            "Untag {arn}: {err:?}"
        );
    }

    let malformed = [
        "not-an-arn".to_string(),
        format!("arn:aws:s3:us-east-1:000000000000:datastore/{id}"),
        format!(
            "arn:aws:medical-imaging:us-east-1:000000000000:datastore/{}",
            id.to_uppercase()
        ),
        "arn:aws:medical-imaging:us-east-1:000000000000:datastore/abc".to_string(),
        format!("arn:aws:medical-imaging:us-east-1:0000:datastore/{id}"),
    ];
    for arn in &malformed {
        let err = client
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .unwrap_err();
        match err.as_service_error() {
            Some(ListTagsForResourceError::ValidationException(e)) => assert!(
                e.message().contains("resourceArn"),
                "message should name resourceArn: {}",
                e.message()
            ),
            _ => panic!("ListTags {arn}: expected ValidationException, got {err:?}"),
        }
        let err = client
            .tag_resource()
            .resource_arn(arn)
            .tags("a", "b")
            .send()
            .await
            .unwrap_err();
        assert!(
            matches!(
                err.as_service_error(),
                Some(TagResourceError::ValidationException(_))
            ),
            "Tag {arn}: {err:?}"
        );
        let err = client
            .untag_resource()
            .resource_arn(arn)
            .tag_keys("a")
            .send()
            .await
            .unwrap_err();
        assert!(
            matches!(
                err.as_service_error(),
                Some(UntagResourceError::ValidationException(_))
            ),
            "Untag {arn}: {err:?}"
        );
    }
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn deleted_datastore_has_no_tags() {
    let srv = TestServer::start().await.unwrap();
    let client = srv.client();
    let id = create_active(&client, "gone").await.unwrap();
    let arn = srv.datastore_arn(&id);
    client
        .tag_resource()
        .resource_arn(&arn)
        .tags("a", "b")
        .send()
        .await
        .unwrap();
    client
        .delete_datastore()
        .datastore_id(&id)
        .send()
        .await
        .unwrap();
    wait_deleted(&client, &id).await.unwrap();
    let err = client
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.as_service_error(),
            Some(ListTagsForResourceError::ResourceNotFoundException(_))
        ),
        "{err:?}"
    );
    let err = client
        .tag_resource()
        .resource_arn(&arn)
        .tags("c", "d")
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.as_service_error(),
            Some(TagResourceError::ResourceNotFoundException(_))
        ),
        "{err:?}"
    );
    let err = client
        .untag_resource()
        .resource_arn(&arn)
        .tag_keys("a")
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.as_service_error(),
            Some(UntagResourceError::ResourceNotFoundException(_))
        ),
        "{err:?}"
    );
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn untag_key_list_limits() {
    let srv = TestServer::start().await.unwrap();
    let client = srv.client();
    let id = create_active(&client, "untag-limits").await.unwrap();
    let arn = srv.datastore_arn(&id);
    client
        .tag_resource()
        .resource_arn(&arn)
        .tags("keep", "v")
        .send()
        .await
        .unwrap();
    // TagKeyList holds at most 200 keys.
    let mut req = client.untag_resource().resource_arn(&arn);
    for i in 0..201 {
        req = req.tag_keys(format!("k{i}"));
    }
    let err = req.send().await.unwrap_err();
    assert!(
        matches!(
            err.as_service_error(),
            Some(UntagResourceError::ValidationException(_))
        ),
        "201 tagKeys: {err:?}"
    );
    let mut req = client.untag_resource().resource_arn(&arn);
    for i in 0..200 {
        req = req.tag_keys(format!("k{i}"));
    }
    req.send().await.unwrap();
    // An invalid key in the list.
    let err = client
        .untag_resource()
        .resource_arn(&arn)
        .tag_keys("aws:x")
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.as_service_error(),
            Some(UntagResourceError::ValidationException(_))
        ),
        "untag aws: key: {err:?}"
    );
    assert_eq!(tags_of(&client, &arn).await.len(), 1);
    srv.shutdown().await.unwrap();
}
