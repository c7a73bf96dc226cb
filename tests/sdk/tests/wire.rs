//! The rest-json layer on the wire: error shape and headers, every constraint class, malformed
//! and oversized bodies, unknown operations, and tolerance of unknown inputs.

use lightbox_sdk_tests::*;
use serde_json::json;

async fn create_raw(srv: &TestServer, body: serde_json::Value) -> RawResponse {
    srv.raw("POST", "/datastore")
        .json(&body)
        .signed()
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn create_and_get_on_the_wire() {
    let srv = TestServer::start().await.unwrap();
    let resp = create_raw(&srv, json!({"datastoreName": "wire", "clientToken": "c1"})).await;
    let body = resp.assert_ok();
    assert_eq!(body["datastoreStatus"], "CREATING");
    let id = body["datastoreId"].as_str().unwrap().to_string();
    assert!(
        resp.header("content-type")
            .is_some_and(|v| v.starts_with("application/json")),
        "{:?}",
        resp.headers
    );
    wait_active(&srv.client(), &id).await.unwrap();
    let got = srv
        .raw("GET", &format!("/datastore/{id}"))
        .signed()
        .send()
        .await
        .unwrap()
        .assert_ok();
    assert_eq!(got["datastoreProperties"]["datastoreName"], "wire");
    assert_eq!(got["datastoreProperties"]["datastoreId"], id.as_str());
    let del = srv
        .raw("DELETE", &format!("/datastore/{id}"))
        .signed()
        .send()
        .await
        .unwrap()
        .assert_ok();
    assert_eq!(
        del,
        json!({"datastoreId": id, "datastoreStatus": "DELETING"})
    );
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn pattern_violation_message_is_aws_style() {
    let srv = TestServer::start().await.unwrap();
    let resp = create_raw(
        &srv,
        json!({"datastoreName": "bad name!", "clientToken": "c"}),
    )
    .await;
    let msg = resp.assert_error(400, "ValidationException");
    assert_eq!(
        msg,
        "1 validation error detected: Value 'bad name!' at 'datastoreName' failed to satisfy \
         constraint: Member must satisfy regular expression pattern: [A-Za-z0-9._/#-]+"
    );
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn every_constraint_class_on_create() {
    let srv = TestServer::start().await.unwrap();
    let cases = [
        // required
        ("required", json!({"datastoreName": "x"}), "clientToken"),
        // length
        (
            "length max",
            json!({"datastoreName": "x".repeat(257), "clientToken": "c"}),
            "datastoreName",
        ),
        (
            "length min",
            json!({"datastoreName": "", "clientToken": "c"}),
            "datastoreName",
        ),
        (
            "token length",
            json!({"datastoreName": "x", "clientToken": "t".repeat(65)}),
            "clientToken",
        ),
        // pattern
        (
            "token pattern",
            json!({"datastoreName": "x", "clientToken": "a b"}),
            "clientToken",
        ),
        (
            "kms pattern",
            json!({"datastoreName": "x", "clientToken": "c", "kmsKeyArn": "arn:aws:kms:us-east-1:1:key/x"}),
            "kmsKeyArn",
        ),
        (
            "lambda pattern",
            json!({"datastoreName": "x", "clientToken": "c", "lambdaAuthorizerArn": "lambda"}),
            "lambdaAuthorizerArn",
        ),
        // enum
        (
            "enum",
            json!({"datastoreName": "x", "clientToken": "c", "losslessStorageFormat": "htj2k"}),
            "losslessStorageFormat",
        ),
    ];
    for (what, body, member) in cases {
        let resp = create_raw(&srv, body).await;
        let msg = resp.assert_error(400, "ValidationException");
        assert!(
            msg.contains("validation error") && msg.contains(member),
            "{what}: message should name {member}: {msg}"
        );
    }
    let list = srv
        .raw("GET", "/datastore")
        .signed()
        .send()
        .await
        .unwrap()
        .assert_ok();
    assert_eq!(
        list["datastoreSummaries"],
        json!([]),
        "nothing may be created"
    );
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn range_enum_and_token_on_list() {
    let srv = TestServer::start().await.unwrap();
    for _ in 0..2 {
        create_raw(
            &srv,
            json!({"datastoreName": "l", "clientToken": random_id()}),
        )
        .await
        .assert_ok();
    }
    for (query, member) in [
        ("maxResults=0", "maxResults"),
        ("maxResults=51", "maxResults"),
        ("datastoreStatus=active", "datastoreStatus"),
        ("nextToken=forged", "nextToken"),
        ("nextToken=", "nextToken"),
    ] {
        let resp = srv
            .raw("GET", &format!("/datastore?{query}"))
            .signed()
            .send()
            .await
            .unwrap();
        let msg = resp.assert_error(400, "ValidationException");
        assert!(msg.contains(member), "{query}: should name {member}: {msg}");
    }
    // Non-numeric maxResults is a client error too.
    let resp = srv
        .raw("GET", "/datastore?maxResults=ten")
        .signed()
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert!(matches!(
        resp.header("x-amzn-ErrorType"),
        Some("ValidationException" | "SerializationException")
    ));
    // Bounds are inclusive.
    for ok in ["maxResults=1", "maxResults=50", "datastoreStatus=ACTIVE"] {
        srv.raw("GET", &format!("/datastore?{ok}"))
            .signed()
            .send()
            .await
            .unwrap()
            .assert_ok();
    }
    // A real token, altered in every way we can think of.
    let page = srv
        .raw("GET", "/datastore?maxResults=1")
        .signed()
        .send()
        .await
        .unwrap()
        .assert_ok();
    let token = page["nextToken"].as_str().expect("nextToken").to_string();
    let mut flipped = token.clone().into_bytes();
    let last = flipped.len() - 2;
    flipped[last] = if flipped[last] == b'a' { b'b' } else { b'a' };
    let flipped = String::from_utf8(flipped).unwrap();
    for forged in [flipped, format!("{token}AA"), token[1..].to_string()] {
        let resp = srv
            .raw(
                "GET",
                &format!(
                    "/datastore?maxResults=1&nextToken={}",
                    encode_label(&forged)
                ),
            )
            .signed()
            .send()
            .await
            .unwrap();
        let msg = resp.assert_error(400, "ValidationException");
        assert!(msg.contains("nextToken"), "{msg}");
    }
    let next = srv
        .raw(
            "GET",
            &format!("/datastore?maxResults=1&nextToken={}", encode_label(&token)),
        )
        .signed()
        .send()
        .await
        .unwrap()
        .assert_ok();
    assert_eq!(next["datastoreSummaries"].as_array().unwrap().len(), 1);
    assert!(next.get("nextToken").is_none(), "last page: {next}");
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn malformed_json_is_serialization_exception() {
    let srv = TestServer::start().await.unwrap();
    for body in [
        &b"{not json"[..],
        b"{\"datastoreName\": \"x\", ",
        b"\xff\xfe",
    ] {
        let resp = srv
            .raw("POST", "/datastore")
            .header("content-type", "application/json")
            .body(body)
            .signed()
            .send()
            .await
            .unwrap();
        resp.assert_error(400, "SerializationException");
    }
    // Well-formed JSON of the wrong shape: still a 400 client error, never a 500.
    for body in [
        json!([]),
        json!("string"),
        json!({"datastoreName": 5, "clientToken": "c"}),
        json!({"datastoreName": "x", "clientToken": "c", "tags": ["a"]}),
        json!({"datastoreName": "x", "clientToken": "c", "tags": {"a": 1}}),
    ] {
        let resp = create_raw(&srv, body.clone()).await;
        assert_eq!(resp.status, 400, "{body}: {}", resp.text());
        assert!(
            matches!(
                resp.header("x-amzn-ErrorType"),
                Some("SerializationException" | "ValidationException")
            ),
            "{body}: {:?}",
            resp.headers
        );
    }
    // Malformed JSON on TagResource.
    let arn = encode_label(&srv.datastore_arn(&random_id()));
    let resp = srv
        .raw("POST", &format!("/tags/{arn}"))
        .header("content-type", "application/json")
        .body("{\"tags\": ")
        .signed()
        .send()
        .await
        .unwrap();
    resp.assert_error(400, "SerializationException");
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn oversized_body_is_413() {
    let srv = TestServer::start_with(|c| c.max_request_body = 1024)
        .await
        .unwrap();
    let big = json!({"datastoreName": "x", "clientToken": "c", "tags": {"k": "v".repeat(4000)}});
    let resp = create_raw(&srv, big).await;
    resp.assert_error(413, "RequestEntityTooLargeException");
    // Without a valid signature too (the limit is not an auth bypass, but must not hang).
    let resp = srv
        .raw("POST", "/datastore")
        .header("content-type", "application/json")
        .body(vec![b' '; 64 * 1024])
        .send()
        .await
        .unwrap();
    assert!(
        resp.status == 413 || resp.status == 403,
        "{} {}",
        resp.status,
        resp.text()
    );
    // Small bodies still work.
    create_raw(&srv, json!({"datastoreName": "x", "clientToken": "c"}))
        .await
        .assert_ok();
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn wrong_content_length_does_not_hang_or_500() {
    let srv = TestServer::start().await.unwrap();
    let req = srv
        .raw("POST", "/datastore")
        .json(&json!({"datastoreName": "x", "clientToken": "c"}))
        .signed()
        .set_header("content-length", "500");
    let mut bytes = req.head_bytes();
    bytes.extend_from_slice(&req.body);
    match send_bytes(srv.addr(), &bytes, true).await {
        Ok(resp) => assert!(
            (400..500).contains(&resp.status),
            "short body answered {} {}",
            resp.status,
            resp.text()
        ),
        Err(e) => {
            // Closing the connection without an answer is acceptable; hanging is not.
            assert!(!e.to_string().contains("within 10 s"), "{e}");
        }
    }
    // The server is still alive and created nothing.
    let list = srv
        .raw("GET", "/datastore")
        .signed()
        .send()
        .await
        .unwrap()
        .assert_ok();
    assert_eq!(list["datastoreSummaries"], json!([]));
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_body_that_never_arrives_times_out_with_408() {
    let srv = TestServer::start_with(|c| c.body_timeout = std::time::Duration::from_secs(1))
        .await
        .unwrap();
    let req = srv
        .raw("POST", "/datastore")
        .json(&json!({"datastoreName": "x", "clientToken": "c"}))
        .signed()
        .set_header("content-length", "500");
    let mut bytes = req.head_bytes();
    bytes.extend_from_slice(&req.body);
    // The connection stays open: without a body timeout the server would wait forever.
    let resp = send_bytes(srv.addr(), &bytes, false).await.unwrap();
    assert_eq!(resp.status, 408, "{}", resp.text());
    assert_eq!(
        resp.header("x-amzn-errortype"),
        Some("RequestTimeoutException")
    );
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn unknown_operation_is_404() {
    let srv = TestServer::start().await.unwrap();
    for (method, path) in [
        ("GET", "/nope"),
        ("POST", "/datastores"),
        ("GET", "/"),
        (
            "POST",
            "/datastore/0123456789abcdef0123456789abcdef/unknownOp",
        ),
    ] {
        let resp = srv.raw(method, path).signed().send().await.unwrap();
        resp.assert_error(404, "UnknownOperationException");
    }
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn unknown_inputs_are_ignored() {
    let srv = TestServer::start().await.unwrap();
    // Unknown JSON members.
    let body = create_raw(
        &srv,
        json!({"datastoreName": "extra", "clientToken": "c", "somethingNew": {"a": [1, 2]}}),
    )
    .await
    .assert_ok();
    let id = body["datastoreId"].as_str().unwrap().to_string();
    // Unknown query parameters.
    srv.raw("GET", "/datastore?foo=bar&maxResults=5&x-id=ListDatastores")
        .signed()
        .send()
        .await
        .unwrap()
        .assert_ok();
    // Bodies on body-less operations.
    srv.raw("GET", &format!("/datastore/{id}"))
        .body("this is not json")
        .signed()
        .send()
        .await
        .unwrap()
        .assert_ok();
    srv.raw("GET", "/datastore")
        .json(&json!({"maxResults": 0}))
        .signed()
        .send()
        .await
        .unwrap()
        .assert_ok();
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn union_and_sensitive_rules_on_later_operations() {
    // Union and sensitive-member rules are checked before any handler runs.
    let srv = TestServer::start().await.unwrap();
    let id = create_active(&srv.client(), "union").await.unwrap();
    let path = format!("/datastore/{id}/searchImageSets");

    let two_members = json!({"filters": [{"operator": "EQUAL", "values": [
        {"DICOMAccessionNumber": "A1", "DICOMStudyId": "S1"}]}]});
    let no_member = json!({"filters": [{"operator": "EQUAL", "values": [{}]}]});
    for body in [two_members, no_member] {
        let resp = srv
            .raw("POST", &path)
            .json(&body)
            .signed()
            .send()
            .await
            .unwrap();
        resp.assert_error(400, "ValidationException");
    }
    // Sensitive member: a too-long patient id is rejected without echoing it.
    let secret = format!("PATIENTSECRET{}", "9".repeat(600));
    let body = json!({"filters": [{"operator": "EQUAL", "values": [{"DICOMPatientId": secret}]}]});
    let resp = srv
        .raw("POST", &path)
        .json(&body)
        .signed()
        .send()
        .await
        .unwrap();
    let msg = resp.assert_error(400, "ValidationException");
    assert!(
        !msg.contains("PATIENTSECRET"),
        "sensitive value echoed: {msg}"
    );

    // UpdateImageSetMetadata: MetadataUpdates union with both members.
    let upd = format!(
        "/datastore/{id}/imageSet/{}/updateImageSetMetadata?latestVersion=1",
        random_id()
    );
    let body = json!({"DICOMUpdates": {"updatableAttributes": "e30="}, "revertToVersionId": "1"});
    let resp = srv
        .raw("POST", &upd)
        .json(&body)
        .signed()
        .send()
        .await
        .unwrap();
    resp.assert_error(400, "ValidationException");

    // StartDICOMImportJob: required members and patterns checked before the handler.
    let resp = srv
        .raw("POST", &format!("/startDICOMImportJob/datastore/{id}"))
        .json(
            &json!({"clientToken": "c", "dataAccessRoleArn": "arn:aws:iam::123456789012:role/R",
                      "inputS3Uri": "not-s3", "outputS3Uri": "s3://bucket-out/x/"}),
        )
        .signed()
        .send()
        .await
        .unwrap();
    let msg = resp.assert_error(400, "ValidationException");
    assert!(msg.contains("inputS3Uri"), "{msg}");

    // A valid search request reaches the operation (nothing matches in an empty data store).
    let ok =
        json!({"filters": [{"operator": "EQUAL", "values": [{"DICOMAccessionNumber": "A1"}]}]});
    let resp = srv
        .raw("POST", &path)
        .json(&ok)
        .signed()
        .send()
        .await
        .unwrap();
    let found = resp.assert_ok();
    assert_eq!(found["imageSetsMetadataSummaries"], json!([]));
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn error_headers_on_every_class() {
    let srv = TestServer::start_with(|c| c.max_datastores = 1)
        .await
        .unwrap();
    let id = create_active(&srv.client(), "one").await.unwrap();
    // 402
    create_raw(&srv, json!({"datastoreName": "two", "clientToken": "c2"}))
        .await
        .assert_error(402, "ServiceQuotaExceededException");
    // 404
    srv.raw("GET", &format!("/datastore/{}", random_id()))
        .signed()
        .send()
        .await
        .unwrap()
        .assert_error(404, "ResourceNotFoundException");
    // 400
    srv.raw("GET", "/datastore/NOT-AN-ID")
        .signed()
        .send()
        .await
        .unwrap()
        .assert_error(400, "ValidationException");
    // 409: same token, different input
    let first = create_raw(&srv, json!({"datastoreName": "x", "clientToken": "same"})).await;
    // (quota is full, so the first use of the token is itself a 402; use the existing one instead)
    first.assert_error(402, "ServiceQuotaExceededException");
    srv.raw("DELETE", &format!("/datastore/{id}"))
        .signed()
        .send()
        .await
        .unwrap()
        .assert_ok();
    wait_deleted(&srv.client(), &id).await.unwrap();
    create_raw(&srv, json!({"datastoreName": "x", "clientToken": "same"}))
        .await
        .assert_ok();
    create_raw(&srv, json!({"datastoreName": "y", "clientToken": "same"}))
        .await
        .assert_error(409, "ConflictException");
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn chunked_request_body_is_accepted() {
    let srv = TestServer::start().await.unwrap();
    let body =
        serde_json::to_vec(&json!({"datastoreName": "chunked", "clientToken": "ch"})).unwrap();
    // Sign over the real body, then send it with Transfer-Encoding: chunked in two chunks.
    let req = srv
        .raw("POST", "/datastore")
        .json(&json!({"datastoreName": "chunked", "clientToken": "ch"}))
        .signed()
        .set_header("transfer-encoding", "chunked");
    let mut bytes = req.head_bytes();
    let (a, b) = body.split_at(body.len() / 2);
    for part in [a, b] {
        bytes.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        bytes.extend_from_slice(part);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"0\r\n\r\n");
    let resp = send_bytes(srv.addr(), &bytes, false).await.unwrap();
    assert_eq!(resp.assert_ok()["datastoreStatus"], "CREATING");
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn over_long_next_token_is_rejected() {
    let srv = TestServer::start().await.unwrap();
    let token = "A".repeat(8193);
    let resp = srv
        .raw("GET", &format!("/datastore?nextToken={token}"))
        .signed()
        .send()
        .await
        .unwrap();
    let msg = resp.assert_error(400, "ValidationException");
    assert!(msg.contains("nextToken"), "{msg}");
    assert!(
        !msg.contains(&token),
        "an 8 KiB token should not be echoed whole"
    );
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn wrong_method_on_a_known_path_is_an_unknown_operation() {
    let srv = TestServer::start().await.unwrap();
    let id = random_id();
    for (method, path) in [
        ("PUT", "/datastore".to_string()),
        ("PATCH", format!("/datastore/{id}")),
        ("GET", format!("/datastore/{id}/imageSet/{id}/getImageSet")),
        (
            "PUT",
            format!("/tags/{}", encode_label(&srv.datastore_arn(&id))),
        ),
    ] {
        let resp = srv.raw(method, &path).signed().send().await.unwrap();
        // 404 (no route for method + path) or 405 are both acceptable statuses; the error type
        // is what the SDKs read.
        assert!(
            resp.status == 404 || resp.status == 405,
            "{method} {path}: {} {}",
            resp.status,
            resp.text()
        );
        resp.assert_error(resp.status, "UnknownOperationException");
    }
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn unnamed_datastore_still_has_a_name() {
    // datastoreName is optional in CreateDatastore but required in DatastoreProperties and
    // DatastoreSummary.
    let srv = TestServer::start().await.unwrap();
    let body = create_raw(&srv, json!({"clientToken": "nameless"}))
        .await
        .assert_ok();
    let id = body["datastoreId"].as_str().unwrap().to_string();
    let got = srv
        .raw("GET", &format!("/datastore/{id}"))
        .signed()
        .send()
        .await
        .unwrap()
        .assert_ok();
    let name = got["datastoreProperties"]["datastoreName"]
        .as_str()
        .expect("datastoreName in GetDatastore");
    assert!(!name.is_empty());
    let list = srv
        .raw("GET", "/datastore")
        .signed()
        .send()
        .await
        .unwrap()
        .assert_ok();
    assert_eq!(list["datastoreSummaries"][0]["datastoreName"], name);
    srv.shutdown().await.unwrap();
}
