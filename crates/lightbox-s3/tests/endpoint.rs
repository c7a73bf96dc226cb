//! The built-in S3 endpoint through the official Rust `aws-sdk-s3`, against a real Lightbox
//! server (`lightbox::start`) whose listener also serves the HealthImaging API.

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

struct Server {
    server: lightbox::Server,
    _dir: tempfile::TempDir,
}

async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut config = lightbox::Config::new(dir.path());
    config.credentials = vec![("AKIDS3TEST".into(), "s3-test-secret".into())];
    let server = lightbox::start(config).await.unwrap();
    Server { server, _dir: dir }
}

fn client(server: &Server, secret: &str) -> Client {
    let http_client = aws_smithy_http_client::Builder::new().build_http();
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(server.server.endpoint_url())
        .force_path_style(true)
        .credentials_provider(Credentials::new(
            "AKIDS3TEST",
            secret,
            None,
            None,
            "lightbox-s3-tests",
        ))
        .http_client(http_client)
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
        .build();
    Client::from_conf(conf)
}

fn code<E, R>(err: &aws_sdk_s3::error::SdkError<E, R>) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata,
{
    err.as_service_error()
        .and_then(|e| e.code())
        .unwrap_or("<no service error>")
        .to_owned()
}

#[tokio::test]
async fn objects_round_trip() {
    let server = start().await;
    let s3 = client(&server, "s3-test-secret");
    s3.create_bucket().bucket("studies").send().await.unwrap();
    let again = s3
        .create_bucket()
        .bucket("studies")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&again), "BucketAlreadyOwnedByYou");
    let bad = s3
        .create_bucket()
        .bucket("Bad_Name")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&bad), "InvalidBucketName");
    s3.head_bucket().bucket("studies").send().await.unwrap();
    let buckets = s3.list_buckets().send().await.unwrap();
    let names: Vec<_> = buckets.buckets().iter().filter_map(|b| b.name()).collect();
    assert_eq!(names, ["studies"]);

    let body = b"DICM-ish bytes".to_vec();
    s3.put_object()
        .bucket("studies")
        .key("in/study 1/a+b.dcm")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .unwrap();
    let head = s3
        .head_object()
        .bucket("studies")
        .key("in/study 1/a+b.dcm")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some(body.len() as i64));
    let got = s3
        .get_object()
        .bucket("studies")
        .key("in/study 1/a+b.dcm")
        .send()
        .await
        .unwrap();
    assert_eq!(got.body.collect().await.unwrap().into_bytes(), body);
    let range = s3
        .get_object()
        .bucket("studies")
        .key("in/study 1/a+b.dcm")
        .range("bytes=5-7")
        .send()
        .await
        .unwrap();
    assert_eq!(
        range.body.collect().await.unwrap().into_bytes().as_ref(),
        b"ish"
    );

    s3.copy_object()
        .bucket("studies")
        .key("out/copy.dcm")
        .copy_source("studies/in/study%201/a%2Bb.dcm")
        .send()
        .await
        .unwrap();
    let copy = s3
        .get_object()
        .bucket("studies")
        .key("out/copy.dcm")
        .send()
        .await
        .unwrap();
    assert_eq!(copy.body.collect().await.unwrap().into_bytes(), body);

    let busy = s3
        .delete_bucket()
        .bucket("studies")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&busy), "BucketNotEmpty");
    s3.delete_object()
        .bucket("studies")
        .key("in/study 1/a+b.dcm")
        .send()
        .await
        .unwrap();
    let gone = s3
        .get_object()
        .bucket("studies")
        .key("in/study 1/a+b.dcm")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&gone), "NoSuchKey");
    let gone = s3
        .head_object()
        .bucket("studies")
        .key("in/study 1/a+b.dcm")
        .send()
        .await
        .unwrap_err();
    assert!(gone.into_service_error().is_not_found());
    // The emptied folders went with the object: a key may now take the folder's name.
    s3.put_object()
        .bucket("studies")
        .key("in")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();

    let missing = s3
        .get_object()
        .bucket("no-such-bucket")
        .key("k")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&missing), "NoSuchBucket");
    let missing = s3
        .put_object()
        .bucket("no-such-bucket")
        .key("k")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&missing), "NoSuchBucket");
    let missing = s3
        .list_objects_v2()
        .bucket("no-such-bucket")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&missing), "NoSuchBucket");

    let bad_key = s3
        .put_object()
        .bucket("studies")
        .key("a/../b")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&bad_key), "InvalidArgument");

    s3.delete_objects()
        .bucket("studies")
        .delete(
            aws_sdk_s3::types::Delete::builder()
                .objects(
                    aws_sdk_s3::types::ObjectIdentifier::builder()
                        .key("in")
                        .build()
                        .unwrap(),
                )
                .objects(
                    aws_sdk_s3::types::ObjectIdentifier::builder()
                        .key("out/copy.dcm")
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    s3.delete_bucket().bucket("studies").send().await.unwrap();
    let missing = s3.head_bucket().bucket("studies").send().await.unwrap_err();
    assert!(missing.into_service_error().is_not_found());
    server.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn multipart_upload_of_20_mb() {
    let server = start().await;
    let s3 = client(&server, "s3-test-secret");
    s3.create_bucket().bucket("big").send().await.unwrap();
    let data: Vec<u8> = (0..20 * 1024 * 1024 + 12345)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let upload = s3
        .create_multipart_upload()
        .bucket("big")
        .key("in/large.dcm")
        .send()
        .await
        .unwrap();
    let upload_id = upload.upload_id().unwrap();
    let mut parts = Vec::new();
    for (i, chunk) in data.chunks(5 * 1024 * 1024).enumerate() {
        let n = i as i32 + 1;
        let part = s3
            .upload_part()
            .bucket("big")
            .key("in/large.dcm")
            .upload_id(upload_id)
            .part_number(n)
            .body(ByteStream::from(chunk.to_vec()))
            .send()
            .await
            .unwrap();
        parts.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(part.e_tag().unwrap())
                .build(),
        );
    }
    assert_eq!(parts.len(), 5);
    let done = s3
        .complete_multipart_upload()
        .bucket("big")
        .key("in/large.dcm")
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(
        done.e_tag().unwrap().ends_with("-5\""),
        "{:?}",
        done.e_tag()
    );
    let got = s3
        .get_object()
        .bucket("big")
        .key("in/large.dcm")
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_length(), Some(data.len() as i64));
    let bytes = got.body.collect().await.unwrap().into_bytes();
    assert!(bytes.as_ref() == data.as_slice(), "content differs");

    // An aborted upload leaves nothing behind.
    let upload = s3
        .create_multipart_upload()
        .bucket("big")
        .key("in/aborted.dcm")
        .send()
        .await
        .unwrap();
    s3.upload_part()
        .bucket("big")
        .key("in/aborted.dcm")
        .upload_id(upload.upload_id().unwrap())
        .part_number(1)
        .body(ByteStream::from_static(b"part"))
        .send()
        .await
        .unwrap();
    s3.abort_multipart_upload()
        .bucket("big")
        .key("in/aborted.dcm")
        .upload_id(upload.upload_id().unwrap())
        .send()
        .await
        .unwrap();
    let list = s3.list_objects_v2().bucket("big").send().await.unwrap();
    let keys: Vec<_> = list.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["in/large.dcm"]);
    server.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn lists_2500_keys_with_continuation_tokens() {
    let server = start().await;
    let s3 = client(&server, "s3-test-secret");
    s3.create_bucket().bucket("many").send().await.unwrap();
    let mut expected: Vec<String> = (0..2500)
        .map(|i| format!("in/study-{}/series-{}/{i:05}.dcm", i % 7, i % 3))
        .collect();
    expected.push("other/x".into());
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in expected.chunks(100) {
        let s3 = s3.clone();
        let keys = chunk.to_vec();
        tasks.spawn(async move {
            for key in keys {
                s3.put_object()
                    .bucket("many")
                    .key(&key)
                    .body(ByteStream::from(key.clone().into_bytes()))
                    .send()
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    expected.pop();
    expected.sort();

    let mut pages = s3
        .list_objects_v2()
        .bucket("many")
        .prefix("in/")
        .into_paginator()
        .send();
    let mut got = Vec::new();
    let mut page_count = 0;
    while let Some(page) = pages.next().await {
        let page = page.unwrap();
        page_count += 1;
        assert!(page.contents().len() <= 1000);
        got.extend(page.contents().iter().map(|o| o.key().unwrap().to_owned()));
    }
    assert_eq!(page_count, 3);
    assert_eq!(got, expected);

    // Small pages, v2 and v1.
    let mut pages = s3
        .list_objects_v2()
        .bucket("many")
        .prefix("in/study-3/")
        .max_keys(7)
        .into_paginator()
        .send();
    let mut got = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.unwrap();
        assert!(page.contents().len() <= 7);
        got.extend(page.contents().iter().map(|o| o.key().unwrap().to_owned()));
    }
    let want: Vec<_> = expected
        .iter()
        .filter(|k| k.starts_with("in/study-3/"))
        .cloned()
        .collect();
    assert_eq!(got, want);

    let mut got = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page = s3
            .list_objects()
            .bucket("many")
            .prefix("in/study-3/")
            .max_keys(50)
            .set_marker(marker.clone())
            .send()
            .await
            .unwrap();
        got.extend(page.contents().iter().map(|o| o.key().unwrap().to_owned()));
        if !page.is_truncated().unwrap_or(false) {
            break;
        }
        marker = got.last().cloned();
    }
    assert_eq!(got, want);

    // Delimiter listing: the folders one level down.
    let top = s3
        .list_objects_v2()
        .bucket("many")
        .delimiter("/")
        .send()
        .await
        .unwrap();
    let prefixes: Vec<_> = top
        .common_prefixes()
        .iter()
        .filter_map(|p| p.prefix())
        .collect();
    assert_eq!(prefixes, ["in/", "other/"]);
    server.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn refuses_bad_signatures_and_anonymous_requests() {
    let server = start().await;
    let good = client(&server, "s3-test-secret");
    good.create_bucket().bucket("private").send().await.unwrap();
    let bad = client(&server, "wrong-secret");
    let err = bad.list_buckets().send().await.unwrap_err();
    assert_eq!(code(&err), "SignatureDoesNotMatch");
    assert_eq!(err.raw_response().unwrap().status().as_u16(), 403);
    let err = bad
        .get_object()
        .bucket("private")
        .key("k")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.raw_response().unwrap().status().as_u16(), 403);

    // Unsigned: not S3-signed, so the HealthImaging pipeline refuses it.
    let addr = server.server.local_addr();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /private/k HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    server.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn long_keys_are_stored_too() {
    let server = start().await;
    let s3 = client(&server, "s3-test-secret");
    let bucket = "a-bucket-with-a-rather-long-name-for-testing-purposes";
    s3.create_bucket().bucket(bucket).send().await.unwrap();
    // DICOM UIDs as folder and file names: longer than s3s-fs's metadata file names allow.
    let uid = "1.2.840.113619.2.55.3.604688119.868.1249991640.520";
    let key = format!("in/{uid}/{uid}.1/{uid}.1.1.dcm");
    assert!(key.len() > 150);
    s3.put_object()
        .bucket(bucket)
        .key(&key)
        .content_type("application/dicom")
        .body(ByteStream::from_static(b"long"))
        .send()
        .await
        .unwrap();
    let got = s3
        .get_object()
        .bucket(bucket)
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        b"long"
    );

    let mp_key = format!("{key}.multipart");
    let data = vec![7u8; 6 * 1024 * 1024];
    let upload = s3
        .create_multipart_upload()
        .bucket(bucket)
        .key(&mp_key)
        .send()
        .await
        .unwrap();
    assert_eq!(upload.key(), Some(mp_key.as_str()));
    let id = upload.upload_id().unwrap();
    let mut parts = Vec::new();
    for (i, chunk) in data.chunks(5 * 1024 * 1024).enumerate() {
        let n = i as i32 + 1;
        let part = s3
            .upload_part()
            .bucket(bucket)
            .key(&mp_key)
            .upload_id(id)
            .part_number(n)
            .body(ByteStream::from(chunk.to_vec()))
            .send()
            .await
            .unwrap();
        parts.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(part.e_tag().unwrap())
                .build(),
        );
    }
    let done = s3
        .complete_multipart_upload()
        .bucket(bucket)
        .key(&mp_key)
        .upload_id(id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(done.key(), Some(mp_key.as_str()));
    let got = s3
        .get_object()
        .bucket(bucket)
        .key(&mp_key)
        .send()
        .await
        .unwrap();
    assert!(got.body.collect().await.unwrap().into_bytes().as_ref() == data.as_slice());

    let list = s3.list_objects_v2().bucket(bucket).send().await.unwrap();
    let keys: Vec<_> = list.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, [key.as_str(), mp_key.as_str()]);
    let buckets = s3.list_buckets().send().await.unwrap();
    assert_eq!(buckets.buckets().len(), 1);
    server.server.shutdown().await.unwrap();
}
