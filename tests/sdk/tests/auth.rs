//! SigV4 authentication: raw requests signed by `aws-sigv4` with chosen keys, dates, services and
//! hosts (and unsigned ones), plus the SDK's view of the same failures.

use std::time::{Duration, SystemTime};

use lightbox_sdk_tests::aws_sdk_medicalimaging::error::ProvideErrorMetadata;
use lightbox_sdk_tests::*;

fn signer() -> Signer {
    Signer::default()
}

#[tokio::test]
async fn signed_request_works_and_request_id_is_set() {
    let srv = TestServer::start().await.unwrap();
    let resp = srv.raw("GET", "/datastore").signed().send().await.unwrap();
    let body = resp.assert_ok();
    assert_eq!(body["datastoreSummaries"], serde_json::json!([]));
    assert!(
        body.get("nextToken").is_none(),
        "no nextToken on the last page: {body}"
    );
    let rid = resp.header("x-amzn-RequestId").unwrap_or_default();
    assert!(
        is_uuid(rid),
        "success responses carry x-amzn-RequestId too: {rid:?}"
    );
    // The two ids differ per request.
    let again = srv.raw("GET", "/datastore").signed().send().await.unwrap();
    assert_ne!(again.header("x-amzn-RequestId"), Some(rid));
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn missing_authentication() {
    let srv = TestServer::start().await.unwrap();
    for (method, path) in [
        ("GET", "/datastore".to_string()),
        ("GET", format!("/datastore/{}", random_id())),
        ("DELETE", format!("/datastore/{}", random_id())),
    ] {
        let resp = srv.raw(method, &path).send().await.unwrap();
        resp.assert_error(403, "MissingAuthenticationTokenException");
    }
    let resp = srv
        .raw("POST", "/datastore")
        .json(&serde_json::json!({"datastoreName": "x", "clientToken": "t"}))
        .send()
        .await
        .unwrap();
    resp.assert_error(403, "MissingAuthenticationTokenException");
    // Nothing was created by the unsigned POST.
    let body = srv
        .raw("GET", "/datastore")
        .signed()
        .send()
        .await
        .unwrap()
        .assert_ok();
    assert_eq!(body["datastoreSummaries"], serde_json::json!([]));
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn unknown_access_key() {
    let srv = TestServer::start().await.unwrap();
    let s = Signer {
        access_key: "AKIDUNKNOWN".into(),
        ..signer()
    };
    let resp = srv.raw("GET", "/datastore").sign(&s).send().await.unwrap();
    resp.assert_error(403, "UnrecognizedClientException");

    let err = srv
        .client_with_keys("AKIDUNKNOWN", "test")
        .list_datastores()
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("UnrecognizedClientException"), "{err:?}");
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn wrong_secret() {
    let srv = TestServer::start().await.unwrap();
    let s = Signer {
        secret: "not-the-secret".into(),
        ..signer()
    };
    let resp = srv.raw("GET", "/datastore").sign(&s).send().await.unwrap();
    resp.assert_error(403, "InvalidSignatureException");

    let err = srv
        .client_with_keys("test", "wrong")
        .create_datastore()
        .datastore_name("x")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidSignatureException"), "{err:?}");
    let body = srv
        .raw("GET", "/datastore")
        .signed()
        .send()
        .await
        .unwrap()
        .assert_ok();
    assert_eq!(body["datastoreSummaries"], serde_json::json!([]));
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn tampered_requests() {
    let srv = TestServer::start().await.unwrap();
    let body = serde_json::json!({"datastoreName": "signed", "clientToken": "tok"});

    // Body changed after signing (the server hashes the body itself).
    let mut req = srv.raw("POST", "/datastore").json(&body).signed();
    req.body =
        serde_json::to_vec(&serde_json::json!({"datastoreName": "evil", "clientToken": "tok"}))
            .unwrap();
    req.send()
        .await
        .unwrap()
        .assert_error(403, "InvalidSignatureException");

    // Path changed after signing.
    let mut req = srv
        .raw("GET", &format!("/datastore/{}", random_id()))
        .signed();
    req.path_and_query = format!("/datastore/{}", random_id());
    req.send()
        .await
        .unwrap()
        .assert_error(403, "InvalidSignatureException");

    // Query changed after signing.
    let mut req = srv.raw("GET", "/datastore?maxResults=5").signed();
    req.path_and_query = "/datastore?maxResults=6".into();
    req.send()
        .await
        .unwrap()
        .assert_error(403, "InvalidSignatureException");

    // Signed header changed after signing.
    let req = srv
        .raw("POST", "/datastore")
        .json(&body)
        .signed()
        .set_header("content-type", "application/x-amz-json-1.1");
    req.send()
        .await
        .unwrap()
        .assert_error(403, "InvalidSignatureException");

    // Host changed after signing.
    let req = srv
        .raw("GET", "/datastore")
        .signed()
        .set_header("host", "example.com");
    req.send()
        .await
        .unwrap()
        .assert_error(403, "InvalidSignatureException");

    // Method changed after signing.
    let mut req = srv
        .raw("GET", &format!("/datastore/{}", random_id()))
        .signed();
    req.method = "DELETE".into();
    req.send()
        .await
        .unwrap()
        .assert_error(403, "InvalidSignatureException");

    // The untampered request works.
    srv.raw("POST", "/datastore")
        .json(&body)
        .signed()
        .send()
        .await
        .unwrap()
        .assert_ok();
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn clock_skew_window() {
    let srv = TestServer::start().await.unwrap();
    for offset in [-20 * 60i64, 20 * 60, -3600 * 24] {
        let time = if offset < 0 {
            SystemTime::now() - Duration::from_secs(offset.unsigned_abs())
        } else {
            SystemTime::now() + Duration::from_secs(offset as u64)
        };
        let s = Signer { time, ..signer() };
        let resp = srv.raw("GET", "/datastore").sign(&s).send().await.unwrap();
        let msg = resp.assert_error(403, "InvalidSignatureException");
        // AWS words the two directions differently: "Signature expired: ... is now earlier
        // than ..." for old dates, "Signature not yet current: ... is still later than ..." for
        // dates in the future.
        let want = if offset < 0 {
            "Signature expired"
        } else {
            "Signature not yet current"
        };
        assert!(
            msg.starts_with(want),
            "offset {offset}s: message {msg:?} should start with {want:?}"
        );
    }
    // Within the 15 minutes: accepted.
    for offset in [-10 * 60i64, 10 * 60] {
        let time = if offset < 0 {
            SystemTime::now() - Duration::from_secs(offset.unsigned_abs())
        } else {
            SystemTime::now() + Duration::from_secs(offset as u64)
        };
        let s = Signer { time, ..signer() };
        srv.raw("GET", "/datastore")
            .sign(&s)
            .send()
            .await
            .unwrap()
            .assert_ok();
    }
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn wrong_service_in_credential_scope() {
    // With the built-in S3 endpoint on (the default), `s3`-scoped requests go to it instead.
    let srv = TestServer::start_with(|c| c.builtin_s3 = false)
        .await
        .unwrap();
    for service in ["s3", "medical-imaging-runtime", "execute-api"] {
        let s = Signer {
            service: service.into(),
            ..signer()
        };
        let resp = srv.raw("GET", "/datastore").sign(&s).send().await.unwrap();
        let msg = resp.assert_error(403, "InvalidSignatureException");
        assert!(
            msg.contains("Credential should be scoped to correct service"),
            "service {service}: {msg:?}"
        );
    }
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn malformed_authorization_header() {
    let srv = TestServer::start().await.unwrap();
    let good = srv.raw("GET", "/datastore").signed();
    let auth = good
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .unwrap()
        .1
        .clone();
    let date = good
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-amz-date"))
        .unwrap()
        .1
        .clone();
    let without_signature = auth.split(", Signature=").next().unwrap().to_string();
    let without_credential = auth.replacen("Credential=", "Credentail=", 1);
    for bad in [
        "AWS4-HMAC-SHA256".to_string(),
        "AWS4-HMAC-SHA256 garbage".to_string(),
        without_signature,
        without_credential,
    ] {
        let resp = srv
            .raw("GET", "/datastore")
            .header("x-amz-date", &date)
            .header("authorization", &bad)
            .send()
            .await
            .unwrap();
        resp.assert_error(400, "IncompleteSignatureException");
    }
    // Signed request without X-Amz-Date.
    let no_date = good.clone();
    let mut no_date = no_date;
    no_date
        .headers
        .retain(|(k, _)| !k.eq_ignore_ascii_case("x-amz-date"));
    let resp = no_date.send().await.unwrap();
    assert!(
        resp.status == 400 || resp.status == 403,
        "no X-Amz-Date: {} {}",
        resp.status,
        resp.text()
    );
    assert!(
        matches!(
            resp.header("x-amzn-ErrorType"),
            Some(
                "IncompleteSignatureException"
                    | "InvalidSignatureException"
                    | "MissingAuthenticationTokenException"
            )
        ),
        "{:?}",
        resp.headers
    );
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn presigned_query_string() {
    let srv = TestServer::start().await.unwrap();
    let s = Signer {
        presign: Some(Duration::from_secs(300)),
        ..signer()
    };
    let req = srv.raw("GET", "/datastore").sign(&s);
    assert!(
        req.path_and_query.contains("X-Amz-Signature="),
        "{}",
        req.path_and_query
    );
    assert!(
        !req.headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
    );
    req.send().await.unwrap().assert_ok();

    // Presigned with extra query parameters.
    let req = srv.raw("GET", "/datastore?maxResults=3").sign(&s);
    req.send().await.unwrap().assert_ok();

    // Tampered presigned signature.
    let mut bad = srv.raw("GET", "/datastore").sign(&s);
    bad.path_and_query = bad
        .path_and_query
        .replace("X-Amz-Signature=", "X-Amz-Signature=0");
    let resp = bad.send().await.unwrap();
    assert_eq!(resp.status, 403, "{}", resp.text());

    // Expired presigned URL (signed an hour ago, valid 60 s).
    let old = Signer {
        presign: Some(Duration::from_secs(60)),
        time: SystemTime::now() - Duration::from_secs(3600),
        ..signer()
    };
    let resp = srv
        .raw("GET", "/datastore")
        .sign(&old)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status, 403, "{}", resp.text());
    assert!(resp.header("x-amzn-ErrorType").is_some());

    // Presigned with an unknown key.
    let unknown = Signer {
        access_key: "AKIDNOPE".into(),
        ..s.clone()
    };
    let resp = srv
        .raw("GET", "/datastore")
        .sign(&unknown)
        .send()
        .await
        .unwrap();
    resp.assert_error(403, "UnrecognizedClientException");
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn any_host_is_accepted_and_verified_as_received() {
    let srv = TestServer::start().await.unwrap();
    let port = srv.addr().port();
    for host in [
        format!("runtime-127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "medical-imaging.us-east-1.amazonaws.com".to_string(),
        "runtime-medical-imaging.us-east-1.amazonaws.com".to_string(),
    ] {
        srv.raw("GET", "/datastore")
            .host(&host)
            .signed()
            .send()
            .await
            .unwrap()
            .assert_ok();
    }
    // Signed for one host, sent with another.
    let req = srv
        .raw("GET", "/datastore")
        .host(&format!("runtime-127.0.0.1:{port}"))
        .signed()
        .set_header("host", &format!("127.0.0.1:{port}"));
    req.send()
        .await
        .unwrap()
        .assert_error(403, "InvalidSignatureException");
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn configured_credentials_replace_the_default() {
    let srv = TestServer::start_with(|c| {
        c.credentials = vec![
            ("AKIDLIGHTBOX1".into(), "secret-one".into()),
            ("AKIDLIGHTBOX2".into(), "secret-two".into()),
        ]
    })
    .await
    .unwrap();
    srv.client_with_keys("AKIDLIGHTBOX1", "secret-one")
        .list_datastores()
        .send()
        .await
        .unwrap();
    srv.client_with_keys("AKIDLIGHTBOX2", "secret-two")
        .list_datastores()
        .send()
        .await
        .unwrap();
    let err = srv
        .client_with_keys("AKIDLIGHTBOX1", "secret-two")
        .list_datastores()
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidSignatureException"), "{err:?}");
    let err = srv.client().list_datastores().send().await.unwrap_err();
    assert_eq!(
        err.code(),
        Some("UnrecognizedClientException"),
        "test/test must not work when credentials are configured: {err:?}"
    );
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn custom_region_and_account_in_arns() {
    let srv = TestServer::start_with(|c| {
        c.region = "eu-west-2".into();
        c.account_id = "123456789012".into();
    })
    .await
    .unwrap();
    // Sign for the server's region.
    let s = Signer {
        region: "eu-west-2".into(),
        ..signer()
    };
    let resp = srv
        .raw("POST", "/datastore")
        .json(&serde_json::json!({"datastoreName": "regional", "clientToken": "r1"}))
        .sign(&s)
        .send()
        .await
        .unwrap();
    let id = resp.assert_ok()["datastoreId"]
        .as_str()
        .unwrap()
        .to_string();
    let got = srv
        .raw("GET", &format!("/datastore/{id}"))
        .sign(&s)
        .send()
        .await
        .unwrap()
        .assert_ok();
    assert_eq!(
        got["datastoreProperties"]["datastoreArn"],
        format!("arn:aws:medical-imaging:eu-west-2:123456789012:datastore/{id}")
    );
    // The default-region ARN of that data store is someone else's resource.
    let foreign = encode_label(&format!(
        "arn:aws:medical-imaging:us-east-1:000000000000:datastore/{id}"
    ));
    srv.raw("GET", &format!("/tags/{foreign}"))
        .sign(&s)
        .send()
        .await
        .unwrap()
        .assert_error(404, "ResourceNotFoundException");
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn signed_x_amz_content_sha256_is_accepted() {
    use lightbox_sdk_tests::aws_sigv4::http_request::PayloadChecksumKind;
    let srv = TestServer::start().await.unwrap();
    let body = serde_json::json!({"datastoreName": "sha", "clientToken": "sha-1"});
    let req = srv
        .raw("POST", "/datastore")
        .json(&body)
        .sign_with(&Signer::default(), |s| {
            s.payload_checksum_kind = PayloadChecksumKind::XAmzSha256
        });
    assert!(
        req.headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("x-amz-content-sha256"))
    );
    req.send().await.unwrap().assert_ok();
    srv.shutdown().await.unwrap();
}
