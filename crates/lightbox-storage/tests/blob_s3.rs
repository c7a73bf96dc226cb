//! The BlobStore conformance suite on S3 (`ObjectBlobStore::s3` against the testkit's in-process
//! s3s-fs server with SigV4, under a key prefix), the startup reachability errors, and
//! `parse_blob_store_url`. With LIGHTBOX_TEST_MOTO_URL set (a running `moto_server`), the suite
//! also runs against moto.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use lightbox_storage::blob::{BlobStoreLocation, S3Settings, parse_blob_store_url};
use lightbox_storage::{BlobStore, ObjectBlobStore, testsuite};
use lightbox_testkit::{TestS3, start_s3};

fn settings(s3: &TestS3, bucket: &str, prefix: &str) -> S3Settings {
    S3Settings {
        bucket: bucket.into(),
        prefix: prefix.into(),
        endpoint: Some(s3.endpoint_url()),
        region: s3.region.clone(),
        access_key_id: Some(s3.access_key.clone()),
        secret_access_key: Some(s3.secret_key.clone()),
        allow_http: true,
        force_path_style: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_blob_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = start_s3(dir.path()).await.unwrap();
    s3.create_bucket("lightbox-blobs").unwrap();
    let store = ObjectBlobStore::s3(&settings(&s3, "lightbox-blobs", "node/data")).unwrap();
    store.check_reachable().await.unwrap();
    testsuite::blob::run(Arc::new(store.clone())).await;

    // Keys live under the prefix, and a store without the prefix sees them there.
    store
        .put("p/key", Bytes::from_static(b"under prefix"))
        .await
        .unwrap();
    assert!(dir.path().join("lightbox-blobs/node/data/p/key").is_file());
    let root = ObjectBlobStore::s3(&settings(&s3, "lightbox-blobs", "")).unwrap();
    assert_eq!(
        root.get("node/data/p/key").await.unwrap().unwrap(),
        &b"under prefix"[..]
    );
    assert_eq!(root.list("node/data/p").await.unwrap(), ["node/data/p/key"]);
    assert_eq!(store.list("p").await.unwrap(), ["p/key"]);
    s3.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conditional_put_is_atomic_under_contention() {
    // Repeats the race many times: s3s-fs alone checks then writes, so this guards the testkit's
    // per-key serialization of conditional writes as much as the client side.
    let dir = tempfile::tempdir().unwrap();
    let s3 = start_s3(dir.path()).await.unwrap();
    s3.create_bucket("race-bucket").unwrap();
    let store: Arc<dyn BlobStore> =
        Arc::new(ObjectBlobStore::s3(&settings(&s3, "race-bucket", "r")).unwrap());
    for round in 0..20 {
        let key = format!("k/{round}");
        let tasks: Vec<_> = (0..8u8)
            .map(|i| {
                let (store, key) = (store.clone(), key.clone());
                tokio::spawn(async move {
                    store
                        .put_if_absent(&key, Bytes::from(vec![i; 4096]))
                        .await
                        .unwrap()
                        .then_some(i)
                })
            })
            .collect();
        let mut winners = vec![];
        for t in tasks {
            winners.extend(t.await.unwrap());
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        assert_eq!(
            store.get(&key).await.unwrap().unwrap(),
            Bytes::from(vec![winners[0]; 4096])
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reachable_explains_failures() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = start_s3(dir.path()).await.unwrap();
    s3.create_bucket("present").unwrap();

    let ok = ObjectBlobStore::s3(&settings(&s3, "present", "")).unwrap();
    ok.check_reachable().await.unwrap();

    let missing = ObjectBlobStore::s3(&settings(&s3, "no-such-bucket", "x")).unwrap();
    let msg = missing.check_reachable().await.unwrap_err().to_string();
    eprintln!("missing bucket: {msg}");
    assert!(
        msg.contains("\"no-such-bucket\" does not exist"),
        "missing bucket: {msg}"
    );

    let mut wrong = settings(&s3, "present", "");
    wrong.secret_access_key = Some("not-the-secret-value".into());
    let msg = ObjectBlobStore::s3(&wrong)
        .unwrap()
        .check_reachable()
        .await
        .unwrap_err()
        .to_string();
    eprintln!("wrong secret: {msg}");
    assert!(
        msg.contains("denied") && msg.contains("wrong secret"),
        "wrong secret: {msg}"
    );
    assert!(
        !msg.contains("not-the-secret-value"),
        "secret leaked: {msg}"
    );
    assert!(!msg.contains(&s3.secret_key), "secret leaked: {msg}");

    let mut unknown = settings(&s3, "present", "");
    unknown.access_key_id = Some("someone-else".into());
    let msg = ObjectBlobStore::s3(&unknown)
        .unwrap()
        .check_reachable()
        .await
        .unwrap_err()
        .to_string();
    eprintln!("unknown key: {msg}");
    assert!(
        msg.contains("denied") && msg.contains("access key id"),
        "unknown key: {msg}"
    );
    assert!(!msg.contains(&s3.secret_key), "secret leaked: {msg}");

    // Nothing listens on the port of a stopped server.
    let endpoint = s3.endpoint_url();
    let cfg = settings(&s3, "present", "");
    s3.shutdown().await;
    let t0 = std::time::Instant::now();
    let msg = ObjectBlobStore::s3(&cfg)
        .unwrap()
        .check_reachable()
        .await
        .unwrap_err()
        .to_string();
    eprintln!("unreachable ({:?}): {msg}", t0.elapsed());
    assert!(
        msg.contains(&format!("endpoint {endpoint} is unreachable")),
        "unreachable: {msg}"
    );
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(20),
        "took {:?}",
        t0.elapsed()
    );
}

#[test]
fn s3_settings_are_validated_and_never_print_the_secret() {
    let base = S3Settings {
        bucket: "good-bucket".into(),
        endpoint: Some("http://127.0.0.1:9".into()),
        access_key_id: Some("AKID".into()),
        secret_access_key: Some("top-secret-value".into()),
        allow_http: true,
        force_path_style: true,
        ..Default::default()
    };
    assert!(!format!("{base:?}").contains("top-secret-value"));
    ObjectBlobStore::s3(&base).unwrap();

    let fails = |f: &dyn Fn(&mut S3Settings)| {
        let mut s = base.clone();
        f(&mut s);
        let msg = ObjectBlobStore::s3(&s)
            .err()
            .expect("should fail")
            .to_string();
        assert!(!msg.contains("top-secret-value"), "{msg}");
        msg
    };
    assert!(fails(&|s| s.bucket = "Bad_Bucket".into()).contains("bucket name"));
    assert!(fails(&|s| s.allow_http = false).contains("http"));
    assert!(fails(&|s| s.endpoint = Some("127.0.0.1:9000".into())).contains("not a URL"));
    assert!(fails(&|s| s.secret_access_key = None).contains("no secret"));
    assert!(fails(&|s| s.prefix = "a//b".into()).contains("prefix"));
}

#[test]
fn blob_store_urls() {
    let s3 = |b: &str, p: &str| BlobStoreLocation::S3 {
        bucket: b.into(),
        prefix: p.into(),
    };
    let local = |p: &str| BlobStoreLocation::Local(PathBuf::from(p));
    for (url, want) in [
        ("s3://bucket", s3("bucket", "")),
        ("s3://bucket/", s3("bucket", "")),
        ("s3://my.bucket-1/a/b", s3("my.bucket-1", "a/b")),
        ("s3://bucket/a/b/", s3("bucket", "a/b")),
        ("S3://bucket/x", s3("bucket", "x")),
        (
            "file:///var/lib/lightbox/blobs",
            local("/var/lib/lightbox/blobs"),
        ),
        ("file://localhost/srv/blobs", local("/srv/blobs")),
        ("/var/lib/lightbox/blobs", local("/var/lib/lightbox/blobs")),
        ("data/blobs", local("data/blobs")),
        ("./blobs", local("./blobs")),
    ] {
        assert_eq!(parse_blob_store_url(url).unwrap(), want, "{url}");
    }
    for url in [
        "",
        "   ",
        "s3://",
        "s3:///prefix",
        "s3://ab",
        "s3://UPPER",
        "s3://under_score",
        "s3://-bucket",
        "s3://bucket-",
        "s3://bucket/a//b",
        "s3://bucket/a/../b",
        "s3://bucket?versionId=1",
        "s3://bucket/a#frag",
        "s3:bucket",
        "http://bucket/prefix",
        "gs://bucket",
        "file://host/path",
        "file://relative/path",
        "file:relative",
        "nul\0byte",
    ] {
        assert!(parse_blob_store_url(url).is_err(), "accepted {url:?}");
    }
    let msg = parse_blob_store_url("s3://AKID:secret-in-url@bucket/p")
        .unwrap_err()
        .to_string();
    assert!(!msg.contains("secret-in-url"), "{msg}");
}

/// Runs the suite against a moto server when LIGHTBOX_TEST_MOTO_URL is set
/// (`moto_server -H 127.0.0.1 -p PORT`; moto accepts any credentials and creates the bucket).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn moto_blob_store_conforms() {
    let Ok(url) = std::env::var("LIGHTBOX_TEST_MOTO_URL") else {
        eprintln!("skipped: LIGHTBOX_TEST_MOTO_URL is not set");
        return;
    };
    let bucket = format!("lightbox-{}", std::process::id());
    let cfg = S3Settings {
        bucket: bucket.clone(),
        prefix: "moto/prefix".into(),
        endpoint: Some(url.clone()),
        region: "us-east-1".into(),
        access_key_id: Some("testing".into()),
        secret_access_key: Some("testing".into()),
        allow_http: true,
        force_path_style: true,
    };
    // moto: creating a bucket is a plain PUT on the bucket path.
    let status = std::process::Command::new("curl")
        .args(["-sf", "-X", "PUT", &format!("{url}/{bucket}")])
        .status()
        .expect("curl");
    assert!(status.success(), "creating the moto bucket failed");
    let store = ObjectBlobStore::s3(&cfg).unwrap();
    store.check_reachable().await.unwrap();
    testsuite::blob::run(Arc::new(store)).await;

    let missing = S3Settings {
        bucket: format!("{bucket}-missing"),
        ..cfg
    };
    let msg = ObjectBlobStore::s3(&missing)
        .unwrap()
        .check_reachable()
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains("does not exist"), "missing bucket: {msg}");
}
