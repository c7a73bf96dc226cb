//! `S3Access` through both implementations: `BuiltinS3` (the built-in endpoint's tree, written
//! through the endpoint and read back, and the other way round) and `ExternalS3` (against the
//! testkit's s3s-fs server over HTTP with SigV4).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use lightbox_s3::{BuiltinS3, ExternalS3, ExternalS3Config, S3Access, S3AccessError, S3Endpoint};

/// 1203 keys under `in/` in nested folders plus one outside, in key order.
fn keys() -> Vec<String> {
    let mut keys: Vec<String> = (0..1203)
        .map(|i| format!("in/s{}/{}/{i}.dcm", i % 4, i % 5))
        .collect();
    keys.sort();
    keys
}

/// `put_checks_bucket`: the testkit's plain s3s-fs creates a missing bucket on PutObject (the
/// built-in endpoint does not), so only some servers can be asked for NoSuchBucket on a put.
async fn exercise(s3: &dyn S3Access, bucket: &str, put_checks_bucket: bool) {
    let keys = keys();
    for k in &keys {
        s3.put(bucket, k, Bytes::from(k.clone())).await.unwrap();
    }
    s3.put(bucket, "other/x.dcm", Bytes::from_static(b"x"))
        .await
        .unwrap();
    s3.put(bucket, "in-between", Bytes::from_static(b"y"))
        .await
        .unwrap();

    let mut got = Vec::new();
    let mut next = None;
    let mut pages = 0;
    loop {
        let page = s3.list(bucket, "in/", next).await.unwrap();
        pages += 1;
        assert!(page.objects.len() <= 1000);
        for o in &page.objects {
            assert_eq!(o.size, o.key.len() as u64, "{}", o.key);
        }
        got.extend(page.objects.into_iter().map(|o| o.key));
        next = page.next;
        if next.is_none() {
            break;
        }
    }
    assert_eq!(pages, 2);
    assert_eq!(got, keys);

    // A prefix that is not a whole folder name.
    let page = s3.list(bucket, "in", None).await.unwrap();
    assert_eq!(page.objects[0].key, "in-between");
    let page = s3.list(bucket, "in/s1/3/", None).await.unwrap();
    let want: Vec<_> = keys.iter().filter(|k| k.starts_with("in/s1/3/")).collect();
    assert_eq!(
        page.objects.iter().map(|o| &o.key).collect::<Vec<_>>(),
        want
    );
    assert!(page.next.is_none());

    let key = &keys[17];
    let body = s3.get(bucket, key, 1 << 20).await.unwrap();
    assert_eq!(body, key.as_bytes());
    let exact = s3.get(bucket, key, key.len() as u64).await.unwrap();
    assert_eq!(exact.len(), key.len());
    match s3.get(bucket, key, 3).await {
        Err(S3AccessError::TooLarge { size, max: 3 }) => assert_eq!(size, key.len() as u64),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(matches!(
        s3.get(bucket, "in/missing.dcm", 10).await,
        Err(S3AccessError::NoSuchKey)
    ));
    assert!(matches!(
        s3.list("no-such-bucket", "", None).await,
        Err(S3AccessError::NoSuchBucket)
    ));
    assert!(matches!(
        s3.get("no-such-bucket", "k", 10).await,
        Err(S3AccessError::NoSuchBucket | S3AccessError::NoSuchKey)
    ));
    if put_checks_bucket {
        let err = s3
            .put("no-such-bucket", "k", Bytes::from_static(b"x"))
            .await
            .unwrap_err();
        assert!(matches!(err, S3AccessError::NoSuchBucket), "{err:?}");
        assert!(!err.to_string().contains("no-such-bucket"));
    }

    // Overwrite.
    s3.put(bucket, key, Bytes::from_static(b"new"))
        .await
        .unwrap();
    assert_eq!(s3.get(bucket, key, 10).await.unwrap(), "new");
}

#[tokio::test]
async fn builtin_s3_through_the_trait() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let s3 = BuiltinS3::open(dir.path()).unwrap();
    exercise(&s3, "data", true).await;
    // Nothing of s3s-fs's own bookkeeping shows up in a listing.
    let page = s3.list("data", "", None).await.unwrap();
    assert!(page.objects.iter().all(|o| !o.key.starts_with('.')));
}

#[tokio::test]
async fn builtin_s3_shares_the_endpoint_store() {
    let dir = tempfile::tempdir().unwrap();
    let creds = HashMap::from([("k".to_owned(), "s".to_owned())]);
    let endpoint = Arc::new(S3Endpoint::new(dir.path(), &creds).unwrap());
    std::fs::create_dir_all(dir.path().join("shared")).unwrap();
    let s3 = endpoint.builtin_access();
    s3.put("shared", "out/a.json", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    let page = s3.list("shared", "out/", None).await.unwrap();
    assert_eq!(page.objects.len(), 1);
    assert_eq!(page.objects[0].key, "out/a.json");
}

#[tokio::test]
async fn external_s3_through_the_trait() {
    let dir = tempfile::tempdir().unwrap();
    let server = lightbox_testkit::start_s3(dir.path()).await.unwrap();
    server.create_bucket("imports").unwrap();
    let s3 = ExternalS3::new(ExternalS3Config {
        endpoint: Some(server.endpoint_url()),
        region: Some(server.region.clone()),
        access_key_id: Some(server.access_key.clone()),
        secret_access_key: Some(server.secret_key.clone()),
        virtual_hosted_style: false,
    })
    .unwrap();
    exercise(&s3, "imports", false).await;

    let wrong = ExternalS3::new(ExternalS3Config {
        endpoint: Some(server.endpoint_url()),
        region: Some(server.region.clone()),
        access_key_id: Some(server.access_key.clone()),
        secret_access_key: Some("wrong".into()),
        virtual_hosted_style: false,
    })
    .unwrap();
    let err = wrong.list("imports", "", None).await.unwrap_err();
    assert!(matches!(err, S3AccessError::AccessDenied(_)), "{err:?}");

    assert!(
        ExternalS3::new(ExternalS3Config {
            endpoint: Some("minio:9000".into()),
            ..Default::default()
        })
        .is_err()
    );
    server.shutdown().await;
}
