//! Requests signed by botocore (scripts/sigv4-vectors.py), replayed as received on the wire.

mod support;

use lightbox_sigv4::AuthError;
use serde::Deserialize;
use support::{One, Owned, at, secs};

#[derive(Deserialize)]
struct Fixture {
    vectors: Vec<Vector>,
}

#[derive(Deserialize, Clone)]
struct Vector {
    name: String,
    kind: String,
    method: String,
    raw_path: String,
    raw_query: Option<String>,
    headers: Vec<(String, String)>,
    body_base64: String,
    now: String,
    access_key_id: String,
    secret: String,
    region: String,
    service: String,
    expires: Option<u64>,
}

fn vectors() -> Vec<Vector> {
    let text = include_str!("fixtures/botocore-vectors.json");
    serde_json::from_str::<Fixture>(text).unwrap().vectors
}

fn decode_base64(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|c| *c != b'=') {
        acc = (acc << 6) | ALPHABET.iter().position(|a| *a == c).unwrap() as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

fn request(v: &Vector) -> Owned {
    let headers: Vec<(&str, &str)> = v
        .headers
        .iter()
        .map(|(k, s)| (k.as_str(), s.as_str()))
        .collect();
    let mut r = Owned::new(
        &v.method,
        &v.raw_path,
        &headers,
        &decode_base64(&v.body_base64),
    );
    r.raw_query = v.raw_query.clone();
    r
}

fn creds(v: &Vector) -> One {
    One(
        Box::leak(v.access_key_id.clone().into_boxed_str()),
        Box::leak(v.secret.clone().into_boxed_str()),
    )
}

fn check(v: &Vector, r: &Owned) -> Result<(), AuthError> {
    r.verify(&creds(v), &v.service, at(&v.now)).map(|ok| {
        assert_eq!(ok.access_key_id, v.access_key_id);
        assert_eq!(ok.region, v.region);
        assert_eq!(ok.service, v.service);
    })
}

#[test]
fn fixture_covers_what_it_should() {
    let vs = vectors();
    assert!(vs.len() >= 30);
    let count = |f: &dyn Fn(&Vector) -> bool| vs.iter().filter(|v| f(v)).count();
    assert!(count(&|v| v.kind == "query") >= 3);
    assert!(count(&|v| v.raw_path.contains("%3A")) >= 4);
    assert!(
        count(&|v| v
            .raw_query
            .as_deref()
            .is_some_and(|q| q.matches("tagKeys=").count() >= 2))
            >= 2
    );
    assert!(
        count(&|v| v
            .headers
            .iter()
            .any(|(k, h)| k == "Host" && h == "runtime-127.0.0.1:8080"))
            >= 6
    );
    assert!(count(&|v| v.body_base64.is_empty() && v.method == "POST") >= 2);
    assert!(
        count(&|v| v
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type")))
            >= 4
    );
    assert!(count(&|v| v.region != "us-east-1") >= 2);
}

#[test]
fn every_botocore_vector_verifies() {
    for v in vectors() {
        if let Err(e) = check(&v, &request(&v)) {
            panic!("{}: {e:?}", v.name);
        }
    }
}

/// Applies `tamper` to every vector it changes and expects the signature to be rejected.
fn expect_rejected(what: &str, tamper: impl Fn(&Vector, &mut Owned) -> bool) {
    let mut tried = 0;
    for v in vectors() {
        let mut r = request(&v);
        if !tamper(&v, &mut r) {
            continue;
        }
        tried += 1;
        assert_eq!(
            check(&v, &r),
            Err(AuthError::SignatureDoesNotMatch),
            "{what} of {} was accepted",
            v.name
        );
    }
    assert!(tried > 0, "{what}: no vector applies");
}

#[test]
fn tampered_body_is_rejected() {
    expect_rejected("body", |v, r| {
        // Bodies under x-amz-content-sha256 have their own test. Presigned vectors are
        // included: botocore signs their body hash, and the UNSIGNED-PAYLOAD fallback
        // only matches URLs that were signed that way.
        let claimed = v
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("x-amz-content-sha256"));
        if claimed {
            return false;
        }
        r.body.push(b' ');
        true
    });
}

#[test]
fn tampered_path_is_rejected() {
    expect_rejected("path", |_, r| {
        // Change one character of the last segment (keeps the path well-formed).
        let last = r.raw_path.pop().unwrap();
        r.raw_path.push(if last == 'a' { 'b' } else { 'a' });
        true
    });
    // Decoding the label (%3A -> ':') changes the canonical URI too.
    expect_rejected("label decoding", |_, r| {
        if !r.raw_path.contains("%3A") {
            return false;
        }
        r.raw_path = r.raw_path.replace("%3A", ":");
        true
    });
}

#[test]
fn tampered_query_is_rejected() {
    expect_rejected("query value", |_, r| match &r.raw_query {
        Some(q) if q.contains("tagKeys=a") => {
            r.raw_query = Some(q.replacen("tagKeys=a", "tagKeys=c", 1));
            true
        }
        Some(q) if q.contains("maxResults=") => {
            r.raw_query = Some(q.replacen("maxResults=", "maxResults=9", 1));
            true
        }
        _ => false,
    });
    expect_rejected("added parameter", |_, r| {
        r.raw_query = Some(match &r.raw_query {
            Some(q) => format!("{q}&extra=1"),
            None => "extra=1".to_owned(),
        });
        true
    });
    expect_rejected("dropped repeated key", |_, r| match &r.raw_query {
        Some(q) if q.starts_with("tagKeys=a&tagKeys=b") => {
            r.raw_query = Some("tagKeys=a".to_owned());
            true
        }
        _ => false,
    });
}

#[test]
fn tampered_headers_are_rejected() {
    expect_rejected("host", |_, r| {
        let host = r.headers.get("host").unwrap().to_str().unwrap().to_owned();
        // The runtime- prefix is part of the signed host.
        let other = match host.strip_prefix("runtime-") {
            Some(rest) => rest.to_owned(),
            None => format!("runtime-{host}"),
        };
        r.set_header("host", &other);
        true
    });
    expect_rejected("content-type", |_, r| {
        if !r.headers.contains_key("content-type") {
            return false;
        }
        r.set_header("content-type", "text/plain");
        true
    });
    expect_rejected("method", |_, r| {
        r.method = if r.method == "GET" { "HEAD" } else { "GET" }.to_owned();
        true
    });
    expect_rejected("security token", |_, r| {
        if !r.headers.contains_key("x-amz-security-token") {
            return false;
        }
        r.set_header("x-amz-security-token", "other");
        true
    });
    expect_rejected("x-amz-date", |v, r| {
        if v.kind != "header" || !r.headers.contains_key("x-amz-date") {
            return false;
        }
        // Still the same day and within the skew window: only the signature can tell.
        let d = r
            .headers
            .get("x-amz-date")
            .unwrap()
            .to_str()
            .unwrap()
            .replace("56Z", "57Z");
        r.set_header("x-amz-date", &d);
        true
    });
}

#[test]
fn tampered_signature_is_rejected() {
    expect_rejected("signature", |v, r| {
        if v.kind == "query" {
            let q = r.raw_query.clone().unwrap();
            let (head, sig) = q.rsplit_once("X-Amz-Signature=").unwrap();
            let flipped: String = sig.chars().rev().collect();
            r.raw_query = Some(format!("{head}X-Amz-Signature={flipped}"));
        } else {
            let a = r
                .headers
                .get("authorization")
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            let fixed = format!("{}0", &a[..a.len() - 1]);
            let changed = if fixed == a {
                format!("{}1", &a[..a.len() - 1])
            } else {
                fixed
            };
            r.set_header("authorization", &changed);
        }
        true
    });
}

#[test]
fn canonically_equivalent_changes_still_verify() {
    for v in vectors() {
        let mut r = request(&v);
        // Unsigned headers may change or be added freely.
        r.set_header("user-agent", "something else");
        r.set_header("x-unsigned", "1");
        // Whitespace in signed header values is folded.
        if let Some(h) = r.headers.get("x-custom") {
            let spaced = format!("\t{}   ", h.to_str().unwrap().replace(' ', "    "));
            r.set_header("x-custom", &spaced);
        }
        // Query pair order does not matter, and %7E / ~ are the same character.
        if let Some(q) = &r.raw_query {
            let mut parts: Vec<&str> = q.split('&').collect();
            parts.reverse();
            r.raw_query = Some(parts.join("&").replace('~', "%7E"));
        }
        if let Err(e) = check(&v, &r) {
            panic!("{}: {e:?}", v.name);
        }
    }
}

#[test]
fn wrong_secret_is_a_signature_mismatch() {
    for v in vectors() {
        let r = request(&v);
        let wrong = One(
            Box::leak(v.access_key_id.clone().into_boxed_str()),
            "not-the-secret",
        );
        assert_eq!(
            r.verify(&wrong, &v.service, at(&v.now)),
            Err(AuthError::SignatureDoesNotMatch),
            "{}",
            v.name
        );
    }
}

#[test]
fn content_sha256_header_must_match_body() {
    let v = vectors()
        .into_iter()
        .find(|v| v.name == "signer/content-sha256")
        .unwrap();
    let mut r = request(&v);
    assert_eq!(check(&v, &r), Ok(()));
    r.body = b"other".to_vec();
    let err = check(&v, &r).unwrap_err();
    assert_eq!(err, AuthError::ContentSha256Mismatch);
    assert_eq!(
        (err.code(), err.status()),
        ("InvalidSignatureException", 403)
    );
    // UNSIGNED-PAYLOAD leaves the body out of the signature on purpose.
    let v = vectors()
        .into_iter()
        .find(|v| v.name == "signer/unsigned-payload")
        .unwrap();
    let mut r = request(&v);
    r.body = b"anything at all".to_vec();
    assert_eq!(check(&v, &r), Ok(()));
}

#[test]
fn skew_boundaries_for_header_signatures() {
    let v = vectors()
        .into_iter()
        .find(|v| v.name == "client/us-east-1/get-image-set")
        .unwrap();
    let r = request(&v);
    let t = at(&v.now);
    let c = creds(&v);
    let run = |now| r.verify(&c, &v.service, now);
    assert!(
        run(t + secs(900)).is_ok(),
        "exactly 15 min late is accepted"
    );
    assert!(
        run(t - secs(900)).is_ok(),
        "exactly 15 min early is accepted"
    );
    assert_eq!(
        run(t + secs(901)).unwrap_err().message(),
        "Signature expired: 20261127T123456Z is now earlier than 20261127T123457Z (20261127T124957Z - 15 min.)"
    );
    let err = run(t - secs(901)).unwrap_err();
    assert!(matches!(err, AuthError::SignatureNotYetCurrent(_)));
    assert_eq!(
        err.message(),
        "Signature not yet current: 20261127T123456Z is still later than 20261127T123455Z (20261127T121955Z + 15 min.)"
    );
    assert_eq!(
        (err.code(), err.status()),
        ("InvalidSignatureException", 403)
    );
    // Sub-second precision of `now` does not widen the window.
    assert!(run(t + secs(900) + std::time::Duration::from_millis(999)).is_ok());
}

#[test]
fn presigned_window_boundaries() {
    for v in vectors().into_iter().filter(|v| v.kind == "query") {
        let r = request(&v);
        let t = at(&v.now);
        let c = creds(&v);
        let expires = v.expires.unwrap_or(3600);
        let run = |now| r.verify(&c, &v.service, now);
        assert!(run(t + secs(expires)).is_ok(), "{}", v.name);
        assert!(run(t - secs(900)).is_ok(), "{}", v.name);
        assert!(
            matches!(
                run(t + secs(expires + 1)),
                Err(AuthError::SignatureExpired(_))
            ),
            "{}",
            v.name
        );
        assert!(
            matches!(
                run(t - secs(901)),
                Err(AuthError::SignatureNotYetCurrent(_))
            ),
            "{}",
            v.name
        );
    }
}

#[test]
fn wrong_service_and_unknown_key() {
    let v = vectors().into_iter().next().unwrap();
    let r = request(&v);
    let err = r.verify(&creds(&v), "s3", at(&v.now)).unwrap_err();
    assert_eq!(
        err.message(),
        "Credential should be scoped to correct service: 's3'."
    );
    assert_eq!(
        (err.code(), err.status()),
        ("InvalidSignatureException", 403)
    );

    let err = r
        .verify(&One("AKIAOTHER", "x"), &v.service, at(&v.now))
        .unwrap_err();
    assert_eq!(
        err,
        AuthError::UnrecognizedClient {
            access_key_id: v.access_key_id.clone()
        }
    );
    assert_eq!(
        (err.code(), err.status(), err.message().as_str()),
        (
            "UnrecognizedClientException",
            403,
            "The security token included in the request is invalid."
        )
    );
}
