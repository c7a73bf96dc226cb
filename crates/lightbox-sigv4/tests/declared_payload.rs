//! `verify_declared_payload`: the payload hash is the `x-amz-content-sha256` header (for bodies
//! checked while streamed), on AWS's `get-vanilla` vector (signed over the empty body's hash).

use std::time::{Duration, UNIX_EPOCH};

use lightbox_sigv4::{AuthError, Request, verify_declared_payload};

const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn creds(id: &str) -> Option<String> {
    (id == "AKIDEXAMPLE").then(|| "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into())
}

fn check(content_sha256: Option<&str>) -> Result<Option<String>, AuthError> {
    let mut headers = http::HeaderMap::new();
    headers.insert("host", "example.amazonaws.com".parse().unwrap());
    headers.insert("x-amz-date", "20150830T123600Z".parse().unwrap());
    headers.insert(
        "authorization",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
         SignedHeaders=host;x-amz-date, \
         Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
            .parse()
            .unwrap(),
    );
    if let Some(v) = content_sha256 {
        headers.insert("x-amz-content-sha256", v.parse().unwrap());
    }
    let req = Request {
        method: "GET",
        raw_path: "/",
        raw_query: None,
        headers: &headers,
        // Ignored: the body has not been read.
        body: b"not the body that was signed",
    };
    let now = UNIX_EPOCH + Duration::from_secs(1_440_938_160);
    verify_declared_payload(&req, &creds, "service", now).map(|(_, declared)| declared)
}

#[test]
fn declared_hash_is_the_payload_hash() {
    assert_eq!(
        check(Some(EMPTY_SHA256)).unwrap(),
        Some(EMPTY_SHA256.to_owned())
    );
    let upper = EMPTY_SHA256.to_ascii_uppercase();
    assert!(matches!(
        check(Some(&upper)),
        Err(AuthError::SignatureDoesNotMatch)
    ));
    // Signed over the empty body's hash, not UNSIGNED-PAYLOAD.
    assert!(matches!(
        check(Some("UNSIGNED-PAYLOAD")),
        Err(AuthError::SignatureDoesNotMatch)
    ));
    assert!(matches!(
        check(Some("not-a-hash")),
        Err(AuthError::ContentSha256Mismatch)
    ));
    assert!(matches!(
        check(None),
        Err(AuthError::IncompleteSignature(_))
    ));
}
